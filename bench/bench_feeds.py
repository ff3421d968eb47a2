"""Feeds: parser speed on one core, and the gateway taking real-format feeds on a running devnet.

    .venv/bin/python -m bench.bench_feeds [--seconds 60] [--vessels 2000] [--containers 10000]
    .venv/bin/python -m bench.bench_feeds --parsers-only

**Parsers** (in this process, one core, side by side in the same run):

- AIS: :func:`gateway.feeds.ais.parse` over GPSD's real receiver log (``tests/data/ais``,
  types 1/3/5/18/24/8, repeated to ``--ais-sentences``) and over a stream of type 1 positions,
  each beside pyais decoding the very same sentences one by one with no reassembly, tag blocks,
  joins or checks (the ratio is what our adapter costs over the bare library);
- EDIFACT: :func:`gateway.feeds.edifact.parse` of a SIMULATED 10,000-container COARRI
  (:func:`devnet.simfeeds.edifact.benchmark_coarri`) in segments/s, beside pydifact's own
  ``Interchange.from_str`` of the same text;
- Cargo-IMP: FSU messages/s.

**On the devnet** (4 validators + 1 observer + the gateway, each its own process, loopback):

- COARRI: the terminal uploads the 10,000-container discharge report through
  ``POST /v1/feeds/edifact``; the time to the 202 (accepted into the outbox) and until every
  one of its 10,000 events is final — counted on the observer with ``eth_getLogs``
  (CargoEvent logs of the terminal), not taken from the gateway's word.
- AIS: the operator sends ``--vessels`` vessels' positions once a second each
  (``POST /v1/feeds/ais``, one file of ``--vessels`` tag-blocked type 1 sentences per second)
  for ``--seconds``; every second one vessel's new position is watched through
  ``GET /v1/vessels/{imo}/positions`` (its static data links the MMSI to the IMO number) until it
  shows: the latency from sending to showing. After the run: every stored reading anchored
  (the sum of the operator's ``Anchored`` log counts on the observer equals the readings
  stored), the time that took, and the gas per 1,000 readings from the anchors' receipts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from pyais import NMEAMessage
from pyais.encode import encode_dict
from pydifact.segmentcollection import Interchange

from contracts import SYSTEM_ADDRESSES
from contracts.anchors import KINDS
from contracts.cargo import CARGO_EVENT_TOPIC
from devnet.gateway import Port
from devnet.jsonrpc import rpc_call
from devnet.simfeeds import cargo_imp, edifact
from gateway.events.identifiers import imo_check_digit
from gateway.feeds import ais
from gateway.feeds import cargo_imp as fsu
from gateway.feeds import edifact as edi
from proofs.checks import ANCHORED_TOPIC

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "ais"
OPERATOR, TERMINAL = 1, 2
T0 = 1_795_000_000


def _best(fn: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _pyais_bare(lines: list[bytes]) -> None:
    for line in lines:
        try:
            NMEAMessage(line).decode()
        except Exception:  # the bare library on real data: fragments, garbage
            continue


def _position_lines(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        [line] = encode_dict({"type": 1, "mmsi": 477_000_000 + i % 5000, "status": 0,
                              "speed": 12.3, "lon": 114.1 + (i % 100) / 1000,
                              "lat": 22.2 + (i % 77) / 1000, "course": 181.0, "heading": 180,
                              "second": i % 60}, talker_id="AI", radio_channel="A")
        out.append(line.encode())
    return out


def parsers(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    log = [line for line in (DATA / "gpsd-ais-nmea.log").read_bytes().splitlines()
           if b"VDM" in line or b"VDO" in line]
    mixed = (log * (args.ais_sentences // len(log) + 1))[:args.ais_sentences]
    positions = _position_lines(min(args.ais_sentences, 50_000))
    for name, lines in (("ais-receiver-log", mixed), ("ais-type1", positions)):
        data = b"\n".join(lines) + b"\n"
        ours = _best(lambda d=data: ais.parse(d, received_at=T0), args.rounds)
        bare = _best(lambda ls=lines: _pyais_bare(ls), args.rounds)
        figures[name] = {"sentences": len(lines), "per_s": round(len(lines) / ours),
                         "pyais_bare_per_s": round(len(lines) / bare),
                         "ratio_to_pyais": round(bare / ours, 2)}
    coarri = edifact.benchmark_coarri(args.containers)
    text = coarri.decode()
    segments = text.count("'")
    ours = _best(lambda: edi.parse(coarri, received_at=T0), args.rounds)
    with warnings.catch_warnings():  # pydifact warns for directories it has no XML for
        warnings.simplefilter("ignore")
        bare = _best(lambda: list(Interchange.from_str(text).segments), args.rounds)
    figures["edifact-coarri"] = {"containers": args.containers, "segments": segments,
                                 "per_s": round(segments / ours),
                                 "pydifact_bare_per_s": round(segments / bare),
                                 "ratio_to_pydifact": round(bare / ours, 2)}
    shipment = cargo_imp.AirShipment(awb="160-12345675", origin="HKG", destination="AMS",
                                     flight="CX0271", pieces=12, weight_kg=350.5)
    one = cargo_imp.write(cargo_imp.sequence(shipment, datetime(2026, 11, 20, 1, 30)))
    data = one * 250
    ours = _best(lambda: fsu.parse(data, received_at=T0), args.rounds)
    figures["cargo-imp-fsu"] = {"messages": 2000, "per_s": round(2000 / ours)}
    return figures


# -- devnet ------------------------------------------------------------------------------------
def _logs(port: Port, address: str, topics: list[Any], since: int) -> list[dict[str, Any]]:
    node = port.layout.observers[0]
    return list(rpc_call(node, "eth_getLogs", [{"fromBlock": hex(since), "toBlock": "latest",
                                               "address": address, "topics": topics}],
                         timeout=120))


def _head(port: Port) -> int:
    return int(rpc_call(port.layout.observers[0], "eth_blockNumber", [], timeout=10), 16)


def coarri_on_chain(port: Port, containers: int) -> dict[str, Any]:
    data = edifact.benchmark_coarri(containers, seed=int(time.time()))
    client = port.clients[TERMINAL]
    since = _head(port)
    start = time.monotonic()
    status, body, _ = client.request("POST", "/v1/feeds/edifact?visibility=reference", raw=data,
                                     headers={"Content-Type": "application/octet-stream"})
    accepted = time.monotonic() - start
    if status != 202:
        raise SystemExit(f"COARRI refused: {status} {str(body)[:300]}")
    events = len(body["receipts"])
    topic = "0x" + CARGO_EVENT_TOPIC.hex()
    publisher = "0x" + TERMINAL.to_bytes(32, "big").hex()
    found, deadline = 0, time.monotonic() + 300
    while time.monotonic() < deadline:
        found = len(_logs(port, SYSTEM_ADDRESSES["CargoLedger"], [topic, None, publisher], since))
        if found >= events:
            break
        time.sleep(0.5)
    final = time.monotonic() - start
    return {"containers": containers, "bytes": len(data), "events": events,
            "accepted_s": round(accepted, 2), "final_on_chain": found,
            "all_final_s": round(final, 2)}


def _vessel_lines(vessels: int, second: int) -> bytes:
    stamp = T0 + second
    lines = []
    for v in range(vessels):
        [line] = encode_dict({"type": 1, "mmsi": 477_100_000 + v, "status": 0, "speed": 14.0,
                              "lon": round(114.0 + v / 10_000 + second / 36_000, 6),
                              "lat": round(21.5 + v / 20_000, 6), "course": 45.0,
                              "heading": 45, "second": stamp % 60},
                             talker_id="AI", radio_channel="A")
        body = f"c:{stamp},s:PLBENCH"
        check = 0
        for char in body:
            check ^= ord(char)
        lines.append(f"\\{body}*{check:02X}\\{line}")
    return ("\n".join(lines) + "\n").encode()


def _static_lines(vessels: int) -> tuple[bytes, list[str]]:
    lines, imos = [], []
    for v in range(vessels):
        first = f"9{(200_000 + v) % 1_000_000:06d}"[:6]
        imo = first + str(imo_check_digit(first))
        imos.append(imo)
        lines += encode_dict({"type": 5, "mmsi": 477_100_000 + v, "ais_version": 2,
                              "imo": int(imo), "callsign": f"VR{v:04d}",
                              "shipname": f"BENCH {v} SIMULATED"[:20], "ship_type": 70,
                              "destination": "HKHKG", "month": 12, "day": 8, "hour": 10,
                              "minute": 0, "draught": 12.0, "dte": 0},
                             talker_id="AI", radio_channel="A", seq_id=v % 10)
    return ("\n".join(lines) + "\n").encode(), imos


def ais_sustained(port: Port, vessels: int, seconds: int) -> dict[str, Any]:
    client = port.clients[OPERATOR]
    headers = {"Content-Type": "application/octet-stream"}
    static, imos = _static_lines(vessels)
    status, body, _ = client.request("POST", "/v1/feeds/ais", raw=static, headers=headers)
    if status != 202:
        raise SystemExit(f"static data refused: {status} {str(body)[:300]}")
    files = [_vessel_lines(vessels, s) for s in range(seconds)]
    since = _head(port)
    latencies: list[float] = []
    stored = refused = 0
    late = 0
    watch_threads: list[threading.Thread] = []

    def watch(index: int, second: int, sent: float) -> None:
        imo = imos[index]
        want = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + second))
        deadline = sent + 30
        while time.monotonic() < deadline:
            code, found, _ = port.clients[TERMINAL].get(f"/v1/vessels/{imo}/positions?limit=1")
            track = (found or {}).get("positions") or (found or {}).get("track") or []
            if code == 200 and track and track[-1].get("time") == want:
                latencies.append(time.monotonic() - sent)
                return
            time.sleep(0.05)

    start = time.monotonic()
    for second, data in enumerate(files):
        due = start + second
        if time.monotonic() < due:
            time.sleep(due - time.monotonic())
        else:
            late += 1
        sent = time.monotonic()
        status, body, _ = client.request("POST", "/v1/feeds/ais", raw=data, headers=headers)
        if status != 202:
            refused += 1
            continue
        stored += body["readings"]["stored"]
        thread = threading.Thread(target=watch, args=(second % vessels, second, sent))
        thread.start()
        watch_threads.append(thread)
    elapsed = time.monotonic() - start
    for thread in watch_threads:
        thread.join(40)
    sent_all = time.monotonic()
    anchored, gas = 0, 0
    topic = "0x" + ANCHORED_TOPIC.hex()
    publisher = "0x" + OPERATOR.to_bytes(32, "big").hex()
    kind = "0x" + KINDS["AIS"].to_bytes(32, "big").hex()
    logs: list[dict[str, Any]] = []
    while time.monotonic() < sent_all + 180:
        logs = _logs(port, SYSTEM_ADDRESSES["Anchors"], [topic, None, publisher, kind], since)
        anchored = sum(int(log["data"][2 + 64:2 + 128], 16) for log in logs)
        if anchored >= stored:
            break
        time.sleep(1)
    anchor_s = time.monotonic() - sent_all
    for tx in {log["transactionHash"] for log in logs}:
        receipt = rpc_call(port.layout.observers[0], "eth_getTransactionReceipt", [tx],
                           timeout=30)
        gas += int(receipt["gasUsed"], 16)
    return {
        "vessels": vessels, "seconds": seconds, "offered_per_s": vessels,
        "stored": stored, "stored_per_s": round(stored / elapsed), "refused_uploads": refused,
        "late_seconds": late,
        "shown_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "shown_p90_s": round(statistics.quantiles(latencies, n=10)[-1], 3)
        if len(latencies) >= 10 else None,
        "watched": len(latencies),
        "anchored": anchored, "anchors": len(logs), "all_anchored_after_s": round(anchor_s, 1),
        "gas_per_1000_readings": round(gas * 1000 / anchored) if anchored else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ais-sentences", type=int, default=200_000)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vessels", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--parsers-only", action="store_true")
    parser.add_argument("--skip-ais", action="store_true", help="devnet: the COARRI only")
    args = parser.parse_args()
    results: dict[str, Any] = {"parsers": parsers(args)}
    print(json.dumps(results, indent=1), flush=True)
    if args.parsers_only:
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-feeds-"))
    port = Port(root, gateway_options={
        "telemetry_window_seconds": 2, "rate_limit_per_key": 10_000.0,
        "rate_limit_burst": 20_000, "max_bulk_body_bytes": 64 << 20})
    try:
        port.start()
        results["coarri_devnet"] = coarri_on_chain(port, args.containers)
        print(json.dumps({"coarri_devnet": results["coarri_devnet"]}, indent=1), flush=True)
        if not args.skip_ais:
            results["ais_devnet"] = ais_sustained(port, args.vessels, args.seconds)
            print(json.dumps({"ais_devnet": results["ais_devnet"]}, indent=1), flush=True)
    finally:
        port.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
