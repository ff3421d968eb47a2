"""``portledger feed parse`` (the conformance kit) and ``feed push`` (a file drop) as users run them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from gateway.config import GatewayConfig
from gateway.feeds.cli import feed
from tests.support.intake import intake_harness

DATA = Path(__file__).parents[2] / "data"
COARRI = DATA / "edifact" / "php-edifact-D95BCOARRI.edi"
AIS_LOG = DATA / "ais" / "gpsd-sample.aivdm"
TERMINAL = 2


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_parse_writes_json_lines_and_detects_the_format() -> None:
    result = CliRunner().invoke(feed, ["parse", str(COARRI)])
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    events = [line for line in lines if line["kind"] == "event"]
    assert len(events) == 21  # the Genoa file: 2 discharged, 19 loaded
    assert {e["type"] for e in events} == {"TERMINAL.DISC", "TERMINAL.LOAD"}
    assert all(e["subject"]["kind"] == "container" and e["id"].startswith("feed:edifact:")
               for e in events)
    assert '"format": "edifact"' in result.stderr


def test_parse_ais_readings_carry_the_decoded_values() -> None:
    result = CliRunner().invoke(feed, ["parse", "--format", "ais", str(AIS_LOG)])
    assert result.exit_code == 0, result.output
    readings = [line for line in _lines(result.stdout) if line["kind"] == "reading"]
    positions = [r for r in readings if r["type"] == "ais-position"]
    static = [r for r in readings if r["type"] == "ais-static"]
    assert positions and static
    assert {"mmsi", "lat", "lon", "sog", "cog", "heading"} <= set(positions[0])
    assert {"imo", "callsign", "name", "destination"} <= set(static[0])


def test_per_line_errors_still_exit_0_and_another_format_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nmea"
    broken.write_bytes(AIS_LOG.read_bytes() + b"!AIVDM,1,1,,A,15M67FC000G?ufbE`FepT@3n00Sa,0*00\n")
    result = CliRunner().invoke(feed, ["parse", "--format", "ais", str(broken)])
    assert result.exit_code == 0
    assert any(line["kind"] == "error" and line["code"] == "bad-checksum"
               for line in _lines(result.stdout))
    result = CliRunner().invoke(feed, ["parse", "--format", "edifact", str(AIS_LOG)])
    assert result.exit_code == 2 and "not a edifact file" in result.stderr
    text = tmp_path / "letter.txt"
    text.write_text("Dear Sir, please find the containers attached.\n")
    assert CliRunner().invoke(feed, ["parse", str(text)]).exit_code == 2


async def test_push_sends_the_file_and_prints_the_report(aiohttp_client,
                                                         gateway_config: GatewayConfig) -> None:
    port = await intake_harness(aiohttp_client, gateway_config, [
        (TERMINAL, "Kwai Tsing Container Terminal", ("terminal",))])
    url = str(port.client.make_url("")).rstrip("/")
    key = port.keys[TERMINAL]

    def push(*extra: str):
        return CliRunner().invoke(feed, ["push", "--format", "edifact", "--gateway", url,
                                         "--api-key", key, *extra, str(COARRI)])

    result = await asyncio.to_thread(push, "--dry-run")
    assert result.exit_code == 0, result.output
    assert len([x for x in _lines(result.stdout) if x["kind"] == "event"]) == 21
    assert not port.pending(TERMINAL)
    result = await asyncio.to_thread(push, "--visibility", "reference")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stderr.splitlines()[-1])["receipts"] == 21
    assert len(port.pending(TERMINAL)) == 21
    result = await asyncio.to_thread(
        lambda: CliRunner().invoke(feed, ["push", "--format", "edifact", "--gateway", url,
                                          "--api-key", "plk_wrong", str(COARRI)]))
    assert result.exit_code == 1 and "gateway refused the file (401)" in result.output
