"""Who reads which reading: AIS is public, a competitor never sees another's reefer or truck data.

The rule is tested as a pure function, as the store applies it (Hypothesis: any mix of owners,
modes and readers gives exactly what a brute-force filter gives), and through the whole gateway
application over HTTP (no node): owners, named readers, reference holders and competitors ask
for lists, single readings and proofs, and a competitor's answer for an existing reading is the
one for a reading that does not exist. Publishing roles mirror ``Anchors.vy`` ``KIND_ROLES``,
read from the contract's source.
"""

from __future__ import annotations

import dataclasses
import doctest
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts
from contracts import ROLES, anchors
from gateway.app import create_app
from gateway.events.model import Reference, Visibility
from gateway.telemetry import anchoring, service, visibility
from gateway.telemetry.model import READING_TYPES, Reading
from gateway.telemetry.store import TelemetryStore
from gateway.telemetry.visibility import KIND_ROLES, Access, Viewer, entitlement, role_problem
from tests.support import telemetry as tt
from tests.support.dcsa import config, organisation

T0 = 1_790_000_000
BOX = tt.container("VISU", 300001)
PLATE = "KV4321"
SCOPES = ("tracking:read", "proofs:export", "proofs:request")


# -- the rule, pure ------------------------------------------------------------------------------
@pytest.mark.parametrize(("viewer", "access", "expected"), [
    (Viewer(3, 2), Access(3, 2, False, "named", (), True), "owner"),
    (Viewer(9, 2), Access(3, 2, False, "named", (), True), "owner"),  # same chain org
    (Viewer(9, 5), Access(3, 2, False, "named", (5,), True), "named"),
    (Viewer(9, 6), Access(3, 2, False, "named", (5,), True), None),
    (Viewer(9, 6, by_reference=True), Access(3, 2, False, "named", (5,), True), None),
    (Viewer(9, 6, by_reference=True), Access(3, 2, False, "reference", (), True), "reference"),
    (Viewer(9, 6), Access(3, 2, False, "reference", (), True), None),
    (Viewer(9, 6, by_reference=True), Access(3, 2, False, "reference", (), False), None),
    (Viewer(9, None), Access(3, 2, False, "named", (5,), True), None),
    (Viewer(9, None), Access(3, None, False, "named", (), True), None),
    (Viewer(9, None), Access(3, 2, True, "named", (), False), "public"),
])
def test_the_rule(viewer: Viewer, access: Access, expected: str | None) -> None:
    assert entitlement(viewer, access) == expected


def _kind_roles_of_the_contract() -> dict[int, int]:
    """``KIND_ROLES`` of ``Anchors.vy``, read from its source: kind code -> role bits."""
    source = (Path(contracts.__file__).parent / "Anchors.vy").read_text()
    block = source.split("KIND_ROLES: constant(uint256) = (", 1)[1].split("\n)", 1)[0]
    out = {}
    for names, shift in re.findall(r"\(([^)]*)\)\s*<<\s*(\d+)", block):
        bits = 0
        for name in re.findall(r"roles\.([A-Z_]+)", names):
            bits |= ROLES[name.lower()]
        out[int(shift) // 16] = bits
    return out


def test_publishing_roles_mirror_the_anchors_contract() -> None:
    contract = _kind_roles_of_the_contract()
    assert contract == {anchors.KINDS[name]: bits for name, bits in KIND_ROLES.items()}
    for reading_type, kind in READING_TYPES.items():
        allowed = contract[anchors.KINDS[kind or "AIS"]]
        for role, bit in ROLES.items():
            problem = role_problem(reading_type, bit)
            assert (problem is None) == bool(allowed & bit), (reading_type, role)
    assert role_problem("truck-position", ROLES["terminal"]) is not None
    assert role_problem("reefer", ROLES["terminal"] | ROLES["bank"]) is None
    assert role_problem("ais-static", ROLES["customs"]) is not None
    assert role_problem("weather", ROLES["operator"]) == "unknown reading type 'weather'"


# -- the rule as the store applies it -------------------------------------------------------------
_ORGS = st.sampled_from([(3, 2), (4, 3), (5, 4), (6, None)])
_UPLOAD = st.tuples(_ORGS, st.sampled_from(["named", "reference"]),
                    st.lists(st.sampled_from([2, 3, 4, 7]), max_size=2, unique=True),
                    st.sampled_from(["reefer", "ais-position"]), st.integers(1, 5))


@settings(max_examples=40, deadline=None)
@given(uploads=st.lists(_UPLOAD, min_size=1, max_size=6),
       viewer=st.tuples(_ORGS, st.booleans()))
def test_the_store_returns_exactly_what_the_rule_allows(
    tmp_path_factory: pytest.TempPathFactory, uploads: list[Any], viewer: Any,
) -> None:
    store = TelemetryStore(tmp_path_factory.mktemp("vis") / "t.sqlite", secret=bytes(32))
    subject = Reference("container", BOX)
    try:
        t = T0
        for (org_id, owner), mode, readers, kind, count in uploads:
            readings = []
            for _ in range(count):
                t += 1
                values = {"temperature": 3.0} if kind == "reefer" else {"mmsi": 477000001}
                readings.append(Reading(kind, t, subject, values))
            store.add(org_id, readings, Visibility(mode, tuple(readers)), owner=owner)
        (org_id, chain_org), by_reference = viewer
        who = Viewer(org_id, chain_org, by_reference)
        for kind in ("reefer", "ais-position"):
            everything, _ = store.history(kind, subject=subject, limit=1000)
            expected = [s for s in everything if entitlement(who, s.access) is not None]
            found, _ = store.history(kind, subject=subject, limit=1000,
                                     allow=lambda a: entitlement(who, a) is not None)
            assert found == expected
            for s in found:
                if not s.reading.public:
                    assert (s.org_id == org_id
                            or (by_reference and s.visibility.mode == "reference")
                            or (chain_org is not None and (
                                chain_org == s.owner or chain_org in s.visibility.readers)))
    finally:
        store.close()


# -- over HTTP -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Port:
    client: TestClient
    auth: dict[str, dict[str, str]]
    org_ids: dict[str, int]

    async def get(self, who: str, path: str) -> tuple[int, Any]:
        response = await self.client.get(path, headers=self.auth[who])
        return response.status, await response.json()

    async def post(self, who: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await self.client.post(path, headers=self.auth[who], json=body)
        return response.status, await response.json()


#: name -> chain organisation (the demo port's ids: terminals 2 and 3, carrier 4, haulier 7,
#: bank 11); "newcomer" is not a member on chain.
MEMBERS = {"terminal": 2, "rival": 3, "carrier": 4, "haulier": 7, "bank": 11, "newcomer": None}


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[Port]:
    cfg = dataclasses.replace(config(tmp_path / "gw"), telemetry_window_seconds=3600.0)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        auth, org_ids = {}, {}
        for name, chain_org in MEMBERS.items():
            org_ids[name], auth[name] = organisation(client.app, name, chain_org=chain_org,
                                                     scopes=SCOPES)
        app = client.app
        # the terminal's reefer: the carrier is its named reader
        await service.ingest(app, org_ids["terminal"],
                             tt.reefer_readings(BOX, T0, 6, excursion=range(2, 4)),
                             Visibility("named", (4,)))
        # the haulier's truck: whoever holds the plate number
        await service.ingest(app, org_ids["haulier"], tt.truck_readings(PLATE, T0, 4),
                             Visibility("reference", ()))
        # AIS from the terminal (GPSD's real messages) and ours for EVER DIADEM
        await service.ingest(app, org_ids["terminal"], tt.gpsd_readings(T0), Visibility())
        ours = tt.ais_readings(tt.ours_position(tt.EVER_DIADEM_MMSI, 22.3, 114.1, 9.5, 90.0),
                               T0 + 100)
        await service.ingest(app, org_ids["rival"], ours, Visibility())
        yield Port(client, auth, org_ids)
    finally:
        await client.close()


def _ids(body: Any) -> list[int]:
    return [r["id"] for r in body["readings"]]


async def test_a_competitor_never_sees_another_organisations_reefer_readings(port: Port) -> None:
    path = f"/v1/telemetry/readings?type=reefer&subject=container:{BOX}"
    status, body = await port.get("terminal", path)
    assert status == 200 and _ids(body) == [1, 2, 3, 4, 5, 6]
    assert {r["readableVia"] for r in body["readings"]} == {"owner"}
    assert body["readings"][2]["temperature"] == pytest.approx(-11.5)
    assert body["readings"][0]["subject"] == {"kind": "container", "value": BOX}
    status, body = await port.get("carrier", path)
    assert status == 200 and _ids(body) == [1, 2, 3, 4, 5, 6]
    assert {r["readableVia"] for r in body["readings"]} == {"named"}
    for who in ("rival", "haulier", "bank", "newcomer"):
        status, body = await port.get(who, path)
        assert (status, body["error"]) == (404, await _nothing(port, who))
        for reading_id in (3, 999):  # an existing reading and one that is not: one answer
            status, body = await port.get(who, f"/v1/telemetry/readings/{reading_id}")
            assert (status, body["error"]["code"]) == (404, "unknown-reading")
            status, body = await port.get(
                who, f"/v1/telemetry/readings/{reading_id}?subject=container:{BOX}")
            assert (status, body["error"]["code"]) == (404, "unknown-reading")
            status, body = await port.post(who, f"/v1/proofs/readings/{reading_id}")
            assert (status, body["error"]["code"]) == (404, "unknown-reading")


async def _nothing(port: Port, who: str) -> Any:
    """The error a caller gets for a container nobody has readings of."""
    other = tt.container("NONU", 1)
    status, body = await port.get(who, f"/v1/telemetry/readings?type=reefer&subject=container:"
                                       f"{other}")
    assert status == 404 and body["error"]["code"] == "no-readings"
    return body["error"]


async def test_truck_positions_in_reference_mode_go_to_whoever_asks_by_the_plate(
    port: Port,
) -> None:
    status, body = await port.get("rival", f"/v1/telemetry/readings?type=truck-position"
                                           f"&subject=truck:{PLATE}")
    assert status == 200 and len(body["readings"]) == 4
    assert {r["readableVia"] for r in body["readings"]} == {"reference"}
    first = body["readings"][0]["id"]
    status, body = await port.get("rival", f"/v1/telemetry/readings/{first}")
    assert status == 404  # by id alone, the plate is not shown to be held
    status, body = await port.get("rival", f"/v1/telemetry/readings/{first}?subject=truck:{PLATE}")
    assert status == 200 and body["job"] == "JOB-1" and body["readableVia"] == "reference"
    status, _ = await port.get("rival", f"/v1/telemetry/readings/{first}?subject=truck:KV4322")
    assert status == 404
    status, body = await port.get("haulier", f"/v1/telemetry/readings/{first}")
    assert status == 200 and body["readableVia"] == "owner"
    # the terminal's reefer is named-only: asking by the container number does not open it
    status, _ = await port.get("rival", f"/v1/telemetry/readings?type=reefer&subject=container:"
                                        f"{BOX}")
    assert status == 404


async def test_ais_is_public_to_every_authenticated_caller(port: Port) -> None:
    for who in MEMBERS:
        status, body = await port.get(who, f"/v1/vessels/{tt.EVER_DIADEM_IMO}/positions")
        assert status == 200, (who, body)
        assert body["vessel"]["name"] == "EVER DIADEM"
        assert body["vessel"]["mmsi"] == tt.EVER_DIADEM_MMSI
        assert [p["mmsi"] for p in body["track"]] == [tt.EVER_DIADEM_MMSI]
        assert body["latest"] == body["track"][-1]
        assert body["latest"]["readableVia"] == "public" and body["latest"]["sog"] == 9.5
        status, body = await port.get(who, "/v1/telemetry/readings?type=ais-position"
                                           "&mmsi=371798000")
        assert status == 200 and body["readings"][0]["lat"] == pytest.approx(48.381633)
    response = await port.client.get(f"/v1/vessels/{tt.EVER_DIADEM_IMO}/positions")
    assert response.status == 401
    status, body = await port.get("bank", "/v1/vessels/9321483/positions")
    assert (status, body["error"]["code"]) == (404, "unknown-vessel")


MALFORMED = [
    ("/v1/vessels/12345/positions", "bad-imo"),
    ("/v1/telemetry/readings?type=reefer", "bad-query"),
    ("/v1/telemetry/readings?type=reefer&subject=container:X&mmsi=1", "bad-query"),
    ("/v1/telemetry/readings?type=weather&subject=container:X", "bad-query"),
    ("/v1/telemetry/readings?type=reefer&subject=parcel:X", "bad-subject"),
    ("/v1/telemetry/readings?type=reefer&subject=container:NOT-A-BOX", "bad-subject"),
    ("/v1/telemetry/readings?type=reefer&subject=truck:KV1&since=yesterday", "bad-query"),
    ("/v1/telemetry/readings?type=reefer&subject=truck:KV1&limit=0", "bad-query"),
    ("/v1/telemetry/readings?type=reefer&subject=truck:KV1&since=2026-01-02T00:00:00Z"
     "&until=2026-01-01T00:00:00Z", "bad-query"),
    ("/v1/telemetry/readings/abc", "bad-reading-id"),
]


async def test_malformed_queries_are_400(port: Port) -> None:
    for path, code in MALFORMED:
        status, body = await port.get("bank", path)
        assert (status, body["error"]["code"]) == (400, code), path


async def test_the_owner_is_told_a_reading_is_not_anchored_yet(port: Port) -> None:
    status, body = await port.post("terminal", "/v1/proofs/readings/2")
    assert (status, body["error"]["code"]) == (409, "not-anchored")
    static = await port.get("terminal", "/v1/telemetry/readings?type=ais-static&mmsi=351759000")
    reading_id = static[1]["readings"][0]["id"]
    status, body = await port.post("bank", f"/v1/proofs/readings/{reading_id}")
    assert status == 409 and "not anchored" in body["error"]["message"]


async def test_ingest_refusals_are_typed_422(port: Port) -> None:
    bad = [Reading("reefer", 1 << 41, Reference("container", BOX), {"temperature": 1.0})]
    with pytest.raises(Exception) as info:
        await service.ingest(port.client.app, port.org_ids["terminal"], bad, Visibility())
    assert getattr(info.value, "status", None) == 422
    assert getattr(info.value, "code", None) == "invalid-time"


async def test_mutated_queries_never_get_a_server_error(port: Port) -> None:
    rng = random.Random(1790)
    valid = [
        f"/v1/telemetry/readings?type=reefer&subject=container:{BOX}&since=2026-09-22T00:00:00Z"
        "&limit=20",
        f"/v1/telemetry/readings?type=truck-position&subject=truck:{PLATE}",
        "/v1/telemetry/readings?type=ais-position&mmsi=371798000&until=2030-01-01T00:00:00Z",
        f"/v1/telemetry/readings/3?subject=container:{BOX}",
        f"/v1/vessels/IMO{tt.EVER_DIADEM_IMO}/positions?limit=2",
    ]
    seen = set()
    for _ in range(250):
        path = bytearray(rng.choice(valid).encode())
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(path))
            match rng.randrange(3):
                case 0:
                    path[at] = rng.choice(b"%:&=?/#+ -_.~0123456789AZaz\x7f")
                case 1:
                    del path[at:at + rng.randint(1, 6)]
                case _:
                    path[at:at] = rng.choice([b"%ED%A0%80", b"%00", b"%FF", b"::", b"&type=",
                                              b"9" * 20, b"-1"])
        text = path.decode("latin-1")
        if not text.startswith("/") or text.startswith("//") or "#" in text or " " in text:
            continue
        status, _ = await port.get("rival", text)
        seen.add(status)
        assert status < 500, text
    assert {200, 400, 404} <= seen


def test_the_examples_in_the_docstrings_hold() -> None:
    for module in (visibility, anchoring):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
