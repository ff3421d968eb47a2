#!/usr/bin/env python3
"""Auditor replay throughput: cargo events re-verified per second, with the audit report.

    .venv/bin/python bench/bench_replay.py [--events 100000] [--per-tx 100] [--txs-per-block 10]
                                           [--keep DIR]

Builds a chain on a four-validator genesis (every block sealed by three validators' real commit
seals; one governance change adds a fifth validator near the start) holding ``--events`` cargo
events in ``CargoLedger.record()`` transactions of ``--per-tx`` events with 100-byte encrypted
payloads, then replays it from genesis exactly as ``portledger replay --datadir`` does: every
block through ``Ledger.import_block`` (seals, header, every transaction re-executed, every root
compared) on a fresh database, with the :class:`node.replay.AuditReport` observing every block.
Reports events/s re-verified, with and without the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD_BYTES = 100


def build(root: Path, events: int, per_tx: int, txs_per_block: int) -> tuple[object, int]:
    """A sealed chain holding ``events`` cargo events under ``root``; (builder, events)."""
    from contracts.cargo import EVENT_TYPES, CargoEventInput
    from node.genesis import dev_key
    from tests.proofs.chain import ADD_VALIDATOR, ChainBuilder

    b = ChainBuilder(root)
    newcomer = dev_key("org:4").public_key.to_canonical_address()
    b.governance(ADD_VALIDATOR, b.org_id(newcomer), newcomer, [0, 1, 2])
    publishers = [1, 2]  # the two terminals
    made = 0
    serial = 0
    while made < events:
        txs = []
        for _ in range(txs_per_block):
            if made >= events:
                break
            n = min(per_tx, events - made)
            batch = [
                CargoEventInput(
                    subject=(serial + j).to_bytes(32, "big"),
                    event_type=EVENT_TYPES["TERMINAL.DISC"],
                    classifier=3,
                    event_time=1_767_225_600 + serial + j,
                    location="HKHKG",
                    payload_hash=os.urandom(32),
                    payload=os.urandom(PAYLOAD_BYTES),
                )
                for j in range(n)
            ]
            serial += n
            txs.append(b.cargo(publishers[len(txs) % 2], batch))
            made += n
        result = b.seal(txs)
        if any(r.state_root != b"\x01" for r in result.receipts):
            raise SystemExit("a record() call reverted; the benchmark is invalid")
    return b, made


def open_or_build(root: Path, events: int, per_tx: int, txs_per_block: int) -> tuple[object, int]:
    """The chain under ``root``: reopened if a previous run built it with the same parameters
    (``root/built.json``), else built there; (ledger, events)."""
    import json

    from node.chain import Ledger
    from node.db import LevelDB
    from node.genesis import Genesis

    params = {"events": events, "per_tx": per_tx, "txs_per_block": txs_per_block}
    stamp = root / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        genesis = Genesis.load(root / "node" / "genesis.json")
        ledger = Ledger(LevelDB(str(root / "node" / "chain"), sync=False), genesis)
        print(f"reusing the chain in {root} ({events} events, {ledger.head().block_number} blocks)")
        return ledger, events
    if (root / "node").exists():
        import shutil

        shutil.rmtree(root / "node")
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    builder, made = build(root / "node", events, per_tx, txs_per_block)
    built = time.perf_counter() - t0
    ledger = builder.ledger  # type: ignore[attr-defined]
    print(f"built {made} events in {ledger.head().block_number} blocks "
          f"in {built:.1f} s ({made / built:.0f} ev/s)")
    stamp.write_text(json.dumps(params))
    return ledger, made


def replay(ledger: object, *, report: bool) -> tuple[float, int, object]:
    from node.replay import AuditReport, replay_blocks

    head = ledger.head().block_number
    blocks = (ledger.block_by_header(ledger.header_by_number(n)) for n in range(1, head + 1))
    audit = AuditReport(ledger.genesis) if report else None
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch:
        t0 = time.perf_counter()
        summary = replay_blocks(
            ledger.genesis, blocks, scratch, total=head, show_progress=False,
            observe=audit.observe if audit is not None else None,
        )
        seconds = time.perf_counter() - t0
    if summary.failure:
        raise SystemExit(f"replay failed: {summary.failure}")
    return seconds, summary.blocks, audit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-tx", type=int, default=100)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--keep", default=None, help="Build the chain in this directory and keep it; a later run with the same "
                        "parameters reuses it.")
    args = parser.parse_args()
    import node  # noqa: F401  (the node's hashing backend)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-replay-chain-"))
    ledger, events = open_or_build(root, args.events, args.per_tx, args.txs_per_block)
    with_report, blocks, audit = replay(ledger, report=True)
    print(f"replay with audit report:    {blocks} blocks, {events} events, {with_report:.1f} s, "
          f"{events / with_report:.0f} events/s re-verified")
    bare, _, _ = replay(ledger, report=False)
    print(f"replay without the report:   {bare:.1f} s, {events / bare:.0f} events/s")
    assert audit is not None and audit.cargo_events == events, "report missed events"  # type: ignore[attr-defined]
    hours = 100_000_000 / (events / with_report) / 3600
    print(f"a year of Hong Kong traffic (~100 M events) would replay in {hours:.1f} h")
    ledger.db.close()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
