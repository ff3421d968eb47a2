"""Sharing in the pages, against a real chain: the owner of a record grants a bank read access,
follows the grant's transaction to final, sees the grant in its list (``GET /v1/grants`` and the
``/sharing`` page) and revokes it — and the bank reads the record exactly while it is granted.
"Who saw my data" (``/access-log``) shows the bank's reads, filtered and paged by the server.
Nobody sees another organisation's grants or access log. In English and Chinese, and in real
Chromium at an office and a phone width, with screenshots (``sharing-…``).

The chain is one ``portledger node`` process on the repository genesis (started once for the
module); each test runs the whole gateway (``create_app``) in front of it, whose submitter sends
the grants and whose indexer reads them back, as in production.
"""

from __future__ import annotations

import dataclasses
import html
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devnet.jsonrpc import rpc_answer
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, INDEXER, KEYSTORE, READ_MODEL, SUBMITTER, TRACKING
from gateway.events.model import Reference
from gateway.intake.grants import Registered, grant_state
from gateway.readside.readmodel import SUBJECT_SCOPE, Grant
from gateway.writepath.operations import Receipt
from tests.support import readside as rs
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.dcsa import config, organisation
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration
#: The module's tests share one gateway, so they run on the module's event loop.
shared_loop = pytest.mark.asyncio(loop_scope="module")

#: The test client of a gateway app.
Client = TestClient[web.Request, web.Application]

PASSWORD = "correct horse battery staple"
SCOPES = ("events:write", "events:read", "tracking:read", "grants:write", "proofs:export",
          "proofs:request")
#: The hosted members: the owner (a carrier), a bank, and a third party that is shown nothing.
OWNER, BANK, OTHER = rs.CARRIER, rs.BANK, rs.FORWARDER
NAMES = {OWNER: "Pacific Ocean Line", BANK: "Harbour Trade Bank",
         OTHER: "Harbour Freight Forwarding"}
USERS = {OWNER: "ops@pacific.example", BANK: "trade@bank.example",
         OTHER: "ops@freight.example"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("sharing") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


@dataclasses.dataclass
class Port:
    """The gateway in front of the node: its hosted members' API keys and gateway ids."""

    client: Client
    auth: dict[int, dict[str, str]]
    org_ids: dict[int, int]

    @property
    def app(self) -> Any:
        return self.client.app

    async def final(self, chain_org: int, key: str) -> Receipt:
        """Wait (bounded) until an operation is final and indexed; its receipt."""
        receipt: Receipt = await self.app[SUBMITTER].wait_final(self.org_ids[chain_org], key,
                                                                60)
        assert receipt.status == "final", receipt
        assert receipt.block is not None
        assert await self.app[INDEXER].wait_for_block(receipt.block, timeout=60)
        return receipt

    async def record(self, owner: int, key: str, kind: str, value: str, at: str,
                     event_type: str = "TRANSPORT.DEPA", readers: tuple[int, ...] = ()) -> int:
        """An event of ``owner`` about one record, only its owner (and ``readers``) named,
        final and indexed; its event id."""
        resp = await self.client.post("/v1/events", headers=self.auth[owner], json={"events": [{
            "id": key, "type": event_type, "classifier": "ACT", "time": at,
            "subject": {"kind": kind, "value": value}, "location": "HKHKG",
            "details": {"remark": f"{key} of {NAMES[owner]}"},
            "visibility": {"mode": "named", "readers": list(readers)}}]})
        assert resp.status == 202, await resp.text()
        receipt = await self.final(owner, key)
        assert receipt.event_id is not None
        return receipt.event_id

    async def track(self, chain_org: int, reference: str) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get(f"/v1/track/{reference}", headers=self.auth[chain_org])
        return resp.status, await resp.json()


async def start_port(node: NodeProcess, data_dir: Path) -> Port:
    """A gateway in front of ``node`` hosting the three members, each with a user; indexed to
    the chain's head."""
    cfg = dataclasses.replace(config(data_dir), node_urls=(node.url,), batch_window_ms=20,
                              indexer_poll_ms=50)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    auth, org_ids = {}, {}
    for chain_org, name in NAMES.items():
        org_ids[chain_org], auth[chain_org] = organisation(
            client.app, name, chain_org=chain_org, scopes=SCOPES)
        client.app[KEYSTORE].import_keys(
            org_ids[chain_org], signing_key=bytes(rs.account(chain_org).key),
            x25519_private=rs.x25519_private(chain_org),
            master_secret=rs.master_secret(chain_org))  # fmt: skip
        client.app[ACCOUNTS].create_user(org_ids[chain_org], USERS[chain_org], PASSWORD,
                                         "member")
    head = int(rpc_answer(node.url, "eth_blockNumber", [])["result"], 16)
    assert await client.app[INDEXER].wait_for_block(head, timeout=60)
    return Port(client, auth, org_ids)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory,
               ) -> AsyncIterator[Port]:
    """One gateway for the module's tests (each test uses records of its own)."""
    started = await start_port(node, tmp_path_factory.mktemp("sharing-gw"))
    try:
        yield started
    finally:
        await started.client.close()


async def page(client: Client, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


def visible_text(markup: str) -> str:
    """The page's text (tags dropped, whitespace folded) — what a reader sees."""
    body = markup.split("<main", 1)[-1].split("</main>", 1)[0]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def access_rows(markup: str) -> list[tuple[str, ...]]:
    """The access log's rows: (time, organisation, record, allowed by)."""
    table = markup.split("<table id=access-log", 1)[1].split("</table>", 1)[0]
    return [tuple(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
                  for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S))
            for row in re.findall(r"<tr><td data-label.*?</tr>", table, re.S)]


def grants_table(markup: str) -> str:
    return visible_text(markup.split("<table id=grants", 1)[1].split("</table>", 1)[0])


async def sign_in(client: Client, chain_org: int) -> dict[str, str]:
    """Sign in as the member's user; the headers the page's script sends on a write."""
    return {"X-CSRF-Token": await login(client, USERS[chain_org], PASSWORD)}


def box(serial: int) -> str:
    return rs.container("PCOU", serial)


# -- the grant's state, from its submissions and the chain (pure) ------------------------------

def _registered(**kw: Any) -> Registered:
    base = dict(seq=1, org_id=1, subject=Reference("container", box(1)), reader=BANK, expiry=0,
                grant_key="g", granted_at=1.0, revoke_key=None, revoked_at=None)
    return Registered(**{**base, **kw})


def _receipt(status: str, block: int | None = None) -> Receipt:
    return Receipt(1, "k", False, status, block=block)  # type: ignore[arg-type]


def _chain(active: bool, block: int, expiry: int = 0) -> Grant:
    return Grant(OWNER, SUBJECT_SCOPE, b"\x01" * 32, BANK, expiry, b"w", block, active)


def test_a_grant_is_pending_until_final_and_indexed_then_as_the_chain_says() -> None:
    row, now = _registered(), 1_000.0
    assert grant_state(row, _receipt("accepted"), None, None, now) == "pending"
    assert grant_state(row, _receipt("sent"), None, None, now) == "pending"
    assert grant_state(row, _receipt("failed"), None, None, now) == "failed"
    assert grant_state(row, _receipt("final", 7), None, None, now) == "pending"
    # an earlier grant of the pair (revoked at block 5) until the indexer reads block 7
    assert grant_state(row, _receipt("final", 7), None, _chain(False, 5), now) == "pending"
    assert grant_state(row, _receipt("final", 7), None, _chain(True, 7), now) == "active"
    assert grant_state(row, _receipt("final", 7), None, _chain(True, 7, 999), now) == "expired"
    assert grant_state(row, _receipt("final", 7), None, _chain(False, 9), now) == "revoked"
    revoked = _registered(revoke_key="r", revoked_at=2.0)
    active = _chain(True, 7)
    assert grant_state(revoked, _receipt("final", 7), _receipt("sent"), active, now) == \
        "revoking"
    assert grant_state(revoked, _receipt("final", 7), _receipt("final", 9), active, now) == \
        "revoked"
    # a failed revocation leaves the grant as it was
    assert grant_state(revoked, _receipt("final", 7), _receipt("failed"), active, now) == \
        "active"


# -- grant, list, revoke: the API and the pages ------------------------------------------------

@shared_loop
async def test_the_owner_grants_and_revokes_and_the_bank_reads_only_while_granted(
        port: Port) -> None:
    client, record = port.client, box(700001)
    event_id = await port.record(OWNER, "disc-1", "container", record, "2026-11-24T08:15:00Z")
    status, _ = await port.track(BANK, record)
    assert status == 404  # named for nobody: the bank reads nothing of it

    csrf = await sign_in(client, OWNER)
    empty = await page(client, f"/sharing?kind=container&value={record}")
    assert "This record is not shared with anyone." in grants_table(empty)
    assert f'<option value="{BANK}">Harbour Trade Bank (demo)</option>' in empty
    assert f'<option value="{OWNER}">' not in empty  # not one's own organisation

    # the grant, as the page's script posts it: accepted, then followed to final
    resp = await client.post("/v1/grants", headers=csrf, json={
        "subject": {"kind": "container", "value": record.lower()}, "reader": BANK,
        "expiresAt": "2099-12-31T23:59:59+08:00"})
    assert resp.status == 202, await resp.text()
    key = (await resp.json())["receipts"][0]["id"]
    pending = await page(client, f"/sharing?kind=container&value={record}")
    assert f"Share Container {record}" in visible_text(pending)
    row = grants_table(pending)
    assert "Being granted" in row and "Harbour Trade Bank (demo)" in row
    assert "31 Dec 2099, 23:59 HKT" in row
    assert 'data-watch="/v1/grants?kind=container&amp;value=' + record in pending
    assert f'data-submission="{key}"' in pending  # the script follows /v1/submissions/{key}
    assert "data-revoke" not in pending  # nothing to revoke before it is on chain
    receipt = await port.final(OWNER, key)

    mine = f"/v1/grants?kind=container&value={record}"
    listed = await (await client.get(mine, headers=port.auth[OWNER])).json()
    [grant] = listed["grants"]
    assert grant["state"] == "active" and grant["subject"] == {"kind": "container",
                                                               "value": record}
    assert grant["reader"] == {"id": BANK, "name": "Harbour Trade Bank (demo)"}
    assert grant["grant"]["status"] == "final" and grant["grant"]["block"] == receipt.block
    assert grant["expiresAt"] == "2099-12-31T15:59:59Z" and grant["revoke"] is None
    active = await page(client, f"/sharing?kind=container&value={record}")
    assert "Active" in grants_table(active)
    assert f"Final in block {receipt.block}" in grants_table(active)
    assert f'data-revoke="/v1/grants/container/{record}/{BANK}"' in active

    # the bank reads the record now; the owner's log says so
    status, view = await port.track(BANK, record)
    assert status == 200 and event_id in {e.get("eventId") for e in view["timeline"]}
    await port.app[TRACKING].flush_async()
    log = visible_text(await page(client, "/access-log"))
    assert "Harbour Trade Bank (demo)" in log and f"event {event_id}" in log
    assert f"Container {record}" in log and "Your grant" in log

    # revoked: being revoked until final, then gone from the current list; the bank reads
    # nothing of the record any more
    resp = await client.delete(f"/v1/grants/container/{record}/{BANK}", headers=csrf)
    assert resp.status == 202, await resp.text()
    revoke_key = (await resp.json())["receipts"][0]["id"]
    section = f"/sharing?kind=container&value={record}"
    assert "Being revoked" in grants_table(await page(client, section))
    await port.final(OWNER, revoke_key)
    assert "This record is not shared with anyone." in grants_table(await page(client, section))
    assert "Revoked" in grants_table(await page(client, section + "&show=all"))
    status, _ = await port.track(BANK, record)
    assert status == 404
    [grant] = (await (await client.get(mine, headers=port.auth[OWNER])).json())["grants"]
    assert grant["state"] == "revoked" and grant["revoke"]["status"] == "final"


@shared_loop
async def test_nobody_sees_another_organisations_grants_or_access_log(port: Port) -> None:
    client, record = port.client, box(700002)
    await port.record(OWNER, "disc-2", "container", record, "2026-11-24T09:00:00Z")
    resp = await client.post("/v1/grants", headers=port.auth[OWNER], json={
        "subject": {"kind": "container", "value": record}, "reader": BANK})
    assert resp.status == 202
    await port.final(OWNER, (await resp.json())["receipts"][0]["id"])
    assert (await port.track(BANK, record))[0] == 200
    await port.app[TRACKING].flush_async()

    for reader in (BANK, OTHER):
        resp = await client.get("/v1/grants", headers=port.auth[reader])
        assert resp.status == 200 and (await resp.json())["grants"] == []
        resp = await client.get(f"/v1/grants?kind=container&value={record}",
                                headers=port.auth[reader])
        assert (await resp.json())["grants"] == []
        await sign_in(client, reader)
        for path in ("/sharing", "/sharing?show=all", "/access-log"):
            assert record not in await page(client, path)
        # the record's Share section names the record, but lists none of the owner's grants
        section = await page(client, f"/sharing?kind=container&value={record}&show=all")
        assert "This record is not shared with anyone." in grants_table(section)
        assert "data-revoke" not in section and "data-watch" not in section
        assert "Nobody else has read your records yet." in visible_text(
            await page(client, "/access-log"))
    # the owner's log has the read; another organisation cannot revoke the owner's grant
    await sign_in(client, OWNER)
    assert "Harbour Trade Bank (demo)" in visible_text(await page(client, "/access-log"))
    resp = await client.delete(f"/v1/grants/container/{record}/{BANK}",
                               headers=port.auth[OTHER])
    assert resp.status == 409  # the contract: OTHER has no such grant
    mine = f"/v1/grants?kind=container&value={record}"
    [grant] = (await (await client.get(mine, headers=port.auth[OWNER])).json())["grants"]
    assert grant["state"] == "active"


@shared_loop
async def test_the_grant_list_api_refuses_bad_queries_and_pages(port: Port) -> None:
    client, get = port.client, port.client.get
    auth = port.auth[OWNER]
    for bad in ("kind=container", "value=X", "kind=planet&value=X", "reader=0", "reader=abc",
                "limit=0", "limit=501", "before=-1"):
        resp = await get(f"/v1/grants?{bad}", headers=auth)
        assert resp.status in (400, 422), (bad, resp.status)
        assert (await resp.json())["error"]["code"]
    resp = await get("/v1/grants?kind=container&value=PCOU1234567", headers=auth)
    assert resp.status == 422  # a wrong check digit
    client.session.cookie_jar.clear()
    assert (await get("/v1/grants")).status == 401
    _, reader_only = organisation(port.app, "Reader only", chain_org=rs.AUDITOR,
                                  scopes=("tracking:read",))
    assert (await get("/v1/grants", headers=reader_only)).status == 403
    # three grants (accepted: the list shows them pending), newest first, two per page
    records = [box(700010 + i) for i in range(3)]
    for record in records:
        await port.record(OWNER, f"ev-{record}", "container", record, "2026-11-24T10:00:00Z")
        resp = await client.post("/v1/grants", headers=auth, json={
            "subject": {"kind": "container", "value": record}, "reader": BANK})
        assert resp.status == 202
    first = await (await get("/v1/grants?limit=2", headers=auth)).json()
    assert [g["subject"]["value"] for g in first["grants"]] == records[:0:-1]
    assert first["next"] is not None
    rest = await (await get(f"/v1/grants?limit=2&before={first['next']}", headers=auth)).json()
    assert rest["grants"][0]["subject"]["value"] == records[0]
    assert {g["state"] for g in first["grants"]} <= {"pending", "active"}
    only = await (await get(f"/v1/grants?reader={OTHER}", headers=auth)).json()
    assert only["grants"] == []
    document = await (await get("/openapi.json")).json()
    assert "get" in document["paths"]["/v1/grants"]


@shared_loop
async def test_access_log_filters_and_pages_on_the_server(port: Port) -> None:
    client = port.client
    records = [box(700020), box(700021)]
    ids = [await port.record(OWNER, f"log-{r}", "container", r, "2026-11-24T11:00:00Z",
                             readers=(BANK, OTHER)) for r in records]
    for reader in (BANK, OTHER):
        for record in records:
            assert (await port.track(reader, record))[0] == 200
    await port.app[TRACKING].flush_async()
    await sign_in(client, OWNER)
    for event_id, record in zip(ids, records, strict=True):
        rows = access_rows(await page(client, f"/access-log?record={record}"))
        assert {r[1] for r in rows if f"event {event_id}" in r[2]} == {
            "Harbour Trade Bank (demo)", "Harbour Freight Forwarding (demo)"}
        assert all(f"Container {record}" in r[2] and r[3] == "Named reader" for r in rows)
    one = access_rows(await page(client, f"/access-log?record={records[0].lower()}"))
    assert one and all(f"event {ids[0]}" in r[2] for r in one)
    by_bank = access_rows(await page(
        client, f"/access-log?organisation={BANK}&record={records[1]}"))
    assert {r[1] for r in by_bank} == {"Harbour Trade Bank (demo)"}
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
    dated = access_rows(await page(client, f"/access-log?from={today}&to={today}"
                                           f"&record={records[0]}"))
    assert dated == one
    past = visible_text(await page(client, "/access-log?from=2020-01-01&to=2020-01-02"))
    assert "No reads match these filters." in past
    bad = await page(client, "/access-log?record=%3Cscript%3E&from=nonsense")
    assert "is not a reference number" in visible_text(bad)
    assert "<script>" not in bad and "&lt;script&gt;" in bad
    # paging: 50 a page, newest first; "Older" continues below the last one shown
    subject = Reference("container", records[0]).key
    port.app[READ_MODEL].log_access([(OWNER, BANK, ids[0], subject, int(time.time()),
                                      "named")] * 60)
    first = await page(client, "/access-log")
    assert len(access_rows(first)) == 50
    older = re.search(r'href="/access-log\?before=(\d+)"', first)
    assert older is not None
    second = access_rows(await page(client, f"/access-log?before={older.group(1)}"))
    assert len(second) >= 14
    assert "Newest" in visible_text(await page(client, f"/access-log?before={older.group(1)}"))
    # the JSON API is unchanged
    resp = await client.get("/v1/access-log?limit=2", headers=port.auth[OWNER])
    body = await resp.json()
    assert len(body["entries"]) == 2 and body["next"] is not None
    assert set(body["entries"][0]) == {"id", "reader", "readerName", "eventId", "subject",
                                       "time", "via"}


@shared_loop
async def test_sharing_pages_in_chinese(port: Port) -> None:
    client, record = port.client, box(700030)
    await port.record(OWNER, "disc-zh", "container", record, "2026-11-24T12:00:00Z")
    resp = await client.post("/v1/grants", headers=port.auth[OWNER], json={
        "subject": {"kind": "container", "value": record}, "reader": BANK})
    await port.final(OWNER, (await resp.json())["receipts"][0]["id"])
    await sign_in(client, OWNER)
    resp = await client.get("/sharing?lang=zh-Hant")
    hant = await resp.text()
    assert '<html lang="zh-Hant">' in hant and resp.cookies["pl_lang"].value == "zh-Hant"
    assert "<h1>共享</h1>" in hant and "授予讀取權限" in hant and "生效中" in grants_table(hant)
    assert f"貨櫃 {record}" in grants_table(hant)
    hans = await page(client, "/access-log?lang=zh-Hans")
    assert '<html lang="zh-Hans">' in hans and "筛选日志" in hans
    assert (await port.track(BANK, record))[0] == 200
    await port.app[TRACKING].flush_async()
    assert "您的授权" in visible_text(await page(client, "/access-log?lang=zh-Hans"))
    await page(client, "/sharing?lang=en")  # the user's language is remembered: back to English


@shared_loop
async def test_pages_refuse_and_escape(port: Port) -> None:
    client = port.client
    client.session.cookie_jar.clear()
    resp = await client.get("/sharing", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
    driver_org = port.app[ACCOUNTS].create_organisation(
        "Drivers", ["haulier"], {}, status="active", chain_org=rs.HAULIER)
    port.app[ACCOUNTS].create_user(driver_org.id, "driver@haul.example", PASSWORD, "driver")
    await login(client, "driver@haul.example", PASSWORD)
    refused = await page(client, "/sharing", 403)
    assert "grants:write" in refused
    await sign_in(client, OWNER)
    odd = await page(client,
                     "/sharing?kind=container&value=%3Cb%3Ex&before=zz&show=x&lang=en")
    assert "<b>x" not in odd and "Sharing" in odd
    assert "Content-Security-Policy" in (await client.get("/sharing")).headers
    assert "Content-Security-Policy" in (await client.get("/access-log")).headers


# -- in Chromium -------------------------------------------------------------------------------

@shared_loop
async def test_in_chromium_the_owner_grants_and_revokes_a_bank(port: Port) -> None:
    client = port.client
    base = str(client.make_url("")).rstrip("/")
    records = {"desktop": box(700040), "phone": box(700041)}
    ids = {size: await port.record(OWNER, f"ui-{size}", "container", record,
                                   "2026-11-24T13:00:00Z")
           for size, record in records.items()}
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            record = records[size]
            context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            watched = await open_page(context)
            tab = watched.page
            await tab.goto(base + "/login?next=/sharing")
            await tab.fill("#email", USERS[OWNER])
            await tab.fill("#password", PASSWORD)
            await tab.click("#login-form button")
            await tab.wait_for_url(base + "/sharing")
            await screenshot(tab, f"sharing-start-{size}")
            # grant: the page goes to the record's Share section, the grant pending there
            await tab.select_option("#kind", "container")
            await tab.fill("#value", record)
            await tab.select_option("#reader", str(BANK))
            await tab.fill("#until", "2099-12-31")
            await tab.click("#grant-form button")
            await tab.wait_for_url(re.compile(r".*/sharing\?kind=container&value=.*"))
            await tab.wait_for_selector("#grants .chip")
            if await tab.locator("#grants .chip.grant-pending").count():
                await screenshot(tab, f"sharing-granting-{size}")
            # followed by the script until the chain has it (bounded by the selector's wait)
            await tab.wait_for_selector("#grants .chip.grant-active", timeout=60_000)
            assert "Final in block" in (await tab.text_content("#grants tbody") or "")
            await screenshot(tab, f"sharing-{size}")
            status, view = await port.track(BANK, record)
            assert status == 200 and ids[size] in {e.get("eventId") for e in view["timeline"]}
            # who saw my data: the bank's read
            await port.app[TRACKING].flush_async()
            await tab.goto(base + "/access-log")
            assert "Harbour Trade Bank (demo)" in (await tab.text_content("#access-log") or "")
            await screenshot(tab, f"sharing-access-log-{size}")
            # revoke: being revoked, then gone from the current grants
            await tab.goto(base + f"/sharing?kind=container&value={record}")
            await tab.click(f'button[data-revoke="/v1/grants/container/{record}/{BANK}"]')
            await tab.wait_for_selector("#grants td.muted", timeout=60_000)
            assert "not shared" in (await tab.text_content("#grants") or "")
            status, _ = await port.track(BANK, record)
            assert status == 404
            # in Chinese
            await tab.click("nav.languages a[lang=zh-Hant]")
            await tab.wait_for_selector("html[lang=zh-Hant]")
            assert (await tab.text_content("h1")) == f"共享貨櫃 {record}"
            await screenshot(tab, f"sharing-zh-Hant-{size}")
            await tab.click("nav.languages a[lang=en]")
            assert watched.problems == [], watched.problems
            assert [f for f in watched.failed if "/login" not in f[1]] == []
            await context.close()
