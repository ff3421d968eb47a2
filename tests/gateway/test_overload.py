"""Overload through the gateway: a bounded outbox answers 429 ``outbox-full``, nothing is lost.

The default run checks the outbox's depth limits directly (per organisation, in all, retries
never refused, an empty queue takes any upload, ``Retry-After`` from the drain rate, one full
request never refusing another of the same group commit), through the app (``POST /v1/events``
answers 429 with ``Retry-After``; ``/metrics`` shows depth, limits and refusals), and a short
overload of a real 1-validator port with a small outbox: no process dies, every refusal is a
429 or 503 with ``Retry-After``, every accepted event is final exactly once on chain.

The ``-m slow`` test is issue 17 item 5 through the gateway: a 4-validator devnet + observer +
gateway; the sustainable rate measured first (a calibration at saturation), then the normal rate
(half of it), ten times the sustainable rate for two minutes from several organisations' API
keys, and the normal rate again: the same checks, peak RSS of every process, and the recovery
time (finalized throughput of a 5 s sliding window back within 10 % of the baseline, <= 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet.gateway import Port
from devnet.load import (
    GatewayLoad,
    GatewayLoadReport,
    Recovery,
    gateway_uploaders,
    recovery,
)
from gateway import errors
from gateway.config import ConfigError, GatewayConfig
from gateway.events.model import from_json
from gateway.writepath import outbox as outbox_module
from gateway.writepath.operations import Operation
from gateway.writepath.outbox import Outbox, OutboxFull
from tests.support.events import canonical_json
from tests.support.intake import IntakeHarness, intake_harness

TERMINAL, TSING_YI = 2, 3


def ops(prefix: str, count: int) -> list[Operation]:
    event = from_json(canonical_json())
    return [Operation(f"{prefix}-{i}", "event", event) for i in range(count)]


def settle(box: Outbox, org: int, count: int, nonce: int) -> None:
    """Put the organisation's oldest ``count`` operations in a mined transaction."""
    pending = box.pending(org, count)
    tx = box.persist_tx(org_id=org, sender=f"0x{org:040x}", nonce=nonce,
                        tx_hash=f"0x{org:032x}{nonce:032x}", raw=b"raw", kind="record",
                        op_ids=[p.op_id for p in pending])  # fmt: skip
    box.finish_tx(tx.tx_id, status="mined", block=nonce + 1,
                  final={p.op_id: i for i, p in enumerate(pending)})  # fmt: skip


# -- the outbox's limits ----------------------------------------------------------------------
def test_depth_limits_per_organisation_and_in_all(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_depth_per_org=5, max_depth=8)
    try:
        assert len(box.accept(1, ops("a", 5))) == 5
        with pytest.raises(OutboxFull) as full:
            box.accept(1, ops("b", 1))
        refusal = full.value
        assert isinstance(refusal, errors.TooManyRequests) and refusal.status == 429
        assert refusal.code == "outbox-full"
        # Nothing drained yet: the documented fallback hint.
        assert refusal.headers == {"Retry-After": str(outbox_module.RETRY_AFTER_UNKNOWN)}
        assert refusal.details == {"retryAfterSeconds": outbox_module.RETRY_AFTER_UNKNOWN,
                                   "limitedBy": "outbox-organisation", "depth": 5, "limit": 5,
                                   "operations": 1}  # fmt: skip
        # A retry of accepted keys takes no room: answered with the original receipts.
        again = box.accept(1, ops("a", 2))
        assert [r.duplicate for r in again] == [True, True]
        # A request mixing retries and one new key is refused whole.
        with pytest.raises(OutboxFull):
            box.accept(1, [*ops("a", 2), *ops("c", 1)])
        assert box.status(1, "c-0") is None
        # Another organisation has room of its own, up to the total.
        assert len(box.accept(2, ops("d", 3))) == 3
        with pytest.raises(OutboxFull) as total:
            box.accept(3, ops("e", 1))
        assert total.value.details["limitedBy"] == "outbox-total"
        assert total.value.details["depth"] == 8
        assert box.depth() == {1: 5, 2: 3}
        assert box.refused == {"organisation": 2, "total": 1, "wait": 0}
        assert box.counts() == {"accepted": 8}
    finally:
        box.close()


def test_an_empty_queue_takes_any_upload(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_depth_per_org=5, max_depth=100)
    try:
        assert len(box.accept(1, ops("big", 12))) == 12  # larger than the limit, queue empty
        with pytest.raises(OutboxFull):
            box.accept(1, ops("next", 1))
    finally:
        box.close()


def test_draining_makes_room_and_sets_retry_after(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_depth_per_org=10)
    try:
        box.accept(1, ops("a", 10))
        settle(box, 1, 4, nonce=0)  # 4 final: depth 6
        assert box.depth() == {1: 6}
        rate = box.drain_rate()
        assert rate > 0
        box.accept(1, ops("b", 4))  # fits again: depth 10
        with pytest.raises(OutboxFull) as full:
            box.accept(1, ops("c", 7))
        # 7 operations over the limit, at the measured drain rate.
        expected = max(1, min(outbox_module.RETRY_AFTER_MAX, -(-7 // rate)))
        assert full.value.details["retryAfterSeconds"] == box.retry_after(7)
        assert box.retry_after(7) in (expected, expected + 1)  # the rate decays as time passes
        assert box.retry_after(10**9) == outbox_module.RETRY_AFTER_MAX
        # Sent (in a live transaction) still counts: the depth is what is not final.
        pending = box.pending(1, 3)
        box.persist_tx(org_id=1, sender="0x" + "11" * 20, nonce=1, tx_hash="0x" + "ab" * 32,
                       raw=b"r", kind="record", op_ids=[p.op_id for p in pending])  # fmt: skip
        assert box.depth() == {1: 10}
    finally:
        box.close()


def test_at_most_max_wait_seconds_of_work_at_the_drain_rate(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_wait=2.0)
    try:
        box.accept(1, ops("a", 300))  # nothing drained yet: no time bound
        assert box.drain_rate() == 0
        settle(box, 1, 100, nonce=0)  # 100 settled within the last second or few: rate <= 100/s
        rate = box.drain_rate()
        assert 10 <= rate <= 100
        with pytest.raises(OutboxFull) as full:  # depth 200 > 2 s x rate
            box.accept(2, ops("b", 1))
        details = full.value.details
        assert details["limitedBy"] == "outbox-wait" and details["depth"] == 200
        assert details["limit"] <= 200 and details["retryAfterSeconds"] >= 1
        assert box.refused["wait"] == 1
        # An idle outbox remembers the last rate it measured.
        later = box.drain_rate(now=time.monotonic() + 3 * outbox_module.DRAIN_WINDOW)
        assert later > 0
    finally:
        box.close()


def test_the_time_bound_has_a_floor(tmp_path: Path) -> None:
    """At a slow drain rate the time bound would be a handful of operations: it never refuses
    below ``wait_floor`` (the gateway's default 200), and refuses past it as before."""
    box = Outbox(tmp_path / "outbox.sqlite", max_wait=2.0, wait_floor=250)
    try:
        box.accept(1, ops("a", 120))
        settle(box, 1, 20, nonce=0)  # depth 100; 2 s at <= 20/s is at most 40 operations
        assert box.wait_limit(box.drain_rate()) == 250
        box.accept(2, ops("b", 150))  # 250: at the floor, accepted
        with pytest.raises(OutboxFull) as full:
            box.accept(2, ops("c", 1))
        assert full.value.details["limitedBy"] == "outbox-wait"
        assert full.value.details["limit"] == 250
    finally:
        box.close()
    with pytest.raises(ValueError, match="wait_floor"):
        Outbox(tmp_path / "other.sqlite", wait_floor=-1)
    with pytest.raises(ConfigError, match="outbox_wait_floor"):
        GatewayConfig.from_dict({"data_dir": str(tmp_path), "outbox_wait_floor": -1})
    assert GatewayConfig(data_dir=tmp_path).outbox_wait_floor == 200


def test_a_full_request_never_refuses_another_of_its_group_commit(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_depth_per_org=3)

    async def main() -> tuple[Any, ...]:
        box.accept(1, ops("first", 3))
        return tuple(await asyncio.gather(
            box.accept_async(1, ops("over", 1)),
            box.accept_async(2, ops("other", 2)),
            box.accept_async(1, ops("first", 3)),  # retries
            return_exceptions=True,
        ))

    try:
        over, other, retries = asyncio.run(main())
        assert isinstance(over, OutboxFull)
        assert [r.status for r in other] == ["accepted", "accepted"]
        assert all(r.duplicate for r in retries)
        assert box.depth() == {1: 3, 2: 2}
    finally:
        box.close()


def test_unbounded_without_limits_and_limits_are_checked(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    try:
        box.accept(1, ops("a", 50))
        box.accept(1, ops("b", 50))
        assert box.depth() == {1: 100}
    finally:
        box.close()
    with pytest.raises(ValueError, match="max_wait"):
        Outbox(tmp_path / "other.sqlite", max_wait=0)
    with pytest.raises(ValueError, match="max_depth_per_org"):
        Outbox(tmp_path / "other.sqlite", max_depth_per_org=0)
    for key in ("outbox_max_per_org", "outbox_max_total", "outbox_max_wait_seconds"):
        with pytest.raises(ConfigError, match=key):
            GatewayConfig.from_dict({"data_dir": str(tmp_path), key: 0})
    defaults = GatewayConfig(data_dir=tmp_path)
    assert (defaults.outbox_max_per_org, defaults.outbox_max_total,
            defaults.outbox_max_wait_seconds) == (10_000, 20_000, 10.0)  # fmt: skip


# -- through the app --------------------------------------------------------------------------
@pytest.fixture
async def small(aiohttp_client: Any, gateway_config: GatewayConfig) -> IntakeHarness:
    config = GatewayConfig.from_dict({**gateway_config.to_dict(), "outbox_max_per_org": 3,
                                      "outbox_max_total": 5})  # fmt: skip
    return await intake_harness(aiohttp_client, config, [
        (TERMINAL, "Kwai Tsing Container Terminal", ("terminal",)),
        (TSING_YI, "Tsing Yi Terminal", ("terminal",)),
    ])  # fmt: skip


def events_body(prefix: str, count: int) -> dict[str, Any]:
    return {"events": [{"id": f"{prefix}-{i}", **canonical_json()} for i in range(count)]}


async def test_post_events_answers_429_outbox_full_and_metrics_show_it(
    small: IntakeHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The exact check, after the body is read (the early one is tested below).
    monkeypatch.setattr(outbox_module, "ADMIT_FRESH", -1.0)
    accepted = await small.post("/v1/events", TERMINAL, events_body("t", 3))
    assert accepted.status == 202, await accepted.text()
    refused = await small.post("/v1/events", TERMINAL, events_body("u", 1))
    assert refused.status == 429
    assert refused.headers["Retry-After"] == str(outbox_module.RETRY_AFTER_UNKNOWN)
    error = (await refused.json())["error"]
    assert error["code"] == "outbox-full"
    assert error["details"]["limitedBy"] == "outbox-organisation"
    # The retry of what was accepted is still answered (202, duplicates).
    again = await small.post("/v1/events", TERMINAL, events_body("t", 3))
    assert again.status == 202
    assert all(r["duplicate"] for r in (await again.json())["receipts"])
    assert (await small.post("/v1/events", TSING_YI, events_body("c", 2))).status == 202
    total = await small.post("/v1/events", TSING_YI, events_body("d", 1))
    assert total.status == 429
    assert (await total.json())["error"]["details"]["limitedBy"] == "outbox-total"
    metrics = await (await small.client.get("/metrics")).text()
    samples = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith(("portledger_outbox", "portledger_http_requests_total"))
    }
    assert samples["portledger_outbox_depth"] == 5
    assert samples['portledger_outbox_limit{limit="organisation"}'] == 3
    assert samples['portledger_outbox_limit{limit="total"}'] == 5
    assert samples['portledger_outbox_limit{limit="wait_seconds"}'] == 10
    assert samples['portledger_outbox_refused_total{limit="organisation"}'] == 1
    assert samples['portledger_outbox_refused_total{limit="total"}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("portledger_outbox_org_depth")) == 5
    assert samples["portledger_outbox_drain_per_second"] == 0
    # The request metrics count the refusals as the 429s the clients got (not as 500s).
    route = 'method="POST",route="/v1/events"'
    assert samples.get(f'portledger_http_requests_total{{{route},status="500"}}') is None
    assert samples[f'portledger_http_requests_total{{{route},status="429"}}'] == 2


async def test_a_full_queue_refuses_uploads_before_reading_them(
    small: IntakeHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (await small.post("/v1/events", TERMINAL, events_body("t", 3))).status == 202
    # Full: not even parsed — a body that is not JSON gets the 429, not a 400.
    early = await small.post("/v1/events", TERMINAL, data=b"{not json")
    assert early.status == 429 and early.headers["Retry-After"]
    assert (await early.json())["error"]["code"] == "outbox-full"
    bulk = await small.post("/v1/events/bulk", TERMINAL, data=b"{not json")
    assert bulk.status == 429
    # An organisation with room gets its body read (and refused for what it is).
    assert (await small.post("/v1/events", TSING_YI, data=b"{not json")).status == 400
    # Reads are never refused early.
    assert (await small.get("/v1/submissions/t-0", TERMINAL)).status == 200
    # Knowledge older than ADMIT_FRESH is not trusted: the body is read, the exact check runs.
    monkeypatch.setattr(outbox_module, "ADMIT_FRESH", -1.0)
    assert (await small.post("/v1/events", TERMINAL, data=b"{not json")).status == 400
    assert (await small.post("/v1/events", TERMINAL, events_body("t", 3))).status == 202


# -- a real port ------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PortRss(threading.Thread):
    """Peak RSS of every node process and of the gateway (its whole process group)."""

    def __init__(self, port: Port, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="port-rss")
        self.port = port
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._halt = threading.Event()

    def sample(self) -> None:
        devnet = self.port.devnet
        for i, node in enumerate(devnet.nodes):
            pid = devnet.pid(i)
            if pid is not None:
                with contextlib.suppress(OSError):
                    self.peak[node.name] = max(self.peak.get(node.name, 0.0), rss_mib(pid))
        gateway = self.port.gateway._proc  # the process the port started
        if gateway is not None:
            with contextlib.suppress(OSError):
                self.peak["gateway"] = max(self.peak.get("gateway", 0.0), rss_mib(gateway.pid))

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def load_of(port: Port, events_per_request: int = 20) -> GatewayLoad:
    uploaders = gateway_uploaders(port.gateway.credentials())
    watch = (port.layout.observers or port.layout.validators)[0]
    return GatewayLoad(port.gateway.url, uploaders[:4], watch,
                       events_per_request=events_per_request)  # fmt: skip


def check_refusals_and_exactly_once(
    reports: list[GatewayLoadReport], publishers: Counter[int], orgs: set[int]
) -> None:
    """Every refusal a 429/503 with Retry-After, no other error, no hang; every accepted event
    final and logged exactly once where its receipt says; nothing else logged by the uploaders."""
    for report in reports:
        assert not report.errors, report.describe()
        assert all(kind.split()[0] in ("429", "503") for kind in report.refused), report.refused
        assert report.without_retry_after == 0
        assert report.slowest_s < 30
        assert report.failed == 0 and report.not_final == 0, report.describe()
        assert report.final == report.accepted == report.final_once, report.describe()
    on_chain = sum(publishers[org] for org in orgs)
    assert on_chain == sum(r.final_once for r in reports), (on_chain, dict(publishers))


@pytest.mark.integration
def test_short_overload_of_a_one_validator_port(tmp_path: Path) -> None:
    """A few seconds far above what one validator finalizes, with a small outbox."""
    port = Port(tmp_path / "port", validators=1, observers=0,
                gateway_options={"outbox_max_per_org": 150, "outbox_max_total": 300})  # fmt: skip
    try:
        port.start()
        with load_of(port) as load:
            orgs = {u.org for u in load.uploaders}
            over = load.run("overload", 3000, 4)
            load.wait_drained(120)
            publishers = load.read_back([over])
        print(over.describe())
        assert port.devnet.is_running(0) and port.gateway.running
        assert over.refused.get("429 outbox-full", 0) > 0, over.describe()
        assert over.accepted > 0
        check_refusals_and_exactly_once([over], publishers, orgs)
    finally:
        port.stop()
        print_gateway_problems(port)


# -- slow: issue 17 item 5 through the gateway -------------------------------------------------
#: Seconds of each phase of the slow test (the overload: 2 minutes, as the issue asks).
CALIBRATE_S, BASELINE_S, OVERLOAD_S, RECOVERY_S = 30.0, 30.0, 120.0, 45.0
#: Events/s of the calibration: far above what the port finalizes (a few hundred a second when
#: the machine is quiet), not so far that refusing it takes much of the gateway's CPU.
SATURATE = 1500
#: Events per upload at the normal rate (the overload's: 50): small, so that a 5 s window of
#: the normal rate holds many uploads and measures finely.
NORMAL_REQUEST = 5


@pytest.mark.slow
@pytest.mark.integration
def test_overload_ten_times_through_the_gateway(tmp_path: Path) -> None:
    port = Port(tmp_path / "port", validators=4, observers=1,
                gateway_options={"rate_limit_per_key": 1000.0,
                                 "rate_limit_burst": 2000})  # fmt: skip
    sampler = PortRss(port)
    try:
        port.start(timeout=180)
        sampler.start()
        with load_of(port, events_per_request=50) as load:
            orgs = {u.org for u in load.uploaders}
            # A gateway that has run a while knows the rate its outbox drains at (before
            # anything settled only the depth limits apply): a short warm-up.
            warmup = load.run("warm-up", 100, 10, events_per_request=NORMAL_REQUEST)
            load.wait_drained(300)
            # Calibration: offered far more than the chain finalizes; what it finalized is
            # the sustainable rate. Then the backlog drains.
            calibration = load.run("calibration", SATURATE, CALIBRATE_S)
            load.wait_drained(300)
            load.read_back([calibration])
            sustainable = calibration.finalized_events_per_s
            assert sustainable > 0, calibration.describe()
            normal = sustainable / 2
            print(f"sustainable {sustainable:,.0f} events/s; normal {normal:,.0f}; overload "
                  f"{10 * sustainable:,.0f}; load {os.getloadavg()}")  # fmt: skip
            base = load.run("baseline", normal, BASELINE_S, events_per_request=NORMAL_REQUEST)
            over = load.run("overload", 10 * sustainable, OVERLOAD_S)
            after = load.run("recovery", normal, RECOVERY_S, warmup=0,
                             events_per_request=NORMAL_REQUEST)  # fmt: skip
            ended = after.started + after.duration_s
            load.wait_drained(300)
            publishers = load.read_back([warmup, calibration, base, over, after])
            loadavg = os.getloadavg()
        reports = [warmup, calibration, base, over, after]
        for report in reports:
            print(report.describe())
        back: Recovery = recovery(after.finalized, start=after.started, end=ended,
                                  baseline_events_per_s=base.finalized_events_per_s)  # fmt: skip
        print(back.describe())
        print("windows:", [(round(t, 1), round(r)) for t, r in back.series[::4]])
        print("peak RSS MiB:", {k: round(v) for k, v in sampler.peak.items()}, "load", loadavg)
        assert port.gateway.running
        assert all(port.devnet.is_running(i) for i in range(len(port.devnet.nodes)))
        # A real overload: offered ~10x what it finalizes, and refused with back-pressure.
        assert over.submit_events_per_s >= 5 * sustainable, over.describe()
        assert over.refused_events > 0
        check_refusals_and_exactly_once(reports, publishers, orgs)
        assert max(sampler.peak.values()) < 1024
        assert back.seconds is not None and back.seconds <= 30, back.describe()
    finally:
        sampler.stop()
        port.stop()
        print_gateway_problems(port)


def print_gateway_problems(port: Port) -> None:
    """The gateway log's lines other than the access log (warnings, errors, tracebacks)."""
    with contextlib.suppress(OSError):
        lines = port.gateway.log_path.read_text(errors="replace").splitlines()
        other = [line for line in lines if "portledger.gateway.access" not in line]
        print("gateway log (not access):", *other[-40:], sep="\n")


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    yield
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("gateway-load")]
    assert not leftover, leftover
