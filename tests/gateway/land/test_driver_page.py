"""The driver's page and the live truck: the positions stream shows each reader what the
positions API would (a competitor gets 404 and not a byte of stream, another driver 403), with
an ETA to the delivery place; streams per user are bounded; heartbeats keep it alive."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.appkeys import ACCOUNTS
from gateway.isotime import iso_time
from gateway.land import driver_pages
from gateway.land.live import LIVE, truck_eta
from gateway.land.model import Job, Place
from tests.gateway.land.support import (
    BOX1,
    Land,
    add_driver,
    driver_phone,
    gated_out,
    gateway_org,
    job_body,
    ok,
    refused,
    started,
)
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.readside import FORWARDER, HAULIER, TRADER

#: Longest wait for one server-sent event (seconds).
WAIT = 10.0


async def _next_event(resp: Any) -> tuple[str, dict[str, Any] | None]:
    """The next event of a stream (name and data), or ``("comment", None)`` for a heartbeat."""
    while True:
        block = (await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT)).decode()
        lines = [line for line in block.splitlines() if line]
        if lines and lines[0].startswith("retry:"):
            continue
        if lines and lines[0].startswith(":"):
            return "comment", None
        fields = dict(line.split(": ", 1) for line in lines)
        return fields["event"], json.loads(fields["data"])


async def _job(land: Land, **changes: Any) -> str:
    body = await ok(await land.client.post("/v1/land/jobs", json=job_body(land, **changes),
                                           headers=land.auth(HAULIER)), 201)
    return str(body["id"])


def _fast(land: Land) -> None:
    live = land.client.app[LIVE]
    live.poll, live.heartbeat, live.recheck = 0.05, 0.2, 0.2


async def test_the_stream_shows_entitled_readers_the_truck_live(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    try:
        job_id = await _job(land)
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 120), "lat": 22.30, "lon": 114.17, "speed": 10}]},
            headers=land.auth(HAULIER)), 202)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        # the trader may read the boxes: it sees the truck, and then its next position live
        resp = await client.get(url, headers=land.auth(TRADER))
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name, data = await _next_event(resp)
        assert name == "position" and data is not None
        assert (data["lat"], data["lon"], data["speed"]) == (22.30, 114.17, 10)
        assert data["time"] == iso_time(land.now - 120)
        assert "driver" not in data and "job" in data
        eta = data["eta"]
        assert eta["method"] == "geodesic" and eta["to"] == "HKHKG"
        assert 6 < eta["distanceKm"] < 8 and eta["speedKmh"] == 36.0
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.32, "lon": 114.15, "speed": 12}]},
            headers=land.auth(HAULIER)), 202)
        seen = []
        for _ in range(20):
            name, data = await _next_event(resp)
            seen.append(name)
            if name == "position":
                break
        assert name == "position" and data is not None, seen
        assert (data["lat"], data["time"]) == (22.32, iso_time(land.now - 60))
        resp.close()
        # a heartbeat comes while nothing moves
        resp = await client.get(url, headers=land.auth(HAULIER))
        assert (await _next_event(resp))[0] == "position"
        assert (await _next_event(resp))[0] == "comment"
        resp.close()
    finally:
        await client.close()


async def test_the_stream_refuses_before_streaming(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    phones = []
    try:
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        _, phone2 = await driver_phone(land, "Wong Siu Ming", "+852 6123 4567")
        phones += [phone1, phone2]
        job_id = await _job(land, driver=first)
        await ok(await phone1.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.3, "lon": 114.1}]}), 202)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        # a competitor: 404, a JSON error and no stream
        resp = await client.get(url, headers=land.auth(FORWARDER))
        assert not resp.headers["Content-Type"].startswith("text/event-stream")
        await refused(resp, 404, "unknown-job")
        # another driver of the same haulier: 403
        await refused(await phone2.get(url), 403, "not-your-job")
        # nobody: 401
        assert (await client.get(url)).status == 401
        # the job's driver may follow their own truck
        resp = await phone1.get(url)
        assert resp.status == 200
        name, data = await _next_event(resp)
        assert name == "position" and data is not None and data["lat"] == 22.3
        assert data["eta"] is None  # no speed: no ETA
        resp.close()
        # a malformed id
        await refused(await client.get("/v1/land/jobs/LJ12/positions/stream",
                                       headers=land.auth(TRADER)), 400, "bad-job-id")
    finally:
        for phone in phones:
            await phone.close()
        await client.close()


async def test_streams_per_user_are_bounded_and_end_with_the_job(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    client.app[LIVE].per_user = 2
    try:
        job_id = await _job(land)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        held = [await client.get(url, headers=land.auth(TRADER)) for _ in range(2)]
        assert [r.status for r in held] == [200, 200]
        await refused(await client.get(url, headers=land.auth(TRADER)), 429,
                      "too-many-streams")
        # another organisation's reader is not counted against the trader's
        other = await client.get(url, headers=land.auth(HAULIER))
        assert other.status == 200
        # the haulier cancels: the stream says so and ends
        await ok(await client.post(f"/v1/land/jobs/{job_id}/cancel", json={},
                                   headers=land.auth(HAULIER)))
        for _ in range(20):
            name, data = await _next_event(other)
            if name == "state":
                break
        assert name == "state" and data == {"job": job_id, "state": "cancelled"}
        assert await asyncio.wait_for(other.content.read(), WAIT) == b""
        for resp in held:
            resp.close()
        # closed streams are given back
        for _ in range(100):
            if not client.app[LIVE].open:
                break
            await asyncio.sleep(0.05)
        assert not client.app[LIVE].open
    finally:
        await client.close()


def test_eta_is_geodesic_distance_over_speed() -> None:
    job = Job(id="LJ000000000001", org_id=1, haulier=1, containers=("CSQU3054383",),
              pickup=Place(1, "HKHKG"), delivery=Place(2, "HKHKG"), window_from=0,
              window_to=10, vehicle="AB1234", ccrn=None, driver_id=None)
    at = 1_800_000_000
    moving = truck_eta(job, {"lat": 22.34, "lon": 114.22, "speed": 10.0}, at)
    assert moving is not None
    # 0.1° of longitude at 22.34° N is about 10.3 km: about 1030 s at 10 m/s
    assert 10.0 < moving["distanceKm"] < 10.6
    assert 1000 < moving["minutes"] * 60 < 1080
    assert truck_eta(job, {"lat": 22.34, "lon": 114.22, "speed": 0.1}, at) is None
    arrived = truck_eta(job, {"lat": 22.34, "lon": 114.12, "speed": 0}, at)
    assert arrived is not None and arrived["arrived"] is True
    unknown = Job(**{**job.__dict__, "delivery": Place(2, "XXZZZ")})
    assert truck_eta(unknown, {"lat": 22.34, "lon": 114.22, "speed": 10.0}, at) is None


# -- the pages, server-side ------------------------------------------------------------------
TRADER_EMAIL = "trader@example.com"
HAULIER_EMAIL = "dispatch@example.com"
PASSWORD = "correct horse battery staple"


def _users(land: Land) -> None:
    accounts = land.client.app[ACCOUNTS]
    accounts.create_user(gateway_org(land, TRADER), TRADER_EMAIL, PASSWORD, "member")
    accounts.create_user(gateway_org(land, HAULIER), HAULIER_EMAIL, PASSWORD, "member")
    accounts.create_user(gateway_org(land, FORWARDER), "rival@example.com", PASSWORD, "member")


async def _html(resp: Any, status: int = 200) -> str:
    text = await resp.text()
    assert resp.status == status, text[:500]
    return str(text)


async def test_driver_pages_show_a_driver_their_own_job_only(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    phones = []
    try:
        # signed out: the drivers' sign-in
        signed_out = await _html(await client.get("/driver"))
        assert "id=driver-sign-in" in signed_out and 'autocomplete=one-time-code' in signed_out
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        second, phone2 = await driver_phone(land, "Wong Siu Ming", "+852 6123 4567")
        phones += [phone1, phone2]
        job_id = await _job(land, driver=first)
        other_id = await _job(land, driver=second, vehicle="XY 9876",
                              ccrn="RI261207000124")
        home = await _html(await phone1.get("/driver"))
        assert f'href="/driver/jobs/{job_id}"' in home and other_id not in home
        assert "AB1234" in home and "XY9876" not in home
        page = await _html(await phone1.get(f"/driver/jobs/{job_id}"))
        assert "<svg role=img" in page and "class=qr-code" in page and "<path" in page
        assert "Hong Kong Container Terminal" in page and "HIT4" in page
        assert "Tsing Yi Warehouse" in page and "RI261207000123" in page
        assert f'data-job="{job_id}"' in page and f'data-driver="{first}"' in page
        assert "Start sharing" in page and "style=" not in page and "<script>" not in page
        # the QR is the job's token: what the API gives the driver
        token = (await ok(await phone1.get(f"/v1/land/jobs/{job_id}/token")))["token"]
        from gateway.land.api import qr_image
        svg = qr_image(token, "svg").decode()
        assert svg.split("<path", 1)[1] in page
        # a driver's start is their jobs; their navigation has no tracking, no access log
        start = await phone1.get("/", allow_redirects=False)
        assert start.status == 302 and start.headers["Location"] == "/driver"
        assert 'href="/access-log"' not in home and ">My shipments<" not in home
        # another driver of the haulier: refused with the reason, nothing of the job shown
        refused_page = await _html(await phone2.get(f"/driver/jobs/{job_id}"), 403)
        assert "assigned to another driver" in refused_page and "AB1234" not in refused_page
        assert "<svg" not in refused_page
        # a job that does not exist
        assert "LJ000000000000" in await _html(await phone1.get("/driver/jobs/LJ000000000000"),
                                               404)
        # in Chinese
        zh = await _html(await phone1.get(f"/driver/jobs/{job_id}?lang=zh-Hant"))
        assert "開始分享" in zh and "提櫃二維碼" in zh
        # a signed-in member of an organisation is told the page is for drivers
        _users(land)
        await login(client, HAULIER_EMAIL, PASSWORD)
        assert "for drivers" in await _html(await client.get("/driver"), 403)
    finally:
        for phone in phones:
            await phone.close()
        await client.close()


async def test_the_job_page_shows_each_reader_what_it_may_see(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    phones = []
    try:
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        phones.append(phone1)
        job_id = await _job(land, driver=first)
        await ok(await phone1.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 30), "lat": 22.33, "lon": 114.16, "speed": 11}]}), 202)
        _users(land)
        await login(client, HAULIER_EMAIL, PASSWORD)
        mine = await _html(await client.get(f"/land/jobs/{job_id}"))
        assert "Chan Tai Man" in mine and "data-live=" in mine
        assert f"/v1/land/jobs/{job_id}/positions/stream" in mine
        assert "40 km/h" in mine and "Arrives about" in mine
        await login(client, TRADER_EMAIL, PASSWORD)
        theirs = await _html(await client.get(f"/land/jobs/{job_id}?lang=zh-Hans"))
        assert "Chan Tai Man" not in theirs and "+852" not in theirs  # no driver for readers
        assert "data-live=" in theirs and "货车" in theirs
        await login(client, "rival@example.com", PASSWORD)
        rival = await _html(await client.get(f"/land/jobs/{job_id}"), 404)
        assert "data-live" not in rival and "AB1234" not in rival and "22.33" not in rival
        # a driver asking for the readers' page goes to their own
        resp = await phone1.get(f"/land/jobs/{job_id}", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == f"/driver/jobs/{job_id}"
    finally:
        for phone in phones:
            await phone.close()
        await client.close()


# -- in Chromium at phone size ---------------------------------------------------------------
async def _until(check: Any, what: str, seconds: float = 20.0) -> Any:
    """Poll ``check()`` (async) until it gives something truthy; fail after ``seconds``."""
    for _ in range(int(seconds / 0.2)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_in_chromium_a_driver_shares_offline_and_the_trader_sees_it_live(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(driver_pages, "BATCH_SECONDS", 1)
    land = await started(tmp_path / "gw")
    client = land.client
    client.app[LIVE].poll = 0.2
    base = str(client.make_url("")).rstrip("/")
    phone = SIZES["phone"]
    try:
        first, code = await add_driver(land, "Chan Tai Man", "+852 9123 4567")
        second, _ = await add_driver(land, "Wong Siu Ming", "+852 6123 4567")
        job_id = await _job(land, driver=first)
        other_id = await _job(land, driver=second, vehicle="XY 9876",
                              ccrn="RI261207000124")
        _users(land)
        async with chromium() as browser:
            cab = await browser.new_context(viewport=phone, locale="en-GB",
                                            geolocation={"latitude": 22.3400,
                                                         "longitude": 114.1100})
            await cab.grant_permissions(["geolocation"], origin=base)
            driver = await open_page(cab)
            tab = driver.page
            await tab.goto(base + "/driver")
            await tab.fill("#driver-phone", "9123 4567")
            await tab.fill("#driver-code", "00000000")
            await tab.click("#driver-sign-in button")
            await tab.wait_for_selector(".message:not(:empty)")
            assert "ask your office" in (await tab.text_content(".message") or "")
            await screenshot(tab, "driver-sign-in-phone")
            await tab.fill("#driver-code", code)
            await tab.click("#driver-sign-in button")
            await tab.wait_for_selector(".driver-home")
            await screenshot(tab, "driver-jobs-phone")
            await tab.click(f'a[href="/driver/jobs/{job_id}"]')
            await tab.wait_for_selector(".qr-code")
            await screenshot(tab, "driver-job-phone")
            await tab.click("#share-start")
            for lat in (22.3410, 22.3420):
                await cab.set_geolocation({"latitude": lat, "longitude": 114.1200,
                                           "accuracy": 10})
                await asyncio.sleep(1.1)

            async def sent() -> bool:
                return int(await tab.get_attribute(".driver-job", "data-sent") or 0) >= 1

            await _until(sent, "the first batch")
            status = await tab.text_content("#share-status") or ""
            assert "Positions sent" in status, status
            await screenshot(tab, "driver-sharing-phone")

            # a trader's map shows the truck and follows it without reloading
            office = await browser.new_context(viewport=phone, locale="en-GB")
            trader = await open_page(office)
            desk = trader.page
            await desk.goto(base + f"/login?next=/land/jobs/{job_id}")
            await desk.fill("#login-form [name=email]", TRADER_EMAIL)
            await desk.fill("#login-form [name=password]", PASSWORD)
            await desk.click("#login-form button")
            await desk.wait_for_url(base + f"/land/jobs/{job_id}")
            await desk.wait_for_selector(".map[data-live] .map-truck")
            await desk.evaluate("() => { window.stayed = true; }")
            before = await desk.get_attribute(".map[data-live]", "data-truck")

            # offline: positions wait on the phone with their times
            await cab.set_offline(True)
            offline_points = [(22.3500, 114.1300), (22.3600, 114.1400)]
            for lat, lon in offline_points:
                await cab.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 10})
                await asyncio.sleep(1.1)

            async def queued() -> bool:
                return int(await tab.get_attribute(".driver-job", "data-queued") or 0) >= 2

            await _until(queued, "two queued positions")
            kept = await tab.evaluate(
                f"() => JSON.parse(localStorage.getItem("
                f"'portledger-driver-queue-{first}-{job_id}'))")
            times = [p["time"] for p in kept]
            assert "No connection" in (await tab.text_content("#share-status") or "")
            await screenshot(tab, "driver-offline-phone")
            # the job page opens from the phone's copy without a connection
            answer = await tab.reload()
            assert answer is not None and answer.from_service_worker
            await tab.wait_for_selector(".offline-note:not([hidden])")
            assert await tab.is_visible(".qr-code")
            await cab.set_offline(False)
            await tab.reload()
            await tab.wait_for_selector(".driver-job")

            async def drained() -> bool:
                queued_now: str | None = await tab.get_attribute(".driver-job", "data-queued")
                return queued_now == "0"

            await _until(drained, "the queue sent")
            stored = await ok(await client.get(f"/v1/land/jobs/{job_id}/positions",
                                               headers=land.auth(HAULIER)))
            stored_times = [p["time"] for p in stored["positions"]]
            for when in times:
                assert iso_time(int(datetime.fromisoformat(when.replace("Z", "+00:00"))
                                    .timestamp())) in stored_times, (when, stored_times)

            async def moved() -> str | None:
                where = await desk.get_attribute(".map[data-live]", "data-truck")
                return where if where != before and where else None

            where = await _until(moved, "the truck moving on the trader's map")
            assert where.startswith("22.3") and await desk.evaluate("() => window.stayed")
            assert "Last position" in (await desk.text_content("#truck-now") or "")
            await screenshot(desk, "driver-trader-map-phone")

            # refusal: the driver opens another driver's job
            await tab.goto(base + f"/driver/jobs/{other_id}")
            assert "assigned to another driver" in (await tab.text_content("main") or "")
            await screenshot(tab, "driver-refused-phone")
            # sign-out deletes the phone's copies and queues
            await tab.goto(base + "/driver")
            await tab.click("#signout")
            await tab.wait_for_selector("#driver-sign-in")
            left = await tab.evaluate(
                "async () => (await caches.keys()).filter((n) => n.startsWith('portledger-driver-'))")
            assert left == []
            # the only failures: the wrong code (401), the refused job (403), the offline minutes
            assert [p for p in driver.problems + trader.problems
                    if not p.startswith("Failed to load resource")] == []
            assert sorted({status for status, _ in driver.failed}) == [401, 403], driver.failed
            assert trader.failed == []
            await office.close()
            await cab.close()
    finally:
        await client.close()


async def test_the_container_view_follows_the_truck_of_its_land_job(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        job_id = await _job(land)
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 30), "lat": 22.331, "lon": 114.161}]},
            headers=land.auth(HAULIER)), 202)
        # the terminal's gate-out (its public step names no job: land.db knows which it was)
        await gated_out(land, job_id)
        _users(land)
        await login(client, TRADER_EMAIL, PASSWORD)
        view = await _html(await client.get(f"/containers/{BOX1}"))
        assert f'data-live="/v1/land/jobs/{job_id}/positions/stream"' in view
        assert "22.331" in view and "AB1234" in view
        # the job cancelled: the box's map still shows the last position, not followed
        await ok(await client.post(f"/v1/land/jobs/{job_id}/cancel", json={},
                                   headers=land.auth(HAULIER)))
        view = await _html(await client.get(f"/containers/{BOX1}"))
        assert "data-live" not in view and "22.331" in view
        # a holder of the box number only (a competitor) sees the gate-out, not the truck
        competitor = "ops@competitor.example"
        land.client.app[ACCOUNTS].create_user(gateway_org(land, FORWARDER), competitor,
                                              PASSWORD, "member")
        await login(client, competitor, PASSWORD)
        view = await _html(await client.get(f"/containers/{BOX1}"))
        assert "22.331" not in view and job_id not in view and "AB1234" not in view
    finally:
        await client.close()


async def test_in_chromium_at_office_width(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    base = str(client.make_url("")).rstrip("/")
    try:
        first, code = await add_driver(land, "Chan Tai Man", "+852 9123 4567")
        job_id = await _job(land, driver=first)
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 30), "lat": 22.331, "lon": 114.161, "speed": 9}]},
            headers=land.auth(HAULIER)), 202)
        _users(land)
        async with chromium() as browser:
            context = await browser.new_context(viewport=SIZES["desktop"], locale="zh-HK")
            watched = await open_page(context)
            tab = watched.page
            await tab.goto(base + "/driver?lang=zh-Hant")
            await tab.fill("#driver-phone", "+852 9123 4567")
            await tab.fill("#driver-code", code)
            await screenshot(tab, "driver-sign-in-desktop")
            await tab.click("#driver-sign-in button")
            await tab.wait_for_selector(".driver-home")
            await tab.goto(base + f"/driver/jobs/{job_id}")
            await tab.wait_for_selector(".qr-code")
            assert "開始分享" in (await tab.text_content("#share-start") or "")
            await screenshot(tab, "driver-job-desktop")
            office = await browser.new_context(viewport=SIZES["desktop"], locale="en-GB")
            desk = (await open_page(office)).page
            await desk.goto(base + f"/login?next=/land/jobs/{job_id}")
            await desk.fill("#login-form [name=email]", HAULIER_EMAIL)
            await desk.fill("#login-form [name=password]", PASSWORD)
            await desk.click("#login-form button")
            await desk.wait_for_url(base + f"/land/jobs/{job_id}")
            await desk.wait_for_selector(".map[data-live] .map-truck")
            assert "Arrives about" in (await desk.text_content("#truck-now") or "")
            await screenshot(desk, "driver-land-job-desktop")
            assert watched.problems == []
            await office.close()
            await context.close()
    finally:
        await client.close()
