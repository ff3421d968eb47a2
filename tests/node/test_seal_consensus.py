"""QbftSealConsensus is py-evm's ConsensusAPI and takes parents py-evm passes, stored or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth.abc import ConsensusAPI
from eth_utils import ValidationError

from node.chain import PortLedgerVM, QbftSealConsensus
from node.db import LevelDB
from node.genesis import Genesis
from node.ledger import Ledger
from tests.support.chain import VALIDATOR


@pytest.fixture
def empty(tmp_path: Path, genesis_path: Path) -> Iterator[Any]:
    """A ledger holding only genesis: the blocks built elsewhere are not in its database."""
    db = LevelDB(str(tmp_path / "empty"))
    yield Ledger(db, Genesis.load(genesis_path))
    db.close()


def test_seal_consensus_is_py_evm_consensus_api() -> None:
    assert issubclass(QbftSealConsensus, ConsensusAPI)
    assert PortLedgerVM.consensus_class is QbftSealConsensus


def test_seal_extension_uses_parents_not_in_the_database(ledger: Ledger, empty: Ledger) -> None:
    first = ledger.propose([], VALIDATOR).block.header
    second = ledger.propose([], VALIDATOR).block.header
    vm = empty.chain.get_vm(second)
    with pytest.raises(ValidationError, match="unknown parent"):
        vm.validate_seal_extension(second, ())
    vm.validate_seal_extension(second, (first,))  # the direct parent, given and not stored
    vm.validate_seal_extension(second, (empty.genesis_header(), first))  # found among several
    # py-evm's batch check passes each header the earlier ones of the batch as parents.
    empty.chain.validate_chain_extension((first, second))

