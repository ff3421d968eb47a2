"""DCSA Track & Trace 2.2 download: ``GET /v2/events`` with the standard's filters and paging.

A DCSA client (a shipper's TMS, a forwarder's visibility platform) asks for events the way the
standard (``specs/dcsa/tnt_v2.2.0.bundled.yaml``) defines: filters as query parameters, a page
of at most ``limit`` events as a JSON array, and the next page through the ``Next-Page``
header. The gateway answers from its read model, with only the events the caller's
organisation may read (:meth:`gateway.tracking.service.Tracking.events` decides and decrypts;
this module never sees an event the caller may not read), rendered by
:func:`gateway.events.dcsa.to_dcsa`.

Filters
-------
One model, :class:`DcsaFilter`, serves both this endpoint and event subscriptions
(:mod:`gateway.subscriptions`), because DCSA gives both the same filter fields. A filter is
matched against the *rendered* DCSA event (:func:`matches`), so what a client filters on is
exactly what it receives. The DCSA rules:

- different filters combine with AND; the values of one list filter (``eventType=SHIPMENT,
  EQUIPMENT``) combine with OR;
- a filter that only exists on one kind of event (``shipmentEventTypeCode``,
  ``transportEventTypeCode``, ``equipmentEventTypeCode``, ``documentTypeCode``) matches only
  that kind, so ``shipmentEventTypeCode=DRFT&equipmentEventTypeCode=GTIN`` is empty, as the
  standard's own example says;
- ``eventCreatedDateTime`` takes the operators ``:gte :gt :lte :lt :eq`` (none = ``:eq``).

References given as filters (``carrierBookingReference``, ``transportDocumentReference``,
``equipmentReference``, ``vesselIMONumber``) are references the caller *holds*: records their
owners made readable to "holders of the reference" become readable (see DESIGN.md,
Confidentiality). Each is checked and normalised with :func:`gateway.events.identifiers.normalise`
(a container number must pass ISO 6346), and a bad one is a 400 naming the check that failed.
With a reference filter the read model lists the events *about* that reference (whose subject
it is, :class:`gateway.tracking.service.EventQuery`); a container's discharge that names its B/L only
as a related reference is found by the container number, or, among what the caller reads
anyway (its own events, those naming it, those granted to it), with no reference filter and
the other filters (``documentReferences`` are matched on the rendered event).

Parameters the standard does not define are refused (400 ``unknown-parameter``): a typo in a
filter name must not silently widen the answer. The standard's deprecated aliases
``bookingReference`` and ``carrierVoyageNumber`` are accepted; ``transportDocumentID`` and
``scheduleID`` (deprecated, UUIDs this gateway does not have) are refused with the field to use
instead. ``sort`` accepts the order the gateway serves, ``eventCreatedDateTime`` ascending.

Cursors
-------
The ``cursor`` a client sends back is opaque and *signed*: it carries the caller's
organisation, the whole filter and the read model's own position, HMAC-SHA256'd with a key
kept in the data directory (``dcsa-cursor.key``), so a client can neither forge a position
nor replay another organisation's cursor, and a cursor stays valid across gateway restarts.
A cursor that fails the check is a 400 ``invalid-cursor``. With a cursor, filter parameters
may be repeated (they must equal the cursor's) or left out; ``limit`` may change per page.
A page can hold fewer than ``limit`` events while ``Next-Page`` is still present (the scan
per request is bounded); only a missing ``Next-Page`` means the end.

Errors use the gateway's JSON error body (:mod:`gateway.errors`), the same for every 4xx of
the gateway, rather than DCSA's ``error`` object.

This module is the pure part (filters, matching, cursors, the parsed request); the handler
and its OpenAPI operation are :mod:`gateway.tracking.dcsa_api`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gateway.appkeys import CONFIG
from gateway.errors import BadRequest
from gateway.events import dcsa, identifiers
from gateway.events.model import EventError, Reference, parse_time
from gateway.tracking.service import EventQuery
from gateway.tracking.visibility import VisibleEvent

#: Version of the DCSA Track & Trace standard these endpoints implement (``API-Version``).
API_VERSION = "2.2.0"

#: DCSA event types (``eventType``).
EVENT_TYPES: tuple[str, ...] = ("SHIPMENT", "TRANSPORT", "EQUIPMENT")
#: ``shipmentEventTypeCode`` values of the 2.2 schema.
SHIPMENT_EVENT_TYPE_CODES: tuple[str, ...] = (
    "RECE", "DRFT", "PENA", "PENU", "REJE", "APPR", "ISSU", "SURR", "SUBM", "VOID", "CONF",
    "REQS", "CMPL", "HOLD", "RELS",
)  # fmt: skip
#: ``documentTypeCode`` values.
DOCUMENT_TYPE_CODES: tuple[str, ...] = (
    "CBR", "BKG", "SHI", "SRM", "TRD", "ARN", "VGM", "CAS", "CUS", "DGD", "OOG",
)  # fmt: skip
#: ``transportEventTypeCode`` values.
TRANSPORT_EVENT_TYPE_CODES: tuple[str, ...] = ("ARRI", "DEPA")
#: ``equipmentEventTypeCode`` values.
EQUIPMENT_EVENT_TYPE_CODES: tuple[str, ...] = (
    "LOAD", "DISC", "GTIN", "GTOT", "STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD",
)  # fmt: skip

#: Operators of ``eventCreatedDateTime`` (``eventCreatedDateTime:gte=...``).
CREATED_OPERATORS: tuple[str, ...] = ("gte", "gt", "lte", "lt", "eq")

#: Page size when the client gives none (the standard's default) and the largest it may ask.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: List filters: DCSA name -> allowed values.
LIST_FILTERS: dict[str, tuple[str, ...]] = {
    "eventType": EVENT_TYPES,
    "shipmentEventTypeCode": SHIPMENT_EVENT_TYPE_CODES,
    "documentTypeCode": DOCUMENT_TYPE_CODES,
    "transportEventTypeCode": TRANSPORT_EVENT_TYPE_CODES,
    "equipmentEventTypeCode": EQUIPMENT_EVENT_TYPE_CODES,
}

#: Single-value filters: DCSA name -> (identifier kind for identifiers.normalise, or None for
#: free text, and the standard's maxLength).
VALUE_FILTERS: dict[str, tuple[str | None, int]] = {
    "carrierBookingReference": ("booking", 35),
    "transportDocumentReference": ("mbl", 20),
    "transportCallID": (None, 100),
    "vesselIMONumber": ("vessel", 7),
    "exportVoyageNumber": (None, 50),
    "carrierServiceCode": (None, 5),
    "UNLocationCode": ("unlocode", 5),
    "equipmentReference": ("container", 15),
}

#: Deprecated DCSA fields accepted as another name of a current one.
ALIASES: dict[str, str] = {
    "bookingReference": "carrierBookingReference",
    "carrierVoyageNumber": "exportVoyageNumber",
}

#: Deprecated DCSA fields refused, with the field to use instead.
UNSUPPORTED: dict[str, str] = {
    "transportDocumentID": "transportDocumentReference",
    "scheduleID": "transportCallID, vesselIMONumber or exportVoyageNumber",
    "transportDocumentTypeCode": "documentTypeCode",
}

#: Reference kinds (events.REFERENCE_KINDS) of the reference filters a caller holds.
HELD_REFERENCE_KINDS: dict[str, str] = {
    "carrierBookingReference": "booking",
    "transportDocumentReference": "mbl",
    "equipmentReference": "container",
    "vesselIMONumber": "vessel",
}

#: The creation-time filter (``CREATED:op`` with an operator of :data:`CREATED_OPERATORS`).
CREATED = "eventCreatedDateTime"
#: Every query parameter ``GET /v2/events`` takes.
EVENT_QUERY_PARAMETERS: frozenset[str] = frozenset(
    [*LIST_FILTERS, *VALUE_FILTERS, *ALIASES, *UNSUPPORTED, CREATED]
    + [f"{CREATED}:{op}" for op in CREATED_OPERATORS]
    + ["limit", "cursor", "sort"]
) - {"transportDocumentTypeCode"}  # a subscription-body field only


class FilterError(ValueError):
    """A filter, limit, sort or cursor the client sent is not acceptable.

    Attributes
    ----------
    code : str
        Stable error code (``unknown-parameter``, ``invalid-filter``, ``invalid-cursor``, or
        the identifier check's own code such as ``invalid-check-digit``).
    parameter : str
        The parameter or body field at fault.
    """

    def __init__(self, message: str, *, code: str = "invalid-filter", parameter: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.parameter = parameter


@dataclass(frozen=True)
class DcsaFilter:
    """What a DCSA client asks for: the filters of ``GET /v2/events`` and of a subscription.

    Empty sets and ``None`` mean "no filter". Values are normalised (upper case, identifier
    separators removed, check digits verified).
    """

    event_types: frozenset[str] = frozenset()
    """``eventType``: SHIPMENT, TRANSPORT, EQUIPMENT (OR)."""
    shipment_event_type_codes: frozenset[str] = frozenset()
    """``shipmentEventTypeCode`` (OR); matches shipment events only."""
    document_type_codes: frozenset[str] = frozenset()
    """``documentTypeCode`` (OR); matches shipment events only."""
    transport_event_type_codes: frozenset[str] = frozenset()
    """``transportEventTypeCode`` (OR); matches transport events only."""
    equipment_event_type_codes: frozenset[str] = frozenset()
    """``equipmentEventTypeCode`` (OR); matches equipment events only."""
    values: tuple[tuple[str, str], ...] = ()
    """Single-value filters as sorted ``(DCSA name, normalised value)`` pairs."""
    created: tuple[tuple[str, int], ...] = ()
    """``eventCreatedDateTime`` bounds as ``(operator, Unix seconds)`` pairs."""

    def value(self, name: str) -> str | None:
        """The normalised value of a single-value filter, or None."""
        for key, val in self.values:
            if key == name:
                return val
        return None

    @property
    def held_references(self) -> tuple[Reference, ...]:
        """The references this filter names, which the caller therefore holds."""
        return tuple(
            Reference(HELD_REFERENCE_KINDS[name], val)
            for name, val in self.values
            if name in HELD_REFERENCE_KINDS
        )

    def to_json(self) -> dict[str, Any]:
        """DCSA field names and values (lists sorted); what :func:`filter_from_json` reads."""
        out: dict[str, Any] = {}
        for name, codes in self._lists().items():
            if codes:
                out[name] = sorted(codes)
        for name, val in self.values:
            out[name] = val
        for op, seconds in self.created:
            out[f"{CREATED}:{op}"] = seconds
        return out

    def _lists(self) -> dict[str, frozenset[str]]:
        return {
            "eventType": self.event_types,
            "shipmentEventTypeCode": self.shipment_event_type_codes,
            "documentTypeCode": self.document_type_codes,
            "transportEventTypeCode": self.transport_event_type_codes,
            "equipmentEventTypeCode": self.equipment_event_type_codes,
        }


def normalise_value(name: str, raw: str) -> str:
    """Check and normalise one single-value filter.

    Raises
    ------
    FilterError
        The value is too long, empty, or fails its identifier check (ISO 6346, IMO, ...).
    """
    kind, max_length = VALUE_FILTERS[name]
    text = raw.strip()
    if not text:
        raise FilterError(f"{name} is empty", parameter=name)
    if len(text) > max_length:
        raise FilterError(f"{name} is longer than {max_length} characters", parameter=name)
    if kind is None:
        if not text.isprintable():
            raise FilterError(f"{name} holds control characters", parameter=name)
        return text
    try:
        return identifiers.normalise(kind, text)
    except identifiers.IdentifierError as exc:
        raise FilterError(f"{name}: {exc}", code=exc.code, parameter=name) from None


def _codes(name: str, values: Iterable[str]) -> frozenset[str]:
    allowed = LIST_FILTERS[name]
    out = set()
    for raw in values:
        value = raw.strip().upper()
        if value not in allowed:
            raise FilterError(
                f"{name}: {raw!r} is not one of {', '.join(allowed)}", parameter=name
            )
        out.add(value)
    return frozenset(out)


def filter_from_fields(fields: Mapping[str, Any]) -> DcsaFilter:
    """Build a :class:`DcsaFilter` from DCSA-named fields (lists as lists or comma strings).

    Used for query parameters and subscription bodies alike. ``eventCreatedDateTime`` and its
    ``:op`` forms take an ISO 8601 date-time with a zone (or Unix seconds, as stored).

    Raises
    ------
    FilterError
        An unknown or unsupported field, a value outside the standard's code lists, a bad
        identifier, a bad date-time.
    """
    lists: dict[str, frozenset[str]] = {}
    values: dict[str, str] = {}
    created: dict[str, int] = {}
    for raw_name, raw in fields.items():
        name = ALIASES.get(raw_name, raw_name)
        if raw_name in UNSUPPORTED:
            raise FilterError(
                f"{raw_name} is deprecated by DCSA and not supported; use "
                f"{UNSUPPORTED[raw_name]}",
                code="unsupported-parameter",
                parameter=raw_name,
            )
        if name in LIST_FILTERS:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise FilterError(f"{name} is a list of codes", parameter=name)
            lists[name] = lists.get(name, frozenset()) | _codes(name, items)
        elif name in VALUE_FILTERS:
            if not isinstance(raw, str):
                raise FilterError(f"{name} is a string", parameter=name)
            value = normalise_value(name, raw)
            if values.get(name, value) != value:
                raise FilterError(f"{name} is given twice with different values", parameter=name)
            values[name] = value
        elif name == CREATED or name.startswith(CREATED + ":"):
            op = name.partition(":")[2] or "eq"
            if op not in CREATED_OPERATORS:
                raise FilterError(
                    f"{name}: the operators are {', '.join(CREATED_OPERATORS)}",
                    code="unknown-parameter",
                    parameter=name,
                )
            created[op] = _seconds(name, raw)
        else:
            raise FilterError(
                f"unknown filter {raw_name!r}", code="unknown-parameter", parameter=raw_name
            )
    return DcsaFilter(
        event_types=lists.get("eventType", frozenset()),
        shipment_event_type_codes=lists.get("shipmentEventTypeCode", frozenset()),
        document_type_codes=lists.get("documentTypeCode", frozenset()),
        transport_event_type_codes=lists.get("transportEventTypeCode", frozenset()),
        equipment_event_type_codes=lists.get("equipmentEventTypeCode", frozenset()),
        values=tuple(sorted(values.items())),
        created=tuple(sorted(created.items())),
    )


def filter_from_json(stored: Mapping[str, Any]) -> DcsaFilter:
    """Read :meth:`DcsaFilter.to_json` output back (stored filters, cursor payloads)."""
    return filter_from_fields(stored)


def _seconds(name: str, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise FilterError(f"{name} is a date-time", parameter=name)
    # An unencoded "+01:00" in a query string arrives as " 01:00".
    text = raw.strip().replace(" ", "+")
    try:
        return parse_time(text, field=name)
    except EventError as exc:
        raise FilterError(f"{name}: {exc}", parameter=name) from None


# -- matching a rendered DCSA event ---------------------------------------------------------


def _norm(text: Any) -> str:
    """Compare references as identifiers.normalise leaves them: upper case, alphanumerics."""
    return "".join(ch for ch in str(text).upper() if ch.isalnum())


def _document_references(event: Mapping[str, Any], kinds: tuple[str, ...]) -> set[str]:
    found = {
        _norm(ref.get("documentReferenceValue", ""))
        for ref in event.get("documentReferences") or ()
        if isinstance(ref, Mapping) and str(ref.get("documentReferenceType", ""))[:3] in kinds
    }
    if event.get("eventType") == "SHIPMENT" and event.get("documentTypeCode") in kinds:
        found.add(_norm(event.get("documentID", "")))
    return found


def _event_values(event: Mapping[str, Any]) -> dict[str, set[str]]:
    """Every value of ``event`` a single-value filter can match, by DCSA filter name."""
    call = event.get("transportCall") or {}
    vessel = call.get("vessel") or {}
    location = event.get("eventLocation") or {}
    house_refs = {
        _norm(ref.get("referenceValue", ""))
        for ref in event.get("references") or ()
        if isinstance(ref, Mapping) and ref.get("referenceType") == "FF"
    }
    equipment = {_norm(event["equipmentReference"])} if event.get("equipmentReference") else set()
    equipment |= {
        _norm(ref.get("referenceValue", ""))
        for ref in event.get("references") or ()
        if isinstance(ref, Mapping) and ref.get("referenceType") == "EQ"
    }
    voyages = {call.get("exportVoyageNumber"), call.get("carrierVoyageNumber")} - {None}
    return {
        "carrierBookingReference": _document_references(event, ("BKG", "CBR")),
        # A house B/L travels as the forwarder's reference (FF); its holder tracks by it.
        "transportDocumentReference": _document_references(event, ("TRD",)) | house_refs,
        "transportCallID": {str(call["transportCallID"])} if call.get("transportCallID") else set(),
        "vesselIMONumber": {_norm(vessel["vesselIMONumber"])}
        if vessel.get("vesselIMONumber")
        else set(),
        "exportVoyageNumber": {str(v) for v in voyages},
        "carrierServiceCode": {str(call["carrierServiceCode"])}
        if call.get("carrierServiceCode")
        else set(),
        "UNLocationCode": {
            _norm(code)
            for code in (call.get("UNLocationCode"), location.get("UNLocationCode"))
            if code
        },
        "equipmentReference": equipment,
    }


_COMPARE = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
    "eq": lambda a, b: a == b,
}


def matches(flt: DcsaFilter, event: Mapping[str, Any]) -> bool:
    """Whether a rendered DCSA event passes every filter of ``flt`` (the DCSA rules above)."""
    kind = event.get("eventType")
    if flt.event_types and kind not in flt.event_types:
        return False
    typed = (
        ("SHIPMENT", flt.shipment_event_type_codes, "shipmentEventTypeCode"),
        ("SHIPMENT", flt.document_type_codes, "documentTypeCode"),
        ("TRANSPORT", flt.transport_event_type_codes, "transportEventTypeCode"),
        ("EQUIPMENT", flt.equipment_event_type_codes, "equipmentEventTypeCode"),
    )
    for event_type, codes, name in typed:
        if codes and (kind != event_type or event.get(name) not in codes):
            return False
    if flt.values:
        have = _event_values(event)
        for name, wanted in flt.values:
            candidates = have[name]
            if name in ("transportCallID", "exportVoyageNumber", "carrierServiceCode"):
                if wanted not in candidates:
                    return False
            elif _norm(wanted) not in candidates:
                return False
    if flt.created:
        try:
            created = parse_time(str(event.get("eventCreatedDateTime", "")))
        except EventError:
            return False
        if not all(_COMPARE[op](created, bound) for op, bound in flt.created):
            return False
    return True


# -- the request: parameters, limit, sort, cursor -------------------------------------------


class CursorCodec:
    """Signs and checks the opaque paging cursors (HMAC-SHA256, truncated to 128 bits)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a cursor key has at least 32 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> CursorCodec:
        """The codec whose key is stored at ``path`` (created, mode 0600, if missing)."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(32)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # first writer wins if two start at once
        tmp.unlink(missing_ok=True)
        return cls(path.read_bytes())

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, payload: Mapping[str, Any]) -> str:
        """An opaque, URL-safe token carrying ``payload``."""
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return f"{_b64(raw)}.{_b64(self._mac(raw))}"

    def decode(self, token: str) -> dict[str, Any]:
        """The payload of a token this codec made.

        Raises
        ------
        FilterError
            (code ``invalid-cursor``) the token is malformed or its signature is wrong.
        """
        bad = FilterError(
            "cursor is not one this gateway issued (send the Next-Page value unchanged)",
            code="invalid-cursor",
            parameter="cursor",
        )
        if len(token) > 4096 or token.count(".") != 1:
            raise bad
        body, mac = token.split(".")
        try:
            raw, tag = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise bad from None
        if not hmac.compare_digest(tag, self._mac(raw)):
            raise bad
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise bad
        return payload


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not all(ch.isalnum() or ch in "-_" for ch in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PageRequest:
    """One parsed ``GET /v2/events`` request."""

    filter: DcsaFilter
    """What to return."""
    limit: int
    """Most events on the page."""
    position: str | None = None
    """The read model's own cursor (from a verified client cursor), or None for page one."""


def parse_limit(raw: str | None) -> int:
    """The ``limit`` parameter: 1 .. :data:`MAX_LIMIT`, :data:`DEFAULT_LIMIT` if absent."""
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        raise FilterError(f"limit is an integer from 1 to {MAX_LIMIT}", parameter="limit")
    return int(raw)


def parse_sort(raw: str | None) -> None:
    """``sort``: only the order served, ``eventCreatedDateTime`` ascending, is accepted."""
    if raw is None:
        return
    if raw.strip() not in ("eventCreatedDateTime", "eventCreatedDateTime:ASC"):
        raise FilterError(
            "sort supports eventCreatedDateTime:ASC only (events are served in the order "
            "they were recorded)",
            code="unsupported-sort",
            parameter="sort",
        )


def parse_page_request(
    query: MultiMapping[str], *, codec: CursorCodec, org_id: int
) -> PageRequest:
    """Parse the query of ``GET /v2/events`` (pure but for the cursor key).

    Parameters
    ----------
    query : MultiMapping[str]
        The request's query parameters.
    codec : CursorCodec
        Checks the cursor's signature.
    org_id : int
        The caller's organisation; a cursor issued to another one is refused.

    Raises
    ------
    FilterError
        Unknown or repeated parameters, bad values, a bad or foreign cursor.
    """
    for name in query:
        if name not in EVENT_QUERY_PARAMETERS:
            raise FilterError(
                f"unknown query parameter {name!r}", code="unknown-parameter", parameter=name
            )
        if len(query.getall(name)) > 1:
            raise FilterError(
                f"{name} is given more than once (separate list values by commas)",
                parameter=name,
            )
    limit = parse_limit(query.get("limit"))
    parse_sort(query.get("sort"))
    fields = {k: v for k, v in query.items() if k not in ("limit", "cursor", "sort")}
    flt = filter_from_fields(fields)
    token = query.get("cursor")
    if token is None:
        return PageRequest(flt, limit)
    payload = codec.decode(token)
    if payload.get("v") != 1 or payload.get("o") != org_id or "p" not in payload:
        raise FilterError(
            "cursor was issued to another caller or is of an old version",
            code="invalid-cursor",
            parameter="cursor",
        )
    stored = filter_from_json(payload.get("f", {}))
    if fields and flt != stored:
        raise FilterError(
            "the filters differ from the cursor's; send the cursor alone or with the same "
            "filters",
            code="invalid-cursor",
            parameter="cursor",
        )
    return PageRequest(stored, limit, str(payload["p"]))


def cursor_for(codec: CursorCodec, org_id: int, flt: DcsaFilter, position: str) -> str:
    """The client cursor of the page after ``position`` for this caller and filter."""
    return codec.encode({"v": 1, "o": org_id, "f": flt.to_json(), "p": position})


def check_api_version(request: web.Request) -> None:
    """A request's ``API-Version`` header, if present, must name major version 2."""
    asked = request.headers.get("API-Version")
    if asked is not None and asked.strip().split(".")[0] != API_VERSION.split(".")[0]:
        raise BadRequest(
            f"API-Version {asked!r} is not served here; this is DCSA Track & Trace "
            f"{API_VERSION} (send 2 or nothing)",
            code="unsupported-api-version",
        )


def bad_request(exc: FilterError) -> BadRequest:
    """The 400 a :class:`FilterError` becomes."""
    return BadRequest(str(exc), code=exc.code, details={"parameter": exc.parameter})


# -- reading through tracking ---------------------------------------------------------------


#: Canonical event types DCSA 2.2 expresses, by their DCSA (event type, event type code).
DCSA_TYPES: dict[str, tuple[str, str]] = {
    **{f"SHIPMENT.{c}": ("SHIPMENT", c) for c in SHIPMENT_EVENT_TYPE_CODES},
    **{f"TRANSPORT.{c}": ("TRANSPORT", c) for c in TRANSPORT_EVENT_TYPE_CODES},
    **{f"TERMINAL.{c}": ("EQUIPMENT", c) for c in ("LOAD", "DISC", "GTIN", "GTOT")},
    **{
        f"EQUIPMENT.{c}": ("EQUIPMENT", c)
        for c in ("STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD")
    },
}


def canonical_types(flt: DcsaFilter) -> tuple[str, ...] | None:
    """The canonical ``FAMILY.CODE`` types the type filters of ``flt`` allow.

    Returns
    -------
    tuple or None
        The allowed types (empty when the filters contradict each other, e.g. a shipment and
        an equipment code together), or None when the filters allow every DCSA type.
    """
    codes = {
        "SHIPMENT": flt.shipment_event_type_codes,
        "TRANSPORT": flt.transport_event_type_codes,
        "EQUIPMENT": flt.equipment_event_type_codes,
    }
    allowed = []
    for name, (dcsa_type, code) in DCSA_TYPES.items():
        if flt.event_types and dcsa_type not in flt.event_types:
            continue
        if flt.document_type_codes and dcsa_type != "SHIPMENT":
            continue
        if any(wanted and (dcsa_type != kind or code not in wanted)
               for kind, wanted in codes.items()):
            continue
        allowed.append(name)
    return None if len(allowed) == len(DCSA_TYPES) else tuple(allowed)


def event_query(flt: DcsaFilter) -> EventQuery:
    """The read model's query for ``flt``: what it can index is pushed down.

    Pushed down: the references the filter names (the caller holds them, so records readable
    by reference holders become readable; :class:`gateway.tracking.service.EventQuery` then selects
    the events *about* them, i.e. whose subject they are), the event types, and the lower
    bound of the creation time (the block time). Every filter is applied again to the
    rendered event by :func:`matches`, which alone decides; the push-down only narrows the
    scan and never widens what is shown.
    """
    created_after = None
    for op, bound in flt.created:
        after = bound if op == "gt" else bound - 1 if op in ("gte", "eq") else None
        if after is not None:
            created_after = after if created_after is None else max(created_after, after)
    return EventQuery(
        references=flt.held_references,
        event_types=canonical_types(flt) or (),
        created_after=created_after,
    )


def render(visible: VisibleEvent) -> dict[str, Any] | None:
    """The DCSA form of a visible event, or None for events DCSA 2.2 cannot express
    (reefer readings, air, land, warehouse and customs events are served by the canonical
    tracking API)."""
    if not dcsa.expressible(visible.event):
        return None
    return dcsa.to_dcsa(visible)


def page_link(request: web.Request, query: Mapping[str, str] | None) -> str:
    """A paging link (``Current-Page``, ``Next-Page``...) to this path with ``query``.

    Relative to the host unless ``config.public_url`` is set, so a gateway behind a reverse
    proxy never hands out its internal address.
    """
    url = request.rel_url if query is None else request.rel_url.with_query(query)
    return request.app[CONFIG].public_url.rstrip("/") + str(url)
