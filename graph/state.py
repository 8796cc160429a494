"""The agent's state and its reducers.

Nodes return partial updates; these reducers say how an update combines with
what is already there:

* ``tasks`` — :func:`merge_tasks`: an update is a list of task dicts matched by
  ``id``; given keys overwrite, new ids are appended. So one node can change
  the status of one task without resending the others, and completed work is
  never dropped.
* ``llm_calls`` — :func:`add_counts`: per-provider counters are summed.
* ``cache_hits`` — summed (``operator.add``).
* ``errors`` and ``calls`` — appended (``operator.add``).
* every other key — last write wins.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic needs this one on 3.11 (Studio schemas)

from free_llm_agent.snapshots.changes import FileChange

TaskStatus = Literal["pending", "running", "done", "failed", "skipped"]
RunStatus = Literal["running", "completed", "failed", "awaiting_approval", "waiting_for_quota"]
Language = Literal["python", "shell"]
Decision = Literal["continue", "replan", "finish"]  # reflect's: next batch, a new plan, or stop
VerdictWord = Literal["done", "retry", "failed"]
Approval = Literal["", "user", "edited", "auto", "rejected", "blocked"]  # "" = not decided yet
LlmNode = Literal["plan", "write_code", "reflect"]  # the nodes that ask the LLM (and can fail over)
# out of budget, providers failing, unreadable, no provider will ever answer (every key rejected), other
FailureKind = Literal["quota", "outage", "parse", "dead", "error"]


class Fallback(TypedDict):
    """Why the last LLM node failed: the fallback node retries it, waits for quota, or ends the run."""

    node: LlmNode
    kind: FailureKind
    error: str
    retry_at: str | None  # ISO time when quota frees up (kind "quota"/"outage")
    failures: int  # consecutive failures of ``node``


class VerdictEntry(TypedDict, total=False):
    task_id: int
    verdict: VerdictWord
    hint: str


class Task(TypedDict, total=False):
    id: int
    description: str
    status: TaskStatus
    language: Language
    code: str
    output: str
    attempts: int  # how many times its code was run
    hint: str  # reflect's advice for the next attempt
    error: str  # why it failed (blocked, timeout, exit status ...)
    approved: bool  # its current code may run (approval node or --yes)
    approval: Approval  # how its latest code was decided
    restarts: int  # how often a run of it was cut short by a crash (it then needs a new approval)
    interrupted: bool  # its last run was cut short by a crash; cleared when it runs again
    unjudged: bool  # reflect had no readable verdict for it: its exit status decided
    changes: list[FileChange]  # files its latest run created, modified, deleted (an interrupted run: so far)


def merge_tasks(current: list[Task] | None, update: list[Task] | None) -> list[Task]:
    """Merge task updates by id (see module docstring)."""
    merged: dict[int, Task] = {int(t["id"]): dict(t) for t in current or []}  # type: ignore[misc]
    for task in update or []:
        tid = int(task["id"])
        merged[tid] = {**merged.get(tid, {}), **task}  # type: ignore[typeddict-item]
    return [merged[k] for k in sorted(merged)]


def add_counts(current: dict[str, int] | None, update: dict[str, int] | None) -> dict[str, int]:
    """Sum per-provider counters."""
    out = dict(current or {})
    for key, value in (update or {}).items():
        out[key] = out.get(key, 0) + value
    return out


class InputState(TypedDict):
    goal: str
    # The run's working directory and network switch travel with its input, so the input's own checkpoint
    # holds them: a run stopped before its first node resumes in its folder (``start`` keeps them).
    workdir: NotRequired[str]
    network: NotRequired[bool]


class State(InputState, total=False):
    allowed_domains: list[str]  # this thread's domains: the goal's, --allow-domain, "for this thread" answers
    tasks: Annotated[list[Task], merge_tasks]
    batch: list[int]  # ids of the tasks in the current batch
    plan_start: int  # first task id of the latest plan (earlier tasks belong to replaced plans)
    verdicts: list[VerdictEntry]  # reflect's verdicts on the last batch
    decision: Decision
    iteration: int  # batches reflected so far
    replans: int
    llm_calls: Annotated[dict[str, int], add_counts]
    cache_hits: Annotated[int, operator.add]
    errors: Annotated[list[str], operator.add]
    calls: Annotated[list[dict[str, Any]], operator.add]  # one entry per LLM answer: purpose, provider, cached
    summary: str
    status: RunStatus
    resume_after: str | None  # ISO time when waiting_for_quota may resume
    fallback: NotRequired[Fallback | None]


class OutputState(TypedDict, total=False):
    goal: str
    workdir: str
    tasks: list[Task]
    summary: str
    status: RunStatus
    llm_calls: dict[str, int]
    cache_hits: int
    resume_after: str | None
