"""The upload page (/upload) in the real gateway: who sees it and its navigation entry, the form
and the formats in English and Chinese, the very API calls its script makes with the signed-in
user's session (dry run, role refusals per line, submit, follow a submission — and nobody else's),
and, in real Chromium at an office and a phone width against a real ``portledger node``, a
terminal's user checking and submitting real EDIFACT files from ``tests/data/`` to final, a file
with errors shown line by line, a file over the limit refused before it is sent, and the page in
Chinese — with screenshots ``upload-<what>-<size>``."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import ROLES
from devnet.jsonrpc import rpc_answer
from gateway.accounts.model import HASHER
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, INDEXER, KEYSTORE, READ_MODEL
from gateway.feeds import formats
from gateway.feeds.model import MAX_FEED_BYTES
from gateway.feeds.pages import may_upload
from gateway.principal import ROLE_SCOPES, Principal
from gateway.readside.readmodel import Member, MemberChange
from gateway.ui import i18n
from tests.support import readside as rs
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.dcsa import config, wait_until
from tests.support.nodes import REPO_GENESIS, NodeProcess

ROOT = Path(__file__).resolve().parents[3]
EDIFACT = ROOT / "tests" / "data" / "edifact"
#: A real Genoa terminal's COARRI (php-edifact, LGPL): 2 messages, 21 discharges and loadings.
COARRI = EDIFACT / "php-edifact-D95BCOARRI.edi"
#: Our CODECO: two interchanges (own UNA each), 2 gate-outs.
CODECO = EDIFACT / "ours-codeco-lf-mixed.edi"
#: php-edifact's multi-line example: a bad UNB date (line 1), a UNT count that is wrong (line 8).
BROKEN = EDIFACT / "php-edifact-example_multiline.edi"
#: Our COPARN release order: SHIPMENT.RELS, which a terminal may not publish.
RELEASE = EDIFACT / "ours-coparn-release.edi"

PASSWORD = "correct horse battery staple"
#: (chain id, name, roles, user's e-mail) of the hosted members.
MEMBERS = ((rs.TERMINAL, "Kwai Tsing Terminal 9", ("terminal",), "ops@terminal.example"),
           (rs.CARRIER, "Pacific Ocean Line", ("carrier",), "ops@pacific.example"))
TERMINAL_USER, CARRIER_USER = MEMBERS[0][3], MEMBERS[1][3]
NEWCOMER_USER = "ops@newcomer.example"


@cache
def password_hash() -> str:
    """PASSWORD's argon2 hash, made once (a hash takes a second on a busy machine)."""
    return HASHER.hash(PASSWORD)


async def started(path: Path, node_url: str | None = None) -> TestClient[Any, Any]:
    """The gateway with the hosted members' users (and their development keys) and a
    newcomer not yet on chain; with ``node_url`` on a real node, its member directory read."""
    cfg = config(path)
    if node_url is not None:
        cfg = dataclasses.replace(cfg, node_urls=(node_url,), batch_window_ms=20,
                                  indexer_poll_ms=50)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    accounts, keystore = client.app[ACCOUNTS], client.app[KEYSTORE]
    changes = []
    for chain_org, name, roles, email in MEMBERS:
        org = accounts.create_organisation(name, roles, status="active", chain_org=chain_org)
        keystore.import_keys(org.id, signing_key=bytes(rs.account(chain_org).key),
                             x25519_private=rs.x25519_private(chain_org),
                             master_secret=rs.master_secret(chain_org))
        accounts.create_user(org.id, email, None, "member", password_hash=password_hash())
        mask = sum(ROLES[r] for r in roles)
        changes.append(MemberChange(Member(chain_org, name, mask, rs.x25519_public(chain_org),
                                           True)))
    newcomer = accounts.create_organisation("Newcomer Haulage", ("haulier",), status="active")
    accounts.create_user(newcomer.id, NEWCOMER_USER, None, "member",
                         password_hash=password_hash())
    if node_url is None:
        model: Any = client.app[READ_MODEL]  # the store behind the read model's protocol
        model.apply_changes(changes)
    else:  # roles come from the chain's member directory once the indexer has read it
        head = int(rpc_answer(node_url, "eth_blockNumber", [])["result"], 16)
        assert await client.app[INDEXER].wait_for_block(head, timeout=60)
    return client


async def page(client: TestClient[Any, Any], path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:500])
    return text


async def choose_with_space(tab: Any, sample: Path) -> None:
    """Open the file chooser from the focused drop zone with Space and pick ``sample``.

    Chromium opens the chooser from a key press only while the press counts as a user
    activation; on a loaded machine the first press can land before the page has settled, so
    the press is repeated (at most three times, 10 s each) until the chooser opens.
    """
    # playwright is heavy and only the browser tests need it
    from playwright.async_api import (
        TimeoutError as PlaywrightTimeout,
    )
    for attempt in range(3):
        try:
            async with tab.expect_file_chooser(timeout=10_000) as chooser:
                await tab.keyboard.press("Space")
            await (await chooser.value).set_files(str(sample))
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            assert await tab.evaluate("() => document.activeElement.id") == "file"


def nav_links(markup: str) -> list[str]:
    main_nav = markup.split('<nav aria-label="', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<a href="([^"]+)"', main_nav)


async def test_the_page_and_its_entry_for_a_terminal_user_in_three_languages_not_for_a_newcomer(
        tmp_path: Path) -> None:
    client = await started(tmp_path / "gw")
    try:
        resp = await client.get("/upload", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
        assert "/upload" not in nav_links(await page(client, "/"))

        await login(client, TERMINAL_USER, PASSWORD)
        resp = await client.get("/upload")
        markup = await resp.text()
        assert resp.status == 200 and resp.headers["Content-Security-Policy"].startswith(
            "default-src 'self'")
        assert '<body data-page="upload">' in markup and "<h1>Upload a file</h1>" in markup
        assert '<a href="/upload" aria-current=page>Upload</a>' in markup
        # the drop zone is the file input's label, so a click, Enter or Space opens the chooser
        assert "<label class=dropzone id=dropzone for=file>" in markup
        assert "<input type=file id=file name=file>" in markup
        assert f'data-max-bytes="{MAX_FEED_BYTES}"' in markup and "at most 50 MB" in markup
        options = re.findall(r'<option value="?([a-z-]+)"?[^>]*>([^<]+)</option>', markup)
        assert [v for v, _ in options] == ["auto", *formats.FORMATS]
        assert options[0][1] == "Detect automatically"
        assert ("edifact", "UN/EDIFACT (CODECO, COARRI, COPARN, IFTSTA)") in options
        assert "your organisation&#x27;s roles: Terminal." in markup
        # who may read: named readers (by default) or reference holders too; the readers offered
        # are the directory's other members, by name
        assert "<input type=radio name=visibility value=named checked>" in markup
        assert "<input type=radio name=visibility value=reference>" in markup
        readers = re.findall(r'name=readers value="(\d+)"> ([^<]+)</label>', markup)
        assert readers == [(str(rs.CARRIER), "Pacific Ocean Line")]
        assert "<script" not in markup.split("<body", 1)[1] and " style=" not in markup
        # every other page carries the entry for this user
        assert "/upload" in nav_links(await page(client, "/alerts"))

        hant = await page(client, "/upload?lang=zh-Hant")
        assert '<html lang="zh-Hant">' in hant and "<h1>上載檔案</h1>" in hant
        assert ">自動偵測</option>" in hant and ">上載</a>" in hant and "碼頭" in hant
        hans = await page(client, "/upload?lang=zh-Hans")
        assert "<h1>上传文件</h1>" in hans and "把文件拖放到这里，或选择文件" in hans
        assert "<h1>上传文件</h1>" in await page(client, "/upload")  # remembered

        # an organisation not yet on chain: neither the page nor its entry
        await login(client, NEWCOMER_USER, PASSWORD)
        refused = await page(client, "/upload?lang=en", 403)
        assert "not a member of the chain yet" in refused
        assert "/upload" not in nav_links(await page(client, "/"))
        assert "<input type=file" not in refused
    finally:
        await client.close()


def test_the_entry_needs_the_scope_an_organisation_on_chain_and_a_signed_in_user() -> None:
    on_chain = Principal(org_id=1, chain_org=rs.TERMINAL, user_id=1, role="member",
                         scopes=ROLE_SCOPES["member"], via="session")
    assert may_upload(on_chain)
    assert not may_upload(dataclasses.replace(on_chain, scopes=frozenset({"tracking:read"})))
    assert not may_upload(dataclasses.replace(on_chain, chain_org=None))
    assert not may_upload(dataclasses.replace(on_chain, via="api_key"))
    assert not may_upload(None)


def sentence(code: str, lang: str = "en") -> str:
    return i18n.catalogue(lang)["upload.code." + code]


async def test_the_calls_the_page_makes_with_the_session(tmp_path: Path) -> None:
    client = await started(tmp_path / "gw")
    try:
        csrf = await login(client, TERMINAL_USER, PASSWORD)
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream"}

        async def post(path: str, data: bytes, status: int) -> dict[str, Any]:
            resp = await client.post(path, data=data, headers=headers)
            body: dict[str, Any] = await resp.json()
            assert resp.status == status, body
            return body

        # without the session's CSRF token the gateway refuses: the script sends it
        resp = await client.post("/v1/feeds/auto?dryRun=true", data=COARRI.read_bytes())
        assert resp.status == 403
        checked = await post("/v1/feeds/auto?dryRun=true", COARRI.read_bytes(), 200)
        assert checked["format"] == "edifact" and checked["summary"]["errors"] == 0
        assert checked["summary"]["accepted"] == {"events": 21, "readings": 0}

        broken = await post("/v1/feeds/edifact?dryRun=true", BROKEN.read_bytes(), 200)
        errors = [(x["line"], x.get("segment"), x["code"]) for x in broken["report"]
                  if x["kind"] == "error"]
        assert errors == [(1, None, "bad-interchange-header"),
                          (8, 7, "segment-count-mismatch")]
        # the role check decides per message: a terminal may not publish a release order
        release = await post("/v1/feeds/auto?dryRun=true", RELEASE.read_bytes(), 200)
        refusals = [x for x in release["report"] if x["kind"] == "error"]
        assert [x["code"] for x in refusals] == ["role-not-allowed"] and refusals[0]["line"] > 0
        assert release["summary"]["accepted"] == {"events": 0, "readings": 0}
        for code in ("bad-interchange-header", "segment-count-mismatch", "role-not-allowed",
                     "nothing-accepted", "wrong-format", "payload-too-large"):
            assert sentence(code) and sentence(code, "zh-Hant") and sentence(code, "zh-Hans")
        nothing = await post("/v1/feeds/auto", RELEASE.read_bytes(), 422)
        assert nothing["error"]["code"] == "nothing-accepted"
        assert nothing["error"]["details"]["report"] == release["report"]

        submitted = await post(f"/v1/feeds/edifact?visibility=reference&readers={rs.CARRIER}",
                               COARRI.read_bytes(), 202)
        keys = [r["id"] for r in submitted["receipts"]]
        assert len(keys) == 21 and {r["status"] for r in submitted["receipts"]} == {"accepted"}
        resp = await client.get("/v1/submissions/" + keys[0])
        assert resp.status == 200 and (await resp.json())["status"] == "accepted"

        # another organisation's user never sees the terminal's submissions
        await login(client, CARRIER_USER, PASSWORD)
        resp = await client.get("/v1/submissions/" + keys[0])
        assert resp.status == 404, await resp.text()
        assert keys[0] not in await page(client, "/upload")
    finally:
        await client.close()


def test_every_error_code_the_sample_files_give_has_a_sentence_in_each_language() -> None:
    codes: dict[str, str] = {}
    for path in sorted((ROOT / "tests" / "data").rglob("*")):
        if not path.is_file() or path.suffix in (".md", ".chk") or path.name.startswith(
                "LICENSE"):
            continue
        data = path.read_bytes()
        name = formats.detect(data[:65536])
        if name is None:
            continue
        for error in formats.parse(data, received_at=int(time.time()), name=name).errors:
            codes.setdefault(error.code, path.name)
    assert len(codes) >= 20
    for lang in i18n.LANGUAGES:
        missing = {c: f for c, f in codes.items()
                   if "upload.code." + c not in i18n.catalogue(lang)}
        assert missing == {}, lang


# -- real Chromium against a real node ------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("upload") / "node", REPO_GENESIS).start()
    try:
        yield process
    finally:
        process.stop()


_DROP = """async ([name, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "application/edifact"}));
  const zone = document.getElementById("dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                            cancelable: true}));
  }
}"""


async def rows(tab: Any) -> list[tuple[str, str, str]]:
    """The report's rows: (line, what, detail) as the reader sees them."""
    found: list[tuple[str, str, str]] = await tab.eval_on_selector_all(
        "#report-lines tbody tr",
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[2].textContent, "
        "r.cells[3].textContent])")
    return found


@pytest.mark.integration
async def test_in_chromium_a_terminal_checks_submits_and_follows_real_edifact_to_final(
        node: NodeProcess, tmp_path: Path) -> None:
    client = await started(tmp_path / "gw", node.url)
    base = str(client.make_url("")).rstrip("/")
    big = tmp_path / "yard-moves-2026.edi"
    with big.open("wb") as handle:  # sparse: over the limit without writing 50 MB
        handle.truncate(MAX_FEED_BYTES + 1)
    files = {"desktop": (COARRI, 21), "phone": (CODECO, 2)}
    try:
        async with chromium() as browser:
            for size, viewport in SIZES.items():
                sample, events = files[size]
                context = await browser.new_context(viewport=viewport, locale="en-GB",
                                                    timezone_id="Asia/Hong_Kong")
                watched = await open_page(context)
                tab = watched.page
                sent: list[str] = []

                def seen(request: Any, sent: list[str] = sent) -> None:
                    if "/v1/feeds/" in request.url:
                        sent.append(request.url)

                tab.on("request", seen)
                await tab.goto(base + "/login?next=/upload")
                await tab.fill("#email", TERMINAL_USER)
                await tab.fill("#password", PASSWORD)
                await tab.click("#login-form button")
                await tab.wait_for_url(base + "/upload")
                await tab.wait_for_selector("#upload-form[data-ready]", state="attached")
                assert await tab.get_attribute('nav a[href="/upload"]', "aria-current") == "page"
                await screenshot(tab, f"upload-page-{size}")

                # a real file: its size, the check (nothing recorded), then the submission; at the
                # office it is chosen with the keyboard only (Tab to the drop zone, Space)
                if size == "desktop":
                    for _ in range(40):
                        await tab.keyboard.press("Tab")
                        if await tab.evaluate("() => document.activeElement.id") == "file":
                            break
                    assert await tab.evaluate(
                        "() => getComputedStyle(document.getElementById('dropzone'))"
                        ".outlineStyle") == "solid"  # the focus is visible on the zone
                    await choose_with_space(tab, sample)
                else:
                    await tab.set_input_files("#file", str(sample))
                chosen = await tab.text_content("#chosen") or ""
                assert sample.name in chosen and f"{sample.stat().st_size:,} bytes" in chosen
                assert await tab.is_disabled("#submit")
                await tab.click("#check")
                await tab.wait_for_selector("#report:not([hidden]) #report-lines")
                assert len(await rows(tab)) == events
                assert all(what == "Event" for _, what, _ in await rows(tab))
                assert "nothing was recorded" in (await tab.text_content("#upload-message") or "")
                summary = await tab.text_content("#report .upload-summary") or ""
                assert "Errors0" in summary.replace(" ", "") and f"{events} events" in summary
                # who may read: the carrier named at the office, reference holders on the phone
                if size == "desktop":
                    await tab.click("#readers-box summary")
                    await tab.check(f"input[name=readers][value='{rs.CARRIER}']")
                else:
                    await tab.check("input[name=visibility][value=reference]")
                assert await tab.is_disabled("#submit")  # the check was made for other readers
                await tab.click("#check")
                await tab.wait_for_function(
                    "() => !document.getElementById('submit').disabled")
                await screenshot(tab, f"upload-check-{size}")
                await tab.click("#submit")
                await tab.wait_for_selector("#progress:not([hidden]) #progress-bar")
                await tab.wait_for_function(
                    "() => (document.getElementById('progress-status')?.textContent || '')"
                    ".startsWith('All ')", timeout=60_000)
                status = await tab.text_content("#progress-status") or ""
                assert status == f"All {events} events are final on the chain."
                assert await tab.get_attribute("#progress-bar", "value") == str(events)
                final = await tab.text_content('#progress-counts [data-status="final"] dd')
                assert final == str(events)
                await screenshot(tab, f"upload-final-{size}")
                wanted = (f"visibility=named&readers={rs.CARRIER}" if size == "desktop"
                          else "visibility=reference")
                # the first check, the second with the readers chosen, and the submission
                assert [(wanted in url, "dryRun=true" in url) for url in sent] == [
                    (False, True), (True, True), (True, False)], sent
                if size == "desktop":  # the carrier named as reader reads the discharges
                    await login(client, CARRIER_USER, PASSWORD)

                    async def read() -> bool:
                        resp = await client.get("/v1/track/FCIU9908030")
                        return resp.status == 200 and "TERMINAL.DISC" in await resp.text()

                    await wait_until(read, timeout=30, what="the carrier reads the discharge")

                # a file with errors: each on its line, in words, the server's message beside;
                # on the phone it is dropped on the drop zone
                if size == "phone":
                    await tab.evaluate(_DROP, [BROKEN.name, list(BROKEN.read_bytes())])
                else:
                    await tab.set_input_files("#file", str(BROKEN))
                assert BROKEN.name in (await tab.text_content("#chosen") or "")
                assert await tab.is_hidden("#progress")
                await tab.select_option("#format", "edifact")
                await tab.click("#check")
                await tab.wait_for_selector("#report:not([hidden]) #report-lines")
                lines = await rows(tab)
                assert [(line, what) for line, what, _ in lines] == [("1", "Error"),
                                                                    ("8", "Error")]
                assert sentence("bad-interchange-header") in lines[0][2]
                assert "Server: UNB date/time" in lines[0][2]
                assert sentence("segment-count-mismatch") in lines[1][2]
                assert "Nothing in this file can be accepted" in (
                    await tab.text_content("#upload-message") or "")
                assert await tab.is_disabled("#submit")
                await screenshot(tab, f"upload-errors-{size}")

                # the API's role check, per message: a terminal may not publish a release order
                if size == "desktop":
                    await tab.set_input_files("#file", str(RELEASE))
                    await tab.click("#check")
                    await tab.wait_for_selector("#report:not([hidden]) #report-lines")
                    refused = await rows(tab)
                    assert sorted(what for _, what, _ in refused) == ["Error", "Refused", "Refused"]
                    assert len({line for line, _, _ in refused}) == 1  # the message's line
                    why = next(detail for _, what, detail in refused if what == "Error")
                    assert sentence("role-not-allowed") in why
                    assert "SHIPMENT events are published by" in why
                    assert await tab.is_disabled("#submit")
                    await screenshot(tab, f"upload-refused-{size}")

                # over the limit: refused here, nothing sent
                before = len(sent)
                await tab.set_input_files("#file", str(big))
                message = await tab.text_content("#upload-message") or ""
                assert "a file may be at most 50 MB" in message and big.name in message
                await tab.click("#check")
                assert len(sent) == before
                await screenshot(tab, f"upload-too-big-{size}")

                # in Chinese: the page and the report's sentences
                await tab.click("nav.languages a[lang=zh-Hant]")
                await tab.wait_for_selector("html[lang=zh-Hant]")
                await tab.wait_for_selector("#upload-form[data-ready]", state="attached")
                assert await tab.text_content("h1") == "上載檔案"
                await tab.set_input_files("#file", str(BROKEN))
                await tab.click("#check")
                await tab.wait_for_selector("#report:not([hidden]) #report-lines")
                chinese = await rows(tab)
                assert sentence("segment-count-mismatch", "zh-Hant") in chinese[1][2]
                assert chinese[1][1] == "錯誤" and "伺服器：" in chinese[1][2]
                await screenshot(tab, f"upload-zh-Hant-{size}")
                await tab.click("nav.languages a[lang=en]")
                assert watched.problems == [], watched.problems
                await context.close()
    finally:
        await client.close()
        big.unlink()
