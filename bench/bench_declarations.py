"""Declarations: drafts of a large invoice, and submissions through the SIMULATED authority.

    python -m bench.bench_declarations [--lines 500] [--submissions 100] [--data-dir DIR]

1. **Drafts**: a ``--lines``-line invoice (CSV, the documented columns; half the lines food, so
   the TDEC splits) parsed, then every draft built, checked and cross-checked
   (:func:`gateway.declarations.drafts.build_drafts`: TDEC, ROCARS, ITSW) — best and median of
   20 runs, parsing apart.
2. **Submissions**: ``--submissions`` declarations put in the outbox (``declarations.db``) and
   driven by the service's worker (:meth:`DeclarationService.work`) through the HTTP connector
   to the SIMULATED authority service, started as its own process on loopback (accept after
   0.5 s, release after 1.5 s). Half-way through lodging the service is dropped and a new one
   opened on the same database (a gateway restart with submissions in flight); the figure is
   the time until every one is released with an official number, and how many were lost.

Figures go to stdout as JSON with the machine's load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from devnet.authority import AuthorityServer
from gateway.declarations import hs, invoice
from gateway.declarations.connectors import http_connectors
from gateway.declarations.drafts import build_drafts
from gateway.declarations.model import (
    DeclarationSettings,
    Party,
    Rate,
    RoadCrossing,
    ShipmentRecord,
    Sourced,
)
from gateway.declarations.service import DeclarationService
from gateway.declarations.store import DeclarationStore

HEADER = ("line,description,hs_code,quantity,unit,gross_kg,net_kg,value,currency,origin,"
          "packages,package_type,hkhs_code,cn_code,model\n")
SETTINGS = DeclarationSettings(rates=(Rate("USD", "HKD", Decimal("7.8"), "EXAMPLE", "2026-12-01"),),
                               poll_seconds=0.2, retry_base_seconds=0.1, retry_max_seconds=1.0)


def csv_invoice(lines: int) -> bytes:
    rows = []
    for i in range(1, lines + 1):
        hk, cn = ("03061790", "0306179000") if i % 2 else ("85171300", "8517130000")
        rows.append(f"{i},Goods {i},{hk[:6]},{i % 50 + 1},PCS,{i % 7 + 2}.5,{i % 7 + 1},"
                    f"{100 + i}.25,USD,CN,{i % 5 + 1},CT,{hk},{cn},M{i}")
    return (HEADER + "\n".join(rows) + "\n").encode()


def record() -> ShipmentRecord:
    return ShipmentRecord(
        reference="PCOL1234567", kind="mbl", direction="import", bills=("PCOL1234567",),
        mode=Sourced("sea", "bench"), vessel=Sourced({"name": "EVER GIVEN"}, "bench"),
        voyage=Sourced("021E", "bench"), port_of_loading=Sourced("CNYTN", "bench"),
        port_of_discharge=Sourced("HKHKG", "bench"), arrival=Sourced(int(time.time()), "bench"),
        declarant=Party("Sino Trading", "8 Harbour Road", "HK", "", "bench"),
        consignor=Party("Phone Works", "1 Keji Road", "CN", "91350100M000100Y43", "bench"),
        consignee=Party("Sino Trading", "8 Harbour Road", "HK", "", "bench"))


def drafts(lines: int) -> dict[str, Any]:
    data = csv_invoice(lines)
    nomenclature = hs.shipped()
    parse_times, build_times = [], []
    parsed = invoice.parse_csv(data)
    assert parsed.ok, parsed.errors[:3]
    crossing = RoadCrossing("AB1234", int(time.time()) + 3600)
    found = None
    for _ in range(20):
        t0 = time.perf_counter()
        parsed = invoice.parse_csv(data)
        t1 = time.perf_counter()
        found = build_drafts(record(), parsed.lines, SETTINGS, nomenclature, now=int(time.time()),
                             authorities=("hk-tdec", "hk-rocars", "cn-itsw"), crossing=crossing)
        t2 = time.perf_counter()
        parse_times.append(t1 - t0)
        build_times.append(t2 - t1)
    assert found is not None
    assert found.ok, [(d.key, d.issues[:2]) for d in found.drafts]
    return {"lines": lines, "drafts": [d.key for d in found.drafts],
            "parse_ms_median": round(statistics.median(parse_times) * 1000, 1),
            "drafts_ms_best": round(min(build_times) * 1000, 1),
            "drafts_ms_median": round(statistics.median(build_times) * 1000, 1)}


def document(i: int) -> dict[str, Any]:
    return {"key": f"itsw:B{i}", "authority": "cn-itsw",
            "fields": {"IEFlag": "E", "CustomMaster": "5300", "TradeCoScc": "91350100M000100Y43"},
            "lines": [{"GNo": 1, "CodeTS": "8517130000", "GModel": "X1"}]}


async def submissions(count: int, folder: Path) -> dict[str, Any]:
    server = AuthorityServer(folder / "authority", accept_after=0.5, release_after=1.5,
                             query_after=0.5).start()
    try:
        secret = os.urandom(32)
        async with aiohttp.ClientSession() as session:
            def service() -> DeclarationService:
                return DeclarationService(
                    store=DeclarationStore(folder / "declarations.db", secret=secret),
                    settings=SETTINGS, accounts=None,
                    tracking=None, nomenclature=hs.shipped(),
                    connectors=http_connectors(server.url, session, timeout_seconds=5))
            first = service()
            t0 = time.perf_counter()
            for i in range(count):
                shipment, _ = first.store.put_shipment(1, f"B{i}", {"lines": [], "options": {}},
                                                       [])
                first.store.enqueue(shipment, f"itsw:B{i}", "cn-itsw", document(i), "bench")
            # lodge about half, then "restart": a new service over the same database
            half = first.store.due(time.time(), limit=count // 2)
            for sub in half:
                await first._advance(sub)
            first.store.close()
            second = service()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                await second.work()
                counts = second.store.counts()
                if counts.get("released", 0) == count:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            counts = second.store.counts()
            numbers = {s.number for i in range(count) for s in
                       second.store.submissions_of(i + 1) if s.number}
            second.store.close()
    finally:
        server.stop()
    return {"submissions": count, "released": counts.get("released", 0),
            "distinct_numbers": len(numbers), "lost": count - counts.get("released", 0),
            "seconds": round(elapsed, 2), "per_minute": round(count / elapsed * 60, 1),
            "statuses": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    out: dict[str, Any] = {"load_average": os.getloadavg()}
    out["drafts"] = drafts(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_dir or Path(tmp)
        out["submissions"] = asyncio.run(submissions(args.submissions, folder))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
