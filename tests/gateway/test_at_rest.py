"""No plaintext at rest in the gateway (issue 18, item 8).

The outbox keeps what idempotency and status need once an operation is settled (organisation,
idempotency key, content hash, result) and drops its body; until then the body is encrypted
under the keystore's ``outbox`` secret. The end-to-end test plays the demo story
(:mod:`devnet.simulate`) through a real gateway on a devnet, waits until every operation is
final, stops the gateway and scans the raw bytes of every file it wrote (databases after a WAL
checkpoint, free pages included, logs, keystore) for the private details of the story's
uploads: vessel names, remarks, terminal and yard names, AIS positions.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet import feedstory, simulate
from devnet.gateway import Port
from gateway import errors
from gateway.confidential.keystore import Keystore
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.feeds import formats
from gateway.writepath.operations import Operation
from gateway.writepath.outbox import BODY_SECRET, Outbox, OutboxError

_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)")


# -- scanning ---------------------------------------------------------------------------------
def private_details(bodies: Iterable[Any]) -> set[str]:
    """The private details in upload bodies: free text (names, remarks: any string with a space)
    and every value under a ``details`` object but times and flags (yard slots, positions)."""
    found: set[str] = set()

    def walk(value: Any, in_details: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, in_details or key == "details")
        elif isinstance(value, list):
            for item in value:
                walk(item, in_details)
        elif isinstance(value, str):
            text = value.strip()
            if " " in text or (in_details and len(text) >= 6 and not _ISO_TIME.fullmatch(text)):
                found.add(text)
        elif isinstance(value, float) and in_details and len(repr(value)) >= 6:
            found.add(repr(value))

    for body in bodies:
        walk(body, False)
    return found


def raw_private_details(uploads: Iterable[simulate.Upload]) -> set[str]:
    """The private details of raw-format uploads (EDIFACT, Cargo-IMP, customs, reefer readings),
    read with the gateway's own adapters: their events' details and their private readings'
    values. What AIS broadcasts (names, call signs, positions) is public and left out."""
    private: list[Any] = []
    public: set[str] = set()
    for upload in uploads:
        if upload.raw is None:
            continue
        result = formats.parse(upload.raw, received_at=int(time.time()))
        private += [{"details": e.event.details} for e in result.events]
        # reference numbers are not details: the holder of one is who may look it up
        public |= {r.value for e in result.events for r in (e.event.subject, *e.event.related)}
        for reading in result.readings:
            if reading.public:
                public |= private_details([{"details": reading.values}])
            else:
                private.append({"details": reading.values})
    uuids = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")  # message ids, no content
    return {n for n in private_details(private) - public if not uuids.fullmatch(n)}


def checkpoint_databases(folder: Path) -> None:
    """Fold every SQLite WAL into its database (and truncate it), as a closed gateway would."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                continue
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()


def plaintext_hits(folder: Path, needles: Iterable[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in the raw bytes of a file under ``folder``."""
    forms = {
        needle: {needle.encode(), json.dumps(needle)[1:-1].encode(), needle.encode("utf-16-le")}
        for needle in needles
    }
    hits = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for needle, encoded in forms.items():
            if any(form in data for form in encoded):
                hits.append((str(path.relative_to(folder)), needle))
    return hits


# -- the outbox alone --------------------------------------------------------------------------
SEAL, TEMPERATURE = "SEAL PLX-4471190", -18.25


def private_event(n: int) -> CanonicalEvent:
    return CanonicalEvent(
        event_type="EQUIPMENT.STUF",
        classifier="ACT",
        event_time=1_767_225_600 + n,
        subject=Reference("container", "CSQU3054383"),
        location="HKHKG",
        details={"seal": SEAL, "temperature": TEMPERATURE, "n": n},
        visibility=Visibility("named", (4,)),
    )


def settle(box: Outbox, org: int, keys: list[str], *, tx_hash: str = "0x01") -> None:
    ids = [r.op_id for r in box.receipts(p.op_id for p in box.pending(org, 100))
           if r.idempotency_key in keys]
    tx = box.persist_tx(org_id=org, sender="0xabc", nonce=1, tx_hash=tx_hash, raw=b"raw",
                        kind="record", op_ids=ids)
    box.finish_tx(tx.tx_id, status="mined", block=7,
                  final={op_id: (7 << 16) | i for i, op_id in enumerate(ids)})


def test_settled_operations_leave_no_payload_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    needles = private_details([private_event(0).to_json()])
    assert needles == {SEAL, repr(TEMPERATURE)}
    box = Outbox(path)  # no body key: bodies in clear while pending (shows the scan works)
    box.accept(1, [Operation("k", "event", private_event(0)),
                   Operation("g", "call", to="0x" + "11" * 20, data=b"\x01",
                             summary="grant SUMMARY-WITH-A-REFERENCE")])
    box.close()
    checkpoint_databases(tmp_path)
    assert {n for _, n in plaintext_hits(tmp_path, needles)} == needles
    assert not plaintext_hits(tmp_path, ["SUMMARY-WITH-A-REFERENCE"])  # never stored

    box = Outbox(path)
    settle(box, 1, ["k"])
    final = box.status(1, "k")
    assert final is not None and final.status == "final"
    box.close()
    checkpoint_databases(tmp_path)
    assert plaintext_hits(tmp_path, needles) == []

    # What idempotency needs stays: a retry gets the original receipt, another content a 409.
    box = Outbox(path)
    try:
        (again,) = box.accept(1, [Operation("k", "event", private_event(0))])
        assert again.duplicate and (again.op_id, again.status, again.tx_hash, again.block,
                                    again.event_id) == (final.op_id, "final", "0x01", 7, 7 << 16)
        with pytest.raises(errors.Conflict) as caught:
            box.accept(1, [Operation("k", "event", private_event(1))])
        assert caught.value.status == 409 and caught.value.code == "idempotency-key-reused"
    finally:
        box.close()


def test_bodies_are_encrypted_until_settled(tmp_path: Path) -> None:
    key = Keystore(tmp_path / "keystore", "at-rest-test").secret(BODY_SECRET)
    path = tmp_path / "data" / "outbox.sqlite"
    path.parent.mkdir()
    box = Outbox(path, body_key=key)
    box.accept(1, [Operation("k", "event", private_event(0))])
    box.close()
    checkpoint_databases(tmp_path / "data")
    assert plaintext_hits(tmp_path, private_details([private_event(0).to_json()])) == []

    box = Outbox(path, body_key=key)  # a restart reads the pending operation back
    try:
        (pending,) = box.pending(1, 10)
        assert pending.event == private_event(0)
    finally:
        box.close()
    box = Outbox(path)
    try:
        with pytest.raises(OutboxError, match="encrypted"):
            box.pending(1, 10)
    finally:
        box.close()
    box = Outbox(path, body_key=bytes(32))
    try:
        with pytest.raises(OutboxError, match="does not decrypt"):
            box.pending(1, 10)
    finally:
        box.close()


def test_a_file_of_an_earlier_version_is_scrubbed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    box.accept(1, [Operation("k", "event", private_event(0)), Operation("j", "event",
                                                                        private_event(1))])
    settle(box, 1, ["k"])
    box.close()
    # As an earlier version left it: the settled operation still has its body.
    body = json.dumps(private_event(0).to_json()).encode()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE ops SET body = ? WHERE idem_key = 'k'", (body,))
        db.execute("PRAGMA user_version = 0")
    db.close()
    box = Outbox(path)
    try:
        rows = dict(box._db.execute("SELECT idem_key, length(body) FROM ops").fetchall())
        assert rows["k"] == 0 and rows["j"] > 0  # the pending one keeps its body
    finally:
        box.close()


# -- the whole gateway -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Port]:
    port = Port(tmp_path_factory.mktemp("at-rest"), validators=1, observers=0)
    try:
        yield port.start()
    finally:
        port.stop()


def play(port: Port, uploads: list[simulate.Upload]) -> None:
    """Send the uploads as their parties; wait until every operation is final."""
    for upload in uploads:
        org = simulate.PARTIES[upload.party]
        status, body, _ = port.clients[org].request(upload.method, upload.path, upload.body,
                                                    raw=upload.raw, headers=upload.headers)
        assert status in (200, 201, 202) and "receipts" in body, (upload.what, status, body)
        for receipt in body["receipts"]:
            port.final(org, receipt["id"], timeout=60)


@pytest.mark.integration
def test_no_private_detail_of_the_story_in_any_file_the_gateway_wrote(port: Port) -> None:
    now = int(time.time())
    call = simulate.vessel_call(now % 1_000_000, now)
    feed = feedstory.LiveFeed(call, now, seed=7)
    uploads = [*feedstory.story(call, now), simulate.grant(call, "bank"),
               *feedstory.port_systems(call, now), *feed.tick(now), *feed.tick(now + 3)]
    play(port, uploads)
    needles = private_details(u.body for u in uploads) | raw_private_details(uploads)
    assert {call.vessel_name, feed.next_call.vessel_name, simulate.TERMINAL_NAME} <= needles
    assert any(n.startswith("CT9-") for n in needles)  # the yard slot, a details value

    port.gateway.stop()
    folder = port.gateway.config_file.parent  # data dir, log, credentials
    checkpoint_databases(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "outbox.sqlite" for p in files)
    hits = plaintext_hits(folder, needles)
    assert hits == [], hits
