"""Revert reasons: what a reverted call's return data says, and how JSON-RPC reports it.

A Vyper ``assert cond, "reason"`` (or ``raise "reason"``) reverts with the ABI encoding of
``Error(string)``: the selector ``0x08c379a0`` and the string. A revert without a reason (a bare
``assert``, an unknown selector) carries no data. The node answers a reverted ``eth_call`` with
the JSON-RPC error :data:`EXECUTION_REVERTED` whose message is :func:`revert_message` and whose
``data`` is the raw revert data (EIP-1474, as geth does); the gateway reads that code back.
"""

from __future__ import annotations

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError

#: JSON-RPC error code of a reverted call (EIP-1474 / geth); the error's data is the revert data.
EXECUTION_REVERTED = 3

#: Selector of ``Error(string)``, the revert data of a reason string.
ERROR_SELECTOR = bytes.fromhex("08c379a0")


def revert_data(exc: BaseException) -> bytes:
    """The revert data a py-evm ``Revert`` carries (its first argument); empty if none."""
    data = exc.args[0] if exc.args else b""
    return data if isinstance(data, bytes) else b""


def revert_reason(data: bytes) -> str | None:
    """The reason string of ``Error(string)`` revert data; None if ``data`` carries none (empty,
    another selector, or a malformed encoding)."""
    if data[:4] != ERROR_SELECTOR:
        return None
    try:
        (reason,) = decode(["string"], data[4:])
    except (DecodingError, ValueError):  # ValueError: not UTF-8
        return None
    return str(reason)


def revert_message(data: bytes) -> str:
    """``execution reverted``, with ``: <reason>`` when the data carries one (geth's wording)."""
    reason = revert_reason(data)
    return "execution reverted" if reason is None else f"execution reverted: {reason}"
