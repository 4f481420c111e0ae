"""The OpenAPI document: what each route checks and answers, and nothing it does not.

The relay's chat routes read their body themselves (see ``facade.relay.routes.prompt_of``), so their
request model is attached here; every other route declares its body model as a parameter, and
FastAPI documents (and enforces) it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

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


def install(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document as ``without_default_422`` leaves it (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_default_422(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
