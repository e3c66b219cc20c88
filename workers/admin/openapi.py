"""The admin API's OpenAPI document: real body schemas, the real error shape, bearer auth.

Routes read their bodies themselves (:mod:`workers.admin.bodies`, so refusals
keep ``parse_destination``'s messages), hence declare them with
:func:`body_doc`; :func:`install_openapi` adds the models those name to the
components, documents the ``{"errors": [...]}`` shape in place of FastAPI's
``HTTPValidationError`` and marks every ``/api`` operation as needing the
bearer token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from workers.destinations.schema import ErrorBody

__all__ = ["body_doc", "errors_doc", "install_openapi", "ok_doc"]

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    400: "Refused before reaching the route: a Host that is not loopback in open mode",
    401: "Missing or wrong bearer token",
    403: "A state-changing request without the token that lacks a JSON body type or a "
         "matching Origin (a cross-site page)",
    404: "No such destination, dead letter or event",
    409: "A destination with this name exists",
    413: "The request body is over 1 MiB",
    422: "A refused destination or a malformed body: one entry per field, naming the value",
    503: "The database or Redis does not answer, or the service is misconfigured (the "
         "message says how to fix it)",
}
STATE_CHANGING = ("post", "put", "patch", "delete")
_models: dict[str, type[BaseModel]] = {}


def body_doc(model: type[BaseModel] | None, example: Any, *, required: bool = True,
             media_types: Iterable[str] = ("application/json",),
             schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``model`` (or ``schema``)."""
    if model is not None:
        _models[model.__name__] = model
        schema = {"$ref": REF.format(model=model.__name__)}
    content = {mt: {"schema": schema or {"type": "object"}, "example": example}
               for mt in media_types}
    return {"requestBody": {"required": required, "content": content}}


def ok_doc(model: Any, description: str, *, schema: dict[str, Any] | None = None
           ) -> dict[int | str, dict[str, Any]]:
    """``responses`` entry for the 200 answer."""
    if schema is not None:
        return {200: {"description": description,
                      "content": {"application/json": {"schema": schema}}}}
    return {200: {"model": model, "description": description}}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for these error statuses, all in the SPEC 8 shape."""
    return {s: {"model": ErrorBody, "description": STATUS_TEXT[s]} for s in statuses}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the document described in this module's docstring."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        models: dict[str, type[BaseModel]] = {**_models, "ErrorBody": ErrorBody}
        for name, model in models.items():
            schema = model.model_json_schema(ref_template=REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        for gone in ("HTTPValidationError", "ValidationError"):
            schemas.pop(gone, None)
        components["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "the value of RECNOTIFY_ADMIN_TOKEN (not needed in open mode)"}}
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                for status, response in list(responses.items()):
                    text = str(response)
                    if "HTTPValidationError" in text:
                        responses[status] = _error_response(422)
                if not path.startswith("/api"):
                    continue
                operation["security"] = [{"bearerAuth": []}]
                extra = [400, 401, 503] + ([403, 413] if method in STATE_CHANGING else [])
                for status in extra:
                    responses.setdefault(str(status), _error_response(status))
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
