"""QuotaAwareChatModel over the real LangChain clients of every provider kind: streaming, async,
structured output (with fallback across kinds) and task-type routing, against loopback fakes.

Set up as in ``tests/test_provider_clients.py`` (primary = the kind under test, backup =
an OpenAI-compatible fake).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from free_llm_agent.providers import build_chat_model
from tests.fakes.provider_server import Reply
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.provider_clients import (
    City,
    SetupFactory,
    completions,
    rate_limited,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends]


# --------------------------------------------------------------------------- stream / async / structured


def test_stream(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.text("one two three four five six", completion_tokens=6))
    chunks = list(s.llm.stream("count"))
    assert len(chunks) >= 2
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "one two three four five six"
    assert chunks[0].response_metadata["provider"] == "primary"
    assert total.response_metadata["provider"] == "primary"
    assert s.primary.requests[0].stream
    assert s.llm.router.quota.counts("primary", time.time())["requests_day"] == 1


def test_stream_429_before_first_chunk_falls_back(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(rate_limited(kind, 30))
    s.backup.script(Reply.text("from the backup"))
    chunks = list(s.llm.stream("x"))
    assert "".join(str(c.content) for c in chunks) == "from the backup"
    assert chunks[0].response_metadata["provider"] == "backup"
    assert s.cooldown()[0] > time.time() + 20


# google-genai's async error path leaves aiohttp's ClientResponse.json() un-awaited (library noise)
@pytest.mark.filterwarnings("ignore:coroutine 'ClientResponse.json' was never awaited:RuntimeWarning")
def test_ainvoke_and_astream(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.text("async hello"), Reply.error(500))
    s.backup.script(Reply.text("streamed from backup"))

    async def go() -> tuple[AIMessage, list[AIMessageChunk]]:
        msg = await s.llm.ainvoke("a")
        chunks = [c async for c in s.llm.astream("b")]
        return msg, chunks

    msg, chunks = asyncio.run(go())
    assert msg.content == "async hello" and msg.response_metadata["provider"] == "primary"
    assert "".join(str(c.content) for c in chunks) == "streamed from backup"
    assert chunks[0].response_metadata["provider"] == "backup"


def test_with_structured_output(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.structured({"city": "Osaka", "population": 2_700_000}))
    result = s.llm.with_structured_output(City).invoke("biggest city in Kansai?")
    assert result == City(city="Osaka", population=2_700_000)
    assert completions(s.primary) == 1
    assert s.primary.requests[0].has_tools or s.primary.requests[0].wants_json


def test_structured_output_falls_back_across_kinds(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    s.primary.script(Reply.error(503))
    s.backup.script(Reply.structured({"city": "Nagoya", "population": 2_300_000}))
    result = s.llm.with_structured_output(City).invoke("x")
    assert result == City(city="Nagoya", population=2_300_000)


def test_task_type_routes_to_preferred_provider(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    a, b = fake_server("openai"), fake_server("openai")
    cfg = make_config(
        {"a": {"kind": "openai_compatible", "base_url": a.base_url}, "b": {"kind": "groq", "base_url": b.base_url}},
        routing={"task_types": {"code_generation": "b"}},
    )
    llm = build_chat_model(cfg, home)
    assert llm.invoke("x").response_metadata["provider"] == "a"
    assert llm.invoke("x", task_type="code_generation").response_metadata["provider"] == "b"
