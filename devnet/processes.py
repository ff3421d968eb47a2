"""The node processes of a devnet: start, signal, stop and query them, every wait bounded.

:class:`Devnet` starts, signals and stops the processes — each in its own process group, so a
signal reaches one node and nothing else — and queries them over JSON-RPC. It never leaves a
process behind: it is a context manager and registers an ``atexit`` stop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from devnet.errors import DevnetError, DevnetTimeout
from devnet.jsonrpc import RpcError, rpc_call, wait_for
from devnet.layout import DevnetLayout, NodeSpec
from devnet.status import NodeStatus, node_status

#: How long a stopping node may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0

T = TypeVar("T")


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
