#pragma version ~=0.4.3
"""
@title Member organisations and their signing accounts
@custom:contract-name organisations
@license Apache-2.0
@notice The member registry of the Consortium contract: each organisation
        has a name, a roles bitmask (`roles.vy`), an X25519 encryption
        public key, an active flag, the number of validators it runs, and up
        to 16 signing accounts. An account belongs to at most one
        organisation. Organisations are numbered from 1; 0 means "none".
        The registry changes only through the Consortium contract, which
        initializes this module (governance adds, suspends, reinstates and
        changes roles) and through `setEncryptionKey`, which an organisation
        calls for itself.
"""

from . import roles


MAX_ACCOUNTS: constant(uint256) = 16


struct Organisation:
    name: String[64]
    roles: uint256
    encryption_key: bytes32
    active: bool
    validators: uint256


org_count: public(uint256)
active_count: public(uint256)
account_org: public(HashMap[address, uint256])
_orgs: HashMap[uint256, Organisation]
_accounts: HashMap[uint256, DynArray[address, MAX_ACCOUNTS]]


event MemberAdded:
    org: indexed(uint256)
    name: String[64]
    roles: uint256
    encryption_key: bytes32


event RolesChanged:
    org: indexed(uint256)
    roles: uint256


event MemberSuspended:
    org: indexed(uint256)


event MemberReinstated:
    org: indexed(uint256)


event AccountAdded:
    org: indexed(uint256)
    account: indexed(address)


event AccountRemoved:
    org: indexed(uint256)
    account: indexed(address)


event EncryptionKeyChanged:
    org: indexed(uint256)
    encryption_key: bytes32


@external
@view
def isMemberAccount(account: address) -> bool:
    """
    @notice Tells whether an account may send transactions: it is a current
            signing account of an active member organisation.
    @param account The account to check.
    @return bool True for an active member's signing account.
    """
    return self._orgs[self.account_org[account]].active


@external
@view
def memberOf(account: address) -> (uint256, uint256):
    """
    @notice Resolves an account to its organisation and roles.
    @param account The account to resolve.
    @return uint256 The organisation id, 0 unless the account is a signing
            account of an active member.
    @return uint256 The organisation's roles, 0 unless a member.
    """
    org: uint256 = self.account_org[account]
    if not self._orgs[org].active:
        return 0, 0
    return org, self._orgs[org].roles


@external
@view
def isActive(org: uint256) -> bool:
    """
    @notice Tells whether an organisation id is an active member.
    @param org The organisation id.
    @return bool True if the organisation is active.
    """
    return self._orgs[org].active


@external
@view
def rolesOf(org: uint256) -> uint256:
    """
    @notice An organisation's roles bitmask (0 if suspended or unknown).
    @param org The organisation id.
    @return uint256 The roles bitmask.
    """
    if not self._orgs[org].active:
        return 0
    return self._orgs[org].roles


@external
@view
def organisation(org: uint256) -> Organisation:
    """
    @notice An organisation's record: name, roles, encryption key, active
            flag and the number of validators it runs.
    @param org The organisation id.
    @return Organisation The record (all zero for an unknown id).
    """
    return self._orgs[org]


@external
@view
def encryptionKeyOf(org: uint256) -> bytes32:
    """
    @notice An organisation's X25519 public key, for wrapping record keys.
    @param org The organisation id.
    @return bytes32 The public key.
    """
    return self._orgs[org].encryption_key


@external
@view
def accountsOf(org: uint256) -> DynArray[address, MAX_ACCOUNTS]:
    """
    @notice An organisation's current signing accounts.
    @param org The organisation id.
    @return DynArray The accounts.
    """
    return self._accounts[org]


@external
def setEncryptionKey(encryption_key: bytes32):
    """
    @notice Sets the caller's organisation's X25519 public key.
    @param encryption_key The new public key.
    """
    org: uint256 = self._caller_org()
    assert encryption_key != empty(bytes32), "consortium: empty encryption key"
    self._orgs[org].encryption_key = encryption_key
    log EncryptionKeyChanged(org=org, encryption_key=encryption_key)


@internal
@view
def _caller_org() -> uint256:
    """
    @dev Resolves `msg.sender` to its active organisation or reverts.
    @return uint256 The organisation id.
    """
    org: uint256 = self.account_org[msg.sender]
    assert self._orgs[org].active, "consortium: caller is not a member"
    return org


@internal
def _add_org(name: String[64], roles_: uint256, encryption_key: bytes32, account: address) -> uint256:
    """
    @dev Registers an active organisation with its first signing account.
    @param name The organisation's name.
    @param roles_ Its roles bitmask.
    @param encryption_key Its X25519 public key.
    @param account Its first signing account.
    @return uint256 The new organisation id.
    """
    assert roles_ & ~roles.ALL == 0, "consortium: invalid roles"
    org: uint256 = self.org_count + 1
    self.org_count = org
    self.active_count += 1
    self._orgs[org] = Organisation(name=name, roles=roles_, encryption_key=encryption_key, active=True, validators=0)
    log MemberAdded(org=org, name=name, roles=roles_, encryption_key=encryption_key)
    self._add_account(org, account)
    return org


@internal
def _set_roles(org: uint256, roles_: uint256):
    """
    @dev Replaces an organisation's roles.
    @param org The organisation id.
    @param roles_ The new roles bitmask.
    """
    self._orgs[org].roles = roles_
    log RolesChanged(org=org, roles=roles_)


@internal
def _set_active(org: uint256, active: bool):
    """
    @dev Suspends or reinstates an organisation; its id, accounts and
         records are kept either way.
    @param org The organisation id.
    @param active False to suspend, True to reinstate.
    """
    self._orgs[org].active = active
    if active:
        self.active_count += 1
        log MemberReinstated(org=org)
    else:
        self.active_count -= 1
        log MemberSuspended(org=org)


@internal
def _add_account(org: uint256, account: address):
    """
    @dev Adds a signing account to an organisation.
    @param org The organisation id.
    @param account The account; it must not belong to any organisation.
    """
    assert account != empty(address), "consortium: empty account"
    assert self.account_org[account] == 0, "consortium: account already belongs to an organisation"
    assert len(self._accounts[org]) < MAX_ACCOUNTS, "consortium: too many accounts"
    self.account_org[account] = org
    self._accounts[org].append(account)
    log AccountAdded(org=org, account=account)


@internal
def _drop_accounts(org: uint256, dropped: DynArray[address, MAX_ACCOUNTS]):
    """
    @dev Unlinks accounts from their organisation, keeping the order of the
         others.
    @param org The organisation id.
    @param dropped The accounts to unlink (all the organisation's).
    """
    kept: DynArray[address, MAX_ACCOUNTS] = []
    for a: address in self._accounts[org]:
        if a in dropped:
            self.account_org[a] = 0
            log AccountRemoved(org=org, account=a)
        else:
            kept.append(a)
    self._accounts[org] = kept
