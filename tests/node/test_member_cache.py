"""Member checks and the decided validator set are cached by the Consortium's own version
(storage root and code hash), not by state root: a block that does not touch the Consortium
costs no EVM call for them, one that does gets fresh answers."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_canonical_address

from contracts import SYSTEM_ADDRESSES, ProposalKind, abi
from node.genesis import dev_key
from node.ledger import Ledger
from tests.support.chain import OUTSIDER, TERMINAL, VALIDATOR, cargo_tx


def governance_tx(ledger: Ledger, nonce: int) -> Any:
    """org:1 proposes new roles for itself: a write to the Consortium's storage."""
    account = Account.from_key(dev_key("org:1").to_bytes())
    data = abi.call_data(
        "Consortium", "propose", ProposalKind.SET_ROLES, 1, b"\x00" * 20, 1, "", b"\x00" * 32
    )
    signed = account.sign_transaction({
        "to": SYSTEM_ADDRESSES["Consortium"], "data": data, "gas": 2_000_000, "nonce": nonce,
        "chainId": ledger.chain_id, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0,
    })  # fmt: skip
    return ledger.decode_transaction(signed.raw_transaction)


def test_answers_survive_blocks_that_leave_the_consortium_alone(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real_call = Ledger.call

    def counting(self: Ledger, call: dict[str, Any], header: Any, **kw: Any) -> bytes:
        calls.append(call["data"][:4])
        return real_call(self, call, header, **kw)

    monkeypatch.setattr(Ledger, "call", counting)
    terminal = to_canonical_address(TERMINAL.address)
    outsider = to_canonical_address(OUTSIDER.address)
    genesis = ledger.head()
    assert ledger.is_member_account(terminal, genesis)
    assert not ledger.is_member_account(outsider, genesis)
    first = ledger.propose([cargo_tx(ledger, TERMINAL, n) for n in range(2)], VALIDATOR)
    assert first.block.header.state_root != genesis.state_root
    assert ledger.consortium_version(first.block.header) == ledger.consortium_version(genesis)
    before = len(calls)
    assert ledger.is_member_account(terminal, first.block.header)
    assert not ledger.is_member_account(outsider, first.block.header)
    assert ledger.decided_validators(first.block.header) == ledger.decided_validators(genesis)
    second = ledger.propose([cargo_tx(ledger, TERMINAL, 2)], VALIDATOR)
    assert ledger.is_member_account(terminal, second.block.header)
    assert len(calls) == before  # no EVM call: same Consortium version
    # A governance transaction writes the Consortium's storage: a new version, fresh calls.
    third = ledger.propose([governance_tx(ledger, 3)], VALIDATOR)
    assert third.receipts[0].state_root == b"\x01"
    version = ledger.consortium_version(third.block.header)
    assert version and version != ledger.consortium_version(second.block.header)
    assert ledger.is_member_account(terminal, third.block.header)
    assert len(calls) > before
    # The cached answers are what a call gives at that state.
    for header in (genesis, first.block.header, third.block.header):
        for address, member in ((terminal, True), (outsider, False)):
            output = real_call(ledger, {
                "to": ledger.consortium,
                "data": abi.call_data("Consortium", "isMemberAccount", address),
            }, header)  # fmt: skip
            assert (int.from_bytes(output[-32:], "big") == 1) is member
