"""The facts each alert rule reads, per subject, built from events and readings (pure).

Rules never look at raw events: :func:`build_facts` turns what a reader can see — canonical
events (:class:`Observed`: the event with its place in the receive order and its publisher) and
telemetry readings (:class:`Measured`) — into one :class:`Facts` per subject:

- a **vessel**'s ETAs at each port of call in the order they were received, from every source
  (each publisher's ``TRANSPORT.ARRI`` EST/PLN, and AIS-derived ETAs: the vessel's AIS positions
  received after the port of call was first named, the first and the latest of them, through
  :func:`gateway.tracking.eta.ais_eta`; or ETAs the caller computed and passes in), and its
  actual arrivals (``TRANSPORT.ARRI`` ACT);
- a **container**'s temperatures (``reefer`` readings, ``REEFER.MEAS``/``ADJU`` events) in time
  order, its yard stays (entry, availability, exit from the ACT ``TERMINAL`` events), the
  holds on it or on a document it travels under, its size and type (ISO 6346 size-type code)
  and its carrier;
- any subject's own ``CUSTOMS`` events.

Ordering and retractions
------------------------
``order`` is one sequence over events and readings together (the gateway's receive order; in a
file, the line number). An event whose ``retracts`` names an earlier event of the same publisher
(by its ``ref``: the chain event id, or in a file the line number) removes it; the retracting
event itself counts as the correction. Yard, temperature and customs facts are ordered by their
own times (a late-received event still lands in its place); only ETAs keep the receive order,
because "the first ETA seen" is a statement about receiving.

Reading the details
-------------------
Size-type: the ISO 6346 code under ``ISOEquipmentCode`` (the DCSA name, which
:mod:`gateway.events.dcsa` keeps verbatim in details) or a common spelling (:data:`ISO_KEYS`),
also inside ``details.equipment``. First character ``2`` = 20', ``4`` = 40', ``L`` = 45'; type
group ``R`` (``R0``/``R1``/``RT``/``RS``...), or the old numeric types 30-39, = reefer. A
container with reefer readings or ``REEFER`` events is a reefer whatever its code says.
Temperatures: ``temperature`` and ``setpoint`` (also ``setPoint``, ``set_point``,
``setpoints.temperature``), °C unless ``unit``/``temperatureUnit`` says ``FAH``/``F``; a reading
is a defrost reading when ``defrost`` is true or ``mode``/``operatingMode``/``status`` is
``defrost``. Commodity: ``commodity``. Carrier: ``details.carrier`` (or ``carrierCode``,
``carrierSCAC``), else the SCAC prefix of the container's B/L or booking, else the container's
owner code (:func:`gateway.events.identifiers.carrier_of`). Terminal: the availability event's
``details.terminal`` (or ``facilityCode``, ``eventLocation.facilityCode``,
``transportCall.facilityCode``), else the stay's entry event's, else the availability event's
publisher.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from gateway.alerts.model import Source
from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, Reference, parse_time
from gateway.isotime import iso_time
from gateway.telemetry.model import Reading
from gateway.tracking.eta import ais_eta

#: Details keys read as an ISO 6346 size-type code, first found wins.
ISO_KEYS: tuple[str, ...] = (
    "ISOEquipmentCode", "isoEquipmentCode", "ISOequipmentCode", "isoCode", "ISOCode",
    "sizeType", "size_type", "sizeTypeCode", "isoSizeType", "iso_size_type",
    "equipmentSizeType", "equipmentType",
)

#: ISO 6346 size code (first character) → the tariff's size.
ISO_SIZES: dict[str, str] = {"2": "20", "4": "40", "L": "45"}

#: Document kinds whose holds apply to the containers travelling under them.
DOCUMENT_KINDS = frozenset({"mbl", "hbl", "booking", "declaration", "shipment"})

#: Source name of ETAs derived from AIS positions.
AIS_SOURCE = "AIS-derived"

_DEFROST = "defrost"


@dataclass(frozen=True)
class Observed:
    """A canonical event as received: its receive order and publisher."""

    event: CanonicalEvent
    order: int
    """Place in the receive order (shared with readings)."""
    publisher: str = ""
    """Who published it (organisation name or id as text)."""
    ref: str = ""
    """Its id for visibility checks and retractions (default: ``order`` as text)."""
    received_at: int | None = None
    """When it was received/recorded (Unix seconds), when known."""

    @cached_property
    def source(self) -> Source:
        return Source("event", self.ref or str(self.order), self.publisher)


@dataclass(frozen=True)
class Measured:
    """A telemetry reading as received."""

    reading: Reading
    order: int
    publisher: str = ""
    ref: str = ""
    """Its id (default: the reading's digest, hex)."""

    @cached_property
    def source(self) -> Source:
        return Source("reading", self.ref or self.reading.digest().hex(), self.publisher)


@dataclass(frozen=True)
class EtaFact:
    """One source's estimate of when a vessel arrives at a port."""

    vessel: str
    """IMO number."""
    port: str
    """UN/LOCODE of the port of call ("" when the estimate names none)."""
    eta: int
    """Estimated arrival, Unix seconds."""
    source: str
    """Who says so: the publisher, or :data:`AIS_SOURCE`."""
    order: int
    """When it was received, in the receive order."""
    classifier: str = "EST"
    """``EST``, ``PLN`` or ``AIS``."""
    received_at: int | None = None
    origin: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Arrival:
    """A vessel's actual arrival at a port."""

    vessel: str
    port: str
    time: int
    order: int
    origin: Source
    received_at: int | None = None


@dataclass(frozen=True)
class TempPoint:
    """A reefer measurement or set-point change of a container (°C)."""

    time: int
    order: int
    temperature: float | None
    setpoint: float | None
    defrost: bool
    commodity: str | None
    origin: Source


@dataclass(frozen=True)
class YardStay:
    """One stay of a container in a terminal yard: entry, availability, exit."""

    entry: Observed
    """The event that brought it in (discharge, gate-in or availability)."""
    available: Observed | None
    """The availability for pick-up: the terminal's AVPU, else the discharge; None for an
    export box gated in (it waits to be loaded, not picked up)."""
    exit: Observed | None
    """Gate-out or load; None while it is still in the yard."""
    terminal: str
    """Which terminal (details, else the availability event's publisher)."""
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What the storage rule worked out for this stay that the clock does not change (its
    last free day, fixed figures and sources, an ended warning), kept with the facts for
    their next evaluation — the clock pass evaluates the same cached facts every day. Not a
    fact: left out of comparisons."""

    @property
    def entered(self) -> int:
        return self.entry.event.event_time


@dataclass(frozen=True)
class Hold:
    """A hold on a reference: customs hold/inspection/refusal or a carrier hold."""

    kind: str
    """``customs-hold``, ``customs-inspection``, ``customs-refused`` or ``carrier-hold``."""
    on: Reference
    since: int
    until: int | None
    """Release time (None: still held)."""
    origin: Source
    released_by: Source | None = None

    def active(self, at: int) -> bool:
        return self.since <= at and (self.until is None or at < self.until)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "on": self.on.to_json(), "since": iso_time(self.since),
                "by": self.origin.publisher}


@dataclass(frozen=True)
class Equipment:
    """What the tariff needs to know about a container."""

    size: str | None = None
    """``20``, ``40``, ``45`` or None (unknown)."""
    reefer: bool = False
    iso_code: str | None = None
    origin: Source | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the rules may read about one subject."""

    subject: Reference
    etas: tuple[EtaFact, ...] = ()
    """Vessels: every ETA, in receive order."""
    arrivals: tuple[Arrival, ...] = ()
    """Vessels: actual arrivals, in receive order."""
    temperatures: tuple[TempPoint, ...] = ()
    """Containers: measurements and set-point changes, by (time, order)."""
    stays: tuple[YardStay, ...] = ()
    """Containers: yard stays, oldest first."""
    holds: tuple[Hold, ...] = ()
    """Containers: holds on it and on the documents it travels under."""
    customs: tuple[Observed, ...] = ()
    """Any subject: its own actual CUSTOMS events, by (time, order)."""
    equipment: Equipment = Equipment()
    carrier: str | None = None
    """SCAC of its carrier, when known."""
    carrier_origin: str = ""
    """How the carrier was found: ``details``, ``document-prefix``, ``owner-code``."""
    documents: tuple[Reference, ...] = ()
    """Containers: the documents it travels under; documents: the containers they cover."""
    commodity: str | None = None
    """Containers: the latest ``details.commodity`` of its events or readings (lower case)."""


@dataclass
class _Builder:
    subject: Reference
    etas: list[EtaFact] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    temperatures: list[TempPoint] = field(default_factory=list)
    terminal_events: list[Observed] = field(default_factory=list)
    customs: list[Observed] = field(default_factory=list)
    carrier_events: list[Observed] = field(default_factory=list)
    own: list[Observed] = field(default_factory=list)
    links: set[Reference] = field(default_factory=set)
    reefer_seen: bool = False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if -200.0 < number < 200.0 else None


def temperature_point(values: dict[str, Any], time: int, order: int,
                      origin: Source) -> TempPoint:
    """A :class:`TempPoint` from a reading's values or a REEFER event's details."""
    setpoints = values.get("setpoints")
    raw_set = next((values[k] for k in ("setpoint", "setPoint", "set_point") if k in values),
                   setpoints.get("temperature") if isinstance(setpoints, dict) else None)
    temperature, setpoint = _number(values.get("temperature")), _number(raw_set)
    unit = str(values.get("unit") or values.get("temperatureUnit") or "CEL").upper()
    if unit in ("FAH", "F", "°F"):
        temperature = None if temperature is None else (temperature - 32.0) * 5.0 / 9.0
        setpoint = None if setpoint is None else (setpoint - 32.0) * 5.0 / 9.0
    mode = next((str(values[k]).lower() for k in ("mode", "operatingMode", "status")
                 if isinstance(values.get(k), str)), "")
    defrost = values.get("defrost") is True or mode == _DEFROST
    commodity = values.get("commodity")
    return TempPoint(time=time, order=order, temperature=temperature, setpoint=setpoint,
                     defrost=defrost,
                     commodity=commodity.strip().lower() if isinstance(commodity, str) else None,
                     origin=origin)


def iso_equipment(details: dict[str, Any]) -> str | None:
    """The ISO 6346 size-type code in an event's details, if any (upper case)."""
    for holder in (details, details.get("equipment")):
        if not isinstance(holder, dict):
            continue
        for key in ISO_KEYS:
            value = holder.get(key)
            if isinstance(value, str) and len(value.strip()) == 4 and value.strip().isalnum():
                return value.strip().upper()
    return None


def equipment_of(code: str) -> tuple[str | None, bool]:
    """(size, reefer) of an ISO 6346 size-type code."""
    size = ISO_SIZES.get(code[0])
    group = code[2:4]
    reefer = group[0] == "R" or (group.isdigit() and 30 <= int(group) <= 39)
    return size, reefer


def _vessel_of(event: CanonicalEvent) -> str | None:
    if event.subject.kind == "vessel":
        return event.subject.value
    vessel = event.details.get("vessel")
    if isinstance(vessel, dict) and isinstance(vessel.get("imo"), str):
        try:
            return identifiers.normalise("vessel", vessel["imo"])
        except identifiers.IdentifierError:
            return None
    return next((r.value for r in event.related if r.kind == "vessel"), None)


def _text(details: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = details.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().upper()
    return None


def _terminal(observed: Observed) -> str | None:
    details = observed.event.details
    found = _text(details, "terminal", "facilityCode")
    for nested in ("eventLocation", "transportCall"):
        holder = details.get(nested)
        if found is None and isinstance(holder, dict):
            found = _text(holder, "facilityCode")
    return found


def _without_retracted(events: Iterable[Observed]) -> list[Observed]:
    ordered = sorted(events, key=lambda o: o.order)
    retracted = {(o.publisher, str(o.event.retracts)) for o in ordered if o.event.retracts}
    return [o for o in ordered if (o.publisher, o.ref or str(o.order)) not in retracted]


_YARD_IN = {"TERMINAL.DISC", "TERMINAL.GTIN", "TERMINAL.AVPU"}
_YARD_OUT = {"TERMINAL.GTOT", "TERMINAL.LOAD"}


def yard_stays(terminal_events: list[Observed]) -> tuple[YardStay, ...]:
    """Stays from a container's actual TERMINAL events (any order in; by time out).

    A stay starts with a discharge, gate-in or availability while the container is not in the
    yard, and ends with a gate-out or load. Availability is the stay's first AVPU, else its
    discharge (a terminal that sends no AVPU); a stay entered by gate-in has none until an
    AVPU comes. An exit with no entry before it is ignored (the entry was not seen).
    """
    stays: list[YardStay] = []
    entry: Observed | None = None
    avpu: Observed | None = None
    for o in sorted(terminal_events, key=lambda o: (o.event.event_time, o.order)):
        kind = o.event.event_type
        if kind in _YARD_IN:
            if entry is None:
                entry, avpu = o, None
            if kind == "TERMINAL.AVPU" and avpu is None:
                avpu = o
        elif kind in _YARD_OUT and entry is not None:
            stays.append(_stay(entry, avpu, o))
            entry = avpu = None
    if entry is not None:
        stays.append(_stay(entry, avpu, None))
    return tuple(stays)


def _stay(entry: Observed, avpu: Observed | None, exit_: Observed | None) -> YardStay:
    available = avpu or (entry if entry.event.event_type == "TERMINAL.DISC" else None)
    first = available or entry
    terminal = _terminal(first) or _terminal(entry) or first.publisher.upper()
    return YardStay(entry=entry, available=available, exit=exit_, terminal=terminal)


_HOLD_OPEN = {"CUSTOMS.CUSH": "customs-hold", "CUSTOMS.CUSI": "customs-inspection",
              "CUSTOMS.CUSX": "customs-refused", "SHIPMENT.HOLD": "carrier-hold"}
_HOLD_CLOSE = {"CUSTOMS.CUSR": "customs", "SHIPMENT.RELS": "carrier"}


def hold_intervals(subject: Reference, events: list[Observed]) -> list[Hold]:
    """Holds on ``subject`` from its CUSTOMS and SHIPMENT.HOLD/RELS events (by time).

    Customs: a hold or inspection runs until CUSR; a refusal (CUSX) until a later CUSR.
    Carrier: SHIPMENT.HOLD until SHIPMENT.RELS. A repeated hold while held extends nothing.
    """
    holds: list[Hold] = []
    open_: dict[str, Hold] = {}
    for o in sorted(events, key=lambda o: (o.event.event_time, o.order)):
        kind = o.event.event_type
        if kind in _HOLD_OPEN:
            family = "carrier" if kind == "SHIPMENT.HOLD" else "customs"
            current = open_.get(family)
            label = _HOLD_OPEN[kind]
            if current is None or current.kind != label:
                if current is not None:
                    holds.append(Hold(current.kind, subject, current.since, o.event.event_time,
                                      current.origin, o.source))
                open_[family] = Hold(label, subject, o.event.event_time, None, o.source)
        elif kind in _HOLD_CLOSE:
            current = open_.pop(_HOLD_CLOSE[kind], None)
            if current is not None:
                holds.append(Hold(current.kind, subject, current.since, o.event.event_time,
                                  current.origin, o.source))
    holds.extend(open_.values())
    return holds


#: Families :func:`build_facts` reads whatever the event's details say.
_FACT_FAMILIES = frozenset({"REEFER", "TERMINAL", "CUSTOMS"})
_CARRIER_KEYS = ("carrier", "carrierCode", "carrierSCAC", "carrierSCACCode")


def adds_nothing(o: Observed, subject: Reference) -> bool:
    """Whether :func:`build_facts` takes nothing from ``o`` for the container ``subject``: an
    event on the box itself, not a retraction, of no family or type the facts read (reefer,
    terminal, customs, holds, arrivals), naming no document, with no equipment code, carrier
    or commodity in its details — an inspection, a stuffing, a seal change. The box's facts
    with it are its facts without it (the engine keeps them then, with what the rules worked
    out from them; ``tests/gateway/alerts/test_facts.py`` holds the two equal)."""
    e = o.event
    if subject.kind != "container" or e.subject != subject or e.retracts:
        return False
    kind = e.event_type
    if (e.family in _FACT_FAMILIES or kind in _HOLD_OPEN or kind in _HOLD_CLOSE
            or kind == "TRANSPORT.ARRI" or any(r.kind in DOCUMENT_KINDS for r in e.related)):
        return False
    details = e.details
    commodity = details.get("commodity")
    return (iso_equipment(details) is None and _text(details, *_CARRIER_KEYS) is None
            and not (isinstance(commodity, str) and commodity.strip()))


def build_facts(events: Iterable[Observed], readings: Iterable[Measured] = (),
                etas: Iterable[EtaFact] = ()) -> dict[Reference, Facts]:
    """The facts of every subject the events, readings and given ETAs speak of."""
    builders: dict[Reference, _Builder] = {}

    def of(ref: Reference) -> _Builder:
        found = builders.get(ref)
        if found is None:
            found = builders[ref] = _Builder(ref)
        return found

    hold_events: dict[Reference, list[Observed]] = defaultdict(list)
    for o in _without_retracted(events):
        e = o.event
        subject = e.subject
        kind = e.event_type
        of(subject)  # every subject named gets its facts, empty ones too (a withdrawal shows)
        if e.event_type == "TRANSPORT.ARRI":
            vessel = _vessel_of(e)
            if vessel is not None:
                target = of(Reference("vessel", vessel))
                if e.classifier == "ACT":
                    target.arrivals.append(Arrival(vessel, e.location, e.event_time, o.order,
                                                   o.source, o.received_at))
                else:
                    target.etas.append(EtaFact(vessel, e.location, e.event_time,
                                               o.publisher or "unknown", o.order, e.classifier,
                                               o.received_at, (o.source,)))
            continue
        if subject.kind == "container":
            b = of(subject)
            b.own.append(o)
            b.links.update(r for r in e.related if r.kind in DOCUMENT_KINDS)
            if e.family == "REEFER":
                b.reefer_seen = True
                b.temperatures.append(temperature_point(e.details, e.event_time, o.order,
                                                        o.source))
            elif e.family == "TERMINAL" and e.classifier == "ACT":
                b.terminal_events.append(o)
        elif subject.kind in DOCUMENT_KINDS:
            for r in e.related:
                if r.kind == "container":
                    of(r).links.add(subject)
                    of(subject).links.add(r)
        if e.classifier == "ACT" and (kind in _HOLD_OPEN or kind in _HOLD_CLOSE):
            hold_events[subject].append(o)
        if e.family == "CUSTOMS" and e.classifier == "ACT":
            of(subject).customs.append(o)

    positions: dict[str, list[Measured]] = defaultdict(list)
    for m in sorted(readings, key=lambda m: m.order):
        reading = m.reading
        if reading.subject is None:
            continue
        if reading.type == "reefer" and reading.subject.kind == "container":
            box = of(reading.subject)
            box.reefer_seen = True
            box.temperatures.append(temperature_point(reading.values, reading.time, m.order,
                                                      m.source))
        elif reading.type == "ais-position" and reading.subject.kind == "vessel":
            positions[reading.subject.value].append(m)

    for fact in etas:
        of(Reference("vessel", fact.vessel)).etas.append(fact)
    for vessel, seen in positions.items():
        ship = builders.get(Reference("vessel", vessel))
        if ship is not None:
            ship.etas.extend(_ais_etas(ship, seen))

    holds = {ref: hold_intervals(ref, found) for ref, found in hold_events.items()}
    return {ref: _freeze(b, holds) for ref, b in builders.items()}


def _ais_etas(b: _Builder, seen: list[Measured]) -> list[EtaFact]:
    """AIS-derived ETAs of the vessel's current call: from its first and latest positions
    received after the port of call was first named (and after its last arrival there)."""
    named = [f for f in b.etas if f.classifier != "AIS" and f.port]
    if not named:
        return []
    port = max(named, key=lambda f: f.order).port
    arrived = max((a.order for a in b.arrivals if a.port == port), default=-1)
    first_named = min((f.order for f in named if f.port == port and f.order > arrived),
                      default=None)
    if first_named is None:
        return []
    after = sorted((m for m in seen if m.order > first_named),
                   key=lambda m: (m.reading.time, m.order))
    out = []
    for m in after[:1] + after[1:][-1:]:
        estimate = ais_eta(m.reading.values, m.reading.time, port)
        if estimate is None or estimate.get("atPort"):
            continue
        eta = parse_time(estimate["time"])
        out.append(EtaFact(b.subject.value, port, eta, AIS_SOURCE, m.order, "AIS",
                           m.reading.time, (m.source,)))
    return out


def _freeze(b: _Builder, holds: dict[Reference, list[Hold]]) -> Facts:
    equipment = Equipment(reefer=b.reefer_seen)
    carrier: str | None = None
    carrier_origin = ""
    commodity = next((p.commodity for p in sorted(b.temperatures, key=lambda p: p.order,
                                                   reverse=True) if p.commodity), None)
    for o in sorted(b.own, key=lambda o: o.order):
        code = iso_equipment(o.event.details)
        if code is not None:
            size, reefer = equipment_of(code)
            equipment = Equipment(size=size, reefer=reefer or b.reefer_seen, iso_code=code,
                                  origin=o.source)
        said = _text(o.event.details, *_CARRIER_KEYS)
        if said is not None:
            carrier, carrier_origin = said, "details"
        stated = o.event.details.get("commodity")
        if isinstance(stated, str) and stated.strip() and o.event.family != "REEFER":
            commodity = stated.strip().lower()
    documents = tuple(sorted(b.links, key=lambda r: (r.kind, r.value)))
    if carrier is None and b.subject.kind == "container":
        for ref in documents:
            known = identifiers.carrier_of(ref.value) if ref.kind in ("mbl", "booking") else None
            if known is not None:
                carrier, carrier_origin = known.scac, "document-prefix"
                break
        else:
            known = identifiers.carrier_of(b.subject.value)
            if known is not None:
                carrier, carrier_origin = known.scac, "owner-code"
    applying = list(holds.get(b.subject, []))
    if b.subject.kind == "container":
        for ref in documents:
            applying.extend(holds.get(ref, []))
    return Facts(
        subject=b.subject,
        etas=tuple(sorted(b.etas, key=lambda f: f.order)),
        arrivals=tuple(sorted(b.arrivals, key=lambda a: a.order)),
        temperatures=tuple(sorted(b.temperatures, key=lambda p: (p.time, p.order))),
        stays=yard_stays(b.terminal_events),
        holds=tuple(sorted(applying, key=lambda h: (h.since, h.kind, h.on.value))),
        customs=tuple(sorted(b.customs, key=lambda o: (o.event.event_time, o.order))),
        equipment=equipment,
        carrier=carrier,
        carrier_origin=carrier_origin,
        documents=documents,
        commodity=commodity,
    )
