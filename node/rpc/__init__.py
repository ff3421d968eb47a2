"""Ethereum JSON-RPC 2.0 over HTTP and WebSocket (aiohttp), as web3.py and ethers.js use it.

One method table (:attr:`JsonRpc.methods`) serves both transports. Every failure is a JSON-RPC
error object — parse error (-32700), invalid request (-32600), unknown method (-32601),
invalid params (-32602), execution reverted (3, with the revert data), transaction refused
(-32003 / -32007 for non-members), resource limits (-32005) — and never stops the server.

Block tags: ``latest``, ``safe``, ``finalized`` and ``pending`` all name the head (QBFT gives
immediate finality: the head *is* final); ``earliest`` is genesis; EIP-1898 objects
(``{"blockHash": ...}`` / ``{"blockNumber": ...}``) are accepted where a block is named.

Transports: ``POST /`` (single or batched requests, bodies up to ``MAX_BODY_BYTES``) and a
WebSocket on ``GET /`` or ``GET /ws`` that also carries ``eth_subscribe`` (``newHeads``,
``logs``) notifications.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import rlp
from aiohttp import WSMsgType, web
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.exceptions import BlockNotFound, HeaderNotFound, Revert, TransactionNotFound, VMError
from eth_bloom import BloomFilter
from eth_utils import ValidationError, keccak, to_checksum_address
from trie import HexaryTrie

from node import __version__
from node.service import NewBlock, NodeService
from node.txpool import TxRejected

log = logging.getLogger("portledger.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
EXECUTION_REVERTED = 3
LIMIT_EXCEEDED = -32005
RESOURCE_NOT_FOUND = -32001
#: Most logs one ``portledger_getProof`` call proves (the bundle is built on the node's loop).
MAX_PROOF_LOGS = 100

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH = 2_000
#: Blocks whose formatted receipts are kept (eth_getTransactionReceipt, eth_getBlockReceipts).
RECEIPT_CACHE_BLOCKS = 32
#: A batch yields to the event loop at least this often while it is being answered.
BATCH_YIELD_SECONDS = 0.0005
MAX_LOG_RESULTS = 10_000
MAX_LOG_BLOCK_RANGE = 50_000
MAX_FILTERS = 1_000
FILTER_TIMEOUT_SECONDS = 300
MAX_SUBSCRIPTIONS_PER_SOCKET = 100


class RpcError(Exception):
    """A JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


# -- parameter parsing -------------------------------------------------------------------------
def _hex(value: int) -> str:
    return hex(value)


def _data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _address(value: bytes) -> str:
    return to_checksum_address(value)


def parse_quantity(value: Any, name: str = "quantity") -> int:
    if isinstance(value, str) and value.startswith(("0x", "0X")) and len(value) > 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise RpcError(INVALID_PARAMS, f"{name}: expected a hex quantity, got {value!r}")


def parse_data(value: Any, name: str = "data", length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")) or len(value) % 2:
        raise RpcError(INVALID_PARAMS, f"{name}: expected 0x-prefixed even-length hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise RpcError(INVALID_PARAMS, f"{name}: invalid hex") from exc
    if length is not None and len(raw) != length:
        raise RpcError(INVALID_PARAMS, f"{name}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_address(value: Any, name: str = "address") -> bytes:
    return parse_data(value, name, 20)


def parse_hash(value: Any, name: str = "hash") -> bytes:
    return parse_data(value, name, 32)


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, f"{name}: expected true or false")
    return value


def _params(params: list[Any], count: int, required: int, method: str) -> list[Any]:
    if len(params) < required or len(params) > count:
        expected = str(count) if required == count else f"{required} to {count}"
        raise RpcError(INVALID_PARAMS, f"{method}: expected {expected} params, got {len(params)}")
    return params + [None] * (count - len(params))


# -- formatting ----------------------------------------------------------------------------------
def format_header(header: BlockHeaderAPI) -> dict[str, Any]:
    return {
        "number": _hex(header.block_number),
        "hash": _data(header.hash),
        "parentHash": _data(header.parent_hash),
        "nonce": _data(header.nonce),
        "sha3Uncles": _data(header.uncles_hash),
        "logsBloom": _data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": _data(header.transaction_root),
        "stateRoot": _data(header.state_root),
        "receiptsRoot": _data(header.receipt_root),
        "miner": _address(header.coinbase),
        "difficulty": _hex(header.difficulty),
        "totalDifficulty": "0x0",
        "extraData": _data(header.extra_data),
        "gasLimit": _hex(header.gas_limit),
        "gasUsed": _hex(header.gas_used),
        "timestamp": _hex(header.timestamp),
        "mixHash": _data(header.mix_hash),
        "baseFeePerGas": _hex(header.base_fee_per_gas),
        "withdrawalsRoot": _data(header.withdrawals_root),
        "blobGasUsed": _hex(header.blob_gas_used),
        "excessBlobGas": _hex(header.excess_blob_gas),
        "parentBeaconBlockRoot": _data(header.parent_beacon_block_root),
        "requestsHash": _data(header.requests_hash),
    }


def format_transaction(
    tx: SignedTransactionAPI, header: BlockHeaderAPI | None, index: int | None
) -> dict[str, Any]:
    type_id = getattr(tx, "type_id", None)
    out: dict[str, Any] = {
        "hash": _data(tx.hash),
        "nonce": _hex(tx.nonce),
        "blockHash": _data(header.hash) if header else None,
        "blockNumber": _hex(header.block_number) if header else None,
        "transactionIndex": _hex(index) if index is not None else None,
        "from": _address(tx.sender),
        "to": _address(tx.to) if tx.to else None,
        "value": _hex(tx.value),
        "gas": _hex(tx.gas),
        "input": _data(tx.data),
        "type": _hex(type_id or 0),
        "chainId": _hex(tx.chain_id) if getattr(tx, "chain_id", None) is not None else None,
        "r": _hex(tx.r),
        "s": _hex(tx.s),
    }
    if type_id is None:
        out["gasPrice"] = _hex(tx.gas_price)
        out["v"] = _hex(tx.v)
    else:
        out["v"] = _hex(tx.y_parity)
        out["yParity"] = _hex(tx.y_parity)
        out["accessList"] = [
            {"address": _address(a), "storageKeys": [_data(k.to_bytes(32, "big")) for k in ks]}
            for a, ks in tx.access_list
        ]
        if type_id >= 2:
            out["maxFeePerGas"] = _hex(tx.max_fee_per_gas)
            out["maxPriorityFeePerGas"] = _hex(tx.max_priority_fee_per_gas)
            out["gasPrice"] = _hex(
                min(tx.max_fee_per_gas, tx.max_priority_fee_per_gas + header.base_fee_per_gas)
                if header
                else tx.max_fee_per_gas
            )
        else:
            out["gasPrice"] = _hex(tx.gas_price)
    return out


def format_log(
    log_entry: Any,
    header: BlockHeaderAPI,
    tx: SignedTransactionAPI,
    tx_index: int,
    log_index: int,
) -> dict[str, Any]:
    address, topics, data = log_entry
    return {
        "address": _address(address),
        "topics": [_data(t.to_bytes(32, "big")) for t in topics],
        "data": _data(data),
        "blockNumber": _hex(header.block_number),
        "blockHash": _data(header.hash),
        "blockTimestamp": _hex(header.timestamp),
        "transactionHash": _data(tx.hash),
        "transactionIndex": _hex(tx_index),
        "logIndex": _hex(log_index),
        "removed": False,
    }


def block_logs(
    header: BlockHeaderAPI,
    transactions: tuple[SignedTransactionAPI, ...],
    receipts: tuple[ReceiptAPI, ...],
) -> list[tuple[int, dict[str, Any]]]:
    """Every log of a block as (transaction index, formatted log)."""
    out: list[tuple[int, dict[str, Any]]] = []
    log_index = 0
    for tx_index, (tx, receipt) in enumerate(zip(transactions, receipts, strict=True)):
        for entry in receipt.logs:
            out.append(
                (
                    tx_index,
                    format_log(
                        (entry.address, entry.topics, entry.data), header, tx, tx_index, log_index
                    ),
                )
            )
            log_index += 1
    return out


def format_receipts(
    header: BlockHeaderAPI,
    transactions: tuple[SignedTransactionAPI, ...],
    receipts: tuple[ReceiptAPI, ...],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    logs = block_logs(header, transactions, receipts)
    previous_gas = 0
    for index, (tx, receipt) in enumerate(zip(transactions, receipts, strict=True)):
        contract = None
        if not tx.to:
            contract = _address(keccak(rlp.encode([tx.sender, tx.nonce]))[12:])
        out.append(
            {
                "transactionHash": _data(tx.hash),
                "transactionIndex": _hex(index),
                "blockHash": _data(header.hash),
                "blockNumber": _hex(header.block_number),
                "from": _address(tx.sender),
                "to": _address(tx.to) if tx.to else None,
                "cumulativeGasUsed": _hex(receipt.gas_used),
                "gasUsed": _hex(receipt.gas_used - previous_gas),
                "effectiveGasPrice": "0x0",
                "contractAddress": contract,
                "logs": [entry for tx_index, entry in logs if tx_index == index],
                "logsBloom": _data(receipt.bloom.to_bytes(256, "big")),
                "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
                "type": _hex(getattr(tx, "type_id", None) or 0),
            }
        )
        previous_gas = receipt.gas_used
    return out


# -- log filters ---------------------------------------------------------------------------------
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


def _entry_matches(criteria: LogCriteria, entry: dict[str, Any]) -> bool:
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


# -- the method table ---------------------------------------------------------------------------
Method = Callable[[list[Any]], Awaitable[Any] | Any]


class JsonRpc:
    """The JSON-RPC methods of one node and the filters and subscriptions they install."""

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self.ledger = node.ledger
        self.filters: dict[str, Filter] = {}
        self._ids = itertools.count(1)
        self.subscribers: dict[str, Callable[[Any], None]] = {}
        self._receipts_cache: dict[bytes, list[dict[str, Any]]] = {}
        node.listeners.append(self._on_block)
        self.methods: dict[str, Method] = {
            "web3_clientVersion": lambda p: f"PortLedger/v{__version__}/python/py-evm",
            "web3_sha3": self.web3_sha3,
            "net_version": lambda p: str(self.ledger.chain_id),
            "net_listening": lambda p: True,
            "net_peerCount": lambda p: "0x0",
            "eth_chainId": lambda p: _hex(self.ledger.chain_id),
            "eth_blockNumber": lambda p: _hex(self.ledger.head().block_number),
            "eth_syncing": lambda p: False,
            "eth_mining": lambda p: self.node.produce,
            "eth_accounts": lambda p: [],
            "eth_gasPrice": lambda p: "0x0",
            "eth_maxPriorityFeePerGas": lambda p: "0x0",
            "eth_blobBaseFee": lambda p: "0x1",
            "eth_feeHistory": self.eth_feeHistory,
            "eth_getBalance": self.eth_getBalance,
            "eth_getCode": self.eth_getCode,
            "eth_getStorageAt": self.eth_getStorageAt,
            "eth_getTransactionCount": self.eth_getTransactionCount,
            "eth_call": self.eth_call,
            "eth_estimateGas": self.eth_estimateGas,
            "eth_sendRawTransaction": self.eth_sendRawTransaction,
            "eth_getTransactionByHash": self.eth_getTransactionByHash,
            "eth_getTransactionByBlockNumberAndIndex": self.eth_getTransactionByBlockNumberAndIndex,
            "eth_getTransactionByBlockHashAndIndex": self.eth_getTransactionByBlockHashAndIndex,
            "eth_getTransactionReceipt": self.eth_getTransactionReceipt,
            "eth_getBlockByNumber": self.eth_getBlockByNumber,
            "eth_getBlockByHash": self.eth_getBlockByHash,
            "eth_getBlockTransactionCountByNumber": self.eth_getBlockTransactionCountByNumber,
            "eth_getBlockTransactionCountByHash": self.eth_getBlockTransactionCountByHash,
            "eth_getUncleCountByBlockNumber": lambda p: "0x0",
            "eth_getUncleCountByBlockHash": lambda p: "0x0",
            "eth_getBlockReceipts": self.eth_getBlockReceipts,
            "eth_getLogs": self.eth_getLogs,
            "eth_newFilter": self.eth_newFilter,
            "eth_newBlockFilter": self.eth_newBlockFilter,
            "eth_newPendingTransactionFilter": self.eth_newPendingTransactionFilter,
            "eth_getFilterChanges": self.eth_getFilterChanges,
            "eth_getFilterLogs": self.eth_getFilterLogs,
            "eth_uninstallFilter": self.eth_uninstallFilter,
            "eth_getProof": self.eth_getProof,
            "txpool_status": lambda p: {"pending": _hex(len(self.node.pool)), "queued": "0x0"},
            "qbft_getValidatorsByBlockNumber": self.qbft_getValidatorsByBlockNumber,
            "portledger_status": self.portledger_status,
            "portledger_getEquivocations": self.portledger_getEquivocations,
            "portledger_getProof": self.portledger_getProof,
        }

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(
        self, request: Any, ws: WebSocketSession | None = None
    ) -> dict[str, Any] | None:
        """Answer one request object (``None`` for a notification)."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return _error_response(
                None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON-RPC 2.0 object")
            )
        request_id = request.get("id")
        is_notification = "id" not in request
        if request_id is not None and not isinstance(request_id, str | int | float):
            return _error_response(None, RpcError(INVALID_REQUEST, "invalid request: bad id"))
        method = request.get("method")
        params = request.get("params", [])
        try:
            if not isinstance(method, str):
                raise RpcError(INVALID_REQUEST, "invalid request: method must be a string")
            if not isinstance(params, list):
                raise RpcError(INVALID_PARAMS, "params must be an array")
            if method in ("eth_subscribe", "eth_unsubscribe"):
                if ws is None:
                    raise RpcError(METHOD_NOT_FOUND, f"{method} needs a WebSocket connection")
                result = (
                    ws.subscribe(params) if method == "eth_subscribe" else ws.unsubscribe(params)
                )
            else:
                handler = self.methods.get(method)
                if handler is None:
                    raise RpcError(
                        METHOD_NOT_FOUND, f"the method {method} does not exist/is not available"
                    )
                result = handler(params)
                if asyncio.iscoroutine(result):
                    result = await result
        except RpcError as exc:
            return None if is_notification else _error_response(request_id, exc)
        except Exception as exc:  # never let one request take the server down
            log.exception("internal error in %s", method)
            return (
                None
                if is_notification
                else _error_response(
                    request_id, RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
                )
            )
        return None if is_notification else {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def handle_text(self, text: str | bytes, ws: WebSocketSession | None = None) -> Any:
        """Answer a request body (single or batch); ``None`` when nothing is to be sent."""
        try:
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error_response(None, RpcError(PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return _error_response(
                    None, RpcError(INVALID_REQUEST, "invalid request: empty batch")
                )
            if len(payload) > MAX_BATCH:
                return _error_response(
                    None, RpcError(LIMIT_EXCEEDED, f"batch of {len(payload)} exceeds {MAX_BATCH}")
                )
            answers = []
            last_yield = time.monotonic()
            for item in payload:
                answers.append(await self.dispatch(item, ws))
                # A big batch (e.g. 500 raw transactions) takes hundreds of milliseconds; let
                # other connections' requests in between items instead of stalling them all.
                if time.monotonic() - last_yield > BATCH_YIELD_SECONDS:
                    await asyncio.sleep(0)
                    last_yield = time.monotonic()
            return [a for a in answers if a is not None] or None
        return await self.dispatch(payload, ws)

    # -- block resolution --------------------------------------------------------------------
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

    def _canonical_hash(self, number: int) -> bytes | None:
        try:
            return self.ledger.header_by_number(number).hash
        except HeaderNotFound:
            return None

    def _block(self, header: BlockHeaderAPI) -> BlockAPI:
        return self.ledger.block_by_header(header)

    def format_block(self, header: BlockHeaderAPI, full: bool) -> dict[str, Any]:
        block = self._block(header)
        out = format_header(header)
        out["size"] = _hex(len(rlp.encode(block)))
        out["uncles"] = []
        out["withdrawals"] = []
        if full:
            out["transactions"] = [
                format_transaction(tx, header, i) for i, tx in enumerate(block.transactions)
            ]
        else:
            out["transactions"] = [_data(tx.hash) for tx in block.transactions]
        return out

    # -- simple reads --------------------------------------------------------------------------
    def web3_sha3(self, params: list[Any]) -> str:
        (data,) = _params(params, 1, 1, "web3_sha3")
        return _data(keccak(parse_data(data)))

    def eth_feeHistory(self, params: list[Any]) -> dict[str, Any]:
        count, newest, percentiles = _params(params, 3, 2, "eth_feeHistory")
        count = min(parse_quantity(count, "blockCount"), 1024)
        head = self.header_for(newest)
        assert head is not None
        oldest = max(0, head.block_number - count + 1)
        headers = [self.ledger.header_by_number(n) for n in range(oldest, head.block_number + 1)]
        if percentiles is not None and not isinstance(percentiles, list):
            raise RpcError(INVALID_PARAMS, "rewardPercentiles: expected an array")
        out: dict[str, Any] = {
            "oldestBlock": _hex(oldest),
            "baseFeePerGas": ["0x0"] * (len(headers) + 1),
            "gasUsedRatio": [h.gas_used / h.gas_limit for h in headers],
            "baseFeePerBlobGas": ["0x1"] * (len(headers) + 1),
            "blobGasUsedRatio": [0.0] * len(headers),
        }
        if percentiles:
            out["reward"] = [["0x0"] * len(percentiles) for _ in headers]
        return out

    def _state(self, tag: Any) -> Any:
        header = self.header_for(tag)
        if header is not None and header.hash == self.ledger.head().hash:
            return self.node.head_state()
        return self.ledger.state_at(header)

    def eth_getBalance(self, params: list[Any]) -> str:
        address, tag = _params(params, 2, 1, "eth_getBalance")
        return _hex(self._state(tag).get_balance(parse_address(address)))

    def eth_getCode(self, params: list[Any]) -> str:
        address, tag = _params(params, 2, 1, "eth_getCode")
        return _data(self._state(tag).get_code(parse_address(address)))

    def eth_getStorageAt(self, params: list[Any]) -> str:
        address, slot, tag = _params(params, 3, 2, "eth_getStorageAt")
        value = self._state(tag).get_storage(parse_address(address), parse_quantity(slot, "slot"))
        return _data(value.to_bytes(32, "big"))

    def eth_getTransactionCount(self, params: list[Any]) -> str:
        address, tag = _params(params, 2, 1, "eth_getTransactionCount")
        sender = parse_address(address)
        if tag == "pending":
            return _hex(self.node.pending_nonce(sender))
        return _hex(self._state(tag).get_nonce(sender))

    # -- execution ---------------------------------------------------------------------------
    def _call_object(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise RpcError(INVALID_PARAMS, "call: expected a transaction object")
        known = {
            "from",
            "to",
            "gas",
            "gasPrice",
            "maxFeePerGas",
            "maxPriorityFeePerGas",
            "value",
            "data",
            "input",
            "nonce",
            "type",
            "chainId",
            "accessList",
        }
        unknown = set(obj) - known
        if unknown:
            raise RpcError(INVALID_PARAMS, f"call: unknown fields {sorted(unknown)}")
        call: dict[str, Any] = {}
        if obj.get("from") is not None:
            call["from"] = parse_address(obj["from"], "from")
        if obj.get("to") is not None:
            call["to"] = parse_address(obj["to"], "to")
        if obj.get("gas") is not None:
            call["gas"] = parse_quantity(obj["gas"], "gas")
            if call["gas"] > self.ledger.head().gas_limit:
                raise RpcError(INVALID_PARAMS, "gas: above the block gas limit")
        if obj.get("value") is not None:
            call["value"] = parse_quantity(obj["value"], "value")
        payload = obj.get("input", obj.get("data"))
        if payload is not None:
            call["data"] = parse_data(payload, "input")
        return call

    def _execute(
        self, params: list[Any], method: str, run: Callable[[dict[str, Any], Any], Any]
    ) -> Any:
        """Parse (call object, block) and run ``run``; reverts and VM errors as error objects."""
        obj, tag, *_ = _params(params, 3, 1, method)
        call = self._call_object(obj)
        header = self.header_for(tag)
        try:
            return run(call, header)
        except Revert as exc:
            raise _revert_error(exc) from None
        except (VMError, ValidationError) as exc:
            raise RpcError(-32000, f"execution failed: {exc}") from None

    def eth_call(self, params: list[Any]) -> str:
        return str(self._execute(params, "eth_call", lambda c, h: _data(self.node.call(c, h))))

    def eth_estimateGas(self, params: list[Any]) -> str:
        def estimate(call: dict[str, Any], header: Any) -> str:
            # A plain call first surfaces a revert with its reason (the estimator only fails).
            self.node.call(call, header)
            return _hex(self.node.estimate_gas(call, header))

        return str(self._execute(params, "eth_estimateGas", estimate))

    def eth_sendRawTransaction(self, params: list[Any]) -> str:
        (raw,) = _params(params, 1, 1, "eth_sendRawTransaction")
        data = parse_data(raw, "transaction")
        if not data:
            raise RpcError(INVALID_PARAMS, "transaction: empty")
        try:
            return _data(self.node.submit_raw(data))
        except TxRejected as exc:
            raise RpcError(exc.code, str(exc)) from None

    # -- transactions and receipts -------------------------------------------------------------
    def _locate(self, tx_hash: bytes) -> tuple[BlockHeaderAPI, int] | None:
        try:
            number, index = self.ledger.chaindb.get_transaction_index(tx_hash)
        except TransactionNotFound:
            return None
        header = self.ledger.header_by_number(number)
        return header, index

    def eth_getTransactionByHash(self, params: list[Any]) -> Any:
        (value,) = _params(params, 1, 1, "eth_getTransactionByHash")
        tx_hash = parse_hash(value)
        located = self._locate(tx_hash)
        if located is None:
            pending = self.node.pool.get(tx_hash)
            return format_transaction(pending, None, None) if pending else None
        header, index = located
        return format_transaction(self._block(header).transactions[index], header, index)

    def _tx_by_index(self, header: BlockHeaderAPI | None, index: Any) -> Any:
        if header is None:
            return None
        i = parse_quantity(index, "index")
        txs = self._block(header).transactions
        return format_transaction(txs[i], header, i) if i < len(txs) else None

    def eth_getTransactionByBlockNumberAndIndex(self, params: list[Any]) -> Any:
        tag, index = _params(params, 2, 2, "eth_getTransactionByBlockNumberAndIndex")
        return self._tx_by_index(self.header_for(tag, required=False), index)

    def eth_getTransactionByBlockHashAndIndex(self, params: list[Any]) -> Any:
        block_hash, index = _params(params, 2, 2, "eth_getTransactionByBlockHashAndIndex")
        return self._tx_by_index(self.header_for({"blockHash": block_hash}, required=False), index)

    def eth_getTransactionReceipt(self, params: list[Any]) -> Any:
        (value,) = _params(params, 1, 1, "eth_getTransactionReceipt")
        located = self._locate(parse_hash(value))
        if located is None:
            return None
        header, index = located
        return self._block_receipts(header)[index]

    def eth_getBlockReceipts(self, params: list[Any]) -> Any:
        (tag,) = _params(params, 1, 1, "eth_getBlockReceipts")
        header = self.header_for(tag, required=False)
        if header is None:
            return None
        return self._block_receipts(header)

    def _block_receipts(self, header: BlockHeaderAPI) -> list[dict[str, Any]]:
        """A block's receipts in JSON form, cached per block: a receipt's log indexes and gas
        depend on the receipts before it, so one receipt costs formatting the whole block
        (clients fetch the receipts of a block one by one)."""
        cached = self._receipts_cache.get(header.hash)
        if cached is None:
            cached = format_receipts(
                header, self._block(header).transactions, self.ledger.receipts(header)
            )
            if len(self._receipts_cache) >= RECEIPT_CACHE_BLOCKS:
                self._receipts_cache.pop(next(iter(self._receipts_cache)))
            self._receipts_cache[header.hash] = cached
        return cached

    # -- blocks --------------------------------------------------------------------------------
    def eth_getBlockByNumber(self, params: list[Any]) -> Any:
        tag, full = _params(params, 2, 1, "eth_getBlockByNumber")
        header = self.header_for(tag, required=False)
        return None if header is None else self.format_block(header, parse_bool(bool(full), "full"))

    def eth_getBlockByHash(self, params: list[Any]) -> Any:
        block_hash, full = _params(params, 2, 1, "eth_getBlockByHash")
        header = self.header_for({"blockHash": block_hash}, required=False)
        return None if header is None else self.format_block(header, bool(full))

    def eth_getBlockTransactionCountByNumber(self, params: list[Any]) -> Any:
        (tag,) = _params(params, 1, 1, "eth_getBlockTransactionCountByNumber")
        header = self.header_for(tag, required=False)
        return None if header is None else _hex(len(self._block(header).transactions))

    def eth_getBlockTransactionCountByHash(self, params: list[Any]) -> Any:
        (block_hash,) = _params(params, 1, 1, "eth_getBlockTransactionCountByHash")
        header = self.header_for({"blockHash": block_hash}, required=False)
        return None if header is None else _hex(len(self._block(header).transactions))

    # -- logs ----------------------------------------------------------------------------------
    def _logs_in(self, criteria: LogCriteria, headers: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for header in headers:
            if not criteria.bloom_may_match(header.bloom):
                continue
            block = self._block(header)
            for _, entry in block_logs(header, block.transactions, self.ledger.receipts(header)):
                if _entry_matches(criteria, entry):
                    out.append(entry)
            if len(out) > MAX_LOG_RESULTS:
                raise RpcError(
                    LIMIT_EXCEEDED, f"query returned more than {MAX_LOG_RESULTS} results"
                )
        return out

    def _range(self, from_tag: Any, to_tag: Any) -> tuple[int, int]:
        head = self.ledger.head().block_number
        start = (
            self.header_for(from_tag, required=False)
            if from_tag is not None
            else self.ledger.head()
        )
        end = self.header_for(to_tag, required=False) if to_tag is not None else self.ledger.head()
        first = start.block_number if start else head + 1
        last = end.block_number if end else head
        return first, last

    def eth_getLogs(self, params: list[Any]) -> list[dict[str, Any]]:
        (obj,) = _params(params, 1, 1, "eth_getLogs")
        if not isinstance(obj, dict):
            raise RpcError(INVALID_PARAMS, "filter: expected an object")
        criteria = parse_log_criteria(obj)
        if obj.get("blockHash") is not None:
            if obj.get("fromBlock") is not None or obj.get("toBlock") is not None:
                raise RpcError(INVALID_PARAMS, "blockHash excludes fromBlock/toBlock")
            return self._logs_in(criteria, [self.header_for({"blockHash": obj["blockHash"]})])
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
        filter_id = _hex(next(self._ids))
        self.filters[filter_id] = flt
        return filter_id

    def _expire_filters(self) -> None:
        now = time.monotonic()
        for filter_id in [
            k for k, f in self.filters.items() if now - f.last_poll > FILTER_TIMEOUT_SECONDS
        ]:
            del self.filters[filter_id]

    def eth_newFilter(self, params: list[Any]) -> str:
        (obj,) = _params(params, 1, 1, "eth_newFilter")
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
        _params(params, 0, 0, "eth_newBlockFilter")
        return self._install(Filter("block"))

    def eth_newPendingTransactionFilter(self, params: list[Any]) -> str:
        raise RpcError(METHOD_NOT_FOUND, "pending-transaction filters are not supported")

    def _filter(self, params: list[Any], method: str) -> tuple[str, Filter]:
        (filter_id,) = _params(params, 1, 1, method)
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
        (filter_id,) = _params(params, 1, 1, "eth_uninstallFilter")
        return (
            self.filters.pop(filter_id, None) is not None if isinstance(filter_id, str) else False
        )

    def _on_block(self, event: NewBlock) -> None:
        header = event.header
        block = event.result.block
        logs: list[dict[str, Any]] | None = None
        self._expire_filters()  # abandoned filters must not collect changes forever
        for flt in self.filters.values():
            if flt.kind == "block":
                flt.changes.append(_data(header.hash))
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
                if _entry_matches(flt.criteria, entry):
                    flt.changes.append(entry)
            if len(flt.changes) > MAX_LOG_RESULTS:
                del flt.changes[: len(flt.changes) - MAX_LOG_RESULTS]
        for notify in list(self.subscribers.values()):
            notify(event)

    # -- proofs --------------------------------------------------------------------------------
    def eth_getProof(self, params: list[Any]) -> dict[str, Any]:
        address, slots, tag = _params(params, 3, 3, "eth_getProof")
        account = parse_address(address)
        if not isinstance(slots, list) or len(slots) > 1_000:
            raise RpcError(INVALID_PARAMS, "storageKeys: expected an array of at most 1000 keys")
        keys32 = [
            parse_quantity(s, "storage key")
            if not (isinstance(s, str) and len(s) == 66)
            else int(s, 16)
            for s in slots
        ]
        header = self.header_for(tag)
        db = self.ledger.db
        state_trie = HexaryTrie(db, root_hash=header.state_root)
        account_key = keccak(account)
        account_proof = state_trie.get_proof(account_key)
        encoded = state_trie.get(account_key)
        if encoded:
            nonce, balance, storage_root, code_hash = rlp.decode(encoded)
            nonce_i, balance_i = int.from_bytes(nonce, "big"), int.from_bytes(balance, "big")
        else:
            nonce_i, balance_i = 0, 0
            storage_root, code_hash = keccak(rlp.encode(b"")), keccak(b"")
        storage_trie = HexaryTrie(db, root_hash=storage_root)
        storage_proof = []
        for slot in keys32:
            slot_key = keccak(slot.to_bytes(32, "big"))
            raw = storage_trie.get(slot_key)
            value = rlp.decode(raw) if raw else b""
            storage_proof.append(
                {
                    "key": _hex(slot),
                    "value": _hex(int.from_bytes(value, "big")),
                    "proof": [_data(rlp.encode(node)) for node in storage_trie.get_proof(slot_key)],
                }
            )
        return {
            "address": _address(account),
            "accountProof": [_data(rlp.encode(node)) for node in account_proof],
            "balance": _hex(balance_i),
            "codeHash": _data(code_hash),
            "nonce": _hex(nonce_i),
            "storageHash": _data(storage_root),
            "storageProof": storage_proof,
        }

    # -- qbft ----------------------------------------------------------------------------------
    def portledger_status(self, params: list[Any]) -> dict[str, Any]:
        _params(params, 0, 0, "portledger_status")
        return self.node.status()

    def portledger_getEquivocations(self, params: list[Any]) -> list[dict[str, Any]]:
        """Equivocation evidence this node caught (``node.evidence``), oldest first;
        ``reportedInBlock`` is the block whose Consortium record this node has seen, or null."""
        _params(params, 0, 0, "portledger_getEquivocations")
        from node.evidence import EvidenceStore

        store = EvidenceStore(self.ledger.db)
        out = []
        for n, e in enumerate(store.all()):
            reported = store.reported_at(n)
            out.append(
                {"validator": _address(e.validator), "code": _hex(e.code),
                 "height": _hex(e.height), "round": _hex(e.round), "evidence": _data(e.encoded),
                 "reportedInBlock": None if reported is None else _hex(reported)}
            )
        return out

    def portledger_getProof(self, params: list[Any]) -> dict[str, Any]:
        """A proof bundle (docs/proof-format.md) of logs given by JSON-RPC ``logIndex``.

        ``[txHash, logIndex]`` proves one log; ``[[[txHash, logIndex], ...]]`` proves up to
        :data:`MAX_PROOF_LOGS` logs in one bundle (in the order given; each block's header
        once). The bundle is built on the node's loop, hence the bound.
        """
        if len(params) == 1 and isinstance(params[0], list):
            pairs = params[0]
            if not 1 <= len(pairs) <= MAX_PROOF_LOGS or not all(
                isinstance(pair, list) and len(pair) == 2 for pair in pairs
            ):
                raise RpcError(
                    INVALID_PARAMS,
                    f"portledger_getProof: expected 1 to {MAX_PROOF_LOGS} [txHash, logIndex] pairs",
                )
        else:
            pairs = [_params(params, 2, 2, "portledger_getProof")]
        from node.proofs import ProofBuilder, ProofBuildError

        try:
            builder = getattr(self, "_proof_builder", None)
            if builder is None:  # keeps its validator-change index between calls
                builder = self._proof_builder = ProofBuilder(self.ledger)
            refs = []
            for tx_hash, log_index in pairs:
                raw_hash = bytes.fromhex(str(tx_hash).removeprefix("0x"))
                index = int(log_index, 16) if isinstance(log_index, str) else int(log_index)
                refs.append(builder.ref_for_transaction(raw_hash, index))
            return builder.bundle(refs)
        except (ProofBuildError, ValueError, TypeError) as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from exc

    def qbft_getValidatorsByBlockNumber(self, params: list[Any]) -> list[str]:
        (tag,) = _params(params, 1, 1, "qbft_getValidatorsByBlockNumber")
        from consensus import extradata

        header = self.header_for(tag)
        return [_address(v) for v in extradata.decode(header.extra_data).validators]


def _error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.as_dict()}


def _revert_error(exc: Revert) -> RpcError:
    data = exc.args[0] if exc.args and isinstance(exc.args[0], bytes) else b""
    reason = ""
    if data[:4] == bytes.fromhex("08c379a0"):
        try:
            from eth_abi import decode

            reason = ": " + decode(["string"], data[4:])[0]
        except Exception:
            reason = ""
    return RpcError(EXECUTION_REVERTED, f"execution reverted{reason}", _data(data))


# -- WebSocket sessions ----------------------------------------------------------------------
class WebSocketSession:
    """One WebSocket connection and its subscriptions."""

    def __init__(self, rpc: JsonRpc, ws: web.WebSocketResponse) -> None:
        self.rpc = rpc
        self.ws = ws
        self.subscriptions: dict[str, tuple[str, LogCriteria | None]] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        self.key = f"ws-{id(self)}"

    def subscribe(self, params: list[Any]) -> str:
        if not params or params[0] not in ("newHeads", "logs"):
            raise RpcError(INVALID_PARAMS, "eth_subscribe: supported kinds are newHeads and logs")
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS_PER_SOCKET:
            raise RpcError(LIMIT_EXCEEDED, "too many subscriptions on this connection")
        criteria = None
        if params[0] == "logs":
            obj = params[1] if len(params) > 1 else {}
            if not isinstance(obj, dict):
                raise RpcError(INVALID_PARAMS, "logs subscription: expected a filter object")
            criteria = parse_log_criteria(obj)
        sub_id = "0x" + keccak(f"{self.key}:{next(self.rpc._ids)}".encode())[:16].hex()
        self.subscriptions[sub_id] = (params[0], criteria)
        self.rpc.subscribers[self.key] = self.on_block
        return sub_id

    def unsubscribe(self, params: list[Any]) -> bool:
        if len(params) != 1:
            raise RpcError(INVALID_PARAMS, "eth_unsubscribe: expected a subscription id")
        return self.subscriptions.pop(params[0], None) is not None

    def on_block(self, event: NewBlock) -> None:
        logs: list[dict[str, Any]] | None = None
        for sub_id, (kind, criteria) in self.subscriptions.items():
            results: list[Any]
            if kind == "newHeads":
                results = [format_header(event.header)]
            else:
                if logs is None:
                    block = event.result.block
                    logs = [
                        e
                        for _, e in block_logs(
                            event.header, block.transactions, event.result.receipts
                        )
                    ]
                assert criteria is not None
                results = [e for e in logs if _entry_matches(criteria, e)]
            for result in results:
                message = json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "eth_subscription",
                        "params": {"subscription": sub_id, "result": result},
                    }
                )
                try:
                    self.outbox.put_nowait(message)
                except asyncio.QueueFull:
                    log.warning("dropping slow WebSocket subscriber %s", self.key)
                    asyncio.ensure_future(self.ws.close(code=1008, message=b"subscriber too slow"))
                    return

    async def pump(self) -> None:
        while True:
            message = await self.outbox.get()
            await self.ws.send_str(message)

    def close(self) -> None:
        self.rpc.subscribers.pop(self.key, None)


# -- the aiohttp application ---------------------------------------------------------------
RPC_KEY = web.AppKey("rpc", JsonRpc)


async def _http(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    if request.method != "POST":
        return web.json_response(
            {"error": "POST a JSON-RPC request, or open a WebSocket"}, status=405
        )
    rpc = request.app[RPC_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            _error_response(
                None, RpcError(LIMIT_EXCEEDED, f"request body exceeds {MAX_BODY_BYTES} bytes")
            ),
            status=413,
        )
    answer = await rpc.handle_text(body)
    if answer is None:
        return web.Response(status=204)
    return web.Response(text=json.dumps(answer), content_type="application/json")


async def _websocket(request: web.Request) -> web.StreamResponse:
    rpc = request.app[RPC_KEY]
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY_BYTES, heartbeat=30)
    await ws.prepare(request)
    session = WebSocketSession(rpc, ws)
    pump = asyncio.create_task(session.pump())
    try:
        async for message in ws:
            # web3.py's WebSocketProvider sends requests as binary frames (as geth and Besu
            # accept): both frame types carry UTF-8 JSON; answers always go out as text.
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                answer = await rpc.handle_text(message.data, session)
                if answer is not None:
                    await ws.send_str(json.dumps(answer))
    finally:
        session.close()
        pump.cancel()
    return ws


def create_rpc_app(node: NodeService) -> web.Application:
    """The JSON-RPC application (HTTP POST and WebSocket on ``/``, WebSocket on ``/ws``)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RPC_KEY] = JsonRpc(node)
    app.router.add_route("*", "/", _http)
    app.router.add_get("/ws", _websocket)
    return app
