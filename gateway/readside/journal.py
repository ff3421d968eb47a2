"""The read model's change journal: which subject keys the writes after a generation touched.

Every write of chain-derived rows bumps a generation number (``meta.generation``) inside its
own transaction and notes which subject keys it touched (an event's subject, a grant's target,
a master or house B/L, a declaration; :data:`EVERYTHING` for directory changes, bulk loads and
resets), so a process that caches answers derived from the read model
(:mod:`gateway.tracking`'s view cache) can tell per request whether anything changed, and then
drop only what did. The SQLite read model also publishes the generation, after each commit, in
an 8-byte shared-memory file next to the database (``readmodel.db-generation``,
:class:`gateway.beacon.GenerationBeacon`), so that check costs a memory read instead of a
query; every process re-reads the database's own number at least once a second, which repairs
the file if a writer died between its commit and the publication.
"""

from __future__ import annotations

import sqlite3

#: Journal entry meaning "take everything as changed".
EVERYTHING = b""

#: Generations the change journal keeps (a process further behind drops all it cached).
JOURNAL_KEEP = 10_000


def stored_generation(db: sqlite3.Connection) -> int:
    """The generation the database holds (0 before the first write)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return int(row[0]) if row else 0


def record(db: sqlite3.Connection, touched: set[bytes]) -> int | None:
    """Bump the generation and note ``touched`` (inside the writing transaction); the new
    generation, or None if nothing was touched."""
    if not touched:
        return None
    generation = stored_generation(db) + 1
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('generation', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(generation),)
    )
    db.executemany(
        "INSERT OR IGNORE INTO change_journal (generation, subject) VALUES (?, ?)",
        [(generation, subject) for subject in touched],
    )
    floor = generation - JOURNAL_KEEP
    if floor > 0 and generation % 1000 == 0:  # prune now and then, not on every write
        db.execute("DELETE FROM change_journal WHERE generation <= ?", (floor,))
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('journal_floor', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(floor),)
        )
    return generation


def changed_since(db: sqlite3.Connection, generation: int,
                  ) -> tuple[int, frozenset[bytes] | None]:
    """The current generation and the subject keys the writes after ``generation`` touched,
    or None for "everything" (:meth:`gateway.readside.readmodel.ReadModel.changed_since`).

    ``db`` is a reading connection in autocommit mode; the floor, the generation and the rows
    are read in one snapshot.
    """
    db.execute("BEGIN")  # one snapshot for the floor, the generation and the rows
    try:
        meta = dict(db.execute(
            "SELECT key, value FROM meta WHERE key IN ('generation', 'journal_floor')"
        ).fetchall())
        current = int(meta.get("generation", 0))
        if not int(meta.get("journal_floor", 0)) <= generation <= current:
            return current, None
        rows = db.execute(
            "SELECT DISTINCT subject FROM change_journal WHERE generation > ?", (generation,)
        ).fetchall()
    finally:
        db.execute("COMMIT")
    subjects = frozenset(bytes(r[0]) for r in rows)
    return current, None if EVERYTHING in subjects else subjects
