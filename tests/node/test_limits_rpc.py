"""The JSON-RPC server's limits over a real loopback socket (aiohttp's server in this process,
a real ledger and pool behind it): body size, batch length, concurrency (HTTP and WebSocket),
subscriptions per WebSocket, the pool's refusals, and ``GET /metrics``.

Requests are held "in flight" the honest way: a client that sends its headers and only part of
its body keeps the server reading it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from node.genesis import dev_key
from node.ledger import Ledger
from node.rpc.app import RPC_KEY, create_rpc_app
from node.rpc.limits import RpcLimits
from node.service import NodeService
from node.txpool import PoolLimits
from tests.support.chain import CARRIER, TERMINAL, cargo_tx

LIMIT_EXCEEDED = -32005
LIMITS = RpcLimits(
    max_body_bytes=64 * 1024, max_batch=10, max_concurrent=2, max_subscriptions=3, max_websockets=2
)


class Server:
    def __init__(self, server: TestServer, service: NodeService) -> None:
        self.server = server
        self.service = service
        self.url = str(server.make_url("/"))
        self.port = server.port
        assert self.port is not None

    async def post(self, session: aiohttp.ClientSession, payload: Any) -> tuple[int, Any, Any]:
        async with session.post(self.url, data=json.dumps(payload)) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None), resp.headers

    async def hold(self, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A request whose body is only half sent: the server is answering it until
        :meth:`finish`."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body[: len(body) // 2])
        await writer.drain()
        return reader, writer

    @staticmethod
    async def finish(
        held: tuple[asyncio.StreamReader, asyncio.StreamWriter], body: bytes
    ) -> tuple[int, Any]:
        reader, writer = held
        writer.write(body[len(body) // 2 :])
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, text = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(text)

    def metrics(self, text: str) -> dict[str, float]:
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


@pytest.fixture
async def node(ledger: Ledger) -> AsyncIterator[Server]:
    service = NodeService(ledger, dev_key("validator:0"), pool_limits=PoolLimits(max_size=2))
    server = TestServer(create_rpc_app(service, LIMITS), host="127.0.0.1")
    await server.start_server()
    try:
        yield Server(server, service)
    finally:
        await server.close()
        service.stop()


async def until(cond: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def request(method: str, params: list[Any] | None = None, request_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}


async def test_body_above_the_limit_is_413_with_a_json_rpc_error(node: Server) -> None:
    filler = "0x" + "00" * (40 * 1024)  # 80 KiB of hex > 64 KiB
    async with aiohttp.ClientSession() as session:
        status, answer, _ = await node.post(session, request("web3_sha3", [filler]))
        assert status == 413
        assert answer["error"]["code"] == LIMIT_EXCEEDED
        assert answer["error"]["data"] == {"limit": "body", "maxBytes": 64 * 1024}
        status, answer, _ = await node.post(session, request("web3_sha3", ["0x00"]))
        assert status == 200 and answer["result"].startswith("0x")


async def test_batch_above_the_limit_is_refused_whole(node: Server) -> None:
    async with aiohttp.ClientSession() as session:
        status, answer, _ = await node.post(
            session, [request("eth_chainId", request_id=i) for i in range(11)]
        )
        assert status == 200 and isinstance(answer, dict)
        assert answer["error"]["code"] == LIMIT_EXCEEDED
        assert answer["error"]["data"] == {"limit": "batch", "maxBatch": 10}
        status, answer, _ = await node.post(
            session, [request("eth_chainId", request_id=i) for i in range(10)]
        )
        assert [a["id"] for a in answer] == list(range(10))


async def test_concurrency_limit_refuses_with_429_and_retry_hint_and_held_requests_complete(
    node: Server,
) -> None:
    bodies = [json.dumps(request("eth_chainId", request_id=f"held{i}")).encode() for i in range(2)]
    held = [await node.hold(body) for body in bodies]
    async with aiohttp.ClientSession() as session:
        await until(lambda: _in_flight(node) == 2)
        status, answer, headers = await node.post(session, request("eth_blockNumber"))
        assert status == 429 and headers["Retry-After"] == "1"
        assert answer["error"]["code"] == LIMIT_EXCEEDED
        assert answer["error"]["data"] == {"retryAfter": 1, "limit": "concurrency"}
        # A WebSocket message is refused the same way, with its own id.
        async with session.ws_connect(node.url) as ws:
            await ws.send_str(json.dumps(request("eth_chainId", request_id="ws1")))
            refused = json.loads((await ws.receive(timeout=5)).data)
            assert refused["id"] == "ws1" and refused["error"]["code"] == LIMIT_EXCEEDED
            await ws.send_str(json.dumps([request("eth_chainId", request_id=i) for i in (7, 8)]))
            refused = json.loads((await ws.receive(timeout=5)).data)
            assert [r["id"] for r in refused] == [7, 8]
            # The held requests are answered, once each; then the server takes work again.
            answers = [await node.finish(h, b) for h, b in zip(held, bodies, strict=True)]
            chain_id = hex(node.service.ledger.chain_id)
            assert answers == [
                (200, {"jsonrpc": "2.0", "id": f"held{i}", "result": chain_id}) for i in range(2)
            ]
            await until(lambda: _in_flight(node) == 0)
            await ws.send_str(json.dumps(request("eth_chainId", request_id="ws2")))
            assert json.loads((await ws.receive(timeout=5)).data)["result"] == chain_id
        status, answer, _ = await node.post(session, request("eth_chainId"))
        assert status == 200 and answer["result"] == chain_id
        async with session.get(node.url + "metrics") as resp:
            metrics = node.metrics(await resp.text())
    assert metrics['portledger_rpc_refused_total{limit="concurrency"}'] == 3
    assert metrics['portledger_limit{limit="rpc_max_concurrent"}'] == 2
    assert metrics["portledger_rpc_in_flight"] == 0


def _in_flight(node: Server) -> int:
    return node.server.app[RPC_KEY].in_flight


async def test_subscriptions_per_websocket_are_capped(node: Server) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(node.url + "ws") as ws:
        for i in range(3):
            await ws.send_str(json.dumps(request("eth_subscribe", ["newHeads"], request_id=i)))
            assert json.loads((await ws.receive(timeout=5)).data)["result"].startswith("0x")
        await ws.send_str(json.dumps(request("eth_subscribe", ["newHeads"], request_id=3)))
        refused = json.loads((await ws.receive(timeout=5)).data)
        assert refused["id"] == 3 and refused["error"]["code"] == LIMIT_EXCEEDED
        assert refused["error"]["data"] == {"limit": "subscriptions", "maxSubscriptions": 3}
        # Another connection has its own allowance.
        async with session.ws_connect(node.url + "ws") as other:
            await other.send_str(json.dumps(request("eth_subscribe", ["newHeads"])))
            assert "result" in json.loads((await other.receive(timeout=5)).data)
        async with session.get(node.url + "metrics") as resp:
            metrics = node.metrics(await resp.text())
        assert metrics["portledger_rpc_websocket_subscriptions"] == 3
        assert metrics["portledger_rpc_websocket_sessions"] == 1
        assert metrics['portledger_rpc_refused_total{limit="subscriptions"}'] == 1


async def test_websocket_connections_are_capped(node: Server) -> None:
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(node.url)
        second = await session.ws_connect(node.url + "ws")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(node.url)
        assert refused.value.status == 429
        async with session.get(node.url, headers={"Upgrade": "websocket", "Connection": "Upgrade"}) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            error = (await resp.json())["error"]
        assert error["code"] == LIMIT_EXCEEDED
        assert error["data"] == {"retryAfter": 1, "limit": "websockets"}
        # The open ones still work; closing one makes room.
        await second.send_str(json.dumps(request("eth_chainId")))
        assert json.loads((await second.receive(timeout=5)).data)["result"]
        await first.close()
        await until(lambda: len(node.server.app[RPC_KEY].sessions) == 1)
        async with session.ws_connect(node.url) as third:
            await third.send_str(json.dumps(request("eth_chainId")))
            assert json.loads((await third.receive(timeout=5)).data)["result"]
        await second.close()


async def test_a_full_pool_answers_32005_with_retry_after_and_accepted_txs_are_final_once(
    node: Server, ledger: Ledger
) -> None:
    raws = [
        "0x" + cargo_tx(ledger, account, 0, events=1).encode().hex()
        for account in (TERMINAL, CARRIER)
    ]
    third = "0x" + cargo_tx(ledger, TERMINAL, 1, events=1).encode().hex()
    async with aiohttp.ClientSession() as session:
        accepted = []
        for raw in raws:
            _, answer, _ = await node.post(session, request("eth_sendRawTransaction", [raw]))
            accepted.append(answer["result"])
        status, answer, _ = await node.post(session, request("eth_sendRawTransaction", [third]))
        assert status == 200
        assert answer["error"]["code"] == LIMIT_EXCEEDED
        assert answer["error"]["data"] == {"retryAfter": 1, "limit": "count"}
        async with session.get(node.url + "metrics") as resp:
            metrics = node.metrics(await resp.text())
        assert metrics['portledger_txpool_refused_total{limit="count"}'] == 1
        assert metrics["portledger_txpool_transactions"] == 2
        await node.service.produce_once()  # a block drains the pool
        _, answer, _ = await node.post(session, request("eth_sendRawTransaction", [third]))
        accepted.append(answer["result"])
        await node.service.produce_once()
    included = [
        "0x" + tx.hash.hex()
        for n in range(1, ledger.head().block_number + 1)
        for tx in ledger.block_by_header(ledger.header_by_number(n)).transactions
    ]
    assert sorted(included) == sorted(accepted)
