"""The one place API keys are read: from the environment (``.env`` is loaded by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from free_llm_agent.config import AppConfig, ProviderConfig
from free_llm_agent.providers.errors import NoUsableProvider

# Other names a provider's own SDK reads for the same key (Google's client takes either).
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "GOOGLE_API_KEY": ("GEMINI_API_KEY",),
    "GEMINI_API_KEY": ("GOOGLE_API_KEY",),
}


def key_vars(cfg: ProviderConfig) -> list[str]:
    """The env vars ``cfg``'s key is read from, in order: ``api_key_env``, then its aliases."""
    return [cfg.api_key_env, *KEY_ALIASES.get(cfg.api_key_env, ())] if cfg.api_key_env else []


def describe_key_vars(cfg: ProviderConfig) -> str:
    first, *others = key_vars(cfg) or [""]
    return first + (f" (or {', '.join(others)})" if others else "")


def resolve_key(cfg: ProviderConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The key for ``cfg``, or None when none of its env vars is set (local providers need none)."""
    source = env if env is not None else os.environ
    for var in key_vars(cfg):
        value = source.get(var, "").strip()
        if value:
            return value
    return None


def usable_providers(
    config: AppConfig, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str | None], list[str]]:
    """Enabled providers that have a key (or need none), plus one notice per skipped provider.

    Raises NoUsableProvider naming every env var that would fix it when nothing is usable.
    """
    usable: dict[str, str | None] = {}
    notices: list[str] = []
    for name, cfg in config.providers.items():
        if not cfg.enabled:
            continue
        key = resolve_key(cfg, env)
        if key is None and not cfg.local:
            notices.append(f"skipping {name}: {describe_key_vars(cfg)} is not set")
            continue
        usable[name] = key
    if not usable:
        raise NoUsableProvider(missing_keys_message(config))
    return usable, notices


def missing_keys_message(config: AppConfig) -> str:
    lines = ["No LLM provider is usable: set at least one of these environment variables (or put it in .env):"]
    seen: set[str] = set()
    for name, cfg in config.providers.items():
        if cfg.local or not cfg.api_key_env or cfg.api_key_env in seen:
            continue
        seen.add(cfg.api_key_env)
        where = f"  (get one at {cfg.signup_url})" if cfg.signup_url else ""
        state = "" if cfg.enabled else f"  [also set enabled: true for {name} in providers.yaml]"
        lines.append(f"  {describe_key_vars(cfg)}{where}{state}")
    local = [n for n, c in config.providers.items() if c.local]
    if local:
        lines.append(f"Or run a local model and enable {', '.join(local)} in {config.config_dir / 'providers.yaml'}.")
    return "\n".join(lines)
