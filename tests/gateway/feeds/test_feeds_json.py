"""The JSON feed adapters: DCSA T&T 2.2, DCSA Reefer 1.0, truck GPS, customs status, GS1 EPCIS.

Real samples first (``tests/data/dcsa``, ``tests/data/epcis``; sources and licences in their
``SOURCES.md``): DCSA's Conformance-Gateway T&T responses including the ones it marks wrong,
the Reefer specification's own examples and its reference implementation's request bodies,
openepcis' EPCIS 2.0 documents including its invalid ones. Then table tests of every typed
refusal, format detection between the JSON formats (no sniff claims another format's file),
mixed encodings, the SIMULATED writers read back, and Hypothesis fuzzing of mutated real
samples (bytes and JSON trees): no exception, every refusal a typed error.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from geographiclib.geodesic import Geodesic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devnet.simfeeds import json_feeds
from gateway.feeds import customs, dcsa_reefer, dcsa_tnt, epcis, formats, gps, json_messages
from gateway.feeds.intake import message_of
from gateway.feeds.model import FeedError, ParseResult, message_key
from tests.support import fuzz

DATA = Path(__file__).resolve().parents[2] / "data"
DCSA = DATA / "dcsa"
CG = DCSA / "conformance-gateway"
RI = DCSA / "reefer-reference"
EPCIS = DATA / "epcis"
OE = EPCIS / "openepcis"
T0 = 1_795_000_000  # 2026-11-18

ADAPTERS = {m.FORMAT: m for m in (dcsa_tnt, dcsa_reefer, gps, customs, epcis)}


def parse(module: Any, data: bytes | str | Any) -> ParseResult:
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = json.dumps(data, indent=2).encode()
    return module.parse(data, received_at=T0)


def codes(result: ParseResult) -> list[str]:
    return [e.code for e in result.errors]


def reefer_examples() -> list[tuple[str, dict[str, Any]]]:
    """The Reefer 1.0 document's own examples, one per event (YAML read as JSON would be)."""
    document = yaml.safe_load((dcsa_reefer.SPEC_DIR / dcsa_reefer.REEFER_SPEC).read_text())
    found: list[tuple[str, dict[str, Any]]] = []
    stack: list[Any] = [document["paths"]]
    while stack:
        node = stack.pop(0)
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "examples" and isinstance(value, dict):
                    for name, example in value.items():
                        body = example["value"]
                        for event in body if isinstance(body, list) else [body]:
                            found.append((name, json.loads(json.dumps(event, default=str))))
                else:
                    stack.append(value)
    return found


REEFER_EXAMPLES = reefer_examples()


# -- DCSA T&T 2.2 ----------------------------------------------------------------------------
def test_tnt_conformance_sample_maps_every_event():
    data = (CG / "tnt-220-response.json").read_bytes()
    result = parse(dcsa_tnt, data)
    assert result.recognised and not result.errors
    assert [(p.event.event_type, p.event.subject.kind, p.event.subject.value)
            for p in result.events] == [
        ("TRANSPORT.ARRI", "vessel", "9321483"),
        ("SHIPMENT.DRFT", "shipment", "RESERVEDHHL123"),  # a shipping instruction
        ("TERMINAL.LOAD", "container", "APZU4812090"),
        ("TRANSPORT.ARRI", "vessel", "9321483"),
        ("SHIPMENT.DRFT", "booking", "ABC123123123"),
        ("TERMINAL.LOAD", "container", "APZU4812090"),
        ("SHIPMENT.DRFT", "mbl", "RESERVEDHHL123"),
    ]
    raw = json.loads(data)
    assert [p.key for p in result.events] == [f"feed:dcsa:{e['eventID']}:0" for e in raw]
    assert [p.line for p in result.events] == [2, 53, 74, 151, 207, 228, 310]  # each "{"
    load = result.events[2].event
    assert load.classifier == "EST" and load.location == "FRPAR"
    assert load.details["eventLocation"]["address"]["city"] == "København"
    assert load.details["seals"] == [{"sealNumber": "string", "sealSource": "CUS",
                                      "sealType": "WIR"}]


@pytest.mark.parametrize(("name", "events", "refusals"), [
    # values that do not match the conformance scenario are still valid DCSA; the container
    # whose ISO 6346 check digit is wrong is kept and flagged (see the next test)
    ("tnt-220-response-wrong-attribute-values.json", 3, []),
    ("tnt-220-response-wrong-date-times.json", 1, ["invalid-dcsa-event"] * 6),
    ("tnt-220-response-wrong-event-ids.json", 3, ["invalid-dcsa-event"] * 2),
    ("tnt-220-response-wrong-structure.json", 0, ["invalid-dcsa-event"] * 2),
])
def test_tnt_conformance_wrong_samples_are_refused(name, events, refusals):
    result = parse(dcsa_tnt, (CG / name).read_bytes())
    assert result.recognised
    assert len(result.events) == events
    assert codes(result) == refusals
    assert all(e.line > 0 for e in result.errors)


def test_tnt_refusals_name_the_pointer():
    result = parse(dcsa_tnt, (CG / "tnt-220-response-wrong-date-times.json").read_bytes())
    messages = [e.message for e in result.errors]
    assert "/eventCreatedDateTime: '2021 01 01 14:12:56' is not a 'date-time'" in messages[2]
    assert "/TEST_CASE: unknown field" in messages[4]
    wrong = parse(dcsa_tnt, (CG / "tnt-220-response-wrong-attribute-values.json").read_bytes())
    [flagged] = [e.event for e in wrong.events if "flags" in e.event.details]
    assert flagged.subject.value == "APZU2134567"
    [flag] = flagged.details["flags"]
    assert (flag["field"], flag["code"]) == ("/equipmentReference", "invalid-check-digit")
    ids = parse(dcsa_tnt, (CG / "tnt-220-response-wrong-event-ids.json").read_bytes())
    assert "/eventID: 'incorrect' is not a 'uuid'" in ids.errors[1].message
    assert ids.stats["duplicates"] == 2  # the same event sent twice is read once


def test_tnt_one_object_a_list_and_json_lines_read_alike():
    events = json.loads((CG / "tnt-220-response.json").read_bytes())
    as_list = parse(dcsa_tnt, events)
    as_lines = parse(dcsa_tnt, "\n".join(json.dumps(e) for e in events) + "\n")
    alone = [parse(dcsa_tnt, e).events[0] for e in events]
    assert [p.event for p in as_list.events] == [p.event for p in as_lines.events] == \
        [p.event for p in alone]
    assert [p.key for p in as_list.events] == [p.key for p in as_lines.events]
    assert [p.line for p in as_lines.events] == list(range(1, 8))


def test_tnt_key_without_event_id_is_the_content_hash():
    event = json.loads((CG / "tnt-220-response.json").read_bytes())[2]
    del event["eventID"]
    compact = parse(dcsa_tnt, json.dumps(event, separators=(",", ":")))
    pretty = parse(dcsa_tnt, json.dumps(event, indent=4, sort_keys=True))
    body = json_messages.canonical_json(event)
    assert compact.events[0].key == pretty.events[0].key == message_key("dcsa", body, 0)


def test_tnt_another_event_under_a_known_id_is_refused():
    events = json.loads((CG / "tnt-220-response.json").read_bytes())
    events[1]["eventID"] = events[0]["eventID"]
    result = parse(dcsa_tnt, events)
    assert codes(result) == ["duplicate-event-id"] and result.errors[0].line == 53
    assert len(result.events) == 6


def test_tnt_a_truncated_list_keeps_the_whole_events_before_the_break():
    data = (CG / "tnt-220-response.json").read_bytes()
    cut = data[:data.index(b'"eventID": "3cecb101-7a1a-43a4-9d62-e88a131651e5"') + 20]
    result = parse(dcsa_tnt, cut)
    assert len(result.events) == 3 and codes(result) == ["invalid-json"]
    assert result.errors[0].line == 152  # the line the break is on


def test_tnt_other_formats_are_not_this_one():
    assert not parse(dcsa_tnt, (CG / "tnt-300-request-reefer.json").read_bytes()).recognised
    assert not parse(dcsa_tnt, b"UNA:+.? 'UNB+UNOA:2+SENDER'").recognised
    assert not parse(dcsa_tnt, (EPCIS / "ours" / "warehouse-receipt-release.jsonld")
                     .read_bytes()).recognised
    assert not parse(dcsa_tnt, (DATA / "customs" / "ours-hold-release.jsonl")
                     .read_bytes()).recognised


# -- DCSA Reefer 1.0 -------------------------------------------------------------------------
def test_reefer_spec_examples_each_read_alone():
    assert len(REEFER_EXAMPLES) == 6
    for name, event in REEFER_EXAMPLES:
        result = parse(dcsa_reefer, event)
        assert not result.errors, (name, result.errors)
        [reading] = result.readings
        metadata = event["metadata"]
        assert reading.values["eventID"] == metadata["eventID"]
        if "retractedEventID" in metadata:
            assert reading.subject is None and reading.values == {
                "eventID": metadata["eventID"], "eventTypeCode": "RETRACTION",
                "retractedEventID": "957e4966-dad0-4111-9f8f-fb7216c43907"}
            continue
        payload = event["payload"]
        assert reading.type == "reefer" and not result.events  # MEAS: a reading, no event
        assert reading.subject.to_json() == {"kind": "container",
                                             "value": payload["equipmentReference"]}
        measured = payload["measurements"]
        assert reading.values["temperature"] == measured["temperature"]
        assert reading.values["ambientTemperature"] == measured["ambientTemperature"]
        assert reading.values["setpoint"] == payload["setpoints"]["temperature"]
        assert reading.values["unit"] == "CEL"
        assert (reading.values["lat"], reading.values["lon"]) == (48.85855, 2.294492036)
        assert reading.values["documents"] == payload["relatedDocumentReferences"]


def test_reefer_spec_examples_read_together_refuse_their_reused_event_ids():
    result = parse(dcsa_reefer, [event for _, event in REEFER_EXAMPLES])
    assert codes(result) == ["duplicate-event-id", "duplicate-event-id"]
    assert len(result.readings) == 4


def test_reefer_first_spec_example_in_detail():
    result = parse(dcsa_reefer, REEFER_EXAMPLES[0][1])
    reading = result.readings[0].to_json()
    assert reading == {
        "kind": "reading", "type": "reefer", "time": "2022-09-19T04:31:00Z",
        "subject": {"kind": "container", "value": "MSKU9070323"},
        "eventID": "84db923d-2a19-4eb0-beb5-446c1ec57d34", "eventTypeCode": "MEAS",
        "ambientTemperature": 22, "temperature": -17.9, "o2": 10.5, "co2": 15.2,
        "humidity": 88, "airExchange": 0, "airExchangeUnit": "MQH", "setpoint": -18,
        "setpoints": {"o2": 10.0, "co2": 15.0, "humidity": 88, "airExchange": 0,
                      "airExchangeUnit": "MQH"},
        "unit": "CEL", "lat": 48.85855, "lon": 2.294492036,
        "documents": [{"type": "BKG", "value": "ABC123059"}], "line": 1,
    }


def test_reefer_reference_bodies_lack_the_event_id_a_published_event_has():
    for path in sorted(RI.glob("*.json")):
        result = parse(dcsa_reefer, path.read_bytes())
        assert codes(result) == ["invalid-dcsa-event"], path.name
        assert "/metadata: 'eventID' is a required property" in result.errors[0].message


@pytest.mark.parametrize("path", sorted(RI.glob("*.json")), ids=lambda p: p.name)
def test_reefer_reference_bodies_with_an_event_id(path):
    event = json.loads(path.read_bytes())
    event["metadata"]["eventID"] = "c4b6c2f8-64b7-4bb3-9d2a-6f0d8b3a9e11"
    result = parse(dcsa_reefer, event)
    assert not result.errors
    [reading] = result.readings
    if "retractedEventID" in event["metadata"]:
        assert reading.subject is None
        assert reading.values["retractedEventID"] == "f6583a9a-7a23-465d-9693-fdb464205e73"
        assert reading.time == 1663561860  # eventCreatedDateTime 2022-09-19T04:31:00Z
    else:
        assert reading.values["lat"] == 48.85855  # sent as the string "48.85855"
        assert reading.values["temperature"] == -17.9


def test_reefer_adjustment_in_fahrenheit_is_an_event_and_a_reading():
    result = parse(dcsa_reefer, (DCSA / "ours" / "reefer-adju-fah.json").read_bytes())
    assert not result.errors
    [parsed] = result.events
    [reading] = result.readings
    event = parsed.event
    assert event.event_type == "REEFER.ADJU" and event.classifier == "ACT"
    assert parsed.key == "feed:dcsa-reefer:5f0c1f5e-8f4b-4f9a-8d2c-3b1d2e4f6a70:0"
    assert event.subject.to_json() == {"kind": "container", "value": "CSQU3054383"}
    assert [r.to_json() for r in event.related] == [
        {"kind": "booking", "value": "PCOL12345678"}, {"kind": "mbl", "value": "PCOL1234567"}]
    assert event.details["setpoints"] == {"temperature": -18.0, "humidity": 85, "unit": "CEL"}
    assert event.details["documents"] == [{"type": "SHI", "value": "SI-778"}]
    assert event.details["original"]["setpoints"]["temperature"] == -0.4
    assert reading.values["setpoint"] == -18.0 and reading.values["temperature"] == -17.0
    assert reading.values["ambientTemperature"] == 28.0 and reading.values["unit"] == "CEL"
    assert reading.values["original"]["measurements"] == {
        "temperature": 1.4, "ambientTemperature": 82.4, "temperatureUnit": "FAH"}
    assert reading.values["eventTypeCode"] == "ADJU"


def _reefer(**changes: Any) -> dict[str, Any]:
    """The ADJU sample with ``changes`` applied (``a/b`` paths; None deletes)."""
    event = json.loads((DCSA / "ours" / "reefer-adju-fah.json").read_bytes())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = event
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return event


@pytest.mark.parametrize(("changes", "code", "where"), [
    ({"payload__eventClassifierCode": "EST"}, "invalid-dcsa-event", "/payload/eventClassifierCode"),
    ({"payload__measurements__temprature": 1}, "invalid-dcsa-event", "temprature"),
    ({"metadata__eventType": "EQUIPMENT"}, "invalid-dcsa-event", "/metadata/eventType"),
    ({"metadata__eventID": None}, "invalid-dcsa-event", "'eventID' is a required"),
    ({"payload__eventDateTime": "2026-11-24T06:00:00"}, "invalid-dcsa-event", "date-time"),
    ({"payload__reeferEventTypeCode": "MEAS", "payload__measurements": None},
     "missing-measurements", "/payload/measurements"),
    ({"payload__setpoints": None}, "missing-setpoints", "/payload/setpoints"),
    ({"payload__measurements": {"airExchange": 5}}, "missing-air-exchange-unit",
     "/payload/measurements/airExchangeUnit"),
    ({"payload__setpoints": {"temperature": -18}}, "missing-temperature-unit",
     "/payload/setpoints/temperatureUnit"),
    ({"payload__setpoints__temperatureUnit": "KEL"}, "invalid-dcsa-event", "temperatureUnit"),
    ({"payload__measurements__humidity": 101}, "invalid-dcsa-event", "humidity"),
    ({"metadata__retractedEventID": "f6583a9a-7a23-465d-9693-fdb464205e73"},
     "payload-with-retraction", "/payload"),
    ({"payload": None}, "missing-payload", "/payload"),
    ({"payload__geoLocation": {"latitude": "north", "longitude": "2.3"}},
     "invalid-geolocation", "latitude"),
    ({"payload__geoLocation": {"latitude": 91, "longitude": 2.3}}, "invalid-geolocation",
     "out of range"),
    ({"payload__geoLocation": {"latitude": "48.858550000", "longitude": 2.3}},
     "invalid-dcsa-event", "latitude"),  # longer than the domain's maxLength 10
    ({"payload__equipmentReference": "GENSET01"}, "invalid-container-number",
     "/payload/equipmentReference"),
    ({"payload__equipmentReference": "CSQU 305438-3"}, "invalid-dcsa-event",
     "equipmentReference"),  # the spec allows 11 characters
])
def test_reefer_refusals_are_typed(changes, code, where):
    result = parse(dcsa_reefer, _reefer(**changes))
    assert codes(result) == [code], result.errors
    assert where in result.errors[0].message
    assert not result.events and not result.readings


def test_reefer_wrong_check_digit_is_flagged_not_refused():
    result = parse(dcsa_reefer, _reefer(payload__equipmentReference="CSQU3054384"))
    assert not result.errors
    flags = [{"field": "/payload/equipmentReference", "code": "invalid-check-digit",
              "value": "CSQU3054384", "message": "CSQU3054384: check digit is 3, not 4"}]
    assert result.events[0].event.details["flags"] == flags
    assert result.readings[0].values["flags"] == flags


def test_reefer_document_reference_that_is_no_number_of_ours_is_kept_as_sent():
    result = parse(dcsa_reefer, _reefer(payload__relatedDocumentReferences=[
        {"type": "BKG", "value": "BKG/2026 #7"}]))
    assert not result.errors and result.events[0].event.related == ()
    assert result.events[0].event.details["documents"] == [{"type": "BKG",
                                                            "value": "BKG/2026 #7"}]


def test_reefer_validators_agree_with_the_reference():
    """The compiled validator and :mod:`jsonschema` agree on every sample and refusal case."""
    cases = [event for _, event in REEFER_EXAMPLES]
    cases += [json.loads(p.read_bytes()) for p in sorted(RI.glob("*.json"))]
    cases += [_reefer(), _reefer(payload__eventClassifierCode="EST"),
              _reefer(payload__measurements__temprature=1), _reefer(metadata__eventID=None),
              _reefer(payload__eventDateTime="2026-11-24T06:00:00"),
              _reefer(payload__geoLocation={"latitude": 1, "longitude": "2"})]
    for case in cases:
        reference = not any(True for _ in dcsa_reefer.validator().iter_errors(case))
        assert dcsa_reefer._compiled().is_valid(case) == reference, case


def test_reefer_other_formats_are_not_this_one():
    assert not parse(dcsa_reefer, (CG / "tnt-300-request-reefer.json").read_bytes()).recognised
    assert not parse(dcsa_reefer, (CG / "tnt-220-response.json").read_bytes()).recognised
    assert not parse(dcsa_reefer, b"vehicle,time,lat,lon\n").recognised


# -- truck GPS -------------------------------------------------------------------------------
def test_gps_json_and_csv_samples_read_alike():
    from_json = parse(gps, (DATA / "gps" / "ours-batch.json").read_bytes())
    from_csv = parse(gps, (DATA / "gps" / "ours-batch.csv").read_bytes())
    assert not from_json.errors and not from_csv.errors
    assert [r.to_json() | {"line": 0} for r in from_json.readings] == \
        [r.to_json() | {"line": 0} for r in from_csv.readings]
    first = from_json.readings[0]
    assert first.type == "truck-position"
    assert first.to_json()["time"] == "2026-11-24T00:15:00Z"  # 08:15 at +08:00
    assert first.subject.to_json() == {"kind": "truck", "value": "HKAB1234"}
    assert first.values == {"lat": 22.3193, "lon": 114.1694, "speed": 42.5, "heading": 291.4,
                            "job": "JOB-778", "accuracy": 5.0}
    assert "heading" not in from_json.readings[2].values  # null is absent
    assert [r.line for r in from_json.readings] == [4, 5, 6]
    assert [r.line for r in from_csv.readings] == [2, 3, 4]


FIX = {"vehicle": "HK-AB 1234", "time": "2026-11-24T08:15:00+08:00", "lat": 22.3,
       "lon": 114.1, "speed": 40, "heading": 90, "job": "JOB-1", "accuracy": 4}


@pytest.mark.parametrize(("changes", "code"), [
    ({"lat": 90.5}, "invalid-latitude"),
    ({"lat": "north"}, "invalid-latitude"),
    ({"lon": -180.01}, "invalid-longitude"),
    ({"lon": True}, "invalid-longitude"),
    ({"speed": -0.1}, "invalid-speed"),
    ({"speed": 301}, "invalid-speed"),
    ({"heading": 360}, "invalid-heading"),
    ({"heading": -1}, "invalid-heading"),
    ({"accuracy": -2}, "invalid-accuracy"),
    ({"time": "2026-11-24T08:15:00"}, "missing-time-zone"),
    ({"time": "24/11/2026 08:15"}, "invalid-time"),
    ({"time": 1795997700}, "invalid-time"),
    ({"vehicle": None}, "missing-field"),
    ({"lat": None}, "missing-field"),
    ({"vehicle": "HK/AB*1234"}, "invalid-reference"),
    ({"vehicle": 1234}, "invalid-reference"),
    ({"job": ""}, "invalid-job"),
    ({"latitude": 22.3}, "unknown-field"),
])
def test_gps_json_refusals_are_typed(changes, code):
    fix = {k: v for k, v in {**FIX, **changes}.items() if v is not None or k in ("heading",)}
    result = parse(gps, "\n".join(json.dumps(f) for f in (FIX, fix, FIX)))
    assert codes(result) == [code]
    assert result.errors[0].line == 2 and [r.line for r in result.readings] == [1, 3]


@pytest.mark.parametrize(("line", "code"), [
    ("HK-AB 1234,2026-11-24T08:15:00+08:00,-91,114.1,40,90", "invalid-latitude"),
    ("HK-AB 1234,2026-11-24T08:15:00+08:00,22.3,114.1,-5,90", "invalid-speed"),
    ("HK-AB 1234,2026-11-24T08:15:00,22.3,114.1,40,90", "missing-time-zone"),
    ("HK-AB 1234,2026-11-24T08:15:00Z,22.3,114.1,40", "wrong-field-count"),
    ("HK-AB 1234,2026-11-24T08:15:00Z,nan,114.1,40,90", "invalid-latitude"),
    (",2026-11-24T08:15:00Z,22.3,114.1,40,90", "missing-field"),
])
def test_gps_csv_refusals_are_per_line(line, code):
    good = "HK-AB 1234,2026-11-24T08:15:00Z,22.3,114.1,40,90"
    data = "\n".join(["vehicle,time,lat,lon,speed,heading", good, line, good]) + "\n"
    result = parse(gps, data)
    assert codes(result) == [code] and result.errors[0].line == 3
    assert [r.line for r in result.readings] == [2, 4]


def test_gps_csv_header_any_order_case_and_separator():
    rows = ["LON;Lat;Time;Vehicle;Heading", "114.1;22.3;2026-11-24T08:15:00Z;AB1234;",
            "", "114.2;22.4;2026-11-24T08:16:00Z;AB1234;45"]
    result = parse(gps, "\r\n".join(rows))
    assert not result.errors
    assert [r.values for r in result.readings] == [{"lat": 22.3, "lon": 114.1},
                                                   {"lat": 22.4, "lon": 114.2, "heading": 45.0}]
    tabbed = parse(gps, "vehicle\ttime\tlat\tlon\nAB1\t2026-11-24T08:15:00Z\t1\t2\n")
    assert len(tabbed.readings) == 1


def test_gps_csv_unknown_column_reads_no_line():
    result = parse(gps, "vehicle,time,lat,lon,speed_kmh\nAB1,2026-11-24T08:15:00Z,1,2,3\n")
    assert codes(result) == ["unknown-column"] and not result.readings
    twice = parse(gps, "vehicle,time,lat,lon,lat\nAB1,2026-11-24T08:15:00Z,1,2,3\n")
    assert codes(twice) == ["repeated-column"]


def test_gps_not_a_batch():
    assert not parse(gps, b"hello,world\n1,2\n").recognised
    assert not parse(gps, (CG / "tnt-220-response.json").read_bytes()).recognised
    assert not parse(gps, b"").recognised


# -- customs status --------------------------------------------------------------------------
def test_customs_hold_then_release_reaches_every_view():
    result = parse(customs, (DATA / "customs" / "ours-hold-release.jsonl").read_bytes())
    assert not result.errors
    table = [(p.event.event_type, p.event.subject.kind, p.event.subject.value,
              [r.value for r in p.event.related], p.line) for p in result.events]
    assert table == [
        ("CUSTOMS.CUSH", "declaration", "HK2026112400123", ["PCOL1234567"], 1),
        ("CUSTOMS.CUSH", "mbl", "PCOL1234567", ["HK2026112400123"], 1),
        ("CUSTOMS.CUSH", "container", "CSQU3054383", ["HK2026112400123", "PCOL1234567"], 1),
        ("CUSTOMS.CUSH", "container", "MSKU9070323", ["HK2026112400123", "PCOL1234567"], 1),
        ("CUSTOMS.CUSR", "declaration", "HK2026112400123", ["PCOL1234567"], 2),
        ("CUSTOMS.CUSR", "mbl", "PCOL1234567", ["HK2026112400123"], 2),
        ("CUSTOMS.CUSR", "container", "CSQU3054383", ["HK2026112400123", "PCOL1234567"], 2),
        ("CUSTOMS.CUSR", "container", "MSKU9070323", ["HK2026112400123", "PCOL1234567"], 2),
    ]
    held = result.events[0].event
    assert held.location == "HKHKG" and held.classifier == "ACT"
    assert held.details == {"status": "HELD", "office": "HKHKG", "reason": "documentary check",
                            "messageId": "HKCED-2026-0001",
                            "containers": ["CSQU3054383", "MSKU9070323"]}
    assert "containers" not in result.events[2].event.details
    keys = [p.key for p in result.events]
    assert keys[:4] == [json_messages.event_key("customs", "HKCED-2026-0001", i) for i in range(4)]
    assert "HKCED" not in keys[0]  # a message id other than a UUID is hashed: keys stay in clear
    assert len({message_of(k) for k in keys}) == 2  # one message, all or nothing


MESSAGE = {"declarationNumber": "HK-2026-1124-00123", "status": "RELEASED",
           "time": "2026-11-24T14:30:00+08:00"}


@pytest.mark.parametrize(("changes", "code"), [
    ({"status": "CLEARED"}, "invalid-status"),
    ({"status": None}, "missing-field"),
    ({"time": "2026-11-24T14:30:00"}, "missing-time-zone"),
    ({"time": "yesterday"}, "invalid-time"),
    ({"declarationNumber": "HK/2026/1124*123"}, "invalid-reference"),
    ({"declarationNumber": 123}, "invalid-reference"),
    ({"containers": ["CSQU305438"]}, "invalid-container-number"),
    ({"containers": "CSQU3054383"}, "invalid-field"),
    ({"containers": ["CSQU3054383"] * 101}, "too-many-containers"),
    ({"billOfLading": "PCOL-1234567-OVERLONG-REF"}, "invalid-reference"),
    ({"location": "Hong Kong"}, "invalid-unlocode"),
    ({"office": "x" * 36}, "invalid-field"),
    ({"reason": ""}, "invalid-field"),
    ({"declarationNo": "1"}, "unknown-field"),
])
def test_customs_refusals_are_typed(changes, code):
    message = {k: v for k, v in {**MESSAGE, **changes}.items() if v is not None}
    result = parse(customs, json.dumps(MESSAGE | {"messageId": "a"}) + "\n" + json.dumps(message))
    assert codes(result) == [code]
    assert result.errors[0].line == 2 and len(result.events) == 1


def test_customs_flags_a_wrong_check_digit_and_drops_repeats():
    result = parse(customs, MESSAGE | {"containers": ["CSQU3054384", "csqu 305438 4"]})
    assert not result.errors and len(result.events) == 2
    flags = result.events[0].event.details["flags"]
    assert [f["value"] for f in flags] == ["CSQU3054384", "CSQU3054384"]
    assert result.events[1].event.subject.value == "CSQU3054384"


def test_customs_duplicates_and_conflicts():
    again = parse(customs, [MESSAGE, MESSAGE])
    assert len(again.events) == 1 and again.stats["duplicates"] == 1
    assert again.events[0].key == message_key("customs", json_messages.canonical_json(MESSAGE))
    conflict = parse(customs, [MESSAGE | {"messageId": "m1"},
                               MESSAGE | {"messageId": "m1", "status": "HELD"}])
    assert codes(conflict) == ["duplicate-message-id"]


def test_customs_a_scalar_is_not_a_message():
    result = parse(customs, [MESSAGE, 42, "x"])
    assert codes(result) == ["not-an-object", "not-an-object"] and len(result.events) == 1


# -- GS1 EPCIS 2.0 ---------------------------------------------------------------------------
#: What each openepcis file gives: (events, refusals by code).
EPCIS_EXPECTED: dict[str, tuple[int, dict[str, int]]] = {
    "Documents_ObjectEvent.json": (0, {"no-cargo-reference": 2}),
    "Documents_CurieString_document.json": (1, {}),
    "Documents_ObjectEvent_all_possible_fields.json": (0, {"unsupported-error-declaration": 1}),
    "Documents_ObjectEvent_with_comment.json": (0, {"no-cargo-reference": 2}),
    "Documents_AggregationEvent.json": (0, {"unsupported-event-type": 1}),
    "Documents_Combination_of_different_event.json": (0, {"unsupported-event-type": 5,
                                                          "unsupported-biz-step": 1}),
    "Documents_ObjectEvent_with_custom_bizStep_uri.json": (0, {"unsupported-biz-step": 1}),
    "Events_ObjectEvent.json": (0, {"no-cargo-reference": 1}),
    "Events_TransactionEvent.json": (0, {"unsupported-event-type": 1}),
    "Query_CurieString_document.json": (1, {}),
    "Query_QueryDocumentWithMultipleEvents.json": (0, {"no-cargo-reference": 2}),
    "Invalid_Combination_of_events_with_missing_mandatory_fields.json": (
        0, {"invalid-epcis-event": 2}),
    "Invalid_Combination_of_multiple_invalid_fields.json": (0, {"unsupported-biz-step": 4,
                                                                 "invalid-time": 1}),
    "Invalid_Combination_of_non_standard_bizStep_and_disposition.json": (
        0, {"unsupported-biz-step": 2}),
    "Invalid_EPCISDocument_without_context.json": (0, {"invalid-epcis-document": 1}),
    "Invalid_ObjectEvent_with_ilmd_field_without_namespace.json": (0, {"unsupported-biz-step": 1}),
    "Invalid_ObjectEvent_with_invalid_action.json": (0, {"invalid-epcis-event": 1}),
    "Invalid_ObjectEvent_with_invalid_certificationInfo.json": (0, {"unsupported-biz-step": 1}),
    "Invalid_ObjectEvent_with_invalid_eventTime_format.json": (0, {"invalid-time": 1}),
    "Invalid_ObjectEvent_with_non_standard_bizStep.json": (0, {"unsupported-biz-step": 1}),
    "Invalid_ObjectEvent_with_non_standard_bizStep_in_second_event.json": (
        0, {"unsupported-biz-step": 2}),
    "Invalid_ObjectEvent_with_non_standard_disposition.json": (0, {"unsupported-biz-step": 1}),
    "Invalid_ObjectEvent_with_quantity_as_text.json": (0, {"invalid-epcis-event": 1}),
    "Invalid_ObjectEvent_with_unknown_field_in_quantityList.json": (
        0, {"invalid-epcis-event": 1}),
    "Invalid_ObjectEvent_without_action_and_eventTime.json": (0, {"invalid-epcis-event": 1}),
    "Invalid_ObjectEvent_without_identifier_list.json": (0, {"invalid-epcis-event": 1}),
    "Query_Invalid_QueryDocument_with_invalid_action.json": (0, {"invalid-epcis-event": 1}),
    "Query_Invalid_QueryDocument_with_invalid_eventType.json": (0, {"invalid-epcis-event": 1}),
}


def test_epcis_every_openepcis_file_is_covered():
    assert sorted(EPCIS_EXPECTED) + ["Query_SimpleEventQuery.json"] == sorted(
        p.name for p in OE.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EPCIS_EXPECTED))
def test_epcis_openepcis_samples(name):
    events, refusals = EPCIS_EXPECTED[name]
    result = parse(epcis, (OE / name).read_bytes())
    assert result.recognised
    assert len(result.events) == events
    assert Counter(codes(result)) == Counter(refusals)
    assert all(e.line > 0 for e in result.errors)


def test_epcis_receiving_with_a_bill_of_lading_is_about_the_bill():
    [parsed] = parse(epcis, (OE / "Documents_CurieString_document.json").read_bytes()).events
    event = parsed.event
    assert event.event_type == "WAREHOUSE.RECEIPT" and parsed.line == 13
    assert event.subject.to_json() == {"kind": "mbl", "value": "1152"}
    assert event.event_time == 1673434800  # 2023-01-11T12:00+01:00
    assert event.details["readPoint"] == "https://id.gs1.de/414/4012345000115"
    assert event.details["itemCount"] == 1
    assert event.details["bizTransactions"] == [
        {"type": "desadv", "bizTransaction": "http://transaction.acme.com/po/12345678"}]


def test_epcis_query_document_is_not_an_event_list():
    assert not parse(epcis, (OE / "Query_SimpleEventQuery.json").read_bytes()).recognised


def test_epcis_our_containers():
    result = parse(epcis, (EPCIS / "ours" / "warehouse-receipt-release.jsonld").read_bytes())
    assert not result.errors
    table = [(p.event.event_type, p.event.subject.value, [r.value for r in p.event.related],
              p.line) for p in result.events]
    assert table == [("WAREHOUSE.RECEIPT", "CSQU3054383", ["PCOL1234567"], 11),
                     ("WAREHOUSE.RELEASE", "CSQU3054383", [], 27),
                     ("WAREHOUSE.RECEIPT", "MSKU9070323", [], 38)]
    first = result.events[0]
    assert first.key == json_messages.event_key(
        "epcis", "urn:uuid:6a7f3a4e-1c1b-4f7a-9a3c-0d6a1c2b3e01", 0)
    assert first.event.details["bizTransactions"] == [
        {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:PO-778"}]
    assert first.event.details["itemCount"] == 1


@pytest.mark.parametrize(("changes", "code"), [
    ({"action": "DELETE"}, "unsupported-action"),
    ({"bizStep": "loading"}, "unsupported-biz-step"),
    ({"bizStep": None}, "unsupported-biz-step"),
    ({"type": "TransactionEvent"}, "unsupported-event-type"),
    ({"type": "ObjectEvnt"}, "invalid-epcis-event"),
    ({"eventTime": "2026-11-24T09:12:00"}, "missing-time-zone"),
    ({"epcList": ["urn:epc:id:sgtin:4012345.011111.1001"], "bizTransactionList": []},
     "no-cargo-reference"),
    ({"epcList": "urn:epc:id:bic:CSQU3054383"}, "invalid-epcis-event"),
    ({"epcList": ["urn:epc:id:bic:CSQU305438"]}, "invalid-container-number"),
    ({"errorDeclaration": {"declarationTime": "2026-11-24T10:00:00Z"}},
     "unsupported-error-declaration"),
    ({"readPoint": "urn:epc:id:sgln:4012345.00001.0"}, "invalid-epcis-event"),
    ({"bizTransactionList": [{"type": "bol"}]}, "invalid-epcis-event"),
])
def test_epcis_refusals_are_typed(changes, code):
    document = json.loads((EPCIS / "ours" / "warehouse-receipt-release.jsonld").read_bytes())
    first = document["epcisBody"]["eventList"][0]
    for key, value in changes.items():
        if value is None:
            first.pop(key)
        else:
            first[key] = value
    result = parse(epcis, document)
    assert codes(result) == [code] and len(result.events) == 2


def test_epcis_single_events_a_list_and_json_lines():
    document = json.loads((EPCIS / "ours" / "warehouse-receipt-release.jsonld").read_bytes())
    events = document["epcisBody"]["eventList"]
    whole = parse(epcis, document)
    listed = parse(epcis, events)
    lines = parse(epcis, "\n".join(json.dumps(e) for e in events))
    assert [p.event for p in whole.events] == [p.event for p in listed.events] == \
        [p.event for p in lines.events]
    wrong_check = dict(events[1], epcList=["urn:epc:id:bic:CSQU3054384"])
    [flagged] = parse(epcis, wrong_check).events
    assert flagged.event.details["flags"][0]["code"] == "invalid-check-digit"


# -- detection between the JSON formats ------------------------------------------------------
def _ours() -> list[tuple[Path, str | None]]:
    """Every sample of ours and the format it is (None: none of the JSON formats)."""
    cases: list[tuple[Path, str | None]] = [(p, "dcsa") for p in CG.glob("tnt-220-*.json")]
    cases.append((CG / "tnt-300-request-reefer.json", None))
    cases += [(p, "dcsa-reefer") for p in RI.glob("*.json")]
    cases.append((DCSA / "ours" / "reefer-adju-fah.json", "dcsa-reefer"))
    cases += [(p, "epcis") for p in OE.glob("*.json") if p.name != "Query_SimpleEventQuery.json"]
    cases.append((OE / "Query_SimpleEventQuery.json", None))
    cases.append((EPCIS / "ours" / "warehouse-receipt-release.jsonld", "epcis"))
    cases += [(p, "gps") for p in (DATA / "gps").glob("ours-*")]
    cases += [(p, "customs") for p in (DATA / "customs").glob("ours-*")]
    return sorted(cases)


def _others() -> list[Path]:
    """The other engineers' real samples (EDIFACT, AIS, Cargo-IMP, ONE Record, ...)."""
    mine = {"dcsa", "epcis", "gps", "customs"}
    return sorted(p for p in DATA.glob("*/*") if p.is_file() and p.parent.name not in mine
                  and not p.name.startswith(("LICENSE", "SOURCES", "README")))


@pytest.mark.parametrize(("path", "expected"), _ours(), ids=lambda v: getattr(v, "name", v))
def test_each_sniff_claims_only_its_own_format(path, expected):
    data = path.read_bytes()
    claimed = [name for name, module in ADAPTERS.items() if module.sniff(data)]
    assert claimed == ([expected] if expected else [])
    if expected:
        assert formats.detect(data) == expected


def test_no_sniff_of_ours_claims_the_other_formats_samples():
    others = _others()
    assert len(others) >= 10  # the EDIFACT, AIS, Cargo-IMP and ONE Record samples
    for path in others:
        data = path.read_bytes()
        assert [n for n, m in ADAPTERS.items() if m.sniff(data)] == [], path
    for data in (b"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26\r\n",
                 b"UNB+UNOC:3+SENDER+RECIPIENT+260101:1200+1'UNH+1+CODECO:D:95B:UN'",
                 b"FSU/14\r\n176-12345675HKGAMS/T2K505.0\r\n",
                 b'{"@context": {"cargo": "https://onerecord.iata.org/ns/cargo#"}, '
                 b'"@type": "cargo:LogisticsEvent"}'):
        assert [n for n, m in ADAPTERS.items() if m.sniff(data)] == []


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_parse_says_not_this_format_for_the_others(name):
    module = ADAPTERS[name]
    for path, expected in _ours():
        if expected is not None and expected != name:
            result = module.parse(path.read_bytes(), received_at=T0)
            assert not result.recognised, (name, path.name)
            assert codes(result) == ["wrong-format"]


# -- mixed encodings -------------------------------------------------------------------------
def test_a_latin1_line_in_a_utf8_feed():
    events = json.loads((CG / "tnt-220-response.json").read_bytes())
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in events]
    lines[2] = json.dumps(events[2], ensure_ascii=False).encode("latin-1")  # "København"
    result = parse(dcsa_tnt, b"\n".join(lines))
    assert not result.errors and len(result.events) == 7
    assert result.events[2].event.details["eventLocation"]["address"]["city"] == "København"
    csv_data = ("\ufeffvehicle,time,lat,lon,job\n".encode()
                + "AB1,2026-11-24T08:15:00Z,1,2,Lüdenscheid\n".encode("latin-1")
                + "AB1,2026-11-24T08:16:00Z,1,2,Köln\n".encode())
    readings = parse(gps, csv_data).readings
    assert [r.values["job"] for r in readings] == ["Lüdenscheid", "Köln"]


def test_not_json_numbers_are_refused():
    assert codes(parse(customs, b'{"declarationNumber": "X", "status": NaN}')) == [
        "invalid-json"]
    result = parse(gps, b'[{"vehicle":"A","time":"2026-11-24T08:15:00Z","lat":1e999,"lon":1}]')
    assert codes(result) == ["invalid-json"]


# -- the SIMULATED writers, read back --------------------------------------------------------
def test_simulated_reefer_has_a_40_minute_excursion():
    reefer = json_feeds.Reefer("CSQU3054383", setpoint=-18.0, booking="PCOL12345678")
    events = json_feeds.reefer_events(reefer, start=T0, excursion_at=90, excursion_minutes=40)
    assert all("SIMULATED" in e["metadata"]["publisher"]["partyName"] for e in events)
    result = parse(dcsa_reefer, json_feeds.json_lines(events))
    assert not result.errors and len(result.events) == 1  # the ADJU setting -18 °C
    assert result.events[0].event.details["setpoints"] == {"temperature": -18.0, "unit": "CEL"}
    series = [(r.time, r.values["temperature"] - r.values["setpoint"]) for r in result.readings
              if r.values["eventTypeCode"] == "MEAS"]
    drifting = [t for t, d in series if d > 1.5]
    assert drifting and drifting[-1] - drifting[0] + 300 >= 40 * 60
    assert drifting == [t for t, _ in series if drifting[0] <= t <= drifting[-1]]  # unbroken
    assert all(abs(d) <= 0.5 for t, d in series if not drifting[0] <= t <= drifting[-1])
    assert json_feeds.json_lines(events) == json_feeds.json_lines(
        json_feeds.reefer_events(reefer, start=T0))  # deterministic


def test_simulated_customs_hold_then_release():
    messages = json_feeds.customs_messages("HK2026112400123", containers=["CSQU3054383"],
                                           bill_of_lading="PCOL1234567", held_at=T0,
                                           released_at=T0 + 4 * 3600)
    result = parse(customs, json_feeds.json_lines(messages))
    assert not result.errors
    container = [(p.event.event_type, p.event.event_time) for p in result.events
                 if p.event.subject.kind == "container"]
    assert container == [("CUSTOMS.CUSH", T0), ("CUSTOMS.CUSR", T0 + 4 * 3600)]
    assert all("SIMULATED" in p.event.details["reason"] for p in result.events)


def test_simulated_truck_follows_its_polyline():
    route = [(22.3193, 114.1694), (22.3300, 114.1400), (22.3500, 114.1200)]
    fixes = json_feeds.truck_positions("HK-AB 1234", route, start=T0, speed_kmh=36,
                                       interval=30)
    from_json = parse(gps, json_feeds.gps_json(fixes))
    from_csv = parse(gps, json_feeds.gps_csv(fixes))
    assert not from_json.errors and not from_csv.errors
    assert [r.values for r in from_json.readings] == [r.values for r in from_csv.readings]
    readings = from_json.readings
    assert (readings[0].values["lat"], readings[0].values["lon"]) == route[0]
    assert (readings[-1].values["lat"], readings[-1].values["lon"]) == route[-1]
    assert readings[-1].values["speed"] == 0.0
    geodesic = Geodesic.WGS84
    steps = [geodesic.Inverse(a.values["lat"], a.values["lon"], b.values["lat"],
                              b.values["lon"])["s12"]
             for a, b in zip(readings[:-2], readings[1:-1], strict=True)]
    assert all(b.time - a.time == 30 for a, b in zip(readings, readings[1:], strict=False))
    assert max(steps) < 300.3  # 36 km/h for 30 s along the road; a bend cuts a corner
    assert sorted(steps)[len(steps) // 2] == pytest.approx(300, abs=0.3)  # 6-decimal degrees
    assert all("SIMULATED" in r.values["job"] for r in readings)
    assert b'"source": "SIMULATED"' in json_feeds.gps_json(fixes)


# -- fuzzing: mutations of the real samples --------------------------------------------------
SEEDS: dict[str, list[bytes]] = {
    "dcsa": [p.read_bytes() for p in sorted(CG.glob("tnt-220-*.json"))],
    "dcsa-reefer": ([p.read_bytes() for p in sorted(RI.glob("*.json"))]
                    + [json.dumps(e, indent=1).encode() for _, e in REEFER_EXAMPLES]
                    + [(DCSA / "ours" / "reefer-adju-fah.json").read_bytes()]),
    "epcis": [p.read_bytes() for p in sorted(OE.glob("*.json"))][:12]
    + [(EPCIS / "ours" / "warehouse-receipt-release.jsonld").read_bytes()],
    "gps": [p.read_bytes() for p in sorted((DATA / "gps").glob("ours-*"))],
    "customs": [(DATA / "customs" / "ours-hold-release.jsonl").read_bytes()],
}
ALL_SEEDS = [seed for seeds in SEEDS.values() for seed in seeds]


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A real sample with byte flips, truncation, insertions, line shuffles or re-encoding."""
    return fuzz.mutated(seeds, [b"{", b"}", b"[", b"]", b",", b'"', b"\\", b"\n", b"\r",
                                b"null", b"NaN", b"1e999", b"-0", b"\xef\xbb\xbf", b"\xe9",
                                b'"eventType": "REEFER",', b'"lat": 91,', b"9" * 40],
                        ["flip", "truncate", "insert", "shuffle", "duplicate", "delete",
                         "latin1"])


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)


def _tree(seed: bytes) -> Any | None:
    """A sample as one JSON value (JSON Lines as a list), or None if it is not JSON."""
    try:
        return json.loads(seed)
    except ValueError:
        try:
            return [json.loads(line) for line in seed.splitlines() if line.strip()]
        except ValueError:
            return None


@st.composite
def restructured(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real sample's JSON tree with members deleted, retyped or added (still valid JSON)."""
    trees = [t for t in map(_tree, seeds) if t is not None]
    tree = copy.deepcopy(draw(st.sampled_from(trees)))
    for _ in range(draw(st.integers(1, 5))):
        nodes: list[Any] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, dict | list):
                nodes.append(node)
                stack.extend(node.values() if isinstance(node, dict) else node)
        node = draw(st.sampled_from(nodes))
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            action = draw(st.sampled_from(["delete", "retype", "add"]))
            if action == "delete":
                del node[key]
            elif action == "retype":
                node[key] = draw(_JSON_VALUES)
            else:
                node[draw(st.text(max_size=12))] = draw(_JSON_VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(_JSON_VALUES)
    return json.dumps(tree, indent=draw(st.sampled_from([None, 1]))).encode()


def _never_raises(data: bytes, names: list[str]) -> None:
    for name in names:
        result = ADAPTERS[name].parse(data, received_at=T0)
        assert isinstance(result, ParseResult) and result.format == name
        for error in result.errors:
            assert isinstance(error, FeedError) and error.code and error.message
        if not result.recognised:
            assert codes(result) == ["wrong-format"]
        json.dumps(list(result.report()), allow_nan=False)  # the report is JSON
        for parsed in result.events:
            assert parsed.key.startswith(f"feed:{name}:")


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SLOW = settings(max_examples=3000, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_fuzz_mutated_samples(name):
    @FUZZ
    @given(st.one_of(mutated(SEEDS[name]), restructured(SEEDS[name])))
    def run(data: bytes) -> None:
        _never_raises(data, [name])
    run()


@FUZZ
@given(mutated(ALL_SEEDS))
def test_fuzz_every_adapter_on_every_mutated_sample(data):
    _never_raises(data, sorted(ADAPTERS))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_fuzz_mutated_samples_long(name):
    @FUZZ_SLOW
    @given(st.one_of(mutated(SEEDS[name]), restructured(SEEDS[name])))
    def run(data: bytes) -> None:
        _never_raises(data, sorted(ADAPTERS))
    run()
