"""The pages' shell: the catalogue in three languages (no key missing, none twice, the same
placeholders, every key the code names known), language negotiation, the formats, the one script
composed from its parts, the catalogue endpoint, and the SVG chart."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.config import GatewayConfig
from gateway.ui import i18n
from gateway.ui.charts import Point, Span, temperature_chart
from gateway.ui.shell import SCRIPT_PARTS, SECURITY_HEADERS
from tests.support.accounts import login

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
#: A literal catalogue key passed to a translator in Python (t("x.y"), self("x.y")) or in the
#: script (t("x.y"), P.t("x.y")); a prefix of a key built at run time ("kind." + kind) is not one.
_PY_KEY = re.compile(r"""\b(?:t|self)\(\s*["']([a-z][a-z0-9_-]*\.[a-zA-Z0-9_.-]*[a-zA-Z0-9_-])["']""")
_JS_KEY = re.compile(r"""\bt\(\s*["']([a-z][a-z0-9_-]*\.[a-zA-Z0-9_.-]*[a-zA-Z0-9_-])["']""")


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    assert i18n.check_catalogues() == []
    for lang in i18n.LANGUAGES:
        assert i18n.catalogue(lang).keys() == i18n.catalogue("en").keys(), lang


def test_every_key_the_code_names_is_in_the_catalogue() -> None:
    english = i18n.catalogue("en")
    used: dict[str, str] = {}
    for path in (ROOT / "gateway").rglob("*.py"):
        for key in _PY_KEY.findall(path.read_text("utf-8")):
            used.setdefault(key, str(path.relative_to(ROOT)))
    for path in SCRIPT_PARTS.glob("*.js"):
        for key in _JS_KEY.findall(path.read_text("utf-8")):
            used.setdefault(key, str(path.relative_to(ROOT)))
    assert len(used) > 50
    missing = {k: where for k, where in used.items() if k not in english}
    assert missing == {}


def test_a_missing_or_doubled_key_is_found(tmp_path: Path, monkeypatch: Any) -> None:
    for lang in i18n.LANGUAGES:
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "a.json").write_text('{"x.one": "{n} one", "x.two": "two"}')
    (tmp_path / "zh-Hant" / "a.json").write_text('{"x.one": "一"}')
    (tmp_path / "zh-Hans" / "b.json").write_text('{"x.two": "二"}')
    monkeypatch.setattr(i18n, "CATALOGUE_DIR", tmp_path)
    i18n.catalogue.cache_clear()
    try:
        with pytest.raises(i18n.CatalogueError, match="defined in another area"):
            i18n.catalogue("zh-Hans")
        (tmp_path / "zh-Hans" / "b.json").unlink()
        problems = i18n.check_catalogues()
        assert "zh-Hant: missing 'x.two'" in problems
        assert any("zh-Hant: 'x.one' takes []" in p for p in problems)
    finally:
        i18n.catalogue.cache_clear()


@pytest.mark.parametrize(("query", "cookie", "accept", "expected"), [
    (None, None, None, "en"),
    ("zh-Hant", "en", "zh-CN", "zh-Hant"),  # the switch wins
    ("klingon", "zh-Hans", None, "zh-Hans"),  # an unknown ?lang= is ignored: the cookie
    (None, "bogus", "zh-HK,zh;q=0.9,en;q=0.8", "zh-Hant"),
    (None, None, "zh-TW", "zh-Hant"),
    (None, None, "zh-Hant-HK", "zh-Hant"),
    (None, None, "zh-CN,en;q=0.5", "zh-Hans"),
    (None, None, "zh", "zh-Hans"),
    (None, None, "fr-FR,en;q=0.3,zh;q=0.2", "en"),
    (None, None, "en;q=0.1,zh-HK;q=0.9", "zh-Hant"),  # by quality, not by order
    (None, None, "de, fr", "en"),
    (None, None, "zh;q=abc", "en"),  # a broken quality counts as 0
])
def test_language_negotiation(query: str | None, cookie: str | None, accept: str | None,
                              expected: str) -> None:
    assert i18n.negotiate(query, cookie, accept) == expected


def test_formats_per_language() -> None:
    en, hant, hans = (i18n.Translator(lang) for lang in i18n.LANGUAGES)
    moment = 1_794_103_200  # 2026-11-08T02:00:00Z
    assert en.when(moment) == "8 Nov 2026, 10:00 HKT"
    assert hant.when(moment) == "2026年11月8日 10:00 HKT"
    assert hans.when("2026-11-08T02:00:00Z") == "2026年11月8日 10:00 HKT"
    assert en.when(None) == "—" and en.when("not a time") == "—"
    assert en.day("2026-11-06") == "6 Nov 2026" and hant.day("2026-11-06") == "2026年11月6日"
    assert en.money(1240) == "HK$1,240" and en.money("1240.5") == "HK$1,240.50"
    assert hans.money(0) == "HK$0" and en.money(12, "USD") == "USD 12"
    assert en.duration(2 * 86400 + 5 * 3600) == "2 d 5 h"
    assert hant.duration(45 * 60) == "45 分鐘" and hans.duration(3 * 3600) == "3 小时 0 分钟"
    assert en("nav.unread", count=3) == "3 unread"
    assert en("no.such.key") == "no.such.key"  # shown, not crashing
    assert i18n.iso(moment) == "2026-11-08T02:00:00Z" and i18n.iso(None) == ""


def test_the_chart_marks_excursions_and_escapes() -> None:
    points = [Point(1000 + i * 600, t, -18.0) for i, t in enumerate([-18, -15, -14, -18])]
    svg = temperature_chart(points, [Span(1600, 2800, "<b>peak</b>")], title="T<",
                            description="d&", time_label=str)
    assert svg.count("<rect class=chart-excursion") == 1
    assert "&lt;b&gt;peak&lt;/b&gt;" in svg and "<b>" not in svg and "T&lt;" in svg
    assert "style=" not in svg and "<script" not in svg
    assert "chart-setpoint" in svg and "chart-line" in svg
    assert temperature_chart([Point(1, None)], [], title="", description="",
                             time_label=str) == ""


async def test_the_script_and_the_catalogue_are_served_with_their_headers(
        aiohttp_client: Any, gateway_config: GatewayConfig) -> None:
    client = await aiohttp_client(create_app(gateway_config))
    resp = await client.get("/static/portledger.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    script = await resp.text()
    parts = sorted(p.name for p in SCRIPT_PARTS.glob("*.js"))
    assert parts[0] == "00-shell.js" and all(f"// --- {p}" in script for p in parts)
    assert script.index("// --- 00-shell.js") < script.index(f"// --- {parts[-1]}")
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value
    packed = await client.get("/static/portledger.js", headers={"Accept-Encoding": "gzip"},
                              auto_decompress=False)
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Vary"] == (
        "Accept-Encoding")
    assert gzip.decompress(await packed.read()).decode() == script
    again = await client.get("/static/portledger.js",
                             headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    leaflet = await client.get("/static/vendor/leaflet/leaflet.js")
    assert leaflet.status == 200 and leaflet.headers["Cache-Control"] == "public, max-age=604800"
    css = await client.get("/static/portledger.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert "/* --- 00-shell.css */" in await css.text() and ".chart-line" in await css.text()
    zh = await client.get("/i18n/zh-Hant.json")
    assert zh.status == 200 and (await zh.json())["nav.alerts"] == "警示"
    assert zh.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    assert (await client.get("/i18n/xx.json")).status == 404
    page = await (await client.get("/login?lang=zh-Hans")).text()
    assert '<html lang="zh-Hans">' in page and "登录" in page
    assert 'lang="zh-Hant" hreflang="zh-Hant"' in page
    # an address that does not exist: a page for a browser, the JSON error for the API
    missing = await client.get("/no/such/page?lang=zh-Hant", headers={"Accept": "text/html"})
    assert missing.status == 404 and missing.content_type == "text/html"
    assert "此地址沒有頁面。" in await missing.text()
    assert missing.headers["Content-Security-Policy"] == SECURITY_HEADERS[
        "Content-Security-Policy"]
    api_missing = await client.get("/v1/no-such-thing", headers={"Accept": "text/html"})
    assert api_missing.status == 404 and api_missing.content_type == "application/json"
    plain = await client.get("/no/such/page")
    assert plain.status == 404 and plain.content_type == "application/json"


async def test_the_language_is_remembered_per_user(aiohttp_client: Any,
                                                   gateway_config: GatewayConfig) -> None:
    """Chosen on one device (a session), the language follows the user to another (a new
    session without the cookie), before Accept-Language; another user keeps their own."""
    app = create_app(gateway_config)
    client = await aiohttp_client(app)
    accounts = app[ACCOUNTS]
    org = accounts.create_organisation("Sino Trading", ["forwarder"], {}, status="active")
    for email in ("one@sino.example", "two@sino.example"):
        accounts.create_user(org.id, email, PASSWORD, "member")
    await login(client, "one@sino.example", PASSWORD)
    switched = await client.get("/access-log?lang=zh-Hans")
    assert '<html lang="zh-Hans">' in await switched.text()
    await login(client, "one@sino.example", PASSWORD)  # another device: no cookie
    other_device = await client.get("/access-log", headers={"Accept-Language": "en-GB"})
    assert '<html lang="zh-Hans">' in await other_device.text()
    await login(client, "two@sino.example", PASSWORD)
    theirs = await client.get("/access-log", headers={"Accept-Language": "zh-HK"})
    assert '<html lang="zh-Hant">' in await theirs.text()
    client.session.cookie_jar.clear()
    anonymous = await client.get("/login", headers={"Accept-Language": "en"})
    assert '<html lang="en">' in await anonymous.text()
