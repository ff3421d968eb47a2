"""A real sealed chain built in-process: blocks executed by py-evm, sealed with dev validator keys.

:class:`ChainBuilder` builds blocks on a fresh :class:`node.ledger.Ledger` for the demo genesis of
four validators and commits each with real commit seals signed by the validators' development
keys (PUBLIC keys: tests and benchmarks only) — the cheapest way to get headers a light client
must check exactly as on a live network, and chains of any size for the replay benchmark. The
validator set changes through on-chain governance (Consortium proposals, votes, execution),
never by hand (:meth:`ChainBuilder.governance`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account

from consensus import extradata
from consensus.validation import proposer_for
from contracts import SYSTEM_ADDRESSES, abi
from contracts.cargo import CargoEventInput, encode_record_call
from devnet.members import demo_members
from node.db import LevelDB
from node.genesis import Genesis, QbftConfig, build_genesis, dev_key
from node.ledger import Ledger


def consortium_call(fn: str, *args: Any) -> bytes:
    """Calldata of a Consortium function."""
    return abi.call_data("Consortium", fn, *args)


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
