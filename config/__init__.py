"""Configuration: shipped YAML defaults and their typed loader."""

from config.loader import (
    AppConfig,
    ConfigError,
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
    "AppConfig",
    "ConfigError",
    "Fallback",
    "LimitsFile",
    "Optimization",
    "ProviderConfig",
    "RateLimit",
    "RoutingConfig",
    "load_config",
    "resolve_config_dir",
    "resolve_home",
]
