"""Fixtures of the declarations tests: the SIMULATED authority as its own process on loopback,
and a gateway using it with the members and the carrier's B/L story."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from devnet.authority import AuthorityServer
from tests.gateway.alerts.gateway_support import Port
from tests.gateway.declarations.support import started, story


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[AuthorityServer]:
    server = AuthorityServer(tmp_path / "authority", accept_after=0.2, release_after=0.5,
                             query_after=0.3).start()
    yield server
    server.stop()


@pytest.fixture
async def gateway(tmp_path: Path, authority: AuthorityServer,
                  ) -> AsyncIterator[tuple[TestClient, Port]]:
    client, port = await started(tmp_path / "gw", authority.url)
    story(port)
    try:
        yield client, port
    finally:
        await client.close()
