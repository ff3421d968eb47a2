"""The OpenAPI 3.1 document at ``/openapi.json`` and its docs page at ``/docs``.

Each feature module documents its own operations next to its handlers and hands them to
:func:`add` from its ``setup(app)``; request-body schemas are the very objects the handlers
validate with (:func:`gateway.jsonbody.read_json`), so the document cannot drift from the code.
"""

from __future__ import annotations

import copy
import html
import json
from typing import Any

from aiohttp import web

from gateway import __version__

PARTS = web.AppKey("openapi_parts", list)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        },
        "requestId": {"type": "string"},
    },
}


def error_responses(*statuses: int) -> dict[str, Any]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    reasons = {
        400: "Malformed request",
        401: "Not signed in",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        415: "Wrong content type",
        422: "Invalid content",
        429: "Rate limited (see Retry-After)",
        503: "A dependency is unavailable",
    }
    return {
        str(s): {
            "description": reasons.get(s, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def add(
    app: web.Application,
    paths: dict[str, Any],
    schemas: dict[str, Any] | None = None,
    tags: list[dict[str, str]] | None = None,
) -> None:
    """Add operations (an OpenAPI ``paths`` mapping) and component schemas to the document."""
    if PARTS not in app:
        app[PARTS] = []
    app[PARTS].append({"paths": paths, "schemas": schemas or {}, "tags": tags or []})


def document(app: web.Application) -> dict[str, Any]:
    """Assemble the whole document."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    tags: list[dict[str, str]] = []
    for part in app.get(PARTS, []):
        for path, ops in part["paths"].items():
            paths.setdefault(path, {}).update(copy.deepcopy(ops))
        schemas.update(copy.deepcopy(part["schemas"]))
        tags.extend(part["tags"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PortLedger gateway",
            "version": __version__,
            "description": "Track cargo by any reference, upload and download events "
            "(canonical and DCSA Track & Trace 2.2), share data only with whom you choose.",
            "license": {"name": "Apache-2.0"},
        },
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "portledger_session"},
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


async def docs_page(request: web.Request) -> web.Response:
    """A self-contained reference page rendered from the document (no CDN scripts)."""
    doc = document(request.app)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if not isinstance(op, dict):
                continue
            rows.append(
                f"<tr><td class=m>{html.escape(method.upper())}</td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
            )
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>PortLedger API</title>
<style>body{{font:15px system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}}
td{{padding:.3rem .6rem;border-bottom:1px solid #ddd}}.m{{font-weight:600}}</style></head>
<body><h1>PortLedger gateway API</h1>
<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a>.
Authenticate with <code>Authorization: Bearer &lt;API key&gt;</code>.</p>
<table>{''.join(rows)}</table>
<details><summary>Document</summary><pre>{html.escape(json.dumps(doc, indent=2))}</pre></details>
</body></html>"""
    return web.Response(text=page, content_type="text/html")


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
