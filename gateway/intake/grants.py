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

``GET /v1/grants`` lists the caller's own grants. The chain knows a grant only by its subject
key (a hash), so the gateway keeps a small register of the grants and revocations its members
submit (:class:`GrantRegister`, ``<data_dir>/grants.db``: organisation, reference, reader,
expiry and the two idempotency keys); each listed grant's state is read from its submissions in
the outbox and from the read model's copy of ``AccessGrants`` (:func:`grant_state`): ``pending``
until the grant is final and indexed, then ``active``, ``expired`` or ``revoked`` as the chain
says; ``revoking`` while a revocation is on its way; ``failed`` if the grant never landed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from contracts import abi
from gateway import errors, jsonbody, openapi, principal, sqlite
from gateway.appkeys import CONFIG, KEYSTORE, OUTBOX, READ_MODEL
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
from gateway.isotime import iso_or_none
from gateway.readside.readmodel import SUBJECT_SCOPE, Grant, ReadModel
from gateway.tracking.visibility import grant_context
from gateway.writepath.operations import Operation, Receipt

routes = openapi.Routes(tag="Upload")

#: The register's database under the gateway's data directory.
FILE_NAME = "grants.db"
#: States of a listed grant (:func:`grant_state`).
GRANT_STATES = ("pending", "active", "expired", "revoking", "revoked", "failed")

_REGISTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    subject BLOB NOT NULL,
    reader INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    expiry INTEGER NOT NULL,
    grant_key TEXT,
    granted_at REAL,
    revoke_key TEXT,
    revoked_at REAL,
    UNIQUE (org_id, subject, reader)
);
CREATE INDEX IF NOT EXISTS grants_org ON grants (org_id, seq);
"""


@dataclass(frozen=True)
class Registered:
    """A grant (and its revocation, if any) as an organisation submitted it here."""

    seq: int
    """Its place in the register (newest highest; a new grant of the same pair moves up)."""
    org_id: int
    """Gateway organisation id of the owner."""
    subject: Reference
    """What is shared."""
    reader: int
    """Consortium organisation id of the reader."""
    expiry: int
    """Unix seconds after which it lapses; 0 for never."""
    grant_key: str | None
    """Idempotency key of the grant's submission (None: only a revocation was sent here)."""
    granted_at: float | None
    """When the grant was accepted."""
    revoke_key: str | None
    """Idempotency key of the revocation's submission, once revoked."""
    revoked_at: float | None
    """When the revocation was accepted."""


class GrantRegister(sqlite.Store):
    """The grants and revocations this gateway's members submitted (one row per owner, subject
    and reader: the latest grant, and its revocation if any). Every query is scoped to the
    owner."""

    _COLUMNS = ("seq, org_id, subject, reader, kind, value, expiry, grant_key, granted_at, "
                "revoke_key, revoked_at")

    def __init__(self, path: Any, *, clock: Any = time.time) -> None:
        super().__init__(path, _REGISTER_SCHEMA)
        self.clock = clock

    def granted(self, org_id: int, subject: Reference, reader: int, expiry: int,
                key: str) -> None:
        """Record a grant accepted into the outbox (it replaces an earlier one of the pair)."""
        with self._transaction() as db:
            db.execute("DELETE FROM grants WHERE org_id = ? AND subject = ? AND reader = ?",
                       (org_id, subject.key, reader))
            db.execute(
                "INSERT INTO grants (org_id, subject, reader, kind, value, expiry, grant_key, "
                "granted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (org_id, subject.key, reader, subject.kind, subject.value, expiry, key,
                 self.clock()),
            )

    def revoked(self, org_id: int, subject: Reference, reader: int, key: str) -> None:
        """Record a revocation accepted into the outbox."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO grants (org_id, subject, reader, kind, value, expiry, revoke_key, "
                "revoked_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (org_id, subject, reader) "
                "DO UPDATE SET revoke_key = excluded.revoke_key, revoked_at = excluded.revoked_at",
                (org_id, subject.key, reader, subject.kind, subject.value, key, self.clock()),
            )

    def page(self, org_id: int, *, subject: Reference | None = None, reader: int | None = None,
             before: int = 0, limit: int = 100) -> list[Registered]:
        """The organisation's grants, newest first (of one subject and/or reader if given)."""
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM grants WHERE org_id = ? "  # noqa: S608 (constant names and ? placeholders only)
            "AND (? IS NULL OR subject = ?) AND (? IS NULL OR reader = ?) "
            "AND (? = 0 OR seq < ?) ORDER BY seq DESC LIMIT ?",
            (org_id, *([subject.key if subject else None] * 2), *([reader] * 2),
             before, before, limit),
        ).fetchall()
        return [Registered(row[0], row[1], Reference(row[4], row[5]), row[3], row[6], row[7],
                           row[8], row[9], row[10]) for row in rows]


#: The app's grant register.
GRANT_REGISTER = web.AppKey("portledger.intake.grant_register", GrantRegister)


def grant_state(registered: Registered, grant_receipt: Receipt | None,
                revoke_receipt: Receipt | None, on_chain: Grant | None, now: float) -> str:
    """Where a registered grant stands (one of :data:`GRANT_STATES`).

    A revocation decides once it is on its way (``revoking``) or final (``revoked``; the chain's
    copy may lag behind the receipt); a failed one leaves the grant as it was. Otherwise the
    grant's own submission: ``failed``, ``pending`` until final *and* indexed, then what the
    chain says (``active``, ``expired``, or ``revoked`` when revoked by other means).
    """
    if revoke_receipt is not None and revoke_receipt.status != "failed":
        if revoke_receipt.status == "final" or (on_chain is not None and not on_chain.active):
            return "revoked"
        return "revoking"
    if grant_receipt is None:  # only a (failed) revocation went through this gateway
        if on_chain is None:
            return "revoked"
    elif grant_receipt.status == "failed":
        return "failed"
    elif grant_receipt.status != "final":
        return "pending"
    landed = grant_receipt.block if grant_receipt is not None else None
    if on_chain is None or (landed is not None and on_chain.granted_block < landed):
        return "pending"  # final, the indexer has not caught up yet
    if not on_chain.active:
        return "revoked"
    return "active" if on_chain.in_force(now) else "expired"


@dataclass(frozen=True)
class Listed:
    """A registered grant with where it stands."""

    registered: Registered
    state: str
    """One of :data:`GRANT_STATES`."""
    grant: Receipt | None
    """The grant's submission, if it went through this gateway."""
    revoke: Receipt | None
    """The revocation's submission, once revoked."""
    reader_name: str | None
    """The reader's name in the chain's member directory."""


def grants_of(app: web.Application, who: principal.Principal, *,
              subject: Reference | None = None, reader: int | None = None, before: int = 0,
              limit: int = 100) -> list[Listed]:
    """The caller organisation's own grants with their states (the API's and the pages')."""
    outbox = app[OUTBOX]
    model: ReadModel | None = app.get(READ_MODEL)
    now = time.time()
    listed = []
    for row in app[GRANT_REGISTER].page(who.org_id, subject=subject, reader=reader,
                                        before=before, limit=limit):
        granted = outbox.status(who.org_id, row.grant_key) if row.grant_key else None
        revoked = outbox.status(who.org_id, row.revoke_key) if row.revoke_key else None
        on_chain = member = None
        if model is not None and who.chain_org is not None:
            on_chain = model.grant(who.chain_org, SUBJECT_SCOPE, row.subject.key, row.reader)
            member = model.organisation(row.reader)
        listed.append(Listed(row, grant_state(row, granted, revoked, on_chain, now), granted,
                             revoked, member.name if member is not None else None))
    return listed


def listed_json(item: Listed) -> dict[str, Any]:
    """One listed grant in the API's form (:data:`GRANT_LIST_SCHEMA`)."""
    row = item.registered
    return {
        "subject": row.subject.to_json(),
        "reader": {"id": row.reader, "name": item.reader_name},
        "expiresAt": iso_or_none(row.expiry or None),
        "state": item.state,
        "grantedAt": iso_or_none(row.granted_at),
        "revokedAt": iso_or_none(row.revoked_at),
        "grant": item.grant.to_json() if item.grant is not None else None,
        "revoke": item.revoke.to_json() if item.revoke is not None else None,
        "cursor": str(row.seq),
    }


GRANT_LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["grants", "next"],
    "properties": {
        "grants": {"type": "array", "items": {
            "type": "object",
            "required": ["subject", "reader", "state", "grant", "revoke"],
            "properties": {
                "subject": {"type": "object"},
                "reader": {"type": "object", "description": "id and directory name"},
                "expiresAt": {"type": ["string", "null"]},
                "state": {"enum": list(GRANT_STATES)},
                "grantedAt": {"type": ["string", "null"]},
                "revokedAt": {"type": ["string", "null"]},
                "grant": {"description": "The grant's submission receipt (null if it was not "
                                         "sent through this gateway)"},
                "revoke": {"description": "The revocation's submission receipt, once revoked"},
                "cursor": {"type": "string"},
            },
        }},
        "next": {"type": ["string", "null"], "description": "before= of the next page"},
    },
}


@routes.get("/v1/grants", openapi.operation(
    "Your organisation's grants and where each stands",
    description="The grants (and revocations) your organisation submitted through this "
                "gateway, newest first, each with its state: pending until final and indexed, "
                "then active, expired or revoked as AccessGrants says; revoking while a "
                "revocation is on its way; failed if the grant never landed. Only your own.",
    parameters=[
        openapi.query_parameter("kind", {"enum": list(REFERENCE_KINDS)}),
        openapi.query_parameter("value", {"type": "string", "maxLength": 35}),
        openapi.query_parameter("reader", {"type": "integer", "minimum": 1,
                                           "maximum": 4294967295}),
        openapi.query_parameter("before", {"type": "integer", "minimum": 0}),
        openapi.query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    ],
    ok_schema=GRANT_LIST_SCHEMA,
    errors=(400, 401, 403, 422, 429),
))
async def list_grants(request: web.Request) -> web.Response:
    """The caller organisation's own grants with their states."""
    who = writer(request, "grants:write")
    query = request.query
    subject = None
    if "kind" in query or "value" in query:
        if not query.get("kind") or not query.get("value"):
            raise errors.BadRequest("give both kind and value", code="bad-query")
        subject = _subject(query["kind"], query["value"], "value")
    reader = _query_int(query.get("reader"), "reader", 1, (1 << 32) - 1)
    before = _query_int(query.get("before"), "before", 0, 1 << 62) or 0
    limit = _query_int(query.get("limit"), "limit", 1, 500) or 100
    found = grants_of(request.app, who, subject=subject, reader=reader, before=before,
                      limit=limit)
    return web.json_response({
        "grants": [listed_json(item) for item in found],
        "next": str(found[-1].registered.seq) if len(found) == limit else None,
    })


def _query_int(raw: str | None, name: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        raise errors.BadRequest(f"{name} is an integer from {low} to {high}", code="bad-query")
    return int(raw)


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
    response = await accept(request, who, [call])
    request.app[GRANT_REGISTER].granted(who.org_id, subject, reader, expiry, key)
    return response


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
    response = await accept(request, who, [call])
    request.app[GRANT_REGISTER].revoked(who.org_id, subject, reader, call.idempotency_key)
    return response


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


async def register_ctx(app: web.Application) -> AsyncIterator[None]:
    """The grant register (``app[GRANT_REGISTER]``) for the app's lifetime."""
    register = GrantRegister(app[CONFIG].path(FILE_NAME))
    app[GRANT_REGISTER] = register
    try:
        yield
    finally:
        register.close()
