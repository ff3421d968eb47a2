"""The declarations' pages: the list (with an upload of a new shipment's goods lines) and the
review page of one shipment's declarations.

``/declarations`` lists the shipments the signed-in user's organisation may read — its own,
those that name it, and (a customs organisation) those submitted to it — and, for a user who
may declare, a form to upload the commercial invoice / packing list lines of a shipment (a
CSV or JSON file; the per-line errors are shown when the upload is refused).

A truck job (the land leg) is one of the kinds of transport document: its haulier uploads the
goods lines for the job's id, and the page shows the job's vehicle and the CCRN bound to it.

``/declarations/{id}`` shows the drafts **side by side** (Hong Kong TDEC, ROCARS when there is
a road crossing, the China 报关单): every field with its lineage (where its value came from),
the China draft's Chinese labels beside the reader's language, each draft's errors and
warnings, the declaration charge and late penalty in HK$, the cross-draft checks, the currency
conversions with their rate's source and date, the corrections (who and when), and each
submission's status, official number and the authority's answer (the page's script follows
open submissions until they settle). The declarant corrects a field, approves and submits from
here, and may replace the goods lines with a new file.

Everything comes from the functions the JSON API answers with
(:func:`gateway.declarations.api.listing`, :func:`~gateway.declarations.api.readable`,
:func:`~gateway.declarations.api.view_of`), so a page shows exactly what the API shows the same
user: a bank or a competitor gets the same "not found" as for a declaration that does not
exist. The actions are the script's calls to that API.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.appkeys import ACCOUNTS, DECLARATIONS
from gateway.declarations.api import READ, WRITE, listing, readable, view_of
from gateway.errors import ApiError
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: Field values shown as HK$ amounts.
MONEY = frozenset({"totalValueHkd", "charge", "latePenalty", "clothingLevy", "valueHkd"})
#: Field values that are calendar days (``YYYY-MM-DD``).
DAYS = frozenset({"movementDate", "deadline", "expectedDate", "IEDate"})
#: Field values that are moments (ISO 8601).
MOMENTS = frozenset({"crossingTime"})
#: Fields whose corrected value is a whole number (the API refuses text for them).
WHOLE = frozenset({"packages", "PackNo"})
#: Line fields never offered for correction (they identify the line).
KEYS = frozenset({"line", "seq", "GNo"})
#: Issue codes of the checks across drafts.
CROSS = frozenset({"cross-draft-mismatch", "head-lines-mismatch"})
#: Submission statuses still moving (the script follows them).
OPEN = frozenset({"pending", "received", "accepted", "queried"})


def may_declare(principal: Principal | None) -> bool:
    """Whether the user may upload and submit declarations (the navigation entry's test)."""
    return (principal is not None and principal.role != "driver"
            and READ in principal.scopes and WRITE in principal.scopes)


def _value(fields: dict[str, Any], name: str) -> Any:
    found = fields.get(name)
    return found.get("value") if isinstance(found, dict) else None


def _label(t: Translator, key: str, fallback: str) -> str:
    return t(key) if t.has(key) else fallback


def field_label(t: Translator, authority: str, name: str, english: str) -> str:
    """A field's label in the reader's language (the draft's English one if the catalogue
    has none)."""
    for key in (f"declarations.field.{authority}.{name}", f"declarations.field.{name}"):
        if t.has(key):
            return t(key)
    return english or name


def org_name(request: web.Request, org_id: int) -> str:
    try:
        return request.app[ACCOUNTS].organisation(org_id).name
    except Exception:  # a deleted organisation: its number
        return f"#{org_id}"


def who_text(request: web.Request, t: Translator, principal: Principal, by: str) -> str:
    """``user 7 of organisation 3`` as the user's e-mail (for the same organisation only) and
    the organisation's name."""
    parts = by.split()
    if len(parts) >= 5 and parts[-3:-1] == ["of", "organisation"] and parts[-1].isdigit():
        org = int(parts[-1])
        name = org_name(request, org)
        if parts[0] == "user" and parts[1].isdigit() and org == principal.org_id:
            try:
                email = request.app[ACCOUNTS].user(int(parts[1])).email
                return t("declarations.who_user", user=email, org=name)
            except Exception:  # a deleted user
                pass
        return t("declarations.who_org", org=name)
    return by


def source_html(request: web.Request, t: Translator, principal: Principal, source: str) -> str:
    """A field's lineage in words (HTML, escaped)."""
    kind, _, rest = str(source).partition(":")
    if kind == "invoice":
        line, _, column = rest.partition(":")
        if line.startswith("line ") and column:
            return e(t("declarations.src.invoice_line", line=line[5:], column=column))
        return e(t("declarations.src.invoice", what=rest))
    if kind == "correction":
        who, _, when = rest.rpartition(" at ")
        said = t("declarations.src.correction", who=who_text(request, t, principal, who))
        return (f'<strong>{e(said)}</strong> '
                f'<time datetime="{e(iso(when))}">{e(t.when(when))}</time>')
    if kind == "directory" and rest.startswith("organisation ") and rest[13:].isdigit():
        return e(t("declarations.src.directory", org=org_name(request, int(rest[13:]))))
    if kind in ("tracking", "upload", "settings", "input", "computed", "land"):
        return e(t(f"declarations.src.{kind}", what=rest.strip()))
    if kind == "missing":
        return f'<span class=warn>{e(t("declarations.src.missing"))}</span>'
    return e(str(source))


def value_html(t: Translator, name: str, value: Any) -> str:
    """A field's value for people (HTML, escaped)."""
    if value is None or value == "":
        return f'<span class=muted>{e(t("declarations.no_value"))}</span>'
    if isinstance(value, dict):
        text = str(value.get("name") or "")
        if value.get("imo"):
            text += f" (IMO {value['imo']})"
        return e(text)
    if isinstance(value, list):
        return e(", ".join(str(v) for v in value))
    if name in MONEY:
        try:
            return e(t.money(Decimal(str(value))))
        except InvalidOperation:
            return e(str(value))
    if name in DAYS:
        return e(t.day(str(value)))
    if name in MOMENTS:
        return f'<time datetime="{e(iso(value))}">{e(t.when(value))}</time>'
    if name == "direction":
        return e(_label(t, f"declarations.direction.{value}", str(value)))
    return e(str(value))


def draft_title(t: Translator, draft: dict[str, Any], reference: str) -> str:
    """A draft's heading in the reader's language."""
    fields = draft.get("fields", {})

    def value(name: str) -> Any:
        return _value(fields, name)

    direction = _label(t, f"declarations.direction.{value('direction')}",
                       str(value("direction")))
    if draft["authority"] == "hk-tdec":
        return t("declarations.draft.tdec", form=value("form"), direction=direction,
                 bill=value("transportDocument"))
    if draft["authority"] == "hk-rocars":
        return t("declarations.draft.rocars", direction=direction, reference=reference)
    china = "import" if value("IEFlag") == "I" else "export"
    return t("declarations.draft.itsw", direction=t(f"declarations.direction.{china}"),
             reference=reference)


def _issue_html(t: Translator, issue: dict[str, Any]) -> str:
    severity = "error" if issue.get("severity") == "error" else "warning"
    code = str(issue.get("code"))
    title = _label(t, f"declarations.issue.{code}", code)
    where = (f' <span class=muted>({e(str(issue["path"]))})</span>'
             if issue.get("path") else "")
    return (f'<li class="decl-issue decl-{severity}"><strong>'
            f'{e(t("declarations." + severity))}: {e(title)}</strong>{where}<br>'
            f'<span lang=en>{e(str(issue.get("message", "")))}</span></li>')


def _fields_table(request: web.Request, t: Translator, principal: Principal,
                  draft: dict[str, Any]) -> str:
    authority = draft["authority"]
    rows = []
    for name, f in draft["fields"].items():
        label = e(field_label(t, authority, name, f.get("label", "")))
        if f.get("labelZh") and t.lang != "zh-Hans":
            label += f' <span lang=zh-Hans class=zh>{e(f["labelZh"])}</span>'
        rows.append(f'<tr id="{e(_anchor(draft["key"], "fields/" + name))}">'
                    f'<th scope=row>{label}</th>'
                    f'<td data-label="{e(t("declarations.col.value_source"))}">'
                    f'{value_html(t, name, f.get("value"))}<br><small class=decl-source>'
                    f'{source_html(request, t, principal, f.get("source", ""))}</small>'
                    "</td></tr>")
    return (f'<div class=scroll><table class=decl-fields><caption class=visually-hidden>'
            f'{e(t("declarations.fields"))}</caption><thead><tr>'
            f'<th scope=col>{e(t("declarations.col.field"))}</th>'
            f'<th scope=col>{e(t("declarations.col.value_source"))}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _lines_table(request: web.Request, t: Translator, principal: Principal,
                 draft: dict[str, Any]) -> str:
    lines = draft.get("lines") or []
    if not lines:
        return ""
    authority = draft["authority"]
    names = [n for n in lines[0] if n not in ("seq", "GNo")]
    head = "".join(f'<th scope=col>{e(field_label(t, authority, n, lines[0][n].get("label", "")))}'
                   + (f' <span lang=zh-Hans class=zh>{e(lines[0][n]["labelZh"])}</span>'
                      if lines[0][n].get("labelZh") and t.lang != "zh-Hans" else "")
                   + "</th>" for n in names)
    body = []
    for line in lines:
        number = line["line"]["value"]
        cells = []
        for n in names:
            f = line.get(n) or {}
            source = str(f.get("source", ""))
            own = source.startswith(f"invoice:line {number}:")
            note = "" if own else (f'<br><small class=decl-source>'
                                   f'{source_html(request, t, principal, source)}</small>')
            label = field_label(t, authority, n, f.get("label", ""))
            if f.get("labelZh") and t.lang != "zh-Hans":
                label += f' {f["labelZh"]}'
            label = e(label)
            cells.append(f'<td data-label="{label}" '
                         f'id="{e(_anchor(draft["key"], f"lines/{number}/{n}"))}">'
                         f'{value_html(t, n, f.get("value"))}{note}</td>')
        body.append(f'<tr>{"".join(cells)}</tr>')
    return (f'<h4>{e(t("declarations.lines", count=len(lines)))}</h4>'
            f'<p class=muted>{e(t("declarations.lines_lineage"))}</p>'
            f'<div class=scroll><table class=decl-lines><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _anchor(draft: str, path: str) -> str:
    return "f-" + "".join(c if c.isalnum() else "-" for c in f"{draft}-{path}")


def _correctable(t: Translator, draft: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, label, kind) of the fields the declarant may correct."""
    out = []
    authority = draft["authority"]

    def ok(f: dict[str, Any]) -> bool:
        return not str(f.get("source", "")).startswith("computed:") and not isinstance(
            f.get("value"), dict | list)

    for name, f in draft["fields"].items():
        if ok(f):
            out.append((f"fields/{name}", field_label(t, authority, name, f.get("label", "")),
                        "int" if name in WHOLE else "text"))
    for line in draft.get("lines") or []:
        number = line["line"]["value"]
        for name, f in line.items():
            if name not in KEYS and ok(f):
                label = t("declarations.line_field", line=number,
                          field=field_label(t, authority, name, f.get("label", "")))
                out.append((f"lines/{number}/{name}", label,
                            "int" if name in WHOLE else "text"))
    return out


def _actions(t: Translator, shipment_id: int, draft: dict[str, Any],
             submitted: dict[str, Any] | None) -> str:
    key = draft["key"]
    base = f"/v1/declarations/{shipment_id}/drafts/{quote(key, safe='')}"
    slug = _anchor(key, "correct")
    options = "".join(f'<option value="{e(path)}" data-kind="{kind}">{e(label)}</option>'
                      for path, label, kind in _correctable(t, draft))
    approval = draft.get("approval")
    current = bool(approval and approval.get("current"))
    buttons = []
    if not current:
        buttons.append(f'<button type=button data-post="{e(base)}/approve"'
                       f'{"" if draft.get("ok") else " disabled"} '
                       f'data-done="{e(t("declarations.approved_done"))}">'
                       f'{e(t("declarations.approve"))}</button>')
    elif submitted is None or submitted.get("status") == "failed" or (
            approval is not None and submitted.get("documentHash") != approval.get("documentHash")):
        buttons.append(f'<button type=button data-post="{e(base)}/submit" '
                       f'data-done="{e(t("declarations.submitted_done"))}">'
                       f'{e(t("declarations.submit"))}</button>')
    hint = "" if draft.get("ok") else f'<p class=muted>{e(t("declarations.fix_first"))}</p>'
    return f"""<form class="decl-correct stack" data-shipment="{shipment_id}" data-draft="{e(key)}"
 aria-label="{e(t("declarations.correct_title"))}">
<h4>{e(t("declarations.correct_title"))}</h4>
<label for="{slug}-path">{e(t("declarations.correct_field"))}</label>
<select id="{slug}-path" name=path>{options}</select>
<label for="{slug}-value">{e(t("declarations.correct_value"))}</label>
<input id="{slug}-value" name=value autocomplete=off>
<button class=secondary>{e(t("declarations.correct"))}</button>
</form>
{hint}<p class=decl-buttons>{"".join(buttons)}</p>"""


def _draft_html(request: web.Request, t: Translator, principal: Principal,
                view: dict[str, Any], draft: dict[str, Any], owner: bool,
                submitted: dict[str, Any] | None) -> str:
    key = draft["key"]
    errors = [i for i in draft["issues"] if i.get("severity") == "error"]
    warnings = [i for i in draft["issues"] if i.get("severity") != "error"]
    chips = [f'<span class="chip {"decl-ok" if draft.get("ok") else "decl-bad"}">'
             + e(t("declarations.ready") if draft.get("ok") else
                 t("declarations.errors", count=len(errors))) + "</span>"]
    if warnings:
        chips.append(f'<span class="chip decl-warn">'
                     f'{e(t("declarations.warnings", count=len(warnings)))}</span>')
    approval = draft.get("approval")
    approved = ""
    if approval:
        state = "approved" if approval.get("current") else "approval_outdated"
        who = who_text(request, t, principal, approval["by"])
        approved = (f'<p>{e(t("declarations." + state, who=who))}'
                    f' <time datetime="{e(iso(approval["at"]))}">{e(t.when(approval["at"]))}'
                    f"</time></p>")
    if submitted is not None:
        status = str(submitted.get("status"))
        chips.append(f'<span class="chip decl-status-{e(status)}" data-status-of="{e(key)}">'
                     f'{e(_label(t, "declarations.status." + status, status))}</span>')
    issues = "".join(_issue_html(t, i) for i in errors + warnings)
    issues_html = (f'<ul class=decl-issues>{issues}</ul>' if issues else
                   f'<p class=muted>{e(t("declarations.no_issues"))}</p>')
    authority = _label(t, f"declarations.authority.{draft['authority']}", draft["authority"])
    actions = _actions(t, int(view["id"]), draft, submitted) if owner else ""
    return f"""<section class=decl-draft aria-labelledby="{e(_anchor(key, "title"))}">
<h3 id="{e(_anchor(key, "title"))}">{e(draft_title(t, draft, view["reference"]))}</h3>
<p class=muted>{e(authority)} · <code>{e(key)}</code></p>
<p>{" ".join(chips)}</p>
{approved}{issues_html}
{_fields_table(request, t, principal, draft)}
{_lines_table(request, t, principal, draft)}
{actions}
</section>"""


def _rate(t: Translator, rate: dict[str, Any]) -> str:
    return t("declarations.rate", base=rate["base"], rate=rate["rate"], quote=rate["quote"],
             source=rate["source"])


def _summary(t: Translator, view: dict[str, Any]) -> str:
    items = []
    for draft in view["drafts"]:
        if draft["authority"] != "hk-tdec":
            continue
        f = draft["fields"]

        def value(name: str, f: dict[str, Any] = f) -> Any:
            return _value(f, name)

        parts = [t("declarations.sum.total", amount=value_html(t, "totalValueHkd",
                                                               value("totalValueHkd")))]
        charge = value_html(t, "charge", value("charge"))
        parts.append(f'<strong>{t("declarations.sum.charge", amount=charge)}</strong>')
        if value("clothingLevy") is not None:
            parts.append(t("declarations.sum.levy",
                           amount=value_html(t, "clothingLevy", value("clothingLevy"))))
        if value("deadline"):
            parts.append(t("declarations.sum.deadline",
                           day=value_html(t, "deadline", value("deadline"))))
        if value("latePenalty") is not None:
            penalty = value_html(t, "latePenalty", value("latePenalty"))
            parts.append(f'<span class=warn>{t("declarations.sum.penalty", amount=penalty)}</span>')
        form = t("declarations.sum.form", form=value("form"), bill=value("transportDocument"))
        items.append(f'<li><strong>{e(form)}</strong>'
                     f': {" · ".join(parts)}</li>')
    charges = (f'<ul class=figures>{"".join(items)}</ul>' if items else
               f'<p class=muted>{e(t("declarations.sum.no_tdec"))}</p>')
    rates = [f'<li>{e(_rate(t, r))} · {e(t("declarations.rate_date", day=t.day(r["date"])))}'
             "</li>" for r in view.get("conversions") or []]
    conversions = (f'<ul class=figures>{"".join(rates)}</ul>' if rates else
                   f'<p class=muted>{e(t("declarations.no_conversion"))}</p>')
    cross = [i for d in view["drafts"] for i in d["issues"] if i.get("code") in CROSS]
    if cross:
        seen: dict[str, dict[str, Any]] = {}
        for issue in cross:
            seen.setdefault(str(issue.get("message")), issue)
        checks = f'<ul class=decl-issues>{"".join(_issue_html(t, i) for i in seen.values())}</ul>'
    else:
        checks = f'<p class=decl-agree>{e(t("declarations.cross_ok"))}</p>'
    return f"""<section class=card aria-labelledby=decl-summary>
<h2 id=decl-summary>{e(t("declarations.summary"))}</h2>
{charges}
<h3>{e(t("declarations.conversions"))}</h3>
{conversions}
<h3>{e(t("declarations.cross"))}</h3>
{checks}
</section>"""


def _submissions(request: web.Request, t: Translator, principal: Principal,
                 view: dict[str, Any]) -> str:
    subs = view.get("submissions") or []
    if not subs:
        body = f'<p class=muted>{e(t("declarations.no_submissions"))}</p>'
    else:
        rows = []
        for s in subs:
            status = str(s.get("status"))
            reasons = "; ".join(s.get("reasons") or [])
            history = " → ".join(
                _label(t, f"declarations.status.{h['status']}", h["status"])
                for h in s.get("history") or [])
            error = (f'<br><small class=warn>'
                     f'{e(t("declarations.last_error", error=s["lastError"]))}'
                     "</small>") if s.get("lastError") else ""
            bound = _binding(t, s.get("binding"))
            rows.append(
                f'<tr data-submission="{e(s["id"])}">'
                f'<td data-label="{e(t("declarations.col.draft"))}"><code>{e(s["draft"])}</code>'
                f'<br>{e(_label(t, "declarations.authority." + s["authority"], s["authority"]))}'
                "</td>"
                f'<td data-label="{e(t("col.status"))}" class=decl-sub-status>'
                f'<span class="chip decl-status-{e(status)}">'
                f'{e(_label(t, "declarations.status." + status, status))}</span>{error}</td>'
                f'<td data-label="{e(t("declarations.col.number"))}" class=decl-sub-number>'
                f'{e(s.get("number") or "—")}{bound}</td>'
                f'<td data-label="{e(t("declarations.col.answer"))}" class=decl-sub-answer>'
                f'{e(reasons or "—")}</td>'
                f'<td data-label="{e(t("declarations.col.history"))}" class=decl-sub-history>'
                f'{e(history)}</td>'
                f'<td data-label="{e(t("declarations.col.submitted"))}">'
                f'{e(who_text(request, t, principal, str(s.get("submittedBy", ""))))}<br>'
                f'<time datetime="{e(iso(s.get("created")))}">{e(t.when(s.get("created")))}'
                f"</time></td></tr>")
        body = (f'<div class=scroll><table id=decl-submissions><thead><tr>'
                f'<th scope=col>{e(t("declarations.col.draft"))}</th>'
                f'<th scope=col>{e(t("col.status"))}</th>'
                f'<th scope=col>{e(t("declarations.col.number"))}</th>'
                f'<th scope=col>{e(t("declarations.col.answer"))}</th>'
                f'<th scope=col>{e(t("declarations.col.history"))}</th>'
                f'<th scope=col>{e(t("declarations.col.submitted"))}</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')
    following = any(s.get("status") in OPEN for s in subs)
    return (f'<section aria-labelledby=decl-subs-title id=decl-subs '
            f'data-shipment="{int(view["id"])}"'
            f'{" data-follow" if following else ""}>'
            f'<h2 id=decl-subs-title>{e(t("declarations.submissions"))}</h2>'
            f'<p class=muted>{e(t("declarations.simulated_note"))}</p>{body}</section>')


def _binding(t: Translator, binding: Any) -> str:
    """A ROCARS CCRN's binding to its truck job (HTML), or ""."""
    if not isinstance(binding, dict) or binding.get("state") not in ("bound", "refused"):
        return ""
    if binding["state"] == "bound":
        said = t("declarations.ccrn_bound", job=binding.get("job"),
                 vehicle=binding.get("vehicle"))
        return f'<br><small class=decl-binding>{e(said)}</small>'
    said = t("declarations.ccrn_refused", job=binding.get("job"), reason=binding.get("reason"))
    return f'<br><small class="decl-binding warn">{e(said)}</small>'


def _corrections(request: web.Request, t: Translator, principal: Principal,
                 view: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td data-label="{e(t("declarations.col.draft"))}"><code>{e(c["draft"])}</code></td>'
        f'<td data-label="{e(t("declarations.col.field"))}"><code>{e(c["path"])}</code></td>'
        f'<td data-label="{e(t("declarations.col.value"))}">'
        f'{e(json.dumps(c["value"], ensure_ascii=False))}</td>'
        f'<td data-label="{e(t("declarations.col.by"))}">'
        f'{e(who_text(request, t, principal, c["by"]))}</td>'
        f'<td data-label="{e(t("col.time"))}"><time datetime="{e(iso(c["at"]))}">'
        f'{e(t.when(c["at"]))}</time></td></tr>'
        for c in view.get("corrections") or [])
    if not rows:
        return ""
    return (f'<section aria-labelledby=decl-corrections><h2 id=decl-corrections>'
            f'{e(t("declarations.corrections"))}</h2><div class=scroll><table><thead><tr>'
            f'<th scope=col>{e(t("declarations.col.draft"))}</th>'
            f'<th scope=col>{e(t("declarations.col.field"))}</th>'
            f'<th scope=col>{e(t("declarations.col.value"))}</th>'
            f'<th scope=col>{e(t("declarations.col.by"))}</th>'
            f'<th scope=col>{e(t("col.time"))}</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div></section>')


def _goods_form(t: Translator, shipment_id: int) -> str:
    return f"""<section aria-labelledby=decl-goods-title>
<h2 id=decl-goods-title>{e(t("declarations.replace_goods"))}</h2>
<form class="decl-goods stack" data-shipment="{shipment_id}" aria-labelledby=decl-goods-title>
<p class=muted>{e(t("declarations.replace_goods_note"))}</p>
<label for=decl-goods-file>{e(t("declarations.invoice_file"))}</label>
<input id=decl-goods-file name=file type=file required
 accept=".csv,.json,text/csv,application/json">
<button class=secondary>{e(t("declarations.upload"))}</button>
<ul class="decl-upload-errors decl-issues" aria-live=polite></ul>
</form>
</section>"""


def _message(t: Translator) -> str:
    return (f'<p class=message role=status aria-live=polite '
            f'data-failed="{e(t("declarations.failed", status="{status}"))}"></p>')


@pages.get("/declarations/{shipment_id}")
async def declaration_page(request: web.Request) -> web.Response:
    """One shipment's declarations: drafts side by side, actions, results."""
    principal = signed_in(request, READ)
    t = translator(request)
    service = request.app[DECLARATIONS]
    shipment = readable(service, principal, request.match_info["shipment_id"])
    if shipment is None:
        return shell.not_found(request, t("declarations.not_found"))
    title = t("declarations.title_one", reference=shipment.reference)
    try:
        view = view_of(service, shipment)
    except ApiError:  # the declarant no longer sees the shipment in tracking
        body = (f'<h1>{e(title)}</h1><p class=warn>{e(t("declarations.not_visible"))}</p>'
                f'<p><a href="/declarations">{e(t("declarations.back"))}</a></p>')
        return render(request, page="declaration", title=title, body=body, status=409)
    owner = shipment.org_id == principal.org_id and WRITE in principal.scopes
    latest: dict[str, dict[str, Any]] = {}
    for sub in view.get("submissions") or []:
        latest[sub["draft"]] = sub
    readers = ", ".join(org_name(request, r) for r in view.get("readers") or [])
    direction = _label(t, f"declarations.direction.{view['direction']}", view["direction"])
    facts = [t("declarations.declarant", org=e(org_name(request, view["owner"]))),
             e(t("declarations.direction_is", direction=direction)),
             e(t("declarations.line_count", count=view["lines"]))]
    if readers:
        facts.append(e(t("declarations.readers", orgs=readers)))
    job = view.get("job")
    if isinstance(job, dict):
        said = t("declarations.job_facts", job=job["id"], vehicle=job["vehicle"],
                 ccrn=job.get("ccrn") or t("declarations.no_ccrn"))
        facts.append(f"<span class=decl-job>{e(said)}</span>")
    if not owner:
        facts.append(e(t("declarations.read_only")))
    drafts = "".join(_draft_html(request, t, principal, view, d, owner, latest.get(d["key"]))
                     for d in view["drafts"])
    body = f"""<p><a href="/declarations">{e(t("declarations.back"))}</a></p>
<h1>{e(title)}</h1>
<p>{" · ".join(facts)}</p>
{_message(t)}
{_summary(t, view)}
<h2>{e(t("declarations.drafts"))}</h2>
<div class=decl-drafts>{drafts}</div>
{_submissions(request, t, principal, view)}
{_corrections(request, t, principal, view)}
{_goods_form(t, int(view["id"])) if owner else ""}"""
    return render(request, page="declaration", title=title, body=body)


def _upload_form(t: Translator, org_id: int) -> str:
    def party(role: str) -> str:
        return f"""<fieldset><legend>{e(t("declarations.party." + role))}</legend>
<label for="{role}-name">{e(t("declarations.party_name"))}</label>
<input id="{role}-name" name="{role}-name" autocomplete=organization>
<label for="{role}-address">{e(t("declarations.party_address"))}</label>
<input id="{role}-address" name="{role}-address" autocomplete=street-address>
<label for="{role}-country">{e(t("declarations.party_country"))}</label>
<input id="{role}-country" name="{role}-country" maxlength=2 autocomplete=country>
<label for="{role}-uscc">{e(t("declarations.party_uscc"))}</label>
<input id="{role}-uscc" name="{role}-uscc" maxlength=18 autocomplete=off>
</fieldset>"""

    return f"""<section aria-labelledby=decl-new-title>
<h2 id=decl-new-title>{e(t("declarations.new"))}</h2>
<p class=muted>{e(t("declarations.new_intro"))}</p>
<form id=decl-new class=stack aria-labelledby=decl-new-title data-org="{org_id}">
<label for=decl-reference>{e(t("declarations.reference"))}</label>
<input id=decl-reference name=reference required maxlength=35 autocomplete=off>
<label for=decl-kind>{e(t("declarations.kind"))}</label>
<select id=decl-kind name=kind>
<option value=mbl>{e(t("declarations.kind.mbl"))}</option>
<option value=hbl>{e(t("declarations.kind.hbl"))}</option>
<option value=awb>{e(t("declarations.kind.awb"))}</option>
<option value=truck>{e(t("declarations.kind.truck"))}</option></select>
<label for=decl-direction>{e(t("declarations.direction"))}</label>
<select id=decl-direction name=direction>
<option value=import>{e(t("declarations.direction.import"))}</option>
<option value=export>{e(t("declarations.direction.export"))}</option></select>
<label for=decl-self>{e(t("declarations.self"))}</label>
<select id=decl-self name=self>
<option value="">{e(t("declarations.self.none"))}</option>
<option value=consignee>{e(t("declarations.self.consignee"))}</option>
<option value=consignor>{e(t("declarations.self.consignor"))}</option></select>
{party("consignor")}
{party("consignee")}
<fieldset><legend>{e(t("declarations.crossing"))}</legend>
<p class=muted>{e(t("declarations.crossing_note"))} {e(t("declarations.truck_note"))}</p>
<label for=crossing-vehicle>{e(t("declarations.crossing_vehicle"))}</label>
<input id=crossing-vehicle name=crossing-vehicle maxlength=16 autocomplete=off>
<label for=crossing-time>{e(t("declarations.crossing_time"))}</label>
<input id=crossing-time name=crossing-time type=datetime-local>
<label for=crossing-point>{e(t("declarations.crossing_point"))}</label>
<input id=crossing-point name=crossing-point maxlength=60 autocomplete=off>
</fieldset>
<label for=decl-file>{e(t("declarations.invoice_file"))}</label>
<input id=decl-file name=file type=file accept=".csv,.json,text/csv,application/json" required>
<p class=muted>{e(t("declarations.invoice_columns"))}</p>
<button>{e(t("declarations.upload"))}</button>
<ul class="decl-upload-errors decl-issues" aria-live=polite></ul>
</form>
</section>"""


@pages.get("/declarations")
async def declarations_page(request: web.Request) -> web.Response:
    """The declarations the user's organisation may read, and a new upload."""
    principal = signed_in(request, READ)
    t = translator(request)
    service = request.app[DECLARATIONS]
    rows = []
    for item in listing(service, principal):
        subs = service.store.submissions_of(int(item["id"]))
        states = ", ".join(sorted({_label(t, f"declarations.status.{s.status}", s.status)
                                   for s in subs})) or t("declarations.not_submitted")
        numbers = "<br>".join(e(s.number) for s in subs if s.number) or "—"
        direction = _label(t, f"declarations.direction.{item['direction']}",
                           str(item["direction"]))
        rows.append(
            f'<tr><td data-label="{e(t("declarations.reference"))}">'
            f'<a href="/declarations/{int(item["id"])}">{e(item["reference"])}</a></td>'
            f'<td data-label="{e(t("declarations.col.declarant"))}">'
            f'{e(org_name(request, int(item["owner"])))}</td>'
            f'<td data-label="{e(t("declarations.direction"))}">{e(direction)}</td>'
            f'<td data-label="{e(t("col.status"))}">{e(states)}</td>'
            f'<td data-label="{e(t("declarations.col.number"))}">{numbers}</td>'
            f'<td data-label="{e(t("declarations.col.updated"))}">'
            f'<time datetime="{e(iso(item["updated"]))}">{e(t.when(item["updated"]))}</time>'
            f"</td></tr>")
    table = (f'<div class=scroll><table id=decl-list><thead><tr>'
             f'<th scope=col>{e(t("declarations.reference"))}</th>'
             f'<th scope=col>{e(t("declarations.col.declarant"))}</th>'
             f'<th scope=col>{e(t("declarations.direction"))}</th>'
             f'<th scope=col>{e(t("col.status"))}</th>'
             f'<th scope=col>{e(t("declarations.col.number"))}</th>'
             f'<th scope=col>{e(t("declarations.col.updated"))}</th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table></div>' if rows else
             f'<p class=muted>{e(t("declarations.none"))}</p>')
    body = f"""<h1>{e(t("declarations.title"))}</h1>
<p>{e(t("declarations.intro"))}</p>
{_message(t)}
<section aria-labelledby=decl-list-title><h2 id=decl-list-title>{e(t("declarations.list"))}</h2>
{table}</section>
{_upload_form(t, principal.org_id) if may_declare(principal) else ""}"""
    return render(request, page="declarations", title=t("declarations.title"), body=body)


def setup(app: web.Application) -> None:
    """The declarations' pages and their navigation entry (for users who may declare)."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/declarations", "declarations.nav", 35, may_declare))
