"""AIS NMEA (``!AIVDM`` / ``!AIVDO``) → vessel position and static-data readings (pure, pyais).

A shore station, a receiver or an AIS data provider sends one NMEA 0183 sentence per line::

    \\s:r003669945,c:1671533231*3C\\!AIVDM,2,1,7,A,55?MbV02;H;s<HtKR20EHE:0@T4@Dn22222222,0*1C
    $PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17
    !AIVDM,1,1,,B,15NBj>PP1gG>1PVKTDTUJOv00<0M,0*09

The armoured payload after the channel is an ITU-R M.1371 message; one message may span up to
nine sentences (fragments). pyais splits the sentences and decodes the bits; this module owns
what pyais leaves to its caller: which fragments form one message, when a message is
incomplete, what a line's time is, checksums, and what becomes a reading.

Readings
--------
- Types 1, 2, 3 (class A), 18 and 19 (class B) → ``ais-position``: ``mmsi``, ``lat``, ``lon``
  (degrees), ``sog`` (knots), ``cog`` (degrees), ``heading`` (None when 511, not available),
  ``status`` and ``status_name`` (navigation status, class A only), ``msg_type``. A position of
  181° / 91° (not available) is refused with ``position-unavailable``, not turned into a reading.
- Types 5, 24 (parts A and B) and 19's static part → ``ais-static``: ``mmsi``, ``imo``,
  ``callsign``, ``name``, ``destination``, ``ship_type``, ``dimensions``, ``draught``, ``eta``
  and, for a bad IMO check digit, ``flags`` (the reading is kept, the IMO flagged).
- Type 24 parts A (name) and B (call sign, type, dimensions) are joined by MMSI: each part's
  reading carries what both parts said so far (``part`` says which one arrived).
- The ETA is sent without a year (month, day, hour, minute; 0 / 0 / 24 / 60 = not available):
  the parts are kept as sent and ``eta.iso`` guesses the year: the first occurrence not more
  than :data:`ETA_GRACE_SECONDS` before the message time (a vessel that has not updated an ETA
  that just passed keeps it in this year rather than the next).

The subject of a reading is ``Reference("vessel", imo)`` once that MMSI's IMO number is known
from a type 5 message seen earlier by the same :class:`AisDecoder` (or handed to it by the
telemetry store); until then it is None and the reading carries only its ``mmsi``. Only an IMO
number whose check digit holds is joined to positions.

Fragments
---------
Fragments of one message share a sequence id (one digit, 0-9, reused all the time) on one
channel. pyais's ``decode(p2, p1)`` silently builds a wrong message from fragments in the wrong
order, and its streams drop what they cannot assemble without saying so. Here a message is
assembled only from fragments 1, 2, ..., n received in that order in one slot (source station,
talker and sentence type, channel, sequence id), so two halves of different messages are never
joined: a fragment that is not the next one its slot expects is an ``orphan-fragment``; a new
fragment 1 in a slot, a gap, or a group older than :attr:`DecoderLimits.max_group_lines` lines or
:attr:`DecoderLimits.max_group_seconds` seconds drops the unfinished group
(``incomplete-message``). Decoded messages must have their type's length in bits (the ranges
GPSD applies), which also catches the rare wrong join that survives all of the above.

Times
-----
A line's time is its NMEA 4.10 tag block's ``c:`` (Unix seconds, or milliseconds), else the
time of a Gatehouse ``$PGHP,1`` wrapper line right before it, else ``received_at``. A time that
is not a Unix time from 1970 to 2286 is not used (``tag_time_invalid``). A message spanning
several sentences takes the time of its first fragment.

Rejections
----------
Every line that cannot be read gives a typed :class:`~gateway.feeds.model.FeedError` with its line
number: ``bad-checksum`` (sentence, tag block or wrapper; checksums are always enforced),
``empty-payload``, ``bad-sentence``, ``not-nmea``, ``line-too-long``, ``orphan-fragment``,
``incomplete-message``, ``bad-length``, ``bad-message``, ``position-unavailable``,
``position-out-of-range``. Not errors, only counted: message types without a reading
(``unsupported_type``), other NMEA sentences (``$GPGGA``...), blank and ``#`` comment lines.
:data:`STAT_KEYS` lists the counters.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from pyais.exceptions import AISBaseException
from pyais.messages import (
    AISSentence,
    GatehouseSentence,
    NMEASentence,
    NMEASentenceFactory,
    TagBlock,
)

from gateway.events.model import Reference
from gateway.feeds.model import FeedError, MessageError, ParseResult, not_this_format, reference
from gateway.telemetry.model import Reading

FORMAT: Final = "ais"

#: Counters a decoder keeps (every key is always present in ``ParseResult.stats``).
STAT_KEYS: Final = (
    "lines",  # lines read (blank ones included)
    "sentences",  # AIS sentences (!xxVDM / !xxVDO), good or bad
    "decoded",  # complete messages decoded (all types with a reading)
    "positions",  # ais-position readings
    "statics",  # ais-static readings
    "rejected_checksum",  # sentence, tag block or wrapper checksum wrong or missing
    "empty_payload",  # a sentence without payload
    "orphan_fragments",  # a fragment that is not the next one of its slot
    "expired_groups",  # an unfinished message dropped (new fragment 1, gap, age, end of input)
    "unavailable_position",  # 181 / 91: position not available
    "bad_position",  # latitude or longitude out of range
    "unsupported_type",  # a message type without a reading (4, 8, 21, ...): counted only
    "bad_sentence",  # NMEA-looking but malformed
    "bad_length",  # a message shorter or longer than its type allows
    "bad_message",  # pyais could not decode the bits (e.g. type 24 part 2 or 3)
    "not_nmea",  # a line that is no NMEA sentence at all
    "other_sentences",  # well-formed NMEA that is not AIS ($GPGGA, $ARVSI, ...): counted only
    "comments",  # '#' comment lines (GPSD's and pyais's logs have them)
    "tag_time_invalid",  # a tag block c: or wrapper time before 1970 or not a time at all
    "decoder_errors",  # an exception no rule above foresaw (the line is refused, never raised)
)

#: Error code → the counter it adds to (``incomplete-message`` counts ``expired_groups``).
_CODE_STATS: Final = {
    "bad-checksum": "rejected_checksum",
    "empty-payload": "empty_payload",
    "bad-sentence": "bad_sentence",
    "line-too-long": "bad_sentence",
    "not-nmea": "not_nmea",
    "orphan-fragment": "orphan_fragments",
    "position-unavailable": "unavailable_position",
    "position-out-of-range": "bad_position",
    "bad-length": "bad_length",
    "bad-message": "bad_message",
}

#: Message types that become readings.
POSITION_TYPES: Final = frozenset({1, 2, 3, 18, 19})
STATIC_TYPES: Final = frozenset({5, 19, 24})
READING_TYPES: Final = POSITION_TYPES | STATIC_TYPES

#: Accepted message length in bits per type (GPSD's ranges, ``drivers/driver_ais.c``); type 24
#: by part (0 = A, 1 = B). Upper bound None: longer is accepted (the extra bits are ignored).
BIT_LENGTHS: Final[dict[int | tuple[int, int], tuple[int, int | None]]] = {
    1: (163, 204), 2: (163, 204), 3: (163, 204),
    5: (420, None),
    18: (168, None),
    19: (312, None),
    (24, 0): (160, 168),
    (24, 1): (168, None),
}

#: ITU-R M.1371 navigational status (types 1, 2, 3).
NAVIGATION_STATUS: Final = (
    "under way using engine",
    "at anchor",
    "not under command",
    "restricted manoeuvrability",
    "constrained by her draught",
    "moored",
    "aground",
    "engaged in fishing",
    "under way sailing",
    "reserved (HSC)",
    "reserved (WIG)",
    "power-driven vessel towing astern",
    "power-driven vessel pushing ahead or towing alongside",
    "reserved",
    "AIS-SART active",
    "not defined",
)

#: How far before the message time an ETA may lie and still be taken as this year's.
ETA_GRACE_SECONDS: Final = 30 * 86400

#: Payload armour characters (six-bit ASCII: '0'..'W' and '`'..'w').
_ARMOUR = bytes(range(48, 88)) + bytes(range(96, 120))

#: A sentence's checksum followed by text some receivers append (``*4A,b003660465``).
_CHECKSUM_TAIL = re.compile(rb"\*[0-9A-Fa-f]{2}(?=,)")

#: An AIS sentence at a line's start or after a tag block, or a Gatehouse wrapper (for sniff).
_SNIFF = re.compile(rb"(?m)(?:^|\\)![A-Z][A-Z0-9]VD[MO],|^\$PGHP,1,")

#: A tag block's c: value: Unix seconds (10 digits today) or milliseconds, maybe a fraction.
_TAG_TIME = re.compile(r"([0-9]{1,13})(?:\.[0-9]*)?")


@dataclass(frozen=True)
class DecoderLimits:
    """Bounds on what an :class:`AisDecoder` keeps."""

    max_group_lines: int = 20
    """An unfinished multi-sentence message is dropped when a line comes more than this many
    lines after its first one."""
    max_group_seconds: int = 60
    """... or more than this many seconds after it: by arrival (``received_at``, and
    :meth:`AisDecoder.expire` for streams) or, when both lines carry one, by their own times."""
    max_line_bytes: int = 2048
    """A longer line is refused (``line-too-long``) and not buffered further."""
    max_vessels: int = 100_000
    """MMSI → IMO and type 24 entries kept (the oldest go first)."""


@dataclass
class _Group:
    """An unfinished multi-sentence message: fragments 1..k of n, in order."""

    count: int
    """Fragments the message has."""
    parts: list[AISSentence]
    line: int
    """Line of fragment 1."""
    time: int
    """The message's time: fragment 1's line time."""
    received: int
    """When fragment 1 arrived (``received_at``)."""
    stamp: int | None
    """Fragment 1's own time (tag block or wrapper), if it had one."""


def sniff(data: bytes) -> bool:
    """True if the first 4 KiB hold an AIS sentence or a Gatehouse wrapper."""
    return _SNIFF.search(data[:4096]) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """All readings and typed errors of an AIS NMEA log (never raises)."""
    if _SNIFF.search(data) is None:
        return not_this_format(FORMAT, "no AIS sentence (!AIVDM / !AIVDO) or $PGHP wrapper")
    decoder = AisDecoder()
    decoder.feed(data, received_at=received_at)
    decoder.finish()
    return decoder.take()


class AisDecoder:
    """Stateful AIS NMEA reader: feed it bytes as they come, take results when you like.

    The same decoder serves a whole file (:func:`parse`) and a TCP or UDP stream
    (:mod:`gateway.feeds.ais_stream`): bytes may be cut anywhere (a line or a message's fragments
    across network reads); it keeps the unfinished line, the unfinished messages and what static
    data taught it (MMSI → IMO, type 24 parts) between calls.

    Parameters
    ----------
    limits : DecoderLimits
        Bounds on the state kept.
    vessels : Mapping[int, str], optional
        MMSI → IMO number already known (e.g. from the telemetry store).
    """

    def __init__(self, *, limits: DecoderLimits | None = None,
                 vessels: Mapping[int, str] | None = None) -> None:
        self.limits = limits or DecoderLimits()
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        """Counters since the decoder was made (:data:`STAT_KEYS`; ``lines`` as of the last
        :meth:`take`)."""
        self._taken: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._imo: dict[int, str] = dict(vessels or {})
        self._class_b: dict[int, dict[str, Any]] = {}
        self._tag_sources: dict[str, str] = {}
        self._groups: dict[tuple[str, str, str, int | None], _Group] = {}
        self._readings: list[Reading] = []
        self._errors: list[FeedError] = []
        self._line = 0
        self._pending = b""
        self._skipping = False
        self._started = False
        self._wrapper_time: int | None = None
        self._received_at = 0

    # -- input ---------------------------------------------------------------------------------
    def feed(self, data: bytes, *, received_at: int) -> None:
        """Read ``data``: every line it completes; an unfinished last line waits for more."""
        self._received_at = received_at
        if not self._started:
            self._started = True
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
        if self._skipping:  # the rest of a line already refused as too long
            cut = _first_line_end(data)
            if cut < 0:
                return
            self._skipping = False
            data = data[cut + (2 if data[cut:cut + 2] == b"\r\n" else 1):]
        if self._pending:
            data = self._pending + data
            self._pending = b""
        lines = data.splitlines(keepends=True)
        if lines and lines[-1][-1:] != b"\n":
            # no end yet, or a CR that a LF in the next chunk may complete
            self._pending = lines.pop()
        for raw in lines:
            self._line += 1
            self._read_line(self._line, raw, received_at)
        if len(self._pending) > self.limits.max_line_bytes:
            self._too_long(self._pending)

    def end_line(self, *, received_at: int) -> None:
        """The unfinished line is complete (a datagram ended): read it now."""
        if self._pending:
            raw, self._pending = self._pending, b""
            self._line += 1
            self._read_line(self._line, raw, received_at)
        self._skipping = False

    def discard_partial(self) -> None:
        """Forget the unfinished line (the connection it came on closed)."""
        if self._pending:
            self._line += 1
            self._pending = b""
        self._skipping = False

    def expire(self, now: int) -> None:
        """Drop unfinished messages older than ``max_group_seconds`` at Unix time ``now``."""
        limit = now - self.limits.max_group_seconds
        for key in [k for k, g in self._groups.items() if g.received < limit]:
            self._drop(key, "no further fragment within "
                       f"{self.limits.max_group_seconds} s")

    def finish(self) -> None:
        """End of input: read the last line and drop every unfinished message."""
        if self._pending:
            raw, self._pending = self._pending, b""
            self._line += 1
            self._read_line(self._line, raw, self._received_at)
        for key in list(self._groups):
            self._drop(key, "the input ended before its last fragment")

    # -- output --------------------------------------------------------------------------------
    @property
    def pending_sentences(self) -> int:
        """AIS sentences read since the last :meth:`take`."""
        return self.stats["sentences"] - self._taken["sentences"]

    @property
    def known_vessels(self) -> Mapping[int, str]:
        """MMSI → IMO number (check digit valid) learnt from static data or given."""
        return self._imo

    def take(self) -> ParseResult:
        """Readings and errors since the last call; ``stats`` counts that span too."""
        self.stats["lines"] = self._line
        delta = {k: self.stats[k] - self._taken[k] for k in STAT_KEYS}
        self._taken = dict(self.stats)
        result = ParseResult(FORMAT, readings=self._readings, errors=self._errors, stats=delta)
        self._readings, self._errors = [], []
        return result

    # -- lines ---------------------------------------------------------------------------------
    def _read_line(self, number: int, raw: bytes, received_at: int) -> None:
        try:
            raw = raw.strip()
            if not raw:
                return
            first = raw[0]
            if first == 0x23:  # '#'
                self.stats["comments"] += 1
                return
            if len(raw) > self.limits.max_line_bytes:
                raise MessageError("line-too-long", f"line of {len(raw)} bytes (at most "
                                   f"{self.limits.max_line_bytes})")
            if first not in b"!$\\":
                raise MessageError("not-nmea", f"not an NMEA sentence: {_show(raw)}")
            if len(raw) < 3 or raw[-3] != 0x2A:  # '*': text after the checksum, or no checksum
                tail = _CHECKSUM_TAIL.search(raw)
                if tail is not None:
                    raw = raw[:tail.end()]
            try:
                sentence = NMEASentenceFactory.produce(raw)
            except AISBaseException as exc:
                if type(exc).__name__ == "UnknownMessageException" and _is_other_nmea(raw):
                    self.stats["other_sentences"] += 1
                    return
                raise MessageError("bad-sentence", f"malformed sentence: {_show(raw)}") from None
            except (ValueError, IndexError, UnicodeDecodeError):
                raise MessageError("bad-sentence", f"malformed sentence: {_show(raw)}") from None
            if sentence.TYPE == "AIS":
                self._ais(number, cast(AISSentence, sentence), received_at)
            elif isinstance(sentence, GatehouseSentence):
                self._wrapper(sentence)
            else:  # pragma: no cover - the factory makes only these two
                self.stats["other_sentences"] += 1
        except MessageError as exc:
            self._refuse(number, exc.code, str(exc))
        except Exception as exc:  # never out of the adapter; a fuzz test holds this at zero
            self.stats["decoder_errors"] += 1
            self._errors.append(FeedError(number, "bad-sentence",
                                          f"cannot read this line ({type(exc).__name__})"))

    def _wrapper(self, sentence: GatehouseSentence) -> None:
        _check_sum(sentence, "Gatehouse wrapper")
        if sentence.data_fields[0] != b"1":
            self.stats["other_sentences"] += 1
            return
        stamp = int(sentence.timestamp.replace(tzinfo=UTC).timestamp())
        if not 0 <= stamp < 10**10:
            self.stats["tag_time_invalid"] += 1
            return
        self._wrapper_time = stamp

    def _ais(self, number: int, sentence: AISSentence, received_at: int) -> None:
        self.stats["sentences"] += 1
        stamp, self._wrapper_time = self._wrapper_time, None
        source = ""
        block = sentence.tag_block
        if block is not None:
            block.init()
            if not block.is_valid:
                raise MessageError("bad-checksum", "tag block checksum is wrong or missing")
            source = self._tag_source(block)
            stamp = self._tag_time(block.receiver_timestamp, stamp)
        if not sentence.is_valid:
            _check_sum(sentence, "sentence")
        if not sentence.payload:
            raise MessageError("empty-payload", "sentence without payload")
        if sentence.payload.translate(None, _ARMOUR):
            raise MessageError("bad-sentence", "payload has characters outside six-bit armour")
        if self._groups:
            self._expire_lines(number, received_at, stamp)
        line_time = received_at if stamp is None else stamp
        if sentence.frag_cnt == 1:
            self._message(number, sentence, line_time)
        else:
            self._fragment(number, sentence, _Group(sentence.frag_cnt, [sentence], number,
                                                    line_time, received_at, stamp), source)

    def _tag_source(self, block: TagBlock) -> str:
        """The block's station (``s:``); in a tag group (``g:``) only the first sentence has it."""
        source = block.source_station or ""
        group = block.group
        if group is None:
            return source
        gid = str(group.group_id)
        if group.sentence_num >= group.sentence_tot:
            return source or self._tag_sources.pop(gid, "")
        if source:
            _remember(self._tag_sources, gid, source, 1024)
            return source
        return self._tag_sources.get(gid, "")

    def _tag_time(self, text: str | None, fallback: int | None) -> int | None:
        if text is None:
            return fallback
        match = _TAG_TIME.fullmatch(text)
        if match is None:
            self.stats["tag_time_invalid"] += 1
            return fallback
        value = int(match.group(1))
        if value >= 10**12:  # milliseconds
            value //= 1000
        if value >= 10**10:
            self.stats["tag_time_invalid"] += 1
            return fallback
        return value

    # -- fragments -----------------------------------------------------------------------------
    def _fragment(self, number: int, sentence: AISSentence, start: _Group, source: str) -> None:
        """Add a fragment to its slot's group (``start``: the group it begins if it is a 1)."""
        key = (source, sentence.talker_id + sentence.type, sentence.channel, sentence.seq_id)
        group = self._groups.get(key)
        if sentence.frag_num == 1:
            if group is not None:
                self._drop(key, f"sequence id {sentence.seq_id} reused on line {number}")
            self._groups[key] = start
            return
        if group is None or group.count != sentence.frag_cnt \
                or len(group.parts) + 1 != sentence.frag_num:
            if group is not None:
                self._drop(key, f"fragment {sentence.frag_num} of {sentence.frag_cnt} on "
                           f"line {number} does not follow it")
            raise MessageError("orphan-fragment",
                               f"fragment {sentence.frag_num} of {sentence.frag_cnt} (sequence "
                               f"id {sentence.seq_id}, channel {sentence.channel}) without the "
                               "fragments before it")
        group.parts.append(sentence)
        if len(group.parts) == group.count:
            del self._groups[key]
            whole = AISSentence.assemble_from_iterable(group.parts)
            try:
                self._message(group.line, whole, group.time)
            except MessageError as exc:
                self._refuse(group.line, exc.code, str(exc))

    def _expire_lines(self, number: int, received_at: int, stamp: int | None) -> None:
        limits = self.limits
        stale = [k for k, g in self._groups.items()
                 if number - g.line > limits.max_group_lines
                 or received_at - g.received > limits.max_group_seconds
                 or (stamp is not None and g.stamp is not None
                     and stamp - g.stamp > limits.max_group_seconds)]
        for key in stale:
            self._drop(key, "its other fragments did not follow within "
                       f"{self.limits.max_group_lines} lines / {self.limits.max_group_seconds} s")

    def _drop(self, key: tuple[str, str, str, int | None], why: str) -> None:
        group = self._groups.pop(key)
        self.stats["expired_groups"] += 1
        self._errors.append(FeedError(
            group.line, "incomplete-message",
            f"message of {group.count} fragments dropped after {len(group.parts)}: {why}"))

    # -- messages ------------------------------------------------------------------------------
    def _message(self, line: int, sentence: AISSentence, at: int) -> None:
        msg_type = sentence.ais_id
        if msg_type not in READING_TYPES:
            self.stats["unsupported_type"] += 1
            return
        bits = len(sentence.bv)
        limits_key: int | tuple[int, int] = msg_type
        if msg_type == 24:
            limits_key = (24, sentence.bv.get(38, 2)) if bits >= 40 else (24, 0)
        low, high = BIT_LENGTHS.get(limits_key, (0, None))
        if bits < low or (high is not None and bits > high):
            raise MessageError("bad-length", f"type {msg_type} message of {bits} bits "
                               f"(expected {low}{f'..{high}' if high else ' or more'})")
        try:
            decoded: Any = sentence.decode()
        except AISBaseException as exc:
            raise MessageError("bad-message", f"type {msg_type}: {exc}") from None
        self.stats["decoded"] += 1
        mmsi: int = decoded.mmsi
        if msg_type == 24:
            self._static_24(line, at, mmsi, decoded)
            return
        if msg_type == 5:
            self._static_5(line, at, mmsi, decoded)
            return
        if msg_type == 19:  # static part first: the position may still be refused
            self._static_19(line, at, mmsi, decoded)
        self._position(line, at, mmsi, msg_type, decoded)

    def _position(self, line: int, at: int, mmsi: int, msg_type: int, msg: Any) -> None:
        lat, lon = msg.lat, msg.lon  # floats, degrees
        if lat == 91.0 or lon == 181.0:
            raise MessageError("position-unavailable",
                               f"type {msg_type} from MMSI {mmsi}: position not available")
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise MessageError("position-out-of-range",
                               f"type {msg_type} from MMSI {mmsi}: lat {lat}, lon {lon}")
        speed, course, heading = msg.speed, msg.course, msg.heading
        status = int(msg.status) if msg_type <= 3 else None
        values = {
            "mmsi": mmsi,
            "lat": lat,
            "lon": lon,
            "sog": speed if speed < 102.3 else None,  # 1023: not available
            "cog": course if course < 360.0 else None,  # 3600: not available
            "heading": heading if heading < 360 else None,  # 511: not available
            "status": status,
            "status_name": None if status is None else NAVIGATION_STATUS[status],
            "msg_type": msg_type,
        }
        self.stats["positions"] += 1
        imo = self._imo.get(mmsi)
        self._readings.append(Reading("ais-position", at,
                                      None if imo is None else Reference("vessel", imo),
                                      values, line))

    def _static_5(self, line: int, at: int, mmsi: int, msg: Any) -> None:
        flags: list[dict[str, str]] = []
        imo: str | None = None
        subject: Reference | None = None
        raw_imo = int(msg.imo or 0)
        if raw_imo:
            try:
                subject = reference("vessel", str(raw_imo), flags, field="imo")
                imo = subject.value
            except MessageError as exc:
                flags.append({"field": "imo", "code": exc.code, "value": str(raw_imo),
                              "message": str(exc)})
        if subject is not None and not flags:
            _remember(self._imo, mmsi, subject.value, self.limits.max_vessels)
        values: dict[str, Any] = {
            "mmsi": mmsi,
            "imo": imo,
            "callsign": msg.callsign or None,
            "name": msg.shipname or None,
            "destination": msg.destination or None,
            "ship_type": int(msg.ship_type) or None,
            "dimensions": _dimensions(msg),
            "draught": float(msg.draught) or None,
            "eta": eta(int(msg.month or 0), int(msg.day or 0), _or(msg.hour, 24),
                       _or(msg.minute, 60), at),
            "msg_type": 5,
        }
        if flags:
            values["flags"] = flags
        self.stats["statics"] += 1
        self._readings.append(Reading("ais-static", at, subject, values, line))

    def _static_24(self, line: int, at: int, mmsi: int, msg: Any) -> None:
        known = self._class_b.get(mmsi, {})
        if int(msg.partno) == 0:
            part = "A"
            known = {**known, "name": msg.shipname or None}
        else:
            part = "B"
            known = {**known, "callsign": msg.callsign or None,
                     "ship_type": int(msg.ship_type) or None,
                     "dimensions": _dimensions(msg) if hasattr(msg, "to_bow") else None}
        _remember(self._class_b, mmsi, known, self.limits.max_vessels)
        self._static_b(line, at, mmsi, {**known, "part": part, "msg_type": 24})

    def _static_19(self, line: int, at: int, mmsi: int, msg: Any) -> None:
        known = {**self._class_b.get(mmsi, {}), "name": msg.shipname or None,
                 "ship_type": int(msg.ship_type) or None, "dimensions": _dimensions(msg)}
        _remember(self._class_b, mmsi, known, self.limits.max_vessels)
        self._static_b(line, at, mmsi, {**known, "msg_type": 19})

    def _static_b(self, line: int, at: int, mmsi: int, known: dict[str, Any]) -> None:
        subject = self._vessel(mmsi)
        values: dict[str, Any] = {
            "mmsi": mmsi,
            "imo": subject.value if subject else None,
            "callsign": known.get("callsign"),
            "name": known.get("name"),
            "destination": None,
            "ship_type": known.get("ship_type"),
            "dimensions": known.get("dimensions"),
            "draught": None,
            "eta": None,
        }
        values.update((k, v) for k, v in known.items() if k in ("part", "msg_type"))
        self.stats["statics"] += 1
        self._readings.append(Reading("ais-static", at, subject, values, line))

    # -- helpers -------------------------------------------------------------------------------
    def _vessel(self, mmsi: int) -> Reference | None:
        imo = self._imo.get(mmsi)
        return Reference("vessel", imo) if imo is not None else None

    def _refuse(self, line: int, code: str, message: str) -> None:
        self.stats[_CODE_STATS[code]] += 1
        self._errors.append(FeedError(line, code, message))

    def _too_long(self, partial: bytes) -> None:
        self._pending = b""
        self._skipping = True
        self._line += 1
        self._refuse(self._line, "line-too-long",
                     f"line longer than {self.limits.max_line_bytes} bytes: {_show(partial)}")


def eta(month: int, day: int, hour: int, minute: int, at: int) -> dict[str, Any] | None:
    """An AIS ETA's parts as sent, and a guess of the moment (``iso``) near time ``at``.

    0 / 0 / 24 / 60 means not available (None). ``iso`` is the first occurrence of the date no
    more than :data:`ETA_GRACE_SECONDS` before ``at`` (None if a part is not available or the
    date does not exist, e.g. 31 April).
    """
    if (month, day, hour, minute) == (0, 0, 24, 60):
        return None
    parts: dict[str, Any] = {"month": month, "day": day, "hour": hour, "minute": minute,
                             "iso": None}
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60):
        return parts
    year = time.gmtime(at).tm_year
    for candidate in range(year - 1, year + 9):  # 9 years: a 29 February always comes
        try:
            moment = datetime(candidate, month, day, hour, minute, tzinfo=UTC)
        except ValueError:
            continue
        if moment.timestamp() >= at - ETA_GRACE_SECONDS:
            parts["iso"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            break
    return parts


def _dimensions(msg: Any) -> dict[str, int | None] | None:
    bow, stern = int(msg.to_bow or 0), int(msg.to_stern or 0)
    port, starboard = int(msg.to_port or 0), int(msg.to_starboard or 0)
    if not (bow or stern or port or starboard):
        return None
    return {"to_bow": bow, "to_stern": stern, "to_port": port, "to_starboard": starboard,
            "length": bow + stern or None, "beam": port + starboard or None}


def _or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _remember(table: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    table.pop(key, None)
    table[key] = value
    if len(table) > limit:
        del table[next(iter(table))]


def _check_sum(sentence: NMEASentence, what: str) -> None:
    if sentence.is_valid:
        return
    if sentence.checksum < 0:
        raise MessageError("bad-checksum", f"{what} does not end in a checksum (*hh)")
    raise MessageError("bad-checksum", f"{what} checksum is *{sentence.checksum:02X}, the "
                       "characters give another")


def _is_other_nmea(raw: bytes) -> bool:
    if raw[:1] == b"\\":
        end = raw.find(b"\\", 1)
        raw = raw[end + 1:] if end > 0 else b""
    return raw[:1] in (b"$", b"!") and raw[1:3].isalnum() and b"," in raw


def _first_line_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def _show(raw: bytes, limit: int = 60) -> str:
    text = raw[:limit].decode("ascii", "backslashreplace")
    return text + ("..." if len(raw) > limit else "")
