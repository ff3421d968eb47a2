"""Seeded fault simulation of the QBFT core, and proof that its checkers can fail.

The default run drives 1,000 seeds (N=4 and N=7) through drops, delays, duplicates,
partitions, crash-restarts, clock skew and up to f Byzantine validators, and demands zero
violations. Planted bugs (quorum off by one, commit seals accepted from a non-validator, a
proposer that ignores the prepared certificate) must each be caught: a checker that cannot
fail proves nothing. ``SIM_SEED=123 SIM_N=7 pytest tests/consensus/test_simulator.py -k replay``
replays one seed; ``pytest -m slow`` runs 100,000 seeds.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time

import pytest

from consensus import extradata, validation
from consensus.messages import Commit
from tests.support.qbft_simulator import (
    Crash,
    Scenario,
    SimResult,
    Simulation,
    run_seed,
    seal_digest,
)


def _run_many(n: int, seeds: range, heights: int = 3) -> tuple[list[SimResult], float]:
    started = time.perf_counter()
    results = [run_seed(seed, n, heights) for seed in seeds]
    return results, time.perf_counter() - started


@pytest.mark.parametrize("n,seeds", [(4, range(0, 600)), (7, range(0, 400))])
def test_mixed_fault_seeds_have_no_violations(n: int, seeds: range) -> None:
    results, elapsed = _run_many(n, seeds)
    failures = [r.describe() for r in results if r.failed]
    agreement = [r for r in results if any(v.startswith("agreement") for v in r.violations)]
    print(f"N={n}: {len(results)} seeds in {elapsed:.1f}s ({len(results) / elapsed:.0f} seeds/s)")
    assert not agreement, agreement[0].describe()
    assert not failures, "\n".join(failures[:10])
    # The mix really exercised faults: Byzantine nodes, crashes, partitions, skew.
    scenarios = [r.scenario for r in results]
    assert sum(bool(s.byzantine) for s in scenarios) > len(seeds) // 4
    assert sum(bool(s.crashes) for s in scenarios) > len(seeds) // 10
    assert sum(any(not c.keep_record for c in s.crashes) for s in scenarios) > 0
    assert sum(any(p.asymmetric for p in s.partitions) for s in scenarios) > 0
    assert sum(s.drop > 0 for s in scenarios) > len(seeds) // 4


def test_same_seed_replays_identically() -> None:
    first = run_seed(12, 7)
    again = run_seed(12, 7)
    other = run_seed(13, 7)
    assert first.trace_hash == again.trace_hash
    assert first.events == again.events and first.end_time == again.end_time
    assert first.trace_hash != other.trace_hash


@pytest.mark.skipif("SIM_SEED" not in os.environ, reason="set SIM_SEED (and SIM_N) to replay")
def test_replay_seed_from_environment() -> None:
    result = run_seed(int(os.environ["SIM_SEED"]), int(os.environ.get("SIM_N", "4")))
    print(result.scenario)
    print(f"trace {result.trace_hash} events {result.events} heights {result.heights}")
    assert not result.failed, result.describe()


def test_real_secp256k1_signatures_and_seals_verify_with_extradata() -> None:
    """A few seeds with real keys: the sealed blocks pass extradata.verify_seals."""
    for seed in range(3):
        sim = Simulation(seed, Scenario.draw(random.Random(seed), 4, 2), "real")
        result = sim.run()
        assert not result.failed, result.describe()
        for chain in sim.chains:
            for fin in chain.values():
                extradata.verify_seals(
                    seal_digest(fin.block, fin.round), fin.seals, sim.schedule.at(1)
                )


def test_more_than_f_amnesic_restarts_are_excused_not_hidden() -> None:
    """Crash-restarts without the signing record beyond f are faulty: violations don't fail."""
    scenario = Scenario(
        n=4,
        heights=2,
        gst=6_000,
        drop=0.2,
        max_delay=300,
        crashes=(Crash(0, 1_000, 1_500, False), Crash(1, 1_200, 1_700, False)),
    )
    assert scenario.faulty == 2
    result = run_seed(1, 4, scenario=scenario)
    assert not result.faulty_within_bound
    assert not result.failed


# --------------------------------------------------------------------- planted bugs


def _violations(results: list[SimResult], prefix: str) -> list[SimResult]:
    return [r for r in results if any(v.startswith(prefix) for v in r.violations)]


def test_checker_catches_quorum_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "quorum", lambda n: extradata.quorum(n) - 1)
    results = []
    for seed in range(60):
        scenario = Scenario(
            n=4,
            heights=4,
            max_delay=200,
            delta=50,
            byzantine=((0, frozenset({"equivocate", "double_vote"})),),
        )
        results.append(run_seed(seed, 4, scenario=scenario))
    assert _violations(results, "seals"), "seals checker missed quorum - 1"
    assert _violations(results, "agreement"), "agreement checker missed quorum - 1"


def test_checker_catches_seal_from_non_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    def commit_without_membership(message: Commit, validators: object, recover: object) -> None:
        signed = message.signed
        if recover(signed.payload.signing_digest, signed.signature) != signed.author:  # type: ignore[operator]
            raise validation.InvalidMessage("signature does not recover to the author")

    monkeypatch.setattr(validation, "validate_commit", commit_without_membership)
    results = [
        run_seed(seed, 4, scenario=dataclasses.replace(Scenario(n=4, heights=2), outsider=True))
        for seed in range(10)
    ]
    caught = _violations(results, "seals")
    assert caught, "seals checker missed a non-validator seal"
    print(caught[0].describe())


def test_outsider_seals_are_refused_by_the_correct_core() -> None:
    results = [
        run_seed(seed, 4, scenario=dataclasses.replace(Scenario(n=4, heights=2), outsider=True))
        for seed in range(10)
    ]
    assert not [r.describe() for r in results if r.violations]


def test_checker_catches_proposer_ignoring_prepared_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = Scenario(n=4, heights=3, gst=10_000, commit_loss=0.8, max_delay=100, delta=50)
    correct = [run_seed(seed, 4, scenario=scenario) for seed in range(60)]
    assert not [r.describe() for r in correct if r.failed]
    monkeypatch.setattr(validation, "highest_prepared", lambda round_changes: None)
    buggy = [run_seed(seed, 4, scenario=scenario) for seed in range(60)]
    caught = _violations(buggy, "agreement")
    assert caught, "agreement checker missed a proposer that drops the prepared block"
    print(caught[0].describe())


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7])
def test_hundred_thousand_seeds(n: int) -> None:
    count = 70_000 if n == 4 else 30_000
    failures: list[str] = []
    for seed in range(1_000, 1_000 + count):
        result = run_seed(seed, n)
        if result.failed:
            failures.append(result.describe())
            print(result.describe())
    assert not failures, "\n".join(failures[:20])
