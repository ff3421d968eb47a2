#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title Declarations: customs declarations filed through the system and their status
@custom:contract-name Declarations
@license Apache-2.0
@notice A declarant (agent, forwarder, carrier or airline) files a
        declaration by its subject key, with the authority it goes to and
        the hash of the declaration document. The declaration's status
        history is then posted only by the customs organisation bound to
        that authority. A customs organisation binds itself to an authority
        once; no other organisation can take the authority afterwards (the
        customs role itself can only be granted through Consortium
        governance, where customs holds a veto).
"""

from . import membership
from . import roles

initializes: membership

exports: membership.consortium


# Authorities
HK_CUSTOMS: constant(uint8) = 1  # Hong Kong Customs and Excise Department
CN_SINGLE_WINDOW: constant(uint8) = 2  # China International Trade Single Window

# Statuses
FILED: constant(uint8) = 1
ACCEPTED: constant(uint8) = 2
QUERIED: constant(uint8) = 3
HELD: constant(uint8) = 4
INSPECTION: constant(uint8) = 5
RELEASED: constant(uint8) = 6
REJECTED: constant(uint8) = 7

MAX_HISTORY: constant(uint256) = 32
DECLARANTS: constant(uint256) = roles.AGENT | roles.FORWARDER | roles.CARRIER | roles.AIRLINE


struct StatusEntry:
    status: uint8
    org: uint256
    note_hash: bytes32
    time: uint256


struct Declaration:
    declarant: uint256
    authority: uint8
    document_hash: bytes32
    status: uint8
    filed_at: uint256


authority_org: public(HashMap[uint8, uint256])
_declarations: HashMap[bytes32, Declaration]
_history: HashMap[bytes32, DynArray[StatusEntry, MAX_HISTORY]]


event AuthorityBound:
    authority: indexed(uint8)
    org: indexed(uint256)


event DeclarationFiled:
    declaration: indexed(bytes32)
    declarant: indexed(uint256)
    authority: indexed(uint8)
    document_hash: bytes32


event StatusPosted:
    declaration: indexed(bytes32)
    org: indexed(uint256)
    status: indexed(uint8)
    note_hash: bytes32


@deploy
def __init__(consortium: address):
    """
    @dev Stores the Consortium contract's address; no external call.
    @param consortium The Consortium contract's (genesis) address.
    """
    membership.__init__(consortium)


@external
def bindAuthority(authority: uint8):
    """
    @notice Binds the caller's customs organisation to an authority; once
            per authority.
    @param authority HK_CUSTOMS (1) or CN_SINGLE_WINDOW (2).
    """
    org: uint256 = self._customs()
    assert authority == HK_CUSTOMS or authority == CN_SINGLE_WINDOW, "declarations: unknown authority"
    assert self.authority_org[authority] == 0, "declarations: authority already bound"
    self.authority_org[authority] = org
    log AuthorityBound(authority=authority, org=org)


@external
def file(declaration: bytes32, authority: uint8, document_hash: bytes32):
    """
    @notice Files a declaration; agents, forwarders, carriers and airlines.
    @param declaration The declaration's subject key.
    @param authority HK_CUSTOMS (1) or CN_SINGLE_WINDOW (2).
    @param document_hash keccak256 of the declaration document.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert held & DECLARANTS != 0, "declarations: caller may not file declarations"
    assert authority == HK_CUSTOMS or authority == CN_SINGLE_WINDOW, "declarations: unknown authority"
    assert declaration != empty(bytes32), "declarations: empty reference"
    assert document_hash != empty(bytes32), "declarations: empty document hash"
    assert self._declarations[declaration].declarant == 0, "declarations: already filed"
    self._declarations[declaration] = Declaration(
        declarant=org, authority=authority, document_hash=document_hash, status=FILED, filed_at=block.timestamp
    )
    self._history[declaration].append(StatusEntry(status=FILED, org=org, note_hash=document_hash, time=block.timestamp))
    log DeclarationFiled(declaration=declaration, declarant=org, authority=authority, document_hash=document_hash)
    log StatusPosted(declaration=declaration, org=org, status=FILED, note_hash=document_hash)


@external
def postStatus(declaration: bytes32, status: uint8, note_hash: bytes32):
    """
    @notice Posts a status of a declaration; only the customs organisation
            bound to the declaration's authority may.
    @param declaration The declaration's subject key.
    @param status ACCEPTED (2), QUERIED (3), HELD (4), INSPECTION (5),
           RELEASED (6) or REJECTED (7).
    @param note_hash Hash of the authority's note (may be empty).
    """
    org: uint256 = self._customs()
    authority: uint8 = self._declarations[declaration].authority
    assert authority != 0, "declarations: unknown declaration"
    assert self.authority_org[authority] == org, "declarations: caller is not the declaration's authority"
    assert status >= ACCEPTED and status <= REJECTED, "declarations: invalid status"
    assert len(self._history[declaration]) < MAX_HISTORY, "declarations: history is full"
    self._declarations[declaration].status = status
    self._history[declaration].append(StatusEntry(status=status, org=org, note_hash=note_hash, time=block.timestamp))
    log StatusPosted(declaration=declaration, org=org, status=status, note_hash=note_hash)


@external
@view
def declarationOf(declaration: bytes32) -> Declaration:
    """
    @notice A declaration with its current status.
    @param declaration The declaration's subject key.
    @return Declaration The record (all zero if not filed).
    """
    return self._declarations[declaration]


@external
@view
def historyOf(declaration: bytes32) -> DynArray[StatusEntry, MAX_HISTORY]:
    """
    @notice A declaration's status history, oldest first.
    @param declaration The declaration's subject key.
    @return DynArray The entries.
    """
    return self._history[declaration]


@internal
@view
def _customs() -> uint256:
    """
    @dev Resolves the caller to a customs organisation or reverts.
    @return uint256 The organisation id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert held & roles.CUSTOMS != 0, "declarations: caller is not customs"
    return org
