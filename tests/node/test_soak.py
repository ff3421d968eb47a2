"""The memory soak (issue 17): a whole port under steady load, RSS of every process sampled.

``-m slow``: the hour (:func:`bench.bench_soak.run_soak`, 4 validators + 1 observer + the
gateway at 50 % of the rate calibrated in the same run; criteria in
:class:`bench.bench_soak.Criteria`). The default run checks the harness itself: the verdict on
made-up curves (growth, slow-down and latency are each caught), the memory probe's report, and a
30-second soak of a one-validator port with its gateway.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import eth.db.trie
import pytest

from bench.bench_soak import (
    Criteria,
    SoakResult,
    Window,
    block_costs,
    judge,
    rss_table,
    run_soak,
    window_table,
)
from devnet.load import LoadReport
from node.chain import BLOCK_TRANSACTIONS_CACHE_ENTRIES, TRIE_ROOT_CACHE_ENTRIES, QbftChainDB
from node.rpc import chainview
from node.rpc.chainview import ChainView
from node.rpc.format import format_receipts
from node.service import MEMORY_PROFILE_ENV, Collector, MemoryProbe, NodeService, start_memory_probe
from tests.support.chain import TERMINAL, VALIDATOR, cargo_tx


def report(events_per_s: float, p99: float, lost: int = 0) -> LoadReport:
    r = LoadReport(offered_tx_per_s=events_per_s / 100, duration_s=300, events_per_tx=100)
    r.window_s, r.window_events = 300.0, int(events_per_s * 300)
    r.latencies = [p99 / 2] * 98 + [p99] * 2
    r.accepted = r.included = r.included_once = int(events_per_s * 3) - lost
    r.lost = lost
    return r


def result(
    growth_mib: float = 0.0, last_ev_s: float = 800.0, last_p99: float = 1.6, lost: int = 0
) -> SoakResult:
    """An hour in 10 s samples: validator-0 flat at ~300 MiB (+-3), validator-1 growing
    linearly by ``growth_mib`` over the hour; twelve 5-minute windows of 800 events/s, p99
    1.6 s, except the last one."""
    times = [10.0 * k for k in range(361)]
    samples: dict[str, list[tuple[float, float]]] = {
        "validator-0": [(t, 300 + 3 * ((k % 3) - 1)) for k, t in enumerate(times)],
        "validator-1": [(t, 280 + growth_mib * t / 3600) for t in times],
    }
    windows = [
        Window(i, 300.0 * i, report(800, 1.6), (4.0, 4.0, 4.0)) for i in range(11)
    ] + [Window(11, 3300.0, report(last_ev_s, last_p99, lost), (4.0, 4.0, 4.0))]
    return SoakResult(8.0, 16.0, 0.0, windows, samples, [(t, (4.0, 4.0, 4.0)) for t in times],
                      [], [])  # fmt: skip


def test_judge_passes_a_flat_soak_and_names_each_failure() -> None:
    criteria = Criteria()
    assert judge(result(), criteria) == []
    # 40 MiB over the hour is ~13 MiB over the last 20 minutes: within 50 MiB.
    assert judge(result(growth_mib=40), criteria) == []
    (grown,) = judge(result(growth_mib=300), criteria)
    assert grown.startswith("validator-1: RSS grew 98 MiB (481 -> 579) after 40.0 min")
    (slow,) = judge(result(last_ev_s=700), criteria)
    assert slow.startswith("throughput: last window 700 events/s vs first 800")
    assert judge(result(last_ev_s=740), criteria) == []
    (late,) = judge(result(last_p99=3.0), criteria)
    assert late.startswith("latency: last window p99 3.00 s")
    (lost,) = judge(result(lost=2), criteria)
    assert lost == "window 11: lost 2, duplicated 0"
    late_soak = result(lost=2)
    late_soak.windows[-1].late = 2  # final after the settle time, found by the sweep
    assert judge(late_soak, criteria) == []
    big = result()
    big.samples["gateway"] = [(t, 1100.0) for t, _ in big.samples["validator-0"]]
    assert judge(big, criteria) == ["gateway: RSS 1100 MiB >= 1024"]
    # a process whose mapped database pages grow (RssFile) while its own memory stays flat
    # is judged by the anonymous part; its whole RSS still counts toward the ceiling
    mapped = result()
    mapped.samples["gateway"] = [(t, 300 + 200 * t / 3600) for t, _ in mapped.samples["validator-0"]]
    mapped.anon = {name: [(t, 200.0) for t, _ in values] for name, values in mapped.samples.items()}
    assert judge(mapped, criteria) == []
    mapped.anon["gateway"] = [(t, 200 + 300 * t / 3600) for t, _ in mapped.samples["gateway"]]
    (leak,) = judge(mapped, criteria)
    assert leak.startswith("gateway: anonymous memory grew 98 MiB (401 -> 499) after 40.0 min")
    assert rss_table(mapped, 300.0, anon=True).splitlines()[-1].split()[:2] == ["60.0", "200"]
    table = rss_table(result(growth_mib=300), 300.0)
    assert table.splitlines()[-1].split()[:3] == ["60.0", "297", "580"]
    assert len(window_table(result()).splitlines()) == 13


def test_block_costs_from_a_node_log(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text(
        "2026-12-07 18:45:01,100 INFO portledger.node: block #7 0xabc txs=4 gas=9 exec=400ms commit=20ms\n"
        "2026-12-07 18:45:02,100 WARNING portledger.engine: something else\n"
        "2026-12-07 18:45:03,900 INFO portledger.node: block #8 0xdef txs=0 gas=0 exec=0ms commit=30ms\n"
        "2026-12-07 18:46:00,000 INFO portledger.node: block #9 0x123 txs=2 gas=9 exec=300ms commit=10ms\n"
    )
    t0 = time.mktime(time.strptime("2026-12-07 18:45:00", "%Y-%m-%d %H:%M:%S"))
    first, second, empty = block_costs(log, [(t0, t0 + 60), (t0 + 60, t0 + 120), (t0 + 120, t0 + 180)])
    assert (first.blocks, first.transactions, first.executed) == (2, 4, 1)
    assert first.exec_ms_per_tx == 100 and first.commit_ms_per_block == 25
    assert second.exec_ms_per_tx == 150 and second.blocks == 1
    assert empty.blocks == 0 and empty.exec_ms_per_tx is None


def test_memory_probe_reports_growing_lines(tmp_path: Path) -> None:
    probe = MemoryProbe(tmp_path / "memory-profile.log", interval=0.3, top=5)
    probe.start()
    hoard = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            hoard.append(bytearray(64 * 1024))  # the line that grows
            text = (tmp_path / "memory-profile.log").read_text() if probe.path.exists() else ""
            if text.count("--- t=") >= 2:
                break
            time.sleep(0.05)
    finally:
        probe.stop()
        probe.join(timeout=10)
    reports = text.split("--- t=")[1:]
    assert len(reports) >= 2 and "rss=" in reports[-1] and "gc.count=" in reports[-1]
    assert "test_soak.py" in reports[-1].splitlines()[1]  # the top grower is the hoard's line
    assert len(hoard) > 0


def test_memory_probe_option_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MEMORY_PROFILE_ENV, raising=False)
    assert start_memory_probe(tmp_path) is None
    monkeypatch.setenv(MEMORY_PROFILE_ENV, "often")
    with pytest.raises(ValueError, match="expected seconds"):
        start_memory_probe(tmp_path)
    monkeypatch.setenv(MEMORY_PROFILE_ENV, "-1")
    with pytest.raises(ValueError, match="positive"):
        start_memory_probe(tmp_path)


def test_receipts_and_block_caches_are_bounded(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of cargo events carry thousands of logs: the formatted-receipts cache keeps at
    most RECEIPT_CACHE_LOGS of them (it used to keep 32 blocks, ~110 MiB of them), and always
    the latest block; what it answers equals a fresh formatting."""
    monkeypatch.setattr(chainview, "RECEIPT_CACHE_LOGS", 250)
    service = NodeService(ledger, VALIDATOR)
    view = ChainView(service)
    try:
        headers = []
        for n in range(6):  # six blocks of two transactions of 60 events
            txs = [cargo_tx(ledger, TERMINAL, 2 * n + i, events=60) for i in range(2)]
            result = ledger.propose(txs, VALIDATOR, timestamp=int(time.time()) + n)
            assert len(result.block.transactions) == 2
            headers.append(result.block.header)
        for header in headers:
            answer = view.block_receipts(header)
            assert sum(len(r["logs"]) for r in answer) == 122  # 60 + 1 per transaction
            assert view.receipts_cache_logs <= 250
        assert view.receipts_cache_logs == 244  # the last two blocks
        last = headers[-1]
        fresh = format_receipts(last, view.block(last).transactions, ledger.receipts(last))
        assert view.block_receipts(last) == fresh
        # py-evm's per-block caches are held to a few entries (they follow the block size).
        trie_cache = eth.db.trie._make_trie_root_and_nodes.cache_info()
        assert trie_cache.maxsize == TRIE_ROOT_CACHE_ENTRIES and trie_cache.currsize <= 4
        assert trie_cache.misses >= 12  # two roots (transactions, receipts) per block
        txs_cache = QbftChainDB._get_block_transactions.cache_info()
        assert txs_cache.maxsize == BLOCK_TRANSACTIONS_CACHE_ENTRIES and txs_cache.currsize <= 4
        # A block bigger than the whole bound is still cached (alone).
        monkeypatch.setattr(chainview, "RECEIPT_CACHE_LOGS", 100)
        view.block_receipts(headers[0])
        assert view.receipts_cache_logs == 122
    finally:
        service.stop()


def test_collector_collects_the_cycles_the_raised_thresholds_leave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under ``portledger node``'s thresholds (100,000 / 50 / 1000) cyclic garbage that reached
    an older generation stays; the Collector's clock frees it after a block."""

    class Cycle:
        def __init__(self) -> None:
            self.me = self
            self.ballast = bytearray(1024)

    monkeypatch.delenv("PORTLEDGER_GC_YOUNG_SECONDS", raising=False)
    monkeypatch.delenv("PORTLEDGER_GC_FULL_SECONDS", raising=False)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(100_000, 50, 1000)
    try:
        collector = Collector(young_seconds=0.05, full_seconds=3600)
        alive = [Cycle() for _ in range(2000)]
        gc.collect(0)  # alive at a young collection (during a block's execution): promoted
        del alive  # then garbage, in cycles: only a collection of generation 1 frees it
        assert gc.get_count()[1] < 50  # the thresholds alone would not collect it soon
        time.sleep(0.06)
        collector.after_block()
        assert collector.runs == {1: 1, 2: 0}
        assert collector.collected >= 2000  # every Cycle (and its __dict__)
        off = Collector(young_seconds=0, full_seconds=0)
        time.sleep(0.01)
        off.after_block()
        assert off.runs == {1: 0, 2: 0}
    finally:
        gc.set_threshold(*thresholds)


@pytest.mark.integration
def test_short_soak_of_a_port(tmp_path: Path) -> None:
    """The harness end to end: one validator, its gateway, two 9 s windows (~40 s in all at a
    load average of 3, most of it starting the port)."""
    lines: list[str] = []
    soak = run_soak(
        tmp_path, minutes=0.3, window_minutes=0.15, validators=1, observers=0, rate=2.0,
        events_per_tx=20, sample_seconds=2.0, gateway_interval=2.0, out=lines.append,
    )  # fmt: skip
    print("\n".join(lines))
    print(rss_table(soak, 9.0))
    print(window_table(soak))
    assert soak.exited == [] and soak.gateway_errors == []
    assert len(soak.windows) == 2
    for window in soak.windows:
        assert window.report.accepted >= 12 and window.report.lost == 0
        assert window.report.included_once == window.report.accepted
    assert sum(w.gateway_final for w in soak.windows) >= 2
    assert set(soak.samples) == {"validator-0", "gateway", "loadgen"}
    for name, samples in soak.samples.items():
        assert len(samples) >= 6, name
        assert all(50 < mib < 1024 for _, mib in samples), (name, samples)
        anon = soak.anon[name]  # sampled with it, a part of it
        assert len(anon) == len(samples)
        assert all(10 < a <= mib for (_, a), (_, mib) in zip(anon, samples, strict=True)), name
    # Only memory and loss are judged on so short a run (a window is 18 transactions).
    short = Criteria(warmup_s=0, flat_s=18, flat_mib=100, throughput_share=1.0, p99_factor=10,
                     p99_slack_s=5)  # fmt: skip
    assert judge(soak, short) == []


@pytest.mark.slow
@pytest.mark.integration
def test_soak_one_hour(tmp_path: Path) -> None:
    """The issue-17 soak: one hour at 50 % of the sustainable rate (run with ``nice -n 5``)."""
    lines: list[str] = []
    soak = run_soak(tmp_path, minutes=60, window_minutes=5, out=lines.append)
    print("\n".join(lines))
    print(rss_table(soak, 300.0))
    print(window_table(soak))
    failures = judge(soak, Criteria())
    assert failures == [], failures
