"""LangChain's ``ChatModelIntegrationTests`` for ``QuotaAwareChatModel`` over the loopback fakes, each
beside the same suite against the bare client on the same fake (the baseline that tells the fake's and
the client's limits from the wrapper's)."""

from __future__ import annotations

import pytest
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from free_llm_agent.providers import QuotaAwareChatModel
from tests.standard.capabilities import OverTheFake, OverTheGeminiFake


class TestQuotaAwareIntegration(OverTheFake, ChatModelIntegrationTests):
    """The wrapper over one ``openai_compatible`` provider (ChatOpenAI), caching off."""

    @property
    def chat_model_class(self) -> type[QuotaAwareChatModel]:
        return QuotaAwareChatModel


class TestQuotaAwareCachedIntegration(OverTheFake, ChatModelIntegrationTests):
    """The same with the response cache on, as shipped: questions a test repeats come from the cache."""

    harness_fixture = "cached_harness"

    @property
    def chat_model_class(self) -> type[QuotaAwareChatModel]:
        return QuotaAwareChatModel


@pytest.mark.filterwarnings("ignore:Cannot currently include response headers")
class TestBareChatOpenAIIntegration(OverTheFake, ChatModelIntegrationTests):
    bare = True

    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI


class TestQuotaAwareGeminiIntegration(OverTheGeminiFake, ChatModelIntegrationTests):
    """The wrapper over one ``gemini`` provider (ChatGoogleGenerativeAI)."""

    @property
    def chat_model_class(self) -> type[QuotaAwareChatModel]:
        return QuotaAwareChatModel


class TestBareGeminiIntegration(OverTheGeminiFake, ChatModelIntegrationTests):
    bare = True

    @property
    def chat_model_class(self) -> type[ChatGoogleGenerativeAI]:
        return ChatGoogleGenerativeAI
