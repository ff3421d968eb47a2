"""AIS network feeds against real loopback servers started here (asyncio TCP and UDP).

The sentences are real ones from GPSD's receiver log (``tests/data/ais/gpsd-ais-nmea.log``,
BSD-2) and ours written with pyais's encoder. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pyais.encode import encode_dict

from gateway.config import ConfigError, settings_from
from gateway.events.model import Reference
from gateway.feeds.ais import AisDecoder, DecoderLimits
from gateway.feeds.ais_stream import AisStream, AisStreamConfig, backoff_delays
from gateway.feeds.model import ParseResult
from gateway.telemetry.model import Reading

LOG = Path(__file__).parents[2] / "data" / "ais" / "gpsd-ais-nmea.log"
#: Real single-sentence AIS lines of GPSD's receiver log, in order.
REAL = [line for line in LOG.read_bytes().splitlines() if line.startswith(b"!AIVDM,1,1,")]
#: A real two-fragment type 5 (MMSI 371255000, IMO 9266633) from the same log.
_FIRST = next(n for n, line in enumerate(LOG.read_bytes().splitlines())
              if line.startswith(b"!AIVDM,2,1,"))
REAL_FIVE = LOG.read_bytes().splitlines()[_FIRST:_FIRST + 2]
NOW = 1_775_000_000


def _ours_position(mmsi: int) -> bytes:
    [line] = encode_dict({"type": 1, "mmsi": mmsi, "lat": 22.3, "lon": 114.1, "speed": 12.3,
                          "course": 181.0, "heading": 180}, talker_id="AI", sentence_type="VDM")
    return line.encode()


def _config(**kw: object) -> AisStreamConfig:
    base: dict[str, object] = {"host": "127.0.0.1", "port": 9, "backoff_initial": 0.05,
                               "backoff_max": 0.2, "backoff_jitter": 0.1, "flush_seconds": 0.05,
                               "connect_timeout": 2.0, "drain_seconds": 2.0}
    base.update(kw)
    return AisStreamConfig(**base)  # type: ignore[arg-type]


class Collector:
    """The sink: keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[ParseResult] = []

    async def __call__(self, batch: ParseResult) -> None:
        self.batches.append(batch)

    @property
    def readings(self) -> list[Reading]:
        return [r for b in self.batches for r in b.readings]

    def stat(self, name: str) -> int:
        return sum(b.stats.get(name, 0) for b in self.batches)


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), timeout)


@contextlib.asynccontextmanager
async def _running(stream: AisStream) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(stream.run())
    try:
        yield task
    finally:
        stream.stop()
        await asyncio.wait_for(task, 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- configuration -------------------------------------------------------------------------------
def test_config_from_json_and_its_checks() -> None:
    config = settings_from(AisStreamConfig, {"host": "ais.example.net", "port": 5631,
                                             "backoff_max": 30}, "feeds.ais[0]")
    assert (config.kind, config.backoff_max, config.name) == ("tcp", 30,
                                                              "tcp://ais.example.net:5631")
    assert settings_from(AisStreamConfig, {"host": "0.0.0.0", "port": 0, "kind": "udp"},
                         "x").kind == "udp"
    for bad in ({"kind": "serial"}, {"port": 0}, {"port": 70000}, {"backoff_initial": 0},
                {"backoff_factor": 0.5}, {"backoff_jitter": 1.0}, {"backoff_max": 0.5},
                {"flush_sentences": 0}, {"max_retries": -1}, {"host": ""}):
        with pytest.raises(ConfigError):
            settings_from(AisStreamConfig, {"host": "h", "port": 1, **bad}, "feeds.ais[0]")
    with pytest.raises(ConfigError, match="unknown"):
        settings_from(AisStreamConfig, {"host": "h", "port": 1, "retries": 3}, "feeds.ais[0]")


def test_backoff_is_exponential_capped_and_jittered() -> None:
    config = AisStreamConfig("h", 1, backoff_initial=1.0, backoff_factor=2.0,
                             backoff_max=10.0, backoff_jitter=0.2)
    waits = [w for w, _ in zip(backoff_delays(config, random.Random(7)), range(8), strict=False)]
    for wait, base in zip(waits, [1, 2, 4, 8, 10, 10, 10, 10], strict=True):
        assert base * 0.8 <= wait <= base * 1.2
    assert len(set(waits)) == len(waits)  # jittered
    exact = AisStreamConfig("h", 1, backoff_initial=0.5, backoff_max=4.0, backoff_jitter=0.0)
    assert [w for w, _ in zip(backoff_delays(exact, random.Random(1)), range(6),
                              strict=False)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


# -- TCP -----------------------------------------------------------------------------------------
async def test_tcp_reconnects_after_the_server_closes_and_reassembles_split_fragments() -> None:
    connections: list[int] = []
    five_first, five_second = REAL_FIVE
    position_after = REAL[0]  # a type 1 of another vessel

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        if len(connections) == 1:
            # the first fragment in three writes, the second in two: cut inside lines
            text = five_first + b"\r\n" + five_second + b"\r\n"
            for start, end in ((0, 17), (17, 40), (40, len(five_first) + 5),
                               (len(five_first) + 5, len(text))):
                writer.write(text[start:end])
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"!AIVDM,1,1,,B,13aDp<PP000I")  # cut off by the close: discarded
            await writer.drain()
            writer.close()
            return
        writer.write(_ours_position(371255000) + b"\n" + position_after + b"\n")
        await writer.drain()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = Collector()
    stream = AisStream(_config(port=port), sink, clock=lambda: NOW, rng=random.Random(3))
    async with server, _running(stream):
        await _until(lambda: len(sink.readings) >= 3)
    static, joined, other = sink.readings
    assert static.type == "ais-static" and static.values["imo"] == "9266633"
    assert static.values["name"] == "SEA ENTERPRISE" and static.time == NOW
    # the decoder's state outlives the connection: the MMSI -> IMO join still holds
    assert joined.subject == Reference("vessel", "9266633")
    assert other.type == "ais-position" and other.subject is None
    assert stream.stats.connections == 2 and stream.stats.disconnects >= 1
    assert sink.stat("sentences") == 4 and not [e for b in sink.batches for e in b.errors]
    assert len(stream.stats.waits) >= 1


async def test_tcp_gives_up_after_max_retries_with_growing_waits() -> None:
    port = _free_port()  # nothing listens there
    stream = AisStream(_config(port=port, max_retries=4, backoff_jitter=0.0,
                               backoff_initial=0.01, backoff_max=0.04), Collector())
    await asyncio.wait_for(stream.run(), 10)
    assert stream.stats.failed_attempts == 4 and stream.stats.connections == 0
    assert stream.stats.waits == [0.01, 0.02, 0.04]


async def test_tcp_idle_connection_is_reopened() -> None:
    accepted = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = AisStream(_config(port=port, idle_timeout=0.1), Collector())
    async with server, _running(stream):
        await _until(lambda: accepted >= 2)
    assert stream.stats.connections >= 2


async def test_tcp_batches_by_count_and_stop_hands_over_the_rest() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for start in range(0, 25, 5):
            writer.write(b"\n".join(REAL[start:start + 5]) + b"\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = Collector()
    # no timer flush during the test: only the count (10) and the stop make batches
    stream = AisStream(_config(port=port, flush_sentences=10, flush_seconds=60), sink)
    async with server, _running(stream):
        await _until(lambda: sink.stat("sentences") >= 20)
        await asyncio.sleep(0.2)  # the last 5 lines arrive, below the count
        by_count = [b.stats["sentences"] for b in sink.batches]
        assert sum(by_count) == 20 and all(n >= 10 for n in by_count)
    assert sink.stat("sentences") == 25 and sink.batches[-1].stats["sentences"] == 5
    expected = AisDecoder()
    expected.feed(b"\n".join(REAL[:25]) + b"\n", received_at=NOW)
    assert [r.values for r in sink.readings] == [r.values for r in expected.take().readings]


async def test_a_failing_sink_does_not_stop_the_feed() -> None:
    calls = 0

    async def flaky(batch: ParseResult) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store is down")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for line in REAL[:3]:
            writer.write(line + b"\n")
            await writer.drain()
            await asyncio.sleep(0.15)
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = AisStream(_config(port=port), flaky)
    async with server, _running(stream):
        await _until(lambda: calls >= 3)
    assert stream.stats.sink_errors == 1 and stream.stats.batches >= 2


# -- UDP -----------------------------------------------------------------------------------------
async def test_udp_listener_reads_datagrams_and_joins_fragments_across_them() -> None:
    sink = Collector()
    stream = AisStream(_config(kind="udp", port=0), sink, clock=lambda: NOW)
    async with _running(stream):
        await stream.ready()
        assert stream.local_address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=stream.local_address)
        try:
            transport.sendto(REAL_FIVE[0])  # no newline: the datagram ends the line
            transport.sendto(REAL_FIVE[1] + b"\r\n")
            transport.sendto(b"\n".join([_ours_position(371255000), REAL[1], b"junk"]))
            await _until(lambda: len(sink.readings) >= 3)
        finally:
            transport.close()
    static, joined, other = sink.readings[:3]
    assert static.values["mmsi"] == 371255000 and static.values["imo"] == "9266633"
    assert joined.subject == Reference("vessel", "9266633")
    assert other.type == "ais-position"
    assert stream.stats.datagrams == 3
    errors = [e for b in sink.batches for e in b.errors]
    assert [e.code for e in errors] == ["not-nmea"]


async def test_udp_drops_batches_when_the_sink_falls_behind() -> None:
    release = asyncio.Event()
    got: list[ParseResult] = []

    async def slow(batch: ParseResult) -> None:
        await asyncio.wait_for(release.wait(), 5)
        got.append(batch)

    stream = AisStream(_config(kind="udp", port=0, flush_sentences=1, queue_batches=1,
                               flush_seconds=60), slow)
    async with _running(stream):
        await stream.ready()
        assert stream.local_address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=stream.local_address)
        try:
            for line in REAL[:10]:
                transport.sendto(line)
            await _until(lambda: stream.stats.datagrams == 10)
        finally:
            transport.close()
        release.set()
    # one batch in the sink, one waiting in the queue, the others dropped and counted
    assert stream.stats.dropped_batches >= 7
    assert stream.stats.batches + stream.stats.dropped_batches >= 10


async def test_the_flush_timer_expires_a_message_whose_fragments_stop() -> None:
    now = [float(NOW)]
    sink = Collector()
    decoder = AisDecoder(limits=DecoderLimits(max_group_seconds=5))
    stream = AisStream(_config(kind="udp", port=0), sink, decoder=decoder, clock=lambda: now[0])
    async with _running(stream):
        await stream.ready()
        assert stream.local_address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=stream.local_address)
        try:
            transport.sendto(REAL_FIVE[0] + b"\n")  # fragment 2 never comes
            await _until(lambda: stream.stats.datagrams == 1)
            await asyncio.sleep(0.2)
            assert not [e for b in sink.batches for e in b.errors]  # still waiting
            now[0] += 6
            await _until(lambda: any(e.code == "incomplete-message"
                                     for b in sink.batches for e in b.errors))
        finally:
            transport.close()
    assert sink.stat("expired_groups") == 1 and sink.readings == []
