"""Resilience of submissions: an authority that answers garbage or hangs is retried with a
clear status; a submission given up can be submitted again; a gateway restart with submissions in
flight (the authority down) loses nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from devnet.authority import AuthorityServer
from gateway.app import create_app
from gateway.declarations.api import DECLARATIONS
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import (
    INVOICE,
    body,
    config,
    faults,
    started,
    story,
    submit_all,
    subs_of,
    upload_body,
)
from tests.support.dcsa import wait_until
from tests.support.readside import TRADER


async def test_garbage_is_retried_with_a_clear_status(
        gateway: tuple[TestClient, Port], authority: AuthorityServer) -> None:
    client, port = gateway
    auth = port.auth[TRADER]
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",,8517620000", ",85176200,8517620000")},
        authorities=["cn-itsw"]), headers=auth), 201)
    sid = view["id"]
    await faults(authority, garbage=1000)
    await submit_all(client, auth, view)

    async def failing() -> bool:
        subs = await subs_of(client, auth, sid)
        return bool(subs) and subs[0]["attempts"] >= 2
    await wait_until(failing, timeout=15, what="retried garbage")
    (sub,) = await subs_of(client, auth, sid)
    assert sub["status"] == "pending" and "not JSON" in sub["lastError"]
    await faults(authority, garbage=0, timeout=1)  # one hang (longer than the 1 s time-out)

    async def released() -> bool:
        return (await subs_of(client, auth, sid))[0]["status"] == "released"
    await wait_until(released, timeout=20, what="the release after the faults")
    (sub,) = await subs_of(client, auth, sid)
    assert sub["lastError"] is None and sub["number"] is not None


async def test_restart_with_submissions_in_flight_loses_nothing(
        tmp_path: Path, authority: AuthorityServer) -> None:
    """The authority is down: submissions wait, retried, with the error shown; the gateway
    stops with them in flight; a new gateway on the same data lodges them once the authority
    is back, and every one is released with its own number."""
    client, port = await started(tmp_path / "gw", authority.url)
    story(port)
    auth = port.auth[TRADER]
    try:
        view = await body(await client.post("/v1/declarations", json=upload_body(
            invoice={"csv": INVOICE.replace(",,8517620000", ",85176200,8517620000")}),
            headers=auth), 201)
        sid = view["id"]
        authority.stop()
        await submit_all(client, auth, view)

        async def waiting() -> bool:
            subs = await subs_of(client, auth, sid)
            return len(subs) == 3 and all(s["attempts"] >= 1 for s in subs)
        await wait_until(waiting, timeout=15, what="failed lodging attempts")
        subs = await subs_of(client, auth, sid)
        assert {s["status"] for s in subs} == {"pending"}
        assert all("ClientConnectorError" in s["lastError"] for s in subs)
    finally:
        await client.close()  # the gateway stops with the three in flight
    authority.start()
    client = TestClient(TestServer(create_app(config(tmp_path / "gw", authority.url))))
    await client.start_server()
    try:
        service = client.app[DECLARATIONS]

        def done() -> bool:
            subs = service.store.submissions_of(sid)
            return len(subs) == 3 and all(s.status == "released" for s in subs)
        await wait_until(done, timeout=20, what="releases after the restart")
        subs = service.store.submissions_of(sid)
        assert len({s.number for s in subs}) == 3 and all(s.number for s in subs)
        steps = [h["status"] for h in service.store.history(subs[0].id)]
        assert steps[0] == "pending" and steps[-1] == "released"
    finally:
        await client.close()


async def test_a_failed_submission_is_given_up_then_submitted_again(
        gateway: tuple[TestClient, Port], authority: AuthorityServer) -> None:
    client, port = gateway
    auth = port.auth[TRADER]
    service = client.app[DECLARATIONS]
    service.settings = dataclasses.replace(service.settings, max_attempts=2)
    view = await body(await client.post("/v1/declarations", json=upload_body(
        invoice={"csv": INVOICE.replace(",,8517620000", ",85176200,8517620000")},
        authorities=["cn-itsw"]), headers=auth), 201)
    sid = view["id"]
    await faults(authority, error=1000)
    await submit_all(client, auth, view)

    async def failed() -> bool:
        return (await subs_of(client, auth, sid))[0]["status"] == "failed"
    await wait_until(failed, timeout=15, what="the submission given up")
    (sub,) = await subs_of(client, auth, sid)
    assert sub["attempts"] == 2 and "HTTP 500" in sub["lastError"]
    await faults(authority, error=0)
    again = await body(await client.post(
        f"/v1/declarations/{sid}/drafts/{sub['draft']}/submit", headers=auth), 202)
    assert again["id"] == sub["id"] and again["duplicate"] is False

    async def released() -> bool:
        return (await subs_of(client, auth, sid))[0]["status"] == "released"
    await wait_until(released, timeout=20, what="the release after a resubmission")
    steps = [h["status"] for h in (await subs_of(client, auth, sid))[0]["history"]]
    assert steps[:3] == ["pending", "failed", "pending"] and steps[-1] == "released"
