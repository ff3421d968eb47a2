"""JOSE for OpenID Connect: base64url, JWKs, compact JWS (ES256, RS256) and ID-token checks.

Pure functions over the ``cryptography`` primitives: :func:`verify_id_token` checks an ID
token's signature against the provider's JWKS (``none`` and HMAC algorithms are refused) and its
claims (``iss``, ``aud``/``azp``, ``exp``/``iat`` with :data:`LEEWAY`, ``sub``, ``nonce``);
:func:`sign_es256` and :func:`jwk_of` are the issuing side the test provider of
:mod:`gateway.accounts.oidc` uses. The login flow around them is :mod:`gateway.accounts.oidc`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

#: Seconds of clock skew allowed on ``exp`` and ``iat``.
LEEWAY = 60
#: Largest ID token accepted (bytes).
MAX_TOKEN_BYTES = 16_384

_ALGORITHMS = ("ES256", "RS256")


class OidcError(Exception):
    """An external login failed; ``code`` says why (stable, for the JSON error)."""

    def __init__(self, message: str, code: str = "oidc-failed") -> None:
        super().__init__(message)
        self.code = code


class IdTokenError(OidcError):
    """An ID token is not authentic or not for us (signature, iss, aud, exp, nonce)."""



def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (strictly: only the URL-safe alphabet)."""
    if not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def public_key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    """An EC P-256 or RSA public key from its JWK.

    Raises
    ------
    ValueError
        Another key type or curve, or malformed members.
    """
    kty = jwk.get("kty")
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ValueError(f"unsupported curve {jwk.get('crv')!r}")
        x = int.from_bytes(b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        if n.bit_length() < 2048:
            raise ValueError("RSA keys shorter than 2048 bits are refused")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise ValueError(f"unsupported key type {kty!r}")


def jwk_of(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    """The public JWK of an EC P-256 private key."""
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def sign_es256(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """A compact JWS of ``claims`` signed ES256 (what an identity provider issues)."""
    header = {"alg": "ES256", "typ": "JWT", "kid": kid}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def verify_jws(token: str, keys: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a compact JWS's signature against a JWKS; returns (header, claims).

    Parameters
    ----------
    token : str
        ``header.payload.signature``.
    keys : dict
        The provider's JWKs by ``kid``.

    Raises
    ------
    IdTokenError
        Malformed token, an algorithm other than ES256/RS256, an unknown ``kid`` or a key that
        does not fit the algorithm, or a bad signature.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise IdTokenError("ID token too large", "id-token-malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise IdTokenError("ID token is not a compact JWS", "id-token-malformed")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise IdTokenError("ID token is not valid base64url JSON", "id-token-malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise IdTokenError("ID token header and claims must be objects", "id-token-malformed")
    alg = header.get("alg")
    if alg not in _ALGORITHMS:
        raise IdTokenError(f"ID token algorithm {alg!r} is not accepted", "id-token-algorithm")
    if "crit" in header:
        raise IdTokenError("ID token has critical header extensions", "id-token-malformed")
    kid = header.get("kid")
    candidates = [keys[kid]] if kid in keys else ([] if kid is not None else list(keys.values()))
    if not candidates:
        raise IdTokenError(f"ID token signed by unknown key {kid!r}", "id-token-key")
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    for jwk in candidates:
        if jwk.get("alg") not in (None, alg):
            continue
        try:
            key = public_key_from_jwk(jwk)
        except (ValueError, KeyError):
            continue
        try:
            if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
                if len(signature) != 64:
                    raise InvalidSignature
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
                return header, claims
            if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
                return header, claims
        except InvalidSignature:
            continue
    raise IdTokenError("ID token signature does not verify", "id-token-signature")


def check_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str, now: float
) -> None:
    """Check an ID token's ``iss``, ``aud``/``azp``, ``exp``, ``iat``, ``sub`` and ``nonce``.

    Raises
    ------
    IdTokenError
        A claim is missing or wrong.
    """
    if claims.get("iss") != issuer:
        raise IdTokenError(f"ID token issuer {claims.get('iss')!r} is not {issuer!r}",
                           "id-token-issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise IdTokenError("ID token is not for this client", "id-token-audience")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IdTokenError("ID token has several audiences and azp is not us",
                           "id-token-audience")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise IdTokenError("ID token lacks exp or iat", "id-token-malformed")
    if exp + LEEWAY < now:
        raise IdTokenError("ID token has expired", "id-token-expired")
    if iat - LEEWAY > now:
        raise IdTokenError("ID token is issued in the future", "id-token-expired")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise IdTokenError("ID token lacks a subject", "id-token-malformed")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise IdTokenError("ID token nonce does not match this login", "id-token-nonce")


def verify_id_token(
    token: str,
    *,
    keys: dict[str, dict[str, Any]],
    issuer: str,
    client_id: str,
    nonce: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an ID token (signature and claims) and return its claims (see the module doc)."""
    _, claims = verify_jws(token, keys)
    check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce,
                 now=time.time() if now is None else now)
    return claims
