"""Subscriptions' model: settings, subscriptions and deliveries, and the pure checks.

Secrets (:func:`decode_secret`), callback signatures (:func:`signature`), the form and address
of a callback URL (:func:`check_callback_url`) and the retry backoff (:func:`backoff`); nothing
here does I/O. The design is in ``docs/subscriptions.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import re
from dataclasses import dataclass
from typing import Any

from yarl import URL

from gateway.config import ConfigError, GatewayConfig, settings_from
from gateway.isotime import iso_or_none
from gateway.tracking.dcsa import DcsaFilter

#: Delivery states.
DELIVERY_STATES: tuple[str, ...] = ("pending", "delivered", "failed")


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

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_events_per_delivery < 1:
            raise ConfigError("subscriptions: concurrency and max_events_per_delivery >= 1")
        if not 0 < self.retry_base_seconds <= self.retry_max_seconds:
            raise ConfigError("subscriptions: 0 < retry_base_seconds <= retry_max_seconds")
        if self.timeout_seconds <= 0:
            raise ConfigError("subscriptions: timeout_seconds > 0")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SubscriptionSettings:
        """Read and check the settings; unknown keys are a :class:`ConfigError`."""
        return settings_from(cls, config.extra.get("subscriptions"), 'extra["subscriptions"]')


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
            "created": iso_or_none(self.created, millis=True),
            "nextAttempt": (iso_or_none(self.next_attempt, millis=True)
                            if self.status == "pending" else None),
            "finished": iso_or_none(self.finished, millis=True),
            "lastStatus": self.last_status,
            "lastError": self.last_error,
        }


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


def backoff(attempts: int, settings: SubscriptionSettings, rng: random.Random) -> float:
    """Seconds to wait after ``attempts`` attempts: exponential, capped, jittered (×[0.5, 1))."""
    exponent = min(max(attempts - 1, 0), 40)
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * float(2**exponent))
    return float(ceiling * (0.5 + rng.random() / 2))
