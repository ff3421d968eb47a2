"""A node's data directory: what ``portledger init`` creates and every command opens.

::

    datadir/
      genesis.json   the network's genesis (copied at init)
      nodekey        the node's secp256k1 key, hex, mode 0600
      reportkey      optional: the account that reports equivocation evidence
      chain/         the LevelDB chain database, stamped with its chain format

:func:`init_datadir` is the plain function behind ``portledger init``; the devnet and the tests
call it directly. Failures are :class:`DataDirError` with a message for the operator; a directory
(or its genesis.json) of an older chain format is refused with what to do
(:func:`node.ledger.check_chain_format`, ``docs/chain-format.md``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from eth_keys.datatypes import PrivateKey

from node.chain import ChainError
from node.db import LevelDB, SchemaMismatch
from node.genesis import Genesis, GenesisError
from node.ledger import ChainFormatMismatch, Ledger


class DataDirError(Exception):
    """A data directory or key file cannot be created or opened (the message says why)."""


def read_key_file(path: Path, what: str) -> PrivateKey:
    """The secp256k1 private key in ``path`` (hex, optional ``0x``); :class:`DataDirError`
    naming ``what`` and the file when it cannot be read or is not a key."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return PrivateKey(bytes.fromhex(text.strip().removeprefix("0x")))
    except ValueError as exc:
        raise DataDirError(f"cannot read {what} {path}: not a hex private key ({exc})") from exc


class DataDir:
    """Paths inside a node's data directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.genesis = self.root / "genesis.json"
        self.nodekey = self.root / "nodekey"
        #: The reporting account's key, if the operator put one there (``--report-key-file``).
        self.reportkey = self.root / "reportkey"
        self.chain = self.root / "chain"

    def load_key(self) -> PrivateKey:
        return read_key_file(self.nodekey, "node key")

    def open_ledger(self, *, sync: bool = True) -> Ledger:
        if not self.genesis.exists():
            raise DataDirError(f"{self.root} is not initialised (run `portledger init`)")
        try:
            genesis = Genesis.load(self.genesis)
            db = LevelDB(str(self.chain), sync=sync)
        except GenesisError as exc:
            raise DataDirError(f"{self.root}: {exc}") from exc
        except Exception as exc:  # plyvel.IOError when another process holds the lock
            raise DataDirError(f"cannot open {self.chain}: {exc}") from exc
        try:
            return Ledger(db, genesis)
        except ChainFormatMismatch as exc:
            db.close()
            raise DataDirError(f"{self.root}: {exc}") from exc
        except (ChainError, SchemaMismatch) as exc:
            db.close()
            raise DataDirError(str(exc)) from exc


@dataclass(frozen=True)
class Initialised:
    """What :func:`init_datadir` created."""

    root: Path
    chain_id: int
    genesis_hash: bytes
    address: bytes
    #: Whether the node's address is one of the genesis validators.
    validator: bool


def init_datadir(root: str | Path, genesis_path: str | Path, key: PrivateKey) -> Initialised:
    """Create a data directory: a copy of the genesis, the node key and the chain database.

    Refuses (:class:`DataDirError`) a folder that already holds a chain or a genesis file that
    does not load.
    """
    paths = DataDir(root)
    if paths.chain.exists():
        raise DataDirError(f"{paths.chain} already exists; refusing to overwrite a chain")
    try:
        genesis = Genesis.load(genesis_path)
    except GenesisError as exc:
        raise DataDirError(str(exc)) from exc
    paths.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(genesis_path, paths.genesis)
    fd = os.open(paths.nodekey, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.to_hex() + "\n")
    ledger = paths.open_ledger()
    try:
        address = key.public_key.to_canonical_address()
        return Initialised(
            root=paths.root,
            chain_id=genesis.chain_id,
            genesis_hash=ledger.genesis_header().hash,
            address=address,
            validator=address in genesis.validators,
        )
    finally:
        ledger.db.close()
