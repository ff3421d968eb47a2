"""The UN/EDIFACT feed adapter on real terminal files, every pitfall, and fuzzed input.

Real samples and their licences: ``tests/data/edifact/SOURCES.md``. Messages written here are
built from segment strings so each test shows the EDIFACT it reads.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devnet.simfeeds import edifact as sim
from gateway.events.identifiers import container_check_digit
from gateway.events.model import Visibility
from gateway.feeds import edifact, formats
from gateway.feeds.edifact_messages import COARRI_DOCUMENTS, IFTSTA_STATUS
from gateway.feeds.edifact_syntax import DEFAULT_SYNTAX, date_time, parse_segments, raw_segments
from gateway.feeds.edifact_syntax import _syntax_of as syntax_cache
from gateway.feeds.model import MAX_FEED_BYTES, MessageError, ParseResult, message_key, text_lines
from gateway.intake.rules import envelope_problem

DATA = Path(__file__).parents[2] / "data" / "edifact"
NOW = 1_790_000_000
HK = 8 * 3600


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(text: str | bytes, **kw: int) -> ParseResult:
    data = text.encode() if isinstance(text, str) else text
    return edifact.read(data, received_at=NOW, **kw)


def codes(result: ParseResult) -> list[str]:
    return [e.code for e in result.errors]


def message(body: list[str], *, kind: str = "CODECO:D:95B:UN:ITG14", ref: str = "M1",
            count: int | None = None) -> str:
    """``UNH`` + body + ``UNT`` (counting itself unless told), one segment a line."""
    segments = [f"UNH+{ref}+{kind}", *body]
    segments.append(f"UNT+{len(segments) + 1 if count is None else count}+{ref}")
    return "".join(s + "'\n" for s in segments)


def interchange(*messages: str, ref: str = "IC1", count: int | None = None) -> str:
    head = f"UNB+UNOC:3+HKTERM9:ZZZ+PCOL:ZZZ+261124:0815+{ref}'\n"
    return head + "".join(messages) + f"UNZ+{len(messages) if count is None else count}+{ref}'\n"


CONTAINER = "MSKU1234565"
OTHER = "TGHU9876542"
GATE_OUT = [
    "BGM+36+GO1+9",
    "TDT+20+0042S+1++PCOL:172:20+++9312341:146:11:PACIFIC DAWN",
    f"EQD+CN+{CONTAINER}+45G1:102:5++3+5",
    "RFF+BM:PCOL1234567",
    "DTM+7:202611241012:203",
    "LOC+165+HKHKG:139:6+CT9:TER:ZZZ",
    "MEA+AAE+G+KGM:24120",
    "SEL+HK778899+CA",
    "TDT+1++3+31++++LV1234:146:ZZZ",
]


# -- real samples ----------------------------------------------------------------------------
def test_genoa_coarri_discharge_and_loading_reports() -> None:
    result = parse(sample("php-edifact-D95BCOARRI.edi"))
    assert result.recognised and result.errors == []
    assert [e.event.event_type for e in result.events] == ["TERMINAL.DISC"] * 2 + [
        "TERMINAL.LOAD"] * 19
    first = result.events[0]
    event = first.event
    assert event.subject.value == "FCIU9908030" and event.location == "ITGOA"
    assert event.classifier == "ACT"
    # DTM+203:201602030913 without a zone: Hong Kong time by default
    assert event.event_time == 1454461980  # 2016-02-03T01:13:00Z
    assert first.line == 2  # the UNH is the file's second segment
    details = event.details
    assert details["stowageCell"] == "380886" and details["portOfLoading"] == "TRKMX"
    assert details["tareWeight"] == {"value": 4000, "unit": "KGM"}
    assert details["vessel"] == {"callSign": "3ERX3", "name": "COSCO AFRICA"}
    assert details["voyage"] == "031W" and details["carrier"] == "COS"
    assert details["sender"] == "ITGOAVTE" and details["interchangeReference"] == "1452515554132"
    assert details["messageReference"] == "1452515553811"
    assert details["tradeDirection"] == "import" and details["emptyIndicatorCode"] == "LADEN"
    load = result.events[2].event
    assert load.subject.value == "CBHU6192031" and load.location == "ITGOA"
    assert [r.to_json() for r in load.related] == [{"kind": "booking", "value": "9000157890"}]
    assert load.details["portOfDischarge"] == "GRPIR"
    assert load.details["seals"] == [{"sealNumber": "H53175", "sealSource": "SHI"}]
    dangerous = [e.event for e in result.events if "dangerousGoods" in e.event.details]
    assert [e.subject.value for e in dangerous] == ["CBHU6411248"]
    assert dangerous[0].details["dangerousGoods"] == [{"class": "8", "unNumber": "2735"}]
    assert result.stats["segments"] == 272 and result.stats["messages"] == 2


def test_genoa_times_in_the_ports_own_zone() -> None:
    genoa = parse(sample("php-edifact-D95BCOARRI.edi"), local_offset=3600)  # CET in February
    assert genoa.events[0].event.event_time == 1454487180  # 2016-02-03T08:13:00Z


def test_genoa_keys_are_stable_and_distinct() -> None:
    data = sample("php-edifact-D95BCOARRI.edi")
    first, again = parse(data), parse(data)
    keys = [e.key for e in first.events]
    assert keys == [e.key for e in again.events] and len(set(keys)) == 21
    # line breaks do not change a message: the same keys with '+CRLF or on one line
    crlf = parse(data.replace(b"\n", b"\r\n"))
    one_line = parse(data.replace(b"\n", b""))
    assert [e.key for e in crlf.events] == keys == [e.key for e in one_line.events]
    # the key is message_key of the message's segments re-written, and its index
    segs = list(raw_segments([t for _, t in text_lines(data)]))
    unh = next(i for i, s in enumerate(segs) if s.tag == "UNH")
    unt = next(i for i, s in enumerate(segs) if s.tag == "UNT")
    source = "".join(s.source() for s in segs[unh:unt + 1]).encode()
    assert keys[:2] == [message_key("edifact", source, 0), message_key("edifact", source, 1)]


def test_huelva_codeco_with_a_malformed_container_is_refused_with_the_segment() -> None:
    result = parse(sample("smartdatamodels-EdiCodeco-example.edi"))
    assert result.events == []
    [error] = result.errors
    assert (error.code, error.line, error.segment) == ("invalid-container-number", 8, 7)
    assert "TESI1120274" in error.message


def test_huelva_codeco_gate_in_once_its_container_number_is_one() -> None:
    data = sample("smartdatamodels-EdiCodeco-example.edi").replace(b"TESI1120274",
                                                                    b"TESU1120271")
    result = parse(data, local_offset=2 * 3600)  # Huelva in August: UTC+2
    assert result.errors == []
    [parsed] = result.events
    event = parsed.event
    assert event.event_type == "TERMINAL.GTIN" and event.location == "ESHUV"
    assert event.event_time == 1691758020  # DTM+7:202308111447 at UTC+2 = 12:47Z
    assert {r.kind: r.value for r in event.related} == {"booking": "FUE110823",
                                                       "vessel": "1111111"}
    details = event.details
    assert details["facility"] == "CONCHUV" and details["ISOEquipmentCode"] == "4EG1"
    assert details["verifiedGrossMass"] == {"value": 27000, "unit": "KGM"}
    assert details["seals"] == [{"sealNumber": "88200", "sealSource": "SHI"}]
    assert details["inlandTransport"] == {"id": "993NGR", "mode": "road"}
    assert details["tradeDirection"] == "export"
    # vessel 1111111 fails the IMO check digit: flagged, kept
    assert [f["field"] for f in details["flags"]] == ["TDT segment 3 vessel"]
    assert details["vessel"] == {"imo": "1111111", "name": "CHRISTIAN"}


def test_every_event_of_the_samples_fits_a_sealed_record() -> None:
    readers = Visibility("named", tuple(range(1, 9)))
    events = [e.event for path in sorted(DATA.glob("*.edi"))
              for e in parse(path.read_bytes()).events]
    events += [e.event for e in parse(sim.benchmark_coarri(200)).events]
    assert len(events) > 200
    assert [envelope_problem(replace(e, visibility=readers)) for e in events] == [None] * len(
        events)


@pytest.mark.parametrize(("name", "expected"), [
    ("php-edifact-D95BBAPLIE.edi", ["unsupported-message"]),
    ("php-edifact-exampleMulti.edi", ["unsupported-message", "unsupported-message"]),
    ("php-edifact-example_wrapped.edi", ["unsupported-message"]),
    ("php-edifact-example_utf8.edi", ["unsupported-message"]),
    ("php-edifact-example_release_character.edi", ["segment-count-mismatch"]),
    ("php-edifact-example_multiline.edi", ["bad-interchange-header", "segment-count-mismatch"]),
    ("pydifact-wikipedia_de.edi", ["unsupported-message", "interchange-reference-mismatch"]),
    ("pydifact-order.edi", ["unsupported-message", "missing-unz"]),
])
def test_other_real_files_give_typed_errors(name: str, expected: list[str]) -> None:
    result = parse(sample(name))
    assert result.recognised and result.events == []
    assert sorted(codes(result)) == sorted(expected)


def test_release_characters_of_a_real_file() -> None:
    lines = [t for _, t in text_lines(sample("php-edifact-example_release_character.edi"))]
    segments = list(raw_segments(lines))
    ifts = [s for s in segments if s.tag == "IFT"]
    read = parse_segments([s.text for s in ifts], [s.tag for s in ifts], ifts[0].syntax,
                          number=ifts[0].number)
    values = [s.elements[1:] for s in read]
    assert values[2] == ["NO MORE FLIGHTS 2?"]
    assert values[3] == ["NO MORE ' FLIGHTS 3"]
    assert values[4] == ["NO MORE ? FLIGHTS 3"]
    assert values[5] == ["NO MORE ?' FLIGHTS 3"]
    assert values[6] == ["FIELD 1", "FIELD 2"]
    assert values[8] == ["FIELD 1?+FIELD 2"]
    assert values[9] == [["FIELD 1.1", "FIELD 1.2"]]
    assert values[11] == ["FIELD 1.1?:FIELD 1.2"]


def test_a_wrapped_segment_of_a_real_file_is_one_segment() -> None:
    lines = [t for _, t in text_lines(sample("php-edifact-example_multiline.edi"))]
    texts = [s.text for s in raw_segments(lines)]
    assert len(texts) == 9
    assert texts[6] == ("FTX+AAI+++THE SHIPPER SHALL NOT BE RESPONSIBLE FOR ANY COSTS/DELAYS "
                        "OCCUR:DUE TO INTERVENTION OF CUSTOMS.")


def test_a_real_file_on_one_line() -> None:
    lines = [t for _, t in text_lines(sample("php-edifact-example_wrapped.edi"))]
    assert [s.tag for s in raw_segments(lines)][:3] == ["UNA", "UNB", "UNH"]
    assert len(list(raw_segments(lines))) == 16


# -- our samples: COPARN, IFTSTA, line layouts -----------------------------------------------
def test_coparn_release_order() -> None:
    result = parse(sample("ours-coparn-release.edi"))
    assert result.errors == []
    events = [e.event for e in result.events]
    assert [(e.event_type, e.subject.value) for e in events] == [
        ("SHIPMENT.RELS", "MSKU1234565"), ("SHIPMENT.RELS", "TGHU9876543")]
    first = events[0]
    assert first.event_time == 1795478400  # DTM+137 08:00 Hong Kong = 00:00Z
    assert first.location == "HKHKG"
    assert {r.kind: r.value for r in first.related} == {"mbl": "PCOL1234567",
                                                       "vessel": "9312341"}
    assert first.details["releaseOrder"] == {
        "documentCode": "12", "reference": "REL20261124-01",
        "validUntil": "2026-11-30T15:59:00Z", "quantity": 1}
    assert "flags" not in first.details
    assert [f["code"] for f in events[1].details["flags"]] == ["invalid-check-digit"]


def test_iftsta_maps_rec24_codes_and_refuses_one_consignment() -> None:
    result = parse(sample("ours-iftsta-status.edi"))
    assert [(e.event.event_type, e.event.subject.value) for e in result.events] == [
        ("TERMINAL.DISC", "MSKU1234565"), ("TERMINAL.DISC", "TGHU9876542"),
        ("SHIPMENT.RELS", "PCOL1234567")]
    released = result.events[2].event
    assert released.details["status"] == {"code": "78", "name": "Released"}
    assert released.details["containers"] == ["MSKU1234565", "TGHU9876542"]
    discharged = result.events[0].event
    assert {r.kind for r in discharged.related} == {"mbl", "vessel"}
    assert discharged.event_time == 1795471800  # 06:10 Hong Kong
    [error] = result.errors
    assert (error.code, error.line, error.segment) == ("unmapped-status", 21, 19)
    assert "'40'" in error.message
    assert result.stats["refused_consignments"] == 1


def test_lf_only_latin1_and_a_second_una_in_one_file() -> None:
    data = sample("ours-codeco-lf-mixed.edi")
    assert b"Pe\xf1a" in data and "Café".encode() in data  # Latin-1 and UTF-8 lines
    result = parse(data)
    assert result.errors == []
    first, second = (e.event for e in result.events)
    assert first.event_type == second.event_type == "TERMINAL.GTOT"
    assert first.details["seals"][1] == {"sealNumber": "SH12+34", "sealSource": "SHI"}
    assert first.details["grossWeight"] == {"value": 24120.5, "unit": "KGM"}
    assert first.details["inlandTransport"] == {"id": "LV1234", "mode": "road"}
    assert second.details["grossWeight"] == {"value": 9870.5, "unit": "KGM"}  # decimal comma
    assert second.details["flags"][0]["value"] == "TGHU9876543"
    assert result.stats["interchanges"] == 2


# -- tables per message type -----------------------------------------------------------------
@pytest.mark.parametrize(("code", "event_type"), [("34", "TERMINAL.GTIN"),
                                                  ("36", "TERMINAL.GTOT")])
def test_codeco_document_codes(code: str, event_type: str) -> None:
    body = [f"BGM+{code}+G+9", *GATE_OUT[1:]]
    [event] = parse(interchange(message(body))).events
    assert event.event.event_type == event_type
    assert event.event.details["facility"] == "CT9"


@pytest.mark.parametrize("code", sorted(COARRI_DOCUMENTS))
def test_coarri_document_codes(code: str) -> None:
    discharge = COARRI_DOCUMENTS[code] == "TERMINAL.DISC"
    body = [f"BGM+{code}+C+9", "TDT+20+1A+1++PCOL:172:20+++9312341:146:11:PACIFIC DAWN",
            f"LOC+{11 if discharge else 9}+HKHKG:139:6", f"EQD+CN+{CONTAINER}+22G1:102:5++3+5",
            "DTM+203:202611240610:203", "LOC+147+0120384::5", "TMP+2+-18.5:CEL"]
    [event] = parse(message(body, kind="COARRI:D:95B:UN:ITG12")).events
    assert event.event.event_type == COARRI_DOCUMENTS[code]
    assert event.event.location == "HKHKG"
    assert event.event.details["temperature"] == {"value": -18.5, "unit": "CEL"}
    assert event.event.details["stowageCell"] == "0120384"


@pytest.mark.parametrize(("body", "code", "segment"), [
    (["BGM+99+X+9", *GATE_OUT[1:]], "unknown-document-code", 2),
    (["BGM+36+X+1", *GATE_OUT[1:]], "cancellation-not-supported", 2),
    ([s for s in GATE_OUT if not s.startswith("DTM")], "missing-event-time", 4),
    (GATE_OUT[:2], "missing-segment", 2),
    (["BGM+36+X+9", "EQD+CH+CHASSIS1", "DTM+7:202611241012:203"], "no-containers", 3),
    ([*GATE_OUT[:2], "EQD+CN++45G1", "DTM+7:202611241012:203"], "missing-field", 4),
    ([*GATE_OUT[:2], "EQD+CN+NOTACONTAINER", "DTM+7:202611241012:203"],
     "invalid-container-number", 4),
    ([*GATE_OUT[:5], "LOC+165+HONG KONG", *GATE_OUT[6:]], "invalid-unlocode", 7),
    ([*GATE_OUT[:6], "MEA+AAE+G+KGM:12e5"], "bad-number", 8),
    ([*GATE_OUT[:4], "DTM+7:202613241012:203", *GATE_OUT[5:]], "bad-date", 6),
    ([*GATE_OUT[:3], "RFF+BM:PCOL/123456789012345678901", *GATE_OUT[4:]], "invalid-reference",
     5),
])
def test_refused_messages_name_the_segment(body: list[str], code: str, segment: int) -> None:
    result = parse(message(body))
    assert result.events == []
    [error] = result.errors
    assert (error.code, error.segment, error.line) == (code, segment, segment)


def test_chassis_beside_containers_is_skipped_and_counted() -> None:
    body = [*GATE_OUT, "EQD+CH+CHASSIS1", "DTM+7:202611241012:203"]
    result = parse(message(body))
    assert len(result.events) == 1 and result.stats["skipped_equipment"] == 1


@pytest.mark.parametrize(("code", "ok"), [("12", True), ("129", True), ("108", True),
                                          ("11", False), ("126", False)])
def test_coparn_release_codes(code: str, ok: bool) -> None:
    body = [f"BGM+{code}+R1+9", "RFF+BM:PCOL1234567", f"EQD+CN+{CONTAINER}+22G1"]
    result = parse(message(body, kind="COPARN:D:95B:UN"))
    if ok:
        assert [e.event.event_type for e in result.events] == ["SHIPMENT.RELS"]
        # no DTM+137 and no UNB: the time the file was received
        assert result.events[0].event.event_time == NOW
    else:
        assert codes(result) == ["not-a-release-order"]


def test_coparn_release_without_a_container_number_is_on_the_bill_of_lading() -> None:
    body = ["BGM+129+R1+9", "DTM+137:202611240800:203", "RFF+BM:PCOL1234567",
            "RFF+BN:BK778899", "EQD+CN++22G1+++4", "EQN+3"]
    [event] = parse(message(body, kind="COPARN:D:95B:UN")).events
    assert event.event.subject.to_json() == {"kind": "mbl", "value": "PCOL1234567"}
    assert event.event.related[0].to_json() == {"kind": "booking", "value": "BK778899"}
    assert event.event.details["releaseOrder"]["quantity"] == 3
    assert event.event.details["emptyIndicatorCode"] == "EMPTY"


def test_coparn_without_any_reference_is_refused() -> None:
    result = parse(message(["BGM+12+R1+9", "EQD+CN++22G1"], kind="COPARN:D:95B:UN"))
    assert codes(result) == ["missing-reference"]


def test_coparn_takes_the_interchange_time_when_it_has_no_date() -> None:
    text = interchange(message(["BGM+12+R1+9", "RFF+BM:PCOL1234567"],
                               kind="COPARN:D:95B:UN"))
    [event] = parse(text).events
    assert event.event.event_time == 1795479300  # UNB 261124:0815 Hong Kong


IFTSTA_HEAD = ["BGM+77+S1+9", "CNI+1+PCOL1234567"]


@pytest.mark.parametrize(("code", "event_type"), sorted(
    (code, event_type) for code, (_, event_type) in IFTSTA_STATUS.items()))
def test_iftsta_mapping_table(code: str, event_type: str) -> None:
    body = [*IFTSTA_HEAD, f"STS+1+{code}", "RFF+BM:PCOL1234567", "DTM+334:202611240610:203",
            "LOC+175+HKHKG:139:6", f"EQD+CN+{CONTAINER}"]
    [event] = parse(message(body, kind="IFTSTA:D:95B:UN")).events
    assert event.event.event_type == event_type
    assert event.event.details["status"]["code"] == code
    family = event_type.split(".")[0]
    expected = "container" if family in ("TERMINAL", "EQUIPMENT") else "mbl"
    assert event.event.subject.kind == expected


def test_iftsta_transport_status_is_on_the_vessel() -> None:
    body = [*IFTSTA_HEAD, "STS+1+1", "DTM+178:202611240500:203", "LOC+175+HKHKG:139:6",
            "TDT+20+0042S+1++PCOL:172:20+++9312341:146:11:PACIFIC DAWN"]
    text = message(["RFF+BM:PCOL1234567", *body], kind="IFTSTA:D:95B:UN")
    [event] = parse(text).events
    assert event.event.event_type == "TRANSPORT.ARRI"
    assert event.event.subject.to_json() == {"kind": "vessel", "value": "9312341"}
    assert event.event.related[0].to_json() == {"kind": "mbl", "value": "PCOL1234567"}


def test_a_document_status_of_many_containers_names_a_bounded_number() -> None:
    boxes = tuple(f"MSKU{n:06d}{container_check_digit(f'MSKU{n:06d}')}" for n in range(1000))
    data = sim.iftsta([sim.Status("78", NOW, "HKHKG", boxes)], bill_of_lading="PCOL1234567",
                      prepared_at=NOW)
    [event] = parse(data).events
    assert len(event.event.related) == 16 and len(event.event.details["containers"]) == 32
    readers = Visibility("named", tuple(range(1, 9)))
    assert envelope_problem(replace(event.event, visibility=readers)) is None


def test_iftsta_status_without_a_reference_refuses_its_consignment() -> None:
    body = ["BGM+77+S1+9", "CNI+1", "STS+1+24", "DTM+334:202611240610:203",
            "CNI+2", "STS+1+78", "RFF+BM:PCOL1234567", "DTM+334:202611240610:203"]
    result = parse(message(body, kind="IFTSTA:D:95B:UN"))
    assert codes(result) == ["missing-reference"]
    assert [e.event.event_type for e in result.events] == ["SHIPMENT.RELS"]


# -- pitfalls --------------------------------------------------------------------------------
def test_newline_only_terminators_without_una() -> None:
    text = message(GATE_OUT).replace("'\n", "\n")
    assert "'" not in text
    [event] = parse(text).events
    assert event.event.subject.value == CONTAINER


def test_quote_crlf_and_newline_only_mixed() -> None:
    lines = message(GATE_OUT).splitlines()
    mixed = "\r\n".join(line if i % 2 else line.rstrip("'") for i, line in enumerate(lines))
    assert parse(mixed).events[0].event.subject.value == CONTAINER


def test_several_interchanges_each_with_its_own_una() -> None:
    first = "UNA:+.? '" + interchange(message(GATE_OUT), ref="A")
    second_body = [s.replace("+", "*").replace(":", "^") for s in GATE_OUT]
    second = ("UNA^*.! #" + interchange(message(second_body), ref="B")
              .replace("+", "*").replace(":", "^").replace("'", "#"))
    result = parse(first + second)
    assert result.errors == [] and len(result.events) == 2
    assert result.events[1].event.details["interchangeReference"] == "B"


def test_unknown_directory_warns_nothing() -> None:
    text = interchange(message(GATE_OUT, kind="CODECO:D:99Z:UN")).replace("UNOC:3", "UNOC:9")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = parse(text)
    assert len(result.events) == 1


def test_unt_count_and_reference_are_checked() -> None:
    assert codes(parse(message(GATE_OUT, count=5))) == ["segment-count-mismatch"]
    wrong_ref = message(GATE_OUT).replace("UNT+11+M1", "UNT+11+M2")
    assert codes(parse(wrong_ref)) == ["message-reference-mismatch"]


def test_truncated_file_keeps_the_messages_before_the_cut() -> None:
    text = interchange(message(GATE_OUT, ref="A"), message(GATE_OUT, ref="B"))
    cut = text[:text.index("MEA", text.index("UNH+B"))]
    result = parse(cut)
    assert len(result.events) == 1
    assert sorted(codes(result)) == ["missing-unz", "truncated"]
    truncated = next(e for e in result.errors if e.code == "truncated")
    assert truncated.line == 13 and truncated.segment == 1


def test_a_message_without_unt_before_the_next() -> None:
    text = message(GATE_OUT, ref="A").replace("UNT+11+A'\n", "") + message(GATE_OUT, ref="B")
    result = parse(text)
    assert codes(result) == ["missing-unt"] and len(result.events) == 1


def test_envelope_counts_and_strays() -> None:
    text = interchange(message(GATE_OUT), count=3) + "FTX+AAA+++LOST'\nUNZ+1+X'\n"
    assert sorted(codes(parse(text))) == ["interchange-count-mismatch",
                                          "segment-outside-message", "unexpected-unz"]


def test_empty_segment_and_bad_tag_and_bad_una() -> None:
    assert codes(parse(message([*GATE_OUT[:3], "", *GATE_OUT[3:]]))) == ["empty-segment"]
    assert codes(parse(message([*GATE_OUT[:3], "eqd+X", *GATE_OUT[3:]]))) == ["bad-segment"]
    result = parse("UNA:::::'" + message(GATE_OUT))
    assert codes(result) == ["bad-service-string-advice"] and len(result.events) == 1


def test_una_with_the_line_break_as_terminator() -> None:
    text = "UNA:+.? \n" + message(["BGM+36+IT'S+9", *GATE_OUT[1:]]).replace("'\n", "\n")
    [event] = parse(text).events
    assert event.event.details["documentNumber"] == "IT'S"


def test_mixed_utf8_and_latin1_lines() -> None:
    utf8 = "FTX+AAI+++Café".encode()
    latin1 = "NAD+CZ+++Peña".encode("latin-1")
    lines = message(GATE_OUT).encode().split(b"\n")
    data = b"\n".join([*lines[:4], utf8 + b"'", latin1 + b"'", *lines[4:]])
    data = data.replace(b"UNT+11+", b"UNT+13+")
    [event] = parse(data).events
    assert event.event.subject.value == CONTAINER


def test_a_segment_wrapped_over_many_lines_is_joined_once() -> None:
    data = b"UNB+UNOC:3+A+B+261124:0815+1'\n" + b"abc def\n" * 200_000
    start = time.process_time()
    result = parse(data)
    assert time.process_time() - start < 5  # linear: joined once, not line by line
    assert "segment-outside-message" in codes(result)


def test_many_service_string_advices_keep_the_caches_bounded() -> None:
    unas = b"".join(b"UNA%c%c.? '\n" % (0x21 + i % 60, 0x5B + i // 60) for i in range(600))
    reset = b"UNA:+.? '\n"
    result = parse(b"UNB+UNOC:3+A+B+261124:0815+1'\n" + unas + reset + message(GATE_OUT).encode())
    assert [e.event.subject.value for e in result.events] == [CONTAINER]
    assert syntax_cache.cache_info().currsize <= 64


def test_not_edifact_and_too_large() -> None:
    result = parse(b'{"type": "TERMINAL.DISC"}')
    assert not result.recognised and codes(result) == ["wrong-format"]
    assert not edifact.sniff(b"UNHAPPY customers") and edifact.sniff(b"\xef\xbb\xbf UNB+X")
    big = parse(b"UNB+" + b" " * MAX_FEED_BYTES)
    assert codes(big) == ["too-large"]
    assert codes(parse("UNB+UNOC:3+A+B+261124:0815+1'UNZ+0+1'")) == ["no-messages"]


def test_formats_registry_detects_edifact() -> None:
    data = sample("php-edifact-D95BCOARRI.edi")
    assert formats.detect(data) == "edifact"
    assert len(formats.parse(data, received_at=NOW).events) == 21


MIDNIGHT = 1795478400  # 2026-11-24T00:00:00Z
TEN_TWELVE = MIDNIGHT + 10 * 3600 + 12 * 60


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    ("20261124", "102", MIDNIGHT - HK),
    ("261124", "101", MIDNIGHT - HK),
    ("2611241012", "201", TEN_TWELVE - HK),
    ("261124101230", "202", TEN_TWELVE + 30 - HK),
    ("202611241012", "203", TEN_TWELVE - HK),
    ("20261124101230", "204", TEN_TWELVE + 30 - HK),
    ("202611241012+0000", "205", TEN_TWELVE),
    ("202611241012-0530", "205", TEN_TWELVE + 5 * 3600 + 1800),
    ("202611241012UTC", "303", TEN_TWELVE),
    ("20261124101230GMT", "304", TEN_TWELVE + 30),
    ("2611241012+08", "301", TEN_TWELVE - HK),
    ("202611241012", "", TEN_TWELVE - HK),
])
def test_date_formats(value: str, fmt: str, expected: int) -> None:
    assert date_time(value, fmt, local_offset=HK, field="DTM") == expected


@pytest.mark.parametrize(("value", "fmt"), [
    ("202611241012", "999"), ("2026112410", "203"), ("202613241012", "203"),
    ("202611241012XYZ", "303"), ("202611241012+1900", "205"), ("2026112410:2", "203"),
    ("202611241012+0800", "203"), ("19600101", "102"),
])
def test_bad_dates(value: str, fmt: str) -> None:
    with pytest.raises(MessageError) as caught:
        date_time(value, fmt, local_offset=HK, field="DTM")
    assert caught.value.code == "bad-date"


def test_bad_numbers() -> None:
    for text in ("nan", "inf", "1e5", "", "1.2.3"):
        with pytest.raises(MessageError):
            DEFAULT_SYNTAX.number(text, field="MEA")
    assert DEFAULT_SYNTAX.number("-18,5", field="TMP") == -18.5


# -- SIMULATED writers, read back ------------------------------------------------------------
VESSEL = sim.Vessel("9312341", "PACIFIC DAWN (SIMULATED)", "0042S")


def test_simulated_codeco_round_trip() -> None:
    box = sim.Container(CONTAINER, "45R1", bill_of_lading="PCOL1234567", seals=("S1+2",),
                        gross_kg=21000, setpoint=-18.5, truck="LV1234")
    data = sim.codeco([(box, NOW)], gate="out", place="HKHKG", facility="CT9",
                      prepared_at=NOW, vessel=VESSEL)
    assert data.startswith(b"UNA:+.? '\nUNB+UNOC:3+SIMULATED-TERMINAL:ZZZ")
    [event] = parse(data).events
    e = event.event
    assert (e.event_type, e.subject.value) == ("TERMINAL.GTOT", CONTAINER)
    assert e.event_time == NOW - NOW % 60  # DTM 203 has minutes
    assert e.details["seals"] == [{"sealNumber": "S1+2", "sealSource": "CAR"}]
    assert e.details["temperature"] == {"value": -18.5, "unit": "CEL"}
    assert e.details["inlandTransport"]["id"] == "LV1234"
    assert e.details["vessel"]["imo"] == "9312341" and e.location == "HKHKG"
    assert e.details["sender"] == "SIMULATED-TERMINAL"


@pytest.mark.parametrize(("operation", "event_type"), [("discharge", "TERMINAL.DISC"),
                                                       ("load", "TERMINAL.LOAD")])
def test_simulated_coarri_round_trip(operation: str, event_type: str) -> None:
    moves = [(sim.Container(CONTAINER, stowage_cell="0120384", port_of_loading="CNSHA"), NOW),
             (sim.Container(OTHER, full=False, direction="export"), NOW + 120)]
    data = sim.coarri(moves, operation=operation, port="HKHKG", vessel=VESSEL,
                      prepared_at=NOW)
    result = parse(data)
    assert [(e.event.event_type, e.event.subject.value) for e in result.events] == [
        (event_type, CONTAINER), (event_type, OTHER)]
    assert result.events[1].event.details["emptyIndicatorCode"] == "EMPTY"
    assert result.events[0].event.details["portOfLoading"] == "CNSHA"


def test_simulated_coparn_and_iftsta_round_trip() -> None:
    coparn = parse(sim.coparn([sim.Container(CONTAINER)], bill_of_lading="PCOL1234567",
                              issued_at=NOW, place="HKHKG", vessel=VESSEL,
                              valid_until=NOW + 86_400))
    [release] = coparn.events
    assert release.event.event_type == "SHIPMENT.RELS"
    assert release.event.details["releaseOrder"]["validUntil"]
    statuses = [sim.Status("29", NOW, "HKHKG", (CONTAINER,)), sim.Status("78", NOW + 60,
                                                                         "HKHKG")]
    iftsta = parse(sim.iftsta(statuses, bill_of_lading="PCOL1234567", prepared_at=NOW,
                              vessel=VESSEL))
    assert [e.event.event_type for e in iftsta.events] == ["TERMINAL.DISC", "SHIPMENT.RELS"]


def test_simulated_writers_say_so() -> None:
    with pytest.raises(sim.SimulatedEdifactError):
        sim.codeco([], gate="in", place="HKHKG", prepared_at=NOW, sender="HKTERM9")
    with pytest.raises(sim.SimulatedEdifactError):
        sim.codeco([], gate="sideways", place="HKHKG", prepared_at=NOW)


def test_benchmark_coarri_is_reproducible_and_valid() -> None:
    data = sim.benchmark_coarri(50, seed=7)
    assert data == sim.benchmark_coarri(50, seed=7) != sim.benchmark_coarri(50, seed=8)
    result = parse(data)
    assert result.errors == [] and len(result.events) == 50
    assert sum("temperature" in e.event.details for e in result.events) == 5


# -- fuzz ------------------------------------------------------------------------------------
SEEDS = [sample(name) for name in ("php-edifact-D95BCOARRI.edi", "ours-iftsta-status.edi",
                                   "ours-coparn-release.edi", "ours-codeco-lf-mixed.edi",
                                   "smartdatamodels-EdiCodeco-example.edi")]
KNOWN = set(edifact.ERROR_CODES) | {"wrong-format"}


def mutate(data: bytes, rng: random.Random, steps: int) -> bytes:
    """Byte flips, truncation, insertions, and shuffled, dropped or doubled lines."""
    out = bytearray(data)
    for _ in range(steps):
        op = rng.randrange(7)
        if op == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[rng.randrange(len(out) + 1):]
        elif op == 2:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice([b"'", b"?", b"+", b":", b"\n", b"UNA:+.? '", b"UNH+9+",
                                     b"\xff\xfe", b"\x00", rng.randbytes(rng.randrange(1, 9))])
        else:
            lines = bytes(out).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == 3:
                lines[i], lines[j] = lines[j], lines[i]
            elif op == 4:
                del lines[i]
            elif op == 5:
                lines.insert(i, lines[j])
            else:
                lines[i] = lines[i].replace(b"'", b"")
            out = bytearray(b"\n".join(lines))
    return bytes(out)


def check_fuzzed(data: bytes) -> None:
    result = edifact.parse(data, received_at=NOW)  # must not raise
    assert isinstance(result, ParseResult)
    for error in result.errors:
        assert error.code in KNOWN, error
        assert error.code != "internal-error", error
    for event in result.events:
        assert event.key.startswith("feed:edifact:")
        event.to_json()


@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(SEEDS) - 1),
       steps=st.integers(1, 6))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_real_messages_never_crash(seed: int, which: int, steps: int) -> None:
    check_fuzzed(mutate(SEEDS[which], random.Random(seed), steps))


@pytest.mark.slow
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(SEEDS) - 1),
       steps=st.integers(1, 20))
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_real_messages_never_crash_long(seed: int, which: int, steps: int) -> None:
    check_fuzzed(mutate(SEEDS[which], random.Random(seed), steps))


@given(st.binary(max_size=400))
@settings(max_examples=100, deadline=None)
def test_arbitrary_bytes_after_a_una(tail: bytes) -> None:
    check_fuzzed(b"UNA:+.? '" + tail)


def test_container_numbers_used_here_are_valid() -> None:
    for number in (CONTAINER, OTHER):
        assert int(number[10]) == container_check_digit(number[:10])
