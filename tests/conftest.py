"""Shared fixtures: the repository's genesis, in-process ledgers and real node processes.

Node processes listen on loopback only, on free ports, and every wait is bounded
(:mod:`tests.support.nodes`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import REPO_GENESIS, NodeProcess


@pytest.fixture(scope="session")
def genesis_path() -> Path:
    if not REPO_GENESIS.exists():
        pytest.fail("genesis.json is missing: run .venv/bin/python scripts/make_genesis.py")
    return REPO_GENESIS


@pytest.fixture
def node_process(tmp_path: Path, genesis_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node", genesis_path).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def ledger(tmp_path: Path, genesis_path: Path) -> Iterator[Any]:
    # py-evm is loaded by the tests that ask for a ledger, not by every test's collection
    from node.db import LevelDB
    from node.genesis import Genesis
    from node.ledger import Ledger

    db = LevelDB(str(tmp_path / "chain"))
    yield Ledger(db, Genesis.load(genesis_path))
    db.close()


os.environ.setdefault("PYTHONHASHSEED", "0")
