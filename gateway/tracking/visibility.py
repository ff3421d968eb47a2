"""Who may read which cargo event, and its decryption for the caller.

The visibility rules live here and only here (:meth:`Entitlements.entitlement`): ``owner``,
``named``, ``grant`` or ``reference``, decided from indexed metadata alone; only then is the
envelope opened with the caller organisation's keys, ``keccak(plaintext)`` checked against the
on-chain payload hash and the plaintext decoded. The rules and the grant key wraps
(:func:`grant_context`) are described in ``docs/tracking.md``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from eth_abi.abi import encode as abi_encode
from sha3 import keccak_256

from contracts.cargo import subject_key
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import Keystore, OrgKeys
from gateway.errors import Forbidden
from gateway.events import model as events
from gateway.events.model import CanonicalEvent, Visibility
from gateway.isotime import iso_time
from gateway.principal import Principal
from gateway.readside.readmodel import (
    EVENT_SCOPE,
    SUBJECT_SCOPE,
    AccessRow,
    Grant,
    IndexedEvent,
    ReadModel,
)
from gateway.tracking.cache import LRU, Reads

log = logging.getLogger("portledger.gateway.tracking")

#: Subject key of a reference value (keccak; cached, the hot path computes many).
key_of = lru_cache(maxsize=1 << 17)(subject_key)

#: :func:`gateway.isotime.iso_time` of whole seconds, cached: every timeline entry writes two.
_iso = lru_cache(maxsize=1 << 16)(iso_time)


def grant_context(owner: int, target: bytes, reader: int, scope: int = SUBJECT_SCOPE) -> bytes:
    """The ``context`` a grant's key wrap is bound to (owner, scope, target, reader)."""
    return abi_encode(["uint256", "uint8", "bytes32", "uint256"], [owner, scope, target, reader])


@dataclass(frozen=True)
class VisibleEvent:
    """A cargo event the caller may read, decrypted."""

    event_id: int
    """CargoLedger event id."""
    block: int
    """Block number."""
    tx_hash: bytes
    """Transaction hash."""
    log_index: int
    """Log index in the block."""
    block_time: int
    """Block time (when it was recorded), Unix seconds."""
    publisher: int
    """Publishing organisation (chain id)."""
    publisher_name: str
    """Its directory name."""
    event: CanonicalEvent
    """The decrypted event."""
    readable_via: str
    """``owner``, ``named``, ``grant`` or ``reference``."""
    retracted_by: int = 0
    """Id of the event retracting this one, or 0."""
    redacted: bool = False
    """Mentions of references the caller may not see were removed (house-B/L subset rule)."""

    def to_json(self) -> dict[str, Any]:
        """The tracking API's form of a timeline entry."""
        e = self.event
        return {
            "eventId": self.event_id,
            "type": e.event_type,
            "classifier": e.classifier,
            "time": _iso(e.event_time),
            "location": e.location,
            "subject": e.subject.to_json(),
            "related": [r.to_json() for r in e.related],
            "details": e.details,
            "publisher": self.publisher,
            "publisherName": self.publisher_name,
            "recordedAt": _iso(self.block_time),
            "block": self.block,
            "txHash": "0x" + self.tx_hash.hex(),
            "retracts": e.retracts or None,
            "readableVia": self.readable_via,
            "retracted": bool(self.retracted_by),
            "retractedBy": self.retracted_by or None,
        }


@dataclass
class Reader:
    """Per-request state of one caller: its organisation, keys and the references it holds,
    and what its reads relied on (for the view cache)."""

    chain_org: int
    """The caller's chain organisation."""
    keys: OrgKeys | None
    """Its keys in the keystore (None if the gateway holds none)."""
    held: dict[bytes, str] = field(default_factory=dict)
    """References it holds: subject key -> reference value."""
    subjects: set[bytes] = field(default_factory=set)
    """Subject keys queried on its behalf."""
    valid_until: float = math.inf
    """Earliest expiry among the grants its reads relied on."""
    reads: Reads = field(default_factory=dict)
    """Access-log entries of its reads of other organisations' events."""
    fetched: dict[tuple[tuple[bytes, str | None], ...], list[VisibleEvent]] = field(
        default_factory=dict)
    """What :meth:`gateway.tracking.service.Tracking.subject_events` found per (subject key,
    reference held for it) list in this request: the candidate kinds of one typed value share
    its subject key, so a reference nothing matches would otherwise be looked up once per
    kind."""


class Entitlements:
    """The visibility rule and decryption for the caller over one read model.

    Parameters
    ----------
    model
        The read model.
    keystore
        The keystore of the hosted organisations (by gateway organisation id).
    plaintexts
        Most decrypted plaintexts kept.
    clock
        Wall clock (grant expiry, access-log times).
    """

    def __init__(self, model: ReadModel, keystore: Keystore | None, *, plaintexts: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.model = model
        self.keystore = keystore
        self.clock = clock
        self.plain = LRU(plaintexts)
        """Verified plaintext bytes per (event id, payload hash)."""
        self._record_keys = LRU(50_000)  # unwrapped grant keys per grant and wrap
        self._keys: dict[int, tuple[float, OrgKeys | None]] = {}
        self.names: dict[int, str] = {}
        """Directory names of publishers (cleared on a directory change)."""
        self.pending: dict[tuple[int, int, int], AccessRow] = {}
        """Reads of other organisations' events not yet written to the access log (one per
        owner, reader and event per flush window; :class:`gateway.tracking.service.Tracking`
        flushes them)."""

    # -- caller ---------------------------------------------------------------------------

    def _org_keys(self, org_id: int) -> OrgKeys | None:
        cached = self._keys.get(org_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < 30:
            return cached[1]
        keys = None
        if self.keystore is not None:
            with contextlib.suppress(KeyError):
                keys = self.keystore.get(org_id)
        if cached is not None and keys == cached[1]:
            keys = cached[1]  # the same object, so cached views stay good
        self._keys[org_id] = (now, keys)
        return keys

    def reader(self, principal: Principal) -> Reader:
        """The caller's reading state (403 if its organisation is not a chain member yet)."""
        if principal.chain_org is None:
            raise Forbidden(
                "your organisation is not a member of the chain yet, so it can read nothing",
                code="not-a-member",
            )
        return Reader(principal.chain_org, self._org_keys(principal.org_id))

    def publisher_name(self, org: int) -> str:
        name = self.names.get(org)
        if name is None:
            found = self.model.organisation(org)
            name = found.name if found else f"organisation {org}"
            self.names[org] = name
        return name

    # -- the rule -------------------------------------------------------------------------

    def entitlement(self, reader: Reader, ev: IndexedEvent) -> tuple[str, Any] | None:
        """Why ``reader`` may read ``ev`` (and the credential to open it), or None."""
        me = reader.chain_org
        if ev.publisher == me:
            return "owner", None
        if me in ev.readers:
            return "named", None
        if ev.reference_readable and ev.subject in reader.held:
            return "reference", reader.held[ev.subject]
        grant = self.model.grant(ev.publisher, SUBJECT_SCOPE, ev.subject, me)
        now = self.clock()
        if grant is not None and grant.in_force(now):
            # the grant's key reaches records of its version and older only: decided here, not
            # by a failing decryption, because the caches answer without decrypting
            unwrapped = self._grant_key(reader, grant)
            if unwrapped is not None and ev.key_version <= unwrapped[1]:
                return "grant", grant
        grant = self.model.grant(ev.publisher, EVENT_SCOPE, ev.event_id.to_bytes(32, "big"), me)
        if grant is not None and grant.in_force(now):
            return "grant", grant
        return None

    def _grant_key(self, reader: Reader, grant: Grant) -> tuple[bytes, int] | None:
        """The record key ``grant`` wraps for ``reader`` and its key version (-1 for an EVENT
        grant's data key), or None if none of the reader's keys unwraps it."""
        cache_key = (grant.owner, grant.scope, grant.target, grant.reader, grant.wrapped_key)
        found: tuple[bytes, int] | None = self._record_keys.get(cache_key)
        if found is not None:
            return found
        if reader.keys is None:
            return None
        context = grant_context(grant.owner, grant.target, grant.reader, grant.scope)
        for private in reader.keys.x25519_keys:
            try:
                secret = confidential.unwrap_key(
                    grant.wrapped_key, x25519_private=private, context=context
                )
            except (confidential.DecryptionFailed, confidential.EnvelopeError, ValueError):
                continue
            if grant.scope == EVENT_SCOPE:
                result = (secret, -1)
            else:
                try:
                    result = confidential.unpack_subject_grant(secret)
                except confidential.EnvelopeError:
                    return None
            self._record_keys.put(cache_key, result)
            return result
        return None

    def _decrypt(self, reader: Reader, ev: IndexedEvent, via: str, credential: Any,
                 ) -> bytes | None:
        keys = reader.keys
        envelope, subject = ev.envelope, ev.subject
        try:
            if via == "owner":
                if keys is None:
                    return None
                return confidential.open_as_owner(
                    envelope, subject=subject, owner_secret=keys.master_secret
                )
            if via == "named":
                if keys is None:
                    return None
                for private in keys.x25519_keys:
                    with contextlib.suppress(confidential.DecryptionFailed):
                        return confidential.open_as_reader(
                            envelope, subject=subject, org_id=reader.chain_org,
                            x25519_private=private,
                        )
                return None
            if via == "grant":
                unwrapped = self._grant_key(reader, credential)
                if unwrapped is None:
                    return None
                key, version = unwrapped
                if version < 0:
                    return confidential.open_with_data_key(envelope, key)
                return confidential.open_with_record_key(
                    envelope, subject=subject, key=key, key_version=version
                )
            return confidential.open_with_reference(envelope, subject=subject, reference=credential)
        except (confidential.DecryptionFailed, confidential.EnvelopeError, ValueError):
            return None

    def open(self, reader: Reader, ev: IndexedEvent) -> VisibleEvent | None:
        """The event decrypted for ``reader``, or None if it may not (or cannot) read it."""
        decision = self.entitlement(reader, ev)
        if decision is None:
            return None
        via, credential = decision
        opened = self._open(reader, ev, via, credential)
        if opened is None:
            return None
        if via == "grant" and credential.expiry:
            reader.valid_until = min(reader.valid_until, credential.expiry)
        if via != "owner":
            key = (ev.publisher, reader.chain_org, ev.event_id)
            reader.reads[key] = (ev.subject, via)
            if key not in self.pending:
                self.pending[key] = (
                    ev.publisher, reader.chain_org, ev.event_id, ev.subject, int(self.clock()), via
                )
        return opened

    def _open(self, reader: Reader, ev: IndexedEvent, via: str, credential: Any,
              ) -> VisibleEvent | None:
        """Decrypt an event ``reader`` is entitled to (or take its cached plaintext: after the
        authorisation check only, the cache is never a way in).

        The cache keeps the verified plaintext *bytes*, not decoded objects: a few hundred
        thousand cached object graphs would make every full garbage collection of the process
        scan them (pauses of most of a second were measured), while decoding costs ~10 µs.
        """
        plain_key = (ev.event_id, ev.payload_hash)
        raw: bytes | None = self.plain.get(plain_key)
        if raw is None:
            raw = self._decrypt(reader, ev, via, credential)
            if raw is None:
                return None
            # keccak-256 through pysha3 itself: ~2 µs a call less than through eth_utils
            if keccak_256(raw).digest() != ev.payload_hash:
                log.warning("event %d: plaintext does not match its payload hash", ev.event_id)
                return None
            self.plain.put(plain_key, raw)
        try:
            event = events.from_plaintext(raw, visibility=Visibility(
                "reference" if ev.reference_readable else "named", ev.readers))
        except events.EventError:
            log.warning("event %d: not a canonical event plaintext", ev.event_id)
            return None
        return VisibleEvent(
            ev.event_id, ev.block, ev.tx_hash, ev.log_index, ev.block_time, ev.publisher,
            self.publisher_name(ev.publisher), event, via, ev.retracted_by,
        )

    def visible(self, reader: Reader, indexed: Iterable[IndexedEvent]) -> list[VisibleEvent]:
        """Those of ``indexed`` that ``reader`` may read, decrypted."""
        out = []
        for ev in indexed:
            seen = self.open(reader, ev)
            if seen is not None:
                out.append(seen)
        return out
