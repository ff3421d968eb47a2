"""SIMULATED UN/EDIFACT: the demo terminal's CODECO and COARRI, the carrier's COPARN and IFTSTA.

Nothing written here is real traffic. Every interchange says so where EDIFACT has room for it,
in its header: the ``UNB`` sender identification starts with ``SIMULATED`` (the writers refuse
any other). The messages follow SMDG practice as :mod:`gateway.feeds.edifact_messages` reads
it (D.95B directory): gate in ``BGM+34`` / out ``BGM+36``, discharge report ``BGM+44`` /
loading report ``BGM+46``, release order ``BGM+12``, IFTSTA statuses with UN/ECE Rec. 24 codes.
They are written with pydifact's serializer (:class:`pydifact.segmentcollection.Interchange`),
which escapes the service characters and counts ``UNT`` and ``UNZ``; a ``UNA`` heads each
interchange. Times are written as the port's local time without a zone (``DTM`` format 203),
as terminals do; ``utc_offset`` says which (Hong Kong, UTC+8, by default: the adapter's
default too).

:func:`benchmark_coarri` writes one discharge report of many containers (10,000 by default)
for the adapter's throughput benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pydifact.control.characters import Characters
from pydifact.segmentcollection import Interchange, Message
from pydifact.segments import Segment

from devnet.simulate import container_number, imo_number

#: Hong Kong's offset from UTC, in seconds: the default local time of the messages.
HONG_KONG = 8 * 3600

#: The service characters written in each ``UNA`` (decimal point ``.``).
_CHARACTERS = ":+.? '"

#: UN/EDIFACT directory and SMDG association code of each message written.
_VERSIONS: dict[str, list[str]] = {
    "CODECO": ["CODECO", "D", "95B", "UN", "ITG14"],
    "COARRI": ["COARRI", "D", "95B", "UN", "ITG13"],
    "COPARN": ["COPARN", "D", "95B", "UN", "SMDG16"],
    "IFTSTA": ["IFTSTA", "D", "95B", "UN"],
}


class SimulatedEdifactError(ValueError):
    """A writer was asked for something it cannot write (e.g. a sender not marked SIMULATED)."""


@dataclass(frozen=True)
class Vessel:
    """The vessel and voyage a message names (``TDT+20``)."""

    imo: str
    name: str
    voyage: str
    carrier: str = "PCOL"
    """The operating carrier's code (``TDT`` C040)."""


@dataclass(frozen=True)
class Container:
    """One container's line in a message (an ``EQD`` group)."""

    number: str
    """ISO 6346 container number."""
    iso_type: str = "45G1"
    full: bool = True
    bill_of_lading: str = ""
    booking: str = ""
    seals: tuple[str, ...] = ()
    gross_kg: int | None = None
    stowage_cell: str = ""
    """Bay/row/tier on board (COARRI ``LOC+147``)."""
    port_of_loading: str = ""
    port_of_discharge: str = ""
    setpoint: float | None = None
    """Reefer temperature setting, °C (``TMP+2``)."""
    truck: str = ""
    """The truck of a gate move (CODECO ``TDT+1``)."""
    direction: str = "import"
    """``import``, ``export`` or ``transhipment`` (``EQD`` equipment status 3, 2, 6)."""


@dataclass(frozen=True)
class Status:
    """One IFTSTA status of a bill of lading's consignment."""

    code: str
    """UN/ECE Rec. 24 status event code (e.g. ``1`` arrived, ``29`` discharged, ``78``
    released)."""
    time: int
    """When, Unix seconds."""
    location: str
    """UN/LOCODE where."""
    containers: tuple[str, ...] = ()


_DIRECTIONS = {"export": "2", "import": "3", "transhipment": "6"}


def _local(seconds: int, offset: int, fmt: str = "%Y%m%d%H%M") -> str:
    return datetime.fromtimestamp(seconds, timezone(timedelta(seconds=offset))).strftime(fmt)


def _number(value: float) -> str:
    return f"{value:.1f}" if not float(value).is_integer() else str(int(value))


def _interchange(sender: str, recipient: str, reference: str, prepared_at: int,
                 offset: int) -> Interchange:
    if not sender.startswith("SIMULATED"):
        raise SimulatedEdifactError(f"sender {sender!r}: a simulated interchange's UNB sender "
                                    "starts with SIMULATED")
    when = datetime.fromtimestamp(prepared_at, timezone(timedelta(seconds=offset)))
    interchange = Interchange(sender=[sender, "ZZZ"], recipient=[recipient, "ZZZ"],
                              control_reference=reference, syntax_identifier=("UNOC", 3),
                              timestamp=when.replace(tzinfo=None),
                              characters=Characters.from_str(_CHARACTERS))
    interchange.has_una_segment = True
    return interchange


def _text(interchange: Interchange) -> bytes:
    return interchange.serialize(break_lines=True).encode()


def _vessel(vessel: Vessel) -> Segment:
    return Segment("TDT", "20", vessel.voyage, "1", "", [vessel.carrier, "172", "20"], "", "",
                   [vessel.imo, "146", "11", vessel.name])


def _equipment(container: Container, message: Message, *, when: int, qualifier: str,
               offset: int) -> None:
    """Add ``container``'s EQD group to ``message`` (event time as ``DTM+qualifier``)."""
    message.add_segment(Segment(
        "EQD", "CN", container.number, [container.iso_type, "102", "5"], "",
        _DIRECTIONS[container.direction], "5" if container.full else "4"))
    if container.bill_of_lading:
        message.add_segment(Segment("RFF", ["BM", container.bill_of_lading]))
    if container.booking:
        message.add_segment(Segment("RFF", ["BN", container.booking]))
    message.add_segment(Segment("DTM", [qualifier, _local(when, offset), "203"]))
    if container.stowage_cell:
        message.add_segment(Segment("LOC", "147", [container.stowage_cell, "", "5"]))
    if container.port_of_loading:
        message.add_segment(Segment("LOC", "9", [container.port_of_loading, "139", "6"]))
    if container.port_of_discharge:
        message.add_segment(Segment("LOC", "11", [container.port_of_discharge, "139", "6"]))
    if container.gross_kg is not None:
        message.add_segment(Segment("MEA", "AAE", "G", ["KGM", str(container.gross_kg)]))
    if container.setpoint is not None:
        message.add_segment(Segment("TMP", "2", [_number(container.setpoint), "CEL"]))
    for seal in container.seals:
        message.add_segment(Segment("SEL", seal, "CA"))


def codeco(moves: Sequence[tuple[Container, int]], *, gate: str, place: str,
           prepared_at: int, vessel: Vessel | None = None, facility: str = "",
           reference: str = "1", sender: str = "SIMULATED-TERMINAL",
           recipient: str = "PORTLEDGER", utc_offset: int = HONG_KONG) -> bytes:
    """A SIMULATED CODECO gate report: one message, one ``EQD`` group per move.

    Parameters
    ----------
    moves : sequence of (Container, int)
        Each container and the Unix time it passed the gate (``DTM+7``).
    gate : str
        ``in`` (``BGM+34``) or ``out`` (``BGM+36``).
    place : str
        UN/LOCODE of the terminal (``LOC+165``); ``facility`` its terminal code.
    prepared_at : int
        The interchange's preparation time (``UNB``), Unix seconds.
    vessel : Vessel, optional
        The vessel the containers came off or go on (``TDT+20``).

    Returns
    -------
    bytes
        The interchange, ``'`` and a line break after each segment.
    """
    if gate not in ("in", "out"):
        raise SimulatedEdifactError(f"gate is 'in' or 'out', not {gate!r}")
    interchange = _interchange(sender, recipient, reference, prepared_at, utc_offset)
    message = Message(reference, _VERSIONS["CODECO"])
    message.add_segment(Segment("BGM", "34" if gate == "in" else "36", f"GATE{reference}", "9"))
    if vessel is not None:
        message.add_segment(_vessel(vessel))
    message.add_segment(Segment("NAD", "MS", [sender, "160", "ZZZ"]))
    for container, when in moves:
        _equipment(container, message, when=when, qualifier="7", offset=utc_offset)
        message.add_segment(Segment("LOC", "165", [place, "139", "6"],
                                    *([[facility, "TER", "ZZZ"]] if facility else [])))
        if container.truck:
            message.add_segment(Segment("TDT", "1", "", "3", "31", "", "", "",
                                        [container.truck, "146", "ZZZ"]))
    message.add_segment(Segment("CNT", ["16", str(len(moves))]))
    interchange.add_message(message)
    return _text(interchange)


def coarri(moves: Sequence[tuple[Container, int]], *, operation: str, port: str,
           vessel: Vessel, prepared_at: int, reference: str = "1",
           sender: str = "SIMULATED-TERMINAL", recipient: str = "PORTLEDGER",
           utc_offset: int = HONG_KONG) -> bytes:
    """A SIMULATED COARRI: a discharge (``BGM+44``) or loading (``BGM+46``) report.

    Parameters
    ----------
    moves : sequence of (Container, int)
        Each container and the Unix time it was discharged or loaded (``DTM+203``).
    operation : str
        ``discharge`` or ``load``.
    port : str
        UN/LOCODE of the port of the call: the message's port of discharge (``LOC+11``) of a
        discharge report, its port of loading (``LOC+9``) of a loading report.
    """
    if operation not in ("discharge", "load"):
        raise SimulatedEdifactError(f"operation is 'discharge' or 'load', not {operation!r}")
    interchange = _interchange(sender, recipient, reference, prepared_at, utc_offset)
    message = Message(reference, _VERSIONS["COARRI"])
    discharge = operation == "discharge"
    message.add_segment(Segment("BGM", "44" if discharge else "46", f"COARRI{reference}", "9"))
    message.add_segment(_vessel(vessel))
    message.add_segment(Segment("LOC", "11" if discharge else "9", [port, "139", "6"]))
    message.add_segment(Segment("NAD", "CF", [vessel.carrier, "172", "20"]))
    for container, when in moves:
        _equipment(container, message, when=when, qualifier="203", offset=utc_offset)
    message.add_segment(Segment("CNT", ["16", str(len(moves))]))
    interchange.add_message(message)
    return _text(interchange)


def coparn(releases: Sequence[Container], *, bill_of_lading: str, issued_at: int,
           place: str, vessel: Vessel | None = None, valid_until: int | None = None,
           reference: str = "1", sender: str = "SIMULATED-CARRIER",
           recipient: str = "PORTLEDGER", utc_offset: int = HONG_KONG) -> bytes:
    """A SIMULATED COPARN release order (``BGM+12``): the carrier releases ``releases`` to
    whoever holds ``bill_of_lading`` for pick-up at ``place`` (UN/LOCODE, ``LOC+165``)."""
    interchange = _interchange(sender, recipient, reference, issued_at, utc_offset)
    message = Message(reference, _VERSIONS["COPARN"])
    message.add_segment(Segment("BGM", "12", f"REL{reference}", "9"))
    message.add_segment(Segment("DTM", ["137", _local(issued_at, utc_offset), "203"]))
    if valid_until is not None:
        message.add_segment(Segment("DTM", ["400", _local(valid_until, utc_offset), "203"]))
    message.add_segment(Segment("RFF", ["BM", bill_of_lading]))
    if vessel is not None:
        message.add_segment(_vessel(vessel))
    message.add_segment(Segment("LOC", "165", [place, "139", "6"]))
    message.add_segment(Segment("NAD", "CF", [vessel.carrier if vessel else "PCOL", "160",
                                              "20"]))
    for container in releases:
        message.add_segment(Segment(
            "EQD", "CN", container.number, [container.iso_type, "102", "5"], "",
            _DIRECTIONS[container.direction], "5" if container.full else "4"))
        message.add_segment(Segment("EQN", "1"))
    message.add_segment(Segment("CNT", ["16", str(len(releases))]))
    interchange.add_message(message)
    return _text(interchange)


def iftsta(statuses: Sequence[Status], *, bill_of_lading: str, prepared_at: int,
           vessel: Vessel | None = None, reference: str = "1",
           sender: str = "SIMULATED-CARRIER", recipient: str = "PORTLEDGER",
           utc_offset: int = HONG_KONG) -> bytes:
    """A SIMULATED IFTSTA: one consignment (``CNI``, the B/L in ``RFF+BM``), one ``STS``
    group per status, its containers in ``EQD`` and the vessel in ``TDT+20``."""
    interchange = _interchange(sender, recipient, reference, prepared_at, utc_offset)
    message = Message(reference, _VERSIONS["IFTSTA"])
    message.add_segment(Segment("BGM", "77", f"STA{reference}", "9"))
    message.add_segment(Segment("DTM", ["137", _local(prepared_at, utc_offset), "203"]))
    message.add_segment(Segment("CNI", "1", bill_of_lading))
    for status in statuses:
        message.add_segment(Segment("STS", "1", status.code))
        message.add_segment(Segment("RFF", ["BM", bill_of_lading]))
        message.add_segment(Segment("DTM", ["334", _local(status.time, utc_offset), "203"]))
        message.add_segment(Segment("LOC", "175", [status.location, "139", "6"]))
        if vessel is not None:
            message.add_segment(_vessel(vessel))
        for number in status.containers:
            message.add_segment(Segment("EQD", "CN", number))
    interchange.add_message(message)
    return _text(interchange)


def benchmark_coarri(containers: int = 10_000, *, seed: int = 0,
                     prepared_at: int = 1_790_000_000, port: str = "HKHKG") -> bytes:
    """A SIMULATED discharge report of ``containers`` containers in one message.

    Reproducible from ``seed``: container numbers (valid ISO 6346), B/Ls, weights, seals,
    stowage cells and reefer set points (one container in ten) come from a
    :class:`random.Random`.
    """
    rng = random.Random(seed)
    vessel = Vessel(imo_number(rng.randrange(100_000)), "BENCHMARK EXPRESS (SIMULATED)",
                    "001S", "PCOL")
    moves: list[tuple[Container, int]] = []
    for i in range(containers):
        reefer = i % 10 == 0
        moves.append((Container(
            number=container_number(rng.choice(("PCOU", "MSKU", "TGHU", "CSQU")),
                                    rng.randrange(1_000_000)),
            iso_type="45R1" if reefer else rng.choice(("22G1", "45G1", "42G1")),
            bill_of_lading=f"PCOLSIM{rng.randrange(10**8):08d}",
            seals=(f"SIM{rng.randrange(10**7):07d}",),
            gross_kg=rng.randrange(3000, 30_000),
            stowage_cell=f"{rng.randrange(1, 60):03d}{rng.randrange(20):02d}"
                         f"{rng.choice((2, 4, 6, 82, 84, 86)):02d}",
            port_of_loading="CNSHA",
            setpoint=-18.0 if reefer else None,
        ), prepared_at - 3600 + i % 3600))
    return coarri(moves, operation="discharge", port=port, vessel=vessel,
                  prepared_at=prepared_at, reference="BENCH1")
