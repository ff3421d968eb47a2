"""PortLedger gateway: accounts, the lossless write path, the indexer and the tracking API."""

import os

__version__ = "0.1.0"

# keccak through pysha3, as node/__init__.py sets it (~5x faster per call than pycryptodome,
# eth-hash's first choice); tracking checks a payload hash per decrypted event. Also when the
# gateway is run without the node package imported first. Must be set before the first hash.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
