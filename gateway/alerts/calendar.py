"""Days as a Hong Kong terminal counts them: local dates, rest days and public holidays (pure).

A storage tariff counts *days*, not hours: the day a container becomes available is a day, and
so is every day after it until gate-out. Which day a moment falls on depends on the time zone
(Hong Kong: UTC+08:00 all year, no daylight saving since 1979), and which days are *working*
days depends on the rest days (every Sunday is a general holiday in Hong Kong, General Holidays
Ordinance, Cap. 149) and the gazetted public holidays.

The holidays are data, not rules: ``data/hk_public_holidays.json`` lists the general holidays
the HKSAR Government gazetted for 2025, 2026 and 2027 (sources and how they were checked are in
the file and in ``docs/alerts.md``). A year that is not in the file is *not covered*: a
working-day count that touches it says so (:meth:`Calendar.covers`) instead of silently treating
its holidays as working days.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

#: Where the Hong Kong public holidays are read from.
HK_HOLIDAYS_FILE = Path(__file__).resolve().parent / "data" / "hk_public_holidays.json"

#: Hong Kong time: UTC+08:00 all year.
HK_UTC_OFFSET = 8 * 3600

#: Weekday names as tariffs write them (``date.weekday()`` order: Monday = 0).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY = 86_400


class CalendarError(ValueError):
    """A holiday list or calendar setting is malformed; ``path`` says where."""

    def __init__(self, message: str, *, path: str = "", code: str = "invalid-calendar") -> None:
        super().__init__(message)
        self.path = path
        self.code = code


@dataclass(frozen=True, eq=False)
class Calendar:
    """Local days, rest days and holidays of one place.

    Compared and hashed by identity (the day counts' caches key on it; a tariff makes its
    calendar once, :func:`hong_kong` once per process).
    """

    holidays: frozenset[date] = frozenset()
    """Public holidays (rest days such as Sundays need not be listed)."""
    rest_weekdays: frozenset[int] = frozenset({6})
    """Weekdays that are never working days (``date.weekday()``; default Sunday)."""
    utc_offset: int = HK_UTC_OFFSET
    """Seconds east of UTC of the local time the days are counted in."""
    covered_years: frozenset[int] | None = None
    """Years whose holidays are known; a working-day count outside them is flagged. None: the
    calendar has no holiday list to run out of (rest days only)."""
    names: tuple[tuple[date, str], ...] = ()
    """Each holiday's name (for display)."""

    def local_date(self, moment: int) -> date:
        """The local calendar date of a Unix time."""
        return date.fromordinal(_EPOCH_ORDINAL + (moment + self.utc_offset) // _DAY)

    def day_start(self, day: date) -> int:
        """The Unix time at which a local date begins (local midnight)."""
        return (day.toordinal() - _EPOCH_ORDINAL) * _DAY - self.utc_offset

    def is_working(self, day: date) -> bool:
        """Whether ``day`` is a working day (not a rest weekday, not a holiday)."""
        return day.weekday() not in self.rest_weekdays and day not in self.holidays

    def covers(self, day: date) -> bool:
        """Whether the holidays of ``day``'s year are known."""
        return self.covered_years is None or day.year in self.covered_years

    def with_holidays(self, extra: frozenset[date]) -> Calendar:
        """This calendar with more holidays (a tariff's own closing days)."""
        if not extra:
            return self
        return Calendar(self.holidays | extra, self.rest_weekdays, self.utc_offset,
                        self.covered_years, self.names)

    def holiday_name(self, day: date) -> str | None:
        return dict(self.names).get(day)


def days_between(first: date, last: date) -> int:
    """Calendar days from ``first`` to ``last`` counting both (0 when ``last`` < ``first``)."""
    return max(0, (last - first).days + 1)


def next_day(day: date) -> date:
    return day + timedelta(days=1)


def parse_holidays(document: Any) -> tuple[tuple[date, str], ...]:
    """The holidays of a ``{"years": {"2026": [{"date", "name"}, ...]}}`` document."""
    if not isinstance(document, dict) or not isinstance(document.get("years"), dict):
        raise CalendarError("a holiday list is {\"years\": {\"YYYY\": [...]}}", path="/years")
    found: list[tuple[date, str]] = []
    for year, entries in document["years"].items():
        if not (isinstance(year, str) and year.isdigit() and len(year) == 4):
            raise CalendarError(f"{year!r} is not a year", path=f"/years/{year}")
        if not isinstance(entries, list):
            raise CalendarError("a year's holidays are a list", path=f"/years/{year}")
        for i, entry in enumerate(entries):
            where = f"/years/{year}/{i}"
            if not isinstance(entry, dict) or not isinstance(entry.get("date"), str):
                raise CalendarError("a holiday is {\"date\": \"YYYY-MM-DD\", \"name\"}", path=where)
            try:
                day = date.fromisoformat(entry["date"])
            except ValueError:
                raise CalendarError(f"{entry['date']!r} is not a date", path=where) from None
            if day.year != int(year):
                raise CalendarError(f"{day} is not in {year}", path=where)
            found.append((day, str(entry.get("name", ""))))
    return tuple(sorted(found))


@functools.cache
def hong_kong() -> Calendar:
    """Hong Kong: UTC+08:00, Sundays and the gazetted general holidays (2025-2027)."""
    with open(HK_HOLIDAYS_FILE, encoding="utf-8") as file:
        document = json.load(file)
    names = parse_holidays(document)
    return Calendar(
        holidays=frozenset(day for day, _ in names),
        rest_weekdays=frozenset({6}),
        utc_offset=HK_UTC_OFFSET,
        covered_years=frozenset(int(y) for y in document["years"]),
        names=names,
    )
