"""The devnet's commands of ``portledger`` (composed by :mod:`portledger.cli`).

::

    portledger demo    [--datadir D] [--once]   # the demo port: devnet + gateway, SIMULATED feeds
    portledger devnet  [--dir D] [--validators 4] [--observers 1]   # run a local network, live status
    portledger demo-accounts --config gateway.json --out credentials.json   # PUBLIC dev keys
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from devnet.accounts import bootstrap_demo
from devnet.demo import run_demo
from devnet.network import DevnetError, run_devnet
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
    try:
        config = GatewayConfig.load(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    credentials = bootstrap_demo(config)
    path = Path(out)
    path.write_text(json.dumps(credentials, indent=2))
    os.chmod(path, 0o600)
    click.echo(f"wrote {len(credentials['organisations'])} demo organisations' credentials to {path}")


#: The devnet's commands.
COMMANDS: tuple[click.Command, ...] = (demo, devnet, demo_accounts)
