"""Real Chromium for page tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no browser
download). A test fails — never skips — when Chromium is missing.

:func:`chromium` opens the browser; :func:`open_page` a page at a viewport size whose console
errors, page errors and failed responses are collected; :func:`screenshot` writes a full-page
screenshot to :data:`SCREENSHOT_DIR` (looked at by a person before a page is called done),
checks that nothing makes the page wider than its viewport (usable on a phone) and that axe-core
finds no serious or critical WCAG 2.1 AA violation (:func:`accessibility`), so every page test
checks all three.

axe-core comes from npm, pinned by ``tests/support/js/package-lock.json`` and installed with
``npm ci`` on first use (as ``tests/node/test_ethers.py`` installs ethers); it is evaluated in
the page through the DevTools protocol, which the pages' CSP (``default-src 'self'``, no inline
script) does not govern, so the pages are checked under their real policy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.ui.shell import STATIC_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: Where the pages' screenshots are written.
SCREENSHOT_DIR = Path("/tmp/portledger-pages")
#: The sizes every page is tested at: an office screen and a phone.
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
#: The npm project pinning axe-core.
JS_DIR = Path(__file__).resolve().parent / "js"
AXE = JS_DIR / "node_modules" / "axe-core" / "axe.min.js"
#: The rules axe runs: WCAG 2.0 and 2.1, levels A and AA.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: The impacts a page test fails on.
FAILING_IMPACTS = ("serious", "critical")


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    problems: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


@asynccontextmanager
async def chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Any]:
    """Debian's Chromium, headless (``extra_args``: more command-line switches, e.g. a fake
    camera)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (the page tests need it)")
    # playwright is heavy and only the browser tests need it
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(context: Any) -> Watched:
    """A new page of ``context`` whose errors are collected."""
    page = await context.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page)

    def console(message: Any) -> None:
        if message.type == "error":
            watched.problems.append(message.text)

    def response(answer: Any) -> None:
        if answer.status >= 400:
            watched.failed.append((answer.status, answer.url))

    page.on("console", console)
    page.on("pageerror", lambda exc: watched.problems.append(str(exc)))
    page.on("response", response)
    return watched


def axe_source() -> str:
    """axe-core's script (``npm ci`` in :data:`JS_DIR` the first time)."""
    if not AXE.exists():
        if shutil.which("npm") is None:
            # CI installs node and npm (.ci/run); only a developer machine may lack them
            if os.environ.get("CI"):
                pytest.fail("npm is missing on CI; .ci/run should have installed it")
            pytest.skip("npm is needed to install axe-core for the page tests")
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return AXE.read_text("utf-8")


_RUN_AXE = """async ([tags, impacts]) => {
  const result = await window.axe.run(document, {runOnly: {type: "tag", values: tags},
                                                 resultTypes: ["violations"]});
  return result.violations.filter((v) => impacts.includes(v.impact)).map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => ({target: n.target.join(" "),
                                            summary: n.failureSummary})),
  }));
}"""


async def accessibility(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical WCAG 2.1 AA violations on ``page`` as it is now."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    found: list[dict[str, Any]] = await page.evaluate(_RUN_AXE, [WCAG_TAGS,
                                                                 list(FAILING_IMPACTS)])
    return found


def _described(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {v['id']} ({v['impact']}): {v['help']}" + "".join(
        f"\n    {n['target']}: {n['summary']}" for n in v["nodes"]) for v in violations)


async def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot ``<name>.png``; fails when the page scrolls sideways or axe-core
    finds a serious or critical accessibility violation."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    overflow = await page.evaluate(
        "() => document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than the viewport"
    violations = await accessibility(page)
    assert not violations, f"{name}: accessibility violations\n{_described(violations)}"
    return path


#: The installable app's icons: (SVG source, PNG written, size in pixels), in
#: ``gateway/ui/static/pwa/``.
ICONS = (("icon.svg", "icon-192.png", 192), ("icon.svg", "icon-512.png", 512),
         ("icon-maskable.svg", "icon-maskable-512.png", 512))


async def render_svg(browser: Any, svg: str, size: int) -> bytes:
    """``svg`` drawn by Chromium as a ``size`` × ``size`` PNG (transparent where it draws
    nothing)."""
    context = await browser.new_context(viewport={"width": size, "height": size},
                                        device_scale_factor=1)
    try:
        page = await context.new_page()
        await page.set_content(
            '<html><body style="margin:0">'
            + svg.replace("<svg ", f'<svg width="{size}" height="{size}" ', 1)
            + "</body></html>")
        png: bytes = await page.screenshot(omit_background=True,
                                           clip={"x": 0, "y": 0, "width": size, "height": size})
        return png
    finally:
        await context.close()


async def draw_icons(folder: Path) -> list[Path]:
    """Draw :data:`ICONS` from their SVG sources in ``folder`` (how the committed PNGs were
    made: ``.venv/bin/python -m tests.support.browser``)."""
    written = []
    async with chromium() as browser:
        for source, target, size in ICONS:
            png = await render_svg(browser, (folder / source).read_text("utf-8"), size)
            (folder / target).write_bytes(png)
            written.append(folder / target)
    return written


if __name__ == "__main__":
    # the icons are drawn once here and committed; the gateway never needs a browser
    for drawn in asyncio.run(draw_icons(STATIC_DIR / "pwa")):
        print(drawn)
