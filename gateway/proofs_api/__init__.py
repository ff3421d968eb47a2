"""Proof bundles through the gateway: owners export them, banks request them.

A *proof bundle* (``docs/proof-format.md``) proves cargo events to someone who trusts nothing
but the network's ``genesis.json``: a bank financing the cargo checks it offline with
``portledger verify-proof``. The gateway makes bundles for the organisations it hosts:

Export
    ``POST /v1/proofs``: an organisation names a shipment reference it can see (master B/L,
    house B/L, container, ...). The events are those of the caller's shipment view
    (:meth:`gateway.tracking.Tracking.shipment_of`, so exactly what tracking shows it):
    its **own** events (the default) or every event it can see. The bundle itself comes from
    the gateway's node (``portledger_getProof`` over :mod:`gateway.nodeclient`, one call for
    up to :data:`MAX_EVENTS` events), located by the read model's transaction hash and
    block-wide log index of each event.

Selective disclosure
    For events the caller **owns** and names, the gateway adds a disclosure (section 5.4 of the
    format, layout ``portledger-envelope/1``): the plaintext payload and, unless the caller
    says not to, the record's data key (:func:`gateway.confidential.data_key_of` with the
    owner's master secret). The verifier parses the envelope on chain, decrypts its content
    with that key and checks ``keccak(plaintext)`` against the payload hash. A data key opens
    that one record only. Events of other publishers are proven (inclusion, seals) but never
    disclosed. A bundle names an event's subject reference (``subjectReference``) only for
    events about the reference asked for and for disclosed events, so it does not spell out
    container numbers the caller chose not to disclose.

Proof requests
    A bank (any organisation; the use case is a lender) asks an owner for a bundle:
    ``POST /v1/proof-requests`` with the owner's chain organisation id, the reference, a
    purpose and which events and disclosures it would like. The owner lists its incoming
    requests and approves (with its own choice of events and disclosures: the bundle is made
    then and stored) or declines with a reason; the requester may withdraw a pending request.
    The requester lists its requests and downloads the bundle once approved. Every state
    change (requested, approved, declined, withdrawn, downloaded) is recorded with who and when,
    and both parties see that history; each download by the requester is also written to the
    owner's access log ("who saw my data", ``via = "proof"``) for every event of the bundle.

Storage: ``<data_dir>/proofs.db`` (SQLite, WAL): requests, their history, and approved
bundles (zlib-compressed JSON). Every query is parameterised and scoped to the two parties.
Scopes: ``proofs:export`` (export, and decide requests about the organisation's data) and
``proofs:request`` (ask others, download what they approved).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_utils.crypto import keccak

from contracts.cargo import subject_key
from gateway import openapi, sqlite
from gateway.appkeys import ACCOUNTS, CONFIG, KEYSTORE, NODE, PROOF_REQUESTS, READ_MODEL, TRACKING
from gateway.confidential import envelope as confidential
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
)
from gateway.events import identifiers
from gateway.jsonbody import read_json
from gateway.nodeclient import NodeUnavailable, RpcError
from gateway.principal import Principal, require
from gateway.readside.readmodel import AccessEntry, IndexedEvent
from proofs.disclosure import disclosure
from proofs.verify import CARGO_EVENT_TOPIC, LAYOUT_ENVELOPE

#: Most events one bundle proves (the node builds a bundle on its own loop and bounds it alike:
#: ``node.rpc.MAX_PROOF_LOGS``).
MAX_EVENTS = 100
#: The requests database under the gateway's data directory.
FILE_NAME = "proofs.db"
#: States of a proof request; only ``pending`` ones can be decided or withdrawn.
STATES = ("pending", "approved", "declined", "withdrawn")
#: What the history of a request records.
ACTIONS = ("requested", "approved", "declined", "withdrawn", "downloaded")
#: Scope of exporting bundles of the organisation's events and deciding requests about them.
EXPORT_SCOPE = "proofs:export"
#: Scope of requesting bundles from other organisations and downloading them.
REQUEST_SCOPE = "proofs:request"


class ProofRequestError(Exception):
    """A request cannot change state: it is not pending any more."""


# -- what to prove --------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which events of a shipment a bundle proves and which it discloses."""

    event_ids: tuple[int, ...] | None = None
    """Only these events (None: every candidate event)."""
    disclose: tuple[int, ...] | str = "none"
    """Events to disclose (the caller's own), or ``"all"`` / ``"none"``."""
    data_keys: bool = True
    """Disclose the data keys too (the verifier then checks the ciphertext), not only the
    plaintext (checked against the payload hash)."""
    include: str = "own"
    """``"own"``: the caller's events only; ``"visible"``: every event of its view."""

    @classmethod
    def from_json(cls, body: dict[str, Any], default: Selection | None = None) -> Selection:
        """From a request body (fields absent take ``default``'s values)."""
        base = default or cls()
        ids = body.get("eventIds", base.event_ids)
        shown = body.get("disclose", base.disclose)
        return cls(
            event_ids=None if ids is None else tuple(dict.fromkeys(int(i) for i in ids)),
            disclose=shown if isinstance(shown, str) else tuple(dict.fromkeys(shown)),
            data_keys=bool(body.get("dataKeys", base.data_keys)),
            include=str(body.get("events", base.include)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "eventIds": None if self.event_ids is None else list(self.event_ids),
            "disclose": self.disclose if isinstance(self.disclose, str) else list(self.disclose),
            "dataKeys": self.data_keys,
            "events": self.include,
        }


@dataclass(frozen=True)
class Made:
    """A bundle and what it proves."""

    bundle: dict[str, Any]
    """The bundle (``docs/proof-format.md``)."""
    events: tuple[IndexedEvent, ...]
    """The proven events, in bundle order."""
    disclosed: tuple[int, ...]
    """Ids of the disclosed events."""


def _chosen(principal: Principal, view: dict[str, Any], events: dict[int, IndexedEvent],
            sel: Selection) -> tuple[list[IndexedEvent], set[int]]:
    """The events to prove and the ids to disclose, checked against what the caller may."""
    me = principal.chain_org
    order = [e["eventId"] for e in view.get("timeline", []) if e["eventId"] in events]
    candidates = [i for i in order if sel.include == "visible" or events[i].publisher == me]
    if sel.event_ids is not None:
        unknown = sorted(set(sel.event_ids) - set(candidates))
        if unknown:
            raise Unprocessable(
                f"events {unknown[:10]} are not {'visible' if sel.include == 'visible' else 'yours'}"
                " among this reference's events",
                code="unknown-event", details={"eventIds": unknown[:100]},
            )
        wanted = set(sel.event_ids)
        candidates = [i for i in candidates if i in wanted]
    if not candidates:
        raise NotFound(
            "none of this reference's events you can see is "
            + ("visible to you" if sel.include == "visible" else "yours"),
            code="nothing-to-prove",
        )
    if len(candidates) > MAX_EVENTS:
        raise Unprocessable(
            f"{len(candidates)} events; a bundle proves at most {MAX_EVENTS}: choose eventIds",
            code="too-many-events",
        )
    if sel.disclose == "all":
        shown = {i for i in candidates if events[i].publisher == me}
    elif sel.disclose == "none":
        shown = set()
    else:
        shown = set(sel.disclose)
        stray = sorted(shown - set(candidates))
        if stray:
            raise Unprocessable(f"events {stray[:10]} to disclose are not in the bundle",
                                code="unknown-event", details={"eventIds": stray[:100]})
        foreign = sorted(i for i in shown if events[i].publisher != me)
        if foreign:
            raise Forbidden(f"events {foreign[:10]} are not yours to disclose",
                            code="not-your-event", details={"eventIds": foreign[:100]})
    return [events[i] for i in candidates], shown


async def make_bundle(app: web.Application, principal: Principal, reference: str,
                      sel: Selection) -> Made:
    """The proof bundle of ``principal``'s choice of events about ``reference``.

    Raises
    ------
    ApiError
        ``reference-not-found`` / ``nothing-to-prove`` (404), ``unknown-event`` /
        ``too-many-events`` (422), ``not-your-event`` (403), ``cannot-disclose`` (409),
        ``no-node`` / ``node-unavailable`` / ``node-refused`` (503).
    """
    tracking, model = app[TRACKING], app[READ_MODEL]
    view = tracking.shipment_of(principal, reference)
    if view is None:
        raise NotFound(f"nothing you may see matches {reference!r}", code="reference-not-found")
    events = {}
    for entry in view.get("timeline", []):
        found = model.event(entry["eventId"])
        if found is not None:
            events[found.event_id] = found
    chosen, shown = _chosen(principal, view, events, sel)
    node = app.get(NODE)
    if node is None:
        raise Unavailable("this gateway has no node to prove events with", code="no-node")
    pairs = [["0x" + ev.tx_hash.hex(), ev.log_index] for ev in chosen]
    try:
        bundle = await node.request("portledger_getProof", [pairs])
    except NodeUnavailable as exc:
        raise Unavailable(f"no node answered: {exc}", code="node-unavailable") from None
    except RpcError as exc:  # the read model knows events the answering node does not (yet)
        raise Unavailable(f"the node could not prove the events: {exc.message}",
                          code="node-refused") from None
    proven = bundle.get("events") if isinstance(bundle, dict) else None
    if not isinstance(proven, list) or [_event_id(e) for e in proven] != [e.event_id for e in chosen]:
        raise Unavailable("the node answered a bundle of other events", code="node-refused")
    subjects = {e["eventId"]: e.get("subject", {}).get("value") for e in view["timeline"]}
    asked = subject_key(str(view.get("reference", "")))
    keys = None
    for item, ev in zip(proven, chosen, strict=True):
        value = subjects.get(ev.event_id)
        if (isinstance(value, str) and subject_key(value) == ev.subject
                and (ev.event_id in shown or ev.subject == asked)):
            item["subjectReference"] = value
        if ev.event_id in shown:
            if keys is None:
                keys = _owner_keys(app, principal)
            item["disclosure"] = _disclose(ev, keys.master_secret, sel.data_keys)
    return Made(bundle, tuple(chosen), tuple(sorted(shown)))


def _event_id(item: Any) -> int | None:
    try:
        topics = item["log"]["topics"]
        if bytes.fromhex(topics[0][2:]) != CARGO_EVENT_TOPIC:
            return None
        return int(topics[3], 16)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _owner_keys(app: web.Application, principal: Principal) -> Any:
    store = app.get(KEYSTORE)
    try:
        if store is None:
            raise KeyError(principal.org_id)
        return store.get(principal.org_id)
    except KeyError:
        raise Conflict("your organisation has no keys on this gateway to disclose with",
                       code="cannot-disclose") from None


def _disclose(ev: IndexedEvent, owner_secret: bytes, with_key: bool) -> dict[str, Any]:
    try:
        data_key = confidential.data_key_of(ev.envelope, subject=ev.subject,
                                            owner_secret=owner_secret)
        plaintext = confidential.open_with_data_key(ev.envelope, data_key)
    except (confidential.DecryptionFailed, ValueError):
        raise Conflict(f"event {ev.event_id} does not open with your organisation's keys",
                       code="cannot-disclose") from None
    if keccak(plaintext) != ev.payload_hash:
        raise Conflict(f"event {ev.event_id}'s plaintext does not match its payload hash",
                       code="cannot-disclose")
    return disclosure(plaintext, data_key=data_key if with_key else None, layout=LAYOUT_ENVELOPE)


def bundle_response(bundle: dict[str, Any] | bytes, reference: str) -> web.Response:
    """The bundle as a JSON download named after the reference."""
    body = bundle if isinstance(bundle, bytes) else _encode(bundle)
    name = "".join(c for c in reference if c.isascii() and c.isalnum())[:40] or "shipment"
    return web.Response(
        body=body, content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="portledger-proof-{name}.json"'},
    )


def _encode(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, separators=(",", ":")).encode()


# -- requests -------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proof_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    requester_org INTEGER NOT NULL,
    requester_chain INTEGER NOT NULL,
    owner_org INTEGER NOT NULL,
    owner_chain INTEGER NOT NULL,
    reference TEXT NOT NULL,
    purpose TEXT NOT NULL,
    wanted TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'withdrawn')),
    created REAL NOT NULL,
    decided REAL,
    reason TEXT,
    granted TEXT,
    proven TEXT,
    bundle BLOB,
    bundle_size INTEGER
);
CREATE INDEX IF NOT EXISTS proof_requests_owner ON proof_requests (owner_org, seq);
CREATE INDEX IF NOT EXISTS proof_requests_requester ON proof_requests (requester_org, seq);
CREATE TABLE IF NOT EXISTS proof_request_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    org INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN
        ('requested', 'approved', 'declined', 'withdrawn', 'downloaded')),
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS proof_request_history_request ON proof_request_history (request_id, seq);
"""


@dataclass(frozen=True)
class ProofRequest:
    """A request for a proof bundle, as stored."""

    id: str
    """Its id (a UUID)."""
    requester_org: int
    """Gateway organisation id of the requester."""
    requester_chain: int
    """Its Consortium organisation id."""
    owner_org: int
    """Gateway organisation id of the owner asked."""
    owner_chain: int
    """Its Consortium organisation id."""
    reference: str
    """The shipment reference (normalised)."""
    purpose: str
    """Why the requester asks (shown to the owner)."""
    wanted: Selection
    """What the requester asked for."""
    status: str
    """One of :data:`STATES`."""
    created: float
    """When it was made, Unix seconds."""
    decided: float | None
    """When it was approved, declined or withdrawn."""
    reason: str | None
    """The owner's reason (declined) or note (approved)."""
    granted: dict[str, Any] | None
    """What the owner approved: ``{"eventIds": [...], "disclosed": [...], "dataKeys": bool}``."""
    proven: tuple[tuple[int, bytes], ...]
    """(event id, subject key) of each proven event."""
    bundle_size: int | None
    """Size of the stored bundle in bytes (JSON)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded state change or download of a request."""

    time: float
    """When, Unix seconds."""
    org: int
    """Consortium organisation id of who acted."""
    actor: str
    """The user (``user:<id>``) or API key (``api-key:<id>``) that acted."""
    action: str
    """One of :data:`ACTIONS`."""
    detail: str
    """Purpose, reason, note or what was disclosed."""


class ProofRequestStore(sqlite.Store):
    """Proof requests, their history and approved bundles in SQLite (WAL).

    Every method is one short transaction on the event loop's thread; reads are scoped to a
    party by the handlers (a request is found by id, then its parties are compared).
    """

    _COLUMNS = ("id, requester_org, requester_chain, owner_org, owner_chain, reference, purpose, "
                "wanted, status, created, decided, reason, granted, proven, bundle_size")

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        super().__init__(path, _SCHEMA)
        self.clock = clock

    @staticmethod
    def _request(row: Sequence[Any]) -> ProofRequest:
        proven = json.loads(row[13]) if row[13] else []
        return ProofRequest(
            id=row[0], requester_org=row[1], requester_chain=row[2], owner_org=row[3],
            owner_chain=row[4], reference=row[5], purpose=row[6],
            wanted=Selection.from_json(json.loads(row[7])), status=row[8], created=row[9],
            decided=row[10], reason=row[11], granted=json.loads(row[12]) if row[12] else None,
            proven=tuple((int(i), bytes.fromhex(s)) for i, s in proven), bundle_size=row[14],
        )  # fmt: skip

    def _log(self, db: sqlite3.Connection, request_id: str, org: int, actor: str, action: str,
             detail: str, now: float) -> None:
        db.execute(
            "INSERT INTO proof_request_history (request_id, time, org, actor, action, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, now, org, actor, action, detail),
        )

    def create(self, requester: Principal, owner_org: int, owner_chain: int, reference: str,
               purpose: str, wanted: Selection) -> ProofRequest:
        """Store a new pending request (and its ``requested`` history entry)."""
        assert requester.chain_org is not None
        now = self.clock()
        request_id = str(uuid.uuid4())
        with self._transaction() as db:
            db.execute(
                "INSERT INTO proof_requests (id, requester_org, requester_chain, owner_org, "
                "owner_chain, reference, purpose, wanted, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (request_id, requester.org_id, requester.chain_org, owner_org, owner_chain,
                 reference, purpose, json.dumps(wanted.to_json()), now),
            )
            self._log(db, request_id, requester.chain_org, actor_of(requester), "requested",
                      purpose, now)
        found = self.get(request_id)
        assert found is not None
        return found

    def get(self, request_id: str) -> ProofRequest | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM proof_requests WHERE id = ?", (request_id,)
        ).fetchone()
        return None if row is None else self._request(row)

    def page(self, org_id: int, *, incoming: bool, outgoing: bool, status: str | None,
             before: int, limit: int) -> list[tuple[int, ProofRequest]]:
        """The organisation's requests (as owner and/or requester), newest first."""
        sides = []
        if incoming:
            sides.append("owner_org = ?")
        if outgoing:
            sides.append("requester_org = ?")
        if not sides:
            return []
        rows = self._db.execute(
            f"SELECT seq, {self._COLUMNS} FROM proof_requests WHERE ({' OR '.join(sides)}) "
            "AND (? IS NULL OR status = ?) AND (? = 0 OR seq < ?) ORDER BY seq DESC LIMIT ?",
            (*([org_id] * len(sides)), status, status, before, before, limit),
        ).fetchall()
        return [(row[0], self._request(row[1:])) for row in rows]

    def history(self, request_id: str) -> list[HistoryEntry]:
        rows = self._db.execute(
            "SELECT time, org, actor, action, detail FROM proof_request_history "
            "WHERE request_id = ? ORDER BY seq",
            (request_id,),
        ).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def decide(self, request_id: str, actor: Principal, status: str, *, reason: str | None,
               made: Made | None = None, granted: dict[str, Any] | None = None) -> ProofRequest:
        """Move a pending request to ``status`` (approved with its bundle, declined, withdrawn).

        Raises
        ------
        ProofRequestError
            It is not pending any more.
        """
        assert status in STATES[1:] and actor.chain_org is not None
        now = self.clock()
        bundle = size = proven = None
        if made is not None:
            encoded = _encode(made.bundle)
            bundle, size = zlib.compress(encoded, 6), len(encoded)
            proven = json.dumps([[e.event_id, e.subject.hex()] for e in made.events])
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE proof_requests SET status = ?, decided = ?, reason = ?, granted = ?, "
                "proven = ?, bundle = ?, bundle_size = ? WHERE id = ? AND status = 'pending'",
                (status, now, reason, json.dumps(granted) if granted else None, proven, bundle,
                 size, request_id),
            ).rowcount
            if not changed:
                raise ProofRequestError(request_id)
            action = status
            detail = reason or ""
            if granted is not None:
                detail = json.dumps(granted, separators=(",", ":")) + (f" {reason}" if reason else "")
            self._log(db, request_id, actor.chain_org, actor_of(actor), action, detail, now)
        found = self.get(request_id)
        assert found is not None
        return found

    def bundle(self, request_id: str) -> bytes | None:
        """The stored bundle (JSON bytes) of an approved request."""
        row = self._db.execute(
            "SELECT bundle FROM proof_requests WHERE id = ? AND status = 'approved'",
            (request_id,),
        ).fetchone()
        return None if row is None or row[0] is None else zlib.decompress(row[0])

    def downloaded(self, request: ProofRequest, actor: Principal) -> None:
        """Record a download by the requester."""
        assert actor.chain_org is not None
        with self._transaction() as db:
            self._log(db, request.id, actor.chain_org, actor_of(actor), "downloaded",
                      f"{len(request.proven)} events", self.clock())


def actor_of(principal: Principal) -> str:
    """Who acted, for the history: the user, or the credential (never a secret)."""
    return f"user:{principal.user_id}" if principal.user_id is not None else principal.credential_id


# -- HTTP -----------------------------------------------------------------------------------


routes = web.RouteTableDef()

_IDS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "minItems": 1, "maxItems": MAX_EVENTS, "uniqueItems": True}
_DISCLOSE = {
    "description": "Events to disclose (plaintext, and data key unless dataKeys is false): "
    "\"all\" of the owner's events in the bundle, \"none\", or a list of event ids.",
    "anyOf": [{"enum": ["all", "none"]}, {**_IDS, "minItems": 0}],
}
_REFERENCE = {"type": "string", "minLength": 1, "maxLength": 64,
              "description": "Master or house B/L, container, booking, air waybill, ..."}

EXPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reference"],
    "additionalProperties": False,
    "properties": {
        "reference": _REFERENCE,
        "events": {"enum": ["own", "visible"],
                   "description": "own (default): your events; visible: every event you see"},
        "eventIds": {**_IDS, "description": "Only these events of the reference"},
        "disclose": _DISCLOSE,
        "dataKeys": {"type": "boolean", "description": "Disclose data keys (default true)"},
    },
}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["owner", "reference", "purpose"],
    "additionalProperties": False,
    "properties": {
        "owner": {"type": "integer", "minimum": 1, "maximum": 2**32 - 1,
                  "description": "Consortium organisation id of the owner asked"},
        "reference": _REFERENCE,
        "purpose": {"type": "string", "minLength": 1, "maxLength": 1000},
        "eventIds": {**_IDS, "description": "Only these events (default: all the owner's)"},
        "disclose": _DISCLOSE,
    },
}

APPROVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "eventIds": {**_IDS, "description": "Prove these (default: what was asked)"},
        "disclose": _DISCLOSE,
        "dataKeys": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 1000},
    },
}

DECLINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reason"],
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
}

PROOF_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "owner", "requester", "reference", "purpose", "status", "history"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "owner": {"type": "object"},
        "requester": {"type": "object"},
        "reference": {"type": "string"},
        "purpose": {"type": "string"},
        "wanted": {"type": "object"},
        "status": {"enum": list(STATES)},
        "createdAt": {"type": "string"},
        "decidedAt": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "granted": {"type": ["object", "null"]},
        "bundle": {"type": ["object", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
    },
}


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _party(app: web.Application, chain_org: int) -> dict[str, Any]:
    return {"id": chain_org, "name": app[TRACKING].publisher_name(chain_org)}


def _request_json(app: web.Application, req: ProofRequest, store: ProofRequestStore) -> dict[str, Any]:
    return {
        "id": req.id,
        "owner": _party(app, req.owner_chain),
        "requester": _party(app, req.requester_chain),
        "reference": req.reference,
        "purpose": req.purpose,
        "wanted": req.wanted.to_json(),
        "status": req.status,
        "createdAt": _iso(req.created),
        "decidedAt": _iso(req.decided),
        "reason": req.reason,
        "granted": req.granted,
        "bundle": None if req.status != "approved" else {
            "events": len(req.proven), "bytes": req.bundle_size,
            "href": f"/v1/proof-requests/{req.id}/bundle",
        },
        "history": [
            {"time": _iso(h.time), "organisation": _party(app, h.org), "actor": h.actor,
             "action": h.action, "detail": h.detail}
            for h in store.history(req.id)
        ],
    }


def _text(value: Any, field: str) -> Any:
    """``value`` if it is storable text (JSON may carry lone surrogates, which are not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unprocessable(f"{field} is not valid Unicode text", code="invalid-text") from None
    return value


def _member(principal: Principal) -> int:
    if principal.chain_org is None:
        raise Forbidden("your organisation is not a member of the chain yet",
                        code="not-a-member")
    return principal.chain_org


def _normalised(reference: str) -> str:
    found = identifiers.detect(reference)
    if not found:
        raise BadRequest(f"{reference[:40]!r} is not a reference number", code="not-a-reference")
    return found[0].value


def _find(request: web.Request, principal: Principal) -> ProofRequest:
    """The request named in the path, if the caller is one of its parties (else 404)."""
    store = request.app[PROOF_REQUESTS]
    found = store.get(request.match_info["request_id"])
    if found is None or principal.org_id not in (found.owner_org, found.requester_org):
        raise NotFound("no such proof request", code="unknown-proof-request")
    return found


def _as_owner(request: web.Request) -> tuple[Principal, ProofRequest]:
    principal = require(request, EXPORT_SCOPE)
    found = _find(request, principal)
    if found.owner_org != principal.org_id:
        raise Forbidden("only the owner asked decides this request", code="not-the-owner")
    if found.status != "pending":
        raise Conflict(f"this request is {found.status} already", code="already-decided")
    return principal, found


def _decided(app: web.Application, store: ProofRequestStore, request_id: str, actor: Principal,
             status: str, **kw: Any) -> web.Response:
    try:
        decided = store.decide(request_id, actor, status, **kw)
    except ProofRequestError:
        raise Conflict("this request was decided meanwhile", code="already-decided") from None
    return web.json_response(_request_json(app, decided, store))


@routes.post("/v1/proofs")
async def export_bundle(request: web.Request) -> web.Response:
    principal = require(request, EXPORT_SCOPE)
    _member(principal)
    body = await read_json(request, EXPORT_SCHEMA)
    made = await make_bundle(request.app, principal, body["reference"], Selection.from_json(body))
    return bundle_response(made.bundle, body["reference"])


@routes.post("/v1/proof-requests")
async def create_request(request: web.Request) -> web.Response:
    principal = require(request, REQUEST_SCOPE)
    me = _member(principal)
    body = await read_json(request, REQUEST_SCHEMA)
    if body["owner"] == me:
        raise Unprocessable("export your own events with POST /v1/proofs", code="own-organisation")
    owner = request.app[ACCOUNTS].by_chain_org(body["owner"])
    if owner is None or owner.status != "active":
        raise NotFound(f"organisation {body['owner']} is not hosted on this gateway",
                       code="unknown-owner")
    wanted = Selection.from_json(body)
    store = request.app[PROOF_REQUESTS]
    made = store.create(principal, owner.id, body["owner"], _normalised(body["reference"]),
                        _text(body["purpose"], "purpose"), wanted)
    return web.json_response(_request_json(request.app, made, store), status=201,
                             headers={"Location": f"/v1/proof-requests/{made.id}"})


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} is an integer from {low} to {high}", code="bad-query")
    return int(raw)


@routes.get("/v1/proof-requests")
async def list_requests(request: web.Request) -> web.Response:
    principal = require(request)
    direction = request.query.get("direction", "all")
    status = request.query.get("status")
    if direction not in ("all", "incoming", "outgoing") or status not in (None, *STATES):
        raise BadRequest("direction is all, incoming or outgoing; status one of "
                         + ", ".join(STATES), code="bad-query")
    incoming = direction != "outgoing" and EXPORT_SCOPE in principal.scopes
    outgoing = direction != "incoming" and REQUEST_SCOPE in principal.scopes
    if not incoming and not outgoing:
        raise Forbidden(f"this credential lacks the {EXPORT_SCOPE!r} or {REQUEST_SCOPE!r} scope",
                        code="missing-scope")
    before = _query_int(request, "before", 0, 0, 2**62)
    limit = _query_int(request, "limit", 50, 1, 500)
    store = request.app[PROOF_REQUESTS]
    rows = store.page(principal.org_id, incoming=incoming, outgoing=outgoing, status=status,
                      before=before, limit=limit)
    return web.json_response({
        "requests": [_request_json(request.app, r, store) for _, r in rows],
        "next": str(rows[-1][0]) if len(rows) == limit else None,
    })


@routes.get("/v1/proof-requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    principal = require(request)
    return web.json_response(_request_json(request.app, _find(request, principal),
                                           request.app[PROOF_REQUESTS]))


@routes.post("/v1/proof-requests/{request_id}/approve")
async def approve_request(request: web.Request) -> web.Response:
    principal, found = _as_owner(request)
    body = await read_json(request, APPROVE_SCHEMA) if request.can_read_body else {}
    note = _text(body.get("note"), "note") or None
    sel = Selection.from_json(body, default=Selection(found.wanted.event_ids,
                                                      found.wanted.disclose, True, "own"))
    made = await make_bundle(request.app, principal, found.reference, sel)
    granted = {"eventIds": [e.event_id for e in made.events], "disclosed": list(made.disclosed),
               "dataKeys": sel.data_keys and bool(made.disclosed)}
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "approved",
                    reason=note, made=made, granted=granted)


@routes.post("/v1/proof-requests/{request_id}/decline")
async def decline_request(request: web.Request) -> web.Response:
    principal, found = _as_owner(request)
    body = await read_json(request, DECLINE_SCHEMA)
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "declined",
                    reason=_text(body["reason"], "reason"))


@routes.post("/v1/proof-requests/{request_id}/withdraw")
async def withdraw_request(request: web.Request) -> web.Response:
    principal = require(request, REQUEST_SCOPE)
    found = _find(request, principal)
    if found.requester_org != principal.org_id:
        raise Forbidden("only the requester withdraws a request", code="not-the-requester")
    if found.status != "pending":
        raise Conflict(f"this request is {found.status} already", code="already-decided")
    return _decided(request.app, request.app[PROOF_REQUESTS], found.id, principal, "withdrawn",
                    reason=None)


@routes.get("/v1/proof-requests/{request_id}/bundle")
async def download_bundle(request: web.Request) -> web.Response:
    principal = require(request)
    found = _find(request, principal)
    requester = found.requester_org == principal.org_id
    require(request, REQUEST_SCOPE if requester else EXPORT_SCOPE)
    store = request.app[PROOF_REQUESTS]
    bundle = store.bundle(found.id)
    if bundle is None:
        raise Conflict(f"this request is {found.status}; there is no bundle",
                       code="not-approved")
    if requester:
        store.downloaded(found, principal)
        now = int(store.clock())
        entries = [AccessEntry(found.owner_chain, found.requester_chain, event_id, subject, now,
                               "proof") for event_id, subject in found.proven]
        await asyncio.to_thread(request.app[READ_MODEL].log_access, entries)
    return bundle_response(bundle, found.reference)


def _op(summary: str, *, body: dict[str, Any] | None = None, ok: str = "200",
        ok_content: dict[str, Any] | None = None, errors: tuple[int, ...] = (),
        path_id: bool = True, query: list[dict[str, Any]] | None = None,
        body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": ["proofs"], "summary": summary, "parameters": []}
    if path_id:
        op["parameters"].append({"name": "request_id", "in": "path", "required": True,
                                 "schema": {"type": "string", "format": "uuid"}})
    op["parameters"] += query or []
    if body is not None:
        op["requestBody"] = {"required": body_required,
                             "content": {"application/json": {"schema": body}}}
    response: dict[str, Any] = {"description": "OK"}
    if ok_content is not None:
        response["content"] = ok_content
    op["responses"] = {ok: response, **openapi.error_responses(401, 403, 404, 429, *errors)}
    return op


_BUNDLE = {"application/json": {"schema": {
    "type": "object", "description": "A portledger-proof/1 bundle (docs/proof-format.md)",
    "required": ["format", "chainId", "events"]}}}
_REQUEST_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ProofRequest"}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/proofs": {
        "post": _op("Export a proof bundle of your events of a shipment, disclosing the ones you "
                    "choose (verify offline: portledger verify-proof FILE --genesis genesis.json)",
                    body=EXPORT_SCHEMA, ok_content=_BUNDLE, path_id=False,
                    errors=(400, 409, 413, 415, 422, 503)),
    },
    "/v1/proof-requests": {
        "get": _op("Proof requests to your organisation (incoming) and by it (outgoing)",
                   path_id=False, errors=(400,), query=[
                       {"name": "direction", "in": "query",
                        "schema": {"enum": ["all", "incoming", "outgoing"]}},
                       {"name": "status", "in": "query", "schema": {"enum": list(STATES)}},
                       {"name": "before", "in": "query",
                        "schema": {"type": "integer", "minimum": 0}},
                       {"name": "limit", "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                   ]),
        "post": _op("Ask an organisation for a proof bundle of its events of a shipment",
                    body=REQUEST_SCHEMA, ok="201", ok_content=_REQUEST_JSON, path_id=False,
                    errors=(400, 413, 415, 422)),
    },
    "/v1/proof-requests/{request_id}": {
        "get": _op("One proof request and its history (either party)", ok_content=_REQUEST_JSON),
    },
    "/v1/proof-requests/{request_id}/approve": {
        "post": _op("Approve a request (the owner): the bundle is made and kept for the requester",
                    body=APPROVE_SCHEMA, body_required=False, ok_content=_REQUEST_JSON,
                    errors=(400, 409, 413, 415, 422, 503)),
    },
    "/v1/proof-requests/{request_id}/decline": {
        "post": _op("Decline a request with a reason (the owner)", body=DECLINE_SCHEMA,
                    ok_content=_REQUEST_JSON, errors=(400, 409, 413, 415, 422)),
    },
    "/v1/proof-requests/{request_id}/withdraw": {
        "post": _op("Withdraw a pending request (the requester)", ok_content=_REQUEST_JSON,
                    errors=(409,)),
    },
    "/v1/proof-requests/{request_id}/bundle": {
        "get": _op("Download the approved bundle (recorded in the owner's access log)",
                   ok_content=_BUNDLE, errors=(409,)),
    },
}


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = ProofRequestStore(app[CONFIG].path(FILE_NAME))
    app[PROOF_REQUESTS] = store
    try:
        yield
    finally:
        store.close()


def setup(app: web.Application) -> None:
    """Proof export and proof-request routes, and the request store (``app[PROOF_REQUESTS]``)."""
    app.cleanup_ctx.append(_store_ctx)
    app.router.add_routes(routes)
    openapi.add(app, OPENAPI_PATHS, schemas={"ProofRequest": PROOF_REQUEST_SCHEMA},
                tags=[{"name": "proofs", "description": "Proof bundles banks verify offline, "
                       "and requests for them"}])

