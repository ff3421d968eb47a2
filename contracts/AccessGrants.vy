#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title AccessGrants: who may read an organisation's encrypted records
@custom:contract-name AccessGrants
@license Apache-2.0
@notice Every private payload is encrypted under a per-record key. The owner
        organisation grants a reader organisation access by publishing that
        key wrapped for the reader's X25519 public key, optionally until an
        expiry; revoking stops future access (a reader that already
        unwrapped a key keeps what it read). A grant's scope is either
        - SUBJECT: the owner's records about a subject key (a container, a
          B/L...), the wrapped key being the owner's key for that subject; or
        - EVENT: one cargo event, which the owner must have published.
        Grants are keyed by (owner, scope, target, reader), and the owner is
        always the caller's organisation, so an organisation can only ever
        create, change or revoke its own grants.
        Per cargo event, its publisher may also set "holders of the
        reference may read": then the record key derives from the reference
        number, the way carriers' public tracking works today.
"""

from . import membership
from .interfaces import ICargoLedger

initializes: membership

exports: membership.consortium


SUBJECT_SCOPE: constant(uint8) = 1
EVENT_SCOPE: constant(uint8) = 2

# 32-byte ephemeral X25519 key, 12-byte nonce, 32-byte key, 16-byte tag, spare
MAX_WRAPPED_KEY: constant(uint256) = 128


cargo_ledger: public(immutable(ICargoLedger))


struct Grant:
    wrapped_key: Bytes[MAX_WRAPPED_KEY]
    expiry: uint256
    granted_at: uint256
    active: bool


_grants: HashMap[bytes32, Grant]
_reference_readable: HashMap[uint256, bool]


event AccessGranted:
    owner: indexed(uint256)
    reader: indexed(uint256)
    target: indexed(bytes32)
    scope: uint8
    expiry: uint256
    wrapped_key: Bytes[MAX_WRAPPED_KEY]


event AccessRevoked:
    owner: indexed(uint256)
    reader: indexed(uint256)
    target: indexed(bytes32)
    scope: uint8


event ReferenceReadableSet:
    event_id: indexed(uint256)
    owner: indexed(uint256)
    readable: bool


@deploy
def __init__(consortium: address, cargo_ledger_: address):
    """
    @dev Stores the Consortium and CargoLedger addresses; no external call.
    @param consortium The Consortium contract's (genesis) address.
    @param cargo_ledger_ The CargoLedger contract's (genesis) address.
    """
    membership.__init__(consortium)
    cargo_ledger = ICargoLedger(cargo_ledger_)


@external
def grant(scope: uint8, target: bytes32, reader: uint256, wrapped_key: Bytes[MAX_WRAPPED_KEY], expiry: uint256):
    """
    @notice Grants (or re-grants, replacing the wrapped key and expiry) a
            reader organisation access to one of the caller's records.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key, or the cargo event id as bytes32.
    @param reader The reader organisation, an active member.
    @param wrapped_key The record key wrapped for the reader.
    @param expiry Unix seconds after which the grant lapses; 0 for none.
    """
    owner: uint256 = self._owner(scope, target)
    assert reader != owner, "grants: owner already reads its own records"
    assert membership._is_active(reader), "grants: reader is not an active member"
    assert len(wrapped_key) != 0, "grants: empty wrapped key"
    assert expiry == 0 or expiry > block.timestamp, "grants: expiry is in the past"
    self._grants[self._key(owner, scope, target, reader)] = Grant(
        wrapped_key=wrapped_key, expiry=expiry, granted_at=block.timestamp, active=True
    )
    log AccessGranted(owner=owner, reader=reader, target=target, scope=scope, expiry=expiry, wrapped_key=wrapped_key)


@external
def revoke(scope: uint8, target: bytes32, reader: uint256):
    """
    @notice Revokes one of the caller's organisation's grants.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key or cargo event id.
    @param reader The reader organisation.
    """
    owner: uint256 = self._caller_org()
    key: bytes32 = self._key(owner, scope, target, reader)
    assert self._grants[key].active, "grants: no such grant"
    self._grants[key] = empty(Grant)
    log AccessRevoked(owner=owner, reader=reader, target=target, scope=scope)


@external
def setReferenceReadable(event_id: uint256, readable: bool):
    """
    @notice Sets whether holders of a cargo event's reference number may
            read it; only the event's publisher may.
    @param event_id The cargo event id.
    @param readable True to let reference holders read.
    """
    owner: uint256 = self._owner(EVENT_SCOPE, convert(event_id, bytes32))
    self._reference_readable[event_id] = readable
    log ReferenceReadableSet(event_id=event_id, owner=owner, readable=readable)


@external
@view
def grantOf(owner: uint256, scope: uint8, target: bytes32, reader: uint256) -> Grant:
    """
    @notice A grant as stored, whether or not it has expired.
    @param owner The owner organisation.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key or cargo event id.
    @param reader The reader organisation.
    @return Grant The grant (all zero if none).
    """
    return self._grants[self._key(owner, scope, target, reader)]


@external
@view
def hasAccess(owner: uint256, scope: uint8, target: bytes32, reader: uint256) -> bool:
    """
    @notice Tells whether a grant is in force now (active, not expired).
    @param owner The owner organisation.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key or cargo event id.
    @param reader The reader organisation.
    @return bool True if the reader may read.
    """
    return self._in_force(self._key(owner, scope, target, reader))


@external
@view
def isReferenceReadable(event_id: uint256) -> bool:
    """
    @notice Tells whether holders of a cargo event's reference may read it.
    @param event_id The cargo event id.
    @return bool The publisher's choice (False by default).
    """
    return self._reference_readable[event_id]


@external
@view
def canRead(reader: uint256, event_id: uint256, subject: bytes32) -> bool:
    """
    @notice The gateway's question: may this organisation read this cargo
            event? Yes if it published it, if the publisher granted it the
            event or the event's subject, or if the event is readable by
            reference holders.
    @param reader The reader organisation.
    @param event_id The cargo event id.
    @param subject The event's subject key (from its log).
    @return bool True if the reader may read the event.
    """
    owner: uint256 = staticcall cargo_ledger.publisherOf(event_id)
    if owner == 0:
        return False
    if owner == reader or self._reference_readable[event_id]:
        return True
    if self._in_force(self._key(owner, EVENT_SCOPE, convert(event_id, bytes32), reader)):
        return True
    return self._in_force(self._key(owner, SUBJECT_SCOPE, subject, reader))


@internal
@view
def _caller_org() -> uint256:
    """
    @dev Resolves the caller to an active member organisation or reverts.
    @return uint256 The organisation id.
    """
    org: uint256 = 0
    held: uint256 = 0
    org, held = membership._member(msg.sender)
    assert org != 0, "grants: caller is not a member"
    return org


@internal
@view
def _owner(scope: uint8, target: bytes32) -> uint256:
    """
    @dev Resolves the caller's organisation and checks that it owns the
         target: any member owns its own records about a subject; only the
         publisher owns a cargo event.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key or cargo event id.
    @return uint256 The owner organisation.
    """
    owner: uint256 = self._caller_org()
    if scope == EVENT_SCOPE:
        publisher: uint256 = staticcall cargo_ledger.publisherOf(convert(target, uint256))
        assert publisher == owner, "grants: caller does not own the record"
    else:
        assert scope == SUBJECT_SCOPE, "grants: unknown scope"
    return owner


@internal
@view
def _in_force(key: bytes32) -> bool:
    """
    @dev Tells whether a stored grant is active and not expired.
    @param key The grant's key.
    @return bool True if in force.
    """
    expiry: uint256 = self._grants[key].expiry
    return self._grants[key].active and (expiry == 0 or block.timestamp <= expiry)


@internal
@pure
def _key(owner: uint256, scope: uint8, target: bytes32, reader: uint256) -> bytes32:
    """
    @dev The storage key of a grant.
    @param owner The owner organisation.
    @param scope SUBJECT (1) or EVENT (2).
    @param target The subject key or cargo event id.
    @param reader The reader organisation.
    @return bytes32 keccak256 of the four, ABI-encoded.
    """
    return keccak256(abi_encode(owner, scope, target, reader))
