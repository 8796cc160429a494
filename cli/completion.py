"""Shell completion through argcomplete: ``completion bash|zsh|fish`` prints the script a shell loads, and
each Tab runs the CLI with argcomplete's variables set (``_ARGCOMPLETE``, ``COMP_LINE``, ``COMP_POINT``).

argcomplete rather than a generated static script (shtab): one library for bash, zsh *and* fish (shtab has
no fish), and completions computed from the parser itself at Tab time — the commands and options can never
drift from the script — and from the user's state: ``resume``/``show``/``undo`` complete the home's thread
ids. A Tab costs what ``--help`` costs (the parser; no langchain, langgraph or rich is imported):
:func:`complete` is called before anything else in :func:`cli.main.main` and ends the process.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from free_llm_agent.cli.invocation import CONSOLE_SCRIPT

SHELLS = ("bash", "zsh", "fish")
_DIRECTORY_OPTIONS = ("config_dir", "home", "workdir")
_MAX_THREADS = 500


def script(shell: str) -> str:
    """The completion script for ``shell`` (registers ``free-llm-agent``)."""
    import argcomplete

    return str(argcomplete.shellcode([CONSOLE_SCRIPT], shell=shell))


def cmd_completion(args: argparse.Namespace) -> int:
    """``completion SHELL``: print the script."""
    print(script(args.shell))
    return 0


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit (when this process was started for one)."""
    import argcomplete
    from argcomplete.completers import DirectoriesCompleter

    for sub in [parser, *_subparsers(parser)]:
        for action in sub._actions:
            if action.dest in _DIRECTORY_OPTIONS:
                action.completer = DirectoriesCompleter()  # type: ignore[attr-defined]
            elif action.dest == "thread_id" and not action.option_strings:
                action.completer = thread_ids  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]


def thread_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The home's thread ids starting with ``prefix``, newest first, read straight from ``checkpoints.db``
    (read-only; none when the state is in PostgreSQL or cannot be read: completion never fails)."""
    if getattr(parsed_args, "database_url", None) or os.environ.get("FREE_AGENT_DATABASE_URL"):
        return []
    home = Path(getattr(parsed_args, "home", None) or os.environ.get("FREE_AGENT_HOME") or "~/.free-llm-agent")
    path = home.expanduser() / "checkpoints.db"
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=1)
        try:
            rows = conn.execute("SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id "
                                "ORDER BY max(rowid) DESC LIMIT ?", (_MAX_THREADS,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [str(r[0]) for r in rows if str(r[0]).startswith(prefix)]
