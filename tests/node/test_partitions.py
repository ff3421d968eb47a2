"""Real network partitions: validators in Linux network namespaces, cut apart and healed.

Every validator runs in its own network namespace (:mod:`devnet.netns`): p2p over veth pairs on
a bridge, JSON-RPC on a management network the test always reaches. Symmetric partitions are
kernel partitions (veths moved off the bridge or taken down); delay, loss and one-way cuts are
made by the user-space relay every peer link crosses (this kernel has no ``sch_netem``, and no
iptables/nftables is installed). The validators make a heartbeat block every second (no load
needed) with a short round timeout.

What BFT promises with ``n = 3f + 1`` validators and a quorum of ``ceil(2n/3)``, checked here:

- **safety, always**: no two different blocks at one height, on any node, at any moment — every
  head seen during the run is recorded (:class:`Safety`), and at the end every node's whole
  chain is walked and compared;
- a 2|2 split has no quorum on either side: no block beyond the one already in flight;
- 3|1 isolating the proposer of the next height: the majority finalizes after a round change;
- a one-way cut (a validator hears but is not heard; two links cut in one direction only):
  the quorum that still hears itself keeps finalizing;
- 200 ms ± 50 ms delay and 5 % loss on every link: progress goes on, slower;
- after every healing: progress within 3 round timeouts (of the highest round reached), and
  every node converges to one head (same hash at the same height).

Default CI runs the relay and kernel checks and the split / isolated-proposer scenario; the
one-way, delay and loss, and seven-validator scenarios are ``slow``. Figures are printed (run
with ``-s``). Skipped, with the reason, only where namespaces cannot be created.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_utils.address import to_canonical_address

from consensus.validation import proposer_for
from devnet.errors import DevnetError
from devnet.layout import create_devnet
from devnet.netns import (
    CLEAN,
    MSS,
    RELAY_BASE_PORT,
    RTO_MIN,
    LinkPolicy,
    NetnsDevnet,
    NetnsLab,
    Relay,
    cleanup_leftovers,
    socket_in,
    unavailable_reason,
)
from node.engine import MAX_TIMEOUT_MS
from node.genesis import QbftConfig
from tests.node.test_qbft_faults import (
    block_hash,
    block_round,
    describe,
    wait,
    wait_caught_up,
)

UNAVAILABLE = unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        UNAVAILABLE is not None, reason=f"network namespaces unavailable: {UNAVAILABLE}"
    ),
]

#: Heartbeat blocks every second, a short round timeout (round r lasts 2 * 2^r s).
QBFT = QbftConfig(block_period_seconds=1, request_timeout_seconds=2, empty_block_period_seconds=1)
#: Every node's start (several Python processes on a shared machine).
READY = 180.0
#: Bound on a wait for progress or catch-up.
WAIT = 90.0
#: How long a partition without quorum is watched for (no block may be finalized).
STALL = 8.0
#: The network of the delay-and-loss scenario (issue 17).
SHAPED = LinkPolicy(delay=0.2, jitter=0.05, loss=0.05)


# -- safety -------------------------------------------------------------------------------------
class Safety:
    """Every (height, hash) any node reported: two hashes at one height fail at once."""

    def __init__(self, devnet: NetnsDevnet) -> None:
        self.devnet = devnet
        self.seen: dict[int, tuple[str, str]] = {}

    def record(self, node: int, height: int, hash_: str) -> None:
        name = self.devnet.nodes[node].name
        first = self.seen.setdefault(height, (hash_, name))
        assert first[0] == hash_, (
            f"SAFETY: block {height} is {first[0]} on {first[1]} but {hash_} on {name}"
        )

    def observe(self) -> list[int]:
        """Record every node's head now; their heights (-1 for a node that does not answer)."""
        found = []
        for i, head in enumerate(self.devnet.heads(timeout=3.0)):
            if head is not None:
                self.record(i, *head)
            found.append(-1 if head is None else head[0])
        return found

    def walk(self) -> int:
        """Walk every node's whole chain, comparing each height's hash; the heights walked."""
        heads = [h for h in self.observe() if h >= 0]
        assert len(heads) == len(self.devnet.nodes), "a node does not answer"
        for i in range(len(self.devnet.nodes)):
            for number in range(1, heads[i] + 1):
                hash_ = block_hash(self.devnet, i, number)
                assert hash_ is not None, f"{self.devnet.nodes[i].name} lost block {number}"
                self.record(i, number, hash_)
        return max(heads)


# -- steps --------------------------------------------------------------------------------------
def round_timeout(round_: int) -> float:
    """Seconds of a round's timer (request timeout doubling per round, capped)."""
    return float(min(QBFT.request_timeout_seconds * 2**round_, MAX_TIMEOUT_MS / 1000))


def top_round(devnet: NetnsDevnet) -> int:
    return max((s.round or 0) for s in devnet.statuses() if s.up)


def watch_stalled(devnet: NetnsDevnet, safety: Safety, seconds: float, what: str) -> int:
    """For ``seconds`` no node finalizes more than the block already in flight; the top seen."""
    top = max(safety.observe())
    seen = top
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = max(seen, *safety.observe())
        assert seen <= top + 1, f"{what}: height went from {top} to {seen} without a quorum"
        time.sleep(0.5)
    print(f"{what}: head {top} at the cut, {seen} after {seconds:g} s")
    return seen


def watch_progress(
    devnet: NetnsDevnet, safety: Safety, nodes: Sequence[int], blocks: int, what: str
) -> float:
    """Wait until each of ``nodes`` is ``blocks`` above the highest head now; seconds taken."""
    start = time.monotonic()
    target = max(safety.observe()) + blocks

    def done() -> bool:
        heights = safety.observe()
        return min(heights[i] for i in nodes) >= target

    wait(devnet, done, WAIT, what, nodes)
    return time.monotonic() - start


def heal_and_converge(lab: NetnsLab, devnet: NetnsDevnet, safety: Safety, what: str) -> float:
    """Heal; progress within 3 round timeouts (of the highest round reached); one head everywhere.

    Returns the seconds from healing to the first new block.
    """
    everyone = list(range(len(devnet.nodes)))
    round_ = top_round(devnet)
    top = max(safety.observe())
    healed = time.monotonic()
    lab.heal()
    bound = 3 * round_timeout(round_)
    wait(
        devnet,
        lambda: max(safety.observe()) > top,
        bound,
        f"{what}: progress within 3 round timeouts of round {round_} ({bound:g} s) after healing",
        everyone,
    )
    resumed = time.monotonic() - healed
    wait_caught_up(devnet, everyone, everyone, f"{what}: every node at one head")
    safety.observe()
    print(
        f"{what}: healed at head {top}, highest round {round_}; first new block after "
        f"{resumed:.1f} s (bound {bound:g} s); converged after {time.monotonic() - healed:.1f} s"
    )
    return resumed


def next_proposer(devnet: NetnsDevnet) -> tuple[int, int, list[bytes]]:
    """(node index, height) of the round-0 proposer of the next height, and the validators."""
    status = devnet.status(0)
    assert status.up and status.height is not None and status.validators, describe(status)
    validators = [bytes(to_canonical_address(v)) for v in status.validators]
    proposer = proposer_for(validators, status.height + 1, 0)
    p = next(i for i, n in enumerate(devnet.nodes) if to_canonical_address(n.address) == proposer)
    return p, status.height + 1, validators


def wait_round_change_past(
    devnet: NetnsDevnet, safety: Safety, p: int, height: int, validators: list[bytes], watch: int
) -> tuple[int, int, float]:
    """Wait for a block finalized in a round r > 0 at a height where node ``p`` proposed in a
    round below r (its proposal did not reach the others): (height, round, seconds)."""
    start = time.monotonic()
    address = to_canonical_address(devnet.nodes[p].address)
    checked = height - 1

    def found() -> tuple[int, int] | None:
        nonlocal checked
        head = safety.observe()[watch]
        for number in range(checked + 1, head + 1):
            round_ = block_round(devnet, watch, number)
            if address in {proposer_for(validators, number, r) for r in range(round_)}:
                return number, round_
            checked = number
        return None

    result = wait(
        devnet, found, WAIT, f"a round change past the cut-off {devnet.nodes[p].name}", [watch]
    )
    assert result is not None
    return result[0], result[1], time.monotonic() - start


@contextmanager
def lab_devnet(
    tmp_path: Path, validators: int, qbft: QbftConfig = QBFT
) -> Iterator[tuple[NetnsLab, NetnsDevnet, Safety]]:
    """A devnet of ``validators`` in a fresh lab, started; everything removed on exit."""
    layout = create_devnet(tmp_path / "net", validators=validators, observers=0, qbft=qbft)
    lab = NetnsLab(validators)
    with lab, NetnsDevnet(layout, lab) as devnet:
        started = time.monotonic()
        devnet.wait_ready(READY)
        safety = Safety(devnet)
        watch_progress(devnet, safety, range(validators), 2, "first blocks")
        print(f"{validators} validators in namespaces: 2 blocks {time.monotonic() - started:.1f} s")
        yield lab, devnet, safety
        walked = safety.walk()
        print(f"safety: {walked} heights walked on {validators} nodes, one hash each")
    assert lab.leftovers() == [], f"left behind: {lab.leftovers()}"


# -- the relay and the kernel partitions, without nodes -------------------------------------------
async def _exchange(lab: NetnsLab, relay: Relay, server_port: int) -> dict[str, float]:
    """Measure through the relay of namespace 0 to a server in namespace 1."""
    received: list[tuple[float, bytes]] = []
    server_sock = socket_in(lab.nodes[1].namespace)
    server_sock.bind((lab.nodes[1].data_ip, server_port))
    got_line, served = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")  # the server speaks first: the 1 -> 0 direction
        await writer.drain()
        try:
            while line := await reader.readline():
                received.append((time.monotonic(), line))
                got_line.set()
                writer.write(line)
                await writer.drain()
        finally:
            writer.close()
            served.set()

    server = await asyncio.start_server(serve, sock=server_sock)
    client = socket_in(lab.nodes[0].namespace)
    await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", RELAY_BASE_PORT + 1))
    reader, writer = await asyncio.open_connection(sock=client)
    figures: dict[str, float] = {}
    try:
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        # clean: an echo is fast
        sent = time.monotonic()
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        figures["clean_rtt"] = time.monotonic() - sent
        # delay 200 ms ± 50 ms each way; order kept for a burst
        relay.set_all(LinkPolicy(delay=0.2, jitter=0.05))
        sent = time.monotonic()
        for k in range(50):
            writer.write(b"%d\n" % k)
            await writer.drain()
            await asyncio.sleep(0.005)
        echoed = [await asyncio.wait_for(reader.readline(), 10) for _ in range(50)]
        assert echoed == [b"%d\n" % k for k in range(50)], "the relay reordered a stream"
        figures["delayed_burst"] = time.monotonic() - sent
        # one-way cut 0 -> 1: nothing arrives; 1 -> 0 still flows
        relay.set_all(CLEAN)
        relay.set(0, 1, LinkPolicy(cut=True))
        got_line.clear()
        count = len(received)
        writer.write(b"cut\n")
        await asyncio.sleep(1.0)
        assert len(received) == count, "a byte crossed a cut direction"
        relay.set(0, 1, CLEAN)
        await asyncio.wait_for(got_line.wait(), 5)
        assert received[-1][1] == b"cut\n"
        assert await asyncio.wait_for(reader.readline(), 5) == b"cut\n"
        # loss: segments lost and retransmitted, the stream intact
        relay.set_all(LinkPolicy(loss=0.2))
        blob = b"x" * 5_000 + b"\n"
        before = sum(relay.retransmitted.values())
        for _ in range(5):  # 4 segments each way: a chunk is late with probability 0.59
            writer.write(blob)
            assert await asyncio.wait_for(reader.readline(), 20) == blob
        figures["retransmitted_chunks"] = sum(relay.retransmitted.values()) - before
        assert figures["retransmitted_chunks"] > 0
    finally:
        writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(served.wait(), 5)
        server.close()
    return figures


def test_relay_and_kernel_partitions_without_nodes() -> None:
    port = 30_303
    with NetnsLab(2) as lab:
        relay = lab.start_relay([port, port])
        assert lab.connected(0, 1) and lab.connected(1, 0)
        figures = asyncio.run(_exchange(lab, relay, port))
        print(f"relay: {figures}")
        assert figures["clean_rtt"] < 0.15, figures
        assert 0.3 <= figures["delayed_burst"] < 2.0, figures  # two delayed legs, one burst
        lab.partition([[0], [1]])
        assert not lab.connected(0, 1), "a node moved off the bridge still reaches the other"
        lab.heal()
        assert lab.connected(0, 1)
        lab.isolate(1)
        assert not lab.connected(0, 1), "a node whose cable is pulled is still reachable"
        lab.heal()
        assert lab.connected(0, 1)
        with pytest.raises(DevnetError):
            lab.partition([[0], [0, 1]])
    assert lab.leftovers() == []


def test_loss_model_counts_segments_and_backs_off() -> None:
    relay = Relay([], [], seed=17)
    policy = LinkPolicy(delay=0.2, jitter=0.05, loss=0.05)
    assert policy.rto == pytest.approx(0.6)  # srtt 0.4 + 4 * rttvar 0.05
    for segments, expected in ((1, 0.05), (20, 1 - 0.95**20)):
        late = [relay.arrival(policy, segments * MSS, 0.0) for _ in range(20_000)]
        share = sum(lost for _, lost in late) / len(late)
        assert share == pytest.approx(expected, abs=0.015), (segments, share)
        on_time = [at for at, lost in late if not lost]
        assert min(on_time) >= 0.15 and max(on_time) <= 0.25  # 200 ms ± 50 ms
        delayed = sorted(at for at, lost in late if lost)
        assert delayed[0] >= 0.15 + policy.rto  # one RTO at least
    backed_off = [
        at
        for at, lost in (relay.arrival(LinkPolicy(loss=0.5), MSS, 0.0) for _ in range(2_000))
        if lost
    ]
    assert max(backed_off) >= RTO_MIN * 3  # lost twice: RTO, then 2 x RTO
    with pytest.raises(DevnetError):
        LinkPolicy(delay=0.1, jitter=0.2)
    with pytest.raises(DevnetError):
        LinkPolicy(loss=1.0)


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"pn{dead.pid:06x}0-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "link", "add", f"pn{dead.pid:06x}0b", "type", "bridge"], check=True)
    removed = cleanup_leftovers()
    assert name in removed and f"pn{dead.pid:06x}0b" in removed
    assert (
        name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )


# -- partitions of a running devnet ---------------------------------------------------------------
def test_split_brain_and_isolated_proposer_then_heal(tmp_path: Path) -> None:
    with lab_devnet(tmp_path, 4) as (lab, devnet, safety):
        # 2|2: no quorum anywhere
        lab.partition([[0, 1], [2, 3]])
        assert not lab.connected(0, 2)
        watch_stalled(devnet, safety, STALL, "2|2 split")
        heal_and_converge(lab, devnet, safety, "2|2 split healed")

        # 3|1 cutting off the proposer of the next height
        p, height, validators = next_proposer(devnet)
        lab.isolate(p)
        rest = [i for i in range(4) if i != p]
        number, round_, took = wait_round_change_past(
            devnet, safety, p, height, validators, rest[0]
        )
        watch_progress(devnet, safety, rest, 2, "the majority after the round change")
        stuck = safety.observe()[p]
        assert stuck <= number, f"the isolated {devnet.nodes[p].name} went on to {stuck}"
        print(
            f"3|1, proposer {devnet.nodes[p].name} of height {height} isolated: block {number} "
            f"in round {round_} after {took:.1f} s"
        )
        heal_and_converge(lab, devnet, safety, "3|1 healed")


@pytest.mark.slow
def test_one_way_cuts(tmp_path: Path) -> None:
    with lab_devnet(tmp_path, 4) as (lab, devnet, safety):
        assert lab.relay is not None
        # two links cut in one direction only: every quorum still hears itself
        lab.relay.set(0, 1, LinkPolicy(cut=True))
        lab.relay.set(2, 3, LinkPolicy(cut=True))
        took = watch_progress(devnet, safety, range(4), 5, "links 0->1 and 2->3 cut one way")
        print(f"one-way cuts 0->1, 2->3: 5 blocks in {took:.1f} s")
        heal_and_converge(lab, devnet, safety, "one-way cuts healed")

        # the proposer of the next height hears everyone, nobody hears it
        p, height, validators = next_proposer(devnet)
        for j in range(4):
            if j != p:
                lab.relay.set(p, j, LinkPolicy(cut=True))
        rest = [i for i in range(4) if i != p]
        number, round_, took = wait_round_change_past(
            devnet, safety, p, height, validators, rest[0]
        )
        watch_progress(devnet, safety, rest, 2, "the others while the proposer is mute")
        print(
            f"mute proposer {devnet.nodes[p].name} (height {height}): block {number} in round "
            f"{round_} after {took:.1f} s"
        )
        heal_and_converge(lab, devnet, safety, "mute proposer healed")


@pytest.mark.slow
def test_delay_and_loss_then_split(tmp_path: Path) -> None:
    # no heartbeat wait: blocks come as fast as consensus makes them, so the network shows
    fast = QbftConfig(
        block_period_seconds=1, request_timeout_seconds=2, empty_block_period_seconds=0
    )
    window = 30.0
    with lab_devnet(tmp_path, 4, fast) as (lab, devnet, safety):
        assert lab.relay is not None

        def rate() -> float:
            start, first = time.monotonic(), min(safety.observe())
            while time.monotonic() - start < window:
                time.sleep(1.0)
                safety.observe()
            return (min(safety.observe()) - first) / (time.monotonic() - start)

        clean = rate()
        lab.relay.set_all(SHAPED)
        shaped = rate()
        retransmitted = sum(lab.relay.retransmitted.values())
        print(
            f"blocks/s over {window:g} s: clean {clean:.2f}, 200±50 ms and 5 % loss "
            f"{shaped:.2f} ({shaped / clean:.2f}x); chunks delayed by a loss: {retransmitted}"
        )
        assert shaped > 0, "no progress under delay and loss"
        assert shaped < clean, "delay and loss did not slow the chain down"
        assert retransmitted > 0

        # a 2|2 split under the same network, healed to a clean one
        lab.partition([[0, 3], [1, 2]])
        watch_stalled(devnet, safety, STALL, "2|2 split under delay and loss")
        heal_and_converge(lab, devnet, safety, "2|2 split under delay and loss healed")


@pytest.mark.slow
def test_seven_validators_two_cut_off_then_split(tmp_path: Path) -> None:
    with lab_devnet(tmp_path, 7) as (lab, devnet, safety):
        # f = 2 cut off: the other five are a quorum
        lab.partition([[0, 1, 2, 3, 4], [5, 6]])
        took = watch_progress(devnet, safety, range(5), 3, "five of seven")
        print(f"7 validators, 2 cut off: 3 blocks in {took:.1f} s")
        heal_and_converge(lab, devnet, safety, "5|2 healed")
        # 4|3: no quorum (5) on either side
        lab.partition([[0, 2, 4, 6], [1, 3, 5]])
        watch_stalled(devnet, safety, STALL, "4|3 split")
        heal_and_converge(lab, devnet, safety, "4|3 healed")


@pytest.mark.slow
def test_long_splits_heal_within_three_round_timeouts(tmp_path: Path) -> None:
    # Longer than TCP's first retransmission back-offs, than two ping intervals (20 s: a silent
    # link is redialed) and than the nodes' idle timeout (35 s): stalled connections, not only
    # stalled rounds, must recover, and within 3 round timeouts whatever the split's length.
    with lab_devnet(tmp_path, 4) as (lab, devnet, safety):
        for seconds in (20.0, 30.0, 120.0):
            lab.partition([[0, 2], [1, 3]])
            watch_stalled(devnet, safety, seconds, f"2|2 split for {seconds:g} s")
            heal_and_converge(lab, devnet, safety, f"{seconds:g} s 2|2 split healed")
        lab.isolate(3)
        lab.isolate(1)
        watch_stalled(devnet, safety, 45.0, "two of four cables pulled for 45 s")
        heal_and_converge(lab, devnet, safety, "45 s 2 cables healed")
