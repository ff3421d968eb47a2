"""State of one QBFT validator: static configuration, per-height round state, signing record.

The core (:mod:`consensus.qbft`) is ``step(state, event) -> (state, actions)``; everything it
knows is in a :class:`NodeState`, a frozen dataclass. Its parts:

- :class:`Config` — what does not change while the node runs: its address, the validator
  schedule, timeouts, and the *pure* functions the runtime injects (signer, signature recovery,
  seal digest). They are functions, not I/O: same input, same output. Block validation is not
  among them: the runtime validates a proposed block before the core sees the proposal and
  passes the verdict in the event (``ProposalReceived.block_valid``).
- round state for the current height (Dafny ``NodeState``): round, the proposal accepted in it,
  the latest prepared certificate, and the messages received, indexed so quorums are cheap.
- :class:`SigningRecord` — what this validator signed at the current height. It is emitted in
  a ``Persist`` action *before* every signed message leaves the core, and a core restored from
  it (:func:`consensus.qbft.restore`) never signs a conflicting PROPOSAL, PREPARE or COMMIT for
  a (height, round) it already signed (CometBFT's ``privval`` last-sign-state, per round).

Mappings in the state are plain dicts typed as read-only ``Mapping``: the core never mutates
one, it builds a new dict (copy on write), so an old state stays valid after ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rlp

from consensus.inputs import Received
from consensus.messages import (
    MAX_HEIGHT,
    MAX_JUSTIFICATION,
    MAX_ROUND,
    Block,
    Commit,
    MalformedMessage,
    MessageKind,
    Prepare,
    PreparePayload,
    Proposal,
    RoundChange,
    RoundChangePayload,
    Signed,
    _Decoder,
    _signed_item,
)

#: ``signer(digest) -> signature``: the validator key as a capability (RFC 6979: deterministic).
Signer = Callable[[bytes], bytes]
#: ``recover(digest, signature) -> address`` or None if the signature does not recover.
Recover = Callable[[bytes, bytes], bytes | None]
#: ``seal_digest(block, round) -> bytes``: what a commit seal signs (extradata.commit_digest).
SealDigest = Callable[[Block, int], bytes]


@dataclass(frozen=True)
class ValidatorSchedule:
    """Which validators sign which heights: a table of (first height, sorted validators)."""

    #: Entries sorted by first height; an entry applies from its height until the next entry.
    entries: tuple[tuple[int, tuple[bytes, ...]], ...]

    def at(self, height: int) -> tuple[bytes, ...]:
        """The validator set for ``height`` (sorted addresses); empty if none is known."""
        found: tuple[bytes, ...] = ()
        for first, validators in self.entries:
            if first > height:
                break
            found = validators
        return found

    def with_change(self, height: int, validators: tuple[bytes, ...]) -> ValidatorSchedule:
        """The schedule with ``validators`` (sorted here) in force from ``height`` on."""
        kept = tuple(e for e in self.entries if e[0] < height)
        return ValidatorSchedule(kept + ((height, tuple(sorted(validators))),))

    @staticmethod
    def fixed(validators: tuple[bytes, ...]) -> ValidatorSchedule:
        """One validator set for every height."""
        return ValidatorSchedule(((0, tuple(sorted(validators))),))


@dataclass(frozen=True)
class Config:
    """A validator's static configuration and the pure functions the runtime injects."""

    #: This node's address (20 bytes); need not be a validator (then it only follows).
    address: bytes
    #: Signs a 32-byte digest with this node's key. Signing is deterministic (RFC 6979), so
    #: the core stays a function; the key itself never appears in the state.
    signer: Signer = field(repr=False, compare=False)
    #: Recovers the signer address of a signature over a digest (None if malformed).
    recover: Recover = field(repr=False, compare=False)
    #: The digest a commit seal signs for a block committed in a round.
    seal_digest: SealDigest = field(repr=False, compare=False)
    #: Round 0 timeout (Besu ``requesttimeoutseconds``), in the runtime's time unit (ms).
    request_timeout: int = 1000
    #: Cap on ``request_timeout * 2**round`` (Besu has none; an uncapped doubling makes
    #: recovery after a long partition take as long as the partition did).
    max_timeout: int = 32_000
    #: Future-round messages (PREPARE / COMMIT) kept per author: a flood beyond is dropped.
    future_round_window: int = 8
    #: Messages kept for the next height (arrived before this node imported the current one).
    future_height_buffer: int = 256


@dataclass(frozen=True)
class PreparedCertificate:
    """A quorum of prepares for one block in one round (Dafny ``lastPreparedBlock/Round``)."""

    #: Round in which the block was prepared.
    round: int
    #: The prepared block.
    block: Block
    #: A quorum of signed prepares for (height, round, block.digest).
    prepares: tuple[Signed[PreparePayload], ...]


@dataclass(frozen=True)
class SignedEntry:
    """One thing this validator signed: (round, kind) → digest."""

    #: Round of the signed message.
    round: int
    #: PROPOSAL, PREPARE, COMMIT or ROUND_CHANGE.
    kind: MessageKind
    #: Block digest signed (for ROUND_CHANGE: the prepared digest, or b"" if none).
    digest: bytes


@dataclass(frozen=True)
class SigningRecord:
    """What a validator must remember across a crash to stay safe at one height.

    The runtime writes it durably (fsync) when the core emits ``Persist`` and only then
    performs the actions that follow it. It is the whole record for the height, not a delta,
    so the runtime keeps only the newest one.
    """

    #: Height this record is for; a record for another height is irrelevant after restart.
    height: int
    #: Highest round this validator entered at ``height``.
    round: int
    #: Everything signed at ``height``, in signing order.
    signed: tuple[SignedEntry, ...]
    #: The latest prepared certificate (it must survive: round changes report it).
    prepared: PreparedCertificate | None

    def digest_signed(self, round_: int, kind: MessageKind) -> bytes | None:
        """The digest signed for (round, kind), None if nothing was."""
        for entry in self.signed:
            if entry.round == round_ and entry.kind == kind:
                return entry.digest
        return None


@dataclass(frozen=True)
class BlockRequest:
    """A block this node asked the runtime to build, as proposer of (height, round)."""

    #: Height to build for.
    height: int
    #: Round to propose in.
    round: int
    #: The round-change justification the proposal will carry (empty for round 0).
    round_changes: tuple[Signed[RoundChangePayload], ...] = ()


@dataclass(frozen=True)
class NodeState:
    """Everything one validator's core knows (Dafny ``NodeState``, per height)."""

    #: Static configuration and injected pure functions.
    config: Config
    #: Validator sets by height (changes arrive with ``BlockImported``).
    validators: ValidatorSchedule
    #: The height being decided (chain head + 1).
    height: int
    #: The current round at ``height``.
    round: int = 0
    #: A quorum is known to have reached ``round`` (round 0: always). See upon_round_timeout.
    round_synced: bool = True
    #: Id of the live round timer (ids increase; older RoundTimeouts are stale).
    timer: int = 0
    #: The proposal accepted in the current round (Dafny ``proposalAcceptedForCurrentRound``).
    proposal: Proposal | None = None
    #: The latest prepared certificate at ``height`` (Dafny ``lastPreparedRound/Block``).
    prepared: PreparedCertificate | None = None
    #: PREPAREs received at ``height`` for the current and near-future rounds, by
    #: (round, author); the first one per key is kept.
    prepares: Mapping[tuple[int, bytes], Prepare] = field(default_factory=dict)
    #: COMMITs whose seal is verified against the accepted proposal of their round.
    commits: Mapping[tuple[int, bytes], Commit] = field(default_factory=dict)
    #: COMMITs for rounds without an accepted proposal yet (seal not checkable yet).
    pending_commits: Mapping[tuple[int, bytes], Commit] = field(default_factory=dict)
    #: The highest-round ROUND_CHANGE received from each author at ``height`` (bounded by n).
    round_changes: Mapping[bytes, RoundChange] = field(default_factory=dict)
    #: What this node signed at ``height`` (persisted before anything signed is sent).
    record: SigningRecord | None = None
    #: The block build request outstanding, if this node is a proposer waiting for a block.
    block_request: BlockRequest | None = None
    #: Digest finalized at ``height`` by this node (CommitBlock emitted), awaiting import.
    committed: bytes | None = None
    #: Network inputs for ``height + 1`` received early, replayed when the height starts.
    future: tuple[Received, ...] = ()
    #: Set when the core stopped itself (an impossible state); all later input is ignored.
    halted: str | None = None


# ------------------------------------------------------------------- signing record codec
#
# What the runtime persists (NodeKeys.last_signed) is RLP::
#
#     [height, round, [[round, kind, digest], ...], prepared]
#     prepared = [] | [prepared round, block payload, [signed prepare, ...]]
#
# with signed prepares as on the wire (consensus.messages). Decoding recovers every prepare's
# author again, so a corrupted record cannot smuggle in a certificate it does not prove.


def encode_record(record: SigningRecord) -> bytes:
    """RLP of a :class:`SigningRecord` (layout above)."""
    prepared: list[Any] = []
    if record.prepared is not None:
        cert = record.prepared
        prepared = [cert.round, cert.block.payload, [_signed_item(p) for p in cert.prepares]]
    signed = [[e.round, int(e.kind), e.digest] for e in record.signed]
    return bytes(rlp.encode([record.height, record.round, signed, prepared]))


def decode_record(
    data: bytes, recover: Recover, block_digest: Callable[[bytes], bytes]
) -> SigningRecord:
    """Inverse of :func:`encode_record`; :class:`MalformedMessage` if it does not parse."""
    try:
        item = rlp.decode(data, strict=True)
    except Exception as exc:  # rlp raises several types
        raise MalformedMessage(f"signing record is not RLP: {exc}") from exc
    d = _Decoder(recover, block_digest, None, MAX_JUSTIFICATION)
    height_item, round_item, signed_item, prepared_item = d.list_(item, "signing record", 4)
    entries = []
    for entry in d.list_(signed_item, "signed entries"):
        r, kind, digest = d.list_(entry, "signed entry", 3)
        try:
            message_kind = MessageKind(d.int_(kind, "kind", 255))
        except ValueError as exc:
            raise MalformedMessage(f"signed entry: unknown kind {kind!r}") from exc
        entries.append(
            SignedEntry(d.int_(r, "round", MAX_ROUND), message_kind, d.bytes_(digest, "digest"))
        )
    prepared = None
    if d.list_(prepared_item, "prepared certificate"):
        r, payload, prepares = d.list_(prepared_item, "prepared certificate", 3)
        unrecovered = d.signed_list(prepares, MessageKind.PREPARE, "prepared certificate prepares")
        prepared = PreparedCertificate(
            d.int_(r, "prepared round", MAX_ROUND),
            d.block(d.bytes_(payload, "prepared block")),
            d.recovered_all(unrecovered),
        )
    return SigningRecord(
        d.int_(height_item, "height", MAX_HEIGHT),
        d.int_(round_item, "round", MAX_ROUND),
        tuple(entries),
        prepared,
    )
