"""The land leg's service: jobs over what the haulier may read, drivers' codes, tokens, gates.

:class:`LandService` (``app[LAND]``) ties the pure parts (:mod:`gateway.land.model`,
:mod:`gateway.land.token`) to the gateway:

- **reading** goes through the tracking service (``app[TRACKING]``: its visibility rule and
  decryption, its access log) — a job's containers come from the views the haulier may see, and
  a pick-up right from the events the haulier may read (with the container's documents: those
  its events name, the job's B/Ls and the links the alert engine learned);
- **writing** goes through the write path: the terminal's ``TERMINAL.GTOT`` and the warehouse's
  ``WAREHOUSE.RECEIPT`` pass the upload checks (:func:`gateway.intake.service.check_events`: the
  publisher's role, the readers, the sealed size) and wait in the outbox to be sealed, signed by
  the publisher's key and recorded. Each is two events per box: the **public step** (the box,
  time, place, facility: readable by the box number's holders, nobody named) and its
  **details** (:func:`job_detail`: job, vehicle, CCRN, token nonce, seals, condition), about the
  job's reference and named to the job's parties only — a reference number is no secret;
- **truck positions** are telemetry ``truck-position`` readings (``app[TELEMETRY]``) under the
  job's trip reference (``truck:<job id>``), mode ``reference``: whoever the land API lets read
  the job (a party, or someone entitled to one of its containers) asks by that reference;
- **the land key** (Ed25519) is the keystore secret ``land-key`` (its 32 bytes are the seed),
  encrypted at rest like the gateway's other secrets.

Who may read a job (:meth:`LandService.access`): the haulier (its members and API keys; its
drivers only the jobs assigned to them), the pick-up terminal and the delivery warehouse, and
anyone an owner let read something of one of its containers (published, named, granted) or the
haulier shares the job with (``Job.shared``, e.g. the consignee) — those see the job without its
driver, and only the containers they may see. A mere holder of a
box number sees no job: only the box's public custody steps (:meth:`LandService.public_custody`).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import errors
from gateway.accounts.model import HASHER, retry_after, verify_password
from gateway.alerts.facts import DOCUMENT_KINDS, Observed
from gateway.appkeys import ACCOUNTS, ALERTS, OUTBOX, TRACKING
from gateway.config import settings_from
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.feeds import epcis
from gateway.feeds.model import MessageError
from gateway.intake import service as intake
from gateway.intake.rules import envelope_problem, refuse
from gateway.isotime import iso_time
from gateway.land import token as tokens
from gateway.land.model import (
    CUSTODY_STEPS,
    MAX_CONTAINERS,
    STEP_ORDER,
    Driver,
    Job,
    Right,
    check_ccrn,
    pickup_right,
    seal_number,
)
from gateway.land.store import LandStore
from gateway.principal import Principal
from gateway.telemetry import service as telemetry
from gateway.telemetry.model import Reading
from gateway.tracking.service import Tracking
from gateway.tracking.visibility import VisibleEvent, key_of
from gateway.writepath.operations import Operation

#: The keystore secret whose 32 bytes are the land key's Ed25519 seed.
KEY_SECRET = "land-key"
#: A public custody step's visibility: any holder of the box number, nobody named (the named
#: readers' ids are in clear in the envelope, and would tell who hauls the box).
PUBLIC = Visibility("reference", ())
#: The tail of a custody detail's idempotency key (after its step's key).
DETAIL = ":detail"
#: The receiving event's fields a public receipt keeps (the EPCIS feed's mapping of it).
PUBLIC_RECEIPT_DETAILS = frozenset({"bizStep", "action", "disposition"})


@dataclass(frozen=True)
class LandSettings:
    """``config.extra["land"]``."""

    code_seconds: int = 900
    """A driver's sign-in code is valid this long."""
    code_attempts: int = 5
    """Failed sign-ins per phone number within ``lockout_seconds`` before it is throttled."""
    address_attempts: int = 30
    """Failed sign-ins per client address within ``lockout_seconds``."""
    lockout_seconds: int = 900


@dataclass
class LandService:
    """What ``app[LAND]`` holds."""

    app: web.Application
    store: LandStore
    key: Ed25519PrivateKey
    settings: LandSettings
    clock: Callable[[], float] = time.time

    @property
    def tracking(self) -> Tracking:
        return self.app[TRACKING]

    def now(self) -> int:
        return int(self.clock())

    # -- callers ----------------------------------------------------------------------------
    def haulier(self, request: web.Request, who: Principal) -> None:
        """403 unless ``who`` acts for a haulier (and is not one of its drivers)."""
        if who.role == "driver":
            raise errors.Forbidden("drivers see and share their jobs; the haulier's office "
                                   "plans them", code="driver-not-allowed")
        intake.require_role(request, who, "haulier", "plan land jobs")

    def driver_of(self, who: Principal) -> Driver | None:
        """The driver a driver's session belongs to."""
        if who.role != "driver" or who.user_id is None:
            return None
        return self.store.driver_of_user(who.user_id)

    def access(self, who: Principal, job: Job) -> str | None:
        """Why ``who`` may read ``job``: ``haulier``, ``driver``, ``terminal``, ``warehouse``,
        ``container``; or None."""
        if who.role == "driver":
            driver = self.driver_of(who)
            return "driver" if driver is not None and driver.id == job.driver_id else None
        if who.org_id == job.org_id:
            return "haulier"
        if who.chain_org is not None and who.chain_org == job.pickup.org:
            return "terminal"
        if who.chain_org is not None and who.chain_org == job.delivery.org:
            return "warehouse"
        if who.chain_org is not None and who.chain_org in job.shared:
            return "container"
        return "container" if self.visible_containers(who, job.containers,
                                                       by_reference=False) else None

    def job_for(self, who: Principal, job_id: str) -> tuple[Job, str]:
        """The job and why ``who`` may read it; 404 when it may not (or there is none), 403 for
        a driver asking for another driver's job of the same haulier."""
        job = self.store.job(job_id) if is_job_id(job_id) else None
        via = self.access(who, job) if job is not None else None
        if job is not None and via is None and who.role == "driver" and \
                who.org_id == job.org_id:
            raise errors.Forbidden(f"job {job_id} is assigned to another driver",
                                   code="not-your-job")
        if job is None or via is None:
            raise errors.NotFound(f"no job {job_id[:20]} you may see", code="unknown-job")
        return job, via

    def visible_containers(self, who: Principal, containers: Sequence[str], *,
                           by_reference: bool = True) -> list[str]:
        """Those of ``containers`` the tracking service shows ``who`` something of; without
        ``by_reference`` only something its owner let ``who`` read (published, named, granted),
        not what any holder of the box number reads (records readable by reference holders)."""
        if who.chain_org is None or who.role == "driver":
            return []
        reader = self.tracking.reader(who)
        out = []
        for number in containers:
            key = key_of(number)
            reader.held[key] = number
            if any(by_reference or v.readable_via != "reference"
                   for v in self.tracking.subject_events(reader, [key], "container")):
                out.append(number)
        return out

    # -- what a reader sees about containers ----------------------------------------------
    def seen(self, who: Principal, containers: Sequence[str],
             references: Sequence[Reference] = ()) -> tuple[list[VisibleEvent],
                                                            dict[str, list[Reference]]]:
        """The events ``who`` may read about ``containers`` and their documents (those their
        events name, ``references``, and the links the alert engine learned), and each
        container's documents."""
        self.tracking.sync()
        reader = self.tracking.reader(who)
        alerts = self.app.get(ALERTS)
        documents: dict[str, list[Reference]] = {}
        keys: dict[bytes, str] = {}
        for number in containers:
            reader.held[key_of(number)] = number
            keys[key_of(number)] = number
        own = self.tracking.subject_events(reader, list(keys))
        for number in containers:
            docs = [r for r in references if r.kind in DOCUMENT_KINDS]
            docs += [r for v in own if v.event.subject.value == number
                     for r in v.event.related if r.kind in DOCUMENT_KINDS]
            if alerts is not None:
                docs += [r for r in alerts.store.links_of(who.org_id,
                                                          Reference("container", number))
                         if r.kind in DOCUMENT_KINDS]
            documents[number] = list(dict.fromkeys(docs))
        extra = {key_of(r.value): r.value for docs in documents.values() for r in docs}
        for key, value in extra.items():
            reader.held.setdefault(key, value)
        more = self.tracking.subject_events(reader, [k for k in extra if k not in keys])
        unique = {v.event_id: v for v in (*own, *more)}
        return sorted(unique.values(), key=lambda v: v.event_id), documents

    def rights(self, who: Principal, containers: Sequence[str],
               references: Sequence[Reference] = ()) -> dict[str, Right]:
        """Each container's pick-up right as ``who`` may read it now."""
        shown, _ = self.seen(who, containers, references)
        live = [_observed(v) for v in shown if not v.retracted_by]
        retracted = [_observed(v) for v in shown if v.retracted_by]
        now = self.now()
        return {c: pickup_right(c, live, now, retracted=retracted) for c in containers}

    def haulier_view(self, job: Job) -> Principal:
        """The haulier reading (rights are the haulier's to hold)."""
        return self.app[ACCOUNTS].principal_for_org(job.org_id, ["tracking:read"])

    # -- jobs -------------------------------------------------------------------------------
    def containers_of(self, who: Principal, references: Sequence[Reference]) -> list[str]:
        """The containers of B/Ls and container numbers ``who`` may see (422 otherwise)."""
        found: list[str] = []
        for index, ref in enumerate(references):
            if ref.kind == "container":
                if not self.visible_containers(who, [ref.value]):
                    raise errors.Unprocessable(
                        f"container {ref.value}: nothing you may read names it",
                        code="unknown-container", details={"path": f"/references/{index}"})
                found.append(ref.value)
                continue
            view = self.tracking.shipment_of(who, ref.value)
            if view is None or view.get("kind") != ref.kind or not view.get("containers"):
                raise errors.Unprocessable(
                    f"{ref.kind} {ref.value}: no containers you may read under it",
                    code="unknown-reference", details={"path": f"/references/{index}"})
            found += [c["number"] for c in view["containers"]]
        return list(dict.fromkeys(found))

    def new_job(self, who: Principal, *, references: Sequence[Reference], **fields: Any) -> Job:
        """Create a job from ``references`` (module doc); the caller is the haulier."""
        containers = self.containers_of(who, references)
        if not containers:
            raise errors.Unprocessable("the references name no container", code="no-containers")
        chosen = fields.pop("containers", None)
        if chosen:
            missing = sorted(set(chosen) - set(containers))
            if missing:
                raise errors.Unprocessable(
                    f"{', '.join(missing)}: not under the references you gave",
                    code="container-not-in-references")
            containers = [c for c in containers if c in set(chosen)]
        if len(containers) > MAX_CONTAINERS:
            raise errors.Unprocessable(f"{len(containers)} containers: a job carries at most "
                                       f"{MAX_CONTAINERS}; choose them with 'containers'",
                                       code="too-many-containers")
        seals = fields.pop("seals", {})
        unknown = sorted(set(seals) - set(containers))
        if unknown:
            raise errors.Unprocessable(f"seals of {', '.join(unknown)}, which the job does not "
                                       "carry", code="seal-of-other-container")
        driver_id = fields.pop("driver_id", None)
        if driver_id is not None:
            self.own_driver(who, driver_id)
        assert who.chain_org is not None
        job = Job(id=new_job_id(), org_id=who.org_id, haulier=who.chain_org,
                  containers=tuple(containers), driver_id=driver_id,
                  seals={c: tuple(v) for c, v in seals.items()},
                  references=tuple(r for r in references if r.kind != "container"),
                  nonce=tokens.new_nonce(), created=self.now(), **fields)
        holder = self.store.add_job(job)
        if holder is not None:
            raise self._ccrn_elsewhere(job, holder)
        return job

    def _ccrn_elsewhere(self, job: Job, holder: str) -> errors.Conflict:
        """409 ``ccrn-bound-elsewhere``: ``job``'s CCRN is bound to ``holder``'s vehicle."""
        other = self.store.job(holder)
        vehicle = other.vehicle if other is not None else "another vehicle"
        return errors.Conflict(
            f"CCRN {job.ccrn} is bound to vehicle {vehicle} (job {holder}), not to "
            f"{job.vehicle}: a CCRN is bound to one vehicle", code="ccrn-bound-elsewhere",
            details={"job": holder, "vehicle": vehicle})

    def bind_ccrn(self, job_id: str, text: str) -> Job:
        """Bind a ROCARS CCRN to the job's vehicle (the declarations' answer): the job's CCRN
        is set and its token carries it. A planned job gets a new nonce, so the token issued
        before (without the CCRN) is revoked and the driver's QR is the new one; a picked-up
        job keeps its nonce (its token still opens the warehouse's door) and its token text
        carries the CCRN from now on. Refused: an unknown job (404), a delivered or cancelled
        one (409 ``job-<state>``), a CCRN bound to another vehicle (409
        ``ccrn-bound-elsewhere``, naming that job and vehicle)."""
        ccrn = check_ccrn(text)
        job = self.store.job(job_id) if is_job_id(job_id) else None
        if job is None:
            raise errors.NotFound(f"no job {job_id[:20]}", code="unknown-job")
        if job.state not in ("planned", "picked-up"):
            raise errors.Conflict(f"job {job.id} is {job.state}: no CCRN is bound to it now",
                                  code="job-" + job.state)
        if job.ccrn == ccrn:
            return job
        nonce = tokens.new_nonce() if job.state == "planned" else job.nonce
        holder = self.store.bind_ccrn(job, ccrn, nonce)
        if holder is not None:
            raise self._ccrn_elsewhere(replace(job, ccrn=ccrn), holder)
        bound = self.store.job(job.id)
        assert bound is not None
        return bound

    def own_driver(self, who: Principal, driver_id: int) -> Driver:
        driver = self.store.driver(driver_id)
        if driver is None or driver.org_id != who.org_id:
            raise errors.Unprocessable(f"driver {driver_id} is not one of yours",
                                       code="unknown-driver", details={"path": "/driver"})
        return driver

    def job_json(self, job: Job, via: str, who: Principal) -> dict[str, Any]:
        """A job as ``via`` may see it (readers by container: no driver, only their boxes)."""
        body = job.to_json()
        if via == "container":
            shown = set(self.visible_containers(who, job.containers))
            body["containers"] = [c for c in job.containers if c in shown]
            body["seals"] = {c: s for c, s in body["seals"].items() if c in shown}
            body["driver"] = None
            body["references"] = []
        else:
            driver = self.store.driver(job.driver_id) if job.driver_id is not None else None
            body["driver"] = driver.to_json() if driver is not None else None
        body["readableVia"] = via
        body["holders"] = {c: self.store.holder(c) == job.id for c in body["containers"]}
        return body

    # -- tokens -----------------------------------------------------------------------------
    def token_of(self, job: Job) -> tuple[str, tokens.Claims]:
        """The job's current token (its rights as the haulier reads them now)."""
        if job.state == "cancelled":
            raise errors.Conflict(f"job {job.id} was cancelled: {job.reason}",
                                  code="job-cancelled")
        rights = self.rights(self.haulier_view(job), job.containers, job.references)
        claims = tokens.Claims(
            job=job.id, containers=job.containers,
            rights={c: r.basis or "none" for c, r in rights.items()}, ccrn=job.ccrn,
            vehicle=job.vehicle, terminal=job.pickup.org, warehouse=job.delivery.org,
            not_before=job.window_from, expires=job.window_to, nonce=job.nonce,
            kid=tokens.key_id(self.key.public_key()))
        return tokens.sign(claims, self.key), claims

    def check_token(self, text: str, purpose: str | None, who: Principal) -> tuple[Job,
                                                                                  tokens.Claims]:
        """The job and claims of a token presented by ``who`` at a ``purpose`` gate
        (``gate-out``, ``receipt``; None: only checking), or the refusal with its reason."""
        public = self.key.public_key()
        try:
            claims = tokens.verify(text, public, self.now())
        except tokens.TokenError as exc:
            raise _refusal(exc.code, exc.message) from None
        job = self.store.job(claims.job)
        if job is None:
            raise _refusal("revoked", f"job {claims.job} is not known here")
        if job.state == "cancelled":
            raise _refusal("revoked", f"the haulier cancelled job {job.id}"
                           + (f": {job.reason}" if job.reason else ""))
        if job.nonce != claims.nonce:
            raise _refusal("revoked", f"a newer token of job {job.id} replaced this one")
        if purpose is not None:
            used = self.store.used(claims.nonce, purpose)
            if used is not None:
                raise _refusal("replayed", f"this token was already used for the {purpose} of "
                               f"job {job.id} at {iso_time(used[2])}")
        if purpose == "gate-out" and who.chain_org != claims.terminal:
            raise errors.Forbidden(f"job {job.id} picks up at another terminal (organisation "
                                   f"{claims.terminal})", code="job-addressed-elsewhere")
        if purpose == "receipt" and who.chain_org != claims.warehouse:
            raise errors.Forbidden(f"job {job.id} is addressed to another warehouse "
                                   f"(organisation {claims.warehouse})",
                                   code="job-addressed-elsewhere")
        return job, claims

    # -- gates ------------------------------------------------------------------------------
    async def gate_out(self, request: web.Request, who: Principal, text: str,
                       at: int | None = None) -> dict[str, Any]:
        """Verify the token at the terminal's gate, check each container's right against the
        chain now, record the terminal's ``TERMINAL.GTOT`` for each (write path)."""
        intake.require_role(request, who, "terminal", "record a gate-out")
        job, claims = self.check_token(text, "gate-out", who)
        if job.state != "planned":
            raise _refusal("replayed", f"job {job.id} was already {job.state}")
        for number in job.containers:
            holder = self.store.holder(number)
            if holder != job.id:
                raise errors.Conflict(
                    f"{number} is released to another job ({holder}); it cannot be gated out "
                    f"on job {job.id}", code="released-to-another-job",
                    details={"container": number, "job": holder})
        rights = self.rights(self.haulier_view(job), job.containers, job.references)
        bad = [r for r in rights.values() if not r.valid]
        if bad:
            revoked = [r for r in bad if r.code == "release-revoked"]
            first = (revoked or bad)[0]
            sentence = "; ".join(reason for r in bad for reason in r.reasons)
            if revoked:
                raise _refusal("revoked", sentence, {"rights": [r.to_json() for r in bad]})
            raise errors.Conflict(f"the pick-up right is not valid now: {sentence}",
                                  code="right-not-valid",
                                  details={"rights": [r.to_json() for r in bad],
                                           "first": first.code})
        when = at if at is not None else self.now()
        readers = _readers(who, job.haulier, job.delivery.org)
        facility = {"facilityCode": job.pickup.facility} if job.pickup.facility else {}
        items: list[tuple[str, CanonicalEvent]] = []
        keys = {}
        for number in job.containers:
            keys[number] = f"land:{job.id}:{claims.nonce}:gate-out:{number}"
            step = CanonicalEvent("TERMINAL.GTOT", "ACT", when, Reference("container", number),
                                  job.pickup.location, (), dict(facility), PUBLIC)
            items += [(keys[number], step), (keys[number] + DETAIL, job_detail(job, step, {
                "haulier": job.haulier, "ccrn": job.ccrn,
                "pickupRight": rights[number].basis, "tokenNonce": claims.nonce}, readers))]
        receipts = await self._write(request, who, items)
        if not self.store.record_gate_out(job.id, claims.nonce, who.chain_org or 0, when, keys):
            raise _refusal("replayed", f"this token was just used for the gate-out of job "
                           f"{job.id}")
        return {"job": job.id, "state": "picked-up", "time": iso_time(when),
                "containers": [{"container": n, "right": rights[n].to_json(),
                                "receipt": _receipt(step), "detail": _receipt(detail)}
                               for n, step, detail in zip(job.containers, receipts[::2],
                                                          receipts[1::2], strict=True)]}

    async def receive(self, request: web.Request, who: Principal, text: str,
                      found: dict[str, list[str]], condition: str,
                      at: int | None = None) -> dict[str, Any]:
        """Verify the token at the warehouse, record the receipt with the seals found (a
        mismatch is recorded as one) as an EPCIS 2.0 receiving event and the warehouse's
        ``WAREHOUSE.RECEIPT`` per container (write path)."""
        intake.require_role(request, who, "warehouse", "record a receipt")
        job, claims = self.check_token(text, "receipt", who)
        if job.state != "picked-up":
            raise errors.Conflict(
                f"job {job.id} is {job.state}: the terminal has not recorded its gate-out"
                if job.state == "planned" else f"job {job.id} is {job.state}",
                code="not-picked-up" if job.state == "planned" else "job-" + job.state)
        unknown = sorted(set(found) - set(job.containers))
        if unknown:
            raise errors.Unprocessable(f"seals of {', '.join(unknown)}, which job {job.id} does "
                                       "not carry", code="seal-of-other-container")
        when = at if at is not None else self.now()
        seals = [seal_check(n, job.seals.get(n, ()), found.get(n)) for n in job.containers]
        document = epcis_receiving(job, when, seals, condition)
        try:
            mapped = epcis.events_of(document["epcisBody"]["eventList"][0])
        except MessageError as exc:  # our own document: a bug, not a refusal
            raise errors.ApiError(f"the receiving event does not map: {exc}") from None
        readers = _readers(who, job.haulier, job.pickup.org)
        by_box = {s["container"]: s for s in seals}
        items: list[tuple[str, CanonicalEvent]] = []
        keys = {}
        for event in mapped:
            number = event.subject.value
            check = by_box[number]
            keys[number] = f"land:{job.id}:{claims.nonce}:receipt:{number}"
            public = {k: v for k, v in event.details.items() if k in PUBLIC_RECEIPT_DETAILS}
            step = replace(event, location=job.delivery.location, related=(), details=public,
                           visibility=PUBLIC)
            items += [(keys[number], step), (keys[number] + DETAIL, job_detail(job, step, {
                "epcisEventId": event.details.get("eventID"),
                "sealsExpected": check["expected"], "sealsFound": check["found"],
                "sealsMatch": check["match"], "condition": condition or None}, readers))]
        _check_condition_fits(items, condition)
        receipts = await self._write(request, who, items)
        body = {"seals": seals, "condition": condition, "epcis": document, "keys": keys}
        if not self.store.record_receipt(job.id, claims.nonce, who.chain_org or 0, when, body):
            raise _refusal("replayed", f"this token was just used for the receipt of job "
                           f"{job.id}")
        return {"job": job.id, "state": "delivered", "time": iso_time(when), "seals": seals,
                "mismatch": any(s["match"] is False for s in seals), "epcis": document,
                "receipts": [_receipt(r) for r in receipts]}

    async def _write(self, request: web.Request, who: Principal,
                     items: list[tuple[str, CanonicalEvent]]) -> list[Any]:
        """The upload checks, then the outbox (all or none). Each step's details travel in a
        transaction of their own: a bundle proving the public step carries its transaction,
        which must not hold the envelope naming the job's parties."""
        parsed: intake.Parsed = [(key, event) for key, event in items]
        problems = await intake.check_events(request, who, parsed)
        if problems:
            raise refuse(problems, len(parsed))
        ops = [Operation(idempotency_key=key, kind="event", event=event,
                         batch_limit=1 if key.endswith(DETAIL) else 0) for key, event in items]
        return await self.app[OUTBOX].accept_async(who.org_id, ops)

    # -- positions --------------------------------------------------------------------------
    async def positions(self, who: Principal, job: Job,
                        items: list[dict[str, Any]]) -> dict[str, Any]:
        """Store the positions in the job's window and before its delivery; the others are
        refused one by one with the reason."""
        if job.state == "cancelled":
            raise errors.Conflict(f"job {job.id} was cancelled", code="job-cancelled")
        delivered = self.store.receipt(job.id)
        end = min(job.window_to, delivered["at"]) if delivered is not None else job.window_to
        readings, refused = [], []
        for index, item in enumerate(items):
            when = item["_time"]
            if when < job.window_from:
                refused.append({"index": index, "code": "before-window", "reason":
                                f"taken at {iso_time(when)}, before the job's window opens at "
                                f"{iso_time(job.window_from)}"})
            elif delivered is not None and when > delivered["at"]:
                refused.append({"index": index, "code": "after-delivery", "reason":
                                f"taken at {iso_time(when)}, after the delivery at "
                                f"{iso_time(delivered['at'])}"})
            elif when > end:
                refused.append({"index": index, "code": "after-window", "reason":
                                f"taken at {iso_time(when)}, after the job's window closed at "
                                f"{iso_time(job.window_to)}"})
            elif when > self.now() + tokens.SKEW:
                refused.append({"index": index, "code": "in-the-future",
                                "reason": f"taken at {iso_time(when)}, which is in the future"})
            else:
                values = {k: v for k, v in item.items() if not k.startswith("_") and k != "time"}
                values.update(job=job.id, vehicle=job.vehicle)
                readings.append(Reading("truck-position", when, job.trip, values))
        stored, duplicates = await telemetry.ingest(
            self.app, job.org_id, readings,
            Visibility("reference", tuple(sorted({job.pickup.org, job.delivery.org}))))
        return {"accepted": stored, "duplicates": duplicates, "refused": refused}

    # -- custody ----------------------------------------------------------------------------
    def custody(self, who: Principal, job: Job, containers: Sequence[str]) -> list[dict[str, Any]]:
        """Per container: release → gate-out → (hand-overs) → receipt, each the public step of
        the party that did it as ``who`` may read it (on chain), or this job's record waiting in
        the publisher's outbox (shown to the job's readers); this job's steps carry their
        details (``details``, ``detailSigned``) when ``who`` may read the companion event (the
        job's parties, named in it)."""
        shown, _ = self.seen(who, containers, job.references)
        outbox = self.app[OUTBOX]
        out = []
        gate_outs = {g["container"]: g for g in self.store.gate_outs(job.id)}
        receipt = self.store.receipt(job.id)
        details = self.details_of(who, job)
        for number in containers:
            mine: dict[str, tuple[int, int]] = {}  # step -> (publisher, time) of this job's
            gate = gate_outs.get(number)
            if gate is not None:
                mine["gate-out"] = (gate["terminal"], gate["at"])
            if receipt is not None:
                mine["warehouse-receipt"] = (receipt["warehouse"], receipt["at"])
            steps = _public_steps(shown, number, job.references, job.id, mine)
            chained = {s["step"] for s in steps if s["job"] == job.id}
            if gate is not None and "gate-out" not in chained:
                status = outbox.status(self._org_of(gate["terminal"]), gate["op_key"])
                steps.append(_pending("gate-out", gate["at"], gate["terminal"], job,
                                      status, self.tracking.publisher_name(gate["terminal"])))
            if receipt is not None and "warehouse-receipt" not in chained:
                key = receipt.get("keys", {}).get(number)
                status = outbox.status(self._org_of(receipt["warehouse"]), key) if key else None
                steps.append(_pending("warehouse-receipt", receipt["at"], receipt["warehouse"],
                                      job, status,
                                      self.tracking.publisher_name(receipt["warehouse"])))
            for s in steps:  # the details of this job's step, by the step's own publisher
                detail = details.get((s["step"], number)) if s["job"] == job.id else None
                if detail is not None and detail.publisher == s["party"]["id"]:
                    s["details"], s["detailSigned"] = _detail_json(detail.event), _signed(detail)
            steps.sort(key=lambda s: (s["time"], STEP_ORDER.index(s["step"])))
            out.append({"container": number, "steps": steps})
        return out

    def job_of_gate_out(self, number: str, terminal: int, at: int) -> Job | None:
        """The job whose gate-out of ``number`` ``terminal`` recorded at ``at`` (the public
        step names no job; ``land.db`` knows which it was)."""
        for job in self.store.jobs(container=number):
            if any(g["container"] == number and g["terminal"] == terminal and g["at"] == at
                   for g in self.store.gate_outs(job.id)):
                return job
        return None

    def public_custody(self, who: Principal, number: str) -> list[dict[str, Any]]:
        """A container's custody steps as a holder of its number reads them, tied to no job:
        the public steps (who, what, where, when, signed), never a job's details."""
        shown, _ = self.seen(who, [number])
        steps = _public_steps(shown, number, (), None, {})
        steps.sort(key=lambda s: (s["time"], STEP_ORDER.index(s["step"])))
        return steps

    def details_of(self, who: Principal, job: Job) -> dict[tuple[str, str], VisibleEvent]:
        """The job's custody details ``who`` may read (it is named in them), by (step,
        container); the latest of each, retracted ones left out."""
        if who.chain_org is None or who.role == "driver":
            return {}
        reader = self.tracking.reader(who)
        found: dict[tuple[str, str], VisibleEvent] = {}
        for v in self.tracking.subject_events(reader, [job.reference.key], job.reference.kind):
            e = v.event
            step = CUSTODY_STEPS.get(e.event_type)
            number = e.details.get("container")
            if (step is None or v.retracted_by or e.retracts or e.classifier != "ACT"
                    or e.subject != job.reference or not isinstance(number, str)):
                continue
            found[(step, number)] = v
        return found

    def _org_of(self, chain_org: int) -> int:
        """The gateway organisation of a chain member hosted here (0 if none)."""
        for org in self.app[ACCOUNTS].organisations():
            if org.chain_org == chain_org:
                return org.id
        return 0

    # -- drivers ----------------------------------------------------------------------------
    async def sign_in(self, phone: str, code: str, address: str) -> Driver:
        """The driver whose live code this is (the code is then used), else 401; throttled
        per phone number and per client address (429 with ``Retry-After``)."""
        settings = self.settings
        now = self.clock()
        since = now - settings.lockout_seconds
        waits = [w for w in (
            retry_after(self.store.failures("phone", phone, since), settings.code_attempts,
                        settings.lockout_seconds, now),
            retry_after(self.store.failures("address", address, since),
                        settings.address_attempts, settings.lockout_seconds, now),
        ) if w is not None]
        if waits:
            seconds = max(1, math.ceil(max(waits)))
            raise errors.TooManyRequests(f"too many wrong codes; try again in {seconds} s",
                                         code="code-throttled",
                                         headers={"Retry-After": str(seconds)})
        live = self.store.live_codes(phone)
        if not live:  # an unknown phone or no live code costs the same time as a wrong code
            await asyncio.to_thread(verify_password, None, code)
        for driver, code_hash in live:
            if await asyncio.to_thread(verify_password, code_hash, code) and \
                    self.store.use_code(driver.id, code_hash):
                return driver
        self.store.record_failure(phone, address, settings.lockout_seconds)
        raise errors.Unauthorized("wrong, used or expired code: ask your office for a new one",
                                  code="bad-code")

    async def issue_code(self, driver: Driver) -> tuple[str, int]:
        """A new one-time sign-in code of 8 digits (replacing the last), and its expiry."""
        code = f"{secrets.randbelow(10 ** 8):08d}"
        expires = self.now() + self.settings.code_seconds
        self.store.set_code(driver.id, await asyncio.to_thread(HASHER.hash, code), expires)
        return code, expires


def is_job_id(text: str) -> bool:
    """``LJ`` and 12 upper-case hex digits."""
    return len(text) == 14 and text.startswith("LJ") and all(
        ch in "0123456789ABCDEF" for ch in text[2:])


def new_job_id() -> str:
    """``LJ`` and 12 random hex digits."""
    return "LJ" + secrets.token_hex(6).upper()


def _observed(v: VisibleEvent) -> Observed:
    """A visible event as the alert facts take it (receive order = event id)."""
    return Observed(v.event, v.event_id, v.publisher_name, str(v.event_id), v.block_time)


def _concerns(e: CanonicalEvent, step: str, number: str,
              references: Sequence[Reference]) -> bool:
    """The event is about the container, or is a release of a B/L it travels under."""
    if e.subject.kind == "container":
        return e.subject.value == number
    return step == "carrier-release" and e.subject.kind in DOCUMENT_KINDS and (
        any(r.value == number for r in e.related) or e.subject in references)


def _signed(v: VisibleEvent) -> dict[str, Any]:
    return {"eventId": v.event_id, "block": v.block, "txHash": "0x" + v.tx_hash.hex(),
            "recordedAt": iso_time(v.block_time)}


def _public_steps(shown: Sequence[VisibleEvent], number: str, references: Sequence[Reference],
                  job_id: str | None, mine: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """The custody steps on chain about ``number`` among ``shown``; a step is the job's
    (``job`` set) when its publisher and time are those ``mine`` recorded for the step."""
    steps = []
    for v in shown:
        e = v.event
        step = CUSTODY_STEPS.get(e.event_type)
        if step is None or v.retracted_by or e.classifier != "ACT" or e.retracts:
            continue
        if not _concerns(e, step, number, references):
            continue
        ours = mine.get(step) == (v.publisher, e.event_time)
        steps.append({"step": step, "time": iso_time(e.event_time),
                      "party": {"id": v.publisher, "name": v.publisher_name},
                      "location": e.location or None, "job": job_id if ours else None,
                      "status": "on-chain", "signed": _signed(v),
                      "subject": e.subject.to_json(), "details": None, "detailSigned": None})
    return steps


def _detail_json(e: CanonicalEvent) -> dict[str, Any]:
    """A custody detail's fields (without the step and container it is joined by)."""
    return {k: v for k, v in e.details.items() if k not in ("step", "container")}


def job_detail(job: Job, step: CanonicalEvent, extra: dict[str, Any],
               readers: tuple[int, ...]) -> CanonicalEvent:
    """The companion of a public custody ``step``: the same type, classifier, time and place,
    about the job's reference (:attr:`Job.reference`), naming the step and the container, with
    the job's particulars, readable only by the job's parties named in ``readers``."""
    return CanonicalEvent(
        step.event_type, step.classifier, step.event_time, job.reference, step.location,
        job.references,
        {"step": CUSTODY_STEPS[step.event_type], "container": step.subject.value,
         "job": job.id, "vehicle": job.vehicle, **step.details, **extra},
        Visibility("named", readers))


def _check_condition_fits(items: list[tuple[str, CanonicalEvent]], condition: str) -> None:
    """Refuse a condition too long for its receipt's details to seal into one record (about
    800 bytes with one seal a box, less with more: the record carries 1,024 bytes sealed, the
    body compressed), telling how many of its characters would fit — before anything is
    written, and never cut: the details keep the note whole."""
    details = [e for key, e in items if key.endswith(DETAIL)]
    if not condition or all(envelope_problem(e) is None for e in details):
        return

    def fits(n: int) -> bool:
        return all(envelope_problem(replace(e, details={**e.details, "condition": condition[:n]}))
                   is None for e in details)

    low, high = 0, len(condition)  # fits(low), not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    raise errors.Unprocessable(
        f"the condition ({len(condition)} characters, {len(condition.encode())} bytes of UTF-8) "
        f"does not fit the receipt's sealed record with these seals: at most the first {low} "
        "characters of it would; shorten it", code="condition-too-long",
        details={"fits": low})


def _readers(who: Principal, *orgs: int) -> tuple[int, ...]:
    return tuple(sorted({o for o in orgs if o and o != who.chain_org}))


def _receipt(r: Any) -> dict[str, Any]:
    return {"opId": r.op_id, "idempotencyKey": r.idempotency_key, "status": r.status}


def _pending(step: str, at: int, org: int, job: Job, status: Any, name: str) -> dict[str, Any]:
    return {"step": step, "time": iso_time(at), "party": {"id": org, "name": name},
            "location": (job.pickup if step == "gate-out" else job.delivery).location or None,
            "job": job.id, "status": status.status if status is not None else "unknown",
            "signed": None, "subject": None, "details": None, "detailSigned": None}


_REFUSAL_STATUS = {"malformed": 400, "forged": 403, "expired": 403, "not-yet-valid": 403,
                   "replayed": 409, "revoked": 409}


def _refusal(code: str, message: str, details: dict[str, Any] | None = None) -> errors.ApiError:
    """A token refusal as an HTTP error: ``token-<code>``."""
    status = _REFUSAL_STATUS.get(code, 409)
    cls: type[errors.ApiError] = {400: errors.BadRequest, 403: errors.Forbidden}.get(
        status, errors.Conflict)
    return cls(message, code=f"token-{code}", details=details)


def seal_check(container: str, expected: Sequence[str], found: Sequence[str] | None,
               ) -> dict[str, Any]:
    """Seals expected and found on a container; ``match`` None when nothing was expected or
    nothing was reported."""
    norm = sorted({seal_number(s) for s in found or () if s.strip()})
    match = None if not expected or found is None else sorted(expected) == norm
    return {"container": container, "expected": sorted(expected),
            "found": norm if found is not None else None, "match": match}


def epcis_receiving(job: Job, at: int, seals: Sequence[dict[str, Any]],
                    condition: str) -> dict[str, Any]:
    """The receipt as a GS1 EPCIS 2.0 document: one ``ObjectEvent``, ``bizStep`` receiving,
    the containers as ``urn:epc:id:bic:`` EPCs, the B/Ls as ``bol`` business transactions, the
    seals and condition in the ``pl:`` extension (the same mapping the EPCIS feed reads)."""
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{_uuid_of(job.id, at)}",
        "eventTime": iso_time(at), "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:bic:{c}" for c in job.containers],
        "action": "OBSERVE",
        "bizStep": "https://ref.gs1.org/cbv/BizStep-receiving",
        "disposition": "https://ref.gs1.org/cbv/Disp-in_progress",
        "pl:job": job.id, "pl:vehicle": job.vehicle,
        "pl:seals": list(seals), "pl:condition": condition,
    }
    bills = [r for r in job.references if r.kind in ("mbl", "hbl")]
    if bills:
        event["bizTransactionList"] = [{"type": "https://ref.gs1.org/cbv/BTT-bol",
                                        "bizTransaction": f"urn:portledger:{r.kind}:{r.value}"}
                                       for r in bills]
    return {"@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld",
                         {"pl": "urn:portledger:land:"}],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": iso_time(at),
            "epcisBody": {"eventList": [event]}}


def _uuid_of(job_id: str, at: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:portledger:land:{job_id}:receipt:{at}"))


def settings_of(raw: Any) -> LandSettings:
    """The land settings of ``config.extra["land"]``."""
    return settings_from(LandSettings, raw, 'extra["land"]')


