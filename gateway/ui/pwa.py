"""The pages as an installable app: the web app manifest, the icons, the service worker and the
offline page.

* ``/manifest.webmanifest`` names the app, its icons (``static/pwa/``: PNG 192 and 512 px and a
  maskable 512 px, drawn from the SVG sources beside them — see docs/web.md), its start URL
  and ``display: standalone`` with the shell's theme colour; the shell's ``<head>`` links it.
* ``/sw.js`` is the service worker (source ``static/pwa/sw.js``), served from the root so its
  scope is every page, never cached by the browser without asking (``no-cache`` with an ETag),
  with the shell's version written into it: a new stylesheet, script, catalogue or icon makes a
  new worker, which replaces the old cache. It keeps the shell (stylesheet, script, catalogue,
  icons, manifest, offline page) and nothing else: API answers and pages go to the network
  every time and are never stored, so nothing personal is left on a phone.
* ``/offline`` is the page shown when a navigation fails without a connection. It is rendered
  for nobody (no user, no organisation, no CSRF token), whoever asks, since the worker keeps
  it; the worker fetches it without cookies too.
* A driver's pages keep themselves in a cache of that driver's own (``portledger-driver-<id>``,
  deleted at sign-out; gateway/land/driver_pages.py); the worker answers a failed navigation
  from it before the offline page, and never writes to it. The manifest's shortcut opens
  ``/driver``.

The script registers the worker (``static/js/pwa.js``).
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import web

from gateway.accounts.auth import SESSION_CSRF
from gateway.principal import PRINCIPAL
from gateway.ui import shell
from gateway.ui.i18n import LANGUAGES, catalogue_json
from gateway.ui.shell import STATIC_DIR, e, render, translator

#: Folder of the manifest's icons and the service worker's source.
PWA_DIR = STATIC_DIR / "pwa"
#: The shell's theme colour (the stylesheet's accent, also in the ``<meta name=theme-color>``).
THEME_COLOUR = "#0b5cad"
BACKGROUND_COLOUR = "#f7f9fc"
#: The manifest's icons: file, size, purpose.
ICONS = (("icon-192.png", "192x192", "any"), ("icon-512.png", "512x512", "any"),
         ("icon-maskable-512.png", "512x512", "maskable"))

pages = shell.Pages()


def manifest() -> dict[str, object]:
    """The web app manifest."""
    return {
        "name": "PortLedger",
        "short_name": "PortLedger",
        "description": "Track containers, vessels and shipments in the port of Hong Kong; "
                       "share records with your partners.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "any",
        "lang": "en",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "icons": [{"src": f"/static/pwa/{name}", "sizes": size, "type": "image/png",
                   "purpose": purpose} for name, size, purpose in ICONS]
        + [{"src": "/static/pwa/icon.svg", "sizes": "any", "type": "image/svg+xml",
            "purpose": "any"}],
        # the drivers' way in (gateway/land/driver_pages.py): the app is one, scope "/"
        "shortcuts": [{"name": "My jobs (drivers)", "short_name": "My jobs", "url": "/driver",
                       "icons": [{"src": "/static/pwa/icon-192.png", "sizes": "192x192",
                                  "type": "image/png"}]}],
    }


def shell_version() -> str:
    """A digest of everything the service worker keeps (its cache's name changes with it)."""
    digest = hashlib.sha256()
    for part in (shell.script(), shell.stylesheet(), json.dumps(manifest()).encode(),
                 *(catalogue_json(lang) for lang in LANGUAGES),
                 *(path.read_bytes() for path in sorted(PWA_DIR.iterdir()) if path.is_file()),
                 (STATIC_DIR.parent / "pwa.py").read_bytes()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def service_worker() -> bytes:
    """The service worker's script with the shell's version written in."""
    source = (PWA_DIR / "sw.js").read_text("utf-8")
    if "__VERSION__" not in source:
        raise RuntimeError(f"{PWA_DIR / 'sw.js'} lacks its __VERSION__ placeholder")
    return source.replace("__VERSION__", shell_version()).encode()


@pages.get("/offline")
async def offline_page(request: web.Request) -> web.Response:
    """The page the service worker shows when there is no connection (it names nobody)."""
    request.pop(PRINCIPAL, None)
    request.pop(SESSION_CSRF, None)
    t = translator(request)
    body = f"""<h1>{e(t("admin.offline.title"))}</h1>
<p>{e(t("admin.offline.text"))}</p>
<p><button type=button id=retry>{e(t("admin.offline.retry"))}</button></p>"""
    return render(request, page="offline", title=t("admin.offline.title"), body=body)


def setup(app: web.Application) -> None:
    """The manifest, the service worker and the offline page (after :func:`shell.setup`)."""
    pages.setup(app)
    worker = shell.cached(service_worker(), "text/javascript")

    async def sw(request: web.Request) -> web.StreamResponse:
        response = await worker(request)
        response.headers["Service-Worker-Allowed"] = "/"
        return response

    app.router.add_get("/manifest.webmanifest", shell.cached(
        json.dumps(manifest(), ensure_ascii=False, indent=1).encode(),
        "application/manifest+json"))
    app.router.add_get("/sw.js", sw)
    app[shell.PAGE_PATHS].update({"/manifest.webmanifest", "/sw.js"})
