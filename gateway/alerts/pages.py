"""The alerts page and the pieces other pages show: an alert with its figures in plain words,
and a box's storage meter.

``/alerts`` lists the signed-in user's alerts (open, resolved or both; by kind; unread only),
newest first, each in the reader's language with its figures (hours of slip, peak deviation,
days in yard, last free day, HK$ accrued and per day), the subject linked to its view, and a
"mark read" button (the page's script posts to ``/v1/alerts/{id}/read``). The navigation's
"Alerts" entry carries the unread count. Everything comes from the same functions the JSON API
answers with (:func:`gateway.alerts.api.inbox_of`, :func:`~gateway.alerts.api.storage_of`),
so a page shows exactly what the API would show the same user — nothing its owners did not let
the reader see.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.alerts.api import READ, NotAMember, inbox_of, unread_of
from gateway.alerts.model import KINDS, STATES
from gateway.appkeys import ALERTS
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: Alerts per page.
PAGE_SIZE = 50


def subject_href(kind: str, value: str) -> str:
    """The view of an alert's subject."""
    if kind == "container":
        return "/containers/" + quote(value, safe="")
    if kind == "vessel":
        return "/vessels/" + quote(value, safe="")
    return "/track?" + urlencode({"q": value})


def subject_text(t: Translator, kind: str, value: str) -> str:
    key = f"subject.{kind}"
    return t(key, value=value) if t.has(key) else t("subject.other", kind=kind, value=value)


def time_html(t: Translator, moment: Any) -> str:
    """A ``<time>`` in the place's time (the script adds the viewer's zone when it differs)."""
    stamp = iso(moment)
    if not stamp:
        return e(t("common.unknown"))
    return f'<time datetime="{stamp}">{e(t.when(moment))}</time>'


def _signed(value: Any, unit_key: str, t: Translator) -> str:
    number = float(value or 0)
    text = f"{number:+.1f}".rstrip("0").rstrip(".") if number % 1 else f"{number:+.0f}"
    return t(unit_key, hours=text, value=text)


def _source(t: Translator, source: Any) -> str:
    key = f"source.{source}"
    return t(key) if t.has(key) else str(source or t("common.unknown"))


def figures(t: Translator, alert: dict[str, Any]) -> list[str]:
    """An alert's figures as plain sentences (HTML, escaped) in the reader's language."""
    kind = alert.get("kind")
    out: list[str] = []
    if kind in ("vessel-delay", "eta-changed"):
        out.append(e(t("fig.slip", hours=_signed(alert.get("slip_hours"), "fmt.hours", t))))
        out.append(t("fig.eta_now", eta=time_html(t, alert.get("eta"))))
        if alert.get("first_eta"):
            out.append(t("fig.first_eta", eta=time_html(t, alert.get("first_eta")),
                         source=e(_source(t, alert.get("first_source")))))
        out.append(e(t("fig.moved_by", source=_source(t, alert.get("source")))))
        if alert.get("port"):
            out.append(e(t("fig.port", port=alert["port"])))
    elif kind == "reefer-excursion":
        out.append(e(t("fig.peak",
                       deviation=_signed(alert.get("peak_deviation"), "fmt.celsius", t),
                       temperature=t("fmt.celsius", value=alert.get("peak_temperature")))))
        band = alert.get("band")
        if band:
            out.append(e(t("fig.limit_band", low=t("fmt.celsius", value=band[0]),
                           high=t("fmt.celsius", value=band[1]),
                           commodity=alert.get("commodity") or "")))
        else:
            out.append(e(t("fig.limit_setpoint",
                           setpoint=t("fmt.celsius", value=alert.get("setpoint")),
                           tolerance=t("fmt.celsius", value=alert.get("tolerance")))))
        out.append(e(t("fig.duration",
                       duration=t.duration(60 * int(alert.get("duration_minutes") or 0)),
                       readings=alert.get("readings", 0))))
        out.append(t("fig.started", start=time_html(t, alert.get("start"))))
        if alert.get("end"):
            out.append(t("fig.ended", end=time_html(t, alert.get("end"))))
        if alert.get("stale"):
            out.append(t("fig.stale", when=time_html(t, alert.get("last_reading"))))
    elif kind in ("not-picked-up", "free-time-ending"):
        out += meter_lines(t, alert)
    elif kind == "customs-hold":
        status = str(alert.get("status") or "")
        out.append(t("fig.customs_status",
                     status=e(t("status." + status) if t.has("status." + status) else status),
                     since=time_html(t, alert.get("since"))))
        if alert.get("remark"):
            out.append(e(t("fig.remark", remark=alert["remark"])))
    return out


def meter_lines(t: Translator, meter: dict[str, Any]) -> list[str]:
    """The storage meter's figures (of a meter or a not-picked-up / free-time alert)."""
    out = []
    if meter.get("days_in_yard") is not None:
        out.append(e(t("fig.days_in_yard", days=meter["days_in_yard"])))
    if meter.get("last_free_day"):
        out.append(e(t("fig.last_free_day", day=t.day(meter["last_free_day"]))))
    days_left = meter.get("days_left")
    if isinstance(days_left, int) and days_left >= 0 and not meter.get("gated_out"):
        out.append(e(t("fig.days_left", days=days_left)))
    if meter.get("tariff_gap") or (meter.get("accrued") is None and meter.get("tariff")):
        out.append(e(t("fig.tariff_gap")))
    elif meter.get("accrued") is not None:
        out.append(f'<strong>{e(t("fig.accrued", amount=t.money(meter["accrued"])))}</strong>')
        if meter.get("per_day") is not None and not meter.get("gated_out"):
            out.append(e(t("fig.per_day", amount=t.money(meter["per_day"]))))
    if meter.get("pick_up_blocked"):
        kinds = sorted({str(h.get("kind")) for h in meter.get("holds") or []})
        names = ", ".join(t("hold." + k) if t.has("hold." + k) else k for k in kinds)
        out.append(f'<span class=warn>{e(t("fig.blocked", holds=names))}</span>')
    if meter.get("gated_out"):
        out.append(e(t("meter.gated_out")))
    return out


def alert_html(t: Translator, alert: dict[str, Any], *, heading: str = "h2") -> str:
    """One alert as an ``<article>``."""
    subject = alert.get("subject") or {}
    kind, value = str(subject.get("kind", "")), str(subject.get("value", ""))
    number = (alert.get("figures") or {}).get("declaration")
    if kind == "declaration" and isinstance(number, str) and number:
        value = number  # the subject is the declaration's keyed alias; its readers know the number
    state = alert.get("state", "open")
    unread = alert.get("read") is False
    badges = f'<span class="chip state-{e(state)}">{e(t("alerts." + state))}</span>'
    if unread:
        badges += f' <span class="chip unread">{e(t("alerts.unread"))}</span>'
    lines = "".join(f"<li>{line}</li>" for line in figures(t, alert))
    times = [t("alerts.opened", when=time_html(t, alert.get("opened"))),
             t("alerts.updated", when=time_html(t, alert.get("updated")))]
    if alert.get("resolved"):
        times.append(t("alerts.resolved_at", when=time_html(t, alert.get("resolved"))))
    if state == "resolved" and alert.get("reason"):
        times.append(e(t("alerts.reason", reason=alert["reason"])))
    button = ""
    if unread:
        button = (f'<button type=button class=secondary data-post="/v1/alerts/{int(alert["id"])}'
                  f'/read" data-done="{e(t("alerts.done"))}">{e(t("alerts.mark_read"))}</button>')
    return f"""<article class="alert kind-{e(str(alert.get("kind")))} state-{e(state)}"
 id="alert-{int(alert.get("id", 0))}">
<{heading}>{e(t("kind." + str(alert.get("kind"))))}</{heading}>
<p>{badges} <a href="{e(subject_href(kind, value))}">{e(subject_text(t, kind, value))}</a></p>
<ul class=figures>{lines}</ul>
<p class=muted>{" · ".join(times)} · {e(t("alerts.sources", count=len(alert.get("sources") or [])))}
</p>{button}
</article>"""


def _options(t: Translator, name: str, values: list[tuple[str, str]], chosen: str) -> str:
    return "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}'
                   "</option>" for v, label in values)


@pages.get("/alerts")
async def alerts_page(request: web.Request) -> web.Response:
    """The signed-in user's alerts."""
    principal = signed_in(request, READ)
    t = translator(request)
    service = request.app[ALERTS]
    state = request.query.get("state", "open")
    state = state if state in (*STATES, "all") else "open"
    kind = request.query.get("kind", "")
    kind = kind if kind in KINDS else ""
    unread = request.query.get("unread") == "true"
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isascii() and before_text.isdigit() and len(
        before_text) <= 18 else None
    try:
        alerts, following = inbox_of(service, principal, state=None if state == "all" else state,
                                     kinds=[kind] if kind else [], unread=unread, before=before,
                                     limit=PAGE_SIZE)
    except NotAMember:
        return shell.refused(request, t("refused.not_member"))
    states = [("open", t("alerts.open")), ("resolved", t("alerts.resolved")),
              ("all", t("common.all"))]
    kinds = [("", t("common.all")), *((k, t("kind." + k)) for k in KINDS)]
    listed = "".join(alert_html(t, a) for a in alerts) or f'<p class=muted>{e(t("alerts.none"))}</p>'
    more = ""
    if following is not None:
        query = {k: v for k, v in request.query.items() if k != "before"}
        more = (f'<p><a class=button href="/alerts?{e(urlencode({**query, "before": following}))}">'
                f'{e(t("common.older"))}</a></p>')
    body = f"""<h1>{e(t("alerts.title"))}</h1>
<p>{e(t("alerts.intro"))}</p>
<form class=filters method=get action="/alerts" aria-label="{e(t("alerts.filter"))}">
<div><label for=state>{e(t("alerts.state"))}</label>
<select id=state name=state>{_options(t, "state", states, state)}</select></div>
<div><label for=kind>{e(t("alerts.kind"))}</label>
<select id=kind name=kind>{_options(t, "kind", kinds, kind)}</select></div>
<label class=check><input type=checkbox name=unread value=true{" checked" if unread else ""}>
{e(t("alerts.unread_only"))}</label>
<input type=hidden name=lang value="{e(t.lang)}">
<button>{e(t("common.filter"))}</button>
</form>
<p><button type=button class=secondary data-post="/v1/alerts/read" data-body='{{"all":true}}'
 data-done="{e(t("alerts.done"))}">{e(t("alerts.mark_all_read"))}</button></p>
<p class=message role=status aria-live=polite data-failed="{e(t("alerts.failed", status="{status}"))}"></p>
<section id=alerts aria-label="{e(t("alerts.title"))}">{listed}</section>
{more}"""
    return render(request, page="alerts", title=t("alerts.title"), body=body)


def _badge(request: web.Request, principal: Principal) -> int | None:
    service = request.app.get(ALERTS)
    if service is None or READ not in principal.scopes:
        return None
    return unread_of(service, principal)


def setup(app: web.Application) -> None:
    """The alerts page and its navigation entry (with the unread count)."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/alerts", "nav.alerts", 20,
                               lambda p: p is not None and READ in p.scopes, badge=_badge))
