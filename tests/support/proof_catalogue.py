"""The tampering catalogue of proof bundles: base bundles and one tampering per reason code.

Shared by ``tests/proofs/test_bundles.py`` (the project's verifier names each reason) and
``tests/proofs/test_independent.py`` (so does the verifier written from the format page), over
the sealed chain of :mod:`tests.support.proof_chain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import rlp
from eth_keys import keys
from eth_utils import keccak

from consensus import extradata
from node.proofs import EventRef, ProofBuilder, trie_proof
from proofs.disclosure import anchor_item, disclosure
from proofs.errors import Reason
from tests.support.proof_chain import CONTAINER, Sealed

OUTSIDER = keys.PrivateKey(b"\x42" * 32)


def ref(builder: ProofBuilder, at: tuple[bytes, int], **extra: Any) -> EventRef:
    return replace(builder.ref_for_transaction(*at), **extra)


def gate_out_disclosure(sealed: Sealed, name: str = "gate-out", **extra: Any) -> dict[str, Any]:
    s = sealed.secrets[name]
    return disclosure(s["plaintext"], data_key=s["key"], nonce=s["nonce"], **extra)


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
    ("a portledger-proof/1 bundle (chain format v1)", "first",
     lambda s, b, x: x.update(format="portledger-proof/1"),
     Reason.OLD_FORMAT),
    ("a header of chain format v1 (the round as 4 bytes)", "first",
     lambda s, b, x: x["headers"].__setitem__(
         0, _set_extra(x["headers"][0], lambda e: e.__setitem__(3, e[3].rjust(4, b"\x00")))),
     Reason.OLD_FORMAT),
]


def _header_seal(raw_hex: str, index: int) -> bytes:
    seal: bytes = rlp.decode(_header(raw_hex)[12])[4][index]
    return seal


def _change_receipts_root(raw_hex: str) -> str:
    fields = _header(raw_hex)
    fields[5] = keccak(b"another receipts root")
    return "0x" + rlp.encode(fields).hex()
