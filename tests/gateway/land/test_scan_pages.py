"""The gate and the warehouse scan pages in the real gateway: server-rendered for the right role
only (a trader, a terminal on the receive page, are refused), in Chinese too; and in real Chromium
at phone size with a fake camera playing the driver's QR code: the gate page records the
gate-out, the warehouse page scans the code, verifies it and records the receipt with the seal
mismatch shown as such; then the gate page refuses the same token as replayed, and a forged token
typed in is refused as forged."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import segno

from gateway.appkeys import ACCOUNTS
from tests.gateway.land.support import BOX1, BOX2, Land, gateway_org, job_body, ok, started
from tests.support.accounts import login
from tests.support.browser import SIZES, chromium, open_page, screenshot
from tests.support.readside import HAULIER, TERMINAL, TERMINAL2, TRADER, WAREHOUSE

PASSWORD = "correct horse battery staple"
USERS = {TERMINAL: "gate@hkct.example", WAREHOUSE: "dock@tsingyi.example",
         TRADER: "ops@sino.example"}


def y4m(text: str, path: Path, width: int = 640, height: int = 480) -> Path:
    """A Y4M video (YUV 4:2:0, two frames) of ``text``'s QR code, black on white, centred: what
    Chromium's fake camera plays (``--use-file-for-fake-video-capture``)."""
    matrix = segno.make(text, error="m", micro=False).matrix
    modules = len(matrix) + 8  # the quiet zone of 4 modules each side
    scale = min(width, height) // modules
    left, top = (width - modules * scale) // 2, (height - modules * scale) // 2
    luma = bytearray(b"\xeb" * (width * height))
    for r, line in enumerate(matrix):
        for c, dark in enumerate(line):
            if not dark:
                continue
            x, y = left + (c + 4) * scale, top + (r + 4) * scale
            for dy in range(scale):
                start = (y + dy) * width + x
                luma[start:start + scale] = b"\x10" * scale
    chroma = b"\x80" * ((width // 2) * (height // 2) * 2)
    frame = b"FRAME\n" + bytes(luma) + chroma
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode()
                     + frame + frame)
    return path


async def _setup(tmp_path: Path) -> tuple[Land, str, str]:
    """The story, the page users, a job of both boxes; its id and token."""
    land = await started(tmp_path / "gw")
    for chain_org, email in USERS.items():
        land.client.app[ACCOUNTS].create_user(gateway_org(land, chain_org), email, PASSWORD,
                                              "member")
    job = await ok(await land.client.post("/v1/land/jobs", json=job_body(land),
                                          headers=land.auth(HAULIER)), 201)
    token = await ok(await land.client.get(f"/v1/land/jobs/{job['id']}/token",
                                           headers=land.auth(HAULIER)))
    return land, job["id"], token["token"]


async def _page(client: Any, path: str, status: int = 200) -> str:
    resp = await client.get(path, headers={"Accept": "text/html"})
    text: str = await resp.text()
    assert resp.status == status, text
    return text


async def test_pages_for_their_roles_only(tmp_path: Path) -> None:
    land, job_id, _ = await _setup(tmp_path)
    client = land.client
    try:
        resp = await client.get("/scan/receive", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"].startswith("/login")
        await login(client, USERS[WAREHOUSE], PASSWORD)
        text = await _page(client, "/scan/receive")
        assert 'data-page="scan"' in text and 'data-mode="receive"' in text
        assert "Receive at the warehouse" in text and 'id=scan-condition' in text
        assert job_id not in text  # nothing of a job until the API answers for the user
        assert 'href="/scan/receive"' in text and 'href="/scan/gate-out"' not in text  # nav
        assert "Only a terminal" in await _page(client, "/scan/gate-out", 403)
        assert "倉庫收貨" in await _page(client, "/scan/receive?lang=zh-Hant")
        await login(client, USERS[TERMINAL], PASSWORD)
        text = await _page(client, "/scan/gate-out?lang=zh-Hans")
        assert "码头闸口提箱出闸" in text and 'data-mode="gate-out"' in text
        assert "只有仓库的用户" in await _page(client, "/scan/receive", 403)
        assert 'href="/scan/gate-out"' in text and 'href="/scan/receive"' not in text
        await login(client, USERS[TRADER], PASSWORD)
        text = await _page(client, "/scan/receive?lang=en", 403)
        assert "/scan/" not in text.replace("/scan/receive?lang", "")  # no nav entry either
        await _page(client, "/scan/gate-out", 403)
    finally:
        await client.close()


async def _sign_in(tab: Any, base: str, email: str, path: str) -> None:
    await tab.goto(f"{base}/login?next={path}")
    await tab.fill("#email", email)
    await tab.fill("#password", PASSWORD)
    await tab.click("#login-form button")
    await tab.wait_for_url(base + path)


async def test_scanning_in_chromium_with_a_fake_camera(tmp_path: Path) -> None:
    land, job_id, token = await _setup(tmp_path)
    client = land.client
    base = str(client.make_url("")).rstrip("/")
    video = y4m(token, tmp_path / "qr.y4m")
    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"]
    size = "phone"
    try:
        async with chromium(extra_args=args) as browser:
            context = await browser.new_context(viewport=SIZES[size], locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            await context.grant_permissions(["camera"], origin=base)
            watched = await open_page(context)
            tab = watched.page
            # the terminal scans the code at the gate and records the gate-out
            await _sign_in(tab, base, USERS[TERMINAL], "/scan/gate-out")
            await screenshot(tab, f"scan-gate-{size}")
            await tab.click("#scan-start")
            await tab.wait_for_selector("#scan-job:not([hidden])", timeout=20_000)
            claims = await tab.text_content("#scan-claims") or ""
            assert job_id in claims and BOX1 in claims and "AB1234" in claims
            assert "carrier-release" in claims
            await screenshot(tab, f"scan-gate-job-{size}")
            await tab.click("#scan-record button[type=submit]")
            await tab.wait_for_selector("#scan-done:not([hidden])")
            assert f"Gate-out of job {job_id} recorded" in (await tab.text_content(
                "#scan-outcome") or "")
            # the warehouse scans it at the door: one seal as expected, one different
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")
            await _sign_in(tab, base, USERS[WAREHOUSE], "/scan/receive")
            await tab.click("#scan-start")
            await tab.wait_for_selector("#scan-job:not([hidden])", timeout=20_000)
            assert "Expected seals: SEAL001" in (await tab.text_content("#scan-claims") or "")
            await tab.fill("#scan-seal-0", "seal001")
            await tab.fill("#scan-seal-1", "SEAL999")
            # a note whose details would not seal into one record: refused, how much fits said
            varied = random.Random(16).choices([chr(c) for c in range(0x4E00, 0x9FA6)], k=300)
            await tab.fill("#scan-condition", "".join(varied))
            await tab.click("#scan-record button[type=submit]")
            await tab.wait_for_selector("#scan[data-refused=condition-too-long]")
            message = await tab.text_content("#scan .message") or ""
            assert "condition note is too long" in message and "characters of it" in message
            assert await tab.is_hidden("#scan-done")
            await screenshot(tab, f"scan-receive-too-long-{size}")
            await tab.fill("#scan-condition", "Door dented")
            await screenshot(tab, f"scan-receive-job-{size}")
            await tab.click("#scan-record button[type=submit]")
            await tab.wait_for_selector("#scan-done:not([hidden])")
            outcome = await tab.text_content("#scan-outcome") or ""
            assert f"Receipt of job {job_id} recorded" in outcome
            assert "Seal mismatch recorded" in outcome
            assert f"{BOX1}: seals match (SEAL001)" in outcome
            assert f"{BOX2}: MISMATCH — expected SEAL002, found SEAL999" in outcome
            await screenshot(tab, f"scan-receive-done-{size}")
            await tab.goto(f"{base}/containers/{BOX2}")
            custody = await tab.text_content("#custody") or ""
            assert "Seal mismatch: expected SEAL002, found SEAL999" in custody
            await screenshot(tab, f"scan-custody-{size}")
            # the gate again with the same token: replayed; a forged one: forged
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")
            await _sign_in(tab, base, USERS[TERMINAL], "/scan/gate-out")
            await tab.click("#scan-start")
            await tab.wait_for_selector("#scan-job:not([hidden])", timeout=20_000)
            assert "already used for the gate-out" in (await tab.text_content("#scan-claims")
                                                       or "")
            await tab.click("#scan-record button[type=submit]")
            await tab.wait_for_selector("#scan[data-refused=token-replayed]")
            message = await tab.text_content("#scan .message") or ""
            assert "Refused: replayed" in message and job_id in message
            await screenshot(tab, f"scan-gate-replayed-{size}")
            head, claims_part, signature = token.split(".")
            forged = f"{head}.{claims_part}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
            await tab.fill("#scan-token", forged)
            await tab.click("#scan-paste button[type=submit]")
            await tab.wait_for_function(
                "() => document.querySelector('#scan .message').textContent.includes('forged')")
            assert await tab.is_hidden("#scan-job")
            await screenshot(tab, f"scan-gate-forged-{size}")
            assert [f for f in watched.failed
                    if "/login" not in f[1] and "/v1/land/" not in f[1]] == []
            assert [p for p in watched.problems if "status of 4" not in p] == []
            await context.close()
            # at office width: the receive page, and the trader's custody chain
            context = await browser.new_context(viewport=SIZES["desktop"], locale="en-GB",
                                                timezone_id="Asia/Hong_Kong")
            watched = await open_page(context)
            tab = watched.page
            await _sign_in(tab, base, USERS[WAREHOUSE], "/scan/receive")
            await screenshot(tab, "scan-receive-desktop")
            await tab.click("#signout")
            await tab.wait_for_url(base + "/")
            await _sign_in(tab, base, USERS[TRADER], f"/containers/{BOX2}")
            custody = await tab.text_content("#custody") or ""
            assert "Gate-out at the terminal" in custody and "SEAL" not in custody
            await screenshot(tab, "scan-custody-desktop")
            assert watched.problems == [], watched.problems
            await context.close()
    finally:
        await client.close()


async def test_custody_chain_on_the_container_view(tmp_path: Path) -> None:
    land, job_id, token = await _setup(tmp_path)
    client = land.client
    try:
        await ok(await client.post("/v1/land/gate-out", json={"token": token},
                                   headers=land.auth(TERMINAL)), 201)
        await ok(await client.post("/v1/land/receipts", json={
            "token": token, "seals": {BOX1: ["SEAL001"], BOX2: ["SEAL777"]},
            "condition": "Door dented"}, headers=land.auth(WAREHOUSE)), 201)
        # the warehouse (addressed): every step, who signed it, seals and condition
        await login(client, USERS[WAREHOUSE], PASSWORD)
        text = await _page(client, f"/containers/{BOX2}")
        section = text[text.index('id=custody'):text.index('id=reefer')]
        assert f"Job {job_id} (delivered)" in section
        assert "Carrier release" not in section  # the carrier named no warehouse
        assert "Gate-out at the terminal" in section and "Truck AB1234" in section
        assert "Recorded by Hong Kong Container Terminal, to be signed by it" in section
        assert "Receipt at the warehouse" in section and "Recorded by Tsing Yi Warehouse" in section
        assert "Seal mismatch: expected SEAL002, found SEAL777" in section
        assert "Condition: Door dented" in section
        assert "Not yet on chain (accepted)" in section  # no node here: in the outbox
        assert section.index("Gate-out") < section.index("Receipt at the warehouse")
        text = await _page(client, f"/containers/{BOX1}?lang=zh-Hant")
        assert "監管鏈" in text and "封條相符：SEAL001" in text
        # the trader reads the boxes (named by the carrier): the chain, no seals or condition
        await login(client, USERS[TRADER], PASSWORD)
        text = await _page(client, f"/containers/{BOX2}?lang=en")
        section = text[text.index('id=custody'):text.index('id=reefer')]
        assert f"Job {job_id}" in section and "Gate-out at the terminal" in section
        assert "Carrier release" in section and "Signed by Pacific Ocean Line" in section
        assert "On chain: block 3, transaction 0x" in section
        assert section.index("Carrier release") < section.index("Gate-out") < section.index(
            "Receipt at the warehouse")
        assert "SEAL" not in section and "Door dented" not in section
        # the other terminal sees nothing of the job
        other = await _other_terminal_user(land)
        await login(client, other, PASSWORD)
        text = await _page(client, f"/containers/{BOX2}")
        section = text[text.index('id=custody'):text.index('id=reefer')]
        assert job_id not in section and "No land job of this container" in section
    finally:
        await client.close()


async def _other_terminal_user(land: Land) -> str:
    email = "gate@other.example"
    land.client.app[ACCOUNTS].create_user(gateway_org(land, TERMINAL2), email, PASSWORD,
                                          "member")
    return email
