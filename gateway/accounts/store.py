"""The accounts store: :class:`Accounts`, the one object the gateway holds for who may act.

It builds on the database (:mod:`gateway.accounts.database`: schema, transactions, credential
generation, audit trail) and its organisations (:mod:`gateway.accounts.organisations`), and adds
users, passwords and login throttling, sessions, API keys (checked against the per-process
cache of :mod:`gateway.accounts.keycache`) and the external identities of OpenID Connect logins
(:mod:`gateway.accounts.oidc` runs the flow and calls these methods). The model and its rules are
:mod:`gateway.accounts.model`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable

from gateway.accounts.keycache import KEY_CACHE_SIZE, VerifiedKeys
from gateway.accounts.model import (
    ADDRESS_FACTOR,
    API_KEY_PREFIX,
    HASHER,
    OIDC_STATE_LIFETIME,
    SESSION_IDLE,
    SESSION_LIFETIME,
    USER_ROLES,
    ApiKey,
    OidcLogin,
    Organisation,
    Session,
    User,
    normalise_email,
    parse_api_key,
    retry_after,
    verify_password,
)
from gateway.accounts.organisations import Organisations
from gateway.config import GatewayConfig
from gateway.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from gateway.principal import ROLE_SCOPES, SCOPES, Principal

#: Last-used / last-seen stamps are written at most this often (seconds) per credential.
TOUCH_INTERVAL = 60.0


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class Accounts(Organisations):
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
        super().__init__(path, clock=clock)
        self.login_attempts = login_attempts
        self.lockout_seconds = lockout_seconds
        self._touched: dict[str, float] = {}
        self._keys = VerifiedKeys(self._beacon.current, key_cache_size)

    @classmethod
    def open(cls, config: GatewayConfig) -> Accounts:
        """The accounts database of a gateway (``<data_dir>/accounts.db``)."""
        return cls(
            str(config.path("accounts.db")),
            login_attempts=config.login_attempts,
            lockout_seconds=config.login_lockout_seconds,
        )

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
        if not verify_password(stored, password):
            return None
        return self._after_verified(row, password, HASHER.hash(password)
                                    if stored and HASHER.check_needs_rehash(stored) else None)

    async def check_password_async(self, email: str, password: str) -> User | None:
        """:meth:`check_password` with the hashing in a worker thread (the database stays on
        the event loop's thread)."""
        row = self._password_row(email)
        stored = row["password_hash"] if row is not None else None
        if not await asyncio.to_thread(verify_password, stored, password):
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
        """The principal of a presented API key (cached: :mod:`gateway.accounts.keycache`).

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
        cached = self._keys.lookup(key_id, presented, now)  # before any read of the database
        if cached is not None:
            self._touch_api_key(key_id, now)
            return cached
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
        self._keys.remember(key_id, bytes(row["secret_hash"]), principal, now)
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
