"""The alert engine: evaluates the pure rules incrementally, per organisation, over what each
organisation may read, and records episodes and transitions once.

::

    indexer commits a block range ─► on_indexed(batch)            (the listener subscriptions use)
    telemetry store, new reading ids ─► poll_readings()            (every reading_poll_seconds)
    clock, every clock_seconds ─► clock_pass()                     (rules.due over the store)
        per organisation hosted here (active, on chain, with keys):
            which of the new events/readings it may read — Entitlements (owner, named reader,
            grant, reference held through a follow or a known subject) / the telemetry rule
            ─► the subjects they touch (the subject; a document's containers; the vessel an ETA
               names), links remembered both ways
            ─► per subject: the facts from the events and readings IT may read (decrypted with
               its keys), its settings and the tariff of the box's terminal and carrier
            ─► rules.evaluate(previous = its stored states)
            ─► AlertStore.record: changed episodes, transitions, wake times (one transaction)
        ─► Dispatcher: webhooks and mail

**Visibility.** An organisation's alerts are computed only from events its Entitlements open
and readings the telemetry rule gives it, so an alert never shows a reader what an owner did
not let it see; as a second check every alert's sources must be among them
(:func:`gateway.alerts.model.readable_by`), or it is dropped and logged. An organisation
evaluating a subject holds its reference (it read a record naming it, or follows it): records
published "readable by reference holders" of that subject and its linked documents count, as
they would if a user typed the number into tracking.

**Restart safety.** Episodes are keyed by their episode key per organisation; an evaluation
compares with the stored states, so re-processing a batch after a crash records nothing new.
``progress`` marks how far the engine got through the read model (event ids) and the telemetry
store (reading ids); at start-up it catches up from there. On the very first start it reads the
read model's history without delivering it (old news is recorded, not sent).

**Order.** Events and readings share one receive order: ``(recorded time << 32) | id`` (block
time and event id; stored time and reading id).

**Caches and writes.** Each (organisation, subject) keeps its facts with the visible events
they rest on, its stored states and its wake time (an LRU of ``state_cache_entries``). A new
event that touches a subject is added to its facts (decrypted once, for that organisation; an
event that adds nothing to them — :func:`gateway.alerts.facts.adds_nothing` — leaves the facts
object and what the rules worked out from it as they are); the facts are read again from the read model when that cannot be trusted (a vessel, a newly
linked document, a document's event that need not name its containers, a retraction, other
grants, ``facts_ttl_seconds``). A long evaluation writes 200 subjects a transaction from a
worker thread while it evaluates the next 200 (:class:`_Writes`); the clock pass keeps the
long-lived objects out of the garbage collector's full passes. Measured in ``docs/alerts.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import multiprocessing
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.accounts.store import Accounts
from gateway.alerts.delivery import Dispatcher
from gateway.alerts.facts import (
    DOCUMENT_KINDS,
    Facts,
    Measured,
    Observed,
    adds_nothing,
    build_facts,
)
from gateway.alerts.model import Alert, readable_by
from gateway.alerts.rules import Settings, SettingsError, StorageSettings, evaluate
from gateway.alerts.store import AlertStore, Record
from gateway.alerts.tariff import Tariff, TariffError, last_free_day, meter, money, parse_tariff
from gateway.config import ConfigError, GatewayConfig, settings_from
from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, Reference
from gateway.isotime import iso_time
from gateway.principal import Principal
from gateway.readside.readmodel import EVENT_SCOPE, SUBJECT_SCOPE, EventFilter, IndexedEvent
from gateway.telemetry.records import StoredReading
from gateway.telemetry.store import TelemetryStore
from gateway.telemetry.visibility import Viewer, entitlement
from gateway.tracking.service import Tracking
from gateway.tracking.visibility import Reader, VisibleEvent, key_of

log = logging.getLogger("portledger.gateway.alerts")

#: Scopes of the background principal the engine reads for.
READ_SCOPES = frozenset({"events:read", "tracking:read"})

#: Names of the progress marks.
EVENTS, READINGS = "events", "readings"

#: Subjects written per transaction by a long evaluation (and by a clock-pass worker).
WRITE_EVERY = 200


@dataclass(frozen=True)
class AlertSettings:
    """``config.extra["alerts"]`` (all optional)."""

    rules: dict[str, Any] = field(default_factory=dict)
    """Rule settings for every organisation (:meth:`Settings.merged` form); an organisation's
    own (``PUT /v1/alerts/settings``) apply on top."""
    tariff: Any = None
    """The default storage tariff (a tariff object, or the path of its JSON file) for boxes at
    a terminal that published none; None: only published tariffs give storage alerts."""
    smtp: Any = None
    """SMTP settings (:class:`gateway.alerts.mail.SmtpSettings`); None: no e-mail."""
    clock_seconds: float = 60.0
    """How often the clock pass runs."""
    reading_poll_seconds: float = 0.5
    """How often new telemetry readings are looked for."""
    ais_min_seconds: float = 60.0
    """A vessel is re-evaluated for new AIS positions at most this often."""
    max_readings: int = 2000
    """Newest readings of a subject read into its facts."""
    max_follows: int = 10_000
    """References one organisation may follow."""
    state_cache_entries: int = 200_000
    """(organisation, subject) states and facts kept in memory."""
    facts_ttl_seconds: float = 3600.0
    """A subject's cached facts are rebuilt from the read model when an event or reading
    touches it this long after they were built. The clock pass uses them at any age: the new
    events that touch a subject are added to them, and other grants or a retraction make them
    be built again whatever their age."""

    clock_processes: int = 2
    """Forked worker processes a large clock pass is spread over
    (:meth:`AlertEngine.clock_pass`), each evaluating and writing an equal share of the due
    subjects while this one waits; 1: this process alone."""
    clock_split_min: int = 20_000
    """Due subjects of one organisation from which its clock pass is spread over processes
    (fewer are evaluated here: a worker's copy-on-write faults over the caches it reads cost
    more than the second core saves — measured at 10,000 due, ``docs/alerts.md``)."""
    clock_worker_seconds: float = 600.0
    """How long a clock-pass worker may take before it is killed (its unwritten share stays
    due for the next pass)."""

    def __post_init__(self) -> None:
        if min(self.clock_seconds, self.reading_poll_seconds) <= 0 or self.max_readings < 1:
            raise ConfigError("alerts: clock_seconds, reading_poll_seconds > 0; "
                              "max_readings >= 1")
        if self.clock_processes < 1 or self.clock_split_min < 1 or (
                self.clock_worker_seconds <= 0):
            raise ConfigError("alerts: clock_processes, clock_split_min >= 1; "
                              "clock_worker_seconds > 0")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> AlertSettings:
        settings = settings_from(cls, config.extra.get("alerts"), 'extra["alerts"]')
        try:
            Settings().merged(settings.rules)
        except SettingsError as exc:
            raise ConfigError(f'extra["alerts"].rules: {exc}') from None
        return settings

    def default_tariff(self) -> dict[str, Any] | None:
        """The default tariff's JSON (read from its file when a path is given)."""
        if self.tariff is None:
            return None
        if isinstance(self.tariff, str):
            try:
                raw = json.loads(Path(self.tariff).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f'extra["alerts"].tariff: {exc}') from None
        else:
            raw = self.tariff
        try:
            parse_tariff(raw)
        except TariffError as exc:
            raise ConfigError(f'extra["alerts"].tariff: {exc}') from None
        if not isinstance(raw, dict):
            raise ConfigError('extra["alerts"].tariff: a tariff object')
        return raw


class ClockPassError(Exception):
    """A clock pass did not record all it should have (a worker process failed)."""


# -- tariffs ----------------------------------------------------------------------------------------
class TariffBook:
    """The published tariffs and the one that applies to a box.

    A terminal publishes its tariff (``PUT /v1/alerts/tariffs/terminal/{org}``): it prices the
    boxes its availability (or entry) event made available. A carrier publishes its own
    (``.../carrier/{org}``) naming its SCAC codes (``scac``): for its boxes the carrier's free
    days, counting and bands override the terminal's — the tariff format's ``carriers`` override,
    "the carrier's negotiated free time wins". A terminal without a published tariff uses the
    gateway's default (``extra["alerts"]["tariff"]``) if there is one.
    """

    def __init__(self, store: AlertStore, default: dict[str, Any] | None) -> None:
        self.store = store
        self.default = default
        self.version = 0
        self._terminals: dict[int, dict[str, Any]] = {}
        self._carriers: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple[int | None, str | None], Tariff | None] = {}
        self.reload()

    def reload(self) -> None:
        """Read the published tariffs again (after a PUT)."""
        self._terminals, self._carriers, self._cache = {}, {}, {}
        for scope, org, body, _ in self.store.tariffs():
            if scope == "terminal":
                self._terminals[org] = body
            else:
                for scac in body.get("scac", []):
                    self._carriers[str(scac).upper()] = body
        self.version += 1

    def for_box(self, terminal: int | None, carrier: str | None) -> Tariff | None:
        """The tariff of a box made available by ``terminal`` (chain organisation) and
        carried by ``carrier`` (SCAC); None if none applies."""
        base_key = terminal if terminal in self._terminals else None
        line = (carrier or "").upper()
        line_key = line if line in self._carriers else None
        key = (base_key, line_key)
        if key not in self._cache:
            self._cache[key] = self._compose(base_key, line_key)
        return self._cache[key]

    def _compose(self, terminal: int | None, carrier: str | None) -> Tariff | None:
        base = self._terminals.get(terminal) if terminal is not None else self.default
        line = self._carriers.get(carrier) if carrier is not None else None
        if base is None and line is None:
            return None
        if base is None:
            assert line is not None
            return _parsed({k: v for k, v in line.items() if k != "scac"})
        if line is not None and carrier is not None:
            override = {k: line[k] for k in ("free_days", "counting", "charge_days", "bands")
                        if k in line}
            carriers = {k: v for k, v in dict(base.get("carriers") or {}).items()
                        if k.upper() != carrier}
            composed = _parsed({**base, "carriers": {**carriers, carrier: override}})
            if composed is not None:
                return composed
        return _parsed(base)


def _parsed(raw: dict[str, Any]) -> Tariff | None:
    try:
        return parse_tariff(json.loads(json.dumps(raw), parse_float=Decimal))
    except TariffError as exc:
        log.warning("alerts: a stored tariff does not validate: %s", exc)
        return None




# -- the storage meter view -------------------------------------------------------------------------
def storage_meter(facts: Facts, tariff: Tariff | None, settings: StorageSettings,
                  now: int) -> dict[str, Any]:
    """The storage meter of a container's latest yard stay as of ``now`` (``GET
    /v1/alerts/storage/{container}``): days in yard, last free day, accrued and per day in
    HK$, the holds that block the pick-up — whether or not an alert is open yet."""
    stay = facts.stays[-1] if facts.stays else None
    body: dict[str, Any] = {"container": facts.subject.value, "in_yard": False}
    if stay is None or stay.available is None:
        body["reason"] = ("no yard stay seen" if stay is None else
                          "entered by gate-in; not available for pick-up")
        return body
    available = stay.available.event.event_time
    exit_time = stay.exit.event.event_time if stay.exit is not None else None
    if exit_time is not None and exit_time > now:
        exit_time = None
    size = facts.equipment.size or settings.default_size
    held = [h for h in facts.holds if h.active(now if exit_time is None else exit_time)]
    body.update({
        "in_yard": exit_time is None and available <= now,
        "available": iso_time(available),
        "terminal": stay.terminal or None,
        "carrier": facts.carrier,
        "size": size,
        "size_known": facts.equipment.size is not None,
        "reefer": facts.equipment.reefer,
        "gated_out": iso_time(exit_time) if exit_time is not None else None,
        "holds": [h.to_json() for h in held],
        "hold_reason": ", ".join(sorted({h.kind for h in held})) or None,
        "pick_up_blocked": bool(held),
    })
    if tariff is None:
        body["tariff"] = None
        body["reason"] = "no tariff applies (the terminal published none)"
        return body
    calendar = tariff.calendar
    schedule, via = tariff.schedule(stay.terminal, facts.carrier)
    day1 = calendar.local_date(available)
    lfd, _ = last_free_day(schedule.free_days, schedule.counting, day1, calendar)
    through = calendar.local_date(exit_time if exit_time is not None else max(now, available))
    m = meter(schedule, calendar, day1, through, size=size, reefer=facts.equipment.reefer)
    body.update({
        "tariff": via,
        "tariff_label": tariff.label or tariff.name or None,
        "currency": tariff.currency,
        "free_days": schedule.free_days,
        "counting": schedule.counting,
        "last_free_day": lfd.isoformat(),
        "days_in_yard": m.days_in_yard,
        "days_left": (lfd - through).days,
        "charged_days": m.charged_days,
        "accrued": money(m.accrued_cents),
        "per_day": money(m.per_day_cents),
        "accrued_cents": m.accrued_cents,
        "per_day_cents": m.per_day_cents,
        "next_day_starts": iso_time(calendar.day_start(through + timedelta(days=1))),
    })
    if m.calendar_incomplete:
        body["calendar_incomplete"] = True
    return body


# -- the engine -------------------------------------------------------------------------------------
@dataclass
class Recipient:
    """An organisation hosted here that alerts are evaluated for, as of one job."""

    org_id: int
    chain_org: int
    principal: Principal
    follows: dict[bytes, Reference]
    grants: frozenset[tuple[int, bytes]]
    settings: Settings


@dataclass
class _Cached:
    """A subject's facts for one organisation and what they were built from."""

    facts: Facts
    terminal: int | None
    readable: frozenset[str]
    built: float
    observed: tuple[Observed, ...] = ()
    """The visible events the facts rest on (a new event is added to them)."""
    measured: tuple[Measured, ...] = ()
    publishers: dict[str, int] = field(default_factory=dict)
    """Event id (as text) -> its publisher (chain organisation)."""
    refs: frozenset[bytes] = frozenset()
    """Keys of the subject and of the documents linked to it that were read."""
    grants: frozenset[tuple[int, bytes]] = frozenset()
    """The organisation's grants then (other grants: built again)."""
    generation: int = 0
    """The engine's facts generation then (a retraction moves it on: built again)."""


@dataclass(slots=True)
class _Subject:
    """What the engine keeps about one (organisation, subject): facts, states, wake time."""

    facts: _Cached | None = None
    states: dict[str, Alert] | None = None
    """Its episodes as last recorded, by key."""
    wake: tuple[int | None] | None = None
    """Its wake time as last recorded (None: not known)."""


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = max(1, size)

    def get_fresh(self, key: Any) -> Any:
        found = self.get(key)
        if found is not None:
            self.move_to_end(key)
        return found

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def order_of_event(block_time: int, event_id: int) -> int:
    return (block_time << 32) | (event_id & 0xFFFFFFFF)


def _observed(v: VisibleEvent) -> Observed:
    """A visible event as the facts take it (its receive order, publisher and id)."""
    return Observed(v.event, order_of_event(v.block_time, v.event_id), v.publisher_name,
                    str(v.event_id), v.block_time)


def _vessel_named(event: CanonicalEvent) -> Reference | None:
    if event.event_type != "TRANSPORT.ARRI" or event.subject.kind == "vessel":
        return None
    vessel = event.details.get("vessel")
    if isinstance(vessel, dict) and isinstance(vessel.get("imo"), str):
        try:
            return Reference("vessel", identifiers.normalise("vessel", vessel["imo"]))
        except identifiers.IdentifierError:
            return None
    return next((r for r in event.related if r.kind == "vessel"), None)


def touched(event: CanonicalEvent) -> tuple[set[Reference], list[tuple[Reference, Reference]]]:
    """The subjects an event may change alerts of, and the links it shows (pure)."""
    subject = event.subject
    found = {subject}
    links: list[tuple[Reference, Reference]] = []
    if subject.kind in DOCUMENT_KINDS:
        for ref in event.related:
            if ref.kind == "container":
                found.add(ref)
                links.append((ref, subject))
    elif subject.kind == "container":
        links += [(subject, ref) for ref in event.related if ref.kind in DOCUMENT_KINDS]
    vessel = _vessel_named(event)
    if vessel is not None:
        found.add(vessel)
        links.append((vessel, subject))
    if event.event_type == "TRANSPORT.ARRI" and subject.kind == "vessel":
        found.add(subject)
    return found, links


@contextlib.contextmanager
def _long_lived_frozen() -> Iterator[None]:
    """Keep the objects that exist now out of the cyclic garbage collector's passes for the
    block (:func:`gc.freeze`, undone after; left alone when something else froze objects).

    The clock pass allocates a few objects per due subject; every so often that sets off a
    full collection, which walks every cached fact and state of the process (hundreds of
    thousands of subjects): most of a second on a large engine, for nothing, since they are
    alive. Freezing and unfreezing only move the collector's lists."""
    mine = gc.isenabled() and gc.get_freeze_count() == 0
    if mine:
        gc.freeze()
    try:
        yield
    finally:
        if mine:
            gc.unfreeze()


class _Writes:
    """An evaluation's writes: each batch's rows are prepared (JSON, sealing) on the event
    loop's thread, then written by :meth:`AlertStore.write` in a worker thread while the next
    batch is evaluated — one write at a time, each awaited before the next starts (and before
    the evaluation returns). A failed write makes the engine forget what that batch cached."""

    def __init__(self, store: AlertStore, forget: Callable[[Sequence[Record]], None]) -> None:
        self.store = store
        self.forget = forget
        self.running: tuple[asyncio.Future[list[int]], list[Record]] | None = None

    async def start(self, sink: list[Record]) -> None:
        """Wait for the write under way, then start writing ``sink``."""
        await self.wait()
        if not sink:
            return
        try:
            batch = self.store.prepare(sink)
        except BaseException:
            self.forget(sink)
            raise
        self.running = (asyncio.ensure_future(asyncio.to_thread(self.store.write, batch)), sink)

    async def finish(self, sink: list[Record]) -> None:
        """Wait for the write under way, then write ``sink`` on this thread: nothing is left
        to evaluate beside it (and an evaluation of one batch does not give way to other
        tasks before it is recorded, as before there were worker threads)."""
        await self.wait()
        if not sink:
            return
        try:
            self.store.record_many(sink)
        except BaseException:
            self.forget(sink)
            raise

    async def wait(self) -> None:
        """Wait for the write under way (its error, if any, is raised here)."""
        if self.running is None:
            return
        future, sink = self.running
        self.running = None
        try:
            await future
        except BaseException:
            self.forget(sink)
            raise


class AlertEngine:
    """Evaluates alerts per organisation (module docstring)."""

    def __init__(self, *, store: AlertStore, tracking: Tracking, accounts: Accounts,
                 telemetry: TelemetryStore | None, settings: AlertSettings,
                 tariffs: TariffBook, dispatcher: Dispatcher,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.tracking = tracking
        self.model = tracking.model
        self.accounts = accounts
        self.telemetry = telemetry
        self.settings = settings
        self.tariffs = tariffs
        self.dispatcher = dispatcher
        self.clock = clock
        self.base = Settings().merged(settings.rules)
        self._org_settings: dict[int, Settings] | None = None
        self._follows: dict[int, set[Reference]] | None = None
        self._follows_mark = 0.0
        """The latest time a follow held in :attr:`_follows` was made."""
        self._follow_keys: dict[int, dict[bytes, Reference]] = {}
        """Each organisation's follows by subject key (made once per load of the follows,
        then kept up to date with the new ones)."""
        self._versions: dict[str, int] = {}
        self._subjects = _LRU(settings.state_cache_entries)
        self._generation = 0
        self._grants: dict[int, frozenset[tuple[int, bytes]]] = {}
        self._known: dict[int, dict[bytes, str]] = {}
        self._dependents: dict[int, dict[bytes, set[Reference]]] = {}
        self._ais_last: dict[str, float] = {}
        self._ais_pending: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.evaluations = 0
        self.transitions = 0

    # -- configuration written by any process ------------------------------------------------------
    def reload(self) -> None:
        """Read settings and tariffs again if any process changed them (cheap: one query)."""
        versions = self.store.versions()
        for name in ("settings", "tariffs"):
            if versions.get(name) != self._versions.get(name):
                if name == "settings":
                    self._org_settings = None
                else:
                    self.tariffs.reload()
                self._versions[name] = versions.get(name, 0)

    def _sync_follows(self) -> dict[int, list[Reference]]:
        """Reload the follows if any process changed them; the references newly followed,
        by organisation (the first load finds none new). New follows are added to what the
        engine holds (an organisation may follow 100,000 references: reading and keying them
        all again for each new one cost a second); when the count says some went, all are
        read again."""
        version = self.store.versions().get("follows", 0)
        if self._follows is not None and version == self._versions.get("follows"):
            return {}
        old = self._follows
        self._versions["follows"] = version
        if old is not None:
            rows, total = self.store.follows_since(self._follows_mark)
            new = [(org, ref, created) for org, ref, created in rows
                   if ref not in old.get(org, ())]
            fresh = {(org, ref) for org, ref, _ in new}
            if sum(len(refs) for refs in old.values()) + len(fresh) == total:
                added: dict[int, set[Reference]] = {}
                for org, ref, created in new:
                    old.setdefault(org, set()).add(ref)
                    keys = self._follow_keys.get(org)
                    if keys is not None:
                        keys[key_of(ref.value)] = ref
                    added.setdefault(org, set()).add(ref)
                    self._follows_mark = max(self._follows_mark, created)
                return {org: sorted(refs, key=lambda r: (r.kind, r.value))
                        for org, refs in added.items()}
        loaded, self._follows_mark = self.store.followers()
        self._follows = {org: set(refs) for org, refs in loaded.items()}
        self._follow_keys = {}
        if old is None:
            return {}
        changed = {}
        for org, refs in self._follows.items():
            gained = refs - old.get(org, set())
            if gained:
                changed[org] = sorted(gained, key=lambda r: (r.kind, r.value))
        return changed

    async def sync_follows(self) -> int:
        """Evaluate what newly followed references bring (what the organisation may already
        read about them counts at once); the transitions recorded. The background loop calls
        it, and the API after a follow when this process evaluates."""
        async with self._lock:
            added = self._sync_follows()
            recorded = 0
            if added:
                for r in self.recipients():
                    if r.org_id in added:
                        recorded += await self._evaluate_many(r, added[r.org_id], deliver=True)
        if recorded:
            self.dispatcher.dispatch()
        return recorded

    # -- recipients ------------------------------------------------------------------------------
    def settings_of(self, org_id: int) -> Settings:
        if self._org_settings is None:
            loaded = {}
            for org, body in self.store.org_settings().items():
                try:
                    loaded[org] = self.base.merged(body)
                except SettingsError:
                    log.warning("alerts: stored settings of organisation %d are invalid", org)
            self._org_settings = loaded
        return self._org_settings.get(org_id, self.base)

    def recipients(self) -> list[Recipient]:
        """The organisations alerts are evaluated for: active, on chain, keys held here."""
        self.reload()
        if self._follows is None:
            self._sync_follows()
        assert self._follows is not None
        now = self.clock()
        out = []
        for org in self.accounts.organisations("active"):
            if org.chain_org is None or self.tracking.keystore is None:
                continue
            try:
                self.tracking.keystore.get(org.id)
            except KeyError:
                continue
            grants = frozenset(
                (g.owner, g.target) for g in self.model.grants_of_reader(org.chain_org)
                if g.in_force(now) and g.scope in (SUBJECT_SCOPE, EVENT_SCOPE))
            if self._grants.get(org.id) == grants:  # the same object while unchanged: cached
                grants = self._grants[org.id]       # facts compare it by identity
            self._grants[org.id] = grants
            follows = self._follow_keys.get(org.id)
            if follows is None:  # (not per job: an organisation may follow many references)
                follows = self._follow_keys[org.id] = {
                    key_of(r.value): r for r in self._follows.get(org.id, ())}
            principal = self.accounts.principal_for_org(org.id, READ_SCOPES)
            out.append(Recipient(org.id, org.chain_org, principal, follows, grants,
                                 self.settings_of(org.id)))
        return out

    def recipient(self, org_id: int) -> Recipient | None:
        return next((r for r in self.recipients() if r.org_id == org_id), None)

    def _known_keys(self, org_id: int) -> dict[bytes, str]:
        """Subject key -> reference of every subject evaluated for the organisation."""
        known = self._known.get(org_id)
        if known is None:
            known = self._known[org_id] = {key_of(ref.value): ref.value
                                           for ref in self.store.subjects_of(org_id)}
        return known

    def _may_read(self, r: Recipient, ev: IndexedEvent) -> bool:
        """Cheap pre-check on clear metadata before Entitlements decides and decrypts."""
        return (ev.publisher == r.chain_org or r.chain_org in ev.readers
                or (ev.reference_readable and (ev.subject in r.follows
                                               or ev.subject in self._known_keys(r.org_id)))
                or (ev.publisher, ev.subject) in r.grants
                or (ev.publisher, ev.event_id.to_bytes(32, "big")) in r.grants)

    def _reader(self, r: Recipient, keys: Iterable[bytes] = ()) -> Reader:
        """The organisation's reader, holding those of ``keys`` it follows."""
        reader = self.tracking.reader(r.principal)
        for key in keys:
            followed = r.follows.get(key)
            if followed is not None:
                reader.held[key] = followed.value
        return reader

    # -- jobs ---------------------------------------------------------------------------------------
    async def on_indexed(self, batch: list[IndexedEvent], *, deliver: bool = True) -> int:
        """Indexer listener: evaluate what the new events change, for every organisation that
        may read them. Returns the transitions recorded."""
        if not batch:
            return 0
        await self.sync_follows()
        async with self._lock:
            self.tracking.sync()
            if any(ev.retracts for ev in batch):  # cached facts may hold what was retracted
                self._generation += 1
            recorded = 0
            # owners last: an owner opens its records through its key chain (milliseconds a
            # subject once out of its cache), a named reader or reference holder cheaply, and
            # whoever opens a record first leaves its plaintext in the tracking cache
            published = Counter(ev.publisher for ev in batch)
            for r in sorted(self.recipients(), key=lambda r: published[r.chain_org]):
                self._forget_dependents(r.org_id, batch)
                try:
                    recorded += await self._on_events(r, batch, deliver)
                except Exception:
                    log.exception("alerts: evaluation failed", extra={"org": r.org_id})
            self.store.set_progress(EVENTS, max(ev.event_id for ev in batch))
        self.dispatcher.dispatch()
        return recorded

    async def _on_events(self, r: Recipient, batch: list[IndexedEvent], deliver: bool) -> int:
        candidates = [ev for ev in batch if self._may_read(r, ev)]
        if not candidates:
            return 0
        reader = self._reader(r, {ev.subject for ev in candidates})
        known = self._known_keys(r.org_id)
        for ev in candidates:  # the reference of a subject it evaluated before is held
            if ev.reference_readable and ev.subject not in reader.held and ev.subject in known:
                reader.held[ev.subject] = known[ev.subject]
        visible = self.tracking.entitlements.visible(reader, candidates)
        subjects: set[Reference] = set()
        links: list[tuple[Reference, Reference]] = []
        new: dict[Reference, list[VisibleEvent]] = {}
        for seen in visible:
            found, shown = touched(seen.event)
            subjects |= found
            links += shown
            for ref in found:
                new.setdefault(ref, []).append(seen)
        self.store.add_links(r.org_id, links)
        linked: dict[Reference, set[Reference]] = {}
        for a, b in links:
            linked.setdefault(a, set()).add(b)
            linked.setdefault(b, set()).add(a)
        return await self._evaluate_many(r, subjects, deliver=deliver, new=new, linked=linked)

    async def _evaluate_many(self, r: Recipient, subjects: Iterable[Reference], *,
                             deliver: bool, cached: bool = False, now: int | None = None,
                             new: Mapping[Reference, Sequence[VisibleEvent]] | None = None,
                             linked: Mapping[Reference, set[Reference]] | None = None,
                             takes: frozenset[tuple[str, str]] | None = None) -> int:
        """Evaluate ``subjects`` and record what changed, 200 subjects a transaction. ``new``:
        the new events touching each subject (its cached facts are brought up to date with
        them when they can be), ``linked``: the links those events showed; ``takes``: the
        organisation's routes if already asked (:attr:`Record.takes`)."""
        recorded = 0
        sink: list[Record] = []
        writes = _Writes(self.store, self._forget)
        ordered = sorted(subjects, key=lambda s: (s.kind, s.value))
        if takes is None:
            takes = self.dispatcher.routes(r.org_id) if deliver and ordered else None
        try:
            for i, subject in enumerate(ordered):
                recorded += self.evaluate_subject(
                    r, subject, deliver=deliver, cached=cached, now=now, sink=sink,
                    new=None if new is None else new.get(subject, ()),
                    linked=() if linked is None else linked.get(subject, ()), takes=takes)
                if i % WRITE_EVERY == WRITE_EVERY - 1 and i + 1 < len(ordered):
                    await writes.start(sink)  # (written while the next ones are evaluated)
                    sink = []
                    await asyncio.sleep(0)  # let requests in between
            await writes.finish(sink)
        finally:
            await writes.wait()
        return recorded

    def _forget(self, sink: Sequence[Record]) -> None:
        """The caches ran ahead of a write that failed: forget what it held."""
        for item in sink:
            for subject in {*item.subjects, *(a.subject for a in item.changed),
                            *(t.alert.subject for t in item.transitions)}:
                self._subjects.pop((item.org_id, subject), None)
            self._known.pop(item.org_id, None)

    async def poll_readings(self, *, limit: int = 2000) -> int:
        """Evaluate what the telemetry readings stored since the last look change."""
        if self.telemetry is None:
            return 0
        after = self.store.progress(READINGS)
        if after is None:  # first start: readings already stored are history
            counts = await asyncio.to_thread(self.telemetry.counts)
            last = sum(n for name, n in counts.items() if name != "unbatched")
            self.store.set_progress(READINGS, last)
            return 0
        found = await asyncio.to_thread(self._readings_after, after, limit)
        now = self.clock()
        async with self._lock:
            recorded = 0
            if found:
                recorded += await self._on_readings(found, now)
                self.store.set_progress(READINGS, found[-1].id)
            due = [v for v, at in self._ais_pending.items() if at <= now]
            for vessel in due:
                del self._ais_pending[vessel]
                recorded += await self._on_vessel(vessel, now)
        if recorded:
            self.dispatcher.dispatch()
        return recorded

    def _readings_after(self, after: int, limit: int) -> list[StoredReading]:
        """Readings with ids after ``after`` (the store's ids are consecutive: rows are only
        ever added, ``INTEGER PRIMARY KEY``), at most ``limit``."""
        assert self.telemetry is not None
        out = []
        for reading_id in range(after + 1, after + 1 + limit):
            stored = self.telemetry.reading(reading_id)
            if stored is None:
                break
            out.append(stored)
        return out

    async def _on_readings(self, found: list[StoredReading], now: float) -> int:
        boxes: dict[Reference, list[StoredReading]] = {}
        for stored in found:
            subject = stored.reading.subject
            if subject is None:
                continue
            if stored.reading.type == "reefer" and subject.kind == "container":
                boxes.setdefault(subject, []).append(stored)
            elif stored.reading.type == "ais-position" and subject.kind == "vessel":
                last = self._ais_last.get(subject.value, 0.0)
                if now - last >= self.settings.ais_min_seconds:
                    self._ais_pending[subject.value] = now
                else:
                    self._ais_pending.setdefault(subject.value,
                                                 last + self.settings.ais_min_seconds)
        recorded = 0
        if not boxes:
            return 0
        for r in self.recipients():
            mine = []
            for box, readings in boxes.items():
                known = (key_of(box.value) in r.follows
                         or key_of(box.value) in self._known_keys(r.org_id))
                viewer = Viewer(r.org_id, r.chain_org, by_reference=known)
                if any(entitlement(viewer, s.access) is not None for s in readings):
                    mine.append(box)
            if mine:
                recorded += await self._evaluate_many(r, mine, deliver=True)
        return recorded

    async def _on_vessel(self, vessel: str, now: float) -> int:
        self._ais_last[vessel] = now
        ref = Reference("vessel", vessel)
        watchers = set(self.store.watchers(ref))
        recorded = 0
        for r in self.recipients():
            if r.org_id in watchers:
                recorded += self.evaluate_subject(r, ref, deliver=True)
        return recorded

    async def clock_pass(self, now: int | None = None) -> int:
        """Re-evaluate the subjects time alone may have changed (:func:`rules.due` over the
        store's indexes); the transitions recorded."""
        at = int(self.clock()) if now is None else now
        with _long_lived_frozen():  # (the dispatch of its transitions too)
            async with self._lock:
                pairs = self.store.due(at)
                if not pairs:
                    return 0
                by_org: dict[int, list[Reference]] = {}
                for org_id, subject in pairs:
                    by_org.setdefault(org_id, []).append(subject)
                recorded = 0
                failed: list[str] = []
                for r in self.recipients():
                    subjects = by_org.get(r.org_id)
                    if subjects:
                        found, fails = await self._clock_evaluate(r, subjects, at)
                        recorded += found
                        failed += fails
            self.dispatcher.dispatch()
        if failed:
            raise ClockPassError("alerts: clock-pass workers failed (their unwritten subjects "
                                 "stay due): " + "; ".join(failed))
        return recorded

    # -- the clock pass over processes -------------------------------------------------------------
    def _clock_shares(self, r: Recipient, subjects: Sequence[Reference],
                      ) -> tuple[list[Reference], list[list[Reference]], list[_Subject]]:
        """The due subjects of one organisation: those this process evaluates, the equal
        shares of ``clock_processes`` forked workers, and the cache slots of the workers'
        subjects. A worker gets only subjects whose facts and stored states are in the cache
        (it reads no database: connections opened before a fork are not used after it); the
        others stay here. All here when the pass is small or processes are not to be used."""
        processes = self.settings.clock_processes
        if (processes < 2 or len(subjects) < self.settings.clock_split_min
                or "fork" not in multiprocessing.get_all_start_methods()):
            return list(subjects), [], []
        ready: list[Reference] = []
        slots: list[_Subject] = []
        here: list[Reference] = []
        cache, org_id, grants, generation = self._subjects, r.org_id, r.grants, self._generation
        for subject in subjects:
            slot = cache.get((org_id, subject))
            entry = None if slot is None else slot.facts
            if (slot is not None and slot.states is not None and entry is not None
                    and entry.grants is grants and entry.generation == generation):
                ready.append(subject)
                slots.append(slot)
            else:
                here.append(subject)
        shares = [share for i in range(processes) if (share := ready[i::processes])]
        return here, shares, slots

    async def _clock_evaluate(self, r: Recipient, subjects: Sequence[Reference],
                              at: int) -> tuple[int, list[str]]:
        """One organisation's due subjects evaluated and recorded, spread over processes when
        there are many (:meth:`_clock_shares`): each forked worker evaluates its share from
        the cached facts and states it inherited, writes it through a connection of its own
        (200 subjects a transaction, as here) and exits; this process evaluates meanwhile the
        subjects it must read from the database (usually none) and waits. The workers'
        subjects then have their states and wake times forgotten here (read again from the
        store when next evaluated), so nothing cached runs ahead of what was written. The
        transitions recorded, and what failed (a worker that died or took too long: what it
        wrote stands, the rest stays due for the next pass)."""
        here, shares, slots = self._clock_shares(r, subjects)
        if not shares:
            return await self._evaluate_many(r, here, deliver=True, cached=True, now=at), []
        takes = self.dispatcher.routes(r.org_id)
        self._known_keys(r.org_id)  # (loaded before the fork: the workers read no database)
        context = multiprocessing.get_context("fork")
        workers: list[tuple[Any, Any, list[Reference]]] = []
        recorded = 0
        failed: list[str] = []
        try:
            for share in shares:
                receive, send = context.Pipe(duplex=False)
                worker = context.Process(target=self._clock_worker, name="alerts-clock",
                                         args=(r, share, at, takes, send), daemon=True)
                worker.start()
                send.close()
                workers.append((worker, receive, share))
            recorded += await self._evaluate_many(r, here, deliver=True, cached=True, now=at,
                                                  takes=takes)
        finally:
            for worker, receive, share in workers:
                await asyncio.to_thread(worker.join, self.settings.clock_worker_seconds)
                if worker.exitcode is None:
                    worker.kill()
                    await asyncio.to_thread(worker.join, 10.0)
                done = receive.recv() if worker.exitcode == 0 and receive.poll() else None
                receive.close()
                if done is None:
                    failed.append(f"a worker of {len(share)} subjects of organisation "
                                  f"{r.org_id} ended with {worker.exitcode}")
                else:
                    recorded += done[0]
                    self.evaluations += done[1]
                    self.transitions += done[0]
            for slot in slots:  # (a slot evicted meanwhile is let go of anyway)
                slot.states, slot.wake = None, None
        if failed:
            log.error("alerts: %s", "; ".join(failed))
        return recorded, failed

    def _clock_worker(self, r: Recipient, subjects: Sequence[Reference], at: int,
                      takes: frozenset[tuple[str, str]], send: Any) -> None:
        """A forked clock-pass worker (:meth:`_clock_evaluate`): its share evaluated from the
        inherited caches and written through a new connection, 200 subjects a transaction, by
        a thread of its own while the next 200 are evaluated (a write waiting for another
        worker's transaction does not hold the evaluation up); sends (transitions,
        evaluations) when all is written. Runs nothing of the parent's event loop and no
        connection of the parent's."""
        gc.disable()  # (a short-lived process: the collector would only walk the caches)
        db = self.store.connect()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer:
                recorded = evaluations = 0
                sink: list[Record] = []
                writing: concurrent.futures.Future[list[int]] | None = None
                for i, subject in enumerate(subjects):
                    recorded += self.evaluate_subject(r, subject, deliver=True, cached=True,
                                                      now=at, sink=sink, takes=takes)
                    evaluations += 1
                    if i % WRITE_EVERY == WRITE_EVERY - 1 or i + 1 == len(subjects):
                        batch = self.store.prepare(sink)
                        sink = []
                        if writing is not None:
                            writing.result()  # (one write at a time, in order)
                        writing = writer.submit(self.store.write, batch, on=db)
                if writing is not None:
                    writing.result()
            send.send((recorded, evaluations))
        finally:
            db.close()

    async def catch_up(self, *, page: int = 1000, max_pages: int = 100_000) -> int:
        """Evaluate what the read model holds beyond the progress mark (start-up). On a first
        start (no mark yet) the whole history is evaluated without delivering it."""
        after = self.store.progress(EVENTS)
        deliver = after is not None
        cursor = after or 0
        seen = 0
        for _ in range(max_pages):
            batch = self.model.find_events(EventFilter(after_id=cursor, limit=page))
            if not batch:
                break
            await self.on_indexed(batch, deliver=deliver)
            cursor = batch[-1].event_id
            seen += len(batch)
        if after is None:
            self.store.set_progress(EVENTS, cursor)
        return seen

    # -- one subject ----------------------------------------------------------------------------
    def facts_of(self, r: Recipient, subject: Reference,
                 ) -> tuple[Facts, int | None, frozenset[str]]:
        """The facts of ``subject`` from what ``r`` may read; the chain organisation that made
        its latest yard stay available (for the tariff); the ids of what they rest on."""
        built = self._build(r, subject)
        return built.facts, built.terminal, built.readable

    def _build(self, r: Recipient, subject: Reference) -> _Cached:
        """:meth:`facts_of`, with what the facts were built from (for :meth:`_added`)."""
        reader = self._reader(r)
        linked = (self.store.links_of(r.org_id, subject)
                  if subject.kind in ("container", "vessel") else [])
        refs = [subject, *(ref for ref in linked if ref.kind in DOCUMENT_KINDS)]
        for ref in refs:
            reader.held[key_of(ref.value)] = ref.value
        keys = list(dict.fromkeys(key_of(x.value) for x in refs))
        indexed = self.model.events_of_subjects(keys)
        visible = [v for v in self.tracking.entitlements.visible(reader, indexed)
                   if not v.retracted_by]
        observed = tuple(_observed(v) for v in visible)
        measured = tuple(self._measured(r, subject, visible))
        publishers = {str(v.event_id): v.publisher for v in visible}
        if len(keys) > 1:  # its documents' events count: a new one there makes it stale
            dependents = self._dependents.setdefault(r.org_id, {})
            for key in keys[1:]:
                dependents.setdefault(key, set()).add(subject)
        return self._cached(subject, observed, measured, publishers, frozenset(keys), r.grants,
                            time.monotonic(), self._generation)

    @staticmethod
    def _cached(subject: Reference, observed: tuple[Observed, ...],
                measured: tuple[Measured, ...], publishers: dict[str, int],
                refs: frozenset[bytes], grants: frozenset[tuple[int, bytes]], built: float,
                generation: int) -> _Cached:
        facts = build_facts(observed, measured).get(subject) or Facts(subject)
        terminal = None
        if facts.stays:
            stay = facts.stays[-1]
            terminal = publishers.get((stay.available or stay.entry).source.ref)
        readable = frozenset(publishers) | frozenset(m.ref for m in measured)
        return _Cached(facts, terminal, readable, built, observed, measured, publishers, refs,
                       grants, generation)

    def _added(self, subject: Reference, entry: _Cached, new: Sequence[VisibleEvent],
               linked: Iterable[Reference]) -> _Cached | None:
        """``entry`` brought up to date with ``new`` events of this subject or its documents,
        or None when the facts must be built again: a vessel (its AIS positions are read as
        of its ETAs), a document newly linked, an event on a reference not read before."""
        if subject.kind == "vessel":
            return None
        if subject.kind == "container" and any(
                ref.kind in DOCUMENT_KINDS and key_of(ref.value) not in entry.refs
                for ref in linked):
            return None
        added = [v for v in new if str(v.event_id) not in entry.publishers
                 and not v.retracted_by]  # (an indexer retry hands the same events again)
        if not added:
            return entry
        if any(key_of(v.event.subject.value) not in entry.refs for v in added):
            return None
        observed = entry.observed + tuple(_observed(v) for v in added)
        publishers = {**entry.publishers, **{str(v.event_id): v.publisher for v in added}}
        if all(adds_nothing(o, subject) for o in observed[len(entry.observed):]) and not any(
                o.event.retracts for o in entry.observed):
            # the facts are those without them: kept, with what the rules worked out from them
            return _Cached(entry.facts, entry.terminal,
                           entry.readable | {str(v.event_id) for v in added}, entry.built,
                           observed, entry.measured, publishers, entry.refs, entry.grants,
                           entry.generation)
        return self._cached(subject, observed, entry.measured, publishers, entry.refs,
                            entry.grants, entry.built, entry.generation)

    def _forget_dependents(self, org_id: int, batch: Sequence[IndexedEvent]) -> None:
        """Drop the cached facts of the containers whose documents have new events (an event
        on a document need not name every container under it)."""
        dependents = self._dependents.get(org_id)
        if not dependents:
            return
        for ev in batch:
            for subject in dependents.pop(ev.subject, ()):
                slot = self._subjects.get((org_id, subject))
                if slot is not None:
                    slot.facts = None

    def _measured(self, r: Recipient, subject: Reference,
                  visible: Sequence[VisibleEvent]) -> list[Measured]:
        if self.telemetry is None:
            return []
        if subject.kind == "container":
            viewer = Viewer(r.org_id, r.chain_org, by_reference=True)
            found, _ = self.telemetry.history(
                "reefer", subject=subject, limit=self.settings.max_readings,
                allow=lambda access: entitlement(viewer, access) is not None)
        elif subject.kind == "vessel":
            named = [v.block_time for v in visible if v.event.event_type == "TRANSPORT.ARRI"
                     and v.event.classifier != "ACT"]
            if not named:
                return []
            found, _ = self.telemetry.history("ais-position", subject=subject,
                                              since=min(named) - 86_400,
                                              limit=min(500, self.settings.max_readings))
        else:
            return []
        names = {}
        out = []
        for stored in found:
            owner = stored.owner
            if owner not in names:
                names[owner] = (self.tracking.publisher_name(owner) if owner is not None
                                else f"organisation {stored.org_id}")
            out.append(Measured(stored.reading, order_of_event(stored.received, stored.id),
                                names[owner], str(stored.id)))
        return out

    def evaluate_subject(self, r: Recipient, subject: Reference, *, deliver: bool = True,
                         cached: bool = False, now: int | None = None,
                         sink: list[Record] | None = None,
                         new: Sequence[VisibleEvent] | None = None,
                         linked: Iterable[Reference] = (),
                         takes: frozenset[tuple[str, str]] | None = None) -> int:
        """Evaluate one subject for one organisation and record what changed (at once, or by
        adding it to ``sink`` for one transaction with others); the number of transitions.
        ``cached``: use the subject's cached facts of any age (the clock pass); ``new``: the new
        events that touch it (its cached facts, if fresh, are brought up to date with them
        instead of being read again; None: read them again); ``takes``: the (kind, change)
        pairs the organisation's channels take (:attr:`Record.takes`)."""
        at = int(self.clock()) if now is None else now
        key = (r.org_id, subject)
        slot: _Subject | None = self._subjects.get_fresh(key)
        if slot is None:
            slot = _Subject()
            self._subjects.put(key, slot)
        entry = slot.facts
        if entry is not None and (
                entry.grants is not r.grants or entry.generation != self._generation
                or (not cached and time.monotonic() - entry.built
                    > self.settings.facts_ttl_seconds)):
            entry = None  # (the clock pass takes them at any age: events keep them current)
        if entry is not None and new is not None:
            entry = self._added(subject, entry, new, linked)
        elif not cached:
            entry = None
        if entry is None:
            entry = self._build(r, subject)
        slot.facts = entry
        previous = slot.states
        if previous is None:
            previous = self.store.states_of(r.org_id, subject)
        tariff = (self.tariffs.for_box(entry.terminal, entry.facts.carrier)
                  if subject.kind == "container" else None)
        result = evaluate({subject: entry.facts}, r.settings, tariff, None, at, previous)
        self.evaluations += 1
        readable = entry.readable
        kept: dict[str, Alert] = {}
        changed: list[Alert] = []
        for alert in result.alerts:
            alert_key = alert.key
            before = previous.get(alert_key)
            if before is alert:  # unchanged (its sources were checked when it was recorded)
                kept[alert_key] = alert
                continue
            if (before is not None and before.sources == alert.sources) or readable_by(
                    alert, lambda source: source.ref in readable):
                kept[alert_key] = alert  # (a withdrawn episode keeps what was checked before)
                changed.append(alert)
            else:  # never: facts are built from readable sources only
                log.error("alerts: an alert rests on a source its organisation cannot read",
                          extra={"org": r.org_id, "alert": alert_key})
        transitions = [t for t in result.transitions if kept.get(t.alert.key) is t.alert]
        slot.states = {**previous, **kept} if changed else previous
        wake = result.wake.get(subject)
        if wake is not None and any(a.is_open and a.next_check == wake for a in kept.values()):
            wake = None  # the clock finds it by that alert's next check (no daily rewrite)
        known = self._known_keys(r.org_id)
        subject_key = key_of(subject.value)
        fresh_subject = subject_key not in known
        wake_changed = slot.wake != (wake,)
        if changed or transitions or fresh_subject or wake_changed:
            record = Record(r.org_id, changed, transitions,
                            {subject: wake} if fresh_subject or wake_changed else {}, deliver,
                            takes)
            if sink is None:
                self.store.record_many([record])
            else:
                sink.append(record)
            known[subject_key] = subject.value
            slot.wake = (wake,)
        self.transitions += len(transitions)
        return len(transitions)

    def states(self, org_id: int, subject: Reference) -> dict[str, Alert]:
        return self.store.states_of(org_id, subject)

    # -- background loops ---------------------------------------------------------------------------
    async def run_clock(self) -> None:
        """The clock pass every ``clock_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.clock_seconds)
            try:
                await self.clock_pass()
            except Exception:
                log.exception("alerts: clock pass failed")

    async def run_readings(self) -> None:
        """Look for new readings (and follows another process added) every
        ``reading_poll_seconds`` until cancelled."""
        while True:
            try:
                await self.sync_follows()
                await self.poll_readings()
            except Exception:
                log.exception("alerts: reading poll failed")
            await asyncio.sleep(self.settings.reading_poll_seconds)

    async def run_catch_up(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                seen = await self.catch_up()
                if seen:
                    log.info("alerts: caught up over %d events", seen)
            except Exception:
                log.exception("alerts: catch-up failed")
