"""The README's first command: the demo port runs end to end (real processes), and its feeds.

``portledger demo --once`` starts a devnet and the gateway, plays the SIMULATED vessel call
through the gateway's HTTP API, checks who sees what, the seals, the heads and the replay, and
stops every process. The feed's payloads are checked here without processes: every DCSA event
passes the DCSA 2.2 schemas, every canonical item the upload schema, and every party may publish
what it sends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contracts import ROLES
from devnet import simulate
from devnet.members import DEMO_ORGANISATIONS
from gateway import jsonbody
from gateway.events import dcsa
from gateway.events.model import CanonicalEvent, from_json
from gateway.intake import model as intake
from gateway.intake.rules import role_problem

T0 = 1_795_000_000  # 2026-11-18


def _roles(party: str) -> int:
    name_roles = DEMO_ORGANISATIONS[simulate.PARTIES[party] - 1][1]
    mask = 0
    for role in name_roles:
        mask |= ROLES[role]
    return mask


def _canonical_events(upload: simulate.Upload) -> list[CanonicalEvent]:
    """The canonical events an upload becomes, checked as the gateway checks them."""
    if upload.path.startswith("/v2/events"):
        out: list[CanonicalEvent] = []
        for event in upload.body:
            dcsa.validate(event)
            assert "SIMULATED" in json.dumps(event)
            out += dcsa.from_dcsa(event)
        return out
    if upload.path == "/v1/events":
        out = []
        for item in upload.body["events"]:
            jsonbody.check(item, intake.ITEM_SCHEMA)
            assert item["details"]["simulated"] is True
            out.append(from_json({k: v for k, v in item.items() if k != "id"}))
        return out
    schema = {"/v1/bills-of-lading": intake.MASTER_SCHEMA,
              "/v1/grants": intake.GRANT_SCHEMA}.get(upload.path, intake.HOUSE_SCHEMA)
    jsonbody.check(upload.body, schema)
    return []


def test_the_story_and_live_feed_are_valid_uploads_their_parties_may_send() -> None:
    call = simulate.vessel_call(42, T0)
    assert len(call.containers) == 3 and len(set(call.containers)) == 3
    assert call.house_containers == call.containers[:2]
    assert "SIM" in call.master and "SIM" in call.house and "SIMULATED" in call.vessel_name
    feed = simulate.LiveFeed(call, T0, seed=7)
    uploads = simulate.story(call, T0) + [simulate.grant(call, "bank")]
    ticks = [feed.tick(T0 + 3 * i) for i in range(5)]
    kinds: list[str] = []
    for upload in uploads + [u for tick in ticks for u in tick]:
        for event in _canonical_events(upload):
            assert role_problem(event, _roles(upload.party)) is None, upload.what
            kinds.append(event.event_type)
    assert {"TRANSPORT.DEPA", "TRANSPORT.ARRI", "TERMINAL.DISC", "CUSTOMS.CUSR",
            "TERMINAL.AVPU", "TERMINAL.GTOT", "TERMINAL.GTIN"} <= set(kinds)
    # The live feed gates the story's containers out first, then new export containers in.
    gate = [u.body[0] for tick in ticks for u in tick if u.party == "terminal"]
    assert [g["equipmentReference"] for g in gate[:3]] == list(call.containers)
    assert {g["equipmentEventTypeCode"] for g in gate[3:]} == {"GTIN"}
    assert all(g["equipmentReference"] not in call.containers for g in gate[3:])
    # Each tick's ETA update carries the vessel's (simulated AIS) position, as tracking reads it.
    etas = [e for tick in ticks for u in tick if u.party == "carrier"
            for e in _canonical_events(u)]
    assert len(etas) == 5 and {e.event_type for e in etas} == {"TRANSPORT.ARRI"}
    for e in etas:
        assert set(e.details["position"]) >= {"lat", "lon"} and "simulated" in \
            e.details["position"]["source"]
        assert e.details["vessel"]["imo"] == feed.next_call.vessel_imo
    # The same serial, seed and clock give the same uploads (a seeded simulation).
    again = simulate.LiveFeed(simulate.vessel_call(42, T0), T0, seed=7)
    assert [again.tick(T0 + 3 * i) for i in range(5)] == ticks
    assert simulate.story(call, T0) == simulate.story(simulate.vessel_call(42, T0), T0)


def test_a_vessel_call_refuses_impossible_parameters() -> None:
    with pytest.raises(simulate.SimulationError):
        simulate.vessel_call(1_000_000, T0)
    with pytest.raises(simulate.SimulationError):
        simulate.vessel_call(1, T0, containers=1)


@pytest.mark.integration
def test_demo_plays_the_vessel_call_through_the_gateway(tmp_path: Path) -> None:
    root = tmp_path / "port"
    done = subprocess.run(
        [sys.executable, "-m", "portledger", "demo", "--once", "--datadir", str(root), "--port", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    for line in (
        "PASS every upload of the story accepted (202) and final on chain",
        "PASS trader sees exactly 2 containers by house B/L",
        "PASS the trader's containers are available for pick-up",
        "PASS bank sees nothing of the master B/L before the grant",
        "PASS bank sees the 3 containers after the grant",
        "PASS carrier's access log lists the bank",
        "PASS terminal's access log lists the bank and the trader",
        "PASS every block of the story carries a quorum of valid validator seals",
        "PASS the live feed's uploads are accepted and final on chain",
        "PASS every node has the same head",
        "PASS the observer's chain replays from genesis, every root verified",
    ):
        assert line in out, line
    assert "FAIL" not in out and "demo OK" in out and "every root verified" in out
    # Every process the demo started is gone (nodes and gateway run from the port's folder).
    assert _processes_mentioning(str(root)) == []


@pytest.mark.integration
def test_demo_stopped_by_sigterm_stops_every_process_and_says_so(tmp_path: Path) -> None:
    """SIGTERM in the live phase is a request to stop, not a failure: exit 0, nothing left."""
    root = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "portledger", "demo", "--datadir", str(root), "--port", "0",
         "--interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    live = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "live feed (SIMULATED)" in line:
                live.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not live.wait(0.5):
            assert proc.poll() is None, "".join(lines)[-6000:]
            assert time.monotonic() < deadline, "no live phase within 300 s:\n" + "".join(lines)[-6000:]
        time.sleep(2)  # a live tick or two
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
        out = "".join(lines)
        assert proc.returncode == 0, out[-6000:]
        assert "demo stopped by SIGTERM; every process stopped" in out, out[-6000:]
        assert "demo FAILED" not in out and "FAIL " not in out, out[-6000:]
        assert _processes_mentioning(str(root)) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in _pids_mentioning(str(root)):  # only if the demo left its own behind
            os.kill(pid, signal.SIGKILL)


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in line:
            found.append(line)
    return found


def _pids_mentioning(text: str) -> list[int]:
    """Ids of running processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(int(cmdline.parent.name))
    return found
