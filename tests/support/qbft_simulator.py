"""Deterministic fault simulator for the pure QBFT core (FoundationDB / TigerBeetle style, small).

One seed fixes everything: a ``random.Random(seed)`` draws the fault scenario and every
network decision; a virtual clock (integer milliseconds) advances by popping a heap of
``(deliver_at, seq, event)``; N pure cores (:func:`consensus.qbft.step`) are driven by a tiny
emulated runtime that performs their actions. No threads, no asyncio, no wall clock: the same
seed gives the same trace, byte for byte (:attr:`SimResult.trace_hash`).

Faults (drawn per seed by :meth:`Scenario.draw`, all before GST — the global stabilisation
time — after which every message between live nodes arrives within ``delta``):

- message drop, delay (0..max_delay), duplication, and therefore reordering;
- symmetric partitions (two groups) and asymmetric ones (one direction of some links cut),
  each healing at a given time before GST;
- crash and restart, with the persisted signing record (safe) or without it (amnesia: the node
  may equivocate, so it counts as faulty in the Byzantine accounting);
- clock skew: each node's timers run at its own rate (×0.5 .. ×2);
- up to f Byzantine validators, each with some of: equivocating proposer, double
  prepare/commit (different digests to different peers), invalid blocks, replays of old
  messages, future-round floods, silence.

Checkers (:meth:`Simulation.check`): agreement (one digest per height across the chains of
all non-Byzantine nodes), validity (a finalized block is valid and was built by the proposer
of the round it names), seals (a quorum of valid commit seals from that height's validators),
and liveness (every non-Byzantine node reaches ``heights`` within ``liveness_bound`` virtual
ms after GST). Violations with more than f faulty nodes (Byzantine + amnesic) are recorded
but excused: QBFT promises nothing then.

The emulated runtime also does block sync: a node that commits announces its chain; a node
that hears from a peer behind it sends that peer its sealed blocks; the receiver verifies the
seals before feeding ``BlockImported`` to its core.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus import extradata, inputs, qbft, validation
from consensus.messages import (
    Block,
    Commit,
    CommitPayload,
    Message,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    RoundChange,
    RoundChangePayload,
    Signed,
)
from consensus.state import Config, NodeState, SigningRecord, ValidatorSchedule

BYZANTINE_BEHAVIOURS = ("equivocate", "double_vote", "invalid_block", "replay", "flood", "silent")

# ------------------------------------------------------------------------------ crypto


class FastCrypto:
    """A keyed-hash signature scheme: unforgeable inside the simulation, ~1 µs per operation.

    A signature is ``address ‖ blake2b(key=secret, digest)[:20]``; recovery looks the secret
    up by address and recomputes. Only a node holding the secret can sign for its address.
    """

    def __init__(self, count: int) -> None:
        self.secrets = [hashlib.sha256(b"sim-key-%d" % i).digest() for i in range(count)]
        self.addresses = [hashlib.sha256(s).digest()[:20] for s in self.secrets]
        self._by_address = dict(zip(self.addresses, self.secrets, strict=True))
        self._cache: dict[tuple[bytes, bytes], bytes | None] = {}

    def signer(self, index: int) -> Callable[[bytes], bytes]:
        secret, address = self.secrets[index], self.addresses[index]

        def sign(digest: bytes) -> bytes:
            return address + hashlib.blake2b(digest, key=secret, digest_size=20).digest()

        return sign

    def recover(self, digest: bytes, signature: bytes) -> bytes | None:
        key = (digest, signature)
        cached = self._cache.get(key, b"")
        if cached != b"":
            return cached
        address = signature[:20]
        secret = self._by_address.get(address)
        result: bytes | None = None
        if secret is not None and len(signature) == 40:
            expected = hashlib.blake2b(digest, key=secret, digest_size=20).digest()
            if expected == signature[20:]:
                result = address
        self._cache[key] = result
        return result


class RealCrypto:
    """secp256k1 through :mod:`consensus.extradata` (coincurve); slow, for a few seeds."""

    def __init__(self, count: int) -> None:
        from eth_keys import keys

        self.keys = [keys.PrivateKey(hashlib.sha256(b"sim-key-%d" % i).digest()) for i in range(count)]
        self.addresses = [k.public_key.to_canonical_address() for k in self.keys]
        self._cache: dict[tuple[bytes, bytes], bytes | None] = {}

    def signer(self, index: int) -> Callable[[bytes], bytes]:
        key = self.keys[index]
        return lambda digest: extradata.sign_seal(digest, key)

    def recover(self, digest: bytes, signature: bytes) -> bytes | None:
        cache_key = (digest, signature)
        if cache_key not in self._cache:
            try:
                self._cache[cache_key] = extradata.recover_signer(digest, signature)
            except extradata.InvalidSeal:
                self._cache[cache_key] = None
        return self._cache[cache_key]


# ------------------------------------------------------------------------------ blocks


def make_block(height: int, builder: bytes, build_round: int, nonce: int, valid: bool = True) -> Block:
    """A simulated block: its payload names height, builder, build round and validity."""
    payload = b"%d|%s|%d|%d|%d" % (height, builder.hex().encode(), build_round, int(valid), nonce)
    return Block(hashlib.sha256(payload).digest(), payload)


def seal_digest(block: Block, round_: int) -> bytes:
    """What a commit seal signs in the simulation: H(digest ‖ round) (extradata.commit_digest)."""
    return hashlib.sha256(block.digest + round_.to_bytes(4, "big")).digest()


def block_is_valid(schedule: ValidatorSchedule, height: int, block: Block) -> bool:
    """Stands in for header checks and execution: well formed, valid, built by a proposer."""
    try:
        h, builder, build_round, valid, _ = block.payload.split(b"|")
        if hashlib.sha256(block.payload).digest() != block.digest or int(h) != height:
            return False
        validators = schedule.at(height)
        return valid == b"1" and bytes.fromhex(builder.decode()) == validation.proposer_for(
            validators, height, int(build_round)
        )
    except ValueError:
        return False


# ---------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Partition:
    """Links cut from ``start`` to ``end``: the (src, dst) pairs in ``cut`` lose messages."""

    #: When the partition begins (virtual ms).
    start: int
    #: When it heals (≤ GST).
    end: int
    #: Directed links cut; symmetric partitions cut both directions.
    cut: frozenset[tuple[int, int]]
    #: True if some links are cut in one direction only.
    asymmetric: bool


@dataclass(frozen=True)
class Crash:
    """Node ``node`` stops at ``at`` and restarts at ``restart``."""

    #: Node index.
    node: int
    #: Crash time.
    at: int
    #: Restart time (≤ GST).
    restart: int
    #: Restart from the persisted signing record (False: amnesia, counts as faulty).
    keep_record: bool


@dataclass(frozen=True)
class Scenario:
    """Every fault of one run."""

    #: Number of validators.
    n: int
    #: Heights every honest node must reach.
    heights: int
    #: Global stabilisation time: afterwards no drops, partitions or crashes; delay ≤ delta.
    gst: int = 0
    #: Drop probability before GST.
    drop: float = 0.0
    #: Duplication probability (any time).
    duplicate: float = 0.0
    #: Extra drop probability before GST for COMMITs and block announcements: an adversarial
    #: scheduler that lets a block finalize at some validators but not at others.
    commit_loss: float = 0.0
    #: Maximum delay before GST (ms).
    max_delay: int = 20
    #: Maximum delay after GST (ms).
    delta: int = 20
    #: Partitions (all heal before GST).
    partitions: tuple[Partition, ...] = ()
    #: Crash-restarts (all restart before GST).
    crashes: tuple[Crash, ...] = ()
    #: Per-node timer rate (1.0 = true time).
    skew: tuple[float, ...] = ()
    #: Byzantine node index → its behaviours.
    byzantine: tuple[tuple[int, frozenset[str]], ...] = ()
    #: Add a non-validator that sends COMMITs with its own seals for every proposal it sees.
    outsider: bool = False

    @property
    def faulty(self) -> int:
        """Byzantine nodes plus nodes restarted without their signing record."""
        amnesic = {c.node for c in self.crashes if not c.keep_record}
        return len(self.byzantine) + len(amnesic - {b for b, _ in self.byzantine})

    @staticmethod
    def draw(rng: random.Random, n: int, heights: int) -> Scenario:
        """A random mix of faults with at most f faulty nodes."""
        f = (n - 1) // 3
        gst = rng.choice((0, 2_000, 8_000, 20_000))
        byz_count = rng.randint(0, f)
        nodes = list(range(n))
        rng.shuffle(nodes)
        byzantine = tuple(
            (node, frozenset(rng.sample(BYZANTINE_BEHAVIOURS, rng.randint(1, 3))))
            for node in sorted(nodes[:byz_count])
        )
        honest = nodes[byz_count:]
        amnesia_budget = f - byz_count
        crashes: list[Crash] = []
        if gst > 0:
            for _ in range(rng.choice((0, 0, 1, 2))):
                node = rng.choice(honest)
                if any(c.node == node for c in crashes):
                    continue
                at = rng.randrange(0, gst)
                keep = rng.random() < 0.6 or amnesia_budget == 0
                if not keep:
                    amnesia_budget -= 1
                crashes.append(Crash(node, at, rng.randint(at + 1, gst), keep))
        partitions: list[Partition] = []
        if gst > 0:
            for _ in range(rng.choice((0, 0, 1, 2))):
                start = rng.randrange(0, gst)
                end = rng.randint(start + 1, gst)
                side = set(rng.sample(range(n), rng.randint(1, n - 1)))
                asymmetric = rng.random() < 0.4
                cut = {(a, b) for a in side for b in range(n) if b not in side}
                if asymmetric:
                    cut = {link for link in cut if rng.random() < 0.7}
                else:
                    cut |= {(b, a) for a, b in cut}
                partitions.append(Partition(start, end, frozenset(cut), asymmetric))
        skew = tuple(rng.choice((1.0, 1.0, 1.0, 0.5, 0.8, 1.3, 2.0)) for _ in range(n))
        return Scenario(
            n=n,
            heights=heights,
            gst=gst,
            drop=rng.choice((0.0, 0.0, 0.05, 0.2, 0.4)) if gst else 0.0,
            duplicate=rng.choice((0.0, 0.0, 0.05, 0.2)),
            commit_loss=rng.choice((0.0, 0.0, 0.0, 0.5, 0.9)) if gst else 0.0,
            max_delay=rng.choice((20, 200, 1_500)),
            delta=rng.choice((10, 50, 200)),
            partitions=tuple(partitions),
            crashes=tuple(crashes),
            skew=skew,
            byzantine=byzantine,
        )


# --------------------------------------------------------------------------- simulation


@dataclass
class Finalized:
    """A block in a node's chain, with how it got there."""

    #: The block.
    block: Block
    #: Round it was committed in.
    round: int
    #: Its commit seals.
    seals: tuple[bytes, ...]
    #: True if this node's own core committed it, False if it came by sync.
    own: bool


@dataclass
class SimResult:
    """Outcome of one seed."""

    #: The seed.
    seed: int
    #: The scenario it drew.
    scenario: Scenario
    #: Every checker violation, as text.
    violations: list[str]
    #: SHA-256 over the ordered trace of processed events.
    trace_hash: str
    #: Virtual time at the end.
    end_time: int
    #: Events processed.
    events: int
    #: Heights reached per node.
    heights: list[int]
    #: Whether violations count (faulty ≤ f) — with more faulty nodes QBFT promises nothing.
    faulty_within_bound: bool = True

    @property
    def failed(self) -> bool:
        return bool(self.violations) and self.faulty_within_bound

    def describe(self) -> str:
        return f"SIM_SEED={self.seed} N={self.scenario.n} failed: " + "; ".join(self.violations[:3])


_DELIVER, _TIMER, _BUILD, _IMPORT, _SYNC, _CRASH, _RESTART, _BYZ = range(8)

#: Round-0 timeout and cap used by simulated validators (ms).
REQUEST_TIMEOUT = 1_000
MAX_TIMEOUT = 8_000


@dataclass
class Simulation:
    """One seeded run: N cores, a heap of timed events, a virtual clock."""

    seed: int
    scenario: Scenario
    crypto_kind: str = "fast"
    liveness_bound: int = 0
    core_step: Callable[[NodeState, inputs.Event], qbft.Step] = qbft.step
    rng: random.Random = field(init=False)
    trace: Any = field(init=False)

    def __post_init__(self) -> None:
        sc = self.scenario
        self.rng = random.Random(self.seed * 7919 + 1)
        self.trace = hashlib.sha256()
        total = sc.n + (1 if sc.outsider else 0)
        self.crypto: FastCrypto | RealCrypto = (
            FastCrypto(total) if self.crypto_kind == "fast" else RealCrypto(total)
        )
        self.addresses = self.crypto.addresses
        self.index = {a: i for i, a in enumerate(self.addresses)}
        self.schedule = ValidatorSchedule.fixed(tuple(self.addresses[: sc.n]))
        self.validators = self.schedule.at(1)
        self.byzantine = dict(sc.byzantine)
        self.skew = sc.skew or tuple(1.0 for _ in range(sc.n))
        self.configs = [
            Config(
                address=self.addresses[i],
                signer=self.crypto.signer(i),
                recover=self.crypto.recover,
                seal_digest=seal_digest,
                request_timeout=REQUEST_TIMEOUT,
                max_timeout=MAX_TIMEOUT,
            )
            for i in range(total)
        ]
        self.nodes: list[NodeState | None] = [None] * sc.n
        self.incarnation = [0] * sc.n
        self.persisted: list[SigningRecord | None] = [None] * sc.n
        self.chains: list[dict[int, Finalized]] = [{} for _ in range(sc.n)]
        self.halts: list[str] = []
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.now = 0
        self.events = 0
        self.sent_log: list[tuple[int, Message]] = []  # for Byzantine replays
        self.nonce = 0
        self.last_announce: dict[tuple[int, int], int] = {}
        if not self.liveness_bound:
            f = (sc.n - 1) // 3
            # Per height: up to f faulty proposers' rounds, one good round and a round to
            # resynchronise, each at most the capped timeout; plus 10 s for sync.
            # Observed worst over the default seeds: ~16 s (N=4 and N=7, 3 heights).
            self.liveness_bound = sc.heights * (f + 2) * MAX_TIMEOUT + 10_000

    # ---------------------------------------------------------------- event plumbing

    def _push(self, at: int, kind: int, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, data))

    def _received(self, message: Message) -> inputs.Event:
        """The emulated runtime validates a proposed block before its core sees the proposal."""
        if isinstance(message, Proposal):
            valid = block_is_valid(self.schedule, message.height, message.block)
            return inputs.ProposalReceived(message, block_valid=valid)
        return qbft.received(message)

    def _send(self, src: int, dst: int, message: Any) -> None:
        sc = self.scenario
        now = self.now
        if now < sc.gst:
            for p in sc.partitions:
                if p.start <= now < p.end and (src, dst) in p.cut:
                    return
            if sc.drop and self.rng.random() < sc.drop:
                return
            if (
                sc.commit_loss
                and isinstance(message, Commit | tuple)
                and self.rng.random() < sc.commit_loss
            ):
                return
            delay = self.rng.randint(0, sc.max_delay)
        else:
            delay = self.rng.randint(0, sc.delta)
        self._push(now + delay, _DELIVER, (dst, message))
        if sc.duplicate and self.rng.random() < sc.duplicate:
            self._push(now + self.rng.randint(0, max(sc.delta, 1) * 3), _DELIVER, (dst, message))

    def _broadcast(self, src: int, message: Message) -> None:
        behaviours = self.byzantine.get(src)
        if behaviours is not None:
            self._byzantine_broadcast(src, message, behaviours)
            return
        self.sent_log.append((src, message))
        for dst in range(self.scenario.n + (1 if self.scenario.outsider else 0)):
            if dst != src:
                self._send(src, dst, message)

    # ---------------------------------------------------------------- node runtime

    def _apply(self, node: int, event: inputs.Event) -> None:
        state = self.nodes[node]
        if state is None:
            return
        state, actions = self.core_step(state, event)
        self.nodes[node] = state
        self._perform(node, actions)

    def _perform(self, node: int, actions: list[qbft.Action]) -> None:
        inc = self.incarnation[node]
        for action in actions:
            if isinstance(action, qbft.Broadcast):
                self._broadcast(node, action.message)
            elif isinstance(action, qbft.Persist):
                self.persisted[node] = action.record
            elif isinstance(action, qbft.ScheduleTimeout):
                at = self.now + int(action.duration * self.skew[node])
                self._push(at, _TIMER, (node, inc, action.height, action.round, action.timer))
            elif isinstance(action, qbft.BuildBlock):
                self._push(self.now + 5, _BUILD, (node, inc, action.height, action.round))
            elif isinstance(action, qbft.CommitBlock):
                self.trace.update(b"C%d:%d:%s" % (node, action.height, action.block.digest[:4].hex().encode()))
                self.chains[node][action.height] = Finalized(
                    action.block, action.round, action.seals, True
                )
                self._push(self.now, _IMPORT, (node, inc, action.height, action.block.digest))
                for dst in range(self.scenario.n):
                    if dst != node:
                        self._send(node, dst, ("announce", node, action.height))
            elif isinstance(action, qbft.Halt):
                self.halts.append(f"node {node} halted: {action.reason}")

    def _start(self, node: int, record: SigningRecord | None) -> None:
        height = len(self.chains[node]) + 1
        state, actions = qbft.restore(self.configs[node], self.schedule, height, record)
        self.nodes[node] = state
        self._perform(node, actions)
        self._status(node)

    def _sealed_ok(self, height: int, fin: Finalized) -> bool:
        digest = seal_digest(fin.block, fin.round)
        signers = {self.crypto.recover(digest, s) for s in fin.seals}
        signers.discard(None)
        return len(signers) == len(fin.seals) and signers <= set(
            self.schedule.at(height)
        ) and len(signers) >= extradata.quorum(len(self.schedule.at(height)))

    def _sync(self, dst: int, src: int, up_to: int) -> None:
        """Import src's sealed blocks into dst (verifying seals), as range sync would."""
        state = self.nodes[dst]
        if state is None:
            return
        chain = self.chains[dst]
        for height in range(len(chain) + 1, up_to + 1):
            if height in chain:
                return  # the core committed it itself while importing the previous one
            fin = self.chains[src].get(height)
            if fin is None or not self._sealed_ok(height, fin):
                return
            chain[height] = Finalized(fin.block, fin.round, fin.seals, False)
            self.trace.update(b"S%d:%d" % (dst, height))
            self._apply(dst, inputs.BlockImported(height, fin.block.digest))

    def _status(self, node: int) -> None:
        """Tell every peer our chain height (Besu peers exchange chain heads; sync follows)."""
        height = len(self.chains[node])
        for dst in range(self.scenario.n):
            if dst != node:
                self._send(node, dst, ("status", node, height))

    def _maybe_help(self, node: int, sender: int, height: int) -> None:
        """A message from a peer behind us: offer it our chain (rate-limited)."""
        mine = len(self.chains[node])
        if height > mine or sender >= self.scenario.n:
            return
        last = self.last_announce.get((node, sender), -10_000)
        if self.now - last < 500:
            return
        self.last_announce[(node, sender)] = self.now
        self._send(node, sender, ("announce", node, mine))

    # ---------------------------------------------------------------- byzantine

    def _byzantine_broadcast(self, src: int, message: Message, behaviours: frozenset[str]) -> None:
        if "silent" in behaviours:
            return
        n = self.scenario.n
        peers = [d for d in range(n) if d != src]
        signer = self.configs[src].signer
        address = self.addresses[src]
        alternative: Message | None = None
        if isinstance(message, Proposal) and (
            "equivocate" in behaviours or "invalid_block" in behaviours
        ):
            p = message.signed.payload
            self.nonce += 1
            valid = "invalid_block" not in behaviours or self.rng.random() < 0.3
            block = make_block(p.height, address, p.round, 10_000 + self.nonce, valid)
            payload = ProposalPayload(p.height, p.round, block.digest)
            alternative = Proposal(
                Signed(payload, address, signer(payload.signing_digest)),
                block,
                message.round_changes,
                message.prepares,
            )
            if "equivocate" not in behaviours:
                message = alternative
                alternative = None
        elif isinstance(message, Prepare) and "double_vote" in behaviours:
            p = message.signed.payload
            payload_p = PreparePayload(p.height, p.round, hashlib.sha256(p.digest).digest())
            alternative = Prepare(Signed(payload_p, address, signer(payload_p.signing_digest)))
        elif isinstance(message, Commit) and "double_vote" in behaviours:
            p = message.signed.payload
            other = hashlib.sha256(p.digest).digest()
            seal = signer(hashlib.sha256(other + p.round.to_bytes(4, "big")).digest())
            payload_c = CommitPayload(p.height, p.round, other, seal)
            alternative = Commit(Signed(payload_c, address, signer(payload_c.signing_digest)))
        self.sent_log.append((src, message))
        for dst in peers:
            out = alternative if alternative is not None and self.rng.random() < 0.5 else message
            self._send(src, dst, out)

    def _byzantine_tick(self, src: int) -> None:
        behaviours = self.byzantine[src]
        n = self.scenario.n
        state = self.nodes[src]
        if state is not None and "flood" in behaviours:
            signer = self.configs[src].signer
            address = self.addresses[src]
            for _ in range(3):
                r = state.round + self.rng.randint(1, 50)
                rc = RoundChangePayload(state.height, r, None, None)
                msg: Message = RoundChange(Signed(rc, address, signer(rc.signing_digest)))
                if self.rng.random() < 0.5:
                    digest = hashlib.sha256(b"%d" % self.rng.random()).digest()
                    pp = PreparePayload(state.height, state.round + self.rng.randint(0, 3), digest)
                    msg = Prepare(Signed(pp, address, signer(pp.signing_digest)))
                self._send(src, self.rng.randrange(n), msg)
        if "replay" in behaviours and self.sent_log:
            for _ in range(3):
                _, old = self.sent_log[self.rng.randrange(len(self.sent_log))]
                self._send(src, self.rng.randrange(n), old)
        self._push(self.now + self.rng.randint(100, 1_500), _BYZ, src)

    def _outsider_receive(self, message: Any) -> None:
        if not isinstance(message, Proposal):
            return
        me = self.scenario.n
        p = message.signed.payload
        signer = self.configs[me].signer
        seal = signer(seal_digest(message.block, p.round))
        payload = CommitPayload(p.height, p.round, p.digest, seal)
        commit = Commit(Signed(payload, self.addresses[me], signer(payload.signing_digest)))
        for dst in range(self.scenario.n):
            self._send(me, dst, commit)

    # ---------------------------------------------------------------- main loop

    def run(self) -> SimResult:
        sc = self.scenario
        for node in range(sc.n):
            self._start(node, None)
        for crash in sc.crashes:
            self._push(crash.at, _CRASH, crash.node)
            self._push(crash.restart, _RESTART, crash)
        for node in self.byzantine:
            self._push(self.rng.randint(0, 500), _BYZ, node)
        deadline = sc.gst + self.liveness_bound
        honest = [i for i in range(sc.n) if i not in self.byzantine]
        heap = self.heap
        trace = self.trace
        received = self._received
        while heap:
            at, _, kind, data = heapq.heappop(heap)
            if at > deadline:
                break
            self.now = at
            self.events += 1
            if kind == _DELIVER:
                dst, message = data
                if dst >= sc.n:
                    self._outsider_receive(message)
                    continue
                if self.nodes[dst] is None:
                    continue
                if isinstance(message, tuple):  # ("announce" | "status", src, height)
                    what, src, height = message
                    trace.update(b"A%d:%d:%d:%d" % (at, dst, src, height))
                    if what == "status":
                        self._maybe_help(dst, src, height + 1)
                    elif height > len(self.chains[dst]):
                        self._sync(dst, src, height)
                    continue
                signed = message.signed
                trace.update(
                    b"D%d:%d:%d:%d:%d:%s"
                    % (at, dst, message.kind, message.height, message.round, signed.author[:2].hex().encode())
                )
                self._apply(dst, received(message))
                sender = self.index.get(signed.author)
                if sender is not None and message.height <= len(self.chains[dst]):
                    self._maybe_help(dst, sender, message.height)
            elif kind == _TIMER:
                node, inc, height, round_, timer = data
                if self.incarnation[node] != inc:
                    continue
                trace.update(b"T%d:%d:%d:%d" % (at, node, height, round_))
                self._apply(node, inputs.RoundTimeout(height, round_, timer))
                self._status(node)
            elif kind == _BUILD:
                node, inc, height, round_ = data
                if self.incarnation[node] != inc:
                    continue
                self.nonce += 1
                block = make_block(height, self.addresses[node], round_, self.nonce)
                self._apply(node, inputs.BlockProposalReady(height, round_, block))
            elif kind == _IMPORT:
                node, inc, height, digest = data
                if self.incarnation[node] != inc:
                    continue
                self._apply(node, inputs.BlockImported(height, digest))
            elif kind == _CRASH:
                node = data
                trace.update(b"X%d:%d" % (at, node))
                self.nodes[node] = None
                self.incarnation[node] += 1
            elif kind == _RESTART:
                crash = data
                trace.update(b"R%d:%d" % (at, crash.node))
                self._start(crash.node, self.persisted[crash.node] if crash.keep_record else None)
            elif kind == _BYZ:
                self._byzantine_tick(data)
            if at >= sc.gst and all(len(self.chains[i]) >= sc.heights for i in honest):
                break
        return SimResult(
            seed=self.seed,
            scenario=sc,
            violations=self.check(),
            trace_hash=self.trace.hexdigest(),
            end_time=self.now,
            events=self.events,
            heights=[len(c) for c in self.chains],
            faulty_within_bound=sc.faulty <= (sc.n - 1) // 3,
        )

    # ---------------------------------------------------------------- checkers

    def check(self) -> list[str]:
        sc = self.scenario
        violations: list[str] = []
        honest = [i for i in range(sc.n) if i not in self.byzantine]
        decided: dict[int, tuple[bytes, int]] = {}
        for node in honest:
            for height, fin in sorted(self.chains[node].items()):
                first = decided.setdefault(height, (fin.block.digest, node))
                if first[0] != fin.block.digest:
                    violations.append(
                        f"agreement at height {height}: node {first[1]} has "
                        f"{first[0][:4].hex()}, node {node} has {fin.block.digest[:4].hex()}"
                    )
                if fin.own and not block_is_valid(self.schedule, height, fin.block):
                    violations.append(f"validity at height {height}: node {node} finalized {fin.block.payload!r}")
                if fin.own and not self._sealed_ok(height, fin):
                    violations.append(f"seals at height {height}: node {node} sealed with non-quorum/non-validator seals")
        violations.extend(self.halts)
        for node in honest:
            if len(self.chains[node]) < sc.heights:
                violations.append(
                    f"liveness: node {node} at height {len(self.chains[node])} < {sc.heights} "
                    f"{self.liveness_bound} ms after GST {sc.gst}"
                )
        return violations


def run_seed(
    seed: int,
    n: int,
    heights: int = 3,
    *,
    scenario: Scenario | None = None,
    crypto: str = "fast",
) -> SimResult:
    """Draw the scenario for ``seed`` (unless given) and run it."""
    if scenario is None:
        scenario = Scenario.draw(random.Random(seed), n, heights)
    return Simulation(seed, scenario, crypto).run()
