"""The one error type of configuration problems (exit 2 in the CLI)."""


class ConfigError(Exception):
    """A configuration file is wrong; the message says where and how to fix it."""
