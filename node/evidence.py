"""Equivocation evidence: two conflicting signed consensus messages from one validator.

QBFT's safety holds while fewer than a third of the validators are faulty; a validator that
signs two different PROPOSALs, PREPAREs or COMMITs for the same height and round is faulty by
definition (an honest one persists what it signed and never signs a conflicting message, see
:mod:`consensus.state`). Such a pair is self-contained proof: anyone can check it with Keccak,
RLP and ``ecrecover`` alone, without trusting the node that caught it.

Evidence layout (RLP)::

    [ version = 1,
      [ signed payload A, signature A ],
      [ signed payload B, signature B ] ]

where a *signed payload* is the RLP list whose Keccak-256 the author signed
(:mod:`consensus.messages`): ``[code, height, round, digest]`` for PROPOSAL (0x12) and PREPARE
(0x13), ``[0x14, height, round, digest, commit seal]`` for COMMIT, and a signature is 65 bytes
``r ‖ s ‖ v`` (v ∈ {0, 1}). Evidence is valid when both signatures recover to the same address,
both payloads have the same code, height and round, and their digests differ
(:func:`verify_evidence`). Whether that address was a validator at that height is for whoever
acts on it to check against the header chain (``qbft_getValidatorsByBlockNumber``).

The :class:`EquivocationDetector` remembers, per (author, code, height, round), the first
message seen, for a bounded window of heights; the engine feeds it every consensus message it
accepts from the network and stores each evidence in LevelDB (:class:`EvidenceStore`), where
``portledger_getEquivocations`` serves it.

Submission on chain: a ``Consortium.reportEquivocation(evidence)`` function that re-checks the
pair with ``ecrecover`` and emits an event for governance is the intended next step; it is not
deployed yet, because changing ``Consortium.vy`` changes the committed genesis. Until then an
operator fetches the evidence over JSON-RPC and attaches it to a governance proposal (for
example REMOVE_VALIDATOR), where every member can verify it with :func:`verify_evidence`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak

from consensus import extradata
from consensus.messages import Commit, Message, Prepare, Proposal
from node.db import NodeKeys

#: Evidence format version.
EVIDENCE_VERSION = 1
#: Heights below the highest seen minus this are forgotten by the detector.
HEIGHT_WINDOW = 64
#: Most (author, code, height, round) entries the detector keeps.
MAX_ENTRIES = 100_000
#: LevelDB keys: evidence number n, and how many there are.
EVIDENCE_PREFIX = NodeKeys.equivocation_prefix
EVIDENCE_COUNT = NodeKeys.equivocation_count


class InvalidEvidence(ValueError):
    """The bytes are not valid equivocation evidence; the message says why."""


@dataclass(frozen=True)
class Equivocation:
    """Two conflicting signed messages of one validator."""

    #: The equivocating validator's address.
    validator: bytes
    #: Message code (0x12 PROPOSAL, 0x13 PREPARE, 0x14 COMMIT).
    code: int
    #: Height (block number).
    height: int
    #: Round.
    round: int
    #: The RLP evidence (module docstring).
    encoded: bytes


def signed_payload(message: Message) -> list[Any] | None:
    """The RLP items a PROPOSAL, PREPARE or COMMIT's author signed; None for other kinds."""
    payload = message.signed.payload
    if isinstance(message, Proposal | Prepare):
        return [int(message.kind), payload.height, payload.round, payload.digest]
    if isinstance(message, Commit):
        return [0x14, payload.height, payload.round, payload.digest, payload.commit_seal]
    return None


def verify_evidence(encoded: bytes) -> Equivocation:
    """Check equivocation evidence with RLP, Keccak and ecrecover only.

    Raises
    ------
    InvalidEvidence
        Malformed, signatures from different signers, different (code, height, round), or the
        same digest (no conflict).
    """
    try:
        version, first, second = rlp.decode(encoded)
        (payload_a, sig_a), (payload_b, sig_b) = first, second
    except Exception as exc:
        raise InvalidEvidence(f"evidence does not decode: {exc}") from exc
    if int.from_bytes(version, "big") != EVIDENCE_VERSION:
        raise InvalidEvidence("unknown evidence version")
    signers = []
    heads = []
    for payload, signature in ((payload_a, sig_a), (payload_b, sig_b)):
        if not isinstance(payload, list) or len(payload) not in (4, 5):
            raise InvalidEvidence("a signed payload must be [code, height, round, digest(, seal)]")
        code = int.from_bytes(payload[0], "big")
        if code not in (0x12, 0x13, 0x14) or len(payload) != (5 if code == 0x14 else 4):
            raise InvalidEvidence(f"message code 0x{code:02x} cannot equivocate")
        try:
            signers.append(extradata.recover_signer(keccak(rlp.encode(payload)), signature))
        except extradata.InvalidSeal as exc:
            raise InvalidEvidence(str(exc)) from exc
        heads.append((code, int.from_bytes(payload[1], "big"), int.from_bytes(payload[2], "big")))
    if signers[0] != signers[1]:
        raise InvalidEvidence("the two messages have different signers")
    if heads[0] != heads[1]:
        raise InvalidEvidence("the two messages are for different (kind, height, round)")
    if payload_a[3] == payload_b[3]:
        raise InvalidEvidence("the two messages agree on the block: no equivocation")
    code, height, round_ = heads[0]
    return Equivocation(signers[0], code, height, round_, encoded)


class EquivocationDetector:
    """Remembers the first PROPOSAL / PREPARE / COMMIT per (author, code, height, round)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[bytes, int, int, int], tuple[list[Any], bytes]] = OrderedDict()
        self._reported: set[tuple[bytes, int, int, int]] = set()
        self._highest = 0

    def observe(self, message: Message) -> Equivocation | None:
        """Record ``message`` (its signature already recovered to its author); return evidence
        the first time its author is caught signing a conflicting message."""
        payload = signed_payload(message)
        if payload is None:
            return None
        author = message.signed.author
        key = (author, payload[0], message.height, message.round)
        if message.height > self._highest:
            self._highest = message.height
            self._prune()
        if message.height + HEIGHT_WINDOW < self._highest:
            return None
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = (payload, message.signed.signature)
            while len(self._seen) > MAX_ENTRIES:
                self._seen.popitem(last=False)
            return None
        if earlier[0][3] == payload[3] or key in self._reported:
            return None
        self._reported.add(key)
        encoded = rlp.encode(
            [EVIDENCE_VERSION, [earlier[0], earlier[1]], [payload, message.signed.signature]]
        )
        return verify_evidence(encoded)

    def _prune(self) -> None:
        floor = self._highest - HEIGHT_WINDOW
        for key in [k for k in self._seen if k[2] < floor]:
            del self._seen[key]
        self._reported = {k for k in self._reported if k[2] >= floor}


class EvidenceStore:
    """Evidence kept in the node's LevelDB, numbered from 0 in the order caught."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def count(self) -> int:
        try:
            return int.from_bytes(self.db[EVIDENCE_COUNT], "big")
        except KeyError:
            return 0

    def add(self, evidence: Equivocation) -> int:
        """Store ``evidence``; its number."""
        n = self.count()
        self.db[EVIDENCE_PREFIX + n.to_bytes(8, "big")] = evidence.encoded
        self.db[EVIDENCE_COUNT] = (n + 1).to_bytes(8, "big")
        return n

    def all(self) -> list[Equivocation]:
        """Every stored evidence, re-verified."""
        return [
            verify_evidence(self.db[EVIDENCE_PREFIX + n.to_bytes(8, "big")])
            for n in range(self.count())
        ]
