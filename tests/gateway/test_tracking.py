"""Tracking: the visibility matrix, the house-B/L subset rule, the resolver's suggestions, the
access log and the HTTP routes — over a read model holding really sealed envelopes and a real
keystore (the demo members' development keys)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from contracts.cargo import subject_key
from devnet.members import DEMO_ORGANISATIONS
from gateway import appkeys, errors
from gateway.app import create_app
from gateway.appkeys import KEYSTORE
from gateway.confidential import envelope as confidential
from gateway.confidential import keystore
from gateway.config import ConfigError, GatewayConfig
from gateway.events.model import CanonicalEvent
from gateway.principal import ROLE_SCOPES, Principal
from gateway.readside.readmodel import (
    Cursor,
    EventAdded,
    Grant,
    GrantChange,
    HouseChange,
    IndexedEvent,
    MasterContainers,
    Member,
    MemberChange,
)
from gateway.readside.store import SqliteReadModel
from gateway.tracking.cache import TrackingSettings
from gateway.tracking.service import EventQuery, Tracking
from gateway.tracking.suggestions import RefIndex
from gateway.tracking.visibility import grant_context
from node.genesis import dev_key
from tests.support import dcsa as dcsa_fixtures
from tests.support import readside as rs

T0 = 1_780_000_000
NOW = T0 + 86_400
C1, C2, C3 = (rs.container("PCOU", n) for n in (200001, 200002, 200003))
MBL, HBL = "PCOL2024000777", "HFF20240042"
OTHER = rs.container("MSKU", 300001)

#: gateway organisation ids of the hosted demo members (gateway id = 100 + chain id)
GW = {c: 100 + c for c in range(1, 14)}


def principal(chain_org: int) -> Principal:
    return Principal(org_id=GW[chain_org], chain_org=chain_org, user_id=None, role="system",
                     scopes=ROLE_SCOPES["member"], via="api_key", credential_id=f"k{chain_org}")


class Builder:
    """Seals canonical events with the fixtures' keys and writes them to a read model."""

    def __init__(self, model: SqliteReadModel) -> None:
        self.model = model
        self.next_id = 1 << 16
        self.changes: list[Any] = [
            MemberChange(Member(i + 1, name, 0, rs.x25519_public(i + 1), True))
            for i, (name, _) in enumerate(DEMO_ORGANISATIONS)
        ]

    def add(self, event: CanonicalEvent, owner: int, *, readers=(), reference=False,
            key_version: int = 0, retracts: int = 0, recorded: int | None = None) -> int:
        cargo = rs.seal(event, owner, readers=readers, reference=reference, key_version=key_version)
        info = confidential.envelope_info(cargo.payload)
        self.next_id += 1
        self.changes.append(EventAdded(IndexedEvent(
            event_id=self.next_id, block=self.next_id - (1 << 16), tx_hash=b"\x11" * 32,
            log_index=0,
            block_time=event.event_time + 60 if recorded is None else recorded, publisher=owner,
            subject=event.subject.key, type_code=event.type_code, classifier=3,
            event_time=event.event_time, location=event.location, retracts=retracts,
            payload_hash=cargo.payload_hash, envelope=cargo.payload,
            key_version=info.key_version, readers=info.readers,
            reference_readable=info.reference_readable,
        )))
        return self.next_id

    def grant(self, owner: int, subject_value: str, reader: int, *, version: int = 0,
              expiry: int = 0, active: bool = True) -> None:
        subject = subject_key(subject_value)
        secret = confidential.pack_subject_grant(
            confidential.record_key(rs.master_secret(owner), subject, version), version)
        wrapped = confidential.wrap_key(secret, reader_public=rs.x25519_public(reader),
                                        context=grant_context(owner, subject, reader))
        self.changes.append(GrantChange(Grant(owner, 1, subject, reader, expiry, wrapped, 1,
                                              active)))

    def commit(self) -> None:
        self.model.apply(self.changes, Cursor(1, b"\x01" * 32), self.model.cursor())
        self.changes = []


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    model = SqliteReadModel(tmp_path / "readmodel.db")
    store = keystore.Keystore(tmp_path / "keystore", "test passphrase")
    for chain_org in (rs.TERMINAL, rs.CARRIER, rs.FORWARDER, rs.CUSTOMS, rs.BANK, rs.TRADER):
        store.import_keys(GW[chain_org], signing_key=dev_key(f"org:{chain_org - 1}").to_bytes(),
                          x25519_private=rs.x25519_private(chain_org),
                          master_secret=rs.master_secret(chain_org))
    b = Builder(model)
    ids: dict[str, int] = {}
    # the carrier's master B/L record lists all three containers and the vessel (by reference)
    ids["mbl"] = b.add(rs.event("mbl", MBL, "SHIPMENT.ISSU", T0, related=[
        ("container", C1), ("container", C2), ("container", C3)],
        details={"vessel": {"name": "PACIFIC STAR", "imo": "9321483"}}), rs.CARRIER,
        reference=True)
    ids["eta"] = b.add(rs.event("mbl", MBL, "TRANSPORT.ARRI", T0 + 10 * 86_400,
                                classifier="EST", location="HKHKG"), rs.CARRIER, reference=True,
                       recorded=T0 + 20)
    # the forwarder's house record names the master and two containers; a lying third mention
    ids["hbl"] = b.add(rs.event("hbl", HBL, "SHIPMENT.ISSU", T0 + 5, related=[
        ("mbl", MBL), ("container", C1), ("container", C2), ("container", C3)]), rs.FORWARDER,
        reference=True)
    # terminal and customs events per container, readable by reference holders
    for n, c in enumerate((C1, C2, C3)):
        ids[f"disc{n}"] = b.add(rs.event("container", c, "TERMINAL.DISC", T0 + 100 + n),
                                rs.TERMINAL, reference=True)
    ids["hold"] = b.add(rs.event("container", C1, "CUSTOMS.CUSH", T0 + 200), rs.CUSTOMS,
                        reference=True)
    ids["release"] = b.add(rs.event("container", C1, "CUSTOMS.CUSR", T0 + 300), rs.CUSTOMS,
                           reference=True)
    ids["reefer"] = b.add(rs.event("container", C2, "REEFER.MEAS", T0 + 150,
                                   details={"temperature": -18.2, "setpoint": -18.0}),
                          rs.TERMINAL, reference=True)
    # private (named) records
    ids["named"] = b.add(rs.event("container", OTHER, "TERMINAL.GTIN", T0 + 400), rs.TERMINAL,
                         readers=[rs.CARRIER])
    ids["private"] = b.add(rs.event("container", OTHER, "TERMINAL.LOAD", T0 + 500), rs.TERMINAL)
    b.changes += [
        MasterContainers(subject_key(MBL), rs.CARRIER,
                         tuple(subject_key(c) for c in (C1, C2, C3)), 1),
        HouseChange(subject_key(HBL), subject_key(MBL), rs.FORWARDER,
                    (subject_key(C1), subject_key(C2)), 1),
    ]
    b.commit()
    track = Tracking(model, store, clock=lambda: NOW)
    world = {"model": model, "store": store, "builder": b, "ids": ids, "tracking": track}
    yield world
    for other in world.get("workers", []):
        other.close()
    model.close()


def visible(track: Tracking, chain_org: int, ref_kind: str, value: str) -> dict[int, str]:
    query = EventQuery(references=(rs.events.Reference(ref_kind, value),))
    found, _ = asyncio.run(track.events(principal(chain_org), query, None, 100))
    return {v.event_id: v.readable_via for v in found}


def test_visibility_matrix(world: dict[str, Any]) -> None:
    track, ids, b = world["tracking"], world["ids"], world["builder"]
    other = subject_key(OTHER)
    grant_ids = {ids["named"], ids["private"]}
    # owner and named; nobody else without a grant (holding the number is not enough here)
    assert visible(track, rs.TERMINAL, "container", OTHER) == {
        ids["named"]: "owner", ids["private"]: "owner"}
    assert visible(track, rs.CARRIER, "container", OTHER) == {ids["named"]: "named"}
    assert visible(track, rs.BANK, "container", OTHER) == {}
    # a subject grant in force: every record of the owner on that subject
    b.grant(rs.TERMINAL, OTHER, rs.BANK)
    b.commit()
    assert visible(track, rs.BANK, "container", OTHER) == {i: "grant" for i in grant_ids}
    # the grant found without the caller naming the reference (DCSA-style listing)
    listed, _ = asyncio.run(track.events(principal(rs.BANK), EventQuery(), None, 100))
    assert {v.event_id for v in listed} == grant_ids
    # expired
    b.grant(rs.TERMINAL, OTHER, rs.BANK, expiry=NOW - 1)
    b.commit()
    assert visible(track, rs.BANK, "container", OTHER) == {}
    # revoked
    b.grant(rs.TERMINAL, OTHER, rs.BANK, active=False)
    b.commit()
    assert visible(track, rs.BANK, "container", OTHER) == {}
    # re-granted with version 0 after the owner moved to version 1: only the old records
    newer = b.add(rs.event("container", OTHER, "TERMINAL.GTOT", T0 + 600), rs.TERMINAL,
                  key_version=1)
    b.grant(rs.TERMINAL, OTHER, rs.BANK, version=0)
    b.commit()
    assert visible(track, rs.BANK, "container", OTHER) == {i: "grant" for i in grant_ids}
    assert newer not in visible(track, rs.BANK, "container", OTHER)
    assert model_event(world, newer).subject == other
    # reference: readable by whoever holds the number, not by anyone else
    assert visible(track, rs.BANK, "container", C3) == {ids["disc2"]: "reference"}
    listed, _ = asyncio.run(track.events(principal(rs.TRADER), EventQuery(), None, 100))
    assert listed == []
    # retracted events are shown as retracted
    fix = b.add(rs.event("container", C3, "TERMINAL.DISC", T0 + 103), rs.TERMINAL,
                reference=True, retracts=ids["disc2"])
    b.commit()
    seen = visible(track, rs.BANK, "container", C3)
    assert set(seen) == {ids["disc2"], fix}
    view = track.shipment_of(principal(rs.BANK), C3)
    flags = {e["eventId"]: e["retracted"] for e in view["timeline"]}
    assert flags == {ids["disc2"]: True, fix: False}


def model_event(world: dict[str, Any], event_id: int) -> IndexedEvent:
    return world["model"].event(event_id)


def test_the_plaintext_cache_is_consulted_only_after_the_authorisation_check(world: dict[str, Any]) -> None:
    track, ids = world["tracking"], world["ids"]
    assert visible(track, rs.TERMINAL, "container", OTHER)  # cached by the owner's read
    assert visible(track, rs.BANK, "container", OTHER) == {}  # cache is not a way in
    private = world["model"].event(ids["private"])
    assert track._plain.get((private.event_id, private.payload_hash)) is not None


def test_a_grant_reaches_no_newer_key_version_even_when_the_record_is_cached(
    world: dict[str, Any]
) -> None:
    track, b = world["tracking"], world["builder"]
    newer = b.add(rs.event("container", OTHER, "TERMINAL.GTOT", T0 + 600), rs.TERMINAL,
                  key_version=1)
    b.grant(rs.TERMINAL, OTHER, rs.BANK, version=0)
    b.commit()
    assert newer in visible(track, rs.TERMINAL, "container", OTHER)  # the owner opened it
    seen = visible(track, rs.BANK, "container", OTHER)
    assert seen and newer not in seen
    assert newer not in ids_of(track.shipment_of(principal(rs.BANK), OTHER))
    b.grant(rs.TERMINAL, OTHER, rs.BANK, version=1)  # a grant of the newer version reaches it
    b.commit()
    assert visible(track, rs.BANK, "container", OTHER)[newer] == "grant"
    assert newer in ids_of(track.shipment_of(principal(rs.BANK), OTHER))


def test_house_bill_holder_sees_exactly_the_covered_containers(world: dict[str, Any]) -> None:
    track, ids = world["tracking"], world["ids"]
    view = asyncio.run(track.shipment(principal(rs.TRADER), HBL.lower()))
    assert view["kind"] == "hbl" and view["reference"] == HBL
    assert [c["number"] for c in view["containers"]] == [C1, C2]
    shown = {e["eventId"] for e in view["timeline"]}
    assert ids["disc2"] not in shown and ids["mbl"] not in shown
    assert C3 not in str(view)  # not even as a related reference of a record
    assert {ids["hbl"], ids["disc0"], ids["disc1"], ids["hold"], ids["release"]} <= shown
    c1, c2 = view["containers"]
    assert c1["status"] == "customs-released" and c2["status"] == "discharged"
    assert c2["reefer"]["temperature"] == -18.2 and c2["reefer"]["setpoint"] == -18.0
    assert view["vessel"]["name"] == "PACIFIC STAR" and view["vessel"]["imo"] == "9321483"
    assert view["vessel"]["eta"]["classifier"] == "EST"
    assert view["vessel"]["eta"]["source"].startswith("Pacific Ocean Line")
    assert view["vessel"]["eta"]["freshness"] == NOW - (T0 + 20)
    assert view["masterBillOfLading"] == MBL
    assert view["carrier"] is None  # HFF is no carrier SCAC
    times = [e["time"] for e in view["timeline"]]
    assert times == sorted(times)


def test_master_bill_holder_sees_all_containers_and_the_carrier(world: dict[str, Any]) -> None:
    track = world["tracking"]
    view = asyncio.run(track.shipment(principal(rs.TRADER), f"pcol {MBL[4:]}"))
    assert view["kind"] == "mbl" and view["carrier"] == {"scac": "PCOL",
                                                          "name": "Pacific Ocean Line"}
    assert [c["number"] for c in view["containers"]] == [C1, C2, C3]
    assert view["containerCount"] == 3


def test_nothing_visible_is_404_with_suggestions_only_among_visible_references(
    world: dict[str, Any]
) -> None:
    track = world["tracking"]
    # the trader has read the house view: it knows C1, C2, the house and the master
    asyncio.run(track.shipment(principal(rs.TRADER), HBL))
    typo = C2[:-3] + "99" + C2[-1]  # wrong digits (and check digit): near C2 and C3
    with pytest.raises(errors.NotFound) as caught:
        asyncio.run(track.shipment(principal(rs.TRADER), typo))
    suggestions = [s["value"] for s in caught.value.details["suggestions"]]
    assert C2 in suggestions and C3 not in suggestions and OTHER not in suggestions
    # an organisation that has seen nothing gets no suggestions at all
    resolved = asyncio.run(track.resolve(principal(rs.BANK), typo))
    assert resolved["match"] is None and resolved["suggestions"] == []
    # the terminal learns its own records' references and may be pointed at them
    resolved = asyncio.run(track.resolve(principal(rs.TERMINAL), OTHER[:-1] + "0"))
    assert OTHER in [s["value"] for s in resolved["suggestions"]]


def test_access_log_records_reads_by_other_organisations(world: dict[str, Any]) -> None:
    track, ids, model = world["tracking"], world["ids"], world["model"]
    asyncio.run(track.shipment(principal(rs.TRADER), HBL))
    asyncio.run(track.shipment(principal(rs.TRADER), HBL))  # same window: one entry each
    asyncio.run(track.shipment(principal(rs.TERMINAL), OTHER))  # own data: not logged
    assert track.flush() > 0
    terminal_log = {(e.reader, e.event_id, e.via) for _, e in model.access_log(rs.TERMINAL)}
    assert terminal_log == {(rs.TRADER, ids["disc0"], "reference"),
                            (rs.TRADER, ids["disc1"], "reference"),
                            (rs.TRADER, ids["reefer"], "reference")}
    carrier_log = {(e.reader, e.event_id) for _, e in model.access_log(rs.CARRIER)}
    assert (rs.TRADER, ids["mbl"]) in carrier_log  # read for the vessel, so logged
    assert model.access_log(rs.TRADER) == []


# -- HTTP ---------------------------------------------------------------------------------------


def member(app: web.Application, chain_org: int) -> dict[str, str]:
    """The Authorization header of a real API key (member scopes) of an active organisation of
    the app's accounts linked to ``chain_org``, its development keys in the app's keystore."""
    org_id, header = dcsa_fixtures.organisation(
        app, DEMO_ORGANISATIONS[chain_org - 1][0], chain_org=chain_org,
        scopes=ROLE_SCOPES["member"])
    app[KEYSTORE].import_keys(org_id, signing_key=dev_key(f"org:{chain_org - 1}").to_bytes(),
                              x25519_private=rs.x25519_private(chain_org),
                              master_secret=rs.master_secret(chain_org))
    return header


async def test_http_routes(world: dict[str, Any], tmp_path: Path, aiohttp_client: Any) -> None:
    world["model"].close()
    config = GatewayConfig(data_dir=tmp_path, keystore_passphrase="test passphrase",
                           cookie_secure=False)
    app = create_app(config)  # the real middlewares: errors, API-key authentication, limits
    client = await aiohttp_client(app)
    trader = member(app, rs.TRADER)
    terminal = member(app, rs.TERMINAL)
    answer = await client.get(f"/v1/track/{HBL}", headers=trader)
    assert answer.status == 200 and answer.content_type == "application/json"
    view = await answer.json()
    assert [c["number"] for c in view["containers"]] == [C1, C2]
    again = await client.get(f"/v1/track/{HBL.lower()}", headers=trader)
    assert await again.json() == view
    scraped = await (await client.get("/metrics")).text()
    assert 'portledger_tracking_view_cache_lookups_total{result="hit"} 1.0' in scraped
    assert 'portledger_tracking_view_cache_lookups_total{result="miss"} 1.0' in scraped
    assert "portledger_tracking_view_cache_bytes " in scraped
    answer = await client.get(f"/v1/track/{C3[:-1]}0", headers=trader)
    body = await answer.json()
    assert answer.status == 404 and body["error"]["code"] == "reference-not-found"
    assert "suggestions" in body and C3 not in [s["value"] for s in body["suggestions"]]
    answer = await client.get("/v1/resolve", params={"q": HBL}, headers=trader)
    assert answer.status == 200 and (await answer.json())["match"] == {"kind": "hbl",
                                                                        "value": HBL}
    assert (await client.get(f"/v1/track/{HBL}")).status == 401
    forged = {"Authorization": trader["Authorization"][:-4] + "AAAA"}
    assert (await client.get(f"/v1/track/{HBL}", headers=forged)).status == 401
    answer = await client.get("/v1/track/%3Cscript%3E", headers=trader)
    assert answer.status == 400
    await app[appkeys.TRACKING].flush_async()
    answer = await client.get("/v1/access-log", headers=terminal)
    entries = (await answer.json())["entries"]
    assert entries and {e["readerName"] for e in entries} == {DEMO_ORGANISATIONS[12][0]}
    answer = await client.get("/v1/organisations", headers=trader)
    orgs = (await answer.json())["organisations"]
    assert len(orgs) == 13 and orgs[3]["name"].startswith("Pacific Ocean Line")


# -- the view cache -----------------------------------------------------------------------------


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def worker(world: dict[str, Any], clock: Any = lambda: NOW, **settings: Any) -> Tracking:
    """A tracking service on its own connections to the world's read-model file, as another
    worker process has (the builder writes through the world's model)."""
    model = SqliteReadModel(world["model"].path)
    world.setdefault("workers", []).append(model)
    return Tracking(model, world["store"], clock=clock,
                    settings=TrackingSettings(**settings))


def ids_of(view: dict[str, Any] | None) -> set[int]:
    return set() if view is None else {e["eventId"] for e in view["timeline"]}


def test_a_new_event_drops_the_views_that_show_its_subject_and_no_other(world: dict[str, Any]) -> None:
    b = world["builder"]
    track = worker(world)
    trader = principal(rs.TRADER)
    first = track.shipment_of(trader, C1)
    assert track.shipment_json(trader, C1) == track.shipment_json(trader, C1)
    assert track.views.hits == 2 and track.views.misses == 1
    track.shipment_of(trader, C2)
    house = track.shipment_of(trader, HBL)
    new = b.add(rs.event("container", C1, "TERMINAL.GTOT", T0 + 900), rs.TERMINAL, reference=True)
    b.commit()
    hits = track.views.hits
    assert ids_of(track.shipment_of(trader, C1)) == ids_of(first) | {new}  # the next request
    assert track.views.hits == hits
    assert new in ids_of(track.shipment_of(trader, HBL)) - ids_of(house)  # C1 is in the house
    assert track.views.hits == hits
    track.shipment_of(trader, C2)  # C2's view did not look at C1: still good
    assert track.views.hits == hits + 1
    # typed differently, normalised the same: the same cache entry
    assert track.shipment_of(trader, C2.lower()) == track.shipment_of(trader, C2)
    assert track.views.hits == hits + 3


def test_a_revocation_shows_on_the_next_request(world: dict[str, Any]) -> None:
    b = world["builder"]
    track = worker(world)
    bank = principal(rs.BANK)
    assert track.shipment_of(bank, OTHER) is None
    b.grant(rs.TERMINAL, OTHER, rs.BANK)
    b.commit()
    granted = track.shipment_of(bank, OTHER)
    assert granted is not None and {e["readableVia"] for e in granted["timeline"]} == {"grant"}
    assert track.shipment_of(bank, OTHER) == granted and track.views.hits == 1
    b.grant(rs.TERMINAL, OTHER, rs.BANK, active=False)
    b.commit()
    assert track.shipment_of(bank, OTHER) is None
    # the owner's own view was never cached with the bank's, and is unaffected
    assert len(track.shipment_of(principal(rs.TERMINAL), OTHER)["timeline"]) == 2


def test_a_view_relying_on_a_grant_lapses_with_the_grant(world: dict[str, Any]) -> None:
    b = world["builder"]
    clock = Clock(NOW)
    track = worker(world, clock)
    bank = principal(rs.BANK)
    b.grant(rs.TERMINAL, OTHER, rs.BANK, expiry=NOW + 100)
    b.commit()
    assert len(track.shipment_of(bank, OTHER)["timeline"]) == 2
    clock.now = NOW + 100  # in force up to and including its expiry second
    assert len(track.shipment_of(bank, OTHER)["timeline"]) == 2
    assert track.views.hits == 1
    clock.now = NOW + 101  # nothing was written: the clock alone ends it
    assert track.shipment_of(bank, OTHER) is None


def test_hits_record_the_access_log_like_a_fresh_build(world: dict[str, Any]) -> None:
    model, ids = world["model"], world["ids"]
    clock = Clock(NOW)
    track = worker(world, clock)
    trader = principal(rs.TRADER)
    track.shipment_of(trader, HBL)
    built = track.flush()
    assert built > 0
    clock.now = NOW + 5
    track.shipment_of(trader, HBL)
    track.shipment_of(trader, HBL)  # same flush window: one entry per owner, reader, event
    assert track.views.hits == 2
    assert track.flush() == built
    entries = [e for owner in (rs.TERMINAL, rs.CUSTOMS, rs.FORWARDER, rs.CARRIER)
               for _, e in model.access_log(owner)]
    assert len(entries) == 2 * built
    by_time = {t: {(e.owner, e.event_id, e.via) for e in entries if e.time == t}
               for t in (NOW, NOW + 5)}
    assert by_time[NOW] == by_time[NOW + 5]
    assert (rs.TERMINAL, ids["disc0"], "reference") in by_time[NOW + 5]
    assert all(e.reader == rs.TRADER for e in entries)


def test_freshness_is_written_at_serve_time(world: dict[str, Any]) -> None:
    clock = Clock(NOW)
    track = worker(world, clock)
    trader = principal(rs.TRADER)
    assert track.shipment_of(trader, HBL)["vessel"]["eta"]["freshness"] == NOW - (T0 + 20)
    clock.now = NOW + 7
    assert track.shipment_of(trader, HBL)["vessel"]["eta"]["freshness"] == NOW + 7 - (T0 + 20)
    assert track.views.hits == 1


def test_the_cache_is_bounded_in_entries_and_bytes(world: dict[str, Any]) -> None:
    track = worker(world, view_cache_entries=2)
    trader = principal(rs.TRADER)
    views = {ref: track.shipment_of(trader, ref) for ref in (C1, C2, HBL)}
    assert len(track.views) == 2 and track.views.evictions == 1
    assert track.shipment_of(trader, C1) == views[C1]  # evicted first, rebuilt alike
    assert track.views.hits == 0
    tiny = worker(world, view_cache_megabytes=1000 / (1 << 20))  # 1,000 bytes
    assert tiny.shipment_of(trader, C2) == views[C2]  # ~1.5 KB: not kept, still answered
    assert tiny.shipment_of(trader, HBL) == views[HBL]
    assert len(tiny.views) == 0 and tiny.views.bytes == 0
    small = worker(world, view_cache_megabytes=4000 / (1 << 20))
    for ref in (C1, C2, C1, C2, HBL):
        small.shipment_of(trader, ref)
        assert small.views.bytes <= 4000
    with pytest.raises(ConfigError):
        TrackingSettings.from_config(GatewayConfig(
            data_dir=Path("."), extra={"tracking": {"view_cache_entries": -1}}))
    with pytest.raises(ConfigError):
        TrackingSettings.from_config(GatewayConfig(
            data_dir=Path("."), extra={"tracking": {"view_entries": 5}}))


def test_a_directory_change_drops_every_view(world: dict[str, Any]) -> None:
    b = world["builder"]
    track = worker(world)
    trader = principal(rs.TRADER)
    track.shipment_of(trader, C1)
    track.shipment_of(trader, C2)
    b.changes = [MemberChange(Member(rs.TERMINAL, "Renamed Terminal", 0,
                                        rs.x25519_public(rs.TERMINAL), True))]
    b.commit()
    names = {e["publisherName"] for e in track.shipment_of(trader, C2)["timeline"]}
    assert names == {"Renamed Terminal"}
    assert track.views.hits == 0 and len(track.views) == 1


def test_the_change_journal(world: dict[str, Any]) -> None:
    model, b = world["model"], world["builder"]
    other_process = SqliteReadModel(model.path)
    try:
        start = model.generation()
        assert model.changed_since(start) == (start, frozenset())
        b.grant(rs.TERMINAL, OTHER, rs.BANK)
        b.add(rs.event("container", C3, "TERMINAL.GTOT", T0 + 900), rs.TERMINAL, reference=True)
        b.commit()
        assert model.generation() == other_process.generation() == start + 1  # published
        assert model.changed_since(start) == (start + 1, {subject_key(OTHER), subject_key(C3)})
        b.commit()  # nothing written: no new generation
        assert other_process.generation() == start + 1
        assert model.changed_since(start + 1) == (start + 1, frozenset())
        assert model.changed_since(start + 5) == (start + 1, None)  # from the future: all
        # who may read a subject changed off chain (a declaration's readers): noted, nothing else
        events = model.event_count()
        other_process.touch([subject_key(C1)])
        other_process.touch([])  # nothing to note: no new generation
        assert model.generation() == start + 2 and model.event_count() == events
        assert model.changed_since(start + 1) == (start + 2, {subject_key(C1)})
        start += 1
        model.reset()
        assert other_process.generation() == start + 2
        assert model.changed_since(start + 1) == (start + 2, None)
        # a writer that died between its commit and its publication: repaired within a second
        beacon = model.path.with_name(model.path.name + "-generation")
        with beacon.open("r+b") as published:  # in place (never truncate a mapped file)
            published.write((start + 1).to_bytes(8, "little"))
        late = SqliteReadModel(model.path)  # (opening also repairs it)
        assert other_process.generation() == start + 2
        late.close()
    finally:
        other_process.close()


def test_a_large_access_log_batch_is_written_whole(world: dict[str, Any]) -> None:
    model = world["model"]
    rows = [(rs.TERMINAL, rs.TRADER, 1_000_000 + i, subject_key(C1), NOW, "reference")
            for i in range(1201)]  # more than two statements' worth
    model.log_access(rows)
    seen, before = [], 0
    for _ in range(5):
        page = model.access_log(rs.TERMINAL, before=before, limit=1000)
        if not page:
            break
        seen += [e.event_id for _, e in page]
        before = page[-1][0]
    assert sorted(seen) == [r[2] for r in rows]


# -- suggestions --------------------------------------------------------------------------------


def test_a_suggestion_scans_only_lengths_that_can_match_and_at_most_scan_references() -> None:
    index = RefIndex(0.0)
    for n in range(100):
        index.add("container", rs.container("PCOU", 400000 + n))  # 11 characters
    index.add("mbl", "PCOL20240007770000000000000000")  # 30: scores < 60 against 11 at best
    index.add("hbl", "HFF20240")  # 8: may reach 84
    index.add("container", rs.container("PCOU", 400000))  # known already: not twice
    scanned = index.candidates(rs.container("PCOU", 400100), scan=1000)
    assert len(scanned) == 101 and "HFF20240" in scanned
    assert "PCOL20240007770000000000000000" not in scanned
    # the nearest length first, the most recently learned first within it
    assert index.candidates(rs.container("PCOU", 400100), scan=10) == [
        rs.container("PCOU", 400000 + n) for n in range(90, 100)]


def test_suggestions_come_from_an_index_refreshed_from_the_read_model(
    world: dict[str, Any]
) -> None:
    typo = C2[:-3] + "99" + C2[-1]
    reading = worker(world)
    stale = worker(world, suggest_refresh_seconds=3600)
    fresh = worker(world, suggest_refresh_seconds=0)
    for other in (stale, fresh):
        assert asyncio.run(other.resolve(principal(rs.TRADER), typo))["suggestions"] == []
    # another worker process reads the house view and writes what the trader learned
    asyncio.run(reading.shipment(principal(rs.TRADER), HBL))
    reading.flush()
    assert asyncio.run(stale.resolve(principal(rs.TRADER), typo))["suggestions"] == []
    suggested = asyncio.run(fresh.resolve(principal(rs.TRADER), typo))["suggestions"]
    assert C2 in [s["value"] for s in suggested] and C3 not in [s["value"] for s in suggested]
    # one organisation's index is never another's
    assert asyncio.run(fresh.resolve(principal(rs.BANK), typo))["suggestions"] == []
    # and what a worker reads itself reaches its own index at once, however old
    asyncio.run(stale.shipment(principal(rs.TRADER), HBL))
    suggested = asyncio.run(stale.resolve(principal(rs.TRADER), typo))["suggestions"]
    assert C2 in [s["value"] for s in suggested]
