"""All drafts of one shipment (pure): build each authority's, apply the user's corrections,
check each, then check them against each other.

:func:`build_drafts` is the one entry point: ``(record, goods lines, settings, corrections,
now, ...) -> DraftSet``. A correction replaces one field the user may change (never a computed
one: those follow from the others) and becomes that field's lineage
(``correction:<who> at <when>``). The cross-draft check (:func:`cross_check`) compares every
invoice line's quantity, gross and net weight, value (in the invoice currency) and packages in
every draft that carries the line, and the ROCARS package total with the lines'; a difference
is an error on each draft concerned. Every currency conversion is listed with its rate, source
and date (:attr:`DraftSet.conversions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.declarations import itsw, rocars, tdec
from gateway.declarations.hs import Nomenclature
from gateway.declarations.model import (
    Correction,
    DeclarationSettings,
    Draft,
    Field,
    GoodsLine,
    Rate,
    RoadCrossing,
    ShipmentRecord,
)
from gateway.isotime import iso_time

#: Per-line measures compared across drafts: measure -> field name per authority.
MEASURES: dict[str, dict[str, str]] = {
    "quantity": {"hk-tdec": "quantity", "cn-itsw": "GQty"},
    "gross weight": {"hk-tdec": "grossKg", "cn-itsw": "grossKg"},
    "net weight": {"hk-tdec": "netKg", "cn-itsw": "netKg"},
    "value": {"hk-tdec": "value", "cn-itsw": "DeclTotal"},
    "packages": {"hk-tdec": "packages", "cn-itsw": "packages"},
}


class CorrectionError(ValueError):
    """A correction that cannot apply (``code``: ``unknown-draft``, ``unknown-field``,
    ``computed-field``, ``invalid-value``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class DraftSet:
    """The drafts of one shipment, checked."""

    drafts: list[Draft] = field(default_factory=list)
    conversions: list[Rate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.drafts)

    def draft(self, key: str) -> Draft | None:
        return next((d for d in self.drafts if d.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "drafts": [d.to_json() for d in self.drafts],
                "conversions": [{"base": r.base, "quote": r.quote, "rate": str(r.rate),
                                 "source": r.source, "date": r.date}
                                for r in self.conversions]}


def _target(draft: Draft, path: str) -> tuple[dict[str, Field], str]:
    parts = path.split("/")
    if len(parts) == 2 and parts[0] == "fields" and parts[1] in draft.fields:
        return draft.fields, parts[1]
    if len(parts) == 3 and parts[0] == "lines":
        for line in draft.lines:
            if str(line["line"].value) == parts[1] and parts[2] in line:
                return line, parts[2]
    raise CorrectionError("unknown-field", f"{draft.key} has no field {path!r}")


def _coerce(old: Any, value: Any, path: str) -> Any:
    if value is None:
        return None
    if isinstance(old, Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise CorrectionError("invalid-value", f"{path}: a decimal number") from None
        if not number.is_finite() or number < 0:
            raise CorrectionError("invalid-value", f"{path}: a number ≥ 0")
        return number
    if isinstance(old, int) and not isinstance(old, bool):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CorrectionError("invalid-value", f"{path}: a whole number ≥ 0")
        return value
    if not isinstance(value, str) or len(value) > 512:
        raise CorrectionError("invalid-value", f"{path}: text of at most 512 characters")
    return value.strip()


def apply_correction(draft: Draft, correction: Correction) -> None:
    """Replace one field with the user's value; its lineage names who and when."""
    table, name = _target(draft, correction.path)
    old = table[name]
    if old.source.startswith("computed:"):
        raise CorrectionError("computed-field", f"{correction.path} is computed "
                              f"({old.source[9:]}): correct what it comes from")
    table[name] = Field(_coerce(old.value, correction.value, correction.path),
                        f"correction:{correction.by} at {iso_time(correction.at)}",
                        old.label, old.label_zh)


def cross_check(drafts: Sequence[Draft]) -> None:
    """Every invoice line's measures agree across drafts; ROCARS packages agree (module doc)."""
    seen: dict[tuple[Any, str], dict[str, tuple[Draft, Decimal]]] = {}
    for draft in drafts:
        for line in draft.lines:
            for measure, names in MEASURES.items():
                name = names.get(draft.authority)
                if name is None or line.get(name) is None or line[name].value is None:
                    continue
                seen.setdefault((line["line"].value, measure), {})[draft.key] = (
                    draft, Decimal(str(line[name].value)))
    for (number, measure), by_draft in seen.items():
        values = {v for _, v in by_draft.values()}
        if len(values) > 1:
            said = ", ".join(f"{key} {v}" for key, (_, v) in by_draft.items())
            for draft, _ in by_draft.values():
                draft.error("cross-draft-mismatch",
                            f"invoice line {number}: the {measure} differs between drafts "
                            f"({said})", f"lines/{number}")
    packages = sum(int(line["packages"].value or 0) for d in drafts if d.authority == "hk-tdec"
                   for line in d.lines)
    for draft in drafts:
        if draft.authority == "hk-rocars" and draft.value("packages") is not None \
                and any(d.authority == "hk-tdec" for d in drafts) \
                and int(draft.value("packages")) != packages:
            draft.error("cross-draft-mismatch", f"ROCARS declares {draft.value('packages')} "
                        f"packages, the TDEC lines {packages}", "fields/packages")


def build_drafts(record: ShipmentRecord, lines: Sequence[GoodsLine],
                 settings: DeclarationSettings, nomenclature: Nomenclature, *, now: int,
                 authorities: Sequence[str] = ("hk-tdec", "cn-itsw"),
                 crossing: RoadCrossing | None = None, exempt: bool = False,
                 corrections: Sequence[Correction] = ()) -> DraftSet:
    """Every draft of the shipment with corrections applied and all checks run.

    Raises :class:`CorrectionError` for a correction that names no field of these drafts.
    """
    drafts: list[Draft] = []
    if "hk-tdec" in authorities:
        drafts += tdec.build(record, lines, settings, exempt=exempt)
    if "hk-rocars" in authorities:
        drafts.append(rocars.build(record, lines, settings, crossing))
    if "cn-itsw" in authorities:
        drafts.append(itsw.build(record, lines, settings))
    by_key = {d.key: d for d in drafts}
    for correction in corrections:
        draft = by_key.get(correction.draft)
        if draft is None:
            raise CorrectionError("unknown-draft", f"no draft {correction.draft!r}")
        apply_correction(draft, correction)
    for draft in drafts:
        if draft.authority == "hk-tdec":
            tdec.check(draft, settings, nomenclature, now=now)
        elif draft.authority == "hk-rocars":
            rocars.check(draft, now=now, crossing_time=crossing.crossing_time if crossing
                         else int(record.crossing.value) if record.crossing is not None
                         else None)
        else:
            itsw.check(draft, nomenclature)
    cross_check(drafts)
    used: dict[tuple[str, str], Rate] = {}
    for draft in drafts:
        for line in draft.lines:
            currency = line.get("currency")
            if draft.authority == "hk-tdec" and currency is not None:
                rate = settings.rate(str(currency.value), "HKD")
                if rate is not None and rate.base != rate.quote:
                    used[(rate.base, rate.quote)] = rate
    return DraftSet(drafts, list(used.values()))


def corrections_of(rows: Sequence[Mapping[str, Any]]) -> list[Correction]:
    """Stored corrections (``draft, path, value, by, at``) as :class:`Correction`."""
    return [Correction(r["draft"], r["path"], r["value"], r["by"], int(r["at"])) for r in rows]
