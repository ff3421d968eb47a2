"""The PortLedger node: py-evm chain on LevelDB, transaction pool, JSON-RPC, block production.

One node per stakeholder. :mod:`node.chain` holds the chain rules and the ledger,
:mod:`node.db` the LevelDB storage, :mod:`node.txpool` pending transactions,
:mod:`node.service` the runtime that drives them, :mod:`node.rpc` the Ethereum JSON-RPC
server and :mod:`node.cli` the ``portledger`` command.
"""

import os

__version__ = "0.1.0"

# keccak through pysha3 is ~7x faster per call than through pycryptodome (eth-hash's first
# choice); trie hashing, blooms and signatures all call it. Must be set before the first hash.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
