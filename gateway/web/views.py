"""The container and vessel views: server-rendered pages composing what several features know.

- ``/containers/{number}``: the box's **storage meter** (days in yard, last free day, HK$
  accrued and per day from now, the hold that blocks the pick-up — :func:`storage_of`), its
  **reefer chart** (readings as inline SVG with the excursion episodes shaded, and the readings
  as a table) and its alerts, with a link to the full tracking view.
- ``/vessels/{imo}``: the vessel's **ETA history with sources** — every ETA in the order
  received, each source's, with how far it moved against the first ETA seen at that port — and
  its arrivals (:func:`etas_of`), with its alerts.

Both views open with a **map** (:mod:`gateway.ui.maps`): the vessel view shows the vessel's
latest AIS position and track (public, as :mod:`gateway.tracking.live` lays them over a shipment
view) and its port of call (the port of the latest ETA the reader may see, placed by
:data:`gateway.tracking.eta.PORTS`); the container view shows where the box is by its last
movement the reader may see in its shipment view (the tracking service's, as ``/v1/track``
answers): in a terminal's yard (the yard event's terminal and place), in a warehouse or depot,
— loaded or departed — on board the view's vessel at its AIS position, with its port of call, or
— gated out, picked up — on the truck the pick-up names, at the truck's latest position since,
if the truck's owner lets the reader read it (telemetry visibility rule).

Each part comes from the functions the JSON API answers with, for the signed-in user: the
reefer readings through the telemetry visibility rule, the meter and ETAs through the alert
engine's per-organisation facts (only events the reader may read). Asking by number is asking by
reference, as typing it into tracking is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.alerts.api import READ, NotAMember, etas_of, inbox_of, storage_of
from gateway.alerts.pages import alert_html, meter_lines, time_html
from gateway.appkeys import ALERTS, TELEMETRY, TRACKING
from gateway.events import identifiers
from gateway.events.model import Reference
from gateway.land import driver_pages as land_pages
from gateway.land.api import LAND
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.tracking import live
from gateway.tracking.eta import PORTS
from gateway.ui import maps, shell
from gateway.ui.charts import Point, Span, temperature_chart
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import e, render, signed_in, translator
from gateway.web.shipment import share_link

pages = shell.Pages()

#: Reefer readings a container view draws (the newest; two days of 5-minute readings).
CHART_READINGS = 576
#: Alerts a view lists about its subject.
VIEW_ALERTS = 20


def _reference(kind: str, text: str) -> Reference | None:
    try:
        return Reference(kind, identifiers.normalise(kind, text))
    except identifiers.IdentifierError:
        return None


def _alerts(request: web.Request, principal: Principal, ref: Reference,
            ) -> list[dict[str, Any]]:
    found, _ = inbox_of(request.app[ALERTS], principal, state=None, kinds=[], unread=False,
                        before=None, limit=VIEW_ALERTS, subject=ref)
    return found


def _alert_list(t: Translator, alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return f'<p class=muted>{e(t("alerts.none"))}</p>'
    return "".join(alert_html(t, a, heading="h3") for a in alerts)


def _meter(t: Translator, meter: dict[str, Any] | None) -> str:
    if meter is None or not meter.get("available"):
        return f'<p class=muted>{e(t("meter.none"))}</p>'
    facts = []
    if meter.get("available"):
        facts.append(t("meter.available", when=time_html(t, meter["available"])))
    if meter.get("free_days") is not None:
        counting = str(meter.get("counting") or "calendar")
        facts.append(e(t("meter.free_time", free_days=meter["free_days"],
                         counting=t("meter.counting." + counting)
                         if t.has("meter.counting." + counting) else counting)))
    if meter.get("size"):
        facts.append(e(t("meter.size", size=meter["size"],
                         reefer=t("meter.reefer") if meter.get("reefer") else "")))
    if meter.get("tariff"):
        facts.append(e(t("meter.tariff", name=meter.get("tariff_name") or meter["tariff"])))
    elif meter.get("tariff") is None and meter.get("accrued") is None:
        facts.append(e(t("meter.no_tariff")))
    lines = "".join(f"<li>{line}</li>" for line in meter_lines(t, meter))
    extra = "".join(f"<li class=muted>{line}</li>" for line in facts)
    return f"<ul class=figures>{lines}{extra}</ul>"


async def _chart(request: web.Request, ref: Reference, t: Translator,
                 alerts: list[dict[str, Any]]) -> str:
    if request.app.get(TELEMETRY) is None:
        return f'<p class=muted>{e(t("container.no_readings"))}</p>'
    principal = signed_in(request, READ)
    found, _ = await telemetry.readings_of(request.app, principal, "reefer", subject=ref,
                                           limit=CHART_READINGS)
    if not found:
        return f'<p class=muted>{e(t("container.no_readings"))}</p>'
    points = []
    for item in found:
        values = item.stored.reading.values
        temperature, setpoint = values.get("temperature"), values.get("setpoint")
        points.append(Point(item.stored.reading.time,
                            float(temperature) if isinstance(temperature, int | float) else None,
                            float(setpoint) if isinstance(setpoint, int | float) else None))
    spans = []
    for alert in alerts:
        if alert.get("kind") != "reefer-excursion" or not alert.get("start"):
            continue
        start = _seconds(alert["start"])
        end = _seconds(alert.get("end") or alert.get("last_reading") or alert["start"])
        if start is None or end is None:
            continue
        deviation = float(alert.get("peak_deviation") or 0)
        spans.append(Span(start, end, t("container.excursion_mark", start=t.when(start),
                                        end=t.when(end),
                                        deviation=t("fmt.celsius", value=f"{deviation:+g}"))))
    svg = temperature_chart(points, spans, title=t("container.reefer_chart"),
                            description=t("container.chart_caption"), time_label=t.when)
    rows = "".join(
        f"<tr><td>{time_html(t, p.time)}</td><td>{e(_celsius(t, p.value))}</td>"
        f"<td>{e(_celsius(t, p.setpoint))}</td></tr>" for p in reversed(points[-96:]))
    table = f"""<details><summary>{e(t("container.readings_table"))}</summary>
<div class=scroll><table><thead><tr><th scope=col>{e(t("col.time"))}</th>
<th scope=col>°C</th><th scope=col>{e(t("container.setpoint"))}</th></tr></thead>
<tbody>{rows}</tbody></table></div></details>"""
    return f'<figure class=chart-box>{svg}<figcaption class=muted>' \
           f'{e(t("container.chart_caption"))}</figcaption></figure>{table}'


# -- the map ----------------------------------------------------------------------------------
#: A box's events that move it, and where each leaves it.
_IN_YARD = frozenset({"TERMINAL.GTIN", "TERMINAL.DISC", "TERMINAL.AVPU"})
_ON_BOARD = frozenset({"TERMINAL.LOAD", "TRANSPORT.DEPA"})
_PLACED = {"WAREHOUSE.RECEIPT": "warehouse", "EQUIPMENT.STRP": "warehouse",
           "EQUIPMENT.DROP": "depot"}
_ON_ROAD = frozenset({"TERMINAL.GTOT", "EQUIPMENT.PICK", "LAND.PICK_UP"})
_DELIVERED = frozenset({"LAND.DELIVERY"})
_MOVES = _IN_YARD | _ON_BOARD | _ON_ROAD | _DELIVERED | frozenset(_PLACED)
#: Details naming the truck of a pick-up (else a related ``truck`` reference).
_TRUCK_KEYS = ("truck", "vehicle", "registrationNumber", "licensePlate")


def _map_section(t: Translator, body: str) -> str:
    return (f'<section class=card aria-labelledby=map-h id=where><h2 id=map-h>'
            f'{e(t("map.title"))}</h2>{body}</section>')


def _port(locode: Any) -> maps.Place | None:
    port = PORTS.get(locode) if isinstance(locode, str) else None
    return maps.Place("port", port.name, port.lat, port.lon, code=port.locode) if port else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _place(kind: str, entry: dict[str, Any], since: str | None) -> maps.Place | None:
    """Where a yard, warehouse or depot event happened: its own position, else its port's."""
    details = _object(entry.get("details"))
    locode = entry.get("location")
    port = PORTS.get(locode) if isinstance(locode, str) else None
    position = _object(details.get("position"))
    lat, lon = position.get("lat"), position.get("lon")
    if not (isinstance(lat, int | float) and isinstance(lon, int | float)):
        if port is None:
            return None
        lat, lon = port.lat, port.lon
    named = next((str(details[k]) for k in ("terminal", "facilityName", "facilityCode", "facility")
                  if isinstance(details.get(k), str) and details[k].strip()), None)
    name = named or str(entry.get("publisherName") or "") or (port.name if port else "")
    code = locode if isinstance(locode, str) and locode else None
    try:
        return maps.Place(kind, name, float(lat), float(lon), code=code, since=since)
    except maps.MapError:
        return None


async def _truck(request: web.Request, principal: Principal,
                 entry: dict[str, Any]) -> maps.Truck | None:
    """The latest position of the truck a pick-up names, since the pick-up, if the reader may
    read it (truck positions are private readings: the telemetry visibility rule decides)."""
    details = _object(entry.get("details"))
    plate = next((details[k] for k in _TRUCK_KEYS
                  if isinstance(details.get(k), str) and details[k].strip()), None)
    if plate is None:
        plate = next((r["value"] for r in entry.get("related") or []
                      if isinstance(r, dict) and r.get("kind") == "truck"
                      and isinstance(r.get("value"), str)), None)
    since = _seconds(entry.get("time"))
    if plate is None or since is None or request.app.get(TELEMETRY) is None:
        return None
    ref = _reference("truck", plate)
    if ref is None:
        return None
    found, _ = await telemetry.readings_of(request.app, principal, "truck-position",
                                           subject=ref, since=since, limit=1)
    if not found:
        return None
    reading = found[-1].stored.reading
    values = reading.values
    speed, heading = values.get("speed"), values.get("heading")
    try:
        return maps.Truck(ref.value, float(values["lat"]), float(values["lon"]),
                          time=reading.time,
                          speed=float(speed) if isinstance(speed, int | float) else None,
                          heading=float(heading) if isinstance(heading, int | float) else None)
    except (KeyError, TypeError, ValueError, maps.MapError):
        return None


async def vessel_map(request: web.Request, principal: Principal, t: Translator, imo: str,
                     port_of_call: str | None, title: str) -> str:
    """The map of a vessel: its AIS position and track (public) and its port of call."""
    vessel: dict[str, Any] = {"imo": imo, "portOfCall": port_of_call}
    await live.overlay(request.app, principal, {"vessel": vessel})
    vessel["name"] = _object(vessel.get("aisStatic")).get("name")
    return maps.map_html(t, title=title, vessel=maps.Vessel.from_view(vessel),
                         port=_port(port_of_call))


async def container_map(request: web.Request, principal: Principal, t: Translator,
                        number: str) -> str:
    """The map of a box: where its last movement the reader may see left it."""
    title = t("map.of_container", number=number)
    view = request.app[TRACKING].shipment_of(principal, number)
    if view is None:
        return maps.map_html(t, title=title)
    box = next((c for c in view.get("containers") or [] if c.get("number") == number), None)
    ids = set(box.get("events") or []) if box else set()
    moves = sorted((entry for entry in view.get("timeline") or []
                    if entry.get("eventId") in ids and entry.get("type") in _MOVES
                    and entry.get("classifier") == "ACT" and not entry.get("retracted")),
                   key=lambda entry: (str(entry.get("time")), entry.get("eventId") or 0))
    if not moves:
        return maps.map_html(t, title=title)
    last = moves[-1]
    kind = str(last.get("type"))
    if kind in _ON_BOARD:
        vessel = view.get("vessel") if isinstance(view.get("vessel"), dict) else None
        if vessel is None:
            return maps.map_html(t, title=title)
        await live.overlay(request.app, principal, {"vessel": vessel})
        return maps.map_html(t, title=title, vessel=maps.Vessel.from_view(vessel),
                             port=_port(vessel.get("portOfCall")))
    if kind in _IN_YARD:
        entry = last
        for earlier in reversed(moves):  # the stay began with the first of its yard events
            if earlier.get("type") not in _IN_YARD:
                break
            entry = earlier
        place = _place("terminal", last, str(entry.get("time")))
    elif kind in _PLACED:
        place = _place(_PLACED[kind], last, str(last.get("time")))
    elif kind in _ON_ROAD:  # on a truck: where the truck is, if its owner lets the reader see
        job = land_pages.job_of(request, number, last)
        followed = await land_pages.truck_map(request, principal, t, title, job) \
            if isinstance(job, str) else None  # a land job's truck, followed live
        if followed is not None:
            return followed
        truck = await _truck(request, principal, last)
        return maps.map_html(t, title=title, trucks=[truck] if truck else [])
    else:  # delivered: no position of the box any more
        place = None
    return maps.map_html(t, title=title, places=[place] if place else [])


# -- the custody chain ------------------------------------------------------------------------
def custody_chains(request: web.Request, principal: Principal,
                   number: str) -> list[dict[str, Any]]:
    """The box's land jobs the reader may see, each with its custody steps, its truck and driver
    and its receipt's seals and condition — the rules of ``GET /v1/land/containers/{n}/custody``
    and ``GET /v1/land/jobs/{id}`` (a reader by container sees no driver and no receipt body)."""
    land = request.app.get(LAND)
    if land is None:
        return []
    chains = []
    for job in land.store.jobs(container=number):
        via = land.access(principal, job)
        if via is None or (via == "container"
                           and not land.visible_containers(principal, [number])):
            continue
        shown = land.job_json(job, via, principal)
        receipt = land.store.receipt(job.id) if via != "container" else None
        seals = next((s for s in (receipt or {}).get("seals", []) if s["container"] == number),
                     None)
        chains.append({"job": job.id, "state": job.state, "vehicle": job.vehicle,
                       "driver": _object(shown.get("driver")).get("name"),
                       "steps": land.custody(principal, job, [number])[0]["steps"],
                       "seals": seals,
                       "condition": (receipt or {}).get("condition") or None})
    return chains


def _seal_text(t: Translator, seals: dict[str, Any]) -> str:
    found = ", ".join(seals.get("found") or []) or t("scan.none")
    expected = ", ".join(seals.get("expected") or []) or t("scan.none")
    if seals.get("match") is None:
        return t("scan.custody.seals_unchecked", found=found)
    key = "scan.custody.seals_match" if seals["match"] else "scan.custody.seals_mismatch"
    return t(key, found=found, expected=expected)


def _custody_step(t: Translator, chain: dict[str, Any], step: dict[str, Any]) -> str:
    name = str(step.get("step"))
    label = t("scan.custody.step." + name) if t.has("scan.custody.step." + name) else name
    party = str(_object(step.get("party")).get("name") or "—")
    signed = step.get("signed")
    by = t("scan.custody.by", party=party) if isinstance(signed, dict) else t(
        "scan.custody.recorded_by", party=party)
    lines = [f'<span><span class=step>{e(label)}</span> {time_html(t, step.get("time"))}</span>',
             f"<span class=party>{e(by)}</span>"]
    if name == "gate-out" and step.get("job") == chain["job"]:
        lines.append(f'<span>{e(t("scan.custody.truck", vehicle=chain["vehicle"]))}'
                     + (f' · {e(t("scan.custody.driver", driver=chain["driver"]))}'
                        if chain["driver"] else "") + "</span>")
    if name == "warehouse-receipt" and step.get("job") == chain["job"]:
        if chain["seals"] is not None:
            warn = " class=warn" if chain["seals"].get("match") is False else ""
            lines.append(f"<span{warn}>{e(_seal_text(t, chain['seals']))}</span>")
        if chain["condition"]:
            lines.append(f'<span>{e(t("scan.custody.condition", notes=chain["condition"]))}'
                         "</span>")
    if isinstance(signed, dict):
        tx = str(signed.get("txHash") or "")
        short = tx[:10] + "…" + tx[-6:] if len(tx) > 20 else tx
        said = t("scan.custody.signed", block=signed.get("block"), tx=short)
        lines.append(f'<span class=sig>{e(said)} {time_html(t, signed.get("recordedAt"))}'
                     "</span>")
        css = ""
    else:
        status = str(step.get("status") or "unknown")
        lines.append(f'<span class=sig>{e(t("scan.custody.pending", status=status))}</span>')
        css = " class=pending"
    return f"<li{css}>{''.join(lines)}</li>"


def custody_html(t: Translator, chains: list[dict[str, Any]]) -> str:
    """The custody chains as ordered lists: each step, who signed it and when."""
    if not chains:
        return f'<p class=muted>{e(t("scan.custody.none"))}</p>'
    out = []
    for chain in chains:
        state = t("scan.state." + chain["state"]) if t.has(
            "scan.state." + chain["state"]) else chain["state"]
        steps = "".join(_custody_step(t, chain, s) for s in chain["steps"])
        out.append(f'<h3>{e(t("scan.custody.job", job=chain["job"], state=state))}</h3>'
                   f'<ol class=custody>{steps}</ol>')
    return "".join(out)


def _celsius(t: Translator, value: float | None) -> str:
    return t("fmt.celsius", value=f"{value:g}") if value is not None else t("common.unknown")


def _seconds(value: Any) -> int | None:
    stamp = iso(value)
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


@pages.get("/containers/{number}")
async def container_view(request: web.Request) -> web.Response:
    """A box: storage meter, reefer chart with excursions, alerts."""
    principal = signed_in(request, READ)
    t = translator(request)
    ref = _reference("container", request.match_info["number"])
    if ref is None:
        return shell.not_found(request, t("container.title",
                                          number=request.match_info["number"][:20]))
    try:
        meter = storage_of(request.app[ALERTS], principal.org_id, ref)
        alerts = _alerts(request, principal, ref)
    except NotAMember:
        return shell.refused(request, t("refused.not_member"))
    chart = await _chart(request, ref, t, alerts)
    where = await container_map(request, principal, t, ref.value)
    custody = custody_html(t, custody_chains(request, principal, ref.value))
    title = t("container.title", number=ref.value)
    body = f"""<h1>{e(title)}</h1>
<p><a href="/track?q={e(ref.value)}">{e(t("container.track_link"))}</a></p>
{share_link(t, principal, "container", ref.value)}
{_map_section(t, where)}
<section class=card aria-labelledby=meter-h id=meter><h2 id=meter-h>{e(t("meter.title"))}</h2>
{_meter(t, meter)}</section>
<section class=card aria-labelledby=custody-h id=custody><h2 id=custody-h>
{e(t("scan.custody.title"))}</h2>{custody}</section>
<section class=card aria-labelledby=reefer-h id=reefer><h2 id=reefer-h>
{e(t("container.reefer_chart"))}</h2>{chart}</section>
<section aria-labelledby=alerts-h id=box-alerts><h2 id=alerts-h>{e(t("container.alerts"))}</h2>
{_alert_list(t, alerts)}</section>"""
    return render(request, page="container", title=title, body=body, assets=maps.ASSETS)


@pages.get("/vessels/{imo}")
async def vessel_view(request: web.Request) -> web.Response:
    """A vessel: its ETA history with sources, its arrivals, its alerts."""
    principal = signed_in(request, READ)
    t = translator(request)
    text = request.match_info["imo"].upper().removeprefix("IMO")
    ref = _reference("vessel", text)
    if ref is None:
        return shell.not_found(request, t("vessel.title", imo=text[:12]))
    try:
        history = etas_of(request.app[ALERTS], principal.org_id, ref)
        alerts = _alerts(request, principal, ref)
    except NotAMember:
        return shell.refused(request, t("refused.not_member"))
    title = t("vessel.title", imo=ref.value)
    calls = [row["port"] for row in (history or {}).get("etas", []) if row["port"]] or [
        row["port"] for row in (history or {}).get("arrivals", []) if row["port"]]
    where = await vessel_map(request, principal, t, ref.value, calls[-1] if calls else None,
                             t("map.of_vessel", vessel=title))
    if history is None:
        etas = f'<p class=muted>{e(t("vessel.none"))}</p>'
    else:
        rows = "".join(
            f"<tr><td data-label=\"{e(t('vessel.col_port'))}\">{e(row['port'] or '—')}</td>"
            f"<td data-label=\"{e(t('vessel.col_eta'))}\">{time_html(t, row['eta'])}</td>"
            f"<td data-label=\"{e(t('vessel.col_source'))}\">{e(_source(t, row['source']))} "
            f"<span class=muted>({e(row['classifier'])})</span></td>"
            f"<td data-label=\"{e(t('vessel.col_received'))}\">{time_html(t, row['received'])}"
            f"</td><td data-label=\"{e(t('vessel.col_slip'))}\" class=num>"
            f"{e(_slip(t, row['slip_hours']))}</td></tr>"
            for row in history["etas"])
        arrivals = "".join(
            "<li>" + t("vessel.arrived", port=e(a["port"] or "—"),
                       when=time_html(t, a["arrived"]), source=e(str(a["source"]))) + "</li>"
            for a in history["arrivals"])
        etas = f"""<p>{e(t("vessel.eta_intro"))}</p>
<div class=scroll><table id=eta-history><thead><tr><th scope=col>{e(t("vessel.col_port"))}</th>
<th scope=col>{e(t("vessel.col_eta"))}</th><th scope=col>{e(t("vessel.col_source"))}</th>
<th scope=col>{e(t("vessel.col_received"))}</th><th scope=col>{e(t("vessel.col_slip"))}</th>
</tr></thead><tbody>{rows}</tbody></table></div>
{f'<h3>{e(t("vessel.arrivals"))}</h3><ul>{arrivals}</ul>' if arrivals else ""}"""
    body = f"""<h1>{e(title)}</h1>
{_map_section(t, where)}
<section class=card aria-labelledby=etas-h id=etas><h2 id=etas-h>{e(t("vessel.eta_history"))}
</h2>{etas}</section>
<section aria-labelledby=alerts-h id=vessel-alerts><h2 id=alerts-h>{e(t("container.alerts"))}
</h2>{_alert_list(t, alerts)}</section>"""
    return render(request, page="vessel", title=title, body=body, assets=maps.ASSETS)


def _source(t: Translator, source: Any) -> str:
    key = f"source.{source}"
    return t(key) if t.has(key) else str(source)


def _slip(t: Translator, hours: Any) -> str:
    value = float(hours or 0)
    return t("fmt.hours", hours=f"{value:+g}") if value else "0"


def setup(app: web.Application) -> None:
    """The container and vessel views."""
    pages.setup(app)
