"""The JSON-RPC server: the :class:`JsonRpc` dispatcher composing the namespaces' method tables,
and the aiohttp application that carries it over HTTP and WebSocket.

One method table (:attr:`JsonRpc.methods`) serves both transports. Every failure is a JSON-RPC
error object (:mod:`node.rpc.errors`) and never stops the server. Transports: ``POST /``
(single or batched requests) and a WebSocket on ``GET /`` or ``GET /ws`` that also carries
``eth_subscribe`` (:mod:`node.rpc.websocket`); ``GET /metrics`` is the node's Prometheus text
(:mod:`node.rpc.metrics`).

Limits (:class:`~node.rpc.limits.RpcLimits`, ``portledger node --rpc-*``; docs/limits.md), each refused with
``LIMIT_EXCEEDED`` (-32005) and counted in :attr:`JsonRpc.refused`:

- a body above ``max_body_bytes``: HTTP 413 (a WebSocket message above it closes the socket
  with 1009, as aiohttp does); a body not received within ``body_timeout`` once its headers
  are in: HTTP 408 (a stalled body would otherwise hold its place among the concurrent ones);
- a batch above ``max_batch`` requests: one error object for the whole batch;
- more than ``max_concurrent`` requests (HTTP requests and WebSocket messages) being answered
  at once: the next is refused before its body is read — HTTP 429 with ``Retry-After`` and
  ``data: {"retryAfter": 1}``, on a WebSocket an error per request of the message;
- more than ``max_subscriptions`` subscriptions on one WebSocket;
- more than ``max_websockets`` WebSocket connections open: the upgrade is refused with HTTP 429
  (``Retry-After``, the same error object).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from node.rpc.chainview import ChainView
from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Method,
    RpcError,
    error_response,
)
from node.rpc.eth import EthApi
from node.rpc.filters import LogFilters
from node.rpc.limits import RETRY_AFTER_SECONDS, RpcLimits
from node.rpc.metrics import CONTENT_TYPE, NodeMetrics
from node.rpc.net import NetApi
from node.rpc.portledger import PortLedgerApi
from node.rpc.qbft import QbftApi
from node.rpc.websocket import WebSocketSession
from node.service import NewBlock, NodeService

log = logging.getLogger("portledger.rpc")

#: A batch yields to the event loop at least this often while it is being answered.
BATCH_YIELD_SECONDS = 0.0005


#: Deepest nesting of arrays and objects a request body may have. The JSON parser recurses on
#: the C stack, and py-evm raises this process's recursion limit to 100,000 — far more levels
#: than the C stack holds — so a body of 100,000 ``[`` would crash the node (a segmentation
#: fault) instead of raising RecursionError. Real requests nest a few levels deep.
MAX_JSON_DEPTH = 256
#: A JSON string (brackets inside it are not nesting).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text ``data`` (at C speed: strings
    removed by a regex, brackets kept by ``translate``, depths summed by ``accumulate``)."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return min(data.count(b"[") + data.count(b"{"), MAX_JSON_DEPTH)
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def parse_json(text: str | bytes) -> Any:
    """A request body as strict JSON (RFC 8259): NaN, Infinity and numbers that overflow a
    float are refused (echoed back as an id they would make the answer invalid JSON), and so is
    nesting deeper than :data:`MAX_JSON_DEPTH`; ValueError (or UnicodeDecodeError) for all."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


class JsonRpc:
    """The JSON-RPC methods of one node and the filters and subscriptions they install."""

    def __init__(self, node: NodeService, limits: RpcLimits | None = None) -> None:
        self.node = node
        self.limits = limits or RpcLimits()
        #: Requests (HTTP) and messages (WebSocket) being answered now.
        self.in_flight = 0
        #: Refusals by limit: ``body``, ``batch``, ``concurrency``, ``subscriptions``,
        #: ``websockets``, the pool's
        #: (``count``, ``bytes``, ``sender``), ``other`` (eth_getLogs ranges, filters).
        self.refused: Counter[str] = Counter()
        self.ledger = node.ledger
        self.view = ChainView(node)
        #: Filter and subscription ids.
        self.ids = itertools.count(1)
        self.logs = LogFilters(self.view, self.ids)
        #: Block listeners of the WebSocket sessions that subscribed, by session.
        self.subscribers: dict[str, Callable[[NewBlock], None]] = {}
        #: The open WebSocket sessions.
        self.sessions: set[WebSocketSession] = set()
        node.listeners.append(self._on_block)
        self.methods: dict[str, Method] = {
            **NetApi(node).methods(),
            **EthApi(self.view).methods(),
            **self.logs.methods(),
            **QbftApi(self.view).methods(),
            **PortLedgerApi(self.view).methods(),
        }

    # -- limits ------------------------------------------------------------------------------
    def admit(self) -> bool:
        """Take one of the ``max_concurrent`` slots (False, counted, when none is free); the
        caller gives it back with :meth:`release`."""
        if self.in_flight >= self.limits.max_concurrent:
            self.refused["concurrency"] += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def busy_error(self) -> RpcError:
        return RpcError(
            LIMIT_EXCEEDED,
            f"limit exceeded: {self.limits.max_concurrent} requests are being answered, "
            f"retry in {RETRY_AFTER_SECONDS}s",
            {"retryAfter": RETRY_AFTER_SECONDS, "limit": "concurrency"},
        )

    def body_error(self) -> RpcError:
        self.refused["body"] += 1
        return RpcError(
            LIMIT_EXCEEDED,
            f"limit exceeded: request body exceeds {self.limits.max_body_bytes} bytes",
            {"limit": "body", "maxBytes": self.limits.max_body_bytes},
        )

    def busy_answer(self, text: str | bytes) -> Any:
        """The refusal of a whole WebSocket message while the server is at its concurrency
        limit: one error per request, with the request's id (clients match answers by id)."""
        try:
            payload = parse_json(text)
        except (ValueError, UnicodeDecodeError):
            payload = None
        error = self.busy_error()
        if isinstance(payload, list) and payload:
            return [
                error_response(item.get("id") if isinstance(item, dict) else None, error)
                for item in payload[: self.limits.max_batch]
            ]
        request_id = payload.get("id") if isinstance(payload, dict) else None
        return error_response(request_id, error)

    def _on_block(self, event: NewBlock) -> None:
        self.logs.on_block(event)
        for notify in list(self.subscribers.values()):
            notify(event)

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(
        self, request: Any, ws: WebSocketSession | None = None
    ) -> dict[str, Any] | None:
        """Answer one request object (``None`` for a notification)."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return error_response(
                None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON-RPC 2.0 object")
            )
        request_id = request.get("id")
        is_notification = "id" not in request
        if request_id is not None and not isinstance(request_id, str | int | float):
            return error_response(None, RpcError(INVALID_REQUEST, "invalid request: bad id"))
        method = request.get("method")
        params = request.get("params", [])
        result: Any
        try:
            if not isinstance(method, str):
                raise RpcError(INVALID_REQUEST, "invalid request: method must be a string")
            if not isinstance(params, list):
                raise RpcError(INVALID_PARAMS, "params must be an array")
            if method in ("eth_subscribe", "eth_unsubscribe"):
                if ws is None:
                    raise RpcError(METHOD_NOT_FOUND, f"{method} needs a WebSocket connection")
                result = (
                    ws.subscribe(params) if method == "eth_subscribe" else ws.unsubscribe(params)
                )
            else:
                handler = self.methods.get(method)
                if handler is None:
                    raise RpcError(
                        METHOD_NOT_FOUND, f"the method {method} does not exist/is not available"
                    )
                result = handler(params)
                if asyncio.iscoroutine(result):
                    result = await result
        except RpcError as exc:
            if exc.code == LIMIT_EXCEEDED:
                limit = exc.data.get("limit") if isinstance(exc.data, dict) else None
                self.refused[str(limit or "other")] += 1
            return None if is_notification else error_response(request_id, exc)
        except Exception as exc:  # never let one request take the server down
            log.exception("internal error in %s", method)
            return (
                None
                if is_notification
                else error_response(
                    request_id, RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
                )
            )
        return None if is_notification else {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def handle_text(self, text: str | bytes, ws: WebSocketSession | None = None) -> Any:
        """Answer a request body (single or batch); ``None`` when nothing is to be sent."""
        try:
            payload = parse_json(text)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(None, RpcError(PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return error_response(
                    None, RpcError(INVALID_REQUEST, "invalid request: empty batch")
                )
            limit = self.limits.max_batch
            if len(payload) > limit:
                self.refused["batch"] += 1
                return error_response(
                    None,
                    RpcError(
                        LIMIT_EXCEEDED,
                        f"limit exceeded: batch of {len(payload)} exceeds {limit}",
                        {"limit": "batch", "maxBatch": limit},
                    ),
                )
            answers = []
            last_yield = time.monotonic()
            for item in payload:
                answers.append(await self.dispatch(item, ws))
                # A big batch (e.g. 500 raw transactions) takes hundreds of milliseconds; let
                # other connections' requests in between items instead of stalling them all.
                if time.monotonic() - last_yield > BATCH_YIELD_SECONDS:
                    await asyncio.sleep(0)
                    last_yield = time.monotonic()
            return [a for a in answers if a is not None] or None
        return await self.dispatch(payload, ws)


# -- the aiohttp application ---------------------------------------------------------------
RPC_KEY = web.AppKey("rpc", JsonRpc)
METRICS_KEY = web.AppKey("metrics", NodeMetrics)


async def _http(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    if request.method != "POST":
        return web.json_response(
            {"error": "POST a JSON-RPC request, or open a WebSocket"}, status=405
        )
    rpc = request.app[RPC_KEY]
    if not rpc.admit():  # before the body is read: a refused request costs no memory
        return web.Response(
            text=json.dumps(error_response(None, rpc.busy_error())),
            status=429,
            content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    try:
        length = request.content_length
        if length is not None and length > rpc.limits.max_body_bytes:
            return _too_large(rpc)
        try:
            body = await asyncio.wait_for(request.read(), rpc.limits.body_timeout)
        except web.HTTPRequestEntityTooLarge:
            return _too_large(rpc)
        except TimeoutError:
            return _too_slow(rpc)
        except (ConnectionError, HttpProcessingError) as exc:
            # The client broke off its body (end of input, a reset) or garbled it (a bad chunk,
            # fewer bytes than its Content-Length): aiohttp would answer 500 with a traceback.
            return _broken_body(exc)
        answer = await rpc.handle_text(body)
    finally:
        rpc.release()
    if answer is None:
        return web.Response(status=204)
    return web.Response(text=json.dumps(answer), content_type="application/json")


def _too_large(rpc: JsonRpc) -> web.Response:
    # The unread rest of the body is not drained: the connection is closed after the answer.
    return web.Response(
        text=json.dumps(error_response(None, rpc.body_error())),
        status=413,
        content_type="application/json",
        headers={"Connection": "close"},
    )


def _broken_body(exc: Exception) -> web.Response:
    """A body that did not arrive whole: 400 with a parse error, the connection closed."""
    error = RpcError(PARSE_ERROR, f"parse error: the request body did not arrive whole: {exc!r}")
    return web.Response(
        text=json.dumps(error_response(None, error)),
        status=400,
        content_type="application/json",
        headers={"Connection": "close"},
    )


def _too_slow(rpc: JsonRpc) -> web.Response:
    """A body not received within ``body_timeout``: 408, the connection closed."""
    rpc.refused["body_timeout"] += 1
    seconds = rpc.limits.body_timeout
    error = RpcError(
        LIMIT_EXCEEDED,
        f"limit exceeded: request body not received within {seconds:g} s",
        {"limit": "body_timeout", "seconds": seconds},
    )
    return web.Response(
        text=json.dumps(error_response(None, error)),
        status=408,
        content_type="application/json",
        headers={"Connection": "close"},
    )


async def _websocket(request: web.Request) -> web.StreamResponse:
    rpc = request.app[RPC_KEY]
    if len(rpc.sessions) >= rpc.limits.max_websockets:
        rpc.refused["websockets"] += 1
        error = RpcError(
            LIMIT_EXCEEDED,
            f"limit exceeded: {rpc.limits.max_websockets} WebSocket connections are open",
            {"retryAfter": RETRY_AFTER_SECONDS, "limit": "websockets"},
        )
        return web.Response(
            text=json.dumps(error_response(None, error)),
            status=429,
            content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    ws = web.WebSocketResponse(max_msg_size=rpc.limits.max_body_bytes, heartbeat=30)
    await ws.prepare(request)
    session = WebSocketSession(
        ws, rpc.subscribers, rpc.ids, max_subscriptions=rpc.limits.max_subscriptions
    )
    rpc.sessions.add(session)
    pump = asyncio.create_task(session.pump())
    try:
        async for message in ws:
            # web3.py's WebSocketProvider sends requests as binary frames (as geth and Besu
            # accept): both frame types carry UTF-8 JSON; answers always go out as text.
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if not rpc.admit():
                    await ws.send_str(json.dumps(rpc.busy_answer(message.data)))
                    continue
                try:
                    answer = await rpc.handle_text(message.data, session)
                finally:
                    rpc.release()
                if answer is not None:
                    await ws.send_str(json.dumps(answer))
            elif message.type == WSMsgType.ERROR:
                # aiohttp closes a socket whose message exceeds max_msg_size (code 1009)
                rpc.refused["body"] += 1
                log.info("WebSocket closed: %r", ws.exception())
    finally:
        rpc.sessions.discard(session)
        session.close()
        pump.cancel()
    return ws


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class _QuietBadRequests(logging.Filter):
    """aiohttp answers a malformed HTTP request 400 and logs it with a traceback at ERROR (unless
    it is the connection's first bytes and not HTTP at all), so any client could fill the node's
    log, ten lines a request. Such a record becomes one DEBUG line here."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            log.debug("malformed HTTP request refused (%d): %s", exc.code, exc.message)
            return False
        return True


def create_rpc_app(node: NodeService, limits: RpcLimits | None = None) -> web.Application:
    """The JSON-RPC application (HTTP POST and WebSocket on ``/``, WebSocket on ``/ws``,
    Prometheus text on ``GET /metrics``)."""
    limits = limits or RpcLimits()
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _QuietBadRequests) for f in server_log.filters):
        server_log.addFilter(_QuietBadRequests())
    app = web.Application(client_max_size=limits.max_body_bytes)
    rpc = JsonRpc(node, limits)
    app[RPC_KEY] = rpc
    app[METRICS_KEY] = NodeMetrics(rpc)
    app.router.add_route("*", "/", _http)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/metrics", _metrics)
    return app
