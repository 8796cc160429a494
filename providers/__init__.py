"""The quota-aware provider layer (see DESIGN.md, "Python API")."""

from providers.chat_model import QuotaAwareChatModel, build_chat_model
from providers.errors import AllProvidersExhausted, NoUsableProvider
from providers.router import Router

__all__ = ["AllProvidersExhausted", "NoUsableProvider", "QuotaAwareChatModel", "Router", "build_chat_model"]
