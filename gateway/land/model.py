"""The land leg's model: jobs, drivers, the pick-up right and the custody chain (pure).

A **job** is a haulier's order to one truck: containers (found through what the haulier may
read), a pick-up place (a terminal: Consortium id, UN/LOCODE, facility), a delivery place (a
warehouse: Consortium id and address), a time window, the vehicle registration, the ROCARS CCRN
of a cross-border truck, a driver, and the seals each container is expected to carry. Its states:
``planned`` → ``picked-up`` (the terminal's gate-out) → ``delivered`` (the warehouse's receipt);
``cancelled`` by the haulier at any time before delivery (its token is then revoked).

The **pick-up right** of a container (:func:`pickup_right`) is read from the events the haulier
may read, through the alert facts (:func:`gateway.alerts.facts.build_facts`: holds on the
container and on the documents it travels under, yard stays): it is valid when the carrier
released the container (``SHIPMENT.RELS`` on it or on its B/L, not retracted) or the terminal made
it available (``TERMINAL.AVPU`` of the current yard stay), and no hold is in force (customs hold,
inspection or refusal; carrier hold). A retracted release with no other release is a *revoked*
release; a box already gated out has no right to be picked up again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.alerts.facts import Observed, build_facts
from gateway.events.model import Reference
from gateway.isotime import iso_time

#: Job states.
STATES: tuple[str, ...] = ("planned", "picked-up", "delivered", "cancelled")
#: Most containers on one job (one truck carries one 40' or two 20'; a chassis train a few more).
MAX_CONTAINERS = 8
#: Longest job window, seconds.
MAX_WINDOW = 7 * 86400
#: Longest condition note of a receipt, in characters (the scan page's ``maxlength``). It is
#: recorded whole in the receipt's details, which must also seal into one record (1,024 bytes):
#: a note that does not is refused with ``condition-too-long`` and how many of its characters
#: would fit (varied Chinese text: about 119 with eight 20-character seals a box).
MAX_CONDITION = 300

#: A ROCARS Customs Cargo Reference Number as the SIMULATED authority issues it: ``R``, ``I``
#: (import) or ``E`` (export), ``YYMMDD`` and a 6-digit sequence. The one definition of the
#: layout: ``gateway/declarations/codes.py`` (which documents it and checks the authority's
#: answers) imports it, since the land leg sits below declarations.
CCRN = re.compile(r"R[IE][0-9]{6}[0-9]{6}")
#: Hong Kong vehicle registration marks and mainland plates: letters, digits, 2-12 characters.
VEHICLE = re.compile(r"[A-Z0-9\u4e00-\u9fff]{2,12}")
#: A phone number as stored: ``+`` and 6 to 15 digits (E.164).
PHONE = re.compile(r"\+[0-9]{6,15}")

#: Bases of a valid right.
CARRIER_RELEASE = "carrier-release"
TERMINAL_AVAILABILITY = "terminal-availability"


class LandError(ValueError):
    """A request the land leg refuses: ``code``, a sentence and the field at fault."""

    def __init__(self, code: str, message: str, path: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path


def check_ccrn(text: str) -> str:
    """A CCRN in its stored form (upper case, no spaces), else :class:`LandError`."""
    value = re.sub(r"[\s-]", "", text).upper()
    if CCRN.fullmatch(value) is None:
        raise LandError("invalid-ccrn", f"{text[:24]!r} is not a ROCARS CCRN (R, I or E, "
                        "YYMMDD, 6 digits)", "/ccrn")
    return value


def check_vehicle(text: str) -> str:
    """A vehicle registration in its stored form, else :class:`LandError`."""
    value = re.sub(r"[\s-]", "", text).upper()
    if VEHICLE.fullmatch(value) is None:
        raise LandError("invalid-vehicle", f"{text[:24]!r} is not a vehicle registration "
                        "(2 to 12 letters and digits)", "/vehicle")
    return value


def seal_number(text: str) -> str:
    """A seal number as compared: upper case, white space dropped."""
    return re.sub(r"\s", "", text).upper()


def check_phone(text: str) -> str:
    """A phone number as ``+`` and digits (spaces, dashes, dots and brackets dropped; a
    number without a country code is taken as Hong Kong's, +852), else :class:`LandError`."""
    value = re.sub(r"[\s().-]", "", text)
    if value.startswith("00"):
        value = "+" + value[2:]
    if value.isdigit() and len(value) == 8:
        value = "+852" + value
    if PHONE.fullmatch(value) is None:
        raise LandError("invalid-phone", f"{text[:24]!r} is not a phone number "
                        "(+ country code and digits)", "/phone")
    return value


@dataclass(frozen=True)
class Place:
    """Where a job picks up or delivers."""

    org: int
    """The terminal or warehouse (Consortium organisation id)."""
    location: str = ""
    """UN/LOCODE."""
    facility: str = ""
    """Facility code (SMDG terminal code) or the warehouse's address."""

    def to_json(self) -> dict[str, Any]:
        return {"org": self.org, "location": self.location, "facility": self.facility}


@dataclass(frozen=True)
class Job:
    """A haulier's job for one truck."""

    id: str
    """``LJ`` and 12 hex digits (also the truck trip's reference for its positions)."""
    org_id: int
    """The haulier's gateway organisation."""
    haulier: int
    """The haulier's Consortium organisation id."""
    containers: tuple[str, ...]
    pickup: Place
    delivery: Place
    window_from: int
    window_to: int
    vehicle: str
    ccrn: str | None
    driver_id: int | None
    seals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Expected seal numbers per container."""
    references: tuple[Reference, ...] = ()
    """The B/Ls (or containers) the haulier created it from."""
    state: str = "planned"
    nonce: str = ""
    """The nonce of its current token."""
    created: int = 0
    reason: str = ""
    """Why it was cancelled."""
    shared: tuple[int, ...] = ()
    """Members (Consortium ids) the haulier lets follow the job (e.g. the consignee): they see
    it as a reader of its boxes does, whatever lets them read the boxes."""

    @property
    def trip(self) -> Reference:
        """The reference its truck positions are stored under."""
        return Reference("truck", self.id)

    @property
    def reference(self) -> Reference:
        """The reference its custody details are recorded under (named to the job's parties):
        a shipment reference, so the parties track it and prove it by the job id."""
        return Reference("shipment", self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "haulier": self.haulier,
            "containers": list(self.containers),
            "references": [r.to_json() for r in self.references],
            "pickup": self.pickup.to_json(), "delivery": self.delivery.to_json(),
            "window": {"from": iso_time(self.window_from), "to": iso_time(self.window_to)},
            "vehicle": self.vehicle, "ccrn": self.ccrn, "driver": self.driver_id,
            "seals": {k: list(v) for k, v in self.seals.items()},
            "created": iso_time(self.created), "cancelReason": self.reason or None,
            "shared": list(self.shared),
        }

    def body(self) -> dict[str, Any]:
        """What the store keeps as JSON (the rest has columns)."""
        return {"containers": list(self.containers),
                "references": [r.to_json() for r in self.references],
                "pickup": self.pickup.to_json(), "delivery": self.delivery.to_json(),
                "window": [self.window_from, self.window_to], "vehicle": self.vehicle,
                "ccrn": self.ccrn, "seals": {k: list(v) for k, v in self.seals.items()},
                "shared": list(self.shared)}


def job_from_row(job_id: str, org_id: int, haulier: int, body: dict[str, Any], state: str,
                 driver_id: int | None, nonce: str, created: int, reason: str) -> Job:
    """A :class:`Job` from its stored columns and body."""
    return Job(
        id=job_id, org_id=org_id, haulier=haulier, containers=tuple(body["containers"]),
        pickup=Place(**body["pickup"]), delivery=Place(**body["delivery"]),
        window_from=body["window"][0], window_to=body["window"][1], vehicle=body["vehicle"],
        ccrn=body["ccrn"], driver_id=driver_id,
        seals={k: tuple(v) for k, v in body["seals"].items()},
        references=tuple(Reference(r["kind"], r["value"]) for r in body["references"]),
        state=state, nonce=nonce, created=created, reason=reason,
        shared=tuple(body.get("shared", ())))


@dataclass(frozen=True)
class Driver:
    """A haulier's driver: a person with a phone, signing in with one-time codes."""

    id: int
    org_id: int
    user_id: int
    """The accounts user (role ``driver``) whose sessions the driver uses."""
    name: str
    phone: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "phone": self.phone, "user": self.user_id}


# -- the pick-up right -----------------------------------------------------------------------
@dataclass(frozen=True)
class Right:
    """A container's pick-up right as the events someone may read say it is, at a moment."""

    container: str
    valid: bool
    basis: str
    """``carrier-release``, ``terminal-availability``, both joined by ``+``, or ""."""
    reasons: tuple[str, ...] = ()
    """Why it is not valid (sentences), empty when it is."""
    code: str = ""
    """The first refusal's code: ``no-release``, ``release-revoked``, ``held``,
    ``already-gated-out``."""
    holds: tuple[dict[str, Any], ...] = ()
    released_by: str = ""
    available_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"container": self.container, "valid": self.valid, "basis": self.basis or None,
                "code": self.code or None, "reasons": list(self.reasons),
                "holds": list(self.holds), "releasedBy": self.released_by or None,
                "availableBy": self.available_by or None}


def pickup_right(container: str, seen: Sequence[Observed], now: int, *,
                 retracted: Iterable[Observed] = (), names: dict[str, str] | None = None,
                 ) -> Right:
    """The pick-up right of ``container`` from the events seen about it and its documents.

    ``seen`` are the events in force (retracting events included: the facts drop what they
    retract); ``retracted`` are events another event retracted, read only to tell a revoked
    release from a missing one. ``names`` turns publisher ids into names for the sentences.
    """
    names = names or {}
    subject = Reference("container", container)
    facts = build_facts(seen).get(subject)
    documents = set(facts.documents) if facts is not None else set()
    about = {subject, *documents}
    retracting = {(o.publisher, str(o.event.retracts)) for o in seen if o.event.retracts}
    releases = [o for o in seen if o.event.event_type == "SHIPMENT.RELS"
                and o.event.classifier == "ACT" and o.event.subject in about
                and (o.publisher, o.ref) not in retracting]
    revoked = [o for o in retracted if o.event.event_type == "SHIPMENT.RELS"
               and o.event.subject in about]
    stays = facts.stays if facts is not None else ()
    stay = stays[-1] if stays else None
    available = (stay is not None and stay.exit is None and stay.available is not None
                 and stay.available.event.event_type == "TERMINAL.AVPU")
    active = [h for h in (facts.holds if facts is not None else ()) if h.active(now)]
    bases = ([CARRIER_RELEASE] if releases else []) + ([TERMINAL_AVAILABILITY] if available
                                                       else [])
    reasons: list[str] = []
    code = ""
    if stay is not None and stay.exit is not None:
        code = "already-gated-out"
        how = "gated out" if stay.exit.event.event_type == "TERMINAL.GTOT" else "loaded"
        reasons.append(f"{container} left the yard: {how} on "
                       f"{iso_time(stay.exit.event.event_time)}")
    elif not bases:
        if revoked:
            code = "release-revoked"
            who = names.get(revoked[-1].publisher, revoked[-1].publisher)
            reasons.append(f"{who} revoked the release of {container}, and the terminal has "
                           "not made it available for pick-up")
        else:
            code = "no-release"
            reasons.append(f"{container} is not released: no carrier release and no "
                           "availability for pick-up from the terminal")
    for hold in active:
        code = code or "held"
        who = names.get(hold.origin.publisher, hold.origin.publisher)
        on = "" if hold.on == subject else f" (on {hold.on.kind} {hold.on.value})"
        reasons.append(f"{hold.kind.replace('-', ' ')} by {who} since "
                       f"{iso_time(hold.since)}{on}")
    return Right(
        container=container, valid=not reasons, basis="+".join(bases),
        reasons=tuple(reasons), code=code,
        holds=tuple({**h.to_json(), "by": names.get(h.origin.publisher, h.origin.publisher)}
                    for h in active),
        released_by=names.get(releases[-1].publisher, releases[-1].publisher) if releases
        else "",
        available_by=(names.get(stay.available.publisher, stay.available.publisher)
                      if available and stay is not None and stay.available is not None
                      else ""))


# -- the custody chain -----------------------------------------------------------------------
#: Event types that make the custody chain, and the step each is.
CUSTODY_STEPS: dict[str, str] = {
    "SHIPMENT.RELS": "carrier-release",
    "TERMINAL.AVPU": "terminal-release",
    "TERMINAL.GTOT": "gate-out",
    "LAND.PICK_UP": "pick-up",
    "LAND.HAND_OVER": "hand-over",
    "LAND.DELIVERY": "delivery",
    "WAREHOUSE.RECEIPT": "warehouse-receipt",
}
#: Order of the steps when their times tie.
STEP_ORDER = tuple(dict.fromkeys(CUSTODY_STEPS.values()))
