"""Helpers of the read-side tests (read model, indexer, tracking): a real node, demo members'
transactions, sealed cargo events, and a table dump to compare read models.

The chain is a real ``portledger node`` process on the repository genesis (one validator,
loopback only); transactions are signed with the demo members' PUBLIC development keys
(``node.genesis.dev_key``), and envelopes are sealed for the demo members' development X25519
keys (``node.genesis.dev_x25519``), as the genesis registers them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak

from contracts import SYSTEM_ADDRESSES, abi
from contracts.cargo import CARGO_EVENT_TOPIC, encode_record_call
from devnet.jsonrpc import rpc_answer
from devnet.members import DEMO_ORGANISATIONS
from gateway.confidential import envelope as confidential
from gateway.events import model as events
from gateway.events.identifiers import container_check_digit
from gateway.readside import store
from node.genesis import dev_key, dev_x25519, dev_x25519_public

#: Chain organisation ids of the demo members (Consortium ids start at 1).
OPERATOR, TERMINAL, TERMINAL2, CARRIER, FORWARDER, AGENT, HAULIER = 1, 2, 3, 4, 5, 6, 7
WAREHOUSE, AIRLINE, CUSTOMS, BANK, AUDITOR, TRADER = 8, 9, 10, 11, 12, 13
assert DEMO_ORGANISATIONS[TRADER - 1][0].startswith("Sino Trading")


def account(chain_org: int) -> Any:
    """The development account of a demo member."""
    return Account.from_key(dev_key(f"org:{chain_org - 1}").to_bytes())


def x25519_private(chain_org: int) -> bytes:
    """A demo member's development X25519 private key (its public half is in genesis)."""
    return dev_x25519(f"org:{chain_org - 1}")


def x25519_public(chain_org: int) -> bytes:
    return dev_x25519_public(f"org:{chain_org - 1}")


def master_secret(chain_org: int) -> bytes:
    """A test master secret for a demo member (its record keys derive from it)."""
    return keccak(f"read-side-test-master:{chain_org}".encode())


def seal(
    event: events.CanonicalEvent,
    owner: int,
    *,
    readers: Sequence[int] = (),
    reference: bool = False,
    key_version: int = 0,
) -> Any:
    """Seal ``event`` as ``owner`` would and return its CargoLedger input."""
    sealed = confidential.seal(
        events.plaintext(event),
        subject=event.subject.key,
        owner_secret=master_secret(owner),
        key_version=key_version,
        readers={r: x25519_public(r) for r in readers},
        reference=event.subject.value if reference else None,
    )
    return events.to_cargo_input(event, sealed.envelope, sealed.payload_hash)


def event(
    kind: str,
    value: str,
    event_type: str,
    at: int,
    *,
    location: str = "HKHKG",
    related: Sequence[tuple[str, str]] = (),
    details: dict[str, Any] | None = None,
    classifier: str = "ACT",
    retracts: int = 0,
) -> events.CanonicalEvent:
    """A canonical event (values already normalised)."""
    return events.CanonicalEvent(
        event_type=event_type,
        classifier=classifier,
        event_time=at,
        subject=events.Reference(kind, value),
        location=location,
        related=tuple(events.Reference(k, v) for k, v in related),
        details=details or {},
        retracts=retracts,
    )


class Chain:
    """Sends the demo members' transactions to a node and waits for their receipts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.chain_id = int(rpc_answer(url, "eth_chainId")["result"], 16)
        self._nonces: dict[int, int] = {}

    def send(self, chain_org: int, to: str, data: bytes, gas: int = 5_000_000) -> dict[str, Any]:
        """Send one transaction and wait (bounded) for a successful receipt."""
        acct = account(chain_org)
        if chain_org not in self._nonces:
            self._nonces[chain_org] = int(
                rpc_answer(self.url, "eth_getTransactionCount", [acct.address, "pending"])["result"], 16
            )
        nonce = self._nonces[chain_org]
        signed = acct.sign_transaction(
            {"to": to, "data": data, "gas": gas, "nonce": nonce, "chainId": self.chain_id,
             "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        )
        answer = rpc_answer(self.url, "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        assert "result" in answer, answer
        self._nonces[chain_org] = nonce + 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            receipt = rpc_answer(self.url, "eth_getTransactionReceipt", [answer["result"]])["result"]
            if receipt:
                assert int(receipt["status"], 16) == 1, receipt
                return receipt
            time.sleep(0.05)
        raise TimeoutError(f"no receipt for {answer['result']}")

    def call(self, chain_org: int, contract: str, fn: str, *args: Any) -> dict[str, Any]:
        """A system-contract call as a transaction."""
        return self.send(chain_org, SYSTEM_ADDRESSES[contract], abi.call_data(contract, fn, *args))

    def record(self, chain_org: int, inputs: Sequence[Any]) -> list[int]:
        """Record cargo events; their event ids."""
        receipt = self.send(chain_org, SYSTEM_ADDRESSES["CargoLedger"],
                            encode_record_call(list(inputs)))
        return [
            int(entry["topics"][3], 16)
            for entry in receipt["logs"]
            if bytes.fromhex(entry["topics"][0][2:]) == CARGO_EVENT_TOPIC
        ]

    def head(self) -> int:
        return int(rpc_answer(self.url, "eth_blockNumber")["result"], 16)


#: Tables whose content must be identical after any way of indexing the same chain.
CHAIN_TABLES = store.CHAIN_TABLES


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every chain-derived row of a read-model file (cursor without its wall-clock column)."""
    conn = sqlite3.connect(str(path))
    try:
        out = {}
        for table in CHAIN_TABLES:
            columns = "block, hash" if table == "cursor" else "*"
            out[table] = sorted(conn.execute(f"SELECT {columns} FROM {table}").fetchall())  # noqa: S608
        return out
    finally:
        conn.close()


def container(owner: str, serial: int) -> str:
    """A valid ISO 6346 container number (``owner`` is 4 letters ending in U)."""
    first = f"{owner}{serial:06d}"
    return first + str(container_check_digit(first))
