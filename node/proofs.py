"""Proof bundles: one JSON file that proves cargo events to a bank, offline.

A bundle (``docs/proof-format.md``) carries, for each proven event, its log, its receipt and
transaction with their Merkle-Patricia proofs under the sealed header's roots, the sealed
headers themselves, and the sealed header of every validator-set change from genesis up to the
proven blocks — everything :mod:`proofs.verify` needs with only ``genesis.json``.

What this module adds to what the chain database already holds:

- **Trie proofs.** The node's database holds every block's receipt and transaction tries
  (py-evm persists their nodes by hash); a proof is the walk from the header's root along
  ``rlp(index)``, keeping each hashed node. Only the one receipt and transaction needed are read
  and decoded (decoding a whole block's receipts into py-evm objects costs ~60 ms for 1 000
  logs).
- **The validator-set change index.** Header N lists the set decided at N's post-state; a
  *change* is a block whose list differs from its parent's. :class:`ProofBuilder` scans headers
  once, incrementally, and keeps the change heights in memory.
- **Finding events.** By transaction hash (the chain's transaction index), by cargo event id or
  by subject reference (headers' blooms first, then receipts of the candidate blocks).

Optional per event: a *disclosure* (the plaintext payload and, if the owner wishes, the data
key that decrypts the ciphertext in the log), a subject reference, and for an ``Anchored``
log the Merkle inclusion proof of one telemetry reading.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth_bloom.bloom import BloomFilter
from eth_typing import Hash32
from eth_utils.address import to_canonical_address
from trie.hexary import HexaryTrie

from consensus import extradata
from contracts import SYSTEM_ADDRESSES
from contracts.cargo import CARGO_EVENT_TOPIC, subject_key
from node.chain import ChainError
from node.ledger import Ledger
from proofs import trie
from proofs.bundle import FORMAT
from proofs.summary import Verified
from proofs.verify import verify_bundle


class ProofBuildError(ChainError):
    """The requested event cannot be proven (unknown, failed, or inconsistent storage)."""


@dataclass(frozen=True)
class EventRef:
    """One log to prove, and what to disclose with it."""

    #: Block number.
    block: int
    #: Transaction index in the block.
    transaction_index: int
    #: Position of the log in its transaction's receipt.
    log_index: int
    #: The subject's reference number (checked against the subject key by the verifier).
    subject_reference: str | None = None
    #: Disclosure object (``docs/proof-format.md``), hex strings already.
    disclosure: dict[str, Any] | None = None
    #: Anchor object: ``{"reading": "0x…"}`` or ``{"readingHash": …}`` and ``"merkleProof"``.
    anchor: dict[str, Any] | None = None


def _hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def trie_proof(root: bytes, nodes: Mapping[Any, bytes], key: bytes) -> list[bytes]:
    """The hashed nodes (RLP, root first) on the path of ``key`` in the trie of ``root``.

    Parameters
    ----------
    root : bytes
        Root hash.
    nodes : dict
        Node hash → node RLP, holding at least the path.
    key : bytes
        The key (``rlp(index)`` in receipt and transaction tries).

    Returns
    -------
    list of bytes
        The proof as :func:`proofs.trie.verify_mpt_proof` reads it.
    """
    path = trie.nibbles(key)
    reference: Any = root
    proof: list[bytes] = []
    for _ in range(len(path) + 64):
        if isinstance(reference, bytes) and len(reference) == 32:
            raw = nodes[reference]
            proof.append(raw)
            node = rlp.decode(raw)
        else:
            node = reference
        if len(node) == 17:
            if not path:
                return proof
            reference, path = node[path[0]], path[1:]
        else:
            segment, is_leaf = trie.hex_prefix_decode(node[0])
            if is_leaf:
                return proof
            reference, path = node[1], path[len(segment):]
    raise ProofBuildError("trie path does not end")


@dataclass
class _BlockItems:
    """One block's receipts and transactions, read raw from their tries in the database."""

    header: BlockHeaderAPI
    #: Receipt and transaction nodes by hash (the node's database holds both tries).
    nodes: Mapping[Any, bytes]
    _receipts: dict[int, bytes] = field(default_factory=dict)
    _transactions: dict[int, bytes] = field(default_factory=dict)

    def _get(self, root: bytes, index: int, cache: dict[int, bytes]) -> bytes:
        if index not in cache:
            value = HexaryTrie(self.nodes, root).get(rlp.encode(index))
            if not value:
                raise ProofBuildError(f"block #{self.header.block_number} has no item {index}")
            cache[index] = bytes(value)
        return cache[index]

    def receipt(self, index: int) -> bytes:
        return self._get(self.header.receipt_root, index, self._receipts)

    def transaction(self, index: int) -> bytes:
        return self._get(self.header.transaction_root, index, self._transactions)

    def logs(self, index: int) -> list[tuple[bytes, tuple[bytes, ...], bytes]]:
        """The logs of receipt ``index`` as (address, topics, data)."""
        raw = self.receipt(index)
        _status, _gas, _bloom, logs = rlp.decode(raw[1:] if raw[0] < 0x80 else raw)
        return [(address, tuple(topics), data) for address, topics, data in logs]


class ProofBuilder:
    """Builds proof bundles from a node's chain.

    Parameters
    ----------
    ledger : Ledger
        The node's chain (read only here).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._scanned = 0
        self._changes: list[int] = []
        self._lists: dict[int, tuple[bytes, ...]] = {0: ledger.validators_at(ledger.genesis_header())}
        self._last_list = self._lists[0]
        self.cargo_ledger = to_canonical_address(SYSTEM_ADDRESSES["CargoLedger"])

    # -- validator-set changes ---------------------------------------------------------------
    def validator_changes(self, below: int) -> list[int]:
        """Heights of the validator-set changes below block ``below`` (scanned once)."""
        last = min(below - 1, self.ledger.head().block_number)
        while self._scanned < last:
            number = self._scanned + 1
            listed = self.ledger.validators_at(self.ledger.header_by_number(number))
            if listed != self._last_list:
                self._changes.append(number)
                self._last_list = listed
            self._scanned = number
        return [n for n in self._changes if n < below]

    # -- per-block items ---------------------------------------------------------------------
    def _items(self, number: int) -> _BlockItems:
        return _BlockItems(self.ledger.header_by_number(number), self.ledger.db)

    # -- finding events ----------------------------------------------------------------------
    def ref_for_transaction(self, tx_hash: bytes, block_log_index: int) -> EventRef:
        """The log at ``block_log_index`` (JSON-RPC's block-wide ``logIndex``) of a transaction.

        Raises
        ------
        ProofBuildError
            Unknown transaction, or the log is not one of this transaction's.
        """
        try:
            number, tx_index = self.ledger.chaindb.get_transaction_index(Hash32(tx_hash))
        except Exception as exc:  # py-evm's TransactionNotFound
            raise ProofBuildError(f"transaction 0x{tx_hash.hex()} is not in the chain") from exc
        items = self._items(number)
        before = sum(len(items.logs(i)) for i in range(tx_index))
        within = block_log_index - before
        if not 0 <= within < len(items.logs(tx_index)):
            raise ProofBuildError(
                f"log {block_log_index} of block #{number} is not a log of transaction 0x{tx_hash.hex()}"
            )
        return EventRef(number, tx_index, within)

    def _scan(self, topic_index: int, topic: bytes, first: int = 1) -> list[EventRef]:
        refs: list[EventRef] = []
        for number in range(first, self.ledger.head().block_number + 1):
            header = self.ledger.header_by_number(number)
            if not header.bloom or topic not in BloomFilter(header.bloom):
                continue
            items = _BlockItems(header, self.ledger.db)
            for tx_index in itertools.count():
                if not HexaryTrie(items.nodes, header.receipt_root).get(rlp.encode(tx_index)):
                    break
                for log_index, (address, topics, _data) in enumerate(items.logs(tx_index)):
                    if (
                        len(topics) == 4
                        and address == self.cargo_ledger
                        and topics[0] == CARGO_EVENT_TOPIC
                        and topics[topic_index] == topic
                    ):
                        refs.append(EventRef(number, tx_index, log_index))
        return refs

    def refs_for_event_id(self, event_id: int) -> EventRef:
        """The cargo event with this id; :class:`ProofBuildError` if there is none."""
        found = self._scan(3, event_id.to_bytes(32, "big"))
        if not found:
            raise ProofBuildError(f"no cargo event {event_id}")
        return found[0]

    def refs_for_subject(self, reference: str) -> list[EventRef]:
        """Every cargo event of a subject (container, B/L, ...), in chain order."""
        found = self._scan(1, subject_key(reference))
        if not found:
            raise ProofBuildError(f"no cargo event for {reference!r}")
        return [EventRef(r.block, r.transaction_index, r.log_index, subject_reference=reference)
                for r in found]

    # -- bundles -----------------------------------------------------------------------------
    def bundle(self, refs: Sequence[EventRef]) -> dict[str, Any]:
        """The proof bundle for ``refs``.

        Returns
        -------
        dict
            The bundle, ready for ``json.dump``.
        """
        if not refs:
            raise ProofBuildError("nothing to prove")
        items: dict[int, _BlockItems] = {}
        events: list[dict[str, Any]] = []
        for ref in refs:
            if ref.block < 1 or ref.block > self.ledger.head().block_number:
                raise ProofBuildError(f"block #{ref.block} is not in the chain")
            block = items.get(ref.block) or items.setdefault(ref.block, self._items(ref.block))
            logs = block.logs(ref.transaction_index)
            if not 0 <= ref.log_index < len(logs):
                raise ProofBuildError(
                    f"transaction {ref.transaction_index} of block #{ref.block} has no log {ref.log_index}"
                )
            address, topics, data = logs[ref.log_index]
            key = rlp.encode(ref.transaction_index)
            event: dict[str, Any] = {
                "block": ref.block,
                "transactionIndex": ref.transaction_index,
                "logIndex": ref.log_index,
                "log": {"address": _hex(address), "topics": [_hex(t) for t in topics],
                        "data": _hex(data)},
                "receipt": _hex(block.receipt(ref.transaction_index)),
                "receiptProof": [_hex(n) for n in trie_proof(
                    block.header.receipt_root, block.nodes, key)],
                "transaction": _hex(block.transaction(ref.transaction_index)),
                "transactionProof": [_hex(n) for n in trie_proof(
                    block.header.transaction_root, block.nodes, key)],
            }
            if ref.subject_reference is not None:
                event["subjectReference"] = ref.subject_reference
            if ref.disclosure is not None:
                event["disclosure"] = ref.disclosure
            if ref.anchor is not None:
                event["anchor"] = ref.anchor
            events.append(event)
        highest = max(items)
        changes = self.validator_changes(highest)
        return {
            "format": FORMAT,
            "chainId": self.ledger.chain_id,
            "genesisValidators": [_hex(v) for v in self.ledger.validators_at(self.ledger.genesis_header())],
            "validatorChanges": [_hex(self._header_rlp(n)) for n in changes],
            "headers": [_hex(self._header_rlp(n)) for n in sorted(items)],
            "events": events,
        }

    def _header_rlp(self, number: int) -> bytes:
        encoded: bytes = rlp.encode(self.ledger.header_by_number(number))
        return encoded


def verify_with_genesis(bundle: dict[str, Any], ledger: Ledger) -> Verified:
    """Verify a bundle against the ledger's own genesis (a builder's self-check)."""
    return verify_bundle(bundle, ledger.genesis.raw)


def sealers(header: BlockHeaderAPI) -> tuple[bytes, ...]:
    """Signers of a header's commit seals, in seal order."""
    digest = extradata.commit_digest(header)
    return tuple(extradata.recover_signer(digest, s) for s in extradata.decode(header.extra_data).seals)
