"""Calling the system contracts over JSON-RPC (the gateway, the devnet): calldata, return values
and logs.

The compiled artifacts (:func:`contracts.load_artifact`) carry each contract's ABI; this module
turns ``(contract, function, args)`` into calldata, decodes return data, and decodes logs of the
ABI events (the packed cargo-event logs are :mod:`contracts.cargo`'s business). Contracts are
named as in :data:`contracts.SYSTEM_ADDRESSES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from contracts import SYSTEM_ADDRESSES, load_artifact


class AbiError(ValueError):
    """Unknown contract, function or event, or arguments that do not fit the ABI."""


def _type(param: dict[str, Any]) -> str:
    """The canonical ABI type of a parameter (tuples spelled out)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@dataclass(frozen=True)
class _Function:
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class _Event:
    name: str
    topic: bytes
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


@cache
def _functions(contract: str) -> dict[str, _Function]:
    out = {}
    for item in load_artifact(contract)["abi"]:
        if item.get("type") != "function":
            continue
        inputs = tuple(_type(p) for p in item["inputs"])
        selector = keccak(f"{item['name']}({','.join(inputs)})".encode())[:4]
        out[item["name"]] = _Function(selector, inputs, tuple(_type(p) for p in item["outputs"]))
    return out


@cache
def _events(contract: str) -> dict[bytes, _Event]:
    out = {}
    for item in load_artifact(contract)["abi"]:
        if item.get("type") != "event":
            continue
        types = ",".join(_type(p) for p in item["inputs"])
        topic = keccak(f"{item['name']}({types})".encode())
        out[topic] = _Event(
            item["name"],
            topic,
            tuple((p["name"], _type(p)) for p in item["inputs"] if p["indexed"]),
            tuple((p["name"], _type(p)) for p in item["inputs"] if not p["indexed"]),
        )
    return out


def address(contract: str) -> str:
    """The genesis address of a system contract (checksummed)."""
    try:
        return to_checksum_address(SYSTEM_ADDRESSES[contract])
    except KeyError:
        raise AbiError(f"unknown system contract {contract!r}") from None


def call_data(contract: str, function: str, *args: Any) -> bytes:
    """ABI-encode a call of ``contract.function(*args)``."""
    try:
        fn = _functions(contract)[function]
    except KeyError:
        raise AbiError(f"{contract} has no function {function!r}") from None
    if len(args) != len(fn.inputs):
        raise AbiError(f"{contract}.{function} takes {len(fn.inputs)} arguments, got {len(args)}")
    try:
        return fn.selector + encode(list(fn.inputs), list(args))
    except Exception as exc:  # eth_abi raises several unrelated types
        raise AbiError(f"{contract}.{function}: {exc}") from None


def decode_output(contract: str, function: str, data: bytes) -> tuple[Any, ...]:
    """Decode the return data of ``contract.function``."""
    fn = _functions(contract)[function]
    return tuple(decode(list(fn.outputs), data))


def event_topic(contract: str, event: str) -> bytes:
    """topic0 of an ABI event."""
    for topic, ev in _events(contract).items():
        if ev.name == event:
            return topic
    raise AbiError(f"{contract} has no event {event!r}")


def decode_log(contract: str, topics: list[bytes], data: bytes) -> tuple[str, dict[str, Any]] | None:
    """Decode a log of one of ``contract``'s ABI events; None if topic0 is not one of them.

    Indexed dynamic values (strings, bytes, arrays) are given as their 32-byte topic hash.
    """
    if not topics:
        return None
    ev = _events(contract).get(bytes(topics[0]))
    if ev is None:
        return None
    values: dict[str, Any] = {}
    for (name, kind), topic in zip(ev.indexed, topics[1:], strict=False):
        static = not (kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("))
        values[name] = decode([kind], bytes(topic))[0] if static else bytes(topic)
    decoded = decode([k for _, k in ev.data], bytes(data))
    values.update({name: v for (name, _), v in zip(ev.data, decoded, strict=True)})
    return ev.name, values
