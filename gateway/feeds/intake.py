"""What of a parsed feed the caller may put on chain: visibility, roles, whole messages (pure).

An adapter already refused the messages it could not read. :func:`plan` applies the uploader's
choices and rights to the rest:

- every event gets the upload's visibility (``?visibility=&readers=``);
- an event the caller's organisation may not publish (a terminal move from a carrier, a customs
  result from anyone but customs: :func:`gateway.intake.rules.role_problem`), or one too large
  to seal, is refused — and with it every other event of the same message, so a message is
  accepted whole or not at all;
- a reading the organisation may not anchor (``Anchors.vy`` roles per kind) is refused.

The result lists what to accept and a refusal per message, each a :class:`FeedError` with the
line the message starts on, so the per-line report shows refusals beside parse errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.events.model import Visibility
from gateway.feeds.model import FeedError, ParsedEvent, ParseResult
from gateway.intake.rules import envelope_problem, role_problem
from gateway.telemetry.model import Reading

#: Most report lines a response carries (the summary always counts everything).
MAX_REPORT_LINES = 10_000


@dataclass
class Plan:
    """What an upload will accept, and what it refuses on top of the adapter's errors."""

    events: list[ParsedEvent] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    refused: list[FeedError] = field(default_factory=list)


def message_of(key: str) -> str:
    """The message part of an event key (``feed:<format>:<hash>:<index>`` → without index)."""
    return key.rsplit(":", 1)[0]


def plan(result: ParseResult, roles: int, visibility: Visibility,
         reading_problem: Callable[[str, int], str | None]) -> Plan:
    """Split ``result`` into what to accept and per-message refusals (see module doc)."""
    out = Plan()
    refused_messages: dict[str, FeedError] = {}
    events: list[ParsedEvent] = []
    for parsed in result.events:
        event = dataclasses.replace(parsed.event, visibility=visibility)
        problem = role_problem(event, roles)
        code = "role-not-allowed"
        if problem is None:
            problem = envelope_problem(event)
            code = "envelope-too-large"
        message = message_of(parsed.key)
        if problem is not None:
            refused_messages.setdefault(message, FeedError(parsed.line, code, problem))
            continue
        events.append(dataclasses.replace(parsed, event=event))
    out.events = [e for e in events if message_of(e.key) not in refused_messages]
    out.refused = list(refused_messages.values())
    refused_types: dict[str, str | None] = {}
    for reading in result.readings:
        if reading.type not in refused_types:
            refused_types[reading.type] = reading_problem(reading.type, roles)
        problem = refused_types[reading.type]
        if problem is None:
            out.readings.append(reading)
    for kind, problem in refused_types.items():
        if problem is not None:
            count = sum(1 for r in result.readings if r.type == kind)
            out.refused.append(FeedError(0, "role-not-allowed",
                                         f"{count} {kind} readings refused: {problem}"))
    return out


def report(result: ParseResult, extra: list[FeedError]) -> tuple[list[dict[str, Any]], bool]:
    """The per-line report (capped at :data:`MAX_REPORT_LINES`) and whether it was cut."""
    merged = ParseResult(result.format, result.events, result.readings,
                         [*result.errors, *extra], result.recognised, result.stats)
    lines: list[dict[str, Any]] = []
    for line in merged.report():
        if len(lines) == MAX_REPORT_LINES:
            return lines, True
        lines.append(line)
    return lines, False
