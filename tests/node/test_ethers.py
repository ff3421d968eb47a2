"""ethers.js v6 (from npm, pinned in tests/node/js/package.json) against a real node process.

The contract is compiled here with vyper; the ``node`` script deploys it, transacts, calls and
reads logs with ``queryFilter``, and prints what it saw as JSON, which this test checks (and
cross-checks through plain JSON-RPC).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from devnet.counter import compiled_counter
from devnet.jsonrpc import rpc_answer
from node.genesis import dev_key
from tests.support.nodes import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.js]

JS_DIR = Path(__file__).resolve().parent / "js"



@pytest.fixture(scope="module")
def js_ready() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        # CI installs them (.ci/run); only a developer machine without them may skip.
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing on CI; .ci/run should have installed them")
        pytest.skip("node and npm are needed for the ethers.js test")
    if not (JS_DIR / "node_modules" / "ethers").exists():
        # `npm ci` installs exactly what package-lock.json pins
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return JS_DIR


def test_ethers_v6_round_trip(js_ready: Path, tmp_path: Path, genesis_path: Path) -> None:
    version = json.loads((js_ready / "node_modules" / "ethers" / "package.json").read_text())["version"]
    assert version.startswith("6."), version
    compiled = compiled_counter()
    key = dev_key("org:3")
    sender = to_checksum_address(key.public_key.to_canonical_address())
    node = NodeProcess(tmp_path / "node", genesis_path).start()
    try:
        chain_id = int(rpc_answer(node.url, "eth_chainId")["result"], 16)
        config = tmp_path / "ethers-config.json"
        config.write_text(json.dumps({
            "rpcUrl": node.url,
            "privateKey": key.to_hex(),
            "abi": compiled["abi"],
            "bytecode": compiled["bytecode"],
            "chainId": chain_id,
        }))
        done = subprocess.run(
            ["node", str(js_ready / "roundtrip.mjs"), str(config)],
            cwd=js_ready, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, f"ethers script failed:\n{done.stdout}\n{done.stderr}\n{node.log_tail()}"
        out = json.loads(done.stdout.strip().splitlines()[-1])

        assert out["chainId"] == str(chain_id)
        assert out["sender"] == sender
        assert out["deployStatus"] == 1
        assert out["deployContractAddress"] == out["address"]
        assert out["codeLength"] > 0
        assert [b["status"] for b in out["bumps"]] == [1, 1]
        assert all(b["type"] == 2 and b["gasPrice"] == "0" for b in out["bumps"])
        assert all(int(b["gasUsed"]) <= int(out["estimate"]) for b in out["bumps"])
        assert out["counter"] == "11" and out["last"] == "11" and out["small"] == "6"
        # the reverting view call surfaces as ethers' CALL_EXCEPTION with the Vyper reason
        assert out["revert"] is not None
        assert out["revert"]["code"] == "CALL_EXCEPTION"
        assert out["revert"]["reason"] == "too big"
        # logs through queryFilter (indexed sender topic), in order, matching the receipts
        assert [(e["by"], e["total"]) for e in out["events"]] == [("5", "5"), ("6", "11")]
        assert all(e["who"] == sender for e in out["events"])
        assert [e["transactionHash"] for e in out["events"]] == [b["hash"] for b in out["bumps"]]
        assert [e["blockNumber"] for e in out["events"]] == [b["blockNumber"] for b in out["bumps"]]
        assert out["otherEvents"] == 0
        assert out["block"]["number"] == out["bumps"][1]["blockNumber"]
        assert out["bumps"][1]["hash"] in out["block"]["transactions"]
        assert out["block"]["baseFeePerGas"] == "0"

        # cross-check what ethers saw with the node itself
        receipt = rpc_answer(node.url, "eth_getTransactionReceipt", [out["bumps"][1]["hash"]])["result"]
        assert receipt["blockHash"] == out["bumps"][1]["blockHash"]
        assert receipt["from"] == sender
        counter = rpc_answer(node.url, "eth_getStorageAt", [out["address"], "0x0", "latest"])["result"]
        assert int(counter, 16) == 11
    finally:
        node.stop()
