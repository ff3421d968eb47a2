#!/usr/bin/env python3
"""JSON-RPC benchmark: transaction intake and eth_call latency of a real node process.

    .venv/bin/python bench/bench_rpc.py [--txs 5000] [--batch 250] [--calls 2000]

Starts ``portledger node`` (a separate OS process) on a loopback port with a temporary data
directory initialised from the repository's genesis.json, and measures from this process:

(a) intake: ``eth_sendRawTransaction`` of pre-signed transactions (several member accounts,
    contract calls that write storage and emit a log), batched over one keep-alive HTTP
    connection; tx/s from the first send to the last answer. Then how fast they were mined.
(b) ``eth_call`` latency (a view call on the Consortium contract, ``isMemberAccount``) over
    sequential calls: idle, and while another process keeps the node producing full blocks.

Targets: intake >= 1,000 tx/s; eth_call p99 < 20 ms. Exit status 0 even when a target is
missed (the table says so); non-zero only when the bench itself fails.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth.vm.forks.prague import PragueVM
from eth_utils import keccak, to_canonical_address

from devnet.counter import compiled_counter
from devnet.jsonrpc import RpcClient, rpc_call
from devnet.ports import free_port
from node.genesis import dev_key

ROOT = Path(__file__).resolve().parent.parent


INTAKE_TARGET = 1_000.0
P99_TARGET_MS = 20.0

BUMP = keccak(b"bump(uint256)")[:4]
IS_MEMBER = keccak(b"isMemberAccount(address)")[:4]


# -- a node process --------------------------------------------------------------------------
#: Environment of the node per variant: the node's own settings, or Python's defaults (5 ms
#: GIL switch interval, default garbage-collector thresholds) for a side-by-side comparison.
VARIANTS = {
    "node": {},
    "python-defaults": {"PORTLEDGER_SWITCH_INTERVAL": "0.005", "PORTLEDGER_GC_TUNE": "0"},
}


class Node:
    def __init__(self, genesis: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.datadir = workdir / "node"
        self.port = free_port()
        self.log = workdir / "node.log"
        subprocess.run(
            [sys.executable, "-m", "portledger", "init", "--datadir", str(self.datadir),
             "--genesis", str(genesis), "--dev-key", "validator:0"],
            check=True, capture_output=True, timeout=120, cwd=ROOT,
        )
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portledger", "node", "--datadir", str(self.datadir),
                 "--rpc-port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log.read_text()[-2000:]}")
            try:
                rpc_call(f"http://127.0.0.1:{self.port}", "eth_blockNumber", [])
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("node did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


# -- transactions ----------------------------------------------------------------------------
def sign_txs(chain_id: int, to: bytes, labels: list[str], per_sender: int, first_nonce: dict[str, int]) -> list[str]:
    """Pre-signed raw transactions, interleaved across senders (nonce order per sender)."""
    builder = PragueVM.get_transaction_builder()
    per_label: list[list[str]] = []
    for label in labels:
        key = dev_key(label)
        start = first_nonce[label]
        per_label.append([
            "0x" + builder.new_unsigned_dynamic_fee_transaction(
                chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=0, max_fee_per_gas=0,
                gas=100_000, to=to, value=0, data=BUMP + (1).to_bytes(32, "big"), access_list=[],
            ).as_signed_transaction(key).encode().hex()
            for nonce in range(start, start + per_sender)
        ])
    return [raw for group in zip(*per_label, strict=True) for raw in group]


def send_batches(client: RpcClient, raws: list[str], batch: int) -> tuple[int, list[str]]:
    accepted, errors = 0, []
    for i in range(0, len(raws), batch):
        payload = [{"jsonrpc": "2.0", "id": j, "method": "eth_sendRawTransaction", "params": [raw]}
                   for j, raw in enumerate(raws[i : i + batch])]
        for answer in client.post(payload):
            if "error" in answer:
                errors.append(answer["error"]["message"])
            else:
                accepted += 1
    return accepted, errors


def wait_mined(client: RpcClient, addresses: dict[str, str], expected: dict[str, int], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        nonces = {label: int(client.call("eth_getTransactionCount", [addr, "latest"]), 16)
                  for label, addr in addresses.items()}
        if all(nonces[label] >= expected[label] for label in expected):
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"transactions not mined within {timeout}s")


def load_process(port: int, raws: list[str], batch: int, stop: Any, sent: Any) -> None:
    """Keep the node producing blocks: send batches at a steady pace until told to stop."""
    client = RpcClient("127.0.0.1", port, timeout=60)
    for i in range(0, len(raws), batch):
        if stop.is_set():
            break
        client.post([{"jsonrpc": "2.0", "id": j, "method": "eth_sendRawTransaction", "params": [raw]}
                     for j, raw in enumerate(raws[i : i + batch])])
        sent.value += len(raws[i : i + batch])
        stop.wait(0.2)


def call_latencies(client: RpcClient, to: str, who: bytes, count: int) -> list[float]:
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_call",
               "params": [{"to": to, "data": "0x" + (IS_MEMBER + who.rjust(32, b"\x00")).hex()}, "latest"]}
    out: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        answer = client.post(payload)
        out.append((time.perf_counter() - t0) * 1000)
        if int(answer["result"], 16) != 1:
            raise RuntimeError(f"unexpected eth_call answer {answer}")
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- main -------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genesis", type=Path, default=ROOT / "genesis.json")
    parser.add_argument("--txs", type=int, default=5_000, help="transactions for the intake run")
    parser.add_argument("--senders", type=int, default=10, help="member accounts org:1..N")
    parser.add_argument("--batch", type=int, default=250, help="requests per HTTP batch (100-500)")
    parser.add_argument("--calls", type=int, default=2_000, help="sequential eth_call per run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="run one variant only")
    args = parser.parse_args()
    if args.variant is None:
        return compare(sys.argv[1:])
    if not args.genesis.exists():
        print(f"{args.genesis} missing: run scripts/make_genesis.py", file=sys.stderr)
        return 2

    genesis_doc = json.loads(args.genesis.read_text())
    consortium = genesis_doc["portledger"]["contracts"]["Consortium"]["address"]
    labels = [f"org:{i}" for i in range(1, args.senders + 1)]
    addresses = {label: dev_key(label).public_key.to_checksum_address() for label in labels}
    workdir = Path(tempfile.mkdtemp(prefix="portledger-bench-"))
    node = Node(args.genesis, workdir, VARIANTS[args.variant])
    rows: list[tuple[str, str, str, str]] = []
    try:
        client = RpcClient("127.0.0.1", node.port, timeout=60)
        chain_id = int(client.call("eth_chainId", []), 16)

        # deploy the contract the transactions call (storage write + log each)

        bytecode = bytes.fromhex(compiled_counter()["bytecode"][2:])
        deployer = dev_key("org:0")
        nonce = int(client.call("eth_getTransactionCount", [deployer.public_key.to_checksum_address(), "pending"]), 16)
        deploy = PragueVM.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
            chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=0, max_fee_per_gas=0,
            gas=1_000_000, to=b"", value=0, data=bytecode, access_list=[],
        ).as_signed_transaction(deployer)
        tx_hash = client.call("eth_sendRawTransaction", ["0x" + deploy.encode().hex()])
        deadline = time.monotonic() + 30
        receipt = None
        while receipt is None and time.monotonic() < deadline:
            receipt = client.call("eth_getTransactionReceipt", [tx_hash])
            time.sleep(0.05)
        if not receipt or receipt["status"] != "0x1":
            raise RuntimeError(f"deployment failed: {receipt}")
        contract = to_canonical_address(receipt["contractAddress"])

        per_sender = args.txs // len(labels)
        nonces = {label: 0 for label in labels}
        t0 = time.perf_counter()
        intake_raws = sign_txs(chain_id, contract, labels, per_sender, nonces)
        load_nonces = {label: per_sender for label in labels}
        load_raws = sign_txs(chain_id, contract, labels, 1_500, load_nonces)
        sign_seconds = time.perf_counter() - t0

        # (a) intake
        head_before = int(client.call("eth_blockNumber", []), 16)
        t0 = time.perf_counter()
        accepted, errors = send_batches(client, intake_raws, args.batch)
        intake_seconds = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"{len(errors)} transactions refused, first: {errors[0]}")
        intake_rate = accepted / intake_seconds
        mined_seconds = wait_mined(client, addresses, {lab: per_sender for lab in labels}, timeout=300)
        head_after = int(client.call("eth_blockNumber", []), 16)
        mined_rate = accepted / (intake_seconds + mined_seconds)
        rows.append(("intake eth_sendRawTransaction", f"{intake_rate:,.0f} tx/s",
                     f">= {INTAKE_TARGET:,.0f} tx/s", "ok" if intake_rate >= INTAKE_TARGET else "MISSED"))
        rows.append(("  (detail)", f"{accepted} txs, batches of {args.batch}, {intake_seconds:.2f} s", "", ""))
        rows.append(("mined (send to last inclusion)", f"{mined_rate:,.0f} tx/s",
                     "", f"{head_after - head_before} blocks"))

        # (b) eth_call latency, idle then under load
        who = to_canonical_address(addresses[labels[0]])
        call_latencies(client, consortium, who, 50)  # warm up
        idle = call_latencies(client, consortium, who, args.calls)
        rows.append(("eth_call idle p50 / p99", f"{pct(idle, 50):.2f} / {pct(idle, 99):.2f} ms",
                     f"p99 < {P99_TARGET_MS:.0f} ms", "ok" if pct(idle, 99) < P99_TARGET_MS else "MISSED"))

        ctx = mp.get_context("fork")
        stop, sent = ctx.Event(), ctx.Value("i", 0)
        loader = ctx.Process(target=load_process, args=(node.port, load_raws, args.batch, stop, sent), daemon=True)
        head_before = int(client.call("eth_blockNumber", []), 16)
        loader.start()
        time.sleep(1.5)  # let blocks start coming
        busy = call_latencies(client, consortium, who, args.calls)
        stop.set()
        loader.join(timeout=60)
        head_after = int(client.call("eth_blockNumber", []), 16)
        rows.append(("eth_call under load p50 / p99", f"{pct(busy, 50):.2f} / {pct(busy, 99):.2f} ms",
                     f"p99 < {P99_TARGET_MS:.0f} ms", "ok" if pct(busy, 99) < P99_TARGET_MS else "MISSED"))
        rows.append(("  (detail)", f"max {max(busy):.1f} ms, mean {statistics.fmean(busy):.2f} ms",
                     "", f"{sent.value} txs sent, {head_after - head_before} blocks"))
    finally:
        node.stop()
        if not args.keep and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    load1, _, _ = os.getloadavg()
    print(f"\n[{args.variant}] PortLedger JSON-RPC bench (node in its own process; {os.cpu_count()} CPUs, load "
          f"average {load1:.1f} at the end; signing {args.txs + 1_500 * len(labels)} txs took "
          f"{sign_seconds:.1f} s, not timed)")
    print(f"{'measure'.ljust(width)}  {'result':<40} {'target':<14} status")
    print("-" * (width + 70))
    for name, result, target, status in rows:
        print(f"{name.ljust(width)}  {result:<40} {target:<14} {status}")
    print("RESULT " + json.dumps({"busy_p99": pct(busy, 99), "busy_max": max(busy), "intake": intake_rate}))
    return 0


def compare(argv: list[str]) -> int:
    """Run every variant in its own process, one after the other; print both and the ratios."""
    results = {}
    for variant in ("python-defaults", "node"):
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--variant", variant],
            capture_output=True, text=True, check=True,
        )
        print(out.stdout.rsplit("RESULT ", 1)[0].rstrip())
        results[variant] = json.loads(out.stdout.rsplit("RESULT ", 1)[1])
    base, tuned = results["python-defaults"], results["node"]
    print(
        f"\nside by side: eth_call p99 under load {base['busy_p99']:.1f} -> {tuned['busy_p99']:.1f} ms "
        f"({base['busy_p99'] / tuned['busy_p99']:.2f}x), max {base['busy_max']:.1f} -> "
        f"{tuned['busy_max']:.1f} ms; intake {base['intake']:.0f} -> {tuned['intake']:.0f} tx/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
