"""The gateway's own pages: sign in, register, API keys, operator — on the shell of
:mod:`gateway.ui.shell` (navigation, language, security headers) — and the track box they share.

The server renders each page's frame in the reader's language; the script fetches the data from
the JSON API with the session cookie (same origin) and builds the DOM with ``textContent`` only.
The landing page ("my shipments" or the track box) is :mod:`gateway.web.dashboard`, the shipment
view (``/track``) :mod:`gateway.web.shipment`; feature pages (alerts, the container and vessel
views) live with their features or in :mod:`gateway.web.views`.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from contracts import ROLES
from gateway.accounts.model import ORG_STATUSES
from gateway.appkeys import OIDC_PROVIDERS
from gateway.principal import SCOPES, Principal
from gateway.ui import pwa, shell
from gateway.ui.i18n import Translator
from gateway.ui.shell import NavItem, PageRefused, e, render, signed_in, translator
from gateway.web import admin

pages = shell.Pages()


def _local(next_path: str | None) -> str:
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or (
        "\\" in next_path
    ):
        return "/"
    return next_path


def track_form(t: Translator, value: str = "") -> str:
    """The track box (landing page, track page, views)."""
    return f"""<form class=track action="/track" method=get role=search>
<label for=q>{e(t("track.label"))}</label>
<div class=row><input id=q name=q value="{e(value)}" required maxlength=64 autocomplete=off
 spellcheck=false placeholder="{e(t("track.placeholder"))}"><button>{e(t("track.button"))}</button>
</div>
</form>"""


@pages.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """Sign-in form (password, or an external identity)."""
    t = translator(request)
    next_path = _local(request.query.get("next"))
    providers = request.app.get(OIDC_PROVIDERS, {})
    external = "".join(
        f'<li><a class=button href="/v1/oidc/{e(p.name)}/login?return_to={e(quote(next_path))}">'
        f"{e(t('login.with', provider=p.display_name))}</a></li>"
        for p in providers.values()
    )
    if external:
        external = f'<h2>{e(t("login.or"))}</h2><ul class=plain>{external}</ul>'
    body = f"""<h1>{e(t("login.title"))}</h1>
<form id=login-form class=stack data-next="{e(next_path)}" novalidate>
<label for=email>{e(t("field.email"))}</label>
<input id=email name=email type=email autocomplete=username required>
<label for=password>{e(t("field.password"))}</label>
<input id=password name=password type=password autocomplete=current-password required>
<button>{e(t("login.button"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form>
{external}
<p>{e(t("login.new"))} <a href="/register">{e(t("nav.register"))}</a></p>"""
    return render(request, page="login", title=t("login.title"), body=body)


@pages.get("/register")
async def register_page(request: web.Request) -> web.Response:
    """Registration of an organisation and its first admin."""
    t = translator(request)
    roles = "".join(
        f'<label class=check><input type=checkbox name=roles value="{e(r)}"> '
        f"{e(t('role.' + r))}</label>"
        for r in ROLES
        if r != "operator"
    )
    body = f"""<h1>{e(t("register.title"))}</h1>
<p>{e(t("register.intro"))}</p>
<form id=register-form class=stack novalidate>
<fieldset><legend>{e(t("register.company"))}</legend>
<label for=name>{e(t("register.name"))}</label><input id=name name=name required maxlength=200>
<label for=registrationNumber>{e(t("register.number"))}</label>
<input id=registrationNumber name=registrationNumber required maxlength=64>
<label for=country>{e(t("register.country"))}</label>
<input id=country name=country required maxlength=2 value="HK" autocapitalize=characters>
<label for=address>{e(t("register.address"))}</label>
<textarea id=address name=address required></textarea>
<label for=contactEmail>{e(t("register.contact"))}</label>
<input id=contactEmail name=contactEmail type=email required>
</fieldset>
<fieldset><legend>{e(t("register.roles"))}</legend>{roles}</fieldset>
<fieldset><legend>{e(t("register.admin"))}</legend>
<label for=email>{e(t("field.email"))}</label><input id=email name=email type=email required
 autocomplete=username>
<label for=password>{e(t("register.password"))}</label>
<input id=password name=password type=password minlength=12 required autocomplete=new-password>
</fieldset>
<button>{e(t("register.button"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form>"""
    return render(request, page="register", title=t("register.title"), body=body)


@pages.get("/keys")
async def keys_page(request: web.Request) -> web.Response:
    """The organisation's API keys: create and revoke."""
    signed_in(request, "org:admin")
    t = translator(request)
    scopes = "".join(
        f'<label class=check><input type=checkbox name=scopes value="{e(s)}"'
        f'{" checked" if s == "tracking:read" else ""}> <span>{e(t("admin.scope." + s))} '
        f"<code>{e(s)}</code></span></label>"
        for s in SCOPES
    )
    body = f"""<h1>{e(t("nav.keys"))}</h1>
<p>{e(t("keys.intro"))} <code>Authorization: Bearer &lt;key&gt;</code></p>
<form id=key-form class=stack novalidate>
<label for=label>{e(t("keys.label"))}</label>
<input id=label name=label required maxlength=100 placeholder="{e(t("keys.placeholder"))}">
<fieldset class=scopes><legend>{e(t("keys.permissions"))}</legend>{scopes}</fieldset>
<button>{e(t("keys.create"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form>
<div id=new-key hidden><h2>{e(t("keys.new"))}</h2>
<p>{e(t("keys.copy_now"))}</p><output id=new-key-value></output></div>
<h2 id=keys-heading>{e(t("keys.list"))}</h2>
<div class=scroll><table id=keys aria-labelledby=keys-heading>
<thead><tr><th scope=col>{e(t("keys.label"))}</th><th scope=col>{e(t("col.id"))}</th>
<th scope=col>{e(t("keys.permissions"))}</th><th scope=col>{e(t("col.created"))}</th>
<th scope=col>{e(t("col.last_used"))}</th><th scope=col>{e(t("col.status"))}</th>
<th scope=col><span class=visually-hidden>{e(t("col.action"))}</span></th></tr></thead>
<tbody></tbody></table></div>"""
    return render(request, page="keys", title=t("nav.keys"), body=body)


@pages.get("/operator")
async def operator_page(request: web.Request) -> web.Response:
    """Organisations waiting for verification, and every organisation with its status
    (operators)."""
    principal = signed_in(request)
    t = translator(request)
    if not principal.operator:
        raise PageRefused(t("refused.operator"))
    statuses = "".join(f'<option value="{e(s)}">{e(t("admin.org_status." + s))}</option>'
                       for s in ORG_STATUSES)
    body = f"""<h1>{e(t("operator.title"))}</h1>
<p>{e(t("admin.operator.intro"))}</p>
<p class=message role=status aria-live=polite></p>
<div class=scroll><table id=pending>
<caption class=visually-hidden>{e(t("operator.title"))}</caption>
<thead><tr><th scope=col>{e(t("col.name"))}</th><th scope=col>{e(t("col.registration"))}</th>
<th scope=col>{e(t("col.roles"))}</th><th scope=col>{e(t("col.contact"))}</th>
<th scope=col>{e(t("col.decision"))}</th></tr>
</thead><tbody></tbody></table></div>
<h2 id=organisations-heading>{e(t("admin.operator.all"))}</h2>
<form class=filters id=organisations-filter>
<div><label for=org-status>{e(t("col.status"))}</label>
<select id=org-status name=status><option value="">{e(t("common.all"))}</option>{statuses}
</select></div></form>
<div class=scroll><table id=organisations aria-labelledby=organisations-heading>
<thead><tr><th scope=col>{e(t("col.name"))}</th><th scope=col>{e(t("col.status"))}</th>
<th scope=col>{e(t("col.roles"))}</th><th scope=col>{e(t("col.registration"))}</th>
<th scope=col>{e(t("admin.operator.member"))}</th></tr></thead>
<tbody></tbody></table></div>"""
    return render(request, page="operator", title=t("nav.operator"), body=body)


def _tracks(principal: Principal | None) -> bool:
    """Signed in with the right to track (a driver, who may only see their jobs, is not)."""
    return principal is not None and "tracking:read" in principal.scopes



def setup(app: web.Application) -> None:
    """The shell, these pages and their navigation entries."""
    shell.setup(app)
    pwa.setup(app)
    pages.setup(app)
    admin.setup(app)
    # signed in, "/" is the user's own shipments; signed out, the track box
    shell.add_nav(app, NavItem("/", "nav.my_shipments", 10, _tracks))
    shell.add_nav(app, NavItem("/", "nav.track", 10, lambda p: p is None))
    shell.add_nav(app, NavItem("/access-log", "nav.access_log", 50, _tracks))
    shell.add_nav(app, NavItem("/keys", "nav.keys", 80,
                               lambda p: p is not None and "org:admin" in p.scopes))
    shell.add_nav(app, NavItem("/operator", "nav.operator", 90,
                               lambda p: p is not None and p.operator))
