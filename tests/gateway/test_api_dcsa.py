"""DCSA ``GET /v2/events``: the standard's filters, signed cursor paging and clear 400s, over a
real read model holding real sealed envelopes, decrypted by the real tracking module for the
caller's organisation only. Also the subscription listener over the same events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from eth_utils import keccak
from multidict import MultiDict

from gateway import appkeys
from gateway.app import create_app
from gateway.appkeys import INDEXER, KEYSTORE, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.events import dcsa
from gateway.readside.readmodel import Cursor, EventAdded, IndexedEvent
from gateway.tracking import dcsa as api_dcsa
from tests.support.dcsa import (
    T0,
    Receiver,
    canonical,
    config,
    container,
    organisation,
    rendered,
)
from tests.support.readside import (
    CARRIER,
    TERMINAL,
    TRADER,
    account,
    master_secret,
    seal,
    x25519_private,
)

MBL = "PCOL1234567"
BOX1, BOX2, BOX3, BOX4 = (container("CSQU", n) for n in (305438, 305439, 305440, 305441))
IMO = "9321483"

# -- pure parts --------------------------------------------------------------------------------


def test_code_lists_are_the_specs() -> None:
    schemas = dcsa.spec()["components"]["schemas"]
    assert set(api_dcsa.SHIPMENT_EVENT_TYPE_CODES) == set(schemas["shipmentEventTypeCode"]["enum"])
    assert set(api_dcsa.TRANSPORT_EVENT_TYPE_CODES) == set(
        schemas["transportEventTypeCode"]["enum"]
    )
    assert set(api_dcsa.EQUIPMENT_EVENT_TYPE_CODES) == set(
        schemas["equipmentEventTypeCode"]["enum"]
    )
    assert set(api_dcsa.DOCUMENT_TYPE_CODES) == set(schemas["documentTypeCode"]["enum"])
    spec_params = {
        p["name"] for p in dcsa.spec()["paths"]["/v2/events"]["get"]["parameters"]
        if p["in"] == "query"
    }
    created_ops = {f"eventCreatedDateTime:{op}" for op in api_dcsa.CREATED_OPERATORS}
    assert spec_params | created_ops == api_dcsa.EVENT_QUERY_PARAMETERS


def test_filters_are_parsed_normalised_and_checked() -> None:
    flt = api_dcsa.filter_from_fields({
        "eventType": "EQUIPMENT,TRANSPORT",
        "equipmentReference": "csqu 305438 3",
        "bookingReference": "pcol-bk-1",
        "eventCreatedDateTime:gte": "2026-11-18T10:00:00 01:00",  # an unencoded "+"
    })
    assert flt.event_types == {"EQUIPMENT", "TRANSPORT"}
    assert flt.value("equipmentReference") == "CSQU3054383"
    assert flt.value("carrierBookingReference") == "PCOLBK1"
    assert flt.created == (("gte", 1794992400),)
    assert api_dcsa.filter_from_json(flt.to_json()) == flt
    for fields, code in [
        ({"equipmentReference": "CSQU3054384"}, "invalid-check-digit"),
        ({"eventType": "REEFER"}, "invalid-filter"),
        ({"shipmentEventTypeCode": "CANC"}, "invalid-filter"),  # not in the 2.2 list
        ({"vesselIMONumber": "9321484"}, None),
        ({"UNLocationCode": "HK"}, None),
        ({"eventCreatedDateTime": "yesterday"}, "invalid-filter"),
        ({"eventCreatedDateTime:after": "2026-11-18T10:00:00Z"}, "unknown-parameter"),
        ({"transportDocumentID": "x"}, "unsupported-parameter"),
        ({"carrierServiceCode": "TOOLONG"}, "invalid-filter"),
        ({"colour": "red"}, "unknown-parameter"),
    ]:
        with pytest.raises(api_dcsa.FilterError) as info:
            api_dcsa.filter_from_fields(fields)
        if code is not None:
            assert info.value.code == code, fields


def dcsa_event(event_type: str, subject: tuple[str, str], **kw: Any) -> dict[str, Any]:
    return rendered(1 << 16, canonical(event_type, subject, **kw))[1]


def test_matching_follows_the_dcsa_rules() -> None:
    disc = dcsa_event("TERMINAL.DISC", ("container", BOX1), related=[("mbl", MBL)],
                      details={"vessel": {"imo": IMO}, "voyage": "2103S", "service": "FE1"})
    arri = dcsa_event("TRANSPORT.ARRI", ("vessel", IMO), location="CNYTN")
    issu = dcsa_event("SHIPMENT.ISSU", ("mbl", MBL))

    def hits(**fields: str) -> list[str]:
        flt = api_dcsa.filter_from_fields(fields)
        return [e["eventType"] for e in (disc, arri, issu) if api_dcsa.matches(flt, e)]

    assert hits() == ["EQUIPMENT", "TRANSPORT", "SHIPMENT"]
    assert hits(eventType="SHIPMENT,TRANSPORT") == ["TRANSPORT", "SHIPMENT"]
    assert hits(equipmentEventTypeCode="DISC,LOAD") == ["EQUIPMENT"]
    assert hits(shipmentEventTypeCode="DRFT", equipmentEventTypeCode="GTIN") == []
    assert hits(shipmentEventTypeCode="ISSU", equipmentEventTypeCode="DISC") == []
    assert hits(documentTypeCode="TRD") == ["SHIPMENT"]
    assert hits(transportDocumentReference=MBL) == ["EQUIPMENT", "SHIPMENT"]
    assert hits(equipmentReference=BOX1) == ["EQUIPMENT"]
    assert hits(vesselIMONumber=IMO) == ["EQUIPMENT", "TRANSPORT"]
    assert hits(vesselIMONumber=IMO, eventType="TRANSPORT") == ["TRANSPORT"]
    assert hits(exportVoyageNumber="2103S") == ["EQUIPMENT"]
    assert hits(carrierServiceCode="FE1") == ["EQUIPMENT"]
    assert hits(UNLocationCode="CNYTN") == ["TRANSPORT"]
    assert hits(transportCallID=disc["transportCall"]["transportCallID"]) == ["EQUIPMENT"]
    assert hits(**{"eventCreatedDateTime": "2026-11-18T11:06:40Z"}) == [
        "EQUIPMENT", "TRANSPORT", "SHIPMENT"
    ]  # T0
    assert hits(**{"eventCreatedDateTime:gt": "2026-11-18T11:06:40Z"}) == []
    assert hits(**{"eventCreatedDateTime:lte": "2026-11-18T11:06:40Z"}) == [
        "EQUIPMENT", "TRANSPORT", "SHIPMENT"
    ]


def test_type_filters_push_down_to_canonical_types() -> None:
    def types(**fields: str) -> Any:
        return api_dcsa.canonical_types(api_dcsa.filter_from_fields(fields))

    assert types() is None
    assert types(eventType="TRANSPORT") == ("TRANSPORT.ARRI", "TRANSPORT.DEPA")
    assert types(equipmentEventTypeCode="DISC,STUF") == ("TERMINAL.DISC", "EQUIPMENT.STUF")
    assert types(eventType="SHIPMENT", equipmentEventTypeCode="DISC") == ()
    assert len(types(documentTypeCode="TRD")) == len(api_dcsa.SHIPMENT_EVENT_TYPE_CODES)


def test_cursors_are_signed_and_bound_to_the_caller(tmp_path: Path) -> None:
    codec = api_dcsa.CursorCodec.from_file(tmp_path / "key")
    assert api_dcsa.CursorCodec.from_file(tmp_path / "key").encode({"a": 1}) == codec.encode(
        {"a": 1}
    )  # the key persists
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    flt = api_dcsa.filter_from_fields({"eventType": "TRANSPORT"})
    token = api_dcsa.cursor_for(codec, 7, flt, "opaque")
    page = api_dcsa.parse_page_request(MultiDict(cursor=token), codec=codec, org_id=7)
    assert page.filter == flt and page.position == "opaque" and page.limit == 100
    body, mac = token.split(".")
    forged = json.loads(api_dcsa._unb64(body))
    forged["p"] = "elsewhere"
    for bad in [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        api_dcsa._b64(json.dumps(forged).encode()) + "." + mac,
        "garbage",
        "a.b.c",
        "",
    ]:
        with pytest.raises(api_dcsa.FilterError) as info:
            api_dcsa.parse_page_request(MultiDict(cursor=bad), codec=codec, org_id=7)
        assert info.value.code == "invalid-cursor"
    with pytest.raises(api_dcsa.FilterError):  # another organisation's
        api_dcsa.parse_page_request(MultiDict(cursor=token), codec=codec, org_id=8)
    with pytest.raises(api_dcsa.FilterError):  # other filters than the cursor's
        api_dcsa.parse_page_request(MultiDict(cursor=token, eventType="SHIPMENT"), codec=codec,
                                    org_id=7)
    same = api_dcsa.parse_page_request(MultiDict(cursor=token, eventType="TRANSPORT", limit="5"),
                                       codec=codec, org_id=7)
    assert same.limit == 5


# -- over a real read model --------------------------------------------------------------------


def indexed(event_id: int, owner: int, event: Any, *, block_time: int,
            readers: tuple[int, ...] = (), reference: bool = False) -> IndexedEvent:
    """A sealed event as the indexer stores it."""
    cargo = seal(event, owner, readers=readers, reference=reference)
    info = confidential.envelope_info(cargo.payload)
    return IndexedEvent(
        event_id=event_id, block=event_id >> 16, tx_hash=keccak(event_id.to_bytes(8, "big")),
        log_index=0, block_time=block_time, publisher=owner, subject=cargo.subject,
        type_code=cargo.event_type, classifier=cargo.classifier, event_time=cargo.event_time,
        location=cargo.location, retracts=0, payload_hash=cargo.payload_hash,
        envelope=cargo.payload, key_version=info.key_version, readers=info.readers,
        reference_readable=info.reference_readable,
    )  # fmt: skip


def member(app: web.Application, name: str, chain_org: int) -> dict[str, str]:
    """A gateway organisation for a demo chain member, with its development keys."""
    org_id, auth = organisation(app, name, chain_org=chain_org)
    app[KEYSTORE].import_keys(
        org_id, signing_key=bytes(account(chain_org).key),
        x25519_private=x25519_private(chain_org), master_secret=master_secret(chain_org),
    )  # fmt: skip
    return auth


def chain_events() -> list[IndexedEvent]:
    """What the chain holds: the carrier's, the terminal's, readable to different parties."""
    out: list[IndexedEvent] = []

    def add(owner: int, event: Any, **kw: Any) -> None:
        n = len(out) + 1
        out.append(indexed(n << 16, owner, event, block_time=T0 + 60 * n, **kw))

    add(CARRIER, canonical("SHIPMENT.ISSU", ("mbl", MBL)), reference=True)
    add(CARRIER, canonical("TRANSPORT.DEPA", ("vessel", IMO), location="CNYTN",
                           details={"voyage": "2103S", "service": "FE1"}))
    add(TERMINAL, canonical("TERMINAL.DISC", ("container", BOX1), related=[("mbl", MBL)],
                            details={"vessel": {"imo": IMO}}), readers=(CARRIER,))
    add(TERMINAL, canonical("TERMINAL.DISC", ("container", BOX3)))  # the terminal's alone
    add(CARRIER, canonical("REEFER.MEAS", ("container", BOX2), details={"temperature": -18}))
    add(TERMINAL, canonical("TERMINAL.GTOT", ("container", BOX2), location="HKHKG"),
        readers=(CARRIER,), reference=True)
    add(CARRIER, canonical("TRANSPORT.ARRI", ("vessel", IMO), location="HKHKG",
                           details={"voyage": "2103S", "service": "FE1"}), reference=True)
    for i in range(10):
        add(CARRIER, canonical("EQUIPMENT.STUF", ("container", BOX4), at=T0 + i,
                               location="CNYTN", related=[("mbl", MBL)]))
    return out


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Any) -> dict[str, Any]:
    client = await aiohttp_client(create_app(config(tmp_path / "gw")))
    app = client.app
    auths = {
        "carrier": member(app, "Pacific Ocean Line", CARRIER),
        "terminal": member(app, "Hong Kong Container Terminal", TERMINAL),
        "trader": member(app, "Sino Trading Company", TRADER),
    }
    found = chain_events()
    model = app[READ_MODEL]
    model.apply([EventAdded(e) for e in found], Cursor(100, b"\x01" * 32), model.cursor())
    return {"client": client, "auth": auths, "events": found}


async def get_all(client: TestClient, auth: dict[str, str], query: str = "",
                  pages: list[int] | None = None) -> list[dict[str, Any]]:
    url = f"/v2/events{query}"
    out: list[dict[str, Any]] = []
    for _ in range(50):
        resp = await client.get(url, headers=auth)
        assert resp.status == 200, await resp.text()
        assert resp.headers["API-Version"] == "2.2.0"
        assert resp.headers["Current-Page"] == url
        page = await resp.json()
        if pages is not None:
            pages.append(len(page))
        out += page
        if "Next-Page" not in resp.headers:
            return out
        url = resp.headers["Next-Page"]
    raise AssertionError("paging did not end")


def ids(found: list[dict[str, Any]]) -> list[int]:
    by_uuid = {dcsa.event_uuid(n << 16): n for n in range(1, 100)}
    return [by_uuid[e["eventID"]] for e in found]


async def test_a_caller_gets_exactly_what_it_may_read(world: dict[str, Any]) -> None:
    client, auth = world["client"], world["auth"]
    carrier = await get_all(client, auth["carrier"])
    # own events and those naming it; not the terminal's private one (4), not the reefer (5)
    assert ids(carrier) == [1, 2, 3, 6, 7, *range(8, 18)]
    for event in carrier:
        dcsa.validate(event)  # each a valid DCSA 2.2 event
    assert [e["eventCreatedDateTime"] for e in carrier] == sorted(
        e["eventCreatedDateTime"] for e in carrier
    )
    terminal = await get_all(client, auth["terminal"])
    assert ids(terminal) == [3, 4, 6]
    assert await get_all(client, auth["trader"]) == []  # holds no reference


async def test_references_given_as_filters_are_held(world: dict[str, Any]) -> None:
    client, trader = world["client"], world["auth"]["trader"]
    issued = await get_all(client, trader, f"?transportDocumentReference={MBL.lower()}")
    assert ids(issued) == [1]  # the carrier made it readable to holders of the B/L number
    assert issued[0]["shipmentEventTypeCode"] == "ISSU" and issued[0]["documentID"] == MBL
    assert ids(await get_all(client, trader, f"?equipmentReference={BOX2}")) == [6]
    assert await get_all(client, trader, f"?equipmentReference={BOX3}") == []  # private
    assert await get_all(client, trader, f"?equipmentReference={BOX1}") == []  # named only
    assert ids(await get_all(client, trader, f"?vesselIMONumber={IMO}")) == [7]
    # AND with the other filters still holds for what became readable
    assert await get_all(client, trader, f"?equipmentReference={BOX2}&eventType=SHIPMENT") == []


FILTER_CASES: list[tuple[str, list[int]]] = [
    ("?eventType=TRANSPORT", [2, 7]),
    ("?eventType=SHIPMENT,TRANSPORT", [1, 2, 7]),
    ("?transportEventTypeCode=ARRI", [7]),
    ("?equipmentEventTypeCode=DISC,GTOT", [3, 6]),
    ("?shipmentEventTypeCode=ISSU&equipmentEventTypeCode=DISC", []),
    ("?documentTypeCode=TRD", [1]),
    ("?documentTypeCode=BKG", []),
    ("?UNLocationCode=cnytn&eventType=TRANSPORT", [2]),
    ("?exportVoyageNumber=2103S", [2, 7]),
    ("?carrierVoyageNumber=2103S", [2, 7]),
    ("?carrierServiceCode=FE1&transportEventTypeCode=DEPA", [2]),
    (f"?equipmentReference={BOX4}&limit=4", list(range(8, 18))),
    ("?eventCreatedDateTime:gte=2026-11-18T11:13:40Z", [7, *range(8, 18)]),  # T0+7m
    ("?eventCreatedDateTime:gt=2026-11-18T11:13:40Z&eventCreatedDateTime:lt="
     "2026-11-18T11:16:40Z", [8, 9]),
    ("?eventCreatedDateTime=2026-11-18T11:07:40Z", [1]),
    ("?eventCreatedDateTime:eq=2026-11-18T12:07:40%2B01:00", [1]),
    ("?eventCreatedDateTime:lte=2026-11-18T11:08:40Z&sort=eventCreatedDateTime:ASC", [1, 2]),
]


async def test_filters(world: dict[str, Any]) -> None:
    # One world for every case: building it (keys, sealed events) is the slow part.
    for query, expected in FILTER_CASES:
        got = ids(await get_all(world["client"], world["auth"]["carrier"], query))
        assert got == expected, query


async def test_transport_call_filter(world: dict[str, Any]) -> None:
    client, carrier = world["client"], world["auth"]["carrier"]
    departure = (await get_all(client, carrier, "?transportEventTypeCode=DEPA"))[0]
    call_id = departure["transportCall"]["transportCallID"]
    assert ids(await get_all(client, carrier, f"?transportCallID={call_id}")) == [2]


async def test_cursor_paging_returns_everything_once(world: dict[str, Any]) -> None:
    client, carrier = world["client"], world["auth"]["carrier"]
    whole = ids(await get_all(client, carrier))
    for limit in (1, 2, 3, 7, 1000):
        sizes: list[int] = []
        paged = ids(await get_all(client, carrier, f"?limit={limit}", sizes))
        assert paged == whole, limit
        assert all(size <= limit for size in sizes)
        if limit < len(whole):
            assert sizes[0] == limit
    # A filtered scan pages too, and the cursor alone carries the filter.
    resp = await client.get("/v2/events?eventType=EQUIPMENT&limit=2", headers=carrier)
    next_page = resp.headers["Next-Page"]
    token = parse_qs(urlsplit(next_page).query)["cursor"][0]
    resp = await client.get(f"/v2/events?cursor={token}&limit=50", headers=carrier)
    rest = await resp.json()
    assert {e["eventType"] for e in rest} == {"EQUIPMENT"}
    assert ids(rest) == list(range(8, 18))  # the first page held 3 and 6
    assert "Next-Page" not in resp.headers


async def test_cursors_cannot_be_forged_or_borrowed(world: dict[str, Any]) -> None:
    client, auth = world["client"], world["auth"]
    resp = await client.get("/v2/events?limit=1", headers=auth["carrier"])
    token = parse_qs(urlsplit(resp.headers["Next-Page"]).query)["cursor"][0]
    for who, cursor in [
        ("trader", token),  # another organisation's cursor
        ("carrier", token[:-3] + "AAA"),
        ("carrier", "eyJhZnRlciI6IDB9"),  # tracking's own unsigned cursor format
        ("carrier", "x" * 5000),
    ]:
        resp = await client.get(f"/v2/events?cursor={cursor}", headers=auth[who])
        assert resp.status == 400, (who, cursor[:20])
        assert (await resp.json())["error"]["code"] == "invalid-cursor"


BAD_QUERIES: list[tuple[str, str | None]] = [
    ("?colour=red", "unknown-parameter"),
    ("?eventtype=SHIPMENT", "unknown-parameter"),  # names are case-sensitive
    ("?eventType=SHIPMENT&eventType=TRANSPORT", "invalid-filter"),
    ("?eventType=REEFER", "invalid-filter"),
    ("?equipmentReference=CSQU3054384", "invalid-check-digit"),
    ("?equipmentReference=HELLO", None),
    ("?vesselIMONumber=9321484", None),
    ("?UNLocationCode=HK1", None),
    ("?limit=0", "invalid-filter"),
    ("?limit=1001", "invalid-filter"),
    ("?limit=ten", "invalid-filter"),
    ("?limit=%C2%B2", "invalid-filter"),  # "²" is a digit to str.isdigit, not to int()
    ("?limit=" + "9" * 5000, "invalid-filter"),
    ("?transportDocumentID=4ed5b4a6-1a74-4a1b-8a5e-1b2c3d4e5f60", "unsupported-parameter"),
    ("?scheduleID=4ed5b4a6-1a74-4a1b-8a5e-1b2c3d4e5f60", "unsupported-parameter"),
    ("?sort=eventCreatedDateTime:DESC", "unsupported-sort"),
    ("?eventCreatedDateTime:gte=tomorrow", "invalid-filter"),
    ("?eventCreatedDateTime:since=2026-11-18T10:00:00Z", "unknown-parameter"),
    ("?carrierBookingReference=" + "A" * 36, "invalid-filter"),
    ("?transportCallID=%00abc", "invalid-filter"),
]


async def test_bad_queries_are_clear_400s(world: dict[str, Any]) -> None:
    for query, code in BAD_QUERIES:
        resp = await world["client"].get(f"/v2/events{query}", headers=world["auth"]["carrier"])
        assert resp.status == 400, (query, await resp.text())
        assert resp.headers["API-Version"] == "2.2.0"
        error = (await resp.json())["error"]
        if code is not None:
            assert error["code"] == code, query
        assert error["message"] and "parameter" in error["details"], query


async def test_credentials_scope_and_version(world: dict[str, Any]) -> None:
    client = world["client"]
    assert (await client.get("/v2/events")).status == 401
    _, tracking_only = organisation(client.app, "Yard Clerk Ltd", scopes=["tracking:read"])
    assert (await client.get("/v2/events", headers=tracking_only)).status == 403
    _, outsider = organisation(client.app, "Not Yet A Member Ltd")
    resp = await client.get("/v2/events", headers=outsider)
    assert resp.status == 403  # no chain membership: it can read nothing
    carrier = world["auth"]["carrier"]
    assert (await client.get("/v2/events", headers={**carrier, "API-Version": "2"})).status == 200
    assert (await client.get("/v2/events", headers={**carrier, "API-Version": "1"})).status == 400


async def test_the_operation_is_documented(world: dict[str, Any]) -> None:
    doc = await (await world["client"].get("/openapi.json")).json()
    names = {p["name"] for p in doc["paths"]["/v2/events"]["get"]["parameters"]}
    assert names >= {"eventType", "equipmentReference", "eventCreatedDateTime:gte", "cursor"}
    assert "/v2/event-subscriptions/{subscriptionID}/secret" in doc["paths"]


async def test_subscriptions_get_what_the_organisation_may_read(
    world: dict[str, Any], aiohttp_server: Any
) -> None:
    client, auth = world["client"], world["auth"]
    receiver = Receiver()
    server = await aiohttp_server(receiver.app)
    url = f"http://127.0.0.1:{server.port}/callback"
    subscribed = {}
    for who, filters in [("carrier", {}), ("terminal", {"eventType": ["EQUIPMENT"]}),
                         ("trader", {})]:
        resp = await client.post(
            "/v2/event-subscriptions",
            json={"callbackUrl": url, "secret": "c3Vic2NyaWJlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmc=",
                  **filters},
            headers=auth[who],
        )
        subscribed[(await resp.json())["subscriptionID"]] = who
    for filters in [{"transportDocumentReference": MBL}, {"equipmentReference": BOX2},
                    {"equipmentReference": BOX1}]:
        resp = await client.post(
            "/v2/event-subscriptions",
            json={"callbackUrl": url, "secret": "c3Vic2NyaWJlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmc=",
                  **filters},
            headers=auth["trader"],
        )
        subscribed[(await resp.json())["subscriptionID"]] = "trader " + next(
            iter(filters.values()))
    service = client.app[appkeys.SUBSCRIPTIONS]
    # What the indexer hands its listeners after committing these blocks:
    await service.on_indexed(world["events"], client.app)
    await receiver.wait_for(4)
    got = {subscribed[c.headers["Subscription-ID"]]: ids(json.loads(c.body))
           for c in receiver.calls}
    assert got == {
        "carrier": [1, 2, 3, 6, 7, *range(8, 18)],
        "terminal": [3, 4, 6],
        # The trader holds only what its filters name: the B/L number opens the carrier's
        # reference-readable B/L event, BOX2 the terminal's reference-readable gate-out;
        # BOX1's discharge was for the carrier alone, so nothing is sent for it.
        f"trader {MBL}": [1],
        f"trader {BOX2}": [6],
    }
    # The same batch again (an indexer retry) sends nothing more.
    await service.on_indexed(world["events"], client.app)
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 4


async def test_events_indexed_while_not_listening_are_caught_up(
    world: dict[str, Any], aiohttp_server: Any
) -> None:
    client, auth, found = world["client"], world["auth"], world["events"]
    receiver = Receiver()
    server = await aiohttp_server(receiver.app)
    resp = await client.post(
        "/v2/event-subscriptions",
        json={"callbackUrl": f"http://127.0.0.1:{server.port}/callback",
              "secret": "c3Vic2NyaWJlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmc=", "eventType": ["TRANSPORT"]},
        headers=auth["carrier"],
    )
    assert resp.status == 201
    service = client.app[appkeys.SUBSCRIPTIONS]
    assert await service.catch_up(client.app) == 0  # never listened: nothing promised
    await service.on_indexed(found[:2], client.app)  # event 2 (a departure) is delivered
    await receiver.wait_for(1)
    # Events 3.. were committed by the indexer but the gateway died before its listeners ran:
    assert await service.catch_up(client.app, page=4) == len(found) - 2
    await receiver.wait_for(2)
    assert [ids(json.loads(c.body)) for c in receiver.calls] == [[2], [7]]
    assert await service.catch_up(client.app) == 0


async def test_end_to_end_from_a_real_chain(tmp_path: Path, aiohttp_server: Any) -> None:
    """Events recorded on a real node, indexed by the gateway's own indexer, are served by
    GET /v2/events and pushed to a subscription by the indexer listener."""
    import dataclasses

    from aiohttp.test_utils import TestServer

    from tests.support.nodes import REPO_GENESIS, NodeProcess
    from tests.support.readside import Chain

    node = NodeProcess(tmp_path / "node", REPO_GENESIS).start()
    client = None
    try:
        cfg = dataclasses.replace(config(tmp_path / "gw"), node_urls=(node.url,),
                                  indexer_poll_ms=50)
        client = TestClient(TestServer(create_app(cfg)))
        await client.start_server()
        carrier = member(client.app, "Pacific Ocean Line", CARRIER)
        receiver = Receiver()
        server = await aiohttp_server(receiver.app)
        resp = await client.post(
            "/v2/event-subscriptions",
            json={"callbackUrl": f"http://127.0.0.1:{server.port}/callback",
                  "secret": "c3Vic2NyaWJlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmc=",
                  "equipmentEventTypeCode": ["DISC"]},
            headers=carrier,
        )
        assert resp.status == 201
        chain = Chain(node.url)
        recorded = await asyncio.to_thread(chain.record, TERMINAL, [
            seal(canonical("TERMINAL.DISC", ("container", BOX1), related=[("mbl", MBL)]),
                 TERMINAL, readers=[CARRIER]),
            seal(canonical("TERMINAL.GTIN", ("container", BOX2)), TERMINAL, readers=[CARRIER]),
            seal(canonical("TERMINAL.DISC", ("container", BOX3)), TERMINAL),  # not the carrier's
        ])
        head = await asyncio.to_thread(chain.head)
        assert await client.app[INDEXER].wait_for_block(head, timeout=60)
        served = await get_all(client, carrier, "?limit=1")
        assert [e["eventID"] for e in served] == [dcsa.event_uuid(i) for i in recorded[:2]]
        assert served[0]["equipmentReference"] == BOX1
        await receiver.wait_for(1)
        [call] = receiver.calls
        assert call.signed_with("c3Vic2NyaWJlciBzZWNyZXQsIDMyIGJ5dGVzIGxvbmc=")
        assert [e["eventID"] for e in json.loads(call.body)] == [dcsa.event_uuid(recorded[0])]
    finally:
        if client is not None:
            await client.close()
        node.stop()
