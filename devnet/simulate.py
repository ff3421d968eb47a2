"""The demo port's SIMULATED vessel call: who takes part, the call itself, its JSON uploads.

``portledger demo`` plays the port through the gateway's public HTTP API, exactly as the
organisations' own systems would. This module holds what every part of the demo shares:

- the parties (:data:`PARTIES`: Consortium ids of the demo organisations by role);
- the vessel call (:class:`VesselCall`, :func:`vessel_call`): vessel, voyage, master and house
  bills of lading, containers (valid ISO 6346 numbers), departure, ETA and arrival;
- the uploads in JSON: DCSA Track & Trace 2.2 TRANSPORT events (:func:`transport_event`),
  PortLedger canonical events (:func:`canonical_item`), grants (:func:`grant`);
- :class:`Upload`, one HTTP request of one party, whose body is JSON or a raw file.

The raw files of the story and of the live port (UN/EDIFACT, AIS NMEA, DCSA Reefer, Cargo-IMP,
customs status) are written by :mod:`devnet.feedstory`, which also composes the story and the
live feed; this module stays below it because the format writers
(:mod:`devnet.simfeeds.edifact`) build their numbers with :func:`container_number` and
:func:`imo_number`.

Everything here is pure: a :class:`VesselCall` is a function of a serial number and a clock
reading. Every payload says it is simulated: the vessel's name ends in ``(SIMULATED)``,
reference numbers carry ``SIM``, DCSA events carry it in ``changeRemark``, canonical events in
``details.simulated``.

The parties are the demo port's organisations (:data:`devnet.members.DEMO_ORGANISATIONS`);
their Consortium ids are their genesis order + 1 (:data:`PARTIES`).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from devnet.members import DEMO_ORGANISATIONS
from gateway.events.identifiers import container_check_digit, imo_check_digit
from gateway.events.model import CanonicalEvent
from gateway.isotime import iso_time


class SimulationError(ValueError):
    """A simulated vessel call was asked for with impossible parameters."""


def _party(role: str | None, nth: int = 1) -> int:
    """Consortium id of the ``nth`` demo organisation with ``role`` (``None``: no role at all)."""
    seen = 0
    for index, (_, roles) in enumerate(DEMO_ORGANISATIONS):
        if (role in roles) if role is not None else not roles:
            seen += 1
            if seen == nth:
                return index + 1
    raise SimulationError(f"the demo port has no organisation number {nth} with role {role!r}")


#: Consortium organisation ids of the demo port's parties in the story. ``competitor`` is the
#: second terminal: it handles none of the call's containers and must see nothing private.
PARTIES: dict[str, int] = {
    "operator": _party("operator"),
    "carrier": _party("carrier"),
    "terminal": _party("terminal"),
    "competitor": _party("terminal", 2),
    "forwarder": _party("forwarder"),
    "haulier": _party("haulier"),
    "airline": _party("airline"),
    "customs": _party("customs"),
    "bank": _party("bank"),
    "trader": _party(None),
}

#: Port of loading and port of discharge of the simulated call (UN/LOCODE).
POL, POD = "CNSHA", "HKHKG"

#: The terminal where the vessel calls (in the canonical release's details).
TERMINAL_NAME = "Kwai Tsing Container Terminal 9 (SIMULATED)"


def container_number(owner: str, serial: int) -> str:
    """An ISO 6346 container number: owner code (4 letters ending in U), serial, check digit."""
    if len(owner) != 4 or not owner.isalpha() or not 0 <= serial < 1_000_000:
        raise SimulationError(f"no container number for owner {owner!r} serial {serial}")
    first = f"{owner.upper()}{serial:06d}"
    return first + str(container_check_digit(first))


def imo_number(serial: int) -> str:
    """A valid IMO ship number (``9`` + five digits of ``serial`` + the check digit)."""
    first = f"9{serial % 100_000:05d}"
    return first + str(imo_check_digit(first))


@dataclass(frozen=True)
class VesselCall:
    """One simulated vessel call at the port and the shipment it brings."""

    serial: int
    """What the reference numbers are made from (unique per demo run)."""
    vessel_imo: str
    """IMO number of the vessel."""
    vessel_name: str
    """Its name (says SIMULATED)."""
    voyage: str
    """Export voyage number."""
    service: str
    """Carrier service code."""
    master: str
    """The carrier's master bill of lading number."""
    house: str
    """The forwarder's house bill of lading number (covers the first two containers)."""
    containers: tuple[str, ...]
    """The master B/L's containers (ISO 6346)."""
    departed: int
    """Actual departure from :data:`POL`, Unix seconds."""
    eta: int
    """Estimated arrival at :data:`POD`, Unix seconds."""
    arrived: int
    """Actual arrival at :data:`POD`, Unix seconds."""

    @property
    def house_containers(self) -> tuple[str, ...]:
        """The containers the house B/L covers (all but the last)."""
        return self.containers[:-1]

    def vessel(self) -> dict[str, str]:
        """The DCSA 2.2 ``vessel`` object."""
        return {
            "vesselIMONumber": self.vessel_imo,
            "vesselName": self.vessel_name,
            "vesselFlag": "HK",
            "vesselCallSignNumber": "VRSIM",
            "vesselOperatorCarrierCode": "PCOL",
            "vesselOperatorCarrierCodeListProvider": "NMFTA",
        }

    def transport_call(self, port: str) -> dict[str, Any]:
        """The DCSA 2.2 ``transportCall`` of this voyage at ``port`` (POL or POD)."""
        sequence = 1 if port == POL else 2
        return {
            "transportCallID": str(uuid.UUID(int=self.serial << 8 | sequence, version=4)),
            "carrierServiceCode": self.service,
            "exportVoyageNumber": self.voyage,
            "transportCallSequenceNumber": sequence,
            "UNLocationCode": port,
            "modeOfTransport": "VESSEL",
            "vessel": self.vessel(),
        }


def vessel_call(serial: int, now: int, *, containers: int = 3) -> VesselCall:
    """The simulated vessel call of a demo run: arrived about three hours before ``now``.

    Parameters
    ----------
    serial : int
        0 ≤ serial < 1 000 000; reference numbers are made from it, so each run's are new.
    now : int
        The clock reading (Unix seconds) the call's times are placed before.
    containers : int
        Containers on the master B/L (at least 2: the house B/L covers all but one).
    """
    if not 0 <= serial < 1_000_000 or not 2 <= containers <= 20:
        raise SimulationError("serial is 0..999999 and a call carries 2 to 20 containers")
    rng = random.Random(serial)
    boxes = tuple(container_number("PCOU", s) for s in rng.sample(range(1_000_000), containers))
    arrived = now - 3 * 3600
    return VesselCall(
        serial=serial,
        vessel_imo=imo_number(11_000),
        vessel_name="PACIFIC HARMONY (SIMULATED)",
        voyage=f"{serial % 1000:03d}E",
        service="PHX",
        master=f"PCOLSIM{serial:06d}",
        house=f"HFFSIM{serial:06d}",
        containers=boxes,
        departed=arrived - 58 * 3600,
        eta=arrived - 15 * 60,
        arrived=arrived,
    )


def event_id(rng: random.Random) -> str:
    """A DCSA ``eventID`` (a version 4 UUID) drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def transport_event(call: VesselCall, code: str, classifier: str, when: int, created: int,
                    event_id: str, *, remark: str = "") -> dict[str, Any]:
    """A DCSA 2.2 TRANSPORT event (``ARRI`` / ``DEPA``) of ``call``'s vessel.

    The port is :data:`POL` for a departure and :data:`POD` for an arrival; the master B/L is
    the transport document reference.
    """
    event: dict[str, Any] = {
        "eventID": event_id,
        "eventType": "TRANSPORT",
        "eventCreatedDateTime": iso_time(created),
        "eventClassifierCode": classifier,
        "eventDateTime": iso_time(when),
        "transportEventTypeCode": code,
        "changeRemark": ("SIMULATED " + remark).strip(),
        "transportCall": call.transport_call(POL if code == "DEPA" else POD),
        "documentReferences": [{"documentReferenceType": "TRD",
                                "documentReferenceValue": call.master}],
    }
    return event


#: Where feed files go: ``POST /v1/feeds/{format}``.
FEEDS_PATH = "/v1/feeds/"


def canonical_item(key: str, event: CanonicalEvent) -> dict[str, Any]:
    """One item of ``POST /v1/events`` (``{"events": [...]}``): the event and its key ``id``."""
    return {"id": key, **event.to_json()}


@dataclass(frozen=True)
class Upload:
    """One HTTP request an organisation's system sends to the gateway."""

    party: str
    """Who sends it: a key of :data:`PARTIES`."""
    method: str
    """``POST`` or ``DELETE``."""
    path: str
    """Path and query, e.g. ``/v2/events?visibility=reference``."""
    body: Any
    """The JSON body (``None`` for none)."""
    what: str
    """One line saying what it is, for the story (after the party's name)."""
    standard: str
    """The format, e.g. ``DCSA T&T 2.2``, ``PortLedger canonical``, ``UN/EDIFACT COARRI``."""
    raw: bytes | None = None
    """The raw file of a feed upload (``POST /v1/feeds/{format}``); ``body`` is then None."""

    @property
    def headers(self) -> dict[str, str]:
        """Request headers besides authorisation: a raw file is sent as octet-stream."""
        return {"Content-Type": "application/octet-stream"} if self.raw is not None else {}

    @property
    def feed_format(self) -> str | None:
        """The feed format of a ``/v1/feeds/{format}`` upload, else None."""
        if not self.path.startswith(FEEDS_PATH):
            return None
        return self.path[len(FEEDS_PATH):].split("?", 1)[0]


def grant(call: VesselCall, reader: str) -> Upload:
    """The carrier lets ``reader`` read everything it published about the master B/L."""
    return Upload("carrier", "POST", "/v1/grants", {
        "subject": {"kind": "mbl", "value": call.master}, "reader": PARTIES[reader],
    }, f"grants the {reader} its master B/L {call.master}", "PortLedger canonical")
