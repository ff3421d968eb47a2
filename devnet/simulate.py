"""The demo port's SIMULATED feeds: one vessel call, then live traffic, in the real formats.

``portledger demo`` plays the port through the gateway's public HTTP API, exactly as the
organisations' own systems would: a carrier's system registers a master bill of lading and
sends DCSA Track & Trace 2.2 TRANSPORT events (departure, estimated and actual arrival), a
terminal's system sends DCSA 2.2 EQUIPMENT events (discharge, gate moves) and canonical
``TERMINAL.AVPU`` releases (DCSA 2.2 has no code for "available for pick-up"), customs sends
``CUSTOMS.CUSR`` releases, a forwarder links a house bill of lading to some of the master's
containers. This module only *builds* those requests; sending them is the demo's job.

Everything here is pure: a :class:`VesselCall` is a function of a serial number and a clock
reading, and :class:`LiveFeed` is a seeded :class:`random.Random` stepping through ticks, so the
same seed and times give the same uploads. Every payload says it is simulated: the vessel's
name ends in ``(SIMULATED)``, reference numbers carry ``SIM``, DCSA events carry it in
``changeRemark`` or the event location's name, canonical events in ``details.simulated``.

The parties are the demo port's organisations (:data:`node.genesis.DEMO_ORGANISATIONS`); their
Consortium ids are their genesis order + 1 (:data:`PARTIES`).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from devnet.members import DEMO_ORGANISATIONS
from gateway.events.identifiers import container_check_digit, imo_check_digit
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.isotime import iso_time


class SimulationError(ValueError):
    """A simulated vessel call was asked for with impossible parameters."""


def _party(role: str | None) -> int:
    """Consortium id of the first demo organisation with ``role`` (``None``: no role at all)."""
    for index, (_, roles) in enumerate(DEMO_ORGANISATIONS):
        if (role in roles) if role is not None else not roles:
            return index + 1
    raise SimulationError(f"the demo port has no organisation with role {role!r}")


#: Consortium organisation ids of the demo port's parties in the story.
PARTIES: dict[str, int] = {
    "carrier": _party("carrier"),
    "terminal": _party("terminal"),
    "forwarder": _party("forwarder"),
    "customs": _party("customs"),
    "bank": _party("bank"),
    "trader": _party(None),
}

#: Port of loading and port of discharge of the simulated call (UN/LOCODE).
POL, POD = "CNSHA", "HKHKG"

#: The terminal where the vessel calls (shown in DCSA eventLocation names).
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


def _event_id(rng: random.Random) -> str:
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


def equipment_event(call: VesselCall, container: str, code: str, when: int, created: int,
                    event_id: str, *, empty: bool = False) -> dict[str, Any]:
    """A DCSA 2.2 EQUIPMENT event at the terminal (``DISC``, ``GTIN``, ``GTOT``, ``LOAD``)."""
    event: dict[str, Any] = {
        "eventID": event_id,
        "eventType": "EQUIPMENT",
        "eventCreatedDateTime": iso_time(created),
        "eventClassifierCode": "ACT",
        "eventDateTime": iso_time(when),
        "equipmentEventTypeCode": code,
        "equipmentReference": container,
        "ISOEquipmentCode": "45G1",
        "emptyIndicatorCode": "EMPTY" if empty else "LADEN",
        "eventLocation": {"locationName": TERMINAL_NAME, "UNLocationCode": POD},
    }
    if code in ("DISC", "LOAD"):
        event["transportCall"] = call.transport_call(POD)
    if code != "GTIN":
        event["documentReferences"] = [{"documentReferenceType": "TRD",
                                        "documentReferenceValue": call.master}]
    return event


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
    """The format: ``DCSA T&T 2.2`` or ``PortLedger canonical``."""


def story(call: VesselCall, now: int) -> list[Upload]:
    """The uploads of the vessel call, in the order the parties send them.

    The carrier registers the master B/L (readable by the forwarder and the terminal it
    names) and reports the voyage; the terminal reports each container's discharge; customs
    releases them; the terminal makes them available for pick-up; the forwarder links its
    house B/L to all containers but the last. Container and vessel events are readable by
    whoever holds the container number or the IMO number (like AIS and terminal status pages).
    """
    rng = random.Random(call.serial ^ 0x5EED)
    terminal = PARTIES["terminal"]
    uploads = [
        Upload("carrier", "POST", "/v1/bills-of-lading", {
            "master": call.master,
            "containers": list(call.containers),
            "vessel": {"imo": call.vessel_imo, "name": call.vessel_name, "voyage": call.voyage},
            "pol": POL, "pod": POD,
            "etd": iso_time(call.departed - 600), "eta": iso_time(call.eta),
            "issuedAt": iso_time(call.departed - 86_400),
            "visibility": {"mode": "named", "readers": [PARTIES["forwarder"], terminal]},
        }, f"registers master B/L {call.master} with {len(call.containers)} containers",
            "PortLedger canonical"),
        Upload("carrier", "POST", "/v2/events?visibility=reference", [
            transport_event(call, "DEPA", "ACT", call.departed, call.departed + 60,
                            _event_id(rng), remark=f"departed {POL}"),
            transport_event(call, "ARRI", "EST", call.eta, call.departed + 3600, _event_id(rng),
                            remark="ETA at departure"),
        ], f"vessel {call.vessel_imo} departed {POL}, ETA {iso_time(call.eta)}",
            "DCSA T&T 2.2"),
        Upload("carrier", "POST", "/v2/events?visibility=reference", [
            transport_event(call, "ARRI", "ACT", call.arrived, call.arrived + 60,
                            _event_id(rng), remark=f"arrived {POD}"),
        ], f"vessel arrived at {POD}", "DCSA T&T 2.2"),
        Upload("terminal", "POST", "/v2/events?visibility=reference", [
            equipment_event(call, c, "DISC", call.arrived + 1800 + 120 * i,
                            call.arrived + 1860 + 120 * i, _event_id(rng))
            for i, c in enumerate(call.containers)
        ], f"{len(call.containers)} containers discharged", "DCSA T&T 2.2"),
    ]
    released = call.arrived + 5400
    uploads.append(Upload("customs", "POST", "/v1/events", {"events": [
        canonical_item(f"sim-cusr-{c}-{call.serial}", CanonicalEvent(
            "CUSTOMS.CUSR", "ACT", released + 60 * i, Reference("container", c), POD,
            related=(Reference("mbl", call.master),),
            details={"simulated": True, "declarationStatus": "released"},
            visibility=Visibility("reference")))
        for i, c in enumerate(call.containers)
    ]}, "releases every container", "PortLedger canonical"))
    available = call.arrived + 7200
    uploads.append(Upload("terminal", "POST", "/v1/events", {"events": [
        canonical_item(f"sim-avpu-{c}-{call.serial}", CanonicalEvent(
            "TERMINAL.AVPU", "ACT", available + 60 * i, Reference("container", c), POD,
            related=(Reference("mbl", call.master), Reference("vessel", call.vessel_imo)),
            details={"simulated": True, "yard": f"CT9-{rng.randrange(1, 40):02d}"
                                                 f"-{rng.randrange(1, 9)}",
                     "lastFreeDay": iso_time(available + 5 * 86_400)},
            visibility=Visibility("reference")))
        for i, c in enumerate(call.containers)
    ]}, "containers available for pick-up (DCSA 2.2 has no code for it)",
        "PortLedger canonical"))
    uploads.append(Upload("forwarder", "POST", f"/v1/bills-of-lading/{call.master}/houses", {
        "house": call.house, "containers": list(call.house_containers),
        "issuedAt": iso_time(call.departed - 43_200),
    }, f"links house B/L {call.house} to {len(call.house_containers)} of the "
       f"{len(call.containers)} containers", "PortLedger canonical"))
    return uploads


def grant(call: VesselCall, reader: str) -> Upload:
    """The carrier lets ``reader`` read everything it published about the master B/L."""
    return Upload("carrier", "POST", "/v1/grants", {
        "subject": {"kind": "mbl", "value": call.master}, "reader": PARTIES[reader],
    }, f"grants the {reader} its master B/L {call.master}", "PortLedger canonical")


@dataclass
class LiveFeed:
    """The port's traffic after the story: an incoming vessel's ETA and gate moves, per tick.

    Each :meth:`tick` gives one ETA update of the next vessel (it drifts by a few minutes) with
    its simulated AIS position — a canonical ``TRANSPORT.ARRI`` estimate, since DCSA 2.2 has
    no field for a position; tracking shows it as the vessel's latest position — and one
    DCSA 2.2 gate move at the
    terminal: first the story's containers leave (``GTOT``, picked up by hauliers), then
    export containers for the next vessel arrive (``GTIN``), with new numbers each tick.

    Parameters
    ----------
    call : VesselCall
        The story's vessel call (its containers are the first to gate out).
    start : int
        Clock reading (Unix seconds) of the first tick; the next vessel is due 10 h later.
    seed : int
        Seed of the feed's :class:`random.Random`.
    """

    call: VesselCall
    """The story's vessel call."""
    start: int
    """When the feed started, Unix seconds."""
    seed: int = 0
    """Seed of the random source."""
    ticks: int = 0
    """Ticks played so far."""
    next_call: VesselCall = field(init=False)
    """The vessel due next (its ETA is what the updates move)."""
    eta: int = field(init=False)
    """The next vessel's current estimated arrival."""
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        serial = (self.call.serial + 1) % 1_000_000
        self.next_call = replace(vessel_call(serial, self.start), vessel_imo=imo_number(11_001),
                                 vessel_name="EASTERN PROMISE (SIMULATED)")
        self.eta = self.start + 10 * 3600

    def tick(self, now: int) -> list[Upload]:
        """The uploads of the next tick at clock reading ``now``."""
        rng, call = self._rng, self.next_call
        self.ticks += 1
        self.eta += rng.choice((-4, -2, 0, 0, 3, 6, 9)) * 60
        hours = max(0.0, (self.eta - now) / 3600)
        lat, lon = 22.3 - 0.35 * hours, 114.1 + 0.45 * hours
        speed = round(rng.uniform(13.0, 17.5), 1)
        uploads = [Upload("carrier", "POST", "/v1/events", {"events": [canonical_item(
            f"sim-eta-{call.serial}-{self.ticks}", CanonicalEvent(
                "TRANSPORT.ARRI", "EST", self.eta, Reference("vessel", call.vessel_imo), POD,
                related=(Reference("mbl", call.master),),
                details={"simulated": True,
                         "vessel": {"imo": call.vessel_imo, "name": call.vessel_name},
                         "position": {"lat": round(lat, 4), "lon": round(lon, 4),
                                      "speedKnots": speed, "source": "AIS (simulated)"}},
                visibility=Visibility("reference")))]},
            f"{call.vessel_name} ETA {iso_time(self.eta)} (AIS position {lat:.2f}N "
            f"{lon:.2f}E, {speed} kn)", "PortLedger canonical")]
        leaving = self.ticks - 1
        if leaving < len(self.call.containers):
            box = self.call.containers[leaving]
            uploads.append(Upload("terminal", "POST", "/v2/events?visibility=reference", [
                equipment_event(self.call, box, "GTOT", now, now, _event_id(rng)),
            ], f"{box} gated out (picked up by a haulier)", "DCSA T&T 2.2"))
        else:
            box = container_number("PCOU", rng.randrange(1_000_000))
            uploads.append(Upload("terminal", "POST", "/v2/events?visibility=reference", [
                equipment_event(call, box, "GTIN", now, now, _event_id(rng)),
            ], f"export container {box} gated in for {call.vessel_name}",
                "DCSA T&T 2.2"))
        return uploads
