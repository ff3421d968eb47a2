"""The write path's operations: what an organisation asks the gateway to put on chain (pure).

An :class:`Operation` is a cargo event or one contract call, keyed by the client's idempotency
key; its content hash (:func:`content_hash`) tells a retry from a reused key. :class:`Receipt`
says where one stands, :class:`PendingOp` and :class:`TxRecord` are what the submitter reads
back from the outbox (:mod:`gateway.writepath.outbox`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from gateway import errors
from gateway.events.model import CanonicalEvent, Reference, Visibility, parse_time

#: Kinds of operation.
OpKind = Literal["event", "call"]
#: Status of an operation.
OpStatus = Literal["accepted", "sent", "final", "failed"]


@dataclass(frozen=True)
class Operation:
    """One thing an organisation asked the gateway to put on chain."""

    idempotency_key: str
    """The client's key for it: a retried upload with the same key never records twice."""
    kind: OpKind
    """``event`` (a cargo event, batched into ``CargoLedger.record()``) or ``call``."""
    event: CanonicalEvent | None = None
    """The cargo event (``kind == "event"``)."""
    to: str = ""
    """Contract address of a ``call`` (checksummed hex)."""
    data: bytes = b""
    """Full calldata of a ``call``."""
    summary: str = ""
    """Human-readable description of a ``call`` (not part of the content hash; not stored)."""
    revokes_subject: bytes | None = None
    """Subject key of a SUBJECT-scope revoke: accepting the call bumps its key version."""
    batch_limit: int = 0
    """Largest batch the event may travel in (0: any). 1 puts it in a transaction of its own:
    a proof bundle carries each proven event's whole transaction, so an event whose envelope
    must not be shown beside another's (a custody step's named details beside the public step,
    see docs/land.md) travels alone. Not part of the content hash."""


@dataclass(frozen=True)
class Receipt:
    """Where one accepted operation stands."""

    op_id: int
    """The outbox's id of the operation (acceptance order within the gateway)."""
    idempotency_key: str
    """The client's idempotency key."""
    duplicate: bool
    """True if this answer is for a retry of an operation accepted earlier."""
    status: OpStatus
    """``accepted``, ``sent``, ``final`` or ``failed``."""
    tx_hash: str | None = None
    """Hash of the transaction that carries (or carried) it, once there is one."""
    block: int | None = None
    """Block number it was recorded in (final only)."""
    event_id: int | None = None
    """On-chain cargo event id (``batch << 16 | index``; final events only)."""
    error: str | None = None
    """Why it failed (failed only)."""

    def to_json(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "id": self.idempotency_key,
            "duplicate": self.duplicate,
            "status": self.status,
            "txHash": self.tx_hash,
            "block": self.block,
            "eventId": self.event_id,
            "error": self.error,
        }


@dataclass(frozen=True)
class PendingOp:
    """An operation as the submitter reads it back (see :meth:`Outbox.pending`)."""

    op_id: int
    """Outbox id (acceptance order)."""
    org_id: int
    """Gateway organisation id."""
    idempotency_key: str
    """The client's key."""
    kind: OpKind
    """``event`` or ``call``."""
    event: CanonicalEvent | None
    """The event of an ``event`` operation."""
    to: str
    """Contract address of a ``call``."""
    data: bytes
    """Calldata of a ``call``."""
    key_version: int
    """Subject key version the event is sealed with (fixed at acceptance)."""
    batch_limit: int
    """Largest batch this operation may travel in (0: no limit; halved by a bisect)."""
    accepted_at: float
    """Unix time of acceptance."""


@dataclass(frozen=True)
class TxRecord:
    """A signed transaction the nonce manager persisted (see :mod:`gateway.writepath.submitter`)."""

    tx_id: int
    """Outbox id of the transaction."""
    org_id: int
    """Gateway organisation that signed it."""
    sender: str
    """Signing address."""
    nonce: int
    """Its nonce."""
    tx_hash: str
    """0x-hash of the signed bytes."""
    raw: bytes
    """The signed bytes: every (re)send sends exactly these."""
    kind: str
    """``record`` (a batch of events) or ``call``."""
    status: str
    """``sent`` (live), ``mined``, ``reverted``, ``rejected`` or ``dropped``."""
    maybe_sent: bool
    """A node may have taken the bytes (a send succeeded, or its answer was lost)."""
    created_at: float
    """Unix time it was persisted."""
    sent_at: float | None
    """Unix time of the last send attempt."""
    op_ids: tuple[int, ...]
    """The operations it carries, in batch order."""


def _event_json(event: CanonicalEvent) -> bytes:
    return json.dumps(
        event.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def canonical_bytes(op: Operation) -> bytes:
    """The bytes an operation's content hash is taken over (everything but its summary).

    An event: ``b"event\x00"`` and the event's canonical JSON (sorted keys, no spaces) — the
    very bytes the outbox stores. A call: canonical JSON of its address, calldata and revoked
    subject.
    """
    if op.kind == "event" and op.event is not None:
        return b"event\x00" + _event_json(op.event)
    body = {
        "kind": op.kind,
        "to": op.to.lower(),
        "data": op.data.hex(),
        "revokes": op.revokes_subject.hex() if op.revokes_subject is not None else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(op: Operation) -> bytes:
    """SHA-256 of :func:`canonical_bytes`: tells a retry from a reused key."""
    return hashlib.sha256(canonical_bytes(op)).digest()


def stored_event(raw: bytes | str) -> CanonicalEvent:
    """Rebuild an event from the canonical JSON the outbox stored.

    The references were normalised and checked at intake, so they are taken as they are (no
    second normalisation that could disagree with the first).
    """
    data = json.loads(raw)
    visibility = data.get("visibility") or {}
    return CanonicalEvent(
        event_type=data["type"],
        classifier=data["classifier"],
        event_time=parse_time(data["time"]),
        subject=Reference(**data["subject"]),
        location=data.get("location", ""),
        related=tuple(Reference(**r) for r in data.get("related", [])),
        details=data.get("details") or {},
        visibility=Visibility(
            mode=visibility.get("mode", "named"), readers=tuple(visibility.get("readers", ()))
        ),
        retracts=int(data.get("retracts", 0)),
    )


def check(op: Operation) -> None:
    """Refuse a malformed operation (bad idempotency key, missing event or calldata)."""
    if not isinstance(op.idempotency_key, str) or not 1 <= len(op.idempotency_key) <= 200:
        raise errors.Unprocessable(
            "an idempotency key is 1 to 200 characters", code="invalid-idempotency-key"
        )
    if op.batch_limit < 0:
        raise ValueError(f"a batch limit is 0 (none) or more, not {op.batch_limit}")
    if op.kind == "event":
        if op.event is None:
            raise ValueError("an event operation needs its event")
    elif op.kind == "call":
        if not op.to or not op.data:
            raise ValueError("a call operation needs a contract address and calldata")
    else:
        raise ValueError(f"unknown operation kind {op.kind!r}")
