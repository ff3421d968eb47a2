"""An in-process QBFT network for tests: validators and observers, each a full node
(LevelDB, NodeService, Engine) over real TLS p2p on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from eth_keys import keys

from devnet.members import demo_members
from devnet.ports import free_port
from node.db import LevelDB
from node.engine import Engine
from node.genesis import Genesis, QbftConfig, build_genesis, dev_key
from node.ledger import Ledger
from node.p2p import P2PConfig, Peer, PeerNetwork
from node.service import NodeService


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

    def __init__(
        self,
        root: Path,
        validators: int,
        observers: int = 0,
        *,
        observer_keys: list[keys.PrivateKey] | None = None,
        timelock: int | None = None,
        report_keys: dict[int, keys.PrivateKey] | None = None,
    ) -> None:
        members, addresses = demo_members(validators)
        doc = build_genesis(
            members,
            addresses,
            timestamp=int(time.time()) - 3600,
            qbft=QbftConfig(block_period_seconds=1, request_timeout_seconds=2),
            timelock=timelock,
        )
        self.genesis = Genesis.from_json(doc)
        self.root = root
        #: Node index -> its reporting account (NodeService.evidence_account).
        self.report_keys = report_keys or {}
        keys_ = [dev_key(f"validator:{i}") for i in range(validators)]
        keys_ += observer_keys or [
            keys.PrivateKey(bytes([0x40 + i]) * 32) for i in range(observers)
        ]
        self.members = [Member(k, free_port()) for k in keys_]
        self.peers = [
            Peer(m.key.public_key.to_canonical_address(), "127.0.0.1", m.port) for m in self.members
        ]

    async def start(self, i: int) -> None:
        m = self.members[i]
        m.db = LevelDB(str(self.root / f"node{i}"))
        ledger = Ledger(m.db, self.genesis)
        m.service = NodeService(
            ledger, m.key, produce=False, evidence_account=self.report_keys.get(i)
        )
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

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Net]:
        """Start every node; stop them all on the way out, whatever happened."""
        try:
            for i in range(len(self.members)):
                await self.start(i)
            yield self
        finally:
            for i in range(len(self.members)):
                await self.stop(i)

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
