"""A real sealed chain for proof tests: four dev validators, two validator-set changes.

Blocks are built on an in-process :class:`node.ledger.Ledger` by :mod:`devnet.sealedchain` and
committed with real commit seals signed by the validators' development keys — the cheapest way to get headers that a
light client must check exactly as it would on a live network. The validator set changes
through on-chain governance (Consortium proposals, votes, execution), never by hand:

- blocks 1-2: cargo events, sealed by the genesis four;
- governance adds org 4's node (the change block lists five validators);
- cargo events sealed by the five, the newcomer among the sealers;
- governance removes validator 3 (the change block lists four);
- cargo events with an AES-256-GCM encrypted payload, a reverted transaction, an anchored batch
  of reefer readings.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_abi import encode
from eth_keys import keys
from eth_utils import function_signature_to_4byte_selector, keccak

from contracts import SYSTEM_ADDRESSES, ProposalKind, anchors
from contracts.cargo import EVENT_TYPES, CargoEventInput, subject_key
from devnet.sealedchain import ChainBuilder
from node.genesis import dev_key
from node.ledger import Ledger

CONTAINER = "MSCU1234565"


@dataclass
class Sealed:
    """A built chain and the events worth proving."""

    ledger: Ledger
    genesis_path: Path
    #: Private keys by validator address.
    keys: dict[bytes, keys.PrivateKey]
    #: Blocks whose header changed the validator list.
    changes: list[int] = field(default_factory=list)
    #: (tx hash, block-wide log index) of notable events.
    plain_event: tuple[bytes, int] = (b"", 0)
    after_add: tuple[bytes, int] = (b"", 0)
    encrypted: tuple[bytes, int] = (b"", 0)
    compressed: tuple[bytes, int] = (b"", 0)
    anchor: tuple[bytes, int] = (b"", 0)
    reverted_tx: bytes = b""
    #: Disclosure material of the encrypted and compressed events.
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    readings: list[bytes] = field(default_factory=list)


def event(subject: str, kind: str, when: int, payload: bytes = b"", payload_hash: bytes | None = None,
          retracts: int = 0) -> CargoEventInput:
    return CargoEventInput(
        subject=subject_key(subject), event_type=EVENT_TYPES[kind], classifier=3,
        event_time=when, location="HKHKG",
        payload_hash=payload_hash if payload_hash is not None else keccak(payload),
        payload=payload, retracts=retracts,
    )


def log_position(result: Any, tx_index: int, within: int = 0) -> int:
    """Block-wide log index of log ``within`` of transaction ``tx_index``."""
    return sum(len(r.logs) for r in result.receipts[:tx_index]) + within


def build_chain(root: Path) -> Sealed:
    b = ChainBuilder(root)
    t0 = 1_767_225_600
    out = Sealed(b.ledger, b.genesis_path, b.keys)

    r = b.seal([b.cargo(1, [event(CONTAINER, "TERMINAL.DISC", t0, b"plain-1"),
                            event("MSCU7654321", "TERMINAL.DISC", t0)])])
    out.plain_event = (r.block.transactions[0].hash, 0)
    b.seal([b.cargo(2, [event("TGHU0000001", "TERMINAL.LOAD", t0 + 5)])], sealers=4)

    newcomer = dev_key("org:4").public_key.to_canonical_address()
    out.changes.append(b.governance(ProposalKind.ADD_VALIDATOR, b.org_id(newcomer), newcomer, [0, 1, 2]))
    # Blocks sealed by the five, until the newcomer has sealed one.
    for i in range(3):
        r = b.seal([b.cargo(1, [event(CONTAINER, "TERMINAL.AVPU", t0 + 100 + i)])], sealers=5 if i == 0 else None)
        if i == 0:
            out.after_add = (r.block.transactions[0].hash, 0)

    leaving = dev_key("validator:3").public_key.to_canonical_address()
    out.changes.append(b.governance(ProposalKind.REMOVE_VALIDATOR, 0, leaving, [0, 1, 2, 4]))

    # An encrypted payload (AES-256-GCM, ciphertext ‖ tag), and a zlib-compressed one.
    plaintext = json.dumps({"container": CONTAINER, "gate": "OUT", "truck": "HK-1234"}).encode()
    key, nonce = os.urandom(32), os.urandom(12)
    sealed_payload = AESGCM(key).encrypt(nonce, plaintext, None)
    long_text = json.dumps({"container": CONTAINER, "note": "x" * 300}).encode()
    key2, nonce2 = os.urandom(32), os.urandom(12)
    sealed2 = AESGCM(key2).encrypt(nonce2, zlib.compress(long_text), None)
    out.secrets = {
        "gate-out": {"plaintext": plaintext, "key": key, "nonce": nonce},
        "compressed": {"plaintext": long_text, "key": key2, "nonce": nonce2},
    }
    gate_out = b.cargo(1, [
        event(CONTAINER, "TERMINAL.GTOT", t0 + 200, sealed_payload, keccak(plaintext)),
        event(CONTAINER, "TERMINAL.GTOT", t0 + 201, sealed2, keccak(long_text)),
    ])
    reverting = b.cargo(1, [CargoEventInput(subject=subject_key(CONTAINER),
                                            event_type=EVENT_TYPES["TERMINAL.GTOT"],
                                            classifier=9, event_time=t0)])
    r = b.seal([gate_out, reverting])
    assert r.receipts[1].state_root == b"", "the bad classifier should revert"
    out.encrypted = (r.block.transactions[0].hash, log_position(r, 0, 0))
    out.compressed = (r.block.transactions[0].hash, log_position(r, 0, 1))
    out.reverted_tx = r.block.transactions[1].hash

    out.readings = [json.dumps({"container": CONTAINER, "t": t0 + i, "temp": -18.0 + i / 10},
                               sort_keys=True).encode() for i in range(7)]
    hashes = [keccak(x) for x in out.readings]
    anchor_call = function_signature_to_4byte_selector("anchor(uint8,bytes32,uint256,uint256,uint256)")
    r = b.seal([b.tx(1, SYSTEM_ADDRESSES["Anchors"], anchor_call + encode(
        ["uint8", "bytes32", "uint256", "uint256", "uint256"],
        [anchors.KINDS["REEFER"], anchors.merkle_root(hashes), len(hashes), t0, t0 + 6]))])
    assert r.receipts[0].state_root == b"\x01", "anchor reverted"
    out.anchor = (r.block.transactions[0].hash, 0)
    r = b.seal([b.cargo(3, [event("MSCU7654321", "TRANSPORT.DEPA", t0 + 300)])])
    departed = int.from_bytes(r.receipts[0].logs[0].topics[3].to_bytes(32, "big"), "big")
    # The carrier retracts it, in a block committed after a round change.
    b.seal([b.cargo(3, [event("MSCU7654321", "TRANSPORT.DEPA", t0 + 360, retracts=departed)])],
           round_=1)
    return out
