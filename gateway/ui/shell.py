"""The pages' shell: the page around every feature's content, its navigation, its language and
its security headers.

Pages are server-rendered HTML with one small vanilla script (``static/portledger.js``) and one
stylesheet; no CDN, no framework, no inline script or style, so they run under
``Content-Security-Policy: default-src 'self'``. Values the server puts into a page go through
:func:`html.escape` (``e``); the script builds what it builds with ``textContent`` only.

A feature adds its pages with a :class:`Pages` table (``pages.get(path)`` like aiohttp's route
table) and ``pages.setup(app)``; its navigation entries with :func:`add_nav` (a catalogue key, a
condition on the signed-in user and optionally a badge, e.g. the unread alerts). A page handler
gets its :class:`~gateway.ui.i18n.Translator` from :func:`translator` and returns
:func:`render`. Pages that need a signed-in user call :func:`signed_in` (redirect to
``/login?next=``; :class:`PageRefused` becomes a translated 403 page).

Every page shows the language switch (``?lang=`` on the same page; the choice is remembered in
a cookie) and sets ``<html lang>`` to ``en``, ``zh-Hant`` or ``zh-Hans``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from gateway.accounts.auth import SESSION_CSRF
from gateway.appkeys import ACCOUNTS, CONFIG, HTML_NOT_FOUND
from gateway.principal import Principal, principal_of
from gateway.ui.i18n import COOKIE, LANGUAGES, NATIVE_NAMES, Translator, catalogue_json, negotiate
from gateway.ui.preferences import LanguageStore

#: Folder of the static files: the script's and the stylesheet's parts, icons, vendored assets.
STATIC_DIR = Path(__file__).parent / "static"
#: The script's parts, served together as ``/static/portledger.js`` in name order (the shell's
#: ``00-shell.js`` first; each feature adds its own part).
SCRIPT_PARTS = STATIC_DIR / "js"
#: The stylesheet's parts, served together as ``/static/portledger.css`` the same way.
STYLE_PARTS = STATIC_DIR / "css"

#: Headers of every page and static file.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

e = html.escape
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation."""

    path: str
    #: Catalogue key of its label.
    label: str
    #: Where it sits (lower first).
    order: int
    #: Whether the signed-in user (or nobody) sees it.
    visible: Callable[[Principal | None], bool]
    #: A number shown beside it (e.g. unread alerts), or None; called for visible entries.
    badge: Callable[[web.Request, Principal], int | None] | None = None


NAV = web.AppKey("portledger.ui.nav", list[NavItem])
LANGUAGE_STORE = web.AppKey("portledger.ui.languages", LanguageStore)
PAGE_PATHS = web.AppKey("portledger.ui.page_paths", set[str])
_TRANSLATOR = web.RequestKey("portledger.ui.translator", Translator)


def add_nav(app: web.Application, item: NavItem) -> None:
    """Add an entry to the main navigation."""
    app.setdefault(NAV, []).append(item)
    app[NAV].sort(key=lambda i: i.order)


class PageRefused(Exception):
    """The signed-in user may not open this page (the message is already translated)."""


def _user_language(request: web.Request) -> str | None:
    principal = principal_of(request)
    store = request.app.get(LANGUAGE_STORE)
    if principal is None or principal.user_id is None or store is None:
        return None
    return store.language(principal.user_id)


def translator(request: web.Request) -> Translator:
    """The language of this request's page: the switch (``?lang=``), the signed-in user's
    last choice, the cookie, ``Accept-Language``."""
    found = request.get(_TRANSLATOR)
    if found is None:
        chosen = request.query.get("lang")
        found = Translator(negotiate(chosen if chosen in LANGUAGES else None,
                                     _user_language(request) or request.cookies.get(COOKIE),
                                     request.headers.get("Accept-Language")))
        request[_TRANSLATOR] = found
    return found


def signed_in(request: web.Request, scope: str | None = None) -> Principal:
    """The page's user; redirects to the sign-in page if there is none."""
    principal = principal_of(request)
    if principal is None or principal.via == "api_key":
        raise web.HTTPFound("/login?next=" + quote(request.path_qs, safe=""))
    if scope is not None and scope not in principal.scopes:
        raise PageRefused(translator(request)("refused.scope", scope=scope))
    return principal


def _switch(request: web.Request, t: Translator) -> str:
    query = [(k, v) for k, v in request.query.items() if k != "lang"]
    links = []
    for lang in LANGUAGES:
        href = e(request.path + "?" + urlencode([*query, ("lang", lang)]))
        current = " aria-current=true" if lang == t.lang else ""
        links.append(f'<li><a href="{href}" lang="{lang}" hreflang="{lang}"{current}>'
                     f"{e(NATIVE_NAMES[lang])}</a></li>")
    return (f'<nav class=languages aria-label="{e(t("nav.language"))}"><ul>'
            f'{"".join(links)}</ul></nav>')


def _nav(request: web.Request, principal: Principal | None, t: Translator) -> str:
    items = []
    for item in request.app.get(NAV, []):
        if not item.visible(principal):
            continue
        current = " aria-current=page" if item.path == request.path else ""
        badge = ""
        if item.badge is not None and principal is not None:
            count = item.badge(request, principal)
            if count:
                badge = (f' <span class=count aria-label="{e(t("nav.unread", count=count))}">'
                         f"{count}</span>")
        items.append(f'<li><a href="{e(item.path)}"{current}>{e(t(item.label))}</a>{badge}</li>')
    if principal is None:
        items.append(f'<li><a href="/login">{e(t("nav.sign_in"))}</a></li>'
                     f'<li><a href="/register">{e(t("nav.register"))}</a></li>')
    else:
        items.append(f'<li><button type=button id=signout class=link>{e(t("nav.sign_out"))}'
                     "</button></li>")
    return f'<nav aria-label="{e(t("nav.main"))}"><ul>{"".join(items)}</ul></nav>'


def _assets(paths: Sequence[str]) -> str:
    tags = []
    for path in paths:
        if not path.startswith("/static/"):
            raise ValueError(f"a page's asset is a static file: {path!r}")
        if urlsplit(path).path.endswith(".css"):
            tags.append(f'<link rel=stylesheet href="{e(path)}">\n')
        else:
            tags.append(f'<script src="{e(path)}" defer></script>\n')
    return "".join(tags)


def render(
    request: web.Request, *, page: str, title: str, body: str, status: int = 200,
    assets: Sequence[str] = (),
) -> web.Response:
    """A whole page around ``body`` (already-escaped HTML); ``title`` is plain text.
    ``assets``: this page's own extra stylesheets (``.css``) and scripts (deferred, run before
    the pages' script), paths under ``/static/`` — e.g. the map's vendored Leaflet
    (:data:`gateway.ui.maps.ASSETS`) only on pages with a map."""
    t = translator(request)
    principal = principal_of(request)
    csrf = request.get(SESSION_CSRF, "")
    who = ""
    if principal is not None:
        org = request.app[ACCOUNTS].organisation(principal.org_id)
        who = f'<p class=who>{t("shell.signed_in_for", org=f"<strong>{e(org.name)}</strong>")}</p>'
    document = f"""<!doctype html>
<html lang="{t.lang}">
<head>
<meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<meta name=csrf-token content="{e(csrf)}">
<title>{e(title)} · PortLedger</title>
<link rel=icon href="data:,">
<link rel=manifest href="/manifest.webmanifest">
<meta name=theme-color content="#0b5cad">
{_assets(assets)}<link rel=stylesheet href="/static/portledger.css">
<script src="/static/portledger.js" defer></script>
</head>
<body data-page="{e(page)}">
<a class=skip href="#main">{e(t("shell.skip"))}</a>
<header><a class=brand href="/">PortLedger</a>{_nav(request, principal, t)}{who}
{_switch(request, t)}</header>
<main id=main>
{body}
</main>
<footer><p>{e(t("shell.footer"))} <a href="/docs">{e(t("shell.api"))}</a></p></footer>
</body>
</html>"""
    response = web.Response(text=document, content_type="text/html", status=status,
                            headers={"Cache-Control": "no-store", "Content-Language": t.lang})
    if request.query.get("lang") in LANGUAGES:
        if request.cookies.get(COOKIE) != t.lang:
            response.set_cookie(COOKIE, t.lang, max_age=365 * 86400, path="/", samesite="Lax",
                                httponly=True)
        store = request.app.get(LANGUAGE_STORE)
        if principal is not None and principal.user_id is not None and store is not None:
            store.choose(principal.user_id, t.lang)
    return response


def refused(request: web.Request, message: str) -> web.Response:
    """A 403 page with ``message`` (plain text, already translated)."""
    t = translator(request)
    body = f"<h1>{e(t('refused.title'))}</h1><p>{e(message)}</p>"
    return render(request, page="refused", title=t("refused.title"), body=body, status=403)


def not_found(request: web.Request, message: str) -> web.Response:
    """A 404 page with ``message`` (plain text, already translated)."""
    t = translator(request)
    body = f"<h1>{e(t('notfound.title'))}</h1><p>{e(message)}</p>"
    return render(request, page="not-found", title=t("notfound.title"), body=body, status=404)


def _page(handler: Handler) -> Handler:
    """Render :class:`PageRefused` as a 403 page."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageRefused as exc:
            return refused(request, str(exc))

    wrapped.__doc__ = handler.__doc__
    return wrapped


class Pages:
    """A feature's page routes (their security headers and refusals come with them)."""

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.routes.get(path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.routes.post(path)

    def setup(self, app: web.Application) -> None:
        paths = app.setdefault(PAGE_PATHS, set())
        for route in self.routes:
            assert isinstance(route, web.RouteDef)
            app.router.add_route(route.method, route.path, _page(route.handler))
            paths.add(route.path)


def script() -> bytes:
    """The one script of the pages: every part of :data:`SCRIPT_PARTS`, in name order."""
    parts = sorted(SCRIPT_PARTS.glob("*.js"))
    return b"\n".join(f"// --- {p.name}\n".encode() + p.read_bytes() for p in parts)


def stylesheet() -> bytes:
    """The one stylesheet of the pages: every part of :data:`STYLE_PARTS`, in name order."""
    parts = sorted(STYLE_PARTS.glob("*.css"))
    return b"\n".join(f"/* --- {p.name} */\n".encode() + p.read_bytes() for p in parts)


def cached(body: bytes, content_type: str) -> Handler:
    """A handler answering ``body`` with an ETag (304 when the browser has it), gzip-compressed
    (once, here) for a browser that accepts it."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    packed = gzip.compress(body, compresslevel=9, mtime=0)

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": tag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", "") and len(packed) < len(body):
            return web.Response(body=packed, content_type=content_type, charset="utf-8",
                                headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=headers)

    return handler


async def _catalogue(request: web.Request) -> web.StreamResponse:
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        raise web.HTTPNotFound(text="no such language")
    return await cached(catalogue_json(lang), "application/json")(request)


def is_page(request: web.Request) -> bool:
    """Whether the request is for a page, a static file or the catalogue (they carry the
    security headers)."""
    if request.path.startswith(("/static/", "/i18n/")):
        return True
    info = request.match_info.route.resource
    canonical = info.canonical if info is not None else request.path
    return canonical in request.app.get(PAGE_PATHS, set())


#: How long a browser keeps the vendored assets (Leaflet, the coastline) without asking again:
#: they change only with a new pinned version (then revalidated by their ETag).
VENDOR_CACHE = "public, max-age=604800"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if is_page(request):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/static/vendor/") and response.status in (200, 304):
            response.headers.setdefault("Cache-Control", VENDOR_CACHE)


async def _no_such_page(request: web.Request) -> web.Response:
    response = not_found(request, translator(request)("notfound.page"))
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _languages(app: web.Application) -> AsyncIterator[None]:
    store = LanguageStore(app[CONFIG].data_dir / "ui.db")
    app[LANGUAGE_STORE] = store
    try:
        yield
    finally:
        store.close()


def setup(app: web.Application) -> None:
    """The script, the catalogue, the static files, the pages' security headers, the page of an
    address that does not exist (for browsers; the API keeps its JSON 404) and the users'
    languages."""
    app[HTML_NOT_FOUND] = _no_such_page
    app.cleanup_ctx.append(_languages)
    app.setdefault(NAV, [])
    app.setdefault(PAGE_PATHS, set())
    app.router.add_get("/static/portledger.js", cached(script(), "text/javascript"))
    app.router.add_get("/static/portledger.css", cached(stylesheet(), "text/css"))
    app.router.add_get("/i18n/{lang}.json", _catalogue)
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_security_headers)
