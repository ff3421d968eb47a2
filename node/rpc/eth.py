"""The ``eth_`` namespace (all but logs and filters, :mod:`node.rpc.filters`): chain and
account state, calls and gas estimates, raw transactions, blocks, transactions, receipts and
``eth_getProof``.

A reverted call answers ``EXECUTION_REVERTED`` (3) with geth's message (``execution reverted:
<reason>``) and the revert data (:mod:`contracts.revert`); a call that cannot run answers
-32000. Fees are zero on this chain (QBFT consortium, no gas market).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.exceptions import Revert, VMError
from eth_typing import Hash32
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError
from trie.hexary import HexaryTrie

from contracts.revert import EXECUTION_REVERTED, revert_data, revert_message
from node.rpc.chainview import ChainView
from node.rpc.errors import (
    EXECUTION_FAILED,
    INVALID_PARAMS,
    Method,
    RpcError,
    expect_params,
    parse_address,
    parse_bool,
    parse_data,
    parse_hash,
    parse_quantity,
)
from node.rpc.format import (
    encode_address,
    encode_data,
    encode_quantity,
    format_block,
    format_transaction,
)
from node.txpool import TxRejected

#: The fields of a call object (``eth_call``, ``eth_estimateGas``); others are refused.
CALL_FIELDS = frozenset(
    {
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
)
#: Most storage keys one ``eth_getProof`` proves.
MAX_PROOF_KEYS = 1_000


def revert_error(exc: Revert) -> RpcError:
    """The JSON-RPC error of a reverted call: its reason in the message, its data as data."""
    data = revert_data(exc)
    return RpcError(EXECUTION_REVERTED, revert_message(data), encode_data(data))


class EthApi:
    """The ``eth_`` methods but logs and filters."""

    def __init__(self, view: ChainView) -> None:
        self.view = view
        self.node = view.node
        self.ledger = view.ledger

    def methods(self) -> dict[str, Method]:
        return {
            "eth_chainId": lambda p: encode_quantity(self.ledger.chain_id),
            "eth_blockNumber": lambda p: encode_quantity(self.ledger.head().block_number),
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
            "eth_getProof": self.eth_getProof,
        }

    # -- simple reads --------------------------------------------------------------------------
    def eth_feeHistory(self, params: list[Any]) -> dict[str, Any]:
        count, newest, percentiles = expect_params(params, 3, 2, "eth_feeHistory")
        count = min(parse_quantity(count, "blockCount"), 1024)
        head = self.view.header(newest)
        oldest = max(0, head.block_number - count + 1)
        headers = [self.ledger.header_by_number(n) for n in range(oldest, head.block_number + 1)]
        if percentiles is not None and not isinstance(percentiles, list):
            raise RpcError(INVALID_PARAMS, "rewardPercentiles: expected an array")
        out: dict[str, Any] = {
            "oldestBlock": encode_quantity(oldest),
            "baseFeePerGas": ["0x0"] * (len(headers) + 1),
            "gasUsedRatio": [h.gas_used / h.gas_limit for h in headers],
            "baseFeePerBlobGas": ["0x1"] * (len(headers) + 1),
            "blobGasUsedRatio": [0.0] * len(headers),
        }
        if percentiles:
            out["reward"] = [["0x0"] * len(percentiles) for _ in headers]
        return out

    def eth_getBalance(self, params: list[Any]) -> str:
        address, tag = expect_params(params, 2, 1, "eth_getBalance")
        return encode_quantity(self.view.state(tag).get_balance(parse_address(address)))

    def eth_getCode(self, params: list[Any]) -> str:
        address, tag = expect_params(params, 2, 1, "eth_getCode")
        return encode_data(self.view.state(tag).get_code(parse_address(address)))

    def eth_getStorageAt(self, params: list[Any]) -> str:
        address, slot, tag = expect_params(params, 3, 2, "eth_getStorageAt")
        state = self.view.state(tag)
        value = state.get_storage(parse_address(address), parse_quantity(slot, "slot"))
        return encode_data(value.to_bytes(32, "big"))

    def eth_getTransactionCount(self, params: list[Any]) -> str:
        address, tag = expect_params(params, 2, 1, "eth_getTransactionCount")
        sender = parse_address(address)
        if tag == "pending":
            return encode_quantity(self.node.pending_nonce(sender))
        return encode_quantity(self.view.state(tag).get_nonce(sender))

    # -- execution ---------------------------------------------------------------------------
    def _call_object(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise RpcError(INVALID_PARAMS, "call: expected a transaction object")
        unknown = set(obj) - CALL_FIELDS
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
        obj, tag, *_ = expect_params(params, 3, 1, method)
        call = self._call_object(obj)
        header = self.view.header_for(tag)
        try:
            return run(call, header)
        except Revert as exc:
            raise revert_error(exc) from None
        except (VMError, ValidationError) as exc:
            raise RpcError(EXECUTION_FAILED, f"execution failed: {exc}") from None

    def eth_call(self, params: list[Any]) -> str:
        return str(
            self._execute(params, "eth_call", lambda c, h: encode_data(self.node.call(c, h)))
        )

    def eth_estimateGas(self, params: list[Any]) -> str:
        def estimate(call: dict[str, Any], header: Any) -> str:
            # A plain call first surfaces a revert with its reason (the estimator only fails).
            self.node.call(call, header)
            return encode_quantity(self.node.estimate_gas(call, header))

        return str(self._execute(params, "eth_estimateGas", estimate))

    def eth_sendRawTransaction(self, params: list[Any]) -> str:
        (raw,) = expect_params(params, 1, 1, "eth_sendRawTransaction")
        data = parse_data(raw, "transaction")
        if not data:
            raise RpcError(INVALID_PARAMS, "transaction: empty")
        try:
            return encode_data(self.node.submit_raw(data))
        except TxRejected as exc:
            raise RpcError(exc.code, str(exc), exc.data) from None

    # -- transactions and receipts -------------------------------------------------------------
    def eth_getTransactionByHash(self, params: list[Any]) -> Any:
        (value,) = expect_params(params, 1, 1, "eth_getTransactionByHash")
        tx_hash = Hash32(parse_hash(value))
        located = self.view.locate(tx_hash)
        if located is None:
            pending = self.node.pool.get(tx_hash)
            return format_transaction(pending, None, None) if pending else None
        header, index = located
        return format_transaction(self.view.block(header).transactions[index], header, index)

    def _tx_by_index(self, header: BlockHeaderAPI | None, index: Any) -> Any:
        if header is None:
            return None
        i = parse_quantity(index, "index")
        txs = self.view.block(header).transactions
        return format_transaction(txs[i], header, i) if i < len(txs) else None

    def eth_getTransactionByBlockNumberAndIndex(self, params: list[Any]) -> Any:
        tag, index = expect_params(params, 2, 2, "eth_getTransactionByBlockNumberAndIndex")
        return self._tx_by_index(self.view.header_for(tag, required=False), index)

    def eth_getTransactionByBlockHashAndIndex(self, params: list[Any]) -> Any:
        block_hash, index = expect_params(params, 2, 2, "eth_getTransactionByBlockHashAndIndex")
        header = self.view.header_for({"blockHash": block_hash}, required=False)
        return self._tx_by_index(header, index)

    def eth_getTransactionReceipt(self, params: list[Any]) -> Any:
        (value,) = expect_params(params, 1, 1, "eth_getTransactionReceipt")
        located = self.view.locate(Hash32(parse_hash(value)))
        if located is None:
            return None
        header, index = located
        return self.view.block_receipts(header)[index]

    def eth_getBlockReceipts(self, params: list[Any]) -> Any:
        (tag,) = expect_params(params, 1, 1, "eth_getBlockReceipts")
        header = self.view.header_for(tag, required=False)
        if header is None:
            return None
        return self.view.block_receipts(header)

    # -- blocks --------------------------------------------------------------------------------
    def eth_getBlockByNumber(self, params: list[Any]) -> Any:
        tag, full = expect_params(params, 2, 1, "eth_getBlockByNumber")
        header = self.view.header_for(tag, required=False)
        if header is None:
            return None
        return format_block(header, self.view.block(header), parse_bool(bool(full), "full"))

    def eth_getBlockByHash(self, params: list[Any]) -> Any:
        block_hash, full = expect_params(params, 2, 1, "eth_getBlockByHash")
        header = self.view.header_for({"blockHash": block_hash}, required=False)
        return None if header is None else format_block(header, self.view.block(header), bool(full))

    def eth_getBlockTransactionCountByNumber(self, params: list[Any]) -> Any:
        (tag,) = expect_params(params, 1, 1, "eth_getBlockTransactionCountByNumber")
        header = self.view.header_for(tag, required=False)
        return (
            None if header is None else encode_quantity(len(self.view.block(header).transactions))
        )

    def eth_getBlockTransactionCountByHash(self, params: list[Any]) -> Any:
        (block_hash,) = expect_params(params, 1, 1, "eth_getBlockTransactionCountByHash")
        header = self.view.header_for({"blockHash": block_hash}, required=False)
        return (
            None if header is None else encode_quantity(len(self.view.block(header).transactions))
        )

    # -- proofs --------------------------------------------------------------------------------
    def eth_getProof(self, params: list[Any]) -> dict[str, Any]:
        address, slots, tag = expect_params(params, 3, 3, "eth_getProof")
        account = parse_address(address)
        if not isinstance(slots, list) or len(slots) > MAX_PROOF_KEYS:
            raise RpcError(
                INVALID_PARAMS, f"storageKeys: expected an array of at most {MAX_PROOF_KEYS} keys"
            )
        keys32 = [
            parse_quantity(s, "storage key")
            if not (isinstance(s, str) and len(s) == 66)
            else int(s, 16)
            for s in slots
        ]
        header = self.view.header(tag)
        db = self.ledger.db
        state_trie = HexaryTrie(db, root_hash=header.state_root)
        account_key = keccak(account)
        account_proof = state_trie.get_proof(account_key)  # type: ignore[no-untyped-call]  # trie is untyped
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
            proof = storage_trie.get_proof(slot_key)  # type: ignore[no-untyped-call]  # trie is untyped
            storage_proof.append(
                {
                    "key": encode_quantity(slot),
                    "value": encode_quantity(int.from_bytes(value, "big")),
                    "proof": [encode_data(rlp.encode(node)) for node in proof],
                }
            )
        return {
            "address": encode_address(account),
            "accountProof": [encode_data(rlp.encode(node)) for node in account_proof],
            "balance": encode_quantity(balance_i),
            "codeHash": encode_data(code_hash),
            "nonce": encode_quantity(nonce_i),
            "storageHash": encode_data(storage_root),
            "storageProof": storage_proof,
        }
