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

Every failure raises :class:`~proofs.errors.ProofError` with a stable
:class:`~proofs.errors.Reason` code and a message naming the block, event and element at fault.

The package, parse → named checks → summary:

- :mod:`proofs.errors` — ``Reason`` and ``ProofError``;
- :mod:`proofs.bundle` — the JSON parsed into typed values (``bundle-format``, ``header-format``);
- :mod:`proofs.checks` — one function per check above, each raising its reason; headers, seals
  and quorum through :mod:`consensus.extradata`;
- :mod:`proofs.trie` — Merkle-Patricia proofs;
- :mod:`proofs.summary` — what was proven (:class:`~proofs.summary.Verified`), in English;
- this module — :func:`verify_bundle`, composing them.

Dependencies: ``rlp``, ``eth_hash`` (Keccak), ``coincurve`` (secp256k1 recovery, through
:mod:`consensus.extradata`), ``pycryptodome`` (AES-GCM, only for disclosures) and the standard
library. Nothing from py-evm, ``eth_keys``, the contracts or the node.

Pure: no files, clock or network. A bank embeds it as
``verify_bundle(json.load(bundle_file), json.load(genesis_file))``; the ``portledger
verify-proof`` command does exactly that.
"""

from __future__ import annotations

from typing import Any

from proofs import checks
from proofs.bundle import EventClaim, Trust, parse_bundle, trust_from_genesis
from proofs.checks import ANCHORED_TOPIC, CARGO_EVENT_TOPIC, ProvenHeader
from proofs.errors import ProofError, Reason
from proofs.summary import ProvenEvent, Verified


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
        At the first failed check, with its :class:`~proofs.errors.Reason`.
    """
    trust = trust_from_genesis(genesis)
    parsed = parse_bundle(bundle)
    checks.check_genesis(parsed, trust)
    sets = checks.check_validator_changes(parsed.validator_changes, trust.validators)
    headers = checks.check_headers(parsed.headers, sets)
    proven = [_verify_event(trust, headers, claim, f"events[{i}]") for i, claim in enumerate(parsed.events)]
    return Verified(trust.chain_id, tuple(proven), sets.changes)


def _verify_event(
    trust: Trust, headers: dict[int, ProvenHeader], claim: EventClaim, position: str
) -> ProvenEvent:
    """One event: its block is proven, its receipt and transaction are under the block's roots,
    then what the log's kind asks (a cargo event's subject and disclosure, an anchor's reading)."""
    if claim.block not in headers:
        raise ProofError(Reason.MISSING_HEADER, f"{position}: no header for block #{claim.block}")
    block = headers[claim.block]
    where = claim.where
    log = checks.check_receipt(block.header, claim)
    sender = checks.check_transaction(block.header, claim, trust.chain_id)
    common: dict[str, Any] = dict(
        block_number=claim.block, block_hash=block.header.block_hash,
        block_time=block.header.timestamp, transaction_index=claim.transaction_index,
        log_index=claim.log_index, sender=sender, log=log, sealed_by=block.signers,
        validators=block.validators,
    )
    if log.address == trust.cargo_ledger and log.topics[:1] == (CARGO_EVENT_TOPIC,):
        facts = checks.decode_cargo_log(log, where)
        reference = claim.subject_reference
        checks.check_subject(facts, reference, where)
        plaintext = None
        if claim.disclosure is not None:
            plaintext = checks.check_disclosure(facts, claim.disclosure, where)
        return ProvenEvent("cargo", cargo=facts, reference=reference, plaintext=plaintext, **common)
    if log.address == trust.anchors and log.topics[:1] == (ANCHORED_TOPIC,):
        reading_hash = checks.check_anchor(log, claim.anchor, where)
        return ProvenEvent("anchor", reading_hash=reading_hash, **common)
    if claim.disclosure is not None or claim.anchor is not None:
        raise ProofError(Reason.UNSUPPORTED_LOG, f"{where}: neither a cargo event nor an anchor")
    return ProvenEvent("log", **common)
