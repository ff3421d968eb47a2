"""Truck GPS batches as a feed (pure): each position a ``truck-position`` reading.

A haulier's telematics system uploads the positions its trucks reported, as JSON or CSV. The
format is ours (documented in ``docs/feed-formats.md``); one position is one message:

========== ======================================================== ==========
field      meaning                                                  required
========== ======================================================== ==========
vehicle    registration or fleet id (a ``truck`` reference)         yes
time       ISO 8601 date-time **with** a zone (``Z`` or an offset)  yes
lat        latitude, decimal degrees, −90 … 90                      yes
lon        longitude, decimal degrees, −180 … 180                   yes
speed      km/h, 0 … 300                                            no
heading    degrees clockwise from true north, 0 ≤ heading < 360    no
job        the haulage job (trip, transport order) id               no
accuracy   horizontal accuracy, metres, ≥ 0                         no
========== ======================================================== ==========

JSON: ``{"positions": [...]}`` (other members of the wrapper are ignored), an array of
positions, or JSON Lines; an absent field and ``null`` are the same; a member not in the table
is refused (``unknown-field``: a misspelt ``speed_kmh`` would otherwise be lost silently).

CSV: a header line naming the columns (any order, any case; ``,``, ``;`` or tab separated),
then one position per line; an empty cell is an absent value. A column not in the table makes
the header unreadable (``unknown-column``) and no line of the file is read.

Each position becomes a :class:`~gateway.telemetry.model.Reading` of type ``truck-position``:
subject ``{"kind": "truck", "value": <vehicle, normalised>}``, ``time``, values ``lat``,
``lon`` and whichever of ``speed``, ``heading``, ``job``, ``accuracy`` were given. A position
that fails a check is refused on its line, typed: ``missing-field``, ``invalid-latitude``,
``invalid-longitude``, ``invalid-speed``, ``invalid-heading``, ``invalid-accuracy``,
``invalid-time``, ``missing-time-zone``, ``invalid-reference`` (vehicle), ``unknown-field``,
``not-an-object``, ``wrong-field-count``.
"""

from __future__ import annotations

import csv
import math
import re
from typing import Any

from gateway.feeds import json_messages
from gateway.feeds.json_messages import JsonMessage
from gateway.feeds.model import (
    FeedError,
    MessageError,
    ParseResult,
    not_this_format,
    reference,
    text_lines,
)
from gateway.telemetry.model import Reading

FORMAT = "gps"

#: Every field of a position, in the documented order.
FIELDS: tuple[str, ...] = ("vehicle", "time", "lat", "lon", "speed", "heading", "job",
                           "accuracy")

#: Fields a position must have.
REQUIRED: tuple[str, ...] = ("vehicle", "time", "lat", "lon")

#: Highest plausible truck speed, km/h (anything faster is a bad fix).
MAX_SPEED_KMH = 300.0

#: Longest job id.
MAX_JOB = 64

_DELIMITERS = (",", ";", "\t")
_JSON_KEYS = (re.compile(r'"vehicle"\s*:'), re.compile(r'"lat"\s*:'), re.compile(r'"lon"\s*:'))
_MARKERS = frozenset({"vehicle", "lat", "lon", "positions"})


def sniff(data: bytes) -> bool:
    """JSON with ``vehicle``, ``lat`` and ``lon`` members, or CSV whose header names them."""
    text = json_messages.head(data)
    if json_messages.looks_like_json(text):
        return all(pattern.search(text) for pattern in _JSON_KEYS)
    return _header(text) is not None


def parse(data: bytes, *, received_at: int) -> ParseResult:
    """The positions of a truck GPS batch (JSON or CSV); never raises."""
    del received_at  # every position carries its own time
    if json_messages.looks_like_json(json_messages.head(data)):
        return _parse_json(data)
    return _parse_csv(data)


def _header(text: str) -> tuple[str, list[str]] | None:
    """The delimiter and lower-cased column names of a CSV header naming the required fields."""
    for line in text.splitlines():
        if not line.strip():
            continue
        for delimiter in _DELIMITERS:
            try:
                names = [n.strip().lower() for n in next(csv.reader([line],
                                                                    delimiter=delimiter))]
            except (csv.Error, StopIteration):
                continue
            if set(REQUIRED) <= set(names):
                return delimiter, names
        return None
    return None


def _parse_json(data: bytes) -> ParseResult:
    items = json_messages.read(data, lists=[("positions",)])
    messages = [m for m in items if isinstance(m, JsonMessage)]
    if messages and not any(json_messages.mentions(m.value, _MARKERS, 1) for m in messages):
        return not_this_format(FORMAT, "no truck position in it (no vehicle, lat, lon)")
    result = ParseResult(FORMAT, stats={"positions": 0, "refused": 0})
    for item in items:
        if isinstance(item, FeedError):
            result.errors.append(item)
            continue
        result.stats["positions"] += 1
        try:
            if not isinstance(item.value, dict):
                raise MessageError("not-an-object", "a position is a JSON object")
            unknown = sorted(set(item.value) - set(FIELDS))
            if unknown:
                raise MessageError("unknown-field", f"/{unknown[0]}: not a field of a position "
                                   f"({', '.join(FIELDS)})")
            result.readings.append(position(item.value, item.line))
        except MessageError as exc:
            result.stats["refused"] += 1
            result.errors.append(FeedError(item.line, exc.code, str(exc)))
    return result


def _parse_csv(data: bytes) -> ParseResult:
    lines = text_lines(data)
    header: tuple[str, list[str]] | None = None
    header_line = 0
    for number, text in lines:
        if text.strip():
            header, header_line = _header(text), number
            break
    if header is None:
        return not_this_format(FORMAT, "neither JSON nor a CSV header naming "
                               f"{', '.join(REQUIRED)}")
    delimiter, names = header
    result = ParseResult(FORMAT, stats={"positions": 0, "refused": 0})
    unknown = [n for n in names if n not in FIELDS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or repeated:
        why = (f"unknown column {unknown[0]!r} (columns: {', '.join(FIELDS)})" if unknown
               else f"column {repeated[0]!r} appears twice")
        result.errors.append(FeedError(header_line, "unknown-column" if unknown
                                       else "repeated-column", f"{why}; no line was read"))
        return result
    for number, text in lines:
        if not text.strip():
            continue
        result.stats["positions"] += 1
        try:
            try:
                cells = next(csv.reader([text], delimiter=delimiter))
            except (csv.Error, StopIteration):
                raise MessageError("wrong-field-count", "not a CSV line") from None
            if len(cells) != len(names):
                raise MessageError("wrong-field-count",
                                   f"{len(cells)} fields, the header has {len(names)}")
            row = {n: c.strip() for n, c in zip(names, cells, strict=True) if c.strip()}
            result.readings.append(position(row, number))
        except MessageError as exc:
            result.stats["refused"] += 1
            result.errors.append(FeedError(number, exc.code, str(exc)))
    return result


def position(raw: dict[str, Any], line: int = 0) -> Reading:
    """One position (JSON values, or CSV cells as strings) as a reading; checks every field.

    Raises
    ------
    MessageError
        With the typed code of the first field that fails (module doc).
    """
    fields = {k: v for k, v in raw.items() if v is not None}
    for name in REQUIRED:
        if name not in fields:
            raise MessageError("missing-field", f"/{name}: required")
    vehicle = fields["vehicle"]
    if not isinstance(vehicle, str):
        raise MessageError("invalid-reference", "/vehicle: a vehicle is a string")
    flags: list[dict[str, str]] = []
    truck = reference("truck", vehicle, flags, field="/vehicle")
    when = json_messages.time_of(fields["time"], "/time")
    values: dict[str, Any] = {
        "lat": _number(fields["lat"], "lat", "invalid-latitude", -90.0, 90.0),
        "lon": _number(fields["lon"], "lon", "invalid-longitude", -180.0, 180.0),
    }
    if "speed" in fields:
        values["speed"] = _number(fields["speed"], "speed", "invalid-speed", 0.0, MAX_SPEED_KMH)
    if "heading" in fields:
        heading = _number(fields["heading"], "heading", "invalid-heading", 0.0, 360.0)
        if heading == 360.0:
            raise MessageError("invalid-heading", "/heading: 360 is written 0")
        values["heading"] = heading
    if "job" in fields:
        job = fields["job"]
        if not isinstance(job, str) or not job.strip() or len(job) > MAX_JOB:
            raise MessageError("invalid-job", f"/job: a job id is text of 1 to {MAX_JOB} "
                               "characters")
        values["job"] = job.strip()
    if "accuracy" in fields:
        values["accuracy"] = _number(fields["accuracy"], "accuracy", "invalid-accuracy", 0.0,
                                     math.inf)
    return Reading("truck-position", when, truck, values, line)


def _number(raw: Any, name: str, code: str, low: float, high: float) -> float:
    """A finite number in ``[low, high]`` (a JSON number, or decimal text as in CSV)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise MessageError(code, f"/{name}: {raw!r} is not a number")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise MessageError(code, f"/{name}: {str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise MessageError(code, f"/{name}: {str(raw)[:40]!r} is out of range "
                           f"({low:g} to {high:g})")
    return value
