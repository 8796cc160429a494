"""What the nodes need from outside the state: the chat model and the code executor.

``build_graph`` takes them as arguments (tests pass scripted fakes); by default
the chat model is built from ``$FREE_AGENT_CONFIG_DIR`` / ``$FREE_AGENT_HOME``
on first use, and each thread gets its own warm executor in its own workspace.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from config import Fallback, resolve_home


class Executor(Protocol):
    workspace: Path

    def run(self, language: str, code: str) -> Any: ...

    def close(self) -> None: ...


ExecutorFactory = Callable[[Path, float], Executor]


def _default_executor(workspace: Path, timeout_s: float) -> Executor:
    from tools.isolated_executor import IsolatedExecutor

    return IsolatedExecutor(workspace, timeout_s=timeout_s)


@dataclass
class Deps:
    llm: BaseChatModel | None = None
    executor_factory: ExecutorFactory = _default_executor
    home: Path | None = None
    _executors: dict[str, Executor] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        atexit.register(self.close_all)

    def chat_model(self) -> BaseChatModel:
        with self._lock:
            if self.llm is None:
                from providers import build_chat_model

                self.llm = build_chat_model(home=self.home)
            return self.llm

    def fallback_settings(self) -> Fallback:
        """limits.yaml's ``fallback`` section (defaults when the model is not ours)."""
        router = getattr(self.chat_model(), "router", None)
        return router.config.limits.fallback if router is not None else Fallback()

    def workspace(self, thread_id: str) -> Path:
        home = self.home or resolve_home()
        path = home / "workspaces" / "".join(c if c.isalnum() or c in "-_." else "_" for c in thread_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def executor(self, thread_id: str, timeout_s: float) -> Executor:
        """The thread's warm executor (created on first use)."""
        with self._lock:
            ex = self._executors.get(thread_id)
            if ex is None:
                ex = self._executors[thread_id] = self.executor_factory(self.workspace(thread_id), timeout_s)
            if hasattr(ex, "timeout_s"):
                ex.timeout_s = timeout_s
            return ex

    def release(self, thread_id: str) -> None:
        with self._lock:
            ex = self._executors.pop(thread_id, None)
        if ex is not None:
            ex.close()

    def close_all(self) -> None:
        for thread_id in list(self._executors):
            self.release(thread_id)
