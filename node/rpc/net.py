"""The small namespaces: ``web3_`` (client version, keccak), ``net_`` (network id, listening,
peers) and ``txpool_`` (pending count)."""

from __future__ import annotations

from typing import Any

from eth_utils.crypto import keccak

from node import __version__
from node.rpc.errors import Method, expect_params, parse_data
from node.rpc.format import encode_data, encode_quantity
from node.service import NodeService


class NetApi:
    """``web3_``, ``net_`` and ``txpool_`` methods of one node."""

    def __init__(self, node: NodeService) -> None:
        self.node = node

    def methods(self) -> dict[str, Method]:
        return {
            "web3_clientVersion": lambda p: f"PortLedger/v{__version__}/python/py-evm",
            "web3_sha3": self.web3_sha3,
            "net_version": lambda p: str(self.node.ledger.chain_id),
            "net_listening": lambda p: True,
            "net_peerCount": lambda p: "0x0",
            "txpool_status": lambda p: {
                "pending": encode_quantity(len(self.node.pool)),
                "queued": "0x0",
            },
        }

    def web3_sha3(self, params: list[Any]) -> str:
        (data,) = expect_params(params, 1, 1, "web3_sha3")
        return encode_data(keccak(parse_data(data)))
