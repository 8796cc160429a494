"""``keys set NAME`` (the value from a prompt that does not echo, or from stdin) into the home's ``.env``, and
``keys list`` (which key variables are set, masked, and where each was found)."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from typing import Any

from free_llm_agent.cli.support import BadInput, config_source_text, err, hint, out, providers_file
from free_llm_agent.config import AppConfig, ProviderConfig, load_config, resolve_home
from free_llm_agent.config.env_file import env_source, home_env_file, repo_env_file
from free_llm_agent.config.env_write import ENV_NAME, MAX_VALUE_CHARS, value_problem, write_env_entry
from free_llm_agent.providers.key_formats import key_problems
from free_llm_agent.providers.keys import first_keyed, key_vars

SHOWN_FROM = 20  # keys at least this long show their first and last 4 characters; shorter ones only "…"


def cmd_keys(args: argparse.Namespace) -> int:
    return cmd_keys_set(args) if args.keys_command == "set" else cmd_keys_list(args)


def readers(config: AppConfig, var: str) -> list[tuple[str, ProviderConfig]]:
    """The providers (name, entry) whose key is read from ``var``."""
    return [(name, cfg) for name, cfg in config.providers.items() if var in key_vars(cfg)]


def known_vars(config: AppConfig) -> list[str]:
    """Every variable a configured provider reads its key from, in the file's order."""
    return list(dict.fromkeys(var for cfg in config.providers.values() for var in key_vars(cfg)))


def mask(value: str) -> str:
    """``gsk_…wxyz``; only ``…`` for a short key (or one whose ends are not plain characters)."""
    ends = value[:4] + value[-4:]
    if len(value) >= SHOWN_FROM and ends.isascii() and ends.isprintable():
        return f"{value[:4]}…{value[-4:]}"
    return "…"


# ------------------------------------------------------------------ keys set


def cmd_keys_set(args: argparse.Namespace) -> int:
    name = args.name
    if not ENV_NAME.fullmatch(name):
        raise BadInput(f"{name!r} is not an environment variable name (letters, digits and _, not starting "
                       "with a digit), e.g. GROQ_API_KEY")
    config = load_config(getattr(args, "config_dir", None))
    reading = readers(config, name)
    if not reading:
        _unknown_name(args, config, name)
    try:
        value = _read_value(name)
    except KeyboardInterrupt:
        err.print("cancelled: nothing was written", markup=False)
        return 130
    if not value:
        raise BadInput(f"{name}: no value given, nothing was written; type the key at the prompt, or pipe it in: "
                       f"printf '%s' \"$KEY\" | {hint(args, 'keys', 'set', name)}")
    if (problem := value_problem(value)) is not None:
        raise BadInput(f"{name}: {problem}; nothing was written")
    for warning in key_problems(name, value, reading, config):
        err.print(f"warning: {warning}", style="yellow", markup=False)
    path = write_env_entry(resolve_home(getattr(args, "home", None)) / ".env", name, value)
    out.print(f"{name} saved in {path} ({len(value)} characters; the file is readable by you only)", markup=False)
    earlier = os.environ.get(name, "")
    source = env_source(name)
    if earlier.strip() and earlier != value and (source is None or source.resolve() != path):
        where = "your environment" if source is None else str(source)
        err.print(f"note: {name} is also set in {where}, which is read before {path} and wins; "
                  f"remove it there for the new key to be used", style="yellow", markup=False)
    if reading and not any(cfg.enabled for _, cfg in reading):
        names = ", ".join(name for name, _ in reading)
        err.print(f"note: {names} (reading {name}) is disabled: set enabled: true for it in "
                  f"{providers_file(args, config)}", style="yellow", markup=False)
    out.print(f"Check that it works: {hint(args, 'check')}", markup=False)
    return 0


def _unknown_name(args: argparse.Namespace, config: AppConfig, name: str) -> None:
    """``name`` is read by no configured provider: exit 2 with the name meant (a typo would store a key
    nothing reads), unless ``--force``, which writes it with a warning."""
    known = known_vars(config)
    where = config.config_dir / "providers.yaml"
    if args.force:
        err.print(f"warning: no provider in {where} reads {name}; storing it anyway (--force)",
                  style="yellow", markup=False)
        return
    close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
    meant = f"did you mean {close[0]}? " if close else ""
    raise BadInput(f"no provider in {where} reads its key from {name}; {meant}the key variables are "
                   f"{', '.join(known) or '(none)'}; --force stores {name} anyway")


def _read_value(name: str) -> str:
    """The key: from a prompt that does not echo when stdin is a terminal, else all of stdin; without the
    whitespace around it (the trailing newline of ``echo``)."""
    stdin = sys.stdin
    if stdin is None:
        return ""
    try:
        if stdin.isatty():
            import getpass

            try:
                value = getpass.getpass(f"{name} (what you type is not shown): ")
            except EOFError:
                value = ""
        else:
            value = stdin.read(MAX_VALUE_CHARS + 1)
    except UnicodeDecodeError:
        raise BadInput(f"{name}: the value is not UTF-8 text; nothing was written") from None
    return value.strip()


# ------------------------------------------------------------------ keys list


def key_rows(config: AppConfig) -> list[dict[str, Any]]:
    """One row per key variable of the configured providers (an alias such as GEMINI_API_KEY only when it
    is set): the providers reading it, whether it is set, its masked value, where it was found."""
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in config.providers.items():
        for var in key_vars(cfg):
            alias = var != cfg.api_key_env
            value = os.environ.get(var, "").strip()
            if alias and not value:
                continue
            row = rows.setdefault(var, {"variable": var, "providers": [], "enabled": False, "set": bool(value),
                                        "value": mask(value) if value else None,
                                        "source": _source(var) if value else None,
                                        "alias_of": cfg.api_key_env if alias else None, "warnings": []})
            row["providers"].append(name)
            row["enabled"] = row["enabled"] or cfg.enabled
    for var, row in rows.items():
        if row["set"]:
            row["warnings"] = key_problems(var, os.environ[var], readers(config, var), config)
    return list(rows.values())


def _source(var: str) -> str:
    found = env_source(var)
    return "environment" if found is None else str(found)


def read_order(args: argparse.Namespace) -> list[str]:
    """Where keys are read from, first first (each wins over those after it), as load_env_files reads them."""
    repo = repo_env_file()
    return ["environment", *([str(repo)] if repo is not None else []), str(home_env_file(getattr(args, "home", None)))]


def cmd_keys_list(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    config = load_config(getattr(args, "config_dir", None))
    rows = key_rows(config)
    order = read_order(args)
    for row in rows:
        for warning in row["warnings"]:
            err.print(f"warning: {warning}", style="yellow", markup=False)
    if args.json:
        print(json.dumps({"keys": rows, "read_order": order, "home_env": order[-1],
                          "config": {"dir": str(config.config_dir), "source": config.config_source}}))
        return 0
    table = Table("variable", "providers", "value", "found in")
    for row in rows:
        providers = ", ".join(row["providers"]) + ("" if row["enabled"] else " (disabled)")
        variable = row["variable"] + (f" (alias of {row['alias_of']})" if row["alias_of"] else "")
        table.add_row(Text(variable), Text(providers), Text(row["value"] or "not set", style="" if row["set"]
                                                            else "dim"), Text(row["source"] or ""))
    out.print(table)
    home_env = order[-1]
    files = [p if p != home_env or os.path.isfile(p) else f"{p} (not there yet)" for p in order[1:]]
    out.print(f"Read in this order, the first that sets a variable wins: the environment, {', '.join(files)}",
              markup=False)
    why = config_source_text(args, config.config_source)
    out.print(f"Providers from {config.config_dir / 'providers.yaml'} ({why})", markup=False)
    first = first_keyed(config, unset_only=True)  # the one routing tries first, as init and check name it
    if first is not None:
        out.print(f"Store a key with: {hint(args, 'keys', 'set', str(first.api_key_env))}", markup=False)
    return 0

