"""The feed intake's plan: visibility applied, roles per event and per reading, whole messages."""

from __future__ import annotations

from contracts import ROLES
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.feeds.intake import MAX_REPORT_LINES, message_of, plan, report
from gateway.feeds.model import FeedError, ParsedEvent, ParseResult, message_key
from gateway.telemetry.model import Reading

T0 = 1_790_000_000


def _event(kind: str, number: str, event_type: str) -> CanonicalEvent:
    return CanonicalEvent(event_type, "ACT", T0, Reference(kind, number), "HKHKG")


def _no_reading_rule(kind: str, roles: int) -> str | None:
    return None


def _terminal_file() -> ParseResult:
    first = message_key("edifact", b"UNH+1+COARRI", 0)
    second_a = message_key("edifact", b"UNH+2+IFTSTA", 0)
    second_b = message_key("edifact", b"UNH+2+IFTSTA", 1)
    return ParseResult("edifact", events=[
        ParsedEvent(_event("container", "CSQU3054383", "TERMINAL.DISC"), first, 3),
        ParsedEvent(_event("container", "CSQU3054383", "TERMINAL.AVPU"), second_a, 12),
        ParsedEvent(_event("declaration", "HK123", "CUSTOMS.CUSR"), second_b, 12),
    ])


def test_message_of_drops_the_index() -> None:
    key = message_key("ais", b"x", 7)
    assert key.endswith(":7") and message_of(key) == key[:-2]


def test_visibility_is_the_uploads() -> None:
    chosen = plan(_terminal_file(), ROLES["terminal"] | ROLES["customs"],
                  Visibility("reference", (4,)), _no_reading_rule)
    assert len(chosen.events) == 3 and not chosen.refused
    assert {e.event.visibility for e in chosen.events} == {Visibility("reference", (4,))}


def test_a_refused_event_refuses_its_whole_message_only() -> None:
    # a terminal may publish TERMINAL.* but not CUSTOMS.*: message 2 goes whole, message 1 stays
    chosen = plan(_terminal_file(), ROLES["terminal"], Visibility(), _no_reading_rule)
    assert [e.event.event_type for e in chosen.events] == ["TERMINAL.DISC"]
    assert len(chosen.refused) == 1
    refusal = chosen.refused[0]
    assert refusal.code == "role-not-allowed" and refusal.line == 12
    assert "CUSTOMS events are published by customs" in refusal.message


def test_readings_refused_by_kind_with_a_count() -> None:
    readings = [Reading("truck-position", T0 + i, Reference("truck", "XX1234"),
                        {"lat": 22.3, "lon": 114.1}) for i in range(3)]
    readings.append(Reading("ais-position", T0, None, {"mmsi": 477000000, "lat": 1, "lon": 2}))
    result = ParseResult("gps", readings=readings)

    def only_ais(kind: str, roles: int) -> str | None:
        return None if kind == "ais-position" else f"{kind} is anchored by hauliers"

    chosen = plan(result, ROLES["terminal"], Visibility(), only_ais)
    assert [r.type for r in chosen.readings] == ["ais-position"]
    assert chosen.refused == [FeedError(0, "role-not-allowed",
                                        "3 truck-position readings refused: "
                                        "truck-position is anchored by hauliers")]


def test_report_is_in_line_order_and_capped() -> None:
    result = _terminal_file()
    result.errors.append(FeedError(5, "bad-segment", "segment 5 is not EDIFACT"))
    lines, cut = report(result, [FeedError(12, "role-not-allowed", "no")])
    assert [(line["kind"], line.get("line")) for line in lines] == [
        ("event", 3), ("error", 5), ("event", 12), ("event", 12), ("error", 12)]
    assert not cut
    many = ParseResult("ais", errors=[FeedError(i, "bad-checksum", "x")
                                      for i in range(MAX_REPORT_LINES + 5)])
    lines, cut = report(many, [])
    assert cut and len(lines) == MAX_REPORT_LINES
