"""Tracking: who may read which cargo event (the visibility rules live here and only here),
decryption for the caller, the shipment view, the resolver, and the access log.

Visibility
----------
A cargo event is visible to a caller whose organisation is chain member ``C`` when

- ``owner``: ``C`` published it;
- ``named``: ``C`` is a named reader in its envelope;
- ``grant``: the publisher's SUBJECT grant (publisher, subject, ``C``) is in force in the read
  model (active, not expired) and the event was sealed under a key version the grant's key
  reaches (after a revocation the owner seals later records under the next version; an EVENT
  grant on the event itself also counts);
- ``reference``: the envelope is readable by reference holders (and the publisher did not turn
  that off on chain) and the caller *holds the reference*: it typed it, or derived it through a
  chain of records it could read (a house B/L record names its master B/L and the containers it
  covers; a master B/L record names its containers).

The decision uses only indexed metadata and, for a SUBJECT grant, the key version its wrapped
key reaches; only then is the envelope opened (with the caller organisation's keys from the
keystore: master secret, X25519 private key, or the subject key a grant wrapped for it),
``keccak(plaintext)`` checked against the on-chain payload hash and the plaintext decoded with
:func:`gateway.events.from_plaintext`. Plaintexts are the same for every authorised reader, so
the verified bytes are cached per (event id, payload hash) in a bounded LRU — consulted after
the decision, never before it.

Every read of an organisation's data by another organisation is appended (batched, at most one
entry per owner, reader and event per flush window of about a second) to the access log its
owner sees at ``GET /v1/access-log``.

The view cache
--------------
A shipment view is a pure function of the read model, the caller's organisation and keys, the
reference typed (normalised), and the clock only through grant expiry and the ETA/ETD
``freshness`` (seconds since recorded). So each process keeps the finished view, encoded as
JSON bytes, per (reader organisation, normalised reference) in a bounded LRU (entries and
bytes), and serves a repeat from it when all of this still holds:

- nothing it was built from changed: every request reads the read model's change-journal
  generation (a memory read, see :mod:`gateway.readmodel`); when it moved, the subject keys written since
  (:meth:`gateway.readmodel.ReadModel.changed_since`) drop the views that looked at any of them
  (every subject key the view queried, the typed reference's own key included), and a
  directory change, bulk load or reset drops every view. Each worker process has its own cache
  and checks the shared SQLite file itself, so a new event, grant or revocation shows on the
  next request after the indexer committed it, whichever process answers;
- no grant it relied on has expired since (the view keeps the earliest expiry among them);
- the caller's organisation still has the same keys.

``freshness`` is written into the bytes at serve time. A hit records the same access-log
entries the view's build did (who read which event, how), so a cached answer is logged exactly
like a fresh one. Below the view cache, the encoded JSON of each timeline entry is kept per
(event, how it was readable, retraction), so a view rebuilt after an invalidation re-encodes
only what is new.

Suggestions
-----------
A reference nothing visible matches is answered 404 with near matches among the references the
caller's organisation has legitimately read (learned from what it was shown, kept in the read
model's ``known_refs``), never others'. So that this answer stays cheap however much an
organisation can see (it is an easy request to repeat), each process keeps per reader
organisation an index of those references grouped by length (:class:`_RefIndex`): a query is
compared, with rapidfuzz and a score cutoff, only with the lengths that can reach the cutoff and
with at most ``suggest_scan`` references. What this process reads reaches the index at once; it
is rebuilt from the read model after ``suggest_refresh_seconds`` (references other worker
processes learned) and dropped with everything else on a bulk load or reset.

Settings (``config.extra["tracking"]``, all optional): ``view_cache_entries``,
``view_cache_megabytes``, ``plaintext_cache_entries``, ``entry_cache_entries``,
``suggest_refresh_seconds``, ``suggest_scan``.

Grant key wraps
---------------
A SUBJECT grant's ``wrapped_key`` is :func:`gateway.confidential.wrap_key` of
:func:`gateway.confidential.pack_subject_grant` (subject key and its version) for the reader's
X25519 key, bound to :func:`grant_context` (the grant's owner, scope, target and reader, ABI
encoded like the contract's grant key), so a wrap cannot be replayed into another grant.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from aiohttp import web
from eth_abi.abi import encode as abi_encode
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from rapidfuzz import fuzz, process
from sha3 import keccak_256

from contracts import ROLES
from contracts.cargo import CLASSIFIERS, EVENT_TYPES, subject_key
from gateway import openapi
from gateway.appkeys import CONFIG, KEYSTORE, METRICS, READ_MODEL, TRACKING
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import Keystore, OrgKeys
from gateway.config import ConfigError, GatewayConfig
from gateway.errors import BadRequest, Forbidden, NotFound, error_body
from gateway.events import identifiers
from gateway.events import model as events
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.isotime import iso_time
from gateway.principal import Principal, require
from gateway.readside.readmodel import (
    EVENT_SCOPE,
    SUBJECT_SCOPE,
    AccessRow,
    EventFilter,
    IndexedEvent,
    ReadModel,
)

log = logging.getLogger("portledger.gateway.tracking")

_CLASSIFIER_NAMES = {v: k for k, v in CLASSIFIERS.items()}
_TYPE_NAMES = {v: k for k, v in EVENT_TYPES.items()}
_ROLE_NAMES = tuple(ROLES)

#: Subject key of a reference value (keccak; cached, the hot path computes many).
_key = lru_cache(maxsize=1 << 17)(subject_key)

#: Container status after an actual event of these types (latest wins).
STATUS_OF: dict[str, str] = {
    "TERMINAL.GTIN": "gated-in",
    "TERMINAL.LOAD": "loaded",
    "TRANSPORT.DEPA": "in-transit",
    "TERMINAL.DISC": "discharged",
    "TERMINAL.AVPU": "available-for-pick-up",
    "CUSTOMS.CUSH": "customs-hold",
    "CUSTOMS.CUSI": "customs-inspection",
    "CUSTOMS.CUSR": "customs-released",
    "CUSTOMS.CUSX": "customs-refused",
    "TERMINAL.GTOT": "gated-out",
    "EQUIPMENT.PICK": "picked-up",
    "LAND.PICK_UP": "on-truck",
    "LAND.DELIVERY": "delivered",
    "EQUIPMENT.STRP": "stripped",
    "WAREHOUSE.RECEIPT": "in-warehouse",
    "EQUIPMENT.DROP": "empty-returned",
}

#: Declaration status codes of Declarations.vy.
DECLARATION_STATUS = {
    1: "filed", 2: "accepted", 3: "queried", 4: "held", 5: "inspection", 6: "released",
    7: "rejected",
}

#: Kinds the shipment view tries, best first, when a typed string could be several.
_VIEW_KINDS = ("container", "mbl", "hbl", "awb", "declaration", "booking", "vessel", "shipment")


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


@lru_cache(maxsize=1 << 16)
def _iso(seconds: int) -> str:
    return iso_time(seconds)


@dataclass(frozen=True)
class EventQuery:
    """What :meth:`Tracking.events` lists (all optional, combined with AND)."""

    references: tuple[Reference, ...] = ()
    """Only events about these references, which the caller thereby holds."""
    event_types: tuple[str, ...] = ()
    """Only these ``FAMILY.CODE`` types or whole ``FAMILY`` names."""
    classifier: str = ""
    """Only PLN, EST or ACT."""
    vessel_imo: str = ""
    """Only events whose plaintext names this vessel (details.vessel.imo or a vessel reference)."""
    location: str = ""
    """Only this UN/LOCODE."""
    time_from: int | None = None
    """Event time at or after (Unix seconds)."""
    time_to: int | None = None
    """Event time at or before."""
    created_after: int | None = None
    """Recorded (block time) after."""

    def type_codes(self) -> list[int]:
        codes: set[int] = set()
        for name in self.event_types:
            if name in EVENT_TYPES:
                codes.add(EVENT_TYPES[name])
            else:
                codes.update(v for k, v in EVENT_TYPES.items() if k.split(".")[0] == name)
                if not any(k.split(".")[0] == name for k in EVENT_TYPES):
                    raise BadRequest(f"unknown event type {name!r}", code="unknown-event-type")
        return sorted(codes)


class _LRU:
    """A bounded least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


@dataclass(frozen=True)
class TrackingSettings:
    """``config.extra["tracking"]``: the sizes of the tracking caches (per process)."""

    view_cache_entries: int = 20_000
    """Most finished shipment views kept."""
    view_cache_megabytes: float = 128.0
    """Most bytes of finished views kept, in MiB (a master B/L view of 4 containers is ~20 KB)."""
    plaintext_cache_entries: int = 200_000
    """Most decrypted event plaintexts kept."""
    entry_cache_entries: int = 200_000
    """Most encoded timeline entries kept."""
    suggest_refresh_seconds: float = 30.0
    """Age after which an organisation's suggestion index is rebuilt from the read model (so
    references other worker processes learned show up); this process's own reads reach it at
    once."""
    suggest_scan: int = 20_000
    """Most known references one suggestion compares the typed text with."""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> TrackingSettings:
        """Read and check the settings; unknown keys or bad sizes are a :class:`ConfigError`."""
        raw = config.extra.get("tracking", {})
        if not isinstance(raw, dict):
            raise ConfigError('extra["tracking"] must be an object')
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f'unknown extra["tracking"] keys: {", ".join(unknown)}')
        settings = cls(**raw)
        for f in fields(cls):
            value = getattr(settings, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"tracking: {f.name} must be a number >= 0")
        return settings


#: Access-log entries of reads: (owner, reader, event id) -> (subject, via).
_Reads = dict[tuple[int, int, int], tuple[bytes, str]]


@dataclass(frozen=True)
class _CachedView:
    """A finished shipment view, encoded, and what it was built from."""

    parts: tuple[bytes | int, ...]
    """The JSON bytes, split where an ETA/ETD ``freshness`` goes: byte strings and, between
    them, the block times whose age is written at serve time."""
    size: int
    """Bytes held."""
    keys: OrgKeys | None
    """The caller organisation's keys it was decrypted with (a new key set means rebuild)."""
    valid_until: float
    """Earliest expiry (Unix seconds) among the grants it relied on; ``inf`` if none."""
    subjects: tuple[bytes, ...]
    """Every subject key the build queried (a change to any of them drops the view)."""
    reads: _Reads
    """The access-log entries each serving of it records (not to be modified)."""


class _ViewCache:
    """Finished views per (reader organisation, gateway organisation, normalised reference),
    bounded in entries and in bytes, least recently used out first, droppable by subject key."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._views: OrderedDict[Any, _CachedView] = OrderedDict()
        self._by_subject: dict[bytes, dict[Any, None]] = {}  # (dicts of plain keys: unscanned)
        self.hits = self.misses = self.evictions = self.invalidations = 0

    def __len__(self) -> int:
        return len(self._views)

    def get(self, key: Any, keys: OrgKeys | None, now: float) -> _CachedView | None:
        """The view under ``key`` if still good for ``keys`` at ``now`` (counted)."""
        view = self._views.get(key)
        if view is not None:
            if view.keys is keys and now <= view.valid_until:
                self._views.move_to_end(key)
                self.hits += 1
                return view
            self._remove(key)
            self.invalidations += 1
        self.misses += 1
        return None

    def put(self, key: Any, view: _CachedView) -> None:
        """Keep ``view`` (unless it alone is over the byte budget), evicting the oldest."""
        if key in self._views:
            self._remove(key)
        if view.size > self.max_bytes or self.max_entries < 1:
            return
        self._views[key] = view
        self.bytes += view.size
        for subject in view.subjects:
            self._by_subject.setdefault(subject, {})[key] = None
        while len(self._views) > self.max_entries or self.bytes > self.max_bytes:
            self._remove(next(iter(self._views)))
            self.evictions += 1

    def drop(self, subjects: Iterable[bytes]) -> None:
        """Drop every view that looked at one of ``subjects``."""
        for subject in subjects:
            for key in self._by_subject.pop(subject, ()):
                if key in self._views:
                    self._remove(key)
                    self.invalidations += 1

    def clear(self) -> None:
        """Drop every view."""
        self.invalidations += len(self._views)
        self._views.clear()
        self._by_subject.clear()
        self.bytes = 0

    def _remove(self, key: Any) -> None:
        view = self._views.pop(key)
        self.bytes -= view.size
        for subject in view.subjects:
            holders = self._by_subject.get(subject)
            if holders is not None:
                holders.pop(key, None)
                if not holders:
                    del self._by_subject[subject]


#: Marks in a view's JSON skeleton: a timeline entry (``e<index>``) or an ETA/ETD freshness
#: (``f<block time>``). Random per process, so no event's content can spell one.
_NONCE = secrets.token_hex(12)
_MARKS = re.compile(rb'"' + _NONCE.encode() + rb'([ef])(\d+)"')


def _freshness_mark(block_time: int) -> str:
    return f"{_NONCE}f{block_time}"


def _render(parts: tuple[bytes | int, ...], now: float) -> bytes:
    """The view's bytes with every freshness written for ``now``."""
    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]
    return b"".join(
        p if isinstance(p, bytes) else str(max(0, int(now - p))).encode() for p in parts
    )


def _normal_form(candidates: Sequence[identifiers.Candidate]) -> tuple[tuple[str, str], ...]:
    """The valid candidates' (kind, value): all of what was typed that a view depends on."""
    return tuple((c.kind, c.value) for c in candidates if c.valid)


@lru_cache(maxsize=1 << 16)
def _normal_of(text: str) -> tuple[tuple[str, str], ...] | None:
    """:func:`_normal_form` of what ``text`` may be, None if it is no reference at all (only
    plain tuples of strings are kept, which the garbage collector need not scan)."""
    found = identifiers.detect(text)
    return _normal_form(found) if found else None


#: Score (rapidfuzz ``fuzz.ratio``, 0-100) a known reference needs to be suggested.
SUGGEST_CUTOFF = 60.0
#: Most references one organisation's suggestion index holds.
SUGGEST_INDEX_SIZE = 100_000
#: Most organisations whose suggestion index a process keeps.
SUGGEST_INDEXES = 256


class _RefIndex:
    """The references one organisation has legitimately read, for near-match suggestions,
    grouped by length.

    ``fuzz.ratio`` of strings of lengths ``a`` and ``b`` is at most ``200 min(a, b) / (a + b)``,
    so a typed value is compared only with the lengths that can reach the cutoff (nearest
    lengths first, the most recently learned references first within a length), at most
    ``scan`` of them: the cost of a suggestion is bounded whatever an organisation can see.
    (:func:`gateway.identifiers.detect` does not narrow further: it offers five or six kinds for
    nearly any string of letters and digits.)
    """

    def __init__(self, built: float) -> None:
        self.built = built
        self.kinds: dict[str, str] = {}  # value -> kind
        self.by_length: dict[int, list[str]] = {}

    def add(self, kind: str, value: str) -> None:
        """Know ``value`` (of ``kind``); ignored once the index is full."""
        if value in self.kinds or len(self.kinds) >= SUGGEST_INDEX_SIZE:
            return
        self.kinds[value] = kind
        self.by_length.setdefault(len(value), []).append(value)

    def candidates(self, value: str, scan: int, cutoff: float = SUGGEST_CUTOFF) -> list[str]:
        """The known references that may score ``cutoff`` against ``value``, ``scan`` at most."""
        n = len(value)
        lengths = sorted((m for m in self.by_length if 200 * min(n, m) >= cutoff * (n + m)),
                         key=lambda m: (abs(m - n), m))
        out: list[str] = []
        for m in lengths:
            room = scan - len(out)
            if room <= 0:
                break
            out.extend(self.by_length[m][-room:])
        return out


@dataclass
class _Reader:
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
    reads: _Reads = field(default_factory=dict)
    """Access-log entries of its reads of other organisations' events."""
    fetched: dict[tuple[tuple[bytes, str | None], ...], list[VisibleEvent]] = field(
        default_factory=dict)
    """What :meth:`Tracking._subject_events` found per (subject key, reference held for it)
    list in this request: the candidate kinds of one typed value share its subject key, so a
    reference nothing matches would otherwise be looked up once per kind."""


class Tracking:
    """Visibility, decryption, views and the access log over one read model.

    Parameters
    ----------
    model
        The read model.
    keystore
        The keystore of the hosted organisations (by gateway organisation id).
    cache_size
        Most decrypted plaintexts kept.
    clock
        Wall clock (grant expiry, access-log times, freshness).
    settings
        Sizes of the view and timeline-entry caches (``cache_size`` wins for plaintexts).
    """

    def __init__(
        self,
        model: ReadModel,
        keystore: Keystore | None,
        *,
        cache_size: int | None = None,
        clock: Callable[[], float] = time.time,
        settings: TrackingSettings | None = None,
    ) -> None:
        settings = settings or TrackingSettings()
        self.model = model
        self.keystore = keystore
        self.clock = clock
        self._plain = _LRU(settings.plaintext_cache_entries if cache_size is None else cache_size)
        self._entries = _LRU(settings.entry_cache_entries)
        self.views = _ViewCache(settings.view_cache_entries,
                                int(settings.view_cache_megabytes * (1 << 20)))
        self._generation = model.generation()
        self._subject_keys = _LRU(50_000)
        self._keys: dict[int, tuple[float, OrgKeys | None]] = {}
        self._names: dict[int, str] = {}
        self._pending: dict[tuple[int, int, int], AccessRow] = {}
        self._pending_refs: set[tuple[int, str, str]] = set()
        self._known_refs: OrderedDict[tuple[int, str, str], None] = OrderedDict()
        self._known_refs_size = 200_000
        self._ref_indexes: OrderedDict[int, _RefIndex] = OrderedDict()
        self._suggest_refresh = settings.suggest_refresh_seconds
        self._suggest_scan = int(settings.suggest_scan)
        self._learned: dict[int, float] = {}

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

    def reader(self, principal: Principal) -> _Reader:
        """The caller's reading state (403 if its organisation is not a chain member yet)."""
        if principal.chain_org is None:
            raise Forbidden(
                "your organisation is not a member of the chain yet, so it can read nothing",
                code="not-a-member",
            )
        return _Reader(principal.chain_org, self._org_keys(principal.org_id))

    def publisher_name(self, org: int) -> str:
        name = self._names.get(org)
        if name is None:
            found = self.model.organisation(org)
            name = found.name if found else f"organisation {org}"
            self._names[org] = name
        return name

    # -- the rule -------------------------------------------------------------------------

    def entitlement(self, reader: _Reader, ev: IndexedEvent) -> tuple[str, Any] | None:
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

    def _grant_key(self, reader: _Reader, grant: Any) -> tuple[bytes, int] | None:
        cache_key = (grant.owner, grant.scope, grant.target, grant.reader, grant.wrapped_key)
        found: tuple[bytes, int] | None = self._subject_keys.get(cache_key)
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
            self._subject_keys.put(cache_key, result)
            return result
        return None

    def _decrypt(self, reader: _Reader, ev: IndexedEvent, via: str, credential: Any) -> bytes | None:
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
                return confidential.open_with_subject_key(
                    envelope, subject=subject, key=key, key_version=version
                )
            return confidential.open_with_reference(envelope, subject=subject, reference=credential)
        except (confidential.DecryptionFailed, confidential.EnvelopeError, ValueError):
            return None

    def open(self, reader: _Reader, ev: IndexedEvent) -> VisibleEvent | None:
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
            if key not in self._pending:
                self._pending[key] = (
                    ev.publisher, reader.chain_org, ev.event_id, ev.subject, int(self.clock()), via
                )
        return opened

    def _open(self, reader: _Reader, ev: IndexedEvent, via: str, credential: Any) -> VisibleEvent | None:
        """Decrypt an event ``reader`` is entitled to (or take its cached plaintext: after the
        authorisation check only, the cache is never a way in).

        The cache keeps the verified plaintext *bytes*, not decoded objects: a few hundred
        thousand cached object graphs would make every full garbage collection of the process
        scan them (pauses of most of a second were measured), while decoding costs ~10 µs.
        """
        plain_key = (ev.event_id, ev.payload_hash)
        raw: bytes | None = self._plain.get(plain_key)
        if raw is None:
            raw = self._decrypt(reader, ev, via, credential)
            if raw is None:
                return None
            # keccak-256 through pysha3 itself: ~2 µs a call less than through eth_utils
            if keccak_256(raw).digest() != ev.payload_hash:
                log.warning("event %d: plaintext does not match its payload hash", ev.event_id)
                return None
            self._plain.put(plain_key, raw)
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

    def _learn(self, reader: _Reader, shown: Iterable[VisibleEvent]) -> None:
        """Remember the references of what ``reader`` read (its suggestion index at once, the
        read model's ``known_refs`` at the next flush; a bounded set of the recently learned
        keeps from writing the same ones again and again)."""
        known = self._known_refs
        index = self._ref_indexes.get(reader.chain_org)
        for v in shown:
            for ref in (v.event.subject, *v.event.related):
                item = (reader.chain_org, ref.kind, ref.value)
                if item not in known:
                    known[item] = None
                    self._pending_refs.add(item)
                    if index is not None:
                        index.add(ref.kind, ref.value)
        while len(known) > self._known_refs_size:
            known.popitem(last=False)

    # -- access log -------------------------------------------------------------------------

    def _take(self) -> tuple[list[AccessRow], list[tuple[int, str, str]]]:
        entries, refs = list(self._pending.values()), list(self._pending_refs)
        self._pending.clear()
        self._pending_refs.clear()
        return entries, refs

    def _write(self, entries: list[AccessRow], refs: list[tuple[int, str, str]]) -> int:
        self.model.log_access(entries)
        by_org: dict[int, list[tuple[str, str]]] = {}
        for org, kind, value in refs:
            by_org.setdefault(org, []).append((kind, value))
        for org, items in by_org.items():
            self.model.add_known_references(org, items)
        return len(entries)

    def flush(self) -> int:
        """Write the buffered access-log entries and learned references; how many entries."""
        return self._write(*self._take())

    async def flush_async(self) -> int:
        """:meth:`flush`, the writing in a worker thread (the buffers are swapped first)."""
        if not self._pending and not self._pending_refs:
            return 0
        return await asyncio.to_thread(self._write, *self._take())

    # -- lists ------------------------------------------------------------------------------

    def _visible(self, reader: _Reader, indexed: Iterable[IndexedEvent]) -> list[VisibleEvent]:
        out = []
        for ev in indexed:
            seen = self.open(reader, ev)
            if seen is not None:
                out.append(seen)
        return out

    async def visible_among(
        self, principal: Principal, indexed: list[IndexedEvent], held: Iterable[Reference] = ()
    ) -> list[VisibleEvent]:
        """Those of ``indexed`` the principal may read (subscriptions), decrypted.

        Parameters
        ----------
        principal
            Who reads.
        indexed
            The candidate events.
        held
            References the caller holds (a subscription naming them), which make records
            readable by reference holders readable to it.
        """
        reader = self.reader(principal)
        for ref in held:
            reader.held[_key(ref.value)] = ref.value
        self.sync()
        return self._visible(reader, indexed)

    async def events(
        self, principal: Principal, query: EventQuery, cursor: str | None, limit: int
    ) -> tuple[list[VisibleEvent], str | None]:
        """Visible events matching ``query`` in event-id order, ``limit`` at most, and the
        cursor of the next page (None at the end)."""
        reader = self.reader(principal)
        for ref in query.references:
            reader.held[_key(ref.value)] = ref.value
        self.sync()  # (directory changes reach the cached names)
        after = _decode_cursor(cursor)
        me = reader.chain_org
        flt = EventFilter(
            subjects=[_key(r.value) for r in query.references],
            type_codes=query.type_codes(),
            classifier=CLASSIFIERS.get(query.classifier, 0),
            location=query.location,
            time_from=query.time_from,
            time_to=query.time_to,
            created_after=query.created_after,
            limit=max(1, min(limit, 1000)) * 2,
        )
        if not query.references:  # only what is the caller's, names it, or is granted to it
            flt.publishers = [me]
            flt.readers_any = [me]
            flt.granted = [
                (g.owner, g.target) for g in self.model.grants_of_reader(me)
                if g.scope == SUBJECT_SCOPE and g.in_force(self.clock())
            ][:500]
        out: list[VisibleEvent] = []
        for _ in range(50):  # bounded scan: at most 50 pages of candidates per call
            flt.after_id = after
            batch = self.model.find_events(flt)
            if not batch:
                return out, None
            for ev in batch:
                after = ev.event_id
                seen = self.open(reader, ev)
                if seen is None or (query.vessel_imo and not _names_vessel(seen.event, query.vessel_imo)):
                    continue
                out.append(seen)
                if len(out) >= limit:
                    return out, _encode_cursor(after)
        return out, _encode_cursor(after)

    # -- the shipment view -----------------------------------------------------------------

    @staticmethod
    def _candidates(text: str) -> list[identifiers.Candidate]:
        """What ``text`` may be (:func:`gateway.identifiers.detect`); 400 if nothing."""
        found = identifiers.detect(text)
        if not found:
            raise _not_a_reference(text)
        return found

    def _subject_events(self, reader: _Reader, subjects: Sequence[bytes],
                        kind: str | None = None) -> list[VisibleEvent]:
        """Visible events about ``subjects`` (only those whose plaintext subject is of ``kind``:
        a master and a house B/L with the same number share a subject key)."""
        reader.subjects.update(subjects)
        asked = tuple((s, reader.held.get(s)) for s in subjects)
        shown = reader.fetched.get(asked)
        if shown is None:
            shown = self._visible(reader, self.model.events_of_subjects(list(subjects)))
            reader.fetched[asked] = shown
        if kind is not None:
            shown = [v for v in shown if v.event.subject.kind == kind]
        return shown

    # -- the view cache --------------------------------------------------------------------

    def sync(self) -> None:
        """Drop the cached views the read model's changes since the last call touched, and
        on a directory change, bulk load or reset also the cached names and timeline entries
        (a memory read when nothing changed)."""
        generation = self.model.generation()
        if generation == self._generation:
            return
        generation, changed = self.model.changed_since(self._generation)
        if changed is None:  # directory change, bulk load, reset, or too far behind
            self.views.clear()
            self._entries = _LRU(self._entries.size)
            self._names.clear()
            self._ref_indexes.clear()
        else:
            self.views.drop(changed)
        self._generation = generation

    def _record(self, reads: _Reads) -> None:
        """Buffer the access-log entries of a served view (one per owner, reader, event and
        flush window)."""
        pending = self._pending
        missing = [key for key in reads if key not in pending]  # not a set difference: that
        if missing:  # would walk the whole buffer
            now = int(self.clock())
            for key in missing:
                subject, via = reads[key]
                pending[key] = (key[0], key[1], key[2], subject, now, via)

    def shipment_json(self, principal: Principal, text: str) -> bytes | None:
        """The shipment view of what was typed as JSON bytes, or None if nothing visible
        matches (served from the view cache when still good; see the module docstring)."""
        reader = self.reader(principal)
        normal = _normal_of(text) if len(text) <= 64 else None
        if normal is None:  # long texts are not cached: detect raises or finds no reference
            normal = _normal_form(self._candidates(text))
        self.sync()
        key = (reader.chain_org, principal.org_id, normal)
        now = self.clock()
        cached = self.views.get(key, reader.keys, now)
        if cached is not None:
            self._record(cached.reads)
            return _render(cached.parts, now)
        view = self._build(reader, self._candidates(text))
        if view is None:
            return None
        parts = self._encode(view)
        self.views.put(key, _CachedView(
            parts=parts, size=sum(len(p) for p in parts if isinstance(p, bytes)),
            keys=reader.keys, valid_until=reader.valid_until,
            subjects=tuple(reader.subjects), reads=reader.reads,
        ))
        return _render(parts, now)

    def _entry_json(self, v: VisibleEvent) -> bytes:
        """A timeline entry's JSON (cached unless redacted for this caller)."""
        if v.redacted:
            return _dumps(v.to_json(), separators=(",", ":")).encode()
        key = (v.event_id, v.readable_via, v.retracted_by)
        found: bytes | None = self._entries.get(key)
        if found is None:
            found = _dumps(v.to_json(), separators=(",", ":")).encode()
            self._entries.put(key, found)
        return found

    def _encode(self, view: dict[str, Any]) -> tuple[bytes | int, ...]:
        """A built view as JSON: a skeleton with marks for timeline entries and freshness,
        the entries spliced in from their cache; the freshness left to :func:`_render`."""
        entries: list[bytes] = []

        def mark(v: VisibleEvent) -> str:
            entries.append(self._entry_json(v))
            return f"{_NONCE}e{len(entries) - 1}"

        skeleton = {
            name: [mark(x) if isinstance(x, VisibleEvent) else x for x in value]
            if isinstance(value, list) else value
            for name, value in view.items() if name != "_events"
        }
        pieces = _MARKS.split(_dumps(skeleton, separators=(",", ":")).encode())
        parts: list[bytes | int] = []
        run: list[bytes] = [pieces[0]]
        for i in range(1, len(pieces), 3):
            if pieces[i] == b"e":
                run.append(entries[int(pieces[i + 1])])
            else:
                parts.append(b"".join(run))
                parts.append(int(pieces[i + 1]))
                run = []
            run.append(pieces[i + 2])
        parts.append(b"".join(run))
        return tuple(parts)

    # -- the shipment view -----------------------------------------------------------------

    def shipment_of(self, principal: Principal, text: str) -> dict[str, Any] | None:
        """The shipment view of what was typed, or None if nothing visible matches."""
        body = self.shipment_json(principal, text)
        return None if body is None else json.loads(body)

    def _build(self, reader: _Reader, candidates: Sequence[identifiers.Candidate]) -> dict[str, Any] | None:
        """The view of the best valid candidate something visible matches, or None."""
        def rank(c: identifiers.Candidate) -> tuple[int, int]:
            key = _key(c.value)
            reader.subjects.add(key)
            on_chain = (c.kind == "hbl" and self.model.house(key) is not None) or (
                c.kind == "mbl" and self.model.master(key) is not None)
            return (0 if on_chain else 1, _VIEW_KINDS.index(c.kind) if c.kind in _VIEW_KINDS else 99)

        ordered = sorted((c for c in candidates if c.valid), key=rank)
        for cand in ordered:
            view = self._view(reader, cand)
            if view is not None:
                self._learn(reader, _timeline_events(view))
                return view
        return None

    async def shipment(self, principal: Principal, text: str) -> dict[str, Any]:
        """The shipment view JSON (404 with suggestions if nothing visible matches)."""
        view = self.shipment_of(principal, text)
        if view is None:
            raise _not_found(await self.resolve(principal, text))
        return view

    def _view(self, reader: _Reader, cand: identifiers.Candidate) -> dict[str, Any] | None:
        value = cand.value
        key = _key(value)
        reader.held[key] = value
        reader.subjects.add(key)
        if cand.kind == "mbl":
            return self._master_view(reader, cand, key)
        if cand.kind == "hbl":
            return self._house_view(reader, cand, key)
        if cand.kind == "declaration":
            return self._declaration_view(reader, cand, key)
        shown = self._subject_events(reader, [key], cand.kind)
        if not shown:
            return None
        containers = []
        if cand.kind == "container":
            containers = [_container(value, shown)]
        return self._assemble(cand, shown, containers, vessel_from=shown)

    def _derive(self, reader: _Reader, records: Sequence[VisibleEvent], kind: str,
                allowed: set[bytes] | None) -> dict[bytes, str]:
        """References of ``kind`` named by readable records (limited to ``allowed`` keys)."""
        out: dict[bytes, str] = {}
        for v in records:
            refs = list(v.event.related)
            listed = v.event.details.get("containers") if kind == "container" else None
            if isinstance(listed, list):
                refs.extend(Reference("container", c) for c in listed if isinstance(c, str))
            for ref in refs:
                if ref.kind != kind:
                    continue
                k = _key(ref.value)
                if allowed is None or k in allowed:
                    out[k] = ref.value
        for k, value in out.items():
            reader.held.setdefault(k, value)
        return out

    def _master_view(self, reader: _Reader, cand: identifiers.Candidate, key: bytes) -> dict[str, Any] | None:
        records = self._subject_events(reader, [key], "mbl")
        registered = self.model.master(key)
        mapped = set(registered[1]) if registered else None
        numbers = self._derive(reader, records, "container", mapped)
        shown = list(records)
        containers = []
        ordered_keys = list(registered[1]) if registered else list(numbers)
        for ckey in ordered_keys:
            number = numbers.get(ckey)
            if number is None:
                continue  # no readable record names this container
            events_of = self._subject_events(reader, [ckey])
            shown.extend(events_of)
            containers.append(_container(number, events_of))
        if not shown:
            return None
        view = self._assemble(cand, shown, containers, vessel_from=shown)
        if registered:
            view["carrierOrganisation"] = {"id": registered[0],
                                           "name": self.publisher_name(registered[0])}
            view["containerCount"] = len(registered[1])
        return view

    def _house_view(self, reader: _Reader, cand: identifiers.Candidate, key: bytes) -> dict[str, Any] | None:
        house = self.model.house(key)
        records = self._subject_events(reader, [key], "hbl")
        if house is None:
            return self._assemble(cand, records, [], vessel_from=records) if records else None
        covered = set(house.containers)
        numbers = self._derive(reader, records, "container", covered)
        masters = self._derive(reader, records, "mbl", {house.master})
        # master-level records give the vessel and its ETA, never the other containers
        master_records = self._subject_events(reader, list(masters), "mbl") if masters else []
        for k, v in self._derive(reader, master_records, "container", covered).items():
            numbers.setdefault(k, v)
        shown = [_redact(v, covered) for v in records]
        containers = []
        for ckey in house.containers:
            number = numbers.get(ckey)
            if number is None:
                continue
            events_of = self._subject_events(reader, [ckey])
            shown.extend(events_of)
            containers.append(_container(number, events_of))
        if not shown and not master_records:
            return None
        view = self._assemble(cand, shown, containers, vessel_from=shown + master_records)
        view["masterBillOfLading"] = next(iter(masters.values()), None)
        view["forwarder"] = {"id": house.forwarder, "name": self.publisher_name(house.forwarder)}
        return view

    def _declaration_view(self, reader: _Reader, cand: identifiers.Candidate, key: bytes) -> dict[str, Any] | None:
        decl = self.model.declaration(key)
        shown = self._subject_events(reader, [key], "declaration")
        if decl is None and not shown:
            return None
        view = self._assemble(cand, shown, [], vessel_from=shown)
        if decl is not None:
            view["declarations"] = [{
                "number": cand.value,
                "declarant": {"id": decl.declarant, "name": self.publisher_name(decl.declarant)},
                "authority": decl.authority,
                "filedAt": iso_time(decl.filed_time),
                "status": DECLARATION_STATUS.get(decl.statuses[-1][2], "unknown")
                if decl.statuses else "filed",
                "history": [
                    {"time": iso_time(t), "status": DECLARATION_STATUS.get(s, str(s)),
                     "by": self.publisher_name(org)}
                    for t, org, s, _ in decl.statuses
                ],
            }]
        return view

    def _assemble(self, cand: identifiers.Candidate, shown: list[VisibleEvent],
                  containers: list[dict[str, Any]], *, vessel_from: list[VisibleEvent]) -> dict[str, Any]:
        unique = {v.event_id: v for v in shown}
        timeline = sorted(unique.values(), key=lambda v: (v.event.event_time, v.event_id))
        carrier = identifiers.carrier_of(cand.value)
        return {
            "reference": cand.value,
            "kind": cand.kind,
            "carrier": {"scac": carrier.scac, "name": carrier.name} if carrier else None,
            "vessel": _vessel(vessel_from),
            "containers": containers,
            "landLeg": [v for v in timeline if v.event.family == "LAND"],
            "airLeg": [v for v in timeline if v.event.family == "AIR"],
            "declarations": [v for v in timeline if v.event.family == "CUSTOMS"
                             and v.event.subject.kind == "declaration"],
            "timeline": timeline,
            "_events": timeline,
        }

    # -- the resolver ----------------------------------------------------------------------

    def _learn_own(self, reader: _Reader) -> None:
        """Learn the references of the caller's own latest records (bounded, once a minute)."""
        now = time.monotonic()
        if now - self._learned.get(reader.chain_org, -1e9) < 60:
            return
        self._learned[reader.chain_org] = now
        own = self.model.find_events(EventFilter(publishers=[reader.chain_org], limit=2000))
        self._learn(reader, self._visible(reader, own))

    async def resolve(self, principal: Principal, text: str) -> dict[str, Any]:
        """Normalise ``text``, detect its kind and carrier, say whether something visible
        matches, and suggest near matches among references the caller may see."""
        reader = self.reader(principal)
        candidates = self._candidates(text)
        out = []
        match = None
        kinds_of: dict[bytes, set[str]] = {}  # the candidates share one subject key or few
        for cand in candidates:
            found = False
            if cand.valid:
                key = _key(cand.value)
                reader.held[key] = cand.value
                if key not in kinds_of:
                    kinds_of[key] = {v.event.subject.kind for v in self._visible(
                        reader, self.model.events_of_subjects([key], limit=50))}
                found = cand.kind in kinds_of[key]
                if not found and cand.kind == "declaration":
                    found = self.model.declaration(key) is not None
            out.append({"kind": cand.kind, "value": cand.value, "carrier": cand.carrier,
                        "valid": cand.valid, "note": cand.note, "found": found})
            if found and match is None:
                match = {"kind": cand.kind, "value": cand.value}
        suggestions: list[dict[str, Any]] = []
        if match is None:
            self._learn_own(reader)
            suggestions = self.suggest(reader, candidates[0].value)
        return {"query": text, "normalised": candidates[0].value, "candidates": out,
                "match": match, "suggestions": suggestions}

    def _ref_index(self, org: int) -> _RefIndex:
        """``org``'s suggestion index: built from the read model's known references (and the
        ones learned here not yet written), rebuilt after ``suggest_refresh_seconds``."""
        now = time.monotonic()
        index = self._ref_indexes.get(org)
        if index is not None and now - index.built < self._suggest_refresh:
            self._ref_indexes.move_to_end(org)
            return index
        index = _RefIndex(now)
        for kind, value in self.model.known_references(org, limit=SUGGEST_INDEX_SIZE):
            index.add(kind, value)
        for item_org, kind, value in self._pending_refs:
            if item_org == org:
                index.add(kind, value)
        self._ref_indexes[org] = index
        self._ref_indexes.move_to_end(org)
        while len(self._ref_indexes) > SUGGEST_INDEXES:
            self._ref_indexes.popitem(last=False)
        return index

    def suggest(self, reader: _Reader, value: str, limit: int = 5) -> list[dict[str, Any]]:
        """Near matches of ``value`` among references ``reader`` has legitimately read (at most
        ``limit``, scoring :data:`SUGGEST_CUTOFF` or more; bounded work, see :class:`_RefIndex`)."""
        self.sync()  # (a reset drops the indexes)
        index = self._ref_index(reader.chain_org)
        choices = index.candidates(value, self._suggest_scan)
        if not choices:
            return []
        found = process.extract(value, choices, scorer=fuzz.ratio, limit=limit,
                                score_cutoff=SUGGEST_CUTOFF)
        return [{"kind": index.kinds[v], "value": v, "score": round(score, 1)}
                for v, score, _ in found]

    # -- directory and access log ---------------------------------------------------------

    def directory(self) -> list[dict[str, Any]]:
        return [
            {"id": o.org_id, "name": o.name,
             "roles": [n for n in _ROLE_NAMES if o.roles & ROLES[n]],
             "active": o.active, "encryptionKey": "0x" + o.encryption_key.hex()}
            for o in self.model.organisations()
        ]

    def access_log_of(self, principal: Principal, before: int, limit: int) -> dict[str, Any]:
        reader = self.reader(principal)
        rows = self.model.access_log(reader.chain_org, before=before, limit=limit)
        return {
            "entries": [
                {"id": i, "reader": e.reader, "readerName": self.publisher_name(e.reader),
                 "eventId": e.event_id, "subject": "0x" + e.subject.hex(),
                 "time": iso_time(e.time), "via": e.via}
                for i, e in rows
            ],
            "next": str(rows[-1][0]) if len(rows) == limit else None,
        }


# -- view helpers -------------------------------------------------------------------------------


def _timeline_events(view: dict[str, Any]) -> list[VisibleEvent]:
    events_of: list[VisibleEvent] = view.get("_events", [])
    return events_of


def _redact(v: VisibleEvent, covered: set[bytes]) -> VisibleEvent:
    """``v`` without mentions of containers outside ``covered`` (the house-B/L subset rule)."""
    related = tuple(r for r in v.event.related if r.kind != "container" or _key(r.value) in covered)
    details = dict(v.event.details)
    listed = details.get("containers")
    if isinstance(listed, list):
        details["containers"] = [
            c for c in listed if isinstance(c, str) and _key(c) in covered
        ]
    if related == v.event.related and details == v.event.details:
        return v
    return replace(v, event=replace(v.event, related=related, details=details), redacted=True)


def _names_vessel(event: CanonicalEvent, imo: str) -> bool:
    vessel = event.details.get("vessel")
    if isinstance(vessel, dict) and str(vessel.get("imo", "")) == imo:
        return True
    return any(r.kind == "vessel" and r.value == imo for r in event.related)


def _container(number: str, shown: list[VisibleEvent]) -> dict[str, Any]:
    live = sorted((v for v in shown if not v.retracted_by), key=lambda v: (v.event.event_time,
                                                                          v.event_id))
    status, status_time = None, None
    reefer = None
    for v in live:
        e = v.event
        if e.classifier == "ACT" and e.event_type in STATUS_OF:
            status, status_time = STATUS_OF[e.event_type], e.event_time
        if e.event_type == "REEFER.MEAS":
            reading = e.details
            reefer = {
                "temperature": reading.get("temperature"),
                "setpoint": reading.get("setpoint"),
                "humidity": reading.get("humidity"),
                "time": _iso(e.event_time),
                "source": v.publisher_name,
            }
    carrier = identifiers.carrier_of(number)
    return {
        "number": number,
        "owner": carrier.name if carrier else None,
        "status": status,
        "statusTime": iso_time(status_time) if status_time else None,
        "reefer": reefer,
        "events": [v.event_id for v in sorted(shown, key=lambda v: (v.event.event_time,
                                                                     v.event_id))],
    }


def _vessel(shown: list[VisibleEvent]) -> dict[str, Any] | None:
    """Vessel name and IMO, latest position, ETD and ETA (their ``freshness`` a mark that
    :func:`_render` turns into seconds since recorded)."""
    vessel: dict[str, Any] = {}
    position = None
    estimates: dict[str, VisibleEvent] = {}
    for v in sorted(shown, key=lambda v: (v.block_time, v.event_id)):
        if v.retracted_by:
            continue
        e = v.event
        info = e.details.get("vessel")
        if isinstance(info, dict):
            vessel.setdefault("name", info.get("name"))
            vessel.setdefault("imo", info.get("imo"))
        for ref in e.related:
            if ref.kind == "vessel":
                vessel.setdefault("imo", ref.value)
        pos = e.details.get("position")
        if (isinstance(pos, dict) and "lat" in pos and "lon" in pos
                and (position is None or e.event_time >= position[0])):
            position = (e.event_time, pos, v.publisher_name)
        if e.event_type in ("TRANSPORT.ARRI", "TRANSPORT.DEPA"):
            estimates["eta" if e.event_type == "TRANSPORT.ARRI" else "etd"] = v
    if not vessel and position is None and not estimates:
        return None
    out: dict[str, Any] = {"name": vessel.get("name"), "imo": vessel.get("imo")}
    out["latestPosition"] = (
        {"lat": position[1]["lat"], "lon": position[1]["lon"], "time": iso_time(position[0]),
         "source": position[2]} if position else None
    )
    for name in ("etd", "eta"):
        estimate = estimates.get(name)
        out[name] = None if estimate is None else {
            "time": iso_time(estimate.event.event_time),
            "classifier": estimate.event.classifier,
            "source": estimate.publisher_name,
            "recordedAt": iso_time(estimate.block_time),
            "freshness": _freshness_mark(estimate.block_time),
        }
    return out


def _encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = int(raw["after"])
        if after < 0:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise BadRequest("the cursor is not one this API gave out", code="bad-cursor") from None


class _NotFoundWithSuggestions(NotFound):
    """404 whose body also carries the resolver's answer at the top level."""

    def __init__(self, resolved: dict[str, Any]) -> None:
        super().__init__(
            f"nothing you may see matches {resolved['normalised']!r}",
            code="reference-not-found",
            details={"suggestions": resolved["suggestions"], "candidates": resolved["candidates"]},
        )
        self.resolved = resolved


def _not_a_reference(text: str) -> BadRequest:
    return BadRequest(
        f"{text[:40]!r} is not a reference number (letters and digits, at most 35)",
        code="not-a-reference",
    )


def _not_found(resolved: dict[str, Any]) -> _NotFoundWithSuggestions:
    return _NotFoundWithSuggestions(resolved)


def _not_found_response(exc: _NotFoundWithSuggestions, request: web.Request) -> web.Response:
    from gateway.errors import REQUEST_ID

    rid = request.get(REQUEST_ID, "")
    body = json.loads(error_body(exc.status, exc.code, exc.message, exc.details, rid))
    body["suggestions"] = exc.resolved["suggestions"]
    body["candidates"] = exc.resolved["candidates"]
    return web.json_response(body, status=404)


# -- HTTP ---------------------------------------------------------------------------------------


routes = web.RouteTableDef()

_dumps = json.dumps


def _json(body: Any) -> web.Response:
    return web.Response(body=_dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json")


@routes.get("/v1/track/{reference}")
async def track(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    tracking = request.app[TRACKING]
    text = request.match_info["reference"]
    body = tracking.shipment_json(principal, text)
    if body is None:
        return _not_found_response(_not_found(await tracking.resolve(principal, text)), request)
    return web.Response(body=body, content_type="application/json")


@routes.get("/v1/resolve")
async def resolve(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    text = request.query.get("q", "")
    if not text:
        raise BadRequest("give the reference as ?q=", code="missing-query")
    resolved = await request.app[TRACKING].resolve(principal, text)
    if resolved["match"] is None:
        return _not_found_response(_not_found(resolved), request)
    return _json(resolved)


@routes.get("/v1/access-log")
async def access_log(request: web.Request) -> web.Response:
    principal = require(request, "tracking:read")
    try:
        before = int(request.query.get("before", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise BadRequest("before and limit are integers", code="bad-query") from None
    if not (0 <= before < 1 << 62 and 1 <= limit <= 1000):
        raise BadRequest("before >= 0 and 1 <= limit <= 1000", code="bad-query")
    return _json(request.app[TRACKING].access_log_of(principal, before, limit))


@routes.get("/v1/organisations")
async def organisations(request: web.Request) -> web.Response:
    require(request)
    return _json({"organisations": request.app[TRACKING].directory()})


_VIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reference", "kind", "containers", "timeline"],
    "properties": {
        "reference": {"type": "string"},
        "kind": {"type": "string"},
        "carrier": {"type": ["object", "null"]},
        "vessel": {"type": ["object", "null"]},
        "containers": {"type": "array", "items": {"type": "object"}},
        "landLeg": {"type": "array"},
        "airLeg": {"type": "array"},
        "declarations": {"type": "array"},
        "timeline": {"type": "array", "items": {"type": "object"}},
    },
}

_PATHS: dict[str, Any] = {
    "/v1/track/{reference}": {
        "get": {
            "tags": ["tracking"],
            "summary": "Shipment view of a master B/L, house B/L, container, air waybill or "
            "declaration number",
            "parameters": [{"name": "reference", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": 64}}],
            "responses": {
                "200": {"description": "What the caller may see",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ShipmentView"}}}},
                **openapi.error_responses(400, 401, 403, 404, 429),
            },
        }
    },
    "/v1/resolve": {
        "get": {
            "tags": ["tracking"],
            "summary": "Normalise a reference, detect its kind and carrier, suggest near matches",
            "parameters": [{"name": "q", "in": "query", "required": True,
                            "schema": {"type": "string", "maxLength": 64}}],
            "responses": {
                "200": {"description": "A visible match"},
                **openapi.error_responses(400, 401, 403, 404, 429),
            },
        }
    },
    "/v1/access-log": {
        "get": {
            "tags": ["tracking"],
            "summary": "Who saw my data: reads of the caller organisation's records by others",
            "parameters": [
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ],
            "responses": {"200": {"description": "Newest first"},
                          **openapi.error_responses(400, 401, 403, 429)},
        }
    },
    "/v1/organisations": {
        "get": {
            "tags": ["tracking"],
            "summary": "The organisations directory (chain ids, names, roles)",
            "responses": {"200": {"description": "Every member"},
                          **openapi.error_responses(401, 429)},
        }
    },
}


class _CacheMetrics(Collector):
    """The view cache's counters and sizes, read at scrape time (nothing on the hot path)."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        views = self.tracking.views
        lookups = CounterMetricFamily("portledger_tracking_view_cache_lookups",
                                      "Shipment view cache lookups by result", labels=["result"])
        lookups.add_metric(["hit"], views.hits)
        lookups.add_metric(["miss"], views.misses)
        yield lookups
        yield CounterMetricFamily("portledger_tracking_view_cache_dropped",
                                  "Cached views dropped because what they were built from changed",
                                  value=views.invalidations)
        yield CounterMetricFamily("portledger_tracking_view_cache_evictions",
                                  "Cached views evicted to stay within the size bounds",
                                  value=views.evictions)
        yield GaugeMetricFamily("portledger_tracking_view_cache_entries", "Cached views",
                                value=len(views))
        yield GaugeMetricFamily("portledger_tracking_view_cache_bytes",
                                "Bytes of cached views", value=views.bytes)


async def _tracking_ctx(app: web.Application) -> AsyncIterator[None]:
    tracking = Tracking(app[READ_MODEL], app.get(KEYSTORE),
                        settings=TrackingSettings.from_config(app[CONFIG]))
    app[TRACKING] = tracking
    registry = app.get(METRICS)
    collector = _CacheMetrics(tracking)
    if registry is not None:
        registry.register(collector)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await tracking.flush_async()
            except Exception:
                log.exception("access log flush failed")

    task = asyncio.get_running_loop().create_task(flusher(), name="access-log")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await tracking.flush_async()
        if registry is not None:
            registry.unregister(collector)


def setup(app: web.Application) -> None:
    """Tracking routes, the tracking service (``app[TRACKING]``) and the access-log flusher."""
    app.cleanup_ctx.append(_tracking_ctx)
    app.router.add_routes(routes)
    openapi.add(app, _PATHS, {"ShipmentView": _VIEW_SCHEMA},
                [{"name": "tracking", "description": "Where is my cargo, and who saw my data"}])
