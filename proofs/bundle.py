"""A proof bundle and the genesis it is checked against, parsed from JSON into typed values.

:func:`parse_bundle` reads the document of ``docs/proof-format.md`` section 1 — every field
present and of its type, every header and its QBFT ``extraData`` decoded — and raises
:class:`~proofs.errors.ProofError` (``bundle-format``, ``header-format``) on malformed input; it
proves nothing yet (that is :mod:`proofs.checks`). The per-event parts whose meaning depends on
the kind of log proven (a disclosure, an anchor) are parsed by :func:`parse_disclosure` and
:func:`parse_anchor` once the log's kind is known, so a field a log of another kind ignores is
not refused. :func:`trust_from_genesis` reads what the verifier trusts from ``genesis.json``.

Headers reuse :mod:`consensus.extradata` (extraData decoding, block hash, commit digest): a
header is kept as its raw RLP fields (:class:`HeaderFields`), which that module hashes like a
py-evm header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak

from consensus import extradata
from proofs.errors import ProofError, Reason

#: The format identifier every bundle carries: /2 holds headers of chain format v2 (Besu's QBFT
#: extraData, the round a canonical RLP scalar); /1 bundles held chain format v1 headers (a
#: 4-byte round) and are refused as ``old-format``.
FORMAT = "portledger-proof/2"
OLD_FORMATS = ("portledger-proof/1",)
#: What the holder of an old bundle does (the ``old-format`` refusals say it).
_OLD_ADVICE = (
    f"this verifier checks {FORMAT} bundles of chain format v{extradata.CHAIN_FORMAT_VERSION} "
    "(docs/chain-format.md); ask the issuer for a new bundle from the network's current chain"
)
#: System contract addresses used when genesis.json does not name them.
DEFAULT_CONTRACTS = {
    "CargoLedger": bytes.fromhex("0000000000000000000000000000000000001001"),
    "Anchors": bytes.fromhex("0000000000000000000000000000000000001004"),
}
#: Header fields (Prague order) this package reads.
H_TX_ROOT, H_RECEIPT_ROOT, H_NUMBER, H_TIMESTAMP, H_EXTRA = 4, 5, 8, 11, 12
#: Disclosure layouts (``docs/proof-format.md`` section 5.4): explicit ranges, or the gateway's
#: envelope (``gateway/confidential/envelope.py``), which the verifier parses itself.
LAYOUT_RAW = "raw"
LAYOUT_ENVELOPE = "portledger-envelope/1"
#: Fields a ``raw`` disclosure may carry that an envelope disclosure must not (the envelope
#: says where its content, nonce and associated data are).
_RAW_ONLY = ("nonce", "ciphertextOffset", "ciphertextLength", "compression", "aad")


# -- JSON fields --------------------------------------------------------------------------------
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


def rlp_int(raw: Any) -> int:
    """A big-endian integer item of decoded RLP; ValueError if the item is a list."""
    if not isinstance(raw, bytes):
        raise ValueError("expected an RLP string")
    return int.from_bytes(raw, "big")


# -- headers ------------------------------------------------------------------------------------
class HeaderFields(tuple[bytes, ...]):
    """A header's RLP fields, undecoded; RLP-encodes as the header and has what
    :mod:`consensus.extradata` hashes (``extra_data``, ``copy(extra_data=...)``)."""

    __slots__ = ()

    @property
    def block_number(self) -> int:
        return rlp_int(self[H_NUMBER])

    @property
    def extra_data(self) -> bytes:
        return self[H_EXTRA]

    def copy(self, **changes: Any) -> HeaderFields:
        """The fields with ``extra_data`` replaced (the only change a seal digest makes)."""
        fields = list(self)
        fields[H_EXTRA] = changes.pop("extra_data", fields[H_EXTRA])
        if changes:
            raise TypeError(f"only extra_data can change, not {sorted(changes)}")
        return HeaderFields(fields)


@dataclass(frozen=True)
class SealedHeader:
    """A decoded header with its QBFT ``extraData``."""

    #: The header's RLP fields, undecoded (bytes).
    fields: HeaderFields
    #: Block number.
    number: int
    #: Unix seconds.
    timestamp: int
    #: Its decoded ``extraData``.
    extra: extradata.ExtraData

    @property
    def validators(self) -> tuple[bytes, ...]:
        """Validator list in ``extraData`` (the set decided at this block's post-state)."""
        return self.extra.validators

    @property
    def round(self) -> int:
        """Round in which the block was committed."""
        return self.extra.round

    @property
    def seals(self) -> tuple[bytes, ...]:
        """Commit seals, 65 bytes each."""
        return self.extra.seals

    @property
    def block_hash(self) -> bytes:
        """Besu's QBFT block hash: extraData with round 0 and no seals."""
        return extradata.block_hash(self.fields, self.extra)

    @property
    def commit_digest(self) -> bytes:
        """What a commit seal signs: extraData with no seals, round kept."""
        return extradata.commit_digest(self.fields, self.extra)

    @property
    def receipts_root(self) -> bytes:
        return self.fields[H_RECEIPT_ROOT]

    @property
    def transactions_root(self) -> bytes:
        return self.fields[H_TX_ROOT]


def decode_extra_data(raw: bytes, where: str) -> extradata.ExtraData:
    """Decode QBFT extraData (:func:`consensus.extradata.decode`); ``header-format`` if it is not,
    ``old-format`` if it is chain format v1's (a 4-byte round)."""
    try:
        return extradata.decode(raw)
    except extradata.LegacyExtraData as exc:
        raise ProofError(Reason.OLD_FORMAT, f"{where}: {exc}; {_OLD_ADVICE}") from exc
    except extradata.InvalidExtraData as exc:
        raise ProofError(Reason.HEADER_FORMAT, f"{where}: {exc}") from exc


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
    extra = decode_extra_data(fields[H_EXTRA], where)
    return SealedHeader(
        HeaderFields(fields), rlp_int(fields[H_NUMBER]), rlp_int(fields[H_TIMESTAMP]), extra
    )


# -- logs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Log:
    """An Ethereum log."""

    #: Emitting contract, 20 bytes.
    address: bytes
    #: Topics, 32 bytes each.
    topics: tuple[bytes, ...]
    #: Unindexed data.
    data: bytes


def _log_from_json(value: Any, where: str) -> Log:
    if not isinstance(value, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: log must be an object")
    return Log(
        _hex(value.get("address"), f"{where} log address", 20),
        tuple(_hex(t, f"{where} log topic", 32) for t in _list(value.get("topics"), "topics")),
        _hex(value.get("data"), f"{where} log data"),
    )


# -- the bundle ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventClaim:
    """One event the bundle claims: where its log is, and the items proving it."""

    #: Block number.
    block: int
    transaction_index: int
    log_index: int
    #: The receipt as stored in the receipts trie, and its proof (node RLPs, root first).
    receipt: bytes
    receipt_proof: tuple[bytes, ...]
    #: The log claimed at ``log_index`` of the receipt.
    log: Log
    #: The signed transaction as stored in the transactions trie, and its proof.
    transaction: bytes
    transaction_proof: tuple[bytes, ...]
    #: What failures name: ``events[i] (block #n, transaction t, log l)``.
    where: str
    #: As in the JSON, read by the check of the log's kind (a cargo event reads the reference
    #: and the disclosure, an anchor the anchor object; a log of another kind refuses both).
    subject_reference: Any = None
    disclosure: Any = None
    anchor: Any = None


@dataclass(frozen=True)
class Bundle:
    """A parsed ``portledger-proof/2`` document (not yet checked)."""

    chain_id: int
    genesis_validators: tuple[bytes, ...]
    #: Sealed headers of the validator-set changes, as given (order checked later).
    validator_changes: tuple[SealedHeader, ...]
    #: Sealed headers of the blocks holding the proven events, as given.
    headers: tuple[SealedHeader, ...]
    events: tuple[EventClaim, ...]


def _event(item: Any, where: str) -> EventClaim:
    if not isinstance(item, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where} must be an object")
    number = _int(item.get("block"), f"{where} block")
    tx_index = _int(item.get("transactionIndex"), f"{where} transactionIndex")
    log_index = _int(item.get("logIndex"), f"{where} logIndex")
    where = f"{where} (block #{number}, transaction {tx_index}, log {log_index})"
    receipt = _hex(item.get("receipt"), f"{where} receipt")
    receipt_proof = tuple(
        _hex(n, f"{where} receiptProof") for n in _list(item.get("receiptProof"), "receiptProof")
    )
    log = _log_from_json(item.get("log"), where)
    transaction = _hex(item.get("transaction"), f"{where} transaction")
    tx_proof = tuple(
        _hex(n, f"{where} transactionProof")
        for n in _list(item.get("transactionProof"), "transactionProof")
    )
    return EventClaim(
        number, tx_index, log_index, receipt, receipt_proof, log, transaction, tx_proof, where,
        item.get("subjectReference"), item.get("disclosure"), item.get("anchor"),
    )


def parse_bundle(doc: Any) -> Bundle:
    """Parse a bundle document (parsed JSON); ``bundle-format`` / ``header-format`` if malformed."""
    if isinstance(doc, dict) and doc.get("format") in OLD_FORMATS:
        raise ProofError(
            Reason.OLD_FORMAT,
            f"a {doc['format']} bundle, made from a chain of chain format v1 (QBFT extraData "
            f"with a 4-byte round); {_OLD_ADVICE}",
        )
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ProofError(Reason.BUNDLE_FORMAT, f"not a {FORMAT} bundle")
    chain_id = _int(doc.get("chainId"), "chainId")
    genesis_validators = tuple(
        _hex(v, "genesisValidators", 20)
        for v in _list(doc.get("genesisValidators"), "genesisValidators")
    )
    changes = tuple(
        decode_header(_hex(raw, f"validatorChanges[{i}]"), f"validatorChanges[{i}]")
        for i, raw in enumerate(_list(doc.get("validatorChanges"), "validatorChanges"))
    )
    headers = tuple(
        decode_header(_hex(raw, f"headers[{i}]"), f"headers[{i}]")
        for i, raw in enumerate(_list(doc.get("headers"), "headers"))
    )
    events = _list(doc.get("events"), "events")
    if not events:
        raise ProofError(Reason.BUNDLE_FORMAT, "the bundle proves no event")
    return Bundle(
        chain_id,
        genesis_validators,
        changes,
        headers,
        tuple(_event(item, f"events[{i}]") for i, item in enumerate(events)),
    )


# -- what an event discloses --------------------------------------------------------------------
@dataclass(frozen=True)
class Disclosure:
    """A disclosed payload (section 5.4): the plaintext, and optionally the key opening it."""

    plaintext: bytes
    #: :data:`LAYOUT_RAW` or :data:`LAYOUT_ENVELOPE`.
    layout: str
    #: The AES-256-GCM data key; None discloses the plaintext only.
    data_key: bytes | None = None
    #: ``raw`` layout with a key: GCM nonce and associated data, where the ciphertext (and its
    #: tag) lies in the payload (length None: to the end), and whether it inflates (zlib).
    nonce: bytes = b""
    aad: bytes = b""
    ciphertext_offset: int = 0
    ciphertext_length: int | None = None
    compressed: bool = False


def parse_disclosure(value: Any, where: str) -> Disclosure:
    """Parse a disclosure object; ``bundle-format`` if malformed.

    Without a ``dataKey`` only the plaintext and layout are read. With one, an envelope
    disclosure must carry none of the raw layout's fields, and a raw one needs a nonce of 8 to
    16 bytes and a compression of ``"none"`` or ``"zlib"``.
    """
    if not isinstance(value, dict):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: disclosure must be an object")
    plaintext = _hex(value.get("plaintext"), f"{where} plaintext")
    layout = value.get("layout", LAYOUT_RAW)
    if layout not in (LAYOUT_RAW, LAYOUT_ENVELOPE):
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: unknown disclosure layout {layout!r}")
    if value.get("dataKey") is None:
        return Disclosure(plaintext, layout)
    key = _hex(value["dataKey"], f"{where} dataKey", 32)
    if layout == LAYOUT_ENVELOPE:
        extra = [name for name in _RAW_ONLY if name in value]
        if extra:
            raise ProofError(
                Reason.BUNDLE_FORMAT,
                f"{where}: an envelope disclosure takes no {', '.join(extra)} (the envelope says)",
            )
        return Disclosure(plaintext, layout, key)
    nonce = _hex(value.get("nonce"), f"{where} nonce")
    aad = _hex(value.get("aad", "0x"), f"{where} aad")
    offset = _int(value.get("ciphertextOffset", 0), f"{where} ciphertextOffset")
    length = value.get("ciphertextLength")
    if length is not None:
        length = _int(length, f"{where} ciphertextLength")
    compression = value.get("compression", "none")
    if compression not in ("none", "zlib") or not 8 <= len(nonce) <= 16:
        raise ProofError(Reason.BUNDLE_FORMAT, f"{where}: bad compression or nonce")
    return Disclosure(plaintext, layout, key, nonce, aad, offset, length, compression == "zlib")


@dataclass(frozen=True)
class AnchorClaim:
    """Section 5.5: a reading (by its hash) and its sorted-pair Merkle proof."""

    reading_hash: bytes
    merkle_proof: tuple[bytes, ...]


def parse_anchor(value: Any, where: str) -> AnchorClaim | None:
    """Parse an anchor object; None if there is none (not an object: the anchor alone is
    proven); ``bundle-format`` if malformed. A ``reading`` is hashed here (keccak)."""
    if not isinstance(value, dict):
        return None
    reading_hash = (
        keccak(_hex(value["reading"], f"{where} reading"))
        if "reading" in value
        else _hex(value.get("readingHash"), f"{where} readingHash", 32)
    )
    siblings = tuple(
        _hex(s, f"{where} merkleProof", 32) for s in _list(value.get("merkleProof"), "merkleProof")
    )
    return AnchorClaim(reading_hash, siblings)


# -- the trust root -----------------------------------------------------------------------------
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
        validators = decode_extra_data(extra, "genesis").validators
    except ProofError as exc:
        if exc.reason == Reason.OLD_FORMAT:
            raise
        raise ProofError(Reason.GENESIS_FORMAT, exc.message) from exc
    if not validators:
        raise ProofError(Reason.GENESIS_FORMAT, "genesis lists no validators")
    return Trust(chain_id, validators, addresses["CargoLedger"], addresses["Anchors"])
