"""Proof bundles of anchored telemetry readings (``docs/proof-format.md`` section 5.5).

A reading is never on chain by itself: its batch's Merkle root is, in an ``Anchored`` log of the
Anchors contract (:mod:`gateway.telemetry.anchoring`). The bundle proves that log like any other
(sealed header, receipt and transaction proofs: ``portledger_getProof`` on the gateway's node,
located by the batch's transaction hash and block-wide log index) and adds the ``anchor``
object: the reading's canonical bytes (``reading``: the verifier hashes them itself) and its
sorted-pair Merkle proof up to the anchored root (:func:`proofs.disclosure.anchor_item`). A
changed byte of the reading, or a reading of another batch, fails offline as
``anchor-proof-mismatch``.

Who may have one: whoever may read the reading — everyone for AIS, else its owner, its named
readers, and (asking with the subject's reference) its reference readers. Anyone else gets the
404 of a reading that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from eth_utils.crypto import keccak

from contracts import anchors
from gateway.appkeys import NODE, TELEMETRY
from gateway.errors import Conflict, NotFound, Unavailable
from gateway.events.model import Reference
from gateway.nodeclient import NodeUnavailable, RpcError
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import READING_TYPES
from proofs.checks import ANCHORED_TOPIC
from proofs.disclosure import anchor_item


async def make_reading_bundle(app: web.Application, principal: Principal, reading_id: int,
                              subject: Reference | None = None) -> dict[str, Any]:
    """The proof bundle of one anchored reading the caller may read.

    Raises
    ------
    ApiError
        ``unknown-reading`` (404), ``not-anchored`` (409: not in a batch yet, batch not final,
        or batch failed), ``cannot-prove`` (409: the stored batch does not give its anchored
        root), ``no-node`` / ``node-unavailable`` / ``node-refused`` (503).
    """
    found = await telemetry.reading_of(app, principal, reading_id, subject)
    if found is None:
        raise NotFound("no such reading you may see", code="unknown-reading")
    state = found.stored.anchor
    if state is None or state.status != "anchored":
        status = "waiting for a batch" if state is None else f"in a batch that is {state.status}"
        if state is None and found.stored.reading.type not in _ANCHORED_TYPES:
            status = "of a type that is not anchored"
        raise Conflict(f"reading {reading_id} is not anchored yet: {status}",
                       code="not-anchored", details={"anchor": state.to_json() if state else None})
    store = app[TELEMETRY]
    batch = await asyncio.to_thread(store.batch, state.batch_id)
    hashes = await asyncio.to_thread(store.batch_hashes, state.batch_id)
    canonical = found.stored.reading.canonical_bytes()
    if (batch is None or batch.tx_hash is None or batch.log_index is None
            or len(hashes) != batch.count or not 0 <= state.index < len(hashes)
            or hashes[state.index] != keccak(canonical)
            or anchors.merkle_root(hashes) != batch.root):
        raise Conflict(f"reading {reading_id}'s stored batch does not give its anchored root",
                       code="cannot-prove")
    node = app.get(NODE)
    if node is None:
        raise Unavailable("this gateway has no node to prove readings with", code="no-node")
    try:
        bundle = await node.request("portledger_getProof", [batch.tx_hash, batch.log_index])
    except NodeUnavailable as exc:
        raise Unavailable(f"no node answered: {exc}", code="node-unavailable") from None
    except RpcError as exc:
        raise Unavailable(f"the node could not prove the anchor: {exc.message}",
                          code="node-refused") from None
    events = bundle.get("events") if isinstance(bundle, dict) else None
    if not isinstance(events, list) or len(events) != 1 or not _is_anchor_of(events[0], batch.root):
        raise Unavailable("the node answered a bundle of another log", code="node-refused")
    events[0]["anchor"] = anchor_item(hashes, state.index, reading=canonical)
    proven: dict[str, Any] = bundle
    return proven


_ANCHORED_TYPES = frozenset(t for t, kind in READING_TYPES.items() if kind)


def _is_anchor_of(item: Any, root: bytes) -> bool:
    try:
        topics = item["log"]["topics"]
        return (bytes.fromhex(topics[0][2:]) == ANCHORED_TOPIC
                and bytes.fromhex(item["log"]["data"][2:66]) == root)
    except (KeyError, IndexError, TypeError, ValueError):
        return False
