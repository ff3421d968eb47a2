"""The land leg's HTTP API (``/v1/land/…``) and its lifecycle (``setup``).

Keys and tokens
    ``GET /v1/land/key`` — the land key as an OKP JWK (public, for offline verifiers);
    ``GET /v1/land/jobs/{id}/token`` and ``…/qr.svg`` / ``…/qr.png`` — the job's signed token
    and its QR code (the haulier and the job's driver); ``POST /v1/land/jobs/{id}/token`` — a new
    token replacing (revoking) the last; ``POST /v1/land/verify`` — what a token says and
    whether it holds now (any signed-in caller; nothing is recorded).
Drivers
    ``POST /v1/land/drivers`` (haulier admin: name, phone), ``GET /v1/land/drivers``,
    ``POST /v1/land/drivers/{id}/code`` (haulier admin: a one-time 8-digit code, shown once),
    ``POST /v1/land/driver-session`` (phone and code → a driver session: cookie and CSRF token).
Jobs
    ``POST /v1/land/jobs`` (haulier), ``GET /v1/land/jobs`` (the caller's: a haulier's, a
    driver's assigned ones, a terminal's or warehouse's addressed ones; ``?container=`` those of
    a container the caller may see), ``GET /v1/land/jobs/{id}`` (with each container's pick-up
    right), ``POST /v1/land/jobs/{id}/driver``, ``POST /v1/land/jobs/{id}/cancel``.
Gates
    ``POST /v1/land/gate-out`` (the pick-up terminal), ``POST /v1/land/receipts`` (the delivery
    warehouse).
Positions and custody
    ``POST /v1/land/jobs/{id}/positions`` (the job's driver, or the haulier's systems),
    ``GET /v1/land/jobs/{id}/positions``, ``GET /v1/land/jobs/{id}/custody``,
    ``GET /v1/land/containers/{number}/custody``.

Design, token format and every refusal: ``docs/land.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
from collections.abc import AsyncIterator
from typing import Any

import segno
from aiohttp import web

from contracts import ROLES
from gateway import errors, openapi
from gateway.accounts.auth import check_origin, set_session_cookie
from gateway.appkeys import ACCOUNTS, CONFIG, KEYSTORE
from gateway.events.model import EventError, Reference, parse_time
from gateway.intake import service as intake
from gateway.isotime import iso_time
from gateway.jsonbody import read_json
from gateway.land import token as tokens
from gateway.land.model import (
    MAX_CONDITION,
    MAX_CONTAINERS,
    MAX_WINDOW,
    Job,
    LandError,
    Place,
    check_ccrn,
    check_phone,
    check_vehicle,
    seal_number,
)
from gateway.land.service import KEY_SECRET, LandService, is_job_id, settings_of
from gateway.land.store import SECRET as STORE_SECRET
from gateway.land.store import open_store
from gateway.principal import Principal, require
from gateway.telemetry import service as telemetry

#: The land service of the application.
LAND = web.AppKey("land", LandService)

api = openapi.Routes(tag="land", description="The land leg: jobs, drivers, signed pick-up "
                     "rights (QR), terminal gate-out, warehouse receipt, truck positions, "
                     "custody chain")

_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
_REF = {"type": "object", "additionalProperties": False, "required": ["kind", "value"],
        "properties": {"kind": {"enum": ["mbl", "hbl", "container"]},
                       "value": {"type": "string", "minLength": 1, "maxLength": 40}}}
_LOCODE = {"type": "string", "pattern": "^[A-Za-z]{2} ?[A-Za-z2-9]{3}$"}
_SEALS = {"type": "object", "maxProperties": MAX_CONTAINERS,
          "additionalProperties": {"type": "array", "maxItems": 8,
                                   "items": {"type": "string", "minLength": 1,
                                             "maxLength": 20}}}
JOB_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["references", "pickup", "delivery", "window", "vehicle"],
    "properties": {
        "references": {"type": "array", "minItems": 1, "maxItems": 8, "items": _REF,
                       "description": "B/Ls (master or house) and/or container numbers"},
        "containers": {"type": "array", "maxItems": MAX_CONTAINERS, "uniqueItems": True,
                       "items": {"type": "string", "maxLength": 20},
                       "description": "Only these of the references' containers"},
        "pickup": {"type": "object", "additionalProperties": False,
                   "required": ["terminal", "location"],
                   "properties": {"terminal": {"type": "integer", "minimum": 1},
                                  "location": _LOCODE,
                                  "facility": {"type": "string", "maxLength": 40}}},
        "delivery": {"type": "object", "additionalProperties": False,
                     "required": ["warehouse"],
                     "properties": {"warehouse": {"type": "integer", "minimum": 1},
                                    "location": _LOCODE,
                                    "address": {"type": "string", "maxLength": 200}}},
        "window": {"type": "object", "additionalProperties": False, "required": ["from", "to"],
                   "properties": {"from": _TIME, "to": _TIME}},
        "vehicle": {"type": "string", "minLength": 2, "maxLength": 20},
        "ccrn": {"type": "string", "minLength": 1, "maxLength": 20},
        "driver": {"type": "integer", "minimum": 1},
        "seals": _SEALS,
        "share": {"type": "array", "maxItems": 8, "uniqueItems": True,
                  "items": {"type": "integer", "minimum": 1},
                  "description": "Members (Consortium ids) that may follow the job: its truck, "
                                 "its boxes' public custody steps (e.g. the consignee)"},
    },
}
DRIVER_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["name", "phone"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100},
                   "phone": {"type": "string", "minLength": 6, "maxLength": 24}}}
SIGN_IN_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["phone", "code"],
    "properties": {"phone": {"type": "string", "minLength": 6, "maxLength": 24},
                   "code": {"type": "string", "pattern": "^[0-9]{6,8}$"}}}
TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["token"],
    "properties": {"token": {"type": "string", "minLength": 1, "maxLength": tokens.MAX_TOKEN},
                   "time": _TIME}}
RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["token"],
    "properties": {**TOKEN_SCHEMA["properties"], "seals": _SEALS,
                   "condition": {"type": "string", "maxLength": MAX_CONDITION}}}
POSITIONS_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["positions"],
    "properties": {"positions": {"type": "array", "minItems": 1, "maxItems": 500, "items": {
        "type": "object", "additionalProperties": False, "required": ["time", "lat", "lon"],
        "properties": {"time": _TIME,
                       "lat": {"type": "number", "minimum": -90, "maximum": 90},
                       "lon": {"type": "number", "minimum": -180, "maximum": 180},
                       "speed": {"type": "number", "minimum": 0, "maximum": 100,
                                 "description": "m/s"},
                       "heading": {"type": "number", "minimum": 0, "maximum": 360},
                       "accuracy": {"type": "number", "minimum": 0, "maximum": 100000,
                                    "description": "metres"}}}}}}
_ID = openapi.path_parameter("job_id", {"type": "string", "pattern": "^LJ[0-9A-F]{12}$"})
_OBJECT = {"type": "object"}


def _land(request: web.Request) -> LandService:
    return request.app[LAND]


def _time(text: str, path: str) -> int:
    try:
        return parse_time(text, field=path)
    except EventError as exc:
        raise errors.Unprocessable(str(exc), code=exc.code, details={"path": path}) from None


def _land_error(exc: LandError) -> errors.Unprocessable:
    return errors.Unprocessable(exc.message, code=exc.code, details={"path": exc.path})


def _job_id(request: web.Request) -> str:
    text = request.match_info["job_id"]
    if not is_job_id(text):
        raise errors.BadRequest("a job id is LJ and 12 hex digits", code="bad-job-id")
    return text


def _reader(request: web.Request) -> Principal:
    who = require(request)
    if who.role != "driver" and "tracking:read" not in who.scopes:
        raise errors.Forbidden("this credential lacks the 'tracking:read' scope",
                               code="missing-scope")
    return who


# -- key and tokens --------------------------------------------------------------------------
@api.get("/v1/land/key", openapi.operation(
    "The land key (public): verify pick-up tokens offline",
    description="An RFC 8037 OKP JWK (Ed25519) with its key id; the token format is in "
                "docs/land.md.",
    ok_schema={"type": "object", "properties": {"kty": {"const": "OKP"},
                                                "crv": {"const": "Ed25519"},
                                                "x": {"type": "string"},
                                                "kid": {"type": "string"}}},
    errors=(429,),
))
async def land_key(request: web.Request) -> web.Response:
    return web.json_response(tokens.public_jwk(_land(request).key.public_key()),
                             headers={"Cache-Control": "public, max-age=3600"})


def _own_job(request: web.Request) -> tuple[Principal, LandService, Job]:
    """The caller (a haulier with ``events:write``), the service and the job of the path if it
    is the caller's own (anyone else's, or none: 404 ``unknown-job``)."""
    who = require(request, "events:write")
    land = _land(request)
    land.haulier(request, who)
    job, via = land.job_for(who, _job_id(request))
    if via != "haulier":
        raise errors.NotFound("no such job of yours", code="unknown-job")
    return who, land, job


def _token_job(request: web.Request) -> Any:
    who = _reader(request)
    land = _land(request)
    job, via = land.job_for(who, _job_id(request))
    if via not in ("haulier", "driver"):
        raise errors.Forbidden("only the haulier and the job's driver get its token",
                               code="not-the-haulier")
    return job


@api.get("/v1/land/jobs/{job_id}/token", openapi.operation(
    "The job's signed pick-up token", parameters=[_ID], ok_schema=_OBJECT,
    errors=(400, 401, 403, 404, 409, 429)))
async def job_token(request: web.Request) -> web.Response:
    land = _land(request)
    job = _token_job(request)
    text, claims = land.token_of(job)
    return web.json_response({"token": text, "claims": claims.to_json(),
                              "validFrom": iso_time(claims.not_before),
                              "validUntil": iso_time(claims.expires)})


@api.post("/v1/land/jobs/{job_id}/token", openapi.operation(
    "Replace the job's token (haulier): a new nonce; the old token is revoked (a lost phone)",
    parameters=[_ID], ok=201, ok_schema=_OBJECT, errors=(400, 401, 403, 404, 409, 429)))
async def replace_token(request: web.Request) -> web.Response:
    who, land, job = _own_job(request)
    if job.state != "planned":
        raise errors.Conflict(f"job {job.id} is {job.state}", code="job-" + job.state)
    land.store.update_job(job.id, nonce=tokens.new_nonce())
    fresh = land.store.job(job.id)
    assert fresh is not None
    text, claims = land.token_of(fresh)
    return web.json_response({"token": text, "claims": claims.to_json(),
                              "validFrom": iso_time(claims.not_before),
                              "validUntil": iso_time(claims.expires)}, status=201)


def qr_image(text: str, kind: str) -> bytes:
    """The token as a QR code (segno, error correction M): SVG or PNG bytes."""
    code = segno.make_qr(text, error="m")
    out = io.BytesIO()
    if kind == "svg":
        code.save(out, kind="svg", scale=4, border=4, title="PortLedger pick-up token")
    else:
        code.save(out, kind="png", scale=6, border=4)
    return out.getvalue()


@api.get("/v1/land/jobs/{job_id}/qr.{kind:svg|png}", openapi.operation(
    "The job's token as a QR code (SVG or PNG)",
    parameters=[_ID, openapi.path_parameter("kind", {"enum": ["svg", "png"]})],
    ok_content={"image/svg+xml": {}, "image/png": {}},
    errors=(400, 401, 403, 404, 409, 429)))
async def job_qr(request: web.Request) -> web.Response:
    land = _land(request)
    job = _token_job(request)
    text, _ = land.token_of(job)
    kind = request.match_info["kind"]
    body = await asyncio.to_thread(qr_image, text, kind)
    return web.Response(body=body, content_type="image/svg+xml" if kind == "svg"
                        else "image/png", headers={"Cache-Control": "private, no-store"})


@api.post("/v1/land/verify", openapi.operation(
    "Check a token: signature, window, replay and revocation (nothing is recorded)",
    body=TOKEN_SCHEMA, ok_schema=_OBJECT, errors=(400, 401, 403, 409, 413, 415, 422, 429)))
async def verify_token(request: web.Request) -> web.Response:
    who = require(request)
    body = await read_json(request, TOKEN_SCHEMA)
    land = _land(request)
    job, claims = land.check_token(body["token"], None, who)
    return web.json_response({"valid": True, "claims": claims.to_json(), "state": job.state,
                              "usedAt": {p: land.store.used(claims.nonce, p) is not None
                                         for p in ("gate-out", "receipt")}})


# -- drivers ---------------------------------------------------------------------------------
def _admin(request: web.Request) -> Principal:
    who = require(request, "org:admin")
    _land(request).haulier(request, who)
    return who


@api.post("/v1/land/drivers", openapi.operation(
    "Add a driver (haulier admin): a person with a phone, signing in with one-time codes",
    body=DRIVER_SCHEMA, ok=201, ok_schema=_OBJECT,
    errors=(400, 401, 403, 409, 413, 415, 422, 429)))
async def add_driver(request: web.Request) -> web.Response:
    who = _admin(request)
    body = await read_json(request, DRIVER_SCHEMA)
    try:
        phone = check_phone(body["phone"])
    except LandError as exc:
        raise _land_error(exc) from None
    land = _land(request)
    if land.store.has_phone(who.org_id, phone):
        raise errors.Conflict(f"a driver with phone {phone} exists", code="phone-taken")
    # drivers have no e-mail: their user's address is a unique name under .invalid (RFC 2606)
    user = request.app[ACCOUNTS].create_user(
        who.org_id, f"driver-{secrets.token_hex(8)}@drivers.invalid", None, "driver",
        actor=f"user:{who.user_id}" if who.user_id else who.credential_id)
    driver = land.store.add_driver(who.org_id, user.id, body["name"].strip(), phone)
    return web.json_response(driver.to_json(), status=201)


@api.get("/v1/land/drivers", openapi.operation(
    "The haulier's drivers", ok_schema=_OBJECT, errors=(401, 403, 429)))
async def list_drivers(request: web.Request) -> web.Response:
    who = require(request, "events:write")
    _land(request).haulier(request, who)
    return web.json_response({"drivers": [d.to_json()
                                          for d in _land(request).store.drivers(who.org_id)]})


@api.post("/v1/land/drivers/{driver_id:[0-9]{1,12}}/code", openapi.operation(
    "A one-time sign-in code for a driver (haulier admin; replaces the last one)",
    parameters=[openapi.path_parameter("driver_id", {"type": "integer", "minimum": 1})],
    ok=201, ok_schema={"type": "object", "properties": {"code": {"type": "string"},
                                                        "expires": {"type": "string"}}},
    errors=(401, 403, 404, 429)))
async def driver_code(request: web.Request) -> web.Response:
    who = _admin(request)
    land = _land(request)
    driver = land.store.driver(int(request.match_info["driver_id"]))
    if driver is None or driver.org_id != who.org_id:
        raise errors.NotFound("no such driver of yours", code="unknown-driver")
    code, expires = await land.issue_code(driver)
    return web.json_response({"driver": driver.id, "phone": driver.phone, "code": code,
                              "expires": iso_time(expires)}, status=201,
                             headers={"Cache-Control": "no-store"})


@api.post("/v1/land/driver-session", openapi.operation(
    "Sign in as a driver with a phone number and a one-time code",
    body=SIGN_IN_SCHEMA, ok_schema={"type": "object", "properties": {
        "csrfToken": {"type": "string"}, "expires": {"type": "string"}, "driver": _OBJECT}},
    errors=(400, 401, 403, 413, 415, 422, 429)))
async def driver_sign_in(request: web.Request) -> web.Response:
    check_origin(request)
    body = await read_json(request, SIGN_IN_SCHEMA)
    try:
        phone = check_phone(body["phone"])
    except LandError as exc:
        raise _land_error(exc) from None
    land = _land(request)
    driver = await land.sign_in(phone, body["code"], request.remote or "unknown")
    accounts = request.app[ACCOUNTS]
    session = accounts.start_session(accounts.user(driver.user_id), via="session")
    response = web.json_response({"csrfToken": session.csrf, "expires": iso_time(
        session.expires), "driver": driver.to_json()})
    set_session_cookie(response, request.app[CONFIG], session)
    return response


# -- jobs ------------------------------------------------------------------------------------
@api.post("/v1/land/jobs", openapi.operation(
    "Plan a job (haulier): containers from B/Ls or numbers you may see, places, window, "
    "vehicle, CCRN, driver", body=JOB_SCHEMA, ok=201, ok_schema=_OBJECT,
    errors=(400, 401, 403, 409, 413, 415, 422, 429)))
async def create_job(request: web.Request) -> web.Response:
    who = intake.writer(request)
    land = _land(request)
    land.haulier(request, who)
    body = await read_json(request, JOB_SCHEMA)
    refs = [Reference(r["kind"], intake.normalise(r["kind"], r["value"], f"/references/{i}"))
            for i, r in enumerate(body["references"])]
    chosen = [intake.normalise("container", c, f"/containers/{i}")
              for i, c in enumerate(body.get("containers", []))]
    seals = {intake.normalise("container", c, "/seals"): [seal_number(s) for s in v]
             for c, v in body.get("seals", {}).items()}
    start, end = _time(body["window"]["from"], "/window/from"), _time(body["window"]["to"],
                                                                       "/window/to")
    if not start < end <= start + MAX_WINDOW:
        raise errors.Unprocessable("the window ends after it starts, within 7 days",
                                   code="invalid-window", details={"path": "/window"})
    if end <= land.now():
        raise errors.Unprocessable("the window is over already", code="invalid-window",
                                   details={"path": "/window/to"})
    try:
        vehicle = check_vehicle(body["vehicle"])
        ccrn = check_ccrn(body["ccrn"]) if "ccrn" in body else None
    except LandError as exc:
        raise _land_error(exc) from None
    pickup, delivery = body["pickup"], body["delivery"]
    for role, org, path in (("terminal", pickup["terminal"], "/pickup/terminal"),
                            ("warehouse", delivery["warehouse"], "/delivery/warehouse")):
        _check_member(request, org, role, path)
    for index, org in enumerate(body.get("share", [])):
        _check_member(request, org, None, f"/share/{index}")
    job = land.new_job(
        who, references=refs, containers=chosen, seals=seals,
        driver_id=body.get("driver"),
        pickup=Place(pickup["terminal"], intake.normalise("unlocode", pickup["location"],
                                                          "/pickup/location"),
                     pickup.get("facility", "").strip().upper()),
        delivery=Place(delivery["warehouse"],
                       intake.normalise("unlocode", delivery["location"], "/delivery/location")
                       if "location" in delivery else "", delivery.get("address", "").strip()),
        window_from=start, window_to=end, vehicle=vehicle, ccrn=ccrn,
        shared=tuple(sorted(set(body.get("share", [])))))
    out = land.job_json(job, "haulier", who)
    out["rights"] = [r.to_json() for r in land.rights(who, job.containers,
                                                      job.references).values()]
    return web.json_response(out, status=201)


def _check_member(request: web.Request, org: int, role: str | None, path: str) -> None:
    """422 unless ``org`` is an active chain member (playing ``role``, if given)."""
    model = intake.read_model(request.app)
    member = model.organisation(org) if model is not None else None
    if member is None or not member.active or (role is not None
                                               and not int(member.roles) & ROLES[role]):
        raise errors.Unprocessable(
            f"organisation {org} is not an active {role or 'chain'} member",
            code=f"not-a-{role or 'member'}", details={"path": path})


@api.get("/v1/land/jobs", openapi.operation(
    "Jobs you may see: a haulier's, a driver's own, a terminal's or warehouse's addressed ones;"
    " ?container= those of a container you may see",
    parameters=[openapi.query_parameter("container", {"type": "string", "maxLength": 20})],
    ok_schema=_OBJECT, errors=(400, 401, 403, 429)))
async def list_jobs(request: web.Request) -> web.Response:
    who = _reader(request)
    land = _land(request)
    text = request.query.get("container")
    container = intake.normalise("container", text, "container") if text else None
    if who.role == "driver":
        driver = land.driver_of(who)
        found = land.store.jobs(driver_id=driver.id if driver else -1, container=container)
    elif container is not None:
        found = land.store.jobs(container=container)
    else:
        unique = {j.id: j for j in [*land.store.jobs(org_id=who.org_id),
                                    *land.store.jobs(terminal=who.chain_org or -1),
                                    *land.store.jobs(warehouse=who.chain_org or -1)]}
        found = sorted(unique.values(), key=lambda j: (-j.created, j.id))
    jobs = []
    for job in found:
        via = land.access(who, job)
        if via is not None:
            jobs.append(land.job_json(job, via, who))
    return web.json_response({"jobs": jobs})


@api.get("/v1/land/jobs/{job_id}", openapi.operation(
    "A job you may see, with each container's pick-up right now", parameters=[_ID],
    ok_schema=_OBJECT, errors=(400, 401, 403, 404, 429)))
async def get_job(request: web.Request) -> web.Response:
    who = _reader(request)
    land = _land(request)
    job, via = land.job_for(who, _job_id(request))
    out = land.job_json(job, via, who)
    rights = land.rights(land.haulier_view(job) if via != "container" else who,
                         out["containers"], job.references)
    out["rights"] = [r.to_json() for r in rights.values()]
    out["gateOuts"] = [{"container": g["container"], "time": iso_time(g["at"])}
                       for g in land.store.gate_outs(job.id) if g["container"] in rights]
    receipt = land.store.receipt(job.id)
    out["receipt"] = None if receipt is None or via == "container" else {
        "time": iso_time(receipt["at"]), "seals": receipt["seals"],
        "condition": receipt["condition"]}
    return web.json_response(out)


@api.post("/v1/land/jobs/{job_id}/driver", openapi.operation(
    "Assign the job's driver (haulier)", parameters=[_ID],
    body={"type": "object", "required": ["driver"], "additionalProperties": False,
          "properties": {"driver": {"type": "integer", "minimum": 1}}},
    ok_schema=_OBJECT, errors=(400, 401, 403, 404, 409, 422, 429)))
async def assign_driver(request: web.Request) -> web.Response:
    who, land, job = _own_job(request)
    body = await read_json(request, {"type": "object", "required": ["driver"],
                                     "properties": {"driver": {"type": "integer"}}})
    driver = land.own_driver(who, body["driver"])
    if job.state != "planned":
        raise errors.Conflict(f"job {job.id} is {job.state}", code="job-" + job.state)
    land.store.update_job(job.id, driver_id=driver.id)
    updated = land.store.job(job.id)
    assert updated is not None
    return web.json_response(land.job_json(updated, "haulier", who))


@api.post("/v1/land/jobs/{job_id}/cancel", openapi.operation(
    "Cancel a job (haulier): its token is revoked at once", parameters=[_ID],
    body={"type": "object", "additionalProperties": False,
          "properties": {"reason": {"type": "string", "maxLength": 200}}},
    ok_schema=_OBJECT, errors=(400, 401, 403, 404, 409, 429)))
async def cancel_job(request: web.Request) -> web.Response:
    who, land, job = _own_job(request)
    body = await read_json(request, {"type": "object", "properties": {
        "reason": {"type": "string", "maxLength": 200}}})
    if job.state in ("delivered", "cancelled"):
        raise errors.Conflict(f"job {job.id} is {job.state}", code="job-" + job.state)
    land.store.update_job(job.id, state="cancelled", reason=body.get("reason", "").strip())
    updated = land.store.job(job.id)
    assert updated is not None
    return web.json_response(land.job_json(updated, "haulier", who))


# -- gates -----------------------------------------------------------------------------------
def _at(body: dict[str, Any]) -> int | None:
    return _time(body["time"], "/time") if "time" in body else None


@api.post("/v1/land/gate-out", openapi.operation(
    "Gate-out at the pick-up terminal with the scanned token: checks the right against the "
    "chain now and records TERMINAL.GTOT per container", body=TOKEN_SCHEMA, ok=201,
    ok_schema=_OBJECT, errors=(400, 401, 403, 409, 413, 415, 422, 429, 503)))
async def gate_out(request: web.Request) -> web.Response:
    who = intake.writer(request)
    body = await read_json(request, TOKEN_SCHEMA)
    out = await _land(request).gate_out(request, who, body["token"], _at(body))
    return web.json_response(out, status=201)


@api.post("/v1/land/receipts", openapi.operation(
    "Receipt at the delivery warehouse with the scanned token, seals found and condition: "
    "an EPCIS 2.0 receiving event and WAREHOUSE.RECEIPT per container", body=RECEIPT_SCHEMA,
    ok=201, ok_schema=_OBJECT, errors=(400, 401, 403, 409, 413, 415, 422, 429, 503)))
async def receipt(request: web.Request) -> web.Response:
    who = intake.writer(request)
    body = await read_json(request, RECEIPT_SCHEMA)
    found = {intake.normalise("container", c, "/seals"): v
             for c, v in body.get("seals", {}).items()}
    out = await _land(request).receive(request, who, body["token"], found,
                                       body.get("condition", "").strip(), _at(body))
    return web.json_response(out, status=201)


# -- positions and custody -------------------------------------------------------------------
@api.post("/v1/land/jobs/{job_id}/positions", openapi.operation(
    "Truck positions of the job (its driver, or the haulier's systems): a batch with their "
    "original times; those outside the window or after delivery are refused one by one",
    parameters=[_ID], body=POSITIONS_SCHEMA, ok=202, ok_schema=_OBJECT,
    errors=(400, 401, 403, 404, 409, 413, 415, 422, 429)))
async def post_positions(request: web.Request) -> web.Response:
    who = require(request)
    land = _land(request)
    job, via = land.job_for(who, _job_id(request))
    if via not in ("driver", "haulier") or (via == "haulier" and "events:write"
                                            not in who.scopes):
        raise errors.Forbidden("only the job's driver and its haulier share its positions",
                               code="not-the-driver")
    body = await read_json(request, POSITIONS_SCHEMA)
    items = [{**p, "_time": _time(p["time"], f"/positions/{i}/time")}
             for i, p in enumerate(body["positions"])]
    return web.json_response(await land.positions(who, job, items), status=202)


@api.get("/v1/land/jobs/{job_id}/positions", openapi.operation(
    "The truck's positions (everyone who may see the job)", parameters=[_ID],
    ok_schema=_OBJECT, errors=(400, 401, 403, 404, 429)))
async def get_positions(request: web.Request) -> web.Response:
    who = _reader(request)
    land = _land(request)
    job, _ = land.job_for(who, _job_id(request))
    found, more = await telemetry.readings_of(request.app, who, "truck-position",
                                              subject=job.trip, limit=1000)
    positions = [{"time": iso_time(f.stored.reading.time), **{
        k: v for k, v in f.stored.reading.values.items() if k not in ("job",)}}
        for f in found]
    return web.json_response({"job": job.id, "state": job.state, "positions": positions,
                              "latest": positions[-1] if positions else None,
                              "truncated": more})


@api.get("/v1/land/jobs/{job_id}/custody", openapi.operation(
    "The job's custody chain: release → gate-out → receipt, each signed by its party, as you "
    "may see it", parameters=[_ID], ok_schema=_OBJECT, errors=(400, 401, 403, 404, 429)))
async def job_custody(request: web.Request) -> web.Response:
    who = _reader(request)
    land = _land(request)
    job, via = land.job_for(who, _job_id(request))
    boxes = land.job_json(job, via, who)["containers"]
    return web.json_response({"job": job.id, "state": job.state,
                              "containers": land.custody(who, job, boxes)})


@api.get("/v1/land/containers/{number}/custody", openapi.operation(
    "A container's custody chains: one per job you may see (its parties also see each step's "
    "details); to a holder of the number only, one chain of the public steps (job null)",
    parameters=[openapi.path_parameter("number", {"type": "string", "maxLength": 20})],
    ok_schema=_OBJECT, errors=(400, 401, 403, 404, 429)))
async def container_custody(request: web.Request) -> web.Response:
    who = _reader(request)
    land = _land(request)
    number = intake.normalise("container", request.match_info["number"], "number")
    chains = []
    for job in land.store.jobs(container=number):
        via = land.access(who, job)
        if via is None or (via == "container" and not land.visible_containers(who, [number])):
            continue
        chains.append({"job": job.id, "state": job.state,
                       "chain": land.custody(who, job, [number])[0]["steps"]})
    if not chains:  # a holder of the number: the public steps, tied to no job
        steps = land.public_custody(who, number)
        if steps:
            chains.append({"job": None, "state": None, "chain": steps})
    if not chains:
        raise errors.NotFound(f"no custody step of {number} you may see", code="no-custody")
    return web.json_response({"container": number, "jobs": chains})


# -- lifecycle -------------------------------------------------------------------------------
def setup(app: web.Application) -> None:
    """``app[LAND]`` (``land.db``, the land key from the keystore) and the routes."""
    config = app[CONFIG]
    settings = settings_of(config.extra.get("land"))
    store = open_store(config.data_dir, secret=app[KEYSTORE].secret(STORE_SECRET))
    key = tokens.key_from_secret(app[KEYSTORE].secret(KEY_SECRET))
    app[LAND] = LandService(app, store, key, settings)

    async def land_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(land_ctx)
    api.install(app)
