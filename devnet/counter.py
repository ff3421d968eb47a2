"""A small Vyper contract to deploy on a devnet: a counter with an event.

The JSON-RPC tests, the web3.py/ethers.js acceptance tests and ``bench.bench_rpc`` deploy it.

``bump(by)`` writes two storage slots and logs ``Bumped(who indexed, by, total)``; ``small(x)``
is a view that reverts with ``"too big"`` for x >= 10 (revert-reason round trips).
"""

from __future__ import annotations

from functools import cache
from typing import Any

COUNTER_SOURCE = """
# pragma version 0.4.3
event Bumped:
    who: indexed(address)
    by: uint256
    total: uint256

counter: public(uint256)
last: public(HashMap[address, uint256])

@external
def bump(by: uint256):
    self.counter += by
    self.last[msg.sender] = self.counter
    log Bumped(who=msg.sender, by=by, total=self.counter)

@external
@view
def small(x: uint256) -> uint256:
    assert x < 10, "too big"
    return x * 2
"""


@cache
def compiled_counter() -> dict[str, Any]:
    """``abi`` and deploy ``bytecode`` (0x-hex) of the counter, compiled once per process."""
    import vyper  # noqa: PLC0415 (the compiler loads in seconds: only when the counter is asked for)

    out = vyper.compile_code(COUNTER_SOURCE, output_formats=["abi", "bytecode"])
    return {"abi": out["abi"], "bytecode": out["bytecode"]}
