"""UN/EDIFACT syntax for the feed adapter: files into segments, segments into elements (pure).

pydifact (0.2.x) reads one interchange that ends its segments in ``'``; real terminal files
are not that tidy (STANDARDS.md, "UN/EDIFACT"). This module does the little that must happen
before pydifact can be given the text, and hands every message to pydifact for the rest
(components, the release character, empty elements):

Segments
    :func:`raw_segments` cuts the decoded lines of a file into segments with the separators in
    force (a ``UNA`` service string advice changes them, and a file may hold several
    interchanges each with its own ``UNA`` — pydifact refuses a second ``UNA``). A segment
    ends at a terminator not preceded by the release character (``?'`` is data). Three line
    layouts occur and may be mixed in one file: ``'`` and nothing else, ``'`` followed by a
    line break, and a line break alone (no ``'``; pydifact would read the whole file as one
    segment). A line that does not end in a terminator is taken as a segment of its own when
    the next line begins a segment (a tag of three upper-case letters or digits followed by a
    separator or a terminator, or ``UNA``), and as wrapped onto the next line otherwise (the
    line break is dropped: ``FTX+AAI+++...OCCUR`` / ``:DUE TO ...'`` is one segment). A ``UNA``
    whose sixth character is the line break itself (``UNA:+.? `` at the end of its line)
    makes the line break the terminator, and ``'`` data.
Numbering
    Segments are numbered from 1 in file order (``UNA`` counts); errors name that number
    (:attr:`gateway.feeds.model.FeedError.line`) and the number within the message.
Elements
    :func:`parse_segments` gives a message's segments to :class:`pydifact.parser.Parser` in one
    call (faster than one call per segment), with the separators of its interchange, and falls
    back to one call per segment when pydifact cannot take the message whole, so the error
    names the segment at fault. pydifact warns that it has no directory for the syntax version
    (``MissingImplementationWarning``) and that a segment has no elements (``ODI'``): neither
    is a fault, both are silenced for the call.
Dates
    :func:`date_time` reads ``DTM`` values in the formats of UNCL 2379 that carry a date
    (101, 102, 201-205, 301-304). A time without a zone is the port's local time; the caller
    says which offset that is (the adapter defaults to Hong Kong, UTC+8).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple

from pydifact.control.characters import Characters
from pydifact.exceptions import MissingImplementationWarning
from pydifact.parser import Parser
from pydifact.segments import Segment, SegmentFactory

from gateway.feeds.model import MessageError

#: The default service characters (ISO 9735 level A): component, data, decimal, release,
#: reserved, terminator.
DEFAULT_SERVICE_CHARACTERS = ":+.? '"

#: A segment tag: an upper-case letter and two upper-case letters or digits.
_TAG = re.compile(r"[A-Z][A-Z0-9]{2}")


class EdifactSyntaxError(ValueError):
    """A ``UNA`` whose service characters cannot be used (not six distinct characters)."""


@dataclass(frozen=True)
class Syntax:
    """The service characters in force for an interchange."""

    component: str
    data: str
    decimal: str
    release: str
    terminator: str
    advice: str
    """The six characters as a ``UNA`` writes them."""

    @classmethod
    def of(cls, advice: str) -> Syntax:
        """The syntax a ``UNA`` advises (its six characters after ``UNA``).

        Raises
        ------
        EdifactSyntaxError
            If the component, data, release and terminator characters are not four distinct
            characters, or one of them is a letter or digit (segments could not be cut).
        """
        if len(advice) != 6:
            raise EdifactSyntaxError(f"UNA needs six service characters, not {len(advice)}")
        used = (advice[0], advice[1], advice[3], advice[5])
        if len(set(used)) != 4 or any(c.isalnum() or c == "\r" for c in used):
            raise EdifactSyntaxError(
                f"UNA service characters {advice!r}: component, data, release and terminator "
                "must be four distinct characters, none a letter or digit"
            )
        return _syntax_of(advice)

    @property
    def characters(self) -> Characters:
        """The same characters as pydifact's :class:`~pydifact.control.Characters`."""
        return _characters(self.advice)

    @property
    def segment_end(self) -> re.Pattern[str]:
        """Matches one segment up to and including its (unescaped) terminator."""
        return _segment_end(self.release, self.terminator)

    @property
    def segment_start(self) -> re.Pattern[str]:
        """Matches the start of a line that begins a segment."""
        return _segment_start(self.data, self.component, self.terminator)

    def tag_of(self, text: str) -> str:
        """The tag of a segment's text (what stands before the first separator)."""
        if len(text) == 3 or text[3:4] in (self.data, self.component):
            return text[:3]
        end = len(text)
        for sep in (self.data, self.component):
            at = text.find(sep, 0, end)
            if at != -1:
                end = at
        return text[:end].strip()

    def number(self, text: str, *, field: str) -> float:
        """A numeric data element (either decimal mark; no exponent), as a finite float."""
        value = text.strip().replace(self.decimal, ".").replace(",", ".")
        if not _NUMBER.fullmatch(value):
            raise MessageError("bad-number", f"{field}: {text!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise MessageError("bad-number", f"{field}: {text!r} is not a finite number")
        return number


@lru_cache(maxsize=64)  # keyed by what files advise: bounded
def _syntax_of(advice: str) -> Syntax:
    return Syntax(advice[0], advice[1], advice[2], advice[3], advice[5], advice)


_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")

DEFAULT_SYNTAX = Syntax.of(DEFAULT_SERVICE_CHARACTERS)


@lru_cache(maxsize=64)  # keyed by what files advise: bounded
def _characters(advice: str) -> Characters:
    return Characters.from_str(advice)


@lru_cache(maxsize=64)  # keyed by what files advise: bounded
def _segment_end(release: str, terminator: str) -> re.Pattern[str]:
    r, t = re.escape(release), re.escape(terminator)
    return re.compile(f"((?:[^{r}{t}]|{r}.)*){t}", re.S)


@lru_cache(maxsize=64)  # keyed by what files advise: bounded
def _segment_start(data: str, component: str, terminator: str) -> re.Pattern[str]:
    seps = re.escape(data + component + terminator)
    return re.compile(f"[ \\t]*(?:UNA|[A-Z][A-Z0-9]{{2}}(?:[{seps}]|[ \\t]*$))")


#: What may stand between segments.
_BLANK = " \t\r\n"


class RawSegment(NamedTuple):
    """One segment as it stands in the file, before its elements are read."""

    number: int
    """1-based position in the file (``UNA`` included)."""
    text: str
    """The segment without its terminator (release characters still in place)."""
    tag: str
    """What stands before the first separator (checked later: three letters or digits)."""
    syntax: Syntax
    """The service characters in force for it."""
    problem: str = ""
    """Why the segment cannot be used (a bad ``UNA``), or empty."""

    def source(self) -> str:
        """The segment as it would be written again: text and terminator."""
        return self.text + self.syntax.terminator


def raw_segments(lines: Sequence[str]) -> Iterator[RawSegment]:
    """The segments of a file's decoded lines, in order (see the module docstring).

    Parameters
    ----------
    lines : sequence of str
        The file's lines without their line breaks (:func:`gateway.feeds.model.text_lines`).

    Yields
    ------
    RawSegment
        Every segment, numbered from 1; empty segments (``''``) included, so the reader can
        refuse them.
    """
    syntax = DEFAULT_SYNTAX
    number = 0
    # index of the next line with something on it, for each line (LF-only terminators)
    following: list[int] = [len(lines)] * len(lines)
    upcoming = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        following[i] = upcoming
        if lines[i].strip():
            upcoming = i
    end_of = syntax.segment_end
    pending: list[str] = []  # the start of a segment wrapped over lines (joined once, at its end)
    for i, line in enumerate(lines):
        terminator = syntax.terminator
        if pending:
            pending.append(line)
            if terminator not in line:
                nxt = following[i]
                if nxt >= len(lines) or syntax.segment_start.match(lines[nxt]):
                    body = "".join(pending).rstrip(" \t")
                    pending = []
                    number += 1
                    yield RawSegment(number, body, syntax.tag_of(body), syntax)
                continue
            text = "".join(pending)
            pending = []
        elif (line.endswith(terminator) and line.count(terminator) == 1
              and syntax.release not in line and line[:1] not in _BLANK
              and not line.startswith("UNA")):
            # the usual line: one segment and its terminator, no release character
            body = line[:-len(terminator)]
            number += 1
            yield RawSegment(number, body, syntax.tag_of(body), syntax)
            continue
        else:
            text = line
        pos, end = 0, len(text)
        while True:
            while pos < end and text[pos] in _BLANK:
                pos += 1
            if pos >= end:
                break
            if text.startswith("UNA", pos):
                number += 1
                advice = text[pos + 3:pos + 9]
                if len(advice) == 5 and pos + 8 == end:  # the line break is the terminator
                    advice += "\n"
                try:
                    syntax = Syntax.of(advice)
                    end_of = syntax.segment_end
                    yield RawSegment(number, "UNA" + advice, "UNA", syntax)
                except EdifactSyntaxError as exc:
                    yield RawSegment(number, "UNA" + advice, "UNA", syntax, problem=str(exc))
                pos += 9
                continue
            match = end_of.match(text, pos)
            if match is not None:
                body = match.group(1)
                number += 1
                yield RawSegment(number, body, syntax.tag_of(body), syntax)
                pos = match.end()
                continue
            rest = text[pos:]
            nxt = following[i]
            if nxt >= len(lines) or syntax.segment_start.match(lines[nxt]):
                body = rest.rstrip(" \t")
                number += 1
                yield RawSegment(number, body, syntax.tag_of(body), syntax)
            else:
                pending = [rest]
            break
    body = "".join(pending).rstrip(" \t")
    if body.strip():
        number += 1
        yield RawSegment(number, body, syntax.tag_of(body), syntax)


# -- elements --------------------------------------------------------------------------------
Element = str | list[str]


class Seg(NamedTuple):
    """A segment read by pydifact: its tag, elements and position."""

    tag: str
    elements: list[Element]
    position: int
    """1-based position within its message (1 = ``UNH``); 0 outside a message."""
    number: int
    """1-based position in the file."""

    def text(self, i: int, j: int = 0) -> str:
        """Component ``j`` of element ``i`` (0 = the first after the tag), stripped; ``""``
        if absent."""
        elements = self.elements
        if i >= len(elements):
            return ""
        element = elements[i]
        if isinstance(element, str):
            return element.strip() if j == 0 else ""
        return element[j].strip() if j < len(element) else ""


class _Segments(SegmentFactory):
    """pydifact's segment factory without the per-segment validation.

    :class:`pydifact.parser.Parser` takes a factory; the default one looks every segment up in
    its plug-in list and validates it against a directory, which for a message (no directory
    given) does nothing but look up the syntax version with a regular expression and warn
    that the service directory is missing. The messages' rules are checked by the readers.
    """

    @staticmethod
    def create_segment(name: str, *elements: Element, validate: bool = True,
                       version: str = "", directory: str = "") -> Segment:
        return Segment(name, *elements)


_FACTORY = _Segments()


def _parse(text: str, syntax: Syntax) -> Iterator[Segment]:
    """pydifact's segments of ``text``, its warnings silenced (module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImplementationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        parser = Parser(factory=_FACTORY, characters=syntax.characters)
        yield from parser.parse(text, syntax.characters)


def parse_segments(texts: Sequence[str], tags: Sequence[str], syntax: Syntax, *,
                   number: int, first_index: int = 1) -> list[Seg]:
    """Read consecutive segments' elements with pydifact (one call for all when it can).

    Parameters
    ----------
    texts, tags : sequences of str
        The segments' texts (without terminators) and tags (:class:`RawSegment`).
    syntax : Syntax
        The service characters in force.
    number : int
        The file number of the first segment.
    first_index : int
        The index within its message of the first segment (1 for a message's ``UNH``).

    Raises
    ------
    MessageError
        ``bad-segment`` (``line`` = the segment's index) for the first segment pydifact cannot
        read or whose tag is not three letters or digits; ``empty-segment`` for a segment with
        nothing in it.
    """
    for offset, (text, tag) in enumerate(zip(texts, tags, strict=True)):
        if not text.strip():
            raise MessageError("empty-segment", f"segment {number + offset} is empty (two "
                               "terminators in a row)", line=first_index + offset)
        if not _TAG.fullmatch(tag):
            raise MessageError("bad-segment", f"segment {number + offset}: {tag[:12]!r} is not "
                               "a segment tag (three upper-case letters or digits)",
                               line=first_index + offset)
    terminator = syntax.terminator
    whole = _read(terminator.join(texts) + terminator, syntax, tags, number, first_index)
    if whole is not None:
        return whole
    out: list[Seg] = []  # one segment at a time, to name the one at fault
    for offset, (text, tag) in enumerate(zip(texts, tags, strict=True)):
        try:
            one = list(_parse(text + terminator, syntax))
        except Exception as exc:  # pydifact is "Alpha": anything it raises is the input's fault
            raise MessageError("bad-segment", f"segment {number + offset} ({tag}): "
                               f"{_plain(exc)}", line=first_index + offset) from None
        if len(one) != 1 or one[0].tag != tag:
            raise MessageError("bad-segment", f"segment {number + offset} ({tag}) does not "
                               "read as one segment", line=first_index + offset)
        out.append(Seg(tag, one[0].elements, first_index + offset, number + offset))
    return out


def _read(text: str, syntax: Syntax, tags: Sequence[str], number: int, first_index: int
          ) -> list[Seg] | None:
    """All segments of ``text`` in one pydifact call, or None if they do not match ``tags``.

    The :class:`Seg` s are made as pydifact yields its segments, so its own objects do not
    outlive the call (a message of 10,000 containers is 70,000 of them).
    """
    out: list[Seg] = []
    count = len(tags)
    try:
        for offset, segment in enumerate(_parse(text, syntax)):
            if offset >= count or segment.tag != tags[offset]:
                return None
            out.append(Seg(segment.tag, segment.elements, first_index + offset,
                           number + offset))
    except Exception:  # pydifact is "Alpha": the caller reads one segment at a time instead
        return None
    return out if len(out) == count else None


def _plain(exc: Exception) -> str:
    return str(exc).removeprefix("EDIFACT Syntax Error: ")[:200] or type(exc).__name__


# -- dates -----------------------------------------------------------------------------------
#: UNCL 2379 formats read by :func:`date_time`: (digits of the year, digits of the time of day
#: (0, 4 or 6), whether a zone follows).
_FORMATS: dict[str, tuple[int, int, bool]] = {
    "101": (2, 0, False),  # YYMMDD
    "102": (4, 0, False),  # CCYYMMDD
    "201": (2, 4, False),  # YYMMDDHHMM
    "202": (2, 6, False),  # YYMMDDHHMMSS
    "203": (4, 4, False),  # CCYYMMDDHHMM
    "204": (4, 6, False),  # CCYYMMDDHHMMSS
    "205": (4, 4, True),  # CCYYMMDDHHMMZHHMM
    "301": (2, 4, True),  # YYMMDDHHMMZZZ
    "302": (2, 6, True),  # YYMMDDHHMMSSZZZ
    "303": (4, 4, True),  # CCYYMMDDHHMMZZZ
    "304": (4, 6, True),  # CCYYMMDDHHMMSSZZZ
}

#: The format a ``DTM`` without a format code is read in, by its length.
_BY_LENGTH = {8: "102", 12: "203", 14: "204"}

#: A zone after the time: UTC by name, or an offset (``+08``, ``+0800``, ``-0530``).
_ZONE = re.compile(r"(?:(UTC|GMT|UT|Z)|([+-])(\d{2})(\d{2})?)")

#: Latest year a reading may give (the chain stores event times as uint40 seconds).
_LAST_YEAR = 9999


def date_time(value: str, fmt: str, *, local_offset: int, field: str) -> int:
    """A ``DTM`` date/time as Unix seconds.

    Parameters
    ----------
    value : str
        The date/time text (C507 element 2380).
    fmt : str
        Its UNCL 2379 format code (element 2379); empty: guessed from the length (8 digits
        102, 12 digits 203, 14 digits 204).
    local_offset : int
        Seconds east of UTC of the port's local time, for a value without a zone.
    field : str
        What to name in an error.

    Raises
    ------
    MessageError
        ``bad-date`` for a format not read here or a value that does not fit it.
    """
    value = value.strip()
    if not fmt:
        fmt = _BY_LENGTH.get(len(value), "")
    spec = _FORMATS.get(fmt)
    if spec is None:
        raise MessageError("bad-date", f"{field}: date/time format {fmt or '(none)'!r} is not "
                           f"one of {', '.join(sorted(_FORMATS))}")
    year_digits, time_digits, zoned = spec
    digits = year_digits + 4 + time_digits
    stamp, zone_text = value[:digits], value[digits:]
    if len(stamp) != digits or not stamp.isascii() or not stamp.isdigit() or (
            zone_text and not zoned):
        raise MessageError("bad-date", f"{field}: {value!r} does not fit format {fmt}")
    year = int(stamp[:year_digits])
    if year_digits == 2:  # the POSIX %y rule: 69-99 are 1969-1999, 00-68 are 2000-2068
        year += 1900 if year >= 69 else 2000
    at = year_digits
    parts = [int(stamp[k:k + 2]) for k in range(at, digits, 2)]
    month, day, clock = parts[0], parts[1], parts[2:] + [0] * (3 - len(parts[2:]))
    offset = local_offset
    if zoned and zone_text:
        match = _ZONE.fullmatch(zone_text)
        if match is None:
            raise MessageError("bad-date", f"{field}: time zone {zone_text!r} (format {fmt}) is "
                               "not UTC/GMT or an offset such as +0800")
        if match.group(1):
            offset = 0
        else:
            hours, minutes = int(match.group(3)), int(match.group(4) or 0)
            if hours > 14 or minutes > 59:
                raise MessageError("bad-date", f"{field}: time zone {zone_text!r} is out of "
                                   "range")
            offset = (hours * 3600 + minutes * 60) * (-1 if match.group(2) == "-" else 1)
    try:
        moment = datetime(year, month, day, clock[0], clock[1], clock[2],
                          tzinfo=timezone(timedelta(seconds=offset)))
    except ValueError:
        raise MessageError("bad-date", f"{field}: {value!r} is not a date/time in format "
                           f"{fmt}") from None
    seconds = int(moment.timestamp())
    if seconds <= 0 or moment.astimezone(UTC).year > _LAST_YEAR:
        raise MessageError("bad-date", f"{field}: {value!r} is out of range")
    return seconds
