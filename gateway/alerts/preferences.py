"""Per-user delivery preferences: which kinds, which channels, quiet hours, a daily digest (pure).

JSON form (``GET/PUT /v1/alerts/preferences``; every member optional, defaults shown)::

    {"kinds": ["vessel-delay", "eta-changed", "reefer-excursion", "not-picked-up",
               "free-time-ending", "customs-hold"],
     "channels": ["inbox"],
     "changes": ["opened", "resolved"],
     "timezone": "Asia/Hong_Kong",
     "quiet_hours": null,
     "digest": null,
     "email": null}

- ``kinds`` — the alert kinds the user is told of: the inbox's default list and unread count,
  and e-mail;
- ``channels`` — ``inbox`` and/or ``email`` (webhooks are the organisation's, registered
  apart); e-mail is off until a user turns it on;
- ``changes`` — which transitions are e-mailed: ``opened``, ``updated`` (a storage meter is
  updated every day: left out by default), ``resolved``;
- ``quiet_hours`` — ``{"from": "22:00", "to": "07:00"}`` in ``timezone``: a mail that falls
  due inside them is delayed to their end (the window may cross midnight);
- ``digest`` — ``{"at": "08:00"}``: mails are not sent one by one but collected and sent once a
  day at that local time, as one message;
- ``timezone`` — an IANA zone name; Hong Kong time by default;
- ``email`` — only for an organisation's shared mailbox (the preferences an API key sets,
  reader 0): the address its mails go to. A user's mails go to the user's account address.

:func:`mail_time` says when a mail created at a moment may go out under these preferences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.alerts.model import CHANGES, KINDS

#: Delivery channels a user chooses.
CHANNELS: tuple[str, ...] = ("inbox", "email")

#: Default zone of quiet hours and digests.
DEFAULT_TIMEZONE = "Asia/Hong_Kong"

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_KEYS = frozenset({"kinds", "channels", "changes", "timezone", "quiet_hours", "digest", "email"})


class PreferencesError(ValueError):
    """Preferences are malformed; ``path`` is a JSON pointer into them."""

    def __init__(self, message: str, *, path: str = "", code: str = "invalid-preferences") -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path
        self.code = code
        self.reason = message


@dataclass(frozen=True)
class Preferences:
    """One user's (or an organisation mailbox's) delivery preferences."""

    kinds: tuple[str, ...] = KINDS
    channels: tuple[str, ...] = ("inbox",)
    changes: tuple[str, ...] = ("opened", "resolved")
    timezone: str = DEFAULT_TIMEZONE
    quiet_hours: tuple[time, time] | None = None
    digest: time | None = None
    email: str | None = None

    def wants(self, channel: str, kind: str, change: str | None = None) -> bool:
        """Whether a transition (or, without ``change``, an alert) of ``kind`` goes to
        ``channel``."""
        if channel not in self.channels or kind not in self.kinds:
            return False
        return change is None or channel != "email" or change in self.changes

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds),
            "channels": list(self.channels),
            "changes": list(self.changes),
            "timezone": self.timezone,
            "quiet_hours": ({"from": _hhmm(self.quiet_hours[0]), "to": _hhmm(self.quiet_hours[1])}
                            if self.quiet_hours else None),
            "digest": {"at": _hhmm(self.digest)} if self.digest else None,
            "email": self.email,
        }


def _hhmm(moment: time) -> str:
    return moment.strftime("%H:%M")


def _clock(raw: Any, path: str) -> time:
    match = _CLOCK.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise PreferencesError("a local time HH:MM (00:00 to 23:59)", path=path, code="bad-time")
    return time(int(match[1]), int(match[2]))


def _choices(raw: Any, allowed: tuple[str, ...], path: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or any(not isinstance(x, str) or x not in allowed for x in raw):
        raise PreferencesError(f"a list of {', '.join(allowed)}", path=path, code="bad-choice")
    return tuple(x for x in allowed if x in raw)  # canonical order, no repeats


def parse_preferences(raw: Any, *, mailbox: bool = False) -> Preferences:
    """Validated :class:`Preferences` from their JSON form (members left out keep their
    defaults). ``mailbox``: an organisation's shared mailbox, which must name ``email`` to
    take e-mail; a user's ``email`` member is refused (mail goes to the account address)."""
    if raw is None:
        return Preferences()
    if not isinstance(raw, dict):
        raise PreferencesError("preferences are a JSON object", code="not-an-object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise PreferencesError(f"unknown member {unknown[0]!r}", path=f"/{unknown[0]}",
                               code="unknown-member")
    values: dict[str, Any] = {}
    if "kinds" in raw:
        values["kinds"] = _choices(raw["kinds"], KINDS, "/kinds")
    if "channels" in raw:
        values["channels"] = _choices(raw["channels"], CHANNELS, "/channels")
    if "changes" in raw:
        values["changes"] = _choices(raw["changes"], CHANGES, "/changes")
    if raw.get("timezone") is not None:
        zone = raw["timezone"]
        try:
            if not isinstance(zone, str) or len(zone) > 64:
                raise ValueError
            ZoneInfo(zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise PreferencesError("an IANA time zone name, e.g. Asia/Hong_Kong",
                                   path="/timezone", code="bad-timezone") from None
        values["timezone"] = zone
    quiet = raw.get("quiet_hours")
    if quiet is not None:
        if not isinstance(quiet, dict) or set(quiet) != {"from", "to"}:
            raise PreferencesError('{"from": "HH:MM", "to": "HH:MM"}', path="/quiet_hours",
                                   code="bad-quiet-hours")
        start, end = _clock(quiet["from"], "/quiet_hours/from"), _clock(quiet["to"],
                                                                        "/quiet_hours/to")
        if start == end:
            raise PreferencesError("from and to differ", path="/quiet_hours",
                                   code="bad-quiet-hours")
        values["quiet_hours"] = (start, end)
    digest = raw.get("digest")
    if digest is not None:
        if not isinstance(digest, dict) or set(digest) != {"at"}:
            raise PreferencesError('{"at": "HH:MM"}', path="/digest", code="bad-digest")
        values["digest"] = _clock(digest["at"], "/digest/at")
    email = raw.get("email")
    if email is not None:
        if not mailbox:
            raise PreferencesError("a user's mail goes to the account's address",
                                   path="/email", code="not-allowed")
        if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email):
            raise PreferencesError("an e-mail address", path="/email", code="bad-email")
        values["email"] = email
    result = replace(Preferences(), **values)
    if mailbox and "email" in result.channels and result.email is None:
        raise PreferencesError("the organisation's mailbox takes e-mail at the address in "
                               "email", path="/email", code="missing")
    return result


def _local(moment: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(moment, zone)


def _next_at(moment: float, at: time, zone: ZoneInfo) -> float:
    """The first local ``at`` at or after ``moment``."""
    here = _local(moment, zone)
    candidate = here.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate.timestamp() < moment:
        candidate = (here + timedelta(days=1)).replace(hour=at.hour, minute=at.minute,
                                                       second=0, microsecond=0)
    return candidate.timestamp()


def in_quiet_hours(moment: float, prefs: Preferences) -> bool:
    if prefs.quiet_hours is None:
        return False
    start, end = prefs.quiet_hours
    now = _local(moment, prefs.zone).time()
    if start < end:
        return start <= now < end
    return now >= start or now < end  # across midnight


def mail_time(created: float, prefs: Preferences) -> float:
    """When a mail created at ``created`` may be sent: at the next digest time with a digest,
    else at once — delayed to the end of the quiet hours if it falls inside them (a digest time
    inside quiet hours is delayed the same way)."""
    moment = created if prefs.digest is None else _next_at(created, prefs.digest, prefs.zone)
    if in_quiet_hours(moment, prefs):
        assert prefs.quiet_hours is not None
        moment = _next_at(moment, prefs.quiet_hours[1], prefs.zone)
    return moment
