"""The read model: what the chain says, indexed for the gateway's queries.

The chain is the source of truth; the read model is a *derived* copy, written only by the
indexer (:mod:`gateway.indexer`) from finalized blocks and rebuildable from genesis at any time.
It holds, per block range, in one transaction together with the indexer's cursor:

- the organisations directory (Consortium: names, roles, X25519 keys, accounts, active flag);
- cargo events (CargoLedger logs): the clear header fields, the encrypted envelope, and what
  the envelope says in clear (named readers, key version, readable by reference);
- bills of lading (master → containers, house → master and the containers it covers);
- access grants (owner, subject, reader, expiry, wrapped key) and per-event
  "readable by reference" flags;
- telemetry anchors and customs declarations with their status history;
- the cursor: the last indexed block's number and hash;
- the *change journal*: every write of chain-derived rows bumps a generation number and notes
  which subject keys it touched (an event's subject, a grant's target, a master or house B/L, a
  declaration; "everything" for directory changes, bulk loads and resets), so a process that
  caches answers derived from the read model (:mod:`gateway.tracking`'s view cache) can tell
  per request whether anything changed, and then drop only what did. The generation is also
  published, after each commit, in an 8-byte shared-memory file next to the database
  (``readmodel.db-generation``), so that check costs a memory read instead of a query; every
  process re-reads the database's own number at least once a second, which repairs the file if a
  writer died between its commit and the publication.

Besides the chain-derived tables it keeps two gateway-local ones that a rebuild keeps: the
*access log* ("who saw my data": every read of an organisation's data by another one) and the
*known references* of each organisation (reference numbers it has legitimately read, which the
resolver searches for near matches).

Reference numbers appear only as subject keys (``keccak`` of the normalised reference); the
plaintext numbers are known only to readers who decrypt records (see :mod:`gateway.tracking`).

Storage is behind :class:`ReadModel` so a large operator can put PostgreSQL behind the same
interface; :class:`SqliteReadModel` is the embedded default: one WAL-mode file ``readmodel.db``
under the data directory. Reads are synchronous indexed lookups on the caller's thread (a
tracking request is a handful of B-tree probes, cheaper than a thread hop); writes go through a
separate connection so the indexer and the access log can write from a worker thread while the
event loop reads.
"""

from __future__ import annotations

import abc
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from gateway.appkeys import CONFIG, READ_MODEL
from gateway.beacon import GenerationBeacon
from gateway.config import GatewayConfig

#: File name of the SQLite read model under the data directory.
FILE_NAME = "readmodel.db"

#: Version of the table layout; a mismatch refuses to open (rebuild instead).
SCHEMA_VERSION = 1

#: AccessGrants scopes.
SUBJECT_SCOPE = 1
EVENT_SCOPE = 2


class ReadModelError(Exception):
    """The read model cannot be opened or used (wrong schema version, closed)."""


class CursorMoved(ReadModelError):
    """A range was written against a cursor that is no longer the stored one.

    Two indexers (two worker processes) raced; the loser re-reads the cursor and carries on,
    and nothing is written twice.
    """


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The last block whose changes are in the read model."""

    block: int
    """Block number."""
    block_hash: bytes
    """Its 32-byte hash (checked against the chain before every range)."""


@dataclass(frozen=True)
class Organisation:
    """A Consortium member as the directory shows it."""

    org_id: int
    """Consortium organisation id."""
    name: str
    """Registered name."""
    roles: int
    """Role bitmask (:data:`contracts.ROLES`)."""
    encryption_key: bytes
    """32-byte X25519 public key records and grants are wrapped for."""
    active: bool
    """False while suspended."""
    accounts: tuple[str, ...] = ()
    """Checksummed accounts that sign for it."""


@dataclass(frozen=True)
class IndexedEvent:
    """One cargo event as indexed (clear fields and the envelope; never plaintext)."""

    event_id: int
    """CargoLedger event id (batch sequence << 16 | index)."""
    block: int
    """Block number."""
    tx_hash: bytes
    """Hash of the ``record()`` transaction."""
    log_index: int
    """Index of the log in its block."""
    block_time: int
    """Block timestamp, Unix seconds."""
    publisher: int
    """Publishing (owning) organisation."""
    subject: bytes
    """32-byte subject key."""
    type_code: int
    """Event type code (:data:`contracts.cargo.EVENT_TYPES`)."""
    classifier: int
    """1 PLN, 2 EST, 3 ACT."""
    event_time: int
    """When it happened, Unix seconds."""
    location: str
    """UN/LOCODE or empty."""
    retracts: int
    """Event id this one retracts, or 0."""
    payload_hash: bytes
    """keccak-256 of the plaintext."""
    envelope: bytes
    """The encrypted envelope (:mod:`gateway.confidential`)."""
    key_version: int = 0
    """Subject-key version it was sealed under (from the envelope; 0 if unparseable)."""
    readers: tuple[int, ...] = ()
    """Named reader organisations (from the envelope)."""
    reference_readable: bool = False
    """Readable by holders of the reference: envelope flag, unless the publisher set the
    AccessGrants flag explicitly (then that choice)."""
    retracted_by: int = 0
    """Id of the publisher's event that retracts this one, or 0."""


@dataclass(frozen=True)
class Grant:
    """An AccessGrants grant as last set on chain."""

    owner: int
    """Granting (owner) organisation."""
    scope: int
    """:data:`SUBJECT_SCOPE` or :data:`EVENT_SCOPE`."""
    target: bytes
    """Subject key, or the event id as 32 big-endian bytes."""
    reader: int
    """Grantee organisation."""
    expiry: int
    """Unix seconds after which it lapses; 0 for never."""
    wrapped_key: bytes
    """The owner's key wrapped for the reader."""
    granted_block: int
    """Block of the grant."""
    active: bool
    """False once revoked."""

    def in_force(self, now: float) -> bool:
        """Active and not expired at ``now`` (the contract's ``_in_force``)."""
        return self.active and (self.expiry == 0 or now <= self.expiry)


@dataclass(frozen=True)
class House:
    """A house B/L linked under a master B/L."""

    house: bytes
    """House B/L subject key."""
    master: bytes
    """Master B/L subject key."""
    forwarder: int
    """Linking forwarder organisation."""
    containers: tuple[bytes, ...]
    """Container subject keys the house covers (on-chain mapping)."""


@dataclass(frozen=True)
class Declaration:
    """A customs declaration and its status history."""

    declaration: bytes
    """Declaration subject key."""
    declarant: int
    """Filing organisation."""
    authority: int
    """Customs authority code."""
    document_hash: bytes
    """Hash of the filed document."""
    filed_time: int
    """Block time of the filing."""
    statuses: tuple[tuple[int, int, int, bytes], ...] = ()
    """``(block time, posting org, status code, note hash)`` in order."""


@dataclass(frozen=True)
class Anchor:
    """A telemetry Merkle root."""

    anchor_id: int
    """Anchor id."""
    publisher: int
    """Publishing organisation."""
    kind: int
    """Telemetry kind code."""
    root: bytes
    """Merkle root."""
    count: int
    """Readings under it."""
    start: int
    """First reading time."""
    end: int
    """Last reading time."""
    block: int
    """Block number."""


class AccessEntry(NamedTuple):
    """One read of an organisation's data by another one (a tuple: the hot path makes many,
    and a batch of them is written as it is)."""

    owner: int
    """The organisation whose data was read."""
    reader: int
    """The organisation that read it."""
    event_id: int
    """The event read."""
    subject: bytes
    """Its subject key."""
    time: int
    """When, Unix seconds."""
    via: str
    """How the reader was entitled: ``named``, ``grant`` or ``reference``, or ``proof`` for a
    proof bundle the owner approved and the reader downloaded (:mod:`gateway.api_proofs`)."""


#: An :class:`AccessEntry` as a plain tuple (the garbage collector stops scanning plain tuples
#: of numbers and strings; a buffer of many thousands of pending entries is made of these).
AccessRow = tuple[int, int, int, bytes, int, str]


# -- changes (what one block range writes) ----------------------------------------------------


@dataclass(frozen=True)
class OrgChange:
    """An organisation's record as read at the indexed block (MemberAdded and friends)."""

    org: Organisation
    """The whole record; accounts replace the stored ones."""


@dataclass(frozen=True)
class EventAdded:
    """A cargo event log."""

    event: IndexedEvent
    """The event."""


@dataclass(frozen=True)
class MasterContainers:
    """MasterRegistered (``registered``) or ContainersAdded."""

    master: bytes
    """Master B/L subject key."""
    carrier: int
    """Carrier organisation."""
    containers: tuple[bytes, ...]
    """Container subject keys added."""
    block: int
    """Block number."""


@dataclass(frozen=True)
class HouseChange:
    """HouseLinked / HouseCorrected (containers given) or HouseUnlinked (``containers`` None)."""

    house: bytes
    """House B/L subject key."""
    master: bytes
    """Master B/L subject key."""
    forwarder: int
    """Forwarder organisation."""
    containers: tuple[bytes, ...] | None
    """Covered containers (replacing the previous set), or None when unlinked."""
    block: int
    """Block number."""


@dataclass(frozen=True)
class GrantChange:
    """AccessGranted (``grant`` active) or AccessRevoked (inactive, empty key)."""

    grant: Grant
    """The grant as it now stands."""


@dataclass(frozen=True)
class ReferenceFlag:
    """ReferenceReadableSet."""

    event_id: int
    """The event."""
    readable: bool
    """The publisher's choice."""


@dataclass(frozen=True)
class AnchorAdded:
    """Anchored."""

    anchor: Anchor
    """The anchor."""


@dataclass(frozen=True)
class DeclarationFiled:
    """DeclarationFiled."""

    declaration: bytes
    """Declaration subject key."""
    declarant: int
    """Filing organisation."""
    authority: int
    """Authority code."""
    document_hash: bytes
    """Document hash."""
    block: int
    """Block number."""
    block_time: int
    """Block time."""


@dataclass(frozen=True)
class DeclarationStatus:
    """StatusPosted."""

    declaration: bytes
    """Declaration subject key."""
    org: int
    """Posting organisation (customs)."""
    status: int
    """Status code (Declarations.vy: 1 filed … 7 rejected)."""
    note_hash: bytes
    """Hash of the note."""
    block: int
    """Block number."""
    log_index: int
    """Log index in the block (orders postings)."""
    block_time: int
    """Block time."""


Change = (
    OrgChange
    | EventAdded
    | MasterContainers
    | HouseChange
    | GrantChange
    | ReferenceFlag
    | AnchorAdded
    | DeclarationFiled
    | DeclarationStatus
)


@dataclass
class EventFilter:
    """Filters of :meth:`ReadModel.find_events` (all optional, combined with AND)."""

    subjects: Sequence[bytes] = ()
    """Only these subject keys."""
    publishers: Sequence[int] = ()
    """Only these publishers."""
    type_codes: Sequence[int] = ()
    """Only these event type codes."""
    classifier: int = 0
    """Only this classifier (0: any)."""
    location: str = ""
    """Only this UN/LOCODE."""
    time_from: int | None = None
    """Event time at or after."""
    time_to: int | None = None
    """Event time at or before."""
    created_after: int | None = None
    """Block time after."""
    after_id: int = 0
    """Paging: event ids greater than this."""
    limit: int = 100
    """At most this many, in event-id order."""
    readers_any: Sequence[int] = field(default_factory=tuple)
    """Only events naming one of these readers (OR-ed with :attr:`publishers`)."""
    granted: Sequence[tuple[int, bytes]] = field(default_factory=tuple)
    """``(owner, subject)`` pairs whose events also match (OR-ed with :attr:`publishers`)."""


# -- the interface ----------------------------------------------------------------------------


class ReadModel(abc.ABC):
    """Storage of the read model. Reads are synchronous and cheap; writes are transactional."""

    # chain-derived writes
    @abc.abstractmethod
    def cursor(self) -> Cursor | None:
        """The last indexed block, or None before the first range."""

    @abc.abstractmethod
    def generation(self) -> int:
        """The change journal's generation: a number that grows with every write of
        chain-derived rows (0 before the first). Cheap enough to read on every request."""

    @abc.abstractmethod
    def changed_since(self, generation: int) -> tuple[int, frozenset[bytes] | None]:
        """The current generation and the subject keys touched by the writes after
        ``generation``.

        Returns
        -------
        (int, frozenset of bytes or None)
            The generation the answer is as of (read from the journal itself), and the keys
            (events' subjects, grants' targets — for an event grant, the event's subject —,
            master and house B/Ls, declarations), or None when everything must be taken as
            changed (the directory changed, a bulk load or reset, or ``generation`` is older
            than the journal keeps or newer than the current one).
        """

    @abc.abstractmethod
    def apply(self, changes: Sequence[Change], cursor: Cursor, expected: Cursor | None) -> None:
        """Write one range's changes and move the cursor, in one transaction.

        Raises
        ------
        CursorMoved
            The stored cursor is not ``expected`` (nothing is written).
        """

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every chain-derived row and the cursor (the access log and known references stay)."""

    # directory
    @abc.abstractmethod
    def organisation(self, org_id: int) -> Organisation | None:
        """One organisation."""

    @abc.abstractmethod
    def organisations(self) -> list[Organisation]:
        """Every organisation, by id."""

    # events
    @abc.abstractmethod
    def event(self, event_id: int) -> IndexedEvent | None:
        """One event."""

    @abc.abstractmethod
    def events_of_subjects(self, subjects: Sequence[bytes], limit: int = 2000) -> list[IndexedEvent]:
        """Events about any of ``subjects``, by event time (then id)."""

    @abc.abstractmethod
    def find_events(self, flt: EventFilter) -> list[IndexedEvent]:
        """Events matching ``flt`` in event-id order."""

    @abc.abstractmethod
    def event_count(self) -> int:
        """Number of indexed events."""

    # bills of lading
    @abc.abstractmethod
    def master(self, master: bytes) -> tuple[int, tuple[bytes, ...]] | None:
        """``(carrier, container keys)`` of a registered master B/L."""

    @abc.abstractmethod
    def house(self, house: bytes) -> House | None:
        """A linked house B/L."""

    @abc.abstractmethod
    def houses_of_master(self, master: bytes) -> list[House]:
        """The houses linked under a master."""

    @abc.abstractmethod
    def masters_of_container(self, container: bytes) -> list[bytes]:
        """Masters listing a container."""

    # grants
    @abc.abstractmethod
    def grant(self, owner: int, scope: int, target: bytes, reader: int) -> Grant | None:
        """A grant as last set (active or revoked), or None if never granted."""

    @abc.abstractmethod
    def grants_to(self, reader: int, targets: Sequence[bytes]) -> list[Grant]:
        """Every active grant to ``reader`` on any of ``targets`` (any owner)."""

    @abc.abstractmethod
    def grants_of_reader(self, reader: int, limit: int = 10_000) -> list[Grant]:
        """Every active grant to ``reader``."""

    # anchors, declarations
    @abc.abstractmethod
    def anchor(self, anchor_id: int) -> Anchor | None:
        """One anchor."""

    @abc.abstractmethod
    def declaration(self, declaration: bytes) -> Declaration | None:
        """A declaration with its history."""

    # access log and known references (gateway-local)
    @abc.abstractmethod
    def log_access(self, entries: Sequence[AccessEntry] | Sequence[AccessRow]) -> None:
        """Append access-log entries (one transaction), as :class:`AccessEntry` or the same
        fields in a plain tuple."""

    @abc.abstractmethod
    def access_log(self, owner: int, *, before: int = 0, limit: int = 100) -> list[tuple[int, AccessEntry]]:
        """``(entry id, entry)`` of reads of ``owner``'s data, newest first, ids below ``before``."""

    @abc.abstractmethod
    def add_known_references(self, org: int, refs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(kind, value)`` references ``org`` has read."""

    @abc.abstractmethod
    def known_references(self, org: int, limit: int = 50_000) -> list[tuple[str, str]]:
        """The references ``org`` has read, ``(kind, value)``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage."""


# -- SQLite -----------------------------------------------------------------------------------

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


#: Journal entry meaning "take everything as changed".
_EVERYTHING = b""

#: Most access-log rows per INSERT statement (6 parameters each; fewer if the SQLite build
#: allows fewer parameters per statement).
_ROWS_PER_INSERT = 500

#: Generations the change journal keeps (a process further behind drops all it cached).
JOURNAL_KEEP = 10_000


def _readers_text(readers: Sequence[int]) -> str:
    return ",".join(str(r) for r in readers)


def _event_from_row(row: tuple) -> IndexedEvent:
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
                                        lambda: self._stored_generation(self._db))

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

    def _stored_generation(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _publish(self, generation: int | None) -> None:
        """Publish a committed generation (after the commit, so a process that reads it finds
        the commit in its next query)."""
        if generation is not None:
            self._beacon.publish(generation)

    def generation(self) -> int:
        return self._beacon.current()

    def changed_since(self, generation: int) -> tuple[int, frozenset[bytes] | None]:
        db = self._db
        db.execute("BEGIN")  # one snapshot for the floor, the generation and the rows
        try:
            meta = dict(db.execute(
                "SELECT key, value FROM meta WHERE key IN ('generation', 'journal_floor')"
            ).fetchall())
            current = int(meta.get("generation", 0))
            if not int(meta.get("journal_floor", 0)) <= generation <= current:
                return current, None
            rows = db.execute(
                "SELECT DISTINCT subject FROM change_journal WHERE generation > ?", (generation,)
            ).fetchall()
        finally:
            db.execute("COMMIT")
        subjects = frozenset(bytes(r[0]) for r in rows)
        return current, None if _EVERYTHING in subjects else subjects

    def apply(self, changes: Sequence[Change], cursor: Cursor, expected: Cursor | None) -> None:
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT block, hash FROM cursor WHERE id = 1").fetchone()
                stored = Cursor(row[0], bytes(row[1])) if row else None
                if stored != expected:
                    raise CursorMoved(f"cursor is {stored}, expected {expected}")
                touched: set[bytes] = set()
                for change in changes:
                    self._apply_one(db, change, touched)
                published = self._journal(db, touched)
                db.execute(
                    "INSERT INTO cursor (id, block, hash, updated) VALUES (1, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET block = excluded.block, hash = excluded.hash, "
                    "updated = excluded.updated",
                    (cursor.block, cursor.block_hash, time.time()),
                )
                db.execute("COMMIT")
                self._publish(published)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _journal(db: sqlite3.Connection, touched: set[bytes]) -> int | None:
        """Bump the generation and note ``touched`` (inside the writing transaction); the new
        generation, or None if nothing was touched."""
        if not touched:
            return None
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        generation = (int(row[0]) if row else 0) + 1
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(generation),)
        )
        db.executemany(
            "INSERT OR IGNORE INTO change_journal (generation, subject) VALUES (?, ?)",
            [(generation, subject) for subject in touched],
        )
        floor = generation - JOURNAL_KEEP
        if floor > 0 and generation % 1000 == 0:  # prune now and then, not on every write
            db.execute("DELETE FROM change_journal WHERE generation <= ?", (floor,))
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('journal_floor', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(floor),)
            )
        return generation

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
                    f"INSERT INTO events ({_EVENT_COLUMNS}) "
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
            case OrgChange(org=o):
                touched.add(_EVERYTHING)  # names and keys show in every answer
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
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) "
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
                published = self._journal(db, {_EVERYTHING})
                db.execute("COMMIT")
                self._publish(published)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """Apply changes without touching the cursor (benchmarks, tests)."""
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                touched: set[bytes] = set()
                for change in changes:
                    self._apply_one(db, change, touched)
                published = self._journal(db, touched)
                db.execute("COMMIT")
                self._publish(published)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def reset(self) -> None:
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                for table in CHAIN_TABLES:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
                published = self._journal(db, {_EVERYTHING})
                db.execute("COMMIT")
                self._publish(published)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # directory
    @staticmethod
    def _org(row: tuple) -> Organisation:
        org_id, name, roles, key, active, accounts = row
        return Organisation(
            org_id, name, roles, bytes(key), bool(active),
            tuple(a for a in accounts.split(",") if a),
        )

    def organisation(self, org_id: int) -> Organisation | None:
        row = self._db.execute(
            "SELECT org_id, name, roles, encryption_key, active, accounts FROM orgs "
            "WHERE org_id = ?", (org_id,),
        ).fetchone()
        return self._org(row) if row else None

    def organisations(self) -> list[Organisation]:
        rows = self._db.execute(
            "SELECT org_id, name, roles, encryption_key, active, accounts FROM orgs "
            "ORDER BY org_id"
        ).fetchall()
        return [self._org(r) for r in rows]

    # events
    def event(self, event_id: int) -> IndexedEvent | None:
        row = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?",  # noqa: S608
            (event_id,),
        ).fetchone()
        return _event_from_row(row) if row else None

    def events_of_subjects(self, subjects: Sequence[bytes], limit: int = 2000) -> list[IndexedEvent]:
        if not subjects:
            return []
        marks = ",".join("?" * len(subjects))
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE subject IN ({marks}) "  # noqa: S608
            "ORDER BY event_time, event_id LIMIT ?",
            (*subjects, limit),
        ).fetchall()
        return [_event_from_row(r) for r in rows]

    def find_events(self, flt: EventFilter) -> list[IndexedEvent]:
        where, args = ["e.event_id > ?"], [flt.after_id]

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
                f"e.event_id IN (SELECT event_id FROM event_readers WHERE reader IN ({marks}))"
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
            f"SELECT {columns} FROM events e WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY e.event_id LIMIT ?",
            args,
        ).fetchall()
        return [_event_from_row(r) for r in rows]

    def event_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

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
    def _grant(row: tuple) -> Grant:
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
            "SELECT owner, scope, target, reader, expiry, wrapped_key, block, active FROM grants "
            f"WHERE reader = ? AND target IN ({marks}) AND active = 1",  # noqa: S608
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
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                # many rows per statement: executemany would run one step per row, and a
                # step lets go of the GIL, so a big batch written from a worker thread
                # would hand the GIL back and forth with the event loop once per row
                per = min(_ROWS_PER_INSERT,
                          max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 6))
                for start in range(0, len(entries), per):
                    chunk = entries[start : start + per]
                    db.execute(
                        "INSERT INTO access_log (owner, reader, event_id, subject, time, via) "
                        "VALUES " + ",".join(("(?,?,?,?,?,?)",) * len(chunk)),  # noqa: S608
                        list(itertools.chain.from_iterable(chunk)),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

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
