"""The y / n / edit approval prompt of the CLI (a terminal); see docs/workdir.md, "Approval".

An unchanged or empty edit, or an editor that fails, is not an approval: the prompt asks again.
Ctrl-D (end of input) runs nothing and rejects nothing: the run pauses as ``awaiting_approval``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from free_llm_agent.runtime.runner import Approver


class _Paused(Exception):
    """Ctrl-D at the approval prompt: run nothing, pause the thread."""


#: Held around every read of stdin (both prompts read it through :func:`_ask_line`), and by the domain question for
#: its whole exchange, so the y/n/edit prompt and a domain question never read stdin at the same time: an approval
#: prompt waits for a pending domain question to be answered. Reentrant: the domain question holds it in _ask_line.
_STDIN_LOCK = threading.RLock()


def _ask_line(prompt: str) -> str:
    try:
        with _STDIN_LOCK:
            return input(prompt).strip().lower()
    except EOFError:
        raise _Paused from None


def _show_code(err: Console, code: str, language: str) -> None:
    err.print(Syntax(code, "bash" if language == "shell" else "python", line_numbers=True))


def _edit(err: Console, code: str) -> str | None:
    """The code after $EDITOR, or None when the editor failed or nothing was saved."""
    import click

    try:
        edited = click.edit(code, require_save=True)
    except click.ClickException as exc:
        err.print(f"the editor failed: {exc.format_message()}", style="red", markup=False)
        return None
    return edited


def _show_changes(err: Console, payload: dict[str, Any], undo_hint: Callable[[int], str] | None) -> None:
    """What the attempt that was cut short had changed, and how to take it back before approving."""
    from free_llm_agent.snapshots import describe_all

    changes = payload.get("changes") or []
    if not changes:
        err.print("Its first attempt changed no file.", markup=False)
        return
    err.print("Its first attempt changed:", markup=False)
    for line in describe_all(changes):
        err.print(f"  {line}", markup=False)
    if undo_hint is not None:
        err.print(f"To take them back first: answer Ctrl-D (pause), then {undo_hint(payload['task_id'])}",
                  markup=False, style="dim")


def terminal_approver(progress: Any, err: Console, undo_hint: Callable[[int], str] | None = None) -> Approver:
    def ask(payload: dict[str, Any]) -> dict[str, Any] | None:
        """y/n/edit in a terminal; None (pause the run) without one or on Ctrl-D."""
        if not sys.stdin.isatty():
            return None
        progress.pause()
        try:
            err.rule(escape(f"Task {payload['task_id']}: {payload['task']}"))
            if payload.get("interrupted"):
                err.print("This task was running when the agent stopped (crash or kill); it may have "
                          "done part of its work. Run it again?", style="yellow", markup=False)
                _show_changes(err, payload, undo_hint)
            code = payload["code"]
            _show_code(err, code, payload["language"])
            while True:
                answer = _ask_line("Run this code? [y]es / [n]o / [e]dit: ")
                if answer in ("y", "yes"):
                    progress.mark_shown(payload["task_id"], code)
                    return {"action": "approve"} if code == payload["code"] else {"action": "edit", "code": code}
                if answer in ("n", "no"):
                    return {"action": "reject"}
                if answer in ("e", "edit"):
                    edited = _edit(err, code)
                    if edited is None or not edited.strip() or edited == code:
                        err.print("Nothing changed; nothing runs until you answer y.", markup=False)
                        continue
                    code = edited
                    err.print("Edited code:", markup=False)
                    _show_code(err, code, payload["language"])
        except _Paused:
            err.print("\nNo answer (end of input): the thread is paused, nothing ran.", markup=False)
            return None
        finally:
            progress.resume()

    return ask


def terminal_domain_prompt(progress: Any, err: Console) -> Any:
    """The question the filtering proxy asks about a domain that is not on the allowed list, while a task
    runs: once / for this thread / no. Without a terminal (or on Ctrl-D): no. One question at a time, and never
    while the approval prompt reads stdin (``_STDIN_LOCK``, held for the whole question)."""

    def ask(domain: str) -> str:
        if not sys.stdin.isatty():
            return "no"
        with _STDIN_LOCK:
            progress.pause()
            try:
                err.print(escape(f"The task's code wants to reach {domain}, which is not on the allowed list."))
                while True:
                    answer = _ask_line(f"Allow {domain}? [o]nce / for this [t]hread / [n]o: ")
                    if answer in ("o", "once"):
                        return "once"
                    if answer in ("t", "thread"):
                        return "thread"
                    if answer in ("n", "no", ""):
                        return "no"
            except _Paused:
                return "no"
            finally:
                progress.resume()

    return ask
