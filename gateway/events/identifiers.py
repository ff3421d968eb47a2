"""Reference numbers of the port: check digits, normal forms, and what a typed string may be.

People type reference numbers from paper, e-mails and screens: with spaces, dashes, lower
case, an ``IMO`` prefix, the air waybill's dash. Every reference the gateway stores, hashes
into a subject key (:func:`contracts.cargo.subject_key`) or looks up goes through
:func:`normalise` first, so that one container or bill of lading always has one spelling, and a
mistyped check digit is refused at the door instead of creating a second, unreachable subject.

Identifier rules
----------------
container (ISO 6346)
    Owner code (3 letters), equipment category (``U`` freight container, ``J`` detachable
    container-related equipment, ``Z`` trailer or chassis), a 6-digit serial number and a
    check digit. Each of the first ten characters gets a value (digits their own; letters
    ``A`` = 10 upwards, skipping the multiples of 11: ``A`` 10, ``B`` 12 ... ``K`` 21, ``L``
    23 ... ``U`` 32, ``V`` 34 ... ``Z`` 38), weighted by ``2 ** position``; the sum modulo 11
    is the check digit, a remainder of 10 being written 0. ``CSQU305438`` → ``3``.
vessel (IMO number)
    Seven digits; the first six weighted 7, 6, 5, 4, 3, 2; the sum's last digit is the
    seventh. ``IMO 9074729`` and ``9074729`` are the same vessel.
awb (IATA air waybill)
    A 3-digit airline prefix and an 8-digit serial whose last digit is the first seven modulo
    7: ``176-12345675``. The normal form has no dash (``17612345675``).
mbl, hbl, booking (DCSA transport document / booking reference)
    Letters and digits only, at most 20 characters (the DCSA limit of
    ``transportDocumentReference`` and ``carrierBookingReference``); separators removed.
declaration, truck, shipment
    Letters and digits, at most 35 characters (UN/EDIFACT's ``an..35``).
unlocode (UN/LOCODE)
    Two letters (country) and three of ``A-Z`` or ``2-9``.

Carriers
--------
Ocean carriers prefix their bill of lading and booking numbers with their SCAC (``MAEU...``,
``HLCU...``) and own containers under BIC owner codes (``MSKU...``). :func:`carrier_of` knows
the major carriers' prefixes (:data:`CARRIERS`, not exhaustive) and the demo carrier ``PCOL``
(Pacific Ocean Line).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

#: Characters people put between the parts of a reference number.
_SEPARATORS = re.compile(r"[\s\-/._]+")

#: ISO 6346 letter values: A = 10, skipping multiples of 11 (11, 22, 33).
_LETTER_VALUES: dict[str, int] = {}
_value = 10
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    if _value % 11 == 0:
        _value += 1
    _LETTER_VALUES[_letter] = _value
    _value += 1
del _value, _letter

#: ISO 6346 equipment category identifiers.
CONTAINER_CATEGORIES = "UJZ"

_CONTAINER = re.compile(r"[A-Z]{3}[UJZ][0-9]{7}")
_CONTAINER_SHAPE = re.compile(r"[A-Z]{3}[UJZ][0-9]{6,7}")
_IMO = re.compile(r"(?:IMO)?([0-9]{7})")
_AWB = re.compile(r"[0-9]{11}")
_UNLOCODE = re.compile(r"[A-Z]{2}[A-Z2-9]{3}")
_ALNUM = re.compile(r"[A-Z0-9]+")

#: Longest B/L or booking reference (DCSA ``transportDocumentReference``).
MAX_DOCUMENT_REFERENCE = 20

#: Longest declaration, truck or shipment reference (EDIFACT an..35).
MAX_OTHER_REFERENCE = 35

#: Kinds :func:`normalise` accepts (``gateway.events.model.REFERENCE_KINDS`` and ``unlocode``).
KINDS: tuple[str, ...] = (
    "container",
    "mbl",
    "hbl",
    "booking",
    "awb",
    "declaration",
    "vessel",
    "truck",
    "shipment",
    "unlocode",
)


class IdentifierError(ValueError):
    """A reference number is malformed or fails its check digit.

    ``code`` is the stable error code the API returns (``invalid-container-number``,
    ``invalid-check-digit``, ``invalid-imo-number``, ``invalid-air-waybill``,
    ``invalid-unlocode``, ``invalid-reference``); ``expected`` is the check digit the number
    should have had, when the only fault is the check digit.
    """

    def __init__(self, message: str, *, code: str, expected: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.expected = expected


@dataclass(frozen=True)
class Carrier:
    """An ocean carrier known by its SCAC or container owner prefix."""

    scac: str
    """The carrier's main Standard Carrier Alpha Code, e.g. ``MAEU``."""
    name: str
    """Its name, e.g. ``Maersk``."""


@dataclass(frozen=True)
class Candidate:
    """One thing a typed string could be (see :func:`detect`)."""

    kind: str
    """A reference kind (one of :data:`KINDS` but ``unlocode``)."""
    value: str
    """The normalised value (for an invalid container, the typed characters normalised)."""
    carrier: str | None = None
    """Name of the carrier its prefix names, if any."""
    valid: bool = True
    """False for a container number whose check digit is wrong (see :attr:`note`)."""
    note: str = ""
    """Why it is a candidate or what is wrong with it, in plain words."""


_CARRIER_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (SCAC, name, every prefix: SCACs then BIC container owner codes)
    ("MAEU", "Maersk", ("MAEU", "MAEI", "MSKU", "MRKU")),
    ("MSCU", "MSC", ("MSCU", "MEDU")),
    ("CMDU", "CMA CGM", ("CMDU", "CMAU")),
    ("COSU", "COSCO Shipping", ("COSU", "CBHU", "CCLU")),
    ("HLCU", "Hapag-Lloyd", ("HLCU", "HLXU", "HLBU")),
    ("ONEY", "Ocean Network Express", ("ONEY", "ONEU")),
    ("EGLV", "Evergreen", ("EGLV", "EGHU", "EMCU")),
    ("OOLU", "OOCL", ("OOLU", "OOCU")),
    ("YMLU", "Yang Ming", ("YMLU", "YMMU")),
    ("HDMU", "HMM", ("HDMU",)),
    ("ZIMU", "ZIM", ("ZIMU",)),
    ("WHLC", "Wan Hai Lines", ("WHLC", "WHLU")),
    ("PCIU", "PIL", ("PCIU",)),
    ("SMLM", "SM Line", ("SMLM",)),
    ("PCOL", "Pacific Ocean Line", ("PCOL", "PCOU")),
)

#: Carriers by every 4-letter prefix they use on B/Ls, bookings and containers.
CARRIERS: dict[str, Carrier] = {
    prefix: Carrier(scac, name)
    for scac, name, prefixes in _CARRIER_TABLE
    for prefix in prefixes
}


def compact(text: str) -> str:
    """Upper case, separators removed."""
    return _SEPARATORS.sub("", text.strip().upper())


# -- check digits ----------------------------------------------------------------------------
def container_check_digit(first_ten: str) -> int:
    """The ISO 6346 check digit of an owner code, category and serial.

    Parameters
    ----------
    first_ten : str
        Ten characters: 3-letter owner code, category letter, 6-digit serial (upper case).

    Returns
    -------
    int
        The check digit, 0..9 (a remainder of 10 is written 0).
    """
    if len(first_ten) != 10:
        raise ValueError("ISO 6346 check digit needs owner code, category and 6 digits")
    total = 0
    for position, char in enumerate(first_ten):
        value = _LETTER_VALUES[char] if char.isalpha() else int(char)
        total += value << position
    return total % 11 % 10


def imo_check_digit(first_six: str) -> int:
    """The check digit of an IMO ship number's first six digits (weights 7..2, mod 10)."""
    return sum(int(d) * w for d, w in zip(first_six, range(7, 1, -1), strict=True)) % 10


def awb_check_digit(serial_seven: str) -> int:
    """The check digit of an air waybill serial's first seven digits (mod 7)."""
    return int(serial_seven) % 7


# -- normalisation ---------------------------------------------------------------------------
def normalise_container(text: str) -> str:
    """An ISO 6346 container number in its normal form (``CSQU3054383``).

    Raises
    ------
    IdentifierError
        ``invalid-container-number`` if malformed, ``invalid-check-digit`` if only the check
        digit is wrong (the message and :attr:`IdentifierError.expected` give the right one).
    """
    value = compact(text)
    if len(value) == 10 and re.fullmatch(r"[A-Z]{3}[UJZ][0-9]{6}", value):
        digit = container_check_digit(value)
        raise IdentifierError(
            f"{value}: container number lacks its check digit (it would be {digit})",
            code="invalid-container-number",
            expected=str(digit),
        )
    if not _CONTAINER.fullmatch(value):
        if len(value) == 11 and value[:3].isalpha() and value[3].isalpha() and value[4:].isdigit():
            raise IdentifierError(
                f"{value}: equipment category must be U, J or Z, not {value[3]}",
                code="invalid-container-number",
            )
        raise IdentifierError(
            f"{text!r} is not a container number (ISO 6346: 3-letter owner code, U/J/Z, "
            "6 digits and a check digit, e.g. CSQU3054383)",
            code="invalid-container-number",
        )
    digit = container_check_digit(value[:10])
    if int(value[10]) != digit:
        raise IdentifierError(
            f"{value}: check digit is {digit}, not {value[10]}",
            code="invalid-check-digit",
            expected=str(digit),
        )
    return value


def normalise_imo(text: str) -> str:
    """An IMO ship number as its seven digits (``IMO 9074729`` → ``9074729``)."""
    value = compact(text)
    match = _IMO.fullmatch(value)
    if not match:
        raise IdentifierError(
            f"{text!r} is not an IMO number (7 digits, e.g. IMO 9074729)",
            code="invalid-imo-number",
        )
    digits = match.group(1)
    digit = imo_check_digit(digits[:6])
    if int(digits[6]) != digit:
        raise IdentifierError(
            f"IMO {digits}: check digit is {digit}, not {digits[6]}",
            code="invalid-check-digit",
            expected=str(digit),
        )
    return digits


def normalise_awb(text: str) -> str:
    """An air waybill as 11 digits (``176-12345675`` → ``17612345675``)."""
    value = compact(text)
    if not _AWB.fullmatch(value):
        raise IdentifierError(
            f"{text!r} is not an air waybill (3-digit airline prefix and 8 digits, "
            "e.g. 176-12345675)",
            code="invalid-air-waybill",
        )
    digit = awb_check_digit(value[3:10])
    if int(value[10]) != digit:
        raise IdentifierError(
            f"{value[:3]}-{value[3:]}: check digit is {digit}, not {value[10]}",
            code="invalid-check-digit",
            expected=str(digit),
        )
    return value


def normalise_unlocode(text: str) -> str:
    """A UN/LOCODE in upper case without the space (``HK HKG`` → ``HKHKG``)."""
    value = compact(text)
    if not _UNLOCODE.fullmatch(value):
        raise IdentifierError(
            f"{text!r} is not a UN/LOCODE (2-letter country and 3 of A-Z, 2-9, e.g. HKHKG)",
            code="invalid-unlocode",
        )
    return value


def _normalise_alnum(text: str, kind: str, limit: int) -> str:
    value = compact(text)
    if not value or not _ALNUM.fullmatch(value):
        raise IdentifierError(
            f"{text!r} is not a {_KIND_NAMES[kind]}: letters and digits only",
            code="invalid-reference",
        )
    if len(value) > limit:
        raise IdentifierError(
            f"{value}: a {_KIND_NAMES[kind]} has at most {limit} characters, not {len(value)}",
            code="invalid-reference",
        )
    return value


_KIND_NAMES = {
    "mbl": "master bill of lading number",
    "hbl": "house bill of lading number",
    "booking": "booking reference",
    "declaration": "declaration number",
    "truck": "vehicle or trip reference",
    "shipment": "shipment reference",
}


def normalise(kind: str, text: str) -> str:
    """The normal form of a reference of a given kind.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    text : str
        What was typed or sent.

    Returns
    -------
    str
        Upper case, separators removed, check digits verified.

    Raises
    ------
    IdentifierError
        If the text is not a valid reference of that kind.
    """
    if not isinstance(text, str):
        raise IdentifierError("a reference is a string", code="invalid-reference")
    if kind == "container":
        return normalise_container(text)
    if kind == "vessel":
        return normalise_imo(text)
    if kind == "awb":
        return normalise_awb(text)
    if kind == "unlocode":
        return normalise_unlocode(text)
    if kind in ("mbl", "hbl", "booking"):
        return _normalise_alnum(text, kind, MAX_DOCUMENT_REFERENCE)
    if kind in ("declaration", "truck", "shipment"):
        return _normalise_alnum(text, kind, MAX_OTHER_REFERENCE)
    raise IdentifierError(f"unknown reference kind {kind!r}", code="invalid-reference")


# -- carriers and detection ------------------------------------------------------------------
def carrier_of(reference: str) -> Carrier | None:
    """The carrier whose SCAC or container owner code starts ``reference``, if known."""
    return CARRIERS.get(compact(reference)[:4])


def format_awb(value: str) -> str:
    """An 11-digit air waybill as people write it (``176-12345675``)."""
    return f"{value[:3]}-{value[3:]}"


def detect(text: str) -> list[Candidate]:
    """What a typed reference could be, best guess first.

    The order: a valid container number; a container-shaped string whose check digit is wrong
    (kept with ``valid=False`` and the right digit in the note, so a resolver can say "the
    check digit should be 3" instead of "not found"); an air waybill; an IMO number; a B/L or
    booking number starting with a known carrier's SCAC; then every generic kind the string's
    shape allows (B/L, booking, declaration, shipment).

    Parameters
    ----------
    text : str
        Whatever the user typed.

    Returns
    -------
    list of Candidate
        No kind twice; empty if the text is no reference at all (nothing but separators,
        other characters than letters and digits, or too long for any kind).
    """
    value = compact(text)
    if not value or not _ALNUM.fullmatch(value) or len(value) > MAX_OTHER_REFERENCE:
        return []
    carrier = carrier_of(value)
    name = carrier.name if carrier else None
    found: list[Candidate] = []

    if _CONTAINER_SHAPE.fullmatch(value):
        try:
            found.append(Candidate("container", normalise_container(value), name,
                                   note="ISO 6346 container number"))
        except IdentifierError as exc:
            if exc.expected is not None:  # right shape, wrong or missing check digit
                found.append(Candidate("container", value, name, valid=False, note=str(exc)))
    if len(value) == 11 and value.isdigit():
        with contextlib.suppress(IdentifierError):
            found.append(Candidate("awb", normalise_awb(value),
                                   note=f"air waybill {format_awb(value)}"))
    if _IMO.fullmatch(value):
        with contextlib.suppress(IdentifierError):
            found.append(Candidate("vessel", normalise_imo(value), note="IMO ship number"))
    generic = ["declaration", "shipment"]
    if len(value) <= MAX_DOCUMENT_REFERENCE:
        generic[:0] = ["mbl", "hbl", "booking"]
        if carrier is not None and not _CONTAINER_SHAPE.fullmatch(value):
            for kind in ("mbl", "booking"):
                found.append(Candidate(kind, value, name,
                                       note=f"{_KIND_NAMES[kind]} of {name} ({carrier.scac})"))
    seen = {c.kind for c in found}
    found.extend(Candidate(k, value, name, note=_KIND_NAMES[k]) for k in generic if k not in seen)
    return found
