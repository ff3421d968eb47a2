#pragma version ~=0.4.3
"""
@title Equivocation reports: a validator's two conflicting signed QBFT messages
@custom:contract-name equivocation
@license Apache-2.0
@notice A validator that signs two different PROPOSALs, PREPAREs or COMMITs
        for the same height and round is faulty: an honest one never signs a
        conflicting message. Any member account (validators included) may
        report such a pair with `reportEquivocation`; the contract checks it
        itself and keeps one record per (validator, kind, height, round),
        with an `EquivocationReported` event for governance to act on (for
        example a REMOVE_VALIDATOR proposal). Nothing is punished here.

        Each message is passed as its decoded fields and its 65-byte
        signature r || s || v (v in {0, 1}). The contract re-encodes what
        the author signed, the RLP list `[code, height, round, digest]`
        (PROPOSAL 0x12, PREPARE 0x13) or `[0x14, height, round, digest,
        commit seal]` (COMMIT), hashes it with keccak256 and recovers the
        signer with ecrecover. No RLP is parsed: fields that are not what
        the author signed recover to another address and are refused.

        The pair is accepted when both messages have the same kind, height
        and round, name different blocks, recover to the same address, and
        that address is a validator now. The evidence hash in the event is
        keccak256 of the node's evidence encoding (`node/evidence.py`),
        `RLP([1, [payload A, signature A], [payload B, signature B]])`, so a
        report can be matched with the evidence a node serves over
        `portledger_getEquivocations`.

        Gas is bounded: fixed-size inputs, two ecrecovers, one pass over at
        most 64 validators, one new record.
"""

from . import organisations
from . import validators

uses: organisations
uses: validators


PROPOSAL: constant(uint8) = 18
PREPARE: constant(uint8) = 19
COMMIT: constant(uint8) = 20
SIGNATURE_SIZE: constant(uint256) = 65
EVIDENCE_VERSION: constant(uint256) = 1


struct SignedMessage:
    code: uint8
    height: uint64
    round: uint32
    digest: bytes32
    commit_seal: Bytes[65]
    signature: Bytes[65]


struct EquivocationRecord:
    evidence_hash: bytes32
    reporter: address
    reported_at: uint256


equivocation_count: public(uint256)
_records: HashMap[bytes32, EquivocationRecord]


event EquivocationReported:
    validator: indexed(address)
    reporter: indexed(address)
    code: uint8
    height: uint64
    round: uint32
    evidence_hash: bytes32


@external
def reportEquivocation(first: SignedMessage, second: SignedMessage) -> bytes32:
    """
    @notice Records that a validator signed two conflicting consensus
            messages for one (kind, height, round); emits
            `EquivocationReported`. Only member accounts may report.
    @param first One signed message: code (0x12, 0x13 or 0x14), height,
           round, block digest, commit seal (65 bytes for a COMMIT, empty
           otherwise) and the author's 65-byte signature r || s || v.
    @param second The conflicting message, in the same form.
    @return bytes32 The evidence hash (see the module notice).
    """
    organisations._caller_org()
    assert first.code == second.code, "consortium: the messages are of different kinds"
    assert first.height == second.height, "consortium: the messages are for different heights"
    assert first.round == second.round, "consortium: the messages are for different rounds"
    assert first.digest != second.digest, "consortium: the messages agree on the block"
    payload_a: Bytes[170] = self._signed_payload(first)
    payload_b: Bytes[170] = self._signed_payload(second)
    signer: address = self._signer(payload_a, first.signature)
    assert signer == self._signer(payload_b, second.signature), "consortium: the messages have different signers"
    assert validators._is_validator(signer), "consortium: signer is not a validator"
    key: bytes32 = self._key(signer, first.code, first.height, first.round)
    assert self._records[key].evidence_hash == empty(bytes32), "consortium: equivocation already reported"
    evidence_hash: bytes32 = keccak256(self._evidence(payload_a, first.signature, payload_b, second.signature))
    self._records[key] = EquivocationRecord(evidence_hash=evidence_hash, reporter=msg.sender, reported_at=block.number)
    self.equivocation_count += 1
    log EquivocationReported(validator=signer, reporter=msg.sender, code=first.code, height=first.height, round=first.round, evidence_hash=evidence_hash)
    return evidence_hash


@external
@view
def equivocationReport(validator: address, code: uint8, height: uint64, round: uint32) -> EquivocationRecord:
    """
    @notice The report of a validator's equivocation, if any.
    @param validator The validator's address.
    @param code The message kind (0x12, 0x13 or 0x14).
    @param height The height.
    @param round The round.
    @return EquivocationRecord Evidence hash, reporter and block number of
            the report (all zero if none).
    """
    return self._records[self._key(validator, code, height, round)]


@internal
@pure
def _key(validator: address, code: uint8, height: uint64, round: uint32) -> bytes32:
    """
    @dev The record key of one (validator, kind, height, round).
    @return bytes32 keccak256 of their ABI encoding.
    """
    return keccak256(abi_encode(validator, code, height, round))


@internal
@pure
def _signed_payload(m: SignedMessage) -> Bytes[170]:
    """
    @dev The RLP list a message's author signed (see the module notice).
    @param m The message.
    @return Bytes The encoded list.
    """
    assert m.code == PROPOSAL or m.code == PREPARE or m.code == COMMIT, "consortium: this message kind cannot equivocate"
    seal: Bytes[67] = b""
    if m.code == COMMIT:
        assert len(m.commit_seal) == SIGNATURE_SIZE, "consortium: a COMMIT carries a 65-byte commit seal"
        seal = concat(b"\xb8\x41", m.commit_seal)
    else:
        assert len(m.commit_seal) == 0, "consortium: only a COMMIT carries a commit seal"
    body: Bytes[167] = concat(
        self._byte(convert(m.code, uint256)),
        self._rlp_uint(convert(m.height, uint256)),
        self._rlp_uint(convert(m.round, uint256)),
        b"\xa0",
        m.digest,
        seal,
    )
    return concat(self._list_header(len(body)), body)


@internal
@pure
def _signer(payload: Bytes[170], signature: Bytes[65]) -> address:
    """
    @dev Recovers who signed keccak256(payload).
    @param payload The signed RLP list.
    @param signature r || s || v, v in {0, 1}.
    @return address The signer; reverts if there is none.
    """
    assert len(signature) == SIGNATURE_SIZE, "consortium: a signature is 65 bytes"
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert v <= 1, "consortium: signature recovery id must be 0 or 1"
    signer: address = ecrecover(
        keccak256(payload),
        v + 27,
        extract32(signature, 0, output_type=uint256),
        extract32(signature, 32, output_type=uint256),
    )
    assert signer != empty(address), "consortium: signature does not recover"
    return signer


@internal
@pure
def _evidence(payload_a: Bytes[170], signature_a: Bytes[65], payload_b: Bytes[170], signature_b: Bytes[65]) -> Bytes[484]:
    """
    @dev The evidence encoding RLP([1, [payload A, signature A], [payload
         B, signature B]]) of `node/evidence.py`.
    @return Bytes The encoded evidence.
    """
    body: Bytes[481] = concat(
        self._byte(EVIDENCE_VERSION),
        self._list_header(len(payload_a) + 2 + SIGNATURE_SIZE),
        payload_a,
        b"\xb8\x41",
        signature_a,
        self._list_header(len(payload_b) + 2 + SIGNATURE_SIZE),
        payload_b,
        b"\xb8\x41",
        signature_b,
    )
    return concat(self._list_header(len(body)), body)


@internal
@pure
def _byte(x: uint256) -> Bytes[1]:
    """
    @dev One byte.
    @param x A value below 256.
    @return Bytes The byte x.
    """
    return slice(convert(x, bytes32), 31, 1)


@internal
@pure
def _rlp_uint(x: uint256) -> Bytes[33]:
    """
    @dev The RLP encoding of an unsigned integer: big-endian without
         leading zeros, a single byte below 0x80 as itself, otherwise
         prefixed with 0x80 + its length (0 is the empty string, 0x80).
    @param x The integer.
    @return Bytes Its encoding.
    """
    if x == 0:
        return b"\x80"
    if x < 128:
        return self._byte(x)
    n: uint256 = 0
    rest: uint256 = x
    for i: uint256 in range(32):
        if rest == 0:
            break
        rest = rest >> 8
        n += 1
    return concat(self._byte(128 + n), slice(convert(x, bytes32), 32 - n, n))


@internal
@pure
def _list_header(n: uint256) -> Bytes[3]:
    """
    @dev The RLP header of a list whose items take n bytes.
    @param n The items' length, below 65536.
    @return Bytes 0xc0 + n, 0xf8 n or 0xf9 n (two bytes).
    """
    if n < 56:
        return self._byte(192 + n)
    if n < 256:
        return concat(b"\xf8", self._byte(n))
    return concat(b"\xf9", slice(convert(n, bytes32), 30, 2))
