"""Drive the compiled graph for the CLI: run, resume, answer interrupts, report a result.

Checkpoints live in ``checkpoints.db`` in the home directory (SqliteSaver), or in
the PostgreSQL database of ``--database-url`` (PostgresSaver, shared by every machine),
written with ``durability="sync"``, so a thread stopped by Ctrl-C, kill -9, a crash or
an empty quota continues with ``resume`` — on any machine sharing the database — without
redoing finished work. A run or resume holds the thread's lock (:mod:`storage.guard`)
throughout, so a second process on the same thread gets :class:`storage.errors.ThreadBusy`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Command

from free_llm_agent.config.text import escaped, undecodable
from free_llm_agent.graph.context import Context
from free_llm_agent.graph.workflow import build_graph
from free_llm_agent.runtime.deps import Deps, ExecutorFactory
from free_llm_agent.storage.errors import DAMAGED, CheckpointUnreadable, StateFileError
from free_llm_agent.storage.registry import open_checkpointer

# Called with an approval payload; returns the resume value, or None to pause the run.
Approver = Callable[[dict[str, Any]], dict[str, Any] | None]
# Called with (stream mode, chunk) for progress display.
Listener = Callable[[str, Any], None]


class UnknownThread(LookupError):
    """``resume`` was given a thread id that has no checkpoint."""


class NoWorkdir(LookupError):
    """``resume`` of a thread whose run never recorded its working directory (from before it was stored with
    the input): it is not guessed (a scratch folder would quietly run the goal somewhere else)."""


@dataclass
class RunResult:
    thread_id: str
    status: str
    goal: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    llm_calls: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    resume_after: str | None = None
    interrupt: dict[str, Any] | None = None
    workdir: str | None = None
    updated_at: str | None = None  # ISO time of the thread's latest checkpoint
    started_at: str | None = None  # ISO time of its first checkpoint (``threads`` only)
    holder: str | None = None  # who runs it now, "pid N on HOST" (``threads`` only: status "running")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("interrupt", "workdir", "updated_at", "started_at", "holder"):
            data.pop(key)  # the documented shape; ``show --json`` adds the working directory
        data["tasks"] = [
            {k: t.get(k) for k in ("id", "description", "status", "output")} | {"status": t.get("status", "pending")}
            for t in self.tasks
        ]
        return data

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "failed" else 0


class Runner:
    def __init__(
        self,
        home: Path,
        *,
        llm: BaseChatModel | None = None,
        context: Context | None = None,
        executor_factory: ExecutorFactory | None = None,
        deps: Deps | None = None,
        database_url: str | None = None,
    ) -> None:
        from free_llm_agent.storage.registry import resolve_database_url

        self.home = home
        self.database_url = database_url = resolve_database_url(database_url)  # as Deps and the router resolve it
        self.checkpoints = open_checkpointer(database_url, home)
        try:
            self.saver = self.checkpoints.saver
            self.deps = deps or Deps(llm=llm, executor_factory=executor_factory, home=home,
                                     database_url=database_url)
            self.graph = build_graph(checkpointer=self.saver, deps=self.deps)
        except BaseException:
            self.checkpoints.close()  # no pool or file left open
            raise
        self.context = context or Context()
        self._owner = f"runner-{uuid.uuid4().hex}"  # this runner's runs hold the thread lock as this owner

    @property
    def owner(self) -> str:
        """Who this runner's runs hold a thread's lock as (re-entrant: :func:`runtime.waiting.run_to_end` holds
        it across the runs and waits of one thread)."""
        return self._owner

    def close(self) -> None:
        """Close the checkpoints and every executor (the CLI's run is over: nothing is kept warm)."""
        self.deps.close_all()
        self.deps.close_guards()
        self.checkpoints.close()

    @staticmethod
    def config_for(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 200}

    def run(
        self,
        goal: str,
        thread_id: str | None = None,
        *,
        approver: Approver | None = None,
        listener: Listener | None = None,
    ) -> RunResult:
        thread_id = thread_id or uuid.uuid4().hex[:12]
        with self.deps.lock(thread_id, self._owner):
            return self._drive(self.input_for(goal, thread_id), thread_id, approver, listener)

    def input_for(self, goal: str, thread_id: str) -> dict[str, Any]:
        """A new run's input: the goal, and the working directory and network switch it runs with. A goal
        holding bytes that are not UTF-8 is a ValueError (it could not be checkpointed or sent)."""
        if (at := undecodable(goal)) is not None:
            raise ValueError(f"the goal holds bytes that are not UTF-8 (character {at + 1}: {escaped(goal[at])})")
        return {"goal": goal, "workdir": str(self.deps.workdir(self.context.workdir, thread_id)),
                "network": self.context.network}

    def resume(
        self, thread_id: str, *, approver: Approver | None = None, listener: Listener | None = None
    ) -> RunResult:
        with self.deps.lock(thread_id, self._owner):
            return self._resume(thread_id, approver, listener)

    def _resume(self, thread_id: str, approver: Approver | None, listener: Listener | None) -> RunResult:
        snap = self.graph.get_state(self.config_for(thread_id))
        if not snap.values:
            raise UnknownThread(thread_id)
        if not snap.values.get("workdir") and (snap.next or snap.tasks):
            raise NoWorkdir(thread_id)
        if snap.interrupts:
            payload = dict(snap.interrupts[0].value)
            answer = self._answer(payload, approver)
            if answer is None:
                return self.result(thread_id)
            return self._drive(Command(resume=answer), thread_id, approver, listener)
        if snap.next or snap.tasks:
            return self._drive(None, thread_id, approver, listener)
        return self.result(thread_id)

    def _answer(self, payload: dict[str, Any], approver: Approver | None) -> dict[str, Any] | None:
        if payload.get("type") == "waiting_for_quota":
            return {"action": "retry"}
        if self.context.auto_approve:
            return {"action": "approve"}
        return approver(payload) if approver is not None else None

    def _drive(self, value: Any, thread_id: str, approver: Approver | None, listener: Listener | None) -> RunResult:
        config = self.config_for(thread_id)
        config["configurable"]["run_owner"] = self._owner
        while True:
            for mode, chunk in self.graph.stream(
                value, config, context=self.context, stream_mode=["updates", "custom"], durability="sync"
            ):
                if listener is not None:
                    listener(mode, chunk)
            snap = self.graph.get_state(config)
            if not snap.interrupts:
                return self.result(thread_id)
            payload = dict(snap.interrupts[0].value)
            if payload.get("type") == "waiting_for_quota":
                return self.result(thread_id)
            answer = self._answer(payload, approver)
            if answer is None:
                return self.result(thread_id)
            value = Command(resume=answer)

    def result(self, thread_id: str) -> RunResult:
        snap = self.graph.get_state(self.config_for(thread_id))
        values = dict(snap.values)
        status = str(values.get("status") or "running")
        payload = dict(snap.interrupts[0].value) if snap.interrupts else None
        if payload is not None:
            status = "waiting_for_quota" if payload.get("type") == "waiting_for_quota" else "awaiting_approval"
        elif snap.next or snap.tasks:
            status = "interrupted"
        return RunResult(
            thread_id=thread_id,
            status=status,
            goal=str(values.get("goal", "")),
            tasks=list(values.get("tasks", [])),
            workdir=values.get("workdir"),
            summary=str(values.get("summary", "")),
            llm_calls=dict(values.get("llm_calls", {})),
            cache_hits=int(values.get("cache_hits", 0)),
            resume_after=values.get("resume_after") if status == "waiting_for_quota" else None,
            interrupt=payload,
            updated_at=snap.created_at,
        )

    def threads(self) -> tuple[list[RunResult], bool]:
        """Every thread (status ``damaged`` when its checkpoints cannot be read, ``running`` while a process
        holds its run lock — looked at, never taken), when it started and was last updated, and whether none
        was missed.

        The second value is False when damaged pages hid part of the thread list itself.
        """
        ids, complete = self.checkpoints.thread_ids()
        started = self.checkpoints.started() if ids else {}
        held = self.deps.guards().holders(ids) if ids else {}
        results = []
        for tid in ids:
            try:
                result = self.result(tid)
            except (CheckpointUnreadable, StateFileError) as exc:
                if isinstance(exc, StateFileError) and exc.kind != DAMAGED:
                    raise
                result = RunResult(thread_id=tid, status="damaged", goal="", summary=str(exc))
            if tid in started:
                result.started_at = started[tid].isoformat()
            if tid in held and result.status != "damaged":
                result.status, result.holder = "running", held[tid]
            results.append(result)
        return results, complete

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """Checkpoints of a thread, oldest first: step, time, and the nodes that ran next."""
        config = self.config_for(thread_id)
        if not self.graph.get_state(config).values:
            raise UnknownThread(thread_id)
        steps = [
            {
                "step": snap.metadata.get("step") if snap.metadata else None,
                "created_at": snap.created_at,
                "next": list(snap.next),
            }
            for snap in self.graph.get_state_history(config)
        ]
        return steps[::-1]
