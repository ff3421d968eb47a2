"""IATA Cargo-IMP FSU and FWB messages → canonical ``AIR.*`` events (pure; our own parser).

Airlines and handlers still send air cargo status as Cargo-IMP text: ``FSU`` (status update)
for each milestone of an air waybill and ``FWB`` (air waybill data) when the waybill is made.
No kept Python library reads them, so this module does, from the Cargo-IMP Manual's message
specifications (FSA/FSU and FWB chapters; the FSU's layout *is* the FSA's, one status per
message) and the public samples in ``tests/data/cargo-imp``.

Layout
------
A message is CRLF (or LF) lines of at most 69 characters, fields ``/``-separated. Line 1 is the
message identifier and version (``FSU/14``); line 2 the consignment detail; every other line
starts with a three-letter line identifier (``DEP``, ``OCI``, ``RTG``...) or with ``/``, which
continues the line above. A file may hold several messages, each usually in a Type-B envelope::

    <SOH>QD SIN05XH                 priority and 7-character addresses (more may follow,
                                    7-character addresses only, on the next lines)
    .HDQFMQR 200739                 origin address, day/hour/minute it was sent (UTC)
    <STX>FSU/14
    157-53806270HKGNLU/P2K505.0T10  AWB, origin, destination, T(otal)/P(art), pieces, K/L, weight
    DEP/QR8403/20JUN/DOHHKG/P2K505.0/A1039/E0530-N<ETX>

SOH/STX/ETX are optional; ETX, the next envelope or the next message identifier ends a message.
Lines outside any message are reported (``unexpected-line``) and do not stop the others.
Messages of other Cargo-IMP types (``FFM``, ``FHL``, ``FSA``...) are refused whole
(``unsupported-message``).

FSU status lines
----------------
Fields per status code (``[...]`` optional; ``qty`` is ``T|P`` + pieces [+ ``K|L`` + weight];
``time`` is ``A|E|S`` (actual, estimated, scheduled) + ``hhmm`` [+ ``-`` day change]; ``date``
is ``ddMMM`` [+ ``hhmm``] [+ ``-`` day change]; ``flt`` is carrier + number, may be empty)::

    RCS FOH          date/airport[/qty][/name]          + continuation /volume[DGn]
    RCT              carrier/date/airport[/qty]         + continuation /receiving carrier/name
    TFD              carrier/date/airport[/qty][/ref]   + continuation /transferring carrier/name
    BKD              flt/date/FROMTO[/qty][/dep time][/arr time][/volume]
    MAN DEP PRE      flt/date/FROMTO[/qty][/dep time][/arr time]
    RCF ARR          flt/date/airport[/qty][/dep time][/arr time]
    AWR              flt/date/airport[/qty]
    NFD AWD DLV DDL  date/airport[/qty][/name]
    CCD              date/airport[/qty]
    DIS              flt/date/airport/discrepancy code[/qty]

Each status line is one event ``AIR.<code>`` (classifier ``ACT``: an FSU reports a status
that has been recorded), subject the air waybill (``Reference("awb")``, mod-7 check digit
verified: a wrong one is flagged in ``details.flags``, the event kept). Its location is the
status airport's UN/LOCODE from :data:`AIRPORT_LOCODES` (the departure airport for BKD, MAN,
DEP, PRE; the arrival airport for RCF, ARR, AWR); an airport outside that small table leaves
the location empty and stays in ``details``. ``FIW``, ``FOW``, ``TRM``, ``DPU``, ``CRC``,
``TGC`` and ``DOC`` lines are attributes (``details.attributes``: code and raw fields), not
events; ``OCI`` lines (other customs, security and regulatory information: country, information
identifier, control identifier, text, one entry per continuation line), ``ULD`` and ``OSI``
lines are read into ``details.oci``, ``details.uld`` and ``details.osi`` of every event of the
message. An FSU with attribute lines only gives no event (counted in ``stats``).

Times
-----
Cargo-IMP dates have no year and times are local at the airport (Manual, note GEN2), without
a UTC offset. The year is the one that puts the moment nearest ``received_at`` (a December
status received in January is last year's). The local wall clock is read *as if it were
UTC*: ``event_time`` is off by the airport's offset, and ``details.localTime`` says so by
giving the wall clock itself. A flight status's time is its departure (or, for RCF/ARR/AWR,
the line's own) time, else 00:00 of the date; a day change indicator moves it by its days
(``P`` -1, ``N`` +1, ``S`` +2, ``T`` +3, ``A``..``L`` +4..+15). A BKD, MAN, DEP or PRE may
leave the flight's date empty (``PRE///CDGHKG``): its time is then ``received_at``.

FWB → one AIR.BKD event
-----------------------
An FWB is the waybill's master data, not a milestone, and the canonical model has no
"waybill issued" event. It maps to ``AIR.BKD`` (classifier ``ACT``): the waybill exists
because the consignment was booked between its origin and destination, BKD is the first
milestone of the air waybill view, and IATA's ONE Record (X)FSU mapping adds a BKD status on
the shipment "when the Waybill and Shipment objects are created". Its time is the execution
date (``ISU`` line, ``ddMMMyy``), else ``received_at``; its location the origin airport's.
``details.waybill`` holds pieces, weight and unit, volume, origin, destination, routing
(``RTG``), flights (``FLT``), shipper and consignee names (``SHP``/``CNE``: the ``NAM`` line or
the first continuation line), goods description (``RTD`` ``/NG/`` or ``/NC/`` lines, joined by
spaces: Cargo-IMP cuts them at 20 characters, so a word can show split), special handling
codes (``SPH``) and the execution date and place. Free text is truncated so that ``details``
stays within the canonical 2,048 bytes. Other FWB lines (rates, charges, accounting) are read
past; a line that is neither an identifier nor a continuation refuses the message.

All or nothing
--------------
A message whose lines do not all read gives its errors (each with its line number) and no
events; the file's other messages are unaffected. Each event's key is derived from the
message's own lines (without the envelope), so a re-sent message is recognised.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cargo import EVENT_TYPES
from gateway.events.model import MAX_DETAILS_BYTES, CanonicalEvent, Reference
from gateway.feeds.model import (
    MAX_FEED_BYTES,
    FeedError,
    MessageError,
    ParsedEvent,
    ParseResult,
    checked,
    message_key,
    not_this_format,
    reference,
    text_lines,
)

FORMAT = "cargo-imp"

#: FSU status codes that are canonical events (``AIR.<code>``), in the model's order.
STATUS_CODES: tuple[str, ...] = tuple(
    name.split(".", 1)[1] for name in EVENT_TYPES if name.startswith("AIR.")
)

#: Status-like FSU lines kept as attributes of the message's events, not events.
ATTRIBUTE_CODES: tuple[str, ...] = ("FIW", "FOW", "TRM", "DPU", "CRC", "TGC", "DOC")

#: IATA airport → UN/LOCODE of the place it serves. Small on purpose: an airport outside it
#: leaves an event's location empty (the airport stays in ``details``). Several airports of a
#: city share the city's code (PVG and SHA → CNSHA, NRT and HND → JPTYO, LHR → GBLON).
AIRPORT_LOCODES: dict[str, str] = {
    "AMS": "NLAMS", "ANC": "USANC", "ATL": "USATL", "BKK": "THBKK", "BOM": "INBOM",
    "BRU": "BEBRU", "BSL": "CHBSL", "CAN": "CNCAN", "CDG": "FRPAR", "CMB": "LKCMB",
    "DEL": "INDEL", "DOH": "QADOH", "DXB": "AEDXB", "FRA": "DEFRA", "HGH": "CNHGH",
    "HKG": "HKHKG", "HND": "JPTYO", "ICN": "KRINC", "JFK": "USNYC", "KIX": "JPOSA",
    "LAX": "USLAX", "LGG": "BELGG", "LHR": "GBLON", "LUX": "LULUX", "MEX": "MXMEX",
    "MIA": "USMIA", "MUC": "DEMUC", "NRT": "JPTYO", "ORD": "USCHI", "PEK": "CNBJS",
    "PVG": "CNSHA", "RUH": "SARUH", "SHA": "CNSHA", "SIN": "SGSIN", "SZX": "CNSZX",
    "TPE": "TWTPE", "VIE": "ATVIE", "ZRH": "CHZRH",
}

#: Day change indicator → days (Cargo-IMP code list "Day Change Indicators").
DAY_CHANGE: dict[str, int] = {"P": -1, "N": 1, "S": 2, "T": 3} | {
    letter: 4 + i for i, letter in enumerate("ABCDEFGHIJKL")
}

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_SNIFF = re.compile(rb"(?m)^[\x01\x02]?(?:FSU|FWB)/\d{1,3}[ \t]*\r?$")
_MESSAGE_ID = re.compile(r"([A-Z]{3})/(\d{1,3})")

#: Cargo-IMP message identifiers (the Manual's chapters): a line ``<one of them>/<version>``
#: starts a message; only FSU and FWB are read, the others are refused whole.
MESSAGE_TYPES = frozenset({
    "CAC", "CIR", "CSI", "CSN", "DCM", "FAC", "FAD", "FAI", "FAR", "FAS", "FBL", "FBR", "FBV",
    "FCA", "FCB", "FCC", "FCI", "FCR", "FCV", "FDA", "FDD", "FFA", "FFM", "FFR", "FFT", "FHL",
    "FMA", "FMB", "FMC", "FMR", "FMX", "FNA", "FOA", "FOR", "FPA", "FPM", "FPR", "FPU", "FQA",
    "FQR", "FRA", "FRP", "FRR", "FSA", "FSB", "FSL", "FSR", "FSU", "FTA", "FTR", "FUA", "FUM",
    "FUR", "FVA", "FVR", "FWB", "FWC", "FWR", "FXX", "FYT", "FZA", "FZB", "FZC", "FZD", "FZE",
    "MAM", "MLD", "SBA", "SBR", "SCI", "SPA", "SPR", "SPX", "SSU", "STA", "STM", "STR",
})
_ADDRESS = re.compile(r"(Q[A-Z]|[A-Z]{2}) [A-Z0-9]{7}(?: [A-Z0-9]{7})*")
_MORE_ADDRESSES = re.compile(r"[A-Z0-9]{7}(?: [A-Z0-9]{7})*")
_ORIGIN = re.compile(r"\.([A-Z0-9]{7})(?: (\d{6}))?(?: .*)?")
_LINE_ID = re.compile(r"([A-Z]{3})(/.*)?")
_AWB = r"(\d{3}-\d{8})"
_NUMBER = r"(\d{1,7}(?:\.\d{1,3})?)"
_FSU_CONSIGNMENT = re.compile(
    _AWB + r"(?:([A-Z]{3})([A-Z]{3}))?(?:/([TP])(\d{1,4})(?:([KL])" + _NUMBER + r")?"
    r"(?:T(\d{1,4}))?)?")
_FWB_CONSIGNMENT = re.compile(
    _AWB + r"([A-Z]{3})([A-Z]{3})/T(\d{1,4})([KL])" + _NUMBER
    + r"(?:(MC|CC|CF|CI)(\d{1,9}(?:\.\d{1,3})?))?(?:DG(\d{1,2}))?")
_FLIGHT = re.compile(r"([A-Z0-9]{2})(\d{1,4}[A-Z]?)")
_CARRIER = re.compile(r"[A-Z0-9]{2}")
_DATE = re.compile(r"(\d{2})([A-Z]{3})(\d{4})?(?:-([A-Z]))?")
_AIRPORT = re.compile(r"[A-Z]{3}")
_SEGMENT = re.compile(r"([A-Z]{3})([A-Z]{3})")
_DISCREPANCY = re.compile(r"[A-Z]{4}")
_QUANTITY = re.compile(r"([TP])(\d{1,4})(?:([KL])" + _NUMBER + ")?")
_TIME = re.compile(r"([AES])(\d{4})(?:-([A-Z]))?")
_VOLUME = re.compile(r"(?:(MC|CC|CF|CI)(\d{1,9}(?:\.\d{1,3})?))?(?:DG(\d{1,2}))?")
_ULD = re.compile(r"[A-Z0-9]{3,12}(?:-[A-Z]{3})?")
_ISSUED = re.compile(r"(\d{2})([A-Z]{3})(\d{2})")
_GOODS = re.compile(r"/(?:\d{1,2}/)?N([GC])/(.*)")
_ROUTE = re.compile(r"([A-Z]{3})([A-Z0-9]{2})")
_FLT_BOOKING = re.compile(r"([A-Z0-9]{2}\d{1,4}[A-Z]?)/(\d{1,2})")

#: FWB party lines → their member of ``details.waybill``.
_PARTIES = {"SHP": "shipper", "CNE": "consignee"}

#: Longest free text kept in ``details`` (names, OSI, goods), before the size check.
_TEXT_LIMIT = 100


# -- layouts of the status lines --------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    head: tuple[str, ...]
    """Mandatory fields after the code, in order (kinds of :data:`_FIELDS`)."""
    tail: tuple[str, ...] = ()
    """Optional fields after them, in order; an empty field skips its slot."""
    continuation: str = ""
    """What a ``/`` line after it holds: ``volume`` or ``party`` (carrier and name)."""


_FLIGHT_STATUS = _Layout(("flight", "date", "segment"), ("quantity", "departure", "arrival"))
_ARRIVAL_STATUS = _Layout(("flight", "date", "airport"), ("quantity", "departure", "arrival"))
_NAMED_STATUS = _Layout(("date", "airport"), ("quantity", "name"))

LAYOUTS: dict[str, _Layout] = {
    "RCS": _Layout(("date", "airport"), ("quantity", "name"), continuation="volume"),
    "FOH": _Layout(("date", "airport"), ("quantity", "name"), continuation="volume"),
    "RCT": _Layout(("carrier", "date", "airport"), ("quantity",), continuation="party"),
    "TFD": _Layout(("carrier", "date", "airport"), ("quantity", "reference"),
                   continuation="party"),
    "BKD": _Layout(("flight", "date", "segment"), ("quantity", "departure", "arrival", "volume")),
    "MAN": _FLIGHT_STATUS,
    "DEP": _FLIGHT_STATUS,
    "PRE": _FLIGHT_STATUS,
    "RCF": _ARRIVAL_STATUS,
    "ARR": _ARRIVAL_STATUS,
    "AWR": _Layout(("flight", "date", "airport"), ("quantity",)),
    "NFD": _NAMED_STATUS,
    "AWD": _NAMED_STATUS,
    "DLV": _NAMED_STATUS,
    "DDL": _NAMED_STATUS,
    "CCD": _Layout(("date", "airport"), ("quantity",)),
    "DIS": _Layout(("flight", "date", "airport", "discrepancy"), ("quantity",)),
}
assert set(LAYOUTS) == set(STATUS_CODES), "every AIR status code has a layout"


@dataclass
class _Status:
    """One status line being read: its code, line number and what it said."""

    code: str
    line: int
    details: dict[str, Any] = field(default_factory=dict)
    date: tuple[int, int, int, int, int] | None = None
    """(day, month, hour, minute, day change) of the status."""
    timed: bool = False
    """Whether :attr:`date` has a time of day (else it is 00:00 of the date)."""
    airport: str = ""
    """The status airport: where the event happened."""


@dataclass
class _Message:
    """A message's lines (first: its identifier) and the envelope it came in."""

    lines: list[tuple[int, str]]
    envelope: dict[str, Any]


# -- adapter interface ------------------------------------------------------------------------
def sniff(data: bytes) -> bool:
    """True if an FSU or FWB message identifier line is among the first 4 KB."""
    return _SNIFF.search(data[:4096]) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """Read every FSU and FWB message of ``data``; never raises."""
    if len(data) > MAX_FEED_BYTES:
        return ParseResult(FORMAT, errors=[FeedError(0, "too-large",
                                                     f"more than {MAX_FEED_BYTES} bytes")])
    if _SNIFF.search(data) is None:
        return not_this_format(FORMAT, "no Cargo-IMP FSU/ or FWB/ message identifier line")
    try:
        reference_time = datetime.fromtimestamp(received_at, UTC)
    except (OverflowError, OSError, ValueError):
        return ParseResult(FORMAT, errors=[FeedError(0, "bad-received-at",
                                                     f"{received_at!r} is not a Unix time")])
    result = ParseResult(FORMAT, stats={"messages": 0, "refused": 0, "without_event": 0})
    for item in _split(text_lines(data)):
        if isinstance(item, FeedError):
            result.errors.append(item)
            continue
        result.stats["messages"] += 1
        errors: list[FeedError] = []
        events = _read_message(item, reference_time, errors)
        if errors:
            result.stats["refused"] += 1
            result.errors.extend(errors)
        elif not events:
            result.stats["without_event"] += 1
        else:
            result.events.extend(events)
    return result


# -- splitting a file into messages -----------------------------------------------------------
def _split(lines: Iterator[tuple[int, str]]) -> Iterator[_Message | FeedError]:
    """The file's messages with their envelopes, and errors for lines outside any message."""
    envelope: dict[str, Any] = {}
    current: _Message | None = None
    for number, raw in lines:
        ends = "\x03" in raw
        text = raw.replace("\x01", "").replace("\x02", "").replace("\x03", "").rstrip()
        if not text:
            if ends and current is not None:
                yield current
                current = None
            continue
        if _ADDRESS.fullmatch(text):
            if current is not None:
                yield current
                current = None
            if envelope.get("from"):
                envelope = {}
            priority, *addresses = text.split()
            envelope.setdefault("priority", priority)
            envelope.setdefault("to", []).extend(addresses)
        elif (current is None and envelope.get("to") and not envelope.get("from")
              and _MORE_ADDRESSES.fullmatch(text)):
            envelope["to"].extend(text.split())
        elif (origin := _ORIGIN.fullmatch(text)) is not None:
            if current is not None:
                yield current
                current = None
            envelope["from"] = origin.group(1)
            if origin.group(2):
                envelope["time"] = origin.group(2)
        elif (identifier := _MESSAGE_ID.fullmatch(text)) and identifier.group(1) in MESSAGE_TYPES:
            if current is not None:
                yield current
            current = _Message([(number, text)], _compact_envelope(envelope))
            envelope = {}
        elif current is not None:
            current.lines.append((number, text))
        else:
            yield FeedError(number, "unexpected-line",
                            f"{_show(text)!r} is outside any message (no FSU/ or FWB/ before it)")
        if ends and current is not None:
            yield current
            current = None
    if current is not None:
        yield current


def _compact_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    body = dict(envelope)
    if "to" in body:
        body["to"] = body["to"][:8]
    return body


# -- one message ------------------------------------------------------------------------------
def _read_message(message: _Message, now: datetime,
                  errors: list[FeedError]) -> list[ParsedEvent]:
    """The message's events; on any problem, its errors in ``errors`` and no events."""
    start, identifier = message.lines[0]
    kind = identifier.split("/", 1)[0]
    if kind not in ("FSU", "FWB"):
        errors.append(FeedError(start, "unsupported-message",
                                f"{identifier}: only FSU and FWB messages are read"))
        return []
    if len(message.lines) < 2:
        errors.append(FeedError(start, "missing-consignment",
                                f"{identifier} has no consignment detail line"))
        return []
    body = "\r\n".join(text for _, text in message.lines).encode()
    try:
        if kind == "FSU":
            events = _read_fsu(message, now, errors)
        else:
            events = _read_fwb(message, now, errors)
        if errors:
            return []
        return [ParsedEvent(checked(event), message_key(FORMAT, body, i), start)
                for i, event in enumerate(events)]
    except MessageError as exc:
        errors.append(FeedError(exc.line or start, exc.code, str(exc)))
        return []


def _groups(lines: list[tuple[int, str]],
            errors: list[FeedError]) -> list[tuple[int, str, list[str], list[tuple[int, str]]]]:
    """Lines 3.. as (line, identifier, fields after it, continuation lines)."""
    groups: list[tuple[int, str, list[str], list[tuple[int, str]]]] = []
    for number, text in lines:
        if text.startswith("/"):
            if not groups:
                errors.append(FeedError(number, "bad-line",
                                        f"{_show(text)!r} continues no line"))
            else:
                groups[-1][3].append((number, text))
            continue
        match = _LINE_ID.fullmatch(text)
        if match is None:
            errors.append(FeedError(number, "bad-line",
                                    f"{_show(text)!r} is neither a line identifier (3 letters) "
                                    "nor a continuation (/...)"))
            continue
        fields = text.split("/")[1:] if match.group(2) else []
        groups.append((number, match.group(1), fields, []))
    return groups


# -- FSU --------------------------------------------------------------------------------------
def _read_fsu(message: _Message, now: datetime,
              errors: list[FeedError]) -> list[CanonicalEvent]:
    (_, identifier), (consignment_line, consignment_text) = message.lines[:2]
    flags: list[dict[str, str]] = []
    match = _FSU_CONSIGNMENT.fullmatch(consignment_text)
    if match is None:
        raise MessageError("bad-consignment",
                           f"{_show(consignment_text)!r} is not a consignment detail "
                           "(nnn-nnnnnnnn[ORGDST][/T|Pn[K|Lweight][Tn]])",
                           line=consignment_line)
    awb = _awb(match.group(1), flags, consignment_line)
    consignment = _drop_empty({
        "origin": match.group(2), "destination": match.group(3),
        "shipment": match.group(4), "pieces": _int(match.group(5)),
        "weightUnit": match.group(6), "weight": _float(match.group(7)),
        "totalPieces": _int(match.group(8)),
    })
    statuses: list[_Status] = []
    shared: dict[str, Any] = {"message": identifier, "consignment": consignment}
    if message.envelope:
        shared["typeB"] = message.envelope
    for number, code, fields, more in _groups(message.lines[2:], errors):
        try:
            if code in LAYOUTS:
                statuses.append(_read_status(code, number, fields, more))
            elif code in ATTRIBUTE_CODES:
                shared.setdefault("attributes", []).append(
                    {"code": code, "fields": [_clip(f, 35) for f in fields[:12]]})
                _no_continuation(code, more)
            elif code == "OCI":
                shared.setdefault("oci", []).extend(_read_oci(number, fields, more))
            elif code == "ULD":
                shared.setdefault("uld", []).extend(_read_uld(number, fields, more))
            elif code == "OSI":
                text = _words(" ".join(["/".join(fields)] + [t[1:] for _, t in more]))
                shared["osi"] = _clip(" ".join(filter(None, [shared.get("osi"), text])),
                                      _TEXT_LIMIT)
            else:
                raise MessageError("unknown-line", f"{code}: not an FSU line identifier",
                                   line=number)
        except MessageError as exc:
            errors.append(FeedError(exc.line or number, exc.code, str(exc)))
    if errors:
        return []
    events = []
    for status in statuses:
        if status.date is None:
            event_time, details = int(now.timestamp()), {**status.details, **shared}
        else:
            event_time, local = _resolve(status.date, now, status.line)
            details = {**status.details, "localTime": local, **shared}
        if flags:
            details["flags"] = flags
        events.append(CanonicalEvent(
            event_type=f"AIR.{status.code}",
            classifier="ACT",
            event_time=event_time,
            subject=awb,
            location=AIRPORT_LOCODES.get(status.airport, ""),
            details=_fit(details, status.line),
        ))
    return events


def _read_status(code: str, number: int, fields: list[str],
                 more: list[tuple[int, str]]) -> _Status:
    layout = LAYOUTS[code]
    status = _Status(code, number)
    if len(fields) < len(layout.head):
        raise MessageError("missing-field",
                           f"{code}: {'/'.join(layout.head)} expected, got {len(fields)} "
                           "field(s)", line=number)
    if len(fields) > len(layout.head) + len(layout.tail):
        raise MessageError("extra-field",
                           f"{code}: at most {len(layout.head) + len(layout.tail)} fields "
                           f"({'/'.join(layout.head + layout.tail)})", line=number)
    for kind, text in zip(layout.head, fields, strict=False):
        if kind == "date" and not text and code in _UNDATED:
            continue  # a flight status may leave the flight's date out
        _FIELDS[kind](status, text)
    for kind, text in zip(layout.tail, fields[len(layout.head):], strict=False):
        if text:
            _FIELDS[kind](status, text)
    for line, text in more:
        parts = text[1:].split("/")
        if layout.continuation == "volume" and len(parts) == 1 and parts[0]:
            _FIELDS["volume"](status, parts[0])
        elif layout.continuation == "party" and len(parts) == 2 and _CARRIER.fullmatch(parts[0]):
            status.details["party"] = _drop_empty({"carrier": parts[0],
                                                   "name": _clip(_words(parts[1]), 35)})
        else:
            raise MessageError("bad-continuation",
                               f"{code}: {_show(text)!r} is not a continuation of this line",
                               line=line)
    if status.date is None and code not in _UNDATED:
        raise MessageError("missing-field", f"{code}: no date", line=number)
    return status


def _field(pattern: re.Pattern[str], what: str,
           store: Callable[[_Status, re.Match[str]], None]) -> Callable[[_Status, str], None]:
    """A field reader: check ``text`` against ``pattern``, then store what it says."""

    def read(status: _Status, text: str) -> None:
        match = pattern.fullmatch(text)
        if match is None:
            raise MessageError("bad-field", f"{status.code}: {_show(text)!r} is not {what}",
                               line=status.line)
        store(status, match)

    return read


def _store_flight(status: _Status, match: re.Match[str]) -> None:
    if match.group(0):
        status.details["flight"] = match.group(0)


def _store_date(status: _Status, match: re.Match[str]) -> None:
    day, month_name, clock, change = match.groups()
    status.details["date"] = match.group(0)
    month = _MONTHS.get(month_name)
    if month is None or not 1 <= int(day) <= 31:
        raise MessageError("bad-date", f"{status.code}: {match.group(0)} is not a date",
                           line=status.line)
    hour, minute = _clock(clock or "0000", status)
    status.date = (int(day), month, hour, minute, _day_change(change, status))
    status.timed = clock is not None


def _store_airport(status: _Status, match: re.Match[str]) -> None:
    status.details["airport"] = status.airport = match.group(0)


def _store_segment(status: _Status, match: re.Match[str]) -> None:
    status.details["from"], status.details["to"] = match.group(1), match.group(2)
    status.airport = match.group(1)


def _store_quantity(status: _Status, match: re.Match[str]) -> None:
    status.details.update(_drop_empty({
        "shipment": match.group(1), "pieces": _int(match.group(2)),
        "weightUnit": match.group(3), "weight": _float(match.group(4)),
    }))


def _store_time(slot: str) -> Callable[[_Status, re.Match[str]], None]:
    def store(status: _Status, match: re.Match[str]) -> None:
        kind, clock, change = match.groups()
        _clock(clock, status)
        days = _day_change(change, status)
        status.details[slot] = _drop_empty({"type": kind, "time": clock, "dayChange": change})
        # a flight status without a time of its own happens at the flight's departure (BKD,
        # MAN, DEP, PRE) or arrival (RCF, ARR)
        if status.date is not None and not status.timed and status.code in _TIMED_BY[slot]:
            day, month = status.date[:2]
            status.date = (day, month, int(clock[:2]), int(clock[2:]), status.date[4] + days)
            status.timed = True

    return store


def _store_volume(status: _Status, match: re.Match[str]) -> None:
    code, amount, density = match.groups()
    if not match.group(0):
        raise MessageError("bad-field", f"{status.code}: empty volume", line=status.line)
    if code:
        status.details["volume"] = {"unit": code, "amount": _float(amount)}
    if density:
        status.details["densityGroup"] = int(density)


def _store_as(name: str, limit: int = 35) -> Callable[[_Status, re.Match[str]], None]:
    def store(status: _Status, match: re.Match[str]) -> None:
        status.details[name] = _clip(_words(match.group(0)), limit)

    return store


#: Statuses whose time, when their date has none, is their departure / arrival time.
_TIMED_BY = {"departure": ("BKD", "MAN", "DEP", "PRE"), "arrival": ("RCF", "ARR")}

#: Statuses whose date may be empty (the Manual's ``PRE///CDGHKG``): they take ``received_at``.
_UNDATED = ("BKD", "MAN", "DEP", "PRE")

_FIELDS: dict[str, Callable[[_Status, str], None]] = {
    "flight": _field(re.compile(f"(?:{_FLIGHT.pattern})?"), "a flight (carrier and number)",
                     _store_flight),
    "carrier": _field(_CARRIER, "a carrier code", _store_as("carrier")),
    "date": _field(_DATE, "a date (ddMMM[hhmm][-d])", _store_date),
    "airport": _field(_AIRPORT, "an airport code", _store_airport),
    "segment": _field(_SEGMENT, "two airport codes (from, to)", _store_segment),
    "discrepancy": _field(_DISCREPANCY, "a discrepancy code", _store_as("discrepancy")),
    "quantity": _field(_QUANTITY, "a quantity (T|P pieces [K|L weight])", _store_quantity),
    "departure": _field(_TIME, "a time (A|E|S hhmm[-d])", _store_time("departure")),
    "arrival": _field(_TIME, "a time (A|E|S hhmm[-d])", _store_time("arrival")),
    "volume": _field(_VOLUME, "a volume (MC|CC|CF|CI amount [DGn])", _store_volume),
    "name": _field(re.compile(r".{1,35}"), "a name (35 characters at most)", _store_as("name")),
    "reference": _field(re.compile(r"[A-Z0-9 ]{1,35}"), "a transfer reference",
                        _store_as("reference")),
}


def _read_oci(number: int, fields: list[str],
              more: list[tuple[int, str]]) -> list[dict[str, str]]:
    entries = []
    for line, parts in [(number, fields)] + [(n, t[1:].split("/")) for n, t in more]:
        if len(parts) < 4:
            raise MessageError("bad-oci", "OCI: country/information/control/text expected",
                               line=line)
        country, info, control, *text = parts
        if not (re.fullmatch(r"[A-Z]{0,2}", country) and re.fullmatch(r"[A-Z]{0,3}", info)
                and re.fullmatch(r"[A-Z0-9]{0,2}", control)):
            raise MessageError("bad-oci", f"OCI: {_show('/'.join(parts))!r} is not "
                               "country/information/control/text", line=line)
        entries.append(_drop_empty({"country": country, "info": info, "control": control,
                                    "text": _clip("/".join(text), 35)}))
    return entries


def _read_uld(number: int, fields: list[str], more: list[tuple[int, str]]) -> list[str]:
    found = []
    for line, parts in [(number, fields)] + [(n, t[1:].split("/")) for n, t in more]:
        for part in parts:
            if not _ULD.fullmatch(part):
                raise MessageError("bad-uld", f"ULD: {_show(part)!r} is not a ULD", line=line)
            found.append(part)
    return found


def _no_continuation(code: str, more: list[tuple[int, str]]) -> None:
    if more:
        raise MessageError("bad-continuation", f"{code}: takes no continuation lines",
                           line=more[0][0])


# -- FWB --------------------------------------------------------------------------------------
def _read_fwb(message: _Message, now: datetime,
              errors: list[FeedError]) -> list[CanonicalEvent]:
    (_, identifier), (consignment_line, consignment_text) = message.lines[:2]
    flags: list[dict[str, str]] = []
    match = _FWB_CONSIGNMENT.fullmatch(consignment_text)
    if match is None:
        raise MessageError("bad-consignment",
                           f"{_show(consignment_text)!r} is not an FWB consignment detail "
                           "(nnn-nnnnnnnnORGDST/Tn(K|L)weight[volume][DGn])",
                           line=consignment_line)
    awb = _awb(match.group(1), flags, consignment_line)
    waybill: dict[str, Any] = _drop_empty({
        "origin": match.group(2), "destination": match.group(3),
        "pieces": int(match.group(4)), "weightUnit": match.group(5),
        "weight": _float(match.group(6)),
        "volume": {"unit": match.group(7), "amount": _float(match.group(8))}
        if match.group(7) else None,
        "densityGroup": _int(match.group(9)),
    })
    issued: tuple[int, int, int] | None = None
    goods: list[str] = []
    party = ""  # the SHP / CNE / NFY group the lines are in (FWB/17: NAM, ADR, LOC lines)
    for number, code, fields, more in _groups(message.lines[2:], errors):
        if code not in ("NAM", "ADR", "LOC"):
            party = ""
        try:
            if code == "FLT":
                waybill["flights"] = _read_flights(number, fields, more)
            elif code == "RTG":
                waybill["routing"] = _read_routing(number, fields)
            elif code in ("SHP", "CNE", "NFY", "NAM") and (code != "NAM" or party):
                # FWB/16 writes a party's name on its first "/" line, FWB/17 on a NAM line
                party = party if code == "NAM" else code
                name = _words("/".join(fields)) if code == "NAM" else _party_name(more)
                if name and party in _PARTIES:
                    waybill[_PARTIES[party]] = _clip(name, 70)
            elif code == "RTD":
                goods.extend(_words(m.group(2)) for _, text in more
                             if (m := _GOODS.fullmatch(text)) and m.group(2).strip())
            elif code == "ISU":
                issued = _issue_date(number, fields)
                waybill["issued"] = _drop_empty({
                    "date": f"{issued[0]:04d}-{issued[1]:02d}-{issued[2]:02d}",
                    "place": _clip(_words(fields[1]), 35) if len(fields) > 1 else ""})
            elif code == "SPH":
                waybill["specialHandling"] = [f for f in fields if re.fullmatch("[A-Z]{3}", f)]
        except MessageError as exc:
            errors.append(FeedError(exc.line or number, exc.code, str(exc)))
    if errors:
        return []
    if goods:
        waybill["goods"] = _clip(" ".join(goods), 200)
    if issued is not None:
        event_time = int(datetime(*issued, tzinfo=UTC).timestamp())
    else:
        event_time = int(now.timestamp())
    details: dict[str, Any] = {"message": identifier, "waybill": waybill}
    if message.envelope:
        details["typeB"] = message.envelope
    if flags:
        details["flags"] = flags
    return [CanonicalEvent(
        event_type="AIR.BKD",
        classifier="ACT",
        event_time=event_time,
        subject=awb,
        location=AIRPORT_LOCODES.get(waybill["origin"], ""),
        details=_fit(details, consignment_line),
    )]


def _read_flights(number: int, fields: list[str],
                  more: list[tuple[int, str]]) -> list[dict[str, Any]]:
    parts = fields + [p for _, t in more for p in t[1:].split("/")]
    if len(parts) % 2:
        raise MessageError("bad-field", "FLT: flight/day pairs expected", line=number)
    flights = []
    for flight, day in zip(parts[::2], parts[1::2], strict=True):
        if not _FLT_BOOKING.fullmatch(f"{flight}/{day}"):
            raise MessageError("bad-field", f"FLT: {_show(flight)}/{_show(day)} is not "
                               "flight/day", line=number)
        flights.append({"flight": flight, "day": int(day)})
    return flights[:8]


def _read_routing(number: int, fields: list[str]) -> list[dict[str, str]]:
    routing = []
    for part in fields:
        match = _ROUTE.fullmatch(part)
        if match is None:
            raise MessageError("bad-field", f"RTG: {_show(part)!r} is not airport+carrier",
                               line=number)
        routing.append({"to": match.group(1), "carrier": match.group(2)})
    return routing[:8]


def _party_name(more: list[tuple[int, str]]) -> str:
    """A shipper's or consignee's name in FWB/16 layout: its first ``/`` line."""
    return _words(more[0][1][1:]) if more else ""


def _issue_date(number: int, fields: list[str]) -> tuple[int, int, int]:
    match = _ISSUED.fullmatch(fields[0]) if fields else None
    month = _MONTHS.get(match.group(2)) if match else None
    if match is None or month is None:
        raise MessageError("bad-date", "ISU: the execution date is ddMMMyy", line=number)
    day, year = int(match.group(1)), 2000 + int(match.group(3))
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise MessageError("bad-date", f"ISU: {fields[0]} is not a date", line=number)
    return year, month, day


# -- shared pieces ----------------------------------------------------------------------------
def _awb(text: str, flags: list[dict[str, str]], line: int) -> Reference:
    try:
        return reference("awb", text, flags, field="awb")
    except MessageError as exc:
        exc.line = line
        raise


def _clock(text: str, status: _Status) -> tuple[int, int]:
    hour, minute = int(text[:2]), int(text[2:])
    if hour > 23 or minute > 59:
        raise MessageError("bad-time", f"{status.code}: {text} is not a time (hhmm)",
                           line=status.line)
    return hour, minute


def _day_change(code: str | None, status: _Status) -> int:
    if code is None:
        return 0
    if code not in DAY_CHANGE:
        raise MessageError("bad-field", f"{status.code}: {code} is not a day change indicator",
                           line=status.line)
    return DAY_CHANGE[code]


def _resolve(date: tuple[int, int, int, int, int], now: datetime, line: int) -> tuple[int, str]:
    """Unix seconds and the local wall clock of a year-less date, nearest to ``now``."""
    day, month, hour, minute, change = date
    best: datetime | None = None
    for year in range(now.year - 4, now.year + 5):
        try:
            moment = datetime(year, month, day, hour, minute, tzinfo=UTC)
        except ValueError:
            continue
        moment += timedelta(days=change)
        if best is None or abs(moment - now) < abs(best - now):
            best = moment
    if best is None:
        raise MessageError("bad-date", f"day {day} of month {month} does not exist", line=line)
    return int(best.timestamp()), best.strftime("%Y-%m-%dT%H:%M")


def _fit(details: dict[str, Any], line: int) -> dict[str, Any]:
    """``details`` within the canonical size: long lists shortened, then free text cut."""
    def size() -> int:
        return len(json.dumps(details, separators=(",", ":")))

    if size() <= MAX_DETAILS_BYTES:
        return details
    for key in ("oci", "attributes", "uld"):
        while size() > MAX_DETAILS_BYTES and details.get(key):
            details[key] = details[key][:-1]
            details["truncated"] = True
    waybill = details.get("waybill")
    for holder, key, limit in ((details, "osi", 40), (waybill, "goods", 60),
                               (waybill, "shipper", 35), (waybill, "consignee", 35)):
        if size() > MAX_DETAILS_BYTES and isinstance(holder, dict) and key in holder:
            holder[key] = _clip(holder[key], limit)
            details["truncated"] = True
    if size() > MAX_DETAILS_BYTES:
        raise MessageError("too-large", "the message's details do not fit in "
                           f"{MAX_DETAILS_BYTES} bytes", line=line)
    return details


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _float(text: str | None) -> float | None:
    return float(text) if text else None


def _words(text: str) -> str:
    """Free text with its runs of spaces made one (telex pads with spaces)."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(text: str) -> str:
    """A line as an error message quotes it: printable, at most 40 characters."""
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return _clip(shown, 40)
