#pragma version ~=0.4.3
"""
@title The validator set and its safety rules
@custom:contract-name validators
@license Apache-2.0
@notice The validator node addresses, in order of admission; each is a
        signing account of the organisation that runs it, and that
        organisation's record counts its validators. Every change keeps two
        rules: the set never falls below 4 validators, and no organisation
        runs more than f = (n - 1) / 3 of the n validators, so one
        compromised organisation can never break QBFT's quorum. The node
        reads `getValidators()` at every block.
"""

from . import organisations

uses: organisations


MAX_VALIDATORS: constant(uint256) = 64
MIN_VALIDATORS: constant(uint256) = 4


_validators: DynArray[address, MAX_VALIDATORS]


event ValidatorAdded:
    org: indexed(uint256)
    validator: indexed(address)


event ValidatorRemoved:
    org: indexed(uint256)
    validator: indexed(address)


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
def validatorOrgCount() -> uint256:
    """
    @notice The number of active organisations that run validators.
    @return uint256 The count.
    """
    return self._org_count()


@internal
@view
def _is_validator(account: address) -> bool:
    """
    @dev Tells whether an account is a validator.
    @param account The account.
    @return bool True if it is in the set.
    """
    return account in self._validators


@internal
@view
def _org_count() -> uint256:
    """
    @dev Counts the distinct active organisations that run validators.
    @return uint256 The count.
    """
    seen: DynArray[uint256, MAX_VALIDATORS] = []
    for v: address in self._validators:
        org: uint256 = organisations.account_org[v]
        if org not in seen and organisations._orgs[org].active:
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
@view
def _check_add(org: uint256, validator: address):
    """
    @dev Reverts unless the organisation may add this validator now.
    @param org The organisation that would run it.
    @param validator The validator node address, one of org's accounts.
    """
    assert organisations._orgs[org].active, "consortium: organisation is not active"
    assert organisations.account_org[validator] == org, "consortium: validator is not an account of the organisation"
    assert validator not in self._validators, "consortium: already a validator"
    assert len(self._validators) < MAX_VALIDATORS, "consortium: too many validators"
    assert organisations._orgs[org].validators + 1 <= self._fault_tolerance(len(self._validators) + 1), "consortium: organisation would run too many validators"


@internal
@view
def _check_remove(validator: address):
    """
    @dev Reverts unless the validator may be removed now.
    @param validator The validator node address.
    """
    assert validator in self._validators, "consortium: not a validator"
    assert len(self._validators) > MIN_VALIDATORS, "consortium: validator set would fall below 4"
    f: uint256 = self._fault_tolerance(len(self._validators) - 1)
    leaving: uint256 = organisations.account_org[validator]
    for v: address in self._validators:
        org: uint256 = organisations.account_org[v]
        running: uint256 = organisations._orgs[org].validators
        if org == leaving:
            running -= 1
        assert running <= f, "consortium: an organisation would run too many validators"


@internal
def _add(org: uint256, validator: address):
    """
    @dev Appends a validator run by an organisation.
    @param org The organisation id (the validator is one of its accounts).
    @param validator The validator node address.
    """
    assert org != 0, "consortium: validator is not a member account"
    assert validator not in self._validators, "consortium: already a validator"
    self._validators.append(validator)
    organisations._orgs[org].validators += 1
    log ValidatorAdded(org=org, validator=validator)


@internal
def _remove(validator: address):
    """
    @dev Removes a validator, keeping the order of the others.
    @param validator The validator node address.
    """
    kept: DynArray[address, MAX_VALIDATORS] = []
    for v: address in self._validators:
        if v != validator:
            kept.append(v)
    self._validators = kept
    org: uint256 = organisations.account_org[validator]
    organisations._orgs[org].validators -= 1
    log ValidatorRemoved(org=org, validator=validator)
