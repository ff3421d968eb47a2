"""Helpers of the declarations API tests: the gateway's configuration with the SIMULATED
authority, the hosted members (the demo members' development keys), the carrier's B/L story,
an invoice, and small HTTP helpers."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from devnet.authority import AuthorityServer
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.declarations.api import DECLARATIONS
from tests.gateway.alerts.gateway_support import Port, event
from tests.support.readside import BANK, CARRIER, CUSTOMS, FORWARDER, TRADER

MBL = "PCOL1234567"
BOX = "CSQU3054383"
IMO = "9321483"
NOW = int(time.time())
USCC = "91350100M000100Y43"  # GB 32100-2015's worked example with its check character
HEADER = ("line,description,hs_code,quantity,unit,gross_kg,net_kg,value,currency,origin,"
          "packages,package_type,hkhs_code,cn_code,model\n")
INVOICE = HEADER + (
    "1,Smartphones,851713,200,PCS,150.5,120,40000,USD,CN,20,CT,85171300,8517130000,X1 128GB\n"
    "2,Frozen shrimp,030617,500,KGM,560,500,3000,USD,VN,50,CT,03061790,0306179000,\n"
    "3,Routers,851762,100,SET,90,80,12000,USD,CN,10,CT,,8517620000,R7\n")


def config(data_dir: Path, authority_url: str, **extra: Any) -> GatewayConfig:
    return GatewayConfig(
        data_dir=data_dir, keystore_passphrase="test passphrase", cookie_secure=False,
        extra={"alerts": {"clock_seconds": 3600},
               "declarations": {
                   "authority_url": authority_url, "poll_seconds": 0.1,
                   "retry_base_seconds": 0.05, "retry_max_seconds": 0.2,
                   "timeout_seconds": 1.0, "max_attempts": 50,
                   "rates": [{"base": "USD", "quote": "HKD", "rate": "7.8", "source": "HKMA "
                              "(EXAMPLE)", "date": "2026-12-01"}], **extra}})


async def started(path: Path, url: str) -> tuple[TestClient, Port]:
    client = TestClient(TestServer(create_app(config(path, url))))
    await client.start_server()
    port = Port(client.app)
    for org, name in ((CARRIER, "Pacific Ocean Line"), (TRADER, "Sino Trading"),
                      (FORWARDER, "Harbour Forwarding"), (CUSTOMS, "Customs"),
                      (BANK, "Bank of the Port")):
        port.member(org, name)
    _authorities(port)
    return client, port


def _authorities(port: Port) -> None:
    service = port.app[DECLARATIONS]
    service.settings = dataclasses.replace(service.settings, hk_authority_org=port.orgs[CUSTOMS],
                                           cn_authority_org=port.orgs[CUSTOMS])


def story(port: Port) -> None:
    """The carrier's B/L (vessel, voyage, ports, ETA) and the arrival, readable by the trader."""
    port.record(CARRIER, event("SHIPMENT.ISSU", "mbl", MBL, NOW - 3 * 86400, location="CNYTN",
                               related=[("container", BOX), ("vessel", IMO)],
                               details={"vessel": {"imo": IMO, "name": "EVER GIVEN"},
                                        "voyage": "021E", "pol": "CNYTN", "pod": "HKHKG",
                                        "containers": [BOX]}),
                block_time=NOW - 3 * 86400, readers=(TRADER, FORWARDER))
    port.record(CARRIER, event("TRANSPORT.ARRI", "mbl", MBL, NOW - 86400,
                               related=[("vessel", IMO)]),
                block_time=NOW - 86400, readers=(TRADER, FORWARDER))


def upload_body(**extra: Any) -> dict[str, Any]:
    return {"reference": MBL, "direction": "import", "invoice": {"csv": INVOICE},
            "consignor": {"name": "Shenzhen Phone Works", "address": "1 Keji Road, Shenzhen",
                          "country": "CN", "uscc": USCC},
            "consignee": {"name": "Sino Trading Ltd", "address": "8 Harbour Road, Hong Kong",
                          "country": "HK"},
            **extra}


async def body(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


def issues(draft: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["code"], i["path"]) for i in draft["issues"]]


async def submit_all(client: TestClient, auth: dict[str, str], view: dict[str, Any]) -> None:
    for draft in view["drafts"]:
        await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{draft['key']}"
                                     "/approve", headers=auth))
        await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{draft['key']}"
                                     "/submit", headers=auth), 202)


async def faults(authority: AuthorityServer, **counts: int) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{authority.url}/v1/admin/faults", json=counts) as resp:
        assert resp.status == 200


async def subs_of(client: TestClient, auth: dict[str, str], sid: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await body(await client.get(
        f"/v1/declarations/{sid}/submissions", headers=auth)))["submissions"]
    return found
