"""The web pages: security headers, escaping, redirects, and a real browser session (Playwright).

The browser test drives Debian's Chromium (``/usr/bin/chromium``) against the gateway on
loopback: register an organisation through /register, verify it as the operator on /operator,
sign in on /login, create an API key on /keys (checked against the API), revoke it, and track an
HTML-injection string that must render as text. It fails (never skips) when Chromium is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.config import GatewayConfig
from gateway.ui.shell import SECURITY_HEADERS
from tests.support.accounts import (
    ADMIN_PASSWORD,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    login,
    register,
)
from tests.support.browser import screenshot

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
INJECTION = '"><img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'
#: Where the screenshots are kept (also copied next to the test's tmp folder).
SCREENSHOT_DIR = Path("/tmp/portledger-pages")


def _app(config: GatewayConfig) -> Any:
    app = create_app(config)
    app[ACCOUNTS].bootstrap_operator(OPERATOR_EMAIL, OPERATOR_PASSWORD, chain_org=1)
    return app


@pytest.fixture
async def client(aiohttp_client: Any, gateway_config: GatewayConfig) -> Any:
    return await aiohttp_client(_app(gateway_config))


async def test_pages_carry_security_headers(client: Any) -> None:
    for path in ("/", "/login", "/register", "/static/portledger.js", "/static/portledger.css"):
        resp = await client.get(path)
        assert resp.status == 200, path
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers[name] == value, (path, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page = await (await client.get("/")).text()
    assert "<script>" not in page and "style=" not in page  # nothing inline: CSP holds
    assert "http://" not in page and "https://" not in page  # no CDN


async def test_private_pages_redirect_to_sign_in(client: Any) -> None:
    for path in ("/track?q=ABC", "/access-log", "/keys", "/operator"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 302, path
        location = URL(resp.headers["Location"])
        assert location.path == "/login" and location.query["next"] == path


async def test_page_refusals_and_escaping(client: Any) -> None:
    registered = await register(client)
    csrf = await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    org_id = registered["organisation"]["id"]
    resp = await client.post(f"/v1/operator/organisations/{org_id}/verify",
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    page = await (await client.get("/operator")).text()
    assert f'content="{csrf}"' in page  # the CSRF token for the script
    await client.post("/v1/users", headers={"X-CSRF-Token": csrf},
                      json={"email": "x@ops.example", "role": "member"})
    await login(client, "admin@harbour.example", ADMIN_PASSWORD)
    resp = await client.get("/operator")
    assert resp.status == 403 and "Not allowed" in await resp.text()
    assert resp.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    resp = await client.get("/track", params={"q": INJECTION})
    text = await resp.text()
    assert resp.status == 403  # a verified organisation not yet on chain reads nothing
    assert "<img src=x" not in text and "<script>alert" not in text
    assert "&lt;img src=x onerror=" in text
    resp = await client.get("/login", params={"next": "https://evil.example/"})
    assert 'data-next="/"' in await resp.text()


@pytest.mark.integration
async def test_browser_register_verify_sign_in_and_manage_keys(
    aiohttp_server: Any, gateway_config: GatewayConfig, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (the browser test needs it)")
    # playwright is heavy and needed by this test only, once the browser is known to exist
    from playwright.async_api import async_playwright

    app = _app(gateway_config)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    failed: list[tuple[int, str]] = []

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 420, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("response", lambda r: r.status >= 400 and failed.append((r.status, r.url)))
            page.on("dialog", lambda d: problems.append(f"dialog {d.message}")
                    if "Revoke" not in d.message else None)
            page.on("dialog", lambda d: d.accept())

            # Register through the page.
            await page.goto(base + "/register")
            await page.fill("#name", "Harbour Freight Ltd <b>bold</b>")
            await page.fill("#registrationNumber", "HK-555")
            await page.fill("#address", "1 Container Port Road, Kwai Chung")
            await page.fill("#contactEmail", "contact@harbour.example")
            await page.check('input[name="roles"][value="forwarder"]')
            await page.fill("#email", "admin@harbour.example")
            await page.fill("#password", ADMIN_PASSWORD)
            await page.click("form#register-form button")
            await page.wait_for_selector("text=An operator will verify")

            # The operator verifies it.
            await page.goto(base + "/login?next=/operator")
            await page.fill("#email", OPERATOR_EMAIL)
            await page.fill("#password", OPERATOR_PASSWORD)
            await page.click("form#login-form button")
            await page.wait_for_url(base + "/operator")
            row = page.locator("#pending tbody tr", has_text="Harbour Freight Ltd <b>bold</b>")
            await row.wait_for()
            assert await page.locator("#pending b").count() == 0  # the name is text
            await screenshot(page, "operator")
            await row.locator("button", has_text="Verify").click()
            await page.wait_for_selector("text=Harbour Freight Ltd <b>bold</b>: active")
            # The consortium adds the member; the indexer's listener links it (as wired in).
            accounts = app[ACCOUNTS]
            org = accounts.organisations("active")[-1]
            assert org.account is not None and org.chain_org is None
            accounts.link_chain_members([(20, [org.account])])
            await page.click("#signout")
            await page.wait_for_url(base + "/")

            # The organisation's admin signs in and creates a key.
            await page.goto(base + "/keys")
            await page.wait_for_url(re.compile(r"/login\?next="))
            await page.fill("#email", "admin@harbour.example")
            await page.fill("#password", ADMIN_PASSWORD)
            await page.click("form#login-form button")
            await page.wait_for_url(base + "/keys")
            await page.fill("#label", "terminal system")
            await page.check('input[name="scopes"][value="events:read"]')
            await page.click("form#key-form button")
            await page.wait_for_selector("#new-key:not([hidden])")
            key = (await page.text_content("#new-key-value") or "").strip()
            assert key.startswith("plk_")
            await page.wait_for_selector("#keys tbody tr >> text=terminal system")
            shutil.copy(await screenshot(page, "keys"), tmp_path / "keys.png")

            # The key works against the API, with exactly the chosen scopes.
            answer = await page.request.get(base + "/v1/me",
                                            headers={"Authorization": f"Bearer {key}"})
            me = await answer.json()
            assert answer.status == 200 and sorted(me["scopes"]) == ["events:read",
                                                                      "tracking:read"]

            # Revoke it on the page; the API then refuses it.
            await page.click("#keys tbody tr:has-text('terminal system') button")
            await page.wait_for_selector("#keys tbody tr:has-text('revoked')")
            answer = await page.request.get(base + "/v1/me",
                                            headers={"Authorization": f"Bearer {key}"})
            assert answer.status == 401

            # An injection string typed into the track box renders as text.
            await page.goto(base + "/")
            await page.fill("#q", INJECTION)
            await page.click("form.track button")
            await page.wait_for_url(re.compile(r"/track\?q="))
            await page.wait_for_selector("#shipment .message")
            assert await page.title() != "pwned"
            assert await page.locator("#shipment img, #shipment script").count() == 0
            assert await page.input_value("#q") == INJECTION[:64]
            await screenshot(page, "track-injection")

            # A well-formed number nobody shared: a clear not-found, no crash.
            await page.fill("#q", "pcol 2405123")
            await page.click("form.track button")
            await page.wait_for_url(re.compile(r"/track\?q=pcol"))
            message = page.locator("#shipment .message")
            await message.wait_for()
            shown = (await message.text_content() or "").strip()
            assert shown == "Nothing you may see matches PCOL2405123."
            await screenshot(page, "track-not-found")
        finally:
            await browser.close()
    # The only failed requests are the two lookups: not a reference (400), nothing shared (404).
    lookups = [(status, URL(url).path) for status, url in failed]
    assert lookups == [(400, "/track"), (404, "/track")], failed
    assert not [p for p in problems if "Failed to load resource" not in p], problems
