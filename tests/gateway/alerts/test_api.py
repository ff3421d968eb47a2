"""The alerts HTTP API in the real gateway: inbox filters, unread counts and read marks per
reader, follows, preferences, organisation settings, published tariffs (terminal and carrier
override, validation, only the owner publishes) and the storage meter of a box."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.appkeys import ACCOUNTS
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config, event
from tests.gateway.alerts.test_engine import BOX, IMO, NOW, port_story
from tests.support.accounts import login
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, FORWARDER, TERMINAL, TRADER

PASSWORD = "correct horse battery staple"


async def started(path: Path) -> tuple[TestClient, Port]:
    client = TestClient(TestServer(create_app(config(path))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None, what="first look")
    await port_story(port)
    port.engine.clock = lambda: NOW
    return client, port


async def body(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_inbox_unread_and_read_marks(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        put = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                               headers=port.auth[TERMINAL])
        await body(put)
        await body(await client.post("/v1/alerts/follows", headers=port.auth[TRADER], json={
            "references": [{"kind": "container", "value": "csqu 305438-3"}]}), 201)
        await port.engine.on_indexed(port.events)
        auth = port.auth[TRADER]
        listed = (await body(await client.get("/v1/alerts?state=open", headers=auth)))["alerts"]
        assert sorted(a["kind"] for a in listed) == ["customs-hold", "not-picked-up",
                                                     "vessel-delay"]
        meter = next(a for a in listed if a["kind"] == "not-picked-up")
        assert meter["accrued"] == 200 and meter["read"] is False
        assert meter["summary"].startswith("Not picked up — container CSQU3054383")
        of_box = await body(await client.get(f"/v1/alerts?subject=container:{BOX}",
                                             headers=auth))
        assert {a["subject"]["value"] for a in of_box["alerts"]} == {BOX}
        etas = await body(await client.get(f"/v1/alerts/vessels/IMO{IMO}/etas", headers=auth))
        assert [(e["source"], e["slip_hours"]) for e in etas["etas"]] == [
            ("Pacific Ocean Line", 0.0), ("Pacific Ocean Line", 30.0)]
        assert etas["arrivals"] == []
        assert (await client.get(f"/v1/alerts/vessels/{IMO}/etas",
                                 headers=port.auth[FORWARDER])).status == 404
        only = await body(await client.get("/v1/alerts?kind=vessel-delay,customs-hold",
                                           headers=auth))
        assert sorted(a["kind"] for a in only["alerts"]) == ["customs-hold", "vessel-delay"]
        assert (await body(await client.get("/v1/alerts/unread-count", headers=auth))) == {
            "unread": 4}  # with the free-time warning that ended unseen (resolved)
        # a signed-in user of the trader has marks of their own
        client.app[ACCOUNTS].create_user(port.orgs[TRADER], "ops@sino.example", PASSWORD,
                                         "member")
        resp = await client.post(f"/v1/alerts/{meter['id']}/read", headers=auth)
        assert resp.status == 204
        assert (await body(await client.get("/v1/alerts/unread-count", headers=auth)))[
            "unread"] == 3
        csrf = await login(client, "ops@sino.example", PASSWORD)
        user = {"X-CSRF-Token": csrf}
        assert (await body(await client.get("/v1/alerts/unread-count")))["unread"] == 4
        marked = await body(await client.post("/v1/alerts/read", json={"all": True},
                                              headers=user))
        assert marked == {"read": 4}
        assert (await body(await client.get("/v1/alerts/unread-count")))["unread"] == 0
        assert (await body(await client.get("/v1/alerts?unread=true")))["alerts"] == []
        # a user's kinds decide their inbox and badge
        await body(await client.put("/v1/alerts/preferences", headers=user,
                                    json={"kinds": ["vessel-delay"]}))
        mine = await body(await client.get("/v1/alerts"))
        assert [a["kind"] for a in mine["alerts"]] == ["vessel-delay"]
        client.session.cookie_jar.clear()
        # a day later the call expired: unread again; the meter took a new day's charge, which
        # is no change of state (its money is worked out when read): it stays read
        await body(await client.post("/v1/alerts/read", json={"all": True}, headers=auth))
        await port.engine.clock_pass(hk("2026-11-09 00:30"))
        port.engine.clock = lambda: hk("2026-11-09 00:30")
        again = await body(await client.get("/v1/alerts?unread=true", headers=auth))
        assert sorted((a["kind"], a["state"]) for a in again["alerts"]) == [
            ("vessel-delay", "resolved")]
        listed = await body(await client.get("/v1/alerts?kind=not-picked-up", headers=auth))
        (read_meter,) = listed["alerts"]
        assert (read_meter["accrued"], read_meter["days_in_yard"]) == (300, 8)
        assert read_meter["read"] is True and "basis" not in read_meter
        one = await body(await client.get(f"/v1/alerts/{meter['id']}", headers=auth))
        # opened when followed, updated by the hold's link; no row for the new day
        assert [h["change"] for h in one["history"]] == ["opened", "updated"]
        assert one["accrued"] == 300
        # the read figures are the storage meter's (worked out from the facts, the tariff, now)
        shown = await body(await client.get(f"/v1/alerts/storage/{BOX}", headers=auth))
        assert {k: shown[k] for k in ("accrued", "per_day", "days_in_yard", "days_left",
                                      "charged_days", "last_free_day")} == {
            k: one[k] for k in ("accrued", "per_day", "days_in_yard", "days_left",
                                "charged_days", "last_free_day")}
        # the rate band changes (HK$200 a day from day 11, a 20'): a transition, unread again,
        # with the new per_day; its history row says so
        await body(await client.post("/v1/alerts/read", json={"all": True}, headers=auth))
        await port.engine.clock_pass(hk("2026-11-11 00:00"))
        port.engine.clock = lambda: hk("2026-11-11 10:00")
        again = await body(await client.get("/v1/alerts?unread=true", headers=auth))
        assert [(a["kind"], a["per_day"], a["accrued"]) for a in again["alerts"]] == [
            ("not-picked-up", 200, 500)]
        one = await body(await client.get(f"/v1/alerts/{meter['id']}", headers=auth))
        assert [h["change"] for h in one["history"]] == ["opened", "updated", "updated"]
        # another organisation's alert is not found; bad filters are 400
        assert (await client.get(f"/v1/alerts/{meter['id']}",
                                 headers=port.auth[FORWARDER])).status == 404
        assert (await client.post(f"/v1/alerts/{meter['id']}/read",
                                  headers=port.auth[FORWARDER])).status == 404
        for query in ("state=closed", "kind=late", "unread=maybe", "limit=0", "colour=red"):
            assert (await client.get(f"/v1/alerts?{query}", headers=auth)).status == 400, query
        assert (await client.get("/v1/alerts")).status == 401
    finally:
        await client.close()


async def test_follows(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        await body(await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}",
                                    json=ISSUE_TARIFF, headers=port.auth[TERMINAL]))
        auth = port.auth[FORWARDER]
        assert (await body(await client.get("/v1/alerts/follows", headers=auth))) == {
            "follows": []}
        added = await body(await client.post("/v1/alerts/follows", headers=auth, json={
            "references": [{"kind": "container", "value": BOX},
                           {"kind": "vessel", "value": IMO}]}), 201)
        assert added == {"added": 2, "follows": 2}
        again = await body(await client.post("/v1/alerts/follows", headers=auth, json={
            "references": [{"kind": "container", "value": BOX}]}))
        assert again == {"added": 0, "follows": 2}
        bad = await client.post("/v1/alerts/follows", headers=auth, json={
            "references": [{"kind": "container", "value": "CSQU3054384"}]})
        assert bad.status == 422 and (await bad.json())["error"]["code"] == "invalid-check-digit"
        listed = await body(await client.get("/v1/alerts/follows", headers=auth))
        assert [(f["kind"], f["value"]) for f in listed["follows"]] == [("container", BOX),
                                                                        ("vessel", IMO)]
        # following the box opens the terminal's reference-readable events (it holds the
        # number now) — nothing the carrier kept to named readers: the ETAs stay closed
        await port.engine.on_indexed(port.events)
        kinds = [a["kind"] for a in (await body(await client.get(
            "/v1/alerts?state=open", headers=auth)))["alerts"]]
        assert kinds == ["not-picked-up"]
        def followed() -> set[tuple[str, str]]:  # as the engine holds them (by subject key)
            r = port.engine.recipient(port.orgs[FORWARDER])
            return {(ref.kind, ref.value) for ref in r.follows.values()}

        assert followed() == {("container", BOX), ("vessel", IMO)}
        gone = await client.delete("/v1/alerts/follows?subject=vessel:9321483", headers=auth)
        assert gone.status == 204
        await port.engine.sync_follows()  # one went: read again
        assert followed() == {("container", BOX)}
        await body(await client.post("/v1/alerts/follows", headers=auth, json={
            "references": [{"kind": "vessel", "value": IMO}]}), 201)
        assert followed() == {("container", BOX), ("vessel", IMO)}  # added to what it held
        assert (await client.delete("/v1/alerts/follows?subject=vessel:9321483",
                                    headers=auth)).status == 204
        assert (await client.delete("/v1/alerts/follows?subject=vessel:9321483",
                                    headers=auth)).status == 404
        assert (await client.delete("/v1/alerts/follows?subject=colour:red",
                                    headers=auth)).status == 400
    finally:
        await client.close()


async def test_tariffs_and_the_storage_meter(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        terminal = port.auth[TERMINAL]
        # only the organisation itself publishes its tariff; it is validated
        assert (await client.put(f"/v1/alerts/tariffs/terminal/{CARRIER}", json=ISSUE_TARIFF,
                                 headers=terminal)).status == 403
        broken = {**ISSUE_TARIFF, "bands": [{"from_day": 7, "per_day": {"20": 1}}]}
        resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=broken,
                                headers=terminal)
        error = (await body(resp, 422))["error"]
        assert error["code"] == "band-gap" and error["details"]["path"].startswith("/bands")
        assert (await client.get(f"/v1/alerts/tariffs/terminal/{TERMINAL}",
                                 headers=terminal)).status == 404
        published = await body(await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}",
                                                json=ISSUE_TARIFF, headers=terminal))
        assert published["summary"]["free_days"] == 5
        got = await body(await client.get(f"/v1/alerts/tariffs/terminal/{TERMINAL}",
                                          headers=port.auth[TRADER]))
        assert got["tariff"]["label"] == "EXAMPLE ONLY (tests)"

        # the meter as the carrier (a named reader of the terminal's events) sees it
        meter = await body(await client.get(f"/v1/alerts/storage/{BOX}",
                                            headers=port.auth[CARRIER]))
        assert meter["in_yard"] is True and meter["last_free_day"] == "2026-11-06"
        assert (meter["days_in_yard"], meter["accrued"], meter["per_day"]) == (7, 200, 100)
        assert meter["tariff"] == "base" and meter["pick_up_blocked"] is False
        # the trader holds the box's number and may read the customs hold: it shows the reason
        await body(await client.post("/v1/alerts/follows", headers=port.auth[TRADER], json={
            "references": [{"kind": "container", "value": BOX}]}), 201)
        await port.engine.on_indexed(port.events)
        seen = await body(await client.get(f"/v1/alerts/storage/{BOX}",
                                           headers=port.auth[TRADER]))
        assert seen["hold_reason"] == "customs-hold" and seen["pick_up_blocked"] is True
        # whoever holds a box's number reads what the terminal published readable by
        # reference holders (as tracking shows it); a box kept to named readers stays closed
        private = "MSKU3000015"
        port.record(TERMINAL, event("TERMINAL.DISC", "container", private,
                                    hk("2026-11-02 08:00")),
                    block_time=hk("2026-11-02 08:05"), readers=(CARRIER,))
        assert (await client.get(f"/v1/alerts/storage/{private}",
                                 headers=port.auth[FORWARDER])).status == 404
        shown = await body(await client.get(f"/v1/alerts/storage/{private}",
                                            headers=port.auth[CARRIER]))
        assert shown["size"] == "40" and shown["size_known"] is False  # the default size
        assert (await client.get("/v1/alerts/storage/CSQU3054384",
                                 headers=port.auth[CARRIER])).status == 422

        # the carrier publishes its own tariff for its SCAC: 7 free days win for its boxes
        carrier_tariff = {**ISSUE_TARIFF, "free_days": 7, "scac": ["pcol"],
                          "bands": [{"from_day": 8, "per_day": {"20": 150, "40": 300,
                                                                "45": 300, "reefer": 500}}]}
        assert (await client.put(f"/v1/alerts/tariffs/carrier/{CARRIER}",
                                 json={k: v for k, v in carrier_tariff.items() if k != "scac"},
                                 headers=port.auth[CARRIER])).status == 422
        await body(await client.put(f"/v1/alerts/tariffs/carrier/{CARRIER}",
                                    json=carrier_tariff, headers=port.auth[CARRIER]))
        meter = await body(await client.get(f"/v1/alerts/storage/{BOX}",
                                            headers=port.auth[CARRIER]))
        assert meter["tariff"] == "carrier:PCOL" and meter["last_free_day"] == "2026-11-08"
        assert meter["accrued"] == 0 and meter["per_day"] == 150
        # alerts follow: the box is back inside its free time (warning, not past it)
        await port.engine.on_indexed(port.events)
        listed = (await body(await client.get("/v1/alerts", headers=port.auth[CARRIER])))
        of_box = sorted((a["kind"], a["state"], a.get("reason")) for a in listed["alerts"]
                        if a["subject"]["value"] == BOX)
        assert of_box == [("free-time-ending", "open", None),
                          ("not-picked-up", "resolved", "withdrawn")]
    finally:
        await client.close()


async def test_settings_and_preferences(tmp_path: Path) -> None:
    client, port = await started(tmp_path / "gw")
    try:
        auth = port.auth[TRADER]
        current = await body(await client.get("/v1/alerts/settings", headers=auth))
        assert current["effective"]["vessel"]["delay_hours"] == 24.0
        changed = await body(await client.put("/v1/alerts/settings", headers=auth,
                                              json={"vessel": {"delay_hours": 40}}))
        assert changed["effective"]["vessel"]["delay_hours"] == 40.0
        bad = await client.put("/v1/alerts/settings", headers=auth,
                               json={"vessel": {"delay_hours": "soon"}})
        assert (await body(bad, 422))["error"]["code"] == "bad-number"
        await port.engine.on_indexed(port.events)
        kinds = [a["kind"] for a in (await body(await client.get("/v1/alerts?state=open",
                                                                 headers=auth)))["alerts"]]
        # a 30 h slip is below the trader's 40 h: only an ETA change
        assert "eta-changed" in kinds and "vessel-delay" not in kinds
        carrier = [a["kind"] for a in (await body(await client.get(
            "/v1/alerts?state=open", headers=port.auth[CARRIER])))["alerts"]]
        assert "vessel-delay" in carrier

        prefs = await body(await client.get("/v1/alerts/preferences", headers=auth))
        assert prefs["channels"] == ["inbox"] and prefs["timezone"] == "Asia/Hong_Kong"
        mailbox = await client.put("/v1/alerts/preferences", headers=auth,
                                   json={"channels": ["email"]})
        assert (await body(mailbox, 422))["error"]["code"] == "missing"
        ok = await body(await client.put("/v1/alerts/preferences", headers=auth, json={
            "channels": ["inbox", "email"], "email": "ops@sino.example",
            "digest": {"at": "08:00"}}))
        assert ok["digest"] == {"at": "08:00"} and ok["email"] == "ops@sino.example"
        assert (await body(await client.get("/v1/alerts/preferences", headers=auth))) == ok
    finally:
        await client.close()


async def test_an_api_worker_process_writes_what_the_background_process_evaluates(
        tmp_path: Path) -> None:
    """``serve --workers N``: a worker without background tasks takes a follow, a tariff and
    settings; the one process that evaluates picks them up (its loop), nothing is evaluated
    twice."""
    client, port = await started(tmp_path / "gw")
    worker = TestClient(TestServer(create_app(dataclasses.replace(
        config(tmp_path / "gw"), background_tasks=False))))
    await worker.start_server()
    try:
        port.engine.clock = time.time  # (the wake a tariff sets is the wall clock's)
        await port.engine.on_indexed(port.events)
        await body(await worker.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}",
                                    json=ISSUE_TARIFF, headers=port.auth[TERMINAL]))
        # the tariff makes the boxes due: the next clock pass applies it
        assert not any(a.kind == "not-picked-up" for a in port.alerts_of(CARRIER))
        await port.engine.clock_pass()
        assert ("not-picked-up", "open") in [(a.kind, a.state) for a in port.alerts_of(CARRIER)]
        await body(await worker.post("/v1/alerts/follows", headers=port.auth[FORWARDER], json={
            "references": [{"kind": "container", "value": BOX}]}), 201)
        forwarder = port.orgs[FORWARDER]

        def forwarder_alerts() -> list[str]:
            rows = port.store.inbox(forwarder, 0, state="open", kinds=["not-picked-up"],
                                    unread=False, before=None, limit=10)
            return [stored.alert.kind for stored, _ in rows]

        await wait_until(lambda: forwarder_alerts() == ["not-picked-up"], what="the follow")
        listed = await body(await worker.get("/v1/alerts?state=open",
                                             headers=port.auth[FORWARDER]))
        assert [a["kind"] for a in listed["alerts"]] == ["not-picked-up"]
        count = port.store._db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        await port.engine.on_indexed(port.events)
        assert port.store._db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0] == count
    finally:
        await worker.close()
        await client.close()
