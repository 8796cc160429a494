"""Run many goals at once in one process: what ``batch`` and ``worker`` share.

One :class:`~runtime.deps.Deps` (the chat model and its quota ledger, the executor pool, the run guards)
serves every goal; each goal in flight borrows a :class:`~runtime.runner.Runner` of its own from a small
pool (a runner's context — working directory, approval — is per goal, and its lock owner must differ
from every other goal's). What is shared is thread-safe: the router books quota under its database's lock,
the checkpointers serialise their connection, the executor pool and the guards have locks of their own,
and each thread id gets its own executor.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from pathlib import Path

from free_llm_agent.graph.context import Context
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.runtime.runner import Listener, Runner, RunResult


class GoalRunner:
    def __init__(self, home: Path, deps: Deps, *, context: Context, database_url: str | None, size: int) -> None:
        self.home, self.deps, self.context, self.database_url = home, deps, context, database_url
        self._free: queue.Queue[Runner] = queue.Queue()
        self._all: list[Runner] = []
        self._size = max(1, size)
        self._lock = threading.Lock()

    def _take(self) -> Runner:
        with self._lock:
            if self._free.empty() and len(self._all) < self._size:
                runner = Runner(self.home, context=dataclasses.replace(self.context), deps=self.deps,
                                database_url=self.database_url)
                self._all.append(runner)
                return runner
        return self._free.get()

    def status(self, thread_id: str) -> RunResult | None:
        """The thread's result as stored (None: no such thread yet)."""
        runner = self._take()
        try:
            if not runner.graph.get_state(runner.config_for(thread_id)).values:
                return None
            return runner.result(thread_id)
        finally:
            self._free.put(runner)

    def drive(self, thread_id: str, goal: str, workdir: str, *, yes: bool,
              listener: Listener | None = None) -> RunResult:
        """Run ``goal`` as thread ``thread_id`` in ``workdir``, or resume the thread if it exists. Without
        ``yes`` a goal that asks for approval stops as ``awaiting_approval`` (no one is asked here)."""
        runner = self._take()
        try:
            runner.context = dataclasses.replace(self.context, auto_approve=yes, workdir=workdir)
            # Decided under the thread's lock (re-entrant for this runner's own run): a thread another process
            # started or finished while this one waited for the lock is resumed, never run from its goal again.
            with self.deps.lock(thread_id, runner.owner):
                if runner.graph.get_state(runner.config_for(thread_id)).values:
                    return runner.resume(thread_id, listener=listener)
                return runner.run(goal, thread_id, listener=listener)
        finally:
            self.deps.release(thread_id)
            self._free.put(runner)

    def close(self) -> None:
        """Close every runner's checkpoints, then the shared executors and guards."""
        for runner in self._all:
            runner.checkpoints.close()
        self.deps.close_all()
        self.deps.close_guards()

