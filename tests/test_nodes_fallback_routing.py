"""Unit tests of the fallback and finalize nodes and of the routers between nodes.

What needs ``interrupt()`` (waiting for quota) runs through ``build_graph`` with an
``InMemorySaver``; the shared fakes and helpers live in ``tests/support/agent.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import free_llm_agent.nodes.fallback as fallback_module
from free_llm_agent.graph.routing import after_plan, after_reflect, after_write_code, in_batch
from free_llm_agent.nodes.fallback import fallback
from free_llm_agent.nodes.finalize import finalize
from tests.support.agent import (
    CONFIG,
    GOAL,
    THREAD,
    Brain,
    FakeExecutor,
    by_id,
    exhausted,
    harness,
    make_deps,
    make_state,
    pending,
    ran,
    rt,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fallback node's sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(fallback_module, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


# ----------------------------------------------------------------------------- fallback


def _fb(node: str, kind: str, *, failures: int = 1, retry_in: float | None = None) -> dict[str, Any]:
    at = None if retry_in is None else (datetime.now(UTC) + timedelta(seconds=retry_in)).isoformat()
    return {"node": node, "kind": kind, "error": "all providers exhausted", "retry_at": at, "failures": failures}


def test_fallback_quota_far_away_pauses_the_thread(tmp_path: Path, sleeps: list[float]) -> None:
    fb = _fb("write_code", "quota", retry_in=3600)
    cmd = fallback(make_state(fallback=fb), rt(), deps=make_deps(tmp_path))
    assert cmd.goto == "wait_for_quota"
    assert cmd.update == {"status": "waiting_for_quota", "resume_after": fb["retry_at"]}
    assert sleeps == []


def test_fallback_quota_soon_sleeps_and_retries_the_node(tmp_path: Path, sleeps: list[float]) -> None:
    cmd = fallback(make_state(fallback=_fb("reflect", "quota", retry_in=10)), rt(), deps=make_deps(tmp_path))
    assert cmd.goto == "reflect"
    assert len(sleeps) == 1 and 8 < sleeps[0] <= 10
    cmd = fallback(make_state(fallback=_fb("plan", "quota", retry_in=-5)), rt(), deps=make_deps(tmp_path))
    assert cmd.goto == "plan"
    assert sleeps[1] == 0.0  # already free: no negative sleep


def test_fallback_other_failures_retry_up_to_max_retries_then_finalize(tmp_path: Path, sleeps: list[float]) -> None:
    deps = make_deps(tmp_path)
    max_retries = deps.fallback_settings().max_retries
    for failures in range(1, max_retries + 1):
        cmd = fallback(make_state(fallback=_fb("write_code", "error", failures=failures)), rt(), deps=deps)
        assert cmd.goto == "write_code"
    assert sleeps == [deps.fallback_settings().retry_delay_seconds] * max_retries
    cmd = fallback(make_state(fallback=_fb("write_code", "parse", failures=max_retries + 1)), rt(), deps=deps)
    assert cmd.goto == "finalize"
    assert cmd.update == {"status": "failed"}


def test_fallback_outage_retries_then_pauses_instead_of_failing(tmp_path: Path, sleeps: list[float]) -> None:
    deps = make_deps(tmp_path)
    settings = deps.fallback_settings()
    cmd = fallback(make_state(fallback=_fb("reflect", "outage", retry_in=5)), rt(), deps=deps)
    assert cmd.goto == "reflect" and sleeps == [settings.retry_delay_seconds]
    last = _fb("reflect", "outage", failures=settings.max_retries + 1, retry_in=5)
    cmd = fallback(make_state(fallback=last), rt(), deps=deps)
    assert cmd.goto == "wait_for_quota"
    assert cmd.update is not None and cmd.update["status"] == "waiting_for_quota"
    resume_after = datetime.fromisoformat(cmd.update["resume_after"])
    expected = datetime.now(UTC) + timedelta(seconds=settings.failure_cooldown_seconds)
    assert abs((resume_after - expected).total_seconds()) < 5


def test_quota_far_away_pauses_the_graph_at_wait_for_quota(tmp_path: Path, sleeps: list[float]) -> None:
    h = harness(tmp_path, Brain([["a"]], fail=lambda tt, n: exhausted(3600) if tt == "general" else None))
    h.invoke({"goal": GOAL}, auto_approve=True)
    assert h.next() == ("wait_for_quota",)
    (payload,) = h.interrupts()
    assert payload["type"] == "waiting_for_quota"
    assert payload["node"] == "plan"
    values = h.values()
    assert values["status"] == "waiting_for_quota"
    assert values["resume_after"] == payload["resume_after"]
    assert datetime.fromisoformat(values["resume_after"]) > datetime.now(UTC) + timedelta(minutes=50)
    assert sleeps == []


def test_quota_soon_sleeps_and_the_run_goes_on(tmp_path: Path, sleeps: list[float]) -> None:
    brain = Brain([["a", "b"]], fail=lambda tt, n: exhausted(20) if (tt, n) == ("code_generation", 1) else None)
    h = harness(tmp_path, brain)
    final = h.invoke({"goal": GOAL}, auto_approve=True)
    assert final["status"] == "completed"
    assert len(sleeps) == 1 and 15 < sleeps[0] <= 20
    assert brain.counts["code_generation"] == 2
    assert sorted(h.executor.codes) == ["print('task 1 v1')", "print('task 2 v1')"]


def test_persistent_failure_retries_then_fails_keeping_completed_tasks(tmp_path: Path, sleeps: list[float]) -> None:
    def fail(task_type: str, n: int) -> Exception | None:
        return exhausted(None) if task_type == "complex_reasoning" and n >= 2 else None

    h = harness(tmp_path, Brain([["a", "b", "c", "d"]], fail=fail))
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_batch_size=2)
    assert h.brain.counts["complex_reasoning"] == 1 + 1 + 3  # first batch, then 1 try + 3 retries
    assert len(sleeps) == 3
    assert final["status"] == "failed"
    tasks = by_id(final["tasks"])
    assert tasks[1]["status"] == "done" and tasks[2]["status"] == "done"
    assert tasks[1]["output"] == "ran python: print('task 1 v1')"
    assert "Task 1: a" in final["summary"] and "Task 2: b" in final["summary"]
    assert len(h.executor.runs) == 4  # retries of reflect never re-run code


# ----------------------------------------------------------------------------- finalize


def test_finalize_summarises_every_task_and_skips_leftovers(tmp_path: Path) -> None:
    ex = FakeExecutor()
    deps = make_deps(tmp_path, executor=ex)
    deps.executor(THREAD, tmp_path, 5.0)
    state = make_state([
        {"id": 1, "description": "make file", "status": "done", "output": "starting\nwrote out.txt"},
        {"id": 2, "description": "parse file", "status": "failed", "error": "exit status 1"},
        pending(3, "report"),
    ])
    update = finalize(state, CONFIG, deps=deps)
    assert update["tasks"] == [{"id": 3, "status": "skipped"}]
    assert update["status"] == "failed"
    summary = update["summary"]
    assert summary.splitlines()[0] == f"Goal: {GOAL}"
    assert "Task 1: make file — wrote out.txt" in summary
    assert "Task 2: parse file — exit status 1" in summary
    assert "Task 3: report" in summary
    assert "1 of 3 tasks done." in summary
    assert deps.executors() == [ex] and ex.closed == 0  # released: back in the pool, still warm
    deps.close_all()
    assert ex.closed == 1


def test_finalize_status_completed_only_when_work_was_done_and_nothing_failed(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    done = make_state([ran(1), ran(2)])
    assert finalize(done, CONFIG, deps=deps)["status"] == "completed"
    assert "2 of 2 tasks done." in finalize(done, CONFIG, deps=deps)["summary"]
    with_skip = make_state([ran(1), {"id": 2, "description": "x", "status": "skipped"}])
    assert finalize(with_skip, CONFIG, deps=deps)["status"] == "completed"
    assert finalize(make_state([pending(1)]), CONFIG, deps=deps)["status"] == "failed"
    gave_up = make_state([ran(1)], status="failed")
    assert finalize(gave_up, CONFIG, deps=deps)["status"] == "failed"
    nothing = make_state([], errors=["plan: all providers exhausted"])
    update = finalize(nothing, CONFIG, deps=deps)
    assert update["status"] == "failed"
    assert "Stopped: plan: all providers exhausted" in update["summary"]


# ----------------------------------------------------------------------------- routers


def test_after_plan() -> None:
    assert after_plan(make_state([pending(1)])) == "write_code"
    assert after_plan(make_state(fallback=None)) == "write_code"
    assert after_plan(make_state(fallback=_fb("plan", "parse"))) == "fallback"


def test_after_write_code() -> None:
    assert after_write_code(make_state([pending(1)], batch=[1])) == "approve"
    assert after_write_code(make_state(batch=[])) == "finalize"
    assert after_write_code(make_state()) == "finalize"
    assert after_write_code(make_state(batch=[1], fallback=_fb("write_code", "quota"))) == "fallback"


def test_in_batch() -> None:
    assert in_batch(make_state([pending(1), pending(2)], batch=[1, 2])) == "approve"
    assert in_batch(make_state([pending(1, approved=True)], batch=[1])) == "run_task"
    assert in_batch(make_state([ran(1), pending(2, approved=True)], batch=[1, 2])) == "run_task"
    assert in_batch(make_state([ran(1), ran(2, "failed")], batch=[1, 2])) == "reflect"
    assert in_batch(make_state([ran(1), pending(2)], batch=[1])) == "reflect"  # 2 is for a later batch
    assert in_batch(make_state([pending(1)], batch=[])) == "reflect"


@pytest.mark.parametrize(
    ("extra", "context", "expected"),
    [
        ({"fallback": _fb("reflect", "quota")}, {}, "fallback"),
        ({"decision": "replan", "replans": 0}, {"max_replans": 1}, "plan"),
        ({"decision": "replan", "replans": 1}, {"max_replans": 1}, "write_code"),
        ({"decision": "replan", "replans": 0}, {"max_replans": 0}, "write_code"),
        ({"decision": "continue", "iteration": 1}, {}, "write_code"),
        ({"decision": "finish", "iteration": 1}, {}, "finalize"),
        ({"decision": "continue", "iteration": 8}, {"max_iterations": 8}, "finalize"),
    ],
)
def test_after_reflect_with_pending_tasks(extra: dict[str, Any], context: dict[str, Any], expected: str) -> None:
    state = make_state([ran(1), pending(2)], **extra)
    assert after_reflect(state, rt(**context)) == expected


def test_after_reflect_without_pending_tasks_finalizes() -> None:
    state = make_state([ran(1), ran(2, "failed")], decision="continue", iteration=1)
    assert after_reflect(state, rt()) == "finalize"
    assert after_reflect(make_state([ran(1)], decision="replan", replans=0), rt()) == "plan"
