"""PortLedger p2p wire frames: length prefix, message code, RLP payload. Pure: no I/O.

A frame on the wire is::

    length (4 bytes, big-endian, counts everything after it) | code (1 byte) | RLP(payload)

``length`` must be in ``1..max_frame_size``; anything else is an oversize frame. The body must
be one message code this module knows, followed by exactly one canonical RLP item whose shape
matches the code; anything else is a malformed frame. Both close the connection and cost the
peer penalty points (:mod:`node.p2p`).

Payload shapes (what :func:`encode_frame` accepts and :func:`decode_body` returns):

=============  ====  ==========================================================================
code           byte  payload
=============  ====  ==========================================================================
HELLO          0x00  ``(version, network_id, nonce)``, nonce 32 bytes (handshake only)
AUTH           0x01  ``signature`` 65 bytes (handshake only)
PING           0x02  ``b""`` keepalive, never delivered to the runtime
CONSENSUS      0x10  ``bytes``: the runtime's encoding of one signed QBFT message
TXS            0x11  ``list[bytes]``: raw signed transactions, 1..MAX_TXS
NEW_BLOCK      0x12  ``bytes``: one RLP-encoded block
STATUS         0x13  ``(head_height, head_hash)``, hash 32 bytes
GET_BLOCKS     0x14  ``(request_id, start, count)``, count 1..MAX_RANGE
BLOCKS         0x15  ``(request_id, list[bytes])``: RLP-encoded blocks, at most MAX_RANGE
=============  ====  ==========================================================================

Integers are canonical RLP big-endian (no leading zeros); a non-canonical integer is malformed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import rlp
from rlp.sedes import big_endian_int

#: Default hard maximum of one frame's body (code + RLP), in bytes.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
#: Bytes of the length prefix.
LENGTH_BYTES = 4
#: Most transactions in one TXS frame.
MAX_TXS = 4096
#: Most blocks one GET_BLOCKS may ask for (and one BLOCKS may carry).
MAX_RANGE = 128


class Code(IntEnum):
    """Message codes."""

    HELLO = 0x00
    AUTH = 0x01
    PING = 0x02
    CONSENSUS = 0x10
    TXS = 0x11
    NEW_BLOCK = 0x12
    STATUS = 0x13
    GET_BLOCKS = 0x14
    BLOCKS = 0x15


#: Codes the runtime may send and receive (the others belong to the transport).
APP_CODES = frozenset(
    {Code.CONSENSUS, Code.TXS, Code.NEW_BLOCK, Code.STATUS, Code.GET_BLOCKS, Code.BLOCKS}
)


class FrameError(ValueError):
    """A frame that must not be accepted (the connection is closed)."""


class OversizeFrame(FrameError):
    """A length prefix of 0 or above the maximum."""


class MalformedFrame(FrameError):
    """An unknown code, bad RLP, or a payload of the wrong shape."""


def _int(item: Any, what: str) -> int:
    if not isinstance(item, bytes):
        raise MalformedFrame(f"{what}: expected an integer")
    try:
        return int(big_endian_int.deserialize(item))
    except rlp.DeserializationError as exc:
        raise MalformedFrame(f"{what}: non-canonical integer") from exc


def _bytes(item: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(item, bytes):
        raise MalformedFrame(f"{what}: expected bytes")
    if size is not None and len(item) != size:
        raise MalformedFrame(f"{what}: expected {size} bytes, got {len(item)}")
    return item


def _list(item: Any, what: str, size: int | None = None) -> list[Any]:
    if not isinstance(item, list):
        raise MalformedFrame(f"{what}: expected a list")
    if size is not None and len(item) != size:
        raise MalformedFrame(f"{what}: expected {size} items, got {len(item)}")
    return item


def _bytes_list(item: Any, what: str, low: int, high: int) -> list[bytes]:
    items = _list(item, what)
    if not low <= len(items) <= high:
        raise MalformedFrame(f"{what}: {len(items)} items, allowed {low}..{high}")
    return [_bytes(x, what) for x in items]


def check_payload(code: Code, item: Any) -> Any:
    """Validate the decoded RLP ``item`` for ``code``; return the typed payload."""
    if code == Code.HELLO:
        version, network, nonce = _list(item, "hello", 3)
        return (_int(version, "version"), _int(network, "network"), _bytes(nonce, "nonce", 32))
    if code == Code.AUTH:
        return _bytes(item, "signature", 65)
    if code == Code.PING:
        return _bytes(item, "ping", 0)
    if code in (Code.CONSENSUS, Code.NEW_BLOCK):
        data = _bytes(item, code.name.lower())
        if not data:
            raise MalformedFrame(f"{code.name.lower()}: empty")
        return data
    if code == Code.TXS:
        return _bytes_list(item, "txs", 1, MAX_TXS)
    if code == Code.STATUS:
        height, head = _list(item, "status", 2)
        return (_int(height, "height"), _bytes(head, "hash", 32))
    if code == Code.GET_BLOCKS:
        request_id, start, count = _list(item, "get_blocks", 3)
        n = _int(count, "count")
        if not 1 <= n <= MAX_RANGE:
            raise MalformedFrame(f"get_blocks: count {n}, allowed 1..{MAX_RANGE}")
        return (_int(request_id, "request_id"), _int(start, "start"), n)
    if code == Code.BLOCKS:
        request_id, blocks = _list(item, "blocks", 2)
        return (_int(request_id, "request_id"), _bytes_list(blocks, "blocks", 0, MAX_RANGE))
    raise MalformedFrame(f"unknown code {code}")  # pragma: no cover - Code is closed


def _to_rlp(code: Code, payload: Any) -> Any:
    """The RLP item for a typed payload (tuples become lists)."""
    if isinstance(payload, tuple):
        return [_to_rlp(code, x) for x in payload]
    if isinstance(payload, list):
        return [_to_rlp(code, x) for x in payload]
    return payload


def encode_body(code: int, payload: Any) -> bytes:
    """``code`` byte + RLP(payload); raises ValueError when the payload has the wrong shape."""
    try:
        c = Code(code)
    except ValueError as exc:
        raise ValueError(f"unknown message code {code}") from exc
    body = bytes([c]) + bytes(rlp.encode(_to_rlp(c, payload)))
    # Round-trip through the decoder so we never send what a peer would reject.
    decode_body(body)
    return body


def encode_frame(code: int, payload: Any, max_frame_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """A whole frame (length prefix included); ValueError if it is too big or misshapen."""
    body = encode_body(code, payload)
    if len(body) > max_frame_size:
        raise OversizeFrame(f"frame of {len(body)} bytes exceeds the maximum {max_frame_size}")
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def check_length(length: int, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
    """Raise :class:`OversizeFrame` unless ``1 <= length <= max_frame_size``."""
    if not 1 <= length <= max_frame_size:
        raise OversizeFrame(f"frame length {length} outside 1..{max_frame_size}")


def decode_body(body: bytes) -> tuple[Code, Any]:
    """Parse one frame body into ``(code, typed payload)``; raises :class:`MalformedFrame`."""
    if not body:
        raise MalformedFrame("empty frame")
    try:
        code = Code(body[0])
    except ValueError as exc:
        raise MalformedFrame(f"unknown code 0x{body[0]:02x}") from exc
    try:
        item = rlp.decode(body[1:], strict=True)
    except Exception as exc:  # rlp raises several exception types on hostile input
        raise MalformedFrame(f"bad RLP: {exc}") from exc
    return code, check_payload(code, item)
