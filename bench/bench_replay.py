#!/usr/bin/env python3
"""Auditor replay throughput: cargo events re-verified per second, with the audit report.

    .venv/bin/python bench/bench_replay.py [--events 100000] [--per-tx 100] [--txs-per-block 10]
                                           [--jobs 1,2] [--rounds 1] [--keep DIR]
                                           [--baseline TREE] [--python-loop]

Builds a chain on a four-validator genesis (every block sealed by three validators' real commit
seals; one governance change adds a fifth validator near the start) holding ``--events`` cargo
events in ``CargoLedger.record()`` transactions of ``--per-tx`` events with 100-byte encrypted
payloads, then replays it from genesis exactly as ``portledger replay --datadir --jobs N`` does
(:func:`node.replay.replay_datadir`): every block through ``Ledger.import_block`` (seals,
header, every transaction re-executed, every root compared) on a fresh database, in N
processes of consecutive segments, with the :class:`node.audit.AuditReport` observing every
block. Reports events/s re-verified (wall clock) and events per CPU-second (this process and
its workers: less sensitive to a shared machine) for each ``--jobs`` value with the report, and
for one process without it. ``--baseline TREE`` (a checkout of an earlier commit) adds that
code's sequential replay of the same chain to each round, for before/after ratios in one run.
``--python-loop`` adds a sequential replay with the opcode loop run as Python source
(:func:`node.native.load_python`) when the compiled one is built: the compiled loop's gain in
the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PAYLOAD_BYTES = 100


def build(root: Path, events: int, per_tx: int, txs_per_block: int) -> tuple[object, int]:
    """A sealed chain holding ``events`` cargo events under ``root``; (builder, events)."""
    from contracts import ProposalKind
    from contracts.cargo import EVENT_TYPES, CargoEventInput
    from devnet.sealedchain import ChainBuilder
    from node.genesis import dev_key

    b = ChainBuilder(root)
    newcomer = dev_key("org:4").public_key.to_canonical_address()
    b.governance(ProposalKind.ADD_VALIDATOR, b.org_id(newcomer), newcomer, [0, 1, 2])
    publishers = [1, 2]  # the two terminals
    made = 0
    serial = 0
    while made < events:
        txs: list[object] = []
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


def open_or_build(root: Path, events: int, per_tx: int, txs_per_block: int) -> int:
    """Build the chain under ``root/node`` unless a previous run built it there with the same
    parameters (``root/built.json``); the number of events it holds."""
    import json
    import shutil

    params = {"events": events, "per_tx": per_tx, "txs_per_block": txs_per_block}
    stamp = root / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        print(f"reusing the chain in {root / 'node'} ({events} events)")
        return events
    if (root / "node").exists():
        shutil.rmtree(root / "node")
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    builder, made = build(root / "node", events, per_tx, txs_per_block)
    built = time.perf_counter() - t0
    ledger = builder.ledger  # type: ignore[attr-defined]
    print(f"built {made} events in {ledger.head().block_number} blocks "
          f"in {built:.1f} s ({made / built:.0f} ev/s)")
    ledger.db.close()
    stamp.write_text(json.dumps(params))
    return made


def replay(
    node_dir: Path, *, jobs: int, report: bool, python_loop: bool = False
) -> dict[str, float]:
    """One replay of ``node_dir``'s chain as ``portledger replay --datadir --jobs`` runs it:
    wall seconds, CPU seconds of this process and its workers, blocks, report's events.
    ``python_loop``: with the opcode loop's Python source instead of the loop the node runs
    (only with ``jobs=1``: workers choose their own)."""
    import node.interpreter
    from node import native
    from node.audit import AuditReport
    from node.genesis import Genesis
    from node.replay import replay_datadir

    genesis = Genesis.load(node_dir / "genesis.json")
    audit = AuditReport(genesis) if report else None
    loop = node.interpreter.LOOP
    if python_loop:
        assert jobs == 1
        node.interpreter.LOOP = native.load_python()
    cpu0 = _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-replay-", dir=node_dir.parent) as scratch:
        t0 = time.perf_counter()
        try:
            summary = replay_datadir(
                genesis, node_dir / "chain", scratch, jobs=jobs, report=audit, show_progress=False
            )
        finally:
            node.interpreter.LOOP = loop
        seconds = time.perf_counter() - t0
    if summary.failure:
        raise SystemExit(f"replay failed: {summary.failure}")
    return {
        "seconds": seconds,
        "cpu": _cpu_seconds() - cpu0,
        "blocks": summary.blocks,
        "events": audit.cargo_events if audit is not None else -1,
    }


#: Run in a subprocess against a baseline tree: its sequential replay (``replay_blocks`` and
#: the report exist in every version) of the same chain; prints wall and CPU seconds as JSON.
_BASELINE_SCRIPT = """
import json, resource, sys, tempfile, time
from pathlib import Path
tree, node_dir = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, tree)
import node
try:
    from node.ledger import Ledger
except ImportError:  # a tree from before node/ledger.py
    from node.chain import Ledger
from node.db import LevelDB
from node.genesis import Genesis
try:
    from node.audit import AuditReport
except ImportError:  # a tree from before node/audit.py
    from node.replay import AuditReport
from node.replay import replay_blocks
genesis = Genesis.load(node_dir / "genesis.json")
source = Ledger(LevelDB(str(node_dir / "chain"), sync=False), genesis)
head = source.head().block_number
blocks = (source.block_by_header(source.header_by_number(n)) for n in range(1, head + 1))
audit = AuditReport(genesis)
with tempfile.TemporaryDirectory(dir=node_dir.parent) as scratch:
    t0 = time.perf_counter()
    summary = replay_blocks(genesis, blocks, scratch, total=head, show_progress=False,
                            observe=audit.observe)
    seconds = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
assert summary.failure is None, summary.failure
print(json.dumps({"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
                  "blocks": summary.blocks, "events": audit.cargo_events}))
"""


def replay_baseline(tree: Path, node_dir: Path) -> dict[str, float]:
    """The sequential replay (with the report) of ``node_dir``'s chain by the code in
    ``tree`` (a checkout of another commit), in a subprocess. Its CPU seconds include the
    interpreter start and the imports (about a second)."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _BASELINE_SCRIPT, str(tree), str(node_dir)],
        capture_output=True, text=True, timeout=3600, cwd=tree,
    )
    if out.returncode != 0:
        raise SystemExit(f"baseline replay failed: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-tx", type=int, default=100)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--jobs", default="1,2",
                        help="Comma-separated process counts to compare (default 1,2).")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Repeat the set of variants, interleaved (noise on a shared machine).")
    parser.add_argument("--baseline", default=None, metavar="TREE",
                        help="A checkout of an earlier commit (git worktree add TREE COMMIT): its "
                        "sequential replay with the report runs too, interleaved.")
    parser.add_argument("--python-loop", action="store_true",
                        help="Also replay (jobs=1, with the report) with the opcode loop run as "
                        "Python source, when the compiled loop is built.")
    parser.add_argument("--keep", default=None,
                        help="Build the chain in this directory and keep it; a later run with the "
                        "same parameters reuses it.")
    args = parser.parse_args()
    import node.interpreter
    from node import native

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-replay-chain-"))
    events = open_or_build(root, args.events, args.per_tx, args.txs_per_block)
    variants = [(int(j), True) for j in args.jobs.split(",")] + [(1, False)]
    if args.baseline:
        variants.insert(0, (0, True))  # jobs=0 stands for the baseline tree
    compiled = native.is_compiled(node.interpreter.LOOP)
    print(f"opcode loop: {'compiled' if compiled else 'Python'} ({native.compiled_state()[1]})")
    if args.python_loop and compiled:
        variants.insert(1 if args.baseline else 0, (-1, True))  # jobs=-1: the Python loop
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    best: dict[tuple[int, bool], dict[str, float]] = {}
    for _ in range(args.rounds):
        for jobs, report in variants:
            if jobs == 0:
                run = replay_baseline(Path(args.baseline), root / "node")
            else:
                run = replay(root / "node", jobs=max(jobs, 1), report=report,
                             python_loop=jobs < 0)
            if report and run["events"] != events:
                raise SystemExit(f"the report counted {run['events']} events of {events}")
            name = (f"baseline {Path(args.baseline).name}" if jobs == 0 else
                    "jobs=1, Python loop, report" if jobs < 0 else
                    f"jobs={jobs}, {'with report' if report else 'no report'}")
            print(f"{name:28s} {run['blocks']:.0f} blocks, {run['seconds']:6.1f} s wall, "
                  f"{events / run['seconds']:6.0f} events/s; CPU {run['cpu']:6.1f} s "
                  f"({events / run['cpu']:.0f} events per CPU-second)", flush=True)
            if (jobs, report) not in best or run["seconds"] < best[(jobs, report)]["seconds"]:
                best[(jobs, report)] = run
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    fastest = min((r for (j, rep), r in best.items() if rep and j > 0), key=lambda r: r["seconds"])
    rate = events / fastest["seconds"]
    print(f"best with the report: {rate:.0f} events/s re-verified; a year of Hong Kong traffic "
          f"(~100 M events) would replay in {100_000_000 / rate / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
