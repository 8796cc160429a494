"""``forecast GOAL`` / ``run --dry-run GOAL``: the requests a goal is likely to need (this home's history), the
quota left per provider now and after each reset, and when it would finish — without sending anything.

The arithmetic (:mod:`runtime.forecast`) on made-up quota; then the real CLI against a fake provider: a home
with history and its day half used, forecast, run, compare."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from free_llm_agent.config import RateLimit
from free_llm_agent.runtime.forecast import (
    PastRun,
    ProviderNow,
    expected_requests,
    forecast,
    schedule,
    structural,
)
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.cli import as_json, cli

pytestmark = pytest.mark.timeout(300)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()  # a Tuesday, noon UTC (04:00 in Los Angeles)
LA = ZoneInfo("America/Los_Angeles")
LA_MIDNIGHT = datetime(2026, 3, 11, tzinfo=LA).timestamp()


def _gemini(used_day: int = 0, **limit: int) -> ProviderNow:
    lim = RateLimit(**({"requests_per_minute": 5, "requests_per_day": 20} | limit), timezone="America/Los_Angeles")
    return ProviderNow("google_gemini", lim, used_day=used_day, used_month=used_day)


def _groq(used_day: int = 0, rpd: int = 3) -> ProviderNow:
    return ProviderNow("groq_llama", RateLimit(requests_per_minute=30, requests_per_day=rpd), used_day=used_day,
                       used_month=used_day)


# ------------------------------------------------------------------------------------------- expected requests
def test_without_history_the_plan_is_the_specs_3_to_5_tasks() -> None:
    exp = expected_requests("anything", [], batch=3)
    assert exp.plan_tasks == (3, 4, 5) and exp.runs == 0
    assert (exp.low, exp.typical, exp.high) == (3, 5, 5)  # 1 + 2 per batch of 3: 3 tasks -> 3, 4 or 5 -> 5
    assert "3–5 tasks" in exp.basis
    assert expected_requests("anything", [], batch=1).typical == 1 + 2 * 4


def test_history_gives_the_plan_sizes_and_the_extra_requests_runs_needed() -> None:
    history = [PastRun("a", 2, 3), PastRun("b", 6, 5), PastRun("c", 4, 7)]  # c needed 2 more than 1 + 2*2
    exp = expected_requests("new goal", history, batch=3)
    assert exp.plan_tasks == (2, 4, 6) and not exp.same_goal and exp.runs == 3
    assert (exp.low, exp.typical, exp.high) == (structural(2, 3), structural(4, 3), structural(6, 3) + 2)
    # earlier runs of the same goal (spacing and case aside) are the better guess
    again = expected_requests("B  ", [*history, PastRun("b", 6, 5)], batch=3)
    assert again.same_goal and again.plan_tasks == (6, 6, 6) and again.typical == 5 and "this goal" in again.basis


def test_many_runs_use_the_10th_and_90th_percentiles() -> None:
    history = [PastRun(f"g{i}", 3, 3) for i in range(18)] + [PastRun("huge", 30, 21), PastRun("tiny", 1, 3)]
    exp = expected_requests("x", history, batch=3)
    assert exp.plan_tasks == (3, 3, 3) and exp.typical == 3


# ----------------------------------------------------------------------------------------- schedule and verdict
def test_it_fits_now_when_the_quota_left_covers_it() -> None:
    out = forecast("g", [], [_gemini(), _groq()], now=NOW, batch=3, margin=1.0, tz=UTC)
    assert out["verdict"]["fits_now"] is True and out["verdict"]["reason"].startswith("fits now")
    assert [p["would_take"] for p in out["providers"]] == [5, 0]  # routing order: gemini first
    gem = out["providers"][0]
    assert gem["left_now"] == 20 and gem["per_minute"] == 5
    assert gem["resets"] == [{"window": "day", "at": datetime.fromtimestamp(LA_MIDNIGHT).astimezone().isoformat(),
                              "left": 20}]


def test_a_short_day_finishes_when_the_provider_resets() -> None:
    # 2 left on gemini: 5 requests need its next day (midnight in Los Angeles = 07:00 UTC, daylight saving time)
    out = forecast("g", [], [_gemini(used_day=18)], now=NOW, batch=3, margin=1.0, tz=UTC)
    verdict = out["verdict"]
    assert verdict["fits_now"] is False
    assert datetime.fromisoformat(verdict["finishes_at"]).timestamp() == LA_MIDNIGHT
    assert verdict["reason"].startswith("finishes around Wed 11 Mar 07:00 when google_gemini resets (its daily")
    assert "2 of them before the first reset" in verdict["reason"]
    assert out["providers"][0]["left_now"] == 2 and out["providers"][0]["resets"][0]["left"] == 20

    # with groq's day spent too, groq's reset (midnight UTC) comes first and lets the other 3 through
    out = forecast("g", [], [_gemini(used_day=18), _groq(used_day=3)], now=NOW, batch=3, margin=1.0, tz=UTC)
    assert out["verdict"]["reason"].startswith("finishes around Wed 11 Mar 00:00 when groq_llama resets")
    assert [(p["name"], p["left_now"], p["would_take"]) for p in out["providers"]] == [
        ("google_gemini", 2, 2), ("groq_llama", 0, 3)]


def test_another_providers_quota_is_used_before_waiting_for_a_reset() -> None:
    out = forecast("g", [], [_gemini(used_day=18), _groq(rpd=1000)], now=NOW, batch=3, margin=1.0, tz=UTC)
    assert out["verdict"]["fits_now"] is True
    assert [p["would_take"] for p in out["providers"]] == [2, 3]


def test_per_minute_limits_pace_the_run_but_it_still_fits_now() -> None:
    gem = ProviderNow("p", RateLimit(requests_per_minute=2, requests_per_day=100))
    plan = schedule([gem], 5, NOW, margin=1.0)
    assert plan.finish == pytest.approx(NOW + 2 * 61, abs=0.01)  # 2, then 2 a minute (+ the margin) later, then 1
    assert [w.calendar for w in plan.waits] == [False, False]
    out = forecast("g", [], [gem], now=NOW, batch=3, margin=1.0, tz=UTC)
    assert out["verdict"]["fits_now"] is True and "paced by per-minute limits" in out["verdict"]["reason"]


def test_a_cooldown_and_a_monthly_quota_are_waited_for() -> None:
    cooling = ProviderNow("p", RateLimit(requests_per_minute=10), cooling_until=NOW + 600, cooling_reason="429")
    out = forecast("g", [], [cooling], now=NOW, batch=3, tz=UTC)
    assert out["verdict"]["fits_now"] is False and "when p's cooldown ends" in out["verdict"]["reason"]
    assert datetime.fromisoformat(out["verdict"]["finishes_at"]).timestamp() == NOW + 600
    assert out["providers"][0]["left_now"] == 0

    monthly = ProviderNow("m", RateLimit(requests_per_month=200), used_month=199)
    out = forecast("g", [], [monthly], now=NOW, batch=3, tz=UTC)
    assert "when m resets (its monthly quota)" in out["verdict"]["reason"]
    assert datetime.fromisoformat(out["verdict"]["finishes_at"]).timestamp() == \
        datetime(2026, 4, 1, tzinfo=UTC).timestamp()
    assert out["providers"][0]["resets"][0]["left"] == 200


def test_no_provider_able_to_take_a_request_is_never() -> None:
    out = forecast("g", [], [ProviderNow("p", RateLimit(requests_per_minute=0))], now=NOW, batch=3, tz=UTC)
    assert out["verdict"]["fits_now"] is False and out["verdict"]["finishes_at"] is None
    assert out["verdict"]["reason"].startswith("no provider can take 5 requests")
    zero_a_day = ProviderNow("p", RateLimit(requests_per_day=0))
    assert schedule([zero_a_day], 1, NOW).finish is None
    assert forecast("g", [], [], now=NOW, batch=3)["verdict"]["finishes_at"] is None


# --------------------------------------------------------------------------------------- the CLI, a real home
PLANS = {  # goal word -> tasks (each a line of code); one batch is 3 tasks
    "alpha": ("alpha one", "alpha two", "alpha three"),
    "beta": ("beta one", "beta two", "beta three", "beta four", "beta five"),
    "gamma": ("gamma one", "gamma two", "gamma three", "gamma four"),
}


def _responder() -> Callable[[Request], Reply]:
    every = tuple((task, f"print({task!r})") for tasks in PLANS.values() for task in tasks)
    inner = make_responder(every)

    def respond(req: Request) -> Reply:
        if "Break this goal" in req.text:
            word = next(w for w in PLANS if f"{w} goal" in req.text)
            return Reply.structured({"tasks": list(PLANS[word])})
        return inner(req)

    return respond


def _config(make_config: Callable[..., Path], server: FakeProvider, rpd: int) -> Path:
    return make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                       "limits": {"requests_per_minute": 100, "requests_per_day": rpd}}},
                       optimization={"max_batch_size": 3})


def _run(goal: str, home: Path, cfg: Path) -> int:
    """Run ``goal`` to completion; the requests it sent."""
    proc = cli(["run", goal, "--scratch", "--yes", "--json"], home, cfg)
    out = as_json(proc)
    assert out["status"] == "completed", proc.stderr
    return sum(out["llm_calls"].values())


def test_the_forecast_matches_what_the_run_spends_and_sends_nothing(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path) -> None:
    server = fake_server("openai", responder=_responder())
    cfg = _config(make_config, server, rpd=16)
    history = [_run("the alpha goal", home, cfg), _run("the beta goal", home, cfg)]
    assert history == [3, 5]  # 3 tasks: plan + code + verdict; 5 tasks: plan + 2 x (code + verdict)
    sent = len(server.requests)  # 8 of the day's 16: half used

    proc = cli(["forecast", "the gamma goal", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(server.requests) == sent  # nothing was sent
    exp = report["expected_requests"]
    assert (exp["low"], exp["typical"], exp["high"]) == (3, 3, 5) and exp["runs"] == 2
    (groq,) = report["providers"]
    assert groq["name"] == "groq_llama" and groq["left_now"] == 16 - sent and groq["used"]["day"] == sent
    assert report["verdict"]["fits_now"] is True and report["verdict"]["reason"].startswith("fits now")

    spent = _run("the gamma goal", home, cfg)  # 4 tasks
    n = exp["plan_tasks"]["typical"]
    one_plan_size = max(structural(n + 1, 3) - structural(n, 3), structural(n, 3) - structural(n - 1, 3))  # ±1 task
    assert exp["low"] <= spent <= exp["high"] and abs(spent - exp["typical"]) <= one_plan_size

    # The day is short now (14 a day, 13 used): the same goal again needs what it spent, so it waits for midnight
    short = _config(make_config, server, rpd=14)
    sent = len(server.requests)
    proc = cli(["forecast", "the gamma goal", "--json"], home, short)
    report = json.loads(proc.stdout)
    assert len(server.requests) == sent
    assert report["expected_requests"]["typical"] == spent and report["expected_requests"]["same_goal"]
    verdict = report["verdict"]
    assert verdict["fits_now"] is False and verdict["reason"].startswith("finishes around")
    assert "when groq_llama resets (its daily quota)" in verdict["reason"]
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(verdict["finishes_at"]) == midnight
    assert report["providers"][0]["resets"] == [{"window": "day", "at": midnight.astimezone().isoformat(),
                                                 "left": 14}]

    # run --dry-run prints the same forecast, and runs nothing
    dry = cli(["run", "the gamma goal", "--dry-run", "--json"], home, short)
    assert dry.returncode == 0, dry.stderr
    again = json.loads(dry.stdout)
    assert again["expected_requests"] == report["expected_requests"] and again["verdict"] == report["verdict"]
    assert len(server.requests) == sent
    threads = json.loads(cli(["threads", "--json"], home, cfg).stdout)["threads"]
    assert len(threads) == 3

    text = cli(["forecast", "the gamma goal"], home, short)
    assert text.returncode == 0, text.stderr
    assert "expected requests: 5" in text.stdout and "finishes around" in " ".join(text.stdout.split())


def test_forecast_of_an_empty_goal_is_exit_2(make_config: Callable[..., Path], home: Path) -> None:
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": "http://127.0.0.1:9"}})
    proc = cli(["forecast", "  "], home, cfg)
    assert proc.returncode == 2 and "the goal is empty" in proc.stderr and "Traceback" not in proc.stderr


def test_a_limit_of_0_a_minute_is_unavailable_in_the_ledger_too(tmp_path: Path) -> None:
    """It made the ledger compute the calendar day of an infinite time (OverflowError on every request)."""
    from free_llm_agent.providers.quota import QuotaStore, Unavailable
    from free_llm_agent.storage.registry import open_state, resolve_database_url

    db = open_state(resolve_database_url(None), tmp_path)
    try:
        store = QuotaStore(db, lambda name: RateLimit(requests_per_minute=0 if name == "off" else 5))
        got = store.reserve(["off"], lambda _: 1, NOW, 0)
        assert isinstance(got, Unavailable) and got.retry_at == float("inf")
        assert not isinstance(store.reserve(["off", "on"], lambda _: 1, NOW, 0), Unavailable)
    finally:
        db.close()
