"""Telemetry anchors: the Merkle tree whose root ``Anchors.anchor()`` records.

A batch of readings (AIS positions, reefer readings, truck GPS fixes) is anchored as one root;
any reading is then provable against it. The rule is the one ``contracts/merkle.vy`` checks:

- a reading's *reading hash* is keccak-256 of its canonical bytes (the publisher's choice of
  serialisation, e.g. canonical JSON);
- its leaf is ``keccak256(0x00 ++ reading_hash)``;
- an inner node is ``keccak256(0x01 ++ min(a, b) ++ max(a, b))``, pairs sorted so that proofs
  carry no left/right flags;
- an odd node at the end of a level is promoted to the next level unchanged.
"""

from __future__ import annotations

from eth_utils.crypto import keccak

#: Kinds of anchored telemetry, as in ``Anchors.vy``.
KINDS: dict[str, int] = {"AIS": 1, "REEFER": 2, "TRUCK_GPS": 3}


def leaf(reading_hash: bytes) -> bytes:
    """Return the leaf of a reading.

    Parameters
    ----------
    reading_hash : bytes
        keccak-256 of the reading's canonical bytes.

    Returns
    -------
    bytes
        The 32-byte leaf.
    """
    return keccak(b"\x00" + reading_hash)


def _parent(a: bytes, b: bytes) -> bytes:
    return keccak(b"\x01" + min(a, b) + max(a, b))


def _levels(reading_hashes: list[bytes]) -> list[list[bytes]]:
    if not reading_hashes:
        raise ValueError("an anchor holds at least one reading")
    level = [leaf(h) for h in reading_hashes]
    levels = [level]
    while len(level) > 1:
        level = [
            _parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        levels.append(level)
    return levels


def merkle_root(reading_hashes: list[bytes]) -> bytes:
    """Return the root of a batch.

    Parameters
    ----------
    reading_hashes : list of bytes
        The readings' hashes, in batch order.

    Returns
    -------
    bytes
        The 32-byte root.
    """
    return _levels(reading_hashes)[-1][0]


def merkle_proof(reading_hashes: list[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of one reading.

    Parameters
    ----------
    reading_hashes : list of bytes
        The readings' hashes, in batch order.
    index : int
        Position of the reading to prove.

    Returns
    -------
    list of bytes
        Sibling nodes from the leaf up to the root.
    """
    proof = []
    for level in _levels(reading_hashes)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify(root: bytes, reading_hash: bytes, proof: list[bytes]) -> bool:
    """Check a proof off chain, with the contract's rule.

    Parameters
    ----------
    root : bytes
        The anchored root.
    reading_hash : bytes
        keccak-256 of the reading.
    proof : list of bytes
        Sibling nodes, leaf to root.

    Returns
    -------
    bool
        True if the reading is in the batch.
    """
    node = leaf(reading_hash)
    for sibling in proof:
        node = _parent(node, sibling)
    return node == root
