"""A test OpenID Connect provider: a real OIDC server (discovery, authorize, token, JWKS over
HTTP) standing in for the corporate digital identity in the gateway's tests.

It speaks the protocol the gateway's :class:`gateway.accounts.oidc.OpenIdProvider` expects
(authorization code with PKCE, ES256-signed ID tokens); tests change its fields between logins
to make it misbehave (wrong audience, expired token, bad signature...).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.accounts.jose import b64url, b64url_decode, jwk_of, pkce_challenge, sign_es256


@dataclass
class TestProvider:
    """State of a test identity provider (stands in for the corporate digital identity).

    Tests change the fields between logins to make the provider misbehave.
    """

    __test__ = False  # not a pytest test class

    client_id: str
    """The one client it knows."""
    client_secret: str
    """That client's secret."""
    subject: str = "corp-id-0001"
    """``sub`` of the auto-approved person."""
    email: str | None = "admin@example.com"
    """Their e-mail address."""
    email_verified: bool = True
    """Whether the provider vouches for it."""
    name: str = "Test Person"
    """Their name."""
    tamper_signature: bool = False
    """Flip a bit of the ID token's signature."""
    nonce_override: str | None = None
    """Put this nonce in the ID token instead of the requested one."""
    audience_override: str | None = None
    """Put this audience in the ID token instead of the client id."""
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    """ES256 signing key."""
    kid: str = field(default_factory=lambda: secrets.token_hex(4))
    """Its key id."""
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Issued authorization codes (used once)."""


TEST_PROVIDER = web.AppKey("test_oidc_provider", TestProvider)


def create_test_provider_app(provider: TestProvider) -> web.Application:
    """A real, minimal OpenID Connect provider for tests on loopback.

    It stands for Hong Kong's corporate digital identity ("iAM Smart+" / the digital corporate
    identity arriving in 2026) in tests: discovery, an authorize endpoint that auto-approves
    ``provider``'s one person, a token endpoint that checks the client secret (HTTP Basic or
    form), the redirect URI and PKCE (S256), and JWKS; ID tokens are ES256 JWTs. The issuer is
    the URL it is reached at.
    """
    app = web.Application()
    app[TEST_PROVIDER] = provider

    def issuer(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def discovery(request: web.Request) -> web.Response:
        base = issuer(request)
        return web.json_response({
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": base + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        })

    async def authorize(request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != provider.client_id or q.get("response_type") != "code":
            return web.json_response({"error": "unauthorized_client"}, status=400)
        if "openid" not in q.get("scope", "").split() or q.get("code_challenge_method") != "S256":
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(24)
        provider.codes[code] = {
            "redirect_uri": q.get("redirect_uri", ""),
            "challenge": q.get("code_challenge", ""),
            "nonce": q.get("nonce", ""),
            "expires": time.time() + 60,
        }
        target = q.get("redirect_uri", "")
        sep = "&" if "?" in target else "?"
        raise web.HTTPFound(target + sep + urlencode({"code": code, "state": q.get("state", "")}))

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            basic = aiohttp.BasicAuth.decode(header)
            client_id, secret = basic.login, basic.password
        if client_id != provider.client_id or not hmac.compare_digest(
            str(secret or "").encode(), provider.client_secret.encode()
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = provider.codes.pop(str(form.get("code", "")), None)
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or grant["expires"] < time.time()
            or grant["redirect_uri"] != form.get("redirect_uri")
            or pkce_challenge(str(form.get("code_verifier", ""))) != grant["challenge"]
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer(request),
            "sub": provider.subject,
            "aud": provider.audience_override or provider.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": provider.nonce_override or grant["nonce"],
            "name": provider.name,
        }
        if provider.email is not None:
            claims["email"] = provider.email
            claims["email_verified"] = provider.email_verified
        id_token = sign_es256(claims, provider.key, provider.kid)
        if provider.tamper_signature:
            head, body, sig = id_token.split(".")
            raw = bytearray(b64url_decode(sig))
            raw[5] ^= 0x01
            id_token = f"{head}.{body}.{b64url(bytes(raw))}"
        return web.json_response({
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        })

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk_of(provider.key, provider.kid)]})

    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/token", token)
    app.router.add_get("/jwks", jwks)
    return app
