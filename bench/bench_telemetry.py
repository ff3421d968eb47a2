"""Telemetry: store ingest rate, anchoring gas per 1,000 readings, proof size and verification.

Three measurements:

(a) **ingest** — :meth:`gateway.telemetry.store.TelemetryStore.add` on a fresh store in a
    temporary folder with a telemetry secret (private readings sealed with AES-256-GCM, keyed
    digests and indexes: what the gateway does), in calls of ``--chunk`` readings: AIS positions
    (stored in clear), reefer readings and truck positions (sealed), then all three interleaved.
    Readings per second per kind, and for the mixed run the rate of its first and last tenth
    (a store that slows as it grows shows it). Target: >= 2,000 readings/s sustained with room.
    Also the batching step (reading back, opening and hashing waiting readings, cutting them
    into batches and computing roots) per 1,000 readings.
(b) **anchoring on chain** — one ``portledger node`` process (repository genesis, loopback) and
    the gateway application (``create_app``, its submitter and anchoring task, the demo
    accounts' development keys) in this process: the terminal organisation's reefer readings are
    ingested and anchored by the gateway's own task (window ``--window``, batches of at most
    ``--batch-max``); gas from the mined receipts, per batch and per 1,000 readings, and the time
    from the last ingest to the last batch anchored.
(c) **proofs** — bundles of ``--proofs`` anchored readings spread over the batches
    (:func:`gateway.proofs_api.readings.make_reading_bundle`, the node's ``portledger_getProof``):
    compact JSON size, time to make one, and offline verification time per bundle with
    :func:`proofs.verify.verify_bundle` (median, p95); one ``portledger verify-proof`` run in a
    subprocess for the wall time a bank sees (mostly interpreter start-up).

Run: ``.venv/bin/python -m bench.bench_telemetry [--readings 60000] [--anchor-readings 20000]
[--batch-max 4096] [--proofs 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.bench_rpc import Node
from devnet.accounts import bootstrap_demo
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, NODE, TELEMETRY
from gateway.config import GatewayConfig
from gateway.events.identifiers import container_check_digit
from gateway.events.model import Reference, Visibility
from gateway.proofs_api.readings import make_reading_bundle
from gateway.telemetry import service
from gateway.telemetry.anchoring import plan
from gateway.telemetry.model import Reading
from gateway.telemetry.store import TelemetryStore
from proofs.verify import verify_bundle

ROOT = Path(__file__).resolve().parent.parent
GENESIS = ROOT / "genesis.json"
T0 = 1_790_000_000
TERMINAL = 2  # Consortium id of the demo terminal (roles: terminal -> AIS and REEFER)


def container(n: int) -> str:
    first = f"BNTU{n % 1_000_000:06d}"
    return first + str(container_check_digit(first))


def ais(n: int) -> Reading:
    return Reading("ais-position", T0 + n // 50, None, {
        "mmsi": 477_000_000 + n % 50, "lat": round(22.2 + (n % 997) * 1e-4, 6),
        "lon": round(114.0 + (n % 991) * 1e-4, 6), "sog": 12.3, "cog": 181.0, "heading": 180,
        "status": 0})


def reefer(n: int) -> Reading:
    return Reading("reefer", T0 + 60 * (n // 200), Reference("container", container(n % 200)), {
        "temperature": round(-18.0 + (n % 7) * 0.1, 2), "setpoint": -18.0, "unit": "CEL",
        "humidity": 80 + n % 5})


def truck(n: int) -> Reading:
    return Reading("truck-position", T0 + 30 * (n // 20), Reference("truck", f"KV{n % 20:04d}"), {
        "lat": round(22.33 + (n % 500) * 1e-5, 6), "lon": round(114.12 + (n % 500) * 1e-5, 6),
        "speed": 35.0, "heading": 40, "job": f"JOB-{n % 20}"})


# -- (a) ingest -----------------------------------------------------------------------------------
def bench_ingest(count: int, chunk: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        store = TelemetryStore(Path(tmp) / "telemetry.sqlite", secret=os.urandom(32))
        try:
            for name, make in (("ais-position (clear)", ais), ("reefer (sealed)", reefer),
                               ("truck-position (sealed)", truck)):
                readings = [make(i) for i in range(count)]
                start = time.perf_counter()
                for i in range(0, count, chunk):
                    store.add(3, readings[i : i + chunk], Visibility("named", (4,)), owner=2)
                out[name] = count / (time.perf_counter() - start)
            makers = (ais, reefer, truck)
            mixed = [makers[i % 3](count + i) for i in range(count)]
            tenths: list[float] = []
            start = time.perf_counter()
            for t in range(10):
                part = mixed[t * count // 10 : (t + 1) * count // 10]
                began = time.perf_counter()
                for i in range(0, len(part), chunk):
                    store.add(3, part[i : i + chunk], Visibility(), owner=2)
                tenths.append(len(part) / (time.perf_counter() - began))
            out["mixed"] = count / (time.perf_counter() - start)
            out["mixed first tenth"], out["mixed last tenth"] = tenths[0], tenths[-1]
            out["rows"] = sum(v for k, v in store.counts().items() if k != "unbatched")
            waiting = min(store.counts()["unbatched"], 40_960)
            start = time.perf_counter()
            batches = plan(store.unanchored(waiting), 4096, 10)
            spent = time.perf_counter() - start
            out["batching ms per 1,000"] = spent * 1e6 / max(1, sum(len(b.ids) for b in batches))
        finally:
            store.close()
    return out


# -- (b) and (c): a node and the gateway ---------------------------------------------------------
async def bench_chain(anchor_readings: int, batch_max: int, window: float, proofs: int,
                      ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-chain-") as tmp:
        node = Node(GENESIS, Path(tmp))
        try:
            config = GatewayConfig(
                data_dir=Path(tmp) / "gateway", node_urls=(f"http://127.0.0.1:{node.port}",),
                keystore_passphrase="bench passphrase", cookie_secure=False,
                batch_window_ms=20, indexer_poll_ms=100, telemetry_window_seconds=window,
                telemetry_batch_max=batch_max)
            config.data_dir.mkdir(parents=True)
            creds = bootstrap_demo(config)
            org_id = next(o["orgId"] for o in creds["organisations"] if o["chainOrg"] == TERMINAL)
            app = create_app(config)
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                out.update(await _anchor_and_prove(app, org_id, anchor_readings, proofs, tmp))
            finally:
                await runner.cleanup()
        finally:
            node.stop()
    return out


async def _anchor_and_prove(app: web.Application, org_id: int, count: int, proofs: int,
                            tmp: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    store = app[TELEMETRY]
    readings = [reefer(i) for i in range(count)]
    for i in range(0, count, 1000):
        await service.ingest(app, org_id, readings[i : i + 1000], Visibility())
    ingested = time.perf_counter()
    deadline = time.monotonic() + 300
    while True:
        counts = store.batch_counts()
        if store.counts()["unbatched"] == 0 and not counts.get("formed") and not counts.get(
                "submitted"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"batches not settled: {counts}")
        await asyncio.sleep(0.05)
    out["ingest -> last anchored s"] = time.perf_counter() - ingested
    batches = store.batches("anchored", 10_000)
    if store.batches("failed"):
        raise RuntimeError(f"failed batches: {store.batches('failed')}")
    gas = []
    for batch in batches:
        receipt = await app[NODE].receipt(batch.tx_hash or "")
        assert receipt is not None
        gas.append((batch.count, int(receipt["gasUsed"], 16)))
    total_gas = sum(g for _, g in gas)
    out["batches"] = len(batches)
    out["readings per batch"] = sorted({n for n, _ in gas})
    out["gas per batch"] = sorted({g for _, g in gas})
    out["gas per 1,000 readings"] = total_gas * 1000 / count
    # (c) proofs of readings spread over the batches
    principal = app[ACCOUNTS].principal_for_org(org_id, ["proofs:export"])
    ids = [1 + i * (count - 1) // max(1, proofs - 1) for i in range(proofs)]
    genesis = json.loads(GENESIS.read_text())
    sizes, makes, checks, depths = [], [], [], []
    bundle: dict[str, Any] = {}
    for reading_id in ids:
        start = time.perf_counter()
        bundle = await make_reading_bundle(app, principal, reading_id)
        makes.append(time.perf_counter() - start)
        sizes.append(len(json.dumps(bundle, separators=(",", ":"))))
        depths.append(len(bundle["events"][0]["anchor"]["merkleProof"]))
        start = time.perf_counter()
        verify_bundle(bundle, genesis)
        checks.append(time.perf_counter() - start)
    out["proof bytes (median, max)"] = (int(statistics.median(sizes)), max(sizes))
    out["merkle proof depth (min, max)"] = (min(depths), max(depths))
    out["make bundle ms (median)"] = statistics.median(makes) * 1000
    rpc = []
    for batch in batches[:5]:
        start = time.perf_counter()
        await app[NODE].request("portledger_getProof", [batch.tx_hash, batch.log_index])
        rpc.append(time.perf_counter() - start)
    out["  of which node getProof ms"] = statistics.median(rpc) * 1000
    out["verify ms (median, p95)"] = (statistics.median(checks) * 1000,
                                      sorted(checks)[int(0.95 * (len(checks) - 1))] * 1000)
    path = Path(tmp) / "bundle.json"
    path.write_text(json.dumps(bundle))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "portledger", "verify-proof", str(path),
                             "--genesis", str(GENESIS)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"verify-proof failed: {result.stderr}")
    out["verify-proof subprocess s"] = time.perf_counter() - start
    return out


def _show(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    for name, value in figures.items():
        if isinstance(value, float):
            text = f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
        elif isinstance(value, tuple):
            text = ", ".join(f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" for v in value)
        else:
            text = str(value)
        print(f"  {name:<32} {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readings", type=int, default=60_000, help="per kind, for (a)")
    parser.add_argument("--chunk", type=int, default=1_000, help="readings per add() call")
    parser.add_argument("--anchor-readings", type=int, default=20_000)
    parser.add_argument("--batch-max", type=int, default=4096)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--proofs", type=int, default=50)
    parser.add_argument("--skip-chain", action="store_true", help="only (a)")
    args = parser.parse_args()
    ingest = bench_ingest(args.readings, args.chunk)
    _show(f"(a) store ingest, readings/s ({args.readings:,} per kind, {args.chunk:,} per call)",
          ingest)
    if not args.skip_chain:
        chain = asyncio.run(bench_chain(args.anchor_readings, args.batch_max, args.window,
                                        args.proofs))
        _show(f"(b, c) anchoring {args.anchor_readings:,} reefer readings on a real node, "
              f"batches of <= {args.batch_max:,}", chain)
    print("\ntarget: >= 2,000 readings/s stored:",
          "met" if ingest["mixed last tenth"] >= 2000 else "MISSED")


if __name__ == "__main__":
    main()

