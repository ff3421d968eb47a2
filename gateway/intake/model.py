"""The upload API's data: request and receipt schemas, limits, and why an item was refused (pure).

The schemas are the very objects the handlers validate with (:func:`gateway.jsonbody.check`)
and the OpenAPI document shows, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.events.model import EVENT_SCHEMA
from gateway.writepath.operations import Receipt

#: Most items of one bulk upload.
MAX_BULK_ITEMS = 50_000

#: Most containers one B/L request names (the SHIPMENT event must fit one envelope).
MAX_BL_CONTAINERS = 64


# -- schemas ---------------------------------------------------------------------------------
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$",
}

#: One canonical event of a list or bulk upload: the event and its idempotency key ``id``.
ITEM_SCHEMA: dict[str, Any] = {
    **EVENT_SCHEMA,
    "required": [*EVENT_SCHEMA["required"], "id"],
    "properties": {**EVENT_SCHEMA["properties"], "id": IDEMPOTENCY_KEY_SCHEMA},
}

LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["events"],
    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000,
                              "items": ITEM_SCHEMA}},
}

#: Body of ``POST /v1/events``: one event (with the Idempotency-Key header) or a list.
EVENTS_BODY_SCHEMA: dict[str, Any] = {"oneOf": [EVENT_SCHEMA, LIST_SCHEMA]}

_REFERENCE_SCHEMA = EVENT_SCHEMA["properties"]["subject"]
_VISIBILITY_SCHEMA = EVENT_SCHEMA["properties"]["visibility"]
_CONTAINERS_SCHEMA: dict[str, Any] = {
    "type": "array", "minItems": 1, "maxItems": MAX_BL_CONTAINERS, "uniqueItems": True,
    "items": {"type": "string", "minLength": 10, "maxLength": 20},
}
_TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time", "maxLength": 40}
_LOCODE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z]{2} ?[A-Za-z2-9]{3}$"}

MASTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["master", "containers"],
    "properties": {
        "master": {"type": "string", "minLength": 1, "maxLength": 30,
                   "description": "Master B/L number (DCSA transportDocumentReference)."},
        "containers": _CONTAINERS_SCHEMA,
        "vessel": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "imo": {"type": "string", "maxLength": 12},
                "name": {"type": "string", "maxLength": 35},
                "voyage": {"type": "string", "maxLength": 50},
            },
        },
        "pol": _LOCODE_SCHEMA,
        "pod": _LOCODE_SCHEMA,
        "etd": _TIME_SCHEMA,
        "eta": _TIME_SCHEMA,
        "issuedAt": _TIME_SCHEMA,
        "visibility": _VISIBILITY_SCHEMA,
    },
}

HOUSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["house", "containers"],
    "properties": {
        "house": {"type": "string", "minLength": 1, "maxLength": 30,
                  "description": "House B/L number."},
        "containers": _CONTAINERS_SCHEMA,
        "issuedAt": _TIME_SCHEMA,
        "readers": _VISIBILITY_SCHEMA["properties"]["readers"],
    },
}

GRANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["subject", "reader"],
    "properties": {
        "subject": _REFERENCE_SCHEMA,
        "reader": {"type": "integer", "minimum": 1, "maximum": 4294967295,
                   "description": "Consortium organisation id of the reader."},
        "expiresAt": _TIME_SCHEMA,
    },
}

RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "opId", "duplicate", "status"],
    "properties": {
        "id": {"type": "string", "description": "Idempotency key."},
        "opId": {"type": "integer"},
        "duplicate": {"type": "boolean"},
        "status": {"enum": ["accepted", "sent", "final", "failed"]},
        "txHash": {"type": ["string", "null"]},
        "block": {"type": ["integer", "null"]},
        "eventId": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
    },
}

RECEIPTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["receipts"],
    "properties": {"receipts": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Receipt"}}},
}


# -- OpenAPI pieces every upload operation shares -------------------------------------------
#: The ``Idempotency-Key`` header parameter.
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": IDEMPOTENCY_KEY_SCHEMA,
    "description": "Makes a retry safe: the same key and content are recorded once.",
}

#: Error statuses of a write.
WRITE_ERRORS = (400, 401, 403, 409, 413, 415, 422, 429, 503)

#: :func:`gateway.openapi.operation` arguments of a write's answer: 202 with its receipts.
ACCEPTED: dict[str, Any] = {
    "ok": 202,
    "ok_description": "Accepted: durably in the outbox",
    "ok_schema": {"$ref": "#/components/schemas/Receipts"},
    "errors": WRITE_ERRORS,
}


# -- refusals and receipts -------------------------------------------------------------------
@dataclass(frozen=True)
class ItemError:
    """Why one item of an upload was refused."""

    index: int
    """Position in the upload (0-based; for NDJSON, the line number minus one)."""
    id: str | None
    """Its idempotency key, if it had one."""
    status: int
    """422 (invalid) or 403 (not allowed for the caller's roles)."""
    code: str
    """Stable error code."""
    message: str
    """What is wrong."""
    path: str = ""
    """JSON pointer inside the item, if known."""

    def to_json(self) -> dict[str, Any]:
        out = {"index": self.index, "id": self.id, "code": self.code, "message": self.message}
        if self.path:
            out["path"] = self.path
        return out


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """A receipt in the API's form (:data:`RECEIPT_SCHEMA`)."""
    return {**receipt.to_json(), "opId": receipt.op_id}
