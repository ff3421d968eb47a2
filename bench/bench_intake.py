"""Upload intake: events accepted durably into the outbox per second (target >= 5,000/s).

What "accepted" means here is what a 2xx means: :meth:`gateway.outbox.Outbox.accept` has
committed the events with ``synchronous=FULL`` (on disk, WAL). Measured three ways on a fresh
outbox in a temporary folder:

- ``accept`` called directly with lists of 1, 100 and 1,000 events (one transaction each);
- ``accept_async`` from many concurrent callers with one event each (group commit: the
  writer thread commits every request waiting at that moment in one transaction);
- over HTTP through a minimal aiohttp handler (JSON body → canonical events → ``accept_async``
  → JSON receipts), single events from concurrent clients and bulks of 100 and 1,000.
  (``POST /v1/events`` of :mod:`gateway.api_events` adds authentication, schema validation and
  identifier checks on top; measure it there once it exists.)

Run: ``.venv/bin/python bench/bench_intake.py [--events 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.events import CanonicalEvent, Reference, Visibility
from gateway.outbox import Operation, Outbox, stored_event


def event(n: int) -> CanonicalEvent:
    return CanonicalEvent(
        event_type="TERMINAL.DISC",
        classifier="ACT",
        event_time=1_767_225_600 + n,
        subject=Reference("container", f"BNCU{n % 10_000_000:07d}"),
        location="HKHKG",
        related=(Reference("mbl", "PCOL1234567"),),
        details={"vessel": {"imo": "9321483", "name": "EVER GIVEN"}, "n": n},
        visibility=Visibility("named", (4, 11)),
    )


def ops(start: int, count: int, prefix: str) -> list[Operation]:
    return [Operation(f"{prefix}-{start + i}", "event", event(start + i)) for i in range(count)]


def bench_direct(folder: Path, total: int, batch: int) -> float:
    box = Outbox(folder / f"direct-{batch}.sqlite")
    work = [ops(i, batch, f"d{batch}") for i in range(0, total, batch)]
    t = time.perf_counter()
    for chunk in work:
        box.accept(1, chunk)
    elapsed = time.perf_counter() - t
    box.close()
    return total / elapsed


async def bench_group_commit(folder: Path, total: int, concurrency: int) -> float:
    box = Outbox(folder / f"group-{concurrency}.sqlite")
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


async def bench_http(folder: Path, total: int, batch: int, concurrency: int) -> float:
    box = Outbox(folder / f"http-{batch}-{concurrency}.sqlite")
    app = web.Application(client_max_size=64 << 20)

    async def accept(request: web.Request) -> web.Response:
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        batch_ops = [Operation(i["id"], "event", stored_event(json.dumps(i["event"])))
                     for i in items]
        receipts = await box.accept_async(1, batch_ops)
        return web.json_response([r.to_json() for r in receipts], status=202)

    app.router.add_post("/events", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    bodies = [
        json.dumps([{"id": f"h-{n}", "event": event(n).to_json()} for n in range(i, i + batch)])
        for i in range(0, total, batch)
    ]
    queue = iter(bodies)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for body in queue:
                async with session.post(
                    f"http://127.0.0.1:{port}/events", data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 202, await response.text()
                    await response.read()

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t
    await runner.cleanup()
    box.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        folder = Path(tmp)
        print(f"intake into the outbox (SQLite WAL, synchronous=FULL), {n} events per row")
        print(f"{'path':<44} {'events/s':>10}")
        for batch in (1, 100, 1000):
            count = min(n, 2000) if batch == 1 else n
            rate = bench_direct(folder, count, batch)
            print(f"{f'Outbox.accept, lists of {batch}':<44} {rate:>10,.0f}")
        for conc in (64,):
            rate = asyncio.run(bench_group_commit(folder, n, conc))
            print(f"{f'accept_async, 1 event x {conc} callers':<44} {rate:>10,.0f}")
        for batch, conc in ((1, 32), (100, 4), (1000, 2)):
            count = min(n, 5000) if batch == 1 else n
            rate = asyncio.run(bench_http(folder, count, batch, conc))
            print(f"{f'HTTP, {batch} per request x {conc} clients':<44} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
