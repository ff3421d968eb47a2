"""evaluate(): transitions against previous states, restart safety, withdrawals, settings per
subscriber, the clock pass due(), visibility of sources; properties (Hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts.facts import Measured, Observed, build_facts
from gateway.alerts.model import Alert, Source, by_key, readable_by
from gateway.alerts.rules import (
    Settings,
    SettingsError,
    as_of,
    due,
    evaluate,
    resolve_settings,
)
from gateway.alerts.tariff import parse_tariff
from gateway.events.model import CanonicalEvent, Reference
from gateway.telemetry.model import Reading
from tests.gateway.alerts.builders import (
    BOX,
    DECLARATION,
    MBL,
    OTHER_BOX,
    REEFER_BOX,
    eta,
    event,
    hk,
)
from tests.gateway.alerts.test_tariff import ISSUE_TARIFF

TARIFF = parse_tariff(ISSUE_TARIFF)
CONTAINER = Reference("container", BOX)
DAY = 86_400


def story() -> list[Observed]:
    """A box discharged and available on 2 Nov (LFD 6 Nov), a customs hold on its declaration."""
    return [
        event("TERMINAL.DISC", hk("2026-11-02 08:00"), details={"ISOEquipmentCode": "22G1"},
              related=(Reference("mbl", MBL),), publisher="Terminal"),
        event("TERMINAL.AVPU", hk("2026-11-02 09:00"), publisher="Terminal"),
        event("CUSTOMS.CUSH", hk("2026-11-03 10:00"), DECLARATION, kind="declaration",
              related=(CONTAINER,), publisher="Customs"),
    ]


def changes(result: Any) -> list[tuple[str, str]]:
    return [(t.change, t.alert.kind) for t in result.transitions]


def test_episodes_open_update_and_resolve_across_evaluations() -> None:
    items = story()
    facts = build_facts(items)
    first = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-05 10:00"))
    assert changes(first) == [("opened", "free-time-ending"), ("opened", "customs-hold")]
    previous = by_key(first.alerts)

    # a restart: the same facts, the same time -> the same keys, nothing to send
    again = evaluate(build_facts(items), Settings(), TARIFF, None, hk("2026-11-05 10:00"),
                     previous)
    assert again.transitions == []
    assert [a.to_json() for a in again.alerts] == [a.to_json() for a in first.alerts]

    # a day later: a plain day changes nothing stored (the days left are worked out when the
    # warning is read), so there is nothing to send
    later = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-06 10:00"), previous)
    assert changes(later) == []
    warning = next(a for a in later.alerts if a.kind == "free-time-ending")
    assert warning is previous[warning.key]
    assert as_of(warning.to_json(), hk("2026-11-05 10:00"))["days_left"] == 1
    assert as_of(warning.to_json(), hk("2026-11-06 10:00"))["days_left"] == 0

    # free time over: the warning resolves, the meter opens
    past = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-07 10:00"), by_key(later.alerts))
    assert changes(past) == [("resolved", "free-time-ending"), ("opened", "not-picked-up")]
    # the meter's plain days: nothing changes, whatever it has accrued
    plain = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-08 10:00"), by_key(past.alerts))
    assert plain.transitions == []
    meter = next(a for a in plain.alerts if a.kind == "not-picked-up")
    assert as_of(meter.to_json(), hk("2026-11-08 10:00"))["accrued"] == 200

    # released and gated out
    items += [event("CUSTOMS.CUSR", hk("2026-11-08 09:00"), DECLARATION, kind="declaration",
                    publisher="Customs"),
              event("TERMINAL.GTOT", hk("2026-11-08 15:00"), publisher="Terminal")]
    done = evaluate(build_facts(items), Settings(), TARIFF, None, hk("2026-11-08 16:00"),
                    by_key(past.alerts))
    assert changes(done) == [("resolved", "not-picked-up"), ("resolved", "customs-hold")]
    meter = next(t.alert for t in done.transitions if t.alert.kind == "not-picked-up")
    # resolved: the final figures are kept with it, whenever it is read
    assert (meter.figures["accrued"], meter.figures["days_in_yard"]) == (200, 7)
    assert as_of(meter.to_json(), hk("2026-12-25 10:00"))["accrued"] == 200
    assert done.wake == {}


def test_a_retracted_basis_withdraws_the_episode() -> None:
    hold = event("CUSTOMS.CUSH", hk("2026-11-03 10:00"), DECLARATION, kind="declaration",
                 publisher="Customs", order=500, ref="500")
    subject = Reference("declaration", DECLARATION)
    first = evaluate(build_facts([hold]), Settings(), None, None, hk("2026-11-04 10:00"))
    assert changes(first) == [("opened", "customs-hold")]
    # the publisher retracts it (an empty correction of the same type)
    correction = Observed(replace(hold.event, retracts=500), order=501, publisher="Customs",
                          ref="501")
    facts = build_facts([hold, correction])
    # the correction itself is a hold at the same time: the same episode, now resting on it
    corrected = evaluate(facts, Settings(), None, None, hk("2026-11-04 10:00"),
                         by_key(first.alerts))
    assert changes(corrected) == [("updated", "customs-hold")]
    assert corrected.transitions[0].alert.sources == (correction.source,)
    # retracted by another publisher: ignored (only the publisher may retract its events)
    stranger = Observed(replace(hold.event, event_type="CUSTOMS.CUSR", retracts=500),
                        order=502, publisher="Someone", ref="502")
    facts = build_facts([hold, stranger])
    assert subject in facts and facts[subject].customs[0] == hold
    # a retraction that leaves nothing: the previous open episode is withdrawn
    gone = Observed(CanonicalEvent("CUSTOMS.CUSR", "PLN", hold.event.event_time,
                                   Reference("declaration", DECLARATION), retracts=500),
                    order=503, publisher="Customs", ref="503")
    facts = build_facts([hold, gone])
    result = evaluate(facts, Settings(), None, None, hk("2026-11-04 11:00"), by_key(first.alerts))
    assert changes(result) == [("resolved", "customs-hold")]
    assert result.transitions[0].alert.figures["reason"] == "withdrawn"


def test_previous_states_of_other_subjects_are_left_alone() -> None:
    first = evaluate(build_facts(story()), Settings(), TARIFF, None, hk("2026-11-09 10:00"))
    other = build_facts([event("TERMINAL.DISC", hk("2026-11-08 08:00"), OTHER_BOX)])
    result = evaluate(other, Settings(), TARIFF, None, hk("2026-11-09 10:00"),
                      by_key(first.alerts))
    assert result.transitions == [] and result.alerts == []
    assert result.wake == {Reference("container", OTHER_BOX): hk("2026-11-11 00:00")}


def test_kinds_per_subscriber() -> None:
    facts = build_facts(story())
    only = resolve_settings(Settings(), {"kinds": ["customs-hold", "not-picked-up"]},
                            {"kinds": ["not-picked-up"]})
    result = evaluate(facts, only, TARIFF, None, hk("2026-11-09 10:00"))
    assert [a.kind for a in result.alerts] == ["not-picked-up"]
    assert evaluate(facts, Settings(), None, None, hk("2026-11-09 10:00")).alerts[0].kind == \
        "customs-hold"  # no tariff: no storage alerts


@pytest.mark.parametrize(("raw", "path"), [
    ({"kinds": ["late"]}, "/kinds"),
    ({"vessels": {}}, "/vessels"),
    ({"vessel": {"delay": 3}}, "/vessel/delay"),
    ({"vessel": {"delay_hours": "24"}}, "/vessel/delay_hours"),
    ({"vessel": {"change_hours": 30}}, "/vessel/change_hours"),
    ({"vessel": {"use_ais": 1}}, "/vessel/use_ais"),
    ({"reefer": {"sustain_readings": 0}}, "/reefer/sustain_readings"),
    ({"reefer": {"sustain_minutes": -5}}, "/reefer/sustain_minutes"),
    ({"reefer": {"commodity_bands": {"vaccines": [8, 2]}}}, "/reefer/commodity_bands/vaccines"),
    ({"storage": {"default_size": "30"}}, "/storage/default_size"),
    ({"storage": {"warn_days": 1.5}}, "/storage/warn_days"),
])
def test_bad_settings(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().merged(raw)
    assert caught.value.path == path


def test_the_clock_pass_finds_what_time_alone_changed() -> None:
    facts = build_facts(story())
    now = hk("2026-11-05 10:00")
    first = evaluate(facts, Settings(), TARIFF, None, now)
    open_ = [a for a in first.alerts if a.is_open]
    assert due(open_, now, first.wake) == []
    # the LFD ends at midnight 6/7 Nov: the warning is due, nothing else
    assert due(open_, hk("2026-11-07 00:00"), first.wake) == [CONTAINER]
    # a container still inside its free time wakes at its warning, with no alert yet
    quiet = build_facts([event("TERMINAL.DISC", hk("2026-11-05 08:00"), OTHER_BOX)])
    pending = evaluate(quiet, Settings(), TARIFF, None, now)
    assert pending.alerts == []
    assert due([], hk("2026-11-08 00:00"), pending.wake) == [Reference("container", OTHER_BOX)]
    # an open storage meter is due when its rate changes (HK$200 a day from day 11: day 10's
    # per_day), not every midnight; once in its last band, never by the clock alone
    past = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-09 10:00"))
    meter = next(a for a in past.alerts if a.kind == "not-picked-up")
    assert meter.next_check == hk("2026-11-11 00:00")
    opened = [a for a in past.alerts if a.is_open]
    assert due(opened, hk("2026-11-10 00:00"), past.wake) == []
    assert due(opened, hk("2026-11-11 00:00"), past.wake) == [CONTAINER]
    last = evaluate(facts, Settings(), TARIFF, None, hk("2026-11-11 00:00"), by_key(past.alerts))
    assert changes(last) == [("updated", "not-picked-up")]
    meter = last.transitions[0].alert
    assert (meter.figures["per_day"], meter.next_check) == (200, None)
    assert due([a for a in last.alerts if a.is_open], hk("2027-01-01 00:00"), last.wake) == []


def test_no_transition_on_a_plain_day_one_on_the_band_boundary() -> None:
    """The lead's rule: a day passing writes nothing; the rate band changing does (with the new
    per_day: "HK$200/day from now"); the money read at any time is the meter's."""
    facts = build_facts(story()[:2])
    previous = by_key(evaluate(facts, Settings(), TARIFF, None, hk("2026-11-07 10:00")).alerts)
    sent = []
    for day in range(8, 16):
        now = hk(f"2026-11-{day:02d} 10:00")
        result = evaluate(facts, Settings(), TARIFF, None, now, previous)
        sent += [(day, t.change, t.alert.kind, t.alert.figures["per_day"])
                 for t in result.transitions]
        previous = by_key(result.alerts)
        meter = previous[next(k for k in previous if k.startswith("not-picked-up"))]
        shown = as_of(meter.to_json(), now)
        # day 1 = 2 Nov; charged from 7 Nov: 100 a day for days 6-10, 200 from day 11
        charged = day - 6
        assert shown["days_in_yard"] == day - 1 and shown["charged_days"] == charged
        assert shown["accrued"] == 100 * min(charged, 5) + 200 * max(0, charged - 5)
    assert sent == [(11, "updated", "not-picked-up", 200)]


def test_an_alert_never_rests_on_what_its_recipient_cannot_read() -> None:
    """Rules run over what a reader can see; ``readable_by`` checks every source."""
    mine = story()
    competitor = [event("TERMINAL.DISC", hk("2026-11-02 08:00"), OTHER_BOX,
                        publisher="Competitor Terminal"),
                  event("TERMINAL.AVPU", hk("2026-11-02 09:00"), OTHER_BOX,
                        publisher="Competitor Terminal")]
    readers = {"Consignee": {"Terminal", "Customs"}, "Competitor": {"Competitor Terminal"}}
    now = hk("2026-11-09 10:00")
    for reader, publishers in readers.items():
        visible = [o for o in mine + competitor if o.publisher in publishers]
        result = evaluate(build_facts(visible), Settings(), TARIFF, None, now)
        assert result.alerts
        for alert in result.alerts:
            assert readable_by(alert, lambda s, p=publishers: s.publisher in p)
        if reader == "Competitor":
            assert {a.subject.value for a in result.alerts} == {OTHER_BOX}
    # evaluated over everything, the consignee's alert cites the customs event
    everything = evaluate(build_facts(mine + competitor), Settings(), TARIFF, None, now)
    box_alert = next(a for a in everything.alerts if a.subject == CONTAINER and a.is_open
                     and a.kind == "not-picked-up")
    assert not readable_by(box_alert, lambda s: s.publisher == "Competitor Terminal")
    assert not readable_by(box_alert, lambda s: s.publisher == "Terminal")  # the hold's source
    assert readable_by(box_alert, lambda s: s.publisher in {"Terminal", "Customs"})


# -- properties --------------------------------------------------------------------------------
T0 = hk("2026-11-02 00:00")
_KINDS = ["TERMINAL.DISC", "TERMINAL.AVPU", "TERMINAL.GTOT", "TERMINAL.GTIN", "TERMINAL.LOAD",
          "CUSTOMS.CUSH", "CUSTOMS.CUSI", "CUSTOMS.CUSR", "CUSTOMS.CUSX", "SHIPMENT.HOLD",
          "SHIPMENT.RELS", "READING"]


@st.composite
def scenarios(draw: Any) -> tuple[list[tuple[str, int, float, bool, str]], int]:
    times = draw(st.lists(st.integers(0, 20 * 24 * 60), min_size=1, max_size=40, unique=True))
    items = []
    for i, minute in enumerate(times):
        kind = draw(st.sampled_from(_KINDS))
        box = draw(st.sampled_from([BOX, REEFER_BOX]))
        temperature = draw(st.floats(-25.0, -10.0, allow_nan=False))
        items.append((kind, T0 + minute * 60 + i % 7, temperature, draw(st.booleans()), box))
    now = T0 + draw(st.integers(0, 30 * DAY))
    return items, now


def materialise(items: list[tuple[str, int, float, bool, str]],
                orders: list[int]) -> tuple[list[Observed], list[Measured]]:
    observed, measured = [], []
    for (kind, when, temperature, flag, box), order in zip(items, orders, strict=True):
        ref = f"x{when}"
        if kind == "READING":
            values: dict[str, Any] = {"temperature": round(temperature, 1), "setpoint": -18.0}
            if flag:
                values["defrost"] = True
            measured.append(Measured(Reading("reefer", when, Reference("container", box),
                                             values), order=order, publisher="T", ref=ref))
            continue
        if kind.startswith("CUSTOMS"):
            subject, related = Reference("declaration", DECLARATION), (Reference("container",
                                                                                 box),)
        elif kind.startswith("SHIPMENT"):
            subject, related = Reference("mbl", MBL), ()
        else:
            subject, related = Reference("container", box), (Reference("mbl", MBL),)
        details = {"ISOEquipmentCode": "45R1"} if kind == "TERMINAL.DISC" and flag else {}
        observed.append(Observed(CanonicalEvent(kind, "ACT", when, subject, "HKHKG", related,
                                                details), order=order, publisher="P", ref=ref))
    return observed, measured


def run_scenario(items: list[Any], orders: list[int], now: int) -> list[dict[str, Any]]:
    observed, measured = materialise(items, orders)
    result = evaluate(build_facts(observed, measured), Settings(), TARIFF, None, now)
    return [a.to_json() for a in result.alerts]


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_receive_order_free(scenario: Any, rnd: Any) -> None:
    """Yard, hold, customs and temperature facts go by their own times: shuffling the order in
    which they were received changes nothing (except the one ISO code's source, kept single)."""
    items, now = scenario
    # one ISO-coded discharge at most, so "the latest code received" is not order-dependent
    seen_code = False
    kept = []
    for kind, when, temperature, flag, box in items:
        if kind == "TERMINAL.DISC" and flag:
            flag, seen_code = not seen_code, True
        kept.append((kind, when, temperature, flag, box))
    orders = list(range(1, len(kept) + 1))
    first = run_scenario(kept, orders, now)
    assert run_scenario(kept, orders, now) == first
    shuffled = orders[:]
    rnd.shuffle(shuffled)
    assert run_scenario(kept, shuffled, now) == first
    json.dumps(first)  # JSON all the way


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_a_restart_sends_nothing_twice(scenario: Any) -> None:
    items, now = scenario
    observed, measured = materialise(items, list(range(1, len(items) + 1)))
    facts = build_facts(observed, measured)
    first = evaluate(facts, Settings(), TARIFF, None, now)
    again = evaluate(facts, Settings(), TARIFF, None, now, by_key(first.alerts))
    assert again.transitions == []
    later = evaluate(facts, Settings(), TARIFF, None, now + DAY, by_key(first.alerts))
    for transition in later.transitions:
        assert transition.previous is None or transition.previous.key == transition.alert.key
        if transition.previous is not None:
            assert transition.alert.opened == transition.previous.opened


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-48, 72), min_size=1, max_size=8), st.permutations(range(8)))
def test_the_first_eta_received_is_the_baseline(hours: list[int], perm: list[int]) -> None:
    """ETAs are the one fact where receive order matters: the baseline is whichever came first."""
    start = hk("2026-11-24 16:00")
    order = [p for p in perm if p < len(hours)]
    observed = [eta(start + h * 3600, f"S{i % 3}", order=10 + order[i])
                for i, h in enumerate(hours)]
    result = evaluate(build_facts(observed), Settings(), None, None, start - DAY)
    baseline = min(observed, key=lambda o: o.order)
    for alert in result.alerts:
        assert alert.figures["first_eta"] == json.loads(json.dumps(
            alert.figures["first_eta"]))
        assert alert.figures["first_source"] == baseline.publisher
        assert baseline.source in alert.sources
    assert all(isinstance(a, Alert) and a.subject.kind == "vessel" for a in result.alerts)
    assert Source("event", baseline.ref, baseline.publisher) == baseline.source
