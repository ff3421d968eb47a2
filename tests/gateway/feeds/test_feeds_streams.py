"""The gateway's configured AIS network feeds: UDP datagrams in, public vessel positions out."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket

import pytest

from devnet.simfeeds import ais as simais
from gateway.config import ConfigError, GatewayConfig
from gateway.feeds.streams import ais_feeds, streams_of
from tests.support.intake import intake_harness

OPERATOR, TERMINAL_B, BANK = 1, 3, 11
T0 = 1_795_000_000
VESSEL = simais.SimVessel(mmsi=477123456, imo="9811000", name="PACIFIC HARMONY SIM",
                          callsign="VRSIM", destination="HKHKG")


def _config(base: GatewayConfig, organisation: int) -> GatewayConfig:
    return dataclasses.replace(base, extra={"feeds": {"ais_streams": [
        {"organisation": organisation, "kind": "udp", "host": "127.0.0.1", "port": 0,
         "flush_seconds": 0.2, "flush_sentences": 50}]}})


@pytest.mark.parametrize(("extra", "message"), [
    ({"feeds": []}, 'extra["feeds"] is an object'),
    ({"feeds": {"ais_streams": [{"kind": "udp", "host": "127.0.0.1", "port": 0}]}},
     "organisation is a Consortium organisation id"),
    ({"feeds": {"ais_streams": [{"organisation": 1, "kind": "tcp", "host": "x", "port": 0}]}},
     "port 0"),
    ({"feeds": {"ais_streams": [{"organisation": 1, "host": "x", "port": 1, "colour": 2}]}},
     "unknown"),
])
def test_bad_feed_configuration_is_named(gateway_config, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ais_feeds(dataclasses.replace(gateway_config, extra=extra))


async def _udp_port(app) -> tuple[str, int]:
    [stream] = streams_of(app)
    await stream.ready(timeout=5)
    assert stream.local_address is not None
    return stream.local_address


async def test_udp_feed_positions_reach_everyone(aiohttp_client, gateway_config):
    port = await intake_harness(aiohttp_client, _config(gateway_config, OPERATOR), [
        (OPERATOR, "PortLedger Operator", ("operator",)),
        (BANK, "Harbour Trade Bank", ("bank",)),
    ])
    address = await _udp_port(port.app)
    fixes = simais.track((22.20, 114.30), (22.34, 114.12), start_time=T0, speed_knots=12,
                         interval=60)
    text = simais.write_track(VESSEL, fixes, eta=T0 + 7200)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for line in text.splitlines():  # one sentence a datagram, as receivers send them
            sender.sendto(line.encode() + b"\r\n", address)
    body = None
    for _ in range(100):  # bounded: 10 s
        response = await port.get(f"/v1/vessels/{VESSEL.imo}/positions", BANK)
        if response.status == 200:
            body = await response.json()
            if len(body.get("positions", body.get("track", []))) == len(fixes):
                break
        await asyncio.sleep(0.1)
    assert body is not None, "no positions arrived"
    positions = body.get("positions", body.get("track"))
    assert len(positions) == len(fixes)
    last = positions[-1]
    assert abs(last["lat"] - fixes[-1].lat) < 1e-4 and abs(last["lon"] - fixes[-1].lon) < 1e-4


async def test_a_feed_of_an_organisation_that_may_not_anchor_ais_stores_nothing(
        aiohttp_client, gateway_config, caplog):
    port = await intake_harness(aiohttp_client, _config(gateway_config, BANK), [
        (BANK, "Harbour Trade Bank", ("bank",)),
    ])
    address = await _udp_port(port.app)
    fix = simais.Fix(T0, 22.3, 114.1, 10.0, 90.0, 90, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(simais.position_sentence(VESSEL, fix).encode() + b"\r\n", address)
    for _ in range(50):
        if "readings dropped" in caplog.text:
            break
        await asyncio.sleep(0.1)
    assert "AIS readings are anchored by" in caplog.text or "readings dropped" in caplog.text
    response = await port.get(f"/v1/telemetry/readings?mmsi={VESSEL.mmsi}&type=ais-position",
                              BANK)
    assert response.status == 404
