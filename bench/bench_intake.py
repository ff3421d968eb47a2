"""Upload intake: events accepted durably into the outbox per second (target >= 5,000/s).

What "accepted" means here is what a 2xx means: :meth:`gateway.writepath.outbox.Outbox.accept` has
committed the events with ``synchronous=FULL`` (on disk, WAL). Measured three ways on a fresh
outbox in a temporary folder:

- ``accept`` called directly with lists of 1, 100 and 1,000 events (one transaction each);
- ``accept_async`` from many concurrent callers with one event each (group commit: the
  writer thread commits every request waiting at that moment in one transaction);
  both direct paths side by side with bodies in clear (how the outbox stored them before
  issue 18) and encrypted under a body key (what the gateway does now: no plaintext at rest),
  alternating over ``--rounds``, best of each, with the ratio;
- over HTTP against the real gateway (``portledger gateway serve --workers N`` in its own
  process group, the demo accounts of :mod:`devnet.accounts`, the whole middleware chain:
  errors, metrics, API-key authentication, rate limits raised out of the way): the terminal
  organisation uploads ``TERMINAL.DISC`` events with valid ISO 6346 container numbers through
  ``POST /v1/events`` — one per request with an ``Idempotency-Key`` from concurrent clients,
  ``{"events": [...]}`` lists of 100 and 1,000 — and ``POST /v1/events/bulk`` (NDJSON, 1,000
  per request). The client runs in this process, the server in its own; afterwards the rows in
  the outbox are counted, so a figure only stands if every event answered 2xx is there.

The gateway has no node here (no ``node_urls``): accepted operations wait in the outbox, which
is exactly the intake being measured.

Run: ``.venv/bin/python -m bench.bench_intake [--events 20000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from devnet.gateway import GatewayProcess
from devnet.ports import free_ports
from gateway.config import GatewayConfig
from gateway.events.identifiers import container_check_digit
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.writepath.operations import Operation
from gateway.writepath.outbox import Outbox


def container(n: int) -> str:
    """A valid ISO 6346 container number (owner code BNCU) for serial ``n``."""
    first = f"BNCU{n % 1_000_000:06d}"
    return first + str(container_check_digit(first))


def event(n: int) -> CanonicalEvent:
    return CanonicalEvent(
        event_type="TERMINAL.DISC",
        classifier="ACT",
        event_time=1_767_225_600 + n,
        subject=Reference("container", container(n)),
        location="HKHKG",
        related=(Reference("mbl", "PCOL1234567"),),
        details={"vessel": {"imo": "9321483", "name": "EVER GIVEN"}, "n": n},
        visibility=Visibility("reference", ()),
    )


def ops(start: int, count: int, prefix: str) -> list[Operation]:
    return [Operation(f"{prefix}-{start + i}", "event", event(start + i)) for i in range(count)]


def bench_direct(folder: Path, total: int, batch: int, body_key: bytes | None) -> float:
    box = Outbox(folder / "outbox.sqlite", body_key=body_key)
    work = [ops(i, batch, f"d{batch}") for i in range(0, total, batch)]
    t = time.perf_counter()
    for chunk in work:
        box.accept(1, chunk)
    elapsed = time.perf_counter() - t
    box.close()
    return total / elapsed


async def bench_group_commit(folder: Path, total: int, concurrency: int,
                             body_key: bytes | None) -> float:
    box = Outbox(folder / "outbox.sqlite", body_key=body_key)
    work = ops(0, total, "g")
    queue = iter(work)

    async def worker() -> None:
        for op in queue:
            await box.accept_async(1, [op])

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t
    box.close()
    return total / elapsed


def start_gateway(folder: Path, workers: int) -> tuple[GatewayProcess, str]:
    """The real gateway with no node, rate limits out of the way; its URL and the terminal's key."""
    port = free_ports(1)[0]
    config = GatewayConfig(
        data_dir=folder / "gateway", keystore_passphrase="bench-insecure", port=port,
        public_url=f"http://127.0.0.1:{port}", cookie_secure=False, log_json=True,
        rate_limit_per_key=1e9, rate_limit_per_address=1e9, rate_limit_burst=1_000_000_000,
    )  # fmt: skip
    config_file = folder / "gateway.json"
    config_file.write_text(json.dumps(config.to_dict()))
    gateway = GatewayProcess(config_file, workers=workers)
    terminal = next(o for o in gateway.credentials()["organisations"] if o["chainOrg"] == 2)
    gateway.start()
    gateway.wait_ready(timeout=120)
    return gateway, terminal["apiKey"]


async def bench_http(url: str, key: str, start: int, total: int, batch: int, concurrency: int,
                     route: str) -> float:
    """Events/s through ``route``: ``single``, ``list`` or ``bulk`` (NDJSON)."""
    auth = {"Authorization": f"Bearer {key}"}
    requests: list[tuple[str, bytes, dict[str, str]]] = []
    for i in range(start, start + total, batch):
        items = [event(n).to_json() for n in range(i, min(i + batch, start + total))]
        if route == "single":
            requests.append(("/v1/events", json.dumps(items[0]).encode(),
                             {**auth, "Content-Type": "application/json",
                              "Idempotency-Key": f"bench-{i}"}))
        elif route == "list":
            body = {"events": [{"id": f"bench-{i + j}", **e} for j, e in enumerate(items)]}
            requests.append(("/v1/events", json.dumps(body).encode(),
                             {**auth, "Content-Type": "application/json"}))
        else:
            lines = b"\n".join(json.dumps({"id": f"bench-{i + j}", **e}).encode()
                               for j, e in enumerate(items))
            requests.append(("/v1/events/bulk", lines,
                             {**auth, "Content-Type": "application/x-ndjson"}))
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for path, body, headers in queue:
                async with session.post(url + path, data=body, headers=headers) as response:
                    text = await response.text()
                    if response.status != 202:
                        raise SystemExit(f"{path}: {response.status} {text[:300]}")

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t)


def outbox_rows(folder: Path) -> int:
    """Operations in the gateway's outbox (``<data_dir>/outbox.sqlite``, table ``ops``)."""
    with sqlite3.connect(folder / "gateway" / "outbox.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM ops").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the direct paths (clear and encrypted, alternating)")
    args = parser.parse_args()
    n = args.events
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        folder = Path(tmp)
        print(f"intake into the outbox (SQLite WAL, synchronous=FULL), {n} events per row")
        print(f"{'path (best of ' + str(args.rounds) + ', alternating)':<44} {'clear/s':>10}"
              f" {'encrypted/s':>12} {'ratio':>6}")
        body_key = os.urandom(32)
        runs: list[tuple[str, Callable[[Path, bytes | None], float]]] = [
            (f"Outbox.accept, lists of {batch}",
             lambda d, k, b=batch: bench_direct(d, min(n, 2000) if b == 1 else n, b, k))
            for batch in (1, 100, 1000)
        ]
        runs.append(("accept_async, 1 event x 64 callers",
                     lambda d, k: asyncio.run(bench_group_commit(d, n, 64, k))))
        for label, run in runs:
            best = {False: 0.0, True: 0.0}
            for r in range(args.rounds):
                for sealed in ((False, True) if r % 2 == 0 else (True, False)):
                    place = folder / f"{label.replace(' ', '_')}-{r}-{sealed}"
                    place.mkdir()
                    best[sealed] = max(best[sealed], run(place, body_key if sealed else None))
            print(f"{label:<44} {best[False]:>10,.0f} {best[True]:>12,.0f}"
                  f" {best[True] / best[False]:>6.2f}")
        print(f"{'path (the gateway encrypts outbox bodies)':<58} {'events/s':>10}")
        gateway, key = start_gateway(folder, args.workers)
        sent = 0
        try:
            for label, route, batch, conc in (
                ("POST /v1/events, 1 per request x 32 clients", "single", 1, 32),
                ("POST /v1/events, lists of 100 x 4 clients", "list", 100, 4),
                ("POST /v1/events, lists of 1,000 x 2 clients", "list", 1000, 2),
                ("POST /v1/events/bulk NDJSON, 1,000 x 2 clients", "bulk", 1000, 2),
            ):
                count = min(n, 5000) if batch == 1 else n
                rate = asyncio.run(bench_http(gateway.url, key, sent, count, batch, conc, route))
                sent += count
                print(f"{label:<58} {rate:>10,.0f}")
        finally:
            gateway.stop()
        rows = outbox_rows(folder)
        print(f"outbox rows after the HTTP runs: {rows:,} (answered 2xx: {sent:,})")
        if rows != sent:
            raise SystemExit("the outbox does not hold every accepted event")
        print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
