"""Vyper contracts of the PortLedger chain and the Python-side facts about them.

The ``.vy`` sources in this folder are the chain's data model (consortium governance, cargo
events, bills of lading, access grants, telemetry anchors, customs declarations). They are
compiled by :mod:`contracts.build` into ``contracts/build/<Name>.json`` (ABI, deploy bytecode,
runtime bytecode, source hash); the node's genesis builder and the gateway load those artifacts
with :func:`load_artifact`.

The system contracts live at fixed addresses, pre-deployed in ``genesis.json``: the genesis
builder runs each constructor (in :data:`DEPLOY_ORDER`, with :func:`constructor_args`) in a
throwaway chain and copies the runtime code and storage to :data:`SYSTEM_ADDRESSES`. The
constructors make no external calls and never use their own address.
"""

from __future__ import annotations

import json
from enum import IntEnum
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

#: Folder of the compiled artifacts.
BUILD_DIR = Path(__file__).parent / "build"

#: Genesis addresses of the system contracts.
SYSTEM_ADDRESSES: dict[str, str] = {
    "Consortium": "0x0000000000000000000000000000000000001000",
    "CargoLedger": "0x0000000000000000000000000000000000001001",
    "BillOfLading": "0x0000000000000000000000000000000000001002",
    "AccessGrants": "0x0000000000000000000000000000000000001003",
    "Anchors": "0x0000000000000000000000000000000000001004",
    "Declarations": "0x0000000000000000000000000000000000001005",
}

#: Order in which the genesis builder constructs them (later ones name earlier ones).
DEPLOY_ORDER: list[str] = list(SYSTEM_ADDRESSES)

#: Role bits of member organisations; mirrors ``contracts/roles.vy``.
ROLES: dict[str, int] = {
    "operator": 1 << 0,
    "terminal": 1 << 1,
    "carrier": 1 << 2,
    "agent": 1 << 3,
    "forwarder": 1 << 4,
    "haulier": 1 << 5,
    "warehouse": 1 << 6,
    "airline": 1 << 7,
    "customs": 1 << 8,
    "bank": 1 << 9,
    "auditor": 1 << 10,
}

class ProposalKind(IntEnum):
    """Kinds of a Consortium governance proposal; mirrors ``Consortium.vy`` "Proposal kinds"."""

    ADD_MEMBER = 1
    SET_ROLES = 2
    SUSPEND_MEMBER = 3
    ADD_VALIDATOR = 4
    REMOVE_VALIDATOR = 5
    RECOVER_ACCOUNTS = 6
    REINSTATE_MEMBER = 7


#: Seconds a passed governance proposal waits before it can be executed (genesis default).
DEFAULT_TIMELOCK = 86_400


def roles_mask(names: list[str]) -> int:
    """Combine role names into the contracts' bitmask.

    Parameters
    ----------
    names : list of str
        Role names, keys of :data:`ROLES` (case-insensitive).

    Returns
    -------
    int
        The bitmask.
    """
    mask = 0
    for name in names:
        try:
            mask |= ROLES[name.lower()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}") from None
    return mask


def constructor_args(
    name: str,
    members: list[dict[str, Any]],
    validators: list[str],
    *,
    timelock: int = DEFAULT_TIMELOCK,
    addresses: dict[str, str] | None = None,
) -> list[Any]:
    """Return the constructor arguments of a system contract for a genesis membership.

    Parameters
    ----------
    name : str
        Contract name, one of :data:`DEPLOY_ORDER`.
    members : list of dict
        Genesis members as in ``genesis.json``: ``name``, ``roles`` (list of role names),
        ``accounts`` (hex addresses), ``encryptionKey`` (hex, 32 bytes).
    validators : list of str
        Validator node addresses; each must be one of some member's accounts.
    timelock : int, optional
        Governance timelock in seconds (Consortium only).
    addresses : dict of str to str, optional
        Where the other system contracts are; :data:`SYSTEM_ADDRESSES` by default (tests that
        deploy normally pass the addresses they got).

    Returns
    -------
    list
        Arguments in constructor order, ready for ABI encoding.
    """
    if name == "Consortium":
        return [
            [m["name"] for m in members],
            [roles_mask(m["roles"]) for m in members],
            [bytes.fromhex(m["encryptionKey"].removeprefix("0x")) for m in members],
            [[to_checksum_address(a) for a in m["accounts"]] for m in members],
            [to_checksum_address(v) for v in validators],
            timelock,
        ]
    at = SYSTEM_ADDRESSES if addresses is None else addresses
    if name == "AccessGrants":
        return [at["Consortium"], at["CargoLedger"]]
    if name in SYSTEM_ADDRESSES:
        return [at["Consortium"]]
    raise KeyError(f"unknown system contract {name!r}")


def load_artifact(name: str) -> dict[str, Any]:
    """Load a compiled contract artifact.

    Parameters
    ----------
    name : str
        Contract name, e.g. ``"CargoLedger"``.

    Returns
    -------
    dict
        ``abi`` (list), ``bytecode`` and ``runtime`` (hex strings with ``0x``),
        ``source_sha256``.
    """
    with open(BUILD_DIR / f"{name}.json") as f:
        artifact: dict[str, Any] = json.load(f)
    return artifact
