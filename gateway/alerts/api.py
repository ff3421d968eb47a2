"""Alerts' HTTP API: the inbox, follows, preferences, settings, tariffs, the storage meter and
alert webhooks; and the service's lifecycle (:func:`setup`).

The pages (not here) read the same JSON: ``GET /v1/alerts`` (the alerts page), ``GET
/v1/alerts/unread-count`` (the navigation's badge), ``GET /v1/alerts/storage/{container}`` (the
container view's storage meter). Routes:

=====================================================  =====================================
``GET /v1/alerts?state=&kind=&unread=&before=&limit=``  the caller's organisation's alerts
``GET /v1/alerts/unread-count``                         unread alerts of the caller's kinds
``GET /v1/alerts/{id}``                                 one alert with its transitions
``POST /v1/alerts/{id}/read``, ``POST /v1/alerts/read`` mark read (per user; API keys: the org)
``GET/POST/DELETE /v1/alerts/follows``                  references watched beyond one's own
``GET/PUT /v1/alerts/preferences``                      the caller's delivery preferences
``GET/PUT /v1/alerts/settings``                         the organisation's rule settings
``GET/PUT /v1/alerts/tariffs/{terminal|carrier}/{org}`` published storage tariffs (HK$)
``GET /v1/alerts/storage/{container}``                  a box's storage meter
``GET/POST /v1/alerts/webhooks``, ``GET/DELETE .../{id}``, ``GET .../{id}/deliveries``
=====================================================  =====================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

from gateway import appkeys, openapi, ops
from gateway.alerts.delivery import AlertWebhooks, Dispatcher, summary
from gateway.alerts.engine import AlertEngine, AlertSettings, TariffBook, storage_meter
from gateway.alerts.mail import Mailer, SmtpSettings
from gateway.alerts.model import CHANGES, KINDS, STATES
from gateway.alerts.preferences import PreferencesError, parse_preferences
from gateway.alerts.rules import Settings, SettingsError
from gateway.alerts.store import AlertStore, TooManyFollows
from gateway.alerts.tariff import TariffError, describe, parse_tariff
from gateway.appkeys import ACCOUNTS, ALERTS, CONFIG
from gateway.background import cancelled
from gateway.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from gateway.events import identifiers
from gateway.events.model import REFERENCE_KINDS, Reference
from gateway.isotime import iso_time
from gateway.jsonbody import read_json
from gateway.principal import Principal, require
from gateway.subscriptions.delivery import DeliveryWorker
from gateway.subscriptions.model import (
    CallbackRefused,
    SubscriptionSettings,
    check_callback_url,
    decode_secret,
)
from gateway.subscriptions.resolver import PublicResolver, check_callback_resolves_public
from gateway.subscriptions.store import SubscriptionStore, TooManySubscriptions

log = logging.getLogger("portledger.gateway.alerts")

#: Name of the keystore secret alert bodies are sealed under.
SECRET = "alerts"

#: Scope of reading alerts, follows, preferences and the storage meter.
READ = "tracking:read"
#: Scope of an organisation's settings and published tariffs.
ADMIN = "org:admin"
#: Scope of alert webhooks (as DCSA subscriptions).
HOOKS = "events:read"

_ERRORS = (400, 401, 403, 429)


@dataclass
class AlertService:
    """What ``app[ALERTS]`` holds."""

    store: AlertStore
    engine: AlertEngine
    webhooks: AlertWebhooks
    mailer: Mailer | None
    settings: AlertSettings


# -- schemas ---------------------------------------------------------------------------------------
_REFERENCE = {"type": "object", "additionalProperties": False, "required": ["kind", "value"],
              "properties": {"kind": {"enum": list(REFERENCE_KINDS)},
                             "value": {"type": "string", "minLength": 1, "maxLength": 64}}}
FOLLOW_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["references"],
    "properties": {"references": {"type": "array", "minItems": 1, "maxItems": 500,
                                  "items": _REFERENCE}}}
ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An alert episode: the fixed members, then its figures (hours of slip, "
                   "peak deviation, days in yard, last free day, accrued and per_day in HK$...), "
                   "then its sources. See docs/alerts.md.",
    "required": ["id", "kind", "subject", "state", "episode", "opened", "updated", "sources"],
    "properties": {
        "id": {"type": "integer"}, "kind": {"enum": list(KINDS)}, "subject": _REFERENCE,
        "state": {"enum": list(STATES)}, "episode": {"type": "string"},
        "opened": {"type": "string"}, "updated": {"type": "string"},
        "resolved": {"type": ["string", "null"]}, "read": {"type": "boolean"},
        "summary": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "object"}}},
}
_ALERT = {"$ref": "#/components/schemas/Alert"}
READ_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"ids": {"type": "array", "maxItems": 1000,
                           "items": {"type": "integer", "minimum": 1}},
                   "all": {"type": "boolean"}}}
WEBHOOK_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["callbackUrl", "secret"],
    "properties": {
        "callbackUrl": {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2048},
        "secret": {"type": "string", "minLength": 1, "maxLength": 1400, "writeOnly": True,
                   "description": "Base64 of 16 to 1024 random bytes (the HMAC-SHA256 key)."},
        "kinds": {"type": "array", "uniqueItems": True, "items": {"enum": list(KINDS)}},
        "changes": {"type": "array", "uniqueItems": True, "items": {"enum": list(CHANGES)}}}}
_OBJECT: dict[str, Any] = {"type": "object"}

api = openapi.Routes(tag="Alerts", description="Alert episodes, delivery and storage meters.")


# -- helpers ----------------------------------------------------------------------------------------
def _service(request: web.Request) -> AlertService:
    return request.app[ALERTS]


def _reader_id(principal: Principal) -> int:
    """Read marks and preferences are per user; an API key reads as its organisation (0)."""
    return principal.user_id or 0


def _prefs(service: AlertService, principal: Principal) -> Any:
    raw = service.store.preferences(principal.org_id, _reader_id(principal))
    try:
        return parse_preferences(raw, mailbox=principal.user_id is None)
    except PreferencesError:
        return parse_preferences(None)


def _reference(kind: str, value: str, where: str) -> Reference:
    if kind not in REFERENCE_KINDS:
        raise BadRequest(f"{where}: kind is one of {', '.join(REFERENCE_KINDS)}",
                         code="bad-reference")
    try:
        return Reference(kind, identifiers.normalise(kind, value))
    except identifiers.IdentifierError as exc:
        raise Unprocessable(f"{where}: {exc}", code=exc.code) from None


def _int(request: web.Request, name: str, default: int | None, low: int, high: int,
         ) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or not low <= int(text) <= high:
        raise BadRequest(f"{name} is an integer from {low} to {high}", code="bad-query")
    return int(text)


def _alert_id(request: web.Request) -> int:
    text = request.match_info["alert_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise NotFound("no such alert", code="alert-not-found")
    return int(text)


def _kinds(request: web.Request) -> list[str]:
    found = [k.strip() for raw in request.query.getall("kind", []) for k in raw.split(",")
             if k.strip()]
    bad = [k for k in found if k not in KINDS]
    if bad:
        raise BadRequest(f"kind is one of {', '.join(KINDS)}", code="bad-query")
    return found


def _item(stored: Any, read: bool | None, now: int) -> dict[str, Any]:
    """An inbox item: the alert as of ``now`` (a storage meter's days and money worked out
    now), its read mark, its one-line summary."""
    body: dict[str, Any] = stored.to_json(read=read, now=now)
    body["summary"] = summary(body)
    return body


# -- what the API and the pages read ----------------------------------------------------------------
class NotAMember(Forbidden):
    """The caller's organisation has no keys here to read the chain with."""

    def __init__(self) -> None:
        super().__init__("your organisation is not a member of the chain yet, or its keys are "
                         "not held here", code="not-a-member")


def inbox_of(service: AlertService, principal: Principal, *, state: str | None,
             kinds: list[str], unread: bool, before: int | None, limit: int,
             subject: Reference | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """The caller's alerts (JSON form, newest first; ``kinds`` empty: those of the caller's
    preferences) and the ``before`` of the next page (None at the end)."""
    rows = service.store.inbox(principal.org_id, _reader_id(principal), state=state,
                               kinds=kinds or list(_prefs(service, principal).kinds),
                               unread=unread, before=before, limit=limit, subject=subject)
    now = int(service.engine.clock())
    return ([_item(stored, read, now) for stored, read in rows],
            rows[-1][0].id if len(rows) == limit else None)


def unread_of(service: AlertService, principal: Principal) -> int:
    """Unread alerts of the kinds the caller has delivered to the inbox."""
    prefs = _prefs(service, principal)
    kinds = list(prefs.kinds) if "inbox" in prefs.channels else []
    return service.store.unread_count(principal.org_id, _reader_id(principal), kinds)


def storage_of(service: AlertService, org_id: int, ref: Reference) -> dict[str, Any] | None:
    """A box's storage meter as ``org_id`` may see it (None: no yard events it may read)."""
    engine = service.engine
    recipient = engine.recipient(org_id)
    if recipient is None:
        raise NotAMember
    facts, terminal, readable = engine.facts_of(recipient, ref)
    if not readable:
        return None
    tariff = engine.tariffs.for_box(terminal, facts.carrier)
    body = storage_meter(facts, tariff, recipient.settings.storage, int(engine.clock()))
    open_alerts = [a for a in engine.states(org_id, ref).values()
                   if a.is_open and a.kind in ("not-picked-up", "free-time-ending")]
    body["alerts"] = [a.key for a in open_alerts]
    return body


def etas_of(service: AlertService, org_id: int, ref: Reference) -> dict[str, Any] | None:
    """A vessel's ETA history with sources and its arrivals, as ``org_id`` may see them
    (None: none)."""
    engine = service.engine
    recipient = engine.recipient(org_id)
    if recipient is None:
        raise NotAMember
    facts, _, _ = engine.facts_of(recipient, ref)
    if not facts.etas and not facts.arrivals:
        return None
    first: dict[str, int] = {}
    etas = []
    for fact in facts.etas:
        first.setdefault(fact.port, fact.eta)
        etas.append({"port": fact.port or None, "eta": iso_time(fact.eta),
                     "source": fact.source, "classifier": fact.classifier,
                     "received": iso_time(fact.received_at) if fact.received_at else None,
                     "slip_hours": round((fact.eta - first[fact.port]) / 3600, 1)})
    arrivals = [{"port": a.port or None, "arrived": iso_time(a.time),
                 "source": a.origin.publisher} for a in facts.arrivals]
    return {"vessel": ref.value, "etas": etas, "arrivals": arrivals}


# -- the inbox ---------------------------------------------------------------------------------------
@api.get("/v1/alerts", openapi.operation(
    "Your organisation's alerts, newest first",
    description="Filter by `state` (open, resolved), `kind` (repeat or comma-separate; "
                "default: the kinds of your preferences), `subject` (kind:value, e.g. "
                "container:CSQU3054383 — a container view's alerts, a reefer chart's "
                "excursions) and `unread=true` (not read by you since their last change). "
                "Page with `before` (an alert id).",
    parameters=[
        openapi.query_parameter("state", {"enum": list(STATES)}),
        openapi.query_parameter("subject", {"type": "string", "maxLength": 80}),
        openapi.query_parameter("kind", {"type": "string"}),
        openapi.query_parameter("unread", {"enum": ["true", "false"]}),
        openapi.query_parameter("before", {"type": "integer", "minimum": 1}),
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    ],
    ok_schema={"type": "object", "properties": {
        "alerts": {"type": "array", "items": _ALERT}, "next": {"type": ["integer", "null"]}}},
    errors=_ERRORS,
))
async def list_alerts(request: web.Request) -> web.Response:
    principal = require(request, READ)
    service = _service(request)
    unknown = sorted(set(request.query) - {"state", "kind", "unread", "before", "limit",
                                           "subject"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}", code="unknown-parameter")
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise BadRequest("state is open or resolved", code="bad-query")
    unread = request.query.get("unread", "false")
    if unread not in ("true", "false"):
        raise BadRequest("unread is true or false", code="bad-query")
    limit = _int(request, "limit", 50, 1, 500) or 50
    subject = None
    if "subject" in request.query:
        kind, _, value = request.query["subject"].partition(":")
        subject = _reference(kind.strip().lower(), value, "subject")
    alerts, following = inbox_of(service, principal, state=state, kinds=_kinds(request),
                                 unread=unread == "true",
                                 before=_int(request, "before", None, 1, 1 << 62), limit=limit,
                                 subject=subject)
    return web.json_response({"alerts": alerts, "next": following})


@api.get("/v1/alerts/unread-count", openapi.operation(
    "How many of your alerts changed since you last read them (the navigation's badge)",
    ok_schema={"type": "object", "properties": {"unread": {"type": "integer"}}},
    errors=_ERRORS,
))
async def unread_count(request: web.Request) -> web.Response:
    principal = require(request, READ)
    return web.json_response({"unread": unread_of(_service(request), principal)})


@api.get("/v1/alerts/{alert_id:[0-9]+}", openapi.operation(
    "One alert of your organisation, with its transitions",
    parameters=[openapi.path_parameter("alert_id", {"type": "integer", "minimum": 1})],
    ok_schema=_ALERT, errors=(*_ERRORS, 404),
))
async def get_alert(request: web.Request) -> web.Response:
    principal = require(request, READ)
    service = _service(request)
    stored = service.store.alert(principal.org_id, _alert_id(request))
    if stored is None:
        raise NotFound("no such alert", code="alert-not-found")
    rows = service.store.inbox(principal.org_id, _reader_id(principal), state=None,
                               kinds=[stored.alert.kind], unread=False, before=stored.id + 1,
                               limit=1)
    body = _item(stored, rows[0][1] if rows and rows[0][0].id == stored.id else None,
                 int(service.engine.clock()))
    body["history"] = [{"change": h["change"], "at": h["alert"].get("updated"), "id": h["id"]}
                       for h in service.store.history(stored.id)]
    return web.json_response(body)


@api.post("/v1/alerts/{alert_id:[0-9]+}/read", openapi.operation(
    "Mark an alert read (by you; an API key marks it for its organisation)",
    parameters=[openapi.path_parameter("alert_id", {"type": "integer", "minimum": 1})],
    ok=204, errors=(*_ERRORS, 404),
))
async def mark_read(request: web.Request) -> web.Response:
    principal = require(request, READ)
    if not _service(request).store.mark_read(principal.org_id, _reader_id(principal),
                                             [_alert_id(request)]):
        raise NotFound("no such alert", code="alert-not-found")
    return web.Response(status=204)


@api.post("/v1/alerts/read", openapi.operation(
    "Mark several alerts read: `ids`, or `all` of your kinds",
    body=READ_SCHEMA, ok_schema={"type": "object", "properties": {"read": {"type": "integer"}}},
    errors=(*_ERRORS, 413, 415),
))
async def mark_many_read(request: web.Request) -> web.Response:
    principal = require(request, READ)
    body = await read_json(request, READ_SCHEMA)
    service = _service(request)
    ids = list(body.get("ids", []))
    if body.get("all"):
        ids += service.store.alert_ids(principal.org_id, list(_prefs(service, principal).kinds))
    done = service.store.mark_read(principal.org_id, _reader_id(principal), ids)
    return web.json_response({"read": done})


# -- follows ----------------------------------------------------------------------------------------
@api.get("/v1/alerts/follows", openapi.operation(
    "References your organisation follows (watched beyond what it owns)",
    ok_schema={"type": "object", "properties": {"follows": {"type": "array"}}}, errors=_ERRORS,
))
async def list_follows(request: web.Request) -> web.Response:
    principal = require(request, READ)
    rows = _service(request).store.follows(principal.org_id)
    return web.json_response({"follows": [
        {**ref.to_json(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))}
        for ref, created in rows]})


@api.post("/v1/alerts/follows", openapi.operation(
    "Follow references: alerts about them reach your organisation as far as it may read",
    description="Following a container, B/L, booking, declaration or vessel makes your "
                "organisation hold its reference: records its owners published readable by "
                "reference holders count for your alerts. It never opens anything else.",
    body=FOLLOW_SCHEMA, ok_schema={"type": "object", "properties": {
        "added": {"type": "integer"}, "follows": {"type": "integer"}}},
    errors=(*_ERRORS, 409, 413, 415, 422),
))
async def add_follows(request: web.Request) -> web.Response:
    principal = require(request, READ)
    body = await read_json(request, FOLLOW_SCHEMA)
    refs = [_reference(r["kind"], r["value"], f"/references/{i}")
            for i, r in enumerate(body["references"])]
    service = _service(request)
    try:
        added = service.store.follow(principal.org_id, refs,
                                     limit=service.settings.max_follows)
    except TooManyFollows as exc:
        raise Conflict(str(exc), code="too-many-follows") from None
    if added and request.app[CONFIG].background_tasks:  # this process evaluates: at once
        await service.engine.sync_follows()
    return web.json_response({"added": added,
                              "follows": len(service.store.follows(principal.org_id))},
                             status=201 if added else 200)


@api.delete("/v1/alerts/follows", openapi.operation(
    "Stop following a reference (`?subject=kind:value`)",
    parameters=[openapi.query_parameter("subject", {"type": "string", "maxLength": 80},
                                        required=True)],
    ok=204, errors=(*_ERRORS, 404, 422),
))
async def delete_follow(request: web.Request) -> web.Response:
    principal = require(request, READ)
    kind, _, value = request.query.get("subject", "").partition(":")
    ref = _reference(kind.strip().lower(), value, "subject")
    service = _service(request)
    if not service.store.unfollow(principal.org_id, ref):
        raise NotFound("you do not follow it", code="not-following")
    return web.Response(status=204)


# -- preferences and settings ------------------------------------------------------------------------
@api.get("/v1/alerts/preferences", openapi.operation(
    "Your alert delivery preferences (kinds, channels, quiet hours, digest)",
    ok_schema=_OBJECT, errors=_ERRORS,
))
async def get_preferences(request: web.Request) -> web.Response:
    principal = require(request, READ)
    return web.json_response(_prefs(_service(request), principal).to_json())


@api.put("/v1/alerts/preferences", openapi.operation(
    "Set your alert delivery preferences",
    description="See docs/alerts.md. An API key sets its organisation's shared mailbox, which "
                "names the address in `email`.",
    body=_OBJECT, ok_schema=_OBJECT, errors=(*_ERRORS, 413, 415, 422),
))
async def put_preferences(request: web.Request) -> web.Response:
    principal = require(request, READ)
    body = await read_json(request)
    try:
        prefs = parse_preferences(body, mailbox=principal.user_id is None)
    except PreferencesError as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"path": exc.path}) from None
    _service(request).store.set_preferences(principal.org_id, _reader_id(principal),
                                            prefs.to_json())
    return web.json_response(prefs.to_json())


@api.get("/v1/alerts/settings", openapi.operation(
    "Your organisation's alert rule settings (thresholds, tolerances, warn days)",
    ok_schema=_OBJECT, errors=_ERRORS,
))
async def get_settings(request: web.Request) -> web.Response:
    principal = require(request, READ)
    service = _service(request)
    own = service.store.org_settings().get(principal.org_id, {})
    return web.json_response({"overrides": own,
                              "effective": _settings_json(service.engine.settings_of(
                                  principal.org_id))})


@api.put("/v1/alerts/settings", openapi.operation(
    "Set your organisation's alert rule overrides",
    body=_OBJECT, ok_schema=_OBJECT, errors=(*_ERRORS, 413, 415, 422),
))
async def put_settings(request: web.Request) -> web.Response:
    principal = require(request, ADMIN)
    body = await read_json(request)
    service = _service(request)
    try:
        effective = service.engine.base.merged(body)
    except SettingsError as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"path": exc.path}) from None
    service.store.set_org_settings(principal.org_id, body)
    service.store.wake_all(int(time.time()), org_id=principal.org_id)  # the next clock pass
    service.engine.reload()
    return web.json_response({"overrides": body, "effective": _settings_json(effective)})


def _settings_json(settings: Settings) -> dict[str, Any]:
    return {"kinds": sorted(settings.kinds),
            "vessel": dict(settings.vessel.__dict__),
            "reefer": {**settings.reefer.__dict__,
                       "commodity_bands": {n: [lo, hi] for n, lo, hi in
                                           settings.reefer.commodity_bands}},
            "storage": dict(settings.storage.__dict__)}


# -- tariffs ----------------------------------------------------------------------------------------
_SCOPE = openapi.path_parameter("scope", {"enum": ["terminal", "carrier"]})
_ORG = openapi.path_parameter("org", {"type": "integer", "minimum": 1},
                              "The publishing organisation's chain (Consortium) id")


def _tariff_path(request: web.Request) -> tuple[str, int]:
    scope, org = request.match_info["scope"], request.match_info["org"]
    if scope not in ("terminal", "carrier") or not (org.isascii() and org.isdigit()
                                                    and len(org) <= 9):
        raise NotFound("no such tariff", code="tariff-not-found")
    return scope, int(org)


@api.get("/v1/alerts/tariffs/{scope}/{org}", openapi.operation(
    "A published storage tariff (HK$)",
    parameters=[_SCOPE, _ORG], ok_schema=_OBJECT, errors=(*_ERRORS, 404),
))
async def get_tariff(request: web.Request) -> web.Response:
    require(request, READ)
    scope, org = _tariff_path(request)
    found = _service(request).store.tariff(scope, org)
    if found is None:
        raise NotFound("this organisation published no such tariff", code="tariff-not-found")
    body, updated = found
    return web.json_response({"scope": scope, "org": org, "tariff": body,
                              "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(updated))})


@api.put("/v1/alerts/tariffs/{scope}/{org}", openapi.operation(
    "Publish your organisation's storage tariff (terminal or carrier)",
    description="The tariff JSON of docs/alerts.md (validated: errors name a JSON pointer and "
                "a code). A carrier's tariff names its SCAC codes in `scac`; for its boxes its "
                "free days, counting and bands override the terminal's. Only the organisation "
                "itself may publish; no official numbers are built in.",
    parameters=[_SCOPE, _ORG], body=_OBJECT, ok_schema=_OBJECT,
    errors=(*_ERRORS, 404, 413, 415, 422),
))
async def put_tariff(request: web.Request) -> web.Response:
    principal = require(request, ADMIN)
    scope, org = _tariff_path(request)
    if principal.chain_org != org:
        raise Forbidden("an organisation publishes its own tariff only",
                        code="not-your-tariff")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Unprocessable("a tariff is a JSON object", code="not-an-object")
    document = dict(body)
    scac = document.pop("scac", None)
    if scope == "carrier":
        if (not isinstance(scac, list) or not scac or len(scac) > 20
                or any(not isinstance(s, str) or not (2 <= len(s) <= 4 and s.isalnum())
                       for s in scac)):
            raise Unprocessable("a carrier's tariff names its SCAC codes: \"scac\": [\"PCOL\"]",
                                code="bad-scac", details={"path": "/scac"})
        body["scac"] = [s.upper() for s in scac]
    elif scac is not None:
        raise Unprocessable("only a carrier's tariff names SCAC codes", code="unknown-member",
                            details={"path": "/scac"})
    try:
        tariff = parse_tariff(document)
    except TariffError as exc:
        raise Unprocessable(f"{exc.path or '/'}: {exc.reason}", code=exc.code,
                            details={"path": exc.path}) from None
    service = _service(request)
    service.store.set_tariff(scope, org, body)
    service.store.wake_all(int(time.time()), kind="container")  # the next clock pass
    service.engine.reload()
    return web.json_response({"scope": scope, "org": org, "tariff": body,
                              "summary": dict(describe(tariff))})


# -- the storage meter -------------------------------------------------------------------------------
@api.get("/v1/alerts/storage/{container}", openapi.operation(
    "A container's storage meter: days in yard, last free day, accrued and per day in HK$, "
    "hold reason",
    description="From the events you may read about the box; 404 when you may read none.",
    parameters=[openapi.path_parameter("container", {"type": "string", "maxLength": 20})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404, 422),
))
async def get_storage(request: web.Request) -> web.Response:
    principal = require(request, READ)
    ref = _reference("container", request.match_info["container"], "container")
    body = storage_of(_service(request), principal.org_id, ref)
    if body is None:
        raise NotFound("no yard events of this container you may read",
                       code="container-not-found")
    return web.json_response(body)


# -- a vessel's ETAs ----------------------------------------------------------------------------------
@api.get("/v1/alerts/vessels/{imo}/etas", openapi.operation(
    "A vessel's ETA history with sources, as you may see it (the vessel view)",
    description="Every ETA received for the vessel at each port of call, in the order "
                "received — each publisher's estimates and AIS-derived ones — with the source, "
                "when it was received, and the actual arrivals: what the delay rules compare "
                "(the first ETA seen against each source's latest).",
    parameters=[openapi.path_parameter("imo", {"type": "string", "pattern": r"^(IMO)?\d{7}$"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404, 422),
))
async def vessel_etas(request: web.Request) -> web.Response:
    principal = require(request, READ)
    ref = _reference("vessel", request.match_info["imo"].upper().removeprefix("IMO"), "imo")
    body = etas_of(_service(request), principal.org_id, ref)
    if body is None:
        raise NotFound("no ETA of this vessel you may read", code="vessel-not-found")
    return web.json_response(body)


# -- webhooks --------------------------------------------------------------------------------------
def _webhook_id(request: web.Request) -> str:
    return request.match_info["webhook_id"].lower()


@api.get("/v1/alerts/webhooks", openapi.operation(
    "Your organisation's alert webhooks", ok_schema=_OBJECT, errors=_ERRORS,
))
async def list_webhooks(request: web.Request) -> web.Response:
    principal = require(request, HOOKS)
    return web.json_response({"webhooks": _service(request).webhooks.of(principal.org_id)})


@api.post("/v1/alerts/webhooks", openapi.operation(
    "Register an alert webhook (HMAC-SHA256 signed, retried, logged)",
    description="Each transition of your organisation's alerts of the `kinds` (default all) "
                "and `changes` (default all) is POSTed as a JSON array item "
                "`{\"change\": ..., ...the alert}`, signed like DCSA subscriptions "
                "(`Notification-Signature: sha256=<hex>`).",
    body=WEBHOOK_SCHEMA, ok=201, ok_schema=_OBJECT, errors=(*_ERRORS, 409, 413, 415, 422),
))
async def create_webhook(request: web.Request) -> web.Response:
    principal = require(request, HOOKS)
    body = await read_json(request, WEBHOOK_SCHEMA)
    hooks = _service(request).webhooks
    allow = hooks.settings.allow_private_callbacks
    try:
        url = check_callback_url(body["callbackUrl"], allow_private=allow)
        if not allow:
            await check_callback_resolves_public(url)
        secret = decode_secret(body["secret"])
    except CallbackRefused as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"field": "callbackUrl"}) from None
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid-secret", details={"field": "secret"}) from None
    try:
        hook = hooks.create(principal.org_id, url, secret, body.get("kinds") or list(KINDS),
                            body.get("changes") or list(CHANGES))
    except TooManySubscriptions:
        raise Conflict("too many webhooks; delete one first", code="too-many-webhooks") from None
    return web.json_response(hooks.describe(principal.org_id, hook.id), status=201)


@api.get("/v1/alerts/webhooks/{webhook_id}", openapi.operation(
    "One alert webhook", parameters=[openapi.path_parameter("webhook_id", {"type": "string"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404),
))
async def get_webhook(request: web.Request) -> web.Response:
    principal = require(request, HOOKS)
    found = _service(request).webhooks.describe(principal.org_id, _webhook_id(request))
    if found is None:
        raise NotFound("no such webhook", code="webhook-not-found")
    return web.json_response(found)


@api.delete("/v1/alerts/webhooks/{webhook_id}", openapi.operation(
    "Remove an alert webhook (its queued deliveries go with it)",
    parameters=[openapi.path_parameter("webhook_id", {"type": "string"})],
    ok=204, errors=(*_ERRORS, 404),
))
async def delete_webhook(request: web.Request) -> web.Response:
    principal = require(request, HOOKS)
    if not _service(request).webhooks.delete(principal.org_id, _webhook_id(request)):
        raise NotFound("no such webhook", code="webhook-not-found")
    return web.Response(status=204)


@api.get("/v1/alerts/webhooks/{webhook_id}/deliveries", openapi.operation(
    "An alert webhook's deliveries: status, attempts, last error",
    parameters=[openapi.path_parameter("webhook_id", {"type": "string"})],
    ok_schema=_OBJECT, errors=(*_ERRORS, 404),
))
async def webhook_deliveries(request: web.Request) -> web.Response:
    principal = require(request, HOOKS)
    found = _service(request).webhooks.store.deliveries(
        principal.org_id, _webhook_id(request), status=None, before=None,
        limit=_int(request, "limit", 50, 1, 500) or 50)
    if found is None:
        raise NotFound("no such webhook", code="webhook-not-found")
    return web.json_response({"deliveries": [
        {**d.to_json(), "transitionIDs": list(d.event_ids)} for d in found]})


# -- lifecycle ------------------------------------------------------------------------------------
_TASKS = web.AppKey("alert_tasks", list)


async def alerts_context(app: web.Application) -> AsyncIterator[None]:
    """Open the alert service (``app[ALERTS]``) and, where background tasks run, the engine's
    indexer listener, catch-up, reading poll and clock, the webhook worker and the mailer."""
    config = app[CONFIG]
    settings = AlertSettings.from_config(config)
    smtp = SmtpSettings.from_json(settings.smtp)
    store = AlertStore(config.path("alerts.db"), secret=app[appkeys.KEYSTORE].secret(SECRET))
    hook_settings = SubscriptionSettings.from_config(config)
    hook_store = SubscriptionStore(config.path("alert_webhooks.db"))
    resolver: AbstractResolver = (aiohttp.ThreadedResolver()
                                  if hook_settings.allow_private_callbacks else PublicResolver())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, limit=hook_settings.concurrency),
        timeout=aiohttp.ClientTimeout(total=hook_settings.timeout_seconds),
        headers={"User-Agent": "PortLedger-gateway (alerts)"})
    worker = DeliveryWorker(hook_store, hook_settings, config.webhook_max_attempts, session)
    webhooks = AlertWebhooks(hook_store, store, worker, hook_settings)
    mailer = Mailer(store, smtp, config.public_url) if smtp is not None else None
    accounts = app[ACCOUNTS]

    def users(org_id: int) -> list[tuple[int, str, bool]]:
        return [(u.id, u.email, u.disabled) for u in accounts.users(org_id)]

    dispatcher = Dispatcher(store, webhooks, users, mail_enabled=mailer is not None,
                            on_mail=mailer.wake if mailer is not None else None)
    engine = AlertEngine(store=store, tracking=app[appkeys.TRACKING], accounts=accounts,
                         telemetry=app.get(appkeys.TELEMETRY), settings=settings,
                         tariffs=TariffBook(store, settings.default_tariff()),
                         dispatcher=dispatcher)
    app[ALERTS] = AlertService(store, engine, webhooks, mailer, settings)
    tasks: list[asyncio.Task[None]] = []
    if config.background_tasks:  # exactly one process evaluates and delivers
        if appkeys.INDEXER in app:
            app[appkeys.INDEXER].add_listener(engine.on_indexed)
        tasks.append(asyncio.create_task(engine.run_catch_up(), name="alerts-catch-up"))
        tasks.append(asyncio.create_task(engine.run_readings(), name="alerts-readings"))
        tasks.append(asyncio.create_task(engine.run_clock(), name="alerts-clock"))
        tasks.append(asyncio.create_task(worker.run(), name="alert-webhooks"))
        if mailer is not None:
            tasks.append(asyncio.create_task(mailer.run(), name="alert-mail"))
    app[_TASKS] = tasks
    try:
        yield
    finally:
        await cancelled(tasks)
        await worker.stop()
        await session.close()
        hook_store.close()
        store.close()


async def ready(app: web.Application) -> tuple[bool, str]:
    """Readiness: the engine's loops run (where this process evaluates)."""
    tasks = app.get(_TASKS) or []
    stopped = [t.get_name() for t in tasks if t.done() and t.get_name() != "alerts-catch-up"]
    if stopped:
        return False, f"alert tasks stopped: {', '.join(stopped)}"
    counts = app[ALERTS].store.mail_counts()
    return True, f"{counts.get('pending', 0)} alert mails pending"


def setup(app: web.Application) -> None:
    """Add the alert routes, the service's lifecycle and its readiness check."""
    app.cleanup_ctx.append(alerts_context)
    if appkeys.READINESS in app:
        ops.add_readiness_check(app, "alerts", ready)
    api.install(app, schemas={"Alert": ALERT_SCHEMA})
