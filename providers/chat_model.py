"""QuotaAwareChatModel: one LangChain chat model over every free provider.

Per request: serve from the response cache if possible; else reserve a quota
slot on the best provider (task type, priority, safety margin), call its
client, and on failure book the outcome (cooldown, disable, failure streak)
and move to the next provider at once. Tools are stored as call kwargs and
formatted by each inner client, so ``with_structured_output`` works for every
kind. Streams fall back only before their first chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

import free_llm_agent.providers.route_log as route_log
from free_llm_agent.config import load_config, load_env_files, resolve_home
from free_llm_agent.config.text import escaped, undecodable
from free_llm_agent.providers.answers import Outcome
from free_llm_agent.providers.cache import cache_key
from free_llm_agent.providers.dispatch import Bind, Dispatch, malformed_call
from free_llm_agent.providers.inner_calls import INNER, as_chunk, to_message, untraced
from free_llm_agent.providers.registry import last_response_headers
from free_llm_agent.providers.router import Call, Router
from free_llm_agent.storage.registry import resolve_database_url

_CONTROL_KWARGS = ("task_type", "tools", "tool_choice", "providers", "purpose")
_STANDARD = ("temperature", "max_tokens", "timeout")


class QuotaAwareChatModel(BaseChatModel):
    """A chat model that spreads requests over free tiers without wasting quota."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Built from ``config_dir`` / ``home`` (else $FREE_AGENT_CONFIG_DIR / $FREE_AGENT_HOME and .env, as
    # the CLI does) when not given, so ``QuotaAwareChatModel()`` works like any LangChain model.
    router: Router = Field(default=None, exclude=True)  # type: ignore[assignment]
    config_dir: str | None = None
    home: str | None = None
    database_url: str | None = None  # else $FREE_AGENT_DATABASE_URL, else agent.db in the home
    default_task_type: str = "general"
    preferred: tuple[str, ...] = ()  # providers to try first, e.g. from a run's context
    # LangChain's standard parameters; None keeps each provider's own setting from providers.yaml.
    # Any of them may also be given per call (``invoke(p, temperature=0)``).
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    stop: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _router_from_the_environment(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("router") is None:
            data = {**data, "router": _router(data.get("config_dir"), data.get("home"),
                                              database_url=data.get("database_url"))}
        return data

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serialized without its router (no secrets, no state): loading rebuilds one from the environment."""
        return True

    @property
    def state_home(self) -> str:
        """The home whose quota, cooldowns and cache this model uses."""
        return str(self.router.home)

    @property
    def _llm_type(self) -> str:
        return "quota-aware"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"providers": list(self.router.keys), "home": str(self.router.home)}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """What tracing shows at the start of a run: a per-call ``model``, else the model of the provider
        routing would try first (the one that answered is in the answer's ``response_metadata``:
        ``provider``, ``model_name``)."""
        first = self.router.first_choice(kwargs.get("task_type") or self.default_task_type,
                                         tuple(kwargs.get("providers") or self.preferred))
        model = kwargs.get("model") or (self.router.config.providers[first].model if first else "none")
        params = LangSmithParams(ls_provider="free-llm-agent", ls_model_type="chat", ls_model_name=str(model))
        for name, value in (("ls_temperature", kwargs.get("temperature", self.temperature)),
                            ("ls_max_tokens", kwargs.get("max_tokens", self.max_tokens)),
                            ("ls_stop", stop if stop is not None else self.stop)):
            if value is not None:
                params[name] = value  # type: ignore[literal-required]
        return params

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | dict[str, Any] | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Store the tools; each inner client formats them when it is called."""
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    # -- shared steps ------------------------------------------------------------
    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Dispatch, AIMessage | None]:
        """The call's attempts, and the cached answer if there is one. Pops the wrapper's own kwargs;
        the rest go to the provider's client."""
        control = {k: kwargs.pop(k) for k in _CONTROL_KWARGS if k in kwargs}
        messages = [_encodable(m) for m in messages]  # file names and output that were not UTF-8
        call = Call(
            messages=messages,
            task_type=control.get("task_type") or self.default_task_type,
            est_chars=sum(len(str(m.content)) for m in messages),
            preferred=tuple(control.get("providers") or self.preferred),
            purpose=str(control.get("purpose") or ""),
        )
        generation = {k: kwargs.pop(k) if k in kwargs else getattr(self, k) for k in _STANDARD}
        stop = stop if stop is not None else self.stop
        tools = control.get("tools") or []
        params = {  # everything that can change the answer (the timeout cannot)
            "tools": [convert_to_openai_tool(t) for t in tools],
            "tool_choice": control.get("tool_choice"),
            "temperature": generation["temperature"],
            "max_tokens": generation["max_tokens"],
            "stop": stop,
            "providers": list(call.preferred),
            "other": kwargs,
        }
        key = cache_key(messages, params) if self.router.cache.enabled else None
        cached = self.router.cache.get(key, time.time()) if key else None
        if cached is not None:
            cached = cached.model_copy(update={"id": None})  # a fresh id: LangChain gives it this run's
            cached.response_metadata.update(cached=True, cache_key=key)
            self.router.served_from_cache(call, cached)
            route_log.log.info("%s: answered from the response cache (no request sent)", call.purpose or call.task_type)
        bind = Bind(tools=tuple(tools), tool_choice=control.get("tool_choice"), stop=stop, **generation)
        return Dispatch(self.router, call, bind, key, kwargs.get("model")), cached

    # -- invoke ---------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        sent, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            return _result(cached)
        while True:
            slot = sent.reserve()
            time.sleep(sent.wait(slot))
            attempt = sent.go(slot)
            if attempt is None:
                continue
            try:
                with untraced():
                    answer = attempt.client.invoke(sent.call.messages, INNER, stop=attempt.bind.stop, **kwargs)
            except Exception as exc:
                message = sent.raised(attempt, exc)
            else:
                message = sent.answered(attempt, answer)
            if message is not None:
                return _result(message)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        sent, cached = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        if cached is not None:
            return _result(cached)
        while True:
            slot = await asyncio.to_thread(sent.reserve)
            await asyncio.sleep(sent.wait(slot))
            attempt = await asyncio.to_thread(sent.go, slot)
            if attempt is None:
                continue
            last_response_headers.set(None)  # this task's context, not the thread's that sent it
            try:
                with untraced():
                    answer = await attempt.client.ainvoke(sent.call.messages, INNER, stop=attempt.bind.stop, **kwargs)
            except Exception as exc:
                message = await asyncio.to_thread(sent.raised, attempt, exc)
            else:
                message = await asyncio.to_thread(sent.answered, attempt, answer)
            if message is not None:
                return _result(message)

    def close(self) -> None:
        """Close the connections to the quota/cache state (a long-lived process that builds models again and
        again: each would otherwise keep its own open until the process ends)."""
        self.router.close()

    def reject(self, message: AIMessage) -> None:
        """The caller could not use ``message``: drop it from the response cache, so no retry (of
        this or any process) is served it again. Nodes call this when an answer fails to parse. An
        unreadable answer recovered from an error (``tool_use_failed``) counts as its provider's failure."""
        meta = message.response_metadata or {}
        if meta.get("cache_key"):
            self.router.cache.evict(str(meta["cache_key"]))
        provider = str(meta.get("provider", ""))
        if meta.get("recovered_from") and provider in self.router.config.providers:
            self.router.unreadable(provider)

    def grade(self, message: AIMessage, purpose: str, outcome: Outcome) -> None:
        """How usable ``message`` was for ``purpose`` (usable at once, repaired, unusable): routing learns
        from it (``routing.learn``) and ``usage`` shows it. A cached answer is not graded again."""
        meta = message.response_metadata or {}
        if not meta.get("cached") and meta.get("provider"):
            self.router.grade(str(meta["provider"]), purpose, outcome)

    # -- stream -----------------------------------------------------------------------
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        sent, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            yield as_chunk(cached)
            return
        while True:
            slot = sent.reserve()
            time.sleep(sent.wait(slot))
            attempt = sent.go(slot)
            if attempt is None:
                continue
            stream = attempt.client.stream(sent.call.messages, INNER, stop=attempt.bind.stop, **kwargs)
            try:
                with untraced():  # the inner run's callbacks are set up at its first chunk
                    first: BaseMessage = next(stream, AIMessageChunk(content=""))
                    if malformed_call(to_message(first), attempt.bind):  # nothing yielded yet: it may retry
                        first = _drain(stream, first)
            except Exception as exc:
                refused = sent.raised(attempt, exc)
                if refused is None:
                    continue
                yield as_chunk(refused)
                return
            if malformed_call(to_message(first), attempt.bind):
                if (message := sent.answered(attempt, to_message(first))) is None:
                    continue
                yield as_chunk(message)
                return
            total = first
            yield as_chunk(first, sent.meta(attempt.slot))
            try:
                for chunk in stream:
                    total = total + chunk
                    yield as_chunk(chunk)
            except Exception as exc:
                sent.broken(attempt, exc)
                raise
            sent.streamed(attempt, to_message(total))
            return

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        sent, cached = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        if cached is not None:
            yield as_chunk(cached)
            return
        while True:
            slot = await asyncio.to_thread(sent.reserve)
            await asyncio.sleep(sent.wait(slot))
            attempt = await asyncio.to_thread(sent.go, slot)
            if attempt is None:
                continue
            last_response_headers.set(None)
            stream = attempt.client.astream(sent.call.messages, INNER, stop=attempt.bind.stop, **kwargs)
            try:
                with untraced():
                    first: BaseMessage = await anext(stream, AIMessageChunk(content=""))
                    if malformed_call(to_message(first), attempt.bind):  # nothing yielded yet: it may retry
                        async for chunk in stream:
                            first = first + chunk  # type: ignore[operator]
            except Exception as exc:
                refused = await asyncio.to_thread(sent.raised, attempt, exc)
                if refused is None:
                    continue
                yield as_chunk(refused)
                return
            if malformed_call(to_message(first), attempt.bind):
                if (message := await asyncio.to_thread(sent.answered, attempt, to_message(first))) is None:
                    continue
                yield as_chunk(message)
                return
            total = first
            yield as_chunk(first, sent.meta(attempt.slot))
            try:
                async for chunk in stream:
                    total = total + chunk  # type: ignore[operator]
                    yield as_chunk(chunk)
            except Exception as exc:
                await asyncio.to_thread(sent.broken, attempt, exc)
                raise
            await asyncio.to_thread(sent.streamed, attempt, to_message(total))
            return


def _encodable(message: BaseMessage) -> BaseMessage:
    """``message`` with bytes that were not UTF-8 (lone surrogates: a file name, a program's output) written as
    ``\\xNN``: they could not be hashed, sent or cached otherwise."""
    content = message.content
    if isinstance(content, str):
        return message if undecodable(content) is None else message.model_copy(update={"content": escaped(content)})
    parts = [{**p, "text": escaped(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else
             escaped(p) if isinstance(p, str) else p for p in content]
    return message.model_copy(update={"content": parts}) if parts != content else message


def _result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


def _drain(stream: Iterator[Any], first: Any) -> Any:
    for chunk in stream:
        first = first + chunk
    return first


def _router(config_dir: str | Path | None, home: str | Path | None, *, offline: bool = False,
            notices: list[str] | None = None, database_url: str | None = None) -> Router:
    load_env_files(home)  # the same .env files as the CLI, in the same order (docs/keys.md)
    config = load_config(config_dir)
    router, skipped = Router.from_config(config, resolve_home(home), offline=offline,
                                         database_url=resolve_database_url(database_url))
    if notices is not None:
        notices.extend(skipped)
    return router


def build_chat_model(
    config_dir: str | Path | None = None,
    home: str | Path | None = None,
    *,
    offline: bool = False,
    preferred: Sequence[str] = (),
    notices: list[str] | None = None,
    database_url: str | None = None,
) -> QuotaAwareChatModel:
    """The agent's chat model for a config dir and home (docs/python-api.md).

    Raises ConfigError for bad files and NoUsableProvider when no provider has a key.
    Skipped-provider notices are appended to ``notices`` when given. ``database_url`` (else
    ``$FREE_AGENT_DATABASE_URL``) puts the shared state in PostgreSQL instead of the home's ``agent.db``.
    """
    router = _router(config_dir, home, offline=offline, notices=notices, database_url=database_url)
    return QuotaAwareChatModel(router=router, preferred=tuple(preferred))
