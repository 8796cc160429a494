"""``init``: the user's config folder, with commented copies of the packaged ``providers.yaml`` and
``limits.yaml`` (config/user_files.py); a file that exists is kept unless ``--force``."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
from pathlib import Path

from free_llm_agent.cli.support import BadInput, err, hint, out
from free_llm_agent.config import ConfigError, load_config, user_config_dir
from free_llm_agent.config.loader import REPO_CONFIG_DIR
from free_llm_agent.config.user_files import USER_FILES, commented_copy


def init_target(args: argparse.Namespace) -> tuple[Path, str]:
    """Where ``init`` writes, and why: where the configuration would then be read from (``--config-dir``,
    else ``$FREE_AGENT_CONFIG_DIR``, else the user's config folder)."""
    if getattr(args, "config_dir", None):
        return Path(args.config_dir).expanduser(), "--config-dir"
    if chosen := os.environ.get("FREE_AGENT_CONFIG_DIR"):
        return Path(chosen).expanduser(), "$FREE_AGENT_CONFIG_DIR"
    return user_config_dir(), "your config folder"


def cmd_init(args: argparse.Namespace) -> int:
    target, why = init_target(args)
    if target.resolve() == REPO_CONFIG_DIR.resolve():
        raise BadInput(f"{target} ({why}) is the packaged defaults' folder; init writes a copy to edit elsewhere: "
                       "pass --config-dir DIR or unset FREE_AGENT_CONFIG_DIR")
    if target.exists() and not target.is_dir():
        raise BadInput(f"{target} ({why}) is a file, not a folder; move it away or pass --config-dir DIR")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{target} ({why}): cannot create it ({exc.strerror}); choose another folder with "
                       "--config-dir DIR") from None
    for name in USER_FILES:
        _write_one(target / name, commented_copy(name), args.force)
    out.print(f"Config folder: {target} ({why}); `check` shows the folder in use.", markup=False)
    if why == "--config-dir":
        quoted = shlex.quote(str(target))
        out.print(f"Pass --config-dir {quoted} to every command, or set FREE_AGENT_CONFIG_DIR={quoted}.", markup=False)
    _next_steps(args, target)
    return 0


def _write_one(path: Path, text: str, force: bool) -> None:
    """Write ``path`` (atomically) unless it exists and ``force`` is off; say what was done."""
    if path.exists() and not path.is_file():
        raise BadInput(f"{path} is not a file; move it away and run init again")
    if path.exists() and not force:
        out.print(f"kept   {path} (it exists; --force writes it again, keeping the old one as {path.name}.bak)",
                  markup=False)
        return
    try:
        backup = None
        if path.exists() and path.read_bytes() != text.encode("utf-8"):
            backup = path.with_name(path.name + ".bak")
            shutil.copy2(path, backup)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write it ({exc.strerror}); fix the folder's permissions or pass "
                       "--config-dir DIR") from None
    out.print(f"wrote  {path}" + (f" (the old one is now {backup.name})" if backup else ""), markup=False)


def _next_steps(args: argparse.Namespace, target: Path) -> None:
    """The key to set first (the first provider routing tries that has none), then ``check``."""
    from free_llm_agent.providers.keys import first_keyed

    try:
        config = load_config(target)
    except ConfigError as exc:  # a kept file the user broke: say so, the rest of init worked
        err.print(f"warning: the configuration there does not load yet:\n{exc}", style="yellow", markup=False)
        return
    missing = first_keyed(config, unset_only=True)
    check = hint(args, "check")
    if missing is not None:
        where = f" (get one at {missing.signup_url})" if missing.signup_url else ""
        out.print(f"Next: store a key{where}:\n  {hint(args, 'keys', 'set', str(missing.api_key_env))}",
                  markup=False)
        out.print(f"Then: {check}", markup=False)
    else:
        out.print(f"Next: {check}", markup=False)
    out.print(f"No key? A local model works too: see the Ollama notes at the top of {target / 'providers.yaml'}.",
              markup=False)
