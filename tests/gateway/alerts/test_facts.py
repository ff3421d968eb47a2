"""Facts: what the rules read, built from events and readings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.facts import (
    Observed,
    adds_nothing,
    build_facts,
    equipment_of,
    iso_equipment,
    temperature_point,
    yard_stays,
)
from gateway.alerts.model import Source
from gateway.events.model import CanonicalEvent, Reference
from tests.gateway.alerts.builders import BOX, DECLARATION, MBL, OTHER_BOX, event, hk

CONTAINER = Reference("container", BOX)
T = hk("2026-11-02 08:00")
ORIGIN = Source("event", "1", "P")


@pytest.mark.parametrize(("details", "code"), [
    ({"ISOEquipmentCode": "22G1"}, "22G1"),
    ({"isoEquipmentCode": " 45r1 "}, "45R1"),
    ({"sizeType": "L5G1"}, "L5G1"),
    ({"equipment": {"ISOEquipmentCode": "42G1"}}, "42G1"),
    ({"ISOEquipmentCode": "22G"}, None),  # not four characters
    ({"ISOEquipmentCode": 2200}, None),
    ({}, None),
])
def test_iso_codes_in_details(details: dict[str, Any], code: str | None) -> None:
    assert iso_equipment(details) == code


@pytest.mark.parametrize(("code", "size", "reefer"), [
    ("22G1", "20", False), ("42G1", "40", False), ("45G1", "40", False), ("L5G1", "45", False),
    ("22R1", "20", True), ("45R1", "40", True), ("42RT", "40", True), ("2232", "20", True),
    ("4510", "40", False), ("M5G1", None, False),
])
def test_iso_6346_size_and_type(code: str, size: str | None, reefer: bool) -> None:
    assert equipment_of(code) == (size, reefer)


def test_temperature_points() -> None:
    p = temperature_point({"temperature": -17.9, "setpoints": {"temperature": -18}}, T, 1,
                          ORIGIN)
    assert (p.temperature, p.setpoint, p.defrost) == (-17.9, -18.0, False)
    f = temperature_point({"temperature": 41.0, "setPoint": 39.2, "temperatureUnit": "FAH"}, T,
                          1, ORIGIN)
    assert f.temperature == pytest.approx(5.0) and f.setpoint == pytest.approx(4.0)
    d = temperature_point({"temperature": 3, "operatingMode": "Defrost", "commodity": " Fish "},
                          T, 1, ORIGIN)
    assert d.defrost and d.commodity == "fish" and d.setpoint is None
    junk = temperature_point({"temperature": "cold", "setpoint": True}, T, 1, ORIGIN)
    assert junk.temperature is None and junk.setpoint is None


def test_yard_stays() -> None:
    out_first = event("TERMINAL.GTOT", T - 3600)  # an exit whose entry was not seen: ignored
    disc = event("TERMINAL.DISC", T)
    avpu = event("TERMINAL.AVPU", T + 3600)
    avpu_again = event("TERMINAL.AVPU", T + 7200)
    loaded = event("TERMINAL.LOAD", T + 86_400)  # a transhipment ends the stay too
    gtin = event("TERMINAL.GTIN", T + 5 * 86_400)
    stays = yard_stays([loaded, avpu_again, gtin, avpu, disc, out_first])
    assert [(s.entry, s.available, s.exit) for s in stays] == [
        (disc, avpu, loaded), (gtin, None, None)]


def test_retractions_need_the_same_publisher() -> None:
    first = event("TERMINAL.DISC", T, order=10, publisher="Terminal")
    wrong = Observed(CanonicalEvent("TERMINAL.DISC", "ACT", T + 60, CONTAINER, "HKHKG",
                                    retracts=10), order=11, publisher="Other", ref="11")
    right = Observed(CanonicalEvent("TERMINAL.DISC", "ACT", T + 120, CONTAINER, "HKHKG",
                                    retracts=10), order=12, publisher="Terminal", ref="12")
    assert build_facts([first, wrong])[CONTAINER].stays[0].entry == first
    stays = build_facts([first, wrong, right])[CONTAINER].stays
    assert stays[0].entry == wrong  # the earliest left after the correction


def test_holds_on_documents_reach_their_containers() -> None:
    disc = event("TERMINAL.DISC", T, related=(Reference("mbl", MBL),))
    on_bl = event("SHIPMENT.HOLD", T + 60, MBL, kind="mbl", publisher="Carrier")
    on_declaration = event("CUSTOMS.CUSI", T + 120, DECLARATION, kind="declaration",
                           related=(CONTAINER,), publisher="Customs")
    elsewhere = event("CUSTOMS.CUSH", T + 180, "HKD999", kind="declaration",
                      related=(Reference("container", OTHER_BOX),), publisher="Customs")
    facts = build_facts([disc, on_bl, on_declaration, elsewhere])
    box = facts[CONTAINER]
    assert [(h.kind, h.on.kind) for h in box.holds] == [("carrier-hold", "mbl"),
                                                         ("customs-inspection", "declaration")]
    assert set(box.documents) == {Reference("mbl", MBL), Reference("declaration", DECLARATION)}
    assert [h.kind for h in facts[Reference("container", OTHER_BOX)].holds] == ["customs-hold"]


@pytest.mark.parametrize(("events", "carrier", "how"), [
    ([event("TERMINAL.DISC", T, details={"carrier": "maeu"})], "MAEU", "details"),
    ([event("TERMINAL.DISC", T, related=(Reference("mbl", MBL),))], "PCOL", "document-prefix"),
    ([event("TERMINAL.DISC", T, OTHER_BOX)], "MAEU", "owner-code"),  # MSKU boxes: Maersk
    ([event("TERMINAL.DISC", T, "TGHU1000018")], None, ""),  # a lessor's box, no B/L
])
def test_carrier(events: list[Observed], carrier: str | None, how: str) -> None:
    (facts,) = build_facts(events).values()
    assert (facts.carrier, facts.carrier_origin) == (carrier, how)


def test_a_reefer_by_its_readings_whatever_its_code() -> None:
    items = [event("TERMINAL.DISC", T, details={"ISOEquipmentCode": "42G1"}),
             event("REEFER.MEAS", T + 60, details={"temperature": -18, "setpoint": -18})]
    equipment = build_facts(items)[CONTAINER].equipment
    assert (equipment.size, equipment.reefer, equipment.iso_code) == ("40", True, "42G1")
    assert equipment.origin == items[0].source


_BASE = [event("TERMINAL.DISC", T, details={"ISOEquipmentCode": "22G1"}),
         event("TERMINAL.AVPU", T + 3600),
         event("SHIPMENT.HOLD", T + 7200, publisher="Carrier")]


@pytest.mark.parametrize(("added", "nothing"), [
    (event("EQUIPMENT.INSP", T + 9000), True),
    (event("SHIPMENT.STUF", T + 9000, details={"remark": "sealed", "seal": "X1"}), True),
    (event("EQUIPMENT.INSP", T + 9000, classifier="EST"), True),
    (event("EQUIPMENT.INSP", T + 9000, details={"ISOEquipmentCode": "45R1"}), False),
    (event("EQUIPMENT.INSP", T + 9000, details={"equipment": {"sizeType": "L5G1"}}), False),
    (event("EQUIPMENT.INSP", T + 9000, details={"carrierSCAC": "maeu"}), False),
    (event("EQUIPMENT.INSP", T + 9000, details={"commodity": "fish"}), False),
    (event("EQUIPMENT.INSP", T + 9000, related=(Reference("mbl", MBL),)), False),
    (event("TERMINAL.GTOT", T + 9000), False),
    (event("REEFER.MEAS", T + 9000, details={"temperature": 5}), False),
    (event("CUSTOMS.CUSR", T + 9000), False),
    (event("SHIPMENT.RELS", T + 9000, publisher="Carrier"), False),
    (event("TRANSPORT.ARRI", T + 9000, details={"vessel": {"imo": "9321483"}}), False),
    (event("EQUIPMENT.INSP", T + 9000, retracts=int(_BASE[1].ref)), False),
    (event("EQUIPMENT.INSP", T + 9000, OTHER_BOX), False),  # another box
])
def test_an_event_that_adds_nothing_leaves_the_facts_as_they_were(added: Observed,
                                                                 nothing: bool) -> None:
    """The engine keeps a box's facts (and what the rules worked out from them) when a new
    event adds nothing to them: it must then be exactly so."""
    assert adds_nothing(added, CONTAINER) is nothing
    if nothing:  # (False may be cautious: an arrival adds to its vessel's facts only)
        assert build_facts([*_BASE, added])[CONTAINER] == build_facts(_BASE)[CONTAINER]
