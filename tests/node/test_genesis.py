"""genesis.json agrees with the Vyper sources, and bad genesis files are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devnet.members import demo_members
from node.genesis import Genesis, GenesisError, build_genesis


def test_genesis_json_matches_the_contract_sources(genesis_path: Path) -> None:
    """Rebuilt from contracts/*.vy (compiled now, not from stale artifacts), genesis must match."""
    import contracts
    from contracts import build

    current = json.loads(genesis_path.read_text())
    for name in contracts.DEPLOY_ORDER:
        fresh = build.build_artifact(name)
        assert fresh == contracts.load_artifact(name), f"contracts/build/{name}.json is stale"
    members, validators = demo_members(len(current["portledger"]["validators"]))
    assert build_genesis(members, validators) == current, "run .venv/bin/python scripts/make_genesis.py"


def test_genesis_describes_the_network(genesis_path: Path) -> None:
    genesis = Genesis.load(genesis_path)
    doc = genesis.raw
    assert doc["baseFeePerGas"] == "0x0" and doc["difficulty"] == "0x0"
    assert genesis.qbft.block_period_seconds >= 1
    assert sorted(v.lower() for v in doc["portledger"]["validators"]) == ["0x" + v.hex() for v in genesis.validators]
    for name, info in doc["portledger"]["contracts"].items():
        account = doc["alloc"][info["address"]]
        assert len(account["code"]) > 100, name
    assert doc["alloc"][doc["portledger"]["contracts"]["Consortium"]["address"]]["storage"]


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda d: d.pop("gasLimit"), "gasLimit"),
        (lambda d: d.update(extraData="0x1234"), "extraData"),
        (lambda d: d.update(extraData="nothex"), "0x-prefixed"),
        (lambda d: d["config"].pop("chainId"), "chainId"),
    ],
)
def test_malformed_genesis_is_refused(genesis_path: Path, mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(genesis_path.read_text())
    mutate(doc)
    with pytest.raises(GenesisError, match=reason):
        Genesis.from_json(doc)


def test_unreadable_genesis_file(tmp_path: Path) -> None:
    bad = tmp_path / "genesis.json"
    bad.write_text("{not json")
    with pytest.raises(GenesisError, match="cannot read"):
        Genesis.load(bad)
