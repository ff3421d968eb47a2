"""The telemetry service: what the feeds intake and the HTTP handlers call.

- :func:`ingest` stores an organisation's readings (the feeds intake calls it after
  :func:`role_problem` kept only the readings the organisation may anchor);
- :func:`readings_of`, :func:`reading_of` and :func:`vessel_track` answer the queries, each
  filtered by the visibility rule (:mod:`gateway.telemetry.visibility`) before anything is
  decrypted;
- :func:`open_telemetry` opens the store and, in the process that runs background tasks, the
  anchoring task (:mod:`gateway.telemetry.anchoring`) for the application's lifetime.

Blocking SQLite work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from contracts.cargo import subject_key
from gateway import errors
from gateway.appkeys import (
    ACCOUNTS,
    ANCHORER,
    CONFIG,
    KEYSTORE,
    NODE,
    OUTBOX,
    READ_MODEL,
    SUBMITTER,
    TELEMETRY,
)
from gateway.events import identifiers
from gateway.events.model import REFERENCE_KINDS, Reference, Visibility
from gateway.principal import Principal
from gateway.readside.readmodel import AccessEntry
from gateway.telemetry.anchoring import Anchorer
from gateway.telemetry.model import Reading
from gateway.telemetry.records import StoredReading, Vessel
from gateway.telemetry.store import DEFAULT_HISTORY, MAX_TIME, SECRET, ReadingRefused, open_store
from gateway.telemetry.visibility import Viewer, entitlement, role_problem

__all__ = ["Found", "ingest", "open_telemetry", "parse_subject", "reading_of", "readings_of",
           "role_problem", "vessel_track", "viewer_of"]

log = logging.getLogger("portledger.gateway.telemetry")


@dataclass(frozen=True)
class Found:
    """A reading the caller may read, and why."""

    stored: StoredReading
    via: str
    """``public``, ``owner``, ``named`` or ``reference``."""

    def to_json(self, owner_name: str | None = None) -> dict[str, Any]:
        body = self.stored.to_json()
        body["ownerName"] = owner_name
        body["readableVia"] = self.via
        return body


# -- intake ------------------------------------------------------------------------------------
async def ingest(app: web.Application, org: Principal | int, readings: Sequence[Reading],
                 visibility: Visibility) -> tuple[int, int]:
    """Store ``readings`` of an organisation (the caller, or a gateway organisation id);
    ``(stored, duplicates)``. They are anchored at the next batch window.

    ``visibility`` chooses who besides the owner reads the private readings (reefer, truck
    positions); AIS readings are everyone's.

    Raises
    ------
    gateway.errors.Unprocessable
        A reading the store does not take (time out of range, too large, not finite JSON) or a
        malformed visibility; nothing was stored. ``details.index`` names the reading.
    """
    if isinstance(org, Principal):
        org_id, owner = org.org_id, org.chain_org
    else:
        org_id, owner = org, _chain_org_of(app, org)
    if not readings:
        return 0, 0
    try:
        return await asyncio.to_thread(app[TELEMETRY].add, org_id, readings, visibility,
                                       owner=owner)
    except ReadingRefused as exc:
        raise errors.Unprocessable(exc.message, code=exc.code,
                                   details={"index": exc.index}) from None


def _chain_org_of(app: web.Application, org_id: int) -> int | None:
    accounts = app.get(ACCOUNTS)
    if accounts is None:
        return None
    try:
        return accounts.organisation(org_id).chain_org
    except errors.NotFound:
        return None


# -- queries -----------------------------------------------------------------------------------
def viewer_of(principal: Principal, *, by_reference: bool = False) -> Viewer:
    """The visibility rule's view of a caller."""
    return Viewer(principal.org_id, principal.chain_org, by_reference)


def parse_subject(text: str) -> Reference:
    """A ``kind:value`` query (``container:MSCU1234565``) as a normalised reference.

    A value whose check digit fails is taken compacted, as the feed adapters keep (and flag)
    such references, so their readings can still be asked for.

    Raises
    ------
    gateway.errors.BadRequest
        ``bad-subject``: not ``kind:value``, an unknown kind, or not a reference of that kind.
    """
    kind, _, value = text.partition(":")
    kind = kind.strip().lower()
    if kind not in REFERENCE_KINDS or not value.strip():
        raise errors.BadRequest(
            f"subject is kind:value with kind one of {', '.join(REFERENCE_KINDS)}",
            code="bad-subject")
    try:
        return Reference(kind, identifiers.normalise(kind, value))
    except identifiers.IdentifierError as exc:
        if exc.code != "invalid-check-digit":
            raise errors.BadRequest(f"subject: {exc}", code="bad-subject") from None
        return Reference(kind, identifiers.compact(value))


async def readings_of(app: web.Application, principal: Principal, reading_type: str, *,
                      subject: Reference | None = None, mmsi: int | None = None,
                      since: int = 0, until: int = MAX_TIME, limit: int = DEFAULT_HISTORY,
                      ) -> tuple[list[Found], bool]:
    """The newest readings of a type about an asset that the caller may read (oldest first),
    and whether older ones were left out. Asking by ``subject`` is asking by its reference."""
    viewer = viewer_of(principal, by_reference=subject is not None)

    def allowed(access: Any) -> bool:
        return entitlement(viewer, access) is not None

    found, more = await asyncio.to_thread(app[TELEMETRY].history, reading_type,
                                          subject=subject, mmsi=mmsi, since=since, until=until,
                                          limit=limit, allow=allowed)
    out = []
    for stored in found:
        via = entitlement(viewer, stored.access)
        if via is not None:
            out.append(Found(stored, via))
    await log_reads(app, viewer, out)
    return out, more


async def log_reads(app: web.Application, viewer: Viewer, found: Sequence[Found]) -> None:
    """Record in the owners' access log ("who saw my data") that ``viewer`` read their private
    readings: one entry per owner and subject per request, ``via`` ``reading:<how>``; reads of
    public AIS and of one's own readings are not logged."""
    model = app.get(READ_MODEL)
    if model is None or viewer.chain_org is None:
        return
    now = int(time.time())
    entries: dict[tuple[int, bytes], AccessEntry] = {}
    for item in found:
        stored = item.stored
        subject = stored.reading.subject
        if item.via in ("public", "owner") or stored.owner is None or subject is None:
            continue
        key = subject_key(subject.value)
        entries.setdefault((stored.owner, key), AccessEntry(
            stored.owner, viewer.chain_org, 0, key, now, f"reading:{item.via}"))
    if entries:
        await asyncio.to_thread(model.log_access, list(entries.values()))


async def reading_of(app: web.Application, principal: Principal, reading_id: int,
                     subject: Reference | None = None) -> Found | None:
    """One reading if the caller may read it (``subject``: the reference it asks by, which
    must be the reading's own to count), else None — the same answer as for no reading."""
    stored = await asyncio.to_thread(app[TELEMETRY].reading, reading_id)
    if stored is None:
        return None
    by_reference = subject is not None and stored.reading.subject == subject
    viewer = viewer_of(principal, by_reference=by_reference)
    via = entitlement(viewer, stored.access)
    if via is None:
        return None
    await log_reads(app, viewer, [Found(stored, via)])
    return Found(stored, via)


async def vessel_track(app: web.Application, imo: str, *, since: int = 0,
                       until: int = MAX_TIME, limit: int = DEFAULT_HISTORY,
                       ) -> tuple[Vessel | None, list[StoredReading], bool]:
    """A vessel's static data and AIS track (public): positions stored under its IMO number
    and under every MMSI static data linked to it."""
    store = app[TELEMETRY]
    vessel = await asyncio.to_thread(store.vessel, imo)
    track, more = await asyncio.to_thread(store.history, "ais-position",
                                          subject=Reference("vessel", imo), since=since,
                                          until=until, limit=limit)
    return vessel, track, more


def owner_name(app: web.Application, chain_org: int | None) -> str | None:
    """The directory name of an owner (None if unknown)."""
    model = app.get(READ_MODEL)
    if chain_org is None or model is None:
        return None
    member = model.organisation(chain_org)
    return member.name if member is not None else None


# -- resources ---------------------------------------------------------------------------------
def open_telemetry(app: web.Application) -> None:
    """Open ``app[TELEMETRY]`` (private readings sealed under the keystore secret
    :data:`~gateway.telemetry.store.SECRET`) and, where background tasks run, ``app[ANCHORER]``
    (woken by the submitter's settlements); both close at cleanup."""
    config = app[CONFIG]
    store = open_store(config.data_dir, app[KEYSTORE].secret(SECRET))
    app[TELEMETRY] = store
    anchorer: Anchorer | None = None
    if config.background_tasks:
        anchorer = Anchorer(store, app[OUTBOX], app.get(NODE),
                            window=config.telemetry_window_seconds,
                            batch_max=config.telemetry_batch_max)
        app[ANCHORER] = anchorer
        submitter = app.get(SUBMITTER)
        if submitter is not None:
            submitter.add_listener(anchorer.wake)

    async def telemetry_ctx(app: web.Application) -> AsyncIterator[None]:
        if anchorer is not None:
            await anchorer.start()
        try:
            yield
        finally:
            if anchorer is not None:
                await anchorer.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(telemetry_ctx)
