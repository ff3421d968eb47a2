"""The shipment view rendered by the server, in the real gateway: a trader tracks a house B/L
and sees its vessel, the ETA of each source side by side, release and customs status, the box
(never the master's other box) and the timeline in words with the wrong gate-out struck
through; an air waybill's milestones and a declaration's statuses in words; a competitor sees
nothing of it (not-found with no suggestion of it); Chinese; and real Chromium at an office and
a phone width, with screenshots, where the language switch leaves no catalogue English."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient

from gateway.appkeys import ACCOUNTS, READ_MODEL, TRACKING
from gateway.ui.i18n import catalogue
from tests.gateway.web.story import (
    AWB,
    BOX,
    BOX2,
    COMPETITOR,
    DECLARATION,
    FORWARDER,
    HBL,
    IMO,
    PASSWORD,
    TRADER,
    USERS,
    VESSEL,
    started,
)
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot


async def page(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


def visible_text(markup: str) -> str:
    body = markup.split("<main", 1)[-1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace("&#x27;", "'")


def section(markup: str, name: str) -> str:
    found = re.search(rf"<section[^>]*id={name}[ >].*?</section>", markup, re.S)
    assert found is not None, name
    return found.group(0)


async def test_a_trader_tracks_a_house_bill_of_lading(tmp_path: Path) -> None:
    client, port, ids = await started(tmp_path / "gw")
    try:
        await login(client, USERS[TRADER], PASSWORD)
        markup = await page(client, f"/track?q={HBL.lower()}")
        text = visible_text(markup)
        assert f"House bill of lading {HBL}" in text and "Forwarder Harbour Freight" in text
        summary = visible_text(section(markup, "summary"))
        assert "Where it is now Gated out at Kwai Tsing Container Terminal (HKHKG)" in summary
        # the ETA of each source side by side, each with its own age
        assert re.search(r"ETA at Hong Kong Estimated 6 Nov 2026, 12:25 HKT from AIS-derived, "
                         r"recorded \d+ d \d+ h ago "
                         r"Estimated 6 Nov 2026, 14:00 HKT from Pacific Ocean "
                         r"Line, recorded \d+ d \d+ h ago Estimated 6 Nov 2026, 18:30 HKT from "
                         r"Kwai Tsing Container Terminal, recorded \d+ d \d+ h ago", summary)
        assert "Customs released 7 Nov 2026, 09:00 HKT" in summary
        assert f"{VESSEL} at 22.160, 114.450 (AIS, " in summary
        vessel = section(markup, "vessel")
        assert f"Vessel {VESSEL}" in visible_text(vessel)
        assert f'href="/vessels/{IMO}"' in vessel and "Port of call Hong Kong" in \
            visible_text(vessel)
        assert "<div class=map id=\"map\" data-map=" in vessel  # position, track, port of call
        assert "/static/vendor/leaflet/leaflet.js" in markup
        boxes = section(markup, "containers-box")
        assert BOX in boxes and "Gated out" in boxes and BOX2 not in markup  # house subset
        events = section(markup, "timeline")
        words = visible_text(events)
        assert f"Discharged from {VESSEL} at Kwai Tsing Container Terminal (HKHKG)" in words
        assert "Picked up by Swift Haulage, truck XX1234 at Hong Kong" in words
        assert "Customs released" in words and "Due to arrive at Hong Kong on" in words
        wrong = ids["wrong"].event_id
        assert re.search(rf'<li class=retracted data-event="{wrong}"><del>.*?Gated out', events)
        assert "Corrected by a later record" in words
        assert "Correction of an earlier record" in words
        assert "TERMINAL.DISC" not in markup and "(ACT)" not in markup

        # the same read as the API: its access-log entries reach the owners
        port.app[TRACKING].flush()
        logged = port.app[READ_MODEL].access_log(FORWARDER, before=0, limit=50)
        assert ids["hbl"].event_id in {entry.event_id for _, entry in logged}

        # air waybill and declaration in words
        air = await page(client, f"/track?q={AWB}")
        awb = visible_text(section(air, "air-waybill"))
        assert "Milestones" in awb and "Flights CX880" in awb
        assert "Air waybill 160-12345675" in visible_text(air)
        assert "BKD Booked 3 Nov 2026, 08:00 HKT" in awb and "ARR Arrived 4 Nov 2026" in awb
        assert "DLV Due to be delivered to the consignee" in awb
        declaration = await page(client, f"/track?q={DECLARATION}")
        decl = visible_text(section(declaration, "declaration"))
        assert "Held by customs" in decl and "Accepted by customs — Customs and Excise" in decl
        assert "Customs hold: document check" in visible_text(section(declaration, "timeline"))

        # in Chinese
        zh = await page(client, f"/track?q={HBL}&lang=zh-Hant")
        assert '<html lang="zh-Hant">' in zh and "時間線" in zh and "預計抵達香港" in zh
        assert f"從 {VESSEL} 卸船" in zh and "已被較後的記錄更正" in zh
        hans = await page(client, f"/track?q={AWB}&lang=zh-Hans")
        assert "空运单 160-12345675" in hans and "已订舱" in hans

        # a typo: not found, with the near match the trader has read
        typo = await page(client, "/track?q=HFF20240043&lang=en", 404)
        assert "Nothing you may see matches HFF20240043." in visible_text(typo)
        assert f'href="/track?q={HBL}"' in section(typo, "shipment")
    finally:
        await client.close()


async def test_a_competitor_sees_nothing_of_it(tmp_path: Path) -> None:
    client, port, ids = await started(tmp_path / "gw")
    try:
        await login(client, USERS[COMPETITOR], PASSWORD)
        seen = await page(client, "/track?q=HFF20240043", 404)
        assert "Nothing you may see matches" in seen
        assert HBL not in seen  # no suggestion of what it never read
        # the house B/L is readable by whoever holds its number — but the customs release and
        # the haulier's pick-up were named to the trader only
        markup = await page(client, f"/track?q={HBL}")
        assert "Customs released" not in markup and "Swift Haulage" not in markup
        assert "XX1234" not in markup and BOX2 not in markup
        # a declaration's filing is keyed on chain and shown to its readers only; the customs
        # event and its reason were named to the trader: the competitor gets the not-found
        decl = await page(client, f"/track?q={DECLARATION}", 404)
        assert "document check" not in decl and "Customs hold" not in decl
        assert f"Nothing you may see matches {DECLARATION}." in visible_text(decl)
        bad = await page(client, "/track?q=%3Cscript%3E", 400)
        assert "<script>" not in bad.split("<main", 1)[1]
        # an organisation not yet on chain reads nothing: the API's 403, said on the page
        accounts = client.app[ACCOUNTS]
        newcomer = accounts.create_organisation("Newcomer Ltd", ["forwarder"], {},
                                                status="active")
        accounts.create_user(newcomer.id, "ops@newcomer.example", PASSWORD, "member")
        await login(client, "ops@newcomer.example", PASSWORD)
        refused = await page(client, f"/track?q={HBL}", 403)
        assert "not a member of the chain" in visible_text(refused) and "Harbour" not in refused
        assert 'id=q name=q value="HFF20240042"' in refused  # the track box stays
    finally:
        await client.close()


def _english_words() -> set[str]:
    """Words of the catalogue's English that are not also in Chinese (brand, units, codes)."""
    english = " ".join(catalogue("en").values())
    chinese = " ".join(catalogue("zh-Hant").values())
    words = set(re.findall(r"[A-Za-z]{4,}", re.sub(r"\{[a-z_]+\}", " ", english)))
    return {w for w in words if w not in chinese}


async def test_in_chromium_at_office_and_phone_width(tmp_path: Path) -> None:
    client, port, ids = await started(tmp_path / "gw")
    base = str(client.make_url("")).rstrip("/")
    english = _english_words()
    data = {VESSEL, "Kwai", "Tsing", "Container", "Terminal", "Harbour", "Freight", "Pacific",
            "Ocean", "Line", "Swift", "Haulage", "Customs", "Excise", "PortLedger", "English",
            "Sino", "Trading", "Company", "Cathay", "Cargo"}
    try:
        async with chromium() as browser:
            for size, viewport in SIZES.items():
                context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                    timezone_id="Europe/London")
                watched = await open_page(context)
                tab = watched.page
                await tab.goto(base + "/login?next=/track?q=" + HBL)
                await tab.fill("#email", USERS[TRADER])
                await tab.fill("#password", PASSWORD)
                await tab.click("#login-form button")
                await tab.wait_for_selector("#summary")
                # my shipments: watch the house B/L from the landing page (the script's form)
                await tab.goto(base + "/")
                if not await tab.locator("#watchlist").count():
                    await tab.fill("#watch-ref", HBL.lower())
                    await tab.click("#watch-form button")
                    await tab.wait_for_selector("#watchlist")
                row = await tab.text_content("#watchlist tbody tr") or ""
                assert HBL in row and "Gated out at Kwai Tsing" in row
                await screenshot(tab, f"track-dashboard-{size}")
                await tab.click(f"#watchlist a[href='/track?q={HBL}']")
                await tab.wait_for_selector("#summary")
                summary = await tab.text_content("#summary") or ""
                assert "6 Nov 2026, 14:00 HKT" in summary and "Pacific Ocean Line" in summary
                assert VESSEL in (await tab.text_content("#vessel-h") or "")
                # the viewer's own zone beside the place's time
                assert "Europe/London" in (await tab.text_content("#timeline") or "")
                await tab.wait_for_selector("#map .leaflet-container, #map.leaflet-container")
                await screenshot(tab, f"track-hbl-{size}")
                await tab.click("nav.languages a[lang=zh-Hant]")
                await tab.wait_for_selector("html[lang=zh-Hant]")
                shown = await tab.evaluate("() => document.body.innerText")
                left = sorted({w for w in re.findall(r"[A-Za-z]{4,}", shown)
                               if w in english and w not in data and w not in VESSEL})
                assert left == [], left
                assert "時間線" in shown and "預計抵達香港" in shown
                await screenshot(tab, f"track-hbl-zh-Hant-{size}")
                await tab.goto(f"{base}/track?q={AWB}&lang=en")
                await tab.wait_for_selector("#air-waybill")
                await screenshot(tab, f"track-awb-{size}")
                await tab.goto(f"{base}/track?q={DECLARATION}")
                await screenshot(tab, f"track-declaration-{size}")
                assert watched.problems == [], watched.problems
                await tab.goto(f"{base}/track?q=HFF20240043")  # a 404 page, by design
                assert HBL in (await tab.text_content("#suggestions") or "")
                await screenshot(tab, f"track-notfound-{size}")
                assert [f for f in watched.failed if "/login" not in f[1]
                        and "HFF20240043" not in f[1]] == []
                await context.close()
    finally:
        await client.close()
