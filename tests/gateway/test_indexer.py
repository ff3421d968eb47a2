"""The indexer against a real node: what it stores, restarts without gaps or duplicates,
refusal of a changed chain, rebuild equality, listeners and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.cargo import subject_key
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.nodeclient import NodeClient
from gateway.readside.indexer import ChainMismatch, Indexer, rebuild
from gateway.readside.readmodel import Cursor
from gateway.readside.store import SqliteReadModel
from tests.support import readside as rs
from tests.support.nodes import REPO_GENESIS, NodeProcess

pytestmark = pytest.mark.integration

T0 = 1_780_000_000


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A node whose chain holds a little of everything the indexer reads."""
    node = NodeProcess(tmp_path_factory.mktemp("indexer") / "node", REPO_GENESIS).start()
    try:
        chain = rs.Chain(node.url)
        c1, c2, c3 = (rs.container("PCOU", n) for n in (100001, 100002, 100003))
        mbl, hbl = "PCOL2024000123", "HFF998877"
        chain.call(rs.CARRIER, "BillOfLading", "registerMaster", subject_key(mbl),
                   [subject_key(c) for c in (c1, c2, c3)])
        chain.call(rs.FORWARDER, "BillOfLading", "linkHouse", subject_key(hbl), subject_key(mbl),
                   [subject_key(c) for c in (c1, c2)])
        ids = chain.record(rs.CARRIER, [
            rs.seal(rs.event("mbl", mbl, "SHIPMENT.ISSU", T0, related=[("container", c1)]),
                    rs.CARRIER, readers=[rs.FORWARDER], reference=True),
            rs.seal(rs.event("container", c1, "TRANSPORT.DEPA", T0 + 10), rs.CARRIER),
        ])
        ids += chain.record(rs.TERMINAL, [
            rs.seal(rs.event("container", c1, "TERMINAL.DISC", T0 + 100 + i), rs.TERMINAL,
                    readers=[rs.CARRIER])
            for i in range(5)
        ])
        retraction = chain.record(rs.TERMINAL, [
            rs.seal(rs.event("container", c1, "TERMINAL.DISC", T0 + 100, retracts=ids[2]),
                    rs.TERMINAL)
        ])
        chain.call(rs.CARRIER, "AccessGrants", "grant", 1, subject_key(c1), rs.TRADER,
                   b"\x01" * 84, 0)
        chain.call(rs.CARRIER, "AccessGrants", "grant", 1, subject_key(c2), rs.TRADER,
                   b"\x02" * 84, 0)
        chain.call(rs.CARRIER, "AccessGrants", "revoke", 1, subject_key(c2), rs.TRADER)
        chain.call(rs.CARRIER, "AccessGrants", "setReferenceReadable", ids[1], True)
        chain.call(rs.CARRIER, "AccessGrants", "setReferenceReadable", ids[0], False)
        new_key = b"\x09" * 32
        chain.call(rs.BANK, "Consortium", "setEncryptionKey", new_key)
        yield {
            "node": node, "chain": chain, "ids": ids, "retraction": retraction[0],
            "containers": (c1, c2, c3), "mbl": mbl, "hbl": hbl, "new_key": new_key,
            "head": chain.head(),
        }
    finally:
        node.stop()


async def record_one(populated: dict[str, Any], org: int, container: int, event_type: str,
                     at: int) -> tuple[list[int], int]:
    """Record one event of ``org`` about the populated chain's container number ``container``;
    its event ids and the head after it."""
    chain = populated["chain"]
    event = rs.event("container", populated["containers"][container], event_type, at)
    ids = await asyncio.to_thread(chain.record, org, [rs.seal(event, org)])
    return ids, await asyncio.to_thread(chain.head)


def test_indexes_directory_events_bills_grants_and_flags(populated: dict[str, Any], tmp_path: Path) -> None:
    async def main() -> None:
        model = SqliteReadModel(tmp_path / "rm.db")
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node)
            cursor = await indexer.catch_up()
        assert cursor.block >= populated["head"]
        # directory: genesis members (no logs) and the key change (a log, re-read at its block)
        orgs = {o.org_id: o for o in model.organisations()}
        assert len(orgs) == 13 and orgs[rs.TRADER].name.startswith("Sino Trading")
        assert orgs[rs.CARRIER].encryption_key == rs.x25519_public(rs.CARRIER)
        assert orgs[rs.BANK].encryption_key == populated["new_key"]
        assert rs.account(rs.CARRIER).address in orgs[rs.CARRIER].accounts
        # events: envelope facts, retraction, reference flags
        ids = populated["ids"]
        assert model.event_count() == len(ids) + 1
        first = model.event(ids[0])
        assert first is not None and first.publisher == rs.CARRIER
        assert first.readers == (rs.FORWARDER,) and first.subject == subject_key(populated["mbl"])
        assert not first.reference_readable  # envelope said yes, the publisher turned it off
        info = confidential.envelope_info(first.envelope)
        assert info.reference_readable
        assert not model.event(ids[1]).reference_readable  # flag set but no reference wrap
        assert model.event(ids[2]).retracted_by == populated["retraction"]
        c1, c2, c3 = populated["containers"]
        timeline = model.events_of_subjects([subject_key(c1)])
        assert [e.event_time for e in timeline] == sorted(e.event_time for e in timeline)
        assert len(timeline) == 7
        # bills of lading
        carrier, containers = model.master(subject_key(populated["mbl"]))
        assert carrier == rs.CARRIER and containers == tuple(subject_key(c) for c in (c1, c2, c3))
        house = model.house(subject_key(populated["hbl"]))
        assert house.containers == (subject_key(c1), subject_key(c2))
        assert house.forwarder == rs.FORWARDER
        assert model.masters_of_container(subject_key(c3)) == [subject_key(populated["mbl"])]
        # grants: one in force, one revoked
        g1 = model.grant(rs.CARRIER, 1, subject_key(c1), rs.TRADER)
        g2 = model.grant(rs.CARRIER, 1, subject_key(c2), rs.TRADER)
        assert g1.in_force(time.time()) and g1.wrapped_key == b"\x01" * 84
        assert not g2.active and not g2.in_force(time.time())
        assert [g.target for g in model.grants_to(rs.TRADER, [subject_key(c1), subject_key(c2)])] \
            == [subject_key(c1)]
        model.close()

    asyncio.run(main())


def test_restart_mid_way_equals_a_fresh_full_index(populated: dict[str, Any], tmp_path: Path) -> None:
    """Stop after every few small ranges (and cancel mid-range), reopen, finish: identical."""

    async def main() -> None:
        async with NodeClient([populated["node"].url]) as node:
            head = populated["head"]
            fresh = SqliteReadModel(tmp_path / "fresh.db")
            await Indexer(fresh, node).catch_up(head)
            fresh.close()

            path = tmp_path / "restarted.db"
            restarts = 0
            seen: list[int] = []
            while True:
                model = SqliteReadModel(path)
                indexer = Indexer(model, node, max_range=2)
                indexer.add_listener(lambda evs: seen.extend(e.event_id for e in evs))
                cursor = model.cursor()
                if cursor is not None and cursor.block >= head:
                    model.close()
                    break
                # a few committed ranges, then a cancellation somewhere inside the next one
                for _ in range(2):
                    result = await indexer.step(head)
                    if result is not None:
                        await indexer._notify(result)
                task = asyncio.create_task(indexer.step(head))
                await asyncio.sleep(0.005 * (restarts % 4))
                task.cancel()
                try:
                    result = await task
                    if result is not None:
                        await indexer._notify(result)
                except asyncio.CancelledError:
                    pass
                # a cancelled to_thread write may still be finishing: let it land or not
                await asyncio.sleep(0.05)
                model.close()
                restarts += 1
                assert restarts < 200
        assert restarts >= 3
        assert rs.dump(path) == rs.dump(tmp_path / "fresh.db")
        # every cargo event indexed exactly once across the restarts (listeners may miss
        # a range whose commit raced the cancellation, never see one twice)
        assert len(seen) == len(set(seen))

    asyncio.run(main())


def test_refuses_a_chain_that_changed_under_the_cursor(populated: dict[str, Any], tmp_path: Path) -> None:
    async def main() -> None:
        model = SqliteReadModel(tmp_path / "rm.db")
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node)
            await indexer.catch_up(3)
            real = model.cursor()
            model.apply([], Cursor(real.block, b"\xee" * 32), real)  # as if another chain
            with pytest.raises(ChainMismatch, match=f"block #{real.block}"):
                await indexer.step()
            # the background loop stops loudly and waiting says why
            indexer.start()
            with pytest.raises(Exception, match="indexer stopped"):
                await indexer.wait_for_block(real.block + 1, timeout=10)
            assert isinstance(indexer.failure, ChainMismatch)
            await indexer.stop()
        assert model.cursor().block_hash == b"\xee" * 32  # nothing was written after it
        model.close()

    asyncio.run(main())


def test_rebuild_equals_incremental_index_and_keeps_the_access_log(
    populated: dict[str, Any], tmp_path: Path
) -> None:
    from gateway.readside.readmodel import AccessEntry

    config = GatewayConfig(data_dir=tmp_path / "gw", node_urls=(populated["node"].url,))

    async def main() -> None:
        model = SqliteReadModel(config.path("readmodel.db"))
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node, max_range=3)
            before = await indexer.catch_up(populated["head"])
        model.log_access([AccessEntry(rs.CARRIER, rs.TRADER, populated["ids"][0], b"\x00" * 32,
                                      T0, "grant")])
        model.close()
        incremental = rs.dump(config.path("readmodel.db"))
        cursor = await rebuild(config, quiet=True)
        assert cursor.block >= before.block
        rebuilt = rs.dump(config.path("readmodel.db"))
        if cursor.block == before.block:
            assert rebuilt == incremental
        else:  # blocks were added meanwhile (heartbeats): compare everything but the cursor
            assert {k: v for k, v in rebuilt.items() if k != "cursor"} == {
                k: v for k, v in incremental.items() if k != "cursor"}
        model = SqliteReadModel(config.path("readmodel.db"))
        assert len(model.access_log(rs.CARRIER)) == 1
        model.close()

    asyncio.run(main())


def test_background_task_listeners_and_wait_for_block(populated: dict[str, Any], tmp_path: Path) -> None:
    async def main() -> None:
        model = SqliteReadModel(tmp_path / "rm.db")
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node, poll_seconds=0.05)
            got: list[int] = []

            async def listener(evs: list[Any]) -> None:
                got.extend(e.event_id for e in evs)

            indexer.add_listener(listener)
            indexer.start()
            assert await indexer.wait_for_block(populated["head"], timeout=30)
            ids, head = await record_one(populated, rs.HAULIER, 2, "LAND.PICK_UP", T0 + 500)
            assert await indexer.wait_for_block(head, timeout=30)
            assert not await indexer.wait_for_block(head + 10_000, timeout=0.2)
            await indexer.stop()
        assert ids[0] in got and len(got) == len(set(got))
        assert model.event(ids[0]).publisher == rs.HAULIER
        model.close()

    asyncio.run(main())


def test_directory_listeners_hear_changed_organisations(
    populated: dict[str, Any], tmp_path: Path
) -> None:
    """The organisations whose record a range (re)wrote reach the directory listeners with
    their new record (the submitter forgets their cached encryption keys)."""

    async def main() -> None:
        model = SqliteReadModel(tmp_path / "rm.db")
        heard: list[Any] = []
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node)
            indexer.add_directory_listener(heard.extend)
            await indexer.catch_up(populated["head"])
        model.close()
        last = {o.org_id: o for o in heard}  # the newest record of each, in order
        assert set(last) >= {rs.OPERATOR, rs.TERMINAL, rs.BANK, rs.TRADER}  # genesis members
        assert last[rs.BANK].encryption_key == populated["new_key"]  # the key change's log
        assert [o.org_id for o in heard].count(rs.BANK) == 2  # genesis, then the change

    asyncio.run(main())


def test_wake_ends_the_poll_pause(populated: dict[str, Any], tmp_path: Path) -> None:
    """Caught up, the indexer pauses ``poll_seconds``; ``wake()`` (the submitter calls it when
    operations turn final) makes it index a new block at once."""

    async def main() -> None:
        model = SqliteReadModel(tmp_path / "rm.db")
        async with NodeClient([populated["node"].url]) as node:
            indexer = Indexer(model, node, poll_seconds=120.0)
            indexer.start()
            try:
                assert await indexer.wait_for_block(populated["head"], timeout=30)
                ids, head = await record_one(populated, rs.TERMINAL, 1, "TERMINAL.DISC",
                                             T0 + 900)
                indexer.wake([])  # takes the submitter's listener argument
                assert await indexer.wait_for_block(head, timeout=20)  # not 120 s
            finally:
                await indexer.stop()
        assert model.event(ids[0]) is not None
        model.close()

    asyncio.run(main())
