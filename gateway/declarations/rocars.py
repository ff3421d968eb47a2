"""The ROCARS road-cargo pre-declaration as a draft (pure).

A shipper or its forwarder gives Hong Kong Customs 8 items through the Road Cargo System
(ROCARS) 14 days to 30 minutes before the goods cross the land boundary by truck: (a) the
number of packages, (b) their description, (c) the goods description, (d) the consignor's name,
(e) its address, (f) the consignee's name, (g) its address and (h) the expected date of arrival
or departure (rocars.gov.hk "About Us"). ROCARS answers with the Customs Cargo Reference Number
(CCRN), which the trucker binds to the vehicle registration before the crossing.

For a truck job (the land leg) the vehicle, the expected crossing (the job's window start) and
the pick-up and delivery places come from the job, their lineage naming it
(``land:job LJ…: vehicle``); otherwise they are input
(:class:`~gateway.declarations.model.RoadCrossing`).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.alerts.calendar import Calendar
from gateway.declarations import codes
from gateway.declarations.model import (
    DeclarationSettings,
    Draft,
    Field,
    GoodsLine,
    RoadCrossing,
    ShipmentRecord,
)
from gateway.declarations.tdec import check_parties
from gateway.isotime import iso_time

#: Earliest filing before the crossing, seconds (14 days).
EARLIEST = 14 * 86_400
#: Latest filing before the crossing, seconds (30 minutes).
LATEST = 30 * 60
#: The 8 items, in ROCARS order.
ITEMS: tuple[str, ...] = ("packages", "packageDescription", "goodsDescription", "consignor",
                          "consignorAddress", "consignee", "consigneeAddress", "expectedDate")
_HK = Calendar()


def build(record: ShipmentRecord, lines: Sequence[GoodsLine], settings: DeclarationSettings,
          crossing: RoadCrossing | None) -> Draft:
    """The ROCARS draft of a shipment crossing by truck."""
    del settings  # the 8 items need no settings
    draft = Draft(f"rocars:{record.reference}", "hk-rocars",
                  f"ROCARS pre-declaration ({record.direction}) for {record.reference}")
    total = sum(g.packages for g in lines)
    kinds = sorted({g.package_type for g in lines if g.package_type})
    draft.fields["packages"] = Field(total, "computed:sum of the invoice lines' packages",
                                     "(a) Number of packages")
    draft.fields["packageDescription"] = Field(
        ", ".join(kinds) or None,
        "computed:the invoice lines' package_type" if kinds else "missing",
        "(b) Description of packages")
    draft.fields["goodsDescription"] = Field(
        "; ".join(dict.fromkeys(g.description for g in lines))[:512],
        "computed:the invoice lines' descriptions", "(c) Description of goods")
    for name, party, label in (("consignor", record.consignor, "Consignor"),
                               ("consignee", record.consignee, "Consignee")):
        found = party is not None and bool(party.name)
        source = party.source if party is not None and found else "missing"
        draft.fields[name] = Field(party.name if party is not None and found else None, source,
                                   f"({'d' if name == 'consignor' else 'f'}) {label} name")
        draft.fields[f"{name}Address"] = Field(
            party.address or None if party is not None else None, source,
            f"({'e' if name == 'consignor' else 'g'}) {label} address")
    if crossing is None and record.vehicle is not None and record.crossing is not None:
        moment = int(record.crossing.value)
        draft.fields["expectedDate"] = Field(_HK.local_date(moment).isoformat(),
                                             record.crossing.source, "(h) Expected date")
        draft.fields["vehicle"] = Field(codes.compact(str(record.vehicle.value)),
                                        record.vehicle.source,
                                        "Vehicle registration (CCRN binding)")
        draft.fields["crossingTime"] = Field(iso_time(moment), record.crossing.source,
                                             "Expected crossing")
        for name, place, label in (("pickup", record.pickup, "Pick-up place"),
                                   ("delivery", record.delivery, "Delivery place")):
            if place is not None:
                draft.fields[name] = Field(place.value, place.source, label)
    elif crossing is None:
        draft.fields["expectedDate"] = Field(None, "missing", "(h) Expected date")
        draft.fields["vehicle"] = Field(None, "missing", "Vehicle registration (CCRN binding)")
        draft.fields["crossingTime"] = Field(None, "missing", "Expected crossing")
    else:
        draft.fields["expectedDate"] = Field(_HK.local_date(crossing.crossing_time).isoformat(),
                                             "input:crossing time", "(h) Expected date")
        draft.fields["vehicle"] = Field(codes.compact(crossing.vehicle), "input:vehicle",
                                        "Vehicle registration (CCRN binding)")
        draft.fields["crossingTime"] = Field(iso_time(crossing.crossing_time),
                                             "input:crossing time", "Expected crossing")
        if crossing.control_point:
            draft.fields["controlPoint"] = Field(crossing.control_point, "input:control point",
                                                 "Land boundary control point")
    draft.fields["direction"] = Field(record.direction, "input:direction", "Direction")
    return draft


def check(draft: Draft, *, now: int, crossing_time: int | None) -> None:
    """The ROCARS draft's issues: the 8 items present, the vehicle, the filing window."""
    check_parties(draft, (("consignor", "Consignor"), ("consignee", "Consignee")))
    if not draft.value("packages"):
        draft.error("missing-packages", "the number of packages is 0: ROCARS needs it",
                    "fields/packages")
    if not draft.value("packageDescription"):
        draft.error("missing-package-description", "no package_type on the invoice lines: "
                    "describe the packages (e.g. CT cartons)", "fields/packageDescription")
    vehicle = draft.value("vehicle")
    if not vehicle:
        draft.error("missing-vehicle", "the CCRN is bound to a vehicle registration: give the "
                    "truck's vehicle and crossing time", "fields/vehicle")
    else:
        problem = codes.check_vehicle(str(vehicle))
        if problem is not None:
            draft.error(problem.code, problem.message, "fields/vehicle")
    if crossing_time is None:
        draft.error("missing-crossing-time", "the expected crossing time is not known",
                    "fields/crossingTime")
        return
    ahead = crossing_time - now
    if ahead > EARLIEST:
        draft.warn("too-early", "ROCARS takes cargo information at most 14 days before the "
                   "crossing: submit later", "fields/crossingTime")
    elif ahead < LATEST:
        draft.error("too-late", "ROCARS needs the cargo information at least 30 minutes "
                    "before the crossing", "fields/crossingTime")
