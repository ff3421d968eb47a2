"""The PL1 pick-up token (pure): round trip, the published key, and every refusal — forged
(another key, a changed field, a changed signature), malformed, expired, not yet valid."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.land import token as tokens

KEY = tokens.key_from_secret(bytes(range(32)))
OTHER = tokens.key_from_secret(bytes(range(1, 33)))
NOW = 1_796_000_000
CLAIMS = tokens.Claims(
    job="LJ0123456789AB", containers=("CSQU3054383", "MSCU1234565"),
    rights={"CSQU3054383": "carrier-release", "MSCU1234565": "terminal-availability"},
    ccrn="RI261207000123", vehicle="AB1234", terminal=2, warehouse=8,
    not_before=NOW - 3600, expires=NOW + 3600, nonce=tokens.b64url(bytes(16)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _with_claims(token: str, **changes: object) -> str:
    """The token with claims changed and the old signature kept (a tampered token)."""
    prefix, body, signature = token.split(".")
    claims = json.loads(_unb64(body))
    claims.update(changes)
    return f"{prefix}.{_b64(tokens.canonical(claims))}.{signature}"


def test_round_trip_and_the_published_key() -> None:
    text = tokens.sign(CLAIMS, KEY)
    assert text.startswith("PL1.") and text.count(".") == 2
    claims = tokens.verify(text, KEY.public_key(), NOW)
    assert claims == replace(CLAIMS, kid=tokens.key_id(KEY.public_key()))
    # the claims are canonical JSON: sorted keys, no spaces
    body = _unb64(text.split(".")[1])
    assert body == tokens.canonical(json.loads(body)) and b" " not in body
    # an offline verifier rebuilds the key from the JWK alone
    jwk = tokens.public_jwk(KEY.public_key())
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    public = Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
    assert tokens.verify(text, public, NOW).job == CLAIMS.job
    assert jwk["kid"] == claims.kid
    assert len(text) < 600  # fits a QR code a phone camera reads at arm's length


TAMPERED = [
    ("job", "LJ0123456789AC"),
    ("c", ["CSQU3054383"]),
    ("r", {"CSQU3054383": "carrier-release", "MSCU1234565": "carrier-release"}),
    ("ccrn", None),
    ("veh", "XY9999"),
    ("t", 3),
    ("w", 9),
    ("nbf", NOW - 7200),
    ("exp", NOW + 86400),
    ("n", tokens.b64url(b"\x01" * 16)),
]


@pytest.mark.parametrize(("field", "value"), TAMPERED, ids=[f for f, _ in TAMPERED])
def test_a_changed_field_is_forged(field: str, value: object) -> None:
    text = _with_claims(tokens.sign(CLAIMS, KEY), **{field: value})
    with pytest.raises(tokens.TokenError) as refused:
        tokens.verify(text, KEY.public_key(), NOW)
    assert refused.value.code == "forged"
    assert "signature does not match" in refused.value.message


REFUSALS = [
    ("another key", lambda: tokens.sign(CLAIMS, OTHER), NOW, "forged"),
    ("signature changed", lambda: tokens.sign(CLAIMS, KEY)[:-2] + "AA", NOW, "forged"),
    ("signature of other text", lambda: ".".join(
        tokens.sign(CLAIMS, KEY).split(".")[:2]
        + tokens.sign(replace(CLAIMS, vehicle="ZZ1"), KEY).split(".")[2:]), NOW, "forged"),
    ("expired", lambda: tokens.sign(CLAIMS, KEY), NOW + 3600 + tokens.SKEW, "expired"),
    ("not yet valid", lambda: tokens.sign(CLAIMS, KEY), NOW - 3600 - tokens.SKEW - 1,
     "not-yet-valid"),
    ("two parts", lambda: "PL1.abc", NOW, "malformed"),
    ("other format", lambda: "PL2." + tokens.sign(CLAIMS, KEY)[4:], NOW, "malformed"),
    ("not base64url", lambda: "PL1.a+b/.c", NOW, "malformed"),
    ("too long", lambda: "PL1." + "A" * tokens.MAX_TOKEN + ".AA", NOW, "malformed"),
    ("empty", lambda: "", NOW, "malformed"),
]


@pytest.mark.parametrize(("case", "make", "at", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(case: str, make: object, at: int, code: str) -> None:
    assert callable(make)
    with pytest.raises(tokens.TokenError) as refused:
        tokens.verify(make(), KEY.public_key(), at)
    assert refused.value.code == code, (case, refused.value.message)


def test_window_edges_with_the_tolerated_skew() -> None:
    text = tokens.sign(CLAIMS, KEY)
    public = KEY.public_key()
    assert tokens.verify(text, public, CLAIMS.not_before - tokens.SKEW).job == CLAIMS.job
    assert tokens.verify(text, public, CLAIMS.expires + tokens.SKEW - 1).job == CLAIMS.job


def test_claims_signed_by_us_but_not_of_the_schema_are_malformed() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    body = CLAIMS.to_json() | {"kid": tokens.key_id(key.public_key()), "extra": 1}
    head = f"PL1.{_b64(tokens.canonical(body))}"
    text = f"{head}.{_b64(key.sign(head.encode()))}"
    with pytest.raises(tokens.TokenError) as refused:
        tokens.verify(text, key.public_key(), NOW)
    assert refused.value.code == "malformed"


def test_nonces_are_random_and_fixed_length() -> None:
    seen = {tokens.new_nonce() for _ in range(200)}
    assert len(seen) == 200 and {len(n) for n in seen} == {22}
