"""What the nodes need from outside the state: the chat model, the code executor and the
sandbox it runs in, and the exactly-once guards (thread lock, task journal).

``build_graph`` takes them as arguments (tests pass scripted fakes); by default
the chat model is built from ``$FREE_AGENT_CONFIG_DIR`` / ``$FREE_AGENT_HOME``
on first use, and each thread gets its own warm executor, sandboxed as
``execution.sandbox`` in limits.yaml says, in the thread's working directory.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from config import ENV_FILES_READ, Execution, Fallback, resolve_home
from config.loader import REPO_CONFIG_DIR
from graph.guard import TaskJournal, ThreadLock
from providers.keys import key_vars
from tools.sandbox import Sandbox, hidden_paths, resolve
from tools.workspace import check_workdir, scratch_dir

_log = logging.getLogger(__name__)


class Executor(Protocol):
    workspace: Path

    def run(self, language: str, code: str) -> Any: ...

    def close(self) -> None: ...


# (working directory, timeout per task in seconds, network allowed) -> executor
ExecutorFactory = Callable[[Path, float, bool], Executor]


@dataclass
class Deps:
    llm: BaseChatModel | None = None
    executor_factory: ExecutorFactory | None = None  # None: the sandboxed IsolatedExecutor
    home: Path | None = None
    execution: Execution | None = None  # None: limits.yaml's ``execution`` section
    _executors: dict[str, tuple[tuple[str, bool], Executor]] = field(default_factory=dict)
    _sandbox: Sandbox | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        atexit.register(self.close_all)

    def chat_model(self) -> BaseChatModel:
        with self._lock:
            if self.llm is None:
                from providers import build_chat_model

                self.llm = build_chat_model(home=self.home)
            return self.llm

    def _config(self) -> Any:
        router = getattr(self.chat_model(), "router", None)
        return router.config if router is not None else None

    def fallback_settings(self) -> Fallback:
        """limits.yaml's ``fallback`` section (defaults when the model is not ours)."""
        config = self._config()
        return config.limits.fallback if config is not None else Fallback()

    def execution_settings(self) -> Execution:
        if self.execution is None:
            config = self._config()
            self.execution = config.limits.execution if config is not None else Execution()
        return self.execution

    def home_dir(self) -> Path:
        return self.home or resolve_home()

    def sandbox(self) -> Sandbox:
        """The sandbox generated code runs in (resolved once); SandboxUnavailable when required and missing."""
        if self._sandbox is None:
            settings = self.execution_settings()
            env_files = [*ENV_FILES_READ, REPO_CONFIG_DIR.parent / ".env"]
            config = getattr(getattr(self.llm, "router", None), "config", None)  # only if built already
            own = [REPO_CONFIG_DIR.parent, Path(sys.prefix), *([config.config_dir] if config is not None else [])]
            self._sandbox = resolve(settings.sandbox, self.home_dir(), env_files=env_files,
                                    extra_hidden=settings.hidden_paths, protected=own)
            if not self._sandbox.active and settings.sandbox == "auto":
                _log.warning("warning: no sandbox (%s); generated code runs with your permissions",
                             self._sandbox.reason)
        return self._sandbox

    def key_vars(self) -> list[str]:
        config = self._config()
        return [var for p in config.providers.values() for var in key_vars(p)] if config is not None else []

    def workdir(self, requested: str | None, thread_id: str) -> Path:
        """The working directory for a new run: ``requested`` (checked), else a scratch folder."""
        home = self.home_dir()
        if requested is None:
            return scratch_dir(home, thread_id)
        forbidden = hidden_paths(home, extra=self.execution_settings().hidden_paths)[1:]  # all but the home
        return check_workdir(requested, home, forbidden)

    def lock(self, thread_id: str, owner: str | None = None) -> ThreadLock:
        return ThreadLock(self.home_dir(), thread_id, owner)

    def journal(self) -> TaskJournal:
        return TaskJournal(self.home_dir())

    def _default_executor(self, workdir: Path, timeout_s: float, network: bool) -> Executor:
        from tools.isolated_executor import IsolatedExecutor

        return IsolatedExecutor(workdir, timeout_s=timeout_s, sandbox=self.sandbox(), network=network,
                                key_vars=self.key_vars())

    def executor(self, thread_id: str, workdir: Path, timeout_s: float, network: bool = True) -> Executor:
        """The thread's warm executor (created on first use, again when workdir or network change)."""
        factory = self.executor_factory or self._default_executor
        with self._lock:
            spec = (str(workdir), network)
            held = self._executors.get(thread_id)
            stale = held is not None and held[0] != spec
            if held is None or stale:
                if held is not None:
                    held[1].close()
                held = self._executors[thread_id] = (spec, factory(workdir, timeout_s, network))
            ex = held[1]
            if hasattr(ex, "timeout_s"):
                ex.timeout_s = timeout_s
            return ex

    def release(self, thread_id: str) -> None:
        with self._lock:
            held = self._executors.pop(thread_id, None)
        if held is not None:
            held[1].close()

    def abort_all(self) -> None:
        """Stop every task in flight now (Ctrl-C): it ends as interrupted, not as a result."""
        for _, ex in list(self._executors.values()):
            abort = getattr(ex, "abort", None)
            if abort is not None:
                abort()

    def close_all(self) -> None:
        for thread_id in list(self._executors):
            self.release(thread_id)


def sandbox_report(router: Any) -> dict[str, Any]:
    """Whether generated code would run sandboxed, and why not."""
    from providers import QuotaAwareChatModel
    from tools.sandbox import SandboxUnavailable

    mode = router.config.limits.execution.sandbox
    try:
        sandbox = Deps(llm=QuotaAwareChatModel(router=router), home=router.home).sandbox()
    except SandboxUnavailable as exc:
        return {"mode": mode, "active": False, "detail": f"code will not run: {exc}"}
    return {"mode": mode, "active": sandbox.active, "detail": sandbox.describe()}
