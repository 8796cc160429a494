"""The quota-aware provider layer (docs/python-api.md).

The names are imported on first use (PEP 562): ``providers.quota``, ``providers.errors`` … load
without langchain, so the CLI starts its executor before the model clients are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from free_llm_agent.providers.chat_model import QuotaAwareChatModel, build_chat_model
    from free_llm_agent.providers.errors import AllProvidersExhausted, NoUsableProvider
    from free_llm_agent.providers.router import Router

__all__ = ["AllProvidersExhausted", "NoUsableProvider", "QuotaAwareChatModel", "Router", "build_chat_model"]
_HOME = {"QuotaAwareChatModel": "free_llm_agent.providers.chat_model",
         "build_chat_model": "free_llm_agent.providers.chat_model",
         "AllProvidersExhausted": "free_llm_agent.providers.errors",
         "NoUsableProvider": "free_llm_agent.providers.errors",
         "Router": "free_llm_agent.providers.router"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'providers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
