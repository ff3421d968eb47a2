"""The shipment view, ``/track?q=``: rendered on the server from the tracking service the JSON
API answers with.

:func:`shipment_view` makes exactly the calls of ``GET /v1/track/{ref}`` —
``Tracking.shipment_json`` (visibility, the view cache, the access-log entries of what the
reader sees) and the live telemetry overlay (AIS position and track, AIS-derived ETA, reefer
readings), or ``Tracking.resolve`` (how the text was read, near matches among references the
reader has legitimately read) when nothing visible matches — so a page view and an API call
leave the same trace for the owners.

The page shows, in the reader's language:

- a **summary card**: where it is now (the latest actual event in words, the vessel's AIS
  position), the next milestone, the ETA with every source side by side (carrier, terminal,
  AIS-derived, each with its age), release and customs status, the reefer temperature with a
  link to the container view's chart, and the storage meter where the alerts feature has one
  (:func:`gateway.alerts.api.storage_of`);
- the **containers**, the **vessel** card (a link to ``/vessels/{imo}``, ETD/ETA, position and
  the map's place), the **air waybill** (its milestones in words) and the **declarations**
  (customs statuses in words);
- the **timeline** (:mod:`gateway.web.timeline`): every event as a sentence, retractions struck
  through.

Nothing else is looked up: what the view does not contain, the reader may not see.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.alerts.api import NotAMember, storage_of
from gateway.alerts.pages import meter_lines
from gateway.appkeys import ALERTS, TELEMETRY, TRACKING
from gateway.errors import BadRequest, Forbidden
from gateway.events.model import Reference
from gateway.principal import Principal
from gateway.tracking import live
from gateway.tracking.eta import PORTS
from gateway.ui import maps, shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import e, render, signed_in, translator
from gateway.web import timeline
from gateway.web.pages import track_form

pages = shell.Pages()



#: Containers of one view whose storage meter the summary shows.
METER_BOXES = 8


async def shipment_view(request: web.Request, principal: Principal, text: str,
                        ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(view, None)`` — what the reader may see of ``text``, telemetry laid over it — or
    ``(None, resolved)`` with the resolver's suggestions: exactly what ``GET /v1/track/{ref}``
    reads (the same service calls, so the same access-log entries and learned references)."""
    tracking = request.app[TRACKING]
    body = tracking.shipment_json(principal, text)
    if body is None:
        return None, await tracking.resolve(principal, text)
    view: dict[str, Any] = json.loads(body)
    if request.app.get(TELEMETRY) is not None:  # AIS and reefer readings: never cached
        view = await live.overlay(request.app, principal, view)
    return view, None


def _vessel_names(view: dict[str, Any]) -> dict[str, str]:
    vessel = view.get("vessel") or {}
    imo, name = vessel.get("imo"), vessel.get("name")
    return {str(imo): str(name)} if imo and name else {}


def _latest(view: dict[str, Any], *, actual: bool) -> dict[str, Any] | None:
    """The view's latest actual event, or its earliest planned/estimated one still ahead."""
    live_entries = [x for x in view.get("timeline") or [] if not x.get("retracted")]
    if actual:
        done = [x for x in live_entries if x.get("classifier") == "ACT"]
        return max(done, key=lambda x: (x.get("time") or "", x.get("eventId") or 0),
                   default=None)
    now = iso(timeline.now_seconds())
    ahead = [x for x in live_entries if x.get("classifier") != "ACT"
             and str(x.get("time") or "") >= now]
    return min(ahead, key=lambda x: (x.get("time") or "", x.get("eventId") or 0), default=None)


def _fact(label: str, value: str) -> str:
    return f"<div><dt>{e(label)}</dt><dd>{value}</dd></div>"


def _eta_html(t: Translator, vessel: dict[str, Any], now: int) -> str:
    rows = timeline.eta_rows(vessel, now)
    if not rows:
        return ""
    items = []
    for row in rows:
        source = t("source.ais") if row.derived else row.source
        meta = t("timeline.source", source=source, age=timeline.age_text(t, row.age_seconds))
        items.append(
            f'<li><span class="cls cls-{e(row.classifier.lower())}">'
            f'{e(t("timeline.cls." + row.classifier))}</span> '
            f"{timeline.time_html(t, row.time, row.location or vessel.get('portOfCall'))} "
            f"<span class=muted>{e(meta)}</span></li>")
    return f'<ul class="sources plain" aria-label="{e(t("track.eta_sources"))}">{"".join(items)}</ul>'


def _customs_html(t: Translator, view: dict[str, Any]) -> str:
    parts = []
    customs = view.get("customs")
    if isinstance(customs, dict) and customs.get("status"):
        status = str(customs["status"])
        label = t("track.customs." + status) if t.has("track.customs." + status) else status
        parts.append(f'<span class="status status-customs-{e(status)}">{e(label)}</span> '
                     f'{timeline.time_html(t, customs.get("time"))}')
    for decl in view.get("declarations") or []:
        if isinstance(decl, dict) and "history" in decl:  # filed on chain
            parts.append(e(t("track.declaration_status", number=decl.get("number", ""),
                             status=_decl_status(t, decl.get("status")))))
    released = [c["number"] for c in view.get("containers") or []
                if c.get("status") == "available-for-pick-up"]
    if released:
        parts.append(e(t("track.released_boxes", count=len(released))))
    return "<br>".join(parts) if parts else e(t("track.nothing_yet"))


def _decl_status(t: Translator, status: Any) -> str:
    key = f"track.decl.{status}"
    return t(key) if t.has(key) else str(status or t("common.unknown"))


def _reefer_html(t: Translator, view: dict[str, Any]) -> str:
    out = []
    for box in view.get("containers") or []:
        reading = box.get("reefer")
        if not isinstance(reading, dict) or reading.get("temperature") is None:
            continue
        value = t("fmt.celsius", value=f"{reading['temperature']:g}") \
            if isinstance(reading["temperature"], int | float) else str(reading["temperature"])
        if isinstance(reading.get("setpoint"), int | float):
            value = t("timeline.setpoint", value=value,
                      setpoint=t("fmt.celsius", value=f"{reading['setpoint']:g}"))
        out.append(t("track.reefer_line", number=e(box["number"]), value=e(value),
                     when=timeline.time_html(t, reading.get("time")))
                   + f' <a href="/containers/{quote(box["number"], safe="")}#reefer">'
                   f'{e(t("track.reefer_chart"))}</a>')
    return "<br>".join(out)


def _meter_html(request: web.Request, principal: Principal, t: Translator,
                view: dict[str, Any]) -> str:
    service = request.app.get(ALERTS)
    if service is None:
        return ""
    out = []
    for box in (view.get("containers") or [])[:METER_BOXES]:
        try:
            meter = storage_of(service, principal.org_id, Reference("container", box["number"]))
        except NotAMember:
            return ""
        if not meter or not meter.get("available"):
            continue
        lines = " · ".join(meter_lines(t, meter))
        out.append(f'<a href="/containers/{quote(box["number"], safe="")}#meter">'
                   f'{e(box["number"])}</a>: {lines}')
    return "<br>".join(out)


def _summary(request: web.Request, principal: Principal, t: Translator,
             view: dict[str, Any], now: int) -> str:
    names = _vessel_names(view)
    facts = []
    latest = _latest(view, actual=True)
    where = ""
    vessel = view.get("vessel") or {}
    if latest is not None:
        where = (e(timeline.sentence(t, latest, names)) + " · "
                 + timeline.time_html(t, latest.get("time"), latest.get("location")))
    ais = vessel.get("ais") if isinstance(vessel, dict) else None
    if isinstance(ais, dict) and ais.get("lat") is not None:
        where += ("<br>" if where else "") + e(t(
            "track.at_sea", name=vessel.get("name") or t("common.unknown"),
            lat=f"{float(ais['lat']):.3f}", lon=f"{float(ais['lon']):.3f}",
            age=timeline.age_text(t, ais.get("ageSeconds"))))
    facts.append(_fact(t("track.now"), where or e(t("track.nothing_yet"))))
    ahead = _latest(view, actual=False)
    if ahead is not None:
        facts.append(_fact(t("track.next"), e(timeline.sentence(t, ahead, names)) + " · "
                           + timeline.time_html(t, ahead.get("time"), ahead.get("location"))))
    if isinstance(vessel, dict) and timeline.eta_rows(vessel, now):
        port = vessel.get("portOfCall")
        label = t("track.eta_at", port=timeline.place_name(t, port)) if port else t("track.eta")
        facts.append(_fact(label, _eta_html(t, vessel, now)))
    facts.append(_fact(t("track.customs_release"), _customs_html(t, view)))
    reefer = _reefer_html(t, view)
    if reefer:
        facts.append(_fact(t("track.reefer"), reefer))
    meter = _meter_html(request, principal, t, view)
    if meter:
        facts.append(_fact(t("meter.title"), meter))
    return (f'<section class="card summary" aria-labelledby=summary-h id=summary>'
            f'<h2 id=summary-h>{e(t("track.summary"))}</h2><dl>{"".join(facts)}</dl></section>')


def _status(t: Translator, status: Any) -> str:
    key = f"track.status.{status}"
    text = t(key) if status and t.has(key) else (str(status) if status else t("common.unknown"))
    return f'<span class="status status-{e(str(status or "unknown"))}">{e(text)}</span>'


def _containers(t: Translator, view: dict[str, Any]) -> str:
    boxes = view.get("containers") or []
    if not boxes:
        return ""
    rows = []
    for c in boxes:
        reefer = c.get("reefer") or {}
        temp = reefer.get("temperature")
        rows.append(
            f'<tr><th scope=row><a href="/containers/{quote(c["number"], safe="")}">'
            f'{e(c["number"])}</a></th>'
            f'<td data-label="{e(t("col.status"))}">{_status(t, c.get("status"))}</td>'
            f'<td data-label="{e(t("track.col_since"))}">'
            f'{timeline.time_html(t, c.get("statusTime"))}</td>'
            f'<td data-label="{e(t("track.reefer"))}">'
            f'{e(t("fmt.celsius", value=f"{temp:g}")) if isinstance(temp, int | float) else "—"}'
            f"</td></tr>")
    return f"""<section aria-labelledby=containers-h id=containers-box>
<h2 id=containers-h>{e(t("track.containers", count=len(boxes)))}</h2>
<div class=scroll><table id=containers><thead><tr><th scope=col>{e(t("track.col_container"))}</th>
<th scope=col>{e(t("col.status"))}</th><th scope=col>{e(t("track.col_since"))}</th>
<th scope=col>{e(t("track.reefer"))}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
</div></section>"""


def _map_html(t: Translator, vessel: dict[str, Any], name: str) -> str:
    """The vessel's map (:mod:`gateway.ui.maps`): its AIS position and track, and its port of
    call (a port the gateway knows the position of)."""
    port = PORTS.get(str(vessel.get("portOfCall") or ""))
    place = maps.Place("port", timeline.place_name(t, port.locode), port.lat, port.lon,
                       code=port.locode) if port else None
    return maps.map_html(t, title=t("map.of_vessel", vessel=name),
                         vessel=maps.Vessel.from_view(vessel), port=place)


def _vessel(t: Translator, view: dict[str, Any], now: int) -> str:
    vessel = view.get("vessel")
    if not isinstance(vessel, dict):
        return ""
    imo = vessel.get("imo")
    name = vessel.get("name") or (f"IMO {imo}" if imo else t("common.unknown"))
    facts = []
    if imo:
        facts.append(_fact("IMO", f'<a href="/vessels/{quote(str(imo), safe="")}">{e(imo)}</a>'
                              f' <span class=muted>{e(t("track.vessel_link"))}</span>'))
    port = vessel.get("portOfCall")
    if port:
        facts.append(_fact(t("track.port_of_call"), e(timeline.place_name(t, port))))
    for name_key, key in (("track.etd", "etd"), ("track.eta", "eta")):
        item = vessel.get(key)
        if isinstance(item, dict) and item.get("time"):
            cls = str(item.get("classifier") or "EST")
            meta = t("timeline.source", source=item.get("source") or "",
                     age=timeline.age_text(t, _freshness(item)))
            facts.append(_fact(t(name_key), (
                f'<span class="cls cls-{e(cls.lower())}">{e(t("timeline.cls." + cls))}</span> '
                + timeline.time_html(t, item["time"], port)
                + f" <span class=muted>{e(meta)}</span>")))
    ais = vessel.get("ais") or vessel.get("latestPosition")
    if isinstance(ais, dict) and ais.get("lat") is not None:
        speed = ""
        if isinstance(ais.get("sog"), int | float):
            speed = " · " + t("track.speed", speed=f"{ais['sog']:g}",
                              course=f"{ais.get('cog') or 0:g}")
        facts.append(_fact(t("track.position"), e(t(
            "track.position_value", lat=f"{float(ais['lat']):.4f}",
            lon=f"{float(ais['lon']):.4f}", source=ais.get("source") or "")) + " · "
            + timeline.time_html(t, ais.get("time")) + e(speed)))
    return f"""<section class=card aria-labelledby=vessel-h id=vessel>
<h2 id=vessel-h>{e(t("track.vessel", name=name))}</h2><dl>{"".join(facts)}</dl>
{_map_html(t, vessel, str(name))}</section>"""


def _freshness(item: dict[str, Any]) -> int | None:
    value = item.get("freshness", item.get("ageSeconds"))
    return int(value) if isinstance(value, int | float) else None


def _air(t: Translator, view: dict[str, Any]) -> str:
    awb = view.get("airWaybill")
    if not isinstance(awb, dict):
        return ""
    steps = []
    for m in awb.get("milestones") or []:
        code = str(m.get("code"))
        entry = {"type": f"AIR.{code}", "classifier": "ACT" if m.get("done") else "PLN",
                 "subject": {"kind": "awb", "value": awb.get("number")}}
        mark = "done" if m.get("done") else "todo"
        when = timeline.time_html(t, m["time"]) if m.get("time") else ""
        steps.append(f'<li class="milestone {mark}"><span class=code>{e(code)}</span> '
                     f'{e(timeline.sentence(t, entry))} {when}</li>')
    facts = []
    if awb.get("origin") or awb.get("destination"):
        facts.append(_fact(t("track.route"), e(f'{awb.get("origin") or "?"} → '
                                               f'{awb.get("destination") or "?"}')))
    if awb.get("pieces") is not None:
        facts.append(_fact(t("track.pieces"), e(t(
            "track.pieces_value", pieces=awb["pieces"],
            weight=awb.get("weight") if awb.get("weight") is not None else "—",
            unit=awb.get("weightUnit") or ""))))
    flights = ", ".join(
        str(f.get("flight")) + (f' {f.get("from") or "?"} → {f.get("to") or "?"}'
                                if f.get("from") or f.get("to") else "")
        for f in awb.get("flights") or [])
    if flights:
        facts.append(_fact(t("track.flights"), e(flights)))
    return f"""<section class=card aria-labelledby=awb-h id=air-waybill>
<h2 id=awb-h>{e(t("track.milestones"))}</h2>
<dl>{"".join(facts)}</dl><ol class=milestones>{"".join(steps)}</ol></section>"""


def _declarations(t: Translator, view: dict[str, Any]) -> str:
    filed = [d for d in view.get("declarations") or [] if isinstance(d, dict) and "history" in d]
    if not filed:
        return ""
    out = []
    for decl in filed:
        history = "".join(
            "<li>" + e(t("track.decl_step", status=_decl_status(t, h.get("status")),
                         by=h.get("by") or ""))
            + f" {timeline.time_html(t, h.get('time'))}</li>"
            for h in decl.get("history") or [])
        declarant = (decl.get("declarant") or {}).get("name") or ""
        out.append(f"""<h3>{e(t("subject.declaration", value=decl.get("number") or ""))}</h3>
<p><span class="status status-decl-{e(str(decl.get("status")))}">
{e(_decl_status(t, decl.get("status")))}</span></p>
<p class=muted>{e(t("track.declarant", name=declarant))} {timeline.time_html(t, decl.get("filedAt"))}
</p><ol class=milestones>{history}</ol>""")
    return f"""<section class=card aria-labelledby=decl-h id=declaration>
<h2 id=decl-h>{e(t("track.declarations"))}</h2>{"".join(out)}</section>"""


def share_link(t: Translator, principal: Principal, kind: str, value: str) -> str:
    """A link to the sharing page's form for this record (for users who may grant; the page and
    the API check that the record is theirs)."""
    if "grants:write" not in principal.scopes or not value:
        return ""
    href = "/sharing?" + urlencode({"kind": kind, "value": value})
    return (f'<p class=share><a href="{e(href)}">'
            f'{e(t("sharing.share_record", record=timeline.subject_text(t, kind, value)))}'
            "</a></p>")


def shipment_html(request: web.Request, principal: Principal, t: Translator,
                  view: dict[str, Any], now: int) -> str:
    """The whole shipment view (summary, containers, vessel, air waybill, declarations,
    timeline) as HTML."""
    number = str(view.get("reference"))
    if isinstance(view.get("airWaybill"), dict):  # 160-12345675 as printed on the waybill
        number = str(view["airWaybill"].get("number") or number)
    heading = timeline.subject_text(t, str(view.get("kind")), number)
    extra = []
    carrier = view.get("carrier")
    if isinstance(carrier, dict):
        extra.append(t("track.carrier", name=carrier.get("name"), scac=carrier.get("scac")))
    if view.get("masterBillOfLading"):
        extra.append(t("subject.mbl", value=view["masterBillOfLading"]))
    if isinstance(view.get("forwarder"), dict):
        extra.append(t("track.forwarder", name=view["forwarder"].get("name")))
    if isinstance(view.get("carrierOrganisation"), dict):
        extra.append(t("track.carrier_org", name=view["carrierOrganisation"].get("name")))
    about = f'<p class=muted>{e(" · ".join(extra))}</p>' if extra else ""
    about += share_link(t, principal, str(view.get("kind")), str(view.get("reference")))
    vessel = view.get("vessel")
    derived = [row for row in timeline.eta_rows(vessel, now) if row.derived] \
        if isinstance(vessel, dict) else []
    events = timeline.timeline_html(t, view.get("timeline") or [], now,
                                    vessels=_vessel_names(view),
                                    subject=str(view.get("reference")), derived=derived)
    return f"""<h2 id=reference>{e(heading)}</h2>{about}
{_summary(request, principal, t, view, now)}
{_containers(t, view)}
{_vessel(t, view, now)}
{_air(t, view)}
{_declarations(t, view)}
<section aria-labelledby=timeline-h id=timeline><h2 id=timeline-h>{e(t("timeline.title"))}</h2>
{events}</section>"""


def not_found_html(t: Translator, query: str, resolved: dict[str, Any]) -> str:
    """Nothing the reader may see matches: how the text was read and the near matches."""
    shown = str(resolved.get("normalised") or query)
    parts = [f"<p class=message role=status>{e(t('track.not_found', query=shown))}</p>"]
    candidates = resolved.get("candidates") or []
    if candidates:
        read = "; ".join(
            timeline.subject_text(t, str(c.get("kind")), str(c.get("value")))
            + ("" if c.get("valid") else " (" + (c.get("note") or t("track.not_valid")) + ")")
            for c in candidates)
        parts.append(f"<p>{e(t('track.read_as', candidates=read))}</p>")
    suggestions = resolved.get("suggestions") or []
    if suggestions:
        items = "".join(
            f'<li><a href="/track?{e(urlencode({"q": s.get("value", "")}))}">'
            f'{e(s.get("value", ""))}</a> <span class=muted>'
            f'{e(timeline.subject_text(t, str(s.get("kind")), "").strip())}</span></li>'
            for s in suggestions)
        parts.append(f'<h2>{e(t("track.did_you_mean"))}</h2><ul class=plain id=suggestions>'
                     f"{items}</ul>")
    return "".join(parts)


@pages.get("/track")
async def track_page(request: web.Request) -> web.Response:
    """The shipment view of ``?q=``, rendered here from the tracking service."""
    principal = signed_in(request, "tracking:read")
    t = translator(request)
    query = request.query.get("q", "").strip()[:64]
    title = t("track.title_of", query=query) if query else t("nav.track")
    head = f'<h1>{e(t("nav.track"))}</h1>\n{track_form(t, query)}'
    if not query:
        body = f'{head}<p class=muted>{e(t("track.type_number"))}</p>'
        return render(request, page="track", title=title, body=body)
    status = 200
    try:
        view, resolved = await shipment_view(request, principal, query)
    except BadRequest:
        view, resolved, status = None, None, 400
        content = f'<p class=message role=status>{e(t("track.not_a_reference", query=query))}</p>'
    except Forbidden:  # not a chain member yet: it can read nothing (the API's 403)
        view, resolved, status = None, None, 403
        content = f"<p class=message role=status>{e(t('refused.not_member'))}</p>"
    if view is not None:
        content = shipment_html(request, principal, t, view, timeline.now_seconds())
    elif resolved is not None:
        content, status = not_found_html(t, query, resolved), 404
    body = f'{head}\n<section id=shipment data-query="{e(query)}">{content}</section>'
    assets = maps.ASSETS if view is not None and view.get("vessel") else ()
    return render(request, page="track", title=title, body=body, status=status, assets=assets)




def setup(app: web.Application) -> None:
    """The shipment view."""
    pages.setup(app)
