#pragma version ~=0.4.3
#pragma evm-version prague
"""
@title Consortium: member organisations, signing accounts, validators and governance
@custom:contract-name Consortium
@license Apache-2.0
@notice The registry every other system contract and the node consult.
        - Member organisations (`organisations.vy`): a name, a roles bitmask
          (`roles.vy`), an X25519 encryption public key for key wrapping, an
          active flag and up to 16 signing accounts, which the organisation
          adds, removes and rotates itself.
        - The validator set (`validators.vy`): validator node addresses, each
          a signing account of the organisation that runs it. The node reads
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
          proposal that gives, takes, suspends or reinstates the customs
          role; the organisation whose accounts a recovery replaces may veto
          that recovery (a
          recovery is how an organisation that lost its keys gets new ones,
          so an organisation that still holds its keys can stop a hijack).
        - Safety of the validator set is an invariant held by every
          change: the set never falls below 4 validators, and no single
          organisation runs more than f = (n - 1) / 3 of the n validators, so
          one compromised organisation can never break QBFT's quorum. The
          genesis set is taken as given (a one-node development chain is
          allowed); the invariant is enforced on every later change.
        - Equivocation reports (`equivocation.vy`): any member account may
          submit a validator's two conflicting signed QBFT messages for one
          height and round; the contract checks the pair with ecrecover,
          records it once and emits `EquivocationReported` for governance.
"""

from . import equivocation
from . import organisations
from . import roles
from . import validators

initializes: organisations
initializes: validators[organisations := organisations]
initializes: equivocation[organisations := organisations, validators := validators]

exports: (
    organisations.isMemberAccount,
    organisations.memberOf,
    organisations.isActive,
    organisations.rolesOf,
    organisations.organisation,
    organisations.encryptionKeyOf,
    organisations.accountsOf,
    organisations.setEncryptionKey,
    organisations.org_count,
    organisations.active_count,
    organisations.account_org,
    validators.getValidators,
    validators.validatorOrgCount,
    equivocation.reportEquivocation,
    equivocation.equivocationReport,
    equivocation.equivocation_count,
)


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
# A proposal not executed within this time lapses.
PROPOSAL_LIFETIME: constant(uint256) = 30 * 86400


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
proposal_count: public(uint256)
_proposals: HashMap[uint256, Proposal]


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
    accounts: DynArray[DynArray[address, organisations.MAX_ACCOUNTS], MAX_ORGS],
    validator_nodes: DynArray[address, validators.MAX_VALIDATORS],
    timelock_: uint256,
):
    """
    @dev Writes the genesis membership. Makes no external call and does not
         use its own address: the node's genesis builder runs this
         constructor in a throwaway chain and copies the resulting code and
         storage to the fixed Consortium address. The genesis validator set
         is taken as given (a one-node development chain is allowed); the
         safety rules of `validators.vy` hold from the first change on.
    @param names The organisations' names, one per organisation.
    @param roles_ Each organisation's roles bitmask.
    @param encryption_keys Each organisation's X25519 public key.
    @param accounts Each organisation's signing accounts (at least one).
    @param validator_nodes The validator node addresses; each must be one
           of the signing accounts above.
    @param timelock_ Seconds a passed proposal waits before execution.
    """
    n: uint256 = len(names)
    assert len(roles_) == n and len(encryption_keys) == n and len(accounts) == n, "consortium: genesis lists differ in length"
    for i: uint256 in range(n, bound=MAX_ORGS):
        org: uint256 = organisations._add_org(names[i], roles_[i], encryption_keys[i], accounts[i][0])
        for j: uint256 in range(1, len(accounts[i]), bound=organisations.MAX_ACCOUNTS):
            organisations._add_account(org, accounts[i][j])
    for v: address in validator_nodes:
        validators._add(organisations.account_org[v], v)
    self.timelock = timelock_


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
    org: uint256 = organisations._caller_org()
    organisations._add_account(org, account)


@external
def removeAccount(account: address):
    """
    @notice Removes a signing account from the caller's organisation. A
            validator's account and the last account cannot be removed.
    @param account The account to remove.
    """
    org: uint256 = organisations._caller_org()
    self._remove_account(org, account)


@external
def rotateAccount(old: address, new: address):
    """
    @notice Replaces one of the caller's organisation's signing accounts.
    @param old The account to retire.
    @param new The account that takes its place.
    """
    org: uint256 = organisations._caller_org()
    organisations._add_account(org, new)
    self._remove_account(org, old)


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
    proposer: uint256 = organisations._caller_org()
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
    voter: uint256 = organisations._caller_org()
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
    vetoer: uint256 = organisations._caller_org()
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
    org: uint256 = organisations._caller_org()
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
    organisations._caller_org()
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
        org = organisations._add_org(p.name, p.roles, p.encryption_key, p.account)
    elif p.kind == SET_ROLES:
        organisations._set_roles(org, p.roles)
    elif p.kind == SUSPEND_MEMBER:
        organisations._set_active(org, False)
    elif p.kind == ADD_VALIDATOR:
        validators._add(org, p.account)
    elif p.kind == REMOVE_VALIDATOR:
        org = organisations.account_org[p.account]
        validators._remove(p.account)
    elif p.kind == RECOVER_ACCOUNTS:
        self._recover(org, p.account)
    else:
        organisations._set_active(org, True)
    log ProposalExecuted(proposal=proposal_id, org=org)
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
        assert organisations.account_org[p.account] == 0, "consortium: account already belongs to an organisation"
        assert organisations.org_count < MAX_ORGS, "consortium: too many organisations"
    elif p.kind == SET_ROLES:
        assert organisations._orgs[p.org].active, "consortium: organisation is not active"
        assert p.roles != 0 and p.roles & ~roles.ALL == 0, "consortium: invalid roles"
    elif p.kind == SUSPEND_MEMBER:
        assert organisations._orgs[p.org].active, "consortium: organisation is not active"
        assert organisations._orgs[p.org].validators == 0, "consortium: organisation runs validators"
    elif p.kind == ADD_VALIDATOR:
        validators._check_add(p.org, p.account)
    elif p.kind == REMOVE_VALIDATOR:
        validators._check_remove(p.account)
    elif p.kind == RECOVER_ACCOUNTS:
        assert organisations.org_count >= p.org and p.org != 0, "consortium: unknown organisation"
        assert p.account != empty(address), "consortium: empty account"
        assert organisations.account_org[p.account] == 0, "consortium: account already belongs to an organisation"
    elif p.kind == REINSTATE_MEMBER:
        assert organisations.org_count >= p.org and p.org != 0, "consortium: unknown organisation"
        assert not organisations._orgs[p.org].active, "consortium: organisation is active"
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
            if organisations._orgs[voter].active and organisations._orgs[voter].validators != 0:
                yes += 1
        return yes * 3 > validators._org_count() * 2
    for voter: uint256 in p.voters:
        if organisations._orgs[voter].active:
            yes += 1
    return yes * 2 > organisations.active_count


@internal
@view
def _may_veto(p: Proposal, org: uint256) -> bool:
    """
    @dev Tells whether an organisation holds a veto over a proposal.
    @param p The proposal.
    @param org The organisation that wants to veto.
    @return bool True if it may veto.
    """
    held: uint256 = organisations._orgs[org].roles
    if p.kind == ADD_MEMBER:
        if held & roles.OPERATOR != 0:
            return True
        return held & roles.CUSTOMS != 0 and p.roles & roles.CUSTOMS != 0
    if p.kind == REINSTATE_MEMBER:
        if held & roles.OPERATOR != 0:
            return True
        return held & roles.CUSTOMS != 0 and organisations._orgs[p.org].roles & roles.CUSTOMS != 0
    if p.kind == SET_ROLES:
        changed: uint256 = p.roles ^ organisations._orgs[p.org].roles
        return held & roles.CUSTOMS != 0 and changed & roles.CUSTOMS != 0
    if p.kind == SUSPEND_MEMBER:
        return held & roles.CUSTOMS != 0 and organisations._orgs[p.org].roles & roles.CUSTOMS != 0
    if p.kind == RECOVER_ACCOUNTS:
        return org == p.org
    return False


@internal
def _remove_account(org: uint256, account: address):
    """
    @dev Removes a signing account that is not a validator and not the
         organisation's last one.
    @param org The organisation id.
    @param account The account.
    """
    assert organisations.account_org[account] == org, "consortium: account is not the organisation's"
    assert not validators._is_validator(account), "consortium: account is a validator"
    assert len(organisations._accounts[org]) > 1, "consortium: cannot remove the last account"
    organisations._drop_accounts(org, [account])


@internal
def _recover(org: uint256, account: address):
    """
    @dev Replaces every account of an organisation that is not a validator
         with one new account, and reactivates nothing: a suspended
         organisation stays suspended.
    @param org The organisation id.
    @param account The new signing account.
    """
    lost: DynArray[address, organisations.MAX_ACCOUNTS] = []
    for a: address in organisations._accounts[org]:
        if not validators._is_validator(a):
            lost.append(a)
    organisations._drop_accounts(org, lost)
    organisations._add_account(org, account)
