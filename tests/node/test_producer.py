"""Dev-mode block production: a block as soon as transactions wait, no empty-block churn."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from node.service import NodeService
from tests.support.chain import TERMINAL, VALIDATOR


async def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_blocks_only_when_transactions_wait(ledger: Any) -> None:
    service = NodeService(ledger, VALIDATOR)
    seen: list[int] = []
    service.listeners.append(lambda event: seen.append(event.header.block_number))
    producer = asyncio.create_task(service.run_dev_producer())
    try:
        # genesis is long past the heartbeat interval: one empty block at start
        assert await _wait_for(lambda: ledger.head().block_number == 1, 5)
        await asyncio.sleep(2.5)
        assert ledger.head().block_number == 1, "an empty block was produced without a heartbeat"
        signed = TERMINAL.sign_transaction(
            {"to": TERMINAL.address, "value": 0, "gas": 21_000, "nonce": 0,
             "chainId": ledger.chain_id, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        )
        sent_at = time.monotonic()
        tx_hash = service.submit_raw(bytes(signed.raw_transaction))
        assert await _wait_for(lambda: ledger.head().block_number == 2, 5)
        latency = time.monotonic() - sent_at
        assert latency < ledger.genesis.qbft.period + 1.5
        block = ledger.block_by_header(ledger.head())
        assert [tx.hash for tx in block.transactions] == [tx_hash]
        assert len(service.pool) == 0
        assert seen == [1, 2]
        head = ledger.head()
        assert head.timestamp >= ledger.header_by_number(1).timestamp + ledger.genesis.qbft.timestamp_step
    finally:
        producer.cancel()
        service.stop()
