"""Alert delivery: webhooks through the subscription machinery (signed, retried, logged, once),
e-mail through a REAL local SMTP server process (aiosmtpd, tests/support/smtp.py) — plain,
STARTTLS with AUTH, a struggling server, a server down across a gateway restart, a refused
recipient — and per-user preferences (kinds, channels, quiet hours, digest)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.alerts.delivery import hkd, summary
from gateway.alerts.mail import SmtpSettings, compose
from gateway.alerts.preferences import (
    PreferencesError,
    in_quiet_hours,
    mail_time,
    parse_preferences,
)
from gateway.alerts.store import MailItem
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, ALERTS
from gateway.config import ConfigError
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config
from tests.gateway.alerts.test_engine import BOX, IMO, NOW, port_story
from tests.support.accounts import login
from tests.support.dcsa import Receiver, wait_until
from tests.support.readside import CARRIER, FORWARDER, TERMINAL, TRADER
from tests.support.smtp import SmtpServer, self_signed

SECRET = base64.b64encode(b"alert webhook secret, 32 bytes!!").decode()
PASSWORD = "correct horse battery staple"
HKT = timezone(timedelta(hours=8))

# -- pure parts -------------------------------------------------------------------------------------


def test_summaries_name_the_figures() -> None:
    meter = {"kind": "not-picked-up", "subject": {"kind": "container", "value": BOX},
             "state": "open", "days_in_yard": 9, "last_free_day": "2026-11-30",
             "accrued": 1240, "per_day": 320, "pick_up_blocked": True,
             "holds": [{"kind": "customs-hold"}]}
    assert summary(meter) == (
        "Not picked up — container CSQU3054383 not picked up: 9 days in yard, free time ended "
        "2026-11-30, HK$1,240 accrued, HK$320/day from now — pick-up blocked (customs-hold)")
    delay = {"kind": "vessel-delay", "subject": {"kind": "vessel", "value": IMO},
             "state": "resolved", "port": "HKHKG", "slip_hours": 30.0,
             "eta": "2026-11-06T06:00:00Z", "source": "Pacific Ocean Line", "reason": "arrived"}
    assert summary(delay) == ("Resolved: Vessel delay — vessel 9321483 at HKHKG: ETA +30.0 h "
                              "against the first ETA (now 2026-11-06 14:00 HKT, source Pacific "
                              "Ocean Line) (arrived)")
    assert hkd(112.5) == "HK$112.50" and hkd(1240) == "HK$1,240" and hkd(None) == "HK$?"


def test_preferences_are_checked_and_time_mail() -> None:
    prefs = parse_preferences({"channels": ["email", "inbox"], "kinds": ["not-picked-up"],
                               "quiet_hours": {"from": "22:00", "to": "07:00"}})
    assert prefs.channels == ("inbox", "email")  # canonical order
    assert prefs.wants("email", "not-picked-up", "opened")
    assert not prefs.wants("email", "not-picked-up", "updated")  # daily meter updates: off
    assert not prefs.wants("email", "vessel-delay", "opened")
    late = hk("2026-11-05 23:30")
    assert in_quiet_hours(late, prefs) and not in_quiet_hours(hk("2026-11-05 12:00"), prefs)
    assert mail_time(late, prefs) == hk("2026-11-06 07:00")
    assert mail_time(hk("2026-11-06 06:59"), prefs) == hk("2026-11-06 07:00")
    assert mail_time(hk("2026-11-06 07:00"), prefs) == hk("2026-11-06 07:00")
    digest = parse_preferences({"digest": {"at": "08:00"}, "timezone": "Europe/London"})
    london = datetime(2026, 11, 6, 8, 0, tzinfo=UTC).timestamp()  # GMT in November
    assert mail_time(london - 60, digest) == london
    assert mail_time(london + 60, digest) == london + 86_400
    for raw, code in [({"channels": ["sms"]}, "bad-choice"),
                      ({"quiet_hours": {"from": "22:00"}}, "bad-quiet-hours"),
                      ({"quiet_hours": {"from": "25:00", "to": "07:00"}}, "bad-time"),
                      ({"timezone": "Mars/Olympus"}, "bad-timezone"),
                      ({"email": "a@b.example"}, "not-allowed"),
                      ({"colour": "red"}, "unknown-member"), ([], "not-an-object")]:
        with pytest.raises(PreferencesError) as info:
            parse_preferences(raw)
        assert info.value.code == code, raw
    with pytest.raises(PreferencesError):  # a mailbox taking mail names its address
        parse_preferences({"channels": ["email"]}, mailbox=True)
    assert parse_preferences({"channels": ["email"], "email": "ops@harbour.example"},
                             mailbox=True).email == "ops@harbour.example"


def test_smtp_settings_and_message() -> None:
    assert SmtpSettings.from_json(None) is None
    settings = SmtpSettings.from_json({"host": "127.0.0.1", "port": 2525,
                                       "from": "PortLedger <alerts@port.example>"})
    assert settings is not None and settings.sender.endswith("<alerts@port.example>")
    for bad in [{"port": 25}, {"host": "h", "starttls": True, "ssl": True},
                {"host": "h", "port": "25"}, {"host": "h", "from": "nobody"},
                {"host": "h", "colour": 1}, {"host": "h", "starttls": "yes"}]:
        with pytest.raises(ConfigError):
            SmtpSettings.from_json(bad)
    items = [MailItem(7, 3, 1, "a@harbour.example",
                      {"kind": "customs-hold", "subject": {"kind": "container", "value": BOX},
                       "state": "open", "status": "hold", "since": "2026-11-03T02:00:00Z",
                       "alertId": 12, "sources": [{"publisher": "Customs"}]}, 0)]
    message = compose(items, settings, "https://port.example")
    assert message["Subject"].startswith("Customs hold — customs hold on container CSQU3054383")
    assert message["Message-ID"] == "<portledger-alerts-3-7-7@port.example>"
    text = message.get_content()
    assert "https://port.example/alerts/12" in text and "from: Customs" in text


# -- in the gateway ----------------------------------------------------------------------------------


async def start(path: Path, **alerts: Any) -> tuple[TestClient, Port]:
    client = TestClient(TestServer(create_app(config(path, **alerts))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None, what="first look")
    return client, port


def smtp(server: SmtpServer, **more: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "from": "PortLedger <alerts@port.example>",
            "retry_base_seconds": 0.1, "retry_max_seconds": 0.3, "timeout_seconds": 5,
            **more}


async def story_with_user(client: TestClient, port: Port, email: str,
                          prefs: dict[str, Any]) -> None:
    """The port story; the trader has a user whose preferences ``prefs`` are set through
    the API (signed in); the tariff is published; the trader follows the box."""
    await port_story(port)
    port.engine.clock = lambda: NOW
    client.app[ACCOUNTS].create_user(port.orgs[TRADER], email, PASSWORD, "member")
    csrf = await login(client, email, PASSWORD)
    resp = await client.put("/v1/alerts/preferences", json=prefs,
                            headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    client.session.cookie_jar.clear()
    resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                            headers=port.auth[TERMINAL])
    assert resp.status == 200
    resp = await client.post("/v1/alerts/follows", headers=port.auth[TRADER],
                             json={"references": [{"kind": "container", "value": BOX}]})
    assert resp.status == 201


async def test_webhooks_are_signed_retried_logged_and_sent_once(tmp_path: Path,
                                                                aiohttp_server: Any) -> None:
    receiver = Receiver(statuses=[503])  # the first attempt fails, the retry is taken
    server = await aiohttp_server(receiver.app)
    client, port = await start(tmp_path / "gw")
    try:
        await port_story(port)
        port.engine.clock = lambda: NOW
        url = f"http://127.0.0.1:{server.port}/callback"
        resp = await client.post("/v1/alerts/webhooks", headers=port.auth[CARRIER],
                                 json={"callbackUrl": url, "secret": SECRET,
                                       "kinds": ["vessel-delay", "customs-hold"]})
        assert resp.status == 201, await resp.text()
        hook = await resp.json()
        assert hook["kinds"] == ["vessel-delay", "customs-hold"] and "secret" not in hook
        bad = await client.post("/v1/alerts/webhooks", headers=port.auth[CARRIER],
                                json={"callbackUrl": "ftp://x.example/", "secret": SECRET})
        assert bad.status == 422
        await port.engine.on_indexed(port.events)
        await receiver.wait_for(1, accepted=True)
        [call] = receiver.accepted
        assert call.signed_with(SECRET)
        assert call.headers["Subscription-ID"] == hook["id"]
        body = json.loads(call.body)
        assert [(t["change"], t["kind"], t["subject"]["value"]) for t in body] == [
            ("opened", "vessel-delay", IMO)]  # the carrier may not read the customs hold
        assert body[0]["slip_hours"] == 30.0
        # the same events again (an indexer retry): nothing more is sent
        await port.engine.on_indexed(port.events)
        await asyncio.sleep(0.4)
        assert len(receiver.accepted) == 1
        resp = await client.get(f"/v1/alerts/webhooks/{hook['id']}/deliveries",
                                headers=port.auth[CARRIER])
        [delivery] = (await resp.json())["deliveries"]
        assert delivery["status"] == "delivered" and delivery["attempts"] == 2
        # another organisation cannot see or delete it
        other = await client.get(f"/v1/alerts/webhooks/{hook['id']}", headers=port.auth[TRADER])
        assert other.status == 404
        gone = await client.delete(f"/v1/alerts/webhooks/{hook['id']}",
                                   headers=port.auth[CARRIER])
        assert gone.status == 204
    finally:
        await client.close()


async def test_mail_through_a_real_smtp_server(tmp_path: Path) -> None:
    with SmtpServer(tmp_path / "mailbox") as server:
        client, port = await start(tmp_path / "gw", smtp=smtp(server))
        try:
            await story_with_user(client, port, "ops@sino.example",
                                  {"channels": ["inbox", "email"]})
            # a user who wants no e-mail, and a competitor's user: nothing for them
            client.app[ACCOUNTS].create_user(port.orgs[TRADER], "quiet@sino.example", PASSWORD,
                                             "member")
            client.app[ACCOUNTS].create_user(port.orgs[FORWARDER], "spy@rival.example",
                                             PASSWORD, "member")
            await port.engine.on_indexed(port.events)
            [message] = await server.wait_for_async(1)
            assert message["To"] == "ops@sino.example"
            assert message["X-Envelope-To"] == "ops@sino.example"
            text = message.get_content()
            # the trader's three openings at once go as one message
            assert message["Subject"] == "PortLedger: 3 alerts"
            assert "Customs hold" in text and "Vessel delay" in text
            assert "HK$200 accrued, HK$100/day from now" in text
            await asyncio.sleep(0.3)
            assert len(server.messages()) == 1
            assert client.app[ALERTS].store.mail_counts() == {"sent": 3}
        finally:
            await client.close()


async def test_a_struggling_server_is_retried_and_a_refused_recipient_is_final(
        tmp_path: Path) -> None:
    with SmtpServer(tmp_path / "mailbox", refuse_first=2, reject="gone@sino.example") as server:
        client, port = await start(tmp_path / "gw", smtp=smtp(server))
        try:
            await story_with_user(client, port, "ops@sino.example",
                                  {"channels": ["email"], "kinds": ["customs-hold"]})
            client.app[ACCOUNTS].create_user(port.orgs[TRADER], "gone@sino.example", PASSWORD,
                                             "member")
            store = client.app[ALERTS].store
            store.set_preferences(port.orgs[TRADER], client.app[ACCOUNTS].user_by_email(
                "gone@sino.example").id, {"channels": ["email"], "kinds": ["customs-hold"]})
            await port.engine.on_indexed(port.events)
            [message] = await server.wait_for_async(1)
            assert message["To"] == "ops@sino.example"
            await wait_until(lambda: store.mail_counts().get("pending", 0) == 0, what="done")
            log = {row["address"]: row for row in store.mail_log(port.orgs[TRADER])}
            # 451 twice (temporary), then taken; 550 is final at the first refusal
            assert log["ops@sino.example"]["status"] == "sent"
            assert log["gone@sino.example"]["status"] == "failed"
            assert "550" in log["gone@sino.example"]["lastError"]
            attempts = sorted(r["attempts"] for r in log.values())
            assert attempts in ([1, 3], [2, 3], [3, 3])  # the order of the two is the server's
        finally:
            await client.close()


async def test_a_server_down_across_a_restart_loses_nothing(tmp_path: Path) -> None:
    server = SmtpServer(tmp_path / "mailbox")  # not started: connections are refused
    # (a short timeout: an attempt cut off by the shutdown is leased for 3 × timeout + backoff)
    client, port = await start(tmp_path / "gw", smtp=smtp(server, retry_base_seconds=0.2,
                                                          timeout_seconds=1))
    try:
        await story_with_user(client, port, "ops@sino.example",
                              {"channels": ["email"], "kinds": ["vessel-delay"]})
        await port.engine.on_indexed(port.events)
        store = client.app[ALERTS].store
        await wait_until(lambda: any(r["attempts"] >= 2 for r in store.mail_log(
            port.orgs[TRADER])), what="two refused attempts")
        [row] = store.mail_log(port.orgs[TRADER])
        assert row["status"] == "pending" and "Refused" in row["lastError"]
    finally:
        await client.close()
    server.start()
    try:
        client, port = await start(tmp_path / "gw", smtp=smtp(server, timeout_seconds=1))
        try:
            [message] = await server.wait_for_async(1)
            assert message["Subject"].startswith("Vessel delay — vessel 9321483")
            await asyncio.sleep(0.3)
            assert len(server.messages()) == 1
        finally:
            await client.close()
    finally:
        server.stop()


async def test_starttls_and_auth_with_credentials_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path / "tls")
    monkeypatch.setenv("ALERTS_TEST_SMTP_USER", "portledger")
    monkeypatch.setenv("ALERTS_TEST_SMTP_PASSWORD", "relay secret")
    with SmtpServer(tmp_path / "mailbox", tls=(cert, key),
                    login=("portledger", "relay secret")) as server:
        client, port = await start(tmp_path / "gw", smtp=smtp(
            server, starttls=True, ca_file=str(cert), user_env="ALERTS_TEST_SMTP_USER",
            password_env="ALERTS_TEST_SMTP_PASSWORD"))
        try:
            await story_with_user(client, port, "ops@sino.example",
                                  {"channels": ["email"], "kinds": ["customs-hold"]})
            await port.engine.on_indexed(port.events)
            [message] = await server.wait_for_async(1)
            assert message["Subject"].startswith("Customs hold")
        finally:
            await client.close()
        # a wrong password is refused; retried (bounded), never sent
        monkeypatch.setenv("ALERTS_TEST_SMTP_PASSWORD", "wrong")
        client, port = await start(tmp_path / "gw2", smtp=smtp(
            server, starttls=True, ca_file=str(cert), user_env="ALERTS_TEST_SMTP_USER",
            password_env="ALERTS_TEST_SMTP_PASSWORD", max_attempts=2, timeout_seconds=2))
        try:
            await story_with_user(client, port, "ops@sino.example",
                                  {"channels": ["email"], "kinds": ["customs-hold"]})
            await port.engine.on_indexed(port.events)
            store = client.app[ALERTS].store
            await wait_until(lambda: store.mail_counts().get("failed") == 1, timeout=30,
                             what="given up")
            [row] = store.mail_log(port.orgs[TRADER])
            # aiosmtpd answers PLAIN with 535, then lets smtplib's LOGIN fallback time out
            assert row["attempts"] == 2
            assert "Authentication" in row["lastError"] or "Disconnected" in row["lastError"]
            assert len(server.messages()) == 1
        finally:
            await client.close()


async def test_quiet_hours_hold_mail_until_they_end(tmp_path: Path) -> None:
    with SmtpServer(tmp_path / "mailbox") as server:
        client, port = await start(tmp_path / "gw", smtp=smtp(server))
        try:
            here = datetime.now(HKT)
            quiet = {"from": (here - timedelta(hours=1)).strftime("%H:%M"),
                     "to": (here + timedelta(hours=1)).strftime("%H:%M")}
            await story_with_user(client, port, "ops@sino.example",
                                  {"channels": ["email"], "quiet_hours": quiet})
            await port.engine.on_indexed(port.events)
            store = client.app[ALERTS].store
            rows = store._db.execute("SELECT not_before FROM mail").fetchall()
            assert len(rows) == 3
            assert all(time.time() + 3000 < nb <= time.time() + 3660 for (nb,) in rows)
            await asyncio.sleep(0.5)
            assert server.messages() == []
        finally:
            await client.close()


async def test_an_excursion_first_seen_over_is_still_mailed(tmp_path: Path) -> None:
    """Readings that arrive after the excursion ended (a logger read at the gate): the episode is
    first seen resolved — mailed all the same, since it decides a quality claim; a free-time
    warning that ended unseen is not (test above: three mails, four inbox items)."""
    # imported here: only this test needs telemetry readings
    from gateway.events.model import Reference, Visibility
    from gateway.telemetry import service as telemetry
    from gateway.telemetry.model import Reading
    from tests.gateway.alerts.test_engine import REEFER

    with SmtpServer(tmp_path / "mailbox") as server:
        client, port = await start(tmp_path / "gw", smtp=smtp(server))
        try:
            port.member(TERMINAL, "Hong Kong Container Terminal")
            port.member(CARRIER, "Pacific Ocean Line")
            start_at = hk("2026-11-04 10:00")
            port.engine.clock = lambda: start_at + 6 * 3600
            client.app[ACCOUNTS].create_user(port.orgs[CARRIER], "reefer@pacific.example",
                                             PASSWORD, "member")
            csrf = await login(client, "reefer@pacific.example", PASSWORD)
            resp = await client.put("/v1/alerts/preferences", headers={"X-CSRF-Token": csrf},
                                    json={"channels": ["inbox", "email"]})
            assert resp.status == 200, await resp.text()
            client.session.cookie_jar.clear()
            await wait_until(lambda: port.store.progress("readings") is not None,
                             what="the reading poll's first look")
            readings = [Reading("reefer", start_at + i * 600, Reference("container", REEFER),
                                {"temperature": t, "setpoint": -18.0})
                        for i, t in enumerate([-18.1, -15.0, -14.6, -14.9, -15.2, -17.9,
                                               -18.0])]
            await telemetry.ingest(client.app, port.orgs[TERMINAL], readings,
                                   Visibility("named", (CARRIER,)))
            [message] = await server.wait_for_async(1)
            assert message["To"] == "reefer@pacific.example"
            text = message.get_content()
            assert "Resolved: Reefer" in text and REEFER in text, text
            [excursion] = [a for a in port.alerts_of(CARRIER) if a.kind == "reefer-excursion"]
            assert excursion.state == "resolved"
        finally:
            await client.close()
