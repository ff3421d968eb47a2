"""Helpers for tests that build blocks directly on a Ledger: demo accounts, cargo-event
transactions, and re-sealing a tampered block."""

from __future__ import annotations

import os
from typing import Any

from eth_account import Account
from eth_keys import keys

from consensus import extradata
from contracts import SYSTEM_ADDRESSES
from contracts.cargo import EVENT_TYPES, CargoEventInput, encode_record_call, subject_key
from node.genesis import dev_key
from node.ledger import Ledger

TERMINAL = Account.from_key(dev_key("org:1").to_bytes())
CARRIER = Account.from_key(dev_key("org:3").to_bytes())
OUTSIDER = Account.from_key(b"\x07" * 32)
VALIDATOR = dev_key("validator:0")


def cargo_tx(ledger: Ledger, account: Any, nonce: int, events: int = 3, kind: str = "TERMINAL.DISC") -> Any:
    batch = [
        CargoEventInput(
            subject=subject_key(f"MSCU{nonce:03d}{i:04d}"),
            event_type=EVENT_TYPES[kind],
            classifier=3,
            event_time=1_767_225_600 + i,
            location="HKHKG",
            payload_hash=os.urandom(32),
            payload=os.urandom(40),
        )
        for i in range(events)
    ]
    signed = account.sign_transaction(
        {
            "to": SYSTEM_ADDRESSES["CargoLedger"],
            "data": encode_record_call(batch),
            "gas": 2_000_000,
            "nonce": nonce,
            "chainId": ledger.chain_id,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
        }
    )
    return ledger.decode_transaction(signed.raw_transaction)


def reseal(block: Any, key: keys.PrivateKey = VALIDATOR, **header_changes: Any) -> Any:
    """Change header fields and seal again, so only the changed rule can fail."""
    header = block.header.copy(**header_changes)
    extra = extradata.decode(header.extra_data).with_seals(())
    header = header.copy(extra_data=extra.encode())
    seal = extradata.sign_seal(extradata.commit_digest(header), key)
    return block.copy(header=header.copy(extra_data=extra.with_seals([seal]).encode()))
