"""Driving the answer corpora through the real graph: what each agent prompt is (:func:`prompt_of`),
what a cooperative model answers (:func:`good_reply`), how each model family is reached
(:func:`reach`), one goal run (:func:`run_goal`), and the tool-call corpus's responder
(:class:`ToolCallResponder`, :func:`start`). Used by ``tests/test_corpus_e2e.py``,
``tests/test_corpus_toolcalls.py`` and ``bench/answer_shapes.py``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.workflow import build_graph
from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.agent import FakeExecutor
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.corpus_answers import GEMINI, GOAL, LLAMA, OLLAMA
from tests.support.corpus_toolcalls import PLAN4, VLLM, ToolAnswer

REPAIR = "Your last answer could not be read"
_PROMPTS = (  # marker of each prompt, and where its "- Task N: ..." lines are
    ("plan", "Break this goal", None),
    ("plan", "Write a new plan", None),
    ("code", "Write the code for each of these tasks", "Rules:"),
    ("review", "These tasks were just run", "For each task decide"),
)
_TASK_LINE = re.compile(r"^- Task (\d+): (.*)$", re.M)
# Fail fast: no sleeping between node retries, one retry (more retries only cost more calls).
FALLBACK = {"retry_delay_seconds": 0, "max_retries": 1}
# How each family is reached: fake wire format, provider name and providers.yaml entry.
_REACH: dict[str, tuple[str, str, dict[str, Any]]] = {
    LLAMA: ("openai", "groq_llama", {"kind": "groq"}),
    GEMINI: ("gemini", "gemini_flash", {"kind": "gemini"}),
    OLLAMA: ("openai", "ollama", {"kind": "openai_compatible", "local": True, "api_key_env": None}),
    VLLM: ("openai", "vllm", {"kind": "openai_compatible", "local": True, "api_key_env": None}),
}
_OPENROUTER = ("openai", "openrouter", {"kind": "openai_compatible"})  # Qwen and DeepSeek


def reach(family: str) -> tuple[str, str, dict[str, Any]]:
    """(fake wire format, provider name, providers.yaml entry) of a model family."""
    return _REACH.get(family, _OPENROUTER)


def prompt_of(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The kind of agent prompt in ``text`` and the (id, description) of the tasks it asks about."""
    for kind, marker, end in _PROMPTS:
        if marker in text:
            if end is None:
                return kind, []
            section = text.split(marker, 1)[1].split(end, 1)[0]
            return kind, [(int(tid), desc.strip()) for tid, desc in _TASK_LINE.findall(section)]
    return "other", []


def good_reply(kind: str, batch: Sequence[tuple[int, str]], plan: Sequence[str]) -> Reply:
    """What a cooperative model answers: structured output (a tool call when tools are bound)."""
    if kind == "plan":
        return Reply.structured({"tasks": list(plan)})
    if kind == "code":
        items = [{"task_id": tid, "language": "python", "code": f"print({desc!r})"} for tid, desc in batch]
        return Reply.structured({"items": items})
    if kind == "review":
        verdicts = [{"task_id": tid, "verdict": "done", "hint": ""} for tid, _ in batch]
        return Reply.structured({"verdicts": verdicts, "decision": "continue"})
    return Reply.text("OK")


def run_goal(
    llm: QuotaAwareChatModel, home: Path, *, batch_size: int = 3, thread: str = "corpus", workdir: Path | None = None
) -> tuple[dict[str, Any], FakeExecutor]:
    """One goal through the real graph; the final state and the executor that ran its code."""
    executor = FakeExecutor()
    graph = build_graph(checkpointer=InMemorySaver(), llm=llm, executor_factory=executor.factory, home=home)
    config: Any = {"configurable": {"thread_id": thread}, "recursion_limit": 150}
    context = Context(auto_approve=True, max_batch_size=batch_size, workdir=str(workdir) if workdir else None)
    graph.invoke({"goal": GOAL}, config, context=context)
    return dict(graph.get_state(config).values), executor


def posts(fake: FakeProvider) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")


def outcome(state: Mapping[str, Any]) -> str:
    """What went wrong, for assertion messages."""
    tasks = [(t["id"], t.get("status"), t.get("error", "")) for t in state.get("tasks", [])]
    return f"status={state.get('status')} tasks={tasks} errors={state.get('errors', [])}"


@dataclass
class ToolCallResponder:
    """Answers the prompt of ``answer.kind`` with the corpus entry, every other prompt with good
    structured output, and a repair prompt with prose nobody can read (there must be none)."""

    answer: ToolAnswer | None = None
    log: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, req: Request) -> Reply:
        kind, batch = prompt_of(req.text)
        repair = REPAIR in req.text
        self.log.append((kind, repair))
        if repair:
            return Reply.text("I am not sure what you mean.")
        if self.answer is not None and kind == self.answer.kind:
            return self.answer.reply(batch)
        return good_reply(kind, batch, PLAN4)


def start(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, family: str, responder: ToolCallResponder
) -> tuple[QuotaAwareChatModel, FakeProvider, str]:
    wire, name, spec = reach(family)
    fake = fake_server(wire, responder=responder)
    cfg = make_config({name: {**spec, "base_url": fake.base_url}}, fallback=FALLBACK)
    return build_chat_model(cfg, home), fake, name
