"""The stores of the providers room on each backend's state database: quota, cache, usage log, answer grades."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import AIMessage

from free_llm_agent.config import RateLimit, load_config
from free_llm_agent.providers.answers import WINDOW, AnswerLog
from free_llm_agent.providers.cache import ResponseCache
from free_llm_agent.providers.quota import QuotaStore, Slot, Unavailable
from free_llm_agent.providers.usage import UsageEvent, UsageTracker
from free_llm_agent.storage.database import StateDatabase
from free_llm_agent.storage.registry import open_state

pytestmark = pytest.mark.both_backends

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def db(url: str | None, store_home: Path) -> Iterator[StateDatabase]:
    state = open_state(url, store_home)
    yield state
    state.close()


def quota(db: StateDatabase, **limit: int) -> QuotaStore:
    return QuotaStore(db, lambda _name: RateLimit(**limit))  # type: ignore[arg-type]


def tokens(n: int) -> Callable[[str], int]:
    return lambda _name: n


def test_a_reservation_is_settled_with_its_real_tokens(db: StateDatabase) -> None:
    store = quota(db, requests_per_day=2)
    slot = store.reserve(["p"], tokens(10), T0, 0)
    assert isinstance(slot, Slot) and slot.provider == "p"
    leaving = store.sent(slot, T0)
    assert leaving is not None
    store.settle(leaving, 42, T0)
    counts = store.counts("p", T0)
    assert (counts["requests_day"], counts["tokens_day"], counts["requests_month"]) == (1, 42, 1)


def test_a_released_slot_is_given_back(db: StateDatabase) -> None:
    store = quota(db, requests_per_minute=1)
    slot = store.reserve(["p"], tokens(1), T0, 0)
    assert isinstance(slot, Slot)
    assert isinstance(store.reserve(["p"], tokens(1), T0 + 1, 0), Unavailable)
    store.release(slot)
    assert store.counts("p", T0 + 1)["requests_minute"] == 0
    assert isinstance(store.reserve(["p"], tokens(1), T0 + 1, 0), Slot)


def test_a_limit_reached_holds_for_another_open_of_the_same_store(
        db: StateDatabase, url: str | None, store_home: Path) -> None:
    store = quota(db, requests_per_day=1)
    first = store.reserve(["p"], tokens(1), T0, 0)
    assert isinstance(first, Slot)
    store.settle(first, 1, T0)
    store.cool_down("q", T0 + 30, "429")
    other = open_state(url, store_home)
    try:
        again = quota(other, requests_per_day=1)
        refused = again.reserve(["p", "q"], tokens(1), T0 + 1, 0)
        assert isinstance(refused, Unavailable)
        assert "1 requests/day" in refused.reasons["p"] and "429" in refused.reasons["q"]
        assert again.cooldown_until("q") == (T0 + 30, "429")
    finally:
        other.close()



def test_a_provider_named_with_quotes_commas_and_braces_is_counted_like_any_other(db: StateDatabase) -> None:
    name = 'my "fast",{free} tier\\ NULL'
    store = quota(db, requests_per_day=1)
    slot = store.reserve([name, "p"], tokens(5), T0, 0)
    assert isinstance(slot, Slot) and slot.provider == name
    leaving = store.sent(slot, T0)
    assert leaving is not None
    store.settle(leaving, 7, T0)
    assert (store.counts(name, T0)["requests_day"], store.counts(name, T0)["tokens_day"]) == (1, 7)
    refused = store.reserve([name], tokens(5), T0 + 1, 0)
    assert isinstance(refused, Unavailable) and list(refused.reasons) == [name]
    assert "1 requests/day used" in refused.reasons[name]


def test_a_wait_days_ahead_lands_in_the_day_it_falls_in(db: StateDatabase) -> None:
    """A cooldown of three days on a provider limited to 1 a day: the waiter goes when the cooldown ends, the
    next one at the midnight after that (days past the ones a reservation usually looks at)."""
    store = quota(db, requests_per_day=1)
    assert isinstance(store.reserve(["p"], tokens(1), T0, 0), Slot)
    store.cool_down("p", T0 + 3 * 86400, "429")
    first = store.reserve(["p"], tokens(1), T0 + 1, 5 * 86400)
    second = store.reserve(["p"], tokens(1), T0 + 2, 5 * 86400)
    assert isinstance(first, Slot) and isinstance(second, Slot)
    assert first.at == T0 + 3 * 86400
    assert second.at == datetime(2026, 3, 14, tzinfo=UTC).timestamp()
    assert store.counts("p", first.at)["requests_day"] == 1 and store.counts("p", second.at)["requests_day"] == 1


def test_a_monthly_limit_waits_for_the_first_of_next_month_in_the_providers_timezone(db: StateDatabase) -> None:
    new_york = ZoneInfo("America/New_York")
    store = QuotaStore(db, lambda _name: RateLimit(requests_per_month=1, timezone="America/New_York"))
    assert isinstance(store.reserve(["p"], tokens(1), T0, 0), Slot)
    refused = store.reserve(["p"], tokens(1), T0 + 1, 0)
    assert isinstance(refused, Unavailable) and "1 requests/month used" in refused.reasons["p"]
    assert refused.retry_at == datetime(2026, 4, 1, tzinfo=new_york).timestamp()  # 04:00 UTC: daylight time
    later = store.reserve(["p"], tokens(1), T0 + 1, 40 * 86400)
    assert isinstance(later, Slot) and later.at == refused.retry_at
    assert store.counts("p", later.at)["requests_month"] == 1

def test_the_cache_puts_gets_expires_and_evicts(db: StateDatabase) -> None:
    cache = ResponseCache(db, ttl_s=60)
    cache.put("k", AIMessage(content="hello"), T0)
    got = cache.get("k", T0 + 1)
    assert got is not None and got.content == "hello"
    assert cache.get("k", T0 + 61) is None  # past its time to live
    assert cache.get("other", T0 + 1) is None
    cache.evict("k")
    assert cache.get("k", T0 + 1) is None


def test_the_usage_log_counts_today_and_rolls_old_days_up(
        db: StateDatabase, make_config: Callable[..., Path]) -> None:
    config = load_config(make_config({"p": {"kind": "groq"}}))
    usage = UsageTracker(db, config)
    usage.log(UsageEvent("p", "m", "ok", tokens_in=3, tokens_out=4), now=T0)
    usage.log(UsageEvent("p", "m", "ok", cached=True), now=T0 + 1)
    usage.log(UsageEvent("p", "m", "rate_limited"), now=T0 + 2)
    today = usage.get_daily_usage("p", now=T0 + 3)
    assert (today["requests"], today["tokens"]) == (2, 7)
    later = T0 + (config.limits.optimization.usage_log_retention_days + 2) * 86400
    assert usage.rollup(later) == 3
    assert db.query("SELECT COUNT(*) FROM usage_log") == [(0,)]
    assert db.query("SELECT SUM(requests) FROM usage_daily WHERE provider = 'p'")[0][0] == 3


def test_answer_grades_keep_a_window_per_provider_and_purpose(db: StateDatabase) -> None:
    log = AnswerLog(db)
    for i in range(WINDOW + 5):
        log.grade("p", "code", "usable" if i % 2 else "unusable", T0 + i)
    log.grade("q", "plan", "repaired", T0)
    grades = log.grades()
    assert grades["p"]["code"].total == WINDOW
    assert (grades["q"]["plan"].repaired, grades["q"]["plan"].total) == (1, 1)
    assert log.asks("code") == WINDOW + 5 and log.asks("plan") == 1
    assert set(log.for_purpose("plan")) == {"q"}
    with pytest.raises(ValueError, match="unknown answer grade"):
        log.grade("p", "code", "great", T0)  # type: ignore[arg-type]
