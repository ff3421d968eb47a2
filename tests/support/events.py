"""DCSA T&T 2.2 example events and canonical events shared by the upload tests.

The DCSA events are built from the spec's own ``example`` values (``eventID``
3cecb101-..., ``APZU4812090``, vessel ``9321483`` "King of the Seas", transport call
123e4567-..., voyage 2103S/2103N, service FE1, facility ADT/SMDG, seal source CUS, ...), arranged
the way a carrier's or terminal's system sends them.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from gateway.events import dcsa

#: Vessel of the spec's examples (the IMO number 9321483 is a valid one).
VESSEL = {
    "vesselIMONumber": "9321483",
    "vesselName": "King of the Seas",
    "vesselFlag": "DE",
    "vesselCallSignNumber": "NCVV",
    "vesselOperatorCarrierCode": "MAEU",
    "vesselOperatorCarrierCodeListProvider": "NMFTA",
}

#: A transport call at Rotterdam, as in the spec's examples.
TRANSPORT_CALL = {
    "transportCallID": "123e4567-e89b-12d3-a456-426614174000",
    "carrierServiceCode": "FE1",
    "exportVoyageNumber": "2103S",
    "importVoyageNumber": "2103N",
    "transportCallSequenceNumber": 2,
    "UNLocationCode": "NLRTM",
    "facilityCode": "ADT",
    "facilityCodeListProvider": "SMDG",
    "facilityTypeCode": "POTE",
    "modeOfTransport": "VESSEL",
    "vessel": VESSEL,
}

EQUIPMENT_EVENT: dict[str, Any] = {
    "eventID": "3cecb101-7a1a-43a4-9d62-e88a131651e2",
    "eventType": "EQUIPMENT",
    "eventCreatedDateTime": "2021-01-09T14:12:56+01:00",
    "eventClassifierCode": "ACT",
    "eventDateTime": "2019-11-12T07:41:00+08:30",
    "equipmentEventTypeCode": "DISC",
    "equipmentReference": "APZU4812090",
    "ISOEquipmentCode": "22GP",
    "emptyIndicatorCode": "LADEN",
    "transportCall": TRANSPORT_CALL,
    "documentReferences": [
        {"documentReferenceType": "BKG", "documentReferenceValue": "ABC709951"},
        {"documentReferenceType": "TRD", "documentReferenceValue": "MAEU123456789"},
    ],
    "references": [{"referenceType": "FF", "referenceValue": "HF88812"}],
    "seals": [{"sealNumber": "SN5443", "sealSource": "CUS", "sealType": "WIR"}],
}

#: An equipment event away from a terminal (stuffing at the shipper's), with an eventLocation.
STUFFING_EVENT: dict[str, Any] = {
    "eventID": "5e51e72c-d872-11ea-811c-0242ac130003",
    "eventType": "EQUIPMENT",
    "eventCreatedDateTime": "2021-01-09T14:12:56+01:00",
    "eventClassifierCode": "ACT",
    "eventDateTime": "2021-01-08T09:00:00+01:00",
    "equipmentEventTypeCode": "STUF",
    "equipmentReference": "APZU4812090",
    "emptyIndicatorCode": "LADEN",
    "eventLocation": {
        "locationName": "Eiffel Tower",
        "latitude": "48.8585500",
        "longitude": "2.294492036",
        "UNLocationCode": "FRPAR",
        "address": {"name": "Henrik", "street": "Kronprincessegade", "streetNumber": "54",
                    "floor": "5. sal", "postCode": "1306", "city": "København",
                    "stateRegion": "N/A", "country": "Denmark"},
    },
    "references": [{"referenceType": "PO", "referenceValue": "PO-4411"}],
}

TRANSPORT_EVENT: dict[str, Any] = {
    "eventID": "84db923d-2a19-4eb0-beb5-446c1ec57d34",
    "eventType": "TRANSPORT",
    "eventCreatedDateTime": "2021-01-09T14:12:56+01:00",
    "eventClassifierCode": "EST",
    "eventDateTime": "2021-01-10T06:00:00Z",
    "transportEventTypeCode": "ARRI",
    "delayReasonCode": "WEA",
    "changeRemark": "Bad weather",
    "transportCall": TRANSPORT_CALL,
    "documentReferences": [
        {"documentReferenceType": "TRD", "documentReferenceValue": "MAEU123456789"}
    ],
}

SHIPMENT_EVENT: dict[str, Any] = {
    "eventID": "f5d8f8d7-7a1a-43a4-9d62-e88a131651e2",
    "eventType": "SHIPMENT",
    "eventCreatedDateTime": "2021-01-09T14:12:56+01:00",
    "eventClassifierCode": "ACT",
    "eventDateTime": "2021-01-09T14:12:56+01:00",
    "shipmentEventTypeCode": "ISSU",
    "documentID": "MAEU123456789",
    "documentTypeCode": "TRD",
    "reason": "All good",
    "references": [
        {"referenceType": "EQ", "referenceValue": "APZU4812090"},
        {"referenceType": "SI", "referenceValue": "SI-2021-0042"},
    ],
}

#: A shipping-instruction event: its documentID is a UUID-shaped id, not a B/L number.
SHIPPING_INSTRUCTION_EVENT: dict[str, Any] = {
    "eventID": "0a6f6b43-1a5c-4f0a-9f44-1d5d1a7f3c11",
    "eventType": "SHIPMENT",
    "eventCreatedDateTime": "2021-01-09T14:12:56+01:00",
    "eventClassifierCode": "ACT",
    "eventDateTime": "2021-01-09T14:12:56+01:00",
    "shipmentEventTypeCode": "RECE",
    "documentID": "c32d56f3a4a54964bb49abd168b06160",
    "documentTypeCode": "SHI",
}

ALL_EVENTS = (EQUIPMENT_EVENT, STUFFING_EVENT, TRANSPORT_EVENT, SHIPMENT_EVENT,
              SHIPPING_INSTRUCTION_EVENT)


def spec_example(name: str) -> dict[str, Any]:
    """An instance of a spec component assembled from the spec's own ``example`` values."""
    schemas = dcsa.spec()["components"]["schemas"]

    def build(schema: dict[str, Any], depth: int = 0) -> Any:
        while "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        if depth > 12 or schema.get("deprecated"):
            return None
        example = schema.get("example")
        if isinstance(example, datetime):
            return example.isoformat()
        if example is not None and not isinstance(example, dict | list | bytes):
            return example
        if "enum" in schema:
            return schema["enum"][0]
        if schema.get("type") == "string":
            return "EXAMPLE1"
        if schema.get("type") == "array" and "items" in schema:
            item = build(schema["items"], depth + 1)
            return [item] if item is not None else None
        out: dict[str, Any] = {}
        for part in schema.get("allOf", []):
            value = build(part, depth + 1)
            if isinstance(value, dict):
                out.update(value)
        for prop, sub in schema.get("properties", {}).items():
            value = build(sub, depth + 1)
            if value is not None:
                out[prop] = value
        return out or None

    return build(schemas[name])


def canonical_json(**overrides: Any) -> dict[str, Any]:
    """A canonical terminal discharge event (API JSON), with overrides."""
    body: dict[str, Any] = {
        "type": "TERMINAL.DISC",
        "classifier": "ACT",
        "time": "2026-11-24T08:15:00Z",
        "subject": {"kind": "container", "value": "CSQU3054383"},
        "location": "HKHKG",
        "related": [{"kind": "mbl", "value": "PCOL1234567"}],
        "details": {"vessel": {"imo": "9321483", "name": "KING OF THE SEAS"}},
        "visibility": {"mode": "named", "readers": []},
    }
    body.update(overrides)
    return copy.deepcopy(body)
