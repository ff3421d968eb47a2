"""The inline opcode loop of :mod:`node.interpreter`, written to be compiled by mypyc.

This module is plain, fully typed Python: imported as it is, it runs as ordinary Python (the
fallback, and what the differential tests compare); compiled with mypyc
(``python -m node.native build``, :mod:`node.native`) the same source becomes a C extension
beside this file, which Python's import system then loads instead of the ``.py`` (an extension
module's suffix comes first on the import path). Both are the same algorithm with the same
results: gas, stack, memory, logs and exceptions are identical, which
``tests/node/test_interpreter.py`` checks for each on random programs against py-evm's stock
loop.

Why compiled: replaying a chain spends ~60 % of its CPU in this loop, one event being ~141–191
EVM instructions; interpreted, each instruction pays for bytecode dispatch, boxed small ints
and dictionary lookups of locals' methods. Compiled, the program counter, the opcode, stack
sizes and the gas arithmetic are C integers, the opcode test is a C switch-like chain of
comparisons, and list appends/pops are direct C calls; 256-bit EVM words stay Python ints.

The loop is :func:`run`; what it shares with :mod:`node.interpreter` (the gas table per
opcode, ``costs[op] < 0`` meaning "not inline, call py-evm's opcode") is passed in, so this
module depends on nothing of the node.
"""

from __future__ import annotations

from typing import Any, Final

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
from eth.vm.logic.invalid import InvalidOpcode

UINT_256_MAX: Final = 2**256 - 1
UINT_255_MAX: Final = 2**255 - 1
UINT_256_CEILING: Final = 2**256
JUMPDEST: Final = 0x5B
STACK_LIMIT: Final = 1024
_GAS_COPY: Final[int] = int(GAS_COPY)
_GAS_LOGDATA: Final[int] = int(GAS_LOGDATA)
_GAS_LOGTOPIC: Final[int] = int(GAS_LOGTOPIC)

#: Code analysis by code (bounded; emptied when full): see :func:`analyse`.
_ANALYSIS: dict[bytes, tuple[list[int | None], frozenset[int]]] = {}
_ANALYSIS_MAX: Final = 256


def analyse(raw: bytes) -> tuple[list[int | None], frozenset[int]]:
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
        pc = 0
        length = len(raw)
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
        found = (pushes, frozenset(jumpdests))
        _ANALYSIS[raw] = found
    return found


def _int(value: Any) -> int:
    """A stack item as an int (py-evm pushes some results as bytes)."""
    if isinstance(value, int):
        return value
    return int.from_bytes(value, "big")


def _out_of_gas(needed: int, remaining: int, reason: str) -> Any:
    return OutOfGas(f"Out of gas: Needed {needed} - Remaining {remaining} - Reason: {reason}")


def run(computation: Any, costs: list[int]) -> None:
    """Run ``computation``'s code from its program counter until it halts: opcodes whose
    ``costs`` entry is a gas cost (>= 0) inline, every other one through py-evm's own opcode
    object exactly as py-evm's loop calls it. Raises what py-evm's loop raises."""
    opcodes: Any = computation.opcodes
    code: Any = computation.code
    raw: bytes = code._raw_code_bytes
    length = len(raw)
    analysis = analyse(raw)
    pushes = analysis[0]
    jumpdests = analysis[1]
    values: list[Any] = computation._stack.values
    meter: Any = computation._gas_meter
    memory: Any = computation._memory
    msg: Any = computation.msg
    calldata_size = len(msg.data)
    pc: int = code.program_counter
    # The gas left lives in ``gas`` while inline opcodes run; the meter gets it back before
    # anything else can read or charge it (py-evm's opcodes, memory expansion, logs and
    # copies, every exception raised here) and ``gas`` is re-read after each such call.
    gas: int = meter.gas_remaining
    op = 0
    cost = 0

    while True:
        op = raw[pc] if pc < length else 0x00
        pc += 1
        cost = costs[op]
        if cost < 0:
            # Everything else: py-evm's own opcode, exactly as its loop would call it.
            code.program_counter = pc
            meter.gas_remaining = gas
            fn = opcodes.get(op)
            if fn is None:
                fn = InvalidOpcode(op)
            try:
                fn(computation=computation)
            except Halt:
                return
            pc = code.program_counter
            gas = meter.gas_remaining
            continue

        if cost > gas:
            code.program_counter = pc
            meter.gas_remaining = gas
            raise _out_of_gas(cost, gas, f"opcode 0x{op:02x}")
        gas -= cost

        if 0x60 <= op <= 0x7F:  # PUSH1..PUSH32 (data past the end of code reads as zeros)
            size = op - 0x5F
            if len(values) >= STACK_LIMIT:
                meter.gas_remaining = gas
                raise FullStack("Stack limit reached")
            pushed = pushes[pc - 1]
            if pushed is None:  # not an instruction start of the analysis: decode here
                chunk = raw[pc : pc + size]
                pushed = int.from_bytes(chunk, "big")
                if len(chunk) < size:
                    pushed <<= 8 * (size - len(chunk))
            pc += size
            values.append(pushed)
        elif 0x80 <= op <= 0x8F:  # DUPn
            if len(values) >= STACK_LIMIT:
                meter.gas_remaining = gas
                raise FullStack("Stack limit reached")
            position = op - 0x7F
            if position > len(values):
                meter.gas_remaining = gas
                raise InsufficientStack(f"Insufficient stack items for DUP{position}")
            values.append(values[-position])
        elif 0x90 <= op <= 0x9F:  # SWAPn
            position = op - 0x8F
            if position + 1 > len(values):
                meter.gas_remaining = gas
                raise InsufficientStack(f"Insufficient stack items for SWAP{position}")
            top = values[-1]
            values[-1] = values[-position - 1]
            values[-position - 1] = top
        elif op == 0x51:  # MLOAD
            if not values:
                meter.gas_remaining = gas
                raise InsufficientStack("Wanted 1 stack item, had none")
            start = _int(values.pop())
            if start + 32 > len(memory._bytes):
                code.program_counter = pc
                meter.gas_remaining = gas
                computation.extend_memory(start, 32)
                gas = meter.gas_remaining
            # py-evm pushes the bytes; every consumer reads either form the same way.
            mem: bytearray = memory._bytes
            values.append(int.from_bytes(mem[start : start + 32], "big"))
        elif op == 0x5B:  # JUMPDEST
            pass
        elif op == 0x50:  # POP
            if not values:
                meter.gas_remaining = gas
                raise InsufficientStack("Wanted 1 stack item, had none")
            values.pop()
        elif op == 0x57 or op == 0x56:  # JUMPI, JUMP
            if op == 0x57:
                if len(values) < 2:
                    meter.gas_remaining = gas
                    raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
                dest = _int(values.pop())
                if not _int(values.pop()):
                    continue
            else:
                if not values:
                    meter.gas_remaining = gas
                    raise InsufficientStack("Wanted 1 stack item, had none")
                dest = _int(values.pop())
            code.program_counter = dest
            if dest >= length or raw[dest] != JUMPDEST:
                meter.gas_remaining = gas
                raise InvalidJumpDestination("Invalid Jump Destination")
            if dest not in jumpdests:  # a 0x5B inside a PUSH's data
                meter.gas_remaining = gas
                raise InvalidInstruction("Jump resulted in invalid instruction")
            pc = dest
        elif op == 0x52:  # MSTORE
            if len(values) < 2:
                if values:
                    values.pop()
                meter.gas_remaining = gas
                raise InsufficientStack("Wanted 1 stack item, had none")
            start = _int(values.pop())
            value = values.pop()
            if isinstance(value, int):
                data = value.to_bytes(32, "big")
            else:
                data = bytes(value).rjust(32, b"\x00")[-32:]
            if start + 32 > len(memory._bytes):
                code.program_counter = pc
                meter.gas_remaining = gas
                computation.extend_memory(start, 32)
                gas = meter.gas_remaining
            mem = memory._bytes
            mem[start : start + 32] = data
        elif op == 0x15:  # ISZERO
            if not values:
                meter.gas_remaining = gas
                raise InsufficientStack("Wanted 1 stack item, had none")
            values.append(1 if _int(values.pop()) == 0 else 0)
        elif op == 0x36:  # CALLDATASIZE
            if len(values) >= STACK_LIMIT:
                meter.gas_remaining = gas
                raise FullStack("Stack limit reached")
            values.append(calldata_size)
        elif op == 0x5F:  # PUSH0
            if len(values) >= STACK_LIMIT:
                meter.gas_remaining = gas
                raise FullStack("Stack limit reached")
            values.append(0)
        elif op == 0x37 or op == 0x5E or 0xA0 <= op <= 0xA4:  # CALLDATACOPY, MCOPY, LOG0..4
            meter.gas_remaining = gas
            _copy_or_log(computation, values, op, pc)
            gas = meter.gas_remaining
        else:  # binary operators: left = top of stack, right = next
            if len(values) < 2:
                meter.gas_remaining = gas
                raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
            left = _int(values.pop())
            right = _int(values.pop())
            if op == 0x01:
                values.append((left + right) & UINT_256_MAX)
            elif op == 0x16:
                values.append(left & right)
            elif op == 0x1C:
                values.append(0 if left >= 256 else right >> left)
            elif op == 0x11:
                values.append(1 if left > right else 0)
            elif op == 0x10:
                values.append(1 if left < right else 0)
            elif op == 0x14:
                values.append(1 if left == right else 0)
            elif op == 0x03:
                values.append((left - right) & UINT_256_MAX)
            elif op == 0x1B:
                values.append(0 if left >= 256 else (right << left) & UINT_256_MAX)
            elif op == 0x17:
                values.append(left | right)
            elif op == 0x18:
                values.append(left ^ right)
            elif op == 0x12 or op == 0x13:  # SLT, SGT
                if left > UINT_255_MAX:
                    left -= UINT_256_CEILING
                if right > UINT_255_MAX:
                    right -= UINT_256_CEILING
                values.append(1 if (left < right if op == 0x12 else left > right) else 0)
            else:  # unreachable: every inline opcode has a branch
                raise AssertionError(f"inline opcode 0x{op:02x} has no implementation")


def _copy_or_log(computation: Any, values: list[Any], op: int, pc: int) -> None:
    """CALLDATACOPY, MCOPY or LOG0..LOG4 (their base gas already charged): py-evm's checks,
    memory expansion, dynamic gas and effect, in py-evm's order."""
    code: Any = computation.code
    memory: Any = computation._memory
    meter: Any = computation._gas_meter
    msg: Any = computation.msg
    topics: tuple[int, ...] = ()
    first = 0
    second = 0
    start = 0
    size = 0
    if op >= 0xA0:  # LOGn: py-evm's log_XX behind ensure_no_static
        if msg.is_static:
            raise WriteProtection("Cannot modify state while inside of a STATICCALL context")
        count = op - 0xA0
        if len(values) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
        start = _int(values.pop())
        size = _int(values.pop())
        if count == 1:
            if not values:
                raise InsufficientStack("Wanted 1 stack item, had none")
            topics = (_int(values.pop()),)
        elif count:
            if count > len(values):
                raise InsufficientStack(f"Wanted {count} stack items, only had {len(values)}")
            topics = tuple([_int(values.pop()) for _ in range(count)])
        extra = _GAS_LOGDATA * size + _GAS_LOGTOPIC * count
        reason = "Log topic and data gas cost"
    else:  # CALLDATACOPY (memory, calldata, size) / MCOPY (destination, source, size)
        if len(values) < 3:
            raise InsufficientStack(f"Wanted 3 stack items, only had {len(values)}")
        first = _int(values.pop())
        second = _int(values.pop())
        size = _int(values.pop())
        # MCOPY extends memory to cover max(source, destination) + size
        start = first if op == 0x37 else max(first, second)
        code.program_counter = pc
        if size and start + size > len(memory._bytes):
            computation.extend_memory(start, size)
        extra = _GAS_COPY * ((size + 31) // 32)
        reason = "CALLDATACOPY fee" if op == 0x37 else "MCOPY fee"
    remaining: int = meter.gas_remaining
    if extra > remaining:
        code.program_counter = pc
        raise _out_of_gas(extra, remaining, reason)
    meter.gas_remaining = remaining - extra
    if op >= 0xA0:
        code.program_counter = pc
        if size and start + size > len(memory._bytes):
            computation.extend_memory(start, size)
        mem: bytearray = memory._bytes
        account = msg.storage_address
        data = bytes(mem[start : start + size])
        if isinstance(account, bytes) and len(account) == 20:
            # py-evm's add_log_entry without its checks, which cannot fail here: the address
            # is canonical (tested just now), topics are stack words (uint256), data is bytes.
            counter: int = computation.transaction_context.get_next_log_counter()
            computation._log_entries.append((counter, account, topics, data))
        else:
            computation.add_log_entry(account=account, topics=topics, data=data)
    elif op == 0x37:
        if size:
            data = msg.data_as_bytes[second : second + size]
            mem = memory._bytes
            mem[first : first + size] = data.ljust(size, b"\x00")
    elif size:  # MCOPY (the slice is copied first: overlapping ranges are fine)
        mem = memory._bytes
        mem[first : first + size] = mem[second : second + size]
