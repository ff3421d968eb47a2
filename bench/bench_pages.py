"""The shipment page with 1 M events indexed: server time to the full HTML, data shown, and the
JavaScript a browser loads before the map's data.

    python -m bench.bench_pages [--events 1000000] [--tracked 300] [--pages 200]
                                [--data-dir DIR] [--keep] [--browser]

1. **Fill** a read model exactly as ``bench/bench_tracking.py`` does (:func:`fill`: the demo
   organisations, ``events / 10`` containers with 10 events each, a master B/L per 4 boxes and
   a house B/L per master covering 2; the ``--tracked`` shipments really sealed and readable by
   whoever holds their numbers). ``--data-dir`` with ``--keep`` reuses a fill.
2. **Serve** the real gateway (:func:`gateway.app.create_app`, every module, background work
   off) on loopback in this process; a user of the trader organisation signs in with a
   password (``POST /v1/session``), as a person would.
3. **Measure**, with a keep-alive client on the same loopback:

   - *first render*: ``GET /track?q=<house B/L>`` for ``--pages`` different tracked house B/Ls
     never asked before (no view cached: visibility, decryption, view assembly, the timeline in
     words and the whole page) — the time until the last byte of the HTML has arrived, which is
     when everything the page shows is there (it is rendered by the server; the script adds
     only the viewer's times and draws the map);
   - *again*: the same pages a second time (the view cache's hit);
   - *not found*: typo'd references (the resolver's suggestions, a 404 page);
   - *JavaScript before the map's data*: the bytes of the pages' script
     (``/static/portledger.js``) and the map's scripts a shipment page with a vessel names
     (Leaflet, topojson-client), as sent and gzip-compressed; the map's land data comes after.

   With ``--browser``, real Chromium (``/usr/bin/chromium``) also opens ``--browser-pages``
   of them: navigation start to ``responseEnd`` of the document and to ``DOMContentLoaded``
   (the page's data shown), and to the map drawn (its land layer in the DOM).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_tracking import PASSPHRASE, TRADER, fill, typo

EMAIL, PASSWORD = "bench@trader.example", "correct horse battery staple"


def _config(data_dir: Path) -> Any:
    from gateway.config import GatewayConfig

    return GatewayConfig(
        data_dir=data_dir, keystore_passphrase=PASSPHRASE, host="127.0.0.1", port=0,
        log_json=False, background_tasks=False, cookie_secure=False,
        rate_limit_per_key=1e6, rate_limit_per_address=1e6, rate_limit_burst=1_000_000)


def trader_user(data_dir: Path) -> None:
    """A user of the trader organisation (active, its chain id, its keys in the keystore)."""
    import os

    from devnet.members import DEMO_ORGANISATIONS
    from gateway.accounts.store import Accounts
    from gateway.confidential import keystore
    from node.genesis import dev_key, dev_x25519

    accounts = Accounts.open(_config(data_dir))
    try:
        org = accounts.by_chain_org(TRADER)
        if org is None:
            org = accounts.create_organisation(DEMO_ORGANISATIONS[TRADER - 1][0], ["forwarder"],
                                               status="active", chain_org=TRADER)
        store = keystore.Keystore(data_dir / "keystore", PASSPHRASE)
        try:
            store.get(org.id)
        except KeyError:
            store.import_keys(org.id, signing_key=dev_key("org:12").to_bytes(),
                              x25519_private=dev_x25519("org:12"), master_secret=os.urandom(32))
        if accounts.user_by_email(EMAIL) is None:
            accounts.create_user(org.id, EMAIL, PASSWORD, "member")
    finally:
        accounts.close()


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


async def _timed(session: Any, url: str) -> tuple[float, int, str]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.text()
    return time.perf_counter() - started, resp.status, body


async def measure(data_dir: Path, refs: dict[str, list[str]], pages: int, browser: int,
                  ) -> dict[str, Any]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from gateway.app import create_app
    from gateway.ui import maps

    server = TestServer(create_app(_config(data_dir)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            resp = await session.post(base + "/v1/session",
                                      json={"email": EMAIL, "password": PASSWORD})
            assert resp.status == 200, await resp.text()
            houses = random.Random(7).sample(refs["hbl"], min(pages, len(refs["hbl"])))
            first, again, sizes = [], [], []
            for hbl in houses:
                seconds, status, body = await _timed(session, f"{base}/track?q={hbl}&lang=en")
                assert status == 200 and "id=timeline" in body, (status, body[-3000:])
                first.append(seconds)
                sizes.append(len(body.encode()))
            for hbl in houses:
                seconds, status, _ = await _timed(session, f"{base}/track?q={hbl}")
                again.append(seconds)
            missing = []
            rnd = random.Random(11)
            for hbl in houses[:50]:
                seconds, status, body = await _timed(session, f"{base}/track?q="
                                                     + typo(hbl, rnd))
                assert status in (404, 200), status
                missing.append(seconds)
            out["first_render"] = _ms(first)
            out["again"] = _ms(again)
            out["not_found"] = _ms(missing)
            out["html_bytes_p50"] = int(statistics.median(sizes))
            scripts = {"/static/portledger.js": 0}
            scripts.update({a: 0 for a in maps.ASSETS if a.endswith(".js")})
            compressed = 0
            for path in scripts:
                async with session.get(base + path) as resp:
                    data = await resp.read()
                scripts[path] = len(data)
                compressed += len(gzip.compress(data, 6))
            out["javascript_before_map_data"] = {"bytes": sum(scripts.values()),
                                                 "gzip_bytes": compressed, "files": scripts}
            async with session.get(base + maps.LAND) as resp:
                out["map_land_bytes"] = len(await resp.read())
        if browser:
            out["browser"] = await _browser(base, houses[:browser])
    finally:
        await server.close()
    return out


async def _browser(base: str, houses: list[str]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    response_end, loaded, drawn = [], [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(base + "/login?next=/")
            await page.fill("#email", EMAIL)
            await page.fill("#password", PASSWORD)
            await page.click("#login-form button")
            await page.wait_for_url(base + "/")
            for hbl in houses:
                started = time.perf_counter()
                await page.goto(f"{base}/track?q={hbl}")
                timing = await page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return [n.responseEnd, n.domContentLoadedEventEnd]; }")
                response_end.append(timing[0] / 1000)
                loaded.append(timing[1] / 1000)
                if await page.locator("#map").count():
                    await page.wait_for_selector("#map path", timeout=15_000)
                    drawn.append(time.perf_counter() - started)
        finally:
            await browser.close()
    result = {"document_response_end": _ms(response_end),
              "dom_content_loaded": _ms(loaded)}
    if drawn:
        result["map_drawn_from_click"] = _ms(drawn)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tracked", type=int, default=300)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--browser-pages", type=int, default=20)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-pages-"))
    refs_file = data_dir / "bench-pages-refs.json"
    result: dict[str, Any] = {}
    try:
        if refs_file.exists():
            refs = json.loads(refs_file.read_text())
            result["fill"] = "reused"
        else:
            filled = fill(data_dir, args.events, args.tracked)
            refs = filled["refs"]
            refs_file.write_text(json.dumps(refs))
            result["fill"] = {k: v for k, v in filled.items() if k != "refs"}
        trader_user(data_dir)
        result.update(asyncio.run(measure(data_dir, refs, args.pages,
                                          args.browser_pages if args.browser else 0)))
    finally:
        if not args.keep and args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
