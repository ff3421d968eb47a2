"""The canonical cargo event: the one model every adapter produces and every reader consumes.

A feed adapter (DCSA JSON, EDIFACT, AIS, a web form) is a pure function from its format to
:class:`CanonicalEvent`; the write path seals the event's *plaintext* (:func:`plaintext`) into
an encrypted envelope and records it with :mod:`contracts.cargo`; readers decrypt the envelope
and get the same :class:`CanonicalEvent` back with :func:`from_plaintext`.

What is public and what is not
------------------------------
On chain, in clear: the event type, classifier, event time, UN/LOCODE, the subject key (the
keccak-256 of the normalised reference — an index, not a secret), the publisher and the payload
hash. Everything else — the reference itself, related references, vessel, seals, temperatures,
parties — is in :attr:`CanonicalEvent.details` and the plaintext, which only readers the owner
chose can decrypt.

JSON form
---------
The API's canonical event (:data:`EVENT_SCHEMA`)::

    {"type": "TERMINAL.DISC", "classifier": "ACT", "time": "2026-11-24T08:15:00Z",
     "subject": {"kind": "container", "value": "CSQU3054383"}, "location": "HKHKG",
     "related": [{"kind": "mbl", "value": "PCOL1234567"}],
     "details": {"vessel": {"imo": "9321483", "name": "EVER GIVEN"}},
     "visibility": {"mode": "named", "readers": [4, 11]},
     "retracts": 0}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.cargo import CLASSIFIERS, EVENT_TYPES, CargoEventInput, subject_key
from gateway import jsonbody
from gateway.events import identifiers
from gateway.isotime import iso_time

#: Kinds of reference a subject (or a related reference) can be.
REFERENCE_KINDS: tuple[str, ...] = (
    "container",  # ISO 6346 container number
    "mbl",  # master bill of lading (carrier's transport document)
    "hbl",  # house bill of lading (forwarder's)
    "booking",  # carrier booking reference
    "awb",  # air waybill
    "declaration",  # customs declaration number
    "vessel",  # IMO number
    "truck",  # vehicle registration / trip id
    "shipment",  # any other shipment reference
)

#: Visibility modes a publisher chooses per record.
VISIBILITY_MODES: tuple[str, ...] = ("named", "reference")

#: Largest details object, as compact JSON.
MAX_DETAILS_BYTES = 2048

#: Version of the plaintext layout.
PLAINTEXT_VERSION = 1


class EventError(ValueError):
    """An event breaks a rule of the canonical model; ``field`` names where."""

    def __init__(self, message: str, *, field: str = "", code: str = "invalid-event") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Reference:
    """A reference number of a given kind, normalised."""

    kind: str
    """One of :data:`REFERENCE_KINDS`."""
    value: str
    """Normalised reference (upper case, no separators; check digits verified)."""

    @property
    def key(self) -> bytes:
        """The subject key the chain indexes it by."""
        return subject_key(self.value)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Visibility:
    """Who may read a record besides its owner."""

    mode: str = "named"
    """``named``: only the owner and :attr:`readers`; ``reference``: also whoever holds the
    subject's reference number."""
    readers: tuple[int, ...] = ()
    """Consortium organisation ids of named readers (any mode)."""

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "readers": list(self.readers)}


@dataclass(frozen=True)
class CanonicalEvent:
    """One thing that happened (or is planned or estimated to happen) to a subject."""

    event_type: str
    """``FAMILY.CODE``, a key of :data:`contracts.cargo.EVENT_TYPES`, e.g. ``TERMINAL.DISC``."""
    classifier: str
    """``PLN`` planned, ``EST`` estimated or ``ACT`` actual (DCSA eventClassifierCode)."""
    event_time: int
    """When it happened, Unix seconds (UTC)."""
    subject: Reference
    """What it happened to."""
    location: str = ""
    """UN/LOCODE of where it happened, or empty."""
    related: tuple[Reference, ...] = ()
    """Other references it concerns (a container's B/L, the vessel, a booking)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Everything else, private to the readers (vessel, seals, temperatures, parties...)."""
    visibility: Visibility = Visibility()
    """Who may read it; not part of the plaintext."""
    retracts: int = 0
    """On-chain id of an earlier event of the same publisher this one corrects, or 0."""

    @property
    def type_code(self) -> int:
        return EVENT_TYPES[self.event_type]

    @property
    def family(self) -> str:
        return self.event_type.split(".", 1)[0]

    @property
    def code(self) -> str:
        return self.event_type.split(".", 1)[1]

    def to_json(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "type": self.event_type,
            "classifier": self.classifier,
            "time": iso_time(self.event_time),
            "subject": self.subject.to_json(),
            "location": self.location,
            "related": [r.to_json() for r in self.related],
            "details": self.details,
            "visibility": self.visibility.to_json(),
            "retracts": self.retracts,
        }


def parse_time(text: str, *, field: str = "time") -> int:
    """An ISO 8601 date-time with a zone (``Z`` or an offset) as Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise EventError(f"{text!r} is not an ISO 8601 date-time", field=field) from None
    if moment.tzinfo is None:
        raise EventError(f"{text!r} has no time zone (add Z or an offset)", field=field)
    seconds = int(moment.timestamp())
    if not 0 < seconds < 1 << 40:
        raise EventError(f"{text!r} is out of range", field=field)
    return seconds


def parse_reference(raw: Any, *, field: str) -> Reference:
    """A ``{"kind", "value"}`` object as a normalised :class:`Reference`."""
    if not isinstance(raw, dict) or set(raw) != {"kind", "value"}:
        raise EventError("a reference is {kind, value}", field=field)
    kind, value = raw["kind"], raw["value"]
    if kind not in REFERENCE_KINDS:
        raise EventError(f"unknown reference kind {kind!r}", field=f"{field}/kind")
    if not isinstance(value, str):
        raise EventError("a reference value is a string", field=f"{field}/value")
    try:
        return Reference(kind, identifiers.normalise(kind, value))
    except identifiers.IdentifierError as exc:
        raise EventError(str(exc), field=f"{field}/value", code=exc.code) from None


def validate(event: CanonicalEvent) -> CanonicalEvent:
    """Check the rules a schema cannot express; return the event unchanged."""
    if event.event_type not in EVENT_TYPES:
        raise EventError(f"unknown event type {event.event_type!r}", field="type")
    if event.classifier not in CLASSIFIERS:
        raise EventError(f"classifier must be PLN, EST or ACT, not {event.classifier!r}",
                         field="classifier")
    if event.location:
        try:
            identifiers.normalise("unlocode", event.location)
        except identifiers.IdentifierError as exc:
            raise EventError(str(exc), field="location", code=exc.code) from None
    if event.visibility.mode not in VISIBILITY_MODES:
        raise EventError(f"visibility mode must be one of {VISIBILITY_MODES}",
                         field="visibility/mode")
    if len(set(event.visibility.readers)) != len(event.visibility.readers):
        raise EventError("a reader is named twice", field="visibility/readers")
    if len(json.dumps(event.details, separators=(",", ":"))) > MAX_DETAILS_BYTES:
        raise EventError(f"details exceed {MAX_DETAILS_BYTES} bytes of JSON", field="details")
    if event.retracts < 0 or event.retracts >= 1 << 64:
        raise EventError("retracts is an event id", field="retracts")
    return event


def from_json(raw: dict[str, Any]) -> CanonicalEvent:
    """Build an event from its (schema-checked) JSON form; raises :class:`EventError`."""
    visibility = raw.get("visibility") or {}
    event = CanonicalEvent(
        event_type=raw["type"],
        classifier=raw["classifier"],
        event_time=parse_time(raw["time"]),
        subject=parse_reference(raw["subject"], field="/subject"),
        location=(raw.get("location") or "").upper(),
        related=tuple(
            parse_reference(r, field=f"/related/{i}") for i, r in enumerate(raw.get("related", []))
        ),
        details=raw.get("details") or {},
        visibility=Visibility(
            mode=visibility.get("mode", "named"),
            readers=tuple(visibility.get("readers", ())),
        ),
        retracts=raw.get("retracts", 0),
    )
    return validate(event)


def plaintext(event: CanonicalEvent) -> bytes:
    """The bytes that are encrypted and hashed: canonical JSON (sorted keys, no spaces).

    The visibility is not part of it (it is the envelope's business); the retraction and the
    clear header fields are repeated so a decrypted record stands on its own.
    """
    body = {
        "v": PLAINTEXT_VERSION,
        "type": event.event_type,
        "classifier": event.classifier,
        "time": event.event_time,
        "subject": event.subject.to_json(),
        "location": event.location,
        "related": [r.to_json() for r in event.related],
        "details": event.details,
        "retracts": event.retracts,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def from_plaintext(data: bytes, *, visibility: Visibility | None = None) -> CanonicalEvent:
    """Decode :func:`plaintext` output (after decryption)."""
    try:
        body = jsonbody.loads(data)
        if body.get("v") != PLAINTEXT_VERSION:
            raise EventError(f"unknown plaintext version {body.get('v')!r}")
        return CanonicalEvent(
            event_type=body["type"],
            classifier=body["classifier"],
            event_time=int(body["time"]),
            subject=Reference(**body["subject"]),
            location=body.get("location", ""),
            related=tuple(Reference(**r) for r in body.get("related", [])),
            details=body.get("details", {}),
            visibility=visibility or Visibility(),
            retracts=int(body.get("retracts", 0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EventError(f"not a canonical event plaintext: {exc}") from None


def to_cargo_input(event: CanonicalEvent, envelope: bytes, payload_hash: bytes) -> CargoEventInput:
    """The on-chain form of a sealed event (:mod:`contracts.cargo`)."""
    return CargoEventInput(
        subject=event.subject.key,
        event_type=event.type_code,
        classifier=CLASSIFIERS[event.classifier],
        event_time=event.event_time,
        location=event.location,
        payload_hash=payload_hash,
        payload=envelope,
        retracts=event.retracts,
    )


_REFERENCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "value"],
    "properties": {
        "kind": {"enum": list(REFERENCE_KINDS)},
        "value": {"type": "string", "minLength": 1, "maxLength": 35},
    },
}

#: JSON Schema of one canonical event as the API takes it.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "classifier", "time", "subject"],
    "properties": {
        "type": {"enum": sorted(EVENT_TYPES)},
        "classifier": {"enum": list(CLASSIFIERS)},
        "time": {"type": "string", "format": "date-time", "maxLength": 40},
        "subject": _REFERENCE_SCHEMA,
        "location": {"type": "string", "pattern": "^([A-Za-z]{2}[A-Za-z2-9]{3})?$"},
        "related": {"type": "array", "maxItems": 16, "items": _REFERENCE_SCHEMA},
        "details": {"type": "object", "maxProperties": 64},
        "visibility": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mode": {"enum": list(VISIBILITY_MODES)},
                "readers": {
                    "type": "array",
                    "maxItems": 8,
                    "items": {"type": "integer", "minimum": 1, "maximum": 4294967295},
                },
            },
        },
        "retracts": {"type": "integer", "minimum": 0, "maximum": 18446744073709551615},
    },
}
