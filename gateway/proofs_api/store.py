"""Proof requests: a bank asks an owner for a bundle; the owner approves or declines.

:class:`ProofRequestStore` keeps ``<data_dir>/proofs.db`` (SQLite, WAL): requests, the history
of each (requested, approved, declined, withdrawn, downloaded: who and when), and approved
bundles (zlib-compressed JSON).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import sqlite
from gateway.principal import Principal
from gateway.proofs_api.bundles import Made, Selection, encode_bundle

#: The requests database under the gateway's data directory.
FILE_NAME = "proofs.db"
#: States of a proof request; only ``pending`` ones can be decided or withdrawn.
STATES = ("pending", "approved", "declined", "withdrawn")
#: What the history of a request records.
ACTIONS = ("requested", "approved", "declined", "withdrawn", "downloaded")


class ProofRequestError(Exception):
    """A request cannot change state: it is not pending any more."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS proof_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    requester_org INTEGER NOT NULL,
    requester_chain INTEGER NOT NULL,
    owner_org INTEGER NOT NULL,
    owner_chain INTEGER NOT NULL,
    reference TEXT NOT NULL,
    purpose TEXT NOT NULL,
    wanted TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'withdrawn')),
    created REAL NOT NULL,
    decided REAL,
    reason TEXT,
    granted TEXT,
    proven TEXT,
    bundle BLOB,
    bundle_size INTEGER
);
CREATE INDEX IF NOT EXISTS proof_requests_owner ON proof_requests (owner_org, seq);
CREATE INDEX IF NOT EXISTS proof_requests_requester ON proof_requests (requester_org, seq);
CREATE TABLE IF NOT EXISTS proof_request_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    org INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN
        ('requested', 'approved', 'declined', 'withdrawn', 'downloaded')),
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS proof_request_history_request ON proof_request_history (request_id, seq);
"""


@dataclass(frozen=True)
class ProofRequest:
    """A request for a proof bundle, as stored."""

    id: str
    """Its id (a UUID)."""
    requester_org: int
    """Gateway organisation id of the requester."""
    requester_chain: int
    """Its Consortium organisation id."""
    owner_org: int
    """Gateway organisation id of the owner asked."""
    owner_chain: int
    """Its Consortium organisation id."""
    reference: str
    """The shipment reference (normalised)."""
    purpose: str
    """Why the requester asks (shown to the owner)."""
    wanted: Selection
    """What the requester asked for."""
    status: str
    """One of :data:`STATES`."""
    created: float
    """When it was made, Unix seconds."""
    decided: float | None
    """When it was approved, declined or withdrawn."""
    reason: str | None
    """The owner's reason (declined) or note (approved)."""
    granted: dict[str, Any] | None
    """What the owner approved: ``{"eventIds": [...], "disclosed": [...], "dataKeys": bool}``."""
    proven: tuple[tuple[int, bytes], ...]
    """(event id, subject key) of each proven event."""
    bundle_size: int | None
    """Size of the stored bundle in bytes (JSON)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded state change or download of a request."""

    time: float
    """When, Unix seconds."""
    org: int
    """Consortium organisation id of who acted."""
    actor: str
    """The user (``user:<id>``) or API key (``api-key:<id>``) that acted."""
    action: str
    """One of :data:`ACTIONS`."""
    detail: str
    """Purpose, reason, note or what was disclosed."""


class ProofRequestStore(sqlite.Store):
    """Proof requests, their history and approved bundles in SQLite (WAL).

    Every method is one short transaction on the event loop's thread; reads are scoped to a
    party by the handlers (a request is found by id, then its parties are compared).
    """

    _COLUMNS = ("id, requester_org, requester_chain, owner_org, owner_chain, reference, purpose, "
                "wanted, status, created, decided, reason, granted, proven, bundle_size")

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(path, _SCHEMA)
        self.clock = clock

    @staticmethod
    def _request(row: Sequence[Any]) -> ProofRequest:
        proven = json.loads(row[13]) if row[13] else []
        return ProofRequest(
            id=row[0], requester_org=row[1], requester_chain=row[2], owner_org=row[3],
            owner_chain=row[4], reference=row[5], purpose=row[6],
            wanted=Selection.from_json(json.loads(row[7])), status=row[8], created=row[9],
            decided=row[10], reason=row[11], granted=json.loads(row[12]) if row[12] else None,
            proven=tuple((int(i), bytes.fromhex(s)) for i, s in proven), bundle_size=row[14],
        )  # fmt: skip

    def _log(self, db: sqlite3.Connection, request_id: str, org: int, actor: str, action: str,
             detail: str, now: float) -> None:
        db.execute(
            "INSERT INTO proof_request_history (request_id, time, org, actor, action, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, now, org, actor, action, detail),
        )

    def create(self, requester: Principal, owner_org: int, owner_chain: int, reference: str,
               purpose: str, wanted: Selection) -> ProofRequest:
        """Store a new pending request (and its ``requested`` history entry)."""
        assert requester.chain_org is not None
        now = self.clock()
        request_id = str(uuid.uuid4())
        with self._transaction() as db:
            db.execute(
                "INSERT INTO proof_requests (id, requester_org, requester_chain, owner_org, "
                "owner_chain, reference, purpose, wanted, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (request_id, requester.org_id, requester.chain_org, owner_org, owner_chain,
                 reference, purpose, json.dumps(wanted.to_json()), now),
            )
            self._log(db, request_id, requester.chain_org, actor_of(requester), "requested",
                      purpose, now)
        found = self.get(request_id)
        assert found is not None
        return found

    def get(self, request_id: str) -> ProofRequest | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM proof_requests WHERE id = ?", (request_id,)  # noqa: S608 (constant names and ? placeholders only)
        ).fetchone()
        return None if row is None else self._request(row)

    def page(self, org_id: int, *, incoming: bool, outgoing: bool, status: str | None,
             before: int, limit: int) -> list[tuple[int, ProofRequest]]:
        """The organisation's requests (as owner and/or requester), newest first."""
        sides = []
        if incoming:
            sides.append("owner_org = ?")
        if outgoing:
            sides.append("requester_org = ?")
        if not sides:
            return []
        rows = self._db.execute(
            f"SELECT seq, {self._COLUMNS} FROM proof_requests WHERE ({' OR '.join(sides)}) "  # noqa: S608 (constant names and ? placeholders only)
            "AND (? IS NULL OR status = ?) AND (? = 0 OR seq < ?) ORDER BY seq DESC LIMIT ?",
            (*([org_id] * len(sides)), status, status, before, before, limit),
        ).fetchall()
        return [(row[0], self._request(row[1:])) for row in rows]

    def history(self, request_id: str) -> list[HistoryEntry]:
        rows = self._db.execute(
            "SELECT time, org, actor, action, detail FROM proof_request_history "
            "WHERE request_id = ? ORDER BY seq",
            (request_id,),
        ).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def decide(self, request_id: str, actor: Principal, status: str, *, reason: str | None,
               made: Made | None = None, granted: dict[str, Any] | None = None) -> ProofRequest:
        """Move a pending request to ``status`` (approved with its bundle, declined, withdrawn).

        Raises
        ------
        ProofRequestError
            It is not pending any more.
        """
        assert status in STATES[1:] and actor.chain_org is not None
        now = self.clock()
        bundle = size = proven = None
        if made is not None:
            encoded = encode_bundle(made.bundle)
            bundle, size = zlib.compress(encoded, 6), len(encoded)
            proven = json.dumps([[e.event_id, e.subject.hex()] for e in made.events])
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE proof_requests SET status = ?, decided = ?, reason = ?, granted = ?, "
                "proven = ?, bundle = ?, bundle_size = ? WHERE id = ? AND status = 'pending'",
                (status, now, reason, json.dumps(granted) if granted else None, proven, bundle,
                 size, request_id),
            ).rowcount
            if not changed:
                raise ProofRequestError(request_id)
            action = status
            detail = reason or ""
            if granted is not None:
                detail = json.dumps(granted, separators=(",", ":")) + (f" {reason}" if reason else "")
            self._log(db, request_id, actor.chain_org, actor_of(actor), action, detail, now)
        found = self.get(request_id)
        assert found is not None
        return found

    def bundle(self, request_id: str) -> bytes | None:
        """The stored bundle (JSON bytes) of an approved request."""
        row = self._db.execute(
            "SELECT bundle FROM proof_requests WHERE id = ? AND status = 'approved'",
            (request_id,),
        ).fetchone()
        return None if row is None or row[0] is None else zlib.decompress(row[0])

    def downloaded(self, request: ProofRequest, actor: Principal) -> None:
        """Record a download by the requester."""
        assert actor.chain_org is not None
        with self._transaction() as db:
            self._log(db, request.id, actor.chain_org, actor_of(actor), "downloaded",
                      f"{len(request.proven)} events", self.clock())


def actor_of(principal: Principal) -> str:
    """Who acted, for the history: the user, or the credential (never a secret)."""
    return f"user:{principal.user_id}" if principal.user_id is not None else principal.credential_id
