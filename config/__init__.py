"""Configuration: shipped YAML defaults and their typed loader."""

from config.loader import (
    ENV_FILES_READ,
    AppConfig,
    ConfigError,
    Execution,
    Fallback,
    LimitsFile,
    Optimization,
    ProviderConfig,
    RateLimit,
    RoutingConfig,
    load_config,
    load_env_file,
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
    "resolve_config_dir",
    "resolve_home",
]
