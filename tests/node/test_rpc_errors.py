"""Bad input over JSON-RPC (HTTP, and a little WebSocket) against a real node process.

Every bad request must get a clear JSON-RPC error object with the right code — and the node
must keep serving: after each one a valid request still succeeds. One node serves the module.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import rlp
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from devnet.counter import compiled_counter
from devnet.jsonrpc import rpc_answer
from node.genesis import dev_key
from tests.support.nodes import NodeProcess

pytestmark = pytest.mark.integration

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TX_REJECTED = -32003
NOT_PERMITTED = -32007
LIMIT_EXCEEDED = -32005
EXECUTION_REVERTED = 3

#: bump(1) calldata for the shared counter contract (devnet/counter.py).
BUMP_ONE = "0x" + (function_signature_to_4byte_selector("bump(uint256)") + (1).to_bytes(32, "big")).hex()


class Env:
    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.url = node.url
        self.chain_id = int(rpc_answer(node.url, "eth_chainId")["result"], 16)
        self.gas_limit = int(rpc_answer(node.url, "eth_getBlockByNumber", ["latest", False])["result"]["gasLimit"], 16)
        self.member = Account.from_key(dev_key("org:4").to_bytes())
        self.contract = ""

    def post(self, body: bytes | str, timeout: float = 30) -> tuple[int, Any]:
        """POST a raw body; (HTTP status, parsed JSON or None for an empty answer)."""
        data = body.encode() if isinstance(body, str) else body
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=timeout)
        try:
            conn.request("POST", "/", body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            return response.status, (json.loads(text) if text else None)
        finally:
            conn.close()

    def call(self, method: str, params: Any, request_id: Any = 1) -> dict[str, Any]:
        status, answer = self.post(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        assert status == 200
        return answer

    def error(self, method: str, params: Any) -> dict[str, Any]:
        answer = self.call(method, params)
        assert "error" in answer and "result" not in answer, answer
        assert answer["id"] == 1
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
        return answer["error"]

    def alive(self) -> None:
        """The node still serves: a valid request answers correctly."""
        answer = self.call("eth_chainId", [], request_id="alive")
        assert answer == {"jsonrpc": "2.0", "id": "alive", "result": hex(self.chain_id)}

    def tx(self, **overrides: Any) -> dict[str, Any]:
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": int(rpc_answer(self.url, "eth_getTransactionCount", [self.member.address, "pending"])["result"], 16),
            "to": to_checksum_address(self.contract) if self.contract else None,
            "value": 0,
            "gas": 100_000,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
            "data": BUMP_ONE,
        }
        tx.update(overrides)
        return tx

    def raw(self, tx: dict[str, Any], account: Any = None) -> str:
        signed = (account or self.member).sign_transaction(tx)
        return "0x" + bytes(signed.raw_transaction).hex()

    def wait_receipt(self, tx_hash: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = rpc_answer(self.url, "eth_getTransactionReceipt", [tx_hash])["result"]
            if receipt:
                return receipt
            time.sleep(0.1)
        raise TimeoutError(f"no receipt for {tx_hash}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, genesis_path: Path) -> Iterator[Env]:
    node = NodeProcess(tmp_path_factory.mktemp("rpcerr") / "node", genesis_path).start()
    try:
        e = Env(node)
        bytecode = compiled_counter()["bytecode"]
        deploy = e.tx(to=None, data=bytecode, gas=1_000_000)
        del deploy["to"]
        tx_hash = rpc_answer(e.url, "eth_sendRawTransaction", [e.raw(deploy)])["result"]
        receipt = e.wait_receipt(tx_hash)
        assert receipt["status"] == "0x1"
        e.contract = receipt["contractAddress"]
        yield e
    finally:
        node.stop()


# -- the envelope ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    ['{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"', "not json", "\xff\xfe", '{"a": }', ""],
)
def test_malformed_json_is_a_parse_error(env: Env, body: str) -> None:
    status, answer = env.post(body.encode("latin-1"))
    assert status == 200
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None
    assert answer["error"]["code"] == PARSE_ERROR
    env.alive()


@pytest.mark.parametrize(
    "payload",
    [
        42,
        "eth_chainId",
        None,
        {"jsonrpc": "1.0", "id": 1, "method": "eth_chainId", "params": []},
        {"id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": 7, "params": []},
        {"jsonrpc": "2.0", "id": {"nested": True}, "method": "eth_chainId", "params": []},
    ],
)
def test_invalid_request_objects(env: Env, payload: Any) -> None:
    status, answer = env.post(json.dumps(payload))
    assert status == 200
    assert answer["error"]["code"] == INVALID_REQUEST, answer
    env.alive()


def test_empty_batch(env: Env) -> None:
    status, answer = env.post("[]")
    assert status == 200
    assert isinstance(answer, dict)  # a single error object, not an empty array
    assert answer["id"] is None and answer["error"]["code"] == INVALID_REQUEST
    env.alive()


def test_oversized_batch_is_refused(env: Env) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(2_001)]
    status, answer = env.post(json.dumps(batch))
    assert status == 200
    assert answer["error"]["code"] == LIMIT_EXCEEDED
    env.alive()


@pytest.mark.parametrize("method", ["eth_noSuchMethod", "", "debug_traceTransaction", "admin_addPeer"])
def test_unknown_methods(env: Env, method: str) -> None:
    err = env.error(method, [])
    assert err["code"] == METHOD_NOT_FOUND
    env.alive()


def test_subscribe_needs_a_websocket(env: Env) -> None:
    assert env.error("eth_subscribe", ["newHeads"])["code"] == METHOD_NOT_FOUND
    env.alive()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("eth_getBalance", []),  # too few
        ("eth_getBalance", ["0x" + "11" * 20, "latest", "extra"]),  # too many
        ("eth_getBalance", ["0x1234", "latest"]),  # short address
        ("eth_getBalance", ["0x" + "zz" * 20, "latest"]),  # not hex
        ("eth_getBalance", ["11" * 20, "latest"]),  # no 0x prefix
        ("eth_getBalance", [12345, "latest"]),  # wrong type
        ("eth_getBlockByNumber", ["0xZZ", False]),  # bad quantity
        ("eth_getBlockByNumber", ["0x", False]),  # empty quantity
        ("eth_getBlockByNumber", [-1, False]),  # negative
        ("eth_getBlockByNumber", ["lastest", False]),  # misspelt tag
        ("eth_getTransactionByHash", ["0x1234"]),  # short hash
        ("eth_getTransactionReceipt", [None]),
        ("eth_call", ["not an object", "latest"]),
        ("eth_call", [{"to": "0x" + "11" * 20, "bogus": 1}, "latest"]),  # unknown field
        ("eth_call", [{"to": "0x" + "11" * 20, "data": "0xabc"}, "latest"]),  # odd hex
        ("eth_getLogs", [{"topics": ["0x12"]}]),
        ("eth_getLogs", ["latest"]),
        ("eth_getStorageAt", ["0x" + "11" * 20, "slot", "latest"]),
        ("eth_chainId", {"not": "an array"}),
        ("eth_sendRawTransaction", ["0x"]),
        ("eth_sendRawTransaction", ["0x123"]),
        ("eth_sendRawTransaction", [42]),
        ("eth_getFilterChanges", ["0xdeadbeef"]),  # unknown filter
    ],
)
def test_wrong_params(env: Env, method: str, params: Any) -> None:
    err = env.error(method, params)
    assert err["code"] == INVALID_PARAMS, err
    env.alive()


# -- raw transactions ----------------------------------------------------------------------------
def test_garbage_raw_transactions(env: Env) -> None:
    good = env.raw(env.tx())
    for raw in ["0xdeadbeef", "0x00", "0x02", "0x04" + "00" * 40, "0x" + "ff" * 64, good[:-20], good[: len(good) // 2]]:
        err = env.error("eth_sendRawTransaction", [raw])
        assert err["code"] == INVALID_PARAMS, (raw[:20], err)
        assert "invalid" in err["message"]
        env.alive()


def test_oversized_raw_transaction(env: Env) -> None:
    data = "0x" + os.urandom(130 * 1024).hex()
    raw = env.raw(env.tx(data=data, gas=5_000_000))
    assert len(raw) // 2 > 128 * 1024
    err = env.error("eth_sendRawTransaction", [raw])
    assert err["code"] == TX_REJECTED
    assert "limit" in err["message"] and str(128 * 1024) in err["message"]
    env.alive()


def test_oversized_http_body(env: Env) -> None:
    filler = "0x" + "00" * (8 * 1024 * 1024 + 16)  # 16 MiB of hex characters, plus the envelope
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "web3_sha3", "params": [filler]}).encode()
    assert len(body) > 16 * 1024 * 1024
    try:
        status, answer = env.post(body)
    except (BrokenPipeError, ConnectionResetError):
        # the server may cut the upload short instead of answering; then it must still live
        print("oversized body: connection closed by the node")
    else:
        print(f"oversized body: HTTP {status} {answer}")
        assert status == 413 or (answer is not None and "error" in answer), (status, answer)
        if answer is not None and status == 413:
            assert answer["error"]["code"] == LIMIT_EXCEEDED
    env.alive()


def test_wrong_chain_id(env: Env) -> None:
    err = env.error("eth_sendRawTransaction", [env.raw(env.tx(chainId=env.chain_id + 1))])
    assert err["code"] == TX_REJECTED and "chain id" in err["message"]
    env.alive()


def test_unprotected_legacy_transaction(env: Env) -> None:
    tx = env.tx()
    legacy = {k: tx[k] for k in ("nonce", "to", "value", "gas", "data")} | {"gasPrice": 0}
    raw = env.raw(legacy)  # no chainId: pre-EIP-155 signature (v = 27/28)
    fields = rlp.decode(bytes.fromhex(raw[2:]))
    assert len(fields) == 9 and int.from_bytes(fields[6], "big") in (27, 28)  # v without chain id
    err = env.error("eth_sendRawTransaction", [raw])
    assert err["code"] == TX_REJECTED and "EIP-155" in err["message"]
    env.alive()


def test_non_member_sender(env: Env) -> None:
    stranger = Account.create()
    tx = env.tx(nonce=0)
    err = env.error("eth_sendRawTransaction", [env.raw(tx, stranger)])
    assert err["code"] == NOT_PERMITTED
    assert stranger.address[2:].lower() in err["message"].lower()
    # a legacy EIP-155 transaction from a stranger is refused the same way
    legacy = {k: tx[k] for k in ("nonce", "to", "value", "gas", "data", "chainId")} | {"gasPrice": 0}
    assert env.error("eth_sendRawTransaction", [env.raw(legacy, stranger)])["code"] == NOT_PERMITTED
    env.alive()


def test_nonce_too_low(env: Env) -> None:
    tx = env.tx()
    first = rpc_answer(env.url, "eth_sendRawTransaction", [env.raw(tx)])
    assert "result" in first, first
    assert env.wait_receipt(first["result"])["status"] == "0x1"
    err = env.error("eth_sendRawTransaction", [env.raw(tx | {"value": 1})])
    assert err["code"] == TX_REJECTED and "nonce too low" in err["message"]
    env.alive()


def test_gas_above_block_gas_limit(env: Env) -> None:
    err = env.error("eth_sendRawTransaction", [env.raw(env.tx(gas=env.gas_limit + 1))])
    assert err["code"] == TX_REJECTED and "gas limit" in err["message"]
    # the same bound for eth_call and eth_estimateGas
    call = {"to": env.contract, "data": "0x61bc221a", "gas": hex(env.gas_limit + 1)}
    assert env.error("eth_call", [call, "latest"])["code"] == INVALID_PARAMS
    env.alive()


def test_intrinsic_gas_too_low(env: Env) -> None:
    err = env.error("eth_sendRawTransaction", [env.raw(env.tx(gas=20_000))])
    assert err["code"] == TX_REJECTED and "intrinsic gas" in err["message"]
    env.alive()


def test_reverting_call_carries_reason_and_data(env: Env) -> None:
    from eth_abi import decode, encode


    selector = function_signature_to_4byte_selector("small(uint256)")
    ok = env.call("eth_call", [{"to": env.contract, "data": "0x" + (selector + encode(["uint256"], [4])).hex()}, "latest"])
    assert int(ok["result"], 16) == 8
    call = {"to": env.contract, "data": "0x" + (selector + encode(["uint256"], [42])).hex()}
    for method in ("eth_call", "eth_estimateGas"):
        err = env.error(method, [call, "latest"])
        assert err["code"] == EXECUTION_REVERTED, err
        assert err["message"] == "execution reverted: too big"
        data = bytes.fromhex(err["data"][2:])
        assert data[:4] == bytes.fromhex("08c379a0")  # Error(string)
        assert decode(["string"], data[4:]) == ("too big",)
        env.alive()
    # a call to an unknown selector reverts without data
    err = env.error("eth_call", [{"to": env.contract, "data": "0x12345678"}, "latest"])
    assert err["code"] == EXECUTION_REVERTED and err["data"] == "0x"
    env.alive()


def test_call_that_cannot_start_is_an_error_and_leaves_no_trace(env: Env) -> None:
    counter = {"to": env.contract, "data": "0x61bc221a"}
    before = env.call("eth_call", [counter, "latest"])["result"]
    # value from an account with no balance: py-evm refuses the call before executing it
    poor = {"from": env.member.address, "to": env.contract, "value": "0x1", "data": "0x68110b2f"}
    err = env.error("eth_call", [poor, "latest"])
    assert err["code"] == -32000 and "balance" in err["message"].lower(), err
    # a state-changing call runs, and its write is gone afterwards
    bump = {"from": env.member.address, "to": env.contract, "data": BUMP_ONE}
    assert env.call("eth_call", [bump, "latest"])["result"] == "0x"
    assert env.call("eth_call", [counter, "latest"])["result"] == before
    env.alive()


def test_unknown_block_is_an_error_or_null(env: Env) -> None:
    assert env.call("eth_getBlockByNumber", ["0xffffff", False])["result"] is None
    err = env.error("eth_getBalance", ["0x" + "11" * 20, "0xffffff"])
    assert err["code"] in (-32000, -32001)
    env.alive()


# -- batches and notifications -------------------------------------------------------------------
def test_mixed_batch_answers_each_in_order(env: Env) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_noSuchMethod", "params": []},
        42,
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # notification: no answer
        {"jsonrpc": "2.0", "id": "four", "method": "eth_getBalance", "params": ["0x12"]},
        {"jsonrpc": "2.0", "id": 5, "method": "eth_sendRawTransaction", "params": ["0xdeadbeef"]},
        {"jsonrpc": "2.0", "id": 6, "method": "eth_getTransactionCount", "params": [env.member.address, "latest"]},
    ]
    status, answers = env.post(json.dumps(batch))
    assert status == 200
    assert isinstance(answers, list) and len(answers) == 6
    assert [a["id"] for a in answers] == [1, 2, None, "four", 5, 6]
    assert answers[0]["result"] == hex(env.chain_id)
    assert answers[1]["error"]["code"] == METHOD_NOT_FOUND
    assert answers[2]["error"]["code"] == INVALID_REQUEST
    assert answers[3]["error"]["code"] == INVALID_PARAMS
    assert answers[4]["error"]["code"] == INVALID_PARAMS
    assert int(answers[5]["result"], 16) >= 1
    env.alive()


def test_notifications_get_no_answer(env: Env) -> None:
    for payload in (
        {"jsonrpc": "2.0", "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "method": "eth_noSuchMethod", "params": []},
        {"jsonrpc": "2.0", "method": "eth_getBalance", "params": ["bad"]},
    ):
        status, answer = env.post(json.dumps(payload))
        assert answer is None, answer
        assert status in (200, 204)
    status, answer = env.post(json.dumps([{"jsonrpc": "2.0", "method": "eth_chainId", "params": []}] * 3))
    assert answer is None and status in (200, 204)
    env.alive()


def test_valid_transaction_still_mined_after_all_that(env: Env) -> None:
    before = int(rpc_answer(env.url, "eth_call", [{"to": env.contract, "data": "0x61bc221a"}, "latest"])["result"], 16)
    tx_hash = rpc_answer(env.url, "eth_sendRawTransaction", [env.raw(env.tx())])["result"]
    assert env.wait_receipt(tx_hash)["status"] == "0x1"
    after = int(rpc_answer(env.url, "eth_call", [{"to": env.contract, "data": "0x61bc221a"}, "latest"])["result"], 16)
    assert after == before + 1


# -- WebSocket -----------------------------------------------------------------------------------
async def test_websocket_bad_input(env: Env) -> None:
    async def ask(ws: aiohttp.ClientWebSocketResponse, text: str) -> Any:
        await ws.send_str(text)
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async with aiohttp.ClientSession() as session, session.ws_connect(env.node.ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        assert (await ask(ws, "{oops"))["error"]["code"] == PARSE_ERROR
        assert (await ask(ws, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope", "params": []})))["error"]["code"] == METHOD_NOT_FOUND
        assert (await ask(ws, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["newPendingFoo"]})))["error"]["code"] == INVALID_PARAMS
        assert (await ask(ws, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "eth_subscribe", "params": ["logs", "x"]})))["error"]["code"] == INVALID_PARAMS
        assert (await ask(ws, json.dumps({"jsonrpc": "1.0", "id": 4, "method": "eth_chainId"})))["error"]["code"] == INVALID_REQUEST
        batch = await ask(ws, json.dumps([{"jsonrpc": "2.0", "id": 5, "method": "eth_chainId", "params": []}, {"jsonrpc": "2.0", "id": 6, "method": "x", "params": []}]))
        assert [a["id"] for a in batch] == [5, 6] and batch[0]["result"] == hex(env.chain_id)
        # binary frames carry JSON too (web3.py sends them)
        await ws.send_bytes(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}).encode())
        message = await ws.receive(timeout=10)
        assert json.loads(message.data) == {"jsonrpc": "2.0", "id": 7, "result": hex(env.chain_id)}
        # the same socket still serves
        assert (await ask(ws, json.dumps({"jsonrpc": "2.0", "id": 8, "method": "eth_chainId", "params": []})))["result"] == hex(env.chain_id)
    env.alive()
