"""web3.py 8.x, unmodified, against a real ``portledger node`` process.

The only configuration is what any QBFT chain (Besu, GoQuorum) needs: the documented
``ExtraDataToPOAMiddleware``, because QBFT ``extraData`` is longer than 32 bytes.

One node process and one deployed Vyper contract serve the whole module; each test adds its own
transactions, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_utils import keccak, to_canonical_address
from trie import HexaryTrie
from trie.exceptions import BadTrieProof
from web3 import AsyncWeb3, HTTPProvider, Web3, WebSocketProvider
from web3.exceptions import ContractLogicError
from web3.middleware import ExtraDataToPOAMiddleware

from devnet.counter import compiled_counter
from devnet.jsonrpc import rpc_answer
from node.genesis import dev_key
from tests.support.nodes import NodeProcess

pytestmark = pytest.mark.integration


EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))
EMPTY_CODE_HASH = keccak(b"")


def compile_counter() -> tuple[list[dict[str, Any]], str]:
    out = compiled_counter()
    return out["abi"], out["bytecode"]


class Env:
    """The module's node, web3 handle, sender and deployed contract."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self.account = Account.from_key(dev_key("org:1").to_bytes())
        self.address = self.account.address
        self.chain_id = self.w3.eth.chain_id
        self.abi, self.bytecode = compile_counter()
        self.contract: Any = None
        self.deploy_receipt: Any = None

    def tx_params(self) -> dict[str, Any]:
        return {
            "from": self.address,
            "nonce": self.w3.eth.get_transaction_count(self.address, "pending"),
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
            "chainId": self.chain_id,
        }

    def send(self, tx: dict[str, Any]) -> Any:
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
        assert receipt["status"] == 1, receipt
        return receipt

    def bump(self, by: int) -> Any:
        return self.send(self.contract.functions.bump(by).build_transaction(self.tx_params()))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, genesis_path: Path) -> Iterator[Env]:
    node = NodeProcess(tmp_path_factory.mktemp("web3") / "node", genesis_path).start()
    try:
        e = Env(node)
        factory = e.w3.eth.contract(abi=e.abi, bytecode=e.bytecode)
        receipt = e.send(factory.constructor().build_transaction(e.tx_params()))
        assert receipt["contractAddress"]
        e.deploy_receipt = receipt
        e.contract = e.w3.eth.contract(address=receipt["contractAddress"], abi=e.abi)
        yield e
    finally:
        node.stop()


def test_client_basics(env: Env) -> None:
    w3 = env.w3
    assert w3.is_connected()
    assert w3.eth.chain_id == 1_702_026 or w3.eth.chain_id == int(
        rpc_answer(env.node.url, "eth_chainId")["result"], 16
    )
    assert w3.net.version == str(w3.eth.chain_id)
    assert w3.eth.gas_price == 0
    assert w3.client_version.startswith("PortLedger/")


def test_deploy_transact_call_and_estimate(env: Env) -> None:
    w3, c = env.w3, env.contract
    code = w3.eth.get_code(c.address)
    assert len(code) > 0
    before = c.functions.counter().call()
    estimate = c.functions.bump(7).estimate_gas({"from": env.address})
    assert 21_000 < estimate < 200_000
    receipt = env.bump(7)
    assert receipt["gasUsed"] <= estimate
    assert receipt["effectiveGasPrice"] == 0
    assert c.functions.counter().call() == before + 7
    assert c.functions.last(env.address).call() == before + 7
    # eth_call at an explicit older block sees the older state
    assert c.functions.counter().call(block_identifier=receipt["blockNumber"] - 1) == before
    assert c.functions.small(4).call() == 8
    # the sender's nonce moved and it paid nothing
    assert w3.eth.get_transaction_count(env.address) == w3.eth.get_transaction_count(
        env.address, "pending"
    )
    assert w3.eth.get_balance(env.address) == w3.eth.get_balance(
        env.address, receipt["blockNumber"] - 1
    )


def test_logs_by_get_logs_and_by_filter(env: Env) -> None:
    w3, event = env.w3, env.contract.events.Bumped
    start = w3.eth.block_number + 1  # our transaction lands in a later block
    flt = event.create_filter(from_block=start)
    receipt = env.bump(3)
    total = env.contract.functions.counter().call()

    logs = event.get_logs(from_block=receipt["blockNumber"], to_block=receipt["blockNumber"])
    assert len(logs) == 1
    log = logs[0]
    assert log["args"]["who"] == env.address
    assert log["args"]["by"] == 3 and log["args"]["total"] == total
    assert log["transactionHash"] == receipt["transactionHash"]
    assert log["blockHash"] == receipt["blockHash"]
    assert log["address"] == env.contract.address
    # indexed-argument filtering on the node side: another sender's address matches nothing
    other = Account.from_key(dev_key("org:2").to_bytes()).address
    assert event.get_logs(from_block=start, argument_filters={"who": other}) == []
    assert len(event.get_logs(from_block=start, argument_filters={"who": env.address})) == 1
    # the same log by block hash
    by_hash = event.get_logs(block_hash=receipt["blockHash"])
    assert [entry["transactionHash"] for entry in by_hash] == [receipt["transactionHash"]]

    # filter: get_new_entries then get_all_entries
    new: list[Any] = []
    deadline = time.monotonic() + 10
    while not new and time.monotonic() < deadline:
        new = flt.get_new_entries()
        if not new:
            time.sleep(0.1)
    assert [e["transactionHash"] for e in new] == [receipt["transactionHash"]]
    assert new[0]["args"]["total"] == total
    assert flt.get_new_entries() == []  # consumed
    receipt2 = env.bump(1)
    all_entries = flt.get_all_entries()
    assert [e["transactionHash"] for e in all_entries] == [
        receipt["transactionHash"],
        receipt2["transactionHash"],
    ]
    assert w3.eth.uninstall_filter(flt.filter_id)


def test_calls_leave_no_trace(env: Env) -> None:
    """Calls share a per-block state on the node; what one call writes must not leak."""
    c = env.contract
    env.bump(1)
    counter = c.functions.counter().call()
    last = c.functions.last(env.address).call()
    nonce = env.w3.eth.get_transaction_count(env.address)
    for _ in range(3):
        c.functions.bump(1_000).call({"from": env.address})  # would write if it were a tx
        with pytest.raises(ContractLogicError, match="too big"):
            c.functions.small(99).call()
        assert c.functions.counter().call() == counter
        assert c.functions.last(env.address).call() == last
        assert c.functions.last(env.address).call({"from": env.address}) == last
    assert env.w3.eth.get_transaction_count(env.address) == nonce
    assert int.from_bytes(bytes(env.w3.eth.get_storage_at(c.address, 0)), "big") == counter


def test_blocks_receipts_and_counts(env: Env) -> None:
    w3 = env.w3
    r1 = env.bump(2)
    number = r1["blockNumber"]
    block = w3.eth.get_block(number)
    assert block["number"] == number
    assert block["hash"] == r1["blockHash"]
    assert r1["transactionHash"] in block["transactions"]
    assert block["baseFeePerGas"] == 0
    # QBFT extraData (> 32 bytes): the POA middleware hands it over as proofOfAuthorityData
    assert len(block["proofOfAuthorityData"]) > 32
    parent = w3.eth.get_block(block["parentHash"])
    assert parent["number"] == number - 1
    # With a sub-second block period (blockPeriodMilliseconds) two blocks may share a second.
    assert block["timestamp"] >= parent["timestamp"]

    full = w3.eth.get_block(number, full_transactions=True)
    assert [tx["hash"] for tx in full["transactions"]] == list(block["transactions"])
    mine = next(tx for tx in full["transactions"] if tx["hash"] == r1["transactionHash"])
    assert mine["from"] == env.address
    assert mine["to"] == env.contract.address
    assert mine["blockNumber"] == number
    assert mine["type"] == 2 and mine["maxFeePerGas"] == 0
    assert w3.eth.get_transaction(r1["transactionHash"])["input"] == mine["input"]

    assert w3.eth.get_block_transaction_count(number) == len(block["transactions"])
    assert w3.eth.get_block_transaction_count(block["hash"]) == len(block["transactions"])

    receipts = w3.eth.get_block_receipts(number)
    assert len(receipts) == len(block["transactions"])
    assert [r["transactionHash"] for r in receipts] == list(block["transactions"])
    single = next(r for r in receipts if r["transactionHash"] == r1["transactionHash"])
    assert single["gasUsed"] == r1["gasUsed"]
    assert single["logs"][0]["data"] == r1["logs"][0]["data"]
    assert single["status"] == 1
    # cumulative gas adds up to the header's gasUsed
    assert receipts[-1]["cumulativeGasUsed"] == block["gasUsed"]

    # the deployment receipt names the contract address web3 computed
    assert env.deploy_receipt["contractAddress"] == env.contract.address


def test_fee_history(env: Env) -> None:
    w3 = env.w3
    head = w3.eth.block_number
    history = w3.eth.fee_history(4, "latest", [25, 75])
    count = min(4, head + 1)
    assert history["oldestBlock"] >= head - count + 1
    n = len(history["gasUsedRatio"])
    assert 1 <= n <= 4
    assert history["baseFeePerGas"] == [0] * (n + 1)
    assert len(history["reward"]) == n and all(r == [0, 0] for r in history["reward"])
    assert all(0.0 <= ratio <= 1.0 for ratio in history["gasUsedRatio"])


@pytest.mark.parametrize("tag", ["latest", "safe", "finalized", "pending", "earliest"])
def test_block_tags(env: Env, tag: str) -> None:
    w3 = env.w3
    low = w3.eth.block_number
    block = w3.eth.get_block(tag)
    high = w3.eth.block_number
    if tag == "earliest":
        assert block["number"] == 0
        assert w3.eth.get_code(env.contract.address, tag) == b""
        assert w3.eth.get_transaction_count(env.address, tag) == 0
    else:
        assert low <= block["number"] <= high  # QBFT: immediate finality, every tag is the head
        assert len(w3.eth.get_code(env.contract.address, tag)) > 0
        assert env.contract.functions.counter().call(block_identifier=tag) >= 0
    assert w3.eth.get_balance(env.address, tag) >= 0
    assert w3.eth.get_block(block["hash"])["number"] == block["number"]


def _proof_nodes(proof: list[Any]) -> list[Any]:
    return [rlp.decode(bytes(node)) for node in proof]


def test_get_proof_verifies_against_state_root(env: Env) -> None:
    w3, c = env.w3, env.contract
    receipt = env.bump(5)
    number = receipt["blockNumber"]
    header = w3.eth.get_block(number)
    state_root = bytes(header["stateRoot"])
    counter = c.functions.counter().call(block_identifier=number)
    absent_slot = 12345
    proof = w3.eth.get_proof(c.address, [0, absent_slot], number)

    # account proof, checked by an independent trie implementation
    encoded = HexaryTrie.get_from_proof(
        state_root, keccak(to_canonical_address(c.address)), _proof_nodes(proof["accountProof"])
    )
    assert encoded, "account missing from the proven state"
    nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    assert int.from_bytes(nonce, "big") == proof["nonce"] == 1  # EIP-161: contracts start at 1
    assert int.from_bytes(balance, "big") == proof["balance"] == 0
    assert storage_root == bytes(proof["storageHash"]) != EMPTY_TRIE_ROOT
    assert (
        code_hash == bytes(proof["codeHash"]) == keccak(bytes(w3.eth.get_code(c.address, number)))
    )

    # storage proofs: slot 0 holds the counter; an unused slot proves absent (zero)
    present, absent = proof["storageProof"]
    value = HexaryTrie.get_from_proof(
        storage_root, keccak((0).to_bytes(32, "big")), _proof_nodes(present["proof"])
    )
    assert int.from_bytes(rlp.decode(value), "big") == counter
    assert int.from_bytes(bytes(present["value"]), "big") == counter
    assert int.from_bytes(bytes(w3.eth.get_storage_at(c.address, 0, number)), "big") == counter
    missing = HexaryTrie.get_from_proof(
        storage_root, keccak(absent_slot.to_bytes(32, "big")), _proof_nodes(absent["proof"])
    )
    assert missing == b"" and int.from_bytes(bytes(absent["value"]), "big") == 0

    # an externally owned account: nonce and balance match, no code, empty storage
    eoa = w3.eth.get_proof(env.address, [], number)
    encoded = HexaryTrie.get_from_proof(
        state_root, keccak(to_canonical_address(env.address)), _proof_nodes(eoa["accountProof"])
    )
    nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    assert int.from_bytes(nonce, "big") == w3.eth.get_transaction_count(env.address, number)
    assert int.from_bytes(balance, "big") == w3.eth.get_balance(env.address, number)
    assert storage_root == EMPTY_TRIE_ROOT and code_hash == EMPTY_CODE_HASH

    # the proof is bound to its root: against the parent's root it does not verify
    parent_root = bytes(w3.eth.get_block(number - 1)["stateRoot"])
    assert parent_root != state_root
    with pytest.raises(BadTrieProof):
        HexaryTrie.get_from_proof(
            parent_root,
            keccak(to_canonical_address(c.address)),
            _proof_nodes(proof["accountProof"]),
        )


async def test_websocket_new_heads_and_logs(env: Env) -> None:
    async with AsyncWeb3(WebSocketProvider(env.node.ws_url)) as aw3:
        aw3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        assert await aw3.eth.chain_id == env.chain_id
        heads_id = await aw3.eth.subscribe("newHeads")
        logs_id = await aw3.eth.subscribe("logs", {"address": env.contract.address})
        assert heads_id != logs_id

        # cause a block: sign and send through the same async client
        tx = env.contract.functions.bump(9).build_transaction(env.tx_params())
        signed = env.account.sign_transaction(tx)
        tx_hash = await aw3.eth.send_raw_transaction(signed.raw_transaction)

        heads: dict[int, bytes] = {}
        my_log: Any = None
        async with asyncio.timeout(30):
            async for message in aw3.socket.process_subscriptions():
                if message["subscription"] == heads_id:
                    head = message["result"]
                    heads[int(head["number"])] = bytes(head["hash"])
                elif message["subscription"] == logs_id:
                    entry = message["result"]
                    if bytes(entry["transactionHash"]) == bytes(tx_hash):
                        my_log = entry
                if my_log is not None and int(my_log["blockNumber"]) in heads:
                    break
        block_number = int(my_log["blockNumber"])
        assert heads[block_number] == bytes(my_log["blockHash"])
        receipt = await aw3.eth.get_transaction_receipt(tx_hash)
        assert receipt["blockNumber"] == block_number
        assert bytes(receipt["blockHash"]) == heads[block_number]
        # the log's indexed topic is the sender
        assert bytes(my_log["topics"][1])[-20:] == to_canonical_address(env.address)
        assert await aw3.eth.unsubscribe(heads_id)
        assert await aw3.eth.unsubscribe(logs_id)
