"""Not picked up / storage meter: from availability to gate-out, LFD warning, holds, re-entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.facts import Observed, build_facts
from gateway.alerts.model import Alert
from gateway.alerts.rules import Settings, StorageSettings, as_of, storage_alerts
from gateway.alerts.tariff import Tariff, meter, parse_tariff
from gateway.events.model import Reference
from tests.gateway.alerts.builders import BOX, DECLARATION, MBL, event, hk
from tests.gateway.alerts.test_tariff import ISSUE_TARIFF, WORKING

ROOT = Path(__file__).resolve().parents[3]
CONTAINER = Reference("container", BOX)
TARIFF = parse_tariff(ISSUE_TARIFF)
DRY20 = {"ISOEquipmentCode": "22G1"}


def arrival(day: str = "2026-11-02", *, avpu: bool = True,
            details: dict[str, Any] | None = None) -> list[Observed]:
    """Discharge at 08:00 and (optionally) availability at 09:00 HKT on ``day``."""
    found = [event("TERMINAL.DISC", hk(f"{day} 08:00"), details=DRY20 if details is None else details,
                   related=(Reference("mbl", MBL),))]
    if avpu:
        found.append(event("TERMINAL.AVPU", hk(f"{day} 09:00")))
    return found

DEFAULTS = StorageSettings()


def run(items: list[Observed], now: int, tariff: Tariff = TARIFF,
        settings: StorageSettings = DEFAULTS) -> tuple[list[Alert], int | None]:
    facts = build_facts(items)
    return storage_alerts(facts[CONTAINER], settings, tariff, tariff.calendar, now)


def shown(alert: Alert, now: int) -> dict[str, Any]:
    """An alert as a reader sees it at ``now`` (an open meter's days and money worked out)."""
    return as_of(alert.to_json(), now)


def brief(alerts: list[Alert], now: int) -> list[tuple[Any, ...]]:
    return [(f["kind"], f["state"], f["days_in_yard"], f["accrued"], f["per_day"],
             f.get("reason")) for f in (shown(a, now) for a in alerts)]


# available Mon 2 Nov 2026 09:00 HKT: day 1 = 2 Nov, LFD = 6 Nov (5 free calendar days); the
# clock next looks at the box when its state changes: the warning, the LFD ending, the band of
# HK$200 a day beginning on day 11 (its per_day shows from day 10, the rate of the next day),
# then never (the meter's money is worked out when read)
@pytest.mark.parametrize(("now", "expected", "wake"), [
    ("2026-11-04 12:00", [], "2026-11-05 00:00"),
    ("2026-11-05 00:00", [("free-time-ending", "open", 4, 0, 100, None)], "2026-11-07 00:00"),
    ("2026-11-06 23:59", [("free-time-ending", "open", 5, 0, 100, None)], "2026-11-07 00:00"),
    ("2026-11-07 00:00", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "open", 6, 100, 100, None)], "2026-11-11 00:00"),
    ("2026-11-09 10:00", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "open", 8, 300, 100, None)], "2026-11-11 00:00"),
    ("2026-11-11 10:00", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "open", 10, 500, 200, None)], None),
    ("2026-11-12 10:00", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "open", 11, 700, 200, None)], None),
])
def test_meter_over_time(now: str, expected: list[tuple[Any, ...]], wake: str | None) -> None:
    alerts, next_time = run(arrival(), hk(now))
    assert brief(alerts, hk(now)) == expected
    times = [next_time, *(a.next_check for a in alerts if a.is_open)]
    assert min((t for t in times if t is not None), default=None) == (
        None if wake is None else hk(wake))


def test_figures_of_the_open_meter() -> None:
    alerts, _ = run(arrival(), hk("2026-11-09 10:00"))
    meter = alerts[-1]
    assert meter.kind == "not-picked-up" and meter.opened == hk("2026-11-07 00:00")
    # stored: no figure that moves with the days alone, the meter's basis instead
    assert "accrued" not in meter.figures and "days_in_yard" not in meter.figures
    assert meter.figures["basis"]["day1"] == "2026-11-02" and meter.figures["per_day"] == 100
    f = shown(meter, hk("2026-11-09 10:00"))
    assert "basis" not in f
    assert f["available"] == "2026-11-02T01:00:00Z" and f["last_free_day"] == "2026-11-06"
    assert (f["days_in_yard"], f["charged_days"], f["days_left"]) == (8, 3, -3)
    assert (f["accrued"], f["per_day"], f["currency"]) == (300, 100, "HKD")
    assert (f["accrued_cents"], f["per_day_cents"]) == (30000, 10000)
    assert (f["size"], f["size_known"], f["reefer"]) == ("20", True, False)
    assert f["carrier"] == "PCOL" and f["tariff"] == "base" and f["terminal"] == "TERMINAL"
    assert f["holds"] == [] and f["pick_up_blocked"] is False
    assert meter.episode == str(hk("2026-11-02 08:00"))


@pytest.mark.parametrize(("gate_out", "expected"), [
    ("2026-11-04 10:00", []),  # picked up before the warning: nothing to say
    ("2026-11-06 12:00", [("free-time-ending", "resolved", 5, 0, 100, "gated-out")]),
    ("2026-11-08 15:00", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "resolved", 7, 200, 100, "gated-out")]),
    # gate-out 00:30 on day 11 still pays day 11
    ("2026-11-12 00:30", [("free-time-ending", "resolved", 5, 0, 100, "free-time-ended"),
                          ("not-picked-up", "resolved", 11, 700, 200, "gated-out")]),
])
def test_gate_out_ends_the_meter(gate_out: str, expected: list[tuple[Any, ...]]) -> None:
    items = [*arrival(), event("TERMINAL.GTOT", hk(gate_out))]
    alerts, wake = run(items, hk("2026-11-20 10:00"))
    assert brief(alerts, hk("2026-11-20 10:00")) == expected and wake is None
    for alert in alerts:
        assert alert.next_check is None
    if len(expected) == 2:
        assert alerts[1].resolved == hk(gate_out)
        assert alerts[1].figures["gated_out"] == json.loads(json.dumps(
            alerts[1].figures["gated_out"]))
        assert items[-1].source in alerts[1].sources


def test_discharge_stands_in_for_a_missing_avpu() -> None:
    alerts, _ = run(arrival(avpu=False), hk("2026-11-09 10:00"))
    assert alerts[-1].figures["available"] == "2026-11-02T00:00:00Z"
    assert brief(alerts, hk("2026-11-09 10:00"))[-1] == ("not-picked-up", "open", 8, 300, 100, None)


def test_a_container_re_entering_the_yard_starts_a_new_episode() -> None:
    first = [*arrival("2026-11-02"), event("TERMINAL.GTOT", hk("2026-11-09 10:00"))]
    back = [event("TERMINAL.GTIN", hk("2026-11-20 08:00")),
            event("TERMINAL.AVPU", hk("2026-11-20 09:00"))]
    alerts, _ = run(first + back, hk("2026-11-27 10:00"))
    assert [(a.kind, a.state, a.episode) for a in alerts] == [
        ("free-time-ending", "resolved", str(hk("2026-11-02 08:00"))),
        ("not-picked-up", "resolved", str(hk("2026-11-02 08:00"))),
        ("free-time-ending", "resolved", str(hk("2026-11-20 08:00"))),
        ("not-picked-up", "open", str(hk("2026-11-20 08:00"))),
    ]
    assert alerts[1].figures["accrued"] == 300
    assert shown(alerts[3], hk("2026-11-27 10:00"))["accrued"] == 300
    assert len({a.key for a in alerts}) == 4


def test_an_export_box_gated_in_is_not_waiting_for_pick_up() -> None:
    items = [event("TERMINAL.GTIN", hk("2026-11-02 08:00"), details=DRY20)]
    assert run(items, hk("2026-11-20 10:00")) == ([], None)


def test_a_hold_is_shown_as_the_reason_and_released() -> None:
    hold = event("CUSTOMS.CUSH", hk("2026-11-03 10:00"), DECLARATION, kind="declaration",
                 related=(Reference("container", BOX),), publisher="Customs")
    alerts, _ = run([*arrival(), hold], hk("2026-11-09 10:00"))
    f = alerts[-1].figures
    assert f["pick_up_blocked"] is True
    assert f["holds"] == [{"kind": "customs-hold",
                           "on": {"kind": "declaration", "value": DECLARATION},
                           "since": "2026-11-03T02:00:00Z", "by": "Customs"}]
    assert hold.source in alerts[-1].sources
    release = event("CUSTOMS.CUSR", hk("2026-11-08 10:00"), DECLARATION, kind="declaration",
                    publisher="Customs")
    alerts, _ = run([*arrival(), hold, release], hk("2026-11-09 10:00"))
    assert alerts[-1].figures["pick_up_blocked"] is False and alerts[-1].figures["holds"] == []
    # the warning, evaluated while the hold was on, showed it
    assert alerts[0].figures["pick_up_blocked"] is True


def test_a_carrier_hold_on_the_bill_of_lading() -> None:
    hold = event("SHIPMENT.HOLD", hk("2026-11-03 10:00"), MBL, kind="mbl", publisher="Carrier")
    alerts, _ = run([*arrival(), hold], hk("2026-11-09 10:00"))
    assert [h["kind"] for h in alerts[-1].figures["holds"]] == ["carrier-hold"]
    released = event("SHIPMENT.RELS", hk("2026-11-04 10:00"), MBL, kind="mbl",
                     publisher="Carrier")
    alerts, _ = run([*arrival(), hold, released], hk("2026-11-09 10:00"))
    assert alerts[-1].figures["holds"] == []


@pytest.mark.parametrize(("details", "size", "reefer", "accrued"), [
    ({"ISOEquipmentCode": "45R1"}, "40", True, 1200),  # 40' high-cube reefer: reefer rate
    ({"isoEquipmentCode": "L5G1"}, "45", False, 600),
    ({"sizeType": "22R1"}, "20", True, 1200),
    ({"equipment": {"ISOEquipmentCode": "42G1"}}, "40", False, 600),
    ({"ISOEquipmentCode": "2232"}, "20", True, 1200),  # pre-1995 numeric type 32: reefer
    ({}, "40", False, 600),  # unknown: the default size
])
def test_size_type_codes(details: dict[str, Any], size: str, reefer: bool,
                         accrued: int) -> None:
    alerts, _ = run(arrival(details=details), hk("2026-11-09 10:00"))
    f = shown(alerts[-1], hk("2026-11-09 10:00"))
    assert (f["size"], f["reefer"], f["accrued"]) == (size, reefer, accrued)
    assert f["size_known"] is bool(details)


def test_default_size_is_a_setting() -> None:
    settings = Settings().merged({"storage": {"default_size": "20"}}).storage
    alerts, _ = run(arrival(details={}), hk("2026-11-09 10:00"), settings=settings)
    assert shown(alerts[-1], hk("2026-11-09 10:00"))["accrued"] == 300


@pytest.mark.parametrize(("warn_days", "opens"), [(0, "2026-11-06 00:00"),
                                                  (2, "2026-11-04 00:00"),
                                                  (9, "2026-11-02 09:00")])
def test_warning_days(warn_days: int, opens: str) -> None:
    alerts, _ = run(arrival(), hk("2026-11-06 12:00"), settings=StorageSettings(warn_days))
    assert alerts[0].kind == "free-time-ending" and alerts[0].opened == hk(opens)


def test_working_day_tariff_over_christmas() -> None:
    tariff = parse_tariff(WORKING)  # 4 free working days
    alerts, wake = run(arrival("2026-12-23"), hk("2026-12-27 10:00"), tariff)
    # 23, 24 | 25, 26, 27 rest | 28, 29: LFD 29 Dec; the warning opens on the 28th
    assert alerts == [] and wake == hk("2026-12-28 00:00")
    alerts, _ = run(arrival("2026-12-23"), hk("2026-12-31 10:00"), tariff)
    f = shown(alerts[-1], hk("2026-12-31 10:00"))
    assert f["last_free_day"] == "2026-12-29"
    assert (f["charged_days"], f["accrued"]) == (2, 200)


def test_terminal_and_carrier_override_in_the_rule() -> None:
    raw = json.loads((ROOT / "examples/tariffs/example_hk_storage_overrides.json").read_text())
    tariff = parse_tariff(raw)
    items = arrival("2026-11-02", details={**DRY20, "terminal": "example-t1"})
    alerts, _ = run(items, hk("2026-11-20 10:00"), tariff)
    f = alerts[-1].figures
    assert f["tariff"] == "terminal:EXAMPLE-T1+carrier:PCOL" and f["free_days"] == 7
    explicit = arrival("2026-11-02", details={**DRY20, "carrier": "MAEU"})
    alerts, _ = run(explicit, hk("2026-11-20 10:00"), tariff)
    assert alerts[-1].figures["tariff"] == "base" and alerts[-1].figures["carrier"] == "MAEU"


def test_a_rate_the_tariff_lacks_is_said() -> None:
    tariff = parse_tariff({**ISSUE_TARIFF, "bands": [
        {"from_day": 6, "per_day": {"20": 100, "40": 200}}]})
    alerts, _ = run(arrival(details={"ISOEquipmentCode": "L5G1"}), hk("2026-11-09 10:00"),
                    tariff)
    f = shown(alerts[-1], hk("2026-11-09 10:00"))
    assert f["accrued"] is None and f["per_day"] is None and "45'" in f["tariff_gap"]


def test_an_availability_after_now_has_not_happened_yet() -> None:
    alerts, wake = run(arrival("2026-11-02"), hk("2026-11-01 12:00"))
    assert alerts == [] and wake == hk("2026-11-05 00:00")


@pytest.mark.parametrize("changes", [
    {},
    {"counting": "working", "charge_days": "working", "extra_holidays": ["2026-12-31"]},
    {"counting": "working", "charge_days": "working", "rest_days": ["sat", "sun"],
     "public_holidays": "none"},
])
def test_the_meter_read_any_day_is_the_tariffs_and_the_clock_comes_when_the_rate_does(
        changes: dict[str, Any]) -> None:
    """Read on any day, an open episode's figures (:func:`as_of` over the stored basis) are the
    tariff's meter for that day; and the episode's next check is the first day whose per_day
    differs — found here by walking every day."""
    tariff = parse_tariff({**ISSUE_TARIFF, **changes})
    changed = 0
    for start in ("2026-12-18", "2026-12-23"):
        items = arrival(start)
        previous_rate, recorded = None, None
        for offset in range(40):
            moment = hk(start + " 10:00") + offset * 86_400
            alerts, _ = run(items, moment, tariff)
            opened = [a for a in alerts if a.is_open]
            if not opened:
                continue
            alert = opened[-1]
            day = tariff.calendar.local_date(moment)
            expected = meter(tariff.base, tariff.calendar, tariff.calendar.local_date(
                hk(start + " 09:00")), day, size="20", reefer=False)
            f = shown(alert, moment)
            assert (f["days_in_yard"], f["charged_days"], f["accrued_cents"],
                    f["per_day_cents"]) == (expected.days_in_yard, expected.charged_days,
                                            expected.accrued_cents, expected.per_day_cents)
            # yesterday's episode, not due yet, read today: what evaluating today says
            if (recorded is not None and recorded.kind == alert.kind
                    and (recorded.next_check is None or recorded.next_check > moment)):
                assert {**shown(recorded, moment), "updated": f["updated"]} == f
            if alert.kind == "not-picked-up":
                if previous_rate is not None and f["per_day"] != previous_rate:
                    # the rate changed today: the episode asked to be looked at by today
                    assert recorded is not None and recorded.next_check is not None
                    assert recorded.next_check <= moment
                    changed += 1
                previous_rate = f["per_day"]
            recorded = alert
    assert changed == 2  # (the test saw the band change of both stays)
