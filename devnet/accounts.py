"""The demo port's accounts: every genesis member organisation, active, with users and API keys.

A devnet's genesis (:func:`node.genesis.demo_members`) gives each demo organisation ``i`` the
development signing key ``org:<i>`` and the development X25519 key ``org:<i>``; this module
imports those keys into the gateway's keystore, registers the organisations as active with
their Consortium ids (``i + 1``: organisations are numbered from 1 in genesis order), and
creates one admin user and one API key per organisation, plus a platform operator user.

The keys are PUBLIC development keys and the passwords are printed: demos and tests only.
"""

from __future__ import annotations

import re
from typing import Any

from eth_utils.crypto import keccak

from devnet.members import DEMO_ORGANISATIONS
from gateway.accounts.store import Accounts
from gateway.confidential.keystore import open_keystore
from gateway.config import GatewayConfig
from gateway.principal import SCOPES
from node.genesis import dev_address, dev_key, dev_x25519


def slug(name: str) -> str:
    """``Pacific Ocean Line (demo)`` → ``pacific-ocean-line``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("(demo)", "")).strip("-")


def bootstrap_demo(config: GatewayConfig) -> dict[str, Any]:
    """Create the demo accounts (idempotent: existing organisations are left as they are).

    Returns
    -------
    dict
        ``{"gateway": url, "operator": {...}, "organisations": [{"name", "slug", "orgId",
        "chainOrg", "roles", "account", "email", "password", "apiKey"}]}``.
    """
    keystore = open_keystore(config)
    accounts = Accounts.open(config)
    try:
        out: list[dict[str, Any]] = []
        operator: dict[str, Any] = {}
        for index, (name, roles) in enumerate(DEMO_ORGANISATIONS):
            chain_org = index + 1
            label = f"org:{index}"
            short = slug(name)
            email = f"admin@{short}.demo"
            password = f"demo-{short}"
            org = accounts.by_chain_org(chain_org)
            if org is None:
                org = accounts.create_organisation(
                    name,
                    roles,
                    {"country": "HK", "contactEmail": email, "demo": True},
                    status="active",
                    chain_org=chain_org,
                    account=dev_address(label),
                    operator="operator" in roles,
                )
                accounts.create_user(org.id, email, password, "admin", operator="operator" in roles)
            if org.id not in keystore.org_ids():
                keystore.import_keys(
                    org.id,
                    signing_key=dev_key(label).to_bytes(),
                    x25519_private=dev_x25519(label),
                    master_secret=keccak(b"portledger-insecure-dev-master:" + label.encode()),
                )
            _, api_key = accounts.create_api_key(org.id, SCOPES, "demo key")
            entry = {
                "name": name,
                "slug": short,
                "orgId": org.id,
                "chainOrg": chain_org,
                "roles": list(roles),
                "account": dev_address(label),
                "email": email,
                "password": password,
                "apiKey": api_key,
            }
            out.append(entry)
            if "operator" in roles:
                operator = entry
        return {"gateway": config.public_url, "operator": operator, "organisations": out}
    finally:
        accounts.close()
