"""Bundles verify with a verifier written from docs/proof-format.md alone, and it refuses every
tampering of the catalogue with the same reason code as the project's verifier."""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.proofs import ProofBuilder
from proofs.errors import Reason
from tests.support import independent_verifier
from tests.support.proof_catalogue import CATALOGUE
from tests.support.proof_chain import CONTAINER, Sealed


def test_independent_verifier_imports_nothing_from_the_project() -> None:
    tree = ast.parse(Path(independent_verifier.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"node", "consensus", "contracts", "gateway", "tests", "eth", "trie"}, imported


def test_bundles_verify_independently(bundles: dict[str, dict[str, Any]], builder: ProofBuilder,
                                      genesis_doc: Any) -> None:
    for name, bundle in bundles.items():
        assert independent_verifier.check(bundle, genesis_doc) is None, name
    shipment = builder.bundle(builder.refs_for_subject(CONTAINER))
    assert independent_verifier.check(shipment, genesis_doc) is None


@pytest.mark.parametrize(("what", "base", "tamper", "reason"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_independent_verifier_names_the_same_reason(
    what: str, base: str, tamper: Callable[[Sealed, ProofBuilder, dict[str, Any]], None], reason: Reason,
    sealed: Sealed, builder: ProofBuilder, bundles: dict[str, dict[str, Any]], genesis_doc: Any,
) -> None:
    bundle = copy.deepcopy(bundles[base])
    tamper(sealed, builder, bundle)
    assert independent_verifier.check(bundle, genesis_doc) == reason.value, what
