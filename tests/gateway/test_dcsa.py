"""DCSA T&T 2.2 ⇄ canonical events: validation against the spec, mapping, round trips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from contracts.cargo import MAX_PAYLOAD
from gateway.confidential import envelope as confidential
from gateway.events import dcsa
from gateway.events.model import CanonicalEvent, Reference, Visibility, parse_time, plaintext
from tests.support.events import (
    ALL_EVENTS,
    EQUIPMENT_EVENT,
    SHIPMENT_EVENT,
    SHIPPING_INSTRUCTION_EVENT,
    STUFFING_EVENT,
    TRANSPORT_EVENT,
    spec_example,
)


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    """A DCSA event's meaningful content: instants for times, reference lists as sets,
    reference numbers normalised, deprecated aliases dropped."""
    out = copy.deepcopy(event)
    for key in ("eventDateTime", "eventCreatedDateTime"):
        out[key] = parse_time(out[key])
    out.pop("eventTypeCode", None)
    for key in ("documentReferences", "references"):
        if key in out:
            out[key] = sorted(
                tuple(sorted((k, v.replace("-", "").upper() if k.endswith("Value") else v)
                             for k, v in item.items()))
                for item in out[key]
            )
    if "equipmentReference" in out:
        out["equipmentReference"] = out["equipmentReference"].upper()
    return out


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e["eventType"] + "-" + e["eventID"][:4])
def test_examples_are_valid(event):
    assert dcsa.validate(event) is event


@pytest.mark.parametrize("name", ["shipmentEvent", "transportEvent", "equipmentEvent"])
def test_spec_examples_validate_and_map(name):
    example = spec_example(name)
    dcsa.validate(example)
    [canonical] = dcsa.from_dcsa(example)
    assert canonical.classifier == example["eventClassifierCode"]
    back = dcsa.to_dcsa(canonical, event_id=example["eventID"],
                        created=example["eventCreatedDateTime"])
    dcsa.validate(back)


def test_unknown_fields_are_refused_with_their_path():
    event = copy.deepcopy(EQUIPMENT_EVENT)
    event["equipmentRefrence"] = "APZU4812090"
    event["transportCall"]["vessel"]["vesselColour"] = "red"
    with pytest.raises(dcsa.DcsaError) as caught:
        dcsa.validate(event)
    paths = {p["path"] for p in caught.value.problems}
    assert paths == {"/equipmentRefrence", "/transportCall/vessel/vesselColour"}


def test_schema_violations_name_the_path():
    event = copy.deepcopy(EQUIPMENT_EVENT)
    event["equipmentEventTypeCode"] = "SWIM"
    del event["emptyIndicatorCode"]
    event["seals"][0]["sealType"] = "GLUE"
    with pytest.raises(dcsa.DcsaError) as caught:
        dcsa.validate(event)
    paths = {p["path"] for p in caught.value.problems}
    assert {"/equipmentEventTypeCode", "/", "/seals/0/sealType"} <= paths


@pytest.mark.parametrize("bad", [None, [], "x", {"eventType": "PARTY"}, {}])
def test_not_an_event(bad):
    with pytest.raises(dcsa.DcsaError):
        dcsa.validate(bad)


def test_date_times_need_a_zone():
    event = dict(TRANSPORT_EVENT, eventDateTime="2021-01-10T06:00:00")
    with pytest.raises(dcsa.DcsaError, match="date-time"):
        dcsa.validate(event)


def test_event_id_must_be_a_uuid():
    with pytest.raises(dcsa.DcsaError, match="uuid"):
        dcsa.validate(dict(TRANSPORT_EVENT, eventID="not-a-uuid"))


def test_document_reference_type_enum_fix():
    """The published enum says "BKG (Booking)"; the gateway takes "BKG" (and only the codes)."""
    dcsa.validate(EQUIPMENT_EVENT)
    event = copy.deepcopy(EQUIPMENT_EVENT)
    event["documentReferences"][0]["documentReferenceType"] = "BKG (Booking)"
    with pytest.raises(dcsa.DcsaError):
        dcsa.validate(event)


# -- mapping ---------------------------------------------------------------------------------
def test_terminal_discharge():
    [event] = dcsa.from_dcsa(EQUIPMENT_EVENT)
    assert event.event_type == "TERMINAL.DISC"
    assert event.subject == Reference("container", "APZU4812090")
    assert event.location == "NLRTM"
    assert event.event_time == parse_time("2019-11-12T07:41:00+08:30")
    assert set(event.related) == {
        Reference("booking", "ABC709951"), Reference("mbl", "MAEU123456789"),
        Reference("hbl", "HF88812"), Reference("vessel", "9321483"),
    }
    assert event.details["vessel"]["imo"] == "9321483"
    assert event.details["vessel"]["name"] == "King of the Seas"
    assert event.details["voyage"] == "2103S" and event.details["service"] == "FE1"
    assert event.details["seals"] == EQUIPMENT_EVENT["seals"]
    assert event.details["emptyIndicatorCode"] == "LADEN"


def test_equipment_away_from_a_terminal():
    [event] = dcsa.from_dcsa(STUFFING_EVENT)
    assert event.event_type == "EQUIPMENT.STUF"
    assert event.location == "FRPAR"  # from eventLocation
    assert event.details["references"] == [{"referenceType": "PO", "referenceValue": "PO-4411"}]


def test_transport_event_is_about_the_vessel():
    [event] = dcsa.from_dcsa(TRANSPORT_EVENT)
    assert event.event_type == "TRANSPORT.ARRI" and event.classifier == "EST"
    assert event.subject == Reference("vessel", "9321483")
    assert event.related == (Reference("mbl", "MAEU123456789"),)
    assert event.details["delayReasonCode"] == "WEA"


def test_transport_event_without_vessel_uses_the_document():
    event = copy.deepcopy(TRANSPORT_EVENT)
    del event["transportCall"]["vessel"]
    event["transportCall"]["modeOfTransport"] = "RAIL"
    [canonical] = dcsa.from_dcsa(event)
    assert canonical.subject == Reference("mbl", "MAEU123456789")
    del event["documentReferences"]
    with pytest.raises(dcsa.DcsaError) as caught:
        dcsa.from_dcsa(event)
    assert caught.value.code == "no-subject"


def test_shipment_event_is_about_the_document():
    [event] = dcsa.from_dcsa(SHIPMENT_EVENT)
    assert event.event_type == "SHIPMENT.ISSU"
    assert event.subject == Reference("mbl", "MAEU123456789")
    assert event.related == (Reference("container", "APZU4812090"),)
    [house] = dcsa.from_dcsa(SHIPMENT_EVENT, transport_document_kind="hbl")
    assert house.subject == Reference("hbl", "MAEU123456789")
    [si] = dcsa.from_dcsa(SHIPPING_INSTRUCTION_EVENT)
    assert si.subject.kind == "shipment" and si.details["documentTypeCode"] == "SHI"


def test_invalid_container_number_is_refused_with_the_right_check_digit():
    event = dict(EQUIPMENT_EVENT, equipmentReference="APZU4812091")
    with pytest.raises(dcsa.DcsaError) as caught:
        dcsa.from_dcsa(event)
    assert caught.value.code == "invalid-check-digit"
    assert caught.value.path == "/equipmentReference"
    assert "check digit is 0" in str(caught.value)


def test_invalid_imo_is_refused():
    event = copy.deepcopy(TRANSPORT_EVENT)
    event["transportCall"]["vessel"]["vesselIMONumber"] = "9321484"
    with pytest.raises(dcsa.DcsaError) as caught:
        dcsa.from_dcsa(event)
    assert caught.value.path == "/transportCall/vessel/vesselIMONumber"


def test_visibility_is_the_callers():
    [event] = dcsa.from_dcsa(TRANSPORT_EVENT, visibility=Visibility("reference", (4,)))
    assert event.visibility == Visibility("reference", (4,))


def test_mapped_events_fit_an_envelope():
    for event in ALL_EVENTS:
        [canonical] = dcsa.from_dcsa(event)
        assert confidential.sealed_size(plaintext(canonical), 3, True) <= MAX_PAYLOAD


# -- back to DCSA ----------------------------------------------------------------------------
@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e["eventType"] + "-" + e["eventID"][:4])
def test_round_trip_keeps_the_content(event):
    [canonical] = dcsa.from_dcsa(event)
    back = dcsa.to_dcsa(canonical, event_id=event["eventID"],
                        created=event["eventCreatedDateTime"])
    dcsa.validate(back)
    assert _comparable(back) == _comparable(event)


def test_round_trip_of_the_spec_example_keeps_the_content():
    example = spec_example("equipmentEvent")
    [canonical] = dcsa.from_dcsa(example)
    back = dcsa.to_dcsa(canonical, event_id=example["eventID"],
                        created=example["eventCreatedDateTime"])
    expected = _comparable(example)
    # the deprecated carrierVoyageNumber equal to exportVoyageNumber is not repeated
    expected["transportCall"].pop("carrierVoyageNumber")
    assert _comparable(back) == expected


def test_canonical_event_to_dcsa():
    event = CanonicalEvent(
        event_type="TERMINAL.GTOT",
        classifier="ACT",
        event_time=parse_time("2026-11-24T08:15:00Z"),
        subject=Reference("container", "CSQU3054383"),
        location="HKHKG",
        related=(Reference("mbl", "PCOL1234567"), Reference("vessel", "9321483")),
    )
    out = dcsa.to_dcsa(event, event_id=dcsa.event_uuid(65537), created=1_790_000_000)
    dcsa.validate(out)
    assert out["eventType"] == "EQUIPMENT" and out["equipmentEventTypeCode"] == "GTOT"
    assert out["equipmentReference"] == "CSQU3054383"
    assert out["transportCall"]["vessel"] == {"vesselIMONumber": "9321483"}
    assert out["transportCall"]["modeOfTransport"] == "VESSEL"
    assert out["documentReferences"] == [
        {"documentReferenceType": "TRD", "documentReferenceValue": "PCOL1234567"}
    ]
    assert out["emptyIndicatorCode"] == "LADEN"


def test_transport_event_from_canonical_has_a_transport_call():
    event = CanonicalEvent("TRANSPORT.DEPA", "PLN", parse_time("2026-11-25T00:00:00Z"),
                           Reference("vessel", "9321483"), location="HKHKG")
    out = dcsa.to_dcsa(event, event_id=dcsa.event_uuid(1), created="2026-11-20T00:00:00Z")
    dcsa.validate(out)
    assert out["transportCall"]["UNLocationCode"] == "HKHKG"
    again = dcsa.to_dcsa(event, event_id=dcsa.event_uuid(1), created="2026-11-20T00:00:00Z")
    assert again["transportCall"]["transportCallID"] == out["transportCall"]["transportCallID"]


def test_visible_event_to_dcsa():
    class Visible:  # the shape of tracking.VisibleEvent that to_dcsa reads
        event_id = 3 << 16 | 2
        block_time = 1_790_000_000
        event = dcsa.from_dcsa(TRANSPORT_EVENT)[0]

    out = dcsa.to_dcsa(Visible())
    assert out["eventID"] == dcsa.event_uuid(3 << 16 | 2)
    assert parse_time(out["eventCreatedDateTime"]) == 1_790_000_000
    dcsa.validate(out)


@pytest.mark.parametrize("event_type", ["REEFER.MEAS", "CUSTOMS.CUSR", "TERMINAL.AVPU",
                                        "SHIPMENT.CANC", "AIR.DEP", "LAND.DELIVERY"])
def test_not_expressible(event_type):
    event = CanonicalEvent(event_type, "ACT", 1_790_000_000, Reference("container", "CSQU3054383"))
    assert not dcsa.expressible(event)
    with pytest.raises(dcsa.NotExpressible):
        dcsa.to_dcsa(event, event_id=dcsa.event_uuid(1), created=1)


def test_bare_canonical_needs_id_and_time():
    [event] = dcsa.from_dcsa(TRANSPORT_EVENT)
    with pytest.raises(TypeError):
        dcsa.to_dcsa(event)


def test_event_uuid_is_stable_and_distinct():
    assert dcsa.event_uuid(7) == dcsa.event_uuid(7) != dcsa.event_uuid(8)


def test_the_shipped_spec_is_the_reference_copy():
    """The gateway validates against its own copy of DCSA T&T 2.2, identical to ../shared's."""
    reference = Path(__file__).resolve().parents[3] / "shared" / "specs" / "dcsa"
    shipped = Path(dcsa.__file__).resolve().parent / "specs" / "dcsa"
    name = "tnt_v2.2.0.bundled.yaml"
    assert shipped / name == dcsa.SPEC_PATH
    assert (shipped / name).read_bytes() == (reference / name).read_bytes()
