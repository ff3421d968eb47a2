"""Land leg: pick-up token (QR) verification time, token size, QR rendering.

Three measurements, each over ``--tokens`` different tokens (2 containers, a CCRN; the claims a
real job carries), signed with a land key made from a keystore-sized secret:

(a) **offline verification** — :func:`gateway.land.token.verify` (form, key id, Ed25519
    signature, canonical-JSON claims against their schema, validity window): what a terminal's
    or warehouse's own verifier does with the published key. Target: < 5 ms per token.
(b) **verification at the gate** — :meth:`gateway.land.service.LandService.check_token` on a
    ``land.db`` in a temporary folder holding the tokens' jobs: (a) plus the job's state, the
    token's nonce against the job's current one (revocation) and the used-nonce lookup (replay).
    The chain check that follows at a gate-out (the pick-up right from the current events) is
    the tracking read the other benches measure.
(c) **QR code** — the token's length, the QR version segno picks (error correction M), and the
    time to render SVG and PNG.

Run: ``.venv/bin/python -m bench.bench_land [--tokens 2000]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import segno
from aiohttp import web

from gateway.events.identifiers import container_check_digit
from gateway.land import token as tokens
from gateway.land.api import qr_image
from gateway.land.model import Job, Place
from gateway.land.service import LandService, LandSettings, new_job_id
from gateway.land.store import open_store
from gateway.principal import Principal


def _box(owner: str, serial: int) -> str:
    first = f"{owner}{serial:06d}"
    return first + str(container_check_digit(first))


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def _stats(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (f"median {statistics.median(ordered):.3f} ms, p95 {p95:.3f} ms, "
            f"max {ordered[-1]:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    n = max(10, args.tokens)
    key = tokens.key_from_secret(secrets.token_bytes(32))
    now = int(time.time())
    who = Principal(org_id=1, chain_org=2, user_id=None, role="system", scopes=frozenset(),
                    via="api_key")
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder), secret=secrets.token_bytes(32))
        service = LandService(web.Application(), store, key, LandSettings())
        texts = []
        for i in range(n):
            boxes = (_box("CSQU", 2 * i), _box("CSQU", 2 * i + 1))
            job = Job(id=new_job_id(), org_id=1, haulier=7, containers=boxes,
                      pickup=Place(2, "HKHKG", "HIT4"), delivery=Place(8, "HKHKG", "Tsing Yi"),
                      window_from=now - 3600, window_to=now + 3600, vehicle="AB1234",
                      ccrn="RI261207000123", driver_id=None, nonce=tokens.new_nonce(),
                      created=now)
            store.add_job(job)
            claims = tokens.Claims(job=job.id, containers=boxes,
                                   rights={b: "carrier-release" for b in boxes},
                                   ccrn=job.ccrn, vehicle=job.vehicle, terminal=2, warehouse=8,
                                   not_before=job.window_from, expires=job.window_to,
                                   nonce=job.nonce)
            texts.append(tokens.sign(claims, key))
        public = key.public_key()
        it = iter(texts * 2)
        offline = _timed(lambda: tokens.verify(next(it), public, now), n)
        it = iter(texts * 2)
        at_gate = _timed(lambda: service.check_token(next(it), "gate-out", who), n)
        store.close()
    sample = texts[0]
    qr = segno.make_qr(sample, error="m")
    svg = _timed(lambda: qr_image(sample, "svg"), 50)
    png = _timed(lambda: qr_image(sample, "png"), 50)
    print(f"tokens: {n}, {len(sample)} characters each (2 containers, CCRN); QR version "
          f"{qr.version} ({qr.symbol_size()[0]} modules with the quiet zone), level M")
    print(f"(a) offline verification: {_stats(offline)}  (target < 5 ms)")
    print(f"(b) verification at the gate (+ job state, revocation, replay lookups in land.db): "
          f"{_stats(at_gate)}")
    print(f"(c) QR rendering: SVG {_stats(svg)}; PNG {_stats(png)}")


if __name__ == "__main__":
    main()
