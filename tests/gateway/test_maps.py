"""The map: gateway/ui/maps.py (layers as escaped data, the words that describe them), the vessel
and container views with their maps in the real gateway (what each organisation may see, in
English and Chinese), the coastline file's caching, and real Chromium at an office and a phone
width drawing Natural Earth land, the track and the markers with no request leaving loopback."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway.events.model import Reference, Visibility
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import Reading
from gateway.ui import maps
from gateway.ui.i18n import Translator
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import Port, event
from tests.gateway.alerts.test_engine import BOX, IMO
from tests.gateway.alerts.test_pages import PASSWORD, USERS, started
from tests.support import telemetry as tt
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.readside import CARRIER, FORWARDER, TERMINAL, TRADER

EN, HANT, HANS = Translator("en"), Translator("zh-Hant"), Translator("zh-Hans")
#: A box loaded at Yantian on the vessel, now at sea (only the trader is named on its events).
AT_SEA = "PCOU2000031"
#: A box picked up from the terminal on the trader's truck (truck positions: the trader's own).
ON_TRUCK = "PCOU2000047"
PLATE = "XX1234"
#: The vessel's AIS track (ours): from the east towards Hong Kong, oldest first.
TRACK = [(21.90, 116.05), (22.00, 115.55), (22.10, 115.05), (22.18, 114.62)]
VESSEL_NAME = "PACIFIC HARMONY"
#: The page tests share one gateway (its story takes seconds to set up on a busy machine).
shared_loop = pytest.mark.asyncio(loop_scope="module")


def data_of(markup: str) -> dict[str, Any]:
    """The data-map JSON of the (first) map in ``markup``."""
    found = re.search(r'<div class=map id="[^"]+" data-map="([^"]*)"', markup)
    assert found is not None, markup[:300]
    loaded: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return loaded


def text_of(markup: str) -> str:
    found = re.search(r"<p class=map-text id=\"[^\"]+\">([^<]*)</p>", markup)
    assert found is not None
    return html.unescape(found.group(1))


# -- maps.py ------------------------------------------------------------------------------------
def test_names_are_escaped_in_the_data_and_the_text() -> None:
    evil = "\"><script>alert('x')</script>&"
    markup = maps.map_html(EN, title=evil,
                           vessel=maps.Vessel(22.2, 114.6, name=evil, time="2026-11-08T02:00:00Z"),
                           places=[maps.Place("terminal", evil, 22.34, 114.12, code="HKHKG")])
    assert "<script>" not in markup and "'x'" not in markup
    assert markup.count("<") == markup.count(">") == 4  # <div>, <p>, </p>, </div>: no other tag
    data = data_of(markup)
    assert data["label"] == evil and data["layers"]["vessel"]["name"] == evil
    assert data["layers"]["places"][0]["name"] == evil
    assert data["layers"]["places"][0]["label"] == f"Terminal {evil} (HKHKG)"
    assert text_of(markup).startswith(f"{evil} at 22.200° N, 114.600° E")


def test_layers_and_their_words() -> None:
    vessel = maps.Vessel(22.18, 114.62, name=VESSEL_NAME, imo=IMO, time="2026-11-08T02:00:00Z",
                         speed=16.5, course=285.0, status="under way using engine",
                         track=tuple(TRACK))
    port = maps.Place("port", "Hong Kong (Kwai Tsing)", 22.34, 114.12, code="HKHKG")
    truck = maps.Truck("XX1234", 22.36, 114.11, time=1_794_000_000, speed=42.0, heading=90.0)
    layers = maps.layers(EN, vessel=vessel, port=port, trucks=[truck])
    assert layers["vessel"]["track"] == [list(p) for p in TRACK]
    assert layers["vessel"]["course"] == 285.0 and layers["vessel"]["time"] == \
        "2026-11-08T02:00:00Z"
    assert layers["port"] == {"lat": 22.34, "lon": 114.12, "name": "Hong Kong (Kwai Tsing)",
                              "label": "Port of call: Hong Kong (Kwai Tsing) (HKHKG)"}
    assert layers["trucks"][0]["name"] == "XX1234" and "42 km/h" in layers["trucks"][0]["label"]
    words = maps.describe(EN, vessel=vessel, port=port, trucks=[truck])
    assert words.startswith(
        "PACIFIC HARMONY at 22.180° N, 114.620° E (8 Nov 2026, 10:00 HKT, AIS): 16.5 kn, "
        "course 285°, under way using engine. Its track: the last 4 positions. "
        "Port of call: Hong Kong (Kwai Tsing) (HKHKG). Truck XX1234 at")
    chinese = maps.describe(HANT, vessel=vessel, port=port)
    assert chinese.startswith("PACIFIC HARMONY 位於 北緯 22.180°，東經 114.620°（2026年11月8日")
    assert "16.5 節，航向 285°，使用引擎航行中。航跡：最近 4 個位置。掛靠港：" in chinese
    assert "使用引擎航行中" in maps.describe(HANS, vessel=vessel)
    # west and south; an unknown status is shown as sent
    far = maps.Vessel(-33.9, -18.4, imo="9000001", status="reserved (HSC)")
    assert maps.vessel_label(EN, far) == (
        "IMO 9000001 at 33.900° S, 18.400° W (—, AIS): reserved (HSC)")


def test_bad_layers_are_refused_and_an_empty_map_says_so() -> None:
    with pytest.raises(maps.MapError, match="no position"):
        maps.Vessel(91.0, 0.0)
    with pytest.raises(maps.MapError, match="no position"):
        maps.Truck("XX1", float("nan"), 114.0)
    with pytest.raises(maps.MapError, match="a place is one of"):
        maps.Place("castle", "x", 22.0, 114.0)
    assert maps.map_html(EN, title="Map") == \
        '<p class="map-none muted">No position to show on a map.</p>'
    assert "沒有可在地圖上顯示的位置" in maps.map_html(HANT, title="地圖")


def test_a_vessel_from_a_shipment_view() -> None:
    view = {"name": VESSEL_NAME, "imo": IMO, "portOfCall": "HKHKG",
            "ais": {"lat": 22.18, "lon": 114.62, "sog": 16.5, "cog": 285.0, "heading": 284,
                    "status": "moored", "time": "2026-11-08T02:00:00Z", "source": "AIS"},
            "track": [[21.9, 116.05, "t"], [None, 1, "t"], [22.18, 114.62, "t"]]}
    vessel = maps.Vessel.from_view(view)
    assert vessel is not None
    assert (vessel.lat, vessel.lon, vessel.speed, vessel.course, vessel.status) == (
        22.18, 114.62, 16.5, 285.0, "moored")
    assert vessel.track == ((21.9, 116.05), (22.18, 114.62))  # the unusable point left out
    old = maps.Vessel.from_view({"imo": IMO, "latestPosition": {"lat": 22.3, "lon": 114.1,
                                                                "time": "x", "source": "Line"}})
    assert old is not None and old.source == "Line" and old.track == ()
    assert maps.Vessel.from_view({"imo": IMO}) is None
    assert maps.Vessel.from_view({"ais": {"lat": "22", "lon": 114}}) is None
    assert maps.Vessel.from_view(None) is None


# -- the pages ----------------------------------------------------------------------------------
async def mapped(path: Path) -> tuple[TestClient, Port]:
    """The alerts' story (the vessel's ETAs at HKHKG for the trader; BOX in the yard) with the
    vessel's AIS track, and AT_SEA loaded on it at Yantian (events named to the trader only)."""
    client, port = await started(path)
    details = {"vessel": {"name": VESSEL_NAME, "imo": IMO}}
    port.record(TERMINAL, event("TERMINAL.LOAD", "container", AT_SEA, hk("2026-11-07 20:00"),
                                location="CNYTN", related=[("vessel", IMO)], details=details),
                block_time=hk("2026-11-07 20:05"), readers=(TRADER,))
    port.record(CARRIER, event("TRANSPORT.ARRI", "container", AT_SEA, hk("2026-11-08 16:00"),
                               classifier="EST", location="HKHKG", related=[("vessel", IMO)],
                               details=details),
                block_time=hk("2026-11-07 21:00"), readers=(TRADER,))
    port.record(TERMINAL, event("TERMINAL.DISC", "container", ON_TRUCK, hk("2026-11-07 08:00")),
                block_time=hk("2026-11-07 08:05"), readers=(TRADER, CARRIER))
    port.record(CARRIER, event("LAND.PICK_UP", "container", ON_TRUCK, hk("2026-11-08 09:00"),
                               details={"truck": PLATE}),
                block_time=hk("2026-11-08 09:01"), readers=(TRADER,))
    await telemetry.ingest(client.app, port.orgs[TRADER],
                           tt.truck_readings(PLATE, hk("2026-11-08 09:05"), 3), Visibility())
    start = hk("2026-11-08 07:00")
    positions = [Reading("ais-position", start + i * 3600, Reference("vessel", IMO), {
        "lat": lat, "lon": lon, "sog": 16.5, "cog": 285.0, "heading": 284, "mmsi": 477000123,
        "status_name": "under way using engine"}) for i, (lat, lon) in enumerate(TRACK)]
    static = Reading("ais-static", start, Reference("vessel", IMO), {
        "mmsi": 477000123, "imo": IMO, "name": VESSEL_NAME, "callsign": "VRAB1"})
    await telemetry.ingest(client.app, port.orgs[TERMINAL], [static, *positions], Visibility())
    return client, port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client, _ = await mapped(tmp_path_factory.mktemp("maps") / "gw")
    try:
        yield client
    finally:
        await client.close()


async def page(client: TestClient, path: str) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == 200, (path, resp.status, text[:500])
    return text


@shared_loop
async def test_the_views_map_what_each_reader_may_see(gateway: TestClient) -> None:
    client = gateway
    await login(client, USERS[TRADER], PASSWORD)
    vessel_page = await page(client, f"/vessels/IMO{IMO}")
    head = vessel_page.split("</head>", 1)[0]
    for asset in maps.ASSETS:
        assert asset in head
    data = data_of(vessel_page)
    assert data["land"] == maps.LAND and data["label"] == f"Map: where Vessel IMO {IMO} is"
    shown = data["layers"]
    assert (shown["vessel"]["lat"], shown["vessel"]["lon"]) == TRACK[-1]
    assert shown["vessel"]["track"] == [list(p) for p in TRACK]
    assert shown["port"]["label"] == "Port of call: Hong Kong (Kwai Tsing) (HKHKG)"
    words = text_of(vessel_page)
    assert words.startswith("PACIFIC HARMONY at 22.180° N, 114.620° E (8 Nov 2026, 10:00 HKT")
    assert "16.5 kn, course 285°, under way using engine" in words
    assert "Port of call: Hong Kong (Kwai Tsing) (HKHKG)" in words

    in_yard = await page(client, f"/containers/{BOX}")
    place = data_of(in_yard)["layers"]["places"][0]
    assert place["kind"] == "terminal" and (place["lat"], place["lon"]) == (22.34, 114.12)
    assert text_of(in_yard) == ("Terminal Hong Kong Container Terminal (HKHKG), "
                                "since 2 Nov 2026, 08:00 HKT.")
    at_sea = data_of(await page(client, f"/containers/{AT_SEA}"))["layers"]
    assert (at_sea["vessel"]["lat"], at_sea["vessel"]["lon"]) == TRACK[-1]
    assert at_sea["vessel"]["name"] == VESSEL_NAME and at_sea["port"]["label"].endswith(
        "(HKHKG)")
    chinese = await page(client, f"/containers/{BOX}?lang=zh-Hant")
    assert text_of(chinese) == "碼頭 Hong Kong Container Terminal (HKHKG)，自 2026年11月2日 " \
                               "08:00 HKT 起。"
    assert ">地圖</h2>" in chinese and "地圖：貨櫃" in html.unescape(chinese)
    simplified = await page(client, f"/vessels/{IMO}?lang=zh-Hans")
    assert "挂靠港：Hong Kong (Kwai Tsing) (HKHKG)" in text_of(simplified)
    on_truck = await page(client, f"/containers/{ON_TRUCK}?lang=en")
    truck = data_of(on_truck)["layers"]["trucks"][0]
    assert (truck["name"], truck["lat"], truck["lon"], truck["course"]) == (
        PLATE, 22.341, 114.1264, 40.0)
    assert text_of(on_truck) == ("Truck XX1234 at 22.341° N, 114.126° E (8 Nov 2026, 09:07 HKT): "
                                 "35 km/h.")
    # pages without a map do not load Leaflet
    assert "leaflet" not in (await page(client, "/alerts?lang=en")).lower()

    # the carrier published the pick-up but may not read the trader's truck positions
    await login(client, USERS[CARRIER], PASSWORD)
    carrier_view = await page(client, f"/containers/{ON_TRUCK}")
    assert "No position to show on a map." in carrier_view and PLATE not in carrier_view.split(
        "<section class=card aria-labelledby=map-h", 1)[1].split("</section>", 1)[0]

    # the competitor: AIS is public, so the vessel shows — without the port of call it may
    # not read (the carrier's ETAs); the box at sea was named to the trader only
    await login(client, USERS[FORWARDER], PASSWORD)
    theirs = await page(client, f"/vessels/{IMO}")
    assert "vessel" in data_of(theirs)["layers"] and "port" not in data_of(theirs)["layers"]
    assert "Port of call" not in text_of(theirs) and "HKHKG" not in theirs
    hidden = await page(client, f"/containers/{AT_SEA}")
    assert "data-map" not in hidden and "No position to show on a map." in hidden
    assert VESSEL_NAME not in hidden and "CNYTN" not in hidden


@shared_loop
async def test_the_coastline_is_cached_and_compressed(gateway: TestClient) -> None:
    client = gateway
    first = await client.get(maps.LAND, headers={"Accept-Encoding": "gzip"})
    body = await first.read()
    assert first.status == 200 and first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Vary"] == "Accept-Encoding"
    assert json.loads(body)["type"] == "Topology"  # the client undid the gzip
    assert first.headers["Content-Type"] == "application/json"
    tag = first.headers["ETag"]
    assert first.headers["Last-Modified"] and "no-store" not in first.headers.get(
        "Cache-Control", "")
    again = await client.get(maps.LAND, headers={"If-None-Match": tag,
                                                 "Accept-Encoding": "gzip"})
    assert again.status == 304
    plain = await client.get(maps.LAND, headers={"Accept-Encoding": "identity"})
    assert plain.status == 200 and "Content-Encoding" not in plain.headers
    assert len(await plain.read()) == 3_086_715


def loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "data" or parts.hostname in ("127.0.0.1", "localhost", "::1")


@shared_loop
async def test_in_chromium_the_map_draws(gateway: TestClient) -> None:
    client = gateway
    base = str(client.make_url("")).rstrip("/")
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            watched = await open_page(context)
            tab = watched.page
            requested: list[str] = []
            tab.on("request", lambda r, seen=requested: seen.append(r.url))
            await tab.goto(base + "/login?next=/vessels/" + IMO)
            await tab.fill("#email", USERS[TRADER])
            await tab.fill("#password", PASSWORD)
            await tab.click("#login-form button")
            await tab.wait_for_url(f"{base}/vessels/{IMO}")
            await tab.wait_for_selector(".map[data-land=drawn]")
            assert await tab.locator(".map .leaflet-pane.leaflet-map-pane").count() == 1
            assert await tab.locator(".map .map-land-pane path").count() >= 1
            assert await tab.locator(".map .leaflet-marker-icon.map-vessel").count() == 1
            assert await tab.locator(".map .leaflet-marker-icon.map-port").count() == 1
            assert await tab.locator(".map path.map-track").count() == 1
            canvas = tab.locator(".map-canvas")
            assert await canvas.get_attribute("role") == "region"
            assert await canvas.get_attribute("aria-label") == f"Map: where Vessel IMO {IMO} is"
            assert await canvas.get_attribute("tabindex") == "0"  # Leaflet's keyboard
            described = (await canvas.get_attribute("aria-describedby") or "").split()
            assert described == ["map-text", "map-keys"]
            assert "under way using engine" in (await tab.text_content("#map-text") or "")
            label = await tab.get_attribute(".leaflet-marker-icon.map-vessel", "aria-label")
            assert label is not None and label.startswith("PACIFIC HARMONY at 22.180° N")
            await screenshot(tab, f"map-vessel-{size}")
            # the keyboard: focus the map, zoom in with +
            zoom = await tab.evaluate(
                "() => document.querySelector('.map-canvas .leaflet-proxy').style.transform")
            await canvas.focus()
            await tab.keyboard.press("+")
            await tab.wait_for_function(
                "(before) => document.querySelector('.map-canvas .leaflet-proxy')"
                ".style.transform !== before", arg=zoom)
            # a marker takes the focus; Enter opens its details
            await tab.focus(".leaflet-marker-icon.map-vessel")
            await tab.keyboard.press("Enter")
            popup = await tab.wait_for_selector(".leaflet-popup .map-popup")
            assert (await popup.text_content() or "").startswith("PACIFIC HARMONY at 22.180° N")

            await tab.goto(f"{base}/containers/{BOX}")
            await tab.wait_for_selector(".map[data-land=drawn]")
            assert await tab.locator(".map .leaflet-marker-icon.map-place").count() == 1
            assert await tab.locator(".map .map-land-pane path").count() >= 1
            await screenshot(tab, f"map-container-{size}")
            await tab.goto(f"{base}/containers/{AT_SEA}")
            await tab.wait_for_selector(".map[data-land=drawn]")
            assert await tab.locator(".map .leaflet-marker-icon.map-vessel").count() == 1
            await screenshot(tab, f"map-container-at-sea-{size}")
            await tab.goto(f"{base}/containers/{ON_TRUCK}")
            await tab.wait_for_selector(".map[data-land=drawn]")
            assert await tab.locator(".map .leaflet-marker-icon.map-truck").count() == 1
            await screenshot(tab, f"map-container-truck-{size}")
            # in Chinese: the map's name, its words and Leaflet's controls
            await tab.goto(f"{base}/vessels/{IMO}?lang=zh-Hant")
            await tab.wait_for_selector(".map[data-land=drawn]")
            assert await tab.get_attribute(".map-canvas", "aria-label") == \
                f"地圖：船舶 IMO {IMO} 的位置"
            assert await tab.get_attribute(".leaflet-control-zoom-in", "aria-label") == "放大"
            assert "掛靠港" in (await tab.text_content("#map-text") or "")
            await screenshot(tab, f"map-vessel-zh-Hant-{size}")
            await tab.goto(f"{base}/vessels/{IMO}?lang=en")

            assert watched.problems == [], watched.problems
            assert watched.failed == [], watched.failed
            assert requested and [u for u in requested if not loopback(u)] == []
            assert any(u.endswith(maps.LAND) for u in requested)
            await context.close()
