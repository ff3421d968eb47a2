"""Declarations: filing by declarants, status history posted only by the bound customs."""

from __future__ import annotations

from contracts.cargo import subject_key
from tests.support.deployment import Deployment, reverts

HK, CN = 1, 2
FILED, ACCEPTED, QUERIED, HELD, INSPECTION, RELEASED, REJECTED = range(1, 8)
DECL = subject_key("HKDEC2026112400017")
DOC = b"\x0d" * 32
NOTE = b"\x0e" * 32


def file(port: Deployment, org: int = 5, authority: int = HK) -> None:
    port.transact(port.Declarations.functions.file(DECL, authority, DOC), port.accounts[org])


def test_bind_authority(port: Deployment) -> None:
    d = port.Declarations.functions
    r = port.transact(d.bindAuthority(HK), port.accounts[4])
    assert port.events(r, "Declarations", "AuthorityBound") == [{"authority": HK, "org": 4}]
    assert d.authority_org(HK).call() == 4
    with reverts("declarations: authority already bound"):
        port.transact(d.bindAuthority(HK), port.accounts[10])
    with reverts("declarations: caller is not customs"):
        port.transact(d.bindAuthority(CN), port.accounts[5])
    with reverts("declarations: unknown authority"):
        port.transact(d.bindAuthority(3), port.accounts[10])
    assert d.consortium().call() == port.Consortium.address


def test_file(port: Deployment) -> None:
    d = port.Declarations.functions
    r = port.transact(d.file(DECL, HK, DOC), port.accounts[5])
    assert port.events(r, "Declarations", "DeclarationFiled") == [
        {"declaration": DECL, "declarant": 5, "authority": HK, "document_hash": DOC}
    ]
    assert port.events(r, "Declarations", "StatusPosted") == [
        {"declaration": DECL, "org": 5, "status": FILED, "note_hash": DOC}
    ]
    declarant, authority, doc, status, filed_at = d.declarationOf(DECL).call()
    assert (declarant, authority, doc, status, filed_at) == (5, HK, DOC, FILED, port.now())
    assert [tuple(e)[:3] for e in d.historyOf(DECL).call()] == [(FILED, 5, DOC)]


def test_file_refusals(port: Deployment) -> None:
    d = port.Declarations.functions
    with reverts("declarations: caller may not file declarations"):
        port.transact(d.file(DECL, HK, DOC), port.accounts[2])
    with reverts("declarations: caller may not file declarations"):
        port.transact(d.file(DECL, HK, DOC), port.accounts[4])
    with reverts("declarations: caller may not file declarations"):
        port.transact(d.file(DECL, HK, DOC), port.spare[0])
    with reverts("declarations: unknown authority"):
        port.transact(d.file(DECL, 0, DOC), port.accounts[5])
    with reverts("declarations: empty reference"):
        port.transact(d.file(b"\x00" * 32, HK, DOC), port.accounts[5])
    with reverts("declarations: empty document hash"):
        port.transact(d.file(DECL, HK, b"\x00" * 32), port.accounts[5])
    file(port)
    with reverts("declarations: already filed"):
        file(port, org=3)


def test_status_history(port: Deployment) -> None:
    d = port.Declarations.functions
    port.transact(d.bindAuthority(HK), port.accounts[4])
    file(port, org=8)
    for status in (ACCEPTED, INSPECTION, RELEASED):
        r = port.transact(d.postStatus(DECL, status, NOTE), port.accounts[4])
        assert port.events(r, "Declarations", "StatusPosted") == [
            {"declaration": DECL, "org": 4, "status": status, "note_hash": NOTE}
        ]
    assert d.declarationOf(DECL).call()[3] == RELEASED
    assert [e[0] for e in d.historyOf(DECL).call()] == [FILED, ACCEPTED, INSPECTION, RELEASED]
    assert [e[1] for e in d.historyOf(DECL).call()] == [8, 4, 4, 4]


def test_status_refusals(port: Deployment) -> None:
    d = port.Declarations.functions
    port.transact(d.bindAuthority(HK), port.accounts[4])
    port.transact(d.bindAuthority(CN), port.accounts[10])
    file(port)
    with reverts("declarations: caller is not customs"):
        port.transact(d.postStatus(DECL, RELEASED, NOTE), port.accounts[5])
    with reverts("declarations: caller is not customs"):
        port.transact(d.postStatus(DECL, RELEASED, NOTE), port.accounts[2])
    with reverts("declarations: caller is not the declaration's authority"):
        port.transact(d.postStatus(DECL, RELEASED, NOTE), port.accounts[10])
    with reverts("declarations: unknown declaration"):
        port.transact(d.postStatus(NOTE, RELEASED, NOTE), port.accounts[4])
    for status in (0, FILED, 8):
        with reverts("declarations: invalid status"):
            port.transact(d.postStatus(DECL, status, NOTE), port.accounts[4])


def test_history_is_bounded(port: Deployment) -> None:
    d = port.Declarations.functions
    port.transact(d.bindAuthority(HK), port.accounts[4])
    file(port)
    for _ in range(31):
        port.transact(d.postStatus(DECL, QUERIED, NOTE), port.accounts[4])
    with reverts("declarations: history is full"):
        port.transact(d.postStatus(DECL, HELD, NOTE), port.accounts[4])
    assert len(d.historyOf(DECL).call()) == 32


def test_unbound_authority_refuses_everyone(port: Deployment) -> None:
    file(port, authority=CN)
    with reverts("declarations: caller is not the declaration's authority"):
        port.transact(
            port.Declarations.functions.postStatus(DECL, RELEASED, NOTE), port.accounts[4]
        )
