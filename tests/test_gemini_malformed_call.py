"""Gemini's ``MALFORMED_FUNCTION_CALL`` (issue 18): a candidate with no content, only that finish
reason. The same question is asked once more of the same provider without tools, on a quota slot of its
own, and its plain text answer is read by the tolerant reader; only if that fails too, or the provider
has no slot free, does the next provider get the question. The real ChatGoogleGenerativeAI client
against the loopback fake Gemini server. Also here: a stream that breaks after its first chunk is
booked (the request left)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import parse_plan
from free_llm_agent.nodes.schemas import Plan
from free_llm_agent.providers import build_chat_model
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.config import ConfigFactory, FakeFactory

pytestmark = pytest.mark.timeout(60)

MALFORMED: dict[str, Any] = {  # what Gemini answers when the model wrote a call it could not parse
    "candidates": [{"content": {}, "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0,
                    "finishMessage": "Malformed function call: print(Plan(tasks=['a'"}],
    "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "malformed-1",
}


def malformed() -> Reply:
    return Reply.raw(status=200, body=json.dumps(MALFORMED), content_type="application/json")


def malformed_stream() -> Reply:
    return Reply.raw(status=200, body=f"data: {json.dumps(MALFORMED)}\r\n\r\n", content_type="text/event-stream")


def posts(fp: FakeProvider) -> list[dict[str, Any]]:
    return [r.json or {} for r in fp.requests if r.method == "POST"]


def test_a_malformed_function_call_is_asked_again_without_tools_on_the_same_provider(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini, spare = fake_server("gemini"), fake_server("openai")
    gemini.script(malformed(), Reply.text("Task1: write numbers.txt | Task2: sum them | Task3: write report.md"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url},
                       "spare": {"kind": "openai_compatible", "base_url": spare.base_url}})
    asked = Asked()
    plan = ask(build_chat_model(cfg, home), Plan, [HumanMessage(content="Break this goal into tasks")], parse_plan,
               task_type="general", purpose="plan", asked=asked)
    assert plan.tasks == ["write numbers.txt", "sum them", "write report.md"]
    sent = posts(gemini)
    assert len(sent) == 2
    assert sent[0].get("tools") and not sent[1].get("tools")  # the retry is plain text
    assert sent[1]["contents"] == sent[0]["contents"]  # the same question
    assert posts(spare) == []
    assert asked.llm_calls == {"gemini_flash": 1}


def test_the_retry_is_counted_as_a_request_of_its_own(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini = fake_server("gemini")
    gemini.script(malformed(), Reply.text("1. write numbers.txt\n2. sum them"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url}})
    model = build_chat_model(cfg, home)
    ask(model, Plan, [HumanMessage(content="Break this goal into tasks")], parse_plan,
        task_type="general", purpose="plan", asked=Asked())
    assert len(posts(gemini)) == 2
    assert model.router.quota.counts("gemini_flash", time.time())["requests_day"] == 2  # what Gemini counted
    assert model.router.usage.get_daily_usage("gemini_flash")["requests"] == 2


def test_without_a_free_slot_for_the_retry_the_next_provider_gets_the_question_with_tools(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini, spare = fake_server("gemini"), fake_server("openai")
    gemini.script(malformed())
    spare.script(Reply.text("1. write numbers.txt\n2. sum them"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url,
                                        "limits": {"requests_per_day": 1}},
                       "spare": {"kind": "openai_compatible", "base_url": spare.base_url}})
    model = build_chat_model(cfg, home)
    plan = ask(model, Plan, [HumanMessage(content="Break this goal into tasks")], parse_plan,
               task_type="general", purpose="plan", asked=Asked())
    assert plan.tasks == ["write numbers.txt", "sum them"]
    assert len(posts(gemini)) == 1  # its day's one request is spent: no second one
    assert posts(spare)[0].get("tools")
    assert model.router.quota.counts("gemini_flash", time.time())["requests_day"] == 1


def test_a_streamed_malformed_call_is_asked_again_before_anything_is_yielded(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini = fake_server("gemini")
    gemini.script(malformed_stream(), Reply.text("1. write numbers.txt\n2. sum them"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url}})
    llm = build_chat_model(cfg, home).bind_tools([Plan], tool_choice="any").bind(task_type="general")
    chunks = list(llm.stream([HumanMessage(content="Break this goal into tasks")]))
    text = "".join(str(c.content) for c in chunks)
    assert parse_plan(text).tasks == ["write numbers.txt", "sum them"]
    sent = posts(gemini)
    assert len(sent) == 2 and sent[0].get("tools") and not sent[1].get("tools")


def test_a_stream_that_breaks_after_its_first_chunk_is_booked_and_raised(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    openai = fake_server("openai")
    first = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]}
    openai.script(Reply.raw(status=200, body=f"data: {json.dumps(first)}\n\ndata: {{not json\n\n",
                            content_type="text/event-stream"))
    cfg = make_config({"local": {"kind": "openai_compatible", "base_url": openai.base_url}})
    model = build_chat_model(cfg, home)
    got: list[str] = []
    with pytest.raises(Exception):  # noqa: B017 - the client's own parse error reaches the caller
        for chunk in model.stream([HumanMessage(content="hi")]):
            got.append(str(chunk.content))
    assert got == ["Hel"]
    day = model.router.usage.get_daily_usage("local")
    assert day["requests"] == 1 and day["errors"] == 1  # `usage` shows the failed request
    pending = model.router.db.query("SELECT COUNT(*) FROM quota_slots WHERE pending=1", ())[0][0]
    assert pending == 0  # the slot is settled, not left waiting for an answer


def test_a_second_malformed_answer_fails_over_to_the_next_provider(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini, spare = fake_server("gemini"), fake_server("openai")
    gemini.script(malformed(), malformed())
    spare.script(Reply.text("1. write numbers.txt\n2. sum them"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url},
                       "spare": {"kind": "openai_compatible", "base_url": spare.base_url}})
    plan = ask(build_chat_model(cfg, home), Plan, [HumanMessage(content="Break this goal into tasks")], parse_plan,
               task_type="general", purpose="plan", asked=Asked())
    assert plan.tasks == ["write numbers.txt", "sum them"]
    assert len(posts(gemini)) == 2 and len(posts(spare)) == 1


def test_the_async_path_asks_again_without_tools_too(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    gemini = fake_server("gemini")
    gemini.script(malformed(), Reply.text("1. write numbers.txt\n2. sum them"))
    cfg = make_config({"gemini_flash": {"kind": "gemini", "base_url": gemini.base_url}})
    llm = build_chat_model(cfg, home).bind_tools([Plan], tool_choice="any").bind(task_type="general")
    answer = asyncio.run(llm.ainvoke([HumanMessage(content="Break this goal into tasks")]))
    assert parse_plan(str(answer.content)).tasks == ["write numbers.txt", "sum them"]
    assert answer.response_metadata["provider"] == "gemini_flash"
    sent = posts(gemini)
    assert len(sent) == 2 and sent[0].get("tools") and not sent[1].get("tools")
