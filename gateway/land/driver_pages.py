"""The driver's pages (a phone in a truck's cab) and a job's page for its other readers.

``/driver``
    Signed out: sign-in with the phone number and the one-time code the office gave (the
    script posts ``/v1/land/driver-session``). Signed in as a driver: the jobs assigned to them
    (:meth:`LandStore.jobs` by driver, as ``GET /v1/land/jobs`` answers a driver). Anyone else
    signed in is told the page is for drivers.
``/driver/jobs/{id}``
    The driver's job: its pick-up QR code (the token from :meth:`LandService.token_of`, drawn
    by :func:`gateway.land.api.qr_image` — the SVG the API serves — large, inline in the page so
    a saved copy of the page carries it), pick-up and delivery places, window, vehicle, CCRN and
    containers, and **sharing**: the script (``static/js/driver.js``) follows
    ``navigator.geolocation.watchPosition``, posts positions in batches to
    ``POST /v1/land/jobs/{id}/positions`` with their original times, queues them in
    ``localStorage`` (bounded) while offline, and stops at delivery or the window's end.
    Another driver's job is refused (403 page) exactly as the API refuses it
    (:meth:`LandService.job_for`).
``/land/jobs/{id}``
    A job for whoever else may read it (the haulier; the terminal and warehouse; a reader of
    one of its boxes, who sees only those boxes and no driver): details and the **live map** —
    the truck's latest position (telemetry visibility rule) with its speed and an ETA to the
    delivery place, moved by the positions stream (:mod:`gateway.land.live`).

**Offline**: the driver's script keeps the list and each job page it shows in Cache Storage
under a cache named per driver (``portledger-driver-<id>``); the service worker answers a
failed navigation from such a cache before its offline page. A driver page deletes every other
driver's cache when it loads, and the caches and queues are deleted at sign-out (and when the
sign-in page is shown). Nothing else is kept: other readers' pages are never cached.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway import errors
from gateway.events.model import EventError, parse_time
from gateway.land.api import LAND, qr_image
from gateway.land.live import latest, live_map, stream_url
from gateway.land.model import Job
from gateway.land.service import LandService, is_job_id
from gateway.principal import Principal, principal_of
from gateway.tracking.eta import PORTS
from gateway.ui import maps, shell
from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import NavItem, e, render, translator

pages = shell.Pages()

#: The sharing script's batches: post every this many seconds or positions.
BATCH_SECONDS = 10
BATCH_SIZE = 20
#: Positions kept on the phone while it is offline (the oldest go first beyond).
QUEUE_MAX = 2000


def _land(request: web.Request) -> LandService:
    return request.app[LAND]


def time_html(t: Translator, moment: Any) -> str:
    stamp = iso(moment)
    if not stamp:
        return e(t("common.unknown"))
    return f'<time datetime="{stamp}">{e(t.when(moment))}</time>'


def _state(t: Translator, state: str) -> str:
    return t(f"driver.state.{state}")


def _org_name(land: LandService, org: int) -> str:
    return land.tracking.publisher_name(org) or str(org)


def _details(t: Translator, land: LandService, job: Job, containers: list[str],
             driver: str | None) -> str:
    """The job's facts as a definition list (escaped)."""
    pickup = ", ".join(x for x in (_org_name(land, job.pickup.org), job.pickup.facility,
                                   job.pickup.location) if x)
    delivery = ", ".join(x for x in (_org_name(land, job.delivery.org), job.delivery.facility,
                                     job.delivery.location) if x)
    rows = [
        ("driver.state", e(_state(t, job.state))),
        ("driver.pickup", e(pickup)),
        ("driver.delivery", e(delivery)),
        ("driver.window", t("driver.window_range", start=time_html(t, job.window_from),
                            end=time_html(t, job.window_to))),
        ("driver.vehicle", e(job.vehicle)),
        ("driver.containers", "<br>".join(e(c) for c in containers) or e(t("common.unknown"))),
    ]
    if job.ccrn:
        rows.append(("driver.ccrn", e(job.ccrn)))
    if driver:
        rows.append(("driver.driver", e(driver)))
    items = "".join(f"<dt>{e(t(key))}</dt><dd>{value}</dd>" for key, value in rows)
    return f"<dl class=job-facts>{items}</dl>"


def _job_item(t: Translator, land: LandService, job: Job) -> str:
    where = job.delivery.facility or _org_name(land, job.delivery.org)
    return (f'<li class="card job-item"><a href="/driver/jobs/{e(job.id)}">'
            f'{e(t("driver.job_to", vehicle=job.vehicle, place=where))}</a>'
            f'<p>{e(_state(t, job.state))} · '
            f'{t("driver.window_range", start=time_html(t, job.window_from), end=time_html(t, job.window_to))}'
            f"</p></li>")


# -- the driver's pages ----------------------------------------------------------------------
def _sign_in(t: Translator) -> str:
    return f"""<h1>{e(t("driver.sign_in.title"))}</h1>
<p>{e(t("driver.sign_in.intro"))}</p>
<form class="card driver-sign-in" id=driver-sign-in novalidate>
<p><label for=driver-phone>{e(t("driver.phone"))}</label>
<input id=driver-phone name=phone type=tel autocomplete=tel inputmode=tel required
 minlength=6 maxlength=24></p>
<p><label for=driver-code>{e(t("driver.code"))}</label>
<input id=driver-code name=code inputmode=numeric autocomplete=one-time-code required
 pattern="[0-9]{{6,8}}" maxlength=8></p>
<p><button type=submit>{e(t("driver.sign_in.submit"))}</button></p>
<p class=message role=status aria-live=polite></p>
</form>"""


@pages.get("/driver")
async def driver_home(request: web.Request) -> web.Response:
    """Signed out: the drivers' sign-in; a driver: their jobs."""
    t = translator(request)
    who = principal_of(request)
    if who is None:
        return render(request, page="driver-sign-in", title=t("driver.sign_in.title"),
                      body=_sign_in(t))
    if who.role != "driver":
        return shell.refused(request, t("driver.not_a_driver"))
    land = _land(request)
    driver = land.driver_of(who)
    jobs = land.store.jobs(driver_id=driver.id) if driver is not None else []
    current = [j for j in jobs if j.state in ("planned", "picked-up")]
    done = [j for j in jobs if j not in current]
    listing = "".join(_job_item(t, land, j) for j in current)
    past = "".join(_job_item(t, land, j) for j in done[:20])
    body = f"""<h1>{e(t("driver.jobs.title"))}</h1>
<div class=driver-home data-driver="{driver.id if driver else ''}">
<p class="offline-note muted" hidden>{e(t("driver.offline_copy"))}</p>
{f'<ul class=job-list>{listing}</ul>' if listing else f'<p class=muted>{e(t("driver.jobs.none"))}</p>'}
{f'<h2>{e(t("driver.jobs.past"))}</h2><ul class=job-list>{past}</ul>' if past else ''}
</div>"""
    return render(request, page="driver", title=t("driver.jobs.title"), body=body)


def _qr(t: Translator, land: LandService, job: Job) -> str:
    if job.state not in ("planned", "picked-up"):
        return f'<p class=muted>{e(t("driver.qr.none", state=_state(t, job.state)))}</p>'
    text, claims = land.token_of(job)
    svg = qr_image(text, "svg").decode()
    if svg.startswith("<?xml"):
        svg = svg.split("?>", 1)[1].lstrip()
    label = e(t("driver.qr.label", job=job.id))
    svg = svg.replace("<svg ", f'<svg role=img aria-label="{label}" class=qr-code ', 1)
    return (f'<figure class=qr>{svg}<figcaption>'
            f'{t("driver.qr.valid", start=time_html(t, claims.not_before), end=time_html(t, claims.expires))}'
            f"</figcaption></figure>")


@pages.get("/driver/jobs/{job_id}")
async def driver_job(request: web.Request) -> web.Response:
    """A driver's job: the QR code, the places and times, sharing the truck's position."""
    t = translator(request)
    who = principal_of(request)
    if who is None or who.role != "driver":
        if who is None:
            raise web.HTTPFound("/driver")
        return shell.refused(request, t("driver.not_a_driver"))
    land = _land(request)
    try:
        job, _ = land.job_for(who, request.match_info["job_id"])
    except errors.Forbidden:
        return shell.refused(request, t("driver.not_your_job"))
    except errors.NotFound:
        return shell.not_found(request, t("driver.no_job", job=request.match_info["job_id"][:20]))
    driver = land.driver_of(who)
    assert driver is not None  # job_for gave the job to this driver
    title = t("driver.job.title", job=job.id)
    body = f"""<h1>{e(title)}</h1>
<p><a href="/driver">{e(t("driver.back"))}</a></p>
<p class="offline-note muted" hidden>{e(t("driver.offline_copy"))}</p>
<div class=driver-job data-job="{e(job.id)}" data-driver="{driver.id}" data-state="{e(job.state)}"
 data-from="{e(iso(job.window_from))}" data-until="{e(iso(job.window_to))}"
 data-batch-seconds="{BATCH_SECONDS}" data-batch-size="{BATCH_SIZE}" data-queue-max="{QUEUE_MAX}">
<section class="card share" aria-labelledby=share-h><h2 id=share-h>{e(t("driver.share.title"))}</h2>
<p>{e(t("driver.share.intro"))}</p>
<p class=share-buttons><button type=button id=share-start>{e(t("driver.share.start"))}</button>
<button type=button id=share-stop class=secondary hidden>{e(t("driver.share.stop"))}</button></p>
<p class=share-status id=share-status role=status aria-live=polite>{e(t("driver.share.off"))}</p>
<p class="share-queue muted" id=share-queue></p>
</section>
<section class="card" aria-labelledby=qr-h><h2 id=qr-h>{e(t("driver.qr.title"))}</h2>
{_qr(t, land, job)}
</section>
<section class="card" aria-labelledby=facts-h><h2 id=facts-h>{e(t("driver.facts"))}</h2>
{_details(t, land, job, list(job.containers), None)}
</section>
</div>"""
    return render(request, page="driver-job", title=title, body=body)


# -- a job for its other readers --------------------------------------------------------------
def _place(kind: str, name: str, locode: str) -> maps.Place | None:
    port = PORTS.get(locode)
    if port is None:
        return None
    return maps.Place(kind, name, port.lat, port.lon, code=locode)


def _truck(job: Job, position: dict[str, Any], at: int) -> maps.Truck:
    speed, heading = position.get("speed"), position.get("heading")
    return maps.Truck(job.vehicle, float(position["lat"]), float(position["lon"]), time=at,
                      speed=float(speed) * 3.6 if isinstance(speed, int | float) else None,
                      heading=float(heading) if isinstance(heading, int | float) else None)


def job_of(request: web.Request, number: str, entry: dict[str, Any]) -> str | None:
    """The land job of a box's on-road timeline ``entry`` (the container view's hook): the one
    its details name (an event from a haulier's own feed), else the job whose gate-out this
    terminal recorded at that time (a land gate-out's public step names none). Whether the
    reader may see the job is :func:`truck_map`'s to decide."""
    details = entry.get("details")
    named = details.get("job") if isinstance(details, dict) else None
    if isinstance(named, str):
        return named
    land = request.app.get(LAND)
    publisher, time = entry.get("publisher"), entry.get("time")
    if land is None or not isinstance(publisher, int) or not isinstance(time, str):
        return None
    try:
        at = parse_time(time)
    except EventError:
        return None
    job = land.job_of_gate_out(number, publisher, at)
    return job.id if job is not None else None


async def truck_map(request: web.Request, who: Principal, t: Translator, title: str,
                    job_id: str) -> str | None:
    """The map of a box on a land job's truck (the container view's hook): the truck's latest
    position, followed live while the job runs — when ``who`` may read the job and its truck
    has a position; else None."""
    land = request.app.get(LAND)
    job = land.store.job(job_id) if land is not None and is_job_id(job_id) else None
    if land is None or job is None or land.access(who, job) is None:
        return None
    found = await latest(request.app, who, job)
    if found is None:
        return None
    html = maps.map_html(t, title=title, trucks=[_truck(job, *found)])
    return live_map(html, job.id) if job.state in ("planned", "picked-up") else html


@pages.get("/land/jobs/{job_id}")
async def job_page(request: web.Request) -> web.Response:
    """A land job for the haulier and the job's other readers, with the live truck."""
    t = translator(request)
    who: Principal = shell.signed_in(request)
    if who.role == "driver":
        raise web.HTTPFound("/driver/jobs/" + quote(request.match_info["job_id"][:20], safe=""))
    if "tracking:read" not in who.scopes:
        return shell.refused(request, t("refused.scope", scope="tracking:read"))
    land = _land(request)
    try:
        job, via = land.job_for(who, request.match_info["job_id"])
    except errors.NotFound:
        return shell.not_found(request, t("driver.no_job", job=request.match_info["job_id"][:20]))
    shown = land.job_json(job, via, who)
    driver = shown["driver"]["name"] if isinstance(shown.get("driver"), dict) else None
    found = await latest(request.app, who, job)
    trucks = []
    position: dict[str, Any] | None = None
    if found is not None:
        position = found[0]
        trucks.append(_truck(job, *found))
    places = [p for p in (
        _place("warehouse", _org_name(land, job.delivery.org), job.delivery.location),
        _place("terminal", _org_name(land, job.pickup.org), job.pickup.location)
        if job.pickup.location != job.delivery.location else None,
    ) if p is not None]
    title = t("driver.land_job.title", job=job.id)
    map_box = maps.map_html(t, title=t("driver.map", vehicle=job.vehicle),
                            trucks=trucks, places=places if trucks else [])
    if job.state in ("planned", "picked-up"):
        map_box = live_map(map_box, job.id)
    body = f"""<h1>{e(title)}</h1>
<div class=land-job data-job="{e(job.id)}" data-stream="{e(stream_url(job.id))}">
<section class=card aria-labelledby=truck-h><h2 id=truck-h>{e(t("driver.truck"))}</h2>
<p class=truck-now id=truck-now role=status aria-live=polite>{e(_now_text(t, position))}</p>
{map_box}
</section>
<section class=card aria-labelledby=facts-h><h2 id=facts-h>{e(t("driver.facts"))}</h2>
{_details(t, land, job, list(shown["containers"]), driver)}
</section>
</div>"""
    return render(request, page="land-job", title=title, body=body, assets=maps.ASSETS)


def _now_text(t: Translator, position: dict[str, Any] | None) -> str:
    """The truck's latest position in words: when, speed, ETA (the script updates it)."""
    if position is None:
        return t("driver.truck.none")
    speed = position.get("speed")
    text = t("driver.truck.at", when=t.when(position["time"]), speed=f"{float(speed) * 3.6:.0f}") \
        if isinstance(speed, int | float) else t("driver.truck.at_when", when=t.when(position["time"]))
    eta = position.get("eta")
    if isinstance(eta, dict):
        if eta.get("arrived"):
            text += " " + t("driver.truck.arrived")
        else:
            text += " " + t("driver.truck.eta", when=t.when(eta["time"]),
                            km=f"{eta['distanceKm']:.1f}")
    return text


def setup(app: web.Application) -> None:
    """The pages and the drivers' navigation entry."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/driver", "driver.nav", 5,
                               lambda who: who is not None and who.role == "driver"))
