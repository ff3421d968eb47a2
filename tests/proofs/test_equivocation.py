"""Equivocation evidence: a validator's two conflicting signed messages for one (height, round)
are caught, kept in LevelDB and served over JSON-RPC; the evidence verifies with ecrecover alone
and refuses every forgery; and the nodes report it to the Consortium contract, where it lands
once (also after a restart)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_hash.auto import keccak

from consensus import extradata
from consensus.messages import Block as CoreBlock
from consensus.messages import (
    Commit,
    CommitPayload,
    Prepare,
    PreparePayload,
    Proposal,
    ProposalPayload,
    Signed,
    encode_message,
)
from contracts import SYSTEM_ADDRESSES
from contracts.equivocation import REPORTED_TOPIC, decode_reported_log
from node.db import LevelDB
from node.evidence import (
    NO_REPORTING_ACCOUNT,
    EquivocationDetector,
    EvidenceStore,
    InvalidEvidence,
    reporting_key,
    signed_payload,
    verify_evidence,
)
from node.genesis import dev_key
from node.p2p_frames import Code
from node.rpc.app import JsonRpc
from tests.support.engine_net import Net

KEY = dev_key("validator:3")
OTHER = dev_key("validator:2")
AUTHOR = KEY.public_key.to_canonical_address()


def prepare(height: int, round_: int, digest: bytes, key=KEY) -> Prepare:  # type: ignore[no-untyped-def]
    payload = PreparePayload(height, round_, digest)
    author = key.public_key.to_canonical_address()
    return Prepare(Signed(payload, author, extradata.sign_seal(payload.signing_digest, key)))


def commit(height: int, round_: int, digest: bytes) -> Commit:
    payload = CommitPayload(height, round_, digest, b"\x01" * 65)
    return Commit(Signed(payload, AUTHOR, extradata.sign_seal(payload.signing_digest, KEY)))


def test_signed_payload_is_what_the_author_signed() -> None:
    for message in (prepare(5, 1, b"\xaa" * 32), commit(5, 1, b"\xaa" * 32)):
        items = signed_payload(message)
        assert items is not None
        assert keccak(rlp.encode(items)) == message.signed.payload.signing_digest
    payload = ProposalPayload(7, 0, b"\xbb" * 32)
    proposal = Proposal(Signed(payload, AUTHOR, extradata.sign_seal(payload.signing_digest, KEY)),
                        CoreBlock(b"\xbb" * 32, b""))
    items = signed_payload(proposal)
    assert items is not None and keccak(rlp.encode(items)) == payload.signing_digest


def test_two_prepares_for_different_blocks_are_evidence() -> None:
    detector = EquivocationDetector()
    assert detector.observe(prepare(10, 0, b"\x01" * 32)) is None
    assert detector.observe(prepare(10, 0, b"\x01" * 32)) is None  # the same message again
    assert detector.observe(prepare(10, 1, b"\x02" * 32)) is None  # another round: allowed
    assert detector.observe(prepare(10, 0, b"\x02" * 32, key=OTHER)) is None  # another author
    evidence = detector.observe(prepare(10, 0, b"\x02" * 32))
    assert evidence is not None
    assert (evidence.validator, evidence.code, evidence.height, evidence.round) == (AUTHOR, 0x13, 10, 0)
    assert verify_evidence(evidence.encoded) == evidence
    assert detector.observe(prepare(10, 0, b"\x03" * 32)) is None  # reported once


def test_conflicting_commits_are_evidence() -> None:
    detector = EquivocationDetector()
    detector.observe(commit(3, 2, b"\x01" * 32))
    evidence = detector.observe(commit(3, 2, b"\x02" * 32))
    assert evidence is not None and evidence.code == 0x14


def _pair(first: Prepare, second: Prepare) -> bytes:
    items = []
    for m in (first, second):
        payload = signed_payload(m)
        items.append([payload, m.signed.signature])
    return rlp.encode([1, *items])


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x01" * 32), "agree on the block"),
        (prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x02" * 32, key=OTHER), "different signers"),
        (prepare(4, 0, b"\x01" * 32), prepare(4, 1, b"\x02" * 32), "different (kind, height, round)"),
    ],
)
def test_forged_evidence_is_refused(first: Prepare, second: Prepare, why: str) -> None:
    with pytest.raises(InvalidEvidence, match=why.replace("(", r"\(").replace(")", r"\)")):
        verify_evidence(_pair(first, second))


def test_evidence_with_a_rewritten_digest_is_refused() -> None:
    encoded = _pair(prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x02" * 32))
    version, a, b = rlp.decode(encoded)
    b[0][3] = b"\x03" * 32  # the signature no longer matches: recovers to someone else
    with pytest.raises(InvalidEvidence, match="different signers"):
        verify_evidence(rlp.encode([version, a, b]))


async def test_engine_keeps_evidence_and_serves_it(tmp_path: Path) -> None:
    async with Net(tmp_path, validators=4).started() as net:
        member = net.members[0]
        assert member.engine is not None and member.engine.state is not None
        height = member.engine.state.height
        peer = net.members[3].key.public_key.to_canonical_address()
        for digest in (b"\x01" * 32, b"\x02" * 32):
            member.engine._on_consensus(peer, encode_message(prepare(height, 0, digest)))
        stored = EvidenceStore(member.ledger.db).all()
        assert len(stored) == 1 and stored[0].validator == AUTHOR and stored[0].height == height
        served = JsonRpc(member.service).methods["portledger_getEquivocations"]([])
        assert served[0]["validator"].lower() == "0x" + AUTHOR.hex()
        assert served[0]["reportedInBlock"] is None or int(served[0]["reportedInBlock"], 16) > 0
        assert verify_evidence(bytes.fromhex(served[0]["evidence"][2:])).validator == AUTHOR


def test_evidence_fields_must_be_as_on_the_wire() -> None:
    """verify_evidence accepts only what the Consortium contract re-encodes the same way."""
    good = _pair(prepare(4, 0, b"\x01" * 32), prepare(4, 0, b"\x02" * 32))
    _, a, b = rlp.decode(good)
    cases = [
        (lambda a, b: a[0].__setitem__(1, b"\x00\x04"), "not a canonical integer"),
        (lambda a, b: a[0].__setitem__(1, (2**64).to_bytes(9, "big")), "height"),
        (lambda a, b: a[0].__setitem__(2, (2**32).to_bytes(5, "big")), "round"),
        (lambda a, b: a[0].__setitem__(3, b"\x01" * 31), "digest is 32 bytes"),
        (lambda a, b: a.__setitem__(1, a[1][:64]), "signature is 65 bytes"),
    ]
    for mutate, why in cases:
        first, second = rlp.decode(rlp.encode(a)), rlp.decode(rlp.encode(b))
        mutate(first, second)
        with pytest.raises(InvalidEvidence, match=why):
            verify_evidence(rlp.encode([1, first, second]))


def test_evidence_is_the_same_whichever_message_came_first() -> None:
    one, two = prepare(9, 3, b"\x05" * 32), prepare(9, 3, b"\x04" * 32)
    forward, backward = EquivocationDetector(), EquivocationDetector()
    forward.observe(one)
    backward.observe(two)
    a, b = forward.observe(two), backward.observe(one)
    assert a is not None and b is not None and a.encoded == b.encoded
    first, second = a.report_messages()
    assert (first.digest, second.digest) == (b"\x04" * 32, b"\x05" * 32)


def _reports(service) -> list:  # type: ignore[no-untyped-def]
    """EquivocationReported events on ``service``'s chain, through eth_getLogs."""
    logs = JsonRpc(service).methods["eth_getLogs"](
        [{"fromBlock": "0x0", "toBlock": "latest", "address": SYSTEM_ADDRESSES["Consortium"],
          "topics": ["0x" + REPORTED_TOPIC.hex()]}]
    )
    return [
        decode_reported_log(
            [bytes.fromhex(t[2:]) for t in entry["topics"]], bytes.fromhex(entry["data"][2:])
        )
        for entry in logs
    ]


async def test_equivocating_validator_is_reported_on_chain(tmp_path: Path) -> None:
    """Validator 3 sends two conflicting PREPAREs to every peer over p2p; each honest node keeps
    the same evidence, reports it, and the chain records it exactly once."""
    async with Net(tmp_path, validators=4).started() as net:
        honest, byzantine = net.members[:3], net.members[3]
        await net.wait(lambda: all(len(m.network.peers()) == 3 for m in net.members), 30, "peers")
        height = honest[0].engine.state.height
        frames = [encode_message(prepare(height, 0, d)) for d in (b"\x01" * 32, b"\x02" * 32)]
        # A connection may be replaced just after the handshake (both ends dialled) and drop a
        # frame: the byzantine node sends again, each second, until every honest node caught it.
        for _ in range(30):
            for data in frames:
                for m in honest:
                    byzantine.network.send(m.key.public_key.to_canonical_address(),
                                           Code.CONSENSUS, data)
            with contextlib.suppress(AssertionError):
                await net.wait(lambda: all(m.engine.evidence_store.count() for m in honest),
                               1.0, "evidence")
                break
        await net.wait(
            lambda: all(m.engine.evidence_store.count() == 1 and not m.engine.evidence_reporter.open
                        for m in honest),
            60, "every honest node to see its evidence recorded on chain",
        )
        stored = {m.engine.evidence_store.get(0).encoded for m in honest}
        assert len(stored) == 1  # canonical order: the same bytes on every node
        (evidence,) = [verify_evidence(e) for e in stored]
        await net.wait(lambda: all(_reports(m.service) for m in net.members), 30, "the log everywhere")
        for m in net.members:
            (report,) = _reports(m.service)
            assert (report.validator, report.code, report.height, report.round) == (
                AUTHOR, 0x13, height, 0)
            assert report.evidence_hash == keccak(evidence.encoded)
            assert report.reporter in {h.key.public_key.to_canonical_address() for h in honest}
        for m in honest:
            (served,) = JsonRpc(m.service).methods["portledger_getEquivocations"]([])
            assert served["reportedInBlock"] is not None
            assert int(served["reportedInBlock"], 16) == m.engine.evidence_store.reported_at(0)


async def test_stored_evidence_is_reported_after_a_restart(tmp_path: Path) -> None:
    """Evidence a node kept but never got on chain (it stopped first) is reported when it
    starts again."""
    detector = EquivocationDetector()
    detector.observe(commit(2, 0, b"\x01" * 32))
    evidence = detector.observe(commit(2, 0, b"\x02" * 32))
    assert evidence is not None
    async with Net(tmp_path, validators=4).started() as net:
        await net.stop(0)
        db = LevelDB(str(tmp_path / "node0"))
        try:
            assert EvidenceStore(db).add(evidence) == 0
        finally:
            db.close()
        await net.start(0)
        member = net.members[0]
        assert member.engine is not None and member.engine.evidence_reporter.open == (0,)
        await net.wait(lambda: not member.engine.evidence_reporter.open, 60, "the report on chain")
        (report,) = _reports(member.service)
        assert report.reporter == member.key.public_key.to_canonical_address()
        assert (report.validator, report.code, report.height) == (AUTHOR, 0x14, 2)
        assert report.evidence_hash == evidence.evidence_hash
        assert EvidenceStore(member.ledger.db).reported_at(0) is not None


def _evidence_of(key, height: int = 3):  # type: ignore[no-untyped-def]
    detector = EquivocationDetector()
    detector.observe(prepare(height, 0, b"\x01" * 32, key=key))
    evidence = detector.observe(prepare(height, 0, b"\x02" * 32, key=key))
    assert evidence is not None
    return evidence


def test_reporter_sends_once_settles_and_gives_up_within_bounds(ledger) -> None:  # type: ignore[no-untyped-def]
    """On the one-validator dev chain: a report is sent once, settled when a block records it;
    evidence the contract refuses is never sent; a report that keeps leaving the pool without a
    record is sent MAX_ATTEMPTS times, then left until the next start; a key that is not a
    member account sends nothing."""
    from eth_keys import keys

    from node.evidence import MAX_ATTEMPTS, EvidenceReporter
    from node.service import NodeService

    validator = dev_key("validator:0")
    service = NodeService(ledger, validator, produce=False)
    try:
        store = EvidenceStore(ledger.db)
        reporter = EvidenceReporter(service, validator, store)
        reporter.add(store.add(_evidence_of(validator)))
        (sent,) = reporter.report_pass()
        assert reporter.report_pass() == [] and sent in service.pool  # waits for a block
        service.block_added(ledger.propose(service.select_transactions(), validator))
        assert reporter.report_pass() == [] and reporter.open == ()
        assert store.reported_at(0) == ledger.head().block_number == 1
        # validator:3 is not a validator of this chain: the dry-run is refused, nothing is sent.
        reporter.add(store.add(_evidence_of(dev_key("validator:3"))))
        assert reporter.report_pass() == [] and len(service.pool) == 0
        assert reporter.report_pass() == [] and reporter.open == ()
        # A report dropped from the pool again and again: MAX_ATTEMPTS sends, then given up.
        reporter.add(store.add(_evidence_of(validator, height=4)))
        reporter.add(store.add(_evidence_of(keys.PrivateKey(b"\x05" * 32))))  # refused anyway
        for _ in range(MAX_ATTEMPTS):
            (tx_hash,) = reporter.report_pass()
            service.pool.remove(service.pool.get(tx_hash))
        assert reporter.report_pass() == [] and reporter.open == ()
        assert store.reported_at(2) is None
        # After a restart the evidence without a record is taken up again.
        again = EvidenceReporter(service, validator, store)
        assert again.open == (1, 2, 3)
        # Not a validator and no reporting account: nothing is sent.
        outsider = EvidenceReporter(service, keys.PrivateKey(b"\x06" * 32), store)
        assert outsider.report_pass() == [] and outsider.open == (1, 2, 3)
        assert outsider.not_reporting == NO_REPORTING_ACCOUNT and len(service.pool) == 0
    finally:
        service.stop()


def test_observer_reports_with_its_reporting_account(ledger, caplog) -> None:  # type: ignore[no-untyped-def]
    """An observer signs reports with its reporting account (a member organisation's), its
    nonce counted from that account's pending transactions; an observer without one sends
    nothing, logs why once, and still settles the evidence when someone's report lands; a
    reporting account that is not a member account sends nothing."""
    from eth_keys import keys

    from node.evidence import NOT_A_MEMBER, EvidenceReporter
    from node.service import NodeService
    from tests.support.chain import cargo_tx

    observer_key = keys.PrivateKey(b"\x41" * 32)  # an observer's node key: no member account
    bank = dev_key("org:10")  # Harbour Trade Bank (demo), a member organisation's account
    bank_address = bank.public_key.to_canonical_address()
    bare = NodeService(ledger, None, produce=False)
    service = NodeService(ledger, None, produce=False, evidence_account=bank)
    stranger = NodeService(ledger, None, produce=False, evidence_account=keys.PrivateKey(b"\x06" * 32))
    try:
        store = EvidenceStore(ledger.db)
        number = store.add(_evidence_of(dev_key("validator:0")))
        quiet = EvidenceReporter(bare, observer_key, store)
        with caplog.at_level("WARNING", logger="portledger.evidence"):
            assert quiet.report_pass() == [] and quiet.report_pass() == []
        assert quiet.not_reporting == NO_REPORTING_ACCOUNT and quiet.open == (number,)
        assert len(bare.pool) == 0
        assert sum("not reported by" in r.getMessage() for r in caplog.records) == 1
        # The bank account already has a transaction waiting: the report takes the next nonce.
        service.submit_raw(cargo_tx(ledger, Account.from_key(bank.to_bytes()), 0).encode())
        reporter = EvidenceReporter(service, observer_key, store)
        (sent,) = reporter.report_pass()
        tx = service.pool.get(sent)
        assert (tx.sender, tx.nonce) == (bank_address, 1) and reporter.not_reporting is None
        block = ledger.propose(service.select_transactions(), dev_key("validator:0"))
        assert len(block.block.transactions) == 2 and not block.rejected
        service.block_added(block)
        assert reporter.report_pass() == [] and reporter.open == ()
        (report,) = _reports(service)
        assert report.reporter == bank_address
        assert report.evidence_hash == store.get(number).evidence_hash
        # The observer without an account settles the same evidence from the chain's record.
        assert quiet.report_pass() == [] and quiet.open == () and store.reported_at(number) == 1
        # A reporting account of no member organisation: kept, not sent.
        outsider = EvidenceReporter(stranger, observer_key, store)
        outsider.add(store.add(_evidence_of(dev_key("validator:0"), height=5)))
        assert outsider.report_pass() == [] and outsider.not_reporting == NOT_A_MEMBER
        assert len(stranger.pool) == 0 and outsider.open == (1,)
        # A validator defaults to its node key; a configured account takes precedence.
        validator = dev_key("validator:0")
        assert reporting_key(bare, validator) == validator
        assert reporting_key(service, validator) == bank
        assert reporting_key(bare, observer_key) is None
    finally:
        for s in (bare, service, stranger):
            s.stop()


async def test_observer_with_a_reporting_account_gets_the_report_on_chain(tmp_path: Path) -> None:
    """Validator 3 sends two conflicting PREPAREs to the observers only. Observer 5 (no reporting
    account, though its node key is a member account) keeps the evidence and sends nothing;
    observer 4, given the bank's account, reports it and the chain records it from that account;
    observer 5 then sees the record."""
    bank = dev_key("org:10")  # Harbour Trade Bank (demo)
    bank_address = bank.public_key.to_canonical_address()
    member_node_key = dev_key("org:11")  # Ledger Audit (demo): a member account as node key
    net = Net(
        tmp_path, validators=4,
        observer_keys=[dev_key("observer:0"), member_node_key], report_keys={4: bank},
    )
    async with net.started():
        byzantine, reporting, quiet = net.members[3], net.members[4], net.members[5]
        await net.wait(lambda: all(len(m.network.peers()) == 5 for m in net.members), 30, "peers")
        height = net.members[0].engine.state.height
        frames = [encode_message(prepare(height, 0, d)) for d in (b"\x01" * 32, b"\x02" * 32)]

        async def equivocate_to(target) -> None:  # type: ignore[no-untyped-def]
            address = target.key.public_key.to_canonical_address()
            for _ in range(30):  # resent each second: a replaced connection may drop a frame
                for data in frames:
                    byzantine.network.send(address, Code.CONSENSUS, data)
                with contextlib.suppress(AssertionError):
                    await net.wait(lambda: target.engine.evidence_store.count(), 1.0, "evidence")
                    return
            raise AssertionError("the observer never caught the equivocation")

        await equivocate_to(quiet)
        await net.wait(
            lambda: quiet.engine.evidence_reporter.not_reporting is not None
            or len(quiet.service.pool) > 0,
            10, "the quiet observer's reporting pass",
        )
        assert quiet.engine.evidence_reporter.not_reporting == NO_REPORTING_ACCOUNT
        member_address = member_node_key.public_key.to_canonical_address()
        assert quiet.service.is_member_account(member_address)  # it could have, had it been asked
        assert quiet.service.pending_nonce(member_address) == 0 and len(quiet.service.pool) == 0

        await equivocate_to(reporting)
        await net.wait(
            lambda: not reporting.engine.evidence_reporter.open
            and not quiet.engine.evidence_reporter.open,
            60, "the report on chain, seen by both observers",
        )
        (report,) = _reports(reporting.service)
        assert report.reporter == bank_address
        assert (report.validator, report.code, report.height, report.round) == (AUTHOR, 0x13, height, 0)
        assert report.evidence_hash == reporting.engine.evidence_store.get(0).evidence_hash
        assert quiet.engine.evidence_store.reported_at(0) is not None
        for m in net.members:  # neither observer's node key ever sent anything
            for node_key in (reporting.key, member_node_key):
                assert m.service.account_nonce(node_key.public_key.to_canonical_address()) == 0


def test_report_key_file_is_loaded_like_the_node_key(tmp_path: Path) -> None:
    """--report-key-file (or DATADIR/reportkey) holds a hex key like nodekey; a file others can
    read, or one that is not a key, is refused with a one-line reason before the node starts."""
    import os

    import click
    from click.testing import CliRunner

    from node.cli import load_report_key
    from node.datadir import DataDir
    from portledger.cli import main

    paths = DataDir(tmp_path / "data")
    paths.root.mkdir()
    assert load_report_key(paths, None) is None  # no option, no DATADIR/reportkey
    bank = dev_key("org:10")
    paths.reportkey.write_text(bank.to_hex() + "\n")
    paths.reportkey.chmod(0o600)
    assert load_report_key(paths, None) == bank
    other = tmp_path / "other.key"
    other.write_text(dev_key("org:11").to_hex().removeprefix("0x"))
    other.chmod(0o644)
    with pytest.raises(click.ClickException, match="readable by others"):
        load_report_key(paths, str(other))
    other.chmod(0o600)
    assert load_report_key(paths, str(other)) == dev_key("org:11")  # the option wins
    other.write_text("not a key")
    with pytest.raises(click.ClickException, match="cannot read reporting account key"):
        load_report_key(paths, str(other))
    # Through the command: refused before the chain is opened, exit status non-zero.
    result = CliRunner().invoke(main, ["node", "--datadir", str(paths.root), "--report-key-file", str(other)])
    assert result.exit_code != 0 and "cannot read reporting account key" in result.output
    assert not os.path.exists(paths.chain)
