"""The tracking caches of one process and their settings.

A bounded :class:`LRU` (plaintexts, unwrapped grant keys, encoded timeline entries), the cache
of finished shipment views (:class:`ViewCache`: bounded in entries and bytes, dropped by
subject key through the read model's change journal, by grant expiry and by key changes), the
marks a view's JSON skeleton carries for the values written at serve time (:func:`render`),
and :class:`TrackingSettings`. When a cached view is still good is described in
``docs/tracking.md`` ("The view cache").
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from gateway.confidential.keystore import OrgKeys
from gateway.config import ConfigError, GatewayConfig, settings_from
from gateway.events import identifiers


class LRU:
    """A bounded least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


@dataclass(frozen=True)
class TrackingSettings:
    """``config.extra["tracking"]``: the sizes of the tracking caches (per process)."""

    view_cache_entries: int = 20_000
    """Most finished shipment views kept."""
    view_cache_megabytes: float = 128.0
    """Most bytes of finished views kept, in MiB (a master B/L view of 4 containers is ~20 KB)."""
    plaintext_cache_entries: int = 200_000
    """Most decrypted event plaintexts kept."""
    entry_cache_entries: int = 200_000
    """Most encoded timeline entries kept."""
    suggest_refresh_seconds: float = 30.0
    """Age after which an organisation's suggestion index is rebuilt from the read model (so
    references other worker processes learned show up); this process's own reads reach it at
    once."""
    suggest_scan: int = 20_000
    """Most known references one suggestion compares the typed text with."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"tracking: {f.name} must be a number >= 0")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> TrackingSettings:
        """Read and check the settings; unknown keys or bad sizes are a :class:`ConfigError`."""
        return settings_from(cls, config.extra.get("tracking"), 'extra["tracking"]')


#: Access-log entries of reads: (owner, reader, event id) -> (subject, via).
Reads = dict[tuple[int, int, int], tuple[bytes, str]]


@dataclass(frozen=True)
class CachedView:
    """A finished shipment view, encoded, and what it was built from."""

    parts: tuple[bytes | int, ...]
    """The JSON bytes, split where an ETA/ETD ``freshness`` goes: byte strings and, between
    them, the block times whose age is written at serve time."""
    size: int
    """Bytes held."""
    keys: OrgKeys | None
    """The caller organisation's keys it was decrypted with (a new key set means rebuild)."""
    valid_until: float
    """Earliest expiry (Unix seconds) among the grants it relied on; ``inf`` if none."""
    subjects: tuple[bytes, ...]
    """Every subject key the build queried (a change to any of them drops the view)."""
    reads: Reads
    """The access-log entries each serving of it records (not to be modified)."""


class ViewCache:
    """Finished views per (reader organisation, gateway organisation, normalised reference),
    bounded in entries and in bytes, least recently used out first, droppable by subject key."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._views: OrderedDict[Any, CachedView] = OrderedDict()
        self._by_subject: dict[bytes, dict[Any, None]] = {}  # (dicts of plain keys: unscanned)
        self.hits = self.misses = self.evictions = self.invalidations = 0

    def __len__(self) -> int:
        return len(self._views)

    def get(self, key: Any, keys: OrgKeys | None, now: float) -> CachedView | None:
        """The view under ``key`` if still good for ``keys`` at ``now`` (counted)."""
        view = self._views.get(key)
        if view is not None:
            if view.keys is keys and now <= view.valid_until:
                self._views.move_to_end(key)
                self.hits += 1
                return view
            self._remove(key)
            self.invalidations += 1
        self.misses += 1
        return None

    def put(self, key: Any, view: CachedView) -> None:
        """Keep ``view`` (unless it alone is over the byte budget), evicting the oldest."""
        if key in self._views:
            self._remove(key)
        if view.size > self.max_bytes or self.max_entries < 1:
            return
        self._views[key] = view
        self.bytes += view.size
        for subject in view.subjects:
            self._by_subject.setdefault(subject, {})[key] = None
        while len(self._views) > self.max_entries or self.bytes > self.max_bytes:
            self._remove(next(iter(self._views)))
            self.evictions += 1

    def drop(self, subjects: Iterable[bytes]) -> None:
        """Drop every view that looked at one of ``subjects``."""
        for subject in subjects:
            for key in self._by_subject.pop(subject, ()):
                if key in self._views:
                    self._remove(key)
                    self.invalidations += 1

    def clear(self) -> None:
        """Drop every view."""
        self.invalidations += len(self._views)
        self._views.clear()
        self._by_subject.clear()
        self.bytes = 0

    def _remove(self, key: Any) -> None:
        view = self._views.pop(key)
        self.bytes -= view.size
        for subject in view.subjects:
            holders = self._by_subject.get(subject)
            if holders is not None:
                holders.pop(key, None)
                if not holders:
                    del self._by_subject[subject]


#: Marks in a view's JSON skeleton: a timeline entry (``e<index>``) or an ETA/ETD freshness
#: (``f<block time>``). Random per process, so no event's content can spell one.
NONCE = secrets.token_hex(12)
MARKS = re.compile(rb'"' + NONCE.encode() + rb'([ef])(\d+)"')


def freshness_mark(block_time: int) -> str:
    """The mark :func:`render` replaces with the seconds since ``block_time``."""
    return f"{NONCE}f{block_time}"


def entry_mark(index: int) -> str:
    """The mark of the ``index``-th timeline entry of a view's skeleton."""
    return f"{NONCE}e{index}"


def render(parts: tuple[bytes | int, ...], now: float) -> bytes:
    """The view's bytes with every freshness written for ``now``."""
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(
        p if isinstance(p, bytes) else str(max(0, int(now - p))).encode() for p in parts
    )


def normal_form(candidates: Sequence[identifiers.Candidate]) -> tuple[tuple[str, str], ...]:
    """The valid candidates' (kind, value): all of what was typed that a view depends on."""
    return tuple((c.kind, c.value) for c in candidates if c.valid)


@lru_cache(maxsize=1 << 16)
def normal_of(text: str) -> tuple[tuple[str, str], ...] | None:
    """:func:`normal_form` of what ``text`` may be, None if it is no reference at all (only
    plain tuples of strings are kept, which the garbage collector need not scan)."""
    found = identifiers.detect(text)
    return normal_form(found) if found else None
