"""Disclosures of gateway envelopes (``layout: portledger-envelope/1``) verify with the project's
verifier and the independent one, and both refuse the same tamperings with the same reason.

The payloads are sealed by the gateway's own :func:`gateway.confidential.envelope.seal` (owner wrap,
named readers, reference wrap, compressed and uncompressed bodies) and recorded on a real sealed
chain (``tests/support/proof_chain.py``); the data key disclosed is the one :attr:`Sealed.data_key`
kept, or the one the owner unwraps again with :func:`gateway.confidential.envelope.data_key_of`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_utils import keccak

from contracts.cargo import subject_key
from devnet.sealedchain import ChainBuilder
from gateway.confidential import envelope as confidential
from node.genesis import dev_x25519_public
from node.proofs import EventRef, ProofBuilder
from proofs.disclosure import DisclosureError, disclosure
from proofs.errors import ProofError, Reason
from proofs.verify import verify_bundle
from tests.support import independent_verifier
from tests.support.proof_chain import event

BOX = "MSCU1234565"
T0 = 1_767_225_600
ENVELOPE = "portledger-envelope/1"


@dataclass
class EnvelopeChain:
    """A chain whose one block holds gateway envelopes and a few payloads that are not."""

    builder: ProofBuilder
    genesis: dict[str, Any]
    #: Name -> (reference to the event, plaintext, data key).
    events: dict[str, tuple[EventRef, bytes, bytes]]


def _seal(plaintext: bytes, *, readers: int = 0, reference: bool = False) -> confidential.Sealed:
    return confidential.seal(
        plaintext, subject=subject_key(BOX), owner_secret=OWNER_SECRET, key_version=3,
        readers={10 + i: dev_x25519_public(f"org:{i}") for i in range(readers)},
        reference=BOX if reference else None,
    )  # fmt: skip


OWNER_SECRET = keccak(b"envelope-disclosure-test-owner")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvelopeChain]:
    b = ChainBuilder(tmp_path_factory.mktemp("envelope-chain"))
    gate_out = json.dumps({"container": BOX, "gate": "OUT", "note": "n" * 200}).encode()
    random_text = os.urandom(120)  # does not compress: the body is stored as is
    other = b'{"container": "MSCU1234565", "gate": "IN"}'
    compressed = _seal(gate_out, readers=2, reference=True)
    plain = _seal(random_text)
    lying = _seal(other)  # its payload hash will claim gate_out instead
    assert confidential.envelope_info(compressed.envelope).compressed
    assert not confidential.envelope_info(plain.envelope).compressed
    short = bytes([1, 0, 0, 0, 0, 3, 1]) + bytes(12) + bytes(40)  # one reader, wraps missing
    bad_flags = bytes([1, 4, 0, 0, 0, 0, 0]) + bytes(12) + bytes(80)
    inputs = [
        ("compressed", compressed.envelope, gate_out, compressed.data_key),
        ("plain", plain.envelope, random_text, plain.data_key),
        ("lying", lying.envelope, gate_out, lying.data_key),
        ("raw-payload", b"plain-1", b"plain-1", bytes(32)),
        ("short", short, b"short", bytes(32)),
        ("bad-flags", bad_flags, b"flags", bytes(32)),
    ]
    result = b.seal([b.cargo(1, [
        event(BOX, "TERMINAL.GTOT", T0 + i, payload, keccak(plaintext))
        for i, (_, payload, plaintext, _) in enumerate(inputs)
    ])])  # fmt: skip
    assert result.receipts[0].state_root == b"\x01"
    builder = ProofBuilder(b.ledger)
    tx = result.block.transactions[0].hash
    events = {
        name: (builder.ref_for_transaction(tx, i), plaintext, key)
        for i, (name, _, plaintext, key) in enumerate(inputs)
    }
    yield EnvelopeChain(builder, json.loads(b.genesis_path.read_text()), events)
    b.ledger.db.close()


def bundle_of(chain: EnvelopeChain, name: str, *, with_key: bool = True) -> dict[str, Any]:
    ref, plaintext, key = chain.events[name]
    shown = disclosure(plaintext, data_key=key if with_key else None, layout=ENVELOPE)
    return chain.builder.bundle([replace(ref, disclosure=shown, subject_reference=BOX)])


def both_refuse(bundle: dict[str, Any], genesis: dict[str, Any]) -> str:
    """The reason both verifiers give (they must agree)."""
    with pytest.raises(ProofError) as info:
        verify_bundle(bundle, genesis)
    assert independent_verifier.check(bundle, genesis) == info.value.reason.value
    return info.value.reason.value


@pytest.mark.parametrize("name", ["compressed", "plain"])
def test_envelope_disclosures_verify(chain: EnvelopeChain, name: str) -> None:
    bundle = bundle_of(chain, name)
    assert bundle["events"][0]["disclosure"].keys() == {"plaintext", "dataKey", "layout"}
    verified = verify_bundle(bundle, chain.genesis)
    assert verified.events[0].plaintext == chain.events[name][1]
    assert "payload disclosed" in verified.describe()
    assert independent_verifier.check(bundle, chain.genesis) is None


def test_the_owner_unwraps_the_same_data_key(chain: EnvelopeChain) -> None:
    ref, plaintext, key = chain.events["compressed"]
    log_data = bytes.fromhex(bundle_of(chain, "compressed")["events"][0]["log"]["data"][2:])
    envelope = log_data[87 : 87 + int.from_bytes(log_data[21:23], "big")]
    assert confidential.data_key_of(envelope, subject=subject_key(BOX), owner_secret=OWNER_SECRET) == key
    assert confidential.open_with_data_key(envelope, key) == plaintext


def test_plaintext_only_envelope_disclosure_verifies(chain: EnvelopeChain) -> None:
    bundle = bundle_of(chain, "compressed", with_key=False)
    assert verify_bundle(bundle, chain.genesis).events[0].plaintext == chain.events["compressed"][1]
    assert independent_verifier.check(bundle, chain.genesis) is None


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def tamper(d: dict[str, Any]) -> None:
        d[field] = value
    return tamper


TAMPERINGS: list[tuple[str, str, Callable[[dict[str, Any]], None], Reason]] = [
    ("another record's data key", "compressed", _set("dataKey", "0x" + "11" * 32),
     Reason.DECRYPTION_FAILED),
    ("a nonce beside the envelope layout", "compressed", _set("nonce", "0x" + "00" * 12),
     Reason.BUNDLE_FORMAT),
    ("an offset beside the envelope layout", "plain", _set("ciphertextOffset", 0),
     Reason.BUNDLE_FORMAT),
    ("an unknown layout", "plain", _set("layout", "portledger-envelope/2"), Reason.BUNDLE_FORMAT),
    ("the raw layout on an envelope (no nonce)", "plain", _set("layout", "raw"),
     Reason.BUNDLE_FORMAT),
    ("the raw layout with the envelope's nonce but no aad", "plain",
     lambda d: d.update(layout="raw", nonce="0x" + "00" * 12), Reason.DECRYPTION_FAILED),
    ("a plaintext that does not hash to the payload hash", "plain",
     _set("plaintext", "0x" + b"something else".hex()), Reason.PAYLOAD_HASH_MISMATCH),
]


@pytest.mark.parametrize(("what", "name", "tamper", "reason"), TAMPERINGS,
                         ids=[t[0] for t in TAMPERINGS])
def test_tampered_envelope_disclosures_fail_alike(
    chain: EnvelopeChain, what: str, name: str, tamper: Callable[[dict[str, Any]], None],
    reason: Reason,
) -> None:
    bundle = copy.deepcopy(bundle_of(chain, name))
    tamper(bundle["events"][0]["disclosure"])
    assert both_refuse(bundle, chain.genesis) == reason.value, what


@pytest.mark.parametrize(("name", "reason"), [
    ("lying", Reason.PLAINTEXT_MISMATCH),  # hash of one text, envelope of another
    ("raw-payload", Reason.ENVELOPE_FORMAT),  # 7 bytes: no envelope header
    ("short", Reason.ENVELOPE_FORMAT),  # ends before its wraps and content
    ("bad-flags", Reason.ENVELOPE_FORMAT),  # a flag bit this version does not define
])
def test_payloads_that_are_not_the_disclosed_envelope_fail_alike(
    chain: EnvelopeChain, name: str, reason: Reason
) -> None:
    assert both_refuse(bundle_of(chain, name), chain.genesis) == reason.value


def test_builder_refuses_raw_fields_with_the_envelope_layout() -> None:
    with pytest.raises(DisclosureError):
        disclosure(b"x", data_key=bytes(32), nonce=bytes(12), layout=ENVELOPE)
    with pytest.raises(DisclosureError):
        disclosure(b"x", layout="zip")
