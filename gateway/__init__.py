"""PortLedger gateway: accounts, the lossless write path, the indexer and the tracking API."""

__version__ = "0.1.0"
