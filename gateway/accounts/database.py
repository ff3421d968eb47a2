"""The accounts database itself: its schema, its write transactions, its audit trail.

All of the accounts (:mod:`gateway.accounts.model`) are one SQLite database,
``<data_dir>/accounts.db`` (WAL). :class:`AccountsDatabase` opens it, creates the schema, runs
every write in :func:`gateway.sqlite.transaction` (a write called inside another one joins it)
and keeps the *credential generation*: triggers of the schema bump it in the writing transaction
whenever a change can make a cached API key's answer wrong, and the outermost transaction
publishes it after its commit in ``accounts.db-generation``
(:class:`gateway.beacon.GenerationBeacon`), where every process's key cache
(:mod:`gateway.accounts.keycache`) looks first.
:class:`gateway.accounts.organisations.Organisations` and :class:`gateway.accounts.store.Accounts`
build on it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from gateway import sqlite
from gateway.beacon import GenerationBeacon
from gateway.isotime import iso_or_none

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS organisations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        roles TEXT NOT NULL,
        details TEXT NOT NULL,
        status TEXT NOT NULL,
        chain_org INTEGER UNIQUE,
        account TEXT,
        operator INTEGER NOT NULL DEFAULT 0,
        registration TEXT UNIQUE,
        created REAL NOT NULL,
        decided_at REAL,
        decided_by INTEGER,
        decision_note TEXT)""",
    """CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organisations(id),
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        operator INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_login REAL)""",
    "CREATE INDEX IF NOT EXISTS users_org ON users(org_id)",
    """CREATE TABLE IF NOT EXISTS sessions (
        token_hash BLOB PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        via TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        last_seen REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id)",
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organisations(id),
        secret_hash BLOB NOT NULL,
        scopes TEXT NOT NULL,
        label TEXT NOT NULL,
        created REAL NOT NULL,
        created_by INTEGER,
        last_used REAL,
        revoked REAL)""",
    "CREATE INDEX IF NOT EXISTS api_keys_org ON api_keys(org_id)",
    """CREATE TABLE IF NOT EXISTS oidc_identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        PRIMARY KEY (issuer, subject))""",
    """CREATE TABLE IF NOT EXISTS oidc_logins (
        state_hash BLOB PRIMARY KEY,
        provider TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        return_to TEXT NOT NULL,
        expires REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS login_failures (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS login_failures_subject ON login_failures(kind, subject, at)",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        org_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_org ON audit(org_id, at)",
    # The credential generation: bumped, in the writing transaction, by every change that can
    # make a cached API key's answer wrong (see the module docstring).
    """CREATE TABLE IF NOT EXISTS credential_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO credential_generation (id, value) VALUES (1, 0)",
    """CREATE TRIGGER IF NOT EXISTS api_key_changed
        AFTER UPDATE OF org_id, secret_hash, scopes, revoked ON api_keys
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS api_key_deleted AFTER DELETE ON api_keys
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS organisation_changed
        AFTER UPDATE OF status, roles, chain_org, operator ON organisations
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS organisation_deleted AFTER DELETE ON organisations
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
]


class AccountsDatabase:
    """The connection to the accounts database, its transactions and its audit trail.

    Parameters
    ----------
    path
        The SQLite file (created if missing).
    clock
        Source of the current Unix time (tests move it).
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._db = sqlite.connect(path, foreign_keys=True)
        self._db.row_factory = sqlite3.Row
        for statement in SCHEMA:
            self._db.execute(statement)
        self._beacon = GenerationBeacon(path + "-generation", self._credential_generation,
                                        clock=clock)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
        self._beacon.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """A write transaction (joining an open one); the outermost publishes the credential
        generation after its commit."""
        outermost = not self._db.in_transaction
        with sqlite.transaction(self._db):
            yield
        if outermost:
            self._publish_credentials()

    def _credential_generation(self) -> int:
        """The credential generation as stored (bumped by the schema's triggers)."""
        row = self._db.execute("SELECT value FROM credential_generation WHERE id = 1").fetchone()
        return int(row[0])

    def _publish_credentials(self) -> None:
        """After a commit: publish the credential generation if the transaction bumped it."""
        self._beacon.publish(self._credential_generation())

    def audit(
        self, action: str, *, org_id: int | None, actor: str, target: str = "", **details: Any
    ) -> None:
        """Append to the audit trail."""
        self._db.execute(
            "INSERT INTO audit (at, org_id, actor, action, target, details) VALUES (?,?,?,?,?,?)",
            (self.clock(), org_id, actor, action, target, json.dumps(details, sort_keys=True)),
        )

    def audit_trail(self, org_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit entries (of one organisation, or all)."""
        if org_id is None:
            rows = self._db.execute(
                "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE org_id = ? ORDER BY id DESC LIMIT ?", (org_id, limit)
            ).fetchall()
        return [
            {
                "at": iso_or_none(r["at"]),
                "orgId": r["org_id"],
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "details": json.loads(r["details"]),
            }
            for r in rows
        ]
