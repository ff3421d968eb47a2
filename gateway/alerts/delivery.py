"""Alert delivery: a one-line summary per alert, the alert webhooks, and the dispatcher that
turns recorded transitions into webhook deliveries and queued mail.

::

    engine records transitions (alerts.db, dispatched = 0)
        ─► Dispatcher.dispatch():
             per transition, per alert webhook of its organisation whose kinds and changes take
             it ─► the webhook queue (one delivery per transition and webhook, never twice)
             per user (and the organisation's mailbox) whose preferences take it by e-mail
             ─► mail rows, not before the end of quiet hours / the next digest
           and marks the transitions dispatched, with the mail rows, in one transaction
        ─► the webhook worker POSTs, the Mailer sends (:mod:`gateway.alerts.mail`)

**Webhooks reuse the subscription machinery** (:mod:`gateway.subscriptions`): an alert webhook
is a row of a :class:`~gateway.subscriptions.store.SubscriptionStore` kept in its own file
(``alert_webhooks.db``: the same schema, queue, leases and per-(webhook, item) uniqueness) and
is delivered by a :class:`~gateway.subscriptions.delivery.DeliveryWorker` — the same HMAC-SHA256
``Notification-Signature`` over the raw body, ``Subscription-ID`` header (the webhook's id),
retries with jittered exponential backoff up to ``config.webhook_max_attempts``, a delivery log,
the same callback-URL checks and public-address resolver (``extra["subscriptions"]``). The body
is a JSON array of transitions — ``{"change": "opened"|"updated"|"resolved", ...the alert}`` —
and the item id de-duplicated per webhook is the transition id. (The DCSA ``API-Version``
header the worker adds names the subscription API's version; alert bodies are this gateway's
own format, described in ``docs/alerts.md``.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.alerts.model import CHANGES, KINDS
from gateway.alerts.preferences import (
    Preferences,
    PreferencesError,
    mail_time,
    parse_preferences,
)
from gateway.alerts.store import AlertStore, PendingTransition
from gateway.isotime import iso_time
from gateway.subscriptions.delivery import DeliveryWorker
from gateway.subscriptions.model import SubscriptionSettings
from gateway.subscriptions.store import SubscriptionStore
from gateway.tracking.dcsa import DcsaFilter

log = logging.getLogger("portledger.gateway.alerts")

#: Hong Kong time (UTC+08:00, no daylight saving), in which summaries show times.
HKT = timezone(timedelta(hours=8))

#: What the summaries call each kind.
TITLES: dict[str, str] = {
    "vessel-delay": "Vessel delay",
    "eta-changed": "ETA changed",
    "reefer-excursion": "Reefer excursion",
    "not-picked-up": "Not picked up",
    "free-time-ending": "Free time ending",
    "customs-hold": "Customs hold",
}


# -- summaries (pure) ----------------------------------------------------------------------------
def _hk(text: Any) -> str:
    """An ISO time as Hong Kong local time, ``2026-11-20 14:00 HKT``."""
    if not isinstance(text, str):
        return "?"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(HKT).strftime("%Y-%m-%d %H:%M") + " HKT"


def hkd(amount: Any) -> str:
    """HK$ with thousands separators: ``HK$1,240`` / ``HK$112.50``."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return "HK$?"
    return f"HK${amount:,.0f}" if float(amount).is_integer() else f"HK${amount:,.2f}"


def _signed(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"{value:+.1f}{unit}"


#: Kinds whose episode is e-mailed even when first seen already over. An excursion found only
#: after it ended (a reefer's readings arriving late, e.g. downloaded from its logger at the
#: terminal) still decides a cargo's quality claim; a free-time warning, a changed ETA or a
#: hold that ended before anyone saw them does not need a mail (they stay in the inbox).
TOLD_WHEN_OVER = frozenset({"reefer-excursion"})


def summary(alert: dict[str, Any]) -> str:
    """One English line saying what an alert (its JSON form) is about, with its figures."""
    kind = alert.get("kind", "")
    subject = alert.get("subject") or {}
    what = f"{subject.get('kind', '')} {subject.get('value', '')}".strip()
    resolved = alert.get("state") == "resolved"
    if kind in ("vessel-delay", "eta-changed"):
        text = (f"{what} at {alert.get('port') or 'its next port'}: ETA "
                f"{_signed(alert.get('slip_hours'), ' h')} against the first ETA "
                f"(now {_hk(alert.get('eta'))}, source {alert.get('source')})")
    elif kind == "reefer-excursion":
        limit = (f"band {alert['band'][0]}–{alert['band'][1]} °C" if alert.get("band")
                 else f"set point {alert.get('setpoint')} °C ± {alert.get('tolerance')}")
        text = (f"{what}: peak deviation {_signed(alert.get('peak_deviation'), ' °C')} "
                f"({limit}) for {alert.get('duration_minutes')} min")
    elif kind == "not-picked-up":
        text = (f"{what} not picked up: {alert.get('days_in_yard')} days in yard, free time "
                f"ended {alert.get('last_free_day')}, {hkd(alert.get('accrued'))} accrued, "
                f"{hkd(alert.get('per_day'))}/day from now")
    elif kind == "free-time-ending":
        text = (f"{what}: last free day {alert.get('last_free_day')} "
                f"({alert.get('days_left')} day(s) left), then {hkd(alert.get('per_day'))}/day")
    elif kind == "customs-hold":
        text = f"customs {alert.get('status')} on {what} since {_hk(alert.get('since'))}"
    else:
        text = what
    if kind in ("not-picked-up", "free-time-ending") and alert.get("pick_up_blocked"):
        holds = ", ".join(sorted({str(h.get("kind")) for h in alert.get("holds", [])}))
        text += f" — pick-up blocked ({holds})"
    title = TITLES.get(kind, kind)
    if resolved:
        return f"Resolved: {title} — {text} ({alert.get('reason') or alert.get('status') or 'cleared'})"
    return f"{title} — {text}"


# -- webhooks ---------------------------------------------------------------------------------------
class AlertWebhooks:
    """Alert webhooks over the subscription store and delivery worker (module docstring)."""

    def __init__(self, store: SubscriptionStore, alerts: AlertStore, worker: DeliveryWorker,
                 settings: SubscriptionSettings) -> None:
        self.store = store
        self.alerts = alerts
        self.worker = worker
        self.settings = settings

    def create(self, org_id: int, url: str, secret: bytes, kinds: Sequence[str],
               changes: Sequence[str]) -> Any:
        """A new webhook (raises ``TooManySubscriptions`` past the per-organisation limit)."""
        hook = self.store.create(org_id, url, secret, DcsaFilter(),
                                 limit=self.settings.max_per_organisation)
        self.alerts.set_webhook_kinds(hook.id, org_id, kinds, changes)
        return hook

    def delete(self, org_id: int, webhook_id: str) -> bool:
        if not self.store.delete(org_id, webhook_id):
            return False
        self.alerts.drop_webhook(webhook_id)
        return True

    def describe(self, org_id: int, webhook_id: str) -> dict[str, Any] | None:
        hook = self.store.get(org_id, webhook_id)
        if hook is None:
            return None
        _, kinds, changes = self.alerts.webhook_kinds().get(webhook_id, (org_id, [], []))
        return {"id": hook.id, "callbackUrl": hook.callback_url, "kinds": kinds,
                "changes": changes, "created": iso_time(int(hook.created))}

    def of(self, org_id: int) -> list[dict[str, Any]]:
        out = []
        for _, hook in self.store.page(org_id, 0, 1000):
            described = self.describe(org_id, hook.id)
            if described is not None:
                out.append(described)
        return out

    def queue(self, items: Sequence[PendingTransition]) -> int:
        """Queue each transition for the webhooks of its organisation that take it."""
        routes = self.alerts.webhook_kinds()
        queued = 0
        for hook_id, (org_id, kinds, changes) in routes.items():
            chosen = [(t.id, t.body) for t in items
                      if t.org_id == org_id and t.kind in kinds and t.change in changes]
            if chosen:
                queued += len(self.store.enqueue(hook_id, chosen,
                                                 chunk=self.settings.max_events_per_delivery))
        if queued:
            self.worker.wake()
        return queued


# -- the dispatcher -----------------------------------------------------------------------------------
#: (user id, e-mail address, disabled) of an organisation's users.
UserList = Callable[[int], list[tuple[int, str, bool]]]


class Dispatcher:
    """Turns recorded transitions into webhook deliveries and queued mail (module docstring)."""

    def __init__(self, store: AlertStore, webhooks: AlertWebhooks | None, users: UserList,
                 *, mail_enabled: bool, on_mail: Callable[[], None] | None = None) -> None:
        self.store = store
        self.webhooks = webhooks
        self.users = users
        self.mail_enabled = mail_enabled
        self.on_mail = on_mail or (lambda: None)

    def dispatch(self, *, batch: int = 500, max_batches: int = 1000) -> int:
        """Dispatch every pending transition; how many."""
        done = 0
        for _ in range(max_batches):
            items = self.store.undispatched(batch)
            if not items:
                break
            if self.webhooks is not None:
                self.webhooks.queue(items)
            mails = self._mails(items) if self.mail_enabled else []
            self.store.dispatched([t.id for t in items], mails)
            done += len(items)
            if mails:
                self.on_mail()
        return done

    def routes(self, org_id: int) -> frozenset[tuple[str, str]]:
        """The (kind, change) pairs of transitions some channel of ``org_id`` takes as things
        stand: its alert webhooks' kinds and changes, and — with mail on — what its users' and
        its mailbox's preferences want by e-mail. The engine asks once per evaluation and
        writes the other transitions already dispatched (nothing to queue them for)."""
        takes: set[tuple[str, str]] = set()
        if self.webhooks is not None:
            for org, kinds, changes in self.store.webhook_kinds().values():
                if org == org_id:
                    takes.update((kind, change) for kind in kinds for change in changes)
        if self.mail_enabled:
            for _, _, prefs in self._mail_recipients(org_id):
                takes.update((kind, change) for kind in KINDS for change in CHANGES
                             if prefs.wants("email", kind, change))
        return frozenset(takes)

    def _mail_recipients(self, org_id: int) -> list[tuple[int, str, Preferences]]:
        """(user id — 0 for the organisation's mailbox —, address, preferences) of everyone
        of ``org_id`` with an address and valid preferences."""
        stored = self.store.preferences_of(org_id)
        recipients: list[tuple[int, str | None, Any]] = []
        for user_id, address, disabled in self.users(org_id):
            if disabled:
                continue
            recipients.append((user_id, address, stored.get(user_id)))
        if 0 in stored:
            recipients.append((0, None, stored[0]))
        out = []
        for user_id, known, raw in recipients:
            try:
                prefs = parse_preferences(raw, mailbox=user_id == 0)
            except PreferencesError:
                log.warning("alerts: stored preferences no longer valid",
                            extra={"org": org_id, "user": user_id})
                continue
            to = prefs.email if user_id == 0 else known
            if to:
                out.append((user_id, to, prefs))
        return out

    def _mails(self, items: Sequence[PendingTransition],
               ) -> list[tuple[int, int, str, int, dict[str, Any], float]]:
        out: list[tuple[int, int, str, int, dict[str, Any], float]] = []
        now = time.time()
        by_org: dict[int, list[PendingTransition]] = {}
        for t in items:
            by_org.setdefault(t.org_id, []).append(t)
        for org_id, transitions in by_org.items():
            for user_id, to, prefs in self._mail_recipients(org_id):
                for t in transitions:
                    if prefs.wants("email", t.kind, t.change) and (
                            t.kind in TOLD_WHEN_OVER or not t.body.get("first_seen_resolved")):
                        out.append((org_id, user_id, to, t.id, {**t.body, "alertId": t.alert_id},
                                    mail_time(now, prefs)))
        return out
