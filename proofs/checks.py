"""The named checks of a proof bundle: each proves one thing or raises its :class:`Reason`.

In the order :func:`proofs.verify.verify_bundle` runs them (``docs/proof-format.md`` section 6):

- :func:`check_genesis` — the bundle is for the trusted genesis (chain id, first validators);
- :func:`check_validator_changes` — each change header sealed by the set in force before it;
- :func:`check_headers` — each proven block sealed by the set in force at its height
  (:func:`check_seals`: :mod:`consensus.extradata`'s commit digest, seal recovery and quorum,
  with a reason for every way a seal can fail);
- per event: :func:`check_receipt` (Merkle-Patricia proof, status, log), :func:`check_transaction`
  (proof, signer, chain id), then by the log's kind :func:`decode_cargo_log` with
  :func:`check_subject` and :func:`check_disclosure`, or :func:`check_anchor`.

Pure: no files, clock or network.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from Crypto.Cipher import AES
from eth_hash.auto import keccak

from consensus import extradata
from proofs.bundle import (
    LAYOUT_ENVELOPE,
    Bundle,
    Disclosure,
    EventClaim,
    Log,
    SealedHeader,
    Trust,
    parse_anchor,
    parse_disclosure,
    rlp_int,
)
from proofs.errors import ProofError, Reason
from proofs.trie import verify_mpt_proof

#: topic0 of a cargo event log: keccak256("CargoEvent(bytes32,uint256,uint256)").
CARGO_EVENT_TOPIC = keccak(b"CargoEvent(bytes32,uint256,uint256)")
#: topic0 of an anchor log.
ANCHORED_TOPIC = keccak(b"Anchored(uint256,uint256,uint8,bytes32,uint256,uint256,uint256)")
#: Bounds that keep a hostile bundle from costing unbounded work.
MAX_MERKLE_DEPTH = 64
MAX_PLAINTEXT = 1 << 20


# -- genesis and the validator chain ------------------------------------------------------------
def check_genesis(bundle: Bundle, trust: Trust) -> None:
    """The bundle was made for the network of ``genesis.json``: its chain id and validators."""
    if bundle.chain_id != trust.chain_id:
        raise ProofError(
            Reason.CHAIN_ID_MISMATCH,
            f"bundle is for chain {bundle.chain_id}, genesis.json is chain {trust.chain_id}",
        )
    if bundle.genesis_validators != trust.validators:
        raise ProofError(
            Reason.GENESIS_MISMATCH,
            "the bundle was made for a network whose genesis validators differ from genesis.json's",
        )


@dataclass(frozen=True)
class ValidatorSets:
    """The validator sets followed from genesis: (first block, set) of each, ascending."""

    #: Block numbers from which each set is in force for sealing the *next* blocks: 0 (genesis)
    #: and each change block.
    numbers: tuple[int, ...]
    sets: tuple[tuple[bytes, ...], ...]

    def sealing(self, number: int) -> tuple[bytes, ...]:
        """The set that must seal block ``number`` (the last change below it)."""
        return self.sets[bisect.bisect_left(self.numbers, number) - 1]

    @property
    def changes(self) -> tuple[tuple[int, tuple[bytes, ...]], ...]:
        """(block number, new validator list) of each change followed."""
        return tuple(zip(self.numbers[1:], self.sets[1:], strict=True))


def _signer(digest: bytes, seal: bytes) -> bytes | None:
    try:
        return extradata.recover_signer(digest, seal)
    except extradata.InvalidSeal:
        return None


def check_seals(header: SealedHeader, validators: Sequence[bytes], where: str) -> tuple[bytes, ...]:
    """Check a quorum of distinct ``validators`` sealed ``header``; return the signers.

    Raises
    ------
    ProofError
        ``seals-do-not-match-header`` when no seal recovers to a validator (the header was
        changed after sealing), ``missing-change`` when a signer is outside ``validators`` but
        in the header's own list (a validator-set change is missing from the bundle),
        ``seal-non-validator``, ``seal-duplicate``, ``seal-unrecoverable``, ``too-few-seals``.
    """
    allowed = set(validators)
    digest = header.commit_digest
    recovered = [_signer(digest, seal) for seal in header.seals]
    if header.seals and not any(a in allowed for a in recovered):
        raise ProofError(
            Reason.SEALS_DO_NOT_MATCH_HEADER,
            f"{where}: none of its {len(header.seals)} commit seals recovers to a validator: "
            "the header was altered after sealing, or the seals belong to another header",
        )
    signers: list[bytes] = []
    for position, signer in enumerate(recovered):
        if signer is None:
            raise ProofError(
                Reason.SEAL_UNRECOVERABLE, f"{where}: commit seal {position} does not recover"
            )
        if signer not in allowed:
            if signer in header.validators:
                raise ProofError(
                    Reason.MISSING_CHANGE,
                    f"{where}: commit seal {position} is by 0x{signer.hex()}, not in the set in "
                    "force but in the header's own list: a validator-set change header is "
                    "missing from the bundle",
                )
            raise ProofError(
                Reason.SEAL_NON_VALIDATOR,
                f"{where}: commit seal {position} is by 0x{signer.hex()}, not a validator",
            )
        if signer in signers:
            raise ProofError(
                Reason.SEAL_DUPLICATE, f"{where}: validator 0x{signer.hex()} sealed twice"
            )
        signers.append(signer)
    needed = extradata.quorum(len(validators))
    if len(signers) < needed:
        raise ProofError(
            Reason.TOO_FEW_SEALS,
            f"{where}: {len(signers)} commit seals, {needed} of {len(validators)} needed",
        )
    return tuple(signers)


def check_validator_changes(
    changes: Sequence[SealedHeader], genesis_validators: tuple[bytes, ...]
) -> ValidatorSets:
    """Follow the validator-set changes from genesis (section 4): strictly ascending, each
    sealed by a quorum of the set in force before it, each listing a different set."""
    for before, after in zip([0, *(h.number for h in changes)], changes, strict=False):
        if after.number <= before:
            raise ProofError(
                Reason.CHANGE_ORDER,
                f"validator-set change block #{after.number} does not come after block #{before}",
            )
    in_force = genesis_validators
    numbers, sets = [0], [in_force]
    for header in changes:
        where = f"validator-set change block #{header.number}"
        check_seals(header, in_force, where)
        if header.validators == in_force:
            raise ProofError(Reason.NOT_A_CHANGE, f"{where}: its list equals the set in force")
        in_force = header.validators
        numbers.append(header.number)
        sets.append(in_force)
    return ValidatorSets(tuple(numbers), tuple(sets))


@dataclass(frozen=True)
class ProvenHeader:
    """A proven block's header, the set that had to seal it, and who did."""

    header: SealedHeader
    validators: tuple[bytes, ...]
    #: Validators whose commit seals prove the block, in seal order.
    signers: tuple[bytes, ...]


def check_headers(headers: Sequence[SealedHeader], sets: ValidatorSets) -> dict[int, ProvenHeader]:
    """Each proven block once, not genesis, sealed by the set in force at its height; and no
    validator-set change beyond the proven blocks. Returns the headers by block number."""
    proven: dict[int, ProvenHeader] = {}
    for header in headers:
        where = f"block #{header.number}"
        if header.number in proven:
            raise ProofError(Reason.DUPLICATE_HEADER, f"{where} is given twice")
        if header.number == 0:
            raise ProofError(Reason.HEADER_FORMAT, "the genesis block holds no events")
        validators = sets.sealing(header.number)
        proven[header.number] = ProvenHeader(
            header, validators, check_seals(header, validators, where)
        )
    if proven and sets.numbers[-1] >= max(proven):
        raise ProofError(Reason.CHANGE_ORDER, "a validator-set change lies beyond the proven blocks")
    return proven


# -- receipts, logs, transactions ---------------------------------------------------------------
def check_receipt(header: SealedHeader, claim: EventClaim) -> Log:
    """The receipt is proven under the header's receipts root, reports success, and holds the
    claimed log at the claimed position; returns the log."""
    where = claim.where
    key = rlp.encode(claim.transaction_index)
    proven = verify_mpt_proof(header.receipts_root, key, claim.receipt_proof, f"{where} receipt proof")
    if proven != claim.receipt:
        raise ProofError(Reason.RECEIPT_MISMATCH, f"{where}: the receipt differs from the proven one")
    succeeded, logs = decode_receipt(claim.receipt, where)
    if not succeeded:
        raise ProofError(Reason.RECEIPT_FAILED, f"{where}: the transaction failed (status 0)")
    if claim.log_index >= len(logs):
        raise ProofError(Reason.LOG_INDEX, f"{where}: the receipt has {len(logs)} logs")
    if logs[claim.log_index] != claim.log:
        raise ProofError(
            Reason.LOG_MISMATCH, f"{where}: the log differs from log {claim.log_index} of the receipt"
        )
    return claim.log


def check_transaction(header: SealedHeader, claim: EventClaim, chain_id: int) -> bytes:
    """The transaction is proven under the header's transactions root and signed for
    ``chain_id``; returns its sender."""
    where = claim.where
    key = rlp.encode(claim.transaction_index)
    proven = verify_mpt_proof(
        header.transactions_root, key, claim.transaction_proof, f"{where} transaction proof"
    )
    if proven != claim.transaction:
        raise ProofError(Reason.TX_MISMATCH, f"{where}: the transaction differs from the proven one")
    signed_for, sender = decode_transaction(claim.transaction, where)
    if signed_for != chain_id:
        raise ProofError(Reason.TX_CHAIN_ID, f"{where}: transaction is for chain {signed_for}")
    return sender


def decode_receipt(raw: bytes, where: str) -> tuple[bool, tuple[Log, ...]]:
    """Decode a receipt as stored in the receipts trie: (succeeded, logs)."""
    try:
        body = raw[1:] if raw[0] < 0x80 else raw  # EIP-2718 typed: type byte, then RLP
        items = rlp.decode(body)
        status, _cumulative, bloom, logs = items
        if not isinstance(status, bytes) or len(bloom) != 256 or not isinstance(logs, list):
            raise ValueError("bad fields")
        decoded = []
        for entry in logs:
            address, topics, data = entry
            if len(address) != 20 or not all(len(t) == 32 for t in topics):
                raise ValueError("bad log")
            decoded.append(Log(address, tuple(topics), data))
    except Exception as exc:
        raise ProofError(Reason.RECEIPT_FORMAT, f"{where}: receipt does not decode") from exc
    return status == b"\x01", tuple(decoded)


def decode_transaction(raw: bytes, where: str) -> tuple[int, bytes]:
    """Decode a signed transaction as stored in the transactions trie: (chain id, sender).

    Types 1 and 2 (EIP-2930, EIP-1559) and EIP-155 legacy transactions; a legacy transaction
    without a chain id is refused, because it does not bind the event to this network.
    """
    try:
        if raw[0] >= 0xC0:
            fields = rlp.decode(raw)
            v, r, s = (rlp_int(x) for x in fields[6:9])
            if v < 35:
                raise ProofError(
                    Reason.TX_CHAIN_ID, f"{where}: legacy transaction without a chain id"
                )
            chain_id, parity = (v - 35) // 2, (v - 35) % 2
            digest = keccak(rlp.encode([*fields[:6], chain_id, 0, 0]))
        elif raw[0] in (1, 2):
            fields = rlp.decode(raw[1:])
            unsigned = 8 if raw[0] == 1 else 9
            if len(fields) != unsigned + 3:
                raise ValueError("field count")
            chain_id = rlp_int(fields[0])
            parity, r, s = (rlp_int(x) for x in fields[unsigned:])
            digest = keccak(raw[:1] + rlp.encode(fields[:unsigned]))
        else:
            raise ValueError(f"unsupported transaction type {raw[0]}")
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity])
    except ProofError:
        raise
    except Exception as exc:
        raise ProofError(Reason.TX_FORMAT, f"{where}: transaction does not decode") from exc
    try:
        sender = extradata.recover_signer(digest, signature)
    except extradata.InvalidSeal as exc:
        raise ProofError(
            Reason.TX_FORMAT, f"{where}: transaction signature does not recover"
        ) from exc
    return chain_id, sender


# -- cargo events, disclosure, anchors ---------------------------------------------------------
@dataclass(frozen=True)
class CargoFacts:
    """The fields of a cargo event log (``contracts/cargo.py`` layout)."""

    event_id: int
    publisher: int
    subject: bytes
    event_type: int
    classifier: int
    event_time: int
    location: str
    retracts: int
    payload_hash: bytes
    #: Encrypted payload (length L, without the class padding).
    payload: bytes


def decode_cargo_log(log: Log, where: str) -> CargoFacts:
    """Decode a cargo event log; ``cargo-format`` if it is not one."""
    data = log.data
    if len(log.topics) != 4 or len(data) < 87:
        raise ProofError(Reason.CARGO_FORMAT, f"{where}: not a cargo event log")
    length = int.from_bytes(data[21:23], "big")
    if 87 + length > len(data) or data[23:55] != log.topics[1]:
        raise ProofError(Reason.CARGO_FORMAT, f"{where}: cargo event data is inconsistent")
    try:
        location = data[8:13].rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProofError(Reason.CARGO_FORMAT, f"{where}: location is not ASCII") from exc
    return CargoFacts(
        event_id=int.from_bytes(log.topics[3], "big"),
        publisher=int.from_bytes(log.topics[2], "big"),
        subject=data[23:55],
        event_type=int.from_bytes(data[0:2], "big"),
        classifier=data[2],
        event_time=int.from_bytes(data[3:8], "big"),
        location=location,
        retracts=int.from_bytes(data[13:21], "big"),
        payload_hash=data[55:87],
        payload=data[87 : 87 + length],
    )


@dataclass(frozen=True)
class SealedContent:
    """Where a disclosed payload's ciphertext lies and how to open it (section 5.4)."""

    #: Ciphertext followed by its 16-byte GCM tag.
    sealed: bytes
    #: GCM nonce.
    nonce: bytes
    #: GCM associated data.
    aad: bytes
    #: Whether the decrypted body is a zlib stream to inflate.
    compressed: bool


def envelope_content(payload: bytes, where: str) -> SealedContent:
    """The content of a ``portledger-envelope/1`` payload (the gateway's envelope).

    Layout (``gateway/confidential/envelope.py``): version (1 byte, 1), flags (1: bit 0 a reference wrap
    follows the reader wraps, bit 1 the body is compressed, other bits 0), key version (4),
    reader count ``n`` (1), nonce (12), ephemeral key (32, only if ``n > 0``), reader ids
    (``4n``), then ``1 + n + bit0`` wraps of 48 bytes; the content (ciphertext and tag) is the
    rest, encrypted with every byte before it as associated data.
    """
    if len(payload) < 19 or payload[0] != 1 or payload[1] & ~0x03:
        raise ProofError(
            Reason.ENVELOPE_FORMAT,
            f"{where}: the payload is not a portledger-envelope/1 (version or flags)",
        )
    flags, readers = payload[1], payload[6]
    start = 19 + (32 if readers else 0) + 4 * readers + 48 * (1 + readers + (flags & 1))
    if len(payload) < start + 16:
        raise ProofError(
            Reason.ENVELOPE_FORMAT,
            f"{where}: the {len(payload)}-byte envelope ends before its content "
            f"(content would start at {start})",
        )
    return SealedContent(payload[start:], payload[7:19], payload[:start], bool(flags & 2))


def _raw_content(payload: bytes, disclosure: Disclosure, where: str) -> SealedContent:
    offset = disclosure.ciphertext_offset
    length = disclosure.ciphertext_length
    if length is None:
        length = max(len(payload) - offset, 0)
    if length < 16 or offset + length > len(payload):
        raise ProofError(
            Reason.CIPHERTEXT_RANGE,
            f"{where}: ciphertext [{offset}, {offset + length}) is outside the "
            f"{len(payload)}-byte payload",
        )
    return SealedContent(
        payload[offset : offset + length], disclosure.nonce, disclosure.aad, disclosure.compressed
    )


def check_disclosure(facts: CargoFacts, value: Any, where: str) -> bytes:
    """Check a disclosed payload against the log; return the plaintext.

    ``keccak256(plaintext)`` must equal the log's payload hash. With a ``dataKey``, the sealed
    content must decrypt under AES-256-GCM, then inflate if compressed, to exactly the
    plaintext. Where the content lies depends on ``layout``: ``"raw"`` (the default) takes
    ``payload[ciphertextOffset : ciphertextOffset + ciphertextLength]`` with the given
    ``nonce``, ``aad`` and ``compression``; ``"portledger-envelope/1"`` parses the gateway's
    envelope (:func:`envelope_content`) and must carry none of those fields.
    """
    disclosure = parse_disclosure(value, where)
    plaintext = disclosure.plaintext
    if keccak(plaintext) != facts.payload_hash:
        raise ProofError(
            Reason.PAYLOAD_HASH_MISMATCH,
            f"{where}: keccak256 of the disclosed plaintext is not the payload hash in the log",
        )
    key = disclosure.data_key
    if key is None:
        return plaintext
    if disclosure.layout == LAYOUT_ENVELOPE:
        content = envelope_content(facts.payload, where)
    else:
        content = _raw_content(facts.payload, disclosure, where)
    sealed = content.sealed
    try:
        cipher = AES.new(key, AES.MODE_GCM, nonce=content.nonce)
        cipher.update(content.aad)
        opened: bytes = cipher.decrypt_and_verify(sealed[:-16], sealed[-16:])
        if content.compressed:
            inflater = zlib.decompressobj()
            opened = inflater.decompress(opened, MAX_PLAINTEXT)
            if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
                raise ValueError("not one zlib stream of at most 1 MiB")
    except (ValueError, zlib.error) as exc:
        raise ProofError(
            Reason.DECRYPTION_FAILED,
            f"{where}: the ciphertext in the log does not decrypt under the disclosed key "
            f"({exc})",
        ) from exc
    if opened != plaintext:
        raise ProofError(
            Reason.PLAINTEXT_MISMATCH,
            f"{where}: the ciphertext decrypts to a different plaintext than disclosed",
        )
    return plaintext


def subject_key(reference: str) -> bytes:
    """Keccak-256 of a reference upper-cased, with spaces, dashes and slashes removed."""
    normalised = "".join(c for c in reference.upper() if c not in " -/")
    digest: bytes = keccak(normalised.encode())
    return digest




def check_subject(facts: CargoFacts, reference: Any, where: str) -> None:
    """A stated subject reference (optional) hashes to the event's subject key."""
    if reference is not None and (
        not isinstance(reference, str) or subject_key(reference) != facts.subject
    ):
        raise ProofError(
            Reason.SUBJECT_MISMATCH,
            f"{where}: reference {reference!r} does not hash to the event's subject key",
        )


def anchor_merkle_root(reading_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Root of a sorted-pair Merkle proof (``contracts/anchors.py``'s rule)."""
    node: bytes = keccak(b"\x00" + reading_hash)
    for sibling in proof:
        node = keccak(b"\x01" + min(node, sibling) + max(node, sibling))
    return node


def check_anchor(log: Log, value: Any, where: str) -> bytes | None:
    """An ``Anchored`` log, and if an anchor object is given, its reading is under the anchored
    root (sorted-pair Merkle proof); returns the reading hash proven, if any."""
    if len(log.topics) != 4 or len(log.data) != 128:
        raise ProofError(Reason.ANCHOR_FORMAT, f"{where}: not an Anchored log")
    anchor = parse_anchor(value, where)
    if anchor is None:
        return None
    if len(anchor.merkle_proof) > MAX_MERKLE_DEPTH:
        raise ProofError(Reason.ANCHOR_FORMAT, f"{where}: Merkle proof too deep")
    if anchor_merkle_root(anchor.reading_hash, anchor.merkle_proof) != log.data[:32]:
        raise ProofError(
            Reason.ANCHOR_PROOF_MISMATCH,
            f"{where}: the reading's Merkle proof does not lead to the anchored root",
        )
    return anchor.reading_hash
