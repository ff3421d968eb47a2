"""BillOfLading: master B/Ls by carriers, house B/L links by forwarders, who may change what."""

from __future__ import annotations

from contracts.cargo import subject_key
from tests.support.deployment import Deployment, reverts

MBL = subject_key("OOLU2104567890")
HBL = subject_key("PRLHKG240001")
CONTAINERS = sorted(subject_key(c) for c in ("CSQU3054383", "OOLU1234567", "TGHU7654321"))
ZERO = b"\x00" * 32


def register(port: Deployment, containers: list[bytes] = CONTAINERS, carrier: int = 3) -> None:
    port.transact(
        port.BillOfLading.functions.registerMaster(MBL, containers), port.accounts[carrier]
    )


def link(port: Deployment, containers: list[bytes], forwarder: int = 5, house: bytes = HBL) -> None:
    port.transact(
        port.BillOfLading.functions.linkHouse(house, MBL, containers), port.accounts[forwarder]
    )


def test_register_master(port: Deployment) -> None:
    b = port.BillOfLading.functions
    r = port.transact(b.registerMaster(MBL, CONTAINERS), port.accounts[3])
    assert port.events(r, "BillOfLading", "MasterRegistered") == [
        {"master": MBL, "carrier": 3, "containers": CONTAINERS}
    ]
    assert b.carrierOf(MBL).call() == 3
    assert b.containersOf(MBL).call() == CONTAINERS
    assert b.covers(MBL, CONTAINERS[1]).call()
    assert not b.covers(MBL, HBL).call()
    assert b.consortium().call() == port.Consortium.address


def test_register_master_refusals(port: Deployment) -> None:
    b = port.BillOfLading.functions
    with reverts("billoflading: caller is not a carrier"):
        port.transact(b.registerMaster(MBL, CONTAINERS), port.accounts[5])
    with reverts("billoflading: caller is not a carrier"):
        port.transact(b.registerMaster(MBL, CONTAINERS), port.spare[0])
    with reverts("billoflading: empty reference"):
        port.transact(b.registerMaster(ZERO, CONTAINERS), port.accounts[3])
    with reverts("billoflading: empty reference"):
        port.transact(b.registerMaster(MBL, [ZERO]), port.accounts[3])
    with reverts("billoflading: container already on the master B/L"):
        port.transact(b.registerMaster(MBL, [CONTAINERS[0], CONTAINERS[0]]), port.accounts[3])
    register(port)
    with reverts("billoflading: master B/L already registered"):
        register(port)


def test_add_containers(port: Deployment) -> None:
    b = port.BillOfLading.functions
    register(port, CONTAINERS[:1])
    extra = CONTAINERS[1:]
    r = port.transact(b.addContainers(MBL, extra), port.accounts[3])
    assert port.events(r, "BillOfLading", "ContainersAdded")[0]["containers"] == extra
    assert b.containersOf(MBL).call() == CONTAINERS
    with reverts("billoflading: container already on the master B/L"):
        port.transact(b.addContainers(MBL, extra[:1]), port.accounts[3])
    with reverts("billoflading: unknown master B/L"):
        port.transact(b.addContainers(HBL, extra), port.accounts[3])
    with reverts("billoflading: caller is not a carrier"):
        port.transact(b.addContainers(MBL, extra), port.accounts[5])


def test_add_containers_only_by_its_carrier(port: Deployment) -> None:
    register(port)
    # A second carrier organisation (the haulier is given the carrier role through governance
    # in test_consortium; here the airline's roles are not carrier, so use a new master).
    from test_consortium import SET_ROLES, passed

    passed(port, SET_ROLES, [1, 2, 3, 4, 5, 6], org=8, roles=4 | 128)
    with reverts("billoflading: caller is not the master B/L's carrier"):
        port.transact(port.BillOfLading.functions.addContainers(MBL, [HBL]), port.accounts[8])


def test_too_many_containers(port: Deployment) -> None:
    many = sorted(subject_key(f"CONT{i:07d}") for i in range(256))
    register(port, many)
    with reverts("billoflading: too many containers"):
        port.transact(port.BillOfLading.functions.addContainers(MBL, [HBL]), port.accounts[3])


def test_link_house(port: Deployment) -> None:
    b = port.BillOfLading.functions
    register(port)
    subset = CONTAINERS[:2]
    r = port.transact(b.linkHouse(HBL, MBL, subset), port.accounts[5])
    assert port.events(r, "BillOfLading", "HouseLinked") == [
        {"house": HBL, "master": MBL, "forwarder": 5, "containers": subset}
    ]
    assert b.masterOf(HBL).call() == MBL
    assert b.forwarderOf(HBL).call() == 5
    assert list(b.house(HBL).call()) == [5, MBL, subset]
    assert b.housesOf(MBL).call() == [HBL]


def test_link_house_refusals(port: Deployment) -> None:
    b = port.BillOfLading.functions
    register(port)
    with reverts("billoflading: caller is not a forwarder"):
        port.transact(b.linkHouse(HBL, MBL, CONTAINERS[:1]), port.accounts[3])
    with reverts("billoflading: unknown master B/L"):
        port.transact(b.linkHouse(HBL, HBL, CONTAINERS[:1]), port.accounts[5])
    with reverts("billoflading: container is not on the master B/L"):
        port.transact(b.linkHouse(HBL, MBL, [MBL]), port.accounts[5])
    with reverts("billoflading: containers not in ascending order"):
        port.transact(b.linkHouse(HBL, MBL, [CONTAINERS[1], CONTAINERS[0]]), port.accounts[5])
    with reverts("billoflading: containers not in ascending order"):
        port.transact(b.linkHouse(HBL, MBL, [CONTAINERS[0], CONTAINERS[0]]), port.accounts[5])
    with reverts("billoflading: empty reference"):
        port.transact(b.linkHouse(ZERO, MBL, CONTAINERS[:1]), port.accounts[5])
    link(port, CONTAINERS[:1])
    with reverts("billoflading: house B/L already linked"):
        link(port, CONTAINERS[1:], forwarder=6)


def test_correct_and_unlink_only_by_linking_forwarder(port: Deployment) -> None:
    b = port.BillOfLading.functions
    register(port)
    link(port, CONTAINERS[:1])
    with reverts("billoflading: caller is not the linking forwarder"):
        port.transact(b.correctHouse(HBL, MBL, CONTAINERS), port.accounts[6])
    with reverts("billoflading: caller is not the linking forwarder"):
        port.transact(b.unlinkHouse(HBL), port.accounts[6])
    with reverts("billoflading: caller is not the linking forwarder"):
        port.transact(b.unlinkHouse(HBL), port.accounts[3])
    with reverts("billoflading: house B/L is not linked"):
        port.transact(b.unlinkHouse(MBL), port.accounts[5])
    with reverts("billoflading: house B/L is not linked"):
        port.transact(b.correctHouse(MBL, MBL, CONTAINERS), port.accounts[5])
    r = port.transact(b.correctHouse(HBL, MBL, CONTAINERS[1:]), port.accounts[5])
    assert port.events(r, "BillOfLading", "HouseCorrected")[0]["containers"] == CONTAINERS[1:]
    assert list(b.house(HBL).call()) == [5, MBL, CONTAINERS[1:]]
    assert b.housesOf(MBL).call() == [HBL]
    with reverts("billoflading: container is not on the master B/L"):
        port.transact(b.correctHouse(HBL, MBL, [HBL]), port.accounts[5])
    r = port.transact(b.unlinkHouse(HBL), port.accounts[5])
    assert port.events(r, "BillOfLading", "HouseUnlinked") == [
        {"house": HBL, "master": MBL, "forwarder": 5}
    ]
    assert b.forwarderOf(HBL).call() == 0
    assert b.housesOf(MBL).call() == []
    # Once unlinked, anyone with the forwarder role may link it again.
    link(port, CONTAINERS[:1], forwarder=6)
    assert b.forwarderOf(HBL).call() == 6


def test_correct_to_another_master(port: Deployment) -> None:
    b = port.BillOfLading.functions
    register(port)
    other = subject_key("OOLU9999999999")
    port.transact(b.registerMaster(other, CONTAINERS[:1]), port.accounts[3])
    link(port, CONTAINERS[:2])
    port.transact(b.correctHouse(HBL, other, CONTAINERS[:1]), port.accounts[5])
    assert b.housesOf(MBL).call() == [] and b.housesOf(other).call() == [HBL]
    assert b.masterOf(HBL).call() == other


def test_rotated_forwarder_account_keeps_the_link(port: Deployment) -> None:
    register(port)
    link(port, CONTAINERS[:1])
    c = port.Consortium.functions
    port.transact(c.rotateAccount(port.accounts[5], port.spare[0]), port.accounts[5])
    port.transact(port.BillOfLading.functions.unlinkHouse(HBL), port.spare[0])
    assert port.BillOfLading.functions.forwarderOf(HBL).call() == 0
