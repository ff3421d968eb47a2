"""The portledger command: init, export, import, replay — and replay catching tampering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rlp

from node.chain import PortLedgerVM
from node.db import LevelDB
from node.genesis import Genesis
from node.ledger import Ledger
from tests.support.chain import TERMINAL, VALIDATOR, cargo_tx, reseal


def portledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portledger", *args], capture_output=True, text=True, timeout=300)


def make_chain(datadir: Path, genesis_path: Path, blocks: int = 4) -> None:
    assert portledger("init", "--datadir", str(datadir), "--genesis", str(genesis_path), "--dev-key", "validator:0").returncode == 0
    db = LevelDB(str(datadir / "chain"))
    ledger = Ledger(db, Genesis.load(genesis_path))
    nonce = 0
    for n in range(blocks):
        txs = [cargo_tx(ledger, TERMINAL, nonce + i) for i in range(2)]
        nonce += 2
        ledger.propose(txs, VALIDATOR, timestamp=2_000_000_000 + n)
    db.close()


def test_init_refuses_to_overwrite_and_bad_key(tmp_path: Path, genesis_path: Path) -> None:
    make_chain(tmp_path / "a", genesis_path, blocks=1)
    again = portledger("init", "--datadir", str(tmp_path / "a"), "--genesis", str(genesis_path))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    bad = tmp_path / "key"
    bad.write_text("zz")
    refused = portledger("init", "--datadir", str(tmp_path / "b"), "--genesis", str(genesis_path), "--key-file", str(bad))
    assert refused.returncode != 0 and "not a hex private key" in refused.stderr
    fresh = portledger("init", "--datadir", str(tmp_path / "c"), "--genesis", str(genesis_path))
    assert fresh.returncode == 0 and "non-validating node" in fresh.stdout
    assert oct((tmp_path / "c" / "nodekey").stat().st_mode & 0o777) == "0o600"


def test_export_import_replay_round_trip(tmp_path: Path, genesis_path: Path) -> None:
    make_chain(tmp_path / "src", genesis_path)
    exported = portledger("export", "--datadir", str(tmp_path / "src"), str(tmp_path / "blocks.rlp"))
    assert exported.returncode == 0 and "exported 4 blocks" in exported.stdout
    assert portledger("init", "--datadir", str(tmp_path / "dst"), "--genesis", str(genesis_path)).returncode == 0
    imported = portledger("import", "--datadir", str(tmp_path / "dst"), str(tmp_path / "blocks.rlp"))
    assert imported.returncode == 0 and "imported 4 blocks" in imported.stdout
    again = portledger("import", "--datadir", str(tmp_path / "dst"), str(tmp_path / "blocks.rlp"))
    assert "imported 0 blocks, 4 already known" in again.stdout
    replay = portledger("replay", "--datadir", str(tmp_path / "dst"))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "every root verified" in replay.stdout and "blocks 4, transactions 8" in replay.stdout
    from_file = portledger("replay", "--blocks", str(tmp_path / "blocks.rlp"), "--genesis", str(genesis_path))
    assert from_file.returncode == 0 and "every root verified" in from_file.stdout


def test_replay_names_the_first_bad_block_and_field(tmp_path: Path, genesis_path: Path) -> None:
    make_chain(tmp_path / "src", genesis_path)
    blocks_file = tmp_path / "blocks.rlp"
    assert portledger("export", "--datadir", str(tmp_path / "src"), str(blocks_file)).returncode == 0
    block_class = PortLedgerVM.get_block_class()
    data = blocks_file.read_bytes()
    blocks, offset = [], 0
    while offset < len(data):
        _, _, length, start = rlp.codec.consume_length_prefix(data, offset)
        blocks.append(rlp.decode(data[offset : start + length], sedes=block_class))
        offset = start + length
    # A validator-key holder rewrites block #3's state root and re-seals: only execution can tell.
    blocks[2] = reseal(blocks[2], state_root=b"\x0b" * 32)
    tampered = tmp_path / "tampered.rlp"
    tampered.write_bytes(b"".join(rlp.encode(b) for b in blocks))
    replay = portledger("replay", "--blocks", str(tampered), "--genesis", str(genesis_path))
    assert replay.returncode == 1
    assert "block #3: state_root mismatch" in replay.stdout
    assert "blocks 2," in replay.stdout
    truncated = tmp_path / "truncated.rlp"
    truncated.write_bytes(data[:-10])
    broken = portledger("replay", "--blocks", str(truncated), "--genesis", str(genesis_path))
    assert broken.returncode != 0 and "malformed block" in broken.stderr
