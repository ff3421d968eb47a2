"""Replay: re-execute a chain from genesis and check every root, as an auditor would.

Each block goes through :meth:`node.ledger.Ledger.import_block` on a fresh database built from
the genesis file alone: seals and validator list checked, every transaction re-executed, and the
derived state root, transactions root, receipts root, bloom, gas used and requests hash
compared with the header. The first difference stops the replay and is reported with the
block number and the field.

Parallel replay of a data directory (:func:`replay_datadir`, ``--jobs``): the chain is cut into
consecutive segments of about equal gas, and each segment is replayed in its own process — the
first from genesis, segment *i* from the post-state of its first block's parent *p*, as the
header chain claims it. Nothing is taken on trust that sequential replay would check:

- segment *i* starts from header *p* only after linking every header 1..*p* to the genesis
  built from the genesis file (each header names its parent's hash; the QBFT block hash covers
  everything but seals and round), so header *p*, its state root and validator list are the
  ones segment *i - 1* re-derives when it replays block *p* — and that segment compares its
  computed state root with exactly this header's;
- the state at *p* is read from the audited database only by hash: a trie node or code is
  accepted only if its Keccak-256 is the key that names it (:class:`_HashVerifiedReads`), so
  it is the state under header *p*'s root and no other;
- every block of every segment is imported as in sequential replay (seals, header rules, every
  transaction re-executed, every root compared).

So the segments together prove what one sequential pass proves — every block's roots follow
from genesis — using one core per segment. Each worker opens a snapshot of the (stopped)
node's LevelDB whose table files are hard links (LevelDB never rewrites a table file), made in
the scratch directory or else beside the chain; where neither can hold a hard link to the
chain's files, the replay runs in one process. A chain too short to be worth a process start
(:data:`MIN_SEGMENT_GAS`) replays in one process too.

The replayed chain goes into a throwaway LevelDB (:class:`_ScratchDB`) tuned for that: its
contents are read back only by the replay and deleted afterwards.

While it replays, an auditor's :class:`node.audit.AuditReport` watches every block it has
verified (events, validator participation, governance, anomalies, one subject's history).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel
from eth.vm.interrupt import MissingBytecode
from eth_hash.auto import keccak
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from trie.exceptions import MissingTrieNode

from node.audit import AuditReport
from node.chain import ChainError, InvalidBlock
from node.db import LevelDB
from node.genesis import Genesis
from node.ledger import BlockResult, Ledger


@dataclass
class ReplaySummary:
    """What a replay saw."""

    #: Blocks that verified.
    blocks: int = 0
    #: Their transactions.
    transactions: int = 0
    #: Their receipts' logs.
    logs: int = 0
    #: Their gas used.
    gas: int = 0
    #: Wall-clock seconds of the whole replay.
    seconds: float = 0.0
    #: Hash of the last block that verified (genesis before the first).
    head_hash: bytes = b""
    #: ``None`` when every block verified; else what failed and where.
    failure: str | None = None
    #: Processes that replayed consecutive segments of the chain.
    processes: int = 1

    def describe(self) -> str:
        rate = self.transactions / self.seconds if self.seconds else 0.0
        status = "FAILED: " + self.failure if self.failure else "OK: every root verified"
        return (
            f"replay {status}\n"
            f"  blocks {self.blocks}, transactions {self.transactions}, logs {self.logs}, "
            f"gas {self.gas}\n"
            f"  head 0x{self.head_hash.hex()}\n"
            f"  {self.seconds:.1f} s, {rate:.0f} tx/s, {self.processes} "
            f"process{'es' if self.processes > 1 else ''}"
        )


def replay_blocks(
    genesis: Genesis,
    blocks: Iterable[Any],
    scratch_dir: str,
    *,
    total: int | None = None,
    show_progress: bool = True,
    observe: Callable[[Any, BlockResult, Any], None] | None = None,
) -> ReplaySummary:
    """Import ``blocks`` in order onto a fresh chain in ``scratch_dir``; stop at the first fault.

    ``observe(block, result, parent_header)`` is called for every block once it verified (an
    :class:`AuditReport` is one such observer).
    """
    db = _ScratchDB(scratch_dir)
    started = time.perf_counter()
    try:
        ledger = Ledger(db, genesis)
        with _progress(show_progress, total) as advance, _few_collections():
            summary = _import_all(ledger, blocks, observe, advance)
    finally:
        db.close()
    summary.seconds = time.perf_counter() - started
    return summary


@contextmanager
def _few_collections() -> Iterator[None]:
    """Raise the cyclic collector's thresholds for the duration (the node's own setting,
    ``portledger run``): py-evm allocates many short-lived objects per transaction, and with
    the defaults the collector runs ~2.5 times a block for ~2 % of replay time."""
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def _progress(show: bool, total: int | None) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields ``advance(blocks_done, transactions_done)``."""
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        disable=not show,
        transient=True,
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task("replay", total=total, rate="")

        def advance(blocks: int, transactions: int) -> None:
            elapsed = time.perf_counter() - started
            progress.update(
                task, completed=blocks, rate=f"{transactions / elapsed:.0f} tx/s" if elapsed else ""
            )

        yield advance


def _import_all(
    ledger: Ledger,
    blocks: Iterable[Any],
    observe: Callable[[Any, BlockResult, Any], None] | None,
    advance: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Import ``blocks`` onto ``ledger``'s head one by one; the first fault stops it."""
    summary = ReplaySummary(head_hash=ledger.head().hash)
    for block in blocks:
        expected = ledger.head().block_number + 1
        if block.number != expected:
            summary.failure = f"block #{block.number}: expected block #{expected} next"
            break
        parent = ledger.head()
        try:
            result = ledger.import_block(block)
        except InvalidBlock as exc:
            summary.failure = str(exc)
            break
        if observe is not None:
            observe(block, result, parent)
        summary.blocks += 1
        summary.transactions += len(block.transactions)
        summary.logs += sum(len(r.logs) for r in result.receipts)
        summary.gas += block.header.gas_used
        summary.head_hash = block.hash
        if advance is not None:
            advance(summary.blocks, summary.transactions)
    return summary


# -- parallel replay of a data directory ---------------------------------------------------


class _ScratchDB(LevelDB):
    """The replay's throwaway LevelDB: what the replayed blocks write, read back only by the
    replay itself. Opened with a 64 MiB write buffer and no compression: a node's defaults
    (4 MiB, snappy) cost the replay a fifth more CPU in LevelDB's background flushes and
    compactions, and trie nodes — hashes, mostly — hardly compress."""

    def __init__(self, path: str) -> None:
        super().__init__(path, sync=False)
        self._db.close()
        self._db = plyvel.DB(
            path,
            create_if_missing=True,
            lru_cache_size=64 * 1024 * 1024,
            write_buffer_size=64 * 1024 * 1024,
            compression=None,
        )


#: Least gas per parallel replay segment: about 3 s of work at the replay rate (~70 M gas/s
#: on the development machine).
MIN_SEGMENT_GAS = 200_000_000
#: A worker's start (interpreter, imports, genesis, its header chain) in gas replayed
#: meanwhile: ~0.8 s measured on the development machine.
WORKER_START_GAS = 50_000_000


class _HashVerifiedReads(_ScratchDB):
    """A segment's scratch database that reads what it lacks from the audited one — but only
    hash-addressed entries: a 32-byte key whose value hashes to it (a trie node, a contract's
    code). Anything else there (headers, lookups, a node that does not match its key) reads
    as missing, so a replay from a forged state fails instead of trusting it."""

    def __init__(self, path: str, source: LevelDB) -> None:
        super().__init__(path)
        self._source = source

    def __getitem__(self, key: bytes) -> bytes:
        try:
            return super().__getitem__(key)
        except KeyError:
            if len(key) != 32:
                raise
            value = self._source[key]
            if keccak(value) != key:
                raise KeyError(key) from None
            return value

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True


def snapshot_leveldb(chain_dir: Path, into: Path) -> None:
    """A second openable copy of a closed LevelDB: its table files hard-linked (LevelDB never
    changes a table file once written, and only unlinks it when obsolete), the manifest, log
    and current-file copied. Raises ``OSError`` if the files cannot be linked (another file
    system)."""
    into.mkdir(parents=True)
    for entry in chain_dir.iterdir():
        if entry.name == "LOCK" or not entry.is_file():
            continue
        if entry.suffix in (".ldb", ".sst"):
            os.link(entry, into / entry.name)
        else:
            shutil.copy2(entry, into / entry.name)


def split_by_gas(
    gas_per_block: list[int], parts: int, *, head_start: int = 0
) -> list[tuple[int, int]]:
    """Cut blocks 1..n (``gas_per_block[i]`` is block i + 1's gas) into at most ``parts``
    consecutive (first, last) ranges, none empty, that finish together: of equal gas, except
    that every range after the first starts ``head_start`` gas late (a worker process's start,
    which the first range, replayed by the calling process, does not pay)."""
    n = len(gas_per_block)
    parts = max(1, min(parts, n))
    # Every block costs something even when it holds no transaction (seals, system calls).
    weights = [g + 100_000 for g in gas_per_block]
    first_share = (sum(weights) + head_start * (parts - 1)) / parts
    later_share = max(first_share - head_start, 1.0)
    ranges: list[tuple[int, int]] = []
    first, acc = 1, 0
    for number, w in enumerate(weights, start=1):
        acc += w
        remaining_parts = parts - len(ranges) - 1
        if (
            remaining_parts > 0
            and acc >= first_share + later_share * len(ranges)
            and n - number >= remaining_parts
        ):
            ranges.append((first, number))
            first = number + 1
    if first <= n:
        ranges.append((first, n))
    return ranges


@dataclass
class _SegmentResult:
    """What a segment worker sends back."""

    #: The segment's summary (failure names the block that failed).
    summary: ReplaySummary
    #: Its audit report, when one was asked for.
    report: AuditReport | None


def _replay_segment(
    genesis_path: str,
    snapshot_dir: str,
    scratch_dir: str,
    first: int,
    last: int,
    subject: str | None,
    with_report: bool,
    done: Any,
    conn: Any,
) -> None:
    """Worker: replay blocks ``first..last`` from the post-state of block ``first - 1``."""
    genesis = Genesis.load(genesis_path)
    source_db = LevelDB(snapshot_dir, sync=False)
    scratch = _HashVerifiedReads(scratch_dir, source_db)
    report = AuditReport(genesis, subject=subject) if with_report else None
    summary = ReplaySummary()
    started = time.perf_counter()
    try:
        source = Ledger(source_db, genesis)
        ledger = Ledger(scratch, genesis)
        if source.head().block_number < last:
            raise ChainError(f"the source chain ends before block #{last}")
        # Headers 1..first-1, each linked to its parent's hash from the genesis this replay
        # built: persist_header_chain refuses a header whose parent hash is not the previous
        # header's (py-evm's ValidationError).
        with scratch.block_write():
            ledger.chaindb.persist_header_chain(
                source.header_by_number(n) for n in range(1, first)
            )
        if ledger.head().block_number != first - 1:
            raise ChainError(f"the header chain does not reach block #{first - 1}")

        def advance(blocks: int, _transactions: int) -> None:
            done.value = blocks

        blocks = (
            source.block_by_header(source.header_by_number(n)) for n in range(first, last + 1)
        )
        with _few_collections():
            summary = _import_all(
                ledger, blocks, report.observe if report is not None else None, advance
            )
    except (MissingTrieNode, MissingBytecode) as exc:
        missing = bytes(
            exc.missing_node_hash if isinstance(exc, MissingTrieNode) else exc.missing_code_hash
        )
        summary.failure = (
            f"segment #{first}..#{last}: state entry 0x{missing.hex()} under block "
            f"#{first - 1}'s state root is missing from the audited database or does not "
            f"match its hash ({type(exc).__name__})"
        )
    except Exception as exc:  # reported to the parent, which names the segment
        summary.failure = f"segment #{first}..#{last}: {type(exc).__name__}: {exc}"
    finally:
        summary.seconds = time.perf_counter() - started
        scratch.close()
        source_db.close()
    conn.send(_SegmentResult(summary, report))
    conn.close()


def replay_datadir(
    genesis: Genesis,
    chain_dir: str | Path,
    scratch_dir: str | Path,
    *,
    jobs: int = 1,
    report: AuditReport | None = None,
    show_progress: bool = True,
    min_segment_gas: int = MIN_SEGMENT_GAS,
    worker_start_gas: int = WORKER_START_GAS,
) -> ReplaySummary:
    """Replay a stopped node's chain (its LevelDB in ``chain_dir``) from genesis on up to
    ``jobs`` processes (see the module docstring); feed ``report`` with every block, in chain
    order. A segment holds at least ``min_segment_gas`` (a worker costs a process start and a
    pass over the headers before it), so a short chain replays in one process; the calling
    process's segment is ``worker_start_gas`` longer than the others (see :func:`split_by_gas`).

    ``scratch_dir`` must be empty; the replay's databases and snapshots go there.
    """
    chain_dir, scratch = Path(chain_dir), Path(scratch_dir)
    started = time.perf_counter()
    snapshots: list[Path] = []
    beside: Path | None = None  # snapshots next to the chain, when scratch is elsewhere
    for i in range(1, max(1, jobs)):
        try:
            snapshot_leveldb(chain_dir, scratch / f"snapshot-{i}")
            snapshots.append(scratch / f"snapshot-{i}")
        except OSError:
            shutil.rmtree(scratch / f"snapshot-{i}", ignore_errors=True)
            try:
                beside = beside or Path(tempfile.mkdtemp(prefix=".replay-", dir=chain_dir.parent))
                snapshot_leveldb(chain_dir, beside / f"snapshot-{i}")
                snapshots.append(beside / f"snapshot-{i}")
            except OSError:
                break  # no hard links possible: fewer processes
    source_db = LevelDB(str(chain_dir), sync=False)
    try:
        source = Ledger(source_db, genesis)
        head = source.head().block_number
        gas = [source.header_by_number(n).gas_used for n in range(1, head + 1)]
        parts = min(len(snapshots) + 1, max(1, sum(gas) // max(1, min_segment_gas)))
        segments = split_by_gas(gas, parts, head_start=worker_start_gas) if head else [(1, 0)]
        context = multiprocessing.get_context("spawn")
        # Workers get the genesis as a file: a spawned process's arguments travel through a
        # pipe, and one larger than the pipe's buffer would block this process for ever if
        # the worker died before reading them.
        genesis_path = scratch / "genesis.json"
        genesis_path.write_text(json.dumps(genesis.raw))
        workers = []
        for i, (first, last) in enumerate(segments[1:], start=1):
            receiver, sender = context.Pipe(duplex=False)
            done = context.Value("q", 0)
            process = context.Process(
                target=_replay_segment,
                args=(str(genesis_path), str(snapshots[i - 1]), str(scratch / f"segment-{i}"), first,
                      last, report.subject if report is not None else None, report is not None,
                      done, sender),
                daemon=True,
            )
            process.start()
            sender.close()
            workers.append((process, receiver, done))
        first, last = segments[0]
        replay_db = _ScratchDB(str(scratch / "segment-0"))
        try:
            with _progress(show_progress, head) as advance, _few_collections():

                def advance_all(blocks: int, transactions: int) -> None:
                    advance(blocks + sum(d.value for _p, _r, d in workers), transactions)

                blocks = (
                    source.block_by_header(source.header_by_number(n))
                    for n in range(first, last + 1)
                )
                summary = _import_all(
                    Ledger(replay_db, genesis), blocks,
                    report.observe if report is not None else None, advance_all,
                )
                for process, receiver, _done in workers:
                    if summary.failure is not None:
                        process.terminate()
                        continue
                    part = _segment_result(process, receiver)
                    summary.blocks += part.summary.blocks
                    summary.transactions += part.summary.transactions
                    summary.logs += part.summary.logs
                    summary.gas += part.summary.gas
                    summary.head_hash = part.summary.head_hash or summary.head_hash
                    summary.failure = part.summary.failure
                    if report is not None and part.report is not None:
                        report.merge(part.report)
        finally:
            replay_db.close()
            for process, receiver, _done in workers:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                receiver.close()
    finally:
        source_db.close()
        if beside is not None:
            shutil.rmtree(beside, ignore_errors=True)
    summary.processes = len(segments)
    summary.seconds = time.perf_counter() - started
    return summary


def _segment_result(process: Any, receiver: Any) -> _SegmentResult:
    """Wait for a segment worker's result for as long as the worker lives."""
    while not receiver.poll(0.5):
        if not process.is_alive() and not receiver.poll(0):
            return _SegmentResult(
                ReplaySummary(failure=f"replay worker exited with code {process.exitcode}"), None
            )
    try:
        result: _SegmentResult = receiver.recv()
    except EOFError:
        return _SegmentResult(
            ReplaySummary(failure=f"replay worker exited with code {process.exitcode}"), None
        )
    return result
