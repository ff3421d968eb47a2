"""``POST /v1/feeds/{format}``: a file in a format the port already speaks, into the ledger.

The body is the raw file (EDIFACT, AIS NMEA, Cargo-IMP, DCSA JSON, ...), streamed up to
:data:`~gateway.feeds.model.MAX_FEED_BYTES` (413 beyond). The adapter parses it off the event
loop; :func:`gateway.feeds.intake.plan` applies the upload's visibility and the caller's roles;
events go to the write path's outbox under keys derived from each message's bytes (a re-sent
file records nothing twice) and readings to the telemetry store (anchored in batches).

``?dryRun=true`` answers the same per-line report without accepting anything: what
``portledger feed parse`` prints, for an integrator checking a connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from gateway import errors, jsonbody, openapi
from gateway.appkeys import OUTBOX
from gateway.feeds import formats, streams
from gateway.feeds.intake import plan, report
from gateway.feeds.model import MAX_FEED_BYTES, ParseResult
from gateway.intake.model import receipt_json
from gateway.intake.service import caller_roles, visibility_query, writer
from gateway.telemetry import service as telemetry
from gateway.telemetry.visibility import role_problem as reading_role_problem
from gateway.writepath.operations import Operation

routes = openapi.Routes(
    tag="Feeds",
    description="Files and streams in the formats a port's systems already send",
)

_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "format": {"type": "string"},
        "dryRun": {"type": "boolean"},
        "summary": {"type": "object"},
        "report": {"type": "array", "items": {"type": "object"},
                   "description": "JSON Lines of `portledger feed parse`: `kind` event, "
                                  "reading or error"},
        "truncated": {"type": "boolean"},
        "receipts": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}},
        "readings": {"type": "object", "description": "stored / duplicate counts"},
    },
}


def _dry_run(request: web.Request) -> bool:
    value = request.query.get("dryRun", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise errors.BadRequest("dryRun is true or false", code="bad-query")
    return value in ("true", "1")


async def _parse(request: web.Request, name: str) -> ParseResult:
    if name != "auto" and name not in formats.FORMATS:
        raise errors.NotFound(f"unknown feed format {name!r}; formats: "
                              f"{', '.join(formats.FORMATS)} or auto", code="unknown-format")
    raw = await jsonbody.read_bytes(request, MAX_FEED_BYTES)
    if not raw.strip():
        raise errors.Unprocessable("the file is empty", code="empty-upload")
    result = await asyncio.to_thread(formats.parse, raw, received_at=int(time.time()),
                                     name=None if name == "auto" else name)
    if not result.recognised:
        why = result.errors[0].message if result.errors else "not this format"
        raise errors.Unprocessable(f"not a {name} file: {why}", code="wrong-format")
    return result


_POST_FEED = openapi.operation(
    "Upload a feed file",
    description="The raw file in `format` (edifact, ais, dcsa, dcsa-reefer, cargo-imp, "
                "one-record, gps, customs, epcis, or auto to detect). Each message is accepted "
                "whole or refused whole; the answer is the per-line report. Re-sending a file "
                "records nothing twice. `dryRun=true` only reports. `visibility` (named | "
                "reference) and `readers` choose who may read the events and private readings.",
    parameters=[
        openapi.path_parameter("format", {"enum": [*formats.FORMATS, "auto"]}),
        openapi.query_parameter("dryRun", {"type": "boolean"}),
        openapi.query_parameter("visibility", {"enum": ["named", "reference"]}),
        openapi.query_parameter("readers", {"type": "string", "pattern": r"^\d+(,\d+)*$"}),
    ],
    body={"type": "string", "format": "binary"},
    body_types=("application/octet-stream", "text/plain", "application/json",
                "application/edifact", "application/x-ndjson", "text/csv"),
    ok=202,
    ok_description="Accepted: the report, the events' receipts and the readings stored",
    ok_schema={"$ref": "#/components/schemas/FeedReport"},
    errors=(400, 401, 403, 404, 413, 422, 429, 503),
)
_POST_FEED["responses"]["200"] = {
    "description": "dryRun: the report only, nothing accepted",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedReport"}}},
}


@routes.post("/v1/feeds/{format}", _POST_FEED)
async def post_feed(request: web.Request) -> web.Response:
    """Parse a feed file, then accept its readable messages (or only report them)."""
    who = writer(request)
    visibility = visibility_query(request)
    dry = _dry_run(request)
    result = await _parse(request, request.match_info["format"])
    chosen = plan(result, caller_roles(request, who), visibility, reading_role_problem)
    lines, truncated = report(result, chosen.refused)
    body: dict[str, Any] = {"format": result.format, "dryRun": dry,
                            "summary": {**result.summary(), "refused": len(chosen.refused),
                                        "accepted": {"events": len(chosen.events),
                                                     "readings": len(chosen.readings)}},
                            "report": lines, "truncated": truncated}
    if dry:
        return web.json_response(body)
    if not chosen.events and not chosen.readings:
        raise errors.Unprocessable("nothing in the file can be accepted; see the report",
                                   code="nothing-accepted", details=body)
    ops = [Operation(idempotency_key=p.key, kind="event", event=p.event) for p in chosen.events]
    receipts = await request.app[OUTBOX].accept_async(who.org_id, ops) if ops else []
    stored, duplicates = (await telemetry.ingest(request.app, who, chosen.readings, visibility)
                          if chosen.readings else (0, 0))
    body["receipts"] = [receipt_json(r) for r in receipts]
    body["readings"] = {"stored": stored, "duplicate": duplicates}
    return web.json_response(body, status=202)


def setup(app: web.Application) -> None:
    """Add the feed upload route and document it; run the configured AIS network feeds."""
    routes.install(app, {"FeedReport": _REPORT_SCHEMA})
    streams.setup(app)
