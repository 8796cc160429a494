"""The real LangChain chat clients, pointed at a ``tests.fakes.provider_server.FakeProvider``.

Shared by ``tests/test_fakes_smoke.py`` and ``tests/test_fakes_errors.py`` (not collected as tests).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel

CLIENTS = ("gemini", "groq", "together", "openai")


def kind_of(client: str) -> str:
    return "gemini" if client == "gemini" else "openai"


def make_llm(client: str, base_url: str, **extra: Any) -> BaseChatModel:
    """One real client pointed at the fake; one attempt, short timeout."""
    common: dict[str, Any] = {"api_key": "test", "max_retries": 0, "timeout": 2.0} | extra
    if client == "gemini":
        from langchain_google_genai import ChatGoogleGenerativeAI

        return ChatGoogleGenerativeAI(model="gemini-fake", base_url=base_url, **common)
    if client == "groq":
        from langchain_groq import ChatGroq

        return ChatGroq(model="llama-fake", base_url=base_url, **common)
    if client == "together":
        from langchain_together import ChatTogether

        return ChatTogether(model="together-fake", base_url=base_url, **common)
    if client == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model="gpt-fake", base_url=base_url, **common)
    raise ValueError(client)
