"""The admin API's error shape (SPEC 8): ``{"errors": [{"field": ..., "message": ...}]}``.

A refused destination, a malformed body (not JSON, not an object, a wrong type),
an unknown name and a missing token all answer in this one shape, never in the
framework's default one. Messages name the bad value; secrets never appear.

Configuration and storage failures (a missing ``RECNOTIFY_SECRET_KEY``, a
schema that ``recnotify db upgrade`` has not created, a database or Redis that
does not answer) answer 503 with their message; anything else unexpected
answers 500 in the same shape, with an incident id to find the traceback in
the admin log. No answer is ever a bare ``Internal Server Error``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.admin.guard import allowed_methods
from workers.errors import (
    ConfigError,
    DestinationExists,
    DestinationNotFound,
    FieldError,
    InvalidDestination,
    RecnotifyError,
    StoreError,
)

__all__ = ["ApiError", "error_body", "install_error_handlers"]

log = logging.getLogger("recnotify.admin")


class ApiError(RecnotifyError):
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
        return JSONResponse(error_body([{"field": "", "message": store_message(exc)}]),
                            status_code=503)

    @app.exception_handler(ConfigError)
    async def _config(_request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(error_body([{"field": "", "message": str(exc)}]), status_code=503)

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError) -> JSONResponse:
        url = request.app.state.admin.settings.redis_url
        shown = url.rpartition("@")[2] if "@" in url else url
        message = (f"Redis at {shown} failed: {type(exc).__name__}: {_first_line(exc)} (is it "
                   "running? check RECNOTIFY_REDIS_URL and `recnotify check`)")
        return JSONResponse(error_body([{"field": "", "message": message}]), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = secrets.token_hex(4)
        log.error("incident %s: %s %s failed", incident, request.method, request.url.path,
                  exc_info=exc)
        message = (f"internal error while handling {request.method} {request.url.path}: "
                   f"{type(exc).__name__} (incident {incident}; the admin log has the details)")
        return JSONResponse(error_body([{"field": "", "message": message}]), status_code=500)

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.errors), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        if exc.status_code == 405:  # Starlette names only the first route's methods
            allow = allowed_methods(request.app.routes, request.url.path)
            headers["Allow"] = ", ".join(allow)
            message = f"{request.method} is not allowed on {request.url.path} (allowed: " \
                      f"{', '.join(allow)})"
        elif exc.status_code == 404:
            message = f"no such path: {request.url.path} (the API is described at /docs)"
        return JSONResponse(error_body([{"field": "", "message": message}]),
                            status_code=exc.status_code, headers=headers)


#: How SQLite and PostgreSQL say that a table is missing.
MISSING_TABLE = ("no such table", "UndefinedTable", "does not exist")


#: How drivers say that the database cannot be reached.
UNREACHABLE = ("connection failed", "Connection refused", "could not connect",
               "unable to open database", "timeout expired", "server closed the connection")


def store_message(exc: StoreError) -> str:
    """The store's message, plus the fix when the schema is missing or the database is down."""
    message = str(exc)
    if "db upgrade" not in message and any(m in message for m in MISSING_TABLE):
        message += (" - the database schema is missing or outdated: run `recnotify db "
                    "upgrade` with the same RECNOTIFY_DATABASE_URL")
    elif any(m in message for m in UNREACHABLE):
        message += (" - the database does not answer: is it running and reachable? Check "
                    "RECNOTIFY_DATABASE_URL (`recnotify check` tests it)")
    return message


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
