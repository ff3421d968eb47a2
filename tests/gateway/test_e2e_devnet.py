"""Issue 5's acceptance, end to end: a devnet (4 validators + 1 observer, separate processes),
the gateway as its own process in front of it, and the port's organisations using the HTTP API.

The story: a carrier registers a master B/L with three containers and reports its vessel; a
terminal reports discharge and release; a forwarder links a house B/L to two of the three
containers; a trader holding only the house B/L number sees exactly those two containers; a
bank sees nothing of the master B/L until the carrier grants it access, and stops seeing new
events after the carrier revokes it; the carrier and the terminal see who read their data;
a bank asks the carrier for a proof bundle of the master B/L, the carrier approves with one
record disclosed, and the bank verifies the bundle offline against genesis.json.
Then: no plaintext of a private payload is anywhere in a validator's LevelDB or in any RPC
answer; schemathesis finds no 5xx in the served OpenAPI; bad input gets clear 4xx.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import plyvel
import pytest

from contracts.cargo import subject_key
from devnet.gateway import GatewayClient, Port
from devnet.jsonrpc import rpc_call
from gateway.events.model import from_plaintext
from proofs.verify import verify_bundle
from tests.support import independent_verifier

pytestmark = pytest.mark.integration

T = TypeVar("T")

MASTER = "PCOL2611240001"
HOUSE = "HFFHK260001"
CONTAINERS = ("CSQU3054383", "MSKU1234565", "TGHU9876542")
VESSEL = {"imo": "9811000", "name": "PACIFIC HARMONY SIM", "voyage": "042E"}
SECRET = "SECRET-CARGO-7731"  # appears only inside an encrypted payload
WAIT = 60.0

# Consortium organisation ids of the demo port (genesis order + 1).
TERMINAL, CARRIER, FORWARDER, BANK, TRADER = 2, 4, 5, 11, 13


def eventually(probe: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Port]:
    port = Port(tmp_path_factory.mktemp("e2e"))
    try:
        yield port.start()
    finally:
        port.stop()


def accepted(response: tuple[int, Any, dict[str, str]]) -> list[dict[str, Any]]:
    status, body, _ = response
    assert status in (200, 201, 202), body
    return body["receipts"]


def event(key: str, type_: str, subject: tuple[str, str], when: str, *, location: str = "",
          related: tuple[tuple[str, str], ...] = (), details: dict[str, Any] | None = None,
          mode: str = "reference", readers: tuple[int, ...] = ()) -> dict[str, Any]:
    return {
        "id": key, "type": type_, "classifier": "ACT", "time": when,
        "subject": {"kind": subject[0], "value": subject[1]}, "location": location,
        "related": [{"kind": k, "value": v} for k, v in related],
        "details": details or {}, "visibility": {"mode": mode, "readers": list(readers)},
    }  # fmt: skip


def container_numbers(view: Any) -> set[str]:
    return {c["number"] for c in view.get("containers", [])}


def test_the_port_story(port: Port) -> None:
    carrier, terminal = port.clients[CARRIER], port.clients[TERMINAL]
    forwarder = port.clients[FORWARDER]

    # The carrier registers the master B/L (named readers: forwarder and terminal) and
    # reports its vessel (vessel movements are public, like AIS: readable by reference).
    receipts = accepted(carrier.post("/v1/bills-of-lading", {
        "master": MASTER, "containers": list(CONTAINERS), "vessel": VESSEL,
        "pol": "CNYTN", "pod": "HKHKG", "etd": "2026-11-20T06:00:00Z",
        "eta": "2026-11-24T07:00:00Z",
        "visibility": {"mode": "named", "readers": [FORWARDER, TERMINAL]},
    }))  # fmt: skip
    keys = {CARRIER: [r["id"] for r in receipts], TERMINAL: [], FORWARDER: []}
    accepted(carrier.post("/v1/events", {"events": [
        event("vessel-depa", "TRANSPORT.DEPA", ("vessel", VESSEL["imo"]), "2026-11-20T06:10:00Z",
              location="CNYTN", details={"vessel": VESSEL}),
        event("vessel-arri", "TRANSPORT.ARRI", ("vessel", VESSEL["imo"]), "2026-11-24T07:20:00Z",
              location="HKHKG", details={"vessel": VESSEL}),
    ]}))  # fmt: skip
    keys[CARRIER] += ["vessel-depa", "vessel-arri"]

    # The terminal reports discharge and release of each container (reference-readable).
    items = []
    for i, number in enumerate(CONTAINERS):
        items.append(event(f"disc-{number}", "TERMINAL.DISC", ("container", number),
                           f"2026-11-24T08:{10 + i}:00Z", location="HKHKG",
                           related=(("vessel", VESSEL["imo"]),),
                           details={"stowage": f"0{i}0482", "note": SECRET}))
        items.append(event(f"avpu-{number}", "TERMINAL.AVPU", ("container", number),
                           f"2026-11-24T11:{10 + i}:00Z", location="HKHKG"))
    accepted(terminal.post("/v1/events", {"events": items}))
    keys[TERMINAL] += [e["id"] for e in items]
    for key in keys[CARRIER]:
        port.final(CARRIER, key)

    # The forwarder links its house B/L to two of the three containers.
    receipts = accepted(forwarder.post(f"/v1/bills-of-lading/{MASTER}/houses", {
        "house": HOUSE, "containers": list(CONTAINERS[:2]),
    }))  # fmt: skip
    keys[FORWARDER] += [r["id"] for r in receipts]
    for org, org_keys in keys.items():
        for key in org_keys:
            port.final(org, key)

    # The trader holds only the house B/L number: it sees exactly the two containers.
    def trader_view() -> Any:
        status, view = port.track(TRADER, HOUSE)
        if status != 200 or len(container_numbers(view)) < 2:
            return None
        statuses = {c["number"]: c.get("status") for c in view["containers"]}
        return view if all(statuses.values()) else None

    view = eventually(trader_view, "the trader's view of the house B/L")
    assert container_numbers(view) == set(CONTAINERS[:2])
    assert CONTAINERS[2] not in json.dumps(view)
    assert {c["status"] for c in view["containers"]} <= {"available-for-pick-up", "discharged"}

    # The bank holds the master B/L number but no grant: it sees nothing of it.
    status, body = port.track(BANK, MASTER)
    assert status == 404 or not container_numbers(body), body
    for secret in (*CONTAINERS, VESSEL["name"]):
        assert secret not in json.dumps(body)

    # Granted, it sees the master B/L's containers ...
    receipts = accepted(carrier.post("/v1/grants", {
        "subject": {"kind": "mbl", "value": MASTER}, "reader": BANK,
    }))  # fmt: skip
    for r in receipts:
        port.final(CARRIER, r["id"])

    def bank_view() -> Any:
        status, view = port.track(BANK, MASTER)
        return view if status == 200 and container_numbers(view) == set(CONTAINERS) else None

    before = eventually(bank_view, "the bank's view after the grant")
    seen_before = {e.get("eventId") for e in before.get("timeline", [])}

    # ... revoked, it sees no new event of the master B/L.
    status, body, _ = carrier.delete(f"/v1/grants/mbl/{MASTER}/{BANK}")
    assert status in (200, 202), body
    for r in body["receipts"]:
        port.final(CARRIER, r["id"])
    accepted(carrier.post("/v1/events", {"events": [
        event("mbl-hold", "SHIPMENT.HOLD", ("mbl", MASTER), "2026-11-24T12:00:00Z",
              location="HKHKG", details={"reason": "documents pending"}, mode="named",
              readers=(FORWARDER,)),
    ]}))  # fmt: skip
    held = port.final(CARRIER, "mbl-hold")

    def carrier_sees_hold() -> Any:
        status, view = port.track(CARRIER, MASTER)
        ids = {e.get("eventId") for e in view.get("timeline", [])} if status == 200 else set()
        return view if held["eventId"] in ids else None

    eventually(carrier_sees_hold, "the carrier's own new event to be indexed")
    status, after = port.track(BANK, MASTER)
    after_ids = {e.get("eventId") for e in after.get("timeline", [])} if status == 200 else set()
    assert held["eventId"] not in after_ids
    assert "documents pending" not in json.dumps(after)
    assert after_ids <= seen_before

    # The owners see who read their data (the access log is written in batches, about once
    # a second, so the latest reads may take that long to appear).
    def readers_seen_by(owner: Any) -> set[int]:
        status, log, _ = owner.get("/v1/access-log")
        assert status == 200, log
        return {entry.get("reader") for entry in log["entries"]}

    eventually(lambda: BANK in readers_seen_by(carrier), "the bank in the carrier's log")
    eventually(lambda: TRADER in readers_seen_by(terminal), "the trader in the terminal's log")

    # A bank financing the cargo asks the carrier for proof of the master B/L; the carrier
    # approves, disclosing its B/L record; the bank checks the bundle offline against genesis.
    bank = port.clients[BANK]
    issued = port.final(CARRIER, f"bl:{MASTER}:event")["eventId"]
    status, asked, _ = bank.post("/v1/proof-requests", {
        "owner": CARRIER, "reference": MASTER, "purpose": "financing the cargo",
        "disclose": [issued]})  # fmt: skip
    assert status == 201, asked
    status, decided, _ = carrier.post(f"/v1/proof-requests/{asked['id']}/approve", {})
    assert status == 200 and issued in decided["granted"]["disclosed"], decided
    status, bundle, headers = bank.get(f"/v1/proof-requests/{asked['id']}/bundle")
    assert status == 200 and "attachment" in headers["Content-Disposition"], bundle
    genesis = json.loads(port.layout.genesis_path.read_text())
    verified = verify_bundle(bundle, genesis)
    assert independent_verifier.check(bundle, genesis) is None
    [shown] = [e for e in verified.events if e.plaintext is not None]
    assert shown.cargo is not None and shown.cargo.event_id == issued
    assert from_plaintext(shown.plaintext).subject.value == MASTER
    status, log, _ = carrier.get("/v1/access-log")
    assert (BANK, "proof") in {(e["reader"], e["via"]) for e in log["entries"]}, log


def _needles() -> list[bytes]:
    return [s.encode() for s in (SECRET, VESSEL["name"], MASTER, HOUSE, *CONTAINERS)]


def test_no_plaintext_in_rpc_answers(port: Port) -> None:
    node = port.layout.observers[0]
    head = int(rpc_call(node, "eth_blockNumber"), 16)
    answers = [json.dumps(rpc_call(node, "eth_getLogs", [{"fromBlock": "0x0",
                                                           "toBlock": hex(head)}]))]
    for number in range(head + 1):
        block = rpc_call(node, "eth_getBlockByNumber", [hex(number), True])
        answers.append(json.dumps(block))
        answers.append(json.dumps(rpc_call(node, "eth_getBlockReceipts", [hex(number)])))
    text = "\n".join(answers).lower()
    assert subject_key(CONTAINERS[0]).hex() in text  # the events are in the answers
    for needle in _needles():
        assert needle.hex() not in text, needle
        assert needle.decode().lower() not in text, needle


def test_no_plaintext_in_validator_leveldb(port: Port, tmp_path: Path) -> None:
    port.devnet.stop()  # LevelDB allows one process; copy nothing while nodes write
    try:
        for node in port.layout.validators:
            raw = b"".join(p.read_bytes() for p in node.datadir.rglob("*") if p.is_file())
            copy = tmp_path / node.name
            shutil.copytree(node.datadir / "chain", copy) if (node.datadir / "chain").exists() \
                else shutil.copytree(node.datadir, copy)
            values = []
            db_dirs = {p.parent for p in copy.rglob("CURRENT")}
            assert db_dirs, f"no LevelDB under {copy}"
            for db_dir in db_dirs:
                db = plyvel.DB(str(db_dir))
                try:
                    values += [k + b"\x00" + v for k, v in db]
                finally:
                    db.close()
            decoded = b"".join(values)
            # The events are there (their subject keys are), only their plaintext is not.
            assert subject_key(CONTAINERS[0]) in decoded and subject_key(MASTER) in decoded
            for needle in _needles():
                assert needle not in raw, (node.name, needle)
                assert needle not in decoded, (node.name, needle)
    finally:
        port.devnet.start()
        port.devnet.wait_ready()


def test_bad_input_gets_clear_4xx(port: Port) -> None:
    carrier = port.clients[CARRIER]
    good = event("x", "TERMINAL.DISC", ("container", CONTAINERS[0]), "2026-11-24T08:00:00Z")

    def error_of(response: tuple[int, Any, dict[str, str]]) -> tuple[int, str]:
        status, body, headers = response
        assert 400 <= status < 500, (status, body)
        assert headers.get("Content-Type", "").startswith("application/json"), headers
        assert body["error"]["message"], body
        return status, body["error"]["code"]

    assert error_of(carrier.post("/v1/events", raw=b'{"events": [')) == (400, "bad-json")
    assert error_of(carrier.post("/v1/events", {"events": [{**good, "colour": "red"}]}))[0] == 422
    bad_container = {**good, "subject": {"kind": "container", "value": "CSQU3054384"}}
    status, code = error_of(carrier.post("/v1/events", {"events": [bad_container]}))
    assert status == 422 and "check" in code
    huge = json.dumps({"events": [good] * 1}).encode() + b" " * (2 << 20)
    assert error_of(carrier.post("/v1/events", raw=huge))[0] == 413
    for hostile in ("'; DROP TABLE events;--", "<script>alert(1)</script>", "%00%27%22"):
        status, body, headers = carrier.get("/v1/track/" + urllib.parse.quote(hostile, safe=""))
        assert 400 <= status < 500 and headers["Content-Type"].startswith("application/json")
        assert "<script>" not in json.dumps(body.get("suggestions", []))
    assert error_of(port.anonymous.get(f"/v1/track/{HOUSE}"))[0] == 401
    assert error_of(GatewayClient(port.gateway.url, "plk_nope_nope").get("/v1/me"))[0] == 401
    # Everything accepted before is still there.
    assert port.track(TRADER, HOUSE)[0] == 200


def test_schemathesis_finds_no_server_error(port: Port, tmp_path: Path) -> None:
    """Fuzz every documented operation; any 5xx (or a crash) fails."""
    carrier = next(o for o in port.gateway.credentials()["organisations"]
                   if o["chainOrg"] == CARRIER)  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run",
         f"{port.gateway.url}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "15", "--generation-deterministic", "--request-timeout", "20",
         "--header", f"Authorization: Bearer {carrier['apiKey']}",
         "--exclude-path", "/v1/session", "--exclude-path-regex", "^/v1/api-keys"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 500, report
