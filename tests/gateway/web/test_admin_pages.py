"""The administration pages in the real gateway: users and roles, API keys, webhooks (DCSA event
subscriptions and alert webhooks) with their delivery logs, and the operator's decisions — each
showing only the signed-in organisation's own, in English and Chinese, server-side and in real
Chromium at an office and a phone width (screenshots ``admin-<what>-<size>``, axe-core
checked)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.accounts.model import HASHER
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from tests.support.accounts import ADMIN_PASSWORD, OPERATOR_EMAIL, OPERATOR_PASSWORD, login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.dcsa import SECRET, Receiver, config, sample_events, wait_until

HARBOUR_ADMIN = "admin@harbour.example"
HARBOUR_MEMBER = "clerk@harbour.example"
RIVAL_ADMIN = "admin@rival.example"
RIVAL_MEMBER = "spy@rival.example"


@dataclass
class Port:
    """The gateway, a webhook receiver and what the two organisations hold."""

    client: TestClient
    receiver: TestServer
    harbour: int
    rival: int
    harbour_url: str
    rival_url: str
    harbour_sub: str
    rival_sub: str
    harbour_hook: str
    rival_hook: str

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


@cache
def password_hash() -> str:
    """ADMIN_PASSWORD's argon2 hash, made once (a hash takes a second on a busy machine)."""
    return HASHER.hash(ADMIN_PASSWORD)


def _org(app: Any, name: str, status: str, *users: tuple[str, str]) -> tuple[int, str]:
    """An organisation with its users and, if active, its system's API key (returned)."""
    accounts = app[ACCOUNTS]
    org = accounts.create_organisation(name, ["forwarder"], {
        "registrationNumber": f"REG-{name[:3]}", "country": "HK",
        "address": "1 Container Port Road", "contactEmail": f"it@{name[:3].lower()}.example"},
        status=status)
    for email, role in users:
        accounts.create_user(org.id, email, None, role, password_hash=password_hash())
    key = ""
    if status == "active":
        _, key = accounts.create_api_key(org.id, ["tracking:read", "events:read"], f"{name} TOS")
    return int(org.id), key


async def _hooks(client: TestClient, key: str, url: str) -> tuple[str, str]:
    """A DCSA subscription and an alert webhook to ``url`` of the organisation of API ``key``."""
    headers = {"Authorization": f"Bearer {key}"}
    resp = await client.post("/v2/event-subscriptions", headers=headers,
                             json={"callbackUrl": url, "secret": SECRET,
                                   "eventType": ["EQUIPMENT"]})
    assert resp.status == 201, await resp.text()
    sub = (await resp.json())["subscriptionID"]
    resp = await client.post("/v1/alerts/webhooks", headers=headers,
                             json={"callbackUrl": url + "?alerts", "secret": SECRET,
                                   "kinds": ["vessel-delay", "customs-hold"]})
    assert resp.status == 201, await resp.text()
    return sub, (await resp.json())["id"]


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[Port]:
    receiver = Receiver([500])  # the first callback fails, the retry is accepted
    receiver_server = TestServer(receiver.app)
    await receiver_server.start_server()
    client = TestClient(TestServer(create_app(config(tmp_path / "gw", max_attempts=3))))
    await client.start_server()
    try:
        app = client.app
        app[ACCOUNTS].bootstrap_operator(OPERATOR_EMAIL, OPERATOR_PASSWORD, chain_org=1)
        harbour, harbour_key = _org(app, "Harbour Freight", "active", (HARBOUR_ADMIN, "admin"),
                       (HARBOUR_MEMBER, "member"))
        rival, rival_key = _org(app, "Rival Logistics", "active", (RIVAL_ADMIN, "admin"),
                     (RIVAL_MEMBER, "member"))
        callback = str(receiver_server.make_url("/callback"))
        harbour_sub, harbour_hook = await _hooks(client, harbour_key, callback + "?harbour")
        rival_sub, rival_hook = await _hooks(client, rival_key, callback + "?rival")
        # the harbour's subscription gets events: one failed attempt, then delivered
        app[appkeys.SUBSCRIPTIONS].publish(harbour, sample_events())
        store = app[appkeys.SUBSCRIPTIONS].store
        await wait_until(lambda: [d.status for d in store.deliveries(
            harbour, harbour_sub, status=None, before=None, limit=5) or []] == ["delivered"],
            what="the harbour's delivery")
        # two companies wait for the operator
        _org(app, "Kowloon Hauliers <b>Ltd</b>", "pending", ("a@kowloon.example", "admin"))
        _org(app, "Tsing Yi Storage", "pending", ("a@tsingyi.example", "admin"))
        yield Port(client, receiver_server, harbour, rival, callback + "?harbour",
                   callback + "?rival", harbour_sub, rival_sub, harbour_hook, rival_hook)
    finally:
        await client.close()
        await receiver_server.close()


async def page(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


def main_text(markup: str) -> str:
    """The text of the page's <main> (tags dropped, whitespace folded)."""
    body = markup.split("<main", 1)[1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


# -- server-side -------------------------------------------------------------------------------
async def test_users_page_lists_only_the_admins_own_organisation(port: Port) -> None:
    client = port.client
    await login(client, HARBOUR_ADMIN)
    users = await page(client, "/users")
    text = main_text(users)
    assert HARBOUR_ADMIN in text and HARBOUR_MEMBER in text
    assert RIVAL_ADMIN not in users and RIVAL_MEMBER not in users
    assert "Administrator" in text and "Member" in text and "Signs in with" in text
    assert text.count("Remove") == 2 and '<span class=chip>you</span>' in users
    # every control is labelled: each row's role select and the new user's fields
    for select in re.findall(r'<select id="(role-\d+)"', users):
        assert f'<label class=visually-hidden for="{select}">' in users
    assert "<label for=new-email>" in users and "<label for=new-password>" in users
    # a member may not open it; nor may anybody signed out
    await login(client, HARBOUR_MEMBER)
    refused = await page(client, "/users", 403)
    assert "org:admin" in refused and HARBOUR_ADMIN not in refused
    client.session.cookie_jar.clear()
    resp = await client.get("/users", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
    # in Chinese
    await login(client, RIVAL_ADMIN)
    chinese = await page(client, "/users?lang=zh-Hant")
    assert '<html lang="zh-Hant">' in chinese and "用戶及角色" in chinese and "管理員" in chinese
    assert RIVAL_MEMBER in chinese and HARBOUR_ADMIN not in chinese
    simplified = await page(client, "/users?lang=zh-Hans")
    assert "用户和角色" in simplified and "添加用户" in simplified


async def test_webhooks_page_and_delivery_logs_show_only_the_organisations_own(
        port: Port) -> None:
    client = port.client
    await login(client, HARBOUR_ADMIN)
    hooks = await page(client, "/webhooks")
    text = main_text(hooks)
    assert port.harbour_url in text and port.harbour_url + "?alerts" in text
    assert "?rival" not in hooks and port.rival_sub not in hooks and port.rival_hook not in hooks
    assert "eventType: EQUIPMENT" in text
    assert "Vessel delayed, Customs hold" in text
    assert f'href="/webhooks/subscriptions/{port.harbour_sub}"' in hooks
    assert f'href="/webhooks/alerts/{port.harbour_hook}"' in hooks
    assert f'data-delete="/v2/event-subscriptions/{port.harbour_sub}"' in hooks
    # the subscription's log: the delivery with its two attempts and the receiver's answer
    log = main_text(await page(client, f"/webhooks/subscriptions/{port.harbour_sub}"))
    assert "Delivered" in log and "HTTP 204" in log and port.harbour_url in log
    assert re.search(r"Delivered Attempts? 2|Delivered 2", log), log
    failed_only = main_text(await page(
        client, f"/webhooks/subscriptions/{port.harbour_sub}?status=failed"))
    assert "Nothing has been sent yet." in failed_only
    alert_log = main_text(await page(client, f"/webhooks/alerts/{port.harbour_hook}"))
    assert "Nothing has been sent yet." in alert_log and port.harbour_url in alert_log
    # another organisation's webhooks are not found (not refused: their ids say nothing)
    for path in (f"/webhooks/subscriptions/{port.rival_sub}", f"/webhooks/alerts/{port.rival_hook}",
                 "/webhooks/subscriptions/not-a-uuid", "/webhooks/alerts/%3Cscript%3E"):
        missing = await page(client, path, 404)
        assert "Your organisation has no such webhook." in missing and "?rival" not in missing
        assert "<script>" not in missing.split("<main", 1)[1]
    # a driver (no events:read) may not open the page
    port.client.app[ACCOUNTS].create_user(port.harbour, "driver@harbour.example", None,
                                          "driver", password_hash=password_hash())
    await login(client, "driver@harbour.example")
    assert "events:read" in await page(client, "/webhooks", 403)
    # in Chinese, the rival sees its own
    await login(client, RIVAL_ADMIN)
    chinese = await page(client, "/webhooks?lang=zh-Hans")
    assert "事件订阅（DCSA）" in chinese and "告警 Webhook" in chinese and "?rival" in chinese
    assert "?harbour" not in chinese
    log = await page(client, f"/webhooks/subscriptions/{port.rival_sub}?lang=zh-Hant")
    assert "傳送記錄" in log and "尚未傳送任何內容。" in log


async def test_keys_and_operator_pages_are_translated_and_refuse_others(port: Port) -> None:
    client = port.client
    await login(client, HARBOUR_ADMIN)
    keys = await page(client, "/keys?lang=zh-Hant")
    assert "API 金鑰" in keys
    assert "上載事件" in keys and "<code>events:write</code>" in keys
    assert "Rival Logistics TOS" not in keys  # the list is the API's, per organisation
    resp = await client.get("/v1/api-keys")
    labels = [k["label"] for k in (await resp.json())["apiKeys"]]
    assert labels == ["Harbour Freight TOS"]
    assert "Only a platform operator" in await page(client, "/operator?lang=en", 403)
    await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    operator = await page(client, "/operator")
    assert "Organisations waiting for verification" in operator and "All organisations" in operator
    assert "<label for=org-status>" in operator and 'id=organisations' in operator
    chinese = await page(client, "/operator?lang=zh-Hant")
    assert "所有機構" in chinese and "待審批" in chinese and "鏈上成員" in chinese


# -- Chromium ----------------------------------------------------------------------------------
async def _sign_in(tab: Any, base: str, email: str, password: str, to: str) -> None:
    await tab.goto(f"{base}/login?next={to}")
    await tab.fill("#email", email)
    await tab.fill("#password", password)
    await tab.click("#login-form button")
    await tab.wait_for_url(base + to)


async def test_admin_pages_in_chromium_at_office_and_phone_width(port: Port) -> None:
    base, accounts = port.base, port.client.app[ACCOUNTS]
    async with chromium() as browser:
        for size, viewport in SIZES.items():
            context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            watched = await open_page(context)
            tab = watched.page
            dialogs: list[str] = []

            async def accept(dialog: Any, seen: list[str] = dialogs) -> None:
                seen.append(dialog.message)
                await dialog.accept()

            tab.on("dialog", accept)

            # users: change a role, add a user, remove them
            await _sign_in(tab, base, HARBOUR_ADMIN, ADMIN_PASSWORD, "/users")
            assert await tab.locator("#users tbody tr").count() == 2
            assert await tab.locator(f"text={RIVAL_ADMIN}").count() == 0
            await screenshot(tab, f"admin-users-{size}")
            if size == "desktop":
                member = tab.locator(f"#users tr[data-email='{HARBOUR_MEMBER}']")
                await member.locator("select").select_option("driver")
                await tab.wait_for_selector(f"main > .message:has-text('{HARBOUR_MEMBER} is now')")
                assert accounts.user_by_email(HARBOUR_MEMBER).role == "driver"
                await tab.fill("#new-email", "new@harbour.example")
                await tab.select_option("#new-role", "member")
                await tab.click("#user-form button")
                await tab.wait_for_selector(
                    "main > .message:has-text('new@harbour.example was added.')")
                await tab.wait_for_selector("#users tr[data-email='new@harbour.example']")
                await tab.click("#users tr[data-email='new@harbour.example'] [data-action=remove]")
                await tab.wait_for_selector("#users tr[data-email='new@harbour.example']",
                                            state="detached")
                assert accounts.user_by_email("new@harbour.example") is None
                assert dialogs and "new@harbour.example" in dialogs[-1]
                # the last admin cannot disable themself: said in words, nothing changes
                me = tab.locator(f"#users tr[data-email='{HARBOUR_ADMIN}']")
                await me.locator("[data-action=toggle]").click()
                await tab.wait_for_selector("main > .message:has-text('at least one enabled')")
                assert not accounts.user_by_email(HARBOUR_ADMIN).disabled
                await screenshot(tab, "admin-users-done-desktop")
            await tab.goto(base + "/users?lang=zh-Hant")
            assert await tab.text_content("h1") == "用戶及角色"
            await screenshot(tab, f"admin-users-zh-Hant-{size}")
            await tab.goto(base + "/users?lang=en")

            # API keys: create one, see it listed, revoke it
            await tab.goto(base + "/keys")
            await tab.wait_for_selector("#keys tbody tr:has-text('Harbour Freight TOS')")
            await tab.fill("#label", f"gate system {size}")
            await tab.click("#key-form button")
            await tab.wait_for_selector("#new-key:not([hidden])")
            assert (await tab.text_content("#new-key-value") or "").startswith("plk_")
            await tab.wait_for_selector(f"#keys tbody tr:has-text('gate system {size}')")
            assert await tab.locator("text=Rival Logistics TOS").count() == 0
            await screenshot(tab, f"admin-keys-{size}")
            await tab.click(f"#keys tbody tr:has-text('gate system {size}') button")
            await tab.wait_for_selector(f"#keys tbody tr:has-text('gate system {size}')"
                                        ":has-text('Revoked')")
            await tab.goto(base + "/keys?lang=zh-Hans")
            await tab.wait_for_selector("#keys tbody tr:has-text('已于')")
            await screenshot(tab, f"admin-keys-zh-Hans-{size}")
            await tab.goto(base + "/keys?lang=en")

            # webhooks: the list, a new alert webhook with a generated secret, its removal
            await tab.goto(base + "/webhooks")
            assert await tab.locator("text=?rival").count() == 0
            await screenshot(tab, f"admin-webhooks-{size}")
            if size == "desktop":
                await tab.click("details.new-hook:has(#alert-webhook-form) summary")
                await tab.fill("#hook-url", port.harbour_url + "&second")
                await tab.click("[data-generate=hook-secret]")
                assert len(await tab.input_value("#hook-secret")) == 44
                await tab.check("#alert-webhook-form input[value=reefer-excursion]")
                await tab.click("#alert-webhook-form button:has-text('Add webhook')")
                row = "#alert-webhooks tr:has-text('&second')"
                await tab.wait_for_selector(row)
                assert "Reefer temperature excursion" in (await tab.text_content(row) or "")
                await tab.click(f"{row} button[data-delete]")
                await tab.wait_for_selector("main > .message:has-text('No longer sending to')")
                assert await tab.locator(row).count() == 0
                # a refused address is said in words on the form
                await tab.click("details.new-hook:has(#subscription-form) summary")
                await tab.fill("#sub-url", "ftp://files.example/in")
                await tab.click("[data-generate=sub-secret]")
                await tab.click("#subscription-form button:has-text('Subscribe')")
                await tab.wait_for_selector("#subscription-form .message:has-text('http://')")
            await tab.click(f"a[href='/webhooks/subscriptions/{port.harbour_sub}']")
            await tab.wait_for_selector("#deliveries tbody tr:has-text('Delivered')")
            await screenshot(tab, f"admin-deliveries-{size}")
            await tab.goto(base + "/webhooks?lang=zh-Hant")
            await screenshot(tab, f"admin-webhooks-zh-Hant-{size}")
            await tab.goto(base + "/webhooks?lang=en")

            # the operator: reject needs a reason; every organisation with its status
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")
            await _sign_in(tab, base, OPERATOR_EMAIL, OPERATOR_PASSWORD, "/operator")
            await tab.wait_for_selector("#organisations tbody tr:has-text('Rival Logistics')")
            waiting = "#pending tbody tr:has-text('Tsing Yi Storage')"
            if size == "desktop":
                await tab.wait_for_selector(waiting)
                assert await tab.locator("#pending b").count() == 0  # names are text
                await screenshot(tab, f"admin-operator-{size}")
                await tab.click(f"{waiting} button:has-text('Reject')")
                await tab.wait_for_selector("main > .message:has-text('Give a reason')")
                await tab.fill(f"{waiting} input", "registration number not found")
                await tab.click(f"{waiting} button:has-text('Reject')")
                await tab.wait_for_selector("main > .message:has-text('Tsing Yi Storage: Rejected')")
                rejected = accounts.organisations("rejected")
                assert [o.name for o in rejected] == ["Tsing Yi Storage"]
                await tab.select_option("#org-status", "rejected")
                await tab.wait_for_function(
                    "() => document.querySelectorAll('#organisations tbody tr').length === 1")
            else:
                await tab.wait_for_selector("#pending tbody tr:has-text('Kowloon Hauliers')")
                await screenshot(tab, f"admin-operator-{size}")
            await tab.goto(base + "/operator?lang=zh-Hant")
            await tab.wait_for_selector("#organisations tbody tr:has-text('已啟用')")
            await screenshot(tab, f"admin-operator-zh-Hant-{size}")
            await tab.goto(base + "/operator?lang=en")
            # both lists loaded before signing out (else their requests would meet a 401)
            await tab.wait_for_selector("#organisations tbody tr:has-text('Rival Logistics')")

            # the rival's admin sees none of the harbour's users, keys or webhooks
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")
            await _sign_in(tab, base, RIVAL_ADMIN, ADMIN_PASSWORD, "/users")
            assert HARBOUR_ADMIN not in (await tab.text_content("main") or "")
            await tab.goto(base + "/keys")
            await tab.wait_for_selector("#keys tbody tr:has-text('Rival Logistics TOS')")
            assert "Harbour" not in (await tab.text_content("#keys") or "")
            await tab.goto(base + "/webhooks")
            assert "?harbour" not in (await tab.text_content("main") or "")
            await tab.goto(f"{base}/webhooks/subscriptions/{port.harbour_sub}")
            assert await tab.text_content("h1") == "Not found"
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")

            # the refusals the test provoked show as failed loads, and nothing else went wrong
            errors = [p for p in watched.problems if not p.startswith("Failed to load resource")]
            assert errors == [], watched.problems
            expected = {(404, f"{base}/webhooks/subscriptions/{port.harbour_sub}"),
                        (409, f"{base}/v1/users/{accounts.user_by_email(HARBOUR_ADMIN).id}"),
                        (422, f"{base}/v2/event-subscriptions")}
            assert set(watched.failed) <= expected, watched.failed
            await context.close()
