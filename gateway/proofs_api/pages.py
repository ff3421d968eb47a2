"""The proofs page: a bank asks an owner for a proof of a record, follows its requests and
downloads an approved bundle; an owner answers the requests addressed to it (approve, or
decline with a reason) and exports a proof itself.

``/proofs`` is rendered by the server from the store the JSON API reads
(:meth:`gateway.proofs_api.store.ProofRequestStore.page`, scoped to the signed-in user's
organisation: the requests it made and those addressed to it, nothing else), each with its state,
the owner's reason or note, and its history. The page's script posts to the API
(``/v1/proof-requests``, ``…/approve``, ``…/decline``, ``…/withdraw``, ``/v1/proofs``) with
the session's CSRF token; a bundle downloads from ``GET /v1/proof-requests/{id}/bundle``, which
writes the download to the owner's access log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.appkeys import ACCOUNTS, PROOF_REQUESTS, TRACKING
from gateway.principal import Principal
from gateway.proofs_api.api import EXPORT_SCOPE, REQUEST_SCOPE
from gateway.proofs_api.store import ProofRequest, ProofRequestStore
from gateway.ui import shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: Requests listed per side.
PAGE_SIZE = 50


def _time(t: Translator, moment: Any) -> str:
    stamp = iso(moment)
    if not stamp:
        return e(t("common.unknown"))
    return f'<time datetime="{stamp}">{e(t.when(moment))}</time>'


def _name(request: web.Request, chain_org: int) -> str:
    return request.app[TRACKING].publisher_name(chain_org)


def _history(request: web.Request, t: Translator, store: ProofRequestStore,
             found: ProofRequest) -> str:
    lines = "".join(
        f"<li>{_time(t, h.time)} — "
        f'{e(t("sharing.proof.action." + h.action, organisation=_name(request, h.org)))}</li>'
        for h in store.history(found.id))
    return (f'<details><summary>{e(t("sharing.proof.history"))}</summary>'
            f"<ol class=history>{lines}</ol></details>")


def request_html(request: web.Request, t: Translator, store: ProofRequestStore,
                 found: ProofRequest, *, incoming: bool) -> str:
    """One proof request as an ``<article>`` (the owner's or the requester's side of it)."""
    other = found.requester_chain if incoming else found.owner_chain
    party = t("sharing.proof.from" if incoming else "sharing.proof.to",
              organisation=_name(request, other))
    lines = [f'<p><span class="chip proof-{e(found.status)}">'
             f'{e(t("sharing.proof.state." + found.status))}</span> {e(party)}</p>',
             f'<p>{e(t("sharing.proof.purpose", purpose=found.purpose))}</p>',
             f'<p class=muted>{t("sharing.proof.asked", when=_time(t, found.created))}</p>']
    if found.status == "declined":
        because = t("sharing.proof.declined_because", reason=found.reason or "")
        lines.append(f"<p class=reason>{e(because)}</p>")
    if found.status == "approved":
        if found.reason:
            lines.append(f'<p class=reason>{e(t("sharing.proof.note", note=found.reason))}</p>')
        size = t.number((found.bundle_size or 0) / 1024, 1)
        lines.append(f'<p>{e(t("sharing.proof.bundle", events=len(found.proven), size=size))}'
                     f' <a class=button href="/v1/proof-requests/{e(found.id)}/bundle" download>'
                     f'{e(t("sharing.proof.download"))}</a></p>')
    if found.status == "pending" and incoming:
        lines.append(f"""<form class="decide stack share" data-request="{e(found.id)}" novalidate>
<label for="note-{e(found.id)}">{e(t("sharing.proof.note_label"))}</label>
<textarea id="note-{e(found.id)}" name=note maxlength=1000></textarea>
<div class=actions><button name=decision value=approve>{e(t("sharing.proof.approve"))}</button>
<button name=decision value=decline class=danger>{e(t("sharing.proof.decline"))}</button></div>
<p class=message role=status aria-live=polite></p>
</form>""")
    if found.status == "pending" and not incoming:
        lines.append(f'<p><button type=button class=secondary '
                     f'data-post="/v1/proof-requests/{e(found.id)}/withdraw" '
                     f'data-done="{e(t("sharing.proof.withdrawn"))}">'
                     f'{e(t("sharing.proof.withdraw"))}</button></p>')
    lines.append(_history(request, t, store, found))
    return (f'<article class="proof-request proof-{e(found.status)}" id="request-{e(found.id)}">'
            f'<h3>{e(t("sharing.proof.of", reference=found.reference))}</h3>{"".join(lines)}'
            "</article>")


def owners_of(request: web.Request, principal: Principal) -> list[tuple[int, str]]:
    """Organisations one may ask: active members hosted on this gateway, but one's own."""
    accounts = request.app[ACCOUNTS]
    out = []
    for member in request.app[TRACKING].directory():
        if not member["active"] or member["id"] == principal.chain_org:
            continue
        hosted = accounts.by_chain_org(member["id"])
        if hosted is not None and hosted.status == "active":
            out.append((int(member["id"]), str(member["name"])))
    return sorted(out, key=lambda o: o[1])


def _section(request: web.Request, t: Translator, store: ProofRequestStore,
             rows: list[tuple[int, ProofRequest]], key: str) -> str:
    """The requests to the organisation (``incoming``) or by it (``outgoing``)."""
    incoming = key == "incoming"
    listed = "".join(request_html(request, t, store, r, incoming=incoming) for _, r in rows)
    title, none = (("sharing.proof.incoming", "sharing.proof.none_incoming") if incoming
                   else ("sharing.proof.outgoing", "sharing.proof.none_outgoing"))
    listed = listed or f"<p class=muted>{e(t(none))}</p>"
    return (f"<section id={key} aria-labelledby={key}-title>"
            f"<h2 id={key}-title>{e(t(title))}</h2>{listed}</section>")


@pages.get("/proofs")
async def proofs_page(request: web.Request) -> web.Response:
    """Proof requests to and by the organisation; ask for one; export one."""
    principal = signed_in(request)
    t = translator(request)
    exports, requests = EXPORT_SCOPE in principal.scopes, REQUEST_SCOPE in principal.scopes
    if not exports and not requests:
        return shell.refused(request, t("refused.scope", scope=REQUEST_SCOPE))
    if principal.chain_org is None:
        return shell.refused(request, t("refused.not_member"))
    store = request.app[PROOF_REQUESTS]
    parts = [f'<h1>{e(t("sharing.proof.title"))}</h1><p>{e(t("sharing.proof.intro"))}</p>',
             f'<p class=message role=status aria-live=polite '
             f'data-failed="{e(t("sharing.failed", status="{status}"))}"></p>']
    incoming = outgoing = ask = export = ""
    waiting = False
    if exports:
        rows = store.page(principal.org_id, incoming=True, outgoing=False, status=None,
                          before=0, limit=PAGE_SIZE)
        waiting = any(r.status == "pending" for _, r in rows)
        incoming = _section(request, t, store, rows, "incoming")
        export = f"""<section aria-labelledby=export-title>
<h2 id=export-title>{e(t("sharing.proof.export"))}</h2>
<p>{e(t("sharing.proof.export_intro"))}</p>
<form id=export-form class="stack share" novalidate>
<label for=export-reference>{e(t("sharing.reference"))}</label>
<input id=export-reference name=reference required maxlength=64 autocomplete=off spellcheck=false>
<label for=events>{e(t("sharing.proof.events"))}</label>
<select id=events name=events><option value=own>{e(t("sharing.proof.events_own"))}</option>
<option value=visible>{e(t("sharing.proof.events_visible"))}</option></select>
<p><label class=check><input type=checkbox name=disclose checked>
{e(t("sharing.proof.disclose"))}</label></p>
<button>{e(t("sharing.proof.export_button"))}</button>
<p class=message role=status aria-live=polite></p>
</form></section>"""
    if requests:
        rows = store.page(principal.org_id, incoming=False, outgoing=True, status=None,
                          before=0, limit=PAGE_SIZE)
        outgoing = _section(request, t, store, rows, "outgoing")
        owners = "".join(f'<option value="{i}">{e(name)}</option>'
                         for i, name in owners_of(request, principal))
        ask = f"""<section aria-labelledby=ask-title>
<h2 id=ask-title>{e(t("sharing.proof.ask"))}</h2>
<form id=ask-form class="stack share" novalidate>
<label for=owner>{e(t("sharing.proof.owner"))}</label>
<select id=owner name=owner required><option value="">{e(t("sharing.choose"))}</option>
{owners}</select>
<label for=ask-reference>{e(t("sharing.reference"))}</label>
<input id=ask-reference name=reference required maxlength=64 autocomplete=off spellcheck=false>
<label for=purpose>{e(t("sharing.proof.purpose_label"))}</label>
<textarea id=purpose name=purpose required maxlength=1000></textarea>
<button>{e(t("sharing.proof.send"))}</button>
<p class=message role=status aria-live=polite></p>
</form></section>"""
    # what waits for the reader's decision first; then asking and what it asked; then the rest
    parts += [incoming, ask, outgoing, export] if waiting else [ask, outgoing, incoming, export]
    return render(request, page="proofs", title=t("sharing.proof.title"),
                  body="\n".join(p for p in parts if p))


def _visible(principal: Principal | None) -> bool:
    return principal is not None and bool({EXPORT_SCOPE, REQUEST_SCOPE} & principal.scopes)


def setup(app: web.Application) -> None:
    """The proofs page and its navigation entry."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/proofs", "sharing.proof.nav", 45, _visible))
