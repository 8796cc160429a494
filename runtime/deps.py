"""What the nodes need from outside the state: the chat model, the code executor and the
sandbox it runs in, and the exactly-once guards (thread lock, task journal: in the home, or in
the PostgreSQL database of ``$FREE_AGENT_DATABASE_URL`` so they hold across machines).

``build_graph`` takes them as arguments (tests pass scripted fakes); by default
the chat model is built from ``$FREE_AGENT_CONFIG_DIR`` / ``$FREE_AGENT_HOME``
on first use, and each thread holds a warm executor, sandboxed as
``execution.sandbox`` in limits.yaml says, in the thread's working directory.
:meth:`Deps.prewarm` starts it in the background as a run begins (the CLI before its
first request, the plan node in a server), so the first task finds the kernel warm;
when the run ends it goes back to a pool (:mod:`runtime.executor_pool`) for the next
thread with the same working directory, network and sandbox, and is closed after
``execution.idle_close_seconds`` unused (the CLI closes all at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from free_llm_agent.config import ENV_FILES_READ, AppConfig, Execution, Fallback, resolve_home
from free_llm_agent.config import Snapshots as SnapshotSettings
from free_llm_agent.config.loader import REPO_CONFIG_DIR
from free_llm_agent.runtime.executor_pool import ExecutorPool, PoolKey
from free_llm_agent.snapshots import Snapshots, open_snapshots
from free_llm_agent.storage.guard import Journal, ReentrantRunLock, RunGuards
from free_llm_agent.storage.registry import open_guards
from free_llm_agent.tools.sandbox import Sandbox, SandboxUnavailable, hidden_paths, resolve
from free_llm_agent.tools.workspace import check_workdir, scratch_dir

if TYPE_CHECKING:  # langchain is imported when the model is built, not before the CLI's executor starts
    from langchain_core.language_models import BaseChatModel

_log = logging.getLogger(__name__)


class Executor(Protocol):
    """Runs a task's code. Optional: ``start()`` (warm up now, without waiting), ``reset()`` (forget the
    earlier tasks' state before another thread's), ``abort()`` (stop the task in flight), ``timeout_s``, and
    an ``on_output`` keyword of ``run`` (a callable given the task's output, whole lines, while it runs)."""

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
    config: AppConfig | None = None  # None: the chat model's (the CLI gives it before the model is built)
    database_url: str | None = None  # None: $FREE_AGENT_DATABASE_URL, else the home (run lock and journal)
    ask_domain: Callable[[str], Any] | None = None  # a terminal's question about an unlisted domain (the CLI)
    reuse_executors: bool = True  # pool a thread's executor when its run ends (False: close it, as the CLI exits)
    _guards: RunGuards | None = None
    _sandbox: Sandbox | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _pool: ExecutorPool = field(init=False)

    def __post_init__(self) -> None:
        self._pool = ExecutorPool(lambda: self.execution_settings().idle_close_seconds if self.reuse_executors else 0)
        self._exit_hook = False
        self._hook_exit()

    def _hook_exit(self) -> None:
        """Executors are closed at exit too; :meth:`close_all` unhooks until an executor is used again."""
        with self._lock:
            if not self._exit_hook:
                atexit.register(self.close_all)
                self._exit_hook = True

    def chat_model(self) -> BaseChatModel:
        with self._lock:
            if self.llm is None:
                from free_llm_agent.providers import build_chat_model

                self.llm = build_chat_model(home=self.home, database_url=self.database_url)
            return self.llm

    def _config(self) -> Any:
        if self.config is None:
            router = getattr(self.chat_model(), "router", None)
            return router.config if router is not None else None
        return self.config

    def fallback_settings(self) -> Fallback:
        """limits.yaml's ``fallback`` section (defaults when the model is not ours)."""
        config = self._config()
        return config.limits.fallback if config is not None else Fallback()

    def execution_settings(self) -> Execution:
        if self.execution is None:
            config = self._config()
            self.execution = config.limits.execution if config is not None else Execution()
        return self.execution

    def snapshot_settings(self) -> SnapshotSettings:
        """limits.yaml's ``snapshots`` section (defaults when the model is not ours)."""
        config = self._config()
        return config.limits.snapshots if config is not None else SnapshotSettings()

    def snapshots(self) -> Snapshots | None:
        """The snapshots of the working directory, in this home (None: ``snapshots.enabled: false``)."""
        settings = self.snapshot_settings()
        if not settings.enabled:
            return None
        return open_snapshots(self.home_dir(), max_file_mb=settings.max_file_mb, max_total_mb=settings.max_total_mb)

    def home_dir(self) -> Path:
        return self.home or resolve_home()

    def sandbox(self) -> Sandbox:
        """The sandbox generated code runs in (resolved once); SandboxUnavailable when required and missing."""
        with self._lock:  # once, even when the prewarm thread asks at the same time
            return self._resolve_sandbox()

    def _resolve_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            settings = self.execution_settings()
            env_files = [*ENV_FILES_READ, REPO_CONFIG_DIR.parent / ".env"]
            config = self.config or getattr(getattr(self.llm, "router", None), "config", None)  # if known yet
            own = [REPO_CONFIG_DIR.parent, Path(sys.prefix), *([config.config_dir] if config is not None else [])]
            self._sandbox = resolve(settings.sandbox, self.home_dir(), env_files=env_files,
                                    extra_hidden=settings.hidden_paths, protected=own)
            if not self._sandbox.active and settings.sandbox == "auto":
                _log.warning("warning: no sandbox (%s); generated code runs with your permissions",
                             self._sandbox.reason)
        return self._sandbox

    def key_vars(self) -> list[str]:
        from free_llm_agent.providers.keys import key_vars

        config = self._config()
        return [var for p in config.providers.values() for var in key_vars(p)] if config is not None else []

    def workdir(self, requested: str | None, thread_id: str) -> Path:
        """The working directory for a new run: ``requested`` (checked), else a scratch folder."""
        home = self.home_dir()
        if requested is None:
            return scratch_dir(home, thread_id)
        forbidden = hidden_paths(home, extra=self.execution_settings().hidden_paths)[1:]  # all but the home
        try:
            sandboxed = self.executor_factory is None and self.sandbox().active
        except SandboxUnavailable:
            sandboxed = False  # reported as such before anything runs
        return check_workdir(requested, home, forbidden, sandboxed=sandboxed)

    def guards(self) -> RunGuards:
        """Where the run lock and the task journal live: the home, or the shared database (one per Deps)."""
        with self._lock:
            if self._guards is None:
                from free_llm_agent.storage.registry import resolve_database_url

                self._guards = open_guards(resolve_database_url(self.database_url), self.home_dir())
            return self._guards

    def lock(self, thread_id: str, owner: str | None = None) -> ReentrantRunLock:
        return self.guards().lock(thread_id, owner)

    def journal(self) -> Journal:
        return self.guards().journal()

    def close_guards(self) -> None:
        with self._lock:
            if self._guards is not None:
                self._guards.close()
                self._guards = None

    def _default_executor(self, workdir: Path, timeout_s: float, network: bool) -> Executor:
        from free_llm_agent.tools.isolated_executor import IsolatedExecutor
        from free_llm_agent.tools.limits import Limits
        from free_llm_agent.tools.sandbox_session import Walls

        walls = Walls(limits=Limits.from_config(self.execution_settings()),
                      policy=self.network_policy([]) if network else None)
        return IsolatedExecutor(workdir, timeout_s=timeout_s, sandbox=self.sandbox(), network=network,
                                key_vars=self.key_vars(), walls=walls)

    def network_policy(self, domains: list[str]) -> Any:
        """The proxy's policy for a thread whose own allowed domains are ``domains`` (None: no network)."""
        from free_llm_agent.tools.netpolicy import NetworkPolicy

        settings = self.execution_settings()
        if settings.network == "off":
            return None
        return NetworkPolicy(settings.network, self._allowed(domains), ask=self.ask_domain)

    def _allowed(self, domains: list[str]) -> list[str]:
        from free_llm_agent.tools.netpolicy import DEFAULT_ALLOWED_DOMAINS

        return [*DEFAULT_ALLOWED_DOMAINS, *self.execution_settings().allowed_domains, *domains]

    def _configure(self, executor: Executor, domains: list[str]) -> None:
        """Give the thread's network policy to the executor it takes (a pooled one served another thread)."""
        policy = getattr(executor, "policy", None)
        settings = self.execution_settings()
        if policy is not None and settings.network != "off":
            policy.configure(settings.network, self._allowed(domains), self.ask_domain)

    def thread_domains(self, executor: Executor, domains: list[str]) -> list[str] | None:
        """The thread's domains after a task, with those answered "for this thread" at the prompt (None: no
        new one)."""
        policy = getattr(executor, "policy", None)
        if policy is None:
            return None
        base = self.network_policy([])
        known = set(domains) | set(base.allowed if base is not None else [])
        added = [d for d in policy.allowed if d not in known]
        return [*domains, *added] if added else None

    def _key(self, workdir: Path, network: bool) -> PoolKey:
        network = network and self.execution_settings().network != "off"
        sandbox = "" if self.executor_factory else repr((self.sandbox().kind, self.sandbox().hidden,
                                                         self.sandbox().protected))
        return (str(Path(workdir).expanduser().resolve()), network, sandbox)

    def _maker(self, workdir: Path, timeout_s: float, network: bool) -> Callable[[], Executor]:
        factory = self.executor_factory or self._default_executor
        self._hook_exit()
        return lambda: factory(workdir, timeout_s, network)

    def executor(self, thread_id: str, workdir: Path, timeout_s: float, network: bool = True) -> Executor:
        """The thread's warm executor: the one it holds, else one from the pool, else a new one."""
        ex = self._pool.get(thread_id, self._key(workdir, network), self._maker(workdir, timeout_s, network))
        if hasattr(ex, "timeout_s"):
            ex.timeout_s = timeout_s
        return ex  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def using_executor(self, thread_id: str, workdir: Path, timeout_s: float, network: bool = True,
                       domains: list[str] | None = None) -> Iterator[Executor]:
        """:meth:`executor`, never closed as idle while the block runs (a task on it); ``domains``: the
        thread's own allowed domains."""
        with self._pool.using(thread_id, self._key(workdir, network), self._maker(workdir, timeout_s, network)) as ex:
            if hasattr(ex, "timeout_s"):
                ex.timeout_s = timeout_s
            self._configure(ex, domains or [])
            yield ex

    def prewarm(self, thread_id: str, workdir: Path, timeout_s: float, network: bool = True) -> threading.Thread:
        """Have the thread's executor started in the background, so its first task finds the kernel warm.
        Nothing here delays or fails the run: what goes wrong shows at the first task."""

        def warm() -> None:
            try:
                ex = self._pool.get(thread_id, self._key(workdir, network), self._maker(workdir, timeout_s, network),
                                    start=True)
                if hasattr(ex, "timeout_s"):
                    ex.timeout_s = timeout_s
            except Exception:
                _log.debug("prewarming the executor failed", exc_info=True)

        worker = threading.Thread(target=warm, name="fla-prewarm", daemon=True)
        worker.start()
        return worker

    def release(self, thread_id: str) -> None:
        """The thread's run is over: its executor goes back to the pool (see the module docstring)."""
        self._pool.release(thread_id)

    def executors(self) -> list[Executor]:
        """Every executor held by a thread or idle in the pool."""
        return self._pool.executors()

    def abort_all(self) -> None:
        """Stop every task in flight now (Ctrl-C): it ends as interrupted, not as a result."""
        for ex in self._pool.executors():
            abort = getattr(ex, "abort", None)
            if abort is not None:
                abort()

    def close_all(self) -> None:
        """Close the executors and the model's state connections; the ``atexit`` hook is no longer needed
        (it would keep this object, its model and their open files alive until the process ends)."""
        self._pool.close_all()
        close = getattr(self.llm, "close", None)
        if callable(close):
            close()
        with self._lock:
            atexit.unregister(self.close_all)
            self._exit_hook = False


def sandbox_report(router: Any) -> dict[str, Any]:
    """Whether generated code would run sandboxed, and why not."""
    from free_llm_agent.providers import QuotaAwareChatModel
    from free_llm_agent.tools.sandbox import SandboxUnavailable

    mode = router.config.limits.execution.sandbox
    try:
        sandbox = Deps(llm=QuotaAwareChatModel(router=router), home=router.home).sandbox()
    except SandboxUnavailable as exc:
        return {"mode": mode, "active": False, "detail": f"code will not run: {exc}"}
    from free_llm_agent.tools.sandbox_session import report

    return {"mode": mode, "active": sandbox.active, "detail": sandbox.describe(),
            **report(sandbox, router.config.limits.execution)}
