"""The tracking HTTP API: ``GET /v1/track/{reference}``, ``/v1/resolve``, ``/v1/access-log``,
``/v1/organisations``; the view cache's metrics; ``setup`` (the service and its access-log
flusher for the app's lifetime)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import openapi
from gateway.appkeys import (
    CONFIG,
    DECLARATION_KEYS,
    KEYSTORE,
    METRICS,
    READ_MODEL,
    TELEMETRY,
    TRACKING,
)
from gateway.background import cancelled
from gateway.errors import REQUEST_ID, BadRequest, error_body
from gateway.principal import require
from gateway.tracking import live
from gateway.tracking.cache import TrackingSettings
from gateway.tracking.service import NotFoundWithSuggestions, Tracking

log = logging.getLogger("portledger.gateway.tracking")

api = openapi.Routes(tag="tracking", description="Where is my cargo, and who saw my data")

_dumps = json.dumps


def _json(body: Any) -> web.Response:
    return web.Response(body=_dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json")


def _not_found_response(resolved: dict[str, Any], request: web.Request) -> web.Response:
    """The 404 of a reference nothing visible matches, the resolver's answer at the top."""
    exc = NotFoundWithSuggestions(resolved)
    rid = request.get(REQUEST_ID, "")
    body = json.loads(error_body(exc.status, exc.code, exc.message, exc.details, rid))
    body["suggestions"] = resolved["suggestions"]
    body["candidates"] = resolved["candidates"]
    return web.json_response(body, status=404)


_VIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reference", "kind", "containers", "timeline"],
    "properties": {
        "reference": {"type": "string"},
        "kind": {"type": "string"},
        "carrier": {"type": ["object", "null"]},
        "vessel": {"type": ["object", "null"]},
        "containers": {"type": "array", "items": {"type": "object"}},
        "landLeg": {"type": "array"},
        "airLeg": {"type": "array"},
        "declarations": {"type": "array"},
        "timeline": {"type": "array", "items": {"type": "object"}},
    },
}


@api.get("/v1/track/{reference}", openapi.operation(
    "Shipment view of a master B/L, house B/L, container, air waybill or declaration number",
    parameters=[openapi.path_parameter("reference", {"type": "string", "maxLength": 64})],
    ok_description="What the caller may see",
    ok_schema={"$ref": "#/components/schemas/ShipmentView"},
    errors=(400, 401, 403, 404, 429),
))
async def track(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    tracking = request.app[TRACKING]
    text = request.match_info["reference"]
    body = tracking.shipment_json(principal, text)
    if body is None:
        return _not_found_response(await tracking.resolve(principal, text), request)
    if request.app.get(TELEMETRY) is not None:  # AIS and reefer readings: never cached
        view = await live.overlay(request.app, principal, json.loads(body))
        body = json.dumps(view, separators=(",", ":")).encode()
    return web.Response(body=body, content_type="application/json")


@api.get("/v1/resolve", openapi.operation(
    "Normalise a reference, detect its kind and carrier, suggest near matches",
    parameters=[openapi.query_parameter("q", {"type": "string", "maxLength": 64},
                                        required=True)],
    ok_description="A visible match",
    errors=(400, 401, 403, 404, 429),
))
async def resolve(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    text = request.query.get("q", "")
    if not text:
        raise BadRequest("give the reference as ?q=", code="missing-query")
    resolved = await request.app[TRACKING].resolve(principal, text)
    if resolved["match"] is None:
        return _not_found_response(resolved, request)
    return _json(resolved)


@api.get("/v1/access-log", openapi.operation(
    "Who saw my data: reads of the caller organisation's records by others",
    parameters=[
        openapi.query_parameter("before", {"type": "integer", "minimum": 0}),
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    ],
    ok_description="Newest first",
    errors=(400, 401, 403, 429),
))
async def access_log(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    try:
        before = int(request.query.get("before", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise BadRequest("before and limit are integers", code="bad-query") from None
    if not (0 <= before < 1 << 62 and 1 <= limit <= 1000):
        raise BadRequest("before >= 0 and 1 <= limit <= 1000", code="bad-query")
    return _json(request.app[TRACKING].access_log_of(principal, before, limit))


@api.get("/v1/organisations", openapi.operation(
    "The organisations directory (chain ids, names, roles)",
    ok_description="Every member",
    errors=(401, 429),
))
async def organisations(request: web.Request) -> web.Response:
    require(request)
    return _json({"organisations": request.app[TRACKING].directory()})


class _CacheMetrics(Collector):
    """The view cache's counters and sizes, read at scrape time (nothing on the hot path)."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        views = self.tracking.views
        lookups = CounterMetricFamily("portledger_tracking_view_cache_lookups",
                                      "Shipment view cache lookups by result", labels=["result"])
        lookups.add_metric(["hit"], views.hits)
        lookups.add_metric(["miss"], views.misses)
        yield lookups
        yield CounterMetricFamily("portledger_tracking_view_cache_dropped",
                                  "Cached views dropped because what they were built from changed",
                                  value=views.invalidations)
        yield CounterMetricFamily("portledger_tracking_view_cache_evictions",
                                  "Cached views evicted to stay within the size bounds",
                                  value=views.evictions)
        yield GaugeMetricFamily("portledger_tracking_view_cache_entries", "Cached views",
                                value=len(views))
        yield GaugeMetricFamily("portledger_tracking_view_cache_bytes",
                                "Bytes of cached views", value=views.bytes)


async def _tracking_ctx(app: web.Application) -> AsyncIterator[None]:
    tracking = Tracking(app[READ_MODEL], app.get(KEYSTORE),
                        settings=TrackingSettings.from_config(app[CONFIG]),
                        declaration_keys=app.get(DECLARATION_KEYS))
    app[TRACKING] = tracking
    registry = app.get(METRICS)
    collector = _CacheMetrics(tracking)
    if registry is not None:
        registry.register(collector)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await tracking.flush_async()
            except Exception:
                log.exception("access log flush failed")

    task = asyncio.get_running_loop().create_task(flusher(), name="access-log")
    try:
        yield
    finally:
        await cancelled([task])
        await tracking.flush_async()
        if registry is not None:
            registry.unregister(collector)


def setup(app: web.Application) -> None:
    """Tracking routes, the tracking service (``app[TRACKING]``) and the access-log flusher."""
    app.cleanup_ctx.append(_tracking_ctx)
    api.install(app, {"ShipmentView": _VIEW_SCHEMA})
