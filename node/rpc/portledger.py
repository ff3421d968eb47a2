"""The ``portledger_`` namespace: the node's status, the equivocation evidence it caught, and
proof bundles (docs/proof-format.md) of cargo-event logs."""

from __future__ import annotations

from typing import Any

from node.evidence import EvidenceStore
from node.proofs import ProofBuilder, ProofBuildError
from node.rpc.chainview import ChainView
from node.rpc.errors import INVALID_PARAMS, Method, RpcError, expect_params
from node.rpc.format import encode_address, encode_data, encode_quantity

#: Most logs one ``portledger_getProof`` call proves (the bundle is built on the node's loop).
MAX_PROOF_LOGS = 100


class PortLedgerApi:
    """``portledger_status``, ``portledger_getEquivocations``, ``portledger_getProof``."""

    def __init__(self, view: ChainView) -> None:
        self.view = view
        self.node = view.node
        self.ledger = view.ledger
        #: Built on first use; keeps its validator-change index between calls.
        self._proof_builder: ProofBuilder | None = None

    def methods(self) -> dict[str, Method]:
        return {
            "portledger_status": self.portledger_status,
            "portledger_getEquivocations": self.portledger_getEquivocations,
            "portledger_getProof": self.portledger_getProof,
        }

    def portledger_status(self, params: list[Any]) -> dict[str, Any]:
        expect_params(params, 0, 0, "portledger_status")
        return self.node.status()

    def portledger_getEquivocations(self, params: list[Any]) -> list[dict[str, Any]]:
        """Equivocation evidence this node caught (``node.evidence``), oldest first;
        ``reportedInBlock`` is the block whose Consortium record this node has seen, or null."""
        expect_params(params, 0, 0, "portledger_getEquivocations")
        store = EvidenceStore(self.ledger.db)
        out = []
        for n, e in enumerate(store.all()):
            reported = store.reported_at(n)
            out.append(
                {
                    "validator": encode_address(e.validator),
                    "code": encode_quantity(e.code),
                    "height": encode_quantity(e.height),
                    "round": encode_quantity(e.round),
                    "evidence": encode_data(e.encoded),
                    "reportedInBlock": None if reported is None else encode_quantity(reported),
                }
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
            pairs = [expect_params(params, 2, 2, "portledger_getProof")]
        try:
            if self._proof_builder is None:
                self._proof_builder = ProofBuilder(self.ledger)
            builder = self._proof_builder
            refs = []
            for tx_hash, log_index in pairs:
                raw_hash = bytes.fromhex(str(tx_hash).removeprefix("0x"))
                index = int(log_index, 16) if isinstance(log_index, str) else int(log_index)
                refs.append(builder.ref_for_transaction(raw_hash, index))
            return builder.bundle(refs)
        except (ProofBuildError, ValueError, TypeError) as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from exc
