"""``portledger gateway ...``: run the gateway, rebuild its read model.

    portledger gateway serve   --config gateway.json [--workers 2]
    portledger gateway rebuild --config gateway.json

``serve --workers N`` runs N processes sharing the listen port (``SO_REUSEPORT``): the first
runs everything, the others only answer API requests (``background_tasks`` off), because the
submitter, the indexer and webhook deliveries must run in exactly one process. All of them read
the same SQLite files (WAL lets readers in other processes see committed writes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import subprocess
import sys

import click

from gateway.config import ConfigError, GatewayConfig


def _load(config_file: str) -> GatewayConfig:
    try:
        return GatewayConfig.load(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _json_logs(config: GatewayConfig) -> None:
    from gateway.ops import JsonFormatter  # noqa: PLC0415 (start-up: the gateway loads for the command that runs it)
    root = logging.getLogger()
    if config.log_json:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@click.group("gateway")
def gateway() -> None:
    """The PortLedger gateway: accounts, upload/download API, tracking, web pages."""


@gateway.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Processes sharing the port; only the first runs background work.")
@click.option("--api-only", is_flag=True, hidden=True)
def serve(config_file: str, workers: int, api_only: bool) -> None:
    """Serve the gateway until SIGINT/SIGTERM."""
    from aiohttp import web  # noqa: PLC0415 (start-up: the gateway loads for the command that runs it)

    from gateway.app import create_app  # noqa: PLC0415 (start-up: the gateway loads for the command that runs it)

    config = _load(config_file)
    if api_only:
        config = dataclasses.replace(config, background_tasks=False)
    _json_logs(config)
    children: list[subprocess.Popen[bytes]] = []
    if workers > 1 and not api_only:
        argv = [sys.executable, "-m", "portledger", "gateway", "serve", "--config", config_file,
                "--api-only"]
        children = [subprocess.Popen(argv) for _ in range(workers - 1)]
    try:
        web.run_app(
            create_app(config),
            host=config.host,
            port=config.port,
            reuse_port=workers > 1 or api_only,
            print=lambda text: click.echo(text, err=True),
            access_log=None,
        )
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)


@gateway.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False))
def rebuild(config_file: str) -> None:
    """Drop the read model and re-index it from the chain (with a progress bar)."""
    from gateway.readside import indexer  # noqa: PLC0415 (start-up: the gateway loads for the command that runs it)
    config = _load(config_file)
    asyncio.run(indexer.rebuild(config))
