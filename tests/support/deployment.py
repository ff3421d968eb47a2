"""The system contracts on an in-memory py-evm chain (eth-tester + web3): a test deployment.

The port has ten member organisations; the first four each run one validator, so adding or
removing a validator needs 3 of those 4 organisations and membership changes need 6 of 10.
Every test starts from the same deployed state (a chain snapshot is reverted after it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.providers.eth_tester import EthereumTesterProvider

import contracts
from contracts import build

TIMELOCK = 3600

#: (name, roles) of the test port's organisations; org ids are positions + 1.
ORGS: list[tuple[str, list[str]]] = [
    ("Harbour Operator", ["operator"]),
    ("Kwai Chung Terminal", ["terminal", "warehouse"]),
    ("Ocean Carrier", ["carrier"]),
    ("Hong Kong Customs", ["customs"]),
    ("Pearl Forwarding", ["forwarder", "agent"]),
    ("Delta Forwarding", ["forwarder"]),
    ("Swift Haulage", ["haulier"]),
    ("Sky Cargo Airline", ["airline"]),
    ("Harbour Bank", ["bank"]),
    ("China Single Window", ["customs"]),
]
VALIDATOR_ORGS = 4
N_ACCOUNTS = 40


@dataclass
class Deployment:
    """A deployed test port: web3, the contracts and the organisations' accounts."""

    tester: EthereumTester
    w3: Web3
    contracts: dict[str, Any]
    accounts: dict[int, str]
    """Each organisation's first signing account, by org id."""
    validators: list[str]
    """The genesis validators; validator i is run by org i + 1."""
    spare: list[str]
    """Funded accounts that belong to no organisation."""
    org_ids: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["contracts"][name]
        except KeyError:
            raise AttributeError(name) from None

    def org(self, name: str) -> str:
        """Return the first account of the organisation named ``name``."""
        return self.accounts[self.org_ids[name]]

    def transact(self, fn: Any, sender: str) -> Any:
        """Send a contract call as ``sender`` and return its receipt."""
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1
        return receipt

    def send(self, to: str, data: bytes, sender: str) -> Any:
        """Send raw calldata as ``sender`` and return its receipt."""
        tx_hash = self.w3.eth.send_transaction({"from": sender, "to": to, "data": data})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1
        return receipt

    def events(self, receipt: Any, contract: str, event: str) -> list[Any]:
        """Decode the ``event`` logs of ``contract`` in a receipt."""
        c = self.contracts[contract]
        return [
            e.args
            for e in getattr(c.events, event)().process_receipt(receipt, errors=_DISCARD)
            if e.address == c.address
        ]

    def view(self, contract: str, fn: str, *args: Any) -> Any:
        """Call a view function straight through eth-tester (about 3x faster than web3)."""
        c = self.contracts[contract]
        data = c.encode_abi(fn, args)
        out = self.tester.call(
            {"from": self.accounts[1], "to": c.address, "data": data, "gas": 10_000_000}, "latest"
        )
        entry = next(e for e in c.abi if e.get("name") == fn and e["type"] == "function")
        values = _checksummed(
            abi_decode([_abi_type(o) for o in entry["outputs"]], bytes.fromhex(out[2:]))
        )
        return values[0] if len(values) == 1 else list(values)

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        """Move the chain's clock forward."""
        self.tester.time_travel(self.now() + seconds)


def _abi_type(entry: dict[str, Any]) -> str:
    """The ABI type string of an ABI input/output entry (tuples spelled out)."""
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in entry["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _checksummed(value: Any) -> Any:
    """Decoded ABI values with addresses checksummed, as web3 returns them."""
    if isinstance(value, (tuple, list)):
        return [_checksummed(v) for v in value]
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value


try:
    from web3.logs import DISCARD as _DISCARD
except ImportError:  # pragma: no cover
    _DISCARD = None


@contextmanager
def reverts(reason: str) -> Iterator[None]:
    """Expect a call to revert with exactly this reason string."""
    with pytest.raises((TransactionFailed, ContractLogicError)) as info:
        yield
    message = str(info.value)
    assert re.search(re.escape(reason) + r"(?!\w)", message), f"{message!r} lacks {reason!r}"


@contextmanager
def reverts_without_reason() -> Iterator[None]:
    """Expect a call to revert with no reason string (a bounds check of the compiler)."""
    with pytest.raises((TransactionFailed, ContractLogicError)) as info:
        yield
    assert "b''" in str(info.value) or str(info.value).rstrip().endswith("reverted"), str(
        info.value
    )


_ARTIFACTS: dict[str, dict[str, Any]] = {}
_PORT: Deployment | None = None
_GENESIS_SNAPSHOT: Any = None


def artifact(name: str) -> dict[str, Any]:
    """Compile a contract once per test session (never read stale artifacts)."""
    if name not in _ARTIFACTS:
        _ARTIFACTS[name] = build.build_artifact(name)
    return _ARTIFACTS[name]


def _deploy(w3: Web3, name: str, args: list[Any], sender: str) -> Any:
    a = artifact(name)
    factory = w3.eth.contract(abi=a["abi"], bytecode=a["bytecode"])
    receipt = w3.eth.get_transaction_receipt(factory.constructor(*args).transact({"from": sender}))
    return w3.eth.contract(address=receipt.contractAddress, abi=a["abi"])


def genesis_members(accounts: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The test port's genesis members and validators, shaped as in ``genesis.json``."""
    validators = accounts[len(ORGS) : len(ORGS) + VALIDATOR_ORGS]
    members = []
    for i, (name, roles) in enumerate(ORGS):
        own = [accounts[i]] + ([validators[i]] if i < VALIDATOR_ORGS else [])
        members.append(
            {"name": name, "roles": roles, "accounts": own, "encryptionKey": "0x" + f"{i + 1:064x}"}
        )
    return members, validators


def deployed_port() -> Deployment:
    """The session's port, deployed on first use; reset it with :func:`reset_port`."""
    global _PORT, _GENESIS_SNAPSHOT
    if _PORT is None:
        state = PyEVMBackend.generate_genesis_state(num_accounts=N_ACCOUNTS)
        tester = EthereumTester(PyEVMBackend(genesis_state=state))
        w3 = Web3(EthereumTesterProvider(tester))
        accounts = list(w3.eth.accounts)
        deployer = accounts[-1]
        members, validators = genesis_members(accounts)
        deployed: dict[str, Any] = {}
        addresses: dict[str, str] = {}
        for name in contracts.DEPLOY_ORDER:
            args = contracts.constructor_args(
                name, members, validators, timelock=TIMELOCK, addresses=addresses
            )
            deployed[name] = _deploy(w3, name, args, deployer)
            addresses[name] = deployed[name].address
        _PORT = Deployment(
            tester=tester,
            w3=w3,
            contracts=deployed,
            accounts={i + 1: accounts[i] for i in range(len(ORGS))},
            validators=validators,
            spare=accounts[len(ORGS) + VALIDATOR_ORGS : -1],
            org_ids={name: i + 1 for i, (name, _) in enumerate(ORGS)},
        )
        _GENESIS_SNAPSHOT = tester.take_snapshot()
    return _PORT


def reset_port() -> Deployment:
    """Return the port reverted to its freshly deployed state."""
    port = deployed_port()
    port.tester.revert_to_snapshot(_GENESIS_SNAPSHOT)
    return port
