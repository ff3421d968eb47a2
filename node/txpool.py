"""The transaction pool: admitted, not yet included transactions, per sender in nonce order.

Rules, in the order :meth:`TxPool.add` applies them (each refusal is a :class:`TxRejected`
with a JSON-RPC error code and a reason):

- size: at most ``max_tx_bytes`` raw bytes per transaction;
- the sender must be an account of an active member organisation (account permissioning);
- nonce: not below the sender's account nonce;
- per sender: at most ``max_per_sender`` pending, i.e. a nonce less than ``max_per_sender``
  ahead of the account nonce (a gap is *held*: the transaction waits until the missing nonces
  arrive);
- replacement: a second transaction with the same sender and nonce replaces the first only if
  it raises the fee by at least 10 % — or, on this zero-fee network, when both pay nothing
  (the sender signed both; the later one wins, as in Besu's zero-fee mode);
- bounds: ``max_size`` transactions and ``max_bytes`` raw bytes in all; a full pool refuses
  new work instead of evicting another sender's;
- time: at most ``max_wait`` seconds of work at the rate blocks have been draining the pool
  (and never fewer than ``min_wait_count`` transactions). The count and byte bounds keep memory
  in check; this one keeps latency in check: a transaction admitted behind a backlog waits for
  the whole backlog, so after an overload the pool held minutes of work (50,000 transactions)
  and new work was final only when that was gone. The rate is measured on the blocks that
  left work behind (the chain was the bottleneck); until one has, the bound is off.

The four limits (per sender, count, bytes, wait) refuse with ``LIMIT_EXCEEDED`` (-32005) and the
retry hint ``data: {"retryAfter": seconds, "limit": name}``: blocks drain the pool, so the same
transaction may be accepted later. Every other refusal is final for that transaction.
:attr:`TxPool.refused` counts the limit refusals by limit (the node's ``/metrics``).

:meth:`TxPool.ready` hands the block builder executable transactions fairly: round-robin
across senders, each sender's in strict nonce order, so one busy sender cannot starve others.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth.abc import SignedTransactionAPI

from node.rpc.errors import LIMIT_EXCEEDED, NOT_PERMITTED, TX_REJECTED


class TxRejected(Exception):
    """A transaction was refused; ``code`` is the JSON-RPC error code, ``data`` the error's
    ``data`` member (the retry hint of a limit refusal). ``malformed``: no honest node would
    pass it on (it does not decode, is for another chain, its signature or fields are invalid,
    its gas is impossible) — a peer that gossips it is penalised; the other refusals (known,
    nonce already used, a full pool, a size or sender limit of this node's configuration, a
    sender the member list no longer takes) can come from honest nodes."""

    def __init__(self, message: str, code: int = TX_REJECTED, data: Any = None, *,
                 malformed: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.malformed = malformed


def _fee(tx: SignedTransactionAPI) -> int:
    fee: Any = getattr(tx, "max_priority_fee_per_gas", None) or getattr(tx, "gas_price", 0)
    return int(fee)


@dataclass(frozen=True)
class PoolLimits:
    """The pool's bounds (``portledger node --txpool-*``)."""

    #: Transactions in all.
    max_size: int = 50_000
    #: Raw bytes of all pooled transactions.
    max_bytes: int = 64 * 1024 * 1024
    #: Pending transactions of one sender (its nonce window).
    max_per_sender: int = 5_000
    #: Raw bytes of one transaction (a larger one is refused for good, ``TX_REJECTED``).
    max_tx_bytes: int = 128 * 1024
    #: Seconds of work (at the measured drain rate) the pool holds at most.
    max_wait: float = 20.0
    #: Transactions the time bound always admits (a rate measured on small blocks is low).
    min_wait_count: int = 64


@dataclass
class _Sender:
    by_nonce: dict[int, SignedTransactionAPI] = field(default_factory=dict)


class TxPool:
    """Pending transactions, bounded, ordered per sender.

    Parameters
    ----------
    account_nonce:
        Returns a sender's nonce at the current head.
    is_member:
        Returns whether a sender may transact (account permissioning).
    retry_after:
        Seconds a client refused by a limit is told to wait (about one block period).
    """

    def __init__(
        self,
        account_nonce: Callable[[bytes], int],
        is_member: Callable[[bytes], bool],
        *,
        max_size: int = 50_000,
        max_per_sender: int = 5_000,
        max_tx_bytes: int = 128 * 1024,
        max_bytes: int = 64 * 1024 * 1024,
        max_wait: float = 20.0,
        min_wait_count: int = 64,
        retry_after: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._account_nonce = account_nonce
        self._is_member = is_member
        self.max_size = max_size
        self.max_per_sender = max_per_sender
        self.max_tx_bytes = max_tx_bytes
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.min_wait_count = min_wait_count
        self.retry_after = max(1, retry_after)
        self._clock = clock
        #: Transactions blocks take out of the pool per second (EWMA over backlogged blocks);
        #: None until a block left work behind.
        self.drain_rate: float | None = None
        self._last_prune: float | None = None
        self._senders: dict[bytes, _Sender] = {}
        self._by_hash: dict[bytes, SignedTransactionAPI] = {}
        self._raw_size: dict[bytes, int] = {}
        #: Raw bytes of the pooled transactions.
        self.bytes = 0
        #: Limit refusals by limit: ``count``, ``bytes``, ``sender``, ``wait``.
        self.refused: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_hash)

    def _limit(self, limit: str, message: str, retry_after: int | None = None) -> TxRejected:
        self.refused[limit] += 1
        wait = retry_after if retry_after is not None else self.retry_after
        return TxRejected(message, LIMIT_EXCEEDED, {"retryAfter": wait, "limit": limit})

    def wait_bound(self) -> int | None:
        """Transactions the time bound admits now; None while no drain rate is known."""
        if self.drain_rate is None:
            return None
        return max(self.min_wait_count, round(self.drain_rate * self.max_wait))

    def _forget(self, tx_hash: bytes) -> None:
        del self._by_hash[tx_hash]
        self.bytes -= self._raw_size.pop(tx_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        return self._by_hash.get(tx_hash)

    def add(self, tx: SignedTransactionAPI, raw_size: int) -> bytes:
        """Admit ``tx`` (already decoded, signature and chain id checked); return its hash."""
        if raw_size > self.max_tx_bytes:
            raise TxRejected(f"transaction is {raw_size} bytes, limit {self.max_tx_bytes}")
        tx_hash = tx.hash
        if tx_hash in self._by_hash:
            return tx_hash  # idempotent resubmission
        sender = tx.sender
        if not self._is_member(sender):
            raise TxRejected(
                f"sender 0x{sender.hex()} is not an account of a member organisation",
                NOT_PERMITTED,
            )
        account_nonce = self._account_nonce(sender)
        if tx.nonce < account_nonce:
            raise TxRejected(f"nonce too low: {tx.nonce} < account nonce {account_nonce}")
        if tx.nonce >= account_nonce + self.max_per_sender:
            raise self._limit(
                "sender",
                f"limit exceeded: nonce too far ahead: {tx.nonce}, account nonce "
                f"{account_nonce}, at most {self.max_per_sender} pending per sender",
            )
        queue = self._senders.get(sender) or _Sender()
        existing = queue.by_nonce.get(tx.nonce)
        freed = 0
        if existing is not None:
            old, new = _fee(existing), _fee(tx)
            if not (new >= old + (old + 9) // 10 and (new > old or old == 0)):
                raise TxRejected("replacement transaction underpriced")
            freed = self._raw_size[existing.hash]
        elif len(self._by_hash) >= self.max_size:
            raise self._limit(
                "count", f"limit exceeded: transaction pool is full ({self.max_size} transactions)"
            )
        elif (bound := self.wait_bound()) is not None and len(self._by_hash) >= bound:
            assert self.drain_rate is not None
            excess = len(self._by_hash) - bound + 1
            raise self._limit(
                "wait",
                f"limit exceeded: the pool holds {len(self._by_hash)} transactions, "
                f"{len(self._by_hash) / self.drain_rate:.0f} s of work at "
                f"{self.drain_rate:.1f} transactions/s (at most {self.max_wait:g} s)",
                max(self.retry_after, math.ceil(excess / self.drain_rate)),
            )
        if self.bytes - freed + raw_size > self.max_bytes:
            raise self._limit(
                "bytes", f"limit exceeded: transaction pool is full ({self.max_bytes} bytes)"
            )
        if existing is not None:
            self._forget(existing.hash)
        self._senders[sender] = queue
        queue.by_nonce[tx.nonce] = tx
        self._by_hash[tx_hash] = tx
        self._raw_size[tx_hash] = raw_size
        self.bytes += raw_size
        return tx_hash

    def ready(self, used: Mapping[bytes, int] | None = None) -> Iterator[SignedTransactionAPI]:
        """Executable transactions, round-robin across senders, each in nonce order.

        ``used``: sender -> next nonce after a block that is executed but not committed yet
        (the pipelined build of its child starts there, past that block's transactions)."""
        cursors: list[tuple[_Sender, int]] = []
        for sender, queue in self._senders.items():
            nonce = self._account_nonce(sender)
            if used is not None:
                nonce = max(nonce, used.get(sender, 0))
            cursors.append((queue, nonce))
        while cursors:
            still: list[tuple[_Sender, int]] = []
            for queue, nonce in cursors:
                tx = queue.by_nonce.get(nonce)
                if tx is None:
                    continue  # gap (or drained): this sender waits
                yield tx
                still.append((queue, nonce + 1))
            cursors = still

    def has_ready(self) -> bool:
        return any(
            self._account_nonce(sender) in queue.by_nonce for sender, queue in self._senders.items()
        )

    def prune(self) -> None:
        """Drop transactions made stale by a new head (included, or nonce now too low), and
        measure the drain rate when the block left work behind."""
        before = len(self._by_hash)
        for sender in list(self._senders):
            queue = self._senders[sender]
            account_nonce = self._account_nonce(sender)
            for nonce in [n for n in queue.by_nonce if n < account_nonce]:
                self._forget(queue.by_nonce.pop(nonce).hash)
            if not queue.by_nonce:
                del self._senders[sender]
        now = self._clock()
        taken, last = before - len(self._by_hash), self._last_prune
        self._last_prune = now
        if last is not None and now > last and taken > 0 and self.has_ready():
            rate = taken / (now - last)
            self.drain_rate = rate if self.drain_rate is None else (
                0.7 * self.drain_rate + 0.3 * rate)

    def remove(self, tx: SignedTransactionAPI) -> None:
        """Drop one transaction the builder found invalid."""
        queue = self._senders.get(tx.sender)
        if queue is not None and queue.by_nonce.get(tx.nonce) is tx:
            del queue.by_nonce[tx.nonce]
            if tx.hash in self._by_hash:
                self._forget(tx.hash)
            if not queue.by_nonce:
                del self._senders[tx.sender]

    def next_nonce(self, sender: bytes, account_nonce: int) -> int:
        """The nonce after ``sender``'s contiguous run of pooled transactions."""
        queue = self._senders.get(sender)
        nonce = account_nonce
        while queue is not None and nonce in queue.by_nonce:
            nonce += 1
        return nonce

    def pending(self) -> list[SignedTransactionAPI]:
        return list(self._by_hash.values())
