"""Transaction pool: nonce order, held gaps, replacement, bounds, fairness, permissioning."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import pytest

from node.rpc.errors import LIMIT_EXCEEDED, NOT_PERMITTED
from node.txpool import TxPool, TxRejected

_serial = count()


@dataclass(eq=False)
class FakeTx:
    sender: bytes
    nonce: int
    gas_price: int = 0
    gas: int = 21_000
    hash: bytes = field(default_factory=lambda: next(_serial).to_bytes(32, "big"))


A, B, C, OUTSIDER = b"A" * 20, b"B" * 20, b"C" * 20, b"X" * 20


def make_pool(nonces: dict[bytes, int] | None = None, **kw: int) -> TxPool:
    state = nonces if nonces is not None else {}
    return TxPool(lambda s: state.get(s, 0), lambda s: s != OUTSIDER, **kw)


def test_nonce_order_and_gaps_held() -> None:
    pool = make_pool()
    t2, t0, t3 = FakeTx(A, 2), FakeTx(A, 0), FakeTx(A, 3)
    for tx in (t2, t0, t3):
        pool.add(tx, 100)  # type: ignore[arg-type]
    assert list(pool.ready()) == [t0]  # nonce 1 missing: 2 and 3 wait
    t1 = FakeTx(A, 1)
    pool.add(t1, 100)  # type: ignore[arg-type]
    assert list(pool.ready()) == [t0, t1, t2, t3]
    assert pool.next_nonce(A, 0) == 4


def test_round_robin_fairness_across_senders() -> None:
    pool = make_pool()
    a = [FakeTx(A, n) for n in range(5)]
    b = [FakeTx(B, n) for n in range(2)]
    c = [FakeTx(C, 0)]
    for tx in a + b + c:
        pool.add(tx, 100)  # type: ignore[arg-type]
    order = list(pool.ready())
    assert order[:3] == [a[0], b[0], c[0]]
    assert order[3:5] == [a[1], b[1]]
    assert order[5:] == a[2:]


def test_replacement_rules() -> None:
    pool = make_pool()
    free = FakeTx(A, 0)
    pool.add(free, 100)  # type: ignore[arg-type]
    again = FakeTx(A, 0)  # zero-fee network: the sender's later transaction wins
    pool.add(again, 100)  # type: ignore[arg-type]
    assert list(pool.ready()) == [again] and free.hash not in pool
    priced = FakeTx(B, 0, gas_price=100)
    pool.add(priced, 100)  # type: ignore[arg-type]
    with pytest.raises(TxRejected, match="underpriced"):
        pool.add(FakeTx(B, 0, gas_price=105), 100)  # type: ignore[arg-type]
    better = FakeTx(B, 0, gas_price=110)
    pool.add(better, 100)  # type: ignore[arg-type]
    assert better.hash in pool and priced.hash not in pool


def test_bounds() -> None:
    pool = make_pool(max_size=3, max_per_sender=2, max_tx_bytes=1000)
    with pytest.raises(TxRejected, match="bytes"):
        pool.add(FakeTx(A, 0), 1001)  # type: ignore[arg-type]
    pool.add(FakeTx(A, 0), 10)  # type: ignore[arg-type]
    pool.add(FakeTx(A, 1), 10)  # type: ignore[arg-type]
    with pytest.raises(TxRejected, match="too far ahead"):
        pool.add(FakeTx(A, 2), 10)  # type: ignore[arg-type]
    pool.add(FakeTx(B, 0), 10)  # type: ignore[arg-type]
    with pytest.raises(TxRejected, match="full"):
        pool.add(FakeTx(C, 0), 10)  # type: ignore[arg-type]
    assert len(pool) == 3


def test_low_nonce_and_non_member_refused() -> None:
    pool = make_pool({A: 5})
    with pytest.raises(TxRejected, match="nonce too low"):
        pool.add(FakeTx(A, 4), 10)  # type: ignore[arg-type]
    with pytest.raises(TxRejected) as refused:
        pool.add(FakeTx(OUTSIDER, 0), 10)  # type: ignore[arg-type]
    assert refused.value.code == NOT_PERMITTED


def test_prune_drops_included_and_resubmission_is_idempotent() -> None:
    nonces = {A: 0}
    pool = make_pool(nonces)
    txs = [FakeTx(A, n) for n in range(3)]
    for tx in txs:
        pool.add(tx, 10)  # type: ignore[arg-type]
    assert pool.add(txs[0], 10) == txs[0].hash  # type: ignore[arg-type]
    assert len(pool) == 3
    nonces[A] = 2  # a block included nonces 0 and 1
    pool.prune()
    assert list(pool.ready()) == [txs[2]] and len(pool) == 1


def test_the_pool_holds_at_most_max_wait_seconds_of_work() -> None:
    """After blocks that left work behind measured the drain rate, the pool admits no more than
    ``max_wait`` seconds of it (never fewer than ``min_wait_count``) and tells a refused
    client when the backlog will have drained; before any such block, the bound is off."""
    nonces: dict[bytes, int] = {}
    now = [0.0]
    pool = make_pool(nonces, max_per_sender=10_000, min_wait_count=10)
    pool.max_wait = 5.0
    pool._clock = lambda: now[0]
    senders = [bytes([i]) * 20 for i in range(1, 4)]
    for n in range(100):  # no drain rate yet: only the count and byte bounds apply
        pool.add(FakeTx(senders[n % 3], n // 3), 10)  # type: ignore[arg-type]
    assert pool.wait_bound() is None and len(pool) == 100
    pool.prune()  # the first prune only starts the clock
    for _ in range(3):  # blocks take 2 transactions of each sender a second: 6/s
        now[0] += 1.0
        for s in senders:
            nonces[s] = nonces.get(s, 0) + 2
        pool.prune()
    assert pool.drain_rate == pytest.approx(6.0)
    assert pool.wait_bound() == 30 and len(pool) == 82
    with pytest.raises(TxRejected) as refused:
        pool.add(FakeTx(senders[0], 40), 10)  # type: ignore[arg-type]
    assert refused.value.code == LIMIT_EXCEEDED
    assert refused.value.data == {"retryAfter": 9, "limit": "wait"}  # (82 - 30 + 1) / 6
    assert "at most 5 s" in str(refused.value) and pool.refused["wait"] == 1
    # An empty block (nothing left behind, or nothing taken) does not move the rate.
    now[0] += 10.0
    pool.prune()
    assert pool.drain_rate == pytest.approx(6.0)
