"""Editing a destination on the page changes only what the operator changed (issue 15.1).

A destination imported from YAML with every option set is edited on the page, one field at a
time, in Debian's Chromium against a real `recnotify admin`; after each save the stored
destination differs from before in that field alone. Before the fix the form PUT its own
fields only, so a URL edit reset tls.verify, the CIDR rules, the circuit, the limits and
on_dead_letter to their defaults, and a delivery its deny_cidrs refused went through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.admin_server import AdminServer
from tests.browser import admin_tab, browser, screenshot, sign_in
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.http.signing import generate_secret

__all__ = ["browser"]  # the fixture, re-exported for pytest

SECRET = generate_secret()


def imported_yaml(url: str) -> str:
    return f"""destinations:
  - name: guarded
    events: [RECORDING_STARTED_EVENT, RECORDING_ENDED_EVENT]
    scope: route:support
    url: {url}
    params: "ucid=%UCID%"
    secret: {SECRET}
    headers:
      X-Api-Key: {{value: key-123456, secret: true}}
      X-Team: ops
    tls: {{verify: false}}
    allow_cidrs: [127.0.0.0/8, 10.0.0.0/8]
    deny_cidrs: [127.0.0.1/32]
    circuit: {{failures: 3, reset_s: 12}}
    retry: {{max_attempts: 4, backoff_s: 0.5, backoff_max_s: 30}}
    rate_limit_per_s: 50
    max_in_flight: 5
    ordered: true
    on_dead_letter: hold
    filter: {{UCID: {{$exists: true}}}}
"""


@pytest.fixture
def tab(browser: Browser, workers: WorkerFactory) -> Iterator[tuple[Page, AdminServer]]:
    with admin_tab(browser, workers, width=1280, height=1800) as opened:
        yield opened


def stored(workers: WorkerFactory) -> dict[str, Any]:
    return workers.store.get("guarded").to_dict(include_secrets=True)


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def edit(tab: Page, change: Callable[[Page], None]) -> None:
    tab.locator("#dest-table tr.dest-row", has_text="guarded").get_by_role(
        "button", name="Edit").click()
    expect(tab.locator("#editor")).to_be_visible()
    change(tab)
    tab.click("#f-save")
    expect(tab.locator("#editor")).to_be_hidden()


NEW_SECRET = generate_secret()
EDITS: list[tuple[str, Callable[[Page], None], dict[str, Any]]] = [
    ("params", lambda t: t.fill("#f-params", "ucid=%UCID%&v=2"), {"params": "ucid=%UCID%&v=2"}),
    ("method", lambda t: t.select_option("#f-method", "POST"), {"method": "POST"}),
    ("results", lambda t: t.uncheck('input[name=results][value="failure"]'),
     {"results": ["success"]}),
    ("scope", lambda t: t.fill("#f-scope-value", "sales"), {"scope": "route:sales"}),
    ("events", lambda t: t.check('input[name=events][value="RECORDING_PAUSED_EVENT"]'),
     {"events": ["RECORDING_STARTED_EVENT", "RECORDING_PAUSED_EVENT",
                 "RECORDING_ENDED_EVENT"]}),
    ("headers", lambda t: (t.click("#add-header"), t.locator(".h-name").last.fill("X-Extra"),
                           t.locator(".h-value").last.fill("1")),
     {"headers": {"X-Api-Key": {"value": "key-123456", "secret": True}, "X-Team": "ops",
                  "X-Extra": "1"}}),
    ("timeout_s", lambda t: t.fill("#f-timeout", "7"), {"timeout_s": 7.0}),
    ("tls", lambda t: t.check("#f-tls-verify"), {"tls": None}),
    ("tls", lambda t: t.fill("#f-tls-ca", "/etc/ssl/certs/ca-certificates.crt"),
     {"tls": {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt"}}),
    ("allow_cidrs", lambda t: t.fill("#f-allow-cidrs", "127.0.0.0/8"),
     {"allow_cidrs": ["127.0.0.0/8"]}),
    ("deny_cidrs", lambda t: t.fill("#f-deny-cidrs", "127.0.0.1/32, 192.0.2.0/24"),
     {"deny_cidrs": ["127.0.0.1/32", "192.0.2.0/24"]}),
    ("circuit", lambda t: t.fill("#f-circuit-failures", "4"),
     {"circuit": {"failures": 4, "reset_s": 12.0}}),
    ("circuit", lambda t: t.fill("#f-circuit-reset", "20"),
     {"circuit": {"failures": 4, "reset_s": 20.0}}),
    ("retry", lambda t: t.fill("#f-retry-max", "5"),
     {"retry": {"max_attempts": 5, "backoff_s": 0.5, "backoff_max_s": 30.0,
                "policy": "exponential"}}),
    ("rate_limit_per_s", lambda t: t.fill("#f-rate", "25"), {"rate_limit_per_s": 25.0}),
    ("max_in_flight", lambda t: t.fill("#f-in-flight", ""), {"max_in_flight": None}),
    ("on_dead_letter", lambda t: t.select_option("#f-on-dead-letter", "continue"),
     {"on_dead_letter": None}),
    ("ordered", lambda t: t.uncheck("#f-ordered"), {"ordered": False}),
    ("secret", lambda t: t.fill("#f-secret", NEW_SECRET), {"secret": NEW_SECRET}),
    ("enabled", lambda t: t.uncheck("#f-enabled"), {"enabled": False}),
    ("filter", lambda t: t.fill("#f-filter", '{"UCID": {"$startsWith": "a"}}'),
     {"filter": {"UCID": {"$startsWith": "a"}}}),
    ("filter", lambda t: t.fill("#f-filter", ""), {"filter": None}),
]


@pytest.mark.slow
def test_each_field_edited_on_the_page_changes_that_field_alone(
        tab: tuple[Page, AdminServer], receiver: Receiver, workers: WorkerFactory) -> None:
    page, server = tab
    workers.configure(imported_yaml(receiver.url("/before")))
    sign_in(page, server)

    # 1. only the URL is changed, as in the report: every other field stays
    before = stored(workers)
    edit(page, lambda t: t.fill("#f-url", receiver.url("/after")))
    after = stored(workers)
    assert changed_keys(before, after) == {"url"}, (before, after)
    assert after["tls"] == {"verify": False} and after["deny_cidrs"] == ["127.0.0.1/32"]
    assert after["circuit"] == {"failures": 3, "reset_s": 12.0}
    assert (after["rate_limit_per_s"], after["max_in_flight"], after["on_dead_letter"]) == (
        50.0, 5, "hold")
    audit = workers.store.list_audit()[0]
    assert (audit["action"], audit["detail"]) == ("update", "changed: url")

    # ... and its deny_cidrs still refuses a real delivery to 127.0.0.1
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT", route="support",
                                params={"UCID": "deny-check"})
    letters = workers.wait_dead_letters(1, timeout_s=60)
    assert len(letters) == 1 and "127.0.0.1/32" in letters[0]["reason"], letters
    assert receiver.received() == []

    # 2. saving with nothing changed sends nothing
    audits = len(workers.store.list_audit())
    page.locator("#dest-table tr.dest-row", has_text="guarded").get_by_role(
        "button", name="Edit").click()
    page.click("#f-save")
    expect(page.locator("#f-message")).to_have_text("Nothing changed.")
    page.click("#f-cancel")
    assert len(workers.store.list_audit()) == audits and stored(workers) == after

    # 3. every other field of SPEC 4, one at a time
    for field, change, expected in EDITS:
        before = stored(workers)
        edit(page, change)
        after = stored(workers)
        assert changed_keys(before, after) == {field}, (field, before, after)
        for key, value in expected.items():
            assert after.get(key) == value, (field, key, after.get(key))
    final = workers.store.get("guarded")
    assert final.url == receiver.url("/after") and final.tls.verify is True
    assert final.old_secrets and final.old_secrets[0][0] == SECRET  # the rotation overlap
    screenshot(page, "admin-edit-every-field.png")
    page.locator("#dest-table tr.dest-row", has_text="guarded").get_by_role(
        "button", name="Edit").click()
    screenshot(page, "admin-edit-form.png")
