"""Probes, metrics, the JSON error body and rate limits."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from gateway.app import create_app
from gateway.ops import RateLimiter, add_readiness_check


async def test_healthz_and_metrics_count_requests(aiohttp_client, gateway_config):
    client = await aiohttp_client(create_app(gateway_config))
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
    await client.get("/no/such/path")
    text = await (await client.get("/metrics")).text()
    assert 'portledger_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text


async def test_unknown_path_gets_the_json_error_body(aiohttp_client, gateway_config):
    client = await aiohttp_client(create_app(gateway_config))
    resp = await client.get("/no/such/path", headers={"X-Request-Id": "abc123"})
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["status"] == 404 and body["error"]["code"] == "not-found"
    assert body["requestId"] == "abc123" and resp.headers["X-Request-Id"] == "abc123"


async def test_readyz_reports_a_failing_check(aiohttp_client, gateway_config):
    app = create_app(gateway_config)

    async def node_down(app: web.Application) -> tuple[bool, str]:
        return False, "no node answers"

    async def broken(app: web.Application) -> tuple[bool, str]:
        raise RuntimeError("boom")

    add_readiness_check(app, "node", node_down)
    add_readiness_check(app, "broken", broken)
    client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["node"] == {"ok": False, "detail": "no node answers"}
    assert body["checks"]["broken"]["detail"] == "RuntimeError: boom"


async def test_anonymous_flood_gets_429_with_retry_after(aiohttp_client, gateway_config):
    config = dataclasses.replace(gateway_config, rate_limit_per_address=1.0, rate_limit_burst=3)
    client = await aiohttp_client(create_app(config))
    statuses = [(await client.get("/openapi.json")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await client.get("/openapi.json")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate-limited"
    assert (await client.get("/healthz")).status == 200  # probes are never limited


def test_rate_limiter_refills_and_bounds_its_memory():
    limiter = RateLimiter(rate=2.0, burst=2, capacity=3)
    assert limiter.take("a", now=0.0) == 0 and limiter.take("a", now=0.0) == 0
    assert limiter.take("a", now=0.0) == 0.5
    assert limiter.take("a", now=0.5) == 0  # one token back after 0.5 s at 2/s
    for key in "bcde":
        limiter.take(key, now=1.0)
    assert len(limiter._buckets) == 3 and "a" not in limiter._buckets
