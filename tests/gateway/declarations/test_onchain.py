"""Declarations on chain: a forwarder (a declarant ``Declarations.vy`` takes filings from)
files the released declaration under its keyed chain key with its document hash; once that is
final the customs organisation posts the statuses — the write path's calls run against the real
contracts. (Who sees the filing: ``test_chain_privacy.py``.)"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from contracts.cargo import subject_key
from gateway.appkeys import OUTBOX
from gateway.declarations import onchain
from gateway.declarations.api import DECLARATIONS
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import INVOICE, body, submit_all, upload_body
from tests.support.dcsa import wait_until
from tests.support.deployment import reset_port
from tests.support.readside import CUSTOMS, FORWARDER


async def test_a_forwarder_files_on_chain_and_customs_posts_the_statuses(
        gateway: tuple[TestClient, Port]) -> None:
    """A declarant the Declarations contract takes filings from (a forwarder) files the released
    declaration with its document hash; once that is final, the customs organisation posts the
    statuses. The write path's calls are run against the real contracts (eth-tester) as the
    chain would run them."""
    client, port = gateway
    auth = port.auth[FORWARDER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",0306179000,\n", ",0306179000,S1\n")},
        authorities=["cn-itsw"]), headers=auth), 201)
    sid = view["id"]
    await submit_all(client, auth, view)
    service = client.app[DECLARATIONS]

    def filed() -> bool:
        subs = service.store.submissions_of(sid)
        return bool(subs) and subs[0].status == "released" and \
            service.store.chain_of(subs[0].id)[0] == "filed"
    await wait_until(filed, timeout=20, what="the filing")
    (sub,) = service.store.submissions_of(sid)
    outbox = client.app[OUTBOX]
    (call,) = [op for op in outbox.pending(port.orgs[FORWARDER], 100) if op.kind == "call"]
    assert call.idempotency_key == f"declarations:file:{sub.id}"
    chain = reset_port()
    chain.transact(chain.Declarations.functions.bindAuthority(2), chain.accounts[CUSTOMS])
    chain.send(chain.Declarations.address, call.data, chain.accounts[FORWARDER])
    assert outbox.pending(port.orgs[CUSTOMS], 100) == [] or all(
        op.kind == "event" for op in outbox.pending(port.orgs[CUSTOMS], 100))
    settle(outbox, port.orgs[FORWARDER], call.op_id)

    def posted() -> bool:
        return service.store.chain_of(sub.id)[0] == "done"
    await wait_until(posted, timeout=10, what="the statuses posted")
    posts = [op for op in outbox.pending(port.orgs[CUSTOMS], 100) if op.kind == "call"]
    statuses = [op.idempotency_key.rsplit(":", 1)[1] for op in posts]
    # every status the worker saw, in order (the SIMULATED authority's "accepted" may pass
    # between two polls)
    assert statuses[-1] == "released" and set(statuses) <= {"accepted", "released"}
    for op in posts:
        chain.send(chain.Declarations.address, op.data, chain.accounts[CUSTOMS])
    key = service.chain_key_of(sub)
    assert key is not None and key != subject_key(sub.number)  # keyed, never the plain hash
    declarant, authority, digest, status, _ = chain.Declarations.functions.declarationOf(
        key).call()
    assert (declarant, authority, status) == (FORWARDER, 2, 6)  # CN single window, released
    assert digest == onchain.document_digest(sub.document)
    assert chain.Declarations.functions.historyOf(subject_key(sub.number)).call() == []
    history = chain.Declarations.functions.historyOf(key).call()
    assert [(e[0], e[1]) for e in history] == [(1, FORWARDER)] + [
        (onchain.STATUS_CODES[s], CUSTOMS) for s in statuses]


def settle(outbox: Any, org_id: int, op_id: int) -> None:
    """Mark one operation final as the submitter does when its transaction is mined."""
    tx = outbox.persist_tx(org_id=org_id, sender="0x" + "00" * 20, nonce=0,
                           tx_hash="0x" + "ab" * 32, raw=b"\x01", kind="call", op_ids=[op_id])
    outbox.finish_tx(tx.tx_id, status="mined", block=7, final={op_id: None})


async def test_customs_binds_its_authority_through_the_api(
        gateway: tuple[TestClient[Any, Any], Port]) -> None:
    """The organisation the gateway names as an authority's (customs on chain) binds it through
    ``POST /v1/declarations/authorities/{authority}/bind``: one ``bindAuthority`` call in its
    outbox (asking again answers the same operation), which the real contract takes; anyone
    else is refused, an unknown authority is 404."""
    client, port = gateway
    path = "/v1/declarations/authorities/{}/bind"
    answer = await body(await client.post(path.format("cn-itsw"), headers=port.auth[CUSTOMS]),
                        202)
    assert (answer["authority"], answer["code"]) == ("cn-itsw", 2)
    assert answer["receipt"]["id"] == "declarations:bind:2"
    assert answer["receipt"]["duplicate"] is False
    again = await body(await client.post(path.format("cn-itsw"), headers=port.auth[CUSTOMS]),
                       202)
    assert again["receipt"]["duplicate"] is True
    hk = await body(await client.post(path.format("hk-tdec"), headers=port.auth[CUSTOMS]), 202)
    rocars = await body(await client.post(path.format("hk-rocars"),
                                          headers=port.auth[CUSTOMS]), 202)
    assert hk["receipt"]["id"] == rocars["receipt"]["id"] == "declarations:bind:1"
    assert rocars["receipt"]["duplicate"] is True  # TDEC and ROCARS are one authority on chain
    outbox = client.app[OUTBOX]
    calls = [op for op in outbox.pending(port.orgs[CUSTOMS], 100) if op.kind == "call"]
    assert [op.idempotency_key for op in calls] == ["declarations:bind:2", "declarations:bind:1"]
    chain = reset_port()
    for op in calls:
        chain.send(chain.Declarations.address, op.data, chain.accounts[CUSTOMS])
    assert chain.Declarations.functions.authority_org(2).call() == CUSTOMS
    assert chain.Declarations.functions.authority_org(1).call() == CUSTOMS
    refused = await client.post(path.format("cn-itsw"), headers=port.auth[FORWARDER])
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "not-the-authority"
    unknown = await client.post(path.format("us-ace"), headers=port.auth[CUSTOMS])
    assert unknown.status == 404
