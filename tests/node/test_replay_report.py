"""``portledger replay`` re-verifies a sealed multi-validator chain and reports what an auditor
needs: events per organisation and type, validator participation, governance, anomalies, and one
subject's full history exported to CSV and JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from consensus import extradata
from consensus.validation import proposer_for
from devnet.sealedchain import ChainBuilder
from node.audit import ABSENT_BLOCKS, AuditReport
from node.db import LevelDB
from node.genesis import Genesis
from node.replay import replay_datadir, split_by_gas
from portledger.cli import main
from tests.support.proof_chain import CONTAINER, build_chain, event


def test_replay_report_on_a_chain_with_validator_changes(tmp_path: Path) -> None:
    sealed = build_chain(tmp_path / "node")
    head = sealed.ledger.head().block_number
    newcomer, leaving = sealed.changes
    sealed.ledger.db.close()
    out = CliRunner().invoke(
        main,
        ["replay", "--datadir", str(tmp_path / "node"), "--subject", CONTAINER,
         "--export-csv", str(tmp_path / "h.csv"), "--export-json", str(tmp_path / "h.json"),
         "--report-json", str(tmp_path / "report.json")],
    )
    assert out.exit_code == 0, out.output
    assert "OK: every root verified" in out.output
    assert "Validator participation" in out.output and "Cargo events per type" in out.output

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["blocks"] == head
    assert report["cargoEvents"] == 10
    assert report["eventsByType"]["TERMINAL.GTOT"] == 2
    assert report["eventsByOrganisation"]["Kwai Tsing Container Terminal (demo)"] == 7
    assert report["roundChanges"] == 1
    assert [c["block"] for c in report["validatorChanges"]] == [newcomer, leaving]
    assert report["governance"]["ProposalExecuted"] == 2
    assert report["governance"]["ValidatorAdded"] == 1 and report["governance"]["ValidatorRemoved"] == 1
    # Every block proposed by someone; no validator sealed a block it was not eligible for.
    validators = report["validators"]
    assert sum(v["proposed"] for v in validators.values()) == head
    assert all(v["sealed"] <= v["eligible"] for v in validators.values())
    anomalies = [a["what"] for a in report["anomalies"]]
    assert any("round change" in a for a in anomalies)
    assert any("retracts event" in a for a in anomalies)
    assert any("reverted" in a for a in anomalies)
    # Blocks sealed by a quorum (3 of 4) are QBFT working: sealing is a figure, not an anomaly.
    assert not any("seal" in a for a in anomalies)
    sealing = report["sealing"]
    assert sealing["seals"] == sum(v["sealed"] for v in validators.values())
    assert sealing["eligible"] == sum(v["eligible"] for v in validators.values())
    assert 0.7 < sealing["share"] < 1 and sealing["blocksBelowQuorum"] == 0
    assert sealing["absences"] == []
    assert all(v["sealedShare"] == (v["sealed"] / v["eligible"] if v["eligible"] else None)
               for v in validators.values())

    history = json.loads((tmp_path / "h.json").read_text())["events"]
    with open(tmp_path / "h.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(history) == len(rows) == 6
    assert [h["type"] for h in history] == ["TERMINAL.DISC"] + ["TERMINAL.AVPU"] * 3 + ["TERMINAL.GTOT"] * 2
    assert [int(r["block"]) for r in rows] == [h["block"] for h in history]
    assert history == sorted(history, key=lambda h: (h["block"], h["logIndex"]))


def test_replay_reports_nothing_when_asked_not_to(tmp_path: Path) -> None:
    sealed = build_chain(tmp_path / "node")
    sealed.ledger.db.close()
    out = CliRunner().invoke(main, ["replay", "--datadir", str(tmp_path / "node"), "--no-report"])
    assert out.exit_code == 0, out.output
    assert "every root verified" in out.output and "Validator participation" not in out.output


@pytest.mark.slow
def test_replay_of_100k_events_reproduces_every_root(tmp_path: Path) -> None:
    """The acceptance run: a sealed chain of 100 000 cargo events (bench/bench_replay.py's),
    replayed from genesis through the CLI, every root checked, the report printed."""
    from bench.bench_replay import build

    chain, events = build(tmp_path / "node", 100_000, 100, 10)
    chain.ledger.db.close()  # type: ignore[attr-defined]
    out = CliRunner().invoke(
        main, ["replay", "--datadir", str(tmp_path / "node"), "--report-json", str(tmp_path / "r.json")]
    )
    assert out.exit_code == 0, out.output
    assert "OK: every root verified" in out.output and "Validator participation" in out.output
    assert json.loads((tmp_path / "r.json").read_text())["cargoEvents"] == events == 100_000


def _replay(root: Path, jobs: int, scratch: Path, subject: str | None = CONTAINER) -> tuple[Any, Any]:
    genesis = Genesis.load(root / "genesis.json")
    report = AuditReport(genesis, subject=subject)
    scratch.mkdir()
    summary = replay_datadir(
        genesis, root / "chain", scratch, jobs=jobs, report=report, show_progress=False,
        min_segment_gas=1, worker_start_gas=0,
    )
    return summary, report


def test_parallel_replay_gives_the_sequential_result(tmp_path: Path) -> None:
    """Segments replayed in three processes verify the same blocks and merge into the same
    report (validator changes, a round change, a reverted transaction and the subject's
    history all fall in different segments) as one sequential pass."""
    sealed = build_chain(tmp_path / "node")
    head = sealed.ledger.head()
    sealed.ledger.db.close()
    one, report_one = _replay(tmp_path / "node", 1, tmp_path / "s1")
    three, report_three = _replay(tmp_path / "node", 3, tmp_path / "s3")
    assert one.failure is None and three.failure is None, (one.failure, three.failure)
    assert (one.processes, three.processes) == (1, 3)
    assert three.blocks == one.blocks == head.block_number
    assert (three.transactions, three.logs, three.gas) == (one.transactions, one.logs, one.gas)
    assert three.head_hash == one.head_hash == head.hash
    assert report_three.as_dict() == report_one.as_dict()
    assert report_three.history == report_one.history and len(report_one.history) == 6


def test_parallel_replay_refuses_a_forged_state_node(tmp_path: Path) -> None:
    """A later segment starts from the audited database's state — read by hash only. Changing
    one byte of the state root node where the second segment starts makes that segment fail
    (a sequential replay never reads it); the same for a node that was removed."""
    sealed = build_chain(tmp_path / "node")
    ledger = sealed.ledger
    head = ledger.head().block_number
    gas = [ledger.header_by_number(n).gas_used for n in range(1, head + 1)]
    first_of_second = split_by_gas(gas, 2)[1][0]
    root = ledger.header_by_number(first_of_second - 1).state_root
    node = bytearray(ledger.db[root])
    node[-1] ^= 1
    ledger.db[root] = bytes(node)
    ledger.db.close()

    sequential, _ = _replay(tmp_path / "node", 1, tmp_path / "s1", subject=None)
    assert sequential.failure is None
    parallel, _ = _replay(tmp_path / "node", 2, tmp_path / "s2", subject=None)
    assert parallel.failure is not None and f"segment #{first_of_second}.." in parallel.failure
    assert f"0x{root.hex()} under block #{first_of_second - 1}'s state root" in parallel.failure
    assert "missing from the audited database or does not match its hash" in parallel.failure

    db = LevelDB(str(tmp_path / "node" / "chain"))
    del db[root]
    db.close()
    removed, _ = _replay(tmp_path / "node", 2, tmp_path / "s3", subject=None)
    assert removed.failure is not None and f"0x{root.hex()} under block" in removed.failure


def test_split_by_gas() -> None:
    assert split_by_gas([10] * 10, 2) == [(1, 5), (6, 10)]
    assert split_by_gas([10] * 3, 5) == [(1, 1), (2, 2), (3, 3)]
    assert split_by_gas([0, 0, 10_000_000, 0], 2) == [(1, 3), (4, 4)]
    assert split_by_gas([5], 1) == [(1, 1)]
    # Workers start late: the calling process's range takes their head start.
    ten = [9_900_000] * 10  # 10 M of weight each with the per-block 100 000
    assert split_by_gas(ten, 2, head_start=20_000_000) == [(1, 6), (7, 10)]
    assert split_by_gas(ten, 3, head_start=10_000_000) == [(1, 4), (5, 7), (8, 10)]
    assert split_by_gas(ten, 2, head_start=10**12) == [(1, 10)]  # no worker could catch up


def _seal_without(b: ChainBuilder, absent: bytes, when: int) -> None:
    """Seal a block of one cargo event by a quorum of the validators that leaves ``absent`` out."""
    parent = b.ledger.head()
    validators = b.ledger.validators_at(parent)
    number = parent.block_number + 1
    executed = b.ledger.build(
        [b.cargo(1, [event(CONTAINER, "TERMINAL.AVPU", when)])],
        proposer=proposer_for(validators, number, 0), timestamp=parent.timestamp + 1,
    )
    digest = extradata.commit_digest(executed.block.header)
    sealers = [v for v in validators if v != absent][: extradata.quorum(len(validators))]
    b.ledger.commit(executed, seals=[extradata.sign_seal(digest, b.keys[v]) for v in sealers])


def test_a_validator_absent_for_many_blocks_is_an_anomaly(tmp_path: Path) -> None:
    """Validator 0 seals none of blocks 2..13 (12 blocks): reported once, as one absence;
    validator 1 misses 9 in a row (blocks 15..23): under the threshold, only its figures show it.
    The parallel replay's segments cut both runs and merge them into the same report."""
    b = ChainBuilder(tmp_path / "node")
    v = b.ledger.validators_at(b.ledger.head())
    assert ABSENT_BLOCKS == 10
    _seal_without(b, v[3], 0)
    for n in range(2, 14):
        _seal_without(b, v[0], n)
    _seal_without(b, v[3], 14)
    for n in range(15, 24):
        _seal_without(b, v[1], n)
    _seal_without(b, v[3], 24)
    b.db.close()
    one, report = _replay(tmp_path / "node", 1, tmp_path / "s1", subject=None)
    three, merged = _replay(tmp_path / "node", 3, tmp_path / "s3", subject=None)
    assert one.failure is None and three.failure is None and three.processes == 3
    assert report.absences() == merged.absences() == [(2, 13, v[0])]
    assert merged.as_dict() == report.as_dict()
    sealing = report.as_dict()["sealing"]
    assert sealing["absences"] == [{"validator": "0x" + v[0].hex(), "firstBlock": 2, "lastBlock": 13}]
    assert sealing["blocksBelowQuorum"] == 0 and sealing["share"] == 3 / 4
    assert [(a["block"], a["what"]) for a in report.as_dict()["anomalies"]] == [
        (2, f"validator 0x{v[0].hex()} sealed none of the 12 blocks #2..#13 it could have sealed")
    ]
    assert report.validators[v[0]].sealed == 24 - 12 and report.validators[v[1]].sealed == 24 - 9


def test_a_quorum_of_seals_is_no_anomaly_and_fewer_is(tmp_path: Path) -> None:
    """Twelve blocks sealed by 3 of 4 validators, in rotation: no anomaly, 75 % of the seals.
    A block with fewer seals than the quorum (an import refuses it) is reported."""
    b = ChainBuilder(tmp_path / "node")
    for n in range(12):
        b.seal([b.cargo(1, [event(CONTAINER, "TERMINAL.AVPU", n)])])
    ledger = b.ledger
    report = AuditReport(b.genesis)
    for n in range(1, 13):
        header = ledger.header_by_number(n)
        block = ledger.block_by_header(header)
        report.observe(block, _Receipts(ledger.receipts(header)), ledger.header_by_number(n - 1))
    assert report.all_anomalies() == [] and report.absences() == []
    assert report.sealing_share == 3 / 4
    assert all(s.share == 3 / 4 for s in report.validators.values())

    header = ledger.header_by_number(12)
    extra = extradata.decode(header.extra_data)
    one_seal = header.copy(extra_data=extra.with_seals(extra.seals[:1]).encode())
    block = ledger.block_by_header(header).copy(header=one_seal)
    report.observe(block, _Receipts(()), ledger.header_by_number(11))
    assert report.below_quorum == 1
    assert report.all_anomalies() == [(12, "1 of 4 validators sealed, below the quorum of 3")]
    b.db.close()


class _Receipts:
    """What :meth:`AuditReport.observe` reads of a block's result."""

    def __init__(self, receipts: Any) -> None:
        self.receipts = receipts
