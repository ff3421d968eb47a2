"""DCSA Track & Trace 2.2 events as a feed (pure): the gateway's DCSA mapping, message by message.

A carrier or terminal sends T&T 2.2 events the way DCSA publishes them: one event object, the
array ``GET /v2/events`` answers or a subscription callback posts, or JSON Lines (see
:mod:`gateway.feeds.json_messages`). Each event is one message and goes through the mapping
the API already uses, :func:`gateway.events.dcsa.validate` (the spec's own schemas, closed
world) and :func:`gateway.events.dcsa.from_dcsa`; nothing of the mapping is repeated here.

- An event the mapping refuses becomes a :class:`~gateway.feeds.model.FeedError` with the
  :class:`~gateway.events.dcsa.DcsaError`'s code (``invalid-dcsa-event``,
  ``invalid-check-digit``, ``invalid-imo-number``, ...) and its JSON pointer in the message.
  The mapping refuses a container or IMO number whose check digit is wrong (the API does the
  same), so such an event is refused here too, not flagged.
- Keys: ``feed:dcsa:<eventID>:<i>`` when the event has its ``eventID`` (a UUID, so a re-sent
  event keeps its key even if re-serialised), else the SHA-256 of the event's canonical JSON
  (:func:`gateway.feeds.model.message_key`).
- An event seen twice in one input (same ``eventID`` and content, or same content without an
  id) is read once, the repeat counted as a ``duplicate``; a different event under an
  ``eventID`` already seen is refused (``duplicate-event-id``).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.events import dcsa
from gateway.feeds import json_messages
from gateway.feeds.json_messages import JsonMessage, SeenIds
from gateway.feeds.model import (
    MessageError,
    ParsedEvent,
    ParseResult,
    checked,
    message_key,
    not_this_format,
)

FORMAT = "dcsa"

_EVENT_TYPE = re.compile(r'"eventType"\s*:\s*"(?:SHIPMENT|TRANSPORT|EQUIPMENT)"')
_TYPE_CODE = re.compile(r'"(?:shipment|transport|equipment)EventTypeCode"\s*:')

#: Members only a T&T event has (a message that mentions none is not this format).
_CODES = frozenset({"shipmentEventTypeCode", "transportEventTypeCode",
                    "equipmentEventTypeCode"})
_MARKERS = _CODES | {"eventType"}


def _is_tnt(value: dict[str, Any]) -> bool:
    """A T&T 2.2 event type (another ``eventType``, e.g. ``REEFER``, is another format)."""
    kind = value.get("eventType")
    return (isinstance(kind, str) and kind in dcsa.EVENT_SCHEMAS) or bool(
        _CODES.intersection(value))

#: Members of a DCSA T&T 3.0 event, which names its type ``eventClassification.eventTypeCode``.
_V3_MARKERS = frozenset({"eventClassification", "eventTypeCode"})


def sniff(data: bytes) -> bool:
    """JSON naming a T&T 2.2 event type (``"eventType": "EQUIPMENT"``) or its type code."""
    text = json_messages.head(data)
    return (json_messages.looks_like_json(text)
            and (_EVENT_TYPE.search(text) is not None or _TYPE_CODE.search(text) is not None)
            and '"eventTypeCode"' not in text)  # T&T 3.0 (another format) names it so


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """The canonical events of a DCSA T&T 2.2 feed; never raises."""
    del received_at  # every DCSA event carries its own eventDateTime
    if not json_messages.looks_like_json(json_messages.head(data)):
        return not_this_format(FORMAT, "not JSON: DCSA T&T events are JSON objects")
    items = json_messages.read(data)
    messages = [m for m in items if isinstance(m, JsonMessage)]
    if messages and not any(json_messages.mentions(m.value, _MARKERS, 4, _is_tnt)
                            for m in messages):
        return not_this_format(FORMAT, "no DCSA T&T 2.2 event in it (no eventType)")
    if (any(json_messages.mentions(m.value, _V3_MARKERS) for m in messages)
            and not any(isinstance(m.value, dict) and "eventType" in m.value for m in messages)):
        return not_this_format(FORMAT, "DCSA T&T 3.0 events (eventClassification): the "
                               "gateway reads T&T 2.2")
    seen = SeenIds()

    def take(item: JsonMessage) -> json_messages.Taken:
        try:
            return _message(item, seen), []
        except _Duplicate:
            return None

    return json_messages.collect(FORMAT, items, take)


class _Duplicate(Exception):
    """The same event was already read from this input."""


def _message(item: JsonMessage, seen: SeenIds) -> list[ParsedEvent]:
    """The events of one DCSA event (all or nothing)."""
    event = item.value
    try:
        dcsa.validate(event)
        # a feed flags a bad check digit on the event and keeps it (the API refuses it)
        canonical = dcsa.from_dcsa(event, validated=True, flag_check_digits=True)
    except dcsa.DcsaError as exc:
        where = exc.path or "/"
        text = str(exc)
        raise MessageError(exc.code, text if where in text else f"{where}: {text}") from None
    except RecursionError:
        raise MessageError("invalid-dcsa-event", "event nested too deeply") from None
    event_id = event.get("eventID")
    body = json_messages.canonical_json(event)
    verdict = seen.check(event_id if isinstance(event_id, str) else body, event)
    if verdict == "duplicate":
        raise _Duplicate
    if verdict == "conflict":
        raise MessageError("duplicate-event-id",
                           f"/eventID: {event_id} names another event earlier in the feed")
    if isinstance(event_id, str):
        keys = [json_messages.event_key(FORMAT, event_id, i) for i in range(len(canonical))]
    else:
        keys = [message_key(FORMAT, body, i) for i in range(len(canonical))]
    return [ParsedEvent(checked(c), key, item.line) for c, key in zip(canonical, keys,
                                                                        strict=True)]
