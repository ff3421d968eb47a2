"""Proof bundles through the gateway, from a real node to an offline verifier.

Cargo events sealed as the gateway seals them are recorded on a real ``portledger node``
process (repository genesis); each test runs the whole gateway app (``create_app``) against it,
whose own indexer fills the read model. Owners export bundles with selective disclosure; a
bank requests a bundle, the carrier approves or declines, the bank downloads; every bundle is
checked with ``proofs.verify`` against ``genesis.json``, with the independent verifier
written from docs/proof-format.md, and with the ``portledger verify-proof`` command.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from contracts import SYSTEM_ADDRESSES
from contracts.cargo import CARGO_EVENT_TOPIC, encode_record_call
from devnet.jsonrpc import rpc_answer
from gateway.app import create_app
from gateway.appkeys import INDEXER, KEYSTORE, READ_MODEL
from gateway.events import model as canonical_events
from portledger.cli import main as node_cli
from proofs.verify import verify_bundle
from tests.support import independent_verifier
from tests.support import readside as rs
from tests.support.dcsa import config, organisation
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration

T0 = 1_790_000_000
MBL = "PCOL2611300042"
C1, C2 = rs.container("PCOU", 410001), rs.container("PCOU", 410002)
ALL_SCOPES = ("tracking:read", "proofs:export", "proofs:request")


@dataclasses.dataclass
class Recorded:
    """The chain the tests share: what was recorded, and the plaintexts of the carrier's."""

    node: NodeProcess
    head: int
    #: Name -> event id.
    ids: dict[str, int]
    #: Event id -> the canonical plaintext of the carrier's and terminal's events.
    plaintexts: dict[int, bytes]
    #: Name -> (tx hash, block-wide log index).
    logs: dict[str, tuple[str, int]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    node = NodeProcess(tmp_path_factory.mktemp("proofs") / "node", REPO_GENESIS).start()
    try:
        chain = rs.Chain(node.url)
        made = {
            "issue": (rs.event("mbl", MBL, "SHIPMENT.ISSU", T0, related=[("container", C1),
                      ("container", C2)], details={"vessel": {"imo": "9321483"}}),
                      rs.CARRIER, {"reference": True}),
            "depart": (rs.event("container", C1, "TRANSPORT.DEPA", T0 + 60, location="CNYTN",
                                details={"voyage": "042E"}), rs.CARRIER, {}),
            "stuffed": (rs.event("container", C2, "EQUIPMENT.STUF", T0 + 30), rs.CARRIER, {}),
            "discharged": (rs.event("container", C1, "TERMINAL.DISC", T0 + 900), rs.TERMINAL,
                           {"readers": [rs.CARRIER]}),
            "private": (rs.event("container", C1, "TERMINAL.GTOT", T0 + 1900), rs.TERMINAL, {}),
        }
        ids: dict[str, int] = {}
        logs: dict[str, tuple[str, int]] = {}
        plaintexts: dict[int, bytes] = {}
        for owner in (rs.CARRIER, rs.TERMINAL):
            names = [n for n, (_, o, _) in made.items() if o == owner]
            receipt = chain.send(owner, SYSTEM_ADDRESSES["CargoLedger"], encode_record_call(
                [rs.seal(made[n][0], owner, **made[n][2]) for n in names]))
            cargo_logs = [e for e in receipt["logs"] if e["topics"][0] == "0x" + CARGO_EVENT_TOPIC.hex()]
            for name, entry in zip(names, cargo_logs, strict=True):
                ids[name] = int(entry["topics"][3], 16)
                logs[name] = (receipt["transactionHash"], int(entry["logIndex"], 16))
                plaintexts[ids[name]] = canonical_events.plaintext(made[name][0])
        yield Recorded(node, chain.head(), ids, plaintexts, logs)
    finally:
        node.stop()


@dataclasses.dataclass
class ProofsHarness:
    """The gateway in front of the node, and API keys of three hosted organisations."""

    client: TestClient
    carrier: dict[str, str]
    terminal: dict[str, str]
    bank: dict[str, str]
    genesis: dict[str, Any]


@pytest.fixture
async def harness(recorded: Recorded, tmp_path: Path) -> AsyncIterator[ProofsHarness]:
    cfg = dataclasses.replace(config(tmp_path / "gw"), node_urls=(recorded.node.url,),
                              indexer_poll_ms=50)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        app = client.app
        auth = {}
        for name, chain_org in (("Pacific Ocean Line", rs.CARRIER),
                                ("Hong Kong Container Terminal", rs.TERMINAL),
                                ("Harbour Trade Bank", rs.BANK)):
            org_id, auth[chain_org] = organisation(app, name, chain_org=chain_org,
                                                   scopes=ALL_SCOPES)
            app[KEYSTORE].import_keys(
                org_id, signing_key=bytes(rs.account(chain_org).key),
                x25519_private=rs.x25519_private(chain_org),
                master_secret=rs.master_secret(chain_org))  # fmt: skip
        assert await app[INDEXER].wait_for_block(recorded.head, timeout=60)
        yield ProofsHarness(client, auth[rs.CARRIER], auth[rs.TERMINAL], auth[rs.BANK],
                            json.loads(REPO_GENESIS.read_text()))
    finally:
        await client.close()


def proven_ids(bundle: dict[str, Any]) -> list[int]:
    return [int(e["log"]["topics"][3], 16) for e in bundle["events"]]


def verifies(bundle: dict[str, Any], genesis: dict[str, Any], tmp_path: Path) -> Any:
    """The bundle verifies with all three: the module, the independent verifier, the CLI."""
    verified = verify_bundle(bundle, genesis)
    assert independent_verifier.check(bundle, genesis) is None
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(node_cli, ["verify-proof", str(path), "--genesis",
                                           str(REPO_GENESIS)])
    assert result.exit_code == 0, result.output
    return verified


async def error_of(response: Any, status: int) -> str:
    body = await response.json()
    assert response.status == status, body
    assert body["error"]["message"]
    code: str = body["error"]["code"]
    return code


# -- the node's RPC ---------------------------------------------------------------------------


def test_get_proof_takes_one_log_or_several(recorded: Recorded) -> None:
    genesis = json.loads(REPO_GENESIS.read_text())
    tx, index = recorded.logs["depart"]
    one = rpc_answer(recorded.node.url, "portledger_getProof", [tx, hex(index)])["result"]
    assert proven_ids(one) == [recorded.ids["depart"]]
    pairs = [list(recorded.logs[n]) for n in ("discharged", "issue", "stuffed")]
    several = rpc_answer(recorded.node.url, "portledger_getProof", [pairs])["result"]
    assert proven_ids(several) == [recorded.ids[n] for n in ("discharged", "issue", "stuffed")]
    assert len(verify_bundle(several, genesis).events) == 3
    for bad in ([[]], [[[tx]]], [[[tx, index]] * 101], [tx], [[tx, 10_000]]):
        answer = rpc_answer(recorded.node.url, "portledger_getProof", bad)
        assert answer["error"]["code"] == -32602, (bad, answer)


# -- export -----------------------------------------------------------------------------------


async def test_owner_exports_its_events_and_discloses_one(harness: ProofsHarness, recorded: Recorded,
                                                          tmp_path: Path) -> None:
    ids = recorded.ids
    resp = await harness.client.post("/v1/proofs", json={
        "reference": MBL.lower(), "disclose": [ids["depart"]]}, headers=harness.carrier)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"] == (
        f'attachment; filename="portledger-proof-{MBL.lower()}.json"')
    bundle = await resp.json()
    # The carrier's own events of the master B/L's view, in timeline order; not the terminal's.
    assert proven_ids(bundle) == [ids["issue"], ids["stuffed"], ids["depart"]]
    verified = verifies(bundle, harness.genesis, tmp_path)
    by_id = {e.cargo.event_id: e for e in verified.events if e.cargo is not None}
    assert by_id[ids["depart"]].plaintext == recorded.plaintexts[ids["depart"]]
    assert by_id[ids["issue"]].plaintext is None and by_id[ids["stuffed"]].plaintext is None
    shown = bundle["events"][2]["disclosure"]
    assert shown["layout"] == "portledger-envelope/1" and len(shown["dataKey"]) == 66
    # Subject references: the B/L asked for, and the disclosed event's container; C2 stays unnamed.
    assert [e.get("subjectReference") for e in bundle["events"]] == [MBL, None, C1]
    assert C2 not in json.dumps(bundle)


async def test_export_choices(harness: ProofsHarness, recorded: Recorded, tmp_path: Path) -> None:
    ids, post = recorded.ids, harness.client.post
    # every visible event of the container; all of the caller's own disclosed, without keys
    resp = await post("/v1/proofs", json={"reference": C1, "events": "visible",
                                          "disclose": "all", "dataKeys": False},
                      headers=harness.carrier)
    assert resp.status == 200, await resp.text()
    bundle = await resp.json()
    assert proven_ids(bundle) == [ids["depart"], ids["discharged"]]  # not the terminal's private
    assert bundle["events"][0]["disclosure"].keys() == {"plaintext", "layout"}
    assert "disclosure" not in bundle["events"][1]  # the terminal's: proven, never disclosed
    assert verifies(bundle, harness.genesis, tmp_path).events[0].plaintext == recorded.plaintexts[
        ids["depart"]]
    # a chosen subset
    resp = await post("/v1/proofs", json={"reference": MBL, "eventIds": [ids["stuffed"]]},
                      headers=harness.carrier)
    assert proven_ids(await resp.json()) == [ids["stuffed"]]
    # refusals
    cases = [
        ({"reference": C1, "events": "visible", "disclose": [ids["discharged"]]}, 403,
         "not-your-event"),
        ({"reference": C1, "eventIds": [ids["discharged"]]}, 422, "unknown-event"),
        ({"reference": C1, "eventIds": [ids["depart"]], "disclose": [ids["issue"]]}, 422,
         "unknown-event"),
        ({"reference": rs.container("PCOU", 499999)}, 404, "reference-not-found"),
        ({"reference": "not a reference!"}, 400, "not-a-reference"),
        ({"reference": C1, "colour": "red"}, 422, "schema-violation"),
        ({"reference": C1, "disclose": "some"}, 422, "schema-violation"),
        ({}, 422, "schema-violation"),
    ]
    for body, status, code in cases:
        assert await error_of(await post("/v1/proofs", json=body, headers=harness.carrier),
                              status) == code, body
    # the bank sees nothing of C1; the terminal owns no event of the master B/L it can see
    assert await error_of(await post("/v1/proofs", json={"reference": C1}, headers=harness.bank),
                          404) == "reference-not-found"
    assert await error_of(await post("/v1/proofs", data=b"{", headers={
        **harness.carrier, "Content-Type": "application/json"}), 400) == "bad-json"
    assert await error_of(await post("/v1/proofs", json={"reference": C1}), 401) == "unauthorized"


# -- requests ---------------------------------------------------------------------------------


async def test_bank_requests_carrier_approves_bank_verifies(harness: ProofsHarness, recorded: Recorded,
                                                            tmp_path: Path) -> None:
    client, ids = harness.client, recorded.ids
    resp = await client.post("/v1/proof-requests", json={
        "owner": rs.CARRIER, "reference": MBL, "purpose": "financing the cargo under L/C 7731",
        "disclose": [ids["issue"]]}, headers=harness.bank)
    assert resp.status == 201, await resp.text()
    asked = await resp.json()
    assert resp.headers["Location"] == f"/v1/proof-requests/{asked['id']}"
    assert asked["status"] == "pending" and asked["owner"]["id"] == rs.CARRIER
    assert asked["requester"]["id"] == rs.BANK and asked["bundle"] is None
    path = f"/v1/proof-requests/{asked['id']}"

    incoming = await (await client.get("/v1/proof-requests?direction=incoming",
                                       headers=harness.carrier)).json()
    assert [r["id"] for r in incoming["requests"]] == [asked["id"]]
    assert incoming["requests"][0]["purpose"] == "financing the cargo under L/C 7731"
    outgoing = await (await client.get("/v1/proof-requests?direction=outgoing",
                                       headers=harness.carrier)).json()
    assert outgoing["requests"] == []
    mine = await (await client.get("/v1/proof-requests", headers=harness.bank)).json()
    assert [r["id"] for r in mine["requests"]] == [asked["id"]]

    # Only the owner decides; a third party does not even see it.
    assert await error_of(await client.post(f"{path}/approve", json={}, headers=harness.bank),
                          403) == "not-the-owner"
    assert await error_of(await client.get(path, headers=harness.terminal),
                          404) == "unknown-proof-request"
    assert await error_of(await client.get(f"{path}/bundle", headers=harness.bank),
                          409) == "not-approved"

    # The carrier approves: the issue record disclosed, as asked; the bundle is made now.
    resp = await client.post(f"{path}/approve", json={"note": "for L/C 7731 only"},
                             headers=harness.carrier)
    assert resp.status == 200, await resp.text()
    approved = await resp.json()
    assert approved["status"] == "approved" and approved["reason"] == "for L/C 7731 only"
    assert approved["granted"] == {"eventIds": [ids["issue"], ids["stuffed"], ids["depart"]],
                                   "disclosed": [ids["issue"]], "dataKeys": True}
    assert approved["bundle"]["events"] == 3
    assert await error_of(await client.post(f"{path}/decline", json={"reason": "changed mind"},
                                            headers=harness.carrier), 409) == "already-decided"

    # The bank downloads and verifies it offline; the disclosed plaintext is the carrier's.
    resp = await client.get(f"{path}/bundle", headers=harness.bank)
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    bundle = await resp.json()
    verified = verifies(bundle, harness.genesis, tmp_path)
    assert verified.events[0].plaintext == recorded.plaintexts[ids["issue"]]
    assert [e.plaintext for e in verified.events[1:]] == [None, None]
    assert "sealed by 1 of 1 validators" in verified.describe()

    # Both parties see the history; the carrier's access log names the bank's download.
    for who in (harness.bank, harness.carrier):
        seen = await (await client.get(path, headers=who)).json()
        assert [h["action"] for h in seen["history"]] == ["requested", "approved", "downloaded"]
        assert [h["organisation"]["id"] for h in seen["history"]] == [rs.BANK, rs.CARRIER,
                                                                      rs.BANK]
        assert all(h["actor"].startswith("api-key:") and h["time"] for h in seen["history"])
    log = await (await client.get("/v1/access-log", headers=harness.carrier)).json()
    by_proof = {e["eventId"] for e in log["entries"] if e["via"] == "proof"}
    assert by_proof == {ids["issue"], ids["stuffed"], ids["depart"]}
    assert {e["reader"] for e in log["entries"] if e["via"] == "proof"} == {rs.BANK}


async def test_decline_withdraw_and_refusals(harness: ProofsHarness, recorded: Recorded) -> None:
    client, post = harness.client, harness.client.post
    body = {"owner": rs.CARRIER, "reference": C1, "purpose": "pre-shipment finance"}
    first = await (await post("/v1/proof-requests", json=body, headers=harness.bank)).json()
    second = await (await post("/v1/proof-requests", json=body, headers=harness.bank)).json()

    declined = await post(f"/v1/proof-requests/{first['id']}/decline",
                          json={"reason": "no facility with this bank"}, headers=harness.carrier)
    assert declined.status == 200
    assert (await declined.json())["reason"] == "no facility with this bank"
    assert await error_of(await client.get(f"/v1/proof-requests/{first['id']}/bundle",
                                           headers=harness.bank), 409) == "not-approved"
    assert await error_of(await post(f"/v1/proof-requests/{first['id']}/approve",
                                     headers=harness.carrier), 409) == "already-decided"

    assert await error_of(await post(f"/v1/proof-requests/{second['id']}/withdraw",
                                     headers=harness.carrier), 403) == "not-the-requester"
    withdrawn = await (await post(f"/v1/proof-requests/{second['id']}/withdraw",
                                  headers=harness.bank)).json()
    assert withdrawn["status"] == "withdrawn"
    assert [h["action"] for h in withdrawn["history"]] == ["requested", "withdrawn"]
    listed = await (await client.get("/v1/proof-requests?status=declined",
                                      headers=harness.bank)).json()
    assert [r["id"] for r in listed["requests"]] == [first["id"]]

    # An owner with nothing of its own to prove cannot approve (the request stays pending).
    asked = await (await post("/v1/proof-requests", json={**body, "owner": rs.TERMINAL,
                                                           "reference": C2},
                              headers=harness.bank)).json()
    assert await error_of(await post(f"/v1/proof-requests/{asked['id']}/approve",
                                     headers=harness.terminal), 404) == "reference-not-found"
    carrier_only = await (await post("/v1/proof-requests", json={
        **body, "owner": rs.TERMINAL, "reference": MBL, "eventIds": [recorded.ids["issue"]]},
        headers=harness.bank)).json()
    assert await error_of(await post(f"/v1/proof-requests/{carrier_only['id']}/approve",
                                     headers=harness.terminal), 422) == "unknown-event"
    assert (await (await client.get(f"/v1/proof-requests/{asked['id']}",
                                    headers=harness.bank)).json())["status"] == "pending"

    cases = [
        ({**body, "owner": rs.BANK}, 422, "own-organisation"),
        ({**body, "owner": rs.AUDITOR}, 404, "unknown-owner"),  # not hosted here
        ({**body, "reference": "???"}, 400, "not-a-reference"),
        ({**body, "purpose": ""}, 422, "schema-violation"),
        ({"owner": rs.CARRIER, "reference": C1}, 422, "schema-violation"),
        ({**body, "disclose": [0]}, 422, "schema-violation"),
        ({**body, "purpose": "lone \ud800 surrogate"}, 422, "invalid-text"),
    ]
    for bad, status, code in cases:
        assert await error_of(await post("/v1/proof-requests", json=bad, headers=harness.bank),
                              status) == code, bad
    unknown = "/v1/proof-requests/6f1d7a52-0000-4000-8000-000000000000"
    assert await error_of(await client.get(unknown, headers=harness.bank), 404) == "unknown-proof-request"
    assert await error_of(await post(f"{unknown}/decline", json={"reason": "x"},
                                     headers=harness.carrier), 404) == "unknown-proof-request"
    assert await error_of(await post(f"/v1/proof-requests/{asked['id']}/decline", json={},
                                     headers=harness.terminal), 422) == "schema-violation"
    assert await error_of(await client.get("/v1/proof-requests?limit=0", headers=harness.bank),
                          400) == "bad-query"
    assert await error_of(await client.get("/v1/proof-requests?direction=sideways",
                                           headers=harness.bank), 400) == "bad-query"


async def test_scopes(harness: ProofsHarness, recorded: Recorded) -> None:
    app = harness.client.app
    _, reader = organisation(app, "Read Only Forwarder", chain_org=rs.FORWARDER,
                             scopes=("tracking:read",))
    post = harness.client.post
    assert await error_of(await post("/v1/proofs", json={"reference": C1}, headers=reader),
                          403) == "missing-scope"
    assert await error_of(await post("/v1/proof-requests", json={
        "owner": rs.CARRIER, "reference": C1, "purpose": "x"}, headers=reader),
        403) == "missing-scope"
    assert await error_of(await harness.client.get("/v1/proof-requests", headers=reader),
                          403) == "missing-scope"
    assert app[READ_MODEL].event(recorded.ids["issue"]) is not None
