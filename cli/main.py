#!/usr/bin/env python
"""free-llm-agent CLI: run / resume / threads / show / undo / usage / check / graph / doctor (see README)."""

# The parser, the dispatch and the errors every command may end with are here; ``run``/``resume`` are in
# cli/commands_run.py, the other commands in cli/commands_info.py (imported when one of them runs).

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from free_llm_agent.cli import support as cli_support
from free_llm_agent.cli.commands_batch import add_parsers as add_batch_parsers
from free_llm_agent.cli.commands_run import QuickExit, cmd_run
from free_llm_agent.cli.support import BadInput, database_url, hint, resume_hint
from free_llm_agent.config import ConfigError, load_env_files, resolve_home


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config-dir", default=argparse.SUPPRESS, help="directory with providers.yaml/limits.yaml")
    common.add_argument("--home", default=argparse.SUPPRESS, help="state directory (default ~/.free-llm-agent)")
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="shared state in PostgreSQL (postgresql://…; default $FREE_AGENT_DATABASE_URL, "
                        "else SQLite in the home)")
    p = _Parser(parents=[common], description=__doc__)
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="plan + execute + reflect until done")
    run.add_argument("goal")
    run.add_argument("--thread-id")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workdir", metavar="DIR", help="folder the code works in (default: the current one)")
    where.add_argument("--scratch", action="store_true", help="work in a fresh folder under the home instead")
    run.add_argument("--no-network", action="store_true", help="generated code gets no network at all")
    resume = sub.add_parser("resume", parents=[common], help="continue a paused or interrupted thread")
    resume.add_argument("thread_id")
    for sp in (run, resume):
        sp.add_argument("--allow-domain", action="append", default=[], metavar="D",
                        help="let the code reach domain D (repeatable; *.D for its subdomains)")
        sp.add_argument("--yes", "-y", action="store_true", help="run generated code without asking")
        sp.add_argument("--json", action="store_true", help="print one JSON object, no progress")
        sp.add_argument("--offline", action="store_true", help="use only local providers (Ollama, llama.cpp …)")
    sub.add_parser("threads", parents=[common], help="list threads").add_argument("--json", action="store_true")
    show = sub.add_parser("show", parents=[common], help="the history of one thread")
    show.add_argument("thread_id")
    show.add_argument("--json", action="store_true")
    show.add_argument("--diff", action="store_true", help="the unified diff of what each task changed")
    show.add_argument("--task", type=int, metavar="N", help="with --diff: only task N")
    undo = sub.add_parser("undo", parents=[common], help="put the working directory back as before a task")
    undo.add_argument("thread_id")
    undo.add_argument("--task", type=int, metavar="N", help="restore as before task N (default: the first task)")
    undo.add_argument("--yes", "-y", action="store_true", help="do not ask")
    undo.add_argument("--force", action="store_true", help="also when files were changed after the run")
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
    add_batch_parsers(sub, common)
    return p


class _Version(argparse.Action):
    """``--version``: looked up only when asked for (reading the installed metadata costs every command)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"free-llm-agent {version('free-llm-agent')}")
        except PackageNotFoundError:
            print("free-llm-agent (a checkout, not installed)")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse with the hints a mistyped command line needs: the command or option meant, and quotes for a
    goal given as several words."""

    def _options(self) -> list[str]:
        found = list(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [o for parser in action.choices.values() for o in parser._option_string_actions]
        return found

    def _commands(self) -> list[str]:
        return [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = " ".join(extras)
            if getattr(parsed, "command", None) == "run" and not any(e.startswith("-") for e in extras):
                self.error(f"unrecognized arguments: {words}; if they are part of the goal, quote the whole goal: "
                           f'run "{parsed.goal} {words}"')
            close = [m for e in extras if e.startswith("-") for m in difflib.get_close_matches(
                e.split("=")[0], self._options(), n=1)]
            self.error(f"unrecognized arguments: {words}" + (f"; did you mean {close[0]}?" if close else ""))
        return parsed

    def error(self, message: str) -> NoReturn:
        bad = re.search(r"invalid choice: '([^']*)'", message)
        if bad and (close := difflib.get_close_matches(bad[1], self._commands(), n=1)):
            message = f"{message}; did you mean {close[0]!r}?"
        super().error(message)


def _view(name: str) -> Any:
    """A command of :mod:`cli.commands_info`, imported only when that command runs."""

    def command(args: argparse.Namespace) -> int:
        from free_llm_agent.cli import commands_info

        return int(getattr(commands_info, name)(args))

    return command


def _undo(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.commands_undo import cmd_undo

    return cmd_undo(args)


def _doctor(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.doctor_view import cmd_doctor

    return cmd_doctor(args)


def _batch(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.commands_batch import cmd_batch

    return cmd_batch(args)


def _worker(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.commands_worker import cmd_worker

    return cmd_worker(args)


COMMANDS = {"run": cmd_run, "resume": cmd_run, "threads": _view("cmd_threads"), "show": _view("cmd_show"),
            "usage": _view("cmd_usage"), "check": _view("cmd_check"), "graph": _view("cmd_graph"),
            "doctor": _doctor, "undo": _undo, "batch": _batch, "worker": _worker}


def _state_error(args: argparse.Namespace, message: str, kind: str, path: Path) -> int:
    from free_llm_agent.cli.doctor_view import state_error_fix

    cli_support.err.print(f"error: {message}", style="red", markup=False)
    cli_support.err.print(state_error_fix(kind, path, hint(args, "doctor", "--repair")), markup=False)
    return 2


def _quiet_libraries() -> None:
    """Client libraries log what the agent already handles (an empty Gemini answer is failed over and
    shown in ``usage``); on stderr it would interleave with the progress, or follow ``--json``."""
    for name in ("langchain_google_genai", "langchain_google_genai.chat_models", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("psycopg", "psycopg.pool"):  # a lost database: one message of ours, not the pool's retries
        logging.getLogger(name).setLevel(logging.CRITICAL)


class _NeverRaised(Exception):
    """Matches nothing: stands for an exception class whose module was never imported."""


def _raised(module: str, name: str) -> type[Exception]:
    """The exception class ``module.name`` if ``module`` was imported, else :class:`_NeverRaised` (what was
    never imported raised nothing). An ``except`` clause evaluates it only when an exception is matched, so
    :func:`main` catches these without importing langchain/langgraph before the executor starts."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else _NeverRaised  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from free_llm_agent.providers.errors import NoUsableProvider
    from free_llm_agent.storage.errors import BackendMissing, CheckpointUnreadable, StateFileError, StateUnavailable

    _quiet_libraries()
    try:
        load_env_files(getattr(args, "home", None),
                       warn=lambda message: cli_support.err.print(f"warning: {message}", style="yellow", markup=False))
        return COMMANDS[args.command](args)
    except (ConfigError, NoUsableProvider, BadInput) as exc:
        cli_support.err.print(f"error: {exc}", style="red", markup=False)
        return 2
    except BrokenPipeError:  # e.g. `graph | head`: the reader went away; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _raised("free_llm_agent.runtime.runner", "NoWorkdir") as exc:
        cli_support.err.print(f"error: thread {exc.args[0]!r} stopped before its run recorded a working directory; "
                              "start the goal again in the folder it is for: run GOAL --workdir DIR",
                              style="red", markup=False)
        return 2
    except _raised("free_llm_agent.runtime.runner", "UnknownThread") as exc:
        where = "the shared database" if database_url(args) else "this home"
        cli_support.err.print(f"error: no thread {exc.args[0]!r} in {where}; list them with 'threads'",
                              style="red", markup=False)
        return 2
    except StateFileError as exc:  # damaged or unwritable agent.db / checkpoints.db / locks / journal
        return _state_error(args, str(exc), exc.kind, exc.path)
    except CheckpointUnreadable as exc:
        path = getattr(exc, "path", None)
        if path is None:  # in the shared database
            cli_support.err.print(f"error: {exc}; the other threads work. Check the database with: "
                                  f"{hint(args, 'doctor')}", style="red", markup=False)
            return 2
        return _state_error(args, f"{exc}; the other threads work", "damaged", path)
    except StateUnavailable as exc:  # the shared database went away mid-command: nothing finished is lost
        cli_support.err.print(f"error: {exc}", style="red", markup=False)
        if getattr(args, "thread_id", None) and args.command in ("run", "resume") and not isinstance(
                exc, BackendMissing):
            cli_support.err.print(f"when it is back, continue with: {resume_hint(args, args.thread_id)}",
                                  markup=False)
        return 2
    except sqlite3.DatabaseError as exc:  # not traced to one file: name the home
        home = resolve_home(getattr(args, "home", None))
        return _state_error(args, f"the state in {home} cannot be used ({exc})", "damaged", home / "agent.db")


def entry() -> None:
    """The console script and ``python run_graph.py``: :func:`main`, then the process ends.

    After ``run``/``resume`` that skips the interpreter's teardown (freeing every object of langchain,
    langgraph, pydantic …: ≈0.3 s): the atexit handlers run, stdout and stderr are flushed, and the process
    exits at once — unless another non-daemon thread still runs, which a normal exit would wait for."""
    code = main()
    if QuickExit.quick and sys.flags.dont_write_bytecode:  # after a run: the next one starts from bytecode
        from free_llm_agent.tools.bytecode import compile_imported_in_background

        compile_imported_in_background()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if not QuickExit.quick or any(t.is_alive() for t in others):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # as at a normal exit: a failed flush of stdout is status 120
            code = code or (120 if stream is sys.stdout else 0)
    os._exit(code)


if __name__ == "__main__":
    entry()
