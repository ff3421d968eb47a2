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
   (checked by :mod:`gateway.accounts.jose`; ``none`` and HMAC algorithms are
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
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import openapi
from gateway.accounts.auth import set_session_cookie
from gateway.accounts.jose import (
    IdTokenError,
    OidcError,
    b64url,
    b64url_decode,
    jwk_of,
    pkce_challenge,
    sign_es256,
    verify_id_token,
)
from gateway.appkeys import ACCOUNTS, CONFIG, OIDC_HTTP, OIDC_PROVIDERS
from gateway.errors import BadRequest, NotFound, Unauthorized, Unavailable

#: Seconds a fetched discovery document / JWKS is reused.
METADATA_TTL = 3600.0
#: HTTP timeout of calls to a provider, seconds.
PROVIDER_TIMEOUT = 10.0


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
        endpoint = str(meta["authorization_endpoint"])
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
api = openapi.Routes(tag="Accounts")
_PROVIDER = openapi.path_parameter("provider", {"type": "string"})
_TEXT = {"type": "string"}


def _provider(request: web.Request) -> IdentityProvider:
    provider: IdentityProvider | None = request.app[OIDC_PROVIDERS].get(
        request.match_info["provider"])
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


@api.get("/v1/oidc/{provider}/login", openapi.operation(
    "Sign in with an external identity (redirects to the provider)",
    security=[],
    parameters=[_PROVIDER, openapi.query_parameter("return_to", _TEXT)],
    ok=302, ok_description="To the provider",
    errors=(404, 503),
))
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


@api.get("/v1/oidc/{provider}/callback", openapi.operation(
    "Where the provider returns (opens a session, redirects)",
    security=[],
    parameters=[_PROVIDER, *(openapi.query_parameter(name, _TEXT)
                             for name in ("state", "code", "error"))],
    ok=302, ok_description="Signed in",
    errors=(400, 401, 403, 404, 503),
))
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


@api.get("/v1/oidc/providers", openapi.operation(
    "External identity providers one can sign in with",
    security=[],
    ok_description="Providers",
    ok_schema={"type": "object", "properties": {"providers": {"type": "array"}}},
))
async def oidc_providers(request: web.Request) -> web.Response:
    """The configured external logins (for the sign-in page)."""
    return web.json_response({
        "providers": [
            {"name": p.name, "displayName": p.display_name,
             "login": f"/v1/oidc/{p.name}/login"}
            for p in request.app[OIDC_PROVIDERS].values()
        ]
    })


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession()
    app[OIDC_HTTP] = session
    yield
    await session.close()


def setup(app: web.Application) -> None:
    """Add the configured providers, their HTTP client and the OIDC routes."""
    app[OIDC_PROVIDERS] = providers_from_config(app[CONFIG].oidc_providers)
    app.cleanup_ctx.append(_http_ctx)
    api.install(app)


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
