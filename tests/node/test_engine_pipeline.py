"""The engine's pipelined build: the next proposer builds block N + 1 on N's uncommitted
execution, proposes it only when N commits as the block it built on, and discards it
otherwise; nothing is signed or sent for a height whose parent is not committed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import rlp

from consensus import extradata, inputs, qbft
from consensus.messages import Block, Proposal, ProposalPayload, Signed
from devnet.ports import free_port
from node.chain import InvalidBlock
from node.db import LevelDB
from node.engine import Engine
from node.genesis import Genesis
from node.ledger import Executed, Ledger
from node.p2p import PeerNetwork
from node.service import NodeService
from tests.support.chain import CARRIER, TERMINAL, VALIDATOR, cargo_tx
from tests.support.engine_net import Net

PROPOSER = VALIDATOR.public_key.to_canonical_address()


@pytest.fixture
def engine(tmp_path: Path, genesis_path: Path) -> Iterator[Engine]:
    """The repo genesis' one validator as a stand-alone engine (its core not running)."""
    db = LevelDB(str(tmp_path / "chain"))
    service = NodeService(Ledger(db, Genesis.load(genesis_path)), VALIDATOR, produce=False)
    network = PeerNetwork(VALIDATOR, ("127.0.0.1", free_port()), [])
    yield Engine(service, VALIDATOR, network)
    service.stop()
    db.close()


def seal(executed: Executed) -> list[bytes]:
    return [extradata.sign_seal(extradata.commit_digest(executed.block.header), VALIDATOR)]


async def speculate_on_block_one(engine: Engine) -> tuple[Executed, list[Any]]:
    """Block 1 (TERMINAL's nonce 0) executed, not committed; the pool holds TERMINAL's nonces
    0-2 and CARRIER's 0; the engine builds block 2 ahead on block 1."""
    ledger = engine.ledger
    pooled = [cargo_tx(ledger, TERMINAL, n) for n in range(3)]
    pooled.append(cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI"))
    for tx in pooled:
        engine.service.submit_raw(tx.encode())
    first = await engine._in_worker(
        ledger.build, pooled[:1], proposer=PROPOSER, timestamp=int(time.time())
    )
    engine._speculate(first)
    assert engine.speculation["built"] == 1 and engine._speculation is not None
    assert engine._speculation.height == 2
    return first, pooled


async def test_speculative_block_is_proposed_when_its_parent_commits(engine: Engine) -> None:
    ledger = engine.ledger
    first, pooled = await speculate_on_block_one(engine)
    assert engine._speculation is not None
    ahead = await engine._speculation.task
    assert ahead is not None and ledger.head().block_number == 0  # built, nothing written
    # Block 1's transaction is left out; the sender's next nonces follow it.
    assert {tx.hash for tx in ahead.block.transactions} == {tx.hash for tx in pooled[1:]}
    assert not ahead.result.rejected
    ledger.commit(first, seals=seal(first))
    await engine._build(2, 0)
    event = await asyncio.wait_for(engine.events.get(), 5)
    assert isinstance(event, inputs.BlockProposalReady) and event.height == 2
    assert event.block.digest == ahead.block.hash
    assert engine.speculation["used"] == 1 and not engine.speculation["discarded"]
    assert ledger.head().block_number == 1  # proposed, not committed: that is the core's call


async def test_speculative_block_is_discarded_when_another_block_commits(engine: Engine) -> None:
    ledger = engine.ledger
    first, pooled = await speculate_on_block_one(engine)
    assert engine._speculation is not None
    await engine._speculation.task
    # A different block 1 commits (CARRIER's transaction instead of TERMINAL's).
    other = await engine._in_worker(
        ledger.build, pooled[3:], proposer=PROPOSER, timestamp=int(time.time())
    )
    assert other.block.hash != first.block.hash
    ledger.commit(other, seals=seal(other))
    await engine._build(2, 0)
    event = await asyncio.wait_for(engine.events.get(), 5)
    assert isinstance(event, inputs.BlockProposalReady) and event.height == 2
    built = engine._decode_block(event.block.payload)
    assert built.header.parent_hash == other.block.hash  # built anew on the committed block
    assert {tx.hash for tx in built.transactions} == {tx.hash for tx in pooled[:3]}
    assert engine.speculation["discarded"] == 1 and not engine.speculation["used"]


def proposal_of(executed: Executed) -> Proposal:
    """A PROPOSAL carrying ``executed``'s block (signature not checked on this path)."""
    block = executed.block
    payload = ProposalPayload(block.number, 0, block.hash)
    return Proposal(Signed(payload, PROPOSER, b"\x00" * 65),
                    Block(block.hash, bytes(rlp.encode(block))))  # fmt: skip


async def test_next_proposal_executes_ahead_but_is_valid_only_on_its_committed_parent(
    engine: Engine,
) -> None:
    """A proposal for the height after next executes on this node's execution of its parent
    at once; its verdict is "valid" only once exactly that parent commits."""
    ledger = engine.ledger
    now = int(time.time())
    first = await engine._in_worker(
        ledger.build, [cargo_tx(ledger, TERMINAL, 0)], proposer=PROPOSER, timestamp=now
    )
    engine._remember(first)  # this node executed the proposal of height 1
    child = ledger.build([cargo_tx(ledger, TERMINAL, 1)], proposer=PROPOSER, timestamp=now,
                         on=first)  # fmt: skip
    proposal = proposal_of(child)
    engine._execute_ahead(proposal)
    running = engine._executing.get(child.block.hash)
    assert running is not None and engine.pre_executions == 1
    await running
    await asyncio.sleep(0)  # _finish_ahead
    assert engine.pre_executions == 0 and child.block.hash in engine._executed
    assert engine.speculation["ahead"] == 1
    assert ledger.head().block_number == 0
    assert engine._executed_child(child.block.hash, 2) is None  # its parent is not committed
    ledger.commit(first, seals=seal(first))
    assert engine._executed_child(child.block.hash, 2) is not None
    committed = ledger.commit(engine._executed[child.block.hash], seals=seal(child))
    assert committed.block.hash == ledger.head().hash == child.block.hash


async def test_proposal_executed_ahead_is_invalid_when_another_parent_commits(
    engine: Engine,
) -> None:
    ledger = engine.ledger
    now = int(time.time())
    first = await engine._in_worker(
        ledger.build, [cargo_tx(ledger, TERMINAL, 0)], proposer=PROPOSER, timestamp=now
    )
    other = await engine._in_worker(
        ledger.build, [cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")],
        proposer=PROPOSER, timestamp=now,
    )  # fmt: skip
    engine._remember(first)
    child = ledger.build([cargo_tx(ledger, TERMINAL, 1)], proposer=PROPOSER, timestamp=now,
                         on=first)  # fmt: skip
    engine._execute_ahead(proposal_of(child))
    running = engine._executing.get(child.block.hash)
    assert running is not None
    await running
    await asyncio.sleep(0)  # _finish_ahead
    ledger.commit(other, seals=seal(other))  # a different block 1 is decided
    assert engine._executed_child(child.block.hash, 2) is None
    with pytest.raises(InvalidBlock, match="does not extend the head"):
        ledger.commit(engine._executed[child.block.hash], seals=seal(child))
    # Nothing is executed ahead on a parent this node has not executed.
    unknown = ledger.build([], proposer=PROPOSER, timestamp=now)
    engine._execute_ahead(proposal_of(ledger.build([], proposer=PROPOSER, timestamp=now,
                                                   on=unknown)))  # fmt: skip
    assert not engine._executing


async def test_no_speculation_for_a_height_this_node_does_not_propose(
    tmp_path: Path,
) -> None:
    net = Net(tmp_path, validators=4)
    await net.start(0)
    try:
        engine = net.members[0].engine
        assert engine is not None
        ledger = engine.ledger
        validators = ledger.validators_at(ledger.head())
        me = validators.index(engine.address)
        # Block 1's child is height 2, proposed by validators[2 % 4] in round 0.
        engine.service.submit_raw(cargo_tx(ledger, TERMINAL, 1).encode())
        first = await engine._in_worker(
            ledger.build, [cargo_tx(ledger, TERMINAL, 0)], proposer=engine.address,
            timestamp=int(time.time()),
        )  # fmt: skip
        engine._speculate(first)
        assert engine.speculation["built"] == (1 if me == 2 else 0)
    finally:
        await net.stop(0)


@pytest.fixture
async def net4(tmp_path: Path) -> AsyncIterator[Net]:
    async with Net(tmp_path, validators=4).started() as net:
        yield net


async def test_four_validators_pipeline_and_sign_only_on_committed_parents(
    net4: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a backlog (blocks of at most 2 transactions here) the next proposers build ahead
    and their blocks are proposed; every consensus message a validator sends is for the height
    after its committed head, and every proposal it sends extends that head."""
    monkeypatch.setattr("node.service.MAX_BLOCK_TRANSACTIONS", 2)
    violations: list[str] = []
    for m in net4.members:
        engine = m.engine
        assert engine is not None

        def guard(engine: Engine = engine, perform: Any = engine._perform) -> Any:
            async def checked(actions: Any) -> None:
                head = engine.ledger.head()
                for action in actions:
                    if not isinstance(action, qbft.Broadcast):
                        continue
                    message = action.message
                    if message.height != head.block_number + 1:
                        violations.append(f"height {message.height} on head {head.block_number}")
                    if isinstance(message, Proposal):
                        block = engine._decode_block(message.block.payload)
                        if block.header.parent_hash != head.hash:
                            violations.append(f"proposal #{block.number} not on the head")
                await perform(actions)

            return checked

        engine._perform = guard()  # type: ignore[method-assign]
    first = net4.members[0]
    await net4.wait(lambda: all(len(m.network.peers()) == 3 for m in net4.running()
                                if m.network), 20, "full mesh")  # fmt: skip
    sent = []
    for n in range(16):
        tx = cargo_tx(first.ledger, TERMINAL, n, events=20)
        first.service.submit_raw(tx.encode())
        sent.append(tx.hash)
    ledgers = [m.ledger for m in net4.running()]

    await net4.wait(
        lambda: all(_included(led, h) for led in ledgers for h in sent), 60,
        "every transaction final on every validator",
    )  # fmt: skip
    await net4.wait(lambda: len({led.head().hash for led in ledgers}) == 1, 10, "same head")
    assert not violations, violations
    used = sum(m.engine.speculation["used"] for m in net4.members if m.engine)
    assert used >= 3, [dict(m.engine.speculation) for m in net4.members if m.engine]
    assert all(m.engine is not None and m.engine.halted is None for m in net4.members)


def _included(ledger: Ledger, tx_hash: bytes) -> bool:
    try:
        ledger.chaindb.get_transaction_index(tx_hash)
    except Exception:  # py-evm's TransactionNotFound
        return False
    return True


async def test_a_proposal_reuses_the_pool_transactions_and_their_senders(engine: Engine) -> None:
    """A decoded proposal carries the pool's objects for the transactions the pool holds
    (senders recovered once, at admission); the block and its execution are unchanged."""
    ledger = engine.ledger
    pooled = cargo_tx(ledger, TERMINAL, 0)
    engine.service.submit_raw(pooled.encode())
    unknown = cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")
    built = ledger.build([engine.service.pool.get(pooled.hash), unknown], proposer=PROPOSER,
                         timestamp=int(time.time()))  # fmt: skip
    payload = bytes(rlp.encode(built.block))
    block = engine._decode_block(payload)
    assert block.transactions[0] is engine.service.pool.get(pooled.hash)
    assert block.transactions[1] is not unknown and block.transactions[1].hash == unknown.hash
    assert block.header.hash == built.block.hash and bytes(rlp.encode(block)) == payload
    executed = ledger.execute_block(block, sealed=False)
    assert executed.block.header.state_root == built.block.header.state_root
