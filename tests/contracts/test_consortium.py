"""Consortium: membership views, self-service accounts and keys, governance."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

import contracts
from contracts import ROLES, ProposalKind, constructor_args, roles_mask
from tests.support.deployment import ORGS, TIMELOCK, Deployment, reverts

ADD_MEMBER, SET_ROLES, SUSPEND_MEMBER, ADD_VALIDATOR, REMOVE_VALIDATOR, RECOVER = (
    ProposalKind.ADD_MEMBER, ProposalKind.SET_ROLES, ProposalKind.SUSPEND_MEMBER,
    ProposalKind.ADD_VALIDATOR, ProposalKind.REMOVE_VALIDATOR, ProposalKind.RECOVER_ACCOUNTS,
)
OPEN, EXECUTED, VETOED, CANCELLED = 1, 2, 3, 4
ZERO = "0x" + "00" * 20
KEY = b"\x42" * 32


def propose(
    port: Deployment,
    proposer: int,
    kind: int,
    org: int = 0,
    account: str = ZERO,
    roles: int = 0,
    name: str = "",
    key: bytes = b"\x00" * 32,
) -> int:
    fn = port.Consortium.functions.propose(kind, org, account, roles, name, key)
    port.transact(fn, port.accounts[proposer])
    return int(port.Consortium.functions.proposal_count().call())


def vote(port: Deployment, proposal: int, *orgs: int) -> None:
    for org in orgs:
        port.transact(port.Consortium.functions.vote(proposal), port.accounts[org])


def execute(port: Deployment, proposal: int, by: int = 1) -> Any:
    return port.transact(port.Consortium.functions.execute(proposal), port.accounts[by])


def passed(port: Deployment, kind: int, voters: list[int], **kw: Any) -> Any:
    """Propose, vote, wait out the timelock, execute; return the receipt."""
    pid = propose(port, voters[0], kind, **kw)
    vote(port, pid, *voters[1:])
    port.advance(TIMELOCK)
    return execute(port, pid)


def proposal(port: Deployment, pid: int) -> Any:
    return port.Consortium.functions.proposal(pid).call()


# --- views -------------------------------------------------------------------------------


def test_genesis_views(port: Deployment) -> None:
    c = port.Consortium.functions
    assert c.org_count().call() == len(ORGS)
    assert c.active_count().call() == len(ORGS)
    assert c.timelock().call() == TIMELOCK
    assert c.getValidators().call() == port.validators
    assert c.validatorOrgCount().call() == 4
    for org, account in port.accounts.items():
        assert c.isMemberAccount(account).call()
        assert c.account_org(account).call() == org
    assert c.isMemberAccount(port.validators[0]).call()
    assert not c.isMemberAccount(port.spare[0]).call()
    assert c.memberOf(port.accounts[2]).call() == [2, ROLES["terminal"] | ROLES["warehouse"]]
    assert c.memberOf(port.spare[0]).call() == [0, 0]
    assert c.isActive(3).call() and not c.isActive(99).call()
    assert c.rolesOf(4).call() == ROLES["customs"]
    assert c.rolesOf(99).call() == 0
    name, roles, key, active, validators = c.organisation(1).call()
    assert (name, roles, active, validators) == ("Harbour Operator", ROLES["operator"], True, 1)
    assert key == (1).to_bytes(32, "big")
    assert c.encryptionKeyOf(2).call() == (2).to_bytes(32, "big")
    assert c.accountsOf(1).call() == [port.accounts[1], port.validators[0]]
    assert c.proposal_count().call() == 0


def test_constructor_args_shape() -> None:
    members = [
        {
            "name": "A",
            "roles": ["terminal", "Carrier"],
            "accounts": ["0x" + "ab" * 20],
            "encryptionKey": "0x" + "01" * 32,
        }
    ]
    args = constructor_args("Consortium", members, ["0x" + "ab" * 20], timelock=5)
    assert args == [
        ["A"],
        [ROLES["terminal"] | ROLES["carrier"]],
        [b"\x01" * 32],
        [[to_checksum_address("0x" + "ab" * 20)]],
        [to_checksum_address("0x" + "ab" * 20)],
        5,
    ]
    assert constructor_args("CargoLedger", members, []) == [
        "0x0000000000000000000000000000000000001000"
    ]
    assert (
        constructor_args("AccessGrants", members, [])[1]
        == "0x0000000000000000000000000000000000001001"
    )
    assert roles_mask(["bank", "auditor"]) == 512 | 1024


def test_genesis_refuses_validator_outside_membership(port: Deployment) -> None:
    from tests.support.deployment import _deploy, genesis_members

    members, validators = genesis_members(list(port.w3.eth.accounts))
    args = constructor_args("Consortium", members, validators + [port.spare[0]])
    with reverts("consortium: validator is not a member account"):
        _deploy(port.w3, "Consortium", args, port.spare[1])
    bad = constructor_args("Consortium", members, validators)
    bad[1] = bad[1][:-1]
    with reverts("consortium: genesis lists differ in length"):
        _deploy(port.w3, "Consortium", bad, port.spare[1])


# --- self-service accounts and keys ------------------------------------------------------


def test_add_remove_rotate_accounts(port: Deployment) -> None:
    c = port.Consortium.functions
    new, newer = port.spare[0], port.spare[1]
    r = port.transact(c.addAccount(new), port.accounts[5])
    assert port.events(r, "Consortium", "AccountAdded")[0]["account"] == new
    assert c.memberOf(new).call()[0] == 5
    r = port.transact(c.rotateAccount(new, newer), port.accounts[5])
    assert port.events(r, "Consortium", "AccountRemoved")[0]["account"] == new
    assert not c.isMemberAccount(new).call() and c.isMemberAccount(newer).call()
    r = port.transact(c.removeAccount(newer), port.accounts[5])
    assert port.events(r, "Consortium", "AccountRemoved")[0]["org"] == 5
    assert c.accountsOf(5).call() == [port.accounts[5]]


def test_account_refusals(port: Deployment) -> None:
    c = port.Consortium.functions
    with reverts("consortium: caller is not a member"):
        port.transact(c.addAccount(port.spare[0]), port.spare[1])
    with reverts("consortium: account already belongs to an organisation"):
        port.transact(c.addAccount(port.accounts[6]), port.accounts[5])
    with reverts("consortium: empty account"):
        port.transact(c.addAccount(ZERO), port.accounts[5])
    with reverts("consortium: account is not the organisation's"):
        port.transact(c.removeAccount(port.accounts[6]), port.accounts[5])
    with reverts("consortium: cannot remove the last account"):
        port.transact(c.removeAccount(port.accounts[5]), port.accounts[5])
    with reverts("consortium: account is a validator"):
        port.transact(c.removeAccount(port.validators[0]), port.accounts[1])
    with reverts("consortium: account is a validator"):
        port.transact(c.rotateAccount(port.validators[0], port.spare[0]), port.accounts[1])
    with reverts("consortium: account is not the organisation's"):
        port.transact(c.rotateAccount(port.accounts[6], port.spare[0]), port.accounts[5])


def test_too_many_accounts(port: Deployment) -> None:
    c = port.Consortium.functions
    for a in port.spare[:15]:
        port.transact(c.addAccount(a), port.accounts[7])
    with reverts("consortium: too many accounts"):
        port.transact(c.addAccount(port.spare[15]), port.accounts[7])


def test_set_encryption_key(port: Deployment) -> None:
    c = port.Consortium.functions
    r = port.transact(c.setEncryptionKey(KEY), port.accounts[3])
    assert port.events(r, "Consortium", "EncryptionKeyChanged")[0]["encryption_key"] == KEY
    assert c.encryptionKeyOf(3).call() == KEY
    with reverts("consortium: empty encryption key"):
        port.transact(c.setEncryptionKey(b"\x00" * 32), port.accounts[3])
    with reverts("consortium: caller is not a member"):
        port.transact(c.setEncryptionKey(KEY), port.spare[0])


# --- membership governance ---------------------------------------------------------------


def test_add_member_needs_majority_and_timelock(port: Deployment) -> None:
    c = port.Consortium.functions
    newcomer = port.spare[0]
    r = port.transact(
        c.propose(ADD_MEMBER, 0, newcomer, ROLES["haulier"], "New Haulage", KEY), port.accounts[2]
    )
    created = port.events(r, "Consortium", "ProposalCreated")[0]
    assert (created["kind"], created["proposer"], created["account"]) == (ADD_MEMBER, 2, newcomer)
    pid = created["proposal"]
    vote(port, pid, 3, 5, 6, 7)  # 5 of 10: not a majority
    assert proposal(port, pid)[9] == 0
    with reverts("consortium: proposal has not passed"):
        execute(port, pid)
    r = port.transact(c.vote(pid), port.accounts[8])  # 6 of 10
    assert (
        port.events(r, "Consortium", "ProposalPassed")[0]["executable_at"] == port.now() + TIMELOCK
    )
    with reverts("consortium: timelock has not run out"):
        execute(port, pid)
    port.advance(TIMELOCK)
    r = execute(port, pid)
    added = port.events(r, "Consortium", "MemberAdded")[0]
    assert (added["org"], added["name"], added["roles"]) == (11, "New Haulage", ROLES["haulier"])
    assert port.events(r, "Consortium", "ProposalExecuted")[0]["org"] == 11
    assert c.memberOf(newcomer).call() == [11, ROLES["haulier"]]
    assert c.active_count().call() == 11
    assert proposal(port, pid)[1] == EXECUTED
    with reverts("consortium: proposal is not open"):
        execute(port, pid)


def test_vote_refusals(port: Deployment) -> None:
    pid = propose(port, 2, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["warehouse"])
    with reverts("consortium: organisation already voted"):
        vote(port, pid, 2)
    with reverts("consortium: caller is not a member"):
        port.transact(port.Consortium.functions.vote(pid), port.spare[0])
    with reverts("consortium: proposal is not open"):
        vote(port, 999, 3)
    with reverts("consortium: caller is not a member"):
        port.transact(port.Consortium.functions.execute(pid), port.spare[0])


def test_set_roles_and_suspend(port: Deployment) -> None:
    c = port.Consortium.functions
    r = passed(
        port, SET_ROLES, [1, 2, 3, 4, 5, 6], org=7, roles=ROLES["haulier"] | ROLES["warehouse"]
    )
    assert (
        port.events(r, "Consortium", "RolesChanged")[0]["roles"]
        == ROLES["haulier"] | ROLES["warehouse"]
    )
    assert c.rolesOf(7).call() == ROLES["haulier"] | ROLES["warehouse"]
    r = passed(port, SUSPEND_MEMBER, [1, 2, 3, 4, 5, 6], org=9)
    assert port.events(r, "Consortium", "MemberSuspended")[0]["org"] == 9
    assert not c.isMemberAccount(port.accounts[9]).call()
    assert c.memberOf(port.accounts[9]).call() == [0, 0]
    assert c.rolesOf(9).call() == 0
    assert c.active_count().call() == 9
    with reverts("consortium: caller is not a member"):
        port.transact(c.addAccount(port.spare[0]), port.accounts[9])


def test_proposal_validation(port: Deployment) -> None:
    with reverts("consortium: invalid roles"):
        propose(port, 1, ADD_MEMBER, account=port.spare[0], roles=1 << 11, name="X", key=KEY)
    with reverts("consortium: invalid roles"):
        propose(port, 1, SET_ROLES, org=5, roles=0)
    with reverts("consortium: empty name"):
        propose(port, 1, ADD_MEMBER, account=port.spare[0], roles=1, key=KEY)
    with reverts("consortium: empty encryption key"):
        propose(port, 1, ADD_MEMBER, account=port.spare[0], roles=1, name="X")
    with reverts("consortium: empty account"):
        propose(port, 1, ADD_MEMBER, roles=1, name="X", key=KEY)
    with reverts("consortium: account already belongs to an organisation"):
        propose(port, 1, ADD_MEMBER, account=port.accounts[2], roles=1, name="X", key=KEY)
    with reverts("consortium: organisation is not active"):
        propose(port, 1, SET_ROLES, org=42, roles=1)
    with reverts("consortium: organisation runs validators"):
        propose(port, 1, SUSPEND_MEMBER, org=2)
    with reverts("consortium: unknown organisation"):
        propose(port, 1, RECOVER, org=42, account=port.spare[0])
    with reverts("consortium: unknown proposal kind"):
        propose(port, 1, 9)
    with reverts("consortium: caller is not a member"):
        port.transact(
            port.Consortium.functions.propose(SET_ROLES, 5, ZERO, 1, "", KEY), port.spare[0]
        )


def test_execution_rechecks_state(port: Deployment) -> None:
    # Two proposals add the same account; the second fails at execution.
    first = propose(port, 1, ADD_MEMBER, account=port.spare[0], roles=1, name="A", key=KEY)
    second = propose(port, 1, ADD_MEMBER, account=port.spare[0], roles=1, name="B", key=KEY)
    vote(port, first, 2, 3, 4, 5, 6)
    vote(port, second, 2, 3, 4, 5, 6)
    port.advance(TIMELOCK)
    execute(port, first)
    with reverts("consortium: account already belongs to an organisation"):
        execute(port, second)


def test_votes_are_recounted_at_execution(port: Deployment) -> None:
    pid = propose(port, 5, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["agent"])
    vote(port, pid, 6, 7, 8, 9, 10)  # 6 of 10
    # One of the voters is suspended before execution: 5 of 9 active is still a majority...
    passed(port, SUSPEND_MEMBER, [1, 2, 3, 4, 5, 6], org=9)
    pid2 = propose(port, 1, SUSPEND_MEMBER, org=10)
    vote(port, pid2, 2, 3, 4, 5, 6)
    port.advance(TIMELOCK)
    execute(port, pid2)
    # ...but after a second one, 4 of 8 is not.
    with reverts("consortium: proposal lost its majority"):
        execute(port, pid)


def test_cancel(port: Deployment) -> None:
    pid = propose(port, 5, SET_ROLES, org=7, roles=ROLES["haulier"])
    with reverts("consortium: caller is not the proposer"):
        port.transact(port.Consortium.functions.cancel(pid), port.accounts[6])
    r = port.transact(port.Consortium.functions.cancel(pid), port.accounts[5])
    assert port.events(r, "Consortium", "ProposalCancelled")[0]["proposal"] == pid
    assert proposal(port, pid)[1] == CANCELLED
    with reverts("consortium: proposal is not open"):
        vote(port, pid, 6)
    with reverts("consortium: proposal is not open"):
        port.transact(port.Consortium.functions.cancel(pid), port.accounts[5])


# --- vetoes ------------------------------------------------------------------------------


def test_operator_vetoes_new_member(port: Deployment) -> None:
    pid = propose(
        port, 2, ADD_MEMBER, account=port.spare[0], roles=ROLES["haulier"], name="X", key=KEY
    )
    vote(port, pid, 3, 4, 5, 6, 7)
    with reverts("consortium: organisation holds no veto"):
        port.transact(port.Consortium.functions.veto(pid), port.accounts[5])
    r = port.transact(port.Consortium.functions.veto(pid), port.accounts[1])
    assert port.events(r, "Consortium", "ProposalVetoed")[0]["vetoer"] == 1
    port.advance(TIMELOCK)
    with reverts("consortium: proposal is not open"):
        execute(port, pid)
    with reverts("consortium: proposal is not open"):
        port.transact(port.Consortium.functions.veto(pid), port.accounts[1])


def test_customs_vetoes_customs_role_changes(port: Deployment) -> None:
    veto = port.Consortium.functions.veto
    # Giving the customs role: customs may veto, the operator may not.
    pid = propose(port, 2, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["customs"])
    with reverts("consortium: organisation holds no veto"):
        port.transact(veto(pid), port.accounts[1])
    port.transact(veto(pid), port.accounts[10])
    assert proposal(port, pid)[1] == VETOED
    # A role change not touching customs: no veto.
    pid = propose(port, 2, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["agent"])
    with reverts("consortium: organisation holds no veto"):
        port.transact(veto(pid), port.accounts[4])
    # Suspending a customs organisation: the other customs may veto.
    pid = propose(port, 2, SUSPEND_MEMBER, org=10)
    port.transact(veto(pid), port.accounts[4])
    # A new customs member: customs may veto.
    pid = propose(
        port, 2, ADD_MEMBER, account=port.spare[0], roles=ROLES["customs"], name="X", key=KEY
    )
    port.transact(veto(pid), port.accounts[4])
    # Validator changes carry no veto.
    pid = propose(port, 5, ADD_VALIDATOR, org=5, account=port.accounts[5])
    with reverts("consortium: organisation holds no veto"):
        port.transact(veto(pid), port.accounts[1])


# --- validators --------------------------------------------------------------------------


def test_add_validator_needs_two_thirds_of_validator_orgs(port: Deployment) -> None:
    c = port.Consortium.functions
    pid = propose(port, 1, ADD_VALIDATOR, org=5, account=port.accounts[5])
    vote(port, pid, 5, 6, 7, 8, 9, 10)  # many members, but only one validator org
    vote(port, pid, 2)  # 2 of 4 validator orgs: not more than 2/3
    port.advance(TIMELOCK)
    with reverts("consortium: proposal has not passed"):
        execute(port, pid)
    vote(port, pid, 3)  # 3 of 4
    port.advance(TIMELOCK)
    r = execute(port, pid)
    assert port.events(r, "Consortium", "ValidatorAdded")[0]["validator"] == port.accounts[5]
    assert c.getValidators().call() == port.validators + [port.accounts[5]]
    assert c.validatorOrgCount().call() == 5
    assert c.organisation(5).call()[4] == 1


def test_validator_quorum_safety(port: Deployment) -> None:
    # An organisation that already runs one of 4 validators may not run a second (f = 1).
    port.transact(port.Consortium.functions.addAccount(port.spare[0]), port.accounts[1])
    with reverts("consortium: organisation would run too many validators"):
        propose(port, 1, ADD_VALIDATOR, org=1, account=port.spare[0])
    with reverts("consortium: validator is not an account of the organisation"):
        propose(port, 1, ADD_VALIDATOR, org=2, account=port.spare[0])
    with reverts("consortium: already a validator"):
        propose(port, 1, ADD_VALIDATOR, org=1, account=port.validators[0])
    with reverts("consortium: organisation is not active"):
        propose(port, 1, ADD_VALIDATOR, org=77, account=port.spare[0])


def test_remove_validator(port: Deployment) -> None:
    c = port.Consortium.functions
    with reverts("consortium: validator set would fall below 4"):
        propose(port, 1, REMOVE_VALIDATOR, account=port.validators[3])
    with reverts("consortium: not a validator"):
        propose(port, 1, REMOVE_VALIDATOR, account=port.accounts[5])
    passed(port, ADD_VALIDATOR, [1, 2, 3], org=5, account=port.accounts[5])
    # 5 validator orgs: 4 votes needed (4 * 3 > 10).
    pid = propose(port, 1, REMOVE_VALIDATOR, account=port.validators[3])
    vote(port, pid, 2, 3)
    port.advance(TIMELOCK)
    with reverts("consortium: proposal has not passed"):
        execute(port, pid)
    vote(port, pid, 5)
    port.advance(TIMELOCK)
    r = execute(port, pid)
    assert port.events(r, "Consortium", "ValidatorRemoved")[0] == {
        "org": 4,
        "validator": port.validators[3],
    }
    assert c.getValidators().call() == port.validators[:3] + [port.accounts[5]]
    assert c.organisation(4).call()[4] == 0
    # Customs no longer runs a validator, so it can now be suspended.
    propose(port, 1, SUSPEND_MEMBER, org=4)


def test_remove_validator_keeps_fault_tolerance(port: Deployment) -> None:
    # 7 validators (f = 2), org 1 runs 2 of them; removing someone else's gives n = 6, f = 1.
    passed(port, ADD_VALIDATOR, [1, 2, 3], org=5, account=port.accounts[5])
    passed(port, ADD_VALIDATOR, [1, 2, 3, 5], org=6, account=port.accounts[6])
    port.transact(port.Consortium.functions.addAccount(port.spare[0]), port.accounts[1])
    passed(port, ADD_VALIDATOR, [1, 2, 3, 5, 6], org=1, account=port.spare[0])
    assert port.Consortium.functions.organisation(1).call()[4] == 2
    assert len(port.Consortium.functions.getValidators().call()) == 7
    with reverts("consortium: an organisation would run too many validators"):
        propose(port, 2, REMOVE_VALIDATOR, account=port.accounts[6])
    # Removing one of org 1's own validators is fine.
    passed(port, REMOVE_VALIDATOR, [1, 2, 3, 5, 6], account=port.spare[0])
    assert port.spare[0] not in port.Consortium.functions.getValidators().call()


# --- recovery ----------------------------------------------------------------------------


def test_recover_lost_keys(port: Deployment) -> None:
    c = port.Consortium.functions
    port.transact(c.addAccount(port.spare[1]), port.accounts[1])
    lost = [port.accounts[1], port.spare[1]]
    r = passed(port, RECOVER, [2, 3, 4, 5, 6, 7], org=1, account=port.spare[0])
    removed = {e["account"] for e in port.events(r, "Consortium", "AccountRemoved")}
    assert removed == set(lost)
    # The validator account survives; the lost keys no longer sign for the org.
    assert c.accountsOf(1).call() == [port.validators[0], port.spare[0]]
    assert all(not c.isMemberAccount(a).call() for a in lost)
    assert c.memberOf(port.spare[0]).call() == [1, ROLES["operator"]]


def test_recovery_vetoed_by_its_target(port: Deployment) -> None:
    pid = propose(port, 2, RECOVER, org=5, account=port.spare[0])
    with reverts("consortium: organisation holds no veto"):
        port.transact(port.Consortium.functions.veto(pid), port.accounts[6])
    port.transact(port.Consortium.functions.veto(pid), port.accounts[5])
    assert proposal(port, pid)[1] == VETOED


REINSTATE = 7
LIFETIME = 30 * 86_400


def test_reinstate_member(port: Deployment) -> None:
    c = port.Consortium.functions
    passed(port, SUSPEND_MEMBER, [1, 2, 3, 4, 5, 6], org=9)
    with reverts("consortium: organisation is active"):
        propose(port, 1, REINSTATE, org=8)
    with reverts("consortium: unknown organisation"):
        propose(port, 1, REINSTATE, org=11)
    r = passed(port, REINSTATE, [1, 2, 3, 4, 5], org=9)  # 5 of 9 active
    assert port.events(r, "Consortium", "MemberReinstated") == [{"org": 9}]
    assert c.isMemberAccount(port.accounts[9]).call()
    assert c.memberOf(port.accounts[9]).call() == [9, ROLES["bank"]]
    assert c.active_count().call() == 10


def test_reinstatement_vetoes(port: Deployment) -> None:
    veto = port.Consortium.functions.veto
    passed(port, SUSPEND_MEMBER, [1, 2, 3, 4, 5, 6], org=9)
    pid = propose(port, 2, REINSTATE, org=9)
    with reverts("consortium: organisation holds no veto"):
        port.transact(veto(pid), port.accounts[4])  # customs: the bank holds no customs role
    port.transact(veto(pid), port.accounts[1])  # the operator
    assert proposal(port, pid)[1] == VETOED


def test_proposals_lapse(port: Deployment) -> None:
    pid = propose(port, 5, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["agent"])
    port.advance(LIFETIME)
    with reverts("consortium: proposal has lapsed"):
        vote(port, pid, 6)
    # A passed proposal must also be executed within its lifetime.
    pid = propose(port, 5, SET_ROLES, org=7, roles=ROLES["haulier"] | ROLES["agent"])
    vote(port, pid, 6, 7, 8, 9, 10)
    port.advance(LIFETIME)
    with reverts("consortium: proposal has lapsed"):
        execute(port, pid)


# --- equivocation reports ------------------------------------------------------------------

PROPOSAL_CODE, PREPARE_CODE, COMMIT_CODE = 0x12, 0x13, 0x14
SEAL = b"\x07" * 65


def _key(port: Deployment, account: str) -> Any:
    """The eth-tester private key of one of the port's accounts."""
    from eth_keys import keys

    for hex_key in port.tester.backend.account_keys:
        key = keys.PrivateKey(bytes.fromhex(str(hex_key)[2:]))
        if key.public_key.to_checksum_address() == account:
            return key
    raise KeyError(account)


def _signed(
    port: Deployment, account: str, code: int, height: int, round_: int, digest: bytes
) -> Any:
    """A message of ``account`` signed exactly as a QBFT node signs it (consensus.messages)."""
    from consensus import extradata
    from consensus.messages import CommitPayload, PreparePayload, ProposalPayload
    from contracts.equivocation import SignedMessage

    payload: Any
    if code == PROPOSAL_CODE:
        payload = ProposalPayload(height, round_, digest)
    elif code == PREPARE_CODE:
        payload = PreparePayload(height, round_, digest)
    else:
        payload = CommitPayload(height, round_, digest, SEAL)
    signature = extradata.sign_seal(payload.signing_digest, _key(port, account))
    return SignedMessage(
        code, height, round_, digest, SEAL if code == COMMIT_CODE else b"", signature
    )


def _report(port: Deployment, first: Any, second: Any, reporter: str) -> Any:
    fn = port.Consortium.functions.reportEquivocation(first.as_tuple(), second.as_tuple())
    return port.transact(fn, reporter)


def _evidence_hash(first: Any, second: Any) -> bytes:
    """keccak256 of node.evidence's encoding of the pair (independent of the contract)."""
    import rlp
    from eth_hash.auto import keccak

    items = []
    for m in (first, second):
        payload = [m.code, m.height, m.round, m.digest] + ([m.commit_seal] if m.commit_seal else [])
        items.append([payload, m.signature])
    return bytes(keccak(rlp.encode([1, *items])))


def test_equivocation_report_is_recorded(port: Deployment) -> None:
    from contracts.equivocation import (
        REPORT_SELECTOR,
        REPORTED_TOPIC,
        decode_report_record,
        decode_reported_log,
        encode_report_call,
        encode_report_query,
    )

    c = port.Consortium.functions
    validator = port.validators[1]
    first = _signed(port, validator, PREPARE_CODE, 1_000, 2, b"\x01" * 32)
    second = _signed(port, validator, PREPARE_CODE, 1_000, 2, b"\x02" * 32)
    expected = _evidence_hash(first, second)
    assert c.reportEquivocation(first.as_tuple(), second.as_tuple()).call(
        {"from": port.accounts[5]}
    ) == expected
    receipt = port.send(
        port.Consortium.address, encode_report_call(first, second), port.accounts[5]
    )
    assert receipt.gasUsed < 200_000  # node.evidence.REPORT_GAS leaves a wide margin
    (event,) = port.events(receipt, "Consortium", "EquivocationReported")
    assert dict(event) == {
        "validator": validator,
        "reporter": port.accounts[5],
        "code": PREPARE_CODE,
        "height": 1_000,
        "round": 2,
        "evidence_hash": expected,
    }
    (raw,) = [entry for entry in receipt.logs if entry.address == port.Consortium.address]
    assert raw.topics[0] == REPORTED_TOPIC
    decoded = decode_reported_log([bytes(t) for t in raw.topics], bytes(raw.data))
    assert decoded.validator.hex() == validator[2:].lower() and decoded.evidence_hash == expected
    assert c.equivocation_count().call() == 1
    query = encode_report_query(bytes.fromhex(validator[2:]), PREPARE_CODE, 1_000, 2)
    output = port.w3.eth.call({"to": port.Consortium.address, "data": query})
    assert decode_report_record(bytes(output)) == (
        expected, bytes.fromhex(port.accounts[5][2:]), receipt.blockNumber
    )
    assert c.equivocationReport(validator, PREPARE_CODE, 1_000, 3).call()[0] == b"\x00" * 32
    call = port.Consortium.encode_abi("reportEquivocation", [first.as_tuple(), second.as_tuple()])
    assert bytes.fromhex(call[2:]) == encode_report_call(first, second)
    assert bytes.fromhex(call[2:10]) == REPORT_SELECTOR


def test_equivocation_evidence_hash_matches_the_node_encoding(port: Deployment) -> None:
    """The contract's RLP agrees with pyrlp at every length boundary of height and round."""
    cases = [
        (PROPOSAL_CODE, 0, 0),
        (PREPARE_CODE, 127, 128),
        (COMMIT_CODE, 128, 127),
        (PROPOSAL_CODE, 255, 256),
        (COMMIT_CODE, 65_536, 1),
        (PREPARE_CODE, 2**64 - 1, 2**32 - 1),
        (COMMIT_CODE, 2**64 - 1, 2**32 - 1),
    ]
    for i, (code, height, round_) in enumerate(cases):
        validator = port.validators[i % 4]
        first = _signed(port, validator, code, height, round_, b"\x0a" * 32)
        second = _signed(port, validator, code, height, round_, b"\x0b" * 32)
        receipt = _report(port, second, first, port.accounts[1 + i])
        assert receipt.gasUsed < 200_000  # within node.evidence.REPORT_GAS at any size
        (event,) = port.events(receipt, "Consortium", "EquivocationReported")
        assert event["evidence_hash"] == _evidence_hash(second, first), (code, height, round_)
        assert (event["validator"], event["height"], event["round"]) == (validator, height, round_)
    assert port.Consortium.functions.equivocation_count().call() == len(cases)


def test_node_evidence_is_accepted_as_stored(port: Deployment) -> None:
    """What node.evidence's detector stores is what the contract hashes."""
    from consensus.messages import Prepare, PreparePayload, Signed
    from node.evidence import EquivocationDetector

    detector = EquivocationDetector()
    key = _key(port, port.validators[2])
    author = key.public_key.to_canonical_address()
    evidence = None
    for digest in (b"\x02" * 32, b"\x01" * 32):
        from consensus import extradata

        payload = PreparePayload(77, 0, digest)
        message = Prepare(Signed(payload, author, extradata.sign_seal(payload.signing_digest, key)))
        evidence = detector.observe(message) or evidence
    assert evidence is not None
    receipt = _report(port, *evidence.report_messages(), port.accounts[3])
    (event,) = port.events(receipt, "Consortium", "EquivocationReported")
    assert event["evidence_hash"] == evidence.evidence_hash


def _refused(port: Deployment, first: Any, second: Any, reason: str, reporter: str | None = None) -> None:
    with reverts(reason):
        _report(port, first, second, reporter or port.accounts[5])


def test_equivocation_reports_refused(port: Deployment) -> None:
    from dataclasses import replace

    v = port.validators[0]
    a = _signed(port, v, PREPARE_CODE, 50, 1, b"\x01" * 32)
    b = _signed(port, v, PREPARE_CODE, 50, 1, b"\x02" * 32)
    _refused(port, a, a, "consortium: the messages agree on the block")
    _refused(port, a, _signed(port, v, PREPARE_CODE, 51, 1, b"\x02" * 32),
             "consortium: the messages are for different heights")
    _refused(port, a, _signed(port, v, PREPARE_CODE, 50, 2, b"\x02" * 32),
             "consortium: the messages are for different rounds")
    _refused(port, a, _signed(port, v, PROPOSAL_CODE, 50, 1, b"\x02" * 32),
             "consortium: the messages are of different kinds")
    outsider = port.accounts[6]  # a member account, not a validator
    _refused(port, _signed(port, outsider, PREPARE_CODE, 50, 1, b"\x01" * 32),
             _signed(port, outsider, PREPARE_CODE, 50, 1, b"\x02" * 32),
             "consortium: signer is not a validator")
    # Forged: the second message is another validator's, or its signature is not one.
    _refused(port, a, _signed(port, port.validators[1], PREPARE_CODE, 50, 1, b"\x02" * 32),
             "consortium: the messages have different signers")
    _refused(port, a, replace(b, signature=b"\x00" * 64 + b"\x01"),
             "consortium: signature does not recover")
    _refused(port, a, replace(b, signature=b.signature[:64] + b"\x1b"),
             "consortium: signature recovery id must be 0 or 1")
    _refused(port, a, replace(b, signature=b.signature[:64]), "consortium: a signature is 65 bytes")
    # Fields that are not what was signed: the re-encoded payload recovers to someone else.
    _refused(port, replace(a, height=49), replace(b, height=49),
             "consortium: the messages have different signers")
    _refused(port, a, replace(b, digest=b"\x03" * 32),
             "consortium: the messages have different signers")
    _refused(port, replace(a, commit_seal=SEAL), b,
             "consortium: only a COMMIT carries a commit seal")
    commit_a = _signed(port, v, COMMIT_CODE, 50, 1, b"\x01" * 32)
    commit_b = _signed(port, v, COMMIT_CODE, 50, 1, b"\x02" * 32)
    _refused(port, commit_a, replace(commit_b, commit_seal=SEAL[:64]),
             "consortium: a COMMIT carries a 65-byte commit seal")
    _refused(port, replace(a, code=0x15), replace(b, code=0x15),
             "consortium: this message kind cannot equivocate")
    _refused(port, a, b, "consortium: caller is not a member", reporter=port.spare[0])
    assert port.Consortium.functions.equivocation_count().call() == 0
    # Once recorded, the same (validator, kind, height, round) is refused in either order and
    # from anyone, with another conflicting block too; other kinds are separate equivocations.
    _report(port, a, b, port.accounts[5])
    _refused(port, a, b, "consortium: equivocation already reported")
    _refused(port, b, a, "consortium: equivocation already reported", reporter=port.validators[2])
    _refused(port, a, _signed(port, v, PREPARE_CODE, 50, 1, b"\x09" * 32),
             "consortium: equivocation already reported")
    _report(port, commit_a, commit_b, port.accounts[5])
    assert port.Consortium.functions.equivocation_count().call() == 2


def test_proposal_kinds_mirror_the_contract() -> None:
    """contracts.ProposalKind is Consortium.vy's list of proposal kinds, value for value."""
    source = (Path(contracts.__file__).parent / "Consortium.vy").read_text()
    declared = dict(re.findall(r"^([A-Z_]+): constant\(uint8\) = (\d+)$",
                               source.split("# Proposal kinds.")[1].split("\n\n")[0], re.M))
    assert {name: int(value) for name, value in declared.items()} == {
        kind.name: kind.value for kind in ProposalKind
    }
