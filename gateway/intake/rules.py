"""The upload API's checks that need no I/O: parsing items, role and envelope rules, refusals.

Each returns what is wrong instead of raising, so a bulk upload can list every failing item
(:class:`~gateway.intake.model.ItemError`) and :func:`refuse` can answer them all at once.
"""

from __future__ import annotations

import functools
from typing import Any

from contracts import ROLES
from contracts.cargo import FAMILIES, MAX_PAYLOAD
from gateway import errors, jsonbody
from gateway.confidential import envelope as confidential
from gateway.events.model import CanonicalEvent, EventError, from_json, plaintext
from gateway.intake.model import ItemError

_FAMILY_ROLES: dict[str, int] = {name: roles for name, _, roles in FAMILIES.values()}


def role_problem(event: CanonicalEvent, roles: int) -> str | None:
    """Why an organisation with ``roles`` may not publish ``event``, or None if it may."""
    allowed = _FAMILY_ROLES[event.family]
    if roles & allowed:
        return None
    who = ", ".join(name for name, bit in ROLES.items() if allowed & bit)
    return f"{event.family} events are published by {who}; your organisation is not one"


@functools.cache
def _envelope_overhead(readers: int, reference: bool) -> int:
    """Envelope bytes besides the body (header, wraps, tag): the size of an empty record."""
    return confidential.sealed_size(b"", readers, reference)


def envelope_problem(event: CanonicalEvent) -> str | None:
    """Why ``event`` would not fit a cargo event's payload once sealed, or None."""
    readers, reference = len(event.visibility.readers), event.visibility.mode == "reference"
    text = plaintext(event)
    # an uncompressed body is the largest a sealed record can get: skip zlib when it fits
    if _envelope_overhead(readers, reference) + len(text) <= MAX_PAYLOAD:
        return None
    size = confidential.sealed_size(text, readers, reference)
    if size <= MAX_PAYLOAD:
        return None
    return (f"sealed event takes {size} bytes, more than the {MAX_PAYLOAD} a record carries: "
            "shorten details or name fewer readers")


def _schema_error(index: int, key: str | None, exc: errors.Unprocessable) -> ItemError:
    problems = exc.details.get("problems") or [{"path": "", "message": exc.message}]
    return ItemError(index, key, 422, exc.code, exc.message, problems[0]["path"])


def parse_item(raw: Any, index: int, schema: dict[str, Any]) -> tuple[str | None,
                                                                      CanonicalEvent | ItemError]:
    """Check one canonical item (schema, then the model's rules); never raises."""
    key = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    try:
        jsonbody.check(raw, schema, what=f"item {index}")
    except errors.Unprocessable as exc:
        return key, _schema_error(index, key, exc)
    body = {k: v for k, v in raw.items() if k != "id"}
    try:
        return key, from_json(body)
    except EventError as exc:
        return key, ItemError(index, key, 422, exc.code, str(exc), exc.field)


def parse_ndjson(raw: bytes) -> list[Any | ItemError]:
    """Items of an NDJSON body; a line that is not JSON becomes an :class:`ItemError`."""
    items: list[Any | ItemError] = []
    for number, line in enumerate(raw.split(b"\n")):
        if not line.strip():
            continue
        try:
            items.append(jsonbody.loads(line))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            items.append(ItemError(number, None, 422, "bad-json", f"line {number + 1}: {exc}"))
    return items


def refuse(problems: list[ItemError], total: int) -> errors.ApiError:
    """The error of an upload some of whose items failed (403 only if all are role refusals)."""
    first = problems[0]
    details = {"items": [p.to_json() for p in problems[:200]], "failed": len(problems),
               "total": total}
    text = (f"{len(problems)} of {total} items refused; nothing was accepted. "
            f"First: item {first.index}: {first.message}")
    if all(p.status == 403 for p in problems):
        return errors.Forbidden(text, code="role-not-allowed", details=details)
    return errors.Unprocessable(text, code=first.code if total == 1 else "invalid-items",
                                details=details)
