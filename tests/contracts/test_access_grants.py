"""AccessGrants: owners grant and revoke readers, expiry, reference-readable records."""

from __future__ import annotations

from contracts.cargo import EVENT_TYPES, CargoEventInput, encode_record_call, subject_key
from tests.support.deployment import Deployment, reverts

SUBJECT, EVENT = 1, 2
CONTAINER = subject_key("CSQU3054383")
WRAPPED = b"\x07" * 92


def publish(port: Deployment, org: int = 2) -> int:
    """Record one terminal event by ``org``; return its id."""
    e = CargoEventInput(
        subject=CONTAINER,
        event_type=EVENT_TYPES["TERMINAL.DISC"],
        classifier=3,
        event_time=1_795_000_000,
    )
    port.send(port.CargoLedger.address, encode_record_call([e]), port.accounts[org])
    return int(port.CargoLedger.functions.batch_count().call()) << 16


def eid(event_id: int) -> bytes:
    return event_id.to_bytes(32, "big")


def test_grant_and_revoke_subject(port: Deployment) -> None:
    g = port.AccessGrants.functions
    r = port.transact(g.grant(SUBJECT, CONTAINER, 5, WRAPPED, 0), port.accounts[2])
    assert port.events(r, "AccessGrants", "AccessGranted") == [
        {
            "owner": 2,
            "reader": 5,
            "target": CONTAINER,
            "scope": SUBJECT,
            "expiry": 0,
            "wrapped_key": WRAPPED,
        }
    ]
    assert g.hasAccess(2, SUBJECT, CONTAINER, 5).call()
    assert not g.hasAccess(2, SUBJECT, CONTAINER, 6).call()
    assert not g.hasAccess(3, SUBJECT, CONTAINER, 5).call()
    wrapped, expiry, granted_at, active = g.grantOf(2, SUBJECT, CONTAINER, 5).call()
    assert (wrapped, expiry, active) == (WRAPPED, 0, True) and granted_at == port.now()
    r = port.transact(g.revoke(SUBJECT, CONTAINER, 5), port.accounts[2])
    assert port.events(r, "AccessGrants", "AccessRevoked") == [
        {"owner": 2, "reader": 5, "target": CONTAINER, "scope": SUBJECT}
    ]
    assert not g.hasAccess(2, SUBJECT, CONTAINER, 5).call()
    assert g.grantOf(2, SUBJECT, CONTAINER, 5).call()[3] is False
    assert g.consortium().call() == port.Consortium.address
    assert g.cargo_ledger().call() == port.CargoLedger.address


def test_only_the_owner_revokes(port: Deployment) -> None:
    g = port.AccessGrants.functions
    port.transact(g.grant(SUBJECT, CONTAINER, 5, WRAPPED, 0), port.accounts[2])
    # Another organisation's revoke names its own (non-existent) grant, never the owner's.
    with reverts("grants: no such grant"):
        port.transact(g.revoke(SUBJECT, CONTAINER, 5), port.accounts[3])
    with reverts("grants: no such grant"):
        port.transact(g.revoke(SUBJECT, CONTAINER, 5), port.accounts[5])
    with reverts("grants: caller is not a member"):
        port.transact(g.revoke(SUBJECT, CONTAINER, 5), port.spare[0])
    assert g.hasAccess(2, SUBJECT, CONTAINER, 5).call()


def test_grant_refusals(port: Deployment) -> None:
    g = port.AccessGrants.functions
    with reverts("grants: caller is not a member"):
        port.transact(g.grant(SUBJECT, CONTAINER, 5, WRAPPED, 0), port.spare[0])
    with reverts("grants: owner already reads its own records"):
        port.transact(g.grant(SUBJECT, CONTAINER, 2, WRAPPED, 0), port.accounts[2])
    with reverts("grants: reader is not an active member"):
        port.transact(g.grant(SUBJECT, CONTAINER, 99, WRAPPED, 0), port.accounts[2])
    with reverts("grants: empty wrapped key"):
        port.transact(g.grant(SUBJECT, CONTAINER, 5, b"", 0), port.accounts[2])
    with reverts("grants: expiry is in the past"):
        port.transact(g.grant(SUBJECT, CONTAINER, 5, WRAPPED, port.now() - 1), port.accounts[2])
    with reverts("grants: unknown scope"):
        port.transact(g.grant(3, CONTAINER, 5, WRAPPED, 0), port.accounts[2])


def test_event_grants_need_the_publisher(port: Deployment) -> None:
    g = port.AccessGrants.functions
    event_id = publish(port, org=2)
    with reverts("grants: caller does not own the record"):
        port.transact(g.grant(EVENT, eid(event_id), 5, WRAPPED, 0), port.accounts[3])
    with reverts("grants: caller does not own the record"):
        port.transact(g.grant(EVENT, eid(event_id + 1), 5, WRAPPED, 0), port.accounts[2])
    port.transact(g.grant(EVENT, eid(event_id), 5, WRAPPED, 0), port.accounts[2])
    assert g.hasAccess(2, EVENT, eid(event_id), 5).call()
    assert g.canRead(5, event_id, CONTAINER).call()
    assert not g.canRead(6, event_id, CONTAINER).call()
    assert g.canRead(2, event_id, CONTAINER).call()  # the publisher
    assert not g.canRead(2, event_id + 1, CONTAINER).call()  # no such event


def test_subject_grant_covers_the_owners_events(port: Deployment) -> None:
    g = port.AccessGrants.functions
    event_id = publish(port, org=2)
    port.transact(g.grant(SUBJECT, CONTAINER, 6, WRAPPED, 0), port.accounts[2])
    assert g.canRead(6, event_id, CONTAINER).call()
    assert not g.canRead(6, event_id, subject_key("OTHER")).call()
    # A subject grant by another organisation does not cover the terminal's event.
    port.transact(g.grant(SUBJECT, CONTAINER, 7, WRAPPED, 0), port.accounts[3])
    assert not g.canRead(7, event_id, CONTAINER).call()


def test_grant_expiry(port: Deployment) -> None:
    g = port.AccessGrants.functions
    event_id = publish(port)
    expiry = port.now() + 100
    port.transact(g.grant(EVENT, eid(event_id), 5, WRAPPED, expiry), port.accounts[2])
    assert g.hasAccess(2, EVENT, eid(event_id), 5).call()
    port.advance(50)
    port.tester.mine_blocks(1)
    assert g.canRead(5, event_id, CONTAINER).call()
    port.advance(100)
    port.tester.mine_blocks(1)
    assert not g.hasAccess(2, EVENT, eid(event_id), 5).call()
    assert not g.canRead(5, event_id, CONTAINER).call()
    # Re-granting replaces the lapsed grant.
    port.transact(g.grant(EVENT, eid(event_id), 5, WRAPPED, 0), port.accounts[2])
    assert g.canRead(5, event_id, CONTAINER).call()


def test_reference_readable(port: Deployment) -> None:
    g = port.AccessGrants.functions
    event_id = publish(port)
    assert not g.isReferenceReadable(event_id).call()
    with reverts("grants: caller does not own the record"):
        port.transact(g.setReferenceReadable(event_id, True), port.accounts[3])
    r = port.transact(g.setReferenceReadable(event_id, True), port.accounts[2])
    assert port.events(r, "AccessGrants", "ReferenceReadableSet") == [
        {"event_id": event_id, "owner": 2, "readable": True}
    ]
    assert g.isReferenceReadable(event_id).call()
    assert g.canRead(9, event_id, CONTAINER).call()
    port.transact(g.setReferenceReadable(event_id, False), port.accounts[2])
    assert not g.canRead(9, event_id, CONTAINER).call()
