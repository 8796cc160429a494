"""What a person sees while a run streams: the plan as a checklist that ticks as tasks
finish, each LLM call with its provider and the quota left, and the elapsed time.

In a terminal this is a rich ``Live`` panel; elsewhere (CI, pipes) one line per event.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

_MARKS = {"pending": "[dim]○[/dim]", "running": "[yellow]▶[/yellow]", "done": "[green]✔[/green]",
          "failed": "[red]✘[/red]", "skipped": "[dim]–[/dim]"}


class Progress:
    def __init__(self, console: Console, router: Any = None, *, live: bool | None = None) -> None:
        self.console, self.router = console, router
        self.started = time.time()
        self.tasks: dict[int, dict[str, str]] = {}
        self.lines: list[str] = []
        self.llm_calls = 0
        self.activity = "starting"
        use_live = console.is_terminal if live is None else live
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=True) if use_live else None

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()  # transient: the live panel is erased ...
            self.console.print(self._render())  # ... and its final state printed once

    def pause(self) -> None:
        """Erase the panel and stop redrawing (e.g. while asking for approval)."""
        if self._live is not None:
            self._live.stop()

    def resume(self) -> None:
        if self._live is not None:
            self._live.start()

    # -- events --------------------------------------------------------------------
    def __call__(self, mode: str, chunk: Any) -> None:
        if mode == "custom" and isinstance(chunk, dict):
            self._custom(chunk)
        elif mode == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                if node.startswith("__"):  # __interrupt__ etc.
                    continue
                self.activity = node
                if isinstance(update, dict):
                    self._update(node, update)
        if self._live is not None:
            self._live.update(self._render())

    def _custom(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "llm_call":
            self.llm_calls += 0 if event["cached"] else 1
            how = "response cache" if event["cached"] else f"{event['provider']}{self._quota_left(event['provider'])}"
            self._log(f"LLM {event['purpose']}: {how}")
        elif kind == "task_running":
            self._task(event["task_id"], status="running")
            self._log(f"▶ task {event['task_id']}: {event['description']}")
        elif kind == "task_finished":
            self._task(event["task_id"], status=event["status"])
            why = f" ({event['error']})" if event.get("error") else ""
            self._log(f"{_MARKS[event['status']]} task {event['task_id']} {event['status']} "
                      f"in {event['duration_s']:.1f}s{why}")
        elif kind == "task_interrupted":
            self._task(event["task_id"], status="pending")
            self._log(f"[yellow]task {event['task_id']} was cut short (crash, kill or Ctrl-C); it runs again only "
                      "after approval[/yellow]")
        elif kind == "task_restarting":
            self._log(f"[yellow]task {event['task_id']} was cut short (crash, kill or Ctrl-C); running it again (--yes)"
                      "[/yellow]")

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
        self.tasks.setdefault(tid, {"description": "", "status": "pending"}).update(fields)

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

    def _log(self, line: str) -> None:
        stamp = f"[dim]{time.time() - self.started:6.1f}s[/dim] "
        if self._live is None:
            self.console.print(stamp + line)
        self.lines = [*self.lines, stamp + line][-8:]

    def _render(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        for tid, t in sorted(self.tasks.items()):
            table.add_row(_MARKS.get(t["status"], "?"), f"{tid}.", t["description"])
        footer = Text.from_markup(f"[bold]{self.activity}[/bold] · {time.time() - self.started:.0f}s elapsed · "
                                  f"{self.llm_calls} LLM calls · Ctrl-C stops (resume later)")
        return Group(table, *(Text.from_markup(line) for line in self.lines), footer)
