"""The shipment view, assembled from the events the caller may read (pure).

A view is a dict: the reference and its kind, its carrier, the vessel (name, IMO, latest
position, ETD and ETA), the containers with their status (:data:`STATUS_OF`) and latest reefer
reading, the land and air legs, the customs declarations and the timeline. The house-B/L subset
rule (:func:`redact`) removes mentions of containers a house B/L does not cover. :func:`encode`
turns a view into JSON bytes, its timeline entries spliced in from their cache and its ETA/ETD
``freshness`` left as a mark for :func:`gateway.tracking.cache.render`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, Reference
from gateway.isotime import iso_time
from gateway.readside.readmodel import Declaration
from gateway.tracking.cache import LRU, MARKS, entry_mark, freshness_mark
from gateway.tracking.visibility import VisibleEvent, key_of

#: Container status after an actual event of these types (latest wins).
STATUS_OF: dict[str, str] = {
    "TERMINAL.GTIN": "gated-in",
    "TERMINAL.LOAD": "loaded",
    "TRANSPORT.DEPA": "in-transit",
    "TERMINAL.DISC": "discharged",
    "TERMINAL.AVPU": "available-for-pick-up",
    "CUSTOMS.CUSH": "customs-hold",
    "CUSTOMS.CUSI": "customs-inspection",
    "CUSTOMS.CUSR": "customs-released",
    "CUSTOMS.CUSX": "customs-refused",
    "TERMINAL.GTOT": "gated-out",
    "EQUIPMENT.PICK": "picked-up",
    "LAND.PICK_UP": "on-truck",
    "LAND.DELIVERY": "delivered",
    "EQUIPMENT.STRP": "stripped",
    "WAREHOUSE.RECEIPT": "in-warehouse",
    "EQUIPMENT.DROP": "empty-returned",
}

#: Declaration status codes of Declarations.vy.
DECLARATION_STATUS = {
    1: "filed", 2: "accepted", 3: "queried", 4: "held", 5: "inspection", 6: "released",
    7: "rejected",
}

#: An air waybill's milestones in the order a shipment passes them (Cargo-IMP FSU codes).
AIR_MILESTONES = ("BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV")

#: Customs status after a CUSTOMS event (latest wins).
CUSTOMS_STATUS = {"CUSR": "released", "CUSH": "held", "CUSI": "inspection", "CUSX": "refused"}

#: Kinds the shipment view tries, best first, when a typed string could be several.
VIEW_KINDS = ("container", "mbl", "hbl", "awb", "declaration", "booking", "vessel", "shipment")

_dumps = json.dumps


def timeline_events(view: dict[str, Any]) -> list[VisibleEvent]:
    """The events a built view shows (kept under ``_events``, never encoded)."""
    events_of: list[VisibleEvent] = view.get("_events", [])
    return events_of


def redact(v: VisibleEvent, covered: set[bytes]) -> VisibleEvent:
    """``v`` without mentions of containers outside ``covered`` (the house-B/L subset rule)."""
    related = tuple(r for r in v.event.related
                    if r.kind != "container" or key_of(r.value) in covered)
    details = dict(v.event.details)
    listed = details.get("containers")
    if isinstance(listed, list):
        details["containers"] = [
            c for c in listed if isinstance(c, str) and key_of(c) in covered
        ]
    if related == v.event.related and details == v.event.details:
        return v
    return replace(v, event=replace(v.event, related=related, details=details), redacted=True)


def names_vessel(event: CanonicalEvent, imo: str) -> bool:
    """Whether ``event`` names the vessel ``imo`` (details.vessel.imo or a vessel reference)."""
    vessel = event.details.get("vessel")
    if isinstance(vessel, dict) and str(vessel.get("imo", "")) == imo:
        return True
    return any(r.kind == "vessel" and r.value == imo for r in event.related)


def references_named(records: Sequence[VisibleEvent], kind: str,
                     allowed: set[bytes] | None) -> dict[bytes, str]:
    """References of ``kind`` named by ``records`` (limited to ``allowed`` subject keys), by
    subject key: the references a reader derives from what it may read."""
    out: dict[bytes, str] = {}
    for v in records:
        refs = list(v.event.related)
        listed = v.event.details.get("containers") if kind == "container" else None
        if isinstance(listed, list):
            refs.extend(Reference("container", c) for c in listed if isinstance(c, str))
        for ref in refs:
            if ref.kind != kind:
                continue
            k = key_of(ref.value)
            if allowed is None or k in allowed:
                out[k] = ref.value
    return out


def container(number: str, shown: list[VisibleEvent]) -> dict[str, Any]:
    """A container's entry: owner, status, latest reefer reading, its events."""
    live = sorted((v for v in shown if not v.retracted_by), key=lambda v: (v.event.event_time,
                                                                          v.event_id))
    status, status_time = None, None
    reefer = None
    for v in live:
        e = v.event
        if e.classifier == "ACT" and e.event_type in STATUS_OF:
            status, status_time = STATUS_OF[e.event_type], e.event_time
        if e.event_type == "REEFER.MEAS":
            reading = e.details
            reefer = {
                "temperature": reading.get("temperature"),
                "setpoint": reading.get("setpoint"),
                "humidity": reading.get("humidity"),
                "time": iso_time(e.event_time),
                "source": v.publisher_name,
            }
    carrier = identifiers.carrier_of(number)
    return {
        "number": number,
        "owner": carrier.name if carrier else None,
        "status": status,
        "statusTime": iso_time(status_time) if status_time else None,
        "reefer": reefer,
        "events": [v.event_id for v in sorted(shown, key=lambda v: (v.event.event_time,
                                                                     v.event_id))],
    }


def vessel(shown: list[VisibleEvent]) -> dict[str, Any] | None:
    """Vessel name and IMO, latest position, ETD and ETA (their ``freshness`` a mark that
    :func:`gateway.tracking.cache.render` turns into seconds since recorded)."""
    found: dict[str, Any] = {}
    position = None
    estimates: dict[str, VisibleEvent] = {}
    by_source: dict[int, VisibleEvent] = {}
    for v in sorted(shown, key=lambda v: (v.block_time, v.event_id)):
        if v.retracted_by:
            continue
        e = v.event
        info = e.details.get("vessel")
        if isinstance(info, dict):
            found.setdefault("name", info.get("name"))
            found.setdefault("imo", info.get("imo"))
        for ref in e.related:
            if ref.kind == "vessel":
                found.setdefault("imo", ref.value)
        pos = e.details.get("position")
        if (isinstance(pos, dict) and "lat" in pos and "lon" in pos
                and (position is None or e.event_time >= position[0])):
            position = (e.event_time, pos, v.publisher_name)
        if e.event_type in ("TRANSPORT.ARRI", "TRANSPORT.DEPA"):
            estimates["eta" if e.event_type == "TRANSPORT.ARRI" else "etd"] = v
            if e.event_type == "TRANSPORT.ARRI" and e.classifier != "ACT":
                by_source[v.publisher] = v
    if not found and position is None and not estimates:
        return None
    out: dict[str, Any] = {"name": found.get("name"), "imo": found.get("imo")}
    arrival = estimates.get("eta")
    out["portOfCall"] = arrival.event.location or None if arrival else None
    # every source's latest ETA side by side (carrier, terminal, agent): disagreement shown
    out["etas"] = [{
        "source": v.publisher_name,
        "time": iso_time(v.event.event_time),
        "classifier": v.event.classifier,
        "location": v.event.location or None,
        "recordedAt": iso_time(v.block_time),
        "freshness": freshness_mark(v.block_time),
    } for v in sorted(by_source.values(), key=lambda v: v.publisher_name)]
    out["latestPosition"] = (
        {"lat": position[1]["lat"], "lon": position[1]["lon"], "time": iso_time(position[0]),
         "source": position[2]} if position else None
    )
    for name in ("etd", "eta"):
        estimate = estimates.get(name)
        out[name] = None if estimate is None else {
            "time": iso_time(estimate.event.event_time),
            "classifier": estimate.event.classifier,
            "source": estimate.publisher_name,
            "recordedAt": iso_time(estimate.block_time),
            "freshness": freshness_mark(estimate.block_time),
        }
    return out


def air_waybill(number: str, shown: list[VisibleEvent]) -> dict[str, Any] | None:
    """An air waybill's summary: milestones BKD → … → DLV (done or not, when), latest status,
    flights, pieces and weight, origin and destination (from FSU/FWB details)."""
    live = sorted((v for v in shown if not v.retracted_by and v.event.family == "AIR"),
                  key=lambda v: (v.event.event_time, v.event_id))
    if not live:
        return None
    reached: dict[str, VisibleEvent] = {}
    flights: dict[str, dict[str, Any]] = {}
    consignment: dict[str, Any] = {}
    for v in live:
        d = v.event.details
        reached.setdefault(v.event.code, v)
        flight = d.get("flight")
        if isinstance(flight, str) and flight not in flights:
            flights[flight] = {"flight": flight, "from": d.get("from"), "to": d.get("to"),
                               "date": d.get("date")}
        for source in (d.get("waybill"), d.get("consignment")):
            if isinstance(source, dict):
                consignment.update({k: source[k] for k in ("origin", "destination", "pieces",
                                                           "weight", "weightUnit")
                                    if k in source})
    latest = live[-1]
    return {
        "number": identifiers.format_awb(number) if number.isdigit() else number,
        "status": latest.event.code,
        "statusTime": iso_time(latest.event.event_time),
        "milestones": [{"code": code, "done": code in reached,
                        "time": iso_time(reached[code].event.event_time)
                        if code in reached else None} for code in AIR_MILESTONES],
        "flights": list(flights.values()),
        **{k: consignment.get(k) for k in ("origin", "destination", "pieces", "weight",
                                           "weightUnit")},
    }


def customs(shown: list[VisibleEvent]) -> dict[str, Any] | None:
    """The latest customs status among ``shown`` (released, held, inspection, refused)."""
    live = [v for v in shown if not v.retracted_by and v.event.family == "CUSTOMS"]
    if not live:
        return None
    latest = max(live, key=lambda v: (v.event.event_time, v.event_id))
    d = latest.event.details
    return {"status": CUSTOMS_STATUS.get(latest.event.code, latest.event.code),
            "time": iso_time(latest.event.event_time), "source": latest.publisher_name,
            "office": d.get("office"), "reason": d.get("reason")}


def declaration(number: str, decl: Declaration, name_of: Callable[[int], str],
                ) -> dict[str, Any]:
    """A customs declaration's entry with its status history (``name_of``: directory names)."""
    return {
        "number": number,
        "declarant": {"id": decl.declarant, "name": name_of(decl.declarant)},
        "authority": decl.authority,
        "filedAt": iso_time(decl.filed_time),
        "status": DECLARATION_STATUS.get(decl.statuses[-1][2], "unknown")
        if decl.statuses else "filed",
        "history": [
            {"time": iso_time(t), "status": DECLARATION_STATUS.get(s, str(s)),
             "by": name_of(org)}
            for t, org, s, _ in decl.statuses
        ],
    }


def assemble(cand: identifiers.Candidate, shown: list[VisibleEvent],
             containers: list[dict[str, Any]], *, vessel_from: list[VisibleEvent],
             ) -> dict[str, Any]:
    """The view of ``cand`` showing ``shown`` (each event once, in event-time order)."""
    unique = {v.event_id: v for v in shown}
    timeline = sorted(unique.values(), key=lambda v: (v.event.event_time, v.event_id))
    carrier = identifiers.carrier_of(cand.value)
    return {
        "reference": cand.value,
        "kind": cand.kind,
        "carrier": {"scac": carrier.scac, "name": carrier.name} if carrier else None,
        "vessel": vessel(vessel_from),
        "containers": containers,
        "landLeg": [v for v in timeline if v.event.family == "LAND"],
        "airLeg": [v for v in timeline if v.event.family == "AIR"],
        "declarations": [v for v in timeline if v.event.family == "CUSTOMS"
                         and v.event.subject.kind == "declaration"],
        "airWaybill": air_waybill(cand.value, timeline) if cand.kind == "awb" else None,
        "customs": customs(timeline),
        "timeline": timeline,
        "_events": timeline,
    }


def entry_json(v: VisibleEvent, entries: LRU) -> bytes:
    """A timeline entry's JSON (kept in ``entries`` unless redacted for this caller)."""
    if v.redacted:
        return _dumps(v.to_json(), separators=(",", ":")).encode()
    key = (v.event_id, v.readable_via, v.retracted_by)
    found: bytes | None = entries.get(key)
    if found is None:
        found = _dumps(v.to_json(), separators=(",", ":")).encode()
        entries.put(key, found)
    return found


def encode(view: dict[str, Any], entries: LRU) -> tuple[bytes | int, ...]:
    """A built view as JSON: a skeleton with marks for timeline entries and freshness, the
    entries spliced in from ``entries``; the freshness left to
    :func:`gateway.tracking.cache.render`."""
    encoded: list[bytes] = []

    def mark(v: VisibleEvent) -> str:
        encoded.append(entry_json(v, entries))
        return entry_mark(len(encoded) - 1)

    skeleton = {
        name: [mark(x) if isinstance(x, VisibleEvent) else x for x in value]
        if isinstance(value, list) else value
        for name, value in view.items() if name != "_events"
    }
    pieces = MARKS.split(_dumps(skeleton, separators=(",", ":")).encode())
    parts: list[bytes | int] = []
    run: list[bytes] = [pieces[0]]
    for i in range(1, len(pieces), 3):
        if pieces[i] == b"e":
            run.append(encoded[int(pieces[i + 1])])
        else:
            parts.append(b"".join(run))
            parts.append(int(pieces[i + 1]))
            run = []
        run.append(pieces[i + 2])
    parts.append(b"".join(run))
    return tuple(parts)
