"""The node's runtime: the one place that awaits.

:class:`NodeService` owns the :class:`~node.ledger.Ledger`, the :class:`~node.txpool.TxPool` and
the block producer, and tells listeners (JSON-RPC filters and subscriptions) about each new
block. Chain-mutating work (building, importing) runs on one dedicated worker thread so the
event loop keeps answering JSON-RPC while py-evm executes; LevelDB's per-thread view
(:meth:`node.db.LevelDB.block_write`) keeps readers from seeing a half-written block.

Dev mode (a single validator, no consensus engine): a block as soon as transactions wait, but not before
the block period after the parent (``QbftConfig.period``);
with nothing waiting, an empty block only every ``empty_block_period_seconds`` (heartbeat).
The QBFT engine replaces :meth:`NodeService.run_dev_producer` with a consensus-driven one.

Memory diagnostic: with ``PORTLEDGER_MEMORY_PROFILE=<seconds>`` in its environment a node runs
:class:`MemoryProbe`, which traces allocations (``tracemalloc``, one frame) and every that many
seconds appends to ``<datadir>/memory-profile.log`` the RSS, the garbage collector's counts and
the 25 source lines whose live allocations grew most since the first snapshot. Tracing slows the
node down (roughly 1.5-2x CPU); it is for hunting growth, not for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import math
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth_keys.datatypes import PrivateKey

from node.ledger import BlockResult, Ledger
from node.rpc.errors import INVALID_PARAMS
from node.txpool import PoolLimits, TxPool, TxRejected

log = logging.getLogger("portledger.node")

#: Share of the block period spent executing transactions when building a block.
BUILD_SHARE = 0.75
#: Most transactions one block carries (the gas limit bounds it too).
MAX_BLOCK_TRANSACTIONS = 2_000
#: Environment variable: seconds between :class:`MemoryProbe` reports (unset: no probe).
MEMORY_PROFILE_ENV = "PORTLEDGER_MEMORY_PROFILE"


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from ``/proc/<pid>/status``."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS in /proc/{pid or os.getpid()}/status")


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Collector:
    """Runs the cyclic garbage collector between blocks, on a clock.

    ``portledger node`` raises the collector's thresholds (``gc.set_threshold(100_000, 50,
    1000)``, so that full passes do not stall requests); at a devnet's load a young
    collection then ran about once a minute, a middle one about once in 50 minutes and a full
    one practically never, so py-evm's reference cycles (per transaction and per block)
    piled up in the older generations: RSS grew by hundreds of MiB over a 20-minute run. The
    node now collects the two young generations every ``young_seconds`` and everything every
    ``full_seconds``, right after a block is added (the quiet moment of a block period).
    After a full collection it asks glibc to hand freed heap pages back to the system
    (``malloc_trim``): py-evm's large buffers (encoded blocks, receipts, JSON-RPC answers) are
    freed by several threads' malloc arenas, which otherwise keep them as RSS.
    Environment: ``PORTLEDGER_GC_YOUNG_SECONDS``, ``PORTLEDGER_GC_FULL_SECONDS`` (0: never).
    """

    def __init__(self, young_seconds: float = 10.0, full_seconds: float = 60.0) -> None:
        self.young_seconds = float(os.environ.get("PORTLEDGER_GC_YOUNG_SECONDS", young_seconds))
        self.full_seconds = float(os.environ.get("PORTLEDGER_GC_FULL_SECONDS", full_seconds))
        now = time.monotonic()
        self._young_at = self._full_at = now
        #: Collections run and seconds spent in them, by generation collected (1 or 2).
        self.runs = {1: 0, 2: 0}
        self.seconds = {1: 0.0, 2: 0.0}
        #: Unreachable objects found (what the thresholds alone had left behind).
        self.collected = 0
        self._malloc_trim = _malloc_trim()

    def after_block(self) -> None:
        now = time.monotonic()
        if self.full_seconds > 0 and now - self._full_at >= self.full_seconds:
            generation = 2
        elif self.young_seconds > 0 and now - self._young_at >= self.young_seconds:
            generation = 1
        else:
            return
        self.collected += gc.collect(generation)
        if generation == 2 and self._malloc_trim is not None:
            self._malloc_trim(0)
        spent = time.monotonic() - now
        self.runs[generation] += 1
        self.seconds[generation] += spent
        self._young_at = time.monotonic()
        if generation == 2:
            self._full_at = self._young_at
            log.info(
                "gc: full collection and trim %.0f ms; since start %d young (%.1f s), %d full (%.1f s), "
                "%d unreachable objects freed",
                spent * 1000, self.runs[1], self.seconds[1], self.runs[2], self.seconds[2],
                self.collected,
            )  # fmt: skip


class MemoryProbe(threading.Thread):
    """Appends what grows in this process to a file, every ``interval`` seconds.

    Each report: RSS, the traced total, ``gc.get_count()`` and the per-generation collection
    counts, tracked object counts by generation, and the ``top`` source lines
    (file:line) whose traced size grew most since the first snapshot. A daemon thread: it
    needs no event loop and dies with the process.
    """

    def __init__(self, path: Path, interval: float, top: int = 25) -> None:
        super().__init__(daemon=True, name="memory-probe")
        if interval <= 0:
            raise ValueError(f"{MEMORY_PROFILE_ENV} must be a positive number of seconds")
        self.path = path
        self.interval = interval
        self.top = top
        self._halt = threading.Event()

    def run(self) -> None:
        tracemalloc.start(1)
        first = tracemalloc.take_snapshot()
        started = time.monotonic()
        while not self._halt.wait(self.interval):
            snapshot = tracemalloc.take_snapshot()
            current, peak = tracemalloc.get_traced_memory()
            stats = snapshot.compare_to(first, "lineno")
            lines = [
                f"--- t={time.monotonic() - started:.0f}s rss={rss_bytes() / 2**20:.1f}MiB "
                f"traced={current / 2**20:.1f}MiB peak={peak / 2**20:.1f}MiB "
                f"gc.count={gc.get_count()} gc.collections="
                f"{[g['collections'] for g in gc.get_stats()]} "
                f"gc.objects={[len(gc.get_objects(g)) for g in range(3)]} "
                f"frozen={gc.get_freeze_count()}",
            ]
            lines += [f"  {stat}" for stat in stats[: self.top]]
            with self.path.open("a") as out:
                out.write("\n".join(lines) + "\n")

    def stop(self) -> None:
        self._halt.set()


def start_memory_probe(datadir: Path) -> MemoryProbe | None:
    """Start a :class:`MemoryProbe` if :data:`MEMORY_PROFILE_ENV` asks for one."""
    value = os.environ.get(MEMORY_PROFILE_ENV)
    if not value:
        return None
    try:
        interval = float(value)
    except ValueError:
        raise ValueError(f"{MEMORY_PROFILE_ENV}={value!r}: expected seconds") from None
    probe = MemoryProbe(datadir / "memory-profile.log", interval)
    probe.start()
    log.info("memory probe: every %g s to %s", interval, probe.path)
    return probe


@dataclass(frozen=True)
class NewBlock:
    """What listeners receive: a block that became part of the canonical chain."""

    result: BlockResult

    @property
    def header(self) -> BlockHeaderAPI:
        return self.result.block.header


class NodeService:
    """One node: chain, pool, producer and the listeners of new blocks."""

    def __init__(
        self,
        ledger: Ledger,
        signer: PrivateKey | None = None,
        *,
        produce: bool = True,
        evidence_account: PrivateKey | None = None,
        pool_limits: PoolLimits | None = None,
    ) -> None:
        self.ledger = ledger
        self.signer = signer
        self.produce = produce and signer is not None
        #: The account that signs equivocation reports (``portledger node --report-key-file``);
        #: None: the node key while this node is a validator, no reports from an observer
        #: (:func:`node.evidence.reporting_key`).
        self.evidence_account = evidence_account
        limits = pool_limits or PoolLimits()
        self.pool = TxPool(
            self.account_nonce,
            self.is_member_account,
            max_size=limits.max_size,
            max_bytes=limits.max_bytes,
            max_per_sender=limits.max_per_sender,
            max_tx_bytes=limits.max_tx_bytes,
            max_wait=limits.max_wait,
            min_wait_count=limits.min_wait_count,
            # A refused client is told to come back after about one block: blocks drain the pool.
            retry_after=math.ceil(ledger.genesis.qbft.period),
        )
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-worker")
        self.listeners: list[Callable[[NewBlock], None]] = []
        #: Called with each raw transaction admitted from a local client (for gossip).
        self.admitted: list[Callable[[bytes], None]] = []
        #: The QBFT runtime driving this node, if any (node.engine.Engine).
        self.engine: Any = None
        #: Set whenever a transaction is admitted (block producers wait on it).
        self.wake = asyncio.Event()
        self._head_state: tuple[bytes, Any] | None = None
        self._call_cache: tuple[bytes, Any, Any] | None = None
        self._stopping = False
        self.started_at = time.time()
        #: time.time() when the latest block was added (the dev producer's block period).
        self.head_added = 0.0
        #: The garbage collector's clock (:class:`Collector`).
        self.collector = Collector()
        db_path = getattr(ledger.db, "path", None)
        self.memory_probe = (
            start_memory_probe(Path(db_path).parent) if isinstance(db_path, str) else None
        )

    # -- head state ----------------------------------------------------------------------
    def head_state(self) -> Any:
        head = self.ledger.head()
        if self._head_state is None or self._head_state[0] != head.hash:
            self._head_state = (head.hash, self.ledger.state_at(head))
        return self._head_state[1]

    def account_nonce(self, address: bytes) -> int:
        return int(self.head_state().get_nonce(address))

    def pending_nonce(self, address: bytes) -> int:
        """Next nonce counting this sender's contiguous pool transactions."""
        return self.pool.next_nonce(address, self.account_nonce(address))

    def is_member_account(self, address: bytes) -> bool:
        """Account permissioning at the head (cached per state root by the Ledger)."""
        return self.ledger.is_member_account(address, self.ledger.head())

    def call(self, call: dict[str, Any], header: BlockHeaderAPI) -> bytes:
        """eth_call on ``header``'s post-state (raises py-evm's ``Revert`` or ``VMError``).

        One costless state per block serves every call (event loop thread only): its account
        and storage caches survive from call to call, so repeated calls at the head stop
        re-reading trie nodes from LevelDB (3 reads instead of 19 for a view call). Every read
        gives up the GIL, and under load the chain worker holds it for up to a switch
        interval: fewer reads keep eth_call latency flat while blocks build.
        """
        cached = self._call_cache
        if cached is None or cached[0] != header.hash:
            cached = self._call_cache = (header.hash, *self.ledger.call_state(header))
        return self.ledger.call(call, header, on=(cached[1], cached[2]))

    def estimate_gas(self, call: dict[str, Any], header: BlockHeaderAPI) -> int:
        return self.ledger.estimate_gas(call, header)

    def status(self) -> dict[str, Any]:
        """This node's consensus view (``portledger_status``)."""
        if self.engine is not None:
            status: dict[str, Any] = self.engine.status()
            return status
        head = self.ledger.head()
        validators = self.ledger.validators_at(head)
        address = self.signer.public_key.to_canonical_address() if self.signer else None
        return {
            "address": None if address is None else "0x" + address.hex(),
            "validator": address in validators,
            "height": head.block_number,
            "headHash": "0x" + head.hash.hex(),
            "round": 0 if self.produce else None,
            "roundChanges": 0,
            "peers": [],
            "validators": ["0x" + v.hex() for v in validators],
            "pending": len(self.pool),
            "halted": None,
        }

    # -- intake --------------------------------------------------------------------------
    def submit_raw(self, raw: bytes, *, gossip: bool = True) -> bytes:
        """Decode, check and admit a raw transaction; return its hash or raise TxRejected.

        ``gossip`` passes it on to :attr:`admitted` (the peers); transactions that came from
        peers are not passed on again (every node is connected to every other)."""
        try:
            tx = self.ledger.decode_transaction(raw)
        except Exception as exc:  # py-evm/rlp raise many types for malformed input
            raise TxRejected(f"invalid raw transaction: {exc}", INVALID_PARAMS,
                             malformed=True) from exc
        chain_id = getattr(tx, "chain_id", None)
        if chain_id is None:
            raise TxRejected("only replay-protected (EIP-155) transactions are accepted",
                             malformed=True)
        if chain_id != self.ledger.chain_id:
            raise TxRejected(f"wrong chain id {chain_id}, this chain is {self.ledger.chain_id}",
                             malformed=True)
        try:
            tx.validate()
            # Recovering the sender is the signature check: a recovered key always verifies,
            # so py-evm's check_signature_validity (recover + verify) would only repeat the
            # elliptic-curve work; tx.sender is cached on the object for the pool and builder.
            tx.sender  # noqa: B018
        except Exception as exc:
            raise TxRejected(f"invalid transaction: {exc}", malformed=True) from exc
        gas_limit = self.ledger.head().gas_limit
        if tx.gas > gas_limit:
            raise TxRejected(f"gas {tx.gas} exceeds the block gas limit {gas_limit}",
                             malformed=True)
        if tx.gas < tx.intrinsic_gas:
            raise TxRejected(f"intrinsic gas too low: {tx.gas} < {tx.intrinsic_gas}",
                             malformed=True)
        tx_hash = self.pool.add(tx, len(raw))
        self.wake.set()
        if gossip:
            for hook in self.admitted:
                hook(raw)
        return tx_hash

    # -- production ----------------------------------------------------------------------
    def _notify(self, result: BlockResult) -> None:
        event = NewBlock(result)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a faulty listener must not stop the node
                log.exception("block listener failed")

    def select_transactions(self, after: Any = None) -> list[SignedTransactionAPI]:
        """Ready pool transactions for the next block, within its gas limit and tx cap.

        ``after``: an executed, uncommitted block the next block will follow (pipelining):
        its transactions are left out and its senders' nonces continue after them."""
        used: dict[bytes, int] | None = None
        if after is not None:
            used = {}
            for tx in after.transactions:
                used[tx.sender] = max(used.get(tx.sender, 0), tx.nonce + 1)
        txs: list[SignedTransactionAPI] = []
        gas_left = self.ledger.head().gas_limit
        for tx in self.pool.ready(used):
            if len(txs) >= MAX_BLOCK_TRANSACTIONS:
                break
            if tx.gas > gas_left:
                continue
            gas_left -= tx.gas
            txs.append(tx)
        return txs

    @property
    def build_budget(self) -> float:
        """Seconds a block build may spend executing transactions: a share of
        ``blockPeriodSeconds`` even with a sub-second period, since it bounds what every
        validator then re-executes within the round timeout."""
        return BUILD_SHARE * self.ledger.genesis.qbft.block_period_seconds

    def drop_rejected(self, result: BlockResult) -> None:
        """Remove what a build found invalid from the pool."""
        for tx, reason in result.rejected:
            log.info("dropped 0x%s: %s", tx.hash.hex(), reason)
            self.pool.remove(tx)

    def block_added(self, result: BlockResult) -> None:
        """A block joined the chain (built, committed or imported): prune the pool, log it,
        tell the listeners."""
        self.head_added = time.time()
        self.pool.prune()
        log.info(
            "block #%d 0x%s txs=%d gas=%d exec=%.0fms commit=%.0fms",
            result.block.number,
            result.block.hash.hex()[:12],
            len(result.block.transactions),
            result.block.header.gas_used,
            result.execute_seconds * 1000,
            result.commit_seconds * 1000,
        )
        self._notify(result)
        self.collector.after_block()

    async def produce_once(self) -> BlockResult:
        """Build one block from the pool now (dev mode) and announce it."""
        assert self.signer is not None
        txs = self.select_transactions()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.worker,
            partial(self.ledger.propose, txs, self.signer, build_seconds=self.build_budget),
        )
        self.drop_rejected(result)
        self.block_added(result)
        return result

    async def run_dev_producer(self) -> None:
        """Dev mode: a block as soon as transactions wait; empty blocks only as a heartbeat."""
        qbft = self.ledger.genesis.qbft
        while not self._stopping:
            head = self.ledger.head()
            heartbeat_due = head.timestamp + qbft.empty_block_period_seconds
            if not self.pool.has_ready():
                self.wake.clear()
                timeout = max(0.0, heartbeat_due - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=min(timeout, 5.0))
                if not self.pool.has_ready() and time.time() < heartbeat_due:
                    continue
            earliest = max(head.timestamp + qbft.timestamp_step, self.head_added + qbft.period)
            delay = earliest - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                break
            await self.produce_once()

    async def import_block(self, block: Any) -> BlockResult:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.worker, self.ledger.import_block, block)
        self.block_added(result)
        return result

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        self.worker.shutdown(wait=True)
        if self.memory_probe is not None:
            self.memory_probe.stop()
