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

from config import load_config, load_env_files, resolve_home
from providers.answers import Outcome
from providers.backends import resolve_database_url
from providers.cache import cache_key
from providers.inner_calls import INNER, as_chunk, has_answer, not_empty, refused_answer, to_message, untraced
from providers.quota import Slot
from providers.registry import call_kwargs, last_response_headers
from providers.router import Call, Router

_CONTROL_KWARGS = ("task_type", "tools", "tool_choice", "providers", "purpose")
_STANDARD = ("temperature", "max_tokens", "timeout")
_Client = Runnable[LanguageModelInput, Any]


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
    ) -> tuple[Call, str | None, dict[str, Any], AIMessage | None]:
        control = {k: kwargs.pop(k) for k in _CONTROL_KWARGS if k in kwargs}
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
        bind = {"tools": tools, "tool_choice": control.get("tool_choice"), "stop": stop, **generation}
        return call, key, bind, cached

    def _client(self, name: str, bind: dict[str, Any]) -> _Client:
        base = self.router.client(name, timeout=bind["timeout"])
        client: _Client = base
        if bind["tools"]:
            choice = bind["tool_choice"]
            if choice == "any" and len(bind["tools"]) == 1:
                choice = convert_to_openai_tool(bind["tools"][0])["function"]["name"]
            client = base.bind_tools(bind["tools"], tool_choice=choice)
        kind = self.router.config.providers[name].kind
        generation = {k: bind[k] for k in ("temperature", "max_tokens") if bind[k] is not None}
        return client.bind(**call_kwargs(kind, generation)) if generation else client

    def _finish(self, slot: Slot, message: AIMessage, key: str | None, model: str | None = None) -> AIMessage:
        meta = message.response_metadata
        if "headers" not in meta:
            headers = last_response_headers.get()
            if headers:
                meta["headers"] = headers
        meta.update(self._meta(slot, model))
        if key is not None:
            meta["cache_key"] = key
        if message.usage_metadata:
            meta["token_usage"] = dict(message.usage_metadata)
        return message

    def _go(self, call: Call, slot: Slot, bind: dict[str, Any]) -> tuple[Slot, _Client | None, float]:
        """The last step before the request leaves: bind the (already built) client, then record the
        send time in the ledger. No client (it cannot be built): the attempt is booked as failed."""
        started = time.time()
        last_response_headers.set(None)
        try:
            client = self._client(slot.provider, bind)
        except Exception as exc:
            self._failed(call, slot, exc, started)
            return slot, None, started
        return self.router.sending(slot), client, time.time()

    @staticmethod
    def _wait(slot: Slot) -> float:
        return max(0.0, slot.at - time.time())

    # -- invoke ---------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, key, bind, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            return ChatResult(generations=[ChatGeneration(message=cached)])
        while True:
            slot = self.router.next_slot(call, bind["timeout"])
            time.sleep(self._wait(slot))
            slot, client, started = self._go(call, slot, bind)
            if client is None:
                continue
            try:
                with untraced():
                    message = not_empty(client.invoke(messages, INNER, stop=bind["stop"], **kwargs))
            except Exception as exc:
                refused = self._refused(call, slot, exc, started, kwargs.get("model"))
                if refused is None:
                    continue
                return ChatResult(generations=[ChatGeneration(message=refused)])
            message = self._finish(slot, message, key, kwargs.get("model"))
            self.router.succeeded(call, slot, message, started, key)
            return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, key, bind, cached = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        if cached is not None:
            return ChatResult(generations=[ChatGeneration(message=cached)])
        while True:
            slot = await asyncio.to_thread(self.router.next_slot, call, bind["timeout"])
            await asyncio.sleep(self._wait(slot))
            slot, client, started = await asyncio.to_thread(self._go, call, slot, bind)
            if client is None:
                continue
            last_response_headers.set(None)
            try:
                with untraced():
                    message = not_empty(await client.ainvoke(messages, INNER, stop=bind["stop"], **kwargs))
            except Exception as exc:
                refused = await asyncio.to_thread(self._refused, call, slot, exc, started, kwargs.get("model"))
                if refused is None:
                    continue
                return ChatResult(generations=[ChatGeneration(message=refused)])
            message = self._finish(slot, message, key, kwargs.get("model"))
            await asyncio.to_thread(self.router.succeeded, call, slot, message, started, key)
            return ChatResult(generations=[ChatGeneration(message=message)])

    def _failed(self, call: Call, slot: Slot, exc: BaseException, started: float) -> None:
        self.router.failed(call, slot, exc, started)

    def _refused(
        self, call: Call, slot: Slot, exc: BaseException, started: float, model: str | None
    ) -> AIMessage | None:
        """An error that carries the model's answer (Groq's 400 ``tool_use_failed``, tool-call arguments that
        are not an object): that answer, booked
        as an answered request that leaves the failure streak as it was, never cached. Any other error:
        booked as the provider's failure, None (the caller tries the next provider)."""
        message = refused_answer(exc)
        if message is None:
            self._failed(call, slot, exc, started)
            return None
        message = self._finish(slot, message, None, model)
        self.router.succeeded(call, slot, message, started, None, reset_streak=False)
        return message

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
        call, key, bind, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            yield as_chunk(cached)
            return
        while True:
            slot = self.router.next_slot(call, bind["timeout"])
            time.sleep(self._wait(slot))
            slot, client, started = self._go(call, slot, bind)
            if client is None:
                continue
            stream = client.stream(messages, INNER, stop=bind["stop"], **kwargs)
            try:
                with untraced():  # the inner run's callbacks are set up at its first chunk
                    first = next(stream)
            except StopIteration:
                first = AIMessageChunk(content="")
            except Exception as exc:
                refused = self._refused(call, slot, exc, started, kwargs.get("model"))
                if refused is None:
                    continue
                yield as_chunk(refused)
                return
            total = first
            yield as_chunk(first, self._meta(slot, kwargs.get("model")))
            for chunk in stream:
                total = total + chunk
                yield as_chunk(chunk)
            message = self._finish(slot, to_message(total), key, kwargs.get("model"))
            self.router.succeeded(call, slot, message, started, key if has_answer(message) else None)
            return

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call, key, bind, cached = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        if cached is not None:
            yield as_chunk(cached)
            return
        while True:
            slot = await asyncio.to_thread(self.router.next_slot, call, bind["timeout"])
            await asyncio.sleep(self._wait(slot))
            slot, client, started = await asyncio.to_thread(self._go, call, slot, bind)
            if client is None:
                continue
            last_response_headers.set(None)
            stream = client.astream(messages, INNER, stop=bind["stop"], **kwargs)
            try:
                with untraced():
                    first = await anext(stream)
            except StopAsyncIteration:
                first = AIMessageChunk(content="")
            except Exception as exc:
                refused = await asyncio.to_thread(self._refused, call, slot, exc, started, kwargs.get("model"))
                if refused is None:
                    continue
                yield as_chunk(refused)
                return
            total = first
            yield as_chunk(first, self._meta(slot, kwargs.get("model")))
            async for chunk in stream:
                total = total + chunk
                yield as_chunk(chunk)
            message = self._finish(slot, to_message(total), key, kwargs.get("model"))
            await asyncio.to_thread(self.router.succeeded, call, slot, message, started,
                                    key if has_answer(message) else None)
            return

    def _meta(self, slot: Slot, model: str | None = None) -> dict[str, Any]:
        """Who answered; ``model`` is a per-call override (``invoke(p, model=...)``), passed to that provider."""
        return {"provider": slot.provider, "model": model or self.router.config.providers[slot.provider].model,
                "cached": False}


def _router(config_dir: str | Path | None, home: str | Path | None, *, offline: bool = False,
            notices: list[str] | None = None, database_url: str | None = None) -> Router:
    load_env_files(home)  # the same .env files as the CLI, in the same order (README: Free keys)
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
    """The agent's chat model for a config dir and home (see DESIGN.md for the defaults).

    Raises ConfigError for bad files and NoUsableProvider when no provider has a key.
    Skipped-provider notices are appended to ``notices`` when given. ``database_url`` (else
    ``$FREE_AGENT_DATABASE_URL``) puts the shared state in PostgreSQL instead of the home's ``agent.db``.
    """
    router = _router(config_dir, home, offline=offline, notices=notices, database_url=database_url)
    return QuotaAwareChatModel(router=router, preferred=tuple(preferred))
