"""Tracking queries with 1 M events indexed, load from a separate process.

    python bench/bench_tracking.py [--events 1000000] [--tracked 2000] [--workers 2]
                                   [--concurrency 64[,32...]] [--duration 20] [--warmup 120]
                                   [--updates 10] [--typos 0.1]
                                   [--data-dir DIR] [--keep] [--baseline REV]

1. **Fill** a read model through the :class:`gateway.readside.store.SqliteReadModel` API: the 13 demo
   organisations, ``events / 10`` containers with 10 events each (terminal moves, customs,
   reefer readings), one master B/L per 4 containers with a carrier record, and one house B/L
   per master covering 2 of its containers with a forwarder record. Sealing 1 M envelopes
   would take long and measures nothing about lookups, so only the *tracked* shipments
   (``--tracked`` masters, their houses and containers) get their own really sealed,
   reference-readable envelopes; every other event reuses the ciphertext bytes of a pool of
   sealed envelopes (same sizes, valid structure, only undecryptable under its own subject).
   The index sizes and the lookups are the real ones. ``--data-dir`` with ``--keep`` reuses a
   fill between runs.
2. **Serve** the real gateway (:func:`gateway.app.create_app`: error, observation, API-key
   authentication and rate-limit middlewares, metrics, every module) from ``--workers``
   processes sharing the port (``SO_REUSEPORT``, as ``portledger gateway serve --workers``),
   background work off (``background_tasks``: the read model is already filled), rate limits
   set far above the offered load. The trader organisation is an active organisation of the
   accounts database with a real API key from :meth:`gateway.accounts.store.Accounts.create_api_key`.
   Each worker also answers ``GET /bench/stats`` (its pid and view-cache counters) — the bench's
   own route, outside the measured paths.
3. **Load** from a separate process: a keep-alive HTTP/1.1 client on asyncio streams with
   ``--concurrency`` connections (the first of a comma-separated list), in phases:

   - *client ceiling*: ``GET /healthz`` (no authentication) — what this client and the bare
     HTTP stack manage on this machine, so the tracking figures can be read against it;
   - *cold*: every tracked reference (containers, house and master B/Ls) once, shuffled — the
     first touch of each, no view cached;
   - *warm-up*: random references until every worker process holds at least 99.5 % of the
     views (each has its own cache, so a reference first served by the other worker is still a
     miss here), at most ``--warmup`` seconds;
   - *steady* (``--duration`` s): random references, once per listed concurrency;
   - *steady with updates* (``--duration`` s, unless ``--updates 0``): the same while another
     process stands in for the indexer of a live chain, committing ``--updates`` new events a
     second on random tracked containers (one block each): each drops, in every worker, the
     views that show that container (its own, its house's and its master's), and the next
     request rebuilds them. These events stay in a kept fill;
   - *not found* (``--duration`` s, unless ``--typos 0``): only typo'd tracked references (one
     digit changed: a valid-looking reference nothing visible matches), each a 404 with the
     resolver's near-match suggestions among the references the trader has read (by then the
     whole tracked set, ~12 000);
   - *steady with typos* (``--duration`` s): random references of which a ``--typos`` share is
     typo'd; the 404s' latency is also given on its own.

   Each phase prints requests/s, p50/p99 latency, statuses and the view-cache hit ratio (the
   difference of the workers' counters over the phase).
4. With ``--baseline REV`` the gateway of that commit (``git archive``, the repository is only
   read) is served and loaded first, on the same fill, then this tree's (or, with
   ``--candidate REV``, that commit's): before and after in one run on the same machine;
   ``--rounds N`` repeats the pair (the machine's load moves between variants: compare each
   phase with the same round's ``/healthz`` ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devnet.ports import free_port

#: The environment the bench started with, for the gateway workers (importing the gateway here
#: sets defaults, such as the keccak backend, which a baseline's workers must not inherit).
START_ENV = dict(os.environ)

TRADER, TERMINAL, CARRIER, FORWARDER, CUSTOMS = 13, 2, 4, 5, 10
PASSPHRASE = "bench"
#: How the load process gets the API key (not on its command line).
KEY_VARIABLE = "PORTLEDGER_BENCH_API_KEY"
T0 = 1_780_000_000


def _container(serial: int) -> str:
    from gateway.events.identifiers import container_check_digit

    first = f"PCOU{serial:06d}"
    return first + str(container_check_digit(first))


def fill(data_dir: Path, total: int, tracked: int) -> dict[str, Any]:
    """Write the read model; return the tracked references."""
    from contracts.cargo import EVENT_TYPES
    from devnet.members import DEMO_ORGANISATIONS
    from gateway.confidential import envelope as confidential
    from gateway.confidential import keystore
    from gateway.events import model as events
    from gateway.readside.readmodel import (
        Cursor,
        HouseChange,
        IndexedEvent,
        MasterContainers,
        Member,
        MemberChange,
    )
    from gateway.readside.store import SqliteReadModel
    from node.genesis import dev_key, dev_x25519, dev_x25519_public

    data_dir.mkdir(parents=True, exist_ok=True)
    store = keystore.Keystore(data_dir / "keystore", PASSPHRASE)
    store.import_keys(TRADER, signing_key=dev_key("org:12").to_bytes(),
                      x25519_private=dev_x25519("org:12"), master_secret=os.urandom(32))
    model = SqliteReadModel(data_dir / "readmodel.db")
    model.apply([MemberChange(Member(i + 1, name, 0, dev_x25519_public(f"org:{i}"), True))
                 for i, (name, _) in enumerate(DEMO_ORGANISATIONS)], Cursor(0, b"\0" * 32), None)
    secrets = {o: os.urandom(32) for o in (TERMINAL, CARRIER, FORWARDER, CUSTOMS)}
    containers = total // 10
    masters = containers // 4
    event_id = 1 << 16
    pool: list[tuple[bytes, bytes]] = []
    kinds = ["TERMINAL.GTIN", "TERMINAL.LOAD", "TRANSPORT.DEPA", "TRANSPORT.ARRI",
             "TERMINAL.DISC", "REEFER.MEAS", "CUSTOMS.CUSH", "CUSTOMS.CUSR", "TERMINAL.AVPU",
             "TERMINAL.GTOT"]
    publisher_of = {"CUSTOMS": CUSTOMS, "TRANSPORT": CARRIER, "REEFER": TERMINAL,
                    "TERMINAL": TERMINAL}
    rows: list[IndexedEvent] = []
    changes: list[Any] = []
    started = time.monotonic()
    sealed = 0

    def add(ev: events.CanonicalEvent, owner: int, real: bool) -> None:
        nonlocal event_id, sealed
        event_id += 1
        if real or len(pool) < 256:
            s = confidential.seal(events.plaintext(ev), subject=ev.subject.key,
                                  owner_secret=secrets[owner], key_version=0, readers={},
                                  reference=ev.subject.value)
            envelope, payload_hash = s.envelope, s.payload_hash
            sealed += 1
            if len(pool) < 256:
                pool.append((envelope, payload_hash))
        else:
            envelope, payload_hash = pool[event_id % len(pool)]
        rows.append(IndexedEvent(
            event_id=event_id, block=event_id >> 8, tx_hash=event_id.to_bytes(32, "big"),
            log_index=event_id & 0xFF, block_time=ev.event_time + 30, publisher=owner,
            subject=ev.subject.key, type_code=EVENT_TYPES[ev.event_type],
            classifier=3, event_time=ev.event_time, location=ev.location, retracts=0,
            payload_hash=payload_hash, envelope=envelope, key_version=0, readers=(),
            reference_readable=True,
        ))
        if len(rows) >= 20_000:
            model.bulk_insert_events(rows)
            rows.clear()

    tracked_refs: dict[str, list[str]] = {"container": [], "hbl": [], "mbl": []}
    for m in range(masters):
        real = m < tracked
        mbl, hbl = f"PCOL{m:010d}", f"HFF{m:09d}"
        numbers = [_container(m * 4 + i) for i in range(4)]
        keys = tuple(events.Reference("container", c).key for c in numbers)
        changes.append(MasterContainers(events.Reference("mbl", mbl).key, CARRIER, keys, 1))
        changes.append(HouseChange(events.Reference("hbl", hbl).key,
                                   events.Reference("mbl", mbl).key, FORWARDER, keys[:2], 1))
        at = T0 + m * 60
        add(events.CanonicalEvent("SHIPMENT.ISSU", "ACT", at, events.Reference("mbl", mbl),
                                  "HKHKG", tuple(events.Reference("container", c) for c in numbers),
                                  {"vessel": {"name": "PACIFIC STAR", "imo": "9321483"}}),
            CARRIER, real)
        add(events.CanonicalEvent("SHIPMENT.ISSU", "ACT", at + 5, events.Reference("hbl", hbl),
                                  "HKHKG", (events.Reference("mbl", mbl),
                                            *(events.Reference("container", c)
                                              for c in numbers[:2]))), FORWARDER, real)
        for c in numbers:
            for k, kind in enumerate(kinds):
                details = {"temperature": -18.0 + random.random(), "setpoint": -18.0} \
                    if kind == "REEFER.MEAS" else {}
                add(events.CanonicalEvent(kind, "ACT", at + 3600 * (k + 1),
                                          events.Reference("container", c), "HKHKG", (),
                                          details), publisher_of[kind.split(".")[0]], real)
        if real:
            tracked_refs["mbl"].append(mbl)
            tracked_refs["hbl"].append(hbl)
            tracked_refs["container"].extend(numbers[:2])
        if len(changes) >= 20_000:
            model.apply_changes(changes)
            changes.clear()
    model.bulk_insert_events(rows)
    model.apply_changes(changes)
    count = model.event_count()
    model.close()
    return {"events": count, "sealed": sealed, "seconds": round(time.monotonic() - started, 1),
            "refs": tracked_refs}


# -- server -----------------------------------------------------------------------------------


def _config(data_dir: Path, port: int) -> Any:
    from gateway.config import GatewayConfig

    return GatewayConfig(
        data_dir=data_dir, keystore_passphrase=PASSPHRASE, host="127.0.0.1", port=port,
        log_json=False, background_tasks=False,
        rate_limit_per_key=1e6, rate_limit_per_address=1e6, rate_limit_burst=1_000_000,
    )


def trader_api_key(data_dir: Path) -> str:
    """An API key of the trader organisation (created active, linked to its chain id, with
    its keys in the keystore), issued the way the gateway issues keys."""
    from devnet.members import DEMO_ORGANISATIONS
    from gateway.accounts.store import Accounts
    from gateway.confidential import keystore
    from gateway.principal import ROLE_SCOPES
    from node.genesis import dev_key, dev_x25519

    accounts = Accounts.open(_config(data_dir, 0))
    try:
        org = accounts.by_chain_org(TRADER)
        if org is None:
            org = accounts.create_organisation(DEMO_ORGANISATIONS[TRADER - 1][0], ["forwarder"],
                                               status="active", chain_org=TRADER)
        store = keystore.Keystore(data_dir / "keystore", PASSPHRASE)
        try:
            store.get(org.id)
        except KeyError:
            store.import_keys(org.id, signing_key=dev_key("org:12").to_bytes(),
                              x25519_private=dev_x25519("org:12"), master_secret=os.urandom(32))
        _, key = accounts.create_api_key(org.id, ROLE_SCOPES["member"], "bench")
        return key
    finally:
        accounts.close()


def _flat_gateway() -> bool:
    """Whether the gateway on the path is a baseline's from before issue 18's feature packages
    (a flat ``gateway/tracking.py``). Asked of the files: the editable install's finder would
    import this tree's new modules into an old tree's package."""
    import gateway

    return (Path(gateway.__file__).parent / "tracking.py").is_file()


def serve(data_dir: Path, port: int) -> None:
    """One worker process: the whole gateway app, background work off."""
    from aiohttp import web

    from gateway.app import create_app

    # The gateway of this tree or of a baseline's (``--src``), before or after the layers of
    # issue 18: the imports come after the baseline's tree went first on the path.
    if _flat_gateway():
        from gateway.tracking import TRACKING
    else:
        from gateway.appkeys import TRACKING

    app = create_app(_config(data_dir, port))

    async def stats(request: web.Request) -> web.Response:
        views = request.app[TRACKING].views
        return web.json_response({"pid": os.getpid(), "hits": views.hits,
                                  "misses": views.misses, "entries": len(views),
                                  "bytes": views.bytes, "evictions": views.evictions,
                                  "dropped": views.invalidations})

    app.router.add_get("/bench/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, access_log=None,
                print=lambda *_: None)


# -- load -------------------------------------------------------------------------------------


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def _stats(port: int, workers: int) -> dict[int, dict[str, Any]]:
    """Every worker's /bench/stats (fresh connections until each pid answered; bounded)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(400):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            _, body = await _get(reader, writer, b"GET /bench/stats HTTP/1.1\r\nHost: b\r\n\r\n")
        finally:
            writer.close()
        answer = json.loads(body)
        seen[answer["pid"]] = answer
        if len(seen) >= workers:
            return seen
    raise RuntimeError(f"only {len(seen)} of {workers} workers answered /bench/stats")


async def _phase(port: int, requests: list[bytes], concurrency: int, *,
                 duration: float | None) -> dict[str, Any]:
    """Send ``requests`` (in order, once each, when ``duration`` is None; else random picks
    for ``duration`` seconds) over ``concurrency`` keep-alive connections."""
    latencies: list[float] = []
    not_found: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)
    started = time.monotonic()
    stop = None if duration is None else started + duration

    async def connection(seed: int) -> None:
        rnd = random.Random(f"{time.time_ns()}:{seed}")  # a new sequence in every phase
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                if stop is None:
                    request = next(queue, None)
                    if request is None:
                        return
                elif time.monotonic() >= stop:
                    return
                else:
                    request = requests[rnd.randrange(len(requests))]
                t = time.perf_counter()
                status, _ = await _get(reader, writer, request)
                latencies.append(time.perf_counter() - t)
                if status == 404:
                    not_found.append(latencies[-1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "requests": len(latencies),
        "seconds": round(elapsed, 1),
        "rps": round(len(latencies) / elapsed, 1),
        **_percentiles("", latencies),
        "statuses": statuses,
    }
    if not_found and len(not_found) < len(latencies):
        result.update(_percentiles("not_found_", not_found))
    return result


def _percentiles(prefix: str, latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {f"{prefix}p50_ms": round(statistics.median(latencies) * 1000, 2),
            f"{prefix}p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2)}


def typo(reference: str, rnd: random.Random) -> str:
    """``reference`` with one digit changed (after the first four characters, so it keeps its
    shape): near the original, yet no reference of the fill."""
    places = [i for i, ch in enumerate(reference) if ch.isdigit() and i >= 4]
    i = rnd.choice(places)
    return reference[:i] + str((int(reference[i]) + 1 + rnd.randrange(9)) % 10) + reference[i + 1:]


async def _load(port: int, key: str, refs: dict[str, list[str]], workers: int,
                concurrencies: list[int], duration: float, warmup: float, data_dir: Path,
                updates: float, typos: float, label: str, src: Path | None) -> None:
    concurrency = concurrencies[0]
    auth = f"Authorization: Bearer {key}\r\n"
    values = [r for kind in ("container", "hbl", "mbl") for r in refs[kind]]
    random.Random(7).shuffle(values)
    known = set(values)
    rnd = random.Random(11)
    typod = [t for t in (typo(v, rnd) for v in values) if t not in known]

    def get(value: str) -> bytes:
        return f"GET /v1/track/{value} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()

    tracked = [get(v) for v in values]
    health = [b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"]

    async def measured(name: str, requests: list[bytes], seconds: float | None,
                       show: bool = True, connections: int = concurrency) -> dict[str, Any]:
        before = await _stats(port, workers)
        result = await _phase(port, requests, connections, duration=seconds)
        result["concurrency"] = connections
        after = await _stats(port, workers)
        hits = sum(after[p]["hits"] - before.get(p, {"hits": 0})["hits"] for p in after)
        misses = sum(after[p]["misses"] - before.get(p, {"misses": 0})["misses"] for p in after)
        result["view_cache_hits"], result["view_cache_misses"] = hits, misses
        result["views_dropped"] = sum(
            after[p]["dropped"] - before.get(p, {"dropped": 0})["dropped"] for p in after)
        if hits + misses:
            result["view_cache_hit_ratio"] = round(hits / (hits + misses), 3)
        result["view_cache_entries"] = sum(a["entries"] for a in after.values())
        result["view_cache_mb"] = round(sum(a["bytes"] for a in after.values()) / (1 << 20), 1)
        if show:
            print(json.dumps({name: result, "load_average": round(os.getloadavg()[0], 2),
                              "gateway": label}), flush=True)
        return result

    await measured("client_ceiling_healthz", health, 5.0)
    print(json.dumps({"gateway": label, "references": len(tracked), "workers": workers,
                      "concurrency": concurrency}), flush=True)
    await measured("cold_first_touch", tracked, None)
    # warm-up: until every worker process holds (almost) every view — each builds its own
    # copy — or for at most `warmup` seconds
    started, requests = time.monotonic(), 0
    window: dict[str, Any] = {}
    held: list[int] = []
    while time.monotonic() - started < warmup:
        window = await measured("warmup", tracked, 2.0, show=False)
        requests += window["requests"]
        held = [s["entries"] for s in (await _stats(port, workers)).values()]
        if min(held) >= 0.995 * len(tracked):
            break
    print(json.dumps({"warmup": {"seconds": round(time.monotonic() - started, 1),
                                 "requests": requests, "views_held_per_worker": held,
                                 "last_window_hit_ratio": window.get("view_cache_hit_ratio")},
                      "load_average": round(os.getloadavg()[0], 2)}), flush=True)
    for connections in concurrencies:
        await measured("steady", tracked, duration, connections=connections)
    if updates > 0:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "update", "--data-dir", str(data_dir),
            "--updates", str(updates), "--duration", str(duration),
            *([] if src is None else ["--src", str(src)]),
            stdout=asyncio.subprocess.PIPE, env=START_ENV)
        await measured("steady_with_updates", tracked, duration)
        written, _ = await asyncio.wait_for(writer.communicate(), timeout=duration + 60)
        print(written.decode().strip(), flush=True)
    if typos > 0:
        await measured("not_found", [get(t) for t in typod], duration)
        share = max(1, round(len(tracked) * typos / (1 - typos))) if typos < 1 else len(typod)
        mixed = tracked + [get(t) for t in typod[:share]]
        await measured("steady_with_typos", mixed, duration)
    print(json.dumps({"workers_view_caches": list((await _stats(port, workers)).values())}),
          flush=True)


def load(port: int, data_dir: Path, key: str, workers: int, concurrency: list[int],
         duration: float, warmup: float, updates: float, typos: float, label: str,
         src: Path | None) -> None:
    refs = json.loads((data_dir / "refs.json").read_text())
    asyncio.run(_load(port, key, refs, workers, concurrency, duration, warmup, data_dir,
                      updates, typos, label, src))


def update(data_dir: Path, rate: float, seconds: float) -> None:
    """Stand in for the indexer of a live chain: commit ``rate`` new events a second, each on
    a random tracked container (really sealed, readable by reference holders), one block per
    event through :meth:`ReadModel.apply`, for ``seconds``. The events stay in the fill."""
    from contracts.cargo import EVENT_TYPES

    if not _flat_gateway():
        from gateway.confidential import envelope as confidential
        from gateway.events import model as events
        from gateway.readside.readmodel import Cursor, EventAdded, IndexedEvent
        from gateway.readside.store import SqliteReadModel
    else:  # a baseline's tree (``--src``) from before the layers of issue 18
        from gateway.readmodel import (
            Cursor,
            EventAdded,
            IndexedEvent,
            SqliteReadModel,
        )

        from gateway import confidential, events

    containers = json.loads((data_dir / "refs.json").read_text())["container"]
    model = SqliteReadModel(data_dir / "readmodel.db")
    secret, rnd = os.urandom(32), random.Random()
    event_id = (1 << 40) + (int(time.time()) << 12)  # above the fill's ids, new each run
    started, written = time.monotonic(), 0
    try:
        while time.monotonic() - started < seconds and written < 4000:
            number = rnd.choice(containers)
            at = T0 + 30 * 86_400 + written
            ev = events.CanonicalEvent("TERMINAL.GTOT", "ACT", at,
                                       events.Reference("container", number), "HKHKG")
            sealed = confidential.seal(events.plaintext(ev), subject=ev.subject.key,
                                       owner_secret=secret, key_version=0, readers={},
                                       reference=number)
            cursor = model.cursor()
            block = (cursor.block if cursor else 0) + 1
            event_id += 1
            model.apply([EventAdded(IndexedEvent(
                event_id=event_id, block=block, tx_hash=event_id.to_bytes(32, "big"),
                log_index=0, block_time=at + 30, publisher=TERMINAL, subject=ev.subject.key,
                type_code=EVENT_TYPES[ev.event_type], classifier=3, event_time=at,
                location="HKHKG", retracts=0, payload_hash=sealed.payload_hash,
                envelope=sealed.envelope, key_version=0, readers=(), reference_readable=True,
            ))], Cursor(block, block.to_bytes(32, "big")), cursor)
            written += 1
            time.sleep(max(0.0, written / rate - (time.monotonic() - started)))
    finally:
        model.close()
    print(json.dumps({"updates_committed": written,
                      "per_second": round(written / (time.monotonic() - started), 1)}))


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def _connection_counts(text: str) -> str:
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return text


def run_variant(args: argparse.Namespace, data_dir: Path, key: str, label: str,
                src: Path | None) -> None:
    """Serve the gateway of ``src`` (None: this tree) from ``--workers`` processes and load it."""
    port = args.port or free_port()
    me = Path(__file__).resolve()
    extra = [] if src is None else ["--src", str(src)]
    workers = [subprocess.Popen([sys.executable, str(me), "serve", "--data-dir", str(data_dir),
                                 "--port", str(port), *extra], env=START_ENV)
               for _ in range(args.workers)]
    try:
        _wait_port(port)
        time.sleep(1.0)
        subprocess.run(
            [sys.executable, str(me), "load", "--data-dir", str(data_dir), "--port",
             str(port), "--workers", str(args.workers), "--concurrency",
             str(args.concurrency), "--duration", str(args.duration), "--warmup",
             str(args.warmup), "--updates", str(args.updates), "--typos", str(args.typos),
             "--label", label, *extra],
            timeout=args.duration * 4 + args.warmup + 900, check=True,
            env={**os.environ, KEY_VARIABLE: key},
        )
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", default="bench",
                        choices=("bench", "serve", "load", "update"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tracked", type=int, default=2000, help="masters with real envelopes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", default="64", type=_connection_counts,
                        help="connections; a comma-separated list runs the steady phase at each")
    parser.add_argument("--duration", type=float, default=20.0, help="steady phase, seconds")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="longest warm-up (it ends once every worker holds the views)")
    parser.add_argument("--updates", type=float, default=10.0,
                        help="new events a second in a last steady phase (0: no such phase)")
    parser.add_argument("--typos", type=float, default=0.1,
                        help="share of typo'd references in a last steady phase, after a phase "
                        "of typos only (0: neither)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the data dir")
    parser.add_argument("--baseline", metavar="REV",
                        help="first serve and load the gateway of this commit, on the same fill")
    parser.add_argument("--candidate", metavar="REV",
                        help="serve the gateway of this commit instead of the work tree (so "
                        "others' uncommitted edits in a shared checkout stay out of it)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="serve and load the variants in turn this many times (ABAB...: on "
                        "a shared machine, compare within a round)")
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)  # serve, update: the tree
    parser.add_argument("--label", default="this tree", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 <= args.typos < 1:
        parser.error("--typos is a share: 0 <= typos < 1")
    if args.role == "serve":
        if args.src is not None:
            sys.path.insert(0, str(args.src))
        serve(args.data_dir, args.port)
        return
    if args.role == "update":
        if args.src is not None:
            sys.path.insert(0, str(args.src))
        update(args.data_dir, args.updates, args.duration)
        return
    if args.role == "load":
        load(args.port, args.data_dir, os.environ[KEY_VARIABLE], args.workers,
             [int(c) for c in args.concurrency.split(",")], args.duration,
             args.warmup, args.updates, args.typos, args.label, args.src)
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    refs_file = data_dir / "refs.json"
    try:
        if not refs_file.exists():
            info = fill(data_dir, args.events, args.tracked)
            refs_file.write_text(json.dumps(info.pop("refs")))
            print(json.dumps({"fill": info}), flush=True)
        key = trader_api_key(data_dir)
        variants: list[tuple[str, Path | None]] = [("this tree", None)]
        scratch = Path(tempfile.mkdtemp(prefix="bench-tracking-src-"))
        try:
            if args.baseline or args.candidate:
                from bench.bench_visible import source_tree
            if args.candidate:
                variants = [(f"candidate {args.candidate[:9]}",
                             source_tree(args.candidate, scratch / "candidate"))]
            if args.baseline:
                variants.insert(0, (f"base {args.baseline[:9]}",
                                    source_tree(args.baseline, scratch / "base")))
            for round_ in range(max(1, args.rounds)):
                for label, src in variants:
                    if args.rounds > 1:
                        label = f"{label}, round {round_ + 1}"
                    run_variant(args, data_dir, key, label, src)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if not args.keep and args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
