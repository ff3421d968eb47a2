"""A telemetry reading: the one model feed adapters produce for high-frequency data (pure).

A reading is a measurement of an asset at a moment: a vessel's AIS position or static data,
a reefer's temperature, a truck's GPS fix. Readings are not cargo events: they are stored in
the read model and anchored on chain in batches (a Merkle root per batch), never one
transaction each.

JSON form (``portledger feed parse`` and ``POST /v1/feeds/{format}?dryRun=true``): the reading's
values are members of the object itself, beside ``kind``, ``type``, ``time`` and ``subject``::

    {"kind": "reading", "type": "ais-position", "time": "2026-11-24T08:15:00Z",
     "subject": {"kind": "vessel", "value": "9321483"},
     "mmsi": 477123400, "lat": 22.3, "lon": 114.1, "sog": 12.3, "cog": 181.0, "heading": 180}

``subject`` is null when the asset is not known by a reference yet (an AIS position of a
vessel whose IMO number has not been seen in static data: it is kept under its ``mmsi``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gateway import jsonbody
from gateway.events.model import Reference, parse_reference, parse_time
from gateway.isotime import iso_time

#: Types of reading and the Anchors kind each is anchored as (None: stored, not anchored).
READING_TYPES: dict[str, str | None] = {
    "ais-position": "AIS",  # types 1/2/3, 18, 19: mmsi, lat, lon, sog, cog, heading, status
    "ais-static": None,  # types 5, 24, 19: mmsi, imo, callsign, name, destination, eta, ...
    "reefer": "REEFER",  # temperature, setpoint, ambient, humidity, o2, co2, unit
    "truck-position": "TRUCK_GPS",  # lat, lon, speed, heading, job
}

#: Members of a reading's JSON form that are not values.
_RESERVED = frozenset({"kind", "type", "time", "subject", "line"})

#: Types whose readings are public (everyone may read them); the others are private.
PUBLIC_TYPES = frozenset({"ais-position", "ais-static"})


@dataclass(frozen=True)
class Reading:
    """One measurement of an asset at a moment."""

    type: str
    """One of :data:`READING_TYPES`."""
    time: int
    """When it was measured, Unix seconds (UTC)."""
    subject: Reference | None
    """The asset: a vessel (IMO), a container (reefer), a truck; None if not known yet."""
    values: dict[str, Any] = field(default_factory=dict)
    """The measurement: JSON values only, names not in ``kind type time subject line``."""
    line: int = field(default=0, compare=False)
    """Where in the input it came from (1-based line or segment number; 0: unknown)."""

    def __post_init__(self) -> None:
        if self.type not in READING_TYPES:
            raise ValueError(f"unknown reading type {self.type!r}")
        if not _RESERVED.isdisjoint(self.values):
            clash = sorted(_RESERVED & self.values.keys())
            raise ValueError(f"reading values may not be named {clash}")

    @property
    def public(self) -> bool:
        return self.type in PUBLIC_TYPES

    def to_json(self) -> dict[str, Any]:
        """The report's JSON form (values flattened beside ``kind``, ``type``, ``time``)."""
        body: dict[str, Any] = {
            "kind": "reading",
            "type": self.type,
            "time": iso_time(self.time),
            "subject": self.subject.to_json() if self.subject else None,
        }
        body.update(self.values)
        if self.line:
            body["line"] = self.line
        return body

    def canonical_bytes(self) -> bytes:
        """The bytes that are hashed, anchored and disclosed: canonical JSON, no ``line``."""
        body = {
            "v": 1,
            "type": self.type,
            "time": self.time,
            "subject": self.subject.to_json() if self.subject else None,
            "values": self.values,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    def digest(self) -> bytes:
        """SHA-256 of :meth:`canonical_bytes`: a reading's identity for de-duplication."""
        return hashlib.sha256(self.canonical_bytes()).digest()


def from_json(raw: dict[str, Any]) -> Reading:
    """A reading from its JSON form (a ``reading`` line of ``portledger feed parse``)."""
    subject = raw.get("subject")
    return Reading(
        type=raw["type"],
        time=parse_time(raw["time"]),
        subject=parse_reference(subject, field="/subject") if subject else None,
        values={k: v for k, v in raw.items() if k not in _RESERVED},
        line=int(raw.get("line") or 0),
    )


def from_canonical(raw: bytes) -> Reading:
    """A reading from its :meth:`Reading.canonical_bytes` (as stored and as anchored).

    The subject is taken as it was normalised when the reading was made (a reference an adapter
    flagged for a bad check digit stays as it is): the bytes are the reading, and they must give
    back the very same bytes. Raises ``ValueError`` on bytes that are not such a reading.
    """
    try:
        body = jsonbody.loads(raw)
        subject = body["subject"]
        if body.get("v") != 1 or not isinstance(body["values"], dict):
            raise ValueError("not a version 1 reading")
        reading = Reading(
            type=body["type"],
            time=int(body["time"]),
            subject=Reference(str(subject["kind"]), str(subject["value"])) if subject else None,
            values=body["values"],
        )
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not the canonical bytes of a reading: {exc!r}") from None
    return reading
