"""Alert e-mail: the SMTP settings, the message, and the Mailer that sends the queued mail.

Settings (``config.extra["alerts"]["smtp"]``; without it no mail is queued)::

    {"host": "smtp.example.com", "port": 587, "from": "PortLedger <alerts@example.com>",
     "starttls": true, "ssl": false,
     "user_env": "PORTLEDGER_SMTP_USER", "password_env": "PORTLEDGER_SMTP_PASSWORD",
     "timeout_seconds": 20, "ca_file": "", "max_attempts": 8,
     "retry_base_seconds": 30, "retry_max_seconds": 3600, "max_alerts_per_message": 50}

``starttls`` upgrades a plain connection (port 587), ``ssl`` speaks TLS from the start (465);
certificates are verified against the system's trust store (plus ``ca_file``, a private
relay's CA). The user name and password are read from the environment variables named — never
from the configuration file — and only when the user variable is set is ``AUTH`` used.

The queue is in ``alerts.db`` (:class:`~gateway.alerts.store.AlertStore`, table ``mail``): one
row per transition and address, with ``not_before`` (quiet hours, digests). The Mailer takes
the rows due for one address together and sends them as **one** message (a digest, or several
alerts that fell due at once; at most ``max_alerts_per_message``). Before a message goes out
its rows' attempts are counted and their next attempt moved ahead (a lease), so a crash
mid-send retries after the lease rather than losing or repeating in a loop. A refused attempt
(connection refused, timeout, a 4xx reply, TLS or AUTH failure) is retried after
``min(retry_max, retry_base · 2^(n-1))`` × a random factor in [0.5, 1), up to ``max_attempts``;
a 5xx refusal of the recipient or the message is final. Rows end ``sent`` or ``failed`` (kept
visible, body erased). Delivery is at least once: a message the server accepted just before a
crash is sent again after the lease, with the same ``Message-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import smtplib
import sqlite3
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from gateway.alerts.delivery import summary
from gateway.alerts.store import AlertStore, MailItem
from gateway.config import ConfigError

log = logging.getLogger("portledger.gateway.alerts")

_KEYS = frozenset({"host", "port", "from", "starttls", "ssl", "user_env", "password_env",
                   "timeout_seconds", "ca_file", "max_attempts", "retry_base_seconds",
                   "retry_max_seconds", "max_alerts_per_message"})


@dataclass(frozen=True)
class SmtpSettings:
    """``config.extra["alerts"]["smtp"]`` (module docstring)."""

    host: str
    port: int = 25
    sender: str = "PortLedger alerts <alerts@localhost>"
    """The ``From`` address (``from`` in the configuration)."""
    starttls: bool = False
    ssl: bool = False
    user_env: str = "PORTLEDGER_SMTP_USER"
    password_env: str = "PORTLEDGER_SMTP_PASSWORD"
    timeout_seconds: float = 20.0
    ca_file: str = ""
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    max_alerts_per_message: int = 50

    @classmethod
    def from_json(cls, raw: Any) -> SmtpSettings | None:
        """The settings, None when absent; :class:`ConfigError` when malformed."""
        if raw is None:
            return None
        where = 'extra["alerts"]["smtp"]'
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be an object")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ConfigError(f"unknown {where} keys: {', '.join(unknown)}")
        kinds: dict[str, tuple[type, ...]] = {
            "host": (str,), "port": (int,), "from": (str,), "starttls": (bool,), "ssl": (bool,),
            "user_env": (str,), "password_env": (str,), "timeout_seconds": (int, float),
            "ca_file": (str,), "max_attempts": (int,), "retry_base_seconds": (int, float),
            "retry_max_seconds": (int, float), "max_alerts_per_message": (int,)}
        for key, value in raw.items():
            allowed = kinds[key]
            if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
                raise ConfigError(f"{where}.{key} must be {allowed[0].__name__}, not {value!r}")
        if not raw.get("host"):
            raise ConfigError(f"{where}.host is required")
        values = {("sender" if k == "from" else k): v for k, v in raw.items()}
        settings = cls(**values)
        if settings.starttls and settings.ssl:
            raise ConfigError(f"{where}: starttls and ssl exclude each other")
        if not 0 < settings.port < 65536 or settings.max_attempts < 1 or not (
                0 < settings.retry_base_seconds <= settings.retry_max_seconds) or (
                settings.timeout_seconds <= 0 or settings.max_alerts_per_message < 1):
            raise ConfigError(f"{where}: port 1-65535, max_attempts >= 1, 0 < retry_base_seconds"
                              " <= retry_max_seconds, timeout_seconds > 0")
        if "@" not in parseaddr(settings.sender)[1]:
            raise ConfigError(f"{where}.from is an e-mail address")
        return settings


def backoff(attempts: int, settings: SmtpSettings, rng: random.Random) -> float:
    """Seconds to wait after ``attempts`` failed attempts: exponential, capped, jittered."""
    ceiling = min(settings.retry_max_seconds,
                  settings.retry_base_seconds * float(2 ** min(max(attempts - 1, 0), 40)))
    return float(ceiling * (0.5 + rng.random() / 2))


def compose(items: Sequence[MailItem], settings: SmtpSettings, public_url: str = "",
            ) -> EmailMessage:
    """One message carrying the transitions of ``items`` (all for one address)."""
    lines = [summary(item.body) for item in items]
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = items[0].address
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(settings.sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = (f"<portledger-alerts-{items[0].org_id}-{items[0].id}-"
                             f"{items[-1].id}@{domain}>")
    message["Subject"] = (lines[0] if len(lines) == 1 else f"PortLedger: {len(lines)} alerts")[:200]
    message["X-PortLedger-Alerts"] = ",".join(str(i.body.get("alertId", "")) for i in items)
    body = ["PortLedger alerts", ""]
    for item, line in zip(items, lines, strict=True):
        body.append(f"- {line}")
        sources = ", ".join(sorted({str(s.get("publisher")) for s in item.body.get("sources", [])
                                    if s.get("publisher")}))
        if sources:
            body.append(f"  from: {sources}")
        if public_url and item.body.get("alertId"):
            body.append(f"  {public_url.rstrip('/')}/alerts/{item.body['alertId']}")
    body += ["", "You receive these because your alert preferences ask for e-mail; change them "
             "in PortLedger (alerts, preferences)."]
    message.set_content("\n".join(body))
    return message


class Refused(Exception):
    """A send failed; ``permanent`` when the server refused the recipient or message for good."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def send(message: EmailMessage, settings: SmtpSettings) -> None:
    """Send one message (blocking: run it in a worker thread); raises :class:`Refused`."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        client: smtplib.SMTP
        if settings.ssl:
            client = smtplib.SMTP_SSL(settings.host, settings.port,
                                      timeout=settings.timeout_seconds, context=context)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
        with client:
            client.ehlo()
            if settings.starttls:
                client.starttls(context=context)
                client.ehlo()
            user = os.environ.get(settings.user_env)
            if user:
                client.login(user, os.environ.get(settings.password_env, ""))
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise Refused(f"recipient refused: {exc.recipients}",
                      permanent=all(c >= 500 for c in codes)) from None
    except smtplib.SMTPDataError as exc:
        raise Refused(f"message refused: {exc.smtp_code} {exc.smtp_error!r}",
                      permanent=exc.smtp_code >= 500) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError, ValueError) as exc:
        raise Refused(f"{type(exc).__name__}: {exc}"[:300], permanent=False) from None


class Mailer:
    """Sends the queued alert mail (module docstring): one message per address at a time."""

    def __init__(self, store: AlertStore, settings: SmtpSettings, public_url: str = "") -> None:
        self.store = store
        self.settings = settings
        self.public_url = public_url
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self.sent = 0
        self.failures = 0

    def wake(self) -> None:
        """New mail was queued."""
        self._wake.set()

    async def run(self) -> None:
        """Send due mail until cancelled (a database error pauses it a second)."""
        while True:
            self._wake.clear()
            try:
                wait = await self.send_due()
            except sqlite3.Error:
                log.exception("alert mail: database error; retrying in 1 s")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def send_due(self, *, max_messages: int = 100) -> float:
        """Send the messages due now (at most ``max_messages``); seconds until the next."""
        for _ in range(max_messages):
            rows = self.store.mail_due(time.time(), limit=1)
            if not rows:
                break
            group = [r for r in rows if (r.org_id, r.address) == (rows[0].org_id,
                                                                   rows[0].address)]
            await self._send(group[: self.settings.max_alerts_per_message])
        upcoming = self.store.mail_next_due()
        return 5.0 if upcoming is None else min(5.0, max(0.02, upcoming - time.time()))

    async def _send(self, group: list[MailItem]) -> None:
        lease = self.settings.timeout_seconds * 3 + backoff(
            max(r.attempts for r in group) + 1, self.settings, self._rng)
        kept = set(self.store.mail_claim([r.id for r in group], lease))
        group = [r for r in group if r.id in kept]
        if not group:
            return
        message = compose(group, self.settings, self.public_url)
        try:
            await asyncio.to_thread(send, message, self.settings)
        except Refused as exc:
            self.failures += 1
            attempts = max(r.attempts for r in group) + 1
            retry = None if exc.permanent else backoff(attempts, self.settings, self._rng)
            self.store.mail_failed([r.id for r in group], str(exc), retry_in=retry,
                                   max_attempts=self.settings.max_attempts)
            log.warning("alert mail not sent", extra={"address": group[0].address,
                                                       "error": str(exc), "attempt": attempts})
            return
        self.store.mail_sent([r.id for r in group])
        self.sent += 1
        log.info("alert mail sent", extra={"address": group[0].address, "alerts": len(group)})
