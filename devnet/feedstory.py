"""The demo port's systems in their own formats: the SIMULATED call's uploads, and the live port.

A port community system earns its keep by reading what the port's systems already send. The
demo therefore plays each party's system in the format it really speaks, through
``POST /v1/feeds/{format}`` (raw files, :mod:`gateway.feeds`) besides the JSON APIs:

==========  ====================================================  =============================
party       what it sends                                         format
==========  ====================================================  =============================
carrier     master B/L; departure, ETA, arrival                   PortLedger canonical; DCSA
                                                                  T&T 2.2 TRANSPORT events
terminal    the discharge report of the call                      UN/EDIFACT COARRI (D.95B)
customs     the declaration held, then released (to the parties)  customs status (JSON Lines)
terminal    available for pick-up (EDIFACT has no such code)      PortLedger canonical
forwarder   its house B/L over all containers but the last        PortLedger canonical
operator    the vessel's track from open water to its berth       AIS NMEA (``!AIVDM``, 4.10 tag
                                                                  blocks)
carrier     the first container's reefer: set point, readings     DCSA Reefer 1.0 (JSON Lines)
            with a temperature excursion
airline     an air waybill's milestones BKD → … → DLV             IATA Cargo-IMP FSU (Type-B)
terminal    the last container leaves the terminal                UN/EDIFACT CODECO (D.95B)
==========  ====================================================  =============================

:func:`story` is the call up to the house B/L (what the first checks look at);
:func:`port_systems` the chapter after it. :class:`LiveFeed` is the port afterwards: each tick
the next vessel's position as AIS NMEA (operator) and its ETA as a DCSA 2.2 estimate (carrier),
and one gate move as CODECO (terminal).

Everything here is pure: the uploads are functions of the call, a clock reading and, for the
live feed, a seeded :class:`random.Random`. The raw files are written by
:mod:`devnet.simfeeds` (pydifact's serializer for EDIFACT, pyais's encoder for AIS), and every
one says SIMULATED: EDIFACT in the ``UNB`` sender, AIS in every tag block's station, DCSA
Reefer in the publisher's name, Cargo-IMP in each message's ``OSI`` line, customs in each
message's id and reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from geographiclib.geodesic import Geodesic
from pyais.messages import TagBlock

from devnet.simfeeds import ais, cargo_imp, edifact, json_feeds
from devnet.simulate import (
    FEEDS_PATH,
    PARTIES,
    POD,
    POL,
    TERMINAL_NAME,
    Upload,
    VesselCall,
    canonical_item,
    container_number,
    event_id,
    imo_number,
    transport_event,
    vessel_call,
)
from gateway.events.identifiers import awb_check_digit
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.isotime import iso_time

#: Where the SIMULATED vessels berth: Kwai Tsing, the position tracking knows as HKHKG.
BERTH = (22.34, 114.12)

#: The story vessel's approach: from open water south of Lamma up the West Lamma Channel.
APPROACH = ((21.90, 114.05), (22.20, 114.06))

#: Speed over ground of the story vessel's approach, knots, and seconds between two fixes.
APPROACH_KNOTS, FIX_INTERVAL = 12.0, 300

#: The AIS station every simulated sentence names in its tag block.
STATION = "SIMULATED"

#: Hong Kong's Maritime Identification Digits: the first three digits of the vessels' MMSIs.
HONG_KONG_MID = 477

#: Set point of the reefer container (°C, frozen cargo) and its readings' spacing (minutes).
REEFER_SETPOINT, REEFER_INTERVAL = -18.0, 5

#: The next vessel comes in on this bearing from the berth (south-east: the Luzon Strait).
LIVE_BEARING = 128.0

#: A type 5 static report of the next vessel every this many live ticks (the first included).
STATIC_EVERY = 10

#: The airline's IATA prefix (Cathay Pacific) and the simulated flight between HKG and AMS.
AIRLINE_PREFIX, FLIGHT = "160", "CX0271"

_METRES_PER_NM = 1852.0


#: Where AIS goes: positions and static data are public, whoever relays them.
AIS_PATH = f"{FEEDS_PATH}ais"


def feed_path(fmt: str, *, readers: tuple[int, ...] = ()) -> str:
    """``/v1/feeds/{fmt}``: readable by whoever holds a reference it names, or — with
    ``readers`` — named: the uploader and those organisations only."""
    if readers:
        return f"{FEEDS_PATH}{fmt}?visibility=named&readers={','.join(map(str, readers))}"
    return f"{FEEDS_PATH}{fmt}?visibility=reference"


# -- the vessels as AIS sees them --------------------------------------------------------------
def ais_vessel(call: VesselCall) -> ais.SimVessel:
    """The call's vessel as its AIS transponder describes it (MMSI from its IMO number)."""
    name = call.vessel_name.removesuffix(" (SIMULATED)").upper()[:16] + " SIM"
    return ais.SimVessel(mmsi=HONG_KONG_MID * 1_000_000 + int(call.vessel_imo) % 1_000_000,
                         imo=call.vessel_imo, name=name, callsign="VR" + call.vessel_imo[-5:],
                         destination=POD)


def arrival_track(call: VesselCall) -> list[ais.Fix]:
    """The story vessel's fixes along :data:`APPROACH` to :data:`BERTH`, the last one moored
    at the call's arrival time."""
    points = [*APPROACH, BERTH]
    fixes: list[ais.Fix] = []
    for start, end in zip(points, points[1:], strict=False):
        begin = fixes[-1].time + FIX_INTERVAL if fixes else 0
        leg = ais.track(start, end, start_time=begin, speed_knots=APPROACH_KNOTS,
                        interval=FIX_INTERVAL)
        fixes += leg if end == BERTH else leg[:-1]  # only the berth's fix is moored
    shift = call.arrived - fixes[-1].time
    return [replace(f, time=f.time + shift) for f in fixes]


def ais_arrival(call: VesselCall) -> Upload:
    """The operator's shore station relays the vessel's approach: AIS NMEA with tag blocks."""
    vessel = ais_vessel(call)
    fixes = arrival_track(call)
    raw = ais.write_track(vessel, fixes, eta=call.eta, station=STATION).encode()
    return Upload("operator", "POST", AIS_PATH, None,
                  f"relays {vessel.name} (MMSI {vessel.mmsi}) coming in: {len(fixes)} positions, "
                  f"moored at {BERTH[0]:.2f}N {BERTH[1]:.2f}E at {iso_time(fixes[-1].time)}",
                  "AIS NMEA 0183 !AIVDM", raw=raw)


# -- the story ---------------------------------------------------------------------------------
def _edifact_vessel(call: VesselCall) -> edifact.Vessel:
    return edifact.Vessel(call.vessel_imo, call.vessel_name, call.voyage)


def discharge_report(call: VesselCall, rng: random.Random) -> Upload:
    """The terminal's COARRI discharge report: every container with its master B/L
    (``RFF+BM``), stowage cell, weight and seal; the first is a reefer at
    :data:`REEFER_SETPOINT`."""
    moves = []
    for i, number in enumerate(call.containers):
        reefer = i == 0
        moves.append((edifact.Container(
            number, iso_type="45R1" if reefer else "45G1", bill_of_lading=call.master,
            seals=(f"SIM{rng.randrange(10**7):07d}",), gross_kg=rng.randrange(8_000, 28_000),
            stowage_cell=f"{rng.randrange(1, 40) * 2:03d}{rng.randrange(1, 12):02d}"
                         f"{rng.choice((82, 84, 86, 88)):02d}",
            port_of_loading=POL, port_of_discharge=POD,
            setpoint=REEFER_SETPOINT if reefer else None,
        ), call.arrived + 1800 + 120 * i))
    raw = edifact.coarri(moves, operation="discharge", port=POD, vessel=_edifact_vessel(call),
                         prepared_at=moves[-1][1] + 300, reference=f"D{call.serial:06d}")
    return Upload("terminal", "POST", feed_path("edifact"), None,
                  f"reports the discharge of {len(moves)} containers from {call.vessel_name}",
                  "UN/EDIFACT COARRI D.95B", raw=raw)


def declaration_number(call: VesselCall) -> str:
    """The customs declaration of the call's cargo."""
    return f"SIMDEC{call.serial:06d}"


#: Who customs tells about the declaration: the trader (the importer who declared), its
#: forwarder, the carrier and the terminal holding the containers.
CUSTOMS_READERS = ("trader", "forwarder", "carrier", "terminal")


def customs_release(call: VesselCall) -> Upload:
    """Customs holds the declaration for a documentary check, then releases it (two status
    messages naming every container and the master B/L).

    The messages go to :data:`CUSTOMS_READERS` by name, not to whoever holds a reference: the
    events about the master B/L list every container, and a holder of the B/L number alone
    (the bank, before the carrier's grant) must not learn them.
    """
    number = declaration_number(call)
    raw = json_feeds.json_lines(json_feeds.customs_messages(
        number, containers=call.containers, bill_of_lading=call.master,
        held_at=call.arrived + 3600, released_at=call.arrived + 5400, location=POD))
    readers = tuple(PARTIES[name] for name in CUSTOMS_READERS)
    return Upload("customs", "POST", feed_path("customs", readers=readers), None,
                  f"holds declaration {number} for a documentary check, then releases its "
                  f"{len(call.containers)} containers", "customs status (JSON Lines)", raw=raw)


def available_for_pick_up(call: VesselCall, rng: random.Random) -> Upload:
    """The terminal's release for pick-up: canonical ``TERMINAL.AVPU`` (neither DCSA 2.2 nor
    EDIFACT has a code for it)."""
    available = call.arrived + 7200
    return Upload("terminal", "POST", "/v1/events", {"events": [
        canonical_item(f"sim-avpu-{c}-{call.serial}", CanonicalEvent(
            "TERMINAL.AVPU", "ACT", available + 60 * i, Reference("container", c), POD,
            related=(Reference("mbl", call.master), Reference("vessel", call.vessel_imo)),
            details={"simulated": True, "terminal": TERMINAL_NAME,
                     "yard": f"CT9-{rng.randrange(1, 40):02d}-{rng.randrange(1, 9)}",
                     "lastFreeDay": iso_time(available + 5 * 86_400)},
            visibility=Visibility("reference")))
        for i, c in enumerate(call.containers)
    ]}, "containers available for pick-up (no DCSA 2.2 or EDIFACT code for it)",
        "PortLedger canonical")


def story(call: VesselCall, now: int) -> list[Upload]:
    """The uploads of the vessel call, in the order the parties send them.

    The carrier registers the master B/L (readable by the forwarder and the terminal it
    names) and reports the voyage in DCSA 2.2; the terminal reports the discharge as COARRI;
    customs holds, then releases the containers; the terminal makes them available for pick-up;
    the forwarder links its house B/L to all containers but the last. Container and vessel
    events are readable by whoever holds the container number or the IMO number (like AIS and
    terminal status pages). ``now`` is the clock reading the call was made for.
    """
    del now  # the call's times already place it before now
    rng = random.Random(call.serial ^ 0x5EED)
    return [
        Upload("carrier", "POST", "/v1/bills-of-lading", {
            "master": call.master,
            "containers": list(call.containers),
            "vessel": {"imo": call.vessel_imo, "name": call.vessel_name, "voyage": call.voyage},
            "pol": POL, "pod": POD,
            "etd": iso_time(call.departed - 600), "eta": iso_time(call.eta),
            "issuedAt": iso_time(call.departed - 86_400),
            "visibility": {"mode": "named",
                           "readers": [PARTIES["forwarder"], PARTIES["terminal"]]},
        }, f"registers master B/L {call.master} with {len(call.containers)} containers",
            "PortLedger canonical"),
        Upload("carrier", "POST", "/v2/events?visibility=reference", [
            transport_event(call, "DEPA", "ACT", call.departed, call.departed + 60,
                            event_id(rng), remark=f"departed {POL}"),
            transport_event(call, "ARRI", "EST", call.eta, call.departed + 3600, event_id(rng),
                            remark="ETA at departure"),
        ], f"vessel {call.vessel_imo} departed {POL}, ETA {iso_time(call.eta)}",
            "DCSA T&T 2.2"),
        Upload("carrier", "POST", "/v2/events?visibility=reference", [
            transport_event(call, "ARRI", "ACT", call.arrived, call.arrived + 60,
                            event_id(rng), remark=f"arrived {POD}"),
        ], f"vessel arrived at {POD}", "DCSA T&T 2.2"),
        discharge_report(call, rng),
        customs_release(call),
        available_for_pick_up(call, rng),
        Upload("forwarder", "POST", f"/v1/bills-of-lading/{call.master}/houses", {
            "house": call.house, "containers": list(call.house_containers),
            "issuedAt": iso_time(call.departed - 43_200),
        }, f"links house B/L {call.house} to {len(call.house_containers)} of the "
           f"{len(call.containers)} containers", "PortLedger canonical"),
    ]


# -- the port's systems, after the story -------------------------------------------------------
def reefer_readings(call: VesselCall) -> Upload:
    """The carrier's DCSA Reefer 1.0 feed of the first container over the four hours before
    arrival: the set point, then a reading every :data:`REEFER_INTERVAL` minutes with a
    temperature excursion; named readers: the forwarder only."""
    reefer = json_feeds.Reefer(call.containers[0], setpoint=REEFER_SETPOINT)
    events = json_feeds.reefer_events(reefer, start=call.arrived - 4 * 3600, minutes=240,
                                      interval=REEFER_INTERVAL, excursion_at=90,
                                      excursion_minutes=40, seed=call.serial)
    return Upload("carrier", "POST", feed_path("dcsa-reefer", readers=(PARTIES["forwarder"],)),
                  None, f"sends {reefer.container}'s reefer set point ({REEFER_SETPOINT:g} °C) "
                  f"and {len(events) - 1} readings, for the forwarder's eyes only",
                  "DCSA Reefer 1.0", raw=json_feeds.json_lines(events))


def air_waybill(call: VesselCall) -> str:
    """A SIMULATED air waybill (``160-nnnnnnnc``, mod 7 check digit) made from the serial."""
    serial = f"{5_000_000 + call.serial % 1_000_000:07d}"
    return f"{AIRLINE_PREFIX}-{serial}{awb_check_digit(serial)}"


def air_shipment(call: VesselCall) -> cargo_imp.AirShipment:
    """The forwarder's air shipment Hong Kong → Amsterdam."""
    return cargo_imp.AirShipment(air_waybill(call), "HKG", "AMS", FLIGHT,
                                 pieces=12, weight_kg=486.5)


def air_statuses(call: VesselCall, now: int) -> Upload:
    """The airline's Cargo-IMP FSU messages BKD → … → DLV of :func:`air_shipment`, the flight
    having left two days before ``now``; named readers: the forwarder only."""
    shipment = air_shipment(call)
    departure = datetime.fromtimestamp(now, UTC).replace(tzinfo=None) - timedelta(days=2)
    statuses = cargo_imp.sequence(shipment, departure)
    return Upload("airline", "POST", feed_path("cargo-imp", readers=(PARTIES["forwarder"],)),
                  None, f"reports air waybill {shipment.awb} ({shipment.pieces} pieces, "
                  f"{shipment.weight_kg:g} kg, {shipment.flight} {shipment.origin}→"
                  f"{shipment.destination}): {' → '.join(s.code for s in statuses)}",
                  "IATA Cargo-IMP FSU/14", raw=cargo_imp.write(statuses))


def truck_plate(serial: int) -> str:
    """The haulier's truck of a gate move (a SIMULATED plate)."""
    return f"SIMTRK{serial % 10_000:04d}"


def gate_out(call: VesselCall, now: int) -> Upload:
    """The terminal's CODECO: the container the house B/L does not cover leaves on a truck."""
    number = call.containers[-1]
    when = now - 600
    raw = edifact.codeco([(edifact.Container(number, bill_of_lading=call.master,
                                             truck=truck_plate(call.serial)), when)],
                         gate="out", place=POD, facility="CT9", vessel=_edifact_vessel(call),
                         prepared_at=when + 60, reference=f"G{call.serial:06d}")
    return Upload("terminal", "POST", feed_path("edifact"), None,
                  f"reports {number} gated out on truck {truck_plate(call.serial)}",
                  "UN/EDIFACT CODECO D.95B", raw=raw)


def port_systems(call: VesselCall, now: int) -> list[Upload]:
    """The chapter after the story: AIS, DCSA Reefer, Cargo-IMP FSU and CODECO uploads."""
    return [ais_arrival(call), reefer_readings(call), air_statuses(call, now),
            gate_out(call, now)]


# -- the live port -----------------------------------------------------------------------------
def _tagged(sentence: str, when: int) -> str:
    block = TagBlock.create_str(source_station=STATION,  # type: ignore[arg-type]
                                receiver_timestamp=when)  # type: ignore[arg-type]
    return f"\\{block}\\{sentence}\r\n"


@dataclass
class LiveFeed:
    """The port's traffic after the story: the next vessel coming in, and gate moves, per tick.

    Each :meth:`tick` gives

    - the carrier's ETA of the next vessel as a DCSA 2.2 ``ARRI`` estimate (it drifts by a
      few minutes a tick);
    - the operator's AIS NMEA of that vessel: a type 1 position on the geodesic from the berth
      at bearing :data:`LIVE_BEARING`, as far out as its speed takes it by the carrier's ETA
      (tracking turns it into an AIS-derived ETA beside the carrier's), with the type 5 static
      data linking its MMSI to its IMO number on the first tick and every
      :data:`STATIC_EVERY`;
    - one CODECO gate move at the terminal: first the containers of the house B/L leave
      (the last container left in :func:`gate_out`), then export containers for the next
      vessel arrive, with new numbers each tick.

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
    """The next vessel's current estimated arrival (the carrier's)."""
    speed: float = field(init=False)
    """The next vessel's speed over ground, knots."""
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        serial = (self.call.serial + 1) % 1_000_000
        self.next_call = replace(vessel_call(serial, self.start), vessel_imo=imo_number(11_001),
                                 vessel_name="EASTERN PROMISE (SIMULATED)")
        self.eta = self.start + 10 * 3600
        self.speed = round(self._rng.uniform(13.0, 17.5), 1)

    def position(self, now: int) -> ais.Fix:
        """Where the next vessel is at ``now``: on its way at :attr:`speed`, or moored."""
        hours = (self.eta - now) / 3600
        if hours <= 0:
            return ais.Fix(now, BERTH[0], BERTH[1], 0.0, 0.0, 0, 5)
        out = Geodesic.WGS84.Direct(BERTH[0], BERTH[1], LIVE_BEARING,
                                    self.speed * hours * _METRES_PER_NM)
        course = round((out["azi2"] + 180.0) % 360.0, 1)
        return ais.Fix(now, round(out["lat2"], 6), round(out["lon2"], 6), self.speed, course,
                       round(course) % 360, 0)

    def tick(self, now: int) -> list[Upload]:
        """The uploads of the next tick at clock reading ``now``."""
        rng, call = self._rng, self.next_call
        self.ticks += 1
        self.eta += rng.choice((-4, -2, 0, 0, 3, 6, 9)) * 60
        uploads = [Upload("carrier", "POST", "/v2/events?visibility=reference", [
            transport_event(call, "ARRI", "EST", self.eta, now, event_id(rng),
                            remark="ETA update"),
        ], f"{call.vessel_name} ETA {iso_time(self.eta)}", "DCSA T&T 2.2")]
        uploads.append(self._ais(now))
        uploads.append(self._gate_move(now))
        return uploads

    def _ais(self, now: int) -> Upload:
        vessel = ais_vessel(self.next_call)
        fix = self.position(now)
        if (self.ticks - 1) % STATIC_EVERY == 0:
            text = ais.write_track(vessel, [fix], eta=self.eta, station=STATION)
        else:
            text = _tagged(ais.position_sentence(vessel, fix), now)
        port = Geodesic.WGS84.Inverse(fix.lat, fix.lon, BERTH[0], BERTH[1])["s12"]
        return Upload("operator", "POST", AIS_PATH, None,
                      f"{vessel.name} at {fix.lat:.2f}N {fix.lon:.2f}E, {fix.sog:g} kn, "
                      f"{port / _METRES_PER_NM:.0f} nm from {POD}", "AIS NMEA 0183 !AIVDM",
                      raw=text.encode())

    def _gate_move(self, now: int) -> Upload:
        rng, story = self._rng, self.call
        leaving = self.ticks - 1
        reference = f"L{story.serial:06d}{self.ticks:05d}"
        if leaving < len(story.house_containers):
            box = story.house_containers[leaving]
            raw = edifact.codeco([(edifact.Container(box, bill_of_lading=story.master,
                                                     truck=truck_plate(story.serial + leaving
                                                                       + 1)), now)],
                                 gate="out", place=POD, facility="CT9",
                                 vessel=_edifact_vessel(story), prepared_at=now,
                                 reference=reference)
            what = f"{box} gated out (picked up by a haulier)"
        else:
            box = container_number("PCOU", rng.randrange(1_000_000))
            booking = f"PCOLSIMBK{rng.randrange(10**6):06d}"
            raw = edifact.codeco([(edifact.Container(box, booking=booking, direction="export",
                                                     gross_kg=rng.randrange(6_000, 26_000)),
                                   now)],
                                 gate="in", place=POD, facility="CT9",
                                 vessel=_edifact_vessel(self.next_call), prepared_at=now,
                                 reference=reference)
            what = f"export container {box} gated in for {self.next_call.vessel_name}"
        return Upload("terminal", "POST", feed_path("edifact"), None, what,
                      "UN/EDIFACT CODECO D.95B", raw=raw)
