"""Accounts: organisations, users, sessions, API keys, external identities and throttling.

Who may act, and for whom. Every caller of the gateway acts for one *organisation*:

* **Organisations** register themselves (company details and the roles they play in the port,
  named as in :data:`contracts.ROLES`), wait as ``pending`` until a platform operator checks the
  company and *verifies* (``active``) or *rejects* it; an active organisation may later be
  ``suspended``. Verification creates the organisation's keys in the keystore and submits, through
  the outbox and as the operator's organisation, a Consortium ``propose(ADD_MEMBER, ...)`` for its
  signing account, roles, name and X25519 key; once the consortium has executed the proposal the
  indexer sees the new member and :meth:`Accounts.link_chain_members` records its Consortium id
  (``chain_org``) here, matching by signing account.
* **Users** belong to one organisation with a role (``admin``, ``member``, ``driver``, see
  :data:`gateway.principal.ROLE_SCOPES`); passwords are kept as argon2id hashes only. Users of the
  operator organisation may carry the *operator* flag (they verify organisations).
* **Sessions** are what the web pages use: a random 32-byte token in an ``HttpOnly``,
  ``SameSite=Lax`` cookie (``Secure`` unless configured off for plain-HTTP loopback demos),
  stored only as its SHA-256, with an absolute lifetime and an idle timeout, and bound to a CSRF
  token that every unsafe request made with the cookie must echo (``X-CSRF-Token`` header or a
  ``csrf_token`` form field).
* **API keys** are what enterprise systems use: ``plk_<key id>_<secret>``, sent as
  ``Authorization: Bearer``; only the SHA-256 of the (256-bit random) secret is stored; each key
  carries a subset of :data:`gateway.principal.SCOPES`, a label, and can be revoked at once.
* **External identities** (OpenID Connect, :mod:`gateway.oidc`) are linked to users by
  ``(issuer, subject)``.
* **Login throttling**: after ``config.login_attempts`` failures within
  ``config.login_lockout_seconds`` for one account (or ``ADDRESS_FACTOR`` times as many from one
  client address, which may be a whole office behind NAT) the login answers 429 with
  ``Retry-After`` until the window has moved on.
* An **audit trail** records every account action (who, what, on what, when).

All of it is one SQLite database, ``<data_dir>/accounts.db`` (WAL). :func:`auth_middleware` turns
the request's credential into a :class:`gateway.principal.Principal`; a presented API key that is
unknown, malformed or revoked is answered 401 rather than treated as anonymous.

**Verified API keys are cached** per process, because an enterprise system sends the same key
with every request and the database lookup was 5–8 % of a tracking request's CPU. The cache maps
a key id to the stored hash of its secret and the principal it stands for; it holds only keys
that were verified, in force and of an active organisation when read, at most
:data:`KEY_CACHE_SIZE` of them (least recently used dropped first), each for at most
:data:`KEY_CACHE_MAX_AGE` seconds. A hit still hashes the presented secret and compares it with
the stored hash in constant time, exactly as a miss does; failures are never cached. Revocation
stays immediate across the processes of ``serve --workers N``: triggers in the database bump a
*credential generation* in the same transaction as any change to a key's hash, scopes,
organisation or revocation, or to an organisation's status, roles, chain id or operator flag;
after the commit it is published in ``accounts.db-generation``
(:class:`gateway.beacon.GenerationBeacon`, the read model's mechanism), and every lookup first
compares that shared number with the one its cache was filled at, dropping the whole cache when
they differ. A key revoked through one process therefore fails in every process at its next
request. Session cookies are not cached (the pages' traffic is small; see ``BENCHMARKS.md``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import re
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import Morsel
from typing import Any, NamedTuple

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contracts import ROLES, abi, roles_mask
from gateway import openapi, sqlite
from gateway.appkeys import ACCOUNTS, CONFIG, KEYSTORE, OUTBOX
from gateway.beacon import GenerationBeacon
from gateway.config import GatewayConfig
from gateway.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, Unavailable
from gateway.jsonbody import read_json
from gateway.principal import PRINCIPAL, ROLE_SCOPES, SCOPES, Principal, require, require_operator

#: Name of the session cookie.
COOKIE = "portledger_session"
#: Header carrying the CSRF token of cookie-authenticated unsafe requests.
CSRF_HEADER = "X-CSRF-Token"
#: Form field carrying the CSRF token (HTML forms that cannot set headers).
CSRF_FIELD = "csrf_token"
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
ADD_MEMBER = 1
#: Last-used / last-seen stamps are written at most this often (seconds) per credential.
TOUCH_INTERVAL = 60.0
#: Verified API keys each process keeps in memory (the least recently used is dropped first).
KEY_CACHE_SIZE = 4096
#: A cached API key is read from the database again after this many seconds, whatever the
#: credential generation says (bounds the effect of a change the beacon missed).
KEY_CACHE_MAX_AGE = 10.0

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Unsafe routes that do not act under the session they may carry (signing in, registering).
_CSRF_EXEMPT = frozenset({("POST", "/v1/session"), ("POST", "/v1/organisations/register")})
_CLEAR_COOKIE = web.RequestKey("portledger.clear_session_cookie", bool)
#: The CSRF token of the request's session (pages embed it).
SESSION_CSRF = web.RequestKey("portledger.session_csrf", str)

#: argon2id, RFC 9106 "second recommended" (low-memory) profile: t=3, m=64 MiB, p=4.
HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash("portledger: equalises the time of an unknown e-mail's login")


def _verify_password(stored: str | None, password: str) -> bool:
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
            "created": _iso(self.created),
            "lastUsed": _iso(self.last_used),
            "revoked": _iso(self.revoked),
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


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


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


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS organisations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        roles TEXT NOT NULL,
        details TEXT NOT NULL,
        status TEXT NOT NULL,
        chain_org INTEGER UNIQUE,
        account TEXT,
        operator INTEGER NOT NULL DEFAULT 0,
        registration TEXT UNIQUE,
        created REAL NOT NULL,
        decided_at REAL,
        decided_by INTEGER,
        decision_note TEXT)""",
    """CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organisations(id),
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        operator INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_login REAL)""",
    "CREATE INDEX IF NOT EXISTS users_org ON users(org_id)",
    """CREATE TABLE IF NOT EXISTS sessions (
        token_hash BLOB PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        via TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        last_seen REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id)",
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organisations(id),
        secret_hash BLOB NOT NULL,
        scopes TEXT NOT NULL,
        label TEXT NOT NULL,
        created REAL NOT NULL,
        created_by INTEGER,
        last_used REAL,
        revoked REAL)""",
    "CREATE INDEX IF NOT EXISTS api_keys_org ON api_keys(org_id)",
    """CREATE TABLE IF NOT EXISTS oidc_identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        PRIMARY KEY (issuer, subject))""",
    """CREATE TABLE IF NOT EXISTS oidc_logins (
        state_hash BLOB PRIMARY KEY,
        provider TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        return_to TEXT NOT NULL,
        expires REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS login_failures (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS login_failures_subject ON login_failures(kind, subject, at)",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        org_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_org ON audit(org_id, at)",
    # The credential generation: bumped, in the writing transaction, by every change that can
    # make a cached API key's answer wrong (see the module docstring).
    """CREATE TABLE IF NOT EXISTS credential_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO credential_generation (id, value) VALUES (1, 0)",
    """CREATE TRIGGER IF NOT EXISTS api_key_changed
        AFTER UPDATE OF org_id, secret_hash, scopes, revoked ON api_keys
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS api_key_deleted AFTER DELETE ON api_keys
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS organisation_changed
        AFTER UPDATE OF status, roles, chain_org, operator ON organisations
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS organisation_deleted AFTER DELETE ON organisations
        BEGIN UPDATE credential_generation SET value = value + 1 WHERE id = 1; END""",
]


class _CachedKey(NamedTuple):
    """A verified API key in a process's cache."""

    secret_hash: bytes
    """SHA-256 of the key's secret, as stored (every hit compares the presented one with it)."""
    principal: Principal
    """Who the key acts for, as read with the key."""
    loaded: float
    """Time (the accounts clock) it was read from the database."""


class Accounts:
    """The accounts database (see the module docstring).

    Parameters
    ----------
    path
        The SQLite file (created if missing).
    login_attempts
        Failed logins per account within ``lockout_seconds`` before logins are throttled.
    lockout_seconds
        The throttling window.
    clock
        Source of the current Unix time (tests move it).
    key_cache_size
        Verified API keys kept in memory (0: every request reads the database).
    """

    def __init__(
        self,
        path: str,
        *,
        login_attempts: int = 5,
        lockout_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        key_cache_size: int = KEY_CACHE_SIZE,
    ) -> None:
        if key_cache_size < 0:
            raise ValueError(f"key_cache_size must be 0 or more, not {key_cache_size}")
        self.path = path
        self.login_attempts = login_attempts
        self.lockout_seconds = lockout_seconds
        self.clock = clock
        self._db = sqlite.connect(path, foreign_keys=True)
        self._db.row_factory = sqlite3.Row
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._touched: dict[str, float] = {}
        self._beacon = GenerationBeacon(path + "-generation", self._credential_generation,
                                        clock=clock)
        self._key_cache_size = key_cache_size
        self._keys: OrderedDict[str, _CachedKey] = OrderedDict()
        self._keys_generation = self._beacon.current()

    @classmethod
    def open(cls, config: GatewayConfig) -> Accounts:
        """The accounts database of a gateway (``<data_dir>/accounts.db``)."""
        return cls(
            str(config.path("accounts.db")),
            login_attempts=config.login_attempts,
            lockout_seconds=config.login_lockout_seconds,
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
        self._beacon.close()

    # -- transactions ---------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._publish_credentials)

    def _credential_generation(self) -> int:
        """The credential generation as stored (bumped by the schema's triggers)."""
        row = self._db.execute("SELECT value FROM credential_generation WHERE id = 1").fetchone()
        return int(row[0])

    def _publish_credentials(self) -> None:
        """After a commit: publish the credential generation if the transaction bumped it."""
        self._beacon.publish(self._credential_generation())

    def audit(
        self, action: str, *, org_id: int | None, actor: str, target: str = "", **details: Any
    ) -> None:
        """Append to the audit trail."""
        self._db.execute(
            "INSERT INTO audit (at, org_id, actor, action, target, details) VALUES (?,?,?,?,?,?)",
            (self.clock(), org_id, actor, action, target, json.dumps(details, sort_keys=True)),
        )

    def audit_trail(self, org_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit entries (of one organisation, or all)."""
        if org_id is None:
            rows = self._db.execute(
                "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE org_id = ? ORDER BY id DESC LIMIT ?", (org_id, limit)
            ).fetchall()
        return [
            {
                "at": _iso(r["at"]),
                "orgId": r["org_id"],
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "details": json.loads(r["details"]),
            }
            for r in rows
        ]

    # -- organisations --------------------------------------------------------------------
    @staticmethod
    def _organisation(row: sqlite3.Row) -> Organisation:
        return Organisation(
            id=row["id"],
            name=row["name"],
            roles=tuple(json.loads(row["roles"])),
            status=row["status"],
            chain_org=row["chain_org"],
            details=json.loads(row["details"]),
            account=row["account"],
            operator=bool(row["operator"]),
        )

    def organisation(self, org_id: int) -> Organisation:
        """One organisation.

        Raises
        ------
        NotFound
            No such organisation.
        """
        row = self._db.execute("SELECT * FROM organisations WHERE id = ?", (org_id,)).fetchone()
        if row is None:
            raise NotFound(f"no organisation {org_id}", code="no-such-organisation")
        return self._organisation(row)

    def by_chain_org(self, chain_org: int) -> Organisation | None:
        """The organisation with Consortium id ``chain_org``, or None."""
        row = self._db.execute(
            "SELECT * FROM organisations WHERE chain_org = ?", (chain_org,)
        ).fetchone()
        return None if row is None else self._organisation(row)

    def organisations(self, status: str | None = None) -> list[Organisation]:
        """All organisations (of one status), oldest first."""
        if status is None:
            rows = self._db.execute("SELECT * FROM organisations ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM organisations WHERE status = ? ORDER BY id", (status,)
            ).fetchall()
        return [self._organisation(r) for r in rows]

    def create_organisation(
        self,
        name: str,
        roles: Iterable[str],
        details: dict[str, Any] | None = None,
        status: str = "pending",
        *,
        chain_org: int | None = None,
        account: str | None = None,
        operator: bool = False,
        actor: str = "system",
    ) -> Organisation:
        """Add an organisation.

        Parameters
        ----------
        name : str
            Its name.
        roles : iterable of str
            Role names of :data:`contracts.ROLES`.
        details : dict, optional
            Company details (``registrationNumber``, ``country``, ``address``,
            ``contactEmail``); the pair (country, registration number) is unique.
        status : str
            Initial status; ``active`` for the devnet's genesis members.
        chain_org : int, optional
            Its Consortium id when it is already a member (genesis).
        account : str, optional
            Its signing account's address.
        operator : bool
            The platform operator's organisation.
        actor : str
            Who does this (audit trail).

        Raises
        ------
        ValueError
            Unknown role or status.
        Conflict
            The registration number or the chain organisation is taken.
        """
        roles = tuple(roles)
        roles_mask(list(roles))  # ValueError for an unknown role
        if status not in ORG_STATUSES:
            raise ValueError(f"unknown organisation status {status!r}")
        details = dict(details or {})
        registration = None
        if details.get("registrationNumber"):
            registration = (
                f"{str(details.get('country', '')).upper()}:"
                f"{str(details['registrationNumber']).strip().upper()}"
            )
        try:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO organisations (name, roles, details, status, chain_org, account,"
                    " operator, registration, created) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        json.dumps(list(roles)),
                        json.dumps(details, sort_keys=True),
                        status,
                        chain_org,
                        account,
                        int(operator),
                        registration,
                        self.clock(),
                    ),
                )
                org_id = int(cur.lastrowid or 0)
                self.audit(
                    "organisation.create",
                    org_id=org_id,
                    actor=actor,
                    target=f"organisation:{org_id}",
                    name=name,
                    status=status,
                )
        except sqlite3.IntegrityError as exc:
            if "registration" in str(exc):
                raise Conflict(
                    "an organisation with this registration number is already registered",
                    code="organisation-exists",
                ) from None
            raise Conflict(f"chain organisation {chain_org} is already linked") from None
        return self.organisation(org_id)

    def set_chain_org(self, org_id: int, chain_org: int) -> Organisation:
        """Record an organisation's Consortium id (it became a member on chain)."""
        with self._tx():
            done = self._db.execute(
                "UPDATE organisations SET chain_org = ? WHERE id = ?", (chain_org, org_id)
            ).rowcount
            if not done:
                raise NotFound(f"no organisation {org_id}", code="no-such-organisation")
            self.audit(
                "organisation.chain-linked",
                org_id=org_id,
                actor="indexer",
                target=f"organisation:{org_id}",
                chain_org=chain_org,
            )
        return self.organisation(org_id)

    def set_account(self, org_id: int, account: str) -> None:
        """Record an organisation's signing account (its keys were created or imported)."""
        self._db.execute("UPDATE organisations SET account = ? WHERE id = ?", (account, org_id))

    def link_chain_members(self, members: Iterable[tuple[int, Iterable[str]]]) -> list[Organisation]:
        """Give Consortium ids to organisations whose signing account became a member.

        Parameters
        ----------
        members : iterable of (int, iterable of str)
            Chain members as the indexer's read model knows them: (Consortium organisation id,
            its signing account addresses).

        Returns
        -------
        list of Organisation
            The organisations newly linked.
        """
        waiting = {
            row["account"].lower(): row["id"]
            for row in self._db.execute(
                "SELECT id, account FROM organisations"
                " WHERE chain_org IS NULL AND account IS NOT NULL"
            )
        }
        linked = []
        for chain_org, accounts in members:
            for account in accounts:
                org_id = waiting.pop(str(account).lower(), None)
                if org_id is not None and self.by_chain_org(chain_org) is None:
                    linked.append(self.set_chain_org(org_id, chain_org))
                    break
        return linked

    def decide(
        self, org_id: int, status: str, *, actor_user: int | None, note: str = ""
    ) -> Organisation:
        """Move a pending organisation to ``active`` or ``rejected`` (or suspend an active one).

        Raises
        ------
        Conflict
            The organisation is not in a state that allows this move.
        """
        allowed = {"active": ("pending", "suspended"), "rejected": ("pending",),
                   "suspended": ("active",)}
        if status not in allowed:
            raise ValueError(f"cannot decide {status!r}")
        with self._tx():
            org = self.organisation(org_id)
            if org.status not in allowed[status]:
                raise Conflict(
                    f"organisation {org_id} is {org.status}; it cannot become {status}",
                    code="organisation-state",
                )
            self._db.execute(
                "UPDATE organisations SET status = ?, decided_at = ?, decided_by = ?,"
                " decision_note = ? WHERE id = ?",
                (status, self.clock(), actor_user, note, org_id),
            )
            self.audit(
                f"organisation.{status}",
                org_id=org_id,
                actor=f"user:{actor_user}",
                target=f"organisation:{org_id}",
                note=note,
            )
        return self.organisation(org_id)

    def operator_organisation(self) -> Organisation | None:
        """The platform operator's organisation, or None before bootstrap."""
        row = self._db.execute(
            "SELECT * FROM organisations WHERE operator = 1 ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else self._organisation(row)

    def bootstrap_operator(
        self,
        email: str,
        password: str,
        *,
        name: str = "PortLedger operator",
        chain_org: int | None = None,
        account: str | None = None,
    ) -> Organisation:
        """Create the operator organisation and its first operator admin, unless one exists.

        Returns
        -------
        Organisation
            The operator organisation (the existing one if there was one; nothing changes then).
        """
        existing = self.operator_organisation()
        if existing is not None:
            return existing
        org = self.create_organisation(
            name,
            ("operator",),
            {},
            status="active",
            chain_org=chain_org,
            account=account,
            operator=True,
            actor="bootstrap",
        )
        self.create_user(org.id, email, password, "admin", operator=True, actor="bootstrap")
        return org

    # -- users ----------------------------------------------------------------------------
    @staticmethod
    def _user(row: sqlite3.Row) -> User:
        return User(
            id=row["id"],
            org_id=row["org_id"],
            email=row["email"],
            role=row["role"],
            disabled=bool(row["disabled"]),
            operator=bool(row["operator"]),
            has_password=row["password_hash"] is not None,
        )

    def user(self, user_id: int) -> User:
        """One user (NotFound if none)."""
        row = self._db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise NotFound(f"no user {user_id}", code="no-such-user")
        return self._user(row)

    def user_by_email(self, email: str) -> User | None:
        """The user with this e-mail address, or None."""
        row = self._db.execute(
            "SELECT * FROM users WHERE email = ?", (normalise_email(email),)
        ).fetchone()
        return None if row is None else self._user(row)

    def users(self, org_id: int) -> list[User]:
        """An organisation's users."""
        rows = self._db.execute("SELECT * FROM users WHERE org_id = ? ORDER BY id", (org_id,))
        return [self._user(r) for r in rows]

    def create_user(
        self,
        org_id: int,
        email: str,
        password: str | None,
        role: str,
        *,
        operator: bool = False,
        actor: str = "system",
        password_hash: str | None = None,
    ) -> User:
        """Add a user (the password is hashed with argon2id here; slow by design).

        Raises
        ------
        ValueError
            Unknown role, or an operator outside the operator organisation.
        Conflict
            The e-mail address is taken.
        """
        if role not in USER_ROLES:
            raise ValueError(f"unknown user role {role!r}")
        org = self.organisation(org_id)
        if operator and not org.operator:
            raise ValueError("only users of the operator organisation can be operators")
        if password_hash is None and password is not None:
            password_hash = HASHER.hash(password)
        try:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO users (org_id, email, password_hash, role, operator, created)"
                    " VALUES (?,?,?,?,?,?)",
                    (org_id, normalise_email(email), password_hash, role, int(operator),
                     self.clock()),
                )
                user_id = int(cur.lastrowid or 0)
                self.audit(
                    "user.create",
                    org_id=org_id,
                    actor=actor,
                    target=f"user:{user_id}",
                    email=normalise_email(email),
                    role=role,
                )
        except sqlite3.IntegrityError:
            raise Conflict("a user with this e-mail address exists", code="email-taken") from None
        return self.user(user_id)

    def update_user(
        self,
        org_id: int,
        user_id: int,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
        actor: str,
    ) -> User:
        """Change a user's role, disabled flag or password (sessions end on disable/password).

        Raises
        ------
        NotFound
            No such user in the organisation.
        Conflict
            The change would leave the organisation without an enabled admin.
        """
        with self._tx():
            user = self.user(user_id)
            if user.org_id != org_id:
                raise NotFound(f"no user {user_id}", code="no-such-user")
            new_role = role if role is not None else user.role
            new_disabled = disabled if disabled is not None else user.disabled
            if user.role == "admin" and (new_role != "admin" or new_disabled):
                self._keep_an_admin(org_id, user_id)
            self._db.execute(
                "UPDATE users SET role = ?, disabled = ? WHERE id = ?",
                (new_role, int(new_disabled), user_id),
            )
            if password_hash is not None:
                self._db.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
                )
            if new_disabled or password_hash is not None:
                self._db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            self.audit(
                "user.update",
                org_id=org_id,
                actor=actor,
                target=f"user:{user_id}",
                role=new_role,
                disabled=new_disabled,
                password_changed=password_hash is not None,
            )
        return self.user(user_id)

    def delete_user(self, org_id: int, user_id: int, *, actor: str) -> None:
        """Remove a user, their sessions and linked identities."""
        with self._tx():
            user = self.user(user_id)
            if user.org_id != org_id:
                raise NotFound(f"no user {user_id}", code="no-such-user")
            if user.role == "admin" and not user.disabled:
                self._keep_an_admin(org_id, user_id)
            self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            self.audit("user.delete", org_id=org_id, actor=actor, target=f"user:{user_id}",
                       email=user.email)

    def _keep_an_admin(self, org_id: int, user_id: int) -> None:
        others = self._db.execute(
            "SELECT COUNT(*) FROM users WHERE org_id = ? AND role = 'admin' AND disabled = 0"
            " AND id != ?",
            (org_id, user_id),
        ).fetchone()[0]
        if not others:
            raise Conflict("an organisation keeps at least one enabled admin", code="last-admin")

    # -- passwords and throttling -----------------------------------------------------------
    def throttled(self, email: str, address: str) -> float | None:
        """Seconds until a login for ``email`` from ``address`` may be tried, or None."""
        now = self.clock()
        since = now - self.lockout_seconds
        waits = []
        for kind, subject, limit in (
            ("account", normalise_email(email), self.login_attempts),
            ("address", address, self.login_attempts * ADDRESS_FACTOR),
        ):
            times = [
                r[0]
                for r in self._db.execute(
                    "SELECT at FROM login_failures WHERE kind = ? AND subject = ? AND at > ?"
                    " ORDER BY at",
                    (kind, subject, since),
                )
            ]
            wait = retry_after(times, limit, self.lockout_seconds, now)
            if wait is not None:
                waits.append(wait)
        return max(waits) if waits else None

    def record_failure(self, email: str, address: str) -> None:
        """Count a failed login against the account and the address."""
        now = self.clock()
        with self._tx():
            self._db.execute(
                "INSERT INTO login_failures (kind, subject, at) VALUES ('account', ?, ?),"
                " ('address', ?, ?)",
                (normalise_email(email), now, address, now),
            )
            self._db.execute(
                "DELETE FROM login_failures WHERE at < ?", (now - self.lockout_seconds,)
            )

    def check_password(self, email: str, password: str) -> User | None:
        """The user if ``password`` is theirs (slow: argon2id; see :meth:`check_password_async`).

        Unknown e-mails cost the same time as known ones. A hash made with weaker parameters
        than :data:`HASHER`'s is replaced on success.
        """
        row = self._password_row(email)
        stored = row["password_hash"] if row is not None else None
        if not _verify_password(stored, password):
            return None
        return self._after_verified(row, password, HASHER.hash(password)
                                    if stored and HASHER.check_needs_rehash(stored) else None)

    async def check_password_async(self, email: str, password: str) -> User | None:
        """:meth:`check_password` with the hashing in a worker thread (the database stays on
        the event loop's thread)."""
        row = self._password_row(email)
        stored = row["password_hash"] if row is not None else None
        if not await asyncio.to_thread(_verify_password, stored, password):
            return None
        rehashed = None
        if stored and HASHER.check_needs_rehash(stored):
            rehashed = await asyncio.to_thread(HASHER.hash, password)
        return self._after_verified(row, password, rehashed)

    def _password_row(self, email: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM users WHERE email = ?", (normalise_email(email),)
        ).fetchone()
        return row

    def _after_verified(
        self, row: sqlite3.Row | None, password: str, rehashed: str | None
    ) -> User | None:
        if row is None or row["password_hash"] is None:
            return None
        if rehashed is not None:
            self._db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (rehashed, row["id"])
            )
        return self._user(row)

    async def login(self, email: str, password: str, address: str) -> Session:
        """Sign in with a password.

        Raises
        ------
        TooManyRequests
            Too many recent failures for the account or the address (``Retry-After``).
        Unauthorized
            Wrong e-mail or password (the same answer for both).
        Forbidden
            The user is disabled or the organisation is not active.
        """
        wait = self.throttled(email, address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many failed sign-ins; try again in {seconds} s",
                code="login-throttled",
                headers={"Retry-After": str(seconds)},
            )
        user = await self.check_password_async(email, password)
        if user is None:
            self.record_failure(email, address)
            self.audit("session.failed", org_id=None, actor=f"address:{address}",
                       target=f"email:{normalise_email(email)}")
            raise Unauthorized("wrong e-mail address or password", code="bad-credentials")
        return self.start_session(user, via="session")

    def start_session(self, user: User, *, via: str) -> Session:
        """Open a session for a user who proved who they are (password or external identity).

        Raises
        ------
        Forbidden
            The user is disabled or their organisation is not active.
        """
        org = self.organisation(user.org_id)
        if user.disabled:
            raise Forbidden("this user is disabled", code="user-disabled")
        if org.status != "active":
            raise Forbidden(
                f"your organisation is {org.status}"
                + (" (waiting for verification by the operator)" if org.status == "pending"
                   else ""),
                code=f"organisation-{org.status}",
            )
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        session_id = secrets.token_hex(8)
        with self._tx():
            self._db.execute(
                "INSERT INTO sessions (token_hash, id, user_id, csrf, via, created, expires,"
                " last_seen) VALUES (?,?,?,?,?,?,?,?)",
                (_sha256(token), session_id, user.id, csrf, via, now, now + SESSION_LIFETIME,
                 now),
            )
            self._db.execute("UPDATE users SET last_login = ? WHERE id = ?", (now, user.id))
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self.audit("session.start", org_id=user.org_id, actor=f"user:{user.id}",
                       target=f"session:{session_id}", via=via)
        return Session(token, csrf, user, now + SESSION_LIFETIME)

    def end_session(self, token: str) -> None:
        """Sign out (forget the session)."""
        self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_sha256(token),))

    def authenticate_session(self, token: str) -> tuple[Principal, str] | None:
        """The principal and CSRF token of a session cookie, or None if it is not in force."""
        row = self._db.execute(
            "SELECT s.id AS sid, s.csrf, s.via, s.expires, s.last_seen, u.id AS uid, u.role,"
            " u.disabled, u.operator AS uop, o.id AS oid, o.status, o.chain_org,"
            " o.operator AS oop FROM sessions s JOIN users u ON u.id = s.user_id"
            " JOIN organisations o ON o.id = u.org_id WHERE s.token_hash = ?",
            (_sha256(token),),
        ).fetchone()
        now = self.clock()
        if (
            row is None
            or row["expires"] <= now
            or now - row["last_seen"] > SESSION_IDLE
            or row["disabled"]
            or row["status"] != "active"
        ):
            return None
        credential = f"session:{row['sid']}"
        if now - row["last_seen"] > TOUCH_INTERVAL:
            self._db.execute(
                "UPDATE sessions SET last_seen = ? WHERE id = ?", (now, row["sid"])
            )
        principal = Principal(
            org_id=row["oid"],
            chain_org=row["chain_org"],
            user_id=row["uid"],
            role=row["role"],
            scopes=ROLE_SCOPES[row["role"]],
            via=row["via"],
            operator=bool(row["uop"] and row["oop"]),
            credential_id=credential,
        )
        return principal, row["csrf"]

    # -- API keys -------------------------------------------------------------------------
    def create_api_key(
        self,
        org_id: int,
        scopes: Iterable[str],
        label: str,
        *,
        actor: str = "system",
        created_by: int | None = None,
    ) -> tuple[str, str]:
        """Issue an API key.

        Returns
        -------
        (str, str)
            The key id and the whole key ``plk_<id>_<secret>`` (shown once, never stored).

        Raises
        ------
        ValueError
            A scope outside :data:`gateway.principal.SCOPES`.
        """
        scopes = tuple(sorted(set(scopes)))
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        self.organisation(org_id)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self._tx():
            self._db.execute(
                "INSERT INTO api_keys (id, org_id, secret_hash, scopes, label, created,"
                " created_by) VALUES (?,?,?,?,?,?,?)",
                (key_id, org_id, _sha256(secret), json.dumps(scopes), label, self.clock(),
                 created_by),
            )
            self.audit("api-key.create", org_id=org_id, actor=actor, target=f"api-key:{key_id}",
                       label=label, scopes=list(scopes))
        return key_id, f"{API_KEY_PREFIX}_{key_id}_{secret}"

    @staticmethod
    def _api_key(row: sqlite3.Row) -> ApiKey:
        return ApiKey(
            id=row["id"],
            org_id=row["org_id"],
            label=row["label"],
            scopes=tuple(json.loads(row["scopes"])),
            created=row["created"],
            last_used=row["last_used"],
            revoked=row["revoked"],
        )

    def api_keys(self, org_id: int) -> list[ApiKey]:
        """An organisation's API keys (revoked ones too), newest first."""
        rows = self._db.execute(
            "SELECT * FROM api_keys WHERE org_id = ? ORDER BY created DESC, id", (org_id,)
        )
        return [self._api_key(r) for r in rows]

    def revoke_api_key(self, org_id: int, key_id: str, *, actor: str) -> ApiKey:
        """Revoke a key of ``org_id`` (at once, for every later request).

        Raises
        ------
        NotFound
            No such key in the organisation.
        """
        with self._tx():
            row = self._db.execute(
                "SELECT * FROM api_keys WHERE id = ? AND org_id = ?", (key_id, org_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}", code="no-such-api-key")
            if row["revoked"] is None:
                self._db.execute(
                    "UPDATE api_keys SET revoked = ? WHERE id = ?", (self.clock(), key_id)
                )
                self.audit("api-key.revoke", org_id=org_id, actor=actor,
                           target=f"api-key:{key_id}")
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return self._api_key(row)

    def authenticate_api_key(self, key: str) -> Principal:
        """The principal of a presented API key (cached; see the module docstring).

        Raises
        ------
        Unauthorized
            Malformed, unknown or revoked key.
        Forbidden
            The key's organisation is not active.
        """
        key_id, secret = parse_api_key(key)
        presented = _sha256(secret)
        now = self.clock()
        generation = self._beacon.current()  # before any read, so a later change is seen
        if generation != self._keys_generation:
            self._keys.clear()
            self._keys_generation = generation
        cached = self._keys.get(key_id)
        if cached is not None and 0.0 <= now - cached.loaded < KEY_CACHE_MAX_AGE:
            if not hmac.compare_digest(cached.secret_hash, presented):
                raise Unauthorized("unknown API key", code="invalid-api-key")
            self._keys.move_to_end(key_id)
            self._touch_api_key(key_id, now)
            return cached.principal
        row = self._db.execute(
            "SELECT k.secret_hash, k.scopes, k.revoked, o.id AS oid, o.status, o.chain_org"
            " FROM api_keys k JOIN organisations o ON o.id = k.org_id WHERE k.id = ?",
            (key_id,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row["secret_hash"], presented):
            raise Unauthorized("unknown API key", code="invalid-api-key")
        if row["revoked"] is not None:
            raise Unauthorized("this API key has been revoked", code="api-key-revoked")
        if row["status"] != "active":
            raise Forbidden(f"the key's organisation is {row['status']}",
                            code=f"organisation-{row['status']}")
        self._touch_api_key(key_id, now)
        principal = Principal(
            org_id=row["oid"],
            chain_org=row["chain_org"],
            user_id=None,
            role="system",
            scopes=frozenset(json.loads(row["scopes"])),
            via="api_key",
            credential_id=f"api-key:{key_id}",
        )
        if self._key_cache_size:
            self._keys[key_id] = _CachedKey(bytes(row["secret_hash"]), principal, now)
            self._keys.move_to_end(key_id)
            while len(self._keys) > self._key_cache_size:
                self._keys.popitem(last=False)
        return principal

    def _touch_api_key(self, key_id: str, now: float) -> None:
        """Record a key's use (to the minute: at most one write per key and process a minute)."""
        if now - self._touched.get(key_id, 0.0) > TOUCH_INTERVAL:
            self._touched[key_id] = now
            self._db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id))

    def principal_for_org(self, org_id: int, scopes: Iterable[str]) -> Principal:
        """A principal acting for an organisation in background work (subscriptions)."""
        org = self.organisation(org_id)
        return Principal(
            org_id=org.id,
            chain_org=org.chain_org,
            user_id=None,
            role="system",
            scopes=frozenset(scopes),
            via="internal",
            credential_id=f"org:{org.id}",
        )

    # -- external identities --------------------------------------------------------------
    def begin_oidc_login(self, provider: str, return_to: str) -> tuple[str, OidcLogin]:
        """Remember a new OpenID Connect login; returns its ``state`` and its secrets."""
        state = secrets.token_urlsafe(32)
        login = OidcLogin(provider, secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                          return_to)
        now = self.clock()
        with self._tx():
            self._db.execute("DELETE FROM oidc_logins WHERE expires < ?", (now,))
            self._db.execute(
                "INSERT INTO oidc_logins (state_hash, provider, nonce, verifier, return_to,"
                " expires) VALUES (?,?,?,?,?,?)",
                (_sha256(state), provider, login.nonce, login.verifier, return_to,
                 now + OIDC_STATE_LIFETIME),
            )
        return state, login

    def take_oidc_login(self, state: str, provider: str) -> OidcLogin | None:
        """The pending login of ``state`` (used once: it is deleted), or None."""
        with self._tx():
            row = self._db.execute(
                "SELECT * FROM oidc_logins WHERE state_hash = ?", (_sha256(state),)
            ).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM oidc_logins WHERE state_hash = ?", (_sha256(state),))
        if row["provider"] != provider or row["expires"] < self.clock():
            return None
        return OidcLogin(row["provider"], row["nonce"], row["verifier"], row["return_to"])

    def user_for_identity(
        self, issuer: str, subject: str, email: str | None, email_verified: bool
    ) -> User:
        """The user an external identity signs in as, linking it on first use.

        A known ``(issuer, subject)`` is its linked user. Otherwise a *verified* e-mail address
        equal to an existing user's, in an active organisation, links the identity to that user.

        Raises
        ------
        Forbidden
            No linked user and no verified e-mail of a user of an active organisation.
        """
        row = self._db.execute(
            "SELECT user_id FROM oidc_identities WHERE issuer = ? AND subject = ?",
            (issuer, subject),
        ).fetchone()
        if row is not None:
            return self.user(row["user_id"])
        if not email or not email_verified:
            raise Forbidden(
                "this identity is not linked to a PortLedger user and carries no verified"
                " e-mail address to link it by; ask your organisation's admin to add you",
                code="identity-not-linked",
            )
        user = self.user_by_email(email)
        if user is None or self.organisation(user.org_id).status != "active":
            raise Forbidden(
                f"no user of an active organisation has the e-mail address {email}; ask your"
                " organisation's admin to add you first",
                code="identity-not-linked",
            )
        with self._tx():
            self._db.execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created) VALUES (?,?,?,?)",
                (issuer, subject, user.id, self.clock()),
            )
            self.audit("identity.link", org_id=user.org_id, actor=f"user:{user.id}",
                       target=f"user:{user.id}", issuer=issuer, subject=subject)
        return user


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an exception); nests as a no-op.

    ``committed`` runs after the outermost commit (the accounts publish their credential
    generation there).
    """

    def __init__(self, db: sqlite3.Connection, committed: Callable[[], None]) -> None:
        self._db = db
        self._committed = committed
        self._outer = False

    def __enter__(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if not self._outer:
            return
        if kind is None:
            self._db.execute("COMMIT")
            self._committed()
        else:
            self._db.execute("ROLLBACK")




# -- authentication ---------------------------------------------------------------------------
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


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    # Headers are final here (cookies already rendered), so the deletion is a raw header.
    if request.get(_CLEAR_COOKIE) and not any(
        v.startswith(COOKIE + "=") for v in response.headers.getall("Set-Cookie", ())
    ):
        morsel: Morsel[str] = Morsel()
        morsel.set(COOKIE, "", '""')
        morsel.update({"path": "/", "max-age": "0", "expires": "Thu, 01 Jan 1970 00:00:00 GMT"})
        response.headers.add("Set-Cookie", morsel.OutputString())


def set_session_cookie(response: web.StreamResponse, config: GatewayConfig, session: Session) -> None:
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


def _check_origin(request: web.Request) -> None:
    """Refuse a browser request sent from another site (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return
    if origin != f"{request.scheme}://{request.host}":
        public = request.app[CONFIG].public_url.rstrip("/")
        if not public or origin != public:
            raise Forbidden("cross-site request refused", code="cross-origin")


def _actor(p: Principal) -> str:
    return f"user:{p.user_id}" if p.user_id is not None else p.credential_id


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
routes = web.RouteTableDef()


@routes.post("/v1/organisations/register")
async def register(request: web.Request) -> web.Response:
    """An organisation registers itself with its first admin (status ``pending``)."""
    _check_origin(request)
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


@routes.post("/v1/session")
async def login(request: web.Request) -> web.Response:
    """Sign in with e-mail and password: sets the session cookie, returns the CSRF token."""
    _check_origin(request)
    body = await read_json(request, LOGIN_SCHEMA)
    accounts = request.app[ACCOUNTS]
    session = await accounts.login(body["email"], body["password"], request.remote or "unknown")
    org = accounts.organisation(session.user.org_id)
    response = web.json_response(
        {
            "csrfToken": session.csrf,
            "expires": _iso(session.expires),
            "user": session.user.to_json(),
            "organisation": org.to_json(),
        }
    )
    set_session_cookie(response, request.app[CONFIG], session)
    return response


@routes.delete("/v1/session")
async def logout(request: web.Request) -> web.Response:
    """Sign out (the CSRF token is required, like for every unsafe session request)."""
    principal = require(request)
    token = request.cookies.get(COOKIE)
    if principal.via in ("session", "oidc") and token:
        request.app[ACCOUNTS].end_session(token)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/v1/me")
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


@routes.get("/v1/users")
async def list_users(request: web.Request) -> web.Response:
    """The caller's organisation's users (org admins)."""
    principal = require(request, "org:admin")
    users = request.app[ACCOUNTS].users(principal.org_id)
    return web.json_response({"users": [u.to_json() for u in users]})


@routes.post("/v1/users")
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


@routes.patch(r"/v1/users/{user_id}")
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


@routes.delete(r"/v1/users/{user_id}")
async def delete_user(request: web.Request) -> web.Response:
    """Remove a user (org admins)."""
    principal = require(request, "org:admin")
    request.app[ACCOUNTS].delete_user(principal.org_id, _user_id(request), actor=_actor(principal))
    return web.Response(status=204)


@routes.get("/v1/api-keys")
async def list_keys(request: web.Request) -> web.Response:
    """The caller's organisation's API keys (never their secrets)."""
    principal = require(request, "org:admin")
    keys = request.app[ACCOUNTS].api_keys(principal.org_id)
    return web.json_response({"apiKeys": [k.to_json() for k in keys]})


@routes.post("/v1/api-keys")
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


@routes.delete(r"/v1/api-keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke an API key (at once)."""
    principal = require(request, "org:admin")
    request.app[ACCOUNTS].revoke_api_key(
        principal.org_id, request.match_info["key_id"], actor=_actor(principal)
    )
    return web.Response(status=204)


@routes.get("/v1/operator/organisations")
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


@routes.post(r"/v1/operator/organisations/{org_id}/verify")
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
    try:
        from gateway.writepath.outbox import Operation
    except ImportError:
        raise Unavailable("the outbox is not available", code="outbox-unavailable") from None
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


@routes.post(r"/v1/operator/organisations/{org_id}/reject")
async def reject(request: web.Request) -> web.Response:
    """Reject a pending organisation."""
    principal = require_operator(request)
    body = await read_json(request, DECISION_SCHEMA) if request.can_read_body else {}
    org = request.app[ACCOUNTS].decide(
        _org_id(request), "rejected", actor_user=principal.user_id, note=body.get("note", "")
    )
    return web.json_response({"organisation": org.to_json()})


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    if schema is None:
        return {str(status): {"description": description}}
    return {str(status): {"description": description,
                          "content": {"application/json": {"schema": schema}}}}


_ID_PARAM = {"in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_TAG = "Accounts"

PATHS: dict[str, Any] = {
    "/v1/organisations/register": {
        "post": {
            "tags": [_TAG],
            "summary": "Register an organisation and its first admin (pending verification)",
            "security": [],
            "requestBody": _json(REGISTER_SCHEMA),
            "responses": {
                **_ok("Registered, pending", {"type": "object", "properties": {
                    "organisation": _ORG_OUT, "user": _USER_OUT}}, 201),
                **openapi.error_responses(400, 403, 409, 413, 415, 422),
            },
        }
    },
    "/v1/session": {
        "post": {
            "tags": [_TAG],
            "summary": "Sign in (sets the session cookie; returns the CSRF token)",
            "security": [],
            "requestBody": _json(LOGIN_SCHEMA),
            "responses": {
                **_ok("Signed in", {"type": "object", "properties": {
                    "csrfToken": {"type": "string"}, "expires": {"type": "string"},
                    "user": _USER_OUT, "organisation": _ORG_OUT}}),
                **openapi.error_responses(400, 401, 403, 413, 415, 422, 429),
            },
        },
        "delete": {
            "tags": [_TAG],
            "summary": "Sign out (needs X-CSRF-Token)",
            "responses": {**_ok("Signed out", status=204),
                          **openapi.error_responses(401, 403)},
        },
    },
    "/v1/me": {
        "get": {
            "tags": [_TAG],
            "summary": "Who am I",
            "responses": {
                **_ok("The caller", {"type": "object", "properties": {
                    "organisation": _ORG_OUT, "user": {"oneOf": [_USER_OUT, {"type": "null"}]},
                    "role": {"type": "string"}, "scopes": {"type": "array"},
                    "operator": {"type": "boolean"}, "via": {"type": "string"}}}),
                **openapi.error_responses(401),
            },
        }
    },
    "/v1/users": {
        "get": {
            "tags": [_TAG],
            "summary": "List my organisation's users (org:admin)",
            "responses": {**_ok("Users", {"type": "object", "properties": {
                "users": {"type": "array", "items": _USER_OUT}}}),
                **openapi.error_responses(401, 403)},
        },
        "post": {
            "tags": [_TAG],
            "summary": "Add a user (org:admin)",
            "requestBody": _json(NEW_USER_SCHEMA),
            "responses": {**_ok("Added", _USER_OUT, 201),
                          **openapi.error_responses(400, 401, 403, 409, 413, 415, 422)},
        },
    },
    "/v1/users/{user_id}": {
        "parameters": [{"name": "user_id", **_ID_PARAM}],
        "patch": {
            "tags": [_TAG],
            "summary": "Change a user's role, disabled flag or password (org:admin)",
            "requestBody": _json(USER_PATCH_SCHEMA),
            "responses": {**_ok("Changed", _USER_OUT),
                          **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422)},
        },
        "delete": {
            "tags": [_TAG],
            "summary": "Remove a user (org:admin)",
            "responses": {**_ok("Removed", status=204),
                          **openapi.error_responses(401, 403, 404, 409)},
        },
    },
    "/v1/api-keys": {
        "get": {
            "tags": [_TAG],
            "summary": "List my organisation's API keys (org:admin)",
            "responses": {**_ok("Keys", {"type": "object", "properties": {
                "apiKeys": {"type": "array", "items": _KEY_OUT}}}),
                **openapi.error_responses(401, 403)},
        },
        "post": {
            "tags": [_TAG],
            "summary": "Create an API key (the secret is shown once)",
            "requestBody": _json(NEW_KEY_SCHEMA),
            "responses": {**_ok("Created", _KEY_OUT, 201),
                          **openapi.error_responses(400, 401, 403, 413, 415, 422)},
        },
    },
    "/v1/api-keys/{key_id}": {
        "parameters": [{"name": "key_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"}}],
        "delete": {
            "tags": [_TAG],
            "summary": "Revoke an API key",
            "responses": {**_ok("Revoked", status=204), **openapi.error_responses(401, 403, 404)},
        },
    },
    "/v1/operator/organisations": {
        "get": {
            "tags": [_TAG],
            "summary": "Organisations by status (operators)",
            "parameters": [{"name": "status", "in": "query", "required": False,
                            "schema": {"enum": list(ORG_STATUSES)}}],
            "responses": {**_ok("Organisations", {"type": "object", "properties": {
                "organisations": {"type": "array", "items": _ORG_OUT}}}),
                **openapi.error_responses(401, 403, 404)},
        }
    },
    "/v1/operator/organisations/{org_id}/verify": {
        "parameters": [{"name": "org_id", **_ID_PARAM}],
        "post": {
            "tags": [_TAG],
            "summary": "Verify a pending organisation: keys, membership proposal, active",
            "requestBody": {**_json(DECISION_SCHEMA), "required": False},
            "responses": {**_ok("Verified", {"type": "object", "properties": {
                "organisation": _ORG_OUT, "membershipProposal": {"type": "object"}}}),
                **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503)},
        },
    },
    "/v1/operator/organisations/{org_id}/reject": {
        "parameters": [{"name": "org_id", **_ID_PARAM}],
        "post": {
            "tags": [_TAG],
            "summary": "Reject a pending organisation",
            "requestBody": {**_json(DECISION_SCHEMA), "required": False},
            "responses": {**_ok("Rejected", {"type": "object", "properties": {
                "organisation": _ORG_OUT}}),
                **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422)},
        },
    },
}


async def _accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[ACCOUNTS].close()


def setup(app: web.Application) -> None:
    """Open the accounts database, add the account routes, OpenID Connect and the docs.

    The database is opened here (not at start-up) so a bootstrap script can create the operator
    and genesis organisations on ``app[ACCOUNTS]`` before serving; it is closed at clean-up.
    """
    from gateway.accounts import oidc

    app[ACCOUNTS] = Accounts.open(app[CONFIG])
    app.cleanup_ctx.append(_accounts_ctx)
    app.on_response_prepare.append(_on_prepare)
    app.router.add_routes(routes)
    openapi.add(app, PATHS, tags=[{"name": _TAG, "description": "Organisations, users, "
                                   "sessions and API keys"}])
    oidc.setup(app)
