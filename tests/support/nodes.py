"""Real ``portledger node`` processes for tests: one node on a loopback port, every wait bounded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from devnet.jsonrpc import rpc_call
from devnet.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
REPO_GENESIS = ROOT / "genesis.json"


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
            )  # fmt: skip

    def start(self, timeout: float = 60.0) -> NodeProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portledger", "node", "--datadir", str(self.datadir),
                 "--rpc-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                rpc_call(self.url, "eth_blockNumber", timeout=2)
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
