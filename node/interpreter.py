"""A faster opcode loop for py-evm's Prague computation — same results, less overhead.

Profiling block import (``bench/bench_import.py``) shows ~95 % of the time in py-evm's
interpreter, and most of that not in the EVM's work but in the machinery around each opcode:
a generator step over the code stream, a dict lookup, an ``Opcode.__call__``, two gas-meter
calls with validation, a logic function, and stack methods that validate and convert every
value. A Vyper ``CargoLedger.record()`` runs ~370 opcodes per event, 80 % of them from a
small set (PUSHn, DUPn, SWAPn, POP, MLOAD, MSTORE, JUMP, JUMPI, JUMPDEST, ADD, SUB, LT, GT,
EQ, ISZERO, AND, OR, XOR, SHL, SHR, CALLDATASIZE); per event it also copies calldata
(CALLDATACOPY), copies memory (MCOPY), compares signed (SLT) and logs (LOG4), whose py-evm
implementations spend most of their time validating and formatting gas-meter reasons.

:class:`FastComputation.apply_computation` runs those inline (:mod:`node.evmloop`, compiled
with mypyc when built: :mod:`node.native`) on the stack's list with the same
gas charges (taken from py-evm's own opcode table, never hard-coded), the same checks in the
same order and the same exception classes; every other opcode goes to py-evm's own
implementation exactly as before. Nothing consensus-relevant changes: gas used, return data,
logs, storage and errors are identical, which ``tests/node/test_interpreter.py`` checks
differentially against the stock loop on random programs, and the replay/import tests check on
real blocks.
"""

from __future__ import annotations

from typing import Any

from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueState
from eth.vm.logic.logging import log_XX

from node import native

#: The opcode loop: :mod:`node.evmloop` compiled by mypyc when built and current, else its
#: source as Python (:func:`node.native.loop_module`); the same results either way.
LOOP = native.loop_module()

# Opcodes run inline, with the mnemonic py-evm's table must give them (a safety check: if a
# future fork rebinds one, the inline path is switched off for it).
_INLINE = {
    0x01: "ADD",
    0x03: "SUB",
    0x10: "LT",
    0x11: "GT",
    0x14: "EQ",
    0x15: "ISZERO",
    0x16: "AND",
    0x17: "OR",
    0x18: "XOR",
    0x1B: "SHL",
    0x1C: "SHR",
    0x12: "SLT",
    0x13: "SGT",
    0x36: "CALLDATASIZE",
    0x37: "CALLDATACOPY",
    0x5E: "MCOPY",
    **{0xA0 + n: f"LOG{n}" for n in range(5)},
    0x50: "POP",
    0x51: "MLOAD",
    0x52: "MSTORE",
    0x56: "JUMP",
    0x57: "JUMPI",
    0x5B: "JUMPDEST",
    0x5F: "PUSH0",
    **{0x60 + i: f"PUSH{i + 1}" for i in range(32)},
    **{0x80 + i: f"DUP{i + 1}" for i in range(16)},
    **{0x90 + i: f"SWAP{i + 1}" for i in range(16)},
}


def _inline_costs(opcodes: dict[int, Any]) -> list[int]:
    """Gas cost per inline opcode from py-evm's table, or -1 where it is not inlined."""
    costs = [-1] * 256
    for op, mnemonic in _INLINE.items():
        fn = opcodes.get(op)
        if fn is not None and getattr(fn, "mnemonic", None) == mnemonic and hasattr(fn, "gas_cost"):
            if mnemonic.startswith("LOG") and not _is_static_guarded_log(fn, op - 0xA0):
                continue
            costs[op] = int(fn.gas_cost)
    return costs


def _is_static_guarded_log(fn: Any, topics: int) -> bool:
    """Is ``fn`` py-evm's LOG<topics> behind Byzantium's ``ensure_no_static`` guard (what the
    inline LOG reproduces)?"""
    inner = getattr(getattr(fn, "logic_fn", None), "__wrapped__", None)
    return getattr(inner, "func", None) is log_XX and getattr(inner, "keywords", None) == {
        "topic_count": topics
    }


class FastComputation(PragueComputation):
    """Prague computation whose opcode loop runs the hottest opcodes inline."""

    _costs_cache: dict[int, list[int]] = {}

    @classmethod
    def apply_computation(
        cls,
        state: Any,
        message: Any,
        transaction_context: Any,
        parent_computation: Any = None,
    ) -> Any:
        # The preamble is py-evm's BaseComputation.apply_computation, unchanged.
        with cls(state, message, transaction_context) as computation:
            if computation.is_origin_computation:
                computation.contracts_created = []
                if message.is_create:
                    cls.consume_initcode_gas_cost(computation)
            if parent_computation is not None:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)
            precompile = computation.precompiles.get(message.code_address, None)
            if precompile is not None:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            _run(computation)
        return computation


def _run(computation: Any) -> None:
    """Run ``computation``'s code with :data:`LOOP`'s ``run`` (:func:`node.evmloop.run`)."""
    opcodes = computation.opcodes
    costs = FastComputation._costs_cache.get(id(opcodes))
    if costs is None:
        costs = FastComputation._costs_cache[id(opcodes)] = _inline_costs(opcodes)
    LOOP.run(computation, costs)


class FastPragueState(PragueState):
    """Prague state whose computations use :class:`FastComputation`."""

    computation_class = FastComputation
