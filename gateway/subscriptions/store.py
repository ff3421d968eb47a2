"""Subscriptions and their delivery queue in SQLite (``subscriptions.db``, WAL).

The queue survives restarts: before each attempt a delivery's attempt count and next attempt
time are written (a lease, :meth:`SubscriptionStore.claim`), and (subscription, event) is unique,
so an event is queued once. Queued bodies hold decrypted events until delivered or given up
(then the body is erased); the file is as sensitive as the keystore beside it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway import sqlite
from gateway.subscriptions.model import Delivery, Subscription
from gateway.tracking.dcsa import DcsaFilter, filter_from_json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL,
    callback_url TEXT NOT NULL,
    filter TEXT NOT NULL,
    secret BLOB NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_org ON subscriptions (org_id, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    body BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    finished REAL,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription_id, id);
CREATE TABLE IF NOT EXISTS queued_events (
    subscription_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queued_events_delivery ON queued_events (delivery_id);
CREATE TABLE IF NOT EXISTS progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_event INTEGER NOT NULL
);
"""


class TooManySubscriptions(Exception):
    """The organisation holds :attr:`SubscriptionSettings.max_per_organisation` already."""


class SubscriptionStore(sqlite.Store):
    """Subscriptions and their delivery queue in SQLite (WAL).

    Every method is one short transaction on the event loop's thread; every query is scoped
    by organisation where a client names a subscription, so one organisation never reaches
    another's rows.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    @staticmethod
    def _subscription(row: Sequence[Any]) -> Subscription:
        return Subscription(
            id=row[0], org_id=row[1], callback_url=row[2],
            filter=filter_from_json(json.loads(row[3])),
            created=row[4], updated=row[5],
        )  # fmt: skip

    _COLUMNS = "id, org_id, callback_url, filter, created, updated"

    def create(
        self, org_id: int, callback_url: str, secret: bytes, flt: DcsaFilter, *, limit: int
    ) -> Subscription:
        """Store a new subscription; raises :class:`TooManySubscriptions` past ``limit``."""
        now = time.time()
        sub = Subscription(str(uuid.uuid4()), org_id, callback_url, flt, now, now)
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE org_id = ?", (org_id,)
            ).fetchone()
            if count >= limit:
                raise TooManySubscriptions
            db.execute(
                "INSERT INTO subscriptions (id, org_id, callback_url, filter, secret, created, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sub.id, org_id, callback_url, json.dumps(flt.to_json()), secret, now, now),
            )
        return sub

    def get(self, org_id: int, sub_id: str) -> Subscription | None:
        """The organisation's subscription, or None (also when another organisation owns it)."""
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM subscriptions WHERE id = ? AND org_id = ?",  # noqa: S608 (constant names and ? placeholders only)
            (sub_id, org_id),
        ).fetchone()
        return self._subscription(row) if row else None

    def page(self, org_id: int, after: int, limit: int) -> list[tuple[int, Subscription]]:
        """The organisation's subscriptions after position ``after``, oldest first."""
        rows = self._db.execute(
            f"SELECT seq, {self._COLUMNS} FROM subscriptions WHERE org_id = ? AND seq > ? "  # noqa: S608 (constant names and ? placeholders only)
            "ORDER BY seq LIMIT ?",
            (org_id, after, limit),
        ).fetchall()
        return [(row[0], self._subscription(row[1:])) for row in rows]

    def update(
        self, org_id: int, sub_id: str, callback_url: str, flt: DcsaFilter
    ) -> Subscription | None:
        """Replace URL and filters; None if the organisation has no such subscription."""
        with self._transaction() as db:
            done = db.execute(
                "UPDATE subscriptions SET callback_url = ?, filter = ?, updated = ? "
                "WHERE id = ? AND org_id = ?",
                (callback_url, json.dumps(flt.to_json()), time.time(), sub_id, org_id),
            ).rowcount
        return self.get(org_id, sub_id) if done else None

    def set_secret(self, org_id: int, sub_id: str, secret: bytes) -> bool:
        """Replace the secret (used from the next attempt on); False if no such subscription."""
        with self._transaction() as db:
            return bool(
                db.execute(
                    "UPDATE subscriptions SET secret = ?, updated = ? WHERE id = ? AND org_id = ?",
                    (secret, time.time(), sub_id, org_id),
                ).rowcount
            )

    def delete(self, org_id: int, sub_id: str) -> bool:
        """Remove a subscription with its queue and history; False if no such subscription."""
        with self._transaction() as db:
            if not db.execute(
                "DELETE FROM subscriptions WHERE id = ? AND org_id = ?", (sub_id, org_id)
            ).rowcount:
                return False
            db.execute("DELETE FROM deliveries WHERE subscription_id = ?", (sub_id,))
            db.execute("DELETE FROM queued_events WHERE subscription_id = ?", (sub_id,))
        return True

    def by_organisation(self) -> dict[int, list[Subscription]]:
        """Every subscription, grouped by organisation."""
        out: dict[int, list[Subscription]] = {}
        for row in self._db.execute(f"SELECT {self._COLUMNS} FROM subscriptions ORDER BY seq"):  # noqa: S608 (constant names and ? placeholders only)
            sub = self._subscription(row)
            out.setdefault(sub.org_id, []).append(sub)
        return out

    def target(self, sub_id: str) -> tuple[str, bytes] | None:
        """Callback URL and current secret of a subscription (for the delivery worker)."""
        row = self._db.execute(
            "SELECT callback_url, secret FROM subscriptions WHERE id = ?", (sub_id,)
        ).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def enqueue(
        self, sub_id: str, events: Sequence[tuple[int, Mapping[str, Any]]], *, chunk: int
    ) -> list[int]:
        """Queue the events not queued for this subscription before, ``chunk`` per delivery.

        Parameters
        ----------
        sub_id : str
            The subscription.
        events : sequence of (event id, DCSA event)
            Matching events, in order.
        chunk : int
            Most events per delivery.

        Returns
        -------
        list[int]
            Ids of the new deliveries (empty if every event was queued before).
        """
        created: list[int] = []
        now = time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM subscriptions WHERE id = ?", (sub_id,)).fetchone() is None:
                return []
            fresh = []
            seen: set[int] = set()
            for event_id, event in events:
                if event_id in seen:
                    continue
                seen.add(event_id)
                known = db.execute(
                    "SELECT 1 FROM queued_events WHERE subscription_id = ? AND event_id = ?",
                    (sub_id, event_id),
                ).fetchone()
                if known is None:
                    fresh.append((event_id, event))
            for start in range(0, len(fresh), chunk):
                part = fresh[start : start + chunk]
                body = json.dumps(
                    [event for _, event in part], separators=(",", ":"), ensure_ascii=False
                ).encode()
                cursor = db.execute(
                    "INSERT INTO deliveries (subscription_id, status, body, created, next_attempt)"
                    " VALUES (?, 'pending', ?, ?, ?)",
                    (sub_id, body, now, now),
                )
                delivery_id = int(cursor.lastrowid or 0)
                db.executemany(
                    "INSERT INTO queued_events (subscription_id, event_id, delivery_id) "
                    "VALUES (?, ?, ?)",
                    [(sub_id, event_id, delivery_id) for event_id, _ in part],
                )
                created.append(delivery_id)
        return created

    def due(self, now: float, limit: int, busy: set[str]) -> list[tuple[int, str]]:
        """Pending deliveries due by ``now``: the oldest of each subscription not in ``busy``.

        One per subscription, oldest subscriptions' work first, so a subscription with a long
        backlog never starves the others.
        """
        rows = self._db.execute(
            "SELECT MIN(id), subscription_id FROM deliveries WHERE status = 'pending' "
            "AND next_attempt <= ? GROUP BY subscription_id ORDER BY MIN(id) LIMIT ?",
            (now, limit + len(busy)),
        ).fetchall()
        return [(row[0], row[1]) for row in rows if row[1] not in busy][:limit]

    def pending_count(self) -> int:
        """Deliveries waiting to be sent (retries included)."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
        ).fetchone()
        return int(count)

    def next_due(self, busy: set[str]) -> float | None:
        """When the earliest pending delivery of a subscription not in ``busy`` falls due."""
        marks = ",".join("?" * len(busy))
        (when,) = self._db.execute(
            "SELECT MIN(next_attempt) FROM deliveries WHERE status = 'pending'"  # noqa: S608 (constant names and ? placeholders only)
            + (f" AND subscription_id NOT IN ({marks})" if busy else ""),
            tuple(busy),
        ).fetchone()
        return None if when is None else float(when)

    def claim(
        self, delivery_id: int, lease: Callable[[int], float]
    ) -> tuple[bytes, int] | None:
        """Start an attempt: count it and move the next attempt ``lease(attempts)`` ahead.

        Written before the request goes out, so a crash mid-attempt leaves a delivery that is
        retried after its backoff (never one that is lost or sent in a tight loop).

        Returns
        -------
        tuple or None
            (body, attempts including this one), or None if it is no longer pending.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT body, attempts FROM deliveries WHERE id = ? AND status = 'pending'",
                (delivery_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt = ? WHERE id = ?",
                (now + lease(row[1] + 1), delivery_id),
            )
        return bytes(row[0]), row[1] + 1

    def finish(
        self, delivery_id: int, status: str, http_status: int | None, error: str | None
    ) -> None:
        """Record the end of a delivery (delivered or failed) and erase its body."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, finished = ?, last_status = ?, "
                "last_error = ?, body = NULL WHERE id = ? AND status = 'pending'",
                (status, time.time(), http_status, error, delivery_id),
            )

    def attempt_failed(
        self, delivery_id: int, http_status: int | None, error: str, retry_in: float
    ) -> None:
        """Record a failed attempt of a delivery that is retried in ``retry_in`` seconds."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET last_status = ?, last_error = ?, next_attempt = ? "
                "WHERE id = ? AND status = 'pending'",
                (http_status, error, time.time() + retry_in, delivery_id),
            )

    def deliveries(
        self, org_id: int, sub_id: str, *, status: str | None, before: int | None, limit: int
    ) -> list[Delivery] | None:
        """The subscription's deliveries, newest first; None if it isn't the organisation's."""
        if self.get(org_id, sub_id) is None:
            return None
        sql = (
            "SELECT id, subscription_id, status, attempts, created, next_attempt, finished, "
            "last_status, last_error FROM deliveries WHERE subscription_id = ?"
        )
        args: list[Any] = [sub_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if before is not None:
            sql += " AND id < ?"
            args.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self._db.execute(sql, args).fetchall()
        out = []
        for row in rows:
            ids = tuple(
                event_id
                for (event_id,) in self._db.execute(
                    "SELECT event_id FROM queued_events WHERE delivery_id = ? ORDER BY event_id",
                    (row[0],),
                )
            )
            out.append(
                Delivery(
                    id=row[0], subscription_id=row[1], status=row[2], attempts=row[3],
                    event_ids=ids, created=row[4], next_attempt=row[5], finished=row[6],
                    last_status=row[7], last_error=row[8],
                )  # fmt: skip
            )
        return out

    def progress(self) -> int | None:
        """The highest event id whose batch the listener has fully queued, or None."""
        row = self._db.execute("SELECT last_event FROM progress WHERE id = 1").fetchone()
        return None if row is None else int(row[0])

    def set_progress(self, event_id: int) -> None:
        """Move :meth:`progress` forward (never back) to ``event_id``."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO progress (id, last_event) VALUES (1, ?) ON CONFLICT (id) DO "
                "UPDATE SET last_event = MAX(last_event, excluded.last_event)",
                (event_id,),
            )

    def prune(self, before: float) -> int:
        """Forget finished deliveries older than ``before`` (their events stay de-duplicated)."""
        with self._transaction() as db:
            done = db.execute(
                "DELETE FROM deliveries WHERE status != 'pending' AND finished < ?", (before,)
            )
            return int(done.rowcount)

