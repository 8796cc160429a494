"""The CLI's reporting commands: threads, show, usage, check and graph (doctor: cli/doctor_view.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from free_llm_agent.cli.commands_undo import print_changes, print_diff, undone_of, with_changes
from free_llm_agent.cli.support import (
    BadInput,
    config_source_text,
    err,
    hint,
    out,
    output_file,
    router_for,
    runner_for,
    write_failed,
)


def cmd_threads(args: argparse.Namespace) -> int:
    runner = runner_for(args)
    try:
        rows, complete = runner.threads()
    finally:
        runner.close()
    damaged = [r for r in rows if r.status == "damaged"]
    if damaged or not complete:
        what = f"{len(damaged)} thread(s) cannot be read" if complete else "some threads may be missing"
        fix = (f"Details: {hint(args, 'doctor')}" if runner.database_url  # nothing to move aside in a database
               else f"Repair: {hint(args, 'doctor', '--repair')}")
        err.print(f"warning: {runner.checkpoints.label} is damaged: {what}; the others work. {fix}",
                  style="yellow", markup=False)
    done = [sum(t.get("status") == "done" for t in r.tasks) for r in rows]
    if args.json:
        print(json.dumps({"threads": [
            {"thread_id": r.thread_id, "status": r.status, "goal": r.goal, "tasks_done": d, "tasks": len(r.tasks),
             "resume_after": r.resume_after, "started_at": r.started_at, "updated_at": r.updated_at,
             "workdir": r.workdir, "holder": r.holder} for r, d in zip(rows, done, strict=True)]},
            ensure_ascii=False))
        return 0
    table = Table("thread", "status", "tasks done", "started", "updated", "folder", "goal")
    now = datetime.now().astimezone()
    for r, d in zip(rows, done, strict=True):
        table.add_row(escape(r.thread_id), r.status, f"{d}/{len(r.tasks)}", when(r.started_at, now),
                      when(r.updated_at, now), Text(folder(r.workdir)), Text(r.goal[:60]))  # never markup
    out.print(table)
    return 0


def when(iso: str | None, now: datetime) -> str:
    """An ISO time as a person reads it, in local time: ``14:03`` today, ``yesterday 14:03``, ``Mon 14:03`` this
    week, ``3 Mar 14:03`` this year, ``2024-03-03`` before."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso).astimezone(now.tzinfo)
    except ValueError:
        return iso
    days = (now.date() - at.date()).days
    clock = at.strftime("%H:%M")
    if days == 0:
        return clock
    if days == 1:
        return f"yesterday {clock}"
    if 1 < days < 7:
        return f"{at.strftime('%a')} {clock}"
    if at.year == now.year:
        return f"{at.day} {at.strftime('%b')} {clock}"
    return at.strftime("%Y-%m-%d")


def folder(path: str | None) -> str:
    """A working directory, the user's home folder written as ``~``."""
    if not path:
        return ""
    home = str(Path.home())
    return "~" + path[len(home):] if path == home or path.startswith(home + os.sep) else path


# How a task's latest code was decided (``Task.approval``), as ``show`` says it.
_APPROVAL_TEXT = {"user": "approved by you", "edited": "edited and approved by you", "auto": "approved by --yes",
                  "rejected": "rejected by you", "blocked": "blocked by the safety check", "no code": "no code"}
_RAN_WITH_APPROVAL = ("user", "edited", "auto")
_UNJUDGED = "(judged by its exit status: no readable verdict)"


def cmd_show(args: argparse.Namespace) -> int:
    runner = runner_for(args)
    try:
        steps = runner.history(args.thread_id)
        result = runner.result(args.thread_id)
        values = dict(runner.graph.get_state(runner.config_for(args.thread_id)).values)
    finally:
        runner.close()
    calls = list(values.get("calls", []))
    if args.task is not None and not args.diff:
        raise BadInput("--task N goes with --diff: show THREAD --diff --task N")
    if args.diff:
        return print_diff(args, result.tasks)
    if args.json:
        tasks, undos = with_changes(args, [{**t, "approved": t.get("approval") in _RAN_WITH_APPROVAL}
                                           for t in result.tasks])
        data = {**result.to_json(), "workdir": result.workdir, "tasks": tasks, "steps": steps, "calls": calls,
                "errors": values.get("errors", []), "undos": undos}
        print(json.dumps(data, ensure_ascii=False, default=str))
        return 0
    out.print(f"[bold]{escape(result.goal)}[/bold]  thread {result.thread_id}  status {result.status}")
    if result.workdir:
        out.print(f"working directory: {result.workdir}", markup=False)
    out.print("[bold]steps:[/bold] " + " → ".join(",".join(s["next"]) for s in steps if s["next"]))
    out.print("[bold]LLM calls:[/bold] " + (", ".join(
        f"{c['purpose']}={'cache' if c['cached'] else c['provider']}" for c in calls) or "none"))
    undone = undone_of(args)
    for t in result.tasks:
        approval = _APPROVAL_TEXT.get(str(t.get("approval", "")), "not yet approved")
        title = (f"Task {t['id']} [{t.get('status')}] {t.get('description', '')} "
                 f"(runs: {t.get('attempts', 0)}, {approval})")
        out.rule(escape(title))
        if t.get("unjudged"):  # reflect read no verdict for it in any channel of the judge's answer
            out.print(_UNJUDGED, markup=False, style="yellow")
        if t.get("code"):
            out.print(Syntax(t["code"], "bash" if t.get("language") == "shell" else "python"))
        if t.get("output"):
            out.print(t["output"].rstrip()[-2000:], markup=False)
        if t.get("error"):
            out.print(escape(t["error"]), style="red")
        print_changes(args, t, undone)
    if result.summary:
        out.rule("summary")
        out.print(result.summary, markup=False)
    return 0


def _bar(used: int, limit: int | None) -> Any:
    if not limit:
        return str(used)
    table = Table.grid(padding=(0, 1))
    table.add_row(ProgressBar(total=limit, completed=min(used, limit), width=12), f"{used}/{limit}")
    return table



def _rates(answers: dict[str, dict[str, Any]]) -> str:
    """``plan 90% (9/10)`` per purpose: the usable-at-once share of the last graded answers."""
    return "\n".join(f"{escape(purpose)} {round(100 * (g['rate'] or 0))}% ({g['usable']}/"
                     f"{g['usable'] + g['repaired'] + g['unusable']})" for purpose, g in answers.items())


def cmd_usage(args: argparse.Namespace) -> int:
    from free_llm_agent.providers.report import daily_requests, plot_daily_requests, usage_report

    router = router_for(args)
    report = usage_report(router)
    if args.plot:
        plot = output_file("--plot", args.plot)
        try:
            plot_daily_requests(daily_requests(router), str(plot))
        except (OSError, ValueError) as exc:  # unwritable, or a suffix matplotlib has no format for
            raise write_failed("--plot", plot, exc) from None
    if args.json:
        print(json.dumps(report))
        return 0
    table = Table("provider", "minute", "day", "month", "cooldown", "recommendation", "usable at once")
    now = datetime.now(UTC)
    for name, row in report["providers"].items():
        lim = row["limits"]
        cooldown = ""
        if row["cooldown_until"]:
            left = int((datetime.fromisoformat(row["cooldown_until"]) - now).total_seconds())
            cooldown = f"{left // 60}m {left % 60}s left ({row['cooldown_reason']})"
        state = "" if row["has_key"] else " [dim](no key)[/dim]" if row["enabled"] else " [dim](disabled)[/dim]"
        table.add_row(escape(name) + state, _bar(row["requests_minute"], lim.get("requests_per_minute")),
                      _bar(row["requests_day"], lim.get("requests_per_day")),
                      _bar(row["requests_month"], lim.get("requests_per_month")), cooldown,
                      row["recommendation"] if row["has_key"] else "-",
                      _rates(row["answers"]))
    out.print(table)
    if args.plot:
        err.print(f"wrote {args.plot}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from free_llm_agent.providers.report import check_provider
    from free_llm_agent.runtime.deps import sandbox_report

    router = router_for(args)
    started = time.time()
    rows = [check_provider(router, name) for name, cfg in router.config.providers.items()
            if cfg.enabled]
    sandbox = sandbox_report(router)
    config = {"dir": str(router.config.config_dir), "source": router.config.config_source}
    if args.json:
        print(json.dumps({"providers": rows, "sandbox": sandbox, "config": config,
                          "seconds": round(time.time() - started, 2)}))
    else:
        out.print(f"{'config':<20} {config['dir']}  ({config_source_text(args, config['source'])})", markup=False)
        for r in rows:
            no_key = not r["ok"] and str(r["reason"]).startswith("no key")
            mark = "[green]ok[/green]   " if r["ok"] else "[dim]no key[/dim]" if no_key else "[red]error[/red]"
            ms = f"{r['latency_ms']:>6} ms" if r["latency_ms"] is not None else " " * 9
            out.print(f"{escape(r['provider']):<20} {mark} {ms}  {escape(r['reason'])}")
        out.print(f"{'sandbox':<20} {'[green]on[/green]   ' if sandbox['active'] else '[yellow]off[/yellow]  '}"
                  f"{' ' * 10}{escape(sandbox['detail'])}")
        if "network" in sandbox:
            for label, value in (("network", f"{sandbox['network']['mode']}: {sandbox['network']['detail']}"),
                                 ("seccomp", sandbox["seccomp"]), ("user namespaces", sandbox["user_namespaces"]),
                                 *((f"limit: {k}", v) for k, v in sandbox["limits"].items())):
                out.print(f"  {label:<18} {escape(value)}")
    return 0 if any(r["ok"] for r in rows) else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from free_llm_agent.graph.workflow import graph, to_dot

    drawable = graph.get_graph()
    if args.format == "mermaid":
        print(drawable.draw_mermaid())
        return 0
    output = output_file("-o", args.output)
    dot = shutil.which("dot")
    if dot is None:
        raise BadInput("--format png needs Graphviz's 'dot' (apt-get install graphviz / brew install graphviz); "
                       "--format mermaid works without it")
    png = subprocess.run([dot, "-Tpng"], input=to_dot(drawable).encode(), capture_output=True, check=False)
    if png.returncode != 0:
        raise BadInput(f"dot failed: {png.stderr.decode(errors='replace').strip()}")
    try:
        output.write_bytes(png.stdout)
    except OSError as exc:
        raise write_failed("-o", output, exc) from None
    err.print(f"wrote {args.output}")
    return 0
