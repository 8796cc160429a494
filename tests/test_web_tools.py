"""fetch_text against a loopback http.server (no external network)."""

from __future__ import annotations

import json
import time

import pytest

from free_llm_agent.tools.web_tools import FetchError, FetchResult, _TextExtractor, fetch_text, html_to_text
from tests.support.web_server import PAGE


def test_html_page_becomes_text(base_url: str) -> None:
    result = fetch_text(f"{base_url}/page")
    assert isinstance(result, FetchResult)
    assert result.status == 200 and result.content_type.startswith("text/html")
    assert "Main heading" in result.text and "First paragraph" in result.text
    assert "item two" in result.text
    assert "do-not-show" not in result.text and "color: red" not in result.text
    assert "<p>" not in result.text and not result.truncated


def test_json_and_text_returned_as_is(base_url: str) -> None:
    result = fetch_text(f"{base_url}/json")
    assert json.loads(result.text) == {"a": [1, 2], "b": "x"}
    assert fetch_text(f"{base_url}/plain").text == "héllo wörld\n"


def test_binary_content_is_not_dumped(base_url: str) -> None:
    result = fetch_text(f"{base_url}/image")
    assert result.text.startswith("[binary content: image/png")


def test_size_cap_truncates(base_url: str) -> None:
    result = fetch_text(f"{base_url}/big", max_bytes=1_000, max_chars=50_000)
    assert result.truncated and result.text == "a" * 1_000


def test_char_cap_truncates(base_url: str) -> None:
    result = fetch_text(f"{base_url}/long-text", max_chars=100)
    assert result.truncated and result.text == "b" * 100
    assert not fetch_text(f"{base_url}/long-text").truncated


def test_slow_server_times_out(base_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out") as info:
        fetch_text(f"{base_url}/slow", timeout_s=1.0)
    assert time.monotonic() - start < 3
    assert "/slow" in str(info.value)


def test_trickling_body_hits_total_deadline(base_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_text(f"{base_url}/trickle", timeout_s=2.0)
    assert time.monotonic() - start < 2.7  # per-read timeouts alone would end at ~3 s


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/boom", 500)])
def test_http_error_status(base_url: str, path: str, status: int) -> None:
    with pytest.raises(FetchError) as info:
        fetch_text(f"{base_url}{path}")
    assert info.value.status == status
    assert str(status) in str(info.value) and path in str(info.value)


def test_redirects_are_followed(base_url: str) -> None:
    result = fetch_text(f"{base_url}/redirect")
    assert result.url == f"{base_url}/page"
    assert "Main heading" in result.text


def test_redirect_loop_and_bad_redirect(base_url: str) -> None:
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_text(f"{base_url}/loop")
    with pytest.raises(FetchError, match="unsupported URL"):
        fetch_text(f"{base_url}/to-file")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "javascript:1",
                                 "example.com/page", "http://", "http://[::1"])
def test_non_http_scheme_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        fetch_text(url)


def test_connection_refused_is_fetch_error() -> None:
    import socket

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=r"127\.0\.0\.1"):
        fetch_text(f"http://127.0.0.1:{port}/", timeout_s=2)


def test_stdlib_fallback_parser_drops_script_and_style() -> None:
    parser = _TextExtractor()
    parser.feed(PAGE)
    text = "".join(parser.parts)
    assert "Main heading" in text and "do-not-show" not in text and "color" not in text
    assert html_to_text("<p>a</p><p>b</p>").split() == ["a", "b"]
