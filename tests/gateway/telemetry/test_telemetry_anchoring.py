"""Anchoring telemetry: pure batching, roots and proofs by the contract's rule, restart safety.

The restart tests run the real store and the real write-path outbox (SQLite files in a temporary
folder) with no node: batches are formed and their anchor calls accepted into the outbox, where
they wait; the process "dies" between any two steps by closing both files and opening them
again. Settlement against a chain is tested end to end in ``test_telemetry_e2e.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_abi import decode as abi_decode
from eth_utils.crypto import keccak

from contracts import abi, anchors
from gateway.config import ConfigError, GatewayConfig
from gateway.events.model import Visibility
from gateway.telemetry.anchoring import Anchorer, anchor_call, idempotency_key, plan
from gateway.telemetry.model import Reading
from gateway.telemetry.records import Unanchored
from gateway.telemetry.store import TelemetryStore
from gateway.writepath.outbox import Outbox
from proofs.checks import anchor_merkle_root
from proofs.disclosure import anchor_item
from tests.support import telemetry as tt

T0 = 1_790_000_000
SECRET = bytes(range(32, 64))
BOX = tt.container("ANCU", 200001)
ANCHOR_SELECTOR = keccak(b"anchor(uint8,bytes32,uint256,uint256,uint256)")[:4]
REEFER, AIS, TRUCK = anchors.KINDS["REEFER"], anchors.KINDS["AIS"], anchors.KINDS["TRUCK_GPS"]


def _waiting(*spec: tuple[int, int]) -> list[Unanchored]:
    """Readings waiting for a batch: (org, kind) each, ids from 1."""
    return [Unanchored(i, org, kind, T0 + 10 * i, keccak(i.to_bytes(4, "big")))
            for i, (org, kind) in enumerate(spec, start=1)]


# -- pure batching ------------------------------------------------------------------------------
def test_batches_group_per_owner_and_kind_in_id_order_and_are_bounded() -> None:
    waiting = _waiting((1, REEFER), (2, TRUCK), (1, AIS), (1, REEFER), (1, REEFER),
                       (2, TRUCK), (1, REEFER))
    batches = plan(list(reversed(waiting)), max_size=2, max_batches=10)
    assert [(b.org_id, b.kind, b.ids) for b in batches] == [
        (1, REEFER, (1, 4)), (2, TRUCK, (2, 6)), (1, AIS, (3,)), (1, REEFER, (5, 7)),
    ]
    first = batches[0]
    assert (first.start, first.end) == (T0 + 10, T0 + 40)
    assert first.hashes == (waiting[0].reading_hash, waiting[3].reading_hash)
    assert first.root == anchors.merkle_root(list(first.hashes))
    # bounded: the oldest batches first
    assert [b.ids for b in plan(waiting, max_size=2, max_batches=2)] == [(1, 4), (2, 6)]
    assert plan([], 10, 10) == []
    with pytest.raises(ValueError, match="at least one"):
        plan(waiting, 0, 1)


def test_every_reading_of_a_batch_is_proven_under_its_root_and_a_forged_one_is_not(
    tmp_path: Path,
) -> None:
    store = TelemetryStore(tmp_path / "t.sqlite", secret=SECRET)
    reefer = tt.reefer_readings(BOX, T0, 13, excursion=range(4, 6))
    store.add(3, reefer, Visibility(), owner=2)
    (batch,) = plan(store.unanchored(100), max_size=100, max_batches=10)
    hashes = [keccak(r.canonical_bytes()) for r in reefer]  # computed from the readings alone
    assert list(batch.hashes) == hashes
    assert batch.root == anchors.merkle_root(hashes)
    for index, reading in enumerate(reefer):
        item = anchor_item(hashes, index, reading=reading.canonical_bytes())
        siblings = [bytes.fromhex(s[2:]) for s in item["merkleProof"]]
        assert anchor_merkle_root(keccak(bytes.fromhex(item["reading"][2:])), siblings) == batch.root
        assert anchors.verify(batch.root, hashes[index], siblings)
    forged = dataclasses.replace(reefer[5], values={**reefer[5].values, "temperature": -18.0})
    siblings = [bytes.fromhex(s[2:]) for s in anchor_item(hashes, 5)["merkleProof"]]
    assert anchor_merkle_root(keccak(forged.canonical_bytes()), siblings) != batch.root
    store.close()


def test_an_anchor_call_is_the_contracts_anchor_of_the_batch(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "t.sqlite", secret=SECRET)
    store.add(3, tt.truck_readings("KV4321", T0, 5), Visibility(), owner=7)
    (batch,) = plan(store.unanchored(10), 10, 10)
    (record,) = store.record_batches(
        [(batch.org_id, batch.kind, batch.root, batch.start, batch.end, batch.ids)],
        idempotency_key)
    op = anchor_call(record)
    assert op.kind == "call" and op.to == abi.address("Anchors")
    assert op.idempotency_key == f"telemetry-anchor:{record.batch_id}:{batch.root.hex()}"
    assert op.data[:4] == ANCHOR_SELECTOR
    decoded = abi_decode(["uint8", "bytes32", "uint256", "uint256", "uint256"], op.data[4:])
    assert decoded == (TRUCK, batch.root, 5, T0, T0 + 240)
    store.close()


# -- the anchorer, killed between steps ----------------------------------------------------------
@dataclasses.dataclass
class Files:
    folder: Path
    store: TelemetryStore
    outbox: Outbox

    def anchorer(self, **kw: int) -> Anchorer:
        return Anchorer(self.store, self.outbox, None, window=3600, **kw)

    def restart(self) -> None:
        """The process dies: both files are closed and opened again."""
        self.store.close()
        self.outbox.close()
        self.store = TelemetryStore(self.folder / "telemetry.sqlite", secret=SECRET)
        self.outbox = Outbox(self.folder / "outbox.sqlite", body_key=SECRET)

    def anchor_ops(self, org_id: int) -> list[tuple[str, tuple[int, bytes, int, int, int]]]:
        out = []
        for op in self.outbox.pending(org_id, 1000):
            assert op.kind == "call" and op.data[:4] == ANCHOR_SELECTOR
            args = abi_decode(["uint8", "bytes32", "uint256", "uint256", "uint256"], op.data[4:])
            out.append((op.idempotency_key, args))
        return out


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[Files]:
    f = Files(tmp_path, TelemetryStore(tmp_path / "telemetry.sqlite", secret=SECRET),
              Outbox(tmp_path / "outbox.sqlite", body_key=SECRET))
    yield f
    f.store.close()
    f.outbox.close()


def _batch_of(store: TelemetryStore, reading_id: int) -> tuple[int, int]:
    stored = store.reading(reading_id)
    assert stored is not None and stored.anchor is not None
    return stored.anchor.batch_id, stored.anchor.index


async def test_a_restart_after_forming_submits_the_same_batches_once(files: Files) -> None:
    files.store.add(3, tt.reefer_readings(BOX, T0, 9), Visibility(), owner=2)
    files.store.add(3, tt.gpsd_readings(T0), Visibility(), owner=2)
    files.store.add(5, tt.truck_readings("KV4321", T0, 3), Visibility(), owner=7)
    formed = await files.anchorer(batch_max=4).form()
    assert [(b.org_id, b.kind, b.count) for b in formed] == [
        (3, REEFER, 4), (3, REEFER, 4), (3, REEFER, 1), (3, AIS, 4), (3, AIS, 4),
        (5, TRUCK, 3)]
    every = range(1, 9 + 12 + 3 + 1)
    static = [i for i in every if files.store.reading(i).reading.type == "ais-static"]
    assert len(static) == 4  # types 5, 19 (its static part), 24 A and B
    placed = {i: _batch_of(files.store, i) for i in every if i not in static}
    files.restart()  # died before submitting
    again = files.anchorer(batch_max=4)
    assert await again.form() == []  # nothing is batched twice
    assert {i: _batch_of(files.store, i) for i in placed} == placed
    assert await again.submit() == 6
    assert files.outbox.counts() == {"accepted": 6}
    assert await again.submit() == 0
    assert files.store.batch_counts() == {"submitted": 6}
    expected = [(b.idempotency_key, (b.kind, b.root, b.count, b.start, b.end))
                for b in formed if b.org_id == 3]
    assert files.anchor_ops(3) == expected
    assert [k for k, _ in files.anchor_ops(5)] == [formed[-1].idempotency_key]
    # static AIS data is stored, never batched
    assert files.store.counts()["unbatched"] == 0
    assert all(files.store.reading(i).anchor is None for i in static)


async def test_a_restart_between_the_outbox_and_the_batch_status_sends_nothing_twice(
    files: Files,
) -> None:
    files.store.add(3, tt.reefer_readings(BOX, T0, 6), Visibility(), owner=2)
    (formed,) = await files.anchorer().form()
    # the first half of submit: the call is in the outbox ...
    (receipt,) = files.outbox.accept(3, [anchor_call(formed)])
    files.restart()  # ... and the process died before the batch was marked submitted
    anchorer = files.anchorer()
    assert files.store.batches("formed") == [dataclasses.replace(formed)]
    assert await anchorer.submit() == 1
    assert files.outbox.counts() == {"accepted": 1}
    assert files.outbox.status(3, formed.idempotency_key) == receipt
    assert [b.batch_id for b in files.store.batches("submitted")] == [formed.batch_id]
    # nothing on chain yet: settling leaves it submitted
    assert await anchorer.settle() == 0
    assert files.store.batch_counts() == {"submitted": 1}


async def test_new_readings_go_into_new_batches_only(files: Files) -> None:
    readings = tt.reefer_readings(BOX, T0, 10)
    files.store.add(3, readings[:4], Visibility(), owner=2)
    (first,) = await files.anchorer().form()
    files.store.add(3, readings, Visibility(), owner=2)  # 4 duplicates, 6 new
    (second,) = await files.anchorer().form()
    assert (first.count, second.count) == (4, 6)
    assert files.store.batch_hashes(first.batch_id) == [
        keccak(r.canonical_bytes()) for r in readings[:4]]
    assert files.store.batch_hashes(second.batch_id) == [
        keccak(r.canonical_bytes()) for r in readings[4:]]


async def test_a_pass_is_bounded_and_the_backlog_drains_over_passes(files: Files) -> None:
    files.store.add(3, tt.reefer_readings(BOX, T0, 50), Visibility(), owner=2)
    anchorer = files.anchorer(batch_max=5, max_batches=3)
    sizes = []
    for _ in range(5):
        formed = await anchorer.form()
        sizes.append([b.count for b in formed])
        assert await anchorer.submit() == len(formed)
    assert sizes == [[5, 5, 5], [5, 5, 5], [5, 5, 5], [5], []]
    assert files.outbox.counts() == {"accepted": 10}


async def test_a_failed_anchor_call_fails_its_batch_and_keeps_its_readings(files: Files) -> None:
    readings = tt.truck_readings("KV4321", T0, 3)
    files.store.add(3, readings, Visibility(), owner=2)
    anchorer = files.anchorer()
    await anchorer.step()
    (op,) = files.outbox.pending(3, 10)
    files.outbox.fail_unsent({op.op_id: "anchors: caller may not anchor this kind"})
    assert await anchorer.settle() == 1
    (failed,) = files.store.batches("failed")
    assert failed.error == "anchors: caller may not anchor this kind"
    stored = files.store.reading(1)
    assert stored is not None and stored.reading == readings[0]
    assert stored.anchor is not None and stored.anchor.status == "failed"
    await anchorer.step()  # failed readings are not batched again
    assert files.store.batch_counts() == {"failed": 1}


async def test_an_outbox_that_lost_a_submitted_call_gets_it_again(files: Files,
                                                                   tmp_path: Path) -> None:
    files.store.add(3, [Reading("reefer", T0, None, {"temperature": 4.0})], Visibility())
    anchorer = files.anchorer()
    await anchorer.step()
    files.outbox.close()
    (tmp_path / "outbox.sqlite").unlink()
    files.outbox = Outbox(tmp_path / "outbox.sqlite", body_key=SECRET)
    anchorer = files.anchorer()
    await anchorer.settle()
    (submitted,) = files.store.batches("submitted")
    assert [k for k, _ in files.anchor_ops(3)] == [submitted.idempotency_key]


def test_the_window_and_batch_size_are_checked_settings(tmp_path: Path) -> None:
    loaded = GatewayConfig.from_dict({"data_dir": str(tmp_path), "telemetry_window_seconds": 2.5,
                                      "telemetry_batch_max": 1024})
    assert (loaded.telemetry_window_seconds, loaded.telemetry_batch_max) == (2.5, 1024)
    assert GatewayConfig(data_dir=tmp_path).telemetry_window_seconds == 10.0
    for bad in ({"telemetry_window_seconds": 0}, {"telemetry_window_seconds": "10"},
                {"telemetry_batch_max": 0}, {"telemetry_batch_max": 2.0}):
        with pytest.raises(ConfigError, match="telemetry_"):
            GatewayConfig.from_dict({"data_dir": str(tmp_path), **bad})
