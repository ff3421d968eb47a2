#!/usr/bin/env python3
"""Per-request cost of authenticating an API key: the database lookup against the cache.

    .venv/bin/python bench/bench_auth.py [--keys 200] [--active 32] [--requests 20000]
                                         [--rounds 5]

Builds an accounts database (:class:`gateway.accounts.store.Accounts`, a temporary directory) with
``--keys`` API keys over 20 active organisations, then authenticates ``--requests`` presented
keys drawn at random from ``--active`` of them (an enterprise system's few keys, sent with every
request), alternating in each of ``--rounds`` rounds between

* *database*: ``key_cache_size=0`` — every request parses the key, reads its row and its
  organisation from SQLite, hashes the secret and compares it (the path before the cache);
* *cached*: the default cache — a memory read of the credential generation, a dict lookup, the
  same hash and constant-time compare.

A third line gives a session cookie's lookup (:meth:`Accounts.authenticate_session`, not
cached) for comparison. Figures are the median over the rounds, in microseconds per request;
the ratio is database / cached. The load average is printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.accounts.store import Accounts
from gateway.principal import ROLE_SCOPES


def _per_request_us(call: Callable[[str], object], presented: list[str]) -> float:
    t0 = time.perf_counter()
    for credential in presented:
        call(credential)
    return (time.perf_counter() - t0) / len(presented) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--active", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.active <= args.keys or args.requests < 1 or args.rounds < 1:
        parser.error("need 1 <= --active <= --keys, --requests >= 1 and --rounds >= 1")

    with tempfile.TemporaryDirectory(prefix="bench-auth-") as root:
        median = _run(args, str(Path(root) / "accounts.db"))
    load = os.getloadavg()[0]
    print(f"API-key authentication, {args.requests} requests over {args.active} of "
          f"{args.keys} keys, median of {args.rounds} rounds (load average {load:.2f})")
    print(f"  database lookup (key_cache_size=0): {median['database']:7.2f} µs/request")
    print(f"  cached:                             {median['cached']:7.2f} µs/request")
    print(f"  ratio database / cached:            {median['database'] / median['cached']:7.2f}×")
    print(f"  session cookie (not cached):        {median['session']:7.2f} µs/request")
    return 0


def _run(args: argparse.Namespace, path: str) -> dict[str, float]:
    """Fill the database at ``path``, time the variants; median µs/request of each."""
    setup = Accounts(path)
    orgs = [setup.create_organisation(f"Org {i}", ["forwarder"], {}, status="active",
                                      chain_org=100 + i) for i in range(20)]
    keys = [setup.create_api_key(orgs[i % len(orgs)].id, ROLE_SCOPES["member"], f"k{i}")[1]
            for i in range(args.keys)]
    user = setup.create_user(orgs[0].id, "bench@example.org", None, "member")
    session = setup.start_session(user, via="session")
    setup.close()

    rng = random.Random(5)
    presented = [rng.choice(keys[: args.active]) for _ in range(args.requests)]
    database = Accounts(path, key_cache_size=0)
    cached = Accounts(path)
    figures: dict[str, list[float]] = {"database": [], "cached": [], "session": []}
    for _ in range(args.rounds):
        figures["database"].append(_per_request_us(database.authenticate_api_key, presented))
        figures["cached"].append(_per_request_us(cached.authenticate_api_key, presented))
        figures["session"].append(_per_request_us(
            lambda token: database.authenticate_session(token),
            [session.token] * (args.requests // 4 or 1)))
    database.close()
    cached.close()
    return {name: statistics.median(values) for name, values in figures.items()}


if __name__ == "__main__":
    raise SystemExit(main())
