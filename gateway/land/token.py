"""The pick-up token: a job's signed, compact, offline-verifiable right to collect cargo (pure).

A terminal or warehouse scans the driver's QR code and must know, without a network, that the
gateway issued it for this truck, these containers and this window. The token is::

    PL1.<claims>.<signature>

- ``claims``: base64url (RFC 4648 §5, no padding) of the claims as **canonical JSON** — UTF-8,
  keys sorted, no insignificant white space (``json.dumps(sort_keys=True,
  separators=(",", ":"), ensure_ascii=False)``). CBOR is not available to us; canonical JSON is
  as deterministic and every verifier can read it. Claims (:class:`Claims`)::

      {"v": 1, "kid": "<key id>", "job": "LJ…", "c": ["CSQU3054383", …],
       "r": {"CSQU3054383": "carrier-release", …}, "ccrn": "RI261207000123" | null,
       "veh": "AB1234", "t": <terminal org>, "w": <warehouse org>,
       "nbf": <Unix s>, "exp": <Unix s>, "n": "<nonce, 16 bytes base64url>"}

- ``signature``: base64url of the Ed25519 signature (RFC 8032, ``cryptography``) of the ASCII
  bytes ``PL1.<claims>`` — the text as it is, so a verifier never re-encodes anything.

The key id ``kid`` is the base64url of the first 8 bytes of the SHA-256 of the raw 32-byte
public key; the gateway publishes the key as an OKP JWK at ``GET /v1/land/key``
(:func:`public_jwk`). :func:`verify` checks form, key id, signature and the validity window;
replay (a nonce already used at a gate) and revocation (the job cancelled, the release revoked)
need the gateway's state and are checked by :mod:`gateway.land.service`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import errors, jsonbody
from gateway.isotime import iso_time

#: The token's prefix: format name and version.
PREFIX = "PL1"
#: Longest token accepted (a QR code of version 40, byte mode, level L holds 2,953 bytes).
MAX_TOKEN = 2900
#: Seconds of clock difference tolerated between issuer and verifier.
SKEW = 60

#: The claims' JSON Schema (checked after the signature, before anything is read).
CLAIMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["v", "kid", "job", "c", "r", "ccrn", "veh", "t", "w", "nbf", "exp", "n"],
    "properties": {
        "v": {"const": 1},
        "kid": {"type": "string", "maxLength": 16},
        "job": {"type": "string", "pattern": "^LJ[0-9A-F]{12}$"},
        "c": {"type": "array", "minItems": 1, "maxItems": 64,
              "items": {"type": "string", "pattern": "^[A-Z]{4}[0-9]{7}$"}},
        "r": {"type": "object", "maxProperties": 64,
              "additionalProperties": {"type": "string", "maxLength": 40}},
        "ccrn": {"type": ["string", "null"], "maxLength": 20},
        "veh": {"type": "string", "maxLength": 20},
        "t": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1},
        "nbf": {"type": "integer"},
        "exp": {"type": "integer"},
        "n": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
    },
}


class TokenError(Exception):
    """Why a token is refused: ``code`` (``malformed``, ``forged``, ``expired``,
    ``not-yet-valid``, ``replayed``, ``revoked``) and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    """What a token says."""

    job: str
    """The job's id (``LJ`` and 12 hex digits)."""
    containers: tuple[str, ...]
    """ISO 6346 numbers the truck may collect."""
    rights: dict[str, str]
    """Per container, the basis of its pick-up right when the token was issued
    (``carrier-release``, ``terminal-availability``, ``carrier-release+terminal-availability``)."""
    ccrn: str | None
    """ROCARS Customs Cargo Reference Number of a cross-border truck."""
    vehicle: str
    """Vehicle registration."""
    terminal: int
    """Pick-up terminal (Consortium organisation id)."""
    warehouse: int
    """Delivery warehouse (Consortium organisation id)."""
    not_before: int
    """Valid from (Unix seconds)."""
    expires: int
    """Valid until, exclusive (Unix seconds)."""
    nonce: str
    """16 random bytes, base64url: the token's identity for replay checks."""
    kid: str = ""
    """The signing key's id."""

    def to_json(self) -> dict[str, Any]:
        """The claims' JSON form (as signed)."""
        return {"v": 1, "kid": self.kid, "job": self.job, "c": list(self.containers),
                "r": dict(self.rights), "ccrn": self.ccrn, "veh": self.vehicle,
                "t": self.terminal, "w": self.warehouse, "nbf": self.not_before,
                "exp": self.expires, "n": self.nonce}


def new_nonce() -> str:
    """16 random bytes, base64url without padding (22 characters)."""
    return b64url(secrets.token_bytes(16))


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not text or any(ch not in _B64_ALPHABET for ch in text):
        raise TokenError("malformed", "the token is not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "the token is not base64url text") from None


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def canonical(claims: dict[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, compact, UTF-8)."""
    return json.dumps(claims, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    """base64url of the first 8 bytes of SHA-256 of the raw public key."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return b64url(hashlib.sha256(raw).digest()[:8])


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an RFC 8037 OKP JWK with its key id."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": key_id(public),
            "alg": "EdDSA", "use": "sig"}


def key_from_secret(secret: bytes) -> Ed25519PrivateKey:
    """The land signing key from a 32-byte keystore secret (its Ed25519 seed)."""
    return Ed25519PrivateKey.from_private_bytes(secret)


def sign(claims: Claims, key: Ed25519PrivateKey) -> str:
    """The token of ``claims`` signed with ``key`` (``kid`` set from the key)."""
    body = claims.to_json()
    body["kid"] = key_id(key.public_key())
    head = f"{PREFIX}.{b64url(canonical(body))}"
    return f"{head}.{b64url(key.sign(head.encode('ascii')))}"


def verify(token: str, public: Ed25519PublicKey, now: int) -> Claims:
    """The claims of a token signed by ``public``'s key and valid at ``now``.

    Raises
    ------
    TokenError
        ``malformed`` (not a token of this format), ``forged`` (another key, or a signature
        that does not match the text: anything changed), ``not-yet-valid`` or ``expired``.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise TokenError("malformed", f"a token is text of at most {MAX_TOKEN} characters")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("malformed", f"a token is {PREFIX}.<claims>.<signature>")
    body, signature = _unb64url(parts[1]), _unb64url(parts[2])
    try:
        public.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise TokenError("forged", "the signature does not match: the token was not issued "
                         "by this gateway's land key, or it was changed") from None
    try:
        raw = jsonbody.loads(body)
        jsonbody.check(raw, CLAIMS_SCHEMA, what="token claims")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenError("malformed", f"the token's claims are not JSON: {exc}") from None
    except errors.ApiError as exc:
        raise TokenError("malformed", f"the token's claims: {exc.message}") from None
    if raw["kid"] != key_id(public):
        raise TokenError("forged", "the token names another signing key")
    claims = Claims(job=raw["job"], containers=tuple(raw["c"]), rights=dict(raw["r"]),
                    ccrn=raw["ccrn"], vehicle=raw["veh"], terminal=raw["t"], warehouse=raw["w"],
                    not_before=raw["nbf"], expires=raw["exp"], nonce=raw["n"], kid=raw["kid"])
    if now + SKEW < claims.not_before:
        raise TokenError("not-yet-valid", "the token is not valid yet: the job's window opens "
                         f"at {iso_time(claims.not_before)}")
    if now - SKEW >= claims.expires:
        raise TokenError("expired", f"the token expired at {iso_time(claims.expires)}")
    return claims
