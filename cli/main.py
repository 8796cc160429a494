#!/usr/bin/env python
"""free-llm-agent: plans a goal into tasks, writes their code and runs it in a sandbox in your folder, on free
LLM tiers without wasting a request. New here? Try `demo`, then `init` and `keys set`."""

# The parser, the dispatch (``COMMANDS``, one lazily imported function per command, in cli/commands_*.py
# and friends) and the errors every command may end with.

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
    common.add_argument("--config-dir", default=argparse.SUPPRESS, help="directory with providers.yaml/limits.yaml "
                        "(default $FREE_AGENT_CONFIG_DIR, else your config folder once 'init' wrote it, else the "
                        "packaged defaults)")
    common.add_argument("--home", default=argparse.SUPPRESS, help="state directory (default ~/.free-llm-agent)")
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="shared state in PostgreSQL (postgresql://…; default $FREE_AGENT_DATABASE_URL, "
                        "else SQLite in the home)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens on stderr: routing, failures, retries, paths (-vv: more)")
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
    run.add_argument("--dry-run", action="store_true",
                     help="send nothing: print the forecast (as 'forecast GOAL') instead of running")
    resume = sub.add_parser("resume", parents=[common], help="continue a paused or interrupted thread")
    resume.add_argument("thread_id")
    for sp in (run, resume):
        sp.add_argument("--allow-domain", action="append", default=[], metavar="D",
                        help="let the code reach domain D (repeatable; *.D for its subdomains)")
        sp.add_argument("--yes", "-y", action="store_true", help="run generated code without asking")
        sp.add_argument("--json", action="store_true", help="print one JSON object, no progress")
        sp.add_argument("--offline", action="store_true", help="use only local providers (Ollama, llama.cpp …)")
        sp.add_argument("--wait", action="store_true",
                        help="when every provider is out of quota, wait for it (countdown) and go on, "
                        "instead of pausing (also execution.wait: true)")
        sp.add_argument("--wait-max", metavar="DURATION",
                        help="with --wait: wait at most this long in total (90s, 10m, 2h); past it, pause")
    forecast = sub.add_parser("forecast", parents=[common],
                              help="requests a goal is likely to need vs quota left; when it would finish")
    forecast.add_argument("goal")
    forecast.add_argument("--json", action="store_true")
    demo = sub.add_parser("demo", parents=[common], help="a complete run offline, no key: a scripted local "
                          "model in a fresh sample folder")
    demo.add_argument("--yes", "-y", action="store_true", help="run the demo's code without asking")
    demo.add_argument("--json", action="store_true", help="print one JSON object, no progress")
    demo.add_argument("--workdir", metavar="DIR", help="put the sample in this folder (default: a fresh temporary one)")
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
    init = sub.add_parser("init", parents=[common], help="create your config folder with commented "
                          "providers.yaml and limits.yaml")
    init.add_argument("--force", action="store_true", help="write files that exist again (the old ones: *.bak)")
    keys = sub.add_parser("keys", parents=[common], help="store or list API keys (kept in the home's .env)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="{set,list}")
    key_set = keys_sub.add_parser("set", parents=[common], help="store a key: typed at a prompt that does not "
                                  "echo, or piped in")
    key_set.add_argument("name", metavar="NAME", help="the variable, e.g. GROQ_API_KEY ('keys list' shows them)")
    key_set.add_argument("--force", action="store_true", help="also a NAME no configured provider reads")
    keys_sub.add_parser("list", parents=[common], help="which keys are set (masked) and where each was found"
                        ).add_argument("--json", action="store_true")
    studio = sub.add_parser("studio", parents=[common], help="LangGraph Studio's server for this agent (langgraph dev)")
    studio.add_argument("--port", type=int, default=2024, help="port to listen on (default 2024)")
    studio.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    studio.add_argument("--no-browser", action="store_true", help="do not open Studio in a browser")
    studio.add_argument("--no-reload", action="store_true", help="do not restart the server when files change")
    completion = sub.add_parser("completion", parents=[common], help="print the shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
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
                found += [o for parser in action.choices.values() for o in parser._options()]
        return found

    def _commands(self) -> list[str]:
        return [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = " ".join(extras)
            if getattr(parsed, "command", None) in ("run", "forecast") and not any(e.startswith("-") for e in extras):
                self.error(f"unrecognized arguments: {words}; if they are part of the goal, quote the whole goal: "
                           f"{parsed.command} {_quoted(f'{parsed.goal} {words}')}")
            close = [m for e in extras if e.startswith("-") for m in difflib.get_close_matches(
                e.split("=")[0], self._options(), n=1)]
            self.error(f"unrecognized arguments: {words}" + (f"; did you mean {close[0]}?" if close else ""))
        return parsed

    def error(self, message: str) -> NoReturn:
        bad = re.search(r"invalid choice: '([^']*)'", message)
        if bad and (close := difflib.get_close_matches(bad[1], self._commands(), n=1)):
            message = f"{message}; did you mean {close[0]!r}?"
        super().error(message)


def _quoted(text: str) -> str:
    """``text`` as one shell word to paste: in double quotes when nothing in it means anything there (``$``,
    backquotes, ``\\``, ``!``, ``"``), else as :func:`shlex.quote` writes it (single quotes: nothing runs)."""
    import shlex

    return f'"{text}"' if not set(text) & set('"$`\\!') else shlex.quote(text)


def _lazy(target: str) -> Any:
    """The command ``module:function`` of ``free_llm_agent.cli``, imported only when that command runs (so
    ``--help`` and a mistyped command import none of them)."""
    module, function = target.split(":")

    def command(args: argparse.Namespace) -> int:
        from importlib import import_module

        return int(getattr(import_module(f"free_llm_agent.cli.{module}"), function)(args))

    return command


# The registry of commands: a new command is one parser above and one entry here.
COMMANDS = {"run": cmd_run, "resume": cmd_run, "threads": _lazy("commands_info:cmd_threads"),
            "show": _lazy("commands_info:cmd_show"), "usage": _lazy("commands_info:cmd_usage"),
            "check": _lazy("commands_info:cmd_check"), "graph": _lazy("commands_info:cmd_graph"),
            "doctor": _lazy("doctor_view:cmd_doctor"), "undo": _lazy("commands_undo:cmd_undo"),
            "demo": _lazy("commands_demo:cmd_demo"), "init": _lazy("commands_init:cmd_init"),
            "keys": _lazy("commands_keys:cmd_keys"), "studio": _lazy("studio:cmd_studio"),
            "completion": _lazy("completion:cmd_completion"), "forecast": _lazy("commands_forecast:cmd_forecast"),
            "batch": _lazy("commands_batch:cmd_batch"), "worker": _lazy("commands_worker:cmd_worker")}


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
    parser = _parser()
    if "_ARGCOMPLETE" in os.environ:  # a Tab in a shell that loaded `completion`'s script: answer, exit
        from free_llm_agent.cli.completion import complete

        complete(parser)
    args = parser.parse_args(argv)
    from free_llm_agent.providers.errors import NoUsableProvider
    from free_llm_agent.storage.errors import BackendMissing, CheckpointUnreadable, StateFileError, StateUnavailable

    _quiet_libraries()
    verbose = _verbose(args)
    try:
        env_files = load_env_files(getattr(args, "home", None), warn=lambda message: cli_support.err.print(
            f"warning: {message}", style="yellow", markup=False))
        if verbose is not None:
            from free_llm_agent.cli.verbose import where_from

            where_from(args, env_files)
        return COMMANDS[args.command](args)
    except (ConfigError, NoUsableProvider, BadInput) as exc:
        cli_support.err.print(f"error: {exc}", style="red", markup=False)
        if key_var := getattr(exc, "key_var", None):  # no provider has a key: the command that stores one
            cli_support.err.print(f"Store a key with: {hint(args, 'keys', 'set', key_var)}", markup=False)
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
    finally:
        if verbose is not None:
            verbose.close()


def _verbose(args: argparse.Namespace) -> Any:
    """``-v``/``-vv``: the agent's log on stderr until :func:`main` returns (cli/verbose.py); else None."""
    if not getattr(args, "verbose", 0):
        return None
    from free_llm_agent.cli.verbose import enable

    return enable(args.verbose)


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
