#pragma version ~=0.4.3
"""
@title Membership lookups against the Consortium contract
@custom:contract-name membership
@license Apache-2.0
@notice A module for the system contracts that act on behalf of member
        organisations (cargo events, bills of lading, grants, anchors,
        declarations). It holds the Consortium contract's address and
        resolves a calling account to its organisation and roles with one
        static call. Ownership on chain is always by organisation id, never
        by account, so an organisation that rotates its keys keeps its
        records, links and grants.
"""

from .interfaces import IConsortium


consortium: public(IConsortium)


@deploy
def __init__(consortium_: address):
    """
    @dev Stores the Consortium contract's address. Makes no external call, so
         the contract can be constructed in a throwaway chain and moved to
         its genesis address.
    @param consortium_ The Consortium contract's (genesis) address.
    """
    self.consortium = IConsortium(consortium_)


@internal
@view
def _member(account: address) -> (uint256, uint256):
    """
    @dev Resolves an account to its active organisation.
    @param account The account to resolve, usually `msg.sender`.
    @return uint256 The organisation id, 0 if the account is not a current
            signing account of an active member.
    @return uint256 The organisation's roles bitmask, 0 if not a member.
    """
    return staticcall self.consortium.memberOf(account)


@internal
@view
def _is_active(org: uint256) -> bool:
    """
    @dev Tells whether an organisation id is an active member.
    @param org The organisation id.
    @return bool True if the organisation exists and is active.
    """
    return staticcall self.consortium.isActive(org)
