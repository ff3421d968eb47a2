"""Reading request bodies: size limits, JSON parsing, JSON-Schema validation, typed 4xx.

Every route that takes a body calls :func:`read_json` with the JSON Schema its OpenAPI
operation documents, so the document and the check are one object. Schemas set
``additionalProperties: false`` so unknown fields are refused, not silently dropped.

Validation runs twice only when it fails: a compiled validator (``jsonschema_rs``, a few
microseconds per event) answers "valid" on the hot path, and the reference implementation
(``jsonschema``) explains every refusal, so error bodies do not depend on which one ran.

Nesting depth
-------------
Every JSON text from outside (a request body, an NDJSON line, a feed file, a cursor, a token, a
decrypted payload another organisation wrote) is read with :func:`loads`, which refuses nesting
deeper than :data:`MAX_DEPTH` *before* decoding. The gateway imports py-evm and py_ecc, which
raise the interpreter's recursion limit to 100,000; CPython's C JSON decoder then recurses
until the C stack overflows on ``[[[[...`` a few hundred kilobytes long, and the process dies
(a segmentation fault, not an exception). The depth check is linear and runs at C speed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import jsonschema_rs
from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker

from gateway.appkeys import BODY_LIMIT
from gateway.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType

#: Deepest nesting of arrays and objects :func:`loads` decodes.
MAX_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """A JSON text nests arrays and objects deeper than allowed."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped); an upper
    bound for text that is not JSON."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH, **options: Any) -> Any:
    """:func:`json.loads` that first refuses nesting deeper than ``max_depth``
    (:class:`TooDeep`, a ``ValueError``); ``options`` go to :func:`json.loads`."""
    text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    depth = nesting_depth(text)
    if depth > max_depth:
        raise TooDeep(f"JSON nested {depth} deep; at most {max_depth}")
    return json.loads(text, **options)


_validators: dict[int, Draft202012Validator] = {}
_compiled: dict[int, Any] = {}


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A cached validator of ``schema`` (keyed by identity: schemas are module constants)."""
    found = _validators.get(id(schema))
    if found is None:
        Draft202012Validator.check_schema(schema)
        found = _validators[id(schema)] = Draft202012Validator(
            schema, format_checker=FormatChecker()
        )
    return found


def _compiled_validator(schema: dict[str, Any]) -> Any:
    """The compiled validator of ``schema`` (formats checked, as the reference one does)."""
    found = _compiled.get(id(schema))
    if found is None:
        found = _compiled[id(schema)] = jsonschema_rs.Draft202012Validator(
            schema, validate_formats=True
        )
    return found


def check(instance: Any, schema: dict[str, Any], *, what: str = "body") -> None:
    """Raise :class:`Unprocessable` listing every schema violation of ``instance``."""
    if _compiled_validator(schema).is_valid(instance):
        return
    errors = sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        problems = [
            {"path": "/" + "/".join(str(p) for p in e.path), "message": e.message[:300]}
            for e in errors[:20]
        ]
        first = problems[0]
        raise Unprocessable(
            f"{what} does not match the schema: {first['path']}: {first['message']}",
            code="schema-violation",
            details={"problems": problems},
        )


async def read_bytes(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds {limit}")
    # content.read(n) returns what has arrived so far; gather chunks until EOF or the limit.
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(65_536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")


def parse(raw: bytes) -> Any:
    """A body's JSON; 400 ``bad-json`` if it is not JSON."""
    try:
        return loads(raw)
    except TooDeep as exc:
        raise BadRequest(f"body is not accepted: {exc}", code="too-deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="bad-json") from None


async def read_json(
    request: web.Request,
    schema: dict[str, Any] | None = None,
    *,
    limit: int | None = None,
) -> Any:
    """Parse and validate a JSON body.

    Parameters
    ----------
    request : web.Request
        The request; its content type must be JSON.
    schema : dict, optional
        JSON Schema (2020-12) the body must match.
    limit : int, optional
        Byte limit; the app's ordinary body limit by default.

    Returns
    -------
    Any
        The parsed body.
    """
    if limit is None:
        limit = request.app.get(BODY_LIMIT, 1 << 20)
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream", "") and not ctype.endswith(
        "+json"
    ):
        raise UnsupportedMediaType(f"send application/json, not {ctype}")
    raw = await read_bytes(request, limit)
    if not raw:
        raise BadRequest("empty body; a JSON document was expected", code="bad-json")
    body = parse(raw)
    if schema is not None:
        check(body, schema)
    return body
