"""Reefer excursion: tolerance by set point or commodity band, sustained, defrost, gaps."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.facts import Measured, Observed, build_facts
from gateway.alerts.model import Alert
from gateway.alerts.rules import ReeferSettings, Settings, reefer_alerts
from gateway.events.model import Reference
from tests.gateway.alerts.builders import REEFER_BOX, event, hk, reefer

T0 = hk("2026-11-26 08:00")
M = 60
BOX = Reference("container", REEFER_BOX)

DEFAULTS = ReeferSettings()


def run(items: list[Observed | Measured], settings: ReeferSettings = DEFAULTS,
        now: int | None = None) -> list[Alert]:
    facts = build_facts([i for i in items if isinstance(i, Observed)],
                        [i for i in items if isinstance(i, Measured)])
    last = max(i.reading.time if isinstance(i, Measured) else i.event.event_time for i in items)
    return reefer_alerts(facts[BOX], settings, last + 5 * M if now is None else now)


def series(temps: list[float | None], *, every: int = 15, setpoint: float = -18.0,
           **values: Any) -> list[Observed | Measured]:
    return [reefer(T0 + i * every * M, t, setpoint, **values)
            for i, t in enumerate(temps) if t is not None]


def shape(alerts: list[Alert]) -> list[tuple[str, int, Any, Any]]:
    return [(a.state, (a.opened - T0) // M, a.figures["peak_deviation"],
             None if a.resolved is None else (a.resolved - T0) // M) for a in alerts]


@pytest.mark.parametrize(("temps", "expected"), [
    # frozen -18: tolerance 1.5, three readings 15 min apart (30 min span reached at the 3rd)
    ([-18.0, -16.4, -16.0, -15.5, -18.2], [("resolved", 15, 2.5, 60)]),
    ([-18.0, -16.5, -18.0], []),  # 1.5 is not above the tolerance
    ([-18.0, -16.4, -16.0, -18.0, -16.2, -18.1], []),  # two warm readings, then fine: no episode
    ([-18.0, -16.4, -16.0, -15.0], [("open", 15, 3.0, None)]),
    ([-18.0, -20.0, -21.0, -19.8, -18.0], [("resolved", 15, -3.0, 60)]),  # too cold counts too
    # two episodes: back in tolerance in between
    ([-16.0, -16.0, -16.0, -18.0, -15.0, -15.0, -15.0, -18.0],
     [("resolved", 0, 2.0, 45), ("resolved", 60, 3.0, 105)]),
])
def test_frozen_table(temps: list[float], expected: list[tuple[Any, ...]]) -> None:
    assert shape(run(series(temps))) == expected


def test_sustained_by_minutes_or_by_readings_whichever_first() -> None:
    # readings 30 min apart: the second warm one already spans 30 minutes
    assert shape(run(series([-18.0, -16.0, -16.0, -18.0], every=30))) == \
        [("resolved", 30, 2.0, 90)]
    # every 5 minutes: the 3rd reading confirms after only 10 minutes
    assert shape(run(series([-16.0, -16.0, -16.0, -18.0], every=5))) == \
        [("resolved", 0, 2.0, 15)]
    loose = ReeferSettings(sustain_readings=5, sustain_minutes=120)
    assert run(series([-16.0, -16.0, -16.0, -16.0, -18.0], every=15), loose) == []


def test_chilled_tolerance_is_tighter_than_frozen() -> None:
    chilled = series([4.0, 5.2, 5.3, 5.2, 4.0], setpoint=4.0)
    frozen = series([-18.0, -16.8, -16.7, -16.8, -18.0], setpoint=-18.0)
    assert shape(run(chilled)) == [("resolved", 15, 1.3, 60)]
    assert run(frozen) == []
    (alert,) = run(chilled)
    assert alert.figures["setpoint"] == 4.0 and alert.figures["tolerance"] == 1.0


def test_defrost_readings_are_ignored() -> None:
    warm = {"defrost": True}
    items = [reefer(T0, -18.0), reefer(T0 + 15 * M, -8.0, **warm),
             reefer(T0 + 30 * M, -6.0, mode="DEFROST"), reefer(T0 + 45 * M, -9.0, **warm),
             reefer(T0 + 60 * M, -18.0)]
    assert run(items) == []
    # a real excursion around a defrost keeps counting the warm readings on both sides
    items = [reefer(T0, -15.0), reefer(T0 + 15 * M, -5.0, **warm), reefer(T0 + 30 * M, -15.0),
             reefer(T0 + 45 * M, -15.5), reefer(T0 + 60 * M, -18.0)]
    (alert,) = run(items)
    assert shape([alert]) == [("resolved", 0, 3.0, 60)]
    assert alert.figures["defrost_readings_ignored"] == 1
    assert alert.figures["peak_temperature"] == -15.0  # not the defrost's -5


def test_a_gap_breaks_a_run_not_yet_confirmed() -> None:
    gap = [reefer(T0, -16.0), reefer(T0 + 15 * M, -16.0),  # two warm, then 2 h of silence
           reefer(T0 + 135 * M, -16.0), reefer(T0 + 150 * M, -18.0)]
    assert run(gap) == []
    patient = ReeferSettings(max_gap_minutes=180)
    assert shape(run(gap, patient)) == [("resolved", 0, 2.0, 150)]


def test_a_gap_does_not_end_an_open_episode_but_marks_it_stale() -> None:
    items = series([-16.0, -16.0, -16.0])
    last = T0 + 30 * M
    (fresh,) = run(items, now=last + 10 * M)
    assert fresh.state == "open" and "stale" not in fresh.figures
    assert fresh.next_check == last + 60 * M + 1  # the clock pass marks it stale then
    (stale,) = run(items, now=last + 3 * 60 * M)
    assert stale.state == "open" and stale.figures["stale"] is True
    assert stale.figures["last_reading"] == "2026-11-26T00:30:00Z"
    assert stale.next_check == last + 24 * 60 * M  # when the silence closes it
    assert stale.figures["duration_minutes"] == 210  # the episode has lasted until now


def test_a_day_of_silence_closes_an_open_episode() -> None:
    items = series([-16.0, -16.0, -16.0])
    last = T0 + 30 * M
    (closed,) = run(items, now=last + 25 * 60 * M)
    assert (closed.state, closed.resolved) == ("resolved", last + 24 * 60 * M)
    assert closed.figures["reason"] == "no-readings" and closed.figures["end"] is None
    assert closed.figures["duration_minutes"] == 30  # to the last reading, not to now
    # readings coming back two days later, still warm: a new episode
    later = [reefer(last + 48 * 60 * M + i * 15 * M, -15.0) for i in range(3)]
    first, second = run(items + later)
    assert first.figures["reason"] == "no-readings"
    assert second.state == "open" and second.opened == later[0].reading.time
    shorter = ReeferSettings(close_after_silence_minutes=120)
    (early,) = run(items, shorter, now=last + 3 * 60 * M)
    assert early.resolved == last + 120 * M


def test_commodity_band_replaces_the_set_point_tolerance() -> None:
    settings = Settings().merged({"reefer": {"commodity_bands": {"Vaccines": [2, 8]}}}).reefer
    inside = series([5.0, 7.9, 7.5, 7.8, 5.0], setpoint=5.0, commodity="vaccines")
    assert run(inside, settings) == []  # 2.9 above the set point, but within 2-8 °C
    assert run(inside) != []  # without the band: chilled tolerance 1.0
    warm = series([5.0, 8.5, 9.0, 9.5, 5.0], setpoint=5.0, commodity="vaccines")
    (alert,) = run(warm, settings)
    assert alert.figures["band"] == [2.0, 8.0] and alert.figures["commodity"] == "vaccines"
    assert alert.figures["peak_deviation"] == 1.5 and "tolerance" not in alert.figures


def test_the_commodity_may_come_from_the_containers_events() -> None:
    settings = ReeferSettings(commodity_bands=(("vaccines", 2.0, 8.0),))
    booked = event("EQUIPMENT.STUF", T0 - 600, REEFER_BOX, details={"commodity": "Vaccines"})
    items: list[Observed | Measured] = [booked, *series([5.0, 7.9, 7.9, 7.9], setpoint=5.0)]
    assert run(items, settings) == []


def test_set_point_from_adjust_events_and_fahrenheit() -> None:
    adju = event("REEFER.ADJU", T0 - 60, REEFER_BOX, details={"setpoint": -18.0})
    meas = [event("REEFER.MEAS", T0 + i * 15 * M, REEFER_BOX, details={"temperature": t})
            for i, t in enumerate([-18.0, -15.0, -15.0, -15.0])]
    (alert,) = run([adju, *meas])
    assert alert.figures["setpoint"] == -18.0 and alert.figures["peak_deviation"] == 3.0
    assert alert.sources[0] == meas[1].source
    fahrenheit = series([-0.4, 5.0, 5.0, 5.0], setpoint=-0.4, unit="FAH")  # -18 °C set point
    (alert,) = run(fahrenheit)
    assert alert.figures["peak_deviation"] == 3.0 and alert.figures["setpoint"] == pytest.approx(-18)


def test_no_set_point_no_judgement() -> None:
    assert run([reefer(T0 + i * 15 * M, -5.0, None) for i in range(5)]) == []


def test_out_of_order_readings_land_in_time_order() -> None:
    temps = [-18.0, -16.0, -16.0, -16.0, -18.0]
    readings = [reefer(T0 + i * 15 * M, t) for i, t in enumerate(temps)]
    reversed_orders = [reefer(r.reading.time, r.reading.values["temperature"], order=100 - i)
                       for i, r in enumerate(readings)]
    assert shape(run(readings)) == shape(run(reversed_orders)) == [("resolved", 15, 2.0, 60)]


def test_readings_after_now_have_not_happened_yet() -> None:
    items = series([-18.0, -16.0, -16.0, -16.0, -18.0])
    (open_,) = run(items, now=T0 + 50 * M)  # before the reading back in tolerance
    assert open_.state == "open" and open_.figures["readings"] == 3
    assert run(items, now=T0 + 20 * M) == []
