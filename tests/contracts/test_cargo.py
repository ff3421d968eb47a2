"""CargoLedger: batch recording, role checks per event family, retraction, the encoding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import ROLES, cargo
from contracts.cargo import (
    CARGO_EVENT_TOPIC,
    EVENT_TYPES,
    CargoEventInput,
    decode_event_log,
    decode_record_call,
    encode_record_call,
    subject_key,
)
from tests.support.deployment import Deployment, reset_port, reverts, reverts_without_reason

T0 = 1_795_000_000
CONTAINER = subject_key("CSQU 305438-3")


def event(
    kind: str,
    subject: bytes = CONTAINER,
    payload: bytes = b"",
    retracts: int = 0,
    classifier: int = 3,
    location: str = "HKHKG",
) -> CargoEventInput:
    return CargoEventInput(
        subject=subject,
        event_type=EVENT_TYPES[kind],
        classifier=classifier,
        event_time=T0,
        location=location,
        payload_hash=os.urandom(32),
        payload=payload,
        retracts=retracts,
    )


def record(port: Deployment, org: int, events: list[CargoEventInput]) -> list[cargo.CargoEvent]:
    receipt = port.send(port.CargoLedger.address, encode_record_call(events), port.accounts[org])
    return [
        decode_event_log(log["topics"], log["data"])
        for log in receipt.logs
        if log["topics"][0] == CARGO_EVENT_TOPIC
    ]


def record_raw(port: Deployment, org: int, data: bytes) -> None:
    port.send(port.CargoLedger.address, data, port.accounts[org])


def test_family_table_matches_python() -> None:
    source = (Path(cargo.__file__).parent / "CargoLedger.vy").read_text()
    assert f"FAMILY_TABLE: public(constant(uint256)) = {cargo.family_table()}" in source


def test_family_table_view(port: Deployment) -> None:
    assert port.CargoLedger.functions.FAMILY_TABLE().call() == cargo.family_table()
    assert port.CargoLedger.functions.consortium().call() == port.Consortium.address


def test_encoding_round_trip() -> None:
    events = [event("TERMINAL.DISC", payload=os.urandom(n)) for n in (0, 1, 32, 33, 100, 1024)]
    events.append(event("SHIPMENT.ISSU", location="", retracts=5 << 16 | 3, classifier=1))
    data = encode_record_call(events)
    assert data[:4] == cargo.RECORD_SELECTOR
    assert decode_record_call(data) == events
    assert len(cargo.encode_event(events[2])) == 87 + 32
    assert len(cargo.encode_event(events[3])) == 87 + 64
    with pytest.raises(ValueError):
        cargo.payload_class(1025)
    with pytest.raises(ValueError):
        encode_record_call([])
    with pytest.raises(ValueError):
        cargo.encode_event(event("TERMINAL.DISC", location="HKG"))


def test_subject_key_normalises() -> None:
    assert subject_key("csqu 305438-3") == subject_key("CSQU3054383")
    assert subject_key("CSQU3054383") != subject_key("CSQU3054384")


def test_record_batch(port: Deployment) -> None:
    events = [event("TERMINAL.DISC", payload=os.urandom(n)) for n in (0, 20, 64, 65, 200, 300, 700)]
    receipt = port.send(port.CargoLedger.address, encode_record_call(events), port.accounts[2])
    logged = [
        decode_event_log(log["topics"], log["data"])
        for log in receipt.logs
        if log["topics"][0] == CARGO_EVENT_TOPIC
    ]
    assert len(logged) == len(events)
    for i, (sent, got) in enumerate(zip(events, logged, strict=True)):
        assert got.event_id == 1 << 16 | i
        assert got.publisher == 2
        assert (
            CargoEventInput(
                **{k: v for k, v in got.__dict__.items() if k not in ("event_id", "publisher")}
            )
            == sent
        )
    for log in receipt.logs:
        if log["topics"][0] == CARGO_EVENT_TOPIC:
            assert log["topics"][1] == CONTAINER
    batch = port.events(receipt, "CargoLedger", "CargoBatch")
    assert batch == [{"batch": 1, "publisher": 2, "count": len(events)}]
    c = port.CargoLedger.functions
    assert c.batch_count().call() == 1
    assert c.batchOf(1).call() == [2, len(events)]
    assert c.publisherOf(1 << 16 | 6).call() == 2
    assert c.publisherOf(1 << 16 | 7).call() == 0
    assert c.publisherOf(2 << 16).call() == 0
    again = record(port, 3, [event("SHIPMENT.ISSU")])
    assert again[0].event_id == 2 << 16 and again[0].publisher == 3


@pytest.mark.parametrize(
    ("org", "kind"),
    [
        (3, "SHIPMENT.CONF"),
        (5, "SHIPMENT.RECE"),
        (3, "TRANSPORT.ARRI"),
        (2, "TRANSPORT.DEPA"),
        (2, "TERMINAL.AVPU"),
        (7, "EQUIPMENT.PICK"),
        (4, "EQUIPMENT.INSP"),
        (2, "REEFER.MEAS"),
        (7, "LAND.HAND_OVER"),
        (6, "LAND.POSITION_ANCHOR"),
        (2, "WAREHOUSE.RECEIPT"),
        (8, "AIR.RCS"),
        (5, "AIR.DLV"),
        (4, "CUSTOMS.CUSR"),
        (10, "CUSTOMS.CUSH"),
    ],
)
def test_roles_that_may_publish(port: Deployment, org: int, kind: str) -> None:
    assert record(port, org, [event(kind)])[0].event_type == EVENT_TYPES[kind]


@pytest.mark.parametrize(
    ("org", "kind", "reason"),
    [
        (3, "TERMINAL.AVPU", "cargo: caller is not a terminal"),
        (5, "TERMINAL.GTOT", "cargo: caller is not a terminal"),
        (2, "CUSTOMS.CUSR", "cargo: caller is not customs"),
        (3, "CUSTOMS.CUSR", "cargo: caller is not customs"),
        (2, "SHIPMENT.ISSU", "cargo: caller may not publish this event type"),
        (3, "WAREHOUSE.RELEASE", "cargo: caller may not publish this event type"),
        (9, "AIR.DEP", "cargo: caller may not publish this event type"),
        (1, "TRANSPORT.ARRI", "cargo: caller may not publish this event type"),
        (8, "LAND.PICK_UP", "cargo: caller may not publish this event type"),
    ],
)
def test_role_refusals(port: Deployment, org: int, kind: str, reason: str) -> None:
    with reverts(reason):
        record(port, org, [event(kind)])


def test_one_refused_event_reverts_the_batch(port: Deployment) -> None:
    with reverts("cargo: caller is not customs"):
        record(port, 2, [event("TERMINAL.DISC"), event("TERMINAL.LOAD"), event("CUSTOMS.CUSI")])
    assert port.CargoLedger.functions.batch_count().call() == 0


@pytest.mark.parametrize("code", [0x0000, 0x0101 - 1, 0x0112, 0x0306, 0x0A01, 0xFF01, 0x0903 + 2])
def test_unknown_event_types(port: Deployment, code: int) -> None:
    bad = CargoEventInput(subject=CONTAINER, event_type=code, classifier=3, event_time=T0)
    with reverts("cargo: unknown event type"):
        record(port, 2, [bad])


def test_all_zero_type_and_classifier_is_checked(port: Deployment) -> None:
    # Type and classifier are checked only when they change; an all-zero first event must not
    # slip through as "unchanged".
    bad = CargoEventInput(subject=CONTAINER, event_type=0, classifier=0, event_time=T0)
    with reverts("cargo: unknown event type"):
        record(port, 2, [bad])
    with reverts("cargo: unknown event type"):
        record(port, 2, [event("TERMINAL.DISC"), bad])


def test_repeated_type_still_checks_each_change(port: Deployment) -> None:
    ok = [event("TERMINAL.DISC"), event("TERMINAL.DISC"), event("TERMINAL.GTOT")]
    with reverts("cargo: caller is not customs"):
        record(port, 2, ok + [event("CUSTOMS.CUSR")])
    with reverts("cargo: invalid classifier"):
        record(port, 2, ok + [event("TERMINAL.GTOT", classifier=0)])


def test_non_member(port: Deployment) -> None:
    with reverts("cargo: caller is not a member"):
        port.send(
            port.CargoLedger.address, encode_record_call([event("TERMINAL.DISC")]), port.spare[0]
        )


def test_invalid_classifier(port: Deployment) -> None:
    for classifier in (0, 4):
        with reverts("cargo: invalid classifier"):
            record(port, 2, [event("TERMINAL.DISC", classifier=classifier)])


def test_malformed_batches(port: Deployment) -> None:
    with reverts("cargo: empty batch"):
        record_raw(port, 2, cargo.RECORD_SELECTOR)
    # Truncation is caught by the bounds check of the calldata slice (no reason string: the
    # check costs nothing extra per event).
    whole = encode_record_call([event("TERMINAL.DISC", payload=b"x" * 40)])
    with reverts_without_reason():
        record_raw(port, 2, whole[:-1])
    with reverts_without_reason():
        record_raw(port, 2, whole + b"\x00" * 50)
    with reverts_without_reason():
        record_raw(port, 2, cargo.RECORD_SELECTOR + b"\x03")
    assert port.CargoLedger.functions.batch_count().call() == 0
    long = bytearray(encode_record_call([event("TERMINAL.DISC", payload=b"x" * 1024)]))
    long[4 + 21 : 4 + 23] = (1025).to_bytes(2, "big")
    with reverts("cargo: payload too long"):
        record_raw(port, 2, bytes(long) + b"\x00" * 2000)


def test_too_many_events(port: Deployment) -> None:
    one = cargo.encode_event(event("TERMINAL.DISC"))
    with reverts("cargo: too many events"):
        record_raw(port, 2, cargo.RECORD_SELECTOR + one * 1001)
    assert len(record(port, 2, [event("TERMINAL.DISC")] * 1000)) == 1000


def test_retraction(port: Deployment) -> None:
    first = record(port, 2, [event("TERMINAL.DISC"), event("TERMINAL.GTOT")])
    fix = record(port, 2, [event("TERMINAL.GTOT", retracts=first[1].event_id)])
    assert fix[0].retracts == first[1].event_id
    # Within one batch: an event may retract an earlier one of the same batch.
    same = record(port, 2, [event("TERMINAL.LOAD"), event("TERMINAL.LOAD", retracts=3 << 16)])
    assert same[1].retracts == 3 << 16


def test_retraction_refusals(port: Deployment) -> None:
    first = record(port, 2, [event("TERMINAL.DISC"), event("EQUIPMENT.STUF")])
    with reverts("cargo: caller is not the publisher"):
        record(port, 7, [event("EQUIPMENT.PICK", retracts=first[1].event_id)])
    with reverts("cargo: retracted event does not exist"):
        record(port, 2, [event("TERMINAL.DISC", retracts=1 << 16 | 2)])
    with reverts("cargo: retracted event does not exist"):
        record(port, 2, [event("TERMINAL.DISC", retracts=9 << 16)])
    with reverts("cargo: retracted event does not exist"):  # a later event of its own batch
        record(port, 2, [event("TERMINAL.DISC", retracts=2 << 16 | 1), event("TERMINAL.DISC")])
    with reverts("cargo: retracted event does not exist"):  # itself
        record(port, 2, [event("TERMINAL.DISC", retracts=2 << 16)])


def test_suspended_publisher_loses_access(port: Deployment) -> None:
    # Suspension is tested in test_consortium; here: a rotated-out account can no longer publish.
    c = port.Consortium.functions
    port.transact(c.addAccount(port.spare[0]), port.accounts[2])
    port.transact(c.removeAccount(port.accounts[2]), port.spare[0])
    with reverts("cargo: caller is not a member"):
        record(port, 2, [event("TERMINAL.DISC")])
    receipt = port.send(
        port.CargoLedger.address, encode_record_call([event("TERMINAL.DISC")]), port.spare[0]
    )
    assert port.events(receipt, "CargoLedger", "CargoBatch")[0]["publisher"] == 2


def test_roles_constant_mirrors_contract() -> None:
    source = (Path(cargo.__file__).parent / "roles.vy").read_text()
    for name, bit in ROLES.items():
        assert f"{name.upper()}: constant(uint256) = {bit}\n" in source
    assert f"ALL: constant(uint256) = {sum(ROLES.values())}\n" in source


def test_every_payload_class_boundary(port: Deployment) -> None:
    lengths = sorted(
        {c for c in cargo.PAYLOAD_CLASSES} | {c + 1 for c in cargo.PAYLOAD_CLASSES[:-1]}
    )
    events = [event("TERMINAL.DISC", payload=os.urandom(n)) for n in lengths]
    logged = record(port, 2, events)
    assert [len(e.payload) for e in logged] == lengths
    assert [e.payload for e in logged] == [e.payload for e in events]


TERMINAL_TYPES = [k for k in EVENT_TYPES if k.split(".")[0] in ("TERMINAL", "TRANSPORT", "REEFER")]
events_strategy = st.lists(
    st.builds(
        CargoEventInput,
        subject=st.binary(min_size=32, max_size=32),
        event_type=st.sampled_from([EVENT_TYPES[k] for k in TERMINAL_TYPES]),
        classifier=st.integers(1, 3),
        event_time=st.integers(0, 2**40 - 1),
        location=st.sampled_from(["", "HKHKG", "CNYTN", "NLRTM"]),
        payload_hash=st.binary(min_size=32, max_size=32),
        payload=st.binary(max_size=300),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(events=events_strategy)
def test_logs_decode_to_what_was_sent(events: list[CargoEventInput]) -> None:
    port = reset_port()
    assert decode_record_call(encode_record_call(events)) == events
    logged = record(port, 2, events)
    assert [e.event_id for e in logged] == [1 << 16 | i for i in range(len(events))]
    assert [
        CargoEventInput(
            **{k: v for k, v in e.__dict__.items() if k not in ("event_id", "publisher")}
        )
        for e in logged
    ] == events
