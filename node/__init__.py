"""The PortLedger node: py-evm chain on LevelDB, transaction pool, JSON-RPC, QBFT engine.

One node per stakeholder. Modules:

- :mod:`node.chain` the chain rules and the ledger; :mod:`node.interpreter` its fast EVM loop;
  :mod:`node.genesis` ``genesis.json``; :mod:`node.db` the LevelDB storage;
  :mod:`node.datadir` a node's data directory (``init_datadir``);
- :mod:`node.txpool` pending transactions; :mod:`node.service` the runtime that drives them;
- :mod:`node.engine` QBFT over :mod:`node.p2p` (frames in :mod:`node.p2p_frames`);
  :mod:`node.evidence` equivocation evidence and its on-chain reports;
- :mod:`node.rpc` the Ethereum JSON-RPC server (a package by namespace);
  :mod:`node.proofs` proof bundles of cargo events;
- :mod:`node.replay` re-verifying a chain from genesis, :mod:`node.audit` the auditor's report;
- :mod:`node.cli` the node's ``portledger`` commands.

Importing the package selects the Keccak backend, before anything hashes.
"""

import os

__version__ = "0.1.0"

# keccak through pysha3 is ~7x faster per call than through pycryptodome (eth-hash's first
# choice); trie hashing, blooms and signatures all call it. Must be set before the first hash.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
