"""An alert is one *episode* of a condition on a subject: opened, updated, resolved (pure).

Alerts are not notifications: a condition that holds (a vessel 30 h late, a reefer 4 °C warm, a
container past its last free day) is one episode from the moment it starts until it clears,
updated as its figures evolve, never raised twice. Each episode has a stable key,
``kind:subject-kind:subject:episode``, where ``episode`` is derived from the data that started it
(the availability of a yard stay, the first warm reading, the hold's time, the ETA that moved),
never from the clock, so a gateway that restarts and evaluates again finds the same keys and
sends nothing twice.

Each alert names the events and readings it rests on (:attr:`Alert.sources`, with their
publishers): a delivery layer shows an alert only to a recipient who may read every one of them
(:func:`readable_by`) — rules evaluate over what a reader can see, and this is the check that
nothing else slipped in.

JSON form (the CLI's lines, the inbox's items): the figures sit beside the fixed members::

    {"kind": "not-picked-up", "subject": {"kind": "container", "value": "CSQU3054383"},
     "state": "open", "episode": "not-picked-up:container:CSQU3054383:1795651200",
     "opened": "2026-11-30T16:00:00Z", "updated": "2026-12-03T02:00:00Z", "resolved": null,
     "last_free_day": "2026-11-30", "days_in_yard": 8, "accrued": 300, "per_day": 100, ...,
     "sources": [{"kind": "event", "ref": "5", "publisher": "Kwai Tsing Terminal"}, ...]}
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.events.model import Reference
from gateway.isotime import iso_time

#: Kinds of alert.
KINDS: tuple[str, ...] = (
    "vessel-delay",  # an ETA slipped >= 24 h against the first ETA seen
    "eta-changed",  # an ETA moved >= 6 h (either way) against the first ETA seen
    "reefer-excursion",  # |measured - set point| beyond tolerance, sustained
    "not-picked-up",  # past the last free day, storage accruing
    "free-time-ending",  # the last free day is near
    "customs-hold",  # customs hold or inspection, until released
)

_KINDS = frozenset(KINDS)

#: Episode states.
STATES: tuple[str, ...] = ("open", "resolved")

#: What a transition says happened to an episode.
CHANGES: tuple[str, ...] = ("opened", "updated", "resolved")

#: Members of the JSON form that are not figures.
RESERVED = frozenset({"kind", "subject", "state", "episode", "opened", "updated", "resolved",
                      "sources"})


@dataclass(frozen=True)
class Source:
    """An event or reading an alert rests on, and who published it."""

    kind: str
    """``event`` or ``reading``."""
    ref: str
    """Its id: a chain event id, a reading digest (hex), or a line number in a file."""
    publisher: str = ""
    """The publishing organisation (name or id as text; empty: not known)."""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "ref": self.ref, "publisher": self.publisher}


@dataclass(frozen=True)
class Alert:
    """The state of one alert episode."""

    kind: str
    """One of :data:`KINDS`."""
    subject: Reference
    """What it is about: a vessel, container, declaration, B/L."""
    episode: str
    """What started it, stable across restarts (a Unix time, or ``PORT@order`` for ETAs)."""
    state: str
    """``open`` or ``resolved``."""
    opened: int
    """When the condition began (Unix seconds)."""
    updated: int
    """When its state or figures last changed, as the evaluation saw it."""
    resolved: int | None = None
    """When the condition cleared (None while open)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """What the recipient needs: hours of slip, peak deviation, days, HK$... (JSON values)."""
    sources: tuple[Source, ...] = ()
    """The events and readings it rests on."""
    next_check: int | None = None
    """When the clock alone may change it (an LFD ending, a new day's charge); None: never."""
    key: str = field(init=False, repr=False, compare=False)
    """The episode key: ``kind:subject-kind:subject-value:episode`` (made with the alert: the
    engine looks episodes up by it many times an evaluation)."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        if self.state not in STATES:
            raise ValueError(f"unknown alert state {self.state!r}")
        if not RESERVED.isdisjoint(self.figures):
            raise ValueError(f"figures may not be named {sorted(RESERVED & self.figures.keys())}")
        object.__setattr__(self, "key", episode_key(self.kind, self.subject, self.episode))

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def same_content(self, other: Alert) -> bool:
        """Whether ``other`` says the same (state, figures, sources, resolution)."""
        return (self.state == other.state and self.figures == other.figures
                and self.sources == other.sources and self.resolved == other.resolved)

    def head_json(self) -> dict[str, Any]:
        """The fixed members of the JSON form."""
        return {
            "kind": self.kind,
            "subject": self.subject.to_json(),
            "state": self.state,
            "episode": self.key,
            "opened": _iso(self.opened),
            "updated": _iso(self.updated),
            "resolved": _iso(self.resolved) if self.resolved is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON form: fixed members, then the figures, then the sources."""
        body = self.head_json()
        body.update(self.figures)
        body["sources"] = [s.to_json() for s in self.sources]
        return body


@dataclass(frozen=True)
class Transition:
    """What an evaluation changed: an episode ``opened``, ``updated`` or ``resolved``."""

    change: str
    alert: Alert
    previous: Alert | None = None

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change, **self.alert.to_json()}


#: :func:`iso_time` of the few distinct moments a pass writes (every episode a clock pass opens
#: or updates carries the same ``updated``; many share ``opened``): formatted once each.
_iso = functools.lru_cache(maxsize=4096)(iso_time)


def episode_key(kind: str, subject: Reference, episode: str) -> str:
    return f"{kind}:{subject.kind}:{subject.value}:{episode}"


def readable_by(alert: Alert, can_read: Callable[[Source], bool]) -> bool:
    """Whether a recipient who can read exactly what ``can_read`` accepts may see ``alert``."""
    return all(can_read(source) for source in alert.sources)


def resolve(alert: Alert, at: int, **figures: Any) -> Alert:
    """``alert`` resolved at ``at``, with extra figures (e.g. ``reason``)."""
    return replace(alert, state="resolved", resolved=at, updated=at, next_check=None,
                   figures={**alert.figures, **figures})


def by_key(alerts: Iterable[Alert]) -> dict[str, Alert]:
    return {a.key: a for a in alerts}
