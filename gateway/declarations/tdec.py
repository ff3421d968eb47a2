"""Hong Kong import/export declarations (TDEC, Cap. 60E) as drafts (pure).

The rules (STANDARDS.md "Declarations"; customs.gov.hk "Import and Export Declaration"):

- **Forms.** Import: 1 (non-food), 1A (food: the chapters of ``food_chapters``), 1B (articles
  exempt from the charge). Export / re-export: 2, 2A (Hong Kong-made clothing and footwear:
  ``clothing_chapters`` with origin HK), 2B (exempt). Lines of different forms never share a
  declaration.
- **One declaration per conveyance / transport document**: the lines are grouped by their B/L
  (or AWB, road manifest), then by form — a shipment of two B/Ls, or food and non-food on one
  B/L, splits into several drafts (:func:`split`).
- **HKHS**: each line needs an 8-digit HKHS code (``hkhs_code``, else ``hs_code`` when it has 8
  digits); its first six digits must be an HS 2022 subheading (:mod:`~gateway.declarations.hs`).
- **Value in HK$**: each line's value converted with the configured rate, stated with its
  source and date, rounded to the cent (half up); a currency without a rate is an error.
- **Declaration charge** (:func:`declaration_charge`): HK$0.2 for the first HK$46,000, plus
  HK$0.125 for every further HK$1,000 *or part*; a total with a fraction of 10 cents has that
  fraction disregarded (rounded down to the 10 cents); capped at HK$200 per declaration
  (since 1 August 2018). Food imports (1A): HK$0.2 whatever the value. Exempt forms (1B, 2B):
  none. (customs.gov.hk, and the rates as restated at http://dbhk.com.hk/Others-Services/
  Customs-declaration.html.) Form 2A adds the Clothing Industry Training Levy, HK$0.3 per
  HK$1,000 or part (:func:`clothing_levy`).
- **Deadline**: lodged within 14 days after the import or export (:func:`lodging_deadline`).
- **Late lodgement penalty** (:func:`late_penalty`): lodged within one month and 14 days after
  the import/export HK$20 (value ≤ HK$20,000) or HK$40; within two months and 14 days HK$40 or
  HK$80; later HK$100 or HK$200 (the table at http://yuetfung.com.hk/inNeedE.html, Cap. 60E).

Days are Hong Kong calendar days (UTC+8).
"""

from __future__ import annotations

import calendar as months
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from gateway.alerts.calendar import Calendar
from gateway.declarations import codes
from gateway.declarations.hs import Nomenclature
from gateway.declarations.model import (
    DeclarationSettings,
    Draft,
    Field,
    GoodsLine,
    Party,
    ShipmentRecord,
    Sourced,
)

#: HK$ value covered by the base charge.
BASE_VALUE = Decimal(46_000)
BASE_CHARGE = Decimal("0.2")
STEP_VALUE = Decimal(1_000)
STEP_CHARGE = Decimal("0.125")
CHARGE_CAP = Decimal(200)
FOOD_CHARGE = Decimal("0.2")
LEVY_PER_THOUSAND = Decimal("0.3")
#: Days after import/export within which a declaration is lodged.
LODGING_DAYS = 14
#: Late penalties by band (1: ≤ 1 month + 14 days, 2: ≤ 2 months + 14 days, 3: later), for a
#: declared value ≤ HK$20,000 and above it.
PENALTY_THRESHOLD = Decimal(20_000)
PENALTIES: dict[int, tuple[Decimal, Decimal]] = {
    1: (Decimal(20), Decimal(40)),
    2: (Decimal(40), Decimal(80)),
    3: (Decimal(100), Decimal(200)),
}
_HK = Calendar()
_CENT = Decimal("0.01")
_TEN_CENTS = Decimal("0.1")


def declaration_charge(value_hkd: Decimal, form: str) -> Decimal:
    """The declaration charge in HK$ of a declaration of ``form`` worth ``value_hkd``."""
    if form in ("1B", "2B"):
        return Decimal(0).quantize(_CENT)
    if form == "1A":
        return FOOD_CHARGE.quantize(_CENT)
    steps = max(Decimal(0), value_hkd - BASE_VALUE) / STEP_VALUE
    charge = BASE_CHARGE + STEP_CHARGE * steps.to_integral_value(rounding=ROUND_CEILING)
    charge = (charge / _TEN_CENTS).to_integral_value(rounding=ROUND_FLOOR) * _TEN_CENTS
    return min(charge, CHARGE_CAP).quantize(_CENT)


def clothing_levy(value_hkd: Decimal, form: str) -> Decimal:
    """The Clothing Industry Training Levy of a form 2A declaration (else 0), HK$."""
    if form != "2A":
        return Decimal(0)
    thousands = (value_hkd / STEP_VALUE).to_integral_value(rounding=ROUND_CEILING)
    return (LEVY_PER_THOUSAND * thousands).quantize(_CENT)


def add_months(day: date, count: int) -> date:
    """``day`` plus ``count`` calendar months (the 31st becomes the month's last day)."""
    month0 = day.month - 1 + count
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, months.monthrange(year, month)[1]))


def lodging_deadline(moved: date) -> date:
    """The last day to lodge the declaration of goods imported or exported on ``moved``."""
    return moved + timedelta(days=LODGING_DAYS)


def penalty_band(moved: date, lodged: date) -> int:
    """0 if on time, else the late band 1, 2 or 3."""
    if lodged <= lodging_deadline(moved):
        return 0
    if lodged <= add_months(moved, 1) + timedelta(days=LODGING_DAYS):
        return 1
    if lodged <= add_months(moved, 2) + timedelta(days=LODGING_DAYS):
        return 2
    return 3


def late_penalty(moved: date, lodged: date, value_hkd: Decimal) -> Decimal:
    """The late lodgement penalty in HK$ (0 if lodged in time)."""
    band = penalty_band(moved, lodged)
    if band == 0:
        return Decimal(0)
    small, large = PENALTIES[band]
    return small if value_hkd <= PENALTY_THRESHOLD else large


def form_of(goods: GoodsLine, direction: str, settings: DeclarationSettings,
            hkhs: str, exempt: bool) -> str:
    """The TDEC form a line belongs on."""
    chapter = int(hkhs[:2]) if hkhs[:2].isdigit() else None
    if direction == "import":
        if exempt:
            return "1B"
        return "1A" if chapter in settings.food_chapters else "1"
    if exempt:
        return "2B"
    return "2A" if chapter in settings.clothing_chapters and goods.origin == "HK" else "2"


def hkhs_of(goods: GoodsLine) -> tuple[str, str]:
    """A line's HKHS code and its source (empty if the invoice gave none of 8 digits)."""
    if goods.hkhs_code:
        return goods.hkhs_code, f"invoice:line {goods.line}:hkhs_code"
    if len(goods.hs_code) == 8:
        return goods.hs_code, f"invoice:line {goods.line}:hs_code"
    return "", "missing"


def split(record: ShipmentRecord, lines: Sequence[GoodsLine], settings: DeclarationSettings,
          exempt: bool = False) -> dict[tuple[str, str], list[GoodsLine]]:
    """Lines grouped into declarations: ``(bill, form)`` → lines, in first-seen order. A line
    naming no bill goes under the shipment's only one (or its reference: the draft says so)."""
    groups: dict[tuple[str, str], list[GoodsLine]] = {}
    only = record.bills[0] if len(record.bills) == 1 else ""
    for goods in lines:
        bill = goods.bill or only or record.reference
        form = form_of(goods, record.direction, settings, hkhs_of(goods)[0] or goods.hs_code,
                       exempt)
        groups.setdefault((bill, form), []).append(goods)
    return groups


def _party(draft: Draft, name: str, party: Party | None, label: str) -> None:
    found = party is not None and bool(party.name)
    source = party.source if party is not None and found else "missing"
    draft.fields[name] = Field(party.name if party is not None and found else None, source,
                               label)
    draft.fields[f"{name}Address"] = Field(party.address or None if party is not None else None,
                                           source, f"{label} address")


def check_parties(draft: Draft, names: Sequence[tuple[str, str]]) -> None:
    """A missing party is an error, a missing address a warning (after corrections too)."""
    for name, label in names:
        if not draft.value(name):
            draft.error("missing-party", f"the {label.lower()} is not known: name it in the "
                        "upload or correct the field", f"fields/{name}")
        elif not draft.value(f"{name}Address"):
            draft.warn("missing-address", f"the {label.lower()}'s address is not known",
                       f"fields/{name}Address")


def _sourced(draft: Draft, name: str, found: Sourced | None, label: str) -> None:
    draft.fields[name] = (Field(found.value, found.source, label) if found is not None
                          else Field(None, "missing", label))


def parties(direction: str) -> tuple[tuple[str, str], ...]:
    """The parties (field, label) a TDEC of ``direction`` names."""
    if direction == "import":
        return (("importer", "Importer"), ("consignor", "Consignor"), ("declarant", "Declarant"))
    return (("exporter", "Exporter"), ("consignee", "Consignee"), ("declarant", "Declarant"))


def build(record: ShipmentRecord, lines: Sequence[GoodsLine], settings: DeclarationSettings,
          *, exempt: bool = False) -> list[Draft]:
    """The TDEC drafts of a shipment, one per (B/L, form): their fields with lineage (the
    figures and issues come from :func:`check`)."""
    drafts = []
    groups = split(record, lines, settings, exempt)
    for (bill, form), goods in groups.items():
        draft = Draft(f"tdec:{bill}:{form}", "hk-tdec",
                      f"TDEC form {form} ({record.direction}) for {bill}")
        draft.fields["form"] = Field(form, "computed:form of the lines' HKHS chapters"
                                     + (" (exempt)" if exempt else ""), "Form")
        draft.fields["direction"] = Field(record.direction, "input:direction", "Direction")
        source = ("invoice:bill" if any(g.bill for g in goods)
                  else f"tracking:{record.kind} {record.reference}")
        draft.fields["transportDocument"] = Field(bill, source, "B/L, AWB or road manifest")
        draft.fields["shipmentBills"] = Field(list(record.bills),
                                              f"tracking:{record.kind} {record.reference}",
                                              "Transport documents of the shipment")
        _sourced(draft, "mode", record.mode, "Mode of transport")
        _sourced(draft, "vessel", record.vessel, "Vessel / flight / vehicle")
        _sourced(draft, "voyage", record.voyage, "Voyage / flight number")
        _sourced(draft, "portOfLoading", record.port_of_loading, "Port of loading")
        _sourced(draft, "portOfDischarge", record.port_of_discharge, "Port of discharge")
        if record.direction == "import":
            _party(draft, "importer", record.consignee, "Importer")
            _party(draft, "consignor", record.consignor, "Consignor")
        else:
            _party(draft, "exporter", record.consignor, "Exporter")
            _party(draft, "consignee", record.consignee, "Consignee")
        _party(draft, "declarant", record.declarant, "Declarant")
        what = "import" if record.direction == "import" else "export"
        moved = record.movement_time
        draft.fields["movementDate"] = (
            Field(None, "missing", f"Date of {what}") if moved is None else
            Field(_HK.local_date(int(moved.value)).isoformat(), moved.source, f"Date of {what}"))
        for seq, g in enumerate(goods, start=1):
            hkhs, hkhs_source = hkhs_of(g)
            where = f"invoice:line {g.line}"
            draft.lines.append({
                "seq": Field(seq, "computed:order of the lines", "Item"),
                "line": Field(g.line, f"{where}:line", "Invoice line"),
                "hkhsCode": Field(hkhs or None, hkhs_source, "HKHS code"),
                "description": Field(g.description, f"{where}:description", "Description"),
                "quantity": Field(g.quantity, f"{where}:quantity", "Quantity"),
                "unit": Field(g.unit, f"{where}:unit", "Unit"),
                "grossKg": Field(g.gross_kg, f"{where}:gross_kg", "Gross weight (kg)"),
                "netKg": Field(g.net_kg, f"{where}:net_kg", "Net weight (kg)"),
                "value": Field(g.value, f"{where}:value", "Invoice value"),
                "currency": Field(g.currency, f"{where}:currency", "Currency"),
                "origin": Field(g.origin, f"{where}:origin", "Country of origin"),
                "packages": Field(g.packages, f"{where}:packages", "Packages"),
            })
        drafts.append(draft)
    return drafts


def check(draft: Draft, settings: DeclarationSettings, nomenclature: Nomenclature, *,
          now: int) -> None:
    """Compute a TDEC draft's HK$ values and figures from its (possibly corrected) fields and
    list its issues."""
    bill = draft.value("transportDocument")
    bills = draft.value("shipmentBills") or []
    if bill not in bills:
        draft.error("unknown-bill", f"{bill} is not a transport document of the shipment "
                    f"({', '.join(bills)})", "fields/transportDocument")
    check_parties(draft, parties(str(draft.value("direction"))))
    for line in draft.lines:
        n = line["line"].value
        currency = str(line["currency"].value)
        rate = settings.rate(currency, "HKD")
        value = Decimal(str(line["value"].value))
        line["valueHkd"] = Field(
            None if rate is None else (value * rate.rate).quantize(_CENT, ROUND_HALF_UP),
            "missing" if rate is None else
            f"computed:{line['value'].source} × rate {rate.describe()}", "Value (HK$)")
        hkhs = line["hkhsCode"].value
        path = f"lines/{n}/hkhsCode"
        if not hkhs:
            draft.error("missing-hkhs-code", f"invoice line {n}: an 8-digit HKHS code is "
                        "needed (hkhs_code column, or correct the field)", path)
        else:
            problem = codes.check_hkhs(str(hkhs))
            if problem is not None:
                draft.error(problem.code, f"invoice line {n}: {problem.message}", path)
            else:
                unknown = nomenclature.problem(str(hkhs))
                if unknown is not None:
                    severe = unknown[0] != "unknown-hs-subheading"
                    (draft.error if severe else draft.warn)(
                        unknown[0], f"invoice line {n}: {unknown[1]}", path)
        if rate is None:
            draft.error("missing-rate", f"invoice line {n}: no exchange rate from {currency} "
                        "to HKD is configured (settings: rates)", f"lines/{n}/valueHkd")
    _figures(draft, now)


def _figures(draft: Draft, now: int) -> None:
    form = str(draft.value("form"))
    values = [line["valueHkd"].value for line in draft.lines]
    total = (None if any(v is None for v in values)
             else sum((Decimal(str(v)) for v in values), Decimal(0)))
    draft.fields["totalValueHkd"] = Field(total, "computed:sum of the lines' HK$ values"
                                          if total is not None else "missing",
                                          "Total value (HK$)")
    draft.fields["charge"] = Field(
        None if total is None else declaration_charge(total, form),
        "computed:declaration charge (Cap. 60E) of the total value" if total is not None
        else "missing", "Declaration charge (HK$)")
    if form == "2A":
        draft.fields["clothingLevy"] = Field(
            None if total is None else clothing_levy(total, form),
            "computed:Clothing Industry Training Levy, HK$0.3 per HK$1,000 or part",
            "Clothing levy (HK$)")
    moved = draft.value("movementDate")
    if not moved:
        draft.fields["deadline"] = Field(None, "missing", "Lodge by")
        draft.warn("no-movement-date", "the import/export date is not known yet: the 14-day "
                   "deadline starts then", "fields/movementDate")
        return
    try:
        day = date.fromisoformat(str(moved))
    except ValueError:
        draft.error("invalid-date", f"{str(moved)[:20]!r} is not a date (YYYY-MM-DD)",
                    "fields/movementDate")
        return
    deadline = lodging_deadline(day)
    today = _HK.local_date(now)
    draft.fields["deadline"] = Field(deadline.isoformat(),
                                     f"computed:date of import/export + {LODGING_DAYS} days",
                                     "Lodge by")
    band = penalty_band(day, today)
    if band and total is not None:
        penalty = late_penalty(day, today, total)
        draft.fields["latePenalty"] = Field(
            penalty, f"computed:late lodgement band {band} (lodged {today.isoformat()})",
            "Late lodgement penalty (HK$)")
        draft.warn("late-lodgement", f"the deadline was {deadline.isoformat()}: lodging today "
                   f"costs a late lodgement penalty of HK${penalty} (band {band})",
                   "fields/deadline")
