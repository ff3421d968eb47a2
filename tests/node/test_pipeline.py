"""Pipelining on the Ledger: a block built or executed on its parent's execution before that
parent is committed (``Ledger.build(on=...)``, ``Ledger.execute_block(on=...)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_canonical_address

from consensus import extradata
from node.chain import InvalidBlock
from node.db import LevelDB
from node.genesis import Genesis
from node.ledger import Executed, Ledger
from tests.support.chain import CARRIER, TERMINAL, VALIDATOR, cargo_tx

PROPOSER = VALIDATOR.public_key.to_canonical_address()


@pytest.fixture
def other(tmp_path: Path, genesis_path: Path) -> Any:
    """A second node's ledger on the same genesis (the other validators' view)."""
    db = LevelDB(str(tmp_path / "other"))
    yield Ledger(db, Genesis.load(genesis_path))
    db.close()


def seal(executed: Executed) -> list[bytes]:
    return [extradata.sign_seal(extradata.commit_digest(executed.block.header), VALIDATOR)]


def test_child_built_on_an_uncommitted_block_commits_after_it(
    ledger: Ledger, other: Ledger
) -> None:
    """N+1 built on N's execution is the block a build after N's commit gives (same roots),
    writes nothing of N, and commits once N has: N keeps its sealed header."""
    first = ledger.build([cargo_tx(ledger, TERMINAL, 0)], proposer=PROPOSER, timestamp=0)
    txs = [cargo_tx(ledger, TERMINAL, 1), cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")]
    child = ledger.build(txs, proposer=PROPOSER, timestamp=0, on=first)
    assert not child.result.rejected and len(child.block.transactions) == 2
    assert child.block.header.parent_hash == first.block.hash
    assert child.block.header.block_number == 1 + first.block.number
    assert first.block.hash not in child.writes  # the parent's header is not the child's write
    assert not set(child.writes.items()) & set(first.writes.items())
    assert ledger.head().block_number == 0 and not ledger.db._db.get(first.block.hash)
    with pytest.raises(InvalidBlock, match="does not extend the head"):
        ledger.commit(child, seals=seal(child))  # never before its parent
    committed = ledger.commit(first, seals=seal(first))
    ledger.commit(child, seals=seal(child))
    assert ledger.head().hash == child.block.hash
    stored = ledger.header_by_hash(first.block.hash)
    assert extradata.decode(stored.extra_data).seals == tuple(seal(first))
    assert stored == committed.block.header
    # The same transactions built the ordinary way on the other node after N: same block.
    other.commit(other.execute_block(first.block, sealed=False), seals=seal(first))
    again = other.build(txs, proposer=PROPOSER, timestamp=child.block.header.timestamp)
    assert again.block.hash == child.block.hash
    assert again.block.header.state_root == child.block.header.state_root
    # And the other node imports the pipelined block with full validation.
    other.commit(other.execute_block(child.block, sealed=False), seals=seal(child))
    assert other.head().hash == ledger.head().hash


def test_validator_executes_the_next_proposal_on_the_uncommitted_one(
    ledger: Ledger, other: Ledger
) -> None:
    first = ledger.build([cargo_tx(ledger, TERMINAL, 0)], proposer=PROPOSER, timestamp=0)
    child = ledger.build([cargo_tx(ledger, TERMINAL, 1)], proposer=PROPOSER, timestamp=0, on=first)
    mine = other.execute_block(first.block, sealed=False)
    executed = other.execute_block(child.block, sealed=False, on=mine)
    assert executed.block.hash == child.block.hash and other.head().block_number == 0
    other.commit(mine, seals=seal(first))
    other.commit(executed, seals=seal(child))
    assert other.head().hash == child.block.hash
    # Without the parent's execution the same proposal is not the head's child.
    with pytest.raises(InvalidBlock, match="parent not known|does not extend"):
        ledger.execute_block(child.block, sealed=False)


def test_speculative_child_is_refused_when_another_block_is_committed(ledger: Ledger) -> None:
    """The speculation is discarded when a different block N commits: it extends N's hash."""
    first = ledger.build([cargo_tx(ledger, TERMINAL, 0)], proposer=PROPOSER, timestamp=0)
    child = ledger.build([cargo_tx(ledger, TERMINAL, 1)], proposer=PROPOSER, timestamp=0, on=first)
    competing = ledger.build([cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")],
                             proposer=PROPOSER, timestamp=0)  # fmt: skip
    ledger.commit(competing, seals=seal(competing))
    with pytest.raises(InvalidBlock, match="does not extend the head"):
        ledger.commit(child, seals=seal(child))
    with pytest.raises(InvalidBlock, match="not the head's child"):
        ledger.build([], proposer=PROPOSER, timestamp=0, on=first)
    # Nothing of the speculation reached the chain: TERMINAL's nonce 1 is not used.
    assert ledger.state_at(ledger.head()).get_nonce(to_canonical_address(TERMINAL.address)) == 0
