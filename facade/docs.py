"""The OpenAPI document: what each route checks and answers, and nothing it does not; and the
interactive reference at ``/docs``, served with its Swagger UI files from this facade (no CDN, so it
works offline and on a network that reaches nothing but the facade).

The relay's chat routes read their body themselves (see ``facade.relay.routes.prompt_of``), so their
request model is attached here; every other route declares its body model as a parameter, and
FastAPI documents (and enforces) it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from pydantic import BaseModel
from starlette.responses import Response

from facade.assets import Assets

DOCS_PATH = "/docs"
SWAGGER_UI = Path(str(swagger_ui_bundle.swagger_ui_path))
"""Swagger UI's distribution files, as the ``swagger-ui-bundle-v2`` package ships them (Apache-2.0)."""
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")

_DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body of a route that reads it."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _inline(schema, schema.get("$defs", {}))}},
        }
    }


def sse_event(model: type[BaseModel], *, name: str | None = None, resumable: bool = True) -> dict[str, Any]:
    """The schema of one Server-Sent Event whose ``data`` is ``model`` as JSON: named ``name``, or
    unnamed (``message``, as an EventSource sees it) when None; with an ``id`` when ``resumable``."""
    data = model.model_json_schema()
    ids = (
        {"id": {"type": "string", "description": "Resume after it with `Last-Event-ID`."}}
        if resumable
        else {}
    )
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name or "message"},
            **ids,
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _inline(data, data.get("$defs", {})),
            },
        },
    }


def _answers_default_422(response: Any) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return isinstance(schema, dict) and schema.get("$ref") == _DEFAULT_422


def without_default_422(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without FastAPI's automatic 422 ``HTTPValidationError`` responses: bad input is
    answered in each surface's documented shape (400 ``{error}``, or the relay's 422 envelope)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status in [s for s, r in responses.items() if _answers_default_422(r)]:
                del responses[status]
    schemas = schema.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


_TOO_LARGE = {
    "/api/": ("#/components/schemas/ErrorBody", "The body is larger than the limit (1 MiB by default)."),
    "/v1/": ("#/components/schemas/OpenAIErrorBody", "The body is larger than the limit (1 MiB by default)."),
    "/": ("#/components/schemas/PayloadTooLargeEnvelope", "The body is larger than the limit."),
}


def _surface(path: str) -> str:
    return next(prefix for prefix in _TOO_LARGE if path.startswith(prefix))


def with_body_limit(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the 413 that the body limit (``facade.limits``) answers on every route a body
    is sent to, in each surface's shape."""
    for path, operations in schema.get("paths", {}).items():
        ref, description = _TOO_LARGE[_surface(path)]
        for method, operation in operations.items():
            if method in ("post", "put", "patch"):
                operation.setdefault("responses", {}).setdefault(
                    "413",
                    {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}},
                )
    return schema


def event_streams(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the ``"type": "string"`` FastAPI gives every non-JSON response: an event
    stream's schema is that of one event (see ``sse_event``)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream", {}).get("schema", {})
                if "oneOf" in stream:
                    stream.pop("type", None)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document as ``without_default_422``, ``with_body_limit`` and
    ``event_streams`` leave it (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = event_streams(with_body_limit(without_default_422(build())))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_reference(app: FastAPI) -> None:
    """Serve the interactive reference at ``/docs`` and its Swagger UI files under ``/docs/ui/``
    (``app`` is built with ``docs_url=None``, so FastAPI's CDN-loading page is not there too)."""
    files = Assets(SWAGGER_UI, SWAGGER_FILES)
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} — API reference",
        swagger_js_url=f"{DOCS_PATH}/ui/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_PATH}/ui/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_PATH}/ui/favicon-32x32.png",
        # no badge asking an outside validator about the document
        swagger_ui_parameters={"validatorUrl": None},
    ).body

    async def reference() -> Response:
        return Response(
            page, media_type="text/html; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"}
        )

    async def ui_file(name: str, request: Request) -> Response:
        if name not in files:
            raise HTTPException(404)
        return files.response(name, request)

    app.add_api_route(DOCS_PATH, reference, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(f"{DOCS_PATH}/ui/{{name}}", ui_file, methods=["GET", "HEAD"], include_in_schema=False)
