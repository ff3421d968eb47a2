#pragma version ~=0.4.3
"""
@title Merkle inclusion proofs for telemetry anchors
@custom:contract-name merkle
@license Apache-2.0
@notice A stateless module. Trees are built by `contracts.anchors` in
        Python: a leaf is `keccak256(0x00 ++ reading_hash)`, an inner node is
        `keccak256(0x01 ++ min(a, b) ++ max(a, b))` (pairs sorted, so a proof
        needs no left/right flags), and an odd node at the end of a level is
        promoted unchanged. The 0x00 / 0x01 prefixes keep a leaf from ever
        being read as an inner node (second-preimage protection).
"""

MAX_DEPTH: constant(uint256) = 32


@internal
@pure
def _leaf(reading_hash: bytes32) -> bytes32:
    """
    @dev The leaf of a reading.
    @param reading_hash keccak256 of the reading's canonical bytes.
    @return bytes32 The leaf.
    """
    return keccak256(concat(b"\x00", reading_hash))


@internal
@pure
def _verify(proof: DynArray[bytes32, MAX_DEPTH], root: bytes32, leaf: bytes32) -> bool:
    """
    @dev Tells whether a leaf is in the tree with the given root.
    @param proof The sibling nodes from the leaf up to the root.
    @param root The tree's root.
    @param leaf The leaf (see `_leaf`).
    @return bool True if the proof leads from the leaf to the root.
    """
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(b"\x01", node, sibling))
        else:
            node = keccak256(concat(b"\x01", sibling, node))
    return node == root
