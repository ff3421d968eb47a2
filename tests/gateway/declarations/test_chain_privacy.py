"""A declaration's filing on chain is private to its readers (issue 15, item 5).

The forwarder declares for the trader (named as reader); its China declaration is filed in the
real ``Declarations.vy`` (eth-tester) under a keyed chain key — HMAC of the declaration's secret
salt, the authority and the number — and customs posts the statuses there. The chain's logs are
stored as the indexer stores them. Then: the key is not the number's plain hash and a guesser
holding that plain hash reads an empty filing from the contract; the declarant, the named
reader and customs see the on-chain history when tracking the number; the bank, a competitor
and an anonymous caller get exactly what they get for a number nobody declared; the salt and
the key appear in no answer to a non-reader; the salt survives a restart and a re-upload.

The customs events of the results (a query, then the release) go onto the real ``CargoLedger``
as the customs organisation's ``record()`` calls and are indexed from the chain's logs: no
event on chain has the number's plain hash as its subject nor the number in its bytes (they
name the declaration's keyed alias, the number only sealed in their details); the named reader
tracking the number sees it released and the box customs-released, the bank gets the 404 of an
undeclared number, and the customs-hold alert on the box opens and is resolved by the release.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from eth_utils import keccak
from web3.logs import DISCARD

from contracts.cargo import (
    CARGO_EVENT_TOPIC,
    decode_event_log,
    encode_record_call,
    subject_key,
)
from gateway.appkeys import OUTBOX, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.declarations import onchain
from gateway.declarations.api import DECLARATIONS
from gateway.declarations.store import DeclarationStore, DeclarationStoreError
from gateway.readside.readmodel import (
    Cursor,
    DeclarationFiled,
    DeclarationStatus,
    EventAdded,
    IndexedEvent,
)
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import BOX, INVOICE, MBL, body, submit_all, upload_body
from tests.gateway.declarations.test_onchain import settle
from tests.support.dcsa import wait_until
from tests.support.deployment import Deployment, reset_port
from tests.support.readside import AGENT, BANK, CUSTOMS, FORWARDER, TRADER, seal


def _index(port: Port, chain: Deployment, receipt: Any) -> None:
    """Store a receipt's ``Declarations`` logs as the indexer does (``DeclarationFiled``,
    ``StatusPosted``)."""
    contract = chain.Declarations
    block = receipt["blockNumber"]
    at = chain.w3.eth.get_block(block)["timestamp"]
    changes: list[Any] = []
    for e in contract.events.DeclarationFiled().process_receipt(receipt, errors=DISCARD):
        v = e.args
        changes.append(DeclarationFiled(bytes(v["declaration"]), v["declarant"], v["authority"],
                                        bytes(v["document_hash"]), block, at))
    for e in contract.events.StatusPosted().process_receipt(receipt, errors=DISCARD):
        v = e.args
        changes.append(DeclarationStatus(bytes(v["declaration"]), v["org"], v["status"],
                                         bytes(v["note_hash"]), block, e.logIndex, at))
    port.app[READ_MODEL].apply_changes(changes)


async def _filed_and_released(client: TestClient, port: Port) -> tuple[dict[str, Any], Any]:
    """The forwarder's China declaration (trader named), released, filed and its statuses
    posted on the real contract and indexed; the forwarder's view and the chain."""
    auth = port.auth[FORWARDER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",0306179000,\n", ",0306179000,S1\n")},
        authorities=["cn-itsw"], readers=[port.orgs[TRADER]]), headers=auth), 201)
    await submit_all(client, auth, view)
    service = client.app[DECLARATIONS]

    def filed() -> bool:
        subs = service.store.submissions_of(view["id"])
        return bool(subs) and subs[0].status == "released" and \
            service.store.chain_of(subs[0].id)[0] == "filed"
    await wait_until(filed, timeout=20, what="the filing")
    (sub,) = service.store.submissions_of(view["id"])
    outbox = client.app[OUTBOX]
    (call,) = [op for op in outbox.pending(port.orgs[FORWARDER], 100) if op.kind == "call"]
    chain = reset_port()
    chain.transact(chain.Declarations.functions.bindAuthority(2), chain.accounts[CUSTOMS])
    _index(port, chain, chain.send(chain.Declarations.address, call.data,
                                   chain.accounts[FORWARDER]))
    settle(outbox, port.orgs[FORWARDER], call.op_id)
    await wait_until(lambda: service.store.chain_of(sub.id)[0] == "done", timeout=10,
                     what="the statuses posted")
    for op in outbox.pending(port.orgs[CUSTOMS], 100):
        if op.kind == "call":
            _index(port, chain, chain.send(chain.Declarations.address, op.data,
                                           chain.accounts[CUSTOMS]))
    return await body(await client.get(f"/v1/declarations/{view['id']}", headers=auth)), chain


def _unknown(number: str) -> str:
    """Another number of the same layout nobody declared (the next in the sequence)."""
    return number[:-9] + f"{(int(number[-9:]) + 1) % 10**9:09d}"


def _same(text: str, number: str) -> str:
    """An answer with the number asked for and the request's id taken out."""
    return re.sub(r'"requestId": *"[^"]*"', "", text).replace(number, "N")


async def _answer(client: TestClient, path: str, auth: dict[str, str] | None,
                  ) -> tuple[int, str]:
    resp = await client.get(path, headers=auth or {})
    return resp.status, await resp.text()


async def test_a_filing_is_keyed_and_only_its_readers_see_it(
        gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    competitor = port.member(AGENT, "Rival Forwarding")
    view, chain = await _filed_and_released(client, port)
    (sub,) = view["submissions"]
    number = sub["number"]
    salt = bytes.fromhex(view["chainSalt"][2:])
    key = onchain.chain_key(salt, "cn-itsw", number)

    # the key: keyed by the secret salt, not the number's plain hash
    assert len(salt) == 32 and sub["chain"]["key"] == "0x" + key.hex()
    assert key != subject_key(number) and sub["chain"]["state"] == "done"
    assert onchain.chain_key(bytes(32), "cn-itsw", number) != key
    assert onchain.chain_key(salt, "hk-tdec", number) != key  # the authority is in it
    declarant, authority, digest, status, _ = \
        chain.Declarations.functions.declarationOf(key).call()
    assert (declarant, authority, status) == (FORWARDER, 2, 6)
    # a guesser who hashes the number finds an empty filing and no history
    assert tuple(chain.Declarations.functions.declarationOf(subject_key(number)).call()) == \
        (0, 0, b"\x00" * 32, 0, 0)
    assert chain.Declarations.functions.historyOf(subject_key(number)).call() == []

    # the declarant, the named reader and the authority see the on-chain history
    for org in (FORWARDER, TRADER, CUSTOMS):
        seen = await body(await client.get(f"/v1/track/{number}", headers=port.auth[org]))
        (decl,) = seen["declarations"]
        assert decl["declarant"]["id"] == FORWARDER and decl["status"] == "released", org
        assert [h["status"] for h in decl["history"]][0] == "filed"
        assert decl["history"][-1]["by"] == "Customs"
        resolved = await body(await client.get("/v1/resolve", params={"q": number},
                                               headers=port.auth[org]))
        assert resolved["match"] == {"kind": "declaration", "value": number}

    # anyone else: exactly the answer of a number nobody declared
    other = _unknown(number)
    for auth in (port.auth[BANK], competitor, None):
        for path in ("/v1/track/{}", "/v1/resolve?q={}"):
            known = await _answer(client, path.format(number), auth)
            unknown = await _answer(client, path.format(other), auth)
            assert known[0] == unknown[0] == (401 if auth is None else 404), known
            assert _same(known[1], number) == _same(unknown[1], other)
            for secret in (salt.hex(), key.hex()):
                assert secret not in known[1].lower()
        for path in (f"/v1/declarations/{view['id']}", "/v1/declarations",
                     f"/v1/declarations/{view['id']}/submissions"):
            status, text = await _answer(client, path, auth)
            assert status in (401, 404) or json.loads(text) == {"declarations": []}, path
            assert salt.hex() not in text.lower() and key.hex() not in text.lower()


async def test_a_reader_the_declarant_removes_sees_an_unknown_number_at_once(
        gateway: tuple[TestClient, Port]) -> None:
    """The trader's view of the number is cached; the forwarder uploads the shipment again
    naming no reader: the trader's next look — from this process's cache or another's, which
    the read model's change journal tells — is the unknown number's answer."""
    client, port = gateway
    view, _ = await _filed_and_released(client, port)
    number = view["submissions"][0]["number"]
    trader = port.auth[TRADER]
    for _ in range(2):  # the second answer comes from the view cache
        seen = await body(await client.get(f"/v1/track/{number}", headers=trader))
        assert seen["declarations"][0]["status"] == "released"
    await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",0306179000,\n", ",0306179000,S1\n")},
        authorities=["cn-itsw"], readers=[]), headers=port.auth[FORWARDER]), 200)
    other = _unknown(number)
    for path in ("/v1/track/{}", "/v1/resolve?q={}"):
        known = await _answer(client, path.format(number), trader)
        unknown = await _answer(client, path.format(other), trader)
        assert known[0] == unknown[0] == 404, known
        assert _same(known[1], number) == _same(unknown[1], other)
    assert (await client.get(f"/v1/declarations/{view['id']}", headers=trader)).status == 404
    # the declarant still sees it
    seen = await body(await client.get(f"/v1/track/{number}", headers=port.auth[FORWARDER]))
    assert seen["declarations"][0]["status"] == "released"


async def test_the_salt_is_made_once_sealed_and_kept(tmp_path: Path) -> None:
    """A new shipment gets 32 random bytes; a re-upload and a restart keep them; they are
    sealed in the file (absent from its bytes) and open only under the same secret."""
    secret = bytes(range(32))
    store = DeclarationStore(tmp_path / "declarations.db", secret=secret)
    body_ = {"lines": [], "options": {"direction": "import"}}
    first, new = store.put_shipment(7, "PCOL1", body_, [])
    other, _ = store.put_shipment(7, "PCOL2", body_, [])
    salt = store.salt(first)
    assert new and len(salt) == 32 and salt != store.salt(other)
    again, new = store.put_shipment(7, "PCOL1", {**body_, "lines": [{"line": 1}]}, [9])
    assert not new and store.salt(again) == salt and again.readers == (9,)
    store.close()
    reopened = DeclarationStore(tmp_path / "declarations.db", secret=secret)
    shipment = reopened.shipment(first.id)
    assert shipment is not None and reopened.salt(shipment) == salt
    reopened.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert salt not in raw and salt.hex().encode() not in raw
    stranger = DeclarationStore(tmp_path / "declarations.db", secret=bytes(32))
    try:
        stranger.shipment(first.id)
        raise AssertionError("a body opened under another secret")
    except DeclarationStoreError:
        pass
    finally:
        stranger.close()


def _record_on_chain(port: Port, chain: Deployment, events: list[Any]) -> list[IndexedEvent]:
    """The customs organisation's sealed events in one ``CargoLedger.record()`` call on the
    chain, and their logs stored as the indexer stores them."""
    sealed = [seal(e, CUSTOMS, readers=e.visibility.readers) for e in events]
    receipt = chain.send(chain.CargoLedger.address, encode_record_call(sealed),
                         chain.accounts[CUSTOMS])
    assert receipt["status"] == 1
    block = receipt["blockNumber"]
    at = chain.w3.eth.get_block(block)["timestamp"]
    model = port.app[READ_MODEL]
    out = []
    for log in receipt["logs"]:
        topics = [bytes(t) for t in log["topics"]]
        if topics[0] != CARGO_EVENT_TOPIC:
            continue
        e = decode_event_log(topics, bytes(log["data"]))
        info = confidential.envelope_info(e.payload)
        n = len(port.events) + 1
        indexed = IndexedEvent(  # (the story's ids are this chain's first: ours above them)
            event_id=(1 << 40) + e.event_id, block=n, tx_hash=bytes(receipt["transactionHash"]),
            log_index=log["logIndex"], block_time=at, publisher=e.publisher,
            subject=e.subject, type_code=e.event_type, classifier=e.classifier,
            event_time=e.event_time, location=e.location, retracts=e.retracts,
            payload_hash=e.payload_hash, envelope=e.payload, key_version=info.key_version,
            readers=info.readers, reference_readable=info.reference_readable)
        model.apply([EventAdded(indexed)], Cursor(n, keccak(n.to_bytes(8, "big"))),
                    model.cursor())
        port.events.append(indexed)
        out.append(indexed)
    return out


async def test_customs_events_name_the_alias_never_the_number(
        gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    auth = port.auth[FORWARDER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        authorities=["cn-itsw"], readers=[port.orgs[TRADER]]), headers=auth), 201)
    await submit_all(client, auth, view)
    service = client.app[DECLARATIONS]

    def recorded() -> bool:
        subs = service.store.submissions_of(view["id"])
        return bool(subs) and subs[0].status == "released" and subs[0].recorded == "released"
    await wait_until(recorded, timeout=20, what="the release, recorded")
    (sub,) = (await body(await client.get(f"/v1/declarations/{view['id']}",
                                          headers=auth)))["submissions"]
    number, alias = sub["number"], sub["chain"]["alias"]
    salt = bytes.fromhex(view["chainSalt"][2:])
    assert alias == onchain.alias(salt, "cn-itsw", number) and len(alias) == 35
    assert alias != onchain.alias(bytes(32), "cn-itsw", number)
    # the shrimp line has no 规格型号: a query (HELD), then the release
    events = [op.event for op in client.app[OUTBOX].pending(port.orgs[CUSTOMS], 100)
              if op.event is not None]
    assert [e.event_type for e in events if e.subject.kind == "declaration"] == \
        ["CUSTOMS.CUSH", "CUSTOMS.CUSR"]
    for e in events:
        assert e.details["declarationNumber"] == number
        assert number not in {e.subject.value, *(r.value for r in e.related)}
        assert e.subject.value == alias or alias in {r.value for r in e.related}
    chain = reset_port()
    indexed = _record_on_chain(port, chain, events)
    # the chain: the events are there (alias, B/L, box), none under the number's plain hash,
    # nor the number (or its hash) anywhere in their bytes
    assert len(indexed) == len(events) == 6
    assert {e.subject for e in indexed} == {subject_key(alias), subject_key(MBL),
                                            subject_key(BOX)}
    logs = chain.w3.eth.get_logs({"fromBlock": 0, "address": chain.CargoLedger.address})
    assert len([log for log in logs if bytes(log["topics"][0]) == CARGO_EVENT_TOPIC]) == 6
    for log in logs:  # (the CargoEvent logs and the batch's)
        raw = b"".join(bytes(t) for t in log["topics"]) + bytes(log["data"])
        assert subject_key(number) not in raw and number.encode() not in raw
    assert chain.w3.eth.get_logs({"fromBlock": 0, "address": chain.CargoLedger.address,
                                  "topics": [CARGO_EVENT_TOPIC, subject_key(number)]}) == []

    # the named reader tracking the number: released; the box: customs-released
    tracked = await body(await client.get(f"/v1/track/{number}", headers=port.auth[TRADER]))
    assert tracked["customs"]["status"] == "released"
    resolved = await body(await client.get("/v1/resolve", params={"q": number},
                                           headers=port.auth[TRADER]))
    assert resolved["match"] == {"kind": "declaration", "value": number}
    box = await body(await client.get(f"/v1/track/{BOX}", headers=port.auth[TRADER]))
    assert box["containers"][0]["status"] == "customs-released"
    # the bank: what a number nobody declared gets
    other = _unknown(number)
    for path in ("/v1/track/{}", "/v1/resolve?q={}"):
        known = await _answer(client, path.format(number), port.auth[BANK])
        unknown = await _answer(client, path.format(other), port.auth[BANK])
        assert known[0] == unknown[0] == 404, known
        assert _same(known[1], number) == _same(unknown[1], other)
        assert alias not in known[1]

    # the customs-hold alert on the box opens with the query and the release resolves it
    await port.engine.on_indexed(indexed)
    holds = [a for a in port.alerts_of(TRADER)
             if a.kind == "customs-hold" and a.subject.value == BOX]
    assert [a.state for a in holds] == ["resolved"], holds
    assert not [a for a in port.alerts_of(BANK) if a.kind == "customs-hold"]
