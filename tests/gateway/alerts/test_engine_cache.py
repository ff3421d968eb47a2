"""The engine's cached facts and its batched writes: a subject's facts brought up to date with
new events say what a rebuild from the read model says (a document's release that does not
name the box, a new link, a retraction), and a write that fails records nothing, so the retry
records each transition once."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.alerts.calendar import hong_kong
from gateway.alerts.engine import _long_lived_frozen
from gateway.alerts.facts import Observed, build_facts
from gateway.alerts.model import Alert, Source, Transition, by_key
from gateway.alerts.rules import Settings, evaluate
from gateway.alerts.store import AlertStore, Record
from gateway.alerts.tariff import load_tariff
from gateway.app import create_app
from gateway.events.model import CanonicalEvent, Reference
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.clock_pass import TARIFF, yard
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config, event
from tests.gateway.alerts.test_engine import BOX, DECLARATION, MBL, NOW, port_story
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, CUSTOMS, TERMINAL, TRADER


async def start(path: Path) -> tuple[TestClient[Any, Any], Port]:
    client = TestClient(TestServer(create_app(config(path))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None
                     and port.store.progress("readings") is not None, what="the first looks")
    return client, port


def cache_matches_a_rebuild(port: Port) -> int:
    """Every cached (organisation, subject) facts equal the facts read again; how many."""
    engine = port.engine
    recipients = {r.org_id: r for r in engine.recipients()}
    checked = 0
    for (org_id, subject), slot in list(engine._subjects.items()):
        if slot.facts is None or org_id not in recipients:
            continue
        facts, terminal, readable = engine.facts_of(recipients[org_id], subject)
        assert slot.facts.facts == facts, (org_id, subject)
        assert (slot.facts.terminal, slot.facts.readable) == (terminal, readable)
        checked += 1
    return checked


def storage_of(port: Port, chain_org: int) -> Any:
    return next(a for a in port.alerts_of(chain_org)
                if a.kind == "not-picked-up" and a.state == "open")


async def test_cached_facts_follow_new_events_as_a_rebuild_would(tmp_path: Path) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
        port.engine.clock = lambda: NOW
        resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                                headers=port.auth[TERMINAL])
        assert resp.status == 200
        await port.engine.on_indexed(port.events)
        assert cache_matches_a_rebuild(port) >= 8
        assert storage_of(port, TRADER).figures["pick_up_blocked"] is True

        # customs releases the declaration without naming the box; then the terminal inspects
        # the box: the box's facts are read again (its document had a new event), not only
        # brought up to date with the inspection
        release = port.record(CUSTOMS, event("CUSTOMS.CUSR", "declaration", DECLARATION,
                                             hk("2026-11-08 08:00")),
                              block_time=hk("2026-11-08 08:05"), readers=(TRADER,))
        await port.engine.on_indexed([release])
        inspection = port.record(TERMINAL, event("EQUIPMENT.INSP", "container", BOX,
                                                 hk("2026-11-08 09:00")),
                                 block_time=hk("2026-11-08 09:05"), readers=(CARRIER,),
                                 reference=True)
        await port.engine.on_indexed([inspection])
        meter = storage_of(port, TRADER)
        assert meter.figures["pick_up_blocked"] is False and meter.figures["holds"] == []
        assert cache_matches_a_rebuild(port) >= 8

        # a gate-out brought into the cached facts resolves the meter for every party
        gtot = port.record(TERMINAL, event("TERMINAL.GTOT", "container", BOX,
                                           hk("2026-11-08 09:30"), related=[("mbl", MBL)]),
                           block_time=hk("2026-11-08 09:35"), readers=(CARRIER,),
                           reference=True)
        await port.engine.on_indexed([gtot])
        for chain_org in (TERMINAL, CARRIER, TRADER):
            final = next(a for a in port.alerts_of(chain_org) if a.kind == "not-picked-up")
            assert final.state == "resolved" and final.figures["reason"] == "gated-out"
            assert str(gtot.event_id) in {s.ref for s in final.sources}
        assert cache_matches_a_rebuild(port) >= 8

        # a retraction: every cached fact is read again
        generation = port.engine._generation
        retraction = port.record(
            TERMINAL, event("TERMINAL.GTOT", "container", BOX, hk("2026-11-08 09:40"),
                            retracts=gtot.event_id),
            block_time=hk("2026-11-08 10:05"), readers=(CARRIER,), reference=True,
            retracts=gtot.event_id)
        await port.engine.on_indexed([retraction])
        assert port.engine._generation == generation + 1
        assert cache_matches_a_rebuild(port) >= 8
    finally:
        await client.close()


async def test_a_failed_write_records_nothing_and_the_retry_records_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
        port.engine.clock = lambda: NOW
        resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                                headers=port.auth[TERMINAL])
        assert resp.status == 200
        store = port.store
        calls = {"n": 0}
        real_seal: Callable[[str, str, int], bytes] = store._seal

        def failing_seal(text: str, table: str, org_id: int) -> bytes:
            calls["n"] += 1
            if calls["n"] == 3:  # mid-batch: after a few rows were prepared
                raise OSError("disk gone")
            return real_seal(text, table, org_id)

        monkeypatch.setattr(store, "_seal", failing_seal)
        await port.engine.on_indexed(port.events)  # one organisation's evaluation fails
        failed = store._db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        monkeypatch.setattr(store, "_seal", real_seal)
        await port.engine.on_indexed(port.events)  # the indexer's retry
        await port.engine.on_indexed(port.events)  # and once more: nothing new
        rows = store._db.execute(
            "SELECT a.key, COUNT(t.id), MAX(t.id) = a.change_seq FROM alerts a JOIN "
            "transitions t ON t.alert_id = a.id GROUP BY a.id").fetchall()
        assert rows and all(n == 1 and latest for _, n, latest in rows), rows
        assert len(rows) > failed
        for chain_org in (TERMINAL, CARRIER, TRADER):
            assert any(a.kind == "not-picked-up" for a in port.alerts_of(chain_org))
    finally:
        await client.close()


def test_a_batch_writes_episodes_in_order_and_transitions_against_their_rows(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db", secret=b"\x02" * 32)
    try:
        box = Reference("container", BOX)
        first = Alert("not-picked-up", box, "1", "open", 100, 100,
                      figures={"accrued": 100}, next_check=200)
        later = Alert("not-picked-up", box, "1", "open", 100, 200,
                      figures={"accrued": 200}, next_check=300)
        hold = Alert("customs-hold", box, "7", "open", 50, 200)
        ids = store.record_many([
            Record(1, [first], [Transition("opened", first)], {box: None}),
            Record(1, [later, hold], [Transition("updated", later, first)], {box: 400}),
            Record(2, [first], [Transition("opened", first)], {box: None}, deliver=False),
        ])
        assert len(ids) == 3 and ids == sorted(ids)
        states = store.states_of(1, box)
        assert states[later.key].figures == {"accrued": 200}
        assert states[later.key].next_check == 300 and hold.key in states
        assert store.states_of(2, box)[first.key].figures == {"accrued": 100}
        rows = store._db.execute(
            "SELECT t.id, t.change, a.org_id, a.change_seq, t.dispatched FROM transitions t "
            "JOIN alerts a ON a.id = t.alert_id ORDER BY t.id").fetchall()
        assert rows == [(ids[0], "opened", 1, ids[1], 0), (ids[1], "updated", 1, ids[1], 0),
                        (ids[2], "opened", 2, ids[2], 1)]
        (alert_id,) = store._db.execute("SELECT id FROM alerts WHERE org_id = 1 AND key = ?",
                                        (first.key,)).fetchone()
        assert [h["alert"]["accrued"] for h in store.history(alert_id)] == [100, 200]
        assert store.due(199) == [] and store.due(250) == [(2, box)]
        assert store.due(300) == [(1, box), (2, box)]
        # a pending transition opens its body only when asked for
        [pending] = [t for t in store.undispatched() if t.change == "updated"]
        assert pending.body["accrued"] == 200 and pending.body["change"] == "updated"
    finally:
        store.close()


def test_an_episode_row_seals_its_figures_and_rows_sealed_whole_still_read(
        tmp_path: Path) -> None:
    """An episode's row seals its figures and sources (the rest is in its columns); a row
    written before, with the whole JSON form sealed, reads as the same episode."""
    store = AlertStore(tmp_path / "alerts.db", secret=b"\x03" * 32)
    try:
        box = Reference("container", BOX)
        alert = Alert("not-picked-up", box, "1", "open", 100, 150,
                      figures={"accrued": 100, "holds": []},
                      sources=(Source("event", "5", "Terminal"),), next_check=200)
        [tid] = store.record(1, [alert], [Transition("opened", alert)], {box: None})
        (sealed,) = store._db.execute("SELECT body FROM alerts").fetchone()
        assert json.loads(store._open(sealed, "alerts", 1)) == {
            "accrued": 100, "holds": [], "sources": [
                {"kind": "event", "ref": "5", "publisher": "Terminal"}]}
        # the transition tells the whole JSON form, as before
        [told_row] = store.history(1)
        assert told_row["alert"] == {"change": "opened", **alert.to_json()}
        assert store.states_of(1, box) == {alert.key: alert}
        # a row as written before: the whole JSON form sealed
        store._db.execute("UPDATE alerts SET body = ?", (
            store._seal(json.dumps(alert.to_json()), "alerts", 1),))
        assert store.states_of(1, box) == {alert.key: alert}
        assert tid == told_row["id"]
    finally:
        store.close()


def test_facts_evaluated_day_after_day_say_what_fresh_facts_say() -> None:
    """The storage rule keeps what the clock does not change with the facts (the clock pass
    evaluates the same cached facts every day): the same alerts and transitions as facts
    built afresh, every day, through warnings, last free days, holds and gate-outs."""
    calendar = hong_kong()
    tariff = load_tariff(TARIFF.read_bytes())
    start = calendar.day_start(calendar.local_date(hk("2026-11-02 10:00"))) + 10 * 3600
    events = yard(300, start)
    gates = [Observed(CanonicalEvent("TERMINAL.GTOT", "ACT",
                                     start + (i % 9) * 86_400 + 3600 * (i % 7),
                                     o.event.subject, "HKHKG"),
                      order=10_000 + i, publisher="Terminal", ref=f"g{i}")
             for i, o in enumerate(events)
             if o.event.event_type == "TERMINAL.AVPU" and i % 3 == 0]
    kept = build_facts([*events, *gates])
    previous_kept: dict[str, Alert] = {}
    previous_fresh: dict[str, Alert] = {}
    for day in range(14):
        now = start + day * 86_400 + (day % 3) * 3600
        fresh = build_facts([*events, *gates])
        a = evaluate(kept, Settings(), tariff, None, now, previous_kept)
        b = evaluate(fresh, Settings(), tariff, None, now, previous_fresh)
        assert [x.to_json() for x in a.alerts] == [x.to_json() for x in b.alerts]
        assert [(t.change, t.alert.to_json()) for t in a.transitions] == [
            (t.change, t.alert.to_json()) for t in b.transitions]
        assert a.wake == b.wake
        previous_kept.update(by_key(a.alerts))
        previous_fresh.update(by_key(b.alerts))
    assert {x.kind for x in previous_kept.values()} == {"free-time-ending", "not-picked-up",
                                                         "customs-hold"}


def test_the_clock_pass_leaves_the_collector_as_it_found_it() -> None:
    gc.collect()
    assert gc.get_freeze_count() == 0
    with _long_lived_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # something else froze objects: left alone
    try:
        frozen = gc.get_freeze_count()
        with _long_lived_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
