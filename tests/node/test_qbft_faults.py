"""QBFT under faults, with real node processes on loopback and load that never stops.

A devnet (validators plus one observer, each its own OS process) runs a short round timeout
while a background :class:`~devnet.load.CargoLoad` sends ``record()`` transactions to the
observer — the one node no test step stops — which gossips them to the validators. The steps
crash validators (SIGKILL), freeze one (SIGSTOP / SIGCONT) and restart the crashed ones, and
check what BFT promises with ``n = 3f + 1`` validators and a quorum of ``ceil(2n/3)``:

- up to ``f`` faulty validators: the chain keeps finalizing blocks;
- more than ``f``: no new block is finalized (one already voted may still land);
- faults healed: progress resumes and every node catches up to the same chain;
- a frozen proposer: its round times out, the next proposer's round finalizes (extraData
  round > 0).

At the end every node reports the same head, no node halted, and every transaction the
network accepted (a JSON-RPC success answer) is in the chain exactly once with a successful
receipt. Figures (round-change and catch-up times) are printed; run with ``-s`` to see them.
Every wait is bounded; a wait that runs out fails with every node's status and the log tail of
the nodes it waited for.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from eth_utils import to_canonical_address

from consensus import extradata
from consensus.validation import proposer_for
from devnet.errors import DevnetTimeout
from devnet.jsonrpc import wait_for
from devnet.layout import DevnetLayout, create_devnet
from devnet.load import CargoLoad, LoadReport
from devnet.processes import Devnet
from devnet.status import NodeStatus
from node.genesis import QbftConfig

pytestmark = pytest.mark.integration

T = TypeVar("T")

#: A short round timeout, so that round changes happen within the test's waits.
QBFT = QbftConfig(block_period_seconds=1, request_timeout_seconds=2)
#: Cargo events per transaction (small: the load only has to keep blocks coming).
EVENTS_PER_TX = 10
#: How long a stall must last to count as "no new finalized block".
STALL_SECONDS = 8.0
#: Bound on any one wait for progress or catch-up.
WAIT = 90.0
#: Bound on the start of the devnet's processes (several Python processes on a shared machine).
READY = 180.0
#: Bound on the load's end: inclusion of what is still pending, then the accounting scan.
SETTLE = 90.0


# -- what the nodes report ----------------------------------------------------------------------
def describe(status: NodeStatus) -> str:
    if not status.up:
        return f"{status.name}: down ({status.error})"
    head = (status.head_hash or "?")[:12]
    return (
        f"{status.name}: height {status.height} head {head} round {status.round} "
        f"roundChanges {status.round_changes} peers {len(status.peers or ())} "
        f"pending {status.pending} halted {status.halted} ({status.process})"
    )


def diagnosis(devnet: Devnet, suspects: Sequence[int]) -> str:
    """Every node's status, then the log tail of the ``suspects``."""
    lines = [describe(s) for s in devnet.statuses(timeout=2.0)]
    for i in suspects:
        lines.append(f"--- log tail of {devnet.nodes[i].name}:\n{devnet.log_tail(i, 2500)}")
    return "\n".join(lines)


def wait(
    devnet: Devnet,
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    suspects: Sequence[int],
) -> T:
    """:func:`~devnet.jsonrpc.wait_for`; on timeout, fail with :func:`diagnosis` of ``suspects``."""
    try:
        return wait_for(predicate, timeout, interval=0.25, what=what)
    except DevnetTimeout as exc:
        pytest.fail(f"{exc}\n{diagnosis(devnet, suspects)}")


def heights(devnet: Devnet, nodes: Sequence[int]) -> dict[int, int | None]:
    heads = devnet.heads(timeout=3.0, nodes=nodes)
    return {i: None if heads[i] is None else heads[i][0] for i in nodes}


def lowest(devnet: Devnet, nodes: Sequence[int]) -> int:
    """The lowest head height among ``nodes``; -1 if one of them does not answer."""
    found = heights(devnet, nodes).values()
    return -1 if None in found else min(h for h in found if h is not None)


def highest(devnet: Devnet, nodes: Sequence[int]) -> int:
    return max((h for h in heights(devnet, nodes).values() if h is not None), default=-1)


def round_changes(devnet: Devnet, nodes: Sequence[int]) -> int:
    """Round changes the validators among ``nodes`` entered (``roundChanges``), summed."""
    return sum(devnet.status(i).round_changes or 0 for i in nodes if devnet.nodes[i].is_validator)


def block_hash(devnet: Devnet, i: int, number: int) -> str | None:
    block = devnet.rpc(i, "eth_getBlockByNumber", [hex(number), False])
    return None if block is None else str(block["hash"])


def block_round(devnet: Devnet, i: int, number: int) -> int:
    """The consensus round in which block ``number`` was finalized (its extraData)."""
    block = devnet.rpc(i, "eth_getBlockByNumber", [hex(number), False])
    return extradata.decode(bytes.fromhex(block["extraData"][2:])).round


# -- steps --------------------------------------------------------------------------------------
def wait_progress(devnet: Devnet, live: Sequence[int], blocks: int, what: str) -> float:
    """Wait until every live node is ``blocks`` above the highest head now; seconds taken."""
    start = time.monotonic()
    target = highest(devnet, live) + blocks
    wait(devnet, lambda: lowest(devnet, live) >= target, WAIT, what, live)
    return time.monotonic() - start


def check_stalled(devnet: Devnet, live: Sequence[int], what: str) -> int:
    """For :data:`STALL_SECONDS`, no live node finalizes more than the block already in flight.

    Returns the highest head seen (the stall height).
    """
    top = highest(devnet, live)
    deadline = time.monotonic() + STALL_SECONDS
    seen = top
    while time.monotonic() < deadline:
        seen = max(seen, highest(devnet, live))
        assert seen <= top + 1, (
            f"{what}: height went from {top} to {seen} without a quorum\n{diagnosis(devnet, live)}"
        )
        time.sleep(0.5)
    print(f"{what}: head {top} at the fault, {seen} after {STALL_SECONDS:g} s")
    return seen


def wait_caught_up(
    devnet: Devnet, laggards: Sequence[int], others: Sequence[int], what: str
) -> float:
    """Wait until the laggards hold the others' current head, with the same hash; seconds.

    The others' current head is the highest of them: the rest of them (an observer a block
    behind) must reach it too before the hashes are compared.
    """
    start = time.monotonic()
    nodes = [*laggards, *others]
    target = highest(devnet, others)
    wait(devnet, lambda: lowest(devnet, nodes) >= target, WAIT, what, laggards)
    hashes = {devnet.nodes[i].name: block_hash(devnet, i, target) for i in nodes}
    assert len(set(hashes.values())) == 1, f"{what}: block {target} differs: {hashes}"
    return time.monotonic() - start


def freeze_proposer(devnet: Devnet, live: Sequence[int], watch: int) -> None:
    """SIGSTOP the proposer of the next height; wait for a round change and progress; SIGCONT.

    Should the next block land before the signal, the frozen validator's turn comes again
    within ``n`` heights: the wait covers that. The round change counts when a block is
    finalized in a round ``r > 0`` of a height at which the frozen validator proposes in one of
    the rounds ``0..r-1``.
    """
    status = devnet.status(live[0])
    assert status.up and status.height is not None and status.validators, describe(status)
    validators = [to_canonical_address(v) for v in status.validators]
    proposer = proposer_for(validators, status.height + 1, 0)
    p = next(i for i, n in enumerate(devnet.nodes) if to_canonical_address(n.address) == proposer)
    rest = [i for i in live if i != p]
    changes_before = round_changes(devnet, rest)

    devnet.stop_process(p)
    frozen_at = time.monotonic()
    checked = status.height

    def round_change_block() -> tuple[int, int] | None:
        """(height, round) of the first block whose earlier rounds the frozen one owned."""
        nonlocal checked
        head = highest(devnet, [watch])
        for number in range(checked + 1, head + 1):
            round_ = block_round(devnet, watch, number)
            if proposer in {proposer_for(validators, number, r) for r in range(round_)}:
                return number, round_
            checked = number
        return None

    number, round_ = wait(
        devnet,
        round_change_block,
        WAIT,
        f"a round change past the frozen {devnet.nodes[p].name}",
        rest,
    )
    round_change = time.monotonic() - frozen_at
    # progress goes on past the round change while the proposer is still frozen
    wait(
        devnet, lambda: lowest(devnet, rest) > number, WAIT, "progress after the round change", rest
    )
    changes = round_changes(devnet, rest)
    frozen_for = time.monotonic() - frozen_at
    assert frozen_for > QBFT.request_timeout_seconds
    devnet.cont(p)
    catch_up = wait_caught_up(
        devnet, [p], rest, f"{devnet.nodes[p].name} catching up after SIGCONT"
    )
    print(
        f"frozen proposer {devnet.nodes[p].name} (height {status.height + 1}): block {number} "
        f"finalized in round {round_} {round_change:.1f} s after SIGSTOP; frozen "
        f"{frozen_for:.1f} s; round changes entered by the others: {changes - changes_before}; "
        f"caught up {catch_up:.1f} s after SIGCONT"
    )


# -- load and final checks ----------------------------------------------------------------------
@contextmanager
def background_load(devnet: Devnet, rate: float) -> Iterator[Callable[[], LoadReport]]:
    """Run a :class:`CargoLoad` on the observer until the caller asks for its report.

    Yields ``finish()``: stop sending, wait for inclusion of what was accepted, return the
    report. Leaving the block stops the load in any case.
    """
    observer = len(devnet.layout.validators)
    load = CargoLoad(devnet, events_per_tx=EVENTS_PER_TX, endpoints=[observer], watch=observer)
    stop = threading.Event()
    outcome: list[LoadReport | BaseException] = []

    def run() -> None:
        try:
            outcome.append(load.run(rate, 3600.0, settle=SETTLE, stop=stop))
        except BaseException as exc:  # surfaced by finish()
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="fault-test-load")
    thread.start()

    def finish() -> LoadReport:
        stop.set()
        thread.join(SETTLE + 120)
        assert outcome, f"the load did not finish\n{diagnosis(devnet, [observer])}"
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    try:
        yield finish
    finally:
        stop.set()
        thread.join(SETTLE + 120)


def check_final_state(devnet: Devnet, report: LoadReport) -> None:
    """Same head everywhere, no halt, every accepted transaction in the chain exactly once."""
    everyone = list(range(len(devnet.nodes)))
    observer = len(devnet.layout.validators)

    def agreed() -> bool:
        heads = devnet.heads(timeout=3.0)
        return None not in heads and len(set(heads)) == 1

    wait(devnet, agreed, WAIT, "every node at the same head", everyone)
    statuses = devnet.statuses()
    assert all(s.up and s.halted is None for s in statuses), "\n".join(map(describe, statuses))

    assert report.accepted > 0 and len(report.accepted_hashes) == report.accepted, report.describe()
    assert report.lost == report.duplicated == report.hash_mismatches == 0, report.describe()
    head = highest(devnet, [observer])
    occurrences: Counter[str] = Counter()
    block_of: dict[str, int] = {}
    for number in range(1, head + 1):
        block = devnet.rpc(observer, "eth_getBlockByNumber", [hex(number), False])
        for tx_hash in block["transactions"]:
            occurrences[tx_hash] += 1
            block_of[tx_hash] = number
    wrong = {h: occurrences[h] for h in report.accepted_hashes if occurrences[h] != 1}
    assert not wrong, f"accepted transactions not in the chain exactly once: {wrong}"
    # receipts from a validator (another node's copy of the chain than the scan's)
    for tx_hash in report.accepted_hashes:
        receipt = devnet.rpc(0, "eth_getTransactionReceipt", [tx_hash])
        assert receipt is not None and receipt["status"] == "0x1", (tx_hash, receipt)
        assert int(receipt["blockNumber"], 16) == block_of[tx_hash], (tx_hash, receipt)
    print(report.describe())
    print(f"final head {head}: {len(report.accepted_hashes)} accepted transactions, each once")


def devnet_with(tmp_path: Path, validators: int) -> DevnetLayout:
    return create_devnet(tmp_path / "net", validators=validators, observers=1, qbft=QBFT)


# -- tests --------------------------------------------------------------------------------------
def test_four_validators_survive_crashes_and_a_frozen_proposer(tmp_path: Path) -> None:
    layout = devnet_with(tmp_path, 4)
    observer = 4
    a, b = 1, 2
    with Devnet(layout) as devnet:
        devnet.wait_ready(READY)
        with background_load(devnet, rate=3.0) as finish_load:
            everyone = list(range(5))
            wait_progress(devnet, everyone, 2, "first blocks under load")

            devnet.kill(a)
            live = [0, 2, 3, observer]
            took = wait_progress(devnet, live, 3, f"progress with {devnet.nodes[a].name} killed")
            print(f"f = 1 crashed: 3 blocks in {took:.1f} s")

            devnet.kill(b)
            live = [0, 3, observer]
            stalled_at = check_stalled(devnet, live, "two of four validators killed")

            restarted = time.monotonic()
            devnet.start_node(a)
            devnet.start_node(b)
            devnet.wait_ready(READY, nodes=[a, b])
            wait(
                devnet,
                lambda: highest(devnet, live) > stalled_at,
                WAIT,
                "progress after restarting the crashed validators",
                everyone,
            )
            resumed = time.monotonic() - restarted
            wait_caught_up(devnet, [a, b], live, "restarted validators catching up")
            caught_up = time.monotonic() - restarted
            print(
                f"stalled at {stalled_at}; after the restarts: progress in {resumed:.1f} s, "
                f"both restarted validators at the head in {caught_up:.1f} s"
            )

            freeze_proposer(devnet, [0, 1, 2, 3, observer], observer)
            report = finish_load()
        check_final_state(devnet, report)


def test_seven_validators_tolerate_two_faulty(tmp_path: Path) -> None:
    layout = devnet_with(tmp_path, 7)
    observer = 7
    crashed = [1, 4]  # not adjacent in proposer order: no height waits for two dead proposers
    frozen = 6
    with Devnet(layout) as devnet:
        devnet.wait_ready(READY)
        with background_load(devnet, rate=1.5) as finish_load:
            everyone = list(range(8))
            wait_progress(devnet, everyone, 2, "first blocks under load")

            for i in crashed:
                devnet.kill(i)
            live = [0, 2, 3, 5, 6, observer]
            took = wait_progress(devnet, live, 3, "progress with two validators killed")
            print(f"f = 2 crashed: 3 blocks in {took:.1f} s")

            devnet.stop_process(frozen)
            live = [0, 2, 3, 5, observer]
            stalled_at = check_stalled(devnet, live, "a third of seven validators frozen")

            devnet.cont(frozen)
            resumed_at = time.monotonic()
            live = [0, 2, 3, 5, 6, observer]
            wait(
                devnet,
                lambda: highest(devnet, live) > stalled_at,
                WAIT,
                "progress after SIGCONT",
                live,
            )
            resumed = time.monotonic() - resumed_at
            print(f"stalled at {stalled_at}; progress {resumed:.1f} s after SIGCONT")

            restarted = time.monotonic()
            for i in crashed:
                devnet.start_node(i)
            devnet.wait_ready(READY, nodes=crashed)
            started = time.monotonic() - restarted
            wait_caught_up(devnet, crashed, live, "restarted validators catching up")
            caught_up = time.monotonic() - restarted
            print(
                f"after the restarts: answering in {started:.1f} s, at the head in {caught_up:.1f} s"
            )
            wait_progress(devnet, everyone, 2, "progress with every validator back")
            report = finish_load()
        check_final_state(devnet, report)
