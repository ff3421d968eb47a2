"""The SQLite read model through its interface: atomic ranges with a compare-and-set cursor,
bills of lading, grants, flags, queries, reset, the access log and known references."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.readside.readmodel import (
    AccessEntry,
    Cursor,
    CursorMoved,
    DeclarationFiled,
    DeclarationStatus,
    EventAdded,
    EventFilter,
    Grant,
    GrantChange,
    HouseChange,
    IndexedEvent,
    MasterContainers,
    Member,
    MemberChange,
    ReadModelError,
    ReferenceFlag,
)
from gateway.readside.store import SqliteReadModel


def key(n: int) -> bytes:
    return n.to_bytes(32, "big")


def ev(event_id: int, subject: int, *, publisher: int = 4, at: int = 1000, readers=(),
       ref: bool = False, retracts: int = 0, type_code: int = 0x0302) -> IndexedEvent:
    return IndexedEvent(
        event_id=event_id, block=event_id, tx_hash=b"\x01" * 32, log_index=0, block_time=at + 5,
        publisher=publisher, subject=key(subject), type_code=type_code, classifier=3,
        event_time=at, location="HKHKG", retracts=retracts, payload_hash=b"\x02" * 32,
        envelope=b"env%d" % event_id, key_version=0, readers=tuple(readers),
        reference_readable=ref,
    )


@pytest.fixture
def model(tmp_path: Path):
    m = SqliteReadModel(tmp_path / "readmodel.db")
    yield m
    m.close()


def test_a_range_commits_with_its_cursor_or_not_at_all(model: SqliteReadModel) -> None:
    c1 = Cursor(1, b"\xaa" * 32)
    model.apply([EventAdded(ev(1, 7))], c1, None)
    assert model.cursor() == c1 and model.event_count() == 1
    # a writer that started from an older cursor loses, and writes nothing
    with pytest.raises(CursorMoved):
        model.apply([EventAdded(ev(2, 7))], Cursor(2, b"\xbb" * 32), None)
    assert model.event_count() == 1 and model.cursor() == c1
    # a failing change rolls the whole range back, cursor included
    with pytest.raises(Exception):  # noqa: B017 - sqlite IntegrityError: event 1 exists
        model.apply([EventAdded(ev(3, 7)), EventAdded(ev(1, 7))], Cursor(3, b"\xcc" * 32), c1)
    assert model.event_count() == 1 and model.cursor() == c1 and model.event(3) is None


def test_events_queries_retraction_and_reference_flag(model: SqliteReadModel) -> None:
    model.apply(
        [
            EventAdded(ev(1, 7, at=300, readers=[5, 13], ref=True)),
            EventAdded(ev(2, 7, at=100)),
            EventAdded(ev(3, 8, at=200, publisher=2, readers=[4])),
            EventAdded(ev(4, 7, at=100, retracts=2)),
            ReferenceFlag(1, False),
        ],
        Cursor(4, b"\x01" * 32),
        None,
    )
    assert [e.event_id for e in model.events_of_subjects([key(7)])] == [2, 4, 1]
    assert model.event(2).retracted_by == 4
    assert model.event(1).readers == (5, 13)
    assert not model.event(1).reference_readable  # publisher's explicit choice wins
    model.apply([ReferenceFlag(1, True)], Cursor(5, b"\x02" * 32), Cursor(4, b"\x01" * 32))
    assert model.event(1).reference_readable
    # what organisation 13 may list: its own (none) or naming it
    found = model.find_events(EventFilter(publishers=[13], readers_any=[13]))
    assert [e.event_id for e in found] == [1]
    found = model.find_events(EventFilter(publishers=[4], readers_any=[4], time_from=150))
    assert [e.event_id for e in found] == [1, 3]
    assert [e.event_id for e in model.find_events(EventFilter(after_id=1, limit=2))] == [2, 3]
    assert model.find_events(EventFilter(subjects=[key(8)], type_codes=[0x0101])) == []


def test_bills_of_lading_grants_directory_declarations(model: SqliteReadModel) -> None:
    model.apply(
        [
            MemberChange(Member(4, "Pacific Ocean Line", 4, b"\x04" * 32, True, ("0xA",))),
            MasterContainers(key(100), 4, (key(1), key(2)), 1),
            MasterContainers(key(100), 4, (key(3),), 2),
            HouseChange(key(200), key(100), 5, (key(1), key(2)), 2),
            HouseChange(key(200), key(100), 5, (key(2),), 3),  # corrected
            HouseChange(key(201), key(100), 5, (key(3),), 3),
            HouseChange(key(201), key(100), 5, None, 4),  # unlinked
            GrantChange(Grant(4, 1, key(1), 13, 0, b"w" * 84, 3, True)),
            GrantChange(Grant(4, 1, key(2), 13, 0, b"", 4, False)),
            DeclarationFiled(key(300), 6, 1, b"\x05" * 32, 4, 1000),
            DeclarationStatus(key(300), 10, 4, b"\x06" * 32, 5, 1, 1100),
            DeclarationStatus(key(300), 10, 6, b"\x07" * 32, 6, 0, 1200),
        ],
        Cursor(6, b"\x06" * 32),
        None,
    )
    assert model.organisation(4).accounts == ("0xA",)
    assert model.master(key(100)) == (4, (key(1), key(2), key(3)))
    assert model.house(key(200)).containers == (key(2),)
    assert model.house(key(201)) is None
    assert [h.house for h in model.houses_of_master(key(100))] == [key(200)]
    assert model.masters_of_container(key(3)) == [key(100)]
    assert [g.target for g in model.grants_to(13, [key(1), key(2)])] == [key(1)]
    grant = model.grant(4, 1, key(1), 13)
    assert grant.in_force(10**10)
    expiring = Grant(4, 1, key(1), 13, 500, b"w", 1, True)
    assert expiring.in_force(500) and not expiring.in_force(501)
    decl = model.declaration(key(300))
    assert decl.declarant == 6 and [s[2] for s in decl.statuses] == [4, 6]


def test_reset_keeps_the_access_log_and_known_references(model: SqliteReadModel) -> None:
    model.apply([EventAdded(ev(1, 7))], Cursor(1, b"\x01" * 32), None)
    model.log_access([AccessEntry(4, 13, 1, key(7), 1000, "grant"),
                      AccessEntry(4, 5, 1, key(7), 1001, "named"),
                      AccessEntry(2, 13, 9, key(8), 1002, "reference")])
    model.add_known_references(13, [("container", "PCOU1000010"), ("mbl", "PCOL1")])
    model.reset()
    assert model.cursor() is None and model.event_count() == 0
    log = model.access_log(4)
    assert [e.reader for _, e in log] == [5, 13]  # newest first
    assert [e.reader for _, e in model.access_log(4, before=log[0][0])] == [13]
    assert sorted(model.known_references(13)) == [("container", "PCOU1000010"), ("mbl", "PCOL1")]


def test_refuses_another_schema_version(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "readmodel.db"
    SqliteReadModel(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(ReadModelError, match="rebuild"):
        SqliteReadModel(path)
