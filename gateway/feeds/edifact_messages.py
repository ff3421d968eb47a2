"""CODECO, COARRI, COPARN and IFTSTA messages as canonical events (pure).

Each reader takes one message's segments (read by :mod:`gateway.feeds.edifact_syntax`) and
returns its events, or raises :class:`~gateway.feeds.model.MessageError` (``line`` = the
segment's index within the message) to refuse the message whole. IFTSTA alone refuses per
consignment (a ``CNI`` group): one consignment whose status code is not in the mapping table
does not cost the others their events.

Which event a message gives
---------------------------
CODECO (container gate-in/gate-out report), by the ``BGM`` document name code (SMDG CODECO
MIG practice, STANDARDS.md): ``34`` gate in → ``TERMINAL.GTIN``, ``36`` gate out →
``TERMINAL.GTOT``.

COARRI (container discharge/loading report), by the ``BGM`` document name code — one table
for the three code sets in use:

=====  ===============  ===============================================================
code   event            source
=====  ===============  ===============================================================
44     TERMINAL.DISC    SMDG COARRI 1.x (D.95B) as a real Genoa (VTE) terminal writes it:
                        php-edifact's ``D95BCOARRI.edi`` pairs ``BGM+44`` with the vessel's
                        port of discharge ``LOC+11+ITGOA`` and containers from Turkey
                        (``LOC+9+TRKMX``)
46     TERMINAL.LOAD    the same file: ``BGM+46`` with port of loading ``LOC+9+ITGOA`` and
                        containers bound for Piraeus (``LOC+11+GRPIR``)
98     TERMINAL.DISC    SMDG COARRI 2.0 (D.00B) MIG, BGM 1001: "98 = Unload container from
                        vessel" (as published by SARS, tools.sars.gov.za COARRI_2_0)
270    TERMINAL.LOAD    the same MIG: "270 = Load container onto vessel"
119    TERMINAL.DISC    UNCL 1001 (D.03A on): "Transport discharge report"
122    TERMINAL.LOAD    UNCL 1001 (D.03A on): "Transport loading report"
=====  ===============  ===============================================================

COPARN (container announcement): only the line's release order is read, as
``SHIPMENT.RELS`` — the right to pick the container up. ``BGM`` codes: ``12`` (release order
in SMDG COPARN practice, beside ``11`` acceptance / gate-in order), ``129`` (UNCL 1001
"Transport cargo release order") and ``108`` (UNCL 1001 "Transport equipment empty release
instruction"). Other COPARN functions (acceptance orders, announcements) are refused with
``not-a-release-order``.

IFTSTA (international multimodal status report): each status (``STS``) of a consignment
(``CNI`` group) is mapped by its status event code — UN/ECE Recommendation 24, the code list of
data element 9011 "Status event, coded" (numbers and names as in UNTDID D.95B and D.97A) —
through :data:`IFTSTA_STATUS`. A code not in that table refuses its consignment with
``unmapped-status``.

The event's subject
-------------------
One event per container (``EQD+CN``): the subject is the container (ISO 6346, a bad check digit
flagged in ``details.flags``, not refused), with the bill of lading (``RFF+BM``) and booking
(``RFF+BN``) of its group, else of the message, and the vessel (IMO number from ``TDT``
C222 when its code list is ``146`` or it is seven digits) as related references. A COPARN
release without a container number (a release of "any empty 22G1") is recorded on the bill of
lading, else the booking. In IFTSTA, ``TRANSPORT`` statuses are recorded on the vessel (else
the bill of lading), ``SHIPMENT`` and ``CUSTOMS`` statuses on the bill of lading (else the
booking; containers listed in ``details.containers``), equipment statuses per container
(else on the bill of lading).

Time and place
--------------
The event time is the group's ``DTM``: ``7`` (actual) or ``203`` (execution, as COARRI
writes it) for CODECO and COARRI; ``334`` (status change), ``7``, ``178`` (actual arrival)
or ``186`` (actual departure) for IFTSTA; the release order's issue (``137``) for COPARN, else
the interchange's preparation time, else the time the file was received. A time without a zone
is the port's local time (the adapter's ``local_offset``). Every event is ``ACT``.

The location is the UN/LOCODE of ``LOC+165`` (place of the event); COARRI without one takes
the vessel's port of discharge (``LOC+11``, discharge reports) or loading (``LOC+9``, loading
reports) from the message header; IFTSTA takes the status's own ``LOC``.

Details
-------
``messageType``, ``messageReference``, ``documentNumber``, ``sender`` and
``interchangeReference`` (from ``UNB``); ``ISOEquipmentCode``, ``emptyIndicatorCode``
(``LADEN`` / ``EMPTY``), ``tradeDirection`` (``export`` / ``import`` / ``transhipment``),
``seals`` (``sealNumber``, ``sealSource`` ``CAR`` / ``SHI`` / ``CUS`` or the EDIFACT code),
``grossWeight`` / ``tareWeight`` / ``verifiedGrossMass`` (``MEA`` G / T / VGM),
``stowageCell`` (``LOC+147``), ``portOfLoading`` / ``portOfDischarge`` (``LOC+9`` / ``LOC+11``),
``facility`` (the terminal code of ``LOC+165``), ``temperature`` (``TMP``), ``vessel``
(``imo``, ``name``, ``callSign``), ``voyage``, ``carrier``, ``inlandTransport`` (the truck, train
or barge of a gate move), ``dangerousGoods``; COPARN adds ``releaseOrder`` and IFTSTA
``status``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.events.identifiers import IdentifierError, normalise
from gateway.events.model import CanonicalEvent, Reference
from gateway.feeds.edifact_syntax import Seg, Syntax, date_time
from gateway.feeds.model import MessageError, checked, reference
from gateway.isotime import iso_time

#: CODECO ``BGM`` document name codes → event types.
CODECO_DOCUMENTS: dict[str, str] = {"34": "TERMINAL.GTIN", "36": "TERMINAL.GTOT"}

#: COARRI ``BGM`` document name codes → event types (module docstring for the sources).
COARRI_DOCUMENTS: dict[str, str] = {
    "44": "TERMINAL.DISC",
    "46": "TERMINAL.LOAD",
    "98": "TERMINAL.DISC",
    "270": "TERMINAL.LOAD",
    "119": "TERMINAL.DISC",
    "122": "TERMINAL.LOAD",
}

#: COPARN ``BGM`` document name codes of a release order (module docstring for the sources).
COPARN_RELEASES: dict[str, str] = {
    "12": "release order (SMDG COPARN)",
    "129": "transport cargo release order",
    "108": "transport equipment empty release instruction",
}

#: IFTSTA status event codes (UN/ECE Rec. 24, UNTDID 9011) → (Rec. 24 name, event type).
IFTSTA_STATUS: dict[str, tuple[str, str]] = {
    "1": ("Arrived", "TRANSPORT.ARRI"),
    "24": ("Departed", "TRANSPORT.DEPA"),
    "48": ("Loaded", "TERMINAL.LOAD"),
    "29": ("Discharged", "TERMINAL.DISC"),
    "13": ("Collected", "EQUIPMENT.PICK"),
    "21": ("Delivered", "EQUIPMENT.DROP"),
    "22": ("Delivery completed", "EQUIPMENT.DROP"),
    "93": ("Stuffed", "EQUIPMENT.STUF"),
    "94": ("Stuffed and sealed", "EQUIPMENT.STUF"),
    "28": ("Stripped", "EQUIPMENT.STRP"),
    "78": ("Released", "SHIPMENT.RELS"),
    "6": ("Booked", "SHIPMENT.CONF"),
    "7": ("Booking cancelled", "SHIPMENT.CANC"),
    "12": ("Cleared by customs", "CUSTOMS.CUSR"),
    "17": ("Customs refusal", "CUSTOMS.CUSX"),
}

#: ``BGM`` message function codes that are not an original, a replacement or a change.
_CANCELLATIONS = {"1": "cancellation", "3": "deletion"}

#: ``EQD`` full/empty indicator (8169) → DCSA emptyIndicatorCode.
_FULL_EMPTY = {"4": "EMPTY", "5": "LADEN"}

#: ``EQD`` equipment status (8249) → trade direction (SMDG usage).
_DIRECTION = {"2": "export", "3": "import", "6": "transhipment"}

#: ``SEL`` sealing party (9303) → DCSA sealSource.
_SEAL_SOURCE = {"CA": "CAR", "SH": "SHI", "CU": "CUS"}

#: ``MEA`` measured attribute (6313) → details member.
_WEIGHTS = {"G": "grossWeight", "T": "tareWeight", "VGM": "verifiedGrossMass"}

#: ``TDT`` mode of transport (8067) → name.
_MODES = {"1": "sea", "2": "rail", "3": "road", "8": "inland water"}

#: Most related references an event carries (the API's canonical event allows 16).
_MAX_RELATED = 16


@dataclass(frozen=True)
class Envelope:
    """What the interchange header (``UNB``) says about the messages in it."""

    sender: str = ""
    recipient: str = ""
    reference: str = ""
    prepared_at: int | None = None
    """The interchange's preparation time (local time read with the adapter's offset)."""


@dataclass(frozen=True)
class Context:
    """A message being read: its envelope, identity and the reading's parameters."""

    envelope: Envelope
    message_type: str
    message_reference: str
    syntax: Syntax
    local_offset: int
    received_at: int

    def base_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"messageType": self.message_type,
                                   "messageReference": self.message_reference}
        if self.envelope.sender:
            details["sender"] = self.envelope.sender
        if self.envelope.reference:
            details["interchangeReference"] = self.envelope.reference
        return details


@dataclass
class Reading:
    """What a reader made of a message: its events and, for IFTSTA, refused consignments."""

    events: list[CanonicalEvent] = field(default_factory=list)
    refused: list[MessageError] = field(default_factory=list)
    skipped: int = 0
    """Equipment groups that are not containers (``EQD+CH`` chassis, ``EQD+TE`` trailer...)."""


# -- shared pieces ---------------------------------------------------------------------------
def _split(body: Sequence[Seg], start: str, *, stop: frozenset[str] = frozenset({"CNT"})
           ) -> tuple[list[Seg], list[list[Seg]]]:
    """The segments before the first ``start`` tag, and the groups each ``start`` opens (a
    group ends at the next ``start`` or at a ``stop`` tag)."""
    header: list[Seg] = []
    groups: list[list[Seg]] = []
    current: list[Seg] | None = None
    for seg in body:
        if seg.tag == start:
            current = [seg]
            groups.append(current)
        elif seg.tag in stop:
            current = None
        elif current is not None:
            current.append(seg)
        elif not groups:
            header.append(seg)
    return header, groups


class _Group:
    """A run of segments read once: references, locations and times by qualifier."""

    __slots__ = ("segs", "refs", "locations", "times")

    def __init__(self, segs: Sequence[Seg]) -> None:
        self.segs = segs
        self.refs: dict[str, list[tuple[str, Seg]]] = {}
        """``RFF`` values by qualifier, in order (``RFF+BM:X`` → ``{"BM": [("X", seg)]}``)."""
        self.locations: dict[str, Seg] = {}
        """The first ``LOC`` of each qualifier."""
        self.times: dict[str, Seg] = {}
        """The first ``DTM`` with a value of each qualifier."""
        for seg in segs:
            tag = seg.tag
            if tag == "RFF":
                value = seg.text(0, 1)
                if value:
                    self.refs.setdefault(seg.text(0, 0), []).append((value, seg))
            elif tag == "LOC":
                self.locations.setdefault(seg.text(0), seg)
            elif tag == "DTM" and seg.text(0, 1):
                self.times.setdefault(seg.text(0), seg)

    def first(self, tag: str, qualifier: str | None = None) -> Seg | None:
        for seg in self.segs:
            if seg.tag == tag and (qualifier is None or seg.text(0) == qualifier):
                return seg
        return None

    def dated(self, qualifiers: Sequence[str]) -> Seg | None:
        """The ``DTM`` of the first of ``qualifiers`` that is present."""
        for qualifier in qualifiers:
            seg = self.times.get(qualifier)
            if seg is not None:
                return seg
        return None

    def documents(self, qualifier: str, kind: str) -> tuple[list[Reference],
                                                            list[dict[str, str]]]:
        """The ``RFF+qualifier`` values as references of ``kind``, and their check-digit
        flags."""
        flags: list[dict[str, str]] = []
        out: list[Reference] = []
        for value, seg in self.refs.get(qualifier, ()):
            try:
                out.append(reference(kind, value, flags,
                                     field=f"RFF+{qualifier} segment {seg.position}"))
            except MessageError as exc:
                raise MessageError(exc.code, str(exc), line=seg.position) from None
        return out, flags


@dataclass
class _Documents:
    """A group's bills of lading and bookings, else the message's."""

    bls: list[Reference]
    bookings: list[Reference]
    flags: list[dict[str, str]]

    @staticmethod
    def of(group: _Group, message: _Documents) -> _Documents:
        bls, bl_flags = group.documents("BM", "mbl")
        bookings, booking_flags = group.documents("BN", "booking")
        flags = []
        if bls:
            flags += bl_flags
        else:
            bls = message.bls
            flags += [f for f in message.flags if f["field"].startswith("RFF+BM")]
        if bookings:
            flags += booking_flags
        else:
            bookings = message.bookings
            flags += [f for f in message.flags if f["field"].startswith("RFF+BN")]
        return _Documents(bls, bookings, flags)

    @staticmethod
    def message(header: _Group) -> _Documents:
        bls, bl_flags = header.documents("BM", "mbl")
        bookings, booking_flags = header.documents("BN", "booking")
        return _Documents(bls, bookings, bl_flags + booking_flags)


def _unlocode(seg: Seg) -> str:
    """The UN/LOCODE of a ``LOC`` (C517 first component); empty if none is given.

    Raises
    ------
    MessageError
        ``invalid-unlocode`` if one is given but is not a UN/LOCODE.
    """
    value = seg.text(1)
    if not value:
        return ""
    try:
        return normalise("unlocode", value)
    except IdentifierError as exc:
        raise MessageError(exc.code, f"LOC+{seg.text(0)} (segment {seg.position}): {exc}",
                           line=seg.position) from None


def _port(seg: Seg | None) -> str:
    """A port named in details: its UN/LOCODE normalised when it is one, else as written."""
    if seg is None:
        return ""
    value = seg.text(1)
    try:
        return normalise("unlocode", value)
    except IdentifierError:
        return value[:35]


def _time(seg: Seg, ctx: Context) -> int:
    try:
        return date_time(seg.text(0, 1), seg.text(0, 2), local_offset=ctx.local_offset,
                         field=f"DTM+{seg.text(0)} (segment {seg.position})")
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=seg.position) from None


def _number(seg: Seg, text: str, syntax: Syntax) -> float:
    try:
        return syntax.number(text, field=f"{seg.tag} segment {seg.position}")
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=seg.position) from None


def _event(event_type: str, when: int, subject: Reference, location: str,
           related: Sequence[Reference], details: dict[str, Any], flags: list[dict[str, str]],
           *, line: int) -> CanonicalEvent:
    unique: list[Reference] = []
    for ref in related:
        if ref != subject and ref not in unique:
            unique.append(ref)
    if flags:
        details["flags"] = flags
    try:
        return checked(CanonicalEvent(event_type, "ACT", when, subject, location,
                                      tuple(unique[:_MAX_RELATED]), details))
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=line) from None


@dataclass
class _Transport:
    """The main carriage (``TDT+20``): vessel, voyage, carrier."""

    details: dict[str, Any] = field(default_factory=dict)
    vessel: Reference | None = None
    flags: list[dict[str, str]] = field(default_factory=list)

    @property
    def vessels(self) -> list[Reference]:
        return [self.vessel] if self.vessel is not None else []


def _transport(seg: Seg | None) -> _Transport:
    out = _Transport()
    if seg is None:
        return out
    voyage, carrier = seg.text(1), seg.text(4)
    ident, code_list, name = seg.text(7, 0), seg.text(7, 1), seg.text(7, 3)
    vessel: dict[str, Any] = {}
    compact = ident.replace(" ", "").upper().removeprefix("IMO")
    is_imo = code_list == "146" or (not code_list and compact.isascii() and compact.isdigit()
                                    and len(compact) == 7)
    if ident and is_imo:
        try:
            out.vessel = reference("vessel", ident, out.flags,
                                   field=f"TDT segment {seg.position} vessel")
            vessel["imo"] = out.vessel.value
        except MessageError:
            vessel["id"] = ident[:35]  # not an IMO number after all: kept, not recorded on
    elif ident and code_list == "103":
        vessel["callSign"] = ident[:35]
    elif ident:
        vessel["id"] = ident[:35]
    if name:
        vessel["name"] = name[:70]
    if vessel:
        out.details["vessel"] = vessel
    if voyage:
        out.details["voyage"] = voyage[:35]
    if carrier:
        out.details["carrier"] = carrier[:35]
    return out


def _inland(seg: Seg) -> dict[str, Any]:
    """The truck, train or barge of a ``TDT`` other than the main carriage (its means of
    transport identification is required: a mode alone says nothing)."""
    means = seg.text(7)
    if not means:
        return {}
    mode = seg.text(2)
    out: dict[str, Any] = {"id": means[:35]}
    if mode:
        out["mode"] = _MODES.get(mode, mode[:3])
    if seg.text(4):
        out["carrier"] = seg.text(4)[:35]
    return out


def _weight(seg: Seg, syntax: Syntax) -> tuple[str, dict[str, Any]] | None:
    member = _WEIGHTS.get(seg.text(1))
    value = seg.text(2, 1)
    if member is None or not value:
        return None
    number = _number(seg, value, syntax)
    return member, {"value": int(number) if number.is_integer() else number,
                    "unit": seg.text(2, 0)[:3] or "KGM"}


def _equipment_details(group: _Group, ctx: Context, details: dict[str, Any]) -> None:
    """Add what a container's group says (see the module docstring) to ``details``."""
    eqd = group.segs[0]
    if eqd.text(2):
        details["ISOEquipmentCode"] = eqd.text(2)[:10]
    status, full = eqd.text(4), eqd.text(5)
    if status in _DIRECTION:
        details["tradeDirection"] = _DIRECTION[status]
    elif status:
        details["equipmentStatusCode"] = status[:3]
    if full in _FULL_EMPTY:
        details["emptyIndicatorCode"] = _FULL_EMPTY[full]
    seals: list[dict[str, str]] = []
    for seg in group.segs:
        tag = seg.tag
        if tag == "SEL":
            number = seg.text(0)
            if number and len(seals) < 8:
                source = seg.text(1)
                seals.append({"sealNumber": number[:35], "sealSource": _SEAL_SOURCE.get(
                    source, source[:3])} if source else {"sealNumber": number[:35]})
        elif tag == "MEA":
            weight = _weight(seg, ctx.syntax)
            if weight is not None:
                details.setdefault(weight[0], weight[1])
        elif tag == "TMP" and seg.text(1, 0) and "temperature" not in details:
            setting = _number(seg, seg.text(1, 0), ctx.syntax)
            details["temperature"] = {"value": setting, "unit": seg.text(1, 1)[:3] or "CEL"}
        elif tag == "TDT" and seg.text(0) != "20" and "inlandTransport" not in details:
            inland = _inland(seg)
            if inland:
                details["inlandTransport"] = inland
        elif tag == "DGS" and seg.text(1):
            goods = details.setdefault("dangerousGoods", [])
            if len(goods) < 4:
                goods.append({"class": seg.text(1)[:7],
                              **({"unNumber": seg.text(2)[:4]} if seg.text(2) else {})})
    if seals:
        details["seals"] = seals
    locations = group.locations
    cell = locations.get("147")
    if cell is not None and cell.text(1):
        details["stowageCell"] = cell.text(1)[:12]
    for qualifier, member in (("9", "portOfLoading"), ("11", "portOfDischarge")):
        port = _port(locations.get(qualifier))
        if port:
            details[member] = port
    place = locations.get("165")
    if place is not None and place.text(2):
        details["facility"] = place.text(2)[:35]


def _document(bgm: Seg | None, documents: dict[str, Any], ctx: Context) -> str:
    """The ``BGM`` document name code, checked against ``documents``."""
    if bgm is None:
        raise MessageError("missing-segment", f"{ctx.message_type} without BGM", line=2)
    code = bgm.text(0)
    if code not in documents:
        raise MessageError(
            "unknown-document-code" if ctx.message_type != "COPARN" else "not-a-release-order",
            f"{ctx.message_type} BGM document code {code!r} is not one of "
            f"{', '.join(documents)}", line=bgm.position)
    function = bgm.text(2)
    if function in _CANCELLATIONS:
        raise MessageError("cancellation-not-supported",
                           f"BGM message function {function} ({_CANCELLATIONS[function]}): "
                           "retract the recorded events through the gateway instead",
                           line=bgm.position)
    return code


def _container(eqd: Seg, flags: list[dict[str, str]]) -> Reference:
    if eqd.text(0) != "CN":
        raise MessageError("not-a-container", f"EQD segment {eqd.position}: equipment type "
                           f"{eqd.text(0)!r} is not CN (container)", line=eqd.position)
    number = eqd.text(1, 0)
    if not number:
        raise MessageError("missing-field", f"EQD segment {eqd.position}: no container number",
                           line=eqd.position)
    try:
        return reference("container", number, flags, field=f"EQD segment {eqd.position}")
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=eqd.position) from None


# -- CODECO and COARRI -----------------------------------------------------------------------
def _container_moves(ctx: Context, body: Sequence[Seg], documents: dict[str, str]) -> Reading:
    segs, groups = _split(body, "EQD")
    header = _Group(segs)
    bgm = header.first("BGM")
    code = _document(bgm, documents, ctx)
    event_type = documents[code]
    transport = _transport(header.first("TDT", "20"))
    message_documents = _Documents.message(header)
    if not groups:
        raise MessageError("missing-segment", f"{ctx.message_type} without a container (EQD)",
                           line=bgm.position if bgm else 1)
    default_place = header.locations.get("165")
    if ctx.message_type == "COARRI":
        port = "11" if event_type == "TERMINAL.DISC" else "9"
        default_place = header.locations.get(port, default_place)
    header_time = header.dated(("7",))
    base = ctx.base_details()
    if bgm is not None and bgm.text(1):
        base["documentNumber"] = bgm.text(1)[:35]
    reading = Reading()
    for segments in groups:
        eqd = segments[0]
        if eqd.text(0) != "CN":
            reading.skipped += 1
            continue
        group = _Group(segments)
        docs = _Documents.of(group, message_documents)
        flags = transport.flags + docs.flags
        subject = _container(eqd, flags)
        dtm = group.dated(("7", "203")) or header_time
        if dtm is None:
            raise MessageError("missing-event-time", f"EQD segment {eqd.position} "
                               f"({subject.value}): no DTM+7 or DTM+203", line=eqd.position)
        place = group.locations.get("165") or default_place
        location = _unlocode(place) if place is not None else ""
        details = dict(base)
        _equipment_details(group, ctx, details)
        details.update(transport.details)
        reading.events.append(_event(
            event_type, _time(dtm, ctx), subject, location,
            docs.bls + docs.bookings + transport.vessels, details, flags, line=eqd.position))
    if not reading.events:
        raise MessageError("no-containers", f"{ctx.message_type}: no container (EQD+CN), only "
                           "other equipment", line=groups[0][0].position)
    return reading


def read_codeco(ctx: Context, body: Sequence[Seg]) -> Reading:
    """A CODECO: one ``TERMINAL.GTIN`` / ``GTOT`` per container."""
    return _container_moves(ctx, body, CODECO_DOCUMENTS)


def read_coarri(ctx: Context, body: Sequence[Seg]) -> Reading:
    """A COARRI: one ``TERMINAL.DISC`` / ``LOAD`` per container."""
    return _container_moves(ctx, body, COARRI_DOCUMENTS)


# -- COPARN ----------------------------------------------------------------------------------
def read_coparn(ctx: Context, body: Sequence[Seg]) -> Reading:
    """A COPARN release order: one ``SHIPMENT.RELS`` per container (or one for the B/L)."""
    segs, groups = _split(body, "EQD")
    header = _Group(segs)
    bgm = header.first("BGM")
    code = _document(bgm, COPARN_RELEASES, ctx)
    assert bgm is not None  # _document refuses a message without one
    transport = _transport(header.first("TDT", "20"))
    message_documents = _Documents.message(header)
    issued = header.dated(("137",))
    when = (_time(issued, ctx) if issued is not None
            else ctx.envelope.prepared_at or ctx.received_at)
    place = header.locations.get("165")
    location = _unlocode(place) if place is not None else ""
    order: dict[str, Any] = {"documentCode": code}
    if bgm.text(1):
        order["reference"] = bgm.text(1)[:35]
    base = ctx.base_details()
    reading = Reading()
    for segments in groups or [[]]:
        group = _Group(segments)
        docs = _Documents.of(group, message_documents)
        flags = transport.flags + docs.flags
        details = dict(base)
        release = dict(order)
        until = group.dated(("400", "36")) or header.dated(("400", "36"))
        if until is not None:
            release["validUntil"] = iso_time(_time(until, ctx))
        line = bgm.position
        documents = docs.bls + docs.bookings
        if segments:
            eqd = segments[0]
            line = eqd.position
            _equipment_details(group, ctx, details)
            count = group.first("EQN")
            quantity = count.text(0, 0) if count is not None else ""
            if quantity.isascii() and quantity.isdigit():
                release["quantity"] = int(quantity[:6])
            if eqd.text(1, 0):
                subject = _container(eqd, flags)
            elif documents:
                subject = documents[0]
            else:
                raise MessageError("missing-reference", f"EQD segment {eqd.position}: a "
                                   "release names a container, a B/L (RFF+BM) or a booking "
                                   "(RFF+BN)", line=eqd.position)
        elif documents:
            subject = documents[0]
        else:
            raise MessageError("missing-reference", "COPARN release without a container, "
                               "B/L (RFF+BM) or booking (RFF+BN)", line=bgm.position)
        details["releaseOrder"] = release
        details.update(transport.details)
        reading.events.append(_event("SHIPMENT.RELS", when, subject, location,
                                     documents + transport.vessels, details, flags, line=line))
    return reading


# -- IFTSTA ----------------------------------------------------------------------------------
#: ``DTM`` qualifiers of a status's time, in order of preference.
_STATUS_TIMES = ("334", "7", "178", "186")

#: Tags that open a sub-group of a status (transport, equipment, goods).
_STATUS_PARTS = frozenset({"TDT", "EQD", "GID"})


def _status_parts(status: Sequence[Seg]) -> tuple[list[Seg], list[list[Seg]]]:
    """A status's own segments (before its first TDT, EQD or GID) and its EQD groups."""
    own: list[Seg] = []
    eqds: list[list[Seg]] = []
    current: list[Seg] | None = None
    opened = False
    for seg in status:
        if seg.tag in _STATUS_PARTS:
            opened = True
            current = [seg] if seg.tag == "EQD" else None
            if current is not None:
                eqds.append(current)
        elif current is not None:
            current.append(seg)
        elif not opened:
            own.append(seg)
    return own, eqds


def _consignment(ctx: Context, cni: list[Seg], message_documents: _Documents
                 ) -> list[CanonicalEvent]:
    """The events of one consignment (``CNI`` group); raises to refuse the consignment."""
    head, statuses = _split(cni, "STS", stop=frozenset())
    if not statuses:
        raise MessageError("missing-segment", f"CNI segment {cni[0].position}: no status (STS)",
                           line=cni[0].position)
    events: list[CanonicalEvent] = []
    for status in statuses:
        sts = status[0]
        code = sts.text(1, 0)
        if code not in IFTSTA_STATUS:
            raise MessageError("unmapped-status", f"STS segment {sts.position}: status event "
                               f"code {code!r} (UN/ECE Rec. 24) is not in the mapping table "
                               f"({', '.join(IFTSTA_STATUS)}); consignment "
                               f"{cni[0].text(0) or '?'} refused", line=sts.position)
        name, event_type = IFTSTA_STATUS[code]
        own_segs, eqds = _status_parts(status)
        own = _Group(own_segs)
        transport = _transport(_Group(status).first("TDT"))
        docs = _Documents.of(own, message_documents)
        flags = transport.flags + docs.flags
        dtm = own.dated(_STATUS_TIMES)
        if dtm is None:
            raise MessageError("missing-event-time", f"STS segment {sts.position}: no DTM+"
                               f"{'/'.join(_STATUS_TIMES)}", line=sts.position)
        when = _time(dtm, ctx)
        place = next((s for s in own_segs if s.tag == "LOC" and s.text(1)), None) or next(
            (s for s in head if s.tag == "LOC" and s.text(1)), None)
        location = _unlocode(place) if place is not None else ""
        base = ctx.base_details()
        base["status"] = {"code": code, "name": name}
        if cni[0].text(1, 0):
            base["consignmentReference"] = cni[0].text(1, 0)[:35]
        base.update(transport.details)
        family = event_type.split(".", 1)[0]
        documents = docs.bls + docs.bookings
        if family in ("TERMINAL", "EQUIPMENT") and eqds:
            for segments in eqds:
                own_flags = list(flags)
                container = _container(segments[0], own_flags)
                details = dict(base)
                _equipment_details(_Group(segments), ctx, details)
                events.append(_event(event_type, when, container, location,
                                     documents + transport.vessels, details, own_flags,
                                     line=segments[0].position))
            continue
        containers = [_container(segments[0], flags) for segments in eqds]
        if family == "TRANSPORT" and transport.vessel is not None:
            subject, related = transport.vessel, documents
        elif documents:
            subject, related = documents[0], documents[1:] + transport.vessels
        else:
            raise MessageError("missing-reference", f"STS segment {sts.position}: no B/L "
                               "(RFF+BM), booking (RFF+BN)" + (
                                   " or vessel (TDT)" if family == "TRANSPORT" else "")
                               + " to record the status on", line=sts.position)
        details = dict(base)
        if containers:
            details["containers"] = [c.value for c in containers][:64]
            related = related + containers
        events.append(_event(event_type, when, subject, location, related, details, flags,
                             line=sts.position))
    return events


def read_iftsta(ctx: Context, body: Sequence[Seg]) -> Reading:
    """An IFTSTA: each consignment's statuses, or one ``unmapped-status`` (or other) refusal
    per consignment that cannot be read."""
    header, consignments = _split(body, "CNI", stop=frozenset())
    if not consignments:
        raise MessageError("missing-segment", "IFTSTA without a consignment (CNI)",
                           line=header[-1].position if header else 1)
    message_documents = _Documents.message(_Group(header))
    reading = Reading()
    for cni in consignments:
        try:
            reading.events.extend(_consignment(ctx, cni, message_documents))
        except MessageError as exc:
            reading.refused.append(exc)
    return reading


#: Message type → reader.
READERS: dict[str, Callable[[Context, Sequence[Seg]], Reading]] = {
    "CODECO": read_codeco,
    "COARRI": read_coarri,
    "COPARN": read_coparn,
    "IFTSTA": read_iftsta,
}
