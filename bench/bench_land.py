"""Land leg: pick-up token (QR) verification time, token size, QR rendering.

Three measurements, each over ``--tokens`` different tokens (2 containers, a CCRN; the claims a
real job carries), signed with a land key made from a keystore-sized secret:

(a) **offline verification** — :func:`gateway.land.token.verify` (form, key id, Ed25519
    signature, canonical-JSON claims against their schema, validity window): what a terminal's
    or warehouse's own verifier does with the published key. Target: < 5 ms per token.
(b) **verification at the gate** — :meth:`gateway.land.service.LandService.check_token` on a
    ``land.db`` in a temporary folder holding the tokens' jobs: (a) plus the job's state, the
    token's nonce against the job's current one (revocation) and the used-nonce lookup (replay).
    The chain check that follows at a gate-out (the pick-up right from the current events) is
    the tracking read the other benches measure.
(c) **QR code** — the token's length, the QR version segno picks (error correction M), and the
    time to render SVG and PNG.

(d) **trucks sharing positions** (``--trucks N``, the issue's load: 5,000 trucks every 10 s) —
    a devnet (4 validators, 1 observer) and the gateway, each its own process
    (:class:`devnet.gateway.Port`); ``N`` planned jobs of the demo haulier written into the
    gateway's ``land.db`` before it starts (fast setup through the land store, with the
    keystore's ``land`` secret; positions need no containers on chain); then every truck posts
    its position every ``--interval`` seconds for ``--minutes`` through the real API
    (``POST /v1/land/jobs/{id}/positions``, one position a batch, as a phone sharing every 10 s
    sends it, the haulier's API key), spread evenly over the interval. Measured: positions
    offered and accepted (202 ``accepted``), sends that started late; a watcher (the pick-up
    terminal's API key) polling ``GET /v1/land/jobs/{id}/positions`` every 100 ms for one
    truck's new position twice a second — the time from the POST's start until ``latest``
    shows it (p50, p95); the gateway process's CPU and RSS (``/proc``); afterwards every job's
    positions read back through the API and counted against the accepted ones (no loss). As a
    yardstick of what one core does on the machine at that moment: the bare telemetry store's
    insert rate for the same readings, one per call (sealed, indexed, committed).

Run: ``.venv/bin/python -m bench.bench_land [--tokens 2000]``;
``nice -n 10 .venv/bin/python -m bench.bench_land --tokens 200 --trucks 5000 --interval 10
--minutes 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import segno
from aiohttp import web

from devnet.gateway import Port
from gateway.confidential.keystore import open_keystore
from gateway.events.identifiers import container_check_digit
from gateway.events.model import Reference, Visibility
from gateway.isotime import iso_time
from gateway.land import token as tokens
from gateway.land.api import qr_image
from gateway.land.model import Job, Place
from gateway.land.service import LandService, LandSettings, new_job_id
from gateway.land.store import SECRET as STORE_SECRET
from gateway.land.store import open_store
from gateway.principal import Principal
from gateway.telemetry.model import Reading
from gateway.telemetry.store import TelemetryStore

#: Consortium ids of the demo haulier, the pick-up terminal and the delivery warehouse.
HAULIER, TERMINAL, WAREHOUSE = 7, 2, 8


def _box(owner: str, serial: int) -> str:
    first = f"{owner}{serial:06d}"
    return first + str(container_check_digit(first))


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def _stats(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (f"median {statistics.median(ordered):.3f} ms, p95 {p95:.3f} ms, "
            f"max {ordered[-1]:.3f} ms")


def bench_tokens(count: int) -> None:
    """(a), (b), (c): tokens verified offline and at the gate, QR rendering."""
    n = max(10, count)
    key = tokens.key_from_secret(secrets.token_bytes(32))
    now = int(time.time())
    who = Principal(org_id=1, chain_org=2, user_id=None, role="system", scopes=frozenset(),
                    via="api_key")
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder), secret=secrets.token_bytes(32))
        service = LandService(web.Application(), store, key, LandSettings())
        texts = []
        for i in range(n):
            boxes = (_box("CSQU", 2 * i), _box("CSQU", 2 * i + 1))
            job = Job(id=new_job_id(), org_id=1, haulier=7, containers=boxes,
                      pickup=Place(2, "HKHKG", "HIT4"), delivery=Place(8, "HKHKG", "Tsing Yi"),
                      window_from=now - 3600, window_to=now + 3600, vehicle="AB1234",
                      ccrn="RI261207000123", driver_id=None, nonce=tokens.new_nonce(),
                      created=now)
            store.add_job(job)
            claims = tokens.Claims(job=job.id, containers=boxes,
                                   rights={b: "carrier-release" for b in boxes},
                                   ccrn=job.ccrn, vehicle=job.vehicle, terminal=2, warehouse=8,
                                   not_before=job.window_from, expires=job.window_to,
                                   nonce=job.nonce)
            texts.append(tokens.sign(claims, key))
        public = key.public_key()
        it = iter(texts * 2)
        offline = _timed(lambda: tokens.verify(next(it), public, now), n)
        it = iter(texts * 2)
        at_gate = _timed(lambda: service.check_token(next(it), "gate-out", who), n)
        store.close()
    sample = texts[0]
    qr = segno.make_qr(sample, error="m")
    svg = _timed(lambda: qr_image(sample, "svg"), 50)
    png = _timed(lambda: qr_image(sample, "png"), 50)
    print(f"tokens: {n}, {len(sample)} characters each (2 containers, CCRN); QR version "
          f"{qr.version} ({qr.symbol_size()[0]} modules with the quiet zone), level M")
    print(f"(a) offline verification: {_stats(offline)}  (target < 5 ms)")
    print(f"(b) verification at the gate (+ job state, revocation, replay lookups in land.db): "
          f"{_stats(at_gate)}")
    print(f"(c) QR rendering: SVG {_stats(svg)}; PNG {_stats(png)}")



# -- (d) trucks sharing positions -----------------------------------------------------------
def _proc_figures(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of ``pid`` and its process group."""
    cpu, rss = 0.0, 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pid and int(entry.name) != pid:  # fields[2]: process group
                continue
            cpu += (int(fields[11]) + int(fields[12])) / tick
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


def _waited(pid: int) -> float:
    """Seconds the process's main thread (the gateway's event loop) spent runnable but waiting
    for a CPU (``/proc/<pid>/schedstat``, second field)."""
    try:
        return int((Path("/proc") / str(pid) / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _store_rate(count: int) -> tuple[float, float]:
    """The bare telemetry store: truck positions added one per call (readings/s wall, and CPU
    ms per reading) — what one core does on this machine now."""
    with tempfile.TemporaryDirectory(prefix="bench-land-store-") as tmp:
        store = TelemetryStore(Path(tmp) / "telemetry.sqlite", secret=secrets.token_bytes(32))
        try:
            now = int(time.time())
            readings = [Reading("truck-position", now - count + i, Reference("truck", f"T{i % 50}"),
                                {"lat": 22.3 + i * 1e-6, "lon": 114.1, "speed": 12.0,
                                 "job": f"J{i % 50}", "vehicle": "AB1234"})
                        for i in range(count)]
            wall, cpu = time.perf_counter(), time.process_time()
            for reading in readings:
                store.add(3, [reading], Visibility("reference", (2, 8)), owner=7)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            store.close()
    return count / wall, cpu * 1000 / count


def _plant_jobs(port: Port, trucks: int, seconds: float) -> list[str]:
    """``trucks`` planned jobs of the demo haulier in the gateway's ``land.db`` (before it
    starts), their window covering the run."""
    config = port.gateway.config
    creds = port.gateway.credentials()
    org = next(o["orgId"] for o in creds["organisations"] if o["chainOrg"] == HAULIER)
    keystore = open_keystore(config)
    store = open_store(config.data_dir, secret=keystore.secret(STORE_SECRET))
    now = int(time.time())
    ids = []
    try:
        for i in range(trucks):
            job = Job(id=new_job_id(), org_id=org, haulier=HAULIER, containers=(_box("BNTU", i),),
                      pickup=Place(TERMINAL, "HKHKG", "HIT4"),
                      delivery=Place(WAREHOUSE, "HKHKG", "8 Tsing Yi Road"),
                      window_from=now - 600, window_to=now + int(seconds) + 3600,
                      vehicle=f"TK{i:05d}", ccrn=None, driver_id=None, nonce=tokens.new_nonce(),
                      created=now)
            store.add_job(job)
            ids.append(job.id)
    finally:
        store.close()
    return ids


@dataclass
class Tally:
    """What the load saw."""

    offered: int = 0
    accepted: int = 0
    refused: int = 0
    failed: int = 0
    late: int = 0
    per_job: dict[str, int] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    visible_s: list[float] = field(default_factory=list)
    unseen: int = 0
    errors: dict[str, int] = field(default_factory=dict)


async def _post(session: aiohttp.ClientSession, url: str, key: str, job: str, when: int,
                seq: int, tally: Tally) -> None:
    body = {"positions": [{"time": iso_time(when), "lat": round(22.33 + (seq % 997) * 1e-5, 6),
                           "lon": round(114.12 + (seq % 991) * 1e-5, 6), "speed": 11.5,
                           "heading": 40, "accuracy": 8}]}
    start = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/land/jobs/{job}/positions", json=body,
                                headers={"Authorization": f"Bearer {key}"}) as resp:
            answer = await resp.json(content_type=None)
            if resp.status == 202:
                tally.accepted += answer["accepted"]
                tally.refused += len(answer["refused"])
                for refusal in answer["refused"]:
                    tally.errors[refusal["code"]] = tally.errors.get(refusal["code"], 0) + 1
                tally.per_job[job] = tally.per_job.get(job, 0) + answer["accepted"]
            else:
                tally.failed += 1
                code = f"{resp.status} {(answer or {}).get('code', '')}"
                tally.errors[code] = tally.errors.get(code, 0) + 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        tally.failed += 1
        tally.errors[type(exc).__name__] = tally.errors.get(type(exc).__name__, 0) + 1
    tally.post_ms.append((time.perf_counter() - start) * 1000)


async def _watch(session: aiohttp.ClientSession, url: str, key: str, job: str, when: int,
                 sent: float, tally: Tally) -> None:
    """Poll the job's positions as the pick-up terminal until ``latest`` is the one sent."""
    want = iso_time(when)
    deadline = sent + 30
    while time.perf_counter() < deadline:
        try:
            async with session.get(f"{url}/v1/land/jobs/{job}/positions",
                                   headers={"Authorization": f"Bearer {key}"}) as resp:
                found = await resp.json(content_type=None)
            latest = (found or {}).get("latest") if resp.status == 200 else None
            if latest and latest.get("time") == want:
                tally.visible_s.append(time.perf_counter() - sent)
                return
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(0.1)
    tally.unseen += 1


async def _drive(url: str, hauler: str, watcher: str, jobs: list[str], interval: float,
                 seconds: float, pid: int, nodes: list[int]) -> dict[str, Any]:
    tally = Tally()
    slot = 0.1  # the trucks due in each 100 ms are sent together
    per_slot = len(jobs) * slot / interval
    connector = aiohttp.TCPConnector(limit=128)
    timeout = aiohttp.ClientTimeout(total=60)
    tasks: set[asyncio.Task[None]] = set()
    samples: list[tuple[float, float, int]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu0, _ = _proc_figures(pid)
        nodes0 = sum(_proc_figures(n)[0] for n in nodes)
        waited0 = _waited(pid)
        own0 = time.process_time()
        start, wall = time.perf_counter(), time.time()
        next_watch = start
        sent = 0
        slots = int(seconds / slot)
        for n in range(slots):
            due = start + n * slot
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                tally.late += int((n + 1) * per_slot) - sent
            upto = int((n + 1) * per_slot)
            for k in range(sent, upto):
                job = jobs[k % len(jobs)]
                when = int(wall + (k // len(jobs)) * interval + (k % len(jobs)) * interval
                           / len(jobs))
                tally.offered += 1
                post = asyncio.create_task(_post(session, url, hauler, job, when, k, tally))
                tasks.add(post)
                post.add_done_callback(tasks.discard)
                if time.perf_counter() >= next_watch:
                    next_watch += 0.5
                    watch = asyncio.create_task(_watch(session, url, watcher, job, when,
                                                       time.perf_counter(), tally))
                    tasks.add(watch)
                    watch.add_done_callback(tasks.discard)
            sent = upto
            if n % int(10 / slot) == 0:
                cpu, rss = _proc_figures(pid)
                samples.append((time.perf_counter() - start, cpu, rss))
        offered_for = time.perf_counter() - start
        if tasks:
            await asyncio.wait(set(tasks), timeout=90)
        elapsed = time.perf_counter() - start
        cpu1, rss1 = _proc_figures(pid)
        nodes1 = sum(_proc_figures(n)[0] for n in nodes)
        waited1 = _waited(pid)
        own1 = time.process_time()
        samples.append((elapsed, cpu1, rss1))
        # no loss: every job's positions read back through the API, counted
        readable = 0
        gate = asyncio.Semaphore(16)

        async def count(job: str) -> int:
            async with gate, session.get(f"{url}/v1/land/jobs/{job}/positions",
                                         headers={"Authorization": f"Bearer {hauler}"}) as r:
                return len((await r.json(content_type=None))["positions"])

        counted = await asyncio.gather(*(count(j) for j in jobs))
        readable = sum(counted)
        short = sum(1 for j, c in zip(jobs, counted, strict=True) if c < tally.per_job.get(j, 0))
    rss_max = max(r for _, _, r in samples)
    return {"tally": tally, "offered_for": offered_for, "elapsed": elapsed,
            "cpu": cpu1 - cpu0, "rss_max": rss_max, "nodes_cpu": nodes1 - nodes0,
            "own_cpu": own1 - own0, "waited": waited1 - waited0, "readable": readable,
            "jobs_short": short}


#: ``sitecustomize`` of a profiled gateway: cProfile from start-up, written out at exit.
PROFILER = """import atexit, cProfile, os
_profile = cProfile.Profile()
_profile.enable()
atexit.register(lambda: (_profile.disable(), _profile.dump_stats(os.environ["PL_BENCH_PROFILE"])))
"""


def bench_trucks(trucks: int, interval: float, minutes: float, store_readings: int,
                 profile: Path | None) -> None:
    """(d): the load on a devnet and the gateway, each its own process."""
    seconds = minutes * 60
    root = Path(tempfile.mkdtemp(prefix="bench-land-"))
    port = Port(root, gateway_options={
        "rate_limit_per_key": 100_000.0, "rate_limit_per_address": 100_000.0,
        "rate_limit_burst": 200_000})
    if profile is not None:  # the gateway's process runs under cProfile (it slows it)
        site = root / "profile-site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(PROFILER)
        port.gateway.env.update(PYTHONPATH=str(site), PL_BENCH_PROFILE=str(profile.resolve()))
    try:
        began = time.perf_counter()
        jobs = _plant_jobs(port, trucks, seconds)
        planted = time.perf_counter() - began
        port.start()
        assert port.gateway._proc is not None  # started just above
        pid = port.gateway._proc.pid
        hauler = port.clients[HAULIER].api_key or ""
        watcher = port.clients[TERMINAL].api_key or ""
        rate_before, cpu_ms_before = _store_rate(store_readings)
        load0 = os.getloadavg()
        nodes = [p for i in range(len(port.layout.nodes)) if (p := port.devnet.pid(i))]
        out = asyncio.run(_drive(port.gateway.url, hauler, watcher, jobs, interval, seconds,
                                 pid, nodes))
        load1 = os.getloadavg()
        rate_after, cpu_ms_after = _store_rate(store_readings)
    finally:
        port.stop()
        shutil.rmtree(root, ignore_errors=True)
    tally: Tally = out["tally"]
    accepted_rate = tally.accepted / out["offered_for"]
    gateway_ms = out["cpu"] * 1000 / max(1, tally.accepted)
    store_rate = (rate_before + rate_after) / 2
    store_ms = (cpu_ms_before + cpu_ms_after) / 2
    vis = sorted(tally.visible_s)
    p50 = statistics.median(vis) if vis else float("nan")
    p95 = vis[max(0, int(len(vis) * 0.95) - 1)] if vis else float("nan")
    posts = sorted(tally.post_ms)
    lossless = (tally.accepted == tally.offered and out["readable"] == tally.accepted
                and not out["jobs_short"])
    print(f"\n(d) {trucks:,} trucks, a position every {interval:g} s for {minutes:g} min "
          f"({trucks / interval:,.0f} positions/s offered); {len(jobs):,} jobs planted in "
          f"{planted:.1f} s; devnet 4 validators + 1 observer and the gateway running")
    print(f"  offered {tally.offered:,}, accepted {tally.accepted:,} "
          f"({accepted_rate:,.1f}/s over {out['offered_for']:.0f} s), refused {tally.refused}, "
          f"failed requests {tally.failed} {tally.errors or ''}, sends > 1 s late {tally.late:,}")
    print(f"  POST round trip: median {statistics.median(posts):.1f} ms, "
          f"p95 {posts[int(len(posts) * 0.95) - 1]:.1f} ms, max {posts[-1]:.0f} ms")
    print(f"  read back afterwards: {out['readable']:,} positions of {tally.accepted:,} "
          f"accepted; jobs short: {out['jobs_short']} (no loss: "
          f"{'yes' if lossless else 'NO'})")
    print(f"  visible to a watcher (GET latest, terminal): p50 {p50:.3f} s, p95 {p95:.3f} s "
          f"over {len(vis)} watched, {tally.unseen} not seen within 30 s  (target p50 <= 2 s)")
    print(f"  gateway process: {out['cpu']:.0f} CPU s in {out['elapsed']:.0f} s "
          f"({out['cpu'] / out['elapsed'] * 100:.0f} % of a core), {gateway_ms:.2f} CPU ms per "
          f"accepted position; RSS max {out['rss_max'] / 2**20:.0f} MiB; its event loop's "
          f"thread waited {out['waited']:.0f} s runnable for a CPU")
    print(f"  one core now: the bare telemetry store adds {store_rate:,.0f} positions/s one per "
          f"call ({store_ms:.2f} CPU ms each; before {rate_before:,.0f}/s, after "
          f"{rate_after:,.0f}/s): the gateway's CPU per position is "
          f"{gateway_ms / store_ms:.1f}x the store's")
    print(f"  beside it: the devnet's {len(port.layout.nodes)} nodes {out['nodes_cpu']:.0f} CPU s "
          f"({out['nodes_cpu'] / out['elapsed'] * 100:.0f} % of a core), this load generator "
          f"and watcher {out['own_cpu']:.0f} CPU s ({out['own_cpu'] / out['elapsed'] * 100:.0f} "
          f"% of a core), on {os.cpu_count()} cores")
    print(f"  load average: {load0[0]:.1f} before, {load1[0]:.1f} after")
    if profile is not None and profile.exists():
        print(f"\n  gateway profile ({profile}), by own time:")
        stats = pstats.Stats(str(profile))
        stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--trucks", type=int, default=0, help="(d): 0 skips it")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--store-readings", type=int, default=2000)
    parser.add_argument("--profile", type=Path, help="(d): run the gateway under cProfile, "
                        "write its stats here and print the top")
    args = parser.parse_args()
    bench_tokens(args.tokens)
    if args.trucks > 0:
        bench_trucks(args.trucks, args.interval, args.minutes, args.store_readings,
                     args.profile)


if __name__ == "__main__":
    main()
