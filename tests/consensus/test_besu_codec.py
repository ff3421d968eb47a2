"""Our QBFT headers read by a Besu-faithful decoder (tests/consensus/besu_codec.py, written from
Besu's sources): byte-exact extraData, the round as Besu's canonical int scalar, the vote as Besu
writes it, the block hash and the commit-seal hash as Besu computes them, on a real sealed chain
(devnet/sealedchain.py) and on the codec's edge cases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coincurve
import pytest
import rlp
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import extradata
from consensus.extradata import ExtraData, InvalidExtraData, InvalidSeal, LegacyExtraData, Vote
from contracts import ProposalKind
from devnet.sealedchain import ChainBuilder
from node.genesis import dev_key
from tests.consensus import besu_codec as besu
from tests.consensus.besu_codec import BesuExtraData, BesuRLPError, Encoding

VANITY = b"portledger".ljust(32, b"\x00")
VALIDATORS = (b"\x11" * 20, b"\x22" * 20, b"\x33" * 20)
SEALS = (b"\x01" * 64 + b"\x00", b"\x02" * 64 + b"\x01")
#: Round -> its RLP item as Besu's writeIntScalar writes it.
ROUNDS = [
    (0, "80"),
    (1, "01"),
    (127, "7f"),
    (128, "8180"),
    (255, "81ff"),
    (256, "820100"),
    (65_535, "82ffff"),
    (2**31 - 1, "847fffffff"),
    (2**32 - 1, "84ffffffff"),
]


def _ours(round_: int, vote: Vote | None = None) -> ExtraData:
    return ExtraData(VANITY, VALIDATORS, vote, round_, SEALS)


def _besu(extra: ExtraData) -> BesuExtraData:
    vote = None if extra.vote is None else (extra.vote.recipient, extra.vote.add)
    return BesuExtraData(extra.vanity, extra.validators, vote, extra.round, extra.seals)


def _raw(*items: bytes) -> bytes:
    """extraData from already-encoded items (to plant encodings no encoder writes)."""
    return besu.write_list(list(items))


def _items(round_item: bytes = b"\x80", vote: bytes = b"\xc0") -> list[bytes]:
    return [
        besu.write_bytes(VANITY),
        besu.write_list([besu.write_bytes(v) for v in VALIDATORS]),
        vote,
        round_item,
        besu.write_list([]),
    ]


# -- the round ----------------------------------------------------------------------------------
@pytest.mark.parametrize("round_,item", ROUNDS)
def test_round_is_besus_int_scalar(round_: int, item: str) -> None:
    ours = _ours(round_)
    encoded = ours.encode()
    assert rlp.encode(rlp.decode(encoded)[3]).hex() == item
    assert extradata.decode(encoded) == ours
    read = besu.decode_raw(encoded)
    # Besu holds the round in a Java int: 2**31 and above read negative, same 32 bits.
    assert read.round % 2**32 == round_
    assert (read.vanity, read.validators, read.vote, read.seals) == (
        VANITY, VALIDATORS, None, SEALS,
    )


@pytest.mark.parametrize("round_,_item", [r for r in ROUNDS if r[0] < 2**31])
def test_every_encoding_is_byte_for_byte_besus(round_: int, _item: str) -> None:
    for vote in (None, Vote(b"\x44" * 20, True), Vote(b"\x55" * 20, False)):
        ours = _ours(round_, vote)
        assert ours.encode() == besu.encode(_besu(ours), Encoding.ALL)
        assert ours.encode(with_seals=False) == besu.encode(
            _besu(ours), Encoding.EXCLUDE_COMMIT_SEALS
        )
        assert ours.for_block_hash() == besu.encode(
            _besu(ours), Encoding.EXCLUDE_COMMIT_SEALS_AND_ROUND_NUMBER
        )


def test_rounds_from_two_to_the_31_are_beyond_besus_writer() -> None:
    """Besu's round is a Java int and writeIntScalar refuses a negative one: it never writes a
    round of 2**31 or more. We accept up to 2**32 - 1 (4 bytes), which its reader reads back
    (as a negative int); nothing above."""
    with pytest.raises(BesuRLPError):
        besu.write_int_scalar(2**31)
    assert besu.decode_raw(_ours(2**31).encode()).round == -(2**31)


@pytest.mark.parametrize("round_", [-1, 2**32, 2**40])
def test_round_out_of_range_is_not_encoded(round_: int) -> None:
    with pytest.raises(InvalidExtraData, match="outside"):
        _ours(round_).encode()


@pytest.mark.parametrize(
    "round_item",
    [b"\x00", b"\x82\x00\x07", b"\x84\x00\x00\x00\x07", b"\x84\x00\x00\x00\x00"],
    ids=["zero-byte", "leading-zero", "v1-four-bytes", "v1-round-zero"],
)
def test_leading_zero_round_is_refused_by_both(round_item: bytes) -> None:
    raw = _raw(*_items(round_item))
    with pytest.raises(LegacyExtraData, match="leading zero"):
        extradata.decode(raw)
    with pytest.raises(BesuRLPError, match="leading zeros"):
        besu.decode_raw(raw)


def test_five_byte_round_is_refused_by_both() -> None:
    raw = _raw(*_items(b"\x85\x01\x00\x00\x00\x00"))
    with pytest.raises(InvalidExtraData, match="at most 4") as caught:
        extradata.decode(raw)
    assert not isinstance(caught.value, LegacyExtraData)
    with pytest.raises(BesuRLPError, match="maximum of 4"):
        besu.decode_raw(raw)


def test_round_as_a_list_is_refused_by_both() -> None:
    raw = _raw(*_items(b"\xc0"))
    with pytest.raises(InvalidExtraData, match="round"):
        extradata.decode(raw)
    with pytest.raises(BesuRLPError, match="list"):
        besu.decode_raw(raw)


# -- non-canonical RLP --------------------------------------------------------------------------
def _planted() -> list[tuple[str, bytes]]:
    vanity, validators, vote, round_, seals = _items()
    valid = _raw(vanity, validators, vote, round_, seals)
    address = besu.write_bytes(VALIDATORS[0])
    return [
        ("round 5 behind a prefix", _raw(vanity, validators, vote, b"\x81\x05", seals)),
        ("long form for a short string", _raw(b"\xb8\x20" + VANITY, validators, vote, round_, seals)),
        ("long length with a leading zero", _raw(b"\xb9\x00\x20" + VANITY, validators, vote, round_, seals)),
        ("long form for a short list", _raw(vanity, b"\xf8\x15" + address, vote, round_, seals)),
        ("trailing byte", valid + b"\x00"),
        ("truncated", valid[:-1]),
        ("payload past its list", valid[:1] + bytes([valid[1] + 1]) + valid[2:]),
    ]


@pytest.mark.parametrize("what,raw", _planted(), ids=[w for w, _ in _planted()])
def test_non_canonical_rlp_is_refused_by_both(what: str, raw: bytes) -> None:
    with pytest.raises(InvalidExtraData):
        extradata.decode(raw)
    with pytest.raises(BesuRLPError):
        besu.decode_raw(raw)


# -- the vote -----------------------------------------------------------------------------------
@pytest.mark.parametrize("add,item", [(True, "d794" + "44" * 20 + "81ff"), (False, "d694" + "44" * 20 + "80")])
def test_vote_is_written_as_besu_writes_it(add: bool, item: str) -> None:
    recipient = b"\x44" * 20
    encoded = _ours(3, Vote(recipient, add)).encode()
    assert rlp.encode(rlp.decode(encoded)[2]).hex() == item
    assert besu.decode_raw(encoded).vote == (recipient, add)
    assert extradata.decode(encoded).vote == Vote(recipient, add)


@pytest.mark.parametrize(
    "second,besu_reads",
    [(b"\x00", False), (b"\xc0", False), (b"\x01", None)],
    ids=["zero-byte-drop", "empty-list-drop", "other-byte"],
)
def test_votes_besu_reads_but_never_writes_are_refused(second: bytes, besu_reads: bool | None) -> None:
    """Besu's reader also takes the byte 0x00, and even an empty list, as a drop vote; its writer
    only writes "" for a drop, and so do we — and we accept only that (one encoding per header)."""
    recipient = b"\x44" * 20
    raw = _raw(*_items(vote=besu.write_list([besu.write_bytes(recipient), second])))
    if besu_reads is None:
        with pytest.raises(BesuRLPError, match="Vote field"):
            besu.decode_raw(raw)
    else:
        assert besu.decode_raw(raw).vote == (recipient, besu_reads)
    with pytest.raises(InvalidExtraData, match="vote"):
        extradata.decode(raw)


def test_an_item_after_the_seals_is_refused_though_besu_skips_it() -> None:
    raw = _raw(*_items(), besu.write_bytes(b"x"))
    assert besu.decode_raw(raw).round == 0  # leaveListLenient
    with pytest.raises(InvalidExtraData, match="5 items"):
        extradata.decode(raw)


# -- a real sealed chain ------------------------------------------------------------------------
#: Rounds the chain's blocks are committed in (each sealed by a quorum of the parent's list).
CHAIN_ROUNDS = [0, 1, 127, 128, 255, 256, 0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainBuilder]:
    b = ChainBuilder(Path(tmp_path_factory.mktemp("besu-chain")))
    for round_ in CHAIN_ROUNDS:
        b.seal([], round_=round_)
    # A validator-set change through governance: the change block lists five validators.
    newcomer = dev_key("org:4").public_key.to_canonical_address()
    b.governance(ProposalKind.ADD_VALIDATOR, b.org_id(newcomer), newcomer, [0, 1, 2])
    b.seal([], round_=2)
    yield b
    b.db.close()


def _recover(digest: bytes, seal: bytes) -> bytes:
    public = coincurve.PublicKey.from_signature_and_message(seal, digest, hasher=None)
    address: bytes = keccak(public.format(compressed=False)[1:])[12:]
    return address


def _headers(b: ChainBuilder) -> list[Any]:
    return [b.ledger.header_by_number(n) for n in range(b.ledger.head().block_number + 1)]


def test_genesis_hash_and_extradata_as_besu_reads_them(chain: ChainBuilder) -> None:
    genesis = chain.ledger.genesis_header()
    read = besu.decode_raw(genesis.extra_data)
    assert read.round == 0 and read.seals == () and read.vote is None
    assert read.validators == extradata.decode(genesis.extra_data).validators
    assert besu.encode(read) == genesis.extra_data
    assert besu.block_hash(rlp.encode(genesis)) == genesis.hash


def test_every_sealed_header_agrees_with_besus_decoder(chain: ChainBuilder) -> None:
    headers = _headers(chain)
    assert len(headers) == 1 + len(CHAIN_ROUNDS) + 2 + 1
    rounds = []
    for parent, header in zip(headers, headers[1:], strict=False):
        raw = rlp.encode(header)
        read = besu.decode_raw(header.extra_data)
        ours = extradata.decode(header.extra_data)
        assert (read.vanity, read.validators, read.round, read.seals) == (
            ours.vanity, ours.validators, ours.round, ours.seals,
        )
        assert read.vote is None and ours.vote is None
        # Byte for byte what Besu's codec writes for the same data.
        assert besu.encode(read) == header.extra_data
        # Besu's block hash is ours, and the child's parent link.
        assert besu.block_hash(raw) == header.hash
        assert header.parent_hash == besu.block_hash(rlp.encode(parent))
        # The seals sign Besu's commit-seal hash: a quorum of the parent's list, distinct.
        digest = besu.commit_seal_hash(raw)
        assert digest == extradata.commit_digest(header)
        allowed = besu.decode_raw(parent.extra_data).validators
        signers = [_recover(digest, seal) for seal in read.seals]
        assert len(set(signers)) == len(signers) >= extradata.quorum(len(allowed))
        assert set(signers) <= set(allowed)
        rounds.append(read.round)
    assert rounds[: len(CHAIN_ROUNDS)] == CHAIN_ROUNDS
    assert rounds[-1] == 2
    sizes = [len(besu.decode_raw(h.extra_data).validators) for h in headers]
    assert sizes[0] == 4 and sizes[-1] == 5


def test_the_block_hash_ignores_round_and_seals_as_besus(chain: ChainBuilder) -> None:
    header = chain.ledger.head()
    extra = extradata.decode(header.extra_data)
    for round_, seals in ((0, ()), (9, extra.seals[:1]), (2**31 - 1, extra.seals)):
        moved = header.copy(extra_data=ExtraData(
            extra.vanity, extra.validators, extra.vote, round_, seals
        ).encode())
        assert besu.block_hash(rlp.encode(moved)) == header.hash == extradata.block_hash(moved)
        if round_ != extra.round:
            assert besu.commit_seal_hash(rlp.encode(moved)) != extradata.commit_digest(header)


# -- differential: whatever we accept, Besu reads the same --------------------------------------
addresses = st.binary(min_size=20, max_size=20)
seals = st.binary(min_size=64, max_size=64).map(lambda rs: rs[:32] + rs[32:] + b"\x00")


@settings(max_examples=300, deadline=None)
@given(
    round_=st.integers(0, 2**31 - 1),
    validators=st.lists(addresses, max_size=8, unique=True),
    vote=st.none() | st.tuples(addresses, st.booleans()),
    seal_list=st.lists(seals, max_size=5),
)
def test_any_extradata_we_write_is_besus(
    round_: int, validators: list[bytes], vote: tuple[bytes, bool] | None, seal_list: list[bytes]
) -> None:
    ours = ExtraData(VANITY, tuple(validators), None if vote is None else Vote(*vote), round_, ())
    assert ours.encode() == besu.encode(_besu(ours))
    assert besu.decode_raw(ours.encode()) == _besu(ours)
    # Seals must be valid signatures for Besu's reader: only the bytes are compared here.
    with_seals = ours.with_seals(seal_list).encode()
    assert rlp.decode(besu.encode(_besu(ours.with_seals(seal_list)))) == rlp.decode(with_seals)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_a_mutated_extradata_we_accept_besu_reads_alike(data: st.DataObject) -> None:
    """Flip, insert or delete bytes of a real extraData: whenever our decoder accepts the
    result, Besu's accepts it too and reads the same fields (ours is never laxer) — but for a
    seal out of secp256k1's range, which Besu's codec refuses while decoding and ours when the
    seals are checked (the block is refused either way)."""
    raw = bytearray(_ours(data.draw(st.sampled_from([r for r, _ in ROUNDS[:8]])),
                          Vote(b"\x44" * 20, data.draw(st.booleans()))).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif kind == "insert":
            raw.insert(at, data.draw(st.integers(0, 255)))
        else:
            del raw[at]
    try:
        ours = extradata.decode(bytes(raw))
    except InvalidExtraData:
        return
    bad_seals = [seal for seal in ours.seals if not _in_range(seal)]
    if bad_seals:
        with pytest.raises(BesuRLPError, match="signature"):
            besu.decode_raw(bytes(raw))
        with pytest.raises(InvalidSeal):
            extradata.recover_signer(b"\x42" * 32, bad_seals[0])
        return
    read = besu.decode_raw(bytes(raw))
    assert read == _besu(ours)


def _in_range(seal: bytes) -> bool:
    r, s = int.from_bytes(seal[:32], "big"), int.from_bytes(seal[32:64], "big")
    return 0 < r < extradata.SECP256K1_N and 0 < s < extradata.SECP256K1_N and seal[64] <= 1


def test_a_seal_out_of_range_is_refused_by_besus_codec_and_by_our_seal_check() -> None:
    raw = bytearray(_ours(3).encode())
    raw[-1] = 0x07  # the last seal's recovery id
    with pytest.raises(BesuRLPError, match="signature"):
        besu.decode_raw(bytes(raw))
    seal = extradata.decode(bytes(raw)).seals[-1]
    with pytest.raises(InvalidSeal, match="v in"):
        extradata.recover_signer(b"\x42" * 32, seal)
