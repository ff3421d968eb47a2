"""Chain format v2 (Besu's QBFT extraData): a data directory is stamped with it, and one of an
older format — its chain, or its genesis.json — is refused with what the operator must do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rlp
from click.testing import CliRunner

from consensus import extradata
from node.datadir import DataDir, DataDirError, init_datadir
from node.db import LevelDB
from node.genesis import Genesis, GenesisError, dev_key
from node.ledger import CHAIN_FORMAT_KEY
from portledger.cli import main


@pytest.fixture
def datadir(tmp_path: Path, genesis_path: Path) -> DataDir:
    init_datadir(tmp_path / "node", genesis_path, dev_key("validator:0"))
    return DataDir(tmp_path / "node")


def _set_format(paths: DataDir, value: bytes | None) -> None:
    db = LevelDB(str(paths.chain))
    if value is None:
        del db[CHAIN_FORMAT_KEY]
    else:
        db[CHAIN_FORMAT_KEY] = value
    db.close()


def _v1_genesis(doc: dict[str, object]) -> dict[str, object]:
    """The same genesis as chain format v1 wrote it: the round as 4 bytes, no chainFormat."""
    extra = rlp.decode(bytes.fromhex(str(doc["extraData"])[2:]))
    extra[3] = b"\x00" * 4
    section = dict(doc["portledger"])  # type: ignore[call-overload]
    section.pop("chainFormat")
    return {**doc, "extraData": "0x" + rlp.encode(extra).hex(), "portledger": section}


def _assert_advice(message: str, found: str) -> None:
    assert f"chain format {found}" in message, message
    assert f"v{extradata.CHAIN_FORMAT_VERSION}" in message
    assert "portledger init" in message and "docs/chain-format.md" in message


def test_a_new_data_directory_is_stamped_and_reopens(datadir: DataDir) -> None:
    ledger = datadir.open_ledger()
    assert ledger.db[CHAIN_FORMAT_KEY] == str(extradata.CHAIN_FORMAT_VERSION).encode()
    assert json.loads(datadir.genesis.read_text())["portledger"]["chainFormat"] == 2
    ledger.db.close()
    datadir.open_ledger().db.close()


def test_a_v1_chain_is_refused_with_what_to_do(datadir: DataDir) -> None:
    _set_format(datadir, None)  # chain format v1 predates the stamp
    with pytest.raises(DataDirError) as caught:
        datadir.open_ledger()
    _assert_advice(str(caught.value), "v1 (QBFT extraData with a 4-byte round)")
    assert str(datadir.root) in str(caught.value)
    # Every command that opens the directory says the same.
    result = CliRunner().invoke(main, ["export", "--datadir", str(datadir.root), "out.rlp"])
    assert result.exit_code == 1
    _assert_advice(result.output.replace("\n", " "), "v1")


def test_a_chain_of_another_version_is_refused(datadir: DataDir) -> None:
    _set_format(datadir, b"7")
    with pytest.raises(DataDirError) as caught:
        datadir.open_ledger()
    _assert_advice(str(caught.value), "v7")


def test_a_v1_genesis_json_is_refused_with_what_to_do(datadir: DataDir) -> None:
    doc = json.loads(datadir.genesis.read_text())
    datadir.genesis.write_text(json.dumps(_v1_genesis(doc)))
    with pytest.raises(DataDirError) as caught:
        datadir.open_ledger()
    _assert_advice(str(caught.value), "v1")
    assert "leading zero" in str(caught.value)


def test_a_genesis_naming_another_chain_format_is_refused(genesis_path: Path) -> None:
    doc = json.loads(genesis_path.read_text())
    doc["portledger"]["chainFormat"] = 1
    with pytest.raises(GenesisError) as caught:
        Genesis.from_json(doc)
    _assert_advice(str(caught.value), "v1")
    # A Besu-made genesis has no chainFormat: its extraData decides.
    del doc["portledger"]["chainFormat"]
    assert Genesis.from_json(doc).validators
