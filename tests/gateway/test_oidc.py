"""External login: the gateway against the test OpenID Connect provider, over real loopback HTTP."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from yarl import URL

from gateway.accounts.jose import (
    IdTokenError,
    b64url,
    jwk_of,
    pkce_challenge,
    sign_es256,
    verify_id_token,
)
from gateway.accounts.oidc import OpenIdProvider, providers_from_config
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from gateway.config import GatewayConfig
from tests.support.oidc_provider import TestProvider, create_test_provider_app

EMAIL = "controller@kwaitsing.example"


@pytest.fixture
async def provider_and_client(
    aiohttp_server: Any, aiohttp_client: Any, gateway_config: GatewayConfig
) -> tuple[TestProvider, Any, str]:
    provider = TestProvider(client_id="portledger-gw", client_secret="s3cret-of-the-gateway",
                            email=EMAIL)
    server = await aiohttp_server(create_test_provider_app(provider))
    issuer = str(server.make_url("")).rstrip("/")
    config = replace(
        gateway_config,
        oidc_providers=({"name": "corp-id", "display_name": "Corporate digital identity",
                         "issuer": issuer, "client_id": "portledger-gw",
                         "client_secret": "s3cret-of-the-gateway"},),
    )
    app = create_app(config)
    accounts = app[ACCOUNTS]
    org = accounts.create_organisation("Kwai Tsing Container Terminal (demo)", ["terminal"], {},
                                       status="active", chain_org=2)
    accounts.create_user(org.id, EMAIL, None, "member")
    client = await aiohttp_client(app)
    return provider, client, issuer


async def _sign_in(client: Any) -> Any:
    """Follow the whole redirect dance (gateway → provider → gateway) to /v1/me."""
    return await client.get("/v1/oidc/corp-id/login", params={"return_to": "/v1/me"})


async def test_login_links_by_verified_email_then_by_subject(provider_and_client: Any) -> None:
    provider, client, issuer = provider_and_client
    resp = await client.get("/v1/oidc/providers")
    assert (await resp.json())["providers"][0]["name"] == "corp-id"

    resp = await client.get("/v1/oidc/corp-id/login", allow_redirects=False)
    assert resp.status == 302
    target = URL(resp.headers["Location"])
    assert str(target.origin()) == issuer and target.path == "/authorize"
    assert target.query["code_challenge_method"] == "S256" and target.query["nonce"]
    assert target.query["state"] and "openid" in target.query["scope"].split()

    client.session.cookie_jar.clear()
    resp = await _sign_in(client)
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert me["via"] == "oidc" and me["user"]["email"] == EMAIL
    assert me["organisation"]["chainOrg"] == 2

    # The identity is now linked by (issuer, subject): a changed e-mail still signs in.
    client.session.cookie_jar.clear()
    provider.email = "someone-else@example.com"
    resp = await _sign_in(client)
    assert resp.status == 200
    assert (await resp.json())["user"]["email"] == EMAIL
    trail = [e["action"] for e in client.server.app[ACCOUNTS].audit_trail()]
    assert trail.count("identity.link") == 1


async def test_unlinked_identities_are_refused(provider_and_client: Any) -> None:
    provider, client, _ = provider_and_client
    provider.subject = "someone-new"
    provider.email_verified = False
    resp = await _sign_in(client)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "identity-not-linked"
    provider.email_verified = True
    provider.email = "nobody@example.com"
    resp = await _sign_in(client)
    assert resp.status == 403
    assert "nobody@example.com" in (await resp.json())["error"]["message"]
    assert (await client.get("/v1/me")).status == 401


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"tamper_signature": True}, "id-token-signature"),
        ({"nonce_override": "a-nonce-of-another-login"}, "id-token-nonce"),
        ({"audience_override": "another-client"}, "id-token-audience"),
    ],
)
async def test_bad_id_tokens_are_refused(provider_and_client: Any, change: dict, code: str) -> None:
    provider, client, _ = provider_and_client
    for name, value in change.items():
        setattr(provider, name, value)
    resp = await _sign_in(client)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == code
    assert (await client.get("/v1/me")).status == 401


async def test_state_is_single_use_and_required(provider_and_client: Any) -> None:
    _, client, _ = provider_and_client
    resp = await client.get("/v1/oidc/corp-id/login", allow_redirects=False)
    authorize = resp.headers["Location"]
    resp = await client.session.get(authorize, allow_redirects=False)
    callback = URL(resp.headers["Location"])
    assert callback.path == "/v1/oidc/corp-id/callback"
    first = await client.get(callback.path_qs, allow_redirects=False)
    assert first.status == 302 and first.headers["Location"] == "/"
    replay = await client.get(callback.path_qs, allow_redirects=False)
    assert replay.status == 400 and (await replay.json())["error"]["code"] == "oidc-state"
    forged = await client.get("/v1/oidc/corp-id/callback",
                              params={"code": callback.query["code"], "state": "forged"})
    assert forged.status == 400
    assert (await client.get("/v1/oidc/nope/login")).status == 404


async def test_return_to_stays_on_this_site(provider_and_client: Any) -> None:
    _, client, _ = provider_and_client
    resp = await client.get("/v1/oidc/corp-id/login",
                            params={"return_to": "//evil.example/x"}, allow_redirects=False)
    authorize = resp.headers["Location"]
    resp = await client.session.get(authorize, allow_redirects=False)
    resp = await client.get(URL(resp.headers["Location"]).path_qs, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/"


async def test_provider_checks_pkce_and_client_secret(aiohttp_server: Any) -> None:
    provider = TestProvider(client_id="c", client_secret="s")
    server = await aiohttp_server(create_test_provider_app(provider))
    verifier = "v" * 50
    redirect = "http://127.0.0.1:1/cb"
    async with aiohttp.ClientSession() as http:
        resp = await http.get(server.make_url("/authorize"), allow_redirects=False, params={
            "client_id": "c", "response_type": "code", "scope": "openid", "state": "st",
            "nonce": "n", "redirect_uri": redirect, "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256"})
        code = URL(resp.headers["Location"]).query["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "code_verifier": "w" * 50, "client_id": "c", "client_secret": "s"}
        resp = await http.post(server.make_url("/token"), data=form)
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"
        resp = await http.post(server.make_url("/token"),
                               data={**form, "client_secret": "wrong"})
        assert resp.status == 401


# -- the ID-token checks, directly ----------------------------------------------------------------
KEY = ec.generate_private_key(ec.SECP256R1())
JWKS = {"k1": jwk_of(KEY, "k1")}
NOW = time.time()


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": "https://id.example", "sub": "p1", "aud": "gw", "iat": int(NOW),
            "exp": int(NOW) + 300, "nonce": "n1"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verify(token: str, **kw: Any) -> dict[str, Any]:
    return verify_id_token(token, keys=kw.pop("keys", JWKS), issuer="https://id.example",
                           client_id="gw", nonce=kw.pop("nonce", "n1"), now=NOW, **kw)


def test_es256_token_verifies() -> None:
    assert verify(sign_es256(claims(), KEY, "k1"))["sub"] == "p1"


@pytest.mark.parametrize(
    ("claim_changes", "code"),
    [
        ({"iss": "https://evil.example"}, "id-token-issuer"),
        ({"aud": "other"}, "id-token-audience"),
        ({"aud": ["gw", "other"]}, "id-token-audience"),  # several audiences need azp = us
        ({"exp": int(NOW) - 120}, "id-token-expired"),
        ({"iat": int(NOW) + 600}, "id-token-expired"),
        ({"nonce": "n2"}, "id-token-nonce"),
        ({"nonce": None}, "id-token-nonce"),
        ({"sub": None}, "id-token-malformed"),
        ({"exp": None}, "id-token-malformed"),
    ],
)
def test_claims_are_checked(claim_changes: dict, code: str) -> None:
    with pytest.raises(IdTokenError) as err:
        verify(sign_es256(claims(**claim_changes), KEY, "k1"))
    assert err.value.code == code


def test_several_audiences_with_azp_pass() -> None:
    verify(sign_es256(claims(aud=["gw", "other"], azp="gw"), KEY, "k1"))


def _unsigned(header: dict, body: dict, signature: bytes = b"") -> str:
    return ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(body).encode()),
                     b64url(signature)))


def test_forged_algorithms_and_keys_are_refused() -> None:
    with pytest.raises(IdTokenError) as err:
        verify(_unsigned({"alg": "none", "kid": "k1"}, claims()))
    assert err.value.code == "id-token-algorithm"
    with pytest.raises(IdTokenError) as err:
        verify(_unsigned({"alg": "HS256", "kid": "k1"}, claims(), b"x" * 32))
    assert err.value.code == "id-token-algorithm"
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IdTokenError) as err:
        verify(sign_es256(claims(), other, "k1"))
    assert err.value.code == "id-token-signature"
    with pytest.raises(IdTokenError) as err:
        verify(sign_es256(claims(), KEY, "unknown-kid"))
    assert err.value.code == "id-token-key"
    token = sign_es256(claims(), KEY, "k1")
    head, _, sig = token.split(".")
    swapped = head + "." + b64url(json.dumps(claims(sub="p2")).encode()) + "." + sig
    with pytest.raises(IdTokenError):
        verify(swapped)
    with pytest.raises(IdTokenError) as err:
        verify("a.b")
    assert err.value.code == "id-token-malformed"


def test_rs256_token_verifies() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": "r1", "alg": "RS256",
           "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(b"\x01\x00\x01")}
    header = b64url(json.dumps({"alg": "RS256", "kid": "r1"}).encode())
    body = b64url(json.dumps(claims()).encode())
    signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{header}.{body}.{b64url(signature)}"
    assert verify(token, keys={"r1": jwk})["sub"] == "p1"
    # An RS256 token cannot be checked with an EC key of the same kid (algorithm confusion).
    with pytest.raises(IdTokenError):
        verify(token, keys={"r1": JWKS["k1"]})


def test_provider_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="https"):
        OpenIdProvider("x", "X", issuer="http://id.example", client_id="c", client_secret="s")
    with pytest.raises(ValueError, match="kind"):
        providers_from_config(({"name": "x", "kind": "saml", "issuer": "https://i"},))
    with pytest.raises(ValueError, match="name"):
        providers_from_config(({"name": "Bad Name", "issuer": "https://i", "client_id": "c"},))
    found = providers_from_config(({"name": "corp-id", "issuer": "https://id.example/",
                                    "client_id": "c"},))
    assert found["corp-id"].issuer == "https://id.example"  # type: ignore[attr-defined]
