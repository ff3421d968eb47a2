#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title Consortium: member organisations, signing accounts, validators and governance
@custom:contract-name Consortium
@license Apache-2.0
@notice The registry every other system contract and the node consult.
        - A member organisation has a name, a roles bitmask (see `roles.vy`),
          an X25519 encryption public key for key wrapping, an active flag
          and up to 16 signing accounts, which it adds, removes and rotates
          itself.
        - The validator set is a list of validator node addresses; each is a
          signing account of the organisation that runs it. The node reads
          `getValidators()` at every block and `isMemberAccount()` for
          transaction permissioning.
        - Changes that the consortium decides together go through proposals:
          member organisations vote (one vote per organisation), a passed
          proposal waits out the timelock and can then be executed by any
          member.
          Thresholds: adding or removing a validator needs more than 2/3 of
          the organisations that run validators; every other kind needs a
          majority of the active organisations. Votes are recounted against
          the current membership when a proposal is executed.
          A proposal lapses 30 days after it was made.
          Vetoes, until execution: an operator may veto a new or reinstated
          member (the operator verifies organisations); customs may veto any
          proposal that gives, takes, suspends or reinstates the customs role; the organisation
          whose accounts a recovery replaces may veto that recovery (a
          recovery is how an organisation that lost its keys gets new ones,
          so an organisation that still holds its keys can stop a hijack).
        - Safety of the validator set is an invariant held by every
          change: the set never falls below 4 validators, and no single
          organisation runs more than f = (n - 1) / 3 of the n validators, so
          one compromised organisation can never break QBFT's quorum. The
          genesis set is taken as given (a one-node development chain is
          allowed); the invariant is enforced on every later change.
"""

from . import roles


# Proposal kinds.
ADD_MEMBER: constant(uint8) = 1
SET_ROLES: constant(uint8) = 2
SUSPEND_MEMBER: constant(uint8) = 3
ADD_VALIDATOR: constant(uint8) = 4
REMOVE_VALIDATOR: constant(uint8) = 5
RECOVER_ACCOUNTS: constant(uint8) = 6
REINSTATE_MEMBER: constant(uint8) = 7

# Proposal states.
OPEN: constant(uint8) = 1
EXECUTED: constant(uint8) = 2
VETOED: constant(uint8) = 3
CANCELLED: constant(uint8) = 4

MAX_ORGS: constant(uint256) = 64
MAX_ACCOUNTS: constant(uint256) = 16
MAX_VALIDATORS: constant(uint256) = 64
MIN_VALIDATORS: constant(uint256) = 4
# A proposal not executed within this time lapses.
PROPOSAL_LIFETIME: constant(uint256) = 30 * 86400


struct Organisation:
    name: String[64]
    roles: uint256
    encryption_key: bytes32
    active: bool
    validators: uint256


struct Proposal:
    kind: uint8
    status: uint8
    proposer: uint256
    org: uint256
    account: address
    roles: uint256
    name: String[64]
    encryption_key: bytes32
    created_at: uint256
    passed_at: uint256
    voters: DynArray[uint256, MAX_ORGS]


timelock: public(uint256)
org_count: public(uint256)
active_count: public(uint256)
proposal_count: public(uint256)

_orgs: HashMap[uint256, Organisation]
_accounts: HashMap[uint256, DynArray[address, MAX_ACCOUNTS]]
account_org: public(HashMap[address, uint256])
_validators: DynArray[address, MAX_VALIDATORS]
_proposals: HashMap[uint256, Proposal]


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


event ValidatorAdded:
    org: indexed(uint256)
    validator: indexed(address)


event ValidatorRemoved:
    org: indexed(uint256)
    validator: indexed(address)


event ProposalCreated:
    proposal: indexed(uint256)
    proposer: indexed(uint256)
    kind: uint8
    org: uint256
    account: address
    roles: uint256


event Voted:
    proposal: indexed(uint256)
    voter: indexed(uint256)


event ProposalPassed:
    proposal: indexed(uint256)
    executable_at: uint256


event ProposalExecuted:
    proposal: indexed(uint256)
    org: uint256


event ProposalVetoed:
    proposal: indexed(uint256)
    vetoer: indexed(uint256)


event ProposalCancelled:
    proposal: indexed(uint256)


@deploy
def __init__(
    names: DynArray[String[64], MAX_ORGS],
    roles_: DynArray[uint256, MAX_ORGS],
    encryption_keys: DynArray[bytes32, MAX_ORGS],
    accounts: DynArray[DynArray[address, MAX_ACCOUNTS], MAX_ORGS],
    validators: DynArray[address, MAX_VALIDATORS],
    timelock_: uint256,
):
    """
    @dev Writes the genesis membership. Makes no external call and does not
         use its own address: the node's genesis builder runs this
         constructor in a throwaway chain and copies the resulting code and
         storage to the fixed Consortium address.
    @param names The organisations' names, one per organisation.
    @param roles_ Each organisation's roles bitmask.
    @param encryption_keys Each organisation's X25519 public key.
    @param accounts Each organisation's signing accounts (at least one).
    @param validators The validator node addresses; each must be one of the
           signing accounts above.
    @param timelock_ Seconds a passed proposal waits before execution.
    """
    n: uint256 = len(names)
    assert len(roles_) == n and len(encryption_keys) == n and len(accounts) == n, "consortium: genesis lists differ in length"
    for i: uint256 in range(n, bound=MAX_ORGS):
        org: uint256 = self._add_org(names[i], roles_[i], encryption_keys[i], accounts[i][0])
        for j: uint256 in range(1, len(accounts[i]), bound=MAX_ACCOUNTS):
            self._add_account(org, accounts[i][j])
    for v: address in validators:
        self._add_validator(self.account_org[v], v)
    self.timelock = timelock_


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
def getValidators() -> DynArray[address, MAX_VALIDATORS]:
    """
    @notice The current validator node addresses, in order of admission.
    @return DynArray The validator addresses.
    """
    return self._validators


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
@view
def validatorOrgCount() -> uint256:
    """
    @notice The number of active organisations that run validators.
    @return uint256 The count.
    """
    return self._validator_org_count()


@external
@view
def proposal(proposal_id: uint256) -> Proposal:
    """
    @notice A proposal with its votes.
    @param proposal_id The proposal id.
    @return Proposal The proposal (all zero for an unknown id).
    """
    return self._proposals[proposal_id]


@external
def addAccount(account: address):
    """
    @notice Adds a signing account to the caller's organisation.
    @param account The new account; it must not belong to any organisation.
    """
    org: uint256 = self._caller_org()
    self._add_account(org, account)


@external
def removeAccount(account: address):
    """
    @notice Removes a signing account from the caller's organisation. A
            validator's account and the last account cannot be removed.
    @param account The account to remove.
    """
    org: uint256 = self._caller_org()
    self._remove_account(org, account)


@external
def rotateAccount(old: address, new: address):
    """
    @notice Replaces one of the caller's organisation's signing accounts.
    @param old The account to retire.
    @param new The account that takes its place.
    """
    org: uint256 = self._caller_org()
    self._add_account(org, new)
    self._remove_account(org, old)


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


@external
def propose(
    kind: uint8,
    org: uint256,
    account: address,
    roles_: uint256,
    name: String[64],
    encryption_key: bytes32,
) -> uint256:
    """
    @notice Opens a proposal; the proposer's organisation votes for it.
    @dev Which arguments matter depends on the kind:
         ADD_MEMBER (1): name, roles_, encryption_key, account (first
         signing account); SET_ROLES (2): org, roles_; SUSPEND_MEMBER (3):
         org; ADD_VALIDATOR (4): org, account (one of org's accounts);
         REMOVE_VALIDATOR (5): account; RECOVER_ACCOUNTS (6): org, account
         (replaces all of org's accounts that are not validators);
         REINSTATE_MEMBER (7): org (a suspended organisation, with its id,
         records and accounts).
    @param kind The proposal kind.
    @param org The organisation the proposal is about.
    @param account The account the proposal is about.
    @param roles_ The roles bitmask for ADD_MEMBER and SET_ROLES.
    @param name The name for ADD_MEMBER.
    @param encryption_key The X25519 public key for ADD_MEMBER.
    @return uint256 The proposal id.
    """
    proposer: uint256 = self._caller_org()
    p: Proposal = Proposal(
        kind=kind,
        status=OPEN,
        proposer=proposer,
        org=org,
        account=account,
        roles=roles_,
        name=name,
        encryption_key=encryption_key,
        created_at=block.timestamp,
        passed_at=0,
        voters=[proposer],
    )
    self._check(p)
    proposal_id: uint256 = self.proposal_count + 1
    self.proposal_count = proposal_id
    log ProposalCreated(proposal=proposal_id, proposer=proposer, kind=kind, org=org, account=account, roles=roles_)
    log Voted(proposal=proposal_id, voter=proposer)
    if self._passes(p):
        p.passed_at = block.timestamp
        log ProposalPassed(proposal=proposal_id, executable_at=block.timestamp + self.timelock)
    self._proposals[proposal_id] = p
    return proposal_id


@external
def vote(proposal_id: uint256):
    """
    @notice Votes for an open proposal on behalf of the caller's organisation.
            The timelock starts when the threshold is first reached.
    @param proposal_id The proposal id.
    """
    voter: uint256 = self._caller_org()
    assert self._proposals[proposal_id].status == OPEN, "consortium: proposal is not open"
    assert block.timestamp < self._proposals[proposal_id].created_at + PROPOSAL_LIFETIME, "consortium: proposal has lapsed"
    assert voter not in self._proposals[proposal_id].voters, "consortium: organisation already voted"
    self._proposals[proposal_id].voters.append(voter)
    log Voted(proposal=proposal_id, voter=voter)
    if self._proposals[proposal_id].passed_at == 0 and self._passes(self._proposals[proposal_id]):
        self._proposals[proposal_id].passed_at = block.timestamp
        log ProposalPassed(proposal=proposal_id, executable_at=block.timestamp + self.timelock)


@external
def veto(proposal_id: uint256):
    """
    @notice Vetoes an open proposal, if the caller's organisation holds a
            veto for it (see the contract notice).
    @param proposal_id The proposal id.
    """
    vetoer: uint256 = self._caller_org()
    p: Proposal = self._proposals[proposal_id]
    assert p.status == OPEN, "consortium: proposal is not open"
    assert self._may_veto(p, vetoer), "consortium: organisation holds no veto"
    self._proposals[proposal_id].status = VETOED
    log ProposalVetoed(proposal=proposal_id, vetoer=vetoer)


@external
def cancel(proposal_id: uint256):
    """
    @notice Withdraws an open proposal; only its proposer may.
    @param proposal_id The proposal id.
    """
    org: uint256 = self._caller_org()
    assert self._proposals[proposal_id].status == OPEN, "consortium: proposal is not open"
    assert self._proposals[proposal_id].proposer == org, "consortium: caller is not the proposer"
    self._proposals[proposal_id].status = CANCELLED
    log ProposalCancelled(proposal=proposal_id)


@external
def execute(proposal_id: uint256) -> uint256:
    """
    @notice Executes a passed proposal once its timelock has run out. The
            votes are recounted against the current membership.
    @param proposal_id The proposal id.
    @return uint256 The organisation the proposal acted on (the new
            organisation's id for ADD_MEMBER).
    """
    self._caller_org()
    p: Proposal = self._proposals[proposal_id]
    assert p.status == OPEN, "consortium: proposal is not open"
    assert p.passed_at != 0, "consortium: proposal has not passed"
    assert block.timestamp >= p.passed_at + self.timelock, "consortium: timelock has not run out"
    assert block.timestamp < p.created_at + PROPOSAL_LIFETIME, "consortium: proposal has lapsed"
    assert self._passes(p), "consortium: proposal lost its majority"
    self._check(p)
    self._proposals[proposal_id].status = EXECUTED
    org: uint256 = p.org
    if p.kind == ADD_MEMBER:
        org = self._add_org(p.name, p.roles, p.encryption_key, p.account)
    elif p.kind == SET_ROLES:
        self._orgs[org].roles = p.roles
        log RolesChanged(org=org, roles=p.roles)
    elif p.kind == SUSPEND_MEMBER:
        self._orgs[org].active = False
        self.active_count -= 1
        log MemberSuspended(org=org)
    elif p.kind == ADD_VALIDATOR:
        self._add_validator(org, p.account)
    elif p.kind == REMOVE_VALIDATOR:
        org = self.account_org[p.account]
        self._remove_validator(p.account)
    elif p.kind == RECOVER_ACCOUNTS:
        self._recover(org, p.account)
    else:
        self._orgs[org].active = True
        self.active_count += 1
        log MemberReinstated(org=org)
    log ProposalExecuted(proposal=proposal_id, org=org)
    return org


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
@view
def _check(p: Proposal):
    """
    @dev Reverts unless the proposal can be executed against the current
         state; run when it is proposed and again when it is executed.
    @param p The proposal.
    """
    if p.kind == ADD_MEMBER:
        assert len(p.name) != 0, "consortium: empty name"
        assert p.roles != 0 and p.roles & ~roles.ALL == 0, "consortium: invalid roles"
        assert p.encryption_key != empty(bytes32), "consortium: empty encryption key"
        assert p.account != empty(address), "consortium: empty account"
        assert self.account_org[p.account] == 0, "consortium: account already belongs to an organisation"
        assert self.org_count < MAX_ORGS, "consortium: too many organisations"
    elif p.kind == SET_ROLES:
        assert self._orgs[p.org].active, "consortium: organisation is not active"
        assert p.roles != 0 and p.roles & ~roles.ALL == 0, "consortium: invalid roles"
    elif p.kind == SUSPEND_MEMBER:
        assert self._orgs[p.org].active, "consortium: organisation is not active"
        assert self._orgs[p.org].validators == 0, "consortium: organisation runs validators"
    elif p.kind == ADD_VALIDATOR:
        assert self._orgs[p.org].active, "consortium: organisation is not active"
        assert self.account_org[p.account] == p.org, "consortium: validator is not an account of the organisation"
        assert p.account not in self._validators, "consortium: already a validator"
        assert len(self._validators) < MAX_VALIDATORS, "consortium: too many validators"
        assert self._orgs[p.org].validators + 1 <= self._fault_tolerance(len(self._validators) + 1), "consortium: organisation would run too many validators"
    elif p.kind == REMOVE_VALIDATOR:
        assert p.account in self._validators, "consortium: not a validator"
        assert len(self._validators) > MIN_VALIDATORS, "consortium: validator set would fall below 4"
        f: uint256 = self._fault_tolerance(len(self._validators) - 1)
        leaving: uint256 = self.account_org[p.account]
        for v: address in self._validators:
            org: uint256 = self.account_org[v]
            running: uint256 = self._orgs[org].validators
            if org == leaving:
                running -= 1
            assert running <= f, "consortium: an organisation would run too many validators"
    elif p.kind == RECOVER_ACCOUNTS:
        assert self.org_count >= p.org and p.org != 0, "consortium: unknown organisation"
        assert p.account != empty(address), "consortium: empty account"
        assert self.account_org[p.account] == 0, "consortium: account already belongs to an organisation"
    elif p.kind == REINSTATE_MEMBER:
        assert self.org_count >= p.org and p.org != 0, "consortium: unknown organisation"
        assert not self._orgs[p.org].active, "consortium: organisation is active"
    else:
        raise "consortium: unknown proposal kind"


@internal
@view
def _passes(p: Proposal) -> bool:
    """
    @dev Counts the proposal's votes against the current membership.
    @param p The proposal.
    @return bool True if the threshold for its kind is met.
    """
    yes: uint256 = 0
    if p.kind == ADD_VALIDATOR or p.kind == REMOVE_VALIDATOR:
        for voter: uint256 in p.voters:
            if self._orgs[voter].active and self._orgs[voter].validators != 0:
                yes += 1
        return yes * 3 > self._validator_org_count() * 2
    for voter: uint256 in p.voters:
        if self._orgs[voter].active:
            yes += 1
    return yes * 2 > self.active_count


@internal
@view
def _may_veto(p: Proposal, org: uint256) -> bool:
    """
    @dev Tells whether an organisation holds a veto over a proposal.
    @param p The proposal.
    @param org The organisation that wants to veto.
    @return bool True if it may veto.
    """
    held: uint256 = self._orgs[org].roles
    if p.kind == ADD_MEMBER:
        if held & roles.OPERATOR != 0:
            return True
        return held & roles.CUSTOMS != 0 and p.roles & roles.CUSTOMS != 0
    if p.kind == REINSTATE_MEMBER:
        if held & roles.OPERATOR != 0:
            return True
        return held & roles.CUSTOMS != 0 and self._orgs[p.org].roles & roles.CUSTOMS != 0
    if p.kind == SET_ROLES:
        changed: uint256 = p.roles ^ self._orgs[p.org].roles
        return held & roles.CUSTOMS != 0 and changed & roles.CUSTOMS != 0
    if p.kind == SUSPEND_MEMBER:
        return held & roles.CUSTOMS != 0 and self._orgs[p.org].roles & roles.CUSTOMS != 0
    if p.kind == RECOVER_ACCOUNTS:
        return org == p.org
    return False


@internal
@view
def _validator_org_count() -> uint256:
    """
    @dev Counts the distinct active organisations that run validators.
    @return uint256 The count.
    """
    seen: DynArray[uint256, MAX_VALIDATORS] = []
    for v: address in self._validators:
        org: uint256 = self.account_org[v]
        if org not in seen and self._orgs[org].active:
            seen.append(org)
    return len(seen)


@internal
@pure
def _fault_tolerance(n: uint256) -> uint256:
    """
    @dev The number of faulty validators QBFT tolerates among n.
    @param n The number of validators.
    @return uint256 f = (n - 1) / 3, or 0 for an empty set.
    """
    if n == 0:
        return 0
    return (n - 1) // 3


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
def _remove_account(org: uint256, account: address):
    """
    @dev Removes a signing account that is not a validator and not the
         organisation's last one.
    @param org The organisation id.
    @param account The account.
    """
    assert self.account_org[account] == org, "consortium: account is not the organisation's"
    assert account not in self._validators, "consortium: account is a validator"
    assert len(self._accounts[org]) > 1, "consortium: cannot remove the last account"
    self._drop_account(org, account)


@internal
def _drop_account(org: uint256, account: address):
    """
    @dev Unlinks an account from its organisation, keeping the order of
         the others.
    @param org The organisation id.
    @param account The account.
    """
    kept: DynArray[address, MAX_ACCOUNTS] = []
    for a: address in self._accounts[org]:
        if a != account:
            kept.append(a)
    self._accounts[org] = kept
    self.account_org[account] = 0
    log AccountRemoved(org=org, account=account)


@internal
def _add_validator(org: uint256, validator: address):
    """
    @dev Appends a validator run by an organisation.
    @param org The organisation id (the validator is one of its accounts).
    @param validator The validator node address.
    """
    assert org != 0, "consortium: validator is not a member account"
    assert validator not in self._validators, "consortium: already a validator"
    self._validators.append(validator)
    self._orgs[org].validators += 1
    log ValidatorAdded(org=org, validator=validator)


@internal
def _remove_validator(validator: address):
    """
    @dev Removes a validator, keeping the order of the others.
    @param validator The validator node address.
    """
    kept: DynArray[address, MAX_VALIDATORS] = []
    for v: address in self._validators:
        if v != validator:
            kept.append(v)
    self._validators = kept
    org: uint256 = self.account_org[validator]
    self._orgs[org].validators -= 1
    log ValidatorRemoved(org=org, validator=validator)


@internal
def _recover(org: uint256, account: address):
    """
    @dev Replaces every account of an organisation that is not a validator
         with one new account, and reactivates nothing: a suspended
         organisation stays suspended.
    @param org The organisation id.
    @param account The new signing account.
    """
    kept: DynArray[address, MAX_ACCOUNTS] = []
    for a: address in self._accounts[org]:
        if a in self._validators:
            kept.append(a)
        else:
            self.account_org[a] = 0
            log AccountRemoved(org=org, account=a)
    self._accounts[org] = kept
    self._add_account(org, account)
