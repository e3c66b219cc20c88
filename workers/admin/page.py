"""The External Event Destinations page: one static HTML page, its script and style.

No build step: ``static/index.html`` with plain JavaScript calls the JSON API.
The page is served without the token (it asks for it before showing data); the
server only tells it whether a token is configured.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    auth = "token" if request.app.state.admin.token else "open"
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{AUTH_MODE}}", auth),
                        headers={"Cache-Control": "no-store"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
