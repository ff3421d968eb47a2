"""Hypothesis stateful tests: random governance, grant and link actions keep the invariants.

- Governance: the validator set never falls below 4, no organisation runs more than
  f = (n - 1) // 3 of the n validators, every validator is an account of an active member, and
  a proposal executes only after its timelock and with its threshold met.
- Grants: only owners change their grants; what ``hasAccess`` says always equals a model.
- Links: only the linking forwarder changes or removes a house B/L link; the chain always equals
  a model of the links.

The default run is small (a few seconds per machine); ``-m slow`` runs longer sequences.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from web3.exceptions import ContractLogicError

from contracts import ROLES, ProposalKind
from contracts.cargo import EVENT_TYPES, CargoEventInput, encode_record_call, subject_key
from tests.support.deployment import TIMELOCK, Deployment, reset_port

FAILED = (TransactionFailed, ContractLogicError)
ADD_VALIDATOR, REMOVE_VALIDATOR = ProposalKind.ADD_VALIDATOR, ProposalKind.REMOVE_VALIDATOR
SUSPEND = ProposalKind.SUSPEND_MEMBER
ORG = st.integers(min_value=1, max_value=10)

QUICK = settings(
    max_examples=6, stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck)
)
LONG = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)


def attempt(port: Deployment, fn: Any, sender: str) -> bool:
    """Send a transaction; return whether it succeeded (a revert is an allowed outcome)."""
    try:
        port.transact(fn, sender)
    except FAILED:
        return False
    return True


# --- governance --------------------------------------------------------------------------


class Governance(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.port = reset_port()
        self.c = self.port.Consortium.functions
        self.proposals: list[int] = []

    def _propose(self, proposer: int, kind: int, org: int, account: str) -> None:
        fn = self.c.propose(kind, org, account, 0, "", b"\x00" * 32)
        if attempt(self.port, fn, self.port.accounts[proposer]):
            self.proposals.append(int(self.c.proposal_count().call()))

    @rule(proposer=ORG, org=ORG)
    def propose_add_validator(self, proposer: int, org: int) -> None:
        self._propose(proposer, ADD_VALIDATOR, org, self.port.accounts[org])

    @rule(proposer=ORG, index=st.integers(min_value=0, max_value=15))
    def propose_remove_validator(self, proposer: int, index: int) -> None:
        validators = self.port.view("Consortium", "getValidators")
        self._propose(proposer, REMOVE_VALIDATOR, 0, validators[index % len(validators)])

    @rule(proposer=ORG, org=ORG)
    def propose_suspend(self, proposer: int, org: int) -> None:
        self._propose(proposer, SUSPEND, org, "0x" + "00" * 20)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), voters=st.lists(ORG, min_size=1, max_size=10, unique=True))
    def vote(self, data: st.DataObject, voters: list[int]) -> None:
        pid = data.draw(st.sampled_from(self.proposals))
        for voter in voters:
            attempt(self.port, self.c.vote(pid), self.port.accounts[voter])

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), vetoer=ORG)
    def veto(self, data: st.DataObject, vetoer: int) -> None:
        attempt(
            self.port,
            self.c.veto(data.draw(st.sampled_from(self.proposals))),
            self.port.accounts[vetoer],
        )

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), by=ORG, wait=st.booleans())
    def execute(self, data: st.DataObject, by: int, wait: bool) -> None:
        if wait:
            self.port.advance(TIMELOCK)
        self._execute_checked(data.draw(st.sampled_from(self.proposals)), by)

    @rule(
        kind=st.sampled_from([ADD_VALIDATOR, REMOVE_VALIDATOR, SUSPEND]),
        org=ORG,
        index=st.integers(min_value=0, max_value=15),
        voters=st.lists(ORG, min_size=3, max_size=10, unique=True),
        by=ORG,
    )
    def decide(self, kind: int, org: int, index: int, voters: list[int], by: int) -> None:
        """A whole decision in one step: propose, vote, wait out the timelock, execute."""
        validators = self.port.view("Consortium", "getValidators")
        account = self.port.accounts[org] if kind == ADD_VALIDATOR else "0x" + "00" * 20
        if kind == REMOVE_VALIDATOR:
            account = validators[index % len(validators)]
        before = int(self.c.proposal_count().call())
        self._propose(voters[0], kind, org, account)
        if int(self.c.proposal_count().call()) == before:
            return
        pid = before + 1
        for voter in voters[1:]:
            attempt(self.port, self.c.vote(pid), self.port.accounts[voter])
        self.port.advance(TIMELOCK)
        self._execute_checked(pid, by)

    def _execute_checked(self, pid: int, by: int) -> None:
        before = self.port.view("Consortium", "proposal", pid)
        kind, status, passed_at, voters = before[0], before[1], before[9], before[10]
        orgs = {o: self.port.view("Consortium", "organisation", o) for o in range(1, 11)}
        if attempt(self.port, self.c.execute(pid), self.port.accounts[by]):
            event(f"executed kind {kind}")
            # Executed only when open, after the timelock, with the threshold met now.
            assert status == 1 and passed_at != 0
            assert self.port.now() >= passed_at + TIMELOCK
            if kind in (ADD_VALIDATOR, REMOVE_VALIDATOR):
                running = [o for o, rec in orgs.items() if rec[3] and rec[4] > 0]
                yes = [v for v in voters if v in running]
                assert 3 * len(yes) > 2 * len(running)
            else:
                active = [o for o, rec in orgs.items() if rec[3]]
                assert 2 * len([v for v in voters if v in active]) > len(active)

    @invariant()
    def validator_set_is_safe(self) -> None:
        view = self.port.view
        validators = view("Consortium", "getValidators")
        n = len(validators)
        assert n >= 4
        f = (n - 1) // 3
        running: dict[int, int] = {}
        for v in validators:
            org, roles = view("Consortium", "memberOf", v)  # (0, 0) unless an active member's
            assert org != 0
            running[org] = running.get(org, 0) + 1
        for org, count in running.items():
            assert count <= max(f, 1)
            assert view("Consortium", "organisation", org)[4] == count


# --- grants ------------------------------------------------------------------------------

OWNERS = [2, 3, 5]
READERS = [2, 3, 5, 6]
SUBJECTS = [subject_key("CSQU3054383"), subject_key("OOLU1234567")]
NEAR, FAR, WAIT = 500, 10**6, 2000


class Grants(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.port = reset_port()
        self.g = self.port.AccessGrants.functions
        # One event each by the terminal (2) and the carrier (3).
        self.events: dict[int, int] = {}
        for org, kind in ((2, "TERMINAL.DISC"), (3, "SHIPMENT.ISSU")):
            e = CargoEventInput(
                subject=SUBJECTS[0], event_type=EVENT_TYPES[kind], classifier=3, event_time=1
            )
            self.port.send(
                self.port.CargoLedger.address, encode_record_call([e]), self.port.accounts[org]
            )
            self.events[int(self.port.CargoLedger.functions.batch_count().call()) << 16] = org
        self.targets = [(1, s) for s in SUBJECTS] + [
            (2, eid.to_bytes(32, "big")) for eid in self.events
        ]
        self.model: dict[tuple[int, int, bytes, int], int] = {}

    def _check(self, owner: int, scope: int, target: bytes, reader: int) -> None:
        now = self.port.now()
        expiry = self.model.get((owner, scope, target, reader))
        if expiry is not None and expiry and abs(expiry - now) < 60:
            return  # too close to call between the latest and the pending block
        expected = expiry is not None and (expiry == 0 or expiry > now)
        assert self.port.view("AccessGrants", "hasAccess", owner, scope, target, reader) == expected

    @rule(
        owner=st.sampled_from(OWNERS),
        t=st.integers(0, 3),
        reader=st.sampled_from(READERS),
        expiry=st.sampled_from([0, NEAR, FAR]),
    )
    def grant(self, owner: int, t: int, reader: int, expiry: int) -> None:
        scope, target = self.targets[t]
        absolute = 0 if expiry == 0 else self.port.now() + expiry
        ok = attempt(
            self.port,
            self.g.grant(scope, target, reader, b"\x01" * 92, absolute),
            self.port.accounts[owner],
        )
        owns = scope == 1 or self.events[int.from_bytes(target, "big")] == owner
        assert ok == (owns and reader != owner)
        if ok:
            self.model[(owner, scope, target, reader)] = absolute
        # Whoever called, every owner's grant on this target and reader is as modelled.
        for o in OWNERS:
            self._check(o, scope, target, reader)

    @rule(caller=st.sampled_from(READERS), t=st.integers(0, 3), reader=st.sampled_from(READERS))
    def revoke(self, caller: int, t: int, reader: int) -> None:
        scope, target = self.targets[t]
        key = (caller, scope, target, reader)
        ok = attempt(self.port, self.g.revoke(scope, target, reader), self.port.accounts[caller])
        # Revoke only ever reaches the caller's own grant; the owners' grants stay.
        assert ok == (key in self.model)
        self.model.pop(key, None)
        for o in OWNERS:
            self._check(o, scope, target, reader)

    @rule()
    def wait(self) -> None:
        self.port.advance(WAIT)
        self.port.tester.mine_blocks(1)

    def teardown(self) -> None:
        # Every grant in the universe, once per run (the rules check what they touch).
        for owner in OWNERS:
            for scope, target in self.targets:
                for reader in READERS:
                    self._check(owner, scope, target, reader)


# --- house B/L links ---------------------------------------------------------------------

MASTERS = [subject_key("OOLU2104567890"), subject_key("OOLU2104567891")]
CONTAINERS = {
    MASTERS[0]: sorted(subject_key(f"CSQU{i:07d}") for i in range(4)),
    MASTERS[1]: sorted(subject_key(f"TGHU{i:07d}") for i in range(2)),
}
HOUSES = [subject_key(f"PRLHKG{i:06d}") for i in range(3)]
CALLERS = [5, 6, 3]  # two forwarders and the carrier


class Links(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.port = reset_port()
        self.b = self.port.BillOfLading.functions
        for master, containers in CONTAINERS.items():
            self.port.transact(self.b.registerMaster(master, containers), self.port.accounts[3])
        self.model: dict[bytes, tuple[int, bytes, list[bytes]]] = {}

    def _containers(self, master: bytes, picks: list[int], foreign: bool) -> list[bytes]:
        own = CONTAINERS[master]
        chosen = sorted({own[i % len(own)] for i in picks})
        if foreign:  # a container of the other master B/L: must be refused
            other = MASTERS[1] if master == MASTERS[0] else MASTERS[0]
            chosen = sorted(set(chosen) | {CONTAINERS[other][0]})
        return chosen

    @rule(
        h=st.integers(0, 2),
        caller=st.sampled_from(CALLERS),
        m=st.integers(0, 1),
        picks=st.lists(st.integers(0, 3), max_size=4),
        foreign=st.booleans(),
    )
    def link(self, h: int, caller: int, m: int, picks: list[int], foreign: bool) -> None:
        house, master = HOUSES[h], MASTERS[m]
        containers = self._containers(master, picks, foreign)
        ok = attempt(
            self.port, self.b.linkHouse(house, master, containers), self.port.accounts[caller]
        )
        assert ok == (house not in self.model and caller != 3 and not foreign)
        if ok:
            self.model[house] = (caller, master, containers)

    @rule(
        h=st.integers(0, 2),
        caller=st.sampled_from(CALLERS),
        m=st.integers(0, 1),
        picks=st.lists(st.integers(0, 3), max_size=4),
        foreign=st.booleans(),
    )
    def correct(self, h: int, caller: int, m: int, picks: list[int], foreign: bool) -> None:
        house, master = HOUSES[h], MASTERS[m]
        containers = self._containers(master, picks, foreign)
        ok = attempt(
            self.port, self.b.correctHouse(house, master, containers), self.port.accounts[caller]
        )
        linked_by = self.model.get(house, (0,))[0]
        assert ok == (linked_by == caller and not foreign)
        if ok:
            self.model[house] = (caller, master, containers)

    @rule(h=st.integers(0, 2), caller=st.sampled_from(CALLERS))
    def unlink(self, h: int, caller: int) -> None:
        house = HOUSES[h]
        ok = attempt(self.port, self.b.unlinkHouse(house), self.port.accounts[caller])
        assert ok == (self.model.get(house, (0,))[0] == caller)
        if ok:
            del self.model[house]

    @invariant()
    def links_match_model(self) -> None:
        for house in HOUSES:
            forwarder, master, containers = self.port.view("BillOfLading", "house", house)
            expected = self.model.get(house, (0, b"\x00" * 32, []))
            assert (forwarder, master, list(containers)) == expected
        for master in MASTERS:
            linked = {h for h, (_, m, _) in self.model.items() if m == master}
            assert set(self.port.view("BillOfLading", "housesOf", master)) == linked


TestGovernance = Governance.TestCase
TestGovernance.settings = settings(QUICK, max_examples=12)
TestGrants = Grants.TestCase
TestGrants.settings = QUICK
TestLinks = Links.TestCase
TestLinks.settings = QUICK


@pytest.mark.slow
@pytest.mark.parametrize("machine", [Governance, Grants, Links], ids=lambda m: m.__name__)
def test_long_sequences(machine: type[RuleBasedStateMachine]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=LONG)


def test_roles_used_here() -> None:
    # The machines assume the test port's roles: 3 is the only carrier, 5 and 6 forwarders.
    port = reset_port()
    assert port.Consortium.functions.rolesOf(3).call() == ROLES["carrier"]
    assert port.Consortium.functions.rolesOf(6).call() == ROLES["forwarder"]
