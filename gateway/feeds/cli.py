"""``portledger feed``: the integrators' conformance kit and file drops.

::

    portledger feed parse [--format F] FILE        # JSON Lines to stdout; exit 2: not that format
    portledger feed push --format F FILE --gateway URL [--api-key K] [--dry-run]
                         [--visibility named|reference] [--readers 4,11]

``parse`` runs the same adapter the gateway runs (:mod:`gateway.feeds.formats`), offline: one
JSON object per line with ``kind`` ``event`` (the API's canonical event), ``reading`` or
``error`` (line, code, message), then nothing else — the summary goes to stderr. It exits 0 when
the file was read, even with per-line errors, and 2 when it is not that format at all (or no
format is recognised). ``push`` sends the file to ``POST /v1/feeds/{format}`` and prints the
gateway's answer; the API key comes from ``--api-key`` or ``PORTLEDGER_API_KEY``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click

from gateway.feeds import formats
from gateway.feeds.model import MAX_FEED_BYTES

_FORMAT = click.Choice(list(formats.FORMATS))


def _read(file: Path) -> bytes:
    size = file.stat().st_size
    if size > MAX_FEED_BYTES:
        raise click.ClickException(f"{file} is {size} bytes; a feed file is at most "
                                   f"{MAX_FEED_BYTES}")
    return file.read_bytes()


@click.group("feed")
def feed() -> None:
    """Read feed files (EDIFACT, AIS, DCSA, Cargo-IMP, ...) as the gateway does."""


@feed.command("parse")
@click.option("--format", "fmt", type=_FORMAT, default=None,
              help="The file's format (detected when omitted).")
@click.option("--received-at", type=int, default=None,
              help="Unix seconds standing in for times the format does not carry "
                   "(default: now).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def parse_command(fmt: str | None, received_at: int | None, file: Path) -> None:
    """Print what FILE becomes: JSON Lines of events, readings and errors."""
    data = _read(file)
    result = formats.parse(data, received_at=received_at or int(time.time()), name=fmt)
    if not result.recognised:
        why = result.errors[0].message if result.errors else "not recognised"
        click.echo(f"{file}: not a {fmt or 'known feed'} file: {why}", err=True)
        sys.exit(2)
    out = sys.stdout
    for line in result.report():
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
    out.flush()
    click.echo(json.dumps(result.summary()), err=True)


@feed.command("push")
@click.option("--format", "fmt", type=click.Choice([*formats.FORMATS, "auto"]),
              default="auto", show_default=True)
@click.option("--gateway", "url", required=True, help="Gateway base URL, e.g. http://127.0.0.1:8080")
@click.option("--api-key", envvar="PORTLEDGER_API_KEY", required=True,
              help="API key (or PORTLEDGER_API_KEY).")
@click.option("--dry-run", is_flag=True, help="Only report; accept nothing.")
@click.option("--visibility", type=click.Choice(["named", "reference"]), default=None)
@click.option("--readers", default=None, help="Comma-separated organisation ids.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def push_command(fmt: str, url: str, api_key: str, dry_run: bool, visibility: str | None,
                 readers: str | None, timeout: float, file: Path) -> None:
    """Send FILE to the gateway's feed intake and print its report."""
    query = {"dryRun": "true" if dry_run else "false"}
    if visibility:
        query["visibility"] = visibility
    if readers:
        query["readers"] = readers
    target = f"{url.rstrip('/')}/v1/feeds/{fmt}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(
        target, data=_read(file), method="POST",
        headers={"Authorization": f"Bearer {api_key}",
                 "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        try:
            problem = json.loads(detail)
            reason = problem.get("error", {}).get("message") or problem.get("message") or detail
        except ValueError:
            reason = detail
        raise click.ClickException(f"gateway refused the file ({exc.code}): {reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise click.ClickException(f"cannot reach the gateway at {url}: {exc}") from None
    for line in body.get("report", []):
        click.echo(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    summary = {k: body.get(k) for k in ("format", "dryRun", "summary", "readings")}
    summary["receipts"] = len(body.get("receipts", []))
    click.echo(json.dumps(summary), err=True)


COMMANDS = (feed,)
