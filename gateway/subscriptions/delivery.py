"""The delivery worker: sends queued callbacks, signed, with retries and bounded concurrency.

Each attempt POSTs the queued JSON array to the callback URL with ``Notification-Signature:
sha256=<hex HMAC-SHA256(secret, raw body)>``, ``Subscription-ID`` and ``API-Version``; a 2xx is
delivered, anything else is retried after :func:`gateway.subscriptions.model.backoff` until the
last attempt. The URL and the secret are read at each attempt, so a rotated secret or changed
URL applies to queued deliveries too. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.subscriptions.model import (
    CallbackRefused,
    SubscriptionSettings,
    backoff,
    check_callback_url,
    signature,
)
from gateway.subscriptions.store import SubscriptionStore
from gateway.tracking.dcsa import API_VERSION

log = logging.getLogger("portledger.gateway.subscriptions")


class DeliveryWorker:
    """Sends due deliveries: bounded concurrency, one in flight per subscription."""

    def __init__(
        self,
        store: SubscriptionStore,
        settings: SubscriptionSettings,
        max_attempts: int,
        session: aiohttp.ClientSession,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._settings = settings
        self._max_attempts = max(1, max_attempts)
        self._session = session
        self._wake = asyncio.Event()
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._last_prune = 0.0

    def wake(self) -> None:
        """New work was queued."""
        self._wake.set()

    async def run(self) -> None:
        """Dispatch due deliveries until cancelled (a database error pauses it a second)."""
        while True:
            self._wake.clear()
            try:
                wait = self._dispatch()
            except sqlite3.Error:
                log.exception("subscription deliveries: database error; retrying in 1 s")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _dispatch(self) -> float:
        """Start the due deliveries there is room for; seconds until the loop should look
        again (unless woken)."""
        now = time.time()
        free = self._settings.concurrency - len(self._tasks)
        if free > 0:
            for delivery_id, sub_id in self._store.due(now, free, self._busy):
                self._busy.add(sub_id)
                task = asyncio.create_task(self._attempt(delivery_id, sub_id))
                self._tasks.add(task)
                task.add_done_callback(self._done(sub_id))
        if now - self._last_prune > 3600:
            self._last_prune = now
            self._store.prune(now - self._settings.retention_days * 86400)
        # A busy subscription's next delivery waits for its attempt to end (which wakes this
        # loop), so it is left out here: no spinning while an attempt is in flight.
        slots = self._settings.concurrency - len(self._tasks)
        upcoming = self._store.next_due(self._busy) if slots > 0 else None
        return 5.0 if upcoming is None else min(5.0, max(0.005, upcoming - time.time()))

    def _done(self, sub_id: str) -> Any:
        def forget(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._busy.discard(sub_id)
            if not task.cancelled() and task.exception() is not None:
                log.error("delivery task failed", exc_info=task.exception())
            self._wake.set()

        return forget

    async def stop(self) -> None:
        """Cancel attempts in flight (their leases make them retry after a restart)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    async def _attempt(self, delivery_id: int, sub_id: str) -> None:
        target = self._store.target(sub_id)
        if target is None:
            return  # deleted meanwhile; its deliveries went with it
        url, secret = target
        # Until the attempt ends, the delivery is leased for the request's timeout plus a
        # backoff: if the process dies mid-attempt, the restarted worker retries after that.
        claimed = self._store.claim(
            delivery_id,
            lambda n: self._settings.timeout_seconds + backoff(n, self._settings, self._rng),
        )
        if claimed is None:
            return
        body, attempts = claimed
        status, error = await self._post(url, secret, sub_id, body)
        outcome = (
            "delivered" if status is not None and 200 <= status < 300
            else "failed" if attempts >= self._max_attempts
            else "retry"
        )
        self._on_outcome(outcome)
        if outcome == "delivered":
            self._store.finish(delivery_id, "delivered", status, None)
            log.info("callback delivered", extra={"subscription": sub_id,
                                                  "delivery": delivery_id, "attempts": attempts})
        elif outcome == "failed":
            self._store.finish(delivery_id, "failed", status, error)
            log.warning("callback given up", extra={"subscription": sub_id,
                                                    "delivery": delivery_id, "error": error})
        else:
            self._store.attempt_failed(
                delivery_id, status, error or "", backoff(attempts, self._settings, self._rng)
            )

    async def _post(
        self, url: str, secret: bytes, sub_id: str, body: bytes
    ) -> tuple[int | None, str | None]:
        try:
            check_callback_url(url, allow_private=self._settings.allow_private_callbacks)
        except CallbackRefused as exc:
            return None, str(exc)
        headers = {
            "Content-Type": "application/json",
            "Notification-Signature": signature(secret, body),
            "Subscription-ID": sub_id,
            "API-Version": API_VERSION,
        }
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_seconds),
            ) as response:
                snippet = (await response.content.read(200)).decode("utf-8", "replace")
                if 200 <= response.status < 300:
                    return response.status, None
                return response.status, f"HTTP {response.status}: {snippet}".strip()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]

