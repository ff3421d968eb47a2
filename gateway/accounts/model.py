"""The accounts model: organisations, users, sessions, API keys and the rules about them (pure).

Who may act, and for whom. Every caller of the gateway acts for one *organisation*:

* **Organisations** register themselves (company details and the roles they play in the port,
  named as in :data:`contracts.ROLES`), wait as ``pending`` until a platform operator checks the
  company and *verifies* (``active``) or *rejects* it; an active organisation may later be
  ``suspended``. Verification creates the organisation's keys in the keystore and submits, through
  the outbox and as the operator's organisation, a Consortium ``propose(ADD_MEMBER, ...)`` for its
  signing account, roles, name and X25519 key (:func:`membership_call`); once the consortium has
  executed the proposal the indexer sees the new member and
  :meth:`gateway.accounts.store.Accounts.link_chain_members` records its Consortium id
  (``chain_org``), matching by signing account.
* **Users** belong to one organisation with a role (``admin``, ``member``, ``driver``, see
  :data:`gateway.principal.ROLE_SCOPES`); passwords are kept as argon2id hashes only
  (:data:`HASHER`). Users of the operator organisation may carry the *operator* flag (they verify
  organisations).
* **Sessions** are what the web pages use: a random 32-byte token in an ``HttpOnly``,
  ``SameSite=Lax`` cookie (``Secure`` unless configured off for plain-HTTP loopback demos),
  stored only as its SHA-256, with an absolute lifetime and an idle timeout, and bound to a CSRF
  token that every unsafe request made with the cookie must echo (``X-CSRF-Token`` header or a
  ``csrf_token`` form field; :mod:`gateway.accounts.auth`).
* **API keys** are what enterprise systems use: ``plk_<key id>_<secret>``, sent as
  ``Authorization: Bearer``; only the SHA-256 of the (256-bit random) secret is stored; each key
  carries a subset of :data:`gateway.principal.SCOPES`, a label, and can be revoked at once.
* **External identities** (OpenID Connect, :mod:`gateway.accounts.oidc`) are linked to users by
  ``(issuer, subject)``.
* **Login throttling**: after ``config.login_attempts`` failures within
  ``config.login_lockout_seconds`` for one account (or ``ADDRESS_FACTOR`` times as many from one
  client address, which may be a whole office behind NAT) the login answers 429 with
  ``Retry-After`` until the window has moved on (:func:`retry_after`).
* An **audit trail** records every account action (who, what, on what, when).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contracts import ROLES, ProposalKind, abi, roles_mask
from gateway.errors import Unauthorized
from gateway.isotime import iso_or_none, iso_time

#: Prefix of API keys (``plk_<key id>_<secret>``).
API_KEY_PREFIX = "plk"
#: Roles of users inside an organisation.
USER_ROLES: tuple[str, ...] = ("admin", "member", "driver")
#: Organisation statuses.
ORG_STATUSES: tuple[str, ...] = ("pending", "active", "rejected", "suspended")
#: Roles an organisation may claim when it registers itself (``operator`` is never self-claimed).
REGISTRABLE_ROLES: tuple[str, ...] = tuple(r for r in ROLES if r != "operator")
#: Absolute lifetime of a session, seconds.
SESSION_LIFETIME = 12 * 3600
#: A session unused this long (seconds) expires.
SESSION_IDLE = 30 * 60
#: A login state of an OpenID Connect redirect is valid this long, seconds.
OIDC_STATE_LIFETIME = 600
#: A client address may fail this many times ``config.login_attempts`` before it is throttled.
ADDRESS_FACTOR = 10
#: Consortium proposal kind adding a member (``contracts/Consortium.vy``).
ADD_MEMBER = ProposalKind.ADD_MEMBER

#: argon2id, RFC 9106 "second recommended" (low-memory) profile: t=3, m=64 MiB, p=4.
HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash("portledger: equalises the time of an unknown e-mail's login")


def verify_password(stored: str | None, password: str) -> bool:
    """argon2id verification; an absent hash is checked against a dummy (same time)."""
    try:
        HASHER.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return stored is not None


@dataclass(frozen=True)
class Organisation:
    """A company using the gateway."""

    id: int
    """The gateway's id (also the keystore and outbox id)."""
    name: str
    """Registered name."""
    roles: tuple[str, ...]
    """Roles it plays in the port (names of :data:`contracts.ROLES`)."""
    status: str
    """``pending``, ``active``, ``rejected`` or ``suspended``."""
    chain_org: int | None
    """Its Consortium organisation id once it is a member on chain."""
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    """Company details: ``registrationNumber``, ``country``, ``address``, ``contactEmail``."""
    account: str | None = None
    """Checksum address of its signing account (known once its keys exist)."""
    operator: bool = False
    """The platform operator's own organisation."""

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id,
            "name": self.name,
            "roles": list(self.roles),
            "status": self.status,
            "chainOrg": self.chain_org,
            "details": self.details,
            "account": self.account,
            "operator": self.operator,
        }


@dataclass(frozen=True)
class User:
    """A person signing in for an organisation."""

    id: int
    """User id."""
    org_id: int
    """Their organisation."""
    email: str
    """E-mail address (lower-case; unique)."""
    role: str
    """``admin``, ``member`` or ``driver``."""
    disabled: bool
    """A disabled user cannot sign in; their sessions stop working."""
    operator: bool
    """A platform operator (only in the operator organisation)."""
    has_password: bool
    """False for users who sign in only through an external identity."""

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id,
            "orgId": self.org_id,
            "email": self.email,
            "role": self.role,
            "disabled": self.disabled,
            "operator": self.operator,
            "hasPassword": self.has_password,
        }


@dataclass(frozen=True)
class ApiKey:
    """An enterprise system's credential (its secret is never stored)."""

    id: str
    """Key id (the middle part of ``plk_<id>_<secret>``)."""
    org_id: int
    """Organisation it acts for."""
    label: str
    """What the owner called it."""
    scopes: tuple[str, ...]
    """What it may do."""
    created: float
    """Unix time of creation."""
    last_used: float | None
    """Unix time of its last use (to the minute), or None."""
    revoked: float | None
    """Unix time of revocation, or None while in force."""

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id,
            "label": self.label,
            "scopes": list(self.scopes),
            "created": iso_time(self.created),
            "lastUsed": iso_or_none(self.last_used),
            "revoked": iso_or_none(self.revoked),
        }


@dataclass(frozen=True)
class Session:
    """A signed-in browser."""

    token: str
    """The cookie value (returned once; only its hash is stored)."""
    csrf: str
    """The CSRF token unsafe requests must echo."""
    user: User
    """Who signed in."""
    expires: float
    """Unix time of its absolute expiry."""


@dataclass(frozen=True)
class OidcLogin:
    """A pending OpenID Connect login (between the redirect and the callback)."""

    provider: str
    """Configured provider name."""
    nonce: str
    """Nonce the ID token must carry."""
    verifier: str
    """PKCE code verifier."""
    return_to: str
    """Local path to go to after signing in."""


def normalise_email(email: str) -> str:
    """The stored form of an e-mail address (trimmed, lower-case)."""
    return email.strip().lower()


#: ``plk_<key id: 1-32 lower-case hex digits>_<secret: 20 characters or more>``.
_API_KEY = re.compile(API_KEY_PREFIX + r"_([0-9a-f]{1,32})_(.{20,})", re.DOTALL)


def parse_api_key(text: str) -> tuple[str, str]:
    """Split ``plk_<key id>_<secret>`` into key id and secret.

    Raises
    ------
    Unauthorized
        Not an API key of this gateway's format.
    """
    match = _API_KEY.fullmatch(text)
    if match is None:
        raise Unauthorized("malformed API key (expected plk_<id>_<secret>)", code="invalid-api-key")
    return match[1], match[2]


def chain_name(name: str) -> str:
    """``name`` cut to the Consortium's ``String[64]`` (64 UTF-8 bytes, whole characters)."""
    out = name.encode("utf-8")[:64]
    return out.decode("utf-8", errors="ignore")


def membership_call(name: str, roles: Iterable[str], account: str, x25519_public: bytes) -> bytes:
    """Calldata of the Consortium proposal adding an organisation as a member."""
    return abi.call_data(
        "Consortium",
        "propose",
        ADD_MEMBER,
        0,
        account,
        roles_mask(list(roles)),
        chain_name(name),
        x25519_public,
    )


def retry_after(failures: list[float], limit: int, window: float, now: float) -> float | None:
    """Seconds until a throttled login may be tried again, or None if it is not throttled.

    Parameters
    ----------
    failures : list of float
        Times of the failures within the window, increasing.
    limit : int
        Failures allowed within the window.
    window : float
        Window length in seconds.
    now : float
        Current time.
    """
    if len(failures) < limit:
        return None
    # Throttled until enough failures leave the window that fewer than `limit` remain.
    return max(0.0, failures[len(failures) - limit] + window - now)
