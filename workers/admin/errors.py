"""The admin API's error shape (SPEC 8): ``{"errors": [{"field": ..., "message": ...}]}``.

A refused destination, a malformed body (not JSON, not an object, a wrong type),
an unknown name and a missing token all answer in this one shape, never in the
framework's default one. Messages name the bad value; secrets never appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.errors import (
    DestinationExists,
    DestinationNotFound,
    FieldError,
    InvalidDestination,
    StoreError,
)

__all__ = ["ApiError", "error_body", "install_error_handlers"]


class ApiError(Exception):
    """An answer other than 2xx: ``status`` and one or more (field, message) pairs."""

    def __init__(self, status: int, field: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [{"field": field, "message": message}]
        self.headers = headers


def error_body(errors: Sequence[dict[str, str]]) -> dict[str, Any]:
    return {"errors": list(errors)}


def field_errors(errors: Sequence[FieldError]) -> list[dict[str, str]]:
    return [{"field": e.field, "message": e.message} for e in errors]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """FastAPI's validation errors as field/message pairs naming the bad value."""
    out: list[dict[str, str]] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query",
                                                                             "path")]
        field = ".".join(loc)
        kind = error.get("type", "")
        if kind == "json_invalid":
            ctx = error.get("ctx") or {}
            message = f"the request body is not valid JSON ({ctx.get('error', 'parse error')})"
            field = ""
        elif kind == "missing":
            message = f"{field or 'body'}: required, but missing"
        else:
            given = _show(error.get("input"))
            message = f"{field or 'body'}: {given} is not valid: {error.get('msg', '')}"
        out.append({"field": field, "message": message})
    return out or [{"field": "", "message": "the request is malformed"}]


def install_error_handlers(app: FastAPI) -> None:
    """Every error the API can answer with, in the SPEC 8 shape."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(_validation_errors(exc)), status_code=422)

    @app.exception_handler(InvalidDestination)
    async def _invalid(_request: Request, exc: InvalidDestination) -> JSONResponse:
        return JSONResponse(error_body(field_errors(exc.errors)), status_code=422)

    @app.exception_handler(DestinationExists)
    async def _exists(_request: Request, exc: DestinationExists) -> JSONResponse:
        return JSONResponse(error_body(field_errors(exc.errors)), status_code=409)

    @app.exception_handler(DestinationNotFound)
    async def _not_found(_request: Request, exc: DestinationNotFound) -> JSONResponse:
        return JSONResponse(error_body([{"field": "name", "message": str(exc)}]),
                            status_code=404)

    @app.exception_handler(StoreError)
    async def _store(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(error_body([{"field": "", "message": str(exc)}]), status_code=503)

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.errors), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body([{"field": "", "message": str(exc.detail)}]),
                            status_code=exc.status_code, headers=exc.headers)
