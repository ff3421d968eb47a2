"""Helpers of the alert engine and API tests: a gateway with hosted chain members holding the
demo members' development keys, events sealed as the owners would and stored as the indexer
stores them (real envelopes, decrypted by the real tracking module), HK times (ours)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_utils import keccak

from gateway.appkeys import ACCOUNTS, ALERTS, KEYSTORE, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.events.model import CanonicalEvent, Reference
from gateway.readside.readmodel import Cursor, EventAdded, IndexedEvent, Member, MemberChange
from tests.support.readside import (
    account,
    master_secret,
    seal,
    x25519_private,
    x25519_public,
)

#: Scopes of every test key (org:admin publishes tariffs and settings).
SCOPES = ("events:read", "events:write", "tracking:read", "org:admin")

ISSUE_TARIFF: dict[str, Any] = {
    "currency": "HKD", "free_days": 5, "counting": "calendar", "label": "EXAMPLE ONLY (tests)",
    "bands": [{"from_day": 6, "to_day": 10, "per_day": {"20": 100, "40": 200, "45": 200,
                                                        "reefer": 400}},
              {"from_day": 11, "per_day": {"20": 200, "40": 400, "45": 400, "reefer": 800}}]}


def config(data_dir: Path, **alerts: Any) -> GatewayConfig:
    """No node; loopback webhooks with fast retries; the alert loops fast (or as given)."""
    return GatewayConfig(
        data_dir=data_dir, keystore_passphrase="test passphrase", cookie_secure=False,
        webhook_max_attempts=4,
        extra={"subscriptions": {"allow_private_callbacks": True, "retry_base_seconds": 0.05,
                                 "retry_max_seconds": 0.2, "timeout_seconds": 3.0},
               "alerts": {"clock_seconds": 3600, "reading_poll_seconds": 0.05, **alerts}})


def event(event_type: str, kind: str, value: str, at: int, *, classifier: str = "ACT",
          location: str = "HKHKG", related: Sequence[tuple[str, str]] = (),
          details: dict[str, Any] | None = None, retracts: int = 0) -> CanonicalEvent:
    return CanonicalEvent(event_type, classifier, at, Reference(kind, value), location,
                          tuple(Reference(k, v) for k, v in related), details or {},
                          retracts=retracts)


@dataclass
class Port:
    """The app, its hosted members (chain id -> gateway id, auth headers) and the chain's
    events so far."""

    app: web.Application
    orgs: dict[int, int] = field(default_factory=dict)
    auth: dict[int, dict[str, str]] = field(default_factory=dict)
    events: list[IndexedEvent] = field(default_factory=list)

    def member(self, chain_org: int, name: str, roles: int = 1) -> dict[str, str]:
        """Host a chain member here, with its development keys and an API key."""
        accounts = self.app[ACCOUNTS]
        org = accounts.create_organisation(name, ["forwarder"], {}, status="active",
                                           chain_org=chain_org)
        _, key = accounts.create_api_key(org.id, list(SCOPES), "tests")
        self.app[KEYSTORE].import_keys(
            org.id, signing_key=bytes(account(chain_org).key),
            x25519_private=x25519_private(chain_org), master_secret=master_secret(chain_org))
        self.app[READ_MODEL].apply_changes([MemberChange(Member(
            chain_org, name, roles, x25519_public(chain_org), True))])
        self.orgs[chain_org] = org.id
        self.auth[chain_org] = {"Authorization": f"Bearer {key}"}
        return self.auth[chain_org]

    def record(self, owner: int, event: CanonicalEvent, *, block_time: int,
               readers: tuple[int, ...] = (), reference: bool = False,
               retracts: int = 0) -> IndexedEvent:
        """Seal ``event`` as ``owner`` and store it as the indexer would (a new block)."""
        n = len(self.events) + 1
        event_id = n << 16
        cargo = seal(event, owner, readers=readers, reference=reference)
        info = confidential.envelope_info(cargo.payload)
        indexed = IndexedEvent(
            event_id=event_id, block=n, tx_hash=keccak(event_id.to_bytes(8, "big")),
            log_index=0, block_time=block_time, publisher=owner, subject=cargo.subject,
            type_code=cargo.event_type, classifier=cargo.classifier,
            event_time=cargo.event_time, location=cargo.location, retracts=retracts,
            payload_hash=cargo.payload_hash, envelope=cargo.payload,
            key_version=info.key_version, readers=info.readers,
            reference_readable=info.reference_readable)
        model = self.app[READ_MODEL]
        model.apply([EventAdded(indexed)], Cursor(n, keccak(n.to_bytes(8, "big"))),
                    model.cursor())
        self.events.append(indexed)
        return indexed

    @property
    def engine(self) -> Any:
        return self.app[ALERTS].engine

    @property
    def store(self) -> Any:
        return self.app[ALERTS].store

    def alerts_of(self, chain_org: int) -> list[Any]:
        """Every stored alert of a member (open and resolved), oldest first."""
        rows = self.store.inbox(self.orgs[chain_org], 0, state=None, kinds=[
            "vessel-delay", "eta-changed", "reefer-excursion", "not-picked-up",
            "free-time-ending", "customs-hold"], unread=False, before=None, limit=500)
        return [stored.alert for stored, _ in reversed(rows)]
