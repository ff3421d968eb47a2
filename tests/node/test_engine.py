"""The QBFT runtime in one process: validators and an observer over real TLS p2p on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from consensus import extradata
from node.db import NodeKeys
from node.ledger import Ledger
from tests.support.chain import TERMINAL, cargo_tx
from tests.support.engine_net import Net


@pytest.fixture
async def net4(tmp_path: Path) -> AsyncIterator[Net]:
    async with Net(tmp_path, validators=4, observers=1).started() as net:
        yield net


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


async def test_bad_consensus_messages_cost_the_sending_peer(net4: Net) -> None:
    """Malformed RLP, a message signed by a non-validator and an invalid proposal are refused
    and penalise the peer that sent them; the network keeps finalizing."""
    from consensus.messages import (
        Prepare,
        PreparePayload,
        RoundChange,
        RoundChangePayload,
        Signed,
        encode_message,
    )
    from node.p2p_frames import Code

    await net4.wait(
        lambda: all(len(m.network.peers()) == 4 for m in net4.running()), 20, "full mesh"
    )
    observer, target = net4.members[4], net4.members[0]
    observer_address = observer.key.public_key.to_canonical_address()
    assert target.network.score(observer_address) == 0
    target_address = target.key.public_key.to_canonical_address()

    async def send_until(data: bytes, penalised: Callable[[], bool], what: str) -> None:
        # A message sent on a duplicate connection in the instant before it is closed is lost
        # (node/p2p.py): send again (bounded) until the penalty shows.
        for _ in range(15):
            observer.network.send(target_address, Code.CONSENSUS, data)
            with contextlib.suppress(AssertionError):
                await net4.wait(penalised, 2, what)
                return
        await net4.wait(penalised, 0, what)

    await send_until(b"\x13\xff\x00garbage",
                     lambda: target.network.score(observer_address) > 0, "penalty for malformed")
    first = target.network.score(observer_address)
    payload = PreparePayload(1, 0, b"\x22" * 32)
    forged = Prepare(
        Signed(payload, observer_address, extradata.sign_seal(payload.signing_digest, observer.key))
    )
    await send_until(encode_message(forged), lambda: target.network.score(observer_address) > first,
                     "penalty for non-validator")
    # A justification longer than any validator set needs (here 11 prepares, for a height far
    # ahead) is refused before its signatures are recovered, and costs the peer.
    second = target.network.score(observer_address)
    far = 10**6
    digest = b"\x33" * 32

    def signed(p: Any) -> Signed[Any]:
        return Signed(p, observer_address, extradata.sign_seal(p.signing_digest, observer.key))

    oversize = RoundChange(signed(RoundChangePayload(far, 1, 0, digest)), None,
                           tuple(signed(PreparePayload(far, 0, digest)) for _ in range(11)))
    await send_until(encode_message(oversize),
                     lambda: target.network.score(observer_address) > second,
                     "penalty for an oversize justification")
    # Still alive and finalizing.
    await net4.wait(
        lambda: all(m.ledger.head().block_number >= 1 for m in net4.running()), 20, "block 1"
    )
    assert target.engine is not None and target.engine.halted is None
