"""Plain-language timelines (pure): each canonical event of a shipment view as a sentence in the
reader's language, with what kind of time it is, where, who said so and how long ago.

A timeline entry of the tracking view (:meth:`gateway.tracking.visibility.VisibleEvent.to_json`)
becomes a :class:`Line`:

- the **sentence** comes from the catalogue (``timeline.act.<TYPE>`` for what happened,
  ``timeline.due.<TYPE>`` for what is planned or estimated — every type of
  :data:`contracts.cargo.EVENT_TYPES` has both, in every language), filled with *fragments*
  (``timeline.frag.*``: " at {place}", " from {vessel}", " by {party}", ", truck {truck}", …)
  that are empty when the event does not say, so a language orders them as its grammar wants
  and an unknown part leaves no dangling preposition: "Discharged from PACIFIC HARMONY at Kwai
  Tsing Container Terminal (HKHKG)", "Customs released", "Picked up by Swift Haulage, truck
  XX1234", "Arrived at Hong Kong";
- the **place**: the facility (the event's terminal or facility; a terminal event's publisher
  is the terminal) with its UN/LOCODE, else the port's name from the catalogue
  (``timeline.place.<LOCODE>``), else the code;
- the **time** in the place's own zone (:func:`zone_of`; Hong Kong when the place is unknown),
  written into a ``<time datetime>`` the pages' script adds the viewer's zone beside;
- **planned / estimated / actual** (``timeline.cls.*``), the **source** (the publisher) and
  the **age** of the record (now minus the block time it was recorded in);
- a **retracted** event stays, struck through (``<del>``) with the reason, and the correction
  says that it corrects.

:func:`eta_rows` lays every source's ETA side by side (carrier, terminal, AIS-derived), each
with its own age. Nothing here reads a store: the view was already cut to what the reader may
see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from html import escape as e
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.cargo import CLASSIFIERS, EVENT_TYPES
from gateway.ui.i18n import HKT, Translator, iso

#: Time zones of places by UN/LOCODE country (a country with several zones by whole code).
ZONES: dict[str, str] = {
    "HK": "Asia/Hong_Kong", "MO": "Asia/Macau", "CN": "Asia/Shanghai", "TW": "Asia/Taipei",
    "KR": "Asia/Seoul", "JP": "Asia/Tokyo", "SG": "Asia/Singapore", "MY": "Asia/Kuala_Lumpur",
    "VN": "Asia/Ho_Chi_Minh", "TH": "Asia/Bangkok", "PH": "Asia/Manila", "ID": "Asia/Jakarta",
    "IN": "Asia/Kolkata", "AE": "Asia/Dubai", "NL": "Europe/Amsterdam", "BE": "Europe/Brussels",
    "DE": "Europe/Berlin", "FR": "Europe/Paris", "GB": "Europe/London", "IT": "Europe/Rome",
    "ES": "Europe/Madrid", "AU": "Australia/Sydney",
    "USLAX": "America/Los_Angeles", "USLGB": "America/Los_Angeles", "USOAK": "America/Los_Angeles",
    "USSEA": "America/Los_Angeles", "USNYC": "America/New_York", "USSAV": "America/New_York",
}

#: The fragments a sentence may take (``timeline.frag.<name>``; empty when the event lacks it).
FRAGMENTS = ("at", "to", "leave", "from", "onto", "on", "by", "truck", "flight", "reason",
             "temp")

#: Planned / estimated events that several sources give for one fact (a vessel's arrival or
#: departure at a port): the timeline shows them as one line with the sources side by side.
FACTS = ("TRANSPORT.ARRI", "TRANSPORT.DEPA")

#: Event families whose events name who did them (the publisher when the details do not).
_ACTOR_FAMILIES = ("LAND", "WAREHOUSE")
_ACTOR_TYPES = ("EQUIPMENT.PICK", "EQUIPMENT.DROP")


@dataclass(frozen=True)
class Line:
    """One timeline entry in words."""

    event_id: int
    sentence: str
    """What happened (plain text, in the reader's language)."""
    classifier: str
    """PLN, EST or ACT."""
    time: str
    """ISO 8601 UTC of the event."""
    local: str
    """The event's time in the place's zone, formatted."""
    source: str
    """Who said so (the publisher's directory name)."""
    age_seconds: int | None
    """How long ago it was recorded."""
    retracted: bool = False
    correction: bool = False
    subject: str = ""
    """What it happened to, when the view shows several things (plain text)."""
    fact: str = ""
    """What it estimates, when several sources may say it (:data:`FACTS`): lines of one fact
    are shown together, each source beside the others."""


def sentence_key(event_type: str, classifier: str) -> str:
    """The catalogue key of an event's sentence."""
    return ("timeline.act." if classifier == "ACT" else "timeline.due.") + event_type


@cache
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return HKT


def zone_of(locode: str | None) -> tzinfo:
    """The time zone of a place (Hong Kong when unknown)."""
    code = (locode or "").upper()
    name = ZONES.get(code) or ZONES.get(code[:2])
    return _zone(name) if name else HKT


def place_time(t: Translator, moment: Any, locode: str | None) -> str:
    """``moment`` in the zone of ``locode``, e.g. ``8 Nov 2026, 10:00 HKT``."""
    stamp = iso(moment)
    if not stamp:
        return t("common.unknown")
    utc = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    local = utc.astimezone(zone_of(locode))
    offset = local.utcoffset() or timedelta(0)
    name = local.tzname() or ""
    if name.startswith(("+", "-")):  # a zone without an abbreviation: UTC+7
        hours = offset.total_seconds() / 3600
        name = f"UTC{hours:+g}"
    return t.when(stamp, timezone(offset, name))


def time_html(t: Translator, moment: Any, locode: str | None = None) -> str:
    """A ``<time>`` in the place's zone (the script adds the viewer's when it differs)."""
    stamp = iso(moment)
    if not stamp:
        return e(t("common.unknown"))
    return f'<time datetime="{stamp}">{e(place_time(t, stamp, locode))}</time>'


def place_name(t: Translator, locode: str | None, facility: str | None = None) -> str:
    """A place in words: ``Kwai Tsing Container Terminal (HKHKG)``, ``Hong Kong`` or the code."""
    code = (locode or "").upper()
    if facility:
        return t("timeline.place_facility", facility=facility, locode=code) if code else facility
    if not code:
        return ""
    key = "timeline.place." + code
    return t(key) if t.has(key) else code


def _text(value: Any, limit: int = 80) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _facility(entry: dict[str, Any]) -> str:
    details = entry.get("details") or {}
    for key in ("terminal", "facility", "facilityName"):
        found = _text(details.get(key))
        if found:
            return found
    call = details.get("transportCall")
    if isinstance(call, dict):
        location = call.get("location")
        if isinstance(location, dict):
            found = _text(location.get("locationName") or location.get("facilityName"))
            if found:
                return found
    if str(entry.get("type", "")).startswith("TERMINAL."):
        return _text(entry.get("publisherName"))
    return ""


def _vessel(entry: dict[str, Any], names: dict[str, str]) -> str:
    details = entry.get("details") or {}
    vessel = details.get("vessel")
    imo = ""
    if isinstance(vessel, dict):
        name = _text(vessel.get("name"))
        if name:
            return name
        imo = str(vessel.get("imo") or "")
    for ref in entry.get("related") or []:
        if isinstance(ref, dict) and ref.get("kind") == "vessel":
            imo = imo or str(ref.get("value") or "")
    return names.get(imo, "") if imo else ""


def _truck(entry: dict[str, Any]) -> str:
    details = entry.get("details") or {}
    for key in ("truck", "vehicle", "registrationNumber", "licensePlate"):
        found = _text(details.get(key), 20)
        if found:
            return found
    subject = entry.get("subject") or {}
    if subject.get("kind") == "truck":
        return _text(subject.get("value"), 20)
    for ref in entry.get("related") or []:
        if isinstance(ref, dict) and ref.get("kind") == "truck":
            return _text(ref.get("value"), 20)
    return ""


def _party(entry: dict[str, Any]) -> str:
    details = entry.get("details") or {}
    for key in ("haulier", "party", "by"):
        found = details.get(key)
        if isinstance(found, dict):
            found = found.get("name") or found.get("carrier")
        text = _text(found)
        if text:
            return text
    kind = str(entry.get("type", ""))
    if kind.split(".")[0] in _ACTOR_FAMILIES or kind in _ACTOR_TYPES:
        return _text(entry.get("publisherName"))
    return ""


def _temperature(t: Translator, entry: dict[str, Any]) -> str:
    details = entry.get("details") or {}
    value = details.get("temperature")
    if isinstance(value, dict):
        value = value.get("value")
    setpoint = details.get("setpoint")
    if not isinstance(value, int | float) and isinstance(setpoint, int | float):
        return t("fmt.celsius", value=f"{setpoint:g}")
    if not isinstance(value, int | float):
        return ""
    text = t("fmt.celsius", value=f"{value:g}")
    if isinstance(setpoint, int | float):
        text = t("timeline.setpoint", value=text,
                 setpoint=t("fmt.celsius", value=f"{setpoint:g}"))
    return text


def _reason(entry: dict[str, Any]) -> str:
    details = entry.get("details") or {}
    return _text(details.get("reason") or details.get("remark") or details.get("discrepancy"))


def subject_text(t: Translator, kind: str, value: str) -> str:
    """``Container CSQU3054383``, ``Bill of lading PCOL1234567``, …"""
    for key in ("subject." + kind, "timeline.subject." + kind):
        if t.has(key):
            return t(key, value=value)
    return t("subject.other", kind=kind, value=value)


def sentence(t: Translator, entry: dict[str, Any], vessels: dict[str, str] | None = None) -> str:
    """A timeline entry as a sentence in the reader's language (plain text)."""
    event_type = str(entry.get("type", ""))
    classifier = str(entry.get("classifier", "ACT"))
    key = sentence_key(event_type, classifier)
    if not t.has(key):  # a type this catalogue does not know yet: its code, never nothing
        return event_type
    subject = entry.get("subject") or {}
    location = str(entry.get("location") or "")
    place = place_name(t, location, _facility(entry))
    details = entry.get("details") or {}
    vessel = "" if subject.get("kind") == "vessel" else _vessel(entry, vessels or {})
    values = {
        "place": place, "vessel": vessel, "party": _party(entry), "truck": _truck(entry),
        "flight": _text(details.get("flight"), 12), "reason": _reason(entry),
        "value": _temperature(t, entry),
    }
    needs = {"at": "place", "to": "place", "leave": "place", "from": "vessel", "onto": "vessel",
             "on": "vessel", "by": "party", "truck": "truck", "flight": "flight",
             "reason": "reason", "temp": "value"}
    fragments = {name: (t("timeline.frag." + name, **values) if values[needs[name]] else "")
                 for name in FRAGMENTS}
    doc = subject_text(t, str(subject.get("kind", "shipment")), str(subject.get("value", "")))
    return t(key, doc=doc, **fragments).strip()


def _age(recorded: Any, now: int) -> int | None:
    stamp = iso(recorded)
    if not stamp:
        return None
    moment = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return max(0, now - moment)


def age_text(t: Translator, seconds: int | None) -> str:
    """How long ago, in words (``2 d 5 h``; ``just now`` under a minute)."""
    if seconds is None:
        return t("common.unknown")
    return t("timeline.just_now") if seconds < 60 else t.duration(seconds)


def lines(t: Translator, entries: list[dict[str, Any]], now: int, *,
          vessels: dict[str, str] | None = None, subject: str = "") -> list[Line]:
    """The view's timeline entries as :class:`Line` s, newest first (``subject``: the view's
    own reference, not repeated on its lines)."""
    out = []
    for entry in entries:
        ref = entry.get("subject") or {}
        about = ""
        if ref.get("value") and ref.get("value") != subject:
            about = subject_text(t, str(ref.get("kind")), str(ref.get("value")))
        out.append(Line(
            event_id=int(entry.get("eventId") or 0),
            sentence=sentence(t, entry, vessels),
            classifier=str(entry.get("classifier", "ACT")),
            time=iso(entry.get("time")),
            local=place_time(t, entry.get("time"), entry.get("location")),
            source=str(entry.get("publisherName") or entry.get("publisher") or ""),
            age_seconds=_age(entry.get("recordedAt"), now),
            retracted=bool(entry.get("retracted")),
            correction=bool(entry.get("retracts")),
            subject=about,
            fact=_fact(entry),
        ))
    out.sort(key=lambda line: (line.time, line.event_id), reverse=True)
    return out


def _fact(entry: dict[str, Any]) -> str:
    """The fact a planned or estimated arrival/departure is about: type, place and vessel."""
    event_type = str(entry.get("type", ""))
    if event_type not in FACTS or entry.get("classifier") == "ACT":
        return ""
    subject = entry.get("subject") or {}
    vessel = subject.get("value") if subject.get("kind") == "vessel" else ""
    details = entry.get("details") or {}
    if not vessel and isinstance(details.get("vessel"), dict):
        vessel = str(details["vessel"].get("imo") or "")
    for ref in entry.get("related") or []:
        if not vessel and isinstance(ref, dict) and ref.get("kind") == "vessel":
            vessel = str(ref.get("value") or "")
    return f"{event_type}|{entry.get('location') or ''}|{vessel or subject.get('value') or ''}"


def line_html(t: Translator, line: Line) -> str:
    """One ``<li>`` of the timeline (a retracted line struck through, not hidden)."""
    what = e(line.sentence)
    if line.subject:
        what += f' <span class=muted>· {e(t("timeline.about", subject=line.subject))}</span>'
    cls = line.classifier if line.classifier in CLASSIFIERS else "ACT"
    meta = e(t("timeline.source", source=line.source, age=age_text(t, line.age_seconds)))
    body = (f'<span class="cls cls-{cls.lower()}">{e(t("timeline.cls." + cls))}</span> '
            f'<time datetime="{e(line.time)}">{e(line.local)}</time>'
            f"<p class=what>{what}</p><p class=meta>{meta}</p>")
    if line.retracted:
        return (f'<li class=retracted data-event="{line.event_id}"><del>{body}</del>'
                f'<p class=note>{e(t("timeline.retracted"))}</p></li>')
    note = f'<p class=note>{e(t("timeline.correction"))}</p>' if line.correction else ""
    return f'<li data-event="{line.event_id}">{body}{note}</li>'


def _source_html(t: Translator, line: Line) -> str:
    """One source's estimate inside a fact's line (struck through when retracted)."""
    meta = t("timeline.source", source=line.source, age=age_text(t, line.age_seconds))
    body = (f'<time datetime="{e(line.time)}">{e(line.local)}</time> '
            f"<span class=muted>{e(meta)}</span>")
    if line.retracted:
        return (f'<li class=retracted data-event="{line.event_id}"><del>{body}</del> '
                f'<span class=note>{e(t("timeline.retracted"))}</span></li>')
    return f'<li data-event="{line.event_id}">{body}</li>'


def fact_html(t: Translator, group: list[Line], derived: Sequence[EtaRow] = ()) -> str:
    """Several sources' estimates of one fact as one ``<li>``: what, then each source's time
    and age side by side (newest record first; an AIS-derived ETA of the same port beside)."""
    newest = min(group, key=lambda line: (line.age_seconds is None, line.age_seconds or 0))
    cls = newest.classifier if newest.classifier in CLASSIFIERS else "EST"
    rows = [_source_html(t, line) for line in sorted(
        group, key=lambda line: (line.age_seconds is None, line.age_seconds or 0))]
    for row in derived:
        meta = t("timeline.source", source=t("source.ais"), age=age_text(t, row.age_seconds))
        rows.append(f'<li class=derived><time datetime="{e(iso(row.time))}">'
                    f"{e(place_time(t, row.time, row.location))}</time> "
                    f"<span class=muted>{e(meta)}</span></li>")
    ids = " ".join(str(line.event_id) for line in group)
    return (f'<li class=fact data-events="{ids}"><span class="cls cls-{cls.lower()}">'
            f'{e(t("timeline.cls." + cls))}</span>'
            f"<p class=what>{e(newest.sentence)}</p>"
            f'<p class=meta>{e(t("timeline.sources", count=len(rows)))}</p>'
            f'<ul class="sources plain">{"".join(rows)}</ul></li>')


def timeline_html(t: Translator, entries: list[dict[str, Any]], now: int, *,
                  vessels: dict[str, str] | None = None, subject: str = "",
                  derived: list[EtaRow] | None = None) -> str:
    """The whole timeline as an ``<ol>`` (newest first), or a line saying there is none.

    Estimates of one fact by several sources (:data:`FACTS`) make one line with the sources
    side by side, with ``derived`` (the AIS-derived ETA) beside the arrival at its port."""
    found = lines(t, entries, now, vessels=vessels, subject=subject)
    if not found:
        return f'<p class=muted>{e(t("timeline.none"))}</p>'
    groups: dict[str, list[Line]] = {}
    for line in found:
        if line.fact:
            groups.setdefault(line.fact, []).append(line)
    items: list[tuple[str, int, str]] = []
    for line in found:
        if not line.fact:
            items.append((line.time, line.event_id, line_html(t, line)))
    for fact, group in groups.items():
        event_type, place, _ = fact.split("|", 2)
        extra = [r for r in derived or [] if event_type == "TRANSPORT.ARRI" and r.derived
                 and r.location == place]
        if len(group) == 1 and not extra:
            line = group[0]
            items.append((line.time, line.event_id, line_html(t, line)))
            continue
        newest = min(group, key=lambda line: (line.age_seconds is None, line.age_seconds or 0))
        items.append((newest.time, newest.event_id, fact_html(t, group, extra)))
    items.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return "<ol class=timeline>" + "".join(html for _, _, html in items) + "</ol>"


@dataclass(frozen=True)
class EtaRow:
    """One source's ETA."""

    source: str
    time: str
    classifier: str
    age_seconds: int | None
    location: str = ""
    derived: bool = False
    """Computed from AIS (distance over speed), not said by anyone."""


def eta_rows(vessel: dict[str, Any], now: int) -> list[EtaRow]:
    """Every source's latest ETA of the view's vessel, side by side, earliest first."""
    rows = []
    for item in vessel.get("etas") or []:
        if not isinstance(item, dict) or not item.get("time"):
            continue
        derived = item.get("source") == "AIS-derived"
        age = item.get("ageSeconds", item.get("freshness"))
        rows.append(EtaRow(
            source=str(item.get("source") or ""), time=str(item["time"]),
            classifier="EST" if derived else str(item.get("classifier") or "EST"),
            age_seconds=int(age) if isinstance(age, int | float) else _age(
                item.get("recordedAt"), now),
            location=str(item.get("location") or item.get("port") or ""), derived=derived))
    eta = vessel.get("eta")
    if not rows and isinstance(eta, dict) and eta.get("time"):
        rows.append(EtaRow(str(eta.get("source") or ""), str(eta["time"]),
                           str(eta.get("classifier") or "EST"), _age(eta.get("recordedAt"), now),
                           str(vessel.get("portOfCall") or "")))
    rows.sort(key=lambda r: r.time)
    return rows


def known_types() -> list[str]:
    """Every event type the system knows (each has a sentence in every language)."""
    return sorted(EVENT_TYPES)


def now_seconds() -> int:
    """The wall clock, whole seconds (what ages are counted against)."""
    return int(datetime.now(UTC).timestamp())
