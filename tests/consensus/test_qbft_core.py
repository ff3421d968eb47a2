"""Table tests of the pure QBFT core: (state, input) → expected actions and new state.

One group per spec clause (Dafny ``UponProposal``, ``UponPrepare``, ``UponCommit``,
``UponRoundChange``, ``UponRoundTimeout``, ``UponNewBlock``), including the stale-input
guards and the f+1 round-change jump, then the crash-safety of the persisted signing record.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from consensus import inputs, qbft, validation
from consensus.messages import (
    Block,
    Commit,
    CommitPayload,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    RoundChange,
    RoundChangePayload,
    Signed,
)
from consensus.qbft import (
    Broadcast,
    BuildBlock,
    CommitBlock,
    Halt,
    Persist,
    ScheduleTimeout,
)
from consensus.state import Config, NodeState, ValidatorSchedule
from tests.support.qbft_simulator import FastCrypto, seal_digest

CRYPTO = FastCrypto(5)
VALIDATORS = tuple(sorted(CRYPTO.addresses[:4]))
OUTSIDER = CRYPTO.addresses[4]
SCHEDULE = ValidatorSchedule.fixed(VALIDATORS)
INDEX = {a: i for i, a in enumerate(CRYPTO.addresses)}


def config(address: bytes) -> Config:
    return Config(
        address=address,
        signer=CRYPTO.signer(INDEX[address]),
        recover=CRYPTO.recover,
        seal_digest=seal_digest,
        request_timeout=1_000,
        max_timeout=8_000,
    )


def proposer(height: int, round_: int) -> bytes:
    return validation.proposer_for(VALIDATORS, height, round_)


def not_proposer(height: int, round_: int) -> bytes:
    return next(a for a in VALIDATORS if a != proposer(height, round_))


def node(address: bytes, height: int = 1) -> NodeState:
    return qbft.initial_state(config(address), SCHEDULE, height)[0]


def block(tag: bytes) -> Block:
    return Block(hashlib.sha256(tag).digest(), tag)


def signed(author: bytes, payload):  # type: ignore[no-untyped-def]
    return Signed(payload, author, CRYPTO.signer(INDEX[author])(payload.signing_digest))


def proposal(height: int, round_: int, blk: Block, rcs=(), prepares=(), author=None) -> Proposal:  # type: ignore[no-untyped-def]
    author = author or proposer(height, round_)
    return Proposal(signed(author, ProposalPayload(height, round_, blk.digest)), blk, rcs, prepares)


def proposed(message: Proposal) -> inputs.ProposalReceived:
    """The proposal as the runtime hands it over: with its verdict on the block."""
    return inputs.ProposalReceived(message, block_valid=message.block.payload != b"invalid")


def prepare(author: bytes, height: int, round_: int, digest: bytes) -> Prepare:
    return Prepare(signed(author, PreparePayload(height, round_, digest)))


def commit(author: bytes, height: int, round_: int, blk: Block, good_seal: bool = True) -> Commit:
    seal = CRYPTO.signer(INDEX[author])(seal_digest(blk, round_ if good_seal else round_ + 99))
    return Commit(signed(author, CommitPayload(height, round_, blk.digest, seal)))


def round_change(author: bytes, height: int, round_: int, prepared=None) -> RoundChange:  # type: ignore[no-untyped-def]
    if prepared is None:
        return RoundChange(signed(author, RoundChangePayload(height, round_, None, None)))
    p_round, blk = prepared
    prepares = tuple(prepare(a, height, p_round, blk.digest).signed for a in VALIDATORS[:3])
    payload = RoundChangePayload(height, round_, p_round, blk.digest)
    return RoundChange(signed(author, payload), blk, prepares)


def shape(actions: list[qbft.Action]) -> list[str]:
    """Action kinds, with the message kind for broadcasts: ['Persist', 'Broadcast:Prepare']."""
    out = []
    for action in actions:
        if isinstance(action, Broadcast):
            out.append(f"Broadcast:{type(action.message).__name__}")
        else:
            out.append(type(action).__name__)
    return out


def run(state: NodeState, *events: inputs.Event) -> tuple[NodeState, list[qbft.Action]]:
    actions: list[qbft.Action] = []
    for event in events:
        state, more = qbft.step(state, event)
        actions += more
    return state, actions


ME = not_proposer(1, 0)
B = block(b"block-B")
C = block(b"block-C")

# ------------------------------------------------------------------ start / proposing


def test_start_height_proposer_asks_for_a_block_others_only_arm_the_timer() -> None:
    _, actions = qbft.initial_state(config(proposer(1, 0)), SCHEDULE, 1)
    assert actions == [ScheduleTimeout(1, 0, 1_000, 1), BuildBlock(1, 0)]
    _, actions = qbft.initial_state(config(ME), SCHEDULE, 1)
    assert actions == [ScheduleTimeout(1, 0, 1_000, 1)]


def test_block_ready_is_proposed_then_prepared_locally() -> None:
    state = node(proposer(1, 0))
    state, actions = qbft.step(state, inputs.BlockProposalReady(1, 0, B))
    assert shape(actions) == ["Persist", "Broadcast:Proposal", "Persist", "Broadcast:Prepare"]
    assert state.proposal is not None and state.proposal.block == B
    assert state.block_request is None
    # a second, late build answer for the same round is ignored
    assert qbft.step(state, inputs.BlockProposalReady(1, 0, C)) == (state, [])


# ------------------------------------------------------------------ upon_proposal


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: proposal(1, 0, B), ["Persist", "Broadcast:Prepare"]),
        (lambda: proposal(1, 0, B, author=ME), []),  # not the proposer of (1, 0)
        (lambda: proposal(1, 0, block(b"invalid")), []),  # invalid block
        (lambda: proposal(0, 0, B), []),  # stale height
        (lambda: proposal(1, 1, B), []),  # round 1 without a round-change justification
        (lambda: Proposal(proposal(1, 0, B).signed, C), []),  # block ≠ signed digest
    ],
    ids=["valid", "wrong-proposer", "invalid-block", "old-height", "unjustified", "digest"],
)
def test_upon_proposal(make, expected) -> None:  # type: ignore[no-untyped-def]
    state = node(ME)
    new, actions = qbft.step(state, proposed(make()))
    assert shape(actions) == expected
    if not expected:
        assert new == state


def test_upon_proposal_second_proposal_in_round_is_ignored() -> None:
    state, _ = run(node(ME), proposed(proposal(1, 0, B)))
    new, actions = qbft.step(state, proposed(proposal(1, 0, C)))
    assert actions == [] and new == state


def test_upon_proposal_next_height_is_buffered_and_replayed() -> None:
    state, actions = qbft.step(node(ME), proposed(proposal(2, 0, C)))
    assert actions == [] and len(state.future) == 1
    state, actions = qbft.step(state, inputs.BlockImported(1, B.digest))
    assert state.height == 2 and state.proposal is not None
    assert "Broadcast:Prepare" in shape(actions)


def test_upon_proposal_stale_round_is_dropped() -> None:
    state, _ = run(node(ME), inputs.RoundTimeout(1, 0, 1))
    assert state.round == 1
    new, actions = qbft.step(state, proposed(proposal(1, 0, B)))
    assert actions == [] and new == state


# ------------------------------------------------------------------ upon_prepare / upon_commit


def test_upon_prepare_quorum_prepares_then_commits() -> None:
    state, _ = run(node(ME), proposed(proposal(1, 0, B)))  # own prepare: 1
    others = [a for a in VALIDATORS if a != ME]
    state, actions = qbft.step(state, inputs.PrepareReceived(prepare(others[0], 1, 0, B.digest)))
    assert actions == [] and state.prepared is None  # 2 < quorum 3
    state, actions = qbft.step(state, inputs.PrepareReceived(prepare(others[1], 1, 0, B.digest)))
    assert shape(actions) == ["Persist", "Broadcast:Commit"]
    assert state.prepared is not None and state.prepared.round == 0
    persisted = actions[0]
    assert isinstance(persisted, Persist) and persisted.record.prepared == state.prepared


@pytest.mark.parametrize(
    "make",
    [
        lambda: prepare(OUTSIDER, 1, 0, B.digest),  # not a validator
        lambda: Prepare(dataclasses.replace(prepare(VALIDATORS[0], 1, 0, B.digest).signed, author=VALIDATORS[1])),
        lambda: prepare(VALIDATORS[0], 0, 0, B.digest),  # old height
        lambda: prepare(VALIDATORS[0], 1, 500, B.digest),  # beyond the future-round window
    ],
    ids=["non-validator", "forged-author", "old-height", "far-future-round"],
)
def test_upon_prepare_refuses(make) -> None:  # type: ignore[no-untyped-def]
    state = node(ME)
    assert qbft.step(state, inputs.PrepareReceived(make())) == (state, [])


def test_upon_commit_quorum_finalizes_with_sorted_seals_and_bad_seals_are_ignored() -> None:
    state, _ = run(node(ME), proposed(proposal(1, 0, B)))
    others = [a for a in VALIDATORS if a != ME]
    state, actions = run(
        state,
        inputs.CommitReceived(commit(others[0], 1, 0, B, good_seal=False)),  # bad seal: dropped
        inputs.CommitReceived(commit(others[0], 1, 0, B)),
        inputs.CommitReceived(commit(others[1], 1, 0, B)),
    )
    assert actions == [] and state.committed is None  # 2 commits, ours not yet sent
    state, actions = qbft.step(state, inputs.CommitReceived(commit(others[2], 1, 0, B)))
    assert shape(actions) == ["CommitBlock"]
    done = actions[0]
    assert isinstance(done, CommitBlock) and (done.height, done.round, done.block) == (1, 0, B)
    signers = [CRYPTO.recover(seal_digest(B, 0), s) for s in done.seals]
    assert signers == sorted(others)
    # after finality every input of the height is ignored until the block is imported
    assert qbft.step(state, inputs.RoundTimeout(1, 0, state.timer)) == (state, [])


def test_commits_before_the_proposal_count_once_it_arrives() -> None:
    others = [a for a in VALIDATORS if a != ME]
    state, actions = run(node(ME), *(inputs.CommitReceived(commit(a, 1, 0, B)) for a in others))
    assert actions == [] and len(state.pending_commits) == 3
    state, actions = qbft.step(state, proposed(proposal(1, 0, B)))
    assert shape(actions) == ["Persist", "Broadcast:Prepare", "CommitBlock"]


# ------------------------------------------------------------------ upon_round_timeout


def test_upon_round_timeout_moves_on_and_reports_prepared_certificate() -> None:
    state, _ = run(
        node(ME),
        proposed(proposal(1, 0, B)),
        *(inputs.PrepareReceived(prepare(a, 1, 0, B.digest)) for a in VALIDATORS if a != ME),
    )
    timer = state.timer
    assert qbft.step(state, inputs.RoundTimeout(1, 0, timer - 1)) == (state, [])  # stale id
    assert qbft.step(state, inputs.RoundTimeout(0, 0, timer)) == (state, [])  # stale height
    state, actions = qbft.step(state, inputs.RoundTimeout(1, 0, timer))
    assert shape(actions) == ["ScheduleTimeout", "Persist", "Broadcast:RoundChange"]
    assert actions[0] == ScheduleTimeout(1, 1, 2_000, state.timer)
    sent = actions[2]
    assert isinstance(sent, Broadcast) and isinstance(sent.message, RoundChange)
    payload = sent.message.signed.payload
    assert (payload.round, payload.prepared_round, payload.prepared_digest) == (1, 0, B.digest)
    assert state.round == 1 and state.proposal is None


def test_round_timeout_is_doubled_and_capped() -> None:
    cfg = config(ME)
    assert [qbft.round_timeout(cfg, r) for r in (0, 1, 2, 3, 4, 10, 10**6)] == [
        1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000,
    ]


def test_round_without_quorum_is_not_left_by_timeout() -> None:
    """Round synchronisation: alone in round 1, a timeout re-sends ROUND_CHANGE(1)."""
    state, _ = run(node(ME), inputs.RoundTimeout(1, 0, 1))
    state, actions = qbft.step(state, inputs.RoundTimeout(1, 1, state.timer))
    assert state.round == 1
    assert shape(actions) == ["Persist", "Broadcast:RoundChange", "ScheduleTimeout"]


# ------------------------------------------------------------------ upon_round_change


def test_f_plus_one_round_changes_jump_to_the_smallest_higher_round() -> None:
    a, b = [v for v in VALIDATORS if v != ME][:2]
    state = node(ME)
    state, actions = qbft.step(state, inputs.RoundChangeReceived(round_change(a, 1, 5)))
    assert actions == [] and state.round == 0  # f = 1: one is not enough
    state, actions = qbft.step(state, inputs.RoundChangeReceived(round_change(b, 1, 3)))
    assert state.round == 3
    assert shape(actions)[:3] == ["ScheduleTimeout", "Persist", "Broadcast:RoundChange"]
    # an older round change from the same author is stale
    assert qbft.step(state, inputs.RoundChangeReceived(round_change(a, 1, 4))) == (state, [])


@pytest.mark.parametrize(
    "make",
    [
        lambda: round_change(OUTSIDER, 1, 2),
        lambda: RoundChange(signed(VALIDATORS[0], RoundChangePayload(1, 2, 2, B.digest)), B),
        lambda: RoundChange(signed(VALIDATORS[0], RoundChangePayload(1, 2, 0, B.digest)), B, ()),
        lambda: RoundChange(signed(VALIDATORS[0], RoundChangePayload(1, 2, 0, None))),
    ],
    ids=["non-validator", "prepared-round-not-below", "unproven-certificate", "half-metadata"],
)
def test_upon_round_change_refuses(make) -> None:  # type: ignore[no-untyped-def]
    state = node(ME)
    assert qbft.step(state, inputs.RoundChangeReceived(make())) == (state, [])


def test_quorum_round_changes_let_the_proposer_build_a_new_block() -> None:
    leader = proposer(1, 1)
    state, _ = run(node(leader), inputs.RoundTimeout(1, 0, 1))
    others = [v for v in VALIDATORS if v != leader][:2]
    state, actions = run(state, *(inputs.RoundChangeReceived(round_change(v, 1, 1)) for v in others))
    assert actions[-1] == BuildBlock(1, 1)
    state, actions = qbft.step(state, inputs.BlockProposalReady(1, 1, C))
    sent = [a.message for a in actions if isinstance(a, Broadcast)]
    assert isinstance(sent[0], Proposal) and len(sent[0].round_changes) == 3


def test_quorum_round_changes_with_a_prepared_certificate_repropose_that_block() -> None:
    leader = proposer(1, 1)
    state, _ = run(node(leader), inputs.RoundTimeout(1, 0, 1))
    others = [v for v in VALIDATORS if v != leader]
    state, actions = run(
        state,
        inputs.RoundChangeReceived(round_change(others[0], 1, 1, prepared=(0, B))),
        inputs.RoundChangeReceived(round_change(others[1], 1, 1)),
    )
    sent = [a.message for a in actions if isinstance(a, Broadcast)]
    assert isinstance(sent[0], Proposal) and sent[0].block == B and len(sent[0].prepares) == 3
    assert not any(isinstance(a, BuildBlock) for a in actions)
    # and a validator accepts that justified round-1 proposal, moving rounds to do so
    follower = next(v for v in VALIDATORS if v not in (leader,))
    new, more = qbft.step(node(follower), proposed(sent[0]))
    assert new.round == 1 and "Broadcast:Prepare" in shape(more)


def test_proposal_ignoring_the_prepared_certificate_is_refused() -> None:
    leader = proposer(1, 1)
    rcs = (
        round_change(VALIDATORS[0], 1, 1, prepared=(0, B)).signed,
        round_change(VALIDATORS[1], 1, 1).signed,
        round_change(VALIDATORS[2], 1, 1).signed,
    )
    bad = proposal(1, 1, C, rcs=rcs, author=leader)
    follower = next(v for v in VALIDATORS if v != leader)
    assert qbft.step(node(follower), proposed(bad)) == (node(follower), [])


# ------------------------------------------------------------------ upon_new_block


def test_upon_new_block_starts_next_height_with_validator_change() -> None:
    state, _ = run(node(ME), inputs.RoundTimeout(1, 0, 1))
    new_set = VALIDATORS[:3] + (OUTSIDER,)
    state, actions = qbft.step(state, inputs.BlockImported(1, B.digest, new_set))
    assert (state.height, state.round, state.record) == (2, 0, None)
    assert state.validators.at(2) == tuple(sorted(new_set)) and state.validators.at(1) == VALIDATORS
    assert actions[0] == ScheduleTimeout(2, 0, 1_000, 1)
    assert qbft.step(state, inputs.BlockImported(1, B.digest)) == (state, [])  # stale


def test_importing_a_block_other_than_the_committed_one_halts() -> None:
    state, _ = run(
        node(ME),
        proposed(proposal(1, 0, B)),
        *(inputs.CommitReceived(commit(a, 1, 0, B)) for a in VALIDATORS if a != ME),
    )
    assert state.committed == B.digest
    state, actions = qbft.step(state, inputs.BlockImported(1, C.digest))
    assert shape(actions) == ["Halt"] and isinstance(actions[0], Halt)
    assert qbft.step(state, proposed(proposal(1, 0, B))) == (state, [])


# ------------------------------------------------------------------ crash safety


def _last_record(actions: list[qbft.Action]):  # type: ignore[no-untyped-def]
    return [a.record for a in actions if isinstance(a, Persist)][-1]


def test_restart_with_record_never_prepares_a_second_block_in_the_round() -> None:
    state, actions = qbft.step(node(ME), proposed(proposal(1, 0, B)))
    record = _last_record(actions)
    # crash; an equivocating proposer now shows this validator block C for the same round
    restored, _ = qbft.restore(config(ME), SCHEDULE, 1, record)
    _, actions = qbft.step(restored, proposed(proposal(1, 0, C)))
    assert not any(isinstance(a, Broadcast) for a in actions)
    # the same block again is fine (an identical, deterministic signature)
    _, actions = qbft.step(restored, proposed(proposal(1, 0, B)))
    assert shape(actions) == ["Persist", "Broadcast:Prepare"]
    # without the record (amnesia) it would equivocate — which is why Persist comes first
    amnesic, _ = qbft.initial_state(config(ME), SCHEDULE, 1)
    _, actions = qbft.step(amnesic, proposed(proposal(1, 0, C)))
    assert shape(actions) == ["Persist", "Broadcast:Prepare"]


def test_restart_keeps_prepared_certificate_and_never_commits_another_block() -> None:
    state, actions = run(
        node(ME),
        proposed(proposal(1, 0, B)),
        *(inputs.PrepareReceived(prepare(a, 1, 0, B.digest)) for a in VALIDATORS if a != ME),
    )
    record = _last_record(actions)
    assert record.prepared is not None and record.prepared.block == B
    restored, _ = qbft.restore(config(ME), SCHEDULE, 1, record)
    assert restored.prepared == record.prepared
    _, actions = run(
        restored,
        proposed(proposal(1, 0, C)),
        *(inputs.PrepareReceived(prepare(a, 1, 0, C.digest)) for a in VALIDATORS if a != ME),
    )
    assert not any(isinstance(a, Broadcast) for a in actions)
    # its next round change still reports B
    state, actions = qbft.step(restored, inputs.RoundTimeout(1, 0, restored.timer))
    sent = [a.message for a in actions if isinstance(a, Broadcast)]
    assert isinstance(sent[0], RoundChange) and sent[0].signed.payload.prepared_digest == B.digest


def test_persist_precedes_every_signed_broadcast() -> None:
    state = node(proposer(1, 0))
    _, actions = run(
        state,
        inputs.BlockProposalReady(1, 0, B),
        *(inputs.PrepareReceived(prepare(a, 1, 0, B.digest)) for a in VALIDATORS),
        inputs.RoundTimeout(1, 0, 1),
    )
    kinds = shape(actions)
    for i, kind in enumerate(kinds):
        if kind.startswith("Broadcast"):
            assert kinds[i - 1] == "Persist", kinds


def test_step_never_mutates_its_input() -> None:
    state, _ = run(node(ME), proposed(proposal(1, 0, B)))
    before = dataclasses.replace(state)
    snapshot = (dict(state.prepares), dict(state.commits), state.record)
    qbft.step(state, inputs.PrepareReceived(prepare(VALIDATORS[0], 1, 0, B.digest)))
    qbft.step(state, inputs.RoundTimeout(1, 0, state.timer))
    assert state == before
    assert (dict(state.prepares), dict(state.commits), state.record) == snapshot
