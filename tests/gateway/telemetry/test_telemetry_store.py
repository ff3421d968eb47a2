"""The telemetry store: de-duplication, sealing at rest, the MMSI -> IMO join, bounded queries.

AIS readings are GPSD's real sample messages (``tests/data/telemetry``, decodes checked by
independent decoders); reefer and truck readings are ours (``tests/support/telemetry.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events.model import Reference, Visibility
from gateway.telemetry.model import READING_TYPES, Reading, from_canonical
from gateway.telemetry.store import (
    MAX_HISTORY,
    MAX_READING_BYTES,
    ReadingRefused,
    TelemetryStore,
    TelemetryStoreError,
)
from tests.support import telemetry as tt

T0 = 1_790_000_000
SECRET = bytes(range(32))
BOX = tt.container("TLMU", 100001)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    s = TelemetryStore(tmp_path / "telemetry.sqlite", secret=SECRET, clock=lambda: T0 + 5000)
    yield s
    s.close()


def _file_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def test_a_resent_reading_is_stored_once(store: TelemetryStore) -> None:
    readings = tt.reefer_readings(BOX, T0, 10)
    assert store.add(3, readings, Visibility(), owner=2) == (10, 0)
    assert store.add(3, readings[5:] + tt.reefer_readings(BOX, T0 + 10 * 900, 2),
                     Visibility(), owner=2) == (2, 5)
    # the same reading twice in one call counts once
    assert store.add(3, [readings[0], readings[0]], Visibility()) == (0, 2)
    # another organisation's identical reading is its own
    assert store.add(4, readings[:3], Visibility(), owner=9) == (3, 0)
    assert store.counts()["reefer"] == 15


def test_private_readings_are_sealed_at_rest_and_ais_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    store = TelemetryStore(folder / "telemetry.sqlite", secret=SECRET)
    reefer = tt.reefer_readings(BOX, T0, 20, excursion=range(5, 8))
    trucks = tt.truck_readings("KV4321", T0, 20, job="JOB-TSUEN-WAN-77")
    ais = tt.gpsd_readings(T0)
    store.add(3, [*reefer, *trucks, *ais], Visibility("named", (5,)), owner=2)
    try:
        raw = _file_bytes(folder)
        for secret_text in (BOX, "KV4321", "JOB-TSUEN-WAN-77", "temperature", "setpoint",
                            "-11.5", "22.339", "114.124"):
            assert secret_text.encode() not in raw, secret_text
        # neither a plain SHA-256 nor keccak of a private reading is in the file (a dictionary
        # of container numbers and temperatures could invert those)
        for reading in reefer[:3]:
            assert hashlib.sha256(reading.canonical_bytes()).digest() not in raw
            assert keccak(reading.canonical_bytes()) not in raw
        # public AIS data is stored as it was broadcast
        assert b"EVER DIADEM" in raw and b"371798000" in raw
    finally:
        store.close()
    # and it reads back
    again = TelemetryStore(folder / "telemetry.sqlite", secret=SECRET)
    try:
        found, _ = again.history("reefer", subject=Reference("container", BOX), limit=50)
        assert [f.reading for f in found] == reefer
        assert found[6].reading.values["temperature"] == pytest.approx(-11.5)
    finally:
        again.close()


def test_a_file_opens_only_with_its_secret(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    TelemetryStore(path, secret=SECRET).close()
    with pytest.raises(TelemetryStoreError, match="another telemetry secret"):
        TelemetryStore(path, secret=os.urandom(32))
    with pytest.raises(TelemetryStoreError, match="another telemetry secret"):
        TelemetryStore(path, secret=None)


def test_a_damaged_or_moved_body_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    store = TelemetryStore(path, secret=SECRET)
    store.add(3, tt.reefer_readings(BOX, T0, 2), Visibility(), owner=2)
    store.add(4, tt.reefer_readings(BOX, T0 + 99, 1), Visibility(), owner=5)
    db = sqlite3.connect(path)
    # org 4's body moved onto org 3's row: GCM's associated data binds owner and digest
    db.execute("UPDATE readings SET body = (SELECT body FROM readings WHERE id = 3),"
               " nonce = (SELECT nonce FROM readings WHERE id = 3) WHERE id = 1")
    db.commit()
    db.close()
    with pytest.raises(TelemetryStoreError, match="does not decrypt"):
        store.reading(1)
    assert store.reading(2) is not None
    store.close()


def test_gpsd_positions_read_back_as_the_checked_decodes_say(store: TelemetryStore) -> None:
    readings = tt.gpsd_readings(T0)
    assert store.add(2, readings, Visibility(), owner=2) == (len(readings), 0)
    checked = tt.gpsd_checked_positions()
    assert len(checked) == 8
    for mmsi, (lat, lon) in checked.items():
        latest = store.latest("ais-position", mmsi=mmsi)
        assert latest is not None and latest.mmsi == mmsi
        assert latest.reading.values["lat"] == pytest.approx(lat, abs=1e-5)
        assert latest.reading.values["lon"] == pytest.approx(lon, abs=1e-5)
        assert latest.reading.public and latest.owner == 2


def test_a_position_stored_under_its_mmsi_is_found_by_imo_once_static_data_links_it(
    store: TelemetryStore,
) -> None:
    mmsi, imo = tt.EVER_DIADEM_MMSI, tt.EVER_DIADEM_IMO
    (early,) = tt.ais_readings(tt.ours_position(mmsi, 22.28, 114.15, 11.8, 181.0), T0)
    assert early.subject is None
    store.add(2, [early], Visibility(), owner=2)
    vessel = Reference("vessel", imo)
    assert store.vessel(imo) is None
    assert store.latest("ais-position", subject=vessel) is None
    assert store.latest("ais-position", mmsi=mmsi) is not None
    # GPSD's real type 5 message of EVER DIADEM arrives (from another organisation)
    static = [r for r in tt.gpsd_readings(T0 + 60) if r.values.get("mmsi") == mmsi]
    assert len(static) == 1 and static[0].type == "ais-static"
    store.add(7, static, Visibility(), owner=6)
    found = store.vessel(imo)
    assert found is not None
    assert (found.mmsi, found.name, found.callsign, found.destination, found.ship_type) == (
        mmsi, "EVER DIADEM", "3FOF8", "NEW YORK", 70)
    assert found.eta == "2027-05-15T14:00:00Z"  # the adapter's guess of the year-less ETA
    assert store.vessel_by_mmsi(mmsi) == found
    latest = store.latest("ais-position", subject=vessel)
    assert latest is not None and latest.reading == early
    # a later position that names its vessel is found by IMO too, and first
    named = Reading("ais-position", T0 + 120, vessel, {**early.values, "lat": 22.29})
    store.add(2, [named], Visibility(), owner=2)
    track, more = store.history("ais-position", subject=vessel)
    assert [p.reading for p in track] == [early, named] and not more


def test_an_imo_whose_check_digit_fails_is_kept_but_never_joined(store: TelemetryStore) -> None:
    bad = Reading("ais-static", T0, Reference("vessel", "9134271"),
                  {"mmsi": 477000001, "imo": "9134271", "name": "TYPO MARU",
                   "flags": [{"field": "imo", "code": "invalid-check-digit"}]})
    store.add(2, [bad], Visibility())
    vessel = store.vessel_by_mmsi(477000001)
    assert vessel is not None and (vessel.name, vessel.imo) == ("TYPO MARU", None)
    assert store.vessel("9134271") is None
    stored = store.latest("ais-static", mmsi=477000001)
    assert stored is not None and stored.reading == bad


def test_type_24_parts_merge_and_older_static_data_never_overwrites_newer(
    store: TelemetryStore,
) -> None:
    part_a, part_b = [r for r in tt.gpsd_readings(T0) if r.values.get("mmsi") == 271041815]
    store.add(2, [part_b], Visibility())
    store.add(2, [part_a], Visibility())  # older (GPSD's file order), arrives later
    vessel = store.vessel_by_mmsi(271041815)
    assert vessel is not None
    assert (vessel.name, vessel.callsign, vessel.ship_type, vessel.imo) == (
        "PROGUY", "TC6163", 60, None)
    assert vessel.updated == part_b.time
    stale = Reading("ais-static", T0 - 1000, None, {"mmsi": 271041815, "name": "OLD NAME",
                                                   "imo": 9134270})
    store.add(2, [stale], Visibility())
    vessel = store.vessel_by_mmsi(271041815)
    assert vessel is not None and vessel.name == "PROGUY" and vessel.imo == "9134270"


def test_history_is_bounded_ordered_and_ranged(store: TelemetryStore) -> None:
    readings = tt.reefer_readings(BOX, T0, 1200, step=60)
    store.add(3, readings, Visibility(), owner=2)
    subject = Reference("container", BOX)
    found, more = store.history("reefer", subject=subject)
    assert len(found) == 500 and more
    assert [f.reading for f in found] == readings[-500:]
    found, more = store.history("reefer", subject=subject, limit=10**9)
    assert len(found) == 1200 and not more and MAX_HISTORY >= 1200
    found, more = store.history("reefer", subject=subject, since=T0 + 60 * 100,
                                until=T0 + 60 * 109)
    assert [f.reading for f in found] == readings[100:110] and not more
    found, more = store.history("reefer", subject=subject, limit=5, until=T0 + 60 * 9)
    assert [f.reading for f in found] == readings[5:10] and more
    assert store.history("truck-position", subject=subject) == ([], False)
    assert store.history("reefer", subject=Reference("container", tt.container("TLMU", 2)))[0] == []


def test_a_visibility_filter_is_applied_before_results_are_counted(
    store: TelemetryStore,
) -> None:
    mine = tt.reefer_readings(BOX, T0, 30, step=60)
    theirs = tt.reefer_readings(BOX, T0 + 30, 600, step=60, setpoint=-20.0)
    store.add(3, mine, Visibility(), owner=2)
    store.add(4, theirs, Visibility("named", (2,)), owner=6)
    subject = Reference("container", BOX)
    found, more = store.history("reefer", subject=subject, limit=50,
                                allow=lambda a: a.org_id == 3)
    assert [f.reading for f in found] == mine and not more
    latest = store.latest("reefer", subject=subject, allow=lambda a: a.org_id == 3)
    assert latest is not None and latest.reading == mine[-1]
    assert store.latest("reefer", subject=subject, allow=lambda a: False) is None


def test_readings_the_store_refuses_are_typed_and_store_nothing(store: TelemetryStore) -> None:
    good = tt.reefer_readings(BOX, T0, 3)
    bad_cases = [
        (Reading("reefer", 1 << 40, good[0].subject, {"temperature": 1.0}), "invalid-time"),
        (Reading("reefer", 0, good[0].subject, {"temperature": 1.0}), "invalid-time"),
        (Reading("reefer", T0, good[0].subject, {"temperature": math.nan}), "invalid-values"),
        (Reading("reefer", T0, good[0].subject, {"t": math.inf}), "invalid-values"),
        (Reading("reefer", T0, good[0].subject, {"t": object()}), "invalid-values"),
        (Reading("reefer", T0, good[0].subject, {"note": "x" * MAX_READING_BYTES}),
         "reading-too-large"),
    ]
    for bad, code in bad_cases:
        with pytest.raises(ReadingRefused) as info:
            store.add(3, [*good, bad], Visibility())
        assert info.value.code == code and info.value.index == 3
    for visibility in (Visibility("everyone"), Visibility("named", (0,))):
        with pytest.raises(ReadingRefused) as info:
            store.add(3, good, visibility)
        assert info.value.code == "invalid-visibility"
    assert store.counts().get("reefer", 0) == 0
    # a NaN spelled inside a string is only text
    ok = Reading("reefer", T0, good[0].subject, {"note": "NaN Infinity"})
    assert store.add(3, [ok], Visibility()) == (1, 0)


def test_stored_readings_expose_owner_readers_and_mode(store: TelemetryStore) -> None:
    store.add(3, tt.truck_readings("KV4321", T0, 1), Visibility("reference", (9, 5, 9)), owner=2)
    stored = store.reading(1)
    assert stored is not None
    assert (stored.org_id, stored.owner, stored.visibility) == (
        3, 2, Visibility("reference", (5, 9)))
    access = stored.access
    assert (access.public, access.mode, access.readers, access.has_subject) == (
        False, "reference", (5, 9), True)
    body = stored.to_json()
    assert body["kind"] == "reading" and body["subject"] == {"kind": "truck", "value": "KV4321"}
    assert body["job"] == "JOB-1" and body["anchor"] is None and body["id"] == 1
    assert store.reading(2) is None


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_mutated_canonical_bytes_give_a_reading_or_a_value_error(data: st.DataObject) -> None:
    readings = [*tt.gpsd_readings(T0), *tt.reefer_readings(BOX, T0, 2),
                *tt.truck_readings("KV4321", T0, 1)]
    raw = bytearray(data.draw(st.sampled_from(readings)).canonical_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["flip", "cut", "insert", "nest"]))
        at = data.draw(st.integers(0, len(raw)))
        if what == "flip" and at < len(raw):
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif what == "cut":
            del raw[at:]
        elif what == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            raw[at:at] = b"[" * 5000
    try:
        reading = from_canonical(bytes(raw))
    except ValueError:
        return
    assert reading.type in READING_TYPES


def test_subjects_with_finds_only_the_containers_that_have_readings(
        store: TelemetryStore) -> None:
    box, other, none = (Reference("container", n) for n in (BOX, "MSKU1234565", "TGHU9876542"))
    store.add(3, tt.reefer_readings(BOX, T0, 3), Visibility())
    store.add(4, tt.reefer_readings(other.value, T0, 1), Visibility("named", (9,)))
    assert store.subjects_with("reefer", [box, other, none]) == {box, other}
    assert store.subjects_with("truck-position", [box, other]) == set()
    assert store.subjects_with("reefer", []) == set()


def test_a_retracted_reefer_reading_is_no_longer_in_the_history(store: TelemetryStore) -> None:
    box = Reference("container", BOX)
    readings = [dataclasses.replace(r, values={**r.values, "eventID": f"ev-{i}"})
                for i, r in enumerate(tt.reefer_readings(BOX, T0, 3))]
    store.add(3, readings, Visibility())
    assert [r.reading.values["eventID"] for r in store.history("reefer", subject=box)[0]] == [
        "ev-0", "ev-1", "ev-2"]
    # DCSA Reefer 1.0: a retraction names the event, not the container
    retraction = Reading("reefer", T0 + 5000, None, {
        "eventID": "ev-9", "eventTypeCode": "RETRACTION", "retractedEventID": "ev-1"})
    # another organisation cannot retract this one's reading
    store.add(4, [retraction], Visibility())
    assert len(store.history("reefer", subject=box)[0]) == 3
    store.add(3, [retraction], Visibility())
    assert [r.reading.values["eventID"] for r in store.history("reefer", subject=box)[0]] == [
        "ev-0", "ev-2"]
