"""One logical request's attempts: the reserve → wait → send → book loop that ``invoke``, ``ainvoke``,
``stream`` and ``astream`` share. Each step that touches the state database is a method here; the
chat model's four entry points only do the I/O (blocking or awaited) between them.

Every request that leaves holds its own quota slot, reserved before it is sent and booked after:
answered, refused with an answer inside the error (Groq's ``tool_use_failed``), failed (next
provider), or broken after the first streamed chunk (booked, then raised: a stream cannot fall back
once the caller has part of it). Gemini's ``MALFORMED_FUNCTION_CALL`` (the model wrote a tool call
Gemini could not parse; the answer holds nothing) is booked as an answered request and the same
question is asked once more of the same provider without tools, on a slot of its own; only when that
provider has no slot free, or answers empty again, does the next provider get the question.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from free_llm_agent.providers.inner_calls import has_answer, not_empty, refused_answer
from free_llm_agent.providers.quota import Slot
from free_llm_agent.providers.registry import call_kwargs, last_response_headers
from free_llm_agent.providers.route_log import log
from free_llm_agent.providers.router import Call, Router

Client = Runnable[LanguageModelInput, Any]


@dataclass(frozen=True)
class Bind:
    """What every attempt of one call sends besides the messages (tools, stop, generation settings)."""

    tools: tuple[Any, ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    stop: list[str] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None


@dataclass
class Attempt:
    """One request on its way: its slot, the client it goes through, when it started, its settings."""

    slot: Slot
    client: Client
    started: float
    bind: Bind


def malformed_call(message: AIMessage, bind: Bind) -> bool:
    """Gemini's ``MALFORMED_FUNCTION_CALL``: tools were offered, the finish reason says the model's call
    could not be parsed, and the answer holds nothing to read."""
    reason = str(message.response_metadata.get("finish_reason") or "").upper()
    return bool(bind.tools) and reason == "MALFORMED_FUNCTION_CALL" and not has_answer(message)


class Dispatch:
    """The attempts of one call (``Call``) until a provider answers or ``AllProvidersExhausted``."""

    def __init__(self, router: Router, call: Call, bind: Bind, key: str | None, model: str | None) -> None:
        self.router, self.call, self.bind, self.key, self.model = router, call, bind, key, model
        self._plain_on: str | None = None  # the provider asked again without tools
        self._retried = False

    # -- before sending ---------------------------------------------------------
    def reserve(self) -> Slot:
        """The next attempt's slot (maybe in the near future): a malformed call's retry first."""
        return self.router.next_slot(self.call, self.bind.timeout)

    @staticmethod
    def wait(slot: Slot) -> float:
        return max(0.0, slot.at - time.time())

    def go(self, slot: Slot) -> Attempt | None:
        """The last step before the request leaves: build (or reuse) the client, then record the send time
        in the ledger. None when the client cannot be built (booked as that provider's failure)."""
        bind = self.bind
        if self._plain_on == slot.provider:  # the retry of a malformed call: the same question, no tools
            bind, self._plain_on = Bind(stop=bind.stop, temperature=bind.temperature, max_tokens=bind.max_tokens,
                                        timeout=bind.timeout), None
        started = time.time()
        last_response_headers.set(None)
        try:
            client = self.client(slot.provider, bind)
        except Exception as exc:
            self.router.failed(self.call, slot, exc, started)
            return None
        leaving = self.router.sending(slot)
        if leaving is None:  # too late for its window after all: not an attempt, reserve again
            log.debug("%s: the slot on %s came too late for its quota window; reserving again", self.call.purpose
                      or self.call.task_type, slot.provider)
            self.call.attempts -= 1
            if self._plain_on == slot.provider or bind is not self.bind:
                self.call.retry_on = self._plain_on = slot.provider
            return None
        return Attempt(leaving, client, time.time(), bind)

    def client(self, name: str, bind: Bind) -> Client:
        base = self.router.client(name, timeout=bind.timeout)
        client: Client = base
        if bind.tools:
            choice: Any = bind.tool_choice
            if choice == "any" and len(bind.tools) == 1:
                choice = convert_to_openai_tool(bind.tools[0])["function"]["name"]
            client = base.bind_tools(list(bind.tools), tool_choice=choice)
        kind = self.router.config.providers[name].kind
        generation = {k: v for k, v in (("temperature", bind.temperature), ("max_tokens", bind.max_tokens))
                      if v is not None}
        return client.bind(**call_kwargs(kind, generation)) if generation else client

    # -- after sending ------------------------------------------------------------
    def answered(self, attempt: Attempt, message: AIMessage) -> AIMessage | None:
        """Book a returned answer. None: try again (an empty answer fails over; a malformed call is asked
        again of the same provider without tools, once)."""
        if malformed_call(message, attempt.bind) and not self._retried:
            self._retried = True
            self.router.succeeded(self.call, attempt.slot, self.finish(attempt.slot, message, None), attempt.started,
                                  None, reset_streak=False)  # Gemini counted it: so does the ledger
            self.call.retry_on = self._plain_on = attempt.slot.provider
            log.info("%s wrote a tool call it could not parse (MALFORMED_FUNCTION_CALL): asking it once more "
                     "without tools", attempt.slot.provider)
            return None
        try:
            message = not_empty(message)
        except Exception as exc:
            return self.raised(attempt, exc)
        message = self.finish(attempt.slot, message, self.key)
        self.router.succeeded(self.call, attempt.slot, message, attempt.started, self.key)
        log.debug("%s answered in %.1f s", attempt.slot.provider, time.time() - attempt.started)
        return message

    def raised(self, attempt: Attempt, exc: BaseException) -> AIMessage | None:
        """An error that carries the model's answer (Groq's 400 ``tool_use_failed``, tool-call arguments that
        are not an object): that answer, booked as an answered request that leaves the failure streak as it
        was, never cached. Any other error: booked as the provider's failure, None (try the next provider)."""
        message = refused_answer(exc)
        if message is None:
            self.router.failed(self.call, attempt.slot, exc, attempt.started)
            return None
        log.info("%s refused its own answer (%s); the answer inside the error is used", attempt.slot.provider,
                 str(exc)[:200])
        message = self.finish(attempt.slot, message, None)
        self.router.succeeded(self.call, attempt.slot, message, attempt.started, None, reset_streak=False)
        return message

    def streamed(self, attempt: Attempt, message: AIMessage) -> AIMessage:
        """Book a stream that ran to its end (cached only when it holds an answer)."""
        message = self.finish(attempt.slot, message, self.key)
        self.router.succeeded(self.call, attempt.slot, message, attempt.started,
                              self.key if has_answer(message) else None)
        return message

    def broken(self, attempt: Attempt, exc: BaseException) -> None:
        """A stream that failed after its first chunk: the request left and counts (the caller gets the error)."""
        self.router.failed(self.call, attempt.slot, exc, attempt.started)

    def meta(self, slot: Slot) -> dict[str, Any]:
        """Who answered; ``model`` is a per-call override (``invoke(p, model=...)``), passed to that provider."""
        return {"provider": slot.provider, "model": self.model or self.router.config.providers[slot.provider].model,
                "cached": False}

    def finish(self, slot: Slot, message: AIMessage, key: str | None) -> AIMessage:
        meta = message.response_metadata
        if "headers" not in meta:
            headers = last_response_headers.get()
            if headers:
                meta["headers"] = headers
        meta.update(self.meta(slot))
        if key is not None:
            meta["cache_key"] = key
        if message.usage_metadata:
            meta["token_usage"] = dict(message.usage_metadata)
        return message
