"""Who is asking: the authenticated principal of a request, and the checks handlers make.

:mod:`gateway.accounts.auth`'s middleware authenticates every request (session cookie, API key or
an OpenID Connect login turned into a session) and stores a :class:`Principal` on it; anonymous
requests carry none. Handlers never read cookies or headers themselves: they call
:func:`require`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.errors import Forbidden, Unauthorized

#: Scopes an API key can hold; a user holds those of its role (see ``ROLE_SCOPES``).
SCOPES: tuple[str, ...] = (
    "events:write",  # upload events, link B/Ls, anchor telemetry
    "events:read",  # download events (DCSA GET /v2/events), subscriptions
    "tracking:read",  # tracking and the resolver
    "grants:write",  # grant and revoke other organisations' access
    "org:admin",  # users, API keys, organisation settings
    "proofs:export",  # export proof bundles of own events, decide proof requests (disclose)
    "proofs:request",  # ask other organisations for proof bundles, download them
)

#: Roles inside an organisation and the scopes they carry.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "member": frozenset({"events:write", "events:read", "tracking:read", "grants:write",
                         "proofs:export", "proofs:request"}),
    # a driver sees and does only what the land leg gives them: their assigned jobs
    "driver": frozenset(),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, always acting for one organisation."""

    org_id: int
    """The gateway's id of the caller's organisation."""
    chain_org: int | None
    """Its Consortium organisation id once it is a member on chain, else None."""
    user_id: int | None
    """The user, or None for an API key."""
    role: str
    """Role inside the organisation: admin, member or driver (API keys: "system")."""
    scopes: frozenset[str]
    """What this credential may do."""
    via: str
    """How it authenticated: "session", "api_key" or "oidc"."""
    operator: bool = False
    """A platform operator (verifies organisations); not an organisation's role."""
    credential_id: str = ""
    """Stable id of the session or API key (rate limits count per credential)."""


PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal | None:
    """The request's principal, or None if anonymous."""
    return request.get(PRINCIPAL)


def require(request: web.Request, scope: str | None = None) -> Principal:
    """The request's principal; 401 if anonymous, 403 if it lacks ``scope``."""
    principal = principal_of(request)
    if principal is None:
        raise Unauthorized("sign in or send an API key (Authorization: Bearer <key>)")
    if scope is not None and scope not in principal.scopes:
        raise Forbidden(f"this credential lacks the {scope!r} scope", code="missing-scope")
    return principal


def require_operator(request: web.Request) -> Principal:
    """The request's principal, who must be a platform operator."""
    principal = require(request)
    if not principal.operator:
        raise Forbidden("only a platform operator may do this", code="operator-only")
    return principal
