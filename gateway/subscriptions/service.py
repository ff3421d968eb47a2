"""The subscription service: the indexer listener that queues events, and its lifecycle.

::

    indexer commits a block range ─► listener(indexed) ─► per organisation with subscriptions:
        tracking.visible_among(principal of the organisation, indexed)   (decrypt what it may)
        ─► dcsa.render ─► dcsa.matches(subscription filter) ─► queue (SQLite, one
        transaction; (subscription, event) is unique, so an event is queued once)

:func:`service_context` opens the store, the callback HTTP session (through
:class:`~gateway.subscriptions.resolver.PublicResolver` unless private callbacks are allowed),
the delivery worker and its metrics; in the process that runs background tasks it adds the
listener to the indexer, catches up (:meth:`Subscriptions.catch_up`) and starts the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import Counter, Gauge

from gateway import appkeys
from gateway.appkeys import CONFIG, READ_MODEL, SUBSCRIPTIONS
from gateway.background import cancelled
from gateway.events.model import Reference
from gateway.principal import Principal
from gateway.readside.readmodel import EventFilter
from gateway.subscriptions.delivery import DeliveryWorker
from gateway.subscriptions.model import Subscription, SubscriptionSettings
from gateway.subscriptions.resolver import PublicResolver
from gateway.subscriptions.store import SubscriptionStore
from gateway.tracking.dcsa import matches, render

log = logging.getLogger("portledger.gateway.subscriptions")

#: Scopes the organisation's background principal is asked for when computing visibility.
READ_SCOPES = frozenset({"events:read"})


class Subscriptions:
    """The subscription service: store, queue, worker and the indexer listener."""

    def __init__(
        self, store: SubscriptionStore, settings: SubscriptionSettings, worker: DeliveryWorker
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker

    def publish(self, org_id: int, events: Sequence[tuple[int, Mapping[str, Any]]]) -> list[int]:
        """Queue events the organisation may read for each of its matching subscriptions.

        Parameters
        ----------
        org_id : int
            The reading organisation (gateway id).
        events : sequence of (event id, DCSA event)
            Newly indexed events it may read, rendered.

        Returns
        -------
        list[int]
            Ids of the deliveries queued.
        """
        return self._queue(self.store.by_organisation().get(org_id, []), events)

    def _queue(
        self, targets: Sequence[Subscription], events: Sequence[tuple[int, Mapping[str, Any]]]
    ) -> list[int]:
        queued: list[int] = []
        for sub in targets:
            chosen = [(eid, ev) for eid, ev in events if matches(sub.filter, ev)]
            if chosen:
                queued += self.store.enqueue(
                    sub.id, chosen, chunk=self.settings.max_events_per_delivery
                )
        if queued:
            self.worker.wake()
        return queued

    async def on_indexed(self, indexed: list[Any], app: web.Application) -> None:
        """Indexer listener: queue what each subscribing organisation may now read.

        Subscriptions whose filters name references (a B/L, a booking, a container, a vessel)
        hold them, as in ``GET /v2/events``: records readable by holders of those references
        reach them too. Subscriptions of one organisation holding the same references share
        one visibility pass.
        """
        if not indexed:
            return
        for org_id, owned in self.store.by_organisation().items():
            try:
                principal = background_principal(app, org_id)
                if principal is None:
                    continue
                groups: dict[tuple[Reference, ...], list[Subscription]] = {}
                for sub in owned:
                    groups.setdefault(sub.filter.held_references, []).append(sub)
                for held, members in groups.items():
                    visible = await visible_holding(app, principal, indexed, held)
                    rendered = []
                    for item in visible:
                        event = render(item)
                        if event is not None:
                            rendered.append((item.event_id, event))
                    self._queue(members, rendered)
            except Exception:
                # One organisation's failure must not stop the others' deliveries.
                log.exception("subscriptions: could not queue events", extra={"org": org_id})
        self.store.set_progress(max(item.event_id for item in indexed))

    async def catch_up(self, app: web.Application, *, page: int = 1000,
                       max_pages: int = 10_000) -> int:
        """Queue what was indexed after :meth:`SubscriptionStore.progress` (at start-up).

        The indexer notifies listeners after its commit; a crash between the two, or blocks
        indexed before this listener was added, would otherwise never be delivered. Queuing
        is idempotent per (subscription, event), so overlapping a live batch is harmless.

        Returns
        -------
        int
            Events looked at.
        """
        after = self.store.progress()
        if after is None:
            return 0  # never ran: nothing was promised yet
        model = app[READ_MODEL]
        seen = 0
        for _ in range(max_pages):
            batch = model.find_events(EventFilter(after_id=after, limit=page))
            if not batch:
                break
            await self.on_indexed(batch, app)
            after = batch[-1].event_id
            seen += len(batch)
        return seen


async def visible_holding(
    app: web.Application, principal: Principal, indexed: list[Any],
    held: tuple[Reference, ...],
) -> list[Any]:
    """Those of ``indexed`` the principal may read when it holds ``held`` (decrypted):
    :meth:`Tracking.visible_among` with the references the subscription names as held (what
    :meth:`Tracking.events` does for references given as filters)."""
    return await app[appkeys.TRACKING].visible_among(principal, indexed, held)


def background_principal(app: web.Application, org_id: int) -> Principal | None:
    """The principal subscriptions read for, or None if the organisation may read nothing
    now (not active, or not a chain member yet)."""
    registry = app[appkeys.ACCOUNTS]
    org = registry.organisation(org_id)
    if org.status != "active" or org.chain_org is None:
        return None
    return registry.principal_for_org(org_id, READ_SCOPES)


# -- lifecycle --------------------------------------------------------------------------------

#: The delivery worker's task, in the process that delivers.
_WORKER_TASK = web.AppKey("subscription_worker", asyncio.Task)


async def service_context(app: web.Application) -> AsyncIterator[None]:
    """Open the subscription service (``app[SUBSCRIPTIONS]``) and, in the process that runs
    background tasks, its indexer listener and delivery worker; close them at shutdown."""
    config = app[CONFIG]
    settings = SubscriptionSettings.from_config(config)
    store = SubscriptionStore(config.path("subscriptions.db"))
    resolver: AbstractResolver = (
        aiohttp.ThreadedResolver() if settings.allow_private_callbacks else PublicResolver()
    )
    connector = aiohttp.TCPConnector(
        resolver=resolver, limit=settings.concurrency, limit_per_host=settings.concurrency
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds),
        headers={"User-Agent": "PortLedger-gateway (DCSA T&T 2.2 subscriptions)"},
    )
    registry = app.get(appkeys.METRICS)
    outcomes = None
    if registry is not None:
        outcomes = Counter(
            "portledger_subscription_callbacks",
            "Subscription callback attempts by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=registry,
        )
        Gauge(
            "portledger_subscription_pending_deliveries",
            "Subscription deliveries waiting to be sent (retries included)",
            registry=registry,
        ).set_function(store.pending_count)
    worker = DeliveryWorker(
        store, settings, config.webhook_max_attempts, session,
        on_outcome=(lambda outcome: outcomes.labels(outcome).inc()) if outcomes else None,
    )
    service = Subscriptions(store, settings, worker)
    app[SUBSCRIPTIONS] = service
    task = None
    if config.background_tasks:  # exactly one process of a multi-worker gateway delivers
        if appkeys.INDEXER in app:
            app[appkeys.INDEXER].add_listener(lambda batch: service.on_indexed(batch, app))
            await service.catch_up(app)
        task = asyncio.create_task(worker.run(), name="subscription-deliveries")
    if task is not None:
        app[_WORKER_TASK] = task
    try:
        yield
    finally:
        await cancelled([task])
        await worker.stop()
        await session.close()
        store.close()


async def ready(app: web.Application) -> tuple[bool, str]:
    """Readiness: the delivery worker runs (where this process delivers)."""
    task = app.get(_WORKER_TASK)
    pending = app[SUBSCRIPTIONS].store.pending_count()
    if task is None:
        return True, f"deliveries run in another process; {pending} pending"
    if task.done():
        return False, "the delivery worker stopped"
    return True, f"{pending} deliveries pending"
