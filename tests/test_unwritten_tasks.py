"""A run never reports "completed" while planned tasks were skipped for want of code (issue 18):
the whole graph with a scripted model that writes code for only 1 of 3 tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.agent import GOAL, Brain, by_id, default_code, harness

pytestmark = pytest.mark.timeout(60)

PLAN = ["write numbers.txt", "sum the numbers", "write report.md"]


def only_task_1(tid: int, attempt: int) -> tuple[str, str] | None:
    return default_code(tid, attempt) if tid == 1 else None


@pytest.mark.parametrize(("decision", "max_attempts"), [("finish", 3), ("continue", 1)])
def test_a_run_whose_model_wrote_code_for_one_of_three_tasks_fails(
    tmp_path: Path, decision: str, max_attempts: int
) -> None:
    """The judge ends the run at once ("finish": the two tasks would be left pending), or the
    tasks have no attempts left: either way they failed, and so did the run."""
    h = harness(tmp_path, Brain([PLAN], code=only_task_1, decisions=[decision] * 5))
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_batch_size=3, max_attempts=max_attempts)
    assert h.executor.codes[0] == "print('task 1 v1')"
    assert set(h.executor.codes) == {"print('task 1 v1')"}  # nothing else ever ran
    tasks = by_id(final["tasks"])
    assert tasks[1]["status"] == "done"
    assert (tasks[2]["status"], tasks[3]["status"]) == ("failed", "failed")
    assert final["status"] == "failed"
    assert "✘ Task 2: sum the numbers — the model wrote no code for this task" in final["summary"]
    assert "1 of 3 tasks done." in final["summary"]


def test_a_run_whose_model_wrote_every_task_completes(tmp_path: Path) -> None:
    h = harness(tmp_path, Brain([PLAN], decisions=["finish"]))
    final = h.invoke({"goal": GOAL}, auto_approve=True, max_batch_size=3)
    assert final["status"] == "completed"
    assert "3 of 3 tasks done." in final["summary"]
