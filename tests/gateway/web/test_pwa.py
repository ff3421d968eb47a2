"""The pages as an installable app: the manifest and its icons, the service worker (served from
the root, keeping the shell and never an API answer or a page with someone's data), the offline
page that names nobody — and, in real Chromium at both widths, the worker registered by the
script and the app opening offline after a first visit. Also: the accessibility check every
page test runs (axe-core) really finds violations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.accounts.model import HASHER
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.config import GatewayConfig
from gateway.ui import pwa
from gateway.ui.shell import SECURITY_HEADERS
from tests.support.accounts import ADMIN_PASSWORD, login
from tests.support.browser import (
    ICONS,
    SIZES,
    accessibility,
    chromium,
    open_page,
    render_svg,
    screenshot,
)

ADMIN = "admin@harbour.example"
ORG_NAME = "Harbour Freight Ltd"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = GatewayConfig(data_dir=tmp_path / "gw", keystore_passphrase="test passphrase",
                           cookie_secure=False)
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    accounts = client.app[ACCOUNTS]
    org = accounts.create_organisation(ORG_NAME, ["forwarder"], {
        "registrationNumber": "HK-1", "country": "HK", "address": "1 Container Port Road",
        "contactEmail": "it@harbour.example"}, status="active")
    accounts.create_user(org.id, ADMIN, None, "admin", password_hash=HASHER.hash(ADMIN_PASSWORD))
    try:
        yield client
    finally:
        await client.close()


async def test_manifest_icons_and_head(client: TestClient) -> None:
    resp = await client.get("/manifest.webmanifest")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/manifest+json")
    manifest = json.loads(await resp.text())
    assert manifest["name"] == "PortLedger" and manifest["display"] == "standalone"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    assert manifest["theme_color"] == pwa.THEME_COLOUR
    icons = {(i["sizes"], i["purpose"]): i["src"] for i in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= set(icons)
    for src in icons.values():
        icon = await client.get(src)
        assert icon.status == 200, src
    page = await (await client.get("/login")).text()
    assert '<link rel=manifest href="/manifest.webmanifest">' in page
    assert f'<meta name=theme-color content="{pwa.THEME_COLOUR}">' in page
    # the icons' pixel sizes, as a browser reads them
    async with chromium() as browser:
        context = await browser.new_context()
        tab = await context.new_page()
        await tab.goto(str(client.make_url("/login")))
        for (size, _), src in icons.items():
            if size == "any":
                continue
            width = await tab.evaluate("""async (src) => {
                const img = new Image(); img.src = src; await img.decode();
                return [img.naturalWidth, img.naturalHeight]; }""", src)
            assert width == [int(size.split("x")[0])] * 2, (src, width)
        # the committed PNGs are their SVG sources drawn: pixel by pixel nearly the same
        for svg, png, size in ICONS:
            difference = await tab.evaluate(_DIFFERENCE, [f"/static/pwa/{svg}",
                                                          f"/static/pwa/{png}", size])
            assert difference < 4, (png, difference)
        drawn = await render_svg(browser, (pwa.PWA_DIR / "icon.svg").read_text(), 192)
        assert drawn[:8] == b"\x89PNG\r\n\x1a\n"
        # a different picture is far from it (the comparison can fail)
        other = await tab.evaluate(_DIFFERENCE, ["/static/pwa/icon-maskable.svg",
                                                 "/static/pwa/icon-512.png", 512])
        assert other > 4, other
        await context.close()


#: Mean absolute difference (0-255 per channel) of two images drawn at ``size`` × ``size``.
_DIFFERENCE = """async ([first, second, size]) => {
  const pixels = async (src) => {
    const image = new Image(); image.src = src; await image.decode();
    const canvas = document.createElement("canvas"); canvas.width = canvas.height = size;
    const context = canvas.getContext("2d"); context.drawImage(image, 0, 0, size, size);
    return context.getImageData(0, 0, size, size).data;
  };
  const [a, b] = [await pixels(first), await pixels(second)];
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}"""


async def test_service_worker_is_served_from_the_root_and_keeps_only_the_shell(
        client: TestClient) -> None:
    resp = await client.get("/sw.js")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.headers["Service-Worker-Allowed"] == "/"
    assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["ETag"]
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value, name
    source = await resp.text()
    assert "__VERSION__" not in source and f'const VERSION = "{pwa.shell_version()}"' in source
    again = await client.get("/sw.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    # the shell's files it keeps are served to anybody (it fetches them without cookies)
    shell = ["/static/portledger.css", "/static/portledger.js", "/manifest.webmanifest",
             "/i18n/en.json", "/i18n/zh-Hant.json", "/i18n/zh-Hans.json",
             "/offline?lang=en", "/offline?lang=zh-Hant", "/offline?lang=zh-Hans"]
    for url in shell:
        assert (await client.get(url)).status == 200, url
    assert "/v1/" not in source.split("const SHELL", 1)[1].split("];", 1)[0]


async def test_offline_page_names_nobody_even_when_signed_in(client: TestClient) -> None:
    csrf = await login(client, ADMIN)
    signed = await (await client.get("/users")).text()
    assert ORG_NAME in signed and csrf in signed
    offline = await client.get("/offline?lang=zh-Hant")
    text = await offline.text()
    assert offline.status == 200 and "你現正離線" in text and '<html lang="zh-Hant">' in text
    assert ORG_NAME not in text and csrf not in text and "signout" not in text
    assert offline.headers["Cache-Control"] == "no-store"


async def test_installed_shell_opens_offline_in_chromium(client: TestClient) -> None:
    base = str(client.make_url("")).rstrip("/")
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            context = await browser.new_context(viewport=viewport, locale="en-GB")
            watched = await open_page(context)
            tab = watched.page
            await tab.goto(base + "/login?next=/users")
            await tab.fill("#email", ADMIN)
            await tab.fill("#password", ADMIN_PASSWORD)
            await tab.click("#login-form button")
            await tab.wait_for_url(base + "/users")
            # the script registered the worker; it took control and keeps the shell only
            await tab.wait_for_function("() => navigator.serviceWorker.controller !== null",
                                        timeout=20_000)
            kept = await tab.evaluate("""async () => {
                const out = [];
                for (const name of await caches.keys()) {
                    const cache = await caches.open(name);
                    for (const request of await cache.keys()) {
                        const url = new URL(request.url);
                        out.push(url.pathname + url.search);
                    }
                }
                return out; }""")
            assert "/static/portledger.js" in kept and "/offline?lang=zh-Hant" in kept
            assert not [u for u in kept if u.startswith(("/v1/", "/v2/", "/users", "/keys"))]
            # a page in Chinese tells the worker which offline page to show
            await tab.goto(base + "/users?lang=zh-Hant")
            await tab.wait_for_function("""async () => {
                const cache = await caches.open((await caches.keys())[0]);
                const lang = await cache.match("/__portledger/lang");
                return lang && (await lang.text()) === "zh-Hant"; }""")
            await context.set_offline(True)
            await tab.reload()
            await tab.wait_for_selector("h1:has-text('你現正離線')")
            assert ORG_NAME not in (await tab.content())
            # the cached stylesheet applies: the shell's background colour
            colour = await tab.evaluate(
                "() => getComputedStyle(document.documentElement).backgroundColor")
            assert colour == "rgb(247, 249, 252)", colour
            await screenshot(tab, f"pwa-offline-zh-Hant-{size}")
            await tab.goto(base + "/webhooks?lang=en")
            await tab.wait_for_selector("h1:has-text('You are offline')")
            await screenshot(tab, f"pwa-offline-{size}")
            # back online, "try again" opens the page asked for
            await context.set_offline(False)
            await tab.click("#retry")
            await tab.wait_for_selector("h1:has-text('Webhooks')")
            assert [p for p in watched.problems if "Failed to load" not in p
                    and "ERR_INTERNET_DISCONNECTED" not in p] == [], watched.problems
            await context.close()


async def test_the_accessibility_check_finds_violations() -> None:
    async with chromium() as browser:
        context = await browser.new_context()
        tab = await context.new_page()
        await tab.set_content('<html><body><input id=x><p class=faint>faint</p>'
                              '<img src="data:,"></body></html>')
        found = {v["id"]: v for v in await accessibility(tab)}
        assert {"label", "image-alt", "html-has-lang", "document-title"} <= set(found)
        assert found["label"]["impact"] == "critical" and found["label"]["nodes"][0]["target"]
        with pytest.raises(AssertionError, match="accessibility violations"):
            await screenshot(tab, "pwa-axe-negative")
        await context.close()


def test_icons_are_drawn_from_their_sources() -> None:
    for source, target, _ in ICONS:
        assert (pwa.PWA_DIR / source).exists() and (pwa.PWA_DIR / target).exists()
    listed = {name for name, _, _ in pwa.ICONS}
    assert listed == {target for _, target, _ in ICONS}
    assert Path(pwa.PWA_DIR / "sw.js").read_text().count("__VERSION__") == 1
    assert isinstance(pwa.manifest()["icons"], list)
