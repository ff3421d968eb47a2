"""Chain rules: building, importing, and every way a tampered block must be refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_keys import keys

from consensus import extradata
from node.chain import InvalidBlock
from node.db import LevelDB
from node.genesis import Genesis
from node.ledger import Ledger
from tests.support.chain import CARRIER, OUTSIDER, TERMINAL, VALIDATOR, cargo_tx, reseal


@pytest.fixture
def importer(tmp_path: Path, genesis_path: Path) -> Any:
    db = LevelDB(str(tmp_path / "importer"))
    yield Ledger(db, Genesis.load(genesis_path))
    db.close()


def test_built_block_imports_with_identical_roots(ledger: Ledger, importer: Ledger) -> None:
    txs = [cargo_tx(ledger, TERMINAL, n) for n in range(3)] + [
        cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")
    ]
    result = ledger.propose(txs, VALIDATOR)
    assert len(result.block.transactions) == 4 and not result.rejected
    assert all(r.state_root == b"\x01" for r in result.receipts)
    imported = importer.import_block(result.block)
    assert importer.head().hash == ledger.head().hash
    assert [r.gas_used for r in imported.receipts] == [r.gas_used for r in result.receipts]
    assert result.block.header.base_fee_per_gas == 0
    assert result.block.header.difficulty == 0


def test_builder_leaves_out_invalid_and_non_member_transactions(ledger: Ledger) -> None:
    good = cargo_tx(ledger, TERMINAL, 0)
    gap = cargo_tx(ledger, TERMINAL, 5)
    outsider = cargo_tx(ledger, OUTSIDER, 0)
    result = ledger.propose([good, gap, outsider], VALIDATOR)
    assert [tx.hash for tx in result.block.transactions] == [good.hash]
    reasons = {tx.hash: why for tx, why in result.rejected}
    assert "nonce" in reasons[gap.hash].lower()
    assert "not a member" in reasons[outsider.hash]


def test_role_check_holds_on_chain(ledger: Ledger) -> None:
    """A carrier cannot post a terminal discharge: the receipt fails, nothing is logged."""
    result = ledger.propose([cargo_tx(ledger, CARRIER, 0, kind="TERMINAL.DISC")], VALIDATOR)
    assert result.receipts[0].state_root == b"" and result.receipts[0].logs == ()


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"state_root": b"\x01" * 32}, "state_root mismatch"),
        ({"receipt_root": b"\x02" * 32}, "receipt_root mismatch"),
        ({"transaction_root": b"\x03" * 32}, "transaction_root mismatch"),
        ({"gas_used": 1}, "gas_used mismatch"),
        ({"bloom": 1}, "bloom mismatch"),
        ({"base_fee_per_gas": 7}, "base fee"),
        ({"gas_limit": 30_000_000}, "gas limit"),
        ({"difficulty": 1}, "Difficulty"),
    ],
)
def test_tampered_header_is_refused(
    ledger: Ledger, importer: Ledger, change: dict[str, Any], reason: str
) -> None:
    block = ledger.propose([cargo_tx(ledger, TERMINAL, 0)], VALIDATOR).block
    with pytest.raises(InvalidBlock, match=reason):
        importer.import_block(reseal(block, **change))
    assert importer.head().block_number == 0


def test_seal_rules(ledger: Ledger, importer: Ledger) -> None:
    block = ledger.propose([], VALIDATOR).block
    with pytest.raises(InvalidBlock, match="non-validator"):
        importer.import_block(reseal(block, keys.PrivateKey(b"\x09" * 32)))
    unsealed = block.copy(
        header=block.header.copy(
            extra_data=extradata.decode(block.header.extra_data).with_seals(()).encode()
        )
    )
    with pytest.raises(InvalidBlock, match="quorum"):
        importer.import_block(unsealed)
    extra = extradata.decode(block.header.extra_data)
    usurper = keys.PrivateKey(b"\x05" * 32)
    usurped = extradata.ExtraData(
        extra.vanity, (usurper.public_key.to_canonical_address(),), None, 0, ()
    )
    # Seals are checked against the parent's list (Besu), so a self-consistent header listing
    # and sealed by an usurper is a seal from a non-validator.
    with pytest.raises(InvalidBlock, match="non-validator"):
        importer.import_block(reseal(block, usurper, extra_data=usurped.encode()))
    # Sealed correctly, but listing a set that the Consortium state after the block does not
    # hold: found after execution.
    grown = extradata.ExtraData(extra.vanity, extra.validators + (b"\x05" * 20,), None, 0, ())
    with pytest.raises(InvalidBlock, match="validator list differs"):
        importer.import_block(reseal(block, extra_data=grown.encode()))
    importer.import_block(block)
    assert importer.head().hash == block.hash


def test_block_with_invalid_transaction_is_refused(ledger: Ledger, importer: Ledger) -> None:
    block = ledger.propose([cargo_tx(ledger, TERMINAL, 0)], VALIDATOR).block
    swapped = block.copy(transactions=[cargo_tx(ledger, TERMINAL, 3)])
    with pytest.raises(InvalidBlock, match="invalid"):
        importer.import_block(reseal(swapped, transaction_root=block.header.transaction_root))
    outsider = block.copy(transactions=[cargo_tx(ledger, OUTSIDER, 0)])
    with pytest.raises(InvalidBlock, match="not a member"):
        importer.import_block(reseal(outsider))


def test_restart_keeps_the_head(tmp_path: Path, genesis_path: Path) -> None:
    genesis = Genesis.load(genesis_path)
    db = LevelDB(str(tmp_path / "chain"))
    ledger = Ledger(db, genesis)
    for n in range(3):
        ledger.propose([cargo_tx(ledger, TERMINAL, n)], VALIDATOR, timestamp=2_000_000_000 + n)
    head = ledger.head()
    db.close()
    db = LevelDB(str(tmp_path / "chain"))
    again = Ledger(db, genesis)
    assert again.head() == head
    assert again.state_at(head).get_nonce(bytes.fromhex(TERMINAL.address[2:])) == 3
    db.close()


def test_data_directory_refuses_another_genesis(tmp_path: Path, genesis_path: Path) -> None:
    import json

    from node.chain import ChainError

    db = LevelDB(str(tmp_path / "chain"))
    Ledger(db, Genesis.load(genesis_path))
    doc = json.loads(genesis_path.read_text())
    doc["config"]["chainId"] = 99
    doc["timestamp"] = "0x1"
    with pytest.raises(ChainError, match="initialised with genesis"):
        Ledger(db, Genesis.from_json(doc))
    db.close()


def test_builder_defers_what_does_not_fit_and_keeps_sender_order(ledger: Ledger) -> None:
    txs = [cargo_tx(ledger, TERMINAL, n, events=50) for n in range(6)] + [
        cargo_tx(ledger, CARRIER, 0, kind="TRANSPORT.ARRI")
    ]
    result = ledger.propose(txs, VALIDATOR, build_seconds=0.0)  # no time at all: first tx only
    assert len(result.block.transactions) == 1 and not result.rejected
    assert [tx.nonce for tx in result.deferred if tx.sender == txs[0].sender] == [1, 2, 3, 4, 5]
    rest = ledger.propose(list(result.deferred), VALIDATOR, timestamp=ledger.head().timestamp + 1)
    assert len(rest.block.transactions) == 6 and not rest.deferred and not rest.rejected


def test_block_hash_excludes_round_and_seals(ledger: Ledger) -> None:
    """Besu's rule: the block hash covers neither the round nor the seals, so any quorum of
    seals and any re-proposal round give one hash; the commit seal digest keeps the round."""
    block = ledger.propose([], VALIDATOR).block
    extra = extradata.decode(block.header.extra_data)
    other_round = block.header.copy(
        extra_data=extradata.ExtraData(extra.vanity, extra.validators, None, 7, ()).encode()
    )
    unsealed = block.header.copy(extra_data=extra.with_seals(()).encode())
    assert block.header.hash == other_round.hash == unsealed.hash
    assert extradata.commit_digest(other_round) != extradata.commit_digest(unsealed)
    assert ledger.header_by_hash(block.header.hash).extra_data == block.header.extra_data
    child = ledger.propose([], VALIDATOR).block
    assert child.header.parent_hash == block.header.hash


def test_build_writes_nothing_until_commit(ledger: Ledger, importer: Ledger) -> None:
    """A proposal is executed once: build/execute_block stage their trie nodes, and commit
    persists them with the sealed header without executing again."""
    txs = [cargo_tx(ledger, TERMINAL, n) for n in range(2)]
    executed = ledger.build(txs, proposer=VALIDATOR.public_key.to_canonical_address(), timestamp=0)
    state_root = executed.block.header.state_root
    assert executed.writes and state_root in executed.writes
    assert not ledger.db._db.get(state_root)  # staged, not on disk
    assert ledger.head().block_number == 0
    proposal = executed.block
    validated = importer.execute_block(proposal, sealed=False)
    assert not importer.db._db.get(state_root) and importer.head().block_number == 0
    seal = extradata.sign_seal(extradata.commit_digest(proposal.header), VALIDATOR)
    committed = importer.commit(validated, seals=[seal])
    assert importer.head().hash == proposal.header.hash == committed.block.hash
    assert importer.db._db.get(state_root)
    with pytest.raises(InvalidBlock, match="commit seals"):
        ledger.commit(executed, seals=[])
    ledger.commit(executed, seals=[seal])
    assert ledger.head().hash == importer.head().hash


def test_commit_refuses_a_stale_execution(ledger: Ledger) -> None:
    executed = ledger.build([], proposer=VALIDATOR.public_key.to_canonical_address(), timestamp=0)
    ledger.propose([], VALIDATOR)
    seal = extradata.sign_seal(extradata.commit_digest(executed.block.header), VALIDATOR)
    with pytest.raises(InvalidBlock, match="does not extend the head"):
        ledger.commit(executed, seals=[seal])


def test_sub_second_block_period_allows_equal_timestamps_but_never_earlier(
    ledger: Ledger, importer: Ledger
) -> None:
    """With blockPeriodMilliseconds two blocks may share a second; a timestamp before the
    parent's is still refused, by py-evm's header rule."""
    assert (
        ledger.genesis.qbft.block_period_ms is not None and ledger.genesis.qbft.timestamp_step == 0
    )
    first = ledger.propose([], VALIDATOR, timestamp=1_900_000_000)
    second = ledger.propose([], VALIDATOR, timestamp=1_900_000_000)
    assert second.block.header.timestamp == first.block.header.timestamp
    importer.import_block(first.block)
    importer.import_block(second.block)
    earlier = reseal(
        ledger.propose([], VALIDATOR, timestamp=1_900_000_001).block, timestamp=1_899_999_999
    )
    with pytest.raises(InvalidBlock, match="timestamp"):
        importer.import_block(earlier)
