"""Accounts through the real gateway app: registration → verification → sessions → keys."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode

from contracts import abi, roles_mask
from gateway.accounts.auth import COOKIE
from gateway.accounts.keycache import KEY_CACHE_MAX_AGE
from gateway.accounts.model import (
    ADDRESS_FACTOR,
    SESSION_IDLE,
    chain_name,
    membership_call,
    parse_api_key,
    retry_after,
)
from gateway.accounts.store import Accounts
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, KEYSTORE, OUTBOX
from gateway.config import GatewayConfig
from gateway.errors import Forbidden, Unauthorized
from tests.support.accounts import (
    ADMIN_PASSWORD,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    company,
    login,
    register,
)

OPERATOR_CHAIN_ORG = 1


@pytest.fixture
async def client(aiohttp_client: Any, gateway_config: GatewayConfig) -> Any:
    app = create_app(gateway_config)
    app[ACCOUNTS].bootstrap_operator(OPERATOR_EMAIL, OPERATOR_PASSWORD,
                                     chain_org=OPERATOR_CHAIN_ORG)
    return await aiohttp_client(app)


async def _active_org(client: Any, email: str = "admin@harbour.example", **fields: Any) -> dict:
    """Register and verify an organisation; returns the registration answer."""
    registered = await register(client, email, **fields)
    csrf = await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    org_id = registered["organisation"]["id"]
    resp = await client.post(f"/v1/operator/organisations/{org_id}/verify",
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    return registered


async def test_registration_verification_and_membership_proposal(client: Any) -> None:
    registered = await register(client)
    org = registered["organisation"]
    assert org["status"] == "pending" and org["chainOrg"] is None
    assert registered["user"]["role"] == "admin"

    # A pending organisation's admin cannot sign in yet, and says why.
    resp = await client.post("/v1/session", json={"email": "admin@harbour.example",
                                                  "password": ADMIN_PASSWORD})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "organisation-pending"

    # Operators only.
    resp = await client.post(f"/v1/operator/organisations/{org['id']}/verify")
    assert resp.status == 401
    csrf = await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    resp = await client.get("/v1/operator/organisations", params={"status": "pending"})
    assert [o["id"] for o in (await resp.json())["organisations"]] == [org["id"]]
    resp = await client.post(f"/v1/operator/organisations/{org['id']}/verify",
                             headers={"X-CSRF-Token": csrf}, json={"note": "checked CR"})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["organisation"]["status"] == "active"
    assert answer["membershipProposal"]["status"] == "accepted"

    app = client.server.app
    keys = app[KEYSTORE].get(org["id"])
    assert answer["organisation"]["account"] == keys.address
    # The ADD_MEMBER proposal waits in the outbox as the operator's organisation.
    operator_org = app[ACCOUNTS].operator_organisation()
    receipt = app[OUTBOX].status(operator_org.id, answer["membershipProposal"]["idempotencyKey"])
    assert receipt is not None and not receipt.duplicate
    expected = membership_call("Harbour Freight Ltd", ["forwarder"], keys.address,
                               keys.x25519_public)
    args = decode(["uint8", "uint256", "address", "uint256", "string", "bytes32"], expected[4:])
    assert args[0] == 1 and args[2].lower() == keys.address.lower()
    assert args[3] == roles_mask(["forwarder"]) and args[5] == keys.x25519_public
    assert expected[:4] == abi.call_data("Consortium", "propose", 1, 0, keys.address, 0, "",
                                         bytes(32))[:4]

    # Verifying twice is refused; the admin can now sign in.
    resp = await client.post(f"/v1/operator/organisations/{org['id']}/verify",
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 409
    await login(client, "admin@harbour.example")
    me = await (await client.get("/v1/me")).json()
    assert me["organisation"]["status"] == "active" and me["role"] == "admin"
    assert not me["operator"] and me["via"] == "session"
    trail = [e["action"] for e in app[ACCOUNTS].audit_trail(org["id"])]
    assert "organisation.active" in trail and "organisation.create" in trail


async def test_operator_only_routes_refuse_org_admins(client: Any) -> None:
    registered = await _active_org(client)
    await register(client, "boss@other.example", name="Other Ltd", number="HK-7")
    csrf = await login(client, "admin@harbour.example")
    resp = await client.get("/v1/operator/organisations")
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "operator-only"
    other = registered["organisation"]["id"] + 1
    resp = await client.post(f"/v1/operator/organisations/{other}/verify",
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 403


async def test_reject(client: Any) -> None:
    registered = await register(client)
    csrf = await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    org_id = registered["organisation"]["id"]
    resp = await client.post(f"/v1/operator/organisations/{org_id}/reject",
                             headers={"X-CSRF-Token": csrf}, json={"note": "no such company"})
    assert resp.status == 200
    assert (await resp.json())["organisation"]["status"] == "rejected"
    resp = await client.post(f"/v1/operator/organisations/{org_id}/verify",
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 409
    client.session.cookie_jar.clear()
    resp = await client.post("/v1/session", json={"email": "admin@harbour.example",
                                                  "password": ADMIN_PASSWORD})
    assert (await resp.json())["error"]["code"] == "organisation-rejected"


async def test_registration_is_validated(client: Any) -> None:
    body = {"organisation": company(), "admin": {"email": "a@b.example",
                                                  "password": ADMIN_PASSWORD}}
    for broken in (
        {**body, "extra": 1},
        {**body, "organisation": {**company(), "roles": ["operator"]}},
        {**body, "organisation": {**company(), "country": "hk"}},
        {**body, "admin": {"email": "a@b.example", "password": "short"}},
        {**body, "organisation": {**company(), "registrationNumber": "<script>"}},
    ):
        resp = await client.post("/v1/organisations/register", json=broken)
        assert resp.status == 422, broken
        assert (await resp.json())["error"]["code"] == "schema-violation"
    resp = await client.post("/v1/organisations/register", data="not json",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    await register(client, "a@b.example")
    resp = await client.post("/v1/organisations/register", json={**body, "admin": {
        "email": "c@d.example", "password": ADMIN_PASSWORD}})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "organisation-exists"
    resp = await client.post("/v1/organisations/register", json={
        "organisation": company(number="HK-2"), "admin": body["admin"]})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "email-taken"


async def test_session_cookie_csrf_and_logout(client: Any) -> None:
    await _active_org(client)
    client.session.cookie_jar.clear()
    resp = await client.post("/v1/session", json={"email": "ADMIN@harbour.example",
                                                  "password": ADMIN_PASSWORD})
    assert resp.status == 200
    csrf = (await resp.json())["csrfToken"]
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # the test configuration turns Secure off for plain HTTP

    # Unsafe requests with the cookie need the CSRF token.
    new_key = {"label": "tms", "scopes": ["tracking:read"]}
    resp = await client.post("/v1/api-keys", json=new_key)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf"
    resp = await client.post("/v1/api-keys", json=new_key, headers={"X-CSRF-Token": "x" + csrf})
    assert resp.status == 403
    resp = await client.post("/v1/api-keys", json=new_key, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
    # Safe methods do not.
    assert (await client.get("/v1/api-keys")).status == 200

    # Only the token's hash is stored.
    db = sqlite3.connect(client.server.app[ACCOUNTS].path)
    stored = db.execute("SELECT token_hash FROM sessions").fetchall()
    assert stored and all(cookie.value.encode() not in bytes(r[0]) for r in stored)
    assert not db.execute("SELECT 1 FROM sessions WHERE token_hash = ?",
                          (cookie.value,)).fetchall()

    resp = await client.delete("/v1/session")
    assert resp.status == 403
    resp = await client.delete("/v1/session", headers={"X-CSRF-Token": csrf})
    assert resp.status == 204
    # The old cookie no longer works, even if replayed.
    client.session.cookie_jar.update_cookies({COOKIE: cookie.value})
    resp = await client.get("/v1/me")
    assert resp.status == 401


async def test_secure_cookie_and_cross_site_login(aiohttp_client: Any, tmp_path: Any) -> None:
    config = GatewayConfig(data_dir=tmp_path / "g", keystore_passphrase="p", cookie_secure=True)
    app = create_app(config)
    app[ACCOUNTS].bootstrap_operator(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    client = await aiohttp_client(app)
    creds = {"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
    resp = await client.post("/v1/session", json=creds)
    assert resp.status == 200
    assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    resp = await client.post("/v1/session", json=creds,
                             headers={"Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "cross-origin"


async def test_idle_and_expired_sessions(client: Any) -> None:
    accounts: Accounts = client.server.app[ACCOUNTS]
    now = [1_700_000_000.0]
    accounts.clock = lambda: now[0]
    await login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    assert (await client.get("/v1/me")).status == 200
    now[0] += SESSION_IDLE - 5
    assert (await client.get("/v1/me")).status == 200
    now[0] += SESSION_IDLE + 1
    resp = await client.get("/v1/me")
    assert resp.status == 401
    assert COOKIE in resp.cookies and resp.cookies[COOKIE].value == ""  # deleted


async def test_api_keys_scopes_revocation_and_storage(client: Any) -> None:
    await _active_org(client)
    csrf = await login(client, "admin@harbour.example")
    resp = await client.post("/v1/api-keys", headers={"X-CSRF-Token": csrf},
                             json={"label": "terminal system", "scopes": ["tracking:read"]})
    assert resp.status == 201
    created = await resp.json()
    key = created["key"]
    key_id, secret = parse_api_key(key)
    assert created["id"] == key_id and created["scopes"] == ["tracking:read"]
    resp = await client.post("/v1/api-keys", headers={"X-CSRF-Token": csrf},
                             json={"label": "admin key", "scopes": ["org:admin", "events:read"]})
    admin_key = (await resp.json())["key"]
    listed = await (await client.get("/v1/api-keys")).json()
    assert {k["id"] for k in listed["apiKeys"]} >= {key_id}
    assert all("key" not in k for k in listed["apiKeys"])
    client.session.cookie_jar.clear()

    bearer = {"Authorization": f"Bearer {key}"}
    me = await (await client.get("/v1/me", headers=bearer)).json()
    assert me["via"] == "api_key" and me["scopes"] == ["tracking:read"] and me["user"] is None
    resp = await client.get("/v1/api-keys", headers=bearer)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "missing-scope"
    # API keys need no CSRF token.
    resp = await client.post("/v1/api-keys", headers={"Authorization": f"Bearer {admin_key}"},
                             json={"label": "made by a key", "scopes": ["events:read"]})
    assert resp.status == 201
    # A key cannot hand out scopes it lacks.
    resp = await client.post("/v1/api-keys", headers={"Authorization": f"Bearer {admin_key}"},
                             json={"label": "escalate", "scopes": ["events:write"]})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "scope-escalation"

    # Bad credentials are 401, never anonymous.
    for bad in (f"Bearer {key[:-1]}x", "Bearer plk_0000000000000000_" + "a" * 43,
                "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer "):
        resp = await client.get("/healthz", headers={"Authorization": bad})
        assert resp.status == 401, bad
        assert (await resp.json())["error"]["code"] == "invalid-api-key"

    # Only the secret's hash is stored.
    db_files = Path(client.server.app[ACCOUNTS].path).parent.glob("accounts.db*")
    raw = b"".join(p.read_bytes() for p in db_files)
    assert secret.encode() not in raw

    resp = await client.delete(f"/v1/api-keys/{key_id}",
                               headers={"Authorization": f"Bearer {admin_key}"})
    assert resp.status == 204
    resp = await client.get("/v1/me", headers=bearer)
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "api-key-revoked"
    listed = await (await client.get("/v1/api-keys",
                                      headers={"Authorization": f"Bearer {admin_key}"})).json()
    assert next(k for k in listed["apiKeys"] if k["id"] == key_id)["revoked"] is not None


async def test_suspending_an_organisation_stops_its_keys(client: Any) -> None:
    registered = await _active_org(client)
    accounts: Accounts = client.server.app[ACCOUNTS]
    org_id = registered["organisation"]["id"]
    _, key = accounts.create_api_key(org_id, ["tracking:read"], "k")
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})).status == 200
    accounts.decide(org_id, "suspended", actor_user=None)
    resp = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 403


async def test_login_throttling_per_account(client: Any) -> None:
    accounts: Accounts = client.server.app[ACCOUNTS]
    now = [1_700_000_000.0]
    accounts.clock = lambda: now[0]
    limit = accounts.login_attempts
    wrong = {"email": OPERATOR_EMAIL, "password": "wrong password!!"}
    for _ in range(limit):
        resp = await client.post("/v1/session", json=wrong)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "bad-credentials"
        now[0] += 1
    resp = await client.post("/v1/session",
                             json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD})
    assert resp.status == 429
    retry = int(resp.headers["Retry-After"])
    lockout = accounts.lockout_seconds
    assert lockout - limit <= retry <= lockout
    # Another account from the same address is not locked by this account's failures.
    resp = await client.post("/v1/session", json={"email": "x@y.example", "password": "nope"})
    assert resp.status == 401
    now[0] += retry + 1
    resp = await client.post("/v1/session",
                             json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD})
    assert resp.status == 200


async def test_login_throttling_per_address(aiohttp_client: Any, gateway_config: Any) -> None:
    app = create_app(replace(gateway_config, login_attempts=1))
    client = await aiohttp_client(app)
    accounts: Accounts = app[ACCOUNTS]
    # Different accounts, one address: ADDRESS_FACTOR × login_attempts failures throttle it.
    for i in range(ADDRESS_FACTOR):
        resp = await client.post("/v1/session", json={"email": f"u{i}@x.example",
                                                      "password": "wrong"})
        assert resp.status == 401
    resp = await client.post("/v1/session", json={"email": "fresh@x.example",
                                                  "password": "wrong"})
    assert resp.status == 429 and "Retry-After" in resp.headers
    assert accounts.throttled("fresh@x.example", "10.9.9.9") is None  # another address is free


def test_retry_after() -> None:
    assert retry_after([], 3, 100, 50) is None
    assert retry_after([1, 2], 3, 100, 50) is None
    assert retry_after([1, 2, 3], 3, 100, 50) == 51
    # Four failures, limit 3: the second-oldest must leave the window.
    assert retry_after([1, 2, 3, 4], 3, 100, 50) == 52


async def test_users_roles_and_last_admin(client: Any) -> None:
    await _active_org(client)
    csrf = await login(client, "admin@harbour.example")
    h = {"X-CSRF-Token": csrf}
    resp = await client.post("/v1/users", headers=h, json={
        "email": "driver@harbour.example", "role": "driver", "password": "driver password 12"})
    assert resp.status == 201
    driver = await resp.json()
    resp = await client.post("/v1/users", headers=h, json={
        "email": "driver@harbour.example", "role": "member"})
    assert resp.status == 409
    resp = await client.post("/v1/users", headers=h, json={"email": "m@h.example",
                                                           "role": "owner"})
    assert resp.status == 422
    users = (await (await client.get("/v1/users")).json())["users"]
    admin = next(u for u in users if u["role"] == "admin")
    # The last admin can be neither demoted, disabled nor removed.
    for change in ({"role": "member"}, {"disabled": True}):
        resp = await client.patch(f"/v1/users/{admin['id']}", headers=h, json=change)
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "last-admin"
    assert (await client.delete(f"/v1/users/{admin['id']}", headers=h)).status == 409

    # A driver has the driver's scopes and cannot manage users.
    csrf_driver = await login(client, "driver@harbour.example", "driver password 12")
    me = await (await client.get("/v1/me")).json()
    assert me["scopes"] == []  # a driver reads only their own jobs (the land leg)
    assert (await client.get("/v1/users")).status == 403
    # Disabling the driver ends their session.
    csrf = await login(client, "admin@harbour.example")
    resp = await client.patch(f"/v1/users/{driver['id']}", headers={"X-CSRF-Token": csrf},
                              json={"disabled": True})
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    client.session.cookie_jar.clear()
    resp = await client.post("/v1/session", json={"email": "driver@harbour.example",
                                                  "password": "driver password 12"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "user-disabled"
    del csrf_driver
    # Other organisations' users are invisible.
    await _active_org(client, "boss@other.example", name="Other Ltd", number="HK-99")
    csrf_other = await login(client, "boss@other.example")
    resp = await client.patch(f"/v1/users/{driver['id']}",
                              headers={"X-CSRF-Token": csrf_other}, json={"role": "member"})
    assert resp.status == 404


async def test_openapi_documents_the_account_operations(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    for path, method in (
        ("/v1/organisations/register", "post"),
        ("/v1/session", "post"),
        ("/v1/session", "delete"),
        ("/v1/me", "get"),
        ("/v1/users", "post"),
        ("/v1/users/{user_id}", "patch"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys/{key_id}", "delete"),
        ("/v1/operator/organisations/{org_id}/verify", "post"),
        ("/v1/oidc/{provider}/login", "get"),
    ):
        assert method in doc["paths"][path], (path, method)
    schema = doc["paths"]["/v1/organisations/register"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema["additionalProperties"] is False


def test_accounts_api_for_bootstrap_and_indexer(tmp_path: Any) -> None:
    accounts = Accounts(str(tmp_path / "accounts.db"))
    op = accounts.bootstrap_operator("ops@x.example", OPERATOR_PASSWORD, chain_org=1)
    assert accounts.bootstrap_operator("other@x.example", "whatever password") == op
    assert accounts.user_by_email("other@x.example") is None
    carrier = accounts.create_organisation("Pacific Ocean Line (demo)", ["carrier"], {},
                                           status="active", chain_org=4)
    assert accounts.by_chain_org(4) == carrier
    waiting = accounts.create_organisation("New Terminal", ["terminal"], {},
                                           account="0x00000000000000000000000000000000000000AB")
    linked = accounts.link_chain_members([
        (4, ["0x1111111111111111111111111111111111111111"]),
        (14, ["0x2222222222222222222222222222222222222222",
              "0x00000000000000000000000000000000000000ab"]),
    ])
    assert [o.id for o in linked] == [waiting.id] and linked[0].chain_org == 14
    assert accounts.link_chain_members([(14, ["0x00000000000000000000000000000000000000ab"])]) == []
    principal = accounts.principal_for_org(carrier.id, ["events:read"])
    assert principal.chain_org == 4 and principal.scopes == {"events:read"}
    with pytest.raises(ValueError):
        accounts.create_organisation("Bad", ["pirate"], {})
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key("plk_zz_" + "a" * 40)
    assert chain_name("港" * 30).encode() == ("港" * 21).encode()
    accounts.close()


async def test_weak_password_hashes_are_upgraded_on_login(tmp_path: Any) -> None:
    from argon2 import PasswordHasher

    accounts = Accounts(str(tmp_path / "accounts.db"))
    org = accounts.create_organisation("X", [], {}, status="active")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("a long password")
    user = accounts.create_user(org.id, "x@y.example", None, "member", password_hash=weak)
    assert await accounts.check_password_async("x@y.example", "wrong password") is None
    assert await accounts.check_password_async("x@y.example", "a long password") == user
    stored = accounts._db.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored != weak and stored.startswith("$argon2id$") and "m=65536" in stored
    assert accounts.check_password("x@y.example", "a long password") == user
    assert accounts.check_password("nobody@y.example", "a long password") is None
    accounts.close()


# -- the verified-key cache ---------------------------------------------------------------------
class _Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _key_reads(accounts: Accounts) -> list[str]:
    """The API-key lookups ``accounts`` sends to its database from now on."""
    seen: list[str] = []
    accounts._db.set_trace_callback(
        lambda sql: seen.append(sql) if "FROM api_keys k" in sql else None)
    return seen


def _org_with_key(accounts: Accounts, name: str = "Harbour Freight") -> tuple[int, str, str]:
    org = accounts.create_organisation(name, ["forwarder"], {}, status="active", chain_org=7)
    key_id, key = accounts.create_api_key(org.id, ["events:read"], "tms")
    return org.id, key_id, key


def test_cached_key_is_served_from_memory_and_still_checks_the_secret(tmp_path: Any) -> None:
    accounts = Accounts(str(tmp_path / "accounts.db"))
    _, key_id, key = _org_with_key(accounts)
    reads = _key_reads(accounts)
    first = accounts.authenticate_api_key(key)
    assert first.chain_org == 7 and first.scopes == {"events:read"}
    assert first.credential_id == f"api-key:{key_id}" and len(reads) == 1
    for _ in range(5):
        assert accounts.authenticate_api_key(key) is first
    assert len(reads) == 1  # hits read no database

    # A wrong secret for a cached key id is refused (hashed and compared like on a miss), and
    # neither it nor an unknown key leaves anything in the cache.
    wrong = key[: -4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    for bad in (wrong, f"plk_{'0' * 16}_{'x' * 43}"):
        with pytest.raises(Unauthorized) as refused:
            accounts.authenticate_api_key(bad)
        assert refused.value.code == "invalid-api-key"
    assert accounts.authenticate_api_key(key) is first
    other = Accounts(str(tmp_path / "accounts.db"))
    other_reads = _key_reads(other)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            other.authenticate_api_key(wrong)
    assert len(other_reads) == 2  # failures are read again every time, never cached
    assert other.authenticate_api_key(key) == first and len(other_reads) == 3
    other.close()
    accounts.close()


def test_revocation_in_one_process_stops_the_key_in_another_at_once(tmp_path: Any) -> None:
    clock = _Clock()  # frozen: the beacon's once-a-second database re-read never runs
    worker_a = Accounts(str(tmp_path / "accounts.db"), clock=clock)
    worker_b = Accounts(str(tmp_path / "accounts.db"), clock=clock)
    org_id, key_id, key = _org_with_key(worker_a)
    other_key = worker_a.create_api_key(org_id, ["events:read"], "erp")[1]
    principal = worker_b.authenticate_api_key(key)
    assert worker_b.authenticate_api_key(key) is principal
    kept = worker_b.authenticate_api_key(other_key)

    worker_a.revoke_api_key(org_id, key_id, actor="user:1")
    with pytest.raises(Unauthorized) as refused:
        worker_b.authenticate_api_key(key)
    assert refused.value.code == "api-key-revoked"
    with pytest.raises(Unauthorized):
        worker_a.authenticate_api_key(key)
    # The other key of the organisation still works (read again: the cache was dropped).
    again = worker_b.authenticate_api_key(other_key)
    assert again == kept and again is not kept
    worker_a.close()
    worker_b.close()


def test_suspending_the_organisation_stops_cached_keys_in_every_process(tmp_path: Any) -> None:
    clock = _Clock()
    worker_a = Accounts(str(tmp_path / "accounts.db"), clock=clock)
    worker_b = Accounts(str(tmp_path / "accounts.db"), clock=clock)
    org_id, _, key = _org_with_key(worker_a)
    worker_b.authenticate_api_key(key)

    worker_a.decide(org_id, "suspended", actor_user=1, note="unpaid")
    with pytest.raises(Forbidden) as refused:
        worker_b.authenticate_api_key(key)
    assert refused.value.code == "organisation-suspended"
    worker_a.decide(org_id, "active", actor_user=1)
    assert worker_b.authenticate_api_key(key).org_id == org_id

    # A new chain id reaches the cached principal too.
    worker_b.authenticate_api_key(key)
    worker_a.set_chain_org(org_id, 21)
    assert worker_b.authenticate_api_key(key).chain_org == 21
    worker_a.close()
    worker_b.close()


def test_cached_keys_expire_and_an_unpublished_change_is_seen_within_a_second(
    tmp_path: Any,
) -> None:
    clock = _Clock()
    path = str(tmp_path / "accounts.db")
    accounts = Accounts(path, clock=clock)
    org_id, key_id, key = _org_with_key(accounts)
    first = accounts.authenticate_api_key(key)
    clock.now += KEY_CACHE_MAX_AGE - 0.5
    assert accounts.authenticate_api_key(key) is first
    clock.now += 0.5
    renewed = accounts.authenticate_api_key(key)
    assert renewed == first and renewed is not first  # read again after the maximum age
    clock.now -= 3600  # a wall clock set back does not keep an entry alive either
    assert accounts.authenticate_api_key(key) is not renewed

    # A writer that died between its commit and its publication: the database's triggers
    # bumped the generation, nothing published it. Within a second the re-read catches up.
    current = accounts.authenticate_api_key(key)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?", (key_id,))
    raw.commit()
    raw.close()
    assert accounts.authenticate_api_key(key) is current
    clock.now += 1.0
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key(key)
    accounts.close()


def test_key_cache_is_bounded_least_recently_used_first(tmp_path: Any) -> None:
    accounts = Accounts(str(tmp_path / "accounts.db"), key_cache_size=2)
    org_id, _, k1 = _org_with_key(accounts)
    k2 = accounts.create_api_key(org_id, ["events:read"], "two")[1]
    k3 = accounts.create_api_key(org_id, ["events:read"], "three")[1]
    p1, p2 = accounts.authenticate_api_key(k1), accounts.authenticate_api_key(k2)
    assert accounts.authenticate_api_key(k1) is p1  # k1 is now the most recently used
    p3 = accounts.authenticate_api_key(k3)  # drops k2
    assert accounts.authenticate_api_key(k1) is p1
    assert accounts.authenticate_api_key(k3) is p3
    reads = _key_reads(accounts)
    assert accounts.authenticate_api_key(k2) is not p2 and len(reads) == 1  # drops k1
    assert accounts.authenticate_api_key(k1) is not p1 and len(reads) == 2
    accounts.close()

    uncached = Accounts(str(tmp_path / "accounts.db"), key_cache_size=0)
    assert uncached.authenticate_api_key(k1) is not uncached.authenticate_api_key(k1)
    uncached.close()
    with pytest.raises(ValueError):
        Accounts(str(tmp_path / "accounts.db"), key_cache_size=-1)
