"""Typed API errors and the middleware that turns every failure into a JSON body.

Every 4xx the gateway sends has the same body::

    {"error": {"status": 422, "code": "invalid-container-number",
               "message": "CSQU3054384: check digit is 3, not 4", "details": {...}},
     "requestId": "..."}

Handlers raise a subclass of :class:`ApiError`; aiohttp's own HTTP exceptions (404 for an
unknown path, 405, 413) are rewritten into the same shape; anything else is logged with its
request id and answered 500 without internals.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.appkeys import HTML_NOT_FOUND

log = logging.getLogger("portledger.gateway")


class ApiError(Exception):
    """An error the client caused (or may retry); carries its HTTP status and a stable code."""

    status = 400
    code = "bad-request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad-request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not-found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload-too-large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported-media-type"


class Unprocessable(ApiError):
    """Well-formed JSON that breaks a rule (schema, identifier check digit, role)."""

    status, code = 422, "invalid"


class TooManyRequests(ApiError):
    status, code = 429, "rate-limited"


class Unavailable(ApiError):
    """A dependency (node, database) is down; the client may retry."""

    status, code = 503, "unavailable"


REQUEST_ID = web.RequestKey("request_id", str)


def error_body(status: int, code: str, message: str, details: dict[str, Any], rid: str) -> bytes:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error, "requestId": rid}).encode()


def error_response(exc: ApiError, rid: str) -> web.Response:
    """Render an :class:`ApiError`."""
    headers = {"X-Request-Id": rid, **exc.headers}
    return web.Response(
        status=exc.status,
        body=error_body(exc.status, exc.code, exc.message, exc.details, rid),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def _wants_page(request: web.Request) -> bool:
    """A browser asking for a page (GET, HTML accepted, not an API or asset path)."""
    return (request.method == "GET" and "text/html" in request.headers.get("Accept", "")
            and not request.path.startswith(("/v1/", "/v2/", "/static/", "/i18n/")))


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give every request an id; turn every error into the JSON error body."""
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    request[REQUEST_ID] = rid
    try:
        response = await handler(request)
    except ApiError as exc:
        return error_response(exc, rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        page = request.app.get(HTML_NOT_FOUND)
        if exc.status == 404 and page is not None and _wants_page(request):
            response = await page(request)
            response.headers.setdefault("X-Request-Id", rid)
            return response  # type: ignore[no-any-return]
        code = _HTTP_CODES.get(exc.status, "http-error")
        message = exc.reason if exc.text is None or exc.text.startswith(str(exc.status)) else exc.text
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.Response(
            status=exc.status,
            body=error_body(exc.status, code, message, {}, rid),
            content_type="application/json",
            headers={"X-Request-Id": rid, **headers},
        )
    except Exception:
        log.exception("unhandled error", extra={"request_id": rid, "path": request.path})
        return web.Response(
            status=500,
            body=error_body(500, "internal", "internal error; quote the request id", {}, rid),
            content_type="application/json",
            headers={"X-Request-Id": rid},
        )
    response.headers.setdefault("X-Request-Id", rid)
    return response
