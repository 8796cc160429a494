"""What a person sees while a batch runs: a live table of its goals (rich ``Live`` in a terminal, redrawn
four times a second; elsewhere one line each time a goal starts or stops), and the final table.

Goals come from a file the user wrote and their states from the runs: always shown as plain text.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from free_llm_agent.runtime.batch_scheduler import GoalState, Scheduler

_STYLE = {"completed": "green", "failed": "red", "error": "red", "busy": "red", "running": "yellow",
          "waiting_for_quota": "cyan", "awaiting_approval": "magenta", "interrupted": "yellow", "pending": "dim"}


def _when(t: float | None) -> str:
    if t is None:
        return ""
    left = t - time.time()
    clock = datetime.fromtimestamp(t, UTC).astimezone().strftime("%H:%M:%S")
    return f"until {clock}" + (f" (in {left:.0f}s)" if 0 < left < 3600 else "")


def goal_table(states: list[GoalState], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    for name, justify in (("line", "right"), ("prio", "right"), ("goal", "left"), ("thread", "left"),
                          ("status", "left"), ("tasks", "right"), ("requests", "right"), ("note", "left")):
        table.add_column(name, justify=justify, overflow="ellipsis", no_wrap=name != "goal",  # type: ignore[arg-type]
                         max_width=48 if name == "goal" else None)
    for s in sorted(states, key=lambda s: (-s.goal.priority, s.goal.line)):
        note = _when(s.resume_after) if s.status == "waiting_for_quota" else (
            s.activity if s.status == "running" else s.note)
        tasks = f"{s.tasks_done}/{s.tasks_total}" if s.tasks_total else ""
        table.add_row(str(s.goal.line), str(s.goal.priority), Text(s.goal.goal), s.goal.thread_id,
                      Text(s.status, _STYLE.get(s.status, "")), tasks, str(s.requests), Text(note or "", "dim"))
    return table


class BatchView:
    """The live table (``live=True``) or one plain line per change."""

    def __init__(self, console: Console, scheduler: Scheduler, *, workers: int, live: bool | None = None) -> None:
        self.console, self.scheduler, self.workers = console, scheduler, workers
        self.started = time.time()
        self._live: Live | None = None
        self._use_live = console.is_terminal if live is None else live
        self._lock = threading.Lock()

    def __enter__(self) -> BatchView:
        if self._use_live:
            self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.console.print(self._render())

    def changed(self, state: GoalState) -> None:
        """A goal started or stopped: a line in a log (the live table redraws by itself)."""
        if self._live is not None:
            return
        with self._lock:
            extra = f" {_when(state.resume_after)}" if state.status == "waiting_for_quota" else (
                f" ({state.note})" if state.note and state.status != "running" else "")
            self.console.print(Text.assemble((f"{time.time() - self.started:6.1f}s ", "dim"),
                                             f"line {state.goal.line} [{state.goal.thread_id}] ",
                                             (state.status, _STYLE.get(state.status, "")), extra))

    def _render(self) -> RenderableType:
        counts = self.scheduler.counts()
        footer = Text.assemble((f"{time.time() - self.started:.0f}s elapsed", "bold"), f" · {self.workers} workers · ",
                               " · ".join(f"{n} {k}" for k, n in sorted(counts.items())),
                               " · Ctrl-C stops (run the batch again to continue)" if self._live else "")
        return Group(goal_table(self.scheduler.states), footer)


def summary_line(counts: dict[str, Any]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
