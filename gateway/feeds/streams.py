"""The gateway's configured AIS network feeds: each an :class:`~gateway.feeds.ais_stream.AisStream`
whose batches go to the telemetry store as the readings of the organisation that runs the feed.

Configuration (``extra.feeds`` of the gateway's JSON configuration)::

    "extra": {"feeds": {"ais_streams": [
        {"organisation": 1, "kind": "tcp", "host": "10.0.0.5", "port": 4001},
        {"organisation": 1, "kind": "udp", "host": "0.0.0.0", "port": 10110}
    ]}}

``organisation`` is the Consortium id of the member the readings belong to (it must be hosted on
this gateway and may anchor AIS: operator, terminal, carrier or agent); the other keys are
:class:`~gateway.feeds.ais_stream.AisStreamConfig`'s (backoff, idle timeout, batching). A
configuration error stops the gateway at start-up with the key that is wrong. Feeds run only
where background tasks run (``background_tasks``: the gateway's main worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from contracts import roles_mask
from gateway.appkeys import ACCOUNTS, AIS_STREAMS, CONFIG
from gateway.config import ConfigError, GatewayConfig, settings_from
from gateway.errors import ApiError
from gateway.events.model import Visibility
from gateway.feeds.ais_stream import AisStream, AisStreamConfig
from gateway.feeds.model import ParseResult
from gateway.telemetry import service as telemetry
from gateway.telemetry.visibility import role_problem

log = logging.getLogger("portledger.gateway.feeds")

#: Seconds the feeds may take to hand over their last batches when the gateway stops.
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class AisFeed:
    """One configured feed: whose readings, and where from."""

    organisation: int
    """Consortium id of the member that runs the feed (owner of its readings)."""
    stream: AisStreamConfig


def ais_feeds(config: GatewayConfig) -> list[AisFeed]:
    """The AIS feeds ``config`` names (``extra.feeds.ais_streams``); raises ConfigError."""
    section = config.extra.get("feeds", {})
    if not isinstance(section, dict) or set(section) - {"ais_streams"}:
        raise ConfigError('extra["feeds"] is an object with only "ais_streams"')
    entries = section.get("ais_streams") or []
    if not isinstance(entries, list):
        raise ConfigError('extra["feeds"]["ais_streams"] is a list')
    feeds = []
    for index, entry in enumerate(entries):
        where = f'extra["feeds"]["ais_streams"][{index}]'
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object")
        organisation = entry.get("organisation")
        if isinstance(organisation, bool) or not isinstance(organisation, int) \
                or organisation < 1:
            raise ConfigError(f"{where}.organisation is a Consortium organisation id")
        rest: dict[str, Any] = {k: v for k, v in entry.items() if k != "organisation"}
        feeds.append(AisFeed(organisation, settings_from(AisStreamConfig, rest, where)))
    return feeds


def _sink(app: web.Application, feed: AisFeed) -> Any:
    """Where one feed's batches go: the owner's telemetry (AIS is public)."""

    async def sink(batch: ParseResult) -> None:
        if not batch.readings:
            return
        org = app[ACCOUNTS].by_chain_org(feed.organisation)
        if org is None or org.status != "active":
            log.warning("AIS feed %s: organisation %d is not active on this gateway; %d "
                        "readings dropped", feed.stream.name, feed.organisation,
                        len(batch.readings))
            return
        problem = role_problem("ais-position", roles_mask(list(org.roles)))
        if problem is not None:
            log.warning("AIS feed %s: %s; %d readings dropped", feed.stream.name, problem,
                        len(batch.readings))
            return
        try:
            await telemetry.ingest(app, org.id, batch.readings, Visibility())
        except ApiError as exc:
            log.warning("AIS feed %s: batch refused: %s", feed.stream.name, exc.message)

    return sink


async def _streams_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    feeds = ais_feeds(config)
    streams = [AisStream(feed.stream, _sink(app, feed)) for feed in feeds] \
        if config.background_tasks else []
    tasks = [asyncio.create_task(s.run(), name=f"ais {s.config.name}") for s in streams]
    app[AIS_STREAMS] = streams
    for stream in streams:
        log.info("AIS feed %s for organisation %s started", stream.config.name,
                 next(f.organisation for f in feeds if f.stream is stream.config))
    try:
        yield
    finally:
        for stream in streams:
            stream.stop()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            for task in pending:
                task.cancel()
            for task in (*done, *pending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def streams_of(app: web.Application) -> list[AisStream]:
    """The running AIS feeds (their ``stats``; UDP ``local_address``)."""
    return app.get(AIS_STREAMS, [])


def setup(app: web.Application) -> None:
    """Check the feeds' configuration now (a wrong key stops start-up) and run them."""
    ais_feeds(app[CONFIG])
    app.cleanup_ctx.append(_streams_ctx)
