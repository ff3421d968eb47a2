"""The clock pass spread over processes (``clock_processes``): forked workers evaluate and write
their share of the due subjects; the store ends as one process would leave it, a second pass
records nothing, and a worker that dies mid-share leaves its unwritten subjects due, so the
next pass records them once."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.alerts import engine as engine_module
from gateway.alerts.engine import ClockPassError
from gateway.alerts.store import AlertStore
from gateway.app import create_app
from gateway.events.identifiers import container_check_digit
from tests.gateway.alerts.builders import hk
from tests.gateway.alerts.gateway_support import ISSUE_TARIFF, Port, config, event
from tests.support.dcsa import wait_until
from tests.support.readside import CARRIER, TERMINAL

BOXES = 36
NOW = hk("2026-11-10 10:00")  # the last free day of every box below (5 free days from 6 Nov)
MIDNIGHT = hk("2026-11-11 00:00") + 5  # every box's free time ends: warning resolved, meter on


def number(i: int) -> str:
    serial = f"YRDU{i:06d}"
    return serial + str(container_check_digit(serial))


async def yard(path: Path, **alerts: Any) -> tuple[TestClient[Any, Any], Port]:
    """A gateway hosting the terminal and the carrier (a named reader), ``BOXES`` boxes made
    available on 6 Nov, evaluated once at ``NOW``: each has an open free-time warning."""
    client = TestClient(TestServer(create_app(config(path, **alerts))))
    await client.start_server()
    port = Port(client.app)
    await wait_until(lambda: port.store.progress("events") is not None, what="the first look")
    port.member(TERMINAL, "Hong Kong Container Terminal")
    port.member(CARRIER, "Pacific Ocean Line")
    resp = await client.put(f"/v1/alerts/tariffs/terminal/{TERMINAL}", json=ISSUE_TARIFF,
                            headers=port.auth[TERMINAL])
    assert resp.status == 200
    for i in range(BOXES):
        available = hk("2026-11-06 00:30") + (i % 23) * 3600
        for kind, when, details in (("TERMINAL.DISC", available - 3600,
                                     {"ISOEquipmentCode": ("22G1", "42G1", "45R1")[i % 3]}),
                                    ("TERMINAL.AVPU", available, {})):
            port.record(TERMINAL, event(kind, "container", number(i), when, details=details),
                        block_time=available + 60, readers=(CARRIER,), reference=True)
    port.engine.clock = lambda: NOW
    await port.engine.on_indexed(port.events)
    return client, port


def episodes(store: AlertStore) -> dict[tuple[int, str], tuple[str, Any, Any]]:
    """Every stored episode: (organisation, key) -> (state, next check, its JSON)."""
    out = {}
    for org_id, key, state, next_check, row_id in store._db.execute(
            "SELECT org_id, key, state, next_check, id FROM alerts"):
        stored = store.alert(org_id, row_id)
        assert stored is not None
        out[(org_id, key)] = (state, next_check, stored.alert.to_json())
    return out


def transitions(store: AlertStore) -> Counter[tuple[int, str, str]]:
    """(organisation, episode key, change) of every stored transition, counted."""
    return Counter(store._db.execute(
        "SELECT t.org_id, a.key, t.change FROM transitions t JOIN alerts a ON a.id = t.alert_id"
    ).fetchall())


async def one_process(path: Path) -> tuple[dict[Any, Any], Counter[Any]]:
    client, port = await yard(path, clock_processes=1)
    try:
        assert await port.engine.clock_pass(MIDNIGHT) == 2 * 2 * BOXES
        return episodes(port.store), transitions(port.store)
    finally:
        await client.close()


async def test_a_pass_over_processes_records_what_one_process_records(tmp_path: Path) -> None:
    expected, expected_changes = await one_process(tmp_path / "one")
    assert set(expected_changes.values()) == {1}
    client, port = await yard(tmp_path / "split", clock_processes=3, clock_split_min=10)
    try:
        engine = port.engine
        due = [s for _, s in port.store.due(MIDNIGHT)][:BOXES]
        here, shares, slots = engine._clock_shares(engine.recipients()[0], due)
        assert here == [] and [len(share) for share in shares] == [12, 12, 12]
        assert len(slots) == BOXES and all(slot.states for slot in slots)
        assert {s for share in shares for s in share} == set(due) and len(set(due)) == BOXES
        before = engine.transitions
        # per organisation: each box's warning resolved and its meter opened
        assert await engine.clock_pass(MIDNIGHT) == 2 * 2 * BOXES
        assert engine.transitions - before == 2 * 2 * BOXES
        assert episodes(port.store) == expected
        assert transitions(port.store) == expected_changes
        # the workers' subjects are read again from the store: nothing more is recorded
        assert await engine.clock_pass(MIDNIGHT) == 0
        assert transitions(port.store) == expected_changes
        # and the next boundary (day 11's rate) is found for every box, as written
        assert await engine.clock_pass(hk("2026-11-16 00:00") + 5) == 2 * BOXES
        assert port.store.due(hk("2026-11-16 00:00") + 5) == []
    finally:
        await client.close()


async def test_a_worker_that_dies_leaves_the_rest_due_for_the_next_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected, expected_changes = await one_process(tmp_path / "one")
    client, port = await yard(tmp_path / "split", clock_processes=2, clock_split_min=10)
    try:
        store = port.store
        monkeypatch.setattr(engine_module, "WRITE_EVERY", 5)
        real_write = store.write
        parent = os.getpid()

        def write_then_die(batch: Any, *, on: Any = None) -> list[int]:
            ids: list[int] = real_write(batch, on=on)
            if os.getpid() != parent:  # a worker: its first 5 subjects written, then gone
                os._exit(3)
            return ids

        monkeypatch.setattr(store, "write", write_then_die)
        first = sum(transitions(store).values())  # the warnings opened at NOW
        with pytest.raises(ClockPassError, match="ended with 3"):
            await port.engine.clock_pass(MIDNIGHT)
        partial = transitions(store)
        # two organisations, two workers each, 5 boxes written by each: 2 transitions a box
        assert sum(partial.values()) - first == 2 * 2 * 5 * 2
        assert set(partial.values()) == {1}
        # the next pass finds the rest due and records each of their transitions once
        monkeypatch.setattr(store, "write", real_write)
        left = len(store.due(MIDNIGHT))
        assert left > 0
        assert await port.engine.clock_pass(MIDNIGHT) == sum(expected_changes.values()) - sum(
            partial.values())
        assert episodes(store) == expected
        assert transitions(store) == expected_changes
    finally:
        await client.close()
