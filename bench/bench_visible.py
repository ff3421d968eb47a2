#!/usr/bin/env python3
"""Upload → finalized → visible in tracking, on a 4-validator devnet behind the gateway.

    .venv/bin/python bench/bench_visible.py                      # 200 at 5/s, then 50/s for 20 s
    .venv/bin/python bench/bench_visible.py --baseline ce0fb08   # also the gateway of that commit
    .venv/bin/python bench/bench_visible.py --variant "poll50:indexer_poll_ms=50"
    .venv/bin/python bench/bench_visible.py --quick              # a smoke test

Creates a fresh devnet (:mod:`devnet.layout`, :class:`devnet.processes.Devnet`: 4 validator
processes and an observer, QBFT over TLS on loopback) and the gateway as its own process
(:class:`devnet.gateway.GatewayProcess`:
``portledger gateway serve`` with the demo organisations' accounts), then, per *variant* (the
gateway restarted on the same data folder with other settings, or run from another commit's
source), two phases:

- **steady**: ``--events`` single uploads offered at ``--rate`` per second;
- **burst**: ``--burst-rate`` uploads per second for ``--burst-seconds``.

Each upload is one canonical event (``POST /v1/events`` with an ``Idempotency-Key``) from a
terminal operator about a container number of its own (so a tracking view holds exactly that
event), sealed for a named reader organisation (a carrier). Its latency is wall clock from just
before the POST to the moment ``GET /v1/track/{container}`` first shows it — as the uploading
organisation and as the named reader. The bench polls ``GET /v1/submissions/{key}`` every
``--poll-ms`` until the gateway reports the upload final, then ``GET /v1/track/{container}``
as the uploader every ``--poll-ms`` until it shows the event, then as the reader (both read the
same indexed event). Tracking is not polled before "final" because its "not found" answer is
its most expensive (near-match suggestions over every reference the caller has tracked): dozens
of them per upload loaded the gateway being measured. Column ``hit1`` is the share of uploads
already shown at the first tracking poll — visible perhaps before "final", so for those the
figure is an upper bound; ``final p50`` (from before the POST to the moment the submitter
marked the upload final, by the gateway's clock) is then the matching lower bound, since the
indexer indexes the block once the submitter reports it final (or at its own next poll). ``poll gap`` is the mean gap between tracking polls achieved (at most
``--max-requests`` polls are in flight and at most ``--max-rps`` are sent per second, in all;
when many uploads are pending, polls space out): the resolution of the figures.

The breakdown uses the gateway's own timestamps in its outbox (read-only, after each phase:
``accepted_at``, the carrying transaction's ``created_at`` — signed, persisted and sent right
after — and ``done_at`` when the submitter saw the receipt) and a watcher that polls the
gateway's first node (the observer) every 20 ms for its head, so "in block" is the moment the
block holding the event was first seen there (header timestamps are whole seconds):

    POST      before the POST → its 202 answer (the outbox's group commit)
    →sent     accepted → transaction signed and sent (batch window, sealing, signing)
    →block    sent → its block seen on the gateway's node (QBFT, the block period, gossip)
    →final    block seen → the submitter marked the operation final (receipt polling)
    →visible  final → first shown by tracking to the uploader (indexer, read model, view)

The gateway's rate limits are raised for the bench (its polls are not users). Exit status 0; 1 if
an event was lost (refused, failed, or not visible to both organisations within ``--timeout``);
2 if the devnet or the gateway did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from devnet.errors import DevnetError
from devnet.gateway import GatewayProcess, write_config
from devnet.layout import create_devnet
from devnet.processes import Devnet
from gateway.events.identifiers import container_check_digit

ROOT = Path(__file__).resolve().parent.parent


#: The uploading organisation (a terminal operator) and the named reader (a carrier): chain ids.
UPLOADER, READER = 2, 4
#: Target of issue 5.
TARGET_P50 = 2.0
#: How often the block watcher asks the gateway's first node for its head.
WATCH_INTERVAL = 0.02
#: Settings that take the gateway's rate limits out of the measurement.
UNLIMITED = {"rate_limit_per_key": 1e6, "rate_limit_per_address": 1e6, "rate_limit_burst": 10**6}


class BenchFailed(Exception):
    """The benchmark cannot go on (devnet or gateway down, refused warm-up)."""


@dataclass(frozen=True)
class Variant:
    """One gateway set-up measured on the shared devnet."""

    label: str
    """Its name in the tables."""
    overrides: dict[str, Any]
    """Gateway configuration keys changed from the defaults (rate limits aside)."""
    source: Path | None = None
    """Folder whose ``node`` package runs the gateway; None = this tree."""


@dataclass
class Sample:
    """One upload and what the bench saw of it."""

    key: str
    """Its idempotency key."""
    container: str
    """The container number it is about (unique to it)."""
    t0: float
    """Wall clock just before the POST."""
    answered: float | None = None
    """Wall clock of the POST's answer."""
    status: int = 0
    """HTTP status of the POST."""
    owner_seen: float | None = None
    """First time tracking showed it to the uploader."""
    reader_seen: float | None = None
    """First time tracking showed it to the named reader."""
    polls: int = 0
    """Tracking polls as the uploader until it showed the event."""
    poll_span: float = 0.0
    """Seconds from the first to the last of those polls (for the mean gap)."""
    accepted_at: float | None = None
    """The outbox's acceptance time."""
    sent_at: float | None = None
    """Creation time of its transaction (signed, persisted, then sent at once)."""
    final_at: float | None = None
    """When the submitter marked it final."""
    final_seen: float | None = None
    """When ``GET /v1/submissions/{key}`` first said final."""
    block: int | None = None
    """The block that holds it."""
    block_seen: float | None = None
    """When the watcher first saw that block on the gateway's first node."""
    error: str = ""
    """Why it is lost, if it is."""

    @property
    def lost(self) -> bool:
        return bool(self.error) or self.owner_seen is None or self.reader_seen is None


@dataclass
class PhaseResult:
    """The samples of one phase of one variant."""

    variant: str
    phase: str
    offered_rate: float
    samples: list[Sample]
    load: tuple[float, float, float]
    duration: float


class BlockWatcher:
    """First-seen wall-clock time of every block number on one node (head polled every 20 ms)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[int, float] = {}
        self.head = -1
        self._task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession) -> None:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
        while True:
            try:
                async with session.post(self.url, json=body) as resp:
                    head = int((await resp.json())["result"], 16)
                now = time.time()
                for number in range(self.head + 1, head + 1):
                    self.seen.setdefault(number, now)
                self.head = max(self.head, head)
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                pass
            await asyncio.sleep(WATCH_INTERVAL)

    def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self.run(session))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Uploads:
    """Offers uploads at a rate and follows each until both organisations see it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, keys: dict[int, str],
                 args: argparse.Namespace, run_id: str, watcher: BlockWatcher) -> None:
        self.session = session
        self.watcher = watcher
        self.base_url = base_url
        self.auth = {org: {"Authorization": f"Bearer {key}"} for org, key in keys.items()}
        self.poll = args.poll_ms / 1000
        self.timeout = args.timeout
        self.requests = asyncio.Semaphore(args.max_requests)
        self.min_gap = 1.0 / args.max_rps
        self.next_slot = 0.0
        self.serials = itertools.count(1)
        self.run_id = run_id

    def next_container(self, owner: str) -> str:
        first = f"{owner}{next(self.serials):06d}"
        return first + str(container_check_digit(first))

    def body(self, sample: Sample) -> dict[str, Any]:
        return {
            "type": "TERMINAL.DISC", "classifier": "ACT", "time": "2026-11-25T08:00:00Z",
            "subject": {"kind": "container", "value": sample.container}, "location": "HKHKG",
            "details": {"bench": sample.key},
            "visibility": {"mode": "named", "readers": [READER]},
        }  # fmt: skip

    async def visible(self, org: int, container: str) -> bool:
        await self.slot()
        async with self.requests, self.session.get(f"{self.base_url}/v1/track/{container}",
                                    headers=self.auth[org]) as resp:
            if resp.status != 200:
                await resp.read()
                return False
            view = await resp.json()
        return bool(view.get("timeline"))

    async def slot(self) -> None:
        """Wait for the next request slot: at most ``--max-rps`` polls per second in all."""
        now = time.monotonic()
        at = max(now, self.next_slot)
        self.next_slot = at + self.min_gap
        if at > now:
            await asyncio.sleep(at - now)

    async def submission(self, key: str) -> dict[str, Any]:
        await self.slot()
        async with self.requests, self.session.get(f"{self.base_url}/v1/submissions/{key}",
                                                   headers=self.auth[UPLOADER]) as resp:
            body: dict[str, Any] = await resp.json()
        return body

    async def until_final(self, sample: Sample, deadline: float) -> bool:
        """Poll ``GET /v1/submissions/{key}`` every poll interval until it is final (False:
        failed or not final in time); note its block and when the watcher first saw it."""
        while time.time() < deadline:
            started = time.time()
            try:
                body = await self.submission(sample.key)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                body = {}
            if body.get("status") == "failed":
                sample.error = f"failed: {body.get('error')}"
                return False
            if body.get("status") == "final":
                sample.final_seen = time.time()
                sample.block = body.get("block")
                if sample.block is not None:
                    sample.block_seen = self.watcher.seen.get(sample.block)
                return True
            await asyncio.sleep(max(0.0, self.poll - (time.time() - started)))
        sample.error = f"not final within {self.timeout:g} s"
        return False

    async def until_visible(self, sample: Sample, org: int, deadline: float) -> float | None:
        """Poll tracking as ``org`` every poll interval; when it first showed the event."""
        first = time.time()
        polls = 0
        while time.time() < deadline:
            started = time.time()
            try:
                shown = await self.visible(org, sample.container)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                shown = False
            now = time.time()
            polls += 1
            if org == UPLOADER:
                sample.polls, sample.poll_span = polls, now - first
            if shown:
                return now
            await asyncio.sleep(max(0.0, self.poll - (time.time() - started)))
        return None

    async def one(self, sample: Sample) -> None:
        headers = {**self.auth[UPLOADER], "Idempotency-Key": sample.key}
        try:
            async with self.session.post(f"{self.base_url}/v1/events", json=self.body(sample),
                                         headers=headers) as resp:
                sample.status = resp.status
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            sample.error = f"POST failed: {exc!r}"
            return
        sample.answered = time.time()
        if sample.status not in (200, 201, 202):
            sample.error = f"POST answered {sample.status}: {text[:200]}"
            return
        deadline = sample.t0 + self.timeout
        # Tracking is polled from the moment the gateway reports the upload final (submission
        # polls are cheap; a tracking "not found" is the API's most expensive answer, and many
        # of them load the gateway measured). The reader is polled once the uploader sees it:
        # both read the same indexed event. ``first_hit`` counts uploads already visible at the
        # first tracking poll (visible maybe before "final": then the figure is an upper bound).
        if not await self.until_final(sample, deadline):
            return
        sample.owner_seen = await self.until_visible(sample, UPLOADER, deadline)
        if sample.owner_seen is not None:
            sample.reader_seen = await self.until_visible(sample, READER, deadline)
        if sample.owner_seen is None or sample.reader_seen is None:
            sample.error = f"not visible within {self.timeout:g} s"

    async def phase(self, label: str, count: int, rate: float, owner: str) -> list[Sample]:
        samples: list[Sample] = []
        tasks = []
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sample = Sample(key=f"{self.run_id}-{label}-{i}",
                            container=self.next_container(owner), t0=time.time())
            samples.append(sample)
            tasks.append(asyncio.create_task(self.one(sample)))
        await asyncio.gather(*tasks)
        return samples


def fill_breakdown(samples: list[Sample], outbox_db: Path) -> None:
    """The gateway's own timestamps, read from its outbox (read-only)."""
    db = sqlite3.connect(f"file:{outbox_db}?mode=ro", uri=True, timeout=30)
    try:
        by_key = {s.key: s for s in samples}
        rows = db.execute(
            "SELECT o.idem_key, o.accepted_at, o.done_at, t.created_at FROM ops o"
            " LEFT JOIN txs t ON t.tx_id = o.tx_id WHERE o.idem_key LIKE ?",
            (samples[0].key.rsplit("-", 1)[0] + "-%",),
        ).fetchall()
    finally:
        db.close()
    for key, accepted_at, done_at, created_at in rows:
        sample = by_key.get(key)
        if sample is not None:
            sample.accepted_at, sample.final_at, sample.sent_at = accepted_at, done_at, created_at


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def spans(samples: list[Sample], a: str, b: str) -> list[float]:
    out = []
    for s in samples:
        x, y = getattr(s, a), getattr(s, b)
        if x is not None and y is not None:
            out.append(y - x)
    return out


TABLE = (f"{'variant':<14} {'phase':<7} {'n':>5} {'lost':>4} {'final p50':>9} {'p50 ms':>7} "
         f"{'p90':>6} {'p99':>6} {'max':>6} {'reader p50':>10} {'p99':>6} {'poll gap':>8} "
         f"{'hit1':>4}  "
         "p50 of: POST →sent →block →final →visible  (load)")


def row(result: PhaseResult) -> str:
    s = result.samples
    owner = spans(s, "t0", "owner_seen")
    reader = spans(s, "t0", "reader_seen")
    gaps = [x.poll_span / (x.polls - 1) for x in s if x.polls > 1]
    parts = [
        pct(spans(s, "t0", "answered"), 50), pct(spans(s, "accepted_at", "sent_at"), 50),
        pct(spans(s, "sent_at", "block_seen"), 50), pct(spans(s, "block_seen", "final_at"), 50),
        pct(spans(s, "final_at", "owner_seen"), 50),
    ]
    lost = sum(x.lost for x in s)
    return (
        f"{result.variant:<14} {result.phase:<7} {len(s):>5} {lost:>4} "
        f"{ms(pct(spans(s, 't0', 'final_at'), 50)):>9} {ms(pct(owner, 50)):>7} "
        f"{ms(pct(owner, 90)):>6} {ms(pct(owner, 99)):>6} {ms(max(owner, default=None)):>6} "
        f"{ms(pct(reader, 50)):>10} {ms(pct(reader, 99)):>6} "
        f"{ms(statistics.fmean(gaps) if gaps else None):>8} "
        f"{sum(x.polls == 1 for x in s) / max(1, len(s)):>4.0%}  "
        + " ".join(f"{ms(p):>5}" for p in parts)
        + f"  ({result.load[0]:.1f})"
    )


def source_tree(rev: str, into: Path) -> Path:
    """``git archive`` of ``rev`` unpacked into ``into`` (the repository is only read)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                          capture_output=True, timeout=120).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def parse_variant(text: str) -> Variant:
    """``label`` or ``label:key=value,key=value`` (values are JSON numbers or strings)."""
    label, _, rest = text.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = int(value)
        except ValueError:
            try:
                overrides[key.strip()] = float(value)
            except ValueError:
                overrides[key.strip()] = value
    return Variant(label or "variant", overrides)


async def measure(variant: Variant, layout: Any, args: argparse.Namespace,
                  owners: Any) -> list[PhaseResult]:
    """Start the gateway of ``variant``, warm it up, run both phases, stop it."""
    config = write_config(layout, port=args.gateway_port, **UNLIMITED, **variant.overrides)
    # Another commit's gateway: its folder first on the path, and not the working directory
    # (PYTHONSAFEPATH), which ``python -m`` would otherwise put before it.
    env = ({"PYTHONPATH": str(variant.source), "PYTHONSAFEPATH": "1"} if variant.source
           else None)
    gateway = GatewayProcess(config, env=env)
    creds = gateway.credentials()
    keys = {o["chainOrg"]: o["apiKey"] for o in creds["organisations"]}
    outbox_db = gateway.config.path("outbox.sqlite")
    gateway.start()
    results = []
    try:
        gateway.wait_ready(timeout=120)
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=args.max_requests + 64)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            watcher = BlockWatcher(layout.observers[0].rpc_url)
            watcher.start(session)
            run_id = f"{variant.label.replace(' ', '_')}-{int(time.time())}"
            uploads = Uploads(session, gateway.url, keys, args, run_id, watcher)
            warm = await uploads.phase("warm", 3, 2.0, next(owners))
            if any(s.lost for s in warm):
                raise BenchFailed(f"warm-up upload not visible: {[s.error for s in warm]}\n"
                                  + gateway.log_tail())
            phases = [("steady", args.events, args.rate),
                      ("burst", round(args.burst_rate * args.burst_seconds), args.burst_rate)]
            for phase, count, rate in phases:
                if count <= 0:
                    continue
                started = time.monotonic()
                samples = await uploads.phase(phase, count, rate, next(owners))
                duration = time.monotonic() - started
                fill_breakdown(samples, outbox_db)
                result = PhaseResult(variant.label, phase, rate, samples, os.getloadavg(),
                                     duration)
                results.append(result)
                print(row(result), flush=True)
                for s in samples:
                    if s.lost:
                        print(f"   lost {s.key} ({s.container}): {s.error or 'not visible'}",
                              flush=True)
                await asyncio.sleep(args.pause)
            await watcher.stop()
    finally:
        gateway.stop()
    return results


def owner_codes() -> Any:
    """Distinct container owner codes (three letters + U) for every phase of the run."""
    for a, b in itertools.product("BCDFGHJKLMNPRSTVWXYZ", repeat=2):
        yield f"Q{a}{b}U"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="uploads of the steady phase")
    parser.add_argument("--rate", type=float, default=5.0, help="steady uploads per second")
    parser.add_argument("--burst-rate", type=float, default=50.0)
    parser.add_argument("--burst-seconds", type=float, default=20.0)
    parser.add_argument("--poll-ms", type=float, default=40.0,
                        help="tracking poll interval per pending event")
    parser.add_argument("--max-requests", type=int, default=16,
                        help="most polls in flight")
    parser.add_argument("--max-rps", type=float, default=250.0,
                        help="most polls per second in all (the gateway's CPU is shared)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds after which an upload not yet visible counts as lost")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between phases")
    parser.add_argument("--variant", action="append", default=[],
                        help="label[:config_key=value,...]; repeatable (default: one, as shipped)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the gateway of this git revision (same settings)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the variants this many times, interleaved")
    parser.add_argument("--gateway-port", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="short phases (smoke test)")
    parser.add_argument("--keep", action="store_true", help="keep the devnet folder")
    args = parser.parse_args()
    if args.quick:
        args.events, args.burst_seconds, args.pause = min(args.events, 20), 3.0, 1.0

    root = Path(tempfile.mkdtemp(prefix="portledger-bench-visible-"))
    variants = [parse_variant(v) for v in args.variant] or [Variant("tree", {})]
    if args.baseline:
        src = source_tree(args.baseline, root / "baseline-src")
        variants.insert(0, Variant(f"base {args.baseline[:7]}", {}, src))
    devnet: Devnet | None = None
    results: list[PhaseResult] = []
    failed = True
    try:
        layout = create_devnet(root / "devnet", validators=4, observers=1)
        devnet = Devnet(layout)
        devnet.start()
        devnet.wait_ready(timeout=120)
        print(f"devnet: 4 validators + 1 observer in {root}; load {os.getloadavg()[0]:.1f}; "
              f"steady {args.events} at {args.rate:g}/s, burst {args.burst_rate:g}/s for "
              f"{args.burst_seconds:g} s; poll every {args.poll_ms:g} ms per pending event, "
              f"at most {args.max_requests} polls in flight and {args.max_rps:g}/s",
              flush=True)
        for variant in variants:
            print(f"  {variant.label}: {variant.overrides or 'defaults'}"
                  f"{f' (source {variant.source})' if variant.source else ''}", flush=True)
        print(TABLE, flush=True)
        owners = owner_codes()
        for _ in range(args.rounds):
            for variant in variants:
                results += asyncio.run(measure(variant, layout, args, owners))
        print()
        for variant in variants:
            mine = [r for r in results if r.variant == variant.label]
            for phase in ("steady", "burst"):
                owner = [x for r in mine if r.phase == phase
                         for x in spans(r.samples, "t0", "owner_seen")]
                p50 = pct(owner, 50)
                if p50 is not None:
                    verdict = "met" if p50 <= TARGET_P50 else "NOT met"
                    print(f"{variant.label} {phase}: p50 {p50 * 1000:.0f} ms over {len(owner)} "
                          f"uploads — target p50 ≤ {TARGET_P50:g} s {verdict}")
        lost = sum(x.lost for r in results for x in r.samples)
        failed = lost > 0
        if failed:
            print(f"FAILED: {lost} uploads lost", file=sys.stderr)
        return 1 if failed else 0
    except (DevnetError, BenchFailed) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    finally:
        if devnet is not None:
            devnet.stop()
        if failed or args.keep:
            print(f"folder kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
