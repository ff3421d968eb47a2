"""``declarations.db``: shipments' goods data, corrections, approvals, the submission outbox and
each submission's status history.

Tables (one SQLite file, WAL; :class:`gateway.sqlite.Store`):

- ``shipments`` — per organisation and transport document: the goods lines, the upload's
  options (direction, parties, readers, authorities, crossing) and the declaration's secret
  **chain salt** (32 random bytes, made once when the shipment is first stored and kept across
  re-uploads; :func:`gateway.declarations.onchain.chain_key`) as one sealed body;
- ``corrections`` — each field change with who and when (sealed value), in order;
- ``approvals`` — per draft: who approved which document (its SHA-256) and when;
- ``submissions`` — the outbox: keyed by the submission id (SHA-256 of organisation,
  shipment, draft and document), so a repeated submit or a restart never lodges twice; the
  sealed document, status, attempts, next attempt, last error, official number, sealed reasons,
  the last status recorded as a customs event, and where its filing on chain stands
  (``chain_state``: none yet, ``off``, ``filed``, ``failed``, ``done``; ``chain_posted``: the
  statuses posted);
- ``history`` — every status a submission reached, with when and a note;
- ``bindings`` — per ROCARS submission with a CCRN, whether it was bound to its truck job's
  vehicle (``bound``, ``refused`` with the reason, ``no-job``).

Bodies are sealed at rest (AES-256-GCM under the keystore secret ``declarations``, bound to
table and organisation, like ``alerts.db``); references, statuses and times are not secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, reference TEXT NOT NULL,
    body BLOB NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    UNIQUE (org_id, reference));
CREATE TABLE IF NOT EXISTS readers (
    shipment_id INTEGER NOT NULL, org_id INTEGER NOT NULL, PRIMARY KEY (shipment_id, org_id));
CREATE INDEX IF NOT EXISTS readers_org ON readers (org_id);
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY, shipment_id INTEGER NOT NULL, draft TEXT NOT NULL,
    path TEXT NOT NULL, value BLOB NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    shipment_id INTEGER NOT NULL, draft TEXT NOT NULL, document_hash TEXT NOT NULL,
    by TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (shipment_id, draft));
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY, shipment_id INTEGER NOT NULL, org_id INTEGER NOT NULL,
    draft TEXT NOT NULL, authority TEXT NOT NULL, document BLOB NOT NULL,
    document_hash TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, last_error TEXT, number TEXT, reasons BLOB,
    recorded TEXT, created REAL NOT NULL, updated REAL NOT NULL, by TEXT NOT NULL,
    chain_state TEXT, chain_posted TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS submissions_due ON submissions (status, next_at);
CREATE INDEX IF NOT EXISTS submissions_number ON submissions (number);
CREATE TABLE IF NOT EXISTS bindings (
    submission_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, ccrn TEXT NOT NULL,
    state TEXT NOT NULL, vehicle TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, submission_id TEXT NOT NULL, status TEXT NOT NULL,
    at REAL NOT NULL, note TEXT NOT NULL DEFAULT '');
"""

#: Submission statuses the gateway keeps: its own (``pending`` not yet lodged, ``failed``
#: given up) and the authority's.
OPEN = ("pending", "received", "accepted", "queried")
#: Length of a shipment's secret chain salt.
SALT_BYTES = 32


class DeclarationStoreError(Exception):
    """A sealed body does not open (damaged, moved, another secret)."""


@dataclass(frozen=True)
class Shipment:
    """A stored shipment."""

    id: int
    org_id: int
    reference: str
    body: dict[str, Any]
    """``lines`` (goods lines' JSON), ``options`` (direction, parties, readers ...)."""
    readers: tuple[int, ...]
    created: float
    updated: float


@dataclass(frozen=True)
class Submission:
    """One declaration lodged (or to be lodged) with an authority."""

    id: str
    shipment_id: int
    org_id: int
    draft: str
    authority: str
    document: dict[str, Any]
    document_hash: str
    status: str
    attempts: int
    next_at: float
    last_error: str | None
    number: str | None
    reasons: tuple[str, ...]
    recorded: str | None
    created: float
    updated: float
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "draft": self.draft, "authority": self.authority,
                "status": self.status, "number": self.number, "reasons": list(self.reasons),
                "attempts": self.attempts, "lastError": self.last_error,
                "documentHash": self.document_hash, "submittedBy": self.by,
                "recordedAs": self.recorded,
                "created": self.created, "updated": self.updated}


def document_hash(document: dict[str, Any]) -> str:
    """SHA-256 of a document's canonical JSON (what an approval and a submission name)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def submission_id(org_id: int, shipment_id: int, draft: str, digest: str) -> str:
    """The idempotency key of lodging one document: 32 hex characters."""
    return hashlib.sha256(f"{org_id}:{shipment_id}:{draft}:{digest}".encode()).hexdigest()[:32]


class DeclarationStore(sqlite.Store):
    """The declarations database (module docstring)."""

    def __init__(self, path: Path, *, secret: bytes | None) -> None:
        if secret is not None and len(secret) != 32:
            raise ValueError("the declarations secret is 32 bytes")
        super().__init__(path, _SCHEMA, synchronous="FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._cipher = None if secret is None else AESGCM(
            hmac.new(secret, b"portledger/declarations/bodies", hashlib.sha256).digest())

    # -- sealing ------------------------------------------------------------------------------
    def _seal(self, value: Any, table: str, org_id: int) -> bytes:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        if self._cipher is None:
            return data
        nonce = os.urandom(12)
        return nonce + self._cipher.encrypt(nonce, data, f"{table}:{org_id}".encode())

    def _open(self, blob: bytes, table: str, org_id: int) -> Any:
        data = bytes(blob)
        if self._cipher is not None:
            try:
                data = self._cipher.decrypt(data[:12], data[12:], f"{table}:{org_id}".encode())
            except InvalidTag:
                raise DeclarationStoreError(f"a {table} body of organisation {org_id} does "
                                            "not decrypt") from None
        return json.loads(data)

    # -- shipments ----------------------------------------------------------------------------
    def put_shipment(self, org_id: int, reference: str, body: dict[str, Any],
                     readers: list[int]) -> tuple[Shipment, bool]:
        """Store the goods data of ``reference`` (replacing an earlier upload, whose
        corrections and approvals go, but never its chain salt); whether it is new."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT id, body FROM shipments WHERE org_id = ? AND reference = ?",
                             (org_id, reference)).fetchone()
            earlier = None if row is None else self._open(row[1], "shipments", org_id)
            salt = earlier.get("salt") if isinstance(earlier, dict) else None
            body = {**body, "salt": salt if isinstance(salt, str) and len(salt) == 2 * SALT_BYTES
                    else os.urandom(SALT_BYTES).hex()}
            if row is None:
                cur = db.execute("INSERT INTO shipments (org_id, reference, body, created, "
                                 "updated) VALUES (?, ?, ?, ?, ?)",
                                 (org_id, reference, self._seal(body, "shipments", org_id),
                                  now, now))
                shipment_id, new = int(cur.lastrowid or 0), True
            else:
                shipment_id, new = int(row[0]), False
                db.execute("UPDATE shipments SET body = ?, updated = ? WHERE id = ?",
                           (self._seal(body, "shipments", org_id), now, shipment_id))
                db.execute("DELETE FROM corrections WHERE shipment_id = ?", (shipment_id,))
                db.execute("DELETE FROM approvals WHERE shipment_id = ?", (shipment_id,))
                db.execute("DELETE FROM readers WHERE shipment_id = ?", (shipment_id,))
            db.executemany("INSERT OR IGNORE INTO readers VALUES (?, ?)",
                           [(shipment_id, r) for r in readers])
        found = self.shipment(shipment_id)
        assert found is not None
        return found, new

    def salt(self, shipment: Shipment) -> bytes:
        """The shipment's chain salt; one made now (and kept) for a shipment stored before
        salts existed."""
        salt = shipment.body.get("salt")
        if isinstance(salt, str) and len(salt) == 2 * SALT_BYTES:
            return bytes.fromhex(salt)
        with self._transaction() as db:
            row = db.execute("SELECT body FROM shipments WHERE id = ?", (shipment.id,)).fetchone()
            body = self._open(row[0], "shipments", shipment.org_id) if row else shipment.body
            if not (isinstance(body.get("salt"), str) and len(body["salt"]) == 2 * SALT_BYTES):
                body = {**body, "salt": os.urandom(SALT_BYTES).hex()}
                db.execute("UPDATE shipments SET body = ? WHERE id = ?",
                           (self._seal(body, "shipments", shipment.org_id), shipment.id))
        return bytes.fromhex(body["salt"])

    def shipment(self, shipment_id: int) -> Shipment | None:
        row = self._db.execute("SELECT id, org_id, reference, body, created, updated FROM "
                               "shipments WHERE id = ?", (shipment_id,)).fetchone()
        if row is None:
            return None
        readers = tuple(int(r[0]) for r in self._db.execute(
            "SELECT org_id FROM readers WHERE shipment_id = ? ORDER BY org_id", (row[0],)))
        return Shipment(int(row[0]), int(row[1]), row[2],
                        self._open(row[3], "shipments", int(row[1])), readers, row[4], row[5])

    def shipments_of(self, org_id: int, *, limit: int = 200) -> list[Shipment]:
        """Shipments ``org_id`` owns or is a named reader of, newest first."""
        ids = [int(r[0]) for r in self._db.execute(
            "SELECT id FROM shipments WHERE org_id = ? UNION SELECT shipment_id FROM readers "
            "WHERE org_id = ? ORDER BY 1 DESC LIMIT ?", (org_id, org_id, limit))]
        return [s for s in (self.shipment(i) for i in ids) if s is not None]

    def submitted_shipments(self, authorities: list[str], *, limit: int = 200,
                            ) -> list[Shipment]:
        """Shipments with a submission to one of ``authorities``, newest first (what an
        authority lists)."""
        ids = [int(r[0]) for r in self._db.execute(
            "SELECT DISTINCT shipment_id FROM submissions WHERE authority IN (SELECT value FROM "
            "json_each(?)) ORDER BY 1 DESC LIMIT ?", (json.dumps(authorities), limit))]
        return [s for s in (self.shipment(i) for i in ids) if s is not None]

    # -- corrections and approvals ----------------------------------------------------------
    def add_correction(self, shipment: Shipment, draft: str, path: str, value: Any, by: str,
                       at: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO corrections (shipment_id, draft, path, value, by, at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (shipment.id, draft, path,
                        self._seal(value, "corrections", shipment.org_id), by, at))
            db.execute("DELETE FROM approvals WHERE shipment_id = ? AND draft = ?",
                       (shipment.id, draft))

    def corrections(self, shipment: Shipment) -> list[dict[str, Any]]:
        return [{"draft": r[0], "path": r[1],
                 "value": self._open(r[2], "corrections", shipment.org_id), "by": r[3],
                 "at": r[4]}
                for r in self._db.execute("SELECT draft, path, value, by, at FROM corrections "
                                          "WHERE shipment_id = ? ORDER BY id", (shipment.id,))]

    def approve(self, shipment: Shipment, draft: str, digest: str, by: str, at: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO approvals VALUES (?, ?, ?, ?, ?)",
                       (shipment.id, draft, digest, by, at))

    def approvals(self, shipment: Shipment) -> dict[str, dict[str, Any]]:
        return {r[0]: {"documentHash": r[1], "by": r[2], "at": r[3]}
                for r in self._db.execute("SELECT draft, document_hash, by, at FROM approvals "
                                          "WHERE shipment_id = ?", (shipment.id,))}

    # -- the submission outbox --------------------------------------------------------------
    def _submission(self, row: Any) -> Submission:
        org = int(row[2])
        return Submission(row[0], int(row[1]), org, row[3], row[4],
                          self._open(row[5], "submissions", org), row[6], row[7], int(row[8]),
                          float(row[9]), row[10], row[11],
                          tuple(self._open(row[12], "reasons", org)) if row[12] else (),
                          row[13], float(row[14]), float(row[15]), row[16])

    def enqueue(self, shipment: Shipment, draft: str, authority: str,
                document: dict[str, Any], by: str) -> tuple[Submission, bool]:
        """Put a document in the outbox; a repeat (same id) returns the first, not new."""
        digest = document_hash(document)
        sid = submission_id(shipment.org_id, shipment.id, draft, digest)
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO submissions (id, shipment_id, org_id, draft, authority, "
                "document, document_hash, status, next_at, created, updated, by) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (sid, shipment.id, shipment.org_id, draft, authority,
                 self._seal(document, "submissions", shipment.org_id), digest, now, now, now,
                 by))
            new = cur.rowcount == 1
            if new:
                db.execute("INSERT INTO history (submission_id, status, at, note) VALUES "
                           "(?, 'pending', ?, ?)", (sid, now, f"submitted by {by}"))
            elif db.execute("UPDATE submissions SET status = 'pending', attempts = 0, "
                            "next_at = ?, updated = ? WHERE id = ? AND status = 'failed'",
                            (now, now, sid)).rowcount:
                # a submission given up is lodged again (the authority answers a known id
                # with its first answer, so this never lodges twice)
                new = True
                db.execute("INSERT INTO history (submission_id, status, at, note) VALUES "
                           "(?, 'pending', ?, ?)", (sid, now, f"submitted again by {by}"))
        found = self.submission(sid)
        assert found is not None
        return found, new

    def submission(self, sid: str) -> Submission | None:
        row = self._db.execute("SELECT id, shipment_id, org_id, draft, authority, document, "
                               "document_hash, status, attempts, next_at, last_error, number, "
                               "reasons, recorded, created, updated, by FROM submissions "
                               "WHERE id = ?",
                               (sid,)).fetchone()
        return None if row is None else self._submission(row)

    def submissions_of(self, shipment_id: int) -> list[Submission]:
        return [self._submission(r) for r in self._db.execute(
            "SELECT id, shipment_id, org_id, draft, authority, document, document_hash, "
            "status, attempts, next_at, last_error, number, reasons, recorded, created, "
            "updated, by FROM submissions WHERE shipment_id = ? ORDER BY created",
            (shipment_id,))]

    def due(self, now: float, limit: int = 100) -> list[Submission]:
        """Open submissions whose next attempt (lodging or polling) is due."""
        return [self._submission(r) for r in self._db.execute(
            "SELECT id, shipment_id, org_id, draft, authority, document, document_hash, "
            "status, attempts, next_at, last_error, number, reasons, recorded, created, "
            "updated, by FROM submissions WHERE status IN (?, ?, ?, ?) AND next_at <= ? "
            "ORDER BY next_at LIMIT ?", (*OPEN, now, limit))]

    def next_due(self) -> float | None:
        row = self._db.execute("SELECT MIN(next_at) FROM submissions WHERE status IN "
                               "(?, ?, ?, ?)", OPEN).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._db.execute(
            "SELECT status, COUNT(*) FROM submissions GROUP BY status")}

    def update(self, sub: Submission, *, status: str, number: str | None,
               reasons: tuple[str, ...], next_at: float, attempts: int,
               last_error: str | None, note: str = "") -> Submission:
        """Record an attempt's outcome; a new status goes into the history."""
        now = time.time()
        with self._transaction() as db:
            db.execute("UPDATE submissions SET status = ?, number = ?, reasons = ?, "
                       "next_at = ?, attempts = ?, last_error = ?, updated = ? WHERE id = ?",
                       (status, number, self._seal(list(reasons), "reasons", sub.org_id)
                        if reasons else None, next_at, attempts, last_error, now, sub.id))
            if status != sub.status:
                db.execute("INSERT INTO history (submission_id, status, at, note) VALUES "
                           "(?, ?, ?, ?)", (sub.id, status, now, note[:512]))
        found = self.submission(sub.id)
        assert found is not None
        return found

    def unrecorded(self, statuses: tuple[str, ...], limit: int = 100) -> list[Submission]:
        """Submissions in one of ``statuses`` not yet recorded as such (a crash between the
        status and its customs event leaves one behind)."""
        return [self._submission(r) for r in self._db.execute(
            "SELECT id, shipment_id, org_id, draft, authority, document, document_hash, "
            "status, attempts, next_at, last_error, number, reasons, recorded, created, "
            "updated, by FROM submissions WHERE status IN (SELECT value FROM json_each(?)) "
            "AND (recorded IS NULL OR recorded != status) ORDER BY updated LIMIT ?",
            (json.dumps(list(statuses)), limit))]

    def chain_due(self, limit: int = 100) -> list[tuple[Submission, str | None, list[str]]]:
        """Numbered submissions whose filing on chain is not settled, with its state and the
        statuses posted so far."""
        rows = self._db.execute(
            "SELECT id, chain_state, chain_posted FROM submissions WHERE number IS NOT NULL "
            "AND (chain_state IS NULL OR chain_state = 'filed') ORDER BY updated LIMIT ?",
            (limit,)).fetchall()
        out = []
        for sid, state, posted in rows:
            sub = self.submission(sid)
            if sub is not None:
                out.append((sub, state, json.loads(posted)))
        return out

    def set_chain(self, sid: str, state: str, posted: list[str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE submissions SET chain_state = ?, chain_posted = ? WHERE id = ?",
                       (state, json.dumps(posted), sid))

    def chain_of(self, sid: str) -> tuple[str | None, list[str]]:
        row = self._db.execute("SELECT chain_state, chain_posted FROM submissions WHERE id = ?",
                               (sid,)).fetchone()
        return (None, []) if row is None else (row[0], json.loads(row[1]))

    def mark_recorded(self, sid: str, status: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE submissions SET recorded = ? WHERE id = ?", (status, sid))

    def history(self, sid: str) -> list[dict[str, Any]]:
        return [{"status": r[0], "at": r[1], "note": r[2]} for r in self._db.execute(
            "SELECT status, at, note FROM history WHERE submission_id = ? ORDER BY id", (sid,))]

    def by_number(self, number: str) -> Submission | None:
        row = self._db.execute("SELECT id, shipment_id, org_id, draft, authority, document, "
                               "document_hash, status, attempts, next_at, last_error, number, "
                               "reasons, recorded, created, updated, by FROM submissions "
                               "WHERE number = ?",
                               (number,)).fetchone()
        return None if row is None else self._submission(row)

    # -- CCRN bindings ------------------------------------------------------------------------
    def unbound(self, limit: int = 100) -> list[Submission]:
        """ROCARS submissions with a CCRN whose binding to a truck job was not tried yet."""
        return [self._submission(r) for r in self._db.execute(
            "SELECT id, shipment_id, org_id, draft, authority, document, document_hash, "
            "status, attempts, next_at, last_error, number, reasons, recorded, created, "
            "updated, by FROM submissions s WHERE authority = 'hk-rocars' AND number IS NOT "
            "NULL AND NOT EXISTS (SELECT 1 FROM bindings b WHERE b.submission_id = s.id) "
            "ORDER BY updated LIMIT ?", (limit,))]

    def set_binding(self, sid: str, job_id: str, ccrn: str, state: str, reason: str, *,
                    vehicle: str = "") -> None:
        """Record how a submission's CCRN was bound (``bound``, ``refused``, ``no-job``)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO bindings (submission_id, job_id, ccrn, state, "
                       "vehicle, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (sid, job_id, ccrn, state, vehicle, reason, time.time()))

    def binding(self, sid: str) -> dict[str, Any] | None:
        """``{job, ccrn, state, vehicle, reason, at}`` of a submission's CCRN, or None."""
        row = self._db.execute("SELECT job_id, ccrn, state, vehicle, reason, at FROM bindings "
                               "WHERE submission_id = ?", (sid,)).fetchone()
        return None if row is None else {"job": row[0] or None, "ccrn": row[1],
                                         "state": row[2], "vehicle": row[3] or None,
                                         "reason": row[4] or None, "at": row[5]}
