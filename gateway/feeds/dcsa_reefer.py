"""DCSA Reefer 1.0 events as a feed (pure): measurements become readings, set point changes events.

A carrier's reefer platform sends ``ReeferEvent`` objects (DCSA Reefer 1.0.0-Beta-1,
``gateway/events/specs/dcsa/reefer_v1.0.0-Beta-1.yaml``): one object, an array, or JSON Lines
(:mod:`gateway.feeds.json_messages`). Each has ``metadata`` (eventID, eventCreatedDateTime,
eventType ``REEFER``, publisher, publisherRole, optionally ``retractedEventID``) and a
``payload`` (eventClassifierCode ``ACT``, eventDateTime, reeferEventTypeCode ``MEAS`` or
``ADJU``, measurements, setpoints, geoLocation, equipmentReference, relatedDocumentReferences).

Validation
----------
The Reefer API document defines no schemas of its own: it points at DCSA's shared domains on
SwaggerHub (``EVENT_DOMAIN/3.1.0#/components/schemas/reeferEvent``, which uses
``DCSA_DOMAIN/3.0.0``, ``LOCATION_DOMAIN/2.0.2`` and ``DCSA_DOMAIN/2.0.2``). Unchanged copies of
those four domains ship beside the Reefer document (``specs/dcsa/``; same repository and
licence) and a :mod:`referencing` registry serves them under their SwaggerHub URLs, so
:mod:`jsonschema` resolves every ``$ref`` offline. The schemas are read as JSON Schema 2020-12
so that objects built with ``allOf`` can be closed: every property and array item gets
``unevaluatedProperties: false``, and a field the spec does not define (a typo such as
``temprature``) is refused, like the T&T mapping's closed-world check. A compiled validator
(``jsonschema_rs``) passes valid events in microseconds; :mod:`jsonschema`, the reference,
explains a refusal (the pattern of :mod:`gateway.jsonbody`).
One defect of the published domains is corrected when they are loaded: ``geoLocation``'s
``latitude`` and ``longitude`` are strings in ``DCSA_DOMAIN/2.0.2`` while every example of the
Reefer document sends numbers (``latitude: 48.8585500``); both are accepted, and either must be
a number within range. Rules the spec states only in words are checked too:

- ``payload`` is required unless ``metadata.retractedEventID`` is given, and then it "MUST not
  be included" (``payload-with-retraction``);
- ``MEAS`` needs ``measurements``, ``ADJU`` needs ``setpoints`` (``missing-measurements``,
  ``missing-setpoints``);
- ``airExchange`` needs its ``airExchangeUnit`` (the spec's "conditional field"); a temperature
  needs its ``temperatureUnit`` (the spec leaves it implicit; a temperature in an unknown unit
  is refused: ``missing-temperature-unit``).

Mapping
-------
``MEAS`` → a ``reefer`` :class:`~gateway.telemetry.model.Reading` (not an event: readings are
anchored in batches), subject the container (``equipmentReference``, ISO 6346; a wrong check
digit is kept and flagged in ``values.flags``), time ``eventDateTime``, values: ``eventID``,
``eventTypeCode``, ``temperature`` and ``ambientTemperature`` in °C, ``unit`` ``CEL``,
``humidity`` ``o2`` ``co2`` (%), ``airExchange`` and ``airExchangeUnit``, ``setpoint`` (the set
point temperature, °C) and ``setpoints`` (the other set points), ``lat`` / ``lon`` from
``geoLocation``, ``documents`` (``relatedDocumentReferences``). Fahrenheit values are converted
to °C and the original objects are kept under ``original`` (``{"measurements": {...},
"setpoints": {...}}`` as sent).

``ADJU`` → a canonical ``REEFER.ADJU`` event (classifier ``ACT``, subject the container,
related the booking (``BKG``) and transport document (``TRD``, a master B/L), details
``eventID``, ``setpoints`` (°C, ``unit`` ``CEL``), ``original``, ``geoLocation``, other
``documents``, ``flags``) **and** a ``reefer`` reading carrying the new ``setpoint`` (so the set
point history and the temperatures sit in one series).

Retraction (``metadata.retractedEventID``, no payload) → a ``reefer`` reading without subject
(the retraction names no container), time ``eventCreatedDateTime``, values ``eventID``,
``eventTypeCode`` ``RETRACTION`` and ``retractedEventID``: the telemetry store then drops the
reading of the same organisation whose ``eventID`` it names from every history. An ``ADJU`` event already on chain is not retracted by the
adapter, which cannot know its on-chain id; its key (``feed:dcsa-reefer:<eventID>:0``) is what
the intake would look it up by (not done yet).

Keys: ``feed:dcsa-reefer:<eventID>:0`` (:func:`gateway.feeds.json_messages.event_key`); an
``eventID`` seen twice in one input is a duplicate (same event, skipped) or refused
(``duplicate-event-id``).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from gateway.events.model import CanonicalEvent, EventError, Reference, parse_time
from gateway.feeds import json_messages
from gateway.feeds.json_messages import JsonMessage, SeenIds
from gateway.feeds.model import (
    MessageError,
    ParsedEvent,
    ParseResult,
    checked,
    not_this_format,
    reference,
)
from gateway.telemetry.model import Reading

FORMAT = "dcsa-reefer"

#: Where the DCSA specifications are read from (the copies shipped with the gateway).
SPEC_DIR = Path(os.environ.get("PORTLEDGER_DCSA_SPEC_DIR",
                               Path(__file__).resolve().parents[1] / "events" / "specs" / "dcsa"))

#: The Reefer API document (its examples are the reference samples).
REEFER_SPEC = "reefer_v1.0.0-Beta-1.yaml"

_SWAGGERHUB = "https://api.swaggerhub.com/domains/dcsaorg/"

#: SwaggerHub domain URL → the shipped copy of it.
DOMAINS: dict[str, str] = {
    _SWAGGERHUB + "EVENT_DOMAIN/3.1.0": "event_domain_v3.1.0.yaml",
    _SWAGGERHUB + "DCSA_DOMAIN/3.0.0": "dcsa_domain_v3.0.0.yaml",
    _SWAGGERHUB + "DCSA_DOMAIN/2.0.2": "dcsa_domain_v2.0.2.yaml",
    _SWAGGERHUB + "LOCATION_DOMAIN/2.0.2": "dcsa_location_v2.0.2.yaml",
}

#: The schema of one event.
REEFER_EVENT = _SWAGGERHUB + "EVENT_DOMAIN/3.1.0#/components/schemas/reeferEvent"

#: DCSA document types that are references of ours.
_DOCUMENT_KINDS = {"BKG": "booking", "TRD": "mbl"}

#: The measured (and set) values a reading carries, by their DCSA names.
_MEASURED = ("temperature", "ambientTemperature", "humidity", "o2", "co2", "airExchange",
             "airExchangeUnit")

_SNIFF = re.compile(r'"eventType"\s*:\s*"REEFER"')
_MARKERS = frozenset({"metadata", "payload", "reeferEventTypeCode", "retractedEventID"})


# -- the spec --------------------------------------------------------------------------------
def _close(node: Any) -> None:
    """Add ``unevaluatedProperties: false`` to every property and item schema under ``node``."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
            continue
        if not isinstance(current, dict):
            continue
        for key, value in current.items():
            if key == "properties" and isinstance(value, dict):
                for schema in value.values():
                    if isinstance(schema, dict):
                        schema.setdefault("unevaluatedProperties", False)
            elif key == "items" and isinstance(value, dict):
                value.setdefault("unevaluatedProperties", False)
            if key != "example":
                stack.append(value)


@functools.cache
def _domains() -> dict[str, Any]:
    """The four domain documents by URL, closed and with the geoLocation fix."""
    out = {}
    for url, name in DOMAINS.items():
        try:
            with open(SPEC_DIR / name, encoding="utf-8") as file:
                document = yaml.safe_load(file)
        except OSError as exc:
            raise RuntimeError(f"DCSA domain not readable at {SPEC_DIR / name}: {exc}") from None
        out[url] = document
    schemas = out[_SWAGGERHUB + "DCSA_DOMAIN/2.0.2"]["components"]["schemas"]
    for name in ("latitude", "longitude"):
        schemas[name] = {"type": ["string", "number"], "maxLength": schemas[name]["maxLength"]}
    for document in out.values():
        _close(document.get("components", {}).get("schemas", {}))
    return out


def _date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_time(value, field="") > 0


_ROOT = {"$ref": REEFER_EVENT, "unevaluatedProperties": False}


@functools.cache
def validator() -> Draft202012Validator:
    """The reference validator of one ``reeferEvent`` (explains refusals; built once)."""
    registry: Registry[Any] = Registry()
    for url, document in _domains().items():
        registry = registry.with_resource(url, DRAFT202012.create_resource(document))
    checker = FormatChecker(())
    checker.checks("date-time", raises=(EventError,))(_date_time)
    return Draft202012Validator(_ROOT, registry=registry, format_checker=checker)


def _rs_date_time(value: str) -> bool:
    try:
        return _date_time(value)
    except EventError:
        return False


@functools.cache
def _compiled() -> Any:
    """The compiled validator (``jsonschema_rs``, microseconds per event): the hot path."""
    documents = [(url, json.loads(json.dumps(doc, default=str)))  # YAML dates in examples
                 for url, doc in _domains().items()]
    registry = jsonschema_rs.Registry(documents, draft=jsonschema_rs.Draft202012)
    return jsonschema_rs.Draft202012Validator(_ROOT, registry=registry, validate_formats=True,
                                              formats={"date-time": _rs_date_time})


def validate(event: Any) -> dict[str, Any]:
    """Check one Reefer 1.0 event against the spec and its worded rules; return it.

    The compiled validator answers "valid" on the hot path; the reference implementation
    (:mod:`jsonschema`) explains a refusal, deepest problem first (as
    :mod:`gateway.jsonbody` does for request bodies).

    Raises
    ------
    MessageError
        ``invalid-dcsa-event`` (with the JSON pointer of the problem) or one of the worded
        rules' codes (module doc).
    """
    if not isinstance(event, dict):
        raise MessageError("invalid-dcsa-event", "/: a DCSA Reefer event is a JSON object")
    if not _compiled().is_valid(event):
        errors = sorted(validator().iter_errors(event),
                        key=lambda e: (-len(e.absolute_path), [str(p) for p in e.absolute_path]))
        if errors:
            first = errors[0]
            where = "/" + "/".join(str(p) for p in first.absolute_path)
            raise MessageError("invalid-dcsa-event", "not a valid DCSA Reefer 1.0 event: "
                               f"{where}: {first.message[:300]}")
    retracted = "retractedEventID" in event["metadata"]
    payload = event.get("payload")
    if retracted and payload is not None:
        raise MessageError("payload-with-retraction",
                           "/payload: a retraction (metadata.retractedEventID) has no payload")
    if retracted:
        return event
    if payload is None:
        raise MessageError("missing-payload", "/payload: required unless the event retracts one")
    code = payload["reeferEventTypeCode"]
    if code == "MEAS" and "measurements" not in payload:
        raise MessageError("missing-measurements", "/payload/measurements: required for MEAS")
    if code == "ADJU" and "setpoints" not in payload:
        raise MessageError("missing-setpoints", "/payload/setpoints: required for ADJU")
    for part in ("measurements", "setpoints"):
        values = payload.get(part) or {}
        if "airExchange" in values and "airExchangeUnit" not in values:
            raise MessageError("missing-air-exchange-unit",
                               f"/payload/{part}/airExchangeUnit: required with airExchange")
        if (("temperature" in values or "ambientTemperature" in values)
                and "temperatureUnit" not in values):
            raise MessageError("missing-temperature-unit",
                               f"/payload/{part}/temperatureUnit: required with a temperature")
    return event


# -- the adapter -----------------------------------------------------------------------------
def sniff(data: bytes) -> bool:
    """JSON whose metadata says ``"eventType": "REEFER"``."""
    text = json_messages.head(data)
    return json_messages.looks_like_json(text) and _SNIFF.search(text) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """Readings and set point events of a DCSA Reefer 1.0 feed; never raises."""
    del received_at  # every reefer event carries its own times
    if not json_messages.looks_like_json(json_messages.head(data)):
        return not_this_format(FORMAT, "not JSON: DCSA Reefer events are JSON objects")
    items = json_messages.read(data)
    messages = [m for m in items if isinstance(m, JsonMessage)]
    if messages and not any(json_messages.mentions(m.value, _MARKERS, 2) for m in messages):
        return not_this_format(FORMAT, "no DCSA Reefer event in it (no metadata / payload)")
    seen = SeenIds()

    def take(item: JsonMessage) -> json_messages.Taken:
        events, readings = _message(item, seen)
        return None if readings is None else (events, readings)

    result = json_messages.collect(FORMAT, items, take, stats=("retractions",))
    result.stats["retractions"] = sum(1 for r in result.readings if r.subject is None)
    return result


def _message(item: JsonMessage, seen: SeenIds,
             ) -> tuple[list[ParsedEvent], list[Reading] | None]:
    """The events and readings of one reefer event (None readings: a duplicate)."""
    event = validate(item.value)
    metadata = event["metadata"]
    event_id: str = metadata["eventID"]
    verdict = seen.check(event_id, event)
    if verdict == "duplicate":
        return [], None
    if verdict == "conflict":
        raise MessageError("duplicate-event-id",
                           f"/metadata/eventID: {event_id} names another event earlier "
                           "in the feed")
    if "retractedEventID" in metadata:
        created = _time(metadata["eventCreatedDateTime"], "/metadata/eventCreatedDateTime")
        return [], [Reading("reefer", created, None, {
            "eventID": event_id, "eventTypeCode": "RETRACTION",
            "retractedEventID": metadata["retractedEventID"]}, item.line)]

    payload = event["payload"]
    flags: list[dict[str, str]] = []
    container = reference("container", payload["equipmentReference"], flags,
                          field="/payload/equipmentReference")
    when = _time(payload["eventDateTime"], "/payload/eventDateTime")
    code = payload["reeferEventTypeCode"]
    measured = _celsius(payload.get("measurements") or {})
    set_to = _celsius(payload.get("setpoints") or {})
    original = {part: payload[part] for part in ("measurements", "setpoints")
                if (payload.get(part) or {}).get("temperatureUnit") == "FAH"}
    location = _geo(payload.get("geoLocation"))
    related, documents = _documents(payload.get("relatedDocumentReferences") or [])

    values: dict[str, Any] = {"eventID": event_id, "eventTypeCode": code}
    values.update({k: v for k, v in measured.items() if k in _MEASURED})
    if "temperature" in set_to:
        values["setpoint"] = set_to["temperature"]
    others = {k: v for k, v in set_to.items() if k in _MEASURED and k != "temperature"}
    if others:
        values["setpoints"] = others
    if measured.get("unit") or set_to.get("unit"):
        values["unit"] = "CEL"
    if original:
        values["original"] = original
    if location:
        values.update(location)
    if documents or related:
        values["documents"] = payload["relatedDocumentReferences"]
    if flags:
        values["flags"] = flags
    reading = Reading("reefer", when, container, values, item.line)
    if code != "ADJU":
        return [], [reading]

    details: dict[str, Any] = {"eventID": event_id, "setpoints": set_to}
    if original:
        details["original"] = original
    if location:
        details["geoLocation"] = location
    if documents:
        details["documents"] = documents
    if flags:
        details["flags"] = flags
    adjusted = checked(CanonicalEvent("REEFER.ADJU", "ACT", when, container,
                                      related=tuple(related), details=details))
    key = json_messages.event_key(FORMAT, event_id, 0)
    return [ParsedEvent(adjusted, key, item.line)], [reading]


def _time(text: str, where: str) -> int:
    try:
        return parse_time(text, field=where)
    except EventError as exc:
        raise MessageError("invalid-time", f"{where}: {exc}") from None


def _celsius(values: dict[str, Any]) -> dict[str, Any]:
    """Measured or set values with temperatures in °C (``unit`` ``CEL`` when there are any)."""
    out = copy.deepcopy(values)
    unit = out.pop("temperatureUnit", None)
    for name in ("temperature", "ambientTemperature"):
        if name in out and unit == "FAH":
            try:
                out[name] = round((float(out[name]) - 32) * 5 / 9, 3)
            except OverflowError:
                raise MessageError("invalid-dcsa-event",
                                   f"/{name}: {str(out[name])[:20]}... is out of range") from None
    if unit is not None:
        out["unit"] = "CEL"
    return out


def _geo(location: Any) -> dict[str, float]:
    """``geoLocation`` as ``lat`` / ``lon`` in degrees, checked."""
    if not location:
        return {}
    out = {}
    for name, short, limit in (("latitude", "lat", 90.0), ("longitude", "lon", 180.0)):
        raw = location[name]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise MessageError("invalid-geolocation",
                               f"/payload/geoLocation/{name}: {raw!r} is not a number") from None
        if not math.isfinite(value) or abs(value) > limit:
            raise MessageError("invalid-geolocation",
                               f"/payload/geoLocation/{name}: {raw!r} is out of range")
        out[short] = value
    return out


def _documents(items: list[dict[str, str]]) -> tuple[list[Reference], list[dict[str, str]]]:
    """Related booking / B/L references, and the document references that are not ours."""
    related: list[Reference] = []
    rest: list[dict[str, str]] = []
    for i, item in enumerate(items):
        kind = _DOCUMENT_KINDS.get(item.get("type", ""))
        if kind is None:
            rest.append(item)
            continue
        try:
            found = reference(kind, item.get("value", ""), [],
                              field=f"/payload/relatedDocumentReferences/{i}/value")
        except MessageError:  # not a reference number of ours: kept as DCSA sent it
            rest.append(item)
            continue
        if found not in related:
            related.append(found)
    return related, rest

