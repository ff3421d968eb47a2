"""Per-event cost of ``CargoLedger.record()`` on py-evm: gas and execution time by batch size.

Run from the repository root::

    .venv/bin/python bench/bench_contracts.py [--reps 9] [--payload 0 96] [--codegen]
                                              [--alternatives]

For each payload size and each batch size (1, 10, 100, 500 events per call) it applies one
signed ``record()`` transaction to a py-evm PragueVM state (the chain eth-tester runs, with
Consortium and CargoLedger deployed and one terminal organisation) and reports, per event:

- ``gas``: gas charged, which under Prague (EIP-7623) is the calldata floor for calldata-heavy
  transactions: 21000 + 10 per zero byte + 40 per non-zero byte;
- ``exec gas``: gas used by EVM execution alone (no intrinsic or calldata cost);
- ``µs``: CPU time of ``VM.apply_transaction`` (validation, execution, receipt), the minimum
  of ``--reps`` runs (the least disturbed by other load on the machine), each on a fresh VM
  over the same parent state, in which the batch counter is already non-zero;

and the ratio of the single-event figure to the per-event figure at each batch size, computed
in the same run. ``--codegen`` also measures CargoLedger compiled with the other Vyper pipeline
(legacy vs Venom); ``--alternatives`` measures the encodings that were rejected (an ABI
``Bytes`` batch argument, and an ABI array of structs logged with a Vyper event) and a bare
loop that only copies and logs each event, the lower bound of this design on py-evm.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import vyper
from eth_abi import encode
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak, to_canonical_address
from vyper.compiler.settings import Settings
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

import contracts
from contracts import build, cargo

BATCH_SIZES = (1, 10, 100, 500)
T0 = 1_795_000_000

# Rejected encodings, kept here so the comparison can be rerun.
ALT_BYTES_ARG = """
#pragma version ~=0.4.3
#pragma evm-version prague
counter: public(uint256)
@external
def record(batch: Bytes[131072]):
    n: uint256 = len(batch)
    off: uint256 = 0
    i: uint256 = 0
    for _: uint256 in range(1000):
        if off >= n:
            break
        w: uint256 = convert(extract32(batch, off), uint256)
        l: uint256 = (w >> 72) & 65535
        subject: bytes32 = extract32(batch, off + 23)
        raw_log([keccak256("X"), subject, convert(i, bytes32), convert(i, bytes32)], slice(batch, off, 87 + l))
        off += 87 + l
        i += 1
    self.counter += 1
"""

# Lower bound: one header copy and one LOG4 per event, nothing else (no checks, no lookup).
BARE_LOOP = """
#pragma version ~=0.4.3
#pragma evm-version prague
counter: public(uint256)
@external
def record() -> uint256:
    end: uint256 = len(msg.data)
    off: uint256 = 4
    for i: uint256 in range(1000):
        head: Bytes[87] = slice(msg.data, off, 87)
        raw_log([keccak256("X"), extract32(head, 23), convert(i, bytes32), convert(i, bytes32)], head)
        off = unsafe_add(off, 87)
        if off == end:
            break
    self.counter += 1
    return 1
"""

ALT_STRUCT_ARRAY = """
#pragma version ~=0.4.3
#pragma evm-version prague
struct Ev:
    subject: bytes32
    fields: uint256
    payload_hash: bytes32
    payload: Bytes[1024]
event CargoEvent:
    subject: indexed(bytes32)
    publisher: indexed(uint256)
    event_id: indexed(uint256)
    fields: uint256
    payload_hash: bytes32
    payload: Bytes[1024]
counter: public(uint256)
@external
def record(events: DynArray[Ev, 500]):
    i: uint256 = 0
    for e: Ev in events:
        log CargoEvent(subject=e.subject, publisher=1, event_id=i, fields=e.fields, payload_hash=e.payload_hash, payload=e.payload)
        i += 1
    self.counter += 1
"""


class Bench:
    """A py-evm chain with the contracts deployed and a terminal organisation's key."""

    def __init__(self, venom: bool | None = None) -> None:
        self.backend = PyEVMBackend()
        self.w3 = Web3(EthereumTesterProvider(EthereumTester(self.backend)))
        self.key = self.backend.account_keys[0]
        self.sender = self.w3.eth.accounts[0]
        member = {
            "name": "Kwai Chung Terminal",
            "roles": ["terminal"],
            "accounts": [self.sender],
            "encryptionKey": "0x" + "01" * 32,
        }
        addresses: dict[str, str] = {}
        for name in ("Consortium", "CargoLedger"):
            art = build.build_artifact(name, venom if name == "CargoLedger" else None)
            args = contracts.constructor_args(name, [member], [self.sender], addresses=addresses)
            addresses[name] = self.deploy(art["abi"], art["bytecode"], args)
        self.ledger = addresses["CargoLedger"]
        # Steady state: the batch counter is already non-zero, as on a running chain.
        first = cargo.encode_record_call(cargo_events(1, 0))
        self.w3.eth.send_transaction({"from": self.sender, "to": self.ledger, "data": first})

    def deploy(self, abi: list[Any], bytecode: str, args: list[Any]) -> str:
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = factory.constructor(*args).transact({"from": self.sender})
        return str(self.w3.eth.get_transaction_receipt(tx).contractAddress)

    def deploy_source(self, source: str, venom: bool = False) -> tuple[str, list[Any]]:
        out = vyper.compile_code(
            source,
            output_formats=["abi", "bytecode"],
            settings=Settings(evm_version="prague", experimental_codegen=venom),
        )
        return self.deploy(out["abi"], out["bytecode"], []), out["abi"]

    def apply(self, to: str, data: bytes, reps: int) -> tuple[int, int, float]:
        """Apply one transaction ``reps`` times to fresh VMs; return gas, exec gas, median s."""
        chain = self.backend.chain
        vm = chain.get_vm()
        nonce = vm.state.get_nonce(to_canonical_address(self.sender))
        unsigned = chain.create_unsigned_transaction(
            nonce=nonce,
            gas_price=10**10,
            gas=29_000_000,
            to=to_canonical_address(to),
            value=0,
            data=data,
        )
        tx = unsigned.as_signed_transaction(self.key, chain_id=chain.chain_id)
        tx.sender  # noqa: B018  (recover the sender once, outside the timing)
        times, gas, exec_gas = [], 0, 0
        for _ in range(reps):
            vm = chain.get_vm()
            start = time.process_time()
            receipt, computation = vm.apply_transaction(vm.get_header(), tx)
            times.append(time.process_time() - start)
            if computation.is_error:
                raise RuntimeError(f"transaction failed: {computation.error!r}")
            gas, exec_gas = receipt.gas_used, computation.get_gas_used()
        return gas, exec_gas, min(times)


#: Terminal event types a mixed batch cycles through, so no event repeats its predecessor's type.
MIXED_TYPES = ("TERMINAL.DISC", "TERMINAL.GTOT", "TERMINAL.LOAD", "TERMINAL.GTIN", "REEFER.MEAS")


def cargo_events(n: int, payload: int, mixed: bool = False) -> list[cargo.CargoEventInput]:
    """``n`` terminal events with random subjects, hashes and payloads.

    All are discharges (DISC, actual), or with ``mixed`` every event differs in type or
    classifier from the one before it, which defeats the contract's repeated-type shortcut.
    """
    events = []
    for i in range(n):
        kind = MIXED_TYPES[i % len(MIXED_TYPES)] if mixed else "TERMINAL.DISC"
        events.append(
            cargo.CargoEventInput(
                subject=os.urandom(32),
                event_type=cargo.EVENT_TYPES[kind],
                classifier=1 + (i % 3 if mixed else 2),
                event_time=T0 + i,
                location="HKHKG",
                payload_hash=os.urandom(32),
                payload=os.urandom(payload),
            )
        )
    return events


def table(title: str, rows: list[tuple[int, int, int, int, float]]) -> None:
    """Print one table: per-event figures and the ratios to the single-event call."""
    print(f"\n{title}")
    print(
        f"{'events':>6} {'bytes/ev':>9} {'gas/ev':>9} {'exec gas/ev':>11} {'µs/ev':>9}"
        f" {'gas 1/n':>8} {'µs 1/n':>8}"
    )
    _, _, gas1, _, t1 = rows[0]
    for n, size, gas, exec_gas, t in rows:
        print(
            f"{n:>6} {size / n:>9.1f} {gas / n:>9.0f} {exec_gas / n:>11.0f} {t / n * 1e6:>9.1f}"
            f" {gas1 / (gas / n):>7.1f}x {t1 / (t / n):>7.1f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9, help="runs per measurement (minimum)")
    parser.add_argument(
        "--payload", type=int, nargs="+", default=[0, 96], help="encrypted payload bytes per event"
    )
    parser.add_argument(
        "--codegen",
        action="store_true",
        help="also measure CargoLedger built with the other Vyper pipeline",
    )
    parser.add_argument(
        "--alternatives", action="store_true", help="also measure the rejected encodings"
    )
    args = parser.parse_args()
    venom = "CargoLedger" in build.VENOM_CONTRACTS
    print(
        f"CargoLedger.record() on py-evm PragueVM (eth-tester chain), vyper {vyper.__version__}, "
        f"minimum of {args.reps} runs"
    )
    pipelines = [venom, not venom] if args.codegen else [venom]
    for use_venom in pipelines:
        bench = Bench(use_venom)
        codegen = "venom" if use_venom else "legacy"
        built = " (as built)" if use_venom == venom else " (alternative)"
        scenarios = [(p, False) for p in args.payload] + [(args.payload[0], True)]
        for payload, mixed in scenarios:
            rows = []
            for n in BATCH_SIZES:
                data = cargo.encode_record_call(cargo_events(n, payload, mixed))
                gas, exec_gas, t = bench.apply(bench.ledger, data, args.reps)
                rows.append((n, len(data), gas, exec_gas, t))
            kinds = "mixed types" if mixed else "one type"
            table(
                f"CargoLedger [{codegen}{built}], {payload}-byte encrypted payload per event, "
                f"{kinds}",
                rows,
            )
    if args.alternatives:
        bench = Bench()
        payload = args.payload[-1]
        addr, _ = bench.deploy_source(ALT_BYTES_ARG)
        selector = keccak(b"record(bytes)")[:4]
        rows = []
        for n in BATCH_SIZES:
            # exact lengths: this variant can slice variable lengths, so it needs no padding
            packed = b"".join(
                cargo.encode_event(e)[: cargo.HEADER_SIZE + payload]
                for e in cargo_events(n, payload)
            )
            data = selector + encode(["bytes"], [packed])
            gas, exec_gas, t = bench.apply(addr, data, args.reps)
            rows.append((n, len(data), gas, exec_gas, t))
        table(f"rejected: ABI bytes argument, raw_log slices ({payload}-byte payload)", rows)
        addr, _ = bench.deploy_source(ALT_STRUCT_ARRAY)
        selector = keccak(b"record((bytes32,uint256,bytes32,bytes)[])")[:4]
        rows = []
        for n in BATCH_SIZES:
            evs = [(os.urandom(32), T0, os.urandom(32), os.urandom(payload)) for _ in range(n)]
            data = selector + encode(["(bytes32,uint256,bytes32,bytes)[]"], [evs])
            gas, exec_gas, t = bench.apply(addr, data, args.reps)
            rows.append((n, len(data), gas, exec_gas, t))
        table(f"rejected: ABI array of structs, Vyper event ({payload}-byte payload)", rows)
        addr, _ = bench.deploy_source(BARE_LOOP, venom=True)
        rows = []
        for n in BATCH_SIZES:
            data = cargo.RECORD_SELECTOR + b"".join(
                cargo.encode_event(e) for e in cargo_events(n, 0)
            )
            gas, exec_gas, t = bench.apply(addr, data, args.reps)
            rows.append((n, len(data), gas, exec_gas, t))
        table("lower bound: bare loop, one copy and one LOG4 per event, 0-byte payload", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
