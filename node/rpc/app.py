"""The JSON-RPC server: the :class:`JsonRpc` dispatcher composing the namespaces' method tables,
and the aiohttp application that carries it over HTTP and WebSocket.

One method table (:attr:`JsonRpc.methods`) serves both transports. Every failure is a JSON-RPC
error object (:mod:`node.rpc.errors`) and never stops the server. Transports: ``POST /``
(single or batched requests, bodies up to :data:`MAX_BODY_BYTES`) and a WebSocket on ``GET /``
or ``GET /ws`` that also carries ``eth_subscribe`` (:mod:`node.rpc.websocket`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

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
from node.rpc.net import NetApi
from node.rpc.portledger import PortLedgerApi
from node.rpc.qbft import QbftApi
from node.rpc.websocket import WebSocketSession
from node.service import NewBlock, NodeService

log = logging.getLogger("portledger.rpc")

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH = 2_000
#: A batch yields to the event loop at least this often while it is being answered.
BATCH_YIELD_SECONDS = 0.0005


class JsonRpc:
    """The JSON-RPC methods of one node and the filters and subscriptions they install."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self.ledger = node.ledger
        self.view = ChainView(node)
        #: Filter and subscription ids.
        self.ids = itertools.count(1)
        self.logs = LogFilters(self.view, self.ids)
        #: Block listeners of the WebSocket sessions that subscribed, by session.
        self.subscribers: dict[str, Callable[[NewBlock], None]] = {}
        node.listeners.append(self._on_block)
        self.methods: dict[str, Method] = {
            **NetApi(node).methods(),
            **EthApi(self.view).methods(),
            **self.logs.methods(),
            **QbftApi(self.view).methods(),
            **PortLedgerApi(self.view).methods(),
        }

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
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(None, RpcError(PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return error_response(
                    None, RpcError(INVALID_REQUEST, "invalid request: empty batch")
                )
            if len(payload) > MAX_BATCH:
                return error_response(
                    None, RpcError(LIMIT_EXCEEDED, f"batch of {len(payload)} exceeds {MAX_BATCH}")
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


async def _http(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    if request.method != "POST":
        return web.json_response(
            {"error": "POST a JSON-RPC request, or open a WebSocket"}, status=405
        )
    rpc = request.app[RPC_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            error_response(
                None, RpcError(LIMIT_EXCEEDED, f"request body exceeds {MAX_BODY_BYTES} bytes")
            ),
            status=413,
        )
    answer = await rpc.handle_text(body)
    if answer is None:
        return web.Response(status=204)
    return web.Response(text=json.dumps(answer), content_type="application/json")


async def _websocket(request: web.Request) -> web.StreamResponse:
    rpc = request.app[RPC_KEY]
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY_BYTES, heartbeat=30)
    await ws.prepare(request)
    session = WebSocketSession(ws, rpc.subscribers, rpc.ids)
    pump = asyncio.create_task(session.pump())
    try:
        async for message in ws:
            # web3.py's WebSocketProvider sends requests as binary frames (as geth and Besu
            # accept): both frame types carry UTF-8 JSON; answers always go out as text.
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                answer = await rpc.handle_text(message.data, session)
                if answer is not None:
                    await ws.send_str(json.dumps(answer))
    finally:
        session.close()
        pump.cancel()
    return ws


def create_rpc_app(node: NodeService) -> web.Application:
    """The JSON-RPC application (HTTP POST and WebSocket on ``/``, WebSocket on ``/ws``)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RPC_KEY] = JsonRpc(node)
    app.router.add_route("*", "/", _http)
    app.router.add_get("/ws", _websocket)
    return app
