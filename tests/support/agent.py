"""Fakes and helpers shared by the node, graph-flow and CLI tests (not collected as tests).

Nodes are called directly with a state dict, ``rt(...)`` (a ``Runtime(context=Context(...))``)
and ``make_deps(...)`` (a ``Deps`` holding the fakes); ``harness(...)`` builds the real graph
with an ``InMemorySaver`` around a ``Brain`` (a cooperative scripted model) and a
``FakeExecutor``. No Open Interpreter, no network.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State, Task, add_counts, merge_tasks
from free_llm_agent.graph.workflow import build_graph
from free_llm_agent.providers.errors import AllProvidersExhausted
from free_llm_agent.runtime.deps import Deps
from tests.fakes.scripted import ScriptedAnswer, ScriptedChatModel, tool_answer

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
        self.network = True
        self.network = True

    def run(self, language: str, code: str) -> FakeResult:
        self.runs.append((language, code))
        return self.outcome(language, code)

    def close(self) -> None:
        self.closed += 1

    @property
    def codes(self) -> list[str]:
        return [code for _, code in self.runs]

    def factory(self, workspace: Path, timeout_s: float, network: bool = True) -> FakeExecutor:
        """An ``executor_factory`` that hands out this executor (and records the timeout and network)."""
        self.workspace = workspace
        self.network = network
        self.timeouts.append(timeout_s)
        return self


def scripted(*answers: ScriptedAnswer) -> ScriptedChatModel:
    """A ScriptedChatModel replying ``answers`` in order.

    Served through ``script``: the model's ``answers`` field fails validation for str and
    Exception items (pydantic tries to build an AIMessage from them and crashes).
    """
    queue = list(answers)

    def script(messages: list[BaseMessage], kwargs: dict[str, Any]) -> ScriptedAnswer:
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

    def __call__(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ScriptedAnswer:
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



@dataclass
class GraphHarness:
    graph: Any
    brain: Brain
    llm: ScriptedChatModel
    executor: FakeExecutor
    config: RunnableConfig
    deps: Deps

    def invoke(self, value: Any, **context: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.graph.invoke(value, self.config, context=Context(**context)))

    def values(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self.config).values)

    def interrupts(self) -> list[dict[str, Any]]:
        return [dict(i.value) for i in self.graph.get_state(self.config).interrupts]

    def next(self) -> tuple[str, ...]:
        return tuple(self.graph.get_state(self.config).next)


def harness(tmp_path: Path, brain: Brain, executor: FakeExecutor | None = None, thread: str = "t1") -> GraphHarness:
    ex = executor or FakeExecutor()
    llm = brain.model()
    deps = Deps(llm=llm, executor_factory=ex.factory, home=tmp_path)
    graph = build_graph(checkpointer=InMemorySaver(), deps=deps)
    return GraphHarness(graph, brain, llm, ex, {"configurable": {"thread_id": thread}, "recursion_limit": 100}, deps)


def ran(tid: int, status: str = "done", attempts: int = 1, **extra: Any) -> Task:
    """A task of the last batch that ran (``status`` done by default)."""
    return cast(Task, {"id": tid, "description": f"step {tid}", "status": status, "attempts": attempts,
                       "code": f"print({tid})", "language": "python", "output": f"out {tid}", **extra})
