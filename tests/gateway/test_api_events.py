"""Upload API through the real app: outbox, accounts, keystore and read model, no nodes."""

from __future__ import annotations

import copy
import json
import os

import pytest
from eth_abi import decode as abi_decode

from contracts import abi
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, KEYSTORE, OUTBOX, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.events import dcsa
from gateway.events.model import Reference
from gateway.readside.readmodel import MasterContainers
from gateway.tracking.visibility import grant_context
from tests.support.events import EQUIPMENT_EVENT, TRANSPORT_EVENT, canonical_json
from tests.support.intake import IntakeHarness, intake_harness

# Chain organisation ids of the test port (as in the demo genesis order).
TERMINAL, CARRIER, FORWARDER, TRADER, STRANGER = 2, 4, 5, 13, 14


@pytest.fixture
async def port(aiohttp_client, gateway_config: GatewayConfig) -> IntakeHarness:
    return await intake_harness(aiohttp_client, gateway_config, [
        (TERMINAL, "Kwai Tsing Container Terminal", ("terminal",)),
        (CARRIER, "Pacific Ocean Line", ("carrier",)),
        (FORWARDER, "Harbour Freight Forwarding", ("forwarder",)),
        (TRADER, "Sino Trading Company", ()),
    ])


# -- POST /v1/events ---------------------------------------------------------------------------
async def test_single_event_is_accepted_once(port):
    body = canonical_json()
    first = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "e-1"})
    assert first.status == 202, await first.text()
    [receipt] = (await first.json())["receipts"]
    assert receipt["id"] == "e-1" and receipt["status"] == "accepted"
    assert receipt["duplicate"] is False
    again = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "e-1"})
    [second] = (await again.json())["receipts"]
    assert second["duplicate"] is True and second["opId"] == receipt["opId"]
    [op] = port.pending(TERMINAL)
    assert op.event.event_type == "TERMINAL.DISC"
    assert op.event.subject == Reference("container", "CSQU3054383")
    reused = await port.post("/v1/events", TERMINAL, canonical_json(location="CNSHA"),
                             headers={"Idempotency-Key": "e-1"})
    assert reused.status == 409
    assert (await reused.json())["error"]["code"] == "idempotency-key-reused"


async def test_single_event_needs_an_idempotency_key(port):
    response = await port.post("/v1/events", TERMINAL, canonical_json())
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "missing-idempotency-key"
    assert port.pending(TERMINAL) == []


async def test_list_of_events(port):
    events = [{"id": "a", **canonical_json()},
              {"id": "b", **canonical_json(type="TERMINAL.AVPU")}]
    response = await port.post("/v1/events", TERMINAL, {"events": events})
    assert response.status == 202
    assert [r["id"] for r in (await response.json())["receipts"]] == ["a", "b"]
    assert [op.event.event_type for op in port.pending(TERMINAL)] == [
        "TERMINAL.DISC", "TERMINAL.AVPU"]


async def test_anonymous_and_not_on_chain(port):
    response = await port.client.post("/v1/events", json=canonical_json(),
                                      headers={"Idempotency-Key": "x"})
    assert response.status == 401
    response = await port.post("/v1/events", 0, canonical_json(),
                               headers={"Idempotency-Key": "x"})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "not-on-chain"


async def test_family_must_be_one_the_roles_may_publish(port):
    response = await port.post("/v1/events", CARRIER, canonical_json(),
                               headers={"Idempotency-Key": "x"})
    assert response.status == 403
    error = (await response.json())["error"]
    assert error["code"] == "role-not-allowed"
    assert "TERMINAL events are published by terminal" in error["message"]
    trader = await port.post("/v1/events", TRADER,
                             canonical_json(type="SHIPMENT.ISSU",
                                            subject={"kind": "mbl", "value": "PCOL1"}),
                             headers={"Idempotency-Key": "x"})
    assert trader.status == 403
    assert port.pending(CARRIER) == [] and port.pending(TRADER) == []


async def test_invalid_container_number_names_the_check_digit(port):
    body = canonical_json(subject={"kind": "container", "value": "CSQU3054384"})
    response = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "x"})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "invalid-check-digit"
    assert "check digit is 3, not 4" in error["message"]


@pytest.mark.parametrize("body", [
    canonical_json(colour="red"),
    canonical_json(subject={"kind": "container", "value": "CSQU3054383", "x": 1}),
    canonical_json(type="TERMINAL.SWIM"),
    canonical_json(time="yesterday"),
    canonical_json(time="2026-11-24T08:15:00"),
    canonical_json(related=[{"kind": "mbl", "value": "<script>alert(1)</script>"}]),
    canonical_json(location="'; DROP TABLE ops; --"),
])
async def test_bad_events_get_422(port, body):
    response = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "x"})
    assert response.status == 422, await response.text()
    assert port.pending(TERMINAL) == []


async def test_bad_json_gets_400(port):
    response = await port.post("/v1/events", TERMINAL, data=b"{not json",
                               headers={"Idempotency-Key": "x",
                                        "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad-json"


async def test_deeply_nested_json_is_refused_not_a_crash(port):
    # py_ecc raises the recursion limit to 100,000: without the depth check CPython's C JSON
    # decoder overflows the C stack on this body and the whole gateway dies
    deep = b"[" * 300_000 + b"]" * 300_000
    response = await port.post("/v1/events/bulk", TERMINAL, data=deep,
                               headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "too-deep"
    response = await port.post("/v1/events/bulk", TERMINAL, data=b"[1]\n" + b"[" * 300_000,
                               headers={"Content-Type": "application/x-ndjson"})
    assert response.status == 422
    items = (await response.json())["error"]["details"]["items"]
    assert "nested 300000 deep" in items[1]["message"]


async def test_sealed_size_is_checked(port):
    noise = os.urandom(700).hex()  # incompressible
    body = canonical_json(details={"note": noise[:1900]})
    response = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "x"})
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "envelope-too-large"


async def test_named_readers_must_be_members(port):
    body = canonical_json(visibility={"mode": "named", "readers": [CARRIER, 77]})
    response = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "x"})
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "unknown-reader"
    body = canonical_json(visibility={"mode": "reference", "readers": [CARRIER, FORWARDER]})
    response = await port.post("/v1/events", TERMINAL, body, headers={"Idempotency-Key": "y"})
    assert response.status == 202
    [op] = port.pending(TERMINAL)
    assert op.event.visibility.readers == (CARRIER, FORWARDER)


# -- bulk ------------------------------------------------------------------------------------
def _ndjson(items) -> bytes:
    return b"\n".join(json.dumps(i).encode() for i in items) + b"\n"


async def test_bulk_ndjson(port):
    items = [{"id": f"n{i}", **canonical_json(time=f"2026-11-24T08:{i:02d}:00Z")}
             for i in range(50)]
    response = await port.post("/v1/events/bulk", TERMINAL, data=_ndjson(items),
                               headers={"Content-Type": "application/x-ndjson"})
    assert response.status == 202, await response.text()
    receipts = (await response.json())["receipts"]
    assert [r["id"] for r in receipts] == [f"n{i}" for i in range(50)]
    assert len(port.pending(TERMINAL)) == 50


async def test_bulk_json_array(port):
    items = [{"id": "j1", **canonical_json()}, {"id": "j2", **canonical_json(classifier="EST")}]
    response = await port.post("/v1/events/bulk", TERMINAL, items)
    assert response.status == 202
    assert len((await response.json())["receipts"]) == 2


async def test_bulk_is_all_or_nothing_and_lists_every_bad_item(port):
    items = [
        {"id": "ok", **canonical_json()},
        {"id": "bad-digit", **canonical_json(subject={"kind": "container",
                                                      "value": "CSQU3054384"})},
        canonical_json(),  # no id
    ]
    body = _ndjson(items) + b"{broken\n"
    response = await port.post("/v1/events/bulk", TERMINAL, data=body,
                               headers={"Content-Type": "application/x-ndjson"})
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert details["failed"] == 3 and details["total"] == 4
    assert [(i["index"], i["code"]) for i in details["items"]] == [
        (1, "invalid-check-digit"), (2, "schema-violation"), (3, "bad-json")]
    assert port.pending(TERMINAL) == []
    status = await port.client.get("/v1/submissions/ok", headers=port.auth(TERMINAL))
    assert status.status == 404


async def test_bulk_role_refusal_is_403(port):
    items = [{"id": "t1", **canonical_json()}]
    response = await port.post("/v1/events/bulk", CARRIER, items)
    assert response.status == 403
    assert (await response.json())["error"]["details"]["items"][0]["code"] == "role-not-allowed"


async def test_bulk_content_type_and_size(port, aiohttp_client, tmp_path):
    response = await port.post("/v1/events/bulk", TERMINAL, data=b"x",
                               headers={"Content-Type": "text/csv"})
    assert response.status == 415
    small = create_app(GatewayConfig(data_dir=tmp_path / "small", keystore_passphrase="p",
                                     cookie_secure=False, max_bulk_body_bytes=1000))
    client = await aiohttp_client(small)
    org = small[ACCOUNTS].create_organisation("T", ("terminal",), status="active", chain_org=2)
    _, key = small[ACCOUNTS].create_api_key(org.id, ["events:write"], "t")
    items = [{"id": f"s{i}", **canonical_json()} for i in range(10)]
    response = await client.post("/v1/events/bulk", data=_ndjson(items),
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/x-ndjson"})
    assert response.status == 413


# -- DCSA in -----------------------------------------------------------------------------------
async def test_dcsa_equipment_event(port):
    response = await port.post("/v2/events", TERMINAL, EQUIPMENT_EVENT)
    assert response.status == 202, await response.text()
    [receipt] = (await response.json())["receipts"]
    assert receipt["id"] == f"dcsa:{EQUIPMENT_EVENT['eventID']}"
    [op] = port.pending(TERMINAL)
    assert op.event == dcsa.from_dcsa(EQUIPMENT_EVENT)[0]
    again = await port.post("/v2/events", TERMINAL, EQUIPMENT_EVENT)
    assert (await again.json())["receipts"][0]["duplicate"] is True
    status = await port.client.get(f"/v1/submissions/dcsa:{EQUIPMENT_EVENT['eventID']}",
                                   headers=port.auth(TERMINAL))
    assert status.status == 200
    assert (await status.json())["status"] == "accepted"


async def test_dcsa_list_with_header_and_visibility(port):
    events = [EQUIPMENT_EVENT, TRANSPORT_EVENT]
    response = await port.post(f"/v2/events?visibility=reference&readers={CARRIER}", TERMINAL,
                               events, headers={"Idempotency-Key": "call-77"})
    assert response.status == 202, await response.text()
    assert [r["id"] for r in (await response.json())["receipts"]] == ["call-77/0", "call-77/1"]
    ops = port.pending(TERMINAL)
    assert [op.event.event_type for op in ops] == ["TERMINAL.DISC", "TRANSPORT.ARRI"]
    assert all(op.event.visibility.mode == "reference" for op in ops)
    assert all(op.event.visibility.readers == (CARRIER,) for op in ops)


async def test_dcsa_unknown_field_and_path(port):
    event = copy.deepcopy(EQUIPMENT_EVENT)
    event["transportCall"]["vessel"]["vesselColour"] = "red"
    response = await port.post("/v2/events", TERMINAL, event)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["details"]["items"][0]["path"] == "/transportCall/vessel/vesselColour"


async def test_dcsa_roles(port):
    # a carrier's DCSA discharge is a TERMINAL event on PortLedger: only terminals publish it
    response = await port.post("/v2/events", CARRIER, EQUIPMENT_EVENT)
    assert response.status == 403
    transport = await port.post("/v2/events", CARRIER, TRANSPORT_EVENT)
    assert transport.status == 202


async def test_dcsa_without_event_id_needs_a_header(port):
    event = {k: v for k, v in TRANSPORT_EVENT.items() if k != "eventID"}
    response = await port.post("/v2/events", CARRIER, event)
    assert response.status == 400


# -- bills of lading ---------------------------------------------------------------------------
MASTER = {
    "master": "PCOL-1234567",
    "containers": ["CSQU3054383", "MSKU9070323", "APZU4812090"],
    "vessel": {"imo": "IMO 9321483", "name": "KING OF THE SEAS", "voyage": "2103S"},
    "pol": "CNSHA", "pod": "HKHKG",
    "etd": "2026-11-20T00:00:00Z", "eta": "2026-11-24T06:00:00Z",
    "issuedAt": "2026-11-18T10:00:00Z",
    "visibility": {"mode": "named", "readers": [TERMINAL, FORWARDER]},
}


def _keys(*refs: tuple[str, str]) -> list[bytes]:
    return [Reference(kind, value).key for kind, value in refs]


async def test_register_master(port):
    response = await port.post("/v1/bills-of-lading", CARRIER, MASTER)
    assert response.status == 202, await response.text()
    receipts = (await response.json())["receipts"]
    assert [r["id"] for r in receipts] == ["bl:PCOL1234567", "bl:PCOL1234567:event"]
    call, event = port.pending(CARRIER)
    containers = _keys(*(("container", c) for c in MASTER["containers"]))
    assert call.kind == "call" and call.to == abi.address("BillOfLading")
    assert call.data == abi.call_data("BillOfLading", "registerMaster",
                                      Reference("mbl", "PCOL1234567").key, containers)
    shipment = event.event
    assert shipment.event_type == "SHIPMENT.ISSU"
    assert shipment.subject == Reference("mbl", "PCOL1234567")
    assert [r.value for r in shipment.related if r.kind == "container"] == MASTER["containers"]
    assert Reference("vessel", "9321483") in shipment.related
    assert shipment.details["vessel"] == {"imo": "9321483", "name": "KING OF THE SEAS"}
    assert shipment.details["voyage"] == "2103S" and shipment.details["pod"] == "HKHKG"
    assert shipment.visibility.readers == (TERMINAL, FORWARDER)
    # a retry without a header is recognised (the event's time is not what decides)
    again = await port.post("/v1/bills-of-lading", CARRIER,
                            {k: v for k, v in MASTER.items() if k != "issuedAt"})
    assert again.status == 202
    assert [(r["id"], r["duplicate"]) for r in (await again.json())["receipts"]] == [
        ("bl:PCOL1234567", True), ("bl:PCOL1234567:event", True)]
    changed = await port.post("/v1/bills-of-lading", CARRIER,
                              {**MASTER, "containers": MASTER["containers"][:2]})
    assert changed.status == 409


async def test_register_master_checks(port):
    bad = await port.post("/v1/bills-of-lading", CARRIER,
                          {**MASTER, "containers": ["CSQU3054384"]})
    assert bad.status == 422
    assert "check digit is 3" in (await bad.json())["error"]["message"]
    terminal = await port.post("/v1/bills-of-lading", TERMINAL, MASTER)
    assert terminal.status == 403
    imo = await port.post("/v1/bills-of-lading", CARRIER,
                          {**MASTER, "vessel": {"imo": "9321484"}})
    assert imo.status == 422
    twice = await port.post("/v1/bills-of-lading", CARRIER,
                            {**MASTER, "containers": ["CSQU3054383", "csqu 305438 3"]})
    assert twice.status == 422
    assert port.pending(CARRIER) == []


async def test_link_house(port):
    master_key = Reference("mbl", "PCOL1234567").key
    covered = _keys(*(("container", c) for c in MASTER["containers"]))
    port.app[READ_MODEL].apply_changes([MasterContainers(master_key, CARRIER, tuple(covered), 1)])
    body = {"house": "HF-88812", "containers": ["CSQU3054383", "MSKU9070323"]}
    response = await port.post("/v1/bills-of-lading/PCOL1234567/houses", FORWARDER, body)
    assert response.status == 202, await response.text()
    call, event = port.pending(FORWARDER)
    assert call.data == abi.call_data(
        "BillOfLading", "linkHouse", Reference("hbl", "HF88812").key, master_key, covered[:2])
    house = event.event
    assert house.subject == Reference("hbl", "HF88812")
    assert house.visibility.mode == "reference"
    assert house.related == (Reference("mbl", "PCOL1234567"),
                             Reference("container", "CSQU3054383"),
                             Reference("container", "MSKU9070323"))
    again = await port.post("/v1/bills-of-lading/PCOL1234567/houses", FORWARDER, body)
    assert [(r["id"], r["duplicate"]) for r in (await again.json())["receipts"]] == [
        ("hbl:HF88812", True), ("hbl:HF88812:event", True)]


async def test_link_house_outside_the_master(port):
    master_key = Reference("mbl", "PCOL1234567").key
    covered = _keys(("container", "CSQU3054383"))
    port.app[READ_MODEL].apply_changes([MasterContainers(master_key, CARRIER, tuple(covered), 1)])
    response = await port.post("/v1/bills-of-lading/PCOL1234567/houses", FORWARDER,
                               {"house": "HF-2", "containers": ["MSKU9070323"]})
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "container-not-on-master"
    carrier = await port.post("/v1/bills-of-lading/PCOL1234567/houses", CARRIER,
                              {"house": "HF-2", "containers": ["CSQU3054383"]})
    assert carrier.status == 403


# -- grants ------------------------------------------------------------------------------------
def _grant_args(data: bytes):
    return abi_decode(["uint8", "bytes32", "uint256", "bytes", "uint256"], data[4:])


async def test_grant_wraps_the_current_record_key_for_the_reader(port):
    body = {"subject": {"kind": "mbl", "value": "pcol-1234567"}, "reader": TRADER}
    response = await port.post("/v1/grants", CARRIER, body)
    assert response.status == 202, await response.text()
    [call] = port.pending(CARRIER)
    scope, target, reader, wrapped, expiry = _grant_args(call.data)
    subject = Reference("mbl", "PCOL1234567").key
    assert (scope, target, reader, expiry) == (1, subject, TRADER, 0)
    # the rule tracking unwraps with: context = grant_context(owner, subject, reader, scope)
    secret = confidential.unwrap_key(wrapped, x25519_private=port.reader_private[TRADER],
                                     context=grant_context(CARRIER, subject, TRADER))
    with pytest.raises(confidential.DecryptionFailed):  # bound to its grant: not replayable
        confidential.unwrap_key(wrapped, x25519_private=port.reader_private[TRADER],
                                context=grant_context(CARRIER, subject, FORWARDER))
    key, version = confidential.unpack_subject_grant(secret)
    owner = port.app[KEYSTORE].get(port.org_ids[CARRIER])
    assert version == 0
    assert key == confidential.record_key(owner.master_secret, subject, 0)
    again = await port.post("/v1/grants", CARRIER, body)
    assert (await again.json())["receipts"][0]["duplicate"] is True
    assert len(port.pending(CARRIER)) == 1


async def test_revoke_moves_to_the_next_key_version(port):
    subject = Reference("container", "CSQU3054383").key
    response = await port.client.delete(f"/v1/grants/container/CSQU3054383/{TRADER}",
                                        headers=port.auth(CARRIER))
    assert response.status == 202, await response.text()
    [call] = port.pending(CARRIER)
    assert call.data == abi.call_data("AccessGrants", "revoke", 1, subject, TRADER)
    outbox = port.app[OUTBOX]
    assert outbox.subject_version(port.org_ids[CARRIER], subject) == 1
    grant = await port.post("/v1/grants", CARRIER,
                            {"subject": {"kind": "container", "value": "CSQU3054383"},
                             "reader": FORWARDER, "expiresAt": "2099-01-01T00:00:00Z"})
    assert grant.status == 202
    _, _, _, wrapped, expiry = _grant_args(port.pending(CARRIER)[1].data)
    secret = confidential.unwrap_key(wrapped, x25519_private=port.reader_private[FORWARDER],
                                     context=grant_context(CARRIER, subject, FORWARDER))
    assert confidential.unpack_subject_grant(secret)[1] == 1
    assert expiry == 4070908800


async def test_grant_checks(port):
    own = await port.post("/v1/grants", CARRIER,
                          {"subject": {"kind": "mbl", "value": "PCOL1"}, "reader": CARRIER})
    assert own.status == 422
    unknown = await port.post("/v1/grants", CARRIER,
                              {"subject": {"kind": "mbl", "value": "PCOL1"}, "reader": 999})
    assert (await unknown.json())["error"]["code"] == "unknown-reader"
    past = await port.post("/v1/grants", CARRIER,
                           {"subject": {"kind": "mbl", "value": "PCOL1"}, "reader": TRADER,
                            "expiresAt": "2001-01-01T00:00:00Z"})
    assert past.status == 422
    bad = await port.client.delete("/v1/grants/passport/X1/13", headers=port.auth(CARRIER))
    assert bad.status == 422
    assert port.pending(CARRIER) == []


# -- status and document -----------------------------------------------------------------------
async def test_unknown_submission(port):
    response = await port.client.get("/v1/submissions/nope", headers=port.auth(TERMINAL))
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown-submission"


async def test_openapi_documents_the_upload_routes(port):
    doc = await (await port.client.get("/openapi.json")).json()
    for path in ("/v1/events", "/v1/events/bulk", "/v2/events", "/v1/submissions/{key}",
                 "/v1/bills-of-lading", "/v1/bills-of-lading/{master}/houses", "/v1/grants",
                 "/v1/grants/{kind}/{value}/{reader}"):
        assert path in doc["paths"], path
    assert "Receipt" in doc["components"]["schemas"]
