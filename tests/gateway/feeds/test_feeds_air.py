"""Air cargo feeds: Cargo-IMP FSU/FWB and ONE Record LogisticsEvents into canonical AIR events.

Real samples (``tests/data/cargo-imp``, ``tests/data/one-record``; see their SOURCES.md) are read
with known expectations; table tests cover every FSU status code, continuation lines, Type-B
envelopes, OCI, the AWB check digit and year resolution; the SIMULATED FSU sequence of
``devnet.simfeeds.cargo_imp`` round-trips; Hypothesis mutates the real messages (byte flips,
truncation, insertion, line shuffles) and every outcome must be a result, never an exception.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devnet.simfeeds import cargo_imp as simulated
from gateway.events.model import MAX_DETAILS_BYTES, CanonicalEvent, validate
from gateway.feeds import cargo_imp, formats, one_record
from gateway.feeds.model import FeedError, ParseResult
from tests.support import fuzz

DATA = Path(__file__).parents[2] / "data"
CARGO_IMP = DATA / "cargo-imp"
ONE_RECORD = DATA / "one-record"


def unix(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M")


#: When the tests' feeds "arrive": the year-less Cargo-IMP dates resolve around it.
NOW = unix(2026, 6, 22, 12, 0)


def sample(name: str) -> bytes:
    return (CARGO_IMP / name).read_bytes()


def onerec(name: str) -> bytes:
    return (ONE_RECORD / name).read_bytes()


def fsu(*lines: str, consignment: str = "160-12345675HKGAMS/T2K505.0",
        version: str = "FSU/14") -> bytes:
    """An FSU of ours: CRLF lines, no envelope."""
    return ("\r\n".join([version, consignment, *lines]) + "\r\n").encode()


def read(data: bytes, now: int = NOW) -> ParseResult:
    result = cargo_imp.parse(data, received_at=now)
    assert_well_formed(result)
    return result


def one_event(result: ParseResult) -> CanonicalEvent:
    assert not result.errors, result.errors
    assert len(result.events) == 1, result.events
    return result.events[0].event


def assert_well_formed(result: ParseResult) -> None:
    """What every result must be, whatever the input: typed errors, valid events, JSON report."""
    assert isinstance(result, ParseResult)
    for error in result.errors:
        assert isinstance(error, FeedError)
        assert error.code and isinstance(error.code, str)
        assert isinstance(error.line, int) and error.line >= 0
        assert error.message
    for parsed in result.events:
        validate(parsed.event)
        assert len(json.dumps(parsed.event.details, separators=(",", ":"))) <= MAX_DETAILS_BYTES
        assert parsed.key.startswith(f"feed:{result.format}:")
    json.dumps(list(result.report()))


# -- real Cargo-IMP samples ------------------------------------------------------------------
def test_real_fsu_with_attribute_lines_only_gives_no_event() -> None:
    """FIW + OCI + ULD: attributes, not milestones; read without error, counted."""
    result = read(sample("awbix-fsu-sample.txt"))
    assert result.recognised and not result.errors and not result.events
    assert result.stats == {"messages": 1, "refused": 0, "without_event": 1}


def test_real_fsu_attributes_travel_with_a_status_of_the_same_message() -> None:
    """The real FIW/OCI/ULD lines, plus a DEP line of ours: the DEP carries them all."""
    lines = sample("awbix-fsu-sample.txt").decode().split("\r\n")
    data = "\r\n".join(lines[:4] + ["DEP/QR8403/20JUN/DOHHKG/P2K505.0/A1039"] + lines[4:])
    event = one_event(read(data.encode()))
    assert event.event_type == "AIR.DEP"
    assert event.subject.value == "15753806270"
    assert (event.location, iso(event.event_time)) == ("QADOH", "2026-06-20T10:39")
    details = event.details
    assert details["typeB"] == {"priority": "QD", "to": ["SIN05XH"], "from": "HDQFMQR",
                                "time": "200739"}
    assert details["consignment"] == {"origin": "HKG", "destination": "NLU", "shipment": "P",
                                      "pieces": 2, "weightUnit": "K", "weight": 505.0,
                                      "totalPieces": 10}
    assert details["attributes"] == [{"code": "FIW", "fields": [
        "QR8403", "20JUN1039", "DOH", "P2K505.0", "S0720", "A1008"]}]
    assert details["oci"] == [
        {"country": "HK", "info": "ISS", "control": "RA", "text": "28490"},
        {"country": "HK", "control": "SS", "text": "SPX"},
        {"country": "HK", "control": "SM", "text": "XRY"},
        {"country": "HK", "control": "SN", "text": "REDACTED"},
        {"country": "HK", "control": "SD", "text": "18JUN262100"},
    ]
    assert details["uld"] == ["PMC72534QR", "PMC77313QR"]


def test_real_fsu_booking_in_soh_stx_etx_envelope() -> None:
    result = read(sample("awbix-sample-fsu2.txt"))
    assert [(e.line, e.code) for e in result.errors] == [(1, "unexpected-line")]
    (parsed,) = result.events
    event = parsed.event
    assert parsed.line == 4  # the FSU/14 line (after the stray line and the envelope)
    assert (event.event_type, event.classifier) == ("AIR.BKD", "ACT")
    assert event.subject.value == "15766792751"
    assert event.location == "KRINC"  # ICN, the flight's departure airport
    assert iso(event.event_time) == "2026-06-21T03:10"  # scheduled departure S0310
    details = event.details
    assert details["flight"] == "QR8985" and (details["from"], details["to"]) == ("ICN", "DOH")
    assert (details["shipment"], details["pieces"], details["weight"]) == ("P", 3, 524.0)
    assert details["departure"] == {"type": "S", "time": "0310"}
    assert details["arrival"] == {"type": "S", "time": "0650"}
    assert details["volume"] == {"unit": "MC", "amount": 4.761}
    assert details["localTime"] == "2026-06-21T03:10"
    assert details["typeB"]["from"] == "HDQFMQR"


@pytest.mark.parametrize(("name", "awb", "expected"), [
    ("awbix-fwb-sample1.txt", "15768076960", {
        "origin": "BSL", "destination": "DOH", "pieces": 1, "weightUnit": "K", "weight": 40.0,
        "volume": {"unit": "MC", "amount": 0.36},
        "routing": [{"to": "ZRH", "carrier": "QR"}, {"to": "DOH", "carrier": "QR"}],
        "shipper": "F HOFFMANN - LA ROCHE LTD", "consignee": "M S EBN SINA MEDICAL",
        "issued": {"date": "2026-04-16", "place": "BASEL"},
        "specialHandling": ["PIL", "PIP", "ERT", "DNS", "SPX", "EAP", "ECC"],
    }),
    ("awbix-fwb-sample2.txt", "15779284774", {
        "origin": "HKG", "destination": "CMB", "pieces": 1472, "weight": 13859.0,
        "flights": [{"flight": "QR8421", "day": 18}], "routing": [{"to": "CMB", "carrier": "QR"}],
        "shipper": "EXPO FREIGHT HONG KONG LIMITED", "consignee": "EXPOLANKA FREIGHT PVT LTD",
        "issued": {"date": "2026-04-15", "place": "HONG KONG"},
    }),
    ("awbix-fwb-sample3.txt", "15767568642", {
        "origin": "BSL", "destination": "RUH", "pieces": 3, "weight": 866.0,
        "routing": [{"to": "LGG", "carrier": "QR"}, {"to": "DOH", "carrier": "QR"},
                    {"to": "RUH", "carrier": "QR"}],
        "shipper": "PAVESCO AG", "consignee": "MAYA AL HAYAT TRADING EST.",
        "goods": "FEED SUPPLEMENTS FOR HORSES",
    }),
])
def test_real_fwb_is_one_booking_with_the_waybill(name: str, awb: str,
                                                  expected: dict[str, Any]) -> None:
    event = one_event(read(sample(name)))
    assert (event.event_type, event.classifier, event.subject.value) == ("AIR.BKD", "ACT", awb)
    waybill = event.details["waybill"]
    assert {k: waybill[k] for k in expected} == expected
    assert event.details["message"] == "FWB/16"
    assert iso(event.event_time) == waybill["issued"]["date"] + "T00:00"
    assert event.location == cargo_imp.AIRPORT_LOCODES[waybill["origin"]]


def test_real_fwb_goods_lines_are_joined() -> None:
    waybill = one_event(read(sample("awbix-fwb-sample1.txt"))).details["waybill"]
    # Cargo-IMP cuts goods lines at 20 characters, mid-word: joined by spaces, as documented
    assert waybill["goods"].startswith("PHARMACEUTICALS - NO T RESTRICTED")


def test_real_iata_fwb_with_elided_lines_is_refused_naming_them() -> None:
    result = read(sample("iata-one-record-FWB-Example1.txt"))
    assert not result.events
    assert [(e.line, e.code) for e in result.errors] == [(3, "bad-line"), (12, "bad-line")]
    assert result.stats["refused"] == 1


@pytest.mark.parametrize("path", sorted(CARGO_IMP.glob("*.txt")), ids=lambda p: p.name)
def test_cargo_imp_samples_are_sniffed(path: Path) -> None:
    data = path.read_bytes()
    assert cargo_imp.sniff(data)
    assert not one_record.sniff(data)


def test_registry_names_the_adapters() -> None:
    assert formats.adapter("cargo-imp") is cargo_imp
    assert formats.adapter("one-record") is one_record


# -- every status code -----------------------------------------------------------------------
STATUS_TABLE: list[tuple[str, str, str, str, dict[str, Any]]] = [
    # (status line, event type, local time, location, details subset) — lines are ours
    ("BKD/CX0271/15MAR/HKGAMS/T2K505.0/S1930/S0610-N", "AIR.BKD", "2026-03-15T19:30", "HKHKG",
     {"flight": "CX0271", "from": "HKG", "to": "AMS",
      "arrival": {"type": "S", "time": "0610", "dayChange": "N"}}),
    ("RCS/13MAR1415/HKG/T2K505.0/ACME FORWARDING LTD", "AIR.RCS", "2026-03-13T14:15", "HKHKG",
     {"airport": "HKG", "name": "ACME FORWARDING LTD", "pieces": 2, "weight": 505.0}),
    ("FOH/13MAR1300/HKG/T2/ACME FORWARDING LTD", "AIR.FOH", "2026-03-13T13:00", "HKHKG",
     {"shipment": "T", "pieces": 2}),
    ("PRE/CX0271/15MAR/HKGAMS/T2/S1930", "AIR.PRE", "2026-03-15T19:30", "HKHKG",
     {"departure": {"type": "S", "time": "1930"}}),
    ("MAN/CX0271/15MAR/HKGAMS/T2K505.0/S1930/S0610-N", "AIR.MAN", "2026-03-15T19:30", "HKHKG",
     {"flight": "CX0271"}),
    ("DEP/CX0271/15MAR/HKGAMS/T2K505.0/A1942/E0620-N", "AIR.DEP", "2026-03-15T19:42", "HKHKG",
     {"departure": {"type": "A", "time": "1942"}}),
    ("TFD/KL/16MAR1100/AMS/T2/TR12345", "AIR.TFD", "2026-03-16T11:00", "NLAMS",
     {"carrier": "KL", "reference": "TR12345"}),
    ("RCT/CX/16MAR1200/AMS/T2K505.0", "AIR.RCT", "2026-03-16T12:00", "NLAMS",
     {"carrier": "CX"}),
    ("ARR/CX0271/16MAR0625/AMS/T2K505.0", "AIR.ARR", "2026-03-16T06:25", "NLAMS",
     {"flight": "CX0271", "airport": "AMS"}),
    ("RCF/CX0271/16MAR0805/AMS/T2K505.0", "AIR.RCF", "2026-03-16T08:05", "NLAMS",
     {"flight": "CX0271"}),
    ("NFD/16MAR0930/AMS/T2/DUTCH IMPORTS BV", "AIR.NFD", "2026-03-16T09:30", "NLAMS",
     {"name": "DUTCH IMPORTS BV"}),
    ("AWR/CX0271/16MAR0625/AMS/T2", "AIR.AWR", "2026-03-16T06:25", "NLAMS",
     {"flight": "CX0271"}),
    ("AWD/16MAR1010/AMS/T2/DUTCH IMPORTS BV", "AIR.AWD", "2026-03-16T10:10", "NLAMS",
     {"name": "DUTCH IMPORTS BV"}),
    ("CCD/16MAR1340/AMS/T2", "AIR.CCD", "2026-03-16T13:40", "NLAMS", {"airport": "AMS"}),
    ("DLV/17MAR0900/AMS/T2K505.0/DUTCH IMPORTS BV", "AIR.DLV", "2026-03-17T09:00", "NLAMS",
     {"name": "DUTCH IMPORTS BV"}),
    ("DDL/17MAR1530/AMS/T2/CNEE DOOR", "AIR.DDL", "2026-03-17T15:30", "NLAMS",
     {"name": "CNEE DOOR"}),
    ("DIS/CX0271/16MAR0700/AMS/MSCA/P1", "AIR.DIS", "2026-03-16T07:00", "NLAMS",
     {"discrepancy": "MSCA", "shipment": "P", "pieces": 1}),
]


def test_the_table_covers_every_status_code() -> None:
    assert sorted(row[1] for row in STATUS_TABLE) == sorted(
        f"AIR.{code}" for code in cargo_imp.STATUS_CODES)
    assert len(cargo_imp.STATUS_CODES) == 17


@pytest.mark.parametrize(("line", "kind", "local", "location", "subset"), STATUS_TABLE,
                         ids=[row[1] for row in STATUS_TABLE])
def test_status_line(line: str, kind: str, local: str, location: str,
                     subset: dict[str, Any]) -> None:
    event = one_event(read(fsu(line)))
    assert (event.event_type, event.classifier) == (kind, "ACT")
    assert event.subject.kind == "awb" and event.subject.value == "16012345675"
    assert iso(event.event_time) == local and event.details["localTime"] == local
    assert event.location == location
    assert {k: event.details[k] for k in subset} == subset


@pytest.mark.parametrize("line", [
    "FIW/CX0271/15MAR1010/HKG/T2K505.0", "FOW/CX0271/15MAR1800/HKG/T2K505.0",
    "TRM/KL/AMS/T2", "DPU/12MAR1600/HKG/T2", "CRC/16MAR1200/AMS/T2/CX0271/15MAR/HKGAMS",
    "TGC/16MAR1230/AMS/T2", "DOC/16MAR0700/AMS",
])
def test_attribute_lines_are_not_events(line: str) -> None:
    alone = read(fsu(line))
    assert not alone.events and not alone.errors and alone.stats["without_event"] == 1
    event = one_event(read(fsu(line, "CCD/16MAR1340/AMS/T2")))
    code, *fields = line.split("/")
    assert event.details["attributes"] == [{"code": code, "fields": fields}]


def test_several_statuses_in_one_message_share_its_key_base_and_line() -> None:
    result = read(fsu("DLV/17MAR0900/AMS/P1", "DLV/18MAR0900/AMS/P1"))
    assert [e.event.event_type for e in result.events] == ["AIR.DLV", "AIR.DLV"]
    assert [e.line for e in result.events] == [1, 1]
    assert [e.key.rsplit(":", 1)[1] for e in result.events] == ["0", "1"]
    assert len({e.key for e in result.events}) == 2


def test_flight_status_without_date_takes_received_at() -> None:
    event = one_event(read(fsu("PRE///HKGAMS/T2/S2000/S0500-N")))
    assert event.event_time == NOW and "localTime" not in event.details
    assert event.location == "HKHKG"


def test_airport_outside_the_table_leaves_location_empty() -> None:
    event = one_event(read(fsu("DLV/17MAR0900/NCE/T2/CLIENT")))
    assert event.location == "" and event.details["airport"] == "NCE"


# -- continuation lines, OCI, OSI, ULD ------------------------------------------------------
def test_continuation_lines() -> None:
    event = one_event(read(fsu(
        "RCS/13MAR1415/HKG/T2K505.0/ACME", "/MC1.25DG2",
        "OCI/HK/ISS/RA/00001-01", "/HK//SS/SPX", "///SD/13MAR261400",
        "ULD/PMC12345CX/AKE23456CX-NCD", "/AKE34567CX",
        "OSI/HANDLE WITH CARE", "/KEEP   DRY",
    )))
    assert event.details["volume"] == {"unit": "MC", "amount": 1.25}
    assert event.details["densityGroup"] == 2
    assert event.details["oci"] == [
        {"country": "HK", "info": "ISS", "control": "RA", "text": "00001-01"},
        {"country": "HK", "control": "SS", "text": "SPX"},
        {"control": "SD", "text": "13MAR261400"},
    ]
    assert event.details["uld"] == ["PMC12345CX", "AKE23456CX-NCD", "AKE34567CX"]
    assert event.details["osi"] == "HANDLE WITH CARE KEEP DRY"


def test_transfer_continuation_names_the_other_carrier() -> None:
    event = one_event(read(fsu("RCT/CX/16MAR1200/AMS/T2", "/KL/KLM CARGO")))
    assert event.details["party"] == {"carrier": "KL", "name": "KLM CARGO"}


@pytest.mark.parametrize(("lines", "line", "code"), [
    (["/MC1.25"], 3, "bad-line"),  # continues nothing
    (["DEP/CX0271/15MAR/HKGAMS/T2", "/MC1.0"], 4, "bad-continuation"),
    (["OCI/HK/ISS"], 3, "bad-oci"),
    (["ULD/PMC 12345"], 3, "bad-uld"),
    (["XYZ/1/2"], 3, "unknown-line"),
    (["dep/CX0271/15MAR/HKGAMS"], 3, "bad-line"),
    (["DEP/CX0271"], 3, "missing-field"),
    (["DEP/CX0271/15MAR/HKGAMS/T2/A1930/E0530/MC1/X"], 3, "extra-field"),
    (["DEP/CX0271/15MAR/HKG/T2"], 3, "bad-field"),
    (["RCS/31APR1200/HKG"], 3, "bad-date"),
    (["RCS/30XYZ1200/HKG"], 3, "bad-date"),
    (["RCS/13MAR2460/HKG"], 3, "bad-time"),
    (["ARR/CX0271/16MAR0625-Z/AMS"], 3, "bad-field"),
    (["DIS/CX0271/16MAR0700/AMS/MS/T1"], 3, "bad-field"),
])
def test_bad_lines_refuse_the_message_with_their_line(lines: list[str], line: int,
                                                      code: str) -> None:
    result = read(fsu(*lines, "CCD/16MAR1340/AMS/T2"))
    assert not result.events
    assert [(e.line, e.code) for e in result.errors] == [(line, code)]
    assert result.stats["refused"] == 1


def test_missing_or_bad_consignment_line() -> None:
    result = read(b"FSU/14\r\n")
    assert [(e.line, e.code) for e in result.errors] == [(1, "missing-consignment")]
    result = read(fsu("CCD/16MAR1340/AMS/T2", consignment="16012345675HKGAMS/T2"))
    assert [(e.line, e.code) for e in result.errors] == [(2, "bad-consignment")]


# -- envelopes and files of several messages ------------------------------------------------
def test_several_enveloped_messages_all_or_nothing_each() -> None:
    good = "\r\n".join(["QK AMSFMKL HKGFMCX", "LHRFMBA", ".HKGFMCX 150930 ABC123",
                        "FSU/14", "160-12345675HKGAMS/T2", "DEP/CX0271/15MAR/HKGAMS/T2/A1930"])
    bad = "\r\n".join(["QK AMSFMKL", ".HKGFMCX 160700",
                       "FSU/14", "160-12345675HKGAMS/T2", "ARR/CX0271/16MAR0625/AMS/T2",
                       "NFD/16MAR/AMS/T2/OOPS/EXTRA"])
    third = "FSU/14\r\n160-12345675HKGAMS/T2\r\nDLV/17MAR0900/AMS/T2\r\n"
    result = read((good + "\r\n" + bad + "\r\n" + third).encode())
    assert [e.event.event_type for e in result.events] == ["AIR.DEP", "AIR.DLV"]
    assert [e.line for e in result.events] == [4, 13]
    assert result.events[0].event.details["typeB"] == {
        "priority": "QK", "to": ["AMSFMKL", "HKGFMCX", "LHRFMBA"], "from": "HKGFMCX",
        "time": "150930"}
    assert "typeB" not in result.events[1].event.details
    assert [(e.line, e.code) for e in result.errors] == [(12, "extra-field")]
    assert result.stats == {"messages": 3, "refused": 1, "without_event": 0}


def test_etx_ends_a_message_and_other_message_types_are_refused_whole() -> None:
    data = (b"\x01QK AMSFMKL\r\n.HKGFMCX 150930\r\n\x02FSU/14\r\n160-12345675HKGAMS/T2\r\n"
            b"CCD/16MAR1340/AMS/T2\x03\r\nstray text\r\n"
            b"FFM/8\r\n1/CX0271/15MAR/HKG\r\nAMS\r\n160-12345675HKGAMS/T2K505.0MC1.0/GEN\r\n")
    result = read(data)
    assert [e.event.event_type for e in result.events] == ["AIR.CCD"]
    assert [(e.line, e.code) for e in result.errors] == [(6, "unexpected-line"),
                                                         (7, "unsupported-message")]


def test_lf_only_and_latin1_lines() -> None:
    data = "FSU/14\n160-12345675HKGAMS/T2\nDLV/17MAR0900/AMS/T2/SÃO PAULO IMPORTAÇÃO\n"
    event = one_event(read(data.encode("latin-1")))
    assert event.details["name"] == "SÃO PAULO IMPORTAÇÃO"


def test_resent_file_gives_the_same_keys_and_the_envelope_does_not_count() -> None:
    bare = fsu("DEP/CX0271/15MAR/HKGAMS/T2/A1930")
    wrapped = b"QK AMSFMKL\r\n.HKGFMCX 150930\r\n" + bare
    keys = [e.key for e in read(bare).events]
    assert keys == [e.key for e in read(bare).events] == [e.key for e in read(wrapped).events]
    assert keys != [e.key for e in read(fsu("DEP/CX0271/15MAR/HKGAMS/T2/A1931")).events]


# -- the air waybill check digit ------------------------------------------------------------
def test_bad_check_digit_is_flagged_not_dropped() -> None:
    event = one_event(read(fsu("CCD/16MAR1340/AMS/T2",
                               consignment="160-12345676HKGAMS/T2")))
    assert event.subject.value == "16012345676"
    (flag,) = event.details["flags"]
    assert flag["code"] == "invalid-check-digit" and flag["field"] == "awb"
    fwb = sample("awbix-fwb-sample2.txt").replace(b"157-79284774", b"157-79284775")
    flagged = one_event(read(fwb))
    assert flagged.details["flags"][0]["code"] == "invalid-check-digit"


# -- dates without a year, local times ------------------------------------------------------
@pytest.mark.parametrize(("line", "now", "expected"), [
    ("RCS/30DEC2300/HKG", unix(2026, 1, 5), "2025-12-30T23:00"),  # last year's December
    ("RCS/02JAN0100/HKG", unix(2025, 12, 30), "2026-01-02T01:00"),  # next year's January
    ("RCS/15JUN1200/HKG", unix(2026, 6, 22), "2026-06-15T12:00"),
    ("RCS/29FEB1200/HKG", unix(2028, 1, 10), "2028-02-29T12:00"),
    ("RCS/29FEB1200/HKG", unix(2026, 6, 22), "2028-02-29T12:00"),  # nearest 29 February
    ("ARR/CX0271/31DEC2350-N/AMS", unix(2026, 1, 2), "2026-01-01T23:50"),  # day change +1
    ("ARR/CX0271/01JAN0010-P/AMS", unix(2025, 12, 31), "2025-12-31T00:10"),  # day change -1
    ("DEP/CX0271/31DEC/HKGAMS/T2/A0105-N", unix(2026, 1, 1), "2026-01-01T01:05"),
])
def test_year_is_the_nearest_to_received_at(line: str, now: int, expected: str) -> None:
    event = one_event(read(fsu(line), now=now))
    assert iso(event.event_time) == expected == event.details["localTime"]


def test_bad_received_at_is_an_error_not_a_crash() -> None:
    result = cargo_imp.parse(fsu("RCS/30DEC2300/HKG"), received_at=10**20)
    assert [e.code for e in result.errors] == ["bad-received-at"]


# -- FWB of ours: FWB/17 NAM lines, bad lines ----------------------------------------------
FWB17 = "\r\n".join([
    "FWB/17", "160-12345675HKGAMS/T2K505.0MC2.5", "FLT/CX0271/15/KL1234/16", "RTG/AMSCX",
    "SHP", "NAM/PACIFIC OCEAN LINE LOGISTICS", "ADR/1 HARBOUR ROAD", "LOC/HONG KONG", "/HK",
    "CNE/12345", "NAM/DUTCH IMPORTS BV", "ADR/KADE 1", "LOC/AMSTERDAM", "/NL",
    "CVD/HKD//PP/NVD/NCV/XXX", "RTD/1/P2/K505.0/CQ/W505.0/R10.00/T5050.00",
    "/NG/ELECTRONIC PARTS", "/2/NH/854231", "/3/NV/MC2.5",
    "ISU/14MAR26/HONG KONG", "SPH/EAP/ECC",
]) + "\r\n"


def test_fwb17_with_nam_lines() -> None:
    event = one_event(read(FWB17.encode()))
    waybill = event.details["waybill"]
    assert waybill["shipper"] == "PACIFIC OCEAN LINE LOGISTICS"
    assert waybill["consignee"] == "DUTCH IMPORTS BV"
    assert waybill["flights"] == [{"flight": "CX0271", "day": 15}, {"flight": "KL1234", "day": 16}]
    assert waybill["goods"] == "ELECTRONIC PARTS"
    assert waybill["volume"] == {"unit": "MC", "amount": 2.5}
    assert iso(event.event_time) == "2026-03-14T00:00" and event.location == "HKHKG"


def test_fwb_without_issue_date_takes_received_at() -> None:
    event = one_event(read(FWB17.replace("ISU/14MAR26/HONG KONG\r\n", "").encode()))
    assert event.event_time == NOW


@pytest.mark.parametrize(("old", "new", "line", "code"), [
    ("ISU/14MAR26/HONG KONG", "ISU/31FEB26/HONG KONG", 20, "bad-date"),
    ("RTG/AMSCX", "RTG/AMS", 4, "bad-field"),
    ("FLT/CX0271/15/KL1234/16", "FLT/CX0271", 3, "bad-field"),
    ("160-12345675HKGAMS/T2K505.0MC2.5", "160-12345675HKGAMS/T2", 2, "bad-consignment"),
    ("SPH/EAP/ECC", "sph eap", 21, "bad-line"),
])
def test_bad_fwb_lines(old: str, new: str, line: int, code: str) -> None:
    result = read(FWB17.replace(old, new).encode())
    assert not result.events
    assert [(e.line, e.code) for e in result.errors] == [(line, code)]


def test_long_free_text_is_cut_to_fit_the_details_limit() -> None:
    oci = ["OCI/HK/ISS/RA/00001-01"] + [f"/HK//SD/{i:02d}MAR261400 SOME LONGER TEXT"
                                         for i in range(80)]
    osi = ["OSI/" + "A" * 60] + ["/" + "B" * 60] * 30
    event = one_event(read(fsu("CCD/16MAR1340/AMS/T2", *oci, *osi)))
    assert event.details["truncated"] is True
    assert len(event.details["osi"]) <= 100
    assert 0 < len(event.details["oci"]) < 81
    long_goods = FWB17.replace("/NG/ELECTRONIC PARTS", "\r\n".join(["/NG/" + "G" * 60] * 40))
    waybill = one_event(read(long_goods.encode())).details["waybill"]
    assert len(waybill["goods"]) <= 200


def test_not_cargo_imp() -> None:
    for data in (b"", b"UNB+UNOA:2+SENDER+RECEIVER'", b'{"eventType": "EQUIPMENT"}',
                 b"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26"):
        assert not cargo_imp.sniff(data)
        result = read(data)
        assert not result.recognised and result.errors[0].code == "wrong-format"


# -- the SIMULATED sequence round-trips -----------------------------------------------------
def test_simulated_fsu_sequence_round_trips() -> None:
    shipment = simulated.AirShipment("160-12345675", "HKG", "AMS", "CX0271", 2, 505.0)
    departure = datetime(2026, 3, 15, 19, 30)
    statuses = simulated.sequence(shipment, departure)
    data = simulated.write(statuses)
    assert data.count(b"\x01QK AMSFMKL\r\n.HKGFMCX ") == 8
    result = read(data, now=unix(2026, 3, 15))
    assert not result.errors
    events = [e.event for e in result.events]
    assert [e.event_type for e in events] == [f"AIR.{c}" for c in simulated.SEQUENCE] == [
        "AIR.BKD", "AIR.RCS", "AIR.MAN", "AIR.DEP", "AIR.ARR", "AIR.RCF", "AIR.NFD", "AIR.DLV"]
    assert [iso(e.event_time) for e in events] == [
        s.at.strftime("%Y-%m-%dT%H:%M") for s in statuses]
    assert {e.subject.value for e in events} == {"16012345675"}
    assert [e.location for e in events] == ["HKHKG"] * 4 + ["NLAMS"] * 4
    assert all(e.details["osi"] == simulated.LABEL for e in events)
    assert events[3].details["departure"]["type"] == "A"


def test_simulated_arrival_after_midnight_uses_day_change() -> None:
    shipment = simulated.AirShipment("160-12345675", "HKG", "AMS", "CX0271", 1, 10.0)
    statuses = simulated.sequence(shipment, datetime(2026, 3, 15, 10, 0),
                                  block=timedelta(hours=13))
    rcf = next(s for s in statuses if s.code == "RCF")
    # arrival 15MAR 23:00, received from the flight 95 minutes later: the next day
    assert "RCF/CX0271/15MAR0035-N/AMS/T1K10.0\r\n" in rcf.message
    assert "/S1000/S2300\r\n" in statuses[0].message  # BKD: same-day arrival, no indicator
    result = read(simulated.write(statuses), now=unix(2026, 3, 15))
    assert [iso(e.event.event_time) for e in result.events] == [
        s.at.strftime("%Y-%m-%dT%H:%M") for s in statuses]
    assert iso(result.events[5].event.event_time) == "2026-03-16T00:35"


def test_simulated_shipment_refuses_a_bad_waybill() -> None:
    with pytest.raises(ValueError, match="check digit"):
        simulated.AirShipment("160-12345676", "HKG", "AMS", "CX0271", 1, 1.0)


# -- ONE Record ------------------------------------------------------------------------------
def read1r(data: bytes | str) -> ParseResult:
    raw = data.encode() if isinstance(data, str) else data
    result = one_record.parse(raw, received_at=NOW)
    assert_well_formed(result)
    return result


SHIPMENT_IRI = "https://1r.example.com/logistics-objects/1a8ded38-1804-467c-a369-81a411416b3c"


@pytest.mark.parametrize("name", ["iata-LogisticsEvent.json", "iata-LogisticsEvent_with_id.json",
                                  "iata-LogisticsEvents_filtered_list.json"])
def test_iata_examples_departure_for_a_shipment(name: str) -> None:
    event = one_event(read1r(onerec(name)))
    assert (event.event_type, event.classifier) == ("AIR.DEP", "ACT")
    assert iso(event.event_time) == "2023-04-01T10:38"
    # no AWB anywhere: the shipment's ONE Record id is the subject
    assert event.subject.kind == "shipment"
    assert event.subject.value == "1A8DED381804467CA36981A411416B3C"
    assert event.details["linkedObject"] == SHIPMENT_IRI
    assert event.details["eventName"] == "Consignment departed on a specific flight"
    assert event.details["partial"] is False and event.location == ""


def test_iata_collection_with_linked_object_and_event_for() -> None:
    result = read1r(onerec("iata-LogisticsEvents_list.json"))
    assert not result.errors
    assert [e.event.event_type for e in result.events] == ["AIR.DEP", "AIR.MAN"]
    assert [e.line for e in result.events] == [10, 37]  # where each event's "{" is
    assert {e.event.details["linkedObject"] for e in result.events} == {SHIPMENT_IRI}
    assert len({e.key for e in result.events}) == 2


@pytest.mark.parametrize("name", ["iata-MultipleEvents_example1.json",
                                  "iata-MultipleEvents_example2.json"])
def test_iata_event_for_a_shipment_and_pieces(name: str) -> None:
    event = one_event(read1r(onerec(name)))
    assert event.subject.kind == "shipment" and event.details["pieces"] == 2


@pytest.mark.parametrize("name", ["iata-MultipleEvents_example3.json",
                                  "dc-logistics-event-BKD.json", "dc-logistics-event-FOH.json",
                                  "dc-logistics-event-DEP.json", "dc-logistics-event-ARR.json",
                                  "dc-logistics-event-DEP-partial.json"])
def test_real_event_for_no_object_is_refused(name: str) -> None:
    result = read1r(onerec(name))
    assert not result.events
    assert [(e.line, e.code) for e in result.errors] == [(1, "no-linked-object")]


def test_real_objects_without_events() -> None:
    result = read1r(onerec("dc-waybill.json"))
    assert result.recognised and [e.code for e in result.errors] == ["no-logistics-event"]


def assembled_graph(event_name: str = "dc-logistics-event-DEP-partial.json") -> dict[str, Any]:
    """A @graph of the good practice's event, shipment, waybill and location (ours, CC BY)."""
    event = json.loads(onerec(event_name))
    shipment = json.loads(onerec("dc-shipment.json"))
    event["eventFor"] = {"@id": shipment["@id"]}
    nodes = [event, shipment, json.loads(onerec("dc-waybill.json")),
             json.loads(onerec("dc-location-FRA.json"))]
    for node in nodes:
        del node["@context"]
    return {"@context": {"@vocab": "https://onerecord.iata.org/ns/cargo#"}, "@graph": nodes}


def test_graph_links_the_event_to_its_waybill_and_airport() -> None:
    event = one_event(read1r(json.dumps(assembled_graph(), indent=2)))
    assert (event.event_type, event.classifier) == ("AIR.DEP", "ACT")
    assert event.subject.kind == "awb" and event.subject.value == "02012345675"
    assert (event.location, event.details["airport"]) == ("DEFRA", "FRA")
    assert event.details["partial"] is True
    assert "flags" not in event.details


def test_both_code_iri_styles_and_plain_codes() -> None:
    styles = ["https://onerecord.iata.org/ns/code-lists/StatusCode#RCF",
              "https://onerecord.iata.org/ns/coreCodeLists#StatusCode_RCF", "RCF",
              "ccl:StatusCode_RCF"]
    for style in styles:
        graph = assembled_graph()
        graph["@graph"][0]["eventCode"] = {"@id": style} if style != "RCF" else style
        assert one_event(read1r(json.dumps(graph))).event_type == "AIR.RCF", style
    element = assembled_graph()
    element["@graph"][0]["eventCode"] = {"@type": "CodeListElement", "code": "NFD"}
    assert one_event(read1r(json.dumps(element))).event_type == "AIR.NFD"


@pytest.mark.parametrize(("value", "classifier"), [
    ("cargo:ACTUAL", "ACT"), ({"@id": "https://onerecord.iata.org/ns/cargo#ESTIMATED"}, "EST"),
    ("EXPECTED", "EST"), ({"@id": "cargo:PLANNED"}, "PLN"), ("SCHEDULED", "PLN"),
])
def test_event_time_types(value: Any, classifier: str) -> None:
    graph = assembled_graph()
    graph["@graph"][0]["eventTimeType"] = value
    assert one_event(read1r(json.dumps(graph))).classifier == classifier


def embedded(code: str = "BKD", **waybill: Any) -> dict[str, Any]:
    """An event in the prefixed style with its shipment and waybill embedded (ours)."""
    return {
        "@context": {"cargo": "https://onerecord.iata.org/ns/cargo#"},
        "@type": "cargo:LogisticsEvent",
        "cargo:eventCode": {"@type": "cargo:CodeListElement", "cargo:code": code},
        "cargo:eventDate": "2026-06-21T03:10:00+08:00",
        "cargo:eventTimeType": "cargo:PLANNED",
        "cargo:eventFor": {"@id": "https://1r.example.org/logistics-objects/S-1",
                           "@type": "cargo:Shipment",
                           "cargo:waybill": {"@type": "cargo:Waybill", **waybill}},
        "cargo:recordedAtLocation": {"@type": "cargo:Location", "cargo:locationCodes": [
            {"@type": "cargo:CodeListElement", "cargo:code": "HKHKG"}]},
    }


def test_embedded_waybill_prefix_and_number_and_unlocode() -> None:
    event = one_event(read1r(json.dumps(embedded(**{"cargo:waybillPrefix": "160",
                                                    "cargo:waybillNumber": "12345675"}))))
    assert (event.subject.value, event.classifier, event.location) == (
        "16012345675", "PLN", "HKHKG")
    assert iso(event.event_time) == "2026-06-20T19:10"  # +08:00 read to UTC
    # some carriers repeat the prefix in waybillNumber
    repeat = embedded(**{"cargo:waybillPrefix": "160", "cargo:waybillNumber": "160-12345675"})
    assert one_event(read1r(json.dumps(repeat))).subject.value == "16012345675"


def test_awb_in_the_iri_and_bad_check_digit_flagged() -> None:
    doc = embedded()
    doc["cargo:eventFor"] = {"@id": "https://1r.example.org/logistics-objects/awb-160-12345676"}
    event = one_event(read1r(json.dumps(doc)))
    assert event.subject.value == "16012345676"
    assert event.details["flags"][0]["code"] == "invalid-check-digit"


def test_expanded_json_ld() -> None:
    cargo = "https://onerecord.iata.org/ns/cargo#"
    doc = [{
        "@type": [cargo + "LogisticsEvent"],
        cargo + "eventCode": [{"@id": "https://onerecord.iata.org/ns/coreCodeLists#StatusCode_ARR"}],
        cargo + "eventDate": [{"@value": "2026-03-16T06:25:00Z",
                               "@type": "http://www.w3.org/2001/XMLSchema#dateTime"}],
        cargo + "eventTimeType": [{"@id": cargo + "ACTUAL"}],
        cargo + "linkedObject": [{"@id": "https://1r.example.org/lo/W1"}],
    }, {
        "@id": "https://1r.example.org/lo/W1", "@type": [cargo + "Waybill"],
        cargo + "waybillPrefix": [{"@value": "160"}], cargo + "waybillNumber": [{"@value": "12345675"}],
    }]
    event = one_event(read1r(json.dumps(doc)))
    assert (event.event_type, event.subject.value) == ("AIR.ARR", "16012345675")


@pytest.mark.parametrize(("change", "code"), [
    ({"cargo:eventCode": "FIW"}, "unknown-status-code"),
    ({"cargo:eventCode": None}, "missing-field"),
    ({"cargo:eventDate": "2026-06-21T03:10:00"}, "bad-date"),  # no zone
    ({"cargo:eventDate": None}, "missing-field"),
    ({"cargo:eventTimeType": "cargo:SOMETIME"}, "bad-event-time-type"),
    ({"cargo:eventFor": {"@id": "https://1r.example.org/lo/" + "X" * 40}}, "no-waybill"),
    ({"cargo:eventFor": {"cargo:waybill": {"cargo:waybillNumber": "ABC"}}},
     "invalid-air-waybill"),
])
def test_refused_events_are_typed(change: dict[str, Any], code: str) -> None:
    doc = embedded(**{"cargo:waybillPrefix": "160", "cargo:waybillNumber": "12345675"})
    for key, value in change.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    result = read1r(json.dumps(doc))
    assert not result.events and [e.code for e in result.errors] == [code]


def test_one_bad_event_does_not_refuse_the_others() -> None:
    good = embedded(**{"cargo:waybillPrefix": "160", "cargo:waybillNumber": "12345675"})
    bad = dict(good, **{"cargo:eventCode": "XYZ"})
    result = read1r(json.dumps([good, bad, good], indent=1))
    assert len(result.events) == 2 and [e.code for e in result.errors] == ["unknown-status-code"]
    assert result.events[0].key == result.events[1].key  # the same event twice: one key


def test_invalid_json_and_other_json() -> None:
    broken = read1r(onerec("iata-LogisticsEvent.json")[:-40])
    assert broken.recognised and broken.errors[0].code == "invalid-json"
    assert broken.errors[0].line > 1
    other = read1r(b'{"eventType": "EQUIPMENT", "eventDateTime": "2026-01-01T00:00:00Z"}')
    assert not other.recognised
    assert not read1r(b"FSU/14\r\n").recognised
    deep = read1r(b"[" * 100_000 + b"]" * 100_000)
    assert deep.errors and not deep.events
    nested = embedded(**{"cargo:waybillPrefix": "160", "cargo:waybillNumber": "12345675"})
    nested["cargo:eventName"] = json.loads("[" * 100 + "]" * 100)
    assert [e.code for e in read1r(json.dumps(nested)).errors] == ["too-deep"]


@pytest.mark.parametrize("path", sorted(ONE_RECORD.glob("*.json")), ids=lambda p: p.name)
def test_one_record_samples_are_sniffed(path: Path) -> None:
    assert one_record.sniff(path.read_bytes())
    assert not cargo_imp.sniff(path.read_bytes())


# -- fuzzing: mutations of the real messages -------------------------------------------------
CARGO_SEEDS = [p.read_bytes() for p in sorted(CARGO_IMP.glob("*.txt"))] + [
    simulated.write(simulated.sequence(
        simulated.AirShipment("160-12345675", "HKG", "AMS", "CX0271", 2, 505.0),
        datetime(2026, 3, 15, 19, 30))),
    FWB17.encode(),
]
ONE_RECORD_SEEDS = [p.read_bytes() for p in sorted(ONE_RECORD.glob("*.json"))] + [
    json.dumps(assembled_graph()).encode()]


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return fuzz.mutated(seeds, [b"/", b"\r\n", b"\r\n/", b"-N", b"\x03", b"\x01QK ABCDEFG\r\n",
                                b"FSU/14\r\n", b'{"@id":', b"{", b"}", b"[", b'"', b"\\"],
                        ["flip", "truncate", "insert", "shuffle", "duplicate", "delete",
                         "splice"])


def check_cargo_imp(data: bytes) -> None:
    result = cargo_imp.parse(data, received_at=NOW)  # must not raise
    assert_well_formed(result)
    assert result.recognised or result.errors[0].code == "wrong-format"


def check_one_record(data: bytes) -> None:
    result = one_record.parse(data, received_at=NOW)
    assert_well_formed(result)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_LONG = settings(max_examples=5000, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated(CARGO_SEEDS))
def test_fuzz_cargo_imp(data: bytes) -> None:
    check_cargo_imp(data)


@FUZZ
@given(mutated(ONE_RECORD_SEEDS))
def test_fuzz_one_record(data: bytes) -> None:
    check_one_record(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["cargo:ACTUAL", "DEP", "160-12345675", "2026-01-01T00:00:00Z", "@id"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["@id", "@type", "@value", "@graph", "cargo:eventCode", "eventFor",
                         "cargo:waybill", "waybillNumber", "code", "eventDate"]),
        children, max_size=3),
    max_leaves=10)


@st.composite
def restructured(draw: st.DrawFn) -> bytes:
    """A real ONE Record document with one member's value replaced by any JSON value."""
    doc = json.loads(draw(st.sampled_from(ONE_RECORD_SEEDS)))
    nodes: list[dict[str, Any]] = []
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            nodes.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    node = draw(st.sampled_from(nodes))
    if node:
        node[draw(st.sampled_from(sorted(node)))] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


@FUZZ
@given(restructured())
def test_fuzz_one_record_structure(data: bytes) -> None:
    check_one_record(data)


@pytest.mark.slow
@FUZZ_LONG
@given(mutated(CARGO_SEEDS))
def test_fuzz_cargo_imp_long(data: bytes) -> None:
    check_cargo_imp(data)


@pytest.mark.slow
@FUZZ_LONG
@given(st.one_of(mutated(ONE_RECORD_SEEDS), restructured()))
def test_fuzz_one_record_long(data: bytes) -> None:
    check_one_record(data)
