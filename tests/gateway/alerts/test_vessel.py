"""Vessel delay / ETA changed: slip against the first ETA seen, per port, naming who moved."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.facts import AIS_SOURCE, Measured, Observed, build_facts
from gateway.alerts.model import Alert
from gateway.alerts.rules import Settings, VesselSettings, vessel_alerts
from gateway.events.model import Reference
from gateway.telemetry.model import Reading
from gateway.tracking.eta import ais_eta
from tests.gateway.alerts.builders import MBL, VESSEL, eta, event, hk

T = hk("2026-11-24 16:00")
H = 3600
NOW = hk("2026-11-20 12:00")
SHIP = Reference("vessel", VESSEL)

DEFAULTS = VesselSettings()


def run(items: list[Observed | Measured], settings: VesselSettings = DEFAULTS,
        now: int = NOW) -> list[Alert]:
    facts = build_facts([i for i in items if isinstance(i, Observed)],
                        [i for i in items if isinstance(i, Measured)])
    return vessel_alerts(facts[SHIP], settings, now) if SHIP in facts else []


def summary(alerts: list[Alert]) -> list[tuple[str, str, Any, Any, Any]]:
    return [(a.kind, a.state, a.figures["slip_hours"], a.figures["source"],
             a.figures.get("reason")) for a in alerts]


@pytest.mark.parametrize(("moves", "expected"), [
    # (publisher, hours after T) in receive order -> episodes
    ([("Carrier", 0), ("Carrier", 5)], []),
    ([("Carrier", 0), ("Carrier", 6)], [("eta-changed", "open", 6.0, "Carrier", None)]),
    ([("Carrier", 0), ("Carrier", 23.9)], [("eta-changed", "open", 23.9, "Carrier", None)]),
    ([("Carrier", 0), ("Carrier", 24)], [("vessel-delay", "open", 24.0, "Carrier", None)]),
    ([("Carrier", 0), ("Terminal", 2), ("Carrier", 30)],
     [("vessel-delay", "open", 30.0, "Carrier", None)]),
    # an ETA earlier by 8 h is a change too
    ([("Carrier", 0), ("Carrier", -8)], [("eta-changed", "open", -8.0, "Carrier", None)]),
    # the terminal moved, the carrier did not: the terminal is named
    ([("Carrier", 0), ("Terminal", 0), ("Terminal", 26)],
     [("vessel-delay", "open", 26.0, "Terminal", None)]),
    # ETA moving back earlier: the delay resolves, a lighter ETA change opens...
    ([("Carrier", 0), ("Carrier", 30), ("Carrier", 10)],
     [("vessel-delay", "resolved", 30.0, "Carrier", "superseded"),
      ("eta-changed", "open", 10.0, "Carrier", None)]),
    # ...and moving back to within 6 h resolves everything
    ([("Carrier", 0), ("Carrier", 30), ("Carrier", 10), ("Carrier", 1)],
     [("vessel-delay", "resolved", 30.0, "Carrier", "superseded"),
      ("eta-changed", "resolved", 10.0, "Carrier", "eta-restored")]),
    # an ETA change that grows into a delay: the change is superseded
    ([("Carrier", 0), ("Carrier", 8), ("Carrier", 28)],
     [("eta-changed", "resolved", 8.0, "Carrier", "superseded"),
      ("vessel-delay", "open", 28.0, "Carrier", None)]),
    # a growing delay is one episode, updated
    ([("Carrier", 0), ("Carrier", 25), ("Carrier", 40)],
     [("vessel-delay", "open", 40.0, "Carrier", None)]),
])
def test_slip_table(moves: list[tuple[str, float]], expected: list[tuple[Any, ...]]) -> None:
    items: list[Observed | Measured] = [eta(T + round(h * H), who) for who, h in moves]
    assert summary(run(items)) == expected


def test_figures_and_sources_name_every_eta_shown() -> None:
    first = eta(T, "Carrier", received_at=hk("2026-11-18 09:00"))
    terminal = eta(T + 2 * H, "Terminal")
    late = eta(T + 30 * H, "Carrier", received_at=hk("2026-11-19 09:00"))
    (alert,) = run([first, terminal, late])
    assert alert.figures["first_eta"] == "2026-11-24T08:00:00Z"
    assert alert.figures["first_source"] == "Carrier"
    assert alert.figures["eta"] == "2026-11-25T14:00:00Z" and alert.figures["port"] == "HKHKG"
    assert alert.figures["etas"] == [
        {"source": "Carrier", "eta": "2026-11-25T14:00:00Z", "classifier": "EST",
         "slip_hours": 30.0},
        {"source": "Terminal", "eta": "2026-11-24T10:00:00Z", "classifier": "EST",
         "slip_hours": 2.0}]
    assert {s.ref for s in alert.sources} == {first.source.ref, terminal.source.ref,
                                              late.source.ref}
    assert alert.opened == hk("2026-11-19 09:00")  # when the slipping ETA was received
    assert alert.episode == f"HKHKG@{late.order}"


def test_the_first_eta_seen_is_the_first_received_not_the_earliest() -> None:
    # received in this order: T+30h first (the baseline), then T: an ETA 30 h *earlier*
    alerts = run([eta(T + 30 * H, "Carrier"), eta(T, "Terminal")])
    assert summary(alerts) == [("eta-changed", "open", -30.0, "Terminal", None)]


def test_arrival_resolves_and_ends_the_call() -> None:
    items = [eta(T, "Carrier"), eta(T + 30 * H, "Carrier"),
             event("TRANSPORT.ARRI", T + 29 * H, VESSEL, kind="vessel", publisher="Terminal"),
             eta(T + 14 * 24 * H, "Carrier")]  # the next call at the same port: a new baseline
    (alert,) = run(items, now=T + 30 * H)
    assert (alert.kind, alert.state, alert.resolved) == ("vessel-delay", "resolved", T + 29 * H)
    assert alert.figures["reason"] == "arrived" and alert.figures["final_slip_hours"] == 29.0
    assert alert.figures["arrived"] == "2026-11-25T13:00:00Z"


def test_ports_are_apart() -> None:
    items = [eta(T, "Carrier"), eta(T + 5 * 24 * H, "Carrier", port="SGSIN"),
             eta(T + 30 * H, "Carrier"), eta(T + 5 * 24 * H + 2 * H, "Carrier", port="SGSIN")]
    assert [(a.kind, a.figures["port"]) for a in run(items)] == [("vessel-delay", "HKHKG")]


def test_settings_per_subscriber() -> None:
    items: list[Observed | Measured] = [eta(T, "Carrier"), eta(T + 13 * H, "Carrier")]
    assert summary(run(items)) == [("eta-changed", "open", 13.0, "Carrier", None)]
    tight = Settings().merged({"vessel": {"delay_hours": 12, "change_hours": 2}}).vessel
    assert summary(run(items, tight)) == [("vessel-delay", "open", 13.0, "Carrier", None)]


def test_an_eta_on_a_document_names_the_vessel_in_details() -> None:
    # a DCSA transport event recorded against a B/L carries the vessel in details
    items = [event("TRANSPORT.ARRI", T, MBL, kind="mbl", classifier="EST",
                   details={"vessel": {"imo": VESSEL, "name": "EXAMPLE"}}, publisher="Carrier"),
             eta(T + 25 * H, "Agent")]
    assert summary(run(items)) == [("vessel-delay", "open", 25.0, "Agent", None)]


def _position(when: int, lat: float, lon: float, sog: float) -> Measured:
    from tests.gateway.alerts.builders import _orders
    values = {"mmsi": 477123400, "lat": lat, "lon": lon, "sog": sog, "cog": 270.0}
    number = next(_orders)
    return Measured(Reading("ais-position", when, SHIP, values), order=number,
                    publisher="AIS network", ref=f"r{number}")


def test_ais_derived_eta_is_a_source() -> None:
    seen = hk("2026-11-23 16:00")
    before = _position(seen - 3 * H, 22.30, 114.40, 12.0)  # received before the port was named
    carrier = eta(seen + 2 * H, "Carrier")
    far = _position(seen, 22.0, 118.0, 10.0)
    expected = ais_eta(far.reading.values, seen, "HKHKG")
    assert expected is not None and not expected.get("atPort")
    (alert,) = run([before, carrier, far])
    assert alert.figures["source"] == AIS_SOURCE and alert.kind == "eta-changed"
    slip = (seen + round(expected["hours"] * H)) - (seen + 2 * H)
    assert abs(alert.figures["slip_hours"] - slip / H) <= 0.1
    assert far.source in alert.sources and before.source not in alert.sources
    assert run([before, carrier, far], VesselSettings(use_ais=False)) == []
    assert run([before, far]) == []  # no port of call named: no AIS ETA at all


def test_an_eta_long_past_with_no_arrival_resolves() -> None:
    items: list[Observed | Measured] = [eta(T, "Carrier"), eta(T + 30 * H, "Carrier")]
    (open_,) = run(items, now=T)
    assert open_.state == "open" and open_.next_check == T + 30 * H + 48 * H
    (passed,) = run(items, now=T + 80 * H)
    assert (passed.state, passed.resolved) == ("resolved", T + 78 * H)
    assert passed.figures["reason"] == "eta-passed"
    patient = Settings().merged({"vessel": {"expire_hours": 96}}).vessel
    assert run(items, patient, now=T + 80 * H)[0].state == "open"
