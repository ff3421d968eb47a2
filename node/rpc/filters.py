"""Logs: ``eth_getLogs``, the polled filters (``eth_newFilter``, ``eth_newBlockFilter``,
``eth_getFilterChanges`` ...) and the log criteria they share with ``logs`` subscriptions.

A query scans a block's receipts only when its bloom may match. Limits: at most
:data:`MAX_LOG_RESULTS` logs per answer, :data:`MAX_LOG_BLOCK_RANGE` blocks per query,
:data:`MAX_FILTERS` filters installed; a filter not polled for :data:`FILTER_TIMEOUT_SECONDS`
is dropped.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockHeaderAPI
from eth_bloom.bloom import BloomFilter

from node.rpc.chainview import ChainView
from node.rpc.errors import (
    INVALID_PARAMS,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    Method,
    RpcError,
    expect_params,
    parse_address,
    parse_hash,
)
from node.rpc.format import block_logs, encode_data, encode_quantity
from node.service import NewBlock

MAX_LOG_RESULTS = 10_000
MAX_LOG_BLOCK_RANGE = 50_000
MAX_FILTERS = 1_000
FILTER_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class LogCriteria:
    """Parsed eth_getLogs / eth_newFilter criteria."""

    addresses: frozenset[bytes]
    #: Per position: None (any) or the set of accepted 32-byte topics.
    topics: tuple[frozenset[bytes] | None, ...]

    def bloom_may_match(self, bloom: int) -> bool:
        if bloom == 0:
            return False
        filt = BloomFilter(bloom)
        if self.addresses and not any(a in filt for a in self.addresses):
            return False
        return all(position is None or any(t in filt for t in position) for position in self.topics)

    def matches(self, address: bytes, topics: list[bytes]) -> bool:
        if self.addresses and address not in self.addresses:
            return False
        if len(self.topics) > len(topics):
            return False
        return all(
            position is None or topics[i] in position for i, position in enumerate(self.topics)
        )


def entry_matches(criteria: LogCriteria, entry: dict[str, Any]) -> bool:
    """Whether a formatted log (:func:`node.rpc.format.format_log`) meets ``criteria``."""
    return criteria.matches(
        bytes.fromhex(entry["address"][2:]), [bytes.fromhex(t[2:]) for t in entry["topics"]]
    )


def parse_log_criteria(obj: dict[str, Any]) -> LogCriteria:
    address = obj.get("address")
    if address is None:
        addresses: frozenset[bytes] = frozenset()
    elif isinstance(address, list):
        addresses = frozenset(parse_address(a) for a in address)
    else:
        addresses = frozenset([parse_address(address)])
    raw_topics = obj.get("topics") or []
    if not isinstance(raw_topics, list) or len(raw_topics) > 4:
        raise RpcError(INVALID_PARAMS, "topics: expected a list of at most 4 positions")
    topics: list[frozenset[bytes] | None] = []
    for position in raw_topics:
        if position is None:
            topics.append(None)
        elif isinstance(position, list):
            topics.append(frozenset(parse_hash(t, "topic") for t in position) or None)
        else:
            topics.append(frozenset([parse_hash(position, "topic")]))
    return LogCriteria(addresses, tuple(topics))


@dataclass
class Filter:
    """An installed filter polled with eth_getFilterChanges."""

    kind: str  # "block" | "logs"
    criteria: LogCriteria | None = None
    from_block: int | None = None
    to_block: int | None = None
    changes: list[Any] = field(default_factory=list)
    last_poll: float = field(default_factory=time.monotonic)


class LogFilters:
    """``eth_getLogs`` and the installed filters, fed by :meth:`on_block`."""

    def __init__(self, view: ChainView, ids: itertools.count[int]) -> None:
        self.view = view
        self.ledger = view.ledger
        self.filters: dict[str, Filter] = {}
        self._ids = ids

    def methods(self) -> dict[str, Method]:
        return {
            "eth_getLogs": self.eth_getLogs,
            "eth_newFilter": self.eth_newFilter,
            "eth_newBlockFilter": self.eth_newBlockFilter,
            "eth_newPendingTransactionFilter": self.eth_newPendingTransactionFilter,
            "eth_getFilterChanges": self.eth_getFilterChanges,
            "eth_getFilterLogs": self.eth_getFilterLogs,
            "eth_uninstallFilter": self.eth_uninstallFilter,
        }

    # -- logs ----------------------------------------------------------------------------------
    def _logs_in(
        self, criteria: LogCriteria, headers: Iterable[BlockHeaderAPI]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for header in headers:
            if not criteria.bloom_may_match(header.bloom):
                continue
            block = self.view.block(header)
            for _, entry in block_logs(header, block.transactions, self.ledger.receipts(header)):
                if entry_matches(criteria, entry):
                    out.append(entry)
            if len(out) > MAX_LOG_RESULTS:
                raise RpcError(
                    LIMIT_EXCEEDED, f"query returned more than {MAX_LOG_RESULTS} results"
                )
        return out

    def _range(self, from_tag: Any, to_tag: Any) -> tuple[int, int]:
        head = self.ledger.head().block_number
        start = (
            self.view.header_for(from_tag, required=False)
            if from_tag is not None
            else self.ledger.head()
        )
        end = (
            self.view.header_for(to_tag, required=False)
            if to_tag is not None
            else self.ledger.head()
        )
        first = start.block_number if start else head + 1
        last = end.block_number if end else head
        return first, last

    def eth_getLogs(self, params: list[Any]) -> list[dict[str, Any]]:
        (obj,) = expect_params(params, 1, 1, "eth_getLogs")
        if not isinstance(obj, dict):
            raise RpcError(INVALID_PARAMS, "filter: expected an object")
        criteria = parse_log_criteria(obj)
        if obj.get("blockHash") is not None:
            if obj.get("fromBlock") is not None or obj.get("toBlock") is not None:
                raise RpcError(INVALID_PARAMS, "blockHash excludes fromBlock/toBlock")
            return self._logs_in(criteria, [self.view.header({"blockHash": obj["blockHash"]})])
        first, last = self._range(obj.get("fromBlock"), obj.get("toBlock"))
        if last - first > MAX_LOG_BLOCK_RANGE:
            raise RpcError(LIMIT_EXCEEDED, f"block range exceeds {MAX_LOG_BLOCK_RANGE}")
        headers = (self.ledger.header_by_number(n) for n in range(first, last + 1))
        return self._logs_in(criteria, headers)

    # -- filters -------------------------------------------------------------------------------
    def _install(self, flt: Filter) -> str:
        self._expire_filters()
        if len(self.filters) >= MAX_FILTERS:
            raise RpcError(LIMIT_EXCEEDED, f"too many filters installed (max {MAX_FILTERS})")
        filter_id = encode_quantity(next(self._ids))
        self.filters[filter_id] = flt
        return filter_id

    def _expire_filters(self) -> None:
        now = time.monotonic()
        for filter_id in [
            k for k, f in self.filters.items() if now - f.last_poll > FILTER_TIMEOUT_SECONDS
        ]:
            del self.filters[filter_id]

    def eth_newFilter(self, params: list[Any]) -> str:
        (obj,) = expect_params(params, 1, 1, "eth_newFilter")
        if not isinstance(obj, dict):
            raise RpcError(INVALID_PARAMS, "filter: expected an object")
        criteria = parse_log_criteria(obj)
        from_tag, to_tag = obj.get("fromBlock"), obj.get("toBlock")
        from_block = (
            None if from_tag in (None, "latest", "pending") else self._range(from_tag, None)[0]
        )
        to_block = None if to_tag in (None, "latest", "pending") else self._range(None, to_tag)[1]
        return self._install(Filter("logs", criteria, from_block, to_block))

    def eth_newBlockFilter(self, params: list[Any]) -> str:
        expect_params(params, 0, 0, "eth_newBlockFilter")
        return self._install(Filter("block"))

    def eth_newPendingTransactionFilter(self, params: list[Any]) -> str:
        raise RpcError(METHOD_NOT_FOUND, "pending-transaction filters are not supported")

    def _filter(self, params: list[Any], method: str) -> tuple[str, Filter]:
        (filter_id,) = expect_params(params, 1, 1, method)
        flt = self.filters.get(filter_id) if isinstance(filter_id, str) else None
        if flt is None:
            raise RpcError(INVALID_PARAMS, "filter not found")
        flt.last_poll = time.monotonic()
        return filter_id, flt

    def eth_getFilterChanges(self, params: list[Any]) -> list[Any]:
        _, flt = self._filter(params, "eth_getFilterChanges")
        changes, flt.changes = flt.changes, []
        return changes

    def eth_getFilterLogs(self, params: list[Any]) -> list[Any]:
        _, flt = self._filter(params, "eth_getFilterLogs")
        if flt.kind != "logs" or flt.criteria is None:
            raise RpcError(INVALID_PARAMS, "filter is not a log filter")
        head = self.ledger.head().block_number
        first = flt.from_block if flt.from_block is not None else head
        last = flt.to_block if flt.to_block is not None else head
        if last - first > MAX_LOG_BLOCK_RANGE:
            raise RpcError(LIMIT_EXCEEDED, f"block range exceeds {MAX_LOG_BLOCK_RANGE}")
        return self._logs_in(
            flt.criteria,
            (self.ledger.header_by_number(n) for n in range(first, min(last, head) + 1)),
        )

    def eth_uninstallFilter(self, params: list[Any]) -> bool:
        (filter_id,) = expect_params(params, 1, 1, "eth_uninstallFilter")
        return (
            self.filters.pop(filter_id, None) is not None if isinstance(filter_id, str) else False
        )

    def on_block(self, event: NewBlock) -> None:
        """Collect a new block's hash and matching logs as the filters' changes."""
        header = event.header
        block = event.result.block
        logs: list[dict[str, Any]] | None = None
        self._expire_filters()  # abandoned filters must not collect changes forever
        for flt in self.filters.values():
            if flt.kind == "block":
                flt.changes.append(encode_data(header.hash))
                continue
            if flt.criteria is None or (
                flt.to_block is not None and header.block_number > flt.to_block
            ):
                continue
            if flt.from_block is not None and header.block_number < flt.from_block:
                continue
            if logs is None:
                logs = [e for _, e in block_logs(header, block.transactions, event.result.receipts)]
            for entry in logs:
                if entry_matches(flt.criteria, entry):
                    flt.changes.append(entry)
            if len(flt.changes) > MAX_LOG_RESULTS:
                del flt.changes[: len(flt.changes) - MAX_LOG_RESULTS]
