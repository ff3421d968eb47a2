"""Plain-language timelines (pure): every event type the system knows reads as a sentence in
English, Traditional and Simplified Chinese, in its actual and its planned/estimated form; the
fragments fall away when an event does not say; places in words and their local time; retracted
events struck through, not hidden; several sources of one ETA side by side."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.cargo import EVENT_TYPES
from gateway.ui.i18n import LANGUAGES, Translator, catalogue
from gateway.web import timeline

NOW = int(datetime(2026, 11, 8, 2, tzinfo=UTC).timestamp())
#: When the entries below were recorded.
RECORDED = int(datetime(2026, 11, 2, 12, 20, tzinfo=UTC).timestamp())


def entry(event_type: str, classifier: str = "ACT", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventId": 1, "type": event_type, "classifier": classifier,
        "time": "2026-11-02T12:15:00Z", "location": "HKHKG",
        "subject": {"kind": "container", "value": "CSQU3054383"}, "related": [],
        "details": {}, "publisherName": "Kwai Tsing Container Terminal",
        "recordedAt": "2026-11-02T12:20:00Z", "retracted": False, "retracts": None}
    base.update(extra)
    return base


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_event_type_has_both_sentences_in_every_language(lang: str) -> None:
    strings = catalogue(lang)
    english = catalogue("en")
    t = Translator(lang)
    assert timeline.known_types() == sorted(EVENT_TYPES) and len(EVENT_TYPES) == 60
    for event_type in EVENT_TYPES:
        for classifier in ("ACT", "EST", "PLN"):
            key = timeline.sentence_key(event_type, classifier)
            assert strings.get(key), f"{lang}: no sentence {key}"
            words = timeline.sentence(t, entry(event_type, classifier))
            assert words and "{" not in words and event_type not in words, (lang, key, words)
            if lang != "en":  # a real translation, not the English text
                assert not re.search(r"[A-Za-z]{4,}", words.replace("CSQU3054383", "")
                                     .replace("Kwai Tsing Container Terminal", "")
                                     .replace("HKHKG", "")), (key, words)
                assert strings[key] != english[key]
        assert strings[timeline.sentence_key(event_type, "ACT")] != \
            english[timeline.sentence_key(event_type, "ACT")] or lang == "en"


def test_sentences_of_the_issue() -> None:
    t = Translator("en")
    vessel = {"vessel": {"imo": "9321483", "name": "PACIFIC HARMONY"}}
    assert timeline.sentence(t, entry("TERMINAL.DISC", details=vessel)) == \
        "Discharged from PACIFIC HARMONY at Kwai Tsing Container Terminal (HKHKG)"
    assert timeline.sentence(t, entry("CUSTOMS.CUSR", publisherName="Customs")) == \
        "Customs released"
    assert timeline.sentence(t, entry(
        "LAND.PICK_UP", location="", publisherName="Swift Haulage",
        related=[{"kind": "truck", "value": "XX1234"}])) == \
        "Picked up by Swift Haulage, truck XX1234"
    arrival = entry("TRANSPORT.ARRI", subject={"kind": "vessel", "value": "9321483"},
                    publisherName="Pacific Ocean Line")
    assert timeline.sentence(t, arrival) == "Arrived at Hong Kong"
    assert timeline.sentence(t, {**arrival, "classifier": "EST"}) == "Due to arrive at Hong Kong"
    # the vessel's name from the view when the event names it only by IMO
    named = entry("TERMINAL.LOAD", related=[{"kind": "vessel", "value": "9321483"}])
    assert timeline.sentence(t, named, {"9321483": "PACIFIC HARMONY"}) == \
        "Loaded onto PACIFIC HARMONY at Kwai Tsing Container Terminal (HKHKG)"
    # nothing known: no dangling preposition
    bare = entry("EQUIPMENT.INSP", location="", publisherName="")
    assert timeline.sentence(t, bare) == "Inspected"
    air = entry("AIR.DEP", subject={"kind": "awb", "value": "16012345675"},
                details={"flight": "CX880"})
    assert timeline.sentence(t, air) == "Departed on flight CX880 from Hong Kong"
    hold = entry("CUSTOMS.CUSH", details={"reason": "document check"})
    assert timeline.sentence(t, hold) == "Customs hold: document check"
    assert timeline.sentence(Translator("zh-Hant"), hold) == "海關扣留：document check"
    assert timeline.sentence(Translator("zh-Hans"), entry("TERMINAL.DISC", details=vessel)) == \
        "在Kwai Tsing Container Terminal（HKHKG）从 PACIFIC HARMONY 卸船"


def test_local_time_of_the_place_and_age() -> None:
    t = Translator("en")
    assert timeline.place_time(t, "2026-11-02T12:15:00Z", "HKHKG") == "2 Nov 2026, 20:15 HKT"
    assert timeline.place_time(t, "2026-11-02T12:15:00Z", "NLRTM") == "2 Nov 2026, 13:15 CET"
    assert timeline.place_time(t, "2026-07-02T12:15:00Z", "NLRTM") == "2 Jul 2026, 14:15 CEST"
    assert timeline.place_time(t, "2026-11-02T12:15:00Z", "") == "2 Nov 2026, 20:15 HKT"
    line = timeline.lines(t, [entry("TERMINAL.GTIN")], RECORDED + 7200)[0]
    assert line.age_seconds == 7200 and line.source == "Kwai Tsing Container Terminal"
    html = timeline.timeline_html(t, [entry("TERMINAL.GTIN")], RECORDED + 7200)
    assert "from Kwai Tsing Container Terminal, recorded 2 h 0 min ago" in html
    assert '<time datetime="2026-11-02T12:15:00Z">2 Nov 2026, 20:15 HKT</time>' in html
    assert '<span class="cls cls-act">Actual</span>' in html


def test_retractions_are_struck_through_not_hidden() -> None:
    t = Translator("en")
    wrong = entry("TERMINAL.GTOT", eventId=5, retracted=True, retractedBy=9)
    right = entry("TERMINAL.GTOT", eventId=9, retracts=5, time="2026-11-02T13:15:00Z")
    html = timeline.timeline_html(t, [wrong, right], NOW)
    struck = re.search(r'<li class=retracted data-event="5"><del>(.*?)</del>', html)
    assert struck is not None and "Gated out at Kwai Tsing" in struck.group(1)
    assert "Corrected by a later record" in html
    assert re.search(r'<li data-event="9">.*Correction of an earlier record', html)
    assert html.index('data-event="9"') < html.index('data-event="5"')  # newest first
    zh = timeline.timeline_html(Translator("zh-Hant"), [wrong], NOW)
    assert "<del>" in zh and "已被較後的記錄更正" in zh


def test_sources_side_by_side_with_their_ages() -> None:
    vessel = {"portOfCall": "HKHKG", "etas": [
        {"source": "Pacific Ocean Line", "time": "2026-11-06T06:00:00Z", "classifier": "EST",
         "recordedAt": "2026-11-01T01:00:00Z", "freshness": 10},
        {"source": "Kwai Tsing Container Terminal", "time": "2026-11-06T10:30:00Z",
         "classifier": "EST", "recordedAt": "2026-11-01T03:00:00Z"},
        {"source": "AIS-derived", "time": "2026-11-06T08:00:00Z", "ageSeconds": 300,
         "port": "HKHKG"}]}
    rows = timeline.eta_rows(vessel, RECORDED)
    assert [r.source for r in rows] == ["Pacific Ocean Line", "AIS-derived",
                                        "Kwai Tsing Container Terminal"]
    assert rows[1].derived and rows[1].age_seconds == 300
    # an age given (freshness, ageSeconds) is used; otherwise it is counted from recordedAt
    assert rows[0].age_seconds == 10
    assert rows[2].age_seconds == RECORDED - int(datetime(2026, 11, 1, 3, tzinfo=UTC).timestamp())


def test_values_are_escaped() -> None:
    t = Translator("en")
    evil = entry("EQUIPMENT.INSP", publisherName="<script>x</script>",
                 details={"party": "<b>bad</b>"})
    html = timeline.timeline_html(t, [evil], NOW)
    assert "<script>" not in html and "<b>" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html


def test_one_fact_from_several_sources_is_one_line() -> None:
    t = Translator("en")
    vessel = {"vessel": {"imo": "9321483", "name": "PACIFIC HARMONY"}}
    carrier = entry("TRANSPORT.ARRI", "EST", eventId=3, time="2026-11-06T06:00:00Z",
                    subject={"kind": "mbl", "value": "PCOL1234567"}, details=vessel,
                    publisherName="Pacific Ocean Line", recordedAt="2026-11-01T01:00:00Z")
    terminal = entry("TRANSPORT.ARRI", "EST", eventId=4, time="2026-11-06T10:30:00Z",
                     related=[{"kind": "vessel", "value": "9321483"}], details=vessel,
                     recordedAt="2026-11-02T01:00:00Z")
    elsewhere = entry("TRANSPORT.ARRI", "EST", eventId=5, location="CNYTN", details=vessel)
    ais = timeline.EtaRow("AIS-derived", "2026-11-06T08:00:00Z", "EST", 300, "HKHKG", True)
    html = timeline.timeline_html(t, [carrier, terminal, elsewhere], RECORDED, derived=[ais])
    fact = re.search(r'<li class=fact data-events="4 3">(.*?)</ul></li>', html)
    assert fact is not None, html
    text = re.sub(r"<[^>]+>", " ", fact.group(1))
    assert "Due to arrive at Hong Kong on PACIFIC HARMONY" in text and "3 sources" in text
    order = [text.index(s) for s in ("Kwai Tsing Container Terminal, recorded",
                                     "Pacific Ocean Line, recorded", "AIS-derived, recorded")]
    assert order == sorted(order)  # newest record first, the derived one beside them
    assert "6 Nov 2026, 18:30 HKT" in text and "6 Nov 2026, 16:00 HKT" in text
    assert html.count("<li") == 2 + 3  # the fact (with 3 sources) and Yantian on its own
    assert "Due to arrive at Yantian" in html
