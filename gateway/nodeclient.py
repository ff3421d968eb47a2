"""JSON-RPC to PortLedger nodes, over several URLs with failover.

The gateway never depends on one node: :class:`NodeClient` is given every configured URL, asks
the one that answered last, and on a connection error or timeout moves on to the next (round
robin), with a short backoff between full rounds. Only when a whole bounded series of rounds
fails does it raise :class:`NodeUnavailable`; callers that must not give up (the submitter)
wait and try again later. A JSON-RPC error answer is *not* a reason to fail over: the node is
up and said no, so it is raised as :class:`RpcError` with the node's code, message and data.

Because a node answered with an error is healthy, and a node that timed out may still have
acted on the request (a sent transaction may be in its pool), callers that send transactions
must treat :class:`NodeUnavailable` as "unknown outcome" (see :mod:`gateway.writepath.submitter`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from contracts import abi
from gateway.appkeys import CONFIG, NODE

T = TypeVar("T")


class NodeUnavailable(Exception):
    """No configured node answered (connection refused, timed out, or a broken answer)."""


class RpcError(Exception):
    """A node answered a JSON-RPC request with an error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def _rpc_error(err: Any) -> RpcError:
    """The :class:`RpcError` of a JSON-RPC error object."""
    err = err if isinstance(err, dict) else {}
    return RpcError(int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))


def _tag(block: int | str) -> str:
    return block if isinstance(block, str) else hex(block)


class NodeClient:
    """A JSON-RPC client over several node URLs (see the module docstring).

    Parameters
    ----------
    urls
        Node HTTP JSON-RPC URLs in order of preference.
    timeout
        Seconds one request may take on one node.
    rounds
        How many times every URL is tried before :class:`NodeUnavailable`.
    backoff
        Seconds before the second round; doubles every round.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        rounds: int = 3,
        backoff: float = 0.2,
    ) -> None:
        if not urls:
            raise ValueError("a node client needs at least one node URL")
        self.urls = tuple(urls)
        self.timeout = timeout
        self.rounds = max(1, rounds)
        self.backoff = backoff
        self._healthy = 0
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._chain_id: int | None = None

    @property
    def current_url(self) -> str:
        """The URL asked first (the one that answered last)."""
        return self.urls[self._healthy]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=32, force_close=False),
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _post(self, url: str, body: bytes) -> Any:
        async with self._http().post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            if response.status >= 500 or response.status in (404, 405):
                raise NodeUnavailable(f"{url} answered HTTP {response.status}")
            text = await response.read()
        try:
            return json.loads(text)
        except ValueError:
            raise NodeUnavailable(f"{url} answered something that is not JSON") from None

    async def _exchange(self, what: str, body: bytes, answer_of: Callable[[str, Any], T]) -> T:
        """POST ``body`` to the first node that answers (failover, bounded rounds).

        ``answer_of(url, parsed_json)`` turns the first answer into the result; whatever it
        raises is raised as is (an answer, even a broken one, ends the failover).

        Raises
        ------
        NodeUnavailable
            No node answered within the bounded rounds.
        """
        failures: list[str] = []
        delay = self.backoff
        for round_ in range(self.rounds):
            if round_:
                await asyncio.sleep(delay)
                delay *= 2
            start = self._healthy
            for step in range(len(self.urls)):
                index = (start + step) % len(self.urls)
                url = self.urls[index]
                try:
                    answer = await self._post(url, body)
                except (aiohttp.ClientError, TimeoutError, OSError, NodeUnavailable) as exc:
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                self._healthy = index
                return answer_of(url, answer)
        raise NodeUnavailable(f"{what}: no node answered: {'; '.join(failures[-3:])}")

    async def request(self, method: str, params: list[Any] | None = None) -> Any:
        """Call ``method`` on the first node that answers; its ``result``.

        Raises
        ------
        RpcError
            The node answered with an error object.
        NodeUnavailable
            No node answered within the bounded rounds.
        """
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        ).encode()

        def result(url: str, answer: Any) -> Any:
            if not isinstance(answer, dict):
                raise NodeUnavailable(f"{url} answered {answer!r}")
            if "error" in answer:
                raise _rpc_error(answer["error"])
            return answer.get("result")

        return await self._exchange(method, body, result)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch, answered by ONE node in order.

        Each item of the answer is the call's result or an :class:`RpcError` instance (not
        raised). One node answers all of them, so a later call sees at least the chain the
        earlier ones saw (the node's head only moves forward: QBFT blocks are final).

        Raises
        ------
        NodeUnavailable
            No node answered within the bounded rounds.
        """
        first = next(self._ids)
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": first + i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)
            ]
        ).encode()
        for _ in range(len(calls)):
            next(self._ids)

        def results(url: str, answer: Any) -> list[Any]:
            if not isinstance(answer, list):
                raise NodeUnavailable(f"{url} answered a batch with {answer!r}")
            by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
            out: list[Any] = []
            for i in range(len(calls)):
                item = by_id.get(first + i)
                if item is None:
                    raise NodeUnavailable(f"{url} left call {i} of a batch unanswered")
                out.append(_rpc_error(item["error"]) if "error" in item else item.get("result"))
            return out

        return await self._exchange("batch", body, results)

    # -- helpers ----------------------------------------------------------------------------
    async def chain_id(self) -> int:
        """The chain id (asked once)."""
        if self._chain_id is None:
            self._chain_id = int(await self.request("eth_chainId"), 16)
        return self._chain_id

    async def block_number(self) -> int:
        """The head block number."""
        return int(await self.request("eth_blockNumber"), 16)

    async def nonce(self, address: str, tag: str = "pending") -> int:
        """The account's transaction count at ``tag`` (``pending`` counts the node's pool)."""
        return int(await self.request("eth_getTransactionCount", [address, tag]), 16)

    async def send_raw(self, tx: bytes) -> str:
        """Send signed transaction bytes; the 0x-hash the node reports."""
        return str(await self.request("eth_sendRawTransaction", ["0x" + bytes(tx).hex()]))

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt of a mined transaction, None if the node knows no such mined one."""
        result = await self.request("eth_getTransactionReceipt", [tx_hash])
        return result or None

    async def get_block(self, number: int | str, full: bool = False) -> dict[str, Any] | None:
        """A block by number (or tag), None if there is none."""
        block: dict[str, Any] | None = await self.request(
            "eth_getBlockByNumber", [_tag(number), full]
        )
        return block

    async def get_logs(
        self,
        from_block: int,
        to_block: int | str,
        addresses: Sequence[str] = (),
        topics: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Logs of ``addresses`` (all if empty) in a block range."""
        criteria: dict[str, Any] = {"fromBlock": _tag(from_block), "toBlock": _tag(to_block)}
        if addresses:
            criteria["address"] = list(addresses)
        if topics is not None:
            criteria["topics"] = list(topics)
        return list(await self.request("eth_getLogs", [criteria]))

    async def eth_call(
        self, to: str, data: bytes, *, sender: str | None = None, block: int | str = "latest"
    ) -> bytes:
        """Raw ``eth_call``; the return data."""
        call: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            call["from"] = sender
        result = await self.request("eth_call", [call, _tag(block)])
        return bytes.fromhex(str(result)[2:])

    async def call(
        self, contract: str, fn: str, *args: Any, block: int | str = "latest"
    ) -> tuple[Any, ...]:
        """Call a system contract's view function; its decoded outputs."""
        data = await self.eth_call(
            abi.address(contract), abi.call_data(contract, fn, *args), block=block
        )
        return abi.decode_output(contract, fn, data)




def setup(app: web.Application) -> None:
    """Create ``app[NODE]`` from ``config.node_urls`` (if any) and close it at cleanup.

    Listed in :data:`gateway.app.MODULES` before every module that talks to the node; the
    submitter and the indexer also call it (it is idempotent), so each can be set up alone.
    """
    config = app[CONFIG]
    if NODE in app or not config.node_urls:
        return
    app[NODE] = NodeClient(config.node_urls)

    async def node_ctx(app: web.Application) -> Any:
        yield
        await app[NODE].close()

    app.cleanup_ctx.append(node_ctx)
