"""The working directory of a run: which folders may be one, scratch folders, and the listing
that the plan and code prompts show (so plans name real files)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import deque
from pathlib import Path

from free_llm_agent.config.text import escaped

THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LISTING_ENTRIES = 60
LISTING_CHARS = 2500
_SKIP = {"__pycache__", "node_modules", ".git"}


class WorkdirError(ValueError):
    """A folder that cannot be a working directory; the message says why and what to do."""


def check_thread_id(thread_id: str) -> str:
    """``thread_id`` if it is a safe name (letters, digits, ``_ . -``, ≤ 64 chars), else ValueError."""
    if not THREAD_ID.match(thread_id) or ".." in thread_id:
        raise ValueError(f"thread id {thread_id!r}: use 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit (no '..')")
    return thread_id


def scratch_dir(home: Path, thread_id: str) -> Path:
    """A fresh folder for ``thread_id`` under ``HOME/workspaces``; never the home itself or outside it."""
    try:
        name = check_thread_id(thread_id)
    except ValueError:
        name = "t-" + hashlib.sha256(thread_id.encode()).hexdigest()[:16]
    root = (home / "workspaces").resolve()
    path = root / name
    if path.resolve().parent != root:  # a symlink planted in workspaces/
        raise WorkdirError(f"{path} is not a folder under {root}; remove it and try again")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_workdir(path: str | Path, home: Path, forbidden: tuple[str, ...] = (), *, sandboxed: bool = False) -> Path:
    """The resolved working directory, or WorkdirError: it must exist, be a writable folder, and not
    be the filesystem root, the user's home folder or above it, the agent's home or inside it (its
    scratch folders excepted), or inside one of the ``forbidden`` paths (credential folders).
    ``sandboxed``: writable by the sandboxed code, which runs without any capability (root's included)."""
    wd = Path(path).expanduser()
    if not wd.exists():
        raise WorkdirError(f"working directory {wd} does not exist; create it or pass another --workdir")
    if not wd.is_dir():
        raise WorkdirError(f"working directory {wd} is not a folder; pass a folder to --workdir")
    wd = wd.resolve()
    real_home = home.expanduser().resolve()
    scratch = real_home / "workspaces"
    if wd == real_home or (wd.is_relative_to(real_home) and not (wd.parent == scratch)):
        raise WorkdirError(f"working directory {wd} is inside the agent's home {real_home}; "
                           "pick a folder of yours, or --scratch for a fresh one")
    if wd == Path(wd.anchor):
        raise WorkdirError(f"working directory {wd} is the filesystem root; pick a project folder")
    user_home = Path.home().resolve()
    if user_home.is_relative_to(wd):
        raise WorkdirError(f"working directory {wd} is your home folder{'' if wd == user_home else ' or above it'}; "
                           "code could change every file of yours there: pick a project folder (--workdir DIR) "
                           "or --scratch")
    for hidden in forbidden:
        if wd.is_relative_to(os.path.realpath(hidden)):
            raise WorkdirError(f"working directory {wd} is inside {hidden}, which generated code must never "
                               "see; pick another folder")
    if not os.access(wd, os.W_OK):
        raise WorkdirError(f"working directory {wd} is not writable; pick a folder you can write to")
    if sandboxed:
        why = _sandbox_cannot_write(wd)
        if why:
            raise WorkdirError(f"working directory {wd} is not writable by the sandboxed code: {why}; "
                               "pick another folder (--workdir DIR or --scratch)")
    return wd


def _sandbox_cannot_write(folder: Path) -> str | None:
    """Why code without capabilities (the sandbox drops them all, root's too) cannot create files in
    ``folder``, judged by its owner, group and mode (as the kernel does without CAP_DAC_OVERRIDE)."""
    st = folder.stat()
    uid, mode = os.geteuid(), st.st_mode
    if st.st_uid == uid:
        ok, whose = bool(mode & 0o200) and bool(mode & 0o100), "you own it"
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        ok, whose = bool(mode & 0o020) and bool(mode & 0o010), "it belongs to your group"
    else:
        ok, whose = bool(mode & 0o002) and bool(mode & 0o001), f"it belongs to user id {st.st_uid}, not to you"
    if ok:
        return None
    root = " (you are root, but the sandbox drops root's capabilities)" if uid == 0 and st.st_uid != 0 else ""
    return f"{whose}{root} and its mode is {stat.filemode(mode)} ({mode & 0o777:o})"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def listing(path: Path, *, max_entries: int = LISTING_ENTRIES, max_chars: int = LISTING_CHARS) -> str:
    """Names and sizes under ``path``, breadth first, two levels deep, hidden files and .git left out;
    at most ``max_entries`` lines and ``max_chars`` characters (the rest is counted, not shown)."""
    lines: list[str] = []
    left = 0
    queue: deque[tuple[Path, int]] = deque([(path, 0)])
    while queue:
        folder, depth = queue.popleft()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: (not e.is_dir(follow_symlinks=False), e.name))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIP:
                continue
            rel = escaped(os.path.relpath(entry.path, path))  # a name that is not UTF-8 as \xNN escapes
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                line = f"{rel}/" if is_dir else f"{rel} ({_size(entry.stat(follow_symlinks=False).st_size)})"
            except OSError:
                continue
            if len(lines) >= max_entries or sum(map(len, lines)) + len(line) > max_chars:
                left += 1
                continue
            lines.append(line)
            if is_dir and depth < 1:
                queue.append((Path(entry.path), depth + 1))
    if not lines:
        return "(empty)"
    return "\n".join(lines) + (f"\n… and {left} more" if left else "")
