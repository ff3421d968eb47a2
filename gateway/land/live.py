"""The live truck: a job's positions pushed to its readers as server-sent events, with an ETA.

``GET /v1/land/jobs/{id}/positions/stream`` answers ``text/event-stream``. Who may open it is
decided exactly as for ``GET /v1/land/jobs/{id}/positions`` — :meth:`LandService.job_for`
before a single byte is streamed (404 to whoever may not see the job, 403 to another driver of
the same haulier) — and every position sent is read through the telemetry visibility rule
(:func:`gateway.telemetry.service.readings_of` with the reader's principal), so a stream shows
no more than the positions API would. The access is checked again every :attr:`Live.recheck`
seconds: a reader who loses the job stops getting positions.

Events:

* ``position`` — the newest position (``time``, ``lat``, ``lon``, ``speed`` m/s, ``heading``)
  with ``eta`` (:func:`truck_eta`) and the job's ``state``; sent at once when there is one,
  then whenever a newer one is stored (the stream polls the telemetry store every
  :attr:`Live.poll` seconds: the store is the one source, whatever wrote to it);
* ``state`` — the job's state changed (``delivered`` or ``cancelled`` end the stream);
* a comment line (``: heartbeat``) every :attr:`Live.heartbeat` seconds, so proxies keep the
  connection and the client notices a dead one.

A user (or API key) holds at most :attr:`Live.per_user` streams at once (429 beyond); a stream
lasts at most :attr:`Live.max_seconds` (the browser's ``EventSource`` reconnects by itself).

**ETA**: the delivery place has no coordinates of its own, only its UN/LOCODE; the ETA is the
geodesic distance (:func:`gateway.tracking.eta.distance_nm`, WGS84) from the truck to that
location's position in :data:`gateway.tracking.eta.PORTS`, over the truck's reported speed —
``method: "geodesic"``, early on winding roads, none when the location is unknown or the truck
is standing (below :data:`MIN_SPEED`).

:func:`live_map` marks a page's map (:func:`gateway.ui.maps.map_html`) with the stream's
address; ``static/js/map.js`` then moves the truck marker as positions arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import errors, openapi
from gateway.appkeys import CONFIG
from gateway.isotime import iso_time
from gateway.land.api import _ID, LAND, _job_id, _reader
from gateway.land.model import Job
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.tracking.eta import NAUTICAL_MILE, PORTS, distance_nm
from gateway.ui.shell import e

#: Below this speed (m/s, 1.8 km/h) a truck is standing: no ETA.
MIN_SPEED = 0.5
#: Within this distance (metres) the truck is at the delivery place.
ARRIVED_M = 300.0
#: States that end a stream.
FINAL = frozenset({"delivered", "cancelled"})


@dataclass
class Live:
    """The streams' settings and who holds how many (``app[LIVE]``)."""

    poll: float = 1.0
    """Seconds between looks at the telemetry store."""
    heartbeat: float = 15.0
    """Seconds between heartbeat comments."""
    recheck: float = 30.0
    """Seconds between checks that the reader may still see the job."""
    per_user: int = 4
    """Streams one user or API key may hold at once."""
    max_seconds: float = 3600.0
    """A stream's longest life (the client reconnects)."""
    open: Counter[str] = field(default_factory=Counter)


LIVE = web.AppKey("land-live", Live)

api = openapi.Routes(tag="land", description="The land leg: the live truck")


def stream_url(job_id: str) -> str:
    """The stream of a job's positions."""
    return f"/v1/land/jobs/{job_id}/positions/stream"


def truck_eta(job: Job, position: dict[str, Any], at: int) -> dict[str, Any] | None:
    """The ETA at the job's delivery place from a position (``lat``, ``lon``, ``speed`` m/s)
    taken at ``at``: geodesic distance over speed (module doc); None when the delivery's
    location has no known position or the position is unusable."""
    place = PORTS.get(job.delivery.location)
    lat, lon, speed = position.get("lat"), position.get("lon"), position.get("speed")
    if place is None or not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    metres = distance_nm(float(lat), float(lon), place) * NAUTICAL_MILE
    base: dict[str, Any] = {"method": "geodesic", "to": job.delivery.location,
                            "toName": place.name, "distanceKm": round(metres / 1000, 1),
                            "basedOn": iso_time(at)}
    if metres <= ARRIVED_M:
        return {**base, "time": iso_time(at), "arrived": True}
    if not isinstance(speed, int | float) or speed < MIN_SPEED:
        return None
    seconds = metres / float(speed)
    return {**base, "time": iso_time(at + round(seconds)), "minutes": round(seconds / 60),
            "speedKmh": round(float(speed) * 3.6, 1)}


def position_json(job: Job, values: dict[str, Any], at: int) -> dict[str, Any]:
    """A stored truck position as the stream (and the pages) show it."""
    shown = {k: v for k, v in values.items() if k != "job"}
    return {"job": job.id, "state": job.state, "time": iso_time(at), **shown,
            "eta": truck_eta(job, values, at)}


async def latest(app: web.Application, who: Principal, job: Job,
                 since: int = 0) -> tuple[dict[str, Any], int] | None:
    """The newest position of the job's truck ``who`` may read, taken at ``since`` or later,
    and its time."""
    found, _ = await telemetry.readings_of(app, who, "truck-position", subject=job.trip,
                                           since=since, limit=1)
    if not found:
        return None
    reading = found[-1].stored.reading
    return position_json(job, dict(reading.values), reading.time), reading.time


def live_map(html: str, job_id: str) -> str:
    """A map's HTML (:func:`gateway.ui.maps.map_html`) marked to follow the job's truck."""
    if not html.startswith("<div class=map "):
        return html  # nothing drawn (no layer): no map to move a marker on
    return html.replace("<div class=map ", f'<div class=map data-live="{e(stream_url(job_id))}" ',
                        1)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@api.get("/v1/land/jobs/{job_id}/positions/stream", openapi.operation(
    "The truck's positions as server-sent events (everyone who may see the job), with an ETA "
    "to the delivery place", parameters=[_ID],
    ok_content={"text/event-stream": {}}, errors=(400, 401, 403, 404, 429)))
async def position_stream(request: web.Request) -> web.StreamResponse:
    who = _reader(request)
    land = request.app[LAND]
    job, _ = land.job_for(who, _job_id(request))
    live = request.app[LIVE]
    holder = f"user:{who.user_id}" if who.user_id is not None else who.credential_id
    if live.open[holder] >= live.per_user:
        raise errors.TooManyRequests(f"at most {live.per_user} live streams at once",
                                     code="too-many-streams",
                                     headers={"Retry-After": str(int(live.heartbeat))})
    live.open[holder] += 1
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await _follow(request, response, who, job, live)
        return response
    finally:
        live.open[holder] -= 1
        if live.open[holder] <= 0:
            del live.open[holder]


async def _follow(request: web.Request, response: web.StreamResponse, who: Principal,
                  job: Job, live: Live) -> None:
    """Send positions, state changes and heartbeats until the job ends, the reader loses it,
    the stream's time is up or the client leaves."""
    land = request.app[LAND]
    start = beat = checked = time.monotonic()
    last = 0
    state = job.state
    await response.write(b"retry: 5000\n\n")
    with contextlib.suppress(ConnectionResetError):  # the client left
        while True:
            found = await latest(request.app, who, job, since=last + 1 if last else 0)
            if found is not None:
                data, last = found
                await response.write(_event("position", data))
            now = time.monotonic()
            fresh = land.store.job(job.id)
            if fresh is None:
                return
            if fresh.state != state:
                state = fresh.state
                job = fresh
                await response.write(_event("state", {"job": job.id, "state": state}))
            if state in FINAL or now - start >= live.max_seconds:
                return
            if now - checked >= live.recheck:
                checked = now
                if land.access(who, fresh) is None:
                    await response.write(_event("state", {"job": job.id, "state": "gone"}))
                    return
            if now - beat >= live.heartbeat:
                beat = now
                await response.write(b": heartbeat\n\n")
            await asyncio.sleep(live.poll)


def setup(app: web.Application) -> None:
    """``app[LIVE]`` (``config.extra["land_live"]``: poll, heartbeat, recheck, per_user,
    max_seconds) and the stream's route (after the land API)."""
    raw = app[CONFIG].extra.get("land_live") or {}
    app[LIVE] = Live(**{k: raw[k] for k in ("poll", "heartbeat", "recheck", "per_user",
                                            "max_seconds") if k in raw})
    api.install(app)
