"""Helpers of the alert tests: canonical events and readings as received, HK times (ours)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count
from typing import Any

from gateway.alerts.facts import Measured, Observed
from gateway.events.model import CanonicalEvent, Reference
from gateway.telemetry.model import Reading

HKT = timezone(timedelta(hours=8))

BOX = "CSQU3054383"  # 20' dry in the tables below
REEFER_BOX = "PCOU2000026"
OTHER_BOX = "MSKU3000015"
VESSEL = "9321483"
MBL = "PCOL1234567"
DECLARATION = "HKD2026110001"

_orders = count(1)


def hk(text: str) -> int:
    """Unix seconds of a Hong Kong local time ``YYYY-MM-DD HH:MM``."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=HKT).timestamp())


def event(event_type: str, when: int, subject: str = BOX, *, kind: str = "container",
          classifier: str = "ACT", location: str = "HKHKG", related: tuple[Reference, ...] = (),
          details: dict[str, Any] | None = None, publisher: str = "Terminal",
          order: int | None = None, ref: str | None = None, retracts: int = 0,
          received_at: int | None = None) -> Observed:
    number = next(_orders) if order is None else order
    return Observed(
        CanonicalEvent(event_type, classifier, when, Reference(kind, subject), location,
                       related, details or {}, retracts=retracts),
        order=number, publisher=publisher, ref=ref or str(number), received_at=received_at)


def eta(when: int, publisher: str, *, vessel: str = VESSEL, port: str = "HKHKG",
        order: int | None = None, classifier: str = "EST",
        received_at: int | None = None) -> Observed:
    return event("TRANSPORT.ARRI", when, vessel, kind="vessel", classifier=classifier,
                 location=port, publisher=publisher, order=order, received_at=received_at)


def reefer(when: int, temperature: float | None, setpoint: float | None = -18.0, *,
           box: str = REEFER_BOX, order: int | None = None, publisher: str = "Terminal",
           **values: Any) -> Measured:
    body: dict[str, Any] = dict(values)
    if temperature is not None:
        body["temperature"] = temperature
    if setpoint is not None:
        body["setpoint"] = setpoint
    number = next(_orders) if order is None else order
    return Measured(Reading("reefer", when, Reference("container", box), body), order=number,
                    publisher=publisher, ref=f"r{number}")
