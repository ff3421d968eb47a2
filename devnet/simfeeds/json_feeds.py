"""SIMULATED JSON feeds: a reefer's DCSA readings, customs status messages, truck GPS batches.

The demo's reefer container, its customs declaration and the truck that collects it speak the
formats the gateway reads (:mod:`gateway.feeds.dcsa_reefer`, :mod:`gateway.feeds.customs`,
:mod:`gateway.feeds.gps`, documented in ``docs/feed-formats.md``):

- :func:`reefer_events` — DCSA Reefer 1.0 events: one ``ADJU`` setting the set point, then a
  ``MEAS`` every few minutes close to it, with an **excursion**: for ``excursion_minutes``
  (40 by default) the temperature drifts more than 1.5 °C above a frozen set point, then
  recovers. The publisher's ``partyName`` says ``SIMULATED``.
- :func:`customs_messages` — a declaration ``HELD`` for a documentary check, then
  ``RELEASED``; the ``reason`` and ``messageId`` say ``SIMULATED``.
- :func:`truck_positions` — a truck driving along a polyline at a steady speed, one fix every
  ``interval`` seconds, positions and headings on the WGS84 ellipsoid (geographiclib); the job
  id says ``SIMULATED`` and :func:`gps_json` labels the batch.

Everything is deterministic (a seed, no clock): the same arguments write the same bytes, and
each writer's output is read back by its adapter in the tests. Nothing here is real traffic.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geographiclib.geodesic import Geodesic

from gateway.events import identifiers
from gateway.isotime import iso_time

#: The word every simulated message carries.
LABEL = "SIMULATED"

#: Namespace of the simulated eventIDs (uuid5 of the seed and the event's number).
_NAMESPACE = uuid.UUID("0b5c6a44-3a52-4f0e-9a55-7a0c2f1d9e31")

#: The drift above the set point an excursion is (alerts fire above 1.5 °C).
EXCURSION_DRIFT = 2.4


def _event_id(seed: int, kind: str, number: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{kind}/{number}"))


# -- reefer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reefer:
    """The SIMULATED reefer container and its cargo's set point."""

    container: str
    """ISO 6346 number with a valid check digit."""
    setpoint: float = -18.0
    """Set point, °C (a frozen cargo by default)."""
    booking: str | None = None
    """Carrier booking reference, related to every event."""
    carrier: str = "PCOL"

    def __post_init__(self) -> None:
        identifiers.normalise_container(self.container)


def reefer_events(reefer: Reefer, *, start: int, minutes: int = 240, interval: int = 5,
                  excursion_at: int | None = 90, excursion_minutes: int = 40,
                  seed: int = 1) -> list[dict[str, Any]]:
    """DCSA Reefer 1.0 events of ``reefer`` from ``start`` (Unix seconds) for ``minutes``.

    Parameters
    ----------
    reefer : Reefer
        The container and its set point.
    start : int
        Time of the ``ADJU`` event; the first ``MEAS`` follows ``interval`` minutes later.
    minutes, interval : int
        How long the series runs and the minutes between measurements.
    excursion_at : int or None
        Minute (after ``start``) the excursion begins; None: no excursion.
    excursion_minutes : int
        How long every reading is more than 1.5 °C above the set point.
    seed : int
        Seeds the noise and the eventIDs.
    """
    rng = random.Random(seed)
    publisher = {"partyName": f"{LABEL} Pacific Ocean Line", "carrierCode": reefer.carrier,
                 "carrierCodeListProvider": "SMDG"}
    documents = ([{"type": "BKG", "value": reefer.booking}] if reefer.booking else [])

    def event(number: int, at: int, code: str, body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventClassifierCode": "ACT", "eventDateTime": iso_time(at),
            "reeferEventTypeCode": code, **body, "equipmentReference": reefer.container}
        if documents:
            payload["relatedDocumentReferences"] = documents
        return {"metadata": {"eventID": _event_id(seed, "reefer", number),
                             "eventCreatedDateTime": iso_time(at + 20), "eventType": "REEFER",
                             "publisher": publisher, "publisherRole": "CA"},
                "payload": payload}

    setpoints = {"temperature": reefer.setpoint, "temperatureUnit": "CEL"}
    out = [event(0, start, "ADJU", {"setpoints": setpoints})]
    for number, minute in enumerate(range(interval, minutes + 1, interval), start=1):
        drift = rng.uniform(-0.4, 0.4)
        if excursion_at is not None and excursion_at <= minute < excursion_at + excursion_minutes:
            drift = EXCURSION_DRIFT + rng.uniform(-0.3, 0.5)
        measurements = {"temperature": round(reefer.setpoint + drift, 1),
                        "ambientTemperature": round(28.0 + rng.uniform(-1.5, 1.5), 1),
                        "temperatureUnit": "CEL",
                        "humidity": round(rng.uniform(80, 90), 1)}
        out.append(event(number, start + minute * 60, "MEAS",
                         {"measurements": measurements, "setpoints": setpoints}))
    return out


# -- customs ---------------------------------------------------------------------------------
def customs_messages(declaration: str, *, containers: Sequence[str] = (),
                     bill_of_lading: str | None = None, held_at: int, released_at: int,
                     office: str = "HKHKG", location: str = "HKHKG",
                     ) -> list[dict[str, Any]]:
    """A declaration held for a documentary check at ``held_at``, released at ``released_at``."""
    if released_at <= held_at:
        raise ValueError("a release follows the hold")
    base: dict[str, Any] = {"declarationNumber": declaration, "office": office,
                            "location": location}
    if containers:
        base["containers"] = list(containers)
    if bill_of_lading:
        base["billOfLading"] = bill_of_lading
    return [
        {**base, "status": "HELD", "time": iso_time(held_at),
         "reason": f"{LABEL}: documentary check", "messageId": f"{LABEL}-{declaration}-1"},
        {**base, "status": "RELEASED", "time": iso_time(released_at),
         "reason": f"{LABEL}: documents in order", "messageId": f"{LABEL}-{declaration}-2"},
    ]


# -- truck GPS -------------------------------------------------------------------------------
def truck_positions(vehicle: str, polyline: Sequence[tuple[float, float]], *, start: int,
                    speed_kmh: float = 40.0, interval: int = 30, job: str | None = None,
                    ) -> list[dict[str, Any]]:
    """Fixes of a truck driving along ``polyline`` ((lat, lon) vertices) at ``speed_kmh``.

    One fix every ``interval`` seconds from ``start`` until the end of the line (the last
    vertex is always reported); heading is the geodesic azimuth at the fix, speed 0 at the end.
    """
    if len(polyline) < 2 or speed_kmh <= 0 or interval <= 0:
        raise ValueError("a route has two points or more, a positive speed and interval")
    geodesic = Geodesic.WGS84
    legs = [geodesic.InverseLine(a[0], a[1], b[0], b[1])
            for a, b in zip(polyline, polyline[1:], strict=False)]
    total = sum(leg.s13 for leg in legs)
    step = speed_kmh / 3.6 * interval
    job_id = job or f"{LABEL}-JOB-{identifiers.compact(vehicle)}"
    out: list[dict[str, Any]] = []
    travelled, number = 0.0, 0
    while True:
        done = travelled >= total
        remaining, leg = min(travelled, total), legs[0]
        for leg in legs:
            if remaining <= leg.s13:
                break
            remaining -= leg.s13
        point = leg.Position(min(remaining, leg.s13))
        out.append({"vehicle": vehicle, "time": iso_time(start + number * interval),
                    "lat": round(point["lat2"], 6), "lon": round(point["lon2"], 6),
                    "speed": 0.0 if done else speed_kmh,
                    "heading": round(point["azi2"] % 360.0, 1) % 360.0,
                    "job": job_id, "accuracy": 5.0})
        if done:
            return out
        travelled += step
        number += 1


def gps_json(positions: Sequence[dict[str, Any]]) -> bytes:
    """A batch as the documented JSON wrapper (labelled ``"source": "SIMULATED"``)."""
    return json.dumps({"source": LABEL, "positions": list(positions)}, indent=1).encode()


def gps_csv(positions: Sequence[dict[str, Any]]) -> bytes:
    """A batch as the documented CSV (header, one fix per line)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = ("vehicle", "time", "lat", "lon", "speed", "heading", "job", "accuracy")
    writer.writerow(columns)
    for fix in positions:
        writer.writerow(["" if fix.get(c) is None else fix[c] for c in columns])
    return buffer.getvalue().encode()


def json_lines(messages: Sequence[dict[str, Any]]) -> bytes:
    """Messages as JSON Lines (how the demo sends reefer readings and customs messages)."""
    return b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)
