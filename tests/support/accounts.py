"""Helpers of the accounts tests: registering, verifying and signing in through the real API."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

OPERATOR_EMAIL = "ops@portledger.example"
OPERATOR_PASSWORD = "operator password 1"
ADMIN_PASSWORD = "correct horse battery staple"


def company(name: str = "Harbour Freight Ltd", number: str = "HK-1234567", **extra: Any) -> dict:
    """Company details of a registration body."""
    return {
        "name": name,
        "roles": ["forwarder"],
        "registrationNumber": number,
        "country": "HK",
        "address": "1 Container Port Road, Kwai Chung",
        "contactEmail": "contact@harbour.example",
        **extra,
    }


async def register(
    client: TestClient, email: str = "admin@harbour.example", **company_fields: Any
) -> dict[str, Any]:
    """Register an organisation through the API; returns the answer (201 asserted)."""
    resp = await client.post(
        "/v1/organisations/register",
        json={"organisation": company(**company_fields),
              "admin": {"email": email, "password": ADMIN_PASSWORD}},
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def login(client: TestClient, email: str, password: str = ADMIN_PASSWORD) -> str:
    """Sign in (the client's cookie jar keeps the session); returns the CSRF token."""
    client.session.cookie_jar.clear()
    resp = await client.post("/v1/session", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrfToken"]
