"""The node's commands of ``portledger`` (composed by :mod:`portledger.cli`).

::

    portledger init    --datadir D [--genesis genesis.json] [--dev-key validator:0 | --key-file F]
    portledger node    --datadir D [--rpc-host 127.0.0.1] [--rpc-port 8545] [--report-key-file F]
                       [--rpc-max-* N] [--txpool-max-* N] [--engine-max-* N] [--p2p-peer-queue-* N]
    portledger export  --datadir D FILE [--first N] [--last M]
    portledger import  --datadir D FILE
    portledger replay  --datadir D | --blocks FILE --genesis G
    portledger proof   --datadir D (--event-id N | --subject REF | --tx HASH --log-index I) --out F

A data directory holds ``genesis.json`` (the network's), ``nodekey`` (this node's secp256k1 key,
hex, mode 0600) and ``chain/`` (LevelDB); optionally ``peers.json`` (the other member nodes) and
``reportkey`` (the account that signs equivocation reports, hex like ``nodekey``:
:mod:`node.evidence`). Every failure exits non-zero with a one-line reason.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import rlp
from eth_keys.datatypes import PrivateKey
from eth_typing import BlockNumber
from eth_utils.address import to_checksum_address

from node.chain import InvalidBlock, PortLedgerVM
from node.datadir import DataDir, DataDirError, init_datadir, read_key_file
from node.engine import Engine, EngineLimits
from node.genesis import Genesis, dev_key
from node.ledger import Ledger
from node.p2p import P2PConfig, Peer, PeerNetwork
from node.rpc.limits import RpcLimits
from node.txpool import PoolLimits

REPO_GENESIS = Path(__file__).resolve().parent.parent / "genesis.json"
#: Seconds between forced GIL hand-overs in a running node (Python's default is 0.005).
GIL_SWITCH_INTERVAL = 0.0002


def open_ledger(datadir: str | Path, *, sync: bool = True) -> Ledger:
    """The ledger of an initialised data directory (a ClickException says why not)."""
    try:
        return DataDir(datadir).open_ledger(sync=sync)
    except DataDirError as exc:
        raise click.ClickException(str(exc)) from exc


datadir_option = click.option(
    "--datadir", required=True, type=click.Path(file_okay=False), help="Node data directory."
)


@click.command()
@datadir_option
@click.option(
    "--genesis",
    "genesis_path",
    type=click.Path(exists=True, dir_okay=False),
    default=str(REPO_GENESIS),
    show_default=True,
)
@click.option(
    "--dev-key",
    "dev_key_label",
    help="Use a PUBLIC development key, e.g. validator:0 (demo and tests only).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File holding a hex private key.",
)
def init(datadir: str, genesis_path: str, dev_key_label: str | None, key_file: str | None) -> None:
    """Create a data directory: genesis, node key and the chain database."""
    if dev_key_label and key_file:
        raise click.ClickException("give --dev-key or --key-file, not both")
    try:
        if dev_key_label:
            key = dev_key(dev_key_label)
        elif key_file:
            key = read_key_file(Path(key_file), "key file")
        else:
            key = PrivateKey(os.urandom(32))
        made = init_datadir(datadir, genesis_path, key)
    except DataDirError as exc:
        raise click.ClickException(str(exc)) from exc
    role = "validator" if made.validator else "non-validating node"
    click.echo(
        f"initialised {made.root}: chain {made.chain_id}, genesis 0x{made.genesis_hash.hex()}, "
        f"node {to_checksum_address(made.address)} ({role})"
    )


@click.command("node")
@datadir_option
@click.option(
    "--rpc-host",
    default="127.0.0.1",
    show_default=True,
    help="JSON-RPC listen address (loopback by default).",
)
@click.option("--rpc-port", default=8545, show_default=True, type=int)
@click.option(
    "--no-produce", is_flag=True, help="Do not produce blocks even if this node is a validator."
)
@click.option(
    "--p2p-host", default="127.0.0.1", show_default=True, help="Peer-to-peer listen address."
)
@click.option("--p2p-port", default=30303, show_default=True, type=int)
@click.option(
    "--peers",
    "peers_file",
    type=click.Path(exists=True, dir_okay=False),
    help='JSON list of the other member nodes: [{"address": "0x..", "host": "..", "port": N}]. '
    "Default: DATADIR/peers.json if present. With peers the node runs QBFT over p2p.",
)
@click.option(
    "--report-key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File holding the hex private key of a member account that signs this node's "
    "equivocation reports (keep it mode 0600). Default: DATADIR/reportkey if present; "
    "without one a validator reports with its node key and an observer keeps evidence "
    "unreported.",
)
@click.option("--rpc-max-body-bytes", type=click.IntRange(1024), default=RpcLimits.max_body_bytes, show_default=True, help="Largest JSON-RPC body or WebSocket message (HTTP 413 / -32005).")
@click.option("--rpc-max-batch", type=click.IntRange(1), default=RpcLimits.max_batch, show_default=True, help="Most requests in one JSON-RPC batch (-32005).")
@click.option("--rpc-max-concurrent", type=click.IntRange(1), default=RpcLimits.max_concurrent, show_default=True, help="JSON-RPC requests answered at once; beyond: HTTP 429 / -32005 with retryAfter.")
@click.option("--rpc-max-subscriptions", type=click.IntRange(1), default=RpcLimits.max_subscriptions, show_default=True, help="Subscriptions per WebSocket connection (-32005).")
@click.option("--rpc-max-websockets", type=click.IntRange(1), default=RpcLimits.max_websockets, show_default=True, help="WebSocket connections open at once (HTTP 429 / -32005 with retryAfter).")
@click.option("--rpc-body-timeout", type=click.FloatRange(1.0), default=RpcLimits.body_timeout, show_default=True, help="Seconds an HTTP request's body may take once its headers are in (HTTP 408 / -32005).")
@click.option("--txpool-max-count", type=click.IntRange(1), default=PoolLimits.max_size, show_default=True, help="Transactions in the pool (-32005 with retryAfter).")
@click.option("--txpool-max-bytes", type=click.IntRange(1024), default=PoolLimits.max_bytes, show_default=True, help="Raw bytes of the pooled transactions (-32005 with retryAfter).")
@click.option("--txpool-max-wait", type=click.FloatRange(1.0), default=PoolLimits.max_wait, show_default=True, help="Seconds of work at the measured drain rate the pool holds (-32005 with retryAfter).")
@click.option("--txpool-max-per-sender", type=click.IntRange(1), default=PoolLimits.max_per_sender, show_default=True, help="Pending transactions of one sender (-32005 with retryAfter).")
@click.option("--engine-max-events", type=click.IntRange(16), default=EngineLimits.max_events, show_default=True, help="Peer consensus messages queued for the QBFT core.")
@click.option("--engine-max-events-per-peer", type=click.IntRange(4), default=EngineLimits.max_events_per_peer, show_default=True, help="Of those, from one peer.")
@click.option("--engine-max-future-per-peer", type=click.IntRange(1), default=EngineLimits.max_future_per_peer, show_default=True, help="Of those, for the next height, from one peer.")
@click.option("--p2p-peer-queue-frames", type=click.IntRange(8), default=P2PConfig.peer_queue_frames, show_default=True, help="Frames waiting in one peer's inbox; beyond: dropped, the peer penalised.")
@click.option("--p2p-peer-queue-bytes", type=click.IntRange(1024 * 1024), default=P2PConfig.peer_queue_bytes, show_default=True, help="Bytes waiting in one peer's inbox; beyond: dropped, the peer penalised.")
def node_command(
    datadir: str,
    rpc_host: str,
    rpc_port: int,
    no_produce: bool,
    p2p_host: str,
    p2p_port: int,
    peers_file: str | None,
    report_key_file: str | None,
    rpc_max_body_bytes: int,
    rpc_max_batch: int,
    rpc_max_concurrent: int,
    rpc_max_subscriptions: int,
    rpc_max_websockets: int,
    rpc_body_timeout: float,
    txpool_max_count: int,
    txpool_max_bytes: int,
    txpool_max_per_sender: int,
    txpool_max_wait: float,
    engine_max_events: int,
    engine_max_events_per_peer: int,
    engine_max_future_per_peer: int,
    p2p_peer_queue_frames: int,
    p2p_peer_queue_bytes: int,
) -> None:
    """Run one node: JSON-RPC over HTTP and WebSocket, and QBFT consensus with its peers
    (or, alone with a single-validator genesis and no peers, dev-mode block production)."""
    paths = DataDir(datadir)
    if peers_file is None and (paths.root / "peers.json").exists():
        peers_file = str(paths.root / "peers.json")
    peers = load_peers(peers_file) if peers_file else None
    report_key = load_report_key(paths, report_key_file)
    ledger = open_ledger(datadir)
    try:
        key = paths.load_key()
    except DataDirError as exc:
        raise click.ClickException(str(exc)) from exc
    p2p = (p2p_host, p2p_port) if peers is not None else None
    limits = NodeLimits(
        rpc=RpcLimits(
            max_body_bytes=rpc_max_body_bytes,
            max_batch=rpc_max_batch,
            max_concurrent=rpc_max_concurrent,
            max_subscriptions=rpc_max_subscriptions,
            max_websockets=rpc_max_websockets,
            body_timeout=rpc_body_timeout,
        ),
        pool=PoolLimits(
            max_size=txpool_max_count,
            max_bytes=txpool_max_bytes,
            max_per_sender=txpool_max_per_sender,
            max_wait=txpool_max_wait,
        ),
        engine=EngineLimits(
            max_events=engine_max_events,
            max_events_per_peer=min(engine_max_events_per_peer, engine_max_events),
            max_future_per_peer=min(engine_max_future_per_peer, engine_max_events_per_peer),
        ),
        p2p=P2PConfig(
            peer_queue_frames=p2p_peer_queue_frames, peer_queue_bytes=p2p_peer_queue_bytes
        ),
    )
    asyncio.run(
        _run_node(
            ledger, key, rpc_host, rpc_port, produce=not no_produce, p2p=p2p, peers=peers,
            report_key=report_key, limits=limits,
        )
    )


@dataclass(frozen=True)
class NodeLimits:
    """Every bound of a running node (docs/limits.md)."""

    rpc: RpcLimits = field(default_factory=RpcLimits)
    pool: PoolLimits = field(default_factory=PoolLimits)
    engine: EngineLimits = field(default_factory=EngineLimits)
    p2p: P2PConfig = field(default_factory=P2PConfig)


def load_report_key(paths: DataDir, report_key_file: str | None) -> PrivateKey | None:
    """The reporting account's key: ``report_key_file``, else ``DATADIR/reportkey`` if present,
    else None; ClickException when the file is unreadable, not a key, or readable by others."""
    if report_key_file is None:
        if not paths.reportkey.exists():
            return None
        path = paths.reportkey
    else:
        path = Path(report_key_file)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise click.ClickException(f"cannot read reporting account key {path}: {exc}") from exc
    if mode & 0o077:
        raise click.ClickException(
            f"reporting account key {path} is readable by others (mode {mode & 0o777:o}): "
            f"chmod 600 it"
        )
    try:
        return read_key_file(path, "reporting account key")
    except DataDirError as exc:
        raise click.ClickException(str(exc)) from exc


def load_peers(path: str) -> list[Peer]:
    """Parse a peers file; ClickException naming what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
        return [
            Peer(bytes.fromhex(p["address"].removeprefix("0x")), str(p["host"]), int(p["port"]))
            for p in doc
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise click.ClickException(f"{path}: not a peers file ({exc})") from exc


async def _run_node(
    ledger: Ledger,
    key: PrivateKey,
    host: str,
    port: int,
    *,
    produce: bool,
    p2p: tuple[str, int] | None = None,
    peers: list[Peer] | None = None,
    report_key: PrivateKey | None = None,
    limits: NodeLimits | None = None,
) -> None:
    limits = limits or NodeLimits()
    # Blocks are built on a worker thread while the event loop answers JSON-RPC. Every time a
    # request's socket or LevelDB read gives up the GIL, getting it back from the busy worker
    # takes up to one switch interval (5 ms by default); a request needs several. A shorter
    # interval keeps eth_call latency low while blocks build (see BENCHMARKS.md).
    from aiohttp import web  # noqa: PLC0415 (start-up: loaded by the command that needs it)

    from node.rpc.app import create_rpc_app  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    from node.service import NodeService  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    sys.setswitchinterval(float(os.environ.get("PORTLEDGER_SWITCH_INTERVAL", GIL_SWITCH_INTERVAL)))
    if os.environ.get("PORTLEDGER_GC_TUNE", "1") == "1":
        # py-evm allocates many short-lived objects per transaction; with the default
        # thresholds the cyclic collector's full passes over a large heap stall requests.
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)

    log = logging.getLogger("portledger.node")
    is_validator = key.public_key.to_canonical_address() in ledger.validators_at(ledger.head())
    if p2p is None and produce and is_validator and len(ledger.validators_at(ledger.head())) != 1:
        raise click.ClickException(
            "this network has several validators: give the node its peers (--peers or DATADIR/peers.json)"
        )
    service = NodeService(
        ledger,
        key if is_validator else None,
        produce=produce and p2p is None,
        evidence_account=report_key,
        pool_limits=limits.pool,
    )
    if report_key is not None:
        reporter = report_key.public_key.to_canonical_address()
        log.info(
            "equivocation reports signed by %s%s",
            to_checksum_address(reporter),
            "" if service.is_member_account(reporter) else " (NOT a member account: none sent)",
        )
    elif not is_validator:
        log.info("observer without --report-key-file: equivocation evidence is kept, not reported")
    engine = None
    network = None
    if p2p is not None and peers is not None:
        network = PeerNetwork(key, p2p, peers, network_id=ledger.chain_id, config=limits.p2p)
        engine = Engine(service, key, network, limits.engine)
        await network.start()
    runner = web.AppRunner(create_rpc_app(service, limits.rpc), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info(
        "node %s head #%d; JSON-RPC http://%s:%d (WebSocket on the same address)",
        to_checksum_address(key.public_key.to_canonical_address()),
        ledger.head().block_number,
        host,
        port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    producer = None
    if engine is not None:
        producer = asyncio.create_task(engine.run())
    elif service.produce:
        producer = asyncio.create_task(service.run_dev_producer())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(
        {waiter} | ({producer} if producer else set()), return_when=asyncio.FIRST_COMPLETED
    )
    if producer is not None and producer in done and producer.exception():
        log.critical(
            "block producer halted: %r", producer.exception(), exc_info=producer.exception()
        )
    if engine is not None:
        await engine.stop()
    if network is not None:
        await network.stop()
    service.stop()
    if producer is not None:
        producer.cancel()
    await runner.cleanup()
    ledger.db.close()
    log.info("stopped")


def _iter_blocks(ledger: Ledger, first: int, last: int) -> Iterator[Any]:
    for number in range(first, last + 1):
        yield ledger.block_by_header(ledger.header_by_number(number))


@click.command()
@datadir_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--first", default=1, show_default=True, type=int)
@click.option("--last", default=None, type=int, help="Default: the head.")
def export(datadir: str, file: str, first: int, last: int | None) -> None:
    """Write canonical blocks as a stream of RLP-encoded blocks (geth's export format)."""
    ledger = open_ledger(datadir)
    head = ledger.head().block_number
    last = head if last is None else min(last, head)
    count = 0
    with open(file, "wb") as out:
        for block in _iter_blocks(ledger, max(first, 1), last):
            out.write(rlp.encode(block))
            count += 1
    click.echo(f"exported {count} blocks (#{max(first, 1)}..#{last}) to {file}")
    ledger.db.close()


def read_block_file(path: str, block_class: Any) -> Iterator[Any]:
    """Blocks from a file of concatenated RLP items; ClickException on a malformed item."""
    data = Path(path).read_bytes()
    offset = 0
    while offset < len(data):
        try:
            prefix, _type, length, end = rlp.codec.consume_length_prefix(data, offset)
            item_end = end + length
            block = rlp.decode(data[offset:item_end], sedes=block_class)
        except Exception as exc:
            raise click.ClickException(f"{path}: malformed block at byte {offset}: {exc}") from exc
        yield block
        offset = item_end


@click.command("import")
@datadir_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_command(datadir: str, file: str) -> None:
    """Import blocks from an RLP file, validating seals and re-executing every block."""
    ledger = open_ledger(datadir)
    block_class = ledger.chain.get_vm_class_for_block_number(BlockNumber(1)).get_block_class()
    imported = skipped = 0
    try:
        for block in read_block_file(file, block_class):
            head = ledger.head().block_number
            if block.number <= head:
                if ledger.header_by_number(block.number).hash != block.hash:
                    raise click.ClickException(
                        f"block #{block.number} conflicts with the local chain"
                    )
                skipped += 1
                continue
            try:
                ledger.import_block(block)
            except InvalidBlock as exc:
                raise click.ClickException(str(exc)) from exc
            imported += 1
    finally:
        ledger.db.close()
    click.echo(f"imported {imported} blocks, {skipped} already known")


@click.command()
@click.option(
    "--datadir", type=click.Path(file_okay=False), help="Replay this node's chain (node stopped)."
)
@click.option(
    "--blocks",
    "blocks_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Or replay an exported block file ...",
)
@click.option(
    "--genesis",
    "genesis_path",
    type=click.Path(exists=True, dir_okay=False),
    help="... against this genesis.",
)
@click.option("--subject", default=None, help="Keep this reference's full event history.")
@click.option("--export-csv", type=click.Path(dir_okay=False), default=None, help="Subject history as CSV.")
@click.option("--export-json", type=click.Path(dir_okay=False), default=None, help="Subject history as JSON.")
@click.option("--report-json", type=click.Path(dir_okay=False), default=None, help="The whole audit report as JSON.")
@click.option("--no-report", is_flag=True, help="Only verify; print no audit report.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=min(os.cpu_count() or 1, 8),
    show_default="the cores, at most 8",
    help="With --datadir: replay consecutive segments in up to this many processes "
    "(~300 MB of memory each).",
)
def replay(
    datadir: str | None,
    blocks_file: str | None,
    genesis_path: str | None,
    subject: str | None,
    export_csv: str | None,
    export_json: str | None,
    report_json: str | None,
    no_report: bool,
    jobs: int,
) -> None:
    """Re-execute the chain from genesis, checking every state, transaction and receipt root;
    then print the auditor's report (events, validator participation, governance, anomalies)."""
    from rich.console import Console  # noqa: PLC0415 (start-up: loaded by the command that needs it)

    from node.audit import AuditReport  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    from node.replay import replay_blocks, replay_datadir  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    if (export_csv or export_json) and not subject:
        raise click.ClickException("--export-csv / --export-json need --subject")

    if datadir:
        # Opened (and closed) first: the same checks and messages as every command.
        source = open_ledger(datadir, sync=False)
        genesis = source.genesis
        source.db.close()
        report = None if no_report else AuditReport(genesis, subject=subject)
        with tempfile.TemporaryDirectory(prefix="portledger-replay-") as scratch:
            summary = replay_datadir(
                genesis, DataDir(datadir).chain, scratch, jobs=jobs, report=report
            )
    elif blocks_file and genesis_path:
        genesis = Genesis.load(genesis_path)
        blocks = read_block_file(blocks_file, PortLedgerVM.get_block_class())
        report = None if no_report else AuditReport(genesis, subject=subject)
        with tempfile.TemporaryDirectory(prefix="portledger-replay-") as scratch:
            summary = replay_blocks(
                genesis, blocks, scratch, observe=report.observe if report is not None else None
            )
    else:
        raise click.ClickException("give --datadir, or --blocks with --genesis")
    click.echo(summary.describe())
    if report is not None:
        report.render(Console(width=140))
        if report_json:
            Path(report_json).write_text(json.dumps(report.as_dict(), indent=1) + "\n")
        if subject:
            report.export_history(export_csv, export_json)
    if summary.failure:
        sys.exit(1)


@click.command("proof")
@datadir_option
@click.option("--event-id", type=int, default=None, help="A cargo event id.")
@click.option("--subject", "subject", default=None, help="Every event of this reference (container, B/L, ...).")
@click.option("--tx", "tx_hash", default=None, help="A transaction hash (with --log-index).")
@click.option("--log-index", type=int, default=None, help="Block-wide log index, as JSON-RPC reports it.")
@click.option(
    "--disclose",
    "disclose_file",
    type=click.Path(exists=True, dir_okay=False),
    help='JSON {"<event id>": {"plaintext": "0x..", "dataKey": "0x..", "nonce": "0x..", ...}}: '
    "payloads to disclose (docs/proof-format.md).",
)
@click.option(
    "--anchor-readings",
    type=click.Path(exists=True, dir_okay=False),
    help="With --tx of an anchor: JSON list of the batch's reading hashes (hex), in order.",
)
@click.option("--anchor-index", type=int, default=None, help="The reading to prove in that batch.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Bundle file.")
def proof(
    datadir: str,
    event_id: int | None,
    subject: str | None,
    tx_hash: str | None,
    log_index: int | None,
    disclose_file: str | None,
    anchor_readings: str | None,
    anchor_index: int | None,
    out_file: str,
) -> None:
    """Write a proof bundle a bank verifies offline with `portledger verify-proof`."""
    from node.proofs import ProofBuilder, ProofBuildError  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    from proofs.disclosure import anchor_item  # noqa: PLC0415 (start-up: loaded by the command that needs it)
    if sum(x is not None for x in (event_id, subject, tx_hash)) != 1:
        raise click.ClickException("give exactly one of --event-id, --subject, --tx")
    ledger = open_ledger(datadir, sync=False)
    try:
        builder = ProofBuilder(ledger)
        if tx_hash is not None:
            if log_index is None:
                raise click.ClickException("--tx needs --log-index")
            refs = [builder.ref_for_transaction(bytes.fromhex(tx_hash.removeprefix("0x")), log_index)]
            if anchor_readings is not None:
                if anchor_index is None:
                    raise click.ClickException("--anchor-readings needs --anchor-index")
                hashes = [bytes.fromhex(h.removeprefix("0x")) for h in json.loads(Path(anchor_readings).read_text())]
                refs = [replace(refs[0], anchor=anchor_item(hashes, anchor_index))]
        elif event_id is not None:
            refs = [builder.refs_for_event_id(event_id)]
        else:
            refs = builder.refs_for_subject(str(subject))
        if disclose_file is not None:
            wanted = json.loads(Path(disclose_file).read_text())
            receipts_logs = {}
            for i, ref in enumerate(refs):
                key = (ref.block, ref.transaction_index)
                if key not in receipts_logs:
                    receipts_logs[key] = ledger.receipts(ledger.header_by_number(ref.block))[ref.transaction_index].logs
                log = receipts_logs[key][ref.log_index]
                eid = str(log.topics[3]) if len(log.topics) == 4 else None
                if eid in wanted:
                    refs[i] = replace(ref, disclosure=wanted[eid])
        bundle = builder.bundle(refs)
    except (ProofBuildError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        ledger.db.close()
    Path(out_file).write_text(json.dumps(bundle, indent=1) + "\n")
    click.echo(f"wrote a bundle of {len(bundle['events'])} event(s) over "
               f"{len(bundle['headers'])} block(s) to {out_file}")


#: The node's commands, in the order ``portledger --help`` lists them.
COMMANDS: tuple[click.Command, ...] = (init, node_command, export, import_command, replay, proof)
