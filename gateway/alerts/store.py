"""Alert episodes, their transitions, follows, read marks, preferences, tariffs and the mail
queue in SQLite (``alerts.db``, WAL).

One file, written only through :class:`AlertStore` (every method one short transaction on the
event loop's thread, as the other gateway stores):

``alerts``
    The last state of every episode per organisation, keyed ``(org_id, key)`` where ``key`` is
    the episode key of :class:`gateway.alerts.model.Alert` — so an evaluation after a restart
    finds the same row and records nothing twice. ``change_seq`` is the id of the episode's
    latest transition (what "unread" is measured against). Resolved episodes are kept: a
    re-evaluation of old facts then finds them, instead of reporting them again.
``transitions``
    Every opened / updated / resolved change, once, with its JSON (the webhook body item and
    the mail's source). ``dispatched`` is 0 until the channels (webhooks, mail) were queued for
    it — in the same transaction as its mail rows, so a crash in between re-dispatches it and
    the webhook queue's uniqueness per (webhook, transition) sends it once.
``subjects``
    The subjects the engine evaluated per organisation, with ``wake`` (when the clock alone next
    matters: :func:`gateway.alerts.rules.due`); the clock pass reads it with the open alerts'
    ``next_check``.
``links``
    Which documents and containers (and vessels and the documents naming them) an organisation
    saw linked, both ways: a customs hold on a declaration re-evaluates the containers it
    covers, an ETA on a B/L the vessel it names.
``follows``, ``reads``, ``preferences``, ``org_settings``, ``tariffs``, ``webhook_kinds``,
``mail``, ``progress``
    What an organisation watches beyond what it owns; read marks per reader (a user, or 0 for
    the organisation's API keys) up to a transition; per-user delivery preferences; per-
    organisation rule settings; published tariffs; the kinds each alert webhook takes; the mail
    queue (leases and backoff as the webhook queue, ``not_before`` for quiet hours and
    digests); how far the engine got through the read model and the telemetry store.

Nothing of an alert's content lies in the file in clear: episode, transition and queued mail
bodies (figures: remarks, names, places) are sealed with AES-256-GCM under a key derived from the
keystore secret ``alerts``, bound to their table and organisation; mail bodies are erased once
sent or given up, with ``secure_delete`` so free pages keep nothing. Reference numbers (the
subjects, follows, links) are kept in clear, as the read model's known references are; preferences
(kinds, times, a mailbox address), settings and published tariffs are not secrets.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import sqlite
from gateway.alerts.model import RESERVED, Alert, Source, Transition
from gateway.alerts.rules import as_of
from gateway.events.model import EventError, Reference, parse_time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_value TEXT NOT NULL,
    episode TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    opened INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    resolved INTEGER,
    next_check INTEGER,
    body BLOB NOT NULL,
    change_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (org_id, key)
);
CREATE INDEX IF NOT EXISTS alerts_inbox ON alerts (org_id, state, id);
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (org_id, subject_kind, subject_value);
DROP INDEX IF EXISTS alerts_clock;
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (next_check, org_id, subject_kind, subject_value)
    WHERE state = 'open';
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    alert_id INTEGER NOT NULL,
    change TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL,
    dispatched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transitions_pending ON transitions (id) WHERE dispatched = 0;
CREATE INDEX IF NOT EXISTS transitions_alert ON transitions (alert_id, id);
CREATE TABLE IF NOT EXISTS subjects (
    org_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    wake INTEGER,
    PRIMARY KEY (org_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subjects_wake ON subjects (wake) WHERE wake IS NOT NULL;
CREATE INDEX IF NOT EXISTS subjects_ref ON subjects (kind, value);
CREATE TABLE IF NOT EXISTS links (
    org_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    other_kind TEXT NOT NULL,
    other_value TEXT NOT NULL,
    PRIMARY KEY (org_id, kind, value, other_kind, other_value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS follows (
    org_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (org_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_created ON follows (created);
CREATE TABLE IF NOT EXISTS reads (
    org_id INTEGER NOT NULL,
    reader INTEGER NOT NULL,
    alert_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (org_id, reader, alert_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preferences (
    org_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (org_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS org_settings (
    org_id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tariffs (
    scope TEXT NOT NULL CHECK (scope IN ('terminal', 'carrier')),
    chain_org INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (scope, chain_org)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_kinds (
    webhook_id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL,
    kinds TEXT NOT NULL,
    changes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    transition_id INTEGER NOT NULL,
    body BLOB,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL,
    next_attempt REAL NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    last_error TEXT,
    UNIQUE (user_id, org_id, address, transition_id)
);
CREATE INDEX IF NOT EXISTS mail_due ON mail (next_attempt) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS progress (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: Page cache of a writing connection (KiB; pages are taken as used).
WRITER_CACHE_KIB = 65_536

_ALERT_COLUMNS = ("id, key, kind, subject_kind, subject_value, episode, state, opened, updated, "
                  "resolved, next_check, body, change_seq")


@dataclass(frozen=True)
class StoredAlert:
    """An episode as stored for one organisation: its row id and its latest transition."""

    id: int
    """Row id (the inbox's alert id)."""
    alert: Alert
    change_seq: int
    """Id of its latest transition (unread while a reader's mark is below it)."""

    def to_json(self, *, read: bool | None = None, now: int | None = None) -> dict[str, Any]:
        """Its JSON form as read at ``now`` (:func:`gateway.alerts.rules.as_of`: an open
        storage episode's meter as of that day; None: the stored form, with its basis)."""
        alert = self.alert.to_json()
        body = {"id": self.id, **(alert if now is None else as_of(alert, now))}
        if read is not None:
            body["read"] = read
        return body


@dataclass
class Record:
    """What one evaluation writes: changed episodes, transitions, the subjects' wake times."""

    org_id: int
    changed: list[Alert]
    transitions: list[Transition]
    subjects: dict[Reference, int | None]
    deliver: bool = True
    takes: frozenset[tuple[str, str]] | None = None
    """The (kind, change) pairs some channel of the organisation takes, decided once per
    evaluation (:meth:`gateway.alerts.delivery.Dispatcher.routes`): a transition outside them
    is written already dispatched, with no channel to queue it for. None: every transition
    goes to the dispatcher."""


@dataclass
class Batch:
    """Rows of many evaluations, bodies sealed, ready to be written (:meth:`AlertStore.write`);
    transition ids are numbered from 1 within the batch until then."""

    alerts: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    wakes: list[tuple[int, str, str, int | None]] = field(default_factory=list)


def _insert_rows(db: sqlite3.Connection, sql: str, row: str,
                 rows: Sequence[Sequence[Any]]) -> None:
    """``sql`` with ``{rows}`` replaced by as many ``row`` groups as fit one statement, run
    over ``rows`` in order."""
    if not rows:
        return
    per = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0]))
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        db.execute(sql.format(rows=",".join((row,) * len(chunk))),
                   list(itertools.chain.from_iterable(chunk)))


@dataclass(frozen=True)
class PendingTransition:
    """A transition whose channels were not queued yet."""

    id: int
    org_id: int
    alert_id: int
    change: str
    kind: str
    sealed: bytes
    """Its stored body (opened on demand: most transitions go to no webhook and no mail)."""
    opener: Callable[[bytes, str, int], str] = field(repr=False, compare=False)
    """How a stored body opens (:meth:`AlertStore._open`)."""

    @cached_property
    def text(self) -> str:
        """Its JSON."""
        return self.opener(self.sealed, "transitions", self.org_id)

    @cached_property
    def body(self) -> dict[str, Any]:
        """Its JSON form as :func:`told` (the webhook and mail bodies)."""
        return told(json.loads(self.text))


@dataclass(frozen=True)
class MailItem:
    """One queued mail row (one transition for one address)."""

    id: int
    org_id: int
    user_id: int
    address: str
    body: dict[str, Any]
    attempts: int


#: One encoder for every stored body (``json.dumps`` with options makes a new one a call).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact(value: Any) -> str:
    """The stored JSON of a body (an episode's :meth:`Alert.to_json`, a transition, a mail)."""
    return _COMPACT.encode(value)


def stored_body(alert: Alert) -> dict[str, Any]:
    """What an episode's row seals: its figures and sources. Its kind, subject, state, key and
    times are the row's columns (:func:`alert_from_row` reads rows written before, which
    sealed the whole JSON form, the same way: the members in columns are taken from them)."""
    return {**alert.figures, "sources": [s.to_json() for s in alert.sources]}


def told(body: dict[str, Any]) -> dict[str, Any]:
    """A stored transition's JSON as it tells what happened: an open storage episode's meter
    as of the transition's ``updated`` (:func:`gateway.alerts.rules.as_of`; a transition is
    stored with its episode's basis, as the episode is — one JSON text for both — and read
    through here by its webhook and mail bodies and its history row)."""
    if "basis" not in body:
        return body
    try:
        moment = parse_time(body["updated"], field="updated")
    except (KeyError, EventError) as exc:
        raise AlertStoreError(f"a stored transition has no valid updated time: {exc}") from None
    return as_of(body, moment)


@functools.lru_cache(maxsize=4096)
def _bound_to(table: str, org_id: int) -> bytes:
    """The associated data a body is sealed with: its table and organisation."""
    return f"{table}:{org_id}".encode()


def _nonces(per_draw: int = 256) -> Iterator[bytes]:
    """Fresh random 12-byte AES-GCM nonces, drawn from the system's random source
    ``per_draw`` at a time (one system call for a batch's bodies, not one a body)."""
    while True:
        block = os.urandom(12 * per_draw)
        for start in range(0, len(block), 12):
            yield block[start:start + 12]


def alert_from_row(row: Sequence[Any], body: str) -> StoredAlert:
    """An episode from its row and its (opened) JSON."""
    (id_, _key, kind, subject_kind, subject_value, episode, state, opened, updated, resolved,
     next_check, _sealed, change_seq) = row
    stored = json.loads(body)
    figures = {k: v for k, v in stored.items() if k not in RESERVED}
    sources = tuple(Source(s["kind"], s["ref"], s["publisher"]) for s in stored["sources"])
    alert = Alert(kind=kind, subject=Reference(subject_kind, subject_value), episode=episode,
                  state=state, opened=opened, updated=updated, resolved=resolved,
                  figures=figures, sources=sources, next_check=next_check)
    return StoredAlert(id_, alert, change_seq)


class AlertStore(sqlite.Store):
    """The alerts database (module docstring)."""

    def __init__(self, path: Path, *, secret: bytes | None) -> None:
        if secret is not None and len(secret) != 32:
            raise ValueError("the alerts secret is 32 bytes")
        super().__init__(path, _SCHEMA)
        self.path = path
        self._db.execute("PRAGMA secure_delete=ON")  # erased mail bodies leave no trace
        # the engine's batches are written through a connection of their own, from a worker
        # thread (:meth:`write`) while the event loop goes on with this one
        self._writer = self.connect()
        self._writing = threading.Lock()
        self._cipher = None if secret is None else AESGCM(
            hmac.new(secret, b"portledger/alerts/bodies", hashlib.sha256).digest())

    # -- sealing ----------------------------------------------------------------------------------
    def _seal(self, text: str, table: str, org_id: int, nonce: bytes | None = None) -> bytes:
        """AES-256-GCM of a JSON body, bound to its table and organisation (nonce first: 12
        random bytes, drawn here or by the caller from :func:`_nonces`)."""
        data = text.encode()
        if self._cipher is None:
            return data
        nonce = os.urandom(12) if nonce is None else nonce
        return nonce + self._cipher.encrypt(nonce, data, _bound_to(table, org_id))

    def _open(self, blob: bytes, table: str, org_id: int) -> str:
        data = bytes(blob)
        if self._cipher is None:
            return data.decode()
        try:
            return self._cipher.decrypt(data[:12], data[12:], _bound_to(table, org_id)).decode()
        except InvalidTag:
            raise AlertStoreError(f"an alert body of organisation {org_id} in {table} does "
                                  "not decrypt: damaged, moved, or another secret") from None

    def _alert(self, row: Sequence[Any], org_id: int) -> StoredAlert:
        return alert_from_row(row, self._open(row[11], "alerts", org_id))

    # -- episodes -------------------------------------------------------------------------------
    def states_of(self, org_id: int, subject: Reference) -> dict[str, Alert]:
        """Every stored episode (open and resolved) of a subject for an organisation, by key."""
        rows = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE org_id = ? AND subject_kind = ? "  # noqa: S608 (constant column list)
            "AND subject_value = ?", (org_id, subject.kind, subject.value)).fetchall()
        return {row[1]: self._alert(row, org_id).alert for row in rows}

    def record(self, org_id: int, changed: Iterable[Alert], transitions: Sequence[Transition],
               subjects: Mapping[Reference, int | None], *, deliver: bool = True,
               at: float | None = None) -> list[int]:
        """Write the changed episodes, their transitions and the subjects' wake times, all in
        one transaction; the new transition ids. ``deliver=False`` records the transitions
        as already dispatched (a first start's history: old news is not sent)."""
        return self.record_many([Record(org_id, list(changed), list(transitions),
                                        dict(subjects), deliver)], at=at)

    def record_many(self, records: Sequence[Record], *, at: float | None = None) -> list[int]:
        """:meth:`record` of many evaluations in one transaction (the clock pass):
        :meth:`write` of :meth:`prepare`."""
        return self.write(self.prepare(records, at=at))

    def prepare(self, records: Sequence[Record], *, at: float | None = None) -> Batch:
        """The rows of many evaluations, bodies sealed, for :meth:`write` (no database work:
        the JSON and the sealing hold the GIL, so they are done on the caller's thread)."""
        now = time.time() if at is None else at
        batch = Batch()
        seal = self._seal
        nonces = _nonces()
        for r in records:
            org_id = r.org_id
            changes = {t.alert.key: t for t in r.transitions}
            alerts = {a.key: a for a in r.changed}
            alerts.update({t.alert.key: t.alert for t in r.transitions})
            for key, alert in alerts.items():
                t = changes.get(key)
                # transition ids are counted on from the table's last one when written: the
                # k-th transition of the batch is that id + k (0: no transition)
                k = 0 if t is None else len(batch.transitions) + 1
                # an episode's row keeps its figures and sources (:func:`stored_body`): the
                # rest of its JSON form is in the row's columns
                body = compact(stored_body(alert))
                batch.alerts.append((
                    org_id, key, alert.kind, alert.subject.kind, alert.subject.value,
                    alert.episode, alert.state, alert.opened, alert.updated, alert.resolved,
                    alert.next_check if alert.is_open else None,
                    seal(body, "alerts", org_id, next(nonces)), k))
                if t is None:
                    continue
                extra = (',"first_seen_resolved":true'  # an episode that ended unseen
                         if t.change == "resolved" and t.previous is None else "")
                # the episode's JSON form as it is now (its fixed members, then the stored
                # body): an open storage episode keeps its meter's basis, read as of the
                # transition's ``updated`` (:func:`told`)
                head = compact(alert.head_json())
                quiet = not r.deliver or (r.takes is not None
                                          and (alert.kind, t.change) not in r.takes)
                batch.transitions.append((
                    k, org_id, org_id, key, t.change, alert.kind, now,
                    seal(f'{{"change":"{t.change}",{head[1:-1]},{body[1:-1]}{extra}}}',
                         "transitions", org_id, next(nonces)), 1 if quiet else 0))
            batch.wakes += [(org_id, ref.kind, ref.value, wake)
                            for ref, wake in r.subjects.items()]
        return batch

    def write(self, batch: Batch, *, on: sqlite3.Connection | None = None) -> list[int]:
        """Write a prepared batch in one transaction; the new transition ids. Safe from a
        worker thread: its own connection, one writer at a time, and each table's rows in
        statements of many rows — one step each, so the GIL is let go of and taken back a few
        times per batch rather than once per row (``executemany`` steps once per row).
        ``on``: a connection of the caller's (a clock-pass worker process: :meth:`connect`)."""
        if not (batch.alerts or batch.wakes):
            return []
        if on is not None:
            return self._write_on(on, batch)
        with self._writing:
            return self._write_on(self._writer, batch)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the file, for a process of its own (a connection opened
        before a ``fork`` is never used after it, in either process)."""
        db = sqlite.connect(self.path)
        db.execute("PRAGMA secure_delete=ON")
        # a pass writes episodes all over the table and its indexes: their pages stay in this
        # connection's cache (SQLite's default is 2 MiB) instead of being read again
        db.execute(f"PRAGMA cache_size={-WRITER_CACHE_KIB}")
        return db

    def _write_on(self, writer: sqlite3.Connection, batch: Batch) -> list[int]:
        with sqlite.transaction(writer) as db:
            # read inside the write lock: another process may record too
            (last,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM transitions").fetchone()
            base = int(last)
            alerts = [(*row[:12], base + row[12] if row[12] else 0) for row in batch.alerts]
            transitions = [(base + row[0], *row[1:]) for row in batch.transitions]
            _insert_rows(db, "INSERT INTO alerts (org_id, key, kind, subject_kind, "
                         "subject_value, episode, state, opened, updated, resolved, next_check, "
                         "body, change_seq) VALUES {rows} ON CONFLICT (org_id, key) DO UPDATE "
                         "SET state = excluded.state, opened = excluded.opened, "
                         "updated = excluded.updated, resolved = excluded.resolved, "
                         "next_check = excluded.next_check, body = excluded.body, "
                         "change_seq = MAX(change_seq, excluded.change_seq)",
                         "(?,?,?,?,?,?,?,?,?,?,?,?,?)", alerts)
            # (a transition's id is above every earlier one: MAX keeps the latest; 0 keeps it)
            _insert_rows(db, "INSERT INTO transitions (id, org_id, alert_id, change, kind, at, "
                         "body, dispatched) VALUES {rows}",
                         "(?,?,(SELECT id FROM alerts WHERE org_id = ? AND key = ?),?,?,?,?,?)",
                         transitions)
            _insert_rows(db, "INSERT INTO subjects (org_id, kind, value, wake) VALUES {rows} "
                         "ON CONFLICT (org_id, kind, value) DO UPDATE SET wake = excluded.wake",
                         "(?,?,?,?)", batch.wakes)
        return [row[0] for row in transitions]

    def close(self) -> None:
        with self._writing:
            self._writer.close()
        super().close()

    def due(self, now: int, limit: int = 1_000_000) -> list[tuple[int, Reference]]:
        """The clock pass's candidates: (organisation, subject) pairs whose open episodes'
        ``next_check`` or whose ``wake`` is at or before ``now`` (:func:`rules.due` over the
        store, by its indexes)."""
        rows = self._db.execute(
            "SELECT org_id, subject_kind, subject_value FROM alerts "
            "WHERE state = 'open' AND next_check IS NOT NULL AND next_check <= ? "
            "UNION SELECT org_id, kind, value FROM subjects WHERE wake IS NOT NULL AND wake <= ? "
            "ORDER BY 1, 2, 3 LIMIT ?", (now, now, limit)).fetchall()
        return [(org, Reference(kind, value)) for org, kind, value in rows]

    def wake_all(self, at: int, *, kind: str | None = None, org_id: int | None = None) -> int:
        """Make subjects (of a kind, of an organisation) due at ``at`` for the clock pass (a
        tariff or settings changed); how many."""
        sql = "UPDATE subjects SET wake = MIN(COALESCE(wake, ?), ?) WHERE 1 = 1"
        args: list[Any] = [at, at]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if org_id is not None:
            sql += " AND org_id = ?"
            args.append(org_id)
        with self._transaction() as db:
            return int(db.execute(sql, args).rowcount)

    def subjects_of(self, org_id: int) -> list[Reference]:
        """Every subject the engine evaluated for an organisation."""
        return [Reference(k, v) for k, v in self._db.execute(
            "SELECT kind, value FROM subjects WHERE org_id = ?", (org_id,))]

    def watchers(self, subject: Reference) -> list[int]:
        """Organisations the engine evaluated ``subject`` for."""
        return [int(r[0]) for r in self._db.execute(
            "SELECT org_id FROM subjects WHERE kind = ? AND value = ?",
            (subject.kind, subject.value))]

    def knows(self, org_id: int, subject: Reference) -> bool:
        return self._db.execute(
            "SELECT 1 FROM subjects WHERE org_id = ? AND kind = ? AND value = ?",
            (org_id, subject.kind, subject.value)).fetchone() is not None

    # -- links ----------------------------------------------------------------------------------
    def add_links(self, org_id: int, pairs: Iterable[tuple[Reference, Reference]]) -> None:
        """Record that ``a`` and ``b`` were seen linked (both ways)."""
        rows = []
        for a, b in pairs:
            rows.append((org_id, a.kind, a.value, b.kind, b.value))
            rows.append((org_id, b.kind, b.value, a.kind, a.value))
        if rows:
            with self._transaction() as db:
                db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?, ?, ?)", rows)

    def links_of(self, org_id: int, subject: Reference, limit: int = 500) -> list[Reference]:
        return [Reference(k, v) for k, v in self._db.execute(
            "SELECT other_kind, other_value FROM links WHERE org_id = ? AND kind = ? "
            "AND value = ? LIMIT ?", (org_id, subject.kind, subject.value, limit))]

    # -- the inbox --------------------------------------------------------------------------
    def inbox(self, org_id: int, reader: int, *, state: str | None, kinds: Sequence[str],
              unread: bool, before: int | None, limit: int,
              subject: Reference | None = None) -> list[tuple[StoredAlert, bool]]:
        """An organisation's alerts, newest first, with whether ``reader`` has read them."""
        sql = (f"SELECT {', '.join('a.' + c.strip() for c in _ALERT_COLUMNS.split(','))}, "  # noqa: S608 (constant column list and ? placeholders)
               "COALESCE(r.seq, 0) >= a.change_seq FROM alerts a LEFT JOIN reads r ON "
               "r.org_id = a.org_id AND r.reader = ? AND r.alert_id = a.id WHERE a.org_id = ?")
        args: list[Any] = [reader, org_id]
        if state is not None:
            sql += " AND a.state = ?"
            args.append(state)
        if kinds:
            sql += f" AND a.kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        if unread:
            sql += " AND COALESCE(r.seq, 0) < a.change_seq"
        if subject is not None:
            sql += " AND a.subject_kind = ? AND a.subject_value = ?"
            args += [subject.kind, subject.value]
        if before is not None:
            sql += " AND a.id < ?"
            args.append(before)
        sql += " ORDER BY a.id DESC LIMIT ?"
        args.append(limit)
        return [(self._alert(row[:-1], org_id), bool(row[-1]))
                for row in self._db.execute(sql, args).fetchall()]

    def alert(self, org_id: int, alert_id: int) -> StoredAlert | None:
        row = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE org_id = ? AND id = ?",  # noqa: S608 (constant column list)
            (org_id, alert_id)).fetchone()
        return self._alert(row, org_id) if row else None

    def unread_count(self, org_id: int, reader: int, kinds: Sequence[str]) -> int:
        """Open or resolved alerts of ``kinds`` changed since ``reader`` last read them."""
        if not kinds:
            return 0
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM alerts a LEFT JOIN reads r ON r.org_id = a.org_id AND "  # noqa: S608 (? placeholders only)
            "r.reader = ? AND r.alert_id = a.id WHERE a.org_id = ? AND "
            f"a.kind IN ({','.join('?' * len(kinds))}) AND COALESCE(r.seq, 0) < a.change_seq",
            (reader, org_id, *kinds)).fetchone()
        return int(count)

    def mark_read(self, org_id: int, reader: int, alert_ids: Sequence[int]) -> int:
        """Mark alerts read by ``reader`` up to their latest transition; how many exist."""
        done = 0
        with self._transaction() as db:
            for alert_id in alert_ids:
                row = db.execute("SELECT change_seq FROM alerts WHERE org_id = ? AND id = ?",
                                 (org_id, alert_id)).fetchone()
                if row is None:
                    continue
                done += 1
                db.execute(
                    "INSERT INTO reads (org_id, reader, alert_id, seq) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (org_id, reader, alert_id) DO UPDATE SET seq = excluded.seq",
                    (org_id, reader, alert_id, row[0]))
        return done

    def alert_ids(self, org_id: int, kinds: Sequence[str], limit: int = 10_000) -> list[int]:
        if not kinds:
            return []
        return [int(r[0]) for r in self._db.execute(
            f"SELECT id FROM alerts WHERE org_id = ? AND kind IN ({','.join('?' * len(kinds))}) "  # noqa: S608 (? placeholders only)
            "ORDER BY id DESC LIMIT ?", (org_id, *kinds, limit))]

    def history(self, alert_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """An alert's transitions, oldest first (change, when, and the state then)."""
        return [{"id": i, "change": c, "at": at,
                 "alert": told(json.loads(self._open(body, "transitions", org)))}
                for i, c, at, body, org in self._db.execute(
                    "SELECT id, change, at, body, org_id FROM transitions WHERE alert_id = ? "
                    "ORDER BY id LIMIT ?", (alert_id, limit))]

    # -- follows ------------------------------------------------------------------------------
    def follow(self, org_id: int, refs: Sequence[Reference], *, limit: int) -> int:
        """Add follows; how many were new. Raises :class:`TooManyFollows` past ``limit``."""
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO follows VALUES (?, ?, ?, ?)",
                           [(org_id, r.kind, r.value, time.time()) for r in refs])
            added = db.total_changes - before
            (count,) = db.execute("SELECT COUNT(*) FROM follows WHERE org_id = ?",
                                  (org_id,)).fetchone()
            if count > limit:
                raise TooManyFollows(limit)
            if added:
                self._bump(db, "follows")
        return added

    def unfollow(self, org_id: int, ref: Reference) -> bool:
        with self._transaction() as db:
            gone = bool(db.execute("DELETE FROM follows WHERE org_id = ? AND kind = ? AND "
                                   "value = ?", (org_id, ref.kind, ref.value)).rowcount)
            if gone:
                self._bump(db, "follows")
            return gone

    def follows(self, org_id: int) -> list[tuple[Reference, float]]:
        return [(Reference(k, v), c) for k, v, c in self._db.execute(
            "SELECT kind, value, created FROM follows WHERE org_id = ? ORDER BY created, kind, "
            "value", (org_id,))]

    def followers(self) -> tuple[dict[int, list[Reference]], float]:
        """Every organisation's follows, and the latest time one was made (0: none), read in
        one statement (one snapshot)."""
        out: dict[int, list[Reference]] = {}
        latest = 0.0
        for org, kind, value, created in self._db.execute(
                "SELECT org_id, kind, value, created FROM follows"):
            out.setdefault(int(org), []).append(Reference(kind, value))
            latest = max(latest, float(created))
        return out, latest

    def follows_since(self, created: float) -> tuple[list[tuple[int, Reference, float]], int]:
        """The follows made at or after ``created`` (organisation, reference, when), and how
        many follows there are in all, read in one statement (one snapshot): the engine adds
        the new ones to what it holds, and reads all again when the count says some went."""
        rows = self._db.execute(
            "SELECT org_id, kind, value, created FROM follows WHERE created >= ? "
            "UNION ALL SELECT NULL, NULL, NULL, COUNT(*) FROM follows", (created,)).fetchall()
        *found, (_, _, _, total) = rows
        return [(int(o), Reference(k, v), float(c)) for o, k, v, c in found], int(total)

    # -- preferences and settings ------------------------------------------------------------
    def preferences(self, org_id: int, user_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM preferences WHERE org_id = ? AND user_id = ?",
                               (org_id, user_id)).fetchone()
        return json.loads(row[0]) if row else None

    def preferences_of(self, org_id: int) -> dict[int, dict[str, Any]]:
        return {int(u): json.loads(b) for u, b in self._db.execute(
            "SELECT user_id, body FROM preferences WHERE org_id = ?", (org_id,))}

    def set_preferences(self, org_id: int, user_id: int, body: Mapping[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO preferences VALUES (?, ?, ?, ?) ON CONFLICT (org_id, user_id)"
                       " DO UPDATE SET body = excluded.body, updated = excluded.updated",
                       (org_id, user_id, json.dumps(body), time.time()))

    def org_settings(self) -> dict[int, dict[str, Any]]:
        return {int(o): json.loads(b) for o, b in self._db.execute(
            "SELECT org_id, body FROM org_settings")}

    def set_org_settings(self, org_id: int, body: Mapping[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO org_settings VALUES (?, ?, ?) ON CONFLICT (org_id) DO UPDATE "
                       "SET body = excluded.body, updated = excluded.updated",
                       (org_id, json.dumps(body), time.time()))
            self._bump(db, "settings")

    # -- tariffs ---------------------------------------------------------------------------------
    def tariff(self, scope: str, chain_org: int) -> tuple[dict[str, Any], float] | None:
        row = self._db.execute("SELECT body, updated FROM tariffs WHERE scope = ? AND "
                               "chain_org = ?", (scope, chain_org)).fetchone()
        return (json.loads(row[0]), float(row[1])) if row else None

    def tariffs(self) -> list[tuple[str, int, dict[str, Any], float]]:
        return [(s, int(o), json.loads(b), float(u)) for s, o, b, u in self._db.execute(
            "SELECT scope, chain_org, body, updated FROM tariffs")]

    def set_tariff(self, scope: str, chain_org: int, body: Mapping[str, Any]) -> float:
        now = time.time()
        with self._transaction() as db:
            db.execute("INSERT INTO tariffs VALUES (?, ?, ?, ?) ON CONFLICT (scope, chain_org) "
                       "DO UPDATE SET body = excluded.body, updated = excluded.updated",
                       (scope, chain_org, json.dumps(body), now))
            self._bump(db, "tariffs")
        return now

    # -- webhooks' kinds ----------------------------------------------------------------------
    def set_webhook_kinds(self, webhook_id: str, org_id: int, kinds: Sequence[str],
                          changes: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO webhook_kinds VALUES (?, ?, ?, ?) ON CONFLICT (webhook_id) "
                       "DO UPDATE SET kinds = excluded.kinds, changes = excluded.changes",
                       (webhook_id, org_id, json.dumps(list(kinds)), json.dumps(list(changes))))

    def webhook_kinds(self) -> dict[str, tuple[int, list[str], list[str]]]:
        return {w: (int(o), json.loads(k), json.loads(c)) for w, o, k, c in self._db.execute(
            "SELECT webhook_id, org_id, kinds, changes FROM webhook_kinds")}

    def drop_webhook(self, webhook_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM webhook_kinds WHERE webhook_id = ?", (webhook_id,))

    # -- dispatch -------------------------------------------------------------------------------
    def undispatched(self, limit: int = 1000) -> list[PendingTransition]:
        return [PendingTransition(i, o, a, c, k, bytes(b), self._open) for i, o, a, c, k, b in
                self._db.execute("SELECT id, org_id, alert_id, change, kind, body FROM "
                                 "transitions WHERE dispatched = 0 ORDER BY id LIMIT ?",
                                 (limit,))]

    def dispatched(self, transition_ids: Sequence[int],
                   mails: Sequence[tuple[int, int, str, int, dict[str, Any], float]]) -> None:
        """Mark transitions dispatched and queue their mail rows (org, user, address,
        transition, body, not before), in one transaction."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO mail (org_id, user_id, address, transition_id, body, "
                "status, not_before, next_attempt, created) VALUES (?, ?, ?, ?, ?, 'pending', "
                "?, ?, ?)",
                [(o, u, a, t, self._seal(compact(b), "mail", o), nb, nb, now)
                 for o, u, a, t, b, nb in mails])
            per = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
            for start in range(0, len(transition_ids), per):  # a statement, not a step, a row
                chunk = list(transition_ids[start:start + per])
                db.execute("UPDATE transitions SET dispatched = 1 WHERE id IN "  # noqa: S608 (? placeholders only)
                           f"({','.join('?' * len(chunk))})", chunk)

    # -- the mail queue -----------------------------------------------------------------------
    def mail_due(self, now: float, limit: int = 50) -> list[MailItem]:
        """Pending mail rows due by ``now`` (their own time and their backoff), for the
        addresses that have any, oldest first: the rows one message per address will carry."""
        rows = self._db.execute(
            "SELECT id, org_id, user_id, address, body, attempts FROM mail WHERE "
            "status = 'pending' AND next_attempt <= ? AND address IN (SELECT address FROM mail "
            "WHERE status = 'pending' AND next_attempt <= ? ORDER BY next_attempt LIMIT ?) "
            "ORDER BY address, id", (now, now, limit)).fetchall()
        return [MailItem(i, o, u, a, json.loads(self._open(b, "mail", o)), n)
                for i, o, u, a, b, n in rows]

    def mail_next_due(self) -> float | None:
        (when,) = self._db.execute(
            "SELECT MIN(next_attempt) FROM mail WHERE status = 'pending'").fetchone()
        return None if when is None else float(when)

    def mail_claim(self, ids: Sequence[int], lease: float) -> list[int]:
        """Count an attempt for each row and push its next attempt ``lease`` seconds ahead
        (written before the message goes out); the ids still pending."""
        now = time.time()
        with self._transaction() as db:
            kept = [i for i in ids if db.execute(
                "UPDATE mail SET attempts = attempts + 1, next_attempt = ? WHERE id = ? AND "
                "status = 'pending'", (now + lease, i)).rowcount]
        return kept

    def mail_sent(self, ids: Sequence[int]) -> None:
        now = time.time()
        with self._transaction() as db:
            db.executemany("UPDATE mail SET status = 'sent', finished = ?, body = NULL, "
                           "last_error = NULL WHERE id = ? AND status = 'pending'",
                           [(now, i) for i in ids])

    def mail_failed(self, ids: Sequence[int], error: str, *, retry_in: float | None,
                    max_attempts: int) -> None:
        """Record a failed attempt: retried after ``retry_in`` (None: a permanent refusal),
        given up (``failed``, body erased) once a row has had ``max_attempts``."""
        now = time.time()
        with self._transaction() as db:
            for i in ids:
                row = db.execute("SELECT attempts FROM mail WHERE id = ? AND status = 'pending'",
                                 (i,)).fetchone()
                if row is None:
                    continue
                if retry_in is None or row[0] >= max_attempts:
                    db.execute("UPDATE mail SET status = 'failed', finished = ?, body = NULL, "
                               "last_error = ? WHERE id = ?", (now, error[:500], i))
                else:
                    db.execute("UPDATE mail SET next_attempt = ?, last_error = ? WHERE id = ?",
                               (now + retry_in, error[:500], i))

    def mail_counts(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._db.execute(
            "SELECT status, COUNT(*) FROM mail GROUP BY status")}

    def mail_log(self, org_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return [{"id": i, "userId": u, "address": a, "transition": t, "status": s,
                 "attempts": n, "lastError": e}
                for i, u, a, t, s, n, e in self._db.execute(
                    "SELECT id, user_id, address, transition_id, status, attempts, last_error "
                    "FROM mail WHERE org_id = ? ORDER BY id DESC LIMIT ?", (org_id, limit))]

    # -- progress -----------------------------------------------------------------------------
    def progress(self, name: str) -> int | None:
        row = self._db.execute("SELECT value FROM progress WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _bump(db: Any, name: str) -> None:
        db.execute("INSERT INTO progress VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET "
                   "value = value + 1", (f"version:{name}",))

    def versions(self) -> dict[str, int]:
        """Change counters of follows, settings and tariffs (another process may write them)."""
        return {n.removeprefix("version:"): int(v) for n, v in self._db.execute(
            "SELECT name, value FROM progress WHERE name LIKE 'version:%'")}

    def set_progress(self, name: str, value: int) -> None:
        """Move a progress mark forward (never back)."""
        with self._transaction() as db:
            db.execute("INSERT INTO progress VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                       "value = MAX(value, excluded.value)", (name, value))


class AlertStoreError(Exception):
    """The alerts database cannot be read (a body does not decrypt)."""


class TooManyFollows(Exception):
    """An organisation follows :attr:`limit` references already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an organisation follows at most {limit} references")
        self.limit = limit
