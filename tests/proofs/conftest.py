"""One sealed chain with validator-set changes, built once per test session for proof tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from node.proofs import ProofBuilder
from tests.support.proof_catalogue import make_bundles
from tests.support.proof_chain import Sealed, build_chain


@pytest.fixture(scope="session")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    chain = build_chain(tmp_path_factory.mktemp("proof-chain"))
    yield chain
    chain.ledger.db.close()


@pytest.fixture(scope="session")
def builder(sealed: Sealed) -> ProofBuilder:
    return ProofBuilder(sealed.ledger)


@pytest.fixture(scope="session")
def genesis_doc(sealed: Sealed) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sealed.genesis_path.read_text())
    return doc


@pytest.fixture(scope="session")
def bundles(sealed: Sealed, builder: ProofBuilder) -> dict[str, dict[str, Any]]:
    return make_bundles(sealed, builder)
