"""Kill tests of the write path under load: every event answered 2xx ends on chain exactly once.

A 4-validator devnet (:mod:`devnet.processes`) runs; the write path (Outbox + Submitter + NodeClient
+ Keystore) runs as its own OS process (:mod:`tests.support.writepath`) behind
``POST /accept``. A loader thread pushes events with idempotency keys (a failed request is sent
again later with the same key and content, as a client would). Meanwhile, at seeded random
instants, the gateway is SIGKILLed (and restarted) at least five times, a validator is
SIGKILLed (and restarted) — the gateway's preferred node — and another is frozen with SIGSTOP
(unreachable: it accepts connections but answers nothing) and resumed. Then the chain is read
(``eth_getLogs`` of CargoLedger), every payload is decrypted as its owner, and the idempotency
keys in them are counted: every answered key exactly once, none twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contracts import abi
from devnet.jsonrpc import rpc_call
from devnet.layout import create_devnet
from devnet.ports import free_ports
from devnet.processes import Devnet
from gateway.confidential.keystore import Keystore
from tests.support.writepath import (
    CARRIER,
    PASSPHRASE,
    TERMINAL,
    chain_cargo_events,
    demo_event,
    open_keys,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Runner:
    """The write-path process (see :mod:`tests.support.writepath`)."""

    def __init__(self, data_dir: Path, urls: list[str]) -> None:
        self.data_dir = data_dir
        self.urls = urls
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "runner.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.writepath",
                 "--data-dir", str(self.data_dir), "--nodes", ",".join(self.urls),
                 "--port", str(self.port), "--batch-max", "200", "--window-ms", "100"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runner exited: {self.log.read_text()[-3000:]}")
            try:
                self.status()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"runner not up: {self.log.read_text()[-3000:]}")

    def status(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/status", timeout=5) as response:
            return dict(json.loads(response.read()))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Loader:
    """Pushes events in small bulks; remembers which keys were answered 2xx."""

    runner: Runner
    per_request: int = 10
    interval: float = 0.05
    answered: set[tuple[int, str]] = field(default_factory=set)
    unanswered: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    sent: int = 0
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def post(self, org: int, items: list[dict[str, Any]]) -> bool:
        body = json.dumps({"org": org, "events": items}).encode()
        request = urllib.request.Request(
            self.runner.url + "/accept", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                ok = response.status == 200
                answer = json.loads(response.read())
        except (OSError, urllib.error.HTTPError, ValueError):
            ok, answer = False, []
        for item in items:
            k = (org, item["key"])
            if ok:
                assert any(r["id"] == item["key"] for r in answer)
                self.answered.add(k)
                self.unanswered.pop(k, None)
            else:
                self.unanswered[k] = item
        if not ok:
            self.failures += 1
        return ok

    def item(self, n: int, org: int) -> dict[str, Any]:
        key = f"k{n}"
        kind = "TERMINAL.DISC" if org == TERMINAL else "EQUIPMENT.STUF"
        event = demo_event(n % 173, kind=kind, key=key)
        return {"key": key, "event": event.to_json()}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            org = TERMINAL if (n // self.per_request) % 2 == 0 else CARRIER
            items = [self.item(n + i, org) for i in range(self.per_request)]
            n += self.per_request
            self.sent += len(items)
            self.post(org, items)
            # retry what failed before (same key, same content)
            for (retry_org, _), item in list(self.unanswered.items())[:10]:
                if retry_org == org and (retry_org, item["key"]) not in self.answered:
                    self.post(org, [item])
            time.sleep(self.interval)

    def settle(self, timeout: float) -> None:
        """Send every unanswered key again until all are answered."""
        deadline = time.monotonic() + timeout
        while self.unanswered and time.monotonic() < deadline:
            for (org, _), item in list(self.unanswered.items()):
                self.post(org, [item])
            time.sleep(0.2)
        assert not self.unanswered, f"{len(self.unanswered)} keys never answered"


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    layout = create_devnet(tmp_path / "net", validators=4, observers=0)
    net = Devnet(layout)
    try:
        net.start()
        net.wait_ready(timeout=120)
        yield net
    finally:
        net.stop()


def wait_chain(net: Devnet, i: int, timeout: float = 60.0) -> None:
    """Wait until node ``i`` has caught up with node ``(i + 2) % 4``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            mine = int(net.rpc(i, "eth_blockNumber", timeout=2.0), 16)
            other = int(net.rpc((i + 2) % 4, "eth_blockNumber", timeout=2.0), 16)
            if mine >= other - 1:
                return
        except Exception:
            pass
        time.sleep(0.2)


def run_kill_test(net: Devnet, tmp_path: Path, *, seed: int, duration: float, gateway_kills: int
                  ) -> None:
    rng = random.Random(seed)
    urls = [n.rpc_url for n in net.nodes]
    runner = Runner(tmp_path / "gateway", urls)
    runner.start()
    loader = Loader(runner)
    thread = threading.Thread(target=loader.run, name="loader", daemon=True)
    t0 = time.monotonic()
    thread.start()
    # Seeded schedule: gateway kills spread over the run (their own thread), node faults one at
    # a time in another (QBFT with 4 validators tolerates one faulty node).
    kill_times = sorted(rng.uniform(0.05, 0.95) * duration for _ in range(gateway_kills))
    pauses = [rng.uniform(0.1, 0.8) for _ in kill_times]
    log: list[str] = []

    def at(moment: float) -> None:
        time.sleep(max(0.0, t0 + moment - time.monotonic()))

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - t0:5.1f}s {what}")

    def node_faults() -> None:
        at(duration * 0.15)
        net.kill(0)  # the gateway's preferred node
        note("SIGKILL validator-0")
        at(duration * 0.35)
        net.start_node(0)
        net.wait_ready(timeout=60, nodes=[0])
        note("validator-0 restarted")
        wait_chain(net, 0)
        at(duration * 0.55)
        net.stop_process(1)  # unreachable: connections hang
        note("SIGSTOP validator-1")
        at(duration * 0.75)
        net.cont(1)
        note("SIGCONT validator-1")

    faults = threading.Thread(target=node_faults, name="node-faults", daemon=True)
    faults.start()
    try:
        for moment, pause in zip(kill_times, pauses, strict=True):
            at(moment)
            runner.kill()
            note("SIGKILL gateway")
            time.sleep(pause)
            runner.start()
        at(duration)
        faults.join(timeout=120)
    finally:
        loader.stop.set()
        thread.join(timeout=30)
    loader.settle(timeout=60)
    # wait until the gateway has nothing left in flight
    deadline = time.monotonic() + 120
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = runner.status()
        if not counts.get("accepted") and not counts.get("sent"):
            break
        time.sleep(0.5)
    runner.stop()
    assert not counts.get("accepted") and not counts.get("sent"), counts
    assert not counts.get("failed"), counts

    # read the chain (from a node that was never faulted) and decrypt as the owners
    store = Keystore(tmp_path / "gateway" / "keystore", PASSPHRASE)
    read_url = net.nodes[2].rpc_url
    chain_orgs = {}
    for org in (TERMINAL, CARRIER):
        data = rpc_call(read_url, "eth_call", [{"to": abi.address("Consortium"), "data": "0x" + abi.call_data(
            "Consortium", "memberOf", store.get(org).address).hex()}, "latest"])
        chain_orgs[int(abi.decode_output("Consortium", "memberOf", bytes.fromhex(data[2:]))[0])] = org
    on_chain = chain_cargo_events(read_url)
    found = Counter((chain_orgs[pub], key) for pub, key in open_keys(on_chain, store, chain_orgs))
    answered = loader.answered
    lost = [k for k in answered if found[k] == 0]
    duplicated = [k for k, c in found.items() if c > 1]
    unexpected = [k for k in found if k not in answered]
    print(
        f"\nwrite-path kill test (seed {seed}): {loader.sent} events offered, "
        f"{len(answered)} answered 2xx, {loader.failures} failed requests (retried), "
        f"{runner.kills} gateway SIGKILLs, on chain {sum(found.values())} events, "
        f"lost {len(lost)}, duplicated {len(duplicated)}, unexpected {len(unexpected)}, "
        f"outbox {counts}\n  " + "\n  ".join(log)
    )
    assert runner.kills >= gateway_kills
    assert not lost, f"lost {len(lost)}: {sorted(lost)[:10]}"
    assert not duplicated, f"duplicated {len(duplicated)}: {sorted(duplicated)[:10]}"
    assert not unexpected
    assert len(answered) > 200


def test_write_path_survives_kills_under_load(devnet: Devnet, tmp_path: Path) -> None:
    run_kill_test(devnet, tmp_path, seed=int(os.environ.get("KILL_SEED", "5")), duration=24.0,
                  gateway_kills=6)


@pytest.mark.slow
def test_write_path_soak(devnet: Devnet, tmp_path: Path) -> None:
    run_kill_test(devnet, tmp_path, seed=int(os.environ.get("KILL_SEED", "11")), duration=240.0,
                  gateway_kills=25)
