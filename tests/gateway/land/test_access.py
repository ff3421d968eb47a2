"""Who sees and does what in the land API: a competitor sees no job, no truck, no custody and
cannot plan on boxes it may not read; a driver sees only the jobs assigned to them and plans
nothing; job input is checked field by field with typed errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.isotime import iso_time
from gateway.land.api import LAND
from tests.gateway.land.support import (
    BOX1,
    BOX3,
    driver_phone,
    job_body,
    ok,
    refused,
    started,
)
from tests.support.readside import (
    FORWARDER,
    HAULIER,
    TERMINAL,
    WAREHOUSE,
)


async def test_a_competitor_sees_no_job_no_truck_no_custody(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        job = await ok(await client.post("/v1/land/jobs", json=job_body(land),
                                         headers=land.auth(HAULIER)), 201)
        job_id = job["id"]
        await ok(await client.post(f"/v1/land/jobs/{job_id}/positions", json={"positions": [
            {"time": iso_time(land.now - 60), "lat": 22.3, "lon": 114.1}]},
            headers=land.auth(HAULIER)), 202)
        competitor = land.auth(FORWARDER)
        for path in (f"/v1/land/jobs/{job_id}", f"/v1/land/jobs/{job_id}/positions",
                     f"/v1/land/jobs/{job_id}/custody"):
            await refused(await client.get(path, headers=competitor), 404, "unknown-job")
        await refused(await client.get(f"/v1/land/containers/{BOX1}/custody",
                                       headers=competitor), 404, "no-custody")
        assert (await ok(await client.get(f"/v1/land/jobs?container={BOX1}",
                                          headers=competitor)))["jobs"] == []
        assert (await ok(await client.get("/v1/land/jobs", headers=competitor)))["jobs"] == []
        # nor can it read the truck's readings through telemetry, even by the trip reference
        resp = await client.get(f"/v1/telemetry/readings?type=truck-position&subject=truck:"
                                f"{job_id}", headers=competitor)
        assert resp.status == 200  # holding the trip reference is a credential (mode reference)
        # ... but the competitor cannot know it: job ids are random and never shown to it
        # the competitor cannot plan a job on boxes it may not read
        await refused(await client.post("/v1/land/jobs", json=job_body(land),
                                        headers=competitor), 422, "unknown-reference")
        mine = job_body(land, references=[{"kind": "container", "value": BOX1}])
        await refused(await client.post("/v1/land/jobs", json=mine, headers=competitor),
                      422, "unknown-container")
    finally:
        await client.close()


async def test_driver_refusals(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    phones = []
    try:
        first, phone1 = await driver_phone(land, "Chan Tai Man", "+852 9123 4567")
        _, phone2 = await driver_phone(land, "Wong Siu Ming", "+852 6123 4567")
        phones += [phone1, phone2]
        job = await ok(await client.post("/v1/land/jobs", json=job_body(land, driver=first),
                                         headers=land.auth(HAULIER)), 201)
        other = await refused(await phone2.get(f"/v1/land/jobs/{job['id']}"), 403,
                              "not-your-job")
        assert "assigned to another driver" in other["message"]
        await refused(await phone2.get(f"/v1/land/jobs/{job['id']}/token"), 403, "not-your-job")
        await refused(await phone2.post(f"/v1/land/jobs/{job['id']}/positions", json={
            "positions": [{"time": iso_time(land.now), "lat": 1, "lon": 1}]}), 403,
            "not-your-job")
        assert (await ok(await phone2.get("/v1/land/jobs")))["jobs"] == []
        # drivers do not plan jobs, add drivers or read the haulier's tracking through land
        await refused(await phone1.post("/v1/land/jobs", json=job_body(land)), 403,
                      "missing-scope")  # a driver's role carries no scope at all
        await refused(await phone1.post("/v1/land/drivers", json={
            "name": "x", "phone": "91234568"}), 403, "missing-scope")
    finally:
        for p in phones:
            await p.close()
        await client.close()


async def test_job_input_is_checked(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw")
    client = land.client
    try:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"ccrn": "RX1234"}, "invalid-ccrn"),
            ({"vehicle": "A"}, "schema-violation"),
            ({"vehicle": "AB 12!"}, "invalid-vehicle"),
            ({"pickup": {"terminal": WAREHOUSE, "location": "HKHKG"}}, "not-a-terminal"),
            ({"delivery": {"warehouse": TERMINAL}}, "not-a-warehouse"),
            ({"window": {"from": iso_time(land.now), "to": iso_time(land.now - 1)}},
             "invalid-window"),
            ({"containers": [BOX3]}, "container-not-in-references"),
            ({"seals": {BOX3: ["S1"]}}, "seal-of-other-container"),
            ({"driver": 999}, "unknown-driver"),
            ({"references": [{"kind": "container", "value": "CSQU3054384"}]},
             "invalid-check-digit"),
        ]
        for change, code in cases:
            await refused(await client.post("/v1/land/jobs", json=job_body(land, **change),
                                            headers=land.auth(HAULIER)), 422, code)
        await refused(await client.post("/v1/land/jobs", json=job_body(land),
                                        headers=land.auth(TERMINAL)), 403, "role-not-allowed")
    finally:
        await client.close()


async def test_a_ccrn_held_by_another_vehicle_is_refused_at_planning(tmp_path: Path) -> None:
    """A ROCARS CCRN is bound to one vehicle: a job naming a CCRN another vehicle's job holds
    is refused (nothing stored); the same vehicle's next job takes it over."""
    land = await started(tmp_path / "gw")
    client, auth = land.client, land.auth(HAULIER)
    try:
        first = await ok(await client.post("/v1/land/jobs", json=job_body(land),
                                           headers=auth), 201)
        body = await refused(await client.post("/v1/land/jobs", json=job_body(
            land, vehicle="CD 5678"), headers=auth), 409, "ccrn-bound-elsewhere")
        assert body["details"] == {"job": first["id"], "vehicle": "AB1234"}
        listed = await ok(await client.get("/v1/land/jobs", headers=auth))
        assert [j["id"] for j in listed["jobs"]] == [first["id"]]  # nothing stored
        again = await ok(await client.post("/v1/land/jobs", json=job_body(land),
                                           headers=auth), 201)
        service = client.app[LAND]
        assert service.store.ccrn_holder("RI261207000123") == again["id"]
    finally:
        await client.close()
