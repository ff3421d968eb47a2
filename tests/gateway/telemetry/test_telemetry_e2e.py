"""Telemetry end to end on a real node: readings ingested, anchored on chain, proven, verified
offline by ``python -m portledger verify-proof`` in its own process.

One ``portledger node`` process (repository genesis, loopback) and the whole gateway app
(``create_app``) in front of it, with the demo members' development keys: the terminal stores
reefer readings (its named reader: the carrier) and GPSD's real AIS messages, the haulier truck
positions. The gateway's own anchoring task batches them every half second and anchors each
batch's root through the write path (``Anchors.anchor`` signed by the owner's key); the test
reads the root back from the contract, exports bundles through ``POST /v1/proofs/readings/{id}``
and checks them with the repository's verifier, the independent one written from
``docs/proof-format.md`` and the command line in a subprocess. A reading whose bytes were
changed fails with ``anchor-proof-mismatch``; a competitor gets no bundle of a private reading;
a batch the chain refuses (a terminal anchoring truck positions) fails and says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from eth_utils.crypto import keccak

from contracts import anchors
from devnet.jsonrpc import rpc_answer
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, INDEXER, KEYSTORE, NODE, TELEMETRY
from gateway.events.model import Reference, Visibility
from gateway.telemetry import service
from proofs.verify import verify_bundle
from tests.support import independent_verifier
from tests.support import readside as rs
from tests.support import telemetry as tt
from tests.support.dcsa import config, organisation
from tests.support.nodes import REPO_GENESIS, ROOT, NodeProcess

pytestmark = pytest.mark.integration

T0 = 1_790_000_000
BOX = tt.container("ENDU", 400001)
PLATE = "KV8088"
SCOPES = ("tracking:read", "proofs:export", "proofs:request")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("telemetry") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


@dataclasses.dataclass
class Gateway:
    client: TestClient
    auth: dict[int, dict[str, str]]
    org_ids: dict[int, int]

    async def post(self, chain_org: int, path: str) -> tuple[int, Any]:
        response = await self.client.post(path, headers=self.auth[chain_org])
        return response.status, await response.json()

    async def get(self, chain_org: int, path: str) -> tuple[int, Any]:
        response = await self.client.get(path, headers=self.auth[chain_org])
        return response.status, await response.json()

    async def settled(self, timeout: float = 90.0) -> dict[str, int]:
        """Wait (bounded) until no batch is formed or submitted and nothing waits for one."""
        store = self.client.app[TELEMETRY]
        deadline = time.monotonic() + timeout
        while True:
            counts = store.batch_counts()
            if (store.counts().get("unbatched", 0) == 0 and counts
                    and not counts.get("formed") and not counts.get("submitted")):
                return counts
            assert time.monotonic() < deadline, f"batches not settled: {counts}"
            await asyncio.sleep(0.1)


async def open_gateway(node: NodeProcess, data_dir: Path) -> Gateway:
    """The gateway app on ``data_dir`` in front of ``node``; the organisations are made (with
    the demo members' development keys) the first time only."""
    cfg = dataclasses.replace(config(data_dir), node_urls=(node.url,), batch_window_ms=20,
                              indexer_poll_ms=50, telemetry_window_seconds=0.5,
                              telemetry_batch_max=8)
    first = not data_dir.exists()
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    auth, org_ids = {}, {}
    for name, chain_org in (("Kwai Tsing Container Terminal", rs.TERMINAL),
                            ("Tsing Yi Terminal", rs.TERMINAL2),
                            ("Pacific Ocean Line", rs.CARRIER),
                            ("Swift Haulage", rs.HAULIER)):
        if first:
            org_ids[chain_org], auth[chain_org] = organisation(client.app, name,
                                                               chain_org=chain_org, scopes=SCOPES)
            client.app[KEYSTORE].import_keys(
                org_ids[chain_org], signing_key=bytes(rs.account(chain_org).key),
                x25519_private=rs.x25519_private(chain_org),
                master_secret=rs.master_secret(chain_org))  # fmt: skip
        else:
            found = client.app[ACCOUNTS].by_chain_org(chain_org)
            assert found is not None
            org_ids[chain_org] = found.id
    head = int(rpc_answer(node.url, "eth_blockNumber", [])["result"], 16)
    assert await client.app[INDEXER].wait_for_block(head, timeout=60)
    return Gateway(client, auth, org_ids)


@pytest.fixture
async def gateway(node: NodeProcess, tmp_path: Path) -> AsyncIterator[Gateway]:
    opened = await open_gateway(node, tmp_path / "gw")
    try:
        yield opened
    finally:
        await opened.client.close()


def verify_offline(bundle: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """``python -m portledger verify-proof`` on the bundle, in its own process."""
    path = folder / f"bundle-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(bundle))
    return subprocess.run(
        [sys.executable, "-m", "portledger", "verify-proof", str(path), "--genesis",
         str(REPO_GENESIS)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )


async def test_readings_are_anchored_proven_and_verified_offline(
    gateway: Gateway, node: NodeProcess, tmp_path: Path,
) -> None:
    app = gateway.client.app
    reefer = tt.reefer_readings(BOX, T0, 11, excursion=range(6, 9))
    ais = tt.gpsd_readings(T0)
    trucks = tt.truck_readings(PLATE, T0, 5)
    assert await service.ingest(app, gateway.org_ids[rs.TERMINAL], reefer,
                                Visibility("named", (rs.CARRIER,))) == (11, 0)
    assert await service.ingest(app, gateway.org_ids[rs.TERMINAL], ais, Visibility()) == (12, 0)
    assert await service.ingest(app, gateway.org_ids[rs.HAULIER], trucks,
                                Visibility()) == (5, 0)
    counts = await gateway.settled()
    # reefer 11 -> 8 + 3, AIS positions 8 -> 8, trucks 5 -> 5 (static AIS is not anchored)
    assert counts == {"anchored": 4}, counts

    # the reading as its owner sees it: anchored, with where
    status, listed = await gateway.get(rs.TERMINAL, f"/v1/telemetry/readings?type=reefer"
                                                    f"&subject=container:{BOX}")
    assert status == 200 and len(listed["readings"]) == 11
    excursion = listed["readings"][7]
    assert excursion["temperature"] == pytest.approx(-11.5)
    anchor = excursion["anchor"]
    assert anchor["status"] == "anchored" and anchor["index"] == 7
    assert anchor["anchorId"] >= 1 and anchor["block"] >= 1 and anchor["txHash"].startswith("0x")

    # the root is the contract's: Anchors.anchorOf and verifyReading on chain
    store = app[TELEMETRY]
    batch = store.batch(anchor["batch"])
    assert batch is not None and batch.anchor_id == anchor["anchorId"]
    hashes = store.batch_hashes(batch.batch_id)
    assert hashes == [keccak(r.canonical_bytes()) for r in reefer[:8]]
    ((root, kind, publisher, count, start, end),) = await app[NODE].call(
        "Anchors", "anchorOf", batch.anchor_id)
    assert (bytes(root), kind, publisher, count, start, end) == (
        anchors.merkle_root(hashes), anchors.KINDS["REEFER"], rs.TERMINAL, 8, T0, T0 + 7 * 900)
    proof = anchors.merkle_proof(hashes, 7)
    (on_chain,) = await app[NODE].call("Anchors", "verifyReading", batch.anchor_id, hashes[7],
                                       proof)
    assert on_chain is True

    # the owner's bundle, checked three ways, the last in its own process
    status, bundle = await gateway.post(rs.TERMINAL, f"/v1/proofs/readings/{excursion['id']}")
    assert status == 200, bundle
    (item,) = bundle["events"]
    assert bytes.fromhex(item["anchor"]["reading"][2:]) == reefer[7].canonical_bytes()
    genesis = json.loads(REPO_GENESIS.read_text())
    verified = verify_bundle(bundle, genesis)
    assert "anchor" in verified.describe()
    assert independent_verifier.check(bundle, genesis) is None
    result = verify_offline(bundle, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"anchor {batch.anchor_id}" in result.stdout

    # a forged reading (the excursion hidden) fails offline
    forged = json.loads(json.dumps(bundle))
    body = json.loads(bytes.fromhex(forged["events"][0]["anchor"]["reading"][2:]))
    body["values"]["temperature"] = -18.0
    forged["events"][0]["anchor"]["reading"] = "0x" + json.dumps(
        body, sort_keys=True, separators=(",", ":")).encode().hex()
    result = verify_offline(forged, tmp_path)
    assert result.returncode == 1
    assert "FAILED anchor-proof-mismatch" in result.stderr
    # so does a real reading of the same container from the other batch
    other = json.loads(json.dumps(bundle))
    other["events"][0]["anchor"]["reading"] = "0x" + reefer[9].canonical_bytes().hex()
    assert "FAILED anchor-proof-mismatch" in verify_offline(other, tmp_path).stderr

    # the named reader gets a bundle too; a competitor gets nothing, as if it did not exist
    status, carriers = await gateway.post(rs.CARRIER, f"/v1/proofs/readings/{excursion['id']}")
    assert status == 200 and verify_offline(carriers, tmp_path).returncode == 0
    status, body = await gateway.post(rs.TERMINAL2, f"/v1/proofs/readings/{excursion['id']}")
    assert (status, body["error"]["code"]) == (404, "unknown-reading")

    # AIS is public: the competitor proves a vessel position the terminal uploaded
    status, track = await gateway.get(rs.TERMINAL2,
                                      "/v1/telemetry/readings?type=ais-position&mmsi=371798000")
    assert status == 200
    position = track["readings"][0]
    status, ais_bundle = await gateway.post(rs.TERMINAL2, f"/v1/proofs/readings/{position['id']}")
    assert status == 200
    assert verify_offline(ais_bundle, tmp_path).returncode == 0

    # gas per batch, from the mined receipts (printed for the record)
    gas = {}
    for record in store.batches("anchored"):
        receipt = await app[NODE].receipt(record.tx_hash or "")
        assert receipt is not None and int(receipt["status"], 16) == 1
        gas[record.batch_id] = (record.count, int(receipt["gasUsed"], 16))
    print("anchor gas per batch (readings, gas):", gas)
    assert all(g < 200_000 for _, g in gas.values())


async def test_a_batch_the_chain_refuses_fails_and_says_why(gateway: Gateway) -> None:
    app = gateway.client.app
    # a terminal may not anchor truck positions (the feeds intake refuses them before this)
    readings = tt.truck_readings("KV9999", T0, 2)
    await service.ingest(app, gateway.org_ids[rs.TERMINAL], readings, Visibility())
    assert await gateway.settled() == {"failed": 1}
    (failed,) = app[TELEMETRY].batches("failed")
    assert failed.error is not None and "may not anchor this kind" in failed.error
    status, body = await gateway.post(rs.TERMINAL, "/v1/proofs/readings/1")
    assert (status, body["error"]["code"]) == (409, "not-anchored")
    stored = app[TELEMETRY].latest("truck-position", subject=Reference("truck", "KV9999"))
    assert stored is not None and stored.reading == readings[-1]


async def test_a_gateway_stopped_mid_flight_anchors_every_batch_once_after_restart(
    node: NodeProcess, tmp_path: Path,
) -> None:
    data_dir = tmp_path / "gw"
    first = await open_gateway(node, data_dir)
    (before,) = await first.client.app[NODE].call("Anchors", "anchor_count")
    readings = tt.reefer_readings(tt.container("RSTU", 500001), T0, 20)
    try:
        await service.ingest(first.client.app, first.org_ids[rs.TERMINAL], readings,
                             Visibility())
        store = first.client.app[TELEMETRY]
        deadline = time.monotonic() + 60
        while not store.batch_counts().get("submitted"):  # the anchor calls are in flight
            assert time.monotonic() < deadline, store.batch_counts()
            await asyncio.sleep(0.01)
        in_flight = store.batch_counts()
    finally:
        await first.client.close()  # the gateway stops with batches submitted, not settled
    assert in_flight.get("anchored", 0) < 3, in_flight
    second = await open_gateway(node, data_dir)
    try:
        assert await second.settled() == {"anchored": 3}  # 8 + 8 + 4
        store = second.client.app[TELEMETRY]
        batches = store.batches("anchored")
        (after,) = await second.client.app[NODE].call("Anchors", "anchor_count")
        assert after - before == 3  # each root anchored once
        for batch in batches:
            ((root, _, publisher, count, _, _),) = await second.client.app[NODE].call(
                "Anchors", "anchorOf", batch.anchor_id)
            assert (bytes(root), publisher, count) == (batch.root, rs.TERMINAL, batch.count)
        assert sorted(h for b in batches for h in store.batch_hashes(b.batch_id)) == sorted(
            keccak(r.canonical_bytes()) for r in readings)
    finally:
        await second.client.close()
