"""The alert engine in the real gateway: incremental evaluation per organisation over what it may
read (real sealed envelopes, the real tracking visibility rules), follows, the clock pass,
telemetry readings, restart safety, and a competitor that gets nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.alerts.rules import as_of
from gateway.alerts.store import AlertStore, AlertStoreError
from gateway.app import create_app
from gateway.appkeys import TELEMETRY
from gateway.events.model import Reference, Visibility
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import Reading
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config, event
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, CUSTOMS, FORWARDER, TERMINAL, TRADER

BOX = "CSQU3054383"
REEFER = "PCOU2000026"
IMO = "9321483"
MBL = "PCOL1234567"
DECLARATION = "HKD2026110001"
NOW = hk("2026-11-08 10:00")


def kinds(alerts: list[Any], state: str | None = "open") -> list[tuple[str, str, str]]:
    """(kind, subject, state) of the alerts (only those in ``state``, unless None)."""
    return sorted((a.kind, a.subject.value, a.state) for a in alerts
                  if state is None or a.state == state)


async def start(path: Path, **alerts: Any) -> tuple[TestClient, Port]:
    client = TestClient(TestServer(create_app(config(path, **alerts))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None
                     and port.store.progress("readings") is not None, what="the first looks")
    return client, port


async def port_story(port: Port) -> dict[str, Any]:
    """A late vessel, a discharged box with a customs hold on its declaration, and a terminal
    tariff; what each party was given to read differs."""
    for chain_org, name in [(TERMINAL, "Hong Kong Container Terminal"),
                            (CARRIER, "Pacific Ocean Line"), (TRADER, "Sino Trading Company"),
                            (CUSTOMS, "Customs"), (FORWARDER, "Competing Forwarder")]:
        port.member(chain_org, name)
    client_auth = port.auth[TERMINAL]
    ids: dict[str, Any] = {}
    first = port.record(CARRIER, event("TRANSPORT.ARRI", "vessel", IMO, hk("2026-11-05 08:00"),
                                       classifier="EST"),
                        block_time=hk("2026-11-01 09:00"), readers=(TRADER,))
    later = port.record(CARRIER, event("TRANSPORT.ARRI", "vessel", IMO, hk("2026-11-06 14:00"),
                                       classifier="EST"),
                        block_time=hk("2026-11-02 09:00"), readers=(TRADER,))
    disc = port.record(TERMINAL, event("TERMINAL.DISC", "container", BOX, hk("2026-11-02 08:00"),
                                       related=[("mbl", MBL)],
                                       details={"ISOEquipmentCode": "22G1", "carrier": "PCOL"}),
                       block_time=hk("2026-11-02 08:05"), readers=(CARRIER,), reference=True)
    avpu = port.record(TERMINAL, event("TERMINAL.AVPU", "container", BOX, hk("2026-11-02 09:00")),
                       block_time=hk("2026-11-02 09:05"), readers=(CARRIER,), reference=True)
    hold = port.record(CUSTOMS, event("CUSTOMS.CUSH", "declaration", DECLARATION,
                                      hk("2026-11-03 10:00"), related=[("container", BOX)],
                                      details={"reason": "document check"}),
                       block_time=hk("2026-11-03 10:05"), readers=(TRADER,))
    ids.update(first=first, later=later, disc=disc, avpu=avpu, hold=hold, auth=client_auth)
    return ids


async def test_each_party_gets_the_alerts_of_what_it_may_read(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        story = await port_story(port)
        port.engine.clock = lambda: NOW
        resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                                headers=port.auth[TERMINAL])
        assert resp.status == 200, await resp.text()
        resp = await client.post("/v1/alerts/follows", headers=port.auth[TRADER],
                                 json={"references": [{"kind": "container", "value": BOX}]})
        assert resp.status == 201
        await port.engine.on_indexed(port.events)

        carrier = port.alerts_of(CARRIER)
        assert kinds(carrier) == [("not-picked-up", BOX, "open"), ("vessel-delay", IMO, "open")]
        storage = next(a for a in carrier if a.kind == "not-picked-up")
        assert as_of(storage.to_json(), NOW)["accrued"] == 200
        assert storage.figures["per_day"] == 100
        assert storage.figures["last_free_day"] == "2026-11-06"
        assert storage.figures["tariff"] == "base"
        # the carrier may not read the customs hold: neither the alert nor its figures show it
        assert storage.figures["pick_up_blocked"] is False and storage.figures["holds"] == []
        readable_by_carrier = {str(story[k].event_id) for k in ("first", "later", "disc", "avpu")}
        for alert in carrier:
            assert {s.ref for s in alert.sources} <= readable_by_carrier
        delay = next(a for a in carrier if a.kind == "vessel-delay")
        assert delay.figures["slip_hours"] == 30.0

        # the trader follows the box (reference-readable terminal events) and was named on the
        # carrier's ETAs and on the customs hold, so it sees the hold as the pick-up's blocker
        trader = port.alerts_of(TRADER)
        assert kinds(trader) == [("customs-hold", DECLARATION, "open"),
                                 ("not-picked-up", BOX, "open"), ("vessel-delay", IMO, "open")]
        blocked = next(a for a in trader if a.kind == "not-picked-up")
        assert blocked.figures["pick_up_blocked"] is True
        assert str(story["hold"].event_id) in {s.ref for s in blocked.sources}

        # the terminal owns the box's events: storage alert, no hold, no vessel delay
        assert kinds(port.alerts_of(TERMINAL)) == [("not-picked-up", BOX, "open")]
        # customs holds the box's number (its declaration names it) and the terminal published
        # the box's events readable by reference holders: as if it typed the number into
        # tracking, it reads them — and its own hold blocks the pick-up
        customs = port.alerts_of(CUSTOMS)
        assert kinds(customs) == [("customs-hold", DECLARATION, "open"),
                                  ("not-picked-up", BOX, "open")]
        assert next(a for a in customs if a.kind == "not-picked-up").figures["pick_up_blocked"]
        # the competitor may read nothing of it: no alert at all
        assert port.alerts_of(FORWARDER) == []

        # the same batch again (an indexer retry): nothing new is recorded
        before = port.engine.transitions
        await port.engine.on_indexed(port.events)
        assert port.engine.transitions == before
    finally:
        await client.close()


async def test_updates_resolutions_clock_and_restart(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
        resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                                headers=port.auth[TERMINAL])
        assert resp.status == 200
        port.engine.clock = lambda: hk("2026-11-05 10:00")  # inside the warning (LFD 6 Nov)
        await port.engine.on_indexed(port.events)
        assert ("free-time-ending", BOX, "open") in kinds(port.alerts_of(TERMINAL))

        # the clock alone: the LFD ends at midnight; the pass finds the box due
        assert await port.engine.clock_pass(hk("2026-11-06 12:00")) == 0
        moved = await port.engine.clock_pass(hk("2026-11-07 00:30"))
        assert moved >= 2  # free-time-ending resolved, not-picked-up opened (per party)
        assert ("not-picked-up", BOX, "open") in kinds(port.alerts_of(TERMINAL))
        assert ("free-time-ending", BOX, "resolved") in kinds(port.alerts_of(TERMINAL), None)
        # the next midnight adds a day of charges, which changes no state: nothing is due,
        # nothing recorded; read then, the meter shows the day
        meter = next(a for a in port.alerts_of(TERMINAL) if a.kind == "not-picked-up")
        assert meter.next_check == hk("2026-11-11 00:00")  # HK$200 a day from day 11
        assert await port.engine.clock_pass(hk("2026-11-08 00:30")) == 0
        assert next(a for a in port.alerts_of(TERMINAL) if a.kind == "not-picked-up") == meter
        shown = as_of(meter.to_json(), hk("2026-11-08 00:30"))
        assert shown["accrued"] == 200 and shown["days_in_yard"] == 7
    finally:
        await client.close()

    # a restart over the same data: the same episodes, nothing recorded twice
    client, port2 = await start(tmp_path / "gw")
    try:
        port2.orgs, port2.events = port.orgs, list(port.events)
        port2.engine.clock = lambda: hk("2026-11-08 00:30")
        await wait_until(lambda: port2.store.progress("events") is not None, what="catch-up")
        before = port2.store._db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        await port2.engine.on_indexed(port.events)
        await port2.engine.catch_up()
        after = port2.store._db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        assert after == before
        # the next check survived the restart: the box is due when its band changes, not before
        terminal = port2.orgs[TERMINAL]
        assert (terminal, Reference("container", BOX)) not in port2.store.due(
            hk("2026-11-10 23:59"))
        assert (terminal, Reference("container", BOX)) in port2.store.due(hk("2026-11-11 00:00"))
        assert await port2.engine.clock_pass(hk("2026-11-11 00:00")) >= 1
        banded = next(a for a in port2.alerts_of(TERMINAL) if a.kind == "not-picked-up")
        assert (banded.figures["per_day"], banded.next_check) == (200, None)
        # gate-out resolves the meter with its final figures
        gtot = port2.record(TERMINAL, event("TERMINAL.GTOT", "container", BOX,
                                           hk("2026-11-08 09:00")),
                           block_time=hk("2026-11-08 09:05"), readers=(CARRIER,),
                           reference=True)
        port2.engine.clock = lambda: hk("2026-11-08 10:00")
        await port2.engine.on_indexed([gtot])
        final = next(a for a in port2.alerts_of(TERMINAL) if a.kind == "not-picked-up")
        assert final.state == "resolved" and final.figures["reason"] == "gated-out"
        assert final.figures["accrued"] == 200
    finally:
        await client.close()


async def test_a_first_start_records_history_without_sending_it(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
    finally:
        await client.close()
    # the story was indexed before the alert engine ever ran: its databases are new
    for name in ("alerts.db", "alert_webhooks.db"):
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / "gw" / (name + suffix)).unlink(missing_ok=True)
    client = TestClient(TestServer(create_app(config(tmp_path / "gw"))))
    await client.start_server()
    try:
        again = Port(client.app, orgs=port.orgs)
        await wait_until(lambda: again.store.progress("events") is not None, what="catch-up")
        # (evaluated as of the real clock: the call is long over, the episode resolved)
        assert [a.kind for a in again.alerts_of(CARRIER)][:1] == ["vessel-delay"]
        assert again.alerts_of(FORWARDER) == []
        assert again.store.undispatched() == []  # recorded as dispatched: old news
    finally:
        await client.close()


async def test_reefer_readings_raise_an_excursion_for_their_readers(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        port.member(TERMINAL, "Hong Kong Container Terminal")
        port.member(CARRIER, "Pacific Ocean Line")
        port.member(FORWARDER, "Competing Forwarder")
        start_at = hk("2026-11-04 10:00")
        port.engine.clock = lambda: start_at + 3 * 3600
        await wait_until(lambda: port.store.progress("readings") is not None,
                         what="the reading poll's first look")
        readings = [Reading("reefer", start_at + i * 600, Reference("container", REEFER),
                            {"temperature": t, "setpoint": -18.0})
                    for i, t in enumerate([-18.2, -17.9, -15.0, -14.6, -14.9, -15.2, -17.8])]
        await telemetry.ingest(client.app, port.orgs[TERMINAL], readings[:6],
                               Visibility("named", (CARRIER,)))
        await wait_until(lambda: any(a.kind == "reefer-excursion"
                                     for a in port.alerts_of(CARRIER)), what="excursion")
        [excursion] = [a for a in port.alerts_of(CARRIER) if a.kind == "reefer-excursion"]
        assert excursion.state == "open" and excursion.figures["peak_deviation"] == 3.4
        owned = [a for a in port.alerts_of(TERMINAL) if a.kind == "reefer-excursion"]
        assert [a.state for a in owned] == ["open"]
        ids = {str(s.id) for s in client.app[TELEMETRY].history(
            "reefer", subject=Reference("container", REEFER))[0]}
        assert {s.ref for s in excursion.sources} <= ids
        # back in tolerance: resolved
        await telemetry.ingest(client.app, port.orgs[TERMINAL], readings[6:],
                               Visibility("named", (CARRIER,)))
        await wait_until(lambda: [a.state for a in port.alerts_of(CARRIER)] == ["resolved"],
                         what="resolution")
        await asyncio.sleep(0.2)
        assert port.alerts_of(FORWARDER) == []
    finally:
        await client.close()


async def test_a_retracted_hold_withdraws_the_episode(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        story = await port_story(port)
        port.engine.clock = lambda: NOW
        await port.engine.on_indexed(port.events)
        assert ("customs-hold", DECLARATION, "open") in kinds(port.alerts_of(TRADER))
        hold = story["hold"]
        correction = port.record(
            CUSTOMS, event("CUSTOMS.CUSH", "declaration", DECLARATION, hk("2026-11-03 11:00"),
                           related=[("container", BOX)], retracts=hold.event_id),
            block_time=hk("2026-11-07 09:00"), readers=(TRADER,), retracts=hold.event_id)
        # the correction says the hold began at 11:00, not 10:00: the first episode rested on
        # a record that is gone (withdrawn), the corrected one is a new episode
        await port.engine.on_indexed([correction])
        trader = port.alerts_of(TRADER)
        holds = [(a.state, a.figures.get("reason"), {s.ref for s in a.sources})
                 for a in trader if a.kind == "customs-hold"]
        assert sorted(holds) == [("open", None, {str(correction.event_id)}),
                                 ("resolved", "withdrawn", {str(hold.event_id)})]
    finally:
        await client.close()


async def test_alert_bodies_are_sealed_at_rest(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
        port.engine.clock = lambda: NOW
        await port.engine.on_indexed(port.events)
        assert any(a.figures.get("remark") == "document check" for a in port.alerts_of(TRADER))
        port.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await client.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "gw").glob("alerts.db*"))
    assert b"document check" not in raw and b"Pacific Ocean Line" not in raw
    assert BOX.encode() in raw  # reference numbers are kept in clear (subjects, links)
    other = AlertStore(tmp_path / "gw" / "alerts.db", secret=b"\x01" * 32)
    try:
        with pytest.raises(AlertStoreError):
            other.states_of(port.orgs[TRADER], Reference("declaration", DECLARATION))
    finally:
        other.close()
