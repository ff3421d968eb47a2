"""The generation beacon: a number in a shared file, read by several "processes"."""

from __future__ import annotations

from pathlib import Path

from gateway.beacon import GenerationBeacon


class _Store:
    """The database's own number (the authority the beacon re-reads)."""

    def __init__(self) -> None:
        self.generation = 0
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.generation


def test_publication_reaches_every_process_with_a_memory_read(tmp_path: Path) -> None:
    store, now = _Store(), [100.0]
    a = GenerationBeacon(tmp_path / "db-generation", store, clock=lambda: now[0])
    b = GenerationBeacon(tmp_path / "db-generation", store, clock=lambda: now[0])
    reads = store.reads
    store.generation = 3
    a.publish(3)
    assert b.current() == 3 and a.current() == 3
    assert store.reads == reads  # within the recheck interval: the file, not the database

    # Out of order: a late publication of an older number does not lower the beacon.
    store.generation = 5
    a.publish(5)
    b.publish(4)
    assert b.current() == 5
    a.close()
    b.close()


def test_a_lost_publication_is_repaired_and_a_restored_database_followed(tmp_path: Path) -> None:
    store, now = _Store(), [100.0]
    beacon = GenerationBeacon(tmp_path / "db-generation", store, clock=lambda: now[0])
    store.generation = 2  # committed; the writer died before publishing
    assert beacon.current() == 0
    now[0] += 1.0
    assert beacon.current() == 2
    now[0] += 0.5
    assert beacon.current() == 2  # the repaired file
    now[0] -= 60  # a clock set back re-reads at once
    store.generation = 4
    assert beacon.current() == 4
    beacon.close()

    store.generation = 1  # restored from a backup: a new beacon follows it exactly
    reopened = GenerationBeacon(tmp_path / "db-generation", store, clock=lambda: now[0])
    assert reopened.current() == 1
    reopened.close()
