"""Customs status messages as a feed (pure): a declaration's release, hold, inspection or refusal.

Customs systems tell the port what became of a declaration. The message is ours (documented
in ``docs/feed-formats.md``), JSON, one object per message (an array or JSON Lines for many):

=================== ================================================================ ========
member              meaning                                                          required
=================== ================================================================ ========
declarationNumber   the customs declaration (a ``declaration`` reference)            yes
status              ``RELEASED`` ``HELD`` ``INSPECTION`` or ``REFUSED``              yes
time                when customs decided, ISO 8601 with a zone                       yes
office              the customs office's code (e.g. ``NL000396``, ``HKHKG``), ≤ 35   no
location            UN/LOCODE of where the cargo is (the event's location)           no
containers          container numbers (ISO 6346) the declaration covers, ≤ 100      no
billOfLading        the master bill of lading                                        no
houseBillOfLading   the house bill of lading                                         no
reason              why (a hold, an inspection, a refusal), ≤ 512 characters         no
messageId           the sender's id of the message, ≤ 100 (the idempotency key)      no
=================== ================================================================ ========

Mapping
-------
``status`` → ``CUSTOMS.CUSR`` (released), ``CUSH`` (held), ``CUSI`` (inspection), ``CUSX``
(refused); classifier ``ACT``. Tracking finds events by their subject, and a container view
must show "customs released", so one message becomes one event per reference it names, all
with the same type, time, location and ``details`` (``status``, ``office``, ``reason``,
``messageId``):

1. subject the **declaration**, related the B/Ls, ``details.containers`` every container;
2. subject each **B/L** (master, then house), related the declaration and the other B/L,
   ``details.containers`` every container (the B/L view lists them);
3. subject each **container**, related the declaration and the B/Ls (the container view's
   status becomes ``customs-released``, ``customs-hold``, ...).

**Published under an alias.** A customs status message from a feed names the declaration by
its number (the events above). The declarations feature publishes its results under the
declaration's keyed **alias** instead (``events_of(message, alias=...)``;
:func:`gateway.declarations.onchain.alias`), because a subject key is in clear on chain and
official numbers are guessable: the alias, itself a ``declaration`` reference, replaces the
number as the first event's subject and in every event's related references, and the number
goes into every event's sealed ``details.declarationNumber`` (its readers still see it).

A container number whose check digit is wrong is kept and flagged (``details.flags``); any
other bad reference refuses the message (all or nothing). Typed refusals: ``missing-field``,
``unknown-field``, ``invalid-status``, ``invalid-time``, ``missing-time-zone``,
``invalid-container-number``, ``invalid-reference``, ``invalid-unlocode``,
``too-many-containers``, ``invalid-field``, ``not-an-object``, ``duplicate-message-id``.

Keys: ``feed:customs:<messageId>:<i>`` when ``messageId`` is given, else the SHA-256 of the
message's canonical JSON; ``i`` counts the message's events in the order above.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, Reference
from gateway.feeds import json_messages
from gateway.feeds.json_messages import JsonMessage, SeenIds
from gateway.feeds.model import (
    MessageError,
    ParseResult,
    checked,
    not_this_format,
    reference,
)

FORMAT = "customs"

#: Status → canonical event type.
STATUSES: dict[str, str] = {
    "RELEASED": "CUSTOMS.CUSR",
    "HELD": "CUSTOMS.CUSH",
    "INSPECTION": "CUSTOMS.CUSI",
    "REFUSED": "CUSTOMS.CUSX",
}

#: Every member of a message.
FIELDS: tuple[str, ...] = ("declarationNumber", "status", "time", "office", "location",
                           "containers", "billOfLading", "houseBillOfLading", "reason",
                           "messageId")

#: Members a message must have.
REQUIRED: tuple[str, ...] = ("declarationNumber", "status", "time")

#: Most containers one message may name (``details.containers`` must fit an event).
MAX_CONTAINERS = 100

#: Longest text of the free members.
LIMITS = {"office": 35, "reason": 512, "messageId": 100}

_SNIFF = (re.compile(r'"declarationNumber"\s*:'), re.compile(r'"status"\s*:'))
_MARKERS = frozenset({"declarationNumber"})


def sniff(data: bytes) -> bool:
    """JSON with ``declarationNumber`` and ``status`` members."""
    text = json_messages.head(data)
    return json_messages.looks_like_json(text) and all(p.search(text) for p in _SNIFF)


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """The customs events of a feed of status messages; never raises."""
    del received_at  # every message carries its own time
    if not json_messages.looks_like_json(json_messages.head(data)):
        return not_this_format(FORMAT, "not JSON: customs status messages are JSON objects")
    items = json_messages.read(data)
    messages = [m for m in items if isinstance(m, JsonMessage)]
    if messages and not any(json_messages.mentions(m.value, _MARKERS, 1) for m in messages):
        return not_this_format(FORMAT, "no customs status message in it (no declarationNumber)")
    seen = SeenIds()

    def take(item: JsonMessage) -> json_messages.Taken:
        events = json_messages.keyed(FORMAT, item, seen, "messageId", events_of(item.value),
                                     conflict="duplicate-message-id")
        return None if events is None else (events, [])

    return json_messages.collect(FORMAT, items, take)


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    limit = LIMITS.get(name, 35)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise MessageError("invalid-field", f"/{name}: text of 1 to {limit} characters")
    return value.strip()


def events_of(raw: Any, *, alias: str | None = None) -> list[CanonicalEvent]:
    """The canonical events of one status message (module doc); raises :class:`MessageError`.

    ``alias``: a ``declaration`` reference the events name instead of the declaration number,
    which is then only in their ``details.declarationNumber`` (module doc)."""
    if not isinstance(raw, dict):
        raise MessageError("not-an-object", "a customs status message is a JSON object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise MessageError("unknown-field", f"/{unknown[0]}: not a member of a customs status "
                           f"message ({', '.join(FIELDS)})")
    for name in REQUIRED:
        if raw.get(name) is None:
            raise MessageError("missing-field", f"/{name}: required")
    status = raw["status"]
    if not isinstance(status, str) or status not in STATUSES:
        raise MessageError("invalid-status", f"/status: {str(status)[:40]!r} is not one of "
                           f"{', '.join(STATUSES)}")
    when = json_messages.time_of(raw["time"], "/time")
    flags: list[dict[str, str]] = []
    declaration = reference("declaration", _string(raw["declarationNumber"],
                                                   "declarationNumber"),
                            flags, field="/declarationNumber")
    named: dict[str, str] = {}
    if alias is not None:
        named = {"declarationNumber": declaration.value}
        declaration = reference("declaration", alias, flags, field="alias")
    bills = [reference(kind, _string(raw[name], name), flags, field=f"/{name}")
             for name, kind in (("billOfLading", "mbl"), ("houseBillOfLading", "hbl"))
             if raw.get(name) is not None]
    location = ""
    if raw.get("location") is not None:
        try:
            location = identifiers.normalise("unlocode", _string(raw["location"], "location"))
        except identifiers.IdentifierError as exc:
            raise MessageError(exc.code, f"/location: {exc}") from None
    containers = _containers(raw.get("containers"), flags)
    details: dict[str, Any] = {"status": status, **named}
    for name in ("office", "reason", "messageId"):
        value = _text(raw, name)
        if value is not None:
            details[name] = value
    if flags:
        details["flags"] = flags
    listed = {"containers": [c.value for c in containers]} if containers else {}

    def event(subject: Reference, related: list[Reference], extra: dict[str, Any],
              ) -> CanonicalEvent:
        return checked(CanonicalEvent(STATUSES[status], "ACT", when, subject, location,
                                      tuple(related), {**details, **extra}))

    out = [event(declaration, bills, listed)]
    out += [event(bill, [declaration, *(b for b in bills if b != bill)], listed)
            for bill in bills]
    out += [event(container, [declaration, *bills], {}) for container in containers]
    return out


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise MessageError("invalid-reference", f"/{name}: a reference is a string")
    return value


def _containers(raw: Any, flags: list[dict[str, str]]) -> list[Reference]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MessageError("invalid-field", "/containers: a list of container numbers")
    if len(raw) > MAX_CONTAINERS:
        raise MessageError("too-many-containers", f"/containers: {len(raw)} containers, at "
                           f"most {MAX_CONTAINERS} per message (send several messages)")
    out: list[Reference] = []
    for i, number in enumerate(raw):
        found = reference("container", _string(number, f"containers/{i}"), flags,
                          field=f"/containers/{i}")
        if found not in out:
            out.append(found)
    return out


