"""The submitter against a real node process: batching, sealing, finality, bisecting, nonces.

One ``portledger node`` (the repository genesis, one validator) serves the module; every test
uses its own outbox and keystore, so tests share only the chain (and the demo accounts'
nonces, which the nonce manager reads from the chain).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from contracts import abi
from contracts.cargo import RECORD_SELECTOR
from devnet.jsonrpc import rpc_call
from devnet.ports import free_port
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import Keystore
from gateway.nodeclient import NodeClient, NodeUnavailable, RpcError
from gateway.writepath.operations import Operation, Receipt
from gateway.writepath.outbox import Outbox
from gateway.writepath.submitter import Submitter
from tests.support import readside as rs
from tests.support.nodes import NodeProcess
from tests.support.writepath import (
    TERMINAL,
    chain_cargo_events,
    demo_keystore,
    event_op,
    open_keys,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, genesis_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("submitter") / "node", genesis_path).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return demo_keystore(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def parts(tmp_path: Path, node: NodeProcess) -> AsyncIterator[tuple[Outbox, NodeClient]]:
    box = Outbox(tmp_path / "outbox.sqlite")
    client = NodeClient([node.url], timeout=5.0)
    yield box, client
    await client.close()
    box.close()


async def chain_org(client: NodeClient, store: Keystore, org: int) -> int:
    org_id, _ = await client.call("Consortium", "memberOf", store.get(org).address)
    return int(org_id)


async def drain(sub: Submitter, box: Outbox, keys: list[str], org: int = TERMINAL,
                timeout: float = 60.0) -> list[Receipt]:
    await sub.start()
    try:
        return [await sub.wait_final(org, k, timeout) for k in keys]
    finally:
        await sub.stop()


async def test_events_go_final_once_with_event_ids_in_order(
    parts: tuple[Outbox, NodeClient], store: Keystore, node: NodeProcess
) -> None:
    box, client = parts
    start = await client.block_number()
    ops = [event_op(i, f"order-{i}") for i in range(23)]
    box.accept(TERMINAL, ops[:10])
    box.accept(TERMINAL, ops[10:])
    sub = Submitter(box, client, store, batch_max_events=10, batch_window_ms=50)
    seen: list[Receipt] = []
    sub.add_listener(seen.extend)
    done = await drain(sub, box, [op.idempotency_key for op in ops])
    assert [r.status for r in done] == ["final"] * 23
    assert sorted(Counter(r.tx_hash for r in done).values()) == [3, 10, 10]
    ids = [r.event_id for r in done]
    assert ids == sorted(ids) and len(set(ids)) == 23  # acceptance order, no duplicate
    assert {r.op_id for r in seen} == {r.op_id for r in done}
    # on chain: exactly these events, readable by their owner
    me = await chain_org(client, store, TERMINAL)
    on_chain = chain_cargo_events(node.url, start)
    mine = [(ev, log) for ev, log in on_chain if ev.publisher == me]
    keys = Counter(k for _, k in open_keys(mine, store, {me: TERMINAL}) if k.startswith("order-"))
    assert keys == Counter(op.idempotency_key for op in ops)
    by_key = dict(zip([op.idempotency_key for op in ops], done, strict=True))
    for ev, log in mine:
        assert by_key[f"order-{ev.event_time - 1_767_225_600}"].event_id == ev.event_id
        assert int(log["blockNumber"], 16) == by_key[f"order-{ev.event_time - 1_767_225_600}"].block


async def test_partial_batches_are_paced_one_per_window_behind_a_tx_in_flight(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    keys = store.get(TERMINAL)
    sub = Submitter(box, client, store, batch_max_events=3, batch_window_ms=60_000)
    box.accept(TERMINAL, [event_op(100, "w-0")])
    # A transaction of the organisation went out just now: the partial batch waits.
    assert await sub._build(TERMINAL, keys, newest_in_flight=time.time()) is None
    assert box.status(TERMINAL, "w-0").status == "accepted"
    # ... unless that transaction is a window old ...
    box.accept(TERMINAL, [event_op(101, "w-1")])
    tx = await sub._build(TERMINAL, keys, newest_in_flight=time.time() - 61)
    assert tx is not None and len(tx.op_ids) == 2
    # ... or nothing is in flight (waiting would only add latency) ...
    box.accept(TERMINAL, [event_op(102, "w-2")])
    lone = await sub._build(TERMINAL, keys, newest_in_flight=None)
    assert lone is not None and len(lone.op_ids) == 1
    # ... and a full batch never waits.
    box.accept(TERMINAL, [event_op(103 + i, f"w-{3 + i}") for i in range(3)])
    full = await sub._build(TERMINAL, keys, newest_in_flight=time.time())
    assert full is not None and len(full.op_ids) == 3
    done = await drain(sub, box, [f"w-{i}" for i in range(6)])
    assert {r.status for r in done} == {"final"}
    assert [r.tx_hash for r in done] == [tx.tx_hash] * 2 + [lone.tx_hash] + [full.tx_hash] * 3


async def test_a_lone_event_does_not_wait_for_the_window(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    sub = Submitter(box, client, store, batch_max_events=100, batch_window_ms=60_000)
    box.accept(TERMINAL, [event_op(103, "lone")])
    [done] = await drain(sub, box, ["lone"], timeout=30)  # far less than the 60 s window
    assert done.status == "final"


async def test_an_event_with_batch_limit_one_travels_alone(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    """A custody step's details (``batch_limit=1``) never share a transaction: the events
    before and after them still batch, in acceptance order, and all go final once."""
    box, client = parts
    sub = Submitter(box, client, store, batch_max_events=10, batch_window_ms=50)
    ops = [event_op(200 + i, f"alone-{i}") for i in range(7)]
    ops[2] = dataclasses.replace(ops[2], batch_limit=1)
    ops[3] = dataclasses.replace(ops[3], batch_limit=1)
    box.accept(TERMINAL, ops)
    done = await drain(sub, box, [op.idempotency_key for op in ops])
    assert {r.status for r in done} == {"final"}
    txs = [r.tx_hash for r in done]
    assert txs[0] == txs[1] and txs[4] == txs[5] == txs[6]
    assert len({txs[0], txs[2], txs[3], txs[4]}) == 4
    ids = [r.event_id for r in done]
    assert ids == sorted(ids) and len(set(ids)) == 7
    with pytest.raises(ValueError, match="batch limit"):
        box.accept(TERMINAL, [dataclasses.replace(event_op(299, "alone-bad"), batch_limit=-1)])


async def test_reverted_batch_is_bisected_to_the_offending_event(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    ops = [event_op(200 + i, f"b-{i}") for i in range(7)]
    bad = event_op(300, "b-bad", kind="CUSTOMS.CUSR")  # a terminal may not publish this
    box.accept(TERMINAL, [*ops[:3], bad, *ops[3:]])
    sub = Submitter(box, client, store, batch_max_events=50, batch_window_ms=10)
    done = await drain(sub, box, [*[o.idempotency_key for o in ops], "b-bad"])
    assert [r.status for r in done[:7]] == ["final"] * 7
    assert done[7].status == "failed" and "customs" in (done[7].error or "")
    assert len({r.event_id for r in done[:7]}) == 7


async def test_calls_go_alone_and_a_revert_fails_with_its_reason(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    cargo = abi.address("CargoLedger")
    empty = Operation("c-empty", "call", to=cargo, data=RECORD_SELECTOR, summary="empty record")
    box.accept(TERMINAL, [event_op(400, "c-0"), empty, event_op(401, "c-1")])
    sub = Submitter(box, client, store, batch_max_events=50, batch_window_ms=10)
    done = await drain(sub, box, ["c-0", "c-empty", "c-1"])
    assert [r.status for r in done] == ["final", "failed", "final"]
    assert "empty batch" in (done[1].error or "")
    assert len({r.tx_hash for r in done}) == 3  # the call split the events into two batches
    assert done[0].block <= done[2].block


async def test_unknown_named_reader_fails_clearly(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    box.accept(TERMINAL, [event_op(500, "r-bad", readers=(999_999,)), event_op(501, "r-ok")])
    sub = Submitter(box, client, store, batch_window_ms=10)
    bad, ok = await drain(sub, box, ["r-bad", "r-ok"])
    assert bad.status == "failed" and "999999" in (bad.error or "")
    assert ok.status == "final"


async def test_a_key_forgotten_while_another_is_read_still_seals(
    parts: tuple[Outbox, NodeClient], store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer's directory listener forgets keys while it catches up at start-up; when it
    did so between two of the submitter's key reads, the first reader (just read from the
    chain) was reported "not a member with an encryption key on chain" (CI, 2026-12-07)."""
    box, client = parts
    sub = Submitter(box, client, store, batch_window_ms=10)
    real_call = client.call

    async def call_then_forget(*args: object, **kw: object) -> tuple[object, ...]:
        answer = await real_call(*args, **kw)  # type: ignore[arg-type]
        sub.forget_reader_keys()  # the listener runs while the submitter awaits
        return answer

    monkeypatch.setattr(client, "call", call_then_forget)
    readers = (rs.FORWARDER, rs.TERMINAL)
    box.accept(TERMINAL, [event_op(520, "r-two", readers=readers)])
    [receipt] = await drain(sub, box, ["r-two"])
    assert receipt.status == "final", receipt.error


async def test_a_node_limit_refusal_is_sent_again_not_failed(
    parts: tuple[Outbox, NodeClient], store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any -32005 ("limit exceeded") means "later": the node's pool time bound answers with a
    text the submitter did not know ("the pool holds N transactions, S s of work"), and the
    operations must wait for the next attempt, not fail."""
    box, client = parts
    sub = Submitter(box, client, store, batch_window_ms=10, resend_after=0.2)
    real_send, refusals = client.send_raw, [0]

    async def busy_then_real(raw: bytes) -> Any:
        if refusals[0] < 2:
            refusals[0] += 1
            raise RpcError(-32005, "limit exceeded: the pool holds 300 transactions, 45 s of "
                           "work at 6.7 transactions/s (at most 20 s)",
                           {"retryAfter": 1, "limit": "wait"})
        return await real_send(raw)

    monkeypatch.setattr(client, "send_raw", busy_then_real)
    box.accept(TERMINAL, [event_op(530, "r-busy")])
    [receipt] = await drain(sub, box, ["r-busy"])
    assert receipt.status == "final", receipt.error
    assert refusals[0] == 2


async def test_restart_with_a_tx_persisted_but_never_sent(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    box.accept(TERMINAL, [event_op(600 + i, f"p-{i}") for i in range(5)])
    first = Submitter(box, client, store, batch_window_ms=0)
    tx = await first._build(TERMINAL, store.get(TERMINAL))  # signed and persisted, then "killed"
    assert tx is not None and box.status(TERMINAL, "p-0").status == "sent"
    second = Submitter(box, client, store, batch_window_ms=0)
    done = await drain(second, box, [f"p-{i}" for i in range(5)])
    assert {r.status for r in done} == {"final"}
    assert {r.tx_hash for r in done} == {tx.tx_hash}  # the very bytes persisted before the kill


async def test_restart_with_a_tx_sent_but_its_receipt_never_recorded(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    box.accept(TERMINAL, [event_op(700 + i, f"s-{i}") for i in range(4)])
    first = Submitter(box, client, store, batch_window_ms=0)
    keys = store.get(TERMINAL)
    tx = await first._build(TERMINAL, keys)
    assert tx is not None
    await client.send_raw(tx.raw)  # sent; then the gateway "dies" before it sees the receipt
    for _ in range(100):
        if await client.receipt(tx.tx_hash):
            break
        await asyncio.sleep(0.1)
    second = Submitter(box, client, store, batch_window_ms=0)
    done = await drain(second, box, [f"s-{i}" for i in range(4)])
    assert {r.tx_hash for r in done} == {tx.tx_hash} and {r.status for r in done} == {"final"}
    assert len(box.live_txs()) == 0


async def test_a_nonce_taken_by_another_tx_requeues_the_operations_once(
    parts: tuple[Outbox, NodeClient], store: Keystore
) -> None:
    box, client = parts
    box.accept(TERMINAL, [event_op(800 + i, f"n-{i}") for i in range(3)])
    keys = store.get(TERMINAL)
    first = Submitter(box, client, store, batch_window_ms=0)
    tx = await first._build(TERMINAL, keys)
    assert tx is not None
    # someone else with the same key takes the nonce before the persisted tx is ever sent
    chain_id = await client.chain_id()
    other = Account.sign_transaction(
        {"type": 2, "chainId": chain_id, "nonce": tx.nonce, "to": abi.address("CargoLedger"),
         "value": 0, "gas": 100_000, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0,
         "data": RECORD_SELECTOR},
        keys.signing_key,
    )
    other_hash = await client.send_raw(bytes(other.raw_transaction))
    for _ in range(100):
        if await client.receipt(other_hash):
            break
        await asyncio.sleep(0.1)
    second = Submitter(box, client, store, batch_window_ms=0)
    done = await drain(second, box, [f"n-{i}" for i in range(3)])
    assert {r.status for r in done} == {"final"}
    assert tx.tx_hash not in {r.tx_hash for r in done}  # recorded by a new transaction
    assert await client.receipt(tx.tx_hash) is None


async def test_failover_across_a_dead_url(node: NodeProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = NodeClient([dead, node.url], timeout=2.0, rounds=1)
    try:
        assert await client.block_number() >= 0
        assert client.current_url == node.url  # remembered
        with pytest.raises(RpcError):
            await client.request("no_such_method", [])
        assert client.current_url == node.url  # an error answer is not a failover
    finally:
        await client.close()
    all_dead = NodeClient([dead], timeout=1.0, rounds=2, backoff=0.05)
    try:
        with pytest.raises(NodeUnavailable):
            await all_dead.block_number()
    finally:
        await all_dead.close()


async def test_submitter_over_a_dead_url_first(
    tmp_path: Path, node: NodeProcess, store: Keystore
) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    client = NodeClient([f"http://127.0.0.1:{free_port()}", node.url], timeout=2.0)
    try:
        box.accept(TERMINAL, [event_op(900 + i, f"f-{i}") for i in range(3)])
        sub = Submitter(box, client, store, batch_window_ms=0)
        done = await drain(sub, box, [f"f-{i}" for i in range(3)])
        assert {r.status for r in done} == {"final"}
    finally:
        await client.close()
        box.close()
    assert rpc_call(node.url, "eth_chainId", [])


def _opens(envelope: bytes, subject: bytes, reader: int, private: bytes) -> bool:
    try:
        confidential.open_as_reader(envelope, subject=subject, org_id=reader,
                                    x25519_private=private)
    except confidential.DecryptionFailed:
        return False
    return True


async def test_a_readers_rotated_encryption_key_is_picked_up(
    parts: tuple[Outbox, NodeClient], store: Keystore, node: NodeProcess
) -> None:
    """Cached reader keys are read again when forgotten (the indexer's directory listener)
    and after their time to live: events sealed later open with the reader's new key only."""
    box, client = parts
    chain = rs.Chain(node.url)
    reader = rs.AUDITOR  # named by no other test of this module
    old = rs.x25519_private(reader)
    new = X25519PrivateKey.generate().private_bytes_raw()
    start = await client.block_number()
    sub = Submitter(box, client, store, batch_window_ms=0)

    async def upload(n: int) -> int:
        box.accept(TERMINAL, [event_op(n, f"rk-{n}", readers=(reader,))])
        [receipt] = await drain(sub, box, [f"rk-{n}"])
        assert receipt.status == "final" and receipt.event_id is not None
        return receipt.event_id

    try:
        before = await upload(1100)  # caches the reader's genesis key
        await asyncio.to_thread(chain.call, reader, "Consortium", "setEncryptionKey",
                                confidential.x25519_public_key(new))
        stale = await upload(1101)  # still the cached key: nothing said it changed
        sub.forget_reader_keys([reader])  # what the indexer's directory listener does
        fresh = await upload(1102)
        await asyncio.to_thread(chain.call, reader, "Consortium", "setEncryptionKey",
                                confidential.x25519_public_key(old))
        sub.reader_key_ttl = 0.0  # no listener this time: the time to live runs out
        back = await upload(1103)
    finally:
        await asyncio.to_thread(chain.call, reader, "Consortium", "setEncryptionKey",
                                confidential.x25519_public_key(old))
    by_id = {ev.event_id: ev for ev, _ in chain_cargo_events(node.url, start)}
    opens = {
        eid: (_opens(by_id[eid].payload, by_id[eid].subject, reader, old),
              _opens(by_id[eid].payload, by_id[eid].subject, reader, new))
        for eid in (before, stale, fresh, back)
    }
    assert opens == {before: (True, False), stale: (True, False), fresh: (False, True),
                     back: (True, False)}


async def test_large_events_fill_each_transaction_and_are_sealed_about_once(
    parts: tuple[Outbox, NodeClient], store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    box, client = parts
    # ~600 incompressible bytes of details: an event seals to the 768-byte payload class, so
    # about 140 fill MAX_CALLDATA (an EDIFACT container's event is of that size)
    ops = []
    for i in range(300):
        op = event_op(10_000 + i, f"large-{i}")
        assert op.event is not None
        details = {**op.event.details, "note": secrets.token_hex(300)}
        ops.append(dataclasses.replace(op, event=dataclasses.replace(op.event, details=details)))
    box.accept(TERMINAL, ops)
    sealed = Counter[int]()
    real_seal = confidential.seal

    def counting_seal(*args, **kwargs):
        sealed["calls"] += 1
        return real_seal(*args, **kwargs)

    monkeypatch.setattr(confidential, "seal", counting_seal)
    sub = Submitter(box, client, store, batch_max_events=500, batch_window_ms=20)
    done = await drain(sub, box, [op.idempotency_key for op in ops], timeout=120)
    assert [r.status for r in done] == ["final"] * 300
    per_tx = Counter(r.tx_hash for r in done)
    assert len(per_tx) == 3 and max(per_tx.values()) < 150  # full transactions, not 500
    # each transaction seals what it carries and at most a chunk more, not the whole run
    assert sealed["calls"] <= 300 + len(per_tx) * 33
