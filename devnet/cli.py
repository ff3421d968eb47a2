"""The devnet's commands of ``portledger`` (composed by :mod:`portledger.cli`).

::

    portledger demo    [--datadir D] [--once]   # the demo port: devnet + gateway, SIMULATED feeds
    portledger devnet  [--dir D] [--validators 4] [--observers 1]   # run a local network, live status
    portledger demo-accounts --config gateway.json --out credentials.json   # PUBLIC dev keys
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from devnet.errors import DevnetError
from devnet.layout import DevnetLayout, open_or_create
from devnet.processes import Devnet
from devnet.status import node_status, status_table
from gateway.config import ConfigError, GatewayConfig


@click.command()
@click.option(
    "--datadir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the port (devnet + gateway; reused if it holds one). Default: a fresh "
    "temporary directory.",
)
@click.option("--once", is_flag=True, help="Play the story and one live tick, check, stop.")
@click.option(
    "--interval",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.2, 3600),
    help="Seconds between two ticks of the simulated live feed.",
)
@click.option(
    "--duration",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Stop the live port after this many seconds (0: at Ctrl-C).",
)
@click.option(
    "--port",
    "gateway_port",
    default=None,
    type=click.IntRange(0, 65535),
    help="The gateway's HTTP port (0: any free port). Default: 8080 if free.",
)
def demo(
    datadir: str | None, once: bool, interval: float, duration: float, gateway_port: int | None
) -> None:
    """Run the demo port: validators, an observer, the gateway, a SIMULATED vessel call and feed."""
    from devnet.demo import run_demo  # noqa: PLC0415 (start-up: the demo loads for the command that runs it)
    sys.exit(
        run_demo(
            datadir, once=once, interval=interval, duration=duration, gateway_port=gateway_port
        )
    )


@click.command()
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False),
    default="devnet",
    show_default=True,
    help="Devnet folder: reused if it holds a devnet, else created.",
)
@click.option(
    "--validators",
    type=click.IntRange(1, 13),
    default=None,
    help="Validators of a new devnet [default: 4].",
)
@click.option(
    "--observers",
    type=click.IntRange(0),
    default=None,
    help="Non-validating nodes of a new devnet [default: 1].",
)
@click.option(
    "--fresh", is_flag=True, help="Delete the devnet in --dir first and create a new one."
)
@click.option(
    "--base-port",
    type=int,
    default=None,
    help="RPC ports from here, then p2p ports [default: free ports].",
)
@click.option(
    "--status-once",
    is_flag=True,
    help="Print the status of the devnet running in --dir and exit (0 if every node answers).",
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def devnet(
    root: str,
    validators: int | None,
    observers: int | None,
    fresh: bool,
    base_port: int | None,
    status_once: bool,
    duration: float | None,
) -> None:
    """Run a local network, one process per node, with a live status table (Ctrl-C stops it)."""
    try:
        code = run_devnet(
            root,
            validators=validators,
            observers=observers,
            fresh=fresh,
            base_port=base_port,
            status_once=status_once,
            duration=duration,
        )
    except DevnetError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@click.command("demo-accounts")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the demo users' credentials and API keys (mode 0600).")
def demo_accounts(config_file: str, out: str) -> None:
    """Create the demo port's organisations, users and API keys (development keys; PUBLIC)."""
    from devnet.accounts import bootstrap_demo  # noqa: PLC0415 (start-up: the demo loads for the command that runs it)
    try:
        config = GatewayConfig.load(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    credentials = bootstrap_demo(config)
    path = Path(out)
    path.write_text(json.dumps(credentials, indent=2))
    os.chmod(path, 0o600)
    click.echo(f"wrote {len(credentials['organisations'])} demo organisations' credentials to {path}")


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
        _print_endpoints(layout, console)
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


def _print_endpoints(layout: DevnetLayout, console: Console) -> None:
    """Each node's JSON-RPC URL and p2p endpoint, one line each, at once (also into a pipe)."""
    console.print(f"{len(layout.nodes)} nodes starting; JSON-RPC over HTTP and WebSocket:",
                  highlight=False)
    for node in layout.nodes:
        console.print(f"  {node.name:<12} rpc {node.rpc_url}  p2p {node.host}:{node.p2p_port}",
                      highlight=False, soft_wrap=True)
    console.file.flush()  # a pipe is block-buffered: the URLs must not wait for the end


#: The devnet's commands.
COMMANDS: tuple[click.Command, ...] = (demo, devnet, demo_accounts)
