"""One provider misbehaves, the other is healthy: the run still completes.

For each provider kind × fault (``tests.faults.catalog``): the faulty provider of that kind is
first in priority, a healthy provider of another kind second. A whole goal runs through the real
graph and provider layer; the user must see a completed run with every task done, answered by
the healthy provider, and the faulty one must have been asked at most 3 times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from free_llm_agent.config import Fallback
from free_llm_agent.providers import build_chat_model
from free_llm_agent.providers.router import DEFAULT_429_COOLDOWN_S
from tests.fakes.agent_responder import DEFAULT_PLAN, make_responder
from tests.fakes.provider_server import FakeProvider
from tests.faults.catalog import RETRY_AFTER_S, Fault, cells, fake_kind, post_count, refused_url
from tests.faults.inproc import attempts as attempts_on
from tests.faults.inproc import run_goal
from tests.faults.report import FaultReport, Row
from tests.support.agent import FakeExecutor, FakeResult

pytestmark = pytest.mark.timeout(60)

MAX_FAULTY_REQUESTS = 3
SUITE = "Provider faults: the faulty provider first, a healthy one of another kind second"


def healthy_kind(faulty: str) -> str:
    return "groq" if faulty == "gemini" else "gemini"


@pytest.mark.parametrize(("kind", "fault"), cells(), ids=[f"{k}-{f.name}" for k, f in cells()])
def test_run_completes_on_the_healthy_provider(
    kind: str, fault: Fault, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path],
    home: Path, tmp_path: Path, fault_report: FaultReport,
) -> None:
    reply = fault.for_kind(kind)
    faulty: FakeProvider | None = None
    if reply is not None:
        faulty = fake_server(fake_kind(kind), responder=lambda _req: reply)
    good_kind = healthy_kind(kind)
    healthy = fake_server(fake_kind(good_kind), responder=make_responder())
    faulty_spec: dict[str, object] = {"kind": kind, "base_url": faulty.base_url if faulty else refused_url()}
    if fault.timeout_s is not None:
        faulty_spec["timeout_s"] = fault.timeout_s
    cfg = make_config({"faulty": faulty_spec, "healthy": {"kind": good_kind, "base_url": healthy.base_url}})
    executor = FakeExecutor(outcome=_slow(fault.task_seconds))

    started, started_wall = time.monotonic(), time.time()
    result = run_goal(cfg, home, tmp_path / "work", executor)
    seconds = time.monotonic() - started

    attempts = attempts_on(home, "faulty")  # what the agent sent, also when nothing listened
    received = post_count(faulty)
    survived = (result.status == "completed" and all(t["status"] == "done" for t in result.tasks)
                and attempts <= MAX_FAULTY_REQUESTS)
    fault_report.add(SUITE, Row(f"{kind} × {fault.name}", survived,
                                received if faulty else f"0 (refused; {attempts} tried)",
                                received + post_count(healthy), seconds, f"healthy: {good_kind}"))

    assert result.status == "completed", result.summary
    assert [t["status"] for t in result.tasks] == ["done"] * len(DEFAULT_PLAN)
    assert result.exit_code == 0
    assert attempts <= MAX_FAULTY_REQUESTS and received <= MAX_FAULTY_REQUESTS
    assert set(result.llm_calls) == {"healthy"}  # every answer the run used came from the healthy one
    assert post_count(healthy) == sum(result.llm_calls.values())
    assert len(executor.runs) == len(DEFAULT_PLAN)  # each task ran once
    _assert_cooldown(cfg, home, fault, started_wall)


def _slow(seconds: float) -> Callable[[str, str], FakeResult]:
    def outcome(language: str, code: str) -> FakeResult:
        time.sleep(seconds)
        return FakeResult(ok=True, output=f"ran {language}: {code}", duration_s=seconds)

    return outcome


def _assert_cooldown(cfg: Path, home: Path, fault: Fault, started: float) -> None:
    """The faulty provider is left alone as long as it asked (what ``usage`` shows as its cooldown)."""
    until, _ = build_chat_model(cfg, home).router.quota.cooldown_until("faulty")
    now = time.time()
    if fault.cooldown is None:
        assert until <= now
    elif fault.cooldown == "retry-after":
        assert started + RETRY_AFTER_S - 1 <= until <= now + RETRY_AFTER_S + 1
    elif fault.cooldown == "default":
        assert started + DEFAULT_429_COOLDOWN_S - 1 <= until <= now + DEFAULT_429_COOLDOWN_S + 1
    elif fault.cooldown == "day":
        midnight = datetime.fromtimestamp(started, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert until >= (midnight + timedelta(days=1)).timestamp() - 1
    else:
        streak = Fallback().failure_cooldown_seconds
        assert started + streak - 1 <= until <= now + streak + 1

