"""``portledger replay`` re-verifies a sealed multi-validator chain and reports what an auditor
needs: events per organisation and type, validator participation, governance, anomalies, and one
subject's full history exported to CSV and JSON."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli import main
from tests.proofs.chain import CONTAINER, build_chain


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
    assert any("did not seal" in a for a in anomalies)

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
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_replay import build

    chain, events = build(tmp_path / "node", 100_000, 100, 10)
    chain.ledger.db.close()  # type: ignore[attr-defined]
    out = CliRunner().invoke(
        main, ["replay", "--datadir", str(tmp_path / "node"), "--report-json", str(tmp_path / "r.json")]
    )
    assert out.exit_code == 0, out.output
    assert "OK: every root verified" in out.output and "Validator participation" in out.output
    assert json.loads((tmp_path / "r.json").read_text())["cargoEvents"] == events == 100_000
