"""``run`` and ``resume``: check the arguments, start the executor early, open the runner, drive the
graph with the progress panel and the approval prompt (or silently with ``--json``), print the result.

What a run imports, and when, matters (tests/test_cli_imports.py): the executor is asked for before
langchain and langgraph are imported, so everything heavy is imported inside the functions, after
:func:`cli.run_imports.prepare`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from free_llm_agent.cli import run_imports, support
from free_llm_agent.cli.support import BadInput, database_url, resume_hint, router_for
from free_llm_agent.config import load_config, resolve_home

if TYPE_CHECKING:
    from free_llm_agent.config import AppConfig
    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.deps import Deps
    from free_llm_agent.runtime.runner import Approver, Listener, Runner, RunResult
    from free_llm_agent.runtime.waiting import WaitEvent, WaitListener, WaitPolicy


class QuickExit:
    """Set by a finished run/resume: everything it wrote is closed (see :func:`cli.main.entry`)."""

    quick = False


def cmd_run(args: argparse.Namespace) -> int:
    """``run GOAL`` or ``resume THREAD``: the result's exit code; 130 when stopped by Ctrl-C.
    ``run --dry-run``: the forecast, nothing sent, no thread made."""
    if getattr(args, "dry_run", False):
        from free_llm_agent.cli.commands_forecast import cmd_forecast

        _check_args(args)
        return cmd_forecast(args)
    result = execute(args)
    if result is None:
        return 130
    print_result(result, args)
    QuickExit.quick = True
    return result.exit_code


def execute(args: argparse.Namespace) -> RunResult | None:
    """The run or resume of ``args`` (progress and prompts shown unless ``--json``); None when Ctrl-C
    stopped it. ``demo`` drives its run through here too."""
    _check_args(args)
    config = load_config(getattr(args, "config_dir", None))
    deps, context = _deps_and_context(args, config)
    new_thread = args.command == "run" and args.thread_id is None  # a fresh id: no thread has it yet
    if args.command == "run":
        _start_run(args, deps, context, new_thread)
    run_imports.prepare()  # leaves out what a run never uses, defers what it needs a corner of (see there)
    runner, router = _open_runner(args, config, deps, context)
    _preflight(args, runner, router, deps, context, new_thread)
    return _drive(args, runner, router, deps, _wait_policy(args, config))


def _check_args(args: argparse.Namespace) -> None:
    """What ``run`` is given, checked before anything starts: a goal, a usable ``--thread-id``."""
    from free_llm_agent.config.text import escaped, undecodable
    from free_llm_agent.tools.workspace import check_thread_id

    if args.command == "run" and not args.goal.strip():
        raise BadInput('the goal is empty: give it as text, e.g. run "count the words in README.md"')
    if args.command == "run" and (at := undecodable(args.goal)) is not None:
        raise BadInput(f"the goal holds bytes that are not UTF-8 (character {at + 1}: "
                       f"{escaped(args.goal[at])}); write it as UTF-8 text (your terminal's encoding may differ)")
    if args.command == "run" and args.thread_id is not None:
        try:
            check_thread_id(args.thread_id)
        except ValueError as exc:
            raise BadInput(f"--thread-id: {exc}") from None
    if getattr(args, "wait_max", None) is not None:
        from free_llm_agent.runtime.waiting import parse_duration

        try:
            args.wait_max_s = parse_duration(args.wait_max)
        except ValueError as exc:
            raise BadInput(f"--wait-max: {exc}") from None


def _deps_and_context(args: argparse.Namespace, config: AppConfig) -> tuple[Deps, Context]:
    """The run's dependencies (no model yet) and its context from the flags and limits.yaml."""
    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.deps import Deps

    deps = Deps(home=resolve_home(getattr(args, "home", None)), config=config, database_url=database_url(args),
                reuse_executors=False)  # the process ends with the run: nothing to keep warm for
    context = Context(auto_approve=args.yes, max_batch_size=config.limits.optimization.max_batch_size,
                      executor_timeout_s=config.limits.execution.task_timeout_seconds,
                      network=not getattr(args, "no_network", False), allowed_domains=_domains(args.allow_domain))
    return deps, context


def _start_run(args: argparse.Namespace, deps: Deps, context: Context, new_thread: bool) -> None:
    """``run``: the thread id, the working directory, and for a fresh thread the executor, started now."""
    from free_llm_agent.tools.workspace import WorkdirError

    args.thread_id = args.thread_id or uuid.uuid4().hex[:12]
    if not args.scratch:
        try:
            context.workdir = str(deps.workdir(args.workdir or os.getcwd(), args.thread_id))
        except WorkdirError as exc:
            raise BadInput(str(exc)) from None
    if new_thread:
        _prewarm(deps, context, args.thread_id, context.workdir, True)


def _open_runner(args: argparse.Namespace, config: AppConfig, deps: Deps, context: Context) -> tuple[Runner, Any]:
    """The router of the flags, the quota-aware model on it, and the runner on the checkpoints."""
    from free_llm_agent.providers import QuotaAwareChatModel
    from free_llm_agent.runtime.runner import Runner
    from free_llm_agent.storage.errors import StateUnavailable

    router = router_for(args, offline=args.offline, config=config)
    deps.llm = QuotaAwareChatModel(router=router)
    try:
        runner = Runner(router.home, context=context, deps=deps, database_url=router.database_url)
    except StateUnavailable as exc:
        deps.close_all()  # the executor started early
        raise BadInput(str(exc)) from None
    return runner, router


def _preflight(args: argparse.Namespace, runner: Runner, router: Any, deps: Deps, context: Context,
               new_thread: bool) -> None:
    """Before the graph runs: ``run`` must name a new thread; the executor starts for a thread known
    only now; the sandbox is resolved. On any failure the runner is closed."""
    try:
        values = runner.graph.get_state(runner.config_for(args.thread_id)).values
        if args.command == "run" and values:
            raise BadInput(f"thread {args.thread_id!r} already exists: continue it with "
                           f"'resume {args.thread_id}' or pick another --thread-id")
        if args.command == "run" and not new_thread:
            _prewarm(deps, context, args.thread_id, context.workdir, True)
        elif args.command == "resume" and values.get("workdir") and values.get("status") == "running":
            _prewarm(deps, context, args.thread_id, values["workdir"], bool(values.get("network", True)))
        if args.command == "resume" and values:
            from free_llm_agent.cli.commands_undo import confirm_resume

            snap = runner.graph.get_state(runner.config_for(args.thread_id))
            confirm_resume(args, deps.home_dir(), bool(snap.next or snap.tasks))
        _check_sandbox(runner, router)
    except BaseException:
        runner.close()
        raise


def _wait_policy(args: argparse.Namespace, config: AppConfig) -> WaitPolicy | None:
    """``--wait`` / ``--wait-max`` / ``execution.wait``: how a dry spell of quota is waited out (None: pause)."""
    from free_llm_agent.runtime.waiting import WaitPolicy

    if not (getattr(args, "wait", False) or getattr(args, "wait_max", None) is not None
            or config.limits.execution.wait):
        return None
    return WaitPolicy(max_total_s=getattr(args, "wait_max_s", None), report_every_s=60.0)


def _drive(args: argparse.Namespace, runner: Runner, router: Any, deps: Deps,
           policy: WaitPolicy | None = None) -> RunResult | None:
    """Run or resume the thread (waiting out dry spells of quota with ``policy``), Ctrl-C stopping the task
    in flight; None when it was stopped so (Ctrl-C during a wait leaves the thread paused: its result).
    The runner is closed afterwards in every case."""
    from free_llm_agent.runtime.waiting import run_to_end
    from free_llm_agent.storage.errors import ThreadBusy

    def stop(signum: int, frame: Any) -> None:  # Ctrl-C: the task in flight stops now, as interrupted
        runner.deps.abort_all()
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGINT, stop)
    try:
        listener, approver, shown = _display(args, runner, router, deps)
        on_wait = _wait_lines(args) if listener is None else getattr(listener, "wait_event", None)
        with shown:
            return run_to_end(runner, args.thread_id, goal=args.goal if args.command == "run" else None,
                              approver=approver, listener=listener, policy=policy, on_wait=on_wait)
    except ThreadBusy as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        support.err.print("\nStopped. Nothing finished is lost; continue with: "
                          f"{resume_hint(args, args.thread_id)}", markup=False)
        return None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        runner.close()


def _wait_lines(args: argparse.Namespace) -> WaitListener:
    """With ``--json``: the waiting as plain lines on stderr (stdout keeps its one JSON object)."""
    import sys
    from datetime import datetime

    from free_llm_agent.runtime.waiting import left_text

    def show(event: WaitEvent) -> None:
        until = "" if event.until is None else datetime.fromtimestamp(event.until).astimezone().isoformat(
            timespec="seconds")
        if event.phase == "waiting":
            line = (f"waiting for quota until {until} ({left_text(event.left_s)}); "
                    f"Ctrl-C leaves thread {event.thread_id} paused")
        elif event.phase == "tick":
            line = f"waiting for quota: {left_text(event.left_s)} left (until {until})"
        elif event.phase == "resuming":
            line = f"quota free again after {left_text(event.waited_s)} of waiting: resuming {event.thread_id}"
        elif event.phase in ("over_budget", "gave_up"):
            flag = " (--wait-max)" if event.phase == "over_budget" else ""
            line = f"not waiting: {event.reason}{flag}; thread {event.thread_id} stays paused"
        else:
            line = f"stopped waiting ({event.reason}); thread {event.thread_id} stays paused"
        print(line, file=sys.stderr, flush=True)

    return show


def _display(args: argparse.Namespace, runner: Runner, router: Any, deps: Deps
             ) -> tuple[Listener | None, Approver | None, AbstractContextManager[Any]]:
    """The progress panel (the listener, shown while the run lasts) and the terminal's approval prompt;
    with ``--json`` none of them (nothing is shown while it runs, and no rich widget is imported)."""
    if args.json:
        return None, None, contextlib.nullcontext()
    from free_llm_agent.cli.approval_prompt import terminal_approver
    from free_llm_agent.cli.progress import Progress

    support.err.print(f"thread [bold]{args.thread_id}[/bold]")
    progress = Progress(support.err, router)
    approver = terminal_approver(progress, support.err,
                                 lambda task: support.hint(args, "undo", shlex.quote(args.thread_id), "--task",
                                                           str(task)))
    if not args.yes:  # with --yes an unlisted domain is refused, and the task's output says how to allow it
        from free_llm_agent.cli.approval_prompt import terminal_domain_prompt

        deps.ask_domain = terminal_domain_prompt(progress, support.err)
    if args.command == "resume":
        progress.seed(runner.result(args.thread_id).tasks)  # the checklist with its descriptions from the start
    return progress, approver, progress


def print_result(result: RunResult, args: argparse.Namespace) -> None:
    """The summary on stdout (``run … > out.txt`` keeps it); status lines and hints on stderr."""
    import json

    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    from rich.markup import escape

    err, out = support.err, support.out
    if result.summary:
        out.print(result.summary, markup=False)
    err.print(f"[bold]status:[/bold] {result.status}   thread: {result.thread_id}   "
              + escape(f"LLM calls: {result.llm_calls or {}}   cache hits: {result.cache_hits}"))
    if result.status == "waiting_for_quota":
        err.print(f"Every provider is out of quota; after {result.resume_after} run: "
                  f"{resume_hint(args, result.thread_id)}", markup=False)
    elif result.status == "awaiting_approval":
        err.print(f"Waiting for approval: {resume_hint(args, result.thread_id)}  (--yes approves all)",
                  markup=False)
    if result.workdir:
        err.print(f"working directory: {result.workdir}", markup=False)


def _check_sandbox(runner: Runner, router: Any) -> None:
    """Resolve the sandbox before anything runs: required and missing is exit 2 (auto and missing warns)."""
    from free_llm_agent.tools.sandbox import SandboxUnavailable

    try:
        runner.deps.sandbox()
    except SandboxUnavailable as exc:
        raise BadInput(f"{router.config.config_dir / 'limits.yaml'}: {exc}") from None


def _domains(given: list[str]) -> list[str]:
    """``--allow-domain`` values, checked: a host name or ``*.`` a host name, no scheme, path or port."""
    import re

    out = []
    for raw in given:
        domain = raw.strip().lower().rstrip(".")
        if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", domain):
            raise BadInput(f"--allow-domain {raw!r}: give a domain such as example.com or *.example.com "
                           "(no scheme, path or port)")
        out.append(domain)
    return out


def _prewarm(deps: Deps, context: Context, thread_id: str, workdir: str | None, network: bool) -> None:
    """Start the run's executor now (in the background): its kernel boots while the CLI imports the model
    clients and the plan is asked for, so the first task finds it warm."""
    where = Path(workdir) if workdir else deps.workdir(None, thread_id)
    deps.prewarm(thread_id, where, context.executor_timeout_s, context.network and network)
