"""The ``qbft_`` namespace (as Besu names it): the validator set a block's header carries."""

from __future__ import annotations

from typing import Any

from consensus import extradata
from node.rpc.chainview import ChainView
from node.rpc.errors import Method, expect_params
from node.rpc.format import encode_address


class QbftApi:
    """``qbft_getValidatorsByBlockNumber``."""

    def __init__(self, view: ChainView) -> None:
        self.view = view

    def methods(self) -> dict[str, Method]:
        return {"qbft_getValidatorsByBlockNumber": self.qbft_getValidatorsByBlockNumber}

    def qbft_getValidatorsByBlockNumber(self, params: list[Any]) -> list[str]:
        (tag,) = expect_params(params, 1, 1, "qbft_getValidatorsByBlockNumber")
        header = self.view.header(tag)
        return [encode_address(v) for v in extradata.decode(header.extra_data).validators]
