"""The command line, run the way the tests need it: :func:`cli` in a subprocess (the real thing, as a
user starts it), :func:`cli_in_process` through ``free_llm_agent.cli.main.main`` (a traceback fails
the test instead of being printed).

Both build the same argv: ``[--config-dir C] [--home H] [--database-url U] ARGS``. Commands whose
process the test must hold (``Popen``, a pseudo-terminal) build theirs from :data:`~tests.support.paths.CLI`
and :func:`options`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT, RUN_GRAPH


def options(home: Path | None = None, config: Path | None = None, database_url: str | None = None) -> list[str]:
    """The global options of one invocation (each only when given)."""
    argv = ["--config-dir", str(config)] if config is not None else []
    argv += ["--home", str(home)] if home is not None else []
    return argv + (["--database-url", database_url] if database_url is not None else [])


def cli(args: Sequence[str], home: Path | None = None, config: Path | None = None, *,
        database_url: str | None = None, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
        timeout: float = 180, input: str | None = None,
        launcher: Sequence[str] = (sys.executable,)) -> subprocess.CompletedProcess[str]:
    """``run_graph.py [options] ARGS`` in a subprocess; its exit code, stdout and stderr as text.

    ``env`` replaces the environment (None: this process's); stdin is empty unless ``input`` is
    given; ``launcher`` is what starts the script (default: this interpreter; e.g. ``uv run python``).
    """
    argv = [*launcher, str(RUN_GRAPH), *options(home, config, database_url), *args]
    stdin: dict[str, Any] = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=None if env is None else dict(env), **stdin)


def cli_in_process(args: Sequence[str], capsys: pytest.CaptureFixture[str], home: Path | None = None,
                   config: Path | None = None, *, database_url: str | None = None) -> tuple[int, str, str]:
    """The same command in this process: ``(exit code, stdout, stderr)`` of that command alone."""
    from free_llm_agent.cli import main as run_graph

    capsys.readouterr()
    code = run_graph.main([*options(home, config, database_url), *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object a ``--json`` command printed (its stderr as the message when there is none)."""
    assert proc.stdout.strip(), proc.stderr
    return dict(json.loads(proc.stdout))
