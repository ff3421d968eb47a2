"""LevelDB adapter: block-wide atomic writes, read-your-writes, per-thread visibility, schema."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from node.db import SCHEMA_PREFIX, SCHEMA_VERSION, LevelDB, NodeKeys, SchemaMismatch


def test_reads_inside_a_block_write_see_it_and_disk_sees_it_only_after(tmp_path: Path) -> None:
    db = LevelDB(str(tmp_path / "db"))
    with db.block_write():
        db[b"a"] = b"1"
        assert db[b"a"] == b"1"
        with db.atomic_batch() as batch:  # py-evm's nested batches join the block write
            batch[b"b"] = b"2"
            assert batch[b"a"] == b"1"
        assert db[b"b"] == b"2"
        assert db._db.get(b"a") is None  # nothing on disk yet
        del db[b"b"]
        assert not db.exists(b"b")
    assert db._db.get(b"a") == b"1" and db._db.get(b"b") is None
    db.close()


def test_failed_block_write_leaves_nothing(tmp_path: Path) -> None:
    db = LevelDB(str(tmp_path / "db"))
    db[b"keep"] = b"old"
    with pytest.raises(RuntimeError), db.block_write():
        db[b"keep"] = b"new"
        db[b"other"] = b"x"
        raise RuntimeError("crash mid-block")
    assert db[b"keep"] == b"old"
    assert not db.exists(b"other")
    db.close()


def test_other_threads_do_not_see_a_half_written_block(tmp_path: Path) -> None:
    db = LevelDB(str(tmp_path / "db"))
    seen: list[bool] = []
    with db.block_write():
        db[b"k"] = b"v"
        reader = threading.Thread(target=lambda: seen.append(db.exists(b"k")))
        reader.start()
        reader.join(timeout=10)
    assert seen == [False]
    assert db[b"k"] == b"v"
    db.close()


def test_schema_version_is_stamped_and_checked(tmp_path: Path) -> None:
    db = LevelDB(str(tmp_path / "db"))
    db.check_schema()
    assert db[NodeKeys.schema_version] == str(SCHEMA_VERSION).encode()
    assert NodeKeys.genesis_hash.startswith(SCHEMA_PREFIX)
    db._db.put(NodeKeys.schema_version, b"99")
    with pytest.raises(SchemaMismatch, match="v99"):
        db.check_schema()
    db.close()
