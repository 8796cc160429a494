"""What every CLI command shares: the two consoles, the bad-input error, the router from the
global flags, copyable hints and checked output paths."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from free_llm_agent.config import load_config, resolve_home

if TYPE_CHECKING:
    from rich.console import Console

    err: Console
    out: Console


# Bidirectional-text controls (U+202A–U+202E, U+2066–U+2069, marks): in a goal, a task or its output they
# would reorder what the terminal shows (a goal that reads backwards, code that looks harmless). The consoles
# show them as escapes; JSON output keeps the text as it is.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_VISIBLE = {ord(c): f"\\u{ord(c):04x}" for c in BIDI_CONTROLS}


def visible(text: str) -> str:
    """``text`` with its bidirectional controls written as ``\\u202e`` … (see :data:`BIDI_CONTROLS`)."""
    return text.translate(_VISIBLE)


# Control characters but tab and newline (C0, DEL, C1): in a program's output they would move the cursor,
# colour or clear the terminal, set its title, ring its bell.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` as a terminal should show program output: control characters written as ``\\x1b`` … and
    bidirectional controls as ``\\u202e`` … (rich markup is the caller's: print it as ``Text``)."""
    return visible(_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


class _Visible:
    """The stream a console writes to (looked up at each write, so a redirected ``sys.stderr`` is followed),
    with bidirectional controls made visible."""

    def __init__(self, stream: Callable[[], TextIO]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream().write(visible(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream(), name)


def __getattr__(name: str) -> Any:
    """``err`` and ``out``, the two consoles, made on first use: rich is not imported (≈40 ms) by what
    prints nothing through them (``--help``, a ``run --json`` that succeeds)."""
    if name not in ("err", "out"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    if name == "err":
        made = Console(file=_Visible(lambda: sys.stderr), highlight=False, soft_wrap=True)  # type: ignore[arg-type]
    else:  # pipes: no wrap at 80
        made = Console(file=_Visible(lambda: sys.stdout), highlight=False, soft_wrap=True,  # type: ignore[arg-type]
                       width=None if sys.stdout.isatty() else 160)
    globals()[name] = made
    return made


class BadInput(Exception):
    """Wrong arguments: message printed, exit 2."""


def router_for(args: argparse.Namespace, offline: bool = False, config: Any = None) -> Any:
    from free_llm_agent.providers import NoUsableProvider, Router
    from free_llm_agent.storage.errors import StateUnavailable
    from free_llm_agent.storage.registry import resolve_database_url

    config = config or load_config(getattr(args, "config_dir", None))
    try:
        router, notices = Router.from_config(config, resolve_home(getattr(args, "home", None)), offline=offline,
                                             database_url=resolve_database_url(getattr(args, "database_url", None)))
    except StateUnavailable as exc:
        raise BadInput(str(exc)) from None
    except NoUsableProvider:
        if not offline:
            raise
        router = None
    if offline and (router is None or not router.candidates("general")):
        raise BadInput(f"--offline needs a local provider: enable ollama (or another entry with local: true) "
                       f"in {providers_file(args, config)}")
    _print_notices(args, config, notices)
    return router


def _print_notices(args: argparse.Namespace, config: Any, notices: list[str]) -> None:
    """Key warnings (always: they are on stderr), then one line for every provider without a key, naming
    the command that sets one (not with ``--json``), then the other notices."""
    from free_llm_agent.providers.keys import WARNING, first_key_var

    def show(line: str, style: str) -> None:
        __getattr__("err").print(line, style=style, markup=False)  # rich only when there is something to say

    for warning in (n for n in notices if n.startswith(WARNING)):
        show(warning, "yellow")
    if getattr(args, "json", False):
        return
    names = [m[1] for n in notices if (m := re.match(r"skipping (\S+):", n))]
    if names:
        show(f"no key for {', '.join(names)} (set one with: "
             f"{hint(args, 'keys', 'set', str(first_key_var(config, names)))})", "dim")
    for notice in (n for n in notices if not n.startswith(("skipping ", WARNING))):
        show(notice, "dim")


def database_url(args: argparse.Namespace) -> str | None:
    """``--database-url``, else ``$FREE_AGENT_DATABASE_URL``, else None (SQLite files in the home)."""
    from free_llm_agent.storage.registry import resolve_database_url

    return resolve_database_url(getattr(args, "database_url", None))


def runner_for(args: argparse.Namespace) -> Any:
    """A :class:`runtime.runner.Runner` on the home and database the global flags name (no model needed)."""
    from free_llm_agent.runtime.runner import Runner
    from free_llm_agent.storage.errors import StateUnavailable

    try:
        return Runner(resolve_home(getattr(args, "home", None)), database_url=database_url(args))
    except StateUnavailable as exc:
        raise BadInput(str(exc)) from None


def resume_hint(args: argparse.Namespace, thread_id: str) -> str:
    """The resume command with every global flag that was given, so it can be copied as is. A demo's thread
    cannot be resumed (its scripted server ends with it): there, the command that starts the demo again."""
    if getattr(args, "demo", False):
        return f"{program()} demo (starts it again)"
    return hint(args, "resume", shlex.quote(thread_id))


def hint(args: argparse.Namespace, *words: str) -> str:
    flags = [f"--{name.replace('_', '-')} {shlex.quote(str(getattr(args, name)))}"
             for name in ("config_dir", "home", "database_url") if getattr(args, name, None)
             and not (name == "database_url" and _has_password(str(getattr(args, name))))]  # never print a password
    return " ".join([program(), *flags, *words])


def _has_password(url: str) -> bool:
    """Whether ``url`` carries a password (such a URL is left out of printed commands)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password is not None or "password=" in url
    except ValueError:
        return True


def program() -> str:
    """How the user started the CLI, as a command that works from where they are (cli/invocation.py)."""
    from free_llm_agent.cli.invocation import program as started_as

    return started_as()


def providers_file(args: argparse.Namespace, config: Any) -> str:
    """The providers.yaml to edit: the one in use, or (when that is the packaged defaults) a copy ``init`` writes."""
    if config.config_source == "packaged defaults":
        return ("your own providers.yaml (these are the packaged defaults; write a copy to edit with: "
                f"{hint(args, 'init')})")
    return str(config.config_dir / "providers.yaml")


def config_source_text(args: argparse.Namespace, source: str) -> str:
    """Why the config folder was used, for people (``source`` is one of config.CONFIG_SOURCES)."""
    return {"--config-dir": "from --config-dir", "FREE_AGENT_CONFIG_DIR": "from $FREE_AGENT_CONFIG_DIR",
            "user config folder": "your config folder",
            "packaged defaults": f"the packaged defaults; for a copy to edit: {hint(args, 'init')}"}.get(source, source)


def output_file(flag: str, value: str) -> Path:
    """Where ``--plot`` / ``-o`` writes, checked before any work: its folder must exist."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise BadInput(f"{flag} {value}: that is a folder; give a file name, e.g. {path / 'out.png'}")
    if not path.parent.is_dir():
        raise BadInput(f"{flag} {value}: the folder {path.parent} does not exist; create it "
                       f"(mkdir -p {shlex.quote(str(path.parent))}) or choose another path")
    return path


def write_failed(flag: str, path: Path, exc: Exception) -> BadInput:
    return BadInput(f"{flag} {path}: cannot write it ({exc}); choose another path")
