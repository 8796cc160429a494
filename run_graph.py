#!/usr/bin/env python
"""free-llm-agent CLI: run / resume / threads / show / usage / check / graph / doctor (see README)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from config import ConfigError, load_config, load_env_file, resolve_home

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # pipes: no wrap at 80


class BadInput(Exception):
    """Wrong arguments: message printed, exit 2."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-dir", default=argparse.SUPPRESS, help="directory with providers.yaml/limits.yaml")
    common.add_argument("--home", default=argparse.SUPPRESS, help="state directory (default ~/.free-llm-agent)")
    p = argparse.ArgumentParser(prog="run_graph.py", parents=[common], description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="plan + execute + reflect until done")
    run.add_argument("goal")
    run.add_argument("--thread-id")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workdir", metavar="DIR", help="folder the code works in (default: the current one)")
    where.add_argument("--scratch", action="store_true", help="work in a fresh folder under the home instead")
    run.add_argument("--no-network", action="store_true", help="generated code gets no network (sandbox)")
    resume = sub.add_parser("resume", parents=[common], help="continue a paused or interrupted thread")
    resume.add_argument("thread_id")
    for sp in (run, resume):
        sp.add_argument("--yes", "-y", action="store_true", help="run generated code without asking")
        sp.add_argument("--json", action="store_true", help="print one JSON object, no progress")
        sp.add_argument("--offline", action="store_true", help="use only local providers (Ollama, llama.cpp …)")
    sub.add_parser("threads", parents=[common], help="list threads").add_argument("--json", action="store_true")
    show = sub.add_parser("show", parents=[common], help="the history of one thread")
    show.add_argument("thread_id")
    show.add_argument("--json", action="store_true")
    usage = sub.add_parser("usage", parents=[common], help="quota used/left per provider")
    usage.add_argument("--json", action="store_true")
    usage.add_argument("--plot", metavar="FILE.png", help="also write a chart of requests per provider per day")
    sub.add_parser("check", parents=[common], help="one tiny request per provider").add_argument(
        "--json", action="store_true")
    g = sub.add_parser("graph", parents=[common], help="draw the graph")
    g.add_argument("--format", choices=["mermaid", "png"], default="mermaid")
    g.add_argument("--output", "-o", default="graph.png", help="file for --format png")
    doctor = sub.add_parser("doctor", parents=[common], help="check the home and its databases")
    doctor.add_argument("--repair", action="store_true", help="move damaged files aside, keeping what is readable")
    doctor.add_argument("--json", action="store_true")
    return p


def _router(args: argparse.Namespace, offline: bool = False) -> Any:
    from providers import NoUsableProvider, Router

    config = load_config(getattr(args, "config_dir", None))
    try:
        router, notices = Router.from_config(config, resolve_home(getattr(args, "home", None)), offline=offline)
    except NoUsableProvider:
        if not offline:
            raise
        router = None
    if offline and (router is None or not router.candidates("general")):
        raise BadInput("--offline needs a local provider: enable ollama (or another entry with local: true) "
                       f"in {config.config_dir / 'providers.yaml'}")
    if not getattr(args, "json", False):
        for notice in notices:
            err.print(notice, style="dim", markup=False)
    return router


def _resume_hint(args: argparse.Namespace, thread_id: str) -> str:
    """The resume command with every global flag that was given, so it can be copied as is."""
    return _hint(args, "resume", shlex.quote(thread_id))


def _hint(args: argparse.Namespace, *words: str) -> str:
    flags = [f"--{name.replace('_', '-')} {shlex.quote(str(getattr(args, name)))}"
             for name in ("config_dir", "home") if getattr(args, name, None)]
    return " ".join(["uv run run_graph.py", *flags, *words])


def _print_result(result: Any, args: argparse.Namespace) -> None:
    """The summary on stdout (``run … > out.txt`` keeps it); status lines and hints on stderr."""
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    if result.summary:
        out.print(result.summary, markup=False)
    err.print(f"[bold]status:[/bold] {result.status}   thread: {result.thread_id}   "
              + escape(f"LLM calls: {result.llm_calls or {}}   cache hits: {result.cache_hits}"))
    if result.status == "waiting_for_quota":
        err.print(f"Every provider is out of quota; after {result.resume_after} run: "
                  f"{_resume_hint(args, result.thread_id)}", markup=False)
    elif result.status == "awaiting_approval":
        err.print(f"Waiting for approval: {_resume_hint(args, result.thread_id)}  (--yes approves all)",
                  markup=False)
    if result.workdir:
        err.print(f"working directory: {result.workdir}", markup=False)


def _check_sandbox(runner: Any, router: Any) -> None:
    """Resolve the sandbox before anything runs: required and missing is exit 2 (auto and missing warns)."""
    from tools.sandbox import SandboxUnavailable

    try:
        runner.deps.sandbox()
    except SandboxUnavailable as exc:
        raise BadInput(f"{router.config.config_dir / 'limits.yaml'}: {exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from graph.approval_prompt import terminal_approver
    from graph.context import Context
    from graph.guard import ThreadBusy
    from graph.progress import Progress
    from graph.runner import Runner
    from providers import QuotaAwareChatModel
    from tools.workspace import WorkdirError, check_thread_id

    if args.command == "run" and not args.goal.strip():
        raise BadInput('the goal is empty: give it as text, e.g. run "count the words in README.md"')
    if args.command == "run" and args.thread_id is not None:
        try:
            check_thread_id(args.thread_id)
        except ValueError as exc:
            raise BadInput(f"--thread-id: {exc}") from None
    router = _router(args, offline=args.offline)
    opt = router.config.limits.optimization
    context = Context(auto_approve=args.yes, max_batch_size=opt.max_batch_size,
                      network=not getattr(args, "no_network", False))
    runner = Runner(router.home, llm=QuotaAwareChatModel(router=router), context=context)
    try:
        if args.command == "run":
            args.thread_id = args.thread_id or uuid.uuid4().hex[:12]
            if runner.graph.get_state(runner.config_for(args.thread_id)).values:
                raise BadInput(f"thread {args.thread_id!r} already exists: continue it with "
                               f"'resume {args.thread_id}' or pick another --thread-id")
            if not args.scratch:
                try:
                    context.workdir = str(runner.deps.workdir(args.workdir or os.getcwd(), args.thread_id))
                except WorkdirError as exc:
                    raise BadInput(str(exc)) from None
        _check_sandbox(runner, router)
    except BaseException:
        runner.close()
        raise
    def stop(signum: int, frame: Any) -> None:  # Ctrl-C: the task in flight stops now, as interrupted
        runner.deps.abort_all()
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGINT, stop)
    progress = Progress(err, router, live=False if args.json else None)
    if args.command == "resume" and not args.json:
        progress.seed(runner.result(args.thread_id).tasks)  # the checklist with its descriptions from the start
    if not args.json:
        err.print(f"thread [bold]{args.thread_id}[/bold]")
    try:
        with progress:
            listener = None if args.json else progress
            approver = None if args.json else terminal_approver(progress, err)
            if args.command == "run":
                result = runner.run(args.goal, args.thread_id, approver=approver, listener=listener)
            else:
                result = runner.resume(args.thread_id, approver=approver, listener=listener)
    except ThreadBusy as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        err.print(f"\nStopped. Nothing finished is lost; continue with: {_resume_hint(args, args.thread_id)}",
                  markup=False)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        runner.close()
    _print_result(result, args)
    return result.exit_code


def cmd_threads(args: argparse.Namespace) -> int:
    from graph.runner import Runner

    runner = Runner(resolve_home(getattr(args, "home", None)))
    try:
        rows, complete = runner.threads()
    finally:
        runner.close()
    damaged = [r for r in rows if r.status == "damaged"]
    if damaged or not complete:
        what = f"{len(damaged)} thread(s) cannot be read" if complete else "some threads may be missing"
        err.print(f"warning: {runner.home / 'checkpoints.db'} is damaged: {what}; the others work. "
                  f"Repair: {_hint(args, 'doctor', '--repair')}", style="yellow", markup=False)
    done = [sum(t.get("status") == "done" for t in r.tasks) for r in rows]
    if args.json:
        print(json.dumps({"threads": [
            {"thread_id": r.thread_id, "status": r.status, "goal": r.goal, "tasks_done": d, "tasks": len(r.tasks),
             "resume_after": r.resume_after} for r, d in zip(rows, done, strict=True)]}, ensure_ascii=False))
        return 0
    table = Table("thread", "status", "tasks done", "goal")
    for r, d in zip(rows, done, strict=True):
        table.add_row(escape(r.thread_id), r.status, f"{d}/{len(r.tasks)}", Text(r.goal[:60]))  # never markup
    out.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from graph.runner import Runner

    runner = Runner(resolve_home(getattr(args, "home", None)))
    try:
        steps = runner.history(args.thread_id)
        result = runner.result(args.thread_id)
        values = dict(runner.graph.get_state(runner.config_for(args.thread_id)).values)
    finally:
        runner.close()
    calls = list(values.get("calls", []))
    if args.json:
        data = {**result.to_json(), "workdir": result.workdir, "tasks": result.tasks, "steps": steps, "calls": calls,
                "errors": values.get("errors", [])}
        print(json.dumps(data, ensure_ascii=False, default=str))
        return 0
    out.print(f"[bold]{escape(result.goal)}[/bold]  thread {result.thread_id}  status {result.status}")
    if result.workdir:
        out.print(f"working directory: {result.workdir}", markup=False)
    out.print("[bold]steps:[/bold] " + " → ".join(",".join(s["next"]) for s in steps if s["next"]))
    out.print("[bold]LLM calls:[/bold] " + (", ".join(
        f"{c['purpose']}={'cache' if c['cached'] else c['provider']}" for c in calls) or "none"))
    for t in result.tasks:
        title = f"Task {t['id']} [{t.get('status')}] {t.get('description', '')} (runs: {t.get('attempts', 0)})"
        out.rule(escape(title))
        if t.get("code"):
            out.print(Syntax(t["code"], "bash" if t.get("language") == "shell" else "python"))
        if t.get("output"):
            out.print(t["output"].rstrip()[-2000:], markup=False)
        if t.get("error"):
            out.print(escape(t["error"]), style="red")
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


def _output_file(flag: str, value: str) -> Path:
    """Where ``--plot`` / ``-o`` writes, checked before any work: its folder must exist."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise BadInput(f"{flag} {value}: that is a folder; give a file name, e.g. {path / 'out.png'}")
    if not path.parent.is_dir():
        raise BadInput(f"{flag} {value}: the folder {path.parent} does not exist; create it "
                       f"(mkdir -p {shlex.quote(str(path.parent))}) or choose another path")
    return path


def _write_failed(flag: str, path: Path, exc: Exception) -> BadInput:
    return BadInput(f"{flag} {path}: cannot write it ({exc}); choose another path")


def cmd_usage(args: argparse.Namespace) -> int:
    from providers.report import daily_requests, plot_daily_requests, usage_report

    router = _router(args)
    report = usage_report(router)
    if args.plot:
        plot = _output_file("--plot", args.plot)
        try:
            plot_daily_requests(daily_requests(router), str(plot))
        except (OSError, ValueError) as exc:  # unwritable, or a suffix matplotlib has no format for
            raise _write_failed("--plot", plot, exc) from None
    if args.json:
        print(json.dumps(report))
        return 0
    table = Table("provider", "minute", "day", "month", "cooldown", "recommendation")
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
                      _bar(row["requests_month"], lim.get("requests_per_month")), cooldown, row["recommendation"])
    out.print(table)
    if args.plot:
        err.print(f"wrote {args.plot}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from graph.deps import sandbox_report
    from providers.report import check_provider

    router = _router(args)
    started = time.time()
    rows = [check_provider(router, name) for name, cfg in router.config.providers.items()
            if cfg.enabled]
    sandbox = sandbox_report(router)
    if args.json:
        print(json.dumps({"providers": rows, "sandbox": sandbox, "seconds": round(time.time() - started, 2)}))
    else:
        for r in rows:
            mark = "[green]ok[/green]   " if r["ok"] else "[red]error[/red]"
            ms = f"{r['latency_ms']:>6} ms" if r["latency_ms"] is not None else " " * 9
            out.print(f"{r['provider']:<20} {mark} {ms}  {escape(r['reason'])}")
        out.print(f"{'sandbox':<20} {'[green]on[/green]   ' if sandbox['active'] else '[yellow]off[/yellow]  '}"
                  f"{' ' * 10}{escape(sandbox['detail'])}")
    return 0 if any(r["ok"] for r in rows) else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from graph import graph
    from graph.workflow import to_dot

    drawable = graph.get_graph()
    if args.format == "mermaid":
        print(drawable.draw_mermaid())
        return 0
    output = _output_file("-o", args.output)
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
        raise _write_failed("-o", output, exc) from None
    err.print(f"wrote {args.output}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from graph.doctor import print_report, run_doctor

    report = run_doctor(resolve_home(getattr(args, "home", None)), repair=args.repair)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report, out, _hint(args, "doctor", "--repair"))
    return report.exit_code


COMMANDS = {"run": cmd_run, "resume": cmd_run, "threads": cmd_threads, "show": cmd_show, "usage": cmd_usage,
            "check": cmd_check, "graph": cmd_graph, "doctor": cmd_doctor}


def _state_error(args: argparse.Namespace, message: str, kind: str, path: Path) -> int:
    from graph.doctor import state_error_fix

    err.print(f"error: {message}", style="red", markup=False)
    err.print(state_error_fix(kind, path, _hint(args, "doctor", "--repair")), markup=False)
    return 2


def _quiet_libraries() -> None:
    """Client libraries log what the agent already handles (an empty Gemini answer is failed over and
    shown in ``usage``); on stderr it would interleave with the progress, or follow ``--json``."""
    for name in ("langchain_google_genai", "langchain_google_genai.chat_models", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from graph.checkpoints import CheckpointUnreadable
    from graph.runner import UnknownThread
    from providers import NoUsableProvider
    from providers.db import StateFileError

    _quiet_libraries()
    try:
        load_env_file(warn=lambda message: err.print(f"warning: {message}", style="yellow", markup=False))
        return COMMANDS[args.command](args)
    except (ConfigError, NoUsableProvider, BadInput) as exc:
        err.print(f"error: {exc}", style="red", markup=False)
        return 2
    except BrokenPipeError:  # e.g. `graph | head`: the reader went away; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UnknownThread as exc:
        err.print(f"error: no thread {exc.args[0]!r} in this home; list them with 'threads'", style="red",
                  markup=False)
        return 2
    except StateFileError as exc:  # damaged or unwritable agent.db / checkpoints.db / locks / journal
        return _state_error(args, str(exc), exc.kind, exc.path)
    except CheckpointUnreadable as exc:
        return _state_error(args, f"{exc}; the other threads work", "damaged", exc.path)
    except sqlite3.DatabaseError as exc:  # not traced to one file: name the home
        home = resolve_home(getattr(args, "home", None))
        return _state_error(args, f"the state in {home} cannot be used ({exc})", "damaged", home / "agent.db")


if __name__ == "__main__":
    sys.exit(main())
