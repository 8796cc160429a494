"""Writing one ``NAME=value`` entry into a ``.env`` file (``keys set``): readable by its owner only (mode
0600, never wider even for a moment), replaced atomically, every other line kept as it was, an existing
entry for the name replaced, the value quoted so that python-dotenv reads back exactly what was given.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from free_llm_agent.config.env_file import encoding_of
from free_llm_agent.config.errors import ConfigError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VALUE_CHARS = 4096  # a key is tens of characters; more is a pasted file


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be written as a key (None when it can): what python-dotenv would not read back
    as given, or what no key holds."""
    if not value:
        return "the value is empty"
    if len(value) > MAX_VALUE_CHARS:
        return f"the value is {len(value):,} characters long; a key is one line of at most {MAX_VALUE_CHARS:,}"
    if "\n" in value or "\r" in value:
        return "the value has several lines; a key is one line"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "the value holds control characters (a terminal escape, a NUL …); paste the key alone"
    if "${" in value:  # python-dotenv expands ${NAME} in every value, quoted or not
        return "the value holds '${', which .env files expand as a variable; it cannot be stored there as is"
    return None


def write_env_entry(path: Path, name: str, value: str) -> Path:
    """Set ``name`` to ``value`` in the ``.env`` at ``path`` (created if missing; a symlink is followed, so the
    file it points to is written). Returns the file written. Raises ConfigError naming the file."""
    from dotenv import set_key

    if not ENV_NAME.fullmatch(name) or value_problem(value) is not None:
        raise ValueError("check the name with ENV_NAME and the value with value_problem first")
    real = path.resolve()
    try:
        encoding = "utf-8"
        if real.exists():
            encoding = encoding_of(real.read_bytes())
            os.chmod(real, 0o600)  # before the rewrite, which keeps the old file's mode
        real.parent.mkdir(parents=True, exist_ok=True)
        dotenv_log = logging.getLogger("dotenv.main")
        dotenv_log.disabled = True  # its warnings about other lines do not name the file (load_env_files does)
        try:
            # A temporary file (mode 0600) beside it, renamed over it: the rewrite is atomic.
            set_key(real, name, value, quote_mode="always", encoding=encoding)
        finally:
            dotenv_log.disabled = False
        os.chmod(real, 0o600)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{real}: cannot write it ({reason}); fix its permissions or pass --home DIR") from None
    return real
