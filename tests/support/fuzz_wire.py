"""Fuzzing the wire of a running ``portledger node`` (issue 17, item 7): a devnet with extra
allowlisted identities, a raw p2p client, mutations of valid messages, and the node's log read
back as the record of every refusal and penalty.

Design
------
* **The node.** One validator (it finalises alone, so it keeps producing blocks — an empty one
  every second) whose ``peers.json`` also lists ``intruders`` node keys held by the test. No
  process listens on their ports, so the node's dials fail and the test's connections are the
  only links those keys have. Each identity is used until the node bans it (penalty points
  decay slowly), then the next one takes over: every refusal of a post-handshake frame is thus
  observable as a penalty or ban line of the identity that sent it.
* **The client** (:class:`WireClient`) speaks the node's transport itself (TLS 1.3 with a fresh
  certificate, HELLO, AUTH over :func:`node.p2p.auth_digest`, frames from
  :mod:`node.p2p_frames`) so it can send *any* bytes at any point. After each mutated frame it
  sends a probe — ``GET_BLOCKS`` — and waits, bounded, for one of: the matching ``BLOCKS`` answer
  (the node read, judged and dispatched everything before the probe, in order), a close, or
  nothing (a hang: the fuzz tests fail on it). Frames the node sends meanwhile (STATUS,
  NEW_BLOCK, TXS, PING) are kept as valid seeds.
* **Mutations** (:func:`mutate`) start from valid messages: byte flips, truncation, insertion,
  RLP-aware changes (a list nested or lengthened or shortened, bytes where a list belongs and
  the reverse, huge and non-canonical integers, deep nesting, huge declared RLP lengths), and at
  the frame level (:func:`mutate_frame`) the length prefix (0, above the maximum, longer than
  the body — then padded so every case ends) and the message code.
* **The log** (:class:`NodeLog`) is how the existing tests read penalties (``p2p penalise`` /
  ``p2p ban`` lines of :mod:`node.p2p`); :data:`UNTYPED` lists the lines that mean a failure
  escaped its typed refusal (a traceback, a handler or task that raised, an internal JSON-RPC
  error).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp
from eth_keys.datatypes import PrivateKey

from devnet.layout import DevnetLayout, create_devnet
from devnet.ports import free_ports
from node.genesis import QbftConfig
from node.p2p import (
    HANDSHAKE_MAX_FRAME,
    PROTOCOL_VERSION,
    P2PConfig,
    auth_digest,
    make_tls_identity,
)
from node.p2p_frames import DEFAULT_MAX_FRAME, LENGTH_BYTES, Code, decode_body, encode_body

#: Log lines that mean an error escaped its typed refusal (each is a bug to fix).
UNTYPED = (
    "Traceback",
    "handler failed",
    "engine task failed",
    "dispatch failed",
    "read failed:",
    "internal error in",
    "CONSENSUS HALTED",
)

_PENALTY = re.compile(r"p2p penalise ([0-9a-f]{40}) \+(\d+) \(([^:)]*)")
_BAN = re.compile(r"p2p ban ([0-9a-f]{40})")
_HANDSHAKE = re.compile(r"inbound handshake from .* failed: (\w+)")


# --------------------------------------------------------------------------- the devnet


def fuzz_devnet(root: Path, intruders: int) -> tuple[DevnetLayout, list[PrivateKey]]:
    """A one-validator devnet (an empty block every second) whose validator allowlists
    ``intruders`` fresh node keys at ports nobody listens on; returns the layout and the keys."""
    layout = create_devnet(
        root, validators=1, observers=0, qbft=QbftConfig(empty_block_period_seconds=1)
    )
    keys = [PrivateKey(os.urandom(32)) for _ in range(intruders)]
    node = layout.nodes[0]
    peers = [
        {"address": k.public_key.to_checksum_address(), "host": node.host, "port": port}
        for k, port in zip(keys, free_ports(intruders, node.host), strict=True)
    ]
    node.peers_path.write_text(json.dumps(peers, indent=2) + "\n")
    return layout, keys


# --------------------------------------------------------------------------- the node's log


@dataclass
class NodeLog:
    """The node's log, read incrementally."""

    path: Path
    offset: int = 0
    text: str = ""

    def read(self) -> str:
        """What was appended since the last read (also appended to :attr:`text`)."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        new = data.decode("utf-8", "replace")
        self.text += new
        return new

    def penalties(self, text: str | None = None) -> list[tuple[str, int, str]]:
        """``(peer hex, points, reason kind)`` of every penalty line in ``text``."""
        found = _PENALTY.findall(self.text if text is None else text)
        return [(peer, int(points), reason.strip()) for peer, points, reason in found]

    def bans(self, text: str | None = None) -> set[str]:
        """The peers banned in ``text`` (default: the whole log)."""
        return set(_BAN.findall(self.text if text is None else text))

    def ban_count(self) -> int:
        """Ban lines in the whole log (a peer banned again after its ban counts again)."""
        return len(_BAN.findall(self.text))

    def handshake_refusals(self, text: str | None = None) -> Counter[str]:
        """Refused inbound handshakes by exception type."""
        return Counter(_HANDSHAKE.findall(self.text if text is None else text))

    def untyped(self, start: int = 0) -> list[str]:
        """Lines of the log (from character ``start``) that mean an error escaped its typed
        refusal."""
        lines = self.text[start:].splitlines()
        return [line for line in lines if any(u in line for u in UNTYPED)]


# --------------------------------------------------------------------------- mutations


#: RLP-aware mutations (:func:`mutate_rlp`) and byte-level ones (:func:`mutate_bytes`).
RLP_KINDS = ("replace", "nest", "lengthen", "shorten", "to_list", "to_bytes", "huge_int",
             "leading_zero", "deep", "big_item")  # fmt: skip
BYTE_KINDS = ("flip", "truncate", "insert", "huge_rlp_length")


def _paths(item: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [path]
    if isinstance(item, list):
        for i, x in enumerate(item):
            out += _paths(x, (*path, i))
    return out


def _get(item: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        item = item[i]
    return item


def _set(item: Any, path: tuple[int, ...], value: Any) -> Any:
    if not path:
        return value
    copy = list(item)
    copy[path[0]] = _set(item[path[0]], path[1:], value)
    return copy


def _list_header(length: int) -> bytes:
    """The RLP header of a list whose payload is ``length`` bytes."""
    if length < 56:
        return bytes([0xC0 + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(size)]) + size


def mutate_rlp(data: bytes, rng: random.Random, kind: str) -> bytes:
    """``data`` (RLP) with one structural mutation ``kind`` at a random place (``replace``: a
    non-empty string by random bytes of its length); ``data`` itself if it does not decode."""
    try:
        item = rlp.decode(data, strict=False)
    except Exception:  # not RLP: nothing structural to mutate
        return data
    paths = _paths(item)
    if kind == "replace":  # same shape, new value: gets past the decoders into validation
        paths = [p for p in paths if isinstance(_get(item, p), bytes) and _get(item, p)] or paths
    path = rng.choice(paths)
    node = _get(item, path)
    if kind == "replace":
        new: Any = rng.randbytes(len(node)) if isinstance(node, bytes) else node
    elif kind == "nest":
        new = [node]
    elif kind == "lengthen":
        extra = [rng.randbytes(rng.choice((0, 1, 32, 65))) for _ in range(rng.randint(1, 3))]
        new = [*node, *extra] if isinstance(node, list) else [node, *extra]
    elif kind == "shorten":
        new = node[: rng.randrange(len(node))] if isinstance(node, list) and node else b""
    elif kind == "to_list":
        new = [node] if isinstance(node, bytes) else [[node]]
    elif kind == "to_bytes":
        new = bytes(rlp.encode(node))[: rng.randint(0, 40)]
    elif kind == "huge_int":
        new = rng.choice((b"\xff" * 8, b"\xff" * 9, b"\xff" * 32, b"\x01" + b"\x00" * 40))
    elif kind == "leading_zero":
        new = b"\x00" + (node if isinstance(node, bytes) else b"\x01")
    elif kind == "deep":  # the whole item, wrapped: rlp.encode itself would recurse too deep
        wrapped = data
        for _ in range(rng.choice((64, 1000, 5000))):
            wrapped = _list_header(len(wrapped)) + wrapped
        return wrapped
    elif kind == "big_item":
        new = rng.randbytes(rng.choice((1024, 70_000)))
    else:
        raise ValueError(f"unknown RLP mutation {kind}")
    return bytes(rlp.encode(_set(item, path, new)))


def mutate_bytes(data: bytes, rng: random.Random, kind: str) -> bytes:
    """``data`` with one byte-level mutation ``kind``."""
    buf = bytearray(data)
    if kind == "flip" and buf:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == "truncate" and buf:
        del buf[rng.randrange(len(buf)) :]
    elif kind == "insert":
        at = rng.randint(0, len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == "huge_rlp_length":
        # A long-form list or string header declaring far more bytes than follow.
        header = rng.choice((b"\xbf", b"\xff")) + rng.choice((b"\x7f", b"\xff")) * 8
        buf = bytearray(header + bytes(buf[1:]))
    return bytes(buf)


def mutate(data: bytes, rng: random.Random, prefix: int = 0) -> tuple[str, bytes]:
    """One random mutation of ``data`` whose first ``prefix`` bytes are a code kept out of the
    RLP-aware mutations: ``(kind, mutated bytes)``."""
    kind = rng.choice(RLP_KINDS + BYTE_KINDS)
    if kind in RLP_KINDS:
        return kind, data[:prefix] + mutate_rlp(data[prefix:], rng, kind)
    return kind, mutate_bytes(data, rng, kind)


#: Frame-level mutations (the length prefix and the code byte) besides :func:`mutate`'s.
FRAME_KINDS = ("length_zero", "length_huge", "length_long", "code")


def frame(body: bytes) -> bytes:
    """``body`` with its (correct) length prefix."""
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def mutate_frame(
    body: bytes, rng: random.Random, max_size: int = DEFAULT_MAX_FRAME
) -> tuple[str, bytes]:
    """A mutated wire frame from a valid frame ``body`` (code + RLP): ``(kind, wire bytes)``.

    Every result is complete — a declared length longer than the body is padded with zeros up
    to it — so the node can always reach a verdict without waiting for more bytes."""
    if rng.random() < 0.25:
        kind = rng.choice(FRAME_KINDS)
        if kind == "length_zero":
            return kind, b"\x00" * LENGTH_BYTES + body
        if kind == "length_huge":
            length = rng.choice((max_size + 1, 2**31, 2**32 - 1))
            return kind, length.to_bytes(LENGTH_BYTES, "big") + body
        if kind == "length_long":
            length = len(body) + rng.randint(1, 64)
            return kind, length.to_bytes(LENGTH_BYTES, "big") + body.ljust(length, b"\x00")
        code = rng.choice([c for c in range(256) if c != body[0]])
        return kind, frame(bytes([code]) + body[1:])
    kind, mutated = mutate(body, rng, prefix=1)
    return kind, frame(mutated)


# --------------------------------------------------------------------------- the p2p client


class Closed(Exception):
    """The node closed the connection."""


@dataclass
class WireClient:
    """One raw p2p connection to a node, speaking its transport directly (see the module
    docstring). Every wait is bounded by ``timeout``."""

    host: str
    port: int
    key: PrivateKey
    network_id: int
    timeout: float = 10.0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    #: Frame bodies the node sent, by code (valid seeds for mutation).
    captured: dict[Code, list[bytes]] = field(default_factory=dict)
    #: time.monotonic() of the last send (the node drops a link silent for its idle timeout).
    last_sent: float = 0.0
    _request: int = 0

    async def open_tls(self) -> None:
        """TCP + TLS 1.3 with a fresh certificate (no node-key handshake yet)."""
        tls = make_tls_identity("fuzz")
        self._tls = tls
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=tls.client, server_hostname=""),
            self.timeout,
        )

    def hello(self) -> bytes:
        """A valid HELLO body (its nonce is remembered for :meth:`auth`)."""
        self._nonce = os.urandom(32)
        return encode_body(Code.HELLO, (PROTOCOL_VERSION, self.network_id, self._nonce))

    async def read_body(self, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
        """The next frame's body; :class:`Closed` at end of stream."""
        assert self.reader is not None
        try:
            head = await asyncio.wait_for(self.reader.readexactly(LENGTH_BYTES), self.timeout)
            length = int.from_bytes(head, "big")
            if not 1 <= length <= max_size:
                raise ValueError(f"the node sent a frame of {length} bytes")
            return await asyncio.wait_for(self.reader.readexactly(length), self.timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise Closed(repr(exc)) from exc

    def auth(self, node_hello: bytes) -> bytes:
        """The AUTH body answering the node's HELLO body."""
        assert self.writer is not None
        _, (_, _, node_nonce) = decode_body(node_hello)
        sslobj = self.writer.get_extra_info("ssl_object")
        node_fp = hashlib.sha256(sslobj.getpeercert(binary_form=True)).digest()
        digest = auth_digest(
            self.network_id, b"dialer", self._tls.fingerprint, node_fp, self._nonce, node_nonce
        )
        signature = bytes(self.key.sign_msg_hash(digest).to_bytes())
        return encode_body(Code.AUTH, signature)

    async def connect(self) -> None:
        """TLS and the node-key handshake as a dialer; :class:`Closed` if the node refuses."""
        await self.open_tls()
        await self.send(frame(self.hello()))
        node_hello = await self.read_body(HANDSHAKE_MAX_FRAME)
        await self.send(frame(self.auth(node_hello)))
        code, _ = decode_body(await self.read_body(HANDSHAKE_MAX_FRAME))
        if code != Code.AUTH:
            raise Closed(f"expected AUTH, got {code.name}")

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.last_sent = time.monotonic()
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except (ConnectionError, ssl.SSLError) as exc:
            raise Closed(repr(exc)) from exc

    async def probe(self) -> str:
        """Send GET_BLOCKS and wait for its answer: ``"answered"``, ``"closed"`` or
        ``"silent"`` (nothing within :attr:`timeout`: a hang)."""
        self._request += 1
        request = self._request
        deadline = time.monotonic() + self.timeout
        try:
            await self.send(frame(encode_body(Code.GET_BLOCKS, (request, 1, 1))))
            while time.monotonic() < deadline:
                body = await self.read_body()
                code, payload = decode_body(body)
                if code == Code.BLOCKS and payload[0] == request:
                    return "answered"
                if code != Code.PING:
                    kept = self.captured.setdefault(code, [])
                    if len(kept) < 16:
                        kept.append(body)
        except Closed:
            return "closed"
        except TimeoutError:
            return "silent"
        return "silent"

    async def until_closed(self) -> str:
        """Read (discarding) until the node closes: ``"closed"``, or ``"silent"`` after
        :attr:`timeout`."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(self.timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return "silent"
        except (ConnectionError, ssl.SSLError):
            pass
        return "closed"

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)
            self.writer = None


# --------------------------------------------------------------------------- identities


@dataclass
class Identities:
    """The intruder keys, each used until the node bans it; a banned one is used again once its
    ban (``P2PConfig.ban_seconds``) is over, so a long run needs no more keys than a ban lasts."""

    keys: Sequence[PrivateKey]
    index: int = 0
    #: Ban lines seen per identity, and until when (monotonic) each is banned.
    bans_seen: Counter[str] = field(default_factory=Counter)
    banned_until: dict[str, float] = field(default_factory=dict)

    @property
    def current(self) -> PrivateKey:
        return self.keys[self.index]

    @property
    def hex(self) -> str:
        return _hex(self.current)

    def retire_banned(self, log: NodeLog) -> None:
        """Move to the next identity that is not banned now (by the node's log)."""
        now = time.monotonic()
        for peer, count in Counter(_BAN.findall(log.text)).items():
            if count > self.bans_seen[peer]:
                self.bans_seen[peer] = count
                self.banned_until[peer] = now + P2PConfig.ban_seconds + 5
        for step in range(len(self.keys)):
            i = (self.index + step) % len(self.keys)
            if self.banned_until.get(_hex(self.keys[i]), 0.0) <= now:
                self.index = i
                return
        raise AllBanned(min(self.banned_until.values()) - now)


class AllBanned(Exception):
    """Every intruder identity is banned now; the first ban ends in ``args[0]`` seconds."""


def _hex(key: PrivateKey) -> str:
    return bytes(key.public_key.to_canonical_address()).hex()


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)
