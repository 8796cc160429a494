"""The one place API keys are read: from the environment (``.env`` is loaded by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from config import AppConfig, ProviderConfig
from providers.errors import NoUsableProvider


def resolve_key(cfg: ProviderConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The key for ``cfg``, or None when its env var is unset (local providers need none)."""
    if cfg.local and not cfg.api_key_env:
        return None
    value = (env if env is not None else os.environ).get(cfg.api_key_env or "", "").strip()
    return value or None


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
            notices.append(f"skipping {name}: {cfg.api_key_env} is not set")
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
        lines.append(f"  {cfg.api_key_env}{where}{state}")
    local = [n for n, c in config.providers.items() if c.local]
    if local:
        lines.append(f"Or run a local model and enable {', '.join(local)} in {config.config_dir / 'providers.yaml'}.")
    return "\n".join(lines)
