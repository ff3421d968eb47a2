"""The declarations API in the real gateway against the SIMULATED authority service, started as
its own process on loopback: upload once, the drafts, a correction, approve, submit, official
numbers and a release back; the release becomes a customs event that tracking by the China
declaration number shows; the customs organisation reads the declaration once it was submitted
to it, a bank never; bad input; a road crossing's ROCARS draft and its CCRN."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient

from gateway.appkeys import OUTBOX
from gateway.declarations import codes
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import (
    BOX,
    HEADER,
    INVOICE,
    MBL,
    body,
    issues,
    submit_all,
    subs_of,
    upload_body,
)
from tests.support.dcsa import wait_until
from tests.support.readside import BANK, CUSTOMS, FORWARDER, TRADER


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
    # (named by the declaration's keyed alias, the number only in their sealed details)
    pending = client.app[OUTBOX].pending(port.orgs[CUSTOMS], 100)
    alias = china_sub["chain"]["alias"]
    released = [op.event for op in pending if op.event is not None
                and op.event.subject.value == alias]
    assert [e.event_type for e in released] == ["CUSTOMS.CUSH", "CUSTOMS.CUSR"]
    assert {e.details["declarationNumber"] for e in released} == {china_number}
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
