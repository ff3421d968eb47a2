"""Customs hold / inspection: open until released; a refusal stays."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.facts import Observed, build_facts
from gateway.alerts.rules import customs_alerts
from gateway.events.model import Reference
from tests.gateway.alerts.builders import BOX, DECLARATION, event, hk

T = hk("2026-11-03 10:00")
H = 3600
SUBJECT = Reference("declaration", DECLARATION)


def customs(code: str, hours: float, *, order: int | None = None,
            classifier: str = "ACT") -> Observed:
    return event(f"CUSTOMS.{code}", T + round(hours * H), DECLARATION, kind="declaration",
                 related=(Reference("container", BOX),), publisher="Customs", order=order,
                 classifier=classifier)


def run(items: list[Observed], now: int = T + 100 * H) -> list[tuple[Any, ...]]:
    facts = build_facts(items)
    if SUBJECT not in facts:
        return []
    return [(a.state, (a.opened - T) // H, None if a.resolved is None else (a.resolved - T) // H,
             a.figures["status"], a.figures.get("history"))
            for a in customs_alerts(facts[SUBJECT], now)]


@pytest.mark.parametrize(("codes", "expected"), [
    ([("CUSH", 0)], [("open", 0, None, "hold", None)]),
    ([("CUSH", 0), ("CUSR", 5)], [("resolved", 0, 5, "released", None)]),  # a hold released
    ([("CUSI", 0), ("CUSR", 30)], [("resolved", 0, 30, "released", None)]),
    ([("CUSH", 0), ("CUSI", 2)], [("open", 0, None, "inspection", ["hold", "inspection"])]),
    ([("CUSI", 0), ("CUSX", 8)], [("open", 0, None, "refused", ["inspection", "refused"])]),
    ([("CUSX", 0)], [("open", 0, None, "refused", None)]),
    ([("CUSR", 0)], []),  # a release with no hold: nothing
    ([("CUSH", 0), ("CUSR", 2), ("CUSH", 10)],
     [("resolved", 0, 2, "released", None), ("open", 10, None, "hold", None)]),
    ([("CUSH", 0), ("CUSX", 2), ("CUSR", 20)],  # a refusal overturned later
     [("resolved", 0, 20, "released", ["hold", "refused"])]),
])
def test_customs_table(codes: list[tuple[str, float]], expected: list[tuple[Any, ...]]) -> None:
    assert run([customs(code, hours) for code, hours in codes]) == expected


def test_receive_order_does_not_matter_event_times_do() -> None:
    release, hold = customs("CUSR", 5, order=10), customs("CUSH", 0, order=11)
    assert run([release, hold]) == [("resolved", 0, 5, "released", None)]


def test_only_actual_customs_events_count() -> None:
    assert run([customs("CUSI", 0, classifier="PLN")]) == []


def test_figures_name_the_containers_and_sources() -> None:
    hold, release = customs("CUSH", 0), customs("CUSR", 5)
    (alert,) = customs_alerts(build_facts([hold, release])[SUBJECT], T + 10 * H)
    assert alert.figures["related"] == [{"kind": "container", "value": BOX}]
    assert alert.figures["by"] == "Customs" and alert.figures["since"] == "2026-11-03T02:00:00Z"
    assert alert.sources == (hold.source, release.source)


def test_events_after_now_have_not_happened_yet() -> None:
    items = [customs("CUSH", 0), customs("CUSR", 5)]
    assert run(items, now=T + 2 * H) == [("open", 0, None, "hold", None)]
    assert run(items, now=T - H) == []


def test_a_declaration_published_under_its_alias_shows_its_number() -> None:
    """Results of a declaration filed through the gateway are published under a keyed alias;
    the number its readers know is in the sealed details, and the alert shows that."""
    alias = "PLD" + "A" * 32
    hold = event("CUSTOMS.CUSH", T, alias, kind="declaration", publisher="Customs",
                 related=(Reference("container", BOX), Reference("declaration", alias)),
                 details={"declarationNumber": DECLARATION})
    facts = build_facts([hold])
    [alert] = customs_alerts(facts[Reference("declaration", alias)], T + H)
    assert alert.figures["declaration"] == DECLARATION
    assert {"kind": "declaration", "value": DECLARATION} in alert.figures["related"]
    assert all(alias not in str(r) for r in alert.figures["related"])
    # without the details (an outside customs feed names its number): as before
    [plain] = customs_alerts(build_facts([customs("CUSH", 0)])[SUBJECT], T + H)
    assert "declaration" not in plain.figures
