"""The upload API's event routes: canonical events (one, a list, bulk), DCSA 2.2 events, status.

``setup`` adds these and the other upload routes (:mod:`gateway.intake.bills_of_lading`,
:mod:`gateway.intake.grants`) to the app, each documented where it is declared.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contracts import ROLES
from gateway import errors, jsonbody, openapi, principal
from gateway.appkeys import CONFIG, OUTBOX
from gateway.events import dcsa
from gateway.events.model import EVENT_SCHEMA, EventError, from_json
from gateway.intake import bills_of_lading, grants
from gateway.intake.model import (
    ACCEPTED,
    EVENTS_BODY_SCHEMA,
    IDEMPOTENCY_HEADER,
    ITEM_SCHEMA,
    LIST_SCHEMA,
    MAX_BULK_ITEMS,
    RECEIPT_SCHEMA,
    RECEIPTS_SCHEMA,
    ItemError,
    receipt_json,
)
from gateway.intake.rules import parse_item, parse_ndjson
from gateway.intake.service import (
    Parsed,
    accept_events,
    caller_roles,
    idempotency_header,
    visibility_query,
    writer,
)

routes = openapi.Routes(
    tag="Upload",
    description="Upload events (canonical, DCSA 2.2, bulk), bills of lading and grants; "
                "follow submissions",
)


@routes.post("/v1/events", openapi.operation(
    "Upload canonical events",
    description="One canonical event (the Idempotency-Key header is required) or "
                '`{"events": [{"id": ..., ...event}]}` (each item\'s `id` is its idempotency '
                "key).",
    body=EVENTS_BODY_SCHEMA,
    parameters=[{**IDEMPOTENCY_HEADER,
                 "description": "Required for a single event; ignored for a list."}],
    **ACCEPTED,
))
async def post_events(request: web.Request) -> web.Response:
    """One canonical event (``Idempotency-Key`` header) or ``{"events": [...]}``."""
    who = writer(request)
    body = await jsonbody.read_json(request)
    parsed: Parsed
    if isinstance(body, dict) and "events" in body:
        jsonbody.check(body, LIST_SCHEMA)
        parsed = [parse_item(item, i, ITEM_SCHEMA) for i, item in enumerate(body["events"])]
    else:
        key = idempotency_header(request, required=True)
        jsonbody.check(body, EVENT_SCHEMA)
        try:
            parsed = [(key, from_json(body))]
        except EventError as exc:
            raise errors.Unprocessable(str(exc), code=exc.code,
                                       details={"path": exc.field}) from None
    return await accept_events(request, who, parsed)


@routes.post("/v1/events/bulk", openapi.operation(
    "Bulk upload of canonical events",
    description="NDJSON (one event with its `id` per line) or a JSON array. All or nothing: "
                "the 422 body lists every refused item (`error.details.items`).",
    body={"type": "array", "items": ITEM_SCHEMA},
    body_types=("application/json", "application/x-ndjson"),
    **ACCEPTED,
))
async def post_bulk(request: web.Request) -> web.Response:
    """Many canonical events: NDJSON (one per line) or a JSON array; all or nothing."""
    who = writer(request)
    limit = request.app[CONFIG].max_bulk_body_bytes
    ctype = request.content_type
    if ctype not in ("application/x-ndjson", "application/json"):
        raise errors.UnsupportedMediaType(
            f"send application/x-ndjson or application/json, not {ctype}")
    raw = await jsonbody.read_bytes(request, limit)
    items: list[Any]
    if ctype == "application/json":
        items = jsonbody.parse(raw)
        if not isinstance(items, list):
            raise errors.Unprocessable("a JSON bulk upload is an array of events",
                                       code="schema-violation")
    else:
        items = parse_ndjson(raw)
    if not items:
        raise errors.Unprocessable("no events in the upload", code="empty-upload")
    if len(items) > MAX_BULK_ITEMS:
        raise errors.PayloadTooLarge(f"{len(items)} events; at most {MAX_BULK_ITEMS} per upload")
    parsed: Parsed = [
        (None, item) if isinstance(item, ItemError) else parse_item(item, i, ITEM_SCHEMA)
        for i, item in enumerate(items)
    ]
    return await accept_events(request, who, parsed)


@routes.post("/v2/events", openapi.operation(
    "Upload DCSA Track & Trace 2.2 events",
    description="One DCSA 2.2 SHIPMENT, TRANSPORT or EQUIPMENT event or a list, validated "
                "against the DCSA specification (unknown fields refused). The idempotency key "
                "is the Idempotency-Key header (suffixed /<index> for a list) or else each "
                "eventID. Query `visibility` (named | reference) and `readers` "
                "(comma-separated organisation ids) choose who may read them.",
    body={"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
    parameters=[
        IDEMPOTENCY_HEADER,
        openapi.query_parameter("visibility", {"enum": ["named", "reference"]}),
        openapi.query_parameter("readers", {"type": "string", "pattern": r"^\d+(,\d+)*$"}),
    ],
    **ACCEPTED,
))
async def post_dcsa_events(request: web.Request) -> web.Response:
    """DCSA T&T 2.2 event(s) in; each becomes canonical event(s) in the outbox."""
    who = writer(request)
    header = idempotency_header(request, required=False)
    visibility = visibility_query(request)
    body = await jsonbody.read_json(request)
    events = body if isinstance(body, list) else [body]
    if not events or len(events) > 1000:
        raise errors.Unprocessable("send one DCSA event or a list of 1 to 1000",
                                   code="schema-violation")
    roles = caller_roles(request, who)
    document_kind = "hbl" if roles & ROLES["forwarder"] and not roles & ROLES["carrier"] \
        else "mbl"
    parsed: Parsed = []
    for index, raw in enumerate(events):
        event_id = raw.get("eventID") if isinstance(raw, dict) else None
        if header is not None:
            base = header if len(events) == 1 else f"{header}/{index}"
        elif isinstance(event_id, str):
            base = f"dcsa:{event_id}"
        else:
            parsed.append((None, ItemError(index, None, 400, "missing-idempotency-key",
                                           "a DCSA event without eventID needs the "
                                           "Idempotency-Key header", "/eventID")))
            continue
        try:
            mapped = dcsa.from_dcsa(raw, visibility=visibility,
                                    transport_document_kind=document_kind)
        except dcsa.DcsaError as exc:
            parsed.append((base, ItemError(index, base, 422, exc.code, str(exc), exc.path)))
            continue
        for n, event in enumerate(mapped):
            parsed.append((base if len(mapped) == 1 else f"{base}#{n}", event))
    missing = [p for _, p in parsed if isinstance(p, ItemError) and p.status == 400]
    if missing:
        raise errors.BadRequest(missing[0].message, code=missing[0].code)
    return await accept_events(request, who, parsed)


@routes.get("/v1/submissions/{key}", openapi.operation(
    "Status of an upload",
    description="Where the operation with this idempotency key stands.",
    parameters=[openapi.path_parameter("key", {"type": "string"})],
    ok_schema={"$ref": "#/components/schemas/Receipt"},
    errors=(401, 403, 404, 429),
))
async def get_submission(request: web.Request) -> web.Response:
    """Where one of the caller's operations stands."""
    who = principal.require(request)
    if not who.scopes & {"events:write", "events:read"}:
        raise errors.Forbidden("this credential lacks the 'events:write' scope",
                               code="missing-scope")
    key = request.match_info["key"]
    receipt = request.app[OUTBOX].status(who.org_id, key)
    if receipt is None:
        raise errors.NotFound(f"no submission with key {key!r} from your organisation",
                              code="unknown-submission")
    return web.json_response(receipt_json(receipt))


def setup(app: web.Application) -> None:
    """Add the upload routes and document them."""
    routes.install(app, {"Receipt": RECEIPT_SCHEMA, "Receipts": RECEIPTS_SCHEMA})
    bills_of_lading.routes.install(app)
    app.cleanup_ctx.append(grants.register_ctx)
    grants.routes.install(app)
