"""DCSA Track & Trace 2.2 events ⇄ canonical cargo events (pure), checked against the spec.

Carriers and terminals speak DCSA T&T: SHIPMENT events (a document changed state), TRANSPORT
events (a vessel arrived or departed at a transport call) and EQUIPMENT events (a container
was loaded, discharged, gated in or out, stuffed...). :func:`from_dcsa` turns one into the
gateway's :class:`~gateway.events.model.CanonicalEvent`; :func:`to_dcsa` turns a canonical event
(or a tracking :class:`~gateway.tracking.visibility.VisibleEvent`) back into a DCSA 2.2 event.

Validation
----------
:func:`validate` checks an incoming event against the spec's own schemas
(``tnt_v2.2.0.bundled.yaml``, loaded with PyYAML once, compiled with :mod:`jsonschema`): the
event type selects ``shipmentEvent``, ``transportEvent`` or ``equipmentEvent``, every
``$ref`` resolves inside the YAML's ``components``. The spec never closes its objects
(``additionalProperties`` is left open), so a typo such as ``equipmentRefrence`` would pass
silently; the gateway refuses every property the spec does not define for that object (a
"closed world" walk of the same schemas). One defect of the published file is corrected when
it is loaded: ``documentReferences[].documentReferenceType`` lists ``"BKG (Booking)"`` and
``"TRD (Transport Document)"`` as enum values where the spec's own example and every
implementation send ``"BKG"`` and ``"TRD"``; the enum becomes ``["BKG", "TRD"]``. Date-times
must carry a zone (RFC 3339).

Mapping
-------
- ``eventClassifierCode`` → ``classifier``; ``eventDateTime`` → ``event_time``.
- SHIPMENT ``shipmentEventTypeCode`` → ``SHIPMENT.<code>``; the subject is the ``documentID``:
  ``TRD`` → ``mbl`` (``hbl`` when the publisher is a forwarder: ``transport_document_kind``),
  ``BKG`` / ``CBR`` → ``booking``, any other document → ``shipment`` with
  ``details.documentTypeCode``.
- TRANSPORT ``ARRI`` / ``DEPA`` → ``TRANSPORT.<code>``; the subject is the vessel's IMO number
  (else the first transport document or booking reference); the location is the transport
  call's UN/LOCODE.
- EQUIPMENT ``LOAD`` ``DISC`` ``GTIN`` ``GTOT`` (events at a terminal) → ``TERMINAL.<code>``;
  the other equipment codes (``STUF`` ``STRP`` ``PICK`` ``DROP`` ``INSP`` ``RSEA`` ``RMVD``) →
  ``EQUIPMENT.<code>``; the subject is the ``equipmentReference`` (ISO 6346 checked), else the
  first document reference; the location is the ``eventLocation``'s, else the transport call's.
- ``documentReferences`` ``TRD`` / ``BKG`` → related ``mbl`` / ``booking``; ``references`` ``FF``
  (freight forwarder's reference) / ``EQ`` → related ``hbl`` / ``container``.
- ``transportCall.vessel`` → ``details.vessel`` = ``{"imo", "name", <other DCSA vessel
  fields>}`` (and a related ``vessel`` on equipment and shipment events);
  ``exportVoyageNumber`` → ``details.voyage``; ``carrierServiceCode`` → ``details.service``;
  the rest of the transport call → ``details.transportCall``.

Every other DCSA field (seals, emptyIndicatorCode, ISOEquipmentCode, eventLocation, the rest
of the transport call, delayReasonCode, changeRemark, reason, references and document
references that are not reference numbers of ours) is kept verbatim under its DCSA name in
``details``, so ``to_dcsa(from_dcsa(x))`` gives back ``x``'s content: the same codes, times,
references (normalised), vessel, transport call, seals and remarks. Not carried: ``eventID`` and
``eventCreatedDateTime`` (metadata of the message; :func:`to_dcsa` takes the new ones) and
deprecated aliases that repeat another field (``eventTypeCode``, ``shipmentInformationTypeCode``,
a top-level ``transportCallID`` equal to the transport call's).

Canonical events DCSA 2.2 cannot express (reefer, land, air, warehouse, customs,
``TERMINAL.AVPU``, ``SHIPMENT.PENC`` / ``CANC``) make :func:`to_dcsa` raise
:class:`NotExpressible`; :func:`expressible` tells beforehand.
"""

from __future__ import annotations

import copy
import functools
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, FormatChecker

from gateway.events import identifiers
from gateway.events.model import (
    CanonicalEvent,
    EventError,
    Reference,
    Visibility,
    parse_time,
)
from gateway.events.model import (
    validate as validate_canonical,
)
from gateway.isotime import iso_time

#: Where the DCSA T&T 2.2 specification is read from: the copy shipped with the gateway
#: (``gateway/events/specs/dcsa/``, Apache 2.0, DCSA); ``PORTLEDGER_DCSA_SPEC`` overrides.
SPEC_PATH = Path(
    os.environ.get(
        "PORTLEDGER_DCSA_SPEC",
        Path(__file__).resolve().parent / "specs" / "dcsa" / "tnt_v2.2.0.bundled.yaml",
    )
)

#: The spec's component schema of each event type.
EVENT_SCHEMAS: dict[str, str] = {
    "SHIPMENT": "shipmentEvent",
    "TRANSPORT": "transportEvent",
    "EQUIPMENT": "equipmentEvent",
}

#: Equipment event codes that happen at a terminal: canonical family TERMINAL.
TERMINAL_CODES = frozenset({"LOAD", "DISC", "GTIN", "GTOT"})

_DCSA_SHIPMENT_CODES = frozenset(
    ["RECE", "DRFT", "PENA", "PENU", "REJE", "APPR", "ISSU", "SURR", "SUBM", "VOID", "CONF", "REQS", "CMPL", "HOLD", "RELS"]
)
_DCSA_EQUIPMENT_CODES = frozenset(["LOAD", "DISC", "GTIN", "GTOT", "STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD"])

#: Namespace of the deterministic DCSA eventIDs of chain events (:func:`event_uuid`).
EVENT_NAMESPACE = uuid.UUID("5b0a3f8e-6c1d-4e57-9a0b-2f6d1c3e8a47")

_VESSEL_NAMES = {"vesselIMONumber": "imo", "vesselName": "name"}


class DcsaError(ValueError):
    """A DCSA event is invalid or cannot be mapped; ``path`` is a JSON pointer into it."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        code: str = "invalid-dcsa-event",
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.problems = problems or [{"path": path, "message": message}]


class NotExpressible(DcsaError):
    """A canonical event has no DCSA 2.2 form (e.g. a reefer reading)."""


# -- the spec --------------------------------------------------------------------------------
@functools.cache
def spec() -> dict[str, Any]:
    """The DCSA T&T 2.2 document, loaded once (with the enum fix described above)."""
    try:
        with open(SPEC_PATH, encoding="utf-8") as file:
            document: dict[str, Any] = yaml.safe_load(file)
    except OSError as exc:
        raise RuntimeError(f"DCSA spec not readable at {SPEC_PATH}: {exc}") from None
    inner = document["components"]["schemas"]["documentReferences_inner"]
    inner["properties"]["documentReferenceType"]["enum"] = ["BKG", "TRD"]
    return document


def _date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_time(value, field="") > 0


def _format_checker() -> FormatChecker:
    checker = FormatChecker(("uuid",))
    checker.checks("date-time", raises=(EventError,))(_date_time)
    return checker


@functools.cache
def _validators() -> dict[str, Draft7Validator]:
    document = spec()
    checker = _format_checker()
    return {
        kind: Draft7Validator(
            {"$ref": f"#/components/schemas/{name}", "components": document["components"]},
            format_checker=checker,
        )
        for kind, name in EVENT_SCHEMAS.items()
    }


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    components = spec()["components"]["schemas"]
    seen = 0
    while "$ref" in schema and seen < 32:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
        seen += 1
    return schema


def _properties(schema: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every property a (possibly allOf-composed) object schema defines, with its schemas."""
    found: dict[str, list[dict[str, Any]]] = {}
    stack, depth = [schema], 0
    while stack and depth < 256:
        depth += 1
        current = _resolve(stack.pop())
        for name, sub in current.get("properties", {}).items():
            found.setdefault(name, []).append(sub)
        stack.extend(current.get("allOf", []))
    return found


def _items(schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for schema in schemas:
        stack = [schema]
        while stack:
            current = _resolve(stack.pop())
            if "items" in current:
                out.append(current["items"])
            stack.extend(current.get("allOf", []))
    return out


def _unknown_fields(value: Any, schemas: list[dict[str, Any]], path: str) -> Iterator[str]:
    """JSON pointers of properties the spec does not define (the closed-world check)."""
    if isinstance(value, dict):
        known: dict[str, list[dict[str, Any]]] = {}
        for schema in schemas:
            for name, subs in _properties(schema).items():
                known.setdefault(name, []).extend(subs)
        if not known:
            return
        for name, sub in value.items():
            if name not in known:
                yield f"{path}/{name}"
            else:
                yield from _unknown_fields(sub, known[name], f"{path}/{name}")
    elif isinstance(value, list):
        items = _items(schemas)
        if items:
            for i, item in enumerate(value):
                yield from _unknown_fields(item, items, f"{path}/{i}")


def validate(event: Any) -> dict[str, Any]:
    """Check one DCSA 2.2 event against the spec; return it unchanged.

    Raises
    ------
    DcsaError
        With every problem (JSON pointer and message) in :attr:`DcsaError.problems`.
    """
    if not isinstance(event, dict):
        raise DcsaError("a DCSA event is a JSON object", path="")
    kind = event.get("eventType")
    if not isinstance(kind, str) or kind not in EVENT_SCHEMAS:
        raise DcsaError(
            f"eventType must be one of {sorted(EVENT_SCHEMAS)}, not {kind!r}", path="/eventType"
        )
    problems = [
        {"path": "/" + "/".join(str(p) for p in error.absolute_path), "message": error.message[:300]}
        for error in sorted(
            _validators()[kind].iter_errors(event), key=lambda e: list(map(str, e.absolute_path))
        )
    ]
    schema = {"$ref": f"#/components/schemas/{EVENT_SCHEMAS[kind]}"}
    problems += [
        {"path": pointer, "message": "unknown field (not in DCSA T&T 2.2)"}
        for pointer in _unknown_fields(event, [schema], "")
    ]
    if problems:
        first = problems[0]
        raise DcsaError(
            f"not a valid DCSA 2.2 {kind} event: {first['path'] or '/'}: {first['message']}",
            path=first["path"],
            problems=problems[:20],
        )
    return event


# -- DCSA → canonical ------------------------------------------------------------------------
def _reference(kind: str, value: Any, path: str,
               flags: list[dict[str, str]] | None = None) -> Reference:
    """A normalised reference; with ``flags``, a failed check digit is flagged there and the
    number kept (a feed's rule) instead of refused (the API's rule)."""
    try:
        return Reference(kind, identifiers.normalise(kind, value))
    except identifiers.IdentifierError as exc:
        if flags is None or exc.code != "invalid-check-digit":
            raise DcsaError(str(exc), path=path, code=exc.code) from None
        kept = identifiers.compact(value)
        flags.append({"field": path, "code": exc.code, "value": kept, "message": str(exc)})
        return Reference(kind, kept)


def _try_reference(kind: str, value: Any) -> Reference | None:
    try:
        return Reference(kind, identifiers.normalise(kind, value))
    except identifiers.IdentifierError:
        return None


_DOCUMENT_KINDS = {"TRD": "mbl", "BKG": "booking"}
_REFERENCE_KINDS = {"FF": "hbl", "EQ": "container"}


def _split_references(
    items: list[dict[str, str]], kinds: dict[str, str], type_key: str, value_key: str,
    transport_document_kind: str,
) -> tuple[list[Reference], list[dict[str, str]]]:
    """Map reference objects to our references; return the rest verbatim."""
    mapped: list[Reference] = []
    rest: list[dict[str, str]] = []
    for item in items:
        kind = kinds.get(item.get(type_key, ""))
        if kind == "mbl":
            kind = transport_document_kind
        found = _try_reference(kind, item.get(value_key)) if kind else None
        if found is None or set(item) != {type_key, value_key}:
            rest.append(item)
        elif found not in mapped:
            mapped.append(found)
    return mapped, rest


def from_dcsa(
    event: dict[str, Any],
    *,
    visibility: Visibility | None = None,
    transport_document_kind: str = "mbl",
    validated: bool = False,
    flag_check_digits: bool = False,
) -> list[CanonicalEvent]:
    """Canonical events of one DCSA 2.2 event.

    Parameters
    ----------
    event : dict
        A DCSA 2.2 SHIPMENT, TRANSPORT or EQUIPMENT event (JSON).
    visibility : Visibility, optional
        Who may read the resulting events (DCSA has no such notion); owner only by default.
    transport_document_kind : str
        ``"mbl"`` (default) or ``"hbl"``: what a ``TRD`` transport document is, which depends
        on who publishes it (a carrier's B/L is the master, a forwarder's the house).
    validated : bool
        Skip :func:`validate` (the caller already ran it).
    flag_check_digits : bool
        Keep a container or IMO number whose check digit fails, flagged in ``details.flags``
        (what a feed does: ``gateway/feeds``), instead of refusing the event.

    Returns
    -------
    list of CanonicalEvent
        Today always one event; a list so that a DCSA event may fan out later without
        changing callers.

    Raises
    ------
    DcsaError
        If the event breaks the spec or a reference number fails its check.
    """
    if not validated:
        validate(event)
    if transport_document_kind not in ("mbl", "hbl"):
        raise ValueError("transport_document_kind is mbl or hbl")
    rest = dict(event)
    for meta in ("eventID", "eventCreatedDateTime"):
        rest.pop(meta, None)
    kind = rest.pop("eventType")
    classifier = rest.pop("eventClassifierCode")
    when = parse_time(rest.pop("eventDateTime"), field="/eventDateTime")
    details: dict[str, Any] = {}
    related: list[Reference] = []
    flags: list[dict[str, str]] | None = [] if flag_check_digits else None

    doc_refs, doc_rest = _split_references(
        rest.pop("documentReferences", []), _DOCUMENT_KINDS, "documentReferenceType",
        "documentReferenceValue", transport_document_kind,
    )
    refs, ref_rest = _split_references(
        rest.pop("references", []), _REFERENCE_KINDS, "referenceType", "referenceValue",
        transport_document_kind,
    )
    if doc_rest:
        details["documentReferences"] = doc_rest
    if ref_rest:
        details["references"] = ref_rest

    call = copy.deepcopy(rest.pop("transportCall", None))
    vessel_ref: Reference | None = None
    location = ""
    if call is not None:
        if rest.get("transportCallID") == call.get("transportCallID"):
            rest.pop("transportCallID", None)
        vessel = call.pop("vessel", None)
        if vessel is not None:
            vessel_ref = _reference(
                "vessel", vessel["vesselIMONumber"], "/transportCall/vessel/vesselIMONumber",
                flags)
            details["vessel"] = {
                _VESSEL_NAMES.get(k, k): (vessel_ref.value if k == "vesselIMONumber" else v)
                for k, v in vessel.items()
            }
        voyage = call.pop("exportVoyageNumber", None)
        carrier_voyage = call.pop("carrierVoyageNumber", None)
        if voyage is None:
            voyage = carrier_voyage
        elif carrier_voyage not in (None, voyage):
            call["carrierVoyageNumber"] = carrier_voyage
        if voyage is not None:
            details["voyage"] = voyage
        if "carrierServiceCode" in call:
            details["service"] = call.pop("carrierServiceCode")
        details["transportCall"] = call
        location = call.get("UNLocationCode") or (call.get("location") or {}).get(
            "UNLocationCode", ""
        )

    if kind == "SHIPMENT":
        code = rest.pop("shipmentEventTypeCode")
        if rest.get("eventTypeCode") == code:
            rest.pop("eventTypeCode")
        doc_type = rest.pop("documentTypeCode")
        if rest.get("shipmentInformationTypeCode") == doc_type:
            rest.pop("shipmentInformationTypeCode")
        subject_kind = {"TRD": transport_document_kind, "BKG": "booking", "CBR": "booking"}.get(
            doc_type, "shipment"
        )
        if subject_kind == "shipment" or doc_type == "CBR":
            details["documentTypeCode"] = doc_type
        document_id = rest.pop("documentID")
        subject = _reference(subject_kind, document_id, "/documentID", flags)
        if subject.value != document_id:
            details["documentID"] = document_id  # the publisher's spelling, for DCSA readers
        event_type = f"SHIPMENT.{code}"
        related = [r for r in doc_refs + refs if r != subject]
        if vessel_ref is not None:
            related.append(vessel_ref)
    elif kind == "TRANSPORT":
        code = rest.pop("transportEventTypeCode")
        if rest.get("eventTypeCode") == code:
            rest.pop("eventTypeCode")
        event_type = f"TRANSPORT.{code}"
        candidates = [vessel_ref] if vessel_ref is not None else []
        candidates += [r for r in doc_refs if r.kind in ("mbl", "hbl", "booking")]
        if not candidates:
            raise DcsaError(
                "a transport event needs a vessel (transportCall.vessel.vesselIMONumber) or a "
                "document reference to be recorded against",
                path="/transportCall/vessel",
                code="no-subject",
            )
        subject = candidates[0]
        related = [r for r in doc_refs + refs if r != subject]
    else:
        code = rest.pop("equipmentEventTypeCode")
        if rest.get("eventTypeCode") == code:
            rest.pop("eventTypeCode")
        event_type = f"{'TERMINAL' if code in TERMINAL_CODES else 'EQUIPMENT'}.{code}"
        if "equipmentReference" in rest:
            subject = _reference("container", rest.pop("equipmentReference"),
                                 "/equipmentReference", flags)
        elif doc_refs:
            subject = doc_refs[0]
        else:
            raise DcsaError(
                "an equipment event needs an equipmentReference or a document reference",
                path="/equipmentReference",
                code="no-subject",
            )
        related = [r for r in doc_refs + refs if r != subject]
        if vessel_ref is not None:
            related.append(vessel_ref)
        event_location = rest.get("eventLocation") or {}
        location = event_location.get("UNLocationCode") or location

    details.update(rest)  # whatever DCSA field is left: seals, remarks, reasons, ISO code...
    if flags:
        details["flags"] = flags
    if location:
        location = _reference_location(location)
    canonical = CanonicalEvent(
        event_type=event_type,
        classifier=classifier,
        event_time=when,
        subject=subject,
        location=location,
        related=tuple(dict.fromkeys(related)),
        details=details,
        visibility=visibility or Visibility(),
    )
    try:
        return [validate_canonical(canonical)]
    except EventError as exc:
        raise DcsaError(str(exc), path=exc.field, code=exc.code) from None


def _reference_location(text: str) -> str:
    try:
        return identifiers.normalise("unlocode", text)
    except identifiers.IdentifierError as exc:
        raise DcsaError(str(exc), path="/transportCall/UNLocationCode", code=exc.code) from None


# -- canonical → DCSA ------------------------------------------------------------------------
def expressible(event: CanonicalEvent) -> bool:
    """Whether :func:`to_dcsa` can express ``event`` in DCSA 2.2."""
    family, code = event.family, event.code
    if family == "SHIPMENT":
        return code in _DCSA_SHIPMENT_CODES
    if family == "TRANSPORT":
        return True
    if family in ("TERMINAL", "EQUIPMENT"):
        return code in _DCSA_EQUIPMENT_CODES
    return False


def event_uuid(chain_event_id: int) -> str:
    """The DCSA ``eventID`` of an on-chain event: a UUID derived from its id, stable."""
    return str(uuid.uuid5(EVENT_NAMESPACE, str(chain_event_id)))


def _seconds(moment: int | str | datetime) -> float:
    """Unix seconds of a ``created`` time given as seconds, a datetime or an ISO 8601 string."""
    if isinstance(moment, datetime):
        return moment.timestamp()
    if isinstance(moment, int):
        return moment
    return parse_time(moment, field="created")


def to_dcsa(
    item: Any,
    *,
    event_id: str | None = None,
    created: int | str | datetime | None = None,
) -> dict[str, Any]:
    """The DCSA 2.2 form of a canonical event.

    Parameters
    ----------
    item : CanonicalEvent or VisibleEvent
        A canonical event, or anything with ``.event`` (a canonical event), ``.event_id`` (the
        chain's id) and ``.block_time`` (Unix seconds) — a tracking ``VisibleEvent``.
    event_id : str, optional
        DCSA ``eventID`` (a UUID); by default :func:`event_uuid` of the visible event's id.
    created : int, str or datetime, optional
        ``eventCreatedDateTime``; by default the visible event's block time.

    Returns
    -------
    dict
        A DCSA 2.2 event that passes :func:`validate`.

    Raises
    ------
    NotExpressible
        If DCSA 2.2 has no event for it (see :func:`expressible`).
    """
    if isinstance(item, CanonicalEvent):
        event = item
    else:
        event = item.event
        if event_id is None:
            event_id = event_uuid(item.event_id)
        if created is None:
            created = item.block_time
    if event_id is None or created is None:
        raise TypeError("to_dcsa of a bare canonical event needs event_id and created")
    if not expressible(event):
        raise NotExpressible(f"{event.event_type} has no DCSA 2.2 event", code="not-dcsa")

    details = copy.deepcopy(event.details)
    family, code = event.family, event.code
    dcsa_type = {"SHIPMENT": "SHIPMENT", "TRANSPORT": "TRANSPORT"}.get(family, "EQUIPMENT")
    out: dict[str, Any] = {
        "eventID": event_id,
        "eventCreatedDateTime": iso_time(_seconds(created)),
        "eventType": dcsa_type,
        "eventClassifierCode": event.classifier,
        "eventDateTime": iso_time(event.event_time),
    }
    related = list(event.related)
    subject = event.subject
    vessel = details.pop("vessel", None)
    voyage = details.pop("voyage", None)
    service = details.pop("service", None)
    call = details.pop("transportCall", None)
    doc_rest = details.pop("documentReferences", [])
    ref_rest = details.pop("references", [])

    if dcsa_type != "SHIPMENT":
        if vessel is None:
            imo = next((r.value for r in [subject, *related] if r.kind == "vessel"), None)
            vessel = {"imo": imo} if imo else None
        if call is not None or vessel is not None or dcsa_type == "TRANSPORT":
            call = dict(call or {})
            call.setdefault("transportCallID", _transport_call_id(event, vessel, voyage))
            call.setdefault("modeOfTransport", "VESSEL")
            if voyage is not None:
                call["exportVoyageNumber"] = voyage
            if service is not None:
                call["carrierServiceCode"] = service
            if event.location and dcsa_type == "TRANSPORT" and not (
                call.get("UNLocationCode") or (call.get("location") or {}).get("UNLocationCode")
            ):
                call["UNLocationCode"] = event.location
            if vessel is not None:
                call["vessel"] = {
                    {v: k for k, v in _VESSEL_NAMES.items()}.get(k, k): val
                    for k, val in vessel.items()
                }
            out["transportCall"] = call
        related = [r for r in related if r.kind != "vessel"]
    else:
        # a shipment event has no transport call: vessel and voyage stay in the canonical form
        related = [r for r in related if r.kind != "vessel"]

    documents: list[dict[str, str]] = []
    references: list[dict[str, str]] = []
    if family == "SHIPMENT":
        out["shipmentEventTypeCode"] = code
        doc_type = details.pop("documentTypeCode", None)
        if doc_type is None:
            doc_type = {"mbl": "TRD", "hbl": "TRD", "booking": "BKG", "declaration": "CUS"}.get(
                subject.kind, "SHI"
            )
        spelled = details.pop("documentID", None)
        out["documentID"] = (
            spelled if _try_reference(subject.kind, spelled) == subject else subject.value
        )
        out["documentTypeCode"] = doc_type
    elif family == "TRANSPORT":
        out["transportEventTypeCode"] = code
        if subject.kind != "vessel":
            related.insert(0, subject)
    else:
        out["equipmentEventTypeCode"] = code
        if subject.kind == "container":
            out["equipmentReference"] = subject.value
        else:
            related.insert(0, subject)
        details.setdefault("emptyIndicatorCode", "LADEN")
        if event.location and "eventLocation" not in details and "transportCall" not in out:
            details["eventLocation"] = {"UNLocationCode": event.location}

    for ref in related:
        if ref.kind in ("mbl", "booking"):
            documents.append({"documentReferenceType": "TRD" if ref.kind == "mbl" else "BKG",
                              "documentReferenceValue": ref.value})
        elif ref.kind in ("hbl", "container"):
            references.append({"referenceType": "FF" if ref.kind == "hbl" else "EQ",
                               "referenceValue": ref.value})
    documents += doc_rest
    references += ref_rest
    if documents and family != "SHIPMENT":
        out["documentReferences"] = documents
    if references:
        out["references"] = references
    allowed = _allowed_fields(dcsa_type)
    for key, value in details.items():
        if key in allowed and key not in out:
            out[key] = value
    return out


def _transport_call_id(event: CanonicalEvent, vessel: dict[str, Any] | None,
                       voyage: str | None) -> str:
    """A stable transport call id when the publisher gave none: vessel, voyage and place."""
    parts = [(vessel or {}).get("imo") or "", voyage or "", event.location or ""]
    return str(uuid.uuid5(EVENT_NAMESPACE, "transport-call:" + "/".join(parts)))


@functools.cache
def _allowed_fields(dcsa_type: str) -> frozenset[str]:
    schema = {"$ref": f"#/components/schemas/{EVENT_SCHEMAS[dcsa_type]}"}
    return frozenset(_properties(schema))
