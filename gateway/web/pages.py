"""The gateway's web pages: sign in, register, track, who saw my data, API keys, operator.

Plain server-rendered HTML with one small vanilla script (``static/portledger.js``) and one
stylesheet (``static/portledger.css``); no CDN, no framework, no inline script or style, so the
pages run under ``Content-Security-Policy: default-src 'self'``. The server renders the page
shell (navigation, forms, the signed-in user, the session's CSRF token in a ``<meta>`` element);
the script fetches the data from the JSON API with the session cookie (same origin) and builds
the DOM with ``textContent`` only, so data can never become markup. Values the server itself
puts into a page go through :func:`html.escape`.

Pages that need a signed-in user redirect to ``/login?next=<page>``. Every page answer carries
the security headers of :data:`SECURITY_HEADERS` (set in an ``on_response_prepare`` signal for
the page and static paths; the JSON API is not framed and needs no CSP).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from contracts import ROLES
from gateway.accounts.auth import SESSION_CSRF
from gateway.appkeys import ACCOUNTS, OIDC_PROVIDERS
from gateway.principal import SCOPES, Principal, principal_of

#: Folder of the stylesheet and script.
STATIC_DIR = Path(__file__).parent / "static"

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


def _nav(principal: Principal | None, current: str) -> str:
    links = [("/", "Track")]
    if principal is not None:
        links.append(("/access-log", "Who saw my data"))
        if "org:admin" in principal.scopes:
            links.append(("/keys", "API keys"))
        if principal.operator:
            links.append(("/operator", "Operator"))
    items = "".join(
        f'<li><a href="{href}"{" aria-current=page" if href == current else ""}>{e(label)}</a>'
        "</li>"
        for href, label in links
    )
    if principal is None:
        items += '<li><a href="/login">Sign in</a></li><li><a href="/register">Register</a></li>'
    else:
        items += '<li><button type=button id=signout class=link>Sign out</button></li>'
    return f'<nav aria-label="Main"><ul>{items}</ul></nav>'


def render(
    request: web.Request, *, page: str, title: str, body: str, status: int = 200
) -> web.Response:
    """A whole page around ``body`` (already-escaped HTML)."""
    principal = principal_of(request)
    csrf = request.get(SESSION_CSRF, "")
    who = ""
    if principal is not None:
        org = request.app[ACCOUNTS].organisation(principal.org_id)
        who = f'<p class=who>Signed in for <strong>{e(org.name)}</strong></p>'
    document = f"""<!doctype html>
<html lang=en>
<head>
<meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<meta name=csrf-token content="{e(csrf)}">
<title>{e(title)} · PortLedger</title>
<link rel=icon href="data:,">
<link rel=stylesheet href="/static/portledger.css">
<script src="/static/portledger.js" defer></script>
</head>
<body data-page="{e(page)}">
<a class=skip href="#main">Skip to content</a>
<header><a class=brand href="/">PortLedger</a>{_nav(principal, request.path)}{who}</header>
<main id=main>
{body}
</main>
<footer><p>PortLedger — an open port community system. <a href="/docs">API</a></p></footer>
</body>
</html>"""
    return web.Response(text=document, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store"})


class _PageRefused(Exception):
    """The signed-in user may not open this page."""


def _signed_in(request: web.Request, scope: str | None = None) -> Principal:
    """The page's user; redirects to the sign-in page if there is none."""
    principal = principal_of(request)
    if principal is None or principal.via == "api_key":
        raise web.HTTPFound("/login?next=" + quote(request.path_qs, safe=""))
    if scope is not None and scope not in principal.scopes:
        raise _PageRefused(f"This page needs the {scope} permission, which your role lacks.")
    return principal


def _refused(request: web.Request, message: str) -> web.Response:
    body = f"<h1>Not allowed</h1><p>{e(message)}</p>"
    return render(request, page="refused", title="Not allowed", body=body, status=403)


def _local(next_path: str | None) -> str:
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or (
        "\\" in next_path
    ):
        return "/"
    return next_path


routes = web.RouteTableDef()


def _track_form(value: str = "") -> str:
    return f"""<form class=track action="/track" method=get role=search>
<label for=q>Bill of lading, container, air waybill or declaration number</label>
<div class=row><input id=q name=q value="{e(value)}" required maxlength=64 autocomplete=off
 spellcheck=false placeholder="e.g. PCOL2405123 or CSQU3054383"><button>Track</button></div>
</form>"""


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    """Landing page: the track box."""
    body = f"""<h1>Where is my cargo?</h1>
<p>Type any number you hold. You see what its owners shared with you, and they see that you
looked.</p>
{_track_form()}"""
    return render(request, page="landing", title="Track", body=body)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """Sign-in form (password, or an external identity)."""
    next_path = _local(request.query.get("next"))
    providers = request.app.get(OIDC_PROVIDERS, {})
    external = "".join(
        f'<li><a class=button href="/v1/oidc/{e(p.name)}/login?return_to={e(quote(next_path))}">'
        f"Sign in with {e(p.display_name)}</a></li>"
        for p in providers.values()
    )
    if external:
        external = f'<h2>Or</h2><ul class=plain>{external}</ul>'
    body = f"""<h1>Sign in</h1>
<form id=login-form class=stack data-next="{e(next_path)}" novalidate>
<label for=email>E-mail</label>
<input id=email name=email type=email autocomplete=username required>
<label for=password>Password</label>
<input id=password name=password type=password autocomplete=current-password required>
<button>Sign in</button>
<p class=message role=alert aria-live=assertive></p>
</form>
{external}
<p>New organisation? <a href="/register">Register</a>.</p>"""
    return render(request, page="login", title="Sign in", body=body)


@routes.get("/register")
async def register_page(request: web.Request) -> web.Response:
    """Registration of an organisation and its first admin."""
    roles = "".join(
        f'<label class=check><input type=checkbox name=roles value="{e(r)}"> {e(r)}</label>'
        for r in ROLES
        if r != "operator"
    )
    body = f"""<h1>Register your organisation</h1>
<p>An operator checks your company before your organisation can sign in.</p>
<form id=register-form class=stack novalidate>
<fieldset><legend>Company</legend>
<label for=name>Registered name</label><input id=name name=name required maxlength=200>
<label for=registrationNumber>Business registration number</label>
<input id=registrationNumber name=registrationNumber required maxlength=64>
<label for=country>Country (ISO code)</label>
<input id=country name=country required maxlength=2 value="HK" autocapitalize=characters>
<label for=address>Address</label><textarea id=address name=address required></textarea>
<label for=contactEmail>Contact e-mail</label>
<input id=contactEmail name=contactEmail type=email required>
</fieldset>
<fieldset><legend>Roles in the port</legend>{roles}</fieldset>
<fieldset><legend>First administrator</legend>
<label for=email>E-mail</label><input id=email name=email type=email required
 autocomplete=username>
<label for=password>Password (at least 12 characters)</label>
<input id=password name=password type=password minlength=12 required autocomplete=new-password>
</fieldset>
<button>Register</button>
<p class=message role=alert aria-live=assertive></p>
</form>"""
    return render(request, page="register", title="Register", body=body)


@routes.get("/track")
async def track_page(request: web.Request) -> web.Response:
    """The shipment view of ``?q=`` (data fetched by the script from ``/v1/track``)."""
    _signed_in(request, "tracking:read")
    query = request.query.get("q", "").strip()[:64]
    body = f"""<h1>Track</h1>
{_track_form(query)}
<section id=shipment data-query="{e(query)}" aria-live=polite>
<p class=muted>{"Looking up…" if query else "Type a number above."}</p>
</section>"""
    return render(request, page="track", title=f"Track {query}" if query else "Track",
                  body=body)


@routes.get("/access-log")
async def access_log_page(request: web.Request) -> web.Response:
    """Who read my organisation's data."""
    _signed_in(request, "tracking:read")
    body = """<h1>Who saw my data</h1>
<p>Every time another organisation reads one of your records, it is written here.</p>
<div class=scroll><table id=access-log>
<caption class=visually-hidden>Reads of your records by other organisations</caption>
<thead><tr><th scope=col>Time</th><th scope=col>Organisation</th><th scope=col>Record</th>
<th scope=col>Allowed by</th></tr></thead><tbody></tbody></table></div>
<p class=message role=status></p>
<button type=button id=older hidden>Older</button>"""
    return render(request, page="access-log", title="Who saw my data", body=body)


@routes.get("/keys")
async def keys_page(request: web.Request) -> web.Response:
    """The organisation's API keys: create and revoke."""
    _signed_in(request, "org:admin")
    scopes = "".join(
        f'<label class=check><input type=checkbox name=scopes value="{e(s)}"'
        f'{" checked" if s == "tracking:read" else ""}> {e(s)}</label>'
        for s in SCOPES
    )
    body = f"""<h1>API keys</h1>
<p>Your systems send a key as <code>Authorization: Bearer &lt;key&gt;</code>. A key's secret
is shown once, when it is created.</p>
<form id=key-form class=stack novalidate>
<label for=label>Label</label>
<input id=label name=label required maxlength=100 placeholder="e.g. terminal operating system">
<fieldset><legend>Permissions</legend>{scopes}</fieldset>
<button>Create key</button>
<p class=message role=alert aria-live=assertive></p>
</form>
<div id=new-key hidden><h2>Your new key</h2>
<p>Copy it now; it will not be shown again.</p><output id=new-key-value></output></div>
<h2>Keys</h2>
<div class=scroll><table id=keys>
<thead><tr><th scope=col>Label</th><th scope=col>Id</th><th scope=col>Permissions</th>
<th scope=col>Created</th><th scope=col>Last used</th><th scope=col>Status</th>
<th scope=col><span class=visually-hidden>Action</span></th></tr></thead><tbody></tbody>
</table></div>"""
    return render(request, page="keys", title="API keys", body=body)


@routes.get("/operator")
async def operator_page(request: web.Request) -> web.Response:
    """Organisations waiting for verification (operators)."""
    principal = _signed_in(request)
    if not principal.operator:
        raise _PageRefused("Only a platform operator may open this page.")
    body = """<h1>Organisations waiting for verification</h1>
<div class=scroll><table id=pending>
<thead><tr><th scope=col>Name</th><th scope=col>Registration</th><th scope=col>Roles</th>
<th scope=col>Contact</th><th scope=col><span class=visually-hidden>Decision</span></th></tr>
</thead><tbody></tbody></table></div>
<p class=message role=status aria-live=polite></p>"""
    return render(request, page="operator", title="Operator", body=body)


#: The pages' paths (from the route table above: each path is written once).
_PAGE_PATHS = frozenset(route.path for route in routes if isinstance(route, web.RouteDef))


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path in _PAGE_PATHS or request.path.startswith("/static/"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


def _page(handler: Handler) -> Handler:
    """Render :class:`_PageRefused` as a 403 page."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _PageRefused as exc:
            return _refused(request, str(exc))

    wrapped.__doc__ = handler.__doc__
    return wrapped


def setup(app: web.Application) -> None:
    """Add the pages, their static files and their security headers."""
    for route in routes:
        assert isinstance(route, web.RouteDef)
        app.router.add_route(route.method, route.path, _page(route.handler))
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_security_headers)

