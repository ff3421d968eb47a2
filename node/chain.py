"""The PortLedger chain's rules: py-evm's Prague rules with QBFT seals and zero fees.

What differs from Ethereum mainnet, and where:

- :class:`QbftSealConsensus` (py-evm's ``ConsensusAPI`` plug-in point) checks a header's commit
  seals against the validator list in its ``extraData`` and that list against the parent's.
- :class:`PortLedgerVM` is ``PragueVM`` with room for QBFT ``extraData``, a base fee that is
  always zero (a permissioned network pays no fees; the block gas limit still bounds work),
  and a gas limit fixed by genesis.

The node's handle on a chain that follows these rules is :class:`node.ledger.Ledger`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import eth.db.trie
import rlp
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    ConsensusAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
)
from eth.consensus.context import ConsensusContext
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.byzantium.constants import (
    EIP658_TRANSACTION_STATUS_CODE_FAILURE,
    EIP658_TRANSACTION_STATUS_CODE_SUCCESS,
)
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth.vm.forks.prague.constants import DEPOSIT_CONTRACT_ADDRESS
from eth.vm.forks.prague.headers import create_prague_header_from_parent
from eth_hash.auto import keccak
from eth_typing import Address
from eth_utils.exceptions import ValidationError

from consensus import extradata
from node.interpreter import FastPragueState

#: Largest accepted ``extraData``: vanity + up to ~100 validators and their seals.
EXTRA_DATA_MAX_BYTES = 16 * 1024


class ChainError(Exception):
    """Base of the chain's typed errors."""


class InvalidBlock(ChainError):
    """A block failed validation; the message says what and where."""


class QbftBlockHeader(PragueBlockHeader):
    """A Prague header whose hash is QBFT's block hash (Besu's rule): Keccak-256 of the header
    with round 0 and no commit seals in ``extraData`` (:func:`consensus.extradata.block_hash`).

    Every validator therefore gives a block the same hash whichever quorum of seals it
    collected, and a block re-proposed in a later round keeps its hash (the QBFT core's block
    digest). Parent links, the block-hash key in LevelDB, ``BLOCKHASH`` and JSON-RPC all use it.
    """

    @property
    def hash(self) -> Any:
        if self._hash is None:
            self._hash = extradata.block_hash(self)
        return self._hash

    @classmethod
    def from_header(cls, header: BlockHeaderAPI) -> QbftBlockHeader:
        if isinstance(header, cls):
            return header
        return cls(
            **{name: getattr(header, name) for name, _sedes in PragueBlockHeader._meta.fields}
        )


class QbftBlock(PragueBlock):
    """A Prague block with a :class:`QbftBlockHeader` (what block RLP decodes into)."""

    fields = [("header", QbftBlockHeader), *PragueBlock._meta.fields[1:]]


@functools.lru_cache(256)
def _decode_header(header_rlp: bytes) -> QbftBlockHeader:
    header: QbftBlockHeader = rlp.decode(header_rlp, sedes=QbftBlockHeader)
    return header


#: Entries of py-evm's cache of transaction/receipt tries (``eth.db.trie``): py-evm keeps 128,
#: keyed by every encoded item of a block and holding every trie node, so its size follows the
#: block size — 20-transaction blocks of 100 cargo events made it ~2 MB an entry, hundreds of
#: MiB in all. It serves repeats of one block's roots; this node's build and import paths
#: compute each root once (tests/node/test_soak.py: 0 hits in 12 calls), so a few entries do.
TRIE_ROOT_CACHE_ENTRIES = 4
#: Blocks whose decoded transactions ChainDB keeps (py-evm: 32, whatever the block size).
BLOCK_TRANSACTIONS_CACHE_ENTRIES = 4

eth.db.trie._make_trie_root_and_nodes = functools.lru_cache(TRIE_ROOT_CACHE_ENTRIES)(
    eth.db.trie._make_trie_root_and_nodes.__wrapped__
)


class QbftChainDB(ChainDB):
    """py-evm's ChainDB, decoding stored headers as :class:`QbftBlockHeader` (py-evm's own
    decoder would give plain Prague headers, whose hash covers the seals), with a block
    transactions cache bounded to :data:`BLOCK_TRANSACTIONS_CACHE_ENTRIES` blocks."""

    _get_block_transactions = functools.lru_cache(BLOCK_TRANSACTIONS_CACHE_ENTRIES)(
        ChainDB._get_block_transactions.__wrapped__
    )

    @staticmethod
    def _get_block_header_by_hash(db: Any, block_hash: Any) -> BlockHeaderAPI:
        try:
            header_rlp = db[block_hash]
        except KeyError:
            raise HeaderNotFound(f"No header with hash 0x{bytes(block_hash).hex()} found") from None
        return _decode_header(bytes(header_rlp))


class QbftSealConsensus(ConsensusAPI):
    """py-evm consensus plug-in: QBFT commit seals in ``extraData`` (Besu's semantics).

    A header's validator list is the set decided *after* its block (``Consortium`` at the
    block's post-state): the set that must seal the *next* block. So the seals of block N are
    checked against the list in header N - 1 (genesis lists the first set), and a light client
    holding only headers follows every change from genesis: each new list arrives in a header
    sealed by the previous one.

    ``validate_seal`` needs only the header (well-formed extraData); ``validate_seal_extension``
    checks a quorum of distinct validators of the parent's list signed
    :func:`consensus.extradata.commit_digest`. The parent is taken from ``parents`` — the
    headers py-evm passes that are not in the database yet (``Chain.validate_chain_extension``
    passes the earlier headers of the batch) — and only from the database when it is not there.
    """

    def __init__(self, context: ConsensusContext) -> None:
        self._db = context.db

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        try:
            extradata.decode(header.extra_data)
        except extradata.InvalidExtraData as exc:
            raise ValidationError(f"block #{header.block_number}: {exc}") from exc

    def validate_seal_extension(
        self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]
    ) -> None:
        parent = self._parent(header, parents)
        try:
            extradata.verify_seals(
                extradata.commit_digest(header),
                extradata.decode(header.extra_data).seals,
                extradata.decode(parent.extra_data).validators,
            )
        except (extradata.InvalidExtraData, extradata.InvalidSeal) as exc:
            raise ValidationError(f"block #{header.block_number}: {exc}") from exc

    def _parent(self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]) -> BlockHeaderAPI:
        """The parent header: among ``parents`` (not yet stored) if there, else the database's."""
        for candidate in reversed(tuple(parents)):  # the direct parent is usually the last
            if QbftBlockHeader.from_header(candidate).hash == header.parent_hash:
                return candidate
        try:
            return QbftChainDB(self._db).get_block_header_by_hash(header.parent_hash)
        except HeaderNotFound as exc:
            raise ValidationError(f"block #{header.block_number}: unknown parent") from exc

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase


#: Bloom bits of recently seen log addresses and topics (bounded; see :func:`_bloom_bits`),
#: addresses by their bytes, topics by their int (as the EVM and py-evm's ``Log`` hold them).
_BLOOM_BITS: dict[bytes, int] = {}
_TOPIC_BITS: dict[int, int] = {}
_BLOOM_BITS_MAX = 1 << 12


def _bloom_bits(value: bytes) -> int:
    """The three bits a log address or topic sets in a bloom (the yellow paper's M3:2048),
    as one int; what ``eth_bloom.BloomFilter.add`` ORs in, with one keccak and no generators.

    Cached: a block's logs repeat the contract address, the event signature and a few
    publisher ids thousands of times (the cache is emptied when it fills)."""
    bits = _BLOOM_BITS.get(value)
    if bits is None:
        h = keccak(value)
        bits = (
            1 << ((h[0] << 8 | h[1]) & 2047)
            | 1 << ((h[2] << 8 | h[3]) & 2047)
            | 1 << ((h[4] << 8 | h[5]) & 2047)
        )
        if len(_BLOOM_BITS) >= _BLOOM_BITS_MAX:
            _BLOOM_BITS.clear()
        _BLOOM_BITS[value] = bits
    return bits


def _topic_bits(topic: int) -> int:
    """:func:`_bloom_bits` of a topic given as an int (its 32 big-endian bytes), cached by the
    int: no conversion to bytes for the topics every log repeats."""
    bits = _TOPIC_BITS.get(topic)
    if bits is None:
        bits = _bloom_bits(topic.to_bytes(32, "big"))
        if len(_TOPIC_BITS) >= _BLOOM_BITS_MAX:
            _TOPIC_BITS.clear()
        _TOPIC_BITS[topic] = bits
    return bits


def logs_bloom(logs: Iterable[Any]) -> int:
    """The logs bloom of ``logs`` (py-evm ``Log`` objects): each address and each topic as
    32 big-endian bytes — equal to ``eth_bloom.BloomFilter.from_iterable`` over the logs'
    ``bloomables``."""
    return entries_bloom((log.address, log.topics, log.data) for log in logs)


def entries_bloom(entries: Iterable[tuple[bytes, Sequence[int], bytes]]) -> int:
    """:func:`logs_bloom` of a computation's log entries, ``(address, topics, data)``."""
    bloom = 0
    address_bits = _BLOOM_BITS
    topic_bits = _TOPIC_BITS
    for address, topics, _data in entries:
        bits = address_bits.get(address)
        bloom |= _bloom_bits(address) if bits is None else bits
        for topic in topics:
            bits = topic_bits.get(topic)
            bloom |= _topic_bits(topic) if bits is None else bits
    return bloom


def _rlp_string(item: bytes) -> bytes:
    n = len(item)
    if n == 1 and item[0] < 0x80:
        return item
    if n < 56:
        return bytes((0x80 + n,)) + item
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xB7 + len(size),)) + size + item


def _rlp_list(payload: bytes) -> bytes:
    n = len(payload)
    if n < 56:
        return bytes((0xC0 + n,)) + payload
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(size),)) + size + payload


class _Receipt(Receipt):
    """py-evm's receipt whose RLP encoding is written out for its fixed shape — status, gas
    used, 256-byte bloom, logs of (20-byte address, 32-byte topics, data) — instead of the
    generic sedes walk (~2 ms for a receipt of 100 logs, the receipts trie of every block
    encodes each one). Same bytes as ``rlp.encode`` (checked differentially in the tests).

    A receipt made by :meth:`PortLedgerVM.make_receipt` also keeps the computation's log
    entries it was made of (:attr:`entries`, the same values as its ``Log`` objects): the
    encoding reads them instead of three properties per log, and its bloom, computed from
    exactly those entries, needs no check against them (:meth:`PortLedgerVM.validate_receipt`).
    A copy (``.copy()``, decoding) has none and takes the general path."""

    entries: tuple[tuple[bytes, Sequence[int], bytes], ...] | None = None

    def encode(self) -> bytes:
        entries = self.entries
        if entries is None:
            entries = tuple((log.address, log.topics, log.data) for log in self.logs)
        logs = b"".join([
            _rlp_list(
                _rlp_string(address)
                + _rlp_list(b"".join([b"\xa0" + t.to_bytes(32, "big") for t in topics]))
                + _rlp_string(data)
            )
            for address, topics, data in entries
        ])  # fmt: skip
        gas = self.gas_used
        return _rlp_list(
            _rlp_string(self.state_root)
            + _rlp_string(gas.to_bytes((gas.bit_length() + 7) // 8, "big"))
            + b"\xb9\x01\x00"
            + self.bloom.to_bytes(256, "big")
            + _rlp_list(logs)
        )


def _zero_fee_header_from_parent(
    parent_header: BlockHeaderAPI | None, **header_params: Any
) -> BlockHeaderAPI:
    if parent_header is not None:
        header_params.setdefault("gas_limit", parent_header.gas_limit)
    header_params.pop("base_fee_per_gas", None)
    header = create_prague_header_from_parent(parent_header, **header_params)
    return QbftBlockHeader.from_header(header.copy(base_fee_per_gas=0))


class PortLedgerVM(PragueVM):
    """Prague execution with QBFT seals, zero base fee and a fixed gas limit."""

    fork = "portledger-prague"
    block_class = QbftBlock
    # Same execution results as PragueState, with a faster opcode loop (node.interpreter).
    _state_class = FastPragueState
    extra_data_max_bytes = EXTRA_DATA_MAX_BYTES
    consensus_class = QbftSealConsensus
    create_header_from_parent = staticmethod(_zero_fee_header_from_parent)

    @classmethod
    def validate_header(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        # py-evm wants timestamps to rise strictly; with a sub-second block period two blocks
        # may share a second. The Ledger enforces the genesis rule (QbftConfig.timestamp_step);
        # here only a timestamp *before* the parent's is refused.
        if parent_header is not None and header.timestamp == parent_header.timestamp:
            parent_header = parent_header.copy(timestamp=parent_header.timestamp - 1)
        super().validate_header(header, parent_header)

    @classmethod
    def validate_gas(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        if header.gas_limit != parent_header.gas_limit:
            raise ValidationError(
                f"gas limit {header.gas_limit} differs from the parent's {parent_header.gas_limit}"
            )
        if header.base_fee_per_gas != 0:
            raise ValidationError(f"base fee must be 0, got {header.base_fee_per_gas}")

    @classmethod
    def make_receipt(
        cls,
        base_header: BlockHeaderAPI,
        transaction: SignedTransactionAPI,
        computation: ComputationAPI,
        state: StateAPI,
    ) -> ReceiptAPI:
        # py-evm's Byzantium ``make_receipt`` and the transaction's ``make_receipt`` (every
        # fork's is ``Receipt(status, gas_used, logs)``, typed ones wrapped in the receipt
        # builder's typed receipt), with the bloom from :func:`logs_bloom` instead of
        # eth_bloom's per-bit generators and a direct encoder (:class:`_Receipt`): same
        # receipt, same encoding.
        gas_used = base_header.gas_used + cls.finalize_gas_used(transaction, computation)
        status = (
            EIP658_TRANSACTION_STATUS_CODE_FAILURE
            if computation.is_error
            else EIP658_TRANSACTION_STATUS_CODE_SUCCESS
        )
        entries = computation.get_log_entries()
        logs = [Log(address, topics, data) for address, topics, data in entries]
        receipt = _Receipt(
            state_root=status, gas_used=gas_used, logs=logs, bloom=entries_bloom(entries)
        )
        receipt.entries = entries
        if isinstance(transaction, TypedTransaction):
            type_id: int = transaction.type_id  # type: ignore[assignment]  # always set on typed
            return transaction.receipt_builder.typed_receipt_class(type_id, receipt)
        return receipt

    @classmethod
    def validate_receipt(cls, receipt: ReceiptAPI) -> None:
        # py-evm's check (every log address and topic is in the receipt's bloom; Byzantium's
        # status codes), same order and messages, with cached bloom bits. A receipt
        # make_receipt just made from its entries has its bloom from exactly those: the bloom
        # part cannot fail and is skipped.
        inner = getattr(receipt, "_inner", receipt)
        made_here = isinstance(inner, _Receipt) and inner.entries is not None
        bloom = receipt.bloom
        for log_idx, log in enumerate(() if made_here else receipt.logs):
            bits = _bloom_bits(log.address)
            if bloom & bits != bits:
                raise ValidationError(
                    f"The address from the log entry at position {log_idx} is not "
                    "present in the provided bloom filter."
                )
        for log_idx, log in enumerate(() if made_here else receipt.logs):
            for topic_idx, topic in enumerate(log.topics):
                bits = _topic_bits(topic)
                if bloom & bits != bits:
                    raise ValidationError(
                        f"The topic at position {topic_idx} from the log entry at "
                        f"position {log_idx} is not present in the provided bloom filter."
                    )
        if receipt.state_root not in (
            EIP658_TRANSACTION_STATUS_CODE_SUCCESS,
            EIP658_TRANSACTION_STATUS_CODE_FAILURE,
        ):
            raise ValidationError(
                "The receipt's `state_root` must be one of "
                f"[0x{EIP658_TRANSACTION_STATUS_CODE_SUCCESS.hex()}, "
                f"0x{EIP658_TRANSACTION_STATUS_CODE_FAILURE.hex()}].  Got: "
                f"0x{receipt.state_root.hex()}"
            )

    def process_deposit_request_data(self, block: BlockAPI) -> None:
        # Deposit requests can only be logs of the deposit contract; with no code there (a
        # permissioned chain has none) py-evm's receipt scan always finds nothing. Skipping it
        # gives the same requests hash without decoding every receipt a second time.
        if self.state.get_code(Address(DEPOSIT_CONTRACT_ADDRESS)):
            super().process_deposit_request_data(block)
        else:
            block.block_requests.append(b"\x00")
