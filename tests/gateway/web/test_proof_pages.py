"""Proofs for banks in the pages, against a real chain: a bank asks the owner of a record for a
proof, the owner approves it in the page and the bank downloads a bundle that verifies against
``genesis.json``; a declined request shows the owner's reason; the owner exports a proof itself.
Nobody sees another organisation's requests. In English and Chinese, and in real Chromium at an
office and a phone width, with screenshots (``proofs-…``).

The chain and the gateway are those of :mod:`tests.gateway.web.test_sharing_pages` (one
``portledger node`` process for the module, one gateway in front of it).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.appkeys import TRACKING
from proofs.verify import verify_bundle
from tests.gateway.web.test_sharing_pages import (
    BANK,
    OTHER,
    OWNER,
    PASSWORD,
    USERS,
    Client,
    Port,
    box,
    page,
    sign_in,
    start_port,
    visible_text,
)
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration
#: The module's tests share one gateway, so they run on the module's event loop.
shared_loop = pytest.mark.asyncio(loop_scope="module")

GENESIS = json.loads(REPO_GENESIS.read_text())
OWNER_NAME, BANK_NAME = "Pacific Ocean Line (demo)", "Harbour Trade Bank (demo)"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("proofs") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory,
               ) -> AsyncIterator[Port]:
    started = await start_port(node, tmp_path_factory.mktemp("proofs-gw"))
    try:
        yield started
    finally:
        await started.client.close()


async def shipment(port: Port, record: str) -> list[int]:
    """Two events of the owner about ``record`` (named for nobody else); their ids."""
    return [await port.record(OWNER, f"{record}-{n}", "container", record, at, event_type=kind)
            for n, (kind, at) in enumerate((("EQUIPMENT.STUF", "2026-11-20T06:00:00Z"),
                                            ("TRANSPORT.DEPA", "2026-11-20T09:30:00Z")))]


async def ask(client: Client, csrf: dict[str, str], record: str, purpose: str) -> str:
    """The bank's request, as the page's script posts it; its id."""
    resp = await client.post("/v1/proof-requests", headers=csrf, json={
        "owner": OWNER, "reference": record.lower(), "purpose": purpose})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


def article(markup: str, request_id: str) -> str:
    """The text of one request's card."""
    found = re.search(rf'<article [^>]*id="request-{request_id}">(.*?)</article>', markup, re.S)
    assert found is not None, request_id
    return visible_text("<main>" + found.group(1) + "</main>")


@shared_loop
async def test_the_bank_asks_the_owner_approves_and_the_bank_downloads(port: Port,
                                                                       tmp_path: Path) -> None:
    client, record = port.client, box(800001)
    ids = await shipment(port, record)

    bank = await sign_in(client, BANK)
    start = await page(client, "/proofs")
    assert f'<option value="{OWNER}">{OWNER_NAME}</option>' in start
    assert f'<option value="{BANK}">' not in start
    request_id = await ask(client, bank, record, "Letter of credit LC-2026-118")
    asked = article(await page(client, "/proofs"), request_id)
    assert f"Proof of {record}" in asked and "Waiting for the owner" in asked
    assert f"Asked of {OWNER_NAME}" in asked and "Purpose: Letter of credit LC-2026-118" in asked
    assert "Withdraw the request" in asked and "Download" not in asked

    # the owner's side: the request addressed to it, with the decision form
    owner = await sign_in(client, OWNER)
    incoming = await page(client, "/proofs")
    card = article(incoming, request_id)
    assert f"Asked by {BANK_NAME}" in card and "Approve" in card and "Decline" in card
    assert f'<form class="decide stack share" data-request="{request_id}"' in incoming
    resp = await client.post(f"/v1/proof-requests/{request_id}/approve", headers=owner,
                             json={"note": "For LC-2026-118 only"})
    assert resp.status == 200, await resp.text()
    card = article(await page(client, "/proofs"), request_id)
    assert "Approved" in card and "Owner's note: For LC-2026-118 only" in card
    assert f"Approved by {OWNER_NAME}" in card

    # the bank downloads the bundle through the page's link; it verifies offline
    await sign_in(client, BANK)
    approved = await page(client, "/proofs")
    card = article(approved, request_id)
    assert "Approved" in card and "2 events proven" in card
    link = f'href="/v1/proof-requests/{request_id}/bundle" download'
    assert link in approved
    resp = await client.get(f"/v1/proof-requests/{request_id}/bundle")
    assert resp.status == 200
    assert "attachment" in resp.headers["Content-Disposition"]
    bundle = json.loads(await resp.read())
    verified = verify_bundle(bundle, GENESIS)
    assert sorted(e.cargo.event_id for e in verified.events if e.cargo) == sorted(ids)
    assert f"Downloaded by {BANK_NAME}" in article(await page(client, "/proofs"), request_id)

    # the owner's "who saw my data" names the bank's download of each proven event
    await port.app[TRACKING].flush_async()
    await sign_in(client, OWNER)
    log = visible_text(await page(client, f"/access-log?record={record}&organisation={BANK}"))
    for event_id in ids:
        assert f"event {event_id}" in log
    assert "Proof you approved" in log


@shared_loop
async def test_a_declined_request_shows_the_owners_reason(port: Port) -> None:
    client, record = port.client, box(800002)
    await shipment(port, record)
    request_id = await ask(client, await sign_in(client, BANK), record, "Trade finance check")
    owner = await sign_in(client, OWNER)
    resp = await client.post(f"/v1/proof-requests/{request_id}/decline", headers=owner,
                             json={})
    assert resp.status in (400, 422)  # a reason is required
    resp = await client.post(f"/v1/proof-requests/{request_id}/decline", headers=owner,
                             json={"reason": "The goods are not financed by your bank"})
    assert resp.status == 200, await resp.text()
    assert "Declined" in article(await page(client, "/proofs"), request_id)
    await sign_in(client, BANK)
    declined = await page(client, "/proofs")
    card = article(declined, request_id)
    assert "Declined: The goods are not financed by your bank" in card
    assert f"/v1/proof-requests/{request_id}/bundle" not in declined
    assert "Withdraw the request" not in card
    resp = await client.get(f"/v1/proof-requests/{request_id}/bundle")
    assert resp.status == 409


@shared_loop
async def test_nobody_sees_another_organisations_requests(port: Port) -> None:
    client, record = port.client, box(800003)
    await shipment(port, record)
    request_id = await ask(client, await sign_in(client, BANK), record, "Confidential purpose")
    await sign_in(client, OTHER)
    seen = await page(client, "/proofs")
    assert request_id not in seen and "Confidential purpose" not in seen
    assert "Nobody has asked you for a proof." in seen
    assert "You have not asked for a proof." in seen
    for path in (f"/v1/proof-requests/{request_id}", f"/v1/proof-requests/{request_id}/bundle"):
        assert (await client.get(path, headers=port.auth[OTHER])).status == 404
    resp = await client.post(f"/v1/proof-requests/{request_id}/approve",
                             headers=port.auth[OTHER])
    assert resp.status == 404
    # the bank sees its request but cannot decide it; the owner sees it pending still
    bank = await sign_in(client, BANK)
    assert 'class="decide' not in (await page(client, "/proofs")).split(
        "id=outgoing", 1)[1]
    resp = await client.post(f"/v1/proof-requests/{request_id}/approve", headers=bank)
    assert resp.status == 403
    await sign_in(client, OWNER)
    assert "Waiting for the owner" in article(await page(client, "/proofs"), request_id)


@shared_loop
async def test_proofs_page_in_chinese_and_refusals(port: Port) -> None:
    client = port.client
    client.session.cookie_jar.clear()
    resp = await client.get("/proofs", allow_redirects=False)
    assert resp.status == 302
    await sign_in(client, BANK)
    resp = await client.get("/proofs?lang=zh-Hant")
    hant = await resp.text()
    assert '<html lang="zh-Hant">' in hant and "<h1>供銀行使用的證明</h1>" in hant
    assert "索取證明" in hant and "您提出的請求" in hant
    hans = await page(client, "/proofs?lang=zh-Hans")
    assert '<html lang="zh-Hans">' in hans and "自行导出证明" in hans
    await page(client, "/proofs?lang=en")  # the user's language is remembered: back to English
    assert "Content-Security-Policy" in (await client.get("/proofs")).headers


# -- in Chromium -------------------------------------------------------------------------------

async def signed_in_tab(browser: Any, base: str, viewport: dict[str, int], chain_org: int,
                        ) -> tuple[Any, Any]:
    """A new context signed in as the member's user, on /proofs."""
    context = await browser.new_context(viewport=viewport, locale="en-GB",
                                        timezone_id="Asia/Hong_Kong", accept_downloads=True)
    watched = await open_page(context)
    tab = watched.page
    await tab.goto(base + "/login?next=/proofs")
    await tab.fill("#email", USERS[chain_org])
    await tab.fill("#password", PASSWORD)
    await tab.click("#login-form button")
    await tab.wait_for_url(base + "/proofs")
    return context, watched


@shared_loop
async def test_in_chromium_the_bank_asks_the_owner_approves_and_declines(port: Port) -> None:
    base = str(port.client.make_url("")).rstrip("/")
    records = {size: (box(800010 + 2 * i), box(800011 + 2 * i))
               for i, size in enumerate(SIZES)}
    for approved, declined in records.values():
        await shipment(port, approved)
        await shipment(port, declined)
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            approved, declined = records[size]
            bank_context, bank = await signed_in_tab(browser, base, viewport, BANK)
            owner_context, owner = await signed_in_tab(browser, base, viewport, OWNER)
            # the bank asks twice in the page
            for record, purpose in ((approved, "Letter of credit"), (declined, "Overdraft")):
                await bank.page.select_option("#owner", str(OWNER))
                await bank.page.fill("#ask-reference", record)
                await bank.page.fill("#purpose", f"{purpose} for {record}")
                await bank.page.click("#ask-form button")
                await bank.page.wait_for_selector(f"#outgoing h3:has-text('{record}')")
            await screenshot(bank.page, f"proofs-bank-asked-{size}")
            # the owner approves one and declines the other with a reason
            await owner.page.reload()
            card = owner.page.locator("#incoming article", has_text=approved)
            await card.locator("textarea").fill("For this letter of credit only")
            await screenshot(owner.page, f"proofs-owner-{size}")
            await card.locator("button[value=approve]").click()
            await owner.page.wait_for_selector(
                f"#incoming article.proof-approved:has-text('{approved}')", timeout=30_000)
            card = owner.page.locator("#incoming article", has_text=declined)
            await card.locator("button[value=decline]").click()  # without a reason: refused
            assert "reason" in (await card.locator(".message").text_content() or "")
            await card.locator("textarea").fill("Not financed by your bank")
            await card.locator("button[value=decline]").click()
            await owner.page.wait_for_selector(
                f"#incoming article.proof-declined:has-text('{declined}')")
            await screenshot(owner.page, f"proofs-owner-decided-{size}")
            # the bank sees both: downloads the approved proof, reads the reason
            await bank.page.reload()
            reason = bank.page.locator("#outgoing article", has_text=declined)
            assert "Declined: Not financed by your bank" in (await reason.text_content() or "")
            async with bank.page.expect_download() as download_info:
                await bank.page.locator("#outgoing article", has_text=approved).locator(
                    "a[download]").click()
            download = await download_info.value
            bundle = json.loads(Path(await download.path()).read_text())
            assert verify_bundle(bundle, GENESIS).events
            await bank.page.reload()
            await screenshot(bank.page, f"proofs-bank-{size}")
            # the owner exports a proof itself in the page
            await owner.page.fill("#export-reference", approved)
            async with owner.page.expect_download() as download_info:
                await owner.page.click("#export-form button")
            exported = await download_info.value
            assert exported.suggested_filename == f"portledger-proof-{approved}.json"
            assert verify_bundle(json.loads(Path(await exported.path()).read_text()),
                                 GENESIS).events
            assert "Proof saved" in (await owner.page.text_content("#export-form .message") or "")
            # in Chinese
            await bank.page.click("nav.languages a[lang=zh-Hant]")
            await bank.page.wait_for_selector("html[lang=zh-Hant]")
            assert (await bank.page.text_content("h1")) == "供銀行使用的證明"
            await screenshot(bank.page, f"proofs-zh-Hant-{size}")
            await bank.page.click("nav.languages a[lang=en]")
            for watched in (bank, owner):
                assert watched.problems == [], watched.problems
                assert [f for f in watched.failed if "/login" not in f[1]] == []
            await bank_context.close()
            await owner_context.close()
