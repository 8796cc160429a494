"""Which goal of a batch runs next: the highest priority among the ready ones, never before the quota frees.

N workers (threads of one process) share one :class:`Scheduler`. :meth:`Scheduler.take` hands a worker
the ready goal with the highest priority (then the earliest line); a goal is ready when it has not run yet,
was interrupted, or waits for quota and its ``resume_after`` has come (only with ``--wait``).

Priority and a shared quota: a request's slot is booked first come, first served in the quota ledger,
so priority is honoured where a goal starts, not per request. Two rules make that enough:

* the goals in flight are always the highest-priority ready ones (a worker takes the best one each time);
* when a goal comes back ``waiting_for_quota`` with ``resume_after`` T, every provider is dry until T: no
  goal starts or resumes before T (the *gate*), so a lower-priority goal cannot take the slot that frees at
  T while a higher one waits for it — at T the waiting goals are handed out in priority order again;
* goals are handed out one at a time: the next only once the last one handed out has got going (its first
  answer, or a task running) or stopped (:meth:`Scheduler.progressed`; at most ``PROBE_S`` seconds). Two
  goals handed out together would race for the one slot that just freed, and the lower-priority one, with
  less to do before its first request (a new plan against a resumed run), would often win it.

Without ``--wait`` a dry goal is final for this batch (``waiting_for_quota`` with its ``resume_after``) and
goals not started when the quota went dry are reported the same way (``started: false``); a re-run of the
batch continues them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from free_llm_agent.runtime.batch_file import BatchGoal

# Final for this batch run (the worker loop never hands them out again).
FINAL = ("completed", "failed", "awaiting_approval", "busy", "error", "interrupted")
PROBE_S = 15.0  # the next goal is handed out after this long even if the last one has not got going yet


@dataclass
class GoalState:
    goal: BatchGoal
    status: str = "pending"  # pending | running | interrupted | waiting_for_quota | one of FINAL
    resume_after: float | None = None  # epoch seconds (waiting_for_quota)
    started: bool = False  # its thread exists (this run or an earlier one)
    skipped: bool = False  # completed/failed before this run: nothing was sent
    llm_calls: dict[str, int] = field(default_factory=dict)  # the thread's calls, all runs
    requests: int = 0  # requests this batch run sent for it
    tasks_done: int = 0
    tasks_total: int = 0
    activity: str = ""
    note: str = ""
    first_started_at: float | None = None  # this batch run
    finished_at: float | None = None
    done_ids: set[int] = field(default_factory=set)
    outages: int = 0  # pauses in a row because every provider failed (runtime.waiting.MAX_OUTAGES at most)

    def on_event(self, mode: str, chunk: Any) -> None:
        """A run's listener: tasks done / planned and what the goal does now."""
        if mode == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                if node.startswith("__"):
                    continue
                self.activity = node
                tasks = update.get("tasks") if isinstance(update, dict) else None
                if tasks:
                    self.tasks_total = max(self.tasks_total, *(int(t["id"]) for t in tasks))
                    self.done_ids |= {int(t["id"]) for t in tasks if t.get("status") in ("done", "failed", "skipped")}
                    self.tasks_done = len(self.done_ids)
        elif mode == "custom" and isinstance(chunk, dict) and chunk.get("event") == "task_running":
            self.activity = f"task {chunk.get('task_id')}"

    def to_json(self) -> dict[str, Any]:
        g = self.goal
        return {"line": g.line, "goal": g.goal, "priority": g.priority, "workdir": g.workdir,
                "thread_id": g.thread_id, "status": self.status, "resume_after": _iso(self.resume_after),
                "started": self.started, "skipped": self.skipped, "requests": self.requests,
                "llm_calls": self.llm_calls, "tasks_done": self.tasks_done, "tasks_total": self.tasks_total,
                "note": self.note, "started_at": _iso(self.first_started_at), "finished_at": _iso(self.finished_at)}


def _iso(t: float | None) -> str | None:
    from datetime import UTC

    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def epoch(iso: str | None) -> float | None:
    """``resume_after`` as epoch seconds (None stays None)."""
    return None if not iso else datetime.fromisoformat(iso).timestamp()


class Scheduler:
    def __init__(self, states: list[GoalState], *, wait: bool, clock: Callable[[], float] = time.time) -> None:
        self.states = states
        self.wait = wait
        self.clock = clock
        self.gate = 0.0  # no goal starts before this time (the quota is dry until then)
        self._cond = threading.Condition()
        self._stopped = False
        self._running = 0
        self._probe: GoalState | None = None  # handed out last, not yet got going
        self._probe_until = 0.0

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        """Ctrl-C: no goal is handed out any more, and the goals in flight stop at their next step."""
        return self._stopped

    def changed(self) -> None:
        """Wake the waiting workers (a state changed outside :meth:`done`)."""
        with self._cond:
            self._cond.notify_all()

    def progressed(self, state: GoalState, mode: str, chunk: Any) -> None:
        """A run's listener: when ``state``'s goal got going (an answer came: ``llm_call``; a task runs) the
        next goal may be handed out. State updates do not count: a node that found the quota dry updates
        the state too (with its ``fallback``)."""
        if self._probe is not state or mode != "custom":
            return
        with self._cond:
            if self._probe is state:
                self._probe = None
                self._cond.notify_all()

    def _ready(self, s: GoalState, now: float) -> bool:
        if s.status == "pending":
            return True
        return s.status == "waiting_for_quota" and self.wait and (s.resume_after or 0) <= now

    def _may_become_ready(self, s: GoalState) -> bool:
        return s.status == "pending" or (s.status == "waiting_for_quota" and self.wait)

    def take(self) -> GoalState | None:
        """The next goal for a worker (marked running), blocking until one is ready; None when none will be."""
        with self._cond:
            while not self._stopped:
                now = self.clock()
                if not self.wait and self.gate > now:  # dry: what has not started stays as it is, reported dry
                    for s in self.states:
                        if s.status == "pending":
                            s.status, s.resume_after = "waiting_for_quota", self.gate
                            s.note = "not started: the quota ran dry" if not s.started else s.note
                if self._probe is not None and now >= self._probe_until:
                    self._probe = None
                if self.gate <= now and self._probe is None:
                    ready = [s for s in self.states if self._ready(s, now)]
                    if ready:
                        best = min(ready, key=lambda s: (-s.goal.priority, s.goal.line))
                        best.status, best.note = "running", ""
                        best.first_started_at = best.first_started_at or now
                        self._running += 1
                        self._probe, self._probe_until = best, now + PROBE_S
                        return best
                if self._running == 0 and not any(self._may_become_ready(s) for s in self.states):
                    self._cond.notify_all()
                    return None
                wake = [self.gate] if self.gate > now else []
                wake += [self._probe_until] if self._probe is not None else []
                wake += [s.resume_after for s in self.states
                         if s.status == "waiting_for_quota" and self.wait and s.resume_after]
                timeout = max(0.05, min(wake) - now) if wake else None
                self._cond.wait(min(timeout, 5.0) if timeout is not None else 5.0)
            return None

    def done(self, state: GoalState, status: str, resume_after: float | None = None) -> None:
        """A worker is back with ``state``'s goal: its new status (``waiting_for_quota``: dry until
        ``resume_after``)."""
        with self._cond:
            self._running -= 1
            if self._probe is state:
                self._probe = None
            state.status = status
            state.resume_after = resume_after if status == "waiting_for_quota" else None
            if status == "waiting_for_quota" and resume_after is not None and resume_after > self.gate:
                self.gate = resume_after
            if status in FINAL:
                state.finished_at = self.clock()
            self._cond.notify_all()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.states:
            out[s.status] = out.get(s.status, 0) + 1
        return out
