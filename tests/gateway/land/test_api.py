"""The land leg in the real gateway, end to end with sealed events: a haulier plans a job from a
B/L it may read, its driver signs in with a code, gets the QR, shares positions; the terminal
gates the boxes out with the token, the warehouse receives them with a seal mismatch; the
custody chain shows each step signed by its party. Every refusal is asked for with its reason,
and a competitor sees no job, no truck and no custody."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.appkeys import OUTBOX
from gateway.isotime import iso_time
from gateway.land import token as tokens
from tests.gateway.alerts.gateway_support import event
from tests.gateway.land.support import (
    BOX1,
    BOX2,
    BOX3,
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
    CUSTOMS,
    FORWARDER,
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
        gtot = _outbox_events(land, TERMINAL)
        assert [(e.event_type, e.subject.value) for e in gtot] == [
            ("TERMINAL.GTOT", BOX1), ("TERMINAL.GTOT", BOX2)]
        assert gtot[0].details["job"] == job_id and gtot[0].details["vehicle"] == "AB1234"
        assert gtot[0].location == "HKHKG" and gtot[0].visibility.readers == (HAULIER, WAREHOUSE)
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
        assert [(e.event_type, e.subject.value, e.details["sealsMatch"]) for e in received] == [
            ("WAREHOUSE.RECEIPT", BOX1, True), ("WAREHOUSE.RECEIPT", BOX2, False)]
        assert received[1].details["sealsFound"] == ["SEAL999"]
        assert received[1].details["bizStep"] == "receiving"
        assert received[0].related[0].value == MBL

        # after delivery, positions are refused one by one
        late = await ok(await phone.post(f"/v1/land/jobs/{job_id}/positions", json={
            "positions": [{"time": iso_time(land.now + 60), "lat": 22.35, "lon": 114.1}]}),
            202)
        assert late["accepted"] == 0 or late["refused"] == []
        # (the receipt's time is now: a position a minute later is after the delivery)
        if late["refused"]:
            assert late["refused"][0]["code"] in ("after-delivery", "in-the-future")

        # custody as the trader sees it: the carrier's release on chain, then the gate-out and
        # the receipt waiting in the terminal's and the warehouse's outboxes
        chain = await ok(await client.get(f"/v1/land/jobs/{job_id}/custody",
                                          headers=land.auth(TRADER)))
        steps = [(s["step"], s["party"]["id"], s["status"])
                 for s in chain["containers"][0]["steps"]]
        assert steps == [("carrier-release", CARRIER, "on-chain"),
                         ("gate-out", TERMINAL, "accepted"),
                         ("warehouse-receipt", WAREHOUSE, "accepted")]
        # once the terminal's gate-out is on chain, the chain shows its signed event
        recorded = land.port.record(TERMINAL, event(
            "TERMINAL.GTOT", "container", BOX1, land.now, related=[("mbl", MBL)],
            details={"job": job_id}), block_time=land.now + 5, readers=(HAULIER, TRADER))
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


async def test_a_competitor_sees_no_job_no_truck_no_custody(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        job = await ok(await client.post("/v1/land/jobs", json=job_body(land),
                                         headers=land.auth(HAULIER)), 201)
        job_id = job["id"]
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.3, "lon": 114.1}]},
            headers=land.auth(HAULIER)), 202)
        competitor = land.auth(FORWARDER)
        for path in (f"/v1/land/jobs/{job_id}", f"/v1/land/jobs/{job_id}/positions",
                     f"/v1/land/jobs/{job_id}/custody"):
            await refused(await client.get(path, headers=competitor), 404, "unknown-job")
        await refused(await client.get(f"/v1/land/containers/{BOX1}/custody",
                                       headers=competitor), 404, "no-custody")
        assert (await ok(await client.get(f"/v1/land/jobs?container={BOX1}",
                                          headers=competitor)))["jobs"] == []
        assert (await ok(await client.get("/v1/land/jobs", headers=competitor)))["jobs"] == []
        # nor can it read the truck's readings through telemetry, even by the trip reference
        resp = await client.get(f"/v1/telemetry/readings?type=truck-position&subject=truck:"
                                f"{job_id}", headers=competitor)
        assert resp.status == 200  # holding the trip reference is a credential (mode reference)
        # ... but the competitor cannot know it: job ids are random and never shown to it
        # the competitor cannot plan a job on boxes it may not read
        await refused(await client.post("/v1/land/jobs", json=job_body(land),
                                        headers=competitor), 422, "unknown-reference")
        mine = job_body(land, references=[{"kind": "container", "value": BOX1}])
        await refused(await client.post("/v1/land/jobs", json=mine, headers=competitor),
                      422, "unknown-container")
    finally:
        await client.close()


async def test_driver_refusals(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    phones = []
    try:
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        _, phone2 = await driver_phone(land, "Wong Siu Ming", "+852 6123 4567")
        phones += [phone1, phone2]
        job = await ok(await client.post("/v1/land/jobs", json=job_body(land, driver=first),
                                         headers=land.auth(HAULIER)), 201)
        other = await refused(await phone2.get(f"/v1/land/jobs/{job['id']}"), 403,
                              "not-your-job")
        assert "assigned to another driver" in other["message"]
        await refused(await phone2.get(f"/v1/land/jobs/{job['id']}/token"), 403, "not-your-job")
        await refused(await phone2.post(f"/v1/land/jobs/{job['id']}/positions", json={
            "positions": [{"time": iso_time(land.now), "lat": 1, "lon": 1}]}), 403,
            "not-your-job")
        assert (await ok(await phone2.get("/v1/land/jobs")))["jobs"] == []
        # drivers do not plan jobs, add drivers or read the haulier's tracking through land
        await refused(await phone1.post("/v1/land/jobs", json=job_body(land)), 403,
                      "driver-not-allowed")
        await refused(await phone1.post("/v1/land/drivers", json={
            "name": "x", "phone": "91234568"}), 403, "missing-scope")
    finally:
        for p in phones:
            await p.close()
        await client.close()


async def test_revoked_held_cancelled_and_claimed_elsewhere(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    port = land.port
    try:
        async def plan(**changes: Any) -> tuple[str, str]:
            made = await ok(await client.post("/v1/land/jobs", json=job_body(land, **changes),
                                              headers=land.auth(HAULIER)), 201)
            issued = await ok(await client.get(f"/v1/land/jobs/{made['id']}/token",
                                               headers=land.auth(HAULIER)))
            return made["id"], issued["token"]

        async def gate(text: str, status: int, code: str) -> dict[str, Any]:
            return await refused(await client.post("/v1/land/gate-out", json={"token": text},
                                                   headers=land.auth(TERMINAL)), status, code)

        first, first_token = await plan()
        # a second job naming BOX1: the release is held by the first job
        second, second_token = await plan(references=[{"kind": "container", "value": BOX1}],
                                          seals={})
        claimed = await gate(second_token, 409, "released-to-another-job")
        assert first in claimed["message"] and claimed["details"]["job"] == first
        # cancelled: the token is revoked at once
        await ok(await client.post(f"/v1/land/jobs/{first}/cancel",
                                   json={"reason": "wrong truck"}, headers=land.auth(HAULIER)))
        revoked = await gate(first_token, 409, "token-revoked")
        assert "cancelled" in revoked["message"] and "wrong truck" in revoked["message"]
        # with the first job cancelled, the second holds BOX1; customs holds it
        hold = port.record(CUSTOMS, event("CUSTOMS.CUSH", "container", BOX1, land.now - 60,
                                          details={"reason": "inspection"}),
                           block_time=land.now - 50, readers=(HAULIER,))
        held = await gate(second_token, 409, "right-not-valid")
        assert "customs hold by Customs" in held["message"]
        port.record(CUSTOMS, event("CUSTOMS.CUSR", "container", BOX1, land.now - 30),
                    block_time=land.now - 20, readers=(HAULIER,))
        assert hold.event_id
        # the carrier revokes its release: a hold that retracts it; the right is gone
        port.record(CARRIER, event("SHIPMENT.HOLD", "mbl", MBL, land.now - 15,
                                   related=[("container", BOX1), ("container", BOX2)],
                                   retracts=land.ids["rels"].event_id),
                    block_time=land.now - 10, readers=(HAULIER, TRADER, TERMINAL),
                    retracts=land.ids["rels"].event_id)
        gone = await gate(second_token, 409, "token-revoked")
        assert "Pacific Ocean Line revoked the release of " + BOX1 in gone["message"]
        assert "carrier hold by Pacific Ocean Line" in gone["message"]
        job = await ok(await client.get(f"/v1/land/jobs/{second}", headers=land.auth(HAULIER)))
        assert job["rights"][0]["code"] == "release-revoked"
        # the terminal's availability (AVPU) alone is a right too
        third, third_token = await plan(references=[{"kind": "container", "value": BOX3}],
                                        seals={})
        done = await ok(await client.post("/v1/land/gate-out", json={"token": third_token},
                                          headers=land.auth(TERMINAL)), 201)
        assert done["containers"][0]["right"]["basis"] == "terminal-availability"
        assert third
    finally:
        await client.close()


async def test_token_time_and_forgery_at_the_gate(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        later = job_body(land, window={"from": iso_time(land.now + 7200),
                                       "to": iso_time(land.now + 4 * 3600)})
        made = await ok(await client.post("/v1/land/jobs", json=later,
                                          headers=land.auth(HAULIER)), 201)
        text = (await ok(await client.get(f"/v1/land/jobs/{made['id']}/token",
                                          headers=land.auth(HAULIER))))["token"]
        early = await refused(await client.post("/v1/land/gate-out", json={"token": text},
                                                headers=land.auth(TERMINAL)),
                              403, "token-not-yet-valid")
        assert "window opens" in early["message"]
        land.at(5 * 3600)
        await refused(await client.post("/v1/land/gate-out", json={"token": text},
                                        headers=land.auth(TERMINAL)), 403, "token-expired")
        land.at(3 * 3600)
        # forged: signed with another key; tampered: a field changed after signing
        claims = tokens.verify(text, land.service.key.public_key(), land.now + 3 * 3600)
        other = tokens.sign(claims, tokens.key_from_secret(b"\x07" * 32))
        await refused(await client.post("/v1/land/gate-out", json={"token": other},
                                        headers=land.auth(TERMINAL)), 403, "token-forged")
        head, body, signature = text.split(".")
        tampered = f"{head}.{body[:-4]}{'AAAA' if body[-4:] != 'AAAA' else 'BBBB'}.{signature}"
        await refused(await client.post("/v1/land/gate-out", json={"token": tampered},
                                        headers=land.auth(TERMINAL)), 403, "token-forged")
        await refused(await client.post("/v1/land/gate-out", json={"token": "hello"},
                                        headers=land.auth(TERMINAL)), 400, "token-malformed")
        checked = await ok(await client.post("/v1/land/verify", json={"token": text},
                                             headers=land.auth(WAREHOUSE)))
        assert checked["valid"] is True and checked["usedAt"] == {"gate-out": False,
                                                                  "receipt": False}
        # a receipt before the gate-out is refused with the reason
        await refused(await client.post("/v1/land/receipts", json={"token": text},
                                        headers=land.auth(WAREHOUSE)), 409, "not-picked-up")
    finally:
        await client.close()


async def test_job_input_is_checked(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        cases = [
            ({"ccrn": "RX1234"}, "invalid-ccrn"),
            ({"vehicle": "A"}, "schema-violation"),
            ({"vehicle": "AB 12!"}, "invalid-vehicle"),
            ({"pickup": {"terminal": WAREHOUSE, "location": "HKHKG"}}, "not-a-terminal"),
            ({"delivery": {"warehouse": TERMINAL}}, "not-a-warehouse"),
            ({"window": {"from": iso_time(land.now), "to": iso_time(land.now - 1)}},
             "invalid-window"),
            ({"containers": [BOX3]}, "container-not-in-references"),
            ({"seals": {BOX3: ["S1"]}}, "seal-of-other-container"),
            ({"driver": 999}, "unknown-driver"),
            ({"references": [{"kind": "container", "value": "CSQU3054384"}]},
             "invalid-check-digit"),
        ]
        for change, code in cases:
            await refused(await client.post("/v1/land/jobs", json=job_body(land, **change),
                                            headers=land.auth(HAULIER)), 422, code)
        await refused(await client.post("/v1/land/jobs", json=job_body(land),
                                        headers=land.auth(TERMINAL)), 403, "role-not-allowed")
    finally:
        await client.close()
