"""Keep sandboxed code from planting commands that git runs later, outside the sandbox.

Generated code may write anywhere in the working directory (WS); git, run there later by the user, executes
what a repository's config and hooks name (``core.fsmonitor`` on ``git status``, hooks on ``checkout``, ...).

* :func:`baseline` records at sandbox start every git dir's dangerous config entries (:data:`DANGEROUS`),
  hooks and ``.git`` links out of WS: what the user had. Those are never touched.
* :func:`neutralize`, after a task, finds every git dir under WS (``.git`` dirs, bare repos, WS itself,
  ``gitdir:``/``commondir`` targets inside WS) and removes what is new: a dangerous key is unset with
  ``git config --file`` (config is only ever parsed: from stdin, no includes, no repository); a new or
  changed hook becomes ``<name>.fla-disabled`` (mode 0644, symlinks renamed, never followed); a config git
  cannot parse, a symlinked one or a non-file becomes ``config.fla-quarantined``; a ``.git`` file or symlink
  pointing outside WS becomes ``.git.fla-disabled``. One report line per action. Hook managers' files (husky's
  ``.husky/``, ``.pre-commit-config.yaml``, lefthook's configs and scripts) next to a ``.git`` or in WS that are
  new or changed are only reported: they are the user's project files, run on the next commit.
* :mod:`tools.git_mask` keeps code from creating the root repository while the sandbox lives.

A task CAN ``git init``/``clone`` into a subfolder and commit there (harmless settings stay). It CANNOT
create or change the root ``.git`` (read-only), nor leave behind config that makes git run a command or
load other config, new or changed hooks (also in a kept ``core.hooksPath`` folder inside WS), or ``.git``
links to repositories outside WS. Limits: run :func:`neutralize` when no sandboxed process is alive (one
could re-plant afterwards); the walk lists at most ``limit`` folders (files do not count; a cut-short walk is
reported as a WARNING); loose-object folders (``objects/xx/``) are not searched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from free_llm_agent.tools.git_config import DANGEROUS, Entry, is_dangerous, parse, run_git

MAX_DIRS = 200_000
DISABLED = ".fla-disabled"
QUARANTINED = ".fla-quarantined"
WHY = "a task may not plant commands git runs"
_CONFIGS = ("config", "config.worktree")
_MAX_READ = 16 << 20
_FANOUT = re.compile(r"[0-9a-f]{2}")
_GIT_NAMES = frozenset({"HEAD", "commondir", "objects", "config", "refs"})
# Hook managers' files next to a .git (or in WS): husky runs .husky/<hook> (core.hooksPath=.husky/_), pre-commit
# and lefthook the commands their config names, lefthook also the scripts in .lefthook[-local]/. Only reported.
_MANAGER_FILES = (".pre-commit-config.yaml", ".pre-commit-config.yml", ".huskyrc", ".huskyrc.json", ".huskyrc.js",
                  "husky.config.js", *(f"{where}lefthook{local}.{ext}" for where in ("", ".", ".config/")
                                       for local in ("", "-local") for ext in ("yml", "yaml", "toml", "json", "jsonc")))
_MANAGER_DIRS = (".husky", ".lefthook", ".lefthook-local")
MANAGED = "hook managers run it on your next commit — review it before committing"
__all__ = ["DANGEROUS", "Baseline", "GitScan", "baseline", "find_git_dirs", "is_dangerous", "neutralize", "scan"]


@dataclass
class GitScan:
    """Every git dir under WS, the ``.git`` links pointing outside it, and whether the walk stopped early."""
    git_dirs: list[str] = field(default_factory=list)
    worktrees: dict[str, str] = field(default_factory=dict)  # git dir -> the folder a relative hooksPath uses
    outside: list[str] = field(default_factory=list)  # .git files/symlinks whose target is outside WS
    truncated: bool = False
    checked: int = 0  # folders listed


def _inside(path: str, ws: str) -> bool:
    return path == ws or path.startswith(ws.rstrip("/") + "/")


def _read(path: str, cap: int = _MAX_READ) -> bytes | None:
    """The bytes of a regular file, through symlinks (never blocks on a FIFO), or None."""
    with contextlib.suppress(OSError), os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_size <= cap:
            return f.read(cap + 1)[:cap]
    return None


def _gitlink_target(link: str) -> str | None:
    """The real path a ``.git`` file (``gitdir: X``) or symlink sends git to."""
    if os.path.islink(link) and not os.path.isfile(link):
        return os.path.realpath(link)
    data = _read(link, 65536)
    where = os.fsdecode(data[7:].strip()) if data and data.startswith(b"gitdir:") else ""
    return os.path.realpath(os.path.join(os.path.dirname(link), where)) if where else None  # as git resolves it


def scan(ws: Path | str, limit: int = MAX_DIRS) -> GitScan:
    """Walk WS breadth first (never following symlinks, not into loose-object folders) for git dirs, listing at
    most ``limit`` folders: files do not count (their names come with their folder's listing), and a ``.git``
    folder counts as found as soon as its parent is listed."""
    root = os.path.realpath(ws)
    out, links = GitScan(), []
    dirs: dict[str, str] = {}
    queue: deque[tuple[str, bool]] = deque([(root, False)])
    while queue:
        path, in_objects = queue.popleft()
        out.checked += 1
        names: set[str] = set()
        subdirs: list[str] = []
        with contextlib.suppress(OSError), os.scandir(path) as it:
            for e in it:
                if e.name in _GIT_NAMES:
                    names.add(e.name)
                with contextlib.suppress(OSError):
                    if not e.is_dir(follow_symlinks=False):
                        if e.name == ".git":
                            links.append(e.path)
                        continue
                    if e.name == ".git":
                        dirs.setdefault(e.path, path)
                    elif in_objects and _FANOUT.fullmatch(e.name):
                        continue
                    if len(subdirs) + len(queue) + out.checked < limit:
                        subdirs.append(e.name)
                    else:
                        out.truncated = True  # more folders than the walk may list
        dot_git = os.path.basename(path) == ".git"
        is_git = dot_git or ("HEAD" in names and (
            "commondir" in names or ("objects" in names and ("config" in names or "refs" in names))))
        if is_git:
            dirs.setdefault(path, os.path.dirname(path) if dot_git else path)
        queue.extend((os.path.join(path, name), is_git and name == "objects") for name in subdirs)
    for link in links:
        if (target := _gitlink_target(link)) is not None and _inside(target, root):
            dirs[target] = os.path.dirname(link)
        elif target is not None:
            out.outside.append(link)
    todo = list(dirs)
    while todo:  # a linked worktree's config and hooks live in its "commondir"
        gitdir = todo.pop()
        if common := (_read(os.path.join(gitdir, "commondir"), 65536) or b"").strip():
            target = os.path.realpath(os.path.join(gitdir, os.fsdecode(common)))
            if _inside(target, root) and target not in dirs:
                dirs[target] = target
                todo.append(target)
    out.git_dirs, out.worktrees = sorted(dirs), dirs
    return out


def find_git_dirs(ws: Path, limit: int = MAX_DIRS) -> list[Path]:
    """Every git dir under WS (see :func:`scan`, which also says whether the walk stopped early)."""
    return [Path(p) for p in scan(ws, limit).git_dirs]


def _digest(path: str) -> str | None:
    """What a config or hook file is: link target, mode and content hash (through symlinks), or None if gone."""
    try:
        link = f"link:{os.readlink(path)}:" if os.path.islink(path) else ""
        if (data := _read(path)) is None:
            return f"{link}not-a-file" if os.path.lexists(path) else None
        return f"{link}{os.stat(path).st_mode & 0o7777:o}:{hashlib.sha256(data).hexdigest()}"
    except OSError:
        return None


def _config_state(path: str) -> tuple[str, list[Entry] | None] | None:
    """(digest, dangerous entries or None if git cannot read it) of one config file; None if absent."""
    if (digest := _digest(path)) is None:
        return None
    entries = None if (data := _read(path)) is None else parse(data)
    return digest, None if entries is None else [(k, v) for k, v in entries if is_dangerous(k, v)]


def _hook_dirs(ws: str, gitdir: str, worktree: str, entries: Iterable[Entry]) -> list[str]:
    """``hooks/`` and the kept ``core.hooksPath`` folders inside WS (a task may change their files)."""
    paths = (os.path.realpath(os.path.join(worktree, os.path.expanduser(v)))
             for k, v in entries if k.lower() == "core.hookspath" and v)
    return list(dict.fromkeys([os.path.join(gitdir, "hooks"), *(p for p in paths if _inside(p, ws))]))


def _hook_files(ws: str, hooks: str, cap: int = 10_000) -> Iterator[str]:
    """Every non-sample file, symlink or other non-dir under a hooks folder (a symlinked folder itself too)."""
    stack = [hooks]
    if os.path.islink(hooks):
        yield hooks
        target = os.path.realpath(hooks)
        stack = [target] if _inside(target, ws) and os.path.isdir(target) else []
    while stack and cap > 0:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as it:
            for e in it:
                cap -= 1
                if e.name.endswith((".sample", DISABLED)):
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    yield e.path


@dataclass
class Baseline:
    """What the user had when the sandbox started (paths relative to WS)."""
    configs: dict[str, str] = field(default_factory=dict)  # config file -> digest
    entries: set[tuple[str, str, str | None]] = field(default_factory=set)  # (config file, key, value), dangerous
    hooks: dict[str, str | None] = field(default_factory=dict)  # hook file -> digest
    outside: dict[str, str | None] = field(default_factory=dict)  # .git file/symlink pointing outside WS -> digest
    managers: dict[str, str | None] = field(default_factory=dict)  # hook manager's file -> digest (sha256)
    reported: dict[str, str | None] = field(default_factory=dict)  # what neutralize reported: not again unchanged
    truncated: bool = False  # the walk stopped early: what it did not reach is judged by ctime against started
    started: float = 0.0

    def to_json(self) -> str:
        """Kept outside the sandbox while it lives, so a crash of the agent cannot launder what a task planted
        into the next sandbox's baseline (:meth:`from_json`)."""
        data = dataclasses.asdict(self)
        data["entries"] = sorted(list(e) for e in self.entries)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Baseline:
        data = json.loads(text)
        data["entries"] = {tuple(e) for e in data["entries"]}
        return cls(**data)


def _untouched(base: Baseline, path: str) -> bool:
    """After a truncated baseline walk: whether ``path`` (and a symlink's target) is older than the baseline.
    The kernel sets ctime on every change, rename and link; a task cannot backdate it."""
    if not base.truncated:
        return False
    try:
        ctime = os.lstat(path).st_ctime
        with contextlib.suppress(OSError):
            ctime = max(ctime, os.stat(path).st_ctime)
    except OSError:
        return False
    return ctime < base.started - 1  # the slack covers the kernel's coarse file clock


def _show(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _aside(ws: str, path: str, suffix: str) -> str | None:
    """Rename ``path`` (never following it) to a free ``<path>[.N]<suffix>``; the new path, or None."""
    parent = os.path.dirname(path)
    if os.path.realpath(parent) != parent or not _inside(parent, ws):
        return None  # a folder on the way was swapped for a symlink
    for new in (f"{path}{'' if n == 1 else f'.{n}'}{suffix}" for n in range(1, 100)):
        if not os.path.lexists(new):
            with contextlib.suppress(OSError):
                os.rename(path, new)
                return new
            return None
    return None


def _disable(ws: str, path: str, what: str, why: str = WHY) -> str:
    rel, new = _show(os.path.relpath(path, ws)), _aside(ws, path, DISABLED)
    if new is None:
        return f"git: could not disable {rel}; delete it before using git there"
    with contextlib.suppress(OSError):
        fd = os.open(new, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
    return f"git: disabled {what}{rel} ({why})"


def _fix_config(ws: str, path: str, rel: str, base: Baseline) -> tuple[list[str], list[Entry]]:
    """Report lines, and the dangerous entries left, after removing the new ones from one config file."""
    state = _config_state(path)
    if state is None or base.configs.get(rel) == state[0]:
        return [], [(k, v) for r, k, v in base.entries if r == rel]
    if rel not in base.configs and _untouched(base, path):
        return [], state[1] or []
    new = [(k, v) for k, v in state[1] or () if (rel, k, v) not in base.entries]
    if state[1] is not None and not new:
        return [], state[1]
    if state[1] is not None and not os.path.islink(path) and shutil.which("git"):
        for key, value in dict.fromkeys(new):
            run_git(["config", "--file", path, "--fixed-value", "--unset-all", key, value or ""])
        after = _config_state(path)
        if after is not None and after[1] is not None and all((rel, k, v) in base.entries for k, v in after[1]):
            return [f"git: removed {k} from {_show(rel)} ({WHY})" for k in dict.fromkeys(k for k, _ in new)], after[1]
    why = "git cannot read it" if state[1] is None else ", ".join(dict.fromkeys(k for k, _ in new))
    moved = _aside(ws, path, QUARANTINED)
    return [f"git: quarantined {_show(rel)} as {_show(os.path.basename(moved))} ({why}; {WHY})" if moved
            else f"git: could not clean {_show(rel)} ({why}); delete it before using git there"], []


def _managers(root: str, tops: Iterable[str], guarded: list[str]) -> Iterator[str]:
    """The hook managers' files in the folders ``tops`` (outside the hook folders already ``guarded``)."""
    for top in dict.fromkeys(tops):
        files = (os.path.join(top, name) for name in _MANAGER_FILES)
        yield from (f for f in files if os.path.lexists(f))
        skip = [*guarded, os.path.join(top, ".husky", "_")]  # husky's stubs: run only as core.hooksPath, guarded
        for folder in _MANAGER_DIRS:
            yield from (f for f in _hook_files(root, os.path.join(top, folder), 2_000)
                        if not any(_inside(f, d) for d in skip))


def _check_managers(root: str, tops: Iterable[str], guarded: list[str], base: Baseline | None, rec: Baseline
                    ) -> Iterator[str]:
    """Record the hook managers' files; with ``base``, report those it does not have (never touching them)."""
    for path in _managers(root, tops, guarded):
        rel, digest = os.path.relpath(path, root), _digest(path)
        rec.managers[rel] = digest
        if base is None or digest is None or base.managers.get(rel) == digest or base.reported.get(rel) == digest:
            continue
        if rel not in base.managers and _untouched(base, path):
            continue
        base.reported[rel] = digest
        how = "changed" if base.managers.get(rel) is not None else "created"
        yield f"git: {_show(rel)} was {how} by the task; {MANAGED}"


def _survey(ws: Path, base: Baseline | None, limit: int) -> tuple[Baseline, list[str]]:
    """Record every git dir's dangerous entries and hooks; with ``base``, first remove what it does not have."""
    root, rec, lines = os.path.realpath(ws), Baseline(started=time.time()), []
    found = scan(root, limit)
    rec.truncated = found.truncated
    for link in found.outside:
        rel, digest = os.path.relpath(link, root), _digest(link)
        if base is not None and base.outside.get(rel) != digest and not (
                rel not in base.outside and _untouched(base, link)):
            lines.append(_disable(root, link, "", f"it pointed git outside the working directory; {WHY}"))
        rec.outside[rel] = digest
    guarded: list[str] = []
    for gitdir in found.git_dirs:
        try:
            kept: list[Entry] = []
            for path in (os.path.join(gitdir, name) for name in _CONFIGS):
                rel, left = os.path.relpath(path, root), list[Entry]()
                if base is not None:
                    more, left = _fix_config(root, path, rel, base)
                    lines += more
                elif (state := _config_state(path)) is not None:
                    rec.configs[rel], left = state[0], state[1] or []
                rec.entries |= {(rel, k, v) for k, v in left}
                kept += left
            hook_dirs = _hook_dirs(root, gitdir, found.worktrees.get(gitdir, gitdir), kept)
            guarded += hook_dirs
            for hook in (h for d in dict.fromkeys(hook_dirs) for h in _hook_files(root, d)):
                rel, digest = os.path.relpath(hook, root), _digest(hook)
                if base is not None and base.hooks.get(rel) != digest and not (
                        rel not in base.hooks and _untouched(base, hook)):
                    lines.append(_disable(root, hook, "hook "))
                else:
                    rec.hooks[rel] = digest
        except (OSError, ValueError, UnicodeError) as exc:
            lines.append(f"git: could not check {_show(os.path.relpath(gitdir, root))} ({exc})")
    tops = [root, *found.worktrees.values(), *(os.path.dirname(link) for link in found.outside)]
    lines += _check_managers(root, tops, guarded, base, rec)
    if found.truncated:
        lines.append(f"git: WARNING: the working directory was too large to check fully for planted git settings "
                     f"(only {found.checked} directories were checked); check it before using git there")
    return rec, list(dict.fromkeys(lines))


def baseline(ws: Path, limit: int = MAX_DIRS) -> Baseline:
    """Record the user's dangerous config entries, hooks, hook managers' files and outside ``.git`` links."""
    return _survey(ws, None, limit)[0]


def neutralize(ws: Path, base: Baseline, limit: int = MAX_DIRS) -> list[str]:
    """Remove every dangerous config entry, hook and outside ``.git`` link that is not in ``base``; report the hook
    managers' files that are new or changed (once per change: ``base.reported`` remembers).

    One human-readable line per action (paths relative to WS). Idempotent; never raises on odd trees.
    Run it only when no sandboxed process is alive (one could re-plant afterwards)."""
    try:
        return _survey(ws, base, limit)[1]
    except Exception as exc:  # a last resort: the run's result must still reach the user
        return [f"git: could not check the working directory for git settings ({exc}); check it before using git"]
