"""Operations: health and readiness probes, Prometheus metrics, structured logs, rate limits.

- ``GET /healthz``: the process is up and its event loop answers (liveness).
- ``GET /readyz``: every registered readiness check passes (databases open, a node reachable,
  the indexer not far behind); 503 with the failing checks otherwise. Modules register checks
  with :func:`add_readiness_check`.
- ``GET /metrics``: Prometheus text format from the app's own registry (:data:`METRICS`), so
  two apps in one process (tests) never share counters. Modules add their own collectors to it.
- Logs: :class:`JsonFormatter` writes one JSON object per line (``portledger gateway`` installs
  it); every request is logged with its id, route, status, duration and organisation.
- Rate limits: a token bucket per credential (API key or session) and, for anonymous requests,
  per client address; an empty bucket answers 429 with ``Retry-After``. The buckets live in a
  bounded map, so a flood of addresses cannot grow memory without limit.
- Admission checks: after the rate limit, each check a module registered with
  :func:`add_admission_check` may refuse an authenticated request (raise an ``ApiError``)
  before its handler reads the body — the outbox refuses uploads it has no room for, so a
  refusal under overload costs no parsing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway import openapi
from gateway.appkeys import CONFIG, METRICS, READINESS
from gateway.errors import REQUEST_ID, ApiError, TooManyRequests
from gateway.isotime import iso_time
from gateway.principal import Principal, principal_of

log = logging.getLogger("portledger.gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[web.Application], Awaitable[tuple[bool, str]]]
AdmissionCheck = Callable[[web.Request, Principal], None]

_HTTP = web.AppKey("http_metrics", tuple)
_LIMITER = web.AppKey("rate_limiter", object)
_ADMISSION = web.AppKey("admission_checks", list)

#: The probes and the metrics scrape (documented in OpenAPI, never rate limited).
probes = openapi.Routes(tag="operations", description="Probes and metrics")


def add_readiness_check(app: web.Application, name: str, check: ReadinessCheck) -> None:
    """Register a readiness check: ``await check(app) -> (ok, detail)``."""
    app[READINESS][name] = check


def add_admission_check(app: web.Application, check: AdmissionCheck) -> None:
    """Register ``check(request, principal)``: run for every authenticated request that passed
    the rate limit, before its handler; it refuses by raising an ``ApiError``. Keep it cheap
    (no I/O): it runs on the event loop for every request."""
    app.setdefault(_ADMISSION, []).append(check)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and the record's extras."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created, millis=True),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by credential or address, at most ``capacity`` of them kept."""

    def __init__(self, rate: float, burst: int, capacity: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 if allowed, else the seconds until one is due."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


@dataclass
class _Limiters:
    per_key: RateLimiter
    per_address: RateLimiter


def _route_name(request: web.Request) -> str:
    """The route pattern (bounded label cardinality), not the concrete path."""
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request, and log it."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (web.HTTPException, ApiError) as exc:
        # An ApiError becomes its JSON answer in the error middleware, outside this one:
        # counted and logged with its own status (was 500, so every 429 and 4xx showed as 500).
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        metrics = request.app.get(_HTTP)
        if metrics is not None:
            requests, duration = metrics
            requests.labels(request.method, route, str(status)).inc()
            duration.labels(route).observe(elapsed)
        if request.path not in unlimited_paths:
            principal = principal_of(request)
            log.info(
                "%s %s %d",
                request.method,
                request.path,
                status,
                extra={
                    "request_id": request.get(REQUEST_ID, ""),
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "org": principal.org_id if principal else None,
                    "remote": request.remote,
                },
            )


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse with 429 and ``Retry-After`` when the caller's bucket is empty."""
    limiters = request.app.get(_LIMITER)
    if limiters is None or request.path in unlimited_paths:
        return await handler(request)
    assert isinstance(limiters, _Limiters)
    principal = principal_of(request)
    if principal is not None:
        wait = limiters.per_key.take(principal.credential_id or f"org:{principal.org_id}")
        scope = "credential"
    else:
        wait = limiters.per_address.take(request.remote or "unknown")
        scope = "address"
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many requests for this {scope}; retry in {retry} s",
            details={"retryAfterSeconds": retry, "limitedBy": scope},
            headers={"Retry-After": str(retry)},
        )
    if principal is not None:
        for check in request.app.get(_ADMISSION, ()):
            check(request, principal)
    return await handler(request)


@probes.get("/healthz", openapi.operation("Liveness probe", security=[]))
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


_READINESS_OP = openapi.operation("Readiness probe (checks of every module)", security=[])
_READINESS_OP["responses"]["503"] = {"description": "Not ready (the same body: which check failed)"}


@probes.get("/readyz", _READINESS_OP)
async def readyz(request: web.Request) -> web.Response:
    results = {}
    ready = True
    for name, check in request.app[READINESS].items():
        try:
            ok, detail = await check(request.app)
        except Exception as exc:  # a failing check is a "not ready", never a 500
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results[name] = {"ok": ok, "detail": detail}
        ready = ready and ok
    return web.json_response(
        {"status": "ready" if ready else "not-ready", "checks": results}, status=200 if ready else 503
    )


@probes.get("/metrics", openapi.operation("Prometheus metrics", security=[]))
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Probes, metrics and rate limits."""

    config = app[CONFIG]
    registry = CollectorRegistry()
    app[METRICS] = registry
    app[READINESS] = {}
    app[_HTTP] = (
        Counter(
            "portledger_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        ),
        Histogram(
            "portledger_http_request_seconds",
            "HTTP request duration by route",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        ),
    )
    app[_LIMITER] = _Limiters(
        RateLimiter(config.rate_limit_per_key, config.rate_limit_burst),
        RateLimiter(config.rate_limit_per_address, config.rate_limit_burst),
    )
    probes.install(app)


#: Paths the rate limits and the request metrics leave alone: the probes.
unlimited_paths = frozenset(probes.paths)
