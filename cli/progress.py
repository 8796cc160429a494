"""What a person sees while a run streams: the plan as a checklist that ticks as tasks
finish, each LLM call with its provider and the quota left, the code that runs, the last
lines the running task printed, and the elapsed time.

In a terminal this is a rich ``Live`` panel redrawn four times a second (so its clock
ticks while a task runs); elsewhere (CI, pipes) one line per event, and the task's output
line by line (at most ``LOG_LINES`` a task). Task text, errors, code and output come from
an LLM, the user or the code: they are always rendered as plain text, never as rich
markup, so a description such as ``use [/x] here`` prints as written; the output's control
characters (escape sequences) and bidirectional controls are shown as escapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from free_llm_agent.cli.support import printable

if TYPE_CHECKING:
    from free_llm_agent.nodes.events import ProgressEvent
    from free_llm_agent.runtime.waiting import WaitEvent

_MARKS: dict[str, tuple[str, str]] = {"pending": ("○", "dim"), "running": ("▶", "yellow"), "done": ("✔", "green"),
                                      "failed": ("✘", "red"), "skipped": ("–", "dim")}
Part = str | tuple[str, str]  # plain text, or (text, style)
PANEL_LINES = 6  # the running task's last lines in the live panel
LOG_LINES = 200  # a task's output lines printed without a terminal (then a note: its result has the rest)
LINE_CHARS = 400  # a line of output is cut there (the panel cuts it again to the terminal's width)


def _mark(status: str) -> tuple[str, str]:
    return _MARKS.get(status, ("?", ""))


class Progress:
    def __init__(self, console: Console, router: Any = None, *, live: bool | None = None) -> None:
        self.console, self.router = console, router
        self.started = time.time()
        self.tasks: dict[int, dict[str, str]] = {}
        self.lines: list[Text] = []
        self.llm_calls = 0
        self.activity = "starting"
        self._shown: set[tuple[int, str]] = set()  # (task id, code) already printed to the scrollback
        self.output: tuple[int, tuple[str, ...], bool] | None = None  # running task: its last lines, last one open
        self._logged: dict[int, int] = {}  # task id -> output lines printed (without a terminal)
        self._use_live = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._waiting_until: float | None = None  # a quota wait's end: the footer counts down to it

    def _new_live(self) -> Live:
        # ``get_renderable``: every refresh re-renders, so the clock ticks between events.
        return Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=True)

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Progress:
        self.resume()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.pause()  # transient: the live panel is erased ...
            self.console.print(self._render())  # ... and its final state printed once

    def pause(self) -> None:
        """Erase the panel and stop redrawing (e.g. while asking for approval)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def resume(self) -> None:
        """Draw the panel again below whatever was printed meanwhile. A fresh ``Live``: a restarted one
        would move the cursor up by its old height and overwrite the lines printed while it was paused
        (the approved code)."""
        if self._use_live and self._live is None:
            self._live = self._new_live()
            self._live.start()

    def seed(self, tasks: Iterable[dict[str, Any]]) -> None:
        """Show a resumed thread's checklist (descriptions and statuses) before its first event."""
        for t in tasks:
            self._task(int(t["id"]), description=str(t.get("description", "")), status=str(t.get("status", "pending")))
        self._refresh()

    def mark_shown(self, task_id: int, code: str) -> None:
        """The approval prompt printed this code; do not print it again when it runs."""
        self._shown.add((task_id, code))

    # -- events --------------------------------------------------------------------
    def __call__(self, mode: str, chunk: Any) -> None:
        if mode == "custom" and isinstance(chunk, dict):
            self._custom(cast("ProgressEvent", chunk))
        elif mode == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                if node.startswith("__"):  # __interrupt__ etc.
                    continue
                self.activity = node
                if isinstance(update, dict):
                    self._update(node, update)
        if not (mode == "custom" and isinstance(chunk, dict) and chunk.get("event") == "task_output"):
            self._refresh()  # output: the next redraw (four a second) shows it

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _custom(self, event: ProgressEvent) -> None:
        if event["event"] == "llm_call":
            self.llm_calls += 0 if event["cached"] else 1
            how = "response cache" if event["cached"] else f"{event['provider']}{self._quota_left(event['provider'])}"
            self._log(f"LLM {event['purpose']}: {how}")
        elif event["event"] == "task_running":
            tid = event["task_id"]
            self._task(tid, status="running", description=event["description"])
            self.activity = f"task {tid}"
            self._log(f"▶ task {tid}: {event['description']}")
            self._print_code(tid, event["code"], event["language"])
            self.output = (tid, (), False)
            self._logged.pop(tid, None)  # a new attempt: its own LOG_LINES
        elif event["event"] == "task_output":
            self._output(event["task_id"], event["text"])
        elif event["event"] == "task_finished":
            self.output = None
            self._task(event["task_id"], status=event["status"])
            why = f" ({event['error']})" if event["error"] else ""
            self._log(_mark(event["status"]), f" task {event['task_id']} {event['status']} "
                      f"in {event['duration_s']:.1f}s{why}")
            self._print_changes(event["task_id"], event.get("changes"), "changed")
        elif event["event"] == "task_interrupted":
            self.output = None
            self._task(event["task_id"], status="pending")
            self._log((f"task {event['task_id']} was cut short (crash, kill or Ctrl-C); it runs again only after "
                       "approval", "yellow"))
            self._print_changes(event["task_id"], event.get("changes"), "had changed when it was cut short")
        elif event["event"] == "task_restarting":
            self._log((f"task {event['task_id']} was cut short (crash, kill or Ctrl-C); running it again (--yes)",
                       "yellow"))  # what it had changed was printed with task_interrupted, just before

    def wait_event(self, event: WaitEvent) -> None:
        """A quota wait (``run --wait``): the footer counts down to its end; lines say when it starts and ends
        (and, without a live panel, how long is left every minute)."""
        from datetime import datetime

        from free_llm_agent.runtime.waiting import left_text

        until = "" if event.until is None else datetime.fromtimestamp(event.until).strftime("%H:%M:%S")
        self._waiting_until = event.until if event.phase in ("waiting", "tick") else None
        if event.phase == "waiting":
            self.activity = "waiting for quota"
            self._log((f"waiting for quota until {until} ({left_text(event.left_s)}); Ctrl-C leaves the thread "
                       "paused", "yellow"))
        elif event.phase == "tick":
            if self._live is None:
                self._log(f"waiting for quota: {left_text(event.left_s)} left")
        elif event.phase == "resuming":
            self.activity = "resuming"
            self._log(f"quota free again after {left_text(event.waited_s)} of waiting: resuming")
        elif event.phase in ("over_budget", "gave_up"):
            flag = " (--wait-max)" if event.phase == "over_budget" else ""
            self._log((f"not waiting: {event.reason}{flag}", "yellow"))
        else:
            self._log((f"stopped waiting ({event.reason})", "yellow"))
        self._refresh()

    def _output(self, tid: int, text: str) -> None:
        """Lines the running task printed: kept for the panel (the last few), or printed without a terminal."""
        tail, open_end = (self.output[1], self.output[2]) if self.output and self.output[0] == tid else ((), False)
        lines = list(tail)
        for raw in text.splitlines(keepends=True):
            line = printable(raw.rstrip("\r\n").expandtabs(4))
            if not line.strip():
                continue
            line = line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…"
            if open_end and lines:  # the last line ended in "\r": a progress bar redraws it
                lines[-1] = line
            else:
                lines.append(line)
            open_end = raw.endswith("\r")
            if not self._use_live and not open_end:  # a terminal: the panel shows them (paused: after)
                self._log_output(tid, line)
        self.output = (tid, tuple(lines[-PANEL_LINES:]), open_end)

    def _log_output(self, tid: int, line: str) -> None:
        count = self._logged[tid] = self._logged.get(tid, 0) + 1
        if count <= LOG_LINES:
            self.console.print(Text.assemble((f"  task {tid} │ ", "dim"), line), soft_wrap=True)
        elif count == LOG_LINES + 1:
            self.console.print(Text(f"  task {tid} │ … (more output: the task's result has it)", style="dim"))

    def _print_changes(self, tid: Any, changes: Any, what: str) -> None:
        """The files a task created, modified and deleted, kept in the scrollback (as its code is)."""
        if changes is None:  # snapshots off
            return
        from free_llm_agent.snapshots import describe_all

        if not changes:
            self.console.print(Text(f"  task {tid} changed no file", style="dim"))
            return
        self.console.print(Text(f"  task {tid} {what}:", style="dim"))
        for line in describe_all(changes):
            self.console.print(Text(f"    {line}"), soft_wrap=True)

    def _print_code(self, tid: int, code: Any, language: str) -> None:
        """The code that runs stays in the scrollback (with --yes nobody was asked to read it first)."""
        if not isinstance(code, str) or not code.strip() or (tid, code) in self._shown:
            return
        self._shown.add((tid, code))
        self.console.print(Text(f"task {tid} runs ({language}):", style="dim"))
        if self.console.is_terminal:
            self.console.print(Syntax(code, "bash" if language == "shell" else "python"))
        else:  # a log: the code as written, without the highlighter's padding to the full width
            self.console.print(Text(code.rstrip("\n")), soft_wrap=True)

    def _update(self, node: str, update: dict[str, Any]) -> None:
        for t in update.get("tasks") or []:
            self._task(t["id"], **{k: str(v) for k, v in t.items() if k in ("description", "status")})
        if node == "plan" and update.get("tasks"):
            self._log("plan: " + "; ".join(f"{t['id']}. {t['description']}" for t in update["tasks"]
                                           if t.get("status") == "pending"))
        elif node == "reflect" and update.get("decision"):
            self._log(f"reflect: {update['decision']}")
        elif node == "fallback" and update.get("status") == "waiting_for_quota":
            self._log(f"every provider is out of quota until {update.get('resume_after')}")
        elif node == "finalize":
            self._log("finalize")

    def _task(self, tid: int, **fields: str) -> None:
        entry = self.tasks.setdefault(tid, {"description": "", "status": "pending"})
        entry.update({k: v for k, v in fields.items() if v or k != "description"})  # keep a known description

    def _quota_left(self, provider: str) -> str:
        if self.router is None or provider not in self.router.config.providers:
            return ""
        lim = self.router.config.limit_for(provider)
        used = self.router.quota.counts(provider, time.time())
        for per in ("day", "month"):
            limit = getattr(lim, f"requests_per_{per}")
            if limit:
                return f", {limit - used[f'requests_{per}']} requests left {'today' if per == 'day' else 'this month'}"
        return ""

    def _log(self, *parts: Part) -> None:
        line = Text.assemble((f"{time.time() - self.started:6.1f}s ", "dim"), *parts)
        if self._live is None:
            self.console.print(line)
        self.lines = [*self.lines, line][-8:]

    def _render(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        for tid, t in sorted(self.tasks.items()):
            table.add_row(Text(*_mark(t["status"])), f"{tid}.", Text(t["description"]))
        if self._waiting_until is not None:
            from free_llm_agent.runtime.waiting import left_text

            until = time.strftime("%H:%M:%S", time.localtime(self._waiting_until))
            footer = Text.assemble(("waiting for quota", "bold yellow"),
                                   f" · {left_text(self._waiting_until - time.time())} left (until {until}) · "
                                   f"{self.llm_calls} LLM calls · Ctrl-C pauses (resume later)")
        else:
            footer = Text.assemble((self.activity, "bold"), f" · {time.time() - self.started:.0f}s elapsed · "
                                   f"{self.llm_calls} LLM calls · Ctrl-C stops (resume later)")
        output = self.output  # one read: events replace it while the panel is drawn
        shown = [Text.assemble(("  │ ", "dim"), line, no_wrap=True, overflow="ellipsis")
                 for line in (output[1] if output else ())]
        return Group(table, *self.lines, *shown, footer)
