"""A process's cache of verified API keys, dropped whole when the credential generation moves.

**Verified API keys are cached** per process, because an enterprise system sends the same key
with every request and the database lookup was 5–8 % of a tracking request's CPU. The cache maps
a key id to the stored hash of its secret and the principal it stands for; it holds only keys
that were verified, in force and of an active organisation when read, at most
:data:`KEY_CACHE_SIZE` of them (least recently used dropped first), each for at most
:data:`KEY_CACHE_MAX_AGE` seconds. A hit still hashes the presented secret and compares it with
the stored hash in constant time, exactly as a miss does; failures are never cached. Revocation
stays immediate across the processes of ``serve --workers N``: triggers in the accounts database
(:mod:`gateway.accounts.store`) bump a *credential generation* in the same transaction as any
change to a key's hash, scopes, organisation or revocation, or to an organisation's status,
roles, chain id or operator flag; after the commit it is published in ``accounts.db-generation``
(:class:`gateway.beacon.GenerationBeacon`, the read model's mechanism), and every lookup first
compares that shared number with the one its cache was filled at, dropping the whole cache when
they differ. A key revoked through one process therefore fails in every process at its next
request. Session cookies are not cached (the pages' traffic is small; see ``BENCHMARKS.md``).
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from gateway.errors import Unauthorized
from gateway.principal import Principal

#: Verified API keys each process keeps in memory (the least recently used is dropped first).
KEY_CACHE_SIZE = 4096
#: A cached API key is read from the database again after this many seconds, whatever the
#: credential generation says (bounds the effect of a change the beacon missed).
KEY_CACHE_MAX_AGE = 10.0


class _CachedKey(NamedTuple):
    """A verified API key in a process's cache."""

    secret_hash: bytes
    """SHA-256 of the key's secret, as stored (every hit compares the presented one with it)."""
    principal: Principal
    """Who the key acts for, as read with the key."""
    loaded: float
    """Time (the accounts clock) it was read from the database."""


class VerifiedKeys:
    """The verified-key cache of one process (see the module docstring).

    Parameters
    ----------
    generation
        The current credential generation (the beacon's :meth:`~GenerationBeacon.current`).
    size
        Keys kept (0: nothing is kept, every lookup misses).
    """

    def __init__(self, generation: Callable[[], int], size: int = KEY_CACHE_SIZE) -> None:
        self._generation = generation
        self._size = size
        self._keys: OrderedDict[str, _CachedKey] = OrderedDict()
        self._filled_at = generation()

    def lookup(self, key_id: str, presented: bytes, now: float) -> Principal | None:
        """The principal of a cached key whose stored hash is ``presented``, or None (not
        cached, or cached :data:`KEY_CACHE_MAX_AGE` or more ago: read the database).

        The credential generation is compared first, before the caller reads the database on a
        miss, so a change committed after this call is seen by the next one.

        Raises
        ------
        Unauthorized
            The key is cached and ``presented`` is not its secret's hash.
        """
        generation = self._generation()
        if generation != self._filled_at:
            self._keys.clear()
            self._filled_at = generation
        cached = self._keys.get(key_id)
        if cached is None or not 0.0 <= now - cached.loaded < KEY_CACHE_MAX_AGE:
            return None
        if not hmac.compare_digest(cached.secret_hash, presented):
            raise Unauthorized("unknown API key", code="invalid-api-key")
        self._keys.move_to_end(key_id)
        return cached.principal

    def remember(self, key_id: str, secret_hash: bytes, principal: Principal, now: float) -> None:
        """Keep a key just verified against the database (dropping the least recently used)."""
        if not self._size:
            return
        self._keys[key_id] = _CachedKey(secret_hash, principal, now)
        self._keys.move_to_end(key_id)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
