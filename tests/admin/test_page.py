"""The External Event Destinations page in a real headless browser (Debian's chromium,
driven by Playwright), against a real `recnotify admin` process, Redis and receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.admin_server import TOKEN, AdminServer
from tests.browser import ARTIFACTS, admin_tab, browser
from tests.helpers import WorkerFactory
from tests.receiver import Receiver

__all__ = ["browser"]  # the fixture, re-exported for pytest
SCREENSHOT = ARTIFACTS / "admin-page.png"
FORM_SCREENSHOT = ARTIFACTS / "admin-form-error.png"


@pytest.fixture
def page(browser: Browser, workers: WorkerFactory) -> Iterator[tuple[Page, AdminServer]]:
    with admin_tab(browser, workers, width=1280, height=1400) as opened:
        yield opened


def error_for(page: Page, field: str) -> object:
    return page.locator(f'#dest-form [data-error-for="{field}"]')


@pytest.mark.slow
def test_operator_adds_a_destination_fixes_an_error_and_sends_a_test(
        page: tuple[Page, AdminServer], receiver: Receiver, workers: WorkerFactory) -> None:
    tab, server = page
    tab.goto(server.url + "/")
    # The page asks for the token before showing any data
    expect(tab.locator("#login")).to_be_visible()
    expect(tab.locator("#app")).to_be_hidden()
    tab.fill("#token", "wrong-token")
    tab.click("#login-btn")
    expect(tab.locator("#login-error")).to_contain_text("refused")
    tab.fill("#token", TOKEN)
    tab.click("#login-btn")
    expect(tab.locator("#app")).to_be_visible()
    expect(tab.locator("#no-dests")).to_be_visible()

    # Add a destination through the form, with a URL that is not http(s)
    tab.click("#add-dest")
    tab.fill("#f-name", "crm")
    tab.check('input[name=events][value="SEGMENT_STARTED_EVENT"]')
    tab.check('input[name=events][value="SEGMENT_ENDED_EVENT"]')
    tab.select_option("#f-scope-kind", "route")
    tab.fill("#f-scope-value", "support")
    tab.fill("#f-url", "ftp://crm.example.com/hook")
    # The help panel lists what both chosen types have; clicking inserts at the cursor
    help_names = tab.locator("#param-list button.ph")
    expect(help_names.filter(has_text="%SEGMENTID%")).to_have_count(1)
    expect(help_names.filter(has_text="%FILESIZE%")).to_have_count(0)  # SEGMENT_ENDED only
    tab.fill("#f-params", "seg=&ucid=")
    tab.locator("#f-params").evaluate("i => i.setSelectionRange(4, 4)")
    help_names.filter(has_text="%SEGMENTID%").click()
    tab.locator("#f-params").press("End")
    help_names.filter(has_text="%UCID%").click()
    expect(tab.locator("#f-params")).to_have_value("seg=%SEGMENTID%&ucid=%UCID%")
    tab.click("#f-save")
    # The refusal is shown beside the URL field, with the message of `destinations import`
    url_error = error_for(tab, "url")
    expect(url_error).to_contain_text("'ftp://crm.example.com/hook' is not an absolute http(s)")
    expect(error_for(tab, "name")).to_have_text("")
    assert tab.locator("#f-url").evaluate("i => i.classList.contains('invalid')")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(FORM_SCREENSHOT), full_page=True)
    print(f"screenshot: {FORM_SCREENSHOT}")

    # Fix it and save: the destination is listed with its scope, events and URL
    tab.fill("#f-url", receiver.url("/crm"))
    tab.click("#f-save")
    row = tab.locator("#dest-table tr.dest-row", has_text="crm")
    expect(row).to_contain_text("route:support")
    expect(row).to_contain_text("SEGMENT_STARTED_EVENT, SEGMENT_ENDED_EVENT")
    expect(row).to_contain_text(receiver.url("/crm"))
    expect(row).to_contain_text("none yet")
    stored = workers.store.get("crm")
    assert stored.params == "seg=%SEGMENTID%&ucid=%UCID%"

    # Send a test notification: the rendered URL and the outcome are shown
    tab.select_option("#t-dest", "crm")
    tab.select_option("#t-type", "SEGMENT_ENDED_EVENT")
    tab.click("#t-send")
    expect(tab.locator("#t-outcome")).to_have_text("delivered")
    expect(tab.locator("#t-url")).to_contain_text(
        receiver.url("/crm") + "?seg=test-segment-0001&ucid=test-ucid-0001%40recnotify")
    got = receiver.wait_for(1)[0]
    assert got.query["seg"] == ["test-segment-0001"]
    # ... and the attempt appears in the page, and as the destination's last outcome
    attempt = tab.locator("#attempts-table tr.attempt-row").first
    expect(attempt).to_contain_text("crm")
    expect(attempt).to_contain_text("HTTP 200")
    expect(attempt).to_contain_text("delivered")
    expect(row).to_contain_text("delivered")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot: {SCREENSHOT}")
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.slow
def test_editing_keeps_the_secret_write_only(
        page: tuple[Page, AdminServer], receiver: Receiver, workers: WorkerFactory) -> None:
    tab, server = page
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    workers.configure("destinations:\n  - name: signed\n    events: all\n    scope: global\n"
                      f"    url: {receiver.url('/s')}\n    secret: {secret}\n")
    tab.goto(server.url + "/")
    tab.fill("#token", TOKEN)
    tab.click("#login-btn")
    row = tab.locator("#dest-table tr.dest-row", has_text="signed")
    row.get_by_role("button", name="Edit").click()
    expect(tab.locator("#secret-note")).to_contain_text("A secret is stored")
    expect(tab.locator("#f-secret")).to_have_value("")
    assert secret not in tab.content()
    tab.select_option("#f-method", "POST")
    tab.click("#f-save")
    expect(row).to_be_visible()
    expect(tab.locator("#editor")).to_be_hidden()
    stored = workers.store.get("signed")
    assert stored.method == "POST" and stored.secret == secret
