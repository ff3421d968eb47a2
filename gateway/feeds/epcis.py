"""GS1 EPCIS 2.0 warehouse events as a feed (pure): receiving and shipping of containers.

A warehouse or container freight station sends EPCIS 2.0 JSON / JSON-LD: an ``EPCISDocument``
(events in ``epcisBody.eventList``), an ``EPCISQueryDocument`` (in
``epcisBody.queryResults.resultsBody.eventList``), a single event, an array of events, or JSON
Lines of any of these (:mod:`gateway.feeds.json_messages`). Each event is one message.

What is read
------------
- ``ObjectEvent`` with ``bizStep`` ``receiving`` → ``WAREHOUSE.RECEIPT``, ``shipping`` →
  ``WAREHOUSE.RELEASE`` (classifier ``ACT``). The CBV value may be bare (``receiving``), the
  CBV 2.0 URI (``https://ref.gs1.org/cbv/BizStep-receiving``), its CURIE
  (``cbv:BizStep-receiving``) or the EPCIS 1.x URN (``urn:epcglobal:cbv:bizstep:receiving``).
  Any other ``bizStep`` (or none) is refused (``unsupported-biz-step``), as are the other event
  types (``unsupported-event-type``), ``action`` ``DELETE`` (``unsupported-action``) and an
  event carrying an ``errorDeclaration`` (``unsupported-error-declaration``: a correction of an
  earlier event, which the adapter cannot name on chain; retract it through the API).
- **Containers**: every ``urn:epc:id:bic:<ISO 6346 number>`` in ``epcList``, and every such URN
  found among the values of ``ilmd`` (a trade item, e.g. an SGTIN, that names the container
  it came in). Each container is one event, its subject the container (a wrong check digit is
  kept and flagged in ``details.flags``).
- **Bills of lading**: ``bizTransactionList`` entries of type ``bol`` (bare, CBV URI
  ``https://ref.gs1.org/cbv/BTT-bol`` or URN ``urn:epcglobal:cbv:btt:bol``); the B/L number is
  the last part of the ``bizTransaction`` (``urn:epcglobal:cbv:bt:<GLN>:<number>``, or the last
  path segment of a URL). They are related to every event; a B/L that is not a B/L number of
  ours stays in ``details.bizTransactions``. An event that names no container but a B/L is
  one event about the (first) B/L; one that names neither is refused (``no-cargo-reference``).
- ``eventTime`` (with its offset) → the event time; ``readPoint.id`` and ``bizLocation.id``
  (SGLNs, not UN/LOCODEs) → ``details.readPoint`` / ``details.bizLocation``; the canonical
  ``location`` stays empty. ``details`` also keeps ``eventID``, ``action``, ``disposition``,
  ``itemCount`` (other EPCs) and ``quantityCount`` (``quantityList`` entries).

Checks, before the business step is looked at (the fields used, after GS1's EPCIS 2.0 JSON
schema; ``invalid-epcis-event`` unless said): ``type``, ``action`` (``ADD`` ``OBSERVE``
``DELETE``), ``eventTime`` (ISO 8601 with an offset: ``invalid-time``,
``missing-time-zone``), an ObjectEvent's objects (``epcList`` or ``quantityList``),
``epcList`` (strings), ``quantityList`` (objects of ``epcClass`` text, ``quantity`` number,
``uom`` text, nothing else), ``bizTransactionList`` (``type``, ``bizTransaction``),
``readPoint`` / ``bizLocation`` (objects with ``id``). A document must have an ``@context`` and a
``type`` of ``EPCISDocument`` or ``EPCISQueryDocument`` (``invalid-epcis-document``: every event
of it is refused, once, on the document's line).

Keys: ``feed:epcis:<eventID>:<i>`` when the event has an ``eventID`` (hashed, as EPCIS event ids
are ``ni:///sha-256;...`` URIs), else the SHA-256 of the event's canonical JSON.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.events.model import CanonicalEvent, Reference
from gateway.feeds import json_messages
from gateway.feeds.json_messages import JsonMessage, SeenIds
from gateway.feeds.model import (
    FeedError,
    MessageError,
    ParsedEvent,
    ParseResult,
    checked,
    not_this_format,
    reference,
)

FORMAT = "epcis"

#: Where the events of each kind of document are.
EVENT_LISTS: tuple[tuple[str, ...], ...] = (
    ("epcisBody", "eventList"),
    ("epcisBody", "queryResults", "resultsBody", "eventList"),
)

#: Supported business steps → canonical event type.
BIZ_STEPS: dict[str, str] = {"receiving": "WAREHOUSE.RECEIPT", "shipping": "WAREHOUSE.RELEASE"}

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
               "AssociationEvent")
DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")
ACTIONS = ("ADD", "OBSERVE", "DELETE")

_BIC = re.compile(r"urn:epc:id:bic:([A-Za-z0-9]{1,15})")
_CBV_PREFIXES = ("https://ref.gs1.org/cbv/BizStep-", "http://ref.gs1.org/cbv/BizStep-",
                 "cbv:BizStep-", "urn:epcglobal:cbv:bizstep:")
_BOL = ("bol", "https://ref.gs1.org/cbv/BTT-bol", "http://ref.gs1.org/cbv/BTT-bol",
        "cbv:BTT-bol", "urn:epcglobal:cbv:btt:bol")
_SNIFF = re.compile(r'"type"\s*:\s*"(?:' + "|".join(EVENT_TYPES + DOCUMENT_TYPES) + r')"')
_MARKERS = frozenset({"epcisBody", "eventTime", "bizStep", "epcList"})
_QUANTITY_FIELDS = frozenset({"epcClass", "quantity", "uom"})


def sniff(data: bytes) -> bool:
    """JSON naming an EPCIS document or event type (``"type": "ObjectEvent"``)."""
    text = json_messages.head(data)
    return json_messages.looks_like_json(text) and _SNIFF.search(text) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """The warehouse events of an EPCIS 2.0 feed; never raises."""
    del received_at  # every EPCIS event carries its eventTime
    if not json_messages.looks_like_json(json_messages.head(data)):
        return not_this_format(FORMAT, "not JSON: EPCIS 2.0 JSON / JSON-LD is a JSON object")
    items = json_messages.read(data, lists=EVENT_LISTS)
    messages = [m for m in items if isinstance(m, JsonMessage)]
    if messages and not any(json_messages.mentions(m.value, _MARKERS, 1) for m in messages):
        return not_this_format(FORMAT, "no EPCIS event in it (no eventTime, bizStep, epcList)")
    result = ParseResult(FORMAT, stats={"messages": 0, "refused": 0, "duplicates": 0})
    seen = SeenIds()
    documents: dict[int, str | None] = {}  # id(document) -> why it is refused, or None
    for item in items:
        if isinstance(item, FeedError):
            result.errors.append(item)
            continue
        result.stats["messages"] += 1
        if item.document is not None:
            key = id(item.document)
            if key not in documents:
                documents[key] = _document_problem(item.document)
                if documents[key] is not None:
                    result.errors.append(FeedError(item.document_line, "invalid-epcis-document",
                                                   str(documents[key])))
            if documents[key] is not None:
                result.stats["refused"] += 1
                continue
        try:
            events = _message(item, seen)
        except MessageError as exc:
            result.stats["refused"] += 1
            result.errors.append(FeedError(item.line, exc.code, str(exc)))
            continue
        if events is None:
            result.stats["duplicates"] += 1
            continue
        result.events.extend(events)
    return result


def _document_problem(document: dict[str, Any]) -> str | None:
    """Why an EPCIS document cannot be read, or None."""
    if document.get("type") not in DOCUMENT_TYPES:
        return (f"/type: {str(document.get('type'))[:40]!r} is not "
                f"{' or '.join(DOCUMENT_TYPES)}")
    if "@context" not in document:
        return "/@context: an EPCIS 2.0 JSON-LD document has an @context"
    return None


def _invalid(where: str, why: str) -> MessageError:
    return MessageError("invalid-epcis-event", f"{where}: {why}")


def _check(event: Any) -> None:
    """The structural checks of the module doc (``invalid-epcis-event``)."""
    if not isinstance(event, dict):
        raise _invalid("/", "an EPCIS event is a JSON object")
    if event.get("type") not in EVENT_TYPES:
        raise _invalid("/type", f"{str(event.get('type'))[:40]!r} is not an EPCIS event type")
    if "eventTime" not in event:
        raise _invalid("/eventTime", "required")
    json_messages.time_of(event["eventTime"], "/eventTime")
    if event["type"] != "TransformationEvent" and event.get("action") not in ACTIONS:
        raise _invalid("/action", f"{str(event.get('action'))[:20]!r} is not one of "
                       f"{', '.join(ACTIONS)}")
    for name in ("epcList", "bizStep", "disposition"):
        value = event.get(name)
        if name == "epcList" and value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise _invalid("/epcList", "a list of EPC URIs")
        if name != "epcList" and value is not None and not isinstance(value, str):
            raise _invalid(f"/{name}", "a CBV value (text)")
    quantities = event.get("quantityList")
    if event["type"] == "ObjectEvent" and not event.get("epcList") and not quantities:
        raise _invalid("/epcList", "an ObjectEvent names its objects (epcList or quantityList)")
    if quantities is not None:
        if not isinstance(quantities, list):
            raise _invalid("/quantityList", "a list")
        for i, entry in enumerate(quantities):
            where = f"/quantityList/{i}"
            if not isinstance(entry, dict) or not isinstance(entry.get("epcClass"), str):
                raise _invalid(where, "an object with an epcClass")
            unknown = sorted(set(entry) - _QUANTITY_FIELDS)
            if unknown:
                raise _invalid(f"{where}/{unknown[0]}", "not a member of a quantity element")
            quantity = entry.get("quantity")
            if quantity is not None and (isinstance(quantity, bool)
                                         or not isinstance(quantity, int | float)):
                raise _invalid(f"{where}/quantity", f"{str(quantity)[:20]!r} is not a number")
            if "uom" in entry and not isinstance(entry["uom"], str):
                raise _invalid(f"{where}/uom", "a unit of measure code (text)")
    transactions = event.get("bizTransactionList")
    if transactions is not None and not (
            isinstance(transactions, list)
            and all(isinstance(t, dict) and isinstance(t.get("bizTransaction"), str)
                    and isinstance(t.get("type", ""), str) for t in transactions)):
        raise _invalid("/bizTransactionList", "a list of {type, bizTransaction}")
    for name in ("readPoint", "bizLocation"):
        place = event.get(name)
        if place is not None and not (isinstance(place, dict)
                                      and isinstance(place.get("id"), str)):
            raise _invalid(f"/{name}", "an object with an id")


def _biz_step(value: str | None) -> str | None:
    if value is None:
        return None
    for prefix in _CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix):]
    return value


def _bic_urns(value: Any, depth: int = 0) -> list[str]:
    """Container numbers of the ``urn:epc:id:bic:`` URNs among ``value``'s strings."""
    if isinstance(value, str):
        match = _BIC.fullmatch(value.strip())
        return [match.group(1)] if match else []
    if depth >= 4:
        return []
    children = value.values() if isinstance(value, dict) else value if isinstance(
        value, list) else []
    return [n for child in list(children)[:200] for n in _bic_urns(child, depth + 1)]


def _bill_number(transaction: str) -> str:
    """The B/L number in a ``bizTransaction`` URN or URL: its last part."""
    return re.split(r"[:/]", transaction.rstrip("/"))[-1]


def events_of(event: Any) -> list[CanonicalEvent]:
    """The canonical events of one EPCIS event (module doc); raises :class:`MessageError`."""
    _check(event)
    if event["type"] != "ObjectEvent":
        raise MessageError("unsupported-event-type", f"/type: {event['type']} is not read "
                           "(only ObjectEvent receiving / shipping)")
    step = _biz_step(event.get("bizStep"))
    if step not in BIZ_STEPS:
        said = event.get("bizStep")
        raise MessageError("unsupported-biz-step", (f"/bizStep: {said[:60]!r} is" if said
                                                    else "/bizStep: an event without one is")
                           + " not read (only receiving and shipping)")
    if event["action"] == "DELETE":
        raise MessageError("unsupported-action", "/action: DELETE is not a receipt or release")
    if "errorDeclaration" in event:
        raise MessageError("unsupported-error-declaration", "/errorDeclaration: corrections of "
                           "earlier events are not read from EPCIS; retract through the API")
    when = json_messages.time_of(event["eventTime"], "/eventTime")
    flags: list[dict[str, str]] = []
    numbers = _bic_urns(event.get("epcList") or []) + _bic_urns(event.get("ilmd") or {})
    containers: list[Reference] = []
    for number in numbers:
        found = reference("container", number, flags, field="/epcList")
        if found not in containers:
            containers.append(found)
    bills: list[Reference] = []
    other_transactions: list[dict[str, str]] = []
    for i, entry in enumerate(event.get("bizTransactionList") or []):
        if entry.get("type") in _BOL:
            try:
                found = reference("mbl", _bill_number(entry["bizTransaction"]), [],
                                  field=f"/bizTransactionList/{i}")
            except MessageError:
                other_transactions.append(entry)
                continue
            if found not in bills:
                bills.append(found)
        else:
            other_transactions.append(entry)
    if not containers and not bills:
        raise MessageError("no-cargo-reference", "the event names no container "
                           "(urn:epc:id:bic:...) and no bill of lading (bizTransaction type bol)")

    details: dict[str, Any] = {"bizStep": step, "action": event["action"]}
    for name in ("eventID", "disposition"):
        if isinstance(event.get(name), str):
            details[name] = event[name][:200]
    for name in ("readPoint", "bizLocation"):
        if event.get(name) is not None:
            details[name] = event[name]["id"][:200]
    items = len(event.get("epcList") or []) - len(_bic_urns(event.get("epcList") or []))
    if items:
        details["itemCount"] = items
    if event.get("quantityList"):
        details["quantityCount"] = len(event["quantityList"])
    if other_transactions:
        details["bizTransactions"] = other_transactions[:8]
    if flags:
        details["flags"] = flags
    event_type = BIZ_STEPS[step]
    if not containers:
        return [checked(CanonicalEvent(event_type, "ACT", when, bills[0],
                                       related=tuple(bills[1:]), details=details))]
    return [checked(CanonicalEvent(event_type, "ACT", when, container, related=tuple(bills),
                                   details=details)) for container in containers]


def _message(item: JsonMessage, seen: SeenIds) -> list[ParsedEvent] | None:
    """The events of one EPCIS event with their keys (None: a duplicate)."""
    return json_messages.keyed(FORMAT, item, seen, "eventID", events_of(item.value),
                               conflict="duplicate-event-id")
