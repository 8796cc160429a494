"""Ask the LLM for a schema: forced tool call, every channel of the answer read by one tolerant
reader (:mod:`nodes.answer_reader`), one repair prompt last. Reports which provider answered and
whether it was cached."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel

from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.answer_reader import message_text, read_answer
from free_llm_agent.nodes.events import LlmCall, emit
from free_llm_agent.nodes.parsing import ParseError

T = TypeVar("T", bound=BaseModel)
_log = logging.getLogger(__name__)


@dataclass
class Asked:
    """What one ``ask`` cost: LLM calls per provider and cache hits."""

    llm_calls: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def record(self, message: AIMessage, purpose: str) -> None:
        meta = message.response_metadata or {}
        provider = str(meta.get("provider") or meta.get("model_name") or "unknown")
        cached = bool(meta.get("cached"))
        if cached:
            self.cache_hits += 1
        else:
            self.llm_calls[provider] = self.llm_calls.get(provider, 0) + 1
        model = str(meta.get("model", ""))
        self.log.append({"purpose": purpose, "provider": provider, "model": model, "cached": cached})
        emit(LlmCall(event="llm_call", purpose=purpose, provider=provider, model=model, cached=cached))

    def update(self) -> dict[str, Any]:
        return {"llm_calls": self.llm_calls, "cache_hits": self.cache_hits, "calls": self.log}


def ask(
    llm: BaseChatModel,
    schema: type[T],
    messages: list[BaseMessage],
    parse: Callable[[str], T],
    *,
    task_type: str,
    purpose: str,
    asked: Asked,
    providers: Sequence[str] = (),
    previous_error: str | None = None,
) -> T:
    """One LLM call for ``schema`` (plus one repair call only if no channel of the answer can be read).

    An answer that cannot be used is rejected (:meth:`QuotaAwareChatModel.reject` drops it from
    the response cache), so neither the repair nor a later retry of the node is served it again.
    ``previous_error`` (why the node's last try failed) is added to the request, so a retry is a
    different question and the model has a reason to answer differently.
    """
    routing: dict[str, Any] = {"task_type": task_type, "purpose": purpose,
                               **({"providers": list(providers)} if providers else {})}
    if previous_error:  # appended to the question itself, which stays the last message
        last = messages[-1]
        messages = [*messages[:-1], HumanMessage(content=f"{last.content}\n\n{prompts.retry_note(previous_error)}")]
    reject = getattr(llm, "reject", None) or (lambda message: None)
    grade = getattr(llm, "grade", None) or (lambda message, purpose, outcome: None)  # routing learns from it
    try:
        runnable: Any = llm.bind_tools([schema], tool_choice="any").bind(**routing)
    except NotImplementedError:
        runnable = llm.bind(**routing)
    message: AIMessage = runnable.invoke(messages)
    asked.record(message, purpose)
    text = message_text(message)
    try:
        got = read_answer(message, schema, parse)
        grade(message, purpose, "usable")
        return got
    except ParseError as first_error:
        _log.info("%s: the answer could not be read (%s); asking once more with a repair prompt", purpose,
                  str(first_error)[:300])
        reject(message)
        repair = [
            *messages,
            message if text else AIMessage(content=str(message.tool_calls or message.invalid_tool_calls)),
            HumanMessage(content=prompts.repair(schema, str(first_error))),
        ]
        fixed: AIMessage = llm.bind(**routing).invoke(repair)
        asked.record(fixed, f"{purpose} (repair)")
        try:
            repaired = read_answer(fixed, schema, parse)
        except ParseError:
            reject(fixed)
            grade(message, purpose, "unusable")
            raise
        grade(message, purpose, "repaired")
        return repaired
