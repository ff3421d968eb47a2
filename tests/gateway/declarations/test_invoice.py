"""The invoice / packing list parser: the documented columns from CSV and JSON, a per-line report
of typed errors for malformed files, and a Hypothesis fuzz that it never raises."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.declarations import invoice

HEADER = "line,description,hs_code,quantity,unit,gross_kg,net_kg,value,currency,origin,packages"
GOOD = "1,Smartphones,8517.13.00,200,pcs,150.5,120,40000.00,usd,cn,20"


def test_csv_columns_any_order_and_case() -> None:
    text = ("Packages,ORIGIN,currency,value,net_kg,gross_kg,unit,quantity,HS Code,description,"
            "line,model,bill\n20,CN,USD,40000,120,150.5,PCS,200,851713,\"Phones, 5G\",1,"
            "X1,PCOL1234567\n")
    found = invoice.parse_csv(("\ufeff" + text).encode())
    assert found.ok, found.errors
    (line,) = found.lines
    assert (line.description, line.hs_code, line.value, line.bill, line.model) == (
        "Phones, 5G", "851713", Decimal("40000"), "PCOL1234567", "X1")


def test_json_items_and_wrapper() -> None:
    item = {"line": 1, "description": "Phones", "hs_code": "85171300", "quantity": 2.5,
            "unit": "PCS", "gross_kg": "1", "net_kg": 1, "value": 10, "currency": "USD",
            "origin": "CN", "packages": 1}
    for raw in ([item], {"lines": [item]}):
        found = invoice.parse_json(json.dumps(raw).encode())
        assert found.ok and found.lines[0].quantity == Decimal("2.5")
    assert invoice.parse(json.dumps([item]).encode(), "application/json").ok


@pytest.mark.parametrize(("row", "column", "code"), [
    ("1,Phones,8517,200,PCS,150,120,40000,USD,CN,20", "hs_code", "invalid-hs-code"),
    ("1,Phones,851713,0,PCS,150,120,40000,USD,CN,20", "quantity", "not-positive"),
    ("1,Phones,851713,2,PCS,150,160,40000,USD,CN,20", "net_kg", "net-above-gross"),
    ("1,Phones,851713,2,PCS,150,120,\"40,000\",USD,CN,20", "value", "invalid-number"),
    ("1,Phones,851713,2,PCS,150,120,1e5,USD,CN,20", "value", "invalid-number"),
    ("1,Phones,851713,2,PCS,150,120,NaN,USD,CN,20", "value", "invalid-number"),
    ("1,Phones,851713,2,PCS,150,120,400,US$,CN,20", "currency", "invalid-currency"),
    ("1,Phones,851713,2,PCS,150,120,400,USD,CHN,20", "origin", "invalid-country"),
    ("1,Phones,851713,2,PCS,150,120,400,USD,CN,2.5", "packages", "invalid-integer"),
    ("0,Phones,851713,2,PCS,150,120,400,USD,CN,2", "line", "not-positive"),
    ("1,,851713,2,PCS,150,120,400,USD,CN,2", "description", "missing-value"),
    ("1,Phones,851713,2,PCS,150,120,400,USD,CN", "", "wrong-cell-count"),
])
def test_bad_rows(row: str, column: str, code: str) -> None:
    found = invoice.parse_csv(f"{HEADER}\n{GOOD}\n{row}\n".encode())
    assert [(e.line, e.column, e.code) for e in found.errors] == [(3, column, code)]
    assert len(found.lines) == 1 and not found.ok


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"), (b"\xff\xfe\x00", "not-utf8"),
    (f"{HEADER},colour\n".encode(), "unknown-column"),
    (HEADER.replace(",packages", "").encode(), "missing-column"),
    (f"{HEADER},line\n".encode(), "duplicate-column"),
    (f"{HEADER}\n".encode(), "no-lines"),
    (f"{HEADER}\n{GOOD}\n{GOOD}\n".encode(), "duplicate-line"),
    (f'{HEADER}\n1,"Phones,851713\n'.encode(), "malformed-csv"),
    (f"{HEADER}\n1,Ph\x00ones,851713,2,PCS,1,1,1,USD,CN,1\n".encode(), "invalid-text"),
])
def test_malformed_files(data: bytes, code: str) -> None:
    found = invoice.parse_csv(data)
    assert code in {e.code for e in found.errors} and not found.ok


@pytest.mark.parametrize(("data", "code"), [
    (b"{", "not-json"), (b'{"items": []}', "not-a-list"), (b"[1]", "not-an-object"),
    (b'[{"line": 1, "colour": "red"}]', "unknown-column"),
    (b'[{"line": true}]', "invalid-value"), (b'[{"line": [1]}]', "invalid-value"),
    (b"[" * 100 + b"]" * 100, "not-json"),
])
def test_malformed_json(data: bytes, code: str) -> None:
    assert code in {e.code for e in invoice.parse_json(data).errors}


def test_too_many_lines() -> None:
    rows = "\n".join(GOOD.replace("1,", f"{i},", 1) for i in range(1, invoice.MAX_LINES + 2))
    found = invoice.parse_csv(f"{HEADER}\n{rows}\n".encode())
    assert found.errors[-1].code == "too-many-lines"


_CELLS = st.one_of(st.text(max_size=12), st.sampled_from(
    ["1", "0", "-1", "851713", "85171300", "1.5", "USD", "CN", "", "\"", ",", "1e9", "NaN"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_CELLS, min_size=0, max_size=13), max_size=6),
       st.booleans())
def test_fuzz_csv_never_raises(rows: list[list[str]], header: bool) -> None:
    lines = ([HEADER] if header else []) + [",".join(r) for r in rows]
    found = invoice.parse_csv("\n".join(lines).encode())
    assert found.ok or found.errors
    for error in found.errors:
        assert error.code and error.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    for parse in (invoice.parse_csv, invoice.parse_json):
        found = parse(data)
        assert found.ok or found.errors


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(invoice.COLUMNS + ("x",)), inner,
                                       max_size=12), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_fuzz_json_never_raises(value: object) -> None:
    found = invoice.parse_json(json.dumps(value).encode())
    assert found.ok or found.errors
