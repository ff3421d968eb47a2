"""The alert rules: pure functions from a subject's facts, settings, tariff and now to episodes.

Each rule reads one :class:`~gateway.alerts.facts.Facts` and returns every episode it finds,
open and resolved; :func:`evaluate` runs them over many subjects, compares with the previous
states and says what changed (opened / updated / resolved), so the gateway's incremental engine
and ``portledger alerts evaluate`` share one code path. :func:`due` is the clock pass: which
subjects the passing of time alone may have changed (a last free day ending with no new
event). The definitions, defaults and their reasons are in ``docs/alerts.md``; in short:

- **vessel-delay / eta-changed** — per vessel and port of call, each source's latest ETA against
  the first ETA received from any source: the largest slip ≥ ``delay_hours`` (24) is a delay,
  else the largest move either way ≥ ``change_hours`` (6) an ETA change; the source that moved
  is named. ETAs moving back resolve the episode (a delay that shrinks to 6-24 h becomes an ETA
  change); the actual arrival resolves it and ends the call; so does the passing of every
  source's ETA by ``expire_hours`` (48) with no arrival seen.
- **reefer-excursion** — |measured − set point| > tolerance (1.5 °C for set points at or below
  −10 °C, else 1.0 °C), or outside the commodity's absolute band, for ``sustain_readings`` (3)
  consecutive readings or ``sustain_minutes`` (30) minutes; defrost readings are skipped; a gap
  longer than ``max_gap_minutes`` (60) breaks a run that has not yet become an episode; the
  first reading back in tolerance ends the episode, as does a day (``close_after_silence_minutes``)
  without readings.
- **free-time-ending / not-picked-up** — the storage meter of each yard stay from the tariff:
  ``warn_days`` (1) before the last free day, then once it has passed, until gate-out; holds
  are shown as the reason a pick-up cannot happen.
- **customs-hold** — CUSH / CUSI until CUSR; a refusal (CUSX) stays open.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from typing import Any

from gateway.alerts.calendar import Calendar
from gateway.alerts.facts import EtaFact, Facts, Hold, Observed, TempPoint, YardStay
from gateway.alerts.model import KINDS, Alert, Source, Transition, resolve
from gateway.alerts.tariff import (
    SIZES,
    Schedule,
    Tariff,
    last_free_day,
    meter,
    meter_basis,
    meter_figures,
    money,
    next_rate_change,
)
from gateway.events.model import Reference
from gateway.isotime import iso_time

#: :func:`iso_time` cached (the clock pass writes the same availability times every day).
_iso = functools.lru_cache(maxsize=1 << 17)(iso_time)


class SettingsError(ValueError):
    """Alert settings are malformed; ``path`` is a JSON pointer into them."""

    def __init__(self, message: str, *, path: str = "", code: str = "invalid-settings") -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path
        self.code = code


@dataclass(frozen=True)
class VesselSettings:
    change_hours: float = 6.0
    """A move of the ETA (either way) at least this large is an ``eta-changed``."""
    delay_hours: float = 24.0
    """A slip at least this large is a ``vessel-delay``."""
    use_ais: bool = True
    """Count AIS-derived ETAs as a source."""
    expire_hours: float = 48.0
    """An episode whose sources' ETAs are all this long past, with no arrival seen, resolves
    (``reason: eta-passed``): the call is over or nobody updates it."""


@dataclass(frozen=True)
class ReeferSettings:
    frozen_tolerance: float = 1.5
    """°C either side of a frozen set point."""
    chilled_tolerance: float = 1.0
    """°C either side of a chilled set point."""
    frozen_at_or_below: float = -10.0
    """A set point at or below this (°C) is frozen cargo."""
    sustain_readings: int = 3
    """Consecutive out-of-tolerance readings that make an excursion..."""
    sustain_minutes: int = 30
    """...or minutes from the first to the latest of them, whichever comes first."""
    max_gap_minutes: int = 60
    """A longer silence breaks a run not yet confirmed, and marks an open episode stale."""
    close_after_silence_minutes: int = 1440
    """An open episode with no reading for this long is resolved (``reason: no-readings``)."""
    commodity_bands: tuple[tuple[str, float, float], ...] = ()
    """(commodity, low °C, high °C): an absolute band instead of the set point's tolerance."""

    def band(self, commodity: str | None) -> tuple[float, float] | None:
        if commodity is None:
            return None
        return next(((low, high) for name, low, high in self.commodity_bands
                     if name == commodity), None)


@dataclass(frozen=True)
class StorageSettings:
    warn_days: int = 1
    """``free-time-ending`` opens this many days before the last free day (0: on the day)."""
    default_size: str = "40"
    """Size assumed when no ISO size-type code is known."""


@dataclass(frozen=True)
class Settings:
    """All rules' settings; :meth:`merged` applies an organisation's or subscriber's overrides."""

    kinds: frozenset[str] = frozenset(KINDS)
    """Which alert kinds are evaluated at all."""
    vessel: VesselSettings = VesselSettings()
    reefer: ReeferSettings = ReeferSettings()
    storage: StorageSettings = StorageSettings()

    def merged(self, overrides: Mapping[str, Any] | None) -> Settings:
        """These settings with a JSON object of overrides, e.g.
        ``{"kinds": ["vessel-delay"], "vessel": {"delay_hours": 12},
        "reefer": {"commodity_bands": {"vaccines": [2, 8]}}, "storage": {"warn_days": 2}}``."""
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise SettingsError("settings are a JSON object")
        unknown = set(overrides) - {"kinds", "vessel", "reefer", "storage"}
        if unknown:
            raise SettingsError(f"unknown member {sorted(unknown)[0]!r}",
                                path=f"/{sorted(unknown)[0]}", code="unknown-member")
        kinds = self.kinds
        if "kinds" in overrides:
            raw = overrides["kinds"]
            if not isinstance(raw, list) or any(k not in KINDS for k in raw):
                raise SettingsError(f"kinds lists alert kinds ({', '.join(KINDS)})",
                                    path="/kinds", code="bad-choice")
            kinds = frozenset(raw)
        return Settings(
            kinds=kinds,
            vessel=_section(self.vessel, overrides.get("vessel"), "/vessel"),
            reefer=_section(self.reefer, overrides.get("reefer"), "/reefer"),
            storage=_section(self.storage, overrides.get("storage"), "/storage"),
        )


def _section(current: Any, raw: Any, path: str) -> Any:
    if raw is None:
        return current
    if not isinstance(raw, Mapping):
        raise SettingsError("an object of settings", path=path)
    names = {f.name: f for f in fields(current)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}/{key}"
        if key not in names:
            raise SettingsError(f"unknown setting {key!r} (one of {', '.join(names)})",
                                path=where, code="unknown-member")
        default = getattr(current, key)
        if key == "commodity_bands":
            changes[key] = _bands(value, where)
        elif key == "default_size":
            if value not in SIZES:
                raise SettingsError(f"one of {', '.join(SIZES)}", path=where, code="bad-choice")
            changes[key] = value
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise SettingsError("true or false", path=where, code="bad-type")
            changes[key] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
                raise SettingsError("a whole number from 0 to 10000", path=where,
                                    code="bad-number")
            changes[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                -100.0 <= value <= 10_000.0
            ):
                raise SettingsError("a number", path=where, code="bad-number")
            changes[key] = float(value)
    merged = replace(current, **changes)
    if isinstance(merged, ReeferSettings) and merged.sustain_readings < 1:
        raise SettingsError("at least 1", path=f"{path}/sustain_readings", code="bad-number")
    if isinstance(merged, VesselSettings) and merged.change_hours > merged.delay_hours:
        raise SettingsError("change_hours is at most delay_hours", path=f"{path}/change_hours",
                            code="bad-number")
    return merged


def _bands(raw: Any, where: str) -> tuple[tuple[str, float, float], ...]:
    if not isinstance(raw, Mapping):
        raise SettingsError("{\"commodity\": [low, high], ...}", path=where)
    out = []
    for name, pair in raw.items():
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair)
              and pair[0] < pair[1])
        if not ok:
            raise SettingsError("a band is [low, high] in °C, low < high", path=f"{where}/{name}",
                                code="bad-band")
        out.append((str(name).strip().lower(), float(pair[0]), float(pair[1])))
    return tuple(sorted(out))


def resolve_settings(base: Settings, *layers: Mapping[str, Any] | None) -> Settings:
    """``base`` with each layer of overrides applied in turn (organisation, then subscriber)."""
    for layer in layers:
        base = base.merged(layer)
    return base


# -- vessel delay / ETA changed --------------------------------------------------------------
def _hours(seconds: int) -> float:
    return round(seconds / 3600.0, 1)


@dataclass
class _Episode:
    kind: str
    episode: str
    opened: int
    figures: dict[str, Any]
    sources: tuple[Source, ...]
    resolved: int | None = None
    next_check: int | None = None


def _alert(subject: Reference, e: _Episode, now: int) -> Alert:
    return Alert(kind=e.kind, subject=subject, episode=e.episode,
                 state="open" if e.resolved is None else "resolved", opened=e.opened,
                 updated=now, resolved=e.resolved, figures=e.figures, sources=e.sources,
                 next_check=e.next_check if e.resolved is None else None)


def vessel_alerts(facts: Facts, settings: VesselSettings, now: int) -> list[Alert]:
    """ETA slip episodes of a vessel, per port of call (see the module docstring)."""
    etas = [f for f in facts.etas if settings.use_ais or f.classifier != "AIS"]
    ports = sorted({f.port for f in etas})
    out: list[Alert] = []
    for port in ports:
        items: list[tuple[int, EtaFact | None, int | None]] = [
            (f.order, f, None) for f in etas if f.port == port]
        items += [(a.order, None, i) for i, a in enumerate(facts.arrivals) if a.port == port]
        items.sort(key=lambda item: (item[0], item[1] is None))
        baseline: EtaFact | None = None
        current: dict[str, EtaFact] = {}
        episode: _Episode | None = None
        for _, fact, arrival_index in items:
            if fact is None:
                assert arrival_index is not None
                arrival = facts.arrivals[arrival_index]
                if episode is not None and baseline is not None:
                    episode.resolved = arrival.time
                    episode.figures = {**episode.figures, "arrived": iso_time(arrival.time),
                                       "final_slip_hours": _hours(arrival.time - baseline.eta),
                                       "reason": "arrived"}
                    episode.sources = (*episode.sources, arrival.origin)
                    out.append(_alert(facts.subject, episode, now))
                baseline, current, episode = None, {}, None
                continue
            when = fact.received_at if fact.received_at is not None else now
            if baseline is None:
                baseline = fact
            current[fact.source] = fact
            slips = {source: f.eta - baseline.eta for source, f in current.items()}
            latest = {source: f.order for source, f in current.items()}
            worst = max(slips, key=lambda s: (slips[s], latest[s]))
            widest = max(slips, key=lambda s: (abs(slips[s]), latest[s]))
            level, mover = None, worst
            if slips[worst] >= settings.delay_hours * 3600:
                level = "vessel-delay"
            elif abs(slips[widest]) >= settings.change_hours * 3600:
                level, mover = "eta-changed", widest
            if episode is not None and episode.kind != level:
                episode.resolved = when
                episode.figures = {**episode.figures,
                                   "reason": "superseded" if level else "eta-restored"}
                out.append(_alert(facts.subject, episode, now))
                episode = None
            if level is None:
                continue
            moved = current[mover]
            figures = {
                "port": port or None,
                "first_eta": iso_time(baseline.eta),
                "first_source": baseline.source,
                "eta": iso_time(moved.eta),
                "source": mover,
                "slip_hours": _hours(slips[mover]),
                "etas": [{"source": s, "eta": iso_time(f.eta), "classifier": f.classifier,
                          "slip_hours": _hours(slips[s])}
                         for s, f in sorted(current.items())],
            }
            sources = tuple(dict.fromkeys(
                [*baseline.origin, *(o for f in sorted(current.values(), key=lambda f: f.order)
                                     for o in f.origin)]))
            if episode is None:
                episode = _Episode(level, f"{port or '-'}@{fact.order}", when, figures, sources)
            else:
                episode.figures, episode.sources = figures, sources
        if episode is not None:
            expire = max(f.eta for f in current.values()) + round(settings.expire_hours * 3600)
            if now >= expire:
                episode.resolved = expire
                episode.figures = {**episode.figures, "reason": "eta-passed"}
            else:
                episode.next_check = expire
            out.append(_alert(facts.subject, episode, now))
    return out


# -- reefer excursion ------------------------------------------------------------------------
def _deviation(point: TempPoint, setpoint: float | None, band: tuple[float, float] | None,
               settings: ReeferSettings) -> tuple[float, float | None] | None:
    """(signed deviation beyond the limit's reference, tolerance) or None if not judgeable.

    With a band the deviation is the distance outside it (0 inside); with a set point it is
    measured − set point, compared with the tolerance.
    """
    assert point.temperature is not None
    t = point.temperature
    if band is not None:
        low, high = band
        return (t - high if t > high else t - low if t < low else 0.0), None
    if setpoint is None:
        return None
    frozen = setpoint <= settings.frozen_at_or_below
    return t - setpoint, settings.frozen_tolerance if frozen else settings.chilled_tolerance


def reefer_alerts(facts: Facts, settings: ReeferSettings, now: int) -> list[Alert]:
    """Excursion episodes of a container's temperatures (see the module docstring)."""
    out: list[Alert] = []
    gap = settings.max_gap_minutes * 60
    silence = settings.close_after_silence_minutes * 60
    setpoint: float | None = None
    run: list[tuple[TempPoint, float]] = []  # out-of-tolerance readings not yet an episode
    points: list[tuple[TempPoint, float]] = []  # the open episode's readings
    limit: dict[str, Any] = {}
    defrosts: list[int] = []
    last_time: int | None = None

    def close(end: TempPoint | None, stop: int, resolved: int | None,
              reason: str | None) -> Alert:
        start = points[0][0].time
        peak = max(points, key=lambda p: abs(p[1]))
        body: dict[str, Any] = {
            **limit,
            "peak_deviation": round(peak[1], 2),
            "peak_temperature": round(peak[0].temperature or 0.0, 2),
            "peak_at": iso_time(peak[0].time),
            "start": iso_time(start),
            "end": iso_time(end.time) if end is not None else None,
            "duration_minutes": (stop - start) // 60,
            "readings": len(points),
            "defrost_readings_ignored": sum(start <= t <= stop for t in defrosts),
            "last_reading": iso_time(last_time if last_time is not None else start),
        }
        next_check = None
        if resolved is None and last_time is not None:
            if now - last_time > gap:
                body["stale"] = True
                next_check = last_time + silence
            else:
                next_check = last_time + gap + 1
        if reason is not None:
            body["reason"] = reason
        origins = [p.origin for p, _ in points] + ([end.origin] if end is not None else [])
        return Alert("reefer-excursion", facts.subject, str(start), "open" if resolved is None
                     else "resolved", start, now, resolved, body, _distinct(origins),
                     next_check)

    for point in facts.temperatures:
        if point.time > now:
            break  # as of now: later measurements have not happened yet
        if point.setpoint is not None:
            setpoint = point.setpoint
        if point.temperature is None:
            continue
        if points and last_time is not None and point.time - last_time >= silence:
            out.append(close(None, last_time, last_time + silence, "no-readings"))
            points = []
        if point.defrost:
            defrosts.append(point.time)
            last_time = point.time
            continue
        if last_time is not None and point.time - last_time > gap and not points:
            run = []
        last_time = point.time
        band = settings.band(point.commodity or facts.commodity)
        judged = _deviation(point, setpoint, band, settings)
        if judged is None:
            continue
        deviation, tolerance = judged
        outside = deviation != 0.0 if tolerance is None else abs(deviation) > tolerance
        if outside and points:
            points.append((point, deviation))
        elif outside:
            if not run:
                limit = ({"band": [band[0], band[1]], "commodity": point.commodity
                          or facts.commodity} if band is not None and tolerance is None else
                         {"setpoint": setpoint, "tolerance": tolerance})
            run.append((point, deviation))
            span = run[-1][0].time - run[0][0].time
            if len(run) >= settings.sustain_readings or span >= settings.sustain_minutes * 60:
                points, run = run, []
        else:
            run = []
            if points:
                out.append(close(point, point.time, point.time, None))
                points = []
    if points:
        assert last_time is not None
        if now - last_time >= silence:
            out.append(close(None, last_time, last_time + silence, "no-readings"))
        else:
            out.append(close(None, max(now, last_time), None, None))
    return out


# -- not picked up / storage meter -----------------------------------------------------------
def _distinct(sources: Iterable[Source | None]) -> tuple[Source, ...]:
    """The sources without Nones and repeats, in order (by identity first: the hot path)."""
    out: list[Source] = []
    for source in sources:
        if source is not None and not any(source is s or source == s for s in out):
            out.append(source)
    return tuple(out)


def _holds_at(holds: Iterable[Hold], at: int) -> list[Hold]:
    return [h for h in holds if h.active(at)]


def storage_alerts(facts: Facts, settings: StorageSettings, tariff: Tariff,
                   calendar: Calendar, now: int) -> tuple[list[Alert], int | None]:
    """Storage episodes of a container's yard stays, and when the clock next matters for it
    (the start of a warning, None if never)."""
    out: list[Alert] = []
    wake: int | None = None
    for stay in facts.stays:
        alerts, at = _stay_alerts(facts, stay, settings, tariff, calendar, now)
        out.extend(alerts)
        if at is not None:
            wake = at if wake is None else min(wake, at)
    return out, wake


@dataclass(frozen=True)
class _Fixed:
    """What a stay's storage episodes rest on that the clock does not change."""

    schedule: Schedule
    size: str
    reefer: bool
    day1: date
    lfd: date
    ended: int
    warn: int
    static: dict[str, Any]
    base: tuple[Source, ...]
    category: str | None
    gap: dict[str, Any]
    """``tariff_gap`` when the tariff has no rate for the box."""
    basis: dict[str, Any]
    """The meter's basis (:func:`tariff.meter_basis`) kept with an open episode."""


def _fixed(facts: Facts, stay: YardStay, available: Observed, settings: StorageSettings,
           tariff: Tariff, calendar: Calendar) -> _Fixed:
    """The stay's :class:`_Fixed`, worked out once for the same facts, settings, tariff and
    calendar (kept in :attr:`YardStay.memo`, with the inputs it was worked out from)."""
    kept = stay.memo.get("storage")
    if (kept is not None and kept[0] is tariff and kept[1] is calendar and kept[2] == settings
            and kept[3] == facts.carrier and kept[4] == facts.equipment):
        fixed: _Fixed = kept[5]
        return fixed
    at = available.event.event_time
    schedule, via = tariff.schedule(stay.terminal, facts.carrier)
    size = facts.equipment.size or settings.default_size
    day1 = calendar.local_date(at)
    lfd, lfd_incomplete = last_free_day(schedule.free_days, schedule.counting, day1, calendar)
    category = schedule.category(size, facts.equipment.reefer)
    static: dict[str, Any] = {
        "available": _iso(at),
        "last_free_day": lfd.isoformat(),
        "free_days": schedule.free_days,
        "counting": schedule.counting,
        "currency": tariff.currency,
        "size": size,
        "size_known": facts.equipment.size is not None,
        "reefer": facts.equipment.reefer,
        "terminal": stay.terminal or None,
        "carrier": facts.carrier,
        "tariff": via,
    }
    gap = {} if category is not None else {
        "tariff_gap": f"the tariff has no per_day rate for a {size}'" + (
            " reefer" if facts.equipment.reefer else "")}
    fixed = _Fixed(
        schedule, size, facts.equipment.reefer, day1, lfd,
        ended=calendar.day_start(lfd + timedelta(days=1)),  # not picked up from here
        warn=max(calendar.day_start(lfd - timedelta(days=settings.warn_days)), at),
        static=static,
        base=_distinct((stay.entry.source, available.source, facts.equipment.origin)),
        category=category, gap=gap,
        basis=meter_basis(schedule, calendar, day1, lfd, category,
                          lfd_incomplete=lfd_incomplete))
    stay.memo["storage"] = (tariff, calendar, settings, facts.carrier, facts.equipment, fixed)
    return fixed


def _hold_change(holds: Iterable[Hold], now: int) -> int | None:
    """The next moment after ``now`` at which a hold begins or ends (None: none)."""
    times = [t for h in holds for t in (h.since, h.until) if t is not None and t > now]
    return min(times) if times else None


def as_of(body: Mapping[str, Any], now: int) -> dict[str, Any]:
    """An alert's JSON form as a reader sees it at ``now``: an open storage episode keeps the
    basis of its meter (``basis``) instead of the figures that move with the days alone, and
    gets them here (:func:`tariff.meter_figures`: days in yard, days left, charged days,
    accrued and per day as of ``now``'s local day); every other alert as it is. The inbox, the
    pages, the webhook and mail bodies and ``portledger alerts evaluate`` all read through it."""
    basis = body.get("basis")
    if basis is None:
        return dict(body)
    daily = meter_figures(basis, now)
    out: dict[str, Any] = {}
    for key, value in body.items():  # (the day's figures where the stored rate stands)
        if key == "per_day":
            out.update(daily)
        elif key not in daily and key != "basis":
            out[key] = value
    out.update(daily)  # (kept in place; calendar_incomplete, if any, last)
    return out


def _stay_alerts(facts: Facts, stay: YardStay, settings: StorageSettings, tariff: Tariff,
                 calendar: Calendar, now: int) -> tuple[list[Alert], int | None]:
    """A stay's storage episodes.

    An open episode's figures do not move with the days alone (the lead's decision, recorded in
    ``docs/alerts.md``): it keeps the meter's basis and the per-day rate in force, and the days
    in yard and the money accrued are worked out when it is read (:func:`as_of`). Its
    ``next_check`` is the next moment its state changes meaningfully — the LFD ending, a band
    with another rate beginning, a hold beginning or ending — so the clock visits it only then.
    A resolved episode keeps its final figures."""
    if stay.available is None:
        return [], None
    fixed = _fixed(facts, stay, stay.available, settings, tariff, calendar)
    schedule, size, reefer, day1, lfd = (fixed.schedule, fixed.size, fixed.reefer, fixed.day1,
                                         fixed.lfd)
    ended, warn, static, base = fixed.ended, fixed.warn, fixed.static, fixed.base
    exit_time = stay.exit.event.event_time if stay.exit is not None else None
    later_exit = None
    if exit_time is not None and exit_time > now:
        later_exit, exit_time = exit_time, None  # a gate-out dated later has not happened yet
    if now < warn and exit_time is None:
        return [], warn
    if exit_time is not None and exit_time <= warn:
        return [], None

    def holding(moment: int) -> tuple[dict[str, Any], tuple[Source, ...]]:
        held = _holds_at(facts.holds, moment) if facts.holds else []
        return ({"holds": [h.to_json() for h in held], "pick_up_blocked": bool(held)},
                _distinct((*base, *(h.origin for h in held))) if held else base)

    def final(moment: int) -> tuple[dict[str, Any], tuple[Source, ...]]:
        """The figures of an episode that ended at ``moment`` (kept as they are)."""
        today = calendar.local_date(moment)
        m = meter(schedule, calendar, day1, today, size=size, reefer=reefer)
        held, origins = holding(moment)
        body: dict[str, Any] = {
            **static,
            "days_in_yard": m.days_in_yard,
            "days_left": (lfd - today).days,
            "charged_days": m.charged_days,
            "accrued": money(m.accrued_cents),
            "per_day": money(m.per_day_cents),
            "accrued_cents": m.accrued_cents,
            "per_day_cents": m.per_day_cents,
            **held,
            **fixed.gap,
        }
        if m.calendar_incomplete:
            body["calendar_incomplete"] = True
        return body, origins

    def running(until: date | None) -> tuple[dict[str, Any], tuple[Source, ...], int | None]:
        """The figures of an open episode (no daily ones: :func:`as_of` adds them), and the
        next moment the rate in force or the holds change."""
        today = min(calendar.local_date(now), until) if until is not None else (
            calendar.local_date(now))
        m = meter(schedule, calendar, day1, today, size=size, reefer=reefer)
        held, origins = holding(now)
        body: dict[str, Any] = {
            **static, "per_day": money(m.per_day_cents), "per_day_cents": m.per_day_cents,
            **held, **fixed.gap,
            "basis": fixed.basis if until is None else {**fixed.basis,
                                                        "until": until.isoformat()}}
        change = next_rate_change(schedule, calendar, lfd, today, fixed.category)
        times = [t for t in (None if change is None else calendar.day_start(change),
                             _hold_change(facts.holds, now) if facts.holds else None,
                             later_exit)  # a gate-out dated later ends it then
                 if t is not None]
        return body, origins, min(times) if times else None

    alerts: list[Alert] = []
    episode = str(stay.entered)
    subject = facts.subject
    # free time ending: from the warning until the LFD ends or the box leaves
    warn_end = min(ended, exit_time) if exit_time is not None else ended
    if warn_end > warn:
        if warn_end <= now:  # an ended warning says the same every day: worked out once
            kept = stay.memo.get("warned")
            if kept is None or kept[0] is not fixed or kept[1] is not facts.holds or (
                    kept[2] != (warn_end, exit_time)):
                body, origins = final(warn_end - 1)
                gated = exit_time == warn_end and stay.exit is not None
                if gated and stay.exit is not None:
                    origins = (*origins, stay.exit.source)
                body["reason"] = "gated-out" if gated else "free-time-ended"
                kept = stay.memo["warned"] = (fixed, facts.holds, (warn_end, exit_time), body,
                                              origins)
            alerts.append(Alert("free-time-ending", subject, episode, "resolved", warn, now,
                                warn_end, dict(kept[3]), kept[4]))
        else:
            body, origins, change = running(lfd)
            alerts.append(Alert("free-time-ending", subject, episode, "open", warn, now, None,
                                body, origins, ended if change is None else min(ended, change)))
    # not picked up: from the day after the LFD until gate-out
    wake = None
    if now >= ended and (exit_time is None or exit_time > ended):
        if exit_time is not None and stay.exit is not None:
            body, origins = final(exit_time)
            body["gated_out"] = iso_time(exit_time)
            body["reason"] = "gated-out"
            alerts.append(Alert("not-picked-up", subject, episode, "resolved", ended, now,
                                exit_time, body, (*origins, stay.exit.source)))
        else:
            body, origins, change = running(None)
            alerts.append(Alert("not-picked-up", subject, episode, "open", ended, now, None,
                                body, origins, change))
    elif exit_time is None:
        wake = ended
    return alerts, wake


# -- customs hold ----------------------------------------------------------------------------
_CUSTOMS_STATUS = {"CUSH": "hold", "CUSI": "inspection", "CUSX": "refused"}


def customs_alerts(facts: Facts, now: int) -> list[Alert]:
    """Customs hold episodes of a subject: CUSH/CUSI open, CUSR resolves, CUSX stays open."""
    out: list[Alert] = []
    episode: _Episode | None = None
    for o in facts.customs:
        e = o.event
        if e.event_time > now:
            break  # as of now
        if e.code in _CUSTOMS_STATUS:
            status = _CUSTOMS_STATUS[e.code]
            # A declaration's results are published under its keyed alias (docs/declarations.md):
            # the number its readers know is inside the sealed details; show that one.
            number = e.details.get("declarationNumber")
            number = number if isinstance(number, str) and number else None
            figures: dict[str, Any] = {
                "status": status,
                "since": iso_time(episode.opened if episode else e.event_time),
                "by": o.publisher or None,
                "location": e.location or None,
                "related": [{"kind": r.kind, "value": number} if number and r.kind == "declaration"
                            else r.to_json() for r in e.related],
            }
            if number:
                figures["declaration"] = number
            reason = e.details.get("reason") or e.details.get("remark")
            if isinstance(reason, str):
                figures["remark"] = reason[:200]
            if episode is None:
                episode = _Episode("customs-hold", str(e.event_time), e.event_time, figures,
                                   (o.source,))
            else:
                history = episode.figures.get("history", [episode.figures["status"]])
                episode.figures = {**figures, "history": [*history, status]}
                episode.sources = (*episode.sources, o.source)
        elif e.code == "CUSR" and episode is not None:
            episode.resolved = e.event_time
            episode.figures = {**episode.figures, "status": "released",
                               "released": iso_time(e.event_time)}
            episode.sources = (*episode.sources, o.source)
            out.append(_alert(facts.subject, episode, now))
            episode = None
    if episode is not None:
        out.append(_alert(facts.subject, episode, now))
    return out


# -- evaluation ------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """What :func:`evaluate` found."""

    alerts: list[Alert] = field(default_factory=list)
    """Every episode of the evaluated subjects, open and resolved, as of ``now``."""
    transitions: list[Transition] = field(default_factory=list)
    """What changed against ``previous``."""
    wake: dict[Reference, int] = field(default_factory=dict)
    """When the clock alone next matters for a subject (for :func:`due`)."""


def subject_alerts(facts: Facts, settings: Settings, tariff: Tariff | None,
                   calendar: Calendar | None, now: int) -> tuple[list[Alert], int | None]:
    """Every rule over one subject's facts: its episodes and its next clock time.

    ``calendar`` is the one the tariff's days are counted in (:meth:`Tariff.counted_in`)."""
    kinds = settings.kinds
    found: list[Alert] = []
    wake: int | None = None
    if facts.subject.kind == "vessel" and kinds & {"vessel-delay", "eta-changed"}:
        found += vessel_alerts(facts, settings.vessel, now)
    if facts.subject.kind == "container":
        if "reefer-excursion" in kinds and facts.temperatures:
            found += reefer_alerts(facts, settings.reefer, now)
        if tariff is not None and facts.stays and kinds & {"not-picked-up", "free-time-ending"}:
            stays, wake = storage_alerts(facts, settings.storage, tariff,
                                         calendar or tariff.calendar, now)
            found += stays
    if "customs-hold" in kinds and facts.customs:
        found += customs_alerts(facts, now)
    found = [a for a in found if a.kind in kinds]
    for alert in found:
        if alert.state == "open" and alert.next_check is not None:
            wake = alert.next_check if wake is None else min(wake, alert.next_check)
    return found, wake


def evaluate(facts_by_subject: Mapping[Reference, Facts], settings: Settings,
             tariffs: Tariff | None, calendar: Calendar | None, now: int,
             previous: Mapping[str, Alert] | None = None) -> Evaluation:
    """Every episode of the given subjects as of ``now``, and the transitions from ``previous``.

    ``previous`` holds the states last delivered, by key (only those of the subjects evaluated
    are looked at). A known episode keeps its ``opened``; it is ``updated`` when its state,
    figures or sources changed, ``resolved`` when it cleared; an open previous episode the facts
    no longer give (its events were retracted) is resolved with ``reason: withdrawn``. An
    episode first seen already resolved is reported as ``resolved`` with no previous.
    ``tariffs`` may be None (no storage alerts); ``calendar``, when given, replaces the public
    holidays the tariff names.
    """
    previous = previous or {}
    result = Evaluation()
    subjects = set(facts_by_subject)
    seen: set[str] = set()
    counting = tariffs.counted_in(calendar) if tariffs is not None else None
    for subject in sorted(subjects, key=lambda r: (r.kind, r.value)):
        found, wake = subject_alerts(facts_by_subject[subject], settings, tariffs, counting, now)
        if wake is not None:
            result.wake[subject] = wake
        for alert in found:
            key = alert.key
            seen.add(key)
            before = previous.get(key)
            if before is None:
                result.alerts.append(alert)
                result.transitions.append(
                    Transition("opened" if alert.state == "open" else "resolved", alert))
                continue
            if alert.same_content(before):
                result.alerts.append(before if before.next_check == alert.next_check else
                                     _restamp(alert, before.opened, before.updated))
                continue
            kept = alert if alert.opened == before.opened else _restamp(alert, before.opened,
                                                                         alert.updated)
            result.alerts.append(kept)
            change = "resolved" if before.is_open and not kept.is_open else (
                "opened" if kept.is_open and not before.is_open else "updated")
            result.transitions.append(Transition(change, kept, before))
    for key in sorted(key for key, before in previous.items()  # (cheapest test first)
                      if key not in seen and before.is_open and before.subject in subjects):
        before = previous[key]
        gone = resolve(before, now, reason="withdrawn")
        result.alerts.append(gone)
        result.transitions.append(Transition("resolved", gone, before))
    return result


def _restamp(alert: Alert, opened: int, updated: int) -> Alert:
    """``alert`` with other times (built directly: ``dataclasses.replace`` is slow)."""
    return Alert(alert.kind, alert.subject, alert.episode, alert.state, opened, updated,
                 alert.resolved, alert.figures, alert.sources, alert.next_check)


def due(open_states: Iterable[Alert], now: int,
        wake: Mapping[Reference, int] | None = None) -> list[Reference]:
    """The clock pass: subjects whose open alerts or pending conditions the passing of time
    alone may have changed by ``now`` (re-evaluate them with :func:`evaluate`)."""
    found: set[Reference] = set()
    for alert in open_states:
        if alert.state == "open" and alert.next_check is not None and alert.next_check <= now:
            found.add(alert.subject)
    if wake:
        found.update(subject for subject, at in wake.items() if at <= now)
    return sorted(found, key=lambda r: (r.kind, r.value))

