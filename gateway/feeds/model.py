"""What a feed adapter returns: events, readings and typed per-line errors (pure).

Every adapter module in :mod:`gateway.feeds` has

- ``FORMAT``: its name (``edifact``, ``ais``, ...; see :mod:`gateway.feeds.formats`);
- ``sniff(data: bytes) -> bool``: a cheap look at the first bytes, for format detection;
- ``parse(data: bytes, *, received_at: int) -> ParseResult``: never raises; ``received_at``
  (Unix seconds) stands in for a time the format does not carry (an AIS sentence without a
  tag block or wrapper time).

All or nothing per message
--------------------------
An adapter emits a message's events only if the whole message could be read; otherwise it
emits the message's errors and none of its events. A bad check digit in a reference is not
such an error: the event is kept and flagged (:func:`reference`, ``details.flags``).

Idempotency
-----------
Each :class:`ParsedEvent` has a ``key`` derived from the message's own bytes (and the event's
position in the message), so a re-sent file gives the same keys and the intake does not record
it twice (:func:`message_key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, EventError, Reference, validate
from gateway.telemetry.model import Reading

#: Largest feed body the gateway takes (bytes).
MAX_FEED_BYTES = 50 * 1024 * 1024

#: Deepest nesting a JSON feed may have (checked before decoding: see gateway.jsonbody).
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class FeedError:
    """Why one line, segment or message could not be read."""

    line: int
    """1-based line (or, for EDIFACT, segment) number where the problem is; 0: the whole file."""
    code: str
    """Stable, typed code, e.g. ``bad-checksum``, ``unknown-segment``, ``missing-field``."""
    message: str
    """What is wrong, in plain words, for the integrator."""
    segment: int | None = None
    """EDIFACT only: the segment number within its message (1 = UNH)."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "error", "line": self.line, "code": self.code,
                                "message": self.message}
        if self.segment is not None:
            body["segment"] = self.segment
        return body


@dataclass(frozen=True)
class ParsedEvent:
    """A canonical event read from a feed, with its idempotency key and where it came from."""

    event: CanonicalEvent
    key: str
    """Stable key (same file, same key): see :func:`message_key`."""
    line: int = 0
    """1-based line / segment number of the message's start."""

    def to_json(self) -> dict[str, Any]:
        """The report's JSON form: the API's canonical event plus ``kind``, ``id``, ``line``."""
        body: dict[str, Any] = {"kind": "event", **self.event.to_json(), "id": self.key}
        if self.line:
            body["line"] = self.line
        return body


@dataclass
class ParseResult:
    """What an adapter read from one input."""

    format: str
    events: list[ParsedEvent] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    errors: list[FeedError] = field(default_factory=list)
    recognised: bool = True
    """False when the input is not this format at all (the CLI exits 2)."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counters the adapter keeps (messages, dropped fragments, rejected sentences, ...)."""

    def report(self) -> Iterator[dict[str, Any]]:
        """The JSON Lines report, in input order: events, readings and errors interleaved."""
        items: list[tuple[int, int, dict[str, Any]]] = []
        items.extend((e.line, 0, e.to_json()) for e in self.events)
        items.extend((r.line, 1, r.to_json()) for r in self.readings)
        items.extend((e.line, 2, e.to_json()) for e in self.errors)
        # stable sort by line keeps each kind's own order within a line
        for _, _, body in sorted(items, key=lambda item: (item[0], item[1])):
            yield body

    def summary(self) -> dict[str, Any]:
        return {"format": self.format, "recognised": self.recognised,
                "events": len(self.events), "readings": len(self.readings),
                "errors": len(self.errors), **({"stats": self.stats} if self.stats else {})}


def not_this_format(fmt: str, why: str) -> ParseResult:
    """The result of an input that is not ``fmt`` at all."""
    return ParseResult(fmt, errors=[FeedError(0, "wrong-format", why)], recognised=False)


class MessageError(ValueError):
    """Raised inside an adapter to refuse one message (caught there, never escapes)."""

    def __init__(self, code: str, message: str, *, line: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.line = line


def message_key(fmt: str, message: bytes | str, index: int = 0) -> str:
    """A stable idempotency key for the ``index``-th event of a message with these bytes."""
    raw = message.encode() if isinstance(message, str) else message
    return f"feed:{fmt}:{hashlib.sha256(raw).hexdigest()[:32]}:{index}"


def reference(kind: str, raw: str, flags: list[dict[str, str]], *, field: str) -> Reference:
    """A normalised reference; a failed check digit is flagged in ``flags``, not refused.

    Raises :class:`MessageError` for a value that is not a reference of that kind at all.
    """
    try:
        return Reference(kind, identifiers.normalise(kind, raw))
    except identifiers.IdentifierError as exc:
        if exc.code != "invalid-check-digit":
            raise MessageError(exc.code, f"{field}: {exc}") from None
        value = identifiers.compact(raw)
        flags.append({"field": field, "code": exc.code, "value": value,
                      "message": str(exc)})
        return Reference(kind, value)


def checked(event: CanonicalEvent) -> CanonicalEvent:
    """The canonical model's rules (:func:`gateway.events.model.validate`) as a MessageError."""
    try:
        return validate(event)
    except EventError as exc:
        raise MessageError(exc.code, f"{exc.field or 'event'}: {exc}") from None


def text_lines(data: bytes) -> Iterator[tuple[int, str]]:
    """The input's lines (1-based number, text), each decoded as UTF-8 or else Latin-1.

    Real files mix encodings line by line (a Latin-1 consignee name in a UTF-8 file); a line
    that is not valid UTF-8 is read as Latin-1, which never fails. CR, LF and CRLF all end a
    line; a BOM at the start is dropped.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, raw.decode("latin-1")


def decode_text(data: bytes) -> str:
    """The whole input as text, line by line as :func:`text_lines` decodes it (LF-joined)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\n".join(text for _, text in text_lines(data))
