"""``portledger alerts evaluate`` end to end on files (tests/gateway/alerts/data/, ours)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.alerts.cli import alerts, read_events
from gateway.alerts.facts import build_facts
from gateway.alerts.model import by_key
from gateway.alerts.rules import Settings, as_of, evaluate
from gateway.alerts.tariff import DAILY_FIGURES, load_tariff

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[3]
TARIFF = ROOT / "examples" / "tariffs" / "example_hk_storage.json"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(alerts, ["evaluate", *map(str, args)])


def lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def by_kind(found: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in found:
        out.setdefault(alert["kind"], []).append(alert)
    return out


def test_the_port_story() -> None:
    result = run("--events", DATA / "port_story.jsonl", "--tariff", TARIFF,
                 "--now", "2026-12-03T10:00:00+08:00")
    assert result.exit_code == 0, result.stderr
    kinds = by_kind(lines(result))
    assert sorted(kinds) == ["customs-hold", "free-time-ending", "not-picked-up",
                             "reefer-excursion", "vessel-delay"]

    (delay,) = kinds["vessel-delay"]
    assert delay["subject"] == {"kind": "vessel", "value": "9321483"}
    assert (delay["slip_hours"], delay["source"]) == (32.0, "Kwai Tsing Terminal")
    assert delay["first_source"] == "Pacific Ocean Line" and delay["port"] == "HKHKG"
    # no arrival was reported and every ETA is more than 48 h past by 3 Dec
    assert (delay["state"], delay["reason"]) == ("resolved", "eta-passed")

    (meter,) = kinds["not-picked-up"]
    # available 26 Nov 09:00 HKT: LFD 30 Nov; 3 Dec is day 8: days 6-8 at HK$100 (20')
    assert meter["subject"]["value"] == "CSQU3054383" and meter["state"] == "open"
    assert (meter["days_in_yard"], meter["last_free_day"]) == (8, "2026-11-30")
    assert (meter["accrued"], meter["per_day"], meter["currency"]) == (300, 100, "HKD")
    assert meter["pick_up_blocked"] is True
    assert meter["holds"][0]["on"] == {"kind": "declaration", "value": "HKD2026110001"}
    assert {s["ref"] for s in meter["sources"]} == {"5", "6", "7"}

    (warning,) = kinds["free-time-ending"]
    assert warning["state"] == "resolved" and warning["reason"] == "free-time-ended"
    # the 45' box left the next day: no storage alert for it
    assert all(a["subject"]["value"] != "PCOU2000010" for a in lines(result))

    (excursion,) = kinds["reefer-excursion"]
    assert excursion["subject"]["value"] == "PCOU2000026"
    # the readings stopped on 26 Nov: a week later the episode is closed for want of data
    assert (excursion["state"], excursion["peak_deviation"], excursion["setpoint"]) == \
        ("resolved", 3.8, -18.0)
    assert excursion["reason"] == "no-readings"
    assert excursion["defrost_readings_ignored"] == 1 and excursion["start"] == \
        "2026-11-26T02:15:00Z"

    (hold,) = kinds["customs-hold"]
    assert (hold["status"], hold["remark"]) == ("hold", "documents requested")

    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert (summary["events"], summary["readings"], summary["skipped"]) == (15, 0, 0)
    assert summary["tariff"]["label"].startswith("EXAMPLE")


def test_open_only_and_settings() -> None:
    before = run("--events", DATA / "port_story.jsonl", "--tariff", TARIFF,
                 "--now", "2026-11-25T12:00:00+08:00", "--open-only")
    assert before.exit_code == 0, before.stderr
    assert [(a["kind"], a["slip_hours"]) for a in lines(before)] == [("vessel-delay", 32.0)]
    result = run("--events", DATA / "port_story.jsonl", "--tariff", TARIFF,
                 "--now", "2026-11-25T12:00:00+08:00", "--open-only",
                 "--settings", DATA / "settings.json")
    assert result.exit_code == 0, result.stderr
    found = lines(result)
    assert all(a["state"] == "open" for a in found)
    assert [(a["kind"], a["slip_hours"]) for a in found] == [("eta-changed", 32.0)]
    early = run("--events", DATA / "port_story.jsonl", "--tariff", TARIFF,
                "--now", "2026-11-28T10:00:00+08:00", "--settings", DATA / "settings.json")
    (warning,) = by_kind(lines(early))["free-time-ending"]
    assert warning["opened"] == "2026-11-27T16:00:00Z"  # 2 days before the 30 Nov LFD, HKT


def test_lines_of_feed_parse() -> None:
    result = run("--events", DATA / "feed_parse_lines.jsonl", "--tariff", TARIFF,
                 "--now", "2026-12-03T10:00:00+08:00")
    assert result.exit_code == 0, result.stderr
    kinds = by_kind(lines(result))
    (meter,) = kinds["not-picked-up"]
    assert (meter["size"], meter["reefer"], meter["accrued"], meter["per_day"]) == \
        ("40", True, 1200, 400)
    (excursion,) = kinds["reefer-excursion"]
    assert excursion["readings"] == 3 and excursion["sources"][0]["kind"] == "reading"
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert (summary["events"], summary["readings"], summary["skipped"]) == (2, 5, 0)


def test_bad_lines_fail_with_a_message_each() -> None:
    result = run("--events", DATA / "bad_lines.jsonl", "--now", "2026-12-03T10:00:00Z")
    assert result.exit_code == 1 and result.stdout == ""
    messages = result.stderr.splitlines()
    for number, words in [(2, "check digit"), (3, "not JSON"), (4, "not a JSON object"),
                          (5, "not a canonical event: /type"), (6, "no time zone"),
                          (7, "not a reading"), (8, "kind is event, reading or error")]:
        assert any(f"line {number}: " in m and words in m for m in messages), (number, messages)
    assert not any("line 1:" in m or "line 9:" in m or "line 10:" in m for m in messages)
    assert "7 bad line(s)" in messages[-1]


def test_skip_bad_reads_on() -> None:
    result = run("--events", DATA / "bad_lines.jsonl", "--tariff", TARIFF,
                 "--now", "2026-12-03T10:00:00Z", "--skip-bad")
    assert result.exit_code == 0
    assert sum("skipped line" in m for m in result.stderr.splitlines()) == 7
    assert by_kind(lines(result))["not-picked-up"][0]["subject"]["value"] == "CSQU3054383"


def test_a_bad_tariff_exits_2_with_where_and_why(tmp_path: Path) -> None:
    result = run("--events", DATA / "port_story.jsonl", "--tariff", DATA / "bad_tariff.json",
                 "--now", "2026-12-03T10:00:00Z")
    assert result.exit_code == 2 and result.stdout == ""
    assert "/bands/1/from_day" in result.stderr and "band-gap" in result.stderr
    broken = tmp_path / "t.json"
    broken.write_text("{\"currency\": ")
    result = run("--events", DATA / "port_story.jsonl", "--tariff", broken,
                 "--now", "2026-12-03T10:00:00Z")
    assert result.exit_code == 2 and "not-json" in result.stderr
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"vessel": {"delay_hours": "soon"}}))
    result = run("--events", DATA / "port_story.jsonl", "--settings", settings,
                 "--now", "2026-12-03T10:00:00Z")
    assert result.exit_code == 2 and "/vessel/delay_hours" in result.stderr


def test_now_needs_a_zone() -> None:
    result = run("--events", DATA / "port_story.jsonl", "--now", "2026-12-03T10:00:00")
    assert result.exit_code == 2 and "time zone" in result.stderr


def test_retracts_names_a_line(tmp_path: Path) -> None:
    story = (DATA / "port_story.jsonl").read_text().splitlines()
    hold = json.loads(story[6])
    correction = {**hold, "type": "CUSTOMS.CUSR", "classifier": "PLN", "retracts": 7}
    events = tmp_path / "e.jsonl"
    events.write_text("\n".join([*story, json.dumps(correction)]) + "\n")
    result = run("--events", events, "--tariff", TARIFF, "--now", "2026-12-03T10:00:00Z")
    assert result.exit_code == 0, result.stderr
    assert "customs-hold" not in by_kind(lines(result))
    assert by_kind(lines(result))["not-picked-up"][0]["pick_up_blocked"] is False


def test_the_group_runs_as_a_program() -> None:
    """The same command in a real process (as `portledger alerts` will run it)."""
    code = "from gateway.alerts.cli import alerts; alerts()"
    done = subprocess.run(
        [sys.executable, "-c", code, "evaluate", "--events", str(DATA / "port_story.jsonl"),
         "--tariff", str(TARIFF), "--now", "2026-12-03T10:00:00+08:00", "--open-only"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["kind"] for line in done.stdout.splitlines()} == {
        "not-picked-up", "customs-hold"}


@pytest.mark.parametrize("read_on", ["2026-12-03T10:00:00+08:00", "2026-12-05T23:59:00+08:00",
                                     "2026-12-06T00:00:00+08:00", "2026-12-20T10:00:00+08:00"])
def test_an_episode_read_later_says_what_the_dry_run_says_then(read_on: str) -> None:
    """A storage episode recorded when it opened and read days later (its money worked out at
    read time, :func:`as_of`) carries the figures of a dry run at that later time — across
    the band boundary (HK$200 a day from day 11, 6 Dec) too."""
    result = run("--events", DATA / "port_story.jsonl", "--tariff", TARIFF, "--now", read_on)
    assert result.exit_code == 0, result.stderr
    (dry,) = by_kind(lines(result))["not-picked-up"]
    with open(DATA / "port_story.jsonl", "rb") as stream:
        observed, measured, bad = read_events(stream, "file")
    assert bad == []
    facts = build_facts(observed, measured)
    tariff = load_tariff(TARIFF.read_bytes())
    opened = evaluate(facts, Settings(), tariff, None, iso("2026-12-01T00:30:00+08:00"))
    (recorded,) = [a for a in opened.alerts if a.kind == "not-picked-up"]
    later = iso(read_on)
    if recorded.next_check is not None and recorded.next_check <= later:
        # the clock pass visits it at its next check: the band's new rate is recorded then
        (recorded,) = [a for a in evaluate(facts, Settings(), tariff, None, later,
                                           by_key(opened.alerts)).alerts
                       if a.kind == "not-picked-up"]
    read = as_of(recorded.to_json(), later)
    for name in (*DAILY_FIGURES, "last_free_day", "holds", "pick_up_blocked", "state"):
        assert read.get(name) == dry.get(name), name
    assert dry["days_in_yard"] == (date.fromisoformat(read_on[:10]) - date(2026, 11, 26)).days + 1


def iso(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())
