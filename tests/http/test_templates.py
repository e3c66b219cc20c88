"""URL rendering (SPEC section 5)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.errors import DeliveryError
from workers.http.templates import (
    MAX_URL_BYTES,
    build_url,
    placeholders,
    render_query,
    render_url,
)

FACE_BASE = "https://1.2.3.4:8443/Face/eventNotify"
FACE_TEMPLATE = "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"


def test_spec_face_example_renders_verbatim() -> None:
    values = {"UCID": "13-23132@1.2.3.4", "CALLEDAORS": ",".join(["sip:7654321@1.2.3.1:5060"])}
    assert render_url(FACE_BASE, FACE_TEMPLATE, values) == (
        "https://1.2.3.4:8443/Face/eventNotify?event=AudioRecordingStarted"
        "&calledAors=sip%3A7654321%401.2.3.1%3A5060&ucid=13-23132%401.2.3.4"
    )


def test_spec_calling_aor_example_encodes_utf8_and_quotes() -> None:
    rendered = render_query("%CALLINGAOR%", {"CALLINGAOR": '"José Müller" <sip:jm@ex.com>'})
    assert rendered == "%22Jos%C3%A9%20M%C3%BCller%22%20%3Csip%3Ajm%40ex.com%3E"


def test_non_ascii_value_is_percent_encoded_utf8() -> None:
    assert render_query("n=%FILENAME%", {"FILENAME": "日本€"}) == "n=%E6%97%A5%E6%9C%AC%E2%82%AC"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a&b=c", "a%26b%3Dc"),
        ("100%", "100%25"),
        ("a+b", "a%2Bb"),
        ("a/b", "a%2Fb"),
        ("a b", "a%20b"),
        ("a#b", "a%23b"),
        ("a?b", "a%3Fb"),
        ("-._~", "-._~"),
    ],
)
def test_reserved_characters_in_value_are_encoded(value: str, encoded: str) -> None:
    assert render_query("x=%UCID%&y=1", {"UCID": value}) == f"x={encoded}&y=1"


def test_crlf_in_value_cannot_split_the_request() -> None:
    url = render_url("http://h/p", "u=%UCID%", {"UCID": "x\r\nHost: evil\r\n\r\nGET / HTTP/1.1"})
    assert "\r" not in url and "\n" not in url and " " not in url
    assert url == "http://h/p?u=x%0D%0AHost%3A%20evil%0D%0A%0D%0AGET%20%2F%20HTTP%2F1.1"


def test_list_value_comma_joined_by_caller_keeps_comma_encoded() -> None:
    aors = ",".join(["sip:a@h", "sip:b@h"])
    assert render_query("c=%CALLEDAORS%", {"CALLEDAORS": aors}) == "c=sip%3Aa%40h%2Csip%3Ab%40h"


def test_percent_escape_in_template_is_literal() -> None:
    template = "name=Jos%C3%A9&pct=%25&ucid=%UCID%"
    assert placeholders(template) == ["UCID"]
    assert render_query(template, {"UCID": "1"}) == "name=Jos%C3%A9&pct=%25&ucid=1"


def test_short_or_lowercase_percent_names_are_literal() -> None:
    template = "a=%AB%&b=%ucid%&c=%A_B%"
    assert placeholders(template) == ["A_B"]
    assert render_query(template, {"AB": "x", "ucid": "y", "A_B": "z w"}) == (
        "a=%AB%&b=%ucid%&c=z%20w"
    )


def test_placeholders_listed_in_order_with_repeats() -> None:
    assert placeholders("%UCID%-%EVENT%-%UCID%") == ["UCID", "EVENT", "UCID"]


def test_placeholders_in_base_url_are_not_substituted() -> None:
    url = render_url("https://h/%UCID%/x", "u=%UCID%", {"UCID": "7"})
    assert url == "https://h/%UCID%/x?u=7"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://h/p", "https://h/p?a=1"),
        ("https://h/p?k=v", "https://h/p?k=v&a=1"),
        ("https://h/p?", "https://h/p?a=1"),
        ("https://h/p?k=v&", "https://h/p?k=v&a=1"),
    ],
)
def test_query_joined_to_base_with_the_right_separator(base: str, expected: str) -> None:
    assert build_url(base, "a=1") == expected


def test_empty_template_appends_nothing() -> None:
    assert render_url("https://h/p", "", {"UCID": "1"}) == "https://h/p"
    assert build_url("https://h/p?k=v", "") == "https://h/p?k=v"


def test_missing_value_renders_empty() -> None:
    assert render_query("a=%UCID%&b=%SESSIONID%", {"UCID": "1"}) == "a=1&b="


def test_url_over_8_kib_is_refused_with_length_and_limit() -> None:
    base = "https://h/p"
    fits = "x" * (MAX_URL_BYTES - len(base) - len("?u="))
    assert len(render_url(base, "u=%UCID%", {"UCID": fits})) == MAX_URL_BYTES
    with pytest.raises(DeliveryError, match=rf"{MAX_URL_BYTES + 1} bytes.*{MAX_URL_BYTES}"):
        render_url(base, "u=%UCID%", {"UCID": fits + "x"})


def test_url_limit_counts_encoded_bytes() -> None:
    # each "é" becomes %C3%A9: 6 bytes in the URL
    with pytest.raises(DeliveryError):
        render_url("https://h/p", "u=%UCID%", {"UCID": "é" * (MAX_URL_BYTES // 6 + 1)})


@given(
    st.dictionaries(
        st.sampled_from(["UCID", "CALLINGAOR", "FILENAME"]),
        # any Unicode text encodable as UTF-8: non-ASCII included, lone surrogates excluded
        st.text(st.characters(codec="utf-8"), min_size=1),
        min_size=1,
    )
)
def test_parse_qs_of_rendered_query_gives_back_each_value(values: dict[str, str]) -> None:
    template = "&".join(f"{name.lower()}=%{name}%" for name in values)
    rendered = build_url("https://h/p?fixed=1", render_query(template, values))
    parsed = parse_qs(urlsplit(rendered).query, keep_blank_values=True)
    assert parsed["fixed"] == ["1"]
    for name, value in values.items():
        assert parsed[name.lower()] == [value]
