"""What changes every few seconds, laid over a shipment view at request time: AIS and reefers.

A shipment view (:mod:`gateway.tracking.views`) is built from cargo events and cached until
the read model changes. Telemetry readings arrive far more often and are not cargo events, so
they are added to the view per request, never cached with it:

- ``vessel.ais``: the vessel's latest AIS position (lat, lon, speed and course over ground,
  heading, navigation status), its time and age, found by IMO number — also positions stored
  under an MMSI that static data later linked to it (:mod:`gateway.telemetry.store`);
- ``vessel.track``: its last positions ``[lat, lon, time]``, oldest first, for the map;
- ``vessel.etas`` gains the **AIS-derived** ETA to the port of call
  (:func:`gateway.tracking.eta.ais_eta`, geodesic distance over current speed) beside the
  carrier's and terminal's, each with its source and age;
- ``containers[].reeferHistory``: temperature and set point readings of each reefer container
  the caller may read (owner, named readers, or — in mode ``reference`` — whoever holds the
  container number, which a caller shown the container in a view does), and
  ``containers[].reefer`` becomes the latest reading when it is newer than the last
  ``REEFER.MEAS`` event.

AIS is public; reefer readings go through the telemetry visibility rule
(:func:`gateway.telemetry.service.readings_of`), so the overlay shows nobody a reading its owner
did not let them see.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from gateway.appkeys import TELEMETRY
from gateway.events.model import Reference
from gateway.isotime import iso_time
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.tracking import eta

#: Positions of a vessel's track a view carries.
TRACK_POINTS = 50

#: Reefer readings per container a view carries (the newest).
REEFER_POINTS = 288  # a day of 5-minute readings

#: Containers of one view whose reefer readings are looked up.
MAX_REEFERS = 64


def _ais(values: dict[str, Any], when: int, now: int) -> dict[str, Any]:
    return {
        "lat": values.get("lat"), "lon": values.get("lon"), "sog": values.get("sog"),
        "cog": values.get("cog"), "heading": values.get("heading"),
        "status": values.get("status_name", values.get("status")),
        "mmsi": values.get("mmsi"), "time": iso_time(when), "ageSeconds": max(0, now - when),
        "source": "AIS",
    }


async def _vessel(app: web.Application, vessel: dict[str, Any], now: int) -> None:
    imo = vessel.get("imo")
    if not isinstance(imo, str):
        return
    static, track, _ = await telemetry.vessel_track(app, imo, limit=TRACK_POINTS)
    if static is not None:
        vessel["aisStatic"] = static.to_json()
    if not track:
        return
    latest = track[-1].reading
    vessel["ais"] = _ais(latest.values, latest.time, now)
    vessel["track"] = [[r.reading.values.get("lat"), r.reading.values.get("lon"),
                        iso_time(r.reading.time)] for r in track]
    port = vessel.get("portOfCall")
    derived = eta.ais_eta(latest.values, latest.time, port) if isinstance(port, str) else None
    if derived is not None:
        derived["ageSeconds"] = max(0, now - latest.time)
        vessel.setdefault("etas", []).append(derived)


async def _reefer(app: web.Application, principal: Principal, box: dict[str, Any]) -> None:
    number = box.get("number")
    if not isinstance(number, str):
        return
    found, _ = await telemetry.readings_of(app, principal, "reefer",
                                           subject=Reference("container", number),
                                           limit=REEFER_POINTS)
    if not found:
        return
    history = []
    for item in found:
        values = item.stored.reading.values
        history.append({"time": iso_time(item.stored.reading.time),
                        "temperature": values.get("temperature"),
                        "setpoint": values.get("setpoint"),
                        "humidity": values.get("humidity")})
    box["reeferHistory"] = history
    latest = found[-1].stored
    shown = box.get("reefer")
    if shown is None or str(shown.get("time") or "") <= iso_time(latest.reading.time):
        box["reefer"] = {**history[-1],
                         "source": telemetry.owner_name(app, latest.owner) or "telemetry"}


async def overlay(app: web.Application, principal: Principal, view: dict[str, Any],
                  now: int | None = None) -> dict[str, Any]:
    """``view`` with the telemetry the caller may see laid over it (see the module doc)."""
    if app.get(TELEMETRY) is None:
        return view
    moment = int(time.time()) if now is None else now
    vessel = view.get("vessel")
    if isinstance(vessel, dict):
        await _vessel(app, vessel, moment)
    boxes = [b for b in (view.get("containers") or [])[:MAX_REEFERS]
             if isinstance(b, dict) and isinstance(b.get("number"), str)]
    if boxes:  # one indexed query finds the few containers that have reefer readings at all
        with_readings = await asyncio.to_thread(
            app[TELEMETRY].subjects_with, "reefer",
            [Reference("container", b["number"]) for b in boxes])
        for box in boxes:
            if Reference("container", box["number"]) in with_readings:
                await _reefer(app, principal, box)
    return view
