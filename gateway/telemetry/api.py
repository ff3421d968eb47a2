"""The telemetry HTTP API: vessel positions (public) and readings (visibility-checked).

``GET /v1/vessels/{imo}/positions``
    A vessel's static AIS data and its track (latest position last, and again as ``latest``),
    found under its IMO number and under every MMSI static data linked to it. Public: every
    authenticated caller.
``GET /v1/telemetry/readings?subject=kind:value&type=…&since=…&until=…&limit=…``
    (or ``mmsi=`` for AIS of a vessel whose IMO number is not known yet). The readings the
    caller may read (owner, named reader, or — asking by the subject's reference — whoever holds
    it in mode ``reference``), oldest first; 404 ``no-readings`` when none is visible, whether
    none exists or none is the caller's to see (no leak of existence).
``GET /v1/telemetry/readings/{id}``
    One reading, with its anchor state (batch, anchor id, block, transaction); ``?subject=``
    counts as asking by reference. 404 unless the caller may read it.

A proof bundle of an anchored reading is ``POST /v1/proofs/readings/{id}``
(:mod:`gateway.proofs_api`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import errors, openapi
from gateway.events.model import EventError, parse_time
from gateway.principal import require
from gateway.telemetry import service
from gateway.telemetry.model import READING_TYPES
from gateway.telemetry.records import imo_number
from gateway.telemetry.store import DEFAULT_HISTORY, MAX_HISTORY, MAX_TIME

#: Scope of reading telemetry (as for the tracking views it feeds).
SCOPE = "tracking:read"

api = openapi.Routes(tag="telemetry", description="AIS positions, reefer readings and truck "
                     "positions, anchored on chain in batches")

_TIME = {"type": "string", "format": "date-time"}
_RANGE = [
    openapi.query_parameter("since", _TIME, "Readings at or after this time"),
    openapi.query_parameter("until", _TIME, "Readings at or before this time"),
    openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                            f"The newest this many (default {DEFAULT_HISTORY})"),
]
_READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "type", "time", "subject", "id", "anchor"],
    "description": "A reading's report form (values beside kind/type/time/subject) with its "
                   "id, owner and anchor state",
    "properties": {
        "kind": {"const": "reading"},
        "type": {"enum": list(READING_TYPES)},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": ["object", "null"]},
        "id": {"type": "integer"},
        "owner": {"type": ["integer", "null"]},
        "ownerName": {"type": ["string", "null"]},
        "readableVia": {"enum": ["public", "owner", "named", "reference"]},
        "anchor": {"type": ["object", "null"]},
    },
}
_READING = {"$ref": "#/components/schemas/Reading"}


def _time(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return parse_time(raw, field=name)
    except EventError as exc:
        raise errors.BadRequest(f"{name}: {exc}", code="bad-query") from None


def _int(request: web.Request, name: str, default: int | None, low: int, high: int,
         ) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not low <= int(raw) <= high:
        raise errors.BadRequest(f"{name} is an integer from {low} to {high}", code="bad-query")
    return int(raw)


def _range(request: web.Request) -> tuple[int, int, int]:
    since, until = _time(request, "since", 0), _time(request, "until", MAX_TIME)
    limit = _int(request, "limit", DEFAULT_HISTORY, 1, MAX_HISTORY)
    assert limit is not None
    if since > until:
        raise errors.BadRequest("since is after until", code="bad-query")
    return since, until, limit


@api.get("/v1/vessels/{imo}/positions", openapi.operation(
    "A vessel's AIS track and static data (public)",
    description="Positions stored under the IMO number and under every MMSI static AIS data "
                "linked to it, oldest first; `latest` is the newest.",
    parameters=[openapi.path_parameter("imo", {"type": "string", "pattern": r"^(IMO)?\d{7}$"}),
                *_RANGE],
    ok_schema={"type": "object", "properties": {
        "imo": {"type": "string"}, "vessel": {"type": ["object", "null"]},
        "latest": {"oneOf": [_READING, {"type": "null"}]},
        "track": {"type": "array", "items": _READING}, "truncated": {"type": "boolean"}}},
    errors=(400, 401, 403, 404, 429),
))
async def vessel_positions(request: web.Request) -> web.Response:
    require(request, SCOPE)
    text = request.match_info["imo"].upper().removeprefix("IMO")
    imo = imo_number(text) if len(text) == 7 else None
    if imo is None:
        raise errors.BadRequest("an IMO number is 7 digits", code="bad-imo")
    since, until, limit = _range(request)
    vessel, track, more = await service.vessel_track(request.app, imo, since=since,
                                                     until=until, limit=limit)
    if vessel is None and not track:
        raise errors.NotFound(f"no AIS data of IMO {imo}", code="unknown-vessel")
    positions = [_json(request.app, service.Found(p, "public")) for p in track]
    return web.json_response({
        "imo": imo, "vessel": vessel.to_json() if vessel else None,
        "latest": positions[-1] if positions else None, "track": positions, "truncated": more,
    })


@api.get("/v1/telemetry/readings", openapi.operation(
    "Readings of an asset you may read",
    description="By `subject` (kind:value, e.g. container:MSCU1234565 — asking by the "
                "reference) or, for AIS, `mmsi`. 404 when nothing is visible to you.",
    parameters=[
        openapi.query_parameter("type", {"enum": list(READING_TYPES)}, required=True),
        openapi.query_parameter("subject", {"type": "string", "maxLength": 80}),
        openapi.query_parameter("mmsi", {"type": "integer", "minimum": 1,
                                         "maximum": 999_999_999}),
        *_RANGE,
    ],
    ok_schema={"type": "object", "properties": {
        "readings": {"type": "array", "items": _READING}, "truncated": {"type": "boolean"}}},
    errors=(400, 401, 403, 404, 429),
))
async def list_readings(request: web.Request) -> web.Response:
    principal = require(request, SCOPE)
    reading_type = request.query.get("type", "")
    if reading_type not in READING_TYPES:
        raise errors.BadRequest(f"type is one of {', '.join(READING_TYPES)}", code="bad-query")
    text = request.query.get("subject")
    mmsi = _int(request, "mmsi", None, 1, 999_999_999)
    if (text is None) == (mmsi is None):
        raise errors.BadRequest("ask by subject=kind:value or by mmsi=", code="bad-query")
    subject = service.parse_subject(text) if text is not None else None
    since, until, limit = _range(request)
    found, more = await service.readings_of(request.app, principal, reading_type,
                                            subject=subject, mmsi=mmsi, since=since,
                                            until=until, limit=limit)
    if not found:
        raise errors.NotFound("no readings you may see", code="no-readings")
    return web.json_response({"readings": [_json(request.app, f) for f in found],
                              "truncated": more})


@api.get("/v1/telemetry/readings/{reading_id}", openapi.operation(
    "One reading you may read, with its anchor state",
    parameters=[
        openapi.path_parameter("reading_id", {"type": "integer", "minimum": 1}),
        openapi.query_parameter("subject", {"type": "string", "maxLength": 80},
                                "The reading's subject reference, if you hold it"),
    ],
    ok_schema=_READING,
    errors=(400, 401, 403, 404, 429),
))
async def get_reading(request: web.Request) -> web.Response:
    principal = require(request, SCOPE)
    found = await service.reading_of(request.app, principal, reading_id(request),
                                     subject_query(request))
    if found is None:
        raise errors.NotFound("no such reading you may see", code="unknown-reading")
    return web.json_response(_json(request.app, found))


def reading_id(request: web.Request) -> int:
    """The ``{reading_id}`` of the path (400 if not a positive integer)."""
    text = request.match_info["reading_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or int(text) < 1:
        raise errors.BadRequest("a reading id is a positive integer", code="bad-reading-id")
    return int(text)


def subject_query(request: web.Request) -> Any:
    """The optional ``?subject=kind:value`` of a request."""
    text = request.query.get("subject")
    return None if text is None else service.parse_subject(text)


def _json(app: web.Application, found: service.Found) -> dict[str, Any]:
    return found.to_json(service.owner_name(app, found.stored.owner))


def setup(app: web.Application) -> None:
    """The telemetry store and anchoring task (:func:`service.open_telemetry`), and the routes."""
    service.open_telemetry(app)
    api.install(app, schemas={"Reading": _READING_SCHEMA})
