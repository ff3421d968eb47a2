"""The telemetry store: readings, the vessels they belong to, and their anchor batches.

One SQLite file, ``<data_dir>/telemetry.sqlite`` (WAL, :mod:`gateway.sqlite`), three tables:

``readings``
    One row per reading: the owner (gateway organisation, and its Consortium id), the type and
    the Anchors kind it is anchored as, indexes to find it (subject, MMSI, time), its
    visibility (mode and named readers) and its **body**: the reading's canonical bytes
    (:meth:`~gateway.telemetry.model.Reading.canonical_bytes`, exactly what is anchored).
    Public readings (AIS) are stored in clear; private ones (reefer, truck position) are sealed
    with AES-256-GCM under a key derived from the keystore secret ``telemetry``, bound (GCM
    associated data) to their owner and digest, so no temperature, container number or truck
    position lies in the file in clear. The subject index and the de-duplication **digest** are
    keyed hashes (HMAC-SHA256 under keys derived from the same secret), not plain hashes a
    dictionary of container numbers and temperatures could invert. A digest is unique per
    owner: a re-sent reading is not stored twice.

``vessels``
    The MMSI → IMO join, from ``ais-static`` readings (type 5: IMO, call sign, name,
    destination, ETA; type 24 parts A and B merge by MMSI) and from positions that already name
    their vessel. A position stored under its MMSI before the vessel's IMO number was known is
    found by IMO once static data links them: the join is made at query time, so the stored
    (and anchored) bytes never change.

``batches``
    Anchor batches (:mod:`gateway.telemetry.anchoring`): owner, kind, Merkle root, count, time
    range, the write-path idempotency key, status (``formed`` → ``submitted`` → ``anchored`` or
    ``failed``) and, once anchored, the transaction, block, anchor id and block-wide log index
    of the ``Anchored`` log. A reading's batch and position in it are set once, in the same
    transaction that records the batch, so a restart never re-batches it differently.

Queries return :class:`StoredReading` (the reading with its id, owner, visibility and anchor
state); visibility-filtered queries take a predicate over :class:`~gateway.telemetry.visibility.Access`
(metadata only), applied before a row is decrypted. Every query is bounded
(:data:`MAX_HISTORY` results, :data:`MAX_SCAN` rows examined).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_utils.crypto import keccak

from contracts import anchors
from gateway import sqlite
from gateway.events.model import Reference, Visibility
from gateway.telemetry.model import PUBLIC_TYPES, READING_TYPES, Reading, from_canonical
from gateway.telemetry.records import (
    AnchorState,
    BatchRecord,
    StoredReading,
    Unanchored,
    Vessel,
    imo_number,
    mmsi_of,
)
from gateway.telemetry.visibility import MODES, Access

#: File name under the data directory.
FILE_NAME = "telemetry.sqlite"
#: Name of the keystore secret private readings are sealed under.
SECRET = "telemetry"
#: Most readings one query returns.
MAX_HISTORY = 5_000
#: Readings a history query returns when no limit is given.
DEFAULT_HISTORY = 500
#: Most rows a visibility-filtered query examines before it gives up looking for more.
MAX_SCAN = 20_000
#: Largest canonical reading, bytes.
MAX_READING_BYTES = 4_096
#: Largest Unix time a reading may carry (the Anchors contract keeps 40 bits).
MAX_TIME = (1 << 40) - 1

_PAGE = 500
#: Batches whose reading hashes are kept in memory (:meth:`TelemetryStore.batch_hashes`).
_HASHES_KEPT = 8
_NONCE_SIZE = 12
_AAD = b"portledger/telemetry-reading/v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL,
    owner INTEGER,
    type TEXT NOT NULL,
    kind INTEGER NOT NULL,
    subject BLOB,
    mmsi INTEGER,
    time INTEGER NOT NULL,
    digest BLOB NOT NULL,
    body BLOB NOT NULL,
    nonce BLOB,
    mode TEXT NOT NULL,
    readers TEXT NOT NULL,
    received INTEGER NOT NULL,
    batch_id INTEGER,
    batch_index INTEGER,
    UNIQUE (org_id, digest)
);
CREATE TABLE IF NOT EXISTS retracted (
    org_id INTEGER NOT NULL, event_ref BLOB NOT NULL, retracted_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, event_ref)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_subject ON readings (subject, type, time);
CREATE INDEX IF NOT EXISTS readings_mmsi ON readings (mmsi, type, time);
CREATE INDEX IF NOT EXISTS readings_unanchored ON readings (id)
    WHERE batch_id IS NULL AND kind > 0;
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch_id, batch_index);
CREATE TABLE IF NOT EXISTS vessels (
    mmsi INTEGER PRIMARY KEY,
    imo TEXT,
    name TEXT,
    callsign TEXT,
    destination TEXT,
    eta TEXT,
    ship_type INTEGER,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vessels_imo ON vessels (imo);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER NOT NULL,
    idem_key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'formed',
    created REAL NOT NULL,
    tx_hash TEXT,
    block INTEGER,
    anchor_id INTEGER,
    log_index INTEGER,
    error TEXT,
    settled REAL
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status, batch_id);
"""

#: Statuses of a batch, in order.
BATCH_STATES = ("formed", "submitted", "anchored", "failed")

_KIND_CODES: dict[str, int] = {
    t: anchors.KINDS[k] if k is not None else 0 for t, k in READING_TYPES.items()
}

_READING_COLUMNS = (
    "r.id, r.org_id, r.owner, r.type, r.mmsi, r.time, r.digest, r.body, r.nonce, r.mode,"
    " r.readers, r.received, r.batch_id, r.batch_index, b.status, b.anchor_id, b.block,"
    " b.tx_hash, r.subject IS NOT NULL"
)


#: Most subjects :meth:`TelemetryStore.subjects_with` looks up at once.
MAX_SUBJECTS_ASKED = 500


class TelemetryStoreError(Exception):
    """The file cannot be used as asked (another key sealed it, or a stored body is damaged)."""


class ReadingRefused(ValueError):
    """A reading the store does not take (nothing of the call was stored)."""

    def __init__(self, index: int, code: str, message: str) -> None:
        super().__init__(f"reading {index}: {message}")
        self.index = index
        self.code = code
        self.message = message


#: A visibility predicate over a stored reading's metadata.
Allow = Callable[[Access], bool]


def _text(values: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:120]
        if isinstance(value, dict) and isinstance(value.get("iso"), str):
            return str(value["iso"])[:120]  # an AIS ETA: its parts and the guessed moment
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True)[:120]
    return None


def _readers(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


class TelemetryStore(sqlite.Store):
    """The telemetry database (module docstring).

    Parameters
    ----------
    path
        The SQLite file (created with its tables if missing).
    secret
        32-byte secret private readings are sealed under and the keyed indexes derive from (the
        gateway's keystore secret :data:`SECRET`); None stores private readings in clear
        (tests and benchmarks only). A file made with one secret refuses to open with another.
    clock
        Wall clock (received times, batch times).
    """

    def __init__(self, path: str | Path, *, secret: bytes | None,
                 clock: Callable[[], float] = time.time) -> None:
        if secret is not None and len(secret) != 32:
            raise ValueError("the telemetry secret is 32 bytes")
        super().__init__(path, _SCHEMA)
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._hashes: dict[int, tuple[bytes, ...]] = {}
        self._db.execute("PRAGMA secure_delete=ON")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(readings)")}
        if "event_ref" not in columns:  # a file of before retractions: add the column
            self._db.execute("ALTER TABLE readings ADD COLUMN event_ref BLOB")
        self._cipher = None if secret is None else AESGCM(self._derive(secret, b"values"))
        self._index_key = b"" if secret is None else self._derive(secret, b"index")
        self._digest_key = b"" if secret is None else self._derive(secret, b"digest")
        try:
            self._check_key(b"" if secret is None else self._derive(secret, b"check")[:8])
        except TelemetryStoreError:
            self._db.close()
            raise

    @staticmethod
    def _derive(secret: bytes, label: bytes) -> bytes:
        return hmac.new(secret, b"portledger/telemetry/" + label, hashlib.sha256).digest()

    def _check_key(self, check: bytes) -> None:
        with self._lock, self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'key'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('key', ?)", (check,))
            elif bytes(row[0]) != check:
                raise TelemetryStoreError(
                    f"{self.path} was made with {'another' if row[0] else 'no'} telemetry secret")

    # -- keyed hashes and sealing -----------------------------------------------------------
    def subject_index(self, ref: Reference) -> bytes:
        """The index a subject reference is stored under (a keyed hash: not invertible)."""
        label = f"{ref.kind}:{ref.value}".encode()
        if not self._index_key:
            return hashlib.sha256(label).digest()[:20]
        return hmac.new(self._index_key, label, hashlib.sha256).digest()[:20]

    def event_ref(self, event_id: str) -> bytes:
        """The index of a reading's own event id (DCSA ``eventID``; a keyed hash), by which a
        later retraction from the same organisation names it."""
        return self.subject_index(Reference("shipment", "event:" + event_id))

    def _digest(self, canonical: bytes) -> bytes:
        if not self._digest_key:
            return hashlib.sha256(canonical).digest()
        return hmac.new(self._digest_key, canonical, hashlib.sha256).digest()

    def _seal(self, org_id: int, digest: bytes, body: bytes) -> tuple[bytes, bytes | None]:
        if self._cipher is None:
            return body, None
        nonce = os.urandom(_NONCE_SIZE)
        aad = _AAD + org_id.to_bytes(8, "big") + digest
        return self._cipher.encrypt(nonce, body, aad), nonce

    def _open(self, org_id: int, digest: bytes, body: bytes, nonce: bytes | None) -> bytes:
        if nonce is None:
            return body
        if self._cipher is None:
            raise TelemetryStoreError(f"{self.path} holds sealed readings; open it with its key")
        try:
            return self._cipher.decrypt(nonce, body, _AAD + org_id.to_bytes(8, "big") + digest)
        except InvalidTag:
            raise TelemetryStoreError(f"a reading of organisation {org_id} in {self.path} does "
                                      "not decrypt: damaged or moved") from None

    # -- intake -----------------------------------------------------------------------------
    def add(self, org_id: int, readings: Sequence[Reading], visibility: Visibility, *,
            owner: int | None = None) -> tuple[int, int]:
        """Store ``readings`` of organisation ``org_id``, all or none; ``(new, duplicates)``.

        ``visibility`` applies to the private readings (public ones are everyone's). Static AIS
        data (and positions that name their vessel) update the vessels table.

        Raises
        ------
        ReadingRefused
            A reading's time is outside the Anchors range, it is larger than
            :data:`MAX_READING_BYTES`, its values are not finite JSON, or the visibility is
            malformed (nothing is stored).
        """
        if visibility.mode not in MODES:
            raise ReadingRefused(0, "invalid-visibility",
                                 f"visibility mode is named or reference, not {visibility.mode!r}")
        if any(not isinstance(r, int) or isinstance(r, bool) or not 0 < r < 1 << 32
               for r in visibility.readers):
            raise ReadingRefused(0, "invalid-visibility", "readers are organisation ids")
        now = int(self.clock())
        private_readers = ",".join(str(r) for r in sorted(set(visibility.readers)))
        rows: list[tuple[Any, ...]] = []
        links: list[tuple[Any, ...]] = []
        retractions: list[tuple[int, bytes, int]] = []
        for index, reading in enumerate(readings):
            canonical = self._checked(index, reading)
            digest = self._digest(canonical)
            public = reading.public
            body, nonce = (canonical, None) if public else self._seal(org_id, digest, canonical)
            mmsi = mmsi_of(reading.values)
            subject = reading.subject
            own_id, retracts = reading.values.get("eventID"), reading.values.get("retractedEventID")
            rows.append((
                org_id, owner, reading.type, _KIND_CODES[reading.type],
                self.subject_index(subject) if subject is not None else None, mmsi,
                reading.time, digest, body, nonce, "named" if public else visibility.mode,
                "" if public else private_readers, now,
                self.event_ref(own_id) if isinstance(own_id, str) else None,
            ))
            if isinstance(retracts, str):  # a DCSA Reefer retraction: the named one is void
                retractions.append((org_id, self.event_ref(retracts), reading.time))
            if mmsi is not None:
                link = self._vessel_link(reading, mmsi)
                if link is not None:
                    links.append(link)
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO readings (org_id, owner, type, kind, subject, mmsi, time,"
                " digest, body, nonce, mode, readers, received, event_ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            new = self._db.total_changes - before
            if retractions:
                self._db.executemany(
                    "INSERT OR IGNORE INTO retracted (org_id, event_ref, retracted_at)"
                    " VALUES (?, ?, ?)", retractions)
            if links:
                self._db.executemany(_VESSEL_UPSERT, links)
        return new, len(rows) - new

    def _checked(self, index: int, reading: Reading) -> bytes:
        if not 0 < reading.time <= MAX_TIME:
            raise ReadingRefused(index, "invalid-time", f"time {reading.time} is out of range")
        try:
            canonical = reading.canonical_bytes()
            if b"NaN" in canonical or b"Infinity" in canonical:
                json.dumps(reading.values, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ReadingRefused(index, "invalid-values",
                                 f"values are not finite JSON: {exc}") from None
        if len(canonical) > MAX_READING_BYTES:
            raise ReadingRefused(index, "reading-too-large",
                                 f"{len(canonical)} bytes; a reading takes at most "
                                 f"{MAX_READING_BYTES}")
        return canonical

    @staticmethod
    def _vessel_link(reading: Reading, mmsi: int) -> tuple[Any, ...] | None:
        v = reading.values
        imo = imo_number(v.get("imo"), checked=True)
        if imo is None and reading.subject is not None and reading.subject.kind == "vessel":
            imo = imo_number(reading.subject.value, checked=True)
        if reading.type == "ais-static":
            ship_type = v.get("ship_type", v.get("shipType"))
            return (mmsi, imo, _text(v, "name", "shipname"), _text(v, "callsign"),
                    _text(v, "destination"), _text(v, "eta"),
                    ship_type if isinstance(ship_type, int) and not isinstance(ship_type, bool)
                    else None, reading.time)
        if imo is None:
            return None
        return (mmsi, imo, None, None, None, None, None, reading.time)

    # -- reading back -----------------------------------------------------------------------
    def _stored(self, row: Sequence[Any]) -> StoredReading:
        (id_, org_id, owner, _type, _mmsi_, _time, digest, body, nonce, mode, readers, received,
         batch_id, batch_index, status, anchor_id, block, tx_hash, _subject) = row
        raw = self._open(org_id, bytes(digest), bytes(body),
                         None if nonce is None else bytes(nonce))
        try:
            reading = from_canonical(raw)
        except ValueError as exc:
            raise TelemetryStoreError(f"reading {id_} in {self.path} is damaged: {exc}") from None
        anchor = None
        if batch_id is not None:
            anchor = AnchorState(batch_id, batch_index, status or "formed", anchor_id, block,
                                 tx_hash)
        return StoredReading(id_, org_id, owner, reading, Visibility(mode, _readers(readers)),
                             received, anchor)

    def reading(self, reading_id: int) -> StoredReading | None:
        """One reading by id (no visibility check: the caller's job)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_READING_COLUMNS} FROM readings r"  # noqa: S608 (constant column list)
                " LEFT JOIN batches b ON b.batch_id = r.batch_id WHERE r.id = ?",
                (reading_id,),
            ).fetchone()
        return None if row is None else self._stored(row)

    def _sources(self, subject: Reference | None, mmsi: int | None) -> list[tuple[str, Any]]:
        """The index lookups that find an asset's readings: its subject, and for a vessel every
        MMSI static data linked to its IMO number (or the MMSI asked for)."""
        sources: list[tuple[str, Any]] = []
        if subject is not None:
            sources.append(("subject", self.subject_index(subject)))
            imo = imo_number(subject.value) if subject.kind == "vessel" else None
            if imo is not None:
                sources += [("mmsi", m) for m in self.mmsis_of(imo)]
        if mmsi is not None:
            sources.append(("mmsi", mmsi))
        return sources

    def history(self, reading_type: str, *, subject: Reference | None = None,
                mmsi: int | None = None, since: int = 0, until: int = MAX_TIME,
                limit: int = DEFAULT_HISTORY, allow: Allow | None = None,
                ) -> tuple[list[StoredReading], bool]:
        """The newest ``limit`` readings of a type about an asset in ``[since, until]``, oldest
        first, and whether older ones in the range were left out.

        An asset is a subject reference (a vessel's also through the MMSIs linked to its IMO)
        or an MMSI. ``allow`` keeps only the readings it accepts (before they are decrypted);
        at most :data:`MAX_SCAN` rows are examined.
        """
        limit = max(1, min(limit, MAX_HISTORY))
        sources = self._sources(subject, mmsi)
        if not sources or reading_type not in READING_TYPES:
            return [], False
        found: list[StoredReading] = []
        cursor = (until, 1 << 62)
        scanned = 0
        with self._lock:
            while len(found) < limit and scanned < MAX_SCAN:
                page = self._page(sources, reading_type, since, cursor)
                if not page:
                    return found[::-1], False
                scanned += len(page)
                for row in page:
                    if len(found) == limit:
                        return found[::-1], True
                    access = Access(row[1], row[2], row[3] in PUBLIC_TYPES, row[9],
                                    _readers(row[10]), bool(row[18]))
                    if allow is None or allow(access):
                        found.append(self._stored(row))
                cursor = (page[-1][5], page[-1][0])
            more = bool(self._page(sources, reading_type, since, cursor, size=1))
        return found[::-1], more

    def _page(self, sources: list[tuple[str, Any]], reading_type: str, since: int,
              cursor: tuple[int, int], size: int = _PAGE) -> list[Any]:
        """One page of rows, newest first, strictly before ``cursor`` (time, id)."""
        rows: dict[int, Any] = {}
        for column, value in sources:
            column_sql = "subject" if column == "subject" else "mmsi"
            for row in self._db.execute(
                f"SELECT {_READING_COLUMNS} FROM readings r"  # noqa: S608 (constant names)
                " LEFT JOIN batches b ON b.batch_id = r.batch_id"
                f" WHERE r.{column_sql} = ? AND r.type = ? AND r.time >= ?"
                " AND NOT EXISTS (SELECT 1 FROM retracted x"
                " WHERE x.org_id = r.org_id AND x.event_ref = r.event_ref)"
                " AND (r.time < ? OR (r.time = ? AND r.id < ?))"
                " ORDER BY r.time DESC, r.id DESC LIMIT ?",
                (value, reading_type, since, cursor[0], cursor[0], cursor[1], size),
            ):
                rows[row[0]] = row
        return sorted(rows.values(), key=lambda r: (r[5], r[0]), reverse=True)[:size]

    def subjects_with(self, reading_type: str, subjects: Sequence[Reference],
                      ) -> set[Reference]:
        """Which of ``subjects`` have readings of a type (one indexed query): lets a view skip
        the assets that have none."""
        if not subjects or reading_type not in READING_TYPES:
            return set()
        index = {self.subject_index(s): s for s in subjects[:MAX_SUBJECTS_ASKED]}
        marks = ",".join("?" * len(index))
        with self._lock:
            rows = self._db.execute(
                f"SELECT DISTINCT subject FROM readings WHERE type = ?"  # noqa: S608 (marks)
                f" AND subject IN ({marks})", (reading_type, *index)).fetchall()
        return {index[row[0]] for row in rows if row[0] in index}

    def latest(self, reading_type: str, *, subject: Reference | None = None,
               mmsi: int | None = None, allow: Allow | None = None) -> StoredReading | None:
        """The newest reading of a type about an asset that ``allow`` accepts, or None."""
        found, _ = self.history(reading_type, subject=subject, mmsi=mmsi, limit=1, allow=allow)
        return found[0] if found else None

    # -- vessels ----------------------------------------------------------------------------
    def vessel_by_mmsi(self, mmsi: int) -> Vessel | None:
        """What static data says about the vessel broadcasting as ``mmsi``."""
        with self._lock:
            row = self._db.execute(f"SELECT {_VESSEL_COLUMNS} FROM vessels WHERE mmsi = ?",  # noqa: S608 (constant column list)
                                   (mmsi,)).fetchone()
        return None if row is None else Vessel(*row)

    def vessel(self, imo: str) -> Vessel | None:
        """The vessel with IMO number ``imo`` (its latest MMSI's static data), or None."""
        number = imo_number(imo)
        if number is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_VESSEL_COLUMNS} FROM vessels WHERE imo = ?"  # noqa: S608 (constant column list)
                " ORDER BY updated DESC LIMIT 1", (number,)).fetchone()
        return None if row is None else Vessel(*row)

    def mmsis_of(self, imo: str) -> list[int]:
        """Every MMSI static data linked to IMO number ``imo`` (at most 16, newest first)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT mmsi FROM vessels WHERE imo = ? ORDER BY updated DESC LIMIT 16", (imo,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    # -- batches ----------------------------------------------------------------------------
    def unanchored(self, limit: int) -> list[Unanchored]:
        """The oldest readings not in a batch yet (anchored types only), by id, with their
        reading hashes."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, org_id, kind, time, digest, body, nonce FROM readings"
                " WHERE batch_id IS NULL AND kind > 0 ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [
            Unanchored(id_, org, kind, t,
                       keccak(self._open(org, bytes(d), bytes(b), None if n is None else bytes(n))))
            for id_, org, kind, t, d, b, n in rows
        ]

    def record_batches(self, batches: Iterable[tuple[int, int, bytes, int, int,
                                                      Sequence[int]]],
                       key_of: Callable[[int, bytes], str]) -> list[BatchRecord]:
        """Record batches ``(org, kind, root, start, end, reading ids)`` and give each reading
        its batch and position, in one transaction; each batch's idempotency key is
        ``key_of(batch id, root)``.

        Raises
        ------
        RuntimeError
            A reading is already in a batch (nothing is recorded).
        """
        now = self.clock()
        out: list[BatchRecord] = []
        with self._lock, self._transaction():
            for org_id, kind, root, start, end, ids in batches:
                cur = self._db.execute(
                    "INSERT INTO batches (org_id, kind, root, count, start_time, end_time,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (org_id, kind, root, len(ids), start, end, now),
                )
                batch_id = int(cur.lastrowid or 0)
                key = key_of(batch_id, root)
                self._db.execute("UPDATE batches SET idem_key = ? WHERE batch_id = ?",
                                 (key, batch_id))
                updated = self._db.executemany(
                    "UPDATE readings SET batch_id = ?, batch_index = ?"
                    " WHERE id = ? AND batch_id IS NULL AND org_id = ? AND kind = ?",
                    [(batch_id, i, rid, org_id, kind) for i, rid in enumerate(ids)],
                ).rowcount
                if updated != len(ids):
                    raise RuntimeError(f"readings of batch {batch_id} were batched already")
                out.append(BatchRecord(batch_id, org_id, kind, root, len(ids), start, end, key,
                                       "formed", None, None, None, None, None))
        return out

    def batches(self, status: str, limit: int = 1000) -> list[BatchRecord]:
        """Batches in ``status``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status = ?"  # noqa: S608 (constant column list)
                " ORDER BY batch_id LIMIT ?", (status, limit)).fetchall()
        return [_batch(r) for r in rows]

    def batch(self, batch_id: int) -> BatchRecord | None:
        """One batch."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?",  # noqa: S608 (constant column list)
                (batch_id,)).fetchone()
        return None if row is None else _batch(row)

    def batch_counts(self) -> dict[str, int]:
        """Number of batches per status (metrics, tests)."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status")
            return {str(s): int(n) for s, n in rows}

    def batch_hashes(self, batch_id: int) -> list[bytes]:
        """The reading hashes of a batch in leaf order (what its Merkle root was made of).

        A batch never changes once formed, so the last few asked for are kept: proofs of
        several readings of one batch open and hash its readings once.
        """
        with self._lock:
            cached = self._hashes.get(batch_id)
            if cached is not None:
                return list(cached)
            rows = self._db.execute(
                "SELECT org_id, digest, body, nonce FROM readings WHERE batch_id = ?"
                " ORDER BY batch_index", (batch_id,)).fetchall()
        hashes = tuple(keccak(self._open(o, bytes(d), bytes(b), None if n is None else bytes(n)))
                       for o, d, b, n in rows)
        if not hashes:  # no such batch (yet): nothing to keep
            return []
        with self._lock:
            self._hashes[batch_id] = hashes
            while len(self._hashes) > _HASHES_KEPT:
                del self._hashes[next(iter(self._hashes))]
        return list(hashes)

    def mark_submitted(self, batch_id: int) -> None:
        """The batch's anchor call is in the outbox."""
        with self._lock:
            self._db.execute("UPDATE batches SET status = 'submitted' WHERE batch_id = ?"
                             " AND status = 'formed'", (batch_id,))

    def mark_anchored(self, batch_id: int, *, tx_hash: str, block: int, anchor_id: int,
                      log_index: int) -> None:
        """The batch's root is on chain (final): where its ``Anchored`` log is."""
        with self._lock:
            self._db.execute(
                "UPDATE batches SET status = 'anchored', tx_hash = ?, block = ?, anchor_id = ?,"
                " log_index = ?, error = NULL, settled = ? WHERE batch_id = ?",
                (tx_hash, block, anchor_id, log_index, self.clock(), batch_id),
            )

    def mark_failed(self, batch_id: int, error: str, *, tx_hash: str | None = None,
                    block: int | None = None) -> None:
        """The batch will never be anchored (its call reverted or could not be sent)."""
        with self._lock:
            self._db.execute(
                "UPDATE batches SET status = 'failed', error = ?, tx_hash = ?, block = ?,"
                " settled = ? WHERE batch_id = ?",
                (error[:500], tx_hash, block, self.clock(), batch_id),
            )

    def counts(self) -> dict[str, int]:
        """Readings per type, and how many wait for a batch (metrics, tests)."""
        with self._lock:
            rows = self._db.execute("SELECT type, COUNT(*) FROM readings GROUP BY type")
            out = {str(t): int(n) for t, n in rows}
            out["unbatched"] = int(self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE batch_id IS NULL AND kind > 0"
            ).fetchone()[0])
        return out

    def close(self) -> None:
        with self._lock:
            super().close()


_VESSEL_COLUMNS = "mmsi, imo, name, callsign, destination, eta, ship_type, updated"

#: Merge one vessel row: the newer data wins field by field, the older fills what is missing.
_VESSEL_UPSERT = """
INSERT INTO vessels (mmsi, imo, name, callsign, destination, eta, ship_type, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (mmsi) DO UPDATE SET
    imo = CASE WHEN excluded.updated >= updated THEN COALESCE(excluded.imo, imo)
               ELSE COALESCE(imo, excluded.imo) END,
    name = CASE WHEN excluded.updated >= updated THEN COALESCE(excluded.name, name)
                ELSE COALESCE(name, excluded.name) END,
    callsign = CASE WHEN excluded.updated >= updated THEN COALESCE(excluded.callsign, callsign)
                    ELSE COALESCE(callsign, excluded.callsign) END,
    destination = CASE WHEN excluded.updated >= updated
                       THEN COALESCE(excluded.destination, destination)
                       ELSE COALESCE(destination, excluded.destination) END,
    eta = CASE WHEN excluded.updated >= updated THEN COALESCE(excluded.eta, eta)
               ELSE COALESCE(eta, excluded.eta) END,
    ship_type = CASE WHEN excluded.updated >= updated
                     THEN COALESCE(excluded.ship_type, ship_type)
                     ELSE COALESCE(ship_type, excluded.ship_type) END,
    updated = MAX(updated, excluded.updated)
"""

_BATCH_COLUMNS = ("batch_id, org_id, kind, root, count, start_time, end_time, idem_key, status,"
                  " tx_hash, block, anchor_id, log_index, error")


def _batch(row: Sequence[Any]) -> BatchRecord:
    (batch_id, org_id, kind, root, count, start, end, key, status, tx_hash, block, anchor_id,
     log_index, error) = row
    return BatchRecord(batch_id, org_id, kind, bytes(root), count, start, end, key, status,
                       tx_hash, block, anchor_id, log_index, error)


def open_store(data_dir: Path, secret: bytes | None) -> TelemetryStore:
    """The gateway's telemetry store: ``<data_dir>/telemetry.sqlite``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return TelemetryStore(data_dir / FILE_NAME, secret=secret)
