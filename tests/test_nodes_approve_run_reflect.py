"""Unit tests of the approve, run_task and reflect nodes (scripted model, fake executor).

What needs ``interrupt()`` (approval) runs through ``build_graph`` with an ``InMemorySaver``;
the shared fakes and helpers live in ``tests/support/agent.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Command

from free_llm_agent.graph.routing import after_reflect, in_batch
from free_llm_agent.graph.state import Task
from free_llm_agent.nodes.approval import approve
from free_llm_agent.nodes.execute import run_task, write_code
from free_llm_agent.nodes.reflect import reflect
from tests.fakes.scripted import tool_answer
from tests.support.agent import (
    CONFIG,
    GOAL,
    THREAD,
    Brain,
    CodeFor,
    FakeExecutor,
    FakeResult,
    apply,
    by_id,
    default_code,
    exhausted,
    harness,
    human_text,
    make_deps,
    make_state,
    pending,
    ran,
    rt,
    scripted,
)

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- approve


def _coded(tid: int, code: str, language: str = "python", **extra: Any) -> Task:
    return pending(tid, **{"code": code, "language": language, "approved": False, **extra})


def test_auto_approve_approves_without_interrupt(tmp_path: Path) -> None:
    state = make_state([_coded(1, "print('hi')")], batch=[1])
    # interrupt() outside a graph run would raise: returning at all shows no interrupt happened
    update = approve(state, rt(auto_approve=True), CONFIG, deps=make_deps(tmp_path))
    assert update == {"tasks": [{"id": 1, "approved": True, "approval": "auto"}]}  # show: "approved by --yes"
    assert in_batch(apply(state, update)) == "run_task"


@pytest.mark.parametrize(
    ("language", "code"),
    [("shell", "rm -rf /"), ("shell", "sudo apt-get install foo"), ("python", "import os\nos.system('sudo reboot')")],
)
def test_deny_listed_code_is_blocked_even_with_auto_approve(tmp_path: Path, language: str, code: str) -> None:
    ex = FakeExecutor()
    deps = make_deps(tmp_path, executor=ex)
    state = make_state([_coded(1, code, language)], batch=[1])
    state = apply(state, approve(state, rt(auto_approve=True), CONFIG, deps=deps))
    task = by_id(state["tasks"])[1]
    assert task["status"] == "failed"
    assert task["error"].startswith("blocked:")
    assert not task["approved"]
    assert in_batch(state) == "reflect"
    assert run_task(state, rt(auto_approve=True), CONFIG, deps=deps) == {}
    assert ex.runs == []


def _approval_brain(code: CodeFor = default_code) -> Brain:
    return Brain([["say hello"]], code=code)


def test_without_auto_approve_the_run_interrupts_with_task_language_and_code(tmp_path: Path) -> None:
    h = harness(tmp_path, _approval_brain())
    result = h.invoke({"goal": GOAL})
    assert "__interrupt__" in result
    assert h.next() == ("approve",)
    (payload,) = h.interrupts()
    assert payload["type"] == "approval"
    assert payload["task_id"] == 1
    assert payload["task"] == "say hello"
    assert payload["language"] == "python"
    assert payload["code"] == "print('task 1 v1')"
    assert h.executor.runs == []  # nothing ran before approval


def test_resume_approve_runs_the_code(tmp_path: Path) -> None:
    h = harness(tmp_path, _approval_brain())
    h.invoke({"goal": GOAL})
    final = h.invoke(Command(resume={"action": "approve"}))
    assert h.executor.codes == ["print('task 1 v1')"]
    assert final["tasks"][0]["status"] == "done"
    assert final["status"] == "completed"


def test_resume_reject_skips_the_task(tmp_path: Path) -> None:
    h = harness(tmp_path, _approval_brain())
    h.invoke({"goal": GOAL})
    final = h.invoke(Command(resume={"action": "reject"}))
    assert h.executor.runs == []
    assert final["tasks"][0]["status"] == "skipped"
    assert h.brain.counts["complex_reasoning"] == 0  # nothing ran, nothing to judge
    assert "Task 1: say hello" in final["summary"]


def test_resume_edit_runs_the_edited_code(tmp_path: Path) -> None:
    h = harness(tmp_path, _approval_brain())
    h.invoke({"goal": GOAL})
    final = h.invoke(Command(resume={"action": "edit", "code": "print('edited by the user')"}))
    assert h.executor.codes == ["print('edited by the user')"]
    assert final["tasks"][0]["code"] == "print('edited by the user')"
    assert final["tasks"][0]["status"] == "done"


def test_resume_edit_with_deny_listed_code_is_blocked(tmp_path: Path) -> None:
    h = harness(tmp_path, _approval_brain())
    h.invoke({"goal": GOAL})
    final = h.invoke(Command(resume={"action": "edit", "code": "import shutil\nshutil.rmtree('/')"}))
    assert h.executor.runs == []
    assert final["tasks"][0]["status"] == "failed"
    assert final["tasks"][0]["error"].startswith("blocked:")
    assert final["status"] == "failed"


def test_deny_listed_code_never_reaches_the_executor_in_a_whole_run(tmp_path: Path) -> None:
    def code(tid: int, attempt: int) -> tuple[str, str]:
        return ("shell", "sudo rm -rf /var") if tid == 2 else default_code(tid, attempt)

    h = harness(tmp_path, Brain([["a", "b", "c"]], code=code))
    final = h.invoke({"goal": GOAL}, auto_approve=True)
    assert all("sudo" not in c for c in h.executor.codes)
    assert sorted(h.executor.codes) == ["print('task 1 v1')", "print('task 3 v1')"]
    task2 = by_id(final["tasks"])[2]
    assert task2["status"] == "failed"
    assert task2["error"].startswith("blocked:")
    assert h.brain.written[2] == 1  # blocked code is never retried


# ----------------------------------------------------------------------------- run_task


def test_run_task_ok_marks_done_with_output(tmp_path: Path) -> None:
    ex = FakeExecutor(outcome=lambda lang, code: FakeResult(ok=True, output="hello\n"))
    state = make_state([_coded(1, "print('hello')", approved=True)], batch=[1])
    update = run_task(state, rt(executor_timeout_s=7.5), CONFIG, deps=make_deps(tmp_path, executor=ex))
    assert update["tasks"] == [{"id": 1, "status": "done", "attempts": 1, "approved": False, "interrupted": False,
                                "output": "hello\n", "error": "", "changes": []}]  # changes: the folder's snapshots
    assert ex.runs == [("python", "print('hello')")]
    assert ex.timeouts == [7.5]
    assert ex.workspace == tmp_path / "workspaces" / THREAD


def test_run_task_failure_marks_failed_with_error_and_counts_attempts(tmp_path: Path) -> None:
    ex = FakeExecutor(outcome=lambda lang, code: FakeResult(ok=False, output="Traceback ...", error="exit status 1"))
    state = make_state([_coded(1, "raise SystemExit(1)", approved=True, attempts=1)], batch=[1])
    update = run_task(state, rt(), CONFIG, deps=make_deps(tmp_path, executor=ex))
    (task,) = update["tasks"]
    assert task["status"] == "failed"
    assert task["error"] == "exit status 1"
    assert task["output"] == "Traceback ..."
    assert task["attempts"] == 2


def test_run_task_runs_the_batch_in_order_one_task_per_step(tmp_path: Path) -> None:
    ex = FakeExecutor()
    deps = make_deps(tmp_path, executor=ex)
    state = make_state([_coded(1, "print(1)", approved=True), _coded(2, "print(2)", approved=True),
                        _coded(3, "print(3)", approved=True)], batch=[1, 2])
    state = apply(state, run_task(state, rt(), CONFIG, deps=deps))
    assert ex.codes == ["print(1)"]
    assert in_batch(state) == "run_task"
    state = apply(state, run_task(state, rt(), CONFIG, deps=deps))
    assert ex.codes == ["print(1)", "print(2)"]
    assert in_batch(state) == "reflect"  # task 3 is not in the batch
    assert by_id(state["tasks"])[3]["status"] == "pending"


# ----------------------------------------------------------------------------- reflect


def _review(verdicts: list[tuple[int, str, str]], decision: str = "continue") -> AIMessage:
    return tool_answer("Review", {"verdicts": [{"task_id": t, "verdict": v, "hint": h} for t, v, h in verdicts],
                                  "decision": decision})


def test_reflect_judges_the_batch_with_one_complex_reasoning_call(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "done", ""), (2, "retry", "print the total"), (3, "failed", "")]))
    state = make_state([ran(1), ran(2), ran(3), pending(4)], batch=[1, 2, 3], iteration=0)
    update = reflect(state, rt(), deps=make_deps(tmp_path, llm))
    assert len(llm.calls) == 1
    assert llm.calls[0]["task_type"] == "complex_reasoning"
    tasks = by_id(apply(state, update)["tasks"])
    assert tasks[1]["status"] == "done"
    assert (tasks[2]["status"], tasks[2]["hint"], tasks[2]["approved"]) == ("pending", "print the total", False)
    assert tasks[3]["status"] == "failed"
    assert tasks[4]["status"] == "pending"
    assert update["decision"] == "continue"
    assert update["iteration"] == 1
    assert update["batch"] == []
    assert update["llm_calls"] == {"scripted": 1}
    prompt = human_text(llm.calls[0])
    assert "out 1" in prompt and "- Task 4" not in prompt


def test_reflect_retry_rewrites_the_code_with_the_hint_in_the_next_batch(tmp_path: Path) -> None:
    hint = "sum the numbers before printing"
    brain = Brain([[]], review=lambda tid, n: ("retry", hint) if tid == 2 else ("done", ""))
    llm = brain.model()
    deps = make_deps(tmp_path, llm)
    state = make_state([ran(1), ran(2, output="total: ?")], batch=[1, 2])
    state = apply(state, reflect(state, rt(), deps=deps))
    assert by_id(state["tasks"])[2]["status"] == "pending"
    assert after_reflect(state, rt()) == "write_code"
    state = apply(state, write_code(state, rt(), CONFIG, deps=deps))
    assert state["batch"] == [2]
    prompt = human_text(llm.calls[-1])
    assert "hint: sum the numbers before printing" in prompt
    assert "total: ?" in prompt
    assert by_id(state["tasks"])[2]["code"] == "print('task 2 v1')"


def test_reflect_retry_beyond_max_attempts_is_failed(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "retry", "try harder"), (2, "retry", "again")]))
    state = make_state([ran(1, attempts=2), ran(2, attempts=1)], batch=[1, 2])
    update = reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, llm))
    tasks = by_id(update["tasks"])
    assert tasks[1]["status"] == "failed"
    assert tasks[2]["status"] == "pending"


def test_reflect_never_marks_failed_execution_as_done(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "done", ""), (2, "done", "")]),
                                     _review([(1, "done", "")]))
    state = make_state([ran(1, "failed", attempts=1, error="exit status 2"),
                        ran(2, "failed", attempts=2, error="exit status 2")], batch=[1, 2])
    tasks = by_id(reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, llm))["tasks"])
    assert tasks[1]["status"] == "pending"  # retried instead
    assert tasks[2]["status"] == "failed"  # out of attempts
    blocked = make_state([ran(1, "failed", attempts=0, error="blocked: sudo")], batch=[1])
    update = reflect(blocked, rt(), deps=make_deps(tmp_path, llm))
    assert update["tasks"] == [{"id": 1, "status": "failed"}]  # blocked code is never retried


def test_reflect_without_a_verdict_trusts_the_exit_status(tmp_path: Path) -> None:
    llm = scripted(_review([]))
    state = make_state([ran(1), ran(2, "failed", error="exit status 1")], batch=[1, 2])
    tasks = by_id(reflect(state, rt(), deps=make_deps(tmp_path, llm))["tasks"])
    assert tasks[1]["status"] == "done"
    assert (tasks[2]["status"], tasks[2]["hint"]) == ("pending", "exit status 1")


def test_reflect_with_nothing_run_asks_nothing(tmp_path: Path) -> None:
    llm = scripted()
    state = make_state([{"id": 1, "description": "x", "status": "skipped"}], batch=[1], iteration=2)
    update = reflect(state, rt(), deps=make_deps(tmp_path, llm))
    assert llm.calls == []
    assert update["iteration"] == 3
    assert update["decision"] == "continue"


def test_reflect_quota_exhaustion_goes_to_fallback(tmp_path: Path) -> None:
    llm = scripted(exhausted(3600))
    state = make_state([ran(1)], batch=[1])
    update = reflect(state, rt(), deps=make_deps(tmp_path, llm))
    assert update["fallback"]["node"] == "reflect"
    assert after_reflect(apply(state, update), rt()) == "fallback"


def test_replan_decision_replans_once(tmp_path: Path) -> None:
    h = harness(tmp_path, Brain([["a", "b"], ["c"]], decisions=["replan", "replan", "continue"]),
                thread="replan")
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_replans=1)
    assert h.brain.counts["general"] == 2  # the first plan and one replan, never a second one
    assert [(t["id"], t["description"], t["status"]) for t in final["tasks"]] == [
        (1, "a", "done"), (2, "b", "done"), (3, "c", "done")
    ]
    assert final["status"] == "completed"


def test_a_batch_where_every_task_was_blocked_costs_no_reflect_request(tmp_path: Path) -> None:
    llm = scripted()  # any request would fail the test: the script has no answer
    state = make_state([ran(1, "failed", attempts=0, error="blocked: sudo"),
                        ran(2, "failed", attempts=0, error="blocked: rm -rf /")], batch=[1, 2])
    update = reflect(state, rt(), deps=make_deps(tmp_path, llm))
    assert llm.calls == [] and update["decision"] == "continue" and update["batch"] == []
    assert [t["status"] for t in update["tasks"]] == ["failed", "failed"]
