"""What ``run``/``resume`` leave out of their imports, before langchain and langgraph are imported.

* Blocked (``sys.modules[name] = None``: the importer takes its ``ImportError`` path), as a run never
  uses them: trio (installed for Open Interpreter's selenium, which runs in the executor's own process;
  httpcore imports it when present, ≈0.1 s) and httpx's command-line client (``httpx._main``: rich.syntax,
  pygments, click, ≈0.1 s; ``import httpx`` loads it when present and does without), and
  langchain-text-splitters (≈0.07 s), which ``langchain_core.messages.utils`` imports when present for
  ``trim_messages(text_splitter=…)`` only (the agent never trims messages).
* Deferred (:class:`DeferredPackage`): ``langsmith.types``, whose ``__init__`` builds ≈170 pydantic models
  (≈0.25 s of CPU) while langchain's tracers import one small submodule of it
  (``langsmith.types.run_select_field``, a ``Literal``); and ``langgraph_sdk``, whose ``__init__`` imports
  its HTTP and websocket clients (≈70 modules) while langgraph imports ``langgraph_sdk.auth.types`` only
  (for ``Runtime``; the clients serve remote graphs). A deferred package's ``__init__`` runs, in the same
  module object, when anything asks for a name it has not defined yet (``from langsmith.types import Run``).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

BLOCKED = ("trio", "httpx._main", "langchain_text_splitters")
DEFERRED = ("langsmith.types", "langgraph_sdk")
_LOADING = threading.RLock()


class DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` has not run yet: its submodules import (``__path__`` is set); the first
    name it lacks runs the ``__init__`` in this very module, after which it is an ordinary module. Other
    threads wait meanwhile; a name missing while the ``__init__`` runs is missing, as in any import."""

    def __getattr__(self, name: str) -> Any:
        with _LOADING:
            if type(self) is DeferredPackage and not self.__dict__.get("__deferred_running__"):
                self.__dict__["__deferred_running__"] = True
                try:
                    spec = self.__spec__
                    if spec is not None and spec.loader is not None:
                        spec.loader.exec_module(self)
                    self.__class__ = types.ModuleType  # type: ignore[assignment]  # an ordinary module now
                finally:
                    del self.__dict__["__deferred_running__"]
            if type(self) is DeferredPackage:  # asked while its __init__ runs
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(self, name)


def defer(name: str) -> bool:
    """Put ``name`` (a package not imported yet) in ``sys.modules`` as a
    :class:`DeferredPackage`; False when it cannot be deferred (already imported, not a package, missing)."""
    parent = name.rpartition(".")[0]
    if name in sys.modules:
        return False
    try:  # the parent is imported to find the package (its own __init__ runs: it is needed anyway)
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)  # __path__, __spec__ … set; __init__ not run
    module.__class__ = DeferredPackage
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], name.rpartition(".")[2], module)
    return True


def prepare() -> None:
    """Block :data:`BLOCKED` and defer :data:`DEFERRED` (see the module docstring)."""
    for name in BLOCKED:
        if name.rpartition(".")[0] not in sys.modules:  # (an imported httpx has loaded its _main already)
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in DEFERRED:
        defer(name)
