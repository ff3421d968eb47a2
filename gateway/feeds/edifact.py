"""UN/EDIFACT feeds: terminal and carrier messages into canonical events (pure).

Terminals report container moves in UN/EDIFACT, carriers report statuses and releases in it:
CODECO (gate in / gate out), COARRI (discharge / load), COPARN (the line's release order:
the right to pick a container up) and IFTSTA (status of a consignment by bill of lading, with
UN/ECE Rec. 24 status codes). :func:`parse` reads a file of them into
:class:`~gateway.events.model.CanonicalEvent` s, one per container (per status for IFTSTA);
what each message type gives, and the code tables with their sources, are in
:mod:`gateway.feeds.edifact_messages`.

Reading a file
--------------
pydifact reads the elements; :mod:`gateway.feeds.edifact_syntax` first cuts the file into
segments, because real files break pydifact's assumptions (STANDARDS.md, "UN/EDIFACT"):

- segments ended by ``'``, by ``'`` and a line break, or by a line break alone, mixed in one
  file; a segment wrapped over two lines;
- several interchanges in one file, each with its own ``UNA`` (pydifact refuses a second
  ``UNA``), and messages without an interchange around them;
- the release character (``?'`` is a quote in the data), and separators a ``UNA`` changes;
- directories pydifact does not know (its ``MissingImplementationWarning`` is silenced);
- lines in UTF-8 and in Latin-1 in one file (each line decoded on its own,
  :func:`gateway.feeds.model.text_lines`);
- files cut short: a message without its ``UNT`` is refused, the ones before it are kept.

All or nothing per message
--------------------------
A message (``UNH`` to ``UNT``) gives all its events or none: its ``UNT`` must count its
segments and repeat its reference, every segment must read, every container number must be
one (a wrong check digit is flagged, not refused), every date must be a date. IFTSTA refuses
per consignment instead (:mod:`gateway.feeds.edifact_messages`). An error names the segment:
:attr:`~gateway.feeds.model.FeedError.line` is its 1-based number in the file (``UNA``
counted) and :attr:`~gateway.feeds.model.FeedError.segment` its number in the message
(``UNH`` = 1). Faults of the envelope (``UNB`` / ``UNZ`` counts and references) are reported
as errors of their own and cost no message its events.

Time zone
---------
EDIFACT times rarely carry a zone (``DTM`` format ``203``); a time without one is the port's
local time, taken as Hong Kong time (UTC+8, :data:`LOCAL_OFFSET`) unless the value carries a
zone (formats ``205`` and ``301``-``304``). :func:`read` takes another offset for another port.

Idempotency keys
----------------
An event's key is :func:`gateway.feeds.model.message_key` of its message's segments as
re-written with their terminators (so line breaks do not change it) and the event's position
in the message: a re-sent file gives the same keys.

Performance
-----------
pydifact tokenises one character at a time and is about three quarters of the work. The
adapter gives it a whole message per call (one call per segment only to find the segment at
fault), through a segment factory that skips its per-segment directory validation (no
directory is given for a message, so that validation only looks up the syntax version and
warns); it keeps a message's segments as strings until pydifact reads them, so the collector
does not walk a tuple per segment. A 10,000-container COARRI (71,010 segments, written by
:func:`devnet.simfeeds.edifact.benchmark_coarri`) reads at 20,000 to 27,000 segments per
second of CPU on one core of the development machine (a timing, not a test).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.feeds import edifact_messages as messages
from gateway.feeds.edifact_messages import Context, Envelope
from gateway.feeds.edifact_syntax import (
    RawSegment,
    Seg,
    Syntax,
    date_time,
    parse_segments,
    raw_segments,
)
from gateway.feeds.model import (
    MAX_FEED_BYTES,
    FeedError,
    MessageError,
    ParsedEvent,
    ParseResult,
    message_key,
    not_this_format,
    text_lines,
)

FORMAT = "edifact"

#: Seconds east of UTC of a time without a zone: Hong Kong (UTC+8).
LOCAL_OFFSET = 8 * 3600

#: What a file starts with: a ``UNA``, or ``UNB`` / ``UNH`` and a separator.
_START = re.compile(rb"\s*(?:UNA.{6}|UN[BH][^A-Za-z0-9\s])", re.S)

#: Every error code the adapter reports (besides ``wrong-format``), for integrators.
ERROR_CODES: tuple[str, ...] = (
    # the file and its envelope
    "too-large", "no-messages", "bad-service-string-advice", "bad-interchange-header",
    "bad-interchange-trailer", "missing-unz", "unexpected-unz", "interchange-count-mismatch",
    "interchange-reference-mismatch", "segment-outside-message",
    # a message refused whole
    "missing-unt", "truncated", "empty-segment", "bad-segment", "segment-count-mismatch",
    "message-reference-mismatch", "unsupported-message", "missing-segment",
    "unknown-document-code", "not-a-release-order", "cancellation-not-supported",
    "not-a-container", "no-containers", "missing-field", "missing-reference",
    "missing-event-time", "bad-date", "bad-number", "invalid-container-number",
    "invalid-reference", "invalid-unlocode", "invalid-event",
    # an IFTSTA consignment refused
    "unmapped-status",
    # a bug (never expected; the tests assert it does not happen)
    "internal-error",
)

#: Service segments that open or close something outside a message.
_ENVELOPE = frozenset({"UNA", "UNB", "UNZ", "UNG", "UNE", "UNH"})


def sniff(data: bytes) -> bool:
    """Whether ``data`` starts like UN/EDIFACT (``UNA``, ``UNB+`` or ``UNH+``)."""
    return _START.match(data[:4096].removeprefix(b"\xef\xbb\xbf")) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """Read a file of UN/EDIFACT messages; never raises (see the module docstring)."""
    return read(data, received_at=received_at)


@dataclass
class _Message:
    """A message being collected: its segments' texts and tags (strings only, so that the
    collector does not grow the garbage collector's work with a tuple per segment)."""

    number: int
    """File number of its ``UNH``; the others follow without a gap."""
    syntax: Syntax
    texts: list[str]
    tags: list[str]

    def add(self, raw: RawSegment) -> None:
        self.texts.append(raw.text)
        self.tags.append(raw.tag)

    def number_of(self, index: int) -> int:
        """The file number of the segment at ``index`` (1 = UNH) within the message."""
        return self.number + (index - 1 if 1 <= index <= len(self.texts) else 0)


@dataclass
class _Interchange:
    line: int
    envelope: Envelope
    messages: int = 0
    groups: int = 0


def read(data: bytes, *, received_at: int, local_offset: int = LOCAL_OFFSET) -> ParseResult:
    """:func:`parse` with the port's UTC offset for times without a zone (seconds east)."""
    if len(data) > MAX_FEED_BYTES:
        return ParseResult(FORMAT, errors=[FeedError(
            0, "too-large", f"{len(data)} bytes: a feed file has at most {MAX_FEED_BYTES}")])
    if not sniff(data):
        return not_this_format(FORMAT, "not UN/EDIFACT: a file starts with UNA, UNB or UNH")
    try:
        return _Reader(received_at, local_offset).read(data)
    except Exception as exc:  # a bug here must not take the intake down; tests assert none
        return ParseResult(FORMAT, errors=[FeedError(
            0, "internal-error", f"the EDIFACT adapter failed: {type(exc).__name__}: {exc}")])


def _count(text: str) -> int | None:
    """A count data element (``UNT`` 0074, ``UNZ`` 0036): ASCII digits, else None."""
    return int(text) if _DIGITS.fullmatch(text) else None


_DIGITS = re.compile(r"[0-9]{1,10}")


def _keys(message: bytes, count: int) -> list[str]:
    """:func:`message_key` of a message for indices ``0 .. count-1``, hashing it once."""
    first = message_key(FORMAT, message, 0)
    prefix = first[:-len(":0")]
    return [first] + [f"{prefix}:{i}" for i in range(1, count)]


class _Reader:
    """One pass over a file's segments: interchanges, messages, errors."""

    def __init__(self, received_at: int, local_offset: int) -> None:
        self.received_at = received_at
        self.local_offset = local_offset
        self.result = ParseResult(FORMAT)
        self.stats = {"interchanges": 0, "messages": 0, "segments": 0, "refused_messages": 0,
                      "refused_consignments": 0, "skipped_equipment": 0}

    def error(self, line: int, code: str, message: str, segment: int | None = None) -> None:
        self.result.errors.append(FeedError(line, code, message, segment))

    def read(self, data: bytes) -> ParseResult:
        lines = [text for _, text in text_lines(data)]
        interchange: _Interchange | None = None
        message: _Message | None = None
        stray: list[RawSegment] = []
        last = 0
        for raw in raw_segments(lines):
            last = raw.number
            self.stats["segments"] += 1
            if message is not None:
                if raw.tag == "UNT":
                    message.add(raw)
                    self.message(message, interchange)
                    message = None
                    continue
                if raw.tag not in _ENVELOPE:
                    message.add(raw)
                    continue
                self.refuse_open(message, f"a {raw.tag} (segment {raw.number}) comes before "
                                 "its UNT", "missing-unt")
                message = None
            if raw.tag not in _ENVELOPE:
                stray.append(raw)
                continue
            if stray:
                self.stray(stray)
                stray = []
            if raw.tag == "UNA":
                if raw.problem:
                    self.error(raw.number, "bad-service-string-advice", raw.problem)
            elif raw.tag == "UNB":
                if interchange is not None:
                    self.error(interchange.line, "missing-unz", f"the interchange of segment "
                               f"{interchange.line} has no UNZ before the next UNB")
                interchange = self.interchange(raw)
            elif raw.tag == "UNZ":
                if interchange is None:
                    self.error(raw.number, "unexpected-unz", "UNZ without a UNB before it")
                else:
                    self.close(raw, interchange)
                interchange = None
            elif raw.tag == "UNG":
                if interchange is not None:
                    interchange.groups += 1
            elif raw.tag == "UNH":
                message = _Message(raw.number, raw.syntax, [raw.text], [raw.tag])
        if stray:
            self.stray(stray)
        if message is not None:
            self.refuse_open(message, "the file ends before its UNT (cut short?)", "truncated")
        if interchange is not None:
            self.error(interchange.line, "missing-unz", f"the interchange of segment "
                       f"{interchange.line} has no UNZ (the file ends at segment {last})")
        if not self.stats["messages"]:
            self.error(0, "no-messages", "no UNH ... UNT message in the file")
        self.result.stats = {k: v for k, v in self.stats.items() if v} | {
            "events": len(self.result.events)}
        return self.result

    # -- envelope --------------------------------------------------------------------------
    def interchange(self, raw: RawSegment) -> _Interchange:
        self.stats["interchanges"] += 1
        try:
            unb = parse_segments([raw.text], [raw.tag], raw.syntax, number=raw.number,
                                 first_index=0)[0]
            prepared = None
            date, clock = unb.text(3, 0), unb.text(3, 1)
            if date:
                fmt = {6: "201", 8: "203"}.get(len(date), "")
                prepared = date_time(date + (clock or "0000"), fmt,
                                     local_offset=self.local_offset, field="UNB date/time")
            envelope = Envelope(sender=unb.text(1, 0)[:35], recipient=unb.text(2, 0)[:35],
                                reference=unb.text(4)[:35], prepared_at=prepared)
        except MessageError as exc:
            self.error(raw.number, "bad-interchange-header", str(exc))
            envelope = Envelope()
        return _Interchange(raw.number, envelope)

    def close(self, raw: RawSegment, interchange: _Interchange) -> None:
        try:
            unz = parse_segments([raw.text], [raw.tag], raw.syntax, number=raw.number,
                                 first_index=0)[0]
        except MessageError as exc:
            self.error(raw.number, "bad-interchange-trailer", str(exc))
            return
        counted = interchange.groups or interchange.messages
        said = unz.text(0)
        if _count(said) != counted:
            what = "functional groups" if interchange.groups else "messages"
            self.error(raw.number, "interchange-count-mismatch", f"UNZ counts {said!r} but the "
                       f"interchange holds {counted} {what}")
        if interchange.envelope.reference and unz.text(1) != interchange.envelope.reference:
            self.error(raw.number, "interchange-reference-mismatch", f"UNZ reference "
                       f"{unz.text(1)!r} is not the UNB's {interchange.envelope.reference!r}")

    def stray(self, run: Sequence[RawSegment]) -> None:
        tags = ", ".join(dict.fromkeys(r.tag[:3] for r in run))
        self.error(run[0].number, "segment-outside-message", f"{len(run)} segment(s) ({tags}) "
                   "outside any UNH ... UNT message, ignored")

    def refuse_open(self, message: _Message, why: str, code: str) -> None:
        self.stats["messages"] += 1
        self.stats["refused_messages"] += 1
        self.error(message.number, code, f"message of segment {message.number} has no UNT: "
                   f"{why}", 1)

    # -- messages --------------------------------------------------------------------------
    def message(self, message: _Message, interchange: _Interchange | None) -> None:
        self.stats["messages"] += 1
        if interchange is not None:
            interchange.messages += 1
        envelope = interchange.envelope if interchange is not None else Envelope()
        try:
            segs = parse_segments(message.texts, message.tags, message.syntax,
                                  number=message.number)
            ctx = self.context(segs, envelope, message.syntax)
            reading = messages.READERS[ctx.message_type](ctx, segs[1:-1])
        except MessageError as exc:
            self.stats["refused_messages"] += 1
            index = exc.line if 1 <= exc.line <= len(message.texts) else 1
            self.error(message.number_of(index), exc.code, str(exc), index)
            return
        for refusal in reading.refused:
            index = refusal.line if 1 <= refusal.line <= len(message.texts) else 1
            self.stats["refused_consignments"] += 1
            self.error(message.number_of(index), refusal.code, str(refusal), index)
        self.stats["skipped_equipment"] += reading.skipped
        if not reading.events:
            return
        terminator = message.syntax.terminator
        source = (terminator.join(message.texts) + terminator).encode()
        keys = _keys(source, len(reading.events))
        self.result.events.extend(ParsedEvent(event, key, message.number)
                                  for event, key in zip(reading.events, keys, strict=True))

    def context(self, segs: list[Seg], envelope: Envelope, syntax: Syntax) -> Context:
        """The message's identity, after checking ``UNH`` against ``UNT``."""
        unh, unt = segs[0], segs[-1]
        reference, message_type = unh.text(0), unh.text(1, 0)
        said = unt.text(0)
        if _count(said) != len(segs):
            raise MessageError("segment-count-mismatch", f"UNT counts {said!r} segments but the "
                               f"message has {len(segs)} (UNH to UNT)", line=len(segs))
        if unt.text(1) != reference:
            raise MessageError("message-reference-mismatch", f"UNT reference {unt.text(1)!r} "
                               f"is not the UNH's {reference!r}", line=len(segs))
        if message_type not in messages.READERS:
            raise MessageError("unsupported-message", f"{message_type or '(none)'} messages are "
                               f"not read here ({', '.join(messages.READERS)})", line=1)
        return Context(envelope, message_type, reference[:35], syntax,
                       self.local_offset, self.received_at)
