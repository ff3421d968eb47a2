"""The alerts' pages in the real gateway: the alerts page (inbox with figures, filters, unread
count in the navigation, mark read), the container view (storage meter, reefer chart with the
excursion marked) and the vessel view (ETA history with sources) — each as the signed-in
user's organisation may see it, in English and Chinese, and in real Chromium at an office and a
phone width, with screenshots."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.events.model import Reference, Visibility
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import Reading
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config
from tests.gateway.alerts.test_engine import BOX, IMO, NOW, REEFER, port_story
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, FORWARDER, TERMINAL, TRADER

PASSWORD = "correct horse battery staple"
USERS = {TRADER: "ops@sino.example", CARRIER: "ops@pacific.example",
         FORWARDER: "ops@competitor.example"}
#: A reefer's readings (ours): in tolerance, 100 minutes warm, back in tolerance.
TEMPERATURES = [-18.1, -17.9, -18.0, -15.2, -14.6, -14.1, -14.8, -15.5, -17.9, -18.2, -18.0]


async def started(path: Path) -> tuple[TestClient, Port]:
    """The alerts' story (late vessel, uncollected box on hold, a reefer excursion the carrier
    may read), evaluated at NOW; a user per organisation."""
    client = TestClient(TestServer(create_app(config(path))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None, what="first look")
    await port_story(port)
    port.engine.clock = lambda: NOW
    resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                            headers=port.auth[TERMINAL])
    assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/alerts/follows", headers=port.auth[TRADER],
                             json={"references": [{"kind": "container", "value": BOX}]})
    assert resp.status == 201, await resp.text()
    await port.engine.on_indexed(port.events)
    start = hk("2026-11-08 05:00")
    readings = [Reading("reefer", start + i * 1200, Reference("container", REEFER),
                        {"temperature": t, "setpoint": -18.0})
                for i, t in enumerate(TEMPERATURES)]
    await wait_until(lambda: port.store.progress("readings") is not None, what="reading poll")
    await telemetry.ingest(client.app, port.orgs[TERMINAL], readings,
                           Visibility("named", (CARRIER,)))
    await wait_until(lambda: [a.state for a in port.alerts_of(CARRIER)
                              if a.kind == "reefer-excursion"] == ["resolved"],
                     what="the excursion, resolved")
    for chain_org, email in USERS.items():
        client.app[ACCOUNTS].create_user(port.orgs[chain_org], email, PASSWORD, "member")
    return client, port


async def page(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


def visible_text(markup: str) -> str:
    """The page's text (tags dropped, whitespace folded) — what a reader sees."""
    body = markup.split("<body", 1)[-1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def listed(markup: str) -> str:
    """The text of the alerts page's list (not its filters)."""
    return visible_text(markup.split("<section id=alerts", 1)[1].split("</section>", 1)[0])


async def test_each_organisation_sees_its_own_alerts_meter_chart_and_etas(
        tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        # the trader: follows the box, was named on the carrier's ETAs and on the customs hold
        await login(client, USERS[TRADER], PASSWORD)
        inbox = listed(await page(client, "/alerts"))
        assert "Not picked up — storage charges running" in inbox
        assert "HK$200 accrued" in inbox and "HK$100 per day from now" in inbox
        assert "Last free day 6 Nov 2026" in inbox and "Pick-up blocked: customs hold" in inbox
        assert "Vessel delayed" in inbox and "ETA +30 h against the first ETA seen" in inbox
        assert "Customs hold" in inbox and "Reefer temperature excursion" not in inbox
        badge = re.search(r'<span class=count aria-label="(\d+) unread">', await page(
            client, "/alerts"))
        assert badge is not None and int(badge.group(1)) >= 3
        only = listed(await page(client, "/alerts?kind=vessel-delay&state=all"))
        assert "Vessel delayed" in only and "Not picked up" not in only

        box_page = await page(client, f"/containers/{BOX}")
        # the record can be shared from its view (the sharing page checks it is the reader's)
        assert f'href="/sharing?kind=container&amp;value={BOX}">Share Container {BOX}' in box_page
        box = visible_text(box_page)
        assert "Storage meter" in box and "HK$200 accrued" in box and "7 days in the yard" in box
        assert "Pick-up blocked: customs hold" in box
        assert "No reefer readings you may read." in box
        vessel = await page(client, f"/vessels/IMO{IMO}")
        rows = re.findall(r"<tr><td data-label=\"Port\">", vessel)
        assert len(rows) == 2 and "+30 h" in visible_text(vessel)
        assert "Pacific Ocean Line" in visible_text(vessel)

        # in Chinese: the page, its figures and the language cookie
        resp = await client.get("/alerts?lang=zh-Hant")
        chinese = await resp.text()
        assert '<html lang="zh-Hant">' in chinese and resp.cookies["pl_lang"].value == "zh-Hant"
        assert "未提櫃 — 正在收取倉租" in chinese and "已累計 HK$200" in chinese
        assert "最後免費日 2026年11月6日" in chinese
        remembered = await page(client, f"/containers/{BOX}")
        assert '<html lang="zh-Hant">' in remembered and "倉租計算" in remembered
        simplified = await page(client, f"/vessels/{IMO}?lang=zh-Hans")
        assert "预计到港时间记录" in simplified and '<html lang="zh-Hans">' in simplified

        # the carrier: the reefer's readings are shared with it; it may not read the hold
        await login(client, USERS[CARRIER], PASSWORD)
        reefer = await page(client, f"/containers/{REEFER}?lang=en")
        assert reefer.count("<rect class=chart-excursion") == 1
        assert "<title>Excursion 8 Nov 2026, 06:00 HKT" in reefer
        assert "Reefer temperature excursion" in visible_text(reefer)
        assert "Peak deviation +3.9 °C at -14.1 °C" in visible_text(reefer)
        carrier_box = visible_text(await page(client, f"/containers/{BOX}"))
        assert "HK$200 accrued" in carrier_box and "Pick-up blocked" not in carrier_box

        # the competitor: the terminal's yard events are readable by whoever holds the box's
        # number (as typing it into tracking), so the meter shows — without the customs hold it
        # may not read; nothing else of the others: no alert, no reading, no ETA
        await login(client, USERS[FORWARDER], PASSWORD)
        assert listed(await page(client, "/alerts?state=all")).strip().endswith(
            "No alerts match.")
        competitor_box = await page(client, f"/containers/{BOX}")
        assert "HK$200 accrued" in visible_text(competitor_box)
        assert "Pick-up blocked" not in competitor_box and "<article" not in competitor_box
        for path in (f"/containers/{REEFER}", f"/vessels/{IMO}"):
            seen = await page(client, path)
            assert "HK$" not in seen and "chart-excursion" not in seen and "<svg" not in seen
            assert "<article" not in seen and "eta-history" not in seen
    finally:
        await client.close()


async def test_pages_refuse_and_escape(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        resp = await client.get("/alerts", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] in ("/login?next=%2Falerts", "/login?next=/alerts")
        await login(client, USERS[TRADER], PASSWORD)
        bad = await page(client, "/containers/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404)
        assert "<script>alert" not in bad and "&lt;script&gt;" in bad
        assert "Content-Security-Policy" in (await client.get("/alerts")).headers
        # an unknown filter falls back to the defaults rather than failing
        assert "Alerts" in await page(client, "/alerts?state=everything&kind=x&before=abc")
    finally:
        await client.close()


async def test_in_chromium_at_office_and_phone_width(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    base = str(client.make_url("")).rstrip("/")
    try:
        async with chromium() as browser:
            for size, viewport in SIZES.items():
                context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                    timezone_id="Asia/Hong_Kong")
                watched = await open_page(context)
                tab = watched.page
                await tab.goto(base + "/login?next=/alerts")
                await tab.fill("#email", USERS[TRADER])
                await tab.fill("#password", PASSWORD)
                await tab.click("#login-form button")
                await tab.wait_for_url(base + "/alerts")
                count = int(await tab.text_content("nav .count") or "0")
                assert count >= 3
                await screenshot(tab, f"alerts-{size}")
                if size == "desktop":  # mark one read: the count drops by one
                    await tab.click("#alerts article button[data-post]")
                    await tab.wait_for_function(
                        f"() => Number(document.querySelector('nav .count')?.textContent || 0)"
                        f" === {count - 1}")
                await tab.click("nav.languages a[lang=zh-Hant]")
                await tab.wait_for_selector("html[lang=zh-Hant]")
                assert (await tab.text_content("h1")) == "警示"
                await screenshot(tab, f"alerts-zh-Hant-{size}")
                await tab.click("nav.languages a[lang=en]")
                await tab.goto(f"{base}/containers/{BOX}")
                assert "HK$200 accrued" in (await tab.text_content("#meter") or "")
                await screenshot(tab, f"container-{size}")
                await tab.goto(f"{base}/vessels/{IMO}")
                assert await tab.locator("#eta-history tbody tr").count() == 2
                await screenshot(tab, f"vessel-{size}")
                # the carrier's reefer chart
                await tab.goto(base + "/login?next=/containers/" + REEFER)
                await tab.fill("#email", USERS[CARRIER])
                await tab.fill("#password", PASSWORD)
                await tab.click("#login-form button")
                await tab.wait_for_url(f"{base}/containers/{REEFER}")
                assert await tab.locator("svg.chart rect.chart-excursion").count() == 1
                await screenshot(tab, f"container-reefer-{size}")
                assert watched.problems == [], watched.problems
                assert [f for f in watched.failed if "/login" not in f[1]] == []
                await context.close()
    finally:
        await client.close()
