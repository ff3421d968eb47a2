"""QBFT as a pure state machine: ``step(state, event) -> (state, actions)``.

The core decides one block per height among ``n`` validators, ``f = floor((n-1)/3)`` of which
may be Byzantine (Besu ``consensus/qbft-core``; Consensys' Dafny spec ``dafny/spec/L1``).
One round, when the network is kind::

    proposer(h, r) ──PROPOSAL(block)──▶ all       upon_proposal: validate, PREPARE
    all ──PREPARE(digest)──▶ all                  upon_prepare: quorum → prepared, COMMIT(seal)
    all ──COMMIT(digest, seal)──▶ all             upon_commit: quorum → CommitBlock (final)

When it is not: a round timer fires (``upon_round_timeout``) and the validator sends
ROUND_CHANGE(r+1) carrying its prepared certificate; f+1 round changes for higher rounds pull a
validator forward to the smallest of them (``upon_round_change``); a quorum of round changes
for round r lets proposer(h, r) propose — the block of the highest prepared certificate if any
round change reports one (so a block that may have been committed is never abandoned), else a
fresh block the runtime builds. A block imported by sync ends the height (``upon_new_block``).

The core does no I/O. Inputs are the closed set :data:`consensus.inputs.Event`; outputs the closed set
:data:`Action`, which the runtime performs **in order**:

- ``Persist(record)``: write the signing record durably *before* performing any later action
  of the same step — every ``Broadcast`` of a signed message is preceded by one;
- ``Broadcast(message)``: send to every other validator (the core has applied it to itself);
- ``ScheduleTimeout(height, round, duration, timer)``: deliver ``RoundTimeout(height, round,
  timer)`` after ``duration`` (however the local clock runs); a newer ScheduleTimeout supersedes
  older ones — the runtime may cancel them or deliver them, the core drops stale timers;
- ``BuildBlock(height, round)``: build and execute a block, answer ``BlockProposalReady``;
- ``CommitBlock(height, round, block, seals)``: the block is final — put ``round`` and
  ``seals`` into its extraData, import it, then answer ``BlockImported``;
- ``Halt(reason)``: the core met an impossible state (a block it committed lost to another
  at import); stop consensus and alert, do not limp on (CometBFT's panics).

A runtime drives it like this (the simulator in ``tests/support/qbft_simulator.py`` is one)::

    state, actions = restore(config, validators, chain_head + 1, load_signing_record())
    perform(actions)
    for event in inbox:          # network messages (ProposalReceived, ...), timers, build
        state, actions = step(state, event)    # answers, imports (BlockImported)
        perform(actions)         # in order; Persist is fsynced before what follows it

What the runtime learns about a proposed block arrives as data: it validates the block
(header, execution, roots) *before* it hands the PROPOSAL to the core, and says so in
``ProposalReceived.block_valid`` (Malachite's ``Validity``); the core never calls back into the
runtime's block checks.

Signing is a capability: the runtime injects ``Config.signer`` (deterministic RFC 6979
signatures), so the core can put its own signed PREPAREs and ROUND_CHANGEs into the
certificates it assembles without a round trip through the runtime; and it verifies every
message's signatures, round and justification with the injected ``recover``
(:mod:`consensus.validation`) before it trusts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeVar, assert_never

from consensus import validation
from consensus.inputs import (
    BlockImported,
    BlockProposalReady,
    CommitReceived,
    Event,
    PrepareReceived,
    ProposalReceived,
    Received,
    RoundChangeReceived,
    RoundTimeout,
)
from consensus.messages import (
    Block,
    Commit,
    CommitPayload,
    Message,
    MessageKind,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    RoundChange,
    RoundChangePayload,
    Signed,
)
from consensus.state import (
    BlockRequest,
    Config,
    NodeState,
    PreparedCertificate,
    SignedEntry,
    SigningRecord,
    ValidatorSchedule,
)
from consensus.validation import InvalidMessage

# -------------------------------------------------------------------------- actions (outputs)


@dataclass(frozen=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    #: The signed message.
    message: Message


@dataclass(frozen=True)
class BuildBlock:
    """Build (and execute) a block for (height, round); answer with ``BlockProposalReady``."""

    #: Height to build.
    height: int
    #: Round it is for.
    round: int


@dataclass(frozen=True)
class ScheduleTimeout:
    """Deliver ``RoundTimeout(height, round, timer)`` after ``duration`` time units."""

    #: Height of the round.
    height: int
    #: The round.
    round: int
    #: request_timeout × 2^round, capped at max_timeout.
    duration: int
    #: Id of this timer; only the newest id of a round counts.
    timer: int = 0


@dataclass(frozen=True)
class CommitBlock:
    """``block`` is final at ``height``: seal it with ``seals`` (round ``round``) and import it."""

    #: Height finalized.
    height: int
    #: Round the block was committed in (goes into extraData; the seals cover it).
    round: int
    #: The block.
    block: Block
    #: A quorum of commit seals, ordered by validator address.
    seals: tuple[bytes, ...]


@dataclass(frozen=True)
class Persist:
    """Durably store ``record`` before performing any following action."""

    #: The signing record for the current height (whole, not a delta).
    record: SigningRecord


@dataclass(frozen=True)
class Halt:
    """Stop consensus: the core reached a state that must not happen."""

    #: What happened.
    reason: str


#: Every output of the core.
Action = Broadcast | BuildBlock | ScheduleTimeout | CommitBlock | Persist | Halt

Step = tuple[NodeState, list[Action]]

# ----------------------------------------------------------------------------- construction


def round_timeout(config: Config, round_: int) -> int:
    """request_timeout × 2^round, capped (Besu ``RoundTimer``; the cap is ours)."""
    if round_ >= 32:
        return config.max_timeout
    return min(config.request_timeout << round_, config.max_timeout)


def initial_state(config: Config, validators: ValidatorSchedule, height: int) -> Step:
    """A core starting ``height`` (chain head + 1) with nothing signed there yet."""
    state = NodeState(config=config, validators=validators, height=height)
    return _start_height(state, height)


def restore(
    config: Config, validators: ValidatorSchedule, height: int, record: SigningRecord | None
) -> Step:
    """A core restarted at ``height`` from the last persisted signing record.

    A record for another height is ignored (that height is decided). Otherwise the core
    resumes the record's round with its prepared certificate, and the record forbids it to
    sign anything conflicting with what it signed before the crash.
    """
    if record is None or record.height != height:
        return initial_state(config, validators, height)
    state = NodeState(
        config=config,
        validators=validators,
        height=height,
        round=record.round,
        round_synced=record.round == 0
        or (record.prepared is not None and record.prepared.round >= record.round),
        prepared=record.prepared,
        record=record,
    )
    state, actions = _arm_timer(state)
    if record.round == 0:
        state, more = _request_block_if_proposer(state)
    else:
        state, more = _send_round_change(state, record.round)
    return state, actions + more


# ------------------------------------------------------------------------------------ step


def step(state: NodeState, event: Event) -> Step:
    """Apply one input; return the new state and the actions to perform, in order."""
    if state.halted is not None:
        return state, []
    match event:
        case ProposalReceived():
            return upon_proposal(state, event)
        case PrepareReceived():
            return upon_prepare(state, event)
        case CommitReceived():
            return upon_commit(state, event)
        case RoundChangeReceived():
            return upon_round_change(state, event)
        case RoundTimeout():
            return upon_round_timeout(state, event)
        case BlockImported():
            return upon_new_block(state, event)
        case BlockProposalReady():
            return upon_block_proposal_ready(state, event)
        case _:
            assert_never(event)


def upon_proposal(state: NodeState, event: ProposalReceived) -> Step:
    """Accept a valid PROPOSAL and PREPARE it.

    Dafny ``UponProposal`` (``isValidProposal``); Besu ``QbftRound.handleProposalMessage``.
    Unlike Dafny, and like Besu (``QbftBlockHeightManager.handleProposalPayload``), a justified
    proposal for a *higher* round moves this validator to that round even if it accepted no
    proposal in its current one: the justification proves a quorum left the current round.
    """
    message = event.message
    if not _fresh(state, message):
        return _buffer_future(state, event)
    if message.round == state.round and state.proposal is not None:
        return state, []  # one proposal per round: duplicates and equivocations are ignored
    if not event.block_valid:
        return state, []  # the runtime found the block invalid (Dafny ``validateNewBlock``)
    try:
        validation.validate_proposal(message, _validators(state), state.config.recover)
    except InvalidMessage:
        return state, []
    actions: list[Action] = []
    if message.round > state.round:
        state, actions = _enter_round(state, message.round)
        state = replace(state, round_synced=True)  # the justification proves a quorum is here
    state, more = _accept_proposal(state, message)
    return state, actions + more


def upon_prepare(state: NodeState, event: PrepareReceived) -> Step:
    """Count a PREPARE; at a quorum for the accepted proposal, become prepared and COMMIT.

    Dafny ``UponPrepare``; Besu ``QbftRound.handlePrepareMessage`` / ``RoundState``.
    """
    message = event.message
    if not _fresh(state, message) or message.round > state.round + state.config.future_round_window:
        return _buffer_future(state, event)
    key = (message.round, message.signed.author)
    if key in state.prepares:
        return state, []
    try:
        validation.validate_prepare(message, _validators(state), state.config.recover)
    except InvalidMessage:
        return state, []
    state = replace(state, prepares=_with(state.prepares, key, message))
    if message.round != state.round:
        return state, []
    return _check_prepared(state)


def upon_commit(state: NodeState, event: CommitReceived) -> Step:
    """Count a COMMIT whose seal is valid; at a quorum, the block is final (CommitBlock).

    Dafny ``UponCommit`` (``validateCommit``); Besu ``QbftRound.handleCommitMessage``.
    """
    message = event.message
    if not _fresh(state, message) or message.round > state.round + state.config.future_round_window:
        return _buffer_future(state, event)
    key = (message.round, message.signed.author)
    if key in state.commits or key in state.pending_commits:
        return state, []
    try:
        validation.validate_commit(message, _validators(state), state.config.recover)
    except InvalidMessage:
        return state, []
    if message.round != state.round or state.proposal is None:
        return replace(state, pending_commits=_with(state.pending_commits, key, message)), []
    try:
        validation.validate_seal(
            message, state.proposal.block, state.config.seal_digest, state.config.recover
        )
    except InvalidMessage:
        return state, []
    state = replace(state, commits=_with(state.commits, key, message))
    return _check_committed(state)


def upon_round_change(state: NodeState, event: RoundChangeReceived) -> Step:
    """Keep the newest ROUND_CHANGE per validator; apply the f+1 jump and the quorum rule.

    Dafny ``UponRoundChange``: f+1 round changes for rounds above the current one move this
    validator to the smallest of those rounds (and it sends its own round change there); a
    quorum for the current round lets its proposer propose (Besu ``RoundChangeManager``,
    ``QbftBlockHeightManager.handleRoundChangePayload``).
    """
    message = event.message
    if not _fresh(state, message):
        return _buffer_future(state, event)
    author = message.signed.author
    known = state.round_changes.get(author)
    if known is not None and known.round >= message.round:
        return state, []
    try:
        validation.validate_round_change(message, _validators(state), state.config.recover)
    except InvalidMessage:
        return state, []
    state = replace(state, round_changes=_with(state.round_changes, author, message))
    actions: list[Action] = []
    higher = [rc.round for rc in state.round_changes.values() if rc.round > state.round]
    if len(higher) >= validation.max_faulty(len(_validators(state))) + 1:
        state, actions = _enter_round(state, min(higher))
        state, more = _send_round_change(state, state.round)
        actions += more
    if not state.round_synced and _round_support(state, state.round) >= validation.quorum(
        len(_validators(state))
    ):
        # A quorum has now reached this round: the round really starts, so does its timer.
        state, more = _arm_timer(replace(state, round_synced=True))
        actions += more
    state, more = _propose_after_round_change(state)
    return state, actions + more


def upon_round_timeout(state: NodeState, event: RoundTimeout) -> Step:
    """The current round expired: move to round + 1 and send ROUND_CHANGE.

    Dafny ``UponRoundTimeout``; Besu ``QbftBlockHeightManager.roundExpired``.

    Round synchronisation (ours; neither Dafny nor Besu has it): a validator leaves round r > 0
    by timeout only once a quorum of validators has reached r (``round_synced``: their newest
    ROUND_CHANGEs are for r or above, or a justified proposal for r arrived). Otherwise it
    re-sends its ROUND_CHANGE for r and waits another timeout. Without this rule a validator
    whose clock runs fast climbs rounds alone and, with capped timeouts, never meets the
    others in one round again; with it, the highest honest round only grows when a quorum is
    there, the lagging validators catch up (f+1 jump or timeouts), and the timer restarts
    when the quorum assembles. Liveness only: no safety argument depends on rounds.
    """
    if (
        (event.height, event.round, event.timer) != (state.height, state.round, state.timer)
        or state.committed
    ):
        return state, []  # stale timer
    if state.round > 0 and not state.round_synced and state.proposal is None:
        state, actions = _send_round_change(state, state.round)
        state, more = _arm_timer(state)
        return state, actions + more
    state, actions = _enter_round(state, state.round + 1)
    state, more = _send_round_change(state, state.round)
    actions += more
    state, more = _propose_after_round_change(state)
    return state, actions + more


def upon_new_block(state: NodeState, event: BlockImported) -> Step:
    """A block was imported: the height is decided, start the next one.

    Dafny ``UponNewBlock``; Besu ``QbftController.handleNewBlockEvent``. Importing a block
    other than the one this validator committed at that height is a safety failure: Halt.
    """
    if event.height < state.height:
        return state, []
    if event.height == state.height and state.committed not in (None, event.digest):
        return replace(state, halted="fork"), [
            Halt(
                f"imported block 0x{event.digest.hex()} at height {event.height} but this "
                f"validator committed 0x{(state.committed or b'').hex()}"
            )
        ]
    validators = state.validators
    if event.next_validators is not None:
        validators = validators.with_change(event.height + 1, event.next_validators)
    future = state.future if event.height == state.height else ()
    state = replace(state, validators=validators, future=())
    state, actions = _start_height(state, event.height + 1)
    for early in future:
        state, more = step(state, early)
        actions += more
    return state, actions


def upon_block_proposal_ready(state: NodeState, event: BlockProposalReady) -> Step:
    """The block asked for is built: sign and broadcast the PROPOSAL, and accept it locally.

    Dafny ``UponBlockTimeout`` (round 0) and the proposing branch of ``UponRoundChange``;
    Besu ``QbftBlockHeightManager.buildBlockAndMaybePropose``.
    """
    request = state.block_request
    if request is None or (request.height, request.round) != (event.height, event.round):
        return state, []  # not asked for, or asked for a round already left
    state = replace(state, block_request=None)
    if (state.height, state.round) != (event.height, event.round) or state.proposal is not None:
        return state, []
    return _propose(state, event.block, request.round_changes, ())


# --------------------------------------------------------------------------------- helpers


def _validators(state: NodeState) -> tuple[bytes, ...]:
    return state.validators.at(state.height)


def _fresh(state: NodeState, message: Message) -> bool:
    """Stale-input guard: for this height, not an older round, height not yet committed."""
    return (
        message.height == state.height
        and message.round >= state.round
        and state.committed is None
    )


def _buffer_future(state: NodeState, event: Received) -> Step:
    """Keep a message for the next height (bounded); drop everything else that is not fresh."""
    height = event.message.height
    if height == state.height + 1 and len(state.future) < state.config.future_height_buffer:
        return replace(state, future=state.future + (event,)), []
    return state, []


K = TypeVar("K")
V = TypeVar("V")


def _with(mapping: Mapping[K, V], key: K, value: V) -> dict[K, V]:
    copy = dict(mapping)
    copy[key] = value
    return copy


def _start_height(state: NodeState, height: int) -> Step:
    state = NodeState(
        config=state.config,
        validators=state.validators,
        height=height,
        future=tuple(e for e in state.future if e.message.height == height),
    )
    state, actions = _arm_timer(state)
    state, more = _request_block_if_proposer(state)
    return state, actions + more


def _request_block_if_proposer(state: NodeState) -> Step:
    validators = _validators(state)
    if not validators or validation.proposer_for(validators, state.height, state.round) != (
        state.config.address
    ):
        return state, []
    if state.record is not None and state.record.digest_signed(state.round, MessageKind.PROPOSAL):
        return state, []  # proposed before a crash; a rebuilt block would conflict
    request = BlockRequest(state.height, state.round)
    return replace(state, block_request=request), [BuildBlock(state.height, state.round)]


def _enter_round(state: NodeState, round_: int) -> Step:
    """Start ``round_`` at the current height: forget the old round's proposal, set its timer."""
    state = replace(
        state,
        round=round_,
        round_synced=False,
        proposal=None,
        block_request=None,
        prepares={k: v for k, v in state.prepares.items() if k[0] >= round_},
        commits={k: v for k, v in state.commits.items() if k[0] >= round_},
        pending_commits={k: v for k, v in state.pending_commits.items() if k[0] >= round_},
    )
    return _arm_timer(state)


def _arm_timer(state: NodeState) -> Step:
    """(Re)start the current round's timer; earlier timers of the round become stale."""
    timer = state.timer + 1
    duration = round_timeout(state.config, state.round)
    return replace(state, timer=timer), [
        ScheduleTimeout(state.height, state.round, duration, timer)
    ]


def _round_support(state: NodeState, round_: int) -> int:
    """Validators whose newest ROUND_CHANGE is for ``round_`` or above."""
    return sum(1 for rc in state.round_changes.values() if rc.round >= round_)


def _sign(state: NodeState, kind: MessageKind, round_: int, digest: bytes) -> NodeState | None:
    """Record that this validator signs (round, kind, digest); None if it must not.

    It must not when it is not a validator of the height, or when it already signed a
    different digest for the same (height, round, kind) — the persisted record makes that
    hold across crashes.
    """
    if state.config.address not in _validators(state):
        return None
    record = state.record
    if record is None:
        record = SigningRecord(state.height, state.round, (), state.prepared)
    earlier = record.digest_signed(round_, kind)
    if earlier is not None and earlier != digest:
        if kind != MessageKind.ROUND_CHANGE:
            return None
        # A ROUND_CHANGE votes for no block; re-sending it with a newer prepared certificate
        # (proven by its prepares) is safe, so it replaces the entry.
        signed = tuple(e for e in record.signed if (e.round, e.kind) != (round_, kind)) + (
            SignedEntry(round_, kind, digest),
        )
    elif earlier is not None:
        signed = record.signed
    else:
        signed = record.signed + (SignedEntry(round_, kind, digest),)
    record = SigningRecord(state.height, max(record.round, state.round), signed, state.prepared)
    return replace(state, record=record)


def _persist(state: NodeState) -> Persist:
    """The Persist action for the signing record just updated by :func:`_sign`."""
    assert state.record is not None
    return Persist(state.record)


P = TypeVar("P", ProposalPayload, PreparePayload, CommitPayload, RoundChangePayload)


def _signed(state: NodeState, payload: P) -> Signed[P]:
    return Signed(payload, state.config.address, state.config.signer(payload.signing_digest))


def _propose(
    state: NodeState,
    block: Block,
    round_changes: tuple[Signed[RoundChangePayload], ...],
    prepares: tuple[Signed[PreparePayload], ...],
) -> Step:
    signed_state = _sign(state, MessageKind.PROPOSAL, state.round, block.digest)
    if signed_state is None:
        return state, []
    state = signed_state
    proposal = Proposal(
        _signed(state, ProposalPayload(state.height, state.round, block.digest)),
        block,
        round_changes,
        prepares,
    )
    actions: list[Action] = [_persist(state), Broadcast(proposal)]
    state, more = _accept_proposal(state, proposal)
    return state, actions + more


def _accept_proposal(state: NodeState, proposal: Proposal) -> Step:
    """Adopt ``proposal`` for the current round, PREPARE it, and count what already arrived."""
    round_ = state.round
    block = proposal.block
    commits = dict(state.commits)
    pending = {}
    for key, commit in state.pending_commits.items():
        if key[0] != round_:
            pending[key] = commit
            continue
        try:
            validation.validate_seal(commit, block, state.config.seal_digest, state.config.recover)
        except InvalidMessage:
            continue
        commits[key] = commit
    state = replace(state, proposal=proposal, commits=commits, pending_commits=pending)
    actions: list[Action] = []
    signed_state = _sign(state, MessageKind.PREPARE, round_, block.digest)
    if signed_state is not None:
        state = signed_state
        prepare = Prepare(_signed(state, PreparePayload(state.height, round_, block.digest)))
        key = (round_, state.config.address)
        state = replace(state, prepares=_with(state.prepares, key, prepare))
        actions += [_persist(state), Broadcast(prepare)]
    state, more = _check_prepared(state)
    actions += more
    state, more = _check_committed(state)  # commits that arrived before the proposal
    return state, actions + more


def _check_prepared(state: NodeState) -> Step:
    """At a quorum of PREPAREs for the accepted proposal: prepared certificate, then COMMIT."""
    proposal = state.proposal
    round_ = state.round
    if proposal is None or (state.prepared is not None and state.prepared.round == round_):
        return state, []
    digest = proposal.block.digest
    matching = [
        p.signed
        for (r, _), p in sorted(state.prepares.items())
        if r == round_ and p.signed.payload.digest == digest
    ]
    validators = _validators(state)
    if len(matching) < validation.quorum(len(validators)):
        return state, []
    state = replace(state, prepared=PreparedCertificate(round_, proposal.block, tuple(matching)))
    signed_state = _sign(state, MessageKind.COMMIT, round_, digest)
    if signed_state is None:
        return _check_committed(state)
    state = signed_state
    seal = state.config.signer(state.config.seal_digest(proposal.block, round_))
    commit = Commit(_signed(state, CommitPayload(state.height, round_, digest, seal)))
    state = replace(state, commits=_with(state.commits, (round_, state.config.address), commit))
    actions: list[Action] = [_persist(state), Broadcast(commit)]
    state, more = _check_committed(state)
    return state, actions + more


def _check_committed(state: NodeState) -> Step:
    """At a quorum of valid COMMITs for the accepted proposal: the block is final."""
    proposal = state.proposal
    if proposal is None or state.committed is not None:
        return state, []
    round_ = state.round
    digest = proposal.block.digest
    seals = [
        c.signed.payload.commit_seal
        for (r, _), c in sorted(state.commits.items())
        if r == round_ and c.signed.payload.digest == digest
    ]
    if len(seals) < validation.quorum(len(_validators(state))):
        return state, []
    state = replace(state, committed=digest)
    return state, [CommitBlock(state.height, round_, proposal.block, tuple(seals))]


def _send_round_change(state: NodeState, round_: int) -> Step:
    """Sign and broadcast ROUND_CHANGE(round_) with the latest prepared certificate."""
    prepared = state.prepared
    if prepared is not None and prepared.round >= round_:
        return state, []  # prepared in this very round: nothing to ask for
    digest = prepared.block.digest if prepared is not None else b""
    signed_state = _sign(state, MessageKind.ROUND_CHANGE, round_, digest)
    if signed_state is None:
        return state, []
    state = signed_state
    if prepared is None:
        payload = RoundChangePayload(state.height, round_, None, None)
        message = RoundChange(_signed(state, payload))
    else:
        payload = RoundChangePayload(state.height, round_, prepared.round, prepared.block.digest)
        message = RoundChange(_signed(state, payload), prepared.block, prepared.prepares)
    state = replace(
        state, round_changes=_with(state.round_changes, state.config.address, message)
    )
    return state, [_persist(state), Broadcast(message)]


def best_prepared(
    round_changes: tuple[RoundChange, ...],
) -> RoundChange | None:
    """The round change whose prepared certificate the new proposer must re-propose."""
    best = validation.highest_prepared(rc.signed for rc in round_changes)
    if best is None:
        return None
    return next(rc for rc in round_changes if rc.signed is best)


def _propose_after_round_change(state: NodeState) -> Step:
    """Proposer of round r > 0 holding a quorum of ROUND_CHANGEs for r: propose.

    Dafny ``UponRoundChange`` (proposer branch): re-propose the block of the highest prepared
    certificate with its prepares, or ask the runtime for a new block if none was prepared.
    """
    round_ = state.round
    validators = _validators(state)
    if (
        round_ == 0
        or state.proposal is not None
        or state.block_request is not None
        or not validators
        or validation.proposer_for(validators, state.height, round_) != state.config.address
    ):
        return state, []
    current = tuple(
        rc for _, rc in sorted(state.round_changes.items()) if rc.round == round_
    )
    if len(current) < validation.quorum(len(validators)):
        return state, []
    justification = tuple(rc.signed for rc in current)
    best = best_prepared(current)
    if best is None:
        request = BlockRequest(state.height, round_, justification)
        return replace(state, block_request=request), [BuildBlock(state.height, round_)]
    assert best.prepared_block is not None
    return _propose(state, best.prepared_block, justification, best.prepares)


def received(message: Prepare | Commit | RoundChange) -> Received:
    """The event for a vote (PREPARE, COMMIT, ROUND_CHANGE) that arrived from the network.

    A PROPOSAL becomes ``ProposalReceived(message, block_valid)`` once the runtime has
    validated its block.
    """
    match message:
        case Prepare():
            return PrepareReceived(message)
        case Commit():
            return CommitReceived(message)
        case RoundChange():
            return RoundChangeReceived(message)
        case _:
            assert_never(message)
