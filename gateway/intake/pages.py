"""The sharing page: an owner grants another organisation read access to a record, sees its
grants and where each stands, and revokes them.

``/sharing`` (optionally ``?kind=&value=``: the "Share" section of one record, its grants only
and the form filled in) is rendered by the server from the same functions the JSON API answers
with — the grant list is :func:`gateway.intake.grants.grants_of` (the caller organisation's own
grants only), the organisations to choose from are the directory of ``GET /v1/organisations``
(:meth:`gateway.tracking.Tracking.directory`). The page's script posts the grant
(``POST /v1/grants``) or the revocation (``DELETE /v1/grants/...``) with the session's CSRF
token, then shows the submission's progress: a grant is a transaction, so a row stays
``pending`` (accepted → sent → final → indexed) until the chain has it; the script follows the
submission with ``GET /v1/submissions/{key}`` until it is final (or failed), then the grant with
``GET /v1/grants`` until the indexed state moves, rather than saying "done" at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.appkeys import TRACKING
from gateway.errors import ApiError
from gateway.events.model import REFERENCE_KINDS, Reference
from gateway.intake.grants import Listed, grants_of
from gateway.intake.service import normalise
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: Grants listed on one page.
PAGE_SIZE = 100
#: Scope of the page (granting and revoking).
SCOPE = "grants:write"
#: States a grant is "current" in (the default list hides revoked, expired and failed ones).
CURRENT = ("pending", "active", "revoking")
#: Kinds of record one can share (a vessel or a truck is not an owner's record to share).
SHAREABLE = tuple(k for k in REFERENCE_KINDS if k not in ("vessel", "truck"))


def record_text(t: Translator, kind: str, value: str) -> str:
    """A record in words: ``Container MSCU1234565``."""
    key = f"subject.{kind}"
    return t(key, value=value) if t.has(key) else t("subject.other", kind=kind, value=value)


def record_href(kind: str, value: str) -> str:
    """The Share section of one record."""
    return "/sharing?" + urlencode({"kind": kind, "value": value})


def _time(t: Translator, moment: Any) -> str:
    stamp = iso(moment)
    if not stamp:
        return e(t("sharing.never"))
    return f'<time datetime="{stamp}">{e(t.when(moment))}</time>'


def _progress(t: Translator, item: Listed) -> str:
    """Where the grant's (or revocation's) transaction stands, in words."""
    receipt = item.revoke if item.state in ("revoking", "revoked") and item.revoke else item.grant
    if receipt is None:
        return ""
    if receipt.status == "failed":
        return e(t("sharing.failed_because", error=receipt.error or t("common.unknown")))
    text = t("sharing.submission." + receipt.status)
    if receipt.status == "final" and receipt.block is not None:
        text = t("sharing.final_in_block", block=receipt.block)
    if item.state == "pending" and receipt.status == "final":
        text += " · " + t("sharing.indexing")
    return e(text)


def grant_row(t: Translator, item: Listed) -> str:
    """One grant as a table row (with its revoke button while it can be revoked)."""
    row = item.registered
    kind, value = row.subject.kind, row.subject.value
    state = item.state
    watch = ""
    if state in ("pending", "revoking"):
        query = urlencode({"kind": kind, "value": value, "reader": row.reader})
        watch = f' data-watch="/v1/grants?{e(query)}" data-state="{e(state)}"'
        receipt = item.revoke if state == "revoking" else item.grant
        if receipt is not None:
            watch += f' data-submission="{e(receipt.idempotency_key)}"'
    action = ""
    if state in ("active", "expired"):
        path = f"/v1/grants/{kind}/{value}/{row.reader}"
        label = t("sharing.revoke_label", record=record_text(t, kind, value),
                  organisation=item.reader_name or row.reader)
        action = (f'<button type=button class=danger data-revoke="{e(path)}" '
                  f'aria-label="{e(label)}">{e(t("sharing.revoke"))}</button>')
    until = t.when(row.expiry) if row.expiry else t("sharing.no_end")
    return f"""<tr id="grant-{row.seq}"{watch}>
<th scope=row><a href="{e(record_href(kind, value))}">{e(record_text(t, kind, value))}</a></th>
<td data-label="{e(t("col.organisation"))}">{e(item.reader_name or str(row.reader))}</td>
<td data-label="{e(t("sharing.until"))}">{e(until)}</td>
<td data-label="{e(t("col.status"))}">
<span class="chip grant-{e(state)}">{e(t("sharing.state." + state))}</span>
<span class="progress muted">{_progress(t, item)}</span></td>
<td data-label="{e(t("sharing.granted_at"))}">{_time(t, row.granted_at)}</td>
<td>{action}</td></tr>"""


def _options(values: list[tuple[str, str]], chosen: str) -> str:
    return "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}'
                   "</option>" for v, label in values)


def _record(request: web.Request) -> Reference | None:
    """The record of ``?kind=&value=`` (None when not given or not a valid reference)."""
    kind, value = request.query.get("kind", ""), request.query.get("value", "").strip()
    if kind not in SHAREABLE or not value or len(value) > 35:
        return None
    try:
        return Reference(kind, normalise(kind, value, "value"))
    except ApiError:
        return None


def readers_of(request: web.Request, principal: Principal) -> list[tuple[str, str]]:
    """The active members one may grant to (not the caller's own organisation), by name."""
    directory = request.app[TRACKING].directory()
    return sorted(((str(o["id"]), str(o["name"])) for o in directory
                   if o["active"] and o["id"] != principal.chain_org), key=lambda o: o[1])


@pages.get("/sharing")
async def sharing_page(request: web.Request) -> web.Response:
    """The owner's grants and the form to grant another organisation a record."""
    principal = signed_in(request, SCOPE)
    t = translator(request)
    if principal.chain_org is None:
        return shell.refused(request, t("refused.not_member"))
    record = _record(request)
    show_all = request.query.get("show") == "all"
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isascii() and before_text.isdigit() and len(
        before_text) <= 18 else 0
    found = grants_of(request.app, principal, subject=record, before=before, limit=PAGE_SIZE)
    shown = [item for item in found if show_all or item.state in CURRENT]
    rows = "".join(grant_row(t, item) for item in shown)
    if not rows:
        rows = (f'<tr><td colspan=6 class=muted>'
                f'{e(t("sharing.none_record" if record else "sharing.none"))}</td></tr>')
    more = ""
    if len(found) == PAGE_SIZE:
        query = {k: v for k, v in request.query.items() if k != "before"}
        more = (f'<p><a class=button href="/sharing?'
                f'{e(urlencode({**query, "before": found[-1].registered.seq}))}">'
                f'{e(t("common.older"))}</a></p>')
    kinds = [(k, t("sharing.kind." + k)) for k in SHAREABLE]
    readers = readers_of(request, principal)
    reader_options = _options([("", t("sharing.choose"))] + readers, "")
    heading = t("sharing.title")
    section = ""
    if record is not None:
        heading = t("sharing.share_record", record=record_text(t, record.kind, record.value))
        section = (f'<p><a href="/sharing">{e(t("sharing.all_records"))}</a> · '
                   f'<a href="/track?{e(urlencode({"q": record.value}))}">'
                   f'{e(t("sharing.open_record"))}</a></p>')
    filters_query = {k: v for k, v in request.query.items() if k not in ("show", "before")}
    toggle = urlencode({**filters_query, **({} if show_all else {"show": "all"})})
    toggle_text = t("sharing.show_current" if show_all else "sharing.show_all")
    body = f"""<h1>{e(heading)}</h1>
<p>{e(t("sharing.intro"))}</p>
{section}
<section aria-labelledby=grants-title>
<h2 id=grants-title>{e(t("sharing.grants_title"))}</h2>
<p><a href="/sharing?{e(toggle)}">{e(toggle_text)}</a></p>
<p class=message id=grants-message role=status aria-live=polite></p>
<div class=scroll><table id=grants>
<caption class=visually-hidden>{e(t("sharing.grants_caption"))}</caption>
<thead><tr><th scope=col>{e(t("col.record"))}</th><th scope=col>{e(t("col.organisation"))}</th>
<th scope=col>{e(t("sharing.until"))}</th><th scope=col>{e(t("col.status"))}</th>
<th scope=col>{e(t("sharing.granted_at"))}</th>
<th scope=col><span class=visually-hidden>{e(t("col.action"))}</span></th></tr></thead>
<tbody>{rows}</tbody></table></div>
{more}
</section>
<section aria-labelledby=grant-title>
<h2 id=grant-title>{e(t("sharing.grant_title"))}</h2>
<form id=grant-form class="stack share" novalidate>
<label for=kind>{e(t("sharing.kind"))}</label>
<select id=kind name=kind>{_options(kinds, record.kind if record else "container")}</select>
<label for=value>{e(t("sharing.reference"))}</label>
<input id=value name=value required maxlength=35 autocomplete=off spellcheck=false
 value="{e(record.value if record else "")}">
<label for=reader>{e(t("col.organisation"))}</label>
<select id=reader name=reader required>{reader_options}</select>
<label for=until>{e(t("sharing.until_optional"))}</label>
<input id=until name=until type=date aria-describedby=until-hint>
<p id=until-hint class=muted>{e(t("sharing.until_hint"))}</p>
<button>{e(t("sharing.grant"))}</button>
<p class=message role=status aria-live=polite></p>
</form>
</section>"""
    return render(request, page="sharing", title=heading, body=body)


def setup(app: web.Application) -> None:
    """The sharing page and its navigation entry."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/sharing", "sharing.nav", 40,
                               lambda p: p is not None and SCOPE in p.scopes))
