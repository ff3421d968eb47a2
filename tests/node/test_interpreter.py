"""The fast opcode loop gives exactly py-evm's results: a differential test on random programs.

Each case runs one random program (biased toward the inlined opcodes, with jumps, memory,
calldata, storage, logs, reverts and stack faults mixed in) through py-evm's stock Prague
computation and through :class:`node.interpreter.FastComputation` on identical states, and
compares everything observable: error class, gas remaining and refunded, output, stack, memory,
logs and storage. A failing seed prints itself; rerun it with ``INTERPRETER_SEED=<n>``.

The loop runs as Python source and, when built (``python -m node.native build``), compiled by
mypyc: the random programs go through each (``loop`` fixture); the compiled case is skipped,
saying so, where it has not been built.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import rlp
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.message import Message

import node.interpreter as interp
from node import native
from node.interpreter import FastComputation

CONTRACT = b"\x0c" * 20
SENDER = b"\x0a" * 20

INLINE_OPS = [0x01, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x1B, 0x1C, 0x36, 0x37,
              0x50, 0x51, 0x52, 0x5B, 0x5E, 0x5F, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4]
OTHER_OPS = [0x02, 0x04, 0x06, 0x0A, 0x19, 0x1A, 0x1D, 0x20, 0x30, 0x33, 0x34, 0x35, 0x38, 0x3D,
             0x54, 0x55, 0x58, 0x59, 0x5A, 0xF3, 0xFD, 0x00, 0xFE, 0x0C]


def random_program(rng: random.Random) -> bytes:
    out = bytearray()
    jumpdests: list[int] = []
    # A prelude of pushes (small values, memory offsets, shift counts, full words) so the
    # program usually runs for a while instead of dying on its first pop.
    for _ in range(rng.randint(0, 24)):
        value = rng.choice([0, 1, 2, 5, 32, 64, 96, 255, 256, 300, rng.getrandbits(256), rng.getrandbits(16)])
        out += bytes([0x7F]) + value.to_bytes(32, "big")
    for _ in range(rng.randint(1, 120)):
        roll = rng.random()
        if roll < 0.30:
            size = rng.choice([1, 1, 1, 2, 2, 4, 20, 32])
            value = rng.choice([0, 1, 2, 31, 32, 64, 255, 256, rng.getrandbits(8 * size)])
            value %= 1 << (8 * size)
            out.append(0x5F + size)
            out += value.to_bytes(size, "big")
        elif roll < 0.45:
            out.append(rng.choice(range(0x80, 0x90)) if rng.random() < 0.6 else rng.choice(range(0x90, 0xA0)))
        elif roll < 0.75:
            out.append(rng.choice(INLINE_OPS))
        elif roll < 0.80:
            # a jump to a recorded JUMPDEST, to a random place, or a conditional one
            target = rng.choice(jumpdests) if jumpdests and rng.random() < 0.7 else rng.randint(0, 300)
            out += bytes([0x61]) + target.to_bytes(2, "big") + bytes([rng.choice([0x56, 0x57])])
        elif roll < 0.88:
            jumpdests.append(len(out))
            out.append(0x5B)
        elif roll < 0.90:
            # a JUMPDEST byte inside a PUSH's data: jumping there is an invalid instruction
            jumpdests.append(len(out) + 1)
            out += bytes([0x61, 0x5B, 0x5B])
        else:
            out.append(rng.choice(OTHER_OPS))
    if rng.random() < 0.2:  # a truncated PUSH at the end of code
        out.append(0x7F)
        out += rng.randbytes(rng.randint(0, 31))
    return bytes(out)


def fresh_state() -> Any:
    chain = MiningChain.configure(vm_configuration=((0, PragueVM),), chain_id=1).from_genesis(
        AtomicDB(),
        {"difficulty": 0, "gas_limit": 30_000_000, "timestamp": 1},
        {SENDER: {"balance": 10**18, "nonce": 0, "code": b"", "storage": {}}},
    )
    return chain.get_vm().state


def run(computation_class: Any, code: bytes, calldata: bytes, gas: int, is_static: bool = False) -> dict[str, Any]:
    state = fresh_state()
    state.set_code(CONTRACT, code)
    state.set_storage(CONTRACT, 1, 7)
    message = Message(gas=gas, to=CONTRACT, sender=SENDER, value=0, data=calldata, code=code, code_address=CONTRACT,
                      is_static=is_static)
    context = state.get_transaction_context_class()(gas_price=0, origin=SENDER)
    computation = computation_class.apply_computation(state, message, context)
    return {
        "error": type(computation.error).__name__ if computation.is_error else None,
        "gas_remaining": computation.get_gas_remaining(),
        "gas_refund": computation.get_gas_refund(),
        "output": computation.output,
        "stack": [v if isinstance(v, int) else int.from_bytes(v, "big") for v in computation._stack.values],
        "memory": bytes(computation._memory._bytes),
        "logs": computation.get_log_entries(),
        "storage": [state.get_storage(CONTRACT, slot) for slot in range(4)],
    }


def check_seed(seed: int) -> None:
    rng = random.Random(seed)
    code = random_program(rng)
    calldata = rng.randbytes(rng.choice([0, 4, 36, 100]))
    gas = rng.choice([50, 500, 5_000, 100_000, 1_000_000])
    is_static = rng.random() < 0.1  # inside a STATICCALL: LOG and SSTORE must fail
    stock = run(PragueComputation, code, calldata, gas, is_static)
    fast = run(FastComputation, code, calldata, gas, is_static)
    assert fast == stock, f"INTERPRETER_SEED={seed}: code 0x{code.hex()} differs"


@pytest.fixture(params=["python", "compiled"])
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The loop under test, installed as the one FastComputation runs."""
    if request.param == "python":
        module = native.load_python()
    else:
        current, why = native.compiled_state()
        if not current:
            if os.environ.get("CI"):  # CI installs a compiler: the compiled loop must be tested
                pytest.fail(f"compiled EVM loop not built in CI: {why}")
            pytest.skip(f"compiled EVM loop: {why}")
        import importlib

        module = importlib.import_module("node.evmloop")
        assert native.is_compiled(module)
    assert native.is_compiled(module) == (request.param == "compiled")
    monkeypatch.setattr(interp, "LOOP", module)
    return module


def test_differential_random_programs(loop: Any) -> None:
    if "INTERPRETER_SEED" in os.environ:
        check_seed(int(os.environ["INTERPRETER_SEED"]))
        return
    errors = set()
    for seed in range(1500):
        check_seed(seed)
        errors.add(run(PragueComputation, random_program(random.Random(seed)), b"", 100_000)["error"])
    # the programs must exercise both success and the failure classes, or they prove little
    assert {None, "InsufficientStack", "InvalidJumpDestination", "InvalidInstruction", "OutOfGas"} <= errors
    static_errors = {run(PragueComputation, random_program(random.Random(seed)), b"", 100_000, True)["error"]
                     for seed in range(300)}
    assert "WriteProtection" in static_errors


@pytest.mark.slow
def test_differential_random_programs_long(loop: Any) -> None:
    for seed in range(1500, 50_000):
        check_seed(seed)


def test_a_planted_bug_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: break SUB's operand order and some seed must differ."""
    original = interp._run

    def buggy(computation: Any) -> None:
        values = computation._stack.values
        real_pop = values.pop
        del real_pop
        original(computation)
        if values:
            values[-1] = values[-1] if isinstance(values[-1], bytes) else (values[-1] ^ 1)

    monkeypatch.setattr(interp, "_run", buggy)
    with pytest.raises(AssertionError, match="INTERPRETER_SEED"):
        for seed in range(200):
            check_seed(seed)


def test_blocks_built_fast_import_on_stock_py_evm(loop: Any, ledger: Any, tmp_path: Any, genesis_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real CargoLedger blocks: built with the fast loop, re-executed by py-evm's own loop."""
    from eth.vm.forks.prague.state import PragueState

    from node.chain import PortLedgerVM
    from node.db import LevelDB
    from node.genesis import Genesis
    from node.ledger import Ledger
    from tests.support.chain import CARRIER, TERMINAL, VALIDATOR, cargo_tx

    blocks = []
    for n in range(3):
        txs = [cargo_tx(ledger, TERMINAL, 2 * n + i, events=20) for i in range(2)]
        txs.append(cargo_tx(ledger, CARRIER, n, kind="TERMINAL.DISC"))  # reverts: role check
        blocks.append(ledger.propose(txs, VALIDATOR, timestamp=2_000_000_000 + n).block)
    monkeypatch.setattr(PortLedgerVM, "_state_class", PragueState)
    # py-evm's own receipts and receipt check too (node.chain computes blooms its own way)
    monkeypatch.delattr(PortLedgerVM, "make_receipt")
    monkeypatch.delattr(PortLedgerVM, "validate_receipt")
    db = LevelDB(str(tmp_path / "stock"))
    stock = Ledger(db, Genesis.load(genesis_path))
    for block in blocks:
        stock.import_block(block)
    assert stock.head().hash == ledger.head().hash
    db.close()


def logging_computation(rng: random.Random) -> Any:
    """A real computation that emitted random logs (LOG0..LOG4 over random memory), reverted
    now and then (a reverted computation keeps no logs)."""
    code = bytearray()
    for offset in range(0, 384, 32):  # memory of bytes around RLP's single-byte boundary
        word = bytes(rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)]) for _ in range(32))
        code += bytes([0x7F]) + word + bytes([0x61]) + offset.to_bytes(2, "big") + bytes([0x52])
    for _ in range(rng.choice([0, 1, 3, 20])):
        topics = rng.randint(0, 4)
        for _ in range(topics):
            value = rng.choice([0, 1, 2**256 - 1, rng.getrandbits(256)])
            code += bytes([0x7F]) + value.to_bytes(32, "big")
        size = rng.choice([0, 1, 5, 55, 56, 64, 300])  # RLP: one byte, short and long strings
        code += bytes([0x61]) + size.to_bytes(2, "big") + bytes([0x60, rng.randint(0, 64), 0xA0 + topics])
    if rng.random() < 0.2:
        code += bytes([0x5F, 0x5F, 0xFD])  # REVERT(0, 0)
    state = fresh_state()
    state.set_code(CONTRACT, bytes(code))
    message = Message(gas=1_000_000, to=CONTRACT, sender=SENDER, value=0, data=b"", code=bytes(code),
                      code_address=CONTRACT)
    context = state.get_transaction_context_class()(gas_price=0, origin=SENDER)
    return PragueComputation.apply_computation(state, message, context)


def test_logs_bloom_and_receipts_match_py_evm() -> None:
    """node.chain's bloom and receipts equal eth_bloom's and py-evm's, for legacy and typed
    transactions, with and without logs, reverted or not; a log missing from the bloom is
    refused with py-evm's message."""
    from eth.rlp.logs import Log
    from eth.vm.forks.prague import PragueVM
    from eth.vm.forks.prague.blocks import PragueBlockHeader
    from eth_bloom import BloomFilter
    from eth_keys import keys
    from eth_utils import ValidationError

    from node.chain import PortLedgerVM, logs_bloom

    rng = random.Random(7)
    key = keys.PrivateKey(b"\x01" * 32)
    builder = PragueVM.get_transaction_builder()
    legacy = builder.create_unsigned_transaction(
        nonce=0, gas_price=0, gas=1_000_000, to=CONTRACT, value=0, data=b""
    ).as_signed_transaction(key, chain_id=1)
    typed = builder.new_unsigned_dynamic_fee_transaction(
        chain_id=1, nonce=0, max_priority_fee_per_gas=0, max_fee_per_gas=0, gas=1_000_000,
        to=CONTRACT, value=0, data=b"", access_list=[],
    ).as_signed_transaction(key)
    base = PragueBlockHeader(difficulty=0, block_number=1, gas_limit=30_000_000, gas_used=21_000)
    kinds = set()
    for _ in range(60):
        computation = logging_computation(rng)
        logs = [Log(*entry) for entry in computation.get_log_entries()]
        expected = BloomFilter.from_iterable(b for log in logs for b in log.bloomables)
        assert logs_bloom(logs) == int(expected)
        for tx in (legacy, typed):
            ours = PortLedgerVM.make_receipt(base, tx, computation, computation.state)
            stock = PragueVM.make_receipt(base, tx, computation, computation.state)
            assert isinstance(ours, type(stock)) and ours.encode() == stock.encode()
            # the generic sedes walk, uncached (a typed receipt wraps the legacy encoding)
            assert getattr(ours, "_inner", ours).encode() == rlp.encode(getattr(stock, "_inner", stock))
            PortLedgerVM.validate_receipt(ours)
            # made here: it keeps its entries; a copy has none and encodes the same bytes
            inner = getattr(ours, "_inner", ours)
            assert inner.entries == computation.get_log_entries()
            assert inner.copy().entries is None and inner.copy().encode() == inner.encode()
            kinds.add((computation.is_error, bool(logs), type(ours).__name__))
    assert len(kinds) == 6, kinds  # reverted / with logs / without, legacy and typed
    # A log the bloom does not cover: both refuse it, with the same message.
    computation = next(
        c for c in map(logging_computation, map(random.Random, range(50))) if c.get_log_entries()
    )
    receipt = PragueVM.make_receipt(base, typed, computation, computation.state)
    forged = typed.receipt_builder.typed_receipt_class(typed.type_id, receipt._inner.copy(bloom=0))
    with pytest.raises(ValidationError) as stock_error:
        PragueVM.validate_receipt(forged)
    with pytest.raises(ValidationError) as our_error:
        PortLedgerVM.validate_receipt(forged)
    assert str(our_error.value) == str(stock_error.value)
    # ... and so is a copy of one of ours with a bloom that no longer covers its logs
    ours = PortLedgerVM.make_receipt(base, typed, computation, computation.state)
    forged = typed.receipt_builder.typed_receipt_class(typed.type_id, ours._inner.copy(bloom=0))
    with pytest.raises(ValidationError) as our_error:
        PortLedgerVM.validate_receipt(forged)
    assert str(our_error.value) == str(stock_error.value)
