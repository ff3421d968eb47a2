"""Tracking queries with 1 M events indexed, load from a separate process.

    python bench/bench_tracking.py [--events 1000000] [--workers 2] [--concurrency 64]
                                   [--duration 20] [--data-dir DIR] [--keep]

1. **Fill** a read model through the :class:`gateway.readmodel.SqliteReadModel` API: the 13 demo
   organisations, ``events / 10`` containers with 10 events each (terminal moves, customs,
   reefer readings), one master B/L per 4 containers with a carrier record, and one house B/L
   per master covering 2 of its containers with a forwarder record. Sealing 1 M envelopes
   would take long and measures nothing about lookups, so only the *tracked* shipments
   (``--tracked`` masters, their houses and containers) get their own really sealed,
   reference-readable envelopes; every other event reuses the ciphertext bytes of a pool of
   sealed envelopes (same sizes, valid structure, only undecryptable under its own subject).
   The index sizes and the lookups are the real ones.
2. **Serve** the tracking routes from ``--workers`` processes sharing the port
   (``SO_REUSEPORT``): keystore, read model and tracking modules of the gateway behind the error
   middleware and a bearer-key middleware standing in for ``accounts.auth_middleware`` (the
   trader organisation's API key maps to its principal).
3. **Load** from a separate process: a keep-alive HTTP/1.1 client on asyncio streams with
   ``--concurrency`` connections, cycling through container, house B/L and master B/L numbers of
   the tracked shipments; it reports requests/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRADER, TERMINAL, CARRIER, FORWARDER, CUSTOMS = 13, 2, 4, 5, 10
API_KEY = "bench-trader-key"
T0 = 1_780_000_000


def _container(serial: int) -> str:
    from gateway.identifiers import container_check_digit

    first = f"PCOU{serial:06d}"
    return first + str(container_check_digit(first))


def fill(data_dir: Path, total: int, tracked: int) -> dict[str, Any]:
    """Write the read model; return the tracked references."""
    from contracts.cargo import EVENT_TYPES
    from gateway import confidential, events, keystore
    from gateway.readmodel import (
        Cursor,
        HouseChange,
        IndexedEvent,
        MasterContainers,
        Organisation,
        OrgChange,
        SqliteReadModel,
    )
    from node.genesis import DEMO_ORGANISATIONS, dev_key, dev_x25519, dev_x25519_public

    data_dir.mkdir(parents=True, exist_ok=True)
    store = keystore.Keystore(data_dir / "keystore", "bench")
    store.import_keys(TRADER, signing_key=dev_key("org:12").to_bytes(),
                      x25519_private=dev_x25519("org:12"), master_secret=os.urandom(32))
    model = SqliteReadModel(data_dir / "readmodel.db")
    model.apply([OrgChange(Organisation(i + 1, name, 0, dev_x25519_public(f"org:{i}"), True))
                 for i, (name, _) in enumerate(DEMO_ORGANISATIONS)], Cursor(0, b"\0" * 32), None)
    secrets = {o: os.urandom(32) for o in (TERMINAL, CARRIER, FORWARDER, CUSTOMS)}
    containers = total // 10
    masters = containers // 4
    event_id = 1 << 16
    pool: list[tuple[bytes, bytes]] = []
    kinds = ["TERMINAL.GTIN", "TERMINAL.LOAD", "TRANSPORT.DEPA", "TRANSPORT.ARRI",
             "TERMINAL.DISC", "REEFER.MEAS", "CUSTOMS.CUSH", "CUSTOMS.CUSR", "TERMINAL.AVPU",
             "TERMINAL.GTOT"]
    publisher_of = {"CUSTOMS": CUSTOMS, "TRANSPORT": CARRIER, "REEFER": TERMINAL,
                    "TERMINAL": TERMINAL}
    rows: list[IndexedEvent] = []
    changes: list[Any] = []
    started = time.monotonic()
    sealed = 0

    def add(ev: events.CanonicalEvent, owner: int, real: bool) -> None:
        nonlocal event_id, sealed
        event_id += 1
        if real or len(pool) < 256:
            s = confidential.seal(events.plaintext(ev), subject=ev.subject.key,
                                  owner_secret=secrets[owner], key_version=0, readers={},
                                  reference=ev.subject.value)
            envelope, payload_hash = s.envelope, s.payload_hash
            sealed += 1
            if len(pool) < 256:
                pool.append((envelope, payload_hash))
        else:
            envelope, payload_hash = pool[event_id % len(pool)]
        rows.append(IndexedEvent(
            event_id=event_id, block=event_id >> 8, tx_hash=event_id.to_bytes(32, "big"),
            log_index=event_id & 0xFF, block_time=ev.event_time + 30, publisher=owner,
            subject=ev.subject.key, type_code=EVENT_TYPES[ev.event_type],
            classifier=3, event_time=ev.event_time, location=ev.location, retracts=0,
            payload_hash=payload_hash, envelope=envelope, key_version=0, readers=(),
            reference_readable=True,
        ))
        if len(rows) >= 20_000:
            model.bulk_insert_events(rows)
            rows.clear()

    tracked_refs: dict[str, list[str]] = {"container": [], "hbl": [], "mbl": []}
    for m in range(masters):
        real = m < tracked
        mbl, hbl = f"PCOL{m:010d}", f"HFF{m:09d}"
        numbers = [_container(m * 4 + i) for i in range(4)]
        keys = tuple(events.Reference("container", c).key for c in numbers)
        changes.append(MasterContainers(events.Reference("mbl", mbl).key, CARRIER, keys, 1))
        changes.append(HouseChange(events.Reference("hbl", hbl).key,
                                   events.Reference("mbl", mbl).key, FORWARDER, keys[:2], 1))
        at = T0 + m * 60
        add(events.CanonicalEvent("SHIPMENT.ISSU", "ACT", at, events.Reference("mbl", mbl),
                                  "HKHKG", tuple(events.Reference("container", c) for c in numbers),
                                  {"vessel": {"name": "PACIFIC STAR", "imo": "9321483"}}),
            CARRIER, real)
        add(events.CanonicalEvent("SHIPMENT.ISSU", "ACT", at + 5, events.Reference("hbl", hbl),
                                  "HKHKG", (events.Reference("mbl", mbl),
                                            *(events.Reference("container", c)
                                              for c in numbers[:2]))), FORWARDER, real)
        for c in numbers:
            for k, kind in enumerate(kinds):
                details = {"temperature": -18.0 + random.random(), "setpoint": -18.0} \
                    if kind == "REEFER.MEAS" else {}
                add(events.CanonicalEvent(kind, "ACT", at + 3600 * (k + 1),
                                          events.Reference("container", c), "HKHKG", (),
                                          details), publisher_of[kind.split(".")[0]], real)
        if real:
            tracked_refs["mbl"].append(mbl)
            tracked_refs["hbl"].append(hbl)
            tracked_refs["container"].extend(numbers[:2])
        if len(changes) >= 20_000:
            model.apply_changes(changes)
            changes.clear()
    model.bulk_insert_events(rows)
    model.apply_changes(changes)
    count = model.event_count()
    model.close()
    return {"events": count, "sealed": sealed, "seconds": round(time.monotonic() - started, 1),
            "refs": tracked_refs}


# -- server -----------------------------------------------------------------------------------


def serve(data_dir: Path, port: int) -> None:
    """One worker process: the tracking routes behind a bearer-key principal middleware."""
    from aiohttp import web

    from gateway import errors, keystore, readmodel, tracking
    from gateway.config import CONFIG, GatewayConfig
    from gateway.principal import PRINCIPAL, ROLE_SCOPES, Principal

    bench_principal = Principal(org_id=TRADER, chain_org=TRADER, user_id=None, role="system",
                                scopes=ROLE_SCOPES["member"], via="api_key", credential_id="b")

    @web.middleware
    async def bearer(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") == f"Bearer {API_KEY}":
            request[PRINCIPAL] = bench_principal
        return await handler(request)

    config = GatewayConfig(data_dir=data_dir, keystore_passphrase="bench", log_json=False)
    app = web.Application(middlewares=[errors.error_middleware, bearer])
    app[CONFIG] = config
    keystore.setup(app)
    readmodel.setup(app)
    tracking.setup(app)
    import gc

    gc.freeze()
    sys.setswitchinterval(0.0005)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, access_log=None,
                print=lambda *_: None)


# -- load -------------------------------------------------------------------------------------


async def _load(port: int, paths: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.monotonic() + duration
    warm_until = time.monotonic() + min(3.0, duration / 4)

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop:
                path = paths[rnd.randrange(len(paths))]
                t = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
                             f"{API_KEY}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if time.monotonic() >= warm_until:
                    latencies.append(time.perf_counter() - t)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    measured = duration - min(3.0, duration / 4)
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / measured, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "statuses": statuses,
    }


def load(port: int, refs_file: Path, concurrency: int, duration: float) -> None:
    refs = json.loads(refs_file.read_text())
    paths = [f"/v1/track/{r}" for kind in ("container", "hbl", "mbl") for r in refs[kind]]
    print(json.dumps(asyncio.run(_load(port, paths, concurrency, duration))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", default="bench", choices=("bench", "serve", "load"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tracked", type=int, default=2000, help="masters with real envelopes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the data dir")
    args = parser.parse_args()
    if args.role == "serve":
        serve(args.data_dir, args.port)
        return
    if args.role == "load":
        load(args.port, args.data_dir / "refs.json", args.concurrency, args.duration)
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    refs_file = data_dir / "refs.json"
    if not refs_file.exists():
        info = fill(data_dir, args.events, args.tracked)
        refs_file.write_text(json.dumps(info.pop("refs")))
        print(json.dumps({"fill": info}), flush=True)
    port = args.port or _free_port()
    me = Path(__file__).resolve()
    workers = [subprocess.Popen([sys.executable, str(me), "serve", "--data-dir", str(data_dir),
                                 "--port", str(port)]) for _ in range(args.workers)]
    try:
        _wait_port(port)
        time.sleep(1.0)
        out = subprocess.run(
            [sys.executable, str(me), "load", "--data-dir", str(data_dir), "--port", str(port),
             "--concurrency", str(args.concurrency), "--duration", str(args.duration)],
            capture_output=True, text=True, timeout=args.duration + 120, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(workers=args.workers, concurrency=args.concurrency)
        print(json.dumps({"load": result}), flush=True)
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
        if not args.keep and args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
