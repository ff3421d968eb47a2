"""The devnet layer's errors: what a caller of the devnet harness catches."""

from __future__ import annotations


class DevnetError(Exception):
    """The devnet cannot be created, started or reached as asked."""


class DevnetTimeout(DevnetError, TimeoutError):
    """A bounded wait ran out."""
