"""The declarations service: the shipment record from tracking, who may read a declaration,
drafts of a stored shipment, and the submission worker that lodges, polls and records results.

The shipment record
-------------------
:func:`record_from_view` turns the tracking view of the transport document (what the declarant
may see — :meth:`gateway.tracking.service.Tracking.shipment_of`, never around visibility) into
a :class:`~gateway.declarations.model.ShipmentRecord`, each fact naming the event it came from.
Named readers and the authority read the declarant's declaration: its record is built from the
declarant's own view, which the declarant chose to share with them.

Who reads a declaration
-----------------------
The declarant (the uploading organisation), the organisations it names (``readers``: its
forwarder or broker) and, once a declaration was submitted to it, the customs organisation of
that authority (settings ``hk_authority_org``, ``cn_authority_org``). Nobody else: another
organisation gets 404, as if it did not exist.

The worker
----------
Submissions wait in ``declarations.db`` (the outbox). :meth:`DeclarationService.work` takes the
due ones: a ``pending`` one is lodged (the authority's answer is idempotent by submission id, so
a lodging interrupted by a crash or a time-out is simply repeated), an open one is polled. A
retryable failure (time-out, garbage, 5xx) backs off exponentially and is shown as
``lastError``; a ``pending`` one that fails ``max_attempts`` times becomes ``failed``. A new
status is recorded in the history, and a released, queried or rejected status becomes customs
events (:func:`customs_message`, through :mod:`gateway.feeds.customs`) published by the
authority's organisation through the write path, readable by the declarant and its named
readers. They name the declaration by its keyed alias (:func:`.onchain.alias`), never by its
number (a subject key is in clear on chain): tracking by the declaration number finds them
through the same hook as the filing, for the declaration's readers only. A declarant the contract takes
filings from also files the declaration in ``Declarations.vy`` under its keyed chain key (never
the number's plain hash) and the authority's organisation posts its statuses there
(:mod:`~gateway.declarations.onchain`); tracking finds that filing and the customs events
through :meth:`DeclarationService.declaration_key`, for the declaration's readers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway import errors
from gateway.accounts.store import Accounts
from gateway.declarations import onchain
from gateway.declarations.connectors import FINAL, Connector, ConnectorError
from gateway.declarations.drafts import DraftSet, build_drafts, corrections_of
from gateway.declarations.hs import Nomenclature
from gateway.declarations.model import (
    DeclarationSettings,
    GoodsLine,
    Party,
    RoadCrossing,
    ShipmentRecord,
    Sourced,
)
from gateway.declarations.store import DeclarationStore, Shipment, Submission
from gateway.events.model import CanonicalEvent, EventError, Visibility, parse_time
from gateway.feeds import customs
from gateway.feeds.model import MessageError
from gateway.isotime import iso_time
from gateway.land.model import Job, LandError
from gateway.land.service import LandService
from gateway.principal import Principal
from gateway.tracking.service import DeclarationRef, Tracking
from gateway.tracking.visibility import key_of
from gateway.writepath.operations import Operation
from gateway.writepath.outbox import Outbox

log = logging.getLogger("portledger.gateway.declarations")

#: Authority status → customs feed status (``accepted`` and ``received`` are not events).
CUSTOMS_STATUS = {"released": "RELEASED", "queried": "HELD", "rejected": "REFUSED"}
#: Kinds of transport document a declaration is made for.
DOCUMENT_KINDS = ("mbl", "hbl", "awb", "truck")


def _iso_to_unix(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_time(text)
    except EventError:
        return None


def record_from_view(view: dict[str, Any], *, direction: str, bills: Sequence[str],
                     declarant: Party | None, consignor: Party | None,
                     consignee: Party | None, road: bool) -> ShipmentRecord:
    """The shipment record of a tracking view (module doc); pure."""
    kind = str(view.get("kind"))
    reference = str(view.get("reference"))
    where = f"tracking:{kind} {reference}"
    mode = Sourced("road" if road or kind == "truck" else "air" if kind == "awb" else "sea",
                   "input:crossing" if road else f"{where} (document kind)")
    vessel = voyage = pol = pod = arrival = departure = None
    if isinstance(view.get("vessel"), dict) and view["vessel"].get("name"):
        vessel = Sourced({"name": view["vessel"]["name"], "imo": view["vessel"].get("imo")},
                         f"{where}: vessel")
    for entry in view.get("timeline", []):
        if not isinstance(entry, dict) or entry.get("retracted"):
            continue
        source = (f"tracking:{entry.get('type')} event {entry.get('eventId')} by "
                  f"{entry.get('publisherName')}")
        details = entry.get("details") or {}
        if entry.get("type") == "SHIPMENT.ISSU":
            info = details.get("vessel")
            if isinstance(info, dict) and info.get("name") and vessel is None:
                vessel = Sourced({"name": info["name"], "imo": info.get("imo")}, source)
            if details.get("voyage"):
                voyage = Sourced(details["voyage"], source)
            if details.get("pol"):
                pol = Sourced(details["pol"], source)
            if details.get("pod"):
                pod = Sourced(details["pod"], source)
            if isinstance(details.get("eta"), int) and arrival is None:
                arrival = Sourced(details["eta"], f"{source} (estimated arrival)")
            if isinstance(details.get("etd"), int) and departure is None:
                departure = Sourced(details["etd"], f"{source} (estimated departure)")
        moment = _iso_to_unix(entry.get("time"))
        location = str(entry.get("location") or "")
        # the declaration is Hong Kong's: only a move in Hong Kong starts its 14 days
        if moment is None or entry.get("classifier") != "ACT" or (
                location and not location.startswith("HK")):
            continue
        if entry.get("type") in ("TRANSPORT.ARRI", "TERMINAL.DISC") and (
                arrival is None or "estimated" in arrival.source):
            arrival = Sourced(moment, source)
        if entry.get("type") in ("TRANSPORT.DEPA", "TERMINAL.LOAD") and (
                departure is None or "estimated" in departure.source):
            departure = Sourced(moment, source)
    containers = [c.get("number") for c in view.get("containers", []) if isinstance(c, dict)]
    return ShipmentRecord(
        reference=reference, kind=kind, direction="import" if direction == "import" else
        "export", bills=tuple(bills) or (reference,), mode=mode, vessel=vessel, voyage=voyage,
        port_of_loading=pol, port_of_discharge=pod, arrival=arrival, departure=departure,
        containers=Sourced(tuple(c for c in containers if c), where) if containers else None,
        carrier=Sourced(view["carrier"]["name"], where)
        if isinstance(view.get("carrier"), dict) else None,
        declarant=declarant, consignor=consignor, consignee=consignee)


def record_from_job(job: Job, *, direction: str, names: Mapping[int, str],
                    documents: Sequence[str], declarant: Party | None,
                    consignor: Party | None, consignee: Party | None) -> ShipmentRecord:
    """The shipment record of a truck job (pure): the job's containers, vehicle, expected
    crossing (its window's start), pick-up and delivery places; ``documents`` are the B/Ls its
    containers travel under as the declarant may read them (the containers' shipment
    records). The consignee, when the upload names none, is the job's delivery warehouse
    (``names``: chain member id → name). The job's CCRN is not part of the record: binding it
    must not change the submitted document (nor withdraw its approval)."""
    where = f"land:job {job.id}"
    crossing = Sourced(job.window_from, f"{where}: window start (expected crossing)")

    def place(org: int, facility: str, location: str) -> str:
        return ", ".join(p for p in (names.get(org, f"member {org}"), facility, location) if p)

    if consignee is None or not consignee.name:
        consignee = Party(names.get(job.delivery.org, f"member {job.delivery.org}"),
                          job.delivery.facility, "", "", f"{where}: delivery warehouse")
    return ShipmentRecord(
        reference=job.id, kind="truck",
        direction="import" if direction == "import" else "export",
        bills=(job.id, *[d for d in documents if d != job.id]),
        mode=Sourced("road", f"{where} (a truck job)"),
        vessel=Sourced({"name": job.vehicle}, f"{where}: vehicle"),
        port_of_loading=Sourced(job.pickup.location, f"{where}: pick-up")
        if job.pickup.location else None,
        port_of_discharge=Sourced(job.delivery.location, f"{where}: delivery")
        if job.delivery.location else None,
        arrival=crossing if direction == "import" else None,
        departure=crossing if direction != "import" else None,
        containers=Sourced(tuple(job.containers), f"{where}: containers"),
        carrier=Sourced(names.get(job.haulier, f"member {job.haulier}"), f"{where}: haulier"),
        declarant=declarant, consignor=consignor, consignee=consignee,
        vehicle=Sourced(job.vehicle, f"{where}: vehicle"), crossing=crossing,
        pickup=Sourced(place(job.pickup.org, job.pickup.facility, job.pickup.location),
                       f"{where}: pick-up terminal"),
        delivery=Sourced(place(job.delivery.org, job.delivery.facility, job.delivery.location),
                         f"{where}: delivery warehouse"))


def customs_message(sub: Submission, bills: Sequence[tuple[str, str]],
                    containers: Sequence[str], at: int) -> dict[str, Any] | None:
    """The customs status message (``gateway.feeds.customs``) of a submission's status."""
    status = CUSTOMS_STATUS.get(sub.status)
    if status is None or sub.number is None:
        return None
    message: dict[str, Any] = {"declarationNumber": sub.number, "status": status,
                               "time": iso_time(at), "messageId": f"decl-{sub.id}-{sub.status}"}
    for kind, number in [b for b in bills if b[0] != "truck"][:1]:  # a job is no B/L
        message["billOfLading" if kind != "hbl" else "houseBillOfLading"] = number
    if containers:
        message["containers"] = list(containers)[:customs.MAX_CONTAINERS]
    if sub.reasons:
        message["reason"] = "; ".join(sub.reasons)[:512]
    message["office"] = {"hk-tdec": "HK C&ED (TDEC)", "hk-rocars": "HK C&ED (ROCARS)",
                         "cn-itsw": "China Customs (ITSW)"}[sub.authority]
    return message


@dataclass
class DeclarationService:
    """What ``app[DECLARATIONS]`` holds (module doc)."""

    store: DeclarationStore
    settings: DeclarationSettings
    accounts: Accounts | None
    """The directory (None: a worker without one, e.g. the bench)."""
    tracking: Tracking | None
    nomenclature: Nomenclature
    connectors: dict[str, Connector]
    outbox: Outbox | None = None
    land: LandService | None = None
    """The land leg (truck jobs: their record, the CCRN binding); None: no truck jobs."""
    clock: Callable[[], float] = time.time
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    # -- reading ----------------------------------------------------------------------------
    def authorities_of(self, org_id: int) -> set[str]:
        """The authorities (``hk-tdec``, ``hk-rocars``, ``cn-itsw``) ``org_id`` acts for."""
        found: set[str] = set()
        if org_id == self.settings.hk_authority_org:
            found |= {"hk-tdec", "hk-rocars"}
        if org_id == self.settings.cn_authority_org:
            found.add("cn-itsw")
        return found

    def may_read(self, principal: Principal, shipment: Shipment) -> bool:
        """The declarant, its named readers, and an authority once something was submitted
        to it."""
        if principal.org_id == shipment.org_id or principal.org_id in shipment.readers:
            return True
        mine = self.authorities_of(principal.org_id)
        return bool(mine) and any(s.authority in mine
                                  for s in self.store.submissions_of(shipment.id))

    def forget_views(self, shipment: Shipment) -> None:
        """Its readers changed: every process's tracking drops the views of its filings (by
        the official number, the alias and the chain key), which the removed readers' cache
        would still serve — the read model's change journal carries the news."""
        subjects: list[bytes] = []
        for sub in self.store.submissions_of(shipment.id):
            key, alias = self.chain_key_of(sub), self.alias_of(sub)
            if sub.number is not None and key is not None and alias is not None:
                subjects += [key_of(sub.number), key_of(alias), key]
        if subjects and self.tracking is not None:
            self.tracking.model.touch(subjects)

    def chain_key_of(self, sub: Submission) -> bytes | None:
        """The submission's key in ``Declarations.vy`` (:func:`.onchain.chain_key` of its
        shipment's salt, authority and official number); None before it has a number."""
        shipment = self.store.shipment(sub.shipment_id)
        if shipment is None or sub.number is None:
            return None
        return onchain.chain_key(self.store.salt(shipment), sub.authority, sub.number)

    def alias_of(self, sub: Submission) -> str | None:
        """The ``declaration`` reference the submission's customs events name instead of its
        official number (:func:`.onchain.alias`); None before it has a number."""
        shipment = self.store.shipment(sub.shipment_id)
        if shipment is None or sub.number is None:
            return None
        return onchain.alias(self.store.salt(shipment), sub.authority, sub.number)

    def declaration_key(self, principal: Principal, number: str) -> DeclarationRef | None:
        """The chain key and the alias of the declaration numbered ``number`` if ``principal``
        may read it, else None — for a stranger exactly as for a number nobody declared here
        (the tracking hook, :data:`gateway.appkeys.DECLARATION_KEYS`)."""
        sub = self.store.by_number(number)
        if sub is None:
            return None
        shipment = self.store.shipment(sub.shipment_id)
        if shipment is None or not self.may_read(principal, shipment):
            return None
        key, alias = self.chain_key_of(sub), self.alias_of(sub)
        return None if key is None or alias is None else DeclarationRef(key, alias)

    def party(self, raw: Any, where: str) -> Party | None:
        """A party of the upload: ``{"organisation": id}`` (directory) or name and address."""
        if not isinstance(raw, dict):
            return None
        if "organisation" in raw:
            if self.accounts is None:
                return None
            org = self.accounts.organisation(int(raw["organisation"]))
            details = org.details or {}
            reg = str(details.get("registrationNumber", ""))
            uscc = str(details.get("uscc") or (reg if len(reg) == 18 else "")).upper()
            return Party(org.name, str(details.get("address", "")),
                         str(details.get("country", "")).upper(), uscc,
                         f"directory:organisation {org.id}")
        return Party.from_json(raw, f"upload:{where}")

    def job_of(self, shipment: Shipment) -> Job | None:
        """A truck job's declaration: the job, while its declarant is still its haulier."""
        if shipment.body["options"].get("kind") != "truck" or self.land is None:
            return None
        job = self.land.store.job(shipment.reference)
        return job if job is not None and job.org_id == shipment.org_id else None

    def record_of(self, shipment: Shipment) -> ShipmentRecord | None:
        """The record of a stored shipment from its declarant's tracking view, or of a truck
        job from the job (None if the declarant sees nothing of it now)."""
        options = shipment.body["options"]
        if options.get("kind") == "truck":
            return self._job_record(shipment)
        view = None
        if self.tracking is not None and self.accounts is not None:
            owner = self.accounts.principal_for_org(shipment.org_id, ["tracking:read"])
            if owner.chain_org is not None:
                view = self.tracking.shipment_of(owner, shipment.reference)
        if view is None:
            return None
        return record_from_view(
            view, direction=options["direction"], bills=options.get("bills") or (),
            declarant=self.party({"organisation": shipment.org_id}, "declarant"),
            consignor=self.party(options.get("consignor"), "consignor"),
            consignee=self.party(options.get("consignee"), "consignee"),
            road=options.get("crossing") is not None)

    def _job_record(self, shipment: Shipment) -> ShipmentRecord | None:
        job = self.job_of(shipment)
        if job is None or self.land is None or self.accounts is None:
            return None
        options = shipment.body["options"]
        tracking = self.land.tracking
        names = {org: tracking.publisher_name(org)
                 for org in (job.haulier, job.pickup.org, job.delivery.org)}
        owner = self.accounts.principal_for_org(shipment.org_id, ["tracking:read"])
        documents = [r.value for r in job.references
                     if owner.chain_org is not None
                     and tracking.shipment_of(owner, r.value) is not None]
        return record_from_job(
            job, direction=options["direction"], names=names, documents=documents,
            declarant=self.party({"organisation": shipment.org_id}, "declarant"),
            consignor=self.party(options.get("consignor"), "consignor"),
            consignee=self.party(options.get("consignee"), "consignee"))

    def drafts_of(self, shipment: Shipment, record: ShipmentRecord) -> DraftSet:
        """The shipment's drafts now, corrections applied, checked."""
        options = shipment.body["options"]
        crossing = options.get("crossing")
        return build_drafts(
            record, [GoodsLine.from_json(g) for g in shipment.body["lines"]], self.settings,
            self.nomenclature, now=int(self.clock()), authorities=options["authorities"],
            crossing=RoadCrossing(crossing["vehicle"], int(crossing["time"]),
                                  crossing.get("controlPoint", "")) if crossing else None,
            exempt=bool(options.get("exempt")),
            corrections=corrections_of(self.store.corrections(shipment)))

    # -- the worker -------------------------------------------------------------------------
    def _backoff(self, attempts: int) -> float:
        delay = float(self.settings.retry_base_seconds) * 2.0 ** max(0, attempts - 1)
        return min(float(self.settings.retry_max_seconds), delay)

    async def work(self) -> int:
        """One pass over the due submissions; how many were handled."""
        due = self.store.due(self.clock())
        for sub in due:
            await self._advance(sub)
        for sub in self.store.unrecorded(tuple(CUSTOMS_STATUS)):
            await self._record_event(sub)
        for sub, state, posted in self.store.chain_due():
            await self._chain(sub, state, posted)
        for sub in self.store.unbound():
            self.bind(sub)
        return len(due)

    def bind(self, sub: Submission) -> None:
        """Bind a ROCARS submission's CCRN to its truck job's vehicle (through the land leg:
        the job's CCRN is set, its token carries it) and record the outcome: ``bound``,
        ``refused`` with the reason (a CCRN bound to another vehicle, a job delivered or
        cancelled), or ``no-job`` (a declaration with the vehicle as input)."""
        shipment = self.store.shipment(sub.shipment_id)
        if sub.number is None or shipment is None:
            return
        if shipment.body["options"].get("kind") != "truck":
            self.store.set_binding(sub.id, "", sub.number, "no-job", "")
            return
        if self.land is None:
            self.store.set_binding(sub.id, shipment.reference, sub.number, "refused",
                                   "this gateway has no land leg")
            return
        try:
            job = self.land.bind_ccrn(shipment.reference, sub.number)
        except (errors.ApiError, LandError) as exc:
            reason = exc.message
            log.warning("declaration %s: CCRN %s not bound: %s", sub.id, sub.number, reason)
            self.store.set_binding(sub.id, shipment.reference, sub.number, "refused",
                                   reason[:500])
            return
        self.store.set_binding(sub.id, job.id, sub.number, "bound", "", vehicle=job.vehicle)

    async def _chain(self, sub: Submission, state: str | None, posted: list[str]) -> None:
        """File the declaration on chain and post its statuses (:mod:`.onchain`)."""
        authority = (self.settings.cn_authority_org if sub.authority == "cn-itsw"
                     else self.settings.hk_authority_org)
        if self.outbox is None or self.accounts is None or authority is None \
                or sub.number is None:
            self.store.set_chain(sub.id, "off", posted)
            return
        if state is None:
            declarant = self.accounts.organisation(sub.org_id)
            if declarant.chain_org is None or not set(declarant.roles) & set(
                    onchain.DECLARANT_ROLES):
                self.store.set_chain(sub.id, "off", posted)  # (module doc of onchain)
                return
            key = self.chain_key_of(sub)
            if key is None:
                self.store.set_chain(sub.id, "off", posted)
                return
            await self.outbox.accept_async(sub.org_id, [onchain.file_operation(
                sub.id, sub.authority, sub.number, key, sub.document)])
            self.store.set_chain(sub.id, "filed", posted)
            return
        receipt = self.outbox.status(sub.org_id, onchain.file_key(sub.id))
        if receipt is None or receipt.status == "failed":
            log.warning("declaration %s: filing on chain failed: %s", sub.id,
                        receipt.error if receipt else "not in the outbox")
            self.store.set_chain(sub.id, "failed", posted)
            return
        if receipt.status != "final":
            return  # the contract refuses a status before the filing is final
        statuses = [h["status"] for h in self.store.history(sub.id)
                    if h["status"] in onchain.STATUS_CODES and h["status"] not in posted]
        key = self.chain_key_of(sub)
        if statuses and key is not None:
            await self.outbox.accept_async(authority, onchain.status_operations(
                sub.id, sub.number, key, statuses, sub.reasons))
            posted = [*posted, *statuses]
        self.store.set_chain(sub.id, "done" if sub.status in FINAL else "filed", posted)

    async def _advance(self, sub: Submission) -> None:
        connector = self.connectors.get(sub.authority)
        now = self.clock()
        if connector is None:
            self.store.update(sub, status=sub.status, number=sub.number, reasons=sub.reasons,
                              next_at=now + self.settings.retry_max_seconds,
                              attempts=sub.attempts, last_error="no connector configured "
                              f"for {sub.authority}")
            return
        try:
            if sub.status == "pending":
                answer = await connector.submit(sub.id, sub.document)
            else:
                answer = await connector.status(sub.id)
        except ConnectorError as exc:
            attempts = sub.attempts + 1
            lodging = sub.status == "pending"
            give_up = not exc.retryable or (lodging and attempts >= self.settings.max_attempts)
            self.store.update(sub, status="failed" if give_up and lodging else sub.status,
                              number=sub.number, reasons=sub.reasons,
                              next_at=now + self._backoff(attempts), attempts=attempts,
                              last_error=str(exc)[:500],
                              note=f"gave up after {attempts} attempts: {exc}"[:500])
            log.warning("declaration %s: %s", sub.id, exc)
            return
        poll = now + self.settings.poll_seconds
        updated = self.store.update(
            sub, status=answer.status, number=answer.number or sub.number,
            reasons=answer.reasons, next_at=poll if answer.status not in FINAL else now,
            attempts=0, last_error=None,
            note=("SIMULATED authority: " if answer.simulated else "") + answer.status)
        if updated.status != updated.recorded and updated.status in CUSTOMS_STATUS:
            await self._record_event(updated)  # (if this is lost, the next pass redoes it)

    async def _record_event(self, sub: Submission) -> None:
        """Publish a released / queried / rejected status as a customs event (module doc)."""
        authority = (self.settings.cn_authority_org if sub.authority == "cn-itsw"
                     else self.settings.hk_authority_org)
        shipment = self.store.shipment(sub.shipment_id)
        if self.outbox is None or self.accounts is None or authority is None or shipment is None:
            self.store.mark_recorded(sub.id, sub.status)
            return
        options = shipment.body["options"]
        kind = options.get("kind", "mbl")
        bills = [(kind, b) for b in (options.get("bills") or [shipment.reference])]
        containers = [c for c in options.get("containers", []) if isinstance(c, str)]
        message = customs_message(sub, bills, containers, int(self.clock()))
        alias = self.alias_of(sub)
        if message is None or alias is None:
            self.store.mark_recorded(sub.id, sub.status)
            return
        try:
            events = customs.events_of(message, alias=alias)  # never the number's plain hash
        except MessageError as exc:
            log.warning("declaration %s: its customs event is refused: %s", sub.id, exc)
            self.store.mark_recorded(sub.id, sub.status)
            return
        chain_readers = []
        for org_id in (shipment.org_id, *shipment.readers):
            with contextlib.suppress(Exception):
                chain = self.accounts.organisation(org_id).chain_org
                if chain is not None and org_id != authority:
                    chain_readers.append(chain)
        visibility = Visibility("named", tuple(dict.fromkeys(chain_readers))[:8])
        ops = [Operation(idempotency_key=f"declarations:{sub.id}:{sub.status}:{i}",
                         kind="event", event=_with(e, visibility))
               for i, e in enumerate(events)]
        await self.outbox.accept_async(authority, ops)
        self.store.mark_recorded(sub.id, sub.status)

    async def run(self) -> None:
        """Work until cancelled: woken by a submission, else at the next due time (bounded)."""
        while True:
            try:
                await self.work()
            except Exception:  # a store or network surprise must not stop the worker
                log.exception("declarations worker pass failed")
            next_due = self.store.next_due()
            wait = self.settings.poll_seconds if next_due is None else max(
                0.01, min(self.settings.poll_seconds, next_due - self.clock()))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)


def _with(event: CanonicalEvent, visibility: Visibility) -> CanonicalEvent:
    return dataclasses.replace(event, visibility=visibility)
