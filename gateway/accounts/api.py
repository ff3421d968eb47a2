"""The accounts API: registration, sign-in, users, API keys and the operator's verification.

Handlers are thin: they check the caller (:mod:`gateway.principal`), validate the body against
the request schemas below (the same objects the OpenAPI document shows) and call the accounts
store (``app[ACCOUNTS]``, :class:`gateway.accounts.store.Accounts`). Verifying an organisation
also creates its keys in the keystore and queues its Consortium membership proposal in the
outbox. :func:`setup` opens the store and adds the routes; the OpenID Connect routes are
:mod:`gateway.accounts.oidc`'s, the authentication middleware :mod:`gateway.accounts.auth`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from contracts import abi
from gateway import openapi
from gateway.accounts.auth import COOKIE, check_origin, clear_stale_cookie, set_session_cookie
from gateway.accounts.model import (
    HASHER,
    ORG_STATUSES,
    REGISTRABLE_ROLES,
    USER_ROLES,
    Organisation,
    chain_name,
    membership_call,
)
from gateway.accounts.store import Accounts
from gateway.appkeys import ACCOUNTS, CONFIG, KEYSTORE, OUTBOX
from gateway.errors import Conflict, Forbidden, NotFound, Unavailable
from gateway.isotime import iso_time
from gateway.jsonbody import read_json
from gateway.principal import SCOPES, Principal, require, require_operator
from gateway.writepath.operations import Operation

# -- request schemas --------------------------------------------------------------------------
_EMAIL = {"type": "string", "format": "email", "minLength": 3, "maxLength": 254}
_PASSWORD = {"type": "string", "minLength": 12, "maxLength": 256}

REGISTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["organisation", "admin"],
    "properties": {
        "organisation": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "roles", "registrationNumber", "country", "address",
                         "contactEmail"],
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 200},
                "roles": {
                    "type": "array",
                    "items": {"enum": list(REGISTRABLE_ROLES)},
                    "uniqueItems": True,
                    "maxItems": len(REGISTRABLE_ROLES),
                },
                "registrationNumber": {"type": "string", "minLength": 1, "maxLength": 64,
                                       "pattern": "^[A-Za-z0-9][A-Za-z0-9 ./-]*$"},
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "address": {"type": "string", "minLength": 5, "maxLength": 500},
                "contactEmail": _EMAIL,
            },
        },
        "admin": {
            "type": "object",
            "additionalProperties": False,
            "required": ["email", "password"],
            "properties": {"email": _EMAIL, "password": _PASSWORD},
        },
    },
}

LOGIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email", "password"],
    "properties": {
        "email": {"type": "string", "minLength": 1, "maxLength": 254},
        "password": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"note": {"type": "string", "maxLength": 1000}},
}

NEW_USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email", "role"],
    "properties": {
        "email": _EMAIL,
        "role": {"enum": list(USER_ROLES)},
        "password": _PASSWORD,
    },
}

USER_PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "role": {"enum": list(USER_ROLES)},
        "disabled": {"type": "boolean"},
        "password": _PASSWORD,
    },
}

NEW_KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["label", "scopes"],
    "properties": {
        "label": {"type": "string", "minLength": 1, "maxLength": 100},
        "scopes": {
            "type": "array",
            "items": {"enum": list(SCOPES)},
            "uniqueItems": True,
            "minItems": 1,
        },
    },
}

_ORG_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "status": {"enum": list(ORG_STATUSES)},
        "chainOrg": {"type": ["integer", "null"]},
        "details": {"type": "object"},
        "account": {"type": ["string", "null"]},
        "operator": {"type": "boolean"},
    },
}
_USER_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "orgId": {"type": "integer"},
        "email": {"type": "string"},
        "role": {"enum": list(USER_ROLES)},
        "disabled": {"type": "boolean"},
        "operator": {"type": "boolean"},
        "hasPassword": {"type": "boolean"},
    },
}
_KEY_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "label": {"type": "string"},
        "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
        "created": {"type": "string"},
        "lastUsed": {"type": ["string", "null"]},
        "revoked": {"type": ["string", "null"]},
        "key": {"type": "string", "description": "The whole key; only in the creation answer."},
    },
}


# -- handlers ---------------------------------------------------------------------------------
api = openapi.Routes(tag="Accounts", description="Organisations, users, sessions and API keys")


def _actor(p: Principal) -> str:
    return f"user:{p.user_id}" if p.user_id is not None else p.credential_id


def _optional_body(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` with its request body optional (a decision's note may be left out)."""
    op["requestBody"]["required"] = False
    return op


_ID = {"type": "integer", "minimum": 1}


@api.post("/v1/organisations/register", openapi.operation(
    "Register an organisation and its first admin (pending verification)",
    security=[],
    body=REGISTER_SCHEMA,
    ok=201, ok_description="Registered, pending",
    ok_schema={"type": "object", "properties": {"organisation": _ORG_OUT, "user": _USER_OUT}},
    errors=(400, 403, 409, 413, 415, 422),
))
async def register(request: web.Request) -> web.Response:
    """An organisation registers itself with its first admin (status ``pending``)."""
    check_origin(request)
    body = await read_json(request, REGISTER_SCHEMA)
    accounts = request.app[ACCOUNTS]
    company = body["organisation"]
    admin = body["admin"]
    if accounts.user_by_email(admin["email"]) is not None:
        raise Conflict("a user with this e-mail address exists", code="email-taken")
    password_hash = await asyncio.to_thread(HASHER.hash, admin["password"])
    details = {k: company[k] for k in ("registrationNumber", "country", "address",
                                       "contactEmail")}
    org = accounts.create_organisation(
        company["name"], company["roles"], details, actor=f"email:{admin['email']}"
    )
    try:
        user = accounts.create_user(org.id, admin["email"], None, "admin",
                                    password_hash=password_hash, actor="registration")
    except Conflict:
        accounts.decide(org.id, "rejected", actor_user=None, note="admin e-mail taken")
        raise
    return web.json_response(
        {"organisation": org.to_json(), "user": user.to_json()}, status=201
    )


@api.post("/v1/session", openapi.operation(
    "Sign in (sets the session cookie; returns the CSRF token)",
    security=[],
    body=LOGIN_SCHEMA,
    ok_description="Signed in",
    ok_schema={"type": "object", "properties": {
        "csrfToken": {"type": "string"}, "expires": {"type": "string"},
        "user": _USER_OUT, "organisation": _ORG_OUT}},
    errors=(400, 401, 403, 413, 415, 422, 429),
))
async def login(request: web.Request) -> web.Response:
    """Sign in with e-mail and password: sets the session cookie, returns the CSRF token."""
    check_origin(request)
    body = await read_json(request, LOGIN_SCHEMA)
    accounts = request.app[ACCOUNTS]
    session = await accounts.login(body["email"], body["password"], request.remote or "unknown")
    org = accounts.organisation(session.user.org_id)
    response = web.json_response(
        {
            "csrfToken": session.csrf,
            "expires": iso_time(session.expires),
            "user": session.user.to_json(),
            "organisation": org.to_json(),
        }
    )
    set_session_cookie(response, request.app[CONFIG], session)
    return response


@api.delete("/v1/session", openapi.operation(
    "Sign out (needs X-CSRF-Token)",
    ok=204, ok_description="Signed out",
    errors=(401, 403),
))
async def logout(request: web.Request) -> web.Response:
    """Sign out (the CSRF token is required, like for every unsafe session request)."""
    principal = require(request)
    token = request.cookies.get(COOKIE)
    if principal.via in ("session", "oidc") and token:
        request.app[ACCOUNTS].end_session(token)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


@api.get("/v1/me", openapi.operation(
    "Who am I",
    ok_description="The caller",
    ok_schema={"type": "object", "properties": {
        "organisation": _ORG_OUT, "user": {"oneOf": [_USER_OUT, {"type": "null"}]},
        "role": {"type": "string"}, "scopes": {"type": "array"},
        "operator": {"type": "boolean"}, "via": {"type": "string"}}},
    errors=(401,),
))
async def me(request: web.Request) -> web.Response:
    """Who the caller is: organisation, user, role, scopes."""
    principal = require(request)
    accounts = request.app[ACCOUNTS]
    org = accounts.organisation(principal.org_id)
    user = accounts.user(principal.user_id) if principal.user_id is not None else None
    return web.json_response(
        {
            "organisation": org.to_json(),
            "user": user.to_json() if user else None,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
            "operator": principal.operator,
            "via": principal.via,
        }
    )


@api.get("/v1/users", openapi.operation(
    "List my organisation's users (org:admin)",
    ok_description="Users",
    ok_schema={"type": "object", "properties": {"users": {"type": "array", "items": _USER_OUT}}},
    errors=(401, 403),
))
async def list_users(request: web.Request) -> web.Response:
    """The caller's organisation's users (org admins)."""
    principal = require(request, "org:admin")
    users = request.app[ACCOUNTS].users(principal.org_id)
    return web.json_response({"users": [u.to_json() for u in users]})


@api.post("/v1/users", openapi.operation(
    "Add a user (org:admin)",
    body=NEW_USER_SCHEMA,
    ok=201, ok_description="Added", ok_schema=_USER_OUT,
    errors=(400, 401, 403, 409, 413, 415, 422),
))
async def add_user(request: web.Request) -> web.Response:
    """Add a user to the caller's organisation (org admins)."""
    principal = require(request, "org:admin")
    body = await read_json(request, NEW_USER_SCHEMA)
    accounts = request.app[ACCOUNTS]
    if accounts.user_by_email(body["email"]) is not None:
        raise Conflict("a user with this e-mail address exists", code="email-taken")
    password_hash = None
    if "password" in body:
        password_hash = await asyncio.to_thread(HASHER.hash, body["password"])
    user = accounts.create_user(principal.org_id, body["email"], None, body["role"],
                                password_hash=password_hash, actor=_actor(principal))
    return web.json_response(user.to_json(), status=201)


def _user_id(request: web.Request) -> int:
    try:
        return int(request.match_info["user_id"])
    except ValueError:
        raise NotFound("no such user", code="no-such-user") from None


@api.patch("/v1/users/{user_id}", openapi.operation(
    "Change a user's role, disabled flag or password (org:admin)",
    parameters=[openapi.path_parameter("user_id", _ID)],
    body=USER_PATCH_SCHEMA,
    ok_description="Changed", ok_schema=_USER_OUT,
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
))
async def patch_user(request: web.Request) -> web.Response:
    """Change a user's role, disabled flag or password (org admins)."""
    principal = require(request, "org:admin")
    body = await read_json(request, USER_PATCH_SCHEMA)
    password_hash = None
    if "password" in body:
        password_hash = await asyncio.to_thread(HASHER.hash, body["password"])
    user = request.app[ACCOUNTS].update_user(
        principal.org_id,
        _user_id(request),
        role=body.get("role"),
        disabled=body.get("disabled"),
        password_hash=password_hash,
        actor=_actor(principal),
    )
    return web.json_response(user.to_json())


@api.delete("/v1/users/{user_id}", openapi.operation(
    "Remove a user (org:admin)",
    parameters=[openapi.path_parameter("user_id", _ID)],
    ok=204, ok_description="Removed",
    errors=(401, 403, 404, 409),
))
async def delete_user(request: web.Request) -> web.Response:
    """Remove a user (org admins)."""
    principal = require(request, "org:admin")
    request.app[ACCOUNTS].delete_user(principal.org_id, _user_id(request), actor=_actor(principal))
    return web.Response(status=204)


@api.get("/v1/api-keys", openapi.operation(
    "List my organisation's API keys (org:admin)",
    ok_description="Keys",
    ok_schema={"type": "object", "properties": {"apiKeys": {"type": "array", "items": _KEY_OUT}}},
    errors=(401, 403),
))
async def list_keys(request: web.Request) -> web.Response:
    """The caller's organisation's API keys (never their secrets)."""
    principal = require(request, "org:admin")
    keys = request.app[ACCOUNTS].api_keys(principal.org_id)
    return web.json_response({"apiKeys": [k.to_json() for k in keys]})


@api.post("/v1/api-keys", openapi.operation(
    "Create an API key (the secret is shown once)",
    body=NEW_KEY_SCHEMA,
    ok=201, ok_description="Created", ok_schema=_KEY_OUT,
    errors=(400, 401, 403, 413, 415, 422),
))
async def create_key(request: web.Request) -> web.Response:
    """Issue an API key; the answer carries the whole key, shown this once."""
    principal = require(request, "org:admin")
    body = await read_json(request, NEW_KEY_SCHEMA)
    beyond = sorted(set(body["scopes"]) - principal.scopes)
    if beyond:
        raise Forbidden(f"you cannot give scopes you lack: {', '.join(beyond)}",
                        code="scope-escalation")
    accounts = request.app[ACCOUNTS]
    key_id, key = accounts.create_api_key(
        principal.org_id, body["scopes"], body["label"], actor=_actor(principal),
        created_by=principal.user_id,
    )
    found = next(k for k in accounts.api_keys(principal.org_id) if k.id == key_id)
    return web.json_response({**found.to_json(), "key": key}, status=201)


@api.delete("/v1/api-keys/{key_id}", openapi.operation(
    "Revoke an API key",
    parameters=[openapi.path_parameter("key_id",
                                       {"type": "string", "pattern": "^[0-9a-f]{1,32}$"})],
    ok=204, ok_description="Revoked",
    errors=(401, 403, 404),
))
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke an API key (at once)."""
    principal = require(request, "org:admin")
    request.app[ACCOUNTS].revoke_api_key(
        principal.org_id, request.match_info["key_id"], actor=_actor(principal)
    )
    return web.Response(status=204)


@api.get("/v1/operator/organisations", openapi.operation(
    "Organisations by status (operators)",
    parameters=[openapi.query_parameter("status", {"enum": list(ORG_STATUSES)})],
    ok_description="Organisations",
    ok_schema={"type": "object", "properties": {
        "organisations": {"type": "array", "items": _ORG_OUT}}},
    errors=(401, 403, 404),
))
async def operator_list(request: web.Request) -> web.Response:
    """Organisations, by status (operators)."""
    require_operator(request)
    status = request.query.get("status")
    if status is not None and status not in ORG_STATUSES:
        raise NotFound(f"no status {status!r}", code="no-such-status")
    orgs = request.app[ACCOUNTS].organisations(status)
    return web.json_response({"organisations": [o.to_json() for o in orgs]})


def _org_id(request: web.Request) -> int:
    try:
        return int(request.match_info["org_id"])
    except ValueError:
        raise NotFound("no such organisation", code="no-such-organisation") from None


@api.post("/v1/operator/organisations/{org_id}/verify", _optional_body(openapi.operation(
    "Verify a pending organisation: keys, membership proposal, active",
    parameters=[openapi.path_parameter("org_id", _ID)],
    body=DECISION_SCHEMA,
    ok_description="Verified",
    ok_schema={"type": "object", "properties": {
        "organisation": _ORG_OUT, "membershipProposal": {"type": "object"}}},
    errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
)))
async def verify(request: web.Request) -> web.Response:
    """Verify a pending organisation: keys, Consortium membership proposal, ``active``."""
    principal = require_operator(request)
    body = await read_json(request, DECISION_SCHEMA) if request.can_read_body else {}
    accounts = request.app[ACCOUNTS]
    org = accounts.organisation(_org_id(request))
    if org.status != "pending":
        raise Conflict(f"organisation {org.id} is {org.status}, not pending",
                       code="organisation-state")
    operator_org = accounts.organisation(principal.org_id)
    if operator_org.chain_org is None:
        raise Conflict("the operator organisation is not a member on chain yet, so it cannot "
                       "propose members", code="operator-not-on-chain")

    keystore = request.app[KEYSTORE]
    try:
        keys = keystore.get(org.id)
    except KeyError:
        keys = await asyncio.to_thread(keystore.create, org.id)
    accounts.set_account(org.id, keys.address)
    receipt = await _submit_membership(request.app, operator_org.id, org, keys.address,
                                       keys.x25519_public)
    org = accounts.decide(org.id, "active", actor_user=principal.user_id,
                          note=body.get("note", ""))
    return web.json_response({"organisation": org.to_json(), "membershipProposal": receipt})


async def _submit_membership(
    app: web.Application, operator_org: int, org: Organisation, account: str, x25519: bytes
) -> dict[str, Any]:
    """Queue the ADD_MEMBER proposal in the outbox as the operator's organisation."""
    outbox = app.get(OUTBOX)
    if outbox is None:
        raise Unavailable("the outbox is not running", code="outbox-unavailable")
    op = Operation(
        idempotency_key=f"accounts:add-member:{org.id}:{account.lower()}",
        kind="call",
        to=abi.address("Consortium"),
        data=membership_call(org.name, org.roles, account, x25519),
        summary=f"propose ADD_MEMBER {chain_name(org.name)}",
    )
    (receipt,) = await outbox.accept_async(operator_org, [op])
    return {
        "idempotencyKey": receipt.idempotency_key,
        "status": receipt.status,
        "duplicate": receipt.duplicate,
    }


@api.post("/v1/operator/organisations/{org_id}/reject", _optional_body(openapi.operation(
    "Reject a pending organisation",
    parameters=[openapi.path_parameter("org_id", _ID)],
    body=DECISION_SCHEMA,
    ok_description="Rejected",
    ok_schema={"type": "object", "properties": {"organisation": _ORG_OUT}},
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
)))
async def reject(request: web.Request) -> web.Response:
    """Reject a pending organisation."""
    principal = require_operator(request)
    body = await read_json(request, DECISION_SCHEMA) if request.can_read_body else {}
    org = request.app[ACCOUNTS].decide(
        _org_id(request), "rejected", actor_user=principal.user_id, note=body.get("note", "")
    )
    return web.json_response({"organisation": org.to_json()})


async def _accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[ACCOUNTS].close()


def setup(app: web.Application) -> None:
    """Open the accounts database and add the account routes and their documentation.

    The database is opened here (not at start-up) so a bootstrap script can create the operator
    and genesis organisations on ``app[ACCOUNTS]`` before serving; it is closed at clean-up.
    """
    app[ACCOUNTS] = Accounts.open(app[CONFIG])
    app.cleanup_ctx.append(_accounts_ctx)
    app.on_response_prepare.append(clear_stale_cookie)
    api.install(app)
