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
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import errors, openapi
from gateway.appkeys import OUTBOX
from gateway.events.model import Visibility
from gateway.feeds import ais, formats, streams
from gateway.feeds.intake import MAX_REPORT_LINES, plan, report
from gateway.feeds.model import MAX_FEED_BYTES, FeedError, ParseResult
from gateway.intake.model import receipt_json
from gateway.intake.service import caller_roles, visibility_query, writer
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.telemetry.visibility import role_problem as reading_role_problem
from gateway.writepath.operations import Operation

#: Bytes read from the body at a time.
CHUNK_BYTES = 1 << 20

#: Bytes a format is detected from.
HEAD_BYTES = 64 * 1024

#: AIS sentences decoded before their readings are stored (an upload's memory bound).
AIS_BATCH = 20_000

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


async def _chunks(request: web.Request, head: bytes) -> AsyncIterator[bytes]:
    """The body from ``head`` on, as it arrives; 413 once it passes the limit."""
    size = len(head)
    if head:
        yield head
    while True:
        chunk = await request.content.read(CHUNK_BYTES)
        if not chunk:
            return
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise errors.PayloadTooLarge(f"a feed file is at most {MAX_FEED_BYTES} bytes")
        yield chunk


async def _head(request: web.Request) -> bytes:
    """The first :data:`HEAD_BYTES` of the body (or all of a shorter one): enough to detect."""
    if request.content_length is not None and request.content_length > MAX_FEED_BYTES:
        raise errors.PayloadTooLarge(
            f"body of {request.content_length} bytes exceeds {MAX_FEED_BYTES}")
    parts: list[bytes] = []
    size = 0
    while size < HEAD_BYTES:
        chunk = await request.content.read(HEAD_BYTES - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _format_of(name: str, head: bytes) -> str:
    if name != "auto" and name not in formats.FORMATS:
        raise errors.NotFound(f"unknown feed format {name!r}; formats: "
                              f"{', '.join(formats.FORMATS)} or auto", code="unknown-format")
    if not head.strip():
        raise errors.Unprocessable("the file is empty", code="empty-upload")
    if name != "auto":
        return name
    found = formats.detect(head)
    if found is None:
        raise errors.Unprocessable(f"not a feed format the gateway reads "
                                   f"({', '.join(formats.FORMATS)})", code="wrong-format")
    return found


def _refuse_unrecognised(name: str, result: ParseResult) -> None:
    if not result.recognised:
        why = result.errors[0].message if result.errors else "not this format"
        raise errors.Unprocessable(f"not a {name} file: {why}", code="wrong-format")


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
    head = await _head(request)
    name = _format_of(request.match_info["format"], head)
    if name == "ais":
        return await _ais_upload(request, who, visibility, dry, head)
    raw = b"".join([part async for part in _chunks(request, head)])
    result = await asyncio.to_thread(formats.parse, raw, received_at=int(time.time()),
                                     name=name)
    del raw
    _refuse_unrecognised(name, result)
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


async def _ais_upload(request: web.Request, who: Principal, visibility: Visibility, dry: bool,
                      head: bytes) -> web.Response:
    """An AIS log, decoded and stored as it streams in: memory stays bounded by a chunk and a
    batch whatever the file's size (AIS readings are de-duplicated, so a re-sent file — or
    the first part of one refused with 413 — stores nothing twice)."""
    decoder = ais.AisDecoder()
    received_at = int(time.time())
    problem = reading_role_problem("ais-position", caller_roles(request, who))
    lines: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    counts = {"readings": 0, "errors": 0, "stored": 0, "duplicate": 0}
    truncated = False

    async def flush() -> None:
        nonlocal truncated
        batch = decoder.take()
        for key, value in batch.stats.items():
            totals[key] = totals.get(key, 0) + value
        counts["readings"] += len(batch.readings)
        counts["errors"] += len(batch.errors)
        for line in batch.report():
            if len(lines) >= MAX_REPORT_LINES:
                truncated = True
                break
            lines.append(line)
        if not dry and problem is None and batch.readings:
            stored, duplicate = await telemetry.ingest(request.app, who, batch.readings,
                                                       visibility)
            counts["stored"] += stored
            counts["duplicate"] += duplicate

    async for chunk in _chunks(request, head):
        await asyncio.to_thread(decoder.feed, chunk, received_at=received_at)
        if decoder.pending_sentences >= AIS_BATCH:
            await flush()
    decoder.finish()
    await flush()
    if not totals.get("sentences") and not counts["readings"]:
        raise errors.Unprocessable("not an ais file: no AIS sentence (!AIVDM / !AIVDO)",
                                   code="wrong-format")
    refused = [] if problem is None else [FeedError(0, "role-not-allowed",
                                                    f"{counts['readings']} AIS readings "
                                                    f"refused: {problem}")]
    if refused and len(lines) < MAX_REPORT_LINES:
        lines.append(refused[0].to_json())
    accepted = 0 if problem else counts["readings"]
    body: dict[str, Any] = {
        "format": "ais", "dryRun": dry,
        "summary": {"format": "ais", "recognised": True, "events": 0,
                    "readings": counts["readings"], "errors": counts["errors"],
                    "stats": totals, "refused": len(refused),
                    "accepted": {"events": 0, "readings": accepted}},
        "report": lines, "truncated": truncated,
    }
    if dry:
        return web.json_response(body)
    if not accepted:
        raise errors.Unprocessable("nothing in the file can be accepted; see the report",
                                   code="nothing-accepted", details=body)
    body["receipts"] = []
    body["readings"] = {"stored": counts["stored"], "duplicate": counts["duplicate"]}
    return web.json_response(body, status=202)


def setup(app: web.Application) -> None:
    """Add the feed upload route and document it; run the configured AIS network feeds."""
    routes.install(app, {"FeedReport": _REPORT_SCHEMA})
    streams.setup(app)
