"""A shipment story for the page tests, sealed as the owners would and stored as the indexer
stores them (tests/gateway/alerts/gateway_support): a carrier's master B/L with a vessel and its
ETA, a forwarder's house B/L covering one of its two boxes, the terminal's discharge and ETA
(another source), a wrong gate-out retracted and recorded again, the haulier's pick-up with a
truck, a customs release named to the trader, an air waybill's milestones, the trader's customs
declaration with its statuses (filed under its keyed chain key: on chain for its readers only)
and the vessel's AIS positions. The trader holds the house B/L; a competitor holds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from eth_utils import keccak

from contracts.cargo import subject_key
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, DECLARATIONS, READ_MODEL
from gateway.events.model import Reference, Visibility
from gateway.readside.readmodel import (
    DeclarationFiled,
    DeclarationStatus,
    HouseChange,
    MasterContainers,
)
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import Reading
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import Port, config, event
from tests.support.dcsa import wait_until
from tests.support.readside import (
    AGENT,
    AIRLINE,
    CARRIER,
    CUSTOMS,
    FORWARDER,
    HAULIER,
    TERMINAL,
    TRADER,
)

PASSWORD = "correct horse battery staple"
COMPETITOR = AGENT
USERS = {TRADER: "ops@sino.example", COMPETITOR: "ops@competitor.example",
         CARRIER: "ops@pacific.example"}
MBL, HBL = "PCOL1234567", "HFF20240042"
BOX, BOX2 = "CSQU3054383", "PCOU2000026"
IMO, VESSEL = "9321483", "PACIFIC HARMONY"
AWB = "16012345675"
DECLARATION = "HKD2026110001"
TRUCK = "XX1234"
#: When the story is looked at (ages count from the block times, against the wall clock).
T0 = hk("2026-11-01 09:00")
ETA_CARRIER = hk("2026-11-06 14:00")
ETA_TERMINAL = hk("2026-11-06 18:30")
#: The vessel's AIS positions (public), hourly, approaching Hong Kong from the east.
TRACK = [(21.95, 115.10), (22.02, 114.85), (22.10, 114.62), (22.16, 114.45)]


def story(port: Port) -> dict[str, Any]:
    """Record the story; the events' ids by name."""
    for chain_org, name in [(TERMINAL, "Kwai Tsing Container Terminal"),
                            (CARRIER, "Pacific Ocean Line"), (FORWARDER, "Harbour Freight"),
                            (TRADER, "Sino Trading Company"), (HAULIER, "Swift Haulage"),
                            (CUSTOMS, "Customs and Excise"), (AIRLINE, "Cathay Cargo"),
                            (COMPETITOR, "Competing Agent")]:
        port.member(chain_org, name)
    vessel = {"vessel": {"imo": IMO, "name": VESSEL}}
    ids: dict[str, Any] = {}
    ids["mbl"] = port.record(CARRIER, event(
        "SHIPMENT.ISSU", "mbl", MBL, T0, location="CNSHA",
        related=[("container", BOX), ("container", BOX2), ("vessel", IMO)], details=vessel),
        block_time=T0 + 60, reference=True)
    ids["eta"] = port.record(CARRIER, event(
        "TRANSPORT.ARRI", "mbl", MBL, ETA_CARRIER, classifier="EST", related=[("vessel", IMO)],
        details=vessel), block_time=T0 + 3600, reference=True)
    ids["hbl"] = port.record(FORWARDER, event(
        "SHIPMENT.ISSU", "hbl", HBL, T0 + 300, location="CNSHA",
        related=[("mbl", MBL), ("container", BOX)]), block_time=T0 + 400, reference=True)
    ids["terminal_eta"] = port.record(TERMINAL, event(
        "TRANSPORT.ARRI", "container", BOX, ETA_TERMINAL, classifier="EST",
        related=[("vessel", IMO)], details=vessel), block_time=T0 + 7200, reference=True)
    ids["disc"] = port.record(TERMINAL, event(
        "TERMINAL.DISC", "container", BOX, hk("2026-11-06 20:15"), related=[("vessel", IMO)],
        details=vessel), block_time=hk("2026-11-06 20:20"), reference=True)
    ids["disc2"] = port.record(TERMINAL, event(
        "TERMINAL.DISC", "container", BOX2, hk("2026-11-06 20:40"), details=vessel),
        block_time=hk("2026-11-06 20:45"), reference=True)
    ids["release"] = port.record(CUSTOMS, event(
        "CUSTOMS.CUSR", "container", BOX, hk("2026-11-07 09:00")),
        block_time=hk("2026-11-07 09:05"), readers=(TRADER,))
    wrong = port.record(TERMINAL, event(
        "TERMINAL.GTOT", "container", BOX, hk("2026-11-07 10:00")),
        block_time=hk("2026-11-07 10:05"), reference=True)
    ids["wrong"] = wrong
    ids["pick"] = port.record(HAULIER, event(
        "LAND.PICK_UP", "container", BOX, hk("2026-11-07 11:00"), related=[("truck", TRUCK)]),
        block_time=hk("2026-11-07 11:05"), readers=(TRADER,))
    ids["gtot"] = port.record(TERMINAL, event(
        "TERMINAL.GTOT", "container", BOX, hk("2026-11-07 11:30"),
        retracts=wrong.event_id), block_time=hk("2026-11-07 11:35"), reference=True,
        retracts=wrong.event_id)
    ids["air"] = [port.record(AIRLINE, event(
        f"AIR.{code}", "awb", AWB, hk(at), details=details), block_time=hk(at) + 120,
        reference=True) for code, at, details in (
            ("BKD", "2026-11-03 08:00", {"flight": "CX880"}),
            ("RCS", "2026-11-03 12:00", {}),
            ("DEP", "2026-11-04 01:10", {"flight": "CX880", "from": "HKG", "to": "LAX"}),
            ("ARR", "2026-11-04 19:30", {"flight": "CX880", "from": "HKG", "to": "LAX"}))]
    ids["decl_hold"] = port.record(CUSTOMS, event(
        "CUSTOMS.CUSH", "declaration", DECLARATION, hk("2026-11-05 10:00"),
        details={"reason": "document check"}), block_time=hk("2026-11-05 10:05"),
        readers=(TRADER,))
    model = port.app[READ_MODEL]
    declaration = _declared(port)
    model.apply_changes([
        MasterContainers(subject_key(MBL), CARRIER, (subject_key(BOX), subject_key(BOX2)), 1),
        HouseChange(subject_key(HBL), subject_key(MBL), FORWARDER, (subject_key(BOX),), 1),
        DeclarationFiled(declaration, TRADER, 1, keccak(b"doc"), 2, hk("2026-11-04 09:00")),
        DeclarationStatus(declaration, CUSTOMS, 2, keccak(b"accepted"), 3, 0,
                          hk("2026-11-04 15:00")),
        DeclarationStatus(declaration, CUSTOMS, 4, keccak(b"held"), 4, 0, hk("2026-11-05 10:00")),
    ])
    return ids


def _declared(port: Port) -> bytes:
    """The trader's declaration in the declarations store, numbered :data:`DECLARATION` and
    released: its key on chain (keyed by its secret salt; tracking shows the filing to the
    declaration's readers only)."""
    store = port.app[DECLARATIONS].store
    shipment, _ = store.put_shipment(port.orgs[TRADER], MBL, {"lines": [], "options": {
        "direction": "import", "authorities": ["hk-tdec"]}}, [])
    sub, _ = store.enqueue(shipment, f"tdec:{MBL}:1", "hk-tdec", {"story": True}, "story")
    sub = store.update(sub, status="released", number=DECLARATION, reasons=(), next_at=0.0,
                       attempts=0, last_error=None)
    key = port.app[DECLARATIONS].chain_key_of(sub)
    assert key is not None
    return key


async def started(path: Path) -> tuple[TestClient, Port, dict[str, Any]]:
    """A gateway with the story recorded and a user of the trader, the carrier and the
    competitor."""
    client = TestClient(TestServer(create_app(config(path))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None, what="first look")
    ids = story(port)
    start = hk("2026-11-06 08:00")
    positions = [Reading("ais-position", start + i * 3600, Reference("vessel", IMO), {
        "lat": lat, "lon": lon, "sog": 15.0, "cog": 290.0, "heading": 290, "mmsi": 477000123,
        "status_name": "under way using engine"}) for i, (lat, lon) in enumerate(TRACK)]
    static = Reading("ais-static", start, Reference("vessel", IMO), {
        "mmsi": 477000123, "imo": IMO, "name": VESSEL, "callsign": "VRAB1"})
    await telemetry.ingest(client.app, port.orgs[TERMINAL], [static, *positions], Visibility())
    for chain_org, email in USERS.items():
        client.app[ACCOUNTS].create_user(port.orgs[chain_org], email, PASSWORD, "member")
    return client, port, ids
