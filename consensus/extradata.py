"""QBFT block header ``extraData`` (Hyperledger Besu's layout, byte for byte) and commit seals.

A QBFT header carries consensus data in ``extraData`` as RLP (chain format v2, Besu's
``QbftExtraDataCodec``)::

    [ vanity (32 bytes),
      [validator address, ...],          # the validator set that must seal the next block
      vote,                              # [] or [address, 0xFF (add) | "" (drop)]
      round,                             # canonical RLP scalar: 0 -> 0x80, 1 -> 0x01, 256 -> 0x820100
      [commit seal, ...] ]               # 65-byte secp256k1 signatures r ‖ s ‖ v (v ∈ {0, 1})

Besu writes the round with ``RLPOutput.writeIntScalar`` (no leading zero bytes; zero is the
empty string) and reads it with ``RLPInput.readIntScalar``, which refuses leading zero bytes and
more than 4 bytes. A drop vote is written ``writeNull()`` (the empty string 0x80), an add vote
``writeByte(0xFF)`` (0x81 0xFF). This decoder accepts exactly what Besu writes: a round with a
leading zero byte — the 4 fixed bytes of chain format v1 (IBFT 2.0's layout) included — is
:class:`LegacyExtraData`, any other deviation :class:`InvalidExtraData`.

A commit seal signs the hash of the header whose ``extraData`` has the seals list emptied (the
round kept): :func:`commit_digest` (Besu ``encodeWithoutCommitSeals``). The *block hash*
(:func:`block_hash`, Besu ``encodeWithoutCommitSealsAndRoundNumber``) also writes round 0, so a
block keeps its identity when it is re-proposed in a later round and whichever quorum of seals
a node collected. Both keep the genesis header's ``extraData`` as it is (Besu
``BftBlockHashing.serializeHeader``). Anyone holding only headers, RLP and secp256k1 can
therefore check a block: decode ``extraData``, recover each seal and count distinct signers that
are in the validator list of the parent header — at least :func:`quorum` of them.

Pure: no I/O, no clock. Header objects are py-evm headers, or anything RLP-serialisable with
``block_number``, ``extra_data`` and ``copy(extra_data=...)`` (the offline verifier's raw header
fields, :class:`proofs.bundle.HeaderFields`). Seal recovery needs only ``coincurve``
(libsecp256k1), so the offline verifier that reuses this module pulls in neither py-evm nor
``eth_keys``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import coincurve
import rlp
from eth_hash.auto import keccak

if TYPE_CHECKING:  # only the annotation: signing is the node's, recovery needs no eth_keys
    from eth_keys.datatypes import PrivateKey

#: The chain format this module reads and writes (``docs/chain-format.md``). v1 wrote the round
#: as 4 fixed bytes; v2 writes it as Besu does (a canonical RLP scalar) and votes to drop as "".
CHAIN_FORMAT_VERSION = 2
VANITY_LENGTH = 32
SEAL_LENGTH = 65
#: Largest round: Besu reads the round as a scalar of at most 4 bytes (``readIntScalar``).
MAX_ROUND = 2**32 - 1
#: The vote's second item, as Besu writes it: ``writeByte(0xFF)`` to add, ``writeNull()`` to drop.
VOTE_ADD = b"\xff"
VOTE_DROP = b""
#: Order of the secp256k1 group: r and s of a signature lie in [1, n).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class InvalidExtraData(ValueError):
    """``extraData`` is not a well-formed QBFT extraData."""


class LegacyExtraData(InvalidExtraData):
    """``extraData`` whose round has leading zero bytes: chain format v1's 4-byte round (or a
    non-canonical scalar), which Besu's ``readIntScalar`` refuses."""


class InvalidSeal(ValueError):
    """The commit seals do not prove the block (too few, duplicated, or from non-validators)."""


class Header(Protocol):
    @property
    def block_number(self) -> int: ...

    @property
    def extra_data(self) -> bytes: ...

    def copy(self, **kwargs: Any) -> Header: ...


@dataclass(frozen=True)
class Vote:
    """A Besu-style header vote to add or drop one validator."""

    #: The validator address voted on.
    recipient: bytes
    #: True to add, False to drop.
    add: bool


@dataclass(frozen=True)
class ExtraData:
    """Decoded QBFT ``extraData``."""

    #: 32 free bytes (client name and version by convention).
    vanity: bytes = b"\x00" * VANITY_LENGTH
    #: Addresses (20 bytes each) of the validators that must seal this block.
    validators: tuple[bytes, ...] = ()
    #: The header vote, if any.
    vote: Vote | None = None
    #: The consensus round in which this block was proposed (0 ..= :data:`MAX_ROUND`).
    round: int = 0
    #: Commit seals (65 bytes each).
    seals: tuple[bytes, ...] = field(default=())

    def encode(self, *, with_seals: bool = True) -> bytes:
        """RLP-encode as Besu's ``QbftExtraDataCodec`` does; ``with_seals=False`` gives the form
        that commit seals sign (``encodeWithoutCommitSeals``). :class:`InvalidExtraData` for a
        round outside 0 ..= :data:`MAX_ROUND`."""
        if not 0 <= self.round <= MAX_ROUND:
            raise InvalidExtraData(f"round {self.round} is outside 0..{MAX_ROUND}")
        vote: list[bytes] = []
        if self.vote is not None:
            vote = [self.vote.recipient, VOTE_ADD if self.vote.add else VOTE_DROP]
        encoded: bytes = rlp.encode(
            [
                self.vanity,
                list(self.validators),
                vote,
                self.round,  # pyrlp writes an int as Besu's writeIntScalar: minimal, 0 -> 0x80
                list(self.seals) if with_seals else [],
            ]
        )
        return encoded

    def for_block_hash(self) -> bytes:
        """The encoding the block hash covers: round 0 and no seals (Besu
        ``encodeWithoutCommitSealsAndRoundNumber``)."""
        return ExtraData(self.vanity, self.validators, self.vote, 0, ()).encode()

    def with_seals(self, seals: Iterable[bytes]) -> ExtraData:
        return ExtraData(self.vanity, self.validators, self.vote, self.round, tuple(seals))


def quorum(validator_count: int) -> int:
    """Commit seals needed for ``n`` validators: ceil(2n/3)."""
    return (2 * validator_count + 2) // 3


def decode(raw: bytes) -> ExtraData:
    """Decode ``extraData`` (strict, canonical RLP); raise :class:`InvalidExtraData` naming what
    is wrong — :class:`LegacyExtraData` for a round with leading zero bytes (chain format v1)."""
    try:
        items = rlp.decode(raw)
    except Exception as exc:  # rlp raises several unrelated types
        raise InvalidExtraData(f"extraData is not RLP: {exc}") from exc
    if not isinstance(items, list) or len(items) != 5:
        raise InvalidExtraData("extraData must be an RLP list of 5 items")
    vanity, validators, vote, round_, seals = items
    if not isinstance(vanity, bytes) or len(vanity) != VANITY_LENGTH:
        raise InvalidExtraData("vanity must be 32 bytes")
    if not isinstance(validators, list) or not all(
        isinstance(v, bytes) and len(v) == 20 for v in validators
    ):
        raise InvalidExtraData("validators must be a list of 20-byte addresses")
    if len(set(validators)) != len(validators):
        raise InvalidExtraData("validator list has duplicates")
    parsed_vote: Vote | None = None
    if not isinstance(vote, list):
        raise InvalidExtraData("vote must be a list")
    if vote:
        if (
            len(vote) != 2
            or not isinstance(vote[0], bytes)
            or len(vote[0]) != 20
            or vote[1] not in (VOTE_ADD, VOTE_DROP)
        ):
            raise InvalidExtraData('vote must be [address, 0xFF (add) | "" (drop)]')
        parsed_vote = Vote(vote[0], vote[1] == VOTE_ADD)
    if not isinstance(seals, list) or not all(
        isinstance(s, bytes) and len(s) == SEAL_LENGTH for s in seals
    ):
        raise InvalidExtraData("commit seals must be a list of 65-byte signatures")
    return ExtraData(vanity, tuple(validators), parsed_vote, decode_round(round_), tuple(seals))


def decode_round(item: object) -> int:
    """The round from its RLP item, read as Besu's ``readIntScalar``: a string of at most 4
    bytes without leading zero bytes (0 is the empty string). :class:`LegacyExtraData` for
    leading zeros (chain format v1's 4 fixed bytes), :class:`InvalidExtraData` otherwise."""
    if not isinstance(item, bytes):
        raise InvalidExtraData("round must be an RLP string (a scalar), not a list")
    if item[:1] == b"\x00":
        raise LegacyExtraData(
            f"round 0x{item.hex()} is not a canonical RLP scalar (leading zero bytes); 4 fixed "
            f"bytes is chain format v1, this node reads chain format v{CHAIN_FORMAT_VERSION} "
            "(Besu QBFT's writeIntScalar)"
        )
    if len(item) > 4:
        raise InvalidExtraData(f"round is {len(item)} bytes, at most 4 (round <= {MAX_ROUND})")
    return int.from_bytes(item, "big")


def _keccak_header(header: Header, extra_data: bytes) -> bytes:
    digest: bytes = keccak(rlp.encode(header.copy(extra_data=extra_data)))
    return digest


def commit_digest(header: Header, extra: ExtraData | None = None) -> bytes:
    """The 32-byte hash a commit seal signs: Keccak-256 of the header's RLP with an empty seals
    list in ``extraData`` (round kept; Besu ``calculateDataHashForCommittedSeal``). The genesis
    header is hashed with its ``extraData`` as it is. ``extra``: the header's ``extraData``
    already decoded."""
    if header.block_number == 0:
        return _keccak_header(header, header.extra_data)
    if extra is None:
        extra = decode(header.extra_data)
    return _keccak_header(header, extra.encode(with_seals=False))


def block_hash(header: Header, extra: ExtraData | None = None) -> bytes:
    """The block hash (Besu ``calculateHashOfBftBlockOnchain``): Keccak-256 of the header's RLP
    with round 0 and no seals in ``extraData``; the genesis header's ``extraData`` is kept as it
    is. A header whose ``extraData`` is not QBFT's (no importer accepts one) hashes in full, as
    on Ethereum. ``extra``: the header's ``extraData`` already decoded."""
    if header.block_number == 0:
        return _keccak_header(header, header.extra_data)
    if extra is None:
        try:
            extra = decode(header.extra_data)
        except InvalidExtraData:
            return _keccak_header(header, header.extra_data)
    return _keccak_header(header, extra.for_block_hash())


def sign_seal(digest: bytes, private_key: PrivateKey) -> bytes:
    """A 65-byte commit seal (r ‖ s ‖ v) over ``digest``."""
    seal: bytes = private_key.sign_msg_hash(digest).to_bytes()
    return seal


def recover_signer(digest: bytes, seal: bytes) -> bytes:
    """Address that made ``seal`` (r ‖ s ‖ v, v ∈ {0, 1}) over ``digest``; :class:`InvalidSeal`
    if unrecoverable. Any secp256k1 signature in that form: commit seals, transactions' too."""
    if len(seal) != SEAL_LENGTH or seal[64] > 1:
        raise InvalidSeal("commit seal does not recover: not 65 bytes with v in {0, 1}")
    r = int.from_bytes(seal[:32], "big")
    s = int.from_bytes(seal[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise InvalidSeal("commit seal does not recover: r or s out of range")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(seal, digest, hasher=None)
    except Exception as exc:  # coincurve raises ValueError or its own errors
        raise InvalidSeal(f"commit seal does not recover: {exc}") from exc
    address: bytes = keccak(public_key.format(compressed=False)[1:])[12:]
    return address


def verify_seals(
    digest: bytes, seals: Sequence[bytes], validators: Sequence[bytes]
) -> tuple[bytes, ...]:
    """Check that ``seals`` over ``digest`` come from at least a quorum of ``validators``.

    Returns the signers, in seal order. Raises :class:`InvalidSeal` for a seal from a
    non-validator, a validator sealing twice, or fewer than ``quorum(len(validators))`` seals.
    """
    allowed = set(validators)
    signers: list[bytes] = []
    for seal in seals:
        signer = recover_signer(digest, seal)
        if signer not in allowed:
            raise InvalidSeal(f"commit seal from non-validator 0x{signer.hex()}")
        if signer in signers:
            raise InvalidSeal(f"validator 0x{signer.hex()} sealed twice")
        signers.append(signer)
    needed = quorum(len(validators))
    if len(signers) < needed:
        raise InvalidSeal(f"{len(signers)} commit seals, quorum of {len(validators)} is {needed}")
    return tuple(signers)
