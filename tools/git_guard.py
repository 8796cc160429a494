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
  pointing outside WS becomes ``.git.fla-disabled``. One report line per action.
* :mod:`tools.git_mask` keeps code from creating the root repository while the sandbox lives.

A task CAN ``git init``/``clone`` into a subfolder and commit there (harmless settings stay). It CANNOT
create or change the root ``.git`` (read-only), nor leave behind config that makes git run a command or
load other config, new or changed hooks (also in a kept ``core.hooksPath`` folder inside WS), or ``.git``
links to repositories outside WS. Limits: run :func:`neutralize` when no sandboxed process is alive (one
could re-plant afterwards); the walk stops after ``limit`` entries (reported); loose-object folders
(``objects/xx/``) are not searched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_ENTRIES = 200_000
DISABLED = ".fla-disabled"
QUARANTINED = ".fla-quarantined"
WHY = "a task may not plant commands git runs"
_CONFIGS = ("config", "config.worktree")
_MAX_READ = 16 << 20
_FANOUT = re.compile(r"[0-9a-f]{2}")

# Config entries git executes, or that make it load other config or use another tree, as git's docs name them:
# "<x>" is any subsection, "[<x>]" an optional one, "*" any key. Section and key match case-insensitively, a
# subsection case-sensitively. The value says when: "always", "!" = the value starts with "!" (a shell
# command), "unplain" = the value is not a plain subcommand (aliases "!cmd" run a shell; "-c k=v cmd" sets
# any config first).
DANGEROUS: dict[str, str] = {
    # run by everyday commands (status, diff, log, commit, checkout, merge, add -p, fetch, push)
    "core.fsmonitor": "always", "core.hooksPath": "always", "core.pager": "always", "core.editor": "always",
    "sequence.editor": "always", "pager.*": "always", "diff.external": "always", "diff.<x>.textconv": "always",
    "diff.<x>.command": "always", "merge.<x>.driver": "always", "filter.<x>.clean": "always",
    "filter.<x>.smudge": "always", "filter.<x>.process": "always", "interactive.diffFilter": "always",
    "alias.*": "unplain", "submodule.<x>.update": "!", "hook.<x>.*": "always", "core.alternateRefsCommand": "always",
    # run when talking to remotes or signing
    "core.sshCommand": "always", "core.askPass": "always", "core.gitProxy": "always",
    "credential[.<x>].helper": "always", "remote.<x>.uploadpack": "always", "remote.<x>.receivepack": "always",
    "uploadpack.packObjectsHook": "always", "protocol.allow": "always", "protocol.ext.allow": "always",
    "gpg[.<x>].program": "always", "gpg.ssh.defaultKeyCommand": "always",
    # run by less common commands (difftool, mergetool, help --web, send-email, imap-send, instaweb, gui)
    "difftool.<x>.cmd": "always", "difftool.<x>.path": "always", "mergetool.<x>.cmd": "always",
    "mergetool.<x>.path": "always", "web.browser": "always", "browser.<x>.cmd": "always",
    "browser.<x>.path": "always", "man.<x>.cmd": "always", "man.<x>.path": "always",
    "sendemail[.<x>].smtpServer": "always", "sendemail[.<x>].toCmd": "always", "sendemail[.<x>].ccCmd": "always",
    "sendemail[.<x>].headerCmd": "always", "sendemail[.<x>].sendmailCmd": "always", "imap.tunnel": "always",
    "instaweb.httpd": "always", "instaweb.browser": "always", "guitool.<x>.cmd": "always",
    # load other config, or point git at another tree
    "include.path": "always", "includeIf.<x>.path": "always", "core.worktree": "always",
}


def _rule(pattern: str, when: str) -> tuple[str, str | None, str, str]:
    """(section, subsection: None | "*" any | "?" optional | literal, key or "*", when) of a DANGEROUS pattern."""
    m = re.fullmatch(r"(\w+)(\.<x>|\[\.<x>\]|\.\w+)?\.([\w*]+)", pattern)
    assert m is not None, pattern
    sub = {None: None, ".<x>": "*", "[.<x>]": "?"}.get(m[2], (m[2] or ".")[1:])
    return m[1].lower(), sub, m[3].lower(), when


_RULES = [_rule(pattern, when) for pattern, when in DANGEROUS.items()]
Entry = tuple[str, str | None]  # (key as git lists it, value or None for a bare "key")


def is_dangerous(key: str, value: str | None) -> bool:
    """Whether config ``key`` (``section[.subsection].name``) with ``value`` makes git run or load something."""
    section, _, rest = key.partition(".")
    sub: str | None
    sub, dot, name = rest.rpartition(".")
    sub = sub if dot else None
    for sec, want_sub, want_key, when in _RULES:
        if sec != section.lower() or want_key not in ("*", name.lower()) or want_sub not in (None, "*", "?", sub):
            continue
        if want_sub != "?" and (want_sub is None) != (sub is None):
            continue
        text = (value or "").lstrip()
        return when == "always" or (when == "!" and text.startswith("!")) or (
            when == "unplain" and not re.match(r"[A-Za-z0-9_]", text))
    return False


@dataclass
class GitScan:
    """Every git dir under WS, the ``.git`` links pointing outside it, and whether the walk stopped early."""
    git_dirs: list[str] = field(default_factory=list)
    worktrees: dict[str, str] = field(default_factory=dict)  # git dir -> the folder a relative hooksPath uses
    outside: list[str] = field(default_factory=list)  # .git files/symlinks whose target is outside WS
    truncated: bool = False


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


def scan(ws: Path | str, limit: int = MAX_ENTRIES) -> GitScan:
    """Walk WS breadth first (never following symlinks, not into loose-object folders) for git dirs."""
    root = os.path.realpath(ws)
    out, links, count = GitScan(), [], 0
    dirs: dict[str, str] = {}
    queue: deque[tuple[str, bool]] = deque([(root, False)])
    while queue:
        path, in_objects = queue.popleft()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        count += len(entries)
        if count > limit:
            out.truncated = True
            break
        names, dot_git = {e.name for e in entries}, os.path.basename(path) == ".git"
        is_git = dot_git or ("HEAD" in names and (
            "commondir" in names or ("objects" in names and ("config" in names or "refs" in names))))
        if is_git:
            dirs.setdefault(path, os.path.dirname(path) if dot_git else path)
        for e in entries:
            with contextlib.suppress(OSError):
                if e.is_dir(follow_symlinks=False):
                    if not (in_objects and _FANOUT.fullmatch(e.name)):
                        queue.append((e.path, is_git and e.name == "objects"))
                elif e.name == ".git":
                    links.append(e.path)
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


def find_git_dirs(ws: Path, limit: int = MAX_ENTRIES) -> list[Path]:
    """Every git dir under WS (see :func:`scan`, which also says whether the walk stopped early)."""
    return [Path(p) for p in scan(ws, limit).git_dirs]


def _git(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    """Run git on a config file only: no repository, no system or global config, no inherited GIT_* settings."""
    if (exe := shutil.which("git")) is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_DIR=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    try:
        return subprocess.run([exe, *args], input=data, capture_output=True, cwd="/", env=env, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def _parse_fallback(text: str) -> list[Entry] | None:
    """A tolerant reader of git config for machines without git: every ``section.key`` and its value."""
    out: list[Entry] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r'\[\s*([A-Za-z0-9-]+)(?:\.([^\s\]]+)|\s+"((?:[^"\\]|\\.)*)")?\s*\]', line):
            sub = m[2].lower() if m[2] else None if m[3] is None else re.sub(r"\\(.)", r"\1", m[3])
            section, line = m[1].lower() + ("" if sub is None else "." + sub), line[m.end():].strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if section is None or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key.strip()):
            return None
        value = re.split(r"\s[#;]", value, maxsplit=1)[0].strip().replace('"', "")
        out.append((f"{section}.{key.strip().lower()}", value if eq else None))
    return out


def _parse(data: bytes) -> list[Entry] | None:
    """The entries of a config file's bytes (git's own parser, no includes), or None if unparsable."""
    if shutil.which("git") is None:
        return _parse_fallback(data.decode("utf-8", "surrogateescape"))
    res = _git(["config", "--file", "-", "--list", "--null", "--no-includes"], data)
    if res is None or res.returncode != 0:
        return None
    recs = (rec.decode("utf-8", "surrogateescape").partition("\n") for rec in res.stdout.split(b"\0") if rec)
    return [(key, value if nl else None) for key, nl, value in recs]


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
    entries = None if (data := _read(path)) is None else _parse(data)
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
    truncated: bool = False  # the walk stopped early: what it did not reach is judged by ctime against started
    started: float = 0.0


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
            _git(["config", "--file", path, "--fixed-value", "--unset-all", key, value or ""])
        after = _config_state(path)
        if after is not None and after[1] is not None and all((rel, k, v) in base.entries for k, v in after[1]):
            return [f"git: removed {k} from {_show(rel)} ({WHY})" for k in dict.fromkeys(k for k, _ in new)], after[1]
    why = "git cannot read it" if state[1] is None else ", ".join(dict.fromkeys(k for k, _ in new))
    moved = _aside(ws, path, QUARANTINED)
    return [f"git: quarantined {_show(rel)} as {_show(os.path.basename(moved))} ({why}; {WHY})" if moved
            else f"git: could not clean {_show(rel)} ({why}); delete it before using git there"], []


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
            for hook in (h for d in dict.fromkeys(hook_dirs) for h in _hook_files(root, d)):
                rel, digest = os.path.relpath(hook, root), _digest(hook)
                if base is not None and base.hooks.get(rel) != digest and not (
                        rel not in base.hooks and _untouched(base, hook)):
                    lines.append(_disable(root, hook, "hook "))
                else:
                    rec.hooks[rel] = digest
        except (OSError, ValueError, UnicodeError) as exc:
            lines.append(f"git: could not check {_show(os.path.relpath(gitdir, root))} ({exc})")
    if found.truncated:
        lines.append(f"git: checked only the first {limit} entries of the working directory for git settings")
    return rec, list(dict.fromkeys(lines))


def baseline(ws: Path, limit: int = MAX_ENTRIES) -> Baseline:
    """Record the user's dangerous config entries, hooks and outside ``.git`` links under WS."""
    return _survey(ws, None, limit)[0]


def neutralize(ws: Path, base: Baseline, limit: int = MAX_ENTRIES) -> list[str]:
    """Remove every dangerous config entry, hook and outside ``.git`` link that is not in ``base``.

    One human-readable line per action (paths relative to WS). Idempotent; never raises on odd trees.
    Run it only when no sandboxed process is alive (one could re-plant afterwards)."""
    try:
        return _survey(ws, base, limit)[1]
    except Exception as exc:  # a last resort: the run's result must still reach the user
        return [f"git: could not check the working directory for git settings ({exc}); check it before using git"]
