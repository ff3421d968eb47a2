"""The demo port's organisations and their genesis members (PUBLIC development keys).

Each demo organisation ``i`` gets the development account ``org:<i>`` and the development X25519
key ``org:<i>`` (:func:`node.genesis.dev_key`, :func:`node.genesis.dev_x25519`): a devnet's
genesis, the repository's ``genesis.json`` (``scripts/make_genesis.py``), the demo accounts and
the SIMULATED feeds all name the same organisations. Demos and tests only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils.address import to_checksum_address

from node.genesis import GenesisError, dev_address, dev_x25519_public

#: The demo port's organisations: (name, roles). Each gets the dev account "org:<index>" and the
#: dev X25519 key "org:<index>" (its public half is the member's encryption key).
DEMO_ORGANISATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PortLedger Operator (demo)", ("operator",)),
    ("Kwai Tsing Container Terminal (demo)", ("terminal",)),
    ("Tsing Yi Terminal (demo)", ("terminal",)),
    ("Pacific Ocean Line (demo)", ("carrier",)),
    ("Harbour Freight Forwarding (demo)", ("forwarder",)),
    ("Kowloon Shipping Agency (demo)", ("agent",)),
    ("Swift Haulage (demo)", ("haulier",)),
    ("Tsuen Wan Logistics Warehouse (demo)", ("warehouse",)),
    ("Cathay Air Cargo (demo)", ("airline",)),
    ("Customs and Excise (demo)", ("customs",)),
    ("Harbour Trade Bank (demo)", ("bank",)),
    ("Ledger Audit (demo)", ("auditor",)),
    ("Sino Trading Company (demo)", ()),
)


def demo_members(
    validator_count: int, *, node_addresses: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The demo port's members (dev keys) and ``validator_count`` validator node addresses.

    Validator ``i`` is run by organisation ``i`` (operator first, then the terminals and the
    carrier), and its node address is one of that organisation's accounts: the development key
    ``validator:<i>``, or ``node_addresses[i]`` when given (a devnet's freshly generated keys).
    """
    if not 1 <= validator_count <= len(DEMO_ORGANISATIONS):
        raise GenesisError(f"validator count must be 1..{len(DEMO_ORGANISATIONS)}")
    if node_addresses is not None and len(node_addresses) != validator_count:
        raise GenesisError(f"{len(node_addresses)} node addresses for {validator_count} validators")
    members: list[dict[str, Any]] = []
    validators: list[str] = []
    for index, (name, roles) in enumerate(DEMO_ORGANISATIONS):
        accounts = [dev_address(f"org:{index}")]
        if index < validator_count:
            validators.append(
                to_checksum_address(node_addresses[index])
                if node_addresses is not None
                else dev_address(f"validator:{index}")
            )
            accounts.append(validators[-1])
        members.append(
            {
                "name": name,
                "roles": list(roles),
                "accounts": accounts,
                "encryptionKey": "0x" + dev_x25519_public(f"org:{index}").hex(),
            }
        )
    return members, validators
