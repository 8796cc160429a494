"""Configuration: shipped YAML defaults and their typed loader."""

from config.env_file import ENV_FILES_READ, load_env_file, load_env_files
from config.errors import ConfigError
from config.loader import (
    AppConfig,
    Execution,
    Fallback,
    LimitsFile,
    Optimization,
    ProviderConfig,
    RateLimit,
    RoutingConfig,
    load_config,
    resolve_config_dir,
    resolve_home,
)

__all__ = [
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
    "load_config",
    "load_env_file",
    "load_env_files",
    "resolve_config_dir",
    "resolve_home",
]
