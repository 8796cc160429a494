"""Unit tests of every node, reducer and router, with a scripted chat model and a fake executor.

Nodes are called directly with a state dict, ``Runtime(context=Context(...))`` and a ``Deps``
holding the fakes; what needs ``interrupt()`` (approval, waiting for quota) or the routing
between nodes runs through ``build_graph`` with an ``InMemorySaver``. No Open Interpreter,
no network: the whole file runs in a few seconds.

``FakeExecutor``, ``Brain`` and friends are reused by ``tests/test_graph_flow.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime
from langgraph.types import Command

import nodes.fallback as fallback_module
from graph.context import Context
from graph.deps import Deps
from graph.routing import after_plan, after_reflect, after_write_code, in_batch
from graph.state import State, Task, add_counts, merge_tasks
from graph.workflow import build_graph
from nodes.approval import approve
from nodes.execute import run_task, write_code
from nodes.fallback import fallback
from nodes.finalize import finalize
from nodes.plan import plan
from nodes.reflect import reflect
from providers.errors import AllProvidersExhausted
from tests.fakes.scripted import Answer, ScriptedChatModel, tool_answer

pytestmark = pytest.mark.timeout(60)

GOAL = "count the words in a sample text"
THREAD = "unit-thread"
CONFIG: RunnableConfig = {"configurable": {"thread_id": THREAD}}


# ----------------------------------------------------------------------------- fakes


@dataclass
class FakeResult:
    ok: bool
    output: str = ""
    timed_out: bool = False
    duration_s: float = 0.01
    error: str | None = None


Outcome = Callable[[str, str], FakeResult]


def _echo(language: str, code: str) -> FakeResult:
    return FakeResult(ok=True, output=f"ran {language}: {code}")


class FakeExecutor:
    """Records every run; ``outcome(language, code)`` decides the result (default: ok, echo)."""

    def __init__(self, workspace: Path | None = None, outcome: Outcome | None = None) -> None:
        self.workspace = workspace or Path("/nonexistent-workspace")
        self.outcome: Outcome = outcome or _echo
        self.runs: list[tuple[str, str]] = []
        self.closed = 0
        self.timeouts: list[float] = []

    def run(self, language: str, code: str) -> FakeResult:
        self.runs.append((language, code))
        return self.outcome(language, code)

    def close(self) -> None:
        self.closed += 1

    @property
    def codes(self) -> list[str]:
        return [code for _, code in self.runs]

    def factory(self, workspace: Path, timeout_s: float) -> FakeExecutor:
        """An ``executor_factory`` that hands out this executor (and records the timeout)."""
        self.workspace = workspace
        self.timeouts.append(timeout_s)
        return self


def scripted(*answers: Answer) -> ScriptedChatModel:
    """A ScriptedChatModel replying ``answers`` in order.

    Served through ``script``: the model's ``answers`` field fails validation for str and
    Exception items (pydantic tries to build an AIMessage from them and crashes).
    """
    queue = list(answers)

    def script(messages: list[BaseMessage], kwargs: dict[str, Any]) -> Answer:
        if not queue:
            raise AssertionError("the scripted model ran out of answers")
        return queue.pop(0)

    return ScriptedChatModel(script=script)


CodeFor = Callable[[int, int], tuple[str, str] | None]  # (task id, attempt) -> (language, code) | None
ReviewFor = Callable[[int, int], tuple[str, str]]  # (task id, review no.) -> (verdict, hint)
FailOn = Callable[[str, int], Exception | None]  # (task_type, call no. of that type) -> raise this


def default_code(tid: int, attempt: int) -> tuple[str, str]:
    return "python", f"print('task {tid} v{attempt}')"


def _ids(text: str, start: str, end: str) -> list[int]:
    section = text.split(start, 1)[1].split(end, 1)[0]
    return [int(n) for n in re.findall(r"^- Task (\d+):", section, re.M)]


class Brain:
    """A cooperative model, as a ``ScriptedChatModel.script``: answers by ``task_type``.

    Plans come from ``plans`` (one per plan call, the last repeats), code from ``code``,
    verdicts from ``review`` and decisions from ``decisions`` (default "continue");
    ``fail`` may raise instead of answering. Human prompts are kept per task type.
    """

    def __init__(
        self,
        plans: list[list[str]],
        *,
        code: CodeFor = default_code,
        review: ReviewFor | None = None,
        decisions: list[str] | None = None,
        fail: FailOn | None = None,
    ) -> None:
        self.plans = plans
        self.code = code
        self.review = review or (lambda tid, n: ("done", ""))
        self.decisions = list(decisions or [])
        self.fail = fail
        self.counts: Counter[str] = Counter()
        self.written: Counter[int] = Counter()
        self.reviewed: Counter[int] = Counter()
        self.prompts: dict[str, list[str]] = {}

    def model(self) -> ScriptedChatModel:
        return ScriptedChatModel(script=self)

    def __call__(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Answer:
        task_type = str(kwargs.get("task_type"))
        self.counts[task_type] += 1
        text = str(messages[-1].content)
        self.prompts.setdefault(task_type, []).append(text)
        if self.fail is not None and (exc := self.fail(task_type, self.counts[task_type])) is not None:
            return exc
        if task_type == "general":
            return tool_answer("Plan", {"tasks": self.plans[min(self.counts[task_type], len(self.plans)) - 1]})
        if task_type == "code_generation":
            items = []
            for tid in _ids(text, "Write the code for each of these tasks:", "Rules:"):
                self.written[tid] += 1
                written = self.code(tid, self.written[tid])
                if written is not None:
                    items.append({"task_id": tid, "language": written[0], "code": written[1]})
            return tool_answer("CodeBatch", {"items": items})
        if task_type == "complex_reasoning":
            verdicts = []
            for tid in _ids(text, "These tasks were just run:", "For each task decide"):
                self.reviewed[tid] += 1
                verdict, hint = self.review(tid, self.reviewed[tid])
                verdicts.append({"task_id": tid, "verdict": verdict, "hint": hint})
            decision = self.decisions.pop(0) if self.decisions else "continue"
            return tool_answer("Review", {"verdicts": verdicts, "decision": decision})
        raise AssertionError(f"unexpected task_type {task_type!r}")


# ----------------------------------------------------------------------------- helpers


def rt(**context: Any) -> Runtime[Context]:
    return Runtime(context=Context(**context))


def make_deps(tmp_path: Path, llm: ScriptedChatModel | None = None, executor: FakeExecutor | None = None) -> Deps:
    ex = executor or FakeExecutor()
    return Deps(llm=llm or scripted(), executor_factory=ex.factory, home=tmp_path)


def make_state(tasks: list[Task] | None = None, **extra: Any) -> State:
    return cast(State, {"goal": GOAL, "tasks": list(tasks or []), **extra})


def pending(tid: int, description: str | None = None, **extra: Any) -> Task:
    return cast(Task, {"id": tid, "description": description or f"step {tid}", "status": "pending",
                       "attempts": 0, **extra})


def apply(state: State, update: Mapping[str, Any]) -> State:
    """``state`` after ``update``, combined with the graph's reducers."""
    out: dict[str, Any] = dict(state)
    for key, value in update.items():
        if key == "tasks":
            out[key] = merge_tasks(out.get("tasks"), value)
        elif key == "llm_calls":
            out[key] = add_counts(out.get("llm_calls"), value)
        elif key in ("cache_hits", "errors"):
            out[key] = out.get(key, 0 if key == "cache_hits" else []) + value
        else:
            out[key] = value
    return cast(State, out)


def by_id(tasks: list[Task]) -> dict[int, Task]:
    return {t["id"]: t for t in tasks}


def human_text(call: Mapping[str, Any]) -> str:
    return str(call["messages"][-1].content)


def exhausted(in_seconds: float | None) -> AllProvidersExhausted:
    at = None if in_seconds is None else datetime.now(UTC) + timedelta(seconds=in_seconds)
    return AllProvidersExhausted(retry_at=at, reasons={"groq_llama": "rate limited"})


def answered_by(provider: str, content: str | AIMessage, *, cached: bool = False) -> AIMessage:
    message = content if isinstance(content, AIMessage) else AIMessage(content=content)
    message.response_metadata = {"provider": provider, "cached": cached}
    return message


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fallback node's sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(fallback_module, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


@dataclass
class Harness:
    graph: Any
    brain: Brain
    llm: ScriptedChatModel
    executor: FakeExecutor
    config: RunnableConfig

    def invoke(self, value: Any, **context: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.graph.invoke(value, self.config, context=Context(**context)))

    def values(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self.config).values)

    def interrupts(self) -> list[dict[str, Any]]:
        return [dict(i.value) for i in self.graph.get_state(self.config).interrupts]

    def next(self) -> tuple[str, ...]:
        return tuple(self.graph.get_state(self.config).next)


def harness(tmp_path: Path, brain: Brain, executor: FakeExecutor | None = None, thread: str = "t1") -> Harness:
    ex = executor or FakeExecutor()
    llm = brain.model()
    graph = build_graph(checkpointer=InMemorySaver(), llm=llm, executor_factory=ex.factory, home=tmp_path)
    return Harness(graph, brain, llm, ex, {"configurable": {"thread_id": thread}, "recursion_limit": 100})


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
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, llm))
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
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, llm))
    assert [(t["id"], t["description"], t["status"]) for t in update["tasks"]] == [
        (1, "a", "pending"), (2, "b", "pending"), (3, "c", "pending")
    ]
    assert len(llm.calls) == 1


def test_plan_unparsable_answer_is_repaired_with_exactly_two_calls(tmp_path: Path) -> None:
    llm = scripted("I'm not sure what you mean.", '{"tasks": ["a", "b", "c"]}')
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, llm))
    assert [t["description"] for t in update["tasks"]] == ["a", "b", "c"]
    assert update["fallback"] is None
    assert len(llm.calls) == 2
    assert "could not be read" in human_text(llm.calls[1])
    assert llm.calls[1]["task_type"] == "general"
    assert update["llm_calls"] == {"scripted": 2}


def test_plan_unparsable_twice_sends_the_run_to_fallback(tmp_path: Path) -> None:
    llm = scripted("I'm not sure what you mean.", "Still no idea, sorry.")
    state = make_state()
    update = plan(state, rt(), deps=make_deps(tmp_path, llm))
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
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, llm))
    assert update["fallback"]["kind"] == "quota"
    assert update["fallback"]["node"] == "plan"
    assert error.retry_at is not None
    assert update["fallback"]["retry_at"] == error.retry_at.isoformat()
    assert "tasks" not in update


def test_plan_failure_count_grows_while_the_same_node_keeps_failing(tmp_path: Path) -> None:
    llm = scripted(exhausted(None))
    state = make_state(fallback={"node": "plan", "kind": "error", "failures": 2, "retry_at": None, "error": "x"})
    update = plan(state, rt(), deps=make_deps(tmp_path, llm))
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
    update = plan(state, rt(), deps=make_deps(tmp_path, llm))
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
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, llm))
    assert update["llm_calls"] == {"groq_llama": 1, "google_gemini": 1}
    assert update["cache_hits"] == 0

    cached = scripted(answered_by("groq_llama", "Task1: a | Task2: b | Task3: c", cached=True))
    update = plan(make_state(), rt(), deps=make_deps(tmp_path, cached))
    assert update["llm_calls"] == {}
    assert update["cache_hits"] == 1


# ----------------------------------------------------------------------------- write_code


def test_write_code_asks_once_for_a_batch_of_max_batch_size(tmp_path: Path) -> None:
    brain = Brain([[]])
    llm = brain.model()
    state = make_state([pending(i) for i in range(1, 5)])
    update = write_code(state, rt(max_batch_size=3), deps=make_deps(tmp_path, llm))
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
    update = write_code(state, rt(), deps=make_deps(tmp_path, llm))
    assert update["batch"] == [2]
    prompt = human_text(llm.calls[0])
    assert "wrote data.csv with 42 rows" in prompt
    assert "- Task 2: plot data" in prompt


def test_write_code_without_pending_tasks_makes_no_call_and_finishes(tmp_path: Path) -> None:
    llm = scripted()
    state = make_state([{"id": 1, "description": "x", "status": "done"}])
    update = write_code(state, rt(), deps=make_deps(tmp_path, llm))
    assert update["batch"] == []
    assert llm.calls == []
    assert after_write_code(apply(state, update)) == "finalize"


def test_missing_code_for_a_task_makes_it_fail_without_running(tmp_path: Path) -> None:
    ex = FakeExecutor()
    llm = scripted(tool_answer("CodeBatch", {"items": [{"task_id": 1, "code": "print(1)"}]}))
    deps = make_deps(tmp_path, llm, ex)
    state = make_state([pending(1), pending(2)])
    state = apply(state, write_code(state, rt(), deps=deps))
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
    update = write_code(state, rt(), deps=make_deps(tmp_path, llm))
    assert update["fallback"]["node"] == "write_code"
    assert update["fallback"]["kind"] == "quota"
    assert after_write_code(apply(state, update)) == "fallback"


# ----------------------------------------------------------------------------- approve


def _coded(tid: int, code: str, language: str = "python", **extra: Any) -> Task:
    return pending(tid, **{"code": code, "language": language, "approved": False, **extra})


def test_auto_approve_approves_without_interrupt(tmp_path: Path) -> None:
    state = make_state([_coded(1, "print('hi')")], batch=[1])
    # interrupt() outside a graph run would raise: returning at all shows no interrupt happened
    update = approve(state, rt(auto_approve=True), CONFIG, deps=make_deps(tmp_path))
    assert update == {"tasks": [{"id": 1, "approved": True}]}
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
    assert update["tasks"] == [{"id": 1, "status": "done", "attempts": 1, "approved": False,
                                "output": "hello\n", "error": ""}]
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


def _ran(tid: int, status: str = "done", attempts: int = 1, **extra: Any) -> Task:
    return cast(Task, {"id": tid, "description": f"step {tid}", "status": status, "attempts": attempts,
                       "code": f"print({tid})", "language": "python", "output": f"out {tid}", **extra})


def _review(verdicts: list[tuple[int, str, str]], decision: str = "continue") -> AIMessage:
    return tool_answer("Review", {"verdicts": [{"task_id": t, "verdict": v, "hint": h} for t, v, h in verdicts],
                                  "decision": decision})


def test_reflect_judges_the_batch_with_one_complex_reasoning_call(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "done", ""), (2, "retry", "print the total"), (3, "failed", "")]))
    state = make_state([_ran(1), _ran(2), _ran(3), pending(4)], batch=[1, 2, 3], iteration=0)
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
    state = make_state([_ran(1), _ran(2, output="total: ?")], batch=[1, 2])
    state = apply(state, reflect(state, rt(), deps=deps))
    assert by_id(state["tasks"])[2]["status"] == "pending"
    assert after_reflect(state, rt()) == "write_code"
    state = apply(state, write_code(state, rt(), deps=deps))
    assert state["batch"] == [2]
    prompt = human_text(llm.calls[-1])
    assert "hint: sum the numbers before printing" in prompt
    assert "total: ?" in prompt
    assert by_id(state["tasks"])[2]["code"] == "print('task 2 v1')"


def test_reflect_retry_beyond_max_attempts_is_failed(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "retry", "try harder"), (2, "retry", "again")]))
    state = make_state([_ran(1, attempts=2), _ran(2, attempts=1)], batch=[1, 2])
    update = reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, llm))
    tasks = by_id(update["tasks"])
    assert tasks[1]["status"] == "failed"
    assert tasks[2]["status"] == "pending"


def test_reflect_never_marks_failed_execution_as_done(tmp_path: Path) -> None:
    llm = scripted(_review([(1, "done", ""), (2, "done", "")]),
                                     _review([(1, "done", "")]))
    state = make_state([_ran(1, "failed", attempts=1, error="exit status 2"),
                        _ran(2, "failed", attempts=2, error="exit status 2")], batch=[1, 2])
    tasks = by_id(reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, llm))["tasks"])
    assert tasks[1]["status"] == "pending"  # retried instead
    assert tasks[2]["status"] == "failed"  # out of attempts
    blocked = make_state([_ran(1, "failed", attempts=0, error="blocked: sudo")], batch=[1])
    update = reflect(blocked, rt(), deps=make_deps(tmp_path, llm))
    assert update["tasks"] == [{"id": 1, "status": "failed"}]  # blocked code is never retried


def test_reflect_without_a_verdict_trusts_the_exit_status(tmp_path: Path) -> None:
    llm = scripted(_review([]))
    state = make_state([_ran(1), _ran(2, "failed", error="exit status 1")], batch=[1, 2])
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
    state = make_state([_ran(1)], batch=[1])
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
    deps.executor(THREAD, 5.0)
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
    assert ex.closed == 1  # the thread's executor is released


def test_finalize_status_completed_only_when_work_was_done_and_nothing_failed(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    done = make_state([_ran(1), _ran(2)])
    assert finalize(done, CONFIG, deps=deps)["status"] == "completed"
    assert "2 of 2 tasks done." in finalize(done, CONFIG, deps=deps)["summary"]
    with_skip = make_state([_ran(1), {"id": 2, "description": "x", "status": "skipped"}])
    assert finalize(with_skip, CONFIG, deps=deps)["status"] == "completed"
    assert finalize(make_state([pending(1)]), CONFIG, deps=deps)["status"] == "failed"
    gave_up = make_state([_ran(1)], status="failed")
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
    assert in_batch(make_state([_ran(1), pending(2, approved=True)], batch=[1, 2])) == "run_task"
    assert in_batch(make_state([_ran(1), _ran(2, "failed")], batch=[1, 2])) == "reflect"
    assert in_batch(make_state([_ran(1), pending(2)], batch=[1])) == "reflect"  # 2 is for a later batch
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
    state = make_state([_ran(1), pending(2)], **extra)
    assert after_reflect(state, rt(**context)) == expected


def test_after_reflect_without_pending_tasks_finalizes() -> None:
    state = make_state([_ran(1), _ran(2, "failed")], decision="continue", iteration=1)
    assert after_reflect(state, rt()) == "finalize"
    assert after_reflect(make_state([_ran(1)], decision="replan", replans=0), rt()) == "plan"
