"""Paced cargo load on a running devnet, with finality measured as first sight of a block.

:class:`CargoLoad` sends ``CargoLedger.record()`` transactions from the demo members' accounts,
paced against the validators; a :class:`BlockWatcher` notes when each block is first seen, and
:class:`LoadReport` says what was offered, accepted, finalized and lost.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_canonical_address

from contracts import SYSTEM_ADDRESSES, roles_mask
from contracts.cargo import EVENT_TYPES, FAMILIES, CargoEventInput, encode_record_call, subject_key
from devnet.errors import DevnetError, DevnetTimeout
from devnet.jsonrpc import RpcClient, RpcError, rpc_call, wait_for
from devnet.layout import NodeSpec
from devnet.processes import Devnet
from node.genesis import Genesis, dev_key

#: JSON-RPC timeout of a load submitter (a frozen validator costs this per attempt).
SUBMIT_TIMEOUT = 5.0
#: Seconds after the end of a load run during which a late submitter may still send.
SUBMIT_GRACE = 5.0

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
            for hashes in _chunks(included, 200):
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
