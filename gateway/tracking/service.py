"""The tracking service: shipment views, event lists, the resolver and the access log over one
read model, for callers whose reads :mod:`gateway.tracking.visibility` decides.

:class:`Tracking` ties the parts together: it queries the read model, lets
:class:`~gateway.tracking.visibility.Entitlements` open what the caller may read, assembles the
view (:mod:`gateway.tracking.views`), keeps it in the view cache
(:mod:`gateway.tracking.cache`, kept in step with the read model's change journal by
:meth:`Tracking.sync`), suggests near matches (:mod:`gateway.tracking.suggestions`) and writes
the access log in batches (:meth:`Tracking.flush`). See ``docs/tracking.md``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import ROLES
from contracts.cargo import CLASSIFIERS, EVENT_TYPES
from gateway.confidential.keystore import Keystore
from gateway.errors import BadRequest, NotFound
from gateway.events import identifiers
from gateway.events.model import Reference
from gateway.isotime import iso_time
from gateway.principal import Principal
from gateway.readside.readmodel import (
    SUBJECT_SCOPE,
    AccessRow,
    EventFilter,
    IndexedEvent,
    ReadModel,
)
from gateway.tracking import views
from gateway.tracking.cache import (
    LRU,
    CachedView,
    Reads,
    TrackingSettings,
    ViewCache,
    normal_form,
    normal_of,
    render,
)
from gateway.tracking.suggestions import Suggestions
from gateway.tracking.visibility import Entitlements, Reader, VisibleEvent, key_of

_ROLE_NAMES = tuple(ROLES)


@dataclass(frozen=True)
class DeclarationRef:
    """What the declarations' hook tells one of a declaration's readers about its number."""

    chain_key: bytes
    """The key of its filing in ``Declarations.vy``."""
    alias: str
    """The keyed ``declaration`` reference its customs events are published under."""


#: The declarations' hook (:data:`gateway.appkeys.DECLARATION_KEYS`): the chain key and the
#: alias of the declaration with this official number if the caller may read it, else None. A
#: filing and the customs events of its results are keyed by a secret salt, never by the
#: number's plain hash, so tracking finds them through this hook alone
#: (``docs/declarations.md``).
DeclarationKeys = Callable[[Principal, str], DeclarationRef | None]


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


class NotFoundWithSuggestions(NotFound):
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
    declaration_keys
        The declarations' hook (:data:`DeclarationKeys`); None: no declaration's filing on
        chain is shown to anyone.
    """

    def __init__(
        self,
        model: ReadModel,
        keystore: Keystore | None,
        *,
        cache_size: int | None = None,
        clock: Callable[[], float] = time.time,
        settings: TrackingSettings | None = None,
        declaration_keys: DeclarationKeys | None = None,
    ) -> None:
        settings = settings or TrackingSettings()
        self.model = model
        self.declaration_keys = declaration_keys
        self.keystore = keystore
        self.clock = clock
        self.entitlements = Entitlements(
            model, keystore, clock=clock,
            plaintexts=settings.plaintext_cache_entries if cache_size is None else cache_size)
        self._plain = self.entitlements.plain
        self._entries = LRU(settings.entry_cache_entries)
        self.views = ViewCache(settings.view_cache_entries,
                               int(settings.view_cache_megabytes * (1 << 20)))
        self.suggestions = Suggestions(model, refresh_seconds=settings.suggest_refresh_seconds,
                                       scan=int(settings.suggest_scan))
        self._generation = model.generation()
        self._learned: dict[int, float] = {}

    # -- caller ---------------------------------------------------------------------------

    def reader(self, principal: Principal) -> Reader:
        """The caller's reading state (403 if its organisation is not a chain member yet)."""
        return self.entitlements.reader(principal)

    def publisher_name(self, org: int) -> str:
        """An organisation's directory name."""
        return self.entitlements.publisher_name(org)

    def _learn(self, reader: Reader, shown: Iterable[VisibleEvent]) -> None:
        """Remember the references of what ``reader`` read (for its suggestions)."""
        self.suggestions.learn(
            reader.chain_org, (ref for v in shown for ref in (v.event.subject, *v.event.related)))

    # -- access log -------------------------------------------------------------------------

    def _take(self) -> tuple[list[AccessRow], list[tuple[int, str, str]]]:
        pending = self.entitlements.pending
        entries = list(pending.values())
        pending.clear()
        return entries, self.suggestions.take_pending()

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
        if not self.entitlements.pending and not self.suggestions.pending:
            return 0
        return await asyncio.to_thread(self._write, *self._take())

    def _record(self, reads: Reads) -> None:
        """Buffer the access-log entries of a served view (one per owner, reader, event and
        flush window)."""
        pending = self.entitlements.pending
        missing = [key for key in reads if key not in pending]  # not a set difference: that
        if missing:  # would walk the whole buffer
            now = int(self.clock())
            for key in missing:
                subject, via = reads[key]
                pending[key] = (key[0], key[1], key[2], subject, now, via)

    # -- lists ------------------------------------------------------------------------------

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
            reader.held[key_of(ref.value)] = ref.value
        self.sync()
        return self.entitlements.visible(reader, indexed)

    async def events(
        self, principal: Principal, query: EventQuery, cursor: str | None, limit: int
    ) -> tuple[list[VisibleEvent], str | None]:
        """Visible events matching ``query`` in event-id order, ``limit`` at most, and the
        cursor of the next page (None at the end)."""
        reader = self.reader(principal)
        for ref in query.references:
            reader.held[key_of(ref.value)] = ref.value
        self.sync()  # (directory changes reach the cached names)
        after = _decode_cursor(cursor)
        me = reader.chain_org
        flt = EventFilter(
            subjects=[key_of(r.value) for r in query.references],
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
                seen = self.entitlements.open(reader, ev)
                if seen is None or (query.vessel_imo
                                    and not views.names_vessel(seen.event, query.vessel_imo)):
                    continue
                out.append(seen)
                if len(out) >= limit:
                    return out, _encode_cursor(after)
        return out, _encode_cursor(after)

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
            self._entries = LRU(self._entries.size)
            self.entitlements.names.clear()
            self.suggestions.clear()
        else:
            self.views.drop(changed)
        self._generation = generation

    def shipment_json(self, principal: Principal, text: str) -> bytes | None:
        """The shipment view of what was typed as JSON bytes, or None if nothing visible
        matches (served from the view cache when still good; see ``docs/tracking.md``)."""
        reader = self.reader(principal)
        normal = normal_of(text) if len(text) <= 64 else None
        if normal is None:  # long texts are not cached: detect raises or finds no reference
            normal = normal_form(self._candidates(text))
        self.sync()
        key = (reader.chain_org, principal.org_id, normal)
        now = self.clock()
        cached = self.views.get(key, reader.keys, now)
        if cached is not None:
            self._record(cached.reads)
            return render(cached.parts, now)
        view = self._build(reader, self._candidates(text), principal)
        if view is None:
            return None
        parts = views.encode(view, self._entries)
        self.views.put(key, CachedView(
            parts=parts, size=sum(len(p) for p in parts if isinstance(p, bytes)),
            keys=reader.keys, valid_until=reader.valid_until,
            subjects=tuple(reader.subjects), reads=reader.reads,
        ))
        return render(parts, now)

    # -- the shipment view -----------------------------------------------------------------

    def shipment_of(self, principal: Principal, text: str) -> dict[str, Any] | None:
        """The shipment view of what was typed, or None if nothing visible matches."""
        body = self.shipment_json(principal, text)
        if body is None:
            return None
        view: dict[str, Any] = json.loads(body)
        return view

    async def shipment(self, principal: Principal, text: str) -> dict[str, Any]:
        """The shipment view JSON (404 with suggestions if nothing visible matches)."""
        view = self.shipment_of(principal, text)
        if view is None:
            raise NotFoundWithSuggestions(await self.resolve(principal, text))
        return view

    @staticmethod
    def _candidates(text: str) -> list[identifiers.Candidate]:
        """What ``text`` may be (:func:`gateway.events.identifiers.detect`); 400 if nothing."""
        found = identifiers.detect(text)
        if not found:
            raise _not_a_reference(text)
        return found

    def subject_events(self, reader: Reader, subjects: Sequence[bytes],
                       kind: str | None = None) -> list[VisibleEvent]:
        """Visible events about ``subjects`` (only those whose plaintext subject is of ``kind``:
        a master and a house B/L with the same number share a subject key)."""
        reader.subjects.update(subjects)
        asked = tuple((s, reader.held.get(s)) for s in subjects)
        shown = reader.fetched.get(asked)
        if shown is None:
            shown = self.entitlements.visible(reader,
                                              self.model.events_of_subjects(list(subjects)))
            reader.fetched[asked] = shown
        if kind is not None:
            shown = [v for v in shown if v.event.subject.kind == kind]
        return shown

    def _build(self, reader: Reader, candidates: Sequence[identifiers.Candidate],
               principal: Principal) -> dict[str, Any] | None:
        """The view of the best valid candidate something visible matches, or None."""
        def rank(c: identifiers.Candidate) -> tuple[int, int]:
            key = key_of(c.value)
            reader.subjects.add(key)
            on_chain = (c.kind == "hbl" and self.model.house(key) is not None) or (
                c.kind == "mbl" and self.model.master(key) is not None)
            return (0 if on_chain else 1,
                    views.VIEW_KINDS.index(c.kind) if c.kind in views.VIEW_KINDS else 99)

        ordered = sorted((c for c in candidates if c.valid), key=rank)
        for cand in ordered:
            view = self._view(reader, cand, principal)
            if view is not None:
                self._learn(reader, views.timeline_events(view))
                return view
        return None

    def _view(self, reader: Reader, cand: identifiers.Candidate, principal: Principal,
              ) -> dict[str, Any] | None:
        value = cand.value
        key = key_of(value)
        reader.held[key] = value
        reader.subjects.add(key)
        if cand.kind == "mbl":
            return self._master_view(reader, cand, key)
        if cand.kind == "hbl":
            return self._house_view(reader, cand, key)
        if cand.kind == "declaration":
            return self._declaration_view(reader, cand, key, principal)
        shown = self.subject_events(reader, [key], cand.kind)
        if not shown:
            return None
        containers = []
        if cand.kind == "container":
            containers = [views.container(value, shown)]
        return views.assemble(cand, shown, containers, vessel_from=shown)

    @staticmethod
    def _derive(reader: Reader, records: Sequence[VisibleEvent], kind: str,
                allowed: set[bytes] | None) -> dict[bytes, str]:
        """References of ``kind`` named by readable records (limited to ``allowed`` keys),
        which ``reader`` thereby holds."""
        out = views.references_named(records, kind, allowed)
        for k, value in out.items():
            reader.held.setdefault(k, value)
        return out

    def _master_view(self, reader: Reader, cand: identifiers.Candidate, key: bytes,
                     ) -> dict[str, Any] | None:
        records = self.subject_events(reader, [key], "mbl")
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
            events_of = self.subject_events(reader, [ckey])
            shown.extend(events_of)
            containers.append(views.container(number, events_of))
        if not shown:
            return None
        view = views.assemble(cand, shown, containers, vessel_from=shown)
        if registered:
            view["carrierOrganisation"] = {"id": registered[0],
                                           "name": self.publisher_name(registered[0])}
            view["containerCount"] = len(registered[1])
        return view

    def _house_view(self, reader: Reader, cand: identifiers.Candidate, key: bytes,
                    ) -> dict[str, Any] | None:
        house = self.model.house(key)
        records = self.subject_events(reader, [key], "hbl")
        if house is None:
            return views.assemble(cand, records, [], vessel_from=records) if records else None
        covered = set(house.containers)
        numbers = self._derive(reader, records, "container", covered)
        masters = self._derive(reader, records, "mbl", {house.master})
        # master-level records give the vessel and its ETA, never the other containers
        master_records = self.subject_events(reader, list(masters), "mbl") if masters else []
        for k, v in self._derive(reader, master_records, "container", covered).items():
            numbers.setdefault(k, v)
        shown = [views.redact(v, covered) for v in records]
        containers = []
        for ckey in house.containers:
            number = numbers.get(ckey)
            if number is None:
                continue
            events_of = self.subject_events(reader, [ckey])
            shown.extend(events_of)
            containers.append(views.container(number, events_of))
        if not shown and not master_records:
            return None
        view = views.assemble(cand, shown, containers, vessel_from=shown + master_records)
        view["masterBillOfLading"] = next(iter(masters.values()), None)
        view["forwarder"] = {"id": house.forwarder, "name": self.publisher_name(house.forwarder)}
        return view

    def declaration_ref(self, principal: Principal, number: str) -> DeclarationRef | None:
        """The chain key and alias of the declaration ``number`` if the caller is one of its
        readers (the declarations' hook), else None."""
        return None if self.declaration_keys is None else self.declaration_keys(principal,
                                                                                 number)

    def _declaration_view(self, reader: Reader, cand: identifiers.Candidate, key: bytes,
                          principal: Principal) -> dict[str, Any] | None:
        """Customs events about the number the caller may read (under the number, as a feed
        names it, and under the declaration's alias, as its results are published), and the
        filing on chain — the alias and the filing for the declaration's readers only (a
        stranger gets what an unknown number gets)."""
        ref = self.declaration_ref(principal, cand.value)
        subjects = [key]
        if ref is not None:
            reader.subjects.add(ref.chain_key)  # (a new status drops the cached view)
            alias = key_of(ref.alias)
            reader.held[alias] = ref.alias
            subjects.append(alias)
        decl = None if ref is None else self.model.declaration(ref.chain_key)
        shown = self.subject_events(reader, subjects, "declaration")
        if decl is None and not shown:
            return None
        view = views.assemble(cand, shown, [], vessel_from=shown)
        if decl is not None:
            view["declarations"] = [views.declaration(cand.value, decl, self.publisher_name)]
        return view

    # -- the resolver ----------------------------------------------------------------------

    def _learn_own(self, reader: Reader) -> None:
        """Learn the references of the caller's own latest records (bounded, once a minute)."""
        now = time.monotonic()
        if now - self._learned.get(reader.chain_org, -1e9) < 60:
            return
        self._learned[reader.chain_org] = now
        own = self.model.find_events(EventFilter(publishers=[reader.chain_org], limit=2000))
        self._learn(reader, self.entitlements.visible(reader, own))

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
                key = key_of(cand.value)
                reader.held[key] = cand.value
                if key not in kinds_of:
                    kinds_of[key] = {v.event.subject.kind for v in self.entitlements.visible(
                        reader, self.model.events_of_subjects([key], limit=50))}
                found = cand.kind in kinds_of[key]
                if not found and cand.kind == "declaration":
                    ref = self.declaration_ref(principal, cand.value)
                    found = ref is not None and (
                        self.model.declaration(ref.chain_key) is not None
                        or bool(self.entitlements.visible(reader, self.model.events_of_subjects(
                            [key_of(ref.alias)], limit=50))))
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

    def suggest(self, reader: Reader, value: str, limit: int = 5) -> list[dict[str, Any]]:
        """Near matches of ``value`` among references ``reader`` has legitimately read
        (:meth:`gateway.tracking.suggestions.Suggestions.suggest`)."""
        self.sync()  # (a reset drops the indexes)
        return self.suggestions.suggest(reader.chain_org, value, limit)

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
