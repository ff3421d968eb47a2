"""``POST /v1/feeds/{format}`` through the real app: outbox, telemetry store, roles, reports."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from devnet.simfeeds import cargo_imp, json_feeds
from gateway.config import GatewayConfig
from gateway.feeds import ais
from gateway.feeds import api as feeds_api
from gateway.feeds.model import MAX_FEED_BYTES
from tests.support.intake import IntakeHarness, intake_harness

TERMINAL, CARRIER, HAULIER, AIRLINE, CUSTOMS, TRADER = 2, 4, 7, 9, 10, 13
DATA = Path(__file__).parents[2] / "data"
T0 = 1_795_000_000  # 2026-11-18
SHIPMENT = cargo_imp.AirShipment(awb="160-12345675", origin="HKG", destination="AMS",
                                 flight="CX0271", pieces=12, weight_kg=350.5)


def _fsu_file() -> bytes:
    return cargo_imp.write(cargo_imp.sequence(SHIPMENT, datetime(2026, 11, 20, 1, 30)))


def _reefer_file() -> bytes:
    reefer = json_feeds.Reefer(container="CSQU3054383")
    return json.dumps(json_feeds.reefer_events(reefer, start=T0, minutes=60)).encode()


@pytest.fixture
async def port(aiohttp_client, gateway_config: GatewayConfig) -> IntakeHarness:
    return await intake_harness(aiohttp_client, gateway_config, [
        (TERMINAL, "Kwai Tsing Container Terminal", ("terminal",)),
        (CARRIER, "Pacific Ocean Line", ("carrier",)),
        (HAULIER, "Swift Haulage", ("haulier",)),
        (AIRLINE, "Cathay Air Cargo", ("airline",)),
        (CUSTOMS, "Customs and Excise", ("customs",)),
        (TRADER, "Sino Trading Company", ()),
    ])


async def _post(port: IntakeHarness, fmt: str, org: int, data: bytes, query: str = ""):
    response = await port.post(f"/v1/feeds/{fmt}{query}", org, data=data,
                               headers={"Content-Type": "application/octet-stream"})
    return response.status, await response.json()


async def test_dry_run_reports_and_accepts_nothing(port):
    status, body = await _post(port, "cargo-imp", AIRLINE, _fsu_file(), "?dryRun=true")
    assert status == 200, body
    assert body["dryRun"] is True and not port.pending(AIRLINE)
    kinds = [line["kind"] for line in body["report"]]
    assert kinds == ["event"] * 8
    codes = [line["type"] for line in body["report"]]
    assert codes == [f"AIR.{c}" for c in ("BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV")]
    assert {line["subject"]["value"] for line in body["report"]} == {"16012345675"}
    assert body["summary"]["accepted"] == {"events": 8, "readings": 0}


async def test_accepted_once_and_resent_file_is_not_recorded_twice(port):
    status, body = await _post(port, "cargo-imp", AIRLINE, _fsu_file(),
                               f"?visibility=reference&readers={TRADER}")
    assert status == 202, body
    assert len(body["receipts"]) == 8 and not any(r["duplicate"] for r in body["receipts"])
    pending = port.pending(AIRLINE)
    assert len(pending) == 8
    assert {op.event.visibility.readers for op in pending} == {(TRADER,)}
    status, again = await _post(port, "auto", AIRLINE, _fsu_file(),
                                f"?visibility=reference&readers={TRADER}")
    assert status == 202 and again["format"] == "cargo-imp"
    assert all(r["duplicate"] for r in again["receipts"])
    assert len(port.pending(AIRLINE)) == 8


async def test_a_terminal_may_not_send_air_statuses(port):
    status, body = await _post(port, "cargo-imp", TERMINAL, _fsu_file())
    assert status == 422, body
    assert body["error"]["code"] == "nothing-accepted"
    refusals = [line for line in body["error"]["details"]["report"] if line["kind"] == "error"]
    assert refusals and {r["code"] for r in refusals} == {"role-not-allowed"}
    assert not port.pending(TERMINAL)


async def test_readings_go_to_telemetry_not_the_outbox(port):
    status, body = await _post(port, "dcsa-reefer", TERMINAL, _reefer_file())
    assert status == 202, body
    stored = body["readings"]["stored"]
    assert stored > 0 and body["readings"]["duplicate"] == 0
    status, again = await _post(port, "dcsa-reefer", TERMINAL, _reefer_file())
    assert status == 202 and again["readings"] == {"stored": 0, "duplicate": stored}
    # the owner reads them back; a stranger to the container does not
    response = await port.get(
        "/v1/telemetry/readings?subject=container:CSQU3054383&type=reefer", TERMINAL)
    assert response.status == 200
    response = await port.get(
        "/v1/telemetry/readings?subject=container:CSQU3054383&type=reefer", TRADER)
    assert response.status == 404


async def test_truck_positions_from_a_terminal_are_refused(port):
    fixes = json_feeds.truck_positions("XX1234", [(22.35, 114.12), (22.37, 114.14)], start=T0)
    status, body = await _post(port, "gps", TERMINAL, json_feeds.gps_json(fixes))
    assert status == 422 and body["error"]["code"] == "nothing-accepted"
    status, body = await _post(port, "gps", HAULIER, json_feeds.gps_csv(fixes))
    assert status == 202 and body["readings"]["stored"] == len(fixes)


@pytest.mark.parametrize(("fmt", "data", "status", "code"), [
    ("edifact", b"this is not EDIFACT at all", 422, "wrong-format"),
    ("telex", b"anything", 404, "unknown-format"),
    ("auto", b"\x00\x01\x02 binary", 422, "wrong-format"),
    ("ais", b"   \n", 422, "empty-upload"),
])
async def test_bad_files_get_a_typed_4xx(port, fmt, data, status, code):
    got, body = await _post(port, fmt, TERMINAL, data)
    assert (got, body["error"]["code"]) == (status, code), body


async def test_bad_query_and_anonymous(port):
    got, body = await _post(port, "ais", TERMINAL, b"x", "?dryRun=maybe")
    assert got == 400 and body["error"]["code"] == "bad-query"
    response = await port.client.post("/v1/feeds/ais", data=b"x")
    assert response.status == 401


async def test_uploads_above_the_limit_get_413(port, monkeypatch):
    # declared too large: refused before the body is read (the client lies about the length,
    # so this connection is not used again)
    response = await port.client.post(
        "/v1/feeds/ais", data=b"x" * 10,
        headers={**port.auth(TERMINAL), "Content-Length": str(MAX_FEED_BYTES + 1),
                 "Connection": "close"})
    assert response.status == 413

    # streamed (chunked, no length) past the limit: refused once the limit is crossed (a
    # limit of 2 MiB here: the same check, without parsing 50 MB of AIS first)
    limit = 2 * 1024 * 1024
    monkeypatch.setattr(feeds_api, "MAX_FEED_BYTES", limit)

    async def chunks():
        line = b"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26\n" * 2_000
        sent = 0
        while sent <= limit:
            yield line
            sent += len(line)

    response = await port.client.post("/v1/feeds/ais", data=chunks(),
                                      headers=port.auth(TERMINAL))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload-too-large"


async def test_a_named_readers_reads_are_in_the_owners_access_log(port):
    status, body = await _post(port, "dcsa-reefer", TERMINAL, _reefer_file(),
                               f"?readers={CARRIER}")
    assert status == 202 and body["readings"]["stored"] > 0
    query = "/v1/telemetry/readings?subject=container:CSQU3054383&type=reefer"
    assert (await port.get(query, CARRIER)).status == 200
    assert (await port.get(query, TRADER)).status == 404
    response = await port.get("/v1/access-log", TERMINAL)
    entries = (await response.json())["entries"]
    assert [(e["reader"], e["via"]) for e in entries] == [(CARRIER, "reading:named")]
    # the owner's own reads are not logged
    assert (await port.get(query, TERMINAL)).status == 200
    response = await port.get("/v1/access-log", TERMINAL)
    assert len((await response.json())["entries"]) == 1


async def test_an_ais_log_is_stored_as_it_streams(port, monkeypatch):
    monkeypatch.setattr(feeds_api, "AIS_BATCH", 500)  # many batches from one upload
    monkeypatch.setattr(feeds_api, "CHUNK_BYTES", 4096)
    log = (DATA / "ais" / "gpsd-ais-nmea.log").read_bytes()
    status, body = await _post(port, "auto", TERMINAL, log)
    assert status == 202, body
    whole = ais.parse(log, received_at=T0)
    assert body["format"] == "ais"
    assert body["summary"]["readings"] == len(whole.readings) > 100
    assert body["summary"]["errors"] == len(whole.errors)
    assert body["summary"]["stats"]["sentences"] == whole.stats["sentences"]
    assert body["readings"]["stored"] + body["readings"]["duplicate"] == len(whole.readings)
    status, again = await _post(port, "ais", TERMINAL, log)
    assert status == 202 and again["readings"]["stored"] == 0
    # a bank may not publish AIS: parsed and reported, nothing stored
    status, refused = await _post(port, "ais", TRADER, log)
    assert status == 422 and refused["error"]["code"] == "nothing-accepted"
