"""The read model in one SQLite file: :class:`SqliteReadModel`, the embedded default behind
:class:`gateway.readside.readmodel.ReadModel`, and ``setup`` (``app[READ_MODEL]``).

One WAL-mode file ``readmodel.db`` under the data directory. Reads are synchronous indexed
lookups on the caller's thread (a tracking request is a handful of B-tree probes, cheaper than a
thread hop); writes go through a separate connection so the indexer and the access log can
write from a worker thread while the event loop reads. Each write runs in
:func:`gateway.sqlite.transaction` and notes what it touched in the change journal
(:mod:`gateway.readside.journal`), whose generation is published after the commit in
``readmodel.db-generation`` (:class:`gateway.beacon.GenerationBeacon`).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.appkeys import CONFIG, READ_MODEL
from gateway.beacon import GenerationBeacon
from gateway.config import GatewayConfig
from gateway.readside import journal
from gateway.readside.journal import EVERYTHING
from gateway.readside.readmodel import (
    EVENT_SCOPE,
    AccessEntry,
    AccessRow,
    Anchor,
    AnchorAdded,
    Change,
    Cursor,
    CursorMoved,
    Declaration,
    DeclarationFiled,
    DeclarationStatus,
    EventAdded,
    EventFilter,
    Grant,
    GrantChange,
    House,
    HouseChange,
    IndexedEvent,
    MasterContainers,
    Member,
    MemberChange,
    ReadModel,
    ReadModelError,
    ReferenceFlag,
)
from gateway.sqlite import transaction

#: File name of the SQLite read model under the data directory.
FILE_NAME = "readmodel.db"

#: Version of the table layout; a mismatch refuses to open (rebuild instead).
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1), block INTEGER NOT NULL, hash BLOB NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orgs (
    org_id INTEGER PRIMARY KEY, name TEXT NOT NULL, roles INTEGER NOT NULL,
    encryption_key BLOB NOT NULL, active INTEGER NOT NULL, accounts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY, block INTEGER NOT NULL, tx_hash BLOB NOT NULL,
    log_index INTEGER NOT NULL, block_time INTEGER NOT NULL, publisher INTEGER NOT NULL,
    subject BLOB NOT NULL, type_code INTEGER NOT NULL, classifier INTEGER NOT NULL,
    event_time INTEGER NOT NULL, location TEXT NOT NULL, retracts INTEGER NOT NULL,
    payload_hash BLOB NOT NULL, envelope BLOB NOT NULL, key_version INTEGER NOT NULL,
    readers TEXT NOT NULL, reference_readable INTEGER NOT NULL, reference_flag INTEGER,
    retracted_by INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_subject ON events (subject, event_time);
CREATE INDEX IF NOT EXISTS events_publisher ON events (publisher, event_id);
CREATE INDEX IF NOT EXISTS events_time ON events (event_time);
CREATE INDEX IF NOT EXISTS events_block ON events (block);
CREATE TABLE IF NOT EXISTS event_readers (
    reader INTEGER NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (reader, event_id))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reference_flags (
    event_id INTEGER PRIMARY KEY, readable INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS masters (
    master BLOB PRIMARY KEY, carrier INTEGER NOT NULL, block INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS master_containers (
    master BLOB NOT NULL, container BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (master, container)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS master_containers_container ON master_containers (container);
CREATE TABLE IF NOT EXISTS houses (
    house BLOB PRIMARY KEY, master BLOB NOT NULL, forwarder INTEGER NOT NULL,
    containers BLOB NOT NULL, block INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS houses_master ON houses (master);
CREATE TABLE IF NOT EXISTS grants (
    owner INTEGER NOT NULL, scope INTEGER NOT NULL, target BLOB NOT NULL, reader INTEGER NOT NULL,
    expiry INTEGER NOT NULL, wrapped_key BLOB NOT NULL, block INTEGER NOT NULL,
    active INTEGER NOT NULL, PRIMARY KEY (owner, scope, target, reader)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grants_reader ON grants (reader, target);
CREATE TABLE IF NOT EXISTS anchors (
    anchor_id INTEGER PRIMARY KEY, publisher INTEGER NOT NULL, kind INTEGER NOT NULL,
    root BLOB NOT NULL, count INTEGER NOT NULL, start INTEGER NOT NULL, end_time INTEGER NOT NULL,
    block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS declarations (
    declaration BLOB PRIMARY KEY, declarant INTEGER NOT NULL, authority INTEGER NOT NULL,
    document_hash BLOB NOT NULL, block INTEGER NOT NULL, block_time INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS declaration_statuses (
    declaration BLOB NOT NULL, block INTEGER NOT NULL, log_index INTEGER NOT NULL,
    org INTEGER NOT NULL, status INTEGER NOT NULL, note_hash BLOB NOT NULL,
    block_time INTEGER NOT NULL, PRIMARY KEY (declaration, block, log_index)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, reader INTEGER NOT NULL,
    event_id INTEGER NOT NULL, subject BLOB NOT NULL, time INTEGER NOT NULL, via TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS access_log_owner ON access_log (owner, id);
CREATE TABLE IF NOT EXISTS change_journal (
    generation INTEGER NOT NULL, subject BLOB NOT NULL, PRIMARY KEY (generation, subject))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_refs (
    org INTEGER NOT NULL, value TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (org, value, kind)) WITHOUT ROWID;
"""

#: Chain-derived tables (what :meth:`SqliteReadModel.reset` empties).
CHAIN_TABLES = (
    "cursor",
    "orgs",
    "events",
    "event_readers",
    "reference_flags",
    "masters",
    "master_containers",
    "houses",
    "grants",
    "anchors",
    "declarations",
    "declaration_statuses",
)

_EVENT_COLUMNS = (
    "event_id, block, tx_hash, log_index, block_time, publisher, subject, type_code, "
    "classifier, event_time, location, retracts, payload_hash, envelope, key_version, readers, "
    "reference_readable, reference_flag, retracted_by"
)


#: Most access-log rows per INSERT statement (6 parameters each; fewer if the SQLite build
#: allows fewer parameters per statement).
_ROWS_PER_INSERT = 500


def _readers_text(readers: Sequence[int]) -> str:
    return ",".join(str(r) for r in readers)


def _event_from_row(row: tuple[Any, ...]) -> IndexedEvent:
    (eid, block, tx, li, bt, pub, subject, tc, cl, et, loc, rt, ph, env, kv, readers, rr, flag,
     rby) = row
    return IndexedEvent(
        event_id=eid,
        block=block,
        tx_hash=tx,
        log_index=li,
        block_time=bt,
        publisher=pub,
        subject=subject,
        type_code=tc,
        classifier=cl,
        event_time=et,
        location=loc,
        retracts=rt,
        payload_hash=ph,
        envelope=env,
        key_version=kv,
        readers=tuple(int(r) for r in readers.split(",")) if readers else (),
        reference_readable=bool(rr if flag is None else (flag and rr)),
        retracted_by=rby,
    )


def _pack_keys(keys: Sequence[bytes]) -> bytes:
    return b"".join(keys)


def _unpack_keys(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=30.0
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=1073741824")
    return conn


class SqliteReadModel(ReadModel):
    """The read model in one SQLite file (WAL): a reading connection and a writing one.

    Parameters
    ----------
    path
        The database file (created with its tables if missing).

    Notes
    -----
    The reading connection belongs to the thread that opened the model (the event loop's);
    the writing connection may be used from any thread and is serialised by a lock. Both see
    committed data only (WAL snapshots), so a reader never sees half a range.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._writer = _connect(self.path, check_same_thread=False)
        with self._write_lock:
            self._writer.executescript(_SCHEMA)
            row = self._writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._writer.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) != SCHEMA_VERSION:
                self._writer.close()
                raise ReadModelError(
                    f"{self.path}: read model schema {row[0]}, this gateway needs "
                    f"{SCHEMA_VERSION}; rebuild it"
                )
        self._local = threading.local()
        self._closed = False
        self._beacon = GenerationBeacon(self.path.with_name(self.path.name + "-generation"),
                                        lambda: journal.stored_generation(self._db))

    # connections
    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's reading connection."""
        if self._closed:
            raise ReadModelError("the read model is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
            conn.execute("PRAGMA query_only=1")
        return conn

    def close(self) -> None:
        self._closed = True
        with self._write_lock:
            self._writer.close()
            self._beacon.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # writes
    def cursor(self) -> Cursor | None:
        row = self._db.execute("SELECT block, hash FROM cursor WHERE id = 1").fetchone()
        return Cursor(row[0], bytes(row[1])) if row else None

    def _publish(self, generation: int | None) -> None:
        """Publish a committed generation (after the commit, so a process that reads it finds
        the commit in its next query)."""
        if generation is not None:
            self._beacon.publish(generation)

    def generation(self) -> int:
        return self._beacon.current()

    def changed_since(self, generation: int) -> tuple[int, frozenset[bytes] | None]:
        return journal.changed_since(self._db, generation)

    def apply(self, changes: Sequence[Change], cursor: Cursor, expected: Cursor | None) -> None:
        with self._write_lock:
            with transaction(self._writer) as db:
                row = db.execute("SELECT block, hash FROM cursor WHERE id = 1").fetchone()
                stored = Cursor(row[0], bytes(row[1])) if row else None
                if stored != expected:
                    raise CursorMoved(f"cursor is {stored}, expected {expected}")
                touched: set[bytes] = set()
                for change in changes:
                    self._apply_one(db, change, touched)
                published = journal.record(db, touched)
                db.execute(
                    "INSERT INTO cursor (id, block, hash, updated) VALUES (1, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET block = excluded.block, hash = excluded.hash, "
                    "updated = excluded.updated",
                    (cursor.block, cursor.block_hash, time.time()),
                )
            self._publish(published)

    @staticmethod
    def _subject_of(db: sqlite3.Connection, event_id: int) -> bytes | None:
        row = db.execute("SELECT subject FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return bytes(row[0]) if row else None

    @classmethod
    def _apply_one(cls, db: sqlite3.Connection, change: Change, touched: set[bytes]) -> None:
        """Write one change; add the subject keys it touches to ``touched``."""
        match change:
            case EventAdded(event=e):
                touched.add(e.subject)
                db.execute(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) "  # noqa: S608 (constant names and ? placeholders only)
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,0)",
                    (e.event_id, e.block, e.tx_hash, e.log_index, e.block_time, e.publisher,
                     e.subject, e.type_code, e.classifier, e.event_time, e.location, e.retracts,
                     e.payload_hash, e.envelope, e.key_version, _readers_text(e.readers),
                     int(e.reference_readable)),
                )
                if e.readers:
                    db.executemany(
                        "INSERT OR IGNORE INTO event_readers (reader, event_id) VALUES (?, ?)",
                        [(r, e.event_id) for r in e.readers],
                    )
                if e.retracts:
                    db.execute(
                        "UPDATE events SET retracted_by = ? WHERE event_id = ? AND publisher = ?",
                        (e.event_id, e.retracts, e.publisher),
                    )
                    retracted = cls._subject_of(db, e.retracts)
                    if retracted is not None:
                        touched.add(retracted)
            case MemberChange(member=o):
                touched.add(EVERYTHING)  # names and keys show in every answer
                db.execute(
                    "INSERT INTO orgs (org_id, name, roles, encryption_key, active, accounts) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT (org_id) DO UPDATE SET name = excluded.name, "
                    "roles = excluded.roles, encryption_key = excluded.encryption_key, "
                    "active = excluded.active, accounts = excluded.accounts",
                    (o.org_id, o.name, o.roles, o.encryption_key, int(o.active),
                     ",".join(o.accounts)),
                )
            case MasterContainers(master=m, carrier=c, containers=cs, block=b):
                touched.add(m)
                db.execute(
                    "INSERT OR IGNORE INTO masters (master, carrier, block) VALUES (?,?,?)",
                    (m, c, b),
                )
                (base,) = db.execute(
                    "SELECT count(*) FROM master_containers WHERE master = ?", (m,)
                ).fetchone()
                db.executemany(
                    "INSERT OR IGNORE INTO master_containers (master, container, seq) "
                    "VALUES (?,?,?)",
                    [(m, k, base + i) for i, k in enumerate(cs)],
                )
            case HouseChange(house=h, master=m, forwarder=f, containers=cs, block=b):
                touched.update((h, m))
                if cs is None:
                    db.execute("DELETE FROM houses WHERE house = ?", (h,))
                else:
                    db.execute(
                        "INSERT INTO houses (house, master, forwarder, containers, block) "
                        "VALUES (?,?,?,?,?) ON CONFLICT (house) DO UPDATE SET "
                        "master = excluded.master, forwarder = excluded.forwarder, "
                        "containers = excluded.containers, block = excluded.block",
                        (h, m, f, _pack_keys(cs), b),
                    )
            case GrantChange(grant=g):
                if g.scope == EVENT_SCOPE:
                    granted = cls._subject_of(db, int.from_bytes(g.target, "big"))
                    if granted is not None:
                        touched.add(granted)
                else:
                    touched.add(g.target)
                db.execute(
                    "INSERT INTO grants (owner, scope, target, reader, expiry, wrapped_key, "
                    "block, active) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT "
                    "(owner, scope, target, reader) DO UPDATE SET expiry = excluded.expiry, "
                    "wrapped_key = excluded.wrapped_key, block = excluded.block, "
                    "active = excluded.active",
                    (g.owner, g.scope, g.target, g.reader, g.expiry, g.wrapped_key,
                     g.granted_block, int(g.active)),
                )
            case ReferenceFlag(event_id=eid, readable=r):
                flagged = cls._subject_of(db, eid)
                if flagged is not None:
                    touched.add(flagged)
                db.execute(
                    "INSERT INTO reference_flags (event_id, readable) VALUES (?, ?) "
                    "ON CONFLICT (event_id) DO UPDATE SET readable = excluded.readable",
                    (eid, int(r)),
                )
                db.execute(
                    "UPDATE events SET reference_flag = ? WHERE event_id = ?", (int(r), eid)
                )
            case AnchorAdded(anchor=a):
                db.execute(
                    "INSERT INTO anchors (anchor_id, publisher, kind, root, count, start, "
                    "end_time, block) VALUES (?,?,?,?,?,?,?,?)",
                    (a.anchor_id, a.publisher, a.kind, a.root, a.count, a.start, a.end, a.block),
                )
            case DeclarationFiled() as d:
                touched.add(d.declaration)
                db.execute(
                    "INSERT OR REPLACE INTO declarations (declaration, declarant, authority, "
                    "document_hash, block, block_time) VALUES (?,?,?,?,?,?)",
                    (d.declaration, d.declarant, d.authority, d.document_hash, d.block,
                     d.block_time),
                )
            case DeclarationStatus() as s:
                touched.add(s.declaration)
                db.execute(
                    "INSERT INTO declaration_statuses (declaration, block, log_index, org, status, "
                    "note_hash, block_time) VALUES (?,?,?,?,?,?,?)",
                    (s.declaration, s.block, s.log_index, s.org, s.status, s.note_hash,
                     s.block_time),
                )
            case _:
                raise TypeError(f"not a read-model change: {change!r}")

    def bulk_insert_events(self, events: Sequence[IndexedEvent]) -> None:
        """Insert many events in one transaction without moving the cursor (benchmarks, tests)."""
        with self._write_lock:
            with transaction(self._writer) as db:
                db.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) "  # noqa: S608 (constant names and ? placeholders only)
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,0)",
                    [
                        (e.event_id, e.block, e.tx_hash, e.log_index, e.block_time, e.publisher,
                         e.subject, e.type_code, e.classifier, e.event_time, e.location,
                         e.retracts, e.payload_hash, e.envelope, e.key_version,
                         _readers_text(e.readers), int(e.reference_readable))
                        for e in events
                    ],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO event_readers (reader, event_id) VALUES (?, ?)",
                    [(r, e.event_id) for e in events for r in e.readers],
                )
                published = journal.record(db, {EVERYTHING})
            self._publish(published)

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """Apply changes without touching the cursor (benchmarks, tests)."""
        with self._write_lock:
            with transaction(self._writer) as db:
                touched: set[bytes] = set()
                for change in changes:
                    self._apply_one(db, change, touched)
                published = journal.record(db, touched)
            self._publish(published)

    def touch(self, subjects: Iterable[bytes]) -> None:
        touched = set(subjects)
        if not touched:
            return
        with self._write_lock:
            with transaction(self._writer) as db:
                published = journal.record(db, touched)
            self._publish(published)

    def reset(self) -> None:
        with self._write_lock:
            with transaction(self._writer) as db:
                for table in CHAIN_TABLES:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 (constant names and ? placeholders only)
                published = journal.record(db, {EVERYTHING})
            self._publish(published)

    # directory
    @staticmethod
    def _member(row: tuple[Any, ...]) -> Member:
        org_id, name, roles, key, active, accounts = row
        return Member(
            org_id, name, roles, bytes(key), bool(active),
            tuple(a for a in accounts.split(",") if a),
        )

    def organisation(self, org_id: int) -> Member | None:
        row = self._db.execute(
            "SELECT org_id, name, roles, encryption_key, active, accounts FROM orgs "
            "WHERE org_id = ?", (org_id,),
        ).fetchone()
        return self._member(row) if row else None

    def organisations(self) -> list[Member]:
        rows = self._db.execute(
            "SELECT org_id, name, roles, encryption_key, active, accounts FROM orgs "
            "ORDER BY org_id"
        ).fetchall()
        return [self._member(r) for r in rows]

    # events
    def event(self, event_id: int) -> IndexedEvent | None:
        row = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?",  # noqa: S608 (constant names and ? placeholders only)
            (event_id,),
        ).fetchone()
        return _event_from_row(row) if row else None

    def events_of_subjects(self, subjects: Sequence[bytes], limit: int = 2000) -> list[IndexedEvent]:
        if not subjects:
            return []
        marks = ",".join("?" * len(subjects))
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE subject IN ({marks}) "  # noqa: S608 (constant names and ? placeholders only)
            "ORDER BY event_time, event_id LIMIT ?",
            (*subjects, limit),
        ).fetchall()
        return [_event_from_row(r) for r in rows]

    def find_events(self, flt: EventFilter) -> list[IndexedEvent]:
        where: list[str] = ["e.event_id > ?"]
        args: list[object] = [flt.after_id]

        def inlist(column: str, values: Sequence[object]) -> str:
            args.extend(values)
            return f"{column} IN ({','.join('?' * len(values))})"

        if flt.subjects:
            where.append(inlist("e.subject", flt.subjects))
        who = []
        if flt.publishers:
            who.append(inlist("e.publisher", flt.publishers))
        if flt.readers_any:
            marks = ",".join("?" * len(flt.readers_any))
            args.extend(flt.readers_any)
            who.append(
                f"e.event_id IN (SELECT event_id FROM event_readers WHERE reader IN ({marks}))"  # noqa: S608 (constant names and ? placeholders only)
            )
        for owner, subject in flt.granted:
            who.append("(e.publisher = ? AND e.subject = ?)")
            args.extend((owner, subject))
        if who:
            where.append("(" + " OR ".join(who) + ")")
        if flt.type_codes:
            where.append(inlist("e.type_code", flt.type_codes))
        if flt.classifier:
            where.append("e.classifier = ?")
            args.append(flt.classifier)
        if flt.location:
            where.append("e.location = ?")
            args.append(flt.location)
        if flt.time_from is not None:
            where.append("e.event_time >= ?")
            args.append(flt.time_from)
        if flt.time_to is not None:
            where.append("e.event_time <= ?")
            args.append(flt.time_to)
        if flt.created_after is not None:
            where.append("e.block_time > ?")
            args.append(flt.created_after)
        args.append(flt.limit)
        columns = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
        rows = self._db.execute(
            f"SELECT {columns} FROM events e WHERE {' AND '.join(where)} "  # noqa: S608 (constant names and ? placeholders only)
            "ORDER BY e.event_id LIMIT ?",
            args,
        ).fetchall()
        return [_event_from_row(r) for r in rows]

    def event_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    # bills of lading
    def master(self, master: bytes) -> tuple[int, tuple[bytes, ...]] | None:
        row = self._db.execute("SELECT carrier FROM masters WHERE master = ?", (master,)).fetchone()
        if row is None:
            return None
        rows = self._db.execute(
            "SELECT container FROM master_containers WHERE master = ? ORDER BY seq", (master,)
        ).fetchall()
        return row[0], tuple(bytes(r[0]) for r in rows)

    def house(self, house: bytes) -> House | None:
        row = self._db.execute(
            "SELECT house, master, forwarder, containers FROM houses WHERE house = ?", (house,)
        ).fetchone()
        return House(bytes(row[0]), bytes(row[1]), row[2], _unpack_keys(row[3])) if row else None

    def houses_of_master(self, master: bytes) -> list[House]:
        rows = self._db.execute(
            "SELECT house, master, forwarder, containers FROM houses WHERE master = ?", (master,)
        ).fetchall()
        return [House(bytes(r[0]), bytes(r[1]), r[2], _unpack_keys(r[3])) for r in rows]

    def masters_of_container(self, container: bytes) -> list[bytes]:
        rows = self._db.execute(
            "SELECT master FROM master_containers WHERE container = ?", (container,)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    # grants
    @staticmethod
    def _grant(row: tuple[Any, ...]) -> Grant:
        owner, scope, target, reader, expiry, wrapped, block, active = row
        return Grant(owner, scope, bytes(target), reader, expiry, bytes(wrapped), block, bool(active))

    def grant(self, owner: int, scope: int, target: bytes, reader: int) -> Grant | None:
        row = self._db.execute(
            "SELECT owner, scope, target, reader, expiry, wrapped_key, block, active FROM grants "
            "WHERE owner = ? AND scope = ? AND target = ? AND reader = ?",
            (owner, scope, target, reader),
        ).fetchone()
        return self._grant(row) if row else None

    def grants_to(self, reader: int, targets: Sequence[bytes]) -> list[Grant]:
        if not targets:
            return []
        marks = ",".join("?" * len(targets))
        rows = self._db.execute(
            "SELECT owner, scope, target, reader, expiry, wrapped_key, block, active FROM grants "  # noqa: S608 (constant names and ? placeholders only)
            f"WHERE reader = ? AND target IN ({marks}) AND active = 1",
            (reader, *targets),
        ).fetchall()
        return [self._grant(r) for r in rows]

    def grants_of_reader(self, reader: int, limit: int = 10_000) -> list[Grant]:
        rows = self._db.execute(
            "SELECT owner, scope, target, reader, expiry, wrapped_key, block, active FROM grants "
            "WHERE reader = ? AND active = 1 LIMIT ?",
            (reader, limit),
        ).fetchall()
        return [self._grant(r) for r in rows]

    # anchors, declarations
    def anchor(self, anchor_id: int) -> Anchor | None:
        row = self._db.execute(
            "SELECT anchor_id, publisher, kind, root, count, start, end_time, block FROM anchors "
            "WHERE anchor_id = ?", (anchor_id,),
        ).fetchone()
        if row is None:
            return None
        return Anchor(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6], row[7])

    def declaration(self, declaration: bytes) -> Declaration | None:
        row = self._db.execute(
            "SELECT declarant, authority, document_hash, block_time FROM declarations "
            "WHERE declaration = ?", (declaration,),
        ).fetchone()
        if row is None:
            return None
        statuses = self._db.execute(
            "SELECT block_time, org, status, note_hash FROM declaration_statuses "
            "WHERE declaration = ? ORDER BY block, log_index", (declaration,),
        ).fetchall()
        return Declaration(
            declaration, row[0], row[1], bytes(row[2]), row[3],
            tuple((s[0], s[1], s[2], bytes(s[3])) for s in statuses),
        )

    # access log, known references
    def log_access(self, entries: Sequence[AccessEntry] | Sequence[AccessRow]) -> None:
        if not entries:
            return
        with self._write_lock, transaction(self._writer) as db:
            # many rows per statement: executemany would run one step per row, and a
            # step lets go of the GIL, so a big batch written from a worker thread
            # would hand the GIL back and forth with the event loop once per row
            per = min(_ROWS_PER_INSERT,
                      max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 6))
            for start in range(0, len(entries), per):
                chunk = entries[start : start + per]
                db.execute(
                    "INSERT INTO access_log (owner, reader, event_id, subject, time, via) "
                    "VALUES " + ",".join(("(?,?,?,?,?,?)",) * len(chunk)),
                    list(itertools.chain.from_iterable(chunk)),
                )

    def access_log(self, owner: int, *, before: int = 0, limit: int = 100) -> list[tuple[int, AccessEntry]]:
        rows = self._db.execute(
            "SELECT id, owner, reader, event_id, subject, time, via FROM access_log "
            "WHERE owner = ? AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
            (owner, before, before, limit),
        ).fetchall()
        return [(r[0], AccessEntry(r[1], r[2], r[3], bytes(r[4]), r[5], r[6])) for r in rows]

    def add_known_references(self, org: int, refs: Iterable[tuple[str, str]]) -> None:
        rows = [(org, value, kind) for kind, value in refs]
        if not rows:
            return
        with self._write_lock:
            self._writer.executemany(
                "INSERT OR IGNORE INTO known_refs (org, value, kind) VALUES (?,?,?)", rows
            )

    def known_references(self, org: int, limit: int = 50_000) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT kind, value FROM known_refs WHERE org = ? LIMIT ?", (org, limit)
        ).fetchall()
        return [(r[0], r[1]) for r in rows]


def open_read_model(config: GatewayConfig) -> SqliteReadModel:
    """The read model of a gateway: ``<data_dir>/readmodel.db``."""
    return SqliteReadModel(config.path(FILE_NAME))




async def _read_model_ctx(app: web.Application) -> AsyncIterator[None]:
    model = open_read_model(app[CONFIG])
    app[READ_MODEL] = model
    try:
        yield
    finally:
        model.close()


def setup(app: web.Application) -> None:
    """Open the read model for the app's lifetime (``app[READ_MODEL]``)."""
    app.cleanup_ctx.append(_read_model_ctx)
