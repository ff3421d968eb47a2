"""Storage tariffs in HK$ as configuration, and the storage meter they give (pure).

A tariff is a JSON document an operator writes (no official numbers are built in: the examples
under ``examples/tariffs/`` say they are examples)::

    {"currency": "HKD", "free_days": 5, "counting": "calendar",
     "bands": [{"from_day": 6, "to_day": 10,
                "per_day": {"20": 100, "40": 200, "45": 200, "reefer": 400}},
               {"from_day": 11, "per_day": {"20": 200, "40": 400, "45": 400, "reefer": 800}}]}

Optional members (the subset above stays valid on its own):

- ``charge_days``: ``calendar`` (default) or ``working`` — which days after the last free day
  are charged (``counting`` says which days count towards the free days);
- ``public_holidays``: ``HK`` (default: :func:`gateway.alerts.calendar.hong_kong`) or ``none``;
  ``extra_holidays``: more closing days, ``["2026-12-24"]``; ``rest_days``: weekdays that are
  never working days (default ``["sun"]``); these matter only under ``working`` counting;
- ``terminals``: ``{"<terminal>": {overrides}}`` and ``carriers``: ``{"<SCAC>": {overrides}}``,
  where an override may set ``free_days``, ``counting``, ``charge_days`` and ``bands``. The
  schedule of a container is the base, then its terminal's override, then its carrier's (the
  carrier wins: a line's free time negotiated for its boxes);
- ``name``, ``note``, ``label``: free text (an example tariff says so here).

Day counting
------------
Day 1 is the local (Hong Kong, UTC+08:00) date on which the container became available (the
terminal's AVPU, else its discharge); a day is counted as soon as it begins, so gate-out at
00:30 on day 7 still pays day 7. Under ``calendar`` counting the free days are days 1 to
``free_days`` and the last free day (LFD) is day ``free_days``; under ``working`` counting only
working days (not a rest day, not a public holiday) count towards the free days, so the LFD is
the ``free_days``-th working day on or after the availability date. After the LFD every
chargeable day (every calendar day, or every working day with ``charge_days: working``) takes
the next day number, ``free_days + 1`` onwards, and pays the rate of the band holding that
number. Bands are contiguous: the first starts at ``free_days + 1``, each next one the day after
the previous ``to_day``, the last is open-ended.

Money is kept in integer cents (a rate may have two decimals, ``112.50``); never in floats.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.alerts.calendar import WEEKDAYS, Calendar, days_between, hong_kong

#: Rate categories a band's ``per_day`` may name.
CATEGORIES: tuple[str, ...] = ("20", "40", "45", "reefer", "reefer-20", "reefer-40", "reefer-45")

#: Container sizes the tariff distinguishes (feet, as text).
SIZES: tuple[str, ...] = ("20", "40", "45")

#: Day counting rules.
COUNTING: tuple[str, ...] = ("calendar", "working")

#: Currencies a tariff may be written in (the gateway shows HK$).
CURRENCIES: tuple[str, ...] = ("HKD",)

#: Most days a count walks (ten years): a bound on every loop over days.
MAX_DAYS = 3660

_OVERRIDE_KEYS = frozenset({"free_days", "counting", "charge_days", "bands"})
_TOP_KEYS = _OVERRIDE_KEYS | {"currency", "public_holidays", "extra_holidays", "rest_days",
                              "terminals", "carriers", "name", "note", "label"}


class TariffError(ValueError):
    """A tariff is malformed; ``path`` is a JSON pointer into it, ``code`` a stable code."""

    def __init__(self, message: str, *, path: str = "", code: str = "invalid-tariff") -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path
        self.code = code
        self.reason = message


@dataclass(frozen=True)
class Band:
    """Day numbers ``from_day`` to ``to_day`` (None: open-ended) and their daily rates."""

    from_day: int
    to_day: int | None
    per_day: tuple[tuple[str, int], ...]
    """(category, cents) pairs, sorted."""

    def rate(self, category: str) -> int | None:
        for name, cents in self.per_day:
            if name == category:
                return cents
        return None


@dataclass(frozen=True, eq=False)
class Schedule:
    """The resolved rules for one container: free days, counting, bands.

    Compared and hashed by identity: a tariff makes each schedule once, and the meter's caches
    key on it.
    """

    free_days: int
    counting: str
    charge_days: str
    bands: tuple[Band, ...]

    def category(self, size: str, reefer: bool) -> str | None:
        """The ``per_day`` key a container pays under (None: this tariff has no rate for it)."""
        names = self.bands[0].per_day
        order = (f"reefer-{size}", "reefer") if reefer else (size,)
        return next((name for name in order for have, _ in names if have == name), None)

    def rate(self, day_number: int, category: str) -> int | None:
        """Cents for day ``day_number`` (0 within the free days)."""
        if day_number <= self.free_days:
            return 0
        for band in self.bands:
            if band.from_day <= day_number and (band.to_day is None or day_number <= band.to_day):
                return band.rate(category)
        return None

    def charge(self, first: int, last: int, category: str) -> int | None:
        """Cents for day numbers ``first`` to ``last`` (both counted), band by band."""
        total = 0
        for band in self.bands:
            low = max(first, band.from_day)
            high = last if band.to_day is None else min(last, band.to_day)
            if high >= low:
                cents = band.rate(category)
                if cents is None:
                    return None
                total += cents * (high - low + 1)
        return total


@dataclass(frozen=True, eq=False)
class Tariff:
    """A validated tariff: the base schedule, terminal and carrier overrides, the calendar."""

    currency: str
    base: Schedule
    terminals: Mapping[str, Schedule]
    """Each terminal's schedule (base with the terminal's override applied), by upper-case key."""
    carriers: Mapping[str, Mapping[str, Schedule]]
    """Each carrier's schedule over the base (key ``""``) and over each terminal."""
    calendar: Calendar
    """The calendar its days are counted in: public holidays, its extra holidays, rest days."""
    extra_holidays: frozenset[date] = frozenset()
    name: str = ""
    label: str = ""

    def counted_in(self, public: Calendar | None) -> Calendar:
        """:attr:`calendar` with another public-holiday list (a newer one, a test's) in place of
        the one it names; its own extra holidays and rest days stay."""
        if public is None:
            return self.calendar
        return _counted_in(self, public)

    def schedule(self, terminal: str | None, carrier: str | None) -> tuple[Schedule, str]:
        """The schedule of a container at ``terminal`` carried by ``carrier``, and which keys
        chose it (``"base"``, ``"terminal:X"``, ``"carrier:Y"``, ``"terminal:X+carrier:Y"``)."""
        at = (terminal or "").upper()
        at = at if at in self.terminals else ""
        line = (carrier or "").upper()
        by_terminal = self.carriers.get(line)
        if by_terminal is not None:
            return by_terminal[at], (f"terminal:{at}+carrier:{line}" if at else f"carrier:{line}")
        if at:
            return self.terminals[at], f"terminal:{at}"
        return self.base, "base"


@functools.lru_cache(maxsize=64)
def _counted_in(tariff: Tariff, public: Calendar) -> Calendar:
    """One calendar object per (tariff, public holidays): the day counts' caches key on it."""
    return Calendar(public.holidays | tariff.extra_holidays, tariff.calendar.rest_weekdays,
                    public.utc_offset, public.covered_years, public.names)


# -- validation ------------------------------------------------------------------------------
def cents(value: Any, *, path: str) -> int:
    """A money amount in currency units (int, or decimal with at most two places) as cents."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TariffError("a rate is a number of HK$ per day", path=path, code="bad-rate")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise TariffError(f"{value!r} is not a number", path=path, code="bad-rate") from None
    if not amount.is_finite() or amount < 0:
        raise TariffError("a rate is a non-negative amount", path=path, code="bad-rate")
    scaled = amount * 100
    if scaled != scaled.to_integral_value():
        raise TariffError(f"{value} has more than two decimals", path=path, code="bad-rate")
    if scaled > 10**12:
        raise TariffError(f"{value} is not a plausible daily rate", path=path, code="bad-rate")
    return int(scaled)


def _int(value: Any, *, path: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or (
        isinstance(value, Decimal) and value != value.to_integral_value()
    ):
        raise TariffError("must be a whole number", path=path, code="bad-number")
    number = int(value)
    if not minimum <= number <= maximum:
        raise TariffError(f"must be between {minimum} and {maximum}", path=path,
                          code="bad-number")
    return number


def _choice(value: Any, options: tuple[str, ...], *, path: str) -> str:
    if value not in options:
        raise TariffError(f"must be one of {', '.join(options)}, not {value!r}", path=path,
                          code="bad-choice")
    return str(value)


def _bands(raw: Any, *, path: str) -> tuple[Band, ...]:
    if not isinstance(raw, list) or not raw:
        raise TariffError("bands is a non-empty list", path=path, code="bad-bands")
    bands = []
    for i, item in enumerate(raw):
        where = f"{path}/{i}"
        if not isinstance(item, dict):
            raise TariffError("a band is {from_day, to_day?, per_day}", path=where,
                              code="bad-bands")
        unknown = set(item) - {"from_day", "to_day", "per_day"}
        if unknown:
            raise TariffError(f"unknown member {sorted(unknown)[0]!r}", path=where,
                              code="unknown-member")
        if "from_day" not in item or "per_day" not in item:
            raise TariffError("a band needs from_day and per_day", path=where, code="bad-bands")
        first = _int(item["from_day"], path=f"{where}/from_day", minimum=1, maximum=MAX_DAYS)
        last = None
        if item.get("to_day") is not None:
            last = _int(item["to_day"], path=f"{where}/to_day", minimum=first, maximum=MAX_DAYS)
        per_day = item["per_day"]
        if not isinstance(per_day, dict) or not per_day:
            raise TariffError("per_day is {\"20\": rate, \"40\": rate, ...}",
                              path=f"{where}/per_day", code="bad-bands")
        rates = []
        for name, value in per_day.items():
            if name not in CATEGORIES:
                raise TariffError(f"unknown category {name!r} (one of {', '.join(CATEGORIES)})",
                                  path=f"{where}/per_day/{name}", code="unknown-category")
            rates.append((name, cents(value, path=f"{where}/per_day/{name}")))
        bands.append(Band(first, last, tuple(sorted(rates))))
    names = {name for name, _ in bands[0].per_day}
    for i, band in enumerate(bands):
        where = f"{path}/{i}"
        if {name for name, _ in band.per_day} != names:
            raise TariffError("every band prices the same categories as the first",
                              path=f"{where}/per_day", code="bad-bands")
        if i and band.from_day != (bands[i - 1].to_day or 0) + 1:
            raise TariffError(f"band starts on day {band.from_day}, the day after the previous "
                              f"band's to_day was expected", path=f"{where}/from_day",
                              code="band-gap")
        if i < len(bands) - 1 and band.to_day is None:
            raise TariffError("only the last band may be open-ended (no to_day)",
                              path=f"{where}/to_day", code="band-gap")
    if bands[-1].to_day is not None:
        raise TariffError("the last band is open-ended (no to_day): days after it need a rate",
                          path=f"{path}/{len(bands) - 1}/to_day", code="band-gap")
    return tuple(bands)


def _override(raw: Any, *, path: str) -> dict[str, Any]:
    """The members an override sets, checked one by one (not yet against each other)."""
    if not isinstance(raw, dict):
        raise TariffError("an override is an object", path=path, code="bad-override")
    unknown = set(raw) - _OVERRIDE_KEYS
    if unknown:
        raise TariffError(f"unknown member {sorted(unknown)[0]!r} (an override may set "
                          f"{', '.join(sorted(_OVERRIDE_KEYS))})", path=path,
                          code="unknown-member")
    out: dict[str, Any] = {}
    if "free_days" in raw:
        out["free_days"] = _int(raw["free_days"], path=f"{path}/free_days", minimum=0,
                                maximum=365)
    for key in ("counting", "charge_days"):
        if key in raw:
            out[key] = _choice(raw[key], COUNTING, path=f"{path}/{key}")
    if "bands" in raw:
        out["bands"] = _bands(raw["bands"], path=f"{path}/bands")
    return out


def _schedule(base: Schedule | None, changes: dict[str, Any], *, path: str) -> Schedule:
    merged = {
        "free_days": base.free_days if base else None,
        "counting": base.counting if base else "calendar",
        "charge_days": base.charge_days if base else "calendar",
        "bands": base.bands if base else None,
        **changes,
    }
    if merged["free_days"] is None:
        raise TariffError("free_days is required", path=f"{path}/free_days", code="missing")
    if merged["bands"] is None:
        raise TariffError("bands is required", path=f"{path}/bands", code="missing")
    schedule = Schedule(merged["free_days"], merged["counting"], merged["charge_days"],
                        merged["bands"])
    if schedule.bands[0].from_day != schedule.free_days + 1:
        raise TariffError(f"the first band starts on day {schedule.bands[0].from_day}; with "
                          f"{schedule.free_days} free days it must start on day "
                          f"{schedule.free_days + 1}", path=f"{path}/bands/0/from_day",
                          code="band-gap")
    return schedule


def _calendar(raw: dict[str, Any]) -> tuple[Calendar, frozenset[date]]:
    holidays = raw.get("public_holidays", "HK")
    if holidays not in ("HK", "none"):
        raise TariffError("public_holidays is HK or none", path="/public_holidays",
                          code="bad-choice")
    calendar = hong_kong() if holidays == "HK" else Calendar()
    extra = raw.get("extra_holidays", [])
    if not isinstance(extra, list):
        raise TariffError("extra_holidays is a list of dates", path="/extra_holidays",
                          code="bad-holidays")
    days = set()
    for i, text in enumerate(extra):
        try:
            days.add(date.fromisoformat(text))
        except (TypeError, ValueError):
            raise TariffError(f"{text!r} is not a date (YYYY-MM-DD)",
                              path=f"/extra_holidays/{i}", code="bad-holidays") from None
    rest = raw.get("rest_days", ["sun"])
    if not isinstance(rest, list) or any(day not in WEEKDAYS for day in rest):
        raise TariffError(f"rest_days lists weekdays ({', '.join(WEEKDAYS)})",
                          path="/rest_days", code="bad-holidays")
    if len(set(rest)) == len(WEEKDAYS):
        raise TariffError("every weekday is a rest day: no working day left", path="/rest_days",
                          code="bad-holidays")
    extra = frozenset(days)
    return Calendar(calendar.holidays | extra, frozenset(WEEKDAYS.index(day) for day in rest),
                    calendar.utc_offset, calendar.covered_years, calendar.names), extra


def _keyed(raw: Any, *, path: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TariffError("an object of overrides by key", path=path, code="bad-override")
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if not key.strip():
            raise TariffError("an empty key", path=path, code="bad-override")
        if key.strip().upper() in out:
            raise TariffError(f"{key!r} is given twice (keys are case-insensitive)",
                              path=f"{path}/{key}", code="bad-override")
        out[key.strip().upper()] = _override(value, path=f"{path}/{key}")
    return out


def parse_tariff(raw: Any) -> Tariff:
    """A validated :class:`Tariff` from its JSON form; raises :class:`TariffError`."""
    if not isinstance(raw, dict):
        raise TariffError("a tariff is a JSON object", code="not-an-object")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise TariffError(f"unknown member {sorted(unknown)[0]!r}", path=f"/{sorted(unknown)[0]}",
                          code="unknown-member")
    if "currency" not in raw:
        raise TariffError("currency is required (\"HKD\")", path="/currency", code="missing")
    currency = _choice(raw["currency"], CURRENCIES, path="/currency")
    base = _schedule(None, _override({k: v for k, v in raw.items() if k in _OVERRIDE_KEYS},
                                     path=""), path="")
    terminal_changes = _keyed(raw.get("terminals"), path="/terminals")
    carrier_changes = _keyed(raw.get("carriers"), path="/carriers")
    terminals = {key: _schedule(base, changes, path=f"/terminals/{key}")
                 for key, changes in terminal_changes.items()}
    carriers = []
    for key, changes in carrier_changes.items():
        over = [("", _schedule(base, changes, path=f"/carriers/{key}"))]
        over += [(t, _schedule(schedule, changes, path=f"/carriers/{key}"))
                 for t, schedule in terminals.items()]
        carriers.append((key, tuple(over)))
    for key in ("name", "note", "label"):
        if key in raw and not isinstance(raw[key], str):
            raise TariffError(f"{key} is text", path=f"/{key}", code="bad-text")
    calendar, extra = _calendar(raw)
    return Tariff(currency=currency, base=base, terminals=terminals,
                  carriers={key: dict(over) for key, over in carriers}, calendar=calendar,
                  extra_holidays=extra,
                  name=str(raw.get("name", "")), label=str(raw.get("label", "")))


def load_tariff(text: str | bytes) -> Tariff:
    """Parse and validate a tariff document (numbers read as Decimal, never float)."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TariffError(f"not JSON: {exc}", code="not-json") from None
    return parse_tariff(raw)


# -- the meter -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Meter:
    """The storage meter of one yard stay as of a day."""

    available: date
    """Day 1."""
    last_free_day: date
    days_in_yard: int
    """Calendar days from the availability day to ``through`` (both counted)."""
    charged_days: int
    """Chargeable days after the last free day up to ``through``."""
    accrued_cents: int | None
    """Charges up to and including ``through`` (None: the tariff has no rate for this box)."""
    per_day_cents: int | None
    """The rate of the next chargeable day after ``through``."""
    calendar_incomplete: bool
    """A working-day count passed a year whose holidays are not known."""


@functools.lru_cache(maxsize=65_536)
def last_free_day(free_days: int, counting: str, available: date,
                  calendar: Calendar) -> tuple[date, bool]:
    """The LFD, and whether the count passed a year whose holidays are unknown."""
    if counting == "calendar":
        return available + timedelta(days=free_days - 1), False
    day, counted, incomplete = available, 0, False
    if free_days == 0:
        return available - timedelta(days=1), False
    for _ in range(MAX_DAYS):
        incomplete |= not calendar.covers(day)
        if calendar.is_working(day):
            counted += 1
            if counted == free_days:
                return day, incomplete
        day += timedelta(days=1)
    raise TariffError("no working day in ten years", code="no-working-days")


@functools.lru_cache(maxsize=65_536)
def _chargeable(after: date, through: date, charge_days: str,
                calendar: Calendar) -> tuple[int, bool]:
    """How many chargeable days lie in (``after``, ``through``] (cached)."""
    return _count_chargeable(after, through, charge_days, calendar)


def _count_chargeable(after: date, through: date, charge_days: str,
                      calendar: Calendar) -> tuple[int, bool]:
    """How many chargeable days lie in (``after``, ``through``], and whether the count passed
    a year whose holidays are unknown."""
    if through <= after:
        return 0, False
    if charge_days == "calendar":
        return (through - after).days, False
    count, incomplete, day = 0, False, after
    for _ in range(min((through - after).days, MAX_DAYS)):
        day += timedelta(days=1)
        incomplete |= not calendar.covers(day)
        count += calendar.is_working(day)
    return count, incomplete


def meter(schedule: Schedule, calendar: Calendar, available: date, through: date, *,
          size: str, reefer: bool) -> Meter:
    """The meter of a container available on ``available``, counted through ``through``."""
    return _meter(schedule, calendar, available, through, size, reefer)


@functools.lru_cache(maxsize=65_536)
def _meter(schedule: Schedule, calendar: Calendar, available: date, through: date, size: str,
           reefer: bool) -> Meter:
    lfd, incomplete = last_free_day(schedule.free_days, schedule.counting, available, calendar)
    charged, incomplete_after = _chargeable(lfd, through, schedule.charge_days, calendar)
    category = schedule.category(size, reefer)
    accrued = per_day = None
    if category is not None:
        first = schedule.free_days + 1
        accrued = schedule.charge(first, first + charged - 1, category) if charged else 0
        per_day = schedule.rate(first + charged, category)
    return Meter(available=available, last_free_day=lfd,
                 days_in_yard=days_between(available, through), charged_days=charged,
                 accrued_cents=accrued, per_day_cents=per_day,
                 calendar_incomplete=incomplete or incomplete_after)


def money(amount_cents: int | None) -> int | float | None:
    """Cents as a JSON number of currency units: whole units as an int, else two decimals.

    The float is only the JSON rendering of an exact two-decimal amount (its shortest
    representation is that amount); no arithmetic is done on it.
    """
    if amount_cents is None:
        return None
    if amount_cents % 100 == 0:
        return amount_cents // 100
    return float(Decimal(amount_cents) / 100)


def describe(tariff: Tariff) -> Mapping[str, Any]:
    """A short summary of a tariff (for the CLI's stderr)."""
    return {"currency": tariff.currency, "free_days": tariff.base.free_days,
            "counting": tariff.base.counting, "bands": len(tariff.base.bands),
            "terminals": sorted(tariff.terminals), "carriers": sorted(tariff.carriers),
            **({"label": tariff.label} if tariff.label else {})}


# -- the meter at read time ------------------------------------------------------------------------
#: The meter's figures that move with the days alone: never stored with an open storage episode,
#: worked out when it is read (:func:`meter_figures`).
DAILY_FIGURES: tuple[str, ...] = ("days_in_yard", "days_left", "charged_days", "accrued",
                                  "per_day", "accrued_cents", "per_day_cents",
                                  "calendar_incomplete")


def meter_basis(schedule: Schedule, calendar: Calendar, available: date, lfd: date,
                category: str | None, *, lfd_incomplete: bool = False) -> dict[str, Any]:
    """What the meter of one yard stay needs to be worked out for any later day, as JSON (kept
    with an open storage episode): day 1, the LFD, the charge-day rule, the box's rate per band
    and — under ``working`` charge days only — the calendar's rest days and the holidays after
    the LFD."""
    basis: dict[str, Any] = {
        "day1": available.isoformat(), "lfd": lfd.isoformat(),
        "free_days": schedule.free_days, "charge_days": schedule.charge_days,
        "utc_offset": calendar.utc_offset,
        "rates": None if category is None else [[b.from_day, b.to_day, b.rate(category)]
                                                for b in schedule.bands],
    }
    if lfd_incomplete:
        basis["lfd_incomplete"] = True
    if schedule.charge_days == "working":
        basis["rest_days"] = sorted(calendar.rest_weekdays)
        basis["holidays"] = sorted(d.isoformat() for d in calendar.holidays if d > lfd)
        basis["covered_years"] = (None if calendar.covered_years is None
                                  else sorted(calendar.covered_years))
    return basis


def meter_figures(basis: Mapping[str, Any], moment: int) -> dict[str, Any]:
    """The daily figures (:data:`DAILY_FIGURES`) of a stay from its :func:`meter_basis`, as of
    the local day of ``moment`` (not before day 1; not after ``basis["until"]`` when given): the
    one function the inbox, the pages, the webhook and mail bodies and ``portledger alerts
    evaluate`` work them out with."""
    try:
        day1 = date.fromisoformat(basis["day1"])
        lfd = date.fromisoformat(basis["lfd"])
        offset = int(basis["utc_offset"])
        free_days = int(basis["free_days"])
        charge_days = str(basis["charge_days"])
        rates = basis["rates"]
        until = basis.get("until")
        through = date.fromordinal(date(1970, 1, 1).toordinal() + (moment + offset) // 86_400)
        if until is not None:
            through = min(through, date.fromisoformat(until))
        through = max(through, day1)
        if charge_days == "working":
            calendar = Calendar(
                holidays=frozenset(date.fromisoformat(d) for d in basis["holidays"]),
                rest_weekdays=frozenset(int(d) for d in basis["rest_days"]), utc_offset=offset,
                covered_years=(None if basis["covered_years"] is None
                               else frozenset(int(y) for y in basis["covered_years"])))
        else:
            calendar = Calendar(utc_offset=offset)
        charged, incomplete = _count_chargeable(lfd, through, charge_days, calendar)
        accrued = per_day = None
        if rates is not None:
            schedule = Schedule(free_days, "calendar", charge_days, tuple(
                Band(int(f), None if t is None else int(t), () if c is None else (("x", int(c)),))
                for f, t, c in rates))
            first = free_days + 1
            accrued = schedule.charge(first, first + charged - 1, "x") if charged else 0
            per_day = schedule.rate(first + charged, "x")
    except (KeyError, TypeError, ValueError) as exc:
        raise TariffError(f"a stored meter basis is malformed: {exc}", code="bad-basis") from None
    figures: dict[str, Any] = {
        "days_in_yard": days_between(day1, through),
        "days_left": (lfd - through).days,
        "charged_days": charged,
        "accrued": money(accrued),
        "per_day": money(per_day),
        "accrued_cents": accrued,
        "per_day_cents": per_day,
    }
    if incomplete or basis.get("lfd_incomplete"):
        figures["calendar_incomplete"] = True
    return figures


@functools.lru_cache(maxsize=65_536)
def next_rate_change(schedule: Schedule, calendar: Calendar, lfd: date, through: date,
                     category: str | None) -> date | None:
    """The first day after ``through`` on which ``per_day`` (the rate of the next chargeable
    day) differs from ``through``'s — a band with another rate begins; None: never (cached:
    a clock pass asks it for many boxes with the same schedule and days)."""
    if category is None:
        return None
    charged, _ = _chargeable(lfd, through, schedule.charge_days, calendar)
    number = schedule.free_days + 1 + charged
    current = schedule.rate(number, category)
    start = next((b.from_day for b in schedule.bands
                  if b.from_day > number and b.rate(category) != current), None)
    if start is None:
        return None
    need = start - number  # chargeable days still to pass
    day = max(through, lfd)
    if schedule.charge_days == "calendar":
        return day + timedelta(days=need)
    for _ in range(MAX_DAYS):
        day += timedelta(days=1)
        if calendar.is_working(day):
            need -= 1
            if need == 0:
                return day
    return None
