"""Validation of QBFT messages before the core trusts them (Besu ``qbft-core/validation/``).

Every message the core acts on passes one of these checks first; each raises
:class:`InvalidMessage` naming the rule broken. Rules (Dafny ``node_auxiliary_functions.dfy``):

- the author is a validator of the message's height, and the signature over the payload's
  ``signing_digest`` recovers to the author (``recoverSigned*Author(m) in validators``);
- PROPOSAL: the author is the proposer of (height, round); ``block.digest`` equals the signed
  digest; round 0 carries no justification; round r > 0 needs a quorum of ROUND_CHANGE payloads for
  (height, r) from distinct validators, and — if any of them reports a prepared certificate —
  the block must be the one of the highest prepared round and come with a quorum of PREPAREs
  for it (``isProposalJustification``);
- ROUND_CHANGE: prepared round and digest both present or both absent, prepared round below
  the target round, the prepared block has that digest and a quorum of PREPAREs proves it
  (Besu ``RoundChangeMessageValidator``);
- COMMIT: the commit seal recovers to the author over ``seal_digest(block, round)``, checked
  once the proposal's block is known (``validateCommit``).

Height and round freshness (stale input) is the core's business, not this module's: a message
can be valid and still be too old to matter. Whether a proposed *block* is valid (header,
execution, roots) is the runtime's: it arrives in ``ProposalReceived.block_valid``.

Proposer selection: validators sorted by address, proposer of (height, round) is index
``(height + round) mod n`` — round-robin by height and round. Besu's ``ProposerSelector``
instead offsets from the *previous block's* proposer (+1 per block, +round); both rotate every
block and every round, ours needs no chain lookup. Documented, not Besu-compatible.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from consensus import extradata
from consensus.messages import (
    Block,
    Commit,
    Prepare,
    PreparePayload,
    Proposal,
    RoundChange,
    RoundChangePayload,
    Signed,
)
from consensus.state import Recover, SealDigest

#: ceil(2n/3) — a module attribute so tests can plant an off-by-one and watch checkers fail.
quorum = extradata.quorum


class InvalidMessage(ValueError):
    """A consensus message breaks a validation rule; the reason names which."""


def max_faulty(validator_count: int) -> int:
    """f = floor((n - 1) / 3): faulty validators tolerated."""
    return (validator_count - 1) // 3


def proposer_for(validators: Sequence[bytes], height: int, round_: int) -> bytes:
    """The proposer of (height, round): sorted validators[(height + round) mod n]."""
    return validators[(height + round_) % len(validators)]


def check_signature(signed: Signed[Any], validators: Sequence[bytes], recover: Recover) -> None:
    """The author is a validator and the signature over the payload recovers to it."""
    if signed.author not in validators:
        raise InvalidMessage(f"author 0x{signed.author.hex()} is not a validator")
    if recover(signed.payload.signing_digest, signed.signature) != signed.author:
        raise InvalidMessage("signature does not recover to the author")


def validate_prepare(message: Prepare, validators: Sequence[bytes], recover: Recover) -> None:
    """A PREPARE from a validator, correctly signed."""
    check_signature(message.signed, validators, recover)


def validate_commit(message: Commit, validators: Sequence[bytes], recover: Recover) -> None:
    """A COMMIT from a validator, correctly signed (the seal is checked by validate_seal)."""
    check_signature(message.signed, validators, recover)


def validate_seal(message: Commit, block: Block, seal_digest: SealDigest, recover: Recover) -> None:
    """The COMMIT is for ``block`` and its commit seal recovers to its author."""
    payload = message.signed.payload
    if payload.digest != block.digest:
        raise InvalidMessage("commit is for another block")
    if recover(seal_digest(block, payload.round), payload.commit_seal) != message.signed.author:
        raise InvalidMessage("commit seal does not recover to the author")


def check_prepare_certificate(
    prepares: Iterable[Signed[PreparePayload]],
    height: int,
    round_: int,
    digest: bytes,
    validators: Sequence[bytes],
    recover: Recover,
) -> None:
    """``prepares`` are a quorum of distinct validators' PREPAREs for (height, round, digest)."""
    authors: set[bytes] = set()
    for prepare in prepares:
        payload = prepare.payload
        if payload.height != height or payload.round != round_ or payload.digest != digest:
            raise InvalidMessage("prepare in certificate is for another height/round/block")
        check_signature(prepare, validators, recover)
        authors.add(prepare.author)
    if len(authors) < quorum(len(validators)):
        raise InvalidMessage(f"prepared certificate has {len(authors)} distinct prepares")


def _check_round_change_payload(
    signed: Signed[RoundChangePayload],
    height: int,
    round_: int,
    validators: Sequence[bytes],
    recover: Recover,
) -> None:
    """Dafny ``validRoundChange``: height, round, prepared metadata shape, author, signature."""
    payload = signed.payload
    if payload.height != height or payload.round != round_:
        raise InvalidMessage("round change is for another height/round")
    has_round = payload.prepared_round is not None
    has_digest = payload.prepared_digest is not None
    if has_round != has_digest:
        raise InvalidMessage("prepared round and prepared digest must come together")
    if payload.prepared_round is not None and not 0 <= payload.prepared_round < round_:
        raise InvalidMessage("prepared round must be below the target round")
    check_signature(signed, validators, recover)


def validate_round_change(
    message: RoundChange, validators: Sequence[bytes], recover: Recover
) -> None:
    """A ROUND_CHANGE whose prepared certificate, if it claims one, is proven."""
    payload = message.signed.payload
    _check_round_change_payload(message.signed, payload.height, payload.round, validators, recover)
    if payload.prepared_digest is None or payload.prepared_round is None:
        if message.prepared_block is not None or message.prepares:
            raise InvalidMessage("round change carries evidence for no prepared certificate")
        return
    if message.prepared_block is None or message.prepared_block.digest != payload.prepared_digest:
        raise InvalidMessage("round change's prepared block does not match its digest")
    check_prepare_certificate(
        message.prepares,
        payload.height,
        payload.prepared_round,
        payload.prepared_digest,
        validators,
        recover,
    )


def highest_prepared(
    round_changes: Iterable[Signed[RoundChangePayload]],
) -> Signed[RoundChangePayload] | None:
    """The round change with the highest prepared round (Dafny ``isHighestPrepared``), if any.

    Ties (same prepared round) carry the same digest in any execution with at most f faults;
    the first is taken.
    """
    best: Signed[RoundChangePayload] | None = None
    for signed in round_changes:
        prepared = signed.payload.prepared_round
        if prepared is None:
            continue
        if best is None or prepared > (best.payload.prepared_round or 0):
            best = signed
    return best


def validate_proposal(
    message: Proposal,
    validators: Sequence[bytes],
    recover: Recover,
) -> None:
    """Dafny ``isValidProposal`` minus the freshness part (the core checks the round) and
    ``validateNewBlock`` (the runtime's verdict, ``ProposalReceived.block_valid``)."""
    payload = message.signed.payload
    height, round_ = payload.height, payload.round
    if message.signed.author != proposer_for(validators, height, round_):
        raise InvalidMessage("proposal not from the proposer of its round")
    check_signature(message.signed, validators, recover)
    if message.block.digest != payload.digest:
        raise InvalidMessage("proposed block does not match the signed digest")
    if round_ == 0:
        if message.round_changes or message.prepares:
            raise InvalidMessage("round 0 proposal carries a justification")
    else:
        authors: set[bytes] = set()
        for signed in message.round_changes:
            _check_round_change_payload(signed, height, round_, validators, recover)
            authors.add(signed.author)
        if len(authors) < quorum(len(validators)):
            raise InvalidMessage(f"justification has {len(authors)} distinct round changes")
        best = highest_prepared(message.round_changes)
        if best is None:
            if message.prepares:
                raise InvalidMessage("prepares justify no prepared certificate")
        else:
            assert best.payload.prepared_round is not None
            if best.payload.prepared_digest != payload.digest:
                raise InvalidMessage("proposal is not the block of the highest prepared round")
            check_prepare_certificate(
                message.prepares,
                height,
                best.payload.prepared_round,
                payload.digest,
                validators,
                recover,
            )
