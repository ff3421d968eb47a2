"""The land leg on a real chain: one ``portledger node`` process (repository genesis, loopback)
and the whole gateway (``create_app``) in front of it, the demo members' development keys.

The terminal's discharges and the carrier's release go through ``POST /v1/events`` and the
chain; the haulier plans a job from the B/L as it reads it, takes the token; the terminal's
gate-out and the warehouse's receipt go through the write path, are sealed, signed by their
publishers' keys, recorded by ``CargoLedger`` (which accepts ``TERMINAL.GTOT`` from terminals and
``WAREHOUSE.RECEIPT`` from warehouses only) and indexed; the custody chain then shows every step
on chain, each with the publisher that signed it and its transaction."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devnet.jsonrpc import rpc_answer
from gateway.app import create_app
from gateway.appkeys import INDEXER, KEYSTORE, OUTBOX
from gateway.isotime import iso_time
from tests.gateway.land.support import ok
from tests.support import readside as rs
from tests.support.dcsa import config, organisation
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration

BOX1, BOX2 = rs.container("CSQU", 610001), rs.container("CSQU", 610002)
MBL = "PCOL6100001"
SCOPES = ("events:read", "events:write", "tracking:read", "org:admin")
MEMBERS = ((rs.TERMINAL, "Kwai Tsing Container Terminal"), (rs.CARRIER, "Pacific Ocean Line"),
           (rs.HAULIER, "Swift Haulage"), (rs.WAREHOUSE, "Tsuen Wan Logistics Warehouse"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("land") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


async def _indexed(client: TestClient[Any, Any], url: str) -> None:
    """Wait (bounded) until the chain's head block is indexed."""
    head = int(rpc_answer(url, "eth_blockNumber", [])["result"], 16)
    assert await client.app[INDEXER].wait_for_block(head, timeout=60)


async def _final(client: TestClient[Any, Any], url: str, org_id: int, keys: list[str],
                 timeout: float = 120.0) -> None:
    """Wait (bounded) until the operations are final on chain and their block is indexed."""
    outbox = client.app[OUTBOX]
    deadline = time.monotonic() + timeout
    while True:
        states = [outbox.status(org_id, k) for k in keys]
        if all(s is not None and s.status == "final" for s in states):
            break
        assert all(s is None or s.status != "failed" for s in states), states
        assert time.monotonic() < deadline, f"not final: {states}"
        await asyncio.sleep(0.1)
    await _indexed(client, url)


@dataclasses.dataclass
class ChainPort:
    """The gateway in front of the node, with the members' organisations and API keys."""

    client: TestClient[Any, Any]
    url: str
    org: dict[int, int]
    auth: dict[int, dict[str, str]]
    mbl: str
    """The B/L the jobs are planned on."""

    async def recorded(self, story: list[tuple[int, str, dict[str, Any]]]) -> None:
        """``POST /v1/events`` each (publisher, idempotency key, event), then wait until all
        are final and indexed."""
        for who, key, body in story:
            await ok(await self.client.post("/v1/events", json=body, headers={
                **self.auth[who], "Idempotency-Key": key}), 202)
        for who, key, _ in story:
            await _final(self.client, self.url, self.org[who], [key])

    async def delivered(self, now: int, seals: dict[str, list[str]],
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The haulier's job on the B/L with these seals, its token used at the terminal's gate
        and at the warehouse (seals as expected, condition "sound"), each step final: the job
        as created and the receipt's answer."""
        client, auth = self.client, self.auth
        job = await ok(await client.post("/v1/land/jobs", headers=auth[rs.HAULIER], json={
            "references": [{"kind": "mbl", "value": self.mbl}],
            "pickup": {"terminal": rs.TERMINAL, "location": "HKHKG"},
            "delivery": {"warehouse": rs.WAREHOUSE, "location": "HKHKG"},
            "window": {"from": iso_time(now - 600), "to": iso_time(now + 3 * 3600)},
            "vehicle": "KV8088", "seals": seals}), 201)
        token = (await ok(await client.get(f"/v1/land/jobs/{job['id']}/token",
                                           headers=auth[rs.HAULIER])))["token"]
        out = await ok(await client.post("/v1/land/gate-out", json={"token": token},
                                         headers=auth[rs.TERMINAL]), 201)
        await _final(client, self.url, self.org[rs.TERMINAL],
                     [c[k]["idempotencyKey"] for c in out["containers"]
                      for k in ("receipt", "detail")])
        got = await ok(await client.post("/v1/land/receipts", headers=auth[rs.WAREHOUSE],
                                         json={"token": token, "seals": seals,
                                               "condition": "sound"}), 201)
        await _final(client, self.url, self.org[rs.WAREHOUSE],
                     [r["idempotencyKey"] for r in got["receipts"]])
        return job, got


@contextlib.asynccontextmanager
async def chain_port(node: NodeProcess, path: Path, members: tuple[tuple[int, str], ...],
                     scopes: tuple[str, ...], mbl: str) -> AsyncIterator[ChainPort]:
    """The whole gateway on ``node``, the members' organisations with their development keys
    (their roles and keys are the chain's: indexed before it yields)."""
    cfg = dataclasses.replace(config(path), node_urls=(node.url,), batch_window_ms=20,
                              indexer_poll_ms=50)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        org: dict[int, int] = {}
        auth: dict[int, dict[str, str]] = {}
        for chain_org, name in members:
            org[chain_org], auth[chain_org] = organisation(client.app, name, chain_org=chain_org,
                                                           scopes=scopes)
            client.app[KEYSTORE].import_keys(
                org[chain_org], signing_key=bytes(rs.account(chain_org).key),
                x25519_private=rs.x25519_private(chain_org),
                master_secret=rs.master_secret(chain_org))
        await _indexed(client, node.url)
        yield ChainPort(client, node.url, org, auth, mbl)
    finally:
        await client.close()


async def test_gate_out_and_receipt_land_on_chain(node: NodeProcess, tmp_path: Path) -> None:
    async with chain_port(node, tmp_path / "gw", MEMBERS, SCOPES, MBL) as port:
        client, auth = port.client, port.auth
        now = int(time.time())
        story = [
            (rs.TERMINAL, f"disc-{BOX1}", {"type": "TERMINAL.DISC", "classifier": "ACT",
                                           "time": iso_time(now - 7200), "location": "HKHKG",
                                           "subject": {"kind": "container", "value": BOX1},
                                           "related": [{"kind": "mbl", "value": MBL}],
                                           "visibility": {"mode": "named", "readers": [
                                               rs.HAULIER, rs.CARRIER]}}),
            (rs.TERMINAL, f"disc-{BOX2}", {"type": "TERMINAL.DISC", "classifier": "ACT",
                                           "time": iso_time(now - 7100), "location": "HKHKG",
                                           "subject": {"kind": "container", "value": BOX2},
                                           "related": [{"kind": "mbl", "value": MBL}],
                                           "visibility": {"mode": "named", "readers": [
                                               rs.HAULIER, rs.CARRIER]}}),
            (rs.CARRIER, "rels", {"type": "SHIPMENT.RELS", "classifier": "ACT",
                                  "time": iso_time(now - 3600), "location": "HKHKG",
                                  "subject": {"kind": "mbl", "value": MBL},
                                  "related": [{"kind": "container", "value": BOX1},
                                              {"kind": "container", "value": BOX2}],
                                  "visibility": {"mode": "named", "readers": [
                                      rs.HAULIER, rs.TERMINAL]}}),
        ]
        await port.recorded(story)
        job, _ = await port.delivered(now, {BOX1: ["PCL100"]})
        assert job["containers"] == [BOX1, BOX2]
        assert all(r["valid"] for r in job["rights"])

        chain = await ok(await client.get(f"/v1/land/jobs/{job['id']}/custody",
                                          headers=auth[rs.HAULIER]))
        for box in chain["containers"]:
            steps = [(s["step"], s["party"]["id"], s["status"]) for s in box["steps"]]
            assert steps == [("carrier-release", rs.CARRIER, "on-chain"),
                             ("gate-out", rs.TERMINAL, "on-chain"),
                             ("warehouse-receipt", rs.WAREHOUSE, "on-chain")], steps
            assert all(s["signed"]["txHash"].startswith("0x") for s in box["steps"])
            assert box["steps"][1]["job"] == job["id"]
            # the haulier, a party of the job, reads each step's details (named to it)
            assert box["steps"][1]["details"]["vehicle"] == "KV8088"
            assert box["steps"][2]["details"]["condition"] == "sound"
            assert box["steps"][0]["details"] is None
        # the box is gone from the yard now: the right is used
        after = await ok(await client.get(f"/v1/land/jobs/{job['id']}",
                                          headers=auth[rs.HAULIER]))
        assert after["state"] == "delivered"
        assert {r["code"] for r in after["rights"]} == {"already-gated-out"}
