"""How the wrapper handles the inner clients' messages: one run per request (no callbacks, config,
tracing or usage hooks of the caller on the inner call), chunks re-labelled as the wrapper's, and
the test for an answer a caller can use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import invalid_tool_call
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import _configure_hooks
from langsmith import tracing_context
from pydantic import ValidationError

from free_llm_agent.providers.errors import EmptyAnswer, failed_generation

# The inner client's call is part of the wrapper's run, not a second chat-model run: no callbacks
# (LangGraph's ``messages`` stream, usage callbacks, tracers) and no tracing of its own.
INNER: RunnableConfig = {"callbacks": [], "run_name": "inner_client"}


@contextmanager
def untraced() -> Iterator[None]:
    """Tracing off, and the handlers that callback context managers register (such as
    ``get_usage_metadata_callback``) unset: they are attached to every run, including the inner one.
    The parent's config is unset too: ``RunnableBinding`` (a client with tools bound) merges it back."""
    hooks: list[ContextVar[Any]] = [var_child_runnable_config, *(var for var, *_ in _configure_hooks)]
    tokens = [(var, var.set(None)) for var in hooks]  # the parent run's config reaches bound clients otherwise
    try:
        with tracing_context(enabled=False):
            yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def as_chunk(message: BaseMessage, meta: dict[str, Any] | None = None) -> ChatGenerationChunk:
    data = message.model_dump(exclude={"type"})
    data["response_metadata"] = {**dict(data.get("response_metadata") or {}), **(meta or {})}
    if not isinstance(message, AIMessageChunk):
        data.pop("tool_calls", None)
        data.pop("invalid_tool_calls", None)
        data["tool_call_chunks"] = [
            {
                "name": tc["name"],
                "args": json.dumps(tc["args"]),
                "id": tc.get("id"),
                "index": i,
                "type": "tool_call_chunk",
            }
            for i, tc in enumerate(getattr(message, "tool_calls", []) or [])
        ]
    return ChatGenerationChunk(message=AIMessageChunk(**data))


def has_answer(message: AIMessage) -> bool:
    """Some text or a tool call: what a caller can use at all."""
    content = message.content
    text = content if isinstance(content, str) else "".join(
        str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return bool(text.strip() or message.tool_calls or message.invalid_tool_calls)


def not_empty(message: AIMessage) -> AIMessage:
    if not has_answer(message):
        raise EmptyAnswer("the provider answered with no text and no tool call (blocked or out of output budget)")
    return message


def to_message(chunk: BaseMessage) -> AIMessage:
    data = chunk.model_dump(exclude={"type", "tool_call_chunks"})
    return AIMessage(**data)


def _malformed_args(exc: BaseException) -> list[str]:
    """Tool-call arguments that are JSON but not an object (a double-encoded string, a list): LangChain's
    clients parse them and then fail to build the message (pydantic rejects the args), losing the answer."""
    if not isinstance(exc, ValidationError) or exc.title != "AIMessage":
        return []
    return [value if isinstance(value, str) else json.dumps(value, default=str)
            for err in exc.errors() if err["loc"][:1] == ("tool_calls",) and err["loc"][-1:] == ("args",)
            for value in [err.get("input")]]


def refused_answer(exc: BaseException) -> AIMessage | None:
    """The answer a provider returned that its client raised instead of returning: Groq's 400
    ``tool_use_failed`` (the model's text in ``failed_generation``), or tool-call arguments that are not
    a JSON object (kept as ``invalid_tool_calls``). The message says which in ``response_metadata``
    (``recovered_from``); None when ``exc`` carries no answer."""
    text = failed_generation(exc)
    if text is not None and text.strip():
        return AIMessage(content=text, response_metadata={"recovered_from": "tool_use_failed"})
    if args := _malformed_args(exc):
        calls = [invalid_tool_call(name=None, args=a, id=None, error="arguments are not an object") for a in args]
        return AIMessage(content="", invalid_tool_calls=calls, response_metadata={"recovered_from": "malformed_args"})
    return None
