"""The outbox: durable, idempotent, all-or-nothing intake and per-subject key versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import errors
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.writepath.operations import Operation, _event_json, content_hash, stored_event
from gateway.writepath.outbox import Outbox


def event(n: int, *, container: str = "CSQU3054383", location: str = "HKHKG") -> CanonicalEvent:
    return CanonicalEvent(
        event_type="TERMINAL.DISC",
        classifier="ACT",
        event_time=1_767_225_600 + n,
        subject=Reference("container", container),
        location=location,
        details={"n": n},
        visibility=Visibility("named", (4,)),
    )


def op(key: str, n: int = 0, **kw: object) -> Operation:
    return Operation(key, "event", event(n, **kw))  # type: ignore[arg-type]


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def test_durable_wal_full(outbox: Outbox) -> None:
    assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_retry_with_same_content_is_a_duplicate_with_the_original_receipt(outbox: Outbox) -> None:
    first = outbox.accept(1, [op("a", 1), op("b", 2)])
    assert [r.duplicate for r in first] == [False, False]
    assert [r.status for r in first] == ["accepted", "accepted"]
    again = outbox.accept(1, [op("b", 2), op("c", 3)])
    assert again[0].duplicate and again[0].op_id == first[1].op_id
    assert not again[1].duplicate
    assert outbox.counts() == {"accepted": 3}


def test_same_key_different_content_is_a_conflict_and_accepts_nothing(outbox: Outbox) -> None:
    outbox.accept(1, [op("a", 1)])
    with pytest.raises(errors.Conflict) as caught:
        outbox.accept(1, [op("new", 5), op("a", 2)])
    assert caught.value.code == "idempotency-key-reused" and caught.value.status == 409
    assert outbox.status(1, "new") is None  # the whole list was refused
    assert outbox.counts() == {"accepted": 1}


def test_keys_are_per_organisation(outbox: Outbox) -> None:
    a = outbox.accept(1, [op("k", 1)])
    b = outbox.accept(2, [op("k", 2)])  # another organisation's key: no conflict
    assert not b[0].duplicate and b[0].op_id != a[0].op_id


def test_a_key_twice_in_one_list(outbox: Outbox) -> None:
    receipts = outbox.accept(1, [op("k", 1), op("k", 1)])
    assert receipts[0].op_id == receipts[1].op_id and receipts[1].duplicate
    with pytest.raises(errors.Conflict):
        outbox.accept(1, [op("j", 1), op("j", 2)])
    assert outbox.status(1, "j") is None


def test_summary_is_not_content(outbox: Outbox) -> None:
    call = Operation("g", "call", to="0x" + "11" * 20, data=b"\x01\x02", summary="grant")
    outbox.accept(1, [call])
    same = Operation("g", "call", to="0x" + "11" * 20, data=b"\x01\x02", summary="other words")
    assert outbox.accept(1, [same])[0].duplicate
    assert content_hash(call) == content_hash(same)
    with pytest.raises(errors.Conflict):
        outbox.accept(1, [Operation("g", "call", to="0x" + "11" * 20, data=b"\x01\x03")])


def test_acceptance_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    receipts = box.accept(7, [op(f"k{i}", i) for i in range(10)])
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    try:
        pending = again.pending(7, 100)
        assert [p.op_id for p in pending] == [r.op_id for r in receipts]
        assert pending[3].event == event(3)  # the canonical JSON round-trips
        assert again.status(7, "k9") == receipts[9]
    finally:
        again.close()


def test_revoke_bumps_the_subject_version_in_the_same_transaction(outbox: Outbox) -> None:
    subject = Reference("container", "CSQU3054383").key
    other = Reference("container", "MSCU1234566").key
    outbox.accept(1, [op("before", 1)])
    assert outbox.subject_version(1, subject) == 0
    revoke = Operation("rev", "call", to="0x" + "22" * 20, data=b"\xaa", revokes_subject=subject)
    outbox.accept(1, [revoke, op("after", 2)])
    assert outbox.subject_version(1, subject) == 1
    assert outbox.subject_version(1, other) == 0
    assert outbox.subject_version(2, subject) == 0  # per organisation
    versions = {p.idempotency_key: p.key_version for p in outbox.pending(1, 10)}
    assert versions == {"before": 0, "rev": 0, "after": 1}
    # a retried revoke is a duplicate and does not bump again
    outbox.accept(1, [revoke])
    assert outbox.subject_version(1, subject) == 1
    # a refused list does not bump either
    with pytest.raises(errors.Conflict):
        outbox.accept(1, [Operation("rev2", "call", to="0x" + "22" * 20, data=b"\xab",
                                    revokes_subject=subject), op("after", 3)])
    assert outbox.subject_version(1, subject) == 1


async def test_group_commit_isolates_a_conflicting_request(outbox: Outbox) -> None:
    outbox.accept(1, [op("taken", 1)])
    results = await asyncio.gather(
        *(outbox.accept_async(1, [op(f"g{i}", i)]) for i in range(50)),
        outbox.accept_async(1, [op("fresh", 1), op("taken", 2)]),
        return_exceptions=True,
    )
    assert all(isinstance(r, list) and not r[0].duplicate for r in results[:50])
    assert isinstance(results[50], errors.Conflict)
    assert outbox.status(1, "fresh") is None
    assert outbox.counts() == {"accepted": 51}


def test_pending_is_in_acceptance_order_per_organisation(outbox: Outbox) -> None:
    for i in range(5):
        outbox.accept(1, [op(f"a{i}", i)])
        outbox.accept(2, [op(f"b{i}", i)])
    assert [p.idempotency_key for p in outbox.pending(1, 10)] == [f"a{i}" for i in range(5)]
    assert outbox.orgs_with_work() == [1, 2]


def test_tx_lifecycle(outbox: Outbox) -> None:
    receipts = outbox.accept(1, [op(f"k{i}", i) for i in range(4)])
    ids = [r.op_id for r in receipts]
    tx = outbox.persist_tx(org_id=1, sender="0xabc", nonce=5, tx_hash="0x01", raw=b"raw",
                           kind="record", op_ids=ids[:3])
    assert outbox.status(1, "k0").status == "sent" and outbox.status(1, "k0").tx_hash == "0x01"
    assert [p.op_id for p in outbox.pending(1, 10)] == ids[3:]
    with pytest.raises(RuntimeError):  # an op can be in one live tx only
        outbox.persist_tx(org_id=1, sender="0xabc", nonce=6, tx_hash="0x02", raw=b"r2",
                          kind="record", op_ids=ids[2:])
    assert outbox.max_nonce("0xabc") == 5
    live = outbox.live_txs()
    assert [t.op_ids for t in live] == [tuple(ids[:3])] and live[0].raw == b"raw"
    done = outbox.finish_tx(tx.tx_id, status="reverted", block=9, error="boom",
                            failed={ids[0]: "cargo: x"}, requeue={ids[1]: 1, ids[2]: 1})
    assert [(r.op_id, r.status, r.error) for r in done] == [(ids[0], "failed", "cargo: x")]
    assert [p.op_id for p in outbox.pending(1, 10)] == ids[1:]
    assert outbox.pending(1, 10)[0].batch_limit == 1
    assert outbox.live_txs() == []


def test_stored_event_round_trip() -> None:
    ev = event(3)
    assert stored_event(_event_json(ev)) == ev
