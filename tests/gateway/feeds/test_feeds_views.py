"""What feeds add to the tracking views (pure): air waybill milestones, customs status, each
source's ETA side by side, and the AIS-derived ETA (geodesic distance over speed)."""

from __future__ import annotations

from datetime import datetime

import pytest
from geographiclib.geodesic import Geodesic

from devnet.simfeeds import cargo_imp
from gateway.events.model import CanonicalEvent, Reference
from gateway.feeds import cargo_imp as fsu
from gateway.isotime import iso_time
from gateway.tracking import eta, views
from gateway.tracking.visibility import VisibleEvent

T0 = 1_795_000_000
AWB = "16012345675"


def _visible(event: CanonicalEvent, n: int, *, publisher: int = 9, name: str = "Cathay Air Cargo",
             retracted_by: int = 0, block_time: int | None = None) -> VisibleEvent:
    return VisibleEvent(n, n, b"\x00" * 32, 0, block_time or event.event_time + 60, publisher,
                        name, event, "named", retracted_by)


def _fsu_events() -> list[VisibleEvent]:
    shipment = cargo_imp.AirShipment(awb="160-12345675", origin="HKG", destination="AMS",
                                     flight="CX0271", pieces=12, weight_kg=350.5)
    data = cargo_imp.write(cargo_imp.sequence(shipment, datetime(2026, 11, 20, 1, 30)))
    result = fsu.parse(data, received_at=T0)
    assert not result.errors
    return [_visible(p.event, i + 1) for i, p in enumerate(result.events)]


def test_air_waybill_milestones_flights_pieces_weight() -> None:
    shown = _fsu_events()
    summary = views.air_waybill(AWB, shown)
    assert summary is not None
    assert summary["number"] == "160-12345675" and summary["status"] == "DLV"
    assert [m["code"] for m in summary["milestones"]] == list(views.AIR_MILESTONES)
    assert all(m["done"] and m["time"] for m in summary["milestones"])
    assert summary["flights"] == [{"flight": "CX0271", "from": "HKG", "to": "AMS",
                                   "date": "20NOV"}]
    assert (summary["origin"], summary["destination"], summary["pieces"], summary["weight"],
            summary["weightUnit"]) == ("HKG", "AMS", 12, 350.5, "K")


def test_air_waybill_part_way_and_retracted() -> None:
    shown = _fsu_events()[:4]  # BKD RCS MAN DEP
    dep = shown[-1]
    shown[-1] = _visible(dep.event, dep.event_id, retracted_by=99)  # DEP corrected away
    summary = views.air_waybill(AWB, shown)
    assert summary is not None and summary["status"] == "MAN"
    done = {m["code"] for m in summary["milestones"] if m["done"]}
    assert done == {"BKD", "RCS", "MAN"}
    assert views.air_waybill(AWB, []) is None


def test_customs_latest_status_wins() -> None:
    box = Reference("container", "CSQU3054383")
    held = CanonicalEvent("CUSTOMS.CUSH", "ACT", T0, box, "HKHKG",
                          details={"office": "HKHKG", "reason": "documentary check"})
    released = CanonicalEvent("CUSTOMS.CUSR", "ACT", T0 + 3600, box, "HKHKG")
    shown = [_visible(held, 1, publisher=10, name="Customs"),
             _visible(released, 2, publisher=10, name="Customs")]
    assert views.customs(shown[:1])["status"] == "held"
    status = views.customs(shown)
    assert status["status"] == "released" and status["time"] == iso_time(T0 + 3600)
    assert views.customs([]) is None


def test_every_sources_eta_side_by_side() -> None:
    vessel = Reference("vessel", "9811000")
    carrier = CanonicalEvent("TRANSPORT.ARRI", "EST", T0 + 7200, vessel, "HKHKG")
    terminal = CanonicalEvent("TRANSPORT.ARRI", "EST", T0 + 9000, vessel, "HKHKG")
    later = CanonicalEvent("TRANSPORT.ARRI", "EST", T0 + 10800, vessel, "HKHKG")
    shown = [_visible(carrier, 1, publisher=4, name="Pacific Ocean Line", block_time=T0),
             _visible(terminal, 2, publisher=2, name="Kwai Tsing", block_time=T0 + 10),
             _visible(later, 3, publisher=4, name="Pacific Ocean Line", block_time=T0 + 20)]
    out = views.vessel(shown)
    assert out is not None and out["portOfCall"] == "HKHKG"
    by_source = {e["source"]: e["time"] for e in out["etas"]}
    # the carrier's latest estimate, beside the terminal's: disagreement is shown
    assert by_source == {"Pacific Ocean Line": iso_time(T0 + 10800),
                         "Kwai Tsing": iso_time(T0 + 9000)}


def test_ais_eta_is_geodesic_distance_over_speed() -> None:
    port = eta.PORTS["HKHKG"]
    # 60 nautical miles due south of the terminal, at 12 knots: 5 hours
    south = Geodesic.WGS84.Direct(port.lat, port.lon, 180.0, 60 * eta.NAUTICAL_MILE)
    got = eta.ais_eta({"lat": south["lat2"], "lon": south["lon2"], "sog": 12.0}, T0, "HKHKG")
    assert got is not None
    assert got["method"] == "geodesic" and got["source"] == "AIS-derived"
    assert got["distanceNm"] == pytest.approx(60.0, abs=0.05)
    assert got["time"] == iso_time(T0 + 5 * 3600)


@pytest.mark.parametrize(("position", "port"), [
    ({"lat": 22.0, "lon": 114.0, "sog": 0.2}, "HKHKG"),  # not under way
    ({"lat": 22.0, "lon": 114.0, "sog": 12.0}, "XXABC"),  # a port the table does not know
    ({"lat": None, "lon": 114.0, "sog": 12.0}, "HKHKG"),  # no position
])
def test_no_ais_eta_rather_than_a_guess(position, port) -> None:
    assert eta.ais_eta(position, T0, port) is None


def test_a_vessel_at_the_port_has_arrived() -> None:
    port = eta.PORTS["HKHKG"]
    got = eta.ais_eta({"lat": port.lat + 0.01, "lon": port.lon, "sog": 0.0}, T0, "HKHKG")
    assert got is not None and got["atPort"] is True and got["time"] == iso_time(T0)
