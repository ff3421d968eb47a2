"""JSON-RPC error objects and codes, and the parsing of request parameters into Python values.

Every bad parameter is an :class:`RpcError` with ``INVALID_PARAMS`` (-32602) naming the
parameter. A reverted call's code, ``EXECUTION_REVERTED`` (3), lives with the revert reasons in
:mod:`contracts.revert`. The transaction pool (:mod:`node.txpool`) refuses with these codes too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: A call that could not run (out of gas, insufficient balance...): geth's generic server error.
EXECUTION_FAILED = -32000
LIMIT_EXCEEDED = -32005
RESOURCE_NOT_FOUND = -32001
#: A transaction refused (the ranges geth and Besu use), and refused because its sender is not
#: a member organisation's account.
TX_REJECTED = -32003
NOT_PERMITTED = -32007

#: A JSON-RPC method: its params in, its result out (or a coroutine of it); errors raised as
#: :class:`RpcError`. Each namespace module gives a table of them (``methods()``).
Method = Callable[[list[Any]], Awaitable[Any] | Any]


class RpcError(Exception):
    """A JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    """The JSON-RPC response object carrying ``error``."""
    return {"jsonrpc": "2.0", "id": request_id, "error": error.as_dict()}


# -- parameter parsing -------------------------------------------------------------------------
def parse_quantity(value: Any, name: str = "quantity") -> int:
    if isinstance(value, str) and value.startswith(("0x", "0X")) and len(value) > 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise RpcError(INVALID_PARAMS, f"{name}: expected a hex quantity, got {value!r}")


def parse_data(value: Any, name: str = "data", length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")) or len(value) % 2:
        raise RpcError(INVALID_PARAMS, f"{name}: expected 0x-prefixed even-length hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise RpcError(INVALID_PARAMS, f"{name}: invalid hex") from exc
    if length is not None and len(raw) != length:
        raise RpcError(INVALID_PARAMS, f"{name}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_address(value: Any, name: str = "address") -> bytes:
    return parse_data(value, name, 20)


def parse_hash(value: Any, name: str = "hash") -> bytes:
    return parse_data(value, name, 32)


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, f"{name}: expected true or false")
    return value


def expect_params(params: list[Any], count: int, required: int, method: str) -> list[Any]:
    """``params`` padded with None to ``count``; INVALID_PARAMS unless ``required`` to ``count``
    are given."""
    if len(params) < required or len(params) > count:
        expected = str(count) if required == count else f"{required} to {count}"
        raise RpcError(INVALID_PARAMS, f"{method}: expected {expected} params, got {len(params)}")
    return params + [None] * (count - len(params))
