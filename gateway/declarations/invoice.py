"""Commercial invoice / packing list lines from CSV or JSON (pure): the goods data, uploaded once.

The columns (CSV header names, any order and case; JSON members of the same names) are
documented in ``docs/declarations.md``:

==============  =====================================================================  ========
column          meaning                                                                required
==============  =====================================================================  ========
line            line number, a positive integer, unique                                 yes
description     goods description, ≤ 256 characters                                     yes
hs_code         commodity code, 6, 8 or 10 digits (dots and spaces ignored)              yes
quantity        a positive decimal                                                      yes
unit            unit of quantity (``PCS``, ``KGM``, ``SET``...), ≤ 8 characters          yes
gross_kg        gross weight in kg, a decimal ≥ 0                                       yes
net_kg          net weight in kg, ≤ gross                                               yes
value           line value, a decimal ≥ 0                                               yes
currency        ISO 4217 code (``USD``, ``HKD``, ``CNY``...)                            yes
origin          country of origin, ISO 3166 alpha-2 (``CN``, ``VN``...)                 yes
packages        number of packages, an integer ≥ 0                                      yes
package_type    kind of package (``CT`` carton, ``PL`` pallet...), ≤ 16                 no
hkhs_code       Hong Kong HKHS code (8 digits) when ``hs_code`` is not one              no
cn_code         China commodity code (10 digits) when ``hs_code`` is not one            no
bill            the B/L or AWB the line travels under (shipments of several)            no
model           specification / model (规格型号), ≤ 256                                  no
==============  =====================================================================  ========

:func:`parse` never raises: it returns the lines it could read and one :class:`InvoiceError`
per problem (the CSV line or JSON item, the column, a stable code, a sentence). Decimals are
plain (``1234.50``): no thousands separators, exponents, NaN or infinities.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway import jsonbody
from gateway.declarations.codes import compact
from gateway.declarations.model import GoodsLine

#: Every column, in documentation order.
COLUMNS: tuple[str, ...] = ("line", "description", "hs_code", "quantity", "unit", "gross_kg",
                            "net_kg", "value", "currency", "origin", "packages", "package_type",
                            "hkhs_code", "cn_code", "bill", "model")
#: Columns a line must have.
REQUIRED: tuple[str, ...] = COLUMNS[:11]
#: Most lines one upload may hold.
MAX_LINES = 10_000
#: Longest text of each free column.
LIMITS = {"description": 256, "unit": 8, "package_type": 16, "bill": 35, "model": 256}

_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,6})?")
_INTEGER = re.compile(r"[0-9]{1,9}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class InvoiceError:
    """One problem of an uploaded invoice."""

    line: int
    """CSV: the physical line (the header is line 1); JSON: the item's index + 1; 0: the file."""
    column: str
    """The column concerned, or empty."""
    code: str
    """Stable: ``missing-column``, ``invalid-number``, ``invalid-hs-code``..."""
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "code": self.code,
                "message": self.message}


@dataclass
class InvoiceResult:
    """The lines read and the problems found."""

    lines: list[GoodsLine] = field(default_factory=list)
    errors: list[InvoiceError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.lines)


class _LineProblem(ValueError):
    def __init__(self, column: str, code: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.code = code


def _text(row: dict[str, str], name: str) -> str:
    value = row.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if name in REQUIRED and not text:
        raise _LineProblem(name, "missing-value", f"{name} is empty")
    limit = LIMITS.get(name)
    if limit is not None and len(text) > limit:
        raise _LineProblem(name, "too-long", f"{name} is longer than {limit} characters")
    if any(ord(c) < 32 for c in text):
        raise _LineProblem(name, "invalid-text", f"{name} holds control characters")
    return text


def _decimal(row: dict[str, str], name: str, *, positive: bool = False) -> Decimal:
    text = _text(row, name)
    if not _DECIMAL.fullmatch(text):
        raise _LineProblem(name, "invalid-number",
                           f"{name} {text[:20]!r} is not a plain decimal number (e.g. 1234.50)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise _LineProblem(name, "invalid-number", f"{name} is not a number") from None
    if positive and value <= 0:
        raise _LineProblem(name, "not-positive", f"{name} must be more than 0")
    return value


def _integer(row: dict[str, str], name: str) -> int:
    text = _text(row, name)
    if not _INTEGER.fullmatch(text):
        raise _LineProblem(name, "invalid-integer", f"{name} {text[:20]!r} is not a whole number")
    return int(text)


def _code(row: dict[str, str], name: str, lengths: tuple[int, ...]) -> str:
    text = compact(_text(row, name))
    if not text:
        return ""
    if not text.isdigit() or len(text) not in lengths:
        shape = " or ".join(str(n) for n in lengths)
        raise _LineProblem(name, "invalid-hs-code",
                           f"{name} {text[:20]!r} is not a commodity code of {shape} digits")
    return text


def line_of(row: dict[str, str]) -> GoodsLine:
    """One goods line from a row of text values; raises the row's first problem."""
    number = _integer(row, "line")
    if number == 0:
        raise _LineProblem("line", "not-positive", "line must be 1 or more")
    description = _text(row, "description")
    hs_code = _code(row, "hs_code", (6, 8, 10))
    quantity = _decimal(row, "quantity", positive=True)
    unit = _text(row, "unit").upper()
    gross = _decimal(row, "gross_kg")
    net = _decimal(row, "net_kg")
    if net > gross:
        raise _LineProblem("net_kg", "net-above-gross",
                           f"net weight {net} kg is more than gross weight {gross} kg")
    value = _decimal(row, "value")
    currency = _text(row, "currency").upper()
    if not _CURRENCY.fullmatch(currency):
        raise _LineProblem("currency", "invalid-currency",
                           f"{currency[:8]!r} is not an ISO 4217 currency code (e.g. USD)")
    origin = _text(row, "origin").upper()
    if not _COUNTRY.fullmatch(origin):
        raise _LineProblem("origin", "invalid-country",
                           f"{origin[:8]!r} is not an ISO 3166 country code (e.g. CN)")
    packages = _integer(row, "packages")
    return GoodsLine(
        line=number, description=description, hs_code=hs_code, quantity=quantity, unit=unit,
        gross_kg=gross, net_kg=net, value=value, currency=currency, origin=origin,
        packages=packages, package_type=_text(row, "package_type").upper(),
        hkhs_code=_code(row, "hkhs_code", (8,)), cn_code=_code(row, "cn_code", (10,)),
        bill=compact(_text(row, "bill")), model=_text(row, "model"))


def _collect(rows: list[tuple[int, dict[str, str]]], out: InvoiceResult) -> InvoiceResult:
    seen: dict[int, int] = {}
    for where, row in rows:
        try:
            goods = line_of(row)
        except _LineProblem as exc:
            out.errors.append(InvoiceError(where, exc.column, exc.code, str(exc)))
            continue
        if goods.line in seen:
            out.errors.append(InvoiceError(where, "line", "duplicate-line",
                                           f"line {goods.line} also on {seen[goods.line]}"))
            continue
        seen[goods.line] = where
        out.lines.append(goods)
    if not rows and not out.errors:
        out.errors.append(InvoiceError(0, "", "no-lines", "the invoice has no goods lines"))
    return out


def _header(names: list[str], out: InvoiceResult) -> list[str] | None:
    header = [n.strip().lower().replace(" ", "_") for n in names]
    unknown = [n for n in header if n not in COLUMNS]
    for name in unknown:
        out.errors.append(InvoiceError(1, name[:40], "unknown-column",
                                       f"{name[:40]!r} is not a column ({', '.join(COLUMNS)})"))
    duplicates = sorted({n for n in header if header.count(n) > 1})
    for name in duplicates:
        out.errors.append(InvoiceError(1, name, "duplicate-column", f"{name} appears twice"))
    for name in REQUIRED:
        if name not in header:
            out.errors.append(InvoiceError(1, name, "missing-column", f"no {name} column"))
    return None if out.errors else header


def parse_csv(data: bytes) -> InvoiceResult:
    """Lines of a CSV invoice (UTF-8, optional BOM, comma-separated, a header row first)."""
    out = InvoiceResult()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        out.errors.append(InvoiceError(0, "", "not-utf8",
                                       f"not UTF-8 text (byte {exc.start}); save as CSV UTF-8"))
        return out
    rows: list[tuple[int, dict[str, str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
        if first is None or not any(c.strip() for c in first):
            out.errors.append(InvoiceError(0, "", "empty", "the file is empty (no header)"))
            return out
        header = _header(first, out)
        if header is None:
            return out
        for cells in reader:
            if len(rows) >= MAX_LINES:
                out.errors.append(InvoiceError(reader.line_num, "", "too-many-lines",
                                               f"more than {MAX_LINES} lines: split the file"))
                return out
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                out.errors.append(InvoiceError(reader.line_num, "", "wrong-cell-count",
                                               f"{len(cells)} cells, the header has "
                                               f"{len(header)}"))
                continue
            rows.append((reader.line_num, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        out.errors.append(InvoiceError(reader.line_num, "", "malformed-csv", f"not CSV: {exc}"))
        return out
    return _collect(rows, out)


def parse_json(data: bytes) -> InvoiceResult:
    """Lines of a JSON invoice: an array of line objects, or ``{"lines": [...]}``."""
    out = InvoiceResult()
    try:
        raw = jsonbody.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        out.errors.append(InvoiceError(0, "", "not-json", f"not JSON: {str(exc)[:120]}"))
        return out
    if isinstance(raw, dict) and set(raw) == {"lines"}:
        raw = raw["lines"]
    if not isinstance(raw, list):
        out.errors.append(InvoiceError(0, "", "not-a-list",
                                       'a JSON invoice is an array of lines or {"lines": [...]}'))
        return out
    if len(raw) > MAX_LINES:
        out.errors.append(InvoiceError(0, "", "too-many-lines",
                                       f"more than {MAX_LINES} lines: split the file"))
        return out
    rows: list[tuple[int, dict[str, str]]] = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            out.errors.append(InvoiceError(index, "", "not-an-object", "a line is an object"))
            continue
        unknown = sorted(str(k) for k in item if k not in COLUMNS)
        if unknown:
            out.errors.append(InvoiceError(index, unknown[0][:40], "unknown-column",
                                           f"{unknown[0][:40]!r} is not a column"))
            continue
        bad = next((k for k, v in item.items()
                    if v is not None and not isinstance(v, str | int | float)
                    or isinstance(v, bool)), None)
        if bad is not None:
            out.errors.append(InvoiceError(index, bad, "invalid-value",
                                           f"{bad} is a string or a number"))
            continue
        # numbers are read from their JSON text form (a float's repr, e.g. 12.5)
        rows.append((index, {k: "" if v is None else str(v) for k, v in item.items()}))
    return _collect(rows, out)


def parse(data: bytes, content_type: str) -> InvoiceResult:
    """CSV or JSON by the upload's media type (``text/csv`` or ``application/json``)."""
    if "json" in content_type.lower():
        return parse_json(data)
    return parse_csv(data)
