"""``demo``: a complete run, offline and without a key, in a fresh sample folder.

A real ``run`` (:func:`cli.commands_run.execute`: plan, approval, code, sandboxed execution, reflection) of a
fixed goal about a small sales table, whose one provider is the scripted local server of :mod:`demo.server`,
started in this process on 127.0.0.1. It has its own home and configuration (a fresh temporary folder, or
``--home``) and its own sample folder (a fresh temporary one, or ``--workdir``): nothing of the user's is read
for the run or written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from free_llm_agent.cli import support
from free_llm_agent.cli.commands_run import QuickExit, execute, print_result
from free_llm_agent.cli.support import BadInput, program
from free_llm_agent.demo import sample
from free_llm_agent.demo.server import MODEL, DemoServer

if TYPE_CHECKING:
    from free_llm_agent.runtime.runner import RunResult

NOTE = "answers come from a scripted local server, no LLM and no key involved"
PROVIDER = "demo_scripted"
CONFIG_FOLDER = "demo-config"  # in the demo's home


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo's run: its exit code as ``run``'s (0 completed or paused, 1 failed, 130 Ctrl-C)."""
    started = time.monotonic()
    for flag in ("config_dir", "database_url"):
        if getattr(args, flag, None):
            raise BadInput(f"demo: --{flag.replace('_', '-')} is not used: the demo has its own configuration and "
                           "state (one scripted local provider, SQLite in its home); leave it out")
    home, folder = _places(getattr(args, "home", None), _given_folder(args.workdir))
    _say(args, f"[bold]demo:[/bold] {NOTE}")
    with DemoServer() as server, _environment():
        try:
            config_dir = write_config(home / CONFIG_FOLDER, server.base_url)
            sample.write_sample(folder)
        except OSError as exc:
            raise BadInput(f"demo: cannot write its files ({exc}); pass --home DIR and --workdir DIR you can "
                           "write to") from None
        _say(args, f"[bold]demo:[/bold] sample folder {_esc(folder)} ({sample.DATA_FILE}, {sample.ROWS} sales)")
        _say(args, f"[bold]demo:[/bold] goal: {_esc(sample.GOAL)}")
        _as_run(args, home, config_dir, folder)
        result = execute(args)
    seconds = time.monotonic() - started
    if result is None:
        return 130
    report = folder / sample.REPORT_FILE
    if args.json:
        print(json.dumps({**result.to_json(), "demo": True, "note": NOTE, "folder": str(folder),
                          "report": str(report) if report.is_file() else None, "seconds": round(seconds, 1)},
                         ensure_ascii=False))
    else:
        print_result(result, args)
        _footer(result, folder, report, seconds)
    QuickExit.quick = True
    return result.exit_code


def _places(home: str | None, folder: Path | None) -> tuple[Path, Path]:
    """The demo's home and sample folder: those given, else in one fresh temporary folder."""
    fresh: list[Path] = []

    def temporary(name: str) -> Path:
        if not fresh:
            fresh.append(Path(tempfile.mkdtemp(prefix="free-llm-agent-demo-")))
        return fresh[0] / name

    return (Path(home).expanduser().absolute() if home else temporary("home"),
            folder or temporary(sample.FOLDER_NAME))


def _given_folder(workdir: str | None) -> Path | None:
    """``--workdir``, checked: an existing folder without files of its own the demo would overwrite."""
    if workdir is None:
        return None
    folder = Path(workdir).expanduser()
    if not folder.is_dir():
        raise BadInput(f"--workdir {workdir}: no such folder; create it, or leave --workdir out for a fresh "
                       "temporary one")
    if found := sample.in_the_way(folder):
        raise BadInput(f"--workdir {workdir}: it already has {' and '.join(found)}, which the demo would "
                       "overwrite; pick an empty folder, or leave --workdir out for a fresh temporary one")
    return folder.absolute()


def write_config(directory: Path, base_url: str) -> Path:
    """The demo's configuration: one local provider, the scripted server at ``base_url``."""
    directory.mkdir(parents=True, exist_ok=True)
    head = f"# Written by `{program()} demo`: the scripted demo server ({NOTE}).\n"
    providers = {
        "providers": {PROVIDER: {"kind": "openai_compatible", "model": MODEL, "base_url": base_url,
                                 "api_key_env": None, "local": True, "max_tokens": 2048, "temperature": 0,
                                 "timeout_s": 30}},
        "routing": {"priority": [PROVIDER], "learn": False},
    }
    limits = {
        "optimization": {"enable_caching": False},
        "fallback": {"max_retries": 1, "retry_delay_seconds": 1, "max_wait_seconds": 0},
        "execution": {"network": "off"},  # the sample needs none: the code runs without any network
    }
    for name, doc in (("providers.yaml", providers), ("limits.yaml", limits)):
        (directory / name).write_text(head + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return directory


def _as_run(args: argparse.Namespace, home: Path, config_dir: Path, folder: Path) -> None:
    """``args`` as those of ``run GOAL --workdir FOLDER --offline --no-network`` on the demo's home and config."""
    args.command, args.demo = "run", True
    args.goal, args.thread_id = sample.GOAL, None
    args.workdir, args.scratch = str(folder), False
    args.no_network, args.allow_domain, args.offline = True, [], True
    args.home, args.config_dir, args.database_url = str(home), str(config_dir), None


@contextmanager
def _environment() -> Iterator[None]:
    """While the demo runs: no shared database of the user's (SQLite in the demo's home), and no proxy
    between the agent and the server on 127.0.0.1."""
    saved = {name: os.environ.get(name) for name in ("FREE_AGENT_DATABASE_URL", "NO_PROXY", "no_proxy")}
    os.environ.pop("FREE_AGENT_DATABASE_URL", None)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [saved[name], "127.0.0.1", "localhost"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _say(args: argparse.Namespace, line: str) -> None:
    if not args.json:
        support.err.print(line)


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _footer(result: RunResult, folder: Path, report: Path, seconds: float) -> None:
    """Where the sample folder and the report are, the time it took, and what to do next."""
    err = support.err
    err.print(f"\n[bold]demo:[/bold] {_esc(result.status)} in {seconds:.1f} s")
    err.print(f"  sample folder: {_esc(folder)}")
    if result.status == "awaiting_approval":
        err.print("  in a terminal the demo asks y/n/e before each task runs; --yes runs them without asking")
    if report.is_file():
        err.print(f"  it produced:   {_esc(report)}")
        for line in report.read_text(encoding="utf-8", errors="replace").splitlines():
            err.print(f"    {line}", markup=False)
    key, signup = _first_key()
    steps = [("init", "your own configuration folder"),
             (f"keys set {key}", "a free key" + (f" from {signup}" if signup else "")),
             ('run "GOAL" --workdir DIR', "a goal of yours, in a folder of yours")]
    width = max(len(command) for command, _ in steps)
    err.print("[bold]next, with a real model:[/bold]")
    for command, what in steps:
        err.print(f"  {program()} {command.ljust(width)}  {what}", markup=False)
    err.print(f"[bold]demo:[/bold] {NOTE}")


def _first_key() -> tuple[str, str]:
    """The key variable of the packaged configuration's first provider, and where to get one."""
    from free_llm_agent.config import ConfigError, load_config
    from free_llm_agent.config.loader import REPO_CONFIG_DIR
    from free_llm_agent.providers.keys import first_keyed

    try:
        cfg = first_keyed(load_config(REPO_CONFIG_DIR))
    except ConfigError:
        return "NAME", ""
    return (str(cfg.api_key_env), cfg.signup_url or "") if cfg is not None else ("NAME", "")
