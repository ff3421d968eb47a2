"""DCSA Track & Trace 2.2 download: the ``GET /v2/events`` handler, its OpenAPI operation and
``setup`` (the cursor key, the ``API-Version`` header of every ``/v2/`` answer).

The filters, their matching, the signed cursors and the parsing of a request are in
:mod:`gateway.tracking.dcsa` (whose docstring is also the operation's description); the events
come from :meth:`gateway.tracking.service.Tracking.events`, which decides and decrypts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import openapi
from gateway.appkeys import CONFIG, DCSA_CURSORS, TRACKING
from gateway.principal import Principal, require
from gateway.tracking import dcsa
from gateway.tracking.dcsa import (
    API_VERSION,
    CREATED,
    CREATED_OPERATORS,
    DEFAULT_LIMIT,
    DOCUMENT_TYPE_CODES,
    EQUIPMENT_EVENT_TYPE_CODES,
    EVENT_TYPES,
    MAX_LIMIT,
    SHIPMENT_EVENT_TYPE_CODES,
    TRANSPORT_EVENT_TYPE_CODES,
    VALUE_FILTERS,
    CursorCodec,
    FilterError,
    PageRequest,
    bad_request,
    canonical_types,
    check_api_version,
    cursor_for,
    event_query,
    matches,
    page_link,
    parse_page_request,
    render,
)
from gateway.tracking.service import Tracking

#: Read-model pages fetched per request at most while filling one page (bounds the scan).
MAX_SCAN_ROUNDS = 8

#: The operation's description: the DCSA rules of :mod:`gateway.tracking.dcsa` (filters, cursors).
OPERATION_DESCRIPTION = (dcsa.__doc__ or "").split("Errors use")[0]

api = openapi.Routes(tag="DCSA", description="DCSA Track & Trace 2.2 download and event "
                     "subscriptions")


async def collect_page(
    reader: Tracking, principal: Principal, page: PageRequest
) -> tuple[list[dict[str, Any]], str | None]:
    """Fill one page: read visible events, render, filter, until ``limit`` or the end.

    Each read asks for at most the number of events still missing, so a page never has to
    cut a read-model page in half (the next cursor is always a read-model cursor). At most
    :data:`MAX_SCAN_ROUNDS` reads are made; the page may then be short, with a cursor.

    Returns
    -------
    tuple
        The rendered events and the read model's cursor after them (None at the end).
    """
    out: list[dict[str, Any]] = []
    position = page.position
    if canonical_types(page.filter) == ():
        return out, None  # contradictory filters: the standard's "empty list"
    query = event_query(page.filter)
    for _ in range(MAX_SCAN_ROUNDS):
        batch, position = await reader.events(principal, query, position, page.limit - len(out))
        for visible in batch:
            rendered = render(visible)
            if rendered is not None and matches(page.filter, rendered):
                out.append(rendered)
        if position is None or len(out) >= page.limit:
            break
    return out, position


def _list_parameter(name: str, values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": description,
        "schema": {"type": "array", "items": {"type": "string", "enum": list(values)}},
    }


def _value_parameter(name: str, max_length: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": max_length},
    }


_VALUE_DESCRIPTIONS = {
    "carrierBookingReference": "Carrier booking reference (held by the caller).",
    "transportDocumentReference": "Master or house B/L number (held by the caller).",
    "transportCallID": "Transport call id.",
    "vesselIMONumber": "IMO number (7 digits, check digit verified).",
    "exportVoyageNumber": "Export voyage number.",
    "carrierServiceCode": "Carrier service code.",
    "UNLocationCode": "UN/LOCODE of the transport call or event location.",
    "equipmentReference": "Container number (ISO 6346, check digit verified; held by the "
    "caller).",
}

EVENTS_PARAMETERS: list[dict[str, Any]] = [
    _list_parameter("eventType", EVENT_TYPES, "Event types (OR)."),
    _list_parameter(
        "shipmentEventTypeCode", SHIPMENT_EVENT_TYPE_CODES, "Shipment event codes (OR)."
    ),
    _list_parameter("documentTypeCode", DOCUMENT_TYPE_CODES, "Document type codes (OR)."),
    _list_parameter(
        "transportEventTypeCode", TRANSPORT_EVENT_TYPE_CODES, "Transport event codes (OR)."
    ),
    _list_parameter(
        "equipmentEventTypeCode", EQUIPMENT_EVENT_TYPE_CODES, "Equipment event codes (OR)."
    ),
    *(
        _value_parameter(name, max_length, _VALUE_DESCRIPTIONS[name])
        for name, (_, max_length) in VALUE_FILTERS.items()
    ),
    {**_value_parameter("bookingReference", 35, "Deprecated: carrierBookingReference."),
     "deprecated": True},
    {**_value_parameter("carrierVoyageNumber", 50, "Deprecated: exportVoyageNumber."),
     "deprecated": True},
    *(
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"Creation time {label} (ISO 8601 with a zone).",
            "schema": {"type": "string", "format": "date-time"},
        }
        for name, label in [
            (CREATED, "equal to"),
            *((f"{CREATED}:{op}", op) for op in CREATED_OPERATORS),
        ]
    ),
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                   "default": DEFAULT_LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Opaque cursor from a Next-Page header.",
        "schema": {"type": "string", "maxLength": 4096},
    },
    {
        "name": "sort",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["eventCreatedDateTime",
                                              "eventCreatedDateTime:ASC"]},
    },
    {
        "name": "API-Version",
        "in": "header",
        "required": False,
        "description": "Major version asked for: 2.",
        "schema": {"type": "string", "enum": ["2", "2.2", "2.2.0"]},
    },
]

_PAGE_HEADERS = {
    "API-Version": {"schema": {"type": "string"}, "description": "DCSA version served."},
    "Current-Page": {"schema": {"type": "string"}, "description": "This page."},
    "First-Page": {"schema": {"type": "string"}, "description": "The first page."},
    "Next-Page": {
        "schema": {"type": "string"},
        "description": "The next page (absent on the last page).",
    },
}


@api.get("/v2/events", openapi.operation(
    "DCSA Track & Trace 2.2: events the caller may read, filtered and paged",
    description=OPERATION_DESCRIPTION,
    parameters=EVENTS_PARAMETERS,
    ok_description="A page of DCSA events",
    ok_schema={"type": "array", "items": {"type": "object"}},
    ok_headers=_PAGE_HEADERS,
    errors=(400, 401, 403, 429),
    operationId="dcsaGetEvents",
))
async def get_events(request: web.Request) -> web.Response:
    """DCSA ``GET /v2/events``."""
    principal = require(request, "events:read")
    check_api_version(request)
    codec = request.app[DCSA_CURSORS]
    try:
        page = parse_page_request(request.query, codec=codec, org_id=principal.org_id)
    except FilterError as exc:
        raise bad_request(exc) from None
    events, position = await collect_page(request.app[TRACKING], principal, page)
    headers = {
        "Current-Page": page_link(request, None),
        "First-Page": page_link(request, {k: v for k, v in request.query.items()
                                          if k != "cursor"}),
    }
    if position is not None:
        token = cursor_for(codec, principal.org_id, page.filter, position)
        headers["Next-Page"] = page_link(request, {"cursor": token, "limit": str(page.limit)})
    return web.json_response(events, headers=headers)


def setup(app: web.Application) -> None:
    """Add ``GET /v2/events``, its cursor key and its OpenAPI operation."""

    async def cursors(app: web.Application) -> AsyncIterator[None]:
        app[DCSA_CURSORS] = CursorCodec.from_file(app[CONFIG].path("dcsa-cursor.key"))
        yield

    async def api_version(request: web.Request, response: web.StreamResponse) -> None:
        # Every DCSA (/v2/) answer, errors included, names the standard's version served.
        if request.path.startswith("/v2/"):
            response.headers.setdefault("API-Version", API_VERSION)

    app.cleanup_ctx.append(cursors)
    app.on_response_prepare.append(api_version)
    api.install(app)
