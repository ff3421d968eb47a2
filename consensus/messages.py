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

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Generic, TypeVar

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


@dataclass(frozen=True)
class Proposal:
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

    @property
    def height(self) -> int:
        return self.signed.payload.height

    @property
    def round(self) -> int:
        return self.signed.payload.round


@dataclass(frozen=True)
class Prepare:
    """PREPARE 0x13."""

    #: The author's signed (height, round, digest).
    signed: Signed[PreparePayload]

    kind = MessageKind.PREPARE

    @property
    def height(self) -> int:
        return self.signed.payload.height

    @property
    def round(self) -> int:
        return self.signed.payload.round


@dataclass(frozen=True)
class Commit:
    """COMMIT 0x14."""

    #: The author's signed (height, round, digest, commit seal).
    signed: Signed[CommitPayload]

    kind = MessageKind.COMMIT

    @property
    def height(self) -> int:
        return self.signed.payload.height

    @property
    def round(self) -> int:
        return self.signed.payload.round


@dataclass(frozen=True)
class RoundChange:
    """ROUND_CHANGE 0x15: the signed payload plus the evidence for its prepared certificate."""

    #: The author's signed (height, target round, prepared round, prepared digest).
    signed: Signed[RoundChangePayload]
    #: The block of the prepared certificate (None if nothing prepared).
    prepared_block: Block | None = None
    #: A quorum of prepares for (height, prepared round, prepared digest); empty if none.
    prepares: tuple[Signed[PreparePayload], ...] = ()

    kind = MessageKind.ROUND_CHANGE

    @property
    def height(self) -> int:
        return self.signed.payload.height

    @property
    def round(self) -> int:
        return self.signed.payload.round


#: Every QBFT consensus message.
Message = Proposal | Prepare | Commit | RoundChange
