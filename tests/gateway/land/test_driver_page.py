"""The driver's page and the live truck: the positions stream shows each reader what the
positions API would (a competitor gets 404 and not a byte of stream, another driver 403), with
an ETA to the delivery place; streams per user are bounded; heartbeats keep it alive."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.isotime import iso_time
from gateway.land.live import LIVE, truck_eta
from gateway.land.model import Job, Place
from tests.gateway.land.support import (
    Land,
    driver_phone,
    job_body,
    ok,
    refused,
    started,
)
from tests.support.readside import FORWARDER, HAULIER, TRADER

#: Longest wait for one server-sent event (seconds).
WAIT = 10.0


async def _next_event(resp: Any) -> tuple[str, dict[str, Any] | None]:
    """The next event of a stream (name and data), or ``("comment", None)`` for a heartbeat."""
    while True:
        block = (await asyncio.wait_for(resp.content.readuntil(b"\n\n"), WAIT)).decode()
        lines = [line for line in block.splitlines() if line]
        if lines and lines[0].startswith("retry:"):
            continue
        if lines and lines[0].startswith(":"):
            return "comment", None
        fields = dict(line.split(": ", 1) for line in lines)
        return fields["event"], json.loads(fields["data"])


async def _job(land: Land, **changes: Any) -> str:
    body = await ok(await land.client.post("/v1/land/jobs", json=job_body(land, **changes),
                                           headers=land.auth(HAULIER)), 201)
    return str(body["id"])


def _fast(land: Land) -> None:
    live = land.client.app[LIVE]
    live.poll, live.heartbeat, live.recheck = 0.05, 0.2, 0.2


async def test_the_stream_shows_entitled_readers_the_truck_live(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    try:
        job_id = await _job(land)
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 120), "lat": 22.30, "lon": 114.17, "speed": 10}]},
            headers=land.auth(HAULIER)), 202)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        # the trader may read the boxes: it sees the truck, and then its next position live
        resp = await client.get(url, headers=land.auth(TRADER))
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name, data = await _next_event(resp)
        assert name == "position" and data is not None
        assert (data["lat"], data["lon"], data["speed"]) == (22.30, 114.17, 10)
        assert data["time"] == iso_time(land.now - 120)
        assert "driver" not in data and "job" in data
        eta = data["eta"]
        assert eta["method"] == "geodesic" and eta["to"] == "HKHKG"
        assert 6 < eta["distanceKm"] < 8 and eta["speedKmh"] == 36.0
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.32, "lon": 114.15, "speed": 12}]},
            headers=land.auth(HAULIER)), 202)
        seen = []
        for _ in range(20):
            name, data = await _next_event(resp)
            seen.append(name)
            if name == "position":
                break
        assert name == "position" and data is not None, seen
        assert (data["lat"], data["time"]) == (22.32, iso_time(land.now - 60))
        resp.close()
        # a heartbeat comes while nothing moves
        resp = await client.get(url, headers=land.auth(HAULIER))
        assert (await _next_event(resp))[0] == "position"
        assert (await _next_event(resp))[0] == "comment"
        resp.close()
    finally:
        await client.close()


async def test_the_stream_refuses_before_streaming(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    phones = []
    try:
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        _, phone2 = await driver_phone(land, "Wong Siu Ming", "+852 6123 4567")
        phones += [phone1, phone2]
        job_id = await _job(land, driver=first)
        await ok(await phone1.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.3, "lon": 114.1}]}), 202)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        # a competitor: 404, a JSON error and no stream
        resp = await client.get(url, headers=land.auth(FORWARDER))
        assert not resp.headers["Content-Type"].startswith("text/event-stream")
        await refused(resp, 404, "unknown-job")
        # another driver of the same haulier: 403
        await refused(await phone2.get(url), 403, "not-your-job")
        # nobody: 401
        assert (await client.get(url)).status == 401
        # the job's driver may follow their own truck
        resp = await phone1.get(url)
        assert resp.status == 200
        name, data = await _next_event(resp)
        assert name == "position" and data is not None and data["lat"] == 22.3
        assert data["eta"] is None  # no speed: no ETA
        resp.close()
        # a malformed id
        await refused(await client.get("/v1/land/jobs/LJ12/positions/stream",
                                       headers=land.auth(TRADER)), 400, "bad-job-id")
    finally:
        for phone in phones:
            await phone.close()
        await client.close()


async def test_streams_per_user_are_bounded_and_end_with_the_job(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    _fast(land)
    client.app[LIVE].per_user = 2
    try:
        job_id = await _job(land)
        url = f"/v1/land/jobs/{job_id}/positions/stream"
        held = [await client.get(url, headers=land.auth(TRADER)) for _ in range(2)]
        assert [r.status for r in held] == [200, 200]
        await refused(await client.get(url, headers=land.auth(TRADER)), 429,
                      "too-many-streams")
        # another organisation's reader is not counted against the trader's
        other = await client.get(url, headers=land.auth(HAULIER))
        assert other.status == 200
        # the haulier cancels: the stream says so and ends
        await ok(await client.post(f"/v1/land/jobs/{job_id}/cancel", json={},
                                   headers=land.auth(HAULIER)))
        for _ in range(20):
            name, data = await _next_event(other)
            if name == "state":
                break
        assert name == "state" and data == {"job": job_id, "state": "cancelled"}
        assert await asyncio.wait_for(other.content.read(), WAIT) == b""
        for resp in held:
            resp.close()
        # closed streams are given back
        for _ in range(100):
            if not client.app[LIVE].open:
                break
            await asyncio.sleep(0.05)
        assert not client.app[LIVE].open
    finally:
        await client.close()


def test_eta_is_geodesic_distance_over_speed() -> None:
    job = Job(id="LJ000000000001", org_id=1, haulier=1, containers=("CSQU3054383",),
              pickup=Place(1, "HKHKG"), delivery=Place(2, "HKHKG"), window_from=0,
              window_to=10, vehicle="AB1234", ccrn=None, driver_id=None)
    at = 1_800_000_000
    moving = truck_eta(job, {"lat": 22.34, "lon": 114.22, "speed": 10.0}, at)
    assert moving is not None
    # 0.1° of longitude at 22.34° N is about 10.3 km: about 1030 s at 10 m/s
    assert 10.0 < moving["distanceKm"] < 10.6
    assert 1000 < moving["minutes"] * 60 < 1080
    assert truck_eta(job, {"lat": 22.34, "lon": 114.22, "speed": 0.1}, at) is None
    arrived = truck_eta(job, {"lat": 22.34, "lon": 114.12, "speed": 0}, at)
    assert arrived is not None and arrived["arrived"] is True
    unknown = Job(**{**job.__dict__, "delivery": Place(2, "XXZZZ")})
    assert truck_eta(unknown, {"lat": 22.34, "lon": 114.22, "speed": 10.0}, at) is None
