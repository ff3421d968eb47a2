"""Contract calls are accepted only if the chain would take them (a real ``portledger node``).

A 2xx promises the operation ends on chain. For the uploads that are contract calls (master B/L
registration, house B/L links, grants and revocations) the gateway dry-runs the call from the
organisation's own account against the latest state, so what the contract would refuse gets a
409 with the contract's reason instead of a 202 followed by a failure on chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devnet.jsonrpc import rpc_answer
from gateway.app import create_app
from gateway.appkeys import INDEXER, KEYSTORE, OUTBOX, SUBMITTER
from gateway.events.model import Reference
from tests.support import readside as rs
from tests.support.dcsa import config, organisation
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration

MASTER = "PCOL2611250007"
BOXES = [rs.container("PCOU", 520001 + i) for i in range(4)]
SCOPES = ("events:write", "events:read", "grants:write")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("intake") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


@dataclasses.dataclass
class Hosted:
    client: TestClient
    auth: dict[int, dict[str, str]]
    org_ids: dict[int, int]

    async def final(self, chain_org: int, key: str) -> str:
        receipt = await self.client.app[SUBMITTER].wait_final(self.org_ids[chain_org], key, 60)
        return f"{receipt.status} {receipt.error or ''}".strip()


@pytest.fixture
async def hosted(node: NodeProcess, tmp_path: Path) -> AsyncIterator[Hosted]:
    cfg = dataclasses.replace(config(tmp_path / "gw"), node_urls=(node.url,),
                              batch_window_ms=20, indexer_poll_ms=50)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        auth, org_ids = {}, {}
        for name, chain_org in (("Pacific Ocean Line", rs.CARRIER),
                                ("Harbour Freight Forwarding", rs.FORWARDER)):
            org_ids[chain_org], auth[chain_org] = organisation(
                client.app, name, chain_org=chain_org, scopes=SCOPES)
            client.app[KEYSTORE].import_keys(
                org_ids[chain_org], signing_key=bytes(rs.account(chain_org).key),
                x25519_private=rs.x25519_private(chain_org),
                master_secret=rs.master_secret(chain_org))  # fmt: skip
        # Roles come from the chain's member directory once the indexer has read it.
        head = int(rpc_answer(node.url, "eth_blockNumber", [])["result"], 16)
        assert await client.app[INDEXER].wait_for_block(head, timeout=60)
        yield Hosted(client, auth, org_ids)
    finally:
        await client.close()


async def test_calls_the_contract_would_refuse_get_409_and_are_not_accepted(
    hosted: Hosted,
) -> None:
    client, forwarder = hosted.client, rs.FORWARDER
    link = {"house": "HFSIM2611250007", "containers": BOXES[:2]}
    early = await client.post(f"/v1/bills-of-lading/{MASTER}/houses", json=link,
                              headers=hosted.auth[forwarder])
    body = await early.json()
    assert early.status == 409, body
    assert body["error"]["code"] == "refused-by-contract"
    assert "unknown master B/L" in body["error"]["details"]["reason"]
    revoke = await client.delete(f"/v1/grants/mbl/{MASTER}/{rs.BANK}",
                                 headers=hosted.auth[rs.CARRIER])
    assert revoke.status == 409
    assert "no such grant" in (await revoke.json())["error"]["message"]
    outbox = client.app[OUTBOX]
    assert outbox.pending(hosted.org_ids[forwarder], 10) == []
    assert outbox.pending(hosted.org_ids[rs.CARRIER], 10) == []


async def test_a_house_link_lands_whatever_order_its_containers_are_given_in(
    hosted: Hosted,
) -> None:
    client = hosted.client
    register = await client.post("/v1/bills-of-lading", headers=hosted.auth[rs.CARRIER], json={
        "master": MASTER, "containers": BOXES,
        "visibility": {"mode": "named", "readers": [rs.FORWARDER]}})
    assert register.status == 202, await register.text()
    assert await hosted.final(rs.CARRIER, f"bl:{MASTER}") == "final"
    # Containers in descending subject-key order: the contract wants them ascending.
    covered = sorted(BOXES[1:], key=lambda c: Reference("container", c).key, reverse=True)
    link = await client.post(f"/v1/bills-of-lading/{MASTER}/houses",
                             json={"house": "HFSIM2611250008", "containers": covered},
                             headers=hosted.auth[rs.FORWARDER])
    assert link.status == 202, await link.text()
    assert await hosted.final(rs.FORWARDER, "hbl:HFSIM2611250008") == "final"
    # A retry of the landed link is its first receipt, not a new dry run (which would refuse:
    # the house is linked now).
    again = await client.post(f"/v1/bills-of-lading/{MASTER}/houses",
                              json={"house": "HFSIM2611250008", "containers": covered},
                              headers=hosted.auth[rs.FORWARDER])
    assert again.status == 202
    assert [(r["id"], r["duplicate"]) for r in (await again.json())["receipts"]] == [
        ("hbl:HFSIM2611250008", True), ("hbl:HFSIM2611250008:event", True)]
    # Linking the same house again under another key is refused by the contract, up front.
    other = await client.post(f"/v1/bills-of-lading/{MASTER}/houses",
                              json={"house": "HFSIM2611250008", "containers": covered[:1]},
                              headers={**hosted.auth[rs.FORWARDER], "Idempotency-Key": "k2"})
    assert other.status == 409
    assert "already linked" in (await other.json())["error"]["message"]
