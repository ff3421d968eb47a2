"""Proof bundles round-trip, and every tampering in the catalogue fails with its reason.

The chain (``tests/proofs/chain.py``) is real: blocks executed by py-evm, sealed by the dev
validators' keys, with two validator-set changes made by on-chain governance.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import rlp
from click.testing import CliRunner
from eth_keys import keys
from eth_utils import keccak

from consensus import extradata
from contracts import anchors, cargo
from node.proofs import EventRef, ProofBuilder, trie_proof
from portledger.cli import main
from proofs import verify as proofcheck
from proofs.disclosure import anchor_item, disclosure
from proofs.verify import ProofError, Reason, verify_bundle
from tests.proofs.chain import CONTAINER, Sealed

ROOT = Path(__file__).resolve().parents[2]
OUTSIDER = keys.PrivateKey(b"\x42" * 32)


def ref(builder: ProofBuilder, at: tuple[bytes, int], **extra: Any) -> EventRef:
    return replace(builder.ref_for_transaction(*at), **extra)


def gate_out_disclosure(sealed: Sealed, name: str = "gate-out", **extra: Any) -> dict[str, Any]:
    s = sealed.secrets[name]
    return disclosure(s["plaintext"], data_key=s["key"], nonce=s["nonce"], **extra)


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
    assert {f: (name, codes) for f, (name, codes, _roles) in cargo.FAMILIES.items()} == proofcheck.EVENT_FAMILIES
    assert proofcheck.CARGO_EVENT_TOPIC == cargo.CARGO_EVENT_TOPIC


def test_verifier_module_imports_no_node_code() -> None:
    code = (
        "import sys, consensus.proofcheck\n"
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
        assert proofcheck.utc(seconds) == expected


# -- the tampering catalogue -------------------------------------------------------------------
def _header(raw_hex: str) -> list[Any]:
    fields: list[Any] = rlp.decode(bytes.fromhex(raw_hex[2:]))
    return fields


def _set_extra(raw_hex: str, edit: Callable[[list[Any]], None], reseal: list[keys.PrivateKey] | None = None) -> str:
    fields = _header(raw_hex)
    extra = rlp.decode(fields[12])
    edit(extra)
    fields[12] = rlp.encode(extra)
    if reseal is not None:
        unsealed = list(fields)
        unsealed[12] = rlp.encode([*extra[:4], []])
        digest = keccak(rlp.encode(unsealed))
        extra[4] = [extradata.sign_seal(digest, k) for k in reseal]
        fields[12] = rlp.encode(extra)
    return "0x" + rlp.encode(fields).hex()


def _commit_digest(raw_hex: str) -> bytes:
    fields = _header(raw_hex)
    extra = rlp.decode(fields[12])
    fields[12] = rlp.encode([*extra[:4], []])
    digest: bytes = keccak(rlp.encode(fields))
    return digest


def _flip(hex_str: str, position: int) -> str:
    raw = bytearray(bytes.fromhex(hex_str[2:]))
    raw[position] ^= 0x01
    return "0x" + raw.hex()


def _set_seal(raw_hex: str, index: int, seal: bytes) -> str:
    def edit(extra: list[Any]) -> None:
        extra[4][index] = seal
    return _set_extra(raw_hex, edit)


def make_bundles(sealed: Sealed, builder: ProofBuilder) -> dict[str, dict[str, Any]]:
    hashes = [keccak(r) for r in sealed.readings]
    return {
        "gate-out": builder.bundle([
            ref(builder, sealed.encrypted, disclosure=gate_out_disclosure(sealed), subject_reference=CONTAINER),
            ref(builder, sealed.compressed, disclosure=gate_out_disclosure(sealed, "compressed", compression="zlib")),
        ]),
        "after-add": builder.bundle([ref(builder, sealed.after_add)]),
        "first": builder.bundle([ref(builder, sealed.plain_event)]),
        "anchor": builder.bundle([ref(builder, sealed.anchor, anchor=anchor_item(hashes, 2, sealed.readings[2]))]),
    }


def _reverted_receipt(sealed: Sealed, builder: ProofBuilder, bundle: dict[str, Any]) -> None:
    """Point event 0 at the reverted transaction of the same block, with genuine proofs."""
    number, index = sealed.ledger.chaindb.get_transaction_index(sealed.reverted_tx)
    items = builder._items(number)
    key = rlp.encode(index)
    event = bundle["events"][0]
    event.update(
        transactionIndex=index,
        receipt="0x" + items.receipt(index).hex(),
        receiptProof=["0x" + n.hex() for n in trie_proof(items.header.receipt_root, items.nodes, key)],
        transaction="0x" + items.transaction(index).hex(),
        transactionProof=["0x" + n.hex() for n in trie_proof(items.header.transaction_root, items.nodes, key)],
    )


def _outsider_seal(bundle: dict[str, Any]) -> None:
    header = bundle["headers"][0]
    bundle["headers"][0] = _set_seal(header, 1, extradata.sign_seal(_commit_digest(header), OUTSIDER))


def _forged_change(sealed: Sealed, bundle: dict[str, Any], *, reseal_by_one: bool) -> None:
    outsider = OUTSIDER.public_key.to_canonical_address()

    def edit(extra: list[Any]) -> None:
        extra[1] = sorted([*extra[1], outsider])

    colluder = [sealed.keys[min(sealed.keys)]] if reseal_by_one else None
    bundle["validatorChanges"][0] = _set_extra(bundle["validatorChanges"][0], edit, reseal=colluder)


def _not_a_change(builder: ProofBuilder, bundle: dict[str, Any]) -> None:
    bundle["validatorChanges"].insert(0, "0x" + builder._header_rlp(2).hex())


def _other_genesis_validators(bundle: dict[str, Any]) -> None:
    bundle["genesisValidators"] = bundle["genesisValidators"][:3]


CATALOGUE: list[tuple[str, str, Callable[[Sealed, ProofBuilder, dict[str, Any]], None], Reason]] = [
    ("changed payload byte in the log", "gate-out",
     lambda s, b, x: x["events"][0]["log"].update(data=_flip(x["events"][0]["log"]["data"], 100)),
     Reason.LOG_MISMATCH),
    ("changed payload byte in log and receipt", "gate-out",
     lambda s, b, x: x["events"][0].update(receipt=_flip(x["events"][0]["receipt"], 300)),
     Reason.RECEIPT_MISMATCH),
    ("changed plaintext", "gate-out",
     lambda s, b, x: x["events"][0]["disclosure"].update(plaintext=_flip(x["events"][0]["disclosure"]["plaintext"], 3)),
     Reason.PAYLOAD_HASH_MISMATCH),
    ("wrong data key", "gate-out",
     lambda s, b, x: x["events"][0]["disclosure"].update(dataKey="0x" + "11" * 32),
     Reason.DECRYPTION_FAILED),
    ("wrong nonce", "gate-out",
     lambda s, b, x: x["events"][0]["disclosure"].update(nonce="0x" + "00" * 12),
     Reason.DECRYPTION_FAILED),
    ("ciphertext outside the payload", "gate-out",
     lambda s, b, x: x["events"][0]["disclosure"].update(ciphertextOffset=4000),
     Reason.CIPHERTEXT_RANGE),
    ("compression flag dropped", "gate-out",
     lambda s, b, x: x["events"][1]["disclosure"].update(compression="none"),
     Reason.PLAINTEXT_MISMATCH),
    ("swapped log order", "gate-out",
     lambda s, b, x: x["events"][0].update(logIndex=1),
     Reason.LOG_MISMATCH),
    ("swapped logs between events", "gate-out",
     lambda s, b, x: (x["events"][0].update(log=x["events"][1]["log"])),
     Reason.LOG_MISMATCH),
    ("log from another transaction", "gate-out",
     lambda s, b, x: x["events"][0].update(log=b.bundle([ref(b, s.plain_event)])["events"][0]["log"]),
     Reason.LOG_MISMATCH),
    ("log index beyond the receipt", "gate-out",
     lambda s, b, x: x["events"][0].update(logIndex=7),
     Reason.LOG_INDEX),
    ("wrong receipt proof node", "gate-out",
     lambda s, b, x: x["events"][0]["receiptProof"].__setitem__(-1, _flip(x["events"][0]["receiptProof"][-1], 40)),
     Reason.PROOF_NODE_MISMATCH),
    ("truncated receipt proof", "gate-out",
     lambda s, b, x: x["events"][0]["receiptProof"].pop(),
     Reason.PROOF_TRUNCATED),
    ("extra proof node", "gate-out",
     lambda s, b, x: x["events"][0]["receiptProof"].append(x["events"][0]["receiptProof"][0]),
     Reason.PROOF_EXTRA_NODES),
    ("receipt of a failed transaction", "gate-out",
     lambda s, b, x: _reverted_receipt(s, b, x),
     Reason.RECEIPT_FAILED),
    ("transaction replaced", "gate-out",
     lambda s, b, x: x["events"][0].update(transaction=_flip(x["events"][0]["transaction"], 20)),
     Reason.TX_MISMATCH),
    ("header receipts root changed", "gate-out",
     lambda s, b, x: x["headers"].__setitem__(0, _change_receipts_root(x["headers"][0])),
     Reason.SEALS_DO_NOT_MATCH_HEADER),
    ("seal with a bad recovery id", "gate-out",
     lambda s, b, x: x["headers"].__setitem__(0, _set_seal(x["headers"][0], 0, _header_seal(x["headers"][0], 0)[:64] + b"\x07")),
     Reason.SEAL_UNRECOVERABLE),
    ("seal over another digest (signature altered)", "gate-out",
     lambda s, b, x: x["headers"].__setitem__(0, _set_seal(x["headers"][0], 1, extradata.sign_seal(
         keccak(b"another header"), s.keys[min(s.keys)]))),
     Reason.SEAL_NON_VALIDATOR),
    ("duplicated seal", "gate-out",
     lambda s, b, x: x["headers"].__setitem__(0, _set_seal(x["headers"][0], 1, _header_seal(x["headers"][0], 0))),
     Reason.SEAL_DUPLICATE),
    ("too few seals", "gate-out",
     lambda s, b, x: x["headers"].__setitem__(0, _set_extra(x["headers"][0], lambda e: e.__setitem__(4, e[4][:2]))),
     Reason.TOO_FEW_SEALS),
    ("seal by a non-validator", "gate-out",
     lambda s, b, x: _outsider_seal(x),
     Reason.SEAL_NON_VALIDATOR),
    ("forged validator-set change", "gate-out",
     lambda s, b, x: _forged_change(s, x, reseal_by_one=False),
     Reason.SEALS_DO_NOT_MATCH_HEADER),
    ("forged change sealed by one colluding validator", "gate-out",
     lambda s, b, x: _forged_change(s, x, reseal_by_one=True),
     Reason.TOO_FEW_SEALS),
    ("missing change header", "after-add",
     lambda s, b, x: x["validatorChanges"].clear(),
     Reason.MISSING_CHANGE),
    ("change headers reordered", "gate-out",
     lambda s, b, x: x["validatorChanges"].reverse(),
     Reason.CHANGE_ORDER),
    ("a non-change header given as a change", "gate-out",
     lambda s, b, x: _not_a_change(b, x),
     Reason.NOT_A_CHANGE),
    ("proven header missing", "gate-out",
     lambda s, b, x: x["headers"].clear(),
     Reason.MISSING_HEADER),
    ("proven header given twice", "first",
     lambda s, b, x: x["headers"].append(x["headers"][0]),
     Reason.DUPLICATE_HEADER),
    ("wrong chain id", "first",
     lambda s, b, x: x.update(chainId=1),
     Reason.CHAIN_ID_MISMATCH),
    ("bundle made for another genesis", "first",
     lambda s, b, x: _other_genesis_validators(x),
     Reason.GENESIS_MISMATCH),
    ("wrong subject reference", "gate-out",
     lambda s, b, x: x["events"][0].update(subjectReference="MSCU7654321"),
     Reason.SUBJECT_MISMATCH),
    ("anchor proof wrong sibling", "anchor",
     lambda s, b, x: x["events"][0]["anchor"]["merkleProof"].__setitem__(0, "0x" + "22" * 32),
     Reason.ANCHOR_PROOF_MISMATCH),
    ("anchor reading changed", "anchor",
     lambda s, b, x: x["events"][0]["anchor"].update(reading=_flip(x["events"][0]["anchor"]["reading"], 5)),
     Reason.ANCHOR_PROOF_MISMATCH),
    ("not a bundle", "first",
     lambda s, b, x: x.update(format="something-else"),
     Reason.BUNDLE_FORMAT),
]


def _header_seal(raw_hex: str, index: int) -> bytes:
    seal: bytes = rlp.decode(_header(raw_hex)[12])[4][index]
    return seal


def _change_receipts_root(raw_hex: str) -> str:
    fields = _header(raw_hex)
    fields[5] = keccak(b"another receipts root")
    return "0x" + rlp.encode(fields).hex()


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


def test_anchor_rule_matches_contracts_module(sealed: Sealed) -> None:
    hashes = [keccak(r) for r in sealed.readings]
    for i in range(len(hashes)):
        assert proofcheck.anchor_merkle_root(hashes[i], anchors.merkle_proof(hashes, i)) == anchors.merkle_root(hashes)
