"""QuotaAwareChatModel over the real LangChain clients of every provider kind, against loopback fakes.

Each test builds the wrapper with ``build_chat_model(config_dir, home)`` from a temp config
whose first provider ("primary") is the kind under test and whose second ("backup") is an
OpenAI-compatible fake: what the user sees is which provider answered, what the fake
servers received, and what got persisted in ``agent.db``. Streaming, async, structured output
and task-type routing are in ``tests/test_provider_clients_modes.py``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import AIMessage

from free_llm_agent.providers import AllProvidersExhausted, build_chat_model
from tests.fakes.provider_server import Reply, ratelimit_headers
from tests.support.config import ConfigFactory, FakeFactory, key_env_for
from tests.support.provider_clients import (
    SetupFactory,
    completions,
    fake_kind,
    gemini_429_body,
    rate_limited,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends]


# --------------------------------------------------------------------------- success


def test_success_text_metadata_and_usage(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.text("hello from the fake", prompt_tokens=7, completion_tokens=3))
    msg = s.llm.invoke("say hello")
    assert isinstance(msg, AIMessage)
    assert msg.content == "hello from the fake"
    assert msg.response_metadata["provider"] == "primary"
    assert msg.response_metadata["model"] == "primary-model"
    assert msg.response_metadata["cached"] is False
    assert msg.usage_metadata is not None
    assert (msg.usage_metadata["input_tokens"], msg.usage_metadata["output_tokens"]) == (7, 3)
    assert completions(s.primary) == 1 and completions(s.backup) == 0
    assert "say hello" in s.primary.requests[0].text
    # the request is booked with its real token use
    counts = s.llm.router.quota.counts("primary", time.time())
    assert counts["requests_day"] == 1 and counts["tokens_day"] == 10
    # the user's key is what the client sent
    req = s.primary.requests[0]
    sent = req.headers.get("x-goog-api-key") or req.headers.get("authorization", "")
    assert "test-key" in sent


# --------------------------------------------------------------------------- 429


def test_429_cools_down_falls_back_and_comes_back_after_deadline(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(rate_limited(kind, 1.5))
    before = time.time()
    msg = s.llm.invoke("first")
    assert msg.response_metadata["provider"] == "backup"
    assert msg.content == "ok"
    assert completions(s.primary) == 1 and completions(s.backup) == 1

    until, reason = s.cooldown()
    assert before + 1.4 <= until <= time.time() + 1.6, (until - before, reason)
    assert "429" in reason
    # persisted: a fresh process (new Router on the same home) sees it too
    fresh = build_chat_model(s.config_dir, s.llm.router.home)
    assert fresh.router.quota.cooldown_until("primary")[0] == pytest.approx(until)

    for i in range(4):
        assert s.llm.invoke(f"during cooldown {i}").response_metadata["provider"] == "backup"
    assert time.time() < until, "the calls took too long to prove anything"
    assert completions(s.primary) == 1, "a cooled-down provider must not be contacted"
    assert completions(s.backup) == 5

    time.sleep(max(0.0, until - time.time()) + 0.05)
    msg = s.llm.invoke("after cooldown")
    assert msg.response_metadata["provider"] == "primary"
    assert completions(s.primary) == 2


def test_429_does_not_count_against_local_quota(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, primary={"limits": {"requests_per_day": 5}})
    s.primary.script(rate_limited(kind, 30))
    s.llm.invoke("x")
    assert s.llm.router.quota.counts("primary", time.time())["requests_day"] == 0


def test_gemini_per_day_quota_body_cools_down_until_pacific_midnight(setup: SetupFactory) -> None:
    s = setup("gemini", primary={"limits": {"requests_per_day": 20, "timezone": "America/Los_Angeles"}})
    s.primary.script(Reply.rate_limit(body=gemini_429_body("17s", "GenerateRequestsPerDayPerProjectPerModel-FreeTier")))
    assert s.llm.invoke("x").response_metadata["provider"] == "backup"
    until, _ = s.cooldown()
    la = ZoneInfo("America/Los_Angeles")
    local = datetime.fromtimestamp(until, la)
    assert (local.hour, local.minute, local.second) == (0, 0, 0), local
    assert 0 < until - time.time() <= 86400 + 3600


def test_gemini_stock_quota_body(setup: SetupFactory) -> None:
    """The fake's stock RESOURCE_EXHAUSTED body: RetryInfo 17s and a per-day quota id -> until midnight."""
    s = setup("gemini")
    s.primary.script(Reply.rate_limit(retry_after=17))
    assert s.llm.invoke("x").response_metadata["provider"] == "backup"
    until, _ = s.cooldown()
    now = time.time()
    midnight = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    expected = max(now + 17, datetime.combine(midnight, datetime.min.time(), tzinfo=UTC).timestamp())
    assert until == pytest.approx(expected, abs=2)


@pytest.mark.parametrize("kind", ["groq", "together", "openai_compatible"])
def test_remaining_zero_in_success_headers_cools_down(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    headers = ratelimit_headers(remaining_requests=0, reset_requests="2s", remaining_tokens=5000, reset_tokens="1s")
    s.primary.script(Reply.text("last one", headers=headers))
    msg = s.llm.invoke("x")
    assert msg.response_metadata["provider"] == "primary" and msg.content == "last one"
    assert "headers" not in msg.response_metadata
    until, reason = s.cooldown()
    assert 1.0 < until - time.time() <= 2.1, reason
    assert s.llm.invoke("y").response_metadata["provider"] == "backup"
    assert completions(s.primary) == 1


def test_groq_remaining_requests_corrects_daily_count(setup: SetupFactory) -> None:
    s = setup("groq", primary={"limits": {"requests_per_day": 10}})
    s.primary.script(Reply.text("a", headers=ratelimit_headers(limit_requests=10, remaining_requests=3)))
    s.llm.invoke("x")
    assert s.llm.router.quota.counts("primary", time.time())["requests_day"] == 7


def test_all_providers_429_long_wait_raises_with_earliest_retry_at(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, fallback={"max_wait_seconds": 5})
    s.primary.script(rate_limited(kind, 300))
    s.backup.script(Reply.rate_limit(retry_after=120))
    before = time.time()
    with pytest.raises(AllProvidersExhausted) as info:
        s.llm.invoke("x")
    exc = info.value
    assert exc.retry_at is not None
    assert exc.retry_at.timestamp() == pytest.approx(before + 120, abs=3)
    assert set(exc.reasons) >= {"primary", "backup"}
    assert completions(s.primary) == 1 and completions(s.backup) == 1
    # a second call is refused locally, without contacting anybody
    with pytest.raises(AllProvidersExhausted):
        s.llm.invoke("y")
    assert completions(s.primary) == 1 and completions(s.backup) == 1


def test_all_providers_429_short_wait_waits_then_succeeds(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, fallback={"max_wait_seconds": 10})
    s.primary.script(rate_limited(kind, 1))
    s.backup.script(Reply.rate_limit(retry_after=4))
    started = time.time()
    msg = s.llm.invoke("x")
    waited = time.time() - started
    assert msg.response_metadata["provider"] == "primary"
    assert 0.9 <= waited <= 3.5, waited
    assert completions(s.primary) == 2 and completions(s.backup) == 1


# --------------------------------------------------------------------------- failures


def test_server_error_falls_back(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.error(500))
    msg = s.llm.invoke("x")
    assert msg.response_metadata["provider"] == "backup"
    # one failure is not a streak: the primary is still first for the next call
    assert s.cooldown()[0] <= time.time()
    assert s.llm.invoke("y").response_metadata["provider"] == "primary"


def test_repeated_failures_cool_down(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, fallback={"failure_threshold": 2, "failure_cooldown_seconds": 30})
    s.primary.script(Reply.error(500), Reply.error(503))
    assert s.llm.invoke("a").response_metadata["provider"] == "backup"
    assert s.cooldown()[0] <= time.time()
    assert s.llm.invoke("b").response_metadata["provider"] == "backup"
    until, reason = s.cooldown()
    assert until - time.time() == pytest.approx(30, abs=2)
    assert "2 failures" in reason
    for i in range(3):
        assert s.llm.invoke(f"c{i}").response_metadata["provider"] == "backup"
    assert completions(s.primary) == 2


def test_success_resets_failure_streak(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, fallback={"failure_threshold": 2, "failure_cooldown_seconds": 30})
    s.primary.script(Reply.error(500), Reply.text("fine"), Reply.error(500))
    assert s.llm.invoke("a").response_metadata["provider"] == "backup"
    assert s.llm.invoke("b").response_metadata["provider"] == "primary"
    assert s.llm.invoke("c").response_metadata["provider"] == "backup"
    assert s.cooldown()[0] <= time.time(), "failures separated by a success are not 'in a row'"


def test_timeout_falls_back(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, primary={"timeout_s": 1})
    s.primary.script(Reply.hang(10))
    started = time.time()
    msg = s.llm.invoke("x")
    elapsed = time.time() - started
    assert msg.response_metadata["provider"] == "backup"
    assert 0.9 <= elapsed < 5, elapsed


def test_garbage_body_falls_back(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.garbage())
    msg = s.llm.invoke("x")
    assert msg.response_metadata["provider"] == "backup"
    assert msg.content == "ok"


def test_auth_error_disables_provider_and_names_env_var(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.auth_error())
    msg = s.llm.invoke("x")
    assert msg.response_metadata["provider"] == "backup"
    env = key_env_for("primary")
    assert env in s.llm.router.disabled["primary"]
    for i in range(3):
        assert s.llm.invoke(f"again {i}").response_metadata["provider"] == "backup"
    assert completions(s.primary) == 1, "a rejected key must not be retried in this process"


def test_auth_error_on_only_provider_raises_naming_env_var(
    kind: str, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server(fake_kind(kind))
    fp.script(Reply.auth_error())
    llm = build_chat_model(make_config({"solo": {"kind": kind, "base_url": fp.base_url}}), home)
    with pytest.raises(AllProvidersExhausted) as info:
        llm.invoke("x")
    assert info.value.retry_at is None  # waiting will not help
    assert key_env_for("solo") in str(info.value)


def test_every_provider_failing_is_an_outage_not_a_spent_quota(setup: SetupFactory) -> None:
    s = setup("groq")
    s.primary.script(Reply.error(500))
    s.backup.script(Reply.error(503))
    with pytest.raises(AllProvidersExhausted) as info:
        s.llm.invoke("anyone there?")
    assert info.value.quota is False and info.value.retry_at is not None
    assert set(info.value.reasons) == {"primary", "backup"}
    assert len(s.primary.requests) == 1 and len(s.backup.requests) == 1  # each tried once, no loop
