"""The declarations API in the real gateway against the SIMULATED authority service, started as
its own process on loopback: upload once, three drafts, a correction, approve, submit, official
numbers and a release back; the release becomes a customs event that tracking by the China
declaration number shows; the customs organisation reads the declaration, a bank does not; an
authority that times out or answers garbage is retried with a clear status; a gateway restart
with submissions in flight loses nothing."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from devnet.authority import AuthorityServer
from gateway.app import create_app
from gateway.appkeys import OUTBOX
from gateway.config import GatewayConfig
from gateway.declarations import codes
from gateway.declarations.api import DECLARATIONS
from tests.gateway.alerts.gateway_support import Port, event
from tests.support.dcsa import wait_until
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


@pytest.fixture
def authority(tmp_path: Path) -> Any:
    server = AuthorityServer(tmp_path / "authority", accept_after=0.2, release_after=0.5,
                             query_after=0.3).start()
    yield server
    server.stop()


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


@pytest.fixture
async def gateway(tmp_path: Path, authority: AuthorityServer,
                  ) -> AsyncIterator[tuple[TestClient, Port]]:
    client, port = await started(tmp_path / "gw", authority.url)
    story(port)
    try:
        yield client, port
    finally:
        await client.close()


def issues(draft: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["code"], i["path"]) for i in draft["issues"]]


async def submit_all(client: TestClient, auth: dict[str, str], view: dict[str, Any]) -> None:
    for draft in view["drafts"]:
        await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{draft['key']}"
                                     "/approve", headers=auth))
        await body(await client.post(f"/v1/declarations/{view['id']}/drafts/{draft['key']}"
                                     "/submit", headers=auth), 202)


async def test_upload_correct_submit_release_and_track(
        gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    auth = port.auth[TRADER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        readers=[port.orgs[FORWARDER]]), headers=auth), 201)
    keys = [d["key"] for d in view["drafts"]]
    # food (chapter 03) and non-food on one B/L: two TDECs; and the China declaration
    assert keys == [f"tdec:{MBL}:1", f"tdec:{MBL}:1A", f"itsw:{MBL}"]
    tdec, food, china = view["drafts"]
    assert tdec["fields"]["vessel"]["value"]["name"] == "EVER GIVEN"
    assert tdec["fields"]["vessel"]["source"].startswith("tracking:")
    assert tdec["fields"]["movementDate"]["source"].startswith("tracking:TRANSPORT.ARRI")
    assert tdec["fields"]["consignor"]["source"] == "upload:consignor"
    assert tdec["fields"]["declarant"]["source"].startswith("directory:organisation")
    # 52,000 USD × 7.8 = HK$405,600: 0.2 + 0.125 × 360 = 45.2
    assert tdec["fields"]["totalValueHkd"]["value"] == "405600.00"
    assert tdec["fields"]["charge"]["value"] == "45.20"
    assert food["fields"]["charge"]["value"] == "0.20"
    assert ("missing-hkhs-code", "lines/3/hkhsCode") in issues(tdec)
    assert china["fields"]["TradeCoScc"]["labelZh"] == "统一社会信用代码"
    assert china["fields"]["IEFlag"]["value"] == "E"  # HK import = Mainland export
    assert china["ok"] is True
    assert view["conversions"] == [{"base": "USD", "quote": "HKD", "rate": "7.8",
                                    "source": "HKMA (EXAMPLE)", "date": "2026-12-01"}]
    sid = view["id"]
    # approval refused while an error stands; the user corrects the field
    refused = await client.post(f"/v1/declarations/{sid}/drafts/{keys[0]}/approve",
                                headers=auth)
    assert refused.status == 409
    bad = await client.post(f"/v1/declarations/{sid}/corrections", headers=auth, json={
        "draft": keys[0], "path": "fields/charge", "value": "1"})
    assert (await body(bad, 422))["error"]["code"] == "computed-field"
    view = await body(await client.post(f"/v1/declarations/{sid}/corrections", headers=auth,
                                        json={"draft": keys[0], "path": "lines/3/hkhsCode",
                                              "value": "85176200"}), 201)
    fixed = view["drafts"][0]
    assert fixed["ok"] is True
    assert fixed["lines"][1]["hkhsCode"]["source"].startswith("correction:API key")
    assert view["corrections"][0]["path"] == "lines/3/hkhsCode"
    # a forwarder named by the trader reads it; a bank does not; the customs organisation does
    assert (await client.get(f"/v1/declarations/{sid}",
                             headers=port.auth[FORWARDER])).status == 200
    assert (await client.get(f"/v1/declarations/{sid}", headers=port.auth[BANK])).status == 404
    assert (await client.get(f"/v1/declarations/{sid}",
                             headers=port.auth[CUSTOMS])).status == 404  # nothing submitted
    assert (await client.post(f"/v1/declarations/{sid}/drafts/{keys[0]}/approve",
                              headers=port.auth[FORWARDER])).status == 404  # read only
    await submit_all(client, auth, view)
    seen = await body(await client.get(f"/v1/declarations/{sid}", headers=port.auth[CUSTOMS]))
    assert len(seen["submissions"]) == 3
    listed = await body(await client.get("/v1/declarations", headers=port.auth[CUSTOMS]))
    assert [d["id"] for d in listed["declarations"]] == [sid]
    assert (await body(await client.get("/v1/declarations", headers=port.auth[BANK]))) == {
        "declarations": []}
    again = await body(await client.post(f"/v1/declarations/{sid}/drafts/{keys[2]}/submit",
                                         headers=auth), 202)
    assert again["duplicate"] is True

    async def all_released() -> bool:
        subs = (await body(await client.get(f"/v1/declarations/{sid}/submissions",
                                            headers=auth)))["submissions"]
        return len(subs) == 3 and all(s["status"] == "released" == s["recordedAs"]
                                      for s in subs)

    await wait_until(all_released, timeout=20, what="three releases, recorded")
    subs = (await body(await client.get(f"/v1/declarations/{sid}/submissions",
                                        headers=auth)))["submissions"]
    numbers = {s["authority"] + ":" + s["draft"]: s["number"] for s in subs}
    china_number = numbers[f"cn-itsw:itsw:{MBL}"]
    assert codes.check_cn_declaration_number(china_number) is None
    assert china_number[:4] == "5300" and china_number[8] == "0"  # office, export flag
    assert codes.check_tdec_reference(numbers[f"hk-tdec:tdec:{MBL}:1A"]) is None
    assert numbers[f"hk-tdec:tdec:{MBL}:1A"].startswith("1A")
    china_sub = next(s for s in subs if s["authority"] == "cn-itsw")
    # the shrimp line has no 规格型号: the SIMULATED customs raise a query first
    steps = [h["status"] for h in china_sub["history"]]
    assert steps[0] == "pending" and steps[-2:] == ["queried", "released"]

    # the releases wait in the write path as customs events of the customs organisation,
    # readable by the trader and its forwarder; once on chain, tracking shows them
    pending = client.app[OUTBOX].pending(port.orgs[CUSTOMS], 100)
    released = [op.event for op in pending if op.event is not None
                and op.event.subject.value == china_number]
    assert [e.event_type for e in released] == ["CUSTOMS.CUSH", "CUSTOMS.CUSR"]
    assert "规格型号" in released[0].details["reason"]
    assert set(released[0].visibility.readers) == {TRADER, FORWARDER}
    for op in pending:
        assert op.event is not None
        port.record(CUSTOMS, op.event, block_time=int(time.time()),
                    readers=op.event.visibility.readers)
    tracked = await body(await client.get(f"/v1/track/{china_number}", headers=auth))
    assert tracked["customs"]["status"] == "released"
    assert (await client.get(f"/v1/track/{china_number}",
                             headers=port.auth[BANK])).status == 404
    box = await body(await client.get(f"/v1/track/{BOX}", headers=auth))
    assert box["containers"][0]["status"] == "customs-released"


async def test_bad_input(gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    auth = port.auth[TRADER]
    broken = upload_body(invoice={"csv": HEADER + "1,Phones,85,1,PCS,1,2,x,usd,CHN,1,,,,\n"})
    error = (await body(await client.post("/v1/declarations", json=broken, headers=auth),
                        422))["error"]
    assert error["code"] == "invalid-invoice"
    assert {e["code"] for e in error["details"]["errors"]} == {"invalid-hs-code"}
    # a B/L the trader may not see is not found
    other = upload_body(reference="PCOL7654321")
    assert (await client.post("/v1/declarations", json=other, headers=auth)).status == 404
    assert (await client.post("/v1/declarations", json=upload_body(),
                              headers=port.auth[BANK])).status == 404
    # a currency without a rate, an unknown heading, a missing party: errors on the drafts
    lines = HEADER + "1,Widgets,991100,1,PCS,1,1,10,EUR,CN,1,CT,99110000,9911000000,W\n"
    view = await body(await client.post("/v1/declarations", json={
        **upload_body(invoice={"csv": lines}), "consignee": {}},
        headers=auth), 201)
    found = {code for d in view["drafts"] for code, _ in issues(d)}
    assert {"missing-rate", "unknown-hs-heading", "missing-party"} <= found


async def faults(authority: AuthorityServer, **counts: int) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{authority.url}/v1/admin/faults", json=counts) as resp:
        assert resp.status == 200


async def subs_of(client: TestClient, auth: dict[str, str], sid: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await body(await client.get(
        f"/v1/declarations/{sid}/submissions", headers=auth)))["submissions"]
    return found


async def test_garbage_is_retried_with_a_clear_status(
        gateway: tuple[TestClient, Port], authority: AuthorityServer) -> None:
    client, port = gateway
    auth = port.auth[TRADER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",,8517620000", ",85176200,8517620000")},
        authorities=["cn-itsw"]), headers=auth), 201)
    sid = view["id"]
    await faults(authority, garbage=1000)
    await submit_all(client, auth, view)

    async def failing() -> bool:
        subs = await subs_of(client, auth, sid)
        return bool(subs) and subs[0]["attempts"] >= 2
    await wait_until(failing, timeout=15, what="retried garbage")
    (sub,) = await subs_of(client, auth, sid)
    assert sub["status"] == "pending" and "not JSON" in sub["lastError"]
    await faults(authority, garbage=0, timeout=1)  # one hang (longer than the 1 s time-out)

    async def released() -> bool:
        return (await subs_of(client, auth, sid))[0]["status"] == "released"
    await wait_until(released, timeout=20, what="the release after the faults")
    (sub,) = await subs_of(client, auth, sid)
    assert sub["lastError"] is None and sub["number"] is not None


async def test_restart_with_submissions_in_flight_loses_nothing(
        tmp_path: Path, authority: AuthorityServer) -> None:
    """The authority is down: submissions wait, retried, with the error shown; the gateway
    stops with them in flight; a new gateway on the same data lodges them once the authority
    is back, and every one is released with its own number."""
    client, port = await started(tmp_path / "gw", authority.url)
    story(port)
    auth = port.auth[TRADER]
    try:
        view = await body(await client.post("/v1/declarations", json=upload_body(
            invoice={"csv": INVOICE.replace(",,8517620000", ",85176200,8517620000")}),
            headers=auth), 201)
        sid = view["id"]
        authority.stop()
        await submit_all(client, auth, view)

        async def waiting() -> bool:
            subs = await subs_of(client, auth, sid)
            return len(subs) == 3 and all(s["attempts"] >= 1 for s in subs)
        await wait_until(waiting, timeout=15, what="failed lodging attempts")
        subs = await subs_of(client, auth, sid)
        assert {s["status"] for s in subs} == {"pending"}
        assert all("ClientConnectorError" in s["lastError"] for s in subs)
    finally:
        await client.close()  # the gateway stops with the three in flight
    authority.start()
    client = TestClient(TestServer(create_app(config(tmp_path / "gw", authority.url))))
    await client.start_server()
    try:
        service = client.app[DECLARATIONS]

        def done() -> bool:
            subs = service.store.submissions_of(sid)
            return len(subs) == 3 and all(s.status == "released" for s in subs)
        await wait_until(done, timeout=20, what="releases after the restart")
        subs = service.store.submissions_of(sid)
        assert len({s.number for s in subs}) == 3 and all(s.number for s in subs)
        steps = [h["status"] for h in service.store.history(subs[0].id)]
        assert steps[0] == "pending" and steps[-1] == "released"
    finally:
        await client.close()


async def test_road_crossing_goods_replaced_and_approval_withdrawn(
        gateway: tuple[TestClient, Port]) -> None:
    """A cross-boundary truck: the ROCARS draft with the vehicle its CCRN is bound to; new goods
    lines replace the old (corrections and approvals go); a correction withdraws an approval."""
    client, port = gateway
    auth = port.auth[TRADER]
    crossing = {"vehicle": "zx 1234", "controlPoint": "Lok Ma Chau",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))}
    lines = INVOICE.replace(",,8517620000", ",85176200,8517620000")
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": lines}, direction="export", crossing=crossing,
        authorities=["hk-tdec", "hk-rocars"]), headers=auth), 201)
    sid = view["id"]
    road = next(d for d in view["drafts"] if d["authority"] == "hk-rocars")
    assert road["ok"], road["issues"]
    assert road["fields"]["vehicle"]["value"] == "ZX1234"
    assert road["fields"]["packages"]["value"] == 80
    assert [d["key"] for d in view["drafts"] if d["authority"] == "hk-tdec"] == [
        f"tdec:{MBL}:2"]  # an export: one form 2 for food and non-food alike
    tdec_key = f"tdec:{MBL}:2"
    await body(await client.post(f"/v1/declarations/{sid}/drafts/{tdec_key}/approve",
                                 headers=auth))
    view = await body(await client.post(f"/v1/declarations/{sid}/corrections", headers=auth,
                                        json={"draft": tdec_key, "path": "fields/consignee",
                                              "value": "Sino Trading (Shenzhen) Ltd"}), 201)
    assert next(d for d in view["drafts"] if d["key"] == tdec_key)["approval"] is None
    refused = await client.post(f"/v1/declarations/{sid}/drafts/{tdec_key}/submit",
                                headers=auth)
    assert (await body(refused, 409))["error"]["code"] == "not-approved"
    # new lines (as CSV): packages change everywhere, the correction is gone
    fewer = HEADER + lines.split("\n", 1)[1].replace(",20,CT,", ",2,CT,")
    replaced = await client.put(f"/v1/declarations/{sid}/goods", data=fewer.encode(),
                                headers={**auth, "Content-Type": "text/csv"})
    view = await body(replaced)
    road = next(d for d in view["drafts"] if d["authority"] == "hk-rocars")
    assert road["fields"]["packages"]["value"] == 62 and view["corrections"] == []
    bad = await client.put(f"/v1/declarations/{sid}/goods", data=b"line\n1\n",
                           headers={**auth, "Content-Type": "text/csv"})
    assert (await body(bad, 422))["error"]["code"] == "invalid-invoice"
    assert (await client.put(f"/v1/declarations/{sid}/goods", data=fewer.encode(),
                             headers={**port.auth[FORWARDER], "Content-Type": "text/csv"},
                             )).status == 404
    await body(await client.post(f"/v1/declarations/{sid}/drafts/rocars:{MBL}/approve",
                                 headers=auth))
    await body(await client.post(f"/v1/declarations/{sid}/drafts/rocars:{MBL}/submit",
                                 headers=auth), 202)

    async def ccrn() -> bool:
        subs = await subs_of(client, auth, sid)
        return bool(subs) and subs[0]["status"] == "released"
    await wait_until(ccrn, timeout=20, what="the CCRN")
    (sub,) = await subs_of(client, auth, sid)
    assert codes.check_ccrn(sub["number"]) is None and sub["number"].startswith("RE")
