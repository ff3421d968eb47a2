"""``gateway.sqlite``: connecting waits for another process's lock; ``transaction`` commits,
rolls back, and nests as a no-op inside an open one."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway import sqlite


def _rows(path: Path) -> list[int]:
    other = sqlite.connect(path)  # another connection sees only what was committed
    try:
        return [r[0] for r in other.execute("SELECT n FROM t ORDER BY n")]
    finally:
        other.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "t.sqlite"
    db = sqlite.connect(path)
    db.execute("CREATE TABLE t (n INTEGER)")
    db.close()
    return path


def test_commits_and_rolls_back(db_path: Path) -> None:
    db = sqlite.connect(db_path)
    with sqlite.transaction(db) as same:
        assert same is db and db.in_transaction
        db.execute("INSERT INTO t VALUES (1)")
    assert not db.in_transaction and _rows(db_path) == [1]
    with pytest.raises(RuntimeError), sqlite.transaction(db):
        db.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert not db.in_transaction and _rows(db_path) == [1]
    db.close()


def test_nested_transaction_joins_the_outer_one(db_path: Path) -> None:
    db = sqlite.connect(db_path)
    with sqlite.transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        with sqlite.transaction(db) as inner:
            assert inner is db
            db.execute("INSERT INTO t VALUES (2)")
        assert db.in_transaction and _rows(db_path) == []  # the inner one did not commit
    assert _rows(db_path) == [1, 2]

    # An exception out of the inner block rolls back the whole outer transaction.
    with pytest.raises(RuntimeError), sqlite.transaction(db):
        db.execute("INSERT INTO t VALUES (3)")
        with sqlite.transaction(db):
            db.execute("INSERT INTO t VALUES (4)")
            raise RuntimeError("boom")
    assert not db.in_transaction and _rows(db_path) == [1, 2]
    db.close()


def test_connect_waits_for_a_lock_held_by_another_connection(tmp_path: Path) -> None:
    """A worker process opening a store while another holds it locked (switching a fresh file
    to WAL, writing its schema) waits for the lock instead of failing."""
    path = tmp_path / "fresh.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    started = time.monotonic()
    db = sqlite.connect(path, busy_timeout_ms=5000)
    try:
        assert time.monotonic() - started >= 0.25
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert [r[0] for r in db.execute("SELECT n FROM t")] == [1]
    finally:
        release.join(timeout=5)
        db.close()
        holder.close()


def test_connect_gives_up_after_its_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "held.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sqlite.connect(path, busy_timeout_ms=200)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
