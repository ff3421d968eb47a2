#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title BillOfLading: master bills of lading, their containers, and house B/L links
@custom:contract-name BillOfLading
@license Apache-2.0
@notice A carrier registers a master B/L (by its subject key, the hash of
        the normalised B/L number) with the containers it covers, and may
        add containers later. A forwarder links a house B/L to a master B/L
        and to the subset of the master's containers that the house B/L
        covers. Only the forwarder organisation that linked a house B/L may
        correct or unlink it; only the registering carrier may add
        containers to its master B/L. Ownership is by organisation, so key
        rotation keeps it.
"""

from . import membership
from . import roles

initializes: membership

exports: membership.consortium


MAX_CONTAINERS: constant(uint256) = 256
MAX_HOUSES: constant(uint256) = 256


struct Master:
    carrier: uint256
    containers: DynArray[bytes32, MAX_CONTAINERS]
    houses: DynArray[bytes32, MAX_HOUSES]


struct House:
    forwarder: uint256
    master: bytes32
    containers: DynArray[bytes32, MAX_CONTAINERS]


_masters: HashMap[bytes32, Master]
_houses: HashMap[bytes32, House]
# master B/L => container => covered by the master B/L
_covers: HashMap[bytes32, HashMap[bytes32, bool]]


event MasterRegistered:
    master: indexed(bytes32)
    carrier: indexed(uint256)
    containers: DynArray[bytes32, MAX_CONTAINERS]


event ContainersAdded:
    master: indexed(bytes32)
    carrier: indexed(uint256)
    containers: DynArray[bytes32, MAX_CONTAINERS]


event HouseLinked:
    house: indexed(bytes32)
    master: indexed(bytes32)
    forwarder: indexed(uint256)
    containers: DynArray[bytes32, MAX_CONTAINERS]


event HouseCorrected:
    house: indexed(bytes32)
    master: indexed(bytes32)
    forwarder: indexed(uint256)
    containers: DynArray[bytes32, MAX_CONTAINERS]


event HouseUnlinked:
    house: indexed(bytes32)
    master: indexed(bytes32)
    forwarder: indexed(uint256)


@deploy
def __init__(consortium: address):
    """
    @dev Stores the Consortium contract's address; no external call.
    @param consortium The Consortium contract's (genesis) address.
    """
    membership.__init__(consortium)


@external
def registerMaster(master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS]):
    """
    @notice Registers a master B/L and the containers it covers; carriers only.
    @param master The master B/L's subject key.
    @param containers The containers' subject keys (no duplicates).
    """
    carrier: uint256 = self._carrier()
    assert master != empty(bytes32), "billoflading: empty reference"
    assert self._masters[master].carrier == 0, "billoflading: master B/L already registered"
    self._masters[master].carrier = carrier
    self._add_containers(master, containers)
    log MasterRegistered(master=master, carrier=carrier, containers=containers)


@external
def addContainers(master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS]):
    """
    @notice Adds containers to a master B/L; only its carrier may.
    @param master The master B/L's subject key.
    @param containers The containers to add.
    """
    carrier: uint256 = self._carrier()
    assert self._masters[master].carrier != 0, "billoflading: unknown master B/L"
    assert self._masters[master].carrier == carrier, "billoflading: caller is not the master B/L's carrier"
    self._add_containers(master, containers)
    log ContainersAdded(master=master, carrier=carrier, containers=containers)


@external
def linkHouse(house: bytes32, master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS]):
    """
    @notice Links a house B/L to a master B/L and to the containers of the
            master that it covers; forwarders only. The caller's
            organisation becomes the house B/L's linking forwarder.
    @param house The house B/L's subject key.
    @param master The master B/L's subject key.
    @param containers A subset of the master B/L's containers, in
           ascending order of subject key.
    """
    forwarder: uint256 = self._forwarder()
    assert house != empty(bytes32), "billoflading: empty reference"
    assert self._houses[house].forwarder == 0, "billoflading: house B/L already linked"
    self._set_house(house, master, containers, forwarder)
    log HouseLinked(house=house, master=master, forwarder=forwarder, containers=containers)


@external
def correctHouse(house: bytes32, master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS]):
    """
    @notice Replaces a house B/L's master B/L and containers; only the
            forwarder organisation that linked it may.
    @param house The house B/L's subject key.
    @param master The (possibly different) master B/L's subject key.
    @param containers A subset of that master B/L's containers, in
           ascending order of subject key.
    """
    forwarder: uint256 = self._linking_forwarder(house)
    self._drop_house(house)
    self._set_house(house, master, containers, forwarder)
    log HouseCorrected(house=house, master=master, forwarder=forwarder, containers=containers)


@external
def unlinkHouse(house: bytes32):
    """
    @notice Removes a house B/L's link; only the forwarder organisation
            that linked it may.
    @param house The house B/L's subject key.
    """
    forwarder: uint256 = self._linking_forwarder(house)
    master: bytes32 = self._houses[house].master
    self._drop_house(house)
    self._houses[house] = empty(House)
    log HouseUnlinked(house=house, master=master, forwarder=forwarder)


@external
@view
def carrierOf(master: bytes32) -> uint256:
    """
    @notice The carrier organisation that registered a master B/L.
    @param master The master B/L's subject key.
    @return uint256 The carrier, 0 if not registered.
    """
    return self._masters[master].carrier


@external
@view
def containersOf(master: bytes32) -> DynArray[bytes32, MAX_CONTAINERS]:
    """
    @notice The containers a master B/L covers.
    @param master The master B/L's subject key.
    @return DynArray The containers' subject keys.
    """
    return self._masters[master].containers


@external
@view
def housesOf(master: bytes32) -> DynArray[bytes32, MAX_HOUSES]:
    """
    @notice The house B/Ls linked to a master B/L.
    @param master The master B/L's subject key.
    @return DynArray The house B/Ls' subject keys.
    """
    return self._masters[master].houses


@external
@view
def covers(master: bytes32, container: bytes32) -> bool:
    """
    @notice Tells whether a master B/L covers a container.
    @param master The master B/L's subject key.
    @param container The container's subject key.
    @return bool True if it does.
    """
    return self._covers[master][container]


@external
@view
def house(house: bytes32) -> House:
    """
    @notice A house B/L's link: forwarder, master B/L and containers.
    @param house The house B/L's subject key.
    @return House The link (all zero if not linked).
    """
    return self._houses[house]


@external
@view
def masterOf(house: bytes32) -> bytes32:
    """
    @notice The master B/L a house B/L is linked to.
    @param house The house B/L's subject key.
    @return bytes32 The master B/L's subject key, empty if not linked.
    """
    return self._houses[house].master


@external
@view
def forwarderOf(house: bytes32) -> uint256:
    """
    @notice The forwarder organisation that linked a house B/L.
    @param house The house B/L's subject key.
    @return uint256 The forwarder, 0 if not linked.
    """
    return self._houses[house].forwarder


@internal
@view
def _carrier() -> uint256:
    """
    @dev Resolves the caller to a carrier organisation or reverts.
    @return uint256 The organisation id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert held & roles.CARRIER != 0, "billoflading: caller is not a carrier"
    return org


@internal
@view
def _forwarder() -> uint256:
    """
    @dev Resolves the caller to a forwarder organisation or reverts.
    @return uint256 The organisation id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert held & roles.FORWARDER != 0, "billoflading: caller is not a forwarder"
    return org


@internal
@view
def _linking_forwarder(house: bytes32) -> uint256:
    """
    @dev Reverts unless the caller's organisation linked the house B/L.
    @param house The house B/L's subject key.
    @return uint256 The organisation id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    linked_by: uint256 = self._houses[house].forwarder
    assert linked_by != 0, "billoflading: house B/L is not linked"
    assert org == linked_by, "billoflading: caller is not the linking forwarder"
    return org


@internal
def _add_containers(master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS]):
    """
    @dev Adds containers to a master B/L, refusing duplicates.
    @param master The master B/L's subject key.
    @param containers The containers' subject keys.
    """
    assert len(self._masters[master].containers) + len(containers) <= MAX_CONTAINERS, "billoflading: too many containers"
    for c: bytes32 in containers:
        assert c != empty(bytes32), "billoflading: empty reference"
        assert not self._covers[master][c], "billoflading: container already on the master B/L"
        self._covers[master][c] = True
        self._masters[master].containers.append(c)


@internal
def _set_house(house: bytes32, master: bytes32, containers: DynArray[bytes32, MAX_CONTAINERS], forwarder: uint256):
    """
    @dev Writes a house B/L link after checking the containers are a
         subset of the master B/L's, without duplicates.
    @param house The house B/L's subject key.
    @param master The master B/L's subject key.
    @param containers The covered containers.
    @param forwarder The linking forwarder organisation.
    """
    assert self._masters[master].carrier != 0, "billoflading: unknown master B/L"
    assert len(self._masters[master].houses) < MAX_HOUSES, "billoflading: too many house B/Ls"
    previous: uint256 = 0
    for c: bytes32 in containers:
        assert self._covers[master][c], "billoflading: container is not on the master B/L"
        # Ascending order makes the duplicate check linear.
        assert convert(c, uint256) > previous, "billoflading: containers not in ascending order"
        previous = convert(c, uint256)
    self._houses[house] = House(forwarder=forwarder, master=master, containers=containers)
    self._masters[master].houses.append(house)


@internal
def _drop_house(house: bytes32):
    """
    @dev Removes a house B/L from its master B/L's list of houses.
    @param house The house B/L's subject key.
    """
    master: bytes32 = self._houses[house].master
    kept: DynArray[bytes32, MAX_HOUSES] = []
    for h: bytes32 in self._masters[master].houses:
        if h != house:
            kept.append(h)
    self._masters[master].houses = kept
