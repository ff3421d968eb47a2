"""The JSON form of blocks, transactions, logs and receipts (what geth answers), and the
encodings of the JSON-RPC spec: QUANTITY (``0x``-hex without leading zeros), DATA (``0x``-hex
bytes) and addresses (EIP-55 checksummed).
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import rlp
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    LegacyTransactionFieldsAPI,
    ReceiptAPI,
    SignedTransactionAPI,
)
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

T = TypeVar("T")


def encode_quantity(value: int) -> str:
    return hex(value)


def encode_data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def encode_address(value: bytes) -> str:
    return to_checksum_address(value)


def _prague(value: T | None) -> T:
    """A field every header of this chain (Prague from genesis) has, though py-evm's
    ``BlockHeaderAPI`` types it optional for older forks."""
    assert value is not None
    return value


def format_header(header: BlockHeaderAPI) -> dict[str, Any]:
    return {
        "number": encode_quantity(header.block_number),
        "hash": encode_data(header.hash),
        "parentHash": encode_data(header.parent_hash),
        "nonce": encode_data(header.nonce),
        "sha3Uncles": encode_data(header.uncles_hash),
        "logsBloom": encode_data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": encode_data(header.transaction_root),
        "stateRoot": encode_data(header.state_root),
        "receiptsRoot": encode_data(header.receipt_root),
        "miner": encode_address(header.coinbase),
        "difficulty": encode_quantity(header.difficulty),
        "totalDifficulty": "0x0",
        "extraData": encode_data(header.extra_data),
        "gasLimit": encode_quantity(header.gas_limit),
        "gasUsed": encode_quantity(header.gas_used),
        "timestamp": encode_quantity(header.timestamp),
        "mixHash": encode_data(header.mix_hash),
        "baseFeePerGas": encode_quantity(_prague(header.base_fee_per_gas)),
        "withdrawalsRoot": encode_data(_prague(header.withdrawals_root)),
        "blobGasUsed": encode_quantity(header.blob_gas_used),
        "excessBlobGas": encode_quantity(header.excess_blob_gas),
        "parentBeaconBlockRoot": encode_data(_prague(header.parent_beacon_block_root)),
        # py-evm's BlockHeaderAPI predates Prague: no requests_hash on it.
        "requestsHash": encode_data(header.requests_hash),  # type: ignore[attr-defined]
    }


def format_transaction(
    tx: SignedTransactionAPI, header: BlockHeaderAPI | None, index: int | None
) -> dict[str, Any]:
    type_id = getattr(tx, "type_id", None)
    chain_id = getattr(tx, "chain_id", None)
    out: dict[str, Any] = {
        "hash": encode_data(tx.hash),
        "nonce": encode_quantity(tx.nonce),
        "blockHash": encode_data(header.hash) if header else None,
        "blockNumber": encode_quantity(header.block_number) if header else None,
        "transactionIndex": encode_quantity(index) if index is not None else None,
        "from": encode_address(tx.sender),
        "to": encode_address(tx.to) if tx.to else None,
        "value": encode_quantity(tx.value),
        "gas": encode_quantity(tx.gas),
        "input": encode_data(tx.data),
        "type": encode_quantity(type_id or 0),
        "chainId": encode_quantity(chain_id) if chain_id is not None else None,
        "r": encode_quantity(tx.r),
        "s": encode_quantity(tx.s),
    }
    if type_id is None:
        out["gasPrice"] = encode_quantity(tx.gas_price)
        out["v"] = encode_quantity(cast(LegacyTransactionFieldsAPI, tx).v)
    else:
        out["v"] = encode_quantity(tx.y_parity)
        out["yParity"] = encode_quantity(tx.y_parity)
        out["accessList"] = [
            {
                "address": encode_address(a),
                "storageKeys": [encode_data(k.to_bytes(32, "big")) for k in ks],
            }
            for a, ks in tx.access_list
        ]
        if type_id >= 2:
            out["maxFeePerGas"] = encode_quantity(tx.max_fee_per_gas)
            out["maxPriorityFeePerGas"] = encode_quantity(tx.max_priority_fee_per_gas)
            out["gasPrice"] = encode_quantity(
                min(
                    tx.max_fee_per_gas,
                    tx.max_priority_fee_per_gas + _prague(header.base_fee_per_gas),
                )
                if header
                else tx.max_fee_per_gas
            )
        else:
            out["gasPrice"] = encode_quantity(tx.gas_price)
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
        "address": encode_address(address),
        "topics": [encode_data(t.to_bytes(32, "big")) for t in topics],
        "data": encode_data(data),
        "blockNumber": encode_quantity(header.block_number),
        "blockHash": encode_data(header.hash),
        "blockTimestamp": encode_quantity(header.timestamp),
        "transactionHash": encode_data(tx.hash),
        "transactionIndex": encode_quantity(tx_index),
        "logIndex": encode_quantity(log_index),
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
            contract = encode_address(keccak(rlp.encode([tx.sender, tx.nonce]))[12:])
        out.append(
            {
                "transactionHash": encode_data(tx.hash),
                "transactionIndex": encode_quantity(index),
                "blockHash": encode_data(header.hash),
                "blockNumber": encode_quantity(header.block_number),
                "from": encode_address(tx.sender),
                "to": encode_address(tx.to) if tx.to else None,
                "cumulativeGasUsed": encode_quantity(receipt.gas_used),
                "gasUsed": encode_quantity(receipt.gas_used - previous_gas),
                "effectiveGasPrice": "0x0",
                "contractAddress": contract,
                "logs": [entry for tx_index, entry in logs if tx_index == index],
                "logsBloom": encode_data(receipt.bloom.to_bytes(256, "big")),
                "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
                "type": encode_quantity(getattr(tx, "type_id", None) or 0),
            }
        )
        previous_gas = receipt.gas_used
    return out


def format_block(header: BlockHeaderAPI, block: BlockAPI, full: bool) -> dict[str, Any]:
    """A block: its header's fields, its size, and its transactions (objects if ``full``,
    else hashes); no uncles or withdrawals."""
    out = format_header(header)
    out["size"] = encode_quantity(len(rlp.encode(block)))
    out["uncles"] = []
    out["withdrawals"] = []
    if full:
        out["transactions"] = [
            format_transaction(tx, header, i) for i, tx in enumerate(block.transactions)
        ]
    else:
        out["transactions"] = [encode_data(tx.hash) for tx in block.transactions]
    return out
