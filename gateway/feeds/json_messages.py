"""The messages of a JSON feed, each with the line it starts on (pure).

The JSON feeds (DCSA T&T and Reefer, truck GPS, customs status, GS1 EPCIS) arrive in the same
few shapes, which :func:`read` turns into one list of messages:

- one JSON object: one message;
- a JSON array: each element is a message (a DCSA ``GET /v2/events`` response, a callback body);
- JSON Lines: one value per line (an array on a line is that many messages);
- a *wrapper* object holding the messages in a list at a known path (``{"positions": [...]}``,
  an EPCIS document's ``epcisBody.eventList``): each element of that list is a message, and
  :attr:`JsonMessage.document` keeps the wrapper so its own members can be checked.

Decoding goes through :func:`gateway.feeds.model.decode_text` (UTF-8, a line that is not read as
Latin-1), so one Latin-1 name in a UTF-8 file costs nothing. Line numbers are exact: each
element of an array is decoded where it starts (``json.JSONDecoder.raw_decode``), which also
lets a truncated array keep the elements before the break (each a whole message) and report
the break as an ``invalid-json`` error on its line. Nothing here raises for bad input: what
cannot be read is a :class:`~gateway.feeds.model.FeedError` in the list.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway import jsonbody
from gateway.events.model import CanonicalEvent, EventError, parse_time
from gateway.feeds.model import (
    MAX_FEED_BYTES,
    MAX_JSON_DEPTH,
    FeedError,
    MessageError,
    ParsedEvent,
    ParseResult,
    decode_text,
    message_key,
)
from gateway.telemetry.model import Reading

#: How much of the input ``sniff`` looks at.
HEAD_BYTES = 4096

#: A message's own id is used in its key as is only when it is a UUID (which says nothing of
#: the cargo); any other id is hashed: keys stay in the outbox in clear, and an id such as
#: ``SIM-HKD2026123-1`` would leak a declaration number there.
_SAFE_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")



class _NotFinite(ValueError):
    """``NaN``, ``Infinity`` or a number too large for a float: not JSON (RFC 8259)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"number {text[:20]} is out of range")
    return value


def _constant(text: str) -> Any:
    raise _NotFinite(f"{text} is not a JSON value")


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_constant)
_WS = re.compile(r"[ \t\n\r]*")
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class JsonMessage:
    """One message of a JSON feed."""

    line: int
    """1-based line the message starts on."""
    value: Any
    """The decoded JSON value (an object, if the feed is well formed)."""
    document: dict[str, Any] | None = field(default=None, compare=False)
    """The wrapper object whose list held the message, if any."""
    document_line: int = 0
    """The line the wrapper starts on (0 when there is none)."""


def head(data: bytes) -> str:
    """The start of the input as text, for ``sniff`` (BOM dropped, bad bytes replaced)."""
    chunk = data[:HEAD_BYTES]
    if chunk.startswith(b"\xef\xbb\xbf"):
        chunk = chunk[3:]
    return chunk.decode("utf-8", errors="replace")


def looks_like_json(text: str) -> bool:
    """Whether ``text`` starts (after white space) with a JSON object or array."""
    return text.lstrip(" \t\r\n")[:1] in ("{", "[")


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces (what a message key hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_key(fmt: str, event_id: str, index: int) -> str:
    """The idempotency key of the ``index``-th event of a message that carries its own id.

    The id is used as is when it is a UUID; otherwise its SHA-256 stands in for it (keys are
    kept in clear). Keys keep the ``feed:<format>:<message>:<index>`` shape the intake groups by.
    """
    part = event_id if _SAFE_ID.fullmatch(event_id) else (
        "id-" + hashlib.sha256(event_id.encode()).hexdigest()[:32])
    return f"feed:{fmt}:{part}:{index}"


def time_of(text: Any, where: str) -> int:
    """An ISO 8601 date-time with a zone as Unix seconds; :class:`MessageError`
    ``missing-time-zone`` or ``invalid-time`` otherwise."""
    if not isinstance(text, str):
        raise MessageError("invalid-time", f"{where}: a date-time is a string")
    try:
        return parse_time(text, field=where)
    except EventError as exc:
        try:
            naive = datetime.fromisoformat(text).tzinfo is None
        except ValueError:
            naive = False
        raise MessageError("missing-time-zone" if naive else "invalid-time",
                           f"{where}: {exc}") from None


def mentions(value: Any, keys: frozenset[str], depth: int = 4,
             matches: Callable[[dict[str, Any]], bool] | None = None) -> bool:
    """Whether an object within ``depth`` levels of ``value`` has one of ``keys`` (and, if
    given, passes ``matches``)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack and seen < 10_000:
        current, level = stack.pop()
        seen += 1
        if isinstance(current, dict):
            if keys.intersection(current) and (matches is None or matches(current)):
                return True
            children: Sequence[Any] = list(current.values())
        elif isinstance(current, list):
            children = current
        else:
            continue
        if level < depth:
            stack.extend((child, level + 1) for child in children[:100])
    return False


class SeenIds:
    """The message ids of one input: a repeat with the same content is a duplicate (skipped),
    a repeat with other content a conflict (refused)."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def check(self, message_id: str, value: Any) -> str:
        """``new``, ``duplicate`` or ``conflict``."""
        digest = hashlib.sha256(canonical_json(value).encode()).hexdigest()
        known = self._digests.get(message_id)
        if known is None:
            self._digests[message_id] = digest
            return "new"
        return "duplicate" if known == digest else "conflict"


#: What one message gave: its events and readings; None for a repeat of an earlier message.
Taken = tuple[list[ParsedEvent], list[Reading]] | None


def collect(fmt: str, items: Sequence[JsonMessage | FeedError],
            take: Callable[[JsonMessage], Taken],
            stats: Sequence[str] = ()) -> ParseResult:
    """The result of a JSON feed: ``take`` reads each message (all or nothing: a
    :class:`MessageError` refuses it with a typed error on its line), errors of the reading
    stay in order; ``stats`` counts messages, refused, duplicates (and the extra names)."""
    result = ParseResult(fmt, stats=dict.fromkeys(("messages", "refused", "duplicates",
                                                   *stats), 0))
    for item in items:
        if isinstance(item, FeedError):
            result.errors.append(item)
            continue
        result.stats["messages"] += 1
        try:
            taken = take(item)
        except MessageError as exc:
            result.stats["refused"] += 1
            if exc.code:  # an empty code: refused, and already reported once for its document
                result.errors.append(FeedError(item.line, exc.code, str(exc)))
            continue
        except RecursionError:
            result.stats["refused"] += 1
            result.errors.append(FeedError(item.line, "too-deep", "message nested too deeply"))
            continue
        if taken is None:
            result.stats["duplicates"] += 1
            continue
        result.events.extend(taken[0])
        result.readings.extend(taken[1])
    return result


def keyed(fmt: str, item: JsonMessage, seen: SeenIds, id_field: str,
          events: Sequence[CanonicalEvent], *, conflict: str) -> list[ParsedEvent] | None:
    """``events`` of one message with their idempotency keys: from the message's own id
    (``id_field``) when it has one, else from its canonical JSON; None for a repeat of an
    earlier message, :class:`MessageError` ``conflict`` for another message under a known
    id."""
    raw = item.value
    body = canonical_json(raw)
    message_id = raw.get(id_field) if isinstance(raw, dict) else None
    verdict = seen.check(message_id if isinstance(message_id, str) else body, raw)
    if verdict == "duplicate":
        return None
    if verdict == "conflict":
        raise MessageError(conflict, f"/{id_field}: {str(message_id)[:80]} names another "
                           "message earlier in the feed")
    if isinstance(message_id, str):
        keys = [event_key(fmt, message_id, i) for i in range(len(events))]
    else:
        keys = [message_key(fmt, body, i) for i in range(len(events))]
    return [ParsedEvent(e, k, item.line) for e, k in zip(events, keys, strict=True)]


class _Lines:
    """Line numbers of offsets in a text (``\\n``, ``\\r\\n`` and ``\\r`` end a line)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    def at(self, offset: int) -> int:
        return bisect_right(self._starts, offset)


def read(data: bytes, *, lists: Sequence[tuple[str, ...]] = ()) -> list[JsonMessage | FeedError]:
    """The messages of a JSON feed in input order, with an error for each part not read.

    Parameters
    ----------
    data : bytes
        The feed.
    lists : sequence of tuple of str
        Paths of the lists a wrapper object holds its messages in, e.g. ``("positions",)``
        or ``("epcisBody", "eventList")``; the first path an object has wins.
    """
    if len(data) > MAX_FEED_BYTES:
        return [FeedError(0, "too-large", f"feed is larger than {MAX_FEED_BYTES} bytes")]
    text = decode_text(data)
    lines = _Lines(text)
    start = _skip(text, 0)
    if start == len(text):
        return [FeedError(0, "empty", "the feed is empty")]
    depth = jsonbody.nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        return [FeedError(0, "too-deep", f"JSON nested {depth} deep; at most {MAX_JSON_DEPTH}")]
    reader = _Reader(text, lines, tuple(lists))
    try:
        if reader.is_json_lines(start):
            return list(reader.json_lines())
        return list(reader.document(start))
    except RecursionError:
        return [FeedError(0, "invalid-json", "JSON nested too deeply")]


class _Reader:
    def __init__(self, text: str, lines: _Lines, lists: tuple[tuple[str, ...], ...]) -> None:
        self.text = text
        self.lines = lines
        self.lists = lists

    def _error(self, offset: int, why: str) -> FeedError:
        return FeedError(self.lines.at(offset), "invalid-json", f"not valid JSON: {why}")

    # -- JSON Lines ---------------------------------------------------------------------
    def is_json_lines(self, start: int) -> bool:
        """The first line holds a whole value by itself and another line follows."""
        end = _NEWLINE.search(self.text, start)
        if end is None or not self.text[end.end():].strip(" \t\r\n"):
            return False
        try:
            _, stop = _DECODER.raw_decode(self.text[start:end.start()])
        except ValueError:  # JSONDecodeError, a non-finite number, an over-long integer
            return False
        return not self.text[start + stop:end.start()].strip(" \t")

    def json_lines(self) -> Iterator[JsonMessage | FeedError]:
        for number, line in enumerate(_NEWLINE.split(self.text), start=1):
            stripped = line.strip(" \t")
            if not stripped:
                continue
            try:
                value, stop = _DECODER.raw_decode(stripped)
            except ValueError as exc:
                yield FeedError(number, "invalid-json", f"not valid JSON: {_why(exc)}")
                continue
            if stripped[stop:].strip(" \t"):
                yield FeedError(number, "invalid-json",
                                "not valid JSON: more than one value on the line")
                continue
            elements = value if isinstance(value, list) else [value]
            for element in elements:
                yield from self._unwrap(element, number, None)

    # -- one document -------------------------------------------------------------------
    def document(self, start: int) -> Iterator[JsonMessage | FeedError]:
        text = self.text
        end: int | None
        if text[start] == "[":
            yield from self._top_array(start)
            end = self.end
        else:
            try:
                value, end = _DECODER.raw_decode(text, start)
            except ValueError as exc:
                yield self._error(getattr(exc, "pos", start), _why(exc))
                return
            yield from self._unwrap(value, self.lines.at(start), start)
        if end is not None:
            rest = _skip(text, end)
            if rest < len(text):
                yield self._error(rest, "extra data after the document")

    def _top_array(self, start: int) -> Iterator[JsonMessage | FeedError]:
        """The elements of the array at ``start`` up to the first that cannot be read; sets
        :attr:`end` to the offset after the array (None after an error)."""
        text = self.text
        self.end: int | None = None
        i = _skip(text, start + 1)
        if text[i:i + 1] == "]":
            self.end = i + 1
            return
        while True:
            try:
                value, stop = _DECODER.raw_decode(text, i)
            except ValueError as exc:
                yield self._error(getattr(exc, "pos", i), _why(exc))
                return
            yield from self._unwrap(value, self.lines.at(i), i)
            i = _skip(text, stop)
            if text[i:i + 1] == ",":
                i = _skip(text, i + 1)
            elif text[i:i + 1] == "]":
                self.end = i + 1
                return
            else:
                yield self._error(i, "expected ',' or ']' after an array element")
                return

    def _unwrap(self, value: Any, line: int, offset: int | None,
                ) -> Iterator[JsonMessage | FeedError]:
        """``value`` as messages: the elements of a wrapper's list, else itself."""
        if isinstance(value, dict):
            for path in self.lists:
                nested = _at(value, path)
                if isinstance(nested, list):
                    lines = self._element_lines(offset, path, len(nested), line)
                    for element, element_line in zip(nested, lines, strict=True):
                        yield JsonMessage(element_line, element, value, line)
                    return
        yield JsonMessage(line, value)

    def _element_lines(self, offset: int | None, path: tuple[str, ...], count: int,
                       line: int) -> list[int]:
        """The line of each element of the list at ``path`` of the object at ``offset``."""
        if offset is None:
            return [line] * count
        position: int | None = offset
        for key in path:
            if position is None:
                break
            position = _member(self.text, position, key)
        if position is None:
            return [line] * count
        found = [self.lines.at(o) for o in _element_offsets(self.text, position)]
        return found if len(found) == count else [line] * count


def _why(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (column {exc.colno})"
    return str(exc)[:120]


def _skip(text: str, i: int) -> int:
    """The offset of the first character at or after ``i`` that is not JSON white space."""
    match = _WS.match(text, i)
    return match.end() if match else i


def _at(value: dict[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = value
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def _member(text: str, start: int, key: str) -> int | None:
    """Offset of the value of the last member ``key`` of the (valid) object at ``start``."""
    found = None
    i = _skip(text, start + 1)
    while i < len(text) and text[i] != "}":
        name, i = _DECODER.raw_decode(text, i)
        i = _skip(text, _skip(text, i) + 1)  # past the colon
        if name == key:
            found = i
        _, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i:i + 1] == ",":
            i = _skip(text, i + 1)
    return found


def _element_offsets(text: str, start: int) -> Iterator[int]:
    """Offsets of the elements of the (valid) array at ``start``."""
    i = _skip(text, start + 1)
    while i < len(text) and text[i] != "]":
        yield i
        _, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i:i + 1] == ",":
            i = _skip(text, i + 1)
