"""The validator set changed at runtime through on-chain governance, over the QBFT runtime.

Four genesis validators vote org 4's node (an observer until then) into the set, then vote
validator 3 out. Every node follows both changes. On every node, with Besu's semantics, each
header N lists the set ``Consortium.getValidators()`` gives at N's post-state and carries
commit seals from a quorum of header N - 1's list: the old set seals the block that executes a
change, the new set every block after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth.exceptions import TransactionNotFound
from eth_account import Account
from eth_utils import to_canonical_address

from consensus import extradata
from contracts import SYSTEM_ADDRESSES, ProposalKind, abi
from node.genesis import dev_key
from node.ledger import Ledger
from tests.support.chain import TERMINAL, cargo_tx
from tests.support.engine_net import Net

CONSORTIUM = to_canonical_address(SYSTEM_ADDRESSES["Consortium"])
#: Upper bound of every single wait, in seconds.
WAIT = 60


def consortium_call(fn: str, *args: Any) -> bytes:
    """Calldata of a Consortium function."""
    return abi.call_data("Consortium", fn, *args)


def consortium_view(ledger: Ledger, fn: str, *args: Any) -> tuple[Any, ...]:
    """A Consortium view at ``ledger``'s head."""
    output = ledger.call({"to": CONSORTIUM, "data": consortium_call(fn, *args)}, ledger.head())
    return abi.decode_output("Consortium", fn, output)


def node_address(net: Net, i: int) -> bytes:
    return bytes(net.members[i].key.public_key.to_canonical_address())


def included(ledger: Ledger, tx_hash: bytes) -> bool:
    try:
        ledger.chaindb.get_transaction_index(tx_hash)
    except TransactionNotFound:
        return False
    return True


def nonce_of(ledger: Ledger, account: Any) -> int:
    return int(ledger.state_at(ledger.head()).get_nonce(to_canonical_address(account.address)))


async def settle(net: Net, tx: Any, what: str) -> Any:
    """Submit ``tx`` to node 0, wait until every running node holds it; its block's header."""
    ledger = net.members[0].ledger
    net.members[0].service.submit_raw(tx.encode())
    await net.wait(lambda: all(included(m.ledger, tx.hash) for m in net.running()), WAIT, what)
    number, index = ledger.chaindb.get_transaction_index(tx.hash)
    header = ledger.header_by_number(number)
    assert ledger.receipts(header)[index].state_root == b"\x01", f"{what}: reverted"
    return header


async def transact(net: Net, org: int, fn: str, *args: Any) -> Any:
    """Call a Consortium function from org ``org``'s dev account; the including header."""
    ledger = net.members[0].ledger
    account = Account.from_key(dev_key(f"org:{org}").to_bytes())
    signed = account.sign_transaction(
        {
            "to": SYSTEM_ADDRESSES["Consortium"],
            "data": consortium_call(fn, *args),
            "gas": 2_000_000,
            "nonce": nonce_of(ledger, account),
            "chainId": ledger.chain_id,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
        }
    )
    tx = ledger.decode_transaction(signed.raw_transaction)
    return await settle(net, tx, f"org {org}: {fn}{args}")


async def pass_proposal(net: Net, orgs: list[int], kind: int, org: int, account: bytes) -> int:
    """Propose (``orgs[0]``), vote (the rest), execute; the number of the executing block."""
    proposer, *voters = orgs
    await transact(net, proposer, "propose", kind, org, account, 0, "", b"\x00" * 32)
    (proposal,) = consortium_view(net.members[0].ledger, "proposal_count")
    for voter in voters:
        await transact(net, voter, "vote", proposal)
    executed = await transact(net, proposer, "execute", proposal)
    return int(executed.block_number)


async def one_more_block(net: Net) -> None:
    """A cargo transaction, so that a block comes now (an idle chain waits 60 s)."""
    ledger = net.members[0].ledger
    await settle(net, cargo_tx(ledger, TERMINAL, nonce_of(ledger, TERMINAL)), "a cargo block")


def sealers(header: Any) -> list[bytes]:
    extra = extradata.decode(header.extra_data)
    digest = extradata.commit_digest(header)
    return [extradata.recover_signer(digest, seal) for seal in extra.seals]


def check_chain(ledger: Ledger, expected: dict[int, tuple[bytes, ...]]) -> None:
    """Besu's semantics, from block 1 to the head: header N lists the set decided at N's
    post-state, which is ``expected`` (first height → set); N is sealed by a quorum of
    distinct members of header N - 1's list and nobody else, and proposed by one of them."""
    parent = ledger.header_by_number(0)
    for number in range(1, ledger.head().block_number + 1):
        header = ledger.header_by_number(number)
        listed = ledger.validators_at(header)
        assert listed == ledger.decided_validators(header), f"block {number}"
        assert listed == expected[max(h for h in expected if h <= number)], f"block {number}"
        sealing = ledger.validators_at(parent)
        signers = sealers(header)
        assert len(set(signers)) == len(signers), f"block {number}: a validator sealed twice"
        assert set(signers) <= set(sealing), f"block {number}: seal from a non-validator"
        assert len(signers) >= extradata.quorum(len(sealing)), f"block {number}: no quorum"
        assert header.coinbase in sealing, f"block {number}: proposer is not a validator"
        parent = header


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with Net(
        tmp_path, validators=4, observer_keys=[dev_key("org:4")], timelock=0
    ).started() as net:
        yield net


async def test_validator_added_then_removed_by_governance(net: Net) -> None:
    await net.wait(lambda: all(len(m.network.peers()) == 4 for m in net.running()), 20, "full mesh")
    await net.wait(
        lambda: all(m.ledger.head().block_number >= 1 for m in net.running()), 20, "block 1"
    )
    ledger = net.members[0].ledger
    genesis_set = ledger.validators_at(ledger.head())
    newcomer, leaving = node_address(net, 4), node_address(net, 3)
    assert newcomer not in genesis_set and leaving in genesis_set
    org4, _roles = consortium_view(ledger, "memberOf", newcomer)
    assert org4 != 0

    # Org 4's node joins: 3 of the 4 validator-running organisations are more than 2/3.
    added_in = await pass_proposal(net, [0, 1, 2], ProposalKind.ADD_VALIDATOR, org4, newcomer)
    five = tuple(sorted((*genesis_set, newcomer)))
    await net.wait(
        lambda: all(m.ledger.validators_at(m.ledger.head()) == five for m in net.running()),
        WAIT,
        "the five-validator set everywhere",
    )
    assert net.members[4].service.status()["validator"] is True

    def newcomer_sealed_and_proposed() -> bool:
        headers = [
            ledger.header_by_number(n) for n in range(added_in + 1, ledger.head().block_number + 1)
        ]
        return any(newcomer in sealers(h) for h in headers) and any(
            h.coinbase == newcomer for h in headers
        )

    deadline = time.monotonic() + WAIT
    while not newcomer_sealed_and_proposed():
        assert time.monotonic() < deadline, (
            f"org 4's node never sealed and proposed: {net.describe()}"
        )
        await one_more_block(net)

    # Validator 3 leaves: now 4 of the 5 validator-running organisations are needed.
    removed_in = await pass_proposal(net, [0, 1, 2, 4], ProposalKind.REMOVE_VALIDATOR, 0, leaving)
    four = tuple(v for v in five if v != leaving)
    await net.wait(
        lambda: all(m.ledger.validators_at(m.ledger.head()) == four for m in net.running()),
        WAIT,
        "the four remaining validators everywhere",
    )
    for _ in range(3):
        await one_more_block(net)
    assert net.members[3].engine is not None and net.members[3].engine.halted is None
    await net.stop(3)
    stopped_at = ledger.head().block_number
    for _ in range(3):
        await one_more_block(net)
    assert ledger.head().block_number >= stopped_at + 3

    running = net.running()
    await net.wait(lambda: len({m.ledger.head().hash for m in running}) == 1, WAIT, "same head")
    # The list changes in the block that executes each proposal; the next block is the first
    # the new set seals.
    expected = {1: genesis_set, added_in: five, removed_in: four}
    for m in running:
        check_chain(m.ledger, expected)
        assert m.engine is not None and m.engine.halted is None
