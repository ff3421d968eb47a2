"""Signing in with an external identity: OpenID Connect, pluggable.

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

The tests run a small but real provider on loopback in place of the corporate identity service
(``tests/support/oidc_provider.py``: discovery, authorize that auto-approves one configured
user, token endpoint checking the client secret and PKCE, JWKS, ES256-signed ID tokens).
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from gateway import openapi
from gateway.accounts.auth import set_session_cookie
from gateway.accounts.jose import (
    IdTokenError,
    OidcError,
    pkce_challenge,
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
