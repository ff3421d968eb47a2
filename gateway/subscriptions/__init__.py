"""DCSA event subscriptions: the push half of Track & Trace 2.2, with signed, retried callbacks.

An organisation's system registers a *subscription* (``POST /v2/event-subscriptions``): a
callback URL, a shared secret and DCSA filters (:class:`gateway.api_dcsa.DcsaFilter`, the same
as ``GET /v2/events``). From then on, every newly indexed event that the organisation may read
and the filters match is POSTed to the callback as a DCSA event array.

How an event reaches a subscriber
---------------------------------
::

    indexer commits a block range ─► listener(indexed) ─► per organisation with subscriptions:
        tracking.visible_among(principal of the organisation, indexed)   (decrypt what it may)
        ─► dcsa.to_dcsa ─► api_dcsa.matches(subscription filter) ─► queue (SQLite, one
        transaction; (subscription, event) is unique, so an event is queued once)
    delivery worker ─► POST callbackUrl, body = the queued JSON array, headers
        Notification-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>,
        Subscription-ID, API-Version ─► 2xx (DCSA: 204) = delivered; anything else = retry

The listener also records how far it got (the highest event id of a fully queued batch); at
start-up, after adding itself to the indexer, it queues whatever the read model holds beyond
that point (:meth:`Subscriptions.catch_up`), so events committed by the indexer just before a
crash, before the listeners ran, still reach their subscribers.

The queue (``subscriptions.db``, WAL) survives restarts: before each attempt the delivery's
attempt count and next attempt time are written (a lease), so an attempt cut short by a crash
is retried after its backoff, and a delivered one is never sent again. Delivery is therefore
*at least once* per (subscription, event); a receiver that crashes after acting on a callback
but before answering sees it again, which DCSA receivers handle by ``eventID``.

Retries: attempt *n* failing waits ``min(retry_max, retry_base · 2^(n-1))`` scaled by a random
factor in [0.5, 1) (jitter, so receivers coming back are not stormed), up to
``config.webhook_max_attempts`` attempts; then the delivery is marked ``failed`` and kept
visible in ``GET /v1/subscriptions/{id}/deliveries`` (this gateway's extension to DCSA). At
most one delivery per subscription is in flight at a time, at most ``concurrency`` in all, each
with a total timeout; redirects are not followed.

Secrets are base64 (DCSA ``format: byte``); the HMAC key is the decoded bytes. They are
write-only: never returned. ``PUT /{id}/secret`` replaces the secret at once and every later
attempt, *including retries of deliveries queued before the rotation*, is signed with the new
one (the signature is computed per attempt), so a subscriber can drop the old secret as soon
as the PUT succeeded. A changed callback URL likewise applies to queued deliveries.

Callback URLs must be http or https, without user info. Server-side request forgery: unless
``config.extra["subscriptions"]["allow_private_callbacks"]`` is true, a callback may not point
at a loopback, private, link-local or otherwise non-global address — checked when the URL is
given (IP literals and what the name resolves to then) and again at every connection (a
resolver that drops non-global addresses, so DNS rebinding cannot get around it).

Settings (``config.extra["subscriptions"]``, all optional): ``allow_private_callbacks``
(false), ``concurrency`` (8), ``timeout_seconds`` (10), ``retry_base_seconds`` (2),
``retry_max_seconds`` (3600), ``max_per_organisation`` (100), ``max_events_per_delivery``
(100), ``retention_days`` (7: finished deliveries are then forgotten).

Queued bodies hold decrypted events until delivered or given up (then the body is erased);
``subscriptions.db`` is as sensitive as the keystore beside it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import Counter, Gauge
from yarl import URL

from gateway import appkeys, openapi, ops, sqlite
from gateway.appkeys import CONFIG, READ_MODEL, SUBSCRIPTIONS
from gateway.config import ConfigError, GatewayConfig
from gateway.errors import BadRequest, Conflict, NotFound, Unprocessable
from gateway.events.model import Reference
from gateway.jsonbody import read_json
from gateway.principal import Principal, require
from gateway.readside.readmodel import EventFilter
from gateway.tracking import dcsa as api_dcsa
from gateway.tracking.dcsa import API_VERSION, DcsaFilter, FilterError, filter_from_fields, matches

log = logging.getLogger("portledger.gateway.subscriptions")

#: Delivery states.
DELIVERY_STATES: tuple[str, ...] = ("pending", "delivered", "failed")

#: Scopes the organisation's background principal is asked for when computing visibility.
READ_SCOPES = frozenset({"events:read"})


class CallbackRefused(ValueError):
    """A callback URL is not acceptable (scheme, form, or a non-public address)."""

    def __init__(self, message: str, *, code: str = "invalid-callback-url") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SubscriptionSettings:
    """``config.extra["subscriptions"]``."""

    allow_private_callbacks: bool = False
    """Allow callbacks to loopback / private addresses (tests, a gateway inside a company)."""
    concurrency: int = 8
    """Deliveries in flight at most (one per subscription)."""
    timeout_seconds: float = 10.0
    """Total time one callback attempt may take."""
    retry_base_seconds: float = 2.0
    """Backoff after the first failed attempt (doubling after each further one)."""
    retry_max_seconds: float = 3600.0
    """Longest backoff."""
    max_per_organisation: int = 100
    """Subscriptions one organisation may hold."""
    max_events_per_delivery: int = 100
    """Events in one callback body at most (a larger indexed batch is split)."""
    retention_days: float = 7.0
    """How long finished (delivered or failed) deliveries stay listed."""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SubscriptionSettings:
        """Read and check the settings; unknown keys are a :class:`ConfigError`."""
        raw = config.extra.get("subscriptions", {})
        if not isinstance(raw, dict):
            raise ConfigError('extra["subscriptions"] must be an object')
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f'unknown extra["subscriptions"] keys: {", ".join(unknown)}')
        settings = cls(**raw)
        if settings.concurrency < 1 or settings.max_events_per_delivery < 1:
            raise ConfigError("subscriptions: concurrency and max_events_per_delivery >= 1")
        if not 0 < settings.retry_base_seconds <= settings.retry_max_seconds:
            raise ConfigError("subscriptions: 0 < retry_base_seconds <= retry_max_seconds")
        if settings.timeout_seconds <= 0:
            raise ConfigError("subscriptions: timeout_seconds > 0")
        return settings


@dataclass(frozen=True)
class Subscription:
    """One organisation's subscription (the secret is kept apart: it is never shown)."""

    id: str
    """The subscription id (a UUID, DCSA ``subscriptionID``)."""
    org_id: int
    """Gateway id of the organisation that owns it."""
    callback_url: str
    """Where events are POSTed."""
    filter: DcsaFilter
    """Which events (DCSA filters; ``eventCreatedDateTime`` is not a subscription filter)."""
    created: float
    """When it was created (Unix seconds)."""
    updated: float
    """When its URL, filters or secret last changed."""

    def to_json(self) -> dict[str, Any]:
        """The DCSA ``subscription`` object."""
        return {"subscriptionID": self.id, "callbackUrl": self.callback_url,
                **self.filter.to_json()}


@dataclass(frozen=True)
class Delivery:
    """One callback (a JSON array of events) for one subscription, and how it went."""

    id: int
    """Queue id (increasing)."""
    subscription_id: str
    """The subscription."""
    status: str
    """``pending``, ``delivered`` or ``failed`` (given up after the last attempt)."""
    attempts: int
    """Attempts started so far."""
    event_ids: tuple[int, ...]
    """On-chain ids of the events it carries."""
    created: float
    """When it was queued."""
    next_attempt: float | None
    """When it is (re)tried, for a pending delivery."""
    finished: float | None
    """When it was delivered or given up."""
    last_status: int | None
    """HTTP status of the last answer, None if there was none (timeout, refused)."""
    last_error: str | None
    """Why the last attempt failed, None after success."""

    def to_json(self) -> dict[str, Any]:
        return {
            "deliveryID": self.id,
            "subscriptionID": self.subscription_id,
            "status": self.status,
            "attempts": self.attempts,
            "eventIDs": list(self.event_ids),
            "created": _iso(self.created),
            "nextAttempt": _iso(self.next_attempt) if self.status == "pending" else None,
            "finished": _iso(self.finished),
            "lastStatus": self.last_status,
            "lastError": self.last_error,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


# -- pure checks ----------------------------------------------------------------------------


def decode_secret(text: Any) -> bytes:
    """A DCSA secret (base64) as the HMAC key bytes: 16 to 1024 bytes.

    Raises
    ------
    ValueError
        Not base64, or too short / long.
    """
    if not isinstance(text, str):
        raise ValueError("secret is a base64 string")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not valid base64") from None
    if not 16 <= len(key) <= 1024:
        raise ValueError(f"secret decodes to {len(key)} bytes; use 16 to 1024 (32 random bytes)")
    return key


def signature(secret: bytes, body: bytes) -> str:
    """The ``Notification-Signature`` header value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def is_public_address(host: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local...)."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*$", re.IGNORECASE)


def check_callback_url(url: Any, *, allow_private: bool) -> str:
    """Check a callback URL's form and, for an IP literal, its address.

    Parameters
    ----------
    url : Any
        What the client sent.
    allow_private : bool
        Allow loopback and private addresses.

    Returns
    -------
    str
        The URL as given.

    Raises
    ------
    CallbackRefused
        Not an absolute http(s) URL, user info present, over 2048 characters, or (unless
        allowed) a non-public address or ``localhost``.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise CallbackRefused("callbackUrl is an absolute http(s) URL of at most 2048 characters")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise CallbackRefused("callbackUrl holds spaces or control characters")
    try:
        parsed = URL(url)
        scheme, raw_host, port = parsed.scheme, parsed.raw_host or "", parsed.port
        userinfo = parsed.user is not None or parsed.password is not None
        absolute, fragment = parsed.absolute, parsed.fragment
    except (ValueError, TypeError):  # UnicodeError (IDNA) is a ValueError
        raise CallbackRefused("callbackUrl is not a URL") from None
    if scheme not in ("http", "https") or not raw_host or not absolute:
        raise CallbackRefused("callbackUrl must be an absolute http:// or https:// URL")
    if userinfo:
        raise CallbackRefused("callbackUrl must not carry user info (use the secret)")
    if fragment:
        raise CallbackRefused("callbackUrl must not have a fragment")
    if port is not None and not 0 < port < 65536:
        raise CallbackRefused("callbackUrl port is out of range")
    host = raw_host.strip("[]")
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0]) and True
    except ValueError:
        literal = False
        if _NUMERIC_HOST.match(host):
            raise CallbackRefused("callbackUrl host is a non-canonical numeric address") from None
        if not _HOST_NAME.match(host):
            raise CallbackRefused("callbackUrl host is not a valid host name") from None
    if allow_private:
        return url
    if literal and not is_public_address(host):
        raise CallbackRefused(
            f"callbackUrl points at the non-public address {host}", code="callback-not-public"
        )
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        raise CallbackRefused("callbackUrl points at localhost", code="callback-not-public")
    return url


async def check_callback_resolves_public(url: str, *, timeout: float = 3.0) -> None:
    """Refuse a callback whose host name resolves to a non-public address now.

    A name that does not resolve (yet) is accepted: delivery checks again at every
    connection, through :class:`PublicResolver`.
    """
    parsed = URL(url)
    host = parsed.host or ""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return  # literals were checked by check_callback_url
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError):
        return
    private = sorted({str(info[4][0]) for info in infos if not is_public_address(str(info[4][0]))})
    if private:
        raise CallbackRefused(
            f"callbackUrl host {host} resolves to the non-public address {private[0]}",
            code="callback-not-public",
        )


class PublicResolver(AbstractResolver):
    """A resolver that drops non-global addresses, so a callback can't be steered inwards."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses; refused")
        return public

    async def close(self) -> None:
        await self._inner.close()


def backoff(attempts: int, settings: SubscriptionSettings, rng: random.Random) -> float:
    """Seconds to wait after ``attempts`` attempts: exponential, capped, jittered (×[0.5, 1))."""
    exponent = min(max(attempts - 1, 0), 40)
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * float(2**exponent))
    return float(ceiling * (0.5 + rng.random() / 2))


# -- storage --------------------------------------------------------------------------------

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
            filter=api_dcsa.filter_from_json(json.loads(row[3])),
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
            f"SELECT {self._COLUMNS} FROM subscriptions WHERE id = ? AND org_id = ?",
            (sub_id, org_id),
        ).fetchone()
        return self._subscription(row) if row else None

    def page(self, org_id: int, after: int, limit: int) -> list[tuple[int, Subscription]]:
        """The organisation's subscriptions after position ``after``, oldest first."""
        rows = self._db.execute(
            f"SELECT seq, {self._COLUMNS} FROM subscriptions WHERE org_id = ? AND seq > ? "
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
        for row in self._db.execute(f"SELECT {self._COLUMNS} FROM subscriptions ORDER BY seq"):
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
            "SELECT MIN(next_attempt) FROM deliveries WHERE status = 'pending'"
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


# -- delivery -------------------------------------------------------------------------------


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


# -- the service ----------------------------------------------------------------------------


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
                        event = api_dcsa.render(item)
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


# -- HTTP -----------------------------------------------------------------------------------


_LIST = {"type": "array", "uniqueItems": True}
FILTER_PROPERTIES: dict[str, Any] = {
    **{
        name: {**_LIST, "maxItems": len(values), "items": {"enum": list(values)}}
        for name, values in api_dcsa.LIST_FILTERS.items()
    },
    **{
        name: {"type": "string", "minLength": 1, "maxLength": max_length}
        for name, (_, max_length) in api_dcsa.VALUE_FILTERS.items()
    },
    "bookingReference": {"type": "string", "minLength": 1, "maxLength": 35,
                         "deprecated": True, "description": "Use carrierBookingReference."},
    "carrierVoyageNumber": {"type": "string", "minLength": 1, "maxLength": 50,
                            "deprecated": True, "description": "Use exportVoyageNumber."},
}
_CALLBACK = {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2048}
_SECRET = {
    "type": "string",
    "contentEncoding": "base64",
    "minLength": 1,
    "maxLength": 1400,
    "writeOnly": True,
    "description": "Base64 of 16 to 1024 random bytes (the HMAC-SHA256 key). Write-only.",
}

#: ``POST /v2/event-subscriptions`` (DCSA ``subscriptionBodyWithSecret``).
CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["callbackUrl", "secret"],
    "properties": {"callbackUrl": _CALLBACK, "secret": _SECRET, **FILTER_PROPERTIES},
}
#: ``PUT /v2/event-subscriptions/{id}`` (DCSA ``subscription``; the secret must be omitted).
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["callbackUrl"],
    "properties": {
        "subscriptionID": {"type": "string", "format": "uuid"},
        "callbackUrl": _CALLBACK,
        **FILTER_PROPERTIES,
    },
}
#: ``PUT /v2/event-subscriptions/{id}/secret``.
SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["secret"],
    "properties": {"secret": _SECRET},
}
SUBSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subscriptionID", "callbackUrl"],
    "properties": {
        "subscriptionID": {"type": "string", "format": "uuid"},
        "callbackUrl": _CALLBACK,
        **FILTER_PROPERTIES,
    },
}
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "deliveryID": {"type": "integer"},
        "subscriptionID": {"type": "string"},
        "status": {"enum": list(DELIVERY_STATES)},
        "attempts": {"type": "integer"},
        "eventIDs": {"type": "array", "items": {"type": "integer"}},
        "created": {"type": "string"},
        "nextAttempt": {"type": ["string", "null"]},
        "finished": {"type": ["string", "null"]},
        "lastStatus": {"type": ["integer", "null"]},
        "lastError": {"type": ["string", "null"]},
    },
}

routes = web.RouteTableDef()

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _subscription_id(request: web.Request) -> str:
    raw = request.match_info["subscriptionID"].lower()
    if not _UUID.match(raw):
        raise NotFound("no such subscription", code="subscription-not-found")
    return raw


def _filter(body: Mapping[str, Any]) -> DcsaFilter:
    try:
        return filter_from_fields(
            {k: v for k, v in body.items() if k not in ("callbackUrl", "secret", "subscriptionID")}
        )
    except FilterError as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"field": exc.parameter}) from None


async def _callback(request: web.Request, url: Any) -> str:
    service = request.app[SUBSCRIPTIONS]
    allow = service.settings.allow_private_callbacks
    try:
        checked = check_callback_url(url, allow_private=allow)
        if not allow:
            await check_callback_resolves_public(checked)
    except CallbackRefused as exc:
        raise Unprocessable(str(exc), code=exc.code, details={"field": "callbackUrl"}) from None
    return checked


def _secret(raw: Any) -> bytes:
    try:
        return decode_secret(raw)
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid-secret", details={"field": "secret"}) from None


def _not_found() -> NotFound:
    return NotFound("no such subscription", code="subscription-not-found")


@routes.get("/v2/event-subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    """DCSA: the caller's organisation's subscriptions, paged."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    codec = request.app[appkeys.DCSA_CURSORS]
    unknown = sorted(set(request.query) - {"limit", "cursor", "sort"})
    try:
        if unknown:
            raise FilterError(f"unknown query parameter {unknown[0]!r}",
                              code="unknown-parameter", parameter=unknown[0])
        limit = api_dcsa.parse_limit(request.query.get("limit"))
        sort = request.query.get("sort")
        if sort is not None and sort.strip() not in ("created", "created:ASC"):
            raise FilterError("sort supports created:ASC only", code="unsupported-sort",
                              parameter="sort")
        after = 0
        if "cursor" in request.query:
            payload = codec.decode(request.query["cursor"])
            if payload.get("v") != 1 or payload.get("o") != principal.org_id or "s" not in payload:
                raise FilterError("cursor was issued to another caller", code="invalid-cursor",
                                  parameter="cursor")
            after = int(payload["s"])
    except FilterError as exc:
        raise api_dcsa.bad_request(exc) from None
    rows = request.app[SUBSCRIPTIONS].store.page(principal.org_id, after, limit + 1)
    headers = {"Current-Page": api_dcsa.page_link(request, None)}
    if len(rows) > limit:
        rows = rows[:limit]
        token = codec.encode({"v": 1, "o": principal.org_id, "s": rows[-1][0]})
        headers["Next-Page"] = api_dcsa.page_link(request, {"cursor": token,
                                                            "limit": str(limit)})
    return web.json_response([sub.to_json() for _, sub in rows], headers=headers)


@routes.post("/v2/event-subscriptions")
async def create_subscription(request: web.Request) -> web.Response:
    """DCSA: create a subscription (201 with it, without the secret)."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    body = await read_json(request, CREATE_SCHEMA)
    service = request.app[SUBSCRIPTIONS]
    url = await _callback(request, body["callbackUrl"])
    secret = _secret(body["secret"])
    flt = _filter(body)
    try:
        sub = service.store.create(
            principal.org_id, url, secret, flt, limit=service.settings.max_per_organisation
        )
    except TooManySubscriptions:
        raise Conflict(
            f"an organisation holds at most {service.settings.max_per_organisation} "
            "subscriptions; delete one first",
            code="too-many-subscriptions",
        ) from None
    return web.json_response(sub.to_json(), status=201)


@routes.get("/v2/event-subscriptions/{subscriptionID}")
async def get_subscription(request: web.Request) -> web.Response:
    """DCSA: one subscription of the caller's organisation."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    sub = request.app[SUBSCRIPTIONS].store.get(principal.org_id, _subscription_id(request))
    if sub is None:
        raise _not_found()
    return web.json_response(sub.to_json())


@routes.put("/v2/event-subscriptions/{subscriptionID}")
async def put_subscription(request: web.Request) -> web.Response:
    """DCSA: replace a subscription's callback URL and filters (not its secret)."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    sub_id = _subscription_id(request)
    store = request.app[SUBSCRIPTIONS].store
    if store.get(principal.org_id, sub_id) is None:
        raise _not_found()
    body = await read_json(request, UPDATE_SCHEMA)
    if body.get("subscriptionID", sub_id).lower() != sub_id:
        raise BadRequest("subscriptionID in the body differs from the path",
                         code="subscription-id-mismatch")
    url = await _callback(request, body["callbackUrl"])
    sub = store.update(principal.org_id, sub_id, url, _filter(body))
    if sub is None:
        raise _not_found()
    return web.json_response(sub.to_json())


@routes.delete("/v2/event-subscriptions/{subscriptionID}")
async def delete_subscription(request: web.Request) -> web.Response:
    """DCSA: stop a subscription (queued deliveries are dropped)."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    if not request.app[SUBSCRIPTIONS].store.delete(principal.org_id, _subscription_id(request)):
        raise _not_found()
    return web.Response(status=204)


@routes.put("/v2/event-subscriptions/{subscriptionID}/secret")
async def put_secret(request: web.Request) -> web.Response:
    """DCSA: replace the secret; every later attempt (retries included) uses the new one."""
    principal = require(request, "events:read")
    api_dcsa.check_api_version(request)
    sub_id = _subscription_id(request)
    store = request.app[SUBSCRIPTIONS].store
    if store.get(principal.org_id, sub_id) is None:
        raise _not_found()
    body = await read_json(request, SECRET_SCHEMA)
    if not store.set_secret(principal.org_id, sub_id, _secret(body["secret"])):
        raise _not_found()
    return web.Response(status=204)


@routes.get("/v1/subscriptions/{subscriptionID}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Extension: a subscription's deliveries, newest first, with attempts and errors."""
    principal = require(request, "events:read")
    sub_id = _subscription_id(request)
    query = request.query
    unknown = sorted(set(query) - {"status", "before", "limit"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}", code="unknown-parameter")
    status = query.get("status")
    if status is not None and status not in DELIVERY_STATES:
        raise BadRequest(f"status is one of {', '.join(DELIVERY_STATES)}", code="invalid-filter")
    before = query.get("before")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) < 19):
        raise BadRequest("before is a delivery id", code="invalid-filter")
    limit_raw = query.get("limit", "50")
    if not (limit_raw.isascii() and limit_raw.isdigit() and len(limit_raw) <= 4) or not (
        1 <= int(limit_raw) <= 500
    ):
        raise BadRequest("limit is an integer from 1 to 500", code="invalid-filter")
    found = request.app[SUBSCRIPTIONS].store.deliveries(
        principal.org_id,
        sub_id,
        status=status,
        before=int(before) if before is not None else None,
        limit=int(limit_raw),
    )
    if found is None:
        raise _not_found()
    return web.json_response({"deliveries": [d.to_json() for d in found]})


def _op(summary: str, *, body: dict[str, Any] | None = None, ok: str = "200",
        ok_schema: dict[str, Any] | None = None, errors: tuple[int, ...] = (),
        path_id: bool = True, query: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": ["DCSA"], "summary": summary, "parameters": []}
    if path_id:
        op["parameters"].append({"name": "subscriptionID", "in": "path", "required": True,
                                 "schema": {"type": "string", "format": "uuid"}})
    op["parameters"] += query or []
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    response: dict[str, Any] = {"description": "OK"}
    if ok_schema is not None:
        response["content"] = {"application/json": {"schema": ok_schema}}
    op["responses"] = {ok: response,
                       **openapi.error_responses(401, 403, 404, 429, *errors)}
    return op


_SUB_REF = {"$ref": "#/components/schemas/DcsaSubscription"}
_PAGING = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": api_dcsa.MAX_LIMIT}},
    {"name": "cursor", "in": "query", "required": False,
     "schema": {"type": "string", "maxLength": 4096}},
]
OPENAPI_PATHS: dict[str, Any] = {
    "/v2/event-subscriptions": {
        "get": _op("DCSA: list your organisation's subscriptions", path_id=False,
                   ok_schema={"type": "array", "items": _SUB_REF}, errors=(400,),
                   query=_PAGING),
        "post": _op("DCSA: subscribe a callback to events (HMAC-SHA256 signed)",
                    body=CREATE_SCHEMA, ok="201", ok_schema=_SUB_REF, path_id=False,
                    errors=(400, 409, 413, 415, 422)),
    },
    "/v2/event-subscriptions/{subscriptionID}": {
        "get": _op("DCSA: one subscription", ok_schema=_SUB_REF),
        "put": _op("DCSA: change callback URL and filters", body=UPDATE_SCHEMA,
                   ok_schema=_SUB_REF, errors=(400, 413, 415, 422)),
        "delete": _op("DCSA: stop a subscription", ok="204"),
    },
    "/v2/event-subscriptions/{subscriptionID}/secret": {
        "put": _op("DCSA: rotate the secret (later attempts, retries included, use it)",
                   body=SECRET_SCHEMA, ok="204", errors=(400, 413, 415, 422)),
    },
    "/v1/subscriptions/{subscriptionID}/deliveries": {
        "get": _op(
            "A subscription's deliveries: status, attempts, last error (extension)",
            ok_schema={"type": "object", "properties": {
                "deliveries": {"type": "array",
                               "items": {"$ref": "#/components/schemas/Delivery"}}}},
            errors=(400,),
            query=[
                {"name": "status", "in": "query", "required": False,
                 "schema": {"enum": list(DELIVERY_STATES)}},
                {"name": "before", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            ],
        ),
    },
}


#: The delivery worker's task, in the process that delivers.
_WORKER_TASK = web.AppKey("subscription_worker", asyncio.Task)


async def _service(app: web.Application) -> AsyncIterator[None]:
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
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.stop()
        await session.close()
        store.close()


async def _ready(app: web.Application) -> tuple[bool, str]:
    """Readiness: the delivery worker runs (where this process delivers)."""
    task = app.get(_WORKER_TASK)
    pending = app[SUBSCRIPTIONS].store.pending_count()
    if task is None:
        return True, f"deliveries run in another process; {pending} pending"
    if task.done():
        return False, "the delivery worker stopped"
    return True, f"{pending} deliveries pending"


def setup(app: web.Application) -> None:
    """Add the subscription routes, the store and delivery worker, and the indexer listener."""
    app.cleanup_ctx.append(_service)
    if appkeys.READINESS in app:
        ops.add_readiness_check(app, "subscriptions", _ready)
    app.router.add_routes(routes)
    openapi.add(app, OPENAPI_PATHS,
                schemas={"DcsaSubscription": SUBSCRIPTION_SCHEMA, "Delivery": DELIVERY_SCHEMA})
