"""The fault matrix: what a faulty provider answers, per provider kind.

A ``Fault`` turns a provider kind into the ``Reply`` the faulty fake sends to *every* request
(``refused`` faults have no server at all: nothing listens on the port). Kinds are those of
providers.yaml; gemini speaks the Gemini wire format, the others the OpenAI one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.provider_clients import KINDS, fake_kind, gemini_429_body

__all__ = ["FAULTS", "KINDS", "Fault", "cells", "fake_kind", "post_count", "refused_url"]

HANG_TIMEOUT_S = 1.0  # the faulty provider's ``timeout_s`` in the hang cells
RETRY_AFTER_S = 30  # far beyond a run: a provider that asked to wait is not asked again
SHORT_RETRY_AFTER_S = 0.2  # over before the next call: the provider is asked again, and refuses again


def _quota_body(kind: str) -> object:
    """A 429 body with no wait hint in it."""
    if kind == "gemini":
        return {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                          "status": "RESOURCE_EXHAUSTED"}}
    return {"error": {"message": "Rate limit reached. Please try again later.", "type": "requests",
                      "code": "rate_limit_exceeded"}}


def _resource_exhausted(kind: str) -> Reply:
    """Gemini's RESOURCE_EXHAUSTED (QuotaFailure + RetryInfo). On the OpenAI protocol it is what
    Gemini's OpenAI-compatible endpoint sends: the same error, wrapped in a JSON *list*."""
    body = gemini_429_body(f"{RETRY_AFTER_S}s")
    return Reply.rate_limit(body=body if kind == "gemini" else [body])


def _resource_exhausted_per_day(kind: str) -> Reply:
    body = gemini_429_body("12s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    return Reply.rate_limit(body=body)


def _empty_choices(kind: str) -> Reply:
    if kind == "gemini":  # a prompt blocked before any candidate
        return Reply.raw(200, '{"candidates": [], "promptFeedback": {"blockReason": "OTHER"}, '
                              '"usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}')
    return Reply.raw(200, '{"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "m", '
                          '"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}}')


@dataclass(frozen=True)
class Fault:
    name: str
    reply: Callable[[str], Reply] | None  # None: connection refused (no server)
    kinds: tuple[str, ...] = KINDS
    timeout_s: float | None = None  # the faulty provider's client timeout, if the fault needs a short one
    # how long the provider is left alone afterwards (as `usage` shows it): "retry-after" (the hint,
    # RETRY_AFTER_S), "default" (60 s), "day" (the rest of the quota day), "streak" (failure_cooldown_seconds
    # after 3 failures in a row), None (not cooled down: a rejected key disables it instead)
    cooldown: str | None = "streak"
    task_seconds: float = 0.0  # how long each task runs (the fake executor sleeps)

    def for_kind(self, kind: str) -> Reply | None:
        return None if self.reply is None else self.reply(kind)


FAULTS: tuple[Fault, ...] = (
    Fault("429 + retry-after", lambda k: Reply.rate_limit(headers={"retry-after": str(RETRY_AFTER_S)},
                                                          body=_quota_body(k)), cooldown="retry-after"),
    Fault("429, no retry-after", lambda k: Reply.rate_limit(body=_quota_body(k)), cooldown="default"),
    Fault("429 + short retry-after, every time", lambda k: Reply.rate_limit(
        headers={"retry-after": f"{SHORT_RETRY_AFTER_S:g}"}, body=_quota_body(k)), task_seconds=0.3),
    Fault("429 RESOURCE_EXHAUSTED", _resource_exhausted, cooldown="retry-after"),
    Fault("429 RESOURCE_EXHAUSTED per day", _resource_exhausted_per_day, kinds=("gemini",), cooldown="day"),
    Fault("500", lambda k: Reply.error(500)),
    Fault("503", lambda k: Reply.error(503)),
    Fault("connection refused", None),
    Fault("no response (hang)", lambda k: Reply.hang(60), timeout_s=HANG_TIMEOUT_S),
    Fault("non-JSON 200", lambda k: Reply.garbage(200)),
    Fault("empty 200", lambda k: Reply.raw(200, b"")),
    Fault("empty choices", _empty_choices),
    Fault("401", lambda k: Reply.auth_error(), cooldown=None),
)


def cells() -> list[tuple[str, Fault]]:
    """(kind, fault) for every fault that applies to the kind."""
    return [(kind, fault) for fault in FAULTS for kind in KINDS if kind in fault.kinds]


def refused_url() -> str:
    """A loopback URL nothing listens on (a port the OS just gave out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def post_count(fp: FakeProvider | None) -> int:
    """Chat requests a fake received (0 for a provider with no server)."""
    return 0 if fp is None else sum(1 for r in fp.requests if r.method == "POST")
