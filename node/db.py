"""LevelDB storage for the chain, through plyvel, behind py-evm's ``BaseAtomicDB``.

py-evm removed its plyvel backend in 0.10; this is the project's own, small one.

Layering (top to bottom)::

    py-evm ChainDB / AccountDB / tries      (keys from eth.db.schema.SchemaV1)
             │ __getitem__ / __setitem__ / atomic_batch()
             ▼
    LevelDB  ── block_write(): one pending write-set for a whole block
             │ one plyvel WriteBatch, sync=True, per block
             ▼
    plyvel.DB (LevelDB files in <datadir>/chain)

Why a block-wide write-set: importing one block makes py-evm write in several separate steps
(state trie nodes, transaction and receipt trie nodes, header, canonical head). If those reached
disk one by one, a SIGKILL between them could leave a head that points at missing state. Inside
:meth:`LevelDB.block_write` every write of those steps lands in one in-memory dict (reads see
it), and leaves for disk as a single atomic, fsynced batch — so a node killed at any instant
restarts at the previous or the new head, never between.

The project's own keys (everything that is not py-evm's) live under one versioned prefix,
:data:`SCHEMA_PREFIX`; :meth:`LevelDB.check_schema` refuses to open a data directory written by
another schema version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

#: Version of the project's own key layout; bump it when a key's meaning changes.
SCHEMA_VERSION = 2
#: Every project-owned key starts with this prefix; py-evm's keys never do.
SCHEMA_PREFIX = b"portledger:"

_DELETED = object()


class SchemaMismatch(RuntimeError):
    """The data directory was written by an incompatible version of the key schema."""


class NodeKeys:
    """The project's own LevelDB keys (versioned, prefixed)."""

    schema_version = SCHEMA_PREFIX + b"schema-version"
    #: Hash of the genesis block this data directory was initialised with.
    genesis_hash = SCHEMA_PREFIX + b"v1:genesis-hash"
    #: Last consensus message this node signed (it never signs a conflicting one after a
    #: restart: :mod:`consensus.state`).
    last_signed = SCHEMA_PREFIX + b"v1:last-signed"
    #: Equivocation evidence number n (8 bytes big-endian after the prefix) and the count
    #: (layout in :mod:`node.evidence`).
    equivocation_prefix = SCHEMA_PREFIX + b"v1:equivocation:"
    equivocation_count = SCHEMA_PREFIX + b"v1:equivocation-count"
    #: Evidence number n (8 bytes big-endian after the prefix) is recorded on chain: the
    #: number of the block that recorded it (8 bytes).
    equivocation_reported = SCHEMA_PREFIX + b"v1:equivocation-reported:"


class LevelDB(BaseAtomicDB):
    """A py-evm atomic database on LevelDB with block-wide atomic, synced writes.

    Parameters
    ----------
    path:
        Directory of the LevelDB files; created if missing.
    sync:
        fsync every committed batch (the default; turn off only for throw-away benches).
    """

    def __init__(self, path: str, *, sync: bool = True) -> None:
        self._db = plyvel.DB(path, create_if_missing=True, lru_cache_size=64 * 1024 * 1024)
        self._sync = sync
        self._pending: dict[bytes, Any] | None = None
        self._depth = 0
        # The thread that owns the open block write: only it sees the pending writes, so a
        # reader on another thread (JSON-RPC) never observes a half-built block.
        self._writer: int | None = None

    # -- key/value -----------------------------------------------------------------------
    def _visible_pending(self) -> dict[bytes, Any] | None:
        if self._pending is not None and self._writer == threading.get_ident():
            return self._pending
        return None

    def __getitem__(self, key: bytes) -> bytes:
        pending = self._visible_pending()
        if pending is not None and key in pending:
            value = pending[key]
            if value is _DELETED:
                raise KeyError(key)
            return value  # type: ignore[no-any-return]
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        pending = self._visible_pending()
        if pending is not None:
            pending[key] = value
        else:
            self._db.put(key, value, sync=self._sync)

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        pending = self._visible_pending()
        if pending is not None:
            pending[key] = _DELETED
        else:
            self._db.delete(key, sync=self._sync)

    def _exists(self, key: bytes) -> bool:
        pending = self._visible_pending()
        if pending is not None and key in pending:
            return pending[key] is not _DELETED
        return self._db.get(key) is not None

    # -- atomicity -----------------------------------------------------------------------
    @contextmanager
    def block_write(self) -> Iterator[None]:
        """Collect every write made inside into one atomic, synced LevelDB batch.

        Re-entrant: an inner ``block_write`` (or ``atomic_batch``) joins the outer one. If the
        body raises, nothing of it reaches the disk.
        """
        if self._pending is not None:
            if self._writer != threading.get_ident():
                raise RuntimeError("a block write is already open on another thread")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._pending = {}
        self._depth = 1
        self._writer = threading.get_ident()
        try:
            yield
            pending = self._pending
            with self._db.write_batch(sync=self._sync, transaction=True) as batch:
                for key, value in pending.items():
                    if value is _DELETED:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        finally:
            self._pending = None
            self._depth = 0
            self._writer = None

    @contextmanager
    def staged(self) -> Iterator[dict[bytes, Any]]:
        """Collect the writes made inside into the yielded dict instead of writing them.

        The block executor uses it to execute a proposal without committing it; the writes go
        to disk later, in the block write that commits the block (:meth:`apply`), or nowhere.
        """
        if self._pending is not None:
            raise RuntimeError("a block write is already open")
        writes: dict[bytes, Any] = {}
        self._pending = writes
        self._depth = 1
        self._writer = threading.get_ident()
        try:
            yield writes
        finally:
            self._pending = None
            self._depth = 0
            self._writer = None

    def apply(self, writes: dict[bytes, Any]) -> None:
        """Add writes collected by :meth:`staged` to the open block write."""
        if self._visible_pending() is None:
            raise RuntimeError("apply() needs an open block_write on this thread")
        assert self._pending is not None
        self._pending.update(writes)

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        # py-evm's readable batch; its diff lands in our pending write-set, which commits
        # atomically (alone, or as part of the enclosing block write).
        with self.block_write(), AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    # -- lifecycle and schema ------------------------------------------------------------
    def check_schema(self) -> None:
        """Stamp a new database with :data:`SCHEMA_VERSION`; refuse a foreign one."""
        found = self._db.get(NodeKeys.schema_version)
        if found is None:
            self._db.put(NodeKeys.schema_version, str(SCHEMA_VERSION).encode(), sync=True)
        elif int(found) != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"data directory uses key schema v{int(found)}, this node reads v{SCHEMA_VERSION}"
            )

    def close(self) -> None:
        # Drop the plyvel handle too: a closed plyvel.DB that is only deallocated during
        # interpreter shutdown (py-evm's caches keep this wrapper alive until then) prints
        # "Error in sys.excepthook" from its finaliser.
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def closed(self) -> bool:
        return self._db is None

    @property
    def path(self) -> str | None:
        """The LevelDB directory (``<datadir>/chain``); None once closed."""
        return None if self._db is None else str(self._db.name)
