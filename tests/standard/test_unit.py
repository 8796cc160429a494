"""LangChain's ``ChatModelUnitTests`` for ``QuotaAwareChatModel`` (a router over the loopback fake)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from providers import QuotaAwareChatModel
from tests.standard.conftest import Harness


class TestQuotaAwareUnit(ChatModelUnitTests):
    @pytest.fixture(autouse=True)
    def _harness(self, harness: Harness) -> None:
        self._params = harness.wrapper_params()

    @property
    def chat_model_class(self) -> type[QuotaAwareChatModel]:
        return QuotaAwareChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return self._params

    @property
    def supports_json_mode(self) -> bool:
        return True
