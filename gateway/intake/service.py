"""The upload API's effects: the caller, the member directory, the dry run, the outbox.

Every upload handler goes the same way: :func:`writer` (authenticated, with the scope, a member
on chain), parse, :func:`check_events` (the caller's roles, the named readers, the sealed size),
then :func:`accept`: a contract call is first dry-run against the chain (:func:`dry_run`), and
the operations are answered ``202`` only once the outbox committed them.
"""

from __future__ import annotations

from aiohttp import web

from contracts import ROLES, roles_mask
from contracts.revert import EXECUTION_REVERTED
from gateway import errors, principal
from gateway.appkeys import ACCOUNTS, KEYSTORE, NODE, OUTBOX, READ_MODEL
from gateway.events import identifiers
from gateway.events.model import CanonicalEvent, EventError, Visibility, parse_time
from gateway.intake.model import ItemError, receipt_json
from gateway.intake.rules import envelope_problem, refuse, role_problem
from gateway.nodeclient import NodeUnavailable, RpcError
from gateway.readside.readmodel import ReadModel
from gateway.writepath.operations import Operation, Receipt

#: Items of an upload once parsed: each one's idempotency key and its event, or why it failed.
Parsed = list[tuple[str | None, CanonicalEvent | ItemError]]


# -- the caller --------------------------------------------------------------------------------
def writer(request: web.Request, scope: str = "events:write") -> principal.Principal:
    """The caller, who needs ``scope`` and an organisation that is a member on chain."""
    who = principal.require(request, scope)
    if who.chain_org is None:
        raise errors.Forbidden(
            "your organisation is not yet a member on chain; writes open once it is",
            code="not-on-chain",
        )
    return who


def read_model(app: web.Application) -> ReadModel | None:
    """The read model, if this gateway has one."""
    return app.get(READ_MODEL)


def caller_roles(request: web.Request, who: principal.Principal) -> int:
    """The caller organisation's roles: the chain directory's, else its account record's."""
    model = read_model(request.app)
    if model is not None and who.chain_org is not None:
        org = model.organisation(who.chain_org)
        if org is not None:
            return int(org.roles)

    accounts = request.app.get(ACCOUNTS)
    if accounts is None:
        return 0
    # an account's roles were checked against contracts.ROLES when it was created
    return roles_mask(list(accounts.organisation(who.org_id).roles))


def require_role(request: web.Request, who: principal.Principal, role: str, what: str) -> None:
    """403 unless the caller's organisation has ``role``."""
    if not caller_roles(request, who) & ROLES[role]:
        raise errors.Forbidden(f"only a {role} may {what}", code="role-not-allowed")


def idempotency_header(request: web.Request, *, required: bool) -> str | None:
    """The ``Idempotency-Key`` header (400 if malformed, or missing when ``required``)."""
    key = request.headers.get("Idempotency-Key")
    if key is None or not key.strip():
        if required:
            raise errors.BadRequest("send an Idempotency-Key header (any unique string, e.g. a "
                                    "UUID) so a retried upload is recorded once",
                                    code="missing-idempotency-key")
        return None
    key = key.strip()
    if len(key) > 200 or not key.isprintable():
        raise errors.BadRequest("an Idempotency-Key is 1 to 200 printable characters",
                                code="invalid-idempotency-key")
    return key


# -- fields of a request -----------------------------------------------------------------------
def normalise(kind: str, text: str, path: str) -> str:
    """A reference number normalised (:func:`gateway.events.identifiers.normalise`), else 422."""
    try:
        return identifiers.normalise(kind, text)
    except identifiers.IdentifierError as exc:
        raise errors.Unprocessable(f"{path}: {exc}", code=exc.code,
                                   details={"path": path}) from None


def event_time(text: str | None, path: str, default: int) -> int:
    """An ISO 8601 time of the request as Unix seconds (``default`` if absent), else 422."""
    if text is None:
        return default
    try:
        return parse_time(text, field=path)
    except EventError as exc:
        raise errors.Unprocessable(str(exc), code=exc.code, details={"path": path}) from None


def visibility_query(request: web.Request) -> Visibility:
    """The ``visibility`` and ``readers`` query parameters of an upload (400 if malformed)."""
    mode = request.query.get("visibility", "named")
    if mode not in ("named", "reference"):
        raise errors.BadRequest("visibility is named or reference", code="bad-query")
    readers: list[int] = []
    for part in filter(None, request.query.get("readers", "").split(",")):
        if not part.strip().isdigit() or not 0 < int(part) < 1 << 32:
            raise errors.BadRequest(f"readers: {part!r} is not an organisation id",
                                    code="bad-query")
        readers.append(int(part))
    if len(readers) > 8 or len(set(readers)) != len(readers):
        raise errors.BadRequest("readers: at most 8 distinct organisation ids", code="bad-query")
    return Visibility(mode, tuple(readers))


# -- the directory -----------------------------------------------------------------------------
async def reader_key(app: web.Application, reader: int) -> bytes | None:
    """A member organisation's X25519 public key: read model directory, else the chain."""
    model = read_model(app)
    if model is not None:
        org = model.organisation(reader)
        if org is not None:
            return bytes(org.encryption_key) if org.active else None

    node = app.get(NODE)
    if node is None:
        return None
    try:
        (key,) = await node.call("Consortium", "encryptionKeyOf", reader)
    except Exception as exc:  # node down or RPC error: the directory is unavailable
        raise errors.Unavailable(f"organisation directory unavailable: {exc}") from None
    key = bytes(key)
    return key if any(key) else None


async def check_events(request: web.Request, who: principal.Principal,
                       parsed: Parsed) -> list[ItemError]:
    """Role, reader and envelope checks of parsed events; schema errors passed through."""
    roles = caller_roles(request, who)
    known: dict[int, bool] = {}
    problems: list[ItemError] = []
    for index, (key, item) in enumerate(parsed):
        if isinstance(item, ItemError):
            problems.append(item)
            continue
        reason = role_problem(item, roles)
        if reason:
            problems.append(ItemError(index, key, 403, "role-not-allowed", reason, "/type"))
            continue
        for reader in item.visibility.readers:
            if reader not in known:
                known[reader] = reader != who.chain_org and \
                    await reader_key(request.app, reader) is not None
            if not known[reader]:
                problems.append(ItemError(
                    index, key, 422, "unknown-reader",
                    f"reader {reader} is not an active member with an encryption key "
                    "(or is your own organisation)", "/visibility/readers"))
                break
        else:
            reason = envelope_problem(item)
            if reason:
                problems.append(ItemError(index, key, 422, "envelope-too-large", reason,
                                          "/details"))
    return problems


# -- the chain and the outbox ------------------------------------------------------------------
async def dry_run(request: web.Request, who: principal.Principal,
                  ops: list[Operation]) -> None:
    """Refuse (409) a new contract call the chain would revert now, with the contract's reason.

    A call is accepted only if it can end on chain: ``eth_call`` from the organisation's own
    account against the latest state runs every check the contract makes (the master B/L is
    registered, the containers are on it, a grant exists to revoke, the reader is an active
    member, ...). A retry of a known idempotency key is not re-checked (it gets its first
    receipt). Without a node (none configured, or none answering) the call is accepted and the
    submitter reports a later refusal on the submission's status.
    """
    node = request.app.get(NODE)
    if node is None:
        return
    outbox = request.app[OUTBOX]
    for op in ops:
        if op.kind != "call" or outbox.status(who.org_id, op.idempotency_key) is not None:
            continue
        try:
            sender = request.app[KEYSTORE].get(who.org_id).address
            await node.eth_call(op.to, op.data, sender=sender)
        except RpcError as exc:
            if exc.code != EXECUTION_REVERTED:
                raise errors.Unavailable(f"the node could not check the call: {exc}") from None
            raise errors.Conflict(
                f"the chain refuses this now: {exc.message}", code="refused-by-contract",
                details={"reason": exc.message, "operation": op.summary},
            ) from None
        except (NodeUnavailable, KeyError):
            return


async def accept(request: web.Request, who: principal.Principal,
                 ops: list[Operation]) -> web.Response:
    """Dry-run the calls among ``ops``, put them all in the outbox, answer 202 with receipts."""
    await dry_run(request, who, ops)
    return receipts_response(await request.app[OUTBOX].accept_async(who.org_id, ops))


async def accept_events(request: web.Request, who: principal.Principal,
                        parsed: Parsed) -> web.Response:
    """Check the parsed events and accept them all, or refuse them all."""
    problems = await check_events(request, who, parsed)
    if problems:
        raise refuse(problems, len(parsed))
    ops = [Operation(idempotency_key=key or "", kind="event", event=event)
           for key, event in parsed if isinstance(event, CanonicalEvent)]
    return await accept(request, who, ops)


def receipts_response(receipts: list[Receipt]) -> web.Response:
    """``202`` with ``receipts`` in the API's form (:data:`~gateway.intake.model.RECEIPTS_SCHEMA`)."""
    return web.json_response({"receipts": [receipt_json(r) for r in receipts]}, status=202)
