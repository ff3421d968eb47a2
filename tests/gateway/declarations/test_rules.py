"""Table tests of every declaration rule: the TDEC charge (the "or part" step, the 10-cent
rounding, the cap, food and exempt forms), the clothing levy, the deadline and late bands, code
formats and the GB 32100-2015 check character, the multi-B/L and multi-form TDEC split, the
cross-draft checks, currencies without a rate, connector answers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from gateway.declarations import codes, connectors, tdec
from gateway.declarations.drafts import CorrectionError, build_drafts
from gateway.declarations.hs import shipped
from gateway.declarations.model import (
    Correction,
    DeclarationSettings,
    GoodsLine,
    Party,
    Rate,
    RoadCrossing,
    ShipmentRecord,
    Sourced,
)

D = Decimal
T0 = 1_796_000_000  # 2026-11-30 (UTC)


@pytest.mark.parametrize(("value", "form", "charge"), [
    ("0", "1", "0.20"),
    ("46000", "1", "0.20"),
    ("46000.01", "1", "0.30"),  # 0.325: a further HK$1,000 "or part", 10-cent fraction dropped
    ("47000", "1", "0.30"),
    ("47000.01", "1", "0.40"),  # 0.45
    ("48000", "2", "0.40"),
    ("50000", "1", "0.70"),  # 0.2 + 4 × 0.125
    ("1000000", "2", "119.40"),  # 0.2 + 954 × 0.125 = 119.45
    ("1644000", "1", "199.90"),  # 199.95 → 199.9
    ("1644000.01", "1", "200.00"),  # 200.075 capped
    ("999999999", "2", "200.00"),
    ("999999999", "1A", "0.20"),  # food imports: flat
    ("5", "1A", "0.20"),
    ("999999", "1B", "0.00"),  # exempt
    ("999999", "2B", "0.00"),
])
def test_declaration_charge(value: str, form: str, charge: str) -> None:
    assert tdec.declaration_charge(D(value), form) == D(charge)
    assert str(tdec.declaration_charge(D(value), form)) == charge


@pytest.mark.parametrize(("value", "form", "levy"), [
    ("1000", "2A", "0.30"), ("1000.01", "2A", "0.60"), ("0", "2A", "0.00"),
    ("5000", "2", "0"),
])
def test_clothing_levy(value: str, form: str, levy: str) -> None:
    assert tdec.clothing_levy(D(value), form) == D(levy)


@pytest.mark.parametrize(("moved", "lodged", "band"), [
    (date(2026, 1, 10), date(2026, 1, 24), 0),  # day 14: in time
    (date(2026, 1, 10), date(2026, 1, 25), 1),
    (date(2026, 1, 10), date(2026, 2, 24), 1),  # one month and 14 days
    (date(2026, 1, 10), date(2026, 2, 25), 2),
    (date(2026, 1, 10), date(2026, 3, 24), 2),  # two months and 14 days
    (date(2026, 1, 10), date(2026, 3, 25), 3),
    (date(2026, 1, 31), date(2026, 3, 14), 1),  # 31 Jan + 1 month = 28 Feb, + 14 days
    (date(2026, 1, 31), date(2026, 3, 15), 2),
    (date(2026, 12, 20), date(2027, 1, 3), 0),  # across the year
])
def test_penalty_bands(moved: date, lodged: date, band: int) -> None:
    assert tdec.penalty_band(moved, lodged) == band


@pytest.mark.parametrize(("band_lodged", "value", "penalty"), [
    (date(2026, 1, 20), "20000", "0"), (date(2026, 1, 30), "20000", "20"),
    (date(2026, 1, 30), "20000.01", "40"), (date(2026, 3, 1), "100", "40"),
    (date(2026, 3, 1), "30000", "80"), (date(2026, 6, 1), "100", "100"),
    (date(2026, 6, 1), "30000", "200"),
])
def test_late_penalty(band_lodged: date, value: str, penalty: str) -> None:
    assert tdec.late_penalty(date(2026, 1, 10), band_lodged, D(value)) == D(penalty)
    assert tdec.lodging_deadline(date(2026, 1, 10)) == date(2026, 1, 24)


@pytest.mark.parametrize(("code", "problem"), [
    ("91350100M000100Y43", None),  # GB 32100-2015's worked example
    ("91420000737944946L", None),
    ("9131000063159284XQ", None),
    ("91350100M000100Y40", "invalid-check-character"),
    ("91350100M000100Y4Z", "invalid-uscc"),  # Z is never used
    ("91350100M000100Y4", "invalid-uscc"),  # 17 characters
    ("91AB0100M000100Y43", "invalid-uscc"),  # the division is digits
    ("91350100m000100Y43", "invalid-uscc"),
])
def test_uscc(code: str, problem: str | None) -> None:
    found = codes.check_uscc(code)
    assert (found.code if found else None) == problem


def test_uscc_weights_are_powers_of_three() -> None:
    assert codes.USCC_WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert codes.uscc_check_character("91350100M000100Y4") == "3"


@pytest.mark.parametrize(("check", "value", "ok"), [
    (codes.check_hkhs, "85171300", True), (codes.check_hkhs, "8517130", False),
    (codes.check_hkhs, "851713000", False), (codes.check_hkhs, "8517 130", False),
    (codes.check_cn_code, "8517130000", True), (codes.check_cn_code, "85171300", False),
    (codes.check_cn_declaration_number, "530020260000000123", True),
    (codes.check_cn_declaration_number, "530020261000000123", True),
    (codes.check_cn_declaration_number, "530020262000000123", False),  # I/E flag 0 or 1
    (codes.check_cn_declaration_number, "530019990000000123", False),  # year
    (codes.check_cn_declaration_number, "53002026000000012", False),  # 17 digits
    (codes.check_tdec_reference, "1A2612070000012", True),
    (codes.check_tdec_reference, "1C2612070000012", False),
    (codes.check_ccrn, "RI26120700001", False), (codes.check_ccrn, "RI261207000001", True),
    (codes.check_vehicle, "AB1234", True), (codes.check_vehicle, "AB 1234", False),
    (codes.check_customs_office, "5300", True), (codes.check_customs_office, "530", False),
])
def test_code_formats(check: Any, value: str, ok: bool) -> None:
    assert (check(value) is None) is ok


@pytest.mark.parametrize(("code", "problem"), [
    ("85171300", None), ("0306179000", None),
    ("99110000", "unknown-hs-heading"), ("00000000", "unknown-hs-chapter"),
    ("85177900", None), ("85171900", "unknown-hs-subheading"), ("85", "invalid-hs-code"),
])
def test_nomenclature(code: str, problem: str | None) -> None:
    found = shipped().problem(code)
    assert (found[0] if found else None) == problem


# -- drafts -------------------------------------------------------------------------------------
SETTINGS = DeclarationSettings(rates=(Rate("USD", "HKD", D("7.8"), "HKMA", "2026-11-30"),))
TRADER = Party("Sino Trading Ltd", "8 Harbour Road", "HK", "", "upload:consignee")
MAKER = Party("Shenzhen Phone Works", "1 Keji Road", "CN", "91350100M000100Y43",
              "upload:consignor")


def record(bills: tuple[str, ...] = ("PCOL1234567",), **extra: Any) -> ShipmentRecord:
    fields: dict[str, Any] = dict(
        reference=bills[0], kind="mbl", direction="import", bills=bills,
        mode=Sourced("sea", "test"), vessel=Sourced({"name": "EVER GIVEN"}, "test"),
        voyage=Sourced("021E", "test"), port_of_loading=Sourced("CNYTN", "test"),
        port_of_discharge=Sourced("HKHKG", "test"), arrival=Sourced(T0 - 86400, "test"),
        declarant=Party("Sino Trading Ltd", "8 Harbour Road", "HK", "", "directory"),
        consignor=MAKER, consignee=TRADER)
    fields.update(extra)
    return ShipmentRecord(**fields)


def goods(line: int, hs: str, *, bill: str = "", value: str = "1000", currency: str = "USD",
          origin: str = "CN", packages: int = 1, cn: str = "") -> GoodsLine:
    return GoodsLine(line, f"goods {line}", hs, D(2), "PCS", D(3), D(2), D(value), currency,
                     origin, packages, "CT", "", cn or hs + "00", bill, "M1")


def build(lines: list[GoodsLine], rec: ShipmentRecord | None = None, **kw: Any) -> Any:
    return build_drafts(rec or record(), lines, SETTINGS, shipped(), now=T0, **kw)


def codes_of(found: Any, key: str) -> set[str]:
    draft = found.draft(key)
    assert draft is not None, [d.key for d in found.drafts]
    return {i.code for i in draft.issues}


@pytest.mark.parametrize(("lines", "bills", "keys"), [
    ([("85171300", ""), ("85176200", "")], ("B1",), ["tdec:B1:1"]),
    ([("85171300", ""), ("03061790", "")], ("B1",), ["tdec:B1:1", "tdec:B1:1A"]),  # food
    ([("85171300", "B1"), ("85176200", "B2")], ("B1", "B2"), ["tdec:B1:1", "tdec:B2:1"]),
    ([("85171300", "B1"), ("03061790", "B2"), ("85176200", "B2")], ("B1", "B2"),
     ["tdec:B1:1", "tdec:B2:1A", "tdec:B2:1"]),
])
def test_tdec_split(lines: list[tuple[str, str]], bills: tuple[str, ...],
                    keys: list[str]) -> None:
    found = build([goods(i, hs, bill=b) for i, (hs, b) in enumerate(lines, 1)],
                  record(bills), authorities=("hk-tdec",))
    assert [d.key for d in found.drafts] == keys
    assert all(d.ok for d in found.drafts), [d.issues for d in found.drafts]


def test_export_forms_and_exempt() -> None:
    clothing = goods(1, "61091000", origin="HK")
    found = build([clothing, goods(2, "85171300")], record(direction="export"),
                  authorities=("hk-tdec",))
    assert [d.key for d in found.drafts] == ["tdec:PCOL1234567:2A", "tdec:PCOL1234567:2"]
    assert found.drafts[0].value("clothingLevy") == D("2.40")  # HK$7,800 → 8 × 0.3
    exempt = build([goods(1, "85171300")], authorities=("hk-tdec",), exempt=True)
    assert exempt.drafts[0].value("form") == "1B" and exempt.drafts[0].value("charge") == 0


def test_a_line_on_an_unknown_bill() -> None:
    found = build([goods(1, "85171300", bill="OTHER1")], authorities=("hk-tdec",))
    assert "unknown-bill" in codes_of(found, "tdec:OTHER1:1")


def test_deadline_and_late_penalty_on_the_draft() -> None:
    late = record(arrival=Sourced(T0 - 40 * 86400, "tracking:TRANSPORT.ARRI"))
    found = build([goods(1, "85171300", value="1000")], late, authorities=("hk-tdec",))
    draft = found.drafts[0]
    assert draft.value("latePenalty") == D(20) and "late-lodgement" in codes_of(
        found, draft.key)
    unknown = build([goods(1, "85171300")], record(arrival=None), authorities=("hk-tdec",))
    assert "no-movement-date" in codes_of(unknown, unknown.drafts[0].key)


def test_currency_without_a_rate_is_an_error() -> None:
    found = build([goods(1, "85171300", currency="EUR")], authorities=("hk-tdec",))
    draft = found.drafts[0]
    assert "missing-rate" in codes_of(found, draft.key)
    assert draft.value("totalValueHkd") is None and draft.value("charge") is None
    hkd = build([goods(1, "85171300", currency="HKD", value="46000")],
                authorities=("hk-tdec",))
    assert hkd.drafts[0].value("charge") == D("0.20") and hkd.conversions == []


def test_conversions_are_stated() -> None:
    found = build([goods(1, "85171300")], authorities=("hk-tdec",))
    assert [r.describe() for r in found.conversions] == ["1 USD = 7.8 HKD (HKMA, 2026-11-30)"]
    line = found.drafts[0].lines[0]
    assert "HKMA, 2026-11-30" in line["valueHkd"].source


def test_missing_parties_and_codes() -> None:
    found = build([GoodsLine(1, "x", "851713", D(1), "PCS", D(1), D(1), D(1), "USD", "CN", 1)],
                  record(consignor=None, consignee=Party("", source="upload")))
    assert {"missing-party", "missing-hkhs-code"} <= codes_of(found, "tdec:PCOL1234567:1")
    assert {"missing-party", "missing-cn-code", "missing-package-description"} - {
        "missing-package-description"} <= codes_of(found, "itsw:PCOL1234567")


def test_itsw_head_and_uscc() -> None:
    found = build([goods(1, "85171300"), goods(2, "85176200", packages=4)],
                  authorities=("cn-itsw",))
    draft = found.drafts[0]
    assert draft.ok, draft.issues
    assert draft.value("IEFlag") == "E" and draft.value("PackNo") == 5
    assert draft.fields["GrossWet"].label_zh == "毛重（千克）"
    assert draft.lines[0]["DeclPrice"].value == D("500.0000")
    bad = build([goods(1, "85171300")], record(consignor=Party(
        "X", "Y", "CN", "91350100M000100Y40", "upload")), authorities=("cn-itsw",))
    assert "invalid-check-character" in codes_of(bad, "itsw:PCOL1234567")


def test_cross_draft_mismatch_after_a_correction() -> None:
    lines = [goods(1, "85171300"), goods(2, "85176200")]
    clean = build(lines)
    assert clean.ok, [(d.key, d.issues) for d in clean.drafts]
    fix = Correction("itsw:PCOL1234567", "lines/2/grossKg", "3.5", "user 1", T0)
    found = build(lines, corrections=[fix])
    for key in ("tdec:PCOL1234567:1", "itsw:PCOL1234567"):
        assert "cross-draft-mismatch" in codes_of(found, key)
    assert "head-lines-mismatch" in codes_of(found, "itsw:PCOL1234567")
    value = Correction("tdec:PCOL1234567:1", "lines/1/value", "999", "user 1", T0)
    assert "cross-draft-mismatch" in codes_of(build(lines, corrections=[value]),
                                              "itsw:PCOL1234567")


@pytest.mark.parametrize(("correction", "code"), [
    (Correction("nope", "fields/form", "1", "u", T0), "unknown-draft"),
    (Correction("tdec:PCOL1234567:1", "fields/colour", "1", "u", T0), "unknown-field"),
    (Correction("tdec:PCOL1234567:1", "fields/form", "1A", "u", T0), "computed-field"),
    (Correction("tdec:PCOL1234567:1", "lines/1/quantity", "lots", "u", T0), "invalid-value"),
])
def test_bad_corrections(correction: Correction, code: str) -> None:
    with pytest.raises(CorrectionError) as caught:
        build([goods(1, "85171300")], corrections=[correction])
    assert caught.value.code == code


@pytest.mark.parametrize(("ahead", "code"), [
    (15 * 86400, "too-early"), (20 * 60, "too-late"), (3600, None),
])
def test_rocars_window_and_vehicle(ahead: int, code: str | None) -> None:
    crossing = RoadCrossing("AB1234", T0 + ahead, "Lok Ma Chau")
    found = build([goods(1, "85171300", packages=3)], authorities=("hk-tdec", "hk-rocars"),
                  crossing=crossing)
    draft = found.draft("rocars:PCOL1234567")
    assert draft is not None and draft.value("packages") == 3
    assert {i.code for i in draft.issues} == ({code} if code else set())
    no_truck = build([goods(1, "85171300")], authorities=("hk-rocars",))
    assert {"missing-vehicle", "missing-crossing-time"} <= codes_of(
        no_truck, "rocars:PCOL1234567")


@pytest.mark.parametrize(("body", "error"), [
    (b"<html>", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"status": "approved"}', "unknown status"),
    (b'{"status": "accepted", "number": "12", "simulated": true}', "malformed"),
    (b'{"status": "accepted", "number": "530020260000000001"}', "not labelled SIMULATED"),
])
def test_connector_refuses_garbage(body: bytes, error: str) -> None:
    with pytest.raises(connectors.ConnectorError, match=error):
        connectors.parse_answer("cn-itsw", body, simulated_required=True)
    answer = connectors.parse_answer(
        "cn-itsw", b'{"status": "released", "number": "530020260000000001", '
        b'"simulated": true}', simulated_required=True)
    assert answer.number == "530020260000000001" and answer.simulated
