#!/usr/bin/env python3
"""Memory soak: a whole demo port under steady load for an hour, RSS of every process sampled.

    .venv/bin/python -m bench.bench_soak --minutes 60            # the issue-17 soak
    .venv/bin/python -m bench.bench_soak --minutes 8 --warmup-minutes 2 --window-minutes 2

Starts a fresh :class:`devnet.gateway.Port` (``--validators`` validator processes, ``--observers``
observers and the gateway process) in a temporary folder, then:

1. Calibration: a short ramp (:func:`bench.bench_devnet.ramp`, ``--calibrate-seconds`` steps)
   finds the highest rate the network keeps up with in this run; the soak offers ``--share`` of
   it (``--rate`` skips the calibration).
2. Soak: :class:`devnet.load.CargoLoad` offers that rate directly over JSON-RPC, one
   ``--window-minutes`` run after another (a few seconds between runs, while the last
   transactions of a window are accounted); meanwhile a light gateway client posts one
   cargo event every ``--gateway-interval`` seconds through ``POST /v1/events`` and waits for it
   to be final, and tracks it (``GET /v1/track``).
3. Every ``--sample-seconds`` the RSS of every process (each node, the gateway's whole process
   group, this load generator) is sampled, with the load average.

Printed: the RSS curve (per process, per window), and per window the finalized throughput,
finality p50/p99, gateway events final and their latency, what blocks cost validator-1 (its
log's ``exec=`` and ``commit=`` per block line: execution ms per transaction, LevelDB write
ms per block) and the load average. The verdict (:func:`judge`), after the warm-up
(``--warmup-minutes``):

- memory flat: for every process, its anonymous memory (``RssAnon``: the heap, the Python
  objects, the caches and malloc's arenas — what a leak grows) at the end of the run (mean of
  the last three samples) exceeds that at the start of the last ``--flat-minutes`` (mean of
  three samples) by at most ``max(--flat-mib, --flat-share of it)``; and every process's whole
  RSS stays under ``--max-rss-mib``. The rest of RSS (``RssFile``) is pages of the database
  files the process maps — the gateway's read model (SQLite ``mmap_size``), a node's LevelDB
  tables — counted once touched: it follows the size of the databases, and the kernel takes
  such clean pages back when it needs memory. Both are printed;
- throughput: the last window's finalized events/s within ``--throughput-share`` of the first
  window after the warm-up;
- latency: the last window's finality p99 at most ``--p99-factor`` × the first's +
  ``--p99-slack`` seconds;
- nothing lost or duplicated, no process exited. A transaction not final within a window's
  settle time (60 s; the machine is shared) is looked up again after the soak (the pools
  drained, up to ``sweep_seconds``): only one without a receipt then counts as lost. The
  table shows ``lost(final later)``.

Diagnostics: ``--profile-node I`` runs node ``I`` with ``PORTLEDGER_MEMORY_PROFILE`` (see
:class:`node.service.MemoryProbe`): its ``memory-profile.log`` in that node's datadir lists the
allocation sites that grew. ``--node-env I:NAME=VALUE`` sets an environment variable for one
node only (an A/B comparison within one run). ``--keep`` keeps the folder.

Exit status: 0 if the verdict passes, 1 if it fails, 2 if the port did not start or finalize.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devnet.errors import DevnetError
from devnet.gateway import GatewayClient, Port
from devnet.jsonrpc import RpcClient, RpcError, wait_for
from devnet.load import (
    RECEIPTS_PER_BATCH,
    CargoLoad,
    LoadReport,
    cargo_publishers,
    percentile,
)
from node.genesis import Genesis
from node.service import MEMORY_PROFILE_ENV

#: The gateway client's organisation: the demo terminal (Consortium id 2, genesis member 1).
GATEWAY_ORG = 2
#: A container number with a valid check digit, the subject of the gateway's events.
GATEWAY_CONTAINER = "CSQU3054383"


@dataclass(frozen=True)
class Criteria:
    """What :func:`judge` demands of a soak (defaults: the issue-17 acceptance)."""

    warmup_s: float = 600.0
    flat_s: float = 1200.0
    """RSS growth is measured over the last this-many seconds of the run."""
    flat_mib: float = 50.0
    flat_share: float = 0.05
    max_rss_mib: float = 1024.0
    throughput_share: float = 0.10
    p99_factor: float = 1.5
    p99_slack_s: float = 0.5


#: A node's block line: "... block #N 0x... txs=T gas=G exec=Ems commit=Cms".
_BLOCK_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO portledger\.node: block #\d+ \S+ "
    r"txs=(\d+) gas=\d+ exec=(\d+)ms commit=(\d+)ms"
)


@dataclass(frozen=True)
class BlockCost:
    """Blocks a node added in a window and what executing and writing them cost it."""

    blocks: int
    transactions: int
    executed: int
    """Blocks this node executed itself (the others it committed from a proposal it had run)."""
    exec_ms: float
    commit_ms: float

    @property
    def exec_ms_per_tx(self) -> float | None:
        return self.exec_ms / self.transactions if self.transactions else None

    @property
    def commit_ms_per_block(self) -> float | None:
        return self.commit_ms / self.blocks if self.blocks else None


def block_costs(log_path: Path, spans: Sequence[tuple[float, float]]) -> list[BlockCost]:
    """Per (start, end) wall-clock span, the node's blocks from its log's block lines."""
    found = [[0, 0, 0, 0.0, 0.0] for _ in spans]
    with contextlib.suppress(OSError), log_path.open(errors="replace") as log:
        for line in log:
            match = _BLOCK_LINE.match(line)
            if match is None:
                continue
            when = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1e3
            for k, (start, end) in enumerate(spans):
                if start <= when < end:
                    row = found[k]
                    row[0] += 1
                    row[1] += int(match[3])
                    row[2] += int(match[4]) > 0
                    row[3] += int(match[4])
                    row[4] += int(match[5])
    return [BlockCost(int(b), int(t), int(x), e, c) for b, t, x, e, c in found]


@dataclass
class Window:
    """One load run of the soak."""

    index: int
    start_s: float
    """Seconds since the soak started."""
    report: LoadReport
    load_average: tuple[float, float, float]
    gateway_final: int = 0
    gateway_failed: int = 0
    gateway_latencies: list[float] = field(default_factory=list)
    wall_start: float = 0.0
    """``time.time()`` when the window began (to match node log lines)."""
    wall_end: float = 0.0
    blocks: BlockCost | None = None
    """What blocks cost a validator in this window (:func:`block_costs`)."""
    late: int = 0
    """Of the window's ``lost`` (not final within the settle time), final by the end of the
    soak (:func:`sweep`); ``lost - late`` were never final."""

    def row(self) -> dict[str, Any]:
        r = self.report
        return {
            "window": self.index,
            "start_min": round(self.start_s / 60, 2),
            "offered_ev_s": round(r.offered_events_per_s),
            "finalized_ev_s": round(r.finalized_events_per_s, 1),
            "p50_s": r.p50,
            "p99_s": r.p99,
            "accepted": r.accepted,
            "included_once": r.included_once,
            "lost": r.lost,
            "final_late": self.late,
            "duplicated": r.duplicated,
            "refused": r.refused,
            "blocks": r.blocks,
            "gateway_final": self.gateway_final,
            "gateway_failed": self.gateway_failed,
            "gateway_p50_s": percentile(self.gateway_latencies, 0.5),
            "load_average": list(self.load_average),
            "exec_ms_per_tx": None if self.blocks is None else self.blocks.exec_ms_per_tx,
            "commit_ms_per_block": None if self.blocks is None else self.blocks.commit_ms_per_block,
        }


class RssSampler(threading.Thread):
    """RSS (MiB) of named process groups every ``interval`` s: ``samples[name]`` is a list of
    (seconds since start, MiB), ``anon[name]`` the same of the anonymous part; a group's figure
    is the sum over its live processes."""

    def __init__(self, groups: Callable[[], dict[str, int]], interval: float = 10.0) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.groups = groups
        self.interval = interval
        self.started = time.monotonic()
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.anon: dict[str, list[tuple[float, float]]] = {}
        self.loads: list[tuple[float, tuple[float, float, float]]] = []
        self._halt = threading.Event()

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, (mib, anon) in group_rss_mib(self.groups()).items():
            self.samples.setdefault(name, []).append((now, mib))
            self.anon.setdefault(name, []).append((now, anon))
        self.loads.append((now, os.getloadavg()))

    def run(self) -> None:
        self.sample()
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self.sample()


def group_rss_mib(groups: dict[str, int]) -> dict[str, tuple[float, float]]:
    """(RSS, anonymous RSS) in MiB of each process group (by its leader's pid), summed over its
    processes (``VmRSS`` and ``RssAnon`` of ``/proc/PID/status``)."""
    by_group: dict[int, list[float]] = {pgid: [0.0, 0.0] for pgid in groups.values()}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            pgid = os.getpgid(int(entry.name))
            if pgid not in by_group:
                continue
            status = Path(entry.path, "status").read_text()
        except OSError:  # exited meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                by_group[pgid][0] += int(line.split()[1]) / 1024
            elif line.startswith("RssAnon:"):
                by_group[pgid][1] += int(line.split()[1]) / 1024
    return {name: (by_group[pgid][0], by_group[pgid][1]) for name, pgid in groups.items()}


class GatewayTraffic(threading.Thread):
    """One cargo event every ``interval`` s through the gateway, waited for until final and
    tracked; ``done`` holds (submitted at, latency s or None if it failed)."""

    def __init__(self, port: Port, interval: float, timeout: float = 60.0) -> None:
        super().__init__(daemon=True, name="gateway-traffic")
        self.port = port
        self.client: GatewayClient = port.clients[GATEWAY_ORG]
        self.interval = interval
        self.timeout = timeout
        self.done: list[tuple[float, float | None]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._halt.wait(self.interval):
            n += 1
            key = f"soak-{os.getpid()}-{n}"
            sent = time.monotonic()
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body = {"events": [{
                "id": key, "type": "TERMINAL.DISC", "classifier": "ACT", "time": when,
                "subject": {"kind": "container", "value": GATEWAY_CONTAINER},
                "location": "HKHKG", "related": [], "details": {"seq": n},
                "visibility": {"mode": "reference", "readers": []},
            }]}  # fmt: skip
            try:
                status, answer, _ = self.client.post("/v1/events", body)
                if status not in (200, 201, 202):
                    raise DevnetError(f"POST /v1/events: {status} {answer}")
                self.port.final(GATEWAY_ORG, key, timeout=self.timeout)
                latency = time.monotonic() - sent
                # The gateway indexes a final event shortly after it reports it final.
                wait_for(
                    lambda: self.port.track(GATEWAY_ORG, GATEWAY_CONTAINER)[0] == 200,
                    10.0, interval=0.2, what="GET /v1/track answering 200",
                )  # fmt: skip
                self.done.append((sent, latency))
            except (DevnetError, OSError) as exc:
                self.errors.append(str(exc)[:300])
                self.done.append((sent, None))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.timeout + 30)


@dataclass
class SoakResult:
    rate_tx_s: float
    calibrated_tx_s: float | None
    started: float
    windows: list[Window]
    samples: dict[str, list[tuple[float, float]]]
    loads: list[tuple[float, tuple[float, float, float]]]
    exited: list[str]
    gateway_errors: list[str]
    failed_windows: list[str] = field(default_factory=list)
    """Windows whose load run could not be accounted for (their figures are missing)."""
    anon: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Anonymous RSS samples, as ``samples`` (judged for growth when present)."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def rss_growth(samples: list[tuple[float, float]], since: float) -> tuple[float, float]:
    """(RSS at ``since``, RSS at the end), each the mean of three samples."""
    tail = [mib for t, mib in samples if t >= since]
    if len(tail) < 2:
        tail = [mib for _, mib in samples[-2:]]
    k = min(3, max(1, len(tail) // 2))
    return _mean(tail[:k]), _mean(tail[-k:])


def judge(result: SoakResult, criteria: Criteria) -> list[str]:
    """Every way the soak failed its criteria (empty: it passed)."""
    failures = [f"{name} exited" for name in result.exited] + list(result.failed_windows)
    end = max((s[-1][0] for s in result.samples.values() if s), default=0.0)
    since = max(criteria.warmup_s, end - criteria.flat_s)
    for name, samples in sorted(result.samples.items()):
        if not samples or name == "loadgen":
            continue
        anon = result.anon.get(name)
        what, judged = ("anonymous memory", anon) if anon else ("RSS", samples)
        start, last = rss_growth(judged, since)
        allowed = max(criteria.flat_mib, criteria.flat_share * start)
        if last - start > allowed:
            failures.append(
                f"{name}: {what} grew {last - start:.0f} MiB ({start:.0f} -> {last:.0f}) after "
                f"{since / 60:.1f} min, more than {allowed:.0f}"
            )
        peak = max(mib for _, mib in samples)
        if peak >= criteria.max_rss_mib:
            failures.append(f"{name}: RSS {peak:.0f} MiB >= {criteria.max_rss_mib:.0f}")
    measured = [w for w in result.windows if w.start_s >= criteria.warmup_s - 1]
    for w in result.windows:
        if w.report.lost > w.late or w.report.duplicated:
            failures.append(
                f"window {w.index}: lost {w.report.lost - w.late}, duplicated "
                f"{w.report.duplicated}"
            )
    if len(measured) < 2:
        failures.append(f"only {len(measured)} window(s) after the warm-up: nothing to compare")
        return failures
    first, last_w = measured[0].report, measured[-1].report
    if (
        abs(last_w.finalized_events_per_s - first.finalized_events_per_s)
        > criteria.throughput_share * first.finalized_events_per_s
    ):
        failures.append(
            f"throughput: last window {last_w.finalized_events_per_s:.0f} events/s vs first "
            f"{first.finalized_events_per_s:.0f}, not within {criteria.throughput_share:.0%}"
        )
    if first.p99 is None or last_w.p99 is None:
        failures.append("latency: a window finalized nothing")
    elif last_w.p99 > criteria.p99_factor * first.p99 + criteria.p99_slack_s:
        failures.append(
            f"latency: last window p99 {last_w.p99:.2f} s > {criteria.p99_factor:g} x first "
            f"{first.p99:.2f} s + {criteria.p99_slack_s:g} s"
        )
    return failures


def rss_table(result: SoakResult, window_s: float, *, anon: bool = False) -> str:
    """RSS (MiB; its anonymous part with ``anon``) per process at the end of each ``window_s``
    slice of the run."""
    series = result.anon if anon else result.samples
    names = sorted(series, key=lambda n: (n == "loadgen", n == "gateway", n))
    end = max((s[-1][0] for s in series.values() if s), default=0.0)
    edges = [min(end, window_s * (k + 1)) for k in range(max(1, int(-(-end // window_s))))]
    head = f"{'t (min)':>8} " + " ".join(f"{n[:12]:>12}" for n in names) + "   load avg"
    lines = [head]
    for edge in [0.0, *edges]:
        cells = []
        for name in names:
            before = [mib for t, mib in series[name] if t <= edge + 1e-6]
            cells.append(f"{before[-1]:12.0f}" if before else f"{'-':>12}")
        loads = [la for t, la in result.loads if t <= edge + 1e-6]
        load = "/".join(f"{x:.1f}" for x in loads[-1]) if loads else "-"
        lines.append(f"{edge / 60:8.1f} " + " ".join(cells) + f"   {load}")
    return "\n".join(lines)


def window_table(result: SoakResult) -> str:
    def s(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}"

    def ms(value: float | None) -> str:
        return "?" if value is None else f"{value:.0f}"

    lines = [
        f"{'win':>3} {'min':>6} {'offer ev/s':>10} {'final ev/s':>10} {'p50 s':>6} {'p99 s':>6} "
        f"{'accepted':>8} {'once':>6} {'lost':>4} {'dup':>4} {'gw final':>8} {'gw p50':>6} "
        f"{'blocks':>6} {'exec ms/tx':>10} {'commit ms':>9}  load avg"
    ]
    for w in result.windows:
        r = w.report
        lines.append(
            f"{w.index:>3} {w.start_s / 60:6.1f} {r.offered_events_per_s:10.0f} "
            f"{r.finalized_events_per_s:10.0f} {s(r.p50):>6} {s(r.p99):>6} {r.accepted:>8} "
            f"{r.included_once:>6} {f'{r.lost}({w.late})' if r.lost else '0':>4} "
            f"{r.duplicated:>4} "
            f"{w.gateway_final:>4}/{w.gateway_final + w.gateway_failed:<3} "
            f"{s(percentile(w.gateway_latencies, 0.5)):>6} "
            f"{w.blocks.blocks if w.blocks else 0:>6} "
            f"{ms(w.blocks.exec_ms_per_tx if w.blocks else None):>10} "
            f"{ms(w.blocks.commit_ms_per_block if w.blocks else None):>9}  "
            + "/".join(f"{x:.1f}" for x in w.load_average)
        )
    return "\n".join(lines)


def sweep(port: Port, windows: Sequence[Window]) -> None:
    """For windows with transactions not final within the settle time, count those final
    since (a receipt on the load's watched node, validator-0) into :attr:`Window.late`."""
    node = port.devnet.nodes[0]
    with RpcClient(node.host, node.rpc_port, timeout=60.0) as client:
        for window in windows:
            if not window.report.lost:
                continue
            hashes = window.report.accepted_hashes
            final = 0
            for start in range(0, len(hashes), RECEIPTS_PER_BATCH):
                receipts = client.batch(
                    [("eth_getTransactionReceipt", [h])
                     for h in hashes[start : start + RECEIPTS_PER_BATCH]]
                )
                final += sum(1 for r in receipts if isinstance(r, dict))
            window.late = max(0, final - window.report.included)


def calibrate(load: CargoLoad, step_seconds: float, start_rate: float, steps: int) -> float:
    """The highest rate (tx/s) the network keeps up with, by a short ramp."""
    from bench.bench_devnet import HEADER, ramp

    args = argparse.Namespace(
        start_rate=start_rate, step_seconds=step_seconds, settle=30.0, max_steps=steps,
        max_p99=5.0,
    )  # fmt: skip
    print(HEADER, flush=True)
    results: list[dict[str, object]] = []
    good = ramp(load, args, results)
    load.drain(60)
    return good


def run_soak(
    root: Path,
    *,
    minutes: float,
    window_minutes: float,
    validators: int = 4,
    observers: int = 1,
    gateway: bool = True,
    rate: float | None = None,
    share: float = 0.5,
    events_per_tx: int = 100,
    payload_bytes: int = 96,
    calibrate_seconds: float = 15.0,
    calibrate_start: float = 8.0,
    calibrate_steps: int = 5,
    sample_seconds: float = 10.0,
    gateway_interval: float = 5.0,
    profile_node: int | None = None,
    profile_seconds: float = 60.0,
    node_env: dict[int, dict[str, str]] | None = None,
    sweep_seconds: float = 300.0,
    out: Callable[[str], None] = print,
) -> SoakResult:
    """Start a port under ``root``, calibrate (unless ``rate``), soak, stop; the figures."""
    port = Port(root, validators=validators, observers=observers)
    sampler: RssSampler | None = None
    traffic: GatewayTraffic | None = None
    try:
        extra = {i: dict(env) for i, env in (node_env or {}).items()}
        if profile_node is not None:
            extra.setdefault(profile_node, {})[MEMORY_PROFILE_ENV] = str(profile_seconds)
        base = port.devnet.env
        for i, env in sorted(extra.items()):
            port.devnet.env = {**base, **env}
            try:
                port.devnet.start_node(i)
            finally:
                port.devnet.env = base
        if gateway:
            port.start(timeout=180)
        else:
            port.devnet.start()
            port.devnet.wait_ready(180)
        port.devnet.wait_for(
            lambda: all(h is not None and h[0] >= 1 for h in port.devnet.heads()), 120,
            what="block 1 on every node",
        )  # fmt: skip
        genesis = Genesis.load(port.layout.genesis_path)
        # The gateway signs the terminal's transactions: the load leaves that account alone.
        gateway_accounts = {
            a.lower() for a in genesis.portledger["members"][GATEWAY_ORG - 1]["accounts"]
        }
        publishers = [
            p for p in cargo_publishers(genesis) if p.address.lower() not in gateway_accounts
        ]
        load = CargoLoad(
            port.devnet, events_per_tx=events_per_tx, payload_bytes=payload_bytes,
            publishers=publishers,
        )  # fmt: skip

        def groups() -> dict[str, int]:
            found = {
                node.name: pid
                for i, node in enumerate(port.devnet.nodes)
                if (pid := port.devnet.pid(i)) is not None
            }
            proc = port.gateway._proc  # the gateway's process group leader
            if gateway and proc is not None:
                found["gateway"] = proc.pid
            found["loadgen"] = os.getpgid(0)
            return found

        sampler = RssSampler(groups, sample_seconds)
        sampler.start()
        calibrated = None
        if rate is None:
            out(f"calibration: {calibrate_seconds:g} s ramp steps from {calibrate_start:g} tx/s")
            calibrated = calibrate(load, calibrate_seconds, calibrate_start, calibrate_steps)
            rate = share * calibrated
            out(
                f"sustainable in this run: {calibrated:.2f} tx/s = "
                f"{calibrated * events_per_tx:.0f} events/s; soak at {share:.0%}: {rate:.2f} tx/s"
                f" = {rate * events_per_tx:.0f} events/s (load {os.getloadavg()})"
            )
        if gateway:
            traffic = GatewayTraffic(port, gateway_interval)
            traffic.start()
        started = time.monotonic()
        windows: list[Window] = []
        failed_windows: list[str] = []
        deadline = started + minutes * 60
        index = 0
        while time.monotonic() < deadline - 1:
            begin = time.monotonic()
            duration = min(window_minutes * 60, deadline - begin)
            try:
                report = load.run(rate, duration, settle=60, warmup=0)
            except (OSError, RpcError, DevnetError) as exc:
                # The load's own accounting (a 30 s JSON-RPC timeout for 200 receipts) can
                # fail on a saturated machine; the soak goes on, the failure is judged.
                failed_windows.append(f"window {index}: the load's accounting failed: {exc!r}")
                out(failed_windows[-1])
                index += 1
                continue
            window = Window(index, begin - started, report, os.getloadavg(),
                            wall_start=time.time() - (time.monotonic() - begin),
                            wall_end=time.time())  # fmt: skip
            if traffic is not None:
                for sent, latency in list(traffic.done):
                    if begin <= sent < begin + duration:
                        if latency is None:
                            window.gateway_failed += 1
                        else:
                            window.gateway_final += 1
                            window.gateway_latencies.append(latency)
            windows.append(window)
            out(
                f"window {index} ({window.start_s / 60:.1f} min): finalized "
                f"{report.finalized_events_per_s:.0f} events/s, p50 "
                f"{report.p50 or 0:.2f} s, p99 {report.p99 or 0:.2f} s, lost {report.lost}, "
                "RSS (anonymous) " + ", ".join(
                    f"{name} {rss:.0f} ({anon:.0f})"
                    for name, (rss, anon) in group_rss_mib(groups()).items()
                ) + f" MiB, load {window.load_average}"
            )
            index += 1
        # What blocks cost a validator that is not the load's watched node (it executes every
        # block: building its own proposals, running the others').
        costed = port.devnet.nodes[min(1, len(port.devnet.nodes) - 1)]
        for window, cost in zip(
            windows, block_costs(costed.log_path, [(w.wall_start, w.wall_end) for w in windows]),
            strict=True,
        ):
            window.blocks = cost
        if any(w.report.lost for w in windows):
            out(f"sweep: waiting up to {sweep_seconds:g} s for the backlog, then receipts")
            load.drain(sweep_seconds)
            sweep(port, windows)
        exited = [
            node.name
            for i, node in enumerate(port.devnet.nodes)
            if not port.devnet.is_running(i)
        ]
        if gateway and not port.gateway.running:
            exited.append("gateway")
        if traffic is not None:
            traffic.stop()
        sampler.stop()
        shift = started - sampler.started  # samples count from the soak's start
        samples, anon = (
            {name: [(t - shift, mib) for t, mib in values] for name, values in series.items()}
            for series in (sampler.samples, sampler.anon)
        )
        loads = [(t - shift, la) for t, la in sampler.loads]
        return SoakResult(
            rate_tx_s=rate, calibrated_tx_s=calibrated, started=time.time() - minutes * 60,
            windows=windows, samples=samples, loads=loads, exited=exited,
            gateway_errors=list(traffic.errors) if traffic is not None else [],
            failed_windows=failed_windows, anon=anon,
        )  # fmt: skip
    finally:
        if traffic is not None and traffic.is_alive():
            traffic.stop()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        port.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--flat-minutes", type=float, default=20.0)
    parser.add_argument("--flat-mib", type=float, default=50.0)
    parser.add_argument("--flat-share", type=float, default=0.05)
    parser.add_argument("--max-rss-mib", type=float, default=1024.0)
    parser.add_argument("--throughput-share", type=float, default=0.10)
    parser.add_argument("--p99-factor", type=float, default=1.5)
    parser.add_argument("--p99-slack", type=float, default=0.5)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--observers", type=int, default=1)
    parser.add_argument("--no-gateway", action="store_true")
    parser.add_argument("--gateway-interval", type=float, default=5.0)
    parser.add_argument("--rate", type=float, help="tx/s; skips the calibration")
    parser.add_argument("--share", type=float, default=0.5, help="of the calibrated rate")
    parser.add_argument("--events-per-tx", type=int, default=100)
    parser.add_argument("--payload-bytes", type=int, default=96)
    parser.add_argument("--calibrate-seconds", type=float, default=15.0)
    parser.add_argument("--calibrate-start", type=float, default=8.0)
    parser.add_argument("--calibrate-steps", type=int, default=5)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--profile-node", type=int)
    parser.add_argument("--profile-seconds", type=float, default=60.0)
    parser.add_argument(
        "--node-env", action="append", default=[], metavar="I:NAME=VALUE",
        help="an environment variable for node I only (an A/B comparison in one run)",
    )  # fmt: skip
    parser.add_argument(
        "--sweep-seconds", type=float, default=300.0,
        help="after the soak, wait up to this long for late transactions before looking them up",
    )  # fmt: skip
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    criteria = Criteria(
        warmup_s=args.warmup_minutes * 60, flat_s=args.flat_minutes * 60,
        flat_mib=args.flat_mib, flat_share=args.flat_share, max_rss_mib=args.max_rss_mib,
        throughput_share=args.throughput_share, p99_factor=args.p99_factor,
        p99_slack_s=args.p99_slack,
    )  # fmt: skip
    node_env: dict[int, dict[str, str]] = {}
    for item in args.node_env:
        index, sep, assignment = item.partition(":")
        name, eq, value = assignment.partition("=")
        if not (sep and eq and index.isdigit() and name):
            parser.error(f"--node-env {item!r}: expected I:NAME=VALUE")
        node_env.setdefault(int(index), {})[name] = value
    root = Path(tempfile.mkdtemp(prefix="portledger-bench-soak-"))
    print(f"port folder: {root}; load average {os.getloadavg()}", flush=True)
    try:
        result = run_soak(
            root, minutes=args.minutes, window_minutes=args.window_minutes,
            validators=args.validators, observers=args.observers, gateway=not args.no_gateway,
            rate=args.rate, share=args.share, events_per_tx=args.events_per_tx,
            payload_bytes=args.payload_bytes, calibrate_seconds=args.calibrate_seconds,
            calibrate_start=args.calibrate_start, calibrate_steps=args.calibrate_steps,
            sample_seconds=args.sample_seconds, gateway_interval=args.gateway_interval,
            profile_node=args.profile_node, profile_seconds=args.profile_seconds,
            node_env=node_env, sweep_seconds=args.sweep_seconds, out=lambda line: print(line, flush=True),
        )  # fmt: skip
    except DevnetError as exc:
        print(f"FAILED: the port did not start or finalize: {exc}", file=sys.stderr)
        print(f"folder kept: {root}", file=sys.stderr)
        return 2
    print("\nRSS (MiB) per process, at the end of each window:")
    print(rss_table(result, args.window_minutes * 60))
    print("\nof which anonymous (RssAnon, MiB; the rest is mapped database files):")
    print(rss_table(result, args.window_minutes * 60, anon=True))
    print("\nper window:")
    print(window_table(result))
    if result.gateway_errors:
        print(f"gateway errors ({len(result.gateway_errors)}): {result.gateway_errors[:3]}")
    failures = judge(result, criteria)
    print(f"\ncriteria: {criteria}")
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({
            "rate_tx_s": result.rate_tx_s, "calibrated_tx_s": result.calibrated_tx_s,
            "windows": [w.row() for w in result.windows], "samples": result.samples,
            "anon": result.anon,
            "loads": result.loads, "exited": result.exited, "failures": failures,
            "criteria": asdict(criteria),
        }, indent=1) + "\n")  # fmt: skip
    if args.keep or args.profile_node is not None or node_env:
        print(f"folder kept: {root}", file=sys.stderr)
    else:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
