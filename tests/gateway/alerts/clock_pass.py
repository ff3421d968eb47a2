"""How long the alerts' clock pass takes over many yard containers (a short measurement).

::

    .venv/bin/python -m tests.gateway.alerts.clock_pass [--containers 100000]

Builds the facts of N containers in the yard (discharged and available over the last 12 days,
mixed 20'/40'/45'/reefer, a customs hold on every 10th; data made up here), evaluates them once
(what the engine holds as the previous states), then times the clock pass at the next local
midnight: :func:`gateway.alerts.rules.due` over the open states and the wake-ups, then
:func:`gateway.alerts.rules.evaluate` of the due subjects against their previous states. The
issue's target is < 5 s for 100,000 yard containers. Not a test (nothing is asserted); the
figures go to stdout as JSON, wall and CPU time of the pass and the machine's load average
(a shared machine's wall time says little on its own).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from datetime import timedelta
from pathlib import Path

from gateway.alerts.calendar import hong_kong
from gateway.alerts.facts import Facts, Observed, build_facts
from gateway.alerts.model import by_key
from gateway.alerts.rules import Settings, due, evaluate
from gateway.alerts.tariff import load_tariff
from gateway.events.identifiers import container_check_digit
from gateway.events.model import CanonicalEvent, Reference

ROOT = Path(__file__).resolve().parents[3]
TARIFF = ROOT / "examples" / "tariffs" / "example_hk_storage.json"
CODES = ("22G1", "42G1", "45G1", "L5G1", "45R1")


def yard(count: int, now: int) -> list[Observed]:
    events: list[Observed] = []
    order = 0
    for i in range(count):
        serial = f"PCOU{i:06d}"
        box = Reference("container", serial + str(container_check_digit(serial)))
        available = now - (i % (12 * 24)) * 3600 - 1800  # spread over the last 12 days
        for kind, when, details in (("TERMINAL.DISC", available - 3600,
                                     {"ISOEquipmentCode": CODES[i % len(CODES)]}),
                                    ("TERMINAL.AVPU", available, {})):
            order += 1
            events.append(Observed(CanonicalEvent(kind, "ACT", when, box, "HKHKG", (), details),
                                   order=order, publisher="Terminal", ref=str(order)))
        if i % 10 == 0:
            order += 1
            events.append(Observed(CanonicalEvent("CUSTOMS.CUSH", "ACT", available + 60, box),
                                   order=order, publisher="Customs", ref=str(order)))
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() the long-lived facts and states before the pass, as a "
                             "long-running engine would")
    args = parser.parse_args()
    tariff = load_tariff(TARIFF.read_bytes())
    calendar = hong_kong()
    now = calendar.day_start(calendar.local_date(int(time.time()))) + 10 * 3600

    started = time.perf_counter()
    events = yard(args.containers, now)
    facts: dict[Reference, Facts] = build_facts(events)
    built = time.perf_counter() - started

    started = time.perf_counter()
    first = evaluate(facts, Settings(), tariff, None, now)
    evaluated = time.perf_counter() - started
    previous = by_key(first.alerts)
    open_states = [a for a in first.alerts if a.is_open]

    midnight = calendar.day_start(calendar.local_date(now) + timedelta(days=1))
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    baseline = time.process_time()
    sum(range(10_000_000))
    baseline = time.process_time() - baseline
    started, cpu = time.perf_counter(), time.process_time()
    subjects = due(open_states, midnight, first.wake)
    found = time.perf_counter() - started
    started = time.perf_counter()
    again = evaluate({s: facts[s] for s in subjects}, Settings(), tariff, None, midnight,
                     previous)
    refreshed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(json.dumps({
        "containers": args.containers,
        "events": len(events),
        "build_facts_s": round(built, 2),
        "first_evaluation_s": round(evaluated, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_yardstick_s": round(baseline, 3),  # sum(range(10**7)): ~0.15 s on an idle core
        "gc_freeze": args.gc_freeze,
        "alerts": len(first.alerts),
        "open": len(open_states),
        "clock_pass": {
            "due_s": round(found, 3),
            "due_subjects": len(subjects),
            "reevaluate_s": round(refreshed, 2),
            "total_s": round(found + refreshed, 2),
            "total_cpu_s": round(cpu, 2),
            "transitions": {c: sum(t.change == c for t in again.transitions)
                            for c in ("opened", "updated", "resolved")},
        },
    }, indent=1))


if __name__ == "__main__":
    main()
