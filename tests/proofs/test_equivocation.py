"""Equivocation evidence: a validator's two conflicting signed messages for one (height, round)
are caught, kept in LevelDB and served over JSON-RPC; the evidence verifies with ecrecover alone
and refuses every forgery."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from eth_hash.auto import keccak

from consensus import extradata
from consensus.messages import Block as CoreBlock
from consensus.messages import (
    Commit,
    CommitPayload,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    Signed,
    encode_message,
)
from node.evidence import (
    EquivocationDetector,
    EvidenceStore,
    InvalidEvidence,
    signed_payload,
    verify_evidence,
)
from node.genesis import dev_key
from node.rpc import JsonRpc
from tests.node.engine_net import Net

KEY = dev_key("validator:3")
OTHER = dev_key("validator:2")
AUTHOR = KEY.public_key.to_canonical_address()


def prepare(height: int, round_: int, digest: bytes, key=KEY) -> Prepare:  # type: ignore[no-untyped-def]
    payload = PreparePayload(height, round_, digest)
    author = key.public_key.to_canonical_address()
    return Prepare(Signed(payload, author, extradata.sign_seal(payload.signing_digest, key)))


def commit(height: int, round_: int, digest: bytes) -> Commit:
    payload = CommitPayload(height, round_, digest, b"\x01" * 65)
    return Commit(Signed(payload, AUTHOR, extradata.sign_seal(payload.signing_digest, KEY)))


def test_signed_payload_is_what_the_author_signed() -> None:
    for message in (prepare(5, 1, b"\xaa" * 32), commit(5, 1, b"\xaa" * 32)):
        items = signed_payload(message)
        assert items is not None
        assert keccak(rlp.encode(items)) == message.signed.payload.signing_digest
    payload = ProposalPayload(7, 0, b"\xbb" * 32)
    proposal = Proposal(Signed(payload, AUTHOR, extradata.sign_seal(payload.signing_digest, KEY)),
                        CoreBlock(b"\xbb" * 32, b""))
    items = signed_payload(proposal)
    assert items is not None and keccak(rlp.encode(items)) == payload.signing_digest


def test_two_prepares_for_different_blocks_are_evidence() -> None:
    detector = EquivocationDetector()
    assert detector.observe(prepare(10, 0, b"\x01" * 32)) is None
    assert detector.observe(prepare(10, 0, b"\x01" * 32)) is None  # the same message again
    assert detector.observe(prepare(10, 1, b"\x02" * 32)) is None  # another round: allowed
    assert detector.observe(prepare(10, 0, b"\x02" * 32, key=OTHER)) is None  # another author
    evidence = detector.observe(prepare(10, 0, b"\x02" * 32))
    assert evidence is not None
    assert (evidence.validator, evidence.code, evidence.height, evidence.round) == (AUTHOR, 0x13, 10, 0)
    assert verify_evidence(evidence.encoded) == evidence
    assert detector.observe(prepare(10, 0, b"\x03" * 32)) is None  # reported once


def test_conflicting_commits_are_evidence() -> None:
    detector = EquivocationDetector()
    detector.observe(commit(3, 2, b"\x01" * 32))
    evidence = detector.observe(commit(3, 2, b"\x02" * 32))
    assert evidence is not None and evidence.code == 0x14


def _pair(first: Prepare, second: Prepare) -> bytes:
    items = []
    for m in (first, second):
        payload = signed_payload(m)
        items.append([payload, m.signed.signature])
    return rlp.encode([1, *items])


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x01" * 32), "agree on the block"),
        (prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x02" * 32, key=OTHER), "different signers"),
        (prepare(4, 0, b"\x01" * 32), prepare(4, 1, b"\x02" * 32), "different (kind, height, round)"),
    ],
)
def test_forged_evidence_is_refused(first: Prepare, second: Prepare, why: str) -> None:
    with pytest.raises(InvalidEvidence, match=why.replace("(", r"\(").replace(")", r"\)")):
        verify_evidence(_pair(first, second))


def test_evidence_with_a_rewritten_digest_is_refused() -> None:
    encoded = _pair(prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x02" * 32))
    version, a, b = rlp.decode(encoded)
    b[0][3] = b"\x03" * 32  # the signature no longer matches: recovers to someone else
    with pytest.raises(InvalidEvidence, match="different signers"):
        verify_evidence(rlp.encode([version, a, b]))


async def test_engine_keeps_evidence_and_serves_it(tmp_path: Path) -> None:
    async with Net(tmp_path, validators=4).started() as net:
        member = net.members[0]
        assert member.engine is not None and member.engine.state is not None
        height = member.engine.state.height
        peer = net.members[3].key.public_key.to_canonical_address()
        for digest in (b"\x01" * 32, b"\x02" * 32):
            member.engine._on_consensus(peer, encode_message(prepare(height, 0, digest)))
        stored = EvidenceStore(member.ledger.db).all()
        assert len(stored) == 1 and stored[0].validator == AUTHOR and stored[0].height == height
        served = JsonRpc(member.service).methods["portledger_getEquivocations"]([])
        assert served[0]["validator"].lower() == "0x" + AUTHOR.hex()
        assert verify_evidence(bytes.fromhex(served[0]["evidence"][2:])).validator == AUTHOR
