#!/usr/bin/env python3
"""Finalized cargo-event throughput and finality latency of a local multi-process QBFT network.

    .venv/bin/python -m bench.bench_devnet [--validators 4] [--minutes 5] [--events-per-tx 100]
    .venv/bin/python -m bench.bench_devnet --quick        # short runs, a smoke test

Creates a fresh devnet (:mod:`devnet.layout`, :mod:`devnet.processes`: one ``portledger node``
process per validator, p2p and JSON-RPC on loopback) in a temporary folder and drives it with ``CargoLedger.record()``
transactions from the demo members' accounts (:class:`devnet.load.CargoLoad`), each publisher's
transactions sent to one validator, publishers dealt round-robin over the validators.

1. Probe: one transaction must be finalized within ``--probe-timeout`` seconds, else exit 2.
2. Ramp: the offered rate starts at ``--start-rate`` tx/s and doubles while the network keeps up
   (finalized events/s at least 90 % of offered, nothing lost, p99 finality under
   ``--max-p99``); once a rate fails it bisects between the best rate that kept up and the
   lowest that did not (halving if the first already fails), ``--max-steps`` steps in all.
3. Measure: 50 % and 100 % of that maximum for ``--minutes`` each.
4. Replay: the devnet is stopped and validator-0's data directory is re-executed from genesis
   by the node's own replay (``portledger replay --datadir D --jobs 1``: :func:`node.replay.
   replay_datadir` with the auditor's report, in this process) — the rate at which one process
   re-verifies this very chain on this machine, now. Printed: replayed events/s (wall) and per
   CPU-second, and each measured phase's finalized events/s as a ratio to both. Four
   validators each execute every block, so on ``C`` cores the finalized rate is bounded near
   ``C / validators`` times the CPU rate. ``--no-replay`` skips it.

Finality latency is wall-clock: from just before ``eth_sendRawTransaction`` to the moment a
watcher polling the first validator every 50 ms first sees the block holding the transaction
(header timestamps are whole seconds). Inclusion is checked by scanning every block of the run
on that validator: each accepted hash must appear exactly once, with a receipt naming that
block. The load generator shares the machine's cores with the nodes; a step whose submitter
could not keep its own pace is reported as client-bound.

Exit status: 0, or 1 if a measured run lost or duplicated a transaction or nothing kept up,
or 2 if the network did not start or finalized nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devnet.errors import DevnetError
from devnet.layout import create_devnet
from devnet.load import CargoLoad, LoadReport
from devnet.processes import Devnet
from node.audit import AuditReport
from node.datadir import DataDir
from node.genesis import Genesis, QbftConfig
from node.replay import ReplaySummary, replay_datadir

#: Finalized throughput must reach this share of the offered rate for a step to "keep up".
FOLLOW_SHARE = 0.9
#: The submitters must reach this share of their pace, or the step measured the client.
CLIENT_SHARE = 0.95
#: Bisection stops when the failing rate is within this factor of the passing one.
RESOLUTION = 1.15


class Failed(Exception):
    """The benchmark cannot produce a figure; the message says why."""


class NotFinalizing(Failed):
    """The network did not start or finalized nothing."""


def keeps_up(report: LoadReport, max_p99: float) -> tuple[bool, str]:
    reasons = []
    # Only whole transactions land in the window: allow two either side of the share.
    slack = 2 * report.events_per_tx
    if report.window_events + slack < FOLLOW_SHARE * report.offered_events_per_s * report.window_s:
        reasons.append(
            f"finalized {report.finalized_events_per_s:.0f} < {FOLLOW_SHARE:.0%} of offered"
        )
    if report.lost or report.duplicated or report.refused or report.unreachable or report.unsent:
        reasons.append(
            f"lost {report.lost}, duplicated {report.duplicated}, refused {report.refused}, "
            f"unreachable {report.unreachable}, unsent {report.unsent}"
        )
    if report.p99 is None or report.p99 > max_p99:
        reasons.append(
            f"p99 {report.p99 if report.p99 is None else round(report.p99, 2)} s > {max_p99:g} s"
        )
    if report.submit_tx_per_s < CLIENT_SHARE * report.offered_tx_per_s:
        reasons.append(f"client-bound: submitted only {report.submit_tx_per_s:.1f} tx/s")
    return not reasons, "; ".join(reasons) or "keeps up"


def step_line(label: str, report: LoadReport, verdict: str) -> str:
    def ms(value: float | None) -> str:
        return "?" if value is None else f"{value * 1000:.0f}"

    return (
        f"{label:>10} {report.offered_tx_per_s:8.2f} {report.offered_events_per_s:9.0f} "
        f"{report.finalized_events_per_s:10.0f} {ms(report.p50):>7} {ms(report.p99):>7} "
        f"{report.accepted:>7} {report.included_once:>7} {report.lost:>5} {report.duplicated:>5}  {verdict}"
    )


HEADER = (
    f"{'step':>10} {'tx/s':>8} {'offer ev/s':>9} {'final ev/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'accepted':>7} {'once':>7} {'lost':>5} {'dup':>5}  verdict"
)


def nodes_cpu_seconds(devnet: Devnet) -> float:
    """CPU seconds (user + system) the devnet's node processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for i in range(len(devnet.nodes)):
        pid = devnet.pid(i)
        if pid is None:
            continue
        try:
            # Fields after the command name: state is field 3, utime 14, stime 15 (proc(5)).
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def probe(devnet: Devnet, load: CargoLoad, timeout: float) -> None:
    """One transaction finalized within ``timeout`` s, or :class:`Failed`."""
    report = load.run(rate=1.0, duration=1.0, settle=timeout)
    if report.accepted == 0:
        raise NotFinalizing(
            f"the validators refused the probe transaction: {dict(report.refusals)}"
        )
    if report.included == 0:
        heads = devnet.heads()
        raise NotFinalizing(
            f"no block finalized the probe transaction within {timeout:g} s (heads {heads}); "
            "is the QBFT runtime running? node logs: "
            + ", ".join(str(n.log_path) for n in devnet.nodes)
        )


def ramp(load: CargoLoad, args: argparse.Namespace, results: list[dict[str, object]]) -> float:
    """The highest offered rate (tx/s) at which finalized throughput still followed."""
    good: float | None = None
    bad: float | None = None
    rate = lowest = args.start_rate
    for step in range(1, args.max_steps + 1):
        lowest = min(lowest, rate)
        report = load.run(rate, args.step_seconds, settle=args.settle)
        ok, verdict = keeps_up(report, args.max_p99)
        print(step_line(f"ramp {step}", report, verdict), flush=True)
        results.append({"phase": f"ramp {step}", "keeps_up": ok, **report.as_dict()})
        if not load.drain(args.settle):
            print("           (pools did not empty before the next step)", flush=True)
        if ok:
            good = rate if good is None else max(good, rate)
        else:
            bad = rate if bad is None else min(bad, rate)
        if bad is None:
            rate = rate * 2
        elif good is None:
            rate = rate / 2
        elif bad / good <= RESOLUTION:
            break
        else:
            rate = math.sqrt(good * bad)
    if good is None:
        raise Failed(f"the network did not keep up even at {lowest:g} tx/s")
    return good


@dataclass(frozen=True)
class ReplayRate:
    """One replay of a stopped validator's chain: its summary and the CPU it took."""

    summary: ReplaySummary
    cpu_seconds: float

    @property
    def events_per_s(self) -> float:
        return self.summary.logs / self.summary.seconds if self.summary.seconds else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        return self.summary.logs / self.cpu_seconds if self.cpu_seconds else 0.0


def replay_rate(datadir: Path) -> ReplayRate:
    """Replay ``datadir``'s chain as ``portledger replay --datadir D --jobs 1`` does (every
    root re-verified, the auditor's report fed); :class:`Failed` if a block does not verify.
    CPU is this process's (every thread: LevelDB's background work included)."""
    paths = DataDir(datadir)
    genesis = Genesis.load(paths.genesis)
    with tempfile.TemporaryDirectory(prefix="portledger-bench-replay-") as scratch:
        cpu = time.process_time()
        summary = replay_datadir(
            genesis, paths.chain, scratch, jobs=1, report=AuditReport(genesis),
            show_progress=False,
        )  # fmt: skip
        cpu = time.process_time() - cpu
    if summary.failure:
        raise Failed(f"the replay of {datadir} failed: {summary.failure}")
    return ReplayRate(summary, cpu)


def replay_lines(
    rate: ReplayRate, measured: list[tuple[str, LoadReport]], cpu: dict[str, float]
) -> list[str]:
    """The replay's figures and each measured phase's finalized rate as a ratio to them; with
    the nodes' CPU of each phase (``cpu``), how many executions of each event the network
    paid for, counted in replays: ``validators`` would be every validator executing every
    event once at the replay's cost and nothing else."""
    s = rate.summary
    lines = [
        f"replay (--jobs 1, with report): {s.blocks} blocks, {s.transactions} txs, "
        f"{s.logs} events in {s.seconds:.1f} s wall, {rate.cpu_seconds:.1f} s CPU: "
        f"{rate.events_per_s:.0f} events/s, {rate.events_per_cpu_s:.0f} events per CPU-second "
        f"(load average {os.getloadavg()[0]:.2f})"
    ]
    for label, report in measured:
        final = report.finalized_events_per_s
        lines.append(
            f"  {label}: finalized {final:.0f} events/s = "
            f"{final / rate.events_per_s if rate.events_per_s else 0:.2f} x replay wall, "
            f"{final / rate.events_per_cpu_s if rate.events_per_cpu_s else 0:.2f} x replay "
            "per CPU-second"
        )
        events = report.included_once * report.events_per_tx
        if label in cpu and events and rate.events_per_cpu_s:
            replays = cpu[label] * rate.events_per_cpu_s / events
            lines.append(
                f"    the nodes spent {cpu[label]:.1f} CPU-s on {events} events: "
                f"{replays:.2f} replays' worth of CPU per event"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--observers", type=int, default=0, help="non-validating nodes (default 0)")
    parser.add_argument("--minutes", type=float, default=5.0, help="duration of each measured run")
    parser.add_argument("--events-per-tx", type=int, default=100)
    parser.add_argument("--payload-bytes", type=int, default=96)
    parser.add_argument("--start-rate", type=float, default=1.0, help="first ramp rate, tx/s")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="duration of a ramp step")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument(
        "--max-p99", type=float, default=10.0, help="seconds; above it a step fails"
    )
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait for inclusion")
    parser.add_argument("--probe-timeout", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="short steps and runs (smoke test)")
    parser.add_argument("--json", dest="json_path", help="also write every step's figures here")
    parser.add_argument("--keep", action="store_true", help="keep the devnet folder (logs)")
    parser.add_argument(
        "--no-replay", action="store_true", help="skip replaying validator-0's chain at the end"
    )
    parser.add_argument(
        "--block-period-ms",
        type=int,
        default=QbftConfig().block_period_ms,
        help="blockPeriodMilliseconds of the devnet genesis; 0 = whole seconds (blockPeriodSeconds 1)",
    )
    args = parser.parse_args()
    if args.quick:
        args.minutes = min(args.minutes, 0.25)
        args.step_seconds = min(args.step_seconds, 6.0)
        args.max_steps = min(args.max_steps, 6)
        args.settle = min(args.settle, 20.0)

    root = Path(tempfile.mkdtemp(prefix="portledger-bench-devnet-"))
    results: list[dict[str, object]] = []
    failed = True
    devnet: Devnet | None = None
    try:
        qbft = QbftConfig(block_period_ms=args.block_period_ms or None)
        layout = create_devnet(root / "net", args.validators, args.observers, qbft=qbft)
        devnet = Devnet(layout)
        devnet.start()
        devnet.wait_ready(timeout=120)
        load = CargoLoad(devnet, events_per_tx=args.events_per_tx, payload_bytes=args.payload_bytes)
        print(
            f"devnet: {args.validators} validators, {args.observers} observers, {root}; "
            f"{len(load.publishers)} publishing accounts; {args.events_per_tx} events/tx, "
            f"{args.payload_bytes}-byte payloads; block period "
            f"{f'{qbft.block_period_ms} ms' if qbft.block_period_ms else '1 s'}",
            flush=True,
        )
        probe(devnet, load, args.probe_timeout)
        load.drain(args.settle)
        print(HEADER, flush=True)
        maximum = ramp(load, args, results)
        print(
            f"maximum sustainable: {maximum:.2f} tx/s = {maximum * args.events_per_tx:.0f} events/s offered",
            flush=True,
        )
        # The failed ramp steps leave a backlog; measuring on top of it would inflate latency.
        if not load.drain(5 * args.settle):
            print(f"warning: pools not empty {5 * args.settle:.0f} s after the ramp", flush=True)
        measured: list[tuple[str, LoadReport]] = []
        cpu: dict[str, float] = {}
        for share in (0.5, 1.0):
            label = f"{share:.0%} max"
            before = nodes_cpu_seconds(devnet)
            report = load.run(maximum * share, args.minutes * 60, settle=args.settle)
            cpu[label] = nodes_cpu_seconds(devnet) - before
            ok, verdict = keeps_up(report, args.max_p99)
            print(step_line(label, report, verdict), flush=True)
            print(
                f"{'':>10} nodes' CPU {cpu[label]:.1f} s: "
                f"{report.included_once * report.events_per_tx / max(cpu[label], 1e-9):.0f} "
                f"finalized events per node-CPU-second; load average "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                flush=True,
            )
            results.append({"phase": label, "keeps_up": ok, "nodes_cpu_seconds": cpu[label],
                            **report.as_dict()})  # fmt: skip
            measured.append((label, report))
            load.drain(args.settle)
        print()
        for label, report in measured:
            print(f"-- {label} ({args.validators} validators, {args.minutes:g} min)")
            print(report.describe())
        failed = any(r.lost or r.duplicated for _, r in measured)
        if failed:
            print("FAILED: transactions were lost or duplicated", file=sys.stderr)
            return 1
        if not args.no_replay:
            devnet.stop()
            rate = replay_rate(layout.nodes[0].datadir)
            print()
            print("\n".join(replay_lines(rate, measured, cpu)), flush=True)
            results.append({
                "phase": "replay", "blocks": rate.summary.blocks, "events": rate.summary.logs,
                "seconds": rate.summary.seconds, "cpu_seconds": rate.cpu_seconds,
                "events_per_s": rate.events_per_s, "events_per_cpu_s": rate.events_per_cpu_s,
            })  # fmt: skip
        return 0
    except NotFinalizing as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except DevnetError as exc:
        print(f"FAILED: the devnet did not start or finalize: {exc}", file=sys.stderr)
        return 2
    finally:
        if devnet is not None:
            devnet.stop()
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
        if failed or args.keep:
            print(f"devnet folder kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
