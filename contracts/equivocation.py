"""Equivocation reports: the calldata of ``Consortium.reportEquivocation`` and its event.

A validator that signs two conflicting PROPOSALs, PREPAREs or COMMITs for one height and round
is reported to the Consortium contract (``contracts/equivocation.vy``) as two
:class:`SignedMessage` tuples: the decoded fields of what the author signed, and the 65-byte
signature ``r ‖ s ‖ v`` (v ∈ {0, 1}). The contract rebuilds the signed RLP itself, so the
fields are all it needs; :mod:`node.evidence` turns stored evidence into these tuples.

The contract keeps one record per (validator, code, height, round), read with
``equivocationReport`` (:func:`encode_report_query`, :func:`decode_report_record`), and emits
``EquivocationReported(validator indexed, reporter indexed, code, height, round,
evidence_hash)`` (:func:`decode_reported_log`).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

#: ABI type of one signed message: (code, height, round, digest, commit seal, signature).
MESSAGE_TYPE = "(uint8,uint64,uint32,bytes32,bytes,bytes)"
#: 4-byte selector of ``reportEquivocation(SignedMessage,SignedMessage)``.
REPORT_SELECTOR = keccak(f"reportEquivocation({MESSAGE_TYPE},{MESSAGE_TYPE})".encode())[:4]
#: 4-byte selector of ``equivocationReport(address,uint8,uint64,uint32)``.
QUERY_SELECTOR = keccak(b"equivocationReport(address,uint8,uint64,uint32)")[:4]
#: topic0 of ``EquivocationReported``.
REPORTED_TOPIC = keccak(b"EquivocationReported(address,address,uint8,uint64,uint32,bytes32)")


@dataclass(frozen=True)
class SignedMessage:
    """One signed QBFT message, as ``reportEquivocation`` takes it."""

    #: Message code: 0x12 PROPOSAL, 0x13 PREPARE, 0x14 COMMIT.
    code: int
    #: Height (block number), below 2**64.
    height: int
    #: Round, below 2**32.
    round: int
    #: Digest of the block the message is about, 32 bytes.
    digest: bytes
    #: The COMMIT's commit seal (65 bytes); empty for PROPOSAL and PREPARE.
    commit_seal: bytes
    #: The author's signature over Keccak-256 of the signed RLP: ``r ‖ s ‖ v``, v ∈ {0, 1}.
    signature: bytes

    def as_tuple(self) -> tuple[int, int, int, bytes, bytes, bytes]:
        """The ABI tuple, in the contract's field order."""
        return (self.code, self.height, self.round, self.digest, self.commit_seal, self.signature)


@dataclass(frozen=True)
class EquivocationReport:
    """An ``EquivocationReported`` event."""

    #: The equivocating validator's address (20 bytes).
    validator: bytes
    #: The member account that reported it (20 bytes).
    reporter: bytes
    #: Message code of the two messages.
    code: int
    #: Their height.
    height: int
    #: Their round.
    round: int
    #: Keccak-256 of the evidence encoding of :mod:`node.evidence`.
    evidence_hash: bytes


def encode_report_call(first: SignedMessage, second: SignedMessage) -> bytes:
    """Calldata of ``reportEquivocation(first, second)``.

    Parameters
    ----------
    first, second : SignedMessage
        The two conflicting messages.

    Returns
    -------
    bytes
        Selector and ABI-encoded arguments.
    """
    return REPORT_SELECTOR + abi_encode(
        [MESSAGE_TYPE, MESSAGE_TYPE], [first.as_tuple(), second.as_tuple()]
    )


def encode_report_query(validator: bytes, code: int, height: int, round_: int) -> bytes:
    """Calldata of ``equivocationReport(validator, code, height, round)``.

    Parameters
    ----------
    validator : bytes
        The validator's 20-byte address.
    code, height, round_ : int
        Message code, height and round of the equivocation.

    Returns
    -------
    bytes
        Selector and ABI-encoded arguments.
    """
    return QUERY_SELECTOR + abi_encode(
        ["address", "uint8", "uint64", "uint32"], [validator, code, height, round_]
    )


def decode_report_record(output: bytes) -> tuple[bytes, bytes, int]:
    """Decode what ``equivocationReport`` returns.

    Parameters
    ----------
    output : bytes
        The call's return data.

    Returns
    -------
    tuple of (bytes, bytes, int)
        Evidence hash (32 zero bytes if not reported), reporter address (20 bytes) and the
        number of the block that recorded it.
    """
    ((evidence_hash, reporter, reported_at),) = abi_decode(["(bytes32,address,uint256)"], output)
    return bytes(evidence_hash), bytes.fromhex(reporter[2:]), int(reported_at)


def decode_reported_log(topics: list[bytes], data: bytes) -> EquivocationReport:
    """Decode an ``EquivocationReported`` log.

    Parameters
    ----------
    topics : list of bytes
        The log's topics: :data:`REPORTED_TOPIC`, validator, reporter.
    data : bytes
        The log's data: code, height, round, evidence hash.

    Returns
    -------
    EquivocationReport
        The decoded event.

    Raises
    ------
    ValueError
        The log is not an ``EquivocationReported`` event.
    """
    if len(topics) != 3 or topics[0] != REPORTED_TOPIC:
        raise ValueError("not an EquivocationReported log")
    code, height, round_, evidence_hash = abi_decode(["uint8", "uint64", "uint32", "bytes32"], data)
    return EquivocationReport(
        validator=topics[1][12:],
        reporter=topics[2][12:],
        code=int(code),
        height=int(height),
        round=int(round_),
        evidence_hash=bytes(evidence_hash),
    )
