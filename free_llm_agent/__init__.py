"""free-llm-agent: a LangGraph agent that plans, writes and runs code on free LLM tiers.

Everything imports from this one namespace (``free_llm_agent.graph``, ``free_llm_agent.providers`` …),
so a project's own ``config/`` or ``tools/`` folder never shadows the agent's. The rooms are the
repository's top-level folders (see docs/how-it-works.md). The public names load on first use
(PEP 562): ``import free_llm_agent`` imports no LangChain.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from free_llm_agent.graph.context import Context
    from free_llm_agent.graph.workflow import build_graph
    from free_llm_agent.providers.chat_model import QuotaAwareChatModel, build_chat_model
    from free_llm_agent.providers.errors import AllProvidersExhausted, NoUsableProvider

__all__ = ["AllProvidersExhausted", "Context", "NoUsableProvider", "QuotaAwareChatModel", "build_chat_model",
           "build_graph"]
_HOME = {"QuotaAwareChatModel": "free_llm_agent.providers.chat_model",
         "build_chat_model": "free_llm_agent.providers.chat_model",
         "AllProvidersExhausted": "free_llm_agent.providers.errors",
         "NoUsableProvider": "free_llm_agent.providers.errors",
         "build_graph": "free_llm_agent.graph.workflow",
         "Context": "free_llm_agent.graph.context"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'free_llm_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
