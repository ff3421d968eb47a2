"""Every refusal at the gate, with its reason, in the real gateway: a container released to
another job, a cancelled job, a customs hold, a revoked release (and the terminal's availability
as a right of its own); a token not yet valid, expired, forged, tampered or malformed; a receipt
before the gate-out; a condition note longer than the scan page allows."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from gateway.isotime import iso_time
from gateway.land import token as tokens
from gateway.land.model import MAX_CONDITION
from tests.gateway.alerts.gateway_support import event
from tests.gateway.land.support import (
    BOX1,
    BOX2,
    BOX3,
    MBL,
    gated_out,
    job_body,
    ok,
    refused,
    started,
    to_chain,
)
from tests.support.readside import (
    CARRIER,
    CUSTOMS,
    HAULIER,
    TERMINAL,
    TRADER,
    WAREHOUSE,
)


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
        # a replaced token is revoked (a lost phone): the new one works
        stale = first_token
        first_token = (await ok(await client.post(f"/v1/land/jobs/{first}/token",
                                                  headers=land.auth(HAULIER)), 201))["token"]
        replaced = await gate(stale, 409, "token-revoked")
        assert "a newer token" in replaced["message"]
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


async def test_a_condition_is_recorded_whole_or_refused(tmp_path: Path) -> None:
    """A condition note is never cut: one character more than the page allows is refused by the
    schema; 300 Chinese characters (as varied as real text: zlib gains little) with eight
    20-character seals expected and found per box do not fit the details' sealed record and are
    refused with how many would; that many are recorded whole. Nothing is written before."""
    land = await started(tmp_path / "gw")
    try:
        def seals(prefix: str) -> dict[str, list[str]]:
            return {box: [f"{prefix}{n:0{20 - len(prefix)}d}" for n in range(8)]
                    for box in (BOX1, BOX2)}

        job = await ok(await land.client.post("/v1/land/jobs", headers=land.auth(HAULIER),
                                              json=job_body(land, seals=seals("SEAL"))), 201)
        issued = await gated_out(land, job["id"])
        chars = random.Random(14).choices([chr(c) for c in range(0x4E00, 0x9FA6)],
                                          k=MAX_CONDITION)
        note = "".join(chars)
        body = {"token": issued["token"], "seals": seals("X"), "condition": note + "。"}
        refusal = await refused(await land.client.post(
            "/v1/land/receipts", headers=land.auth(WAREHOUSE), json=body), 422,
            "schema-violation")
        assert "/condition" in refusal["message"]
        body["condition"] = note
        refusal = await refused(await land.client.post(
            "/v1/land/receipts", headers=land.auth(WAREHOUSE), json=body), 422,
            "condition-too-long")
        fits = refusal["details"]["fits"]
        assert 50 < fits < MAX_CONDITION and f"first {fits} characters" in refusal["message"]
        assert to_chain(land, WAREHOUSE) == []
        body["condition"] = note[:fits]
        out = await ok(await land.client.post("/v1/land/receipts", headers=land.auth(WAREHOUSE),
                                              json=body), 201)
        assert out["state"] == "delivered" and all(s["match"] is False for s in out["seals"])
        details = [e.details for e, _ in to_chain(land, WAREHOUSE) if e.subject.kind == "shipment"]
        assert [(d["container"], d["condition"], len(d["sealsFound"])) for d in details] == [
            (BOX1, note[:fits], 8), (BOX2, note[:fits], 8)]
    finally:
        await land.client.close()
