"""Declarations' HTTP API and the service's lifecycle (:func:`setup`).

=========================================================  =====================================
``POST /v1/declarations``                                   goods lines + options for a shipment
                                                            (B/L, house B/L, AWB, truck job):
                                                            the drafts
``GET /v1/declarations``                                    shipments the caller may read
``GET /v1/declarations/{id}``                               the shipment's drafts side by side,
                                                            approvals, submissions
``PUT /v1/declarations/{id}/goods``                         replace the goods lines (CSV / JSON)
``POST /v1/declarations/{id}/corrections``                  correct a field (who and when kept)
``POST /v1/declarations/{id}/drafts/{draft}/approve``       approve a draft without errors
``POST /v1/declarations/{id}/drafts/{draft}/submit``        submit an approved draft
``GET /v1/declarations/{id}/submissions``                   statuses, numbers, history
``POST /v1/declarations/authorities/{authority}/bind``      the authority's customs organisation
                                                            binds itself on chain (once)
=========================================================  =====================================

A truck job (``kind: truck``, the job's id) is declared by the job's haulier alone; its record,
vehicle and crossing come from the job, and the CCRN the authority gives is bound to the job's
vehicle (:meth:`~gateway.declarations.service.DeclarationService.bind`).

Writes are the declarant's (the uploading organisation, scope ``events:write``); reads
(``tracking:read``) are the declarant's, its named readers' and, once a draft was submitted to
it, the authority's customs organisation
(:meth:`~gateway.declarations.service.DeclarationService.may_read`); anyone else gets 404.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway import appkeys, openapi
from gateway.appkeys import ACCOUNTS, CONFIG
from gateway.appkeys import DECLARATIONS as DECLARATIONS  # (re-exported: the tests' import)
from gateway.background import cancelled
from gateway.declarations import hs, invoice, onchain
from gateway.declarations.connectors import http_connectors
from gateway.declarations.drafts import CorrectionError, DraftSet, apply_correction
from gateway.declarations.model import AUTHORITIES, Correction, DeclarationSettings
from gateway.declarations.service import DOCUMENT_KINDS, DeclarationService
from gateway.declarations.store import DeclarationStore, Shipment, document_hash
from gateway.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
)
from gateway.events import identifiers
from gateway.events.model import EventError, parse_time
from gateway.jsonbody import read_json
from gateway.land.api import LAND
from gateway.land.service import is_job_id
from gateway.principal import Principal, require
from gateway.tracking.service import DeclarationKeys, DeclarationRef

_TASKS = web.AppKey("declaration_tasks", list)
#: Name of the keystore secret declaration bodies are sealed under.
SECRET = "declarations"
READ = "tracking:read"
WRITE = "events:write"
_ERRORS = (400, 401, 403, 429)

_PARTY: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"organisation": {"type": "integer", "minimum": 1},
                   "name": {"type": "string", "maxLength": 200},
                   "address": {"type": "string", "maxLength": 400},
                   "country": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
                   "uscc": {"type": "string", "maxLength": 18}}}
UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["reference", "direction", "invoice"],
    "properties": {
        "reference": {"type": "string", "minLength": 1, "maxLength": 35},
        "kind": {"enum": list(DOCUMENT_KINDS)},
        "direction": {"enum": ["import", "export"]},
        "bills": {"type": "array", "maxItems": 20,
                  "items": {"type": "string", "minLength": 1, "maxLength": 35}},
        "authorities": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"enum": list(AUTHORITIES)}},
        "exempt": {"type": "boolean"},
        "consignor": _PARTY, "consignee": _PARTY,
        "readers": {"type": "array", "maxItems": 8, "uniqueItems": True,
                    "items": {"type": "integer", "minimum": 1}},
        "crossing": {"type": "object", "additionalProperties": False,
                     "required": ["vehicle", "time"],
                     "properties": {"vehicle": {"type": "string", "maxLength": 16},
                                    "time": {"type": "string", "format": "date-time"},
                                    "controlPoint": {"type": "string", "maxLength": 60}}},
        "invoice": {"type": "object", "additionalProperties": False,
                    "properties": {"csv": {"type": "string", "maxLength": 4_000_000},
                                   "lines": {"type": "array", "maxItems": invoice.MAX_LINES}}},
    }}
CORRECTION_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["draft", "path", "value"],
    "properties": {"draft": {"type": "string", "maxLength": 120},
                   "path": {"type": "string", "maxLength": 120},
                   "value": {"type": ["string", "number", "integer", "null"]}}}
_OBJECT: dict[str, Any] = {"type": "object"}

api = openapi.Routes(tag="Declarations",
                     description="One submission, multiple declarations: TDEC, ROCARS, ITSW.")


# -- helpers -----------------------------------------------------------------------------------
def _service(request: web.Request) -> DeclarationService:
    return request.app[DECLARATIONS]


def _by(principal: Principal) -> str:
    return (f"user {principal.user_id} of organisation {principal.org_id}"
            if principal.user_id is not None
            else f"API key {principal.credential_id} of organisation {principal.org_id}")


def readable(service: DeclarationService, principal: Principal, text: str) -> Shipment | None:
    """The stored shipment ``text`` names if ``principal`` may read it, else None (the pages
    and the API read through here)."""
    found = service.store.shipment(int(text)) if text.isascii() and text.isdigit() and \
        len(text) < 12 else None
    return found if found is not None and service.may_read(principal, found) else None


def _shipment(request: web.Request, principal: Principal, *, write: bool = False) -> Shipment:
    found = readable(_service(request), principal, request.match_info["shipment_id"])
    if found is None:
        raise NotFound("no such declaration", code="declaration-not-found")
    if write and found.org_id != principal.org_id:
        raise NotFound("no such declaration of yours", code="declaration-not-found")
    return found


def _drafts(service: DeclarationService, shipment: Shipment) -> DraftSet:
    record = service.record_of(shipment)
    if record is None:
        raise Conflict(f"{shipment.reference} is no longer visible to the declarant",
                       code="shipment-not-visible")
    try:
        return service.drafts_of(shipment, record)
    except CorrectionError as exc:  # a stored correction that no longer applies
        raise Conflict(str(exc), code=exc.code) from None


def _invoice_errors(errors: list[invoice.InvoiceError]) -> Unprocessable:
    return Unprocessable(f"{len(errors)} problems in the invoice; nothing was stored. First: "
                         f"line {errors[0].line}: {errors[0].message}", code="invalid-invoice",
                         details={"errors": [e.to_json() for e in errors[:500]],
                                  "count": len(errors)})


def view_of(service: DeclarationService, shipment: Shipment) -> dict[str, Any]:
    """A shipment's drafts side by side with approvals, corrections and submissions (what
    ``GET /v1/declarations/{id}`` answers; 409 if the declarant no longer sees the shipment)."""
    drafts = _drafts(service, shipment)
    approvals = service.store.approvals(shipment)
    body = drafts.to_json()
    for draft, item in zip(drafts.drafts, body["drafts"], strict=True):
        approval = approvals.get(draft.key)
        item["approval"] = ({**approval, "current": approval["documentHash"]
                             == document_hash(draft.document())} if approval else None)
    options = shipment.body["options"]
    return {"id": shipment.id, "reference": shipment.reference, "owner": shipment.org_id,
            "readers": list(shipment.readers), "direction": options["direction"],
            "authorities": options["authorities"],
            "lines": len(shipment.body["lines"]), **body,
            "corrections": service.store.corrections(shipment),
            "kind": options.get("kind", "mbl"), "job": _job_json(service, shipment),
            # the secret of the filings' keys on chain: for the declaration's readers only
            "chainSalt": "0x" + service.store.salt(shipment).hex(),
            "submissions": [submission_json(service, s)
                            for s in service.store.submissions_of(shipment.id)]}


def submission_json(service: DeclarationService, sub: Any) -> dict[str, Any]:
    """A submission with its status history, its filing on chain (``chain``: where it stands,
    its key in ``Declarations.vy`` and the alias its customs events name) and, for ROCARS, its
    CCRN's binding."""
    key = service.chain_key_of(sub)
    state, posted = service.store.chain_of(sub.id)
    out = {**sub.to_json(), "history": service.store.history(sub.id),
           "chain": {"state": state, "posted": posted,
                     "key": None if key is None else "0x" + key.hex(),
                     "alias": service.alias_of(sub)}}
    if sub.authority == "hk-rocars":
        out["binding"] = service.store.binding(sub.id)
    return out


def _job_json(service: DeclarationService, shipment: Shipment) -> dict[str, Any] | None:
    """A truck job's declaration: the job's vehicle, window, state and bound CCRN now."""
    job = service.job_of(shipment)
    if job is None:
        return None
    return {"id": job.id, "vehicle": job.vehicle, "ccrn": job.ccrn, "state": job.state,
            "containers": list(job.containers)}


# -- routes ------------------------------------------------------------------------------------
@api.post("/v1/declarations", openapi.operation(
    "Upload the goods lines of a shipment once: get its TDEC, ROCARS and ITSW drafts",
    description="`invoice` holds `csv` (the documented columns) or `lines` (JSON objects of "
                "the same columns). The shipment (`reference`: B/L, house B/L, AWB) must be "
                "visible to your organisation in tracking; vessel, voyage, ports and dates "
                "come from there. An invoice with problems is refused with every problem "
                "(line, column, code). See docs/declarations.md.",
    body=UPLOAD_SCHEMA, ok=201, ok_schema=_OBJECT, errors=(*_ERRORS, 404, 409, 413, 415, 422),
))
async def upload(request: web.Request) -> web.Response:
    principal = require(request, WRITE)
    body = await read_json(request, UPLOAD_SCHEMA)
    service = _service(request)
    parsed = (invoice.parse_csv(body["invoice"]["csv"].encode()) if "csv" in body["invoice"]
              else invoice.parse_json(_lines_json(body["invoice"].get("lines"))))
    if not parsed.ok:
        raise _invoice_errors(parsed.errors)
    kind = body.get("kind")
    if kind == "truck":
        return await _upload_for_job(request, principal, body, parsed.lines)
    try:
        reference = identifiers.normalise(kind or "mbl", body["reference"])
        bills = [identifiers.normalise(kind or "mbl", b) for b in body.get("bills", [])]
    except identifiers.IdentifierError as exc:
        raise Unprocessable(f"/reference: {exc}", code=exc.code) from None
    if service.tracking is None or principal.chain_org is None or \
            service.tracking.shipment_of(principal, reference) is None:
        raise NotFound(f"no shipment {reference} you may see in tracking",
                       code="shipment-not-found")
    for bill in bills:
        if bill != reference and service.tracking.shipment_of(principal, bill) is None:
            raise NotFound(f"no transport document {bill} you may see in tracking",
                           code="shipment-not-found")
    view = service.tracking.shipment_of(principal, reference) or {}
    authorities = body.get("authorities") or (
        ["hk-tdec", "hk-rocars", "cn-itsw"] if "crossing" in body else ["hk-tdec", "cn-itsw"])
    crossing = body.get("crossing")
    options: dict[str, Any] = {
        "direction": body["direction"], "kind": view.get("kind", kind or "mbl"),
        "bills": bills or [reference], "authorities": authorities,
        "exempt": bool(body.get("exempt")),
        "consignor": body.get("consignor"), "consignee": body.get("consignee"),
        "containers": [c["number"] for c in view.get("containers", [])
                       if isinstance(c, dict) and c.get("number")],
        "crossing": None if crossing is None else {
            "vehicle": crossing["vehicle"], "controlPoint": crossing.get("controlPoint", ""),
            "time": _unix(crossing["time"])}}
    return _store(request, principal, reference, parsed.lines, options, body)


def _store(request: web.Request, principal: Principal, reference: str, lines: list[Any],
           options: dict[str, Any], body: dict[str, Any]) -> web.Response:
    """Check the named parties and readers are organisations, keep the goods lines and
    options under ``reference``; 201 when new, 200 when they replace an upload."""
    for role in ("consignor", "consignee"):
        party = options[role]
        if isinstance(party, dict) and "organisation" in party:
            _organisation(request, party["organisation"], f"/{role}/organisation")
    readers = list(body.get("readers", []))
    for i, org in enumerate(readers):
        _organisation(request, org, f"/readers/{i}")
    service = _service(request)
    shipment, new = service.store.put_shipment(
        principal.org_id, reference,
        {"lines": [g.to_json() for g in lines], "options": options}, readers)
    if not new:  # a reader it no longer names must not be served its cached views
        service.forget_views(shipment)
    return web.json_response(view_of(service, shipment), status=201 if new else 200)


async def _upload_for_job(request: web.Request, principal: Principal, body: dict[str, Any],
                          lines: list[Any]) -> web.Response:
    """The goods lines of a truck job (``kind: truck``, ``reference``: its id): only the job's
    haulier declares; the record, vehicle and crossing come from the job."""
    land = request.app.get(LAND)
    reference = body["reference"].strip().upper()
    if land is None or not is_job_id(reference):
        raise NotFound(f"no truck job {reference[:20]} you may see", code="shipment-not-found")
    try:
        job, via = land.job_for(principal, reference)
    except ApiError:  # unknown, or not for this caller: the same answer
        raise NotFound(f"no truck job {reference} you may see",
                       code="shipment-not-found") from None
    if via != "haulier":
        raise Forbidden(f"only the haulier of job {job.id} declares its goods",
                        code="not-the-haulier")
    if job.state in ("delivered", "cancelled"):
        raise Conflict(f"job {job.id} is {job.state}", code="job-" + job.state)
    if "crossing" in body:
        raise Unprocessable("a truck job's vehicle and crossing come from the job: leave "
                            "/crossing out", code="crossing-from-job",
                            details={"path": "/crossing"})
    if body.get("bills"):
        raise Unprocessable("a truck job's documents come from the job: leave /bills out",
                            code="bills-from-job", details={"path": "/bills"})
    options: dict[str, Any] = {
        "direction": body["direction"], "kind": "truck", "bills": [job.id],
        "authorities": body.get("authorities") or ["hk-tdec", "hk-rocars", "cn-itsw"],
        "exempt": bool(body.get("exempt")),
        "consignor": body.get("consignor"), "consignee": body.get("consignee"),
        "containers": list(job.containers), "crossing": None}
    return _store(request, principal, job.id, lines, options, body)


def _lines_json(lines: Any) -> bytes:
    return json.dumps(lines if lines is not None else []).encode()


def _unix(text: str) -> int:
    try:
        return parse_time(text, field="/crossing/time")
    except EventError as exc:
        raise Unprocessable(str(exc), code=exc.code) from None


def _organisation(request: web.Request, org_id: int, path: str) -> None:
    try:
        request.app[ACCOUNTS].organisation(org_id)
    except Exception:
        raise Unprocessable(f"{path}: no organisation {org_id}", code="unknown-organisation",
                            details={"path": path}) from None


@api.get("/v1/declarations", openapi.operation(
    "Shipments with declarations you may read (yours, naming you, or to your authority)",
    ok_schema=_OBJECT, errors=_ERRORS,
))
async def list_declarations(request: web.Request) -> web.Response:
    principal = require(request, READ)
    return web.json_response({"declarations": listing(_service(request), principal)})


def listing(service: DeclarationService, principal: Principal) -> list[dict[str, Any]]:
    """The shipments ``principal`` may read: its own, those naming it, and (an authority's
    organisation) those submitted to it."""
    rows = service.store.shipments_of(principal.org_id)
    mine = service.authorities_of(principal.org_id)
    if mine:
        known = {s.id for s in rows}
        rows += [s for s in service.store.submitted_shipments(sorted(mine)) if s.id not in known]
    return [{"id": s.id, "reference": s.reference, "owner": s.org_id,
             "direction": s.body["options"]["direction"], "updated": s.updated} for s in rows]


@api.get("/v1/declarations/{shipment_id}", openapi.operation(
    "A shipment's drafts side by side with lineage, issues, approvals and submissions",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404, 409),
))
async def get_declaration(request: web.Request) -> web.Response:
    principal = require(request, READ)
    return web.json_response(view_of(_service(request), _shipment(request, principal)))


@api.put("/v1/declarations/{shipment_id}/goods", openapi.operation(
    "Replace the goods lines (CSV as text/csv, or JSON); corrections and approvals go",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"})],
    body={"description": "The invoice: CSV with the documented columns (text/csv), or a JSON "
                         "array of line objects (application/json); docs/declarations.md."},
    body_types=("text/csv", "application/json"), ok_schema=_OBJECT,
    errors=(*_ERRORS, 404, 409, 413, 422),
))
async def put_goods(request: web.Request) -> web.Response:
    principal = require(request, WRITE)
    shipment = _shipment(request, principal, write=True)
    if request.content_length is not None and \
            request.content_length > request.app[CONFIG].max_bulk_body_bytes:
        raise BadRequest("the invoice is too large", code="body-too-large")
    data = await request.read()
    parsed = invoice.parse(data, request.content_type)
    if not parsed.ok:
        raise _invoice_errors(parsed.errors)
    service = _service(request)
    updated, _ = service.store.put_shipment(
        shipment.org_id, shipment.reference,
        {"lines": [g.to_json() for g in parsed.lines], "options": shipment.body["options"]},
        list(shipment.readers))
    return web.json_response(view_of(service, updated))


@api.post("/v1/declarations/{shipment_id}/corrections", openapi.operation(
    "Correct one draft field (`fields/<name>` or `lines/<invoice line>/<name>`)",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"})],
    body=CORRECTION_SCHEMA, ok=201, ok_schema=_OBJECT, errors=(*_ERRORS, 404, 409, 422),
))
async def correct(request: web.Request) -> web.Response:
    principal = require(request, WRITE)
    shipment = _shipment(request, principal, write=True)
    body = await read_json(request, CORRECTION_SCHEMA)
    service = _service(request)
    drafts = _drafts(service, shipment)
    draft = drafts.draft(body["draft"])
    if draft is None:
        raise NotFound(f"no draft {body['draft']!r}", code="draft-not-found")
    by, at = _by(principal), int(service.clock())
    try:  # tried on the current drafts first: a bad correction is never stored
        apply_correction(draft, Correction(draft.key, body["path"], body["value"], by, at))
    except CorrectionError as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"path": body["path"]}) from None
    service.store.add_correction(shipment, draft.key, body["path"], body["value"], by, at)
    return web.json_response(view_of(service, shipment), status=201)


@api.post("/v1/declarations/{shipment_id}/drafts/{draft}/approve", openapi.operation(
    "Approve a draft as it is now (refused while it has errors)",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"}),
                openapi.path_parameter("draft", {"type": "string"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404, 409),
))
async def approve(request: web.Request) -> web.Response:
    principal = require(request, WRITE)
    shipment = _shipment(request, principal, write=True)
    service = _service(request)
    draft = _drafts(service, shipment).draft(request.match_info["draft"])
    if draft is None:
        raise NotFound("no such draft", code="draft-not-found")
    if not draft.ok:
        raise Conflict(f"{draft.key} has errors: correct them first", code="draft-has-errors",
                       details={"issues": [i.to_json() for i in draft.issues
                                           if i.severity == "error"]})
    digest = document_hash(draft.document())
    service.store.approve(shipment, draft.key, digest, _by(principal), int(service.clock()))
    return web.json_response({"draft": draft.key, "documentHash": digest})


@api.post("/v1/declarations/{shipment_id}/drafts/{draft}/submit", openapi.operation(
    "Submit an approved draft to its authority (idempotent: the same document once)",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"}),
                openapi.path_parameter("draft", {"type": "string"})],
    ok=202, ok_schema=_OBJECT, errors=(*_ERRORS, 404, 409),
))
async def submit(request: web.Request) -> web.Response:
    principal = require(request, WRITE)
    shipment = _shipment(request, principal, write=True)
    service = _service(request)
    draft = _drafts(service, shipment).draft(request.match_info["draft"])
    if draft is None:
        raise NotFound("no such draft", code="draft-not-found")
    approval = service.store.approvals(shipment).get(draft.key)
    document = draft.document()
    if approval is None or approval["documentHash"] != document_hash(document):
        raise Conflict(f"approve {draft.key} as it is now before submitting it",
                       code="not-approved")
    sub, new = service.store.enqueue(shipment, draft.key, draft.authority, document,
                                     _by(principal))
    service.wake.set()
    return web.json_response({**sub.to_json(), "duplicate": not new}, status=202)


@api.get("/v1/declarations/{shipment_id}/submissions", openapi.operation(
    "A shipment's submissions: status, official number, reasons, attempts, history",
    parameters=[openapi.path_parameter("shipment_id", {"type": "integer"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404),
))
async def submissions(request: web.Request) -> web.Response:
    principal = require(request, READ)
    shipment = _shipment(request, principal)
    service = _service(request)
    return web.json_response({"submissions": [
        submission_json(service, s) for s in service.store.submissions_of(shipment.id)]})


@api.post("/v1/declarations/authorities/{authority}/bind", openapi.operation(
    "Bind your customs organisation to an authority in Declarations.vy (once; idempotent: "
    "the answer says where the binding stands)",
    parameters=[openapi.path_parameter("authority", {"enum": list(onchain.AUTHORITY_CODES)})],
    ok=202, ok_schema=_OBJECT, errors=(*_ERRORS, 404, 503),
))
async def bind_authority(request: web.Request) -> web.Response:
    """Only the organisation the gateway's settings name as the authority's binds it; the
    contract refuses a caller without the customs role and a second binding of an authority
    (the receipt then says so)."""
    principal = require(request, WRITE)
    service = _service(request)
    authority = request.match_info["authority"]
    if authority not in onchain.AUTHORITY_CODES:
        raise NotFound(f"no authority {authority[:20]}", code="authority-not-found")
    configured = (service.settings.cn_authority_org if authority == "cn-itsw"
                  else service.settings.hk_authority_org)
    if configured != principal.org_id:
        raise Forbidden(f"this gateway does not name your organisation as {authority}'s",
                        code="not-the-authority")
    org = request.app[ACCOUNTS].organisation(principal.org_id)
    if org.chain_org is None:
        raise Forbidden("your organisation is not a member on chain", code="not-on-chain")
    if service.outbox is None:
        raise Unavailable("this gateway has no write path", code="no-write-path")
    (receipt,) = await service.outbox.accept_async(principal.org_id,
                                                   [onchain.bind_operation(authority)])
    return web.json_response({"authority": authority,
                              "code": onchain.AUTHORITY_CODES[authority],
                              "receipt": receipt.to_json()}, status=202)


# -- lifecycle ---------------------------------------------------------------------------------
async def declarations_context(app: web.Application) -> AsyncIterator[None]:
    """Open ``declarations.db``, the connectors and (where background tasks run) the worker."""
    config = app[CONFIG]
    settings = DeclarationSettings.from_json(config.extra.get("declarations") or {})
    store = DeclarationStore(config.path("declarations.db"),
                             secret=app[appkeys.KEYSTORE].secret(SECRET))
    session = aiohttp.ClientSession(headers={"User-Agent": "PortLedger-gateway (declarations)"})
    connectors = (http_connectors(settings.authority_url, session,
                                  timeout_seconds=settings.timeout_seconds)
                  if settings.authority_url else {})
    service = DeclarationService(store=store, settings=settings, accounts=app[ACCOUNTS],
                                 tracking=app.get(appkeys.TRACKING), nomenclature=hs.shipped(),
                                 connectors=connectors, outbox=app.get(appkeys.OUTBOX),
                                 land=app.get(LAND))
    app[DECLARATIONS] = service
    tasks: list[asyncio.Task[None]] = []
    if config.background_tasks:
        tasks.append(asyncio.create_task(service.run(), name="declarations-worker"))
    app[_TASKS] = tasks
    try:
        yield
    finally:
        await cancelled(tasks)
        await session.close()
        store.close()


def _declaration_key(app: web.Application, principal: Principal, number: str,
                     ) -> DeclarationRef | None:
    """Tracking's hook (:data:`gateway.appkeys.DECLARATION_KEYS`): the chain key and the alias
    of a declaration for its readers (None before the service runs)."""
    service = app.get(DECLARATIONS)
    return None if service is None else service.declaration_key(principal, number)


def setup(app: web.Application) -> None:
    """Add the declarations routes, the service's lifecycle and tracking's hook."""
    app.cleanup_ctx.append(declarations_context)
    hook: DeclarationKeys = functools.partial(_declaration_key, app)
    app[appkeys.DECLARATION_KEYS] = hook
    api.install(app)
