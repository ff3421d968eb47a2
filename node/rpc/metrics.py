"""The node's Prometheus metrics (``GET /metrics`` on the JSON-RPC address): its limits, how
full each bounded queue is, and what each limit refused.

The parts keep plain counters and sizes (:attr:`node.txpool.TxPool.refused`,
:attr:`node.engine.EventQueue.dropped`, :attr:`node.p2p.PeerNetwork.inbound_dropped`,
:attr:`node.rpc.app.JsonRpc.refused`, ...); :class:`NodeCollector` reads them when scraped, so
no part of the node depends on the metrics library and nothing is counted twice. One registry
per application (as the gateway's ``/metrics``), never the process-global one.

=================================================  =====  =====================================
metric                                             type   labels
=================================================  =====  =====================================
``portledger_limit``                               gauge  ``limit``: every configured limit
``portledger_rpc_in_flight``                       gauge  requests being answered
``portledger_rpc_refused_total``                   count  ``limit``: -32005 / 413 / 429 answers
``portledger_rpc_websocket_sessions``              gauge  open WebSocket sessions
``portledger_rpc_websocket_subscriptions``         gauge  their subscriptions
``portledger_txpool_transactions``                 gauge  pooled transactions
``portledger_txpool_bytes``                        gauge  their raw bytes
``portledger_txpool_drain_per_second``             gauge  transactions blocks take out of the pool per second
``portledger_txpool_refused_total``                count  ``limit``: ``count``/``bytes``/``sender``/``wait``
``portledger_engine_events_queued``                gauge  ``origin``: ``peer`` or ``local``
``portledger_engine_events_high_water``            gauge  most peer inputs queued at once
``portledger_engine_events_dropped_total``         count  ``reason`` (node.engine)
``portledger_engine_pre_executions``               gauge  proposals being executed
``portledger_p2p_inbox_frames``                    gauge  ``peer``: frames in its inbox
``portledger_p2p_inbox_bytes``                     gauge  ``peer``: their bytes
``portledger_p2p_frames_received_total``           count  ``peer``: application frames received
``portledger_p2p_inbox_dropped_total``             count  ``peer``: frames dropped (inbox full)
``portledger_p2p_floods_total``                    count  ``peer``: flooding episodes penalised
``portledger_p2p_penalties_total``                 count  ``peer``: penalties (any reason)
``portledger_p2p_bans_total``                      count  ``peer``: bans
``portledger_p2p_banned``                          gauge  peers banned now
=================================================  =====  =====================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the dispatcher imports this module
    from node.rpc.app import JsonRpc

#: The Content-Type of the exposition.
CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeCollector(Collector):
    """Reads the node's limits, queue sizes and refusal counters at each scrape."""

    def __init__(self, rpc: JsonRpc) -> None:
        self.rpc = rpc

    def limits(self) -> dict[str, int | float]:
        """Every configured limit by name (the ``limit`` label of ``portledger_limit``)."""
        rpc = self.rpc
        pool = rpc.node.pool
        out: dict[str, int | float] = {
            "rpc_max_body_bytes": rpc.limits.max_body_bytes,
            "rpc_max_batch": rpc.limits.max_batch,
            "rpc_max_concurrent": rpc.limits.max_concurrent,
            "rpc_max_subscriptions": rpc.limits.max_subscriptions,
            "rpc_max_websockets": rpc.limits.max_websockets,
            "rpc_body_timeout_seconds": rpc.limits.body_timeout,
            "txpool_max_size": pool.max_size,
            "txpool_max_bytes": pool.max_bytes,
            "txpool_max_per_sender": pool.max_per_sender,
            "txpool_max_tx_bytes": pool.max_tx_bytes,
            "txpool_max_wait_seconds": pool.max_wait,
        }
        engine = rpc.node.engine
        if engine is not None:
            limits = engine.limits
            out |= {
                "engine_max_events": limits.max_events,
                "engine_max_events_per_peer": limits.max_events_per_peer,
                "engine_max_future_per_peer": limits.max_future_per_peer,
                "engine_max_pre_executions": limits.max_pre_executions,
            }
            config = engine.network.config
            out |= {
                "p2p_peer_queue_frames": config.peer_queue_frames,
                "p2p_peer_queue_bytes": config.peer_queue_bytes,
                "p2p_max_frame_size": config.max_frame_size,
                "p2p_send_queue_size": config.send_queue_size,
            }
        return out

    def collect(self) -> Iterator[Metric]:
        rpc = self.rpc
        limit = GaugeMetricFamily("portledger_limit", "A configured limit", labels=["limit"])
        for name, value in sorted(self.limits().items()):
            limit.add_metric([name], value)
        yield limit
        yield GaugeMetricFamily(
            "portledger_rpc_in_flight", "JSON-RPC requests being answered", value=rpc.in_flight
        )
        yield _counter(
            "portledger_rpc_refused", "JSON-RPC answers refused by a limit", "limit", rpc.refused
        )
        yield GaugeMetricFamily(
            "portledger_rpc_websocket_sessions", "Open WebSocket sessions", value=len(rpc.sessions)
        )
        yield GaugeMetricFamily(
            "portledger_rpc_websocket_subscriptions",
            "Subscriptions of the open WebSocket sessions",
            value=sum(len(s.subscriptions) for s in rpc.sessions),
        )
        pool = rpc.node.pool
        yield GaugeMetricFamily(
            "portledger_txpool_transactions", "Pooled transactions", value=len(pool)
        )
        yield GaugeMetricFamily(
            "portledger_txpool_bytes", "Raw bytes of the pooled transactions", value=pool.bytes
        )
        yield GaugeMetricFamily(
            "portledger_txpool_drain_per_second",
            "Transactions blocks take out of the pool per second (0: not measured yet)",
            value=pool.drain_rate or 0.0,
        )
        yield _counter(
            "portledger_txpool_refused",
            "Transactions refused by a pool limit",
            "limit",
            pool.refused,
        )
        engine = rpc.node.engine
        if engine is not None:
            yield from self._engine(engine)

    def _engine(self, engine: Any) -> Iterator[Metric]:
        events = engine.events
        queued = GaugeMetricFamily(
            "portledger_engine_events_queued", "Inputs queued for the QBFT core", labels=["origin"]
        )
        queued.add_metric(["peer"], events.peer_events)
        queued.add_metric(["local"], len(events) - events.peer_events)
        yield queued
        yield GaugeMetricFamily(
            "portledger_engine_events_high_water",
            "Most peer inputs queued at once",
            value=events.high_water,
        )
        yield _counter(
            "portledger_engine_events_dropped",
            "Peer inputs dropped by a limit",
            "reason",
            events.dropped,
        )
        yield GaugeMetricFamily(
            "portledger_engine_pre_executions",
            "Proposals being executed",
            value=engine.pre_executions,
        )
        network = engine.network
        frames = GaugeMetricFamily(
            "portledger_p2p_inbox_frames", "Frames waiting in a peer's inbox", labels=["peer"]
        )
        size = GaugeMetricFamily(
            "portledger_p2p_inbox_bytes", "Bytes waiting in a peer's inbox", labels=["peer"]
        )
        for peer, (count, nbytes) in sorted(network.inbox_sizes().items()):
            frames.add_metric(["0x" + peer.hex()], count)
            size.add_metric(["0x" + peer.hex()], nbytes)
        yield frames
        yield size
        for name, doc, per_peer in (
            ("frames_received", "Application frames received", network.received),
            ("inbox_dropped", "Frames dropped because the peer's inbox was full",
             network.inbound_dropped),
            ("floods", "Flooding episodes (penalised)", network.floods),
            ("penalties", "Penalties given to a peer (malformed or invalid input, floods)",
             network.penalties),
            ("bans", "Bans of a peer (its penalty score reached the threshold)", network.bans),
        ):
            yield _counter(f"portledger_p2p_{name}", doc, "peer",
                           {"0x" + p.hex(): n for p, n in per_peer.items()})
        yield GaugeMetricFamily(
            "portledger_p2p_banned",
            "Peers banned now",
            value=sum(1 for p in network.bans if network.banned(p)),
        )


def _counter(name: str, doc: str, label: str, counts: Any) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], value)
    return family


class NodeMetrics:
    """The registry of one JSON-RPC application."""

    def __init__(self, rpc: JsonRpc) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = NodeCollector(rpc)
        self.registry.register(self.collector)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
