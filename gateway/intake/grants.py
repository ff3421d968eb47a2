"""The upload API's grant routes: let another organisation read a subject, and revoke it.

``POST /v1/grants`` lets another organisation read every record the caller has published (and
will publish, until revoked) about one subject: the caller's current record key ``SK_v`` for
(caller, subject, ``v`` = the outbox's key version) is packed with its version
(:func:`gateway.confidential.envelope.pack_subject_grant`: ``v`` as uint32 big-endian ||
``SK_v``, 36 bytes) and wrapped for the reader's X25519 public key with
:func:`gateway.confidential.envelope.wrap_key`, **context =**
:func:`gateway.tracking.visibility.grant_context` ``(owner, subject key, reader)`` (owner,
scope, target and reader ABI-encoded, so a wrap is bound to its grant). A reader unwraps with
``unwrap_key(wrapped, x25519_private=..., context=grant_context(...))`` and
``unpack_subject_grant`` to get ``(SK_v, v)``, then opens the owner's records of versions ≤ ``v``
with ``open_with_record_key``. The wrapped key goes on chain through
``AccessGrants.grant(1, subject_key, reader, wrapped, expiry)``. ``DELETE
/v1/grants/{kind}/{value}/{reader}`` sends ``AccessGrants.revoke(1, subject_key, reader)`` with
``revokes_subject`` set, so the outbox moves the caller to key version ``v + 1`` for every
later record on that subject.

Idempotency keys: ``grant:<subject key hex>:<reader>:<key version>:<expiry>`` and
``revoke:<subject key hex>:<reader>:<key version>``, or the ``Idempotency-Key`` header.
"""

from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from contracts import abi
from gateway import errors, jsonbody, openapi, principal
from gateway.appkeys import KEYSTORE, OUTBOX
from gateway.confidential import envelope as confidential
from gateway.events.model import REFERENCE_KINDS, Reference
from gateway.intake.model import ACCEPTED, GRANT_SCHEMA, IDEMPOTENCY_HEADER
from gateway.intake.service import (
    accept,
    event_time,
    idempotency_header,
    normalise,
    reader_key,
    receipts_response,
    writer,
)
from gateway.readside.readmodel import SUBJECT_SCOPE
from gateway.tracking.visibility import grant_context
from gateway.writepath.operations import Operation

routes = openapi.Routes(tag="Upload")


@routes.post("/v1/grants", openapi.operation(
    "Grant another organisation a subject",
    description="Wraps your current key for the subject for the reader (AccessGrants, scope "
                "SUBJECT): it reads all your records about it, until you revoke.",
    body=GRANT_SCHEMA,
    parameters=[IDEMPOTENCY_HEADER],
    **ACCEPTED,
))
async def post_grant(request: web.Request) -> web.Response:
    """Let another organisation read all the caller's records about one subject."""
    who = writer(request, "grants:write")
    body = await jsonbody.read_json(request, GRANT_SCHEMA)
    subject = _subject(body["subject"]["kind"], body["subject"]["value"], "/subject/value")
    reader = body["reader"]
    public = await _reader_or_422(request, who, reader)
    now = int(time.time())
    expiry = event_time(body.get("expiresAt"), "/expiresAt", 0)
    if expiry and expiry <= now:
        raise errors.Unprocessable("expiresAt is in the past", code="expired",
                                   details={"path": "/expiresAt"})
    outbox = request.app[OUTBOX]
    version = outbox.subject_version(who.org_id, subject.key)
    header = idempotency_header(request, required=False)
    key = header or f"grant:{subject.key.hex()}:{reader}:{version}:{expiry}"
    known = outbox.status(who.org_id, key)
    if known is not None:  # the wrap is randomised: a retry must not build a new one
        return receipts_response([dataclasses.replace(known, duplicate=True)])
    secret = confidential.pack_subject_grant(
        confidential.record_key(_owner_secret(request, who), subject.key, version), version
    )
    assert who.chain_org is not None  # writer() refuses a caller not on chain
    context = grant_context(who.chain_org, subject.key, reader)
    wrapped = confidential.wrap_key(secret, reader_public=public, context=context)
    call = Operation(
        idempotency_key=key,
        kind="call",
        to=abi.address("AccessGrants"),
        data=abi.call_data("AccessGrants", "grant", SUBJECT_SCOPE, subject.key, reader,
                           wrapped, expiry),
        summary=f"grant {subject.kind} {subject.value} (key version {version}) to {reader}",
    )
    return await accept(request, who, [call])


@routes.delete("/v1/grants/{kind}/{value}/{reader}", openapi.operation(
    "Revoke a subject grant",
    description="Revokes the grant; your later records on the subject use a new key the "
                "reader cannot derive.",
    parameters=[
        IDEMPOTENCY_HEADER,
        openapi.path_parameter("kind", {"enum": list(REFERENCE_KINDS)}),
        openapi.path_parameter("value", {"type": "string", "maxLength": 35}),
        openapi.path_parameter("reader", {"type": "integer", "minimum": 1,
                                          "maximum": 4294967295}),
    ],
    **ACCEPTED,
))
async def delete_grant(request: web.Request) -> web.Response:
    """Revoke a subject grant; the caller's later records on it use a new key version."""
    who = writer(request, "grants:write")
    subject = _subject(request.match_info["kind"], request.match_info["value"], "value")
    text = request.match_info["reader"]
    if not text.isdigit() or not 0 < int(text) < 1 << 32:
        raise errors.BadRequest(f"reader {text!r} is not an organisation id", code="bad-reader")
    reader = int(text)
    version = request.app[OUTBOX].subject_version(who.org_id, subject.key)
    header = idempotency_header(request, required=False)
    call = Operation(
        idempotency_key=header or f"revoke:{subject.key.hex()}:{reader}:{version}",
        kind="call",
        to=abi.address("AccessGrants"),
        data=abi.call_data("AccessGrants", "revoke", SUBJECT_SCOPE, subject.key, reader),
        summary=f"revoke {subject.kind} {subject.value} from {reader}",
        revokes_subject=subject.key,
    )
    return await accept(request, who, [call])


def _subject(kind: str, value: str, path: str) -> Reference:
    if kind not in REFERENCE_KINDS:
        raise errors.Unprocessable(f"{path}: unknown reference kind {kind!r}",
                                   code="invalid-reference")
    return Reference(kind, normalise(kind, value, path))


async def _reader_or_422(request: web.Request, who: principal.Principal, reader: int) -> bytes:
    if reader == who.chain_org:
        raise errors.Unprocessable("your organisation always reads its own records",
                                   code="reader-is-owner")
    key = await reader_key(request.app, reader)
    if key is None:
        raise errors.Unprocessable(
            f"organisation {reader} is not an active member with an encryption key",
            code="unknown-reader")
    return key


def _owner_secret(request: web.Request, who: principal.Principal) -> bytes:
    try:
        return request.app[KEYSTORE].get(who.org_id).master_secret
    except KeyError:
        raise errors.Forbidden("your organisation has no keys in this gateway yet",
                               code="no-keys") from None
