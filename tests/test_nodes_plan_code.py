"""Unit tests of the state reducers and of the plan and write_code nodes (scripted model, fake executor).

The shared fakes and helpers live in ``tests/support/agent.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from free_llm_agent.graph.routing import after_plan, after_write_code
from free_llm_agent.graph.state import Task, add_counts, merge_tasks
from free_llm_agent.nodes.approval import approve
from free_llm_agent.nodes.execute import run_task, write_code
from free_llm_agent.nodes.plan import plan
from tests.fakes.scripted import tool_answer
from tests.support.agent import (
    CONFIG,
    GOAL,
    Brain,
    FakeExecutor,
    answered_by,
    apply,
    by_id,
    exhausted,
    human_text,
    make_deps,
    make_state,
    pending,
    rt,
    scripted,
)

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- imports


def test_a_node_module_imports_first_in_a_fresh_interpreter() -> None:
    """``from nodes.plan import plan`` before anything else (used to hit a circular import)."""
    root = Path(__file__).resolve().parents[1]
    code = "from nodes.fallback import fallback; from nodes.plan import plan; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- reducers


def test_merge_tasks_updates_by_id_appends_new_and_never_drops() -> None:
    current: list[Task] = [
        {"id": 1, "description": "a", "status": "done", "output": "A"},
        {"id": 2, "description": "b", "status": "pending"},
    ]
    merged = merge_tasks(current, [{"id": 2, "status": "failed", "error": "boom"}, {"id": 3, "description": "c"}])
    assert merged == [
        {"id": 1, "description": "a", "status": "done", "output": "A"},
        {"id": 2, "description": "b", "status": "failed", "error": "boom"},
        {"id": 3, "description": "c"},
    ]
    assert current[1] == {"id": 2, "description": "b", "status": "pending"}  # inputs untouched
    assert merge_tasks(current, []) == current
    assert merge_tasks(current, None) == current
    assert merge_tasks(None, [{"id": 7, "status": "pending"}]) == [{"id": 7, "status": "pending"}]
    # ordered by id whatever the order of the update
    assert [t["id"] for t in merge_tasks([{"id": 5}], [{"id": 4}, {"id": 9}, {"id": 1}])] == [1, 4, 5, 9]


def test_add_counts_sums_per_provider() -> None:
    current = {"groq_llama": 2}
    assert add_counts(current, {"groq_llama": 1, "google_gemini": 3}) == {"groq_llama": 3, "google_gemini": 3}
    assert current == {"groq_llama": 2}
    assert add_counts(None, {"a": 1}) == {"a": 1}
    assert add_counts({"a": 1}, None) == {"a": 1}
    assert add_counts({"a": 1}, {}) == {"a": 1}


# ----------------------------------------------------------------------------- plan


def test_plan_structured_answer_gives_pending_tasks_numbered_from_one(tmp_path: Path) -> None:
    llm = scripted(tool_answer("Plan", {"tasks": ["write a.txt", "count words", "print it"]}))
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["tasks"] == [
        {"id": 1, "description": "write a.txt", "status": "pending", "attempts": 0},
        {"id": 2, "description": "count words", "status": "pending", "attempts": 0},
        {"id": 3, "description": "print it", "status": "pending", "attempts": 0},
    ]
    assert update["status"] == "running"
    assert update["fallback"] is None
    assert update["llm_calls"] == {"scripted": 1}
    assert update["cache_hits"] == 0
    assert len(llm.calls) == 1
    assert llm.calls[0]["task_type"] == "general"
    assert GOAL in human_text(llm.calls[0])


def test_plan_prose_answer_is_parsed(tmp_path: Path) -> None:
    llm = scripted("Task1: a | Task2: b | Task3: c")
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert [(t["id"], t["description"], t["status"]) for t in update["tasks"]] == [
        (1, "a", "pending"), (2, "b", "pending"), (3, "c", "pending")
    ]
    assert len(llm.calls) == 1


def test_plan_unparsable_answer_is_repaired_with_exactly_two_calls(tmp_path: Path) -> None:
    llm = scripted("I'm not sure what you mean.", '{"tasks": ["a", "b", "c"]}')
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert [t["description"] for t in update["tasks"]] == ["a", "b", "c"]
    assert update["fallback"] is None
    assert len(llm.calls) == 2
    assert "could not be read" in human_text(llm.calls[1])
    assert llm.calls[1]["task_type"] == "general"
    assert update["llm_calls"] == {"scripted": 2}


def test_plan_unparsable_twice_sends_the_run_to_fallback(tmp_path: Path) -> None:
    llm = scripted("I'm not sure what you mean.", "Still no idea, sorry.")
    state = make_state()
    update = plan(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert "tasks" not in update
    assert update["fallback"]["node"] == "plan"
    assert update["fallback"]["kind"] == "parse"
    assert update["fallback"]["failures"] == 1
    assert update["fallback"]["retry_at"] is None
    assert update["errors"] and update["errors"][0].startswith("plan:")
    assert update["llm_calls"] == {"scripted": 2}  # both paid calls are still counted
    assert after_plan(apply(state, update)) == "fallback"


def test_plan_with_every_provider_exhausted_gives_a_quota_fallback(tmp_path: Path) -> None:
    error = exhausted(3600)
    llm = scripted(error)
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["fallback"]["kind"] == "quota"
    assert update["fallback"]["node"] == "plan"
    assert error.retry_at is not None
    assert update["fallback"]["retry_at"] == error.retry_at.isoformat()
    assert "tasks" not in update


def test_plan_failure_count_grows_while_the_same_node_keeps_failing(tmp_path: Path) -> None:
    llm = scripted(exhausted(None))
    state = make_state(fallback={"node": "plan", "kind": "error", "failures": 2, "retry_at": None, "error": "x"})
    update = plan(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["fallback"]["failures"] == 3
    assert update["fallback"]["kind"] == "error"  # no retry_at: not a quota pause


def test_replan_skips_old_pending_tasks_and_continues_ids(tmp_path: Path) -> None:
    tasks: list[Task] = [
        {"id": 1, "description": "download", "status": "done", "output": "got it"},
        {"id": 2, "description": "parse", "status": "failed", "error": "bad format"},
        pending(3, "report"),
    ]
    state = make_state(tasks, decision="replan", replans=0,
                       verdicts=[{"task_id": 2, "verdict": "failed", "hint": "use csv module instead"}])
    llm = scripted(tool_answer("Plan", {"tasks": ["parse with csv", "report again"]}))
    update = plan(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    after = by_id(apply(state, update)["tasks"])
    assert after[1]["status"] == "done" and after[1]["output"] == "got it"  # completed work kept
    assert after[2]["status"] == "failed"
    assert after[3]["status"] == "skipped"
    assert (after[4]["description"], after[4]["status"]) == ("parse with csv", "pending")
    assert (after[5]["description"], after[5]["status"]) == ("report again", "pending")
    assert update["replans"] == 1
    assert update["decision"] == "continue"
    prompt = human_text(llm.calls[0])
    assert "use csv module instead" in prompt
    assert "Task 1 [done]: download" in prompt


def test_plan_counts_llm_calls_per_provider_and_cached_answers_as_cache_hits(tmp_path: Path) -> None:
    llm = scripted(answered_by("groq_llama", "no plan here"),
                                     answered_by("google_gemini", '{"tasks": ["a", "b"]}'))
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["llm_calls"] == {"groq_llama": 1, "google_gemini": 1}
    assert update["cache_hits"] == 0

    cached = scripted(answered_by("groq_llama", "Task1: a | Task2: b | Task3: c", cached=True))
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, cached))
    assert update["llm_calls"] == {}
    assert update["cache_hits"] == 1


# ----------------------------------------------------------------------------- write_code


def test_write_code_asks_once_for_a_batch_of_max_batch_size(tmp_path: Path) -> None:
    brain = Brain([[]])
    llm = brain.model()
    state = make_state([pending(i) for i in range(1, 5)])
    update = write_code(state, rt(max_batch_size=3), CONFIG, deps=make_deps(tmp_path, llm))
    assert len(llm.calls) == 1
    assert llm.calls[0]["task_type"] == "code_generation"
    assert update["batch"] == [1, 2, 3]
    assert [(t["id"], t["code"], t["approved"]) for t in update["tasks"]] == [
        (1, "print('task 1 v1')", False), (2, "print('task 2 v1')", False), (3, "print('task 3 v1')", False)
    ]
    prompt = human_text(llm.calls[0])
    assert "- Task 3: step 3" in prompt
    assert "- Task 4:" not in prompt
    assert update["llm_calls"] == {"scripted": 1}
    assert after_write_code(apply(state, update)) == "approve"


def test_write_code_prompt_contains_earlier_outputs(tmp_path: Path) -> None:
    llm = Brain([[]]).model()
    state = make_state([
        {"id": 1, "description": "make data", "status": "done", "output": "wrote data.csv with 42 rows"},
        pending(2, "plot data"),
    ])
    update = write_code(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["batch"] == [2]
    prompt = human_text(llm.calls[0])
    assert "wrote data.csv with 42 rows" in prompt
    assert "- Task 2: plot data" in prompt


def test_write_code_without_pending_tasks_makes_no_call_and_finishes(tmp_path: Path) -> None:
    llm = scripted()
    state = make_state([{"id": 1, "description": "x", "status": "done"}])
    update = write_code(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["batch"] == []
    assert llm.calls == []
    assert after_write_code(apply(state, update)) == "finalize"


def test_missing_code_for_a_task_makes_it_fail_without_running(tmp_path: Path) -> None:
    ex = FakeExecutor()
    llm = scripted(tool_answer("CodeBatch", {"items": [{"task_id": 1, "code": "print(1)"}]}))
    deps = make_deps(tmp_path, llm, ex)
    state = make_state([pending(1), pending(2)])
    state = apply(state, write_code(state, rt(), CONFIG, deps=deps))
    assert by_id(state["tasks"])[2]["code"] == ""
    for _ in range(4):  # approve + run both tasks of the batch
        state = apply(state, approve(state, rt(auto_approve=True), CONFIG, deps=deps))
        state = apply(state, run_task(state, rt(auto_approve=True), CONFIG, deps=deps))
    tasks = by_id(state["tasks"])
    assert tasks[1]["status"] == "done"
    assert tasks[2]["status"] == "failed"
    assert "no code" in tasks[2]["error"]
    assert ex.codes == ["print(1)"]


def test_write_code_quota_exhaustion_goes_to_fallback(tmp_path: Path) -> None:
    llm = scripted(exhausted(120))
    state = make_state([pending(1)])
    update = write_code(state, rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["fallback"]["node"] == "write_code"
    assert update["fallback"]["kind"] == "quota"
    assert after_write_code(apply(state, update)) == "fallback"
