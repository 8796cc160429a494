"""Builds a QuotaAwareChatModel over two loopback fakes: "primary" (the provider kind under test)
and "backup" (OpenAI-compatible). Shared by ``tests/test_provider_clients.py`` and
``tests/test_provider_clients_modes.py`` (not collected as tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.config import ConfigFactory, FakeFactory

KINDS = ("gemini", "groq", "together", "openai_compatible")


def fake_kind(kind: str) -> str:
    return "gemini" if kind == "gemini" else "openai"


def completions(fp: FakeProvider) -> int:
    """Chat requests the fake received (ignores any model-listing GETs)."""
    return sum(1 for r in fp.requests if r.method == "POST")


@dataclass
class FailoverSetup:
    llm: QuotaAwareChatModel
    primary: FakeProvider
    backup: FakeProvider
    config_dir: Path

    def cooldown(self, name: str = "primary") -> tuple[float, str]:
        return self.llm.router.quota.cooldown_until(name)


SetupFactory = Callable[..., FailoverSetup]


def setup_factory(fake_server: FakeFactory, make_config: ConfigFactory, home: Path) -> SetupFactory:
    """``setup(kind, primary=..., backup=..., fallback=..., optimization=...)``."""

    def make(
        kind: str,
        *,
        primary: Mapping[str, Any] | None = None,
        backup: Mapping[str, Any] | None = None,
        fallback: Mapping[str, Any] | None = None,
        optimization: Mapping[str, Any] | None = None,
    ) -> FailoverSetup:
        p = fake_server(fake_kind(kind))
        b = fake_server("openai")
        cfg = make_config(
            {
                "primary": {"kind": kind, "base_url": p.base_url, **dict(primary or {})},
                "backup": {"kind": "openai_compatible", "base_url": b.base_url, **dict(backup or {})},
            },
            fallback=fallback,
            optimization=optimization,
        )
        llm = build_chat_model(cfg, home)
        for name in ("primary", "backup"):
            llm.router.client(name)  # build the clients now, so timing-sensitive tests time only the calls
        return FailoverSetup(llm, p, b, cfg)

    return make


def gemini_429_body(retry_delay: str, quota_id: str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier") -> Any:
    """A real Gemini RESOURCE_EXHAUSTED body: QuotaFailure + RetryInfo."""
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": quota_id,
                            "quotaValue": "10",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
            ],
        }
    }


def rate_limited(kind: str, seconds: float) -> Reply:
    """A 429 telling the client to come back in ``seconds`` (header or Gemini RetryInfo)."""
    if kind == "gemini":
        return Reply.rate_limit(body=gemini_429_body(f"{seconds:g}s"))
    return Reply.rate_limit(retry_after=seconds)


class City(BaseModel):
    city: str
    population: int
