"""Who reads a land job's custody events: the public step and its details.

The terminal's gate-out and the warehouse's receipt are each two cargo events: the public step
(type, time, place, the box, the facility code), readable by whoever holds the box number, and
its details (job, vehicle, haulier, CCRN, pick-up right, token nonce; seals expected and found,
their match, the condition), about the job's own reference and named to the job's parties. A
member that knows only the box number (a competing haulier, another warehouse) reads the
steps through tracking, DCSA events and the custody endpoint, and finds none of the details in
any answer's bytes; the haulier, the terminal and the warehouse see them joined to the steps;
the trader's not-picked-up alert resolves on the public gate-out. The events are put "on
chain" as the indexer stores them, sealed exactly as the outbox holds them (no node here; the
proof bundles on a real chain are in ``test_custody_proof.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.appkeys import ACCOUNTS
from gateway.events.model import Visibility
from gateway.isotime import iso_time
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, event
from tests.gateway.land.support import (
    BOX1,
    BOX2,
    OTHER_WAREHOUSE,
    Land,
    gateway_org,
    job_body,
    ok,
    refused,
    started,
    to_chain,
)
from tests.support.readside import (
    CARRIER,
    FORWARDER,
    HAULIER,
    TERMINAL,
    TRADER,
    WAREHOUSE,
    container,
)

CONDITION = "dent on the left door, tarpaulin torn"
STRANGERS = (FORWARDER, OTHER_WAREHOUSE)


async def delivered(land: Land) -> dict[str, Any]:
    """A job on both boxes gated out and received (a seal mismatch), all on chain; its
    particulars (the values no stranger may find) and the recorded events."""
    client = land.client
    job = await ok(await client.post("/v1/land/jobs", json=job_body(land),
                                     headers=land.auth(HAULIER)), 201)
    issued = await ok(await client.get(f"/v1/land/jobs/{job['id']}/token",
                                       headers=land.auth(HAULIER)))
    out = await ok(await client.post("/v1/land/gate-out", json={"token": issued["token"]},
                                     headers=land.auth(TERMINAL)), 201)
    assert [k for c in out["containers"] for k in (c["receipt"]["idempotencyKey"],
                                                  c["detail"]["idempotencyKey"])] == [
        f"land:{job['id']}:{issued['claims']['n']}:gate-out:{b}{tail}"
        for b in (BOX1, BOX2) for tail in ("", ":detail")]
    gates = to_chain(land, TERMINAL)
    await ok(await client.post("/v1/land/receipts", headers=land.auth(WAREHOUSE), json={
        "token": issued["token"], "seals": {BOX1: ["SEAL001"], BOX2: ["seal 999"]},
        "condition": CONDITION}), 201)
    receipts = to_chain(land, WAREHOUSE)
    secrets = {"job": job["id"], "vehicle": "AB1234", "ccrn": "RI261207000123",
               "nonce": issued["claims"]["n"], "seal": "SEAL001", "found": "SEAL999",
               "condition": "tarpaulin torn", "address": "Tsing Yi Road"}
    return {"job": job["id"], "secrets": secrets, "gates": gates, "receipts": receipts}


def exporter(land: Land, chain_org: int) -> dict[str, str]:
    """An API key of the member that may also export proof bundles."""
    _, key = land.client.app[ACCOUNTS].create_api_key(
        gateway_org(land, chain_org), ["tracking:read", "proofs:export"], "proofs")
    return {"Authorization": f"Bearer {key}"}


def leaked(raw: bytes, secrets: dict[str, str]) -> list[str]:
    """The particulars found in an answer's bytes (JSON may escape nothing of these)."""
    return [name for name, value in secrets.items() if value.encode() in raw]


async def test_the_outbox_holds_a_public_step_and_named_details(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    try:
        story = await delivered(land)
        job_id = story["job"]
        steps = [e for e, _ in (*story["gates"], *story["receipts"])]
        assert [(e.event_type, e.subject.kind, e.subject.value) for e in steps] == [
            ("TERMINAL.GTOT", "container", BOX1), ("TERMINAL.GTOT", "shipment", job_id),
            ("TERMINAL.GTOT", "container", BOX2), ("TERMINAL.GTOT", "shipment", job_id),
            ("WAREHOUSE.RECEIPT", "container", BOX1), ("WAREHOUSE.RECEIPT", "shipment", job_id),
            ("WAREHOUSE.RECEIPT", "container", BOX2), ("WAREHOUSE.RECEIPT", "shipment", job_id)]
        gate, detail = steps[0], steps[1]
        # the public step: no one named (their ids are in clear), nothing of the job
        assert gate.visibility == Visibility("reference", ())
        assert gate.details == {"facilityCode": "HIT4"} and gate.related == ()
        assert (detail.event_time, detail.location) == (gate.event_time, gate.location)
        assert detail.visibility == Visibility("named", tuple(sorted((HAULIER, WAREHOUSE))))
        assert detail.details == {
            "step": "gate-out", "container": BOX1, "job": job_id, "vehicle": "AB1234",
            "facilityCode": "HIT4", "haulier": HAULIER, "ccrn": "RI261207000123",
            "pickupRight": "carrier-release", "tokenNonce": story["secrets"]["nonce"]}
        receipt, seals = steps[6], steps[7]
        assert receipt.visibility == Visibility("reference", ()) and receipt.related == ()
        assert set(receipt.details) == {"bizStep", "action", "disposition"}
        assert seals.visibility == Visibility("named", tuple(sorted((HAULIER, TERMINAL))))
        assert (seals.details["container"], seals.details["sealsFound"],
                seals.details["sealsMatch"], seals.details["condition"]) == (
            BOX2, ["SEAL999"], False, CONDITION)
        assert seals.details["epcisEventId"].startswith("urn:uuid:")
        assert [r.value for r in seals.related] == ["PCOL1234567"]
    finally:
        await land.client.close()


async def test_a_number_holder_reads_the_steps_and_no_detail(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        story = await delivered(land)
        job_id, secrets = story["job"], story["secrets"]
        detail_ids = [r.event_id for _, r in (*story["gates"], *story["receipts"])][1::2]
        for stranger in STRANGERS:
            auth = land.auth(stranger)
            # tracking: the box's timeline has the gate-out and the receipt, no particulars
            resp = await client.get(f"/v1/track/{BOX1}", headers=auth)
            raw = await resp.read()
            assert resp.status == 200, raw
            view = await resp.json()
            kinds = [(t["type"], t["publisher"]) for t in view["timeline"]]
            assert ("TERMINAL.GTOT", TERMINAL) in kinds
            assert ("WAREHOUSE.RECEIPT", WAREHOUSE) in kinds
            gate = next(t for t in view["timeline"] if t["type"] == "TERMINAL.GTOT")
            assert gate["details"] == {"facilityCode": "HIT4"} and gate["related"] == []
            assert leaked(raw, secrets) == [], stranger
            # DCSA events by the box number
            resp = await client.get(f"/v2/events?equipmentReference={BOX1}", headers=auth)
            raw = await resp.read()
            assert resp.status == 200, raw
            assert b"GTOT" in raw and leaked(raw, secrets) == [], stranger
            # the custody endpoint: one chain of public steps, tied to no job
            resp = await client.get(f"/v1/land/containers/{BOX1}/custody", headers=auth)
            raw = await resp.read()
            assert resp.status == 200, raw
            chains = (await resp.json())["jobs"]
            assert [(c["job"], c["state"]) for c in chains] == [(None, None)]
            assert [(s["step"], s["party"]["id"], s["job"], s["details"] is None)
                    for s in chains[0]["chain"]] == [("gate-out", TERMINAL, None, True),
                                                     ("warehouse-receipt", WAREHOUSE, None,
                                                      True)]
            assert leaked(raw, secrets) == [], stranger
            # no job through the land API either, by the box or by its id
            resp = await client.get(f"/v1/land/jobs?container={BOX1}", headers=auth)
            raw = await resp.read()
            assert resp.status == 200 and (await resp.json())["jobs"] == []
            assert leaked(raw, secrets) == []
            for path in (f"/v1/land/jobs/{job_id}", f"/v1/land/jobs/{job_id}/custody"):
                await refused(await client.get(path, headers=auth), 404, "unknown-job")
            # the details are not readable, by the job's reference or by event id
            resp = await client.get(f"/v1/track/{job_id}", headers=auth)
            assert resp.status == 404
            proofs = exporter(land, stranger)
            resp = await client.post("/v1/proofs", headers=proofs, json={
                "reference": BOX1, "events": "visible", "eventIds": detail_ids[:1]})
            raw = await resp.read()
            assert resp.status == 422 and b"unknown-event" in raw, raw
            await refused(await client.post("/v1/proofs", headers=proofs, json={
                "reference": job_id, "events": "visible"}), 404, "reference-not-found")
    finally:
        await client.close()


async def test_the_parties_see_the_details_joined_to_the_steps(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        story = await delivered(land)
        job_id, secrets = story["job"], story["secrets"]
        for party in (HAULIER, TERMINAL, WAREHOUSE):
            for path in (f"/v1/land/jobs/{job_id}/custody",
                         f"/v1/land/containers/{BOX2}/custody"):
                resp = await client.get(path, headers=land.auth(party))
                raw = await resp.read()
                assert resp.status == 200, raw
                body = await resp.json()
                chain = (body["containers"][1]["steps"] if "containers" in body
                         else body["jobs"][0]["chain"])
                by_step = {s["step"]: s for s in chain}
                gate, receipt = by_step["gate-out"], by_step["warehouse-receipt"]
                assert gate["job"] == job_id and gate["status"] == "on-chain"
                assert gate["details"]["vehicle"] == "AB1234", party
                assert gate["details"]["tokenNonce"] == secrets["nonce"]
                assert gate["detailSigned"]["eventId"] != gate["signed"]["eventId"]
                assert (receipt["details"]["sealsExpected"], receipt["details"]["sealsFound"],
                        receipt["details"]["sealsMatch"]) == (["SEAL002"], ["SEAL999"], False)
                assert receipt["details"]["condition"] == CONDITION
            # the job's reference tracks (and so proves) the details, one entry per event
            view = await ok(await client.get(f"/v1/track/{job_id}", headers=land.auth(party)))
            assert [(t["type"], t["details"]["container"]) for t in view["timeline"]] == [
                ("TERMINAL.GTOT", BOX1), ("TERMINAL.GTOT", BOX2),
                ("WAREHOUSE.RECEIPT", BOX1), ("WAREHOUSE.RECEIPT", BOX2)]
        # the box's own timeline counts each step once, for the parties too
        view = await ok(await client.get(f"/v1/track/{BOX1}", headers=land.auth(HAULIER)))
        assert [t["type"] for t in view["timeline"]].count("TERMINAL.GTOT") == 1
        # the trader (named on the boxes' discharge) sees the job's chain, not its details
        resp = await client.get(f"/v1/land/jobs/{job_id}/custody", headers=land.auth(TRADER))
        raw = await resp.read()
        assert resp.status == 200, raw
        steps = (await resp.json())["containers"][0]["steps"]
        assert [(s["step"], s["job"], s["details"]) for s in steps] == [
            ("carrier-release", None, None), ("gate-out", job_id, None),
            ("warehouse-receipt", job_id, None)]
        assert leaked(raw, {k: secrets[k] for k in ("nonce", "found", "condition")}) == []
    finally:
        await client.close()


async def test_the_traders_not_picked_up_alert_resolves_on_the_public_gate_out(
        tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client, port = land.client, land.port
    box, bill = container("MSKU", 900001), "PCOL9000001"
    try:
        await ok(await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                                  headers=land.auth(TERMINAL)))
        days = 86400
        port.record(TERMINAL, event("TERMINAL.DISC", "container", box, land.now - 10 * days,
                                    related=[("mbl", bill)]),
                    block_time=land.now - 10 * days, readers=(HAULIER, TRADER, CARRIER))
        port.record(CARRIER, event("SHIPMENT.RELS", "mbl", bill, land.now - 2 * days,
                                   related=[("container", box)]),
                    block_time=land.now - 2 * days, readers=(HAULIER, TRADER, TERMINAL))
        await port.engine.on_indexed(port.events)
        assert ("not-picked-up", "open") in [(a.kind, a.state) for a in port.alerts_of(TRADER)
                                             if a.subject.value == box]
        job = await ok(await client.post("/v1/land/jobs", headers=land.auth(HAULIER),
                                         json=job_body(land, references=[
                                             {"kind": "container", "value": box}], seals={})),
                       201)
        token = (await ok(await client.get(f"/v1/land/jobs/{job['id']}/token",
                                           headers=land.auth(HAULIER))))["token"]
        await ok(await client.post("/v1/land/gate-out", json={"token": token},
                                   headers=land.auth(TERMINAL)), 201)
        to_chain(land, TERMINAL)
        await port.engine.on_indexed(port.events)
        mine = [a for a in port.alerts_of(TRADER) if a.subject.value == box
                and a.kind == "not-picked-up"]
        assert [(a.state, a.figures.get("reason")) for a in mine] == [("resolved", "gated-out")]
    finally:
        await client.close()


async def test_the_haulier_shares_the_job_with_a_number_holder(tmp_path: Path) -> None:
    """A consignee that reads the boxes only as a holder of their numbers follows the job when
    the haulier shares it: the job without its driver, the truck, the public steps — still no
    details, which stay the parties'."""
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        await refused(await client.post("/v1/land/jobs", json=job_body(land, share=[999]),
                                        headers=land.auth(HAULIER)), 422, "not-a-member")
        job = await ok(await client.post("/v1/land/jobs", json=job_body(
            land, share=[FORWARDER]), headers=land.auth(HAULIER)), 201)
        assert job["shared"] == [FORWARDER]
        issued = await ok(await client.get(f"/v1/land/jobs/{job['id']}/token",
                                           headers=land.auth(HAULIER)))
        await ok(await client.post("/v1/land/gate-out", json={"token": issued["token"]},
                                   headers=land.auth(TERMINAL)), 201)
        to_chain(land, TERMINAL)
        await ok(await client.post(f"/v1/land/jobs/{job['id']}/positions", json={"positions": [
            {"time": iso_time(land.now), "lat": 22.34, "lon": 114.11}]},
            headers=land.auth(HAULIER)), 202)
        consignee = land.auth(FORWARDER)
        seen = await ok(await client.get(f"/v1/land/jobs/{job['id']}", headers=consignee))
        assert seen["readableVia"] == "container" and seen["driver"] is None
        assert seen["containers"] == [BOX1, BOX2]
        truck = await ok(await client.get(f"/v1/land/jobs/{job['id']}/positions",
                                          headers=consignee))
        assert truck["latest"]["lat"] == 22.34
        resp = await client.get(f"/v1/land/jobs/{job['id']}/custody", headers=consignee)
        raw = await resp.read()
        assert resp.status == 200, raw
        steps = (await resp.json())["containers"][0]["steps"]
        assert [(s["step"], s["job"], s["details"]) for s in steps] == [
            ("gate-out", job["id"], None)]
        assert issued["claims"]["n"].encode() not in raw
        # another member, not shared, still sees no job
        await refused(await client.get(f"/v1/land/jobs/{job['id']}",
                                       headers=land.auth(OTHER_WAREHOUSE)), 404, "unknown-job")
    finally:
        await client.close()
