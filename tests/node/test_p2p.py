"""The permissioned p2p transport on loopback: handshake, allowlist, frames, penalties, backoff.

Every wait is bounded; the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import rlp
from eth_keys import keys

from devnet.ports import free_port
from node.p2p import Code, P2PConfig, Peer, PeerNetwork, auth_digest
from node.p2p_frames import (
    MAX_RANGE,
    MalformedFrame,
    OversizeFrame,
    check_length,
    decode_body,
    encode_body,
    encode_frame,
)

FAST = P2PConfig(
    backoff_initial=0.05,
    backoff_max=0.4,
    handshake_timeout=3.0,
    connect_timeout=2.0,
    ping_interval=1.0,
    idle_timeout=5.0,
    request_timeout=3.0,
    max_frame_size=64 * 1024,
)
WAIT = 10.0


def key(i: int) -> keys.PrivateKey:
    return keys.PrivateKey(bytes([i]) * 32)


def addr(k: keys.PrivateKey) -> bytes:
    return bytes(k.public_key.to_canonical_address())


async def until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


class Cluster:
    """Nodes on loopback, each allowlisting all the others; stopped at the end of a test."""

    def __init__(self) -> None:
        self.nets: list[PeerNetwork] = []

    def add(self, net: PeerNetwork) -> PeerNetwork:
        self.nets.append(net)
        return net

    async def stop(self) -> None:
        for net in self.nets:
            await asyncio.wait_for(net.stop(), WAIT)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        await c.stop()


def mesh(n: int, first: int = 1) -> tuple[list[keys.PrivateKey], list[Peer]]:
    ks = [key(first + i) for i in range(n)]
    return ks, [Peer(addr(k), "127.0.0.1", free_port()) for k in ks]


def node(
    cluster: Cluster, k: keys.PrivateKey, me: Peer, peers: Sequence[Peer], **kw: Any
) -> PeerNetwork:
    cls = kw.pop("cls", PeerNetwork)
    return cluster.add(cls(k, (me.host, me.port), peers, config=kw.pop("config", FAST), **kw))


async def connected_pair(cluster: Cluster, **kw_b: Any) -> tuple[PeerNetwork, PeerNetwork]:
    (ka, kb), (pa, pb) = mesh(2)
    a = node(cluster, ka, pa, [pb])
    b = node(cluster, kb, pb, [pa], **kw_b)
    await a.start()
    await b.start()
    assert await a.wait_for_peers(1, WAIT) and await b.wait_for_peers(1, WAIT)

    # Both ends dial: when the two dials cross, one connection replaces the other, and a
    # message sent on the loser in that instant is lost (node/p2p.py's docstring) — which made
    # tests sending right after connecting flaky under load. Wait until both ends hold the
    # same connection (one end's outbound is the other's inbound) and it stays for a second.
    def pair() -> tuple[object, object] | None:
        ca, cb = a._conns.get(b.address), b._conns.get(a.address)
        if ca is None or cb is None or ca.closed.is_set() or cb.closed.is_set():
            return None
        return (ca, cb) if ca.outbound != cb.outbound else None

    async with asyncio.timeout(WAIT):
        while True:
            seen = pair()
            await asyncio.sleep(1.0)
            now = pair()
            if seen is not None and now is not None and all(map(operator.is_, seen, now)):
                break
    return a, b


# --------------------------------------------------------------------------- frames (pure)


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (Code.CONSENSUS, b"\x01signed-qbft-message"),
        (Code.TXS, [b"tx1", b"tx2"]),
        (Code.NEW_BLOCK, rlp.encode([[b"header"], [], []])),
        (Code.STATUS, (42, b"\xaa" * 32)),
        (Code.GET_BLOCKS, (7, 100, MAX_RANGE)),
        (Code.BLOCKS, (7, [b"b1", b"b2"])),
        (Code.BLOCKS, (8, [])),
    ],
)
def test_frame_round_trip(code: Code, payload: Any) -> None:
    frame = encode_frame(code, payload)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    got_code, got = decode_body(frame[4:])
    assert got_code == code
    assert got == (list(payload) if isinstance(payload, list) else payload)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x7f" + rlp.encode(b"x"),  # unknown code
        b"\x11\xc5\x83",  # truncated RLP
        b"\x11" + rlp.encode(b"x") + b"trailing",
        b"\x11" + rlp.encode([]),  # empty tx list
        b"\x11" + rlp.encode([[b"nested"]]),
        b"\x13" + rlp.encode([b"\x00\x01", b"\xaa" * 32]),  # non-canonical integer
        b"\x13" + rlp.encode([1, b"\xaa" * 31]),  # short hash
        b"\x14" + rlp.encode([1, 0, MAX_RANGE + 1]),  # range too long
        b"\x14" + rlp.encode([1, 0, 0]),
        b"\x10" + rlp.encode(b""),
    ],
)
def test_malformed_bodies_rejected(body: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_body(body)


def test_encoder_refuses_what_a_peer_would_reject() -> None:
    with pytest.raises(ValueError):
        encode_body(Code.STATUS, (1, b"short"))
    with pytest.raises(ValueError):
        encode_body(0x99, b"x")
    with pytest.raises(OversizeFrame):
        encode_frame(Code.NEW_BLOCK, b"x" * 2000, max_frame_size=1000)
    for bad in (0, 1001):
        with pytest.raises(OversizeFrame):
            check_length(bad, 1000)


def test_auth_digest_binds_every_field() -> None:
    base = (0, b"dialer", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32)
    digests = {auth_digest(*base)}
    for i in range(len(base)):
        changed = list(base)
        changed[i] = 1 if i == 0 else (b"listener" if i == 1 else b"\xff" * 32)
        digests.add(auth_digest(*changed))  # type: ignore[arg-type]
    assert len(digests) == len(base) + 1


def test_backoff_is_exponential_jittered_and_bounded() -> None:
    net = PeerNetwork(
        key(1), ("127.0.0.1", 0), [], config=P2PConfig(backoff_initial=0.5, backoff_max=30)
    )
    for attempt in range(60):
        d = net._backoff(attempt)
        cap = min(30.0, 0.5 * 2**attempt)
        assert cap / 2 <= d <= cap
    assert max(net._backoff(50) for _ in range(100)) <= 30


# --------------------------------------------------------------------------- on loopback


async def test_three_nodes_connect_once_and_broadcast(cluster: Cluster) -> None:
    ks, peers = mesh(3)
    nets = [node(cluster, k, p, peers) for k, p in zip(ks, peers, strict=True)]
    for net in nets:
        await net.start()
    assert all(await asyncio.gather(*(n.wait_for_peers(2, WAIT) for n in nets)))

    # Exactly one connection per pair: both ends hold the same one (one dialed, one accepted).
    await asyncio.sleep(0.3)  # let any simultaneous-dial duplicates be resolved
    for a in nets:
        assert sorted(a.peers()) == sorted(p.address for p in peers if p.address != a.address)
        for b in nets:
            if a is not b:
                conn_ab, conn_ba = a._conns[b.address], b._conns[a.address]
                assert conn_ab.outbound != conn_ba.outbound

    for i, net in enumerate(nets):
        assert net.broadcast(Code.TXS, [b"tx-from-%d" % i]) == 2
    for i, net in enumerate(nets):
        got = set()
        for _ in range(2):
            sender, code, payload = await asyncio.wait_for(net.inbound.get(), WAIT)
            assert code == Code.TXS
            got.add((sender, payload[0]))
        expected = {(n.address, b"tx-from-%d" % j) for j, n in enumerate(nets) if j != i}
        assert got == expected

    # Directed send, STATUS payload typed on arrival.
    assert nets[0].send(nets[2].address, Code.STATUS, (5, b"\x11" * 32))
    sender, code, payload = await asyncio.wait_for(nets[2].inbound.get(), WAIT)
    assert (sender, code, payload) == (nets[0].address, Code.STATUS, (5, b"\x11" * 32))
    assert not nets[0].send(addr(key(99)), Code.STATUS, (5, b"\x11" * 32))  # not a peer
    with pytest.raises(ValueError):
        nets[0].broadcast(Code.HELLO, (1, 0, b"\x00" * 32))  # transport-only code


async def test_handler_callback_receives_messages(cluster: Cluster) -> None:
    seen: asyncio.Queue[tuple[bytes, Code, Any]] = asyncio.Queue()

    async def handler(peer: bytes, code: Code, payload: Any) -> None:
        await seen.put((peer, code, payload))

    a, b = await connected_pair(cluster, handler=handler)
    assert a.send(b.address, Code.CONSENSUS, b"qbft-bytes")
    assert await asyncio.wait_for(seen.get(), WAIT) == (a.address, Code.CONSENSUS, b"qbft-bytes")


async def test_not_allowlisted_key_refused_both_directions(cluster: Cluster) -> None:
    (ka, kb, kx), (pa, pb, _) = mesh(3)
    # A expects B at pb; an outsider X (not on A's allowlist) listens there and dials A.
    a = node(cluster, ka, pa, [pb])
    x = node(cluster, kx, Peer(addr(kx), pb.host, pb.port), [pa])
    await a.start()
    await x.start()

    def refused(net: PeerNetwork, text: str) -> bool:
        return any(text in reason for _, reason in net.refusals)

    # X -> A: A (listener) refuses an address not on its allowlist.
    await until(lambda: refused(a, f"{addr(kx).hex()} is not allowlisted"))
    # A -> X: A (dialer) refuses a signer other than the peer it dialed.
    await until(lambda: refused(a, f"expected {addr(kb).hex()}, signed by {addr(kx).hex()}"))
    assert a.peers() == []  # A never takes X as a peer, in either direction
    # X's own handshake with A checks out from X's side (A is on X's list), so X may hold the
    # link until A's refusal closes it: it must not last.
    await until(lambda: x.peers() == [])
    assert a.peers() == []


class WrongKeySigner(PeerNetwork):
    """Presents a valid TLS certificate but signs the handshake with another key."""

    other = key(77)

    def _sign_handshake(self, digest: bytes) -> bytes:
        return bytes(self.other.sign_msg_hash(digest).to_bytes())


class WrongSessionSigner(PeerNetwork):
    """Signs with its real node key, but over another session's certificate fingerprints."""

    def _sign_handshake(self, digest: bytes) -> bytes:
        forged = auth_digest(0, b"dialer", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32)
        return bytes(self.node_key.sign_msg_hash(forged).to_bytes())


@pytest.mark.parametrize("cls", [WrongKeySigner, WrongSessionSigner])
async def test_valid_cert_but_wrong_signature_refused(cluster: Cluster, cls: type) -> None:
    (ka, kb), (pa, pb) = mesh(2)
    a = node(cluster, ka, pa, [pb])
    b = node(cluster, kb, pb, [pa], cls=cls)
    await a.start()
    await b.start()
    # Both directions fail on A's side: as listener (not allowlisted) and as dialer (wrong signer).
    await until(lambda: sum("handshake failed" in r for _, r in a.refusals) >= 2)
    await asyncio.sleep(0.3)
    assert a.peers() == []
    # B's handshake checks out from B's side, so B may hold a link it just dialed until A's
    # refusal closes it: it must not last.
    await until(lambda: b.peers() == [])
    assert a.peers() == []


async def test_oversize_frame_disconnects_and_penalises(cluster: Cluster) -> None:
    a, b = await connected_pair(cluster)
    conn = a._conns[b.address]
    # B sends a length prefix one byte over A's limit (and some body that is never read).
    b._conns[a.address].writer.write((FAST.max_frame_size + 1).to_bytes(4, "big") + b"\x11" * 64)
    await asyncio.wait_for(conn.closed.wait(), WAIT)
    assert a.score(b.address) == pytest.approx(FAST.penalty_oversize, rel=0.01)
    assert any("oversize frame" in r for p, r in a.refusals if p == b.address)
    assert not a.banned(b.address)
    # B is not banned (one offence), so the link comes back.
    assert await a.wait_for_peers(1, WAIT)


@pytest.mark.parametrize(
    "body",
    [b"\x7f\x80", b"\x11\xc5\x83ab", b"\x00" + rlp.encode([1, 0, b"\x00" * 32])],
    ids=["unknown-code", "bad-rlp", "hello-after-handshake"],
)
async def test_malformed_frame_disconnects_and_penalises(cluster: Cluster, body: bytes) -> None:
    a, b = await connected_pair(cluster)
    conn = a._conns[b.address]
    b._conns[a.address].writer.write(len(body).to_bytes(4, "big") + body)
    await asyncio.wait_for(conn.closed.wait(), WAIT)
    assert a.score(b.address) == pytest.approx(FAST.penalty_malformed, rel=0.01)
    assert any("malformed frame" in r for p, r in a.refusals if p == b.address)


async def test_penalty_threshold_bans_and_refuses(cluster: Cluster) -> None:
    a, b = await connected_pair(cluster)
    a.penalise(b.address, 60, "invalid consensus message")
    assert b.address in a.peers() and not a.banned(b.address)
    a.penalise(b.address, 60, "invalid consensus message")
    assert a.banned(b.address)
    assert b.address not in a.peers()
    # While banned, B's redials are refused by A and A does not dial B.
    await until(lambda: any("is banned" in r for _, r in a.refusals))
    assert a.peers() == []


class ListenOnly(PeerNetwork):
    """Accepts allowlisted peers but never dials."""

    async def _dial_loop(self, peer: Peer) -> None:
        return None


async def test_restarted_peer_is_reconnected(cluster: Cluster) -> None:
    (ka, kb), (pa, pb) = mesh(2)
    a = node(cluster, ka, pa, [pb])
    b = node(cluster, kb, pb, [pa])
    await a.start()
    await b.start()
    assert await a.wait_for_peers(1, WAIT)

    await b.stop()
    await until(lambda: a.peers() == [])
    await asyncio.sleep(0.5)  # A keeps redialing a closed port, with backoff
    assert a.peers() == []

    b3 = node(cluster, kb, pb, [pa], cls=ListenOnly)  # B restarts; only A's redial can link them
    await b3.start()
    assert await a.wait_for_peers(1, WAIT)
    assert a._conns[b3.address].outbound  # A's own dial brought the link back
    assert a.send(b3.address, Code.NEW_BLOCK, b"\xc3\x80\x80\x80")
    assert await asyncio.wait_for(b3.inbound.get(), WAIT) == (
        a.address,
        Code.NEW_BLOCK,
        b"\xc3\x80\x80\x80",
    )


async def test_block_range_request_response(cluster: Cluster) -> None:
    chain = [b"block-%d" % i for i in range(10)]
    asked: list[tuple[bytes, int, int]] = []

    async def serve(peer: bytes, start: int, count: int) -> Sequence[bytes]:
        asked.append((peer, start, count))
        return chain[start : start + count]

    a, b = await connected_pair(cluster, block_range_handler=serve)
    assert await a.request_blocks(b.address, 3, 4) == chain[3:7]
    assert await a.request_blocks(b.address, 8, 5) == chain[8:10]  # served what exists
    assert asked == [(a.address, 3, 4), (a.address, 8, 5)]
    # A has no range handler: it answers with an empty list rather than leaving B waiting.
    assert await b.request_blocks(a.address, 0, 1) == []
    with pytest.raises(ConnectionError):
        await a.request_blocks(addr(key(99)), 0, 1)
    with pytest.raises(ValueError):
        await a.request_blocks(b.address, 0, MAX_RANGE + 1)


async def test_unsolicited_blocks_penalised(cluster: Cluster) -> None:
    a, b = await connected_pair(cluster)
    assert b.send(a.address, Code.BLOCKS, (12345, [b"x"]))
    await until(lambda: a.score(b.address) > 0)
    assert a.score(b.address) == pytest.approx(FAST.penalty_unsolicited, rel=0.01)


async def test_simultaneous_dials_keep_the_lower_addresss_outbound(cluster: Cluster) -> None:
    (ka, kb), (pa, pb) = mesh(2)
    a = node(cluster, ka, pa, [pb], cls=ListenOnly)
    b = node(cluster, kb, pb, [pa], cls=ListenOnly)
    await a.start()
    await b.start()
    for _ in range(3):  # repeated crossing dials always converge on the same single link
        await asyncio.wait_for(asyncio.gather(a._dial(pb), b._dial(pa)), WAIT)
        low, high = sorted((a, b), key=lambda n: n.address)
        await until(
            lambda low=low, high=high: (
                high.address in low.peers()
                and low.address in high.peers()
                and low._conns[high.address].outbound
                and not high._conns[low.address].outbound
            )
        )
        await asyncio.sleep(0.2)
        assert a.peers() == [b.address] and b.peers() == [a.address]
        assert a._conns[b.address].outbound == (a.address < b.address)
    assert a.send(b.address, Code.CONSENSUS, b"m")
    assert await asyncio.wait_for(b.inbound.get(), WAIT) == (a.address, Code.CONSENSUS, b"m")


async def test_silent_kept_link_is_replaced_by_a_restarted_peers_dial(cluster: Cluster) -> None:
    (ka, kb), (pa, pb) = mesh(2)
    low_k, high_k = sorted((ka, kb), key=addr)
    low_p, high_p = (pa, pb) if low_k is ka else (pb, pa)
    low = node(cluster, low_k, low_p, [high_p], cls=ListenOnly)
    high = node(cluster, high_k, high_p, [low_p], cls=ListenOnly)
    await low.start()
    await high.start()
    await asyncio.wait_for(low._dial(high_p), WAIT)
    assert await low.wait_for_peers(1, WAIT)
    kept = low._conns[high.address]
    assert kept.outbound

    # The high node "crashed" without closing its link (we make it look silent) and restarts.
    kept.last_rx -= 10 * FAST.ping_interval
    high2 = node(
        cluster, high_k, Peer(addr(high_k), "127.0.0.1", free_port()), [low_p], cls=ListenOnly
    )
    await high2.start()
    await asyncio.wait_for(high2._dial(low_p), WAIT)
    await until(lambda: kept.closed.is_set() and high.address in low.peers())
    assert not low._conns[high.address].outbound  # the restarted node's dial won
    assert low.send(high.address, Code.CONSENSUS, b"after-restart")
    assert await asyncio.wait_for(high2.inbound.get(), WAIT) == (
        low.address,
        Code.CONSENSUS,
        b"after-restart",
    )
