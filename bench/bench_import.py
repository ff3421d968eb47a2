#!/usr/bin/env python3
"""Block import throughput for blocks of signed cargo-event transactions.

    .venv/bin/python bench/bench_import.py [--events 1,10,100] [--total-events 6000]

Builds blocks of ``CargoLedger.record()`` transactions (terminal discharge events with a
100-byte encrypted payload, signed by the demo terminals' accounts) on one chain, then imports
them into a fresh chain — full validation: seals, header, every transaction re-executed, every
root compared, one fsynced LevelDB batch per block — and reports imported events/s and tx/s.

Each figure is measured twice in the same run, in separate processes: **stock** (py-evm as it
ships: its opcode loop, keccak through pycryptodome, Prague's receipt scan for deposit
requests) and
**portledger** (the node's settings), with their ratio — never against a remembered number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAYLOAD_BYTES = 100


def child(variant: str, events_per_tx: list[int], total_events: int) -> dict[str, object]:
    if variant == "stock":
        os.environ["ETH_HASH_BACKEND"] = "pycryptodome"
    from eth.vm.forks.prague import PragueVM
    from eth_account import Account

    import node  # noqa: F401  (sets the node's hashing backend unless stock chose one)
    from contracts import SYSTEM_ADDRESSES
    from contracts.cargo import EVENT_TYPES, CargoEventInput, encode_record_call, subject_key
    from node.chain import PortLedgerVM
    from node.db import LevelDB
    from node.genesis import Genesis, dev_key
    from node.ledger import Ledger

    if variant == "stock":
        from eth.vm.forks.prague.state import PragueState

        PortLedgerVM.process_deposit_request_data = PragueVM.process_deposit_request_data  # type: ignore[method-assign]
        PortLedgerVM._state_class = PragueState

    genesis = Genesis.load(ROOT / "genesis.json")
    terminals = [Account.from_key(dev_key(f"org:{i}").to_bytes()) for i in (1, 2)]
    validator = dev_key("validator:0")
    cargo = SYSTEM_ADDRESSES["CargoLedger"]
    results: dict[str, object] = {"variant": variant, "rows": []}
    for per_tx in events_per_tx:
        n_tx = max(1, total_events // per_tx)
        with tempfile.TemporaryDirectory() as a_dir, tempfile.TemporaryDirectory() as b_dir:
            builder = Ledger(LevelDB(a_dir), genesis)
            nonces = {t.address: 0 for t in terminals}
            raw = []
            for i in range(n_tx):
                sender = terminals[i % len(terminals)]
                events = [
                    CargoEventInput(
                        subject=subject_key(f"MSCU{(i * per_tx + j) % 10_000_000:07d}"),
                        event_type=EVENT_TYPES["TERMINAL.DISC"],
                        classifier=3,
                        event_time=1_767_225_600 + i,
                        location="HKHKG",
                        payload_hash=(i * per_tx + j).to_bytes(32, "big"),
                        payload=os.urandom(PAYLOAD_BYTES),
                    )
                    for j in range(per_tx)
                ]
                signed = sender.sign_transaction(
                    {
                        "to": cargo,
                        "data": encode_record_call(events),
                        "gas": 1_000_000 + 40_000 * per_tx,
                        "nonce": nonces[sender.address],
                        "chainId": genesis.chain_id,
                        "maxFeePerGas": 0,
                        "maxPriorityFeePerGas": 0,
                    }
                )
                nonces[sender.address] += 1
                raw.append(builder.decode_transaction(signed.raw_transaction))
            blocks = []
            built = 0.0
            pending = raw
            while pending:
                t0 = time.perf_counter()
                result = builder.propose(pending, validator)
                built += time.perf_counter() - t0
                if result.rejected and len(result.block.transactions) == 0:
                    raise SystemExit(f"builder rejected everything: {result.rejected[0][1]}")
                failed = [r for r in result.receipts if r.state_root != b"\x01"]
                if failed:
                    raise SystemExit("a record() call reverted; the benchmark is invalid")
                blocks.append(result.block)
                done = {tx.hash for tx in result.block.transactions}
                pending = [tx for tx in pending if tx.hash not in done]
            importer = Ledger(LevelDB(b_dir), genesis)
            t0 = time.perf_counter()
            for block in blocks:
                importer.import_block(block)
            imported = time.perf_counter() - t0
            assert importer.head().hash == builder.head().hash
            gas = sum(b.header.gas_used for b in blocks)
            results["rows"].append(  # type: ignore[union-attr]
                {
                    "events_per_tx": per_tx,
                    "txs": n_tx,
                    "events": n_tx * per_tx,
                    "blocks": len(blocks),
                    "import_s": imported,
                    "build_s": built,
                    "gas_per_event": gas / (n_tx * per_tx),
                }
            )
            builder.db.close()
            importer.db.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", default="1,10,100")
    parser.add_argument("--total-events", type=int, default=6000)
    parser.add_argument("--child", choices=["stock", "portledger"])
    args = parser.parse_args()
    per_tx = [int(x) for x in args.events.split(",")]
    if args.child:
        print(json.dumps(child(args.child, per_tx, args.total_events)))
        return 0
    runs = {}
    for variant in ("stock", "portledger"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--events", args.events,
             "--total-events", str(args.total_events)],
            check=True, capture_output=True, text=True,
        )
        runs[variant] = {r["events_per_tx"]: r for r in json.loads(out.stdout)["rows"]}
    print(f"block import, cargo events with {PAYLOAD_BYTES}-byte encrypted payloads "
          f"(full validation, fsync per block)")
    print(f"{'ev/tx':>6} {'txs':>6} {'blocks':>6} {'gas/ev':>8} | {'stock ev/s':>10} {'tx/s':>7} "
          f"| {'portledger ev/s':>15} {'tx/s':>7} {'build ev/s':>10} | {'ratio':>5}")
    for n in per_tx:
        s, p = runs["stock"][n], runs["portledger"][n]
        s_rate, p_rate = s["events"] / s["import_s"], p["events"] / p["import_s"]
        print(
            f"{n:>6} {p['txs']:>6} {p['blocks']:>6} {p['gas_per_event']:>8.0f} | "
            f"{s_rate:>10.0f} {s['txs'] / s['import_s']:>7.1f} | {p_rate:>15.0f} "
            f"{p['txs'] / p['import_s']:>7.1f} {p['events'] / p['build_s']:>10.0f} | "
            f"{p_rate / s_rate:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
