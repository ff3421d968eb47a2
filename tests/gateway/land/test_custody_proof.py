"""The custody chain in a proof bundle, on a real chain: what a bank or an insurer verifies.

One ``portledger node`` process (repository genesis, loopback) and the whole gateway
(``create_app``) in front of it, the demo members' development keys. The terminal discharges the
box and marks it available for pick-up, the carrier releases its B/L, the haulier plans a job and
takes the token; the terminal records the gate-out and the warehouse the receipt through the land
API (write path, signed by each publisher's key, on chain, indexed). Then whoever may see the
events exports a proof bundle (``POST /v1/proofs`` with ``events: visible``) and
:func:`proofs.verify.verify_bundle` — offline, against ``genesis.json`` only — accepts it (and
the independent verifier and ``portledger verify-proof``). The container's bundle proves the
box's steps (availability, gate-out, receipt); the B/L's adds the carrier's release, so it
carries the whole chain the custody view shows. Each step is attributed to its signer: the
transaction's sender is that member's account and the cargo log names it as publisher. A member
that may not read an event (the warehouse and the terminal's named-only availability; the carrier
and a receipt named to the haulier only) gets a bundle without it and cannot ask for it by id. The
gate-out's and the receipt's details (job, vehicle, token nonce, seals, condition) are companion
events about the job's reference named to the job's parties: each party proves them by the job id;
a bank knowing only the box number proves the public steps and gets none of the details."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from contracts.cargo import subject_key
from gateway.isotime import iso_time
from proofs.summary import Verified, event_type_name
from tests.gateway.land.support import ok
from tests.gateway.land.test_land_chain import _final, chain_port
from tests.gateway.test_api_proofs import verifies
from tests.support import readside as rs
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration

BOX = rs.container("CSQU", 620001)
MBL = "PCOL6200001"
SCOPES = ("events:read", "events:write", "tracking:read", "org:admin", "proofs:export")
MEMBERS = ((rs.TERMINAL, "Kwai Tsing Container Terminal"), (rs.CARRIER, "Pacific Ocean Line"),
           (rs.HAULIER, "Swift Haulage"), (rs.WAREHOUSE, "Tsuen Wan Logistics Warehouse"),
           (rs.BANK, "Harbour Trade Bank"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("custody") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


def _steps(verified: Verified) -> list[tuple[str, int, str]]:
    """(event type, publisher, signing account) of each proven cargo event, in bundle order."""
    out = []
    for event in verified.events:
        assert event.cargo is not None, event
        out.append((event_type_name(event.cargo.event_type), event.cargo.publisher,
                    "0x" + event.sender.hex()))
    return out


async def _exported(client: TestClient[Any, Any], headers: dict[str, str], reference: str,
                    genesis: dict[str, Any], tmp_path: Path) -> Verified:
    """The bundle of every event of ``reference`` the caller sees, verified offline by
    :func:`proofs.verify.verify_bundle`, the independent verifier and ``verify-proof``."""
    bundle = await ok(await client.post("/v1/proofs", headers=headers,
                                        json={"reference": reference, "events": "visible"}))
    verified = verifies(bundle, genesis, tmp_path)
    assert isinstance(verified, Verified)
    return verified


def _signer(chain_org: int) -> str:
    return str(rs.account(chain_org).address).lower()


async def test_custody_chain_in_a_proof_bundle(node: NodeProcess, tmp_path: Path) -> None:
    genesis = json.loads(REPO_GENESIS.read_text())
    async with chain_port(node, tmp_path / "gw", MEMBERS, SCOPES, MBL) as port:
        client, org, auth = port.client, port.org, port.auth
        now = int(time.time())
        box = {"kind": "container", "value": BOX}
        story: list[tuple[int, str, dict[str, Any]]] = [
            (rs.TERMINAL, "disc", {"type": "TERMINAL.DISC", "classifier": "ACT",
                                   "time": iso_time(now - 7200), "location": "HKHKG",
                                   "subject": box, "related": [{"kind": "mbl", "value": MBL}],
                                   "visibility": {"mode": "named", "readers": [
                                       rs.HAULIER, rs.CARRIER]}}),
            (rs.CARRIER, "rels", {"type": "SHIPMENT.RELS", "classifier": "ACT",
                                  "time": iso_time(now - 3600), "location": "HKHKG",
                                  "subject": {"kind": "mbl", "value": MBL}, "related": [box],
                                  "visibility": {"mode": "named", "readers": [
                                      rs.HAULIER, rs.TERMINAL]}}),
            (rs.TERMINAL, "avpu", {"type": "TERMINAL.AVPU", "classifier": "ACT",
                                   "time": iso_time(now - 1800), "location": "HKHKG",
                                   "subject": box, "related": [{"kind": "mbl", "value": MBL}],
                                   "visibility": {"mode": "named", "readers": [
                                       rs.HAULIER, rs.CARRIER]}}),
        ]
        await port.recorded(story)
        job, _ = await port.delivered(now, {BOX: ["PCL200"]})

        terminal, carrier = (rs.TERMINAL, _signer(rs.TERMINAL)), (rs.CARRIER, _signer(rs.CARRIER))
        warehouse = (rs.WAREHOUSE, _signer(rs.WAREHOUSE))
        box_chain = [("TERMINAL.DISC", *terminal), ("TERMINAL.AVPU", *terminal),
                     ("TERMINAL.GTOT", *terminal), ("WAREHOUSE.RECEIPT", *warehouse)]
        # the haulier (it sees every step) exports the container: the box's own steps
        verified = await _exported(client, auth[rs.HAULIER], BOX, genesis, tmp_path)
        assert _steps(verified) == box_chain
        assert {e.reference for e in verified.events} == {BOX}
        # the B/L's bundle adds the carrier's release: the whole custody chain, in time order;
        # the carrier (owner of the B/L's record) exports the same
        bl_chain = [box_chain[0], ("SHIPMENT.RELS", *carrier), *box_chain[1:]]
        for exporter in (rs.HAULIER, rs.CARRIER):
            verified = await _exported(client, auth[exporter], MBL, genesis, tmp_path)
            assert _steps(verified) == bl_chain, exporter
            assert [e.block_time for e in verified.events] == sorted(
                e.block_time for e in verified.events)
        # the custody view and the bundle name the same events
        custody = await ok(await client.get(f"/v1/land/containers/{BOX}/custody",
                                            headers=auth[rs.HAULIER]))
        steps = custody["jobs"][0]["chain"]
        assert [s["step"] for s in steps] == ["carrier-release", "terminal-release", "gate-out",
                                              "warehouse-receipt"], steps
        # (every proven event but the discharge, which is no custody step)
        proven = {e.cargo.event_id: e.cargo.publisher for e in verified.events[1:] if e.cargo}
        assert {s["signed"]["eventId"]: s["party"]["id"] for s in steps} == proven

        # visibility: the warehouse may not read the terminal's discharge and availability
        # (named to the haulier and the carrier): its bundle of the box proves only the rest
        verified = await _exported(client, auth[rs.WAREHOUSE], BOX, genesis, tmp_path)
        assert _steps(verified) == box_chain[2:]
        # the land leg's gate-out and receipt are public steps, readable by the box number's
        # holders: a bank that knows the number proves those two itself, and nothing of the B/L
        verified = await _exported(client, auth[rs.BANK], BOX, genesis, tmp_path)
        assert _steps(verified) == box_chain[2:]
        assert [e.cargo.event_id for e in verified.events if e.cargo] == [
            s["signed"]["eventId"] for s in steps[2:]]
        refused = await client.post("/v1/proofs", headers=auth[rs.BANK],
                                    json={"reference": MBL, "events": "visible"})
        assert refused.status == 404
        # their details (job, vehicle, token nonce; seals and condition) are the job's parties':
        # each party proves them by the job's reference; the bank's bundle holds none of them,
        # and the bank can ask for them neither by id nor by the job's reference
        details = [s["detailSigned"]["eventId"] for s in steps[2:]]
        assert [s["details"]["vehicle"] for s in steps[2:]] == ["KV8088", "KV8088"]
        assert steps[3]["details"]["sealsFound"] == ["PCL200"]
        for party in (rs.HAULIER, rs.TERMINAL, rs.WAREHOUSE):
            verified = await _exported(client, auth[party], job["id"], genesis, tmp_path)
            assert _steps(verified) == [("TERMINAL.GTOT", *terminal),
                                        ("WAREHOUSE.RECEIPT", *warehouse)], party
            assert [e.cargo.event_id for e in verified.events if e.cargo] == details
            assert {e.reference for e in verified.events} == {job["id"]}
        bank = await client.post("/v1/proofs", headers=auth[rs.BANK],
                                 json={"reference": BOX, "events": "visible"})
        raw = await bank.read()
        assert bank.status == 200, raw
        for value in (job["id"], "KV8088", "PCL200", steps[2]["details"]["tokenNonce"]):
            assert value.encode() not in raw, value
        # nor their envelopes (naming the job's parties): the details travel in transactions
        # of their own, and a bundle carries the whole transaction of each event it proves
        for step in steps[2:]:
            assert step["detailSigned"]["txHash"] != step["signed"]["txHash"], step
        assert subject_key(job["id"]).hex().encode() not in raw.lower()
        for asked, code in (({"reference": BOX, "eventIds": details[:1]}, "unknown-event"),
                            ({"reference": job["id"]}, "reference-not-found")):
            refused = await client.post("/v1/proofs", headers=auth[rs.BANK],
                                        json={"events": "visible", **asked})
            assert (await refused.json())["error"]["code"] == code, asked

        # a receipt the warehouse published named to the haulier only (from its own system):
        # the haulier's bundle carries it, the carrier's (which sees the discharge) does not,
        # and the carrier cannot ask for it by id
        other = rs.container("CSQU", 620002)
        late: list[tuple[int, str, dict[str, Any]]] = [
            (rs.TERMINAL, "disc-2", {"type": "TERMINAL.DISC", "classifier": "ACT",
                                     "time": iso_time(now - 7000), "location": "HKHKG",
                                     "subject": {"kind": "container", "value": other},
                                     "visibility": {"mode": "named", "readers": [
                                         rs.HAULIER, rs.CARRIER]}}),
            (rs.WAREHOUSE, "rece-2", {"type": "WAREHOUSE.RECEIPT", "classifier": "ACT",
                                      "time": iso_time(now - 60), "location": "HKHKG",
                                      "subject": {"kind": "container", "value": other},
                                      "visibility": {"mode": "named",
                                                     "readers": [rs.HAULIER]}}),
        ]
        for who, key, body in late:
            await ok(await client.post("/v1/events", json=body, headers={
                **auth[who], "Idempotency-Key": key}), 202)
            await _final(client, node.url, org[who], [key])
        verified = await _exported(client, auth[rs.HAULIER], other, genesis, tmp_path)
        assert _steps(verified) == [("TERMINAL.DISC", *terminal),
                                    ("WAREHOUSE.RECEIPT", *warehouse)]
        receipt = verified.events[1].cargo
        assert receipt is not None
        verified = await _exported(client, auth[rs.CARRIER], other, genesis, tmp_path)
        assert _steps(verified) == [("TERMINAL.DISC", *terminal)]
        refused = await client.post("/v1/proofs", headers=auth[rs.CARRIER], json={
            "reference": other, "events": "visible", "eventIds": [receipt.event_id]})
        assert refused.status == 422
        assert (await refused.json())["error"]["code"] == "unknown-event"
