"""Quota windows, cooldowns, waiting order, auto-optimizer (wait hints / error classification:
``tests/test_quota_errors.py``).

Window arithmetic is tested on QuotaStore directly with explicit ``now`` values (no sleeping);
the cross-process guarantee is tested with real processes sharing one home.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from free_llm_agent.config import ProviderConfig, RateLimit, load_config
from free_llm_agent.providers import AllProvidersExhausted, build_chat_model
from free_llm_agent.providers.quota import QuotaLedger, QuotaStore, Slot, Unavailable
from free_llm_agent.providers.registry import build_client
from free_llm_agent.providers.usage import AutoOptimizer
from free_llm_agent.storage.database import StateDatabase
from free_llm_agent.storage.registry import open_state
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.quota import T0, mp_context, one_token, store_with, take

pytestmark = pytest.mark.both_backends  # tests on ``db``/``database_url`` already run once per backend


@pytest.fixture
def db(tmp_path: Path, database_url: str | None) -> Iterator[StateDatabase]:
    """The state database of each backend in turn (SQLite in a home, a fresh PostgreSQL database)."""
    state = open_state(database_url, tmp_path)
    yield state
    state.close()


# --------------------------------------------------------------------------- processes


def fire_six_calls(config_dir: str, home: str, ready: str, go: str, index: int, out: str,
                   database_url: str | None = None) -> None:
    """One agent process: its own chat model on the shared state, 6 calls once ``go`` exists."""
    llm = build_chat_model(config_dir, home, database_url=database_url)
    for name in ("limited", "other"):
        llm.router.client(name)  # build the clients before the race starts
    Path(ready).touch()
    deadline = time.time() + 60
    while not Path(go).exists() and time.time() < deadline:
        time.sleep(0.002)
    answered = [llm.invoke(f"process {index} call {i}").response_metadata["provider"] for i in range(6)]
    Path(out).write_text(json.dumps(answered))


def test_daily_limit_holds_across_four_processes(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, tmp_path: Path, database_url: str | None
) -> None:
    """SQLite: four processes share one home. PostgreSQL: two "machines" (homes) of two processes each, one
    database."""
    limited, other = fake_server("openai"), fake_server("openai")
    cfg = make_config(
        {
            "limited": {"kind": "openai_compatible", "base_url": limited.base_url, "limits": {"requests_per_day": 5}},
            "other": {"kind": "groq", "base_url": other.base_url},
        }
    )
    go = tmp_path / "go"
    for kind in ("openai_compatible", "groq"):  # warm the client libraries up once; forked children inherit that
        build_client(ProviderConfig(kind=kind, model="warm-up", base_url=limited.base_url), "unused")
    ctx = mp_context()
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=fire_six_calls,
            args=(str(cfg), str(home if database_url is None else tmp_path / f"machine{i % 2}"),
                  str(tmp_path / f"ready{i}"), str(go), i, str(tmp_path / f"out{i}.json"), database_url),
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    try:
        deadline = time.time() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert time.time() < deadline, "children did not start"
            assert all(p.exitcode is None for p in procs), [p.exitcode for p in procs]
            time.sleep(0.01)
        go.touch()
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    answered = [name for i in range(4) for name in json.loads((tmp_path / f"out{i}.json").read_text())]
    n = sum(1 for r in limited.requests if r.method == "POST")
    print(f"limited provider received {n}")
    assert n == 5
    assert answered.count("limited") == 5
    assert answered.count("other") == 19
    assert sum(1 for r in other.requests if r.method == "POST") == 19
    # and the shared store agrees
    llm = build_chat_model(cfg, home, database_url=database_url)
    assert llm.router.quota.counts("limited", time.time())["requests_day"] == 5


# --------------------------------------------------------------------------- windows


def test_minute_window_slides(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_minute=3)})
    for dt in (0.0, 0.1, 0.2):
        assert isinstance(take(store, T0 + dt), Slot)
    refused = take(store, T0 + 1)
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == pytest.approx(T0 + 60, abs=0.01)
    assert "3 requests/minute" in refused.reasons["p"]
    assert isinstance(take(store, T0 + 59.99), Unavailable)
    assert isinstance(take(store, T0 + 60.01), Slot)  # the t+0 request left the window
    assert isinstance(take(store, T0 + 60.05), Unavailable)  # t+0.1 and t+0.2 still in it
    assert isinstance(take(store, T0 + 60.11), Slot)


def test_full_provider_is_skipped_for_the_next(db: StateDatabase) -> None:
    store = store_with(db, {"a": RateLimit(requests_per_minute=1)})
    first = take(store, T0, ("a", "b"))
    second = take(store, T0 + 1, ("a", "b"))
    assert isinstance(first, Slot) and isinstance(second, Slot)
    assert (first.provider, second.provider) == ("a", "b")
    assert second.at == T0 + 1


def test_day_window_uses_configured_timezone(db: StateDatabase) -> None:
    la = ZoneInfo("America/Los_Angeles")
    store = store_with(db, {"p": RateLimit(requests_per_day=1, timezone="America/Los_Angeles")})
    assert isinstance(take(store, datetime(2026, 1, 15, 15, 30, tzinfo=la).timestamp()), Slot)  # 23:30 UTC
    # 00:30 UTC on the 16th is still the 15th in Los Angeles: refused
    refused = take(store, datetime(2026, 1, 15, 16, 30, tzinfo=la).timestamp())
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == datetime(2026, 1, 16, 0, 0, tzinfo=la).timestamp()
    assert "1 requests/day" in refused.reasons["p"]
    assert isinstance(take(store, datetime(2026, 1, 15, 23, 59, 59, tzinfo=la).timestamp()), Unavailable)
    assert isinstance(take(store, datetime(2026, 1, 16, 0, 0, 1, tzinfo=la).timestamp()), Slot)


def test_day_window_defaults_to_utc(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_day=1)})
    assert isinstance(take(store, datetime(2026, 1, 15, 23, 30, tzinfo=UTC).timestamp()), Slot)
    refused = take(store, datetime(2026, 1, 15, 23, 59, tzinfo=UTC).timestamp())
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == datetime(2026, 1, 16, tzinfo=UTC).timestamp()
    assert isinstance(take(store, datetime(2026, 1, 16, 0, 0, 1, tzinfo=UTC).timestamp()), Slot)


def test_month_window_calendar_boundary_in_timezone(db: StateDatabase) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    store = store_with(db, {"p": RateLimit(requests_per_month=2, timezone="Asia/Tokyo")})
    for minute in (0, 1):
        assert isinstance(take(store, datetime(2026, 1, 31, 20, minute, tzinfo=tokyo).timestamp()), Slot)
    refused = take(store, datetime(2026, 1, 31, 23, 59, tzinfo=tokyo).timestamp())
    assert isinstance(refused, Unavailable)
    # February starts at Tokyo midnight, i.e. 15:00 UTC on January 31
    assert refused.retry_at == datetime(2026, 2, 1, tzinfo=tokyo).timestamp()
    assert "2 requests/month" in refused.reasons["p"]
    assert isinstance(take(store, datetime(2026, 2, 1, 0, 0, 1, tzinfo=tokyo).timestamp()), Slot)


def test_month_window_year_rollover(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_month=1)})
    assert isinstance(take(store, datetime(2026, 12, 2, tzinfo=UTC).timestamp()), Slot)
    refused = take(store, datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp())
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_restart_keeps_counts_and_cooldowns(tmp_path: Path, database_url: str | None) -> None:
    limits = {"p": RateLimit(requests_per_day=2)}
    first = store_with(open_state(database_url, tmp_path), limits)
    assert isinstance(take(first, T0), Slot) and isinstance(take(first, T0 + 1), Slot)
    first.cool_down("q", T0 + 500, "429 from provider")

    # SQLite: the same home after a restart; PostgreSQL: another machine's home, the same database
    again = store_with(open_state(database_url, tmp_path if database_url is None else tmp_path / "other"), limits)
    assert again.counts("p", T0 + 2)["requests_day"] == 2
    assert isinstance(take(again, T0 + 2), Unavailable)
    assert again.cooldown_until("q") == (T0 + 500, "429 from provider")
    assert isinstance(take(again, T0 + 2, ("q",)), Unavailable)


def test_tokens_per_minute(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(tokens_per_minute=100)})
    first = store.reserve(["p"], lambda _: 60, T0, 0)
    assert isinstance(first, Slot)
    refused = store.reserve(["p"], lambda _: 60, T0 + 1, 0)
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == pytest.approx(T0 + 60, abs=0.01)
    assert "100 tokens/minute" in refused.reasons["p"]
    store.settle(first, 20, T0 + 0.5)  # the real usage was smaller than the estimate
    assert isinstance(store.reserve(["p"], lambda _: 60, T0 + 1, 0), Slot)
    assert store.counts("p", T0 + 2)["tokens_minute"] == 80


def test_tokens_per_day(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(tokens_per_day=1000)})
    assert isinstance(store.reserve(["p"], lambda _: 900, T0, 0), Slot)
    refused = store.reserve(["p"], lambda _: 200, T0 + 10, 0)
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == datetime(2026, 3, 11, tzinfo=UTC).timestamp()


def test_waiting_is_first_come_first_served(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_minute=1)})
    assert isinstance(take(store, T0), Slot)
    first_waiter = take(store, T0 + 1, max_wait=300)
    second_waiter = take(store, T0 + 2, max_wait=300)
    assert isinstance(first_waiter, Slot) and isinstance(second_waiter, Slot)
    assert first_waiter.at == pytest.approx(T0 + 60, abs=0.01)
    assert second_waiter.at > first_waiter.at + 59  # queued behind the first, one minute later
    # beyond max_wait: refused, and told when
    third = take(store, T0 + 3, max_wait=30)
    assert isinstance(third, Unavailable)
    assert third.retry_at > second_waiter.at


def test_cooldown_longest_deadline_wins(db: StateDatabase) -> None:
    store = store_with(db, {})
    store.cool_down("p", T0 + 100, "long")
    store.cool_down("p", T0 + 50, "short")
    assert store.cooldown_until("p") == (T0 + 100, "long")
    store.cool_down("p", T0 + 200, "longer")
    assert store.cooldown_until("p") == (T0 + 200, "longer")
    refused = take(store, T0 + 150)
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == T0 + 200
    assert isinstance(take(store, T0 + 200.01), Slot)


def test_failure_streak_cools_down_after_threshold(db: StateDatabase) -> None:
    store = store_with(db, {})
    assert not store.record_failure("p", T0, threshold=3, cooldown_s=30)
    assert not store.record_failure("p", T0 + 1, threshold=3, cooldown_s=30)
    assert store.record_failure("p", T0 + 2, threshold=3, cooldown_s=30)
    assert store.cooldown_until("p")[0] == T0 + 32
    assert "3 failures" in store.cooldown_until("p")[1]


def test_released_slot_does_not_count(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_day=1)})
    slot = take(store, T0)
    assert isinstance(slot, Slot)
    store.release(slot)
    assert store.counts("p", T0)["requests_day"] == 0
    assert isinstance(take(store, T0 + 1), Slot)


# --------------------------------------------------------------------------- auto-optimizer


@pytest.fixture
def two_providers(fake_server: FakeFactory, make_config: ConfigFactory) -> Callable[..., Any]:
    def make(**limits_a: Any) -> tuple[Path, Any, Any]:
        a, b = fake_server("openai"), fake_server("openai")
        cfg = make_config(
            {
                "a": {"kind": "openai_compatible", "base_url": a.base_url, "limits": limits_a},
                "b": {"kind": "openai_compatible", "base_url": b.base_url},
            }
        )
        return cfg, a, b

    return make


def fill(store: QuotaLedger, name: str, n: int, now: float) -> None:
    for i in range(n):
        assert isinstance(store.reserve([name], one_token, now - n + i, 0), Slot)


@pytest.mark.parametrize(
    ("used", "expected"),
    [(9, "REDUCE_USAGE"), (8, "OPTIMAL"), (5, "OPTIMAL"), (3, "OPTIMAL"), (2, "CAN_INCREASE"), (0, "CAN_INCREASE")],
)
def test_recommendations(two_providers: Callable[..., Any], db: StateDatabase, used: int, expected: str) -> None:
    cfg, _, _ = two_providers(requests_per_day=10)
    config = load_config(cfg)
    store = QuotaStore(db, config.limit_for)
    now = time.time()
    fill(store, "a", used, now)
    assert AutoOptimizer(config, store).recommend("a", now) == expected


def test_monthly_limit_drives_recommendation(make_config: ConfigFactory, db: StateDatabase) -> None:
    spec = {"kind": "together", "base_url": "http://127.0.0.1:9", "limits": {"requests_per_month": 10}}
    cfg = make_config({"m": spec})
    config = load_config(cfg)
    store = QuotaStore(db, config.limit_for)
    fill(store, "m", 9, T0)
    assert AutoOptimizer(config, store).recommend("m", T0) == "REDUCE_USAGE"


def test_provider_above_safety_margin_used_only_when_nothing_else_is_free(
    two_providers: Callable[..., Any], home: Path
) -> None:
    cfg, a, b = two_providers(requests_per_day=10)
    llm = build_chat_model(cfg, home)
    quota = llm.router.quota
    fill(quota, "a", 8, time.time())
    assert llm.invoke("below the margin").response_metadata["provider"] == "a"  # 9/10 now: 0.9 >= margin
    assert llm.invoke("above the margin").response_metadata["provider"] == "b"
    assert llm.invoke("still above").response_metadata["provider"] == "b"
    quota.cool_down("b", time.time() + 120, "test: b is out")
    assert llm.invoke("nothing else is free").response_metadata["provider"] == "a"  # uses its last request
    with pytest.raises(AllProvidersExhausted) as info:
        llm.invoke("really nothing left")
    assert set(info.value.reasons) == {"a", "b"}
    assert "10 requests/day" in info.value.reasons["a"]
    assert sum(1 for r in a.requests if r.method == "POST") == 2
    assert sum(1 for r in b.requests if r.method == "POST") == 2
