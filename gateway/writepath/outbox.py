"""The durable outbox: what the gateway promised to put on chain, and how far each promise got.

An upload is answered 2xx only after its operations are committed here (SQLite, WAL,
``synchronous=FULL``: the commit is on disk before :meth:`Outbox.accept` returns). From then on
the submitter (:mod:`gateway.writepath.submitter`) owns them: it batches, seals, signs and sends
them, and records every step in the same database, so a gateway killed at any instant resumes exactly
where it was.

Back-pressure: the outbox holds at most ``max_depth_per_org`` unsettled operations (accepted or
sent, not yet final or failed) of one organisation and ``max_depth`` in all, and in all no more
than ``max_wait`` seconds of work at the rate it drains (so a backlog left by an overload is
gone within about that time: what bounds the recovery). An upload that would go over any of
them is refused whole with :class:`OutboxFull` (429 ``outbox-full``) and a
``Retry-After`` from the rate the outbox drained over the last :data:`DRAIN_WINDOW` seconds,
so a gateway offered more than the chain finalizes answers "later" instead of promising work it
cannot finish soon (docs/limits.md, "Gateway"). An upload always fits an empty queue (a bulk
upload larger than the limit is not refused forever), so a depth may exceed its limit by at most
one upload. Retries of accepted keys are never refused by that exact check; but once a queue is
already at its limit, :func:`admission_check` refuses uploads before their body is even read
(so that refusals under overload cost no parsing), retries included.

The design (the write path: outbox and submitter) is in ``docs/write-path.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import errors, ops, sqlite
from gateway.appkeys import CONFIG, KEYSTORE, METRICS, OUTBOX
from gateway.confidential.keystore import Keystore
from gateway.principal import Principal
from gateway.writepath.operations import (
    Operation,
    PendingOp,
    Receipt,
    TxRecord,
    canonical_bytes,
    check,
    stored_event,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    op_id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    idem_key TEXT NOT NULL,
    content_hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    body_nonce BLOB,
    to_addr TEXT NOT NULL DEFAULT '',
    revokes_subject BLOB,
    key_version INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'accepted',
    batch_limit INTEGER NOT NULL DEFAULT 0,
    tx_id INTEGER,
    tx_index INTEGER,
    tx_hash TEXT,
    block INTEGER,
    event_id INTEGER,
    error TEXT,
    accepted_at REAL NOT NULL,
    done_at REAL,
    UNIQUE (org_id, idem_key)
);
CREATE INDEX IF NOT EXISTS ops_pending ON ops (org_id, status, op_id);
CREATE INDEX IF NOT EXISTS ops_tx ON ops (tx_id);
CREATE INDEX IF NOT EXISTS ops_unsettled ON ops (org_id, status) WHERE status IN ('accepted', 'sent');
CREATE TABLE IF NOT EXISTS subject_versions (
    org_id INTEGER NOT NULL,
    subject BLOB NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (org_id, subject)
);
CREATE TABLE IF NOT EXISTS txs (
    tx_id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL UNIQUE,
    raw BLOB NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'sent',
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    sent_at REAL,
    block INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS txs_live ON txs (org_id, status, nonce);
"""
#: ``PRAGMA user_version`` of the file this module writes (1: settled operations have no body).
_FILE_VERSION = 1
_BODY_AAD = b"portledger/outbox-body/v1"
#: Name of the keystore secret the gateway's outbox bodies are encrypted under.
BODY_SECRET = "outbox"
_NONCE_SIZE = 12
#: Seconds of settled operations the drain rate (and so ``Retry-After``) is measured over.
DRAIN_WINDOW = 10.0
#: ``Retry-After`` of a full outbox that has not drained lately (nothing to estimate from).
RETRY_AFTER_UNKNOWN = 5
#: Largest ``Retry-After`` of a full outbox.
RETRY_AFTER_MAX = 60
#: Seconds the depths seen at this process's last write are trusted by :meth:`Outbox.admit`.
ADMIT_FRESH = 1.0
#: Paths whose POSTs :func:`admission_check` refuses early when the outbox is full (the event
#: uploads: canonical, bulk, DCSA).
EARLY_REFUSED = ("/v1/events", "/v2/events")



def _body_aad(org_id: int, key: str) -> bytes:
    return _BODY_AAD + f"{org_id}\x00{key}".encode()


class OutboxError(Exception):
    """The outbox file cannot be read as asked (an encrypted body without its key)."""


class OutboxFull(errors.TooManyRequests):
    """429 ``outbox-full``: the upload would take the outbox over a depth limit; retry later."""

    code = "outbox-full"


class Outbox:
    """The outbox database (``<data_dir>/outbox.sqlite``); see the module docstring.

    Parameters
    ----------
    path
        SQLite file (created with its tables if missing).
    body_key
        32-byte key the bodies of unsettled operations are encrypted under (AES-256-GCM; the
        gateway's comes from its keystore); None stores them in clear (tests, benchmarks).
    max_depth_per_org, max_depth
        Most unsettled operations of one organisation, and in all (None: no limit — tests and
        benchmarks; the gateway sets both from its configuration).
    max_wait
        Most seconds of work in the outbox at its drain rate: more unsettled operations in
        all than ``drain_rate() * max_wait`` are refused too (None, or nothing drained yet:
        no such limit).
    wait_floor
        The time bound never refuses below this many unsettled operations in all: on a slow
        or loaded chain a few seconds of work is a handful of operations, and uploads at the
        normal rate would be refused while a finality latency of seconds keeps that many on
        their way (0: no floor).

    Notes
    -----
    One connection, guarded by a lock, serves every thread; :meth:`accept_async` hands work to
    a writer thread that commits every request waiting at that moment in one transaction
    (group commit: one ``fsync`` for many small uploads), each request in its own savepoint so
    one reused key refuses only its own request.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        body_key: bytes | None = None,
        max_depth_per_org: int | None = None,
        max_depth: int | None = None,
        max_wait: float | None = None,
        wait_floor: int = 0,
    ) -> None:
        if wait_floor < 0:
            raise ValueError("wait_floor must be 0 or more")
        for name, value in (("max_depth_per_org", max_depth_per_org), ("max_depth", max_depth),
                            ("max_wait", max_wait)):  # fmt: skip
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        self.path = Path(path)
        self.max_depth_per_org = max_depth_per_org
        self.max_depth = max_depth
        self.max_wait = max_wait
        self.wait_floor = wait_floor
        self.refused: dict[str, int] = {"organisation": 0, "total": 0, "wait": 0}
        """Uploads refused as over a depth limit, by limit (for metrics)."""
        self._drained: deque[tuple[float, int]] = deque()  # (monotonic, operations settled)
        self._drain_lock = threading.Lock()
        self._last_rate = 0.0
        self._known: tuple[float, dict[int, int]] = (-math.inf, {})
        """(monotonic time, depth per organisation) as of the last write (for :meth:`admit`)."""
        self._db = sqlite.connect(self.path, synchronous="FULL", busy_timeout_ms=10_000)
        # Dropped bodies are overwritten with zeros, not left in the file's free space.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._body_cipher = None if body_key is None else AESGCM(bytes(body_key))
        self._lock = threading.RLock()
        self._queue: list[tuple[int, list[Operation], asyncio.Future[list[Receipt]]]] = []
        self._queue_cv = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._wakeups: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def _migrate(self) -> None:
        """Bring a file of an earlier version to this one (bodies of settled ops dropped)."""
        with sqlite.transaction(self._db):
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(ops)")}
            if "body_nonce" not in columns:
                self._db.execute("ALTER TABLE ops ADD COLUMN body_nonce BLOB")
            if self._db.execute("PRAGMA user_version").fetchone()[0] < _FILE_VERSION:
                self._db.execute(
                    "UPDATE ops SET body = x'' WHERE status IN ('final', 'failed')"
                    " AND length(body) > 0"
                )
                if "summary" in columns:
                    self._db.execute("UPDATE ops SET summary = '' WHERE summary != ''")
                self._db.execute(f"PRAGMA user_version = {_FILE_VERSION}")

    # -- bodies at rest -----------------------------------------------------------------------
    def _seal_body(self, org_id: int, key: str, body: bytes) -> tuple[bytes, bytes | None]:
        """The body as stored, and its nonce (None: stored in clear, no body key)."""
        if self._body_cipher is None:
            return body, None
        nonce = os.urandom(_NONCE_SIZE)
        return self._body_cipher.encrypt(nonce, body, _body_aad(org_id, key)), nonce

    def _open_body(self, org_id: int, key: str, stored: bytes, nonce: bytes | None) -> bytes:
        if nonce is None:
            return stored
        if self._body_cipher is None:
            raise OutboxError(f"{self.path} holds encrypted operations; open it with its body key")
        try:
            return self._body_cipher.decrypt(bytes(nonce), stored, _body_aad(org_id, key))
        except InvalidTag:
            raise OutboxError(
                f"operation {key!r} of organisation {org_id} in {self.path} does not decrypt"
                " with this body key"
            ) from None

    # -- intake ----------------------------------------------------------------------------
    def accept(self, org_id: int, ops: list[Operation]) -> list[Receipt]:
        """Accept ``ops`` of organisation ``org_id`` durably, all or none.

        Returns
        -------
        list of Receipt
            One per operation, in order; a retry of an operation accepted earlier gets the
            original's receipt with ``duplicate=True``.

        Raises
        ------
        gateway.errors.Conflict
            ``idempotency-key-reused``: a key was accepted before with different content (or
            is used twice with different content within ``ops``); nothing is accepted.
        """
        with self._lock, sqlite.transaction(self._db):
            receipts = self._accept_in_tx(org_id, ops, self._depths())
        self._wake()
        return receipts

    async def accept_async(self, org_id: int, ops: list[Operation]) -> list[Receipt]:
        """:meth:`accept` without blocking the event loop (group-committed with other callers)."""
        for op in ops:
            check(op)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Receipt]] = loop.create_future()
        with self._queue_cv:
            if self._closed:
                raise errors.Unavailable("the outbox is closed")
            self._queue.append((org_id, ops, future))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="outbox-writer", daemon=True
                )
                self._writer.start()
            self._queue_cv.notify()
        return await future

    def _write_loop(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue and not self._closed:
                    self._queue_cv.wait(timeout=1.0)
                if not self._queue and self._closed:
                    return
                work, self._queue = self._queue, []
            results: list[tuple[asyncio.Future[list[Receipt]], Any, bool]] = []
            with self._lock:
                try:
                    with sqlite.transaction(self._db):
                        depths = self._depths()
                        for org_id, ops, future in work:
                            self._db.execute("SAVEPOINT req")
                            try:
                                receipts = self._accept_in_tx(org_id, ops, depths)
                            except Exception as exc:  # handed to the caller
                                self._db.execute("ROLLBACK TO req")
                                self._db.execute("RELEASE req")
                                results.append((future, exc, False))
                            else:
                                self._db.execute("RELEASE req")
                                results.append((future, receipts, True))
                    self._known = (time.monotonic(), depths)
                except Exception as exc:  # the whole commit failed: nobody was accepted
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    results = [(future, exc, False) for _, _, future in work]
            for future, value, ok in results:
                future.get_loop().call_soon_threadsafe(_settle, future, value, ok)
            self._wake()

    def _accept_in_tx(
        self, org_id: int, ops: list[Operation], depths: dict[int, int]
    ) -> list[Receipt]:
        """Accept ``ops`` inside the caller's transaction; ``depths`` (unsettled operations per
        organisation, see :meth:`_depths`) is checked against the limits and kept up to date."""
        self._make_room(org_id, ops, depths)
        now = time.time()
        new = 0
        receipts: list[Receipt] = []
        seen: dict[str, tuple[bytes, Receipt]] = {}
        # Subject keys (keccak) are needed only once the organisation has revoked something.
        versioned = (
            self._db.execute(
                "SELECT 1 FROM subject_versions WHERE org_id = ? LIMIT 1", (org_id,)
            ).fetchone()
            is not None
        )
        for op in ops:
            check(op)
            body = canonical_bytes(op)
            digest = hashlib.sha256(body).digest()
            if op.idempotency_key in seen:
                if seen[op.idempotency_key][0] != digest:
                    raise errors.Conflict(
                        f"idempotency key {op.idempotency_key!r} is used twice with different "
                        "content",
                        code="idempotency-key-reused",
                        details={"key": op.idempotency_key},
                    )
                first = seen[op.idempotency_key][1]
                receipts.append(_replace_dup(first))
                continue
            row = self._db.execute(
                "SELECT content_hash FROM ops WHERE org_id = ? AND idem_key = ?",
                (org_id, op.idempotency_key),
            ).fetchone()
            if row is not None:
                if bytes(row[0]) != digest:
                    raise errors.Conflict(
                        f"idempotency key {op.idempotency_key!r} was used before for "
                        "different content",
                        code="idempotency-key-reused",
                        details={"key": op.idempotency_key},
                    )
                original = self._receipt(org_id, op.idempotency_key, duplicate=True)
                assert original is not None
                receipts.append(original)
                seen[op.idempotency_key] = (digest, original)
                continue
            version = 0
            if op.event is not None and versioned:
                version = self._version(org_id, op.event.subject.key)
            stored = body[len(b"event\x00") :] if op.kind == "event" else op.data
            stored, nonce = self._seal_body(org_id, op.idempotency_key, stored)
            cur = self._db.execute(
                "INSERT INTO ops (org_id, idem_key, content_hash, kind, body, body_nonce,"
                " to_addr, revokes_subject, key_version, accepted_at, batch_limit)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    org_id, op.idempotency_key, digest, op.kind, stored, nonce, op.to,
                    op.revokes_subject, version, now, op.batch_limit,
                ),
            )  # fmt: skip
            if op.revokes_subject is not None:
                self._db.execute(
                    "INSERT INTO subject_versions (org_id, subject, version) VALUES (?, ?, 1)"
                    " ON CONFLICT (org_id, subject) DO UPDATE SET version = version + 1",
                    (org_id, op.revokes_subject),
                )
                versioned = True
            receipt = Receipt(int(cur.lastrowid or 0), op.idempotency_key, False, "accepted")
            receipts.append(receipt)
            seen[op.idempotency_key] = (digest, receipt)
            new += 1
        depths[org_id] = depths.get(org_id, 0) + new
        return receipts

    # -- back-pressure -----------------------------------------------------------------------
    def _depths(self) -> dict[int, int]:
        """Unsettled operations per organisation (read inside the accepting transaction)."""
        rows = self._db.execute(
            "SELECT org_id, COUNT(*) FROM ops INDEXED BY ops_unsettled"
            " WHERE status IN ('accepted', 'sent') GROUP BY org_id"
        ).fetchall()
        return {int(org): int(n) for org, n in rows}

    def _make_room(self, org_id: int, ops: list[Operation], depths: dict[int, int]) -> None:
        """Raise :class:`OutboxFull` if the new operations among ``ops`` would take the
        organisation's or the total depth over a limit (a queue that is empty takes any)."""
        mine, total = depths.get(org_id, 0), sum(depths.values())
        rate = self.drain_rate()
        by_wait = self.wait_limit(rate)
        limits = [
            (scope, depth, limit)
            for scope, depth, limit in (
                ("organisation", mine, self.max_depth_per_org),
                ("total", total, self.max_depth),
                ("wait", total, by_wait),
            )
            if limit is not None and depth > 0
        ]
        if not any(depth + len(ops) > limit for _, depth, limit in limits):
            return
        new = len(self._new_keys(org_id, ops))  # retries of accepted keys take no room
        for scope, depth, limit in limits:
            if new and depth + new > limit:
                self._refuse(scope, depth, limit, depth + new - limit, new, rate)

    def _new_keys(self, org_id: int, ops: list[Operation]) -> set[str]:
        """The idempotency keys of ``ops`` the outbox does not hold yet."""
        keys = {op.idempotency_key for op in ops}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (key,) in self._db.execute(
                f"SELECT idem_key FROM ops WHERE org_id = ? AND idem_key IN ({marks})",  # noqa: S608 (constant names and ? placeholders only)
                (org_id, *chunk),
            ):
                keys.discard(key)
        return keys

    def _note_drained(self, count: int) -> None:
        if count:
            with self._drain_lock:
                self._drained.append((time.monotonic(), count))

    def drain_rate(self, now: float | None = None) -> float:
        """Operations settled (final or failed) per second by this process's submitter.

        Measured over the last :data:`DRAIN_WINDOW` seconds (from the oldest settlement in
        it, at least one second); when nothing settled in the window, the last rate measured
        (an idle outbox remembers what the chain took); 0 before anything settled.
        """
        now = time.monotonic() if now is None else now
        with self._drain_lock:
            while self._drained and self._drained[0][0] < now - DRAIN_WINDOW:
                self._drained.popleft()
            if not self._drained:
                return self._last_rate
            span = max(1.0, now - self._drained[0][0])
            self._last_rate = sum(n for _, n in self._drained) / span
            return self._last_rate

    def wait_limit(self, rate: float) -> int | None:
        """The time bound at drain ``rate``: ``max_wait`` seconds of work, at least
        ``wait_floor`` operations (None: no bound — none configured, or nothing drained yet)."""
        if self.max_wait is None or rate <= 0:
            return None
        return max(1, self.wait_floor, math.floor(rate * self.max_wait))

    def retry_after(self, excess: int, rate: float | None = None) -> int:
        """Whole seconds until ``excess`` operations have drained at the recent rate (1 to
        :data:`RETRY_AFTER_MAX`; :data:`RETRY_AFTER_UNKNOWN` if nothing drained yet)."""
        rate = self.drain_rate() if rate is None else rate
        if rate <= 0:
            return RETRY_AFTER_UNKNOWN
        return max(1, min(RETRY_AFTER_MAX, math.ceil(excess / rate)))

    def admit(self, org_id: int) -> None:
        """Refuse (:class:`OutboxFull`) an upload of ``org_id`` before it is read if its queue
        or the outbox is already at a limit, as of a write of this process in the last
        :data:`ADMIT_FRESH` seconds (older knowledge is not trusted: the exact check decides)."""
        at, depths = self._known
        if time.monotonic() - at > ADMIT_FRESH:
            return
        mine, total = depths.get(org_id, 0), sum(depths.values())
        rate = self.drain_rate()
        by_wait = self.wait_limit(rate)
        for scope, depth, limit in (
            ("organisation", mine, self.max_depth_per_org),
            ("total", total, self.max_depth),
            ("wait", total, by_wait),
        ):
            if limit is not None and depth > 0 and depth >= limit:
                self._refuse(scope, depth, limit, depth + 1 - limit, 1, rate)

    def _refuse(
        self, scope: str, depth: int, limit: int, excess: int, new: int, rate: float
    ) -> NoReturn:
        self.refused[scope] += 1
        retry = self.retry_after(excess, rate)
        whose = "your organisation's" if scope == "organisation" else "the gateway's"
        why = (
            f"more than {self.max_wait:g} s of work at the rate it drains"
            if scope == "wait" else f"limit {limit}"
        )  # fmt: skip
        raise OutboxFull(
            f"{whose} outbox holds {depth} operations not yet final ({why}); retry in {retry} s",
            details={"retryAfterSeconds": retry, "limitedBy": f"outbox-{scope}",
                     "depth": depth, "limit": limit, "operations": new},
            headers={"Retry-After": str(retry)},
        )  # fmt: skip

    def depth(self) -> dict[int, int]:
        """Unsettled operations per organisation (for metrics and tests)."""
        with self._lock:
            return self._depths()

    # -- queries ----------------------------------------------------------------------------
    def status(self, org_id: int, key: str) -> Receipt | None:
        """Where the operation with idempotency key ``key`` stands; None if unknown."""
        with self._lock:
            return self._receipt(org_id, key, duplicate=False)

    def _receipt(self, org_id: int, key: str, *, duplicate: bool) -> Receipt | None:
        row = self._db.execute(
            "SELECT op_id, status, tx_hash, block, event_id, error FROM ops"
            " WHERE org_id = ? AND idem_key = ?",
            (org_id, key),
        ).fetchone()
        if row is None:
            return None
        return Receipt(row[0], key, duplicate, row[1], row[2], row[3], row[4], row[5])

    def receipts(self, op_ids: Iterable[int]) -> list[Receipt]:
        """Receipts of operations by outbox id, in the order given."""
        ids = list(op_ids)
        out: dict[int, Receipt] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    "SELECT op_id, idem_key, status, tx_hash, block, event_id, error FROM ops"  # noqa: S608 (constant names and ? placeholders only)
                    f" WHERE op_id IN ({marks})",
                    chunk,
                ):
                    out[row[0]] = Receipt(row[0], row[1], False, *row[2:])
        return [out[i] for i in ids if i in out]

    def org_of(self, op_id: int) -> int | None:
        """The organisation of an operation."""
        with self._lock:
            row = self._db.execute("SELECT org_id FROM ops WHERE op_id = ?", (op_id,)).fetchone()
        return None if row is None else int(row[0])

    def subject_version(self, org_id: int, subject: bytes) -> int:
        """The key version new records of ``org_id`` about ``subject`` are sealed with."""
        with self._lock:
            return self._version(org_id, subject)

    def _version(self, org_id: int, subject: bytes) -> int:
        row = self._db.execute(
            "SELECT version FROM subject_versions WHERE org_id = ? AND subject = ?",
            (org_id, subject),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def counts(self) -> dict[str, int]:
        """Number of operations per status (for metrics and tests)."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM ops GROUP BY status").fetchall()
        return {status: int(n) for status, n in rows}

    # -- the submitter's side ---------------------------------------------------------------
    def orgs_with_work(self) -> list[int]:
        """Organisations with accepted operations or live transactions."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT org_id FROM ops WHERE status IN ('accepted', 'sent')"
            ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def pending(self, org_id: int, limit: int) -> list[PendingOp]:
        """The oldest accepted (not yet in a live transaction) operations of an organisation."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op_id, idem_key, kind, body, body_nonce, to_addr, key_version,"
                " batch_limit, accepted_at FROM ops WHERE org_id = ? AND status = 'accepted'"
                " ORDER BY op_id LIMIT ?",
                (org_id, limit),
            ).fetchall()
        out = []
        for op_id, key, kind, stored, nonce, to, version, limit_, at in rows:
            body = self._open_body(org_id, key, bytes(stored), nonce)
            event = stored_event(body) if kind == "event" else None
            data = b"" if kind == "event" else body
            out.append(PendingOp(op_id, org_id, key, kind, event, to, data, version, limit_, at))
        return out

    def max_nonce(self, sender: str) -> int | None:
        """The highest nonce persisted for ``sender`` whose transaction may still be mined."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(nonce) FROM txs WHERE sender = ? AND status != 'rejected'",
                (sender,),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def used_nonces(self, sender: str, at_least: int) -> set[int]:
        """Nonces ``>= at_least`` of ``sender``'s persisted transactions that may be on chain.

        Every status but ``rejected`` counts (a dropped transaction's nonce was taken by
        another transaction, a mined or reverted one's by itself).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT nonce FROM txs WHERE sender = ? AND nonce >= ? AND status != 'rejected'",
                (sender, at_least),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def batch_limits(self, op_ids: Iterable[int]) -> dict[int, int]:
        """The batch limit (0: none) of each operation."""
        ids = list(op_ids)
        with self._lock:
            rows = self._db.execute(
                f"SELECT op_id, batch_limit FROM ops WHERE op_id IN ({','.join('?' * len(ids))})",  # noqa: S608 (constant names and ? placeholders only)
                ids,
            ).fetchall()
        return {int(a): int(b) for a, b in rows}

    def fail_unsent(self, failures: dict[int, str]) -> list[Receipt]:
        """Fail accepted operations that can never be sent (e.g. a reader who is no member)."""
        now = time.time()
        with self._lock, sqlite.transaction(self._db):
            for op_id, reason in failures.items():
                self._db.execute(
                    "UPDATE ops SET status = 'failed', error = ?, done_at = ?, body = x''"
                    " WHERE op_id = ? AND status = 'accepted'",
                    (reason, now, op_id),
                )
            self._known = (time.monotonic(), self._depths())
        self._note_drained(len(failures))
        return self.receipts(failures)

    def persist_tx(
        self,
        *,
        org_id: int,
        sender: str,
        nonce: int,
        tx_hash: str,
        raw: bytes,
        kind: str,
        op_ids: list[int],
    ) -> TxRecord:
        """Record a signed transaction and mark its operations ``sent``, in one transaction.

        Raises
        ------
        RuntimeError
            One of the operations is no longer ``accepted`` (nothing is written).
        """
        now = time.time()
        with self._lock, sqlite.transaction(self._db):
            cur = self._db.execute(
                "INSERT INTO txs (org_id, sender, nonce, tx_hash, raw, kind, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (org_id, sender, nonce, tx_hash, raw, kind, now),
            )
            tx_id = int(cur.lastrowid or 0)
            for index, op_id in enumerate(op_ids):
                updated = self._db.execute(
                    "UPDATE ops SET status = 'sent', tx_id = ?, tx_index = ?, tx_hash = ?"
                    " WHERE op_id = ? AND status = 'accepted'",
                    (tx_id, index, tx_hash, op_id),
                ).rowcount
                if updated != 1:
                    raise RuntimeError(f"operation {op_id} is not waiting to be sent")
        return TxRecord(tx_id, org_id, sender, nonce, tx_hash, raw, kind, "sent", False, now,
                        None, tuple(op_ids))  # fmt: skip

    def live_txs(self, org_id: int | None = None) -> list[TxRecord]:
        """Transactions not known to be mined or dead, in nonce order per sender."""
        query = (
            "SELECT tx_id, org_id, sender, nonce, tx_hash, raw, kind, status, maybe_sent,"
            " created_at, sent_at FROM txs WHERE status = 'sent'"
        )
        params: tuple[Any, ...] = ()
        if org_id is not None:
            query += " AND org_id = ?"
            params = (org_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY sender, nonce", params).fetchall()
            out = []
            for row in rows:
                ops = self._db.execute(
                    "SELECT op_id FROM ops WHERE tx_id = ? ORDER BY tx_index", (row[0],)
                ).fetchall()
                tx_id, org, sender, nonce, tx_hash, raw, kind, status = row[:8]
                out.append(
                    TxRecord(tx_id, org, sender, nonce, tx_hash, raw, kind, status, bool(row[8]),
                             row[9], row[10], tuple(r[0] for r in ops))
                )  # fmt: skip
        return out

    def mark_send_attempt(self, tx_id: int, *, maybe_sent: bool) -> None:
        """Note a send attempt; ``maybe_sent`` once any node may hold the bytes (never unset)."""
        with self._lock:
            self._db.execute(
                "UPDATE txs SET sent_at = ?, maybe_sent = MAX(maybe_sent, ?) WHERE tx_id = ?",
                (time.time(), int(maybe_sent), tx_id),
            )

    def finish_tx(
        self,
        tx_id: int,
        *,
        status: str,
        block: int | None = None,
        error: str | None = None,
        final: dict[int, int | None] | None = None,
        failed: dict[int, str] | None = None,
        requeue: dict[int, int] | None = None,
    ) -> list[Receipt]:
        """Settle a transaction and its operations in one database transaction.

        Parameters
        ----------
        tx_id
            The transaction.
        status
            Its new status: ``mined``, ``reverted``, ``rejected`` or ``dropped``.
        block
            Block it was mined in.
        error
            Why it reverted or was rejected.
        final
            Operations now on chain: op id → on-chain event id (None for a call).
        failed
            Operations that will never be recorded: op id → reason.
        requeue
            Operations to send again in a later transaction: op id → their new batch limit.

        Returns
        -------
        list of Receipt
            The operations that turned final or failed (for the listeners).
        """
        now = time.time()
        final, failed, requeue = final or {}, failed or {}, requeue or {}
        with self._lock, sqlite.transaction(self._db):
            row = self._db.execute("SELECT tx_hash FROM txs WHERE tx_id = ?", (tx_id,)).fetchone()
            tx_hash = row[0]
            self._db.execute(
                "UPDATE txs SET status = ?, block = ?, error = ? WHERE tx_id = ?",
                (status, block, error, tx_id),
            )
            # A settled operation keeps what idempotency and status need; its body goes.
            for op_id, event_id in final.items():
                self._db.execute(
                    "UPDATE ops SET status = 'final', block = ?, event_id = ?, tx_hash = ?,"
                    " error = NULL, done_at = ?, body = x'' WHERE op_id = ? AND tx_id = ?",
                    (block, event_id, tx_hash, now, op_id, tx_id),
                )
            for op_id, reason in failed.items():
                self._db.execute(
                    "UPDATE ops SET status = 'failed', block = ?, tx_hash = ?, error = ?,"
                    " done_at = ?, body = x'' WHERE op_id = ? AND tx_id = ?",
                    (block, tx_hash, reason, now, op_id, tx_id),
                )
            for op_id, limit in requeue.items():
                self._db.execute(
                    "UPDATE ops SET status = 'accepted', tx_id = NULL, tx_index = NULL,"
                    " tx_hash = NULL, batch_limit = ? WHERE op_id = ? AND tx_id = ?",
                    (limit, op_id, tx_id),
                )
            if final or failed:
                self._known = (time.monotonic(), self._depths())
        self._note_drained(len(final) + len(failed))
        if requeue:
            self._wake()
        return self.receipts([*final, *failed])

    # -- wake-ups ---------------------------------------------------------------------------
    def add_wakeup(self, event: asyncio.Event) -> None:
        """Set ``event`` (on its own loop) whenever new work is accepted."""
        self._wakeups.append((asyncio.get_running_loop(), event))

    def _wake(self) -> None:
        for loop, event in list(self._wakeups):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop is closed
                self._wakeups.remove((loop, event))

    def close(self) -> None:
        """Finish queued intake, then close the database."""
        with self._queue_cv:
            self._closed = True
            self._queue_cv.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=30)
        with self._lock:
            self._db.close()


def _replace_dup(receipt: Receipt) -> Receipt:
    return Receipt(
        receipt.op_id, receipt.idempotency_key, True, receipt.status, receipt.tx_hash,
        receipt.block, receipt.event_id, receipt.error,
    )  # fmt: skip


def _settle(future: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)




def open_outbox(
    data_dir: Path,
    keystore: Keystore,
    *,
    max_depth_per_org: int | None = None,
    max_depth: int | None = None,
    max_wait: float | None = None,
    wait_floor: int = 0,
) -> Outbox:
    """The outbox of a gateway: ``<data_dir>/outbox.sqlite``, bodies under the keystore's
    ``outbox`` secret."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return Outbox(data_dir / "outbox.sqlite", body_key=keystore.secret(BODY_SECRET),
                  max_depth_per_org=max_depth_per_org, max_depth=max_depth,
                  max_wait=max_wait, wait_floor=wait_floor)  # fmt: skip


class OutboxMetrics:
    """Prometheus collector of the outbox's depth, limits, refusals and drain rate."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[Metric]:
        box = self.outbox
        depths = box.depth()
        yield GaugeMetricFamily("portledger_outbox_depth",
                                "Operations accepted and not yet final or failed",
                                value=sum(depths.values()))  # fmt: skip
        per_org = GaugeMetricFamily("portledger_outbox_org_depth",
                                    "Operations not yet final or failed, by organisation",
                                    labels=["org"])  # fmt: skip
        for org, n in sorted(depths.items()):
            per_org.add_metric([str(org)], n)
        yield per_org
        limits = GaugeMetricFamily("portledger_outbox_limit", "The outbox's depth limits",
                                   labels=["limit"])  # fmt: skip
        rate = box.drain_rate()
        for name, value in (("organisation", box.max_depth_per_org), ("total", box.max_depth),
                            ("wait_seconds", box.max_wait)):  # fmt: skip
            if value is not None:
                limits.add_metric([name], value)
        wait = box.wait_limit(rate)
        if wait is not None:
            limits.add_metric(["wait"], wait)
        yield limits
        refused = CounterMetricFamily("portledger_outbox_refused",
                                      "Uploads refused 429 outbox-full, by the limit reached",
                                      labels=["limit"])  # fmt: skip
        for name, count in box.refused.items():
            refused.add_metric([name], count)
        yield refused
        yield GaugeMetricFamily("portledger_outbox_drain_per_second",
                                f"Operations settled per second over the last {DRAIN_WINDOW:g} s",
                                value=rate)  # fmt: skip


def setup(app: web.Application) -> None:
    """Open the outbox as ``app[OUTBOX]``; it is closed (queued intake finished) at cleanup."""
    config = app[CONFIG]
    app[OUTBOX] = open_outbox(config.data_dir, app[KEYSTORE],
                              max_depth_per_org=config.outbox_max_per_org,
                              max_depth=config.outbox_max_total,
                              max_wait=config.outbox_max_wait_seconds,
                              wait_floor=config.outbox_wait_floor)  # fmt: skip
    registry = app.get(METRICS)
    if registry is not None:
        registry.register(OutboxMetrics(app[OUTBOX]))
    box = app[OUTBOX]

    def admission_check(request: web.Request, who: Principal) -> None:
        """Event uploads of an organisation whose queue (or the outbox) is full: 429 before
        the body is read."""
        if request.method == "POST" and request.path.startswith(EARLY_REFUSED):
            box.admit(who.org_id)

    ops.add_admission_check(app, admission_check)

    async def outbox_ctx(app: web.Application) -> Any:
        yield
        await asyncio.to_thread(app[OUTBOX].close)

    app.cleanup_ctx.append(outbox_ctx)
