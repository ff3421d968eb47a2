"""The indexer: follows finalized blocks into the read model, without gaps or duplicates.

QBFT gives immediate finality, so every block the node reports as ``finalized`` is final. The
indexer keeps a *cursor* in the read model (the last indexed block's number and hash) and
repeatedly:

1. asks the node for the finalized head;
2. reads the logs of the six system contracts over a bounded block range
   (``eth_getLogs``, halving the range when the node says the answer is too large) and the
   headers it needs (timestamps and hashes; every log's block hash must be its header's);
3. checks that the range's first block has the cursor's hash as its parent — so the chain's
   block at the cursor is the one indexed (a different one means the node follows another chain
   or the read model belongs to another chain: the indexer refuses loudly with
   :class:`ChainMismatch` and stops, rather than mix two histories);
4. turns the logs into read-model changes (decoding cargo events with
   :func:`contracts.cargo.decode_event_log` and envelopes with
   :func:`gateway.confidential.envelope.envelope_info`; re-reading an organisation's record with
   ``eth_call`` at the block where one of its Consortium events appears);
5. writes all changes of the range and the new cursor in **one** read-model transaction, which
   also checks that the stored cursor is still the one the range started from.

A crash at any point leaves either the old cursor with none of the range's rows or the new cursor
with all of them, so a restart continues exactly where the last commit ended. Genesis members
exist without logs (the genesis builder ran the constructors); the first range therefore seeds
the directory from ``Consortium.organisation(i)`` at block 0.

Caught up, the indexer polls every ``config.indexer_poll_ms``; :meth:`Indexer.wake` ends the
pause at once. The gateway's submitter wakes it whenever its own operations turn final (their
block is then on the node), so an upload is indexed as soon as it is final rather than up to a
poll later. Directory listeners (:meth:`Indexer.add_directory_listener`) hear of every
organisation whose record changed: the submitter forgets that organisation's cached encryption
key.

``rebuild(config)`` drops the chain-derived tables and indexes again from genesis, with a rich
progress bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from eth_utils.address import to_checksum_address

from contracts import abi
from contracts.cargo import CARGO_EVENT_TOPIC, decode_event_log
from gateway import appkeys, nodeclient
from gateway.appkeys import CONFIG, INDEXER, READ_MODEL, SUBMITTER
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.readside.readmodel import (
    Anchor,
    AnchorAdded,
    Change,
    Cursor,
    CursorMoved,
    DeclarationFiled,
    DeclarationStatus,
    EventAdded,
    Grant,
    GrantChange,
    HouseChange,
    IndexedEvent,
    MasterContainers,
    Member,
    MemberChange,
    ReadModel,
    ReferenceFlag,
)
from gateway.readside.store import open_read_model

log = logging.getLogger("portledger.gateway.indexer")

#: The system contracts whose logs are indexed.
CONTRACTS: tuple[str, ...] = (
    "Consortium",
    "CargoLedger",
    "BillOfLading",
    "AccessGrants",
    "Anchors",
    "Declarations",
)

#: Most blocks one range covers (halved while the node answers "too many results").
MAX_RANGE = 2000

#: JSON-RPC error code of "limit exceeded" (node/rpc/errors.py).
LIMIT_EXCEEDED = -32005

#: Consortium events that change an organisation's directory record.
_ORG_EVENTS = frozenset(
    {
        "MemberAdded",
        "RolesChanged",
        "MemberSuspended",
        "MemberReinstated",
        "AccountAdded",
        "AccountRemoved",
        "EncryptionKeyChanged",
    }
)


class IndexerError(Exception):
    """The indexer cannot go on."""


class ChainMismatch(IndexerError):
    """The chain's block at the cursor (or a range's parent) is not the one indexed."""


class RpcClient(Protocol):
    """What the indexer needs of :class:`gateway.nodeclient.NodeClient`."""

    async def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; its ``result``."""


@dataclass(frozen=True)
class RangeResult:
    """What one committed range did."""

    cursor: Cursor
    """The new cursor."""
    events: tuple[IndexedEvent, ...]
    """Cargo events indexed in it, in chain order."""
    changes: int
    """Number of read-model changes written."""
    members: tuple[Member, ...] = ()
    """Directory records (re)written in it: members whose record changed."""


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


_ADDRESSES = {abi.address(c).lower(): c for c in CONTRACTS}


def _log_key(entry: dict[str, Any]) -> tuple[int, int]:
    return _int(entry["blockNumber"]), _int(entry["logIndex"])


class Indexer:
    """Follows finalized blocks of one node connection into one read model.

    Parameters
    ----------
    model
        The read model it writes.
    node
        A JSON-RPC client (:class:`gateway.nodeclient.NodeClient`).
    poll_seconds
        Pause between polls when caught up.
    max_range
        Most blocks per range (one read-model transaction).
    """

    def __init__(
        self,
        model: ReadModel,
        node: RpcClient,
        *,
        poll_seconds: float = 0.2,
        max_range: int = MAX_RANGE,
    ) -> None:
        self.model = model
        self.node = node
        self.poll_seconds = poll_seconds
        self.max_range = max_range
        self._range = max_range
        self._listeners: list[Callable[[list[IndexedEvent]], Any]] = []
        self._directory_listeners: list[Callable[[list[Member]], Any]] = []
        self._advanced = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        """Why the indexer stopped (a :class:`ChainMismatch`), or None while it runs."""
        self.head: int | None = None
        """The finalized head last seen."""

    # -- listeners and waiting ------------------------------------------------------------

    def add_listener(self, fn: Callable[[list[IndexedEvent]], Any]) -> None:
        """Call ``fn(events)`` (sync or async) after each committed range that has cargo events."""
        self._listeners.append(fn)

    def add_directory_listener(self, fn: Callable[[list[Member]], Any]) -> None:
        """Call ``fn(members)`` (sync or async) after each committed range that changed
        directory records, with the members' new records."""
        self._directory_listeners.append(fn)

    def wake(self, *_: Any) -> None:
        """Look for new blocks now instead of at the end of the current poll pause.

        Takes and ignores any arguments, so it can be a submitter listener as it is.
        """
        self._wake.set()

    @property
    def block(self) -> int:
        """The last indexed block (-1 before genesis is indexed)."""
        cursor = self.model.cursor()
        return -1 if cursor is None else cursor.block

    async def wait_for_block(self, number: int, timeout: float) -> bool:
        """Wait until block ``number`` is indexed; False if ``timeout`` seconds pass first.

        Raises
        ------
        IndexerError
            The indexer has stopped on a failure.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.failure is not None:
                raise IndexerError(f"the indexer stopped: {self.failure}") from self.failure
            if self.block >= number:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._advanced.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), min(left, 0.5))

    async def _notify(self, result: RangeResult) -> None:
        self._advanced.set()
        calls: list[tuple[Callable[[Any], Any], list[Any]]] = []
        if result.members:
            calls += [(fn, list(result.members)) for fn in self._directory_listeners]
        if result.events:
            calls += [(fn, list(result.events)) for fn in self._listeners]
        for fn, items in calls:
            try:
                outcome = fn(items)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("indexer listener %r failed", fn)

    # -- node reads ----------------------------------------------------------------------

    async def _block(self, tag: int | str) -> dict[str, Any]:
        number = hex(tag) if isinstance(tag, int) else tag
        block: dict[str, Any] | None = await self.node.request(
            "eth_getBlockByNumber", [number, False]
        )
        if block is None:
            raise IndexerError(f"the node has no block {tag}")
        return block

    async def finalized_head(self) -> int:
        """The node's finalized block number."""
        return _int((await self._block("finalized"))["number"])

    async def _call(self, contract: str, function: str, *args: Any, block: int) -> tuple[Any, ...]:
        data = abi.call_data(contract, function, *args)
        result = await self.node.request(
            "eth_call", [{"to": abi.address(contract), "data": "0x" + data.hex()}, hex(block)]
        )
        return abi.decode_output(contract, function, _bytes(result))

    async def _member(self, org_id: int, block: int) -> Member:
        ((name, roles, key, active, _validators),) = await self._call(
            "Consortium", "organisation", org_id, block=block
        )
        (accounts,) = await self._call("Consortium", "accountsOf", org_id, block=block)
        return Member(
            org_id=org_id,
            name=name,
            roles=roles,
            encryption_key=bytes(key),
            active=bool(active),
            accounts=tuple(to_checksum_address(a) for a in accounts),
        )

    async def _logs(self, first: int, last: int) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = await self.node.request(
            "eth_getLogs",
            [{"fromBlock": hex(first), "toBlock": hex(last), "address": list(_ADDRESSES)}],
        )
        return logs

    # -- one range ------------------------------------------------------------------------

    async def _genesis(self) -> tuple[list[Change], Cursor]:
        block = await self._block(0)
        (count,) = await self._call("Consortium", "org_count", block=0)
        changes: list[Change] = [
            MemberChange(await self._member(i, 0)) for i in range(1, count + 1)
        ]
        return changes, Cursor(0, _bytes(block["hash"]))

    async def step(self, head: int | None = None) -> RangeResult | None:
        """Index the next range up to ``head`` (the finalized head by default).

        Returns
        -------
        RangeResult or None
            What was committed, or None when already at the head.

        Raises
        ------
        ChainMismatch
            The chain changed under the cursor.
        CursorMoved
            Another indexer committed this range first (call again).
        """
        cursor = self.model.cursor()
        if cursor is None:
            changes, new = await self._genesis()
            await asyncio.to_thread(self.model.apply, changes, new, None)
            orgs = tuple(c.member for c in changes if isinstance(c, MemberChange))
            return RangeResult(new, (), len(changes), orgs)
        if head is None:
            head = await self.finalized_head()
        self.head = head
        if head <= cursor.block:
            return None
        first = cursor.block + 1
        while True:
            last = min(head, first + self._range - 1)
            try:
                logs = await self._logs(first, last)
                break
            except Exception as exc:
                if getattr(exc, "code", None) == LIMIT_EXCEEDED and self._range > 1:
                    self._range = max(1, self._range // 2)
                    continue
                raise
        logs.sort(key=_log_key)
        numbers = sorted({first, last} | {_int(e["blockNumber"]) for e in logs})
        headers = dict(zip(numbers, await asyncio.gather(*(self._block(n) for n in numbers)),
                           strict=True))
        # One check covers the block at the cursor too: its hash is the next block's parent.
        if _bytes(headers[first]["parentHash"]) != cursor.block_hash:
            raise ChainMismatch(
                f"block #{cursor.block} on the chain is {headers[first]['parentHash']} (the "
                f"parent of #{first}), the read model indexed 0x{cursor.block_hash.hex()}: the "
                "node follows another chain; rebuild the read model if the chain was reset"
            )
        changes, events = await self._changes(logs, headers)
        new = Cursor(last, _bytes(headers[last]["hash"]))
        await asyncio.to_thread(self.model.apply, changes, new, cursor)
        if self._range < self.max_range:
            self._range = min(self.max_range, self._range * 2)
        members = tuple(c.member for c in changes if isinstance(c, MemberChange))
        return RangeResult(new, tuple(events), len(changes), members)

    async def _changes(
        self, logs: list[dict[str, Any]], headers: dict[int, dict[str, Any]]
    ) -> tuple[list[Change], list[IndexedEvent]]:
        changes: list[Change] = []
        events: list[IndexedEvent] = []
        org_reads: dict[tuple[int, int], int] = {}  # (block, org) -> position in changes
        for entry in logs:
            number = _int(entry["blockNumber"])
            header = headers[number]
            if entry.get("blockHash") and _bytes(entry["blockHash"]) != _bytes(header["hash"]):
                raise ChainMismatch(f"a log of block #{number} names another block hash")
            contract = _ADDRESSES.get(entry["address"].lower())
            topics = [_bytes(t) for t in entry["topics"]]
            data = _bytes(entry["data"])
            block_time = _int(header["timestamp"])
            if contract == "CargoLedger" and topics and topics[0] == CARGO_EVENT_TOPIC:
                event = _cargo_event(entry, topics, data, number, block_time)
                events.append(event)
                changes.append(EventAdded(event))
                continue
            if contract is None:
                continue
            decoded = abi.decode_log(contract, topics, data)
            if decoded is None:
                continue
            name, values = decoded
            if contract == "Consortium":
                if name in _ORG_EVENTS and (number, values["org"]) not in org_reads:
                    org_reads[(number, values["org"])] = len(changes)
                    changes.append(MemberChange(await self._member(values["org"], number)))
                continue
            change = _change(contract, name, values, number, _int(entry["logIndex"]), block_time)
            if change is not None:
                changes.append(change)
        return changes, events

    # -- the loop -------------------------------------------------------------------------

    async def catch_up(self, head: int | None = None, progress: Callable[[int, int], None] | None = None) -> Cursor:
        """Index ranges until the cursor reaches ``head`` (the finalized head by default)."""
        if head is None:
            head = await self.finalized_head()
        while True:
            try:
                result = await self.step(head)
            except CursorMoved:
                continue
            cursor = self.model.cursor()
            assert cursor is not None
            if progress is not None:
                progress(cursor.block, head)
            if result is None:
                return cursor
            await self._notify(result)

    async def run(self) -> None:
        """Follow the chain until cancelled; stops (and records why) on a chain mismatch."""
        backoff = self.poll_seconds
        while True:
            try:
                result = await self.step()
                backoff = self.poll_seconds
            except ChainMismatch as exc:
                self.failure = exc
                self._advanced.set()
                log.critical("indexer stopped: %s", exc)
                return
            except CursorMoved:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # node down, bad answer: retry with a bounded backoff
                log.warning("indexer: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if result is None:
                # A wake-up that came while the step ran is still set: the pause ends at once.
                # Cleared after the pause, so one that comes during the next step is kept too.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                self._wake.clear()
            else:
                await self._notify(result)

    def start(self) -> None:
        """Start :meth:`run` as a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="indexer")

    async def stop(self) -> None:
        """Cancel the background task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _cargo_event(
    entry: dict[str, Any], topics: list[bytes], data: bytes, number: int, block_time: int
) -> IndexedEvent:
    cargo = decode_event_log(topics, data)
    try:
        info = confidential.envelope_info(cargo.payload)
        readers, key_version, by_reference = info.readers, info.key_version, info.reference_readable
    except (confidential.EnvelopeError, ValueError):
        readers, key_version, by_reference = (), 0, False
    return IndexedEvent(
        event_id=cargo.event_id,
        block=number,
        tx_hash=_bytes(entry["transactionHash"]),
        log_index=_int(entry["logIndex"]),
        block_time=block_time,
        publisher=cargo.publisher,
        subject=cargo.subject,
        type_code=cargo.event_type,
        classifier=cargo.classifier,
        event_time=cargo.event_time,
        location=cargo.location,
        retracts=cargo.retracts,
        payload_hash=cargo.payload_hash,
        envelope=cargo.payload,
        key_version=key_version,
        readers=tuple(readers),
        reference_readable=by_reference,
    )


def _change(
    contract: str, name: str, v: dict[str, Any], number: int, log_index: int, block_time: int
) -> Change | None:
    """A read-model change from a decoded ABI log (None: nothing to store)."""
    match contract, name:
        case "BillOfLading", "MasterRegistered" | "ContainersAdded":
            return MasterContainers(
                v["master"], v["carrier"], tuple(bytes(c) for c in v["containers"]), number
            )
        case "BillOfLading", "HouseLinked" | "HouseCorrected":
            return HouseChange(
                v["house"], v["master"], v["forwarder"],
                tuple(bytes(c) for c in v["containers"]), number,
            )
        case "BillOfLading", "HouseUnlinked":
            return HouseChange(v["house"], v["master"], v["forwarder"], None, number)
        case "AccessGrants", "AccessGranted":
            return GrantChange(
                Grant(v["owner"], v["scope"], bytes(v["target"]), v["reader"], v["expiry"],
                      bytes(v["wrapped_key"]), number, True)
            )
        case "AccessGrants", "AccessRevoked":
            return GrantChange(
                Grant(v["owner"], v["scope"], bytes(v["target"]), v["reader"], 0, b"", number,
                      False)
            )
        case "AccessGrants", "ReferenceReadableSet":
            return ReferenceFlag(v["event_id"], bool(v["readable"]))
        case "Anchors", "Anchored":
            return AnchorAdded(
                Anchor(v["anchor"], v["publisher"], v["kind"], bytes(v["root"]), v["count"],
                       v["start"], v["end"], number)
            )
        case "Declarations", "DeclarationFiled":
            return DeclarationFiled(
                bytes(v["declaration"]), v["declarant"], v["authority"],
                bytes(v["document_hash"]), number, block_time,
            )
        case "Declarations", "StatusPosted":
            return DeclarationStatus(
                bytes(v["declaration"]), v["org"], v["status"], bytes(v["note_hash"]), number,
                log_index, block_time,
            )
    return None


# -- app wiring --------------------------------------------------------------------------------



async def _indexer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    node = app.get(appkeys.NODE)
    if node is None or not config.background_tasks:
        yield  # no node configured, or another worker process runs the background work
        return
    indexer = Indexer(app[READ_MODEL], node, poll_seconds=config.indexer_poll_ms / 1000)
    app[INDEXER] = indexer
    submitter = app.get(SUBMITTER)
    if submitter is not None:
        # The gateway's own uploads are indexed as soon as they are final, and a reader's
        # changed encryption key is read again before the next batch is sealed for it.
        submitter.add_listener(indexer.wake)
        indexer.add_directory_listener(
            lambda orgs: submitter.forget_reader_keys(o.org_id for o in orgs)
        )
    indexer.start()
    try:
        yield
    finally:
        await indexer.stop()


def setup(app: web.Application) -> None:
    """Run the indexer in the background for the app's lifetime (``app[INDEXER]``).

    It runs only when the gateway has node URLs and this process runs the background work
    (``config.background_tasks``); the node client is created by :func:`gateway.nodeclient.setup`
    (idempotent). When the app has a submitter (:data:`gateway.appkeys.SUBMITTER`), the two are
    wired together: the submitter wakes the indexer when operations turn final, and the indexer
    tells the submitter which organisations' directory records changed.
    """
    nodeclient.setup(app)
    app.cleanup_ctx.append(_indexer_ctx)


# -- rebuild -----------------------------------------------------------------------------------


async def rebuild_with(model: ReadModel, node: RpcClient, *, quiet: bool = False) -> Cursor:
    """Drop ``model``'s chain-derived rows and index from genesis to the finalized head."""
    # rich (the progress bar) is needed by this command only, not by the gateway's start-up
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    await asyncio.to_thread(model.reset)
    indexer = Indexer(model, node)
    head = await indexer.finalized_head()
    events = 0

    def count(batch: list[IndexedEvent]) -> None:
        nonlocal events
        events += len(batch)

    indexer.add_listener(count)
    with Progress(
        TextColumn("[bold]rebuilding read model"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks · {task.fields[events]} events"),
        TimeElapsedColumn(),
        disable=quiet,
    ) as bar:
        task = bar.add_task("rebuild", total=max(head, 1), events=0)

        def progress(block: int, _head: int) -> None:
            bar.update(task, completed=block, events=events)

        cursor = await indexer.catch_up(head, progress)
        bar.update(task, completed=max(head, 1), events=events)
    return cursor


async def rebuild(
    config: GatewayConfig, *, quiet: bool = False, node: RpcClient | None = None
) -> Cursor:
    """The ``rebuild`` command: re-index ``config``'s read model from genesis (progress bar).

    Run it while the gateway is stopped (``asyncio.run(rebuild(config))``); the access log and
    the known references survive, everything derived from the chain is indexed again.

    Parameters
    ----------
    config
        The gateway configuration (its data directory and node URLs).
    quiet
        No progress bar.
    node
        A JSON-RPC client; by default a :class:`gateway.nodeclient.NodeClient` on
        ``config.node_urls``.

    Returns
    -------
    Cursor
        The block the read model now reaches.
    """
    own = None
    if node is None:
        if not config.node_urls:
            raise IndexerError("rebuild needs node_urls in the configuration")
        node = own = nodeclient.NodeClient(list(config.node_urls))
    model = open_read_model(config)
    try:
        return await rebuild_with(model, node, quiet=quiet)
    finally:
        model.close()
        if own is not None:
            await own.close()
