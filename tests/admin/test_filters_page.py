"""The filter on the admin page: shown as JSON, refused with its message, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.admin_server import AdminServer
from tests.browser import admin_tab, browser, screenshot, sign_in
from tests.helpers import WorkerFactory

__all__ = ["browser"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def tab(browser: Browser, workers: WorkerFactory) -> Iterator[tuple[Page, AdminServer]]:
    with admin_tab(browser, workers, width=1280, height=1800) as opened:
        yield opened


def test_page_shows_the_filter_and_refuses_bad_ones_next_to_the_field(
        tab: tuple[Page, AdminServer], workers: WorkerFactory) -> None:
    page, server = tab
    workers.configure("destinations:\n  - name: started\n    events: [RECORDING_STARTED_EVENT]\n"
                      "    url: http://127.0.0.1:9/x\n"
                      "    filter: {CALLEDAORS: {$contains: 'sip:100@'}}\n")
    sign_in(page, server)
    events_cell = page.locator("#dest-table tr.dest-row", has_text="started").locator(".d-events")
    expect(events_cell).to_have_text("RECORDING_STARTED_EVENT (filtered)")
    assert events_cell.get_attribute("title") == '{"CALLEDAORS":{"$contains":"sip:100@"}}'
    page.locator("#dest-table tr.dest-row", has_text="started").get_by_role(
        "button", name="Edit").click()
    expect(page.locator("#editor")).to_be_visible()
    shown = page.input_value("#f-filter")
    assert shown.replace(" ", "").replace("\n", "") == '{"CALLEDAORS":{"$contains":"sip:100@"}}'
    error = page.locator('[data-error-for="filter"]')
    # not JSON: refused in the page, nothing sent
    page.fill("#f-filter", '{"DURATION": ')
    page.click("#f-save")
    expect(error).to_contain_text("filter: not valid JSON")
    # a parameter RECORDING_STARTED_EVENT lacks: the server's one-line message, at the field
    page.fill("#f-filter", '{"DURATION": {"$gt": 10}}')
    page.click("#f-save")
    expect(error).to_contain_text("filter: DURATION is not a parameter of RECORDING_STARTED_EVENT")
    expect(page.locator("#editor")).to_be_visible()
    screenshot(page, "admin-filter-refused.png")
    assert workers.store.get("started").to_dict()["filter"] == {
        "CALLEDAORS": {"$contains": "sip:100@"}}
    # a test notification is sent anyway, and says the sample event would not pass
    page.click("#f-cancel")
    page.select_option("#t-dest", "started")
    page.click("#t-send")
    expect(page.locator("#t-outcome")).to_contain_text(
        "the sample event does not pass this destination's filter")


def test_page_edits_a_token_auth_and_keeps_its_password_while_it_stays_masked(
        tab: tuple[Page, AdminServer], workers: WorkerFactory) -> None:
    page, server = tab
    workers.configure(
        "destinations:\n  - name: face\n    preset: face\n    url: http://127.0.0.1:9/x\n"
        "    auth: {type: login_form, login_url: 'http://127.0.0.1:9/Face/login', "
        "username: rec@example.com, password: s3cret-pw}\n")
    sign_in(page, server)
    page.locator("#dest-table tr.dest-row", has_text="face").get_by_role(
        "button", name="Edit").click()
    shown = page.input_value("#f-auth")
    assert '"password": "********"' in shown and "s3cret-pw" not in page.content()
    # an edit of another field leaves the auth exactly as stored
    page.fill("#f-url", "http://127.0.0.1:9/y")
    page.click("#f-save")
    expect(page.locator("#editor")).to_be_hidden()
    stored = workers.store.get("face")
    assert stored.url == "http://127.0.0.1:9/y"
    assert stored.auth is not None
    assert (stored.auth.user, stored.auth.credential) == ("rec@example.com", "s3cret-pw")
    # the user changed in the JSON, the masked password kept
    page.locator("#dest-table tr.dest-row", has_text="face").get_by_role(
        "button", name="Edit").click()
    page.fill("#f-auth", shown.replace("rec@example.com", "ops@example.com"))
    page.click("#f-save")
    expect(page.locator("#editor")).to_be_hidden()
    stored = workers.store.get("face")
    assert stored.auth is not None
    assert (stored.auth.user, stored.auth.credential) == ("ops@example.com", "s3cret-pw")
    # bad JSON is refused in the page; an unknown type by the server, at the field
    page.locator("#dest-table tr.dest-row", has_text="face").get_by_role(
        "button", name="Edit").click()
    page.fill("#f-auth", '{"type": ')
    page.click("#f-save")
    expect(page.locator('[data-error-for="auth"]')).to_contain_text("auth: not valid JSON")
    page.fill("#f-auth", '{"type": "magic_link"}')
    page.click("#f-save")
    expect(page.locator('[data-error-for="auth"]')).to_contain_text("magic_link")
