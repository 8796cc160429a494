#!/usr/bin/env python
"""free-llm-agent CLI: run / resume / threads / usage / check / graph (see README)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("INTERPRETER_TERMINAL_INPUT_PATIENCE", "1000000000")

from dotenv import load_dotenv
from rich.console import Console

from config import ConfigError, load_config, resolve_home

err = Console(stderr=True, highlight=False, soft_wrap=True)


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
    for sp in (run, sub.add_parser("resume", parents=[common], help="continue a paused or interrupted thread")):
        if sp is not run:
            sp.add_argument("thread_id")
        sp.add_argument("--yes", "-y", action="store_true", help="run generated code without asking")
        sp.add_argument("--json", action="store_true", help="print one JSON object, no progress")
        sp.add_argument("--offline", action="store_true", help="use only local providers (Ollama ...)")
    sub.add_parser("threads", parents=[common], help="list threads").add_argument("--json", action="store_true")
    sub.add_parser("usage", parents=[common], help="quota per provider").add_argument("--json", action="store_true")
    sub.add_parser("check", parents=[common], help="one tiny request per provider").add_argument(
        "--json", action="store_true"
    )
    g = sub.add_parser("graph", parents=[common], help="draw the graph")
    g.add_argument("--format", choices=["mermaid", "png"], default="mermaid")
    g.add_argument("--output", "-o", help="file for --format png (default graph.png)")
    return p


def _router(args: argparse.Namespace, offline: bool = False) -> Any:
    from providers import Router

    config = load_config(getattr(args, "config_dir", None))
    router, notices = Router.from_config(config, resolve_home(getattr(args, "home", None)), offline=offline)
    if not getattr(args, "json", False):
        for notice in notices:
            err.print(f"[dim]{notice}[/dim]")
    return router


def _approver(payload: dict[str, Any]) -> dict[str, Any] | None:
    """y/n/edit prompt in a terminal; None (pause) without one."""
    if not sys.stdin.isatty():
        return None
    from rich.syntax import Syntax

    err.rule(f"Task {payload['task_id']}: {payload['task']}")
    err.print(Syntax(payload["code"], "bash" if payload["language"] == "shell" else "python", line_numbers=True))
    while True:
        answer = input("Run this code? [y]es / [n]o / [e]dit: ").strip().lower()
        if answer in ("y", "yes"):
            return {"action": "approve"}
        if answer in ("n", "no"):
            return {"action": "reject"}
        if answer in ("e", "edit"):
            import click

            edited = click.edit(payload["code"])
            return {"action": "edit", "code": edited} if edited else {"action": "approve"}


def _listener(router: Any) -> Any:
    started = time.time()

    def show(mode: str, chunk: Any) -> None:
        stamp = f"[dim]{time.time() - started:6.1f}s[/dim]"
        if mode == "custom" and chunk.get("event") == "llm_call":
            left = ""
            if router is not None and chunk["provider"] in router.config.providers:
                lim = router.config.limit_for(chunk["provider"])
                used = router.quota.counts(chunk["provider"], time.time())
                if lim.requests_per_day:
                    left = f", {lim.requests_per_day - used['requests_day']} requests left today"
            how = "cache" if chunk["cached"] else chunk["provider"]
            err.print(f"{stamp} LLM {chunk['purpose']}: {how}{left}")
        elif mode == "custom" and chunk.get("event") == "task_running":
            err.print(f"{stamp} ▶ task {chunk['task_id']}: {chunk['description']}")
        elif mode == "custom" and chunk.get("event") == "task_finished":
            mark = "[green]✔[/green]" if chunk["status"] == "done" else "[red]✘[/red]"
            why = f" ({chunk['error']})" if chunk.get("error") else ""
            err.print(f"{stamp} {mark} task {chunk['task_id']} {chunk['status']} in {chunk['duration_s']:.1f}s{why}")
        elif mode == "updates":
            for node, update in chunk.items():
                if node == "plan" and isinstance(update, dict) and update.get("tasks"):
                    err.print(f"{stamp} [bold]plan[/bold]:")
                    for t in update["tasks"]:
                        if t.get("status") == "pending":
                            err.print(f"         {t['id']}. {t['description']}")
                elif node in ("reflect", "fallback", "finalize") and isinstance(update, dict):
                    err.print(
                        f"{stamp} [bold]{node}[/bold]" + (f": {update['decision']}" if update.get("decision") else "")
                    )

    return show


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    if result.summary:
        err.print(result.summary)
    err.print(
        f"[bold]status:[/bold] {result.status}   thread: {result.thread_id}   "
        f"LLM calls: {result.llm_calls or {}}   cache hits: {result.cache_hits}"
    )
    if result.status == "waiting_for_quota":
        err.print(f"Quota exhausted; resume after {result.resume_after}: uv run run_graph.py resume {result.thread_id}")
    elif result.status == "awaiting_approval":
        err.print(f"Waiting for approval: uv run run_graph.py resume {result.thread_id} (add --yes to approve all)")


def cmd_run(args: argparse.Namespace) -> int:
    from graph.context import Context
    from graph.runner import Runner
    from providers import QuotaAwareChatModel

    if args.command == "run" and not args.goal.strip():
        raise BadInput('the goal is empty: give it as text, e.g. run "count the words in README.md"')
    router = _router(args, offline=args.offline)
    llm = QuotaAwareChatModel(router=router)
    opt = router.config.limits.optimization
    runner = Runner(router.home, llm=llm, context=Context(auto_approve=args.yes, max_batch_size=opt.max_batch_size))
    listener = None if args.json else _listener(router)
    approver = None if args.json else _approver
    if args.command == "run":
        import uuid

        args.thread_id = args.thread_id or uuid.uuid4().hex[:12]
        if not args.json:
            err.print(f"thread {args.thread_id}")
    try:
        if args.command == "run":
            if args.thread_id and runner.graph.get_state(runner._config(args.thread_id)).values:
                raise BadInput(
                    f"thread {args.thread_id!r} already exists: continue it with "
                    f"'resume {args.thread_id}' or pick another --thread-id"
                )
            result = runner.run(args.goal, args.thread_id, approver=approver, listener=listener)
        else:
            result = runner.resume(args.thread_id, approver=approver, listener=listener)
    except KeyboardInterrupt:
        err.print(f"\nStopped. Nothing finished is lost: uv run run_graph.py resume {args.thread_id}")
        return 130
    finally:
        runner.close()
    _print_result(result, args.json)
    return result.exit_code


def cmd_threads(args: argparse.Namespace) -> int:
    from graph.runner import Runner

    runner = Runner(resolve_home(getattr(args, "home", None)))
    rows = runner.threads()
    runner.close()
    if args.json:
        print(
            json.dumps(
                {
                    "threads": [
                        {
                            "thread_id": r.thread_id,
                            "status": r.status,
                            "goal": r.goal,
                            "tasks_done": sum(t.get("status") == "done" for t in r.tasks),
                            "tasks": len(r.tasks),
                            "resume_after": r.resume_after,
                        }
                        for r in rows
                    ]
                },
                ensure_ascii=False,
            )
        )
        return 0
    from rich.table import Table

    table = Table("thread", "status", "tasks done", "goal")
    for r in rows:
        table.add_row(
            r.thread_id, r.status, f"{sum(t.get('status') == 'done' for t in r.tasks)}/{len(r.tasks)}", r.goal[:60]
        )
    Console(soft_wrap=True).print(table)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from providers.report import usage_report

    report = usage_report(_router(args))
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.table import Table

    table = Table("provider", "minute", "day", "month", "cooldown", "recommendation")
    for name, row in report["providers"].items():
        lim = row["limits"]

        def cell(used: int, key: str, lim: dict[str, Any] = lim) -> str:
            return f"{used}/{lim[key]}" if key in lim else str(used)

        table.add_row(
            name,
            cell(row["requests_minute"], "requests_per_minute"),
            cell(row["requests_day"], "requests_per_day"),
            cell(row["requests_month"], "requests_per_month"),
            row["cooldown_until"] or "",
            row["recommendation"],
        )
    Console(soft_wrap=True).print(table)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from providers.report import check_provider

    config = load_config(getattr(args, "config_dir", None))
    router = _router(args)
    rows = [check_provider(router, config, name) for name in config.providers if config.providers[name].enabled]
    if args.json:
        print(json.dumps({"providers": rows}))
    else:
        for r in rows:
            mark = "[green]ok[/green]" if r["ok"] else "[red]error[/red]"
            ms = f" {r['latency_ms']} ms" if r["latency_ms"] is not None else ""
            Console(soft_wrap=True).print(f"{r['provider']:<20} {mark}{ms} {r['reason']}")
    return 0 if any(r["ok"] for r in rows) else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from graph import graph

    drawable = graph.get_graph()
    if args.format == "mermaid":
        print(drawable.draw_mermaid())
        return 0
    out = Path(args.output or "graph.png")
    try:
        out.write_bytes(drawable.draw_png())
    except ImportError:
        raise BadInput(
            "--format png needs graphviz: apt-get install graphviz libgraphviz-dev && "
            "uv pip install pygraphviz (or use --format mermaid)"
        ) from None
    err.print(f"wrote {out}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_run,
    "threads": cmd_threads,
    "usage": cmd_usage,
    "check": cmd_check,
    "graph": cmd_graph,
}


def main(argv: list[str] | None = None) -> int:
    load_dotenv(override=False)
    args = _parser().parse_args(argv)
    from graph.runner import UnknownThread
    from providers import NoUsableProvider

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, NoUsableProvider, BadInput) as exc:
        err.print(f"error: {exc}", style="red", markup=False)
        return 2
    except UnknownThread as exc:
        err.print(f"error: no thread {exc.args[0]!r} in this home; list them with 'threads'", style="red", markup=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
