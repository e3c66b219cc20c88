"""What the page shows an operator first (issue 15): per destination its circuit state, parked
count, success rate over the last hour and last error; a trace found by event id or UCID;
dead letters paged and filtered by destination; and it refreshes by itself. Debian's
Chromium against a real `recnotify admin`, real workers, Redis and receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.admin_server import AdminServer
from tests.browser import admin_tab, browser, screenshot, sign_in
from tests.helpers import WorkerFactory, fast_retry
from tests.receiver import Receiver

__all__ = ["browser"]  # the fixture, re-exported for pytest


@pytest.fixture
def tab(browser: Browser, workers: WorkerFactory) -> Iterator[tuple[Page, AdminServer]]:
    with admin_tab(browser, workers, width=1400, height=1600) as opened:
        yield opened


def wait_status(server: AdminServer, name: str, **want: object) -> dict[str, object]:
    deadline = time.monotonic() + 40
    while True:
        rows = {r["destination"]: r for r in server.call("GET", "/api/status").json()}
        row = rows.get(name, {})
        if all(row.get(k) == v for k, v in want.items()):
            return row
        assert time.monotonic() < deadline, (name, want, row)
        time.sleep(0.3)


@pytest.mark.slow
def test_page_shows_circuit_parked_rate_last_error_trace_and_paged_dead_letters(
        tab: tuple[Page, AdminServer], workers: WorkerFactory, receiver: Receiver) -> None:
    page, server = tab
    receiver.script("/down", [503])
    receiver.script("/gone", [404] * 30)
    def entry(name: str, scope: str, extra: str = "") -> str:
        return (f"  - name: {name}\n    events: all\n    scope: {scope}\n"
                f"    url: {receiver.url('/' + name)}\n{extra}")

    workers.configure("destinations:\n" + entry("down", "route:main", (
        f"    retry: {fast_retry(max_attempts=3)}\n    circuit: {{failures: 1, reset_s: 60}}\n"))
        + entry("ok", "route:main") + entry("gone", "route:gone"))
    workers.start()
    pub = workers.publisher()
    first = pub.publish("RECORDING_STARTED_EVENT", route="main", params={"UCID": "rec-42"})
    receiver.wait_for(2, lambda r: r.path in ("/down", "/ok"))
    # the parked notification is also waiting (no attempt spent): the page counts both
    wait_status(server, "down", circuit="open", parked=1, waiting=1)
    wait_status(server, "ok", success_rate_1h=1.0)
    for i in range(25):
        pub.publish("RECORDING_STARTED_EVENT", route="gone", params={"UCID": f"g-{i}"})
    assert len(workers.wait_dead_letters(25, timeout_s=60)) == 25

    sign_in(page, server)
    down = page.locator("#dest-table tr.dest-row", has_text="down")
    expect(down.locator(".d-circuit")).to_have_text("open")
    expect(down.locator(".d-parked")).to_have_text("1")
    expect(down.locator(".d-waiting")).to_have_text("1")
    expect(down.locator(".d-rate")).to_have_text("0% of 1")
    expect(down.locator(".d-error")).to_contain_text("HTTP 503")
    ok = page.locator("#dest-table tr.dest-row", has_text="ok")
    expect(ok.locator(".d-circuit")).to_have_text("closed")
    expect(ok.locator(".d-rate")).to_have_text("100% of 1")
    expect(ok.locator(".d-error")).to_have_text("-")
    screenshot(page, "admin-overview.png")

    # dead letters: 20 per page, older ones on the next, filtered by destination
    rows = page.locator("#dl-table tr.dl-row")
    expect(rows).to_have_count(20)
    page.click("#dl-older")
    expect(rows).to_have_count(5)
    page.click("#dl-newer")
    expect(rows).to_have_count(20)
    page.select_option("#dl-dest", "down")
    expect(rows).to_have_count(0)
    page.select_option("#dl-dest", "gone")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text("gone")

    # search by UCID opens the trace of its event: ok delivered, down pending (parked)
    page.fill("#trace-q", "rec-42")
    page.click("#trace-go")
    trace = page.locator("#trace-result")
    expect(trace).to_contain_text(first)
    expect(trace.locator("tr.trace-row", has_text="ok")).to_contain_text("delivered")
    expect(trace.locator("tr.trace-row", has_text="down")).to_contain_text("pending")
    expect(trace.locator("tr.trace-row", has_text="down")).to_contain_text("HTTP 503")
    screenshot(page, "admin-trace.png")
    # ... and by event id, from a dead letter's event id
    rows.first.locator("button.link").click()
    expect(trace.locator("tr.trace-row")).to_have_count(1)
    expect(trace.locator("tr.trace-row")).to_contain_text("gone")
    expect(trace.locator("tr.trace-row")).to_contain_text("dead")

    # auto-refresh: a new delivery shows up without a click
    pub.publish("RECORDING_STARTED_EVENT", route="main", params={"UCID": "rec-43"})
    expect(ok.locator(".d-rate")).to_have_text("100% of 2", timeout=30_000)
