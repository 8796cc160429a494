"""Wait-hint parsing (durations, ``Retry-After`` / ``x-ratelimit-*`` headers) and the classification
of provider errors into rate limit / auth / bad request / transient."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from free_llm_agent.providers.errors import ErrorKind, classify, parse_duration, wait_from_headers

# --------------------------------------------------------------------------- wait hints


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6s", 6.0), ("1m30s", 90.0), ("100ms", 0.1), ("2h0m0.5s", 7200.5), ("17.5", 17.5), ("7.66s", 7.66)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1m30", "s"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_wait_from_retry_after_seconds_and_http_date() -> None:
    assert wait_from_headers({"Retry-After": "7"}) == 7.0
    now = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert wait_from_headers({"retry-after": date}, now=now) == pytest.approx(30.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert wait_from_headers({"retry-after": past}, now=now) == 0.0


def test_wait_from_retry_after_ms_wins() -> None:
    assert wait_from_headers({"retry-after-ms": "1500", "retry-after": "2"}) == pytest.approx(1.5)


def test_wait_from_ratelimit_reset_headers() -> None:
    exhausted = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m26s"}
    assert wait_from_headers(exhausted) == pytest.approx(86.0)
    # a budget that is not spent is no reason to wait
    assert wait_from_headers({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1m26s"}) is None
    both = {**exhausted, "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6s"}
    assert wait_from_headers(both) == pytest.approx(86.0)
    assert wait_from_headers({}) is None


# --------------------------------------------------------------------------- classify


class StatusError(Exception):
    def __init__(self, message: str, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = httpx.Response(status_code, headers=headers or {})


class RateLimitError(Exception):
    """Named like the SDKs' 429 classes, with no status attached."""


def raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        raise outer from inner
    except Exception as exc:
        return exc


def test_classify_429_with_retry_after_header() -> None:
    info = classify(StatusError("Too Many Requests", 429, {"Retry-After": "12"}))
    assert info.kind is ErrorKind.RATE_LIMIT
    assert (info.status, info.wait_s) == (429, 12.0)


def test_classify_httpx_status_error() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/chat/completions")
    response = httpx.Response(429, headers={"retry-after-ms": "2500"}, request=request)
    info = classify(httpx.HTTPStatusError("429", request=request, response=response))
    assert info.kind is ErrorKind.RATE_LIMIT and info.wait_s == pytest.approx(2.5)


def test_classify_walks_the_cause_chain() -> None:
    info = classify(raised_from(RuntimeError("wrapped"), StatusError("bad gateway", 502)))
    assert info.kind is ErrorKind.TRANSIENT and info.status == 502
    info = classify(raised_from(ValueError("wrapped"), StatusError("slow down", 429, {"retry-after": "3"})))
    assert info.kind is ErrorKind.RATE_LIMIT and info.wait_s == 3.0


def test_classify_gemini_style_bodies() -> None:
    text = (
        "429 RESOURCE_EXHAUSTED. {'error': {'details': "
        "[{'@type': 'type.googleapis.com/google.rpc.RetryInfo', 'retryDelay': '17s'}]}}"
    )
    info = classify(Exception(text))
    assert info.kind is ErrorKind.RATE_LIMIT and info.wait_s == 17.0 and not info.per_day
    per_day = "RESOURCE_EXHAUSTED quotaId GenerateRequestsPerDayPerProjectPerModel. Please retry in 250ms"
    info = classify(Exception(per_day))
    assert info.kind is ErrorKind.RATE_LIMIT and info.wait_s == pytest.approx(0.25) and info.per_day
    bad_key = "400 INVALID_ARGUMENT. API key not valid. Please pass a valid API key. reason API_KEY_INVALID"
    assert classify(StatusError(bad_key, 400)).kind is ErrorKind.AUTH


def test_classify_rate_limit_by_class_name() -> None:
    assert classify(RateLimitError("slow down")).kind is ErrorKind.RATE_LIMIT


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (StatusError("unauthorized", 401), ErrorKind.AUTH),
        (StatusError("forbidden", 403), ErrorKind.AUTH),
        (StatusError("no such model", 404), ErrorKind.BAD_REQUEST),
        (StatusError("bad", 400), ErrorKind.BAD_REQUEST),
        (StatusError("request timeout", 408), ErrorKind.TRANSIENT),
        (StatusError("boom", 500), ErrorKind.TRANSIENT),
        (StatusError("overloaded", 503), ErrorKind.TRANSIENT),
        (TimeoutError("read timed out"), ErrorKind.TRANSIENT),
        (json.JSONDecodeError("Expecting value", "<html>", 0), ErrorKind.TRANSIENT),
        (ConnectionRefusedError("connection refused"), ErrorKind.TRANSIENT),
    ],
)
def test_classify_by_status(exc: Exception, kind: ErrorKind) -> None:
    assert classify(exc).kind is kind


def test_classify_ignores_string_error_codes() -> None:
    exc = StatusError("rate limited", 429)
    exc.code = "rate_limit_exceeded"  # type: ignore[attr-defined]  # openai puts the body's code here
    info = classify(exc)
    assert info.kind is ErrorKind.RATE_LIMIT and info.status == 429
