"""Upload API: cargo events (canonical and DCSA 2.2), bills of lading, grants; submission status.

Every write here ends in the durable outbox (:mod:`gateway.outbox`): the handler parses and
checks the upload, turns it into :class:`~gateway.outbox.Operation`\\ s, and answers
``202 Accepted`` with one receipt per operation only after the outbox committed them to disk.
From then on the submitter owns them (batch, seal, sign, send, finality); the client follows
them with ``GET /v1/submissions/{key}``.

Idempotency
-----------
Each operation has the caller's idempotency key, unique per organisation: the
``Idempotency-Key`` header of a single event (required), the ``"id"`` of each item of a list or
bulk upload, the DCSA ``eventID`` (or the header, suffixed ``/<index>`` for a list). A retry
with the same key and content gets the original receipt with ``duplicate: true``; the same key
with other content is refused (409 ``idempotency-key-reused``). Composite requests derive their
keys from what they are about, so a retry without a header is still recognised:

- master B/L registration: ``bl:<master>`` (the ``BillOfLading.registerMaster`` call) and
  ``bl:<master>:event`` (its SHIPMENT event);
- house B/L link: ``hbl:<house>`` and ``hbl:<house>:event``;
- grant: ``grant:<subject key hex>:<reader>:<key version>:<expiry>``;
- revoke: ``revoke:<subject key hex>:<reader>:<key version>``.

With an ``Idempotency-Key`` header those become ``<header>``, ``<header>:event``.

Checks at intake (before anything is accepted)
----------------------------------------------
- the caller is authenticated with the needed scope and its organisation is a member on chain
  (``principal.chain_org``), else 401 / 403 ``not-on-chain``;
- every event's family is one the organisation's roles may publish
  (:data:`contracts.cargo.FAMILIES`; roles from the read model's directory of chain members,
  else the gateway's account record), else 403 ``role-not-allowed`` naming the family and the
  roles that may publish it — the same rule ``CargoLedger.record()`` enforces, checked here so a
  refused event is never answered 2xx;
- reference numbers pass their checks (:mod:`gateway.identifiers`), else 422 with the right
  check digit;
- named readers exist in the directory, else 422 ``unknown-reader``;
- the sealed envelope fits a cargo event's payload (:func:`gateway.confidential.sealed_size` ≤
  :data:`contracts.cargo.MAX_PAYLOAD`), else 422 ``envelope-too-large``.

A bulk upload is all or nothing: every item is checked, and the 422 (or 403) body lists every
failing item (``details.items[]``: index, id, code, message, path).

Grants
------
``POST /v1/grants`` lets another organisation read every record the caller has published (and
will publish, until revoked) about one subject: the caller's current subject key ``SK_v`` for
(caller, subject, ``v`` = the outbox's key version) is packed with its version
(:func:`gateway.confidential.pack_subject_grant`: ``v`` as uint32 big-endian || ``SK_v``, 36
bytes) and wrapped for the reader's X25519 public key with
:func:`gateway.confidential.wrap_key`, **context =** :func:`gateway.tracking.grant_context`
``(owner, subject key, reader)`` (owner, scope, target and reader ABI-encoded, so a wrap is
bound to its grant). A reader unwraps with ``unwrap_key(wrapped, x25519_private=...,
context=grant_context(...))`` and
``unpack_subject_grant`` to get ``(SK_v, v)``, then opens the owner's records of versions ≤ ``v``
with ``open_with_record_key``. The wrapped key goes on chain through
``AccessGrants.grant(1, subject_key, reader, wrapped, expiry)``. ``DELETE
/v1/grants/{kind}/{value}/{reader}`` sends ``AccessGrants.revoke(1, subject_key, reader)`` with
``revokes_subject`` set, so the outbox moves the caller to key version ``v + 1`` for every
later record on that subject.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from contracts import ROLES, abi
from contracts.cargo import FAMILIES, MAX_PAYLOAD
from gateway import errors, jsonbody, openapi, principal
from gateway.appkeys import ACCOUNTS, CONFIG, KEYSTORE, NODE, OUTBOX, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.events import dcsa, identifiers
from gateway.events.model import (
    EVENT_SCHEMA,
    REFERENCE_KINDS,
    CanonicalEvent,
    EventError,
    Reference,
    Visibility,
    from_json,
    parse_time,
    plaintext,
)
from gateway.writepath.outbox import Operation, Receipt

#: AccessGrants scope of a whole subject.
SUBJECT_SCOPE = 1

#: Most items of one bulk upload.
MAX_BULK_ITEMS = 50_000

#: Most containers one B/L request names (the SHIPMENT event must fit one envelope).
MAX_BL_CONTAINERS = 64

#: JSON-RPC error code of a reverted call (EIP-1474 / geth).
EXECUTION_REVERTED = 3

_FAMILY_ROLES: dict[str, int] = {name: roles for name, _, roles in FAMILIES.values()}

routes = web.RouteTableDef()
_TAG = "Upload"


# -- schemas ---------------------------------------------------------------------------------
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$",
}

#: One canonical event of a list or bulk upload: the event and its idempotency key ``id``.
ITEM_SCHEMA: dict[str, Any] = {
    **EVENT_SCHEMA,
    "required": [*EVENT_SCHEMA["required"], "id"],
    "properties": {**EVENT_SCHEMA["properties"], "id": IDEMPOTENCY_KEY_SCHEMA},
}

LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["events"],
    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000,
                              "items": ITEM_SCHEMA}},
}

#: Body of ``POST /v1/events``: one event (with the Idempotency-Key header) or a list.
EVENTS_BODY_SCHEMA: dict[str, Any] = {"oneOf": [EVENT_SCHEMA, LIST_SCHEMA]}

_REFERENCE_SCHEMA = EVENT_SCHEMA["properties"]["subject"]
_VISIBILITY_SCHEMA = EVENT_SCHEMA["properties"]["visibility"]
_CONTAINERS_SCHEMA: dict[str, Any] = {
    "type": "array", "minItems": 1, "maxItems": MAX_BL_CONTAINERS, "uniqueItems": True,
    "items": {"type": "string", "minLength": 10, "maxLength": 20},
}
_TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time", "maxLength": 40}
_LOCODE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z]{2} ?[A-Za-z2-9]{3}$"}

MASTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["master", "containers"],
    "properties": {
        "master": {"type": "string", "minLength": 1, "maxLength": 30,
                   "description": "Master B/L number (DCSA transportDocumentReference)."},
        "containers": _CONTAINERS_SCHEMA,
        "vessel": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "imo": {"type": "string", "maxLength": 12},
                "name": {"type": "string", "maxLength": 35},
                "voyage": {"type": "string", "maxLength": 50},
            },
        },
        "pol": _LOCODE_SCHEMA,
        "pod": _LOCODE_SCHEMA,
        "etd": _TIME_SCHEMA,
        "eta": _TIME_SCHEMA,
        "issuedAt": _TIME_SCHEMA,
        "visibility": _VISIBILITY_SCHEMA,
    },
}

HOUSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["house", "containers"],
    "properties": {
        "house": {"type": "string", "minLength": 1, "maxLength": 30,
                  "description": "House B/L number."},
        "containers": _CONTAINERS_SCHEMA,
        "issuedAt": _TIME_SCHEMA,
        "readers": _VISIBILITY_SCHEMA["properties"]["readers"],
    },
}

GRANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["subject", "reader"],
    "properties": {
        "subject": _REFERENCE_SCHEMA,
        "reader": {"type": "integer", "minimum": 1, "maximum": 4294967295,
                   "description": "Consortium organisation id of the reader."},
        "expiresAt": _TIME_SCHEMA,
    },
}

RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "opId", "duplicate", "status"],
    "properties": {
        "id": {"type": "string", "description": "Idempotency key."},
        "opId": {"type": "integer"},
        "duplicate": {"type": "boolean"},
        "status": {"enum": ["accepted", "sent", "final", "failed"]},
        "txHash": {"type": ["string", "null"]},
        "block": {"type": ["integer", "null"]},
        "eventId": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
    },
}

RECEIPTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["receipts"],
    "properties": {"receipts": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Receipt"}}},
}


# -- pure parts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemError:
    """Why one item of an upload was refused."""

    index: int
    """Position in the upload (0-based; for NDJSON, the line number minus one)."""
    id: str | None
    """Its idempotency key, if it had one."""
    status: int
    """422 (invalid) or 403 (not allowed for the caller's roles)."""
    code: str
    """Stable error code."""
    message: str
    """What is wrong."""
    path: str = ""
    """JSON pointer inside the item, if known."""

    def to_json(self) -> dict[str, Any]:
        out = {"index": self.index, "id": self.id, "code": self.code, "message": self.message}
        if self.path:
            out["path"] = self.path
        return out


def roles_mask(names: tuple[str, ...] | list[str]) -> int:
    """Role bitmask of role names (unknown names count for nothing)."""
    mask = 0
    for name in names:
        mask |= ROLES.get(name.lower(), 0)
    return mask


def role_problem(event: CanonicalEvent, roles: int) -> str | None:
    """Why an organisation with ``roles`` may not publish ``event``, or None if it may."""
    allowed = _FAMILY_ROLES[event.family]
    if roles & allowed:
        return None
    who = ", ".join(name for name, bit in ROLES.items() if allowed & bit)
    return f"{event.family} events are published by {who}; your organisation is not one"


@functools.cache
def _envelope_overhead(readers: int, reference: bool) -> int:
    """Envelope bytes besides the body (header, wraps, tag): the size of an empty record."""
    return confidential.sealed_size(b"", readers, reference)


def envelope_problem(event: CanonicalEvent) -> str | None:
    """Why ``event`` would not fit a cargo event's payload once sealed, or None."""
    readers, reference = len(event.visibility.readers), event.visibility.mode == "reference"
    text = plaintext(event)
    # an uncompressed body is the largest a sealed record can get: skip zlib when it fits
    if _envelope_overhead(readers, reference) + len(text) <= MAX_PAYLOAD:
        return None
    size = confidential.sealed_size(text, readers, reference)
    if size <= MAX_PAYLOAD:
        return None
    return (f"sealed event takes {size} bytes, more than the {MAX_PAYLOAD} a record carries: "
            "shorten details or name fewer readers")


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """A receipt in the API's form (:data:`RECEIPT_SCHEMA`)."""
    return {**receipt.to_json(), "opId": receipt.op_id}


def _schema_error(index: int, key: str | None, exc: errors.Unprocessable) -> ItemError:
    problems = exc.details.get("problems") or [{"path": "", "message": exc.message}]
    return ItemError(index, key, 422, exc.code, exc.message, problems[0]["path"])


def parse_item(raw: Any, index: int, schema: dict[str, Any]) -> tuple[str | None,
                                                                      CanonicalEvent | ItemError]:
    """Check one canonical item (schema, then the model's rules); never raises."""
    key = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    try:
        jsonbody.check(raw, schema, what=f"item {index}")
    except errors.Unprocessable as exc:
        return key, _schema_error(index, key, exc)
    body = {k: v for k, v in raw.items() if k != "id"}
    try:
        return key, from_json(body)
    except EventError as exc:
        return key, ItemError(index, key, 422, exc.code, str(exc), exc.field)


def parse_ndjson(raw: bytes) -> list[Any | ItemError]:
    """Items of an NDJSON body; a line that is not JSON becomes an :class:`ItemError`."""
    items: list[Any | ItemError] = []
    for number, line in enumerate(raw.split(b"\n")):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            items.append(ItemError(number, None, 422, "bad-json", f"line {number + 1}: {exc}"))
    return items


def refuse(problems: list[ItemError], total: int) -> errors.ApiError:
    """The error of an upload some of whose items failed (403 only if all are role refusals)."""
    first = problems[0]
    details = {"items": [p.to_json() for p in problems[:200]], "failed": len(problems),
               "total": total}
    text = (f"{len(problems)} of {total} items refused; nothing was accepted. "
            f"First: item {first.index}: {first.message}")
    if all(p.status == 403 for p in problems):
        return errors.Forbidden(text, code="role-not-allowed", details=details)
    return errors.Unprocessable(text, code=first.code if total == 1 else "invalid-items",
                                details=details)


# -- effects: the caller, the directory, the outbox ------------------------------------------
def _writer(request: web.Request, scope: str = "events:write") -> principal.Principal:
    who = principal.require(request, scope)
    if who.chain_org is None:
        raise errors.Forbidden(
            "your organisation is not yet a member on chain; writes open once it is",
            code="not-on-chain",
        )
    return who


def _read_model(app: web.Application) -> Any:

    return app.get(READ_MODEL)


def caller_roles(request: web.Request, who: principal.Principal) -> int:
    """The caller organisation's roles: the chain directory's, else its account record's."""
    model = _read_model(request.app)
    if model is not None and who.chain_org is not None:
        org = model.organisation(who.chain_org)
        if org is not None:
            return int(org.roles)

    accounts = request.app.get(ACCOUNTS)
    if accounts is None:
        return 0
    return roles_mask(list(accounts.organisation(who.org_id).roles))


async def reader_key(app: web.Application, reader: int) -> bytes | None:
    """A member organisation's X25519 public key: read model directory, else the chain."""
    model = _read_model(app)
    if model is not None:
        org = model.organisation(reader)
        if org is not None:
            return bytes(org.encryption_key) if org.active else None

    node = app.get(NODE)
    if node is None:
        return None
    try:
        (key,) = await node.call("Consortium", "encryptionKeyOf", reader)
    except Exception as exc:  # node down or RPC error: the directory is unavailable
        raise errors.Unavailable(f"organisation directory unavailable: {exc}") from None
    key = bytes(key)
    return key if any(key) else None


async def _check_events(
    request: web.Request, who: principal.Principal, parsed: list[tuple[str | None, Any]]
) -> list[ItemError]:
    """Role, reader and envelope checks of parsed events; schema errors passed through."""
    roles = caller_roles(request, who)
    known: dict[int, bool] = {}
    problems: list[ItemError] = []
    for index, (key, item) in enumerate(parsed):
        if isinstance(item, ItemError):
            problems.append(item)
            continue
        reason = role_problem(item, roles)
        if reason:
            problems.append(ItemError(index, key, 403, "role-not-allowed", reason, "/type"))
            continue
        for reader in item.visibility.readers:
            if reader not in known:
                known[reader] = reader != who.chain_org and \
                    await reader_key(request.app, reader) is not None
            if not known[reader]:
                problems.append(ItemError(
                    index, key, 422, "unknown-reader",
                    f"reader {reader} is not an active member with an encryption key "
                    "(or is your own organisation)", "/visibility/readers"))
                break
        else:
            reason = envelope_problem(item)
            if reason:
                problems.append(ItemError(index, key, 422, "envelope-too-large", reason,
                                          "/details"))
    return problems


async def _dry_run(request: web.Request, who: principal.Principal,
                   ops: list[Operation]) -> None:
    """Refuse (409) a new contract call the chain would revert now, with the contract's reason.

    A call is accepted only if it can end on chain: ``eth_call`` from the organisation's own
    account against the latest state runs every check the contract makes (the master B/L is
    registered, the containers are on it, a grant exists to revoke, the reader is an active
    member, ...). A retry of a known idempotency key is not re-checked (it gets its first
    receipt). Without a node (none configured, or none answering) the call is accepted and the
    submitter reports a later refusal on the submission's status.
    """
    from gateway.nodeclient import NodeUnavailable, RpcError

    node = request.app.get(NODE)
    if node is None:
        return
    outbox = request.app[OUTBOX]
    for op in ops:
        if op.kind != "call" or outbox.status(who.org_id, op.idempotency_key) is not None:
            continue
        try:
            sender = request.app[KEYSTORE].get(who.org_id).address
            await node.eth_call(op.to, op.data, sender=sender)
        except RpcError as exc:
            if exc.code != EXECUTION_REVERTED:
                raise errors.Unavailable(f"the node could not check the call: {exc}") from None
            raise errors.Conflict(
                f"the chain refuses this now: {exc.message}", code="refused-by-contract",
                details={"reason": exc.message, "operation": op.summary},
            ) from None
        except (NodeUnavailable, KeyError):
            return


async def _accept(request: web.Request, who: principal.Principal,
                  ops: list[Operation]) -> web.Response:
    await _dry_run(request, who, ops)
    receipts = await request.app[OUTBOX].accept_async(who.org_id, ops)
    return web.json_response({"receipts": [receipt_json(r) for r in receipts]}, status=202)


async def _accept_events(request: web.Request, who: principal.Principal,
                         parsed: list[tuple[str | None, Any]]) -> web.Response:
    problems = await _check_events(request, who, parsed)
    if problems:
        raise refuse(problems, len(parsed))
    ops = [Operation(idempotency_key=key or "", kind="event", event=event)
           for key, event in parsed]
    return await _accept(request, who, ops)


def _idempotency_header(request: web.Request, *, required: bool) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None or not key.strip():
        if required:
            raise errors.BadRequest("send an Idempotency-Key header (any unique string, e.g. a "
                                    "UUID) so a retried upload is recorded once",
                                    code="missing-idempotency-key")
        return None
    key = key.strip()
    if len(key) > 200 or not key.isprintable():
        raise errors.BadRequest("an Idempotency-Key is 1 to 200 printable characters",
                                code="invalid-idempotency-key")
    return key


# -- handlers --------------------------------------------------------------------------------
@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """One canonical event (``Idempotency-Key`` header) or ``{"events": [...]}``."""
    who = _writer(request)
    body = await jsonbody.read_json(request)
    if isinstance(body, dict) and "events" in body:
        jsonbody.check(body, LIST_SCHEMA)
        parsed = [parse_item(item, i, ITEM_SCHEMA) for i, item in enumerate(body["events"])]
    else:
        key = _idempotency_header(request, required=True)
        jsonbody.check(body, EVENT_SCHEMA)
        try:
            parsed = [(key, from_json(body))]
        except EventError as exc:
            raise errors.Unprocessable(str(exc), code=exc.code,
                                       details={"path": exc.field}) from None
    return await _accept_events(request, who, parsed)


@routes.post("/v1/events/bulk")
async def post_bulk(request: web.Request) -> web.Response:
    """Many canonical events: NDJSON (one per line) or a JSON array; all or nothing."""
    who = _writer(request)
    limit = request.app[CONFIG].max_bulk_body_bytes
    ctype = request.content_type
    if ctype not in ("application/x-ndjson", "application/json"):
        raise errors.UnsupportedMediaType(
            f"send application/x-ndjson or application/json, not {ctype}")
    raw = await jsonbody.read_bytes(request, limit)
    if ctype == "application/json":
        try:
            items: list[Any] = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise errors.BadRequest(f"body is not valid JSON: {exc}", code="bad-json") from None
        if not isinstance(items, list):
            raise errors.Unprocessable("a JSON bulk upload is an array of events",
                                       code="schema-violation")
    else:
        items = parse_ndjson(raw)
    if not items:
        raise errors.Unprocessable("no events in the upload", code="empty-upload")
    if len(items) > MAX_BULK_ITEMS:
        raise errors.PayloadTooLarge(f"{len(items)} events; at most {MAX_BULK_ITEMS} per upload")
    parsed = [
        (None, item) if isinstance(item, ItemError) else parse_item(item, i, ITEM_SCHEMA)
        for i, item in enumerate(items)
    ]
    return await _accept_events(request, who, parsed)


@routes.post("/v2/events")
async def post_dcsa_events(request: web.Request) -> web.Response:
    """DCSA T&T 2.2 event(s) in; each becomes canonical event(s) in the outbox."""
    who = _writer(request)
    header = _idempotency_header(request, required=False)
    visibility = _visibility_query(request)
    body = await jsonbody.read_json(request)
    events = body if isinstance(body, list) else [body]
    if not events or len(events) > 1000:
        raise errors.Unprocessable("send one DCSA event or a list of 1 to 1000",
                                   code="schema-violation")
    roles = caller_roles(request, who)
    document_kind = "hbl" if roles & ROLES["forwarder"] and not roles & ROLES["carrier"] \
        else "mbl"
    parsed: list[tuple[str | None, Any]] = []
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
    return await _accept_events(request, who, parsed)


def _visibility_query(request: web.Request) -> Visibility:
    mode = request.query.get("visibility", "named")
    if mode not in ("named", "reference"):
        raise errors.BadRequest("visibility is named or reference", code="bad-query")
    readers: list[int] = []
    for part in filter(None, request.query.get("readers", "").split(",")):
        if not part.strip().isdigit() or not 0 < int(part) < 1 << 32:
            raise errors.BadRequest(f"readers: {part!r} is not an organisation id",
                                    code="bad-query")
        readers.append(int(part))
    if len(readers) > 8 or len(set(readers)) != len(readers):
        raise errors.BadRequest("readers: at most 8 distinct organisation ids", code="bad-query")
    return Visibility(mode, tuple(readers))


@routes.get("/v1/submissions/{key}")
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


def _normalise(kind: str, text: str, path: str) -> str:
    try:
        return identifiers.normalise(kind, text)
    except identifiers.IdentifierError as exc:
        raise errors.Unprocessable(f"{path}: {exc}", code=exc.code,
                                   details={"path": path}) from None


def _time(text: str | None, path: str, default: int) -> int:
    if text is None:
        return default
    try:
        return parse_time(text, field=path)
    except EventError as exc:
        raise errors.Unprocessable(str(exc), code=exc.code, details={"path": path}) from None


def _require_role(request: web.Request, who: principal.Principal, role: str, what: str) -> None:
    if not caller_roles(request, who) & ROLES[role]:
        raise errors.Forbidden(f"only a {role} may {what}", code="role-not-allowed")


async def _accept_composite(request: web.Request, who: principal.Principal,
                            ops: list[Operation]) -> web.Response:
    """Accept a call and its event; a retry whose call is unchanged gets the first receipts.

    The event of a composite request may carry a default time (now), so only the call's
    content decides whether a known key is a retry or a reuse.
    """
    outbox = request.app[OUTBOX]
    call, event = ops
    if outbox.status(who.org_id, event.idempotency_key) is not None:
        [first] = await outbox.accept_async(who.org_id, [call])
        receipts = [first]
        second = outbox.status(who.org_id, event.idempotency_key)
        if second is not None:
            receipts.append(Receipt(**{**second.__dict__, "duplicate": True}))
        return web.json_response({"receipts": [receipt_json(r) for r in receipts]},
                                 status=202)
    return await _accept(request, who, ops)


async def _accept_bl_call(request: web.Request, who: principal.Principal,
                          event: CanonicalEvent, default_key: str, data: bytes,
                          summary: str) -> web.Response:
    """Check ``event``, then accept the ``BillOfLading`` call ``data`` and the event together
    (keys: the ``Idempotency-Key`` header or ``default_key``, and that key + ``:event``)."""
    problems = await _check_events(request, who, [(None, event)])
    if problems:
        raise refuse(problems, 1)
    key = _idempotency_header(request, required=False) or default_key
    call = Operation(idempotency_key=key, kind="call", to=abi.address("BillOfLading"),
                     data=data, summary=summary)
    return await _accept_composite(
        request, who, [call, Operation(idempotency_key=f"{key}:event", kind="event", event=event)]
    )


def _fits(event: CanonicalEvent) -> None:
    reason = envelope_problem(event)
    if reason:
        raise errors.Unprocessable(reason, code="envelope-too-large")


@routes.post("/v1/bills-of-lading")
async def post_master(request: web.Request) -> web.Response:
    """A carrier registers a master B/L with its containers (and vessel, voyage, ETD/ETA)."""
    who = _writer(request)
    body = await jsonbody.read_json(request, MASTER_SCHEMA)
    _require_role(request, who, "carrier", "register a master bill of lading")
    master = Reference("mbl", _normalise("mbl", body["master"], "/master"))
    containers = [Reference("container", _normalise("container", c, f"/containers/{i}"))
                  for i, c in enumerate(body["containers"])]
    if len(set(containers)) != len(containers):
        raise errors.Unprocessable("a container is listed twice", code="duplicate-container")
    related = list(containers)
    details: dict[str, Any] = {"containers": len(containers)}
    vessel = body.get("vessel") or {}
    if vessel.get("imo"):
        imo = _normalise("vessel", vessel["imo"], "/vessel/imo")
        related.append(Reference("vessel", imo))
        details["vessel"] = {"imo": imo, **({"name": vessel["name"]} if "name" in vessel else {})}
    elif "name" in vessel:
        details["vessel"] = {"name": vessel["name"]}
    if "voyage" in vessel:
        details["voyage"] = vessel["voyage"]
    for field in ("pol", "pod"):
        if field in body:
            details[field] = _normalise("unlocode", body[field], f"/{field}")
    for field in ("etd", "eta"):
        if field in body:
            details[field] = _time(body[field], f"/{field}", 0)
    visibility = body.get("visibility") or {}
    event = CanonicalEvent(
        event_type="SHIPMENT.ISSU",
        classifier="ACT",
        event_time=_time(body.get("issuedAt"), "/issuedAt", int(time.time())),
        subject=master,
        location=details.get("pol", ""),
        related=tuple(related),
        details=details,
        visibility=Visibility(visibility.get("mode", "named"),
                              tuple(visibility.get("readers", ()))),
    )
    return await _accept_bl_call(
        request, who, event, f"bl:{master.value}",
        abi.call_data("BillOfLading", "registerMaster", master.key, [c.key for c in containers]),
        f"register master B/L {master.value} with {len(containers)} containers",
    )


@routes.post("/v1/bills-of-lading/{master}/houses")
async def post_house(request: web.Request) -> web.Response:
    """A forwarder links a house B/L to a master B/L and the containers it covers."""
    who = _writer(request)
    body = await jsonbody.read_json(request, HOUSE_SCHEMA)
    _require_role(request, who, "forwarder", "link a house bill of lading")
    master = Reference("mbl", _normalise("mbl", request.match_info["master"], "master"))
    house = Reference("hbl", _normalise("hbl", body["house"], "/house"))
    containers = [Reference("container", _normalise("container", c, f"/containers/{i}"))
                  for i, c in enumerate(body["containers"])]
    if len(set(containers)) != len(containers):
        raise errors.Unprocessable("a container is listed twice", code="duplicate-container")
    model = _read_model(request.app)
    registered = model.master(master.key) if model is not None else None
    if registered is not None:
        covered = set(registered[1])
        outside = [c.value for c in containers if c.key not in covered]
        if outside:
            raise errors.Unprocessable(
                f"master B/L {master.value} does not cover {', '.join(outside)}",
                code="container-not-on-master", details={"containers": outside})
    event = CanonicalEvent(
        event_type="SHIPMENT.ISSU",
        classifier="ACT",
        event_time=_time(body.get("issuedAt"), "/issuedAt", int(time.time())),
        subject=house,
        related=(master, *containers),
        details={"master": master.value, "containers": len(containers)},
        visibility=Visibility("reference", tuple(body.get("readers", ()))),
    )
    return await _accept_bl_call(
        request, who, event, f"hbl:{house.value}",
        # BillOfLading wants the containers in ascending key order (a linear duplicate check)
        abi.call_data("BillOfLading", "linkHouse", house.key, master.key,
                      sorted(c.key for c in containers)),
        f"link house B/L {house.value} to {master.value} ({len(containers)} containers)",
    )


def _subject(kind: str, value: str, path: str) -> Reference:
    if kind not in REFERENCE_KINDS:
        raise errors.Unprocessable(f"{path}: unknown reference kind {kind!r}",
                                   code="invalid-reference")
    return Reference(kind, _normalise(kind, value, path))


async def _reader_or_422(request: web.Request, who: principal.Principal, reader: int) -> bytes:
    if reader == who.chain_org:
        raise errors.Unprocessable("your organisation always reads its own records",
                                   code="reader-is-owner")
    key = await reader_key(request.app, reader)
    if key is None:
        raise errors.Unprocessable(
            f"organisation {reader} is not an active member with an encryption key",
            code="unknown-reader")
    return key


def _owner_secret(request: web.Request, who: principal.Principal) -> bytes:

    try:
        return request.app[KEYSTORE].get(who.org_id).master_secret
    except KeyError:
        raise errors.Forbidden("your organisation has no keys in this gateway yet",
                               code="no-keys") from None


@routes.post("/v1/grants")
async def post_grant(request: web.Request) -> web.Response:
    """Let another organisation read all the caller's records about one subject."""
    who = _writer(request, "grants:write")
    body = await jsonbody.read_json(request, GRANT_SCHEMA)
    subject = _subject(body["subject"]["kind"], body["subject"]["value"], "/subject/value")
    reader = body["reader"]
    public = await _reader_or_422(request, who, reader)
    now = int(time.time())
    expiry = _time(body.get("expiresAt"), "/expiresAt", 0)
    if expiry and expiry <= now:
        raise errors.Unprocessable("expiresAt is in the past", code="expired",
                                   details={"path": "/expiresAt"})
    outbox = request.app[OUTBOX]
    version = outbox.subject_version(who.org_id, subject.key)
    header = _idempotency_header(request, required=False)
    key = header or f"grant:{subject.key.hex()}:{reader}:{version}:{expiry}"
    known = outbox.status(who.org_id, key)
    if known is not None:  # the wrap is randomised: a retry must not build a new one
        known = Receipt(**{**known.__dict__, "duplicate": True})
        return web.json_response({"receipts": [receipt_json(known)]}, status=202)
    secret = confidential.pack_subject_grant(
        confidential.record_key(_owner_secret(request, who), subject.key, version), version
    )
    from gateway.tracking import grant_context

    context = grant_context(who.chain_org, subject.key, reader)
    wrapped = confidential.wrap_key(secret, reader_public=public, context=context)
    call = Operation(
        idempotency_key=key,
        kind="call",
        to=abi.address("AccessGrants"),
        data=abi.call_data("AccessGrants", "grant", SUBJECT_SCOPE, subject.key, reader,
                           wrapped, expiry),
        summary=f"grant {subject.kind} {subject.value} (key version {version}) to {reader}",
    )
    return await _accept(request, who, [call])


@routes.delete("/v1/grants/{kind}/{value}/{reader}")
async def delete_grant(request: web.Request) -> web.Response:
    """Revoke a subject grant; the caller's later records on it use a new key version."""
    who = _writer(request, "grants:write")
    subject = _subject(request.match_info["kind"], request.match_info["value"], "value")
    text = request.match_info["reader"]
    if not text.isdigit() or not 0 < int(text) < 1 << 32:
        raise errors.BadRequest(f"reader {text!r} is not an organisation id", code="bad-reader")
    reader = int(text)
    version = request.app[OUTBOX].subject_version(who.org_id, subject.key)
    header = _idempotency_header(request, required=False)
    call = Operation(
        idempotency_key=header or f"revoke:{subject.key.hex()}:{reader}:{version}",
        kind="call",
        to=abi.address("AccessGrants"),
        data=abi.call_data("AccessGrants", "revoke", SUBJECT_SCOPE, subject.key, reader),
        summary=f"revoke {subject.kind} {subject.value} from {reader}",
        revokes_subject=subject.key,
    )
    return await _accept(request, who, [call])


# -- OpenAPI ---------------------------------------------------------------------------------
def _op(summary: str, description: str, body: dict[str, Any] | None, *statuses: int,
        content_types: tuple[str, ...] = ("application/json",),
        parameters: list[dict[str, Any]] | None = None, ok: int = 202) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [_TAG],
        "summary": summary,
        "description": description,
        "responses": {
            str(ok): {"description": "Accepted: durably in the outbox" if ok == 202 else "OK",
                      "content": {"application/json": {"schema": {
                          "$ref": "#/components/schemas/"
                                  + ("Receipts" if ok == 202 else "Receipt")}}}},
            **openapi.error_responses(*statuses),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {ct: {"schema": body} for ct in content_types}}
    if parameters:
        op["parameters"] = parameters
    return op


_IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": IDEMPOTENCY_KEY_SCHEMA,
                       "description": "Makes a retry safe: the same key and content are "
                                      "recorded once."}
_WRITE_ERRORS = (400, 401, 403, 409, 413, 415, 422, 429, 503)

PATHS: dict[str, Any] = {
    "/v1/events": {"post": _op(
        "Upload canonical events",
        "One canonical event (the Idempotency-Key header is required) or "
        '`{"events": [{"id": ..., ...event}]}` (each item\'s `id` is its idempotency key).',
        EVENTS_BODY_SCHEMA, *_WRITE_ERRORS,
        parameters=[{**_IDEMPOTENCY_HEADER,
                     "description": "Required for a single event; ignored for a list."}],
    )},
    "/v1/events/bulk": {"post": _op(
        "Bulk upload of canonical events",
        "NDJSON (one event with its `id` per line) or a JSON array. All or nothing: the 422 "
        "body lists every refused item (`error.details.items`).",
        {"type": "array", "items": ITEM_SCHEMA}, *_WRITE_ERRORS,
        content_types=("application/json", "application/x-ndjson"),
    )},
    "/v2/events": {"post": _op(
        "Upload DCSA Track & Trace 2.2 events",
        "One DCSA 2.2 SHIPMENT, TRANSPORT or EQUIPMENT event or a list, validated against the "
        "DCSA specification (unknown fields refused). The idempotency key is the "
        "Idempotency-Key header (suffixed /<index> for a list) or else each eventID. "
        "Query `visibility` (named | reference) and `readers` (comma-separated organisation "
        "ids) choose who may read them.",
        {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        *_WRITE_ERRORS,
        parameters=[
            _IDEMPOTENCY_HEADER,
            {"name": "visibility", "in": "query", "required": False,
             "schema": {"enum": ["named", "reference"]}},
            {"name": "readers", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": r"^\d+(,\d+)*$"}},
        ],
    )},
    "/v1/submissions/{key}": {"get": _op(
        "Status of an upload", "Where the operation with this idempotency key stands.",
        None, 401, 403, 404, 429, ok=200,
        parameters=[{"name": "key", "in": "path", "required": True,
                     "schema": {"type": "string"}}],
    )},
    "/v1/bills-of-lading": {"post": _op(
        "Register a master bill of lading (carrier)",
        "Registers the master B/L and its containers in BillOfLading (ISO 6346 checked) and "
        "publishes a SHIPMENT event on the master B/L carrying the container numbers, vessel "
        "and voyage for the readers the carrier chooses.",
        MASTER_SCHEMA, *_WRITE_ERRORS, parameters=[_IDEMPOTENCY_HEADER],
    )},
    "/v1/bills-of-lading/{master}/houses": {"post": _op(
        "Link a house bill of lading (forwarder)",
        "Links a house B/L to the master B/L and the containers it covers, and publishes a "
        "SHIPMENT event on the house B/L, readable by whoever holds the house B/L number, "
        "naming the master B/L and exactly those containers.",
        HOUSE_SCHEMA, *_WRITE_ERRORS,
        parameters=[_IDEMPOTENCY_HEADER,
                    {"name": "master", "in": "path", "required": True,
                     "schema": {"type": "string", "maxLength": 30}}],
    )},
    "/v1/grants": {"post": _op(
        "Grant another organisation a subject",
        "Wraps your current key for the subject for the reader (AccessGrants, scope SUBJECT): "
        "it reads all your records about it, until you revoke.",
        GRANT_SCHEMA, *_WRITE_ERRORS, parameters=[_IDEMPOTENCY_HEADER],
    )},
    "/v1/grants/{kind}/{value}/{reader}": {"delete": _op(
        "Revoke a subject grant",
        "Revokes the grant; your later records on the subject use a new key the reader "
        "cannot derive.",
        None, *_WRITE_ERRORS,
        parameters=[
            _IDEMPOTENCY_HEADER,
            {"name": "kind", "in": "path", "required": True,
             "schema": {"enum": list(REFERENCE_KINDS)}},
            {"name": "value", "in": "path", "required": True,
             "schema": {"type": "string", "maxLength": 35}},
            {"name": "reader", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": 4294967295}},
        ],
    )},
}


def setup(app: web.Application) -> None:
    """Add the upload routes and document them."""
    app.router.add_routes(routes)
    openapi.add(
        app, PATHS, {"Receipt": RECEIPT_SCHEMA, "Receipts": RECEIPTS_SCHEMA},
        tags=[{"name": _TAG, "description": "Upload events (canonical, DCSA 2.2, bulk), bills "
                                            "of lading and grants; follow submissions"}],
    )
