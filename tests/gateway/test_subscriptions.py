"""DCSA event subscriptions: CRUD as the 2.2 spec defines it, ownership, callback-URL checks,
HMAC-signed callbacks to a real loopback receiver, retries with backoff, give-up, restart
safety of the delivery queue, and secret rotation."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.app import create_app
from gateway.config import ConfigError
from gateway.subscriptions.model import (
    CallbackRefused,
    SubscriptionSettings,
    backoff,
    check_callback_url,
    decode_secret,
    signature,
)
from gateway.subscriptions.resolver import PublicResolver
from gateway.subscriptions.store import SubscriptionStore
from tests.support.dcsa import (
    OTHER_SECRET,
    SECRET,
    Receiver,
    config,
    organisation,
    sample_events,
    wait_until,
)

# -- pure parts -------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    import hashlib
    import hmac

    body = b'[{"eventType":"EQUIPMENT"}]'
    key = b"k" * 32
    assert signature(key, body) == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert signature(key, body + b" ") != signature(key, body)


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        (SECRET, True),
        ("not base64!!", False),
        ("c2hvcnQ=", False),  # 5 bytes
        ("", False),
        (12345, False),
    ],
)
def test_secret_is_base64_of_16_to_1024_bytes(secret: Any, ok: bool) -> None:
    if ok:
        assert decode_secret(secret) == b"subscriber secret, 32 bytes long"
    else:
        with pytest.raises(ValueError):
            decode_secret(secret)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://tms.example.com/dcsa/callback?shipperRef=42", None),
        ("http://203.0.113.9:8080/cb", "callback-not-public"),  # TEST-NET-3 is not global
        ("http://8.8.8.8/cb", None),
        ("http://127.0.0.1:9000/cb", "callback-not-public"),
        ("http://10.1.2.3/cb", "callback-not-public"),
        ("http://169.254.169.254/latest/meta-data", "callback-not-public"),
        ("http://[::1]/cb", "callback-not-public"),
        ("http://[::ffff:127.0.0.1]/cb", "callback-not-public"),
        ("http://localhost:8080/cb", "callback-not-public"),
        ("http://2130706433/cb", "invalid-callback-url"),
        ("http://0x7f.1/cb", "invalid-callback-url"),
        ("ftp://tms.example.com/cb", "invalid-callback-url"),
        ("file:///etc/passwd", "invalid-callback-url"),
        ("https://user:pw@tms.example.com/cb", "invalid-callback-url"),
        ("/relative/cb", "invalid-callback-url"),
        ("https://tms.example.com/" + "a" * 2100, "invalid-callback-url"),
        ("http://exa mple.com/cb", "invalid-callback-url"),
        ("http://tms.example.com:0/cb", "invalid-callback-url"),
        ("http://tms.example.com:99999/cb", "invalid-callback-url"),
        ("http://a_b.example.com/cb", "invalid-callback-url"),
        ("http://[fe80::1%25eth0]/cb", "callback-not-public"),
    ],
)
def test_callback_urls(url: str, code: str | None) -> None:
    if code is None:
        assert check_callback_url(url, allow_private=False) == url
    else:
        with pytest.raises(CallbackRefused) as info:
            check_callback_url(url, allow_private=False)
        assert info.value.code == code


def test_private_callbacks_only_when_allowed() -> None:
    assert check_callback_url("http://127.0.0.1:9/cb", allow_private=True)
    with pytest.raises(CallbackRefused):
        check_callback_url("gopher://127.0.0.1:9/cb", allow_private=True)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    settings = SubscriptionSettings(retry_base_seconds=1.0, retry_max_seconds=30.0)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (60, 30.0)]:
        waits = [backoff(attempts, settings, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w < ceiling for w in waits), (attempts, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10  # jitter spreads receivers' retries


def test_settings_refuse_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        SubscriptionSettings.from_config(config(tmp_path, retry_bsae_seconds=1))
    with pytest.raises(ConfigError):
        SubscriptionSettings.from_config(config(tmp_path, concurrency=0))


# -- HTTP: CRUD, validation, ownership --------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(config(tmp_path / "gw")))


def body(**extra: Any) -> dict[str, Any]:
    return {"callbackUrl": "http://127.0.0.1:9/callback", "secret": SECRET, **extra}


async def test_subscription_crud_as_the_spec_defines_it(client: TestClient) -> None:
    _, auth = organisation(client.app, "Harbour Freight")
    resp = await client.post(
        "/v2/event-subscriptions",
        json=body(eventType=["EQUIPMENT", "TRANSPORT"], equipmentEventTypeCode=["DISC"],
                  equipmentReference="csqu 305438-3", UNLocationCode="hkhkg"),
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["API-Version"] == "2.2.0"
    created = await resp.json()
    sub_id = created.pop("subscriptionID")
    assert created == {
        "callbackUrl": "http://127.0.0.1:9/callback",
        "eventType": ["EQUIPMENT", "TRANSPORT"],
        "equipmentEventTypeCode": ["DISC"],
        "equipmentReference": "CSQU3054383",
        "UNLocationCode": "HKHKG",
    }  # normalised, and the secret is write-only

    resp = await client.get(f"/v2/event-subscriptions/{sub_id}", headers=auth)
    assert resp.status == 200
    assert (await resp.json()) == {"subscriptionID": sub_id, **created}

    resp = await client.put(
        f"/v2/event-subscriptions/{sub_id}",
        json={"subscriptionID": sub_id, "callbackUrl": "http://127.0.0.1:9/other",
              "shipmentEventTypeCode": ["ISSU"], "bookingReference": "PCOL-BK-1"},
        headers=auth,
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {  # replaced, not merged; the deprecated alias is mapped
        "subscriptionID": sub_id,
        "callbackUrl": "http://127.0.0.1:9/other",
        "shipmentEventTypeCode": ["ISSU"],
        "carrierBookingReference": "PCOLBK1",
    }

    resp = await client.put(f"/v2/event-subscriptions/{sub_id}/secret",
                            json={"secret": OTHER_SECRET}, headers=auth)
    assert resp.status == 204
    resp = await client.get("/v2/event-subscriptions", headers=auth)
    assert [s["subscriptionID"] for s in await resp.json()] == [sub_id]

    resp = await client.delete(f"/v2/event-subscriptions/{sub_id}", headers=auth)
    assert resp.status == 204
    for method, path in [("GET", ""), ("DELETE", ""), ("PUT", "/secret")]:
        resp = await client.request(method, f"/v2/event-subscriptions/{sub_id}{path}",
                                    json={"secret": SECRET}, headers=auth)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "subscription-not-found"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (body(secret="bm9wZQ=="), 422, "invalid-secret"),
        (body(secret="%%%"), 422, "invalid-secret"),
        ({"callbackUrl": "http://127.0.0.1:9/cb"}, 422, "schema-violation"),  # no secret
        (body(callbackUrl="ftp://127.0.0.1/cb"), 422, "invalid-callback-url"),
        (body(eventType=["REEFER"]), 422, "schema-violation"),
        (body(eventTypes=["SHIPMENT"]), 422, "schema-violation"),  # unknown field
        (body(transportDocumentID="4ed5b4a6-1a74-4a1b-8a5e-1b2c3d4e5f60"), 422,
         "schema-violation"),  # deprecated and unsupported
        (body(equipmentReference="CSQU3054384"), 422, "invalid-check-digit"),
        (body(vesselIMONumber="9321484"), 422, None),
        (body(UNLocationCode="HK1"), 422, None),
    ],
)
async def test_bad_subscriptions_are_refused_clearly(
    client: TestClient, payload: dict[str, Any], status: int, code: str | None
) -> None:
    _, auth = organisation(client.app, "Harbour Freight")
    resp = await client.post("/v2/event-subscriptions", json=payload, headers=auth)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    if code is not None:
        assert error["code"] == code, error
    assert error["message"]
    resp = await client.get("/v2/event-subscriptions", headers=auth)
    assert await resp.json() == []


async def test_put_refuses_a_secret_and_a_foreign_id(client: TestClient) -> None:
    _, auth = organisation(client.app, "Harbour Freight")
    sub_id = (await (await client.post("/v2/event-subscriptions", json=body(),
                                       headers=auth)).json())["subscriptionID"]
    resp = await client.put(f"/v2/event-subscriptions/{sub_id}", json=body(), headers=auth)
    assert resp.status == 422  # "secret ... Only valid in POST calls"
    resp = await client.put(
        f"/v2/event-subscriptions/{sub_id}",
        json={"subscriptionID": "123e4567-e89b-12d3-a456-426614174000",
              "callbackUrl": "http://127.0.0.1:9/cb"},
        headers=auth,
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "subscription-id-mismatch"


async def test_an_organisation_sees_and_edits_only_its_own_subscriptions(
    client: TestClient,
) -> None:
    _, auth_a = organisation(client.app, "Harbour Freight")
    _, auth_b = organisation(client.app, "Kowloon Logistics")
    sub_a = (await (await client.post("/v2/event-subscriptions", json=body(),
                                      headers=auth_a)).json())["subscriptionID"]
    sub_b = (await (await client.post("/v2/event-subscriptions", json=body(),
                                      headers=auth_b)).json())["subscriptionID"]
    resp = await client.get("/v2/event-subscriptions", headers=auth_b)
    assert [s["subscriptionID"] for s in await resp.json()] == [sub_b]
    for method, suffix, payload in [
        ("GET", "", None),
        ("PUT", "", {"callbackUrl": "http://127.0.0.1:9/stolen"}),
        ("PUT", "/secret", {"secret": OTHER_SECRET}),
        ("DELETE", "", None),
    ]:
        resp = await client.request(method, f"/v2/event-subscriptions/{sub_a}{suffix}",
                                    json=payload, headers=auth_b)
        assert resp.status == 404, (method, suffix)
    resp = await client.get(f"/v1/subscriptions/{sub_a}/deliveries", headers=auth_b)
    assert resp.status == 404
    resp = await client.get(f"/v2/event-subscriptions/{sub_a}", headers=auth_a)
    assert (await resp.json())["callbackUrl"] == "http://127.0.0.1:9/callback"  # untouched


async def test_credentials_and_scope(client: TestClient) -> None:
    resp = await client.get("/v2/event-subscriptions")
    assert resp.status == 401
    _, auth = organisation(client.app, "Harbour Freight", scopes=["tracking:read"])
    resp = await client.post("/v2/event-subscriptions", json=body(), headers=auth)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "missing-scope"


async def test_api_version_header_must_name_major_2(client: TestClient) -> None:
    _, auth = organisation(client.app, "Harbour Freight")
    resp = await client.get("/v2/event-subscriptions", headers={**auth, "API-Version": "1"})
    assert resp.status == 400
    assert resp.headers["API-Version"] == "2.2.0"
    assert (await resp.json())["error"]["code"] == "unsupported-api-version"
    resp = await client.get("/v2/event-subscriptions", headers={**auth, "API-Version": "2"})
    assert resp.status == 200


async def test_listing_pages_with_signed_cursors(client: TestClient) -> None:
    _, auth = organisation(client.app, "Harbour Freight")
    _, auth_b = organisation(client.app, "Kowloon Logistics")
    made = []
    for _ in range(5):
        resp = await client.post("/v2/event-subscriptions", json=body(), headers=auth)
        made.append((await resp.json())["subscriptionID"])
    seen: list[str] = []
    url = "/v2/event-subscriptions?limit=2"
    for _ in range(5):
        resp = await client.get(url, headers=auth)
        assert resp.status == 200
        seen += [s["subscriptionID"] for s in await resp.json()]
        if "Next-Page" not in resp.headers:
            break
        url = resp.headers["Next-Page"]
    assert seen == made
    cursor = url.split("cursor=")[1].split("&")[0]
    resp = await client.get(f"/v2/event-subscriptions?cursor={cursor}", headers=auth_b)
    assert resp.status == 400  # another organisation's cursor
    resp = await client.get("/v2/event-subscriptions?cursor=eyJvIjoxfQ.AAAA", headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid-cursor"
    resp = await client.get("/v2/event-subscriptions?limit=0", headers=auth)
    assert resp.status == 400
    resp = await client.get("/v2/event-subscriptions?colour=red", headers=auth)
    assert resp.status == 400


async def test_private_callbacks_refused_by_default(tmp_path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        create_app(config(tmp_path / "gw", allow_private_callbacks=False))
    )
    _, auth = organisation(client.app, "Harbour Freight")
    for url in ["http://127.0.0.1:8080/cb", "http://localhost/cb", "http://[::1]/cb",
                "http://192.168.1.20/cb"]:
        resp = await client.post("/v2/event-subscriptions", json=body(callbackUrl=url),
                                 headers=auth)
        assert resp.status == 422, url
        assert (await resp.json())["error"]["code"] == "callback-not-public"


async def test_subscriptions_per_organisation_are_bounded(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(config(tmp_path / "gw", max_per_organisation=2)))
    _, auth = organisation(client.app, "Harbour Freight")
    statuses = [
        (await client.post("/v2/event-subscriptions", json=body(), headers=auth)).status
        for _ in range(3)
    ]
    assert statuses == [201, 201, 409]


# -- delivery ---------------------------------------------------------------------------------


async def start_receiver(aiohttp_server: Any, statuses: list[int] = ()) -> tuple[Receiver, str]:
    receiver = Receiver(statuses)
    server = await aiohttp_server(receiver.app)
    return receiver, f"http://127.0.0.1:{server.port}/callback"


async def subscribe(client: TestClient, auth: dict[str, str], url: str, **filters: Any) -> str:
    resp = await client.post("/v2/event-subscriptions", json=body(callbackUrl=url, **filters),
                             headers=auth)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["subscriptionID"]


async def deliveries(client: TestClient, auth: dict[str, str], sub_id: str) -> list[dict]:
    resp = await client.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=auth)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["deliveries"]


async def test_callbacks_are_signed_filtered_and_never_repeated(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server)
    everything = await subscribe(client, auth, url)
    equipment = await subscribe(client, auth, url, eventType=["EQUIPMENT"])
    vessel = await subscribe(client, auth, url, vesselIMONumber="9321483",
                             transportEventTypeCode=["ARRI"])
    nothing = await subscribe(client, auth, url, shipmentEventTypeCode=["DRFT"])
    service = client.app[appkeys.SUBSCRIPTIONS]
    events = sample_events()
    queued = service.publish(org, events)
    assert len(queued) == 3  # nothing matches the DRFT subscription
    await receiver.wait_for(3)

    by_sub = {c.headers["Subscription-ID"]: c for c in receiver.calls}
    assert set(by_sub) == {everything, equipment, vessel}
    for call in receiver.calls:
        assert call.signed_with(SECRET)
        assert not call.signed_with(OTHER_SECRET)
        assert call.headers["Content-Type"] == "application/json"
        assert call.headers["API-Version"] == "2.2.0"
    assert json.loads(by_sub[everything].body) == [e for _, e in events]
    assert [e["eventType"] for e in json.loads(by_sub[equipment].body)] == ["EQUIPMENT"]
    assert [e["eventType"] for e in json.loads(by_sub[vessel].body)] == ["TRANSPORT"]

    # The same events again (a re-delivered indexer batch): nothing new is queued or sent.
    assert service.publish(org, events) == []
    assert service.publish(org, sample_events(first_id=2 << 16)[:1]) != []
    await receiver.wait_for(5)
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 5
    done = await deliveries(client, auth, everything)
    assert [d["status"] for d in done] == ["delivered", "delivered"]
    assert done[1]["eventIDs"] == [e for e, _ in events]
    assert done[1]["attempts"] == 1 and done[1]["lastStatus"] == 204
    assert await deliveries(client, auth, nothing) == []


async def test_another_organisations_events_never_reach_a_subscription(
    client: TestClient, aiohttp_server: Any
) -> None:
    org_a, auth_a = organisation(client.app, "Harbour Freight")
    org_b, _ = organisation(client.app, "Kowloon Logistics")
    receiver, url = await start_receiver(aiohttp_server)
    await subscribe(client, auth_a, url)
    # What organisation B may read is published for B; A's subscription must not get it.
    assert client.app[appkeys.SUBSCRIPTIONS].publish(org_b, sample_events()) == []
    await asyncio.sleep(0.3)
    assert receiver.calls == []
    assert client.app[appkeys.SUBSCRIPTIONS].publish(org_a, sample_events())
    await receiver.wait_for(1)


async def test_failed_attempts_are_retried_with_backoff(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server, [500, 503])
    sub_id = await subscribe(client, auth, url)
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
    await receiver.wait_for(1, accepted=True)
    assert [c.status for c in receiver.calls] == [500, 503, 204]
    assert len({c.body for c in receiver.calls}) == 1  # the same body each time
    assert all(c.signed_with(SECRET) for c in receiver.calls)
    gaps = [b.at - a.at for a, b in zip(receiver.calls, receiver.calls[1:], strict=False)]
    assert gaps[0] >= 0.05 * 0.5 and gaps[1] >= 0.1 * 0.5  # base 0.05 s, doubling, jitter
    await wait_until(lambda: _delivered(client, auth, sub_id), what="delivered state")
    [delivery] = await deliveries(client, auth, sub_id)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert delivery["lastError"] is None
    metrics = await (await client.get("/metrics")).text()
    assert 'portledger_subscription_callbacks_total{outcome="retry"} 2.0' in metrics
    assert 'portledger_subscription_callbacks_total{outcome="delivered"} 1.0' in metrics
    assert "portledger_subscription_pending_deliveries 0.0" in metrics
    ready = await (await client.get("/readyz")).json()
    assert ready["checks"]["subscriptions"]["ok"] is True


async def _delivered(client: TestClient, auth: dict[str, str], sub_id: str) -> bool:
    return all(d["status"] == "delivered" for d in await deliveries(client, auth, sub_id))


async def test_a_delivery_is_given_up_after_the_last_attempt(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server, [500] * 50)
    sub_id = await subscribe(client, auth, url)
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
    await receiver.wait_for(4)  # webhook_max_attempts = 4 in these tests

    async def failed() -> bool:
        return [d["status"] for d in await deliveries(client, auth, sub_id)] == ["failed"]

    await wait_until(failed, what="failed state")
    await asyncio.sleep(0.5)
    assert len(receiver.calls) == 4  # no fifth attempt
    [delivery] = await deliveries(client, auth, sub_id)
    assert delivery["attempts"] == 4 and delivery["lastStatus"] == 500
    assert delivery["lastError"].startswith("HTTP 500")
    assert delivery["finished"] and delivery["nextAttempt"] is None
    resp = await client.get(f"/v1/subscriptions/{sub_id}/deliveries?status=delivered",
                            headers=auth)
    assert (await resp.json())["deliveries"] == []


async def test_an_unreachable_callback_is_retried_then_given_up(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server)
    sub_id = await subscribe(client, auth, url.replace("/callback", "/nowhere"))
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())

    async def failed() -> bool:
        return [d["status"] for d in await deliveries(client, auth, sub_id)] == ["failed"]

    await wait_until(failed, what="failed state")
    [delivery] = await deliveries(client, auth, sub_id)
    assert delivery["lastStatus"] == 405 or delivery["lastStatus"] == 404


async def test_secret_rotation_applies_to_retries_already_queued(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server, [500])
    sub_id = await subscribe(client, auth, url)
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
    await receiver.wait_for(1)
    resp = await client.put(f"/v2/event-subscriptions/{sub_id}/secret",
                            json={"secret": OTHER_SECRET}, headers=auth)
    assert resp.status == 204
    await receiver.wait_for(1, accepted=True)
    first, retry = receiver.calls[0], receiver.accepted[0]
    assert first.signed_with(SECRET) and not first.signed_with(OTHER_SECRET)
    assert retry.signed_with(OTHER_SECRET) and not retry.signed_with(SECRET)
    assert retry.body == first.body
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events(first_id=5 << 16))
    await receiver.wait_for(2, accepted=True)
    assert receiver.accepted[1].signed_with(OTHER_SECRET)


async def test_deleting_a_subscription_drops_its_queue(
    client: TestClient, aiohttp_server: Any
) -> None:
    org, auth = organisation(client.app, "Harbour Freight")
    receiver, url = await start_receiver(aiohttp_server, [500] * 50)
    sub_id = await subscribe(client, auth, url)
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
    await receiver.wait_for(1)
    assert (await client.delete(f"/v2/event-subscriptions/{sub_id}", headers=auth)).status == 204
    count = len(receiver.calls)
    await asyncio.sleep(0.6)
    assert len(receiver.calls) <= count + 1  # at most the attempt already in flight


async def test_the_queue_survives_a_restart_and_delivers_exactly_once(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    receiver, url = await start_receiver(aiohttp_server, [500])
    cfg = config(tmp_path / "gw", retry_base_seconds=1.0, retry_max_seconds=1.0)

    first = TestClient(TestServer(create_app(cfg)))
    await first.start_server()
    try:
        org, auth = organisation(first.app, "Harbour Freight")
        sub_id = await subscribe(first, auth, url)
        first.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
        await receiver.wait_for(1)
    finally:
        await first.close()  # closed while the delivery waits for its retry
    assert [c.status for c in receiver.calls] == [500]

    second = TestClient(TestServer(create_app(cfg)))
    await second.start_server()
    try:
        await receiver.wait_for(1, accepted=True)
        await wait_until(lambda: _delivered(second, auth, sub_id), what="delivered state")
        # Publishing the same events after the restart queues nothing.
        assert second.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events()) == []
        await asyncio.sleep(0.5)
        [delivery] = await deliveries(second, auth, sub_id)
        assert delivery["attempts"] == 2
    finally:
        await second.close()
    assert [c.status for c in receiver.calls] == [500, 204]
    assert receiver.calls[0].body == receiver.calls[1].body


async def test_an_attempt_cut_short_by_shutdown_is_completed_after_restart(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    release = asyncio.Event()
    calls: list[bytes] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(await request.read())
        if len(calls) == 1:
            await asyncio.wait_for(release.wait(), 20)  # the first attempt hangs
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/callback", slow)
    server = await aiohttp_server(receiver)
    url = f"http://127.0.0.1:{server.port}/callback"
    cfg = config(tmp_path / "gw", retry_base_seconds=0.05, retry_max_seconds=0.05,
                 timeout_seconds=1.0)

    first = TestClient(TestServer(create_app(cfg)))
    await first.start_server()
    try:
        org, auth = organisation(first.app, "Harbour Freight")
        sub_id = await subscribe(first, auth, url)
        first.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())
        await wait_until(lambda: len(calls) == 1, what="first attempt")
    finally:
        await first.close()  # mid-attempt
    release.set()

    second = TestClient(TestServer(create_app(cfg)))
    await second.start_server()
    try:
        await wait_until(lambda: _delivered(second, auth, sub_id), what="delivered state")
        await asyncio.sleep(0.3)
    finally:
        await second.close()
    assert len(calls) == 2 and calls[0] == calls[1]


async def test_a_slow_subscriber_does_not_hold_up_the_others(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client = await aiohttp_client(create_app(config(tmp_path / "gw", max_events_per_delivery=2)))
    org, auth = organisation(client.app, "Harbour Freight")
    release = asyncio.Event()
    slow_calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        slow_calls.append(asyncio.get_running_loop().time())
        await request.read()
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(status=204)

    slow_app = web.Application()
    slow_app.router.add_post("/callback", slow)
    slow_server = await aiohttp_server(slow_app)
    fast, fast_url = await start_receiver(aiohttp_server)
    slow_id = await subscribe(client, auth, f"http://127.0.0.1:{slow_server.port}/callback")
    await subscribe(client, auth, fast_url)
    events = sample_events()
    assert len(client.app[appkeys.SUBSCRIPTIONS].publish(org, events)) == 4  # 3 events, 2 per body
    await fast.wait_for(2, accepted=True)  # both of the fast subscriber's, meanwhile
    assert [[e["eventID"] for e in json.loads(c.body)] for c in fast.calls] == [
        [e["eventID"] for _, e in events[:2]], [events[2][1]["eventID"]]
    ]  # in order
    assert len(slow_calls) == 1  # one attempt in flight per subscription
    release.set()
    await wait_until(lambda: _delivered(client, auth, slow_id), what="slow subscriber done")
    assert len(slow_calls) == 2


async def test_the_delivery_resolver_drops_non_public_addresses() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="non-public"):
            await resolver.resolve("localhost", 80)  # /etc/hosts: loopback only
    finally:
        await resolver.close()


async def test_a_callback_turned_private_is_refused_at_delivery(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Created while private callbacks were allowed, delivered after they no longer are."""
    receiver, url = await start_receiver(aiohttp_server)
    first = await aiohttp_client(create_app(config(tmp_path / "gw")))
    org, auth = organisation(first.app, "Harbour Freight")
    sub_id = await subscribe(first, auth, url)
    await first.close()
    client = await aiohttp_client(create_app(config(tmp_path / "gw",
                                                    allow_private_callbacks=False)))
    client.app[appkeys.SUBSCRIPTIONS].publish(org, sample_events())

    async def refused() -> bool:
        found = await deliveries(client, auth, sub_id)
        return bool(found) and found[0]["lastError"] is not None

    await wait_until(refused, what="refused attempt")
    [delivery] = await deliveries(client, auth, sub_id)
    assert "non-public" in delivery["lastError"] and delivery["lastStatus"] is None
    assert receiver.calls == []


def test_finished_deliveries_are_forgotten_but_stay_deduplicated(tmp_path: Path) -> None:
    import time

    from gateway.tracking.dcsa import DcsaFilter

    store = SubscriptionStore(tmp_path / "subscriptions.db")
    try:
        sub = store.create(1, "http://127.0.0.1:9/cb", b"k" * 32, DcsaFilter(), limit=10)
        events = sample_events()
        [first, second] = store.enqueue(sub.id, events, chunk=2)
        assert store.claim(first, lambda n: 0.0) is not None
        store.finish(first, "delivered", 204, None)
        assert store.pending_count() == 1
        assert store.prune(time.time() + 1) == 1  # the pending one is kept
        assert [d.id for d in store.deliveries(1, sub.id, status=None, before=None,
                                               limit=10)] == [second]
        assert store.enqueue(sub.id, events, chunk=2) == []
        assert store.deliveries(2, sub.id, status=None, before=None, limit=10) is None
    finally:
        store.close()
