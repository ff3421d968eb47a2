"""The submitter: from accepted operations to final on-chain records, exactly once.

The design (the write path: outbox and submitter) is in ``docs/write-path.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from contracts import SYSTEM_ADDRESSES
from contracts.cargo import CARGO_EVENT_TOPIC, MAX_BATCH_EVENTS, RECORD_SELECTOR, encode_event
from gateway import nodeclient
from gateway.appkeys import CONFIG, KEYSTORE, NODE, OUTBOX, SUBMITTER
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import Keystore, OrgKeys
from gateway.events import model as events
from gateway.nodeclient import NodeClient, NodeUnavailable, RpcError
from gateway.writepath.operations import PendingOp, Receipt, TxRecord
from gateway.writepath.outbox import Outbox

log = logging.getLogger("portledger.gateway.submitter")

#: Largest calldata of one ``record()`` transaction (nodes refuse transactions over 128 KiB).
MAX_CALLDATA = 120_000

#: Events sealed first when building a transaction (then as many as still fit).
SEAL_FIRST = 32
#: Gas of a transaction's fixed part (intrinsic 21 000, role lookup, two storage words, margin).
GAS_FIXED = 120_000
#: Gas per calldata byte: the Prague calldata floor (40 per non-zero byte) plus LOG data (8).
GAS_PER_BYTE = 48
#: Gas per event on top of its bytes: LOG4 topics, the event loop's instructions, margin.
GAS_PER_EVENT = 6_000
#: Gas of a ``call`` operation when estimation fails (it reverts on chain with its reason).
CALL_GAS_FALLBACK = 8_000_000

Listener = Callable[[list[Receipt]], Any]


class SubmitterError(Exception):
    """The submitter cannot do what it was asked (no node configured, unknown operation)."""


def record_gas(event_bytes: list[int]) -> int:
    """A gas limit that covers a ``record()`` of events of these encoded sizes.

    Deliberately generous (gas is free on this network; only the block gas limit bounds it):
    calldata at the floor price for non-zero bytes, LOG data per byte, a per-event and a fixed
    part; see BENCHMARKS.md (about 5 200 gas per 96-byte event at 100 per call).
    """
    total = sum(event_bytes)
    return GAS_FIXED + GAS_PER_BYTE * (total + 4) + GAS_PER_EVENT * len(event_bytes)


#: The node's JSON-RPC "limit exceeded" (docs/limits.md: pool full, too much work queued, a
#: sender's window): the node takes the transaction later, so it is sent again, never failed.
LIMIT_EXCEEDED = -32005


def _message(exc: RpcError) -> str:
    return exc.message.lower()


class Submitter:
    """Batches, seals, signs, sends and follows the outbox's operations (module docstring).

    Parameters
    ----------
    outbox
        The outbox to drain.
    node
        Client of the configured nodes.
    keystore
        Keys of the organisations (the outbox's org ids are keystore ids).
    chain_id
        Chain id to sign for; 0 asks the node.
    batch_max_events
        Most events per ``record()``.
    batch_window_ms
        Least time between an organisation's in-flight transaction and a partial batch after it
        (with nothing in flight a partial batch goes at once).
    max_in_flight
        Most unfinished transactions per organisation.
    resend_after
        Seconds without a receipt after which a live transaction is sent again.
    reader_key_ttl
        Seconds a reader organisation's encryption key is used before it is read again.
    """

    def __init__(
        self,
        outbox: Outbox,
        node: NodeClient,
        keystore: Keystore,
        *,
        chain_id: int = 0,
        batch_max_events: int = 500,
        batch_window_ms: int = 100,
        max_in_flight: int = 4,
        resend_after: float = 2.0,
        reader_key_ttl: float = 300.0,
    ) -> None:
        self.outbox = outbox
        self.node = node
        self.keystore = keystore
        self.chain_id = chain_id
        self.batch_max_events = max(1, min(batch_max_events, MAX_BATCH_EVENTS))
        self.batch_window = batch_window_ms / 1000
        self.max_in_flight = max(1, max_in_flight)
        self.resend_after = resend_after
        self._listeners: list[Listener] = []
        self._waiters: dict[tuple[int, str], list[asyncio.Future[Receipt]]] = {}
        self.reader_key_ttl = reader_key_ttl
        self._reader_keys: dict[int, tuple[bytes, float]] = {}  # org -> (key, monotonic read)
        self._wake = asyncio.Event()
        self._due = math.inf  # Unix time a deferred partial batch becomes due
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.errors = 0
        """Passes that ended in an error (node unavailable or unexpected); for metrics."""

    # -- listeners and waiting --------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(receipts)`` (sync or async) whenever operations turn final or failed."""
        self._listeners.append(fn)

    async def wait_final(self, org_id: int, key: str, timeout: float) -> Receipt:
        """Wait until an operation is final or failed; its receipt.

        Returns the operation's current receipt (``accepted`` or ``sent``) if ``timeout``
        seconds pass first.

        Raises
        ------
        KeyError
            The organisation has no operation with that key.
        """
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.outbox.status(org_id, key)
            if receipt is None:
                raise KeyError(key)
            left = deadline - time.monotonic()
            if receipt.status in ("final", "failed") or left <= 0:
                return receipt
            future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault((org_id, key), []).append(future)
            try:
                # Re-read at least twice a second: another process may settle it.
                await asyncio.wait_for(asyncio.shield(future), min(left, 0.5))
            except TimeoutError:
                pass
            finally:
                waiting = self._waiters.get((org_id, key), [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self._waiters.pop((org_id, key), None)

    async def _notify(self, receipts: list[Receipt]) -> None:
        if not receipts:
            return
        for receipt in receipts:
            org = self.outbox.org_of(receipt.op_id)
            for future in self._waiters.pop((org, receipt.idempotency_key), []) if org else []:
                if not future.done():
                    future.set_result(receipt)
        for fn in list(self._listeners):
            try:
                result = fn(receipts)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("submitter listener %r failed", fn)

    def forget_reader_keys(self, org_ids: Iterable[int] | None = None) -> None:
        """Read these organisations' encryption keys from the chain again (all if None).

        Called with the organisations whose directory record changed (the indexer's directory
        listener): a rotated key is used from the next batch on.
        """
        if org_ids is None:
            self._reader_keys.clear()
            return
        for org in org_ids:
            self._reader_keys.pop(org, None)

    async def _reader_keys_of(self, wanted: set[int]) -> dict[int, bytes]:
        """The current encryption keys of ``wanted`` readers (absent: no member, or no key)."""
        now = time.monotonic()
        found = {
            r: cached[0] for r in wanted
            if (cached := self._reader_keys.get(r)) is not None
            and now - cached[1] < self.reader_key_ttl
        }  # fmt: skip
        # The answer is built from what this call read, never from the shared cache after an
        # await: the indexer's directory listener may forget keys meanwhile (it does while it
        # catches up at start-up), which once made a key just read look absent.
        for chain_org in sorted(wanted - found.keys()):
            (key,) = await self.node.call("Consortium", "encryptionKeyOf", chain_org)
            if bytes(key) != bytes(32):
                found[chain_org] = bytes(key)
                self._reader_keys[chain_org] = (bytes(key), now)
            else:
                self._reader_keys.pop(chain_org, None)
        return found

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background task."""
        if self._task is None:
            self._stopping = False
            self.outbox.add_wakeup(self._wake)
            self._task = asyncio.create_task(self.run(), name="submitter")

    async def stop(self) -> None:
        """Stop the background task (whatever is persisted resumes at the next start)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Work until stopped: a pass over every organisation with work, then a short wait."""
        backoff = 0.25
        while not self._stopping:
            self._wake.clear()
            self._due = math.inf
            try:
                busy = await self.step()
                backoff = 0.25
            except NodeUnavailable as exc:
                self.errors += 1
                log.warning("no node answers; retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                self.errors += 1
                log.exception("submitter pass failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            # Idle, the outbox's wake-up ends the wait at once for work accepted in this
            # process; 0.1 s bounds the delay of work an extra API worker process accepted.
            pause = min(0.05 if busy else 0.1, max(0.0, self._due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def step(self) -> bool:
        """One pass over every organisation with work; True if anything is still in progress."""
        busy = False
        for org_id in self.outbox.orgs_with_work():
            try:
                keys = self.keystore.get(org_id)
            except KeyError:
                log.error("organisation %s has operations but no keys in the keystore", org_id)
                continue
            busy |= await self._org_step(org_id, keys)
        return busy

    # -- one organisation ---------------------------------------------------------------------
    async def _org_step(self, org_id: int, keys: OrgKeys) -> bool:
        await self._follow(self.outbox.live_txs(org_id), keys)
        live = self.outbox.live_txs(org_id)
        in_flight = len(live)
        newest = max((tx.created_at for tx in live), default=None)
        while in_flight < self.max_in_flight:
            tx = await self._build(org_id, keys, newest_in_flight=newest)
            if tx is None:
                break
            in_flight += 1
            newest = tx.created_at
            await self._send(tx, keys)
        return in_flight > 0 or bool(self.outbox.pending(org_id, 1))

    async def _follow(self, live: list[TxRecord], keys: OrgKeys) -> None:
        """Settle the live transactions that have a receipt (asked in one JSON-RPC batch);
        resend those that waited :attr:`resend_after` without one."""
        if not live:
            return
        answers = await self.node.batch(
            [("eth_getTransactionReceipt", [tx.tx_hash]) for tx in live]
        )
        for tx, receipt in zip(live, answers, strict=True):
            if isinstance(receipt, RpcError):
                log.warning("receipt of tx %s not answered: %s", tx.tx_hash, receipt)
            elif receipt:
                await self._settle(tx, receipt, keys)
            elif tx.sent_at is None or time.time() - tx.sent_at >= self.resend_after:
                await self._send(tx, keys)

    async def _send(self, tx: TxRecord, keys: OrgKeys) -> None:
        """Send the persisted bytes (again); classify what the node said."""
        try:
            await self.node.send_raw(tx.raw)
        except NodeUnavailable:
            # Unknown outcome: a node may hold it now. Resent later; raised to back off.
            self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=True)
            raise
        except RpcError as exc:
            text = _message(exc)
            if "nonce too low" in text:
                self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=tx.maybe_sent)
                await self._nonce_taken(tx, keys)
            elif "already known" in text or "known transaction" in text:
                self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=True)
            elif exc.code == LIMIT_EXCEEDED or any(
                s in text for s in ("pool is full", "too far ahead", "underpriced")
            ):
                self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=tx.maybe_sent)
                log.warning("node deferred tx %s (nonce %s): %s", tx.tx_hash, tx.nonce, exc)
            elif not tx.maybe_sent:
                await self._rejected(tx, exc.message)
            else:
                self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=True)
                log.warning("node refused tx %s that a node may hold: %s", tx.tx_hash, exc)
            return
        self.outbox.mark_send_attempt(tx.tx_id, maybe_sent=True)

    async def _nonce_taken(self, tx: TxRecord, keys: OrgKeys) -> None:
        """The node says the nonce is used: by this transaction (settle) or another (drop)."""
        answers = await self.node.batch(
            [
                ("eth_getTransactionCount", [keys.address, "latest"]),
                ("eth_getTransactionReceipt", [tx.tx_hash]),
            ]
        )
        mined, receipt = answers
        if isinstance(mined, RpcError) or isinstance(receipt, RpcError):
            return
        if receipt:
            await self._settle(tx, receipt, keys)
        elif int(mined, 16) > tx.nonce:
            log.error(
                "nonce %s of %s was taken by another transaction; %d operations go again",
                tx.nonce, keys.address, len(tx.op_ids),
            )  # fmt: skip
            limits = self.outbox.batch_limits(tx.op_ids)
            self.outbox.finish_tx(
                tx.tx_id, status="dropped", error="nonce taken by another transaction",
                requeue=limits,
            )  # fmt: skip

    async def _rejected(self, tx: TxRecord, reason: str) -> None:
        """A transaction no node ever took was refused: free its nonce; fail or bisect."""
        log.warning("tx %s (nonce %s) refused: %s", tx.tx_hash, tx.nonce, reason)
        if tx.kind == "record" and len(tx.op_ids) > 1:
            half = math.ceil(len(tx.op_ids) / 2)
            self.outbox.finish_tx(
                tx.tx_id, status="rejected", error=reason,
                requeue=dict.fromkeys(tx.op_ids, half),
            )  # fmt: skip
            return
        done = self.outbox.finish_tx(
            tx.tx_id, status="rejected", error=reason,
            failed=dict.fromkeys(tx.op_ids, f"refused by the node: {reason}"),
        )  # fmt: skip
        await self._notify(done)

    async def _settle(self, tx: TxRecord, receipt: dict[str, Any], keys: OrgKeys) -> None:
        block = int(receipt["blockNumber"], 16)
        if int(receipt.get("status", "0x0"), 16) == 1:
            if tx.kind == "record":
                ids = [
                    int(entry["topics"][3], 16)
                    for entry in receipt.get("logs", [])
                    if entry.get("topics")
                    and bytes.fromhex(entry["topics"][0][2:]) == CARGO_EVENT_TOPIC
                ]
                if len(ids) != len(tx.op_ids):
                    raise SubmitterError(
                        f"tx {tx.tx_hash} logged {len(ids)} cargo events for {len(tx.op_ids)}"
                    )
                final: dict[int, int | None] = dict(zip(tx.op_ids, ids, strict=True))
            else:
                final = dict.fromkeys(tx.op_ids)
            done = self.outbox.finish_tx(tx.tx_id, status="mined", block=block, final=final)
            await self._notify(done)
            return
        if tx.kind == "record" and len(tx.op_ids) > 1:
            half = math.ceil(len(tx.op_ids) / 2)
            log.warning("batch tx %s of %d events reverted; bisecting", tx.tx_hash, len(tx.op_ids))
            self.outbox.finish_tx(
                tx.tx_id, status="reverted", block=block, error="reverted",
                requeue=dict.fromkeys(tx.op_ids, half),
            )  # fmt: skip
            return
        reason = await self._revert_reason(tx, keys, block, receipt)
        done = self.outbox.finish_tx(
            tx.tx_id, status="reverted", block=block, error=reason,
            failed=dict.fromkeys(tx.op_ids, reason),
        )  # fmt: skip
        await self._notify(done)

    async def _revert_reason(
        self, tx: TxRecord, keys: OrgKeys, block: int, receipt: dict[str, Any]
    ) -> str:
        """Replay a reverted transaction with ``eth_call`` on the state before its block."""
        decoded = TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()
        gas_used = int(receipt.get("gasUsed", "0x0"), 16)
        if gas_used >= int(decoded["gas"]):
            return "reverted: out of gas"
        to = to_checksum_address(bytes(decoded["to"]))
        for tag in (block - 1, "latest"):
            try:
                await self.node.eth_call(to, bytes(decoded["data"]), sender=keys.address, block=tag)
            except RpcError as exc:
                return exc.message
            except NodeUnavailable:
                break
        return "reverted (no reason given)"

    # -- building a transaction --------------------------------------------------------------
    async def _build(
        self, org_id: int, keys: OrgKeys, *, newest_in_flight: float | None = None
    ) -> TxRecord | None:
        """Seal, sign and persist the organisation's next transaction; None if none is due.

        ``newest_in_flight`` is the creation time (Unix) of its newest transaction on its way,
        None if there is none: a partial batch goes at once when there is none or it is at
        least one window old, and waits otherwise.
        """
        pending = self.outbox.pending(org_id, self.batch_max_events + 1)
        if not pending:
            return None
        if pending[0].kind == "call":
            op = pending[0]
            gas = await self._call_gas(op, keys)
            return await self._sign_and_persist(org_id, keys, "call", op.to, op.data, gas, [op])
        run: list[PendingOp] = []
        cap = self.batch_max_events
        closed = False
        for op in pending:
            if op.kind != "event":
                closed = True
                break
            if op.batch_limit:
                cap = min(cap, op.batch_limit)
            if len(run) >= cap:
                closed = True
                break
            run.append(op)
        if len(run) >= cap:
            closed = True
        if (
            not closed
            and newest_in_flight is not None
            and time.time() - newest_in_flight < self.batch_window
        ):
            # One partial batch per window: collect more events meanwhile (the run loop wakes
            # when the window ends).
            self._due = min(self._due, newest_in_flight + self.batch_window)
            return None
        chosen: list[PendingOp] = []
        encoded: list[bytes] = []
        size = 4
        start, step, full = 0, SEAL_FIRST, False
        # Seal only what fits: a chunk first, then as many as the average size says still fit
        # (and one more, to see the transaction is full). Sealing all of a run whose sealed
        # events outgrow MAX_CALLDATA threw most of the work away (large details: an EDIFACT
        # container's event seals to ~850 bytes, 140 a transaction, not 500).
        while start < len(run) and not full:
            part = run[start:start + step]
            start += len(part)
            sealed, failures = await self._seal(part, keys)
            if failures:
                await self._notify(self.outbox.fail_unsent(failures))
            for op, data in sealed:
                if chosen and size + len(data) > MAX_CALLDATA:
                    full = True
                    break
                chosen.append(op)
                encoded.append(data)
                size += len(data)
            if chosen:
                room = (MAX_CALLDATA - size) * len(chosen) // (size - 4)
                step = max(1, room + 1)
        if not chosen:
            return None
        calldata = encode_record_call_from_encoded(encoded)
        gas = record_gas([len(e) for e in encoded])
        to = to_checksum_address(SYSTEM_ADDRESSES["CargoLedger"])
        return await self._sign_and_persist(org_id, keys, "record", to, calldata, gas, chosen)

    async def _call_gas(self, op: PendingOp, keys: OrgKeys) -> int:
        try:
            estimate = int(
                await self.node.request(
                    "eth_estimateGas",
                    [{"from": keys.address, "to": op.to, "data": "0x" + op.data.hex()}],
                ),
                16,
            )
        except RpcError:
            return CALL_GAS_FALLBACK
        return min(max(estimate * 2, 200_000), 15_000_000)

    async def _seal(
        self, run: list[PendingOp], keys: OrgKeys
    ) -> tuple[list[tuple[PendingOp, bytes]], dict[int, str]]:
        """Seal and encode the events (in a thread); failures by op id."""
        failures: dict[int, str] = {}
        wanted = {r for op in run if op.event for r in op.event.visibility.readers}
        reader_keys = await self._reader_keys_of(wanted)
        readers_of: dict[int, dict[int, bytes]] = {}
        for op in run:
            assert op.event is not None
            unknown = [r for r in op.event.visibility.readers if r not in reader_keys]
            if unknown:
                failures[op.op_id] = (
                    f"named reader organisation(s) {unknown} are not members with an "
                    "encryption key on chain"
                )
                continue
            readers_of[op.op_id] = {r: reader_keys[r] for r in op.event.visibility.readers}

        def work() -> list[tuple[PendingOp, bytes]]:
            out = []
            for op in run:
                if op.op_id in failures:
                    continue
                ev = op.event
                assert ev is not None
                try:
                    sealed = confidential.seal(
                        events.plaintext(ev),
                        subject=ev.subject.key,
                        owner_secret=keys.master_secret,
                        key_version=op.key_version,
                        readers=readers_of[op.op_id],
                        reference=ev.subject.value if ev.visibility.mode == "reference" else None,
                    )
                    data = encode_event(events.to_cargo_input(ev, sealed.envelope,
                                                              sealed.payload_hash))
                except ValueError as exc:
                    failures[op.op_id] = f"cannot seal the event: {exc}"
                    continue
                out.append((op, data))
            return out

        sealed = await asyncio.to_thread(work)
        return sealed, failures

    async def _sign_and_persist(
        self,
        org_id: int,
        keys: OrgKeys,
        kind: str,
        to: str,
        data: bytes,
        gas: int,
        ops: list[PendingOp],
    ) -> TxRecord:
        chain_id = self.chain_id or await self.node.chain_id()
        nonce = await self._next_nonce(keys.address)
        signed = Account.sign_transaction(
            {
                "type": 2,
                "chainId": chain_id,
                "nonce": nonce,
                "to": to,
                "value": 0,
                "gas": gas,
                "maxFeePerGas": 0,
                "maxPriorityFeePerGas": 0,
                "data": data,
            },
            keys.signing_key,
        )
        raw = bytes(signed.raw_transaction)
        tx_hash = "0x" + bytes(signed.hash).hex()
        return self.outbox.persist_tx(
            org_id=org_id, sender=keys.address, nonce=nonce, tx_hash=tx_hash, raw=raw,
            kind=kind, op_ids=[op.op_id for op in ops],
        )  # fmt: skip

    async def _next_nonce(self, sender: str) -> int:
        """Smallest nonce at/above the mined count that no persisted transaction holds."""
        if self.outbox.max_nonce(sender) is None:
            start = await self.node.nonce(sender, "pending")
        else:
            start = await self.node.nonce(sender, "latest")
        used = self.outbox.used_nonces(sender, start)
        nonce = start
        while nonce in used:
            nonce += 1
        return nonce


def encode_record_call_from_encoded(encoded: list[bytes]) -> bytes:
    """``record()`` calldata from already packed events (:func:`contracts.cargo.encode_event`)."""
    if not 1 <= len(encoded) <= MAX_BATCH_EVENTS:
        raise ValueError(f"a batch carries 1 to {MAX_BATCH_EVENTS} events")
    return RECORD_SELECTOR + b"".join(encoded)




def setup(app: web.Application) -> None:
    """Create the node client and the submitter; run the submitter while the app runs.

    Without ``config.node_urls`` there is no chain to write to: the outbox still accepts (and
    keeps) operations, and no submitter runs. Nor does one run in an extra API worker process
    (``config.background_tasks`` off): one process signs for an organisation, or two would race
    for its nonces.
    """
    nodeclient.setup(app)
    config = app[CONFIG]
    if NODE not in app:
        log.warning("no node_urls configured: accepted operations wait in the outbox")
        return
    if not config.background_tasks:
        return
    submitter = Submitter(
        app[OUTBOX], app[NODE], app[KEYSTORE],
        chain_id=config.chain_id,
        batch_max_events=config.batch_max_events,
        batch_window_ms=config.batch_window_ms,
        max_in_flight=config.max_in_flight_txs,
    )  # fmt: skip
    app[SUBMITTER] = submitter

    async def submitter_ctx(app: web.Application) -> Any:
        await submitter.start()
        yield
        await submitter.stop()

    app.cleanup_ctx.append(submitter_ctx)


__all__ = [
    "SUBMITTER",
    "Listener",
    "Submitter",
    "SubmitterError",
    "record_gas",
]
