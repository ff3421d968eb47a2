"""SIMULATED Cargo-IMP FSU messages: an air waybill's status sequence, as an airline sends it.

The demo's air shipment speaks Cargo-IMP like a real carrier's system: one FSU/14 message per
milestone, each in its own Type-B envelope (SOH, the ``QK`` address line, the origin line with
the day/hour/minute it was sent, STX, the message, ETX), CRLF lines::

    <SOH>QK AMSFMKL
    .HKGFMCX 150930
    <STX>FSU/14
    160-12345675HKGAMS/T2K505.0
    DEP/CX0271/15MAR/HKGAMS/T2K505.0/A1930/E0610-N
    OSI/SIMULATED PORTLEDGER DEMO<ETX>

The sequence is BKD → RCS → MAN → DEP → ARR → RCF → NFD → DLV (:data:`SEQUENCE`), at times
derived from the flight's departure and block time. Every message says ``SIMULATED`` in its
``OSI`` line, and times are the wall clock of the given datetimes (Cargo-IMP times are local
at the airport; the demo uses one clock). :func:`gateway.feeds.cargo_imp.parse` reads every
message back (the tests round-trip them). Nothing here is real traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.events import identifiers

#: The milestones written, in order.
SEQUENCE: tuple[str, ...] = ("BKD", "RCS", "MAN", "DEP", "ARR", "RCF", "NFD", "DLV")

#: What every simulated message carries in its OSI line.
LABEL = "SIMULATED PORTLEDGER DEMO"

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class AirShipment:
    """The SIMULATED air waybill and its flight."""

    awb: str
    """Air waybill, ``nnn-nnnnnnnn`` with a valid check digit, e.g. ``160-12345675``."""
    origin: str
    """IATA airport of departure, e.g. ``HKG``."""
    destination: str
    """IATA airport of arrival, e.g. ``AMS``."""
    flight: str
    """Carrier and flight number, e.g. ``CX0271``."""
    pieces: int
    weight_kg: float
    consignee: str = "SIMULATED CONSIGNEE"
    sender: str = "HKGFMCX"
    """Type-B address of the sending system (7 characters)."""
    addressee: str = "AMSFMKL"
    """Type-B address it is sent to (7 characters)."""

    def __post_init__(self) -> None:
        identifiers.normalise_awb(self.awb)  # refuses a waybill the parser would flag


@dataclass(frozen=True)
class SimulatedStatus:
    """One milestone of the sequence: its code, when it happened, the message that says so."""

    code: str
    at: datetime
    """The wall clock of the status (naive or UTC; written as Cargo-IMP local time)."""
    message: str
    """The whole Type-B wrapped FSU, CRLF lines."""


def sequence(shipment: AirShipment, departure: datetime, *,
             block: timedelta = timedelta(hours=12, minutes=40)) -> list[SimulatedStatus]:
    """The FSU messages of a shipment flying at ``departure`` for ``block`` hours.

    Parameters
    ----------
    shipment : AirShipment
        The waybill, airports and flight.
    departure : datetime
        Actual departure (wall clock at the origin; whole minutes).
    block : timedelta
        Departure to arrival.

    Returns
    -------
    list of SimulatedStatus
        One per code of :data:`SEQUENCE`, in order.
    """
    departure = departure.replace(second=0, microsecond=0)
    arrival = departure + block
    times = {
        "BKD": departure, "RCS": departure - timedelta(hours=7),
        "MAN": departure, "DEP": departure, "ARR": arrival,
        "RCF": arrival + timedelta(minutes=95), "NFD": arrival + timedelta(hours=3),
        "DLV": arrival + timedelta(hours=20),
    }
    # BKD is sent before the goods come in, MAN just before departure: when each is *sent*
    sent = {**times, "BKD": departure - timedelta(days=2), "MAN": departure - timedelta(hours=2)}
    return [SimulatedStatus(code, times[code],
                            _wrap(shipment, sent[code], _fsu(shipment, code, times[code],
                                                             departure, arrival)))
            for code in SEQUENCE]


def write(statuses: list[SimulatedStatus]) -> bytes:
    """The messages as one file, in order (what a file drop or a feed push sends)."""
    return "".join(status.message for status in statuses).encode("ascii")


def _fsu(shipment: AirShipment, code: str, at: datetime, departure: datetime,
         arrival: datetime) -> list[str]:
    quantity = f"T{shipment.pieces}K{shipment.weight_kg:.1f}"
    route = f"{shipment.origin}{shipment.destination}"
    flight_day = _date(departure)
    arrival_change = _day_change(departure, arrival)
    status = {
        "BKD": f"BKD/{shipment.flight}/{flight_day}/{route}/{quantity}"
               f"/S{_clock(departure)}/S{_clock(arrival)}{arrival_change}",
        "RCS": f"RCS/{_date(at)}{_clock(at)}/{shipment.origin}/{quantity}/SIMULATED SHIPPER",
        "MAN": f"MAN/{shipment.flight}/{flight_day}/{route}/{quantity}"
               f"/S{_clock(departure)}/S{_clock(arrival)}{arrival_change}",
        "DEP": f"DEP/{shipment.flight}/{flight_day}/{route}/{quantity}"
               f"/A{_clock(departure)}/E{_clock(arrival)}{arrival_change}",
        # RCF and ARR carry the scheduled arrival day, the actual time and its day change
        "ARR": f"ARR/{shipment.flight}/{_date(arrival)}{_clock(at)}{_day_change(arrival, at)}"
               f"/{shipment.destination}/{quantity}",
        "RCF": f"RCF/{shipment.flight}/{_date(arrival)}{_clock(at)}{_day_change(arrival, at)}"
               f"/{shipment.destination}/{quantity}",
        "NFD": f"NFD/{_date(at)}{_clock(at)}/{shipment.destination}/{quantity}"
               f"/{shipment.consignee[:35]}",
        "DLV": f"DLV/{_date(at)}{_clock(at)}/{shipment.destination}/{quantity}"
               f"/{shipment.consignee[:35]}",
    }[code]
    return ["FSU/14", f"{shipment.awb}{route}/{quantity}", status, f"OSI/{LABEL}"]


def _wrap(shipment: AirShipment, sent: datetime, lines: list[str]) -> str:
    envelope = [f"\x01QK {shipment.addressee}",
                f".{shipment.sender} {sent.day:02d}{sent.hour:02d}{sent.minute:02d}"]
    return "\r\n".join(envelope + ["\x02" + lines[0], *lines[1:]]) + "\x03\r\n"


def _date(moment: datetime) -> str:
    return f"{moment.day:02d}{_MONTHS[moment.month - 1]}"


def _clock(moment: datetime) -> str:
    return f"{moment.hour:02d}{moment.minute:02d}"


def _day_change(scheduled: datetime, actual: datetime) -> str:
    """Cargo-IMP's day change indicator of ``actual`` against ``scheduled``'s day."""
    days = (actual.date() - scheduled.date()).days
    codes = {-1: "-P", 0: "", 1: "-N", 2: "-S", 3: "-T"}
    if days not in codes:
        raise ValueError(f"{days} days apart: the simulation writes -1..+3 day changes")
    return codes[days]
