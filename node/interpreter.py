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

:class:`FastComputation.apply_computation` runs those inline on the stack's list with the same
gas charges (taken from py-evm's own opcode table, never hard-coded), the same checks in the
same order and the same exception classes; every other opcode goes to py-evm's own
implementation exactly as before. Nothing consensus-relevant changes: gas used, return data,
logs, storage and errors are identical, which ``tests/node/test_interpreter.py`` checks
differentially against the stock loop on random programs, and the replay/import tests check on
real blocks.
"""

from __future__ import annotations

from typing import Any

# Gas per word copied, per log data byte, per log topic: py-evm's own constants.
from eth.constants import GAS_COPY, GAS_LOGDATA, GAS_LOGTOPIC
from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
    WriteProtection,
)
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueState
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.logic.logging import log_XX

UINT_256_MAX = 2**256 - 1
UINT_255_MAX = 2**255 - 1
UINT_256_CEILING = 2**256
JUMPDEST = 0x5B
_STACK_LIMIT = 1024
_COPY_AND_LOG = frozenset({0x37, 0x5E, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4})

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


#: Code analysis by code (bounded; emptied when full): see :func:`_analyse`.
_ANALYSIS: dict[bytes, tuple[list[int | None], frozenset[int]]] = {}
_ANALYSIS_MAX = 256


def _analyse(raw: bytes) -> tuple[list[int | None], frozenset[int]]:
    """Immediates of the PUSH instructions by position and the valid JUMPDEST positions of
    ``raw``, from one pass in instruction order (a PUSH's data is not an instruction).

    Every transaction of a block calls the same few contracts; decoding a PUSH's bytes once
    per code instead of once per execution, and answering "is this JUMPDEST an instruction?"
    from a set instead of py-evm's ``CodeStream.is_valid_opcode``, saves work in the hottest
    loop. Positions that are not a PUSH instruction hold ``None``."""
    found = _ANALYSIS.get(raw)
    if found is None:
        pushes: list[int | None] = [None] * len(raw)
        jumpdests: set[int] = set()
        pc, length = 0, len(raw)
        while pc < length:
            op = raw[pc]
            if 0x60 <= op <= 0x7F:
                size = op - 0x5F
                chunk = raw[pc + 1 : pc + 1 + size]
                value = int.from_bytes(chunk, "big")
                if len(chunk) < size:  # data past the end of code reads as zeros
                    value <<= 8 * (size - len(chunk))
                pushes[pc] = value
                pc += 1 + size
            else:
                if op == JUMPDEST:
                    jumpdests.add(pc)
                pc += 1
        if len(_ANALYSIS) >= _ANALYSIS_MAX:
            _ANALYSIS.clear()
        found = _ANALYSIS[raw] = (pushes, frozenset(jumpdests))
    return found


def _int(value: int | bytes) -> int:
    return value if type(value) is int else int.from_bytes(value, "big")  # type: ignore[arg-type]


def _out_of_gas(needed: int, remaining: int, op: int) -> OutOfGas:
    return OutOfGas(
        f"Out of gas: Needed {needed} - Remaining {remaining} - Reason: opcode 0x{op:02x}"
    )


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
    opcodes = computation.opcodes
    costs = FastComputation._costs_cache.get(id(opcodes))
    if costs is None:
        costs = FastComputation._costs_cache[id(opcodes)] = _inline_costs(opcodes)
    code = computation.code
    raw = code._raw_code_bytes
    length = len(raw)
    pushes, jumpdests = _analyse(raw)
    values = computation._stack.values
    append = values.append
    pop = values.pop
    meter = computation._gas_meter
    memory = computation._memory
    calldata_size = len(computation.msg.data)
    pc = code.program_counter

    while True:
        op = raw[pc] if pc < length else 0x00
        pc += 1
        cost = costs[op]
        if cost < 0:
            # Everything else: py-evm's own opcode, exactly as its loop would call it.
            code.program_counter = pc
            fn = opcodes.get(op)
            if fn is None:
                fn = InvalidOpcode(op)
            try:
                fn(computation=computation)
            except Halt:
                return
            pc = code.program_counter
            continue

        remaining = meter.gas_remaining
        if cost > remaining:
            code.program_counter = pc
            raise _out_of_gas(cost, remaining, op)
        meter.gas_remaining = remaining - cost

        if 0x60 <= op <= 0x7F:  # PUSH1..PUSH32 (data past the end of code reads as zeros)
            size = op - 0x5F
            if len(values) >= _STACK_LIMIT:
                raise FullStack("Stack limit reached")
            pushed = pushes[pc - 1]
            if pushed is None:  # not an instruction start of the analysis: decode here
                chunk = raw[pc : pc + size]
                pushed = int.from_bytes(chunk, "big")
                if len(chunk) < size:
                    pushed <<= 8 * (size - len(chunk))
            pc += size
            append(pushed)
        elif 0x80 <= op <= 0x8F:  # DUPn
            if len(values) >= _STACK_LIMIT:
                raise FullStack("Stack limit reached")
            position = op - 0x7F
            if position > len(values):
                raise InsufficientStack(f"Insufficient stack items for DUP{position}")
            append(values[-position])
        elif 0x90 <= op <= 0x9F:  # SWAPn
            position = op - 0x8F
            if position + 1 > len(values):
                raise InsufficientStack(f"Insufficient stack items for SWAP{position}")
            values[-1], values[-position - 1] = values[-position - 1], values[-1]
        elif op == 0x51:  # MLOAD
            if not values:
                raise InsufficientStack("Wanted 1 stack item, had none")
            start = _int(pop())
            if start + 32 > len(memory._bytes):
                code.program_counter = pc
                computation.extend_memory(start, 32)
            # py-evm pushes the bytes; every consumer reads either form the same way.
            append(int.from_bytes(memory._bytes[start : start + 32], "big"))
        elif op == 0x5B:  # JUMPDEST
            pass
        elif op == 0x50:  # POP
            if not values:
                raise InsufficientStack("Wanted 1 stack item, had none")
            pop()
        elif op == 0x57 or op == 0x56:  # JUMPI, JUMP
            if op == 0x57:
                if len(values) < 2:
                    raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
                dest = _int(pop())
                if not _int(pop()):
                    continue
            else:
                if not values:
                    raise InsufficientStack("Wanted 1 stack item, had none")
                dest = _int(pop())
            code.program_counter = dest
            if dest >= length or raw[dest] != JUMPDEST:
                raise InvalidJumpDestination("Invalid Jump Destination")
            if dest not in jumpdests:  # a 0x5B inside a PUSH's data
                raise InvalidInstruction("Jump resulted in invalid instruction")
            pc = dest
        elif op == 0x52:  # MSTORE
            if len(values) < 2:
                if values:
                    pop()
                raise InsufficientStack("Wanted 1 stack item, had none")
            start = _int(pop())
            value = pop()
            if type(value) is int:
                data = value.to_bytes(32, "big")
            else:
                data = value.rjust(32, b"\x00")[-32:]
            if start + 32 > len(memory._bytes):
                code.program_counter = pc
                computation.extend_memory(start, 32)
            memory._bytes[start : start + 32] = data
        elif op == 0x15:  # ISZERO
            if not values:
                raise InsufficientStack("Wanted 1 stack item, had none")
            append(1 if _int(pop()) == 0 else 0)
        elif op == 0x36:  # CALLDATASIZE
            if len(values) >= _STACK_LIMIT:
                raise FullStack("Stack limit reached")
            append(calldata_size)
        elif op == 0x5F:  # PUSH0
            if len(values) >= _STACK_LIMIT:
                raise FullStack("Stack limit reached")
            append(0)
        elif op in _COPY_AND_LOG:  # CALLDATACOPY, MCOPY, LOG0..LOG4
            if op >= 0xA0:  # LOGn: py-evm's log_XX behind ensure_no_static
                if computation.msg.is_static:
                    raise WriteProtection(
                        "Cannot modify state while inside of a STATICCALL context"
                    )
                count = op - 0xA0
                if len(values) < 2:
                    raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
                start = _int(pop())
                size = _int(pop())
                if count == 1:
                    if not values:
                        raise InsufficientStack("Wanted 1 stack item, had none")
                    topics: tuple[int, ...] = (_int(pop()),)
                elif count:
                    if count > len(values):
                        raise InsufficientStack(
                            f"Wanted {count} stack items, only had {len(values)}"
                        )
                    topics = tuple([_int(pop()) for _ in range(count)])
                else:
                    topics = ()
                extra = GAS_LOGDATA * size + GAS_LOGTOPIC * count
                reason = "Log topic and data gas cost"
            else:  # CALLDATACOPY (memory, calldata, size) / MCOPY (destination, source, size)
                if len(values) < 3:
                    raise InsufficientStack(f"Wanted 3 stack items, only had {len(values)}")
                first = _int(pop())
                second = _int(pop())
                size = _int(pop())
                # MCOPY extends memory to cover max(source, destination) + size
                start = first if op == 0x37 else max(first, second)
                code.program_counter = pc
                if size and start + size > len(memory._bytes):
                    computation.extend_memory(start, size)
                extra = GAS_COPY * ((size + 31) // 32)
                reason = "CALLDATACOPY fee" if op == 0x37 else "MCOPY fee"
            remaining = meter.gas_remaining
            if extra > remaining:
                code.program_counter = pc
                raise OutOfGas(
                    f"Out of gas: Needed {extra} - Remaining {remaining} - Reason: {reason}"
                )
            meter.gas_remaining = remaining - extra
            if op >= 0xA0:
                code.program_counter = pc
                if size and start + size > len(memory._bytes):
                    computation.extend_memory(start, size)
                computation.add_log_entry(
                    account=computation.msg.storage_address,
                    topics=topics,
                    data=bytes(memory._bytes[start : start + size]),
                )
            elif op == 0x37:
                if size:
                    data = computation.msg.data_as_bytes[second : second + size]
                    memory._bytes[first : first + size] = data.ljust(size, b"\x00")
            elif size:  # MCOPY (the slice is copied first: overlapping ranges are fine)
                memory._bytes[first : first + size] = memory._bytes[second : second + size]
        else:  # binary operators: left = top of stack, right = next
            if len(values) < 2:
                raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
            left = pop()
            if type(left) is not int:
                left = int.from_bytes(left, "big")
            right = pop()
            if type(right) is not int:
                right = int.from_bytes(right, "big")
            if op == 0x01:
                append((left + right) & UINT_256_MAX)
            elif op == 0x16:
                append(left & right)
            elif op == 0x1C:
                append(0 if left >= 256 else right >> left)
            elif op == 0x11:
                append(1 if left > right else 0)
            elif op == 0x10:
                append(1 if left < right else 0)
            elif op == 0x14:
                append(1 if left == right else 0)
            elif op == 0x03:
                append((left - right) & UINT_256_MAX)
            elif op == 0x1B:
                append(0 if left >= 256 else (right << left) & UINT_256_MAX)
            elif op == 0x17:
                append(left | right)
            elif op == 0x18:
                append(left ^ right)
            elif op == 0x12 or op == 0x13:  # SLT, SGT
                if left > UINT_255_MAX:
                    left -= UINT_256_CEILING
                if right > UINT_255_MAX:
                    right -= UINT_256_CEILING
                append(1 if (left < right if op == 0x12 else left > right) else 0)
            else:  # unreachable: every inline opcode has a branch
                raise AssertionError(f"inline opcode 0x{op:02x} has no implementation")


class FastPragueState(PragueState):
    """Prague state whose computations use :class:`FastComputation`."""

    computation_class = FastComputation
