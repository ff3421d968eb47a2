"""Signing in with an external identity: OpenID Connect, pluggable, with a test provider.

Hong Kong's companies will prove who acts for them with a *corporate digital identity*
(iAM Smart+ / the digital corporate identity the Government plans for 2026), which is expected to
speak OpenID Connect; a port operator elsewhere has its own. So the gateway's external login is
an :class:`IdentityProvider` interface with one general implementation,
:class:`OpenIdProvider` (discovery document, authorization-code flow with PKCE (S256), ``state``
and ``nonce``, ID-token verification), chosen per configured provider by its ``kind``
(:data:`PROVIDER_KINDS`; a deployment can register another kind).

The flow (``GET /v1/oidc/{provider}/login`` → provider → ``GET /v1/oidc/{provider}/callback``):

1. *login* stores a random ``state`` (hashed), a ``nonce`` and a PKCE code verifier in the
   accounts database (valid 10 minutes, usable once) and redirects to the provider's
   authorization endpoint with ``code_challenge = BASE64URL(SHA256(verifier))``;
2. *callback* takes the stored login by ``state`` (an unknown, reused or expired state is
   refused), exchanges the code (with the verifier and the client secret) at the token endpoint,
   and verifies the ID token: a JWS signed ES256 or RS256 by a key of the provider's JWKS
   (checked here with the ``cryptography`` primitives; ``none`` and HMAC algorithms are
   refused), ``iss`` equal to the configured issuer, ``aud`` containing the client id (and
   ``azp`` equal to it when there are several audiences), ``exp`` in the future and ``iat`` not
   in the future (60 s leeway), and ``nonce`` equal to the stored one;
3. the identity ``(iss, sub)`` signs in as its linked user; on first use a *verified* e-mail
   address equal to a user's of an active organisation links it; otherwise the login is refused
   with ``identity-not-linked`` (an organisation admin adds the user first).

:func:`create_test_provider_app` is a small but real provider (discovery, authorize that
auto-approves one configured user, token endpoint checking the client secret and PKCE, JWKS,
ES256-signed ID tokens) that tests run on loopback in place of the corporate identity service.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway import openapi
from gateway.accounts import set_session_cookie
from gateway.appkeys import ACCOUNTS, CONFIG, OIDC_HTTP, OIDC_PROVIDERS
from gateway.errors import BadRequest, NotFound, Unauthorized, Unavailable

#: Seconds of clock skew allowed on ``exp`` and ``iat``.
LEEWAY = 60
#: Largest ID token accepted (bytes).
MAX_TOKEN_BYTES = 16_384
#: Seconds a fetched discovery document / JWKS is reused.
METADATA_TTL = 3600.0
#: HTTP timeout of calls to a provider, seconds.
PROVIDER_TIMEOUT = 10.0

_ALGORITHMS = ("ES256", "RS256")


class OidcError(Exception):
    """An external login failed; ``code`` says why (stable, for the JSON error)."""

    def __init__(self, message: str, code: str = "oidc-failed") -> None:
        super().__init__(message)
        self.code = code


class IdTokenError(OidcError):
    """An ID token is not authentic or not for us (signature, iss, aud, exp, nonce)."""


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    issuer: str
    """The provider's issuer identifier."""
    subject: str
    """The provider's stable id of the person (``sub``)."""
    email: str | None
    """E-mail address, if the provider gave one."""
    email_verified: bool
    """The provider vouches for the e-mail address."""
    name: str | None = None
    """Display name, if given."""


# -- JOSE: base64url, JWKs, JWS -------------------------------------------------------------------
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


# -- providers ------------------------------------------------------------------------------------
class IdentityProvider(abc.ABC):
    """One configured external login (subclass it for a provider that is not plain OIDC).

    Parameters
    ----------
    name
        Its name in the gateway's URLs (``/v1/oidc/<name>/login``).
    display_name
        What the sign-in page calls it.
    """

    def __init__(self, name: str, display_name: str) -> None:
        self.name = name
        self.display_name = display_name

    @abc.abstractmethod
    async def authorization_url(
        self,
        http: aiohttp.ClientSession,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """Where to send the browser to sign in."""

    @abc.abstractmethod
    async def identity(
        self,
        http: aiohttp.ClientSession,
        *,
        code: str,
        verifier: str,
        redirect_uri: str,
        nonce: str,
    ) -> Identity:
        """Redeem the authorization code and return the verified identity.

        Raises
        ------
        OidcError
            The provider refused, or its answer does not verify.
        """


def _check_issuer_url(issuer: str) -> None:
    url = urlsplit(issuer)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValueError(f"issuer {issuer!r} must be https (plain http only on loopback)")


class OpenIdProvider(IdentityProvider):
    """A standard OpenID Connect provider found through its discovery document.

    Parameters
    ----------
    name, display_name
        See :class:`IdentityProvider`.
    issuer
        Issuer identifier (https; http only on loopback); the discovery document is at
        ``<issuer>/.well-known/openid-configuration``.
    client_id, client_secret
        This gateway's registration at the provider.
    scopes
        Scopes asked for (``openid`` is always included).
    """

    def __init__(
        self,
        name: str,
        display_name: str,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        scopes: tuple[str, ...] = ("openid", "email", "profile"),
    ) -> None:
        super().__init__(name, display_name)
        _check_issuer_url(issuer)
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = tuple(dict.fromkeys(("openid", *scopes)))
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, dict[str, dict[str, Any]]] | None = None

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> OpenIdProvider:
        """Build from a ``config.oidc_providers`` entry."""
        return cls(
            entry["name"],
            entry.get("display_name", entry["name"]),
            issuer=entry["issuer"],
            client_id=entry["client_id"],
            client_secret=entry.get("client_secret", ""),
            scopes=tuple(entry.get("scopes", ("openid", "email", "profile"))),
        )

    async def _get_json(self, http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=PROVIDER_TIMEOUT)) as r:
                if r.status != 200:
                    raise OidcError(f"{url} answered {r.status}", "provider-unavailable")
                doc = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError(f"{url}: {exc}", "provider-unavailable") from None
        if not isinstance(doc, dict):
            raise OidcError(f"{url} did not answer a JSON object", "provider-unavailable")
        return doc

    async def metadata(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """The provider's discovery document (cached for :data:`METADATA_TTL`)."""
        now = time.monotonic()
        if self._metadata is not None and now - self._metadata[0] < METADATA_TTL:
            return self._metadata[1]
        doc = await self._get_json(http, self.issuer + "/.well-known/openid-configuration")
        if doc.get("issuer", "").rstrip("/") != self.issuer:
            raise OidcError("discovery document names another issuer", "provider-misconfigured")
        for member in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(member), str):
                raise OidcError(f"discovery document lacks {member}", "provider-misconfigured")
        methods = doc.get("code_challenge_methods_supported")
        if methods is not None and "S256" not in methods:
            raise OidcError("provider does not support PKCE S256", "provider-misconfigured")
        self._metadata = (now, doc)
        return doc

    async def keys(self, http: aiohttp.ClientSession, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's signing keys by ``kid`` (re-fetched when ``refresh``)."""
        now = time.monotonic()
        if not refresh and self._jwks is not None and now - self._jwks[0] < METADATA_TTL:
            return self._jwks[1]
        meta = await self.metadata(http)
        doc = await self._get_json(http, meta["jwks_uri"])
        found = {
            str(k.get("kid", f"#{i}")): k
            for i, k in enumerate(doc.get("keys", []))
            if isinstance(k, dict) and k.get("use", "sig") == "sig"
        }
        self._jwks = (now, found)
        return found

    async def authorization_url(
        self,
        http: aiohttp.ClientSession,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        meta = await self.metadata(http)
        query = urlencode({
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        })
        endpoint = meta["authorization_endpoint"]
        return endpoint + ("&" if "?" in endpoint else "?") + query

    async def identity(
        self,
        http: aiohttp.ClientSession,
        *,
        code: str,
        verifier: str,
        redirect_uri: str,
        nonce: str,
    ) -> Identity:
        meta = await self.metadata(http)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.client_id,
        }
        auth = aiohttp.BasicAuth(self.client_id, self.client_secret) if self.client_secret else None
        try:
            async with http.post(
                meta["token_endpoint"],
                data=form,
                auth=auth,
                timeout=aiohttp.ClientTimeout(total=PROVIDER_TIMEOUT),
            ) as r:
                answer = await r.json(content_type=None)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError(f"token endpoint: {exc}", "provider-unavailable") from None
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise OidcError(f"the provider refused the code ({error or status})",
                            "code-refused")
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise OidcError("the provider sent no ID token", "id-token-malformed")
        keys = await self.keys(http)
        try:
            claims = verify_id_token(token, keys=keys, issuer=self.issuer,
                                     client_id=self.client_id, nonce=nonce)
        except IdTokenError as exc:
            if exc.code != "id-token-key":
                raise
            # The provider may have rotated its keys since we fetched them.
            keys = await self.keys(http, refresh=True)
            claims = verify_id_token(token, keys=keys, issuer=self.issuer,
                                     client_id=self.client_id, nonce=nonce)
        email = claims.get("email")
        return Identity(
            issuer=self.issuer,
            subject=claims["sub"],
            email=email if isinstance(email, str) else None,
            email_verified=claims.get("email_verified") is True,
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )


#: Provider kinds by the ``kind`` of a configuration entry (default ``"oidc"``).
PROVIDER_KINDS: dict[str, Callable[[dict[str, Any]], IdentityProvider]] = {
    "oidc": OpenIdProvider.from_config,
}


def providers_from_config(entries: tuple[dict[str, Any], ...]) -> dict[str, IdentityProvider]:
    """The configured providers by name.

    Raises
    ------
    ValueError
        An entry with an unknown kind, a bad name, or a missing member.
    """
    out: dict[str, IdentityProvider] = {}
    for entry in entries:
        name = str(entry.get("name", ""))
        if not name or not all(c.isalnum() or c == "-" for c in name) or name != name.lower():
            raise ValueError(f"OIDC provider name {name!r}: use lower-case letters, digits, '-'")
        kind = entry.get("kind", "oidc")
        if kind not in PROVIDER_KINDS:
            raise ValueError(f"OIDC provider {name}: unknown kind {kind!r}")
        try:
            out[name] = PROVIDER_KINDS[kind](entry)
        except KeyError as exc:
            raise ValueError(f"OIDC provider {name}: missing {exc}") from None
    return out


# -- routes ---------------------------------------------------------------------------------------

routes = web.RouteTableDef()


def _provider(request: web.Request) -> IdentityProvider:
    provider = request.app[OIDC_PROVIDERS].get(request.match_info["provider"])
    if provider is None:
        raise NotFound("no such identity provider", code="no-such-provider")
    return provider


def _redirect_uri(request: web.Request, provider: IdentityProvider) -> str:
    base = request.app[CONFIG].public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    return f"{base}/v1/oidc/{provider.name}/callback"


def _local_path(text: str | None) -> str:
    """A safe place to return to after signing in: a local absolute path, else ``/``."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text


def _http(request: web.Request) -> aiohttp.ClientSession:
    http = request.app.get(OIDC_HTTP)
    if http is None:
        raise Unavailable("the gateway is not running", code="oidc-unavailable")
    return http


@routes.get(r"/v1/oidc/{provider}/login")
async def oidc_login(request: web.Request) -> web.Response:
    """Start an external login: redirect to the provider."""
    provider = _provider(request)
    state, login = request.app[ACCOUNTS].begin_oidc_login(
        provider.name, _local_path(request.query.get("return_to"))
    )
    try:
        url = await provider.authorization_url(
            _http(request),
            redirect_uri=_redirect_uri(request, provider),
            state=state,
            nonce=login.nonce,
            code_challenge=pkce_challenge(login.verifier),
        )
    except OidcError as exc:
        raise Unavailable(str(exc), code=exc.code) from None
    return web.Response(status=302, headers={"Location": url})


@routes.get(r"/v1/oidc/{provider}/callback")
async def oidc_callback(request: web.Request) -> web.Response:
    """Finish an external login: verify, find the user, open a session, redirect."""
    provider = _provider(request)
    accounts = request.app[ACCOUNTS]
    state = request.query.get("state", "")
    login = accounts.take_oidc_login(state, provider.name) if state else None
    if login is None:
        raise BadRequest("unknown, used or expired login state; start the sign-in again",
                         code="oidc-state")
    if "error" in request.query:
        raise Unauthorized(f"the identity provider refused: {request.query['error'][:100]}",
                           code="oidc-refused")
    code = request.query.get("code")
    if not code:
        raise BadRequest("the provider sent no authorization code", code="oidc-no-code")
    try:
        identity = await provider.identity(
            _http(request),
            code=code,
            verifier=login.verifier,
            redirect_uri=_redirect_uri(request, provider),
            nonce=login.nonce,
        )
    except OidcError as exc:
        if exc.code == "provider-unavailable":
            raise Unavailable(str(exc), code=exc.code) from None
        raise Unauthorized(str(exc), code=exc.code) from None
    user = accounts.user_for_identity(
        identity.issuer, identity.subject, identity.email, identity.email_verified
    )
    session = accounts.start_session(user, via="oidc")
    response = web.Response(status=302, headers={"Location": login.return_to})
    set_session_cookie(response, request.app[CONFIG], session)
    return response


@routes.get("/v1/oidc/providers")
async def oidc_providers(request: web.Request) -> web.Response:
    """The configured external logins (for the sign-in page)."""
    return web.json_response({
        "providers": [
            {"name": p.name, "displayName": p.display_name,
             "login": f"/v1/oidc/{p.name}/login"}
            for p in request.app[OIDC_PROVIDERS].values()
        ]
    })


_TAG = "Accounts"
PATHS: dict[str, Any] = {
    "/v1/oidc/providers": {
        "get": {
            "tags": [_TAG],
            "summary": "External identity providers one can sign in with",
            "security": [],
            "responses": {"200": {"description": "Providers", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"providers": {"type": "array"}}}}}}},
        }
    },
    "/v1/oidc/{provider}/login": {
        "get": {
            "tags": [_TAG],
            "summary": "Sign in with an external identity (redirects to the provider)",
            "security": [],
            "parameters": [
                {"name": "provider", "in": "path", "required": True,
                 "schema": {"type": "string"}},
                {"name": "return_to", "in": "query", "required": False,
                 "schema": {"type": "string"}},
            ],
            "responses": {"302": {"description": "To the provider"},
                          **openapi.error_responses(404, 503)},
        }
    },
    "/v1/oidc/{provider}/callback": {
        "get": {
            "tags": [_TAG],
            "summary": "Where the provider returns (opens a session, redirects)",
            "security": [],
            "parameters": [
                {"name": "provider", "in": "path", "required": True,
                 "schema": {"type": "string"}},
                {"name": "state", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "code", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "error", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {"302": {"description": "Signed in"},
                          **openapi.error_responses(400, 401, 403, 404, 503)},
        }
    },
}


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession()
    app[OIDC_HTTP] = session
    yield
    await session.close()


def setup(app: web.Application) -> None:
    """Add the configured providers, their HTTP client and the OIDC routes (called by accounts)."""
    app[OIDC_PROVIDERS] = providers_from_config(app[CONFIG].oidc_providers)
    app.cleanup_ctx.append(_http_ctx)
    app.router.add_routes(routes)
    openapi.add(app, PATHS)


# -- the test provider ----------------------------------------------------------------------------
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
