"""The OpenAPI 3.1 document at ``/openapi.json`` and its docs page at ``/docs``.

A feature package declares each operation once, where its handler is: :class:`Routes` is a
route table whose decorators take the path, the method and the operation's documentation
together (built by :func:`operation`), so a path string is written once and the document cannot
list a route the service does not have. ``Routes.install(app)`` adds the routes and the
operations. Request-body schemas are the very objects the handlers validate with
(:func:`gateway.jsonbody.read_json`), so the document cannot drift from the code.
"""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from gateway import __version__
from gateway.appkeys import OPENAPI_PARTS

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


def operation(
    summary: str,
    *,
    description: str | None = None,
    tags: Iterable[str] = (),
    body: Mapping[str, Any] | None = None,
    body_types: Iterable[str] = ("application/json",),
    parameters: Iterable[Mapping[str, Any]] = (),
    ok: int = 200,
    ok_description: str = "OK",
    ok_schema: Mapping[str, Any] | None = None,
    ok_content: Mapping[str, Any] | None = None,
    ok_headers: Mapping[str, Any] | None = None,
    errors: Iterable[int] = (),
    **extra: Any,
) -> dict[str, Any]:
    """One OpenAPI operation object: summary, parameters, request body and responses.

    ``ok_schema`` documents a JSON success body; ``ok_content`` any other media types (e.g. a
    file download); ``errors`` lists the error statuses (each with the shared ``Error``
    schema). ``extra`` keys (``security``, ``operationId``...) are copied as they are.
    """
    op: dict[str, Any] = {"summary": summary}
    if tags:
        op["tags"] = list(tags)
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = [dict(p) for p in parameters]
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {ct: {"schema": body} for ct in body_types}}
    success: dict[str, Any] = {"description": ok_description}
    if ok_schema is not None:
        success["content"] = {"application/json": {"schema": ok_schema}}
    if ok_content is not None:
        success["content"] = dict(ok_content)
    if ok_headers:
        success["headers"] = dict(ok_headers)
    op["responses"] = {str(ok): success, **error_responses(*errors)}
    op.update(extra)
    return op


def path_parameter(name: str, schema: Mapping[str, Any], description: str | None = None,
                   ) -> dict[str, Any]:
    """A required path parameter."""
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True,
                                 "schema": dict(schema)}
    if description:
        parameter["description"] = description
    return parameter


def query_parameter(name: str, schema: Mapping[str, Any], description: str | None = None,
                    *, required: bool = False) -> dict[str, Any]:
    """A query parameter (optional unless ``required``)."""
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": required,
                                 "schema": dict(schema)}
    if description:
        parameter["description"] = description
    return parameter


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


class Routes:
    """A feature's routes with their OpenAPI operations: each path written once.

    ::

        api = openapi.Routes(tag="Upload")

        @api.post("/v1/events", openapi.operation("Upload canonical events", ...))
        async def post_events(request): ...

        def setup(app):
            api.install(app, schemas={...})

    An operation given as ``None`` is a route left out of the document (a page, a redirect).
    """

    def __init__(self, tag: str | None = None, description: str | None = None) -> None:
        self.tag = tag
        self.description = description
        self.table = web.RouteTableDef()
        self.paths: dict[str, dict[str, Any]] = {}

    def route(self, method: str, path: str, op: Mapping[str, Any] | None,
              ) -> Callable[[_Handler], _Handler]:
        """Register ``method path`` and document it with ``op`` (the OpenAPI path is the
        route's path with aiohttp's ``{name:regex}`` patterns reduced to ``{name}``)."""
        if op is not None:
            documented = dict(op)
            if self.tag and "tags" not in documented:
                documented["tags"] = [self.tag]
            methods = self.paths.setdefault(_openapi_path(path), {})
            if method.lower() in methods:
                raise ValueError(f"{method} {path} is documented twice")
            methods[method.lower()] = documented
        return self.table.route(method, path)  # type: ignore[return-value]

    def get(self, path: str, op: Mapping[str, Any] | None) -> Callable[[_Handler], _Handler]:
        return self.route("GET", path, op)

    def post(self, path: str, op: Mapping[str, Any] | None) -> Callable[[_Handler], _Handler]:
        return self.route("POST", path, op)

    def put(self, path: str, op: Mapping[str, Any] | None) -> Callable[[_Handler], _Handler]:
        return self.route("PUT", path, op)

    def patch(self, path: str, op: Mapping[str, Any] | None) -> Callable[[_Handler], _Handler]:
        return self.route("PATCH", path, op)

    def delete(self, path: str, op: Mapping[str, Any] | None) -> Callable[[_Handler], _Handler]:
        return self.route("DELETE", path, op)

    def install(self, app: web.Application, schemas: dict[str, Any] | None = None) -> None:
        """Add the routes to ``app`` and their operations (and ``schemas``) to its document."""
        app.router.add_routes(self.table)
        tags = ([{"name": self.tag, "description": self.description}]
                if self.tag and self.description else None)
        add(app, self.paths, schemas, tags)


def _openapi_path(path: str) -> str:
    out: list[str] = []
    depth, in_pattern = 0, False
    for ch in path:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                in_pattern = False
        elif ch == ":" and depth == 1:
            in_pattern = True
        if not in_pattern:
            out.append(ch)
    return "".join(out)


def add(
    app: web.Application,
    paths: dict[str, Any],
    schemas: dict[str, Any] | None = None,
    tags: list[dict[str, str]] | None = None,
) -> None:
    """Add operations (an OpenAPI ``paths`` mapping) and component schemas to the document."""
    if OPENAPI_PARTS not in app:
        app[OPENAPI_PARTS] = []
    app[OPENAPI_PARTS].append({"paths": paths, "schemas": schemas or {}, "tags": tags or []})


def document(app: web.Application) -> dict[str, Any]:
    """Assemble the whole document."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    tags: list[dict[str, str]] = []
    for part in app.get(OPENAPI_PARTS, []):
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
