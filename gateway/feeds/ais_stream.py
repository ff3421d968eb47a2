"""AIS over the network: a TCP client and a UDP listener that feed an :class:`AisDecoder` (asyncio).

Shore stations, receivers and AIS data providers serve NMEA over TCP (the gateway connects to
them) or send it as UDP datagrams (the gateway listens). :class:`AisStream` runs one such feed:

- **TCP**: connect to ``host:port``; read whatever arrives (a line or a message's fragments may
  be cut across reads: the decoder keeps the rest); when the peer closes, a read fails or nothing
  arrives for ``idle_timeout`` seconds, reconnect after an exponential backoff with jitter
  (``backoff_initial`` × ``backoff_factor`` ** n, at most ``backoff_max``, ± ``backoff_jitter``;
  back to ``backoff_initial`` once a connection delivered data). ``max_retries`` bounds the
  failed attempts in a row (0: keep trying).
- **UDP**: listen on ``host:port``; each datagram is one or more whole lines.

Readings and errors are handed to an async ``sink(result: ParseResult)`` in batches: every
``flush_sentences`` sentences or ``flush_seconds`` seconds, whichever comes first (the timer
also expires unfinished multi-sentence messages). Batches wait in a queue of ``queue_batches``;
when the sink falls behind, a TCP feed stops reading (the sender is slowed by TCP itself) and a
UDP feed drops the batch and counts it (``dropped_batches``): a datagram cannot be held back.

:class:`AisStreamConfig` is what the gateway configuration carries for each feed
(:func:`gateway.config.settings_from` reads it from JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from gateway.config import ConfigError
from gateway.feeds.ais import AisDecoder
from gateway.feeds.model import ParseResult

log = logging.getLogger("portledger.gateway.feeds")

#: Where batches go: called once per batch, one batch at a time, in order.
Sink = Callable[[ParseResult], Awaitable[None]]


@dataclass(frozen=True)
class AisStreamConfig:
    """One AIS network feed (an entry of the gateway configuration)."""

    host: str
    """TCP: the server to connect to. UDP: the local address to listen on."""
    port: int
    """TCP: the server's port. UDP: the local port (0: any free port)."""
    kind: str = "tcp"
    """``tcp`` (connect) or ``udp`` (listen)."""
    backoff_initial: float = 1.0
    """Seconds before the first reconnection attempt."""
    backoff_factor: float = 2.0
    """Each failed attempt in a row multiplies the wait by this."""
    backoff_max: float = 60.0
    """The longest wait between two attempts."""
    backoff_jitter: float = 0.2
    """Each wait is randomised by ± this fraction (peers restarting together spread out)."""
    max_retries: int = 0
    """Failed attempts in a row after which the feed gives up (0: never)."""
    connect_timeout: float = 10.0
    """Seconds a TCP connection may take to open."""
    idle_timeout: float = 120.0
    """A TCP connection that delivers nothing for this long is dropped and reopened."""
    flush_sentences: int = 1000
    """A batch goes to the sink after this many sentences..."""
    flush_seconds: float = 1.0
    """... or this many seconds, whichever comes first."""
    queue_batches: int = 16
    """Batches waiting for the sink at most."""
    read_bytes: int = 65536
    """Largest read from the socket."""
    drain_seconds: float = 5.0
    """On stop, how long the last batches may take to reach the sink."""

    def __post_init__(self) -> None:
        if self.kind not in ("tcp", "udp"):
            raise ConfigError(f"AIS feed kind must be tcp or udp, not {self.kind!r}")
        if not self.host:
            raise ConfigError("AIS feed host is empty")
        if not 0 <= self.port <= 65535 or (self.kind == "tcp" and self.port == 0):
            raise ConfigError(f"AIS feed port {self.port} is not a port to "
                              f"{'connect to' if self.kind == 'tcp' else 'listen on'}")
        positive = ("backoff_initial", "backoff_max", "connect_timeout", "idle_timeout",
                    "flush_seconds", "drain_seconds")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"AIS feed {name} must be above 0")
        if self.backoff_factor < 1 or not 0 <= self.backoff_jitter < 1:
            raise ConfigError("AIS feed backoff_factor must be at least 1 and backoff_jitter "
                              "in [0, 1)")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("AIS feed backoff_max is below backoff_initial")
        for name in ("flush_sentences", "queue_batches", "read_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AIS feed {name} must be at least 1")
        if self.max_retries < 0:
            raise ConfigError("AIS feed max_retries must be 0 (never give up) or more")

    @property
    def name(self) -> str:
        return f"{self.kind}://{self.host}:{self.port}"


def backoff_delays(config: AisStreamConfig, rng: random.Random) -> Iterator[float]:
    """The waits before reconnection attempts 1, 2, 3, ... (exponential, capped, jittered)."""
    delay = config.backoff_initial
    while True:
        spread = config.backoff_jitter * delay
        yield max(0.0, delay + rng.uniform(-spread, spread))
        delay = min(delay * config.backoff_factor, config.backoff_max)


@dataclass
class StreamStats:
    """What a feed did (the decoder's own counters are in each batch's ``stats``)."""

    connections: int = 0
    """TCP connections opened."""
    failed_attempts: int = 0
    """TCP connections that could not be opened."""
    disconnects: int = 0
    """TCP connections lost (closed by the peer, failed or idle)."""
    datagrams: int = 0
    """UDP datagrams received."""
    bytes: int = 0
    """Bytes received."""
    batches: int = 0
    """Batches handed to the sink."""
    dropped_batches: int = 0
    """UDP batches dropped because the sink fell behind."""
    sink_errors: int = 0
    """Batches the sink raised on (logged; the feed goes on)."""
    waits: list[float] = field(default_factory=list)
    """The last reconnection waits, in seconds (at most 32)."""


class AisStream:
    """One AIS feed: reads, decodes, batches and hands batches to ``sink`` until stopped.

    Parameters
    ----------
    config : AisStreamConfig
        Where to read and how.
    sink : Sink
        Receives each batch (readings, errors, the decoder's counters for the batch).
    decoder : AisDecoder, optional
        The decoder to feed (e.g. one seeded with known MMSI → IMO); a new one by default.
    clock : callable, optional
        Unix time now (the batches' ``received_at``).
    rng : random.Random, optional
        Source of the backoff jitter.
    """

    def __init__(self, config: AisStreamConfig, sink: Sink, *, decoder: AisDecoder | None = None,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.sink = sink
        self.decoder = decoder or AisDecoder()
        self.stats = StreamStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._queue: asyncio.Queue[ParseResult] = asyncio.Queue(config.queue_batches)
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.local_address: tuple[str, int] | None = None
        """UDP: the address actually listened on (once :meth:`ready` returned)."""

    # -- control -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read the feed until :meth:`stop` (or ``max_retries`` failed attempts in a row)."""
        deliver = asyncio.create_task(self._deliver(), name=f"ais-sink {self.config.name}")
        ticker = asyncio.create_task(self._tick(), name=f"ais-flush {self.config.name}")
        try:
            if self.config.kind == "tcp":
                await self._run_tcp()
            else:
                await self._run_udp()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.decoder.finish()
            self._enqueue_nowait(self.decoder.take())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.config.drain_seconds)
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver

    def stop(self) -> None:
        """Stop reading: :meth:`run` hands over the last batch and returns."""
        self._stop.set()
        if self._writer is not None:
            self._writer.close()
        if self._transport is not None:
            self._transport.close()

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until connected (TCP) or listening (UDP), at most ``timeout`` seconds."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- TCP -----------------------------------------------------------------------------------
    async def _run_tcp(self) -> None:
        config = self.config
        delays = backoff_delays(config, self._rng)
        failures = 0
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(config.host, config.port), config.connect_timeout)
            except (OSError, TimeoutError) as exc:
                self.stats.failed_attempts += 1
                failures += 1
                log.warning("AIS feed %s: cannot connect (%s)", config.name, exc)
            else:
                self.stats.connections += 1
                self._writer = writer
                self._ready.set()
                delivered = await self._read_tcp(reader)
                self._writer = None
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                self.decoder.discard_partial()
                if self._stop.is_set():
                    return
                self.stats.disconnects += 1
                if delivered:
                    failures = 0
                    delays = backoff_delays(config, self._rng)
                else:
                    failures += 1
            if config.max_retries and failures >= config.max_retries:
                log.error("AIS feed %s: giving up after %d failed attempts", config.name,
                          failures)
                return
            wait = next(delays)
            self.stats.waits = [*self.stats.waits[-31:], wait]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    async def _read_tcp(self, reader: asyncio.StreamReader) -> bool:
        """Read one connection until it ends; True if it delivered any byte."""
        delivered = False
        while not self._stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(self.config.read_bytes),
                                               self.config.idle_timeout)
            except TimeoutError:
                log.warning("AIS feed %s: nothing for %.0f s, reconnecting", self.config.name,
                            self.config.idle_timeout)
                break
            except OSError as exc:
                log.warning("AIS feed %s: connection lost (%s)", self.config.name, exc)
                break
            if not chunk:
                break
            delivered = True
            self.stats.bytes += len(chunk)
            self.decoder.feed(chunk, received_at=int(self._clock()))
            if self.decoder.pending_sentences >= self.config.flush_sentences:
                await self._enqueue(self.decoder.take())
        return delivered

    # -- UDP -----------------------------------------------------------------------------------
    async def _run_udp(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(self.config.host, self.config.port))
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self.local_address = (str(sockname[0]), int(sockname[1]))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            transport.close()
            self._transport = None

    def _datagram(self, data: bytes) -> None:
        now = int(self._clock())
        self.stats.datagrams += 1
        self.stats.bytes += len(data)
        self.decoder.feed(data, received_at=now)
        self.decoder.end_line(received_at=now)
        if self.decoder.pending_sentences >= self.config.flush_sentences:
            self._enqueue_nowait(self.decoder.take())

    # -- batches -------------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_seconds)
            self.decoder.expire(int(self._clock()))
            batch = self.decoder.take()
            if self.config.kind == "tcp":
                await self._enqueue(batch)
            else:
                self._enqueue_nowait(batch)

    async def _enqueue(self, batch: ParseResult) -> None:
        if _worth_sending(batch):
            await self._queue.put(batch)

    def _enqueue_nowait(self, batch: ParseResult) -> None:
        if not _worth_sending(batch):
            return
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.stats.dropped_batches += 1
            log.warning("AIS feed %s: sink behind, batch of %d readings dropped",
                        self.config.name, len(batch.readings))

    async def _deliver(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self.sink(batch)
                self.stats.batches += 1
            except Exception:  # the sink's failure must not end the feed
                self.stats.sink_errors += 1
                log.exception("AIS feed %s: sink failed on a batch", self.config.name)
            finally:
                self._queue.task_done()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, stream: AisStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.stream._datagram(data)

    def error_received(self, exc: Exception) -> None:
        log.warning("AIS feed %s: %s", self.stream.config.name, exc)


def _worth_sending(batch: ParseResult) -> bool:
    return bool(batch.readings or batch.errors
                or any(v for k, v in batch.stats.items() if k != "lines"))
