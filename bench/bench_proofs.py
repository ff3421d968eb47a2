#!/usr/bin/env python3
"""Proof bundle generation and offline verification time per event.

    .venv/bin/python -m bench.bench_proofs [--events 20000] [--samples 200] [--baseline REV]

Builds a sealed chain (bench_replay's: four validators, real commit seals, a governance change
adding a fifth validator, blocks of ten ``record()`` transactions of 100 events each), then for
``--samples`` random events: builds a one-event bundle (``ProofBuilder.bundle``: receipts and
transactions of the block, both tries rebuilt, proofs walked, validator-change headers) and
verifies it (``proofs.verify.verify_bundle``: every seal recovered, both MPT proofs, the log
decoded). Reports p50 / p99 / max per event, with the one-off cost of the builder's
validator-change index (a scan of every header) reported separately.

``--baseline REV`` also verifies every sampled bundle with the verifier of commit ``REV`` (a
self-contained module in every version: ``consensus/proofcheck.py`` before issue 18), the two
alternating bundle by bundle, and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Where the offline verifier lived, newest first: ``(path in the tree, its entry point)``.
_VERIFIERS = (("consensus/proofcheck.py", "verify_bundle"),)


def baseline_verifier(rev: str, scratch: Path) -> Callable[[Any, Any], Any]:
    """``verify_bundle`` of commit ``rev``'s verifier, loaded from its own file."""
    for path, entry in _VERIFIERS:
        done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent, timeout=60)
        if done.returncode == 0:
            file = scratch / f"baseline_{rev}_verifier.py"
            file.write_text(done.stdout)
            spec = importlib.util.spec_from_file_location(f"baseline_verifier_{rev}", file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # its dataclasses look their module up
            spec.loader.exec_module(module)
            return getattr(module, entry)  # type: ignore[no-any-return]
    raise SystemExit(f"{rev} has no self-contained verifier at {[p for p, _ in _VERIFIERS]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--baseline", metavar="REV",
                        help="also verify with the verifier of this commit, side by side")
    args = parser.parse_args()
    import node  # noqa: F401  (the node's hashing backend)
    from bench.bench_replay import build
    from node.proofs import EventRef, ProofBuilder
    from proofs.verify import verify_bundle

    root = Path(tempfile.mkdtemp(prefix="bench-proofs-"))
    baseline = None if args.baseline is None else baseline_verifier(args.baseline, root)
    builder_chain, events = build(root / "node", args.events, 100, 10)
    ledger = builder_chain.ledger  # type: ignore[attr-defined]
    genesis = json.loads((root / "node" / "genesis.json").read_text())
    head = ledger.head().block_number
    rng = random.Random(7)
    t0 = time.perf_counter()
    builder = ProofBuilder(ledger)
    builder.validator_changes(head + 1)
    index_s = time.perf_counter() - t0

    # Blocks 1-2 are governance; cargo blocks hold 10 transactions of 100 logs each.
    refs = []
    for _ in range(args.samples):
        number = rng.randrange(3, head + 1)
        receipts = ledger.receipts(ledger.header_by_number(number))
        tx = rng.randrange(len(receipts))
        refs.append(EventRef(number, tx, rng.randrange(len(receipts[tx].logs))))
    generate, verify, sizes, verify_base = [], [], [], []
    for i, ref in enumerate(refs):
        t0 = time.perf_counter()
        bundle = builder.bundle([ref])
        t1 = time.perf_counter()
        text = json.dumps(bundle)
        if baseline is not None and i % 2 == 1:  # alternate which runs first
            t = time.perf_counter()
            baseline(json.loads(text), genesis)
            verify_base.append(time.perf_counter() - t)
        t2 = time.perf_counter()
        verified = verify_bundle(json.loads(text), genesis)
        t3 = time.perf_counter()
        if baseline is not None and i % 2 == 0:
            t = time.perf_counter()
            baseline(json.loads(text), genesis)
            verify_base.append(time.perf_counter() - t)
        assert verified.events[0].block_number == ref.block
        generate.append(t1 - t0)
        verify.append(t3 - t2)
        sizes.append(len(text))

    def row(name: str, values: list[float]) -> str:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (f"{name:<28} p50 {1000 * statistics.median(values):7.2f} ms   p99 {1000 * p99:7.2f} ms"
                f"   max {1000 * max(values):7.2f} ms")

    print(f"chain: {events} events in {head} blocks (1 000 events per block); {args.samples} events sampled")
    print(f"validator-change index (one-off, {head} headers): {1000 * index_s:.1f} ms")
    print(row("bundle generation / event", generate))
    print(row("verification / event", verify))
    if verify_base:
        print(row(f"  ... by {args.baseline}", verify_base))
        print(f"  ratio of medians {args.baseline} / this tree: "
              f"{statistics.median(verify_base) / statistics.median(verify):.2f}")
    print(f"bundle size: median {statistics.median(sizes) / 1024:.1f} KiB")
    shipment = [EventRef(n, t, i) for n, t, i in ((3, 0, 0), (4, 1, 5), (head, 0, 7))]
    t0 = time.perf_counter()
    bundle = builder.bundle(shipment)
    t1 = time.perf_counter()
    verify_bundle(bundle, genesis)
    t2 = time.perf_counter()
    print(f"3-event bundle over 3 blocks: generate {1000 * (t1 - t0):.1f} ms, verify {1000 * (t2 - t1):.1f} ms")
    ledger.db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
