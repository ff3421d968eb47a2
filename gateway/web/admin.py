"""An organisation's administration pages: its users and their roles (``/users``), its webhooks
(``/webhooks``) and each webhook's delivery log (``/webhooks/{subscriptions|alerts}/{id}``).

They live here, with the pages that compose several features, because they read the accounts
(below the pages' shell in the layers) and both kinds of webhook: the DCSA event subscriptions
(:mod:`gateway.subscriptions`) and the alert webhooks (:mod:`gateway.alerts`).

The server renders what the signed-in user's organisation holds — through the same store calls
the JSON API answers with (``GET /v1/users``, ``/v2/event-subscriptions``,
``/v1/alerts/webhooks``, ``/v1/subscriptions/{id}/deliveries``,
``/v1/alerts/webhooks/{id}/deliveries``), each keyed by the principal's organisation, so no page
shows another organisation's users or webhooks (another's webhook id is simply not found). The
page's script (``static/js/admin.js``) acts through that API: add a user, change a role,
disable or remove a user, create or delete a webhook (with a secret it can generate in the
browser), then shows the result.

The users page needs ``org:admin`` (as ``/v1/users``); the webhook pages ``events:read`` (as the
webhook APIs).
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway.accounts.model import USER_ROLES, User
from gateway.alerts.model import KINDS
from gateway.appkeys import ACCOUNTS, ALERTS, SUBSCRIPTIONS
from gateway.principal import Principal
from gateway.subscriptions.model import DELIVERY_STATES, Delivery
from gateway.subscriptions.store import SubscriptionStore
from gateway.tracking.dcsa import EVENT_TYPES
from gateway.ui import shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, not_found, render, signed_in, translator

pages = shell.Pages()

#: Scope of the users page (as the users API).
ADMIN = "org:admin"
#: Scope of the webhook pages (as the webhook APIs).
HOOKS = "events:read"
#: Deliveries per page.
PAGE_SIZE = 50
#: Webhooks listed at most (an organisation holds far fewer).
MAX_LISTED = 1000


def _time(t: Translator, moment: float | int | str | None) -> str:
    stamp = iso(moment)
    if not stamp:
        return e(t("common.unknown"))
    return f'<time datetime="{stamp}">{e(t.when(moment))}</time>'


# -- users ------------------------------------------------------------------------------------------
def _role_select(t: Translator, user: User) -> str:
    options = "".join(f'<option value="{e(r)}"{" selected" if r == user.role else ""}>'
                      f'{e(t("admin.role." + r))}</option>' for r in USER_ROLES)
    return (f'<label class=visually-hidden for="role-{user.id}">'
            f'{e(t("admin.users.role_of", email=user.email))}</label>'
            f'<select id="role-{user.id}" name=role>{options}</select>')


def user_row(t: Translator, user: User, me: Principal) -> str:
    """One user as a table row (its controls carry the user's id for the script)."""
    status = t("admin.users.disabled") if user.disabled else t("admin.users.active")
    sign_in = t("admin.users.password") if user.has_password else t("admin.users.external")
    chips = ""
    if user.id == me.user_id:
        chips += f' <span class=chip>{e(t("admin.users.you"))}</span>'
    if user.operator:
        chips += f' <span class=chip>{e(t("admin.users.operator"))}</span>'
    toggle = t("admin.users.enable") if user.disabled else t("admin.users.disable")
    return f"""<tr data-user="{user.id}" data-email="{e(user.email)}">
<th scope=row>{e(user.email)}{chips}</th>
<td data-label="{e(t("admin.users.role"))}">{_role_select(t, user)}</td>
<td data-label="{e(t("col.status"))}" class=user-status>{e(status)}</td>
<td data-label="{e(t("admin.users.sign_in"))}">{e(sign_in)}</td>
<td class=actions><button type=button class=secondary data-action=toggle
 data-disabled="{"true" if user.disabled else "false"}">{e(toggle)}</button>
<button type=button class=danger data-action=remove>{e(t("admin.remove"))}</button>
</td></tr>"""


@pages.get("/users")
async def users_page(request: web.Request) -> web.Response:
    """The signed-in admin's organisation's users."""
    principal = signed_in(request, ADMIN)
    t = translator(request)
    users = request.app[ACCOUNTS].users(principal.org_id)
    rows = "".join(user_row(t, u, principal) for u in users)
    roles = "".join(f'<option value="{e(r)}"{" selected" if r == "member" else ""}>'
                    f'{e(t("admin.role." + r))}</option>' for r in USER_ROLES)
    explained = "".join(f"<li><strong>{e(t('admin.role.' + r))}</strong> — "
                        f"{e(t('admin.role_help.' + r))}</li>" for r in USER_ROLES)
    body = f"""<h1>{e(t("admin.users.title"))}</h1>
<p>{e(t("admin.users.intro"))}</p>
<ul class=roles-help>{explained}</ul>
<h2 id=users-heading>{e(t("admin.users.list"))}</h2>
<p class=message role=status aria-live=polite></p>
<div class=scroll><table id=users aria-labelledby=users-heading>
<thead><tr><th scope=col>{e(t("field.email"))}</th><th scope=col>{e(t("admin.users.role"))}</th>
<th scope=col>{e(t("col.status"))}</th><th scope=col>{e(t("admin.users.sign_in"))}</th>
<th scope=col><span class=visually-hidden>{e(t("col.action"))}</span></th></tr></thead>
<tbody>{rows}</tbody></table></div>
<h2>{e(t("admin.users.add"))}</h2>
<form id=user-form class=stack novalidate>
<label for=new-email>{e(t("field.email"))}</label>
<input id=new-email name=email type=email required maxlength=254 autocomplete=off>
<label for=new-role>{e(t("admin.users.role"))}</label>
<select id=new-role name=role>{roles}</select>
<label for=new-password>{e(t("admin.users.first_password"))}</label>
<input id=new-password name=password type=password minlength=12 maxlength=256
 autocomplete=new-password aria-describedby=new-password-help>
<p id=new-password-help class=muted>{e(t("admin.users.first_password_help"))}</p>
<button>{e(t("admin.users.add_button"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form>"""
    return render(request, page="users", title=t("admin.users.title"), body=body)


# -- webhooks ---------------------------------------------------------------------------------------
def _filters(t: Translator, fields: dict[str, object]) -> str:
    if not fields:
        return e(t("admin.hooks.every_event"))
    parts = [f"{name}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
             for name, v in sorted(fields.items())]
    return "<br>".join(f"<code>{e(p)}</code>" for p in parts)


def _delete_button(t: Translator, url: str, callback: str) -> str:
    return (f'<button type=button class=danger data-delete="{e(url)}" data-callback="{e(callback)}"'
            f">{e(t('admin.remove'))}</button>")


def _subscriptions(t: Translator, store: SubscriptionStore, org_id: int) -> str:
    rows = []
    for _, sub in store.page(org_id, 0, MAX_LISTED):
        filters = {k: v for k, v in sub.to_json().items()
                   if k not in ("subscriptionID", "callbackUrl")}
        rows.append(f"""<tr><th scope=row class=url>{e(sub.callback_url)}</th>
<td data-label="{e(t("admin.hooks.events"))}">{_filters(t, filters)}</td>
<td data-label="{e(t("col.created"))}">{_time(t, sub.created)}</td>
<td class=actions><a class="button secondary" href="/webhooks/subscriptions/{e(sub.id)}"
 >{e(t("admin.hooks.deliveries"))}</a>
{_delete_button(t, "/v2/event-subscriptions/" + sub.id, sub.callback_url)}</td></tr>""")
    if not rows:
        rows.append(f'<tr><td colspan=4 class=muted>{e(t("admin.hooks.no_subscriptions"))}'
                    "</td></tr>")
    return "".join(rows)


def _alert_hooks(t: Translator, request: web.Request, org_id: int) -> str:
    rows = []
    for hook in request.app[ALERTS].webhooks.of(org_id):
        kinds = hook.get("kinds") or []
        named = (t("admin.hooks.every_alert") if set(kinds) >= set(KINDS)
                 else ", ".join(t("kind." + str(k)) for k in kinds))
        changes = ", ".join(t("admin.change." + str(c)) for c in hook.get("changes") or [])
        rows.append(f"""<tr><th scope=row class=url>{e(str(hook["callbackUrl"]))}</th>
<td data-label="{e(t("admin.hooks.alerts"))}">{e(named)}<br><span class=muted>{e(changes)}</span>
</td>
<td data-label="{e(t("col.created"))}">{_time(t, hook.get("created"))}</td>
<td class=actions><a class="button secondary" href="/webhooks/alerts/{e(str(hook["id"]))}"
 >{e(t("admin.hooks.deliveries"))}</a>
{_delete_button(t, f"/v1/alerts/webhooks/{hook['id']}", str(hook["callbackUrl"]))}</td></tr>""")
    if not rows:
        rows.append(f'<tr><td colspan=4 class=muted>{e(t("admin.hooks.no_alert_hooks"))}'
                    "</td></tr>")
    return "".join(rows)


def _secret_fields(t: Translator, prefix: str) -> str:
    return f"""<label for={prefix}-url>{e(t("admin.hooks.callback"))}</label>
<input id={prefix}-url name=callbackUrl type=url required maxlength=2048 inputmode=url
 autocomplete=off spellcheck=false placeholder="https://">
<label for={prefix}-secret>{e(t("admin.hooks.secret"))}</label>
<div class=secret-row><input id={prefix}-secret name=secret required maxlength=1400
 autocomplete=off spellcheck=false aria-describedby={prefix}-secret-help>
<button type=button class=secondary data-generate={prefix}-secret>{e(t("admin.hooks.generate"))}
</button></div>
<p id={prefix}-secret-help class=muted>{e(t("admin.hooks.secret_help"))}</p>"""


def _head(t: Translator, what: str) -> str:
    return (f'<thead><tr><th scope=col>{e(t("admin.hooks.callback"))}</th>'
            f'<th scope=col>{e(t(what))}</th><th scope=col>{e(t("col.created"))}</th>'
            f'<th scope=col><span class=visually-hidden>{e(t("col.action"))}</span></th></tr>'
            "</thead>")


@pages.get("/webhooks")
async def webhooks_page(request: web.Request) -> web.Response:
    """The organisation's event subscriptions and alert webhooks."""
    principal = signed_in(request, HOOKS)
    t = translator(request)
    types = "".join(f'<label class=check><input type=checkbox name=eventType value="{e(k)}">'
                    f' {e(t("admin.event_type." + k))}</label>' for k in EVENT_TYPES)
    kinds = "".join(f'<label class=check><input type=checkbox name=kinds value="{e(k)}">'
                    f' {e(t("kind." + k))}</label>' for k in KINDS)
    subscriptions = _subscriptions(t, request.app[SUBSCRIPTIONS].store, principal.org_id)
    body = f"""<h1>{e(t("admin.hooks.title"))}</h1>
<p>{e(t("admin.hooks.intro"))}</p>
<p class=message role=status aria-live=polite></p>
<h2 id=subscriptions-heading>{e(t("admin.hooks.subscriptions"))}</h2>
<p class=muted>{e(t("admin.hooks.subscriptions_intro"))}</p>
<div class=scroll><table id=subscriptions aria-labelledby=subscriptions-heading>
{_head(t, "admin.hooks.events")}<tbody>{subscriptions}</tbody></table></div>
<details class=new-hook><summary>{e(t("admin.hooks.new_subscription"))}</summary>
<form id=subscription-form class=stack novalidate data-post="/v2/event-subscriptions">
{_secret_fields(t, "sub")}
<fieldset><legend>{e(t("admin.hooks.event_types"))}</legend>{types}</fieldset>
<label for=sub-equipment>{e(t("admin.hooks.equipment"))}</label>
<input id=sub-equipment name=equipmentReference maxlength=15 autocomplete=off spellcheck=false
 autocapitalize=characters>
<button>{e(t("admin.hooks.subscribe"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form></details>
<h2 id=alert-hooks-heading>{e(t("admin.hooks.alert_hooks"))}</h2>
<p class=muted>{e(t("admin.hooks.alert_hooks_intro"))}</p>
<div class=scroll><table id=alert-webhooks aria-labelledby=alert-hooks-heading>
{_head(t, "admin.hooks.alerts")}<tbody>{_alert_hooks(t, request, principal.org_id)}</tbody>
</table></div>
<details class=new-hook><summary>{e(t("admin.hooks.new_alert_hook"))}</summary>
<form id=alert-webhook-form class=stack novalidate data-post="/v1/alerts/webhooks">
{_secret_fields(t, "hook")}
<fieldset><legend>{e(t("admin.hooks.which_alerts"))}</legend>
<p class=muted>{e(t("admin.hooks.which_alerts_help"))}</p>{kinds}</fieldset>
<button>{e(t("admin.hooks.add_hook"))}</button>
<p class=message role=alert aria-live=assertive></p>
</form></details>"""
    return render(request, page="webhooks", title=t("admin.hooks.title"), body=body)


def _delivery_row(t: Translator, d: Delivery) -> str:
    status = t("admin.delivery." + d.status)
    if d.status == "pending" and d.next_attempt:
        when = t("admin.delivery.next", when=_time(t, d.next_attempt))
    elif d.finished:
        when = _time(t, d.finished)
    else:
        when = e(t("common.unknown"))
    answer = []
    if d.last_status is not None:
        answer.append(e(t("admin.delivery.http", status=d.last_status)))
    if d.last_error:
        answer.append(f"<span class=error-text>{e(d.last_error)}</span>")
    return f"""<tr><th scope=row>{d.id}</th>
<td data-label="{e(t("col.status"))}"><span class="chip delivery-{e(d.status)}">{e(status)}</span>
</td><td data-label="{e(t("admin.delivery.attempts"))}">{d.attempts}</td>
<td data-label="{e(t("admin.delivery.items"))}">{len(d.event_ids)}</td>
<td data-label="{e(t("col.created"))}">{_time(t, d.created)}</td>
<td data-label="{e(t("admin.delivery.done"))}">{when}</td>
<td data-label="{e(t("admin.delivery.answer"))}">{"<br>".join(answer) or e(t("common.unknown"))}
</td></tr>"""


async def _deliveries(request: web.Request, kind: str) -> web.Response:
    principal = signed_in(request, HOOKS)
    t = translator(request)
    hook_id = request.match_info["hook_id"].lower()
    status = request.query.get("status", "")
    status = status if status in DELIVERY_STATES else ""
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isascii() and before_text.isdigit() and len(
        before_text) <= 18 else None
    if kind == "subscriptions":
        store = request.app[SUBSCRIPTIONS].store
        sub = store.get(principal.org_id, hook_id) if len(hook_id) <= 64 else None
        callback = sub.callback_url if sub is not None else None
    else:
        store = request.app[ALERTS].webhooks.store
        hook = request.app[ALERTS].webhooks.describe(principal.org_id, hook_id)
        callback = str(hook["callbackUrl"]) if hook is not None else None
    found = None if callback is None else store.deliveries(
        principal.org_id, hook_id, status=status or None, before=before, limit=PAGE_SIZE + 1)
    if callback is None or found is None:
        return not_found(request, t("admin.hooks.not_found"))
    more = ""
    if len(found) > PAGE_SIZE:
        found = found[:PAGE_SIZE]
        query = {k: v for k, v in request.query.items() if k != "before"}
        more = (f'<p><a class=button href="{e(request.path)}?'
                f'{e(urlencode({**query, "before": found[-1].id}))}">{e(t("common.older"))}</a></p>')
    rows = "".join(_delivery_row(t, d) for d in found) or (
        f'<tr><td colspan=7 class=muted>{e(t("admin.delivery.none"))}</td></tr>')
    states = [("", t("common.all")), *((s, t("admin.delivery." + s)) for s in DELIVERY_STATES)]
    options = "".join(f'<option value="{e(v)}"{" selected" if v == status else ""}>{e(label)}'
                      "</option>" for v, label in states)
    title = t("admin.delivery.title")
    what = t("admin.hooks.subscription" if kind == "subscriptions" else "admin.hooks.alert_hook")
    body = f"""<p><a href="/webhooks">{e(t("admin.hooks.back"))}</a></p>
<h1>{e(title)}</h1>
<p>{e(what)}: <code class=url>{e(callback)}</code></p>
<form class=filters method=get action="{e(request.path)}" aria-label="{e(t("admin.delivery.filter"))}">
<div><label for=status>{e(t("col.status"))}</label>
<select id=status name=status>{options}</select></div>
<input type=hidden name=lang value="{e(t.lang)}">
<button>{e(t("common.filter"))}</button>
</form>
<div class=scroll><table id=deliveries>
<caption class=visually-hidden>{e(title)}</caption>
<thead><tr><th scope=col>{e(t("admin.delivery.id"))}</th><th scope=col>{e(t("col.status"))}</th>
<th scope=col>{e(t("admin.delivery.attempts"))}</th><th scope=col>{e(t("admin.delivery.items"))}</th>
<th scope=col>{e(t("col.created"))}</th><th scope=col>{e(t("admin.delivery.done"))}</th>
<th scope=col>{e(t("admin.delivery.answer"))}</th></tr></thead>
<tbody>{rows}</tbody></table></div>
{more}"""
    return render(request, page="deliveries", title=title, body=body)


@pages.get("/webhooks/subscriptions/{hook_id}")
async def subscription_deliveries(request: web.Request) -> web.Response:
    """An event subscription's delivery log."""
    return await _deliveries(request, "subscriptions")


@pages.get("/webhooks/alerts/{hook_id}")
async def alert_hook_deliveries(request: web.Request) -> web.Response:
    """An alert webhook's delivery log."""
    return await _deliveries(request, "alerts")


def setup(app: web.Application) -> None:
    """The administration pages and their navigation entries."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/users", "admin.nav.users", 70,
                               lambda p: p is not None and ADMIN in p.scopes))
    shell.add_nav(app, NavItem("/webhooks", "admin.nav.webhooks", 75,
                               lambda p: p is not None and HOOKS in p.scopes))
