"""The auditor's report of a replay (:mod:`node.replay`): what the verified blocks hold and how
the validators took part.

An :class:`AuditReport` watches every block the replay has verified (:meth:`AuditReport.observe`;
a parallel replay's segments each fill one and :meth:`AuditReport.merge` joins them in chain
order, to the same report one sequential pass gives):

- **blocks and events**: cargo events per publishing organisation and per event type;
- **validator participation**, as figures: per validator, the blocks it proposed (the header's
  ``coinbase``), the blocks it sealed and the blocks it could have sealed (it was in the
  parent's list); the share of those seals present, per validator and overall. QBFT commits a
  block with a quorum of seals (``ceil(2n/3)``), so a seal or two missing from a block is the
  protocol working, not an anomaly;
- **governance**: every Consortium event (proposals, votes, executions, members, accounts,
  validators) and every validator-set change;
- **anomalies**, only what is abnormal: blocks committed after a round change, proposers out of
  rotation, fewer seals than the quorum (an import refuses such a block; reported all the
  same), a validator absent from the seals of :data:`ABSENT_BLOCKS` or more consecutive blocks
  it could have sealed, reverted transactions, and retractions (events that retract an
  earlier one);
- **one subject's full history** (``--subject REF``), exported to CSV and JSON.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak
from rich.table import Table

from consensus import extradata
from consensus.validation import proposer_for
from contracts import SYSTEM_ADDRESSES, load_artifact
from contracts.cargo import CARGO_EVENT_TOPIC, FAMILIES, decode_event_log, subject_key
from node.genesis import Genesis
from node.ledger import BlockResult

#: A validator missing from the commit seals of this many consecutive blocks it could have
#: sealed is an anomaly (one missing now and then is normal: a block needs a quorum only).
ABSENT_BLOCKS = 10


def _event_abis(*names: str) -> dict[int, tuple[str, list[dict[str, Any]]]]:
    """topic0 → (event name, inputs) for the events of the named contracts' ABIs."""
    out: dict[int, tuple[str, list[dict[str, Any]]]] = {}
    for name in names:
        for entry in load_artifact(name)["abi"]:
            if entry["type"] == "event":
                signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                out[int.from_bytes(keccak(signature.encode()), "big")] = (
                    entry["name"], entry["inputs"]
                )
    return out


@dataclass
class ValidatorStats:
    """One validator's participation."""

    #: Blocks whose ``coinbase`` it is.
    proposed: int = 0
    #: Blocks carrying its commit seal.
    sealed: int = 0
    #: Blocks it could have sealed (it was in the parent's list).
    eligible: int = 0
    #: Closed runs (first, last block) of consecutive blocks it could have sealed and did not:
    #: those of :data:`ABSENT_BLOCKS` or more, and the one starting at the report's first block
    #: (it may continue a previous replay segment's open run, see :meth:`AuditReport.merge`).
    absences: list[tuple[int, int]] = field(default_factory=list)
    #: The run it is in (first, last block missed so far), if its last eligible block lacked
    #: its seal.
    missing: tuple[int, int] | None = None

    @property
    def share(self) -> float | None:
        """The share of the blocks it could have sealed that carry its seal."""
        return self.sealed / self.eligible if self.eligible else None


@dataclass
class AuditReport:
    """What an auditor wants from a replay; feed it with :meth:`observe`.

    Parameters
    ----------
    genesis : Genesis
        Gives the organisations' names (ids count from 1 in genesis order).
    subject : str, optional
        A reference whose every cargo event is kept in :attr:`history`.
    """

    genesis: Genesis
    subject: str | None = None
    blocks: int = 0
    transactions: int = 0
    reverted: int = 0
    cargo_events: int = 0
    by_organisation: Counter[int] = field(default_factory=Counter)
    validators: dict[bytes, ValidatorStats] = field(default_factory=dict)
    round_changes: int = 0
    governance: Counter[str] = field(default_factory=Counter)
    #: (block, description) of governance actions, in chain order.
    governance_log: list[tuple[int, str]] = field(default_factory=list)
    #: (block, new validator list) of each change.
    validator_changes: list[tuple[int, tuple[bytes, ...]]] = field(default_factory=list)
    #: Blocks with fewer commit seals of the parent's validators than the quorum.
    below_quorum: int = 0
    #: (block, description) of what :meth:`observe` found abnormal, in chain order (absences
    #: come from :attr:`validators`; :meth:`all_anomalies` has both).
    anomalies: list[tuple[int, str]] = field(default_factory=list)
    #: The first block observed (a replay segment's first block).
    first_block: int | None = None
    #: The subject's events, in chain order, as flat dicts.
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cargo = bytes.fromhex(SYSTEM_ADDRESSES["CargoLedger"][2:])
        self._consortium = bytes.fromhex(SYSTEM_ADDRESSES["Consortium"][2:])
        self._cargo_topic = int.from_bytes(CARGO_EVENT_TOPIC, "big")
        self._types: Counter[bytes] = Counter()
        self._governance_events = _event_abis("Consortium")
        self._subject_topic = (
            int.from_bytes(subject_key(self.subject), "big") if self.subject else None
        )
        self._names = {
            i + 1: m.get("name", f"org {i + 1}")
            for i, m in enumerate(self.genesis.portledger.get("members", []))
        }
        self._type_names = {
            family << 8 | (i + 1): f"{name}.{code}"
            for family, (name, codes, _roles) in FAMILIES.items()
            for i, code in enumerate(codes)
        }

    @property
    def by_type(self) -> Counter[str]:
        """Cargo events per ``"FAMILY.CODE"`` type."""
        out: Counter[str] = Counter()
        for raw, n in self._types.items():
            code = int.from_bytes(raw, "big")
            out[self._type_names.get(code, f"0x{code:04x}")] += n
        return out

    def organisation(self, org: int) -> str:
        return str(self._names.get(org, f"org {org}"))

    # -- observing ---------------------------------------------------------------------------
    def observe(self, block: Any, result: BlockResult, parent: Any) -> None:
        """Account for one verified block (``parent`` is its parent's header)."""
        header = block.header
        number = header.block_number
        extra = extradata.decode(header.extra_data)
        eligible = extradata.decode(parent.extra_data).validators
        digest = extradata.commit_digest(header)
        signers = {extradata.recover_signer(digest, seal) for seal in extra.seals}
        if self.first_block is None:
            self.first_block = number
        self.blocks += 1
        self.transactions += len(block.transactions)
        for validator in eligible:
            self._seal_seen(number, self.validators.setdefault(validator, ValidatorStats()),
                            validator in signers)
        self.validators.setdefault(header.coinbase, ValidatorStats()).proposed += 1
        if extra.round > 0:
            self.round_changes += 1
            self.anomalies.append((number, f"committed in round {extra.round} (round change)"))
        expected = proposer_for(eligible, number, extra.round)
        if header.coinbase != expected:
            self.anomalies.append(
                (number, f"proposer 0x{header.coinbase.hex()} is not the rotation's 0x{expected.hex()}")
            )
        sealed_by = len(signers.intersection(eligible))
        needed = extradata.quorum(len(eligible))
        if sealed_by < needed:
            self.below_quorum += 1
            self.anomalies.append(
                (number, f"{sealed_by} of {len(eligible)} validators sealed, below the quorum of {needed}")
            )
        if extra.validators != eligible:
            self.validator_changes.append((number, extra.validators))
        for tx_index, receipt in enumerate(result.receipts):
            if receipt.state_root != b"\x01":
                self.reverted += 1
                self.anomalies.append((number, f"transaction {tx_index} reverted"))
            for log_index, log in enumerate(receipt.logs):
                if log.address == self._cargo and log.topics and log.topics[0] == self._cargo_topic:
                    self._cargo_event(number, block.transactions[tx_index], tx_index, log_index, log)
                elif log.address == self._consortium and log.topics:
                    self._governance_event(number, log)

    def _seal_seen(self, number: int, stats: ValidatorStats, sealed: bool) -> None:
        """Count block ``number``'s seal, or extend the validator's run of missing seals."""
        stats.eligible += 1
        if sealed:
            stats.sealed += 1
            self._close_absence(stats)
        elif stats.missing is not None and stats.missing[1] == number - 1:
            stats.missing = (stats.missing[0], number)
        else:
            self._close_absence(stats)
            stats.missing = (number, number)

    def _close_absence(self, stats: ValidatorStats) -> None:
        """End the validator's run of missing seals; keep it if it is long, or the first run of
        this report's blocks (a previous segment's run may continue in it)."""
        if stats.missing is not None and self._kept(stats.missing):
            stats.absences.append(stats.missing)
        stats.missing = None

    def _kept(self, run: tuple[int, int]) -> bool:
        return run[1] - run[0] + 1 >= ABSENT_BLOCKS or run[0] == self.first_block

    def absences(self) -> list[tuple[int, int, bytes]]:
        """(first, last block, validator) of every run of :data:`ABSENT_BLOCKS` or more
        consecutive blocks a validator could have sealed and did not, by first block."""
        out = []
        for validator, stats in self.validators.items():
            runs = stats.absences + ([stats.missing] if stats.missing is not None else [])
            out += [(f, last, validator) for f, last in runs if last - f + 1 >= ABSENT_BLOCKS]
        return sorted(out)

    def all_anomalies(self) -> list[tuple[int, str]]:
        """(block, description) of every anomaly, in chain order: what :meth:`observe` found
        and the validators' long absences."""
        absent = [
            (first, f"validator 0x{v.hex()} sealed none of the {last - first + 1} blocks "
                    f"#{first}..#{last} it could have sealed")
            for first, last, v in self.absences()
        ]  # fmt: skip
        return sorted(self.anomalies + absent, key=lambda anomaly: anomaly[0])

    @property
    def sealing_share(self) -> float | None:
        """The share of all the seals validators could have given that blocks carry."""
        eligible = sum(s.eligible for s in self.validators.values())
        return sum(s.sealed for s in self.validators.values()) / eligible if eligible else None

    def _cargo_event(self, number: int, tx: Any, tx_index: int, log_index: int, log: Any) -> None:
        # Per event only the counted fields are read (this runs for every event replayed); the
        # full decode is for the subject's history.
        data = log.data
        self.cargo_events += 1
        self.by_organisation[log.topics[2]] += 1
        self._types[data[0:2]] += 1
        if data[13:21] != b"\x00" * 8:
            retracts = int.from_bytes(data[13:21], "big")
            self.anomalies.append((number, f"event {log.topics[3]} retracts event {retracts}"))
        if self._subject_topic is not None and log.topics[1] == self._subject_topic:
            topics = [t.to_bytes(32, "big") for t in log.topics]
            event = decode_event_log(topics, bytes(data))
            type_name = self._type_names.get(event.event_type, f"0x{event.event_type:04x}")
            self.history.append(
                {
                    "block": number,
                    "transaction": "0x" + tx.hash.hex(),
                    "transactionIndex": tx_index,
                    "logIndex": log_index,
                    "eventId": event.event_id,
                    "publisher": event.publisher,
                    "publisherName": self.organisation(event.publisher),
                    "type": type_name,
                    "classifier": {1: "PLN", 2: "EST", 3: "ACT"}.get(event.classifier, "?"),
                    "eventTime": event.event_time,
                    "location": event.location,
                    "retracts": event.retracts,
                    "payloadHash": "0x" + event.payload_hash.hex(),
                    "payloadBytes": len(event.payload),
                }
            )

    def _governance_event(self, number: int, log: Any) -> None:
        known = self._governance_events.get(log.topics[0])
        if known is None:
            return
        name, inputs = known
        self.governance[name] += 1
        indexed = [i["name"] for i in inputs if i["indexed"]]
        values = [
            f"{k}={t if t < 2**160 else hex(t)}" for k, t in zip(indexed, log.topics[1:], strict=False)
        ]
        self.governance_log.append((number, f"{name}({', '.join(values)})"))

    def merge(self, later: AuditReport) -> None:
        """Add the report of the blocks that follow this one's (a later replay segment)."""
        self.blocks += later.blocks
        self.transactions += later.transactions
        self.reverted += later.reverted
        self.cargo_events += later.cargo_events
        self.by_organisation.update(later.by_organisation)
        self._types.update(later._types)
        for validator, stats in later.validators.items():
            mine = self.validators.setdefault(validator, ValidatorStats())
            mine.proposed += stats.proposed
            mine.sealed += stats.sealed
            mine.eligible += stats.eligible
            self._merge_absences(mine, stats)
        if self.first_block is None:
            self.first_block = later.first_block
        self.round_changes += later.round_changes
        self.below_quorum += later.below_quorum
        self.governance.update(later.governance)
        self.governance_log.extend(later.governance_log)
        self.validator_changes.extend(later.validator_changes)
        self.anomalies.extend(later.anomalies)
        self.history.extend(later.history)

    def _merge_absences(self, mine: ValidatorStats, later: ValidatorStats) -> None:
        """Append a later segment's runs of missing seals to a validator's; a run open at this
        report's last block goes on in one that starts at the later report's first."""
        closed, still_missing = list(later.absences), later.missing
        if mine.missing is not None:
            following = closed[0] if closed else still_missing
            if following is not None and following[0] == mine.missing[1] + 1:
                joined = (mine.missing[0], following[1])
                if closed:
                    closed[0] = joined
                else:
                    still_missing = joined
                mine.missing = None
            else:
                self._close_absence(mine)
        mine.absences += [run for run in closed if self._kept(run)]
        if still_missing is not None:
            mine.missing = still_missing

    # -- output ------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data."""
        return {
            "blocks": self.blocks,
            "transactions": self.transactions,
            "revertedTransactions": self.reverted,
            "cargoEvents": self.cargo_events,
            "eventsByOrganisation": {
                self.organisation(org): n for org, n in self.by_organisation.most_common()
            },
            "eventsByType": dict(self.by_type.most_common()),
            "validators": {
                "0x" + v.hex(): {
                    "proposed": s.proposed, "sealed": s.sealed, "eligible": s.eligible,
                    "sealedShare": s.share,
                }
                for v, s in sorted(self.validators.items())
            },
            "sealing": {
                "seals": sum(s.sealed for s in self.validators.values()),
                "eligible": sum(s.eligible for s in self.validators.values()),
                "share": self.sealing_share,
                "blocksBelowQuorum": self.below_quorum,
                "absences": [
                    {"validator": "0x" + v.hex(), "firstBlock": first, "lastBlock": last}
                    for first, last, v in self.absences()
                ],
            },
            "roundChanges": self.round_changes,
            "validatorChanges": [
                {"block": n, "validators": ["0x" + v.hex() for v in vs]}
                for n, vs in self.validator_changes
            ],
            "governance": dict(self.governance),
            "governanceLog": [{"block": n, "action": a} for n, a in self.governance_log],
            "anomalies": [{"block": n, "what": a} for n, a in self.all_anomalies()],
        }

    def render(self, console: Any, *, max_rows: int = 20) -> None:
        """Print the report as rich tables."""
        overview = Table(title="Replay report")
        overview.add_column("blocks", justify="right")
        overview.add_column("transactions", justify="right")
        overview.add_column("reverted", justify="right")
        overview.add_column("cargo events", justify="right")
        overview.add_column("round changes", justify="right")
        overview.add_column("validator-set changes", justify="right")
        overview.add_row(
            str(self.blocks), str(self.transactions), str(self.reverted), str(self.cargo_events),
            str(self.round_changes), str(len(self.validator_changes)),
        )
        console.print(overview)
        orgs = Table(title="Cargo events per organisation")
        orgs.add_column("organisation")
        orgs.add_column("events", justify="right")
        for org, n in self.by_organisation.most_common(max_rows):
            orgs.add_row(f"{org} {self.organisation(org)}", str(n))
        console.print(orgs)
        types = Table(title="Cargo events per type")
        types.add_column("type")
        types.add_column("events", justify="right")
        for name, n in self.by_type.most_common(max_rows):
            types.add_row(name, str(n))
        console.print(types)
        share = self.sealing_share
        validators = Table(
            title="Validator participation",
            caption=None if share is None else (
                f"seals present: {100 * share:.1f}% of possible (a block needs ceil(2n/3))"
            ),
        )  # fmt: skip
        for column in ("validator", "proposed", "sealed", "eligible", "sealed %"):
            validators.add_column(column, justify="left" if column == "validator" else "right")
        for v, st in sorted(self.validators.items()):
            sealed_share = "-" if st.share is None else f"{100 * st.share:.1f}"
            validators.add_row(
                "0x" + v.hex(), str(st.proposed), str(st.sealed), str(st.eligible), sealed_share
            )
        console.print(validators)
        if self.governance_log or self.validator_changes:
            gov = Table(title="Governance actions and validator-set changes")
            gov.add_column("block", justify="right")
            gov.add_column("action")
            rows = [(n, a) for n, a in self.governance_log] + [
                (n, f"validator set now {len(vs)}: " + ", ".join("0x" + v.hex()[:8] for v in vs))
                for n, vs in self.validator_changes
            ]
            for n, a in sorted(rows, key=lambda r: r[0])[-max_rows * 2:]:
                gov.add_row(str(n), a)
            console.print(gov)
        found = self.all_anomalies()
        if found:
            anomalies = Table(title=f"Anomalies ({len(found)}; last {max_rows} shown)")
            anomalies.add_column("block", justify="right")
            anomalies.add_column("what")
            for n, a in found[-max_rows:]:
                anomalies.add_row(str(n), a)
            console.print(anomalies)
        if self.subject is not None:
            console.print(f"{self.subject}: {len(self.history)} cargo events in its history")

    def export_history(self, csv_path: str | Path | None, json_path: str | Path | None) -> None:
        """Write the subject's history as CSV and/or JSON."""
        columns = [
            "block", "transaction", "transactionIndex", "logIndex", "eventId", "publisher",
            "publisherName", "type", "classifier", "eventTime", "location", "retracts",
            "payloadHash", "payloadBytes",
        ]
        if csv_path is not None:
            with open(csv_path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.history)
        if json_path is not None:
            Path(json_path).write_text(
                json.dumps({"subject": self.subject, "events": self.history}, indent=1) + "\n"
            )
