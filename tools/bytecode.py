"""Bytecode for what the sandboxed executor imports, compiled outside the sandbox.

The executor's worker and its Jupyter kernel run in the sandbox, where the environment is read-only
and ``PYTHONDONTWRITEBYTECODE`` is set: they never write ``__pycache__``, so without bytecode compiled
beforehand they compile ipykernel, IPython, jupyter_client, zmq, OI's terminal … from source at every
start (≈1 s of CPU, doubling the kernel's start). ``uv sync`` compiles nothing by default, and its
``compile-bytecode`` setting would recompile the whole environment at every ``uv run``.

So the first sandboxed executor of a process (:func:`compile_in_background`) checks a few files of
those packages (a handful of ``stat`` calls) and, if their bytecode is missing and the environment is
writable, compiles the packages once in a detached, low-priority ``python -m compileall``; later starts
read the bytecode. :data:`PACKAGES` is what the worker and the kernel import up to the first task
(``sys.modules`` of both), and this checkout's own ``tools`` package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

TOOLS = Path(__file__).parent  # free_llm_agent/tools (compiled where the worker imports it from)
PACKAGES = (
    "IPython", "comm", "dateutil", "ipykernel", "jupyter_client", "jupyter_core", "orjson", "packaging",
    "platformdirs", "psutil", "pygments", "six", "tornado", "traitlets", "typing_extensions", "zmq",
    "interpreter", "certifi", "charset_normalizer", "html2image", "idna", "requests", "socks", "urllib3",
    "websocket", "matplotlib_inline",
)
# Deep modules checked besides each package's __init__ (a package imported elsewhere may have only that cached).
MARKERS = ("ipykernel/kernelapp.py", "IPython/core/interactiveshell.py", "jupyter_client/manager.py",
           "interpreter/core/computer/terminal/terminal.py", "tornado/ioloop.py", "zmq/sugar/socket.py")

_started = threading.Lock()
_done = False


def sources() -> list[Path]:
    """Each installed package's directory (or a module's file), and the agent's ``tools``."""
    found = [TOOLS]
    for name in PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin in (None, "built-in", "frozen"):
            continue
        origin = Path(spec.origin)  # type: ignore[arg-type]
        found.append(origin.parent if spec.submodule_search_locations else origin)
    return found


def _cached(source: Path) -> bool:
    try:
        return Path(importlib.util.cache_from_source(str(source))).exists()
    except (NotImplementedError, ValueError):
        return True  # no cache for it here: nothing to compile


def missing(paths: list[Path] | None = None) -> list[Path]:
    """The paths of :func:`sources` whose bytecode is missing (checked: ``__init__`` and :data:`MARKERS`)."""
    out = []
    for path in sources() if paths is None else paths:
        checks = [path] if path.is_file() else [path / "__init__.py",
                                                *(path.parent / m for m in MARKERS if m.split("/")[0] == path.name)]
        if any(c.is_file() and not _cached(c) for c in checks):
            out.append(path)
    return out


def command(paths: list[Path]) -> list[str]:
    nice = shutil.which("nice")
    return [*([nice, "-n", "10"] if nice else []), sys.executable, "-m", "compileall", "-q", "-j", "0",
            *map(str, paths)]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_in_background() -> bool:
    """Once per process: compile what is missing in a detached low-priority process (False: nothing to do)."""
    global _done
    with _started:
        if _done:
            return False
        _done = True
    return _detached([p for p in missing() if os.access(p if p.is_dir() else p.parent, os.W_OK)])


def _detached(todo: list[Path]) -> bool:
    """Compile ``todo`` in a low-priority process that outlives this one (False: nothing to compile, or it
    could not be started)."""
    if not todo:
        return False
    try:  # through a shell that leaves it running in the background: not a child of this process
        subprocess.run(["/bin/sh", "-c", '"$@" &', "sh", *command(todo)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True,
                       timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return True


def imported_sources() -> list[Path]:
    """What this process imported from source without bytecode (``PYTHONDONTWRITEBYTECODE`` was set): the
    folder of each such module's outermost regular package (a namespace package's members one by one), or
    the module's file when it is not in a package; only where the environment is writable."""
    found: dict[Path, None] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py") or _cached(Path(file)):
            continue
        parts, target = name.split("."), Path(file)
        for i in range(1, len(parts) + 1):  # the outermost package with an __init__.py holding the module
            outer = sys.modules.get(".".join(parts[:i]))
            init = getattr(outer, "__file__", None)
            if isinstance(init, str) and Path(init).name == "__init__.py" and Path(file).is_relative_to(
                    Path(init).parent):
                target = Path(init).parent
                break
        if os.access(target if target.is_dir() else target.parent, os.W_OK):
            found.setdefault(target)
    return list(found)


def compile_imported_in_background() -> bool:
    """Where bytecode is not written (``PYTHONDONTWRITEBYTECODE``), compile what this process imported from
    source, detached and at low priority, so the next run reads bytecode: a 3-task run took 3.5 s without
    it, 2.0 s with it. ``uv sync --compile-bytecode`` does it at install instead. False: nothing to do."""
    if not sys.flags.dont_write_bytecode:
        return False  # Python writes its own bytecode as it imports
    return _detached(imported_sources())


def compile_now() -> None:
    """Compile what is missing and wait (the benchmark does, before it measures anything)."""
    todo = missing()
    if todo:
        subprocess.run(command(todo), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_env(), check=False)


if __name__ == "__main__":
    compile_now()
