"""Debian's Chromium driven by Playwright (never a downloaded browser), for the page tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.admin_server import TOKEN, AdminServer
from tests.helpers import ROOT, WorkerFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def admin_tab(browser: Browser, workers: WorkerFactory, *, width: int = 1280,
              height: int = 1400) -> Iterator[tuple[Page, AdminServer]]:
    """A new browser tab beside a real ``recnotify admin`` process; both closed after."""
    server = AdminServer(workers)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    try:
        yield context.new_page(), server
    finally:
        context.close()
        server.stop()


def sign_in(tab: Page, server: AdminServer) -> None:
    tab.goto(server.url + "/")
    if server.token:
        tab.fill("#token", TOKEN)
        tab.click("#login-btn")
    tab.wait_for_selector("#app:not([hidden])")


def screenshot(tab: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    tab.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
