"""Paced cargo load on a running devnet, with finality measured as first sight of a block.

:class:`CargoLoad` sends ``CargoLedger.record()`` transactions from the demo members' accounts,
paced against the validators; a :class:`BlockWatcher` notes when each block is first seen, and
:class:`LoadReport` says what was offered, accepted, finalized and lost.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import os
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_canonical_address

from contracts import SYSTEM_ADDRESSES, roles_mask
from contracts.cargo import (
    CARGO_EVENT_TOPIC,
    EVENT_TYPES,
    FAMILIES,
    CargoEventInput,
    encode_record_call,
    subject_key,
)
from devnet.errors import DevnetError, DevnetTimeout
from devnet.jsonrpc import RpcClient, RpcError, rpc_call, wait_for
from devnet.layout import NodeSpec
from devnet.processes import Devnet
from gateway.events.identifiers import container_check_digit
from node.genesis import Genesis, dev_key

#: JSON-RPC timeout of a load submitter (a frozen validator costs this per attempt).
SUBMIT_TIMEOUT = 5.0
#: Seconds after the end of a load run during which a late submitter may still send.
SUBMIT_GRACE = 5.0
#: Receipts per JSON-RPC batch when a run is accounted for. A cargo receipt carries ~100 logs
#: (~1.7 KB each formatted), so 200 made ~30 MB answers whose peak the watched validator's
#: allocator kept (the soak's validator-0 +90 MiB); 20 keep an answer near 3 MB.
RECEIPTS_PER_BATCH = 20

T = TypeVar("T")


@dataclass(frozen=True)
class Publisher:
    """A member account that publishes cargo events in the load."""

    key: PrivateKey
    address: str
    organisation: str
    event_type: int
    """An event type the organisation's roles may publish."""


def cargo_publishers(genesis: Genesis) -> list[Publisher]:
    """The demo organisations' development accounts (``org:<i>``) that may record cargo events.

    Only accounts the genesis lists as a member's are taken, so permissioning admits them; each
    publishes the first event type its organisation's roles allow.
    """
    publishers = []
    for index, member in enumerate(genesis.portledger.get("members", [])):
        key = dev_key(f"org:{index}")
        if key.public_key.to_canonical_address() not in {
            to_canonical_address(a) for a in member.get("accounts", [])
        }:
            continue
        mask = roles_mask(member.get("roles", []))
        kinds = [
            f"{name}.{codes[0]}"
            for _, (name, codes, roles) in sorted(FAMILIES.items())
            if roles & mask
        ]
        if kinds:
            address = key.public_key.to_checksum_address()
            publishers.append(Publisher(key, address, member["name"], EVENT_TYPES[kinds[0]]))
    return publishers


def cargo_events(
    count: int, first: int, event_type: int, payload_bytes: int = 96
) -> list[CargoEventInput]:
    """``count`` events about distinct containers, with random (ciphertext-like) payloads."""
    now = int(time.time())
    return [
        CargoEventInput(
            subject=subject_key(f"DVNU{(first + j) % 10_000_000:07d}"),
            event_type=event_type,
            classifier=3,
            event_time=now,
            location="HKHKG",
            payload_hash=os.urandom(32),
            payload=os.urandom(payload_bytes),
        )
        for j in range(count)
    ]


def record_transaction(
    key: PrivateKey, *, chain_id: int, nonce: int, gas: int, events: list[CargoEventInput]
) -> tuple[bytes, str]:
    """A signed, zero-fee EIP-1559 ``CargoLedger.record()`` transaction: (raw, 0x-hash)."""
    tx = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=0,
        max_fee_per_gas=0,
        gas=gas,
        to=to_canonical_address(SYSTEM_ADDRESSES["CargoLedger"]),
        value=0,
        data=encode_record_call(events),
        access_list=[],
    ).as_signed_transaction(key)
    return tx.encode(), "0x" + tx.hash.hex()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class LoadReport:
    """What one paced load run offered, what the network accepted, finalized and lost."""

    offered_tx_per_s: float
    duration_s: float
    events_per_tx: int
    submitted: int = 0
    """Transactions sent (each once, to one validator)."""
    accepted: int = 0
    """Answered with a transaction hash."""
    refused: int = 0
    """Answered with a JSON-RPC error (reasons in :attr:`refusals`)."""
    unreachable: int = 0
    """The validator did not answer (down, frozen, timed out); sent or not."""
    unsent: int = 0
    """Not sent: the submitter was still behind schedule when the run ended."""
    included: int = 0
    """Accepted and found in a block."""
    included_once: int = 0
    """Accepted and found in exactly one block."""
    duplicated: int = 0
    """Accepted and found in more than one block."""
    lost: int = 0
    """Accepted and in no block by the end of the settle time."""
    reverted: int = 0
    """Included with receipt status 0."""
    receipt_mismatches: int = 0
    """Receipt missing or naming another block than the one the scan found the transaction in."""
    hash_mismatches: int = 0
    """The validator answered another transaction hash than the one signed."""
    submit_tx_per_s: float = 0.0
    """Rate actually achieved by the submitters."""
    window_s: float = 0.0
    """The steady-state window: from the end of the warm-up to the end of submission."""
    window_events: int = 0
    """Events of this run in blocks first seen within the window."""
    blocks: int = 0
    """Blocks finalized during the run (all of them, with or without this run's transactions)."""
    latencies: list[float] = field(default_factory=list, repr=False)
    """Per included transaction: first sight of its block minus submission, seconds."""
    refusals: Counter[str] = field(default_factory=Counter)
    accepted_hashes: list[str] = field(default_factory=list, repr=False)
    """The accepted transactions' hashes, in the order they were accepted."""
    started: float = 0.0
    """Monotonic time the first transaction was due (the run's ``t0``)."""
    finalized: list[tuple[float, int]] = field(default_factory=list, repr=False)
    """Per included transaction: (first sight of its block, monotonic; its events), for
    :func:`recovery`."""

    @property
    def offered_events_per_s(self) -> float:
        return self.offered_tx_per_s * self.events_per_tx

    @property
    def finalized_events_per_s(self) -> float:
        """Finalized throughput in the steady-state window."""
        return self.window_events / self.window_s if self.window_s > 0 else 0.0

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float | None:
        return percentile(self.latencies, 0.99)

    def describe(self) -> str:
        def ms(value: float | None) -> str:
            return "?" if value is None else f"{value * 1000:.0f} ms"

        lines = [
            f"offered {self.offered_tx_per_s:.2f} tx/s x {self.events_per_tx} events = "
            f"{self.offered_events_per_s:.0f} events/s for {self.duration_s:.0f} s "
            f"(submitted at {self.submit_tx_per_s:.2f} tx/s)",
            f"finalized {self.finalized_events_per_s:.0f} events/s; finality p50 {ms(self.p50)}, "
            f"p99 {ms(self.p99)}; {self.blocks} blocks",
            f"submitted {self.submitted}, accepted {self.accepted}, refused {self.refused}, "
            f"unreachable {self.unreachable}, unsent {self.unsent}; included once {self.included_once}, "
            f"duplicated {self.duplicated}, lost {self.lost}, reverted {self.reverted}, "
            f"receipt/hash mismatches {self.receipt_mismatches}/{self.hash_mismatches}",
        ]
        if self.refusals:
            lines.append(
                "refusals: " + "; ".join(f"{n} x {r}" for r, n in self.refusals.most_common(3))
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered_tx_per_s": self.offered_tx_per_s,
            "offered_events_per_s": self.offered_events_per_s,
            "duration_s": self.duration_s,
            "events_per_tx": self.events_per_tx,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "refused": self.refused,
            "unreachable": self.unreachable,
            "unsent": self.unsent,
            "included": self.included,
            "included_once": self.included_once,
            "duplicated": self.duplicated,
            "lost": self.lost,
            "reverted": self.reverted,
            "receipt_mismatches": self.receipt_mismatches,
            "hash_mismatches": self.hash_mismatches,
            "submit_tx_per_s": self.submit_tx_per_s,
            "finalized_events_per_s": self.finalized_events_per_s,
            "window_s": self.window_s,
            "window_events": self.window_events,
            "blocks": self.blocks,
            "latency_p50_s": self.p50,
            "latency_p99_s": self.p99,
            "refusals": dict(self.refusals),
        }


class BlockWatcher(threading.Thread):
    """Polls one node for new blocks; remembers when each block was first seen.

    Block timestamps are whole seconds, so finality is measured on this side: the monotonic
    time at which ``eth_blockNumber`` first reported a height at or above the block's.
    """

    def __init__(self, node: NodeSpec, start_height: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"block-watcher-{node.name}")
        self.node = node
        self.interval = interval
        self.height = start_height
        self.start_height = start_height
        #: Block number -> (first seen, block hash, transaction hashes).
        self.blocks: dict[int, tuple[float, str, list[str]]] = {}
        #: Transaction hash -> first seen of the first block that carried it.
        self.first_seen: dict[str, float] = {}
        self.errors = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        client = RpcClient(self.node.host, self.node.rpc_port, timeout=5.0)
        try:
            while not self._halt.wait(self.interval):
                try:
                    head = int(client.call("eth_blockNumber"), 16)
                    seen = time.monotonic()
                    if head <= self.height:
                        continue
                    # a bounded batch per poll (the server caps batches; a far-behind watcher
                    # catches up over several polls)
                    numbers = range(self.height + 1, min(head, self.height + 200) + 1)
                    blocks = client.batch(
                        [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
                    )
                    with self._lock:
                        for number, block in zip(numbers, blocks, strict=True):
                            if not isinstance(block, dict):
                                raise RpcError(0, f"block {number} missing: {block}")
                            txs = [str(h) for h in block["transactions"]]
                            self.blocks[number] = (seen, str(block["hash"]), txs)
                            for tx_hash in txs:
                                self.first_seen.setdefault(tx_hash, seen)
                            self.height = number
                except (OSError, RpcError, KeyError, TypeError, ValueError):
                    self.errors += 1
        finally:
            client.close()

    def count_seen(self, tx_hashes: Sequence[str]) -> int:
        with self._lock:
            return sum(1 for h in tx_hashes if h in self.first_seen)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class CargoLoad:
    """Paced ``CargoLedger.record()`` load on a running devnet.

    Each publisher account (see :func:`cargo_publishers`) sends all its transactions to one
    node — publishers are dealt round-robin over the endpoints, the validators by default — so
    that a node receives every account's nonces in order. Nonces are tracked locally and re-read
    from that node (``pending``) at the start of each run and after any refusal.

    Parameters
    ----------
    devnet : Devnet
        A running devnet.
    events_per_tx : int
        Cargo events per ``record()`` call.
    payload_bytes : int
        Size of each event's (random, ciphertext-like) payload.
    watch : int, optional
        Index of the node whose blocks define finality; the first endpoint by default.
    endpoints : sequence of int, optional
        Indices of the nodes the transactions are sent to (publishers dealt round-robin over
        them); the validators by default. A fault test sends to nodes it never stops.
    """

    def __init__(
        self,
        devnet: Devnet,
        *,
        events_per_tx: int = 100,
        payload_bytes: int = 96,
        watch: int | None = None,
        publishers: Sequence[Publisher] | None = None,
        endpoints: Sequence[int] | None = None,
    ) -> None:
        self.devnet = devnet
        self.events_per_tx = events_per_tx
        self.payload_bytes = payload_bytes
        layout = devnet.layout
        self.endpoints = (
            [i for i, node in enumerate(layout.nodes) if node.is_validator]
            if endpoints is None
            else list(endpoints)
        )
        if not self.endpoints:
            raise DevnetError("a load needs at least one node to send transactions to")
        self.watch = self.endpoints[0] if watch is None else watch
        self.publishers = list(
            publishers
            if publishers is not None
            else cargo_publishers(Genesis.load(layout.genesis_path))
        )
        if not self.publishers:
            raise DevnetError("the genesis has no demo member account that may record cargo events")
        self.chain_id = layout.chain_id
        self._gas: dict[str, int] = {}
        self._subjects = itertools.count()

    def endpoint_of(self, p: int) -> int:
        return self.endpoints[p % len(self.endpoints)]

    def _estimate_gas(self) -> None:
        """Gas limit per publisher: an estimate of a sample batch plus a margin (once)."""
        node = self.devnet.nodes[self.watch]
        client = RpcClient(node.host, node.rpc_port, timeout=30.0)
        try:
            for publisher in self.publishers:
                if publisher.address in self._gas:
                    continue
                sample = cargo_events(
                    self.events_per_tx, 0, publisher.event_type, self.payload_bytes
                )
                call = {
                    "from": publisher.address,
                    "to": SYSTEM_ADDRESSES["CargoLedger"],
                    "data": "0x" + encode_record_call(sample).hex(),
                }
                estimate = int(client.call("eth_estimateGas", [call]), 16)
                # Random payloads have a few zero bytes more or less than the sample: a margin.
                self._gas[publisher.address] = estimate * 5 // 4 + 10_000
        finally:
            client.close()

    def run(
        self,
        rate: float,
        duration: float,
        *,
        settle: float = 60.0,
        warmup: float | None = None,
        stop: threading.Event | None = None,
    ) -> LoadReport:
        """Offer ``rate`` tx/s for ``duration`` s, wait up to ``settle`` s for inclusion, report.

        ``warmup`` (default a fifth of the duration, at most 5 s) is left out of the
        finalized-throughput window, which ends when submission ends. A validator that does
        not answer (down, frozen) costs its submitter a timeout per attempt; what it could not
        send by :data:`SUBMIT_GRACE` seconds after the end is counted as unsent.

        ``stop``, once set (by another thread), ends submission early: the run then lasts until
        that moment, and transactions not yet due are neither sent nor counted.
        """
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        report = LoadReport(
            offered_tx_per_s=rate, duration_s=duration, events_per_tx=self.events_per_tx
        )
        watched = self.devnet.nodes[self.watch]
        watcher = BlockWatcher(watched, int(rpc_call(watched, "eth_blockNumber"), 16))
        self._estimate_gas()
        plan = _Plan(rate=rate, total=max(1, round(rate * duration)), t0=time.monotonic() + 0.2,
                     give_up=time.monotonic() + 0.2 + duration + SUBMIT_GRACE,
                     stop=stop or threading.Event())  # fmt: skip
        submitted: dict[str, tuple[float, int]] = {}  # hash -> (submit time, events)
        failures: list[BaseException] = []
        lock = threading.Lock()

        def submitter(endpoint: int) -> None:
            try:
                self._submit(endpoint, plan, report, submitted, lock)
            except BaseException as exc:  # surfaced below, never swallowed
                failures.append(exc)

        watcher.start()
        threads = [
            threading.Thread(target=submitter, args=(e,), daemon=True, name=f"cargo-load-{e}")
            for e in sorted({self.endpoint_of(p) for p in range(len(self.publishers))})
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submit_end = time.monotonic()
        if plan.stop.is_set():
            duration = report.duration_s = min(duration, submit_end - plan.t0)
        try:
            if failures:
                raise failures[0]
            hashes = list(submitted)
            with contextlib.suppress(DevnetTimeout):
                wait_for(
                    lambda: watcher.count_seen(hashes) == len(hashes),
                    settle,
                    interval=0.1,
                    what="inclusion of every accepted transaction",
                )
        finally:
            watcher.stop()
        report.submit_tx_per_s = report.submitted / max(submit_end - plan.t0, 1e-9)
        report.accepted_hashes = list(submitted)
        report.started = plan.t0
        self._account(report, watcher, submitted, plan.t0, duration, warmup)
        return report

    def _submit(
        self,
        endpoint: int,
        plan: _Plan,
        report: LoadReport,
        submitted: dict[str, tuple[float, int]],
        lock: threading.Lock,
    ) -> None:
        """Send this endpoint's share of the plan, each transaction at its scheduled time."""
        node = self.devnet.nodes[endpoint]
        client = RpcClient(node.host, node.rpc_port, timeout=SUBMIT_TIMEOUT)
        mine = [p for p in range(len(self.publishers)) if self.endpoint_of(p) == endpoint]
        nonces: dict[int, int | None] = dict.fromkeys(mine)  # None: read it from the node
        jobs = [j for j in range(plan.total) if j % len(self.publishers) in nonces]
        try:
            for done, j in enumerate(jobs):
                if time.monotonic() > plan.give_up:
                    with lock:
                        report.unsent += len(jobs) - done
                    return
                if plan.stop.wait(max(0.0, plan.t0 + j / plan.rate - time.monotonic())):
                    return
                p = j % len(self.publishers)
                publisher = self.publishers[p]
                try:
                    nonce = nonces[p]
                    if nonce is None:
                        pending = client.call(
                            "eth_getTransactionCount", [publisher.address, "pending"]
                        )
                        nonce = nonces[p] = int(pending, 16)
                except (OSError, RpcError):
                    with lock:
                        report.unreachable += 1
                    continue
                events = cargo_events(
                    self.events_per_tx, next(self._subjects) * self.events_per_tx,
                    publisher.event_type, self.payload_bytes,
                )  # fmt: skip
                raw, tx_hash = record_transaction(
                    publisher.key, chain_id=self.chain_id, nonce=nonce,
                    gas=self._gas[publisher.address], events=events,
                )  # fmt: skip
                sent = time.monotonic()
                try:
                    answer = client.call("eth_sendRawTransaction", ["0x" + raw.hex()])
                except RpcError as exc:
                    nonces[p] = None  # re-read: the refused nonce may still be free
                    with lock:
                        report.submitted += 1
                        report.refused += 1
                        report.refusals[exc.message] += 1
                    continue
                except OSError:
                    nonces[p] = None  # the node may or may not have taken it
                    with lock:
                        report.submitted += 1
                        report.unreachable += 1
                    continue
                nonces[p] = nonce + 1
                with lock:
                    report.submitted += 1
                    report.accepted += 1
                    submitted[tx_hash] = (sent, len(events))
                    if str(answer).lower() != tx_hash:
                        report.hash_mismatches += 1
        finally:
            client.close()

    def _account(
        self,
        report: LoadReport,
        watcher: BlockWatcher,
        submitted: dict[str, tuple[float, int]],
        t0: float,
        duration: float,
        warmup: float | None,
    ) -> None:
        """Scan the watched node's blocks and receipts; fill in inclusion and latency."""
        client = RpcClient(watcher.node.host, watcher.node.rpc_port, timeout=30.0)
        try:
            head = watcher.height
            numbers = list(range(watcher.start_height + 1, head + 1))
            occurrences: Counter[str] = Counter()
            block_of: dict[str, int] = {}
            for chunk in _chunks(numbers, 200):
                blocks = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
                for number, block in zip(chunk, blocks, strict=True):
                    if not isinstance(block, dict):
                        raise DevnetError(
                            f"block {number} vanished from {watcher.node.name}: {block}"
                        )
                    if block["hash"] != watcher.blocks[number][1]:
                        raise DevnetError(f"block {number} changed its hash on {watcher.node.name}")
                    for tx_hash in block["transactions"]:
                        occurrences[tx_hash] += 1
                        block_of.setdefault(tx_hash, number)
            report.blocks = len(numbers)
            included = [h for h in submitted if occurrences[h] > 0]
            report.included = len(included)
            report.included_once = sum(1 for h in included if occurrences[h] == 1)
            report.duplicated = report.included - report.included_once
            report.lost = len(submitted) - report.included
            # in chain order: the node formats a block's receipts together and keeps few
            # blocks of them, so asking in submission order (publishers interleave across
            # blocks) would format a large block again for nearly every receipt
            in_chain_order = sorted(included, key=block_of.__getitem__)
            for hashes in _chunks(in_chain_order, RECEIPTS_PER_BATCH):
                receipts = client.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                for tx_hash, receipt in zip(hashes, receipts, strict=True):
                    if (
                        not isinstance(receipt, dict)
                        or int(receipt["blockNumber"], 16) != block_of[tx_hash]
                    ):
                        report.receipt_mismatches += 1
                    elif receipt["status"] != "0x1":
                        report.reverted += 1
        finally:
            client.close()
        warm = min(5.0, duration / 5) if warmup is None else warmup
        window_start, window_end = t0 + warm, t0 + duration
        events = 0
        for tx_hash in included:
            sent, count = submitted[tx_hash]
            seen = watcher.first_seen[tx_hash]
            report.latencies.append(seen - sent)
            report.finalized.append((seen, count))
            if window_start <= seen <= window_end:
                events += count
        report.window_s = window_end - window_start
        report.window_events = events

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every validator's pool is empty; whether it emptied within ``timeout``."""

        def empty() -> bool:
            return all(
                int(self.devnet.rpc(i, "txpool_status", timeout=5.0)["pending"], 16) == 0
                for i in self.endpoints
            )

        try:
            wait_for(empty, timeout, interval=0.25, what="empty transaction pools")
            return True
        except DevnetTimeout:
            return False


@dataclass(frozen=True)
class _Plan:
    """When each transaction of a load run is due: number ``j`` at ``t0 + j / rate``."""

    rate: float
    total: int
    t0: float
    give_up: float
    """After this instant a submitter sends nothing more (it fell behind a dead validator)."""
    stop: threading.Event
    """Set: submitters send nothing more (the run was ended early)."""


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- recovery after an overload ----------------------------------------------------------------
@dataclass(frozen=True)
class Recovery:
    """How long finalized throughput took to come back after an overload (:func:`recovery`)."""

    baseline_events_per_s: float
    """Finalized events/s at the normal rate before the overload (same run)."""
    window_s: float
    tolerance: float
    seconds: float | None
    """From the end of the overload to the end of the first sliding window whose finalized
    throughput was within ``tolerance`` of the baseline (at least ``1 - tolerance`` of it);
    None if none was. Includes the window itself: a load that never slowed down shows about
    one window plus the finality latency."""
    series: tuple[tuple[float, float], ...] = field(repr=False)
    """(seconds after the overload ended, events/s in the window ending then)."""

    def describe(self) -> str:
        back = "not back" if self.seconds is None else f"back after {self.seconds:.1f} s"
        return (
            f"recovery: {back} (finalized events/s in a {self.window_s:g} s sliding window "
            f">= {1 - self.tolerance:.0%} of the baseline {self.baseline_events_per_s:,.0f}/s)"
        )


def recovery(
    finalized: Sequence[tuple[float, int]],
    *,
    start: float,
    end: float,
    baseline_events_per_s: float,
    window: float = 5.0,
    step: float = 0.5,
    tolerance: float = 0.1,
) -> Recovery:
    """Time until finalized throughput is back within ``tolerance`` of the baseline.

    Parameters
    ----------
    finalized
        (monotonic time finalized, events) of what was offered at the normal rate from
        ``start`` on — when the overload stopped and the normal rate was offered again. Work
        offered during the overload is left out: finishing the backlog is not throughput at
        the normal rate.
    start, end
        The monotonic times the recovery load started and the measurement ends.
    baseline_events_per_s
        Finalized throughput at the normal rate before the overload, in the same run.
    window, step
        Length of the sliding window and the step it slides by, seconds.
    """
    if window <= 0 or step <= 0 or baseline_events_per_s <= 0:
        raise ValueError("window, step and baseline must be positive")
    times = sorted((t, n) for t, n in finalized if t >= start)
    series: list[tuple[float, float]] = []
    seconds: float | None = None
    first = 0
    total = 0
    last = 0
    t = start + window
    while t <= end + 1e-9:
        while last < len(times) and times[last][0] <= t:
            total += times[last][1]
            last += 1
        while first < last and times[first][0] <= t - window:
            total -= times[first][1]
            first += 1
        rate = total / window
        series.append((t - start, rate))
        if seconds is None and rate >= (1 - tolerance) * baseline_events_per_s:
            seconds = t - start
        t += step
    return Recovery(baseline_events_per_s, window, tolerance, seconds, tuple(series))


# -- load through the gateway ------------------------------------------------------------------
#: Seconds one upload or status request may take before it counts as a hang.
GATEWAY_TIMEOUT = 30.0

#: The canonical event type an organisation uploads in a gateway load, by its first role that
#: may publish one (terminals their own family; everyone else an EQUIPMENT event if allowed).
_UPLOAD_TYPES = {"terminal": "TERMINAL.DISC", "carrier": "EQUIPMENT.STUF",
                 "forwarder": "EQUIPMENT.STUF", "haulier": "EQUIPMENT.STUF",
                 "warehouse": "EQUIPMENT.STUF", "customs": "EQUIPMENT.STUF"}  # fmt: skip


@dataclass(frozen=True)
class Uploader:
    """One organisation's API key in a gateway load."""

    org: int
    """Its Consortium organisation id (the publisher id on chain)."""
    api_key: str
    event_type: str


def gateway_uploaders(credentials: dict[str, Any]) -> list[Uploader]:
    """The demo organisations (``portledger demo-accounts``) that may upload cargo events."""
    out = []
    for org in credentials["organisations"]:
        kinds = [_UPLOAD_TYPES[r] for r in org.get("roles", []) if r in _UPLOAD_TYPES]
        if kinds and org.get("apiKey"):
            out.append(Uploader(int(org["chainOrg"]), str(org["apiKey"]), kinds[0]))
    return out


@dataclass
class GatewayLoadReport:
    """One paced run of ``POST /v1/events`` through the gateway (:class:`GatewayLoad`)."""

    label: str
    offered_events_per_s: float
    duration_s: float
    events_per_request: int
    started: float = 0.0
    """Monotonic time the first request was due."""
    requests: int = 0
    accepted: int = 0
    """Events answered 202 with a receipt carrying their key."""
    refused: Counter[str] = field(default_factory=Counter)
    """Refused requests by ``"<status> <error code>"`` (429 and 503: may be retried)."""
    refused_events: int = 0
    without_retry_after: int = 0
    """429 and 503 answers without a ``Retry-After`` header."""
    retry_after: Counter[int] = field(default_factory=Counter)
    """The ``Retry-After`` seconds of the refusals."""
    errors: Counter[str] = field(default_factory=Counter)
    """Any other answer (by status and code), ``timeout`` and ``connection`` failures."""
    unsent: int = 0
    """Requests not sent: the senders were still behind schedule when the run ended."""
    slowest_s: float = 0.0
    """The longest time one upload took to be answered."""
    keys: list[tuple[int, str]] = field(default_factory=list, repr=False)
    """(organisation, idempotency key) of every accepted event."""
    # filled in by GatewayLoad.read_back
    final: int = 0
    failed: int = 0
    not_final: int = 0
    final_once: int = 0
    """Final, with its event id logged exactly once on chain, in the block and transaction
    the receipt names."""
    finalized: list[tuple[float, int]] = field(default_factory=list, repr=False)
    """(first sight of the event's block on the watched node, monotonic; 1) per final event."""
    window_events: int = 0
    window_s: float = 0.0

    @property
    def submit_events_per_s(self) -> float:
        return self.requests * self.events_per_request / self.duration_s if self.duration_s else 0

    @property
    def finalized_events_per_s(self) -> float:
        """Finalized throughput of this run's events from its warm-up to the end of its run."""
        return self.window_events / self.window_s if self.window_s > 0 else 0.0

    def describe(self) -> str:
        return (
            f"{self.label}: offered {self.offered_events_per_s:,.0f} events/s for "
            f"{self.duration_s:.0f} s in lists of {self.events_per_request} (sent "
            f"{self.submit_events_per_s:,.0f}/s), accepted {self.accepted}, refused "
            f"{self.refused_events} ({dict(self.refused)}; Retry-After {dict(self.retry_after)}),"
            f" errors {dict(self.errors)}, unsent {self.unsent}, slowest answer "
            f"{self.slowest_s:.2f} s; final {self.final} (once on chain {self.final_once}), "
            f"failed {self.failed}, not final {self.not_final}; finalized "
            f"{self.finalized_events_per_s:,.0f} events/s"
        )


class GatewayLoad:
    """Paced ``POST /v1/events`` uploads from several organisations' API keys, read back.

    Each request carries ``events_per_request`` canonical events (``{"events": [...]}``, each
    with its own idempotency key ``id``), about fresh container numbers; requests are dealt
    round-robin over the uploaders and sent from ``concurrency`` threads, each request at its
    scheduled time. A :class:`BlockWatcher` on ``watch`` (the gateway's own node) notes when
    each block is first seen: an event's finality is the first sight of the block its receipt
    names. :meth:`read_back` asks the gateway for every accepted key
    (``GET /v1/submissions/{key}``) and checks it against the CargoEvent logs of the watched
    node: each final event's id logged exactly once, where its receipt says.

    Use as a context manager (the watcher runs from entering to leaving).
    """

    def __init__(
        self,
        base_url: str,
        uploaders: Sequence[Uploader],
        watch: NodeSpec,
        *,
        events_per_request: int = 20,
        concurrency: int = 16,
        run_id: str | None = None,
    ) -> None:
        if not uploaders:
            raise DevnetError("a gateway load needs at least one organisation's API key")
        parsed = urllib.parse.urlsplit(base_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.uploaders = list(uploaders)
        self.events_per_request = events_per_request
        self.concurrency = concurrency
        self.run_id = run_id or os.urandom(4).hex()
        self.node = watch
        self._serials = itertools.count(1)
        self._serial_lock = threading.Lock()
        self._watcher: BlockWatcher | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> GatewayLoad:
        start = int(rpc_call(self.node, "eth_blockNumber"), 16)
        self._watcher = BlockWatcher(self.node, start)
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    @property
    def watcher(self) -> BlockWatcher:
        if self._watcher is None:
            raise DevnetError("use the gateway load as a context manager")
        return self._watcher

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=GATEWAY_TIMEOUT)

    def _request(
        self, conn: http.client.HTTPConnection, method: str, path: str, key: str,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {key}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed

    # -- uploads -------------------------------------------------------------------------------
    def _container(self) -> str:
        with self._serial_lock:
            serial = next(self._serials)
        first = f"PLGU{serial % 1_000_000:06d}"
        return first + str(container_check_digit(first))

    def _body(
        self, uploader: Uploader, label: str, j: int, count: int
    ) -> tuple[bytes, list[str]]:
        keys = [f"{self.run_id}-{label}-{j}-{i}" for i in range(count)]
        events = [
            {"id": key, "type": uploader.event_type, "classifier": "ACT",
             "time": "2026-12-07T08:00:00Z",
             "subject": {"kind": "container", "value": self._container()},
             "location": "HKHKG", "details": {"load": key}, "visibility": {"mode": "named"}}
            for key in keys
        ]  # fmt: skip
        return json.dumps({"events": events}).encode(), keys

    def run(
        self,
        label: str,
        events_per_s: float,
        duration: float,
        *,
        warmup: float | None = None,
        events_per_request: int | None = None,
    ) -> GatewayLoadReport:
        """Offer ``events_per_s`` for ``duration`` seconds; return once submission ended.

        Nothing is waited for after the last request (a recovery run starts right after an
        overload); :meth:`read_back` fills in finality later. ``warmup`` (default a fifth of
        the duration, at most 5 s) is left out of the finalized-throughput window.
        ``events_per_request`` overrides the load's for this run (a slow rate in small
        requests measures finer).
        """
        if events_per_s <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        per_request = events_per_request or self.events_per_request
        report = GatewayLoadReport(label, events_per_s, duration, per_request)
        rate = events_per_s / per_request
        total = max(1, round(rate * duration))
        t0 = report.started = time.monotonic() + 0.1
        give_up = t0 + duration + SUBMIT_GRACE
        lock = threading.Lock()

        def send(conn: http.client.HTTPConnection, j: int) -> http.client.HTTPConnection:
            if time.monotonic() > give_up:
                with lock:
                    report.unsent += 1
                return conn
            time.sleep(max(0.0, t0 + j / rate - time.monotonic()))
            uploader = self.uploaders[j % len(self.uploaders)]
            body, keys = self._body(uploader, label, j, per_request)
            sent = time.monotonic()
            try:
                status, headers, answer = self._request(
                    conn, "POST", "/v1/events", uploader.api_key, body
                )
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                failure = "timeout" if isinstance(exc, TimeoutError) else (
                    f"connection {type(exc).__name__}")
                with lock:
                    report.requests += 1
                    report.errors[failure] += 1
                return self._connection()
            elapsed = time.monotonic() - sent
            with lock:
                report.requests += 1
                report.slowest_s = max(report.slowest_s, elapsed)
                self._classify(report, uploader, keys, status, headers, answer)
            return conn

        self._in_threads(self.concurrency, total, send, name="gateway-load")
        warm = min(5.0, duration / 5) if warmup is None else warmup
        report.window_s = duration - warm
        return report

    def _in_threads(
        self,
        threads: int,
        total: int,
        job: Callable[[http.client.HTTPConnection, int], http.client.HTTPConnection],
        *,
        name: str,
    ) -> None:
        """Run ``job(connection, i)`` for i in 0..total-1 on ``threads`` threads, each with its
        own gateway connection (``job`` returns the one to go on with, a fresh one after a
        failure); the first exception of any thread is raised here, after all have ended."""
        indices = itertools.count()
        lock = threading.Lock()
        failures: list[BaseException] = []

        def worker() -> None:
            conn = self._connection()
            try:
                while True:
                    with lock:
                        i = next(indices)
                    if i >= total:
                        return
                    conn = job(conn, i)
            except BaseException as exc:  # surfaced below, never swallowed
                failures.append(exc)
            finally:
                conn.close()

        started = [
            threading.Thread(target=worker, daemon=True, name=f"{name}-{n}")
            for n in range(threads)
        ]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
        if failures:
            raise failures[0]

    @staticmethod
    def _classify(
        report: GatewayLoadReport, uploader: Uploader, keys: list[str], status: int,
        headers: dict[str, str], answer: Any,
    ) -> None:
        code = answer.get("error", {}).get("code", "") if isinstance(answer, dict) else ""
        if status == 202 and isinstance(answer, dict):
            receipts = answer.get("receipts", [])
            got = [r.get("id") for r in receipts if isinstance(r, dict)]
            if got != keys:
                report.errors[f"202 with other keys than sent ({len(got)} of {len(keys)})"] += 1
                return
            report.accepted += len(keys)
            report.keys += [(uploader.org, k) for k in keys]
        elif status in (429, 503):
            report.refused[f"{status} {code}"] += 1
            report.refused_events += len(keys)
            retry = headers.get("retry-after")
            if retry is None or not retry.isdigit():
                report.without_retry_after += 1
            else:
                report.retry_after[int(retry)] += 1
        else:
            report.errors[f"{status} {code}"] += 1

    # -- reading back --------------------------------------------------------------------------
    def outbox_depth(self) -> float | None:
        """The gateway's ``portledger_outbox_depth`` (its /metrics), None if not exported."""
        conn = self._connection()
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        for line in text.splitlines():
            if line.startswith("portledger_outbox_depth "):
                return float(line.split()[1])
        return None

    def wait_drained(self, timeout: float) -> float:
        """Wait until the gateway's outbox is empty; seconds it took (DevnetTimeout if not)."""
        started = time.monotonic()
        wait_for(lambda: self.outbox_depth() == 0, timeout, interval=0.25,
                 what="an empty gateway outbox")  # fmt: skip
        return time.monotonic() - started

    def read_back(self, reports: Sequence[GatewayLoadReport]) -> Counter[int]:
        """Fill in finality: every accepted key's submission, checked against the chain.

        Asks ``GET /v1/submissions/{key}`` once per accepted event (call it when the outbox has
        drained: a key not final then counts as not final), then reads the CargoEvent logs of
        the watched node over the blocks seen since the load began.

        Returns
        -------
        Counter
            CargoEvent logs per publisher organisation in those blocks (the test compares the
            uploaders' counts with their final events: nothing recorded twice).
        """
        by_key = {org.org: org.api_key for org in self.uploaders}
        todo = [(r, org, key) for r in reports for org, key in r.keys]
        answers: dict[tuple[int, str], dict[str, Any] | None] = {}

        def read(conn: http.client.HTTPConnection, i: int) -> http.client.HTTPConnection:
            _, org, key = todo[i]
            status, _, body = self._request(
                conn, "GET", f"/v1/submissions/{urllib.parse.quote(key)}", by_key[org]
            )
            answers[(org, key)] = body if status == 200 else None
            return conn

        self._in_threads(8, len(todo), read, name="gateway-read-back")
        logs = self._cargo_logs()
        publishers: Counter[int] = Counter(publisher for publisher, _, _ in logs.values())
        seen = self.watcher.blocks
        for report in reports:
            report.finalized = []
            report.final = report.failed = report.not_final = report.final_once = 0
            window_start = report.started + (report.duration_s - report.window_s)
            window_end = report.started + report.duration_s
            events = 0
            for org, key in report.keys:
                body = answers.get((org, key))
                status = body.get("status") if isinstance(body, dict) else None
                if status == "failed":
                    report.failed += 1
                    continue
                if status != "final" or not isinstance(body, dict):
                    report.not_final += 1
                    continue
                report.final += 1
                event_id, block, tx_hash = body.get("eventId"), body.get("block"), body.get("txHash")
                if isinstance(event_id, int) and logs.get(event_id) == (org, block, tx_hash):
                    report.final_once += 1
                if isinstance(block, int) and block in seen:
                    at = seen[block][0]
                    report.finalized.append((at, 1))
                    if window_start <= at <= window_end:
                        events += 1
            report.window_events = events
        return publishers

    def _cargo_logs(self) -> dict[int, tuple[int, int, str]]:
        """Every CargoEvent log the watched node has since the load began: event id ->
        (publisher, block, transaction hash)."""
        watcher = self.watcher
        first, last = watcher.start_height + 1, watcher.height
        out: dict[int, tuple[int, int, str]] = {}
        client = RpcClient(self.node.host, self.node.rpc_port, timeout=60.0)
        try:
            start, span = first, 16
            while start <= last:
                end = min(last, start + span - 1)
                try:
                    found = client.call("eth_getLogs", [{
                        "fromBlock": hex(start), "toBlock": hex(end),
                        "address": SYSTEM_ADDRESSES["CargoLedger"],
                        "topics": ["0x" + CARGO_EVENT_TOPIC.hex()],
                    }])  # fmt: skip
                except RpcError as exc:
                    if exc.code == -32005 and span > 1:
                        span //= 2  # too many logs in one answer
                        continue
                    raise
                for entry in found:
                    event_id = int(entry["topics"][3], 16)
                    if event_id in out:
                        raise DevnetError(f"event id {event_id} logged twice")
                    out[event_id] = (int(entry["topics"][2], 16), int(entry["blockNumber"], 16),
                                     str(entry["transactionHash"]))  # fmt: skip
                start = end + 1
        finally:
            client.close()
        return out
