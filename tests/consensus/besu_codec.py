"""A Besu-faithful reader and writer of QBFT ``extraData`` and header hashes, for the tests only.

Written from Hyperledger Besu's sources (read for their behaviour, nothing copied), independently
of :mod:`consensus.extradata` and of pyrlp, so that the tests can check our headers the way a
Besu node would read them:

- ``ethereum/rlp``: ``BytesValueRLPInput`` as Besu's QBFT codec opens it (``lenient = false``:
  malformed input throws; the top item must fill the input exactly), ``AbstractRLPInput``
  (``readBytes``, ``readByte`` of exactly one byte, ``readIntScalar``: at most 4 bytes and no
  leading zero byte, read into a Java ``int``; ``enterList`` / ``leaveList`` /
  ``leaveListLenient``; a one-byte string below 0x80 written with a prefix is refused),
  ``RLPDecodingHelpers`` (a long length with leading zeros, a long form for fewer than 56
  bytes, a length of more than 4 bytes, a payload past its enclosing item: refused), and
  ``RLPOutput`` (``writeIntScalar`` = ``writeLongScalar``: refuses a negative value, writes the
  minimal big-endian bytes, 0 as the empty string; ``writeNull`` = the empty string;
  ``writeByte``).
- ``consensus/qbft/QbftExtraDataCodec``: ``decodeRaw`` (vanity as any string, validators as
  20-byte ``Address.readFrom``, the vote — an empty list is none, otherwise ``[address, x]``
  where an empty ``x`` is a drop and a one-byte ``x`` is 0xFF add or 0x00 drop —, the round by
  ``readIntScalar``, the seals as 65-byte signatures, then ``leaveListLenient``: items after the
  seals are ignored) and ``encode`` for its three encoding types.
- ``consensus/common/bft/BftBlockHashing``: the commit-seal hash (``encodeWithoutCommitSeals``)
  and the on-chain block hash (``encodeWithoutCommitSealsAndRoundNumber``: round 0, no seals);
  ``serializeHeader`` keeps the genesis header's ``extraData`` as it is.
- ``crypto/SECPSignature.decode``: 65 bytes, r and s in [1, n), recovery id 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from eth_hash.auto import keccak

T = TypeVar("T")

#: secp256k1 group order (SECPSignature.decode bounds r and s by it).
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEADER_NUMBER, _HEADER_EXTRA = 8, 12


class BesuRLPError(Exception):
    """What Besu throws on this input (RLPException and its Malformed / Corrupted kinds)."""


# -- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    is_list: bool
    start: int  # the item's first byte (its prefix)
    payload: int  # the payload's first byte
    size: int  # payload bytes

    @property
    def end(self) -> int:
        return self.payload + self.size


class Reader:
    """A strict RLP cursor over ``data`` (Besu ``BytesValueRLPInput(data, lenient=false)``)."""

    def __init__(self, data: bytes) -> None:
        if not data:
            raise BesuRLPError("empty input")
        self._data = data
        self._ends: list[int] = []  # end offset of each entered list
        top = self._item_at(0, len(data))
        if top.end != len(data):
            raise BesuRLPError(
                f"input has extra data after RLP encoding: item ends at {top.end}, input {len(data)}"
            )
        self._pos = 0

    def _limit(self) -> int:
        return self._ends[-1] if self._ends else len(self._data)

    def _item_at(self, pos: int, limit: int) -> _Item:
        data = self._data
        if pos >= limit:
            raise BesuRLPError("input is fully consumed / end of the current list")
        prefix = data[pos]
        if prefix < 0x80:
            item = _Item(False, pos, pos, 1)
        elif prefix <= 0xB7:
            item = _Item(False, pos, pos + 1, prefix - 0x80)
            if item.size == 1 and item.payload < limit and data[item.payload] < 0x80:
                raise BesuRLPError("single byte value should have been written without a prefix")
        elif prefix <= 0xBF:
            item = self._long(pos, prefix - 0xB7, False, limit)
        elif prefix <= 0xF7:
            item = _Item(True, pos, pos + 1, prefix - 0xC0)
        else:
            item = self._long(pos, prefix - 0xF7, True, limit)
        if item.end > limit:
            raise BesuRLPError(f"payload of {item.size} bytes at {item.payload} runs past {limit}")
        return item

    def _long(self, pos: int, size_length: int, is_list: bool, limit: int) -> _Item:
        if pos + 1 + size_length > limit:
            raise BesuRLPError("not enough bytes to read the payload size")
        size_bytes = self._data[pos + 1 : pos + 1 + size_length]
        if size_bytes[0] == 0:
            raise BesuRLPError("size of payload has leading zeros")
        if size_length > 4:
            raise BesuRLPError("size value exceeds the max supported size")
        size = int.from_bytes(size_bytes, "big")
        if size > 2**31 - 1:
            raise BesuRLPError("size value exceeds the max supported size")
        if size < 56:
            raise BesuRLPError(f"written as a long item, but size {size} < 56 bytes")
        return _Item(is_list, pos, pos + 1 + size_length, size)

    def _current(self) -> _Item:
        return self._item_at(self._pos, self._limit())

    # RLPInput's methods, under their Besu names (snake case)
    def is_end_of_current_list(self) -> bool:
        return bool(self._ends) and self._pos >= self._ends[-1]

    def next_is_list(self) -> bool:
        return not self.is_end_of_current_list() and self._current().is_list

    def next_size(self) -> int:
        return self._current().size

    def skip_next(self) -> None:
        self._pos = self._current().end

    def enter_list(self) -> None:
        item = self._current()
        if not item.is_list:
            raise BesuRLPError("expected current item to be a list")
        self._ends.append(item.end)
        self._pos = item.payload

    def leave_list(self, *, lenient: bool = False) -> None:
        if not self._ends:
            raise BesuRLPError("not within an RLP list")
        end = self._ends.pop()
        if not lenient and self._pos < end:
            raise BesuRLPError("not at the end of the current list")
        self._pos = end

    def _element(self, what: str) -> _Item:
        item = self._current()
        if item.is_list:
            raise BesuRLPError(f"cannot read a {what}, current item is a list")
        return item

    def read_bytes(self) -> bytes:
        item = self._element("bytes value")
        self._pos = item.end
        return self._data[item.payload : item.end]

    def read_byte(self) -> int:
        item = self._element("byte")
        if item.size != 1:
            raise BesuRLPError(f"cannot read a byte, expecting 1 byte but element is {item.size}")
        self._pos = item.end
        return self._data[item.payload]

    def read_int_scalar(self) -> int:
        """A Java ``int``: 4 payload bytes of 0x80000000 or more read negative."""
        item = self._element("int scalar")
        payload = self._data[item.payload : item.end]
        if payload[:1] == b"\x00":
            raise BesuRLPError("invalid scalar, has leading zeros bytes")
        if item.size > 4:
            raise BesuRLPError(f"cannot read a int scalar, expecting a maximum of 4 bytes, got {item.size}")
        self._pos = item.end
        value = int.from_bytes(payload, "big")
        return value - 2**32 if value >= 2**31 else value

    def read_list(self, read: Callable[[Reader], T]) -> list[T]:
        self.enter_list()
        out: list[T] = []
        while not self.is_end_of_current_list():
            out.append(read(self))
        self.leave_list()
        return out


# -- writing ------------------------------------------------------------------------------------
def _length(offset: int, size: int) -> bytes:
    if size < 56:
        return bytes((offset + size,))
    size_bytes = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(size_bytes),)) + size_bytes


def write_bytes(value: bytes) -> bytes:
    """``writeBytes``: a single byte below 0x80 is itself, otherwise a length prefix."""
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _length(0x80, len(value)) + value


def write_list(items: list[bytes]) -> bytes:
    payload = b"".join(items)
    return _length(0xC0, len(payload)) + payload


def write_int_scalar(value: int) -> bytes:
    """``writeIntScalar(int)``: a Java int, refused when negative; minimal bytes, 0 empty."""
    if not -(2**31) <= value < 2**31:
        raise BesuRLPError(f"{value} is not a Java int")
    if value < 0:
        raise BesuRLPError(f"Invalid negative value {value} for scalar encoding")
    return write_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


# -- QBFT extraData ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BesuExtraData:
    """Besu's ``BftExtraData`` as its QBFT codec decodes it."""

    vanity: bytes
    validators: tuple[bytes, ...]
    #: (recipient, add?) or None.
    vote: tuple[bytes, bool] | None
    #: As Besu holds it: a Java int.
    round: int
    seals: tuple[bytes, ...]


class Encoding(Enum):
    """``BftExtraDataCodec.EncodingType``."""

    ALL = "all"
    EXCLUDE_COMMIT_SEALS = "exclude commit seals"
    EXCLUDE_COMMIT_SEALS_AND_ROUND_NUMBER = "exclude commit seals and round number"


def _address(reader: Reader) -> bytes:
    value = reader.read_bytes()
    if len(value) != 20:
        raise BesuRLPError(f"Address unexpected size of {len(value)} (needs 20)")
    return value


def _signature(reader: Reader) -> bytes:
    value = reader.read_bytes()
    if len(value) != 65:
        raise BesuRLPError(f"signature must be 65 bytes, got {len(value)}")
    r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:64], "big")
    if not (0 < r < _N and 0 < s < _N) or value[64] > 1:
        raise BesuRLPError("invalid signature: r, s or recovery id out of range")
    return value


def decode_raw(raw: bytes) -> BesuExtraData:
    """``QbftExtraDataCodec.decodeRaw``; :class:`BesuRLPError` where Besu throws."""
    if not raw:
        raise BesuRLPError("Invalid Bytes supplied - Bft Extra Data required.")
    reader = Reader(raw)
    reader.enter_list()
    vanity = reader.read_bytes()
    validators = tuple(reader.read_list(_address))
    vote: tuple[bytes, bool] | None
    if reader.next_is_list() and reader.next_size() == 0:
        vote = None
        reader.skip_next()
    else:
        reader.enter_list()
        recipient = _address(reader)
        if reader.next_size() == 0:
            reader.skip_next()
            add = False
        else:
            byte = reader.read_byte()
            if byte not in (0xFF, 0x00):
                raise BesuRLPError("Vote field was of an incorrect binary value.")
            add = byte == 0xFF
        reader.leave_list()
        vote = (recipient, add)
    round_ = reader.read_int_scalar()
    seals = tuple(reader.read_list(_signature))
    reader.leave_list(lenient=True)
    return BesuExtraData(vanity, validators, vote, round_, seals)


def encode(extra: BesuExtraData, encoding: Encoding = Encoding.ALL) -> bytes:
    """``QbftExtraDataCodec.encode`` for one of its encoding types."""
    items = [write_bytes(extra.vanity), write_list([write_bytes(v) for v in extra.validators])]
    if extra.vote is None:
        items.append(write_list([]))
    else:
        recipient, add = extra.vote
        items.append(write_list([write_bytes(recipient), write_bytes(b"\xff" if add else b"")]))
    if encoding == Encoding.EXCLUDE_COMMIT_SEALS_AND_ROUND_NUMBER:
        items += [write_int_scalar(0), write_list([])]
    else:
        items.append(write_int_scalar(extra.round))
        seals = extra.seals if encoding == Encoding.ALL else ()
        items.append(write_list([write_bytes(s) for s in seals]))
    return write_list(items)


# -- header hashes (BftBlockHashing) --------------------------------------------------------------
def header_fields(header_rlp: bytes) -> list[bytes]:
    """A header's fields (strings), read strictly."""
    reader = Reader(header_rlp)
    reader.enter_list()
    fields: list[bytes] = []
    while not reader.is_end_of_current_list():
        fields.append(reader.read_bytes())
    reader.leave_list()
    return fields


def _hash_with(header_rlp: bytes, encoding: Encoding) -> bytes:
    fields = header_fields(header_rlp)
    number = int.from_bytes(fields[_HEADER_NUMBER], "big")
    if number != 0:  # serializeHeader keeps the genesis header's extraData as it is
        fields[_HEADER_EXTRA] = encode(decode_raw(fields[_HEADER_EXTRA]), encoding)
    digest: bytes = keccak(write_list([write_bytes(f) for f in fields]))
    return digest


def block_hash(header_rlp: bytes) -> bytes:
    """``calculateHashOfBftBlockOnchain``: round 0 and no seals in extraData."""
    return _hash_with(header_rlp, Encoding.EXCLUDE_COMMIT_SEALS_AND_ROUND_NUMBER)


def commit_seal_hash(header_rlp: bytes) -> bytes:
    """``calculateDataHashForCommittedSeal``: no seals, round kept."""
    return _hash_with(header_rlp, Encoding.EXCLUDE_COMMIT_SEALS)
