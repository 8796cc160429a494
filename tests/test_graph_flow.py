"""The whole agent graph with an InMemorySaver, a scripted model and a fake executor.

What a user sees: how many LLM calls a goal costs, that every task runs exactly once,
that approval and an empty quota pause the thread and ``Command(resume=...)`` goes on
without redoing finished work, and the ``--json`` shape of ``runtime.runner.Runner``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langgraph.types import Command

from free_llm_agent.graph.context import Context
from free_llm_agent.runtime.runner import Runner
from tests.support.agent import GOAL, Brain, FakeExecutor, by_id, exhausted, harness

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fallback node's sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr("free_llm_agent.nodes.fallback.time", SimpleNamespace(sleep=recorded.append))
    return recorded

FIVE = ["write numbers.txt", "sum the numbers", "write the sum to sum.txt", "read sum.txt back", "print a report"]


def test_five_tasks_cost_one_plan_plus_two_calls_per_batch_and_run_once_each(tmp_path: Path) -> None:
    h = harness(tmp_path, Brain([FIVE]))
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_batch_size=3)
    expected_calls = 1 + 2 * math.ceil(5 / 3)
    assert len(h.llm.calls) == expected_calls == 5
    assert [c["task_type"] for c in h.llm.calls] == [
        "general", "code_generation", "complex_reasoning", "code_generation", "complex_reasoning"
    ]
    assert Counter(h.executor.codes) == Counter(f"print('task {i} v1')" for i in range(1, 6))
    assert final["status"] == "completed"
    assert [(t["id"], t["description"], t["status"]) for t in final["tasks"]] == [
        (i, d, "done") for i, d in enumerate(FIVE, 1)
    ]
    assert all(t["output"] == f"ran python: print('task {t['id']} v1')" for t in final["tasks"])
    assert final["llm_calls"] == {"scripted": 5}
    assert final["cache_hits"] == 0
    assert "5 of 5 tasks done." in final["summary"]
    assert h.executor.closed == 0  # at the end the warm executor goes back to the pool, for the next thread
    h.deps.close_all()
    assert h.executor.closed == 1


def test_approval_flow_interrupts_once_per_task(tmp_path: Path) -> None:
    h = harness(tmp_path, Brain([["make a dir", "write a file", "list the dir"]]))
    result = h.invoke({"goal": GOAL})
    asked: list[dict[str, Any]] = []
    while "__interrupt__" in result:
        (payload,) = h.interrupts()
        assert payload["type"] == "approval"
        assert len(h.executor.runs) == len(asked)  # the task waits for its approval
        asked.append(payload)
        answer = {2: {"action": "edit", "code": "print('edited')"}, 3: {"action": "reject"}}.get(
            payload["task_id"], {"action": "approve"})
        result = h.invoke(Command(resume=answer))
    assert [(p["task_id"], p["task"], p["language"], p["code"]) for p in asked] == [
        (1, "make a dir", "python", "print('task 1 v1')"),
        (2, "write a file", "python", "print('task 2 v1')"),
        (3, "list the dir", "python", "print('task 3 v1')"),
    ]
    assert h.executor.codes == ["print('task 1 v1')", "print('edited')"]  # the edit ran; the rejected never
    values = h.values()
    assert [t["status"] for t in values["tasks"]] == ["done", "done", "skipped"]
    assert [t["approval"] for t in values["tasks"]] == ["user", "edited", "rejected"]  # what show --json reports
    assert values["status"] == "completed"
    assert "Task 2: write a file" in values["summary"]
    assert result["summary"] == values["summary"]
    assert h.next() == ()


@pytest.mark.parametrize("dry", ["code_generation", "complex_reasoning"])
def test_exhausted_providers_pause_the_thread_and_resume_without_rework(
    tmp_path: Path, sleeps: list[float], dry: str
) -> None:
    quota_out = {"on": False}

    def fail(task_type: str, n: int) -> Exception | None:
        if task_type == dry and n == 2:  # the second batch finds every provider out of quota
            quota_out["on"] = True
        return exhausted(3600) if quota_out["on"] else None

    h = harness(tmp_path, Brain([FIVE], fail=fail))
    h.invoke({"goal": GOAL}, auto_approve=True)
    assert h.next() == ("wait_for_quota",)
    (payload,) = h.interrupts()
    assert payload["type"] == "waiting_for_quota"
    assert payload["node"] == ("write_code" if dry == "code_generation" else "reflect")
    values = h.values()
    assert values["status"] == "waiting_for_quota"
    assert values["resume_after"] and values["resume_after"] == payload["resume_after"]
    runs_before = list(h.executor.codes)
    assert sorted(runs_before)[:3] == [f"print('task {i} v1')" for i in (1, 2, 3)]
    assert all(by_id(values["tasks"])[i]["status"] == "done" for i in (1, 2, 3))
    assert sleeps == []  # an hour is too long to sleep: the thread pauses instead

    quota_out["on"] = False  # the quota is back
    final = h.invoke(Command(resume={"action": "retry"}), auto_approve=True)
    assert final["status"] == "completed"
    assert final.get("resume_after") is None
    assert [t["status"] for t in final["tasks"]] == ["done"] * 5
    assert Counter(h.executor.codes) == Counter(f"print('task {i} v1')" for i in range(1, 6))
    assert h.executor.codes[: len(runs_before)] == runs_before
    assert h.brain.counts["general"] == 1  # the plan is not asked for again


def test_retry_verdict_rewrites_the_code_with_the_hint_and_runs_it_again(tmp_path: Path) -> None:
    hint = "print the sum, not the list"

    def review(tid: int, n: int) -> tuple[str, str]:
        return ("retry", hint) if (tid, n) == (2, 1) else ("done", "")

    h = harness(tmp_path, Brain([["list numbers", "sum them", "report"]], review=review))
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_batch_size=3)
    code_prompts = h.brain.prompts["code_generation"]
    assert len(code_prompts) == 2
    assert hint not in code_prompts[0]
    assert f"hint: {hint}" in code_prompts[1]
    assert "- Task 2: sum them" in code_prompts[1]
    assert "- Task 1: list numbers\n  output: ran python: print('task 1 v1')" in code_prompts[1]
    assert h.executor.codes == [
        "print('task 1 v1')", "print('task 2 v1')", "print('task 3 v1')", "print('task 2 v2')"
    ]
    task2 = by_id(final["tasks"])[2]
    assert (task2["status"], task2["attempts"], task2["code"]) == ("done", 2, "print('task 2 v2')")
    assert final["status"] == "completed"
    assert len(h.llm.calls) == 1 + 2 + 2


def test_runner_run_gives_the_documented_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = FakeExecutor()
    brain = Brain([["a", "b", "c", "d"]])
    runner = Runner(
        tmp_path, llm=brain.model(), context=Context(auto_approve=True, max_batch_size=3), executor_factory=ex.factory
    )
    try:
        result = runner.run("make a report", thread_id="thread-1")
    finally:
        runner.close()
    data = result.to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"thread_id", "status", "goal", "tasks", "summary", "llm_calls", "cache_hits", "resume_after"}
    assert data["thread_id"] == "thread-1"
    assert data["status"] == "completed"
    assert result.exit_code == 0
    assert data["goal"] == "make a report"
    assert data["tasks"] == [
        {"id": i, "description": d, "status": "done", "output": f"ran python: print('task {i} v1')"}
        for i, d in enumerate("abcd", 1)
    ]
    assert "4 of 4 tasks done." in data["summary"]
    assert data["llm_calls"] == {"scripted": 5}
    assert data["cache_hits"] == 0
    assert data["resume_after"] is None
    assert ex.workspace == tmp_path / "workspaces" / "thread-1"
    assert (tmp_path / "checkpoints.db").exists()


def test_runner_pauses_for_quota_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    ex = FakeExecutor()
    quota_out = {"on": True}
    brain = Brain([["a", "b"]], fail=lambda tt, n: exhausted(7200) if quota_out["on"] and tt == "code_generation"
                  else None)
    runner = Runner(tmp_path, llm=brain.model(), context=Context(auto_approve=True), executor_factory=ex.factory)
    try:
        paused = runner.run("g", thread_id="t-quota")
        assert paused.status == "waiting_for_quota"
        assert paused.exit_code == 0
        assert paused.to_json()["resume_after"] is not None
        assert [t["status"] for t in paused.to_json()["tasks"]] == ["pending", "pending"]
        quota_out["on"] = False
        done = runner.resume("t-quota")
    finally:
        runner.close()
    assert done.status == "completed"
    assert done.to_json()["resume_after"] is None
    assert sorted(ex.codes) == ["print('task 1 v1')", "print('task 2 v1')"]


def test_a_new_goal_on_a_thread_starts_a_new_run(tmp_path: Path) -> None:
    h = harness(tmp_path, Brain([["a1", "a2", "a3", "a4"], ["b1", "b2"]]))
    first = h.invoke({"goal": "goal A"}, auto_approve=True, max_batch_size=2)
    assert [t["description"] for t in first["tasks"]] == ["a1", "a2", "a3", "a4"]
    second = h.invoke({"goal": "goal B"}, auto_approve=True, max_batch_size=2)
    assert [(t["id"], t["description"], t["status"]) for t in second["tasks"]] == [(1, "b1", "done"),
                                                                                   (2, "b2", "done")]
    assert second["summary"].startswith("Goal: goal B") and "a1" not in second["summary"]
    values = h.values()
    assert sum(values["llm_calls"].values()) == 3  # plan + code + review of B only, not A's 5 as well
    assert values["iteration"] == 1 and values["replans"] == 0  # max_iterations counts per run
    earlier = [s.values for s in h.graph.get_state_history(h.config) if s.values.get("goal") == "goal A"]
    assert earlier and earlier[0]["status"] == "completed"  # the earlier run stays in the history
