"""Generation beacons: one number in shared memory that tells every process a store changed.

A gateway started with ``serve --workers N`` runs N processes, each with its own connection to
the same SQLite files. A process that caches answers derived from a store must learn, on its
next request, that another process changed what the answers were made from, and it must learn
it cheaply: a query per request would cost what the cache saves.

The store therefore keeps a *generation*: a number in the database that every relevant write
bumps inside its own transaction (so it is never lost and never runs ahead of the data). After
the commit the writer *publishes* it in an 8-byte file next to the database, mapped into memory
by every process (``<database>-generation``, one unsigned 64-bit little-endian number). A
reader compares the beacon with the generation its cache was filled at: equal means nothing
changed (one memory read), different means drop what was cached.

Because publication follows the commit, a process that reads the new number finds the commit in
its next query; a writer that dies between the two leaves the beacon behind, so every process
also re-reads the database's own number at least once per ``recheck`` seconds and repairs the
file. Publication only ever raises the number, so two writers publishing out of order (the
second one's commit made between the first one's commit and its publication) cannot move it
back to a number a reader filled its cache at before the second commit. Opening a beacon sets
it to the database's number exactly, so a database restored from a backup (its number went
back) is followed again from the next start.

:class:`gateway.readside.store.SqliteReadModel` publishes its change journal's generation this
way; the accounts database (:mod:`gateway.accounts.database`) publishes its credential generation (revoked
keys, suspended organisations) with this class.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

#: The published generation: one unsigned 64-bit little-endian number.
_U64 = struct.Struct("<Q")


class GenerationBeacon:
    """A store's generation, published in a shared-memory file (see the module docstring).

    Parameters
    ----------
    path
        The beacon file (created, 8 zero bytes, if missing); by convention the database's path
        with ``-generation`` appended.
    stored
        Reads the generation from the database itself (the authority).
    recheck
        The database's number is read at least this often (seconds).
    clock
        Time source, seconds (monotonic by default; a wall clock set back only causes an
        early re-read).
    """

    def __init__(
        self,
        path: str | Path,
        stored: Callable[[], int],
        *,
        recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._stored = stored
        self._recheck = recheck
        self._clock = clock
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _U64.size:
                os.ftruncate(fd, _U64.size)
            self._map = mmap.mmap(fd, _U64.size)
        finally:
            os.close(fd)
        self._checked = clock()
        _U64.pack_into(self._map, 0, stored())  # the database's number, even a lower one

    def _read(self) -> int:
        return int(_U64.unpack_from(self._map)[0])

    def publish(self, generation: int) -> None:
        """Publish a committed generation (call it after the commit; never lowers the beacon).

        The comparison and the write are two steps, not one atomic one; two processes
        publishing within the same microseconds may still lower it, until the next re-read of
        the database's number (at most ``recheck`` seconds later) raises it again.
        """
        if not self._map.closed and generation > self._read():
            _U64.pack_into(self._map, 0, generation)

    def current(self) -> int:
        """The store's generation: the beacon, or the database's own number once per recheck."""
        now = self._clock()
        if 0.0 <= now - self._checked < self._recheck:  # a clock set back re-reads at once
            return self._read()
        self._checked = now
        stored = self._stored()
        self.publish(stored)  # a writer died between its commit and its publication
        return stored

    def close(self) -> None:
        """Unmap the file (the file itself stays for the other processes)."""
        self._map.close()
