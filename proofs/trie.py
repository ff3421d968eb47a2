"""Merkle-Patricia proofs: the value under a key in the trie of a root, proven node by node.

Receipts and transactions are proven under a sealed header's ``receiptsRoot`` and
``transactionsRoot`` (``docs/proof-format.md`` section 5.1). The path helpers (:func:`nibbles`,
:func:`hex_prefix_decode`) are also what a bundle builder walks (:func:`node.proofs.trie_proof`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp
from eth_hash.auto import keccak

from proofs.errors import ProofError, Reason

#: Bound that keeps a hostile proof from costing unbounded work.
MAX_PROOF_NODES = 64


def nibbles(key: bytes) -> list[int]:
    """The key as the trie walks it: two 4-bit nibbles per byte, high first."""
    out: list[int] = []
    for byte in key:
        out += (byte >> 4, byte & 0x0F)
    return out


def hex_prefix_decode(encoded: bytes) -> tuple[list[int], bool]:
    """Decode a hex-prefix (compact) path: (nibbles, is_leaf); ValueError if malformed."""
    if not encoded:
        raise ValueError("empty path")
    flag = encoded[0] >> 4
    if flag > 3:
        raise ValueError("bad hex-prefix flag")
    path = nibbles(encoded)
    return path[1:] if flag & 1 else path[2:], bool(flag & 2)


def verify_mpt_proof(root: bytes, key: bytes, proof: Sequence[bytes], what: str) -> bytes:
    """Return the value stored under ``key`` in the trie of ``root``, proven by ``proof``.

    ``proof`` holds the RLP of every hashed node on the path, root first; nodes shorter than 32
    bytes are embedded in their parent and not listed.

    Raises
    ------
    ProofError
        ``proof-node-mismatch`` (node i does not hash to the reference its parent holds),
        ``proof-truncated``, ``proof-extra-nodes``, ``proof-key-absent``.
    """
    if len(proof) > MAX_PROOF_NODES:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what}: more than {MAX_PROOF_NODES} nodes")
    path = nibbles(key)
    reference: Any = root
    used = 0
    for _step in range(len(path) + len(proof) + 2):
        if isinstance(reference, bytes) and len(reference) == 32:
            if used == len(proof):
                raise ProofError(
                    Reason.PROOF_TRUNCATED, f"{what}: node {used} (0x{reference.hex()}) missing"
                )
            raw = proof[used]
            if keccak(raw) != reference:
                raise ProofError(
                    Reason.PROOF_NODE_MISMATCH,
                    f"{what}: node {used} does not hash to 0x{reference.hex()}",
                )
            used += 1
            try:
                node = rlp.decode(raw)
            except Exception as exc:
                raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node {used - 1} is not RLP") from exc
        elif isinstance(reference, list):
            node = reference  # embedded node (its RLP is shorter than 32 bytes)
        elif reference == b"":
            raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
        else:
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: malformed node reference")
        if not isinstance(node, list):
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node is not a list")
        if len(node) == 17:
            if not path:
                value = node[16]
                break
            reference = node[path[0]]
            path = path[1:]
        elif len(node) == 2 and isinstance(node[0], bytes):
            try:
                segment, is_leaf = hex_prefix_decode(node[0])
            except ValueError as exc:
                raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: {exc}") from exc
            if is_leaf:
                if segment != path:
                    raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
                value = node[1]
                break
            if path[: len(segment)] != segment:
                raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
            path = path[len(segment):]
            reference = node[1]
        else:
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node of {len(node)} items")
    else:
        raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: path does not end")
    if not isinstance(value, bytes) or not value:
        raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
    if used != len(proof):
        raise ProofError(
            Reason.PROOF_EXTRA_NODES, f"{what}: {len(proof) - used} nodes beyond the path"
        )
    return value
