"""Replay: re-execute a chain from genesis and check every root, as an auditor would.

Each block goes through :meth:`node.chain.Ledger.import_block` on a fresh database built from
the genesis file alone: seals and validator list checked, every transaction re-executed, and the
derived state root, transactions root, receipts root, bloom, gas used and requests hash
compared with the header. The first difference stops the replay and is reported with the
block number and the field.

While it replays, an auditor's :class:`AuditReport` watches every block it has verified:

- **blocks and events**: cargo events per publishing organisation and per event type;
- **validator participation**: per validator, the blocks it proposed (the header's
  ``coinbase``), the blocks it sealed and the blocks it was expected to seal (it was in the
  parent's list) but did not; blocks committed in a round above 0 (round changes), and blocks
  whose proposer is not the one the rotation names for (height, round);
- **governance**: every Consortium event (proposals, votes, executions, members, accounts,
  validators) and every validator-set change;
- **anomalies**: round changes, proposers out of rotation, retractions (events that retract an
  earlier one), reverted transactions, and seals missing beyond the quorum;
- **one subject's full history** (``--subject REF``), exported to CSV and JSON.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consensus import extradata
from consensus.validation import proposer_for
from contracts import SYSTEM_ADDRESSES, load_artifact
from contracts.cargo import CARGO_EVENT_TOPIC, decode_event_log, subject_key
from node.chain import BlockResult, InvalidBlock, Ledger
from node.db import LevelDB
from node.genesis import Genesis


@dataclass
class ReplaySummary:
    """What a replay saw."""

    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    gas: int = 0
    seconds: float = 0.0
    head_hash: bytes = b""
    #: ``None`` when every block verified; else what failed and where.
    failure: str | None = None

    def describe(self) -> str:
        rate = self.transactions / self.seconds if self.seconds else 0.0
        status = "FAILED: " + self.failure if self.failure else "OK: every root verified"
        return (
            f"replay {status}\n"
            f"  blocks {self.blocks}, transactions {self.transactions}, logs {self.logs}, "
            f"gas {self.gas}\n"
            f"  head 0x{self.head_hash.hex()}\n"
            f"  {self.seconds:.1f} s, {rate:.0f} tx/s"
        )


def replay_blocks(
    genesis: Genesis,
    blocks: Iterable[Any],
    scratch_dir: str,
    *,
    total: int | None = None,
    show_progress: bool = True,
    observe: Callable[[Any, BlockResult, Any], None] | None = None,
) -> ReplaySummary:
    """Import ``blocks`` in order onto a fresh chain in ``scratch_dir``; stop at the first fault.

    ``observe(block, result, parent_header)`` is called for every block once it verified (an
    :class:`AuditReport` is one such observer).
    """
    db = LevelDB(scratch_dir, sync=False)
    ledger = Ledger(db, genesis)
    summary = ReplaySummary(head_hash=ledger.head().hash)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    )
    with progress:
        task = progress.add_task("replay", total=total, rate="")
        try:
            for block in blocks:
                expected = ledger.head().block_number + 1
                if block.number != expected:
                    summary.failure = f"block #{block.number}: expected block #{expected} next"
                    break
                parent = ledger.head()
                try:
                    result = ledger.import_block(block)
                except InvalidBlock as exc:
                    summary.failure = str(exc)
                    break
                if observe is not None:
                    observe(block, result, parent)
                summary.blocks += 1
                summary.transactions += len(block.transactions)
                summary.logs += sum(len(r.logs) for r in result.receipts)
                summary.gas += block.header.gas_used
                summary.head_hash = block.hash
                elapsed = time.perf_counter() - started
                progress.update(
                    task,
                    advance=1,
                    rate=f"{summary.transactions / elapsed:.0f} tx/s" if elapsed else "",
                )
        finally:
            summary.seconds = time.perf_counter() - started
            db.close()
    return summary


def _event_abis(*names: str) -> dict[int, tuple[str, list[dict[str, Any]]]]:
    """topic0 → (event name, inputs) for the events of the named contracts' ABIs."""
    from eth_utils import keccak

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
    #: (block, description).
    anomalies: list[tuple[int, str]] = field(default_factory=list)
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
        from contracts.cargo import FAMILIES

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
        return self._names.get(org, f"org {org}")

    # -- observing ---------------------------------------------------------------------------
    def observe(self, block: Any, result: BlockResult, parent: Any) -> None:
        """Account for one verified block (``parent`` is its parent's header)."""
        header = block.header
        number = header.block_number
        extra = extradata.decode(header.extra_data)
        eligible = extradata.decode(parent.extra_data).validators
        digest = extradata.commit_digest(header)
        signers = {extradata.recover_signer(digest, seal) for seal in extra.seals}
        self.blocks += 1
        self.transactions += len(block.transactions)
        for validator in eligible:
            stats = self.validators.setdefault(validator, ValidatorStats())
            stats.eligible += 1
            if validator in signers:
                stats.sealed += 1
        self.validators.setdefault(header.coinbase, ValidatorStats()).proposed += 1
        if extra.round > 0:
            self.round_changes += 1
            self.anomalies.append((number, f"committed in round {extra.round} (round change)"))
        expected = proposer_for(eligible, number, extra.round)
        if header.coinbase != expected:
            self.anomalies.append(
                (number, f"proposer 0x{header.coinbase.hex()} is not the rotation's 0x{expected.hex()}")
            )
        if len(signers) < len(eligible):
            missing = len(eligible) - len(signers)
            self.anomalies.append((number, f"{missing} of {len(eligible)} validators did not seal"))
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
                "0x" + v.hex(): {"proposed": s.proposed, "sealed": s.sealed, "eligible": s.eligible}
                for v, s in sorted(self.validators.items())
            },
            "roundChanges": self.round_changes,
            "validatorChanges": [
                {"block": n, "validators": ["0x" + v.hex() for v in vs]}
                for n, vs in self.validator_changes
            ],
            "governance": dict(self.governance),
            "governanceLog": [{"block": n, "action": a} for n, a in self.governance_log],
            "anomalies": [{"block": n, "what": a} for n, a in self.anomalies],
        }

    def render(self, console: Any, *, max_rows: int = 20) -> None:
        """Print the report as rich tables."""
        from rich.table import Table

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
        validators = Table(title="Validator participation")
        for column in ("validator", "proposed", "sealed", "eligible", "sealed %"):
            validators.add_column(column, justify="left" if column == "validator" else "right")
        for v, st in sorted(self.validators.items()):
            share = f"{100 * st.sealed / st.eligible:.1f}" if st.eligible else "-"
            validators.add_row("0x" + v.hex(), str(st.proposed), str(st.sealed), str(st.eligible), share)
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
        if self.anomalies:
            anomalies = Table(title=f"Anomalies ({len(self.anomalies)}; last {max_rows} shown)")
            anomalies.add_column("block", justify="right")
            anomalies.add_column("what")
            for n, a in self.anomalies[-max_rows:]:
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
