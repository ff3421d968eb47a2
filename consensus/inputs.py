"""The QBFT core's inputs: the closed set of events :func:`consensus.qbft.step` handles.

A message from the network (``*Received``; a proposal carries the runtime's verdict on its
block), a timer that fired, a block the runtime imported or built. ``Event`` is the union
``step`` matches on (with ``assert_never`` for the rest); ``Received`` are the network inputs
the state keeps when they arrive early for the next height.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import Block, Commit, Prepare, Proposal, RoundChange


@dataclass(frozen=True)
class ProposalReceived:
    """A PROPOSAL arrived from the network (unverified), with the runtime's verdict on its block."""

    #: The message as received.
    message: Proposal
    #: The runtime validated ``message.block`` for ``message.height`` (header, execution,
    #: roots) and found it valid. The core checks the rest: signatures, proposer, round and
    #: justification (Dafny ``isValidProposal``'s ``validateNewBlock`` comes in as this datum).
    block_valid: bool


@dataclass(frozen=True)
class PrepareReceived:
    """A PREPARE arrived from the network (unverified)."""

    #: The message as received.
    message: Prepare


@dataclass(frozen=True)
class CommitReceived:
    """A COMMIT arrived from the network (unverified)."""

    #: The message as received.
    message: Commit


@dataclass(frozen=True)
class RoundChangeReceived:
    """A ROUND_CHANGE arrived from the network (unverified)."""

    #: The message as received.
    message: RoundChange


@dataclass(frozen=True)
class RoundTimeout:
    """A timer set by ``ScheduleTimeout(height, round, _, timer)`` expired."""

    #: Height the timer was set for.
    height: int
    #: Round the timer was set for.
    round: int
    #: The timer's id from ScheduleTimeout (a restarted round timer makes older ids stale).
    timer: int = 0


@dataclass(frozen=True)
class BlockImported:
    """A block was imported at ``height`` (this node's commit, or one synced with its seals)."""

    #: Height of the imported block (the new chain head).
    height: int
    #: Its digest (round-independent block hash).
    digest: bytes
    #: Validator set for ``height + 1`` if it changes there (from the Consortium contract).
    next_validators: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class BlockProposalReady:
    """The runtime built the block a ``BuildBlock(height, round)`` asked for."""

    #: Height it was built for.
    height: int
    #: Round it will be proposed in.
    round: int
    #: The block.
    block: Block


#: An input that came from the network (kept for the next height when it arrives early).
Received = ProposalReceived | PrepareReceived | CommitReceived | RoundChangeReceived

#: Every input of the core.
Event = Received | RoundTimeout | BlockImported | BlockProposalReady
