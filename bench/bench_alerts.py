"""The alert engine in the real gateway: evaluation throughput, event → inbox latency, and the
clock pass over many yard containers.

    python -m bench.bench_alerts [--subjects 20000] [--events 3000] [--batch 200]
                                 [--latency 200] [--yard 100000] [--data-dir DIR]

The gateway is the real one (:func:`gateway.app.create_app`, its modules opened through an
``AppRunner``; background tasks off, so nothing runs but what is measured), with three hosted
organisations holding the demo members' development keys: a terminal, a carrier (a named reader
of the terminal's events) and a trader that follows every container. Events are really sealed
(:func:`gateway.confidential.envelope.seal`, readable by the carrier and by reference holders)
and stored as the indexer stores them (:meth:`ReadModel.apply`, one "block" per batch);
alerts are decrypted and evaluated per organisation, as in production.

1. **Open subjects**: ``--subjects`` containers discharged and made available 8-12 days ago
   under a published tariff (5 free days): every one has an open ``not-picked-up`` episode for
   each of the three organisations after the first evaluation (timed too).
2. **Throughput**: ``--events`` new final events (inspections, ``EQUIPMENT.INSP``, on random
   open containers) committed in batches of ``--batch`` (a block range) and handed to the
   engine's indexer listener; events/s = events / the listener's time (sealing and the read
   model's commit are the indexer's work, not timed).
3. **Latency**: ``--latency`` single events, each the discharge of a box whose free time is
   long over: the time from the read model's commit to the ``not-picked-up`` alert being in the
   trader's inbox (the listener's work; the indexer's poll, ``indexer_poll_ms``, and the
   block time come on top in a live gateway).
4. **Clock pass**: ``--yard`` containers of one terminal (its organisation alone), available
   over the last 12 days, evaluated once; then the clock pass at the next local midnight — when
   every storage meter takes a new day — through :meth:`AlertEngine.clock_pass` (the store's
   due index, cached facts, evaluation, one transaction per 200 subjects written by a worker
   thread while the next 200 are evaluated, the dispatch); CPU time of the process (both
   threads) and of the event loop's thread. Then, as the same run's yardstick, the pure rules
   alone (:func:`gateway.alerts.rules.evaluate`) over the same due subjects, cached facts and
   previous states: ``engine_over_pure`` is the pass's wall time over theirs.

Figures go to stdout as JSON with the machine's load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_utils import keccak

from gateway.alerts.rules import evaluate
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, ALERTS, KEYSTORE, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.events import model as events
from gateway.events.identifiers import container_check_digit
from gateway.events.model import CanonicalEvent, Reference
from gateway.readside.readmodel import Cursor, EventAdded, IndexedEvent, Member, MemberChange
from node.genesis import dev_key, dev_x25519, dev_x25519_public

HKT = timezone(timedelta(hours=8))
TERMINAL, CARRIER, TRADER = 2, 4, 13
TARIFF = {"currency": "HKD", "free_days": 5, "counting": "calendar",
          "label": "EXAMPLE ONLY (benchmark)",
          "bands": [{"from_day": 6, "to_day": 10,
                     "per_day": {"20": 100, "40": 200, "45": 200, "reefer": 400}},
                    {"from_day": 11, "per_day": {"20": 200, "40": 400, "45": 400,
                                                 "reefer": 800}}]}
CODES = ("22G1", "42G1", "45G1", "L5G1", "45R1")


def master_secret(chain_org: int) -> bytes:
    return keccak(f"bench-alerts-master:{chain_org}".encode())


def box(prefix: str, i: int) -> str:
    serial = f"{prefix}{i:06d}"
    return serial + str(container_check_digit(serial))


class Chain:
    """Seals events as their owner and stores them as the indexer does."""

    def __init__(self, app: web.Application) -> None:
        self.model = app[READ_MODEL]
        self.block = 0
        self.next_id = 1 << 16

    def seal(self, owner: int, event: CanonicalEvent, block_time: int, *,
             readers: tuple[int, ...] = (), reference: bool = False) -> IndexedEvent:
        sealed = confidential.seal(
            events.plaintext(event), subject=event.subject.key,
            owner_secret=master_secret(owner), key_version=0,
            readers={r: dev_x25519_public(f"org:{r - 1}") for r in readers},
            reference=event.subject.value if reference else None)
        cargo = events.to_cargo_input(event, sealed.envelope, sealed.payload_hash)
        info = confidential.envelope_info(cargo.payload)
        event_id = self.next_id
        self.next_id += 1
        return IndexedEvent(
            event_id=event_id, block=self.block + 1, tx_hash=keccak(event_id.to_bytes(8, "big")),
            log_index=0, block_time=block_time, publisher=owner, subject=cargo.subject,
            type_code=cargo.event_type, classifier=cargo.classifier,
            event_time=cargo.event_time, location=cargo.location, retracts=0,
            payload_hash=cargo.payload_hash, envelope=cargo.payload,
            key_version=info.key_version, readers=info.readers,
            reference_readable=info.reference_readable)

    def commit(self, batch: list[IndexedEvent]) -> None:
        self.block += 1
        self.model.apply([EventAdded(e) for e in batch],
                         Cursor(self.block, keccak(self.block.to_bytes(8, "big"))),
                         self.model.cursor())
        self.next_id = ((self.next_id >> 16) + 1) << 16


def stay(chain: Chain, number: str, available: int, code: str, *, owner: int = TERMINAL,
         readers: tuple[int, ...] = (CARRIER,)) -> list[IndexedEvent]:
    ref = ("container", number)
    disc = CanonicalEvent("TERMINAL.DISC", "ACT", available - 3600, Reference(*ref), "HKHKG",
                          (), {"ISOEquipmentCode": code})
    avpu = CanonicalEvent("TERMINAL.AVPU", "ACT", available, Reference(*ref), "HKHKG", (), {})
    return [chain.seal(owner, e, available + 60, readers=readers, reference=True)
            for e in (disc, avpu)]


def host(app: web.Application, chain_org: int, name: str) -> int:
    accounts = app[ACCOUNTS]
    org = accounts.create_organisation(name, ["forwarder"], {}, status="active",
                                       chain_org=chain_org)
    app[KEYSTORE].import_keys(org.id, signing_key=dev_key(f"org:{chain_org - 1}").to_bytes(),
                              x25519_private=dev_x25519(f"org:{chain_org - 1}"),
                              master_secret=master_secret(chain_org))
    app[READ_MODEL].apply_changes([MemberChange(Member(
        chain_org, name, 1, dev_x25519_public(f"org:{chain_org - 1}"), True))])
    return int(org.id)


def midnight_after(moment: int) -> int:
    here = datetime.fromtimestamp(moment, HKT)
    return int((here + timedelta(days=1)).replace(hour=0, minute=0, second=5,
                                                  microsecond=0).timestamp())


async def open_gateway(data_dir: Path) -> tuple[web.AppRunner, web.Application]:
    config = GatewayConfig(data_dir=data_dir, keystore_passphrase="bench", cookie_secure=False,
                           background_tasks=False,
                           extra={"alerts": {"tariff": TARIFF}})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner, app


async def throughput_and_latency(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    runner, app = await open_gateway(data_dir)
    out: dict[str, Any] = {}
    try:
        for chain_org, name in ((TERMINAL, "Terminal"), (CARRIER, "Carrier"),
                                (TRADER, "Trader")):
            host(app, chain_org, name)
        engine = app[ALERTS].engine
        store = app[ALERTS].store
        now = int(time.time())
        engine.clock = lambda: now
        chain = Chain(app)
        boxes = [box("BNCU", i) for i in range(args.subjects)]
        store.follow(host_id(app, TRADER), [Reference("container", b) for b in boxes],
                     limit=10 ** 7)
        t = time.perf_counter()
        batch: list[IndexedEvent] = []
        for i, number in enumerate(boxes):
            available = now - (8 + i % 5) * 86_400
            batch += stay(chain, number, available, CODES[i % len(CODES)])
            if len(batch) >= 2 * args.batch:
                chain.commit(batch)
                batch = []
        if batch:
            chain.commit(batch)
        out["fill_seconds"] = round(time.perf_counter() - t, 1)
        out["fill_events"] = 2 * args.subjects
        # the first evaluation of every subject, in batches as the indexer hands them over
        stored = app[READ_MODEL].event_count()
        t = time.perf_counter()
        cpu = time.process_time()
        await engine.catch_up(page=2 * args.batch)
        first = time.perf_counter() - t
        out["first_evaluation"] = {
            "events": stored, "seconds": round(first, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2),
            "events_per_second": round(stored / first),
            "open_alerts": store._db.execute(
                "SELECT COUNT(*) FROM alerts WHERE state = 'open'").fetchone()[0],
        }

        # throughput: new final events on open subjects
        rng = random.Random(7)
        spent = 0.0
        cpu_spent = 0.0
        done = 0
        while done < args.events:
            size = min(args.batch, args.events - done)
            batch = []
            for _ in range(size):
                number = rng.choice(boxes)
                event = CanonicalEvent("EQUIPMENT.INSP", "ACT", now - rng.randrange(86_400),
                                       Reference("container", number), "HKHKG", (), {})
                batch.append(chain.seal(TERMINAL, event, now, readers=(CARRIER,),
                                        reference=True))
            chain.commit(batch)
            t = time.perf_counter()
            cpu = time.process_time()
            await engine.on_indexed(batch)
            spent += time.perf_counter() - t
            cpu_spent += time.process_time() - cpu
            done += size
        out["throughput"] = {
            "open_subjects": args.subjects, "organisations": 3, "events": done,
            "batch": args.batch, "seconds": round(spent, 2), "cpu_seconds": round(cpu_spent, 2),
            "events_per_second": round(done / spent),
            "organisation_evaluations_per_second": round(3 * done / spent),
        }

        # latency: commit -> the trader's inbox holds the new alert
        latencies = []
        trader = host_id(app, TRADER)
        for i in range(args.latency):
            number = box("LATU", i)
            store.follow(trader, [Reference("container", number)], limit=10 ** 7)
            await engine.sync_follows()  # the follow is in before the event
            fresh = stay(chain, number, now - 9 * 86_400, "22G1")
            t = time.perf_counter()
            chain.commit(fresh)
            await engine.on_indexed(fresh)
            found = store._db.execute(
                "SELECT 1 FROM alerts WHERE org_id = ? AND subject_value = ? AND "
                "kind = 'not-picked-up' AND state = 'open'", (trader, number)).fetchone()
            latencies.append(time.perf_counter() - t)
            assert found is not None, "no alert in the inbox"
        latencies.sort()
        out["latency"] = {
            "samples": len(latencies),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
            "max_ms": round(1000 * latencies[-1], 1),
            "note": "commit of the block's events -> alert row in the inbox (listener work); "
                    "the indexer's poll (indexer_poll_ms, 200 ms) and block time add to it",
        }
    finally:
        await runner.cleanup()
    return out


def host_id(app: web.Application, chain_org: int) -> int:
    org = app[ACCOUNTS].by_chain_org(chain_org)
    assert org is not None
    return int(org.id)


async def clock_pass(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    runner, app = await open_gateway(data_dir)
    out: dict[str, Any] = {}
    try:
        host(app, TERMINAL, "Terminal")
        engine = app[ALERTS].engine
        now = int(time.time())
        engine.clock = lambda: now
        chain = Chain(app)
        t = time.perf_counter()
        batch: list[IndexedEvent] = []
        for i in range(args.yard):
            available = now - (i % (12 * 24)) * 3600 - 1800  # over the last 12 days
            batch += stay(chain, box("YRDU", i), available, CODES[i % len(CODES)], readers=())
            if len(batch) >= 4000:
                chain.commit(batch)
                batch = []
        if batch:
            chain.commit(batch)
        out["fill_seconds"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        await engine.catch_up(page=4000)
        out["first_evaluation_seconds"] = round(time.perf_counter() - t, 1)
        store = app[ALERTS].store
        out["open_alerts"] = store._db.execute(
            "SELECT COUNT(*) FROM alerts WHERE state = 'open'").fetchone()[0]
        at = midnight_after(now)
        org = engine.recipients()[0]
        # what the pure rules will be given, for the same run's denominator (below)
        previous = {subject: slot.states for (_, subject), slot in engine._subjects.items()}
        t = time.perf_counter()
        cpu, thread_cpu = time.process_time(), time.thread_time()
        pairs = store.due(at)
        before = engine.transitions
        await engine.clock_pass(at)
        wall = time.perf_counter() - t
        out["clock_pass"] = {
            "yard_containers": args.yard, "due": len(pairs),
            "transitions": engine.transitions - before,
            "seconds": round(wall, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
            "event_loop_thread_cpu_seconds": round(time.thread_time() - thread_cpu, 2),
            "target_seconds": 5,
        }
        # the pure rules alone over the same due subjects, facts and previous states
        t = time.perf_counter()
        cpu = time.process_time()
        pure = 0
        for _, subject in pairs:
            slot = engine._subjects.get((org.org_id, subject))
            assert slot is not None and slot.facts is not None
            cached = slot.facts
            tariff = engine.tariffs.for_box(cached.terminal, cached.facts.carrier)
            pure += len(evaluate({subject: cached.facts}, org.settings, tariff, None, at,
                                 previous.get(subject) or {}).transitions)
        pure_wall = time.perf_counter() - t
        out["clock_pass"]["pure_rules"] = {
            "seconds": round(pure_wall, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
            "transitions": pure, "engine_over_pure": round(wall / pure_wall, 2),
        }
    finally:
        await runner.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--yard", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        result: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
        result.update(asyncio.run(throughput_and_latency(args, base / "engine")))
        if args.yard:
            result["yard"] = asyncio.run(clock_pass(args, base / "yard"))
        result["load_average_after"] = os.getloadavg()
        print(json.dumps(result, indent=2))
    finally:
        if args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
