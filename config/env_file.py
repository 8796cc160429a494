"""Reading ``.env``: the keys a user keeps beside the repo, never overriding the environment.

Editors differ in what they write: UTF-8 with or without a byte-order mark, and UTF-16
(Windows Notepad's "Unicode") are all read. A file in another encoding is a
:class:`ConfigError` naming the file; a line that is not ``NAME=value`` is skipped with a
warning naming the file and the line (never its text, which may hold a key).
"""

from __future__ import annotations

import codecs
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

from free_llm_agent.config.errors import ConfigError
from free_llm_agent.config.loader import DEFAULT_HOME

REPO_DIR = Path(__file__).resolve().parent.parent
ENV_FILES_READ: list[Path] = []  # every .env this process loaded; the sandbox hides them
ENV_SOURCES: dict[str, tuple[Path, str]] = {}  # variable -> (the .env that set it, the value it set)
_log = logging.getLogger(__name__)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def encoding_of(raw: bytes) -> str:
    """The encoding a ``.env`` file's bytes are read with: its byte-order mark's, else UTF-8."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and len(raw) >= 2 and raw[1::2].count(0) > len(raw) // 4:
        encoding = "utf-16-le"  # UTF-16 without a BOM: every other byte of ASCII text is zero
    return encoding or "utf-8"


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode(encoding_of(raw))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read it as text ({exc.reason} at byte {exc.start}); save it as UTF-8 "
            "(in Notepad: Save as → Encoding: UTF-8)"
        ) from None


def _load(path: Path, warn: Callable[[str], None]) -> None:
    from dotenv import load_dotenv
    from dotenv.parser import parse_stream

    try:
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); fix its permissions or remove it") from None
    for binding in parse_stream(io.StringIO(text)):
        where = f"{path} line {binding.original.line}"
        if binding.error:
            warn(f"{where}: not NAME=value, ignored (quote values with spaces or #: NAME=\"a b\")")
        elif binding.key is not None and binding.value is None:
            warn(f"{where}: a name without =value, ignored (write NAME=value)")
    logging.getLogger("dotenv.main").disabled = True  # its own warning does not name the file; ours above does
    before = set(os.environ)
    try:
        load_dotenv(stream=io.StringIO(text), override=False)
    finally:
        logging.getLogger("dotenv.main").disabled = False
    ENV_SOURCES.update({name: (path, os.environ[name]) for name in set(os.environ) - before})


def env_source(name: str) -> Path | None:
    """The ``.env`` file ``name``'s value came from; None when it came from the environment (or is not set)."""
    found = ENV_SOURCES.get(name)
    return found[0] if found is not None and os.environ.get(name) == found[1] else None


def load_env_file(path: str | Path | None = None, warn: Callable[[str], None] | None = None) -> Path | None:
    """Load ``path`` (default: the nearest ``.env`` in the repo's folder or above it) without
    overriding variables already set; remember it so generated code never sees it. Lines that
    are not ``NAME=value`` go to ``warn`` (default: a logging warning)."""
    found = Path(path) if path else repo_env_file()
    if found is None or not found.is_file():
        return None
    _load(found, warn or _log.warning)
    if found.resolve() not in ENV_FILES_READ:
        ENV_FILES_READ.append(found.resolve())
    return found


def repo_env_file(repo_dir: Path | None = None) -> Path | None:
    """In a checkout, the nearest ``.env`` in its folder or above it (the first file :func:`load_env_files`
    reads). Installed (no ``pyproject.toml`` beside the package), none: the walk up from site-packages would
    reach an unrelated ``~/.env``; the home's ``.env`` is the place for keys then."""
    root = repo_dir or REPO_DIR
    if not (root / "pyproject.toml").is_file():
        return None
    return next((c for c in (folder / ".env" for folder in (root, *root.parents)) if c.is_file()), None)


def home_env_file(home: str | Path | None = None) -> Path:
    """``.env`` in the agent's home (``home``, else ``$FREE_AGENT_HOME``, else ``~/.free-llm-agent``):
    the second file :func:`load_env_files` reads, and the one ``keys set`` writes."""
    return Path(home or os.environ.get("FREE_AGENT_HOME") or DEFAULT_HOME).expanduser() / ".env"


def load_env_files(home: str | Path | None = None, warn: Callable[[str], None] | None = None) -> list[Path]:
    """What the CLI and the Python API both read, in this order, none overriding what is already set:
    the environment itself, then the repo's ``.env`` (or the nearest one above the repo), then
    ``.env`` in the agent's home (``home``, else ``$FREE_AGENT_HOME`` - which the first file may
    set - else ``~/.free-llm-agent``): the place for keys when the agent is installed as a tool."""
    found = [load_env_file(warn=warn)]
    chosen = home_env_file(home)
    if chosen.is_file():
        found.append(load_env_file(chosen, warn=warn))
    return [p for p in found if p is not None]
