"""The land tests' port: the real gateway (no node: the outbox keeps what is written) with hosted
chain members holding the demo members' development keys, and events sealed as their owners
would and stored as the indexer stores them (the alert tests' :class:`Port`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer

from contracts import ROLES
from gateway.app import create_app
from gateway.appkeys import OUTBOX, READ_MODEL
from gateway.events.model import CanonicalEvent
from gateway.isotime import iso_time
from gateway.land.api import LAND
from gateway.land.service import LandService
from gateway.readside.readmodel import IndexedEvent, Member, MemberChange
from tests.gateway.alerts.gateway_support import Port, config, event
from tests.support.readside import (
    AIRLINE,
    CARRIER,
    CUSTOMS,
    FORWARDER,
    HAULIER,
    TERMINAL,
    TERMINAL2,
    TRADER,
    WAREHOUSE,
    container,
    x25519_public,
)

BOX1, BOX2, BOX3 = container("CSQU", 305438), container("CSQU", 305439), container("TGHU", 1)
MBL = "PCOL1234567"
#: A second warehouse (the demo airline's chain id, playing a warehouse here).
OTHER_WAREHOUSE = AIRLINE
ADMIN_PASSWORD = "correct horse battery staple"

MEMBERS = [
    (TERMINAL, "Hong Kong Container Terminal", ROLES["terminal"]),
    (TERMINAL2, "Other Terminal", ROLES["terminal"]),
    (CARRIER, "Pacific Ocean Line", ROLES["carrier"]),
    (HAULIER, "Kwai Chung Haulage", ROLES["haulier"]),
    (WAREHOUSE, "Tsing Yi Warehouse", ROLES["warehouse"]),
    (OTHER_WAREHOUSE, "Other Warehouse", ROLES["warehouse"]),
    (CUSTOMS, "Customs", ROLES["customs"]),
    (TRADER, "Sino Trading Company", ROLES["forwarder"]),
    (FORWARDER, "Competing Haulage", ROLES["haulier"] | ROLES["forwarder"]),
]

#: Members that call this gateway (the others only publish; hosting costs a keystore write).
HOSTED = frozenset(m[0] for m in MEMBERS) - {CARRIER, CUSTOMS}


@dataclasses.dataclass
class Land:
    client: TestClient[Any, Any]
    port: Port
    now: int
    ids: dict[str, Any]

    @property
    def service(self) -> LandService:
        service: LandService = self.client.app[LAND]
        return service

    def auth(self, chain_org: int) -> dict[str, str]:
        return self.port.auth[chain_org]

    def at(self, seconds: float) -> None:
        """Move the land service's clocks ``seconds`` from the story's now."""
        moment = self.now + seconds
        self.service.clock = lambda: moment
        self.service.store.clock = lambda: moment


async def started(path: Path, **land: Any) -> Land:
    """The gateway with the story's members and events: two boxes discharged under a B/L that
    the carrier released, readable by the haulier, the terminal and the trader (named)."""
    base = config(path)
    cfg = dataclasses.replace(base, extra={**base.extra, "land": land})
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    port = Port(client.app)
    for chain_org, name, roles in MEMBERS:
        if chain_org in HOSTED:
            port.member(chain_org, name, roles)
        else:  # in the chain's directory only: it publishes, it never calls this gateway
            member = Member(chain_org, name, roles, x25519_public(chain_org), True)
            model: Any = client.app[READ_MODEL]  # (the SQLite read model's method)
            model.apply_changes([MemberChange(member)])
    now = int(time.time())
    readers = (HAULIER, TRADER, CARRIER)
    ids: dict[str, Any] = {}
    for n, box in enumerate((BOX1, BOX2)):
        ids[f"disc{n}"] = port.record(TERMINAL, event(
            "TERMINAL.DISC", "container", box, now - 6 * 3600, related=[("mbl", MBL)],
            details={"ISOEquipmentCode": "22G1"}), block_time=now - 6 * 3600, readers=readers)
    ids["rels"] = port.record(CARRIER, event(
        "SHIPMENT.RELS", "mbl", MBL, now - 3 * 3600,
        related=[("container", BOX1), ("container", BOX2)]),
        block_time=now - 3 * 3600, readers=(HAULIER, TRADER, TERMINAL))
    # a third box, available at the terminal (AVPU) but never released by its carrier
    ids["disc3"] = port.record(TERMINAL, event("TERMINAL.DISC", "container", BOX3,
                                               now - 5 * 3600), block_time=now - 5 * 3600,
                               readers=(HAULIER,))
    ids["avpu3"] = port.record(TERMINAL, event("TERMINAL.AVPU", "container", BOX3,
                                               now - 4 * 3600), block_time=now - 4 * 3600,
                               readers=(HAULIER,))
    return Land(client, port, now, ids)


def job_body(land: Land, **changes: Any) -> dict[str, Any]:
    """A job on the B/L: pick up at the terminal, deliver to the warehouse, a window round now."""
    body: dict[str, Any] = {
        "references": [{"kind": "mbl", "value": MBL}],
        "pickup": {"terminal": TERMINAL, "location": "HKHKG", "facility": "HIT4"},
        "delivery": {"warehouse": WAREHOUSE, "location": "HKHKG",
                     "address": "8 Tsing Yi Road, Tsing Yi"},
        "window": {"from": iso_time(land.now - 3600), "to": iso_time(land.now + 6 * 3600)},
        "vehicle": "ab 1234", "ccrn": "RI261207000123",
        "seals": {BOX1: ["SEAL001"], BOX2: ["SEAL002"]},
    }
    body.update(changes)
    return body


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def refused(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The error body of a refusal, asserted to carry ``status`` and ``code``."""
    text = await resp.text()
    assert resp.status == status, text
    body: dict[str, Any] = await resp.json()
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, text
    return error


class Phone:
    """A driver's phone: its own session (cookie jar) against the same gateway."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.session = ClientSession(cookie_jar=CookieJar(unsafe=True))
        self.headers: dict[str, str] = {}

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.session.get(self.client.make_url(path), **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.session.post(self.client.make_url(path), headers=headers, **kw)

    async def close(self) -> None:
        await self.session.close()


async def add_driver(land: Land, name: str, phone: str) -> tuple[int, str]:
    """A driver of the haulier and a fresh sign-in code."""
    client = land.client
    made = await ok(await client.post("/v1/land/drivers", json={"name": name, "phone": phone},
                                      headers=land.auth(HAULIER)), 201)
    code = await ok(await client.post(f"/v1/land/drivers/{made['id']}/code",
                                      headers=land.auth(HAULIER)), 201)
    return int(made["id"]), str(code["code"])


async def driver_phone(land: Land, name: str, phone: str) -> tuple[int, Phone]:
    """A driver of the haulier signed in with a fresh code on a phone of their own."""
    driver, code = await add_driver(land, name, phone)
    device = Phone(land.client)
    session = await ok(await device.post("/v1/land/driver-session",
                                         json={"phone": phone, "code": code}))
    device.headers = {"X-CSRF-Token": session["csrfToken"]}
    return driver, device


def gateway_org(land: Land, chain_org: int) -> int:
    return int(land.port.orgs[chain_org])


def to_chain(land: Land, chain_org: int) -> list[tuple[CanonicalEvent, IndexedEvent]]:
    """Record what waits in a member's outbox as the chain would, sealed as the outbox holds it
    (in order; no node here): each event and its indexed record."""
    pending = land.client.app[OUTBOX].pending(gateway_org(land, chain_org), 100)
    recorded = []
    for op in pending:
        e = op.event
        recorded.append((e, land.port.record(chain_org, e, block_time=int(time.time()),
                                             readers=e.visibility.readers,
                                             reference=e.visibility.mode == "reference")))
    return recorded


async def gated_out(land: Land, job_id: str) -> dict[str, Any]:
    """The job's token used at its terminal's gate, the gate-out on chain; the token's text
    and claims."""
    issued = await ok(await land.client.get(f"/v1/land/jobs/{job_id}/token",
                                            headers=land.auth(HAULIER)))
    await ok(await land.client.post("/v1/land/gate-out", json={"token": issued["token"]},
                                    headers=land.auth(TERMINAL)), 201)
    to_chain(land, TERMINAL)
    return dict(issued)


