"""A scripted chat model for unit tests of nodes: answers come from a function or a list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field

ScriptedAnswer = AIMessage | str | Exception
Script = Callable[[list[BaseMessage], dict[str, Any]], ScriptedAnswer]


class ScriptedChatModel(BaseChatModel):
    """Replies with ``answers`` in order (or ``script(messages, kwargs)``); records every call.

    A str answer becomes an AIMessage; an Exception is raised. Every AIMessage gets
    ``response_metadata = {"provider": self.provider, "cached": False}`` unless it has one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answers: list[Any] = Field(default_factory=list)  # ScriptedAnswer items; Any keeps pydantic from coercing
    script: Script | None = None
    provider: str = "scripted"
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | dict[str, Any] | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append({"messages": messages, **kwargs})
        if self.script is not None:
            answer = self.script(messages, kwargs)
        elif self.answers:
            answer = self.answers.pop(0)
        else:
            raise AssertionError("ScriptedChatModel ran out of answers")
        if isinstance(answer, Exception):
            raise answer
        message = AIMessage(content=answer) if isinstance(answer, str) else answer
        if not message.response_metadata:
            message.response_metadata = {"provider": self.provider, "cached": False}
        return ChatResult(generations=[ChatGeneration(message=message)])


def tool_answer(name: str, args: dict[str, Any]) -> AIMessage:
    """An AIMessage calling tool ``name`` with ``args`` (what structured output looks like)."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_1", "type": "tool_call"}])
