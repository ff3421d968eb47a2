"""The declarations model (pure): goods lines, parties, the shipment record, settings, and the
drafts with their per-field lineage and issues.

A draft is built from three inputs, never from anything else: the **goods lines** the shipper
or its forwarder uploaded once (:class:`GoodsLine`, from :mod:`~gateway.declarations.invoice`),
the **shipment record** the caller may read (:class:`ShipmentRecord`, filled by the service
from tracking) and the **settings** (:class:`DeclarationSettings`: exchange rates with their
source and date, food chapters, defaults). Every field of a draft is a :class:`Field` naming
its source (lineage), and every finding is an :class:`Issue` (``error`` blocks submission,
``warning`` does not).

Money is :class:`decimal.Decimal` throughout; a weight is in kilograms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

#: Authorities a draft goes to.
Authority = Literal["hk-tdec", "hk-rocars", "cn-itsw"]
AUTHORITIES: tuple[str, ...] = ("hk-tdec", "hk-rocars", "cn-itsw")

#: Direction of the goods as the declaring side sees it.
Direction = Literal["import", "export"]

#: Severity of an issue.
Severity = Literal["error", "warning"]


class SettingsError(ValueError):
    """The declarations settings are malformed (``path`` names where)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class GoodsLine:
    """One line of a commercial invoice / packing list."""

    line: int
    """The line number the uploader gave (unique within an upload)."""
    description: str
    """Goods description."""
    hs_code: str
    """The commodity code as uploaded: 6, 8 or 10 digits."""
    quantity: Decimal
    """Quantity in :attr:`unit`."""
    unit: str
    """Unit of quantity (e.g. ``PCS``, ``KGM``, ``SET``)."""
    gross_kg: Decimal
    """Gross weight, kg."""
    net_kg: Decimal
    """Net weight, kg."""
    value: Decimal
    """Invoice value of the line in :attr:`currency`."""
    currency: str
    """ISO 4217 code."""
    origin: str
    """Country of origin, ISO 3166 alpha-2."""
    packages: int
    """Number of packages."""
    package_type: str = ""
    """Kind of package (``CT`` cartons, ``PK``, ``PL`` pallets ...), optional."""
    hkhs_code: str = ""
    """Hong Kong HKHS code (8 digits) if given apart from :attr:`hs_code`."""
    cn_code: str = ""
    """China commodity code (10 digits) if given apart from :attr:`hs_code`."""
    bill: str = ""
    """The B/L (or AWB) the line travels under, in a shipment of several."""
    model: str = ""
    """Specification / model (规格型号), optional."""

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line, "description": self.description, "hsCode": self.hs_code,
            "quantity": str(self.quantity), "unit": self.unit, "grossKg": str(self.gross_kg),
            "netKg": str(self.net_kg), "value": str(self.value), "currency": self.currency,
            "origin": self.origin, "packages": self.packages, "packageType": self.package_type,
            "hkhsCode": self.hkhs_code, "cnCode": self.cn_code, "bill": self.bill,
            "model": self.model,
        }

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> GoodsLine:
        """The inverse of :meth:`to_json` (stored lines, already validated)."""
        return GoodsLine(
            int(raw["line"]), raw["description"], raw["hsCode"], Decimal(raw["quantity"]),
            raw["unit"], Decimal(raw["grossKg"]), Decimal(raw["netKg"]), Decimal(raw["value"]),
            raw["currency"], raw["origin"], int(raw["packages"]), raw.get("packageType", ""),
            raw.get("hkhsCode", ""), raw.get("cnCode", ""), raw.get("bill", ""),
            raw.get("model", ""))


@dataclass(frozen=True)
class Party:
    """A party a declaration names."""

    name: str
    """Registered name."""
    address: str = ""
    """Postal address."""
    country: str = ""
    """ISO 3166 alpha-2."""
    uscc: str = ""
    """Unified social credit code (Mainland enterprises)."""
    source: str = ""
    """Where it came from (lineage): ``directory:organisation 4``, ``upload:consignee``."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "country": self.country,
                "uscc": self.uscc, "source": self.source}

    @staticmethod
    def from_json(raw: Mapping[str, Any], source: str) -> Party:
        return Party(str(raw.get("name", "")), str(raw.get("address", "")),
                     str(raw.get("country", "")).upper(), str(raw.get("uscc", "")).upper(),
                     source)


@dataclass(frozen=True)
class Sourced:
    """A value of the shipment record with where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class ShipmentRecord:
    """What the system knows of one shipment, as far as the declarant may read it.

    The service fills it from the tracking view the caller sees (never around visibility);
    absent facts are None and the drafts report them.
    """

    reference: str
    """The transport document the goods travel under (B/L, house B/L, AWB or truck job)."""
    kind: str
    """``mbl``, ``hbl``, ``awb`` or ``truck``."""
    direction: Direction
    """Import into or export from Hong Kong."""
    bills: tuple[str, ...]
    """Transport documents covered: one B/L, or several when the shipment splits."""
    mode: Sourced | None = None
    """``sea``, ``air`` or ``road``."""
    vessel: Sourced | None = None
    """``{"name", "imo"}`` of the conveyance (sea)."""
    voyage: Sourced | None = None
    """Voyage or flight number."""
    port_of_loading: Sourced | None = None
    """UN/LOCODE."""
    port_of_discharge: Sourced | None = None
    """UN/LOCODE."""
    arrival: Sourced | None = None
    """Import: when the goods arrived (Unix seconds, actual or estimated)."""
    departure: Sourced | None = None
    """Export: when the goods left (Unix seconds)."""
    containers: Sourced | None = None
    """Container numbers (tuple of str)."""
    carrier: Sourced | None = None
    """Carrier's name."""
    declarant: Party | None = None
    """Who declares: the caller's organisation (directory)."""
    consignor: Party | None = None
    """Shipper / exporter."""
    consignee: Party | None = None
    """Consignee / importer."""
    vehicle: Sourced | None = None
    """A truck job's vehicle registration (the CCRN is bound to it)."""
    crossing: Sourced | None = None
    """A truck job's expected crossing of the land boundary, Unix seconds (its window's
    start)."""
    pickup: Sourced | None = None
    """A truck job's pick-up place (terminal's name, facility, UN/LOCODE) as text."""
    delivery: Sourced | None = None
    """A truck job's delivery place (warehouse's name, address, UN/LOCODE) as text."""

    @property
    def movement_time(self) -> Sourced | None:
        """The import or export time the 14-day TDEC deadline runs from."""
        return self.arrival if self.direction == "import" else self.departure


@dataclass(frozen=True)
class Rate:
    """An exchange rate: 1 :attr:`base` = :attr:`rate` :attr:`quote`."""

    base: str
    quote: str
    rate: Decimal
    source: str
    """Who publishes it (e.g. ``HKMA``, ``PBOC central parity``)."""
    date: str
    """The day it applies to (ISO date)."""

    def describe(self) -> str:
        return f"1 {self.base} = {self.rate} {self.quote} ({self.source}, {self.date})"


@dataclass(frozen=True)
class RoadCrossing:
    """A cross-boundary truck for the ROCARS pre-declaration given in the upload (a declaration
    for a truck job takes it from the job instead: :attr:`ShipmentRecord.vehicle`)."""

    vehicle: str
    """Vehicle registration mark the CCRN is bound to."""
    crossing_time: int
    """Expected crossing at the land boundary control point, Unix seconds."""
    control_point: str = ""
    """Land boundary control point, optional (e.g. ``Lok Ma Chau``)."""


@dataclass(frozen=True)
class DeclarationSettings:
    """``config.extra["declarations"]``: what the drafts need besides the record."""

    rates: tuple[Rate, ...] = ()
    """Exchange rates, each stated with its source and date."""
    food_chapters: tuple[int, ...] = tuple(range(1, 25))
    """HS chapters whose imports are food (TDEC form 1A)."""
    clothing_chapters: tuple[int, ...] = (61, 62, 64)
    """HS chapters of Hong Kong-made clothing and footwear (TDEC form 2A on export)."""
    cn_customs_office: str = "5300"
    """China customs office of declaration (申报地海关, a 4-digit 关区代码); configure per site."""
    cn_trade_mode: str = "0110"
    """监管方式: 0110 general trade (一般贸易)."""
    hk_authority_org: int | None = None
    """Gateway id of the organisation that is Hong Kong Customs (TDEC, ROCARS)."""
    cn_authority_org: int | None = None
    """Gateway id of the organisation that is China customs (ITSW)."""
    authority_url: str = ""
    """Base URL of the authority service (the SIMULATED one in the demo and tests)."""
    timeout_seconds: float = 5.0
    """One request to the authority."""
    retry_base_seconds: float = 1.0
    """First retry delay (doubles, capped by :attr:`retry_max_seconds`)."""
    retry_max_seconds: float = 60.0
    max_attempts: int = 8
    """Submission attempts before a submission is ``failed`` (a status poll retries forever)."""
    poll_seconds: float = 2.0
    """How often submitted declarations are polled for their status."""

    def rate(self, base: str, quote: str) -> Rate | None:
        """The rate from ``base`` to ``quote`` (identity for one currency), else None."""
        if base == quote:
            return Rate(base, quote, Decimal(1), "identity", "")
        return next((r for r in self.rates if r.base == base and r.quote == quote), None)

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> DeclarationSettings:
        """Settings from configuration (unknown keys and bad values: :class:`SettingsError`)."""
        known = {"rates", "food_chapters", "clothing_chapters", "cn_customs_office",
                 "cn_trade_mode", "hk_authority_org", "cn_authority_org", "authority_url",
                 "timeout_seconds", "retry_base_seconds", "retry_max_seconds", "max_attempts",
                 "poll_seconds"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError("unknown setting", f"declarations/{unknown[0]}")
        rates = []
        for i, r in enumerate(raw.get("rates", [])):
            where = f"declarations/rates/{i}"
            if not isinstance(r, Mapping) or set(r) != {"base", "quote", "rate", "source",
                                                         "date"}:
                raise SettingsError("a rate is {base, quote, rate, source, date}", where)
            try:
                value = Decimal(str(r["rate"]))
            except InvalidOperation:
                raise SettingsError("rate is a decimal number", where) from None
            if not value.is_finite() or value <= 0:
                raise SettingsError("rate is a positive number", where)
            rates.append(Rate(str(r["base"]).upper(), str(r["quote"]).upper(), value,
                              str(r["source"]), str(r["date"])))
        out: dict[str, Any] = {k: v for k, v in raw.items() if k != "rates"}
        for name in ("food_chapters", "clothing_chapters"):
            if name in out:
                out[name] = tuple(int(c) for c in out[name])
        for name in ("timeout_seconds", "retry_base_seconds", "retry_max_seconds",
                     "poll_seconds"):
            if name in out and (not isinstance(out[name], int | float) or out[name] <= 0):
                raise SettingsError("a positive number of seconds", f"declarations/{name}")
        return DeclarationSettings(rates=tuple(rates), **out)


@dataclass(frozen=True)
class Field:
    """One field of a draft: its value and where the value came from."""

    value: Any
    """JSON-able value (Decimal is kept as a string)."""
    source: str
    """Lineage: ``invoice:line 3:value``, ``tracking:...``, ``directory:...``, ``settings:...``,
    ``input:...``, ``computed:...``, ``correction:...`` or ``missing``."""
    label: str = ""
    """English label."""
    label_zh: str = ""
    """Chinese label (the review page shows it; China ITSW fields)."""

    def to_json(self) -> dict[str, Any]:
        value = str(self.value) if isinstance(self.value, Decimal) else self.value
        out: dict[str, Any] = {"value": value, "source": self.source}
        if self.label:
            out["label"] = self.label
        if self.label_zh:
            out["labelZh"] = self.label_zh
        return out


@dataclass(frozen=True)
class Issue:
    """A pre-validation finding on a draft."""

    severity: Severity
    code: str
    message: str
    path: str = ""
    """Where: ``fields/consignee`` or ``lines/3/hkhsCode`` (empty: the whole draft)."""

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message,
                "path": self.path}


@dataclass(frozen=True)
class Correction:
    """A user's change of one draft field, recorded with who and when."""

    draft: str
    """The draft's key."""
    path: str
    """``fields/<name>`` or ``lines/<line>/<name>``."""
    value: Any
    by: str
    """Who: ``user 7 (ops@example.com)`` or ``api key <id>``."""
    at: int
    """When, Unix seconds."""


@dataclass
class Draft:
    """One declaration to one authority, before submission."""

    key: str
    """Stable within a shipment: ``tdec:<bill>:<form>``, ``rocars:<reference>``,
    ``itsw:<reference>``."""
    authority: str
    """One of :data:`AUTHORITIES`."""
    title: str
    """What it is, for people."""
    fields: dict[str, Field] = field(default_factory=dict)
    lines: list[dict[str, Field]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error (warnings allowed)."""
        return not any(i.severity == "error" for i in self.issues)

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return None if found is None else found.value

    def error(self, code: str, message: str, path: str = "") -> None:
        self.issues.append(Issue("error", code, message, path))

    def warn(self, code: str, message: str, path: str = "") -> None:
        self.issues.append(Issue("warning", code, message, path))

    def document(self) -> dict[str, Any]:
        """The values alone (what is submitted, and hashed)."""
        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Decimal) else v
        return {"key": self.key, "authority": self.authority,
                "fields": {k: plain(f.value) for k, f in self.fields.items()},
                "lines": [{k: plain(f.value) for k, f in line.items()} for line in self.lines]}

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "authority": self.authority, "title": self.title,
                "ok": self.ok,
                "fields": {k: f.to_json() for k, f in self.fields.items()},
                "lines": [{k: f.to_json() for k, f in line.items()} for line in self.lines],
                "issues": [i.to_json() for i in self.issues]}


def money(value: Decimal) -> str:
    """A money amount as text with two decimals."""
    return f"{value:.2f}"
