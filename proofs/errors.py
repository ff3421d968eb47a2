"""Why a proof bundle failed: the stable reason codes (the verifier's public failure names).

Every check of :mod:`proofs.verify` raises :class:`ProofError` with one :class:`Reason`; the
``portledger verify-proof`` command prints its value (``docs/proof-format.md`` section 6).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a bundle failed; the value is the stable code printed by the CLI."""

    BUNDLE_FORMAT = "bundle-format"
    #: A bundle, header or genesis of an older format (chain format v1, ``portledger-proof/1``).
    OLD_FORMAT = "old-format"
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
