"""Equivocation evidence: two conflicting signed consensus messages from one validator.

QBFT's safety holds while fewer than a third of the validators are faulty; a validator that
signs two different PROPOSALs, PREPAREs or COMMITs for the same height and round is faulty by
definition (an honest one persists what it signed and never signs a conflicting message, see
:mod:`consensus.state`). Such a pair is self-contained proof: anyone can check it with Keccak,
RLP and ``ecrecover`` alone, without trusting the node that caught it.

Evidence layout (RLP)::

    [ version = 1,
      [ signed payload A, signature A ],
      [ signed payload B, signature B ] ]

where a *signed payload* is the RLP list whose Keccak-256 the author signed
(:mod:`consensus.messages`): ``[code, height, round, digest]`` for PROPOSAL (0x12) and PREPARE
(0x13), ``[0x14, height, round, digest, commit seal]`` for COMMIT, and a signature is 65 bytes
``r ‖ s ‖ v`` (v ∈ {0, 1}); integers are canonical RLP (no leading zeros), heights below
2**64, rounds below 2**32, digests 32 bytes and commit seals 65, as on the wire. Evidence is
valid when both signatures recover to the same address, both payloads have the same code,
height and round, and their digests differ (:func:`verify_evidence`). Whether that address was a validator at that height is for whoever
acts on it to check against the header chain (``qbft_getValidatorsByBlockNumber``).

The :class:`EquivocationDetector` remembers, per (author, code, height, round), the first
message seen, for a bounded window of heights; the engine feeds it every consensus message it
accepts from the network and stores each evidence in LevelDB (:class:`EvidenceStore`), where
``portledger_getEquivocations`` serves it.

On chain: a node with a reporting account (:func:`reporting_key`) reports each evidence it stored
to the Consortium contract, ``Consortium.reportEquivocation(first, second)``
(``contracts/equivocation.vy``, calldata in :mod:`contracts.equivocation`). The contract rebuilds
both signed payloads from their fields, recovers both signers with ``ecrecover``, requires one
signer who is a validator now, the same (code, height, round) and different digests, records the
equivocation once per (validator, code, height, round) and emits ``EquivocationReported`` with
Keccak-256 of this evidence encoding, for governance to act on (for example a REMOVE_VALIDATOR
proposal). The detector orders the two messages by their signed RLP bytes, so every node that
catches the same pair stores the same bytes and the event's hash names them whoever reported.

The *reporting account* signs the reports. It is the node's configured one
(``NodeService.evidence_account``: ``portledger node --report-key-file``, by default
``DATADIR/reportkey``) when there is one, else the node key while the node is a validator (a
validator's node address is a member account). An observer (a bank's or the port operator's
follower) reports only with a configured account; without one it keeps the evidence, serves it
and logs once why it does not report. A separate account also keeps reports off the nonce
sequence of the node key, so nothing else signing with that key clashes with them. The account
must be one of an active member organisation's; while it is not, nothing is sent (logged once).

:class:`EvidenceReporter` does the sending, in the node (the consensus core stays pure): a
zero-fee transaction signed with the reporting account, nonce from that account's pending state
(its contiguous transactions in this node's pool counted), admitted through the node's own pool
and gossiped like any other. It dry-runs the call first (evidence already
on chain, or refused, is not sent), resubmits a transaction that left the pool without a record
on chain at most :data:`MAX_ATTEMPTS` times per run (then leaves the evidence until the next
start), keeps at most :data:`MAX_IN_FLIGHT` reports in the pool, and marks evidence reported
(``NodeKeys.equivocation_reported``) once the chain's record is seen, whoever reported it (a
node without a reporting account settles its evidence this way too); after a restart it picks
up every stored evidence not yet marked. When several nodes catch the same pair, one report
lands and the others revert with ``consortium: equivocation already reported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rlp
from eth.exceptions import Revert, VMError
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey

from consensus import extradata
from consensus.messages import MAX_HEIGHT, MAX_ROUND, Commit, Message, Prepare, Proposal
from contracts.equivocation import (
    SignedMessage,
    decode_report_record,
    encode_report_call,
    encode_report_query,
)
from contracts.revert import revert_data, revert_message
from node.db import NodeKeys
from node.txpool import TxRejected

log = logging.getLogger("portledger.evidence")

#: Evidence format version.
EVIDENCE_VERSION = 1
#: Heights below the highest seen minus this are forgotten by the detector.
HEIGHT_WINDOW = 64
#: Most (author, code, height, round) entries the detector keeps.
MAX_ENTRIES = 100_000
#: LevelDB keys: evidence number n, and how many there are.
EVIDENCE_PREFIX = NodeKeys.equivocation_prefix
EVIDENCE_COUNT = NodeKeys.equivocation_count
#: LevelDB key prefix: evidence number n is recorded on chain (value: the recording block).
REPORTED_PREFIX = NodeKeys.equivocation_reported
#: Message codes that can equivocate, and how many items their signed payload has.
PAYLOAD_ITEMS = {0x12: 4, 0x13: 4, 0x14: 5}
#: Size of a signature and of a commit seal (secp256k1 r ‖ s ‖ v).
SIGNATURE_SIZE = 65

#: Gas of one report transaction (a report uses about 145 000 in all; the chain is
#: zero-fee, the margin only guards against a miscount).
REPORT_GAS = 400_000
#: Submissions of one evidence per run of the node (the first and resubmissions).
MAX_ATTEMPTS = 3
#: Report transactions this node keeps in its pool at once.
MAX_IN_FLIGHT = 16
#: Open evidence looked at per pass (one eth_call each).
MAX_PER_PASS = 64
#: Seconds between passes while evidence waits for its record, even without a new block.
PASS_INTERVAL = 5.0


class InvalidEvidence(ValueError):
    """The bytes are not valid equivocation evidence; the message says why."""


@dataclass(frozen=True)
class Equivocation:
    """Two conflicting signed messages of one validator."""

    #: The equivocating validator's address.
    validator: bytes
    #: Message code (0x12 PROPOSAL, 0x13 PREPARE, 0x14 COMMIT).
    code: int
    #: Height (block number).
    height: int
    #: Round.
    round: int
    #: The RLP evidence (module docstring).
    encoded: bytes

    @property
    def evidence_hash(self) -> bytes:
        """Keccak-256 of :attr:`encoded`, as ``EquivocationReported`` carries it."""
        digest: bytes = keccak(self.encoded)
        return digest

    def report_messages(self) -> tuple[SignedMessage, SignedMessage]:
        """The two messages as ``Consortium.reportEquivocation`` takes them, in evidence order."""
        _version, *pairs = rlp.decode(self.encoded)
        messages = []
        for payload, signature in pairs:
            code = int.from_bytes(payload[0], "big")
            messages.append(
                SignedMessage(
                    code=code,
                    height=int.from_bytes(payload[1], "big"),
                    round=int.from_bytes(payload[2], "big"),
                    digest=payload[3],
                    commit_seal=payload[4] if code == 0x14 else b"",
                    signature=signature,
                )
            )
        return messages[0], messages[1]


def signed_payload(message: Message) -> list[Any] | None:
    """The RLP items a PROPOSAL, PREPARE or COMMIT's author signed; None for other kinds."""
    if isinstance(message, Proposal | Prepare):
        voted = message.signed.payload
        return [int(message.kind), voted.height, voted.round, voted.digest]
    if isinstance(message, Commit):
        sealed = message.signed.payload
        return [0x14, sealed.height, sealed.round, sealed.digest, sealed.commit_seal]
    return None


def _integer(item: Any, what: str, maximum: int) -> int:
    """A canonical RLP integer no larger than ``maximum``."""
    if not isinstance(item, bytes) or item[:1] == b"\x00":
        raise InvalidEvidence(f"{what} is not a canonical integer")
    value = int.from_bytes(item, "big")
    if value > maximum:
        raise InvalidEvidence(f"{what} {value} exceeds {maximum}")
    return value


def _check_payload(payload: Any, signature: Any) -> tuple[int, int, int]:
    """(code, height, round) of one signed payload whose fields are as on the wire."""
    if not isinstance(payload, list) or len(payload) not in (4, 5):
        raise InvalidEvidence("a signed payload must be [code, height, round, digest(, seal)]")
    code = _integer(payload[0], "message code", 0xFF)
    if PAYLOAD_ITEMS.get(code) != len(payload):
        raise InvalidEvidence(f"message code 0x{code:02x} cannot equivocate")
    height = _integer(payload[1], "height", MAX_HEIGHT)
    round_ = _integer(payload[2], "round", MAX_ROUND)
    if not isinstance(payload[3], bytes) or len(payload[3]) != 32:
        raise InvalidEvidence("a block digest is 32 bytes")
    if code == 0x14 and (not isinstance(payload[4], bytes) or len(payload[4]) != SIGNATURE_SIZE):
        raise InvalidEvidence(f"a commit seal is {SIGNATURE_SIZE} bytes")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise InvalidEvidence(f"a signature is {SIGNATURE_SIZE} bytes")
    return code, height, round_


def verify_evidence(encoded: bytes) -> Equivocation:
    """Check equivocation evidence with RLP, Keccak and ecrecover only.

    Raises
    ------
    InvalidEvidence
        Malformed (fields not as on the wire included), signatures from different signers,
        different (code, height, round), or the same digest (no conflict).
    """
    try:
        version, first, second = rlp.decode(encoded)
        (payload_a, sig_a), (payload_b, sig_b) = first, second
    except Exception as exc:
        raise InvalidEvidence(f"evidence does not decode: {exc}") from exc
    if int.from_bytes(version, "big") != EVIDENCE_VERSION:
        raise InvalidEvidence("unknown evidence version")
    signers = []
    heads = []
    for payload, signature in ((payload_a, sig_a), (payload_b, sig_b)):
        heads.append(_check_payload(payload, signature))
        try:
            signers.append(extradata.recover_signer(keccak(rlp.encode(payload)), signature))
        except extradata.InvalidSeal as exc:
            raise InvalidEvidence(str(exc)) from exc
    if signers[0] != signers[1]:
        raise InvalidEvidence("the two messages have different signers")
    if heads[0] != heads[1]:
        raise InvalidEvidence("the two messages are for different (kind, height, round)")
    if payload_a[3] == payload_b[3]:
        raise InvalidEvidence("the two messages agree on the block: no equivocation")
    code, height, round_ = heads[0]
    return Equivocation(signers[0], code, height, round_, encoded)


class EquivocationDetector:
    """Remembers the first PROPOSAL / PREPARE / COMMIT per (author, code, height, round)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[bytes, int, int, int], tuple[list[Any], bytes]] = OrderedDict()
        self._reported: set[tuple[bytes, int, int, int]] = set()
        self._highest = 0

    def observe(self, message: Message) -> Equivocation | None:
        """Record ``message`` (its signature already recovered to its author); return evidence
        the first time its author is caught signing a conflicting message."""
        payload = signed_payload(message)
        if payload is None:
            return None
        author = message.signed.author
        key = (author, payload[0], message.height, message.round)
        if message.height > self._highest:
            self._highest = message.height
            self._prune()
        if message.height + HEIGHT_WINDOW < self._highest:
            return None
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = (payload, message.signed.signature)
            while len(self._seen) > MAX_ENTRIES:
                self._seen.popitem(last=False)
            return None
        if earlier[0][3] == payload[3] or key in self._reported:
            return None
        self._reported.add(key)
        # Canonical order (by signed bytes): every node stores the same evidence for a pair.
        pair = sorted(
            ([earlier[0], earlier[1]], [payload, message.signed.signature]),
            key=lambda item: bytes(rlp.encode(item[0])),
        )
        return verify_evidence(rlp.encode([EVIDENCE_VERSION, *pair]))

    def _prune(self) -> None:
        floor = self._highest - HEIGHT_WINDOW
        for key in [k for k in self._seen if k[2] < floor]:
            del self._seen[key]
        self._reported = {k for k in self._reported if k[2] >= floor}


class EvidenceStore:
    """Evidence kept in the node's LevelDB, numbered from 0 in the order caught."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def count(self) -> int:
        try:
            return int.from_bytes(self.db[EVIDENCE_COUNT], "big")
        except KeyError:
            return 0

    def add(self, evidence: Equivocation) -> int:
        """Store ``evidence``; its number."""
        n = self.count()
        self.db[EVIDENCE_PREFIX + n.to_bytes(8, "big")] = evidence.encoded
        self.db[EVIDENCE_COUNT] = (n + 1).to_bytes(8, "big")
        return n

    def get(self, n: int) -> Equivocation:
        """Evidence number ``n``, re-verified (KeyError if there is none)."""
        return verify_evidence(self.db[EVIDENCE_PREFIX + n.to_bytes(8, "big")])

    def all(self) -> list[Equivocation]:
        """Every stored evidence, re-verified."""
        return [self.get(n) for n in range(self.count())]

    def reported_at(self, n: int) -> int | None:
        """Number of the block that recorded evidence ``n`` on chain, None if not seen yet."""
        try:
            return int.from_bytes(self.db[REPORTED_PREFIX + n.to_bytes(8, "big")], "big")
        except KeyError:
            return None

    def mark_reported(self, n: int, block_number: int) -> None:
        """Remember that block ``block_number`` recorded evidence ``n``."""
        self.db[REPORTED_PREFIX + n.to_bytes(8, "big")] = block_number.to_bytes(8, "big")


#: Why a node with open evidence sends no report (:attr:`EvidenceReporter.not_reporting`).
NO_REPORTING_ACCOUNT = "no reporting account: an observer reports only with --report-key-file"
NOT_A_MEMBER = "the reporting account is not a member account"


def reporting_key(service: Any, node_key: PrivateKey) -> PrivateKey | None:
    """The key that signs equivocation reports now (module docstring).

    Parameters
    ----------
    service : node.service.NodeService
        The node: its configured ``evidence_account`` and its ledger (validators at the head).
    node_key : eth_keys.datatypes.PrivateKey
        The node's own key.

    Returns
    -------
    eth_keys.datatypes.PrivateKey or None
        ``service.evidence_account`` if configured; else ``node_key`` while it is a validator's
        at the head; else None (an observer without a reporting account reports nothing).
    """
    configured: PrivateKey | None = service.evidence_account
    if configured is not None:
        return configured
    ledger = service.ledger
    if node_key.public_key.to_canonical_address() in ledger.validators_at(ledger.head()):
        return node_key
    return None


class EvidenceReporter:
    """Reports stored evidence to ``Consortium.reportEquivocation`` until the chain records it.

    Parameters
    ----------
    service : node.service.NodeService
        The node: its ledger (state for calls, the Consortium address), pool, chain id and
        configured reporting account (``evidence_account``).
    key : eth_keys.datatypes.PrivateKey
        The node key: it signs the reports while this node is a validator and no reporting
        account is configured (:func:`reporting_key`).
    store : EvidenceStore
        Where the evidence is kept.
    """

    def __init__(self, service: Any, key: PrivateKey, store: EvidenceStore) -> None:
        self.service = service
        self.node_key = key
        self.store = store
        self.consortium: bytes | None = service.ledger.consortium
        #: Set when there may be something to do: new evidence, a new block.
        self.wake = asyncio.Event()
        #: Evidence numbers not yet seen recorded on chain, oldest first.
        self._open: list[int] = [
            n for n in range(store.count()) if store.reported_at(n) is None
        ]
        #: Submissions per evidence number in this run.
        self._attempts: dict[int, int] = {}
        #: The latest report transaction per evidence number.
        self._sent: dict[int, bytes] = {}
        #: Why the latest pass could send nothing (:data:`NO_REPORTING_ACCOUNT`,
        #: :data:`NOT_A_MEMBER`), None while reports can be sent; each reason is logged once.
        self.not_reporting: str | None = None
        self._logged: set[str] = set()

    def add(self, number: int) -> None:
        """Evidence ``number`` was just stored: report it."""
        self._open.append(number)
        self.wake.set()

    @property
    def open(self) -> tuple[int, ...]:
        """Evidence numbers still waiting for their record on chain."""
        return tuple(self._open)

    async def run(self, stopping: Any) -> None:
        """Pass over open evidence whenever woken (and every :data:`PASS_INTERVAL` seconds while
        some is open) until ``stopping()`` is true.

        The first pass waits for a wake-up or the interval: a node that just started has not
        reached its peers yet, and a report sent then would reach no other validator's pool.
        """
        while not stopping():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), PASS_INTERVAL)
            self.wake.clear()
            if self._open and not stopping():
                try:
                    self.report_pass()
                except Exception:  # a failing pass must not end reporting; retried next time
                    log.exception("equivocation reporting pass failed")

    def report_pass(self) -> list[bytes]:
        """Settle what the chain recorded and (re)send reports for the rest, within the bounds
        of the module docstring; the hashes of the transactions sent."""
        if self.consortium is None or not self._open:
            return []
        service = self.service
        key = self._account()
        head = service.ledger.head()
        in_pool = sum(1 for tx_hash in self._sent.values() if tx_hash in service.pool)
        sent: list[bytes] = []
        for number in list(self._open[:MAX_PER_PASS]):
            evidence = self.store.get(number)
            recorded = self._recorded_at(evidence, head)
            if recorded is not None:
                self.store.mark_reported(number, recorded)
                self._settle(number)
                log.info("equivocation %d is recorded on chain (block %d)", number, recorded)
                continue
            if key is None:
                continue  # kept and served; settled above once someone else's report lands
            if self._sent.get(number) in service.pool:
                continue  # waiting for a block
            if self._attempts.get(number, 0) >= MAX_ATTEMPTS:
                # Given up for this run (refused, or sent MAX_ATTEMPTS times without a record):
                # no more calls per block for it; the next start looks at it again.
                self._open.remove(number)
                log.warning("equivocation %d: not reported in this run", number)
                continue
            if in_pool >= MAX_IN_FLIGHT:
                continue
            tx_hash = self._send(number, evidence, head, key)
            if tx_hash is not None:
                sent.append(tx_hash)
                in_pool += 1
        return sent

    def _account(self) -> PrivateKey | None:
        """The reporting key for this pass, None (and :attr:`not_reporting` set, its reason
        logged once) when this node cannot report now."""
        key = reporting_key(self.service, self.node_key)
        if key is None:
            self.not_reporting = NO_REPORTING_ACCOUNT
        elif not self.service.is_member_account(key.public_key.to_canonical_address()):
            self.not_reporting = NOT_A_MEMBER
        else:
            self.not_reporting = None
            return key
        if self.not_reporting not in self._logged:
            self._logged.add(self.not_reporting)
            address = (key or self.node_key).public_key.to_canonical_address()
            log.warning(
                "equivocation evidence kept (portledger_getEquivocations) but not reported by "
                "0x%s: %s", address.hex(), self.not_reporting,
            )
        return None

    def _settle(self, number: int) -> None:
        self._open.remove(number)
        self._attempts.pop(number, None)
        self._sent.pop(number, None)

    def _recorded_at(self, evidence: Equivocation, head: Any) -> int | None:
        """The block that recorded this equivocation on chain (by anyone), None if none."""
        assert self.consortium is not None
        query = encode_report_query(
            evidence.validator, evidence.code, evidence.height, evidence.round
        )
        output = self.service.call({"to": self.consortium, "data": query}, head)
        evidence_hash, _reporter, reported_at = decode_report_record(output)
        return reported_at if evidence_hash != b"\x00" * 32 else None

    def _send(
        self, number: int, evidence: Equivocation, head: Any, key: PrivateKey
    ) -> bytes | None:
        """Dry-run the report on the head state, then sign it with ``key`` and submit it; its
        hash, or None if the call is refused (nothing to send: the reason is logged, the
        evidence stays)."""
        assert self.consortium is not None
        service = self.service
        address = key.public_key.to_canonical_address()
        data = encode_report_call(*evidence.report_messages())
        self._attempts[number] = self._attempts.get(number, 0) + 1
        call = {"from": address, "to": self.consortium, "data": data, "gas": REPORT_GAS}
        try:
            service.call(call, head)
        except Revert as exc:
            self._attempts[number] = MAX_ATTEMPTS
            log.warning("equivocation %d not reported: %s", number, revert_message(revert_data(exc)))
            return None
        except VMError as exc:
            self._attempts[number] = MAX_ATTEMPTS
            log.warning("equivocation %d not reported: %r", number, exc)
            return None
        ledger = service.ledger
        builder = ledger.chain.get_vm_class_for_block_number(head.block_number + 1)
        tx = builder.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
            chain_id=ledger.chain_id,
            nonce=service.pending_nonce(address),
            max_priority_fee_per_gas=0,
            max_fee_per_gas=0,
            gas=REPORT_GAS,
            to=self.consortium,
            value=0,
            data=data,
            access_list=[],
        ).as_signed_transaction(key)
        try:
            tx_hash: bytes = service.submit_raw(tx.encode())
        except TxRejected as exc:
            log.warning("equivocation %d: report refused by the pool: %s", number, exc)
            return None
        self._sent[number] = tx_hash
        log.warning(
            "equivocation %d: reported validator 0x%s to the Consortium in 0x%s (from 0x%s)",
            number, evidence.validator.hex(), tx_hash.hex(), address.hex(),
        )
        return tx_hash
