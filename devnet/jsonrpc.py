"""The one synchronous JSON-RPC client of the devnet, the benchmarks and the tests.

:class:`RpcClient` keeps one HTTP connection alive (one client per thread); :func:`rpc_call`
makes one call on a fresh connection; :func:`rpc_answer` returns the whole answer object, for
callers that check error answers themselves. A node is addressed by a URL or by anything with a
``host`` and an ``rpc_port`` (a :class:`devnet.layout.NodeSpec`). :func:`wait_for` is the bounded
poll every devnet wait goes through: connection failures and error answers count as "not yet".
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from devnet.errors import DevnetTimeout

T = TypeVar("T")


class RpcError(Exception):
    """A JSON-RPC error answer (the node is up and refused the request)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class Endpoint(Protocol):
    """Where a node answers JSON-RPC (a :class:`devnet.layout.NodeSpec` is one)."""

    @property
    def host(self) -> str: ...

    @property
    def rpc_port(self) -> int: ...


class RpcClient:
    """JSON-RPC over one keep-alive HTTP connection; one client per thread.

    A failed connection raises :class:`OSError` (reconnecting on the next call); an error
    answer raises :class:`RpcError`.
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0, path: str = "/") -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.path = path
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def to(cls, target: Endpoint | str, timeout: float = 5.0) -> RpcClient:
        """A client of ``target``: an ``http://host:port[/path]`` URL or an :class:`Endpoint`."""
        if isinstance(target, str):
            url = urlsplit(target)
            if url.scheme != "http" or url.hostname is None or url.port is None:
                raise ValueError(f"not an http://host:port URL: {target!r}")
            return cls(url.hostname, url.port, timeout, url.path or "/")
        return cls(target.host, target.rpc_port, timeout)

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, payload: Any) -> Any:
        """Send one JSON-RPC document (a request or a batch); its parsed answer."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            body = json.dumps(payload)
            self._conn.request(
                "POST", self.path, body=body, headers={"Content-Type": "application/json"}
            )
            response = self._conn.getresponse()
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            if isinstance(exc, OSError):
                raise
            raise ConnectionError(f"{self.host}:{self.port}: {exc!r}") from exc

    def answer(self, method: str, params: list[Any] | None = None) -> dict[str, Any]:
        """The whole answer object of one call (``result`` or ``error``), never raising on ``error``."""
        answer = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        if not isinstance(answer, dict):
            raise ConnectionError(f"{self.host}:{self.port}: not a JSON-RPC answer: {answer!r}")
        return answer

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """The result of one call; an error answer raises :class:`RpcError`."""
        answer = self.answer(method, params)
        if "error" in answer:
            raise RpcError(int(answer["error"].get("code", 0)), str(answer["error"].get("message")))
        return answer["result"]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Answers in call order; an error answer is an :class:`RpcError` in its place."""
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        answers = self.post(payload)
        if not isinstance(answers, list):  # the whole batch was refused
            error = answers.get("error", {})
            raise RpcError(int(error.get("code", 0)), str(error.get("message")))
        results: list[Any] = [None] * len(calls)
        for answer in answers:
            error = answer.get("error")
            results[answer["id"]] = (
                RpcError(int(error.get("code", 0)), str(error.get("message")))
                if error
                else answer.get("result")
            )
        return results

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def rpc_call(
    target: Endpoint | str, method: str, params: list[Any] | None = None, timeout: float = 5.0
) -> Any:
    """One JSON-RPC call on a fresh connection (thread-safe): its result, or :class:`RpcError`."""
    with RpcClient.to(target, timeout) as client:
        return client.call(method, params)


def rpc_answer(
    target: Endpoint | str, method: str, params: list[Any] | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """One JSON-RPC call on a fresh connection: the whole answer object (``result`` or ``error``)."""
    with RpcClient.to(target, timeout) as client:
        return client.answer(method, params)


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns a true value, for at most ``timeout`` seconds.

    Connection failures and JSON-RPC errors inside the predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, RpcError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise DevnetTimeout(f"{what}: not reached within {timeout:g} s{detail}")
        time.sleep(interval)
