"""The QBFT runtime: the one place that awaits for consensus.

:class:`Engine` feeds the pure core (:mod:`consensus.qbft`) with network messages, timer
firings and built blocks, and performs its actions in order:

=================  ========================================================================
action             what the runtime does
=================  ========================================================================
``Persist``        write the signing record (``NodeKeys.last_signed``), fsynced, *before*
                   anything that follows it in the same step
``Broadcast``      send the encoded message to every connected validator
``ScheduleTimeout``arm the round timer (round 0 waits for work, see below)
``BuildBlock``     build on the head in the chain worker; answer ``BlockProposalReady``
``CommitBlock``    persist the already-executed block with its round and seals; announce it
``Halt``           stop consensus loudly; the node keeps serving reads
=================  ========================================================================

Execution happens once per node and block. A PROPOSAL is decoded and executed in the chain
worker *before* the core sees it (``Ledger.execute_block``, nothing written: header, execution,
every root); the verdict reaches the core as data, ``ProposalReceived(proposal, block_valid)``,
and ``CommitBlock`` commits that same execution (``Ledger.commit``). The proposer commits the
execution it built.

Pipelining: the validator that proposes height N + 1 in round 0 (round-robin over the list in
header N) builds that block as soon as N's proposal has executed here, on that execution's
uncommitted state (``Ledger.build(on=...)``), while the network still prepares and commits N
and the other validators execute it; the build fills the worker (and a core) that would
otherwise idle until N commits. When N commits and the core asks for block N + 1
(``BuildBlock``), the speculative block is proposed at once — only if the committed N is
exactly the block it was built on (same hash; it can only commit after it, ``Ledger.commit``)
and it carries transactions; otherwise it is discarded and the block built as before. Nothing
is signed or sent for N + 1 before N is committed here: the speculation is only an execution,
the core, its signing record and every QBFT rule are untouched (``Engine.speculation`` counts
``built`` / ``used`` / ``discarded``). Likewise a proposal for the height after next that
arrives while this node has executed, but not yet committed, its parent is executed on that
execution at once; it still waits for its turn, and its verdict is "valid" only if exactly that
parent committed (``ahead``).

Work-driven rounds: an idle chain makes no blocks except the heartbeat
(``emptyBlockPeriodSeconds``), as in dev mode. So round 0 of a height starts its timer, and
its proposer builds, only once there is work — transactions in the pool (transactions are
gossiped to every node) or the heartbeat due — and not before the block period
(``blockPeriodMilliseconds``, or ``blockPeriodSeconds`` after the parent's timestamp) has passed
since this node added the parent. Later rounds run their timers unconditionally.

Synchronisation: every node announces each block it commits or imports (``NEW_BLOCK``) and its
head every :data:`STATUS_INTERVAL` seconds (``STATUS``). A node that learns of a higher head
fetches the missing range (``GET_BLOCKS``) and imports each block with full validation, commit
seals included (``Ledger.import_block``). Non-validating nodes (observers) follow the chain
this way and ignore consensus traffic.

Bounded inputs (:class:`EngineLimits`, ``portledger node --engine-*``; docs/limits.md). The
core's inputs wait in an :class:`EventQueue`. What this node makes itself — timer firings,
built blocks, imported blocks — is never dropped (at most one timer is armed, one build asked
and one block imported at a time, so these are few). What peers send is bounded, and the
order in which it goes when the queue is full is what QBFT can afford to lose:

1. a message for an older height or round than the core's is dropped on arrival (the core
   would ignore it: its ``(height, round)`` only grows), and so is one already queued (the
   same signature: a replay);
2. a message for the next height is refused beyond ``max_future_per_peer`` queued from that
   peer (the core keeps a bounded buffer of them; STATUS and sync cover the rest);
3. beyond ``max_events_per_peer`` queued from one peer, its next message is refused (an honest
   validator sends a handful per round: only a flooder reaches it);
4. with ``max_events`` peer messages queued, the one with the lowest ``(height, round)`` makes
   way for a newer one; a message no newer than all queued is refused.

A lost message costs at most a round change, never safety. Proposals are executed before they
enter the queue: at most ``max_pre_executions`` at once (a block already being executed is
awaited, not executed again); another proposal beyond that is dropped. Each drop is counted by
reason (:attr:`EventQueue.dropped`, ``/metrics``) and logged once per burst.

Equivocation: every consensus message from a validator passes the
:class:`~node.evidence.EquivocationDetector`; evidence is kept in LevelDB and reported to the
Consortium contract by the :class:`~node.evidence.EvidenceReporter`, a task of its own woken by
new evidence and new blocks (a transaction through this node's pool, never a consensus step).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import rlp
from eth_keys.datatypes import PrivateKey

from consensus import extradata, inputs, qbft
from consensus.messages import Block, MalformedMessage, Proposal, decode_message, encode_message
from consensus.state import Config, NodeState, ValidatorSchedule, decode_record, encode_record
from consensus.validation import proposer_for
from node.chain import InvalidBlock, QbftBlock
from node.db import NodeKeys
from node.evidence import EquivocationDetector, EvidenceReporter, EvidenceStore
from node.ledger import Executed
from node.p2p import PeerNetwork
from node.p2p_frames import MAX_RANGE, MAX_TXS, Code
from node.service import NodeService
from node.txpool import TxRejected

log = logging.getLogger("portledger.engine")

#: Seconds between STATUS announcements.
STATUS_INTERVAL = 2.0
#: Seconds between flushes of gossiped transactions.
TX_FLUSH_INTERVAL = 0.02
#: A proposal's timestamp may be at most this many seconds ahead of the local clock.
MAX_FUTURE_SECONDS = 2
#: Cap on any round timeout (ms), whatever the round.
MAX_TIMEOUT_MS = 32_000
#: Executed proposals / decoded blocks kept.
CACHE_SIZE = 16
#: Proposals for later heights kept until their parent is in.
FUTURE_PROPOSALS = 16
#: Penalty points for a message that fails validation.
PENALTY_INVALID = 20.0
#: Seconds between two log lines of the pipelining counters (``Engine.speculation``).
PIPELINE_LOG_INTERVAL = 60.0
#: Seconds between two log lines about dropped inputs (the counters count every one).
DROP_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class EngineLimits:
    """Bounds of the engine's inputs (``portledger node --engine-*``)."""

    #: Peer messages (votes, proposals with their verdict) queued for the core.
    max_events: int = 4096
    #: Of those, queued from one peer.
    max_events_per_peer: int = 1024
    #: Of those, for the next height, queued from one peer.
    max_future_per_peer: int = 64
    #: Proposals being executed at once.
    max_pre_executions: int = 4


@dataclass(eq=False)
class _Entry:
    event: inputs.Event
    #: The peer it came from; None for this node's own inputs (never dropped).
    peer: bytes | None = None
    key: tuple[int, int] = (0, 0)
    future: bool = False
    signature: bytes = b""
    live: bool = True


@dataclass
class EventQueue:
    """The core's inputs in arrival order; peer messages bounded (see the module docstring)."""

    limits: EngineLimits = field(default_factory=EngineLimits)
    #: Inputs dropped, by reason: ``stale``, ``duplicate``, ``future``, ``peer``, ``full``,
    #: ``evicted``, ``pre-execution``.
    dropped: Counter[str] = field(default_factory=Counter)
    #: Most peer messages ever queued at once.
    high_water: int = 0
    _items: deque[_Entry] = field(default_factory=deque)
    #: Peer entries by (height, round, seq): the eviction order (lazily cleaned).
    _heap: list[tuple[int, int, int, _Entry]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _per_peer: Counter[bytes] = field(default_factory=Counter)
    _future_per_peer: Counter[bytes] = field(default_factory=Counter)
    _peer_count: int = 0
    #: Signatures of the queued peer messages: a replayed message is not queued twice.
    _signatures: set[bytes] = field(default_factory=set)
    #: Live entries in _items (evicted ones stay there, dead, until compacted or reached).
    _live: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _last_log: float = 0.0

    def __len__(self) -> int:
        return self._live

    @property
    def peer_events(self) -> int:
        """Peer messages queued now."""
        return self._peer_count

    def put_nowait(self, event: inputs.Event) -> None:
        """Queue one of this node's own inputs (a timer, a built or imported block): always."""
        self._items.append(_Entry(event))
        self._live += 1
        self._ready.set()

    def put_peer(self, peer: bytes, event: inputs.Received, now: tuple[int, int]) -> bool:
        """Queue a peer's message for the core at ``now`` = its ``(height, round)``; False
        (counted) when it is dropped."""
        key = (event.message.height, event.message.round)
        limits = self.limits
        if key < now:
            return self._drop("stale", peer, key)
        signature = event.message.signed.signature
        if signature in self._signatures:
            return self._drop("duplicate", peer, key)
        future = key[0] > now[0]
        if future and self._future_per_peer[peer] >= limits.max_future_per_peer:
            return self._drop("future", peer, key)
        if self._per_peer[peer] >= limits.max_events_per_peer:
            return self._drop("peer", peer, key)
        if self._peer_count >= limits.max_events:
            lowest = self._lowest()
            if lowest is None or lowest.key >= key:
                return self._drop("full", peer, key)
            self._remove(lowest)
            self.dropped["evicted"] += 1
        entry = _Entry(event, peer, key, future, signature)
        self._items.append(entry)
        self._live += 1
        self._signatures.add(signature)
        heapq.heappush(self._heap, (*key, next(self._seq), entry))
        self._per_peer[peer] += 1
        if future:
            self._future_per_peer[peer] += 1
        self._peer_count += 1
        self.high_water = max(self.high_water, self._peer_count)
        if len(self._heap) > 2 * self._peer_count + 64:  # consumed entries left in the heap
            self._heap = [h for h in self._heap if h[3].live]
            heapq.heapify(self._heap)
        if len(self._items) > 2 * self._live + 64:  # evicted entries left in the FIFO
            self._items = deque(e for e in self._items if e.live)
        self._ready.set()
        return True

    async def get(self) -> inputs.Event:
        """The next input, waiting for one."""
        while True:
            while self._items:
                entry = self._items.popleft()
                if entry.live:
                    if entry.peer is not None:
                        self._remove(entry)
                    else:
                        self._live -= 1
                    return entry.event
            self._ready.clear()
            await self._ready.wait()

    def _lowest(self) -> _Entry | None:
        while self._heap:
            entry = self._heap[0][3]
            if entry.live:
                return entry
            heapq.heappop(self._heap)
        return None

    def _remove(self, entry: _Entry) -> None:
        """Take a queued peer entry out of the counts (consumed or evicted)."""
        entry.live = False
        self._live -= 1
        self._signatures.discard(entry.signature)
        assert entry.peer is not None
        self._peer_count -= 1
        self._per_peer[entry.peer] -= 1
        if not self._per_peer[entry.peer]:
            del self._per_peer[entry.peer]
        if entry.future:
            self._future_per_peer[entry.peer] -= 1
            if not self._future_per_peer[entry.peer]:
                del self._future_per_peer[entry.peer]

    def _drop(self, reason: str, peer: bytes, key: tuple[int, int]) -> bool:
        self.dropped[reason] += 1
        if reason not in ("stale", "duplicate"):
            self.log_drop(f"{reason}: message for height {key[0]} round {key[1]}", peer)
        return False

    def log_drop(self, what: str, peer: bytes) -> None:
        """Log a dropped input, at most once per :data:`DROP_LOG_INTERVAL`."""
        now = time.monotonic()
        if now - self._last_log >= DROP_LOG_INTERVAL:
            self._last_log = now
            log.warning(
                "engine input from %s dropped (%s); %d queued; dropped so far: %s",
                peer.hex(), what, self._peer_count, dict(self.dropped),
            )


@dataclass
class _Speculation:
    """A block of ``height`` being built on the uncommitted execution of block ``parent``."""

    height: int
    parent: bytes
    task: asyncio.Task[Executed | None]


def recover(digest: bytes, signature: bytes) -> bytes | None:
    """Signer address of a 65-byte secp256k1 signature over ``digest``, None if none."""
    try:
        return extradata.recover_signer(digest, signature)
    except extradata.InvalidSeal:
        return None


class Engine:
    """A node's consensus and chain-following runtime over :class:`~node.p2p.PeerNetwork`."""

    def __init__(
        self,
        service: NodeService,
        key: PrivateKey,
        network: PeerNetwork,
        limits: EngineLimits | None = None,
    ) -> None:
        self.service = service
        self.limits = limits or EngineLimits()
        self.ledger = service.ledger
        self.key = key
        self.address: bytes = key.public_key.to_canonical_address()
        self.network = network
        network.handler = self._on_message
        network.block_range_handler = self._serve_blocks
        self.qbft = self.ledger.genesis.qbft
        self.config = Config(
            address=self.address,
            signer=partial(extradata.sign_seal, private_key=key),
            recover=recover,
            seal_digest=self._seal_digest,
            request_timeout=self.qbft.request_timeout_seconds * 1000,
            max_timeout=max(MAX_TIMEOUT_MS, self.qbft.request_timeout_seconds * 1000),
        )
        self.events = EventQueue(self.limits)
        self.state: NodeState | None = None
        self.halted: str | None = None
        #: Round changes this node entered (for status and benchmarks).
        self.round_changes = 0
        self._executed: OrderedDict[bytes, Executed] = OrderedDict()
        self._invalid: OrderedDict[bytes, str] = OrderedDict()
        self._decoded: OrderedDict[bytes, Any] = OrderedDict()
        self._future: dict[int, list[tuple[bytes, Proposal]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._parked: qbft.ScheduleTimeout | None = None
        self._tx_out: list[bytes] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_lock = asyncio.Lock()
        self._stopping = False
        #: time.time() when this node first saw a proposal (its own or a peer's) per height.
        self._proposal_seen: dict[int, float] = {}
        #: Proposals being executed now, by digest (an import of the same block waits for it).
        self._executing: dict[bytes, asyncio.Future[Executed]] = {}
        #: Build the next block ahead while the current one is decided (module docstring).
        self.pipelining = True
        self._speculation: _Speculation | None = None
        #: Speculative builds: ``built``, ``used`` (proposed), ``discarded``; proposals
        #: executed ahead on an uncommitted parent: ``ahead``.
        self.speculation: Counter[str] = Counter()
        #: _pre_execute tasks running (at most EngineLimits.max_pre_executions).
        self.pre_executions = 0
        self._sync_task: asyncio.Task[None] | None = None
        #: Conflicting signed messages seen from validators, and where evidence is kept.
        self.equivocations = EquivocationDetector()
        self.evidence_store = EvidenceStore(self.ledger.db)
        #: Sends stored evidence to Consortium.reportEquivocation (node.evidence.reporting_key).
        self.evidence_reporter = EvidenceReporter(service, key, self.evidence_store)
        service.engine = self
        service.admitted.append(self._tx_out.append)

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`; raises only on a bug (a Halt is reported, not raised)."""
        head = self.ledger.head()
        schedule = ValidatorSchedule(((head.block_number + 1, self.ledger.validators_at(head)),))
        state, actions = qbft.restore(
            self.config, schedule, head.block_number + 1, self._load_record()
        )
        self.state = state
        self._spawn(self._periodic())
        self._spawn(self.evidence_reporter.run(lambda: self._stopping))
        await self._perform(actions)
        while not self._stopping:
            event = await self.events.get()
            if self._stopping:
                break
            if self.halted is not None:
                continue
            before = self.state.round
            self.state, actions = qbft.step(self.state, event)
            if self.state.round > before and not isinstance(event, inputs.BlockImported):
                self.round_changes += 1
            await self._perform(actions)

    async def stop(self) -> None:
        self._stopping = True
        self.events.put_nowait(inputs.RoundTimeout(-1, -1))
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)

    def status(self) -> dict[str, Any]:
        head = self.ledger.head()
        state = self.state
        validators = self.ledger.validators_at(head)
        return {
            "address": "0x" + self.address.hex(),
            "validator": self.address in validators,
            "height": head.block_number,
            "headHash": "0x" + head.hash.hex(),
            "round": state.round if state is not None and self.address in validators else None,
            "roundChanges": self.round_changes,
            "peers": ["0x" + p.hex() for p in self.network.peers()],
            "validators": ["0x" + v.hex() for v in validators],
            "pending": len(self.service.pool),
            "halted": self.halted,
        }

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed", exc_info=task.exception())

    async def _in_worker(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.service.worker, partial(fn, *args, **kwargs))

    # -- signing record -----------------------------------------------------------------
    def _load_record(self) -> Any:
        try:
            data = self.ledger.db[NodeKeys.last_signed]
        except KeyError:
            return None
        try:
            return decode_record(data, recover, self._block_digest)
        except (MalformedMessage, ValueError) as exc:
            # Refusing to start is the only safe answer: without the record this validator
            # could sign something conflicting with what it signed before.
            raise RuntimeError(f"signing record in the database is unreadable: {exc}") from exc

    # -- blocks as the core sees them ---------------------------------------------------
    def _decode_block(self, payload: bytes, block: Any = None) -> Any:
        """The block a payload encodes (decoded once; ``block`` when the caller has it)."""
        cached = self._decoded.get(payload)
        if cached is None:
            if block is None:
                block = self._with_pooled_transactions(rlp.decode(payload, sedes=QbftBlock))
            cached = block
            self._decoded[payload] = cached
            while len(self._decoded) > CACHE_SIZE:
                self._decoded.popitem(last=False)
        return cached

    def _with_pooled_transactions(self, block: Any) -> Any:
        """``block`` with each transaction this node's pool holds replaced by the pool's object
        (same hash: the same signed transaction). The pool's were decoded and their senders
        recovered at admission (JSON-RPC or gossip); executing the proposal then recovers no
        sender again (py-evm caches it on the object) — ~2 % of a block's execution."""
        pool = self.service.pool
        pooled = [pool.get(tx.hash) for tx in block.transactions]
        if not any(p is not None for p in pooled):
            return block
        return block.copy(transactions=[
            p if p is not None else tx for p, tx in zip(pooled, block.transactions, strict=True)
        ])  # fmt: skip

    def _block_digest(self, payload: bytes) -> bytes:
        try:
            digest: bytes = self._decode_block(payload).header.hash
        except Exception as exc:  # rlp raises several types on hostile input
            raise MalformedMessage(f"block does not decode: {exc}") from exc
        return digest

    def _seal_digest(self, block: Block, round_: int) -> bytes:
        header = self._decode_block(block.payload).header
        extra = extradata.decode(header.extra_data)
        stamped = extradata.ExtraData(extra.vanity, extra.validators, extra.vote, round_, ())
        return extradata.commit_digest(header.copy(extra_data=stamped.encode()))

    def _remember(self, executed: Executed) -> None:
        self._executed[executed.block.hash] = executed
        while len(self._executed) > CACHE_SIZE:
            self._executed.popitem(last=False)

    # -- actions ------------------------------------------------------------------------
    async def _perform(self, actions: Sequence[qbft.Action]) -> None:
        for action in actions:
            if isinstance(action, qbft.Persist):
                # LevelDB put with sync=True: on disk before the broadcast that follows.
                self.ledger.db[NodeKeys.last_signed] = encode_record(action.record)
            elif isinstance(action, qbft.Broadcast):
                self._broadcast_consensus(encode_message(action.message))
            elif isinstance(action, qbft.ScheduleTimeout):
                self._schedule(action)
            elif isinstance(action, qbft.BuildBlock):
                self._spawn(self._build(action.height, action.round))
            elif isinstance(action, qbft.CommitBlock):
                await self._commit(action)
            elif isinstance(action, qbft.Halt):
                self.halted = action.reason
                log.critical("CONSENSUS HALTED: %s", action.reason)

    def _broadcast_consensus(self, data: bytes) -> None:
        assert self.state is not None
        height = self.state.height
        targets = set(self.state.validators.at(height)) | set(self.state.validators.at(height + 1))
        for peer in self.network.peers():
            if peer in targets:
                self.network.send(peer, Code.CONSENSUS, data)

    def _has_work(self) -> bool:
        head = self.ledger.head()
        return (
            self.service.pool.has_ready()
            or time.time() >= head.timestamp + self.qbft.empty_block_period_seconds
        )

    def _earliest_build(self) -> float:
        """Wall-clock instant from which the head's child may be built: the block period after
        the head was *proposed* (as Besu counts it from the parent's timestamp), so a network
        whose rounds take longer than the period does not wait on top of them."""
        head = self.ledger.head()
        by_timestamp = float(head.timestamp + self.qbft.timestamp_step)
        proposed = self._proposal_seen.get(head.block_number, self.service.head_added)
        return max(by_timestamp, proposed + self.qbft.period)

    def _schedule(self, action: qbft.ScheduleTimeout) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parked = None
        assert self.state is not None
        if self.address not in self.state.validators.at(action.height):
            return  # an observer follows by blocks; it has no rounds to time out
        if action.round == 0:
            self._parked = action
            self._arm_parked()
        else:
            self._arm(action, action.duration / 1000)

    def _arm(self, action: qbft.ScheduleTimeout, delay: float) -> None:
        event = inputs.RoundTimeout(action.height, action.round, action.timer)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, delay), self.events.put_nowait, event)

    def _arm_parked(self, *, work: bool = False) -> None:
        parked = self._parked
        if parked is None or not (work or self._has_work()):
            return
        self._parked = None
        start = max(time.time(), self._earliest_build())
        self._arm(parked, start - time.time() + parked.duration / 1000)

    async def _build(self, height: int, round_: int) -> None:
        if round_ == 0:
            # Wait (bounded) for work and the block period: woken by every admitted
            # transaction, re-checked at least every second for the heartbeat.
            wake = self.service.wake
            for _ in range(int(self.qbft.empty_block_period_seconds) + 10):
                if self._stopping or self.ledger.head().block_number + 1 != height:
                    return
                if self._has_work():
                    delay = self._earliest_build() - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    break
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
        if self.ledger.head().block_number + 1 != height or self._stopping:
            return
        self._proposal_seen.setdefault(height, time.time())
        executed = await self._speculated(height) if round_ == 0 else None
        if executed is None:
            txs = self.service.select_transactions()
            deadline = time.monotonic() + self.service.build_budget
            try:
                executed = await self._in_worker(
                    self.ledger.build,
                    txs,
                    proposer=self.address,
                    timestamp=int(time.time()),
                    round_=round_,
                    deadline=deadline,
                )
            except InvalidBlock as exc:
                log.warning("could not build block #%d: %s", height, exc)
                return
        self.service.drop_rejected(executed.result)
        if executed.block.number != height:
            return
        self._remember(executed)
        block = Block(executed.block.hash, bytes(rlp.encode(executed.block)))
        self._decode_block(block.payload, executed.block)
        self.events.put_nowait(inputs.BlockProposalReady(height, round_, block))

    # -- pipelining: the next block built while this one is decided --------------------
    def _speculate(self, parent: Executed) -> None:
        """Start building the child of ``parent`` (an executed proposal for the head's child)
        if this node proposes it in round 0 and transactions wait for it."""
        header = parent.block.header
        height = header.block_number + 1
        if not self.pipelining or self._stopping or self.halted is not None:
            return
        if header.parent_hash != self.ledger.head().hash:
            return
        spec = self._speculation
        if spec is not None and spec.height == height and spec.parent == header.hash:
            return  # already building on this block (re-proposed in a later round)
        validators = self.ledger.validators_at(header)  # the set that decides height N + 1
        if self.address not in validators or proposer_for(validators, height, 0) != self.address:
            return
        txs = self.service.select_transactions(after=parent.block)
        if not txs:
            return  # nothing to gain: an empty block builds in no time
        self._discard_speculation()
        self.speculation["built"] += 1
        self._speculation = _Speculation(
            height, header.hash, self._spawn(self._build_ahead(height, txs, parent))
        )

    async def _build_ahead(
        self, height: int, txs: list[Any], parent: Executed
    ) -> Executed | None:
        budget = self.service.build_budget

        def build() -> Executed:
            # The deadline counts from when the worker starts, like an ordinary build's. The
            # parent may have committed meanwhile (its commit queued in the worker first): then
            # this is an ordinary build on it.
            on = None if self.ledger.head().hash == parent.block.hash else parent
            return self.ledger.build(
                txs, proposer=self.address, timestamp=int(time.time()), round_=0,
                deadline=time.monotonic() + budget, on=on,
            )  # fmt: skip

        try:
            executed: Executed = await self._in_worker(build)
        except InvalidBlock as exc:  # its parent stopped being the head's child meanwhile
            log.info("speculative build of block #%d dropped: %s", height, exc)
            return None
        except Exception:  # a failed speculation must never cost a round: build as before
            log.exception("speculative build of block #%d failed", height)
            return None
        return executed

    async def _speculated(self, height: int) -> Executed | None:
        """The speculative block for ``height`` if it extends the committed head exactly and
        carries transactions; else None (discarded)."""
        spec, self._speculation = self._speculation, None
        if spec is None:
            return None
        if spec.height != height:
            self.speculation["discarded"] += 1
            return None
        executed = await spec.task
        head = self.ledger.head()
        if (
            executed is None
            or head.block_number + 1 != height
            or executed.block.header.parent_hash != head.hash
            or not executed.block.transactions
        ):
            self.speculation["discarded"] += 1
            return None
        self.speculation["used"] += 1
        return executed

    def _discard_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation = None
            self.speculation["discarded"] += 1

    async def _commit(self, action: qbft.CommitBlock) -> None:
        executed = self._executed.get(action.block.digest)
        try:
            if executed is None:  # a re-proposed block this node never executed
                executed = await self._in_worker(
                    self.ledger.execute_block,
                    self._decode_block(action.block.payload),
                    sealed=False,
                )
            result = await self._in_worker(
                self.ledger.commit, executed, seals=action.seals, round_=action.round
            )
        except InvalidBlock as exc:
            head = self.ledger.head()
            if head.block_number == action.height and head.hash == action.block.digest:
                return  # imported meanwhile by sync; BlockImported already queued
            self.halted = f"committed block #{action.height} does not persist: {exc}"
            log.critical("CONSENSUS HALTED: %s", self.halted)
            return
        self._block_added(result)

    def _block_added(self, result: Any) -> None:
        """A block joined the chain (committed here or imported): tell everyone."""
        block = result.block
        self.service.block_added(result)
        self.network.broadcast(Code.NEW_BLOCK, bytes(rlp.encode(block)))
        if self.evidence_reporter.open:
            self.evidence_reporter.wake.set()
        self._executed = OrderedDict(
            (d, e) for d, e in self._executed.items() if e.block.number > block.number
        )
        self._proposal_seen = {h: t for h, t in self._proposal_seen.items() if h >= block.number}
        spec = self._speculation
        if spec is not None and (
            block.number >= spec.height
            or (block.number + 1 == spec.height and block.hash != spec.parent)
        ):
            self._discard_speculation()  # built on a block that did not commit
        assert self.state is not None
        current = self.state.validators.at(block.number + 1)
        following = self.ledger.validators_at(block.header)
        self.events.put_nowait(
            inputs.BlockImported(
                block.number, block.hash, following if following != current else None
            )
        )
        for number in [h for h in self._future if h <= block.number + 1]:
            for peer, proposal in self._future.pop(number):
                if number == block.number + 1:
                    self._start_pre_execute(peer, proposal)

    # -- inbound ------------------------------------------------------------------------
    async def _on_message(self, peer: bytes, code: Code, payload: Any) -> None:
        if code == Code.CONSENSUS:
            self._on_consensus(peer, payload)
        elif code == Code.TXS:
            for raw in payload:
                try:
                    self.service.submit_raw(raw, gossip=False)
                except TxRejected as exc:
                    if exc.malformed:  # the rest of the frame is that peer's too: dropped
                        self.network.penalise(peer, PENALTY_INVALID,
                                              f"gossiped transaction: {exc}")
                        break
            self._arm_parked()
        elif code == Code.NEW_BLOCK:
            await self._on_new_block(peer, payload)
        elif code == Code.STATUS:
            height, _head_hash = payload
            if height > self.ledger.head().block_number:
                self._start_sync(peer, height)

    def _on_consensus(self, peer: bytes, data: bytes) -> None:
        state = self.state
        if state is None or self.halted is not None:
            return
        # A justification never needs more than every validator's signed vote; allow for a
        # set growing by governance (twice the current one). The codec's own cap (1,024) let a
        # peer make the node recover a thousand signatures per frame before anything judged it.
        allowed = 2 * len(state.validators.at(state.height)) + 2
        try:
            message = decode_message(data, recover, self._block_digest, signature_size=65,
                                     max_justification=allowed)
        except MalformedMessage as exc:
            self.network.penalise(peer, PENALTY_INVALID, f"malformed consensus message: {exc}")
            return
        author = message.signed.author
        if author not in state.validators.at(message.height) and message.height <= state.height:
            self.network.penalise(peer, PENALTY_INVALID, "consensus message from a non-validator")
            return
        if author in state.validators.at(message.height):
            self._check_equivocation(message)
        if self.address not in state.validators.at(message.height):
            return  # observers follow by blocks, not by votes
        if message.height > state.height + 1:
            return  # far ahead: STATUS and sync will bring this node there
        self._arm_parked(work=message.height == state.height)
        if isinstance(message, Proposal):
            self._proposal_seen.setdefault(message.height, time.time())
            head = self.ledger.head().block_number
            if message.height > head + 1:
                queued = self._future.setdefault(message.height, [])
                if len(queued) < FUTURE_PROPOSALS:
                    queued.append((peer, message))
                    if message.height == head + 2:
                        self._execute_ahead(message)
                return
            if message.height == head + 1:
                self._start_pre_execute(peer, message)
            return
        self.events.put_peer(peer, qbft.received(message), self._now())

    def _now(self) -> tuple[int, int]:
        """The core's ``(height, round)``: older peer input is stale."""
        assert self.state is not None
        return (self.state.height, self.state.round)

    def _start_pre_execute(self, peer: bytes, proposal: Proposal) -> None:
        """Execute a proposal in a task of its own, within ``max_pre_executions``."""
        if (proposal.height, proposal.round) < self._now():
            self.events.dropped["stale"] += 1
            return
        if self.pre_executions >= self.limits.max_pre_executions:
            self.events.dropped["pre-execution"] += 1
            self.events.log_drop(
                f"{self.pre_executions} proposals are being executed; proposal for height "
                f"{proposal.height} round {proposal.round}",
                peer,
            )
            return
        self.pre_executions += 1
        self._spawn(self._pre_execute(peer, proposal))

    def _start_sync(self, peer: bytes, target: int) -> None:
        """Sync towards ``target`` unless a sync is running or starting (one at a time)."""
        if self._sync_lock.locked() or (self._sync_task is not None and not self._sync_task.done()):
            return
        self._sync_task = self._spawn(self._sync(peer, target))

    def _check_equivocation(self, message: Any) -> None:
        """Keep evidence of a validator signing two conflicting messages and have it reported
        on chain (node.evidence)."""
        evidence = self.equivocations.observe(message)
        if evidence is None:
            return
        number = self.evidence_store.add(evidence)
        log.warning(
            "equivocation %d: validator 0x%s signed two conflicting 0x%02x messages at "
            "height %d round %d (evidence kept; portledger_getEquivocations)",
            number, evidence.validator.hex(), evidence.code, evidence.height, evidence.round,
        )
        self.evidence_reporter.add(number)

    async def _pre_execute(self, peer: bytes, proposal: Proposal) -> None:
        """Execute a proposal's block (once), then hand the core the proposal with the verdict."""
        try:
            await self._verdict(peer, proposal)
        finally:
            self.pre_executions -= 1

    async def _verdict(self, peer: bytes, proposal: Proposal) -> None:
        digest = proposal.block.digest
        running = self._executing.get(digest)
        if running is not None:  # the same block is being executed (another round's proposal)
            with contextlib.suppress(Exception):
                await running
        elif digest not in self._executed and digest not in self._invalid:
            block = self._decode_block(proposal.block.payload)
            reason = self._proposed_header_problem(block.header)
            if reason is None:
                running = asyncio.ensure_future(
                    self._in_worker(self.ledger.execute_block, block, sealed=False)
                )
                self._executing[digest] = running
                try:
                    self._remember(await running)
                except InvalidBlock as exc:
                    reason = str(exc)
                finally:
                    self._executing.pop(digest, None)
            if reason is not None:
                self._invalid[digest] = reason
                while len(self._invalid) > CACHE_SIZE:
                    self._invalid.popitem(last=False)
                log.warning("invalid proposal #%d from %s: %s", block.number, peer.hex(), reason)
                self.network.penalise(peer, PENALTY_INVALID, f"invalid proposal: {reason}")
        valid = self._executed_child(digest, proposal.height) is not None
        executed = self._executed.get(digest)
        if self.state is not None:
            self.events.put_peer(
                peer, inputs.ProposalReceived(proposal, block_valid=valid), self._now()
            )
        if valid and executed is not None:
            self._speculate(executed)

    def _executed_child(self, digest: bytes, height: int) -> Executed | None:
        """The execution of block ``digest`` if it is the head's child at ``height`` — the only
        verdict "valid" there is. A block executed ahead on an uncommitted parent
        (:meth:`_execute_ahead`) qualifies only once exactly that parent is the head."""
        executed = self._executed.get(digest)
        if executed is None or executed.block.number != height:
            return None
        if executed.block.header.parent_hash != self.ledger.head().hash:
            return None
        return executed

    def _execute_ahead(self, proposal: Proposal) -> None:
        """Execute a proposal for the height after next on this node's execution of its parent
        (the proposal of the current height, not committed here yet), so that its verdict is
        ready when the parent commits. Nothing reaches the core now: the proposal waits in
        :attr:`_future` like any other, and its verdict (:meth:`_verdict`) reuses this
        execution only if the committed block is that parent (:meth:`_executed_child`)."""
        digest = proposal.block.digest
        if digest in self._executed or digest in self._executing or digest in self._invalid:
            return
        if self.pre_executions >= self.limits.max_pre_executions or not self.pipelining:
            return
        try:
            block = self._decode_block(proposal.block.payload)
        except Exception:  # rlp raises several types on hostile input; judged at its turn
            return
        parent = self._executed.get(block.header.parent_hash)
        if parent is None or parent.block.header.parent_hash != self.ledger.head().hash:
            return
        if self._proposed_header_problem(block.header) is not None:
            return
        self.pre_executions += 1
        self.speculation["ahead"] += 1
        running = asyncio.ensure_future(
            self._in_worker(self.ledger.execute_block, block, sealed=False, on=parent)
        )
        self._executing[digest] = running
        self._spawn(self._finish_ahead(digest, running))

    async def _finish_ahead(self, digest: bytes, running: asyncio.Future[Executed]) -> None:
        try:
            self._remember(await running)
        except InvalidBlock:
            pass  # executed (and its sender penalised) again at its turn, on the head
        finally:
            self._executing.pop(digest, None)
            self.pre_executions -= 1

    @staticmethod
    def _proposed_header_problem(header: Any) -> str | None:
        """Why a proposed block's header is refused before execution; None if it is not."""
        try:
            sealed = bool(extradata.decode(header.extra_data).seals)
        except extradata.InvalidExtraData as exc:  # a foreign header hashes in full
            return f"extraData: {exc}"
        if header.timestamp > time.time() + MAX_FUTURE_SECONDS:
            return f"timestamp {header.timestamp} is in the future"
        if sealed:
            return "a proposed block carries commit seals"
        return None

    async def _on_new_block(self, peer: bytes, raw: bytes) -> None:
        try:
            # Most announcements are of blocks this node already has (every validator announces
            # what it commits): read the number first, decode the whole block only if needed.
            number = int.from_bytes(rlp.decode_lazy(raw)[0][8], "big")
            if number <= self.ledger.head().block_number:
                return
            block = rlp.decode(raw, sedes=QbftBlock)
        except Exception as exc:  # rlp raises several types on hostile input
            self.network.penalise(peer, PENALTY_INVALID, f"NEW_BLOCK does not decode: {exc}")
            return
        head = self.ledger.head().block_number
        if block.number == head + 1:
            async with self._sync_lock:
                await self._import(peer, block)
        elif block.number > head + 1:
            self._start_sync(peer, block.number)

    async def _import(self, peer: bytes, block: Any) -> bool:
        """Import one sealed block (full validation); False if it does not extend the head."""
        if block.number != self.ledger.head().block_number + 1:
            return bool(block.number <= self.ledger.head().block_number)
        digest = block.header.hash
        running = self._executing.get(digest)
        if running is not None:  # this node is executing that block's proposal: reuse it
            with contextlib.suppress(Exception):
                await running
        try:
            executed = self._executed.get(digest)
            if executed is not None:
                extra = extradata.decode(block.header.extra_data)
                result = await self._in_worker(
                    self.ledger.commit, executed, seals=extra.seals, round_=extra.round
                )
            else:
                result = await self._in_worker(self.ledger.import_block, block)
        except (InvalidBlock, extradata.InvalidExtraData) as exc:
            if block.number <= self.ledger.head().block_number:
                return True  # committed here meanwhile
            self.network.penalise(peer, PENALTY_INVALID, f"invalid block: {exc}")
            log.warning("refused block #%d from %s: %s", block.number, peer.hex(), exc)
            return False
        self._block_added(result)
        return True

    async def _sync(self, peer: bytes, target: int) -> None:
        """Fetch and import blocks from ``peer`` until the head reaches ``target``."""
        async with self._sync_lock:
            for _ in range(target // MAX_RANGE + 4):
                start = self.ledger.head().block_number + 1
                if start > target or self._stopping:
                    return
                count = min(MAX_RANGE, target - start + 1)
                try:
                    raws = await self.network.request_blocks(peer, start, count)
                except (ConnectionError, TimeoutError) as exc:
                    log.info("sync from %s stopped: %r", peer.hex(), exc)
                    return
                if not raws:
                    return
                for raw in raws:
                    try:
                        block = rlp.decode(raw, sedes=QbftBlock)
                    except Exception as exc:  # hostile input
                        self.network.penalise(peer, PENALTY_INVALID, f"BLOCKS item: {exc}")
                        return
                    if not await self._import(peer, block):
                        return

    async def _serve_blocks(self, peer: bytes, start: int, count: int) -> list[bytes]:
        head = self.ledger.head().block_number
        out: list[bytes] = []
        size = 0
        for number in range(max(start, 1), min(start + count, head + 1)):
            header = self.ledger.header_by_number(number)
            raw = bytes(rlp.encode(self.ledger.block_by_header(header)))
            size += len(raw)
            if out and size > self.network.config.max_frame_size:
                break  # the requester asks again from where this answer ends
            out.append(raw)
        return out

    # -- periodic: tx gossip, status, heartbeat ------------------------------------------
    async def _periodic(self) -> None:
        last_status = last_report = 0.0
        reported: dict[str, int] = {}
        while not self._stopping:
            await asyncio.sleep(TX_FLUSH_INTERVAL)
            if self._tx_out:
                batch, self._tx_out[:] = list(self._tx_out), []
                for i in range(0, len(batch), MAX_TXS):
                    self.network.broadcast(Code.TXS, batch[i : i + MAX_TXS])
            self._arm_parked()
            now = time.monotonic()
            if now - last_status >= STATUS_INTERVAL:
                last_status = now
                head = self.ledger.head()
                self.network.broadcast(Code.STATUS, (head.block_number, head.hash))
            if now - last_report >= PIPELINE_LOG_INTERVAL and dict(self.speculation) != reported:
                last_report, reported = now, dict(self.speculation)
                log.info("pipelining since start: %s", ", ".join(
                    f"{k} {v}" for k, v in sorted(reported.items())
                ))  # fmt: skip
