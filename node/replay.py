"""Replay: re-execute a chain from genesis and check every root, as an auditor would.

Each block goes through :meth:`node.chain.Ledger.import_block` on a fresh database built from
the genesis file alone: seals and validator list checked, every transaction re-executed, and the
derived state root, transactions root, receipts root, bloom, gas used and requests hash
compared with the header. The first difference stops the replay and is reported with the
block number and the field.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from node.chain import InvalidBlock, Ledger
from node.db import LevelDB
from node.genesis import Genesis


@dataclass
class ReplaySummary:
    """What a replay saw."""

    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    gas: int = 0
    seconds: float = 0.0
    head_hash: bytes = b""
    #: ``None`` when every block verified; else what failed and where.
    failure: str | None = None

    def describe(self) -> str:
        rate = self.transactions / self.seconds if self.seconds else 0.0
        status = "FAILED: " + self.failure if self.failure else "OK: every root verified"
        return (
            f"replay {status}\n"
            f"  blocks {self.blocks}, transactions {self.transactions}, logs {self.logs}, "
            f"gas {self.gas}\n"
            f"  head 0x{self.head_hash.hex()}\n"
            f"  {self.seconds:.1f} s, {rate:.0f} tx/s"
        )


def replay_blocks(
    genesis: Genesis,
    blocks: Iterable[Any],
    scratch_dir: str,
    *,
    total: int | None = None,
    show_progress: bool = True,
) -> ReplaySummary:
    """Import ``blocks`` in order onto a fresh chain in ``scratch_dir``; stop at the first fault."""
    db = LevelDB(scratch_dir, sync=False)
    ledger = Ledger(db, genesis)
    summary = ReplaySummary(head_hash=ledger.head().hash)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    )
    with progress:
        task = progress.add_task("replay", total=total, rate="")
        try:
            for block in blocks:
                expected = ledger.head().block_number + 1
                if block.number != expected:
                    summary.failure = f"block #{block.number}: expected block #{expected} next"
                    break
                try:
                    result = ledger.import_block(block)
                except InvalidBlock as exc:
                    summary.failure = str(exc)
                    break
                summary.blocks += 1
                summary.transactions += len(block.transactions)
                summary.logs += sum(len(r.logs) for r in result.receipts)
                summary.gas += block.header.gas_used
                summary.head_hash = block.hash
                elapsed = time.perf_counter() - started
                progress.update(
                    task,
                    advance=1,
                    rate=f"{summary.transactions / elapsed:.0f} tx/s" if elapsed else "",
                )
        finally:
            summary.seconds = time.perf_counter() - started
            db.close()
    return summary
