"""The JSON-RPC server's limits: one frozen value the CLI fills in (``portledger node --rpc-*``)
and :mod:`node.rpc.app` and :mod:`node.rpc.websocket` enforce. Kept apart from them so the
CLI's options know the defaults without loading the web server (docs/limits.md)."""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes of one HTTP body or WebSocket message.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Requests in one batch.
MAX_BATCH = 2_000
#: Requests answered at once (Besu's default of active HTTP connections is 80).
MAX_CONCURRENT = 64
#: Subscriptions on one WebSocket connection.
MAX_SUBSCRIPTIONS_PER_SOCKET = 100
#: WebSocket connections open at once.
MAX_WEBSOCKETS = 128
#: Seconds a client refused for concurrency is told to wait.
RETRY_AFTER_SECONDS = 1
#: Seconds to receive one HTTP body once its headers are in.
BODY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RpcLimits:
    """The JSON-RPC server's bounds."""

    #: Bytes of one HTTP body or WebSocket message.
    max_body_bytes: int = MAX_BODY_BYTES
    #: Requests in one batch.
    max_batch: int = MAX_BATCH
    #: HTTP requests and WebSocket messages being answered at once.
    max_concurrent: int = MAX_CONCURRENT
    #: Subscriptions on one WebSocket connection.
    max_subscriptions: int = MAX_SUBSCRIPTIONS_PER_SOCKET
    #: WebSocket connections open at once (each may queue notifications).
    max_websockets: int = MAX_WEBSOCKETS
    #: Seconds to receive one HTTP body once its headers are in: a request still sending then
    #: is refused (408) and gives back its place among the ``max_concurrent`` (without this,
    #: 64 clients that never finish their bodies locked every other client out for good).
    body_timeout: float = BODY_TIMEOUT_SECONDS
