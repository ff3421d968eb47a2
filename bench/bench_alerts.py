"""The alert engine in the real gateway: evaluation throughput, event → inbox latency, and the
clock pass over many yard containers.

    python -m bench.bench_alerts [--subjects 20000] [--events 3000] [--batch 200]
                                 [--latency 200] [--yard 100000] [--spread days30,boundary]
                                 [--bulk] [--filler 0] [--cache 200000] [--processes 2]
                                 [--skip-throughput] [--data-dir DIR]

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
   as ``--spread`` says (:func:`available_at`: over the last 30 days — a day's share of boxes
   at a boundary —, all on the day whose next midnight ends their free time — the worst case —,
   or over 12 days as the earlier runs), evaluated once; then the clock pass at the next local
   midnight through :meth:`AlertEngine.clock_pass` (the store's
   due index, cached facts, evaluation, one transaction per 200 subjects written by a worker
   thread while the next 200 are evaluated, the dispatch), spread over ``--processes``
   (``clock_processes``: this process and forked workers, each evaluating and writing a share);
   CPU time of the process (both threads), of the event loop's thread and of the workers
   (``cpu_seconds`` is the sum of all). Then, as the same run's yardstick, the pure rules
   alone (:func:`gateway.alerts.rules.evaluate`) over the same due subjects, cached facts and
   previous states: ``engine_over_pure`` is the pass's wall time over theirs.

``--bulk`` fills without sealing (:class:`Preload`): the stays' facts go straight into the
engine's cache and are evaluated once through the engine's own evaluation and writes, so that
100,000 subjects × 3 organisations fit in minutes; ``--filler N`` adds N events to the read
model that no hosted organisation may read (the index the engine's queries run against);
``--cache`` sets ``state_cache_entries`` (it must hold every (organisation, subject) pair in
bulk mode: an evicted pair is read again from the read model, where bulk stays are not). The
throughput, latency and clock-pass steps are the real path either way.

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
from eth_utils.crypto import keccak

from gateway.alerts.engine import AlertEngine, Recipient, _Subject, order_of_event
from gateway.alerts.facts import Observed
from gateway.alerts.rules import evaluate
from gateway.app import create_app
from gateway.appkeys import ACCOUNTS, ALERTS, KEYSTORE, READ_MODEL
from gateway.confidential import envelope as confidential
from gateway.config import GatewayConfig
from gateway.events import model as events
from gateway.events.identifiers import container_check_digit
from gateway.events.model import CanonicalEvent, Reference
from gateway.readside.readmodel import Cursor, EventAdded, IndexedEvent, Member, MemberChange
from gateway.readside.store import SqliteReadModel
from gateway.tracking.visibility import key_of
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
    model = app[READ_MODEL]
    assert isinstance(model, SqliteReadModel)  # (the embedded read model: members set directly)
    model.apply_changes([MemberChange(Member(
        chain_org, name, 1, dev_x25519_public(f"org:{chain_org - 1}"), True))])
    return int(org.id)


class Preload:
    """The bulk fill (``--bulk``): the yard stays' facts put straight into the engine's cache, as
    the engine holds them once it has read and decrypted a subject's events, and the first
    evaluation of every subject through the engine's own evaluation and writes (no decryption:
    the stays' events are not sealed, nor in the read model). What is measured after it — new
    final events sealed, committed, decrypted and evaluated; the clock pass — is the real
    path; a subject whose cached facts were dropped would be read again from the read model,
    where the bulk stays are not, so the cache is sized to hold them all."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self.next_id = 1 << 40
        self.name = engine.tracking.publisher_name(TERMINAL)

    def facts(self, r: Recipient, number: str, available: int, code: str) -> Reference:
        ref = Reference("container", number)
        observed = []
        for kind, when, details in (("TERMINAL.DISC", available - 3600,
                                     {"ISOEquipmentCode": code}),
                                    ("TERMINAL.AVPU", available, {})):
            self.next_id += 1
            observed.append(Observed(
                CanonicalEvent(kind, "ACT", when, ref, "HKHKG", (), details),
                order_of_event(available + 60, self.next_id), self.name, str(self.next_id),
                available + 60))
        engine = self.engine
        entry = engine._cached(ref, tuple(observed), (), {o.ref: TERMINAL for o in observed},
                               frozenset({key_of(number)}), r.grants, time.monotonic(),
                               engine._generation)
        engine._subjects.put((r.org_id, ref), _Subject(facts=entry))
        return ref

    async def first_evaluation(self, r: Recipient, refs: list[Reference], now: int) -> int:
        return await self.engine._evaluate_many(r, refs, deliver=False, cached=True, now=now)


def filler(app: web.Application, chain: Chain, count: int, now: int) -> float:
    """``count`` more events in the read model that no hosted organisation may read (another
    terminal's, chain organisation 7, sealed once per subject of 1,000), committed 4,000 a block
    as the indexer commits them: the size of the index the engine's queries run against."""
    if count <= 0:
        return 0.0
    t = time.perf_counter()
    template: dict[int, IndexedEvent] = {}
    batch: list[IndexedEvent] = []
    for i in range(count):
        subject = i % 1000
        if subject not in template:
            event = CanonicalEvent("TERMINAL.GTIN", "ACT", now - 86_400,
                                   Reference("container", box("FILU", subject)), "HKHKG", (), {})
            template[subject] = chain.seal(7, event, now - 86_400)
        base = template[subject]
        batch.append(IndexedEvent(
            event_id=chain.next_id, block=chain.block + 1,
            tx_hash=keccak(chain.next_id.to_bytes(8, "big")), log_index=0,
            block_time=base.block_time, publisher=7, subject=base.subject,
            type_code=base.type_code, classifier=base.classifier, event_time=base.event_time,
            location=base.location, retracts=0, payload_hash=base.payload_hash,
            envelope=base.envelope, key_version=base.key_version, readers=base.readers,
            reference_readable=base.reference_readable))
        chain.next_id += 1
        if len(batch) >= 4000:
            chain.commit(batch)
            batch = []
    if batch:
        chain.commit(batch)
    return time.perf_counter() - t


def children_cpu() -> float:
    """CPU seconds of this process's ended (waited-for) child processes: the clock pass's
    forked workers."""
    times = os.times()
    return times.children_user + times.children_system


def midnight_after(moment: int) -> int:
    here = datetime.fromtimestamp(moment, HKT)
    return int((here + timedelta(days=1)).replace(hour=0, minute=0, second=5,
                                                  microsecond=0).timestamp())


async def open_gateway(data_dir: Path, cache: int = 200_000, processes: int = 2,
                       ) -> tuple[web.AppRunner, web.Application]:
    config = GatewayConfig(data_dir=data_dir, keystore_passphrase="bench", cookie_secure=False,
                           background_tasks=False,
                           extra={"alerts": {"tariff": TARIFF, "state_cache_entries": cache,
                                             "clock_processes": processes}})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner, app


async def throughput_and_latency(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    runner, app = await open_gateway(data_dir, args.cache)
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
        if args.bulk:
            out["filler_seconds"] = round(filler(app, chain, args.filler, now), 1)
            preload = Preload(engine)
            t = time.perf_counter()
            cpu = time.process_time()
            opened = 0
            recipients = engine.recipients()
            for r in recipients:
                refs = [preload.facts(r, number, now - (8 + i % 5) * 86_400,
                                      CODES[i % len(CODES)]) for i, number in enumerate(boxes)]
                opened += await preload.first_evaluation(r, refs, now)
            first = time.perf_counter() - t
            out["first_evaluation"] = {
                "bulk": True, "organisations": len(recipients), "transitions": opened,
                "seconds": round(first, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
                "open_alerts": store._db.execute(
                    "SELECT COUNT(*) FROM alerts WHERE state = 'open'").fetchone()[0],
            }
            out["read_model_events"] = app[READ_MODEL].event_count()
        else:
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


def available_at(i: int, now: int, spread: str) -> int:
    """When yard box ``i`` became available: ``days12`` over the last 12 days (the earlier
    runs), ``days30`` over the last 30 days (a day's share of boxes at a boundary), ``boundary``
    on the local day whose next midnight ends every box's free time at once (the worst case:
    each box's warning resolves and its meter opens in the same pass)."""
    if spread == "days12":
        return now - (i % (12 * 24)) * 3600 - 1800
    if spread == "days30":
        return now - (i % (30 * 24)) * 3600 - 1800
    day1 = datetime.fromtimestamp(midnight_after(now), HKT) - timedelta(days=5)
    return int(day1.replace(hour=0, minute=30, second=0).timestamp()) + (i % 23) * 3600


async def clock_pass(args: argparse.Namespace, data_dir: Path, spread: str) -> dict[str, Any]:
    runner, app = await open_gateway(data_dir, args.cache, args.processes)
    out: dict[str, Any] = {"spread": spread}
    try:
        host(app, TERMINAL, "Terminal")
        engine = app[ALERTS].engine
        now = int(time.time())
        engine.clock = lambda: now
        chain = Chain(app)
        store = app[ALERTS].store
        if args.bulk:
            preload = Preload(engine)
            (r,) = engine.recipients()
            refs = [preload.facts(r, box("YRDU", i), available_at(i, now, spread),
                                  CODES[i % len(CODES)]) for i in range(args.yard)]
            t = time.perf_counter()
            await preload.first_evaluation(r, refs, now)
            out["first_evaluation_seconds"] = round(time.perf_counter() - t, 1)
        else:
            t = time.perf_counter()
            batch: list[IndexedEvent] = []
            for i in range(args.yard):
                batch += stay(chain, box("YRDU", i), available_at(i, now, spread),
                              CODES[i % len(CODES)], readers=())
                if len(batch) >= 4000:
                    chain.commit(batch)
                    batch = []
            if batch:
                chain.commit(batch)
            out["fill_seconds"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            await engine.catch_up(page=4000)
            out["first_evaluation_seconds"] = round(time.perf_counter() - t, 1)
        out["open_alerts"] = store._db.execute(
            "SELECT COUNT(*) FROM alerts WHERE state = 'open'").fetchone()[0]
        at = midnight_after(now)
        org = engine.recipients()[0]
        # what the pure rules will be given, for the same run's denominator (below)
        previous = {subject: slot.states for (_, subject), slot in engine._subjects.items()}
        t = time.perf_counter()
        cpu, thread_cpu, workers_cpu = time.process_time(), time.thread_time(), children_cpu()
        pairs = store.due(at)
        before = engine.transitions
        await engine.clock_pass(at)
        wall = time.perf_counter() - t
        workers = children_cpu() - workers_cpu
        here = time.process_time() - cpu
        out["clock_pass"] = {
            "yard_containers": args.yard, "due": len(pairs),
            "transitions": engine.transitions - before,
            "processes": args.processes,
            "seconds": round(wall, 2), "cpu_seconds": round(here + workers, 2),
            "this_process_cpu_seconds": round(here, 2),
            "event_loop_thread_cpu_seconds": round(time.thread_time() - thread_cpu, 2),
            "worker_processes_cpu_seconds": round(workers, 2),
            "target_seconds": 5, "load_average": os.getloadavg(),
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
    parser.add_argument("--spread", default="days30,boundary",
                        help="clock-pass yards, comma-separated: days30, boundary, days12")
    parser.add_argument("--bulk", action="store_true",
                        help="fill the engine's facts and first states in bulk (Preload)")
    parser.add_argument("--filler", type=int, default=0,
                        help="with --bulk: more events in the read model no one here may read")
    parser.add_argument("--cache", type=int, default=200_000,
                        help="state_cache_entries ((organisation, subject) facts kept)")
    parser.add_argument("--processes", type=int, default=2,
                        help="clock_processes of the clock pass (1: the gateway's process alone)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        result: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
        if not args.skip_throughput:
            result.update(asyncio.run(throughput_and_latency(args, base / "engine")))
        if args.yard:
            result["yard"] = [asyncio.run(clock_pass(args, base / f"yard-{spread}", spread))
                              for spread in args.spread.split(",")]
        result["load_average_after"] = os.getloadavg()
        print(json.dumps(result, indent=2))
    finally:
        if args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
