"""One request through the wrapper is one chat-model run: callbacks, LangGraph's ``messages``
stream and usage counters see it once (the inner client runs without the caller's callbacks)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from tests.fakes.provider_server import Reply
from tests.support.provider_clients import SetupFactory

pytestmark = pytest.mark.timeout(60)


class Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.tokens: list[str] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        self.starts.append(kwargs.get("metadata") or {})

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(str(token))


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_callbacks_and_usage_see_one_run(kind: str, setup: SetupFactory, mode: str) -> None:
    s = setup(kind)
    s.primary.script(Reply.text("one two three", prompt_tokens=7, completion_tokens=3))
    runs = Runs()
    with get_usage_metadata_callback() as usage:
        if mode == "invoke":
            text = s.llm.invoke("hi", config={"callbacks": [runs]}).content
        else:
            text = "".join(str(c.content) for c in s.llm.stream("hi", config={"callbacks": [runs]}))
    assert text == "one two three"
    assert len(runs.starts) == 1
    if mode == "stream":
        assert "".join(runs.tokens) == "one two three"  # each token once
    assert sum(u["total_tokens"] for u in usage.usage_metadata.values()) == 10  # counted once


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_langgraph_messages_stream_shows_each_chunk_once(kind: str, setup: SetupFactory, mode: str) -> None:
    s = setup(kind)
    s.primary.script(Reply.text("OK then"))

    def ask(state: MessagesState) -> dict[str, list[BaseMessage]]:
        if mode == "invoke":
            return {"messages": [s.llm.invoke(state["messages"])]}
        for _ in s.llm.stream(state["messages"]):
            pass
        return {"messages": []}  # what was streamed is all the ``messages`` mode shows

    graph = StateGraph(MessagesState).add_node("ask", ask).add_edge(START, "ask").compile()
    parts: list[Any] = list(graph.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages"))
    assert "".join(str(chunk.content) for chunk, _ in parts if chunk.type in ("ai", "AIMessageChunk")) == "OK then"
    assert {meta["langgraph_node"] for _, meta in parts} == {"ask"}


def test_structured_output_tool_name_is_not_doubled_in_the_stream(kind: str, setup: SetupFactory) -> None:
    from pydantic import BaseModel

    class Plan(BaseModel):
        tasks: list[str]

    s = setup(kind)
    s.primary.script(Reply.structured({"tasks": ["a", "b"]}))

    def ask(state: MessagesState) -> dict[str, list[BaseMessage]]:
        plan = s.llm.with_structured_output(Plan).invoke(state["messages"])
        assert isinstance(plan, Plan) and plan.tasks == ["a", "b"]
        return {"messages": [AIMessage(content="planned")]}

    graph = StateGraph(MessagesState).add_node("ask", ask).add_edge(START, "ask").compile()
    parts: list[Any] = list(graph.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages"))
    names = [tc["name"] for chunk, _ in parts for tc in getattr(chunk, "tool_call_chunks", []) or [] if tc["name"]]
    assert names in ([], ["Plan"])  # JSON-mode clients have no tool call; tool-calling ones have it once
