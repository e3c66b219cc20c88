"""The admin service (SPEC 8): the page, ``/docs``, ``/metrics``, ``/healthz`` and ``/api``.

``create_app(settings, token)`` builds the FastAPI application; ``recnotify
admin`` serves it with uvicorn. Routes under ``/api`` need the bearer token
when one is configured; the page, the docs, the metrics and the health check
never do. :class:`~workers.admin.guard.Guard` stands in front of everything
(loopback ``Host`` only in open mode, no cross-site changes, security headers).
"""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers import __version__
from workers.admin import api_destinations, api_records, api_replays, api_status, page
from workers.admin.auth import Networks
from workers.admin.errors import install_error_handlers
from workers.admin.guard import Guard
from workers.admin.openapi import install_openapi
from workers.admin.state import AdminState
from workers.config.settings import Settings
from workers.errors import RecnotifyError
from workers.ops.metrics import make_registry

DESCRIPTION = """Configure where recording events are sent, test a destination, follow
delivery attempts and replay dead letters.

Every `/api` call needs `Authorization: Bearer $RECNOTIFY_ADMIN_TOKEN` when a token is
configured ("Authorize" above). Without a token (loopback only), a call that changes
something must send `Content-Type: application/json` and `Origin: http://HOST:PORT` (this
service's own). Errors answer `{"errors": [{"field": ..., "message": ...}]}`."""


def create_app(settings: Settings | None = None, token: str | None = None, *,
               trusted_proxies: Networks = ()) -> FastAPI:
    """The admin application for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    state = AdminState(settings, token or None, trusted_proxies)
    app = FastAPI(title="recnotify admin", version=__version__, description=DESCRIPTION,
                  redoc_url=None)
    app.state.admin = state
    app.add_middleware(Guard, open_mode=not state.token, routes=lambda: app.routes)
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(api_destinations.router)
    app.include_router(api_records.router)
    app.include_router(api_status.router)
    app.include_router(api_replays.router)
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    registry = make_registry(settings, state.redis, lambda: state.store)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"], summary="Redis and the database answer")
    def healthz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            state.redis.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"failed: {type(exc).__name__}"
        try:
            state.store.ping()
            checks["database"] = "ok"
        except RecnotifyError as exc:
            checks["database"] = f"failed: {exc}"
        healthy = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if healthy else "failing", **checks,
                "auth": "token" if state.token else "open"}
        return JSONResponse(body, status_code=200 if healthy else 503)

    return app
