"""Subscriptions' HTTP API: DCSA ``/v2/event-subscriptions`` and the deliveries extension.

Handlers parse and check the request (callback URL, secret, DCSA filters) and call the store
of ``app[SUBSCRIPTIONS]``; each route's path and OpenAPI operation are written once, on its
handler. :func:`setup` adds the routes, the service's lifecycle and its readiness check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway import appkeys, openapi, ops
from gateway.appkeys import SUBSCRIPTIONS
from gateway.errors import BadRequest, Conflict, NotFound, Unprocessable
from gateway.jsonbody import read_json
from gateway.principal import require
from gateway.subscriptions import service
from gateway.subscriptions.model import (
    DELIVERY_STATES,
    CallbackRefused,
    check_callback_url,
    decode_secret,
)
from gateway.subscriptions.resolver import check_callback_resolves_public
from gateway.subscriptions.store import TooManySubscriptions
from gateway.tracking import dcsa
from gateway.tracking.dcsa import DcsaFilter, FilterError, filter_from_fields

_LIST = {"type": "array", "uniqueItems": True}
FILTER_PROPERTIES: dict[str, Any] = {
    **{
        name: {**_LIST, "maxItems": len(values), "items": {"enum": list(values)}}
        for name, values in dcsa.LIST_FILTERS.items()
    },
    **{
        name: {"type": "string", "minLength": 1, "maxLength": max_length}
        for name, (_, max_length) in dcsa.VALUE_FILTERS.items()
    },
    "bookingReference": {"type": "string", "minLength": 1, "maxLength": 35,
                         "deprecated": True, "description": "Use carrierBookingReference."},
    "carrierVoyageNumber": {"type": "string", "minLength": 1, "maxLength": 50,
                            "deprecated": True, "description": "Use exportVoyageNumber."},
}
_CALLBACK = {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2048}
_SECRET = {
    "type": "string",
    "contentEncoding": "base64",
    "minLength": 1,
    "maxLength": 1400,
    "writeOnly": True,
    "description": "Base64 of 16 to 1024 random bytes (the HMAC-SHA256 key). Write-only.",
}

#: ``POST /v2/event-subscriptions`` (DCSA ``subscriptionBodyWithSecret``).
CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["callbackUrl", "secret"],
    "properties": {"callbackUrl": _CALLBACK, "secret": _SECRET, **FILTER_PROPERTIES},
}
#: ``PUT /v2/event-subscriptions/{id}`` (DCSA ``subscription``; the secret must be omitted).
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["callbackUrl"],
    "properties": {
        "subscriptionID": {"type": "string", "format": "uuid"},
        "callbackUrl": _CALLBACK,
        **FILTER_PROPERTIES,
    },
}
#: ``PUT /v2/event-subscriptions/{id}/secret``.
SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["secret"],
    "properties": {"secret": _SECRET},
}
SUBSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subscriptionID", "callbackUrl"],
    "properties": {
        "subscriptionID": {"type": "string", "format": "uuid"},
        "callbackUrl": _CALLBACK,
        **FILTER_PROPERTIES,
    },
}
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "deliveryID": {"type": "integer"},
        "subscriptionID": {"type": "string"},
        "status": {"enum": list(DELIVERY_STATES)},
        "attempts": {"type": "integer"},
        "eventIDs": {"type": "array", "items": {"type": "integer"}},
        "created": {"type": "string"},
        "nextAttempt": {"type": ["string", "null"]},
        "finished": {"type": ["string", "null"]},
        "lastStatus": {"type": ["integer", "null"]},
        "lastError": {"type": ["string", "null"]},
    },
}


api = openapi.Routes(tag="DCSA")

_SUB_REF = {"$ref": "#/components/schemas/DcsaSubscription"}
_SUBSCRIPTION_ID = openapi.path_parameter("subscriptionID", {"type": "string", "format": "uuid"})
#: Every operation can answer these.
_ERRORS = (401, 403, 404, 429)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _subscription_id(request: web.Request) -> str:
    raw = request.match_info["subscriptionID"].lower()
    if not _UUID.match(raw):
        raise NotFound("no such subscription", code="subscription-not-found")
    return raw


def _filter(body: Mapping[str, Any]) -> DcsaFilter:
    try:
        return filter_from_fields(
            {k: v for k, v in body.items() if k not in ("callbackUrl", "secret", "subscriptionID")}
        )
    except FilterError as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"field": exc.parameter}) from None


async def _callback(request: web.Request, url: Any) -> str:
    service = request.app[SUBSCRIPTIONS]
    allow = service.settings.allow_private_callbacks
    try:
        checked = check_callback_url(url, allow_private=allow)
        if not allow:
            await check_callback_resolves_public(checked)
    except CallbackRefused as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"field": "callbackUrl"}) from None
    return checked


def _secret(raw: Any) -> bytes:
    try:
        return decode_secret(raw)
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid-secret", details={"field": "secret"}) from None


def _not_found() -> NotFound:
    return NotFound("no such subscription", code="subscription-not-found")



@api.get("/v2/event-subscriptions", openapi.operation(
    "DCSA: list your organisation's subscriptions",
    parameters=[
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1,
                                          "maximum": dcsa.MAX_LIMIT}),
        openapi.query_parameter("cursor", {"type": "string", "maxLength": 4096}),
    ],
    ok_schema={"type": "array", "items": _SUB_REF}, errors=(*_ERRORS, 400),
))
async def list_subscriptions(request: web.Request) -> web.Response:
    """DCSA: the caller's organisation's subscriptions, paged."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    codec = request.app[appkeys.DCSA_CURSORS]
    unknown = sorted(set(request.query) - {"limit", "cursor", "sort"})
    try:
        if unknown:
            raise FilterError(f"unknown query parameter {unknown[0]!r}",
                              code="unknown-parameter", parameter=unknown[0])
        limit = dcsa.parse_limit(request.query.get("limit"))
        sort = request.query.get("sort")
        if sort is not None and sort.strip() not in ("created", "created:ASC"):
            raise FilterError("sort supports created:ASC only", code="unsupported-sort",
                              parameter="sort")
        after = 0
        if "cursor" in request.query:
            payload = codec.decode(request.query["cursor"])
            if payload.get("v") != 1 or payload.get("o") != principal.org_id or "s" not in payload:
                raise FilterError("cursor was issued to another caller", code="invalid-cursor",
                                  parameter="cursor")
            after = int(payload["s"])
    except FilterError as exc:
        raise dcsa.bad_request(exc) from None
    rows = request.app[SUBSCRIPTIONS].store.page(principal.org_id, after, limit + 1)
    headers = {"Current-Page": dcsa.page_link(request, None)}
    if len(rows) > limit:
        rows = rows[:limit]
        token = codec.encode({"v": 1, "o": principal.org_id, "s": rows[-1][0]})
        headers["Next-Page"] = dcsa.page_link(request, {"cursor": token,
                                                            "limit": str(limit)})
    return web.json_response([sub.to_json() for _, sub in rows], headers=headers)


@api.post("/v2/event-subscriptions", openapi.operation(
    "DCSA: subscribe a callback to events (HMAC-SHA256 signed)",
    body=CREATE_SCHEMA, ok=201, ok_schema=_SUB_REF, errors=(*_ERRORS, 400, 409, 413, 415, 422),
))
async def create_subscription(request: web.Request) -> web.Response:
    """DCSA: create a subscription (201 with it, without the secret)."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    body = await read_json(request, CREATE_SCHEMA)
    service = request.app[SUBSCRIPTIONS]
    url = await _callback(request, body["callbackUrl"])
    secret = _secret(body["secret"])
    flt = _filter(body)
    try:
        sub = service.store.create(
            principal.org_id, url, secret, flt, limit=service.settings.max_per_organisation
        )
    except TooManySubscriptions:
        raise Conflict(
            f"an organisation holds at most {service.settings.max_per_organisation} "
            "subscriptions; delete one first",
            code="too-many-subscriptions",
        ) from None
    return web.json_response(sub.to_json(), status=201)


@api.get("/v2/event-subscriptions/{subscriptionID}", openapi.operation(
    "DCSA: one subscription", parameters=[_SUBSCRIPTION_ID], ok_schema=_SUB_REF, errors=_ERRORS,
))
async def get_subscription(request: web.Request) -> web.Response:
    """DCSA: one subscription of the caller's organisation."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    sub = request.app[SUBSCRIPTIONS].store.get(principal.org_id, _subscription_id(request))
    if sub is None:
        raise _not_found()
    return web.json_response(sub.to_json())


@api.put("/v2/event-subscriptions/{subscriptionID}", openapi.operation(
    "DCSA: change callback URL and filters", parameters=[_SUBSCRIPTION_ID], body=UPDATE_SCHEMA,
    ok_schema=_SUB_REF, errors=(*_ERRORS, 400, 413, 415, 422),
))
async def put_subscription(request: web.Request) -> web.Response:
    """DCSA: replace a subscription's callback URL and filters (not its secret)."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    sub_id = _subscription_id(request)
    store = request.app[SUBSCRIPTIONS].store
    if store.get(principal.org_id, sub_id) is None:
        raise _not_found()
    body = await read_json(request, UPDATE_SCHEMA)
    if body.get("subscriptionID", sub_id).lower() != sub_id:
        raise BadRequest("subscriptionID in the body differs from the path",
                         code="subscription-id-mismatch")
    url = await _callback(request, body["callbackUrl"])
    sub = store.update(principal.org_id, sub_id, url, _filter(body))
    if sub is None:
        raise _not_found()
    return web.json_response(sub.to_json())


@api.delete("/v2/event-subscriptions/{subscriptionID}", openapi.operation(
    "DCSA: stop a subscription", parameters=[_SUBSCRIPTION_ID], ok=204, errors=_ERRORS,
))
async def delete_subscription(request: web.Request) -> web.Response:
    """DCSA: stop a subscription (queued deliveries are dropped)."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    if not request.app[SUBSCRIPTIONS].store.delete(principal.org_id, _subscription_id(request)):
        raise _not_found()
    return web.Response(status=204)


@api.put("/v2/event-subscriptions/{subscriptionID}/secret", openapi.operation(
    "DCSA: rotate the secret (later attempts, retries included, use it)",
    parameters=[_SUBSCRIPTION_ID], body=SECRET_SCHEMA, ok=204,
    errors=(*_ERRORS, 400, 413, 415, 422),
))
async def put_secret(request: web.Request) -> web.Response:
    """DCSA: replace the secret; every later attempt (retries included) uses the new one."""
    principal = require(request, "events:read")
    dcsa.check_api_version(request)
    sub_id = _subscription_id(request)
    store = request.app[SUBSCRIPTIONS].store
    if store.get(principal.org_id, sub_id) is None:
        raise _not_found()
    body = await read_json(request, SECRET_SCHEMA)
    if not store.set_secret(principal.org_id, sub_id, _secret(body["secret"])):
        raise _not_found()
    return web.Response(status=204)


@api.get("/v1/subscriptions/{subscriptionID}/deliveries", openapi.operation(
    "A subscription's deliveries: status, attempts, last error (extension)",
    parameters=[
        _SUBSCRIPTION_ID,
        openapi.query_parameter("status", {"enum": list(DELIVERY_STATES)}),
        openapi.query_parameter("before", {"type": "integer", "minimum": 0}),
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    ],
    ok_schema={"type": "object", "properties": {
        "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}},
    errors=(*_ERRORS, 400),
))
async def list_deliveries(request: web.Request) -> web.Response:
    """Extension: a subscription's deliveries, newest first, with attempts and errors."""
    principal = require(request, "events:read")
    sub_id = _subscription_id(request)
    query = request.query
    unknown = sorted(set(query) - {"status", "before", "limit"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}", code="unknown-parameter")
    status = query.get("status")
    if status is not None and status not in DELIVERY_STATES:
        raise BadRequest(f"status is one of {', '.join(DELIVERY_STATES)}", code="invalid-filter")
    before = query.get("before")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) < 19):
        raise BadRequest("before is a delivery id", code="invalid-filter")
    limit_raw = query.get("limit", "50")
    if not (limit_raw.isascii() and limit_raw.isdigit() and len(limit_raw) <= 4) or not (
        1 <= int(limit_raw) <= 500
    ):
        raise BadRequest("limit is an integer from 1 to 500", code="invalid-filter")
    found = request.app[SUBSCRIPTIONS].store.deliveries(
        principal.org_id,
        sub_id,
        status=status,
        before=int(before) if before is not None else None,
        limit=int(limit_raw),
    )
    if found is None:
        raise _not_found()
    return web.json_response({"deliveries": [d.to_json() for d in found]})



def setup(app: web.Application) -> None:
    """Add the subscription routes, the store and delivery worker, and the indexer listener."""
    app.cleanup_ctx.append(service.service_context)
    if appkeys.READINESS in app:
        ops.add_readiness_check(app, "subscriptions", service.ready)
    api.install(app, schemas={"DcsaSubscription": SUBSCRIPTION_SCHEMA,
                              "Delivery": DELIVERY_SCHEMA})
