#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title Anchors: Merkle roots of telemetry batches
@custom:contract-name Anchors
@license Apache-2.0
@notice High-frequency readings (AIS positions, reefer readings, truck GPS)
        are not sent one transaction each: their publisher anchors the
        Merkle root of a batch with its count, time range and kind, and any
        single reading is then provable against the root, on chain with
        `verifyReading` or off chain with the same rule (`contracts.anchors`).
        Roles per kind: AIS by the operator, terminals, carriers and agents;
        reefer readings by terminals, carriers, hauliers and warehouses;
        truck GPS by hauliers and forwarders.
"""

from . import membership
from . import merkle
from . import roles

initializes: membership

exports: membership.consortium


AIS: constant(uint8) = 1
REEFER: constant(uint8) = 2
TRUCK_GPS: constant(uint8) = 3

# Roles that may anchor each kind, 16 bits per kind.
KIND_ROLES: constant(uint256) = (
    (roles.OPERATOR | roles.TERMINAL | roles.CARRIER | roles.AGENT) << 16
    | (roles.TERMINAL | roles.CARRIER | roles.HAULIER | roles.WAREHOUSE) << 32
    | (roles.HAULIER | roles.FORWARDER) << 48
)


struct Anchor:
    root: bytes32
    kind: uint8
    publisher: uint256
    count: uint256
    start: uint256
    end: uint256


anchor_count: public(uint256)
_roots: HashMap[uint256, bytes32]
# kind << 248 | publisher << 160 | count << 80 | start << 40 | end
_info: HashMap[uint256, uint256]


event Anchored:
    anchor: indexed(uint256)
    publisher: indexed(uint256)
    kind: indexed(uint8)
    root: bytes32
    count: uint256
    start: uint256
    end: uint256


@deploy
def __init__(consortium: address):
    """
    @dev Stores the Consortium contract's address; no external call.
    @param consortium The Consortium contract's (genesis) address.
    """
    membership.__init__(consortium)


@external
def anchor(kind: uint8, root: bytes32, count: uint256, start: uint256, end: uint256) -> uint256:
    """
    @notice Anchors the Merkle root of a batch of readings.
    @param kind AIS (1), REEFER (2) or TRUCK_GPS (3).
    @param root The batch's Merkle root.
    @param count The number of readings in the batch.
    @param start Unix seconds of the earliest reading.
    @param end Unix seconds of the latest reading.
    @return uint256 The anchor id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert org != 0, "anchors: caller is not a member"
    assert kind >= AIS and kind <= TRUCK_GPS, "anchors: unknown kind"
    assert (KIND_ROLES >> (convert(kind, uint256) << 4)) & held != 0, "anchors: caller may not anchor this kind"
    assert root != empty(bytes32), "anchors: empty root"
    assert count != 0 and count < 2**80, "anchors: invalid count"
    assert start <= end and end < 2**40, "anchors: invalid time range"
    anchor_id: uint256 = self.anchor_count + 1
    self.anchor_count = anchor_id
    self._roots[anchor_id] = root
    self._info[anchor_id] = convert(kind, uint256) << 248 | org << 160 | count << 80 | start << 40 | end
    log Anchored(anchor=anchor_id, publisher=org, kind=kind, root=root, count=count, start=start, end=end)
    return anchor_id


@external
@view
def anchorOf(anchor_id: uint256) -> Anchor:
    """
    @notice An anchored batch.
    @param anchor_id The anchor id.
    @return Anchor Root, kind, publisher, count and time range (all zero if
            unknown).
    """
    info: uint256 = self._info[anchor_id]
    return Anchor(
        root=self._roots[anchor_id],
        kind=convert(info >> 248, uint8),
        publisher=(info >> 160) & (2**88 - 1),
        count=(info >> 80) & (2**80 - 1),
        start=(info >> 40) & (2**40 - 1),
        end=info & (2**40 - 1),
    )


@external
@view
def verifyReading(anchor_id: uint256, reading_hash: bytes32, proof: DynArray[bytes32, merkle.MAX_DEPTH]) -> bool:
    """
    @notice Tells whether a reading belongs to an anchored batch.
    @param anchor_id The anchor id.
    @param reading_hash keccak256 of the reading's canonical bytes.
    @param proof The Merkle proof (sibling nodes, leaf to root).
    @return bool True if the reading is in the batch.
    """
    root: bytes32 = self._roots[anchor_id]
    if root == empty(bytes32):
        return False
    return merkle._verify(proof, root, merkle._leaf(reading_hash))
