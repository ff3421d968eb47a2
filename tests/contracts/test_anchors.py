"""Anchors: telemetry Merkle roots, role per kind, on-chain inclusion proofs."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from contracts.anchors import KINDS, leaf, merkle_proof, merkle_root, verify
from tests.support.deployment import Deployment, reverts

AIS, REEFER, TRUCK_GPS = KINDS["AIS"], KINDS["REEFER"], KINDS["TRUCK_GPS"]
READINGS = [keccak(f'{{"mmsi":477123400,"lat":22.3{i},"lon":114.1{i}}}'.encode()) for i in range(7)]
T0 = 1_795_000_000


def anchor(port: Deployment, org: int, kind: int = REEFER, hashes: list[bytes] = READINGS) -> int:
    fn = port.Anchors.functions.anchor(kind, merkle_root(hashes), len(hashes), T0, T0 + 60)
    port.transact(fn, port.accounts[org])
    return int(port.Anchors.functions.anchor_count().call())


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 33])
def test_python_tree_round_trip(size: int) -> None:
    hashes = [keccak(bytes([i])) for i in range(size)]
    root = merkle_root(hashes)
    for i in range(size):
        assert verify(root, hashes[i], merkle_proof(hashes, i))
    assert not verify(root, keccak(b"forged"), merkle_proof(hashes, 0))


def test_anchor(port: Deployment) -> None:
    a = port.Anchors.functions
    root = merkle_root(READINGS)
    r = port.transact(a.anchor(REEFER, root, len(READINGS), T0, T0 + 60), port.accounts[2])
    assert port.events(r, "Anchors", "Anchored") == [
        {
            "anchor": 1,
            "publisher": 2,
            "kind": REEFER,
            "root": root,
            "count": 7,
            "start": T0,
            "end": T0 + 60,
        }
    ]
    assert a.anchor_count().call() == 1
    assert list(a.anchorOf(1).call()) == [root, REEFER, 2, 7, T0, T0 + 60]
    assert list(a.anchorOf(2).call()) == [b"\x00" * 32, 0, 0, 0, 0, 0]
    assert a.consortium().call() == port.Consortium.address


def test_inclusion(port: Deployment) -> None:
    a = port.Anchors.functions
    anchor_id = anchor(port, 2)
    for i, reading in enumerate(READINGS):
        assert a.verifyReading(anchor_id, reading, merkle_proof(READINGS, i)).call()
    assert not a.verifyReading(anchor_id, keccak(b"forged"), merkle_proof(READINGS, 0)).call()
    assert not a.verifyReading(anchor_id, READINGS[1], merkle_proof(READINGS, 0)).call()
    assert not a.verifyReading(anchor_id + 1, READINGS[0], merkle_proof(READINGS, 0)).call()
    # An inner node is never accepted as a reading (leaves and nodes are domain-separated).
    inner = keccak(
        b"\x01"
        + min(leaf(READINGS[0]), leaf(READINGS[1]))
        + max(leaf(READINGS[0]), leaf(READINGS[1]))
    )
    assert not a.verifyReading(anchor_id, inner, merkle_proof(READINGS, 0)[1:]).call()


def test_single_reading_batch(port: Deployment) -> None:
    anchor_id = anchor(port, 7, TRUCK_GPS, READINGS[:1])
    assert port.Anchors.functions.verifyReading(anchor_id, READINGS[0], []).call()


@pytest.mark.parametrize(
    ("org", "kind", "allowed"),
    [
        (1, AIS, True),
        (3, AIS, True),
        (7, AIS, False),
        (2, REEFER, True),
        (7, REEFER, True),
        (5, REEFER, False),
        (7, TRUCK_GPS, True),
        (6, TRUCK_GPS, True),
        (2, TRUCK_GPS, False),
        (9, AIS, False),
    ],
)
def test_roles_per_kind(port: Deployment, org: int, kind: int, allowed: bool) -> None:
    if allowed:
        assert anchor(port, org, kind) == 1
    else:
        with reverts("anchors: caller may not anchor this kind"):
            anchor(port, org, kind)


def test_anchor_refusals(port: Deployment) -> None:
    a = port.Anchors.functions
    root = merkle_root(READINGS)
    with reverts("anchors: caller is not a member"):
        port.transact(a.anchor(REEFER, root, 1, T0, T0), port.spare[0])
    for kind in (0, 4):
        with reverts("anchors: unknown kind"):
            port.transact(a.anchor(kind, root, 1, T0, T0), port.accounts[2])
    with reverts("anchors: empty root"):
        port.transact(a.anchor(REEFER, b"\x00" * 32, 1, T0, T0), port.accounts[2])
    with reverts("anchors: invalid count"):
        port.transact(a.anchor(REEFER, root, 0, T0, T0), port.accounts[2])
    with reverts("anchors: invalid time range"):
        port.transact(a.anchor(REEFER, root, 1, T0 + 1, T0), port.accounts[2])
    with reverts("anchors: invalid time range"):
        port.transact(a.anchor(REEFER, root, 1, T0, 2**40), port.accounts[2])
