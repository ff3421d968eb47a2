"""The shipment record from a tracking view (pure): which facts feed which fields, and only a
move in Hong Kong starts the TDEC's 14 days."""

from __future__ import annotations

from typing import Any

from gateway.declarations.service import record_from_view


def entry(event_type: str, time: str, location: str, classifier: str = "ACT",
          details: dict[str, Any] | None = None, event_id: int = 1) -> dict[str, Any]:
    return {"type": event_type, "time": time, "location": location, "classifier": classifier,
            "details": details or {}, "eventId": event_id, "publisherName": "Pacific Ocean Line"}


VIEW = {
    "reference": "PCOL1234567", "kind": "mbl", "vessel": None, "carrier": None,
    "containers": [{"number": "CSQU3054383"}],
    "timeline": [
        entry("SHIPMENT.ISSU", "2026-11-20T00:00:00Z", "CNYTN", details={
            "vessel": {"imo": "9321483", "name": "EVER GIVEN"}, "voyage": "021E",
            "pol": "CNYTN", "pod": "HKHKG", "eta": 1_795_600_000}, event_id=65536),
        entry("TRANSPORT.DEPA", "2026-11-21T00:00:00Z", "CNYTN", event_id=131072),
        entry("TRANSPORT.ARRI", "2026-11-22T00:00:00Z", "SGSIN", event_id=196608),
    ],
}


def test_facts_and_their_sources() -> None:
    found = record_from_view(VIEW, direction="import", bills=(), declarant=None,
                             consignor=None, consignee=None, road=False)
    assert found.bills == ("PCOL1234567",) and found.mode is not None
    assert found.mode.value == "sea"
    assert found.vessel is not None and found.vessel.value["name"] == "EVER GIVEN"
    assert found.vessel.source == "tracking:SHIPMENT.ISSU event 65536 by Pacific Ocean Line"
    assert found.voyage is not None and found.voyage.value == "021E"
    assert found.containers is not None and found.containers.value == ("CSQU3054383",)
    # an arrival in Singapore is not the import into Hong Kong: the B/L's ETA stands
    assert found.arrival is not None and found.arrival.value == 1_795_600_000
    assert "estimated arrival" in found.arrival.source
    arrived = {**VIEW, "timeline": [*VIEW["timeline"],  # type: ignore[list-item]
                                    entry("TERMINAL.DISC", "2026-11-24T08:00:00Z", "HKHKG",
                                          event_id=262144)]}
    landed = record_from_view(arrived, direction="import", bills=(), declarant=None,
                              consignor=None, consignee=None, road=False)
    assert landed.arrival is not None and landed.arrival.source.startswith(
        "tracking:TERMINAL.DISC event 262144")
    assert landed.movement_time == landed.arrival


def test_road_and_air() -> None:
    road = record_from_view(VIEW, direction="export", bills=("PCOL1234567", "PCOL7654321"),
                            declarant=None, consignor=None, consignee=None, road=True)
    assert road.mode is not None and road.mode.value == "road"
    assert road.bills == ("PCOL1234567", "PCOL7654321") and road.movement_time is None
    air = record_from_view({"reference": "16012345675", "kind": "awb", "timeline": []},
                           direction="import", bills=(), declarant=None, consignor=None,
                           consignee=None, road=False)
    assert air.mode is not None and air.mode.value == "air"
