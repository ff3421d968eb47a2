"""ISO 8601 times as the gateway writes them: UTC, ``Z``, whole seconds unless asked.

One home for formatting Unix times (accounts, tracking, DCSA, subscriptions, proofs, logs all
call it); reading a time a user sent is :func:`gateway.events.model.parse_time`.
"""

from __future__ import annotations

import time


def iso_time(seconds: float, *, millis: bool = False) -> str:
    """Unix seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (``.mmmZ`` with ``millis``)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if millis:
        return f"{whole}.{int(seconds % 1 * 1000):03d}Z"
    return whole + "Z"


def iso_or_none(seconds: float | None, *, millis: bool = False) -> str | None:
    """:func:`iso_time`, or None for a time not set."""
    return None if seconds is None else iso_time(seconds, millis=millis)
