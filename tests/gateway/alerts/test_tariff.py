"""Tariffs: validation with typed errors, the meter at band boundaries, HK day boundaries,
working-day counting over Hong Kong public holidays, terminal and carrier overrides."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.calendar import Calendar, CalendarError, hong_kong, parse_holidays
from gateway.alerts.tariff import TariffError, load_tariff, meter, money, parse_tariff
from tests.gateway.alerts.builders import hk

ROOT = Path(__file__).resolve().parents[3]

ISSUE_TARIFF: dict[str, Any] = {
    "currency": "HKD", "free_days": 5, "counting": "calendar",
    "bands": [{"from_day": 6, "to_day": 10,
               "per_day": {"20": 100, "40": 200, "45": 200, "reefer": 400}},
              {"from_day": 11, "per_day": {"20": 200, "40": 400, "45": 400, "reefer": 800}}],
}


def _with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ISSUE_TARIFF)
    raw.update(changes)
    return raw


def test_the_issue_shape_is_valid_as_it_stands() -> None:
    tariff = parse_tariff(ISSUE_TARIFF)
    assert tariff.currency == "HKD" and tariff.base.free_days == 5
    assert tariff.base.counting == "calendar" and tariff.base.charge_days == "calendar"
    assert tariff.schedule("ANY", "ANY") == (tariff.base, "base")


@pytest.mark.parametrize(("raw", "path", "code"), [
    ([], "", "not-an-object"),
    ({k: v for k, v in ISSUE_TARIFF.items() if k != "currency"}, "/currency", "missing"),
    (_with(currency="USD"), "/currency", "bad-choice"),
    (_with(free_days=-1), "/free_days", "bad-number"),
    (_with(free_days="5"), "/free_days", "bad-number"),
    (_with(free_days=True), "/free_days", "bad-number"),
    (_with(counting="business"), "/counting", "bad-choice"),
    (_with(charge_days="weekly"), "/charge_days", "bad-choice"),
    (_with(bands=[]), "/bands", "bad-bands"),
    (_with(freedays=5), "/freedays", "unknown-member"),
    (_with(free_days=4), "/bands/0/from_day", "band-gap"),
    (_with(bands=[{"from_day": 6, "to_day": 10, "per_day": {"20": 1}},
                  {"from_day": 12, "per_day": {"20": 2}}]), "/bands/1/from_day", "band-gap"),
    (_with(bands=[{"from_day": 6, "to_day": 10, "per_day": {"20": 1}}]), "/bands/0/to_day",
     "band-gap"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": 1}}, {"from_day": 7, "per_day": {"20": 1}}]),
     "/bands/0/to_day", "band-gap"),
    (_with(bands=[{"from_day": 6, "to_day": 5, "per_day": {"20": 1}}]), "/bands/0/to_day",
     "bad-number"),
    (_with(bands=[{"from_day": 6, "per_day": {"30": 1}}]), "/bands/0/per_day/30",
     "unknown-category"),
    (_with(bands=[{"from_day": 6, "to_day": 7, "per_day": {"20": 1, "40": 2}},
                  {"from_day": 8, "per_day": {"20": 1}}]), "/bands/1/per_day", "bad-bands"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": -1}}]), "/bands/0/per_day/20", "bad-rate"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": 1.005}}]), "/bands/0/per_day/20",
     "bad-rate"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": True}}]), "/bands/0/per_day/20", "bad-rate"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": "100"}}]), "/bands/0/per_day/20",
     "bad-rate"),
    (_with(bands=[{"from_day": 6, "per_day": {"20": 1}, "rate": 3}]), "/bands/0",
     "unknown-member"),
    (_with(terminals={"T1": {"free_time": 3}}), "/terminals/T1", "unknown-member"),
    (_with(terminals={"T1": {"free_days": 3}}), "/terminals/T1/bands/0/from_day", "band-gap"),
    (_with(carriers={"PCOL": {"free_days": 7}}), "/carriers/PCOL/bands/0/from_day", "band-gap"),
    (_with(carriers={"pcol": {}, "PCOL": {}}), "/carriers/PCOL", "bad-override"),
    (_with(extra_holidays=["2026-02-30"]), "/extra_holidays/0", "bad-holidays"),
    (_with(rest_days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), "/rest_days",
     "bad-holidays"),
    (_with(rest_days=["sunday"]), "/rest_days", "bad-holidays"),
    (_with(public_holidays="CN"), "/public_holidays", "bad-choice"),
    (_with(label=3), "/label", "bad-text"),
])
def test_bad_tariffs_are_refused_with_a_path_and_a_code(raw: Any, path: str, code: str) -> None:
    with pytest.raises(TariffError) as caught:
        parse_tariff(raw)
    assert (caught.value.path, caught.value.code) == (path, code), str(caught.value)
    assert str(caught.value).startswith(f"{path or '/'}: ")


@pytest.mark.parametrize(("text", "code"), [(b"{", "not-json"), (b"\xff\xfe", "not-json"),
                                            (b"[1]", "not-an-object")])
def test_unreadable_documents(text: bytes, code: str) -> None:
    with pytest.raises(TariffError) as caught:
        load_tariff(text)
    assert caught.value.code == code


def test_rates_are_exact_cents_never_floats() -> None:
    tariff = load_tariff(json.dumps(_with(bands=[
        {"from_day": 6, "per_day": {"20": 0.1, "40": 120.5, "45": 33.33, "reefer": 7}}])))
    assert dict(tariff.base.bands[0].per_day) == {"20": 10, "40": 12050, "45": 3333,
                                                   "reefer": 700}
    # three days of 0.10 are 0.30 exactly (a float sum would be 0.30000000000000004)
    cal = Calendar()
    m = meter(tariff.base, cal, date(2026, 11, 2), date(2026, 11, 9), size="20", reefer=False)
    assert m.accrued_cents == 30 and money(m.accrued_cents) == 0.3
    assert money(12050) == 120.5 and money(40000) == 400 and isinstance(money(40000), int)
    assert parse_tariff(_with(bands=[{"from_day": 6, "per_day": {"20": Decimal("1.50")}}]))


# -- the meter at the band boundaries (calendar counting, day 1 = the availability day) -----
@pytest.mark.parametrize(("through", "days", "charged", "accrued", "per_day"), [
    (date(2026, 11, 2), 1, 0, 0, 100),  # day 1: the availability day is free day 1
    (date(2026, 11, 6), 5, 0, 0, 100),  # day 5: the last free day; tomorrow costs 100
    (date(2026, 11, 7), 6, 1, 100, 100),  # day 6: first band
    (date(2026, 11, 11), 10, 5, 500, 200),  # day 10: last day of the first band
    (date(2026, 11, 12), 11, 6, 700, 200),  # day 11: second band
    (date(2026, 11, 13), 12, 7, 900, 200),
])
def test_band_boundaries(through: date, days: int, charged: int, accrued: int,
                         per_day: int) -> None:
    tariff = parse_tariff(ISSUE_TARIFF)
    m = meter(tariff.base, tariff.calendar, date(2026, 11, 2), through, size="20", reefer=False)
    assert m.last_free_day == date(2026, 11, 6)
    assert (m.days_in_yard, m.charged_days) == (days, charged)
    assert (m.accrued_cents, m.per_day_cents) == (accrued * 100, per_day * 100)


def test_size_and_reefer_categories() -> None:
    tariff = parse_tariff(ISSUE_TARIFF)
    through = date(2026, 11, 12)  # days 6..11: 5 x band 1, 1 x band 2
    rates = {(size, reefer): meter(tariff.base, tariff.calendar, date(2026, 11, 2), through,
                                   size=size, reefer=reefer).accrued_cents
             for size in ("20", "40", "45") for reefer in (False, True)}
    assert rates[("20", False)] == 700_00
    assert rates[("40", False)] == rates[("45", False)] == 1400_00
    assert rates[("20", True)] == rates[("40", True)] == 2800_00  # "reefer" whatever the size
    sized = parse_tariff(_with(bands=[{"from_day": 6, "per_day": {
        "20": 1, "40": 2, "reefer-20": 3, "reefer-40": 4}}]))
    assert sized.base.category("40", True) == "reefer-40"
    assert sized.base.category("45", False) is None  # no 45' rate: the meter says so
    gap = meter(sized.base, sized.calendar, date(2026, 11, 2), through, size="45", reefer=False)
    assert gap.accrued_cents is None and gap.per_day_cents is None


def test_the_day_is_counted_in_hong_kong_time() -> None:
    cal = hong_kong()
    assert cal.local_date(hk("2026-11-02 00:30")) == date(2026, 11, 2)  # 2026-11-01T16:30Z
    assert cal.local_date(hk("2026-11-01 23:59")) == date(2026, 11, 1)
    assert cal.day_start(date(2026, 11, 2)) == hk("2026-11-02 00:00")


# -- working days over Hong Kong public holidays -------------------------------------------
def test_hong_kong_holidays_are_the_gazetted_lists() -> None:
    cal = hong_kong()
    assert cal.covered_years == frozenset({2025, 2026, 2027})
    for year in (2025, 2026, 2027):
        assert sum(1 for d in cal.holidays if d.year == year) == 17
    assert date(2026, 12, 26) in cal.holidays  # the first weekday after Christmas (a Saturday)
    assert date(2027, 2, 9) in cal.holidays  # 4th day of LNY: the 2nd falls on a Sunday
    assert date(2027, 2, 7) not in cal.holidays and not cal.is_working(date(2027, 2, 7))
    assert date(2026, 4, 7) in cal.holidays  # the day following Easter Monday
    assert cal.holiday_name(date(2025, 10, 7)) == \
        "The day following the Chinese Mid-Autumn Festival"
    assert cal.is_working(date(2026, 12, 24)) and not cal.is_working(date(2026, 12, 25))
    document = json.loads((ROOT / "gateway/alerts/data/hk_public_holidays.json").read_text())
    assert all("gov.hk" in url for urls in document["sources"].values() for url in urls)


@pytest.mark.parametrize(("raw", "path"), [
    ({"years": {"2026": [{"date": "2027-01-01"}]}}, "/years/2026/0"),
    ({"years": {"26": []}}, "/years/26"),
    ({"years": {"2026": [{"day": "2026-01-01"}]}}, "/years/2026/0"),
    ({"holidays": []}, "/years"),
])
def test_holiday_lists_are_checked(raw: Any, path: str) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_holidays(raw)
    assert caught.value.path == path


WORKING = _with(free_days=4, counting="working", bands=[
    {"from_day": 5, "to_day": 6, "per_day": {"20": 100, "40": 200, "45": 200, "reefer": 400}},
    {"from_day": 7, "per_day": {"20": 300, "40": 600, "45": 600, "reefer": 900}}])


@pytest.mark.parametrize(("changes", "available", "lfd"), [
    # Wed 23 Dec 2026: 23, 24 | 25 Christmas, 26 holiday (Sat), 27 Sunday | 28, 29
    ({}, date(2026, 12, 23), date(2026, 12, 29)),
    ({"counting": "calendar"}, date(2026, 12, 23), date(2026, 12, 26)),
    # without public holidays only Sunday rests: 23, 24, 25, 26
    ({"public_holidays": "none"}, date(2026, 12, 23), date(2026, 12, 26)),
    # Saturday as a rest day too, no holidays: 23, 24, 25, 28
    ({"public_holidays": "none", "rest_days": ["sat", "sun"]}, date(2026, 12, 23),
     date(2026, 12, 28)),
    # a tariff's own closing day: 24 Dec too
    ({"extra_holidays": ["2026-12-24"]}, date(2026, 12, 23), date(2026, 12, 30)),
    # Lunar New Year 2027: Fri 5 | Sat 6 LNY, Sun 7, Mon 8, Tue 9 (4th day) | 10, 11, 12
    ({}, date(2027, 2, 5), date(2027, 2, 12)),
    # available on a holiday: counting starts on the next working day (Mon 6 Apr 2026 and
    # Tue 7 Apr 2026 are holidays): 8, 9, 10, 11
    ({}, date(2026, 4, 6), date(2026, 4, 11)),
])
def test_public_holidays_under_working_day_counting(changes: dict[str, Any], available: date,
                                                    lfd: date) -> None:
    tariff = parse_tariff({**WORKING, **changes})
    m = meter(tariff.base, tariff.calendar, available, available, size="20", reefer=False)
    assert m.last_free_day == lfd
    assert not m.calendar_incomplete


def test_charges_after_the_lfd_run_every_calendar_day_or_only_working_days() -> None:
    calendar_charges = parse_tariff(WORKING)
    working_charges = parse_tariff({**WORKING, "charge_days": "working"})
    # available Mon 21 Dec 2026, LFD Thu 24 Dec; through Mon 28 Dec:
    # calendar: 25, 26, 27, 28 -> days 5, 6 (100 each), 7, 8 (300 each) = 800
    # working: only 28 Dec -> day 5 = 100; the next chargeable day (29th) is day 6: 100
    c = meter(calendar_charges.base, calendar_charges.calendar, date(2026, 12, 21),
              date(2026, 12, 28), size="20", reefer=False)
    w = meter(working_charges.base, working_charges.calendar, date(2026, 12, 21),
              date(2026, 12, 28), size="20", reefer=False)
    assert c.last_free_day == w.last_free_day == date(2026, 12, 24)
    assert (c.charged_days, c.accrued_cents, c.per_day_cents) == (4, 800_00, 300_00)
    assert (w.charged_days, w.accrued_cents, w.per_day_cents) == (1, 100_00, 100_00)


def test_a_count_past_the_known_holidays_says_so() -> None:
    tariff = parse_tariff(WORKING)
    m = meter(tariff.base, tariff.calendar, date(2027, 12, 30), date(2028, 1, 10), size="20",
              reefer=False)
    assert m.calendar_incomplete
    calendar_only = parse_tariff(ISSUE_TARIFF)
    m = meter(calendar_only.base, calendar_only.calendar, date(2027, 12, 30),
              date(2028, 1, 10), size="20", reefer=False)
    assert not m.calendar_incomplete  # calendar counting needs no holidays


def test_zero_free_days_charges_from_day_one() -> None:
    tariff = parse_tariff(_with(free_days=0, bands=[{"from_day": 1, "per_day": {"20": 50}}]))
    m = meter(tariff.base, tariff.calendar, date(2026, 11, 2), date(2026, 11, 2), size="20",
              reefer=False)
    assert m.last_free_day == date(2026, 11, 1) and m.accrued_cents == 50_00


# -- terminal and carrier overrides ----------------------------------------------------------
def test_terminal_then_carrier_override() -> None:
    raw = json.loads((ROOT / "examples/tariffs/example_hk_storage_overrides.json").read_text())
    tariff = parse_tariff(raw)
    assert tariff.label.startswith("EXAMPLE")
    base, via = tariff.schedule("KWAI TSING", None)
    assert via == "base" and base.free_days == 4 and base.counting == "working"
    terminal, via = tariff.schedule("example-t1", "MAEU")
    assert via == "terminal:EXAMPLE-T1" and terminal.free_days == 3
    assert terminal.counting == "working"  # what the override does not set comes from the base
    carrier, via = tariff.schedule("EXAMPLE-T1", "pcol")
    assert via == "terminal:EXAMPLE-T1+carrier:PCOL" and carrier.free_days == 7
    anywhere, via = tariff.schedule(None, "PCOL")
    assert via == "carrier:PCOL" and anywhere.bands == carrier.bands
    assert dict(base.bands[0].per_day)["20"] == 12050


def test_example_tariffs_are_valid_and_labelled() -> None:
    files = sorted((ROOT / "examples/tariffs").glob("*.json"))
    assert files
    for file in files:
        tariff = load_tariff(file.read_bytes())
        assert "EXAMPLE" in tariff.label


def test_another_public_holiday_list_in_place_of_the_tariffs() -> None:
    tariff = parse_tariff({**WORKING, "extra_holidays": ["2026-12-24"]})
    none = Calendar(utc_offset=8 * 3600)  # no public holidays at all
    counted = tariff.counted_in(none)
    assert counted is tariff.counted_in(none)  # one object: the day counts' caches key on it
    # 23 | 24 (the tariff's own closing day) | 25, 26 now working, 27 Sunday, 28
    m = meter(tariff.base, counted, date(2026, 12, 23), date(2026, 12, 23), size="20",
              reefer=False)
    assert m.last_free_day == date(2026, 12, 28)
    assert tariff.counted_in(None) is tariff.calendar
