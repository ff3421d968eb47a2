"""A third party checks headers served over JSON-RPC with only RLP, Keccak and secp256k1.

The verifier below imports nothing from the project: it rebuilds each header from its JSON-RPC
fields, checks the block hash (Besu's rule: round 0 and no seals in extraData), recovers every
commit seal over the seal digest (seals emptied, round kept) and requires a quorum of distinct
signers from the validator list of the *parent* header, starting from genesis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import coincurve
import pytest
import rlp
from aiohttp.test_utils import TestClient, TestServer
from eth_hash.auto import keccak

from node.rpc.app import create_rpc_app
from tests.support.chain import TERMINAL, cargo_tx
from tests.support.engine_net import Net

# ------------------------------------------------------------------ the independent verifier

FIELDS = (
    ("parentHash", "b"), ("sha3Uncles", "b"), ("miner", "b"), ("stateRoot", "b"),
    ("transactionsRoot", "b"), ("receiptsRoot", "b"), ("logsBloom", "b"), ("difficulty", "i"),
    ("number", "i"), ("gasLimit", "i"), ("gasUsed", "i"), ("timestamp", "i"), ("extraData", "b"),
    ("mixHash", "b"), ("nonce", "b"), ("baseFeePerGas", "i"), ("withdrawalsRoot", "b"),
    ("blobGasUsed", "i"), ("excessBlobGas", "i"), ("parentBeaconBlockRoot", "b"), ("requestsHash", "b"),
)  # fmt: skip


class Refused(Exception):
    pass


def header_items(block: dict[str, Any], extra_data: bytes) -> list[Any]:
    items: list[Any] = []
    for name, kind in FIELDS:
        if name == "extraData":
            items.append(extra_data)
        elif kind == "i":
            items.append(int(block[name], 16))
        else:
            items.append(bytes.fromhex(block[name][2:]))
    return items


def signer(digest: bytes, seal: bytes) -> bytes:
    r_s, v = seal[:64], seal[64]
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            r_s + bytes([v]), digest, hasher=None
        )
    except ValueError as exc:
        raise Refused(f"seal does not recover: {exc}") from exc
    return keccak(public.format(compressed=False)[1:])[-20:]


def verify(block: dict[str, Any], parent: dict[str, Any]) -> list[bytes]:
    """Return the sealers of ``block``; raise Refused naming what is wrong."""
    vanity, validators, vote, round_, seals = rlp.decode(bytes.fromhex(block["extraData"][2:]))
    hashed = rlp.encode([vanity, validators, vote, b"", []])  # round 0: the empty string
    if "0x" + keccak(rlp.encode(header_items(block, hashed))).hex() != block["hash"]:
        raise Refused("block hash does not match the header fields")
    digest = keccak(
        rlp.encode(header_items(block, rlp.encode([vanity, validators, vote, round_, []])))
    )
    allowed = rlp.decode(bytes.fromhex(parent["extraData"][2:]))[1]
    signers: list[bytes] = []
    for seal in seals:
        who = signer(digest, seal)
        if who not in allowed:
            raise Refused(f"seal from 0x{who.hex()}, not a validator of the parent")
        if who in signers:
            raise Refused("duplicate seal")
        signers.append(who)
    if len(signers) < (2 * len(allowed) + 2) // 3:
        raise Refused(f"{len(signers)} seals, quorum of {len(allowed)} not reached")
    return signers


# ------------------------------------------------------------------------------ the network


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with Net(tmp_path, validators=4).started() as net:
        yield net


async def rpc(client: TestClient, method: str, params: list[Any]) -> Any:
    response = await client.post(
        "/", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    )
    body = await response.json()
    assert "error" not in body, body
    return body["result"]


async def test_every_served_header_verifies_with_rlp_and_secp256k1_only(net: Net) -> None:
    first = net.members[0]
    await net.wait(
        lambda: all(m.ledger.head().block_number >= 1 for m in net.running()), 30, "block 1"
    )
    for n in range(3):
        first.service.submit_raw(cargo_tx(first.ledger, TERMINAL, n).encode())
        await net.wait(lambda n=n: first.ledger.head().block_number >= 2 + n, 30, f"block {2 + n}")
    async with TestClient(TestServer(create_rpc_app(first.service))) as client:
        head = int(await rpc(client, "eth_blockNumber", []), 16)
        blocks = [
            await rpc(client, "eth_getBlockByNumber", [hex(n), False]) for n in range(head + 1)
        ]
    assert head >= 4
    sealers = set()
    for parent, block in zip(blocks, blocks[1:], strict=False):
        sealers.update(verify(block, parent))
    assert len(sealers) >= 3  # a quorum of 4 signs every block

    # The verifier can fail: a flipped seal byte, a dropped seal, a forged validator list.
    block, parent = dict(blocks[2]), blocks[1]
    vanity, validators, vote, round_, seals = rlp.decode(bytes.fromhex(block["extraData"][2:]))
    flipped = [bytes([seals[0][0] ^ 1]) + seals[0][1:], *seals[1:]]
    forged_list = [b"\x05" * 20, *validators[1:]]
    for tampered, reason in (
        (
            rlp.encode([vanity, validators, vote, round_, flipped]),
            "not a validator|does not recover",
        ),
        (rlp.encode([vanity, validators, vote, round_, seals[:2]]), "quorum"),
        (rlp.encode([vanity, validators, vote, round_, [*seals, seals[0]]]), "duplicate"),
        (rlp.encode([vanity, forged_list, vote, round_, seals]), "block hash"),
    ):
        with pytest.raises(Refused, match=reason):
            verify({**block, "extraData": "0x" + tampered.hex()}, parent)
