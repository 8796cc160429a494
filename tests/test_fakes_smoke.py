"""The real LangChain clients work against ``tests.fakes.provider_server``.

Answers, streams, structured output, tool calls, response headers and the server itself;
which exception each client raises for each failure is in ``tests/test_fakes_errors.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import BaseModel

from tests.fakes.provider_server import (
    FakeProvider,
    Reply,
    Request,
    error,
    hang,
    json_content,
    rate_limit,
    ratelimit_headers,
    structured,
    text,
    tool_call,
)
from tests.support.clients import kind_of, make_llm

pytestmark = pytest.mark.timeout(60)


def concat(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    assert chunks, "no chunks"
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total


EXPECTED_PATH = {
    "gemini": "/v1beta/models/gemini-fake:generateContent",
    "groq": "/openai/v1/chat/completions",
    "together": "/chat/completions",
    "openai": "/chat/completions",
}


# --------------------------------------------------------------------------- happy path


def test_invoke_returns_text_and_usage(client: str, fake: FakeProvider) -> None:
    fake.script(text("hello there, world", prompt_tokens=7, completion_tokens=3))
    llm = make_llm(client, fake.base_url)
    msg = llm.invoke([("system", "be brief"), ("user", "say hello")])
    assert isinstance(msg, AIMessage)
    assert msg.content == "hello there, world"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == 7
    assert msg.usage_metadata["output_tokens"] == 3
    assert msg.usage_metadata["total_tokens"] == 10
    (req,) = fake.requests
    assert req.method == "POST"
    assert req.path == EXPECTED_PATH[client]
    assert (
        req.model
        == {
            "gemini": "gemini-fake",
            "groq": "llama-fake",
            "together": "together-fake",
            "openai": "gpt-fake",
        }[client]
    )
    assert req.text == "be brief\nsay hello"
    assert not req.stream
    assert not req.has_tools


def test_default_responder_and_responder_by_prompt(client: str) -> None:
    def answer(req: Request) -> Reply:
        return text(f"echo: {req.text}")

    with FakeProvider(kind_of(client)) as fp:
        assert make_llm(client, fp.base_url).invoke("hi").content == "ok"
    with FakeProvider(kind_of(client), responder=answer) as fp:
        fp.script(text("scripted first"))
        llm = make_llm(client, fp.base_url)
        assert llm.invoke("a").content == "scripted first"
        assert llm.invoke("ping").content == "echo: ping"
        assert fp.pending == 0


def test_stream_chunks_concatenate(client: str, fake: FakeProvider) -> None:
    fake.script(text("one two three four five six", prompt_tokens=4, completion_tokens=6))
    # ChatOpenAI/ChatTogether only ask for stream usage on a custom base_url if told to.
    extra = {"stream_usage": True} if client in ("openai", "together") else {}
    llm = make_llm(client, fake.base_url, **extra)
    chunks = list(llm.stream("count"))
    assert len(chunks) > 2
    total = concat(chunks)
    assert total.content == "one two three four five six"
    assert total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] == 4
    assert total.usage_metadata["output_tokens"] == 6
    (req,) = fake.requests
    assert req.stream
    if client == "gemini":
        assert req.path == "/v1beta/models/gemini-fake:streamGenerateContent"
        assert req.query == {"alt": "sse"}
    if client in ("openai", "together"):
        assert req.stream_usage


@pytest.mark.parametrize("client_name", ["openai", "together"])
def test_stream_without_stream_usage_has_no_usage(client_name: str) -> None:
    """Surprise worth knowing: custom base_url => no usage on streams by default."""
    with FakeProvider("openai") as fp:
        total = concat(list(make_llm(client_name, fp.base_url).stream("x")))
        assert total.content == "ok"
        assert total.usage_metadata is None
        assert not fp.requests[0].stream_usage


def test_async_invoke_and_stream(client: str, fake: FakeProvider) -> None:
    fake.script(text("async hello"), text("async stream hello"))
    llm = make_llm(client, fake.base_url)

    async def run() -> tuple[Any, list[AIMessageChunk]]:
        msg = await llm.ainvoke("x")
        chunks = [c async for c in llm.astream("y")]
        return msg, chunks

    msg, chunks = asyncio.run(run())
    assert msg.content == "async hello"
    assert concat(chunks).content == "async stream hello"


class Person(BaseModel):
    name: str
    age: int


STRUCTURED_REPLY: dict[str, Callable[[], Reply]] = {
    # default with_structured_output method per client -> what the fake must answer
    "gemini": lambda: json_content({"name": "Ada", "age": 36}),  # json_schema
    "openai": lambda: json_content({"name": "Ada", "age": 36}),  # json_schema
    "groq": lambda: tool_call("Person", {"name": "Ada", "age": 36}),  # function_calling
    "together": lambda: tool_call("Person", {"name": "Ada", "age": 36}),  # function_calling
}


def test_with_structured_output(client: str, fake: FakeProvider) -> None:
    fake.script(STRUCTURED_REPLY[client](), structured({"name": "Bob", "age": 7}))
    llm = make_llm(client, fake.base_url).with_structured_output(Person)
    assert llm.invoke("who?") == Person(name="Ada", age=36)
    assert llm.invoke("who else?") == Person(name="Bob", age=7)  # structured() adapts
    req = fake.requests[0]
    if client in ("groq", "together"):
        assert req.has_tools and req.tool_names == ["Person"] and req.forced_tool == "Person"
    else:
        assert req.wants_json and not req.has_tools


def test_tool_call_via_bind_tools(client: str, fake: FakeProvider) -> None:
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    fake.script(
        tool_call("get_weather", {"city": "Paris"}), tool_call("get_weather", {"city": "Rome"})
    )
    llm = make_llm(client, fake.base_url).bind_tools([get_weather])
    msg = llm.invoke("weather in Paris?")
    assert isinstance(msg, AIMessage)
    assert [(t["name"], t["args"]) for t in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert fake.requests[0].has_tools
    streamed = concat([c for c in llm.stream("weather in Rome?") if isinstance(c, AIMessageChunk)])
    assert [(t["name"], t["args"]) for t in streamed.tool_calls] == [
        ("get_weather", {"city": "Rome"})
    ]


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("client_name", ["openai", "together"])
def test_success_headers_openai_style(client_name: str) -> None:
    with FakeProvider("openai") as fp:
        fp.script(
            text("a", headers=ratelimit_headers()), text("b c d", headers=ratelimit_headers())
        )
        llm = make_llm(client_name, fp.base_url, include_response_headers=True)
        msg = llm.invoke("x")
        assert msg.response_metadata["headers"]["x-ratelimit-remaining-tokens"] == "11000"
        chunks = list(llm.stream("x"))
        with_headers = [c for c in chunks if "headers" in c.response_metadata]
        assert len(with_headers) == 1 and with_headers[0] is chunks[0]
        assert with_headers[0].response_metadata["headers"]["x-ratelimit-reset-tokens"] == "6s"


def test_success_headers_groq_need_an_httpx_hook() -> None:
    seen: list[dict[str, str]] = []

    def hook(response: httpx.Response) -> None:
        seen.append(dict(response.headers))

    with FakeProvider("openai") as fp, httpx.Client(event_hooks={"response": [hook]}) as hc:
        fp.script(text("a", headers=ratelimit_headers(remaining_requests=0)))
        msg = make_llm("groq", fp.base_url).invoke("x")
        assert "headers" not in msg.response_metadata  # ChatGroq never exposes them
        fp.script(text("a", headers=ratelimit_headers(remaining_requests=0)))
        make_llm("groq", fp.base_url, http_client=hc).invoke("x")
        assert seen[-1]["x-ratelimit-remaining-requests"] == "0"
        assert seen[-1]["x-ratelimit-reset-requests"] == "1m26s"


# --------------------------------------------------------------------------- server


def test_hang_does_not_block_other_requests_and_stop_is_prompt() -> None:
    slow_status: list[int] = []

    def slow_call(base_url: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(base_url + "/chat/completions", json={"messages": []}, timeout=5)
            slow_status.append(r.status_code)

    fp = FakeProvider("openai").start()
    fp.script(hang(30))
    t = threading.Thread(target=slow_call, args=(fp.base_url,), daemon=True)
    try:
        t.start()
        deadline = time.monotonic() + 2
        while not fp.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fp.pending == 0  # the hang reply was taken by the first request
        r = httpx.post(fp.base_url + "/chat/completions", json={"model": "m"}, timeout=2)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"
    finally:
        started = time.monotonic()
        fp.stop()
        assert time.monotonic() - started < 2
    t.join(timeout=2)
    assert not t.is_alive()
    assert slow_status == [503]  # stop() wakes hanging handlers, which answer 503


def test_unknown_route_is_404_in_kind_format() -> None:
    with FakeProvider("gemini") as g, FakeProvider("openai") as o:
        r = httpx.post(g.base_url + "/v1beta/nope", json={}, timeout=2)
        assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
        r = httpx.post(o.base_url + "/v1/embeddings", json={}, timeout=2)
        assert r.status_code == 404 and "message" in r.json()["error"]
        r = httpx.get(o.base_url + "/v1/models", timeout=2)
        assert r.json()["data"][0]["id"] == "fake-model"


def test_reply_from_spec_round_trip() -> None:
    assert Reply.from_spec({"type": "rate_limit", "retry_after": 3}) == rate_limit(retry_after=3)
    assert Reply.from_spec({"content": "hi"}) == text("hi")
    assert Reply.from_spec({"type": "hang", "seconds": 1, "then": {"type": "error"}}) == hang(
        1, error()
    )


def test_cli_subprocess(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = tmp_path / "script.json"
    spec.write_text(
        json.dumps({"text": "from cli", "replies": [{"type": "rate_limit", "retry_after": 2}]})
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.provider_server",
            "--kind",
            "openai",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--script-json",
            str(spec),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "server exited early"
            time.sleep(0.05)
        base_url = ready.read_text()
        assert base_url.startswith("http://127.0.0.1:")
        llm = make_llm("openai", base_url)
        from langchain_openai.chat_models.base import OpenAIRateLimitError

        with pytest.raises(OpenAIRateLimitError):
            llm.invoke("x")
        assert llm.invoke("x").content == "from cli"
        groq_llm = make_llm("groq", base_url)
        assert groq_llm.invoke("x").content == "from cli"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
