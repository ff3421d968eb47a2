"""The declarations' pages in the real gateway against the SIMULATED authority (its own process):
the list and the review page — drafts side by side with lineage, issues, the HK$ charge, the
rate with its source and date, the cross-draft checks — a correction recorded with who and
when, approval, submission and the authorities' answers, in English and Chinese; who sees the
page (the declarant, its named forwarder, the customs organisation once submitted) and who
never does (a bank, a competitor); and in real Chromium at an office and a phone width: the
goods upload with its per-line errors, a correction, approve, submit, the answers coming back."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient

from gateway.appkeys import ACCOUNTS
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import HEADER, INVOICE, MBL, body, upload_body
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.dcsa import wait_until
from tests.support.readside import BANK, CUSTOMS, FORWARDER, TERMINAL2, TRADER

PASSWORD = "correct horse battery staple"
USERS = {TRADER: "ops@sino.example", CUSTOMS: "officer@customs.example",
         BANK: "ops@bank.example", TERMINAL2: "ops@competitor.example",
         FORWARDER: "ops@harbour.example"}


def users(port: Port) -> None:
    port.member(TERMINAL2, "Tsing Yi Terminal")
    for chain_org, email in USERS.items():
        port.app[ACCOUNTS].create_user(port.orgs[chain_org], email, PASSWORD, "member")


def visible_text(markup: str) -> str:
    """The page's text (tags dropped, whitespace folded) — what a reader sees."""
    found = markup.split("<body", 1)[-1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found))


async def page(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


async def released(client: TestClient, port: Port, sid: int, count: int) -> None:
    async def done() -> bool:
        subs = (await body(await client.get(f"/v1/declarations/{sid}/submissions",
                                            headers=port.auth[TRADER])))["submissions"]
        return len(subs) == count and all(s["status"] == "released" for s in subs)

    await wait_until(done, timeout=20, what="every submission released")


async def test_review_correct_submit_and_who_sees_the_page(
        gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    users(port)
    view = await body(await client.post("/v1/declarations", json=upload_body(
        readers=[port.orgs[FORWARDER]]), headers=port.auth[TRADER]), 201)
    sid = view["id"]
    csrf = {"X-CSRF-Token": await login(client, USERS[TRADER], PASSWORD)}

    listed = await page(client, "/declarations?lang=en")
    assert '<a href="/declarations" aria-current=page>Declarations</a>' in listed  # the nav
    assert f'<a href="/declarations/{sid}">{MBL}</a>' in listed
    assert "not submitted" in visible_text(listed) and 'id=decl-new' in listed

    review = await page(client, f"/declarations/{sid}")
    text = visible_text(review)
    # the drafts side by side: two TDECs (food and non-food) and the China declaration
    assert review.count("<section class=decl-draft") == 3
    assert f"Hong Kong TDEC form 1 (import) for {MBL}" in text
    assert f"Hong Kong TDEC form 1A (import) for {MBL}" in text
    assert f"China customs declaration 报关单 (Mainland export) for {MBL}" in text
    # charges in HK$, the rate with its source and date, the cross-draft checks
    assert "value HK$405,600 · declaration charge HK$45.20" in text
    assert "1 USD = 7.8 HKD, source: HKMA (EXAMPLE) · rate of 1 Dec 2026" in text
    assert "Quantities, weights, values and packages are the same in every draft." in text
    # lineage of each field; the China draft's Chinese labels beside English
    assert "tracking: TRANSPORT.ARRI event" in text and "named in the upload: consignor" in text
    assert "organisation directory: Sino Trading" in text
    assert 'Unified social credit code <span lang=zh-Hans class=zh>统一社会信用代码</span>' in review
    # the errors and warnings; approval is refused until they are corrected
    assert "Error: HKHS code missing (lines/3/hkhsCode)" in text
    assert "Warning: An address is missing (fields/declarantAddress)" in text
    assert re.search(r'data-post="/v1/declarations/\d+/drafts/tdec%3APCOL1234567%3A1/approve"'
                     r' disabled', review)
    assert 'value="lines/3/hkhsCode"' in review and 'value="fields/charge"' not in review

    # the trader corrects the HKHS code and the declarant's address (a warning), in the page's
    # session; who and when are shown
    for path, value in (("lines/3/hkhsCode", "85176200"),
                        ("fields/declarantAddress", "8 Harbour Road, Wan Chai")):
        resp = await client.post(f"/v1/declarations/{sid}/corrections", headers=csrf,
                                 json={"draft": f"tdec:{MBL}:1", "path": path, "value": value})
        assert resp.status == 201, await resp.text()
    text = visible_text(await page(client, f"/declarations/{sid}"))
    assert "corrected by ops@sino.example (Sino Trading)" in text
    assert "Corrections (who and when)" in text and "8 Harbour Road, Wan Chai" in text
    assert "Error: HKHS code missing" not in text
    assert "Warning: An address is missing (fields/declarantAddress)" in text  # other drafts

    # in Chinese: the whole page through the catalogue, the China labels in Simplified
    hant = await page(client, f"/declarations/{sid}?lang=zh-Hant")
    assert '<html lang="zh-Hant">' in hant
    hant_text = visible_text(hant)
    assert f"香港 TDEC 表格 1（進口）：{MBL}" in hant_text and "報關費 HK$45.20" in hant_text
    assert "統一社會信用代碼 统一社会信用代码" in hant_text and "草稿並列對照" in hant_text
    assert "由 ops@sino.example（Sino Trading） 更正" in hant_text
    hans_text = visible_text(await page(client, f"/declarations/{sid}?lang=zh-Hans"))
    assert "中国海关报关单（内地出口）" in hans_text and "草稿并列对照" in hans_text

    # approve and submit each draft from the page's session; the answers come back
    view = await body(await client.get(f"/v1/declarations/{sid}", headers=csrf))
    for draft in view["drafts"]:
        for action in ("approve", "submit"):
            resp = await client.post(f"/v1/declarations/{sid}/drafts/{draft['key']}/{action}",
                                     headers=csrf)
            assert resp.status in (200, 202), await resp.text()
    await released(client, port, sid, 3)
    subs = (await body(await client.get(f"/v1/declarations/{sid}/submissions",
                                        headers=csrf)))["submissions"]
    china = next(s["number"] for s in subs if s["authority"] == "cn-itsw")
    done = await page(client, f"/declarations/{sid}?lang=en")
    done_text = visible_text(done)
    assert china in done_text and done_text.count("released") >= 3
    assert "query raised → released" in done_text  # the shrimp line had no 规格型号
    assert "data-follow" not in done  # nothing open: the script stops asking
    assert "SIMULATED authority service" in done_text

    # the customs organisation reads it (read-only); the named forwarder too
    await login(client, USERS[CUSTOMS], PASSWORD)
    seen = await page(client, f"/declarations/{sid}")
    assert china in visible_text(seen) and "only the declarant changes it" in visible_text(seen)
    assert 'class="decl-correct' not in seen and "data-post" not in seen
    assert f'href="/declarations/{sid}"' in await page(client, "/declarations")
    await login(client, USERS[FORWARDER], PASSWORD)
    assert china in visible_text(await page(client, f"/declarations/{sid}"))

    # a bank and a competitor: the same "not found" as for nothing, and nothing in the list
    for stranger in (BANK, TERMINAL2):
        await login(client, USERS[stranger], PASSWORD)
        for path in (f"/declarations/{sid}", f"/declarations/{sid}?lang=zh-Hant",
                     "/declarations/999999"):
            hidden = await page(client, path, 404)
            assert china not in hidden and MBL not in hidden and "HK$" not in hidden
        mine = await page(client, "/declarations?lang=en")
        assert MBL not in mine and china not in mine and "No declarations" in mine


async def test_pages_refuse_escape_and_sign_in(gateway: tuple[TestClient, Port]) -> None:
    client, port = gateway
    users(port)
    resp = await client.get("/declarations/1", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
    await login(client, USERS[TRADER], PASSWORD)
    for bad in ("%3Cscript%3E", "1e3", "99999999999999999999", "-1"):
        hidden = await page(client, f"/declarations/{bad}", 404)
        assert "<script>" not in hidden
    answer = await client.get("/declarations")
    assert "Content-Security-Policy" in answer.headers
    # a consignee named with markup is shown as text
    await body(await client.post("/v1/declarations", json=upload_body(
        consignee={"name": "<b>Bold</b> Ltd", "address": "x", "country": "HK"}),
        headers=port.auth[TRADER]), 201)
    sid = (await body(await client.get("/v1/declarations", headers=port.auth[TRADER])))[
        "declarations"][0]["id"]
    shown = await page(client, f"/declarations/{sid}")
    assert "<b>Bold</b>" not in shown and "&lt;b&gt;Bold&lt;/b&gt; Ltd" in shown


BAD_INVOICE = HEADER + (
    "1,Smartphones,8517,200,PCS,150.5,120,40000,USD,CN,20,CT,85171300,8517130000,X1\n"
    "2,Routers,851762,100,SET,90,95,12000,USD,CHN,10,CT,85176200,8517620000,R7\n")


async def test_in_chromium_at_office_and_phone_width(
        gateway: tuple[TestClient, Port], tmp_path: Path) -> None:
    client, port = gateway
    users(port)
    base = str(client.make_url("")).rstrip("/")
    bad, good = tmp_path / "bad.csv", tmp_path / "invoice.csv"
    bad.write_text(BAD_INVOICE)
    good.write_text(INVOICE)
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            watched = await open_page(context)
            tab = watched.page
            await tab.goto(base + "/login?next=/declarations%3Flang%3Den")
            await tab.fill("#email", USERS[TRADER])
            await tab.fill("#password", PASSWORD)
            await tab.click("#login-form button")
            await tab.wait_for_url(base + "/declarations?lang=en")
            # the upload: a file with problems is refused with every problem by line
            await tab.fill("#decl-reference", MBL)
            await tab.select_option("#decl-self", "consignee")
            await tab.fill("#consignor-name", "Shenzhen Phone Works")
            await tab.fill("#consignor-address", "1 Keji Road, Shenzhen")
            await tab.fill("#consignor-country", "cn")
            await tab.fill("#consignor-uscc", "91350100M000100Y43")
            await tab.set_input_files("#decl-file", str(bad))
            await tab.click("#decl-new > button")
            await tab.wait_for_selector("#decl-new .decl-upload-errors li:nth-child(3)")
            errors = await tab.text_content("#decl-new .decl-upload-errors") or ""
            assert "2 problem(s)" in errors and "Line 2, hs_code" in errors
            assert "Line 3, net_kg: net weight 95 kg is more than gross weight 90 kg" in errors
            await screenshot(tab, f"declarations-upload-errors-{size}")
            # the right file: the review page
            await tab.set_input_files("#decl-file", str(good))
            await tab.click("#decl-new > button")
            await tab.wait_for_url(re.compile(r".*/declarations/\d+$"))
            assert await tab.locator("section.decl-draft").count() == 3
            await screenshot(tab, f"declarations-review-{size}")
            # correct the missing HKHS code in the page; then approve and submit each draft
            form = tab.locator("section.decl-draft").first.locator("form.decl-correct")
            await form.locator("select").select_option("lines/3/hkhsCode")
            await form.locator("input[name=value]").fill("85176200")
            await form.locator("button").click()
            await tab.wait_for_selector("text=corrected by ops@sino.example")
            for index in range(3):  # (on the phone, the same documents are already submitted)
                section = tab.locator("section.decl-draft").nth(index)
                approve = section.locator("button[data-post$='/approve']:not([disabled])")
                if await approve.count():
                    await approve.click()
                    await section.locator("text=Approved by").wait_for()
                submit = section.locator("button[data-post$='/submit']")
                if await submit.count():
                    await submit.click()
                    await section.locator("[class*=decl-status-]").wait_for()
            await tab.wait_for_function(
                "() => document.querySelectorAll('#decl-submissions .decl-status-released')"
                ".length === 3", timeout=30_000)
            number = await tab.text_content("#decl-submissions .decl-sub-number")
            assert number and number.strip() != "—"
            await screenshot(tab, f"declarations-submitted-{size}")
            await tab.click("nav.languages a[lang=zh-Hant]")
            await tab.wait_for_selector("html[lang=zh-Hant]")
            assert "報關" in (await tab.text_content("h1") or "")
            await screenshot(tab, f"declarations-review-zh-Hant-{size}")
            await tab.click("nav.languages a[lang=zh-Hans]")
            await tab.wait_for_selector("html[lang=zh-Hans]")
            await tab.goto(base + "/declarations")
            await screenshot(tab, f"declarations-list-zh-Hans-{size}")
            await tab.click("nav.languages a[lang=en]")
            # (the refused upload's 422 is the only failed request the browser reports)
            assert [p for p in watched.problems if "422" not in p] == [], watched.problems
            assert [f for f in watched.failed if "/login" not in f[1]
                    and f[0] != 422] == [], watched.failed
            await context.close()
