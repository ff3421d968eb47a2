"""PortLedger's permissioned, authenticated peer-to-peer transport.

Peers are static: every node has a secp256k1 *node key* (its address is the node's identity) and
an allowlist of member nodes (address + host:port to dial). Every connection is TLS 1.3, and
every connection is authenticated by the node keys of both ends before a single application
frame is accepted.

Handshake
---------
1. **TLS 1.3, mutual.** At every start a node makes a fresh P-256 TLS key and an X.509
   certificate for it. Both sides present their certificate (the listener requests the
   dialer's). No CA vouches for anything: Python's ``ssl`` module has no verify callback, so to
   make OpenSSL request and accept an arbitrary client certificate, each leaf certificate is
   issued by a *null CA* whose Ed25519 private key is derived from a public constant
   (:data:`NULL_CA_SEED`). Anyone can mint a certificate under it; it carries no trust and none is
   placed in it. Its only role is to let both ends *see* the other's certificate.
2. **HELLO.** Each side sends ``(version, network_id, nonce)`` with 32 fresh random bytes.
3. **AUTH.** Each side signs, with its node key, ``keccak(RLP([DOMAIN, network_id, role,
   sha256(dialer cert), sha256(listener cert), dialer nonce, listener nonce]))`` where ``role``
   is ``dialer`` or ``listener`` (its own), and sends the 65-byte signature.
4. **Verify.** Each side rebuilds the peer's digest from *its own view* of this TLS session (its
   own certificate, the certificate the peer presented in this session, both nonces), recovers
   the signer and accepts only an allowlisted address that is not banned and not itself; a
   dialer also requires the address it meant to dial. Anything else is closed with a logged
   reason (:attr:`PeerNetwork.refusals`).

Why this is sound: a TLS session is bound to the certificates' keys — a party can only be the
endpoint of a session under a certificate whose private key it holds. The AUTH signature covers
the SHA-256 fingerprints of *this session's two certificates* and two fresh nonces. An attacker
without an allowlisted node key cannot produce such a signature; replaying an old signature
fails on the nonces; relaying a genuine peer's signature from another session (man in the
middle) fails because that session's certificates differ from the ones the verifier sees (the
attacker cannot present the victim's certificate without its TLS private key). The role string
stops a signature being reflected back at its author. Hence after the handshake, every byte on
the TLS channel comes from the holder of the recovered node key. Certificate *verification* is
therefore replaced by this key-binding check; the null CA adds nothing and removes nothing.

Frames and policy
-----------------
Frames are ``length | code | RLP`` (:mod:`node.p2p_frames`), at most ``max_frame_size`` bytes
(16 MiB by default). An oversize or malformed frame closes the connection and penalises the
peer. Penalty scores decay exponentially (half-life ``penalty_half_life``); reaching
``penalty_threshold`` bans the peer for ``ban_seconds`` (disconnect, no dialing, inbound refused).
The runtime calls :meth:`PeerNetwork.penalise` when a message fails its validation.

There is one connection per peer pair. Both ends dial (so either one restarting reconnects);
when two connections to the same peer exist, the one dialed by the *lower* address is kept — both
ends decide the same way — unless the kept one has been silent for two ping intervals (the peer
crashed without closing it and has come back), then the newer one replaces it. A message queued
on a duplicate in the instant before it is closed can be lost; consensus tolerates that (round
changes), and the runtime re-broadcasts what matters. A dropped peer is redialed with exponential backoff and jitter
(bounded by ``backoff_max``, 4 s: a healed partition is found within it). A link silent for two
ping intervals (10 s; a partition stalls TCP, and after healing its next retransmission may be
a minute away) does not hold the dialer back: it dials afresh, and the new link replaces the
silent one. Every wait is bounded: connect, TLS and node-key handshakes, reads
(idle timeout; PING keepalives keep a healthy link busy), writes (drain timeout), the inbound
queue, requests.

Inbound application messages go to :attr:`PeerNetwork.inbound` (an ``asyncio.Queue`` of
``(peer_address, code, payload)``) or to an async ``handler``; GET_BLOCKS is answered by the
``block_range_handler``; BLOCKS answers are matched to :meth:`PeerNetwork.request_blocks`.

Per-peer inbound queues. Each connection's reader only reads and decodes frames; they wait in
that connection's *inbox* for its dispatcher, which hands them to the runtime one at a time in
arrival order. The inbox is bounded by ``peer_queue_frames`` frames and ``peer_queue_bytes``
bytes (a frame always fits an empty inbox, so every legal frame can pass). A frame that does
not fit is dropped, and the peer is *flooding*: the first drop of an episode costs it
``penalty_flood`` points (so a peer that floods again and again reaches the ban threshold while
a burst now and then decays away) and logs one line; the episode ends when its inbox is empty
again. PINGs and BLOCKS answers (solicited, matched to a waiting request) bypass the inbox.
Consensus tolerates the dropped messages (round changes; STATUS and sync bring blocks back).
:attr:`PeerNetwork.inbound_dropped` and :attr:`PeerNetwork.floods` count them per peer
(:attr:`PeerNetwork.received` counts every application frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import itertools
import logging
import math
import os
import random
import ssl
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import rlp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey, Signature

from node.p2p_frames import (
    APP_CODES,
    DEFAULT_MAX_FRAME,
    LENGTH_BYTES,
    MAX_RANGE,
    Code,
    FrameError,
    MalformedFrame,
    OversizeFrame,
    check_length,
    decode_body,
    encode_frame,
)

log = logging.getLogger("portledger.p2p")

#: Wire protocol version carried in HELLO.
PROTOCOL_VERSION = 1
#: Domain separator of the AUTH digest.
AUTH_DOMAIN = b"portledger-p2p-auth-v1"
#: Public seed of the null CA (see the module docstring: it carries no trust).
NULL_CA_SEED = b"portledger p2p null CA: carries no trust, authentication is the node key"
#: Largest handshake frame accepted before authentication.
HANDSHAKE_MAX_FRAME = 1024

Payload = Any
Handler = Callable[[bytes, Code, Payload], Awaitable[None]]
RangeHandler = Callable[[bytes, int, int], Awaitable[Sequence[bytes]]]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Peer:
    """An allowlisted member node."""

    #: 20-byte node address (from its secp256k1 node key).
    address: bytes
    #: Where to dial it.
    host: str
    port: int


@dataclass(frozen=True)
class P2PConfig:
    """Limits and timings; every wait the transport does is bounded by one of these."""

    max_frame_size: int = DEFAULT_MAX_FRAME
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    max_pending_handshakes: int = 64
    backoff_initial: float = 0.5
    #: Redial interval bound: after a partition heals, a peer is dialed again within it.
    backoff_max: float = 4.0
    #: Keepalive period; a link silent for two of them is redialed (see the module docstring).
    ping_interval: float = 5.0
    idle_timeout: float = 35.0
    frame_read_timeout: float = 30.0
    write_timeout: float = 10.0
    send_queue_size: int = 1024
    inbound_queue_size: int = 4096
    inbound_put_timeout: float = 5.0
    handler_timeout: float = 10.0
    request_timeout: float = 10.0
    penalty_threshold: float = 100.0
    penalty_half_life: float = 300.0
    ban_seconds: float = 60.0
    penalty_oversize: float = 50.0
    penalty_malformed: float = 25.0
    penalty_unsolicited: float = 10.0
    max_refusals_kept: int = 256
    #: Frames waiting in one peer's inbox for the runtime.
    peer_queue_frames: int = 1024
    #: Bytes (frame bodies) waiting in one peer's inbox.
    peer_queue_bytes: int = 32 * 1024 * 1024
    #: Penalty for a flooding episode (a frame dropped because the peer's inbox is full).
    penalty_flood: float = 20.0


# --------------------------------------------------------------------------- TLS identity


def _null_ca() -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(NULL_CA_SEED).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PortLedger p2p null CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2120, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None)
    )
    return key, cert


@dataclass(frozen=True)
class TlsIdentity:
    """This start's TLS key and certificate, and the contexts that use them."""

    cert_der: bytes
    server: ssl.SSLContext
    client: ssl.SSLContext

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.cert_der).digest()


def make_tls_identity(label: str = "portledger-node") -> TlsIdentity:
    """A fresh P-256 key, a certificate for it, and TLS 1.3 server/client contexts."""
    ca_key, ca_cert = _null_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, None)
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    def context(purpose: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca_pem)
        return ctx

    server = context(ssl.PROTOCOL_TLS_SERVER)
    client = context(ssl.PROTOCOL_TLS_CLIENT)
    # load_cert_chain only reads files: a private temporary directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="portledger-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        server.load_cert_chain(cert_path, key_path)
        client.load_cert_chain(cert_path, key_path)
    return TlsIdentity(cert.public_bytes(serialization.Encoding.DER), server, client)


def auth_digest(
    network_id: int,
    role: bytes,
    dialer_fp: bytes,
    listener_fp: bytes,
    dialer_nonce: bytes,
    listener_nonce: bytes,
) -> bytes:
    """What a node signs with its node key to bind itself to one TLS session."""
    return keccak(
        rlp.encode(
            [AUTH_DOMAIN, network_id, role, dialer_fp, listener_fp, dialer_nonce, listener_nonce]
        )
    )


# --------------------------------------------------------------------------- connections


class HandshakeError(Exception):
    """The peer failed the node-key handshake."""


@dataclass(eq=False)
class Connection:
    """One authenticated TLS link to a peer."""

    address: bytes
    outbound: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    outbox: asyncio.Queue[bytes]
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: time.monotonic() of the last frame received (PINGs included).
    last_rx: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Frames read, waiting for the dispatcher: (code, payload, body size).
    inbox: deque[tuple[Code, Payload, int]] = field(default_factory=deque)
    inbox_bytes: int = 0
    inbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    #: In a flooding episode (see the module docstring), and frames dropped in it.
    flooding: bool = False
    flood_dropped: int = 0


@dataclass
class _Score:
    points: float = 0.0
    at: float = 0.0


class PeerNetwork:
    """The node's transport: static allowlisted peers over mutually authenticated TLS 1.3."""

    def __init__(
        self,
        node_key: PrivateKey,
        listen: tuple[str, int],
        peers: Iterable[Peer],
        *,
        network_id: int = 0,
        config: P2PConfig | None = None,
        handler: Handler | None = None,
        block_range_handler: RangeHandler | None = None,
    ) -> None:
        self.node_key = node_key
        self.address: bytes = node_key.public_key.to_canonical_address()
        self.listen = listen
        self.allowlist: dict[bytes, Peer] = {
            p.address: p for p in peers if p.address != self.address
        }
        self.network_id = network_id
        self.config = config or P2PConfig()
        self.handler = handler
        self.block_range_handler = block_range_handler
        self.inbound: asyncio.Queue[tuple[bytes, Code, Payload]] = asyncio.Queue(
            self.config.inbound_queue_size
        )
        #: Recent refusals and disconnects: (peer address or None, reason).
        self.refusals: deque[tuple[bytes | None, str]] = deque(maxlen=self.config.max_refusals_kept)
        self._conns: dict[bytes, Connection] = {}
        self._scores: dict[bytes, _Score] = {}
        self._banned_until: dict[bytes, float] = {}
        self._pending: dict[tuple[bytes, int], asyncio.Future[list[bytes]]] = {}
        self._request_ids = itertools.count(1)
        self._tls: TlsIdentity | None = None
        self._server: asyncio.Server | None = None
        self._dialers: list[asyncio.Task[None]] = []
        self._handshakes = asyncio.Semaphore(self.config.max_pending_handshakes)
        self._changed = asyncio.Event()
        self._stopping = False
        #: Application frames received, frames dropped because the peer's inbox was full,
        #: flooding episodes, penalties and bans, per peer.
        self.received: Counter[bytes] = Counter()
        self.inbound_dropped: Counter[bytes] = Counter()
        self.floods: Counter[bytes] = Counter()
        self.penalties: Counter[bytes] = Counter()
        self.bans: Counter[bytes] = Counter()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Make this start's TLS identity, listen, and dial every allowlisted peer."""
        self._stopping = False
        self._tls = make_tls_identity("portledger-" + self.address.hex())
        host, port = self.listen
        self._server = await asyncio.start_server(
            self._on_inbound,
            host,
            port,
            ssl=self._tls.server,
            ssl_handshake_timeout=self.config.handshake_timeout,
        )
        if port == 0:
            self.listen = (host, self._server.sockets[0].getsockname()[1])
        for peer in self.allowlist.values():
            self._dialers.append(asyncio.create_task(self._dial_loop(peer)))
        log.info("p2p %s listening on %s:%d", self.address.hex(), *self.listen)

    async def stop(self) -> None:
        """Stop listening and dialing, close every connection, fail pending requests."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in self._dialers:
            task.cancel()
        for task in self._dialers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)
        self._dialers.clear()
        conns = list(self._conns.values())
        for conn in conns:
            self._drop(conn, "stopping", log_level=logging.DEBUG)
        for conn in conns:
            for task in conn.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("network stopped"))
        self._pending.clear()

    # -- API for the runtime ------------------------------------------------------------

    def peers(self) -> list[bytes]:
        """Addresses of the peers connected now."""
        return [a for a, c in self._conns.items() if not c.closed.is_set()]

    def inbox_sizes(self) -> dict[bytes, tuple[int, int]]:
        """Frames and bytes waiting in each connected peer's inbox."""
        return {
            a: (len(c.inbox), c.inbox_bytes)
            for a, c in self._conns.items()
            if not c.closed.is_set()
        }

    def send(self, peer: bytes, code: int, payload: Payload) -> bool:
        """Queue one message to ``peer``; False if it is not connected or its queue is full.

        Raises ValueError if the payload does not fit the code or exceeds the frame limit.
        """
        return self._enqueue(peer, self._frame(code, payload))

    def broadcast(self, code: int, payload: Payload) -> int:
        """Queue one message to every connected peer; returns how many took it."""
        frame = self._frame(code, payload)
        return sum(self._enqueue(peer, frame) for peer in self.peers())

    async def request_blocks(
        self, peer: bytes, start: int, count: int, timeout: float | None = None
    ) -> list[bytes]:
        """Ask ``peer`` for up to ``count`` RLP blocks from height ``start``.

        Raises ConnectionError if the peer is not connected, TimeoutError if it does not answer.
        """
        if not 1 <= count <= MAX_RANGE:
            raise ValueError(f"count {count} outside 1..{MAX_RANGE}")
        request_id = next(self._request_ids)
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending[(peer, request_id)] = fut
        try:
            if not self.send(peer, Code.GET_BLOCKS, (request_id, start, count)):
                raise ConnectionError(f"peer {peer.hex()} not connected")
            return await asyncio.wait_for(fut, timeout or self.config.request_timeout)
        finally:
            self._pending.pop((peer, request_id), None)

    def penalise(self, peer: bytes, points: float, reason: str) -> None:
        """Add penalty points; at the threshold the peer is disconnected and banned."""
        now = time.monotonic()
        score = self._decayed(peer, now) + points
        self._scores[peer] = _Score(score, now)
        self.penalties[peer] += 1
        log.warning("p2p penalise %s +%.0f (%s): score %.0f", peer.hex(), points, reason, score)
        if score >= self.config.penalty_threshold:
            self.bans[peer] += 1
            self._banned_until[peer] = now + self.config.ban_seconds
            self._scores[peer] = _Score(0.0, now)
            log.warning("p2p ban %s for %.0fs (%s)", peer.hex(), self.config.ban_seconds, reason)
            conn = self._conns.get(peer)
            if conn is not None:
                self._drop(conn, f"banned: {reason}")

    def score(self, peer: bytes) -> float:
        """The peer's current (decayed) penalty score."""
        return self._decayed(peer, time.monotonic())

    def banned(self, peer: bytes) -> bool:
        """Whether the peer is banned now."""
        return self._banned_until.get(peer, 0.0) > time.monotonic()

    async def wait_for_peers(self, count: int, timeout: float) -> bool:
        """Wait (bounded) until at least ``count`` peers are connected."""
        deadline = time.monotonic() + timeout
        while len(self.peers()) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    # -- internals: scores and frames ---------------------------------------------------

    def _decayed(self, peer: bytes, now: float) -> float:
        s = self._scores.get(peer)
        if s is None:
            return 0.0
        return s.points * math.pow(0.5, (now - s.at) / self.config.penalty_half_life)

    def _frame(self, code: int, payload: Payload) -> bytes:
        if code not in APP_CODES:
            raise ValueError(f"code {code} is not an application message code")
        return encode_frame(code, payload, self.config.max_frame_size)

    def _enqueue(self, peer: bytes, frame: bytes) -> bool:
        conn = self._conns.get(peer)
        if conn is None or conn.closed.is_set():
            return False
        try:
            conn.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("p2p send queue to %s full; message dropped", peer.hex())
            return False
        return True

    def _refuse(self, peer: bytes | None, reason: str, level: int = logging.WARNING) -> None:
        self.refusals.append((peer, reason))
        log.log(level, "p2p %s: %s", peer.hex() if peer else "unauthenticated peer", reason)

    # -- internals: dialing -------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter, bounded by ``backoff_max``."""
        c = self.config
        base = min(c.backoff_max, c.backoff_initial * (2 ** min(attempt, 30)))
        return random.uniform(base / 2, base)

    async def _dial_loop(self, peer: Peer) -> None:
        attempt = 0
        while not self._stopping:
            conn = self._conns.get(peer.address)
            if conn is not None and not conn.closed.is_set() and not self._silent(conn):
                # wake when the link would turn silent, at the latest
                silent_in = conn.last_rx + 2 * self.config.ping_interval - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        conn.closed.wait(), max(0.05, min(silent_in, self.config.ping_interval))
                    )
                attempt = 0
                continue
            ban_left = self._banned_until.get(peer.address, 0.0) - time.monotonic()
            if ban_left > 0:
                await asyncio.sleep(min(ban_left, self.config.backoff_max))
                continue
            try:
                await self._dial(peer)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is logged; the loop keeps trying
                log.debug("p2p dial %s failed: %r", peer.address.hex(), exc)
            attempt += 1
            await asyncio.sleep(self._backoff(attempt - 1))

    async def _dial(self, peer: Peer) -> None:
        assert self._tls is not None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                peer.host,
                peer.port,
                ssl=self._tls.client,
                server_hostname="",
                ssl_handshake_timeout=self.config.handshake_timeout,
            ),
            self.config.connect_timeout + self.config.handshake_timeout,
        )
        try:
            address = await asyncio.wait_for(
                self._handshake(reader, writer, dialer=True, expected=peer.address),
                self.config.handshake_timeout,
            )
        except Exception as exc:
            self._refuse(peer.address, f"outbound handshake failed: {exc!r}")
            writer.close()
            raise
        self._register(address, True, reader, writer)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping or self._handshakes.locked():
            writer.close()
            return
        async with self._handshakes:
            try:
                address = await asyncio.wait_for(
                    self._handshake(reader, writer, dialer=False, expected=None),
                    self.config.handshake_timeout,
                )
            except Exception as exc:
                self._refuse(
                    None,
                    f"inbound handshake from {writer.get_extra_info('peername')} failed: {exc!r}",
                )
                writer.close()
                return
        self._register(address, False, reader, writer)

    # -- internals: the node-key handshake ----------------------------------------------

    def _sign_handshake(self, digest: bytes) -> bytes:
        """Sign the AUTH digest with the node key (a method so tests can misbehave)."""
        return bytes(self.node_key.sign_msg_hash(digest).to_bytes())

    async def _read_frame(
        self, reader: asyncio.StreamReader, max_size: int
    ) -> tuple[Code, Payload]:
        length = int.from_bytes(await reader.readexactly(LENGTH_BYTES), "big")
        check_length(length, max_size)
        return decode_body(await reader.readexactly(length))

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        dialer: bool,
        expected: bytes | None,
    ) -> bytes:
        assert self._tls is not None
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is None or sslobj.version() != "TLSv1.3":
            raise HandshakeError("not a TLS 1.3 connection")
        peer_der = sslobj.getpeercert(binary_form=True)
        if not peer_der:
            raise HandshakeError("peer presented no certificate")
        peer_fp = hashlib.sha256(peer_der).digest()
        my_fp = self._tls.fingerprint
        my_nonce = os.urandom(32)
        writer.write(encode_frame(Code.HELLO, (PROTOCOL_VERSION, self.network_id, my_nonce)))
        code, hello = await self._read_frame(reader, HANDSHAKE_MAX_FRAME)
        if code != Code.HELLO:
            raise HandshakeError(f"expected HELLO, got {code.name}")
        version, network_id, peer_nonce = hello
        if version != PROTOCOL_VERSION:
            raise HandshakeError(f"protocol version {version} != {PROTOCOL_VERSION}")
        if network_id != self.network_id:
            raise HandshakeError(f"network {network_id} != {self.network_id}")
        if peer_nonce == my_nonce:
            raise HandshakeError("reflected nonce")
        if dialer:
            fps, nonces = (my_fp, peer_fp), (my_nonce, peer_nonce)
            mine, theirs = b"dialer", b"listener"
        else:
            fps, nonces = (peer_fp, my_fp), (peer_nonce, my_nonce)
            mine, theirs = b"listener", b"dialer"
        my_digest = auth_digest(self.network_id, mine, *fps, *nonces)
        writer.write(encode_frame(Code.AUTH, self._sign_handshake(my_digest)))
        await writer.drain()
        code, signature = await self._read_frame(reader, HANDSHAKE_MAX_FRAME)
        if code != Code.AUTH:
            raise HandshakeError(f"expected AUTH, got {code.name}")
        their_digest = auth_digest(self.network_id, theirs, *fps, *nonces)
        try:
            public = Signature(signature).recover_public_key_from_msg_hash(their_digest)
        except Exception as exc:
            raise HandshakeError(f"bad signature: {exc}") from exc
        address = bytes(public.to_canonical_address())
        if address == self.address:
            raise HandshakeError("connected to itself")
        if expected is not None and address != expected:
            raise HandshakeError(f"expected {expected.hex()}, signed by {address.hex()}")
        if address not in self.allowlist:
            raise HandshakeError(f"{address.hex()} is not allowlisted")
        if self.banned(address):
            raise HandshakeError(f"{address.hex()} is banned")
        return address

    # -- internals: connection lifecycle ------------------------------------------------

    def _silent(self, conn: Connection) -> bool:
        """Nothing received for two ping intervals: the peer crashed or a partition stalls the link."""
        return time.monotonic() - conn.last_rx > 2 * self.config.ping_interval

    def _keeps(self, peer: bytes, outbound: bool) -> bool:
        """Whether a connection in this direction is the one both ends keep."""
        dialer = self.address if outbound else peer
        return dialer == min(self.address, peer)

    def _register(
        self,
        address: bytes,
        outbound: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if self._stopping:
            writer.close()
            return
        conn = Connection(
            address, outbound, reader, writer, asyncio.Queue(self.config.send_queue_size)
        )
        existing = self._conns.get(address)
        if existing is not None and not existing.closed.is_set():
            stale = self._silent(existing)
            if (
                self._keeps(address, existing.outbound)
                and not self._keeps(address, outbound)
                and not stale
            ):
                self._refuse(address, "duplicate connection closed", logging.DEBUG)
                writer.close()
                return
            self._drop(existing, "replaced by a newer connection", log_level=logging.DEBUG)
        self._conns[address] = conn
        conn.tasks.append(asyncio.create_task(self._read_loop(conn)))
        conn.tasks.append(asyncio.create_task(self._write_loop(conn)))
        conn.tasks.append(asyncio.create_task(self._dispatch_loop(conn)))
        self._changed.set()
        log.info(
            "p2p %s connected to %s (%s)",
            self.address.hex(),
            address.hex(),
            "outbound" if outbound else "inbound",
        )

    def _drop(self, conn: Connection, reason: str, log_level: int = logging.INFO) -> None:
        if conn.closed.is_set():
            return
        conn.closed.set()
        if self._conns.get(conn.address) is conn:
            del self._conns[conn.address]
        self._refuse(conn.address, f"disconnected: {reason}", log_level)
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        conn.writer.close()
        for (peer, _), fut in list(self._pending.items()):
            if peer == conn.address and not fut.done():
                fut.set_exception(ConnectionError(f"peer disconnected: {reason}"))
        self._changed.set()

    async def _write_loop(self, conn: Connection) -> None:
        ping = encode_frame(Code.PING, b"")
        try:
            while not conn.closed.is_set():
                try:
                    frame = await asyncio.wait_for(conn.outbox.get(), self.config.ping_interval)
                except TimeoutError:
                    frame = ping
                conn.writer.write(frame)
                await asyncio.wait_for(conn.writer.drain(), self.config.write_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drop(conn, f"write failed: {exc!r}")

    async def _read_loop(self, conn: Connection) -> None:
        c = self.config
        try:
            while not conn.closed.is_set():
                head = await asyncio.wait_for(conn.reader.readexactly(LENGTH_BYTES), c.idle_timeout)
                length = int.from_bytes(head, "big")
                check_length(length, c.max_frame_size)
                body = await asyncio.wait_for(conn.reader.readexactly(length), c.frame_read_timeout)
                code, payload = decode_body(body)
                conn.last_rx = time.monotonic()
                if code == Code.PING:
                    continue
                if code not in APP_CODES:
                    raise MalformedFrame(f"{code.name} after the handshake")
                self.received[conn.address] += 1
                if code == Code.BLOCKS:
                    self._on_blocks(conn, payload)
                else:
                    self._to_inbox(conn, code, payload, length)
        except asyncio.CancelledError:
            raise
        except OversizeFrame as exc:
            self._drop(conn, f"oversize frame: {exc}", logging.WARNING)
            self.penalise(conn.address, c.penalty_oversize, f"oversize frame: {exc}")
        except MalformedFrame as exc:
            self._drop(conn, f"malformed frame: {exc}", logging.WARNING)
            self.penalise(conn.address, c.penalty_malformed, f"malformed frame: {exc}")
        except FrameError as exc:  # pragma: no cover - the two above are exhaustive
            self._drop(conn, f"bad frame: {exc}", logging.WARNING)
        except asyncio.IncompleteReadError:
            self._drop(conn, "closed by peer")
        except TimeoutError:
            self._drop(conn, "read timed out")
        except Exception as exc:
            self._drop(conn, f"read failed: {exc!r}")

    def _to_inbox(self, conn: Connection, code: Code, payload: Payload, size: int) -> None:
        """Queue a frame for the dispatcher, or drop it (a flooding episode) when it does not
        fit the peer's inbox."""
        c = self.config
        if conn.inbox and (
            len(conn.inbox) >= c.peer_queue_frames or conn.inbox_bytes + size > c.peer_queue_bytes
        ):
            self.inbound_dropped[conn.address] += 1
            conn.flood_dropped += 1
            if not conn.flooding:
                conn.flooding = True
                self.floods[conn.address] += 1
                self.penalise(
                    conn.address,
                    c.penalty_flood,
                    f"flooding: inbox full ({len(conn.inbox)} frames, {conn.inbox_bytes} bytes; "
                    f"limits {c.peer_queue_frames} frames, {c.peer_queue_bytes} bytes), "
                    f"dropping its {code.name} and what follows until it drains",
                )
            return
        conn.inbox.append((code, payload, size))
        conn.inbox_bytes += size
        conn.inbox_ready.set()

    async def _dispatch_loop(self, conn: Connection) -> None:
        """Hand the peer's frames to the runtime, one at a time, in arrival order."""
        try:
            while not conn.closed.is_set():
                if not conn.inbox:
                    if conn.flooding:
                        conn.flooding = False
                        log.info(
                            "p2p %s: inbox drained; %d frames were dropped",
                            conn.address.hex(),
                            conn.flood_dropped,
                        )
                        conn.flood_dropped = 0
                    conn.inbox_ready.clear()
                    await conn.inbox_ready.wait()
                    continue
                code, payload, size = conn.inbox.popleft()
                conn.inbox_bytes -= size
                await self._dispatch(conn, code, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the dispatcher: drop the link, never the node
            self._drop(conn, f"dispatch failed: {exc!r}", logging.ERROR)

    def _on_blocks(self, conn: Connection, payload: Payload) -> None:
        request_id, blocks = payload
        fut = self._pending.get((conn.address, request_id))
        if fut is None:
            self.penalise(conn.address, self.config.penalty_unsolicited, "unsolicited BLOCKS")
        elif not fut.done():
            fut.set_result(blocks)

    async def _dispatch(self, conn: Connection, code: Code, payload: Payload) -> None:
        c = self.config
        if code == Code.GET_BLOCKS:
            request_id, start, count = payload
            blocks: list[bytes] = []
            if self.block_range_handler is not None:
                try:
                    got = await asyncio.wait_for(
                        self.block_range_handler(conn.address, start, count), c.handler_timeout
                    )
                    blocks = list(got)[:count]
                except Exception as exc:
                    log.warning("p2p block range handler failed: %r", exc)
            self._answer_blocks(conn.address, request_id, blocks)
            return
        if self.handler is not None:
            try:
                await asyncio.wait_for(self.handler(conn.address, code, payload), c.handler_timeout)
            except Exception as exc:
                log.warning("p2p handler failed on %s: %r", code.name, exc)
            return
        try:
            await asyncio.wait_for(
                self.inbound.put((conn.address, code, payload)), c.inbound_put_timeout
            )
        except TimeoutError:
            log.warning("p2p inbound queue full; %s from %s dropped", code.name, conn.address.hex())

    def _answer_blocks(self, peer: bytes, request_id: int, blocks: list[bytes]) -> None:
        """Send BLOCKS, halving the list until the frame fits the size limit."""
        while True:
            try:
                frame = encode_frame(Code.BLOCKS, (request_id, blocks), self.config.max_frame_size)
            except OversizeFrame:
                blocks = blocks[: len(blocks) // 2]
                continue
            self._enqueue(peer, frame)
            return
