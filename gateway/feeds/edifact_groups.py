"""Segment groups of UN/EDIFACT transport messages: what a group of segments says (pure).

A message is a header and groups (an ``EQD`` group per container, a ``CNI`` group per
consignment, an ``STS`` group per status); :mod:`gateway.feeds.edifact_messages` reads
CODECO, COARRI, COPARN and IFTSTA out of them with the pieces here: references by qualifier
(``RFF+BM`` bills of lading, ``RFF+BN`` bookings), places (``LOC``, UN/LOCODEs), times
(``DTM``), the main carriage (``TDT+20``: vessel, voyage, carrier), a container's number and
details (``EQD``, ``SEL``, ``MEA``, ``TMP``, ``DGS``, ``TDT``), and the canonical event they
make. Each raises :class:`~gateway.feeds.model.MessageError` with ``line`` = the index within
the message of the segment at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.events.identifiers import IdentifierError, normalise
from gateway.events.model import CanonicalEvent, Reference
from gateway.feeds.edifact_syntax import Seg, Syntax, date_time
from gateway.feeds.model import MessageError, checked, reference

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
MAX_RELATED = 16


def split(body: Sequence[Seg], start: str, *, stop: frozenset[str] = frozenset({"CNT"})
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


class Group:
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

    def documents(self, qualifier: str, kind: str) -> list[Reference]:
        """The ``RFF+qualifier`` values as references of ``kind`` (bills of lading and
        bookings have no check digit: nothing to flag)."""
        out: list[Reference] = []
        for value, seg in self.refs.get(qualifier, ()):
            try:
                out.append(reference(kind, value, [],
                                     field=f"RFF+{qualifier} segment {seg.position}"))
            except MessageError as exc:
                raise MessageError(exc.code, str(exc), line=seg.position) from None
        return out


@dataclass
class Documents:
    """The bills of lading (``RFF+BM``) and bookings (``RFF+BN``) an event names."""

    bls: list[Reference]
    bookings: list[Reference]

    @property
    def all(self) -> list[Reference]:
        return self.bls + self.bookings

    @staticmethod
    def of(group: Group, message: Documents) -> Documents:
        """``group``'s own, else ``message``'s (each kind on its own)."""
        return Documents(group.documents("BM", "mbl") or message.bls,
                         group.documents("BN", "booking") or message.bookings)

    @staticmethod
    def message(header: Group) -> Documents:
        """The message header's."""
        return Documents(header.documents("BM", "mbl"), header.documents("BN", "booking"))


def unlocode(seg: Seg) -> str:
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


def port_of(seg: Seg | None) -> str:
    """A port named in details: its UN/LOCODE normalised when it is one, else as written."""
    if seg is None:
        return ""
    value = seg.text(1)
    try:
        return normalise("unlocode", value)
    except IdentifierError:
        return value[:35]


def event_time(seg: Seg, local_offset: int) -> int:
    """The time of a ``DTM`` (local time at ``local_offset`` seconds east of UTC without a
    zone); a :class:`MessageError` names the segment."""
    try:
        return date_time(seg.text(0, 1), seg.text(0, 2), local_offset=local_offset,
                         field=f"DTM+{seg.text(0)} (segment {seg.position})")
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=seg.position) from None


def numeric(seg: Seg, text: str, syntax: Syntax) -> float:
    """A numeric component of ``seg``; a :class:`MessageError` names the segment."""
    try:
        return syntax.number(text, field=f"{seg.tag} segment {seg.position}")
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=seg.position) from None


def make_event(event_type: str, when: int, subject: Reference, location: str,
               related: Sequence[Reference], details: dict[str, Any],
               flags: list[dict[str, str]], *, line: int) -> CanonicalEvent:
    """An ``ACT`` event checked by the canonical model's rules (``details.flags`` set, related
    references without the subject and without repeats); a :class:`MessageError` names
    ``line``."""
    unique: list[Reference] = []
    for ref in related:
        if len(unique) == MAX_RELATED:
            break
        if ref != subject and ref not in unique:
            unique.append(ref)
    if flags:
        details["flags"] = flags
    try:
        return checked(CanonicalEvent(event_type, "ACT", when, subject, location,
                                      tuple(unique), details))
    except MessageError as exc:
        raise MessageError(exc.code, str(exc), line=line) from None


@dataclass
class Transport:
    """The main carriage (``TDT+20``): vessel, voyage, carrier."""

    details: dict[str, Any] = field(default_factory=dict)
    vessel: Reference | None = None
    flags: list[dict[str, str]] = field(default_factory=list)

    @property
    def vessels(self) -> list[Reference]:
        return [self.vessel] if self.vessel is not None else []


def main_carriage(seg: Seg | None) -> Transport:
    """What a ``TDT`` says of the vessel (an IMO number when C222's code list is ``146`` or it
    is seven digits; a malformed one is kept in details, not recorded on), voyage, carrier."""
    out = Transport()
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


def inland_transport(seg: Seg) -> dict[str, Any]:
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


def weight(seg: Seg, syntax: Syntax) -> tuple[str, dict[str, Any]] | None:
    """A ``MEA`` weight as (details member, ``{"value", "unit"}``), or None if not one."""
    member = _WEIGHTS.get(seg.text(1))
    value = seg.text(2, 1)
    if member is None or not value:
        return None
    number = numeric(seg, value, syntax)
    return member, {"value": int(number) if number.is_integer() else number,
                    "unit": seg.text(2, 0)[:3] or "KGM"}


def equipment_details(group: Group, syntax: Syntax, details: dict[str, Any]) -> None:
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
            measured = weight(seg, syntax)
            if measured is not None:
                details.setdefault(measured[0], measured[1])
        elif tag == "TMP" and seg.text(1, 0) and "temperature" not in details:
            setting = numeric(seg, seg.text(1, 0), syntax)
            details["temperature"] = {"value": setting, "unit": seg.text(1, 1)[:3] or "CEL"}
        elif tag == "TDT" and seg.text(0) != "20" and "inlandTransport" not in details:
            inland = inland_transport(seg)
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
        port = port_of(locations.get(qualifier))
        if port:
            details[member] = port
    place = locations.get("165")
    if place is not None and place.text(2):
        details["facility"] = place.text(2)[:35]


def container_of(eqd: Seg, flags: list[dict[str, str]]) -> Reference:
    """The ISO 6346 number of an ``EQD+CN`` (a wrong check digit appended to ``flags``)."""
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
