"""A local network of node processes: its layout, a process harness, a status view and cargo load.

A *devnet* is N validators and M observers on one machine, each a ``portledger node`` OS process
with its own data directory and loopback ports, all under one root folder::

    root/
      devnet.json        the layout: chain, nodes, roles, addresses, ports (reused by later runs)
      genesis.json       the demo port's members, with exactly these validators (fresh keys)
      keys/<node>.key    each node's secp256k1 key, hex, mode 0600 (given to ``portledger init``)
      <node>/            the node's data directory: genesis.json, nodekey, chain/
      <node>/peers.json  every other node, [{"address", "host", "port"}]: allowlist and dial list
      <node>/node.log    the process's stdout and stderr

Three layers, each usable alone (``portledger devnet``, ``tests/node/test_devnet.py`` and
``bench/bench_devnet.py`` use the same ones):

- :func:`create_devnet` and :meth:`DevnetLayout.load`: files only, no process.
- :class:`Devnet`: starts, signals and stops the processes — each in its own process group, so a
  signal reaches one node and nothing else — and queries them over JSON-RPC, every wait bounded.
  It never leaves a process behind: it is a context manager and registers an ``atexit`` stop.
- :class:`CargoLoad`: ``CargoLedger.record()`` transactions from the demo members' accounts, paced
  against the validators, with finality measured as the moment a watcher first sees the block.

Node ``i`` everywhere is ``layout.nodes[i]``: the validators first, sorted by address (genesis
order), then the observers.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_canonical_address, to_checksum_address

from contracts import SYSTEM_ADDRESSES, roles_mask
from contracts.cargo import EVENT_TYPES, FAMILIES, CargoEventInput, encode_record_call, subject_key
from node.datadir import DataDirError, init_datadir
from node.genesis import Genesis, QbftConfig, build_genesis, demo_members, dev_key, write_genesis

VALIDATOR = "validator"
OBSERVER = "observer"
LAYOUT_FILE = "devnet.json"
LAYOUT_VERSION = 1
#: Columns of the status view.
STATUS_COLUMNS = ("node", "role", "address", "height", "head", "round", "peers", "pending", "state")
#: How long a stopping node may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0
#: JSON-RPC timeout of a load submitter (a frozen validator costs this per attempt).
SUBMIT_TIMEOUT = 5.0
#: Seconds after the end of a load run during which a late submitter may still send.
SUBMIT_GRACE = 5.0

T = TypeVar("T")


class DevnetError(Exception):
    """The devnet cannot be created, started or reached as asked."""


class DevnetTimeout(DevnetError, TimeoutError):
    """A bounded wait ran out."""


class RpcError(Exception):
    """A JSON-RPC error answer (the node is up and refused the request)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


# -- layout ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeSpec:
    """One node of the layout."""

    name: str
    """``validator-<i>`` or ``observer-<i>``; also its folder under the root."""
    role: str
    """:data:`VALIDATOR` or :data:`OBSERVER`."""
    address: str
    """Node address (checksummed): its p2p identity and, for a validator, its signing key."""
    host: str
    """Listen address of both ports (loopback)."""
    rpc_port: int
    """JSON-RPC over HTTP and WebSocket."""
    p2p_port: int
    """QBFT peer transport."""
    datadir: Path
    """The node's data directory (``portledger init``)."""
    key_file: Path
    """The node's key as given to ``portledger init`` (hex, mode 0600)."""

    @property
    def is_validator(self) -> bool:
        return self.role == VALIDATOR

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"

    @property
    def peers_path(self) -> Path:
        return self.datadir / "peers.json"

    @property
    def log_path(self) -> Path:
        return self.datadir / "node.log"


@dataclass(frozen=True)
class DevnetLayout:
    """Where everything of a devnet is: saved as ``root/devnet.json``."""

    root: Path
    """Absolute root folder."""
    chain_id: int
    """The genesis chain id."""
    nodes: tuple[NodeSpec, ...]
    """Validators (sorted by address, as in genesis), then observers."""

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def validators(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.is_validator)

    @property
    def observers(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if not n.is_validator)

    def peers_of(self, node: NodeSpec) -> list[dict[str, Any]]:
        """The ``peers.json`` document of ``node``: every other node's address and p2p port."""
        return [
            {"address": other.address, "host": other.host, "port": other.p2p_port}
            for other in self.nodes
            if other.name != node.name
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION,
            "chainId": self.chain_id,
            "genesis": self.genesis_path.name,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "address": n.address,
                    "host": n.host,
                    "rpcPort": n.rpc_port,
                    "p2pPort": n.p2p_port,
                    "datadir": str(n.datadir.relative_to(self.root)),
                    "keyFile": str(n.key_file.relative_to(self.root)),
                }
                for n in self.nodes
            ],
        }

    def save(self) -> None:
        """Write ``root/devnet.json`` atomically (a reader never sees half a layout)."""
        partial = self.root / (LAYOUT_FILE + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(partial, self.root / LAYOUT_FILE)

    @classmethod
    def load(cls, root: str | Path) -> DevnetLayout:
        root = Path(root).resolve()
        try:
            doc = json.loads((root / LAYOUT_FILE).read_text())
            if doc.get("version") != LAYOUT_VERSION:
                raise DevnetError(f"{root / LAYOUT_FILE}: layout version {doc.get('version')!r}")
            nodes = tuple(
                NodeSpec(
                    name=n["name"],
                    role=n["role"],
                    address=to_checksum_address(n["address"]),
                    host=n["host"],
                    rpc_port=int(n["rpcPort"]),
                    p2p_port=int(n["p2pPort"]),
                    datadir=root / n["datadir"],
                    key_file=root / n["keyFile"],
                )
                for n in doc["nodes"]
            )
            return cls(root=root, chain_id=int(doc["chainId"]), nodes=nodes)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevnetError(f"no usable devnet layout in {root}: {exc}") from exc


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` now (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def create_devnet(
    root: str | Path,
    validators: int = 4,
    observers: int = 1,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    *,
    qbft: QbftConfig | None = None,
) -> DevnetLayout:
    """Create a devnet's files: keys, genesis, initialised data directories, peer lists.

    Parameters
    ----------
    root : path
        A folder that does not exist yet or is empty.
    validators, observers : int
        How many nodes of each role.
    host : str
        Listen address of every port (keep it loopback: nodes do not authenticate RPC).
    base_port : int, optional
        RPC ports ``base_port + i``, p2p ports ``base_port + n + i`` for ``n`` nodes; by default
        free ports chosen by the kernel.
    qbft : QbftConfig, optional
        Timing of the genesis; the defaults of :class:`~node.genesis.QbftConfig` otherwise.

    Returns
    -------
    DevnetLayout
        The layout, already saved as ``root/devnet.json``.
    """
    root = Path(root).resolve()
    if validators < 1 or observers < 0:
        raise DevnetError("a devnet needs at least one validator and no negative observer count")
    if root.exists() and any(root.iterdir()):
        raise DevnetError(f"{root} is not empty")
    count = validators + observers
    ports = (
        free_ports(2 * count, host)
        if base_port is None
        else list(range(base_port, base_port + 2 * count))
    )
    # Genesis lists validators sorted by address (proposer order); validator-i is genesis's i-th.
    validator_keys = sorted(
        (PrivateKey(os.urandom(32)) for _ in range(validators)),
        key=lambda k: k.public_key.to_canonical_address(),
    )
    observer_keys = [PrivateKey(os.urandom(32)) for _ in range(observers)]
    members, validator_addresses = demo_members(
        validators, node_addresses=[k.public_key.to_checksum_address() for k in validator_keys]
    )
    doc = build_genesis(members, validator_addresses, qbft=qbft or QbftConfig())
    named = [(f"validator-{i}", VALIDATOR, k) for i, k in enumerate(validator_keys)]
    named += [(f"observer-{i}", OBSERVER, k) for i, k in enumerate(observer_keys)]
    layout = DevnetLayout(
        root=root,
        chain_id=int(doc["config"]["chainId"]),
        nodes=tuple(
            NodeSpec(
                name=name,
                role=role,
                address=key.public_key.to_checksum_address(),
                host=host,
                rpc_port=ports[i],
                p2p_port=ports[count + i],
                datadir=root / name,
                key_file=root / "keys" / f"{name}.key",
            )
            for i, (name, role, key) in enumerate(named)
        ),
    )
    root.mkdir(parents=True, exist_ok=True)
    try:
        (root / "keys").mkdir(mode=0o700)
        write_genesis(doc, layout.genesis_path)
        for node, (_, _, key) in zip(layout.nodes, named, strict=True):
            _write_secret(node.key_file, key.to_hex() + "\n")
            init_datadir(node.datadir, layout.genesis_path, key)
            node.peers_path.write_text(json.dumps(layout.peers_of(node), indent=2) + "\n")
        layout.save()
    except BaseException as exc:
        # Half a devnet (e.g. Ctrl-C during init) would block the next attempt: the folder
        # was empty, so nothing but what was just written goes.
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, DataDirError):
            raise DevnetError(str(exc)) from exc
        raise
    return layout


def open_or_create(
    root: str | Path,
    validators: int | None = None,
    observers: int | None = None,
    *,
    fresh: bool = False,
    base_port: int | None = None,
) -> DevnetLayout:
    """The devnet in ``root``: reused if it exists (and matches the counts asked), else created.

    ``fresh`` deletes ``root`` first, but only if it holds a devnet or nothing at all.
    """
    root = Path(root).resolve()
    if fresh and root.exists():
        if not (root / LAYOUT_FILE).exists() and any(root.iterdir()):
            raise DevnetError(f"refusing to delete {root}: it holds no {LAYOUT_FILE}")
        shutil.rmtree(root)
    if (root / LAYOUT_FILE).exists():
        layout = DevnetLayout.load(root)
        for role, wanted, have in (
            ("validators", validators, len(layout.validators)),
            ("observers", observers, len(layout.observers)),
        ):
            if wanted is not None and wanted != have:
                raise DevnetError(f"{root} has {have} {role}, not {wanted} (use --fresh)")
        return layout
    return create_devnet(
        root,
        4 if validators is None else validators,
        1 if observers is None else observers,
        base_port=base_port,
    )


# -- JSON-RPC --------------------------------------------------------------------------------
class RpcClient:
    """JSON-RPC over one keep-alive HTTP connection; one client per thread.

    A failed connection raises :class:`OSError` (reconnecting on the next call); an error
    answer raises :class:`RpcError`.
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _post(self, payload: Any) -> Any:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            body = json.dumps(payload)
            self._conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
            response = self._conn.getresponse()
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            if isinstance(exc, OSError):
                raise
            raise ConnectionError(f"{self.host}:{self.port}: {exc!r}") from exc

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        if "error" in answer:
            raise RpcError(int(answer["error"].get("code", 0)), str(answer["error"].get("message")))
        return answer["result"]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Answers in call order; an error answer is an :class:`RpcError` in its place."""
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        answers = self._post(payload)
        if not isinstance(answers, list):  # the whole batch was refused
            error = answers.get("error", {})
            raise RpcError(int(error.get("code", 0)), str(error.get("message")))
        results: list[Any] = [None] * len(calls)
        for answer in answers:
            error = answer.get("error")
            results[answer["id"]] = (
                RpcError(int(error.get("code", 0)), str(error.get("message")))
                if error
                else answer.get("result")
            )
        return results

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def rpc_call(
    node: NodeSpec, method: str, params: list[Any] | None = None, timeout: float = 5.0
) -> Any:
    """One JSON-RPC call on a fresh connection (thread-safe)."""
    client = RpcClient(node.host, node.rpc_port, timeout)
    try:
        return client.call(method, params)
    finally:
        client.close()


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns a true value, for at most ``timeout`` seconds.

    Connection failures and JSON-RPC errors inside the predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, RpcError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise DevnetTimeout(f"{what}: not reached within {timeout:g} s{detail}")
        time.sleep(interval)


# -- status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeStatus:
    """What one node reports (``portledger_status``), or why it reports nothing."""

    name: str
    role: str
    address: str
    up: bool
    """The node answered JSON-RPC."""
    height: int | None = None
    head_hash: str | None = None
    round: int | None = None
    """Consensus round at ``height + 1``; ``None`` for an observer or when unknown."""
    peers: tuple[str, ...] | None = None
    validators: tuple[str, ...] | None = None
    pending: int | None = None
    round_changes: int | None = None
    """Round changes the node entered since it started (``roundChanges``)."""
    halted: str | None = None
    """Why consensus halted on this node (``halted``); ``None`` while it runs."""
    error: str | None = None
    """Why ``up`` is false, or why ``portledger_status`` was not available."""
    process: str | None = None
    """``running``, ``paused``, ``exited <code>`` or ``not started`` when this harness runs it."""


def node_status(node: NodeSpec, timeout: float = 2.0, process: str | None = None) -> NodeStatus:
    """Query one node; never raises.

    Nodes without ``portledger_status`` (no consensus runtime) still report height, head and
    pool size through the standard methods.
    """
    down = NodeStatus(node.name, node.role, node.address, up=False, process=process)
    if process is not None and process != "running":
        return replace(down, error=process)
    client = RpcClient(node.host, node.rpc_port, timeout)
    try:
        status, head, pool = client.batch(
            [
                ("portledger_status", []),
                ("eth_getBlockByNumber", ["latest", False]),
                ("txpool_status", []),
            ]
        )
    except (OSError, RpcError) as exc:
        return replace(down, error=str(exc) or type(exc).__name__)
    finally:
        client.close()
    if isinstance(status, dict):
        try:
            return replace(
                down,
                up=True,
                height=int(status["height"]),
                head_hash=str(status["headHash"]),
                round=None if status.get("round") is None else int(status["round"]),
                peers=tuple(status.get("peers") or ()),
                validators=tuple(status.get("validators") or ()),
                pending=int(status["pending"]),
                round_changes=(
                    None if status.get("roundChanges") is None else int(status["roundChanges"])
                ),
                halted=None if status.get("halted") is None else str(status["halted"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            note = f"malformed portledger_status: {exc!r}"
    else:
        note = f"portledger_status: {status}"
    return replace(
        down,
        up=True,
        height=int(head["number"], 16) if isinstance(head, dict) else None,
        head_hash=head["hash"] if isinstance(head, dict) else None,
        pending=int(pool["pending"], 16) if isinstance(pool, dict) else None,
        error=note,
    )


def status_table(statuses: Sequence[NodeStatus], title: str | None = None) -> Any:
    """A ``rich`` table of node statuses (fits 80 columns); ``?`` where a node did not say."""
    from rich import box
    from rich.table import Table

    def show(value: Any) -> str:
        return "?" if value is None else str(value)

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    for column in STATUS_COLUMNS:
        table.add_column(column, no_wrap=column != "state")
    for s in statuses:
        if s.up:
            state = "[green]up[/]"
        else:
            state = "[red]down[/]" + (
                f" ({s.process})" if s.process not in (None, "running") else ""
            )
        table.add_row(
            s.name,
            s.role,
            s.address[:6] + "…",
            show(s.height),
            "?" if s.head_hash is None else s.head_hash[:6] + "…",
            "-" if s.up and s.role == OBSERVER and s.round is None else show(s.round),
            "?" if s.peers is None else str(len(s.peers)),
            show(s.pending),
            state,
        )
    return table


# -- processes -------------------------------------------------------------------------------
class Devnet:
    """The node processes of a layout.

    Each node runs as ``python -m portledger node ...`` in its own session (process group), output
    appended to its ``node.log``. Signals go to the node's process group while the node is
    alive. :meth:`stop` (also on ``with`` exit and at interpreter exit) ends every process:
    SIGTERM, then SIGKILL after ``STOP_TIMEOUT``.

    Parameters
    ----------
    layout : DevnetLayout
        The devnet to run.
    env : mapping, optional
        Extra environment variables for the node processes.
    extra_args : sequence of str
        Extra arguments for every ``portledger node`` command line.
    """

    def __init__(
        self,
        layout: DevnetLayout,
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.layout = layout
        self.env = {**os.environ, **(env or {})}
        self.extra_args = tuple(extra_args)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * len(layout.nodes)
        self._paused: set[int] = set()
        self._lock = threading.RLock()
        self._atexit_registered = False

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.layout.nodes

    def __enter__(self) -> Devnet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self, i: int) -> list[str]:
        """The command line of node ``i``."""
        node = self.nodes[i]
        return [
            sys.executable, "-m", "portledger", "node", "--datadir", str(node.datadir),
            "--rpc-host", node.host, "--rpc-port", str(node.rpc_port),
            "--p2p-host", node.host, "--p2p-port", str(node.p2p_port),
            "--peers", str(node.peers_path), *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Devnet:
        """Start every node that is not running (does not wait for them: see :meth:`wait_ready`)."""
        for i in range(len(self.nodes)):
            if not self.is_running(i):
                self.start_node(i)
        return self

    def start_node(self, i: int) -> None:
        with self._lock:
            if self.is_running(i):
                raise DevnetError(f"{self.nodes[i].name} is already running")
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            node = self.nodes[i]
            with open(node.log_path, "ab") as log:  # the child keeps its own copy of the fd
                log.write(
                    f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} devnet: starting {node.name}\n".encode()
                )
                log.flush()
                self._procs[i] = subprocess.Popen(
                    self.command(i),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            self._paused.discard(i)

    def wait_ready(self, timeout: float = 120.0, nodes: Sequence[int] | None = None) -> None:
        """Wait until the nodes (default: all) answer ``eth_chainId``; fail fast if one exits."""
        waiting = list(range(len(self.nodes)) if nodes is None else nodes)

        def ready() -> bool:
            for i in list(waiting):
                proc = self._procs[i]
                if proc is not None and proc.poll() is not None:
                    raise DevnetError(
                        f"{self.nodes[i].name} exited with {proc.returncode}:\n{self.log_tail(i)}"
                    )
                if int(self.rpc(i, "eth_chainId", timeout=2.0), 16) == self.layout.chain_id:
                    waiting.remove(i)
            return not waiting

        try:
            wait_for(ready, timeout, interval=0.2, what="nodes answering JSON-RPC")
        except DevnetTimeout as exc:
            names = ", ".join(self.nodes[i].name for i in waiting)
            raise DevnetTimeout(
                f"{exc}; still silent: {names}\n{self.log_tail(waiting[0])}"
            ) from None

    def terminate(self, i: int, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop node ``i`` gracefully (SIGTERM, SIGKILL after ``timeout``); its exit status."""
        with self._lock:
            proc = self._procs[i]
            if proc is None:
                return None
            if proc.poll() is None:
                self._signal(i, signal.SIGTERM)
                self._signal(i, signal.SIGCONT)  # a paused node must run to handle SIGTERM
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal(i, signal.SIGKILL)
                    proc.wait(timeout=STOP_TIMEOUT)
            self._paused.discard(i)
            return proc.returncode

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to node ``i``'s process group; after SIGKILL, reap the process."""
        with self._lock:
            proc = self._procs[i]
            if proc is None or proc.poll() is not None:
                raise DevnetError(f"{self.nodes[i].name} is not running")
            self._signal(i, sig)
            if sig == signal.SIGKILL:
                proc.wait(timeout=STOP_TIMEOUT)
                self._paused.discard(i)

    def stop_process(self, i: int) -> None:
        """Freeze node ``i`` (SIGSTOP): it keeps its sockets but answers nothing."""
        self.kill(i, signal.SIGSTOP)
        self._paused.add(i)

    def cont(self, i: int) -> None:
        """Resume a frozen node (SIGCONT)."""
        self.kill(i, signal.SIGCONT)
        self._paused.discard(i)

    def restart(self, i: int, *, wait: bool = True, timeout: float = 120.0) -> None:
        """Stop node ``i`` gracefully, start it again and (by default) wait until it answers."""
        self.terminate(i)
        self.start_node(i)
        if wait:
            self.wait_ready(timeout, nodes=[i])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every node: SIGTERM all, wait up to ``timeout``, SIGKILL what remains."""
        with self._lock:
            alive = [i for i in range(len(self.nodes)) if self.is_running(i)]
            for i in alive:
                self._signal(i, signal.SIGTERM)
                self._signal(i, signal.SIGCONT)
            deadline = time.monotonic() + timeout
            for i in alive:
                proc = self._procs[i]
                assert proc is not None
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._signal(i, signal.SIGKILL)
                    proc.wait(timeout=STOP_TIMEOUT)
            self._paused.clear()
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def _signal(self, i: int, sig: int) -> None:
        proc = self._procs[i]
        # Only while the leader is unreaped: afterwards its id may belong to someone else.
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    # -- inspection ---------------------------------------------------------------------------
    def pid(self, i: int) -> int | None:
        proc = self._procs[i]
        return None if proc is None else proc.pid

    def is_running(self, i: int) -> bool:
        """Node ``i``'s process exists and has not exited (it may be paused)."""
        proc = self._procs[i]
        return proc is not None and proc.poll() is None

    def process_state(self, i: int) -> str:
        proc = self._procs[i]
        if proc is None:
            return "not started"
        if proc.poll() is not None:
            return f"exited {proc.returncode}"
        return "paused" if i in self._paused else "running"

    def log_tail(self, i: int, chars: int = 3000) -> str:
        try:
            return self.nodes[i].log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rpc(
        self, i: int, method: str, params: list[Any] | None = None, timeout: float = 5.0
    ) -> Any:
        """One JSON-RPC call to node ``i``: its result, :class:`RpcError` or :class:`OSError`."""
        return rpc_call(self.nodes[i], method, params, timeout)

    def status(self, i: int, timeout: float = 2.0) -> NodeStatus:
        managed = self._procs[i] is not None
        return node_status(self.nodes[i], timeout, self.process_state(i) if managed else None)

    def statuses(self, timeout: float = 2.0) -> list[NodeStatus]:
        """Every node's status, queried in parallel (a frozen node costs ``timeout``, once)."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            return list(pool.map(lambda i: self.status(i, timeout), range(len(self.nodes))))

    def heads(
        self, timeout: float = 2.0, nodes: Sequence[int] | None = None
    ) -> list[tuple[int, str] | None]:
        """(height, hash) of every node's head; ``None`` for a node that does not answer.

        With ``nodes``, only those are asked (the others are ``None``): a frozen node costs
        ``timeout`` per query.
        """
        asked = set(range(len(self.nodes)) if nodes is None else nodes)

        def head(i: int) -> tuple[int, str] | None:
            if i not in asked:
                return None
            try:
                block = self.rpc(i, "eth_getBlockByNumber", ["latest", False], timeout)
                return int(block["number"], 16), str(block["hash"])
            except (OSError, RpcError, KeyError, TypeError, ValueError):
                return None

        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            return list(pool.map(head, range(len(self.nodes))))

    @staticmethod
    def wait_for(
        predicate: Callable[[], T],
        timeout: float,
        *,
        interval: float = 0.1,
        what: str = "condition",
    ) -> T:
        """:func:`wait_for`, for callers holding a devnet."""
        return wait_for(predicate, timeout, interval=interval, what=what)


# -- cargo load ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Publisher:
    """A member account that publishes cargo events in the load."""

    key: PrivateKey
    address: str
    organisation: str
    event_type: int
    """An event type the organisation's roles may publish."""


def cargo_publishers(genesis: Genesis) -> list[Publisher]:
    """The demo organisations' development accounts (``org:<i>``) that may record cargo events.

    Only accounts the genesis lists as a member's are taken, so permissioning admits them; each
    publishes the first event type its organisation's roles allow.
    """
    publishers = []
    for index, member in enumerate(genesis.portledger.get("members", [])):
        key = dev_key(f"org:{index}")
        if key.public_key.to_canonical_address() not in {
            to_canonical_address(a) for a in member.get("accounts", [])
        }:
            continue
        mask = roles_mask(member.get("roles", []))
        kinds = [
            f"{name}.{codes[0]}"
            for _, (name, codes, roles) in sorted(FAMILIES.items())
            if roles & mask
        ]
        if kinds:
            address = key.public_key.to_checksum_address()
            publishers.append(Publisher(key, address, member["name"], EVENT_TYPES[kinds[0]]))
    return publishers


def cargo_events(
    count: int, first: int, event_type: int, payload_bytes: int = 96
) -> list[CargoEventInput]:
    """``count`` events about distinct containers, with random (ciphertext-like) payloads."""
    now = int(time.time())
    return [
        CargoEventInput(
            subject=subject_key(f"DVNU{(first + j) % 10_000_000:07d}"),
            event_type=event_type,
            classifier=3,
            event_time=now,
            location="HKHKG",
            payload_hash=os.urandom(32),
            payload=os.urandom(payload_bytes),
        )
        for j in range(count)
    ]


def record_transaction(
    key: PrivateKey, *, chain_id: int, nonce: int, gas: int, events: list[CargoEventInput]
) -> tuple[bytes, str]:
    """A signed, zero-fee EIP-1559 ``CargoLedger.record()`` transaction: (raw, 0x-hash)."""
    from eth.vm.forks.prague.transactions import PragueTransactionBuilder

    tx = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=0,
        max_fee_per_gas=0,
        gas=gas,
        to=to_canonical_address(SYSTEM_ADDRESSES["CargoLedger"]),
        value=0,
        data=encode_record_call(events),
        access_list=[],
    ).as_signed_transaction(key)
    return tx.encode(), "0x" + tx.hash.hex()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class LoadReport:
    """What one paced load run offered, what the network accepted, finalized and lost."""

    offered_tx_per_s: float
    duration_s: float
    events_per_tx: int
    submitted: int = 0
    """Transactions sent (each once, to one validator)."""
    accepted: int = 0
    """Answered with a transaction hash."""
    refused: int = 0
    """Answered with a JSON-RPC error (reasons in :attr:`refusals`)."""
    unreachable: int = 0
    """The validator did not answer (down, frozen, timed out); sent or not."""
    unsent: int = 0
    """Not sent: the submitter was still behind schedule when the run ended."""
    included: int = 0
    """Accepted and found in a block."""
    included_once: int = 0
    """Accepted and found in exactly one block."""
    duplicated: int = 0
    """Accepted and found in more than one block."""
    lost: int = 0
    """Accepted and in no block by the end of the settle time."""
    reverted: int = 0
    """Included with receipt status 0."""
    receipt_mismatches: int = 0
    """Receipt missing or naming another block than the one the scan found the transaction in."""
    hash_mismatches: int = 0
    """The validator answered another transaction hash than the one signed."""
    submit_tx_per_s: float = 0.0
    """Rate actually achieved by the submitters."""
    window_s: float = 0.0
    """The steady-state window: from the end of the warm-up to the end of submission."""
    window_events: int = 0
    """Events of this run in blocks first seen within the window."""
    blocks: int = 0
    """Blocks finalized during the run (all of them, with or without this run's transactions)."""
    latencies: list[float] = field(default_factory=list, repr=False)
    """Per included transaction: first sight of its block minus submission, seconds."""
    refusals: Counter[str] = field(default_factory=Counter)
    accepted_hashes: list[str] = field(default_factory=list, repr=False)
    """The accepted transactions' hashes, in the order they were accepted."""

    @property
    def offered_events_per_s(self) -> float:
        return self.offered_tx_per_s * self.events_per_tx

    @property
    def finalized_events_per_s(self) -> float:
        """Finalized throughput in the steady-state window."""
        return self.window_events / self.window_s if self.window_s > 0 else 0.0

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float | None:
        return percentile(self.latencies, 0.99)

    def describe(self) -> str:
        def ms(value: float | None) -> str:
            return "?" if value is None else f"{value * 1000:.0f} ms"

        lines = [
            f"offered {self.offered_tx_per_s:.2f} tx/s x {self.events_per_tx} events = "
            f"{self.offered_events_per_s:.0f} events/s for {self.duration_s:.0f} s "
            f"(submitted at {self.submit_tx_per_s:.2f} tx/s)",
            f"finalized {self.finalized_events_per_s:.0f} events/s; finality p50 {ms(self.p50)}, "
            f"p99 {ms(self.p99)}; {self.blocks} blocks",
            f"submitted {self.submitted}, accepted {self.accepted}, refused {self.refused}, "
            f"unreachable {self.unreachable}, unsent {self.unsent}; included once {self.included_once}, "
            f"duplicated {self.duplicated}, lost {self.lost}, reverted {self.reverted}, "
            f"receipt/hash mismatches {self.receipt_mismatches}/{self.hash_mismatches}",
        ]
        if self.refusals:
            lines.append(
                "refusals: " + "; ".join(f"{n} x {r}" for r, n in self.refusals.most_common(3))
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered_tx_per_s": self.offered_tx_per_s,
            "offered_events_per_s": self.offered_events_per_s,
            "duration_s": self.duration_s,
            "events_per_tx": self.events_per_tx,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "refused": self.refused,
            "unreachable": self.unreachable,
            "unsent": self.unsent,
            "included": self.included,
            "included_once": self.included_once,
            "duplicated": self.duplicated,
            "lost": self.lost,
            "reverted": self.reverted,
            "receipt_mismatches": self.receipt_mismatches,
            "hash_mismatches": self.hash_mismatches,
            "submit_tx_per_s": self.submit_tx_per_s,
            "finalized_events_per_s": self.finalized_events_per_s,
            "window_s": self.window_s,
            "window_events": self.window_events,
            "blocks": self.blocks,
            "latency_p50_s": self.p50,
            "latency_p99_s": self.p99,
            "refusals": dict(self.refusals),
        }


class BlockWatcher(threading.Thread):
    """Polls one node for new blocks; remembers when each block was first seen.

    Block timestamps are whole seconds, so finality is measured on this side: the monotonic
    time at which ``eth_blockNumber`` first reported a height at or above the block's.
    """

    def __init__(self, node: NodeSpec, start_height: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"block-watcher-{node.name}")
        self.node = node
        self.interval = interval
        self.height = start_height
        self.start_height = start_height
        #: Block number -> (first seen, block hash, transaction hashes).
        self.blocks: dict[int, tuple[float, str, list[str]]] = {}
        #: Transaction hash -> first seen of the first block that carried it.
        self.first_seen: dict[str, float] = {}
        self.errors = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        client = RpcClient(self.node.host, self.node.rpc_port, timeout=5.0)
        try:
            while not self._halt.wait(self.interval):
                try:
                    head = int(client.call("eth_blockNumber"), 16)
                    seen = time.monotonic()
                    if head <= self.height:
                        continue
                    # a bounded batch per poll (the server caps batches; a far-behind watcher
                    # catches up over several polls)
                    numbers = range(self.height + 1, min(head, self.height + 200) + 1)
                    blocks = client.batch(
                        [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
                    )
                    with self._lock:
                        for number, block in zip(numbers, blocks, strict=True):
                            if not isinstance(block, dict):
                                raise RpcError(0, f"block {number} missing: {block}")
                            txs = [str(h) for h in block["transactions"]]
                            self.blocks[number] = (seen, str(block["hash"]), txs)
                            for tx_hash in txs:
                                self.first_seen.setdefault(tx_hash, seen)
                            self.height = number
                except (OSError, RpcError, KeyError, TypeError, ValueError):
                    self.errors += 1
        finally:
            client.close()

    def count_seen(self, tx_hashes: Sequence[str]) -> int:
        with self._lock:
            return sum(1 for h in tx_hashes if h in self.first_seen)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class CargoLoad:
    """Paced ``CargoLedger.record()`` load on a running devnet.

    Each publisher account (see :func:`cargo_publishers`) sends all its transactions to one
    node — publishers are dealt round-robin over the endpoints, the validators by default — so
    that a node receives every account's nonces in order. Nonces are tracked locally and re-read
    from that node (``pending``) at the start of each run and after any refusal.

    Parameters
    ----------
    devnet : Devnet
        A running devnet.
    events_per_tx : int
        Cargo events per ``record()`` call.
    payload_bytes : int
        Size of each event's (random, ciphertext-like) payload.
    watch : int, optional
        Index of the node whose blocks define finality; the first endpoint by default.
    endpoints : sequence of int, optional
        Indices of the nodes the transactions are sent to (publishers dealt round-robin over
        them); the validators by default. A fault test sends to nodes it never stops.
    """

    def __init__(
        self,
        devnet: Devnet,
        *,
        events_per_tx: int = 100,
        payload_bytes: int = 96,
        watch: int | None = None,
        publishers: Sequence[Publisher] | None = None,
        endpoints: Sequence[int] | None = None,
    ) -> None:
        self.devnet = devnet
        self.events_per_tx = events_per_tx
        self.payload_bytes = payload_bytes
        layout = devnet.layout
        self.endpoints = (
            [i for i, node in enumerate(layout.nodes) if node.is_validator]
            if endpoints is None
            else list(endpoints)
        )
        if not self.endpoints:
            raise DevnetError("a load needs at least one node to send transactions to")
        self.watch = self.endpoints[0] if watch is None else watch
        self.publishers = list(
            publishers
            if publishers is not None
            else cargo_publishers(Genesis.load(layout.genesis_path))
        )
        if not self.publishers:
            raise DevnetError("the genesis has no demo member account that may record cargo events")
        self.chain_id = layout.chain_id
        self._gas: dict[str, int] = {}
        self._subjects = itertools.count()

    def endpoint_of(self, p: int) -> int:
        return self.endpoints[p % len(self.endpoints)]

    def _estimate_gas(self) -> None:
        """Gas limit per publisher: an estimate of a sample batch plus a margin (once)."""
        node = self.devnet.nodes[self.watch]
        client = RpcClient(node.host, node.rpc_port, timeout=30.0)
        try:
            for publisher in self.publishers:
                if publisher.address in self._gas:
                    continue
                sample = cargo_events(
                    self.events_per_tx, 0, publisher.event_type, self.payload_bytes
                )
                call = {
                    "from": publisher.address,
                    "to": SYSTEM_ADDRESSES["CargoLedger"],
                    "data": "0x" + encode_record_call(sample).hex(),
                }
                estimate = int(client.call("eth_estimateGas", [call]), 16)
                # Random payloads have a few zero bytes more or less than the sample: a margin.
                self._gas[publisher.address] = estimate * 5 // 4 + 10_000
        finally:
            client.close()

    def run(
        self,
        rate: float,
        duration: float,
        *,
        settle: float = 60.0,
        warmup: float | None = None,
        stop: threading.Event | None = None,
    ) -> LoadReport:
        """Offer ``rate`` tx/s for ``duration`` s, wait up to ``settle`` s for inclusion, report.

        ``warmup`` (default a fifth of the duration, at most 5 s) is left out of the
        finalized-throughput window, which ends when submission ends. A validator that does
        not answer (down, frozen) costs its submitter a timeout per attempt; what it could not
        send by :data:`SUBMIT_GRACE` seconds after the end is counted as unsent.

        ``stop``, once set (by another thread), ends submission early: the run then lasts until
        that moment, and transactions not yet due are neither sent nor counted.
        """
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        report = LoadReport(
            offered_tx_per_s=rate, duration_s=duration, events_per_tx=self.events_per_tx
        )
        watched = self.devnet.nodes[self.watch]
        watcher = BlockWatcher(watched, int(rpc_call(watched, "eth_blockNumber"), 16))
        self._estimate_gas()
        plan = _Plan(rate=rate, total=max(1, round(rate * duration)), t0=time.monotonic() + 0.2,
                     give_up=time.monotonic() + 0.2 + duration + SUBMIT_GRACE,
                     stop=stop or threading.Event())  # fmt: skip
        submitted: dict[str, tuple[float, int]] = {}  # hash -> (submit time, events)
        failures: list[BaseException] = []
        lock = threading.Lock()

        def submitter(endpoint: int) -> None:
            try:
                self._submit(endpoint, plan, report, submitted, lock)
            except BaseException as exc:  # surfaced below, never swallowed
                failures.append(exc)

        watcher.start()
        threads = [
            threading.Thread(target=submitter, args=(e,), daemon=True, name=f"cargo-load-{e}")
            for e in sorted({self.endpoint_of(p) for p in range(len(self.publishers))})
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submit_end = time.monotonic()
        if plan.stop.is_set():
            duration = report.duration_s = min(duration, submit_end - plan.t0)
        try:
            if failures:
                raise failures[0]
            hashes = list(submitted)
            with contextlib.suppress(DevnetTimeout):
                wait_for(
                    lambda: watcher.count_seen(hashes) == len(hashes),
                    settle,
                    interval=0.1,
                    what="inclusion of every accepted transaction",
                )
        finally:
            watcher.stop()
        report.submit_tx_per_s = report.submitted / max(submit_end - plan.t0, 1e-9)
        report.accepted_hashes = list(submitted)
        self._account(report, watcher, submitted, plan.t0, duration, warmup)
        return report

    def _submit(
        self,
        endpoint: int,
        plan: _Plan,
        report: LoadReport,
        submitted: dict[str, tuple[float, int]],
        lock: threading.Lock,
    ) -> None:
        """Send this endpoint's share of the plan, each transaction at its scheduled time."""
        node = self.devnet.nodes[endpoint]
        client = RpcClient(node.host, node.rpc_port, timeout=SUBMIT_TIMEOUT)
        mine = [p for p in range(len(self.publishers)) if self.endpoint_of(p) == endpoint]
        nonces: dict[int, int | None] = dict.fromkeys(mine)  # None: read it from the node
        jobs = [j for j in range(plan.total) if j % len(self.publishers) in nonces]
        try:
            for done, j in enumerate(jobs):
                if time.monotonic() > plan.give_up:
                    with lock:
                        report.unsent += len(jobs) - done
                    return
                if plan.stop.wait(max(0.0, plan.t0 + j / plan.rate - time.monotonic())):
                    return
                p = j % len(self.publishers)
                publisher = self.publishers[p]
                try:
                    nonce = nonces[p]
                    if nonce is None:
                        pending = client.call(
                            "eth_getTransactionCount", [publisher.address, "pending"]
                        )
                        nonce = nonces[p] = int(pending, 16)
                except (OSError, RpcError):
                    with lock:
                        report.unreachable += 1
                    continue
                events = cargo_events(
                    self.events_per_tx, next(self._subjects) * self.events_per_tx,
                    publisher.event_type, self.payload_bytes,
                )  # fmt: skip
                raw, tx_hash = record_transaction(
                    publisher.key, chain_id=self.chain_id, nonce=nonce,
                    gas=self._gas[publisher.address], events=events,
                )  # fmt: skip
                sent = time.monotonic()
                try:
                    answer = client.call("eth_sendRawTransaction", ["0x" + raw.hex()])
                except RpcError as exc:
                    nonces[p] = None  # re-read: the refused nonce may still be free
                    with lock:
                        report.submitted += 1
                        report.refused += 1
                        report.refusals[exc.message] += 1
                    continue
                except OSError:
                    nonces[p] = None  # the node may or may not have taken it
                    with lock:
                        report.submitted += 1
                        report.unreachable += 1
                    continue
                nonces[p] = nonce + 1
                with lock:
                    report.submitted += 1
                    report.accepted += 1
                    submitted[tx_hash] = (sent, len(events))
                    if str(answer).lower() != tx_hash:
                        report.hash_mismatches += 1
        finally:
            client.close()

    def _account(
        self,
        report: LoadReport,
        watcher: BlockWatcher,
        submitted: dict[str, tuple[float, int]],
        t0: float,
        duration: float,
        warmup: float | None,
    ) -> None:
        """Scan the watched node's blocks and receipts; fill in inclusion and latency."""
        client = RpcClient(watcher.node.host, watcher.node.rpc_port, timeout=30.0)
        try:
            head = watcher.height
            numbers = list(range(watcher.start_height + 1, head + 1))
            occurrences: Counter[str] = Counter()
            block_of: dict[str, int] = {}
            for chunk in _chunks(numbers, 200):
                blocks = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
                for number, block in zip(chunk, blocks, strict=True):
                    if not isinstance(block, dict):
                        raise DevnetError(
                            f"block {number} vanished from {watcher.node.name}: {block}"
                        )
                    if block["hash"] != watcher.blocks[number][1]:
                        raise DevnetError(f"block {number} changed its hash on {watcher.node.name}")
                    for tx_hash in block["transactions"]:
                        occurrences[tx_hash] += 1
                        block_of.setdefault(tx_hash, number)
            report.blocks = len(numbers)
            included = [h for h in submitted if occurrences[h] > 0]
            report.included = len(included)
            report.included_once = sum(1 for h in included if occurrences[h] == 1)
            report.duplicated = report.included - report.included_once
            report.lost = len(submitted) - report.included
            for hashes in _chunks(included, 200):
                receipts = client.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                for tx_hash, receipt in zip(hashes, receipts, strict=True):
                    if (
                        not isinstance(receipt, dict)
                        or int(receipt["blockNumber"], 16) != block_of[tx_hash]
                    ):
                        report.receipt_mismatches += 1
                    elif receipt["status"] != "0x1":
                        report.reverted += 1
        finally:
            client.close()
        warm = min(5.0, duration / 5) if warmup is None else warmup
        window_start, window_end = t0 + warm, t0 + duration
        events = 0
        for tx_hash in included:
            sent, count = submitted[tx_hash]
            seen = watcher.first_seen[tx_hash]
            report.latencies.append(seen - sent)
            if window_start <= seen <= window_end:
                events += count
        report.window_s = window_end - window_start
        report.window_events = events

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every validator's pool is empty; whether it emptied within ``timeout``."""

        def empty() -> bool:
            return all(
                int(self.devnet.rpc(i, "txpool_status", timeout=5.0)["pending"], 16) == 0
                for i in self.endpoints
            )

        try:
            wait_for(empty, timeout, interval=0.25, what="empty transaction pools")
            return True
        except DevnetTimeout:
            return False


@dataclass(frozen=True)
class _Plan:
    """When each transaction of a load run is due: number ``j`` at ``t0 + j / rate``."""

    rate: float
    total: int
    t0: float
    give_up: float
    """After this instant a submitter sends nothing more (it fell behind a dead validator)."""
    stop: threading.Event
    """Set: submitters send nothing more (the run was ended early)."""


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the ``portledger devnet`` command ----------------------------------------------------------
def run_devnet(
    root: str | Path,
    *,
    validators: int | None = None,
    observers: int | None = None,
    fresh: bool = False,
    base_port: int | None = None,
    status_once: bool = False,
    duration: float | None = None,
) -> int:
    """Run a devnet with a live status table until Ctrl-C, SIGTERM or ``duration`` seconds.

    With ``status_once``, start nothing: print the status of the devnet in ``root`` (run by
    another ``portledger devnet``) and return 0 if every node answered, 1 otherwise.
    Otherwise return 0, or 1 if a node exited on its own while the devnet ran.
    """
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if status_once:
        layout = DevnetLayout.load(root)
        statuses = Devnet(layout).statuses()
        console.print(status_table(statuses, _title(layout, "status")))
        return 0 if all(s.up for s in statuses) else 1

    layout = open_or_create(root, validators, observers, fresh=fresh, base_port=base_port)
    if any(node_status(node, timeout=1.0).up for node in layout.nodes):
        raise DevnetError(f"the devnet in {layout.root} is already running (see --status-once)")
    devnet = Devnet(layout)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    deadline = None if duration is None else time.monotonic() + duration
    title = _title(layout, "Ctrl-C stops" if duration is None else f"stops after {duration:g} s")
    try:
        devnet.start()
        with Live(
            status_table(devnet.statuses(1.0), title), console=console, auto_refresh=False
        ) as live:
            while not stop.wait(0.5) and (deadline is None or time.monotonic() < deadline):
                live.update(status_table(devnet.statuses(1.0), title), refresh=True)
        if not console.is_terminal:
            console.line()  # Live leaves its last frame unterminated when not on a terminal
        died = [
            devnet.nodes[i].name
            for i in range(len(devnet.nodes))
            if devnet.process_state(i) != "running"
        ]
    finally:
        devnet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(f"stopped {len(devnet.nodes)} nodes; logs in {layout.root}/<node>/node.log")
    if died:
        console.print(f"[red]exited while running: {', '.join(died)}[/]")
        return 1
    return 0


def _title(layout: DevnetLayout, note: str) -> str:
    return (
        f"PortLedger devnet {layout.root} — chain {layout.chain_id}, "
        f"{len(layout.validators)} validators, {len(layout.observers)} observers — {note}"
    )
