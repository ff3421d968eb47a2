"""WebSocket sessions: ``eth_subscribe`` (``newHeads``, ``logs``) and their notifications.

A session holds at most ``max_subscriptions`` subscriptions (default
:data:`MAX_SUBSCRIPTIONS_PER_SOCKET`; one more is refused with ``LIMIT_EXCEEDED``, -32005), and
its notifications queue up to :data:`OUTBOX_SIZE` messages; a subscriber that falls further
behind is disconnected (close code 1008) rather than let the node's memory grow.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from eth_utils.crypto import keccak

from node.rpc.errors import INVALID_PARAMS, LIMIT_EXCEEDED, RpcError
from node.rpc.filters import LogCriteria, entry_matches, parse_log_criteria
from node.rpc.format import block_logs, format_header
from node.rpc.limits import MAX_SUBSCRIPTIONS_PER_SOCKET
from node.service import NewBlock

log = logging.getLogger("portledger.rpc")

#: Notifications queued for one session before it is disconnected as too slow.
OUTBOX_SIZE = 10_000


class WebSocketSession:
    """One WebSocket connection and its subscriptions.

    ``subscribers`` is the dispatcher's table of block listeners (one entry per session with a
    subscription); ``ids`` its id counter, shared with the filters.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        subscribers: dict[str, Callable[[NewBlock], None]],
        ids: itertools.count[int],
        *,
        max_subscriptions: int = MAX_SUBSCRIPTIONS_PER_SOCKET,
    ) -> None:
        self.ws = ws
        self.subscribers = subscribers
        self._ids = ids
        self.max_subscriptions = max_subscriptions
        self.subscriptions: dict[str, tuple[str, LogCriteria | None]] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.key = f"ws-{id(self)}"

    def subscribe(self, params: list[Any]) -> str:
        if not params or params[0] not in ("newHeads", "logs"):
            raise RpcError(INVALID_PARAMS, "eth_subscribe: supported kinds are newHeads and logs")
        if len(self.subscriptions) >= self.max_subscriptions:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"limit exceeded: {self.max_subscriptions} subscriptions on this connection",
                {"limit": "subscriptions", "maxSubscriptions": self.max_subscriptions},
            )
        criteria = None
        if params[0] == "logs":
            obj = params[1] if len(params) > 1 else {}
            if not isinstance(obj, dict):
                raise RpcError(INVALID_PARAMS, "logs subscription: expected a filter object")
            criteria = parse_log_criteria(obj)
        sub_id = "0x" + keccak(f"{self.key}:{next(self._ids)}".encode())[:16].hex()
        self.subscriptions[sub_id] = (params[0], criteria)
        self.subscribers[self.key] = self.on_block
        return sub_id

    def unsubscribe(self, params: list[Any]) -> bool:
        if len(params) != 1:
            raise RpcError(INVALID_PARAMS, "eth_unsubscribe: expected a subscription id")
        return self.subscriptions.pop(params[0], None) is not None

    def on_block(self, event: NewBlock) -> None:
        logs: list[dict[str, Any]] | None = None
        for sub_id, (kind, criteria) in self.subscriptions.items():
            results: list[Any]
            if kind == "newHeads":
                results = [format_header(event.header)]
            else:
                if logs is None:
                    block = event.result.block
                    logs = [
                        e
                        for _, e in block_logs(
                            event.header, block.transactions, event.result.receipts
                        )
                    ]
                assert criteria is not None
                results = [e for e in logs if entry_matches(criteria, e)]
            for result in results:
                message = json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "eth_subscription",
                        "params": {"subscription": sub_id, "result": result},
                    }
                )
                try:
                    self.outbox.put_nowait(message)
                except asyncio.QueueFull:
                    log.warning("dropping slow WebSocket subscriber %s", self.key)
                    asyncio.ensure_future(self.ws.close(code=1008, message=b"subscriber too slow"))
                    return

    async def pump(self) -> None:
        while True:
            message = await self.outbox.get()
            await self.ws.send_str(message)

    def close(self) -> None:
        self.subscribers.pop(self.key, None)
