"""Config directories and the environment for tests: what ``make_config`` writes (:func:`write_config`,
usable without pytest, as bench/ does), the key variable of a provider, and the variables no test
may inherit from the machine. The fixtures themselves (``make_config``, ``fake_server``, ...) are in
``tests/conftest.py``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.provider_server import FakeProvider

ConfigFactory = Callable[..., Path]
"""The ``make_config`` fixture: ``make_config(providers, *, routing, optimization, fallback, execution) -> dir``."""
FakeFactory = Callable[..., FakeProvider]
"""The ``fake_server`` fixture: ``fake_server(kind, **kwargs) -> FakeProvider`` (stopped after the test)."""

# Every env var a real key (or a redirect of a client) could come from.
REAL_KEY_VARS: tuple[str, ...] = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "HF_TOKEN",
    "OPENROUTER_API_KEY",
    "CEREBRAS_API_KEY",
    "OPENAI_API_KEY",
)
# Variables that redirect a client or the agent (base URLs, config/home/database, tracing, proxies).
CLIENT_ENV_VARS: tuple[str, ...] = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "GROQ_API_BASE",
    "TOGETHER_API_BASE",
    "FREE_AGENT_CONFIG_DIR",
    "FREE_AGENT_HOME",
    "FREE_AGENT_DATABASE_URL",
    "LANGCHAIN_TRACING_V2",
    "LANGSMITH_TRACING",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def key_env_for(name: str) -> str:
    """The env var ``make_config`` uses for provider ``name`` unless the spec names one."""
    return "TEST_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_KEY"


def write_config(
    directory: Path,
    providers: Mapping[str, Mapping[str, Any]],
    *,
    routing: Mapping[str, Any] | None = None,
    optimization: Mapping[str, Any] | None = None,
    fallback: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
) -> tuple[Path, dict[str, str]]:
    """Write providers.yaml + limits.yaml; return the dir and the env vars to set (var -> key)."""
    directory.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    rate_limits: dict[str, dict[str, Any]] = {}
    env: dict[str, str] = {}
    for name, raw_spec in providers.items():
        spec = dict(raw_spec)
        limits = spec.pop("limits", None)
        key = spec.pop("key", "test-key")
        spec.setdefault("model", f"{name}-model")
        spec.setdefault("timeout_s", 5)
        if not spec.get("local"):
            spec.setdefault("api_key_env", key_env_for(name))
            if key is not None:
                env[str(spec["api_key_env"])] = str(key)
        entries[name] = spec
        if limits:
            rate_limits[name] = dict(limits)
    providers_doc: dict[str, Any] = {
        "providers": entries,
        "routing": {"priority": list(providers), "task_types": {}, **dict(routing or {})},
    }
    limits_doc: dict[str, Any] = {
        "rate_limits": rate_limits,
        "optimization": {"enable_caching": False, **dict(optimization or {})},
        "fallback": {"max_wait_seconds": 0, "retry_delay_seconds": 1, **dict(fallback or {})},
        "execution": {"sandbox": "auto", **dict(execution or {})},
    }
    (directory / "providers.yaml").write_text(yaml.safe_dump(providers_doc, sort_keys=False), encoding="utf-8")
    (directory / "limits.yaml").write_text(yaml.safe_dump(limits_doc, sort_keys=False), encoding="utf-8")
    return directory, env
