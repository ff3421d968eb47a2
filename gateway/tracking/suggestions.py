"""Near-match suggestions for a reference nothing visible matches: per reader organisation, an
index of the references it has legitimately read (never others').

What an organisation reads is learned at once (:meth:`Suggestions.learn`) and written to the
read model's ``known_refs`` at the next access-log flush (:meth:`Suggestions.take_pending`);
each organisation's index is rebuilt from the read model after ``suggest_refresh_seconds``
(references other worker processes learned). See ``docs/tracking.md`` ("Suggestions").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from rapidfuzz import fuzz, process

from gateway.events.model import Reference
from gateway.readside.readmodel import ReadModel

#: Score (rapidfuzz ``fuzz.ratio``, 0-100) a known reference needs to be suggested.
SUGGEST_CUTOFF = 60.0
#: Most references one organisation's suggestion index holds.
SUGGEST_INDEX_SIZE = 100_000
#: Most organisations whose suggestion index a process keeps.
SUGGEST_INDEXES = 256
#: Most recently learned references remembered (so the same ones are not written again).
KNOWN_REFS = 200_000


class RefIndex:
    """The references one organisation has legitimately read, for near-match suggestions,
    grouped by length.

    ``fuzz.ratio`` of strings of lengths ``a`` and ``b`` is at most ``200 min(a, b) / (a + b)``,
    so a typed value is compared only with the lengths that can reach the cutoff (nearest
    lengths first, the most recently learned references first within a length), at most
    ``scan`` of them: the cost of a suggestion is bounded whatever an organisation can see.
    (:func:`gateway.events.identifiers.detect` does not narrow further: it offers five or six
    kinds for nearly any string of letters and digits.)
    """

    def __init__(self, built: float) -> None:
        self.built = built
        self.kinds: dict[str, str] = {}  # value -> kind
        self.by_length: dict[int, list[str]] = {}

    def add(self, kind: str, value: str) -> None:
        """Know ``value`` (of ``kind``); ignored once the index is full."""
        if value in self.kinds or len(self.kinds) >= SUGGEST_INDEX_SIZE:
            return
        self.kinds[value] = kind
        self.by_length.setdefault(len(value), []).append(value)

    def candidates(self, value: str, scan: int, cutoff: float = SUGGEST_CUTOFF) -> list[str]:
        """The known references that may score ``cutoff`` against ``value``, ``scan`` at most."""
        n = len(value)
        lengths = sorted((m for m in self.by_length if 200 * min(n, m) >= cutoff * (n + m)),
                         key=lambda m: (abs(m - n), m))
        out: list[str] = []
        for m in lengths:
            room = scan - len(out)
            if room <= 0:
                break
            out.extend(self.by_length[m][-room:])
        return out


class Suggestions:
    """The per-organisation reference indexes of one process, and the references learned but
    not yet written to the read model.

    Parameters
    ----------
    model
        The read model (its ``known_refs``).
    refresh_seconds
        Age after which an organisation's index is rebuilt from the read model.
    scan
        Most known references one suggestion compares the typed text with.
    """

    def __init__(self, model: ReadModel, *, refresh_seconds: float, scan: int) -> None:
        self.model = model
        self._refresh = refresh_seconds
        self._scan = scan
        self._indexes: OrderedDict[int, RefIndex] = OrderedDict()
        self._known: OrderedDict[tuple[int, str, str], None] = OrderedDict()
        self.pending: set[tuple[int, str, str]] = set()
        """Learned ``(organisation, kind, value)`` not yet in the read model."""

    def learn(self, org: int, refs: Iterable[Reference]) -> None:
        """Remember that ``org`` read ``refs`` (its index at once, the read model's
        ``known_refs`` at the next flush; a bounded set of the recently learned keeps from
        writing the same ones again and again)."""
        known = self._known
        index = self._indexes.get(org)
        for ref in refs:
            item = (org, ref.kind, ref.value)
            if item not in known:
                known[item] = None
                self.pending.add(item)
                if index is not None:
                    index.add(ref.kind, ref.value)
        while len(known) > KNOWN_REFS:
            known.popitem(last=False)

    def take_pending(self) -> list[tuple[int, str, str]]:
        """The learned references not yet written (and forget them)."""
        refs = list(self.pending)
        self.pending.clear()
        return refs

    def clear(self) -> None:
        """Drop every index (a bulk load or reset of the read model)."""
        self._indexes.clear()

    def index(self, org: int) -> RefIndex:
        """``org``'s index: built from the read model's known references (and the ones learned
        here not yet written), rebuilt after ``refresh_seconds``."""
        now = time.monotonic()
        index = self._indexes.get(org)
        if index is not None and now - index.built < self._refresh:
            self._indexes.move_to_end(org)
            return index
        index = RefIndex(now)
        for kind, value in self.model.known_references(org, limit=SUGGEST_INDEX_SIZE):
            index.add(kind, value)
        for item_org, kind, value in self.pending:
            if item_org == org:
                index.add(kind, value)
        self._indexes[org] = index
        self._indexes.move_to_end(org)
        while len(self._indexes) > SUGGEST_INDEXES:
            self._indexes.popitem(last=False)
        return index

    def suggest(self, org: int, value: str, limit: int = 5) -> list[dict[str, Any]]:
        """Near matches of ``value`` among references ``org`` has legitimately read (at most
        ``limit``, scoring :data:`SUGGEST_CUTOFF` or more; bounded work, see
        :class:`RefIndex`)."""
        index = self.index(org)
        choices = index.candidates(value, self._scan)
        if not choices:
            return []
        found = process.extract(value, choices, scorer=fuzz.ratio, limit=limit,
                                score_cutoff=SUGGEST_CUTOFF)
        return [{"kind": index.kinds[v], "value": v, "score": round(score, 1)}
                for v, score, _ in found]
