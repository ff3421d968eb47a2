"""The README's first command: the demo port runs end to end (real processes), and its feeds.

``portledger demo --once`` starts a devnet and the gateway, plays the SIMULATED vessel call
through the gateway's HTTP API, checks who sees what, the port's systems in their own formats,
the seals, the heads and the replay, and stops every process. The feed's payloads are checked
here without processes, as the gateway checks them: every DCSA event passes the DCSA 2.2
schemas, every canonical item the upload schema, every raw file (EDIFACT, AIS, DCSA Reefer,
Cargo-IMP, customs status) is read by the gateway's own adapter without an error line, and
every party may publish every event and reading it sends.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contracts import ROLES
from devnet import feedstory, simulate
from devnet.members import DEMO_ORGANISATIONS
from devnet.simfeeds import cargo_imp
from gateway import jsonbody
from gateway.events import dcsa, identifiers
from gateway.events.model import CanonicalEvent, from_json
from gateway.feeds import formats
from gateway.intake import model as intake
from gateway.intake.rules import role_problem
from gateway.telemetry.model import Reading
from gateway.telemetry.visibility import role_problem as reading_role_problem
from gateway.tracking.eta import ais_eta

T0 = 1_795_000_000  # 2026-11-18


def _roles(party: str) -> int:
    name_roles = DEMO_ORGANISATIONS[simulate.PARTIES[party] - 1][1]
    mask = 0
    for role in name_roles:
        mask |= ROLES[role]
    return mask


def _messages(fmt: str, raw: bytes) -> list[bytes]:
    """The pieces of a raw file that must each say SIMULATED: an EDIFACT interchange's header,
    a Cargo-IMP message, a line of NMEA or JSON Lines."""
    if fmt == "edifact":
        return re.findall(rb"UNB\+[^']*'", raw)
    if fmt == "cargo-imp":
        return [m for m in raw.split(b"\x03") if m.strip()]
    return [line for line in raw.splitlines() if line.strip()]


def _parsed(upload: simulate.Upload, now: int = T0) -> tuple[list[CanonicalEvent], list[Reading]]:
    """The canonical events and readings an upload becomes, checked as the gateway checks them."""
    if upload.raw is not None:
        assert upload.body is None and upload.headers == {
            "Content-Type": "application/octet-stream"}
        fmt = upload.feed_format
        assert fmt in formats.FORMATS, upload.path
        assert formats.detect(upload.raw) == fmt, upload.what
        result = formats.parse(upload.raw, received_at=now, name=fmt)
        assert result.recognised and result.errors == [], (upload.what, result.errors[:3])
        pieces = _messages(fmt, upload.raw)
        assert pieces and all(b"SIMULATED" in piece for piece in pieces), upload.what
        return [p.event for p in result.events], list(result.readings)
    if upload.path.startswith("/v2/events"):
        out: list[CanonicalEvent] = []
        for event in upload.body:
            dcsa.validate(event)
            assert "SIMULATED" in json.dumps(event)
            out += dcsa.from_dcsa(event)
        return out, []
    if upload.path == "/v1/events":
        out = []
        for item in upload.body["events"]:
            jsonbody.check(item, intake.ITEM_SCHEMA)
            assert item["details"]["simulated"] is True
            out.append(from_json({k: v for k, v in item.items() if k != "id"}))
        return out, []
    schema = {"/v1/bills-of-lading": intake.MASTER_SCHEMA,
              "/v1/grants": intake.GRANT_SCHEMA}.get(upload.path, intake.HOUSE_SCHEMA)
    jsonbody.check(upload.body, schema)
    return [], []


def _checked(upload: simulate.Upload) -> tuple[list[CanonicalEvent], list[Reading]]:
    """:func:`_parsed`, and its party may publish every event and reading of it."""
    events, readings = _parsed(upload)
    roles = _roles(upload.party)
    for event in events:
        assert role_problem(event, roles) is None, (upload.what, event.event_type)
    for reading in readings:
        assert reading_role_problem(reading.type, roles) is None, (upload.what, reading.type)
    return events, readings


def test_the_story_and_port_systems_are_valid_uploads_their_parties_may_send() -> None:
    call = simulate.vessel_call(42, T0)
    assert len(call.containers) == 3 and len(set(call.containers)) == 3
    assert call.house_containers == call.containers[:2]
    assert "SIM" in call.master and "SIM" in call.house and "SIMULATED" in call.vessel_name
    uploads = feedstory.story(call, T0) + [simulate.grant(call, "bank")]
    systems = feedstory.port_systems(call, T0)
    kinds: list[str] = []
    parsed = {}
    for upload in uploads + systems:
        events, readings = _checked(upload)
        kinds += [e.event_type for e in events]
        parsed[upload.standard] = (events, readings)
    assert {"TRANSPORT.DEPA", "TRANSPORT.ARRI", "TERMINAL.DISC", "CUSTOMS.CUSH", "CUSTOMS.CUSR",
            "TERMINAL.AVPU", "TERMINAL.GTOT", "REEFER.ADJU"} <= set(kinds)
    assert {f"AIR.{code}" for code in cargo_imp.SEQUENCE} <= set(kinds)
    formats_sent = {u.feed_format for u in uploads + systems} - {None}
    assert formats_sent == {"edifact", "customs", "ais", "dcsa-reefer", "cargo-imp"}

    # The COARRI: each container discharged, related to the master B/L (and the vessel).
    discharges, _ = parsed["UN/EDIFACT COARRI D.95B"]
    assert [e.subject.value for e in discharges] == list(call.containers)
    for e in discharges:
        assert e.event_type == "TERMINAL.DISC" and e.location == simulate.POD
        assert {(r.kind, r.value) for r in e.related} >= {("mbl", call.master),
                                                         ("vessel", call.vessel_imo)}
        assert e.details["stowageCell"] and e.details["sender"].startswith("SIMULATED")
    # Customs: held, then released, for every container, the master B/L and the declaration.
    customs, _ = parsed["customs status (JSON Lines)"]
    held = [e for e in customs if e.event_type == "CUSTOMS.CUSH"]
    released = [e for e in customs if e.event_type == "CUSTOMS.CUSR"]
    assert max(e.event_time for e in held) < min(e.event_time for e in released)
    for group in (held, released):
        assert {(e.subject.kind, e.subject.value) for e in group} == {
            ("declaration", feedstory.declaration_number(call)), ("mbl", call.master),
            *(("container", c) for c in call.containers)}
    # ... told to the parties by name: the B/L's events list every container, and a holder of
    # the B/L number alone (the bank) must not learn them.
    sent = next(u for u in uploads if u.feed_format == "customs")
    query = dict(part.split("=") for part in sent.path.split("?", 1)[1].split("&"))
    assert query["visibility"] == "named"
    assert {int(r) for r in query["readers"].split(",")} == {
        simulate.PARTIES[p] for p in ("trader", "forwarder", "carrier", "terminal")}
    avpu = [e for u in uploads for e in _parsed(u)[0] if e.event_type == "TERMINAL.AVPU"]
    assert min(e.event_time for e in avpu) > max(e.event_time for e in released)

    # AIS: the vessel's approach, static data naming its IMO number, moored at the berth when
    # the call arrived.
    _, positions = parsed["AIS NMEA 0183 !AIVDM"]
    static = [r for r in positions if r.type == "ais-static"]
    moves = [r for r in positions if r.type == "ais-position"]
    assert static and {r.values["imo"] for r in static} == {call.vessel_imo}
    assert {r.subject.value for r in moves if r.subject} == {call.vessel_imo}
    last = moves[-1]
    assert last.time == call.arrived and last.values["status_name"] == "moored"
    assert (last.values["lat"], last.values["lon"]) == feedstory.BERTH
    assert [r.time for r in moves] == sorted(r.time for r in moves)
    assert all(r.values["sog"] > 0 for r in moves[:-1])
    at_port = ais_eta(last.values, last.time, simulate.POD)
    assert at_port is not None and at_port["atPort"] is True

    # DCSA Reefer: the set point on chain (ADJU), readings with an excursion above +1.5 °C.
    adju, readings = parsed["DCSA Reefer 1.0"]
    assert [e.event_type for e in adju] == ["REEFER.ADJU"]
    assert {r.subject.value for r in readings if r.subject} == {call.containers[0]}
    deviations = [r.values["temperature"] - r.values["setpoint"] for r in readings
                  if "temperature" in r.values]
    assert len(deviations) == 48 and max(deviations) > 1.5
    assert sum(1 for d in deviations if d > 1.5) >= 6  # 40 minutes of 5-minute readings
    assert all(r.time <= call.arrived for r in readings)
    reefer = next(u for u in systems if u.feed_format == "dcsa-reefer")
    assert reefer.path.endswith(f"visibility=named&readers={simulate.PARTIES['forwarder']}")

    # Cargo-IMP: the SIMULATED air waybill (valid mod 7 check digit), BKD → … → DLV in order.
    awb = feedstory.air_waybill(call)
    assert identifiers.normalise_awb(awb) == awb.replace("-", "")
    air, _ = parsed["IATA Cargo-IMP FSU/14"]
    assert [e.event_type for e in air] == [f"AIR.{c}" for c in cargo_imp.SEQUENCE]
    assert {e.subject.value for e in air} == {awb.replace("-", "")}
    assert all(e.event_time < T0 for e in air)
    assert all(e.details["pieces"] == 12 for e in air)

    # CODECO: the container the house B/L does not cover leaves; nothing else does.
    gate, _ = parsed["UN/EDIFACT CODECO D.95B"]
    assert [(e.event_type, e.subject.value) for e in gate] == [
        ("TERMINAL.GTOT", call.containers[-1])]
    assert gate[0].event_time < T0


def test_the_live_feed_speaks_ais_dcsa_and_codeco() -> None:
    call = simulate.vessel_call(42, T0)
    feed = feedstory.LiveFeed(call, T0, seed=7)
    ticks = [feed.tick(T0 + 3 * i) for i in range(12)]
    etas: list[int] = []
    gates: list[CanonicalEvent] = []
    for number, tick in enumerate(ticks, start=1):
        assert [u.party for u in tick] == ["carrier", "operator", "terminal"]
        carrier, operator, terminal = (_checked(u) for u in tick)
        [eta] = carrier[0]
        assert (eta.event_type, eta.classifier) == ("TRANSPORT.ARRI", "EST")
        assert eta.subject.value == feed.next_call.vessel_imo and eta.location == simulate.POD
        etas.append(eta.event_time)
        # AIS: one position a tick (under way towards the port), static data on the first
        # tick and every STATIC_EVERY, and a position whose AIS-derived ETA is the carrier's.
        [position] = [r for r in operator[1] if r.type == "ais-position"]
        static = [r for r in operator[1] if r.type == "ais-static"]
        assert bool(static) == ((number - 1) % feedstory.STATIC_EVERY == 0)
        assert all(r.values["imo"] == feed.next_call.vessel_imo for r in static)
        assert position.time == T0 + 3 * (number - 1) and position.values["status"] == 0
        derived = ais_eta(position.values, position.time, simulate.POD)
        assert derived is not None and derived["method"] == "geodesic"
        assert abs(derived["hours"] * 3600 - (eta.event_time - position.time)) < 600
        [gate] = terminal[0]
        gates.append(gate)
    assert len(set(etas)) > 1  # the carrier's ETA drifts
    # The live feed gates the house B/L's containers out (the last one left in the chapter
    # before), then new export containers in.
    assert [(g.event_type, g.subject.value) for g in gates[:2]] == [
        ("TERMINAL.GTOT", c) for c in call.house_containers]
    assert {g.event_type for g in gates[2:]} == {"TERMINAL.GTIN"}
    assert all(g.subject.value not in call.containers for g in gates[2:])
    # The same serial, seed and clock give the same uploads (a seeded simulation).
    again = feedstory.LiveFeed(simulate.vessel_call(42, T0), T0, seed=7)
    assert [again.tick(T0 + 3 * i) for i in range(12)] == ticks
    assert feedstory.story(call, T0) == feedstory.story(simulate.vessel_call(42, T0), T0)
    assert feedstory.port_systems(call, T0) == feedstory.port_systems(
        simulate.vessel_call(42, T0), T0)


def test_a_moored_vessel_is_where_the_live_feed_puts_one_past_its_eta() -> None:
    feed = feedstory.LiveFeed(simulate.vessel_call(7, T0), T0, seed=1)
    fix = feed.position(feed.eta + 60)
    assert (fix.lat, fix.lon, fix.sog, fix.status) == (*feedstory.BERTH, 0.0, 5)
    far = feed.position(feed.eta - 3600)
    assert far.sog == feed.speed and far.status == 0 and far.lat < feedstory.BERTH[0]


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
        "PASS AIS NMEA: the trader tracks IMO",
        "PASS DCSA Reefer 1.0: the forwarder sees",
        "PASS DCSA Reefer 1.0: the trader and the competitor terminal see none of",
        "PASS IATA Cargo-IMP FSU: the forwarder tracks air waybill",
        "PASS IATA Cargo-IMP FSU: the bank sees nothing of air waybill",
        "PASS UN/EDIFACT COARRI: the carrier's view of master B/L",
        "PASS UN/EDIFACT CODECO: the carrier's view shows",
        "PASS customs status messages: the trader's containers show customs released",
        "PASS customs status messages: tracking declaration",
        "PASS AIS NMEA: anchored position #",
        "PASS the terminal publishes its storage tariff (an EXAMPLE in HK$)",
        "PASS alerts: the forwarder gets exactly one reefer-excursion episode for",
        "PASS alerts: the trader's customs-hold episodes opened and are resolved",
        "PASS alerts: the forwarder's system received the excursion by webhook",
        "PASS alerts: the carrier (the readings' owner) gets the same excursion once",
        "PASS alerts: the competing terminal gets none about this shipment",
        "PASS alerts: the trader, following uncollected container",
        "PASS alerts: the trader, following vessel",
        "PASS alerts: the excursion of ",  # ... reached the forwarder by inbox, webhook, e-mail
        "PASS alerts: the storage charges of container ",
        "PASS alerts: the delay of vessel ",
        "PASS alerts: the competing terminal gets none about the uncollected box or the late",
        "PASS storage meter: the trader sees",
        "PASS land leg: the haulier plans a job for ",
        "PASS land leg: the driver signs in with a one-time code and sees their job",
        "PASS land leg: the terminal gates ",
        "PASS land leg: the same token again at the gate is refused as a replay",
        "PASS land leg: the driver's phone posts 12 SIMULATED truck positions",
        "PASS land leg: the trader (reading ",
        "PASS land leg: the warehouse receives ",
        "PASS land leg: the custody chain of ",
        "PASS land leg: the gate-out's and receipt's details are the job's parties' only",
        "PASS declarations: the customs organisation binds itself on chain as the Hong Kong "
        "and the China authority (Declarations.bindAuthority)",
        "PASS declarations: the forwarder uploads 3 invoice lines for the trader's master B/L",
        "PASS declarations: the forwarder fixes the warning missing-address",
        "PASS declarations: the forwarder approves and submits the 3 drafts",
        "PASS declarations: the SIMULATED authorities return official numbers and a release",
        "PASS declarations: the trader tracks China declaration ",
        "is keyed on chain by its secret salt (shown to its readers), not by the number's hash",
        "on chain: filed by the forwarder (document hash), statuses by customs to released",
        "= keccak-256 of the submitted document",
        "PASS declarations: the chain has no filing under the number's plain hash",
        "PASS declarations: no customs event on chain names the China number's plain hash",
        "sees its on-chain history",
        "PASS declarations: the trader, named as reader, sees the forwarder's declaration",
        "PASS declarations: the customs organisation sees the declaration",
        "PASS declarations: the bank does not see the declaration",
        "PASS declarations: the bank tracking the China number gets 404",
        "PASS every block of the story carries a quorum of valid validator seals",
        "events, and no reference number or name in clear",
        "PASS the live feed's uploads are accepted and final on chain",
        "PASS AIS NMEA: the next vessel",
        "PASS every node has the same head",
        "PASS the observer's chain replays from genesis, every root verified",
    ):
        assert line in out, line
    assert "PASS the chain holds" in out
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
