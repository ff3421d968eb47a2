"""QBFT extraData codec and commit-seal checks, including planted faults the checks must catch."""

from __future__ import annotations

import pytest
import rlp
from eth_keys import keys

from consensus import extradata
from consensus.extradata import ExtraData, InvalidExtraData, InvalidSeal, Vote


def _keys(n: int) -> list[keys.PrivateKey]:
    return [keys.PrivateKey(bytes([i + 1]) * 32) for i in range(n)]


def _addresses(ks: list[keys.PrivateKey]) -> tuple[bytes, ...]:
    return tuple(k.public_key.to_canonical_address() for k in ks)


@pytest.mark.parametrize("n,q", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5), (10, 7)])
def test_quorum_is_ceil_two_thirds(n: int, q: int) -> None:
    assert extradata.quorum(n) == q


def test_round_trip_with_vote_and_seals() -> None:
    ks = _keys(4)
    extra = ExtraData(b"v" * 32, _addresses(ks), Vote(b"\x01" * 20, True), 7, (b"\x02" * 65,))
    decoded = extradata.decode(extra.encode())
    assert decoded == extra
    items = rlp.decode(extra.encode())
    assert items[3] == b"\x07"  # Besu's writeIntScalar: a canonical scalar
    assert items[2] == [b"\x01" * 20, b"\xff"]
    assert rlp.decode(extra.encode(with_seals=False))[4] == []


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\xff\xff", "not RLP"),
        (rlp.encode([b"x" * 32, [], [], 0]), "5 items"),
        (rlp.encode([b"x" * 32, [], [], 0, [], []]), "5 items"),
        (rlp.encode([b"x" * 31, [], [], 0, []]), "vanity"),
        (rlp.encode([b"x" * 32, [b"\x01" * 19], [], 0, []]), "20-byte"),
        (rlp.encode([b"x" * 32, [b"\x01" * 20] * 2, [], 0, []]), "duplicates"),
        (rlp.encode([b"x" * 32, [], [b"\x01" * 20, b"\x01"], 0, []]), "vote"),
        (rlp.encode([b"x" * 32, [], [b"\x01" * 20, b"\x00"], 0, []]), "vote"),
        (rlp.encode([b"x" * 32, [], [], b"\x00" * 4, []]), "chain format v1"),
        (rlp.encode([b"x" * 32, [], [], b"\x00\x07", []]), "leading zero"),
        (rlp.encode([b"x" * 32, [], [], b"\x01" * 5, []]), "at most 4"),
        (rlp.encode([b"x" * 32, [], [], [], []]), "round"),
        (rlp.encode([b"x" * 32, [], [], 0, [b"\x00" * 64]]), "65-byte"),
    ],
)
def test_malformed_extradata_is_refused_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidExtraData, match=reason):
        extradata.decode(raw)


def test_seals_from_quorum_verify() -> None:
    ks = _keys(4)
    digest = b"\x42" * 32
    seals = [extradata.sign_seal(digest, k) for k in ks[:3]]
    assert extradata.verify_seals(digest, seals, _addresses(ks)) == _addresses(ks)[:3]


def test_too_few_seals_fail() -> None:
    ks = _keys(4)
    digest = b"\x42" * 32
    with pytest.raises(InvalidSeal, match="quorum"):
        extradata.verify_seals(digest, [extradata.sign_seal(digest, k) for k in ks[:2]], _addresses(ks))


def test_seal_from_non_validator_fails() -> None:
    ks = _keys(5)
    digest = b"\x42" * 32
    seals = [extradata.sign_seal(digest, k) for k in ks[1:4]] + [extradata.sign_seal(digest, ks[4])]
    with pytest.raises(InvalidSeal, match="non-validator"):
        extradata.verify_seals(digest, seals, _addresses(ks[:4]))


def test_duplicated_seal_does_not_count_twice() -> None:
    ks = _keys(4)
    digest = b"\x42" * 32
    seal = extradata.sign_seal(digest, ks[0])
    with pytest.raises(InvalidSeal, match="twice"):
        extradata.verify_seals(digest, [seal, seal, extradata.sign_seal(digest, ks[1])], _addresses(ks))


def test_seal_over_other_digest_is_from_someone_else() -> None:
    ks = _keys(1)
    seal = extradata.sign_seal(b"\x01" * 32, ks[0])
    with pytest.raises(InvalidSeal):
        extradata.verify_seals(b"\x02" * 32, [seal], _addresses(ks))


def test_consensus_package_imports_no_io() -> None:
    """The consensus core stays pure: no clocks, sockets, files, randomness or asyncio."""
    import ast
    from pathlib import Path

    forbidden = {"asyncio", "socket", "time", "random", "os", "io", "threading", "subprocess", "datetime"}
    for path in Path(extradata.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not forbidden.intersection(names), f"{path.name} imports {names}"
