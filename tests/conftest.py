"""Shared fixtures: the repository's genesis, in-process ledgers and real node processes.

Node processes listen on loopback only, on free ports, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPO_GENESIS = ROOT / "genesis.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 10.0) -> Any:
    """One JSON-RPC call over HTTP; returns the whole response object."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class NodeProcess:
    """A ``portledger node`` OS process on a loopback port, with a data directory."""

    def __init__(self, datadir: Path, genesis: Path = REPO_GENESIS, dev_key: str = "validator:0"):
        self.datadir = datadir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = datadir.parent / f"{datadir.name}.log"
        if not (datadir / "chain").exists():
            subprocess.run(
                [sys.executable, "-m", "portledger", "init", "--datadir", str(datadir),
                 "--genesis", str(genesis), "--dev-key", dev_key],
                check=True, capture_output=True, timeout=120,
            )

    def start(self, timeout: float = 60.0) -> NodeProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portledger", "node", "--datadir", str(self.datadir),
                 "--rpc-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                rpc(self.url, "eth_blockNumber", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"node did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def genesis_path() -> Path:
    if not REPO_GENESIS.exists():
        pytest.fail("genesis.json is missing: run python scripts/make_genesis.py")
    return REPO_GENESIS


@pytest.fixture
def node_process(tmp_path: Path, genesis_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node", genesis_path).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def ledger(tmp_path: Path, genesis_path: Path) -> Iterator[Any]:
    from node.chain import Ledger
    from node.db import LevelDB
    from node.genesis import Genesis

    db = LevelDB(str(tmp_path / "chain"))
    yield Ledger(db, Genesis.load(genesis_path))
    db.close()


os.environ.setdefault("PYTHONHASHSEED", "0")
