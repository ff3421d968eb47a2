"""What a proof bundle proves and discloses, and making one from the gateway's node.

The events are those of the caller's shipment view (:meth:`gateway.tracking.Tracking.shipment_of`,
so exactly what tracking shows it): its own events (the default) or every event it can see. The
bundle comes from the gateway's node (``portledger_getProof`` over :mod:`gateway.nodeclient`, one
call for up to :data:`MAX_EVENTS` events), located by the read model's transaction hash and
block-wide log index of each event. For events the caller owns and names, a disclosure
(:func:`proofs.disclosure.disclosure`, layout ``portledger-envelope/1``) carries the plaintext
and, unless the caller says not to, the record's data key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from eth_utils.crypto import keccak

from contracts.cargo import subject_key
from gateway.appkeys import KEYSTORE, NODE, READ_MODEL, TRACKING
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import OrgKeys
from gateway.errors import Conflict, Forbidden, NotFound, Unavailable, Unprocessable
from gateway.nodeclient import NodeUnavailable, RpcError
from gateway.principal import Principal
from gateway.readside.readmodel import IndexedEvent
from proofs.bundle import LAYOUT_ENVELOPE
from proofs.checks import CARGO_EVENT_TOPIC
from proofs.disclosure import disclosure

#: Most events one bundle proves (the node builds a bundle on its own loop and bounds it alike:
#: ``node.rpc.portledger.MAX_PROOF_LOGS``).
MAX_EVENTS = 100


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


def _owner_keys(app: web.Application, principal: Principal) -> OrgKeys:
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


def encode_bundle(bundle: dict[str, Any]) -> bytes:
    """A bundle as compact JSON bytes (as downloaded and as stored)."""
    return json.dumps(bundle, separators=(",", ":")).encode()
