"""The QBFT runtime in one process: validators and an observer over real TLS p2p on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_keys import keys

from consensus import extradata
from node.chain import Ledger
from node.db import LevelDB, NodeKeys
from node.engine import Engine
from node.genesis import Genesis, QbftConfig, build_genesis, demo_members, dev_key
from node.p2p import P2PConfig, Peer, PeerNetwork
from node.service import NodeService
from tests.node.chain_fixtures import TERMINAL, cargo_tx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    key: keys.PrivateKey
    port: int
    db: LevelDB | None = None
    service: NodeService | None = None
    network: PeerNetwork | None = None
    engine: Engine | None = None
    task: asyncio.Task[None] | None = None

    @property
    def ledger(self) -> Ledger:
        assert self.service is not None
        return self.service.ledger


class Net:
    """N validators (dev keys validator:i) and observers, each a full node in this process."""

    def __init__(self, root: Path, validators: int, observers: int = 0) -> None:
        members, addresses = demo_members(validators)
        doc = build_genesis(
            members,
            addresses,
            timestamp=int(time.time()) - 3600,
            qbft=QbftConfig(block_period_seconds=1, request_timeout_seconds=2),
        )
        self.genesis = Genesis.from_json(doc)
        self.root = root
        keys_ = [dev_key(f"validator:{i}") for i in range(validators)]
        keys_ += [keys.PrivateKey(bytes([0x40 + i]) * 32) for i in range(observers)]
        self.members = [Member(k, free_port()) for k in keys_]
        self.peers = [
            Peer(m.key.public_key.to_canonical_address(), "127.0.0.1", m.port) for m in self.members
        ]

    async def start(self, i: int) -> None:
        m = self.members[i]
        m.db = LevelDB(str(self.root / f"node{i}"))
        ledger = Ledger(m.db, self.genesis)
        m.service = NodeService(ledger, m.key, produce=False)
        config = P2PConfig(
            backoff_initial=0.1, backoff_max=1.0, ping_interval=1.0, idle_timeout=4.0
        )
        m.network = PeerNetwork(
            m.key, ("127.0.0.1", m.port), self.peers, network_id=ledger.chain_id, config=config
        )
        m.engine = Engine(m.service, m.key, m.network)
        await m.network.start()
        m.task = asyncio.create_task(m.engine.run())

    async def stop(self, i: int) -> None:
        m = self.members[i]
        if m.engine is None:
            return
        assert m.network is not None and m.service is not None and m.db is not None
        await m.engine.stop()
        if m.task is not None:
            m.task.cancel()
        await m.network.stop()
        m.service.stop()
        m.db.close()
        m.engine = None

    def running(self) -> list[Member]:
        return [m for m in self.members if m.engine is not None]

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}: {self.describe()}"
                )
            await asyncio.sleep(0.05)

    def describe(self) -> str:
        return "; ".join(
            f"node{i} #{m.ledger.head().block_number} r{m.engine.state.round if m.engine.state else '?'}"
            f" peers={len(m.network.peers()) if m.network else 0} halted={m.engine.halted}"
            for i, m in enumerate(self.members)
            if m.engine is not None
        )


@pytest.fixture
async def net4(tmp_path: Path) -> AsyncIterator[Net]:
    net = Net(tmp_path, validators=4, observers=1)
    for i in range(len(net.members)):
        await net.start(i)
    try:
        yield net
    finally:
        for i in range(len(net.members)):
            await net.stop(i)


def tx_included(ledger: Ledger, tx_hash: bytes) -> int:
    """How many canonical blocks hold ``tx_hash``."""
    head = ledger.head().block_number
    return sum(
        tx.hash == tx_hash
        for n in range(1, head + 1)
        for tx in ledger.block_by_header(ledger.header_by_number(n)).transactions
    )


async def test_four_validators_finalize_and_observer_follows(net4: Net) -> None:
    first = net4.members[0]
    await net4.wait(
        lambda: all(len(m.network.peers()) == 4 for m in net4.running()), 20, "full mesh"
    )
    # The heartbeat is overdue at genesis (an hour old): an empty block 1 comes first.
    await net4.wait(
        lambda: all(m.ledger.head().block_number >= 1 for m in net4.running()), 20, "block 1"
    )
    txs = [cargo_tx(first.ledger, TERMINAL, n) for n in range(3)]
    for tx in txs:
        first.service.submit_raw(tx.encode())
    ledgers = [m.ledger for m in net4.running()]
    await net4.wait(
        lambda: all(all(tx_included(led, tx.hash) == 1 for tx in txs) for led in ledgers),
        30,
        "txs final",
    )
    await net4.wait(lambda: len({led.head().hash for led in ledgers}) == 1, 10, "same head")
    head = first.ledger.head()
    extra = extradata.decode(head.extra_data)
    assert len(extra.seals) >= extradata.quorum(4)
    # Every node persisted a signing record before voting; the observer signed nothing.
    for m in net4.members[:4]:
        assert m.db is not None and m.db[NodeKeys.last_signed]
    observer = net4.members[4]
    assert observer.db is not None
    with pytest.raises(KeyError):
        observer.db[NodeKeys.last_signed]
    assert all(m.engine is not None and m.engine.halted is None for m in net4.members)
    status = first.service.status()
    assert (
        status["validator"] and status["height"] == head.block_number and len(status["peers"]) == 4
    )
    assert net4.members[4].service.status()["validator"] is False


async def test_chain_survives_one_validator_down_and_it_catches_up(net4: Net) -> None:
    await net4.wait(
        lambda: all(m.ledger.head().block_number >= 1 for m in net4.running()), 20, "block 1"
    )
    await net4.stop(3)
    first = net4.members[0]
    for n in range(4):
        first.service.submit_raw(cargo_tx(first.ledger, TERMINAL, n).encode())
        await net4.wait(
            lambda n=n: all(m.ledger.head().block_number >= 2 + n for m in net4.running()),
            30,
            f"block {2 + n}",
        )
    await net4.start(3)
    await net4.wait(
        lambda: len({m.ledger.head().hash for m in net4.running()}) == 1,
        30,
        "restarted node catches up",
    )
