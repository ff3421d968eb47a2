"""Offline verification of PortLedger proof bundles: what a bank embeds.

A *proof bundle* (``docs/proof-format.md``) is one JSON document proving that cargo events
(or anchored telemetry readings) are recorded on the PortLedger chain, final under QBFT. A
verifier holding only the network's ``genesis.json`` checks it without any network access and
without trusting whoever produced the bundle:

1. **Trust root.** ``genesis.json`` gives the chain id, the first validator set (its
   ``extraData``) and the system contracts' addresses.
2. **Validator-set changes.** The bundle carries the sealed header of every block whose
   validator list differs from its parent's, in ascending order, up to the proven blocks. Each
   must carry commit seals from a quorum of distinct members of the set in force before it
   (the previous change's list, or genesis's); its own list then becomes the set in force.
3. **Proven blocks.** Each block holding a proven event is a sealed header whose seals must
   come from a quorum of the set in force at its height (the last change below it).
4. **Inclusion.** Each event's receipt is proven under the header's ``receiptsRoot`` and its
   transaction under ``transactionsRoot`` by Merkle-Patricia proofs (checked here, node by
   node); the receipt must report success and hold the event's log at the stated position;
   the transaction must commit to the genesis chain id (its signer is reported).
5. **Meaning.** A cargo event log is decoded (subject key, type, time, location, payload hash,
   encrypted payload). Optionally the bundle *discloses* the plaintext payload — its
   Keccak-256 must equal the payload hash in the log — and the AES-256-GCM data key, with which
   the ciphertext inside the log decrypts to that same plaintext. An anchored telemetry reading
   is proven by a sorted-pair Merkle proof up to the root in an ``Anchored`` log.

Every failure raises :class:`ProofError` with a stable :class:`Reason` code and a message
naming the block, event and element at fault. Dependencies: ``rlp``, ``eth_hash`` (Keccak),
``coincurve`` (secp256k1 recovery), ``pycryptodome`` (AES-GCM, only for disclosures) and the
standard library. Nothing from py-evm or the node.

Pure like the rest of :mod:`consensus`: no files, clock or network. A bank embeds it as
``verify_bundle(json.load(bundle_file), json.load(genesis_file))``; the ``portledger
verify-proof`` command does exactly that.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import coincurve
import rlp
from eth_hash.auto import keccak

#: The format identifier every bundle carries.
FORMAT = "portledger-proof/1"
#: topic0 of a cargo event log: keccak256("CargoEvent(bytes32,uint256,uint256)").
CARGO_EVENT_TOPIC = keccak(b"CargoEvent(bytes32,uint256,uint256)")
#: topic0 of an anchor log.
ANCHORED_TOPIC = keccak(b"Anchored(uint256,uint256,uint8,bytes32,uint256,uint256,uint256)")
#: System contract addresses used when genesis.json does not name them.
DEFAULT_CONTRACTS = {
    "CargoLedger": bytes.fromhex("0000000000000000000000000000000000001001"),
    "Anchors": bytes.fromhex("0000000000000000000000000000000000001004"),
}
#: Header fields (Prague order) this module reads.
H_TX_ROOT, H_RECEIPT_ROOT, H_NUMBER, H_TIMESTAMP, H_EXTRA = 4, 5, 8, 11, 12
#: Bounds that keep a hostile bundle from costing unbounded work.
MAX_PROOF_NODES = 64
MAX_MERKLE_DEPTH = 64
MAX_PLAINTEXT = 1 << 20
#: Disclosure layouts (``docs/proof-format.md`` section 5.4): explicit ranges, or the gateway's
#: envelope (``gateway/confidential.py``), which the verifier parses itself.
LAYOUT_RAW = "raw"
LAYOUT_ENVELOPE = "portledger-envelope/1"
#: Fields a ``raw`` disclosure may carry that an envelope disclosure must not (the envelope
#: says where its content, nonce and associated data are).
_RAW_ONLY = ("nonce", "ciphertextOffset", "ciphertextLength", "compression", "aad")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

#: Cargo event families and codes (``contracts/cargo.py`` is the authority; a test keeps these
#: equal). Type = family << 8 | (position + 1).
EVENT_FAMILIES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("SHIPMENT", ("RECE", "DRFT", "PENA", "PENU", "PENC", "CONF", "REJE", "APPR", "ISSU",
                     "SURR", "SUBM", "VOID", "REQS", "CMPL", "HOLD", "RELS", "CANC")),
    2: ("TRANSPORT", ("ARRI", "DEPA")),
    3: ("TERMINAL", ("LOAD", "DISC", "GTIN", "GTOT", "AVPU")),
    4: ("EQUIPMENT", ("STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD")),
    5: ("REEFER", ("MEAS", "ADJU")),
    6: ("LAND", ("PICK_UP", "HAND_OVER", "DELIVERY", "POSITION_ANCHOR")),
    7: ("WAREHOUSE", ("RECEIPT", "RELEASE")),
    8: ("AIR", ("BKD", "RCS", "FOH", "PRE", "MAN", "DEP", "TFD", "RCT", "ARR", "RCF", "NFD",
                "AWR", "AWD", "CCD", "DLV", "DDL", "DIS")),
    9: ("CUSTOMS", ("CUSR", "CUSH", "CUSI", "CUSX")),
}
#: Words for the summary line, for the events a bank most often lends against.
EVENT_WORDS = {
    "TERMINAL.LOAD": "loaded", "TERMINAL.DISC": "discharged", "TERMINAL.GTIN": "gated in",
    "TERMINAL.GTOT": "gated out", "TERMINAL.AVPU": "available for pick-up",
    "TRANSPORT.ARRI": "arrived", "TRANSPORT.DEPA": "departed",
    "CUSTOMS.CUSR": "released by customs", "CUSTOMS.CUSH": "held by customs",
}
CLASSIFIERS = {1: "planned", 2: "estimated", 3: "actual"}


class Reason(StrEnum):
    """Why a bundle failed; the value is the stable code printed by the CLI."""

    BUNDLE_FORMAT = "bundle-format"
    GENESIS_FORMAT = "genesis-format"
    CHAIN_ID_MISMATCH = "chain-id-mismatch"
    GENESIS_MISMATCH = "genesis-mismatch"
    HEADER_FORMAT = "header-format"
    DUPLICATE_HEADER = "duplicate-header"
    MISSING_HEADER = "missing-header"
    CHANGE_ORDER = "change-order"
    NOT_A_CHANGE = "not-a-change"
    MISSING_CHANGE = "missing-change"
    SEAL_UNRECOVERABLE = "seal-unrecoverable"
    SEAL_DUPLICATE = "seal-duplicate"
    SEAL_NON_VALIDATOR = "seal-non-validator"
    SEALS_DO_NOT_MATCH_HEADER = "seals-do-not-match-header"
    TOO_FEW_SEALS = "too-few-seals"
    PROOF_NODE_MISMATCH = "proof-node-mismatch"
    PROOF_TRUNCATED = "proof-truncated"
    PROOF_EXTRA_NODES = "proof-extra-nodes"
    PROOF_KEY_ABSENT = "proof-key-absent"
    RECEIPT_MISMATCH = "receipt-mismatch"
    RECEIPT_FORMAT = "receipt-format"
    RECEIPT_FAILED = "receipt-failed"
    LOG_INDEX = "log-index"
    LOG_MISMATCH = "log-mismatch"
    TX_MISMATCH = "transaction-mismatch"
    TX_FORMAT = "transaction-format"
    TX_CHAIN_ID = "transaction-chain-id"
    CARGO_FORMAT = "cargo-format"
    SUBJECT_MISMATCH = "subject-mismatch"
    PAYLOAD_HASH_MISMATCH = "payload-hash-mismatch"
    CIPHERTEXT_RANGE = "ciphertext-range"
    DECRYPTION_FAILED = "decryption-failed"
    PLAINTEXT_MISMATCH = "plaintext-mismatch"
    ENVELOPE_FORMAT = "envelope-format"
    ANCHOR_FORMAT = "anchor-format"
    ANCHOR_PROOF_MISMATCH = "anchor-proof-mismatch"
    UNSUPPORTED_LOG = "unsupported-log"


class ProofError(Exception):
    """A bundle does not prove what it claims.

    Parameters
    ----------
    reason : Reason
        The stable code of the first failed check.
    message : str
        What failed, naming the block, event or element.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


# -- small helpers ------------------------------------------------------------------------------
def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what} must be a 0x-prefixed hex string")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what} is not hex") from exc
    if size is not None and len(raw) != size:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what} must be {size} bytes")
    return raw


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what} must be a non-negative integer")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what} must be a list")
    return value


def _be_int(raw: Any) -> int:
    if not isinstance(raw, bytes):
        raise ValueError("expected an RLP string")
    return int.from_bytes(raw, "big")


def address_of(public_key: coincurve.PublicKey) -> bytes:
    """The 20-byte Ethereum address of a secp256k1 public key."""
    digest: bytes = keccak(public_key.format(compressed=False)[1:])
    return digest[12:]


def recover_address(digest: bytes, signature: bytes) -> bytes | None:
    """Signer of a 65-byte ``r ‖ s ‖ v`` (v ∈ {0, 1}) signature over ``digest``; None if none."""
    if len(signature) != 65 or signature[64] > 1:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        return None
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:  # coincurve raises ValueError or its own errors
        return None
    return address_of(public_key)


def quorum(validator_count: int) -> int:
    """Commit seals needed among ``n`` validators: ceil(2n/3)."""
    return (2 * validator_count + 2) // 3


def subject_key(reference: str) -> bytes:
    """Keccak-256 of a reference upper-cased, with spaces, dashes and slashes removed."""
    normalised = "".join(c for c in reference.upper() if c not in " -/")
    digest: bytes = keccak(normalised.encode())
    return digest


def utc(seconds: int) -> str:
    """``YYYY-MM-DD HH:MM:SSZ`` of Unix ``seconds`` (proleptic Gregorian; no clock, no tz data)."""
    days, rest = divmod(seconds, 86_400)
    # H. Hinnant's civil_from_days.
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}Z"


def event_type_name(event_type: int) -> str:
    """``"FAMILY.CODE"`` of a cargo event type, or ``"0x…"`` if unknown."""
    family = EVENT_FAMILIES.get(event_type >> 8)
    code = event_type & 0xFF
    if family is None or not 1 <= code <= len(family[1]):
        return f"0x{event_type:04x}"
    return f"{family[0]}.{family[1][code - 1]}"


# -- headers and seals ------------------------------------------------------------------------
@dataclass(frozen=True)
class SealedHeader:
    """A decoded header with its QBFT ``extraData``."""

    #: The header's RLP fields, undecoded (bytes).
    fields: tuple[bytes, ...]
    #: Block number.
    number: int
    #: Unix seconds.
    timestamp: int
    #: Validator list in ``extraData`` (the set decided at this block's post-state).
    validators: tuple[bytes, ...]
    #: Round in which the block was committed.
    round: int
    #: Commit seals, 65 bytes each.
    seals: tuple[bytes, ...]
    #: ``[vanity, validators, vote]`` items of ``extraData``, as decoded.
    extra_head: tuple[Any, ...]

    def _hash_with_extra(self, extra: bytes) -> bytes:
        items = list(self.fields)
        items[H_EXTRA] = extra
        digest: bytes = keccak(rlp.encode(items))
        return digest

    @property
    def block_hash(self) -> bytes:
        """Besu's QBFT block hash: extraData with round 0 and no seals."""
        return self._hash_with_extra(rlp.encode([*self.extra_head, b"\x00" * 4, []]))

    @property
    def commit_digest(self) -> bytes:
        """What a commit seal signs: extraData with no seals, round kept."""
        return self._hash_with_extra(
            rlp.encode([*self.extra_head, self.round.to_bytes(4, "big"), []])
        )

    @property
    def receipts_root(self) -> bytes:
        return self.fields[H_RECEIPT_ROOT]

    @property
    def transactions_root(self) -> bytes:
        return self.fields[H_TX_ROOT]


def decode_extra_data(raw: bytes, where: str) -> tuple[tuple[Any, ...], tuple[bytes, ...], int,
                                                      tuple[bytes, ...]]:
    """Decode QBFT extraData into ``([vanity, validators, vote], validators, round, seals)``."""
    try:
        items = rlp.decode(raw)
    except Exception as exc:
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: extraData is not RLP") from exc
    if not isinstance(items, list) or len(items) != 5:
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: extraData is not a 5-item list")
    vanity, validators, vote, round_, seals = items
    ok = (
        isinstance(vanity, bytes) and len(vanity) == 32
        and isinstance(validators, list)
        and all(isinstance(v, bytes) and len(v) == 20 for v in validators)
        and len(set(validators)) == len(validators)
        and isinstance(vote, list)
        and (not vote or (len(vote) == 2 and isinstance(vote[0], bytes) and len(vote[0]) == 20
                          and vote[1] in (b"\xff", b"\x00")))
        and isinstance(round_, bytes) and len(round_) == 4
        and isinstance(seals, list)
        and all(isinstance(s, bytes) and len(s) == 65 for s in seals)
    )
    if not ok:
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: extraData is not QBFT's layout")
    return (
        (vanity, validators, vote),
        tuple(validators),
        int.from_bytes(round_, "big"),
        tuple(seals),
    )


def decode_header(raw: bytes, where: str) -> SealedHeader:
    """Decode a sealed header's RLP (Prague field order)."""
    try:
        fields = rlp.decode(raw)
    except Exception as exc:
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: header is not RLP") from exc
    if (
        not isinstance(fields, list)
        or len(fields) < 15
        or not all(isinstance(f, bytes) for f in fields)
        or rlp.encode(fields) != raw
    ):
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: header is not a list of fields")
    head, validators, round_, seals = decode_extra_data(fields[H_EXTRA], where)
    return SealedHeader(
        tuple(fields),
        _be_int(fields[H_NUMBER]),
        _be_int(fields[H_TIMESTAMP]),
        validators,
        round_,
        seals,
        head,
    )


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
    recovered = [recover_address(digest, seal) for seal in header.seals]
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
    needed = quorum(len(validators))
    if len(signers) < needed:
        raise ProofError(
            Reason.TOO_FEW_SEALS,
            f"{where}: {len(signers)} commit seals, {needed} of {len(validators)} needed",
        )
    return tuple(signers)


# -- Merkle-Patricia proofs ---------------------------------------------------------------------
def _nibbles(key: bytes) -> list[int]:
    out: list[int] = []
    for byte in key:
        out += (byte >> 4, byte & 0x0F)
    return out


def _hex_prefix_decode(encoded: bytes) -> tuple[list[int], bool]:
    """Hex-prefix (compact) encoding: returns (nibbles, is_leaf)."""
    if not encoded:
        raise ValueError("empty path")
    flag = encoded[0] >> 4
    if flag > 3:
        raise ValueError("bad hex-prefix flag")
    nibbles = _nibbles(encoded)
    return nibbles[1:] if flag & 1 else nibbles[2:], bool(flag & 2)


def verify_mpt_proof(root: bytes, key: bytes, proof: Sequence[bytes], what: str) -> bytes:
    """Return the value stored under ``key`` in the trie of ``root``, proven by ``proof``.

    ``proof`` holds the RLP of every hashed node on the path, root first; nodes shorter than 32
    bytes are embedded in their parent and not listed.

    Raises
    ------
    ProofError
        ``proof-node-mismatch`` (node i does not hash to the reference its parent holds),
        ``proof-truncated``, ``proof-extra-nodes``, ``proof-key-absent``.
    """
    if len(proof) > MAX_PROOF_NODES:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{what}: more than {MAX_PROOF_NODES} nodes")
    path = _nibbles(key)
    reference: Any = root
    used = 0
    for _step in range(len(path) + len(proof) + 2):
        if isinstance(reference, bytes) and len(reference) == 32:
            if used == len(proof):
                raise ProofError(
                    Reason.PROOF_TRUNCATED, f"{what}: node {used} (0x{reference.hex()}) missing"
                )
            raw = proof[used]
            if keccak(raw) != reference:
                raise ProofError(
                    Reason.PROOF_NODE_MISMATCH,
                    f"{what}: node {used} does not hash to 0x{reference.hex()}",
                )
            used += 1
            try:
                node = rlp.decode(raw)
            except Exception as exc:
                raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node {used - 1} is not RLP") from exc
        elif isinstance(reference, list):
            node = reference  # embedded node (its RLP is shorter than 32 bytes)
        elif reference == b"":
            raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
        else:
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: malformed node reference")
        if not isinstance(node, list):
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node is not a list")
        if len(node) == 17:
            if not path:
                value = node[16]
                break
            reference = node[path[0]]
            path = path[1:]
        elif len(node) == 2 and isinstance(node[0], bytes):
            try:
                segment, is_leaf = _hex_prefix_decode(node[0])
            except ValueError as exc:
                raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: {exc}") from exc
            if is_leaf:
                if segment != path:
                    raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
                value = node[1]
                break
            if path[: len(segment)] != segment:
                raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
            path = path[len(segment):]
            reference = node[1]
        else:
            raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: node of {len(node)} items")
    else:
        raise ProofError(Reason.PROOF_NODE_MISMATCH, f"{what}: path does not end")
    if not isinstance(value, bytes) or not value:
        raise ProofError(Reason.PROOF_KEY_ABSENT, f"{what}: key not in the trie")
    if used != len(proof):
        raise ProofError(
            Reason.PROOF_EXTRA_NODES, f"{what}: {len(proof) - used} nodes beyond the path"
        )
    return value


# -- receipts, logs, transactions ---------------------------------------------------------------
@dataclass(frozen=True)
class Log:
    """An Ethereum log."""

    #: Emitting contract, 20 bytes.
    address: bytes
    #: Topics, 32 bytes each.
    topics: tuple[bytes, ...]
    #: Unindexed data.
    data: bytes


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
            v, r, s = (_be_int(x) for x in fields[6:9])
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
            chain_id = _be_int(fields[0])
            parity, r, s = (_be_int(x) for x in fields[unsigned:])
            digest = keccak(raw[:1] + rlp.encode(fields[:unsigned]))
        else:
            raise ValueError(f"unsupported transaction type {raw[0]}")
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity])
    except ProofError:
        raise
    except Exception as exc:
        raise ProofError(Reason.TX_FORMAT, f"{where}: transaction does not decode") from exc
    sender = recover_address(digest, signature)
    if sender is None:
        raise ProofError(Reason.TX_FORMAT, f"{where}: transaction signature does not recover")
    return chain_id, sender


def _log_from_json(value: Any, where: str) -> Log:
    if not isinstance(value, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: log must be an object")
    return Log(
        _hex(value.get("address"), f"{where} log address", 20),
        tuple(_hex(t, f"{where} log topic", 32) for t in _list(value.get("topics"), "topics")),
        _hex(value.get("data"), f"{where} log data"),
    )


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

    Layout (``gateway/confidential.py``): version (1 byte, 1), flags (1: bit 0 a reference wrap
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


def _raw_content(payload: bytes, disclosure: dict[str, Any], where: str) -> SealedContent:
    nonce = _hex(disclosure.get("nonce"), f"{where} nonce")
    aad = _hex(disclosure.get("aad", "0x"), f"{where} aad")
    offset = _int(disclosure.get("ciphertextOffset", 0), f"{where} ciphertextOffset")
    length = _int(disclosure.get("ciphertextLength", max(len(payload) - offset, 0)),
                  f"{where} ciphertextLength")
    compression = disclosure.get("compression", "none")
    if compression not in ("none", "zlib") or not 8 <= len(nonce) <= 16:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: bad compression or nonce")
    if length < 16 or offset + length > len(payload):
        raise ProofError(
            Reason.CIPHERTEXT_RANGE,
            f"{where}: ciphertext [{offset}, {offset + length}) is outside the "
            f"{len(payload)}-byte payload",
        )
    return SealedContent(payload[offset : offset + length], nonce, aad, compression == "zlib")


def check_disclosure(facts: CargoFacts, disclosure: Any, where: str) -> bytes:
    """Check a disclosed payload against the log; return the plaintext.

    ``keccak256(plaintext)`` must equal the log's payload hash. With a ``dataKey``, the sealed
    content must decrypt under AES-256-GCM, then inflate if compressed, to exactly the
    plaintext. Where the content lies depends on ``layout``: ``"raw"`` (the default) takes
    ``payload[ciphertextOffset : ciphertextOffset + ciphertextLength]`` with the given
    ``nonce``, ``aad`` and ``compression``; ``"portledger-envelope/1"`` parses the gateway's
    envelope (:func:`envelope_content`) and must carry none of those fields.
    """
    if not isinstance(disclosure, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: disclosure must be an object")
    plaintext = _hex(disclosure.get("plaintext"), f"{where} plaintext")
    if keccak(plaintext) != facts.payload_hash:
        raise ProofError(
            Reason.PAYLOAD_HASH_MISMATCH,
            f"{where}: keccak256 of the disclosed plaintext is not the payload hash in the log",
        )
    layout = disclosure.get("layout", LAYOUT_RAW)
    if layout not in (LAYOUT_RAW, LAYOUT_ENVELOPE):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: unknown disclosure layout {layout!r}")
    if disclosure.get("dataKey") is None:
        return plaintext
    key = _hex(disclosure["dataKey"], f"{where} dataKey", 32)
    if layout == LAYOUT_ENVELOPE:
        extra = [name for name in _RAW_ONLY if name in disclosure]
        if extra:
            raise ProofError(
                Reason.BUNDLE_FORMAT,
                f"{where}: an envelope disclosure takes no {', '.join(extra)} (the envelope says)",
            )
        content = envelope_content(facts.payload, where)
    else:
        content = _raw_content(facts.payload, disclosure, where)
    from Crypto.Cipher import AES  # pycryptodome; only disclosures need it

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


def anchor_merkle_root(reading_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Root of a sorted-pair Merkle proof (``contracts/anchors.py``'s rule)."""
    node: bytes = keccak(b"\x00" + reading_hash)
    for sibling in proof:
        node = keccak(b"\x01" + min(node, sibling) + max(node, sibling))
    return node


# -- the bundle ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProvenEvent:
    """One event the bundle proved."""

    #: ``"cargo"``, ``"anchor"`` or ``"log"``.
    kind: str
    block_number: int
    block_hash: bytes
    block_time: int
    transaction_index: int
    log_index: int
    #: Account that signed the transaction.
    sender: bytes
    log: Log
    #: Validators whose commit seals prove the block, in seal order.
    sealed_by: tuple[bytes, ...]
    #: The validator set in force at the block.
    validators: tuple[bytes, ...]
    cargo: CargoFacts | None = None
    reference: str | None = None
    plaintext: bytes | None = None
    #: Reading hash proven under the anchored root.
    reading_hash: bytes | None = None

    def describe(self) -> str:
        """One human line."""
        sealers = ", ".join("0x" + a.hex() for a in self.sealed_by)
        tail = (
            f"in block #{self.block_number} (0x{self.block_hash.hex()[:16]}…), sealed by "
            f"{len(self.sealed_by)} of {len(self.validators)} validators: {sealers}"
        )
        if self.cargo is not None:
            c = self.cargo
            name = event_type_name(c.event_type)
            what = EVENT_WORDS.get(name, name)
            subject = self.reference or "subject 0x" + c.subject.hex()[:16] + "…"
            when = utc(c.event_time)
            extra = f"; retracts event {c.retracts}" if c.retracts else ""
            disclosed = "" if self.plaintext is None else f"; payload disclosed ({len(self.plaintext)} bytes, verified)"
            return (
                f"{subject} {what} ({CLASSIFIERS.get(c.classifier, '?')}) at "
                f"{c.location or '-'} {when}, event {c.event_id} by organisation {c.publisher}"
                f"{extra}{disclosed}, {tail}"
            )
        if self.kind == "anchor":
            anchor = int.from_bytes(self.log.topics[1], "big")
            count = int.from_bytes(self.log.data[32:64], "big")
            what = f"anchor {anchor} (root 0x{self.log.data[:32].hex()[:16]}…, {count} readings)"
            if self.reading_hash is not None:
                what = f"reading 0x{self.reading_hash.hex()[:16]}… is in {what}"
            return f"{what}, {tail}"
        return f"log {self.log_index} of transaction {self.transaction_index}, {tail}"


@dataclass(frozen=True)
class Verified:
    """What a bundle proved."""

    chain_id: int
    events: tuple[ProvenEvent, ...]
    #: (block number, new validator list) of each validator-set change followed.
    changes: tuple[tuple[int, tuple[bytes, ...]], ...] = field(default=())

    def describe(self) -> str:
        lines = [f"OK: {len(self.events)} event(s) proven on chain {self.chain_id} "
                 f"({len(self.changes)} validator-set change(s) followed from genesis)"]
        lines += ["  " + event.describe() for event in self.events]
        return "\n".join(lines)


@dataclass(frozen=True)
class Trust:
    """What the verifier takes from ``genesis.json``."""

    chain_id: int
    validators: tuple[bytes, ...]
    cargo_ledger: bytes
    anchors: bytes


def trust_from_genesis(doc: Any) -> Trust:
    """Read the chain id, first validator set and contract addresses from genesis.json."""
    try:
        chain_id = int(doc["config"]["chainId"])
        extra = bytes.fromhex(str(doc["extraData"]).removeprefix("0x"))
        contracts = doc.get("portledger", {}).get("contracts", {})
        addresses = {
            name: bytes.fromhex(str(contracts[name]["address"]).removeprefix("0x"))
            if name in contracts else default
            for name, default in DEFAULT_CONTRACTS.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProofError(Reason.GENESIS_FORMAT, f"genesis.json: {exc!r}") from exc
    try:
        _head, validators, _round, _seals = decode_extra_data(extra, "genesis")
    except ProofError as exc:
        raise ProofError(Reason.GENESIS_FORMAT, exc.message) from exc
    if not validators:
        raise ProofError(Reason.GENESIS_FORMAT, "genesis lists no validators")
    return Trust(chain_id, validators, addresses["CargoLedger"], addresses["Anchors"])


def verify_bundle(bundle: Any, genesis: Any) -> Verified:
    """Verify a proof bundle against a genesis document (both parsed JSON).

    Parameters
    ----------
    bundle : dict
        The bundle (``docs/proof-format.md``).
    genesis : dict
        The network's ``genesis.json``.

    Returns
    -------
    Verified
        The proven events, each with its block, sealers and decoded content.

    Raises
    ------
    ProofError
        At the first failed check, with its :class:`Reason`.
    """
    trust = trust_from_genesis(genesis)
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ProofError(Reason.BUNDLE_FORMAT, f"not a {FORMAT} bundle")
    if _int(bundle.get("chainId"), "chainId") != trust.chain_id:
        raise ProofError(
            Reason.CHAIN_ID_MISMATCH,
            f"bundle is for chain {bundle.get('chainId')}, genesis.json is chain {trust.chain_id}",
        )
    stated = tuple(_hex(v, "genesisValidators", 20) for v in _list(bundle.get("genesisValidators"), "genesisValidators"))
    if stated != trust.validators:
        raise ProofError(
            Reason.GENESIS_MISMATCH,
            "the bundle was made for a network whose genesis validators differ from genesis.json's",
        )

    # Validator-set changes, from genesis on.
    in_force = trust.validators
    change_numbers: list[int] = [0]
    change_sets: list[tuple[bytes, ...]] = [in_force]
    change_headers = [
        decode_header(_hex(raw, f"validatorChanges[{i}]"), f"validatorChanges[{i}]")
        for i, raw in enumerate(_list(bundle.get("validatorChanges"), "validatorChanges"))
    ]
    for before, after in zip([0, *(h.number for h in change_headers)], change_headers, strict=False):
        if after.number <= before:
            raise ProofError(
                Reason.CHANGE_ORDER,
                f"validator-set change block #{after.number} does not come after block #{before}",
            )
    for header in change_headers:
        where = f"validator-set change block #{header.number}"
        check_seals(header, in_force, where)
        if header.validators == in_force:
            raise ProofError(Reason.NOT_A_CHANGE, f"{where}: its list equals the set in force")
        in_force = header.validators
        change_numbers.append(header.number)
        change_sets.append(in_force)

    headers: dict[int, tuple[SealedHeader, tuple[bytes, ...], tuple[bytes, ...]]] = {}
    for position, raw in enumerate(_list(bundle.get("headers"), "headers")):
        header = decode_header(_hex(raw, f"headers[{position}]"), f"headers[{position}]")
        where = f"block #{header.number}"
        if header.number in headers:
            raise ProofError(Reason.DUPLICATE_HEADER, f"{where} is given twice")
        if header.number == 0:
            raise ProofError(Reason.HEADER_FORMAT, "the genesis block holds no events")
        validators = change_sets[bisect.bisect_left(change_numbers, header.number) - 1]
        signers = check_seals(header, validators, where)
        headers[header.number] = (header, validators, signers)
    last_proven = max(headers, default=0)
    if headers and change_numbers[-1] >= last_proven:
        raise ProofError(Reason.CHANGE_ORDER, "a validator-set change lies beyond the proven blocks")

    events = _list(bundle.get("events"), "events")
    if not events:
        raise ProofError(Reason.BUNDLE_FORMAT, "the bundle proves no event")
    proven = [_verify_event(trust, headers, item, f"events[{i}]") for i, item in enumerate(events)]
    return Verified(
        trust.chain_id,
        tuple(proven),
        tuple(zip(change_numbers[1:], change_sets[1:], strict=True)),
    )


def _verify_event(
    trust: Trust,
    headers: dict[int, tuple[SealedHeader, tuple[bytes, ...], tuple[bytes, ...]]],
    item: Any,
    where: str,
) -> ProvenEvent:
    if not isinstance(item, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where} must be an object")
    number = _int(item.get("block"), f"{where} block")
    if number not in headers:
        raise ProofError(Reason.MISSING_HEADER, f"{where}: no header for block #{number}")
    header, validators, signers = headers[number]
    tx_index = _int(item.get("transactionIndex"), f"{where} transactionIndex")
    log_index = _int(item.get("logIndex"), f"{where} logIndex")
    where = f"{where} (block #{number}, transaction {tx_index}, log {log_index})"
    key = rlp.encode(tx_index)

    receipt = _hex(item.get("receipt"), f"{where} receipt")
    proof = [_hex(n, f"{where} receiptProof") for n in _list(item.get("receiptProof"), "receiptProof")]
    proven_receipt = verify_mpt_proof(header.receipts_root, key, proof, f"{where} receipt proof")
    if proven_receipt != receipt:
        raise ProofError(Reason.RECEIPT_MISMATCH, f"{where}: the receipt differs from the proven one")
    succeeded, logs = decode_receipt(receipt, where)
    if not succeeded:
        raise ProofError(Reason.RECEIPT_FAILED, f"{where}: the transaction failed (status 0)")
    if log_index >= len(logs):
        raise ProofError(Reason.LOG_INDEX, f"{where}: the receipt has {len(logs)} logs")
    log = _log_from_json(item.get("log"), where)
    if logs[log_index] != log:
        raise ProofError(
            Reason.LOG_MISMATCH, f"{where}: the log differs from log {log_index} of the receipt"
        )

    transaction = _hex(item.get("transaction"), f"{where} transaction")
    tx_proof = [_hex(n, f"{where} transactionProof") for n in _list(item.get("transactionProof"), "transactionProof")]
    if verify_mpt_proof(header.transactions_root, key, tx_proof, f"{where} transaction proof") != transaction:
        raise ProofError(Reason.TX_MISMATCH, f"{where}: the transaction differs from the proven one")
    chain_id, sender = decode_transaction(transaction, where)
    if chain_id != trust.chain_id:
        raise ProofError(Reason.TX_CHAIN_ID, f"{where}: transaction is for chain {chain_id}")

    common: dict[str, Any] = dict(
        block_number=number, block_hash=header.block_hash, block_time=header.timestamp,
        transaction_index=tx_index, log_index=log_index, sender=sender, log=log,
        sealed_by=signers, validators=validators,
    )
    if log.address == trust.cargo_ledger and log.topics[:1] == (CARGO_EVENT_TOPIC,):
        facts = decode_cargo_log(log, where)
        reference = item.get("subjectReference")
        if reference is not None and (
            not isinstance(reference, str) or subject_key(reference) != facts.subject
        ):
            raise ProofError(
                Reason.SUBJECT_MISMATCH,
                f"{where}: reference {reference!r} does not hash to the event's subject key",
            )
        plaintext = None
        if item.get("disclosure") is not None:
            plaintext = check_disclosure(facts, item["disclosure"], where)
        return ProvenEvent("cargo", cargo=facts, reference=reference, plaintext=plaintext, **common)
    if log.address == trust.anchors and log.topics[:1] == (ANCHORED_TOPIC,):
        anchor = item.get("anchor")
        if len(log.topics) != 4 or len(log.data) != 128:
            raise ProofError(Reason.ANCHOR_FORMAT, f"{where}: not an Anchored log")
        if not isinstance(anchor, dict):
            return ProvenEvent("anchor", **common)
        reading_hash = (
            keccak(_hex(anchor["reading"], f"{where} reading"))
            if "reading" in anchor
            else _hex(anchor.get("readingHash"), f"{where} readingHash", 32)
        )
        siblings = [_hex(s, f"{where} merkleProof", 32) for s in _list(anchor.get("merkleProof"), "merkleProof")]
        if len(siblings) > MAX_MERKLE_DEPTH:
            raise ProofError(Reason.ANCHOR_FORMAT, f"{where}: Merkle proof too deep")
        if anchor_merkle_root(reading_hash, siblings) != log.data[:32]:
            raise ProofError(
                Reason.ANCHOR_PROOF_MISMATCH,
                f"{where}: the reading's Merkle proof does not lead to the anchored root",
            )
        return ProvenEvent("anchor", reading_hash=reading_hash, **common)
    if item.get("disclosure") is not None or item.get("anchor") is not None:
        raise ProofError(Reason.UNSUPPORTED_LOG, f"{where}: neither a cargo event nor an anchor")
    return ProvenEvent("log", **common)
