"""Anchoring telemetry: batches of readings, one Merkle root on chain each.

Every ``telemetry_window_seconds`` (:class:`~gateway.config.GatewayConfig`, default 10) the
gateway takes the readings not yet in a batch (oldest first), groups them per (owner
organisation, Anchors kind), cuts each group into batches of at most ``telemetry_batch_max``
readings in id order (:func:`plan`, pure), and anchors each batch's root with
``Anchors.anchor(kind, root, count, start, end)``. The root is :func:`contracts.anchors.merkle_root`
of the readings' hashes (keccak-256 of their canonical bytes), in batch order — the rule
``contracts/merkle.vy`` checks on chain and ``portledger verify-proof`` checks offline
(``docs/proof-format.md`` 5.5).

The anchor call goes through the write path like any other contract call: a ``call`` operation
for the owner organisation in the outbox (:meth:`gateway.writepath.outbox.Outbox.accept_async`),
signed and sent by the submitter with the organisation's key, so the chain checks the
organisation's role for the kind (``Anchors.vy`` ``KIND_ROLES``).

Restart safety, step by step (:class:`Anchorer`):

1. **form** — the batch is recorded in the telemetry store *and* each of its readings gets
   its batch and position, in one SQLite transaction (status ``formed``). A reading is never
   in two batches, and a formed batch is never formed again differently.
2. **submit** — its ``call`` operation goes into the outbox under an idempotency key derived
   from the batch (:func:`idempotency_key`: batch id and root), then the batch is marked
   ``submitted``. A crash in between re-submits the same operation on restart, which the
   outbox answers as a duplicate: the root is anchored once.
3. **settle** — once the outbox reports the operation ``final``, the transaction's receipt is
   read through the node client, its ``Anchored`` log found (:func:`anchored_log`: Anchors
   address, topic, kind and root) and the batch marked ``anchored`` with the anchor id, block,
   transaction and block-wide log index a proof bundle needs. A ``failed`` operation (the
   organisation lacks the role, is no member) marks the batch ``failed`` with the reason; its
   readings stay stored, unanchored.

Each pass handles at most ``max_batches`` batches per step, so one pass is bounded whatever the
backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import abi, anchors
from gateway import errors
from gateway.nodeclient import NodeClient, NodeUnavailable, RpcError
from gateway.telemetry.records import BatchRecord, Unanchored
from gateway.telemetry.store import TelemetryStore
from gateway.writepath.operations import Operation
from gateway.writepath.outbox import Outbox
from proofs.checks import ANCHORED_TOPIC

log = logging.getLogger("portledger.gateway.telemetry")

#: Most readings one batch holds by default (a proof is then at most 12 siblings deep).
DEFAULT_BATCH_MAX = 4096
#: Most batches one pass forms, submits or settles.
DEFAULT_MAX_BATCHES = 32
#: Seconds between two looks at submitted batches while some wait (the submitter's listener
#: wakes the anchorer sooner when it is in the same process).
SETTLE_POLL = 1.0

_ANCHORS = abi.address("Anchors")
_KIND_NAMES = {code: name for name, code in anchors.KINDS.items()}


@dataclass(frozen=True)
class Batch:
    """Readings of one owner and kind, anchored under one root (pure)."""

    org_id: int
    """Owner: the gateway organisation (who signs the anchor call)."""
    kind: int
    """Anchors kind code (:data:`contracts.anchors.KINDS`)."""
    ids: tuple[int, ...]
    """The readings' store ids, in leaf order."""
    hashes: tuple[bytes, ...]
    """Their reading hashes, same order."""
    start: int
    """Earliest reading time, Unix seconds."""
    end: int
    """Latest reading time."""
    root: bytes = field(init=False)
    """The Merkle root (:func:`contracts.anchors.merkle_root` of :attr:`hashes`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", anchors.merkle_root(list(self.hashes)))


def plan(pending: Sequence[Unanchored], max_size: int, max_batches: int) -> list[Batch]:
    """Cut readings waiting for a batch into batches (pure).

    Readings are grouped per (owner, kind); each group, in id order, is cut into batches of at
    most ``max_size``; batches come out in the order of their first reading, at most
    ``max_batches`` of them.

    Examples
    --------
    >>> from gateway.telemetry.records import Unanchored
    >>> waiting = [Unanchored(i, org, 2, 100 + i, bytes([i]) * 32)
    ...            for i, org in enumerate([7, 7, 9, 7], start=1)]
    >>> [(b.org_id, b.ids, b.start, b.end) for b in plan(waiting, 2, 10)]
    [(7, (1, 2), 101, 102), (9, (3,), 103, 103), (7, (4,), 104, 104)]
    """
    if max_size < 1:
        raise ValueError("a batch holds at least one reading")
    groups: dict[tuple[int, int], list[Unanchored]] = {}
    for reading in sorted(pending, key=lambda r: r.id):
        groups.setdefault((reading.org_id, reading.kind), []).append(reading)
    out: list[Batch] = []
    for (org_id, kind), members in groups.items():
        for i in range(0, len(members), max_size):
            chunk = members[i : i + max_size]
            times = [r.time for r in chunk]
            out.append(Batch(org_id, kind, tuple(r.id for r in chunk),
                             tuple(r.reading_hash for r in chunk), min(times), max(times)))
    out.sort(key=lambda b: b.ids[0])
    return out[:max_batches]


def idempotency_key(batch_id: int, root: bytes) -> str:
    """The write path's idempotency key of a batch's anchor call (batch id and root)."""
    return f"telemetry-anchor:{batch_id}:{root.hex()}"


def anchor_call(batch: BatchRecord) -> Operation:
    """The ``Anchors.anchor(kind, root, count, start, end)`` call of a recorded batch."""
    return Operation(
        idempotency_key=batch.idempotency_key,
        kind="call",
        to=_ANCHORS,
        data=abi.call_data("Anchors", "anchor", batch.kind, batch.root, batch.count,
                           batch.start, batch.end),
        summary=f"anchor {batch.count} {_KIND_NAMES.get(batch.kind, batch.kind)} readings",
    )


def anchored_log(receipt: dict[str, Any], kind: int, root: bytes) -> tuple[int, int] | None:
    """``(anchor id, block-wide log index)`` of the ``Anchored`` log of ``root`` in a
    JSON-RPC transaction receipt, or None if it has none."""
    for entry in receipt.get("logs") or []:
        try:
            topics = [bytes.fromhex(t[2:]) for t in entry["topics"]]
            data = bytes.fromhex(entry["data"][2:])
            if (entry["address"].lower() != _ANCHORS.lower() or len(topics) != 4
                    or topics[0] != ANCHORED_TOPIC or data[:32] != root
                    or int.from_bytes(topics[3], "big") != kind):
                continue
            return int.from_bytes(topics[1], "big"), int(entry["logIndex"], 16)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return None


class Anchorer:
    """The anchoring task: form, submit and settle batches (module docstring).

    Parameters
    ----------
    store
        The telemetry store.
    outbox
        The write path's outbox (the anchor calls go there).
    node
        Client of the configured nodes (settling reads receipts); None: batches are formed and
        submitted, and wait there.
    window
        Seconds between two batch formations.
    batch_max
        Most readings per batch.
    max_batches
        Most batches one pass forms, submits or settles.
    """

    def __init__(self, store: TelemetryStore, outbox: Outbox, node: NodeClient | None, *,
                 window: float = 10.0, batch_max: int = DEFAULT_BATCH_MAX,
                 max_batches: int = DEFAULT_MAX_BATCHES) -> None:
        self.store = store
        self.outbox = outbox
        self.node = node
        self.window = max(0.05, window)
        self.batch_max = max(1, batch_max)
        self.max_batches = max(1, max_batches)
        self.failures = 0
        """Passes that ended in an error (metrics)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self, *_: Any) -> None:
        """Look at submitted batches now (the submitter's listener calls it on settlements)."""
        self._wake.set()

    # -- the three steps ----------------------------------------------------------------------
    async def form(self) -> list[BatchRecord]:
        """Record batches of the readings waiting for one; the batches recorded."""
        pending = await asyncio.to_thread(self.store.unanchored,
                                          self.batch_max * self.max_batches)
        batches = plan(pending, self.batch_max, self.max_batches)
        if not batches:
            return []
        rows = [(b.org_id, b.kind, b.root, b.start, b.end, b.ids) for b in batches]
        recorded = await asyncio.to_thread(self.store.record_batches, rows, idempotency_key)
        log.info("telemetry: formed %d batches of %d readings", len(recorded),
                 sum(b.count for b in recorded))
        return recorded

    async def submit(self) -> int:
        """Put the anchor call of every formed batch in the outbox; how many."""
        formed = await asyncio.to_thread(self.store.batches, "formed", self.max_batches)
        for batch in formed:
            try:
                await self.outbox.accept_async(batch.org_id, [anchor_call(batch)])
            except errors.Conflict as exc:  # the key was used for other content: never sendable
                await asyncio.to_thread(self.store.mark_failed, batch.batch_id, exc.message)
                continue
            await asyncio.to_thread(self.store.mark_submitted, batch.batch_id)
        return len(formed)

    async def settle(self) -> int:
        """Settle submitted batches whose anchor call is final or failed; how many settled."""
        waiting = await asyncio.to_thread(self.store.batches, "submitted", self.max_batches)
        settled = 0
        for batch in waiting:
            receipt = await asyncio.to_thread(self.outbox.status, batch.org_id,
                                              batch.idempotency_key)
            if receipt is None:  # the outbox lost it (a new outbox file): submit again
                log.warning("telemetry: batch %d is unknown to the outbox; submitting again",
                            batch.batch_id)
                await self.outbox.accept_async(batch.org_id, [anchor_call(batch)])
                continue
            if receipt.status == "failed":
                await asyncio.to_thread(self.store.mark_failed, batch.batch_id,
                                        receipt.error or "failed", tx_hash=receipt.tx_hash,
                                        block=receipt.block)
                log.warning("telemetry: batch %d failed: %s", batch.batch_id, receipt.error)
                settled += 1
            elif receipt.status == "final" and receipt.tx_hash and self.node is not None:
                tx = await self.node.receipt(receipt.tx_hash)
                if tx is None:  # the answering node is behind the one that mined it
                    continue
                found = anchored_log(tx, batch.kind, batch.root)
                if found is None:
                    await asyncio.to_thread(self.store.mark_failed, batch.batch_id,
                                            "the transaction has no Anchored log of this root",
                                            tx_hash=receipt.tx_hash, block=receipt.block)
                else:
                    await asyncio.to_thread(
                        self.store.mark_anchored, batch.batch_id, tx_hash=receipt.tx_hash,
                        block=int(tx["blockNumber"], 16), anchor_id=found[0],
                        log_index=found[1])
                settled += 1
        return settled

    async def step(self) -> None:
        """One whole pass: form, submit, settle."""
        await self.form()
        await self.submit()
        await self.settle()

    # -- the task -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Form every window; submit and settle as soon as there is something to do."""
        next_form = time.monotonic() + self.window
        while not self._stopping:
            try:
                if time.monotonic() >= next_form:
                    next_form = time.monotonic() + self.window
                    await self.form()
                await self.submit()
                await self.settle()
                waiting = bool(await asyncio.to_thread(self.store.batches, "submitted", 1))
            except (NodeUnavailable, RpcError) as exc:
                self.failures += 1
                log.warning("telemetry: anchoring pass interrupted: %s", exc)
                waiting = True
            except Exception:
                self.failures += 1
                log.exception("telemetry: anchoring pass failed")
                waiting = True
            pause = max(0.0, next_form - time.monotonic())
            if waiting:
                pause = min(pause, SETTLE_POLL)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def start(self) -> None:
        """Run :meth:`run` as a task."""
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="telemetry-anchorer")

    async def stop(self) -> None:
        """Stop the task (a pass in progress is cancelled; everything it did is durable)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
