"""The QBFT wire codec (:func:`consensus.messages.encode_message` / ``decode_message``).

Round trips by hand, by Hypothesis, and for every message the simulator's cores broadcast;
malformed input of every kind must raise :class:`MalformedMessage` (never another exception).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.messages import (
    MAX_JUSTIFICATION,
    Block,
    Commit,
    CommitPayload,
    MalformedMessage,
    Message,
    MessageKind,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    RoundChange,
    RoundChangePayload,
    Signed,
    decode_message,
    encode_message,
)
from tests.support.qbft_simulator import FastCrypto, Scenario, Simulation

CRYPTO = FastCrypto(7)


def block_digest(payload: bytes) -> bytes:
    """The simulator's block hash (``make_block``)."""
    return hashlib.sha256(payload).digest()


def block(payload: bytes) -> Block:
    return Block(block_digest(payload), payload)


def sign(payload: Any, who: int = 0) -> Signed[Any]:
    return Signed(payload, CRYPTO.addresses[who], CRYPTO.signer(who)(payload.signing_digest))


def decode(data: bytes, **kwargs: Any) -> Message:
    return decode_message(data, CRYPTO.recover, block_digest, **kwargs)


def roundtrip(message: Message, **kwargs: Any) -> None:
    data = encode_message(message)
    assert data[0] == message.kind
    assert decode(data, **kwargs) == message


B = block(b"header and body")
D = B.digest


def prepares(
    height: int, round_: int, digest: bytes, n: int = 3
) -> tuple[Signed[PreparePayload], ...]:
    return tuple(sign(PreparePayload(height, round_, digest), i) for i in range(n))


def full_proposal() -> Proposal:
    rcs = (
        sign(RoundChangePayload(5, 2, 1, D), 0),
        sign(RoundChangePayload(5, 2, None, None), 1),
        sign(RoundChangePayload(5, 2, 0, b"\x11" * 32), 2),
    )
    return Proposal(sign(ProposalPayload(5, 2, D), 3), B, rcs, prepares(5, 1, D))


def full_round_change() -> RoundChange:
    return RoundChange(sign(RoundChangePayload(5, 3, 1, D), 2), B, prepares(5, 1, D))


# ------------------------------------------------------------------------------ round trips


def test_every_kind_round_trips() -> None:
    roundtrip(Proposal(sign(ProposalPayload(1, 0, D)), B))
    roundtrip(full_proposal())
    roundtrip(Prepare(sign(PreparePayload(0, 0, D), 1)))
    roundtrip(Commit(sign(CommitPayload(2**64 - 1, 2**32 - 1, D, b"\x01" * 65), 2)))
    roundtrip(RoundChange(sign(RoundChangePayload(9, 1, None, None), 3)))
    roundtrip(full_round_change())
    # An empty block payload is still a block (b"" is not the [] of "no block").
    roundtrip(RoundChange(sign(RoundChangePayload(9, 4, 2, block(b"").digest)), block(b"")))


def test_layout_is_besu_signed_data() -> None:
    """signed payload = [[height, round, ...fields], signature]; the author is not sent."""
    prepare = Prepare(sign(PreparePayload(7, 1, D)))
    assert encode_message(prepare) == b"\x13" + rlp.encode([[7, 1, D], prepare.signed.signature])
    commit = Commit(sign(CommitPayload(7, 1, D, b"seal")))
    assert encode_message(commit) == b"\x14" + rlp.encode(
        [[7, 1, D, b"seal"], commit.signed.signature]
    )
    rc = full_round_change()
    assert rlp.decode(encode_message(rc)[1:]) == [
        [[b"\x05", b"\x03", [D, b"\x01"]], rc.signed.signature],
        B.payload,
        [[[b"\x05", b"\x01", D], p.signature] for p in rc.prepares],
    ]
    bare = RoundChange(sign(RoundChangePayload(5, 3, None, None)))
    assert rlp.decode(encode_message(bare)[1:]) == [
        [[b"\x05", b"\x03", []], bare.signed.signature],
        [],
        [],
    ]
    proposal = full_proposal()
    decoded = rlp.decode(encode_message(proposal)[1:])
    assert decoded[0] == [[b"\x05", b"\x02", D], proposal.signed.signature]
    assert len(decoded[1][0]) == 3 and len(decoded[1][1]) == 3
    assert decoded[2] == B.payload


def test_author_and_block_digest_are_derived_not_sent() -> None:
    # A claimed author that its signature does not recover to comes back as the real signer.
    lying = Prepare(
        Signed(
            PreparePayload(1, 0, D), CRYPTO.addresses[4], sign(PreparePayload(1, 0, D)).signature
        )
    )
    assert decode(encode_message(lying)).signed.author == CRYPTO.addresses[0]
    # A block whose digest is not its hash comes back with its hash; validation compares it
    # with the signed digest.
    forged = Proposal(sign(ProposalPayload(1, 0, D)), Block(D, b"other bytes"))
    decoded = decode(encode_message(forged))
    assert isinstance(decoded, Proposal)
    assert decoded.block.digest == block_digest(b"other bytes") != decoded.signed.payload.digest


def test_exact_signature_size_option() -> None:
    prepare = Prepare(sign(PreparePayload(1, 0, D)))  # FastCrypto: 40-byte signatures
    roundtrip(prepare, signature_size=40)
    with pytest.raises(MalformedMessage, match="wrong field size"):
        decode(encode_message(prepare), signature_size=65)


# ------------------------------------------------------------------------------ Hypothesis

heights = st.integers(0, 2**64 - 1)
rounds = st.integers(0, 2**32 - 1)
digests = st.binary(min_size=32, max_size=32)
who = st.integers(0, 6)


@st.composite
def signed_prepares(draw: st.DrawFn) -> Signed[PreparePayload]:
    return sign(PreparePayload(draw(heights), draw(rounds), draw(digests)), draw(who))


@st.composite
def signed_round_changes(draw: st.DrawFn) -> Signed[RoundChangePayload]:
    if draw(st.booleans()):
        payload = RoundChangePayload(draw(heights), draw(rounds), draw(rounds), draw(digests))
    else:
        payload = RoundChangePayload(draw(heights), draw(rounds), None, None)
    return sign(payload, draw(who))


blocks = st.binary(max_size=300).map(block)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(list(MessageKind)))
    if kind == MessageKind.PROPOSAL:
        b = draw(blocks)
        digest = draw(st.one_of(st.just(b.digest), digests))
        return Proposal(
            sign(ProposalPayload(draw(heights), draw(rounds), digest), draw(who)),
            b,
            tuple(draw(st.lists(signed_round_changes(), max_size=5))),
            tuple(draw(st.lists(signed_prepares(), max_size=5))),
        )
    if kind == MessageKind.PREPARE:
        return Prepare(draw(signed_prepares()))
    if kind == MessageKind.COMMIT:
        seal = draw(st.binary(min_size=1, max_size=128))
        payload = CommitPayload(draw(heights), draw(rounds), draw(digests), seal)
        return Commit(sign(payload, draw(who)))
    return RoundChange(
        draw(signed_round_changes()),
        draw(st.one_of(st.none(), blocks)),
        tuple(draw(st.lists(signed_prepares(), max_size=5))),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_hypothesis_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert decode(data) == message
    assert encode_message(decode(data)) == data  # one encoding per message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_hypothesis_mutations_raise_only_malformed(message: Message, data: st.DataObject) -> None:
    """Any corruption of a valid encoding decodes to *some* message or raises MalformedMessage."""
    raw = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(("flip", "cut", "insert")))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw.insert(i, data.draw(st.integers(0, 255)))
    try:
        decoded = decode(bytes(raw))
    except MalformedMessage:
        return
    assert isinstance(decoded, Proposal | Prepare | Commit | RoundChange)


# ------------------------------------------------------------------------------ simulator


@pytest.mark.parametrize("seed,n", [(3, 4), (11, 7), (21, 4)])
def test_simulator_messages_round_trip(seed: int, n: int) -> None:
    scenario = Scenario.draw(random.Random(seed), n, 2)
    sim = Simulation(seed, scenario)
    sim.run()
    sent = [m for _, m in sim.sent_log]
    assert sent
    kinds = set()
    for message in sent:
        kinds.add(message.kind)
        assert decode_message(encode_message(message), sim.crypto.recover, block_digest) == message
    assert {MessageKind.PROPOSAL, MessageKind.PREPARE, MessageKind.COMMIT} <= kinds


def test_simulator_round_change_with_certificate_round_trips() -> None:
    """Search a few seeds until a core has sent ROUND_CHANGEs with a prepared certificate and
    a round > 0 PROPOSAL with a justification; all round-trip with real secp256k1 signatures."""
    seen_rc = seen_proposal = False
    for seed in range(60):
        scenario = Scenario.draw(random.Random(seed), 4, 2)
        sim = Simulation(seed, scenario)
        sim.run()
        for _, message in sim.sent_log:
            assert (
                decode_message(encode_message(message), sim.crypto.recover, block_digest) == message
            )
            if isinstance(message, RoundChange) and message.prepared_block is not None:
                seen_rc = True
            if isinstance(message, Proposal) and message.round_changes:
                seen_proposal = True
        if seen_rc and seen_proposal:
            break
    assert seen_rc and seen_proposal


def test_real_crypto_simulation_round_trips_with_65_byte_signatures() -> None:
    scenario = Scenario(n=4, heights=1)
    sim = Simulation(5, scenario, "real")
    sim.run()
    assert sim.sent_log
    for _, message in sim.sent_log:
        data = encode_message(message)
        assert decode_message(data, sim.crypto.recover, block_digest, signature_size=65) == message


# ------------------------------------------------------------------------------ malformed


def body(code: int, item: Any) -> bytes:
    return bytes([code]) + rlp.encode(item)


SIG = sign(PreparePayload(1, 0, D)).signature


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "too short"),
        (b"\x13", "too short"),
        (b"\x11" + rlp.encode([]), "unknown code 0x11"),
        (b"\xff\xc0", "unknown code 0xff"),
        (b"\x13\xc5\x01", "not RLP"),  # truncated list
        (b"\x13" + rlp.encode([[1, 0, D], SIG]) + b"\x00", "not RLP"),  # trailing byte
        (b"\x13\x81\x05", "not RLP"),  # non-canonical RLP string
        (body(0x13, b"\x05"), "expected a list"),
        (body(0x13, [[1, 0, D], SIG, b""]), "wrong arity"),
        (body(0x13, [[1, 0, D, b""], SIG]), "wrong arity"),
        (body(0x14, [[1, 0, D], SIG]), "wrong arity"),
        (body(0x13, [[1, 0, D[:31]], SIG]), "wrong field size"),
        (body(0x13, [[1, 0, D + b"\x00"], SIG]), "wrong field size"),
        (body(0x13, [[1, 2**32, D], SIG]), "wrong field size"),
        (body(0x13, [[2**64, 0, D], SIG]), "wrong field size"),
        (body(0x13, [[b"\x00\x01", 0, D], SIG]), "non-canonical integer"),
        (body(0x13, [[1, b"\x00", D], SIG]), "non-canonical integer"),
        (body(0x13, [[[], 0, D], SIG]), "expected an integer"),
        (body(0x13, [[1, 0, []], SIG]), "expected bytes"),
        (body(0x13, [[1, 0, D], b""]), "wrong field size"),
        (body(0x13, [[1, 0, D], b"\x01" * 129]), "wrong field size"),
        (body(0x13, [[1, 0, D], []]), "expected bytes"),
        (body(0x13, [[1, 0, D], b"\x01" * 40]), "does not recover"),
        (body(0x14, [[1, 0, D, b""], SIG]), "commit seal: wrong field size"),
        (body(0x15, [[[1, 1, [D]], SIG], [], []]), "prepared metadata: wrong arity"),
        (body(0x15, [[[1, 1, [D, 0, 0]], SIG], [], []]), "prepared metadata: wrong arity"),
        (body(0x15, [[[1, 1, b""], SIG], [], []]), "prepared metadata: expected a list"),
        (body(0x15, [[[1, 1, [0, D]], SIG], [], []]), "prepared digest: wrong field size"),
        (body(0x15, b"x"), "round change: expected a list"),
        (body(0x15, [[[1, 1, []], SIG], []]), "round change: wrong arity"),
        (body(0x15, [[[1, 1, []], SIG], [], b""]), "round change prepares: expected a list"),
        (body(0x15, [[[1, 1, []], SIG], [[]], []]), "prepared block: expected bytes"),
        (body(0x12, [[[1, 0, D], SIG], [[], []]]), "proposal: wrong arity"),
        (body(0x12, [[[1, 0, D], SIG], [[]], b""]), "proposal justification: wrong arity"),
        (body(0x12, [[[1, 0, D], SIG], [[], []], []]), "proposal block: expected bytes"),
        (
            body(0x12, [[[1, 0, D], SIG], [[[[1, 0, D], SIG]], []], b""]),
            r"round changes\[0\] prepared metadata: expected a list",
        ),
        (
            body(0x12, [[[1, 0, D], SIG], [[], [[[1, 0, []], SIG]]], b""]),
            r"prepares\[0\] digest: expected bytes",
        ),
    ],
)
def test_malformed_input_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode(data)


def test_oversize_is_refused_before_parsing() -> None:
    data = encode_message(Proposal(sign(ProposalPayload(1, 0, D)), block(b"x" * 5000)))
    roundtrip(Proposal(sign(ProposalPayload(1, 0, D)), block(b"x" * 5000)))
    with pytest.raises(MalformedMessage, match="oversize"):
        decode(data, max_size=len(data) - 1)
    decode(data, max_size=len(data))


def test_oversize_justification_is_refused() -> None:
    one = [[1, 0, D], SIG]
    data = body(0x12, [[[1, 0, D], SIG], [[], [one] * (MAX_JUSTIFICATION + 1)], b""])
    with pytest.raises(MalformedMessage, match="oversize"):
        decode(data)
    with pytest.raises(MalformedMessage, match="oversize"):
        decode(body(0x15, [[[1, 1, []], SIG], [], [one] * 4]), max_justification=3)


def test_malformed_is_a_value_error() -> None:
    assert issubclass(MalformedMessage, ValueError)


def test_half_prepared_round_change_is_not_encoded() -> None:
    with pytest.raises(ValueError, match="both"):
        encode_message(RoundChange(Signed(RoundChangePayload(1, 1, 0, None), b"\x00" * 20, SIG)))


def test_signing_record_round_trips_and_rejects_corruption() -> None:
    """The record a validator persists before signing (NodeKeys.last_signed) decodes to the
    same record, prepares re-recovered; a corrupted one is refused, never half-read."""
    from eth_keys import keys

    from consensus import extradata
    from consensus.messages import Block, MessageKind, PreparePayload, Signed
    from consensus.state import (
        PreparedCertificate,
        SignedEntry,
        SigningRecord,
        decode_record,
        encode_record,
    )

    def recover(digest: bytes, signature: bytes) -> bytes | None:
        try:
            return extradata.recover_signer(digest, signature)
        except extradata.InvalidSeal:
            return None

    payload = b"block bytes"
    block = Block(b"\x11" * 32, payload)
    prepares = []
    for i in range(3):
        key = keys.PrivateKey(bytes([i + 1]) * 32)
        p = PreparePayload(7, 2, block.digest)
        prepares.append(
            Signed(
                p, key.public_key.to_canonical_address(), extradata.sign_seal(p.signing_digest, key)
            )
        )
    record = SigningRecord(
        7,
        3,
        (
            SignedEntry(2, MessageKind.PREPARE, block.digest),
            SignedEntry(2, MessageKind.COMMIT, block.digest),
            SignedEntry(3, MessageKind.ROUND_CHANGE, block.digest),
        ),
        PreparedCertificate(2, block, tuple(prepares)),
    )
    data = encode_record(record)
    assert decode_record(data, recover, lambda _payload: block.digest) == record
    empty = SigningRecord(9, 0, (), None)
    assert decode_record(encode_record(empty), recover, lambda _p: b"") == empty
    for bad in (data[:-3], b"\xc0", b"junk", data[:1] + b"\x05" + data[2:]):
        with pytest.raises(MalformedMessage):
            decode_record(bad, recover, lambda _payload: block.digest)
