"""Envelope encryption of cargo-event payloads: per-record data keys and who may unwrap them.

Validators are run by competitors, so a cargo event's payload goes on chain only as an
*envelope*: the payload encrypted under a fresh per-record data key, and that key wrapped for
each party that may read it. This module is pure (no I/O, no clock); the keys come from
:mod:`gateway.confidential.keystore` and the grants from the chain.

The design (confidentiality: envelopes, record keys and wraps) is in ``docs/confidentiality.md``.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils.crypto import keccak

from contracts.cargo import MAX_PAYLOAD

#: Versions of a record key: a hash chain of this length, used from the far end.
CHAIN_LENGTH = 4096

#: Envelope format version this module writes and reads.
FORMAT_VERSION = 1

#: Longest plaintext :func:`seal` accepts (and longest body an envelope may inflate to).
MAX_PLAINTEXT = 64 * 1024

#: Flag bit: a wrap for holders of the reference is present.
FLAG_REFERENCE = 0x01
#: Flag bit: the body is zlib-compressed.
FLAG_COMPRESSED = 0x02

#: Size of one wrapped data key (32-byte ciphertext and 16-byte GCM tag).
WRAP_SIZE = 48
#: Size of the GCM tag.
TAG_SIZE = 16
#: Size of the record nonce.
NONCE_SIZE = 12
#: Size of keys: data keys, record keys, X25519 keys, owner secrets.
KEY_SIZE = 32

_FIXED = 1 + 1 + 4 + 1 + NONCE_SIZE  # version, flags, key version, n, record nonce
_ZERO_NONCE = bytes(NONCE_SIZE)
_MAX_GRANT_SECRET = 128 - KEY_SIZE - TAG_SIZE  # AccessGrants.MAX_WRAPPED_KEY

# The labels predate the name "record key"; they are part of the format and stay.
_RECORD_KEY_SEED = b"portledger/subject-seed/v1"
_RECORD_KEY_WRAP = b"portledger/subject-wrap/v1"
_READER_WRAP = b"portledger/reader-wrap/v1"
_REFERENCE_WRAP = b"portledger/reference-wrap/v1"
_GRANT_WRAP = b"portledger/grant-wrap/v1"


class DecryptionFailed(Exception):
    """The credential does not open the envelope: wrong key, not a reader, or tampered bytes."""


class EnvelopeError(DecryptionFailed, ValueError):
    """The bytes are not a well-formed envelope (or wrapped key) of this format.

    Also a :class:`DecryptionFailed`: whoever only asks "can I read this?" catches that one.
    """


@dataclass(frozen=True)
class Sealed:
    """The result of :func:`seal`."""

    envelope: bytes
    """The envelope: what goes into the cargo event's payload field (at most ``MAX_PAYLOAD``)."""
    payload_hash: bytes
    """keccak-256 of the plaintext (uncompressed): the event's payload hash."""
    data_key: bytes = field(repr=False)
    """The record's 32-byte AES key; kept only to disclose this one record in a proof."""


@dataclass(frozen=True)
class EnvelopeInfo:
    """What an envelope says in clear (see "What is and is not hidden")."""

    version: int
    """Format version of the envelope (:data:`FORMAT_VERSION`)."""
    key_version: int
    """Version of the owner's record key the record was sealed under."""
    readers: tuple[int, ...]
    """Chain organisation ids of the named readers, increasing."""
    reference_readable: bool
    """Whether whoever holds the reference number can read the record."""
    compressed: bool
    """Whether the body was zlib-compressed before encryption."""


@dataclass(frozen=True)
class _Parsed:
    info: EnvelopeInfo
    header: bytes
    nonce: bytes
    ephemeral: bytes
    owner_wrap: bytes
    reader_wraps: dict[int, bytes]
    reference_wrap: bytes
    content_start: int


# -- primitives ---------------------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def _wrap(kek: bytes, secret: bytes, aad: bytes) -> bytes:
    return AESGCM(kek).encrypt(_ZERO_NONCE, secret, aad)


def _unwrap(kek: bytes, wrapped: bytes, aad: bytes, who: str) -> bytes:
    try:
        return AESGCM(kek).decrypt(_ZERO_NONCE, wrapped, aad)
    except InvalidTag:
        raise DecryptionFailed(
            f"{who} does not open this envelope (wrong key or tampered)"
        ) from None


def _exchange(private: X25519PrivateKey, public: bytes, what: str) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # wrong length, or a low-order point (all-zero shared secret)
        raise ValueError(f"{what}: invalid X25519 public key ({exc})") from None


def _private(x25519_private: bytes) -> X25519PrivateKey:
    if len(x25519_private) != KEY_SIZE:
        raise ValueError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(x25519_private)


def x25519_public_key(x25519_private: bytes) -> bytes:
    """The 32-byte X25519 public key of a 32-byte private key."""
    return _private(x25519_private).public_key().public_bytes_raw()


def _check_subject(subject: bytes) -> None:
    if len(subject) != KEY_SIZE:
        raise ValueError("the subject is its 32-byte subject key (keccak of the reference)")


def _check_version(version: int) -> None:
    if not 0 <= version < CHAIN_LENGTH:
        raise ValueError(f"key version {version} outside 0..{CHAIN_LENGTH - 1}")


def _reference_bytes(reference: str) -> bytes:
    if not reference:
        raise ValueError("empty reference")
    return reference.encode("utf-8")


# -- record keys --------------------------------------------------------------------------------


def _hash_down(key: bytes, steps: int) -> bytes:
    sha256 = hashlib.sha256
    for _ in range(steps):
        key = sha256(key).digest()
    return key


@lru_cache(maxsize=8192)
def _record_key(owner_secret: bytes, subject: bytes, version: int) -> bytes:
    seed = _hkdf(owner_secret, b"", _RECORD_KEY_SEED + subject)
    return _hash_down(seed, CHAIN_LENGTH - version)


def record_key(owner_secret: bytes, subject: bytes, version: int) -> bytes:
    """The owner's key for a subject at a version (see "Who can read a record").

    Parameters
    ----------
    owner_secret
        The owner organisation's 32-byte master secret (:attr:`gateway.confidential.keystore.OrgKeys.master_secret`).
    subject
        The 32-byte subject key.
    version
        Key version, ``0 <= version < CHAIN_LENGTH``; holding version ``v`` gives every older one.

    Returns
    -------
    bytes
        ``RK_version``, 32 bytes.
    """
    if len(owner_secret) != KEY_SIZE:
        raise ValueError("an owner secret is 32 bytes")
    _check_subject(subject)
    _check_version(version)
    return _record_key(bytes(owner_secret), bytes(subject), version)


def pack_subject_grant(key: bytes, key_version: int) -> bytes:
    """The secret a SUBJECT grant wraps: key version (uint32, big-endian) and record key (36 bytes)."""
    _check_version(key_version)
    if len(key) != KEY_SIZE:
        raise ValueError("a record key is 32 bytes")
    return key_version.to_bytes(4, "big") + key


def unpack_subject_grant(secret: bytes) -> tuple[bytes, int]:
    """Inverse of :func:`pack_subject_grant`: ``(record key, key version)``."""
    if len(secret) != 4 + KEY_SIZE:
        raise EnvelopeError(f"a subject grant secret is 36 bytes, not {len(secret)}")
    version = int.from_bytes(secret[:4], "big")
    if version >= CHAIN_LENGTH:
        raise EnvelopeError(f"subject grant of key version {version} >= {CHAIN_LENGTH}")
    return secret[4:], version


# -- sealing ------------------------------------------------------------------------------------


def _body(plaintext: bytes) -> tuple[bytes, bool]:
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}")
    packed = zlib.compress(plaintext, 9)
    return (packed, True) if len(packed) < len(plaintext) else (plaintext, False)


def _size(body: int, readers: int, reference: bool) -> int:
    return (
        _FIXED
        + (KEY_SIZE if readers else 0)
        + 4 * readers
        + WRAP_SIZE * (1 + readers + (1 if reference else 0))
        + body
        + TAG_SIZE
    )


def sealed_size(plaintext: bytes, readers: int, reference: bool) -> int:
    """The exact size of the envelope :func:`seal` makes of ``plaintext``.

    Parameters
    ----------
    plaintext
        The payload.
    readers
        Number of named readers.
    reference
        Whether the record is readable by holders of the reference.

    Returns
    -------
    int
        ``len(seal(plaintext, ...).envelope)``, whether or not it fits ``MAX_PAYLOAD``.
    """
    if readers < 0:
        raise ValueError("negative reader count")
    return _size(len(_body(plaintext)[0]), readers, reference)


def seal(
    plaintext: bytes,
    *,
    subject: bytes,
    owner_secret: bytes,
    key_version: int,
    readers: Mapping[int, bytes],
    reference: str | None,
) -> Sealed:
    """Encrypt a payload for its owner, the named readers and optionally holders of the reference.

    Parameters
    ----------
    plaintext
        The payload (the canonical event's plaintext encoding).
    subject
        The event's 32-byte subject key; every key derivation is bound to it.
    owner_secret
        The publishing organisation's master secret; the owner reads through its record key.
    key_version
        The owner's current key version for this subject.
    readers
        Chain organisation id -> that organisation's 32-byte X25519 public key.
    reference
        The normalised reference if the owner made the record readable by whoever holds it,
        else None.

    Returns
    -------
    Sealed
        The envelope, the payload hash and the data key.

    Raises
    ------
    ValueError
        Bad arguments (key sizes, an org id outside uint32, an invalid X25519 key, more than
        255 readers), or the envelope would exceed :data:`contracts.cargo.MAX_PAYLOAD`.
    """
    _check_subject(subject)
    body, compressed = _body(plaintext)
    ids = sorted(readers)
    if len(ids) > 255:
        raise ValueError("at most 255 named readers")
    for org in ids:
        if not 0 <= org < 2**32:
            raise ValueError(f"organisation id {org} does not fit uint32")
    size = _size(len(body), len(ids), reference is not None)
    if size > MAX_PAYLOAD:
        raise ValueError(
            f"sealed payload of {size} bytes exceeds {MAX_PAYLOAD} "
            f"({len(plaintext)}-byte plaintext, {len(ids)} readers)"
        )
    owner_key = record_key(owner_secret, subject, key_version)
    ref = None if reference is None else _reference_bytes(reference)

    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_SIZE)
    flags = (FLAG_REFERENCE if ref is not None else 0) | (FLAG_COMPRESSED if compressed else 0)
    header = [
        bytes((FORMAT_VERSION, flags)),
        key_version.to_bytes(4, "big"),
        bytes((len(ids),)),
        nonce,
    ]
    reader_keks = []
    if ids:
        ephemeral = X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes_raw()
        header.append(eph_pub)
        for org in ids:
            pub = bytes(readers[org])
            shared = _exchange(ephemeral, pub, f"organisation {org}")
            reader_keks.append(_hkdf(shared, eph_pub + pub, _READER_WRAP + subject))
        header.extend(org.to_bytes(4, "big") for org in ids)
    head = b"".join(header)

    parts = [head, _wrap(_hkdf(owner_key, nonce, _RECORD_KEY_WRAP + subject), data_key, head)]
    parts.extend(_wrap(kek, data_key, head) for kek in reader_keks)
    if ref is not None:
        parts.append(_wrap(_hkdf(ref, nonce, _REFERENCE_WRAP + subject), data_key, head))
    aad = b"".join(parts)
    envelope = aad + AESGCM(data_key).encrypt(nonce, body, aad)
    assert len(envelope) == size
    return Sealed(envelope=envelope, payload_hash=keccak(plaintext), data_key=data_key)


# -- parsing and opening ------------------------------------------------------------------------


def _parse(envelope: bytes) -> _Parsed:
    envelope = bytes(envelope)
    if len(envelope) < _FIXED:
        raise EnvelopeError(f"envelope of {len(envelope)} bytes is shorter than its header")
    version, flags = envelope[0], envelope[1]
    if version != FORMAT_VERSION:
        raise EnvelopeError(f"unknown envelope format version {version}")
    if flags & ~(FLAG_REFERENCE | FLAG_COMPRESSED):
        raise EnvelopeError(f"unknown envelope flags {flags:#04x}")
    key_version = int.from_bytes(envelope[2:6], "big")
    if key_version >= CHAIN_LENGTH:
        raise EnvelopeError(f"key version {key_version} >= {CHAIN_LENGTH}")
    n = envelope[6]
    nonce = envelope[7:_FIXED]
    by_reference = bool(flags & FLAG_REFERENCE)
    minimum = _size(0, n, by_reference)
    if len(envelope) < minimum:
        raise EnvelopeError(f"envelope of {len(envelope)} bytes, at least {minimum} expected")
    pos = _FIXED
    ephemeral = b""
    ids: list[int] = []
    if n:
        ephemeral, pos = envelope[pos : pos + KEY_SIZE], pos + KEY_SIZE
        for _ in range(n):
            ids.append(int.from_bytes(envelope[pos : pos + 4], "big"))
            pos += 4
        if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
            raise EnvelopeError("reader ids are not strictly increasing")
    header = envelope[:pos]
    owner_wrap, pos = envelope[pos : pos + WRAP_SIZE], pos + WRAP_SIZE
    reader_wraps = {}
    for org in ids:
        reader_wraps[org], pos = envelope[pos : pos + WRAP_SIZE], pos + WRAP_SIZE
    reference_wrap = b""
    if by_reference:
        reference_wrap, pos = envelope[pos : pos + WRAP_SIZE], pos + WRAP_SIZE
    info = EnvelopeInfo(
        version=version,
        key_version=key_version,
        readers=tuple(ids),
        reference_readable=by_reference,
        compressed=bool(flags & FLAG_COMPRESSED),
    )
    return _Parsed(info, header, nonce, ephemeral, owner_wrap, reader_wraps, reference_wrap, pos)


def envelope_info(envelope: bytes) -> EnvelopeInfo:
    """What the envelope says in clear: format and key version, named readers, reference mode.

    Raises
    ------
    EnvelopeError
        The bytes are not a well-formed envelope.
    """
    return _parse(envelope).info


def _content(envelope: bytes, parsed: _Parsed, data_key: bytes) -> bytes:
    envelope = bytes(envelope)
    aad = envelope[: parsed.content_start]
    try:
        body = AESGCM(data_key).decrypt(parsed.nonce, envelope[parsed.content_start :], aad)
    except InvalidTag:
        raise DecryptionFailed("the envelope's content does not decrypt (tampered?)") from None
    if not parsed.info.compressed:
        return body
    inflater = zlib.decompressobj()
    try:
        plaintext = inflater.decompress(body, MAX_PLAINTEXT + 1)
    except zlib.error as exc:
        raise EnvelopeError(f"compressed body is not a zlib stream: {exc}") from None
    if len(plaintext) > MAX_PLAINTEXT or not inflater.eof or inflater.unused_data:
        raise EnvelopeError("compressed body is not one zlib stream of at most MAX_PLAINTEXT bytes")
    return plaintext


def _owner_data_key(parsed: _Parsed, subject: bytes, key: bytes) -> bytes:
    kek = _hkdf(key, parsed.nonce, _RECORD_KEY_WRAP + subject)
    return _unwrap(kek, parsed.owner_wrap, parsed.header, "the record key")


def _key_data_key(parsed: _Parsed, subject: bytes, key: bytes, key_version: int) -> bytes:
    _check_subject(subject)
    _check_version(key_version)
    if len(key) != KEY_SIZE:
        raise ValueError("a record key is 32 bytes")
    sealed_version = parsed.info.key_version
    if key_version < sealed_version:
        raise DecryptionFailed(
            f"record sealed under key version {sealed_version}; a key of version {key_version} "
            "cannot derive it"
        )
    return _owner_data_key(parsed, subject, _hash_down(bytes(key), key_version - sealed_version))


def _reader_data_key(parsed: _Parsed, subject: bytes, org_id: int, x25519_private: bytes) -> bytes:
    _check_subject(subject)
    wrapped = parsed.reader_wraps.get(org_id)
    if wrapped is None:
        raise DecryptionFailed(f"organisation {org_id} is not a named reader of this record")
    private = _private(x25519_private)
    own = private.public_key().public_bytes_raw()
    try:
        shared = _exchange(private, parsed.ephemeral, "ephemeral key")
    except ValueError:
        raise DecryptionFailed("the envelope's ephemeral key is invalid (tampered?)") from None
    kek = _hkdf(shared, parsed.ephemeral + own, _READER_WRAP + subject)
    return _unwrap(kek, wrapped, parsed.header, f"organisation {org_id}'s X25519 key")


def _reference_data_key(parsed: _Parsed, subject: bytes, reference: str) -> bytes:
    _check_subject(subject)
    if not parsed.info.reference_readable:
        raise DecryptionFailed("the record is not readable by reference")
    kek = _hkdf(_reference_bytes(reference), parsed.nonce, _REFERENCE_WRAP + subject)
    return _unwrap(kek, parsed.reference_wrap, parsed.header, "the reference")


def open_as_owner(envelope: bytes, *, subject: bytes, owner_secret: bytes) -> bytes:
    """Decrypt a record as its owner (the organisation whose master secret sealed it).

    Raises
    ------
    DecryptionFailed
        Not the owner's record (or not about this subject), or tampered.
    EnvelopeError
        Malformed envelope.
    """
    parsed = _parse(envelope)
    key = record_key(owner_secret, subject, parsed.info.key_version)
    return _content(envelope, parsed, _owner_data_key(parsed, subject, key))


def open_with_record_key(
    envelope: bytes, *, subject: bytes, key: bytes, key_version: int
) -> bytes:
    """Decrypt a record with a record key (the owner's, or one a SUBJECT grant handed over).

    Parameters
    ----------
    envelope
        The envelope.
    subject
        The 32-byte subject key of the record.
    key
        A record key of the record's owner for ``subject``.
    key_version
        Version of ``key``; it opens records sealed under this version or an older one.

    Raises
    ------
    DecryptionFailed
        The record is of a newer version, or another owner's or subject's, or tampered.
    EnvelopeError
        Malformed envelope.
    """
    parsed = _parse(envelope)
    return _content(envelope, parsed, _key_data_key(parsed, subject, key, key_version))


def open_as_reader(envelope: bytes, *, subject: bytes, org_id: int, x25519_private: bytes) -> bytes:
    """Decrypt a record as one of its named readers.

    Parameters
    ----------
    envelope
        The envelope.
    subject
        The 32-byte subject key of the record.
    org_id
        The reader's chain organisation id.
    x25519_private
        The reader's X25519 private key (try older keys after a rotation).

    Raises
    ------
    DecryptionFailed
        ``org_id`` is not a named reader, the key is not the one the record was sealed for,
        or the envelope was tampered with.
    EnvelopeError
        Malformed envelope.
    """
    parsed = _parse(envelope)
    data_key = _reader_data_key(parsed, subject, org_id, x25519_private)
    return _content(envelope, parsed, data_key)


def open_with_reference(envelope: bytes, *, subject: bytes, reference: str) -> bytes:
    """Decrypt a record the owner made readable by whoever holds the (normalised) reference.

    Raises
    ------
    DecryptionFailed
        Not readable by reference, another reference, or tampered.
    EnvelopeError
        Malformed envelope.
    """
    parsed = _parse(envelope)
    return _content(envelope, parsed, _reference_data_key(parsed, subject, reference))


def open_with_data_key(envelope: bytes, data_key: bytes) -> bytes:
    """Decrypt a record with its disclosed data key (what a third-party verifier does).

    The caller compares ``keccak(plaintext)`` with the event's payload hash.

    Raises
    ------
    DecryptionFailed
        Not this record's data key, or tampered.
    EnvelopeError
        Malformed envelope.
    """
    if len(data_key) != KEY_SIZE:
        raise ValueError("a data key is 32 bytes")
    return _content(envelope, _parse(envelope), bytes(data_key))


def data_key_of(
    envelope: bytes,
    *,
    subject: bytes,
    owner_secret: bytes | None = None,
    key: bytes | None = None,
    key_version: int | None = None,
    org_id: int | None = None,
    x25519_private: bytes | None = None,
    reference: str | None = None,
) -> bytes:
    """Unwrap a record's data key with exactly one credential, to disclose that record alone.

    The credential is one of: ``owner_secret``; ``key`` and ``key_version``; ``org_id`` and
    ``x25519_private``; ``reference`` -- as for the matching ``open_*`` function. The data key
    is checked against the content before it is returned.

    Raises
    ------
    ValueError
        Not exactly one credential given.
    DecryptionFailed
        The credential does not open the record.
    EnvelopeError
        Malformed envelope.
    """
    given = [
        owner_secret is not None,
        key is not None or key_version is not None,
        org_id is not None or x25519_private is not None,
        reference is not None,
    ]
    if sum(given) != 1:
        raise ValueError("give exactly one credential")
    parsed = _parse(envelope)
    if owner_secret is not None:
        sk = record_key(owner_secret, subject, parsed.info.key_version)
        data_key = _owner_data_key(parsed, subject, sk)
    elif key is not None or key_version is not None:
        if key is None or key_version is None:
            raise ValueError("a record key needs its key_version")
        data_key = _key_data_key(parsed, subject, key, key_version)
    elif org_id is not None or x25519_private is not None:
        if org_id is None or x25519_private is None:
            raise ValueError("a named reader needs org_id and x25519_private")
        data_key = _reader_data_key(parsed, subject, org_id, x25519_private)
    else:
        assert reference is not None
        data_key = _reference_data_key(parsed, subject, reference)
    _content(envelope, parsed, data_key)
    return data_key


# -- grants -------------------------------------------------------------------------------------


def wrap_key(secret: bytes, *, reader_public: bytes, context: bytes) -> bytes:
    """Wrap a short secret (a record key) for one organisation, as ``AccessGrants.grant`` takes it.

    Parameters
    ----------
    secret
        1 to 80 bytes; typically :func:`pack_subject_grant` (36) or a bare key (32).
    reader_public
        The grantee's 32-byte X25519 public key.
    context
        Binds the wrap to its use (e.g. owner, scope, target, reader of the grant); the reader
        must pass the same bytes to :func:`unwrap_key`.

    Returns
    -------
    bytes
        ``E || ciphertext || tag``: ``len(secret) + 48`` bytes, at most 128.
    """
    if not 0 < len(secret) <= _MAX_GRANT_SECRET:
        raise ValueError(f"a wrapped secret is 1 to {_MAX_GRANT_SECRET} bytes")
    reader_public = bytes(reader_public)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes_raw()
    shared = _exchange(ephemeral, reader_public, "reader")
    kek = _hkdf(shared, eph_pub + reader_public, _GRANT_WRAP + context)
    return eph_pub + _wrap(kek, bytes(secret), b"")


def unwrap_key(wrapped: bytes, *, x25519_private: bytes, context: bytes) -> bytes:
    """Unwrap what :func:`wrap_key` wrapped for this organisation.

    Raises
    ------
    EnvelopeError
        Too short to be a wrapped key.
    DecryptionFailed
        Wrapped for another key or context, or tampered.
    """
    wrapped = bytes(wrapped)
    if len(wrapped) <= KEY_SIZE + TAG_SIZE:
        raise EnvelopeError(f"a wrapped key is more than 48 bytes, not {len(wrapped)}")
    private = _private(x25519_private)
    eph_pub = wrapped[:KEY_SIZE]
    try:
        shared = _exchange(private, eph_pub, "ephemeral key")
    except ValueError:
        raise DecryptionFailed("the wrapped key's ephemeral key is invalid (tampered?)") from None
    own = private.public_key().public_bytes_raw()
    kek = _hkdf(shared, eph_pub + own, _GRANT_WRAP + context)
    return _unwrap(kek, wrapped[KEY_SIZE:], b"", "this X25519 key and context")
