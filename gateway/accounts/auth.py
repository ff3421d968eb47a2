"""Authentication of every request: the middleware, the session cookie, CSRF and origin checks.

:func:`auth_middleware` turns the request's credential into a
:class:`gateway.principal.Principal` (through the accounts store, ``app[ACCOUNTS]``); a presented
API key that is unknown, malformed or revoked is answered 401 rather than treated as anonymous.
Sessions are bound to a CSRF token that every unsafe request made with the cookie must echo.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from http.cookies import Morsel

from aiohttp import web

from gateway.accounts.model import SESSION_LIFETIME, Session
from gateway.appkeys import ACCOUNTS, CONFIG
from gateway.config import GatewayConfig
from gateway.errors import Forbidden, Unauthorized
from gateway.principal import PRINCIPAL

#: Name of the session cookie.
COOKIE = "portledger_session"
#: Header carrying the CSRF token of cookie-authenticated unsafe requests.
CSRF_HEADER = "X-CSRF-Token"
#: Form field carrying the CSRF token (HTML forms that cannot set headers).
CSRF_FIELD = "csrf_token"

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Unsafe routes that do not act under the session they may carry (signing in — also a driver's
#: one-time code, gateway/land — and registering).
_CSRF_EXEMPT = frozenset({("POST", "/v1/session"), ("POST", "/v1/organisations/register"),
                          ("POST", "/v1/land/driver-session")})
_CLEAR_COOKIE = web.RequestKey("portledger.clear_session_cookie", bool)
#: The CSRF token of the request's session (pages embed it).
SESSION_CSRF = web.RequestKey("portledger.session_csrf", str)


async def _csrf_token_of(request: web.Request) -> str:
    token = request.headers.get(CSRF_HEADER)
    if token is not None:
        return token
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Put the request's :class:`Principal` on it (API key or session cookie); check CSRF.

    * ``Authorization: Bearer plk_…``: the key's principal; a malformed, unknown or revoked key
      is answered 401 (never treated as anonymous). API-key requests need no CSRF token.
    * Cookie ``portledger_session``: the session's principal; unsafe methods must echo the
      session's CSRF token (``X-CSRF-Token`` or form field ``csrf_token``) or get 403. A cookie
      of an expired or unknown session makes the request anonymous and is deleted.
    """
    accounts = request.app.get(ACCOUNTS)
    if accounts is None:
        return await handler(request)
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthorized("use Authorization: Bearer <API key>", code="invalid-api-key")
        request[PRINCIPAL] = accounts.authenticate_api_key(credential.strip())
        return await handler(request)
    token = request.cookies.get(COOKIE)
    if token:
        found = accounts.authenticate_session(token)
        if found is None:
            request[_CLEAR_COOKIE] = True
        else:
            principal, csrf = found
            if request.method in _UNSAFE and (request.method, request.path) not in _CSRF_EXEMPT:
                sent = await _csrf_token_of(request)
                if not hmac.compare_digest(sent.encode(), csrf.encode()):
                    raise Forbidden(
                        f"missing or wrong CSRF token (send the {CSRF_HEADER} header)",
                        code="csrf",
                    )
            request[PRINCIPAL] = principal
            request[SESSION_CSRF] = csrf
    return await handler(request)


async def clear_stale_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: delete the cookie of a session that is no longer in force."""
    # Headers are final here (cookies already rendered), so the deletion is a raw header.
    if request.get(_CLEAR_COOKIE) and not any(
        v.startswith(COOKIE + "=") for v in response.headers.getall("Set-Cookie", ())
    ):
        morsel: Morsel[str] = Morsel()
        morsel.set(COOKIE, "", '""')
        morsel.update({"path": "/", "max-age": "0", "expires": "Thu, 01 Jan 1970 00:00:00 GMT"})
        response.headers.add("Set-Cookie", morsel.OutputString())


def set_session_cookie(
    response: web.StreamResponse, config: GatewayConfig, session: Session
) -> None:
    """Put a session's cookie on a response."""
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=SESSION_LIFETIME,
        path="/",
        httponly=True,
        secure=config.cookie_secure,
        samesite="Lax",
    )


def check_origin(request: web.Request) -> None:
    """Refuse a browser request sent from another site (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return
    if origin != f"{request.scheme}://{request.host}":
        public = request.app[CONFIG].public_url.rstrip("/")
        if not public or origin != public:
            raise Forbidden("cross-site request refused", code="cross-origin")
