"""The upload APIs' test harness: the real app (outbox, accounts, keystore, read model), no nodes,
one API key per organisation and its chain directory entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts import ROLES
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, KEYSTORE, OUTBOX, READ_MODEL
from gateway.config import GatewayConfig
from gateway.readside.readmodel import Member, MemberChange

#: Scopes every harness key has.
SCOPES = ("events:write", "events:read", "grants:write", "tracking:read")


@dataclass
class IntakeHarness:
    """The app under test, its client and one API key per organisation."""

    client: Any
    app: Any
    keys: dict[int, str]
    org_ids: dict[int, int]
    reader_private: dict[int, bytes]

    def auth(self, chain_org: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[chain_org]}"}

    async def post(self, path: str, chain_org: int, body: Any = None, *,
                   headers: dict[str, str] | None = None, data: Any = None) -> Any:
        return await self.client.post(path, json=body if data is None else None, data=data,
                                      headers={**self.auth(chain_org), **(headers or {})})

    async def get(self, path: str, chain_org: int) -> Any:
        return await self.client.get(path, headers=self.auth(chain_org))

    def pending(self, chain_org: int, limit: int = 100) -> Any:
        return self.app[OUTBOX].pending(self.org_ids[chain_org], limit)


async def intake_harness(aiohttp_client: Any, config: GatewayConfig,
                         orgs: Sequence[tuple[int, str, tuple[str, ...]]], *,
                         newcomer: bool = True) -> IntakeHarness:
    """Start the app with ``orgs`` (chain id, name, roles) as active members; with ``newcomer``
    also an organisation registered in the gateway but not on chain (its key under id 0)."""
    app = create_app(config)
    client = await aiohttp_client(app)
    accounts, keystore, model = app[ACCOUNTS], app[KEYSTORE], app[READ_MODEL]
    keys, org_ids, privates = {}, {}, {}
    changes = []
    for chain_org, name, roles in orgs:
        org = accounts.create_organisation(name, roles, status="active", chain_org=chain_org)
        _, secret = accounts.create_api_key(org.id, list(SCOPES), "test")
        keys[chain_org], org_ids[chain_org] = secret, org.id
        own = keystore.create(org.id)
        privates[chain_org] = own.x25519_private
        mask = 0
        for role in roles:
            mask |= ROLES[role]
        changes.append(MemberChange(Member(chain_org, name, mask, own.x25519_public, True)))
    if newcomer:
        pending = accounts.create_organisation("Newcomer Ltd", ("carrier",), status="active")
        _, keys[0] = accounts.create_api_key(pending.id, ["events:write"], "test")
    model.apply_changes(changes)
    return IntakeHarness(client, app, keys, org_ids, privates)
