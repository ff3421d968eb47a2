"""The gateway of a devnet: its configuration, its demo accounts and its process.

A devnet (:mod:`devnet.processes`) runs validator and observer nodes; this module adds the gateway
in front of them, as its own OS process (``portledger gateway serve``), with the demo port's
organisations already registered (``portledger demo-accounts``: development keys that
match the genesis members — PUBLIC keys, for demos and tests only). :class:`Port` is the
whole demo port: the devnet's nodes, the gateway and one API client per demo organisation.
Used by ``portledger demo``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devnet.errors import DevnetError
from devnet.jsonrpc import wait_for
from devnet.layout import DevnetLayout, open_or_create
from devnet.ports import free_port
from devnet.processes import Devnet
from gateway.config import GatewayConfig

#: The demo gateway's keystore passphrase (a devnet is a development network).
DEVNET_PASSPHRASE = "devnet-insecure-passphrase"


def write_config(layout: DevnetLayout, *, port: int | None = None, **overrides: Any) -> Path:
    """Write ``root/gateway/gateway.json`` for ``layout``; return its path.

    The gateway talks to the observers first (a gateway's own node is a non-validating
    follower), then to the validators, for failover.
    """
    folder = layout.root / "gateway"
    folder.mkdir(exist_ok=True)
    urls = [n.rpc_url for n in layout.observers] + [n.rpc_url for n in layout.validators]
    config = GatewayConfig(
        data_dir=folder / "data",
        node_urls=tuple(urls),
        chain_id=layout.chain_id,
        keystore_passphrase=DEVNET_PASSPHRASE,
        host="127.0.0.1",
        port=port if port is not None else free_port(),
        public_url="",
        cookie_secure=False,
    )
    doc = {**config.to_dict(), **overrides}
    doc["public_url"] = doc["public_url"] or f"http://127.0.0.1:{doc['port']}"
    path = folder / "gateway.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


class GatewayProcess:
    """``portledger gateway serve`` for a config file, with its demo accounts created first."""

    def __init__(self, config_file: Path, *, workers: int = 1, env: dict[str, str] | None = None):
        self.config_file = Path(config_file)
        self.config = GatewayConfig.load(self.config_file)
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.credentials_file = self.config_file.parent / "credentials.json"
        self.log_path = self.config_file.parent / "gateway.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def credentials(self) -> dict[str, Any]:
        """The demo organisations' ids, users and API keys (created on first start)."""
        if not self.credentials_file.exists():
            subprocess.run(
                [sys.executable, "-m", "portledger", "demo-accounts",
                 "--config", str(self.config_file), "--out", str(self.credentials_file)],
                check=True, env=self.env, capture_output=True, timeout=120,
            )  # fmt: skip
        doc: dict[str, Any] = json.loads(self.credentials_file.read_text())
        return doc

    def start(self) -> GatewayProcess:
        if self.running:
            raise DevnetError("the gateway is already running")
        self.credentials()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "portledger", "gateway", "serve", "--config",
                 str(self.config_file), "--workers", str(self.workers)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise DevnetError(f"the gateway exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")[:500]
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise DevnetError(f"the gateway was not ready within {timeout} s: {last}\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the gateway's process group (all its workers)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self._proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayClient:
    """A small synchronous JSON client of the gateway API for one credential (scripts, tests)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Send a request; return (status, parsed JSON body or text, headers)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status, payload, head = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, payload, head = exc.code, exc.read(), dict(exc.headers)
        text = payload.decode(errors="replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return status, parsed, head

    def get(self, path: str, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        return self.request("DELETE", path, body, **kw)


class Port:
    """A whole demo port: a devnet's node processes, its gateway process, and API clients.

    Parameters
    ----------
    root : path
        Folder of the port: the devnet lives in ``root/devnet`` (reused if it is there, else
        created with ``validators`` and ``observers``), the gateway in ``root/devnet/gateway``.
    validators, observers : int
        Node counts of a new devnet.
    gateway_port : int, optional
        The gateway's HTTP port; a free one by default.
    gateway_options : dict, optional
        Gateway configuration keys to set (e.g. ``telemetry_window_seconds``).

    Attributes
    ----------
    layout : DevnetLayout
        The devnet's layout.
    devnet : Devnet
        Its node processes.
    gateway : GatewayProcess
        The gateway process (demo accounts created on construction).
    clients : dict of int to GatewayClient
        One client per demo organisation, by Consortium organisation id, with its API key.
    anonymous : GatewayClient
        A client without credentials.
    """

    def __init__(self, root: str | Path, *, validators: int = 4, observers: int = 1,
                 gateway_port: int | None = None,
                 gateway_options: dict[str, Any] | None = None) -> None:
        self.layout = open_or_create(Path(root) / "devnet", validators, observers)
        self.devnet = Devnet(self.layout)
        self.gateway = GatewayProcess(write_config(self.layout, port=gateway_port,
                                                   **(gateway_options or {})))
        creds = self.gateway.credentials()
        self.clients = {
            o["chainOrg"]: GatewayClient(self.gateway.url, o["apiKey"])
            for o in creds["organisations"]
        }
        self.anonymous = GatewayClient(self.gateway.url)

    def start(self, timeout: float = 120.0) -> Port:
        """Start the nodes, then the gateway; return once both answer."""
        self.devnet.start()
        self.devnet.wait_ready(timeout)
        self.gateway.start()
        self.gateway.wait_ready(timeout)
        return self

    def stop(self) -> None:
        """Stop the gateway, then every node (both even if the first fails)."""
        try:
            self.gateway.stop()
        finally:
            self.devnet.stop()

    def final(self, org: int, key: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the submission ``key`` of organisation ``org`` is final on chain.

        Returns
        -------
        dict
            Its receipt (``status`` ``final``, ``txHash``, ``block``, ``eventId``).

        Raises
        ------
        DevnetError
            If the gateway does not know the submission or reports it failed.
        DevnetTimeout
            If it is not final within ``timeout`` seconds.
        """

        def probe() -> dict[str, Any] | None:
            status, body, _ = self.clients[org].get(f"/v1/submissions/{key}")
            if status != 200 or body.get("status") == "failed":
                raise DevnetError(f"submission {key} of organisation {org}: {status} {body}")
            return body if body["status"] == "final" else None

        receipt = wait_for(probe, timeout, interval=0.2,
                           what=f"submission {key} of organisation {org} final")
        assert receipt is not None  # wait_for returns only a truthy value
        return receipt

    def track(self, org: int, reference: str) -> tuple[int, Any]:
        """``GET /v1/track/{reference}`` as organisation ``org``: (status, body)."""
        status, body, _ = self.clients[org].get(f"/v1/track/{reference}")
        return status, body
