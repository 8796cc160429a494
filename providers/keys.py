"""The one place API keys are read: from the environment (``.env`` is loaded by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

from free_llm_agent.config import AppConfig, ProviderConfig
from free_llm_agent.providers.errors import NoUsableProvider
from free_llm_agent.providers.key_formats import key_problems

WARNING = "warning: "  # how a notice that is a warning (not a skipped provider) starts

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
    found = resolve_key_var(cfg, env)
    return found[1] if found is not None else None


def resolve_key_var(cfg: ProviderConfig, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The env var ``cfg``'s key is read from and the key, or None when none of its env vars is set."""
    source = env if env is not None else os.environ
    for var in key_vars(cfg):
        value = source.get(var, "").strip()
        if value:
            return var, value
    return None


def usable_providers(
    config: AppConfig, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str | None], list[str]]:
    """Enabled providers that have a key (or need none), plus notices: one per skipped provider
    (``skipping NAME: …``), then one per key variable whose key looks wrong (``warning: …``, see
    :mod:`providers.key_formats`; once per variable, however many providers read it).

    Raises NoUsableProvider naming every env var that would fix it when nothing is usable.
    """
    usable: dict[str, str | None] = {}
    notices: list[str] = []
    readers: dict[str, list[tuple[str, ProviderConfig]]] = {}  # key variable -> the providers reading it
    values: dict[str, str] = {}
    for name, cfg in config.providers.items():
        if not cfg.enabled:
            continue
        found = resolve_key_var(cfg, env)
        if found is None and not cfg.local:
            notices.append(f"skipping {name}: {describe_key_vars(cfg)} is not set")
            continue
        if found is not None:
            readers.setdefault(found[0], []).append((name, cfg))
            values[found[0]] = (env if env is not None else os.environ)[found[0]]
        usable[name] = found[1] if found is not None else None
    if not usable:
        nothing = NoUsableProvider(missing_keys_message(config))
        nothing.key_var = first_key_var(config)
        raise nothing
    for var, providers in readers.items():
        notices += [WARNING + problem for problem in key_problems(var, values[var], providers, config)]
    return usable, notices


def first_key_var(config: AppConfig, names: Collection[str] | None = None) -> str | None:
    """The key variable of the provider routing tries first among ``names`` (default: the enabled providers
    that need a key): the key worth setting first."""
    cfg = first_keyed(config, names)
    return cfg.api_key_env if cfg is not None else None


def first_keyed(config: AppConfig, names: Collection[str] | None = None, *,
                unset_only: bool = False) -> ProviderConfig | None:
    """The provider routing tries first among ``names`` (default: the enabled ones) that needs a key (with
    ``unset_only``: a key not set yet): the one whose key is worth setting first; None when there is none."""
    for name in dict.fromkeys([*config.routing.priority, *config.providers]):
        cfg = config.providers.get(name)
        if (cfg is not None and cfg.api_key_env and not cfg.local
                and (name in names if names is not None else cfg.enabled)
                and not (unset_only and resolve_key(cfg) is not None)):
            return cfg
    return None


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
        where = ("your own providers.yaml ('init' writes one to edit; these are the packaged defaults)"
                 if config.config_source == "packaged defaults" else str(config.config_dir / "providers.yaml"))
        lines.append(f"Or run a local model and enable {', '.join(local)} in {where}.")
    return "\n".join(lines)
