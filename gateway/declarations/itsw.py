"""The China customs declaration (报关单) for the International Trade Single Window as a draft
(pure): the head (DecHead) and the goods lines (DecList), each field with its Chinese label.

Head fields (STANDARDS.md): IEFlag (进出口标志), the customs office of declaration
(申报地海关) and port (进出境关别), trade mode (监管方式), transport mode (运输方式), conveyance
and voyage, B/L (提运单号), the domestic consignee/consignor (境内收发货人) with its 18-character
unified social credit code, packages (件数), gross / net weight (毛重 / 净重) and the date.
Lines: CodeTS (商品编号, 10 digits), name (商品名称), model (规格型号), quantity and unit
(成交数量 / 成交计量单位), unit price and total (单价 / 总价), currency (币制), origin and
destination countries (原产国 / 最终目的国). Currencies and countries are the ISO codes the
Single Window accepts.

The declaring side is the Mainland's: goods exported from Hong Kong are imported into China
(IEFlag ``I``) and the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from gateway.alerts.calendar import Calendar
from gateway.declarations import codes
from gateway.declarations.hs import Nomenclature
from gateway.declarations.model import (
    DeclarationSettings,
    Draft,
    Field,
    GoodsLine,
    ShipmentRecord,
    Sourced,
)

#: Transport modes (运输方式) by our mode: 2 waterway, 5 air, 4 road (China customs code table).
TRANSPORT_MODES = {"sea": "2", "air": "5", "road": "4"}
_HK = Calendar()
_PRICE = Decimal("0.0001")


def _field(value: object, source: str, label: str, label_zh: str) -> Field:
    return Field(value, source, label, label_zh)


def _sourced(found: Sourced | None, label: str, label_zh: str) -> Field:
    if found is None:
        return Field(None, "missing", label, label_zh)
    return Field(found.value, found.source, label, label_zh)


def cn_code_of(goods: GoodsLine) -> tuple[str, str]:
    """A line's 10-digit China code and its source (empty if the invoice gave none)."""
    if goods.cn_code:
        return goods.cn_code, f"invoice:line {goods.line}:cn_code"
    if len(goods.hs_code) == 10:
        return goods.hs_code, f"invoice:line {goods.line}:hs_code"
    return "", "missing"


def build(record: ShipmentRecord, lines: Sequence[GoodsLine],
          settings: DeclarationSettings) -> Draft:
    """The 报关单 draft of a shipment (head + lines, with lineage)."""
    flag = "I" if record.direction == "export" else "E"  # the Mainland side's direction
    draft = Draft(f"itsw:{record.reference}", "cn-itsw",
                  f"China customs declaration ({'import' if flag == 'I' else 'export'}) for "
                  f"{record.reference}")
    f = draft.fields
    f["IEFlag"] = _field(flag, "computed:opposite of the Hong Kong direction",
                         "Import/export flag", "进出口标志")
    f["CustomMaster"] = _field(settings.cn_customs_office, "settings:cn_customs_office",
                               "Customs office of declaration", "申报地海关")
    f["IEPort"] = _field(settings.cn_customs_office, "settings:cn_customs_office",
                         "Port of entry/exit customs", "进出境关别")
    f["TradeMode"] = _field(settings.cn_trade_mode, "settings:cn_trade_mode", "Trade mode",
                            "监管方式")
    mode = record.mode.value if record.mode is not None else None
    f["TrafMode"] = _field(TRANSPORT_MODES.get(str(mode)),
                           record.mode.source if record.mode is not None else "missing",
                           "Transport mode", "运输方式")
    vessel = record.vessel
    f["TrafName"] = Field(
        (vessel.value.get("name") if isinstance(vessel.value, dict) else vessel.value)
        if vessel is not None else None, vessel.source if vessel is not None else "missing",
        "Conveyance name", "运输工具名称")
    f["VoyageNo"] = _sourced(record.voyage, "Voyage number", "航次号")
    f["BillNo"] = _field(record.bills[0] if record.bills else record.reference,
                         f"tracking:{record.kind} {record.reference}", "Bill of lading",
                         "提运单号")
    domestic = record.consignee if flag == "I" else record.consignor
    foreign = record.consignor if flag == "I" else record.consignee
    domestic_label = "境内收货人" if flag == "I" else "境内发货人"
    f["TradeName"] = _field(domestic.name if domestic else None,
                            domestic.source if domestic else "missing",
                            "Domestic consignee/consignor", domestic_label)
    f["TradeCoScc"] = _field(domestic.uscc or None if domestic else None,
                             domestic.source if domestic and domestic.uscc else "missing",
                             "Unified social credit code", "统一社会信用代码")
    f["OverseasName"] = _field(foreign.name if foreign else None,
                               foreign.source if foreign else "missing",
                               "Overseas consignor/consignee",
                               "境外发货人" if flag == "I" else "境外收货人")
    declarant = record.declarant
    f["AgentName"] = _field(declarant.name if declarant else None,
                            declarant.source if declarant else "missing", "Declarant",
                            "申报单位")
    port = record.port_of_loading if flag == "I" else record.port_of_discharge
    f["DespPortCode"] = _sourced(port, "Port of departure/destination",
                                 "启运港" if flag == "I" else "指运港")
    f["TradeCountry"] = _field(str(port.value)[:2] if port is not None else None,
                               f"computed:country of {port.source}" if port else "missing",
                               "Trading country", "贸易国（地区）")
    moved = record.movement_time
    f["IEDate"] = _field(_HK.local_date(int(moved.value)).isoformat() if moved else None,
                         moved.source if moved else "missing", "Date of import/export",
                         "进出口日期")
    f["PackNo"] = _field(sum(g.packages for g in lines),
                         "computed:sum of the invoice lines' packages", "Packages", "件数")
    kinds = sorted({g.package_type for g in lines if g.package_type})
    f["WrapType"] = _field(",".join(kinds) or None,
                           "computed:the invoice lines' package_type" if kinds else "missing",
                           "Package type", "包装种类")
    f["GrossWet"] = _field(sum((g.gross_kg for g in lines), Decimal(0)),
                           "computed:sum of the invoice lines' gross_kg", "Gross weight (kg)",
                           "毛重（千克）")
    f["NetWt"] = _field(sum((g.net_kg for g in lines), Decimal(0)),
                        "computed:sum of the invoice lines' net_kg", "Net weight (kg)",
                        "净重（千克）")
    for g_no, g in enumerate(lines, start=1):
        code, source = cn_code_of(g)
        where = f"invoice:line {g.line}"
        price = (g.value / g.quantity).quantize(_PRICE, ROUND_HALF_UP)
        draft.lines.append({
            "GNo": _field(g_no, "computed:order of the lines", "Item", "项号"),
            "line": _field(g.line, f"{where}:line", "Invoice line", "发票行"),
            "CodeTS": _field(code or None, source, "Commodity code", "商品编号"),
            "GName": _field(g.description, f"{where}:description", "Goods name", "商品名称"),
            "GModel": _field(g.model or None, f"{where}:model" if g.model else "missing",
                             "Specification / model", "规格型号"),
            "GQty": _field(g.quantity, f"{where}:quantity", "Quantity", "成交数量"),
            "GUnit": _field(g.unit, f"{where}:unit", "Unit", "成交计量单位"),
            "DeclPrice": _field(price, f"computed:{where}:value ÷ quantity", "Unit price",
                                "单价"),
            "DeclTotal": _field(g.value, f"{where}:value", "Total price", "总价"),
            "TradeCurr": _field(g.currency, f"{where}:currency", "Currency", "币制"),
            "OriginCountry": _field(g.origin, f"{where}:origin", "Country of origin",
                                    "原产国（地区）"),
            "DestinationCountry": _field("CN" if flag == "I" else None,
                                         "computed:import into China" if flag == "I"
                                         else "missing", "Final destination country",
                                         "最终目的国（地区）"),
            "grossKg": _field(g.gross_kg, f"{where}:gross_kg", "Gross weight (kg)", "毛重"),
            "netKg": _field(g.net_kg, f"{where}:net_kg", "Net weight (kg)", "净重"),
            "packages": _field(g.packages, f"{where}:packages", "Packages", "件数"),
        })
    return draft


def check(draft: Draft, nomenclature: Nomenclature) -> None:
    """The 报关单 draft's issues: codes, the trader's USCC, parties, head totals."""
    f = draft.fields
    for name in ("CustomMaster", "IEPort"):
        problem = codes.check_customs_office(str(f[name].value or ""))
        if problem is not None:
            draft.error(problem.code, problem.message, f"fields/{name}")
    if not f["TrafMode"].value:
        draft.error("missing-transport-mode", "the transport mode (运输方式) is not known",
                    "fields/TrafMode")
    for name in ("TradeName", "OverseasName", "AgentName"):
        if not f[name].value:
            draft.error("missing-party", f"{f[name].label_zh} ({f[name].label}) is not known",
                        f"fields/{name}")
    uscc = f["TradeCoScc"].value
    if not uscc:
        draft.error("missing-uscc", "the domestic trader's unified social credit code "
                    "(统一社会信用代码) is needed", "fields/TradeCoScc")
    else:
        problem = codes.check_uscc(str(uscc))
        if problem is not None:
            draft.error(problem.code, problem.message, "fields/TradeCoScc")
    if not f["IEDate"].value:
        draft.warn("no-movement-date", "the import/export date (进出口日期) is not known yet",
                   "fields/IEDate")
    for line in draft.lines:
        n = line["line"].value
        code = line["CodeTS"].value
        path = f"lines/{n}/CodeTS"
        if not code:
            draft.error("missing-cn-code", f"invoice line {n}: a 10-digit China commodity code "
                        "(商品编号) is needed (cn_code column, or correct the field)", path)
            continue
        problem = codes.check_cn_code(str(code))
        if problem is not None:
            draft.error(problem.code, f"invoice line {n}: {problem.message}", path)
            continue
        unknown = nomenclature.problem(str(code))
        if unknown is not None:
            (draft.error if unknown[0] != "unknown-hs-subheading" else draft.warn)(
                unknown[0], f"invoice line {n}: {unknown[1]}", path)
        if not line["GModel"].value:
            draft.warn("missing-model", f"invoice line {n}: 规格型号 (specification) is empty",
                       f"lines/{n}/GModel")
    # the head's totals are the lines' (a corrected line or head shows up here)
    for head, column, label in (("GrossWet", "grossKg", "gross weight"),
                                ("NetWt", "netKg", "net weight"),
                                ("PackNo", "packages", "packages")):
        total = sum((Decimal(str(line[column].value)) for line in draft.lines), Decimal(0))
        if Decimal(str(f[head].value)) != total:
            draft.error("head-lines-mismatch", f"the head's {label} {f[head].value} is not the "
                        f"lines' total {total}", f"fields/{head}")
