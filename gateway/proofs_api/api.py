"""Proof bundles' HTTP API: owners export them, banks request them, owners decide.

``POST /v1/proofs`` exports a bundle of the caller's choice (:mod:`gateway.proofs_api.bundles`);
``/v1/proof-requests`` lets a requester ask an owner, the owner approve (the bundle is made then
and stored) or decline, the requester withdraw or download (each download is written to the
owner's access log with ``via = "proof"`` for every event of the bundle). Scopes:
``proofs:export`` (export, and decide requests about the organisation's data) and
``proofs:request`` (ask others, download what they approved). Each route's path and OpenAPI
operation are written once, on its handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import openapi
from gateway.appkeys import ACCOUNTS, CONFIG, PROOF_REQUESTS, READ_MODEL, TRACKING
from gateway.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from gateway.events import identifiers
from gateway.isotime import iso_or_none
from gateway.jsonbody import read_json
from gateway.principal import Principal, require
from gateway.proofs_api.bundles import MAX_EVENTS, Selection, encode_bundle, make_bundle
from gateway.proofs_api.readings import make_reading_bundle
from gateway.proofs_api.store import (
    FILE_NAME,
    STATES,
    ProofRequest,
    ProofRequestError,
    ProofRequestStore,
)
from gateway.readside.readmodel import AccessEntry
from gateway.telemetry import service as telemetry

#: Scope of exporting bundles of the organisation's events and deciding requests about them.
EXPORT_SCOPE = "proofs:export"
#: Scope of requesting bundles from other organisations and downloading them.
REQUEST_SCOPE = "proofs:request"

api = openapi.Routes(tag="proofs", description="Proof bundles banks verify offline, "
                     "and requests for them")

_BUNDLE = {"application/json": {"schema": {
    "type": "object", "description": "A portledger-proof/2 bundle (docs/proof-format.md)",
    "required": ["format", "chainId", "events"]}}}
_REQUEST_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ProofRequest"}}}
_REQUEST_ID = openapi.path_parameter("request_id", {"type": "string", "format": "uuid"})
#: Every operation can answer these.
_ERRORS = (401, 403, 404, 429)

_IDS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "minItems": 1, "maxItems": MAX_EVENTS, "uniqueItems": True}
_DISCLOSE = {
    "description": "Events to disclose (plaintext, and data key unless dataKeys is false): "
    "\"all\" of the owner's events in the bundle, \"none\", or a list of event ids.",
    "anyOf": [{"enum": ["all", "none"]}, {**_IDS, "minItems": 0}],
}
_REFERENCE = {"type": "string", "minLength": 1, "maxLength": 64,
              "description": "Master or house B/L, container, booking, air waybill, ..."}

EXPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reference"],
    "additionalProperties": False,
    "properties": {
        "reference": _REFERENCE,
        "events": {"enum": ["own", "visible"],
                   "description": "own (default): your events; visible: every event you see"},
        "eventIds": {**_IDS, "description": "Only these events of the reference"},
        "disclose": _DISCLOSE,
        "dataKeys": {"type": "boolean", "description": "Disclose data keys (default true)"},
    },
}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["owner", "reference", "purpose"],
    "additionalProperties": False,
    "properties": {
        "owner": {"type": "integer", "minimum": 1, "maximum": 2**32 - 1,
                  "description": "Consortium organisation id of the owner asked"},
        "reference": _REFERENCE,
        "purpose": {"type": "string", "minLength": 1, "maxLength": 1000},
        "eventIds": {**_IDS, "description": "Only these events (default: all the owner's)"},
        "disclose": _DISCLOSE,
    },
}

APPROVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "eventIds": {**_IDS, "description": "Prove these (default: what was asked)"},
        "disclose": _DISCLOSE,
        "dataKeys": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 1000},
    },
}

DECLINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reason"],
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
}

PROOF_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "owner", "requester", "reference", "purpose", "status", "history"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "owner": {"type": "object"},
        "requester": {"type": "object"},
        "reference": {"type": "string"},
        "purpose": {"type": "string"},
        "wanted": {"type": "object"},
        "status": {"enum": list(STATES)},
        "createdAt": {"type": "string"},
        "decidedAt": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "granted": {"type": ["object", "null"]},
        "bundle": {"type": ["object", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
    },
}


def bundle_response(bundle: dict[str, Any] | bytes, reference: str) -> web.Response:
    """The bundle as a JSON download named after the reference."""
    body = bundle if isinstance(bundle, bytes) else encode_bundle(bundle)
    name = "".join(c for c in reference if c.isascii() and c.isalnum())[:40] or "shipment"
    return web.Response(
        body=body, content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="portledger-proof-{name}.json"'},
    )



def _party(app: web.Application, chain_org: int) -> dict[str, Any]:
    return {"id": chain_org, "name": app[TRACKING].publisher_name(chain_org)}


def _request_json(app: web.Application, req: ProofRequest, store: ProofRequestStore) -> dict[str, Any]:
    return {
        "id": req.id,
        "owner": _party(app, req.owner_chain),
        "requester": _party(app, req.requester_chain),
        "reference": req.reference,
        "purpose": req.purpose,
        "wanted": req.wanted.to_json(),
        "status": req.status,
        "createdAt": iso_or_none(req.created),
        "decidedAt": iso_or_none(req.decided),
        "reason": req.reason,
        "granted": req.granted,
        "bundle": None if req.status != "approved" else {
            "events": len(req.proven), "bytes": req.bundle_size,
            "href": f"/v1/proof-requests/{req.id}/bundle",
        },
        "history": [
            {"time": iso_or_none(h.time), "organisation": _party(app, h.org), "actor": h.actor,
             "action": h.action, "detail": h.detail}
            for h in store.history(req.id)
        ],
    }


def _text(value: Any, field: str) -> Any:
    """``value`` if it is storable text (JSON may carry lone surrogates, which are not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unprocessable(f"{field} is not valid Unicode text", code="invalid-text") from None
    return value


def _member(principal: Principal) -> int:
    if principal.chain_org is None:
        raise Forbidden("your organisation is not a member of the chain yet",
                        code="not-a-member")
    return principal.chain_org


def _normalised(reference: str) -> str:
    found = identifiers.detect(reference)
    if not found:
        raise BadRequest(f"{reference[:40]!r} is not a reference number", code="not-a-reference")
    return found[0].value


def _find(request: web.Request, principal: Principal) -> ProofRequest:
    """The request named in the path, if the caller is one of its parties (else 404)."""
    store = request.app[PROOF_REQUESTS]
    found = store.get(request.match_info["request_id"])
    if found is None or principal.org_id not in (found.owner_org, found.requester_org):
        raise NotFound("no such proof request", code="unknown-proof-request")
    return found


def _as_owner(request: web.Request) -> tuple[Principal, ProofRequest]:
    principal = require(request, EXPORT_SCOPE)
    found = _find(request, principal)
    if found.owner_org != principal.org_id:
        raise Forbidden("only the owner asked decides this request", code="not-the-owner")
    if found.status != "pending":
        raise Conflict(f"this request is {found.status} already", code="already-decided")
    return principal, found


def _decided(app: web.Application, store: ProofRequestStore, request_id: str, actor: Principal,
             status: str, **kw: Any) -> web.Response:
    try:
        decided = store.decide(request_id, actor, status, **kw)
    except ProofRequestError:
        raise Conflict("this request was decided meanwhile", code="already-decided") from None
    return web.json_response(_request_json(app, decided, store))


@api.post("/v1/proofs", openapi.operation(
    "Export a proof bundle of your events of a shipment, disclosing the ones you choose "
    "(verify offline: portledger verify-proof FILE --genesis genesis.json)",
    body=EXPORT_SCHEMA, ok_content=_BUNDLE, errors=(*_ERRORS, 400, 409, 413, 415, 422, 503),
))
async def export_bundle(request: web.Request) -> web.Response:
    principal = require(request, EXPORT_SCOPE)
    _member(principal)
    body = await read_json(request, EXPORT_SCHEMA)
    made = await make_bundle(request.app, principal, body["reference"], Selection.from_json(body))
    return bundle_response(made.bundle, body["reference"])


READING_PROOF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "subject": {"type": "string", "maxLength": 80,
                    "description": "The reading's subject as kind:value, if you read it by "
                                   "reference (mode reference)"},
    },
}


@api.post("/v1/proofs/readings/{reading_id}", openapi.operation(
    "Export a proof bundle of an anchored telemetry reading you may read: the Anchored log "
    "and the reading's bytes with their Merkle proof (verify offline: portledger verify-proof)",
    parameters=[openapi.path_parameter("reading_id", {"type": "integer", "minimum": 1})],
    ok_content=_BUNDLE, errors=(*_ERRORS, 400, 409, 413, 415, 422, 503),
    requestBody={"required": False,
                 "content": {"application/json": {"schema": READING_PROOF_SCHEMA}}},
))
async def export_reading_bundle(request: web.Request) -> web.Response:
    principal = require(request)
    if not {EXPORT_SCOPE, REQUEST_SCOPE} & principal.scopes:
        raise Forbidden(f"this credential lacks the {EXPORT_SCOPE!r} or {REQUEST_SCOPE!r} scope",
                        code="missing-scope")
    text = request.match_info["reading_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or int(text) < 1:
        raise BadRequest("a reading id is a positive integer", code="bad-reading-id")
    body = await read_json(request, READING_PROOF_SCHEMA) if request.can_read_body else {}
    subject = telemetry.parse_subject(body["subject"]) if "subject" in body else None
    bundle = await make_reading_bundle(request.app, principal, int(text), subject)
    return bundle_response(bundle, f"reading{text}")


@api.post("/v1/proof-requests", openapi.operation(
    "Ask an organisation for a proof bundle of its events of a shipment",
    body=REQUEST_SCHEMA, ok=201, ok_content=_REQUEST_JSON, errors=(*_ERRORS, 400, 413, 415, 422),
))
async def create_request(request: web.Request) -> web.Response:
    principal = require(request, REQUEST_SCOPE)
    me = _member(principal)
    body = await read_json(request, REQUEST_SCHEMA)
    if body["owner"] == me:
        raise Unprocessable("export your own events with POST /v1/proofs", code="own-organisation")
    owner = request.app[ACCOUNTS].by_chain_org(body["owner"])
    if owner is None or owner.status != "active":
        raise NotFound(f"organisation {body['owner']} is not hosted on this gateway",
                       code="unknown-owner")
    wanted = Selection.from_json(body)
    store = request.app[PROOF_REQUESTS]
    made = store.create(principal, owner.id, body["owner"], _normalised(body["reference"]),
                        _text(body["purpose"], "purpose"), wanted)
    return web.json_response(_request_json(request.app, made, store), status=201,
                             headers={"Location": f"/v1/proof-requests/{made.id}"})


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} is an integer from {low} to {high}", code="bad-query")
    return int(raw)


@api.get("/v1/proof-requests", openapi.operation(
    "Proof requests to your organisation (incoming) and by it (outgoing)",
    parameters=[
        openapi.query_parameter("direction", {"enum": ["all", "incoming", "outgoing"]}),
        openapi.query_parameter("status", {"enum": list(STATES)}),
        openapi.query_parameter("before", {"type": "integer", "minimum": 0}),
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    ],
    errors=(*_ERRORS, 400),
))
async def list_requests(request: web.Request) -> web.Response:
    principal = require(request)
    direction = request.query.get("direction", "all")
    status = request.query.get("status")
    if direction not in ("all", "incoming", "outgoing") or status not in (None, *STATES):
        raise BadRequest("direction is all, incoming or outgoing; status one of "
                         + ", ".join(STATES), code="bad-query")
    incoming = direction != "outgoing" and EXPORT_SCOPE in principal.scopes
    outgoing = direction != "incoming" and REQUEST_SCOPE in principal.scopes
    if not incoming and not outgoing:
        raise Forbidden(f"this credential lacks the {EXPORT_SCOPE!r} or {REQUEST_SCOPE!r} scope",
                        code="missing-scope")
    before = _query_int(request, "before", 0, 0, 2**62)
    limit = _query_int(request, "limit", 50, 1, 500)
    store = request.app[PROOF_REQUESTS]
    rows = store.page(principal.org_id, incoming=incoming, outgoing=outgoing, status=status,
                      before=before, limit=limit)
    return web.json_response({
        "requests": [_request_json(request.app, r, store) for _, r in rows],
        "next": str(rows[-1][0]) if len(rows) == limit else None,
    })


@api.get("/v1/proof-requests/{request_id}", openapi.operation(
    "One proof request and its history (either party)", parameters=[_REQUEST_ID],
    ok_content=_REQUEST_JSON, errors=_ERRORS,
))
async def get_request(request: web.Request) -> web.Response:
    principal = require(request)
    return web.json_response(_request_json(request.app, _find(request, principal),
                                           request.app[PROOF_REQUESTS]))


@api.post("/v1/proof-requests/{request_id}/approve", openapi.operation(
    "Approve a request (the owner): the bundle is made and kept for the requester",
    parameters=[_REQUEST_ID], ok_content=_REQUEST_JSON,
    errors=(*_ERRORS, 400, 409, 413, 415, 422, 503),
    # The body is optional: without one, the owner grants what was asked.
    requestBody={"required": False,
                 "content": {"application/json": {"schema": APPROVE_SCHEMA}}},
))
async def approve_request(request: web.Request) -> web.Response:
    principal, found = _as_owner(request)
    body = await read_json(request, APPROVE_SCHEMA) if request.can_read_body else {}
    note = _text(body.get("note"), "note") or None
    sel = Selection.from_json(body, default=Selection(found.wanted.event_ids,
                                                      found.wanted.disclose, True, "own"))
    made = await make_bundle(request.app, principal, found.reference, sel)
    granted = {"eventIds": [e.event_id for e in made.events], "disclosed": list(made.disclosed),
               "dataKeys": sel.data_keys and bool(made.disclosed)}
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "approved",
                    reason=note, made=made, granted=granted)


@api.post("/v1/proof-requests/{request_id}/decline", openapi.operation(
    "Decline a request with a reason (the owner)", parameters=[_REQUEST_ID],
    body=DECLINE_SCHEMA, ok_content=_REQUEST_JSON, errors=(*_ERRORS, 400, 409, 413, 415, 422),
))
async def decline_request(request: web.Request) -> web.Response:
    principal, found = _as_owner(request)
    body = await read_json(request, DECLINE_SCHEMA)
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "declined",
                    reason=_text(body["reason"], "reason"))


@api.post("/v1/proof-requests/{request_id}/withdraw", openapi.operation(
    "Withdraw a pending request (the requester)", parameters=[_REQUEST_ID],
    ok_content=_REQUEST_JSON, errors=(*_ERRORS, 409),
))
async def withdraw_request(request: web.Request) -> web.Response:
    principal = require(request, REQUEST_SCOPE)
    found = _find(request, principal)
    if found.requester_org != principal.org_id:
        raise Forbidden("only the requester withdraws a request", code="not-the-requester")
    if found.status != "pending":
        raise Conflict(f"this request is {found.status} already", code="already-decided")
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "withdrawn",
                    reason=None)


@api.get("/v1/proof-requests/{request_id}/bundle", openapi.operation(
    "Download the approved bundle (recorded in the owner's access log)",
    parameters=[_REQUEST_ID], ok_content=_BUNDLE, errors=(*_ERRORS, 409),
))
async def download_bundle(request: web.Request) -> web.Response:
    principal = require(request)
    found = _find(request, principal)
    requester = found.requester_org == principal.org_id
    require(request, REQUEST_SCOPE if requester else EXPORT_SCOPE)
    store = request.app[PROOF_REQUESTS]
    bundle = store.bundle(found.id)
    if bundle is None:
        raise Conflict(f"this request is {found.status}; there is no bundle",
                       code="not-approved")
    if requester:
        store.downloaded(found, principal)
        now = int(store.clock())
        entries = [AccessEntry(found.owner_chain, found.requester_chain, event_id, subject, now,
                               "proof") for event_id, subject in found.proven]
        await asyncio.to_thread(request.app[READ_MODEL].log_access, entries)
    return bundle_response(bundle, found.reference)



async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = ProofRequestStore(app[CONFIG].path(FILE_NAME))
    app[PROOF_REQUESTS] = store
    try:
        yield
    finally:
        store.close()


def setup(app: web.Application) -> None:
    """Proof export and proof-request routes, and the request store (``app[PROOF_REQUESTS]``)."""
    app.cleanup_ctx.append(_store_ctx)
    api.install(app, schemas={"ProofRequest": PROOF_REQUEST_SCHEMA})
