"""The land leg in the real gateway, end to end with sealed events: a haulier plans a job from a
B/L it may read, its driver signs in with a code, gets the QR, shares positions (one refused:
before the window); the terminal gates the boxes out with the token (another terminal and a
warehouse are refused; the token again is a replay), the warehouse receives them with a seal
mismatch recorded as such (an EPCIS 2.0 receiving event and the warehouse's cargo events); the
custody chain shows each step signed by its party, pending until the chain has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.appkeys import OUTBOX
from gateway.events.model import Visibility, parse_time
from gateway.isotime import iso_time
from tests.gateway.land.support import (
    BOX1,
    BOX2,
    MBL,
    OTHER_WAREHOUSE,
    driver_phone,
    gateway_org,
    job_body,
    ok,
    refused,
    started,
)
from tests.support.readside import (
    CARRIER,
    HAULIER,
    TERMINAL,
    TERMINAL2,
    TRADER,
    WAREHOUSE,
)


def _outbox_events(land: Any, chain_org: int) -> list[Any]:
    """The events waiting in an organisation's outbox (no node: they wait there)."""
    pending = land.client.app[OUTBOX].pending(gateway_org(land, chain_org), 100)
    return [op.event for op in pending]


async def test_the_job_from_plan_to_receipt(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    phone = None
    try:
        driver, phone = await driver_phone(land, "Chan Tai Man", "9123 4567")
        job = await ok(await client.post("/v1/land/jobs", json=job_body(land, driver=driver),
                                         headers=land.auth(HAULIER)), 201)
        assert job["containers"] == [BOX1, BOX2]
        assert job["vehicle"] == "AB1234" and job["ccrn"] == "RI261207000123"
        assert job["driver"]["phone"] == "+85291234567"
        assert [(r["container"], r["valid"], r["basis"]) for r in job["rights"]] == [
            (BOX1, True, "carrier-release"), (BOX2, True, "carrier-release")]
        job_id = job["id"]

        # the driver sees the job (and only theirs), its token and its QR code
        mine = await ok(await phone.get("/v1/land/jobs"))
        assert [j["id"] for j in mine["jobs"]] == [job_id]
        issued = await ok(await phone.get(f"/v1/land/jobs/{job_id}/token"))
        text = issued["token"]
        jwk = await ok(await client.get("/v1/land/key", headers=land.auth(TERMINAL)))
        assert issued["claims"]["kid"] == jwk["kid"]
        assert issued["claims"]["r"] == {BOX1: "carrier-release", BOX2: "carrier-release"}
        svg = await phone.get(f"/v1/land/jobs/{job_id}/qr.svg")
        assert svg.status == 200 and svg.content_type == "image/svg+xml"
        assert (await svg.text()).lstrip().startswith(("<?xml", "<svg"))
        png = await phone.get(f"/v1/land/jobs/{job_id}/qr.png")
        assert png.status == 200 and (await png.read()).startswith(b"\x89PNG\r\n\x1a\n")

        # positions: taken offline and sent later with their times; one before the window
        sent = await ok(await phone.post(f"/v1/land/jobs/{job_id}/positions", json={
            "positions": [
                {"time": iso_time(land.now - 1800), "lat": 22.33, "lon": 114.12, "speed": 8.5},
                {"time": iso_time(land.now - 600), "lat": 22.34, "lon": 114.11},
                {"time": iso_time(land.now - 7200), "lat": 22.30, "lon": 114.10},
            ]}), 202)
        assert sent["accepted"] == 2
        assert [(r["index"], r["code"]) for r in sent["refused"]] == [(2, "before-window")]
        assert "before the job's window opens" in sent["refused"][0]["reason"]
        seen = await ok(await client.get(f"/v1/land/jobs/{job_id}/positions",
                                         headers=land.auth(TRADER)))
        assert [p["lat"] for p in seen["positions"]] == [22.33, 22.34]
        assert seen["latest"]["vehicle"] == "AB1234"

        # the trader, entitled to the boxes, sees the job without its driver
        traders = await ok(await client.get(f"/v1/land/jobs/{job_id}",
                                            headers=land.auth(TRADER)))
        assert traders["readableVia"] == "container" and traders["driver"] is None

        # gate-out: only the job's terminal, with the token
        body = {"token": text}
        await refused(await client.post("/v1/land/gate-out", json=body,
                                         headers=land.auth(TERMINAL2)),
                      403, "job-addressed-elsewhere")
        await refused(await client.post("/v1/land/gate-out", json=body,
                                         headers=land.auth(WAREHOUSE)), 403, "role-not-allowed")
        out = await ok(await client.post("/v1/land/gate-out", json=body,
                                         headers=land.auth(TERMINAL)), 201)
        assert out["state"] == "picked-up"
        assert [c["container"] for c in out["containers"]] == [BOX1, BOX2]
        assert {c["receipt"]["status"] for c in out["containers"]} == {"accepted"}
        # each box's public step (any holder of its number) and its details (the job's parties)
        gtot = _outbox_events(land, TERMINAL)
        assert [(e.event_type, e.subject.value) for e in gtot] == [
            ("TERMINAL.GTOT", BOX1), ("TERMINAL.GTOT", job_id),
            ("TERMINAL.GTOT", BOX2), ("TERMINAL.GTOT", job_id)]
        assert gtot[0].details == {"facilityCode": "HIT4"} and gtot[0].location == "HKHKG"
        assert gtot[0].visibility == Visibility("reference", ())
        assert gtot[1].details["job"] == job_id and gtot[1].details["vehicle"] == "AB1234"
        assert gtot[1].visibility == Visibility("named", (HAULIER, WAREHOUSE))
        again = await refused(await client.post("/v1/land/gate-out", json=body,
                                                headers=land.auth(TERMINAL)),
                              409, "token-replayed")
        assert "already used for the gate-out" in again["message"]

        # receipt: only the job's warehouse; a seal that differs is recorded as a mismatch
        receipt = {"token": text, "seals": {BOX1: ["SEAL001"], BOX2: ["seal 999"]},
                   "condition": "dent on the left door of CSQU3054390"}
        await refused(await client.post("/v1/land/receipts", json=receipt,
                                         headers=land.auth(OTHER_WAREHOUSE)),
                      403, "job-addressed-elsewhere")
        got = await ok(await client.post("/v1/land/receipts", json=receipt,
                                         headers=land.auth(WAREHOUSE)), 201)
        assert got["mismatch"] is True
        assert [(s["container"], s["match"]) for s in got["seals"]] == [(BOX1, True),
                                                                        (BOX2, False)]
        epcis = got["epcis"]["epcisBody"]["eventList"][0]
        assert epcis["type"] == "ObjectEvent" and epcis["bizStep"].endswith("receiving")
        assert epcis["epcList"] == [f"urn:epc:id:bic:{BOX1}", f"urn:epc:id:bic:{BOX2}"]
        await refused(await client.post("/v1/land/receipts", json=receipt,
                                        headers=land.auth(WAREHOUSE)), 409, "token-replayed")
        received = _outbox_events(land, WAREHOUSE)
        assert [(e.event_type, e.subject.value, e.details.get("sealsMatch"))
                for e in received] == [
            ("WAREHOUSE.RECEIPT", BOX1, None), ("WAREHOUSE.RECEIPT", job_id, True),
            ("WAREHOUSE.RECEIPT", BOX2, None), ("WAREHOUSE.RECEIPT", job_id, False)]
        assert received[3].details["sealsFound"] == ["SEAL999"]
        assert received[2].details["bizStep"] == "receiving" and received[2].related == ()
        assert received[1].related[0].value == MBL

        # after delivery, positions are refused one by one
        delivered = parse_time(got["time"])
        late = await ok(await phone.post(f"/v1/land/jobs/{job_id}/positions", json={
            "positions": [{"time": iso_time(delivered - 1), "lat": 22.35, "lon": 114.1},
                          {"time": iso_time(delivered + 1), "lat": 22.36, "lon": 114.1}]}),
            202)
        assert late["accepted"] == 1
        assert [(r["index"], r["code"]) for r in late["refused"]] == [(1, "after-delivery")]

        # custody as the trader sees it: the carrier's release on chain, then the gate-out and
        # the receipt waiting in the terminal's and the warehouse's outboxes
        chain = await ok(await client.get(f"/v1/land/jobs/{job_id}/custody",
                                          headers=land.auth(TRADER)))
        steps = [(s["step"], s["party"]["id"], s["status"])
                 for s in chain["containers"][0]["steps"]]
        assert steps == [("carrier-release", CARRIER, "on-chain"),
                         ("gate-out", TERMINAL, "accepted"),
                         ("warehouse-receipt", WAREHOUSE, "accepted")]
        # the delivered job no longer holds the boxes' release: a new job on BOX1 does
        again = await ok(await client.post("/v1/land/jobs", json=job_body(
            land, references=[{"kind": "container", "value": BOX1}], seals={}),
            headers=land.auth(HAULIER)), 201)
        assert again["holders"] == {BOX1: True}
        # once the terminal's gate-out is on chain, the chain shows its signed event
        recorded = land.port.record(TERMINAL, gtot[0], block_time=land.now + 5, reference=True)
        chain = await ok(await client.get(f"/v1/land/containers/{BOX1}/custody",
                                          headers=land.auth(TRADER)))
        gate = next(s for s in chain["jobs"][0]["chain"] if s["step"] == "gate-out")
        assert gate["status"] == "on-chain"
        assert gate["signed"]["eventId"] == recorded.event_id
        assert gate["party"]["name"] == "Hong Kong Container Terminal"
    finally:
        if phone is not None:
            await phone.close()
        await client.close()
