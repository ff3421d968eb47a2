"""What the JSON-RPC methods read of the chain: the block a request names, its state, its
transactions and receipts (the receipts of recent blocks cached in JSON form).

Block tags: ``latest``, ``safe``, ``finalized`` and ``pending`` all name the head (QBFT gives
immediate finality: the head *is* final); ``earliest`` is genesis; EIP-1898 objects
(``{"blockHash": ...}`` / ``{"blockNumber": ...}``) are accepted where a block is named.
"""

from __future__ import annotations

from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI
from eth.exceptions import BlockNotFound, HeaderNotFound, TransactionNotFound
from eth_typing import Hash32

from node.rpc.errors import (
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    RpcError,
    parse_hash,
    parse_quantity,
)
from node.rpc.format import format_receipts
from node.service import NodeService

#: Blocks whose formatted receipts are kept (eth_getTransactionReceipt, eth_getBlockReceipts).
RECEIPT_CACHE_BLOCKS = 32
#: ... and at most this many formatted logs in all (~1.7 KB each): a block of cargo events
#: carries thousands, and 32 such blocks held ~110 MiB (the latest block is always kept).
RECEIPT_CACHE_LOGS = 20_000


class ChainView:
    """The node's chain as the JSON-RPC methods name it (shared by every namespace)."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self.ledger = node.ledger
        self._receipts_cache: dict[bytes, list[dict[str, Any]]] = {}
        #: Formatted logs held by the receipts cache (bounded by RECEIPT_CACHE_LOGS).
        self.receipts_cache_logs = 0

    def header_for(self, tag: Any, *, required: bool = True) -> BlockHeaderAPI | None:
        if tag is None or tag in ("latest", "safe", "finalized", "pending"):
            return self.ledger.head()
        if tag == "earliest":
            return self.ledger.genesis_header()
        try:
            if isinstance(tag, dict):
                if "blockHash" in tag:
                    header = self.ledger.header_by_hash(parse_hash(tag["blockHash"], "blockHash"))
                    if (
                        tag.get("requireCanonical")
                        and self._canonical_hash(header.block_number) != header.hash
                    ):
                        raise RpcError(RESOURCE_NOT_FOUND, "block is not canonical")
                    return header
                if "blockNumber" in tag:
                    return self.header_for(tag["blockNumber"], required=required)
                raise RpcError(INVALID_PARAMS, "block: expected blockHash or blockNumber")
            number = parse_quantity(tag, "block")
            return self.ledger.header_by_number(number)
        except (HeaderNotFound, BlockNotFound):
            if required:
                raise RpcError(RESOURCE_NOT_FOUND, f"header not found: {tag}") from None
            return None

    def header(self, tag: Any) -> BlockHeaderAPI:
        """The header ``tag`` names; RESOURCE_NOT_FOUND if there is none."""
        header = self.header_for(tag)
        assert header is not None  # required=True raises instead
        return header

    def _canonical_hash(self, number: int) -> bytes | None:
        try:
            return self.ledger.header_by_number(number).hash
        except HeaderNotFound:
            return None

    def block(self, header: BlockHeaderAPI) -> BlockAPI:
        return self.ledger.block_by_header(header)

    def state(self, tag: Any) -> Any:
        """The state after the block ``tag`` names (the head's is the node's live head state)."""
        header = self.header(tag)
        if header.hash == self.ledger.head().hash:
            return self.node.head_state()
        return self.ledger.state_at(header)

    def locate(self, tx_hash: Hash32) -> tuple[BlockHeaderAPI, int] | None:
        """The block and index of a mined transaction; None if it is not on the chain."""
        try:
            number, index = self.ledger.chaindb.get_transaction_index(tx_hash)
        except TransactionNotFound:
            return None
        header = self.ledger.header_by_number(number)
        return header, index

    def block_receipts(self, header: BlockHeaderAPI) -> list[dict[str, Any]]:
        """A block's receipts in JSON form, cached per block: a receipt's log indexes and gas
        depend on the receipts before it, so one receipt costs formatting the whole block
        (clients fetch the receipts of a block one by one)."""
        cached = self._receipts_cache.get(header.hash)
        if cached is None:
            cached = format_receipts(
                header, self.block(header).transactions, self.ledger.receipts(header)
            )
            logs = sum(len(r["logs"]) for r in cached)
            while self._receipts_cache and (
                len(self._receipts_cache) >= RECEIPT_CACHE_BLOCKS
                or self.receipts_cache_logs + logs > RECEIPT_CACHE_LOGS
            ):
                evicted = self._receipts_cache.pop(next(iter(self._receipts_cache)))
                self.receipts_cache_logs -= sum(len(r["logs"]) for r in evicted)
            self._receipts_cache[header.hash] = cached
            self.receipts_cache_logs += logs
        return cached
