"""Configuration: shipped YAML defaults and their typed loader."""

from free_llm_agent.config.env_file import ENV_FILES_READ, load_env_file, load_env_files
from free_llm_agent.config.errors import ConfigError
from free_llm_agent.config.loader import (
    CONFIG_SOURCES,
    AppConfig,
    Execution,
    Fallback,
    LimitsFile,
    Optimization,
    ProviderConfig,
    RateLimit,
    RoutingConfig,
    Snapshots,
    load_config,
    locate_config_dir,
    resolve_config_dir,
    resolve_home,
    user_config_dir,
)

__all__ = [
    "CONFIG_SOURCES",
    "ENV_FILES_READ",
    "AppConfig",
    "ConfigError",
    "Execution",
    "Fallback",
    "LimitsFile",
    "Optimization",
    "ProviderConfig",
    "RateLimit",
    "RoutingConfig",
    "Snapshots",
    "load_config",
    "load_env_file",
    "load_env_files",
    "locate_config_dir",
    "resolve_config_dir",
    "resolve_home",
    "user_config_dir",
]
