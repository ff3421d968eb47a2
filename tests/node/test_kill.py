"""Kill test: SIGKILL a node under heavy writing 20 times; it always restarts at a consistent head.

A background thread keeps the node busy: several member accounts send pre-signed contract calls
(storage writes and logs) in batched ``eth_sendRawTransaction`` requests, resuming from the
chain's nonces after every restart (the pool does not survive a kill). The main thread kills
the node at seeded random instants, restarts it, and checks the head: it answers, its block and
state are readable, it is not below any head seen before the kill, and blocks seen before keep
their hashes. At the end ``portledger replay`` re-executes the whole chain and checks every root.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import vyper
from eth.vm.forks.prague import PragueVM
from eth_utils import keccak

from devnet.jsonrpc import RpcClient, RpcError, rpc_answer
from node.genesis import dev_key
from tests.support.nodes import NodeProcess

pytestmark = pytest.mark.integration

SEED = 20_260_101
KILLS = 20
SENDERS = [f"org:{i}" for i in range(1, 7)]
PRESIGNED_PER_SENDER = 3_000
BATCH_PER_SENDER = 25
#: Upper bound on the rate of new transactions (resends after a restart not counted): the
#: pre-signed supply then lasts through all the kills, and the final replay (every transaction
#: re-executed) stays within the test's time budget.
MAX_TX_PER_SECOND = 230

SOURCE = """
# pragma version 0.4.3
event Wrote:
    who: indexed(address)
    n: uint256

writes: public(uint256)
last: public(HashMap[address, uint256])

@external
def write(n: uint256):
    self.writes += 1
    self.last[msg.sender] = n
    log Wrote(who=msg.sender, n=n)
"""
WRITE_SELECTOR = keccak(b"write(uint256)")[:4]


class Writer(threading.Thread):
    """Sends pre-signed transactions in batches, resyncing nonces whenever the node comes back."""

    def __init__(self, port: int, raw: dict[str, list[bytes]], addresses: dict[str, str]) -> None:
        super().__init__(daemon=True, name="kill-test-writer")
        self.port = port
        self.raw = raw
        self.addresses = addresses
        self.stop = threading.Event()
        self.accepted = 0
        self.refused = 0
        self.connection_errors = 0
        self.exhausted = False
        #: Highest nonce sent so far per sender + 1: new transactions, for pacing.
        self.sent_up_to = dict.fromkeys(raw, 0)
        self._nonces: dict[str, int] | None = None

    def _sync_nonces(self, client: RpcClient) -> dict[str, int]:
        answers = client.batch(
            [("eth_getTransactionCount", [self.addresses[label], "pending"]) for label in SENDERS]
        )
        return {label: int(a, 16) for label, a in zip(SENDERS, answers, strict=True)}

    def run(self) -> None:
        client = RpcClient("127.0.0.1", self.port, timeout=10)  # reconnects after a failure
        started = time.monotonic()
        while not self.stop.is_set():
            try:
                if self._nonces is None:
                    self._nonces = self._sync_nonces(client)
                batch: list[tuple[str, list[Any]]] = []
                for label in SENDERS:
                    first = self._nonces[label]
                    for nonce in range(first, min(first + BATCH_PER_SENDER, PRESIGNED_PER_SENDER)):
                        batch.append(("eth_sendRawTransaction", ["0x" + self.raw[label][nonce].hex()]))
                    self._nonces[label] = min(first + BATCH_PER_SENDER, PRESIGNED_PER_SENDER)
                    self.sent_up_to[label] = max(self.sent_up_to[label], self._nonces[label])
                if not batch:
                    self.exhausted = True
                    self.stop.wait(0.2)
                    continue
                answers = client.batch(batch)
                errors = [a for a in answers if isinstance(a, RpcError)]
                self.accepted += len(answers) - len(errors)
                self.refused += len(errors)
                if errors:  # e.g. "nonce too low" after a restart: start again from the chain
                    self._nonces = None
                # pace the writer (bounded rate), never busy-spin
                expected = sum(self.sent_up_to.values()) / MAX_TX_PER_SECOND
                elapsed = time.monotonic() - started
                if expected > elapsed:
                    self.stop.wait(min(expected - elapsed, 1.0))
            except (OSError, RpcError, ValueError, KeyError, TypeError):
                # the node is down (killed) or mid-restart: reconnect and resync nonces
                self.connection_errors += 1
                client.close()
                self._nonces = None
                self.stop.wait(0.05)
        client.close()


def _sign_all(chain_id: int, contract: bytes) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    builder = PragueVM.get_transaction_builder()
    raw: dict[str, list[bytes]] = {}
    addresses: dict[str, str] = {}
    for label in SENDERS:
        key = dev_key(label)
        addresses[label] = key.public_key.to_checksum_address()
        raw[label] = [
            builder.new_unsigned_dynamic_fee_transaction(
                chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=0, max_fee_per_gas=0,
                gas=120_000, to=contract, value=0,
                data=WRITE_SELECTOR + nonce.to_bytes(32, "big"), access_list=[],
            ).as_signed_transaction(key).encode()
            for nonce in range(PRESIGNED_PER_SENDER)
        ]
    return raw, addresses


def _deploy(url: str, chain_id: int) -> bytes:
    key = dev_key("org:0")
    bytecode = bytes.fromhex(vyper.compile_code(SOURCE, output_formats=["bytecode"])["bytecode"][2:])
    nonce = int(rpc_answer(url, "eth_getTransactionCount", [key.public_key.to_checksum_address(), "pending"])["result"], 16)
    tx = PragueVM.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
        chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=0, max_fee_per_gas=0,
        gas=1_000_000, to=b"", value=0, data=bytecode, access_list=[],
    ).as_signed_transaction(key)
    tx_hash = rpc_answer(url, "eth_sendRawTransaction", ["0x" + tx.encode().hex()])["result"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        receipt = rpc_answer(url, "eth_getTransactionReceipt", [tx_hash])["result"]
        if receipt:
            assert receipt["status"] == "0x1"
            return bytes.fromhex(receipt["contractAddress"][2:])
        time.sleep(0.1)
    raise TimeoutError("deployment not mined")


def _head(url: str) -> int:
    return int(rpc_answer(url, "eth_blockNumber", timeout=5)["result"], 16)


def test_sigkill_under_load_restarts_consistent_and_replays(tmp_path: Path, genesis_path: Path) -> None:
    started = time.monotonic()
    rnd = random.Random(SEED)
    node = NodeProcess(tmp_path / "node", genesis_path).start()
    writer: Writer | None = None
    try:
        url = node.url
        chain_id = int(rpc_answer(url, "eth_chainId")["result"], 16)
        contract = _deploy(url, chain_id)
        contract_hex = "0x" + contract.hex()
        raw, addresses = _sign_all(chain_id, contract)

        writer = Writer(node.port, raw, addresses)
        writer.start()
        max_seen = _head(url)
        seen_hashes: dict[int, str] = {}
        restart_heads: list[int] = []
        blocks_with_txs = 0

        for kill in range(KILLS):
            delay = rnd.uniform(0.3, 2.5)
            deadline = time.monotonic() + delay
            # watch the head while the node works: every head seen must survive the kill
            while time.monotonic() < deadline:
                try:
                    block = rpc_answer(url, "eth_getBlockByNumber", ["latest", False], timeout=2)["result"]
                    number = int(block["number"], 16)
                    max_seen = max(max_seen, number)
                    seen_hashes[number] = block["hash"]
                except OSError:
                    pass
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            node.kill()
            assert node.proc is not None and node.proc.returncode == -9
            node.start(timeout=60)

            head = _head(url)
            assert head >= max_seen, f"kill {kill}: head #{head} is below #{max_seen} seen before the kill"
            if restart_heads:
                assert head >= restart_heads[-1]
            restart_heads.append(head)
            latest = rpc_answer(url, "eth_getBlockByNumber", ["latest", False])["result"]
            assert int(latest["number"], 16) >= head
            same = rpc_answer(url, "eth_getBlockByNumber", [hex(head), True])["result"]
            assert same["number"] == hex(head) and same["hash"].startswith("0x") and len(same["hash"]) == 66
            blocks_with_txs += bool(same["transactions"])
            parent = rpc_answer(url, "eth_getBlockByHash", [same["parentHash"], False])["result"]
            assert parent is not None and int(parent["number"], 16) == head - 1
            # state at the head is present: code, balance, storage, and a call executes
            assert len(rpc_answer(url, "eth_getCode", [contract_hex, "latest"])["result"]) > 2
            assert rpc_answer(url, "eth_getBalance", [addresses[SENDERS[0]], "latest"])["result"].startswith("0x")
            # both reads at one block: the writer keeps the node producing between requests
            writes = int(rpc_answer(url, "eth_getStorageAt", [contract_hex, "0x0", hex(head)])["result"], 16)
            called = rpc_answer(url, "eth_call", [{"to": contract_hex, "data": "0x" + keccak(b"writes()")[:4].hex()}, hex(head)])
            assert int(called["result"], 16) == writes
            # no block seen before a kill changed its hash (no reorg, no lost block)
            for number in rnd.sample(sorted(seen_hashes), min(5, len(seen_hashes))):
                got = rpc_answer(url, "eth_getBlockByNumber", [hex(number), False])["result"]
                assert got is not None and got["hash"] == seen_hashes[number], f"block #{number} changed"

        writer.stop.set()
        writer.join(timeout=15)
        assert not writer.is_alive()
        final_head = _head(url)
        writes = int(rpc_answer(url, "eth_getStorageAt", [contract_hex, "0x0", "latest"])["result"], 16)
        node.stop()
        assert node.proc is not None and node.proc.returncode is not None

        # the load was real: many transactions were accepted and mined across the kills
        assert writer.accepted > 2_000, vars(writer)
        assert writes > 1_000, writes
        assert final_head >= restart_heads[-1] > 0
        # ... and lasted: the head moved between most pairs of kills
        assert len(set(restart_heads)) >= KILLS * 3 // 4, restart_heads

        replay = subprocess.run(
            [sys.executable, "-m", "portledger", "replay", "--datadir", str(node.datadir)],
            capture_output=True, text=True, timeout=150,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "every root verified" in replay.stdout, replay.stdout
        replayed = re.search(r"blocks (\d+),", replay.stdout)
        # the node may seal one more block while it shuts down after the last head we read
        assert replayed is not None and int(replayed.group(1)) >= final_head, replay.stdout
        elapsed = time.monotonic() - started
        print(
            f"\nkill test: {KILLS} kills, heads after restarts {restart_heads}, final #{final_head}, "
            f"{writer.accepted} txs accepted ({writer.refused} refused, {writer.connection_errors} "
            f"connection errors), {writes} writes mined, {blocks_with_txs} restart heads with txs, "
            f"{elapsed:.0f} s\n{replay.stdout}"
        )
    finally:
        if writer is not None:
            writer.stop.set()
            writer.join(timeout=15)
        node.stop()
