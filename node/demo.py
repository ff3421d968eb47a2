"""``portledger demo``: a whole demo port network and a visible cargo-event round trip.

What it does, in the order it prints:

1. creates a devnet (:mod:`node.devnet`): four validators — one per stakeholder organisation
   (operator, two terminals, carrier), each with a freshly generated key — and one
   non-validating observer node, every one its own OS process, talking QBFT over mutually
   authenticated TLS on loopback, and shows their status;
2. plays a SIMULATED vessel call through the real interfaces: the carrier reports the vessel's
   arrival at Hong Kong, the terminal reports discharge and release ("available for pick-up")
   of each container — every event's payload JSON encrypted with AES-256-GCM, its keccak hash
   and ciphertext recorded on chain through ``CargoLedger.record()`` in signed, zero-fee
   transactions sent over JSON-RPC;
3. reads the events back with ``eth_getLogs`` by subject (container) from the *observer*,
   decrypts them, checks the payload hashes, and shows which validators sealed each block
   (checked against the validator list of the parent header);
4. stops the network, checks every node has the same head, and replays the observer's chain
   from genesis, re-checking every root.

Exit status 0 only if every step checked out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from rich.console import Console
from rich.table import Table

from consensus import extradata
from contracts import SYSTEM_ADDRESSES
from contracts.cargo import (
    CARGO_EVENT_TOPIC,
    EVENT_TYPES,
    CargoEventInput,
    decode_event_log,
    encode_record_call,
    subject_key,
)
from node.genesis import dev_key

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS = ("MSKU1234565", "CSQU3054383", "TGHU9876543", "OOLU8512343")
VESSEL = {"name": "PACIFIC HARMONY (simulated)", "imo": "9811000", "voyage": "042E"}


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']['message']}")
    return answer["result"]


def _event(
    reference: str, kind: str, when: int, payload: dict[str, Any], key: bytes
) -> CargoEventInput:
    plaintext = json.dumps({"simulated": True, **payload}, sort_keys=True).encode()
    nonce = os.urandom(12)
    ciphertext = nonce + AESGCM(key).encrypt(nonce, plaintext, None)
    return CargoEventInput(
        subject=subject_key(reference),
        event_type=EVENT_TYPES[kind],
        classifier=3,
        event_time=when,
        location="HKHKG",
        payload_hash=keccak(plaintext),
        payload=ciphertext,
    )


def _send(url: str, account: Any, chain_id: int, events: list[CargoEventInput]) -> str:
    nonce = int(_rpc(url, "eth_getTransactionCount", [account.address, "pending"]), 16)
    signed = account.sign_transaction(
        {
            "to": SYSTEM_ADDRESSES["CargoLedger"],
            "data": encode_record_call(events),
            "gas": 1_000_000 + 60_000 * len(events),
            "nonce": nonce,
            "chainId": chain_id,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
        }
    )
    return str(_rpc(url, "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]))


def _receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = _rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt:
            return dict(receipt)
        time.sleep(0.2)
    raise RuntimeError(f"transaction {tx_hash} not included within {timeout}s")


def run_demo(datadir: str | None, event_count: int) -> int:
    from node.devnet import Devnet, create_devnet, open_or_create, status_table

    console = Console()
    if datadir is None:
        datadir = str(Path(tempfile.mkdtemp(prefix="portledger-demo-")) / "devnet")
    python = sys.executable
    console.rule("[bold]PortLedger demo — four validators, an observer and a SIMULATED vessel call")
    root = Path(datadir)
    layout = open_or_create(root) if (root / "devnet.json").exists() else create_devnet(root)
    devnet = Devnet(layout)
    ok = True
    try:
        devnet.start()
        devnet.wait_ready(timeout=120)
        devnet.wait_for(
            lambda: all(
                len(s.peers or []) >= len(layout.validators)
                for s in devnet.statuses()[: len(layout.validators)]
            ),
            60,
            what="every validator connected to its peers",
        )
        console.print(status_table(devnet.statuses(), title="the network"))
        url = layout.validators[1].rpc_url
        observer_url = layout.observers[0].rpc_url if layout.observers else url
        chain_id = int(_rpc(url, "eth_chainId", []), 16)
        console.print(
            f"transactions go to {url}; reads come from the observer {observer_url}; chain id {chain_id}; logs in {root}"
        )
        carrier = Account.from_key(dev_key("org:3").to_bytes())
        terminal = Account.from_key(dev_key("org:1").to_bytes())
        data_key = AESGCM.generate_key(bit_length=256)
        base = int(time.time())
        sent: list[tuple[str, str, int]] = []
        arrival = _event(
            CONTAINERS[0], "TRANSPORT.ARRI", base, {"vessel": VESSEL, "berth": "CT9-N2"}, data_key
        )
        sent.append(("carrier: vessel arrived", _send(url, carrier, chain_id, [arrival]), 1))
        events: list[CargoEventInput] = []
        steps = ("TERMINAL.DISC", "TERMINAL.AVPU", "TERMINAL.GTOT")
        for i in range(event_count):
            container = CONTAINERS[i % len(CONTAINERS)]
            step = steps[min(i // len(CONTAINERS), len(steps) - 1)]
            payload = {
                "container": container,
                "vessel": VESSEL["name"],
                "yard": f"Y{i % 7}-{i % 11:02d}",
            }
            events.append(_event(container, step, base + 60 * (i + 1), payload, data_key))
        sent.append(
            (f"terminal: {len(events)} events", _send(url, terminal, chain_id, events), len(events))
        )
        table = Table(title="recorded on chain")
        for col in ("what", "tx", "block", "events", "gas", "sealed by"):
            table.add_column(col, no_wrap=True)
        for what, tx_hash, count in sent:
            receipt = _receipt(observer_url, tx_hash)
            ok &= receipt["status"] == "0x1"
            block = _rpc(observer_url, "eth_getBlockByNumber", [receipt["blockNumber"], False])
            extra = extradata.decode(bytes.fromhex(block["extraData"][2:]))
            header = _header_from_rpc(block)
            # The seals of block N come from the validators listed in header N - 1 (Besu).
            parent = _rpc(observer_url, "eth_getBlockByHash", [block["parentHash"], False])
            sealers = extradata.decode(bytes.fromhex(parent["extraData"][2:])).validators
            signers = extradata.verify_seals(extradata.commit_digest(header), extra.seals, sealers)
            table.add_row(
                what,
                tx_hash[:18] + "…",
                str(int(receipt["blockNumber"], 16)),
                str(count),
                str(int(receipt["gasUsed"], 16)),
                ", ".join(to_checksum_address(s)[:10] + "…" for s in signers),
            )
        console.print(table)
        # Read back by container, as a tracking query would.
        track = Table(
            title=f"tracking {CONTAINERS[1]} (read back with eth_getLogs, decrypted, hash-checked)"
        )
        for col in ("event id", "type", "time", "at", "yard (decrypted)", "hash ok"):
            track.add_column(col)
        logs = _rpc(
            observer_url,
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "address": SYSTEM_ADDRESSES["CargoLedger"],
                    "topics": [
                        ["0x" + CARGO_EVENT_TOPIC.hex()],
                        ["0x" + subject_key(CONTAINERS[1]).hex()],
                    ],
                }
            ],
        )
        names = {v: k for k, v in EVENT_TYPES.items()}
        for entry in logs:
            event = decode_event_log(
                [bytes.fromhex(t[2:]) for t in entry["topics"]], bytes.fromhex(entry["data"][2:])
            )
            plaintext = AESGCM(data_key).decrypt(event.payload[:12], event.payload[12:], None)
            hash_ok = keccak(plaintext) == event.payload_hash
            ok &= hash_ok
            track.add_row(
                hex(event.event_id),
                names[event.event_type],
                time.strftime("%H:%M:%S", time.gmtime(event.event_time)),
                event.location,
                json.loads(plaintext)["yard"],
                "yes" if hash_ok else "NO",
            )
        console.print(track)
        expected = sum(1 for e in events if e.subject == subject_key(CONTAINERS[1]))
        ok &= len(logs) == expected
        console.print(f"{len(logs)} events for {CONTAINERS[1]} (expected {expected})")
        devnet.wait_for(
            lambda: len({h for h in devnet.heads()}) == 1, 30, what="every node at the same head"
        )
        heads = devnet.heads()
        console.print(status_table(devnet.statuses(), title="the network after the vessel call"))
        console.print(f"every node's head: #{heads[0][0]} {heads[0][1][:18]}…")
    except Exception as exc:  # report, stop the network, exit non-zero
        console.print(f"[bold red]demo failed: {exc}")
        ok = False
    finally:
        devnet.stop()
    console.rule("auditor replay from genesis (the observer's copy)")
    observer_dir = str((layout.observers[0] if layout.observers else layout.validators[0]).datadir)
    replay = subprocess.run(
        [python, "-m", "node", "replay", "--datadir", observer_dir], capture_output=True, text=True
    )
    console.print(replay.stdout.strip() or replay.stderr.strip())
    ok &= replay.returncode == 0
    console.rule("[bold green]demo OK" if ok else "[bold red]demo FAILED")
    return 0 if ok else 1


def _header_from_rpc(block: dict[str, Any]) -> Any:
    """Rebuild a py-evm header from its JSON-RPC form (to recompute the seal digest)."""
    from node.chain import QbftBlockHeader

    def b(name: str) -> bytes:
        return bytes.fromhex(block[name][2:])

    def n(name: str) -> int:
        return int(block[name], 16)

    header = QbftBlockHeader(
        parent_hash=b("parentHash"),
        uncles_hash=b("sha3Uncles"),
        coinbase=b("miner"),
        state_root=b("stateRoot"),
        transaction_root=b("transactionsRoot"),
        receipt_root=b("receiptsRoot"),
        bloom=int.from_bytes(b("logsBloom"), "big"),
        difficulty=n("difficulty"),
        block_number=n("number"),
        gas_limit=n("gasLimit"),
        gas_used=n("gasUsed"),
        timestamp=n("timestamp"),
        extra_data=b("extraData"),
        mix_hash=b("mixHash"),
        nonce=b("nonce"),
        base_fee_per_gas=n("baseFeePerGas"),
        withdrawals_root=b("withdrawalsRoot"),
        blob_gas_used=n("blobGasUsed"),
        excess_blob_gas=n("excessBlobGas"),
        parent_beacon_block_root=b("parentBeaconBlockRoot"),
        requests_hash=b("requestsHash"),
    )
    if "0x" + header.hash.hex() != block["hash"]:
        raise RuntimeError(f"block {block['number']}: header fields do not hash to {block['hash']}")
    return header
