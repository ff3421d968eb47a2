"""The connector interface: one per authority, ``submit`` and ``status``; and the HTTP connector
that speaks to the SIMULATED authority service (``devnet/authority.py``).

A real connector (Hong Kong's Trade Single Window for TDEC and ROCARS, China's International
Trade Single Window) implements :class:`Connector` and plugs in by name
(:func:`http_connectors` builds the ones of the configured URL). The worker in
:mod:`~gateway.declarations.service` only sees :class:`AuthorityAnswer` and
:class:`ConnectorError`:

- a ``retryable`` error (time-out, connection refused, 5xx, an answer that is not the
  protocol's: garbage) is retried with back-off, and the submission stays where it was;
- a non-retryable one (4xx: the authority refuses the envelope) ends the submission ``failed``.

Answers are checked before they are believed: the status is one of :data:`STATUSES`, an
official number has its authority's format (:mod:`~gateway.declarations.codes`), and the
service must say it is the SIMULATED one when it is (``simulated``), so a test double can never
pass for an authority.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.declarations import codes

#: Statuses an authority reports.
STATUSES: tuple[str, ...] = ("received", "accepted", "queried", "released", "rejected")
#: Final statuses (nothing follows).
FINAL: tuple[str, ...] = ("released", "rejected")

_NUMBER_CHECKS = {
    "hk-tdec": codes.check_tdec_reference,
    "hk-rocars": codes.check_ccrn,
    "cn-itsw": codes.check_cn_declaration_number,
}


class ConnectorError(Exception):
    """The authority could not be reached or answered outside the protocol."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class AuthorityAnswer:
    """What an authority says about one submission."""

    status: str
    """One of :data:`STATUSES`."""
    number: str | None = None
    """The official number (China 18 digits, TDEC reference, CCRN) once assigned."""
    reasons: tuple[str, ...] = ()
    """Why (a query, a rejection)."""
    simulated: bool = False
    """The answer comes from the SIMULATED authority service."""


class Connector(abc.ABC):
    """One authority's submission channel."""

    authority: str
    """The authority it reaches (:data:`~gateway.declarations.model.AUTHORITIES`)."""

    @abc.abstractmethod
    async def submit(self, submission_id: str, document: dict[str, Any]) -> AuthorityAnswer:
        """Lodge ``document`` once: a repeat with the same id gets the first answer."""

    @abc.abstractmethod
    async def status(self, submission_id: str) -> AuthorityAnswer:
        """The submission's status now."""


def parse_answer(authority: str, body: bytes, *, simulated_required: bool) -> AuthorityAnswer:
    """An authority's JSON answer, checked (:class:`ConnectorError` ``retryable`` if not)."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ConnectorError(f"{authority}: the answer is not JSON: {body[:60]!r}",
                             retryable=True) from None
    if not isinstance(raw, dict):
        raise ConnectorError(f"{authority}: the answer is not a JSON object", retryable=True)
    status = raw.get("status")
    if status not in STATUSES:
        raise ConnectorError(f"{authority}: unknown status {str(status)[:40]!r}",
                             retryable=True)
    number = raw.get("number")
    if number is not None:
        problem = (_NUMBER_CHECKS[authority](number) if isinstance(number, str)
                   else codes.CodeProblem("invalid", "not a string"))
        if problem is not None:
            raise ConnectorError(f"{authority}: the official number is malformed: "
                                 f"{problem.message}", retryable=True)
    reasons = raw.get("reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise ConnectorError(f"{authority}: reasons is not a list of text", retryable=True)
    simulated = raw.get("simulated") is True
    if simulated_required and not simulated:
        raise ConnectorError(f"{authority}: the answer is not labelled SIMULATED",
                             retryable=False)
    return AuthorityAnswer(status, number, tuple(r[:512] for r in reasons[:20]), simulated)


class HttpAuthorityConnector(Connector):
    """The SIMULATED authority service's HTTP API (``devnet/authority.py``):
    ``POST {base}/v1/{authority}/submissions`` and ``GET …/submissions/{id}``."""

    def __init__(self, authority: str, base_url: str, session: aiohttp.ClientSession, *,
                 timeout_seconds: float) -> None:
        self.authority = authority
        self.base = base_url.rstrip("/") + f"/v1/{authority}/submissions"
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> AuthorityAnswer:
        try:
            async with self.session.request(method, url, json=body,
                                            timeout=self.timeout) as resp:
                data = await resp.read()
                if resp.status >= 500 or resp.status == 429:
                    raise ConnectorError(f"{self.authority}: HTTP {resp.status}",
                                         retryable=True)
                if resp.status >= 400:
                    raise ConnectorError(f"{self.authority}: HTTP {resp.status}: "
                                         f"{data[:200].decode('utf-8', 'replace')}",
                                         retryable=False)
        except TimeoutError:
            raise ConnectorError(f"{self.authority}: no answer within "
                                 f"{self.timeout.total} s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ConnectorError(f"{self.authority}: {exc.__class__.__name__}: {exc}",
                                 retryable=True) from None
        return parse_answer(self.authority, data, simulated_required=True)

    async def submit(self, submission_id: str, document: dict[str, Any]) -> AuthorityAnswer:
        return await self._call("POST", self.base,
                                {"submissionId": submission_id, "document": document})

    async def status(self, submission_id: str) -> AuthorityAnswer:
        return await self._call("GET", f"{self.base}/{submission_id}", None)


def http_connectors(base_url: str, session: aiohttp.ClientSession, *,
                    timeout_seconds: float) -> dict[str, Connector]:
    """A connector per authority on the SIMULATED service at ``base_url``."""
    return {name: HttpAuthorityConnector(name, base_url, session,
                                         timeout_seconds=timeout_seconds)
            for name in _NUMBER_CHECKS}
