"""The gateway's SQLite stores: how a connection is opened and how a write transaction runs.

Every store (accounts, outbox, subscriptions, proof requests) is one SQLite file in WAL mode,
opened in autocommit mode (``isolation_level=None``) so that transactions are explicit:
:func:`transaction` takes the write lock up front (``BEGIN IMMEDIATE``), so two writers never
deadlock on a lock upgrade, rolls back on any exception, and nests (an inner one joins the
outer). ``synchronous=NORMAL`` survives a
process crash; a store whose commit stands behind an acknowledgement (the outbox: a 2xx is sent
only once the events are on disk) asks for ``FULL``, which also survives a power loss.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal


def connect(
    path: str | Path,
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    busy_timeout_ms: int = 5000,
    foreign_keys: bool = False,
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode, autocommit, usable from any thread (callers serialise).

    Parameters
    ----------
    path
        The database file (created if missing).
    synchronous
        ``NORMAL`` (durable across a process crash) or ``FULL`` (also across power loss).
    busy_timeout_ms
        How long a statement waits for another connection's lock before failing.
    foreign_keys
        Enforce ``FOREIGN KEY`` constraints.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    _set_wal(db, busy_timeout_ms / 1000)
    db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    return db


def _set_wal(db: sqlite3.Connection, patience: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock.

    Several worker processes (``serve --workers N``) open the same files at once; changing the
    journal mode can answer "database is locked" at once, without waiting in the busy handler,
    while another connection is mid-change, so it is retried for up to ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the block raises.

    Inside a transaction already open on ``db`` it nests as a no-op: the block joins the outer
    transaction, which commits it (or rolls it back when the exception reaches it), so a store
    method that writes in a transaction can be called from another one.
    """
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Store:
    """A store of one SQLite file: its connection, its schema, its write transactions.

    Parameters
    ----------
    path
        The database file.
    schema
        SQL run at every open (``CREATE TABLE IF NOT EXISTS ...``).
    synchronous
        As for :func:`connect`.
    """

    def __init__(self, path: str | Path, schema: str, *,
                 synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
        self._db = connect(path, synchronous=synchronous)
        self._db.executescript(schema)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)
