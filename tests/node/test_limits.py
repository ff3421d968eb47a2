"""Bounded everything, in one process: the engine's event queue, its proposal executions, the
per-peer p2p inboxes (over real TLS on loopback) and the transaction pool's limits.

Each limit is driven past its bound; the test asserts the refusal (its shape, its counter, its
penalty) and that the work accepted before it still completes exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_keys.datatypes import PrivateKey

from consensus import extradata, inputs, qbft
from consensus.messages import (
    Block,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    Signed,
    encode_message,
)
from consensus.state import ValidatorSchedule
from devnet.members import demo_members
from devnet.ports import free_port
from node.db import LevelDB
from node.engine import Engine, EngineLimits, EventQueue
from node.genesis import Genesis, QbftConfig, build_genesis, dev_key
from node.ledger import Ledger
from node.p2p import P2PConfig, Peer, PeerNetwork
from node.p2p_frames import Code
from node.rpc.errors import LIMIT_EXCEEDED, TX_REJECTED
from node.service import NodeService
from node.txpool import PoolLimits, TxRejected
from tests.support.chain import CARRIER, TERMINAL, cargo_tx

WAIT = 10.0
DIGEST = b"\x11" * 32
PEER_A = b"\xaa" * 20
PEER_B = b"\xbb" * 20


def prepare(height: int, round_: int, key: PrivateKey | None = None) -> Prepare:
    """A PREPARE signed by ``key`` (validator:1 by default)."""
    key = key or dev_key("validator:1")
    payload = PreparePayload(height, round_, DIGEST)
    author = key.public_key.to_canonical_address()
    return Prepare(Signed(payload, author, extradata.sign_seal(payload.signing_digest, key)))


def received(height: int, round_: int, author: str = "validator:1") -> inputs.Received:
    return qbft.received(prepare(height, round_, dev_key(author)))


async def until(cond: Any, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


# -- the engine's event queue ------------------------------------------------------------------
async def drain(queue: EventQueue) -> list[Any]:
    out = []
    while len(queue):
        out.append(await asyncio.wait_for(queue.get(), 1.0))
    return out


async def test_own_inputs_are_never_dropped_and_order_is_kept() -> None:
    queue = EventQueue(EngineLimits(max_events=4, max_events_per_peer=4, max_future_per_peer=2))
    for r in range(4):
        assert queue.put_peer(PEER_A, received(5, r), (5, 0))
    assert not queue.put_peer(PEER_B, received(5, 0, "validator:2"), (5, 0))  # full, not newer
    timers = [inputs.RoundTimeout(5, r) for r in range(100)]
    for timer in timers:
        queue.put_nowait(timer)  # a full peer queue does not refuse this node's own inputs
    assert queue.peer_events == 4 and len(queue) == 104
    got = await drain(queue)
    assert [(e.message.height, e.message.round) for e in got[:4]] == [(5, r) for r in range(4)]
    assert got[4:] == timers
    assert queue.peer_events == 0 and queue.dropped == {"full": 1}


async def test_stale_messages_go_first_and_a_full_queue_evicts_the_oldest_round() -> None:
    queue = EventQueue(EngineLimits(max_events=3, max_events_per_peer=3, max_future_per_peer=3))
    now = (7, 2)
    assert not queue.put_peer(PEER_A, received(6, 9), now)  # older height: the core ignores it
    assert not queue.put_peer(PEER_A, received(7, 1), now)  # older round
    assert queue.dropped == {"stale": 2} and queue.peer_events == 0
    for r in (4, 2, 3):
        assert queue.put_peer(PEER_A, received(7, r), now)
    # Full: a newer message takes the place of the lowest (height, round) queued ...
    assert queue.put_peer(PEER_B, received(8, 0, "validator:2"), now)
    assert queue.dropped["evicted"] == 1
    # ... and one no newer than every queued message is refused.
    assert not queue.put_peer(PEER_B, received(7, 2, "validator:2"), now)
    assert queue.dropped["full"] == 1
    got = await drain(queue)
    assert [(e.message.height, e.message.round) for e in got] == [(7, 4), (7, 3), (8, 0)]


async def test_per_peer_and_next_height_caps() -> None:
    limits = EngineLimits(max_events=100, max_events_per_peer=5, max_future_per_peer=2)
    queue = EventQueue(limits)
    now = (3, 0)
    accepted = [queue.put_peer(PEER_A, received(4, r), now) for r in range(4)]
    assert accepted == [True, True, False, False]  # next height: 2 per peer
    assert queue.dropped["future"] == 2
    accepted = [queue.put_peer(PEER_A, received(3, r), now) for r in range(5)]
    assert accepted == [True, True, True, False, False]  # 5 per peer in all
    assert queue.dropped["peer"] == 2
    # Another peer has its own allowance.
    other = "validator:2"
    assert queue.put_peer(PEER_B, received(4, 0, other), now)
    assert queue.put_peer(PEER_B, received(3, 0, other), now)
    # A replay of a queued message is not queued again.
    assert not queue.put_peer(PEER_B, received(3, 0), now)
    assert queue.dropped["duplicate"] == 1
    # Consumed messages give their allowance back.
    got = await drain(queue)
    assert len(got) == 7 and queue.peer_events == 0
    assert queue.put_peer(PEER_A, received(4, 9), now) and queue.put_peer(PEER_A, received(4, 8), now)


async def test_the_eviction_heap_stays_bounded_over_a_long_run() -> None:
    queue = EventQueue(EngineLimits(max_events=32, max_events_per_peer=64, max_future_per_peer=64))
    gets = 0
    for n in range(3_000):
        assert queue.put_peer(PEER_A, received(1, n), (1, 0))  # newer than all: always in
        if n % 3:
            await queue.get()
            gets += 1
        assert queue.peer_events <= 32
        assert len(queue._heap) <= 2 * 32 + 65 and len(queue._items) <= 2 * 32 + 65
    assert queue.high_water == 32
    assert queue.dropped == {"evicted": 3_000 - gets - queue.peer_events}


async def test_a_flood_while_the_core_is_busy_leaves_no_garbage_behind() -> None:
    queue = EventQueue(EngineLimits(max_events=32, max_events_per_peer=64, max_future_per_peer=32))
    events = [received(1, n) for n in range(300)]
    for n in range(3_000):  # nobody consumes: each newer message evicts the oldest ...
        # ... and replays of them are refused: the oldest as no newer than all queued, the
        # queued ones as duplicates.
        assert queue.put_peer(PEER_A, events[n % 300], (1, 0)) == (n < 300)
        assert len(queue._items) <= 2 * 32 + 65 and len(queue._heap) <= 2 * 32 + 65
    assert len(queue) == 32
    assert queue.dropped == {"evicted": 300 - 32, "full": 9 * 268, "duplicate": 9 * 32}
    got = await drain(queue)
    assert [e.message.round for e in got] == list(range(268, 300))


# -- the engine: consensus messages and proposals through the queue ----------------------------
def small_network_genesis(validators: int = 4) -> Genesis:
    members, addresses = demo_members(validators)
    doc = build_genesis(
        members,
        addresses,
        timestamp=int(time.time()) - 3600,
        qbft=QbftConfig(block_period_seconds=1, request_timeout_seconds=2),
    )
    return Genesis.from_json(doc)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """A validator's engine over an unstarted network (nothing is sent), its core at height 1."""
    key = dev_key("validator:0")
    db = LevelDB(str(tmp_path / "chain"))
    ledger = Ledger(db, small_network_genesis())
    service = NodeService(ledger, key, produce=False)
    network = PeerNetwork(key, ("127.0.0.1", free_port()), [], network_id=ledger.chain_id)
    limits = EngineLimits(
        max_events=64, max_events_per_peer=8, max_future_per_peer=3, max_pre_executions=2
    )
    eng = Engine(service, key, network, limits)
    head = ledger.head()
    schedule = ValidatorSchedule(((head.block_number + 1, ledger.validators_at(head)),))
    eng.state, _ = qbft.restore(eng.config, schedule, head.block_number + 1, None)
    try:
        yield eng
    finally:
        await eng.stop()
        service.stop()
        db.close()


async def test_engine_bounds_a_validator_flooding_votes(engine: Engine) -> None:
    peer = dev_key("validator:1").public_key.to_canonical_address()
    for r in range(20):  # current height, 20 rounds: 8 fit this peer's allowance
        await engine._on_message(peer, Code.CONSENSUS, encode_message(prepare(1, r)))
    for r in range(10):  # the next height: 3 fit
        await engine._on_message(peer, Code.CONSENSUS, encode_message(prepare(2, r)))
    await engine._on_message(peer, Code.CONSENSUS, encode_message(prepare(9, 0)))  # far ahead
    assert engine.events.peer_events == 8
    assert engine.events.dropped == {"peer": 22}
    # Another validator's votes still get in.
    other = dev_key("validator:2")
    await engine._on_message(other.public_key.to_canonical_address(), Code.CONSENSUS,
                             encode_message(prepare(1, 0, other)))  # fmt: skip
    assert engine.events.peer_events == 9
    rounds = [(e.message.height, e.message.round) for e in await drain(engine.events)]
    assert rounds == [(1, r) for r in range(8)] + [(1, 0)]


async def test_engine_bounds_proposal_executions_and_executes_a_block_once(engine: Engine) -> None:
    ledger = engine.ledger
    built = ledger.build([], proposer=engine.address, timestamp=int(time.time()))
    block = Block(built.block.hash, bytes(rlp.encode(built.block)))
    executions: list[int] = []
    real = ledger.execute_block

    def counted(*args: Any, **kwargs: Any) -> Any:
        executions.append(1)
        return real(*args, **kwargs)

    ledger.execute_block = counted  # type: ignore[method-assign]
    proposer = dev_key("validator:1")
    peer = proposer.public_key.to_canonical_address()
    for r in range(5):  # the same block re-proposed in five rounds, all at once
        payload = ProposalPayload(1, r, block.digest)
        signed = Signed(payload, peer, extradata.sign_seal(payload.signing_digest, proposer))
        engine._start_pre_execute(peer, Proposal(signed, block))
    assert engine.pre_executions == 2 and engine.events.dropped == {"pre-execution": 3}
    await until(lambda: engine.pre_executions == 0)
    assert executions == [1]  # the second proposal waited for the first's execution
    got = await drain(engine.events)
    assert [(e.message.round, e.block_valid) for e in got] == [(0, True), (1, True)]


# -- p2p: per-peer inboxes and the flood penalty -----------------------------------------------
Pair = tuple[PeerNetwork, PeerNetwork, list[int], list[int], asyncio.Event]


@pytest.fixture
async def flood_pair() -> AsyncIterator[Pair]:
    """``a`` sends to ``b``, whose handler waits for ``gate``: b's inbox for a fills up.
    Yields a, b, the STATUS heights whose handling started, those handled, and the gate."""
    ka, kb = PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32)
    pa = Peer(ka.public_key.to_canonical_address(), "127.0.0.1", free_port())
    pb = Peer(kb.public_key.to_canonical_address(), "127.0.0.1", free_port())
    fast = P2PConfig(backoff_initial=0.05, backoff_max=0.4, ping_interval=1.0, idle_timeout=5.0)
    started: list[int] = []
    handled: list[int] = []
    gate = asyncio.Event()

    async def handler(peer: bytes, code: Code, payload: Any) -> None:
        started.append(payload[0])
        await gate.wait()
        handled.append(payload[0])

    config = P2PConfig(
        backoff_initial=0.05, backoff_max=0.4, ping_interval=1.0, idle_timeout=5.0,
        peer_queue_frames=8, peer_queue_bytes=1024 * 1024, penalty_flood=60.0,
        handler_timeout=30.0, ban_seconds=30.0,
    )  # fmt: skip
    a = PeerNetwork(ka, ("127.0.0.1", pa.port), [pb], config=fast)
    b = PeerNetwork(kb, ("127.0.0.1", pb.port), [pa], config=config, handler=handler)
    await a.start()
    await b.start()
    try:
        assert await a.wait_for_peers(1, WAIT) and await b.wait_for_peers(1, WAIT)
        yield a, b, started, handled, gate
    finally:
        gate.set()
        await a.stop()
        await b.stop()


async def test_a_flooding_peer_is_penalised_once_per_episode_then_banned(
    flood_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, started, handled, gate = flood_pair
    caplog.set_level(logging.INFO, logger="portledger.p2p")
    to_b = b.address
    for i in range(100):
        assert a.send(to_b, Code.STATUS, (i, b"\x00" * 32))

    def accounted() -> int:
        return len(started) + b.inbox_sizes()[a.address][0] + b.inbound_dropped[a.address]

    await until(lambda: len(started) == 1 and accounted() == 100)
    dropped = b.inbound_dropped[a.address]
    assert b.inbox_sizes()[a.address][0] == 8  # full: one frame in the handler, eight waiting
    assert dropped == 100 - 9
    assert b.received[a.address] == 100 and b.floods[a.address] == 1
    assert 55 < b.score(a.address) <= 60 and not b.banned(a.address)
    flood_lines = [r for r in caplog.records if "flooding" in r.getMessage()]
    assert len(flood_lines) == 1, [r.getMessage() for r in flood_lines]
    # What was queued is handled, exactly once and in order; then the episode ends.
    gate.set()
    await until(lambda: len(handled) == 9 and not b.inbox_sizes()[a.address][0])
    assert handled == sorted(set(handled)) and handled[0] == 0 and started == handled
    await until(lambda: any("inbox drained" in r.getMessage() for r in caplog.records))
    # A second episode: the penalty reaches the threshold, the peer is banned and dropped.
    gate.clear()
    for i in range(100, 200):
        a.send(to_b, Code.STATUS, (i, b"\x00" * 32))
    await until(lambda: b.banned(a.address))
    assert b.floods[a.address] == 2
    await until(lambda: a.address not in b.peers())


async def test_the_byte_bound_drops_what_does_not_fit(flood_pair: Pair) -> None:
    a, b, started, handled, gate = flood_pair
    # Four frames of 400 KiB: the first goes to the handler, the next two wait in the inbox
    # (800 KiB), the fourth would take it past its 1 MiB and is dropped.
    for i in range(4):
        a.send(b.address, Code.TXS, [bytes([i]) * (400 * 1024)])
    await until(lambda: b.received[a.address] == 4)
    frames, nbytes = b.inbox_sizes()[a.address]
    assert len(started) == 1 and frames == 2 and 800 * 1024 < nbytes <= 1024 * 1024
    assert b.inbound_dropped[a.address] == 1 and b.floods[a.address] == 1
    gate.set()
    await until(lambda: len(handled) == 3)
    assert [first_tx[0] for first_tx in handled] == [0, 1, 2]  # in order, each once


async def test_one_frame_larger_than_the_byte_bound_still_passes(flood_pair: Pair) -> None:
    a, b, *_ = flood_pair
    got: list[Any] = []

    async def keep(peer: bytes, code: Code, payload: Any) -> None:
        got.append(payload)

    b.handler = keep
    big = [b"\x01" * (700 * 1024), b"\x02" * (700 * 1024)]  # 1.4 MB > the 1 MiB inbox bound
    assert a.send(b.address, Code.TXS, big)
    await until(lambda: len(got) == 1)
    assert got[0] == big and not b.inbound_dropped


# -- the transaction pool ------------------------------------------------------------------------
@pytest.fixture
def service(ledger: Ledger) -> Iterator[NodeService]:
    limits = PoolLimits(max_size=4, max_bytes=1_000, max_per_sender=3, max_tx_bytes=500)
    node = NodeService(ledger, dev_key("validator:0"), pool_limits=limits)
    try:
        yield node
    finally:
        node.stop()


def raw(ledger: Ledger, account: Any, nonce: int) -> bytes:
    return bytes(cargo_tx(ledger, account, nonce, events=1).encode())


def refusal(service: NodeService, data: bytes) -> TxRejected:
    with pytest.raises(TxRejected) as refused:
        service.submit_raw(data)
    return refused.value


async def test_pool_limits_refuse_with_a_retry_hint_and_accepted_work_is_final_once(
    service: NodeService, ledger: Ledger
) -> None:
    raws = [raw(ledger, TERMINAL, n) for n in range(3)]
    assert all(250 < len(r) < 333 for r in raws)  # so that 3 fit the 1,000-byte bound, 4 not
    accepted = [service.submit_raw(r) for r in raws]
    # Per sender: a fourth pending transaction of the same sender.
    sender = refusal(service, raw(ledger, TERMINAL, 3))
    assert sender.code == LIMIT_EXCEEDED and "per sender" in str(sender)
    assert sender.data == {"retryAfter": 1, "limit": "sender"}
    # Bytes: a fourth transaction of another sender would pass 1,000 bytes.
    full = refusal(service, raw(ledger, CARRIER, 0))
    assert full.code == LIMIT_EXCEEDED and full.data == {"retryAfter": 1, "limit": "bytes"}
    assert service.pool.bytes == sum(map(len, raws)) and len(service.pool) == 3
    assert service.pool.refused == {"sender": 1, "bytes": 1}
    # Blocks drain the pool; the refused transactions are accepted when retried.
    await service.produce_once()
    assert len(service.pool) == 0 and service.pool.bytes == 0
    retried = [service.submit_raw(raw(ledger, TERMINAL, 3)), service.submit_raw(raw(ledger, CARRIER, 0))]
    await service.produce_once()
    included = [
        tx.hash
        for n in range(1, ledger.head().block_number + 1)
        for tx in ledger.block_by_header(ledger.header_by_number(n)).transactions
    ]
    assert sorted(included) == sorted(accepted + retried)  # each exactly once


def test_pool_count_limit(ledger: Ledger) -> None:
    node = NodeService(ledger, None, pool_limits=PoolLimits(max_size=2))
    try:
        node.submit_raw(raw(ledger, TERMINAL, 0))
        node.submit_raw(raw(ledger, CARRIER, 0))
        full = refusal(node, raw(ledger, TERMINAL, 1))
        assert full.code == LIMIT_EXCEEDED and full.data["limit"] == "count"
        assert "2 transactions" in str(full)
        # A replacement (same sender and nonce) is not new work: a full pool still takes it.
        node.submit_raw(raw(ledger, TERMINAL, 0))
        assert len(node.pool) == 2
    finally:
        node.stop()


def test_oversized_transaction_is_final_refusal(ledger: Ledger) -> None:
    node = NodeService(ledger, None, pool_limits=PoolLimits(max_tx_bytes=200))
    try:
        refused = refusal(node, raw(ledger, TERMINAL, 0))
        assert refused.code == TX_REJECTED and refused.data is None
    finally:
        node.stop()
