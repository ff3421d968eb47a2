"""Helpers of the DCSA download and subscription tests.

A gateway app with loopback callbacks allowed and fast retries, organisations with API keys
made through the real accounts module, DCSA events rendered by the real
:func:`gateway.events.dcsa.to_dcsa` from canonical events, and a real aiohttp receiver on loopback
that records every callback and answers with a scripted sequence of statuses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.appkeys import ACCOUNTS
from gateway.config import GatewayConfig
from gateway.events import dcsa
from gateway.events.identifiers import container_check_digit
from gateway.events.model import CanonicalEvent, Reference

SECRET = base64.b64encode(b"subscriber secret, 32 bytes long").decode()
OTHER_SECRET = base64.b64encode(b"the rotated secret, also 32 byte").decode()
T0 = 1_795_000_000  # 2026-11-18


def config(data_dir: Path, *, max_attempts: int = 4, **subscriptions: Any) -> GatewayConfig:
    """A gateway configuration for these tests: no node, loopback callbacks, fast retries."""
    settings = {
        "allow_private_callbacks": True,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "timeout_seconds": 3.0,
        **subscriptions,
    }
    return GatewayConfig(
        data_dir=data_dir,
        keystore_passphrase="test passphrase",
        cookie_secure=False,
        webhook_max_attempts=max_attempts,
        extra={"subscriptions": settings},
    )


def organisation(app: web.Application, name: str, *, chain_org: int | None = None,
                 scopes: Sequence[str] = ("events:read",)) -> tuple[int, dict[str, str]]:
    """An active organisation and the Authorization header of a fresh API key of it."""
    accounts = app[ACCOUNTS]
    org = accounts.create_organisation(
        name,
        ["forwarder"],
        {"registrationNumber": f"REG-{name}", "country": "HK",
         "address": "1 Container Port Road", "contactEmail": "it@example.com"},
        status="active",
        chain_org=chain_org,
    )
    _, key = accounts.create_api_key(org.id, list(scopes), "tms")
    return org.id, {"Authorization": f"Bearer {key}"}


def container(owner: str, serial: int) -> str:
    """A valid ISO 6346 number (``owner``: 3 letters + U)."""
    first = f"{owner}{serial:06d}"
    return first + str(container_check_digit(first))


def canonical(
    event_type: str,
    subject: tuple[str, str],
    at: int = T0,
    *,
    location: str = "HKHKG",
    related: Sequence[tuple[str, str]] = (),
    details: dict[str, Any] | None = None,
) -> CanonicalEvent:
    """A canonical event (values normalised)."""
    return CanonicalEvent(
        event_type=event_type,
        classifier="ACT",
        event_time=at,
        subject=Reference(*subject),
        location=location,
        related=tuple(Reference(k, v) for k, v in related),
        details=details or {},
    )


def rendered(event_id: int, event: CanonicalEvent, created: int = T0) -> tuple[int, dict]:
    """``(event id, DCSA event)`` as the subscription listener produces it."""
    return event_id, dcsa.to_dcsa(event, event_id=dcsa.event_uuid(event_id), created=created)


def sample_events(first_id: int = 1 << 16) -> list[tuple[int, dict]]:
    """One discharge (EQUIPMENT), one arrival (TRANSPORT), one B/L issue (SHIPMENT)."""
    box = container("CSQU", 305438)
    return [
        rendered(first_id, canonical("TERMINAL.DISC", ("container", box),
                                     related=[("mbl", "PCOL1234567")],
                                     details={"vessel": {"imo": "9321483", "name": "EVER X"}})),
        rendered(first_id + 1, canonical("TRANSPORT.ARRI", ("vessel", "9321483"),
                                         details={"voyage": "2103S", "service": "FE1"})),
        rendered(first_id + 2, canonical("SHIPMENT.ISSU", ("mbl", "PCOL1234567"))),
    ]


@dataclass
class Callback:
    """One request the receiver got."""

    body: bytes
    """The raw body."""
    headers: dict[str, str]
    """Its headers."""
    status: int
    """What the receiver answered."""
    at: float = field(default_factory=time.monotonic)
    """When (monotonic)."""

    def signed_with(self, secret_b64: str) -> bool:
        """Whether Notification-Signature is the HMAC-SHA256 of the body under the secret."""
        key = base64.b64decode(secret_b64)
        expected = "sha256=" + hmac.new(key, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("Notification-Signature", ""), expected)


class Receiver:
    """A subscriber's callback endpoint: records requests, answers scripted statuses (then 204)."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = list(statuses)
        self.calls: list[Callback] = []
        self.arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/callback", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 204
        self.calls.append(Callback(body, dict(request.headers), status))
        self.arrived.set()
        return web.Response(status=status)

    @property
    def accepted(self) -> list[Callback]:
        return [c for c in self.calls if 200 <= c.status < 300]

    async def wait_for(self, count: int, timeout: float = 10.0, *, accepted: bool = False) -> None:
        """Wait (bounded) until ``count`` requests (or accepted ones) arrived."""
        deadline = time.monotonic() + timeout
        while len(self.accepted if accepted else self.calls) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(self.calls)} callbacks arrived: {self.calls}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))


async def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll an (async or sync) predicate until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
