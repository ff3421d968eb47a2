"""``gateway.sqlite.transaction``: commit, roll back, and nest as a no-op inside an open one."""

from __future__ import annotations

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
