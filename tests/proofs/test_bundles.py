"""Proof bundles round-trip, and every tampering in the catalogue fails with its reason.

The chain (``tests/support/proof_chain.py``) is real: blocks executed by py-evm, sealed by the dev
validators' keys, with two validator-set changes made by on-chain governance.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rlp
from click.testing import CliRunner
from eth_utils import keccak

from contracts import anchors, cargo
from node.proofs import ProofBuilder
from portledger.cli import main
from proofs import checks, summary
from proofs.disclosure import anchor_item, disclosure
from proofs.errors import ProofError, Reason
from proofs.verify import verify_bundle
from tests.support import independent_verifier
from tests.support.proof_catalogue import CATALOGUE, gate_out_disclosure, ref
from tests.support.proof_chain import CONTAINER, Sealed

ROOT = Path(__file__).resolve().parents[2]


# -- round trips -----------------------------------------------------------------------------
def test_event_before_any_change_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    bundle = builder.bundle([ref(builder, sealed.plain_event, subject_reference=CONTAINER)])
    verified = verify_bundle(bundle, genesis_doc)
    (event,) = verified.events
    assert event.kind == "cargo" and event.cargo is not None
    assert event.cargo.event_type == cargo.EVENT_TYPES["TERMINAL.DISC"]
    assert event.block_number == 1 and bundle["validatorChanges"] == []
    assert len(event.sealed_by) == 3 and len(event.validators) == 4
    assert CONTAINER in event.describe() and "sealed by 3 of 4 validators" in event.describe()


def test_event_sealed_by_the_added_validator_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    bundle = builder.bundle([ref(builder, sealed.after_add)])
    verified = verify_bundle(bundle, genesis_doc)
    newcomer = sealed.ledger.validators_at(sealed.ledger.header_by_number(sealed.changes[0]))
    assert verified.events[0].validators == newcomer and len(newcomer) == 5
    assert set(verified.events[0].sealed_by) == set(newcomer)
    assert [n for n, _ in verified.changes] == sealed.changes[:1]


def test_disclosed_encrypted_event_after_two_changes_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    bundle = builder.bundle([
        ref(builder, sealed.encrypted, disclosure=gate_out_disclosure(sealed), subject_reference=CONTAINER),
        ref(builder, sealed.compressed, disclosure=gate_out_disclosure(sealed, "compressed", compression="zlib")),
    ])
    verified = verify_bundle(bundle, genesis_doc)
    assert [n for n, _ in verified.changes] == sealed.changes
    assert verified.events[0].plaintext == sealed.secrets["gate-out"]["plaintext"]
    assert verified.events[1].plaintext == sealed.secrets["compressed"]["plaintext"]
    assert "gated out" in verified.describe() and "sealed by 3 of 4" in verified.describe()


def test_plaintext_only_disclosure_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    plain = disclosure(sealed.secrets["gate-out"]["plaintext"])
    verify_bundle(builder.bundle([ref(builder, sealed.encrypted, disclosure=plain)]), genesis_doc)


def test_whole_shipment_across_changes_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    refs = builder.refs_for_subject(CONTAINER)
    verified = verify_bundle(builder.bundle(refs), genesis_doc)
    assert len(verified.events) == 6
    numbers = {e.block_number for e in verified.events}
    assert min(numbers) < sealed.changes[0] < sealed.changes[1] < max(numbers)
    assert {len(e.validators) for e in verified.events} == {4, 5}


def test_anchored_reading_verifies(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    hashes = [keccak(r) for r in sealed.readings]
    for index in (0, 3, 6):  # 6: the odd node promoted unchanged
        item = anchor_item(hashes, index, reading=sealed.readings[index])
        verified = verify_bundle(builder.bundle([ref(builder, sealed.anchor, anchor=item)]), genesis_doc)
        assert verified.events[0].kind == "anchor"
        assert verified.events[0].reading_hash == hashes[index]


def test_event_found_by_id(sealed: Sealed, builder: ProofBuilder, genesis_doc: Any) -> None:
    event_id = 3 << 16  # third batch, first event: the first event after the added validator
    verified = verify_bundle(builder.bundle([builder.refs_for_event_id(event_id)]), genesis_doc)
    assert verified.events[0].cargo is not None and verified.events[0].cargo.event_id == event_id


def test_event_type_table_matches_the_contract() -> None:
    assert {f: (name, codes) for f, (name, codes, _roles) in cargo.FAMILIES.items()} == summary.EVENT_FAMILIES
    assert checks.CARGO_EVENT_TOPIC == cargo.CARGO_EVENT_TOPIC


def test_verifier_module_imports_no_node_code() -> None:
    code = (
        "import sys, proofs.verify\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('eth', 'node', 'contracts', 'trie', 'eth_keys', 'gateway')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_proof_and_verify(sealed: Sealed, builder: ProofBuilder, tmp_path: Path) -> None:
    # The CLI opens the data directory itself: copy the chain's genesis and database layout.
    runner = CliRunner()
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(json.dumps(builder.bundle(builder.refs_for_subject(CONTAINER))))
    result = runner.invoke(main, ["verify-proof", str(bundle_path), "--genesis", str(sealed.genesis_path)])
    assert result.exit_code == 0, result.output
    assert "MSCU1234565 gated out (actual) at HKHKG" in result.output
    assert "sealed by 3 of 4 validators" in result.output
    tampered = json.loads(bundle_path.read_text())
    tampered["events"][0]["log"]["data"] = tampered["events"][0]["log"]["data"][:-2] + "ff"
    bundle_path.write_text(json.dumps(tampered))
    result = runner.invoke(main, ["verify-proof", str(bundle_path), "--genesis", str(sealed.genesis_path)])
    assert result.exit_code == 1
    assert "log-mismatch" in result.output
    result = runner.invoke(main, ["verify-proof", str(tmp_path / "absent.json"), "--genesis", str(sealed.genesis_path)])
    assert result.exit_code == 1 and "bundle-format" in result.output


def test_utc_formatting_matches_the_calendar() -> None:
    import datetime

    for seconds in (0, 951_782_400, 1_767_225_600, 1_767_225_600 + 86_399, 4_102_444_800):
        expected = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        assert summary.utc(seconds) == expected


def test_catalogue_bundles_verify_untampered(bundles: dict[str, dict[str, Any]], genesis_doc: Any) -> None:
    for name, bundle in bundles.items():
        assert verify_bundle(bundle, genesis_doc).events, name


def test_catalogue_has_at_least_15_tamperings() -> None:
    assert len({reason for *_, reason in CATALOGUE}) >= 15 and len(CATALOGUE) >= 30


@pytest.mark.parametrize(("what", "base", "tamper", "reason"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_tampering_fails_with_its_reason(
    what: str, base: str, tamper: Callable[[Sealed, ProofBuilder, dict[str, Any]], None], reason: Reason,
    sealed: Sealed, builder: ProofBuilder, bundles: dict[str, dict[str, Any]], genesis_doc: Any,
) -> None:
    bundle = copy.deepcopy(bundles[base])
    tamper(sealed, builder, bundle)
    with pytest.raises(ProofError) as caught:
        verify_bundle(bundle, genesis_doc)
    assert caught.value.reason == reason, f"{what}: {caught.value}"


def test_wrong_genesis_file_fails(bundles: dict[str, dict[str, Any]]) -> None:
    repo_genesis = json.loads((ROOT / "genesis.json").read_text())
    with pytest.raises(ProofError) as caught:
        verify_bundle(bundles["first"], repo_genesis)
    assert caught.value.reason == Reason.GENESIS_MISMATCH


def test_genesis_with_another_chain_id_fails(bundles: dict[str, dict[str, Any]], genesis_doc: Any) -> None:
    other = copy.deepcopy(genesis_doc)
    other["config"]["chainId"] = 4242
    with pytest.raises(ProofError) as caught:
        verify_bundle(bundles["first"], other)
    assert caught.value.reason == Reason.CHAIN_ID_MISMATCH


def test_old_format_bundle_and_genesis_are_refused_with_what_to_do(
    bundles: dict[str, dict[str, Any]], genesis_doc: Any
) -> None:
    old_bundle = {**bundles["first"], "format": "portledger-proof/1"}
    with pytest.raises(ProofError) as caught:
        verify_bundle(old_bundle, genesis_doc)
    assert caught.value.reason == Reason.OLD_FORMAT
    assert "chain format v1" in str(caught.value) and "new bundle" in str(caught.value)
    # genesis.json of chain format v1: the round as 4 bytes.
    old_genesis = copy.deepcopy(genesis_doc)
    extra = rlp.decode(bytes.fromhex(old_genesis["extraData"][2:]))
    extra[3] = b"\x00" * 4
    old_genesis["extraData"] = "0x" + rlp.encode(extra).hex()
    with pytest.raises(ProofError) as caught:
        verify_bundle(bundles["first"], old_genesis)
    assert caught.value.reason == Reason.OLD_FORMAT, caught.value
    assert independent_verifier.check(bundles["first"], old_genesis) == Reason.OLD_FORMAT.value


def test_anchor_rule_matches_contracts_module(sealed: Sealed) -> None:
    hashes = [keccak(r) for r in sealed.readings]
    for i in range(len(hashes)):
        assert checks.anchor_merkle_root(hashes[i], anchors.merkle_proof(hashes, i)) == anchors.merkle_root(hashes)
