"""Provider registry: ``kind`` -> factory building the LangChain chat model.

Every factory turns client-side retries off (fallback is our job, not the
SDK's) and honours ``base_url``. Add a kind with ``@register("name")``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from free_llm_agent.config import ProviderConfig

Factory = Callable[[ProviderConfig, str | None], BaseChatModel]
REGISTRY: dict[str, Factory] = {}

# Response headers of the latest request made in this context (thread / asyncio task).
# Filled by an httpx event hook for clients that do not expose headers themselves.
last_response_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "last_response_headers", default=None
)


def register(kind: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        REGISTRY[kind] = factory
        return factory

    return deco


# LangChain's standard generation parameters under each kind's own name, for per-call use.
PARAM_NAMES: dict[str, dict[str, str]] = {"gemini": {"max_tokens": "max_output_tokens"}}


def call_kwargs(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    names = PARAM_NAMES.get(kind, {})
    return {names.get(k, k): v for k, v in params.items()}


def build_client(cfg: ProviderConfig, api_key: str | None) -> BaseChatModel:
    try:
        factory = REGISTRY[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {cfg.kind!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return factory(cfg, api_key)


def _remember(response: httpx.Response) -> None:
    last_response_headers.set({k.lower(): v for k, v in response.headers.items()})


async def _aremember(response: httpx.Response) -> None:
    _remember(response)


def _secret(key: str | None) -> SecretStr | None:
    return SecretStr(key) if key else None


def _common(cfg: ProviderConfig) -> dict[str, Any]:
    return {"model": cfg.model, "temperature": cfg.temperature, "max_retries": 0}


@register("gemini")
def _gemini(cfg: ProviderConfig, api_key: str | None) -> BaseChatModel:
    from langchain_google_genai import ChatGoogleGenerativeAI

    kwargs: dict[str, Any] = {**_common(cfg), "max_output_tokens": cfg.max_tokens, "timeout": cfg.timeout_s}
    if cfg.base_url:
        kwargs["base_url"] = cfg.base_url
    return ChatGoogleGenerativeAI(google_api_key=_secret(api_key), **kwargs)


@register("groq")
def _groq(cfg: ProviderConfig, api_key: str | None) -> BaseChatModel:
    from langchain_groq import ChatGroq

    timeout = httpx.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s))
    tls = httpx.create_ssl_context()  # one for both clients, as each would load the CA bundle (≈20 ms)
    return ChatGroq(
        **_common(cfg),
        api_key=_secret(api_key),
        base_url=cfg.base_url,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout_s,
        http_client=httpx.Client(timeout=timeout, verify=tls, event_hooks={"response": [_remember]}),
        http_async_client=httpx.AsyncClient(timeout=timeout, verify=tls, event_hooks={"response": [_aremember]}),
    )


@register("together")
def _together(cfg: ProviderConfig, api_key: str | None) -> BaseChatModel:
    from langchain_together import ChatTogether

    kwargs: dict[str, Any] = {**_common(cfg), "max_tokens": cfg.max_tokens, "timeout": cfg.timeout_s}
    if cfg.base_url:
        kwargs["base_url"] = cfg.base_url
    return ChatTogether(api_key=_secret(api_key), include_response_headers=True, stream_usage=True, **kwargs)


@register("openai_compatible")
def _openai_compatible(cfg: ProviderConfig, api_key: str | None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        **_common(cfg),
        api_key=SecretStr(api_key or "not-needed"),  # local servers (Ollama, llama.cpp) take any key
        base_url=cfg.base_url,
        max_tokens=cfg.max_tokens,  # type: ignore[call-arg]
        timeout=cfg.timeout_s,
        stream_usage=True,
        include_response_headers=True,
    )
