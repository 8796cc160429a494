"""Classify provider failures by HTTP status (not exception class) and read wait hints.

Client libraries disagree on exception classes (``groq.RateLimitError`` is not a
LangChain ``ModelRateLimitError``; Gemini wraps ``google.genai`` errors), so we
walk the exception chain for a status code and response headers/body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    RATE_LIMIT = "rate_limited"  # 429: cool down until the provider says, try the next one
    AUTH = "auth"  # 401/403: key missing or wrong; disable for this process
    TRANSIENT = "error"  # 5xx, timeout, connection, garbage: next provider, count failures
    BAD_REQUEST = "bad_request"  # 400/404/422: this provider cannot serve this request


class AllProvidersExhausted(RuntimeError):
    """Every usable provider is out of quota, cooling down or failing.

    ``retry_at`` is when the earliest provider frees up (None when none ever will,
    e.g. every key is invalid); ``reasons`` maps provider name to why it was skipped.
    ``quota`` is False when the providers were not out of quota but failing (5xx,
    timeouts, garbage) — an outage, not a spent budget. ``keys_rejected``: every provider's key was
    rejected (401/403) — none will answer in this process, so retrying only waits.
    """

    def __init__(self, retry_at: datetime | None, reasons: Mapping[str, str], *, quota: bool = True,
                 keys_rejected: bool = False) -> None:
        self.retry_at = retry_at
        self.reasons = dict(reasons)
        self.quota = quota
        self.keys_rejected = keys_rejected
        when = f"retry after {retry_at.isoformat(timespec='seconds')}" if retry_at else "no provider will free up"
        detail = "; ".join(f"{k}: {v}" for k, v in self.reasons.items()) or "no provider is configured"
        super().__init__(f"all providers exhausted ({when}): {detail}")


class EmptyAnswer(RuntimeError):
    """The provider answered 200 with nothing in it (no text, no tool call): safety blocks, an output
    budget spent on thinking. A failure of that provider: next provider, failure streak, never cached."""


class NoUsableProvider(RuntimeError):
    """No provider has a key (or is enabled); the message lists what would fix it."""

    key_var: str | None = None  # the key variable of the provider routing would try first: the one to set


@dataclass
class ErrorInfo:
    kind: ErrorKind
    status: int | None
    message: str
    wait_s: float | None = None  # how long the provider asked us to wait
    per_day: bool = False  # a daily quota ran out (Gemini QuotaFailure ...PerDay...)
    headers: dict[str, str] = field(default_factory=dict)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """``6s`` / ``1m30s`` / ``100ms`` / ``2h0m0.5s`` / ``17.5`` -> seconds."""
    text = text.strip().lower()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def wait_from_headers(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after(-ms)`` or exhausted ``x-ratelimit-reset-*``."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        ms = parse_duration(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000.0
    if "retry-after" in h:
        value = h["retry-after"].strip()
        secs = parse_duration(value)
        if secs is not None:
            return secs
        try:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - (now or datetime.now(when.tzinfo))).total_seconds())
        except (TypeError, ValueError):
            pass
    resets = []
    for kind in ("requests", "tokens"):
        reset = parse_duration(h.get(f"x-ratelimit-reset-{kind}", ""))
        remaining = h.get(f"x-ratelimit-remaining-{kind}")
        if reset is not None and (remaining is None or remaining.strip() in ("0", "0.0")):
            resets.append(reset)
    return max(resets) if resets else None


_RETRY_DELAY = re.compile(r"retry_?delay['\"]?\s*[:=]\s*['\"]?(\d+(?:\.\d+)?)s", re.IGNORECASE)
_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _headers(exc: BaseException) -> dict[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        return {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
    except (TypeError, ValueError):
        return {}


def _body_text(exc: BaseException) -> str:
    parts = [str(exc)]
    for attr in ("details", "body", "response_json"):
        value: Any = getattr(exc, attr, None)
        if value:
            parts.append(value if isinstance(value, str) else json.dumps(value, default=str))
    return "\n".join(parts)


def failed_generation(exc: BaseException) -> str | None:
    """The model's answer inside a 400 ``tool_use_failed`` (Groq: the model wrote a tool call the
    provider could not parse or validate against the schema, and returned it as ``failed_generation``).
    That is an answer to read, not a failure of the provider. None for every other error."""
    for err in _chain(exc):
        body: Any = getattr(err, "body", None)
        if isinstance(body, str | bytes):
            try:
                body = json.loads(body)
            except ValueError:
                continue
        inner = body.get("error", body) if isinstance(body, dict) else None
        if isinstance(inner, dict) and inner.get("code") == "tool_use_failed":
            text = inner.get("failed_generation")
            return text if isinstance(text, str) else None
    return None


def classify(exc: BaseException) -> ErrorInfo:
    """What went wrong, by status code first, then by exception name."""
    chain = _chain(exc)
    status = next((s for s in map(_status, chain) if s is not None), None)
    headers = next((h for h in map(_headers, chain) if h), {})
    text = "\n".join(_body_text(e) for e in chain)
    message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}".strip()
    names = " ".join(type(e).__name__ for e in chain).lower()
    if status == 429 or "resource_exhausted" in text.lower() or "ratelimit" in names:
        wait = wait_from_headers(headers)
        for pattern, scale in ((_RETRY_DELAY, 1.0), (_RETRY_IN, None)):
            match = pattern.search(text)
            if match and wait is None:
                unit = match.group(2) if scale is None else "s"
                wait = float(match.group(1)) * (0.001 if unit == "ms" else 1.0)
        per_day = bool(re.search(r"PerDay", text))
        return ErrorInfo(ErrorKind.RATE_LIMIT, status or 429, message, wait, per_day, headers)
    # A wrong Gemini key is answered 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    if status in (401, 403) or "authentication" in names or "permissiondenied" in names or "API_KEY_INVALID" in text:
        return ErrorInfo(ErrorKind.AUTH, status, message, headers=headers)
    if status is not None and 400 <= status < 500 and status not in (408, 409, 425):
        return ErrorInfo(ErrorKind.BAD_REQUEST, status, message, headers=headers)
    return ErrorInfo(ErrorKind.TRANSIENT, status, message, headers=headers)
