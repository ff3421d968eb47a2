"""Real Chromium for page tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no browser
download). A test fails — never skips — when Chromium is missing.

:func:`chromium` opens the browser; :func:`open_page` a page at a viewport size whose console
errors, page errors and failed responses are collected; :func:`screenshot` writes a full-page
screenshot to :data:`SCREENSHOT_DIR` (looked at by a person before a page is called done) and
checks that nothing makes the page wider than its viewport (usable on a phone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: Where the pages' screenshots are written.
SCREENSHOT_DIR = Path("/tmp/portledger-pages")
#: The sizes every page is tested at: an office screen and a phone.
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    problems: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium, headless."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (the page tests need it)")
    # playwright is heavy and only the browser tests need it
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(context: Any) -> Watched:
    """A new page of ``context`` whose errors are collected."""
    page = await context.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page)
    page.on("console", lambda m: m.type == "error" and watched.problems.append(m.text))
    page.on("pageerror", lambda exc: watched.problems.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and watched.failed.append((r.status, r.url)))
    return watched


async def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot ``<name>.png``; fails when the page scrolls sideways."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    overflow = await page.evaluate(
        "() => document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than the viewport"
    return path
