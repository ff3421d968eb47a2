"""The land model (pure): the pick-up right over the alert facts — carrier release, terminal
availability, holds on the box or its B/L, a revoked release, a box already gone — and the
checks of a CCRN, a vehicle registration, a phone number and the seals found."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.facts import Observed
from gateway.events.model import CanonicalEvent, Reference
from gateway.isotime import iso_time
from gateway.land.model import LandError, check_ccrn, check_phone, check_vehicle, pickup_right
from gateway.land.service import seal_check

BOX = "CSQU3054383"
MBL = "PCOL1234567"
T0 = 1_796_000_000


def seen(order: int, kind: str, at: int, *, on: tuple[str, str] = ("container", BOX),
         by: str = "2", related: tuple[tuple[str, str], ...] = (), retracts: int = 0,
         ) -> Observed:
    event = CanonicalEvent(kind, "ACT", at, Reference(*on), "HKHKG",
                           tuple(Reference(k, v) for k, v in related), {}, retracts=retracts)
    return Observed(event, order, by, str(order))


DISC = seen(1, "TERMINAL.DISC", T0, related=(("mbl", MBL),))
AVPU = seen(2, "TERMINAL.AVPU", T0 + 60)
RELS = seen(3, "SHIPMENT.RELS", T0 + 120, on=("mbl", MBL), by="4",
            related=(("container", BOX),))
CUSH = seen(4, "CUSTOMS.CUSH", T0 + 180, by="10")
CUSR = seen(5, "CUSTOMS.CUSR", T0 + 240, by="10")
HOLD = seen(6, "SHIPMENT.HOLD", T0 + 300, on=("mbl", MBL), by="4")
GTOT = seen(7, "TERMINAL.GTOT", T0 + 360)
NAMES = {"2": "Terminal", "4": "Pacific Ocean Line", "10": "Customs"}

CASES: list[tuple[str, list[Observed], list[Observed], bool, str, str]] = [
    ("nothing yet", [DISC], [], False, "", "no-release"),
    ("released by the carrier", [DISC, RELS], [], True, "carrier-release", ""),
    ("available at the terminal", [DISC, AVPU], [], True, "terminal-availability", ""),
    ("both", [DISC, AVPU, RELS], [], True, "carrier-release+terminal-availability", ""),
    ("customs hold", [DISC, RELS, CUSH], [], False, "carrier-release", "held"),
    ("customs released again", [DISC, RELS, CUSH, CUSR], [], True, "carrier-release", ""),
    ("carrier hold on the B/L", [DISC, AVPU, RELS, HOLD], [], False,
     "carrier-release+terminal-availability", "held"),
    ("release revoked", [DISC], [RELS], False, "", "release-revoked"),
    ("already gated out", [DISC, AVPU, RELS, GTOT], [], False, "carrier-release",
     "already-gated-out"),
]


@pytest.mark.parametrize(("case", "live", "retracted", "valid", "basis", "code"), CASES,
                         ids=[c[0] for c in CASES])
def test_pickup_right(case: str, live: list[Observed], retracted: list[Observed], valid: bool,
                      basis: str, code: str) -> None:
    right = pickup_right(BOX, live, T0 + 3600, retracted=retracted, names=NAMES)
    assert (right.valid, right.basis, right.code) == (valid, basis, code), right
    assert bool(right.reasons) != valid


def test_the_reasons_name_the_party_and_the_document() -> None:
    right = pickup_right(BOX, [DISC, AVPU, RELS, HOLD], T0 + 3600, names=NAMES)
    assert right.reasons == (f"carrier hold by Pacific Ocean Line since {iso_time(T0 + 300)} "
                             f"(on mbl {MBL})",)
    revoked = pickup_right(BOX, [DISC], T0 + 3600, retracted=[RELS], names=NAMES)
    assert revoked.reasons[0].startswith(f"Pacific Ocean Line revoked the release of {BOX}")
    # a hold that ended before now no longer counts
    assert pickup_right(BOX, [DISC, RELS, CUSH], T0 + 100, names=NAMES).valid


CHECKS: list[tuple[Any, str, str, str]] = [
    (check_ccrn, "ri 261207-000123", "RI261207000123", ""),
    (check_ccrn, "RX261207000123", "", "invalid-ccrn"),
    (check_ccrn, "RI2612070001", "", "invalid-ccrn"),
    (check_vehicle, "ab 1234", "AB1234", ""),
    (check_vehicle, "粤Z 1234港", "粤Z1234港", ""),
    (check_vehicle, "A", "", "invalid-vehicle"),
    (check_phone, "9123 4567", "+85291234567", ""),
    (check_phone, "0086 138 0013 8000", "+8613800138000", ""),
    (check_phone, "+852-6123-4567", "+85261234567", ""),
    (check_phone, "12345", "", "invalid-phone"),
    (check_phone, "call me", "", "invalid-phone"),
]


@pytest.mark.parametrize(("check", "text", "normal", "code"), CHECKS,
                         ids=[f"{c[0].__name__}:{c[1]}" for c in CHECKS])
def test_field_checks(check: Any, text: str, normal: str, code: str) -> None:
    if code:
        with pytest.raises(LandError) as refused:
            check(text)
        assert refused.value.code == code and text[:10] in refused.value.message
    else:
        assert check(text) == normal


def test_seal_check() -> None:
    assert seal_check(BOX, ("SL1", "SL2"), ["sl2", " SL 1 "])["match"] is True
    assert seal_check(BOX, ("SL1",), ["SL9"]) == {"container": BOX, "expected": ["SL1"],
                                                  "found": ["SL9"], "match": False}
    assert seal_check(BOX, ("SL1",), None)["match"] is None  # nothing reported
    assert seal_check(BOX, (), ["SL1"])["match"] is None  # nothing expected
