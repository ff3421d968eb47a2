"""A real sealed chain for proof tests: four dev validators, two validator-set changes.

Blocks are built on an in-process :class:`node.chain.Ledger` and committed with real commit
seals signed by the validators' development keys — the cheapest way to get headers that a
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
from eth_account import Account
from eth_keys import keys
from eth_utils import function_signature_to_4byte_selector, keccak

from consensus import extradata
from consensus.validation import proposer_for
from contracts import SYSTEM_ADDRESSES, anchors, load_artifact
from contracts.cargo import EVENT_TYPES, CargoEventInput, encode_record_call, subject_key
from node.chain import Ledger
from node.db import LevelDB
from node.genesis import Genesis, QbftConfig, build_genesis, demo_members, dev_key

ADD_VALIDATOR = 4
REMOVE_VALIDATOR = 5
CONTAINER = "MSCU1234565"
_FUNCTIONS = {e["name"]: e for e in load_artifact("Consortium")["abi"] if e["type"] == "function"}


def consortium_call(fn: str, *args: Any) -> bytes:
    types = [p["type"] for p in _FUNCTIONS[fn]["inputs"]]
    return function_signature_to_4byte_selector(f"{fn}({','.join(types)})") + encode(types, args)


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


class ChainBuilder:
    """Builds and seals blocks on a fresh ledger."""

    def __init__(self, root: Path) -> None:
        members, addresses = demo_members(4)
        doc = build_genesis(members, addresses, qbft=QbftConfig(), timelock=0)
        root.mkdir(parents=True, exist_ok=True)
        self.genesis_path = root / "genesis.json"
        self.genesis_path.write_text(json.dumps(doc, indent=2))
        self.genesis = Genesis.from_json(doc)
        self.db = LevelDB(str(root / "chain"), sync=False)
        self.ledger = Ledger(self.db, self.genesis)
        validator_keys = [dev_key(f"validator:{i}") for i in range(4)] + [dev_key("org:4")]
        self.keys = {k.public_key.to_canonical_address(): k for k in validator_keys}
        self.nonces: dict[str, int] = {}

    def account(self, org: int) -> Any:
        return Account.from_key(dev_key(f"org:{org}").to_bytes())

    def tx(self, org: int, to: str, data: bytes, gas: int = 3_000_000) -> Any:
        account = self.account(org)
        nonce = self.nonces.get(account.address, 0)
        self.nonces[account.address] = nonce + 1
        signed = account.sign_transaction(
            {"to": to, "data": data, "gas": gas, "nonce": nonce, "chainId": self.ledger.chain_id,
             "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        )
        return self.ledger.decode_transaction(signed.raw_transaction)

    def seal(self, txs: list[Any], *, sealers: int | None = None, round_: int = 0) -> Any:
        """Build a block of ``txs`` on the head; seal it by ``sealers`` validators (a quorum
        by default) of the parent's list; commit it. Returns the block result."""
        parent = self.ledger.head()
        validators = self.ledger.validators_at(parent)
        proposer = proposer_for(validators, parent.block_number + 1, round_)
        executed = self.ledger.build(
            txs, proposer=proposer, timestamp=parent.timestamp + 1, round_=round_
        )
        assert not executed.result.rejected, executed.result.rejected
        digest = extradata.commit_digest(executed.block.header)
        count = sealers or extradata.quorum(len(validators))
        # Rotate who seals, so that every validator's seal appears somewhere.
        start = parent.block_number % len(validators)
        chosen = [validators[(start + i) % len(validators)] for i in range(count)]
        seals = [extradata.sign_seal(digest, self.keys[v]) for v in chosen]
        return self.ledger.commit(executed, seals=seals)

    def cargo(self, org: int, events: list[CargoEventInput]) -> Any:
        return self.tx(org, SYSTEM_ADDRESSES["CargoLedger"], encode_record_call(events),
                       gas=1_000_000 + 60_000 * len(events))

    def org_id(self, account: bytes) -> int:
        """The organisation id of a member account (Consortium ``memberOf``)."""
        output = self.ledger.call({"to": bytes.fromhex(SYSTEM_ADDRESSES["Consortium"][2:]),
                                   "data": consortium_call("memberOf", account)}, self.ledger.head())
        return int.from_bytes(output[:32], "big")

    def governance(self, kind: int, org: int, account: bytes, voters: list[int]) -> int:
        """Pass and execute a validator proposal; the executing block's number."""
        proposal = int.from_bytes(
            self.ledger.call({"to": bytes.fromhex(SYSTEM_ADDRESSES["Consortium"][2:]),
                              "data": consortium_call("proposal_count")}, self.ledger.head()),
            "big",
        ) + 1
        consortium = SYSTEM_ADDRESSES["Consortium"]
        txs = [self.tx(voters[0], consortium,
                       consortium_call("propose", kind, org, account, 0, "", b"\x00" * 32))]
        txs += [self.tx(v, consortium, consortium_call("vote", proposal)) for v in voters[1:]]
        result = self.seal(txs)
        assert all(r.state_root == b"\x01" for r in result.receipts), "governance reverted"
        result = self.seal([self.tx(voters[0], consortium, consortium_call("execute", proposal))])
        assert result.receipts[0].state_root == b"\x01", "execute reverted"
        return int(result.block.number)


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
    out.changes.append(b.governance(ADD_VALIDATOR, b.org_id(newcomer), newcomer, [0, 1, 2]))
    # Blocks sealed by the five, until the newcomer has sealed one.
    for i in range(3):
        r = b.seal([b.cargo(1, [event(CONTAINER, "TERMINAL.AVPU", t0 + 100 + i)])], sealers=5 if i == 0 else None)
        if i == 0:
            out.after_add = (r.block.transactions[0].hash, 0)

    leaving = dev_key("validator:3").public_key.to_canonical_address()
    out.changes.append(b.governance(REMOVE_VALIDATOR, 0, leaving, [0, 1, 2, 4]))

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
