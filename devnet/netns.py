"""A devnet whose nodes live in Linux network namespaces: real partitions, delay, loss, cuts.

Topology (one *lab* per run, every name starting with a per-run prefix ``pn<pid><n>``)::

    root namespace                          namespace <prefix>-<i>  (one per node)
    ──────────────                          ─────────────────────────────────────────
    bridge <prefix>b   (data, no address) ─ veth <prefix>d<i> ──  data0  10.251.X.(10+i)/24  p2p
    bridge <prefix>m   10.250.X.1/24      ─ veth <prefix>m<i> ──  mgmt0  10.250.X.(10+i)/24  RPC
                                                                   lo 127.0.0.1  relay ports

- **Data network** (p2p only). Node ``i`` listens for peers on its data address. A symmetric
  partition is a kernel partition: :meth:`NetnsLab.partition` moves the data veths of every
  group but the first onto a bridge of their own (no route joins the bridges),
  :meth:`NetnsLab.isolate` takes a node's data veth down (a pulled cable). TCP connections across
  the cut stall exactly as on a real network (retransmissions with back-off, then the nodes' own
  timeouts); :meth:`NetnsLab.heal` puts every veth back on the one bridge.
- **Management network** (JSON-RPC only), never partitioned: the root namespace holds
  10.250.X.1, so the test reaches every node's RPC even while the node is cut off from its
  peers. Nodes never dial it (their peer lists name the relay, which dials data addresses).
- **Relay** (:class:`Relay`). This kernel has no ``sch_netem`` (``tc qdisc add ... netem`` is
  "unknown qdisc"; no package can bring a kernel module) and no iptables/nftables, so delay,
  loss and one-way cuts are made in user space. Node ``i``'s peer list names, for peer ``j``,
  ``127.0.0.1:RELAY_BASE_PORT + j`` *inside namespace i*; the relay accepts there and dials
  ``j``'s data address from inside namespace ``i`` (a socket belongs to the namespace its
  creating thread is in: the relay thread ``setns(2)``-es around ``socket()``). So the relayed
  connection still crosses i's veth and the bridge, and a kernel partition cuts it too. Bytes
  the dialer sends follow the policy of the direction ``i → j``, its peer's answers ``j → i``
  (:class:`LinkPolicy`, changed at any time per ordered pair).

Why loss is modelled as retransmission delay. Peer connections are TLS 1.3: the relay sees
ciphertext, not :mod:`node.p2p_frames` frames, and dropping bytes from a TLS stream does not
lose a message, it kills the connection (record MAC failure) — a reset, not loss. On a real
network TCP hides a lost segment by retransmitting it: the loss becomes a delay of one
retransmission timeout for that segment *and everything behind it* (head-of-line blocking).
The relay does exactly that: it cuts each chunk it forwards into segments of :data:`MSS` bytes,
each lost with probability ``loss``; a chunk with a lost segment is delivered one RTO later
(RTO doubling for a segment lost again, as TCP backs off; the segments of one chunk are
retransmitted together, as with SACK), and the stream's order is kept, so every chunk behind it
waits too. Delay is per chunk, ``delay ± jitter`` (uniform), never
reordering the stream. A one-way cut ``i → j`` stops forwarding in that direction (the bytes
wait, as unacknowledged segments wait in a TCP send buffer; once the relay's bounded queue is
full it stops reading, the sender's socket buffer fills and its writes time out), while
``j → i`` flows: handshakes in either direction stall, existing links go silent one way.

Cleanup: :meth:`NetnsLab.close` (also on ``with`` exit and at interpreter exit) stops the relay,
deletes the namespaces (their veth ends go with them), the veths and the bridges, and tolerates
half-built labs. :func:`cleanup_leftovers` removes what a crashed run left: every namespace and
link with the lab tag whose creating process is gone (the processes still inside such a
namespace — nodes of that run — are killed first).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from devnet.errors import DevnetError
from devnet.layout import DevnetLayout
from devnet.processes import Devnet

#: Every namespace, link and bridge of a lab starts with this tag, then the creator's pid.
TAG = "pn"
#: Relay port inside namespace ``i`` for peer ``j``: ``RELAY_BASE_PORT + j``.
RELAY_BASE_PORT = 20_000
#: Segment size the loss model counts in (Ethernet MSS with TCP timestamps).
MSS = 1448
#: Smallest retransmission timeout (Linux ``TCP_RTO_MIN``), seconds.
RTO_MIN = 0.2
#: Chunks waiting in one direction of one relayed connection before the relay stops reading.
RELAY_QUEUE = 64
#: A port nothing listens on: a connect to it is refused by a reachable host.
PROBE_PORT = 9
#: Bound on the relay's connect to a peer's data address.
RELAY_CONNECT_TIMEOUT = 5.0
#: ``setns(2)`` flag of a network namespace.
CLONE_NEWNET = 0x40000000

_counter = itertools.count()
_LEFTOVER = re.compile(rf"^{TAG}([0-9a-f]{{6}})[0-9a-z]")


class NetnsUnavailable(DevnetError):
    """Network namespaces cannot be created here (not root, no ``ip``, or the kernel refuses)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip args``; :class:`DevnetError` with its stderr if it fails and ``check``."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=False
    )  # fmt: skip
    if check and done.returncode != 0:
        raise DevnetError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or ``None`` when they can (tries one)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); not running as root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{TAG}{os.getpid():06x}z"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers() -> list[str]:
    """Delete the namespaces, links and bridges of labs whose creating process is gone.

    Returns the names removed. Processes still inside such a namespace (nodes of the crashed
    run) are killed first, so that the namespace really goes.
    """
    removed: list[str] = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _LEFTOVER.match(name)
        if found is None or _pid_alive(int(found.group(1), 16)):
            continue
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        found = _LEFTOVER.match(name)
        if found is None or _pid_alive(int(found.group(1), 16)):
            continue
        if _ip("link", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


# -- the relay ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkPolicy:
    """What one direction of a link does to the bytes crossing it."""

    delay: float = 0.0
    """Mean one-way delay, seconds."""
    jitter: float = 0.0
    """Delay varies uniformly in ``delay ± jitter`` (the stream's order is kept)."""
    loss: float = 0.0
    """Probability that a segment of :data:`MSS` bytes is lost (and retransmitted one RTO later)."""
    cut: bool = False
    """Nothing crosses in this direction while set."""

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0 or self.jitter > self.delay + 1e-12:
            raise DevnetError(f"delay {self.delay} ± {self.jitter}: need 0 <= jitter <= delay")
        if not 0.0 <= self.loss < 1.0:
            raise DevnetError(f"loss {self.loss}: need 0 <= loss < 1")

    @property
    def rto(self) -> float:
        """Retransmission timeout of a connection whose both directions look like this one:
        Linux's ``srtt + 4 * rttvar`` with the round trip ``2 * delay``, at least ``RTO_MIN``."""
        return max(RTO_MIN, 2 * self.delay + 4 * self.jitter)


CLEAN = LinkPolicy()


@dataclass
class _Direction:
    policy: LinkPolicy
    open: asyncio.Event


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise DevnetError(f"setns: {os.strerror(err)}")


def _socket_via(target_fd: int, home_fd: int) -> socket.socket:
    _setns(target_fd)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        _setns(home_fd)
    sock.setblocking(False)
    return sock


def socket_in(namespace: str) -> socket.socket:
    """A non-blocking TCP socket of ``namespace``, made on the calling thread (which
    ``setns(2)``-es there and back): whatever it binds or connects to is in that namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            return _socket_via(target, home)
        finally:
            os.close(target)
    finally:
        os.close(home)


class Relay:
    """The user-space middle of every peer link: per-direction delay, loss and cuts.

    Runs its own asyncio loop in a daemon thread. ``namespaces[i]`` is the name of node ``i``'s
    namespace, ``targets[j]`` node ``j``'s data ``(address, p2p port)``. Thread-safe setters.
    """

    def __init__(
        self, namespaces: Sequence[str], targets: Sequence[tuple[str, int]], seed: int = 17
    ) -> None:
        self.namespaces = list(namespaces)
        self.targets = list(targets)
        self.random = random.Random(seed)
        #: Per ordered pair ``(i, j)``: bytes forwarded, chunks, chunks delayed by a loss.
        self.bytes: Counter[tuple[int, int]] = Counter()
        self.chunks: Counter[tuple[int, int]] = Counter()
        self.retransmitted: Counter[tuple[int, int]] = Counter()
        self.connections: Counter[tuple[int, int]] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="relay")
        self._dirs: dict[tuple[int, int], _Direction] = {}
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ns_fds: list[int] = []
        self._home_fd = -1

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Relay:
        self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._ns_fds = [os.open(f"/run/netns/{ns}", os.O_RDONLY) for ns in self.namespaces]
        self._thread.start()
        self._call(self._start_servers(), 30.0)
        return self

    def close(self) -> None:
        """Stop accepting, close every relayed connection, stop the thread, close the fds."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown(), 10.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        for fd in [*self._ns_fds, self._home_fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ns_fds, self._home_fd = [], -1

    def _call(self, coro: Coroutine[Any, Any, None], timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- policies -----------------------------------------------------------------------------
    def set(self, i: int, j: int, policy: LinkPolicy) -> None:
        """Direction ``i → j`` follows ``policy`` from its next chunk on."""
        if i == j or not (0 <= i < len(self.targets) and 0 <= j < len(self.targets)):
            raise DevnetError(f"no link {i} -> {j} among {len(self.targets)} nodes")
        self._call(self._set(i, j, policy), 10.0)

    def set_all(self, policy: LinkPolicy) -> None:
        """Every direction of every link follows ``policy``."""
        for i, j in itertools.permutations(range(len(self.targets)), 2):
            self.set(i, j, policy)

    def policy(self, i: int, j: int) -> LinkPolicy:
        return self._direction(i, j).policy

    async def _set(self, i: int, j: int, policy: LinkPolicy) -> None:
        d = self._direction(i, j)
        d.policy = policy
        if policy.cut:
            d.open.clear()
        else:
            d.open.set()

    def _direction(self, i: int, j: int) -> _Direction:
        d = self._dirs.get((i, j))
        if d is None:
            d = self._dirs[(i, j)] = _Direction(CLEAN, asyncio.Event())
            d.open.set()
        return d

    # -- sockets in namespaces ----------------------------------------------------------------
    def _socket_in(self, i: int) -> socket.socket:
        """A TCP socket of namespace ``i`` (made on the relay thread, which returns home)."""
        return _socket_via(self._ns_fds[i], self._home_fd)

    async def _start_servers(self) -> None:
        for i, j in itertools.permutations(range(len(self.targets)), 2):
            self._direction(i, j)
            sock = self._socket_in(i)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", RELAY_BASE_PORT + j))
            server = await asyncio.start_server(functools.partial(self._accept, i, j), sock=sock)
            self._servers.append(server)

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- forwarding ---------------------------------------------------------------------------
    async def _accept(
        self, i: int, j: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        sock = self._socket_in(i)
        try:
            await asyncio.wait_for(
                self._loop.sock_connect(sock, self.targets[j]), RELAY_CONNECT_TIMEOUT
            )
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError):
            sock.close()
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self.connections[(i, j)] += 1
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, i, j)),
            asyncio.ensure_future(self._pump(up_reader, writer, j, i)),
        ]
        for pump in pumps:
            self._tasks.add(pump)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            for pump in pumps:
                self._tasks.discard(pump)

    def arrival(self, policy: LinkPolicy, size: int, now: float) -> tuple[float, bool]:
        """When a chunk read ``now`` arrives, and whether a segment of it was lost."""
        at = now + policy.delay + self.random.uniform(-policy.jitter, policy.jitter)
        late = 0.0
        if policy.loss > 0:
            # The chunk's segments fly together and are retransmitted together (SACK): the
            # chunk waits for its unluckiest segment.
            for _ in range(-(-size // MSS)):
                extra, rto = 0.0, policy.rto
                while self.random.random() < policy.loss:  # lost again: TCP backs off
                    extra += rto
                    rto *= 2
                late = max(late, extra)
        return at + late, late > 0

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, src: int, dst: int
    ) -> None:
        """Forward ``src → dst``: a reader stamping due times, a writer keeping order."""
        direction = self._direction(src, dst)
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(RELAY_QUEUE)
        loop = asyncio.get_running_loop()

        async def read() -> None:
            last = 0.0
            while True:
                data = await reader.read(65536)
                if not data:
                    await queue.put(None)
                    return
                at, lost = self.arrival(direction.policy, len(data), loop.time())
                last = max(last, at)  # a TCP stream is never reordered
                self.retransmitted[(src, dst)] += lost
                await queue.put((last, data))

        async def write() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                    return
                at, data = item
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await direction.open.wait()
                writer.write(data)
                await writer.drain()
                self.bytes[(src, dst)] += len(data)
                self.chunks[(src, dst)] += 1

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# -- the lab: namespaces, veths, bridges -------------------------------------------------------
@dataclass(frozen=True)
class NodeNet:
    """Where node ``i`` of a lab lives."""

    namespace: str
    data_veth: str
    """Root-side end of the data veth (the end on a bridge)."""
    mgmt_veth: str
    data_ip: str
    mgmt_ip: str


class NetnsLab:
    """Namespaces, veth pairs and bridges for ``count`` nodes, and the relay between them.

    Use as a context manager; :meth:`close` undoes everything, also after a partial build.
    """

    def __init__(self, count: int, *, seed: int = 17) -> None:
        if not 1 <= count <= 200:
            raise DevnetError(f"a lab holds 1..200 nodes, not {count}")
        self.prefix = f"{TAG}{os.getpid():06x}{next(_counter) % 36:x}"
        self.count = count
        self.seed = seed
        self.subnet = self._free_subnet()
        self.bridge = f"{self.prefix}b"
        self.mgmt_bridge = f"{self.prefix}m"
        self.mgmt_gateway = f"10.250.{self.subnet}.1"
        self.nodes = [
            NodeNet(
                namespace=f"{self.prefix}-{i}",
                data_veth=f"{self.prefix}d{i}",
                mgmt_veth=f"{self.prefix}m{i}",
                data_ip=f"10.251.{self.subnet}.{10 + i}",
                mgmt_ip=f"10.250.{self.subnet}.{10 + i}",
            )
            for i in range(count)
        ]
        self.relay: Relay | None = None
        self._group_bridges: list[str] = []
        self._down: set[int] = set()
        self._closed = True

    @staticmethod
    def _free_subnet() -> int:
        """A third octet whose 10.250.X.0/24 no route of the root namespace uses."""
        used = _ip("-4", "route", "show", check=False).stdout
        for _ in range(200):
            x = random.randrange(1, 255)
            if f"10.250.{x}." not in used:
                return x
        raise DevnetError("no free 10.250.X.0/24 subnet for the management network")

    def __enter__(self) -> NetnsLab:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> NetnsLab:
        """Build the namespaces, veths and bridges (not the relay: see :meth:`start_relay`)."""
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        cleanup_leftovers()
        self._closed = False
        atexit.register(self.close)
        try:
            for bridge, address in ((self.bridge, None), (self.mgmt_bridge, self.mgmt_gateway)):
                _ip("link", "add", bridge, "type", "bridge")
                if address is not None:
                    _ip("addr", "add", f"{address}/24", "dev", bridge)
                _ip("link", "set", bridge, "up")
            for node in self.nodes:
                ns = node.namespace
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                for veth, inner, address, bridge in (
                    (node.data_veth, "data0", node.data_ip, self.bridge),
                    (node.mgmt_veth, "mgmt0", node.mgmt_ip, self.mgmt_bridge),
                ):
                    _ip("link", "add", veth, "type", "veth", "peer", "name", inner, "netns", ns)
                    _ip("link", "set", veth, "master", bridge, "up")
                    _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
                    _ip("-n", ns, "link", "set", inner, "up")
        except BaseException:
            self.close()
            raise
        return self

    def start_relay(self, p2p_ports: Sequence[int]) -> Relay:
        """Start the relay: node ``i``'s listener for peer ``j`` dials ``j``'s data address."""
        targets = [(n.data_ip, port) for n, port in zip(self.nodes, p2p_ports, strict=True)]
        self.relay = Relay([n.namespace for n in self.nodes], targets, self.seed).start()
        return self.relay

    def close(self) -> None:
        """Remove everything this lab made (idempotent; errors of missing pieces ignored)."""
        if self._closed:
            return
        self._closed = True
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        for node in self.nodes:
            _ip("netns", "del", node.namespace, check=False)
            for veth in (node.data_veth, node.mgmt_veth):
                _ip("link", "del", veth, check=False)
        for bridge in [*self._group_bridges, self.bridge, self.mgmt_bridge]:
            _ip("link", "del", bridge, check=False)
        self._group_bridges.clear()
        atexit.unregister(self.close)

    def leftovers(self) -> list[str]:
        """Names of this lab's namespaces and links that exist now (empty after :meth:`close`)."""
        names = _ip("netns", "list", check=False).stdout + _ip("-o", "link", check=False).stdout
        return sorted(set(re.findall(rf"\b({re.escape(self.prefix)}[-0-9a-z]*)", names)))

    # -- kernel partitions --------------------------------------------------------------------
    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Split the data network: ``groups[0]`` (and every node in no group) stays on the
        bridge, every later group gets a bridge of its own. Heal with :meth:`heal`."""
        seen = [i for group in groups for i in group]
        if len(seen) != len(set(seen)) or not all(0 <= i < self.count for i in seen):
            raise DevnetError(f"groups {groups}: each node at most once, among 0..{self.count - 1}")
        for k, group in enumerate(groups[1:], start=1):
            bridge = f"{self.prefix}g{k}"
            _ip("link", "add", bridge, "type", "bridge")
            self._group_bridges.append(bridge)
            _ip("link", "set", bridge, "up")
            for i in group:
                _ip("link", "set", self.nodes[i].data_veth, "master", bridge)

    def isolate(self, i: int) -> None:
        """Pull node ``i``'s data cable: its veth goes down (no carrier inside its namespace)."""
        _ip("link", "set", self.nodes[i].data_veth, "down")
        self._down.add(i)

    def heal(self) -> None:
        """Every data veth back on the one bridge and up; the relay's policies clean."""
        for node in self.nodes:
            _ip("link", "set", node.data_veth, "master", self.bridge, "up")
        for bridge in self._group_bridges:
            _ip("link", "del", bridge, check=False)
        self._group_bridges.clear()
        self._down.clear()
        if self.relay is not None:
            self.relay.set_all(CLEAN)

    def connected(self, i: int, j: int, timeout: float = 1.0) -> bool:
        """Whether node ``i`` reaches ``j``'s data address now: a TCP connect from i's namespace
        to a closed port (a refusal is an answer; a timeout or "unreachable" is none)."""
        sock = socket_in(self.nodes[i].namespace)
        sock.setblocking(True)
        sock.settimeout(timeout)
        try:
            sock.connect((self.nodes[j].data_ip, PROBE_PORT))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        finally:
            sock.close()
        return True


# -- a devnet inside a lab ---------------------------------------------------------------------
def lab_layout(layout: DevnetLayout, lab: NetnsLab) -> DevnetLayout:
    """``layout`` moved into ``lab``: RPC on the management addresses, peer lists via the relay.

    Rewrites every node's ``peers.json`` (peer ``j`` at ``127.0.0.1:RELAY_BASE_PORT + j``, the
    relay inside the node's own namespace) and saves the layout.
    """
    if len(layout.nodes) != lab.count:
        raise DevnetError(f"the layout has {len(layout.nodes)} nodes, the lab {lab.count}")
    nodes = tuple(
        replace(node, host=net.mgmt_ip) for node, net in zip(layout.nodes, lab.nodes, strict=True)
    )
    moved = replace(layout, nodes=nodes)
    for node in nodes:
        peers = [
            {"address": other.address, "host": "127.0.0.1", "port": RELAY_BASE_PORT + j}
            for j, other in enumerate(nodes)
            if other.name != node.name
        ]
        node.peers_path.write_text(json.dumps(peers, indent=2) + "\n")
    moved.save()
    return moved


class NetnsDevnet(Devnet):
    """A :class:`Devnet` whose node ``i`` runs in namespace ``i`` of a lab (``ip netns exec``),
    p2p on its data address, JSON-RPC on its management address."""

    def __init__(
        self,
        layout: DevnetLayout,
        lab: NetnsLab,
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(lab_layout(layout, lab), env=env, extra_args=extra_args)
        self.lab = lab

    def command(self, i: int) -> list[str]:
        command = super().command(i)
        command[command.index("--p2p-host") + 1] = self.lab.nodes[i].data_ip
        return ["ip", "netns", "exec", self.lab.nodes[i].namespace, *command]

    def __enter__(self) -> NetnsDevnet:
        return self.start()

    def start(self) -> NetnsDevnet:
        if self.lab.relay is None:
            self.lab.start_relay([n.p2p_port for n in self.nodes])
        super().start()
        return self
