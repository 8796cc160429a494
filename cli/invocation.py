"""How the user started this CLI, written as a command that starts it again from where they are.

The hints the CLI prints (``resume THREAD``, ``doctor --repair`` …) begin with it, so they can be copied
as they are:

* the console script on ``PATH`` (installed as a tool, or in an activated venv): ``free-llm-agent``;
* through ``uv run`` (``uv`` sets ``$UV`` and ``$VIRTUAL_ENV`` for the command; ``free-llm-agent`` may be on
  no ``PATH`` of the user's own shell): ``uv run free-llm-agent`` inside the project,
  ``uv run --project DIR free-llm-agent`` elsewhere;
* the console script by its path (a venv that is not activated): that path;
* the checkout's script, ``python run_graph.py``: the interpreter that runs it (``python`` when that name
  finds this interpreter, else its path) and the script as it was given; through ``uv run``, ``uv run …``;
* ``python -m free_llm_agent.cli.main``: the same ``-m``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

CONSOLE_SCRIPT = "free-llm-agent"


def program() -> str:
    """The command that starts this CLI again, from the current folder (see the module docstring)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("free_llm_agent"):
        return f"{_python()} -m {spec.name.removesuffix('.__main__')}"
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    script = Path(argv0)
    if script.stem == CONSOLE_SCRIPT:  # (free-llm-agent.exe on Windows)
        return _console_script(script)
    if script.suffix == ".py" and script.is_file():
        shown = _shown_path(script)
        uv = _uv_run()
        return f"{uv} {shown}" if uv else f"{_python()} {shown}"
    return CONSOLE_SCRIPT  # imported by another program (tests, a notebook): the documented command


def _console_script(script: Path) -> str:
    uv = _uv_run()
    if uv:
        return f"{uv} {CONSOLE_SCRIPT}"
    found = shutil.which(CONSOLE_SCRIPT)
    if found and _same_file(found, script):
        return CONSOLE_SCRIPT
    return shlex.quote(os.path.abspath(script))


def _uv_run() -> str | None:
    """``uv run`` (with ``--project DIR`` when the current folder is not in the project) when this process
    was started by ``uv run`` in a project's venv; else None."""
    venv = os.environ.get("VIRTUAL_ENV", "")
    if not os.environ.get("UV") or not venv or not _same_file(venv, sys.prefix):
        return None
    project = Path(venv).parent
    if not (project / "pyproject.toml").is_file():  # not a project's .venv (a tool's, UV_PROJECT_ENVIRONMENT)
        return None
    if _nearest_project(Path.cwd()) == project.resolve():
        return "uv run"
    return f"uv run --project {_shown_path(project)}"


def _nearest_project(start: Path) -> Path | None:
    """The folder uv finds the project in from ``start``: the nearest one holding a pyproject.toml."""
    try:
        here = start.resolve()
    except OSError:
        return None
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def _python() -> str:
    """``python`` or ``python3`` when that name finds this interpreter, else its path."""
    for name in ("python", "python3"):  # the same folder, not the same binary: a venv's python links to another
        found = shutil.which(name)
        if found and _same_file(Path(found).parent, Path(sys.executable).parent):
            return name
    return shlex.quote(sys.executable)


def _shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it (``run_graph.py``), else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return shlex.quote(str(absolute.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(absolute))


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
