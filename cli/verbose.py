"""``-v`` / ``-vv``: the agent's own log on stderr, one line per record, above the progress panel.

``-v`` shows the ``free_llm_agent`` loggers at INFO (where the state and the configuration are read from,
each provider skipped and why, each request's provider and why, failures with their HTTP status and what
follows, node retries); ``-vv`` adds DEBUG and the HTTP client's one line per request. The records go
through rich's :class:`~rich.logging.RichHandler` on the CLI's stderr console: while the live panel is
drawn they are printed above it (rich moves the panel down), and stdout — ``--json``'s one object —
never sees them. Without ``-v`` nothing is installed: warnings print as before (bare, on stderr).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from free_llm_agent.cli import support

ROOT_LOGGER = "free_llm_agent"
_LIBRARIES_AT_VV = ("httpx",)  # its "HTTP Request: POST … 429 Too Many Requests" line per request
_log = logging.getLogger("free_llm_agent.cli")


def _handler_class() -> Any:
    from rich.logging import RichHandler
    from rich.text import Text

    class OneLine(RichHandler):
        """RichHandler's record as one unwrapped line (``12:03:04 INFO message``): a log captured to a file
        or a CI page stays greppable, and a long URL or path is not cut into a column."""

        def render(self, *, record: logging.LogRecord, traceback: Any, message_renderable: Any) -> Any:
            when = self.formatter.formatTime(record, "%H:%M:%S") if self.formatter else ""
            level = record.levelname
            line = Text.assemble((f"{when} ", "dim"), (f"{level:<7} ", f"logging.level.{level.lower()}"),
                                 message_renderable)
            return line if traceback is None else _group(line, traceback)

    return OneLine


def _group(*parts: Any) -> Any:
    from rich.console import Group

    return Group(*parts)


class Verbose:
    """What :func:`enable` changed, undone by :meth:`close` (a second ``main()`` in one process starts clean)."""

    def __init__(self, handler: logging.Handler, levels: dict[str, int]) -> None:
        self.handler, self.levels = handler, levels

    def close(self) -> None:
        logging.getLogger(ROOT_LOGGER).removeHandler(self.handler)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("httpx").removeHandler(self.handler)


def enable(verbosity: int) -> Verbose:
    """Show the agent's log at INFO (``verbosity`` 1) or DEBUG (2 and more) on stderr."""
    handler = _handler_class()(console=support.err, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter())
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    handler.setLevel(level)
    names = [ROOT_LOGGER, *(_LIBRARIES_AT_VV if verbosity > 1 else ())]
    levels = {name: logging.getLogger(name).level for name in names}
    agent = logging.getLogger(ROOT_LOGGER)
    agent.setLevel(level)
    agent.addHandler(handler)
    if verbosity > 1:
        httpx_logger = logging.getLogger("httpx")
        httpx_logger.setLevel(logging.INFO)
        httpx_logger.addHandler(handler)
    return Verbose(handler, levels)


def where_from(args: Any, env_files: list[Path]) -> None:
    """INFO: the home, the configuration folder, the state backend and the ``.env`` files read, each with the
    flag or variable that chose it."""
    from free_llm_agent.config.loader import DEFAULT_HOME, locate_config_dir

    def source(flag: str, var: str) -> str:
        return flag if getattr(args, flag.lstrip("-").replace("-", "_"), None) else (
            f"${var}" if os.environ.get(var) else "the default")

    home = Path(getattr(args, "home", None) or os.environ.get("FREE_AGENT_HOME") or DEFAULT_HOME).expanduser()
    _log.info("home: %s (from %s)", home, source("--home", "FREE_AGENT_HOME"))
    folder, chosen = locate_config_dir(getattr(args, "config_dir", None))
    _log.info("configuration folder: %s (%s)", folder, support.config_source_text(args, chosen))
    url = support.database_url(args)
    if url:
        from free_llm_agent.storage.urls import redacted

        _log.info("state: the PostgreSQL database %s (from %s)", redacted(url),
                  source("--database-url", "FREE_AGENT_DATABASE_URL"))
    else:
        _log.info("state: SQLite files in the home")
    _log.info(".env files read: %s", ", ".join(map(str, env_files)) if env_files else "none")
