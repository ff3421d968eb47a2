"""The upload API's bill-of-lading routes: a carrier registers a master B/L, a forwarder links a
house B/L to it.

Each is a ``BillOfLading`` contract call and a SHIPMENT event accepted together (idempotency
keys ``bl:<master>`` / ``hbl:<house>`` and that key + ``:event``, or the ``Idempotency-Key``
header and that + ``:event``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from contracts import abi
from gateway import errors, jsonbody, openapi, principal
from gateway.appkeys import OUTBOX
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.intake.model import ACCEPTED, HOUSE_SCHEMA, IDEMPOTENCY_HEADER, MASTER_SCHEMA
from gateway.intake.rules import refuse
from gateway.intake.service import (
    accept,
    check_events,
    event_time,
    idempotency_header,
    normalise,
    read_model,
    receipts_response,
    require_role,
    writer,
)
from gateway.writepath.operations import Operation

routes = openapi.Routes(tag="Upload")


@routes.post("/v1/bills-of-lading", openapi.operation(
    "Register a master bill of lading (carrier)",
    description="Registers the master B/L and its containers in BillOfLading (ISO 6346 "
                "checked) and publishes a SHIPMENT event on the master B/L carrying the "
                "container numbers, vessel and voyage for the readers the carrier chooses.",
    body=MASTER_SCHEMA,
    parameters=[IDEMPOTENCY_HEADER],
    **ACCEPTED,
))
async def post_master(request: web.Request) -> web.Response:
    """A carrier registers a master B/L with its containers (and vessel, voyage, ETD/ETA)."""
    who = writer(request)
    body = await jsonbody.read_json(request, MASTER_SCHEMA)
    require_role(request, who, "carrier", "register a master bill of lading")
    master = Reference("mbl", normalise("mbl", body["master"], "/master"))
    containers = [Reference("container", normalise("container", c, f"/containers/{i}"))
                  for i, c in enumerate(body["containers"])]
    if len(set(containers)) != len(containers):
        raise errors.Unprocessable("a container is listed twice", code="duplicate-container")
    related = list(containers)
    details: dict[str, Any] = {"containers": len(containers)}
    vessel = body.get("vessel") or {}
    if vessel.get("imo"):
        imo = normalise("vessel", vessel["imo"], "/vessel/imo")
        related.append(Reference("vessel", imo))
        details["vessel"] = {"imo": imo, **({"name": vessel["name"]} if "name" in vessel else {})}
    elif "name" in vessel:
        details["vessel"] = {"name": vessel["name"]}
    if "voyage" in vessel:
        details["voyage"] = vessel["voyage"]
    for field in ("pol", "pod"):
        if field in body:
            details[field] = normalise("unlocode", body[field], f"/{field}")
    for field in ("etd", "eta"):
        if field in body:
            details[field] = event_time(body[field], f"/{field}", 0)
    visibility = body.get("visibility") or {}
    event = CanonicalEvent(
        event_type="SHIPMENT.ISSU",
        classifier="ACT",
        event_time=event_time(body.get("issuedAt"), "/issuedAt", int(time.time())),
        subject=master,
        location=details.get("pol", ""),
        related=tuple(related),
        details=details,
        visibility=Visibility(visibility.get("mode", "named"),
                              tuple(visibility.get("readers", ()))),
    )
    return await _accept_bl_call(
        request, who, event, f"bl:{master.value}",
        abi.call_data("BillOfLading", "registerMaster", master.key, [c.key for c in containers]),
        f"register master B/L {master.value} with {len(containers)} containers",
    )


@routes.post("/v1/bills-of-lading/{master}/houses", openapi.operation(
    "Link a house bill of lading (forwarder)",
    description="Links a house B/L to the master B/L and the containers it covers, and "
                "publishes a SHIPMENT event on the house B/L, readable by whoever holds the "
                "house B/L number, naming the master B/L and exactly those containers.",
    body=HOUSE_SCHEMA,
    parameters=[IDEMPOTENCY_HEADER,
                openapi.path_parameter("master", {"type": "string", "maxLength": 30})],
    **ACCEPTED,
))
async def post_house(request: web.Request) -> web.Response:
    """A forwarder links a house B/L to a master B/L and the containers it covers."""
    who = writer(request)
    body = await jsonbody.read_json(request, HOUSE_SCHEMA)
    require_role(request, who, "forwarder", "link a house bill of lading")
    master = Reference("mbl", normalise("mbl", request.match_info["master"], "master"))
    house = Reference("hbl", normalise("hbl", body["house"], "/house"))
    containers = [Reference("container", normalise("container", c, f"/containers/{i}"))
                  for i, c in enumerate(body["containers"])]
    if len(set(containers)) != len(containers):
        raise errors.Unprocessable("a container is listed twice", code="duplicate-container")
    model = read_model(request.app)
    registered = model.master(master.key) if model is not None else None
    if registered is not None:
        covered = set(registered[1])
        outside = [c.value for c in containers if c.key not in covered]
        if outside:
            raise errors.Unprocessable(
                f"master B/L {master.value} does not cover {', '.join(outside)}",
                code="container-not-on-master", details={"containers": outside})
    event = CanonicalEvent(
        event_type="SHIPMENT.ISSU",
        classifier="ACT",
        event_time=event_time(body.get("issuedAt"), "/issuedAt", int(time.time())),
        subject=house,
        related=(master, *containers),
        details={"master": master.value, "containers": len(containers)},
        visibility=Visibility("reference", tuple(body.get("readers", ()))),
    )
    return await _accept_bl_call(
        request, who, event, f"hbl:{house.value}",
        # BillOfLading wants the containers in ascending key order (a linear duplicate check)
        abi.call_data("BillOfLading", "linkHouse", house.key, master.key,
                      sorted(c.key for c in containers)),
        f"link house B/L {house.value} to {master.value} ({len(containers)} containers)",
    )


async def _accept_bl_call(request: web.Request, who: principal.Principal,
                          event: CanonicalEvent, default_key: str, data: bytes,
                          summary: str) -> web.Response:
    """Check ``event``, then accept the ``BillOfLading`` call ``data`` and the event together
    (keys: the ``Idempotency-Key`` header or ``default_key``, and that key + ``:event``)."""
    problems = await check_events(request, who, [(None, event)])
    if problems:
        raise refuse(problems, 1)
    key = idempotency_header(request, required=False) or default_key
    call = Operation(idempotency_key=key, kind="call", to=abi.address("BillOfLading"),
                     data=data, summary=summary)
    return await _accept_composite(
        request, who, [call, Operation(idempotency_key=f"{key}:event", kind="event", event=event)]
    )


async def _accept_composite(request: web.Request, who: principal.Principal,
                            ops: list[Operation]) -> web.Response:
    """Accept a call and its event; a retry whose call is unchanged gets the first receipts.

    The event of a composite request may carry a default time (now), so only the call's
    content decides whether a known key is a retry or a reuse.
    """
    outbox = request.app[OUTBOX]
    call, event = ops
    if outbox.status(who.org_id, event.idempotency_key) is not None:
        [first] = await outbox.accept_async(who.org_id, [call])
        receipts = [first]
        second = outbox.status(who.org_id, event.idempotency_key)
        if second is not None:
            receipts.append(dataclasses.replace(second, duplicate=True))
        return receipts_response(receipts)
    return await accept(request, who, ops)
