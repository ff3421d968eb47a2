"""CODECO, COARRI, COPARN and IFTSTA messages as canonical events (pure).

Each reader takes one message's segments (read by :mod:`gateway.feeds.edifact_syntax`, the
groups' pieces in :mod:`gateway.feeds.edifact_groups`) and returns its events, or raises :class:`~gateway.feeds.model.MessageError` (``line`` = the
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
or barge of a gate move), ``dangerousGoods``; COPARN adds ``releaseOrder`` (``documentCode``,
``reference``, ``validUntil`` from ``DTM+400`` or ``36``, ``quantity`` from ``EQN``) and IFTSTA
``status`` (Rec. 24 ``code`` and ``name``), ``consignmentReference`` (``CNI``) and, on a
document-level status, ``containers``. A check digit that fails is in ``flags`` (field, code,
value, message).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.events.model import CanonicalEvent
from gateway.feeds.edifact_groups import (
    Documents,
    Group,
    container_of,
    equipment_details,
    event_time,
    main_carriage,
    make_event,
    split,
    unlocode,
)
from gateway.feeds.edifact_syntax import Seg, Syntax
from gateway.feeds.model import MessageError
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


# -- CODECO and COARRI -----------------------------------------------------------------------
def _container_moves(ctx: Context, body: Sequence[Seg], documents: dict[str, str]) -> Reading:
    segs, groups = split(body, "EQD")
    header = Group(segs)
    bgm = header.first("BGM")
    code = _document(bgm, documents, ctx)
    event_type = documents[code]
    transport = main_carriage(header.first("TDT", "20"))
    message_documents = Documents.message(header)
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
        group = Group(segments)
        docs = Documents.of(group, message_documents)
        flags = list(transport.flags)
        subject = container_of(eqd, flags)
        dtm = group.dated(("7", "203")) or header_time
        if dtm is None:
            raise MessageError("missing-event-time", f"EQD segment {eqd.position} "
                               f"({subject.value}): no DTM+7 or DTM+203", line=eqd.position)
        place = group.locations.get("165") or default_place
        location = unlocode(place) if place is not None else ""
        details = dict(base)
        equipment_details(group, ctx.syntax, details)
        details.update(transport.details)
        reading.events.append(make_event(
            event_type, event_time(dtm, ctx.local_offset), subject, location,
            docs.all + transport.vessels, details, flags, line=eqd.position))
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
    segs, groups = split(body, "EQD")
    header = Group(segs)
    bgm = header.first("BGM")
    code = _document(bgm, COPARN_RELEASES, ctx)
    assert bgm is not None  # _document refuses a message without one
    transport = main_carriage(header.first("TDT", "20"))
    message_documents = Documents.message(header)
    issued = header.dated(("137",))
    when = (event_time(issued, ctx.local_offset) if issued is not None
            else ctx.envelope.prepared_at or ctx.received_at)
    place = header.locations.get("165")
    location = unlocode(place) if place is not None else ""
    order: dict[str, Any] = {"documentCode": code}
    if bgm.text(1):
        order["reference"] = bgm.text(1)[:35]
    base = ctx.base_details()
    reading = Reading()
    for segments in groups or [[]]:
        group = Group(segments)
        docs = Documents.of(group, message_documents)
        flags = list(transport.flags)
        details = dict(base)
        release = dict(order)
        until = group.dated(("400", "36")) or header.dated(("400", "36"))
        if until is not None:
            release["validUntil"] = iso_time(event_time(until, ctx.local_offset))
        line = bgm.position
        documents = docs.all
        if segments:
            eqd = segments[0]
            line = eqd.position
            equipment_details(group, ctx.syntax, details)
            count = group.first("EQN")
            quantity = count.text(0, 0) if count is not None else ""
            if quantity.isascii() and quantity.isdigit():
                release["quantity"] = int(quantity[:6])
            if eqd.text(1, 0):
                subject = container_of(eqd, flags)
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
        reading.events.append(make_event("SHIPMENT.RELS", when, subject, location,
                                     documents + transport.vessels, details, flags, line=line))
    return reading


# -- IFTSTA ----------------------------------------------------------------------------------
#: Most containers a document-level status lists in ``details.containers`` (more would not fit
#: a sealed record with eight named readers).
MAX_LISTED = 32

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


def _consignment(ctx: Context, cni: list[Seg], message_documents: Documents
                 ) -> list[CanonicalEvent]:
    """The events of one consignment (``CNI`` group); raises to refuse the consignment."""
    head, statuses = split(cni, "STS", stop=frozenset())
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
        own = Group(own_segs)
        transport = main_carriage(Group(status).first("TDT"))
        docs = Documents.of(own, message_documents)
        flags = list(transport.flags)
        dtm = own.dated(_STATUS_TIMES)
        if dtm is None:
            raise MessageError("missing-event-time", f"STS segment {sts.position}: no DTM+"
                               f"{'/'.join(_STATUS_TIMES)}", line=sts.position)
        when = event_time(dtm, ctx.local_offset)
        place = next((s for s in own_segs if s.tag == "LOC" and s.text(1)), None) or next(
            (s for s in head if s.tag == "LOC" and s.text(1)), None)
        location = unlocode(place) if place is not None else ""
        base = ctx.base_details()
        base["status"] = {"code": code, "name": name}
        if cni[0].text(1, 0):
            base["consignmentReference"] = cni[0].text(1, 0)[:35]
        base.update(transport.details)
        family = event_type.split(".", 1)[0]
        documents = docs.all
        if family in ("TERMINAL", "EQUIPMENT") and eqds:
            for segments in eqds:
                own_flags = list(flags)
                container = container_of(segments[0], own_flags)
                details = dict(base)
                equipment_details(Group(segments), ctx.syntax, details)
                events.append(make_event(event_type, when, container, location,
                                     documents + transport.vessels, details, own_flags,
                                     line=segments[0].position))
            continue
        containers = [container_of(segments[0], flags) for segments in eqds]
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
            details["containers"] = [c.value for c in containers][:MAX_LISTED]
            related = related + containers
        events.append(make_event(event_type, when, subject, location, related, details, flags,
                             line=sts.position))
    return events


def read_iftsta(ctx: Context, body: Sequence[Seg]) -> Reading:
    """An IFTSTA: each consignment's statuses, or one ``unmapped-status`` (or other) refusal
    per consignment that cannot be read."""
    header, consignments = split(body, "CNI", stop=frozenset())
    if not consignments:
        raise MessageError("missing-segment", "IFTSTA without a consignment (CNI)",
                           line=header[-1].position if header else 1)
    message_documents = Documents.message(Group(header))
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
