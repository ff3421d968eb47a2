"""QBFT wire messages: signed payloads, the opaque block, and what each message carries.

QBFT (Besu ``consensus/qbft-core`` ``messagewrappers/``, Dafny ``types.dfy``) has four message
kinds. Each carries a *signed payload* — the part covered by the author's signature — and some
carry unsigned evidence beside it::

    PROPOSAL      0x12  Signed[ProposalPayload(height, round, digest)]
                        + block
                        + round-change justification: Signed[RoundChangePayload] × quorum
                        + prepares of the best prepared certificate: Signed[PreparePayload] × quorum
    PREPARE       0x13  Signed[PreparePayload(height, round, digest)]
    COMMIT        0x14  Signed[CommitPayload(height, round, digest, commit_seal)]
    ROUND_CHANGE  0x15  Signed[RoundChangePayload(height, round, prepared_round, prepared_digest)]
                        + prepared block + prepares proving it was prepared

The block is opaque: a :class:`Block` is a ``digest`` plus a ``payload`` the runtime understands
(an RLP header and body). ``digest`` identifies the block across rounds — Besu's block hash,
which excludes the round and the commit seals — so a block prepared in round r can be
re-proposed in round r' > r under the same digest. The commit seal signs a *different* digest,
``seal_digest(block, round)``, which includes the round (Besu: the header hash with the seals
emptied and the round kept, :func:`consensus.extradata.commit_digest`); the core receives that
function from the runtime (:class:`consensus.state.Config`).

A signature is ``signer(signing_digest(payload))``; the digest is Keccak-256 of the RLP of
``[code, height, round, ...]``, so a signature for one message kind can never be replayed as
another. Signatures are opaque bytes to this module: their scheme lives in the ``signer`` /
``recover`` functions the runtime injects.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any, Generic, NamedTuple, TypeVar

import rlp
from eth_hash.auto import keccak


class MessageKind(IntEnum):
    """QBFT message codes (Besu ``QbftV1``)."""

    PROPOSAL = 0x12
    PREPARE = 0x13
    COMMIT = 0x14
    ROUND_CHANGE = 0x15


@dataclass(frozen=True)
class Block:
    """A block as the core sees it: an identity and bytes it never interprets."""

    #: Identity across rounds (Besu's block hash: excludes round and commit seals), 32 bytes.
    digest: bytes
    #: Whatever the runtime needs to validate, re-stamp and import the block (header + body).
    payload: bytes


@dataclass(frozen=True)
class ProposalPayload:
    """The signed part of a PROPOSAL."""

    #: Height (block number) proposed for.
    height: int
    #: Round proposed in.
    round: int
    #: Digest of the proposed block.
    digest: bytes

    @cached_property
    def signing_digest(self) -> bytes:
        """What the author signs: Keccak-256(RLP([0x12, height, round, digest]))."""
        return keccak(rlp.encode([MessageKind.PROPOSAL, self.height, self.round, self.digest]))


@dataclass(frozen=True)
class PreparePayload:
    """The signed part of a PREPARE: "I accepted the proposal of ``digest`` in this round"."""

    #: Height of the proposal prepared.
    height: int
    #: Round of the proposal prepared.
    round: int
    #: Digest of the block prepared.
    digest: bytes

    @cached_property
    def signing_digest(self) -> bytes:
        """What the author signs: Keccak-256(RLP([0x13, height, round, digest]))."""
        return keccak(rlp.encode([MessageKind.PREPARE, self.height, self.round, self.digest]))


@dataclass(frozen=True)
class CommitPayload:
    """The signed part of a COMMIT: a quorum of prepares was seen; here is my commit seal."""

    #: Height of the block committed.
    height: int
    #: Round in which the block is committed (the seal covers it).
    round: int
    #: Digest of the block committed.
    digest: bytes
    #: Signature over ``seal_digest(block, round)``; goes into the header's extraData.
    commit_seal: bytes

    @cached_property
    def signing_digest(self) -> bytes:
        """What the author signs: Keccak-256(RLP([0x14, height, round, digest, seal]))."""
        return keccak(
            rlp.encode(
                [MessageKind.COMMIT, self.height, self.round, self.digest, self.commit_seal]
            )
        )


@dataclass(frozen=True)
class RoundChangePayload:
    """The signed part of a ROUND_CHANGE: "move to ``round``; this is what I last prepared"."""

    #: Height whose round is changing.
    height: int
    #: The round the author wants to move to.
    round: int
    #: Round of the author's latest prepared certificate, None if it prepared nothing.
    prepared_round: int | None
    #: Digest of the block of that certificate, None if it prepared nothing.
    prepared_digest: bytes | None

    @cached_property
    def signing_digest(self) -> bytes:
        """Keccak-256(RLP([0x15, height, round, [prepared_round, prepared_digest] or []]))."""
        metadata: list[object] = []
        if self.prepared_round is not None and self.prepared_digest is not None:
            metadata = [self.prepared_round, self.prepared_digest]
        return keccak(
            rlp.encode([MessageKind.ROUND_CHANGE, self.height, self.round, metadata])
        )


P = TypeVar("P", ProposalPayload, PreparePayload, CommitPayload, RoundChangePayload)


@dataclass(frozen=True)
class Signed(Generic[P]):
    """A payload with its author's signature (Besu ``SignedData``)."""

    #: What was signed.
    payload: P
    #: Address (20 bytes) the author claims; validation checks the signature recovers to it.
    author: bytes
    #: Signature over ``payload.signing_digest``, in the runtime's signature scheme.
    signature: bytes


class _HeightRound:
    """Height and round of a message, read from its signed payload."""

    signed: Signed[Any]

    @property
    def height(self) -> int:
        return int(self.signed.payload.height)

    @property
    def round(self) -> int:
        return int(self.signed.payload.round)


@dataclass(frozen=True)
class Proposal(_HeightRound):
    """PROPOSAL 0x12: a block for (height, round) with the evidence that justifies it."""

    #: The proposer's signed (height, round, digest).
    signed: Signed[ProposalPayload]
    #: The proposed block; ``block.digest`` must equal ``signed.payload.digest``.
    block: Block
    #: Round > 0: a quorum of signed ROUND_CHANGE payloads for this round; round 0: empty.
    round_changes: tuple[Signed[RoundChangePayload], ...] = ()
    #: Prepares (a quorum) proving the best prepared certificate among ``round_changes``.
    prepares: tuple[Signed[PreparePayload], ...] = ()

    kind = MessageKind.PROPOSAL


@dataclass(frozen=True)
class Prepare(_HeightRound):
    """PREPARE 0x13."""

    #: The author's signed (height, round, digest).
    signed: Signed[PreparePayload]

    kind = MessageKind.PREPARE


@dataclass(frozen=True)
class Commit(_HeightRound):
    """COMMIT 0x14."""

    #: The author's signed (height, round, digest, commit seal).
    signed: Signed[CommitPayload]

    kind = MessageKind.COMMIT


@dataclass(frozen=True)
class RoundChange(_HeightRound):
    """ROUND_CHANGE 0x15: the signed payload plus the evidence for its prepared certificate."""

    #: The author's signed (height, target round, prepared round, prepared digest).
    signed: Signed[RoundChangePayload]
    #: The block of the prepared certificate (None if nothing prepared).
    prepared_block: Block | None = None
    #: A quorum of prepares for (height, prepared round, prepared digest); empty if none.
    prepares: tuple[Signed[PreparePayload], ...] = ()

    kind = MessageKind.ROUND_CHANGE


#: Every QBFT consensus message.
Message = Proposal | Prepare | Commit | RoundChange


# ------------------------------------------------------------------------------ wire codec
#
# One QBFT message on the wire (what a p2p CONSENSUS frame carries) is ``code ‖ RLP(body)``,
# after Besu ``qbft-core`` ``messagewrappers`` / ``payload``::
#
#     signed X       = [[height, round, ...X fields], signature]        (Besu SignedData)
#     PROPOSAL  0x12 = [signed proposal, [[signed round change...], [signed prepare...]], block]
#     PREPARE   0x13 = signed prepare                        fields: digest
#     COMMIT    0x14 = signed commit                         fields: digest, commit_seal
#     ROUND_CHANGE
#               0x15 = [signed round change, block or [], [signed prepare...]]
#                                       fields: [prepared_digest, prepared_round] or []
#
# Differences from Besu: the proposal's signed payload carries the block *digest* (our
# ProposalPayload) rather than the whole block, so the block travels beside it as opaque bytes
# (``Block.payload``); the author is never sent — as in Besu it is recovered from the signature
# while decoding, with the runtime's ``recover``; ``Block.digest`` is never sent either — the
# runtime's ``block_digest(payload)`` derives it, so a proposal whose block does not hash to the
# signed digest decodes fine and is refused by validation, not hidden by the codec.


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed QBFT message; the reason names what is wrong."""


#: Default largest encoded message (code byte included) the decoder accepts, in bytes.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024 - 64
#: Most signed payloads in one justification list (round changes or prepares).
MAX_JUSTIFICATION = 1024
#: Largest signature / commit seal accepted when no exact size is required.
MAX_SIGNATURE = 128
#: Heights are below 2**64 (Besu ``long``); rounds below 2**32 (as extraData's round,
#: :data:`consensus.extradata.MAX_ROUND`: a scalar of at most 4 bytes).
MAX_HEIGHT = 2**64 - 1
MAX_ROUND = 2**32 - 1
#: Bytes of a block digest.
DIGEST_SIZE = 32

#: ``recover(digest, signature) -> address`` or None (as :data:`consensus.state.Recover`).
RecoverFn = Callable[[bytes, bytes], "bytes | None"]
#: ``block_digest(payload) -> 32-byte digest``: the runtime's block hash (Besu block hash).
BlockDigestFn = Callable[[bytes], bytes]

_RlpItem = Any


def _payload_fields(
    payload: ProposalPayload | PreparePayload | CommitPayload | RoundChangePayload,
) -> list[_RlpItem]:
    head: list[_RlpItem] = [payload.height, payload.round]
    if isinstance(payload, ProposalPayload | PreparePayload):
        return [*head, payload.digest]
    if isinstance(payload, CommitPayload):
        return [*head, payload.digest, payload.commit_seal]
    metadata: list[_RlpItem] = []
    if payload.prepared_round is not None or payload.prepared_digest is not None:
        if payload.prepared_round is None or payload.prepared_digest is None:
            raise ValueError("round change: prepared round and digest must both be set or unset")
        metadata = [payload.prepared_digest, payload.prepared_round]
    return [*head, metadata]


def _signed_item(signed: Signed[Any]) -> list[_RlpItem]:
    return [_payload_fields(signed.payload), signed.signature]


def _block_item(block: Block | None) -> _RlpItem:
    return [] if block is None else block.payload


def _message_item(message: Message) -> _RlpItem:
    if isinstance(message, Proposal):
        return [
            _signed_item(message.signed),
            [
                [_signed_item(s) for s in message.round_changes],
                [_signed_item(s) for s in message.prepares],
            ],
            _block_item(message.block),
        ]
    if isinstance(message, Prepare | Commit):
        return _signed_item(message.signed)
    return [
        _signed_item(message.signed),
        _block_item(message.prepared_block),
        [_signed_item(s) for s in message.prepares],
    ]


def encode_message(message: Message) -> bytes:
    """``code ‖ RLP(body)`` for ``message`` (layout above); ValueError if it cannot be encoded.

    Sizes are not checked here beyond what RLP needs; :func:`decode_message` is the gate.
    """
    return bytes([message.kind]) + bytes(rlp.encode(_message_item(message)))


class _Unrecovered(NamedTuple):
    """A parsed signed payload whose author is not recovered yet."""

    payload: ProposalPayload | PreparePayload | CommitPayload | RoundChangePayload
    signature: bytes
    what: str


class _Decoder:
    """One decode: the injected functions and limits, and the checks on each field."""

    def __init__(
        self,
        recover: RecoverFn,
        block_digest: BlockDigestFn,
        signature_size: int | None,
        max_justification: int,
    ) -> None:
        self.recover = recover
        self.block_digest = block_digest
        self.signature_size = signature_size
        self.max_justification = max_justification

    @staticmethod
    def list_(item: _RlpItem, what: str, arity: int | None = None) -> list[_RlpItem]:
        if not isinstance(item, list):
            raise MalformedMessage(f"{what}: expected a list")
        if arity is not None and len(item) != arity:
            raise MalformedMessage(f"{what}: wrong arity, expected {arity} items, got {len(item)}")
        return item

    @staticmethod
    def bytes_(item: _RlpItem, what: str, size: int | None = None) -> bytes:
        if not isinstance(item, bytes):
            raise MalformedMessage(f"{what}: expected bytes, got a list")
        if size is not None and len(item) != size:
            raise MalformedMessage(
                f"{what}: wrong field size, expected {size} bytes, got {len(item)}"
            )
        return item

    @staticmethod
    def int_(item: _RlpItem, what: str, maximum: int) -> int:
        if not isinstance(item, bytes):
            raise MalformedMessage(f"{what}: expected an integer, got a list")
        if item[:1] == b"\x00":
            raise MalformedMessage(f"{what}: non-canonical integer (leading zero)")
        value = int.from_bytes(item, "big")
        if value > maximum:
            raise MalformedMessage(f"{what}: wrong field size, {value} exceeds {maximum}")
        return value

    def signature(self, item: _RlpItem, what: str) -> bytes:
        data = self.bytes_(item, what, self.signature_size)
        if not 1 <= len(data) <= MAX_SIGNATURE:
            raise MalformedMessage(
                f"{what}: wrong field size, {len(data)} bytes, allowed 1..{MAX_SIGNATURE}"
            )
        return data

    def signed(self, item: _RlpItem, code: MessageKind, what: str) -> _Unrecovered:
        """Parse a signed payload; its author is recovered later, once the whole message has
        parsed (no signature recovery is spent on a message that turns out malformed)."""
        fields_item, signature_item = self.list_(item, what, 2)
        arity = {
            MessageKind.PROPOSAL: 3,
            MessageKind.PREPARE: 3,
            MessageKind.COMMIT: 4,
            MessageKind.ROUND_CHANGE: 3,
        }[code]
        fields = self.list_(fields_item, f"{what} payload", arity)
        height = self.int_(fields[0], f"{what} height", MAX_HEIGHT)
        round_ = self.int_(fields[1], f"{what} round", MAX_ROUND)
        payload: ProposalPayload | PreparePayload | CommitPayload | RoundChangePayload
        if code == MessageKind.PROPOSAL:
            digest = self.bytes_(fields[2], f"{what} digest", DIGEST_SIZE)
            payload = ProposalPayload(height, round_, digest)
        elif code == MessageKind.PREPARE:
            digest = self.bytes_(fields[2], f"{what} digest", DIGEST_SIZE)
            payload = PreparePayload(height, round_, digest)
        elif code == MessageKind.COMMIT:
            payload = CommitPayload(
                height,
                round_,
                self.bytes_(fields[2], f"{what} digest", DIGEST_SIZE),
                self.signature(fields[3], f"{what} commit seal"),
            )
        else:
            metadata = self.list_(fields[2], f"{what} prepared metadata")
            if not metadata:
                payload = RoundChangePayload(height, round_, None, None)
            else:
                digest_item, prepared_item = self.list_(metadata, f"{what} prepared metadata", 2)
                prepared_digest = self.bytes_(digest_item, f"{what} prepared digest", DIGEST_SIZE)
                prepared_round = self.int_(prepared_item, f"{what} prepared round", MAX_ROUND)
                payload = RoundChangePayload(height, round_, prepared_round, prepared_digest)
        return _Unrecovered(payload, self.signature(signature_item, f"{what} signature"), what)

    def recovered(self, unrecovered: _Unrecovered) -> Signed[Any]:
        payload, signature, what = unrecovered
        author = self.recover(payload.signing_digest, signature)
        if author is None:
            raise MalformedMessage(f"{what}: signature does not recover to an address")
        return Signed(payload, author, signature)

    def recovered_all(self, items: tuple[_Unrecovered, ...]) -> tuple[Signed[Any], ...]:
        return tuple(self.recovered(x) for x in items)

    def signed_list(
        self, item: _RlpItem, code: MessageKind, what: str
    ) -> tuple[_Unrecovered, ...]:
        items = self.list_(item, what)
        if len(items) > self.max_justification:
            raise MalformedMessage(
                f"{what}: oversize, {len(items)} entries, allowed {self.max_justification}"
            )
        return tuple(self.signed(x, code, f"{what}[{i}]") for i, x in enumerate(items))

    def block(self, payload: bytes) -> Block:
        digest = self.block_digest(payload)
        if len(digest) != DIGEST_SIZE:  # the runtime's function, not the peer, is wrong
            raise ValueError(f"block_digest returned {len(digest)} bytes, not {DIGEST_SIZE}")
        return Block(digest, payload)

    def message(self, code: MessageKind, item: _RlpItem) -> Message:
        if code == MessageKind.PREPARE:
            return Prepare(self.recovered(self.signed(item, code, "prepare")))
        if code == MessageKind.COMMIT:
            return Commit(self.recovered(self.signed(item, code, "commit")))
        if code == MessageKind.PROPOSAL:
            signed_item, justification_item, block_item = self.list_(item, "proposal", 3)
            rcs_item, prepares_item = self.list_(justification_item, "proposal justification", 2)
            signed = self.signed(signed_item, code, "proposal")
            rcs = self.signed_list(rcs_item, MessageKind.ROUND_CHANGE, "proposal round changes")
            prepares = self.signed_list(prepares_item, MessageKind.PREPARE, "proposal prepares")
            payload = self.bytes_(block_item, "proposal block")
            return Proposal(
                self.recovered(signed),
                self.block(payload),
                self.recovered_all(rcs),
                self.recovered_all(prepares),
            )
        signed_item, block_item, prepares_item = self.list_(item, "round change", 3)
        signed = self.signed(signed_item, code, "round change")
        block_payload: bytes | None = None
        if block_item != []:
            block_payload = self.bytes_(block_item, "round change prepared block")
        prepares = self.signed_list(prepares_item, MessageKind.PREPARE, "round change prepares")
        return RoundChange(
            self.recovered(signed),
            None if block_payload is None else self.block(block_payload),
            self.recovered_all(prepares),
        )


def decode_message(
    data: bytes,
    recover: RecoverFn,
    block_digest: BlockDigestFn,
    *,
    max_size: int = DEFAULT_MAX_MESSAGE,
    signature_size: int | None = None,
    max_justification: int = MAX_JUSTIFICATION,
) -> Message:
    """Parse ``code ‖ RLP(body)`` into a message; raise :class:`MalformedMessage` if malformed.

    Every author is recovered from its signature with ``recover`` (a signature that recovers
    to nothing is malformed); every block digest is ``block_digest(payload)``. Nothing else is
    judged here — membership, quorum, proposer and digest agreement are
    :mod:`consensus.validation`'s. ``signature_size`` (65 for secp256k1) makes every signature
    and commit seal exactly that long; otherwise 1..:data:`MAX_SIGNATURE` bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage("not bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise MalformedMessage(f"oversize: {len(data)} bytes, allowed {max_size}")
    if len(data) < 2:
        raise MalformedMessage("too short: a code byte and an RLP body are needed")
    try:
        code = MessageKind(data[0])
    except ValueError as exc:
        raise MalformedMessage(f"unknown code 0x{data[0]:02x}") from exc
    try:
        item = rlp.decode(data[1:], strict=True)
    except Exception as exc:  # rlp raises several exception types on hostile input
        raise MalformedMessage(f"not RLP: {exc}") from exc
    decoder = _Decoder(recover, block_digest, signature_size, max_justification)
    return decoder.message(code, item)
