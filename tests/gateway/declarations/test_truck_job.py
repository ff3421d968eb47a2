"""A truck job's declaration in the real gateway against the SIMULATED authority service (its own
process on loopback): the haulier uploads the goods lines for its job; the record, vehicle and
expected crossing come from the job (lineage says so); the CCRN that comes back is bound to the
job — the job carries it, its token and QR carry it, the token issued before is revoked; a CCRN
already bound to another vehicle is refused with the reason; a competitor sees neither the
declaration nor the job; the review page offers the kind and shows the bound CCRN."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devnet.authority import AuthorityServer
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.declarations import codes
from gateway.declarations.api import DECLARATIONS
from gateway.isotime import iso_time
from gateway.land.api import LAND
from tests.gateway.alerts.gateway_support import Port, event
from tests.gateway.declarations.support import INVOICE, NOW, body, config, subs_of
from tests.gateway.land.support import BOX1, BOX2, MBL, MEMBERS
from tests.support.accounts import login
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, CUSTOMS, FORWARDER, HAULIER, TERMINAL, WAREHOUSE

#: The competitor: another haulier (and forwarder) with no part in the job.
COMPETITOR = FORWARDER
LINES = INVOICE.replace(",,8517620000", ",85176200,8517620000")
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def gateway(tmp_path: Path, authority: AuthorityServer,
                  ) -> AsyncIterator[tuple[TestClient[Any, Any], Port]]:
    """The gateway with the land members (haulier, terminal, warehouse, competitor), customs as
    both authorities, and two boxes discharged under a B/L the carrier released."""
    client = TestClient(TestServer(create_app(config(tmp_path / "gw", authority.url))))
    await client.start_server()
    port = Port(client.app)
    for chain_org, name, roles in MEMBERS:
        port.member(chain_org, name, roles)
    service = client.app[DECLARATIONS]
    service.settings = dataclasses.replace(service.settings, hk_authority_org=port.orgs[CUSTOMS],
                                           cn_authority_org=port.orgs[CUSTOMS])
    readers = (HAULIER, CARRIER)
    for box in (BOX1, BOX2):
        port.record(TERMINAL, event("TERMINAL.DISC", "container", box, NOW - 6 * 3600,
                                    related=[("mbl", MBL)]),
                    block_time=NOW - 6 * 3600, readers=readers)
    port.record(CARRIER, event("SHIPMENT.RELS", "mbl", MBL, NOW - 3 * 3600,
                               related=[("container", BOX1), ("container", BOX2)]),
                block_time=NOW - 3 * 3600, readers=(HAULIER, TERMINAL))
    try:
        yield client, port
    finally:
        await client.close()


async def new_job(client: TestClient[Any, Any], port: Port, vehicle: str, **extra: Any) -> dict[str, Any]:
    """A job of the haulier whose window opens in two hours (ROCARS takes it until 30 min
    before)."""
    job: dict[str, Any] = await body(await client.post("/v1/land/jobs", json={
        "references": [{"kind": "mbl", "value": MBL}], "containers": [BOX1],
        "pickup": {"terminal": TERMINAL, "location": "HKHKG", "facility": "HIT4"},
        "delivery": {"warehouse": WAREHOUSE, "location": "CNSZX",
                     "address": "8 Futian Road, Shenzhen"},
        "window": {"from": iso_time(NOW + 2 * 3600), "to": iso_time(NOW + 8 * 3600)},
        "vehicle": vehicle, **extra}, headers=port.auth[HAULIER]), 201)
    return job


def upload(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"reference": job_id, "kind": "truck", "direction": "export",
            "invoice": {"csv": LINES},
            "consignor": {"name": "Sino Trading Ltd", "address": "8 Harbour Road, Hong Kong",
                          "country": "HK"}, **extra}


async def submit_rocars(client: TestClient[Any, Any], port: Port, view: dict[str, Any]) -> None:
    key = f"rocars:{view['reference']}"
    auth = port.auth[HAULIER]
    await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{key}/approve",
                                 headers=auth))
    await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{key}/submit",
                                 headers=auth), 202)


async def binding(client: TestClient[Any, Any], port: Port, sid: int) -> dict[str, Any]:
    """The ROCARS submission's binding, once the worker settled it."""
    found: dict[str, Any] = {}

    async def settled() -> bool:
        subs = await subs_of(client, port.auth[HAULIER], sid)
        if subs and subs[0].get("binding"):
            found.update(subs[0])
        return bool(found)

    await wait_until(settled, timeout=20, what="the CCRN's binding")
    return found


async def test_a_jobs_declaration_binds_its_ccrn_to_the_job(
        gateway: tuple[TestClient[Any, Any], Port]) -> None:
    client, port = gateway
    auth = port.auth[HAULIER]
    job = await new_job(client, port, "ab 1234")
    job_id = job["id"]
    first = await body(await client.get(f"/v1/land/jobs/{job_id}/token", headers=auth))
    assert first["claims"]["ccrn"] is None

    # only the job's haulier declares; a competitor does not even learn the job exists
    refused = await client.post("/v1/declarations", json=upload(job_id),
                                headers=port.auth[COMPETITOR])
    assert (await body(refused, 404))["error"]["code"] == "shipment-not-found"
    refused = await client.post("/v1/declarations", json=upload(job_id),
                                headers=port.auth[TERMINAL])
    assert (await body(refused, 403))["error"]["code"] == "not-the-haulier"
    crossing = {"vehicle": "ZX1", "time": iso_time(NOW + 7200)}
    refused = await client.post("/v1/declarations", json=upload(job_id, crossing=crossing),
                                headers=auth)
    assert (await body(refused, 422))["error"]["code"] == "crossing-from-job"

    view = await body(await client.post("/v1/declarations", json=upload(job_id),
                                        headers=auth), 201)
    assert view["kind"] == "truck" and view["job"]["vehicle"] == "AB1234"
    by_authority = {d["authority"]: d for d in view["drafts"]}
    road = by_authority["hk-rocars"]
    fields = road["fields"]
    where = f"land:job {job_id}"
    assert fields["vehicle"] == {"value": "AB1234", "source": f"{where}: vehicle",
                                 "label": "Vehicle registration (CCRN binding)"}
    assert fields["crossingTime"]["value"] == iso_time(NOW + 2 * 3600)
    assert fields["crossingTime"]["source"] == f"{where}: window start (expected crossing)"
    assert fields["pickup"]["value"] == "Hong Kong Container Terminal, HIT4, HKHKG"
    assert fields["delivery"]["value"].startswith("Tsing Yi Warehouse, 8 Futian Road")
    # the consignee the upload left out is the job's delivery warehouse
    assert (fields["consignee"]["value"], fields["consignee"]["source"]) == (
        "Tsing Yi Warehouse", f"{where}: delivery warehouse")
    assert fields["consignor"]["source"] == "upload:consignor"
    assert road["ok"], road["issues"]
    tdec = by_authority["hk-tdec"]
    assert tdec["fields"]["transportDocument"]["value"] == job_id
    # the containers' shipment record: the B/L the haulier reads is one of the documents
    assert tdec["fields"]["shipmentBills"]["value"] == [job_id, MBL]
    assert tdec["fields"]["mode"]["value"] == "road"
    assert tdec["fields"]["movementDate"]["source"] == fields["crossingTime"]["source"]

    await submit_rocars(client, port, view)
    sub = await binding(client, port, view["id"])
    ccrn = sub["number"]
    assert codes.check_ccrn(ccrn) is None and ccrn.startswith("RE")
    assert sub["binding"]["state"] == "bound", sub["binding"]
    assert (sub["binding"]["job"], sub["binding"]["vehicle"]) == (job_id, "AB1234")

    # the job carries the CCRN, its token too; the token issued before is revoked
    bound = await body(await client.get(f"/v1/land/jobs/{job_id}", headers=auth))
    assert bound["ccrn"] == ccrn
    token = await body(await client.get(f"/v1/land/jobs/{job_id}/token", headers=auth))
    assert token["claims"]["ccrn"] == ccrn and token["claims"]["veh"] == "AB1234"
    assert token["claims"]["n"] != first["claims"]["n"]
    land = client.app[LAND]
    land.clock = lambda: NOW + 2 * 3600 + 60  # at the gate, in the window
    old = await client.post("/v1/land/verify", json={"token": first["token"]},
                            headers=port.auth[TERMINAL])
    assert (await body(old, 409))["error"]["code"] == "token-revoked"
    fresh = await body(await client.post("/v1/land/verify", json={"token": token["token"]},
                                         headers=port.auth[TERMINAL]))
    assert fresh["claims"]["ccrn"] == ccrn
    land.clock = time.time
    view = await body(await client.get(f"/v1/declarations/{view['id']}", headers=auth))
    assert view["job"]["ccrn"] == ccrn

    # a competitor sees neither the declaration nor the job
    assert (await client.get(f"/v1/declarations/{view['id']}",
                             headers=port.auth[COMPETITOR])).status == 404
    assert (await body(await client.get("/v1/declarations",
                                        headers=port.auth[COMPETITOR]))) == {"declarations": []}
    assert (await client.get(f"/v1/land/jobs/{job_id}",
                             headers=port.auth[COMPETITOR])).status == 404

    # the review page: the truck job is a kind of document; the bound CCRN is shown
    accounts = port.app[ACCOUNTS]
    accounts.create_user(port.orgs[HAULIER], "ops@haulage.example", PASSWORD, "member")
    accounts.create_user(port.orgs[COMPETITOR], "ops@competitor.example", PASSWORD, "member")
    await login(client, "ops@haulage.example", PASSWORD)
    listing = await (await client.get("/declarations?lang=en")).text()
    assert '<option value=truck>' in listing
    page = await client.get(f"/declarations/{view['id']}?lang=en")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", await page.text()))
    assert page.status == 200
    assert f"Truck job {job_id}: vehicle AB1234, CCRN {ccrn}" in text
    assert f"Bound to job {job_id}, vehicle AB1234" in text
    assert f"land leg: job {job_id}: vehicle" in text  # the lineage in words
    await login(client, "ops@competitor.example", PASSWORD)
    assert (await client.get(f"/declarations/{view['id']}?lang=en")).status == 404


async def test_a_ccrn_bound_to_another_vehicle_is_refused(
        gateway: tuple[TestClient[Any, Any], Port]) -> None:
    client, port = gateway
    auth = port.auth[HAULIER]
    first = await new_job(client, port, "AB1234")
    view = await body(await client.post("/v1/declarations", json=upload(
        first["id"], authorities=["hk-rocars"]), headers=auth), 201)
    await submit_rocars(client, port, view)
    issued = (await binding(client, port, view["id"]))["number"]
    # the SIMULATED authority numbers CCRNs in sequence: the next one is already held by
    # another truck's job (as if the haulier had typed it on that job)
    following = f"{issued[:8]}{int(issued[8:]) + 1:06d}"
    other = await new_job(client, port, "ZZ999", ccrn=following)
    second = await new_job(client, port, "CD 5678")
    view = await body(await client.post("/v1/declarations", json=upload(
        second["id"], authorities=["hk-rocars"]), headers=auth), 201)
    await submit_rocars(client, port, view)
    sub = await binding(client, port, view["id"])
    assert sub["number"] == following
    found = sub["binding"]
    assert found["state"] == "refused" and found["job"] == second["id"]
    assert f"bound to vehicle ZZ999 (job {other['id']})" in found["reason"]
    unchanged = await body(await client.get(f"/v1/land/jobs/{second['id']}", headers=auth))
    assert unchanged["ccrn"] is None
    # the land service refuses the same directly, with the holder named
    land = client.app[LAND]
    with pytest.raises(Exception, match="bound to vehicle ZZ999") as caught:
        land.bind_ccrn(second["id"], following)
    assert getattr(caught.value, "code", "") == "ccrn-bound-elsewhere"
    # the same vehicle's next job may take its CCRN over; the first job is free of it
    again = await new_job(client, port, "AB 1234")
    moved = land.bind_ccrn(again["id"], issued)
    assert moved.ccrn == issued and land.store.ccrn_holder(issued) == again["id"]
