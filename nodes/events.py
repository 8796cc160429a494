"""What the nodes tell a watcher while a run goes (LangGraph's ``custom`` stream mode): the CLI's progress
panel (``cli/progress.py``) and Studio's stream show them. One TypedDict per event, told apart by ``event``."""

from __future__ import annotations

import contextlib
from typing import Literal, NotRequired, TypedDict

from langgraph.config import get_stream_writer

from free_llm_agent.graph.state import Language, TaskStatus
from free_llm_agent.snapshots.changes import FileChange


class LlmCall(TypedDict):
    event: Literal["llm_call"]
    purpose: str  # plan, code, reflect (" (repair)" for a repair prompt)
    provider: str
    model: str
    cached: bool


class TaskRunning(TypedDict):
    event: Literal["task_running"]
    task_id: int
    description: str
    language: Language
    code: str


class TaskOutput(TypedDict):
    """What the running task printed since the last such event: whole lines, each ending in ``"\\n"`` (or
    ``"\\r"``: a line a progress bar redraws), as printed — rich markup and escape sequences included, so a
    watcher shows them as text. At most ten a second; the task's result holds its whole (capped) output."""

    event: Literal["task_output"]
    task_id: int
    text: str


class TaskFinished(TypedDict):
    event: Literal["task_finished"]
    task_id: int
    status: TaskStatus
    error: str
    duration_s: float
    changes: NotRequired[list[FileChange] | None]  # what its code did to the folder (None: snapshots are off)


class TaskInterrupted(TypedDict):
    """A crash cut the task's last run short: it runs again only after approval."""

    event: Literal["task_interrupted"]
    task_id: int
    description: str
    changes: NotRequired[list[FileChange] | None]  # what the attempt had changed when it was cut short


class TaskRestarting(TypedDict):
    """As :class:`TaskInterrupted`, with ``--yes``: it runs again at once."""

    event: Literal["task_restarting"]
    task_id: int
    description: str
    changes: NotRequired[list[FileChange] | None]


ProgressEvent = LlmCall | TaskRunning | TaskOutput | TaskFinished | TaskInterrupted | TaskRestarting


def emit(event: ProgressEvent) -> None:
    """Send ``event`` to the run's watchers (nothing outside a graph run, e.g. a node's unit test)."""
    with contextlib.suppress(RuntimeError):
        get_stream_writer()(event)
