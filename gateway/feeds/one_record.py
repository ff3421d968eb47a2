"""IATA ONE Record LogisticsEvents (JSON-LD) → canonical ``AIR.*`` events (pure).

ONE Record is air cargo's linked-data successor to Cargo-IMP: a status such as "departed" is a
``LogisticsEvent`` attached to a logistics object (a shipment, a waybill, a piece). This
adapter reads the events of a JSON-LD document without a JSON-LD processor: it looks at each
property's local name, so the three spellings IATA's own examples use all read the same —
``"cargo:eventCode"`` with a ``cargo`` prefix in ``@context``, ``"eventCode"`` under an
``@vocab``, and the full IRI ``"https://onerecord.iata.org/ns/cargo#eventCode"`` (expanded form,
values in one-element lists, also reads).

The document
------------
A single event object, a list, a ``@graph``, or an API collection (``api:hasItem``): every
object whose ``@type`` is ``LogisticsEvent`` (or its (X)FSU subtype ``StatusUpdateEvent``)
anywhere in it is an event; the other objects with an ``@id`` (shipments, waybills, pieces,
locations) are there to be linked to. Each event is read on its own: a bad one is an error at
the line its object starts on, the others still count.

Mapping
-------
- ``eventCode`` → ``AIR.<code>``: an IRI in either style IATA publishes
  (``…/code-lists/StatusCode#DEP`` or ``…/coreCodeLists#StatusCode_DEP``), a
  ``CodeListElement`` with a ``code``, or the plain code. Codes outside the FSU status codes of
  the canonical model are refused (``unknown-status-code``).
- ``eventDate`` → ``event_time`` (an ``xsd:dateTime`` with a zone).
- ``eventTimeType`` → classifier: ``ACTUAL`` → ``ACT``, ``ESTIMATED`` / ``EXPECTED`` → ``EST``,
  ``PLANNED`` (and ``SCHEDULED``, seen in practice) → ``PLN``; none given → ``ACT``.
- The subject is the air waybill of the object the event is for — ``eventFor`` (the ontology's
  property) or ``linkedObject`` (IATA's API examples), an object or a list of them (the
  waybill, else the shipment, else any other object, pieces last). The waybill is found from
  that object's own ``waybillPrefix`` + ``waybillNumber``, its ``waybill``, a piece's
  ``ofShipment``, each embedded or linked by ``@id`` to another object of the document, else
  an AWB written in the object's IRI (``…/awb-020-12345675``). Check digit (mod 7) verified: a
  wrong one is flagged in ``details.flags``. Without any AWB, the subject is a ``shipment``
  reference: the last segment of the object's IRI (ONE Record's identity of the shipment),
  with the IRI in ``details.linkedObject``. An event for no object is refused
  (``no-linked-object``): IATA posts such events to an object's ``/logistics-events``, and the
  object is not in the body.
- ``recordedAtLocation`` (or ``eventLocation``) → ``location``: a UN/LOCODE given as the
  location's code, or an IATA airport code (a ``locationCode(s)`` element's ``code``, or the
  IRI's last segment, e.g. ``…/logistics-objects/FRA``) mapped through
  :data:`gateway.feeds.cargo_imp.AIRPORT_LOCODES`; otherwise empty, with the airport or IRI in
  ``details``.
- ``details``: ``eventName``, ``eventTimeType``, the event's ``@id`` (``eventId``), the
  linked object's IRI, ``partial`` (``partialEventIndicator``), the number of ``pieces`` the
  event names, each text cut to fit the canonical 2,048 bytes.

Every event's key is derived from its own JSON (keys sorted), so a re-sent document gives the
same keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from gateway import jsonbody
from gateway.events import identifiers
from gateway.events.model import (
    MAX_DETAILS_BYTES,
    CanonicalEvent,
    EventError,
    Reference,
    parse_time,
)
from gateway.feeds.cargo_imp import AIRPORT_LOCODES, STATUS_CODES
from gateway.feeds.model import (
    MAX_FEED_BYTES,
    FeedError,
    MessageError,
    ParsedEvent,
    ParseResult,
    checked,
    decode_text,
    message_key,
    not_this_format,
    reference,
)

FORMAT = "one-record"

#: ``@type`` local names that are events.
EVENT_TYPES: tuple[str, ...] = ("LogisticsEvent", "StatusUpdateEvent")

#: ``eventTimeType`` local names → classifier.
TIME_TYPES: dict[str, str] = {
    "ACTUAL": "ACT", "ESTIMATED": "EST", "EXPECTED": "EST", "PLANNED": "PLN", "SCHEDULED": "PLN",
}

_NAMESPACE = "onerecord.iata.org"
_AWB_IN_IRI = re.compile(r"(?<![0-9A-Za-z])(\d{3})-?(\d{8})(?![0-9A-Za-z])")
_LINK_ORDER = ("Waybill", "Shipment", "Piece")
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]\n]')
_TEXT_LIMIT = 200

#: Deepest nesting of JSON objects and arrays read (ONE Record documents are a few levels).
MAX_DEPTH = 64


class _Node(dict[str, Any]):
    """A JSON object as decoded, with its members in order (duplicates too) for numbering."""

    pairs: list[tuple[str, Any]]


def _node(pairs: list[tuple[str, Any]]) -> _Node:
    node = _Node(pairs)
    node.pairs = pairs
    return node


# -- adapter interface ------------------------------------------------------------------------
def sniff(data: bytes) -> bool:
    """True for JSON whose first 4 KB name ONE Record or a LogisticsEvent."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[") and (
        _NAMESPACE.encode() in head or b"LogisticsEvent" in head)


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """Read every LogisticsEvent of a JSON-LD document; never raises."""
    del received_at  # every ONE Record event carries its own date
    if len(data) > MAX_FEED_BYTES:
        return ParseResult(FORMAT, errors=[FeedError(0, "too-large",
                                                     f"more than {MAX_FEED_BYTES} bytes")])
    text = decode_text(data)
    if text.lstrip()[:1] not in ("{", "["):
        return not_this_format(FORMAT, "not a JSON object or list")
    try:
        document = jsonbody.loads(text, max_depth=MAX_DEPTH, object_pairs_hook=_node)
    except jsonbody.TooDeep as exc:
        return ParseResult(FORMAT, errors=[FeedError(0, "too-deep", str(exc))])
    except json.JSONDecodeError as exc:
        return ParseResult(FORMAT, errors=[FeedError(exc.lineno, "invalid-json", exc.msg)])
    except (ValueError, RecursionError) as exc:
        return ParseResult(FORMAT, errors=[FeedError(0, "invalid-json", str(exc)[:200])])
    lines, depth = _object_lines(text)
    if depth > MAX_DEPTH:
        return ParseResult(FORMAT, errors=[FeedError(0, "too-deep",
                                                     f"JSON nested deeper than {MAX_DEPTH}")])
    objects = list(_objects(document))
    line_of = {id(obj): lines[i] if i < len(lines) else 0 for i, obj in enumerate(objects)}
    index: dict[str, _Node] = {}
    events: list[_Node] = []
    for obj in objects:
        identity = obj.get("@id")
        if isinstance(identity, str) and len(obj) > len(index.get(identity, ())):
            index[identity] = obj
        if _types(obj) & set(EVENT_TYPES):
            events.append(obj)
    if not events:
        if _NAMESPACE not in text:
            return not_this_format(FORMAT, "no ONE Record LogisticsEvent in the document")
        return ParseResult(FORMAT, errors=[FeedError(0, "no-logistics-event",
                                                     "the document holds no LogisticsEvent")])
    result = ParseResult(FORMAT, stats={"events": len(events), "refused": 0})
    for number, obj in enumerate(events):
        line = line_of.get(id(obj), 0)
        try:
            event = checked(_event(obj, index))
        except MessageError as exc:
            result.stats["refused"] += 1
            result.errors.append(FeedError(line, exc.code, f"event {number + 1}: {exc}"))
            continue
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        result.events.append(ParsedEvent(event, message_key(FORMAT, body), line))
    return result


# -- one event --------------------------------------------------------------------------------
def _event(node: _Node, index: dict[str, _Node]) -> CanonicalEvent:
    props = _props(node)
    code = _status_code(props.get("eventCode"))
    if "eventDate" not in props:
        raise MessageError("missing-field", "eventDate is missing")
    when = _text(props["eventDate"])
    try:
        event_time = parse_time(when or "", field="eventDate")
    except EventError as exc:
        raise MessageError("bad-date", f"eventDate: {exc}") from None
    time_type = _local(_iri(props.get("eventTimeType")) or "ACTUAL").upper()
    if time_type not in TIME_TYPES:
        raise MessageError("bad-event-time-type",
                           f"eventTimeType {_clip(time_type, 40)!r} is not one of "
                           f"{', '.join(TIME_TYPES)}")
    details: dict[str, Any] = {}
    flags: list[dict[str, str]] = []
    subject = _subject(props, index, details, flags)
    location = _location(props, index, details)
    name = _text(props.get("eventName"))
    if name:
        details["eventName"] = _clip(name, _TEXT_LIMIT)
    details["eventTimeType"] = time_type
    if isinstance(node.get("@id"), str):
        details["eventId"] = _clip(node["@id"], _TEXT_LIMIT)
    partial = _text(props.get("partialEventIndicator"))
    if partial is not None:
        details["partial"] = partial.lower() == "true"
    if flags:
        details["flags"] = flags
    return CanonicalEvent(
        event_type=f"AIR.{code}",
        classifier=TIME_TYPES[time_type],
        event_time=event_time,
        subject=subject,
        location=location,
        details=_fit(details),
    )


def _status_code(value: Any) -> str:
    if value is None:
        raise MessageError("missing-field", "eventCode is missing")
    value = _one(value)
    text: str | None
    if isinstance(value, dict):
        code_props = _props(value)
        text = _iri(value) if "@id" in value else _text(
            code_props.get("code", code_props.get("Code")))
    else:
        text = _text(value)
    code = _local(text or "").removeprefix("StatusCode_").upper()
    if code not in STATUS_CODES:
        raise MessageError("unknown-status-code",
                           f"eventCode {_clip(text or '', 60)!r} is not an FSU status code "
                           f"({' '.join(STATUS_CODES)})")
    return code


def _subject(props: dict[str, Any], index: dict[str, _Node], details: dict[str, Any],
             flags: list[dict[str, str]]) -> Reference:
    linked = props.get("eventFor", props.get("linkedObject"))
    candidates = [c for item in _many(linked) if (c := _resolve(item, index)) is not None]
    if not candidates:
        raise MessageError("no-linked-object",
                           "the event names no object (eventFor / linkedObject)")
    candidates.sort(key=_link_rank)
    chosen = candidates[0]
    pieces = sum(1 for c in candidates if "Piece" in _types(c))
    if pieces:
        details["pieces"] = pieces
    iri = chosen.get("@id") if isinstance(chosen.get("@id"), str) else None
    if iri:
        details["linkedObject"] = _clip(iri, _TEXT_LIMIT)
    awb = _waybill_number(chosen, index, depth=0)
    if awb is not None:
        return reference("awb", awb, flags, field="eventFor/waybill")
    segment = identifiers.compact(iri.rstrip("/").rsplit("/", 1)[-1]) if iri else ""
    try:
        return Reference("shipment", identifiers.normalise("shipment", segment))
    except identifiers.IdentifierError:
        raise MessageError("no-waybill",
                           "the linked object has no air waybill (waybillPrefix + "
                           "waybillNumber) and no IRI segment usable as a shipment "
                           "reference") from None


def _link_rank(node: _Node) -> int:
    types = _types(node)
    for rank, name in enumerate(_LINK_ORDER):
        if name in types:
            return rank if name != "Piece" else len(_LINK_ORDER) + 1
    return len(_LINK_ORDER)


def _waybill_number(node: _Node, index: dict[str, _Node], *, depth: int) -> str | None:
    """``prefix-serial`` of the waybill of ``node``, following links a few steps."""
    props = _props(node)
    prefix = _text(props.get("waybillPrefix"))
    number = _text(props.get("waybillNumber"))
    if number:
        serial = identifiers.compact(number)
        if prefix and len(serial) == 8:
            return f"{prefix}-{serial}"
        return number
    if depth < 3:
        for key in ("waybill", "ofShipment"):
            linked = _resolve(_one(props.get(key)), index)
            if linked is not None:
                found = _waybill_number(linked, index, depth=depth + 1)
                if found:
                    return found
    iri = node.get("@id")
    if isinstance(iri, str) and (match := _AWB_IN_IRI.search(iri)):
        return f"{match.group(1)}-{match.group(2)}"
    return None


def _location(props: dict[str, Any], index: dict[str, _Node], details: dict[str, Any]) -> str:
    value = props.get("recordedAtLocation", props.get("eventLocation"))
    node = _resolve(_one(value), index)
    if node is None:
        return ""
    codes = []
    loc_props = _props(node)
    for key in ("locationCodes", "locationCode", "code"):
        for element in _many(loc_props.get(key)):
            element = _resolve(element, index) if isinstance(element, dict) else element
            if isinstance(element, dict):
                element_props = _props(element)
                text = _text(element_props.get("code", element_props.get("Code")))
            else:
                text = _text(element)
            if text:
                codes.append(text.strip().upper())
    iri = node.get("@id")
    if isinstance(iri, str):
        codes.append(iri.rstrip("/").rsplit("/", 1)[-1].upper())
    for code in codes:
        if len(code) == 5:
            try:
                return identifiers.normalise("unlocode", code)
            except identifiers.IdentifierError:
                continue
        if re.fullmatch("[A-Z]{3}", code):
            details["airport"] = code
            return AIRPORT_LOCODES.get(code, "")
    if isinstance(iri, str):
        details["recordedAtLocation"] = _clip(iri, _TEXT_LIMIT)
    return ""


# -- JSON-LD without a processor --------------------------------------------------------------
def _objects(document: Any) -> Iterator[_Node]:
    """Every JSON object of the document, in the order their ``{`` appear (pre-order)."""
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, _Node):
            yield value
            stack.extend(reversed([v for _, v in value.pairs]))
        elif isinstance(value, list):
            stack.extend(reversed(value))


def _object_lines(text: str) -> tuple[list[int], int]:
    """The 1-based line of every ``{`` outside strings, in order (one per JSON object), and
    the deepest nesting of objects and arrays (``text`` is JSON that decoded)."""
    lines = []
    line, depth, deepest = 1, 0, 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char == "\n":
            line += 1
        elif char in ("{", "["):
            if char == "{":
                lines.append(line)
            depth += 1
            deepest = max(deepest, depth)
        elif char in ("}", "]"):
            depth -= 1
    return lines, deepest


def _local(name: str) -> str:
    """A property, type or IRI's local name: after ``#``, else after a ``prefix:``."""
    name = name.strip()
    if "#" in name:
        return name.rsplit("#", 1)[1]
    if ":" in name and not name.startswith("@"):
        return name.rsplit(":", 1)[1].rsplit("/", 1)[-1]
    return name


def _props(node: dict[str, Any]) -> dict[str, Any]:
    """The object's members by local name (the first of two spellings wins)."""
    props: dict[str, Any] = {}
    for key, value in node.items():
        props.setdefault(key if key.startswith("@") else _local(key), value)
    return props


def _types(node: dict[str, Any]) -> set[str]:
    return {_local(t) for t in _many(node.get("@type")) if isinstance(t, str)}


def _resolve(value: Any, index: dict[str, _Node]) -> _Node | None:
    """An object, or the document's object an ``{"@id"}`` or IRI string names."""
    value = _one(value)
    if isinstance(value, str):
        return index.get(value) or _node([("@id", value)])
    if isinstance(value, _Node):
        identity = value.get("@id")
        if isinstance(identity, str) and identity in index:
            return index[identity]
        return value
    return None


def _one(value: Any) -> Any:
    """A one-element list (JSON-LD's expanded form) as its element."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str | None:
    """A literal: a string, number or boolean, or a ``{"@value"}`` object's value."""
    value = _one(value)
    if isinstance(value, dict):
        value = _one(value.get("@value"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _iri(value: Any) -> str | None:
    """An ``{"@id"}`` object's IRI, or a string."""
    value = _one(value)
    if isinstance(value, dict):
        identity = value.get("@id")
        return identity if isinstance(identity, str) else None
    return value if isinstance(value, str) else None


def _fit(details: dict[str, Any]) -> dict[str, Any]:
    for key in ("eventName", "eventId", "linkedObject", "recordedAtLocation"):
        if len(json.dumps(details, separators=(",", ":"))) <= MAX_DETAILS_BYTES:
            break
        if key in details:
            details[key] = _clip(details[key], 40)
    return details


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
