"""The read model: what the chain says, indexed for the gateway's queries — its interface.

The chain is the source of truth; the read model is a *derived* copy, written only by the
indexer (:mod:`gateway.readside.indexer`) from finalized blocks and rebuildable from genesis at
any time. It holds, per block range, in one transaction together with the indexer's cursor:

- the members directory (Consortium: names, roles, X25519 keys, accounts, active flag);
- cargo events (CargoLedger logs): the clear header fields, the encrypted envelope, and what
  the envelope says in clear (named readers, key version, readable by reference);
- bills of lading (master → containers, house → master and the containers it covers);
- access grants (owner, subject, reader, expiry, wrapped key) and per-event
  "readable by reference" flags;
- telemetry anchors and customs declarations with their status history;
- the cursor: the last indexed block's number and hash;
- the *change journal* (:mod:`gateway.readside.journal`): every write of chain-derived rows
  bumps a generation number and notes which subject keys it touched, so a process that caches
  answers derived from the read model (:mod:`gateway.tracking`'s view cache) can tell per
  request whether anything changed, and then drop only what did.

Besides the chain-derived tables it keeps two gateway-local ones that a rebuild keeps: the
*access log* ("who saw my data": every read of an organisation's data by another one) and the
*known references* of each organisation (reference numbers it has legitimately read, which the
resolver searches for near matches).

Reference numbers appear only as subject keys (``keccak`` of the normalised reference); the
plaintext numbers are known only to readers who decrypt records (see :mod:`gateway.tracking`).

This module is the interface: :class:`ReadModel`, its records and the changes one block range
writes. Storage is behind it so a large operator can put PostgreSQL behind the same interface;
:class:`gateway.readside.store.SqliteReadModel` is the embedded default.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

#: AccessGrants scopes.
SUBJECT_SCOPE = 1
EVENT_SCOPE = 2


class ReadModelError(Exception):
    """The read model cannot be opened or used (wrong schema version, closed)."""


class CursorMoved(ReadModelError):
    """A range was written against a cursor that is no longer the stored one.

    Two indexers (two worker processes) raced; the loser re-reads the cursor and carries on,
    and nothing is written twice.
    """


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The last block whose changes are in the read model."""

    block: int
    """Block number."""
    block_hash: bytes
    """Its 32-byte hash (checked against the chain before every range)."""


@dataclass(frozen=True)
class Member:
    """A Consortium member (a chain organisation) as the directory shows it."""

    org_id: int
    """Consortium organisation id."""
    name: str
    """Registered name."""
    roles: int
    """Role bitmask (:data:`contracts.ROLES`)."""
    encryption_key: bytes
    """32-byte X25519 public key records and grants are wrapped for."""
    active: bool
    """False while suspended."""
    accounts: tuple[str, ...] = ()
    """Checksummed accounts that sign for it."""


@dataclass(frozen=True)
class IndexedEvent:
    """One cargo event as indexed (clear fields and the envelope; never plaintext)."""

    event_id: int
    """CargoLedger event id (batch sequence << 16 | index)."""
    block: int
    """Block number."""
    tx_hash: bytes
    """Hash of the ``record()`` transaction."""
    log_index: int
    """Index of the log in its block."""
    block_time: int
    """Block timestamp, Unix seconds."""
    publisher: int
    """Publishing (owning) organisation."""
    subject: bytes
    """32-byte subject key."""
    type_code: int
    """Event type code (:data:`contracts.cargo.EVENT_TYPES`)."""
    classifier: int
    """1 PLN, 2 EST, 3 ACT."""
    event_time: int
    """When it happened, Unix seconds."""
    location: str
    """UN/LOCODE or empty."""
    retracts: int
    """Event id this one retracts, or 0."""
    payload_hash: bytes
    """keccak-256 of the plaintext."""
    envelope: bytes
    """The encrypted envelope (:mod:`gateway.confidential.envelope`)."""
    key_version: int = 0
    """Version of the owner's record key it was sealed under (from the envelope; 0 if
    unparseable)."""
    readers: tuple[int, ...] = ()
    """Named reader organisations (from the envelope)."""
    reference_readable: bool = False
    """Readable by holders of the reference: envelope flag, unless the publisher set the
    AccessGrants flag explicitly (then that choice)."""
    retracted_by: int = 0
    """Id of the publisher's event that retracts this one, or 0."""


@dataclass(frozen=True)
class Grant:
    """An AccessGrants grant as last set on chain."""

    owner: int
    """Granting (owner) organisation."""
    scope: int
    """:data:`SUBJECT_SCOPE` or :data:`EVENT_SCOPE`."""
    target: bytes
    """Subject key, or the event id as 32 big-endian bytes."""
    reader: int
    """Grantee organisation."""
    expiry: int
    """Unix seconds after which it lapses; 0 for never."""
    wrapped_key: bytes
    """The owner's key wrapped for the reader."""
    granted_block: int
    """Block of the grant."""
    active: bool
    """False once revoked."""

    def in_force(self, now: float) -> bool:
        """Active and not expired at ``now`` (the contract's ``_in_force``)."""
        return self.active and (self.expiry == 0 or now <= self.expiry)


@dataclass(frozen=True)
class House:
    """A house B/L linked under a master B/L."""

    house: bytes
    """House B/L subject key."""
    master: bytes
    """Master B/L subject key."""
    forwarder: int
    """Linking forwarder organisation."""
    containers: tuple[bytes, ...]
    """Container subject keys the house covers (on-chain mapping)."""


@dataclass(frozen=True)
class Declaration:
    """A customs declaration and its status history."""

    declaration: bytes
    """Declaration subject key."""
    declarant: int
    """Filing organisation."""
    authority: int
    """Customs authority code."""
    document_hash: bytes
    """Hash of the filed document."""
    filed_time: int
    """Block time of the filing."""
    statuses: tuple[tuple[int, int, int, bytes], ...] = ()
    """``(block time, posting org, status code, note hash)`` in order."""


@dataclass(frozen=True)
class Anchor:
    """A telemetry Merkle root."""

    anchor_id: int
    """Anchor id."""
    publisher: int
    """Publishing organisation."""
    kind: int
    """Telemetry kind code."""
    root: bytes
    """Merkle root."""
    count: int
    """Readings under it."""
    start: int
    """First reading time."""
    end: int
    """Last reading time."""
    block: int
    """Block number."""


class AccessEntry(NamedTuple):
    """One read of an organisation's data by another one (a tuple: the hot path makes many,
    and a batch of them is written as it is)."""

    owner: int
    """The organisation whose data was read."""
    reader: int
    """The organisation that read it."""
    event_id: int
    """The event read."""
    subject: bytes
    """Its subject key."""
    time: int
    """When, Unix seconds."""
    via: str
    """How the reader was entitled: ``named``, ``grant`` or ``reference``, or ``proof`` for a
    proof bundle the owner approved and the reader downloaded (:mod:`gateway.proofs_api`)."""


#: An :class:`AccessEntry` as a plain tuple (the garbage collector stops scanning plain tuples
#: of numbers and strings; a buffer of many thousands of pending entries is made of these).
AccessRow = tuple[int, int, int, bytes, int, str]


# -- changes (what one block range writes) ----------------------------------------------------


@dataclass(frozen=True)
class MemberChange:
    """A member's record as read at the indexed block (MemberAdded and friends)."""

    member: Member
    """The whole record; accounts replace the stored ones."""


@dataclass(frozen=True)
class EventAdded:
    """A cargo event log."""

    event: IndexedEvent
    """The event."""


@dataclass(frozen=True)
class MasterContainers:
    """MasterRegistered (``registered``) or ContainersAdded."""

    master: bytes
    """Master B/L subject key."""
    carrier: int
    """Carrier organisation."""
    containers: tuple[bytes, ...]
    """Container subject keys added."""
    block: int
    """Block number."""


@dataclass(frozen=True)
class HouseChange:
    """HouseLinked / HouseCorrected (containers given) or HouseUnlinked (``containers`` None)."""

    house: bytes
    """House B/L subject key."""
    master: bytes
    """Master B/L subject key."""
    forwarder: int
    """Forwarder organisation."""
    containers: tuple[bytes, ...] | None
    """Covered containers (replacing the previous set), or None when unlinked."""
    block: int
    """Block number."""


@dataclass(frozen=True)
class GrantChange:
    """AccessGranted (``grant`` active) or AccessRevoked (inactive, empty key)."""

    grant: Grant
    """The grant as it now stands."""


@dataclass(frozen=True)
class ReferenceFlag:
    """ReferenceReadableSet."""

    event_id: int
    """The event."""
    readable: bool
    """The publisher's choice."""


@dataclass(frozen=True)
class AnchorAdded:
    """Anchored."""

    anchor: Anchor
    """The anchor."""


@dataclass(frozen=True)
class DeclarationFiled:
    """DeclarationFiled."""

    declaration: bytes
    """Declaration subject key."""
    declarant: int
    """Filing organisation."""
    authority: int
    """Authority code."""
    document_hash: bytes
    """Document hash."""
    block: int
    """Block number."""
    block_time: int
    """Block time."""


@dataclass(frozen=True)
class DeclarationStatus:
    """StatusPosted."""

    declaration: bytes
    """Declaration subject key."""
    org: int
    """Posting organisation (customs)."""
    status: int
    """Status code (Declarations.vy: 1 filed … 7 rejected)."""
    note_hash: bytes
    """Hash of the note."""
    block: int
    """Block number."""
    log_index: int
    """Log index in the block (orders postings)."""
    block_time: int
    """Block time."""


Change = (
    MemberChange
    | EventAdded
    | MasterContainers
    | HouseChange
    | GrantChange
    | ReferenceFlag
    | AnchorAdded
    | DeclarationFiled
    | DeclarationStatus
)


@dataclass
class EventFilter:
    """Filters of :meth:`ReadModel.find_events` (all optional, combined with AND)."""

    subjects: Sequence[bytes] = ()
    """Only these subject keys."""
    publishers: Sequence[int] = ()
    """Only these publishers."""
    type_codes: Sequence[int] = ()
    """Only these event type codes."""
    classifier: int = 0
    """Only this classifier (0: any)."""
    location: str = ""
    """Only this UN/LOCODE."""
    time_from: int | None = None
    """Event time at or after."""
    time_to: int | None = None
    """Event time at or before."""
    created_after: int | None = None
    """Block time after."""
    after_id: int = 0
    """Paging: event ids greater than this."""
    limit: int = 100
    """At most this many, in event-id order."""
    readers_any: Sequence[int] = field(default_factory=tuple)
    """Only events naming one of these readers (OR-ed with :attr:`publishers`)."""
    granted: Sequence[tuple[int, bytes]] = field(default_factory=tuple)
    """``(owner, subject)`` pairs whose events also match (OR-ed with :attr:`publishers`)."""


# -- the interface ----------------------------------------------------------------------------


class ReadModel(abc.ABC):
    """Storage of the read model. Reads are synchronous and cheap; writes are transactional."""

    # chain-derived writes
    @abc.abstractmethod
    def cursor(self) -> Cursor | None:
        """The last indexed block, or None before the first range."""

    @abc.abstractmethod
    def generation(self) -> int:
        """The change journal's generation: a number that grows with every write of
        chain-derived rows (0 before the first). Cheap enough to read on every request."""

    @abc.abstractmethod
    def changed_since(self, generation: int) -> tuple[int, frozenset[bytes] | None]:
        """The current generation and the subject keys touched by the writes after
        ``generation``.

        Returns
        -------
        (int, frozenset of bytes or None)
            The generation the answer is as of (read from the journal itself), and the keys
            (events' subjects, grants' targets — for an event grant, the event's subject —,
            master and house B/Ls, declarations), or None when everything must be taken as
            changed (the directory changed, a bulk load or reset, or ``generation`` is older
            than the journal keeps or newer than the current one).
        """

    @abc.abstractmethod
    def apply(self, changes: Sequence[Change], cursor: Cursor, expected: Cursor | None) -> None:
        """Write one range's changes and move the cursor, in one transaction.

        Raises
        ------
        CursorMoved
            The stored cursor is not ``expected`` (nothing is written).
        """

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every chain-derived row and the cursor (the access log and known references stay)."""

    @abc.abstractmethod
    def touch(self, subjects: Iterable[bytes]) -> None:
        """Note ``subjects`` in the change journal without writing anything else: who may read
        them changed off chain (a declaration's named readers), so every process drops the
        views built from them."""

    # directory
    @abc.abstractmethod
    def organisation(self, org_id: int) -> Member | None:
        """One member."""

    @abc.abstractmethod
    def organisations(self) -> list[Member]:
        """Every member, by id."""

    # events
    @abc.abstractmethod
    def event(self, event_id: int) -> IndexedEvent | None:
        """One event."""

    @abc.abstractmethod
    def events_of_subjects(self, subjects: Sequence[bytes], limit: int = 2000) -> list[IndexedEvent]:
        """Events about any of ``subjects``, by event time (then id)."""

    @abc.abstractmethod
    def find_events(self, flt: EventFilter) -> list[IndexedEvent]:
        """Events matching ``flt`` in event-id order."""

    @abc.abstractmethod
    def event_count(self) -> int:
        """Number of indexed events."""

    # bills of lading
    @abc.abstractmethod
    def master(self, master: bytes) -> tuple[int, tuple[bytes, ...]] | None:
        """``(carrier, container keys)`` of a registered master B/L."""

    @abc.abstractmethod
    def house(self, house: bytes) -> House | None:
        """A linked house B/L."""

    @abc.abstractmethod
    def houses_of_master(self, master: bytes) -> list[House]:
        """The houses linked under a master."""

    @abc.abstractmethod
    def masters_of_container(self, container: bytes) -> list[bytes]:
        """Masters listing a container."""

    # grants
    @abc.abstractmethod
    def grant(self, owner: int, scope: int, target: bytes, reader: int) -> Grant | None:
        """A grant as last set (active or revoked), or None if never granted."""

    @abc.abstractmethod
    def grants_to(self, reader: int, targets: Sequence[bytes]) -> list[Grant]:
        """Every active grant to ``reader`` on any of ``targets`` (any owner)."""

    @abc.abstractmethod
    def grants_of_reader(self, reader: int, limit: int = 10_000) -> list[Grant]:
        """Every active grant to ``reader``."""

    # anchors, declarations
    @abc.abstractmethod
    def anchor(self, anchor_id: int) -> Anchor | None:
        """One anchor."""

    @abc.abstractmethod
    def declaration(self, declaration: bytes) -> Declaration | None:
        """A declaration with its history."""

    # access log and known references (gateway-local)
    @abc.abstractmethod
    def log_access(self, entries: Sequence[AccessEntry] | Sequence[AccessRow]) -> None:
        """Append access-log entries (one transaction), as :class:`AccessEntry` or the same
        fields in a plain tuple."""

    @abc.abstractmethod
    def access_log(self, owner: int, *, before: int = 0, limit: int = 100) -> list[tuple[int, AccessEntry]]:
        """``(entry id, entry)`` of reads of ``owner``'s data, newest first, ids below ``before``."""

    @abc.abstractmethod
    def add_known_references(self, org: int, refs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(kind, value)`` references ``org`` has read."""

    @abc.abstractmethod
    def known_references(self, org: int, limit: int = 50_000) -> list[tuple[str, str]]:
        """The references ``org`` has read, ``(kind, value)``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage."""
