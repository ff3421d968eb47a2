"""Who may read a telemetry reading, and who may publish one (pure).

Readings have two classes (:data:`gateway.telemetry.model.PUBLIC_TYPES`):

- **public** — AIS positions and static data: what a vessel broadcasts on the radio is no
  secret, so every authenticated caller may read it, whoever uploaded it;
- **private** — reefer readings and truck positions: the owner (the organisation that uploaded
  them), its **named** readers (Consortium organisation ids it chose), and, in mode
  ``reference``, whoever asks **by the subject's reference** (the container or truck number:
  holding the number is the credential, as for cargo events in ``docs/tracking.md``).

The rule reads metadata only (:class:`Access`), so a store can skip a row before it decrypts
it. Grants (AccessGrants on chain) are not decided here: the tracking layer above applies them
with the owner, readers and mode a stored reading exposes.

Publishing mirrors the Anchors contract (``Anchors.vy`` ``KIND_ROLES``): an organisation may
anchor AIS if it is an operator, terminal, carrier or agent; reefer readings if a terminal,
carrier, haulier or warehouse; truck GPS if a haulier or forwarder. AIS static data is not
anchored but comes from the same sources, so it takes the AIS roles. :func:`role_problem` lets
the feeds intake refuse e.g. a truck position from a terminal before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import ROLES
from gateway.telemetry.model import PUBLIC_TYPES, READING_TYPES

#: Roles that may anchor each Anchors kind (``Anchors.vy`` ``KIND_ROLES``, bit per role).
KIND_ROLES: dict[str, int] = {
    "AIS": ROLES["operator"] | ROLES["terminal"] | ROLES["carrier"] | ROLES["agent"],
    "REEFER": ROLES["terminal"] | ROLES["carrier"] | ROLES["haulier"] | ROLES["warehouse"],
    "TRUCK_GPS": ROLES["haulier"] | ROLES["forwarder"],
}

#: The Anchors kind whose roles each reading type takes (static AIS data: AIS's).
_TYPE_KIND: dict[str, str] = {
    t: kind if kind is not None else "AIS" for t, kind in READING_TYPES.items()
}

#: Visibility modes of a private reading (as for cargo events).
MODES = ("named", "reference")


@dataclass(frozen=True)
class Access:
    """What the rule looks at: a stored reading's metadata, nothing decrypted."""

    org_id: int
    """The owner: the gateway organisation that uploaded it."""
    owner: int | None
    """The owner's Consortium organisation id (None: not a member on chain when uploaded)."""
    public: bool
    """An AIS reading (readable by everyone)."""
    mode: str
    """``named`` or ``reference`` (private readings)."""
    readers: tuple[int, ...]
    """Consortium ids of the named readers."""
    has_subject: bool
    """It names a subject (a reading without one cannot be asked for by reference)."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking, and how."""

    org_id: int
    """The caller's gateway organisation."""
    chain_org: int | None
    """Its Consortium organisation id, if it is a member on chain."""
    by_reference: bool = False
    """The caller asked by the reading's subject reference (it holds the number)."""


def entitlement(viewer: Viewer, access: Access) -> str | None:
    """Why ``viewer`` may read a reading: ``public``, ``owner``, ``named``, ``reference``; or None.

    Examples
    --------
    >>> reefer = Access(3, 2, False, "named", (5,), True)
    >>> entitlement(Viewer(3, 2), reefer), entitlement(Viewer(9, 5), reefer)
    ('owner', 'named')
    >>> entitlement(Viewer(8, 4, by_reference=True), reefer) is None
    True
    """
    if access.public:
        return "public"
    if viewer.org_id == access.org_id or (
        access.owner is not None and viewer.chain_org == access.owner
    ):
        return "owner"
    if viewer.chain_org is not None and viewer.chain_org in access.readers:
        return "named"
    if access.mode == "reference" and access.has_subject and viewer.by_reference:
        return "reference"
    return None


def kind_of(reading_type: str) -> str | None:
    """The Anchors kind a reading type is anchored as (None: stored, not anchored)."""
    return READING_TYPES[reading_type]


def is_public(reading_type: str) -> bool:
    """Readings of this type are readable by everyone."""
    return reading_type in PUBLIC_TYPES


def role_problem(reading_type: str, roles: int) -> str | None:
    """Why an organisation with ``roles`` (``contracts.ROLES`` bits) may not publish readings of
    ``reading_type``, or None if it may.

    Examples
    --------
    >>> role_problem("reefer", ROLES["terminal"]) is None
    True
    >>> role_problem("truck-position", ROLES["terminal"])
    'truck-position readings are anchored by forwarder, haulier; your organisation is not one'
    """
    kind = _TYPE_KIND.get(reading_type)
    if kind is None:
        return f"unknown reading type {reading_type!r}"
    allowed = KIND_ROLES[kind]
    if roles & allowed:
        return None
    who = ", ".join(name for name, bit in ROLES.items() if allowed & bit)
    return f"{reading_type} readings are anchored by {who}; your organisation is not one"
