"""The tool-call corpus end to end (issue 18): every answer of ``tests/support/corpus_toolcalls.py`` (tool
calls with renumbered ids, synonyms, wrappers, one call per task, double-encoded or Python-literal
arguments, calls written into the text, Groq's 400 ``tool_use_failed``) runs a four-task goal
through the real graph, the real ``QuotaAwareChatModel`` and the real LangChain clients against a
loopback fake. Every answer must be read as it is: each goal completes with every task done and
judged by the model (none by exit status alone), with no repair request and no request beyond
the batch budget (1 + 2 per batch). Then Groq's ``tool_use_failed`` through ``ChatGroq`` alone:
one request, the provider's failure streak unchanged, an unreadable one counted as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError, parse_code_batch
from free_llm_agent.nodes.schemas import CodeBatch
from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import Reply
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.corpus import FALLBACK, ToolCallResponder, outcome, posts, run_goal, start
from tests.support.corpus_answers import DEEPSEEK, FAMILIES, LLAMA
from tests.support.corpus_toolcalls import PLAN4, TOOLCALL_ANSWERS, VLLM, ToolAnswer

pytestmark = pytest.mark.timeout(60)

def assert_read_as_sent(state: Mapping[str, Any], answer: ToolAnswer) -> None:
    """Each task's code is the one its position got (it prints the description), in the answer's
    language; every verdict came from the model."""
    tasks = state["tasks"]
    assert [t["description"] for t in tasks] == list(PLAN4), [t["description"] for t in tasks]
    for task in tasks:
        assert not task.get("unjudged"), outcome(state)
        if answer.kind == "code":
            assert task["description"] in task["code"], (task["id"], task["code"])
            assert task["language"] == answer.language, (task["id"], task["language"])
    assert not [e for e in state.get("errors", []) if "exit status" in e], state.get("errors")


# ------------------------------------------------------------------------------ the corpus


@pytest.mark.parametrize("answer", TOOLCALL_ANSWERS, ids=[a.id for a in TOOLCALL_ANSWERS])
@pytest.mark.parametrize("batch_size", [2, 3])
def test_tool_call_answer_completes_its_goal_without_a_repair(
    answer: ToolAnswer, batch_size: int, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    responder = ToolCallResponder(answer)
    llm, fake, _ = start(fake_server, make_config, home, answer.family, responder)
    state, executor = run_goal(llm, home, batch_size=batch_size)
    assert state.get("status") == "completed", outcome(state)
    assert [t["status"] for t in state["tasks"]] == ["done"] * 4, outcome(state)
    assert len(executor.runs) == 4, executor.runs
    assert not [entry for entry in responder.log if entry[1]], responder.log  # no repair was needed
    budget = 1 + 2 * math.ceil(4 / batch_size)
    assert posts(fake) == budget, responder.log
    assert sum(state.get("llm_calls", {}).values()) == budget, state.get("llm_calls")
    if answer.kind == "review":
        last = [4] if batch_size == 3 else [3, 4]
        assert sorted(v["task_id"] for v in state["verdicts"] if v["verdict"] == "done") == last, state["verdicts"]
    assert_read_as_sent(state, answer)


def test_corpus_covers_the_issue() -> None:
    kinds = [a.kind for a in TOOLCALL_ANSWERS]
    assert len(TOOLCALL_ANSWERS) >= 40 and min(kinds.count(k) for k in ("plan", "code", "review")) >= 12
    assert len({a.id for a in TOOLCALL_ANSWERS}) == len(TOOLCALL_ANSWERS)
    assert {a.family for a in TOOLCALL_ANSWERS} == {*FAMILIES, VLLM}
    assert {a.kind for a in TOOLCALL_ANSWERS if a.tool_use_failed} == {"plan", "code", "review"}
    assert all(a.family == LLAMA for a in TOOLCALL_ANSWERS if a.tool_use_failed)  # Groq's error
    assert any(a.double for a in TOOLCALL_ANSWERS if a.family == DEEPSEEK)


# ------------------------------------------------------------------------ Groq tool_use_failed

_GENERATION = ('<function=CodeBatch>{"items": [{"task_id": "1", "language": "bash", "code": "echo hi"}, '
               '{"task_id": "2", "language": "Python", "code": "print(2)"}]}</function>')


def _tool_use_failed(generation: str) -> Reply:
    return Reply.error(400, body={"error": {
        "message": "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
        "type": "invalid_request_error", "code": "tool_use_failed", "failed_generation": generation}})


def _streak(llm: QuotaAwareChatModel, name: str) -> int:
    rows = llm.router.db.query("SELECT failures FROM cooldowns WHERE provider=?", (name,))
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def _ask_code(llm: QuotaAwareChatModel) -> tuple[CodeBatch, Asked]:
    asked = Asked()
    batch = ask(llm, CodeBatch, [HumanMessage(content="Write the code for tasks 5 and 6")],
                lambda text: parse_code_batch(text, [5, 6]), task_type="code_generation", purpose="code", asked=asked)
    return batch, asked


def test_groq_tool_use_failed_is_read_with_one_request_and_keeps_the_failure_streak(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    groq = fake_server("openai", responder=lambda req: _tool_use_failed(_GENERATION))
    backup = fake_server("openai")
    cfg = make_config({"groq": {"kind": "groq", "base_url": groq.base_url},
                       "backup": {"kind": "openai_compatible", "base_url": backup.base_url}}, fallback=FALLBACK)
    llm = build_chat_model(cfg, home)
    llm.router.quota.record_failure("groq", 0.0, 5, 60.0)  # an earlier failure: one in the streak
    batch, asked = _ask_code(llm)
    read = [(i.task_id, i.language, i.code) for i in batch.items]
    assert read == [(5, "shell", "echo hi"), (6, "python", "print(2)")]
    assert (posts(groq), posts(backup)) == (1, 0)
    assert asked.llm_calls == {"groq": 1}
    assert _streak(llm, "groq") == 1
    assert "/openai/v1/" in groq.requests[0].path  # the real ChatGroq client sent it


def test_unreadable_tool_use_failed_counts_as_a_failure(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    groq = fake_server("openai", responder=lambda req: _tool_use_failed("I cannot help with that."))
    cfg = make_config({"groq": {"kind": "groq", "base_url": groq.base_url}}, fallback=FALLBACK)
    llm = build_chat_model(cfg, home)
    with pytest.raises(ParseError):
        _ask_code(llm)
    assert posts(groq) == 2  # the answer and the repair prompt, both refused with prose nobody can read
    assert _streak(llm, "groq") == 2


def test_goal_with_every_code_answer_refused_by_groq_completes_within_budget(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    answer = next(a for a in TOOLCALL_ANSWERS if a.id == "code-tool-use-failed-enum")
    responder = ToolCallResponder(answer)
    llm, fake, name = start(fake_server, make_config, home, LLAMA, responder)
    state, executor = run_goal(llm, home, batch_size=3)
    assert state.get("status") == "completed", outcome(state)
    assert posts(fake) == 5 and len(executor.runs) == 4
    assert llm.router.quota.cooldown_until(name)[0] == 0.0  # no failure streak, no cooldown
    assert _streak(llm, name) == 0
