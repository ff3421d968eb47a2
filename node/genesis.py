"""``genesis.json``: reading it, and building it from the network's members and ``contracts/``.

The file follows Besu's genesis layout (``config.chainId``, ``gasLimit``, ``extraData``,
``alloc`` with ``code``/``storage``) so the same network can be started by a Besu QBFT node,
plus a ``config.qbft`` block (block period, request timeout, empty-block heartbeat) and a
``portledger`` section naming the member organisations, validators and system contracts and the
chain format (``chainFormat``, :data:`consensus.extradata.CHAIN_FORMAT_VERSION`; a genesis of
another format is refused with what the operator must do).

The system contracts are *pre-deployed*: :func:`build_genesis` runs each contract's
constructor in a throw-away py-evm state directly at its fixed address (so what lands in
``alloc`` is exactly the runtime code and storage the constructor leaves), in
``contracts.DEPLOY_ORDER``. ``scripts/make_genesis.py`` regenerates the file; a test rebuilds it
in memory and fails when it and the Vyper sources disagree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth.chains.base import Chain
from eth.consensus.context import ConsensusContext
from eth.db.atomic import AtomicDB
from eth.rlp.headers import BlockHeader
from eth.vm.chain_context import ChainContext
from eth.vm.forks.prague import PragueVM
from eth.vm.message import Message
from eth_abi.abi import encode
from eth_keys.datatypes import PrivateKey
from eth_typing import Address, BlockNumber
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak

import contracts
from consensus import extradata

#: Besu's QBFT ``mixHash`` ("ctical byzantine fault tolerance"); every block carries it.
BFT_MIX_HASH = bytes.fromhex("63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365")
DEFAULT_CHAIN_ID = 1_702_026
DEFAULT_GAS_LIMIT = 60_000_000
#: 2026-01-01T00:00:00Z — fixed so the genesis file is reproducible.
DEFAULT_TIMESTAMP = 1_767_225_600
GENESIS_DEPLOYER = to_canonical_address("0x000000000000000000000000000000000000dE71")


class GenesisError(ValueError):
    """genesis.json is malformed or inconsistent."""


#: What an operator with a chain of an older format does (the messages that refuse one say it).
UPGRADE_ADVICE = (
    "a chain of an older format cannot be converted in place (its block hashes and commit "
    "seals cover the old encoding): start the network again from a genesis of chain format "
    f"v{extradata.CHAIN_FORMAT_VERSION} (scripts/make_genesis.py, or the network's new "
    "genesis.json), move the old data directory away and run `portledger init` with it "
    "(docs/chain-format.md, 'Format versions')"
)


def _hex_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    raise GenesisError(f"expected a number, got {value!r}")


def _hex_bytes(value: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise GenesisError(f"expected 0x-prefixed hex, got {value!r}")
    return bytes.fromhex(value[2:])


@dataclass(frozen=True)
class QbftConfig:
    """QBFT timing parameters (Besu's names)."""

    #: Minimum seconds between blocks (header timestamps rise by at least this much), unless
    #: ``block_period_ms`` is set.
    block_period_seconds: int = 1
    #: Round timeout of round 0, in seconds (doubles per round, capped).
    request_timeout_seconds: int = 4
    #: With no transactions waiting, produce an empty block only this often (heartbeat).
    empty_block_period_seconds: int = 60
    #: Besu's epoch length (votes reset); kept for compatibility.
    epoch_length: int = 30_000
    #: Sub-second block period (Besu's experimental ``xblockperiodmilliseconds``): a proposer
    #: waits this long after its parent was added, and header timestamps (whole seconds) need
    #: only not decrease. ``None``: whole seconds, ``block_period_seconds``.
    block_period_ms: int | None = 250

    @property
    def period(self) -> float:
        """Seconds a proposer waits after the parent (wall clock)."""
        if self.block_period_ms is not None:
            return self.block_period_ms / 1000
        return float(self.block_period_seconds)

    @property
    def timestamp_step(self) -> int:
        """Least rise of the header timestamp from parent to child (a chain rule)."""
        return 0 if self.block_period_ms is not None else self.block_period_seconds


@dataclass(frozen=True)
class Genesis:
    """A parsed genesis.json."""

    chain_id: int
    gas_limit: int
    timestamp: int
    extra_data: bytes
    qbft: QbftConfig
    #: Address (20 bytes) → {"balance", "nonce", "code", "storage"} as ints/bytes.
    alloc: dict[bytes, dict[str, Any]]
    #: The ``portledger`` section as written (chain format, members, validators, contracts).
    portledger: dict[str, Any] = field(default_factory=dict)
    #: The raw JSON document.
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Genesis:
        try:
            config = doc["config"]
            q = config.get("qbft", {})
            alloc: dict[bytes, dict[str, Any]] = {}
            for address, account in doc.get("alloc", {}).items():
                addr = to_canonical_address(address if address.startswith("0x") else "0x" + address)
                alloc[addr] = {
                    "balance": _hex_int(account.get("balance", "0x0")),
                    "nonce": _hex_int(account.get("nonce", "0x0")),
                    "code": _hex_bytes(account.get("code", "0x")),
                    "storage": {
                        _hex_int(k): _hex_int(v) for k, v in account.get("storage", {}).items()
                    },
                }
            genesis = cls(
                chain_id=int(config["chainId"]),
                gas_limit=_hex_int(doc["gasLimit"]),
                timestamp=_hex_int(doc.get("timestamp", "0x0")),
                extra_data=_hex_bytes(doc["extraData"]),
                qbft=QbftConfig(
                    block_period_seconds=int(q.get("blockPeriodSeconds", 1)),
                    request_timeout_seconds=int(q.get("requestTimeoutSeconds", 4)),
                    empty_block_period_seconds=int(q.get("emptyBlockPeriodSeconds", 60)),
                    epoch_length=int(q.get("epochLength", 30_000)),
                    block_period_ms=(
                        int(q["blockPeriodMilliseconds"])
                        if "blockPeriodMilliseconds" in q
                        else None
                    ),
                ),
                alloc=alloc,
                portledger=doc.get("portledger", {}),
                raw=doc,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GenesisError(f"genesis.json: {exc!r}") from exc
        chain_format = genesis.portledger.get("chainFormat", extradata.CHAIN_FORMAT_VERSION)
        if chain_format != extradata.CHAIN_FORMAT_VERSION:
            raise GenesisError(
                f"genesis.json is chain format v{chain_format}, this node reads chain format "
                f"v{extradata.CHAIN_FORMAT_VERSION}; {UPGRADE_ADVICE}"
            )
        try:
            extradata.decode(genesis.extra_data)
        except extradata.LegacyExtraData as exc:
            raise GenesisError(f"genesis.json extraData: {exc}; {UPGRADE_ADVICE}") from exc
        except extradata.InvalidExtraData as exc:
            raise GenesisError(f"genesis.json extraData: {exc}") from exc
        return genesis

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GenesisError(f"cannot read {path}: {exc}") from exc
        return cls.from_json(doc)

    @property
    def validators(self) -> tuple[bytes, ...]:
        return extradata.decode(self.extra_data).validators

    def header_params(self) -> dict[str, Any]:
        return {
            "difficulty": 0,
            "gas_limit": self.gas_limit,
            "timestamp": self.timestamp,
            "extra_data": self.extra_data,
            "mix_hash": BFT_MIX_HASH,
            "nonce": b"\x00" * 8,
            "base_fee_per_gas": 0,
        }

    def state(self) -> dict[bytes, dict[str, Any]]:
        return {addr: dict(account) for addr, account in self.alloc.items()}


# -- development keys ------------------------------------------------------------------------
def dev_key(label: str) -> PrivateKey:
    """A deterministic, PUBLIC development key. Never use one outside a demo or a test."""
    return PrivateKey(keccak(b"portledger-insecure-dev-key:" + label.encode()))


def dev_x25519(label: str) -> bytes:
    """A deterministic, PUBLIC development X25519 private key (32 bytes); demos and tests only."""
    return keccak(b"portledger-insecure-dev-x25519:" + label.encode())


def dev_x25519_public(label: str) -> bytes:
    """The public half of :func:`dev_x25519`."""
    private = X25519PrivateKey.from_private_bytes(dev_x25519(label))
    return private.public_key().public_bytes_raw()


def dev_address(label: str) -> str:
    return to_checksum_address(dev_key(label).public_key.to_canonical_address())


# -- building ----------------------------------------------------------------------------
class _RecordingState:
    """Wraps a py-evm state's ``set_storage`` to learn which slots a constructor wrote."""

    def __init__(self, state: Any) -> None:
        self.touched: dict[bytes, set[int]] = {}
        original = state.set_storage

        def set_storage(address: bytes, slot: int, value: int) -> None:
            self.touched.setdefault(address, set()).add(slot)
            original(address, slot, value)

        state.set_storage = set_storage


def deploy_at(state: Any, recorder: _RecordingState, address: bytes, initcode: bytes) -> None:
    """Run ``initcode`` as a constructor *at* ``address``; install the runtime it returns."""
    message = Message(
        gas=1_000_000_000,
        to=Address(address),
        sender=GENESIS_DEPLOYER,
        value=0,
        data=b"",
        code=initcode,
        create_address=Address(address),
    )
    tx_context = state.get_transaction_context_class()(gas_price=0, origin=GENESIS_DEPLOYER)
    computation = state.computation_class.apply_create_message(state, message, tx_context)
    if computation.is_error:
        raise GenesisError(f"constructor at 0x{address.hex()} failed: {computation.error!r}")


def build_genesis(
    members: list[dict[str, Any]],
    validators: list[str],
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    timestamp: int = DEFAULT_TIMESTAMP,
    qbft: QbftConfig = QbftConfig(),
    timelock: int | None = None,
) -> dict[str, Any]:
    """Build the genesis.json document for a network of ``members`` and ``validators``."""
    chain_class = Chain.configure(
        __name__="GenesisBuilderChain",
        vm_configuration=((0, PragueVM),),
        chain_id=chain_id,
        consensus_context_class=ConsensusContext,
    )
    vm_class = chain_class.get_vm_class_for_block_number(BlockNumber(0))
    header = BlockHeader(difficulty=0, block_number=0, gas_limit=gas_limit, timestamp=timestamp)
    state = vm_class.build_state(AtomicDB(), header, ChainContext(chain_id))
    recorder = _RecordingState(state)
    deployed: dict[str, dict[str, str]] = {}
    for name in contracts.DEPLOY_ORDER:
        artifact = contracts.load_artifact(name)
        address = to_canonical_address(contracts.SYSTEM_ADDRESSES[name])
        args = (
            contracts.constructor_args(name, members, validators)
            if timelock is None
            else contracts.constructor_args(name, members, validators, timelock=timelock)
        )
        initcode = bytes.fromhex(artifact["bytecode"].removeprefix("0x")) + _abi_encode_args(
            artifact["abi"], args
        )
        deploy_at(state, recorder, address, initcode)
        deployed[name] = {
            "address": to_checksum_address(address),
            "sourceSha256": artifact["source_sha256"],
            "runtimeSha256": hashlib.sha256(state.get_code(address)).hexdigest(),
        }

    alloc: dict[str, Any] = {}
    for name in contracts.DEPLOY_ORDER:
        address = to_canonical_address(contracts.SYSTEM_ADDRESSES[name])
        storage = {
            f"0x{slot:064x}": f"0x{value:064x}"
            for slot in sorted(recorder.touched.get(address, ()))
            if (value := state.get_storage(address, slot)) != 0
        }
        alloc[to_checksum_address(address)] = {
            "balance": "0x0",
            "nonce": "0x1",
            "code": "0x" + state.get_code(address).hex(),
            "storage": storage,
        }
    extra = extradata.ExtraData(
        b"portledger-genesis".ljust(32, b"\x00"),
        tuple(sorted(to_canonical_address(v) for v in validators)),
    )
    return {
        "config": {
            "chainId": chain_id,
            "pragueTime": 0,
            "zeroBaseFee": True,
            "qbft": {
                "blockPeriodSeconds": qbft.block_period_seconds,
                "requestTimeoutSeconds": qbft.request_timeout_seconds,
                "emptyBlockPeriodSeconds": qbft.empty_block_period_seconds,
                "epochLength": qbft.epoch_length,
                **(
                    {"blockPeriodMilliseconds": qbft.block_period_ms}
                    if qbft.block_period_ms is not None
                    else {}
                ),
            },
        },
        "nonce": "0x0",
        "timestamp": hex(timestamp),
        "gasLimit": hex(gas_limit),
        "difficulty": "0x0",
        "baseFeePerGas": "0x0",
        "mixHash": "0x" + BFT_MIX_HASH.hex(),
        "coinbase": "0x0000000000000000000000000000000000000000",
        "extraData": "0x" + extra.encode().hex(),
        "portledger": {
            "chainFormat": extradata.CHAIN_FORMAT_VERSION,
            "members": members,
            "validators": validators,
            "contracts": deployed,
        },
        "alloc": alloc,
    }


def _abi_encode_args(abi: list[dict[str, Any]], args: list[Any]) -> bytes:
    ctor = next((item for item in abi if item.get("type") == "constructor"), None)
    if ctor is None:
        if args:
            raise GenesisError("constructor arguments given for a contract without constructor")
        return b""
    types = [_abi_type(inp) for inp in ctor["inputs"]]
    return encode(types, args)


def _abi_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


def write_genesis(doc: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
