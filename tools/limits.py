"""Resource limits for one sandbox: memory, tasks, size of the private /tmp.

A sandbox (the executor's Python worker, its Jupyter kernel, bash, and whatever task code starts) gets one
:class:`ResourceBox` per start, joined through a command prefix (:meth:`ResourceBox.prefix`) put before the
sandbox command: the first process and everything it starts is inside from its first instruction, with no
``preexec_fn`` (the agent spawns from a thread). Every prefix execs, so the started pid stays the sandbox's.

* ``execution.memory_mb`` bounds the memory of the whole sandbox together; pages of the private /tmp (a
  tmpfs) are charged to the box too. The box gets no swap (v1 ``memory.memsw``, v2 ``memory.swap.max=0``,
  systemd ``MemorySwapMax=0``): going over the limit OOM-kills a process in the box instead of swapping
  the machine to death.
* ``execution.max_processes`` bounds *tasks* as the pids controller counts them: processes **and
  threads**. A fork or thread start beyond it fails with EAGAIN.
* ``execution.tmp_mb`` is enforced by the caller (bubblewrap ``--size`` on the /tmp tmpfs); only reported here.

Backends, best first, checked once per process by actually trying (:func:`detect`); memory and tasks may
come from different ones:

``cgroup-v1``   writable v1 ``memory`` / ``pids`` hierarchies (a child of our own cgroup, else of the root);
``cgroup-v2``   a delegated v2 cgroup whose ``cgroup.subtree_control`` has ``memory`` / ``pids``;
``systemd-run`` ``systemd-run --user --scope`` with ``MemoryMax`` / ``TasksMax`` (most laptops);
``rlimit``      ``prlimit``: RLIMIT_DATA per process (not the total), RLIMIT_NPROC per *user* (ignored for root).

Boxes are cgroups named ``free-llm-agent-<pid>-<n>[-hint]``; :func:`sweep` removes empty ones of dead agents.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from free_llm_agent.tools.cgroups import CONTROLLER, NAME_PREFIX, Backends, CgroupFS, detect

__all__ = ["Backends", "CgroupFS", "Limits", "ResourceBox", "detect", "enforcement", "probe", "sweep"]

MB = 1024 * 1024
DEFAULTS = {"memory_mb": 1024, "max_processes": 256, "tmp_mb": 256}
KINDS = ("memory", "processes")
_CONFIG_KEY = {"memory": "memory_mb", "processes": "max_processes"}
_LEFTOVER = re.compile(rf"^{NAME_PREFIX}-(\d+)-")
# Writes its own pid into every cgroup.procs given before "--", then becomes the command (same pid).
_JOIN = ('while [ "$1" != -- ]; do echo $$ > "$1" || { echo "free-llm-agent: cannot join $1" >&2; exit 125; }; '
         'shift; done; shift; exec "$@"')
_counter = itertools.count(1)


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use; None or 0 means no limit."""

    memory_mb: int | None = DEFAULTS["memory_mb"]
    max_processes: int | None = DEFAULTS["max_processes"]  # tasks: processes and threads
    tmp_mb: int | None = DEFAULTS["tmp_mb"]

    @classmethod
    def from_config(cls, execution: object) -> Limits:
        """From the ``execution`` config section (a model or a mapping); missing keys get the defaults."""
        def pick(key: str) -> int | None:
            get = execution.get if isinstance(execution, Mapping) else lambda *a: getattr(execution, *a)
            return int(value) if (value := get(key, DEFAULTS[key])) else None
        return cls(*map(pick, DEFAULTS))

    def value(self, kind: str) -> int | None:
        return (self.memory_mb if kind == "memory" else self.max_processes) or None


def _text(kind: str, limits: Limits, how: str, b: Backends, note: str = "") -> str:
    value, ctrl = limits.value(kind), CONTROLLER[kind]
    if not value:
        return f"not enforced: execution.{_CONFIG_KEY[kind]} is 0 (no limit)"
    if how == "rlimit":
        return (f"{value} MB per process, not in total (RLIMIT_DATA via prlimit)" if kind == "memory"
                else f"about {value} more tasks of this user (RLIMIT_NPROC via prlimit, counted per user)")
    if how == "none":
        last = "RLIMIT_NPROC does not apply to root" if kind == "processes" and b.root and b.prlimit else "no prlimit"
        return f"not enforced: {note or f'no writable {ctrl} cgroup, no systemd-run --user scope, {last}'}"
    how = f"cgroup {how[-2:]} {ctrl}" if how.startswith("cgroup") else f"systemd-run scope {ctrl.title()}Max"
    if kind == "memory":
        return f"{value} MB for the whole sandbox ({how})"
    return f"{value} tasks, threads included ({how.replace('PidsMax', 'TasksMax')})"


def _with_tmp(out: dict[str, str], limits: Limits) -> dict[str, str]:
    tmp = f"{limits.tmp_mb} MB (tmpfs size)" if limits.tmp_mb else "not enforced: execution.tmp_mb is 0 (no limit)"
    return {**out, "tmp": tmp}


def enforcement(limits: Limits, fs: CgroupFS | None = None) -> dict[str, str]:
    """What a box with ``limits`` would enforce here and how (same shape as :meth:`ResourceBox.describe`)."""
    b = detect(fs)
    return _with_tmp({kind: _text(kind, limits, b.backend_for(kind), b) for kind in KINDS}, limits)


def probe(fs: CgroupFS | None = None) -> str:
    """The backend(s) of this machine, e.g. "cgroup-v1" or "memory: rlimit, processes: none"."""
    mem, tasks = (detect(fs).backend_for(kind) for kind in KINDS)
    return mem if mem == tasks else f"memory: {mem}, processes: {tasks}"


def _ints(text: str) -> list[int]:
    return [int(word) for word in text.split() if word.isdigit()]


def _field(text: str, name: str) -> int | None:
    """``name N`` in a flat-keyed control file (memory.oom_control, memory.events)."""
    values = [int(parts[1]) for parts in map(str.split, text.splitlines()) if parts[:1] == [name] and len(parts) == 2]
    return values[0] if values else None


class ResourceBox:
    """The limits of one sandbox start. ``prefix()`` before the command, ``attach(pid)`` after the start,
    ``oom_kills()`` / ``memory_exceeded_since(mark)`` around a task, ``kill_all()`` and ``close()`` at the end."""

    def __init__(self, limits: Limits, backends: Backends, fs: CgroupFS, name: str) -> None:
        self.limits, self.backends, self.name, self._fs = limits, backends, name, fs
        self.how: dict[str, str] = {}  # kind -> backend used ("none" when not enforced)
        self.dirs: dict[str, Path] = {}  # "memory"/"pids" (v1) or "v2" -> the box's cgroup
        self.scope: Path | None = None  # systemd-run's scope cgroup, known after attach()
        self._notes: dict[str, str] = {}
        self._nproc_base = 0
        self._closed = False

    @classmethod
    def create(cls, limits: Limits, name_hint: str = "sandbox", *, fs: CgroupFS | None = None) -> ResourceBox:
        """Make the box's cgroups now. Never raises: a limit that cannot be set up falls back to ``rlimit``
        where that works, else is "not enforced" in :meth:`describe`."""
        backends, fs = detect(fs), fs or CgroupFS()
        hint = re.sub(r"[^a-z0-9_]+", "_", name_hint.lower())[:24].strip("_")
        name = "-".join(filter(None, [NAME_PREFIX, str(os.getpid()), str(next(_counter)), hint]))
        box = cls(limits, backends, fs, name)
        for kind in KINDS:
            value = limits.value(kind)
            how = backends.backend_for(kind) if value else "none"
            if value and how.startswith("cgroup"):
                try:
                    box._make_cgroup(kind, how, value)
                except OSError as exc:
                    box._notes[kind] = f"cannot set up the {how} cgroup ({exc})"
                    how = "rlimit" if backends.prlimit and (kind == "memory" or not backends.root) else "none"
            box.how[kind] = how
        if box.how["processes"] == "rlimit":
            box._nproc_base = fs.user_tasks()
        return box

    def _make_cgroup(self, kind: str, how: str, value: int) -> None:
        ctrl, size = CONTROLLER[kind], str(value * MB)
        key, parent = (ctrl, self.backends.v1.get(ctrl)) if how == "cgroup-v1" else ("v2", self.backends.v2)
        assert parent is not None
        path = self.dirs.get(key) or parent / self.name
        if key not in self.dirs:
            self._fs.mkdir(path)
            self.dirs[key] = path
        if ctrl == "pids":
            knobs = [("pids.max", str(value))]
        elif key == "v2":
            knobs = [("memory.max", size), ("memory.swap.max", "0")]
        else:  # memsw = memory + swap: the same number means no swap
            knobs = [("memory.limit_in_bytes", size), ("memory.memsw.limit_in_bytes", size)]
        try:
            self._fs.write(path / knobs[0][0], knobs[0][1])
        except OSError:
            if key != "v2":
                del self.dirs[key]
                self._removed(path)
            raise
        for knob, text in knobs[1:]:  # absent without swap accounting: nothing to turn off then
            with contextlib.suppress(OSError):
                self._fs.write(path / knob, text)

    def prefix(self) -> list[str]:
        """argv to put before the sandbox command (empty when nothing is enforced)."""
        argv: list[str] = []
        scoped = [kind for kind in KINDS if self.how.get(kind) == "systemd-run"]
        if scoped and self.backends.systemd_run:
            argv += [self.backends.systemd_run, "--user", "--scope", "--quiet", f"--unit={self.name}"]
            if "memory" in scoped:
                argv += ["-p", f"MemoryMax={self.limits.memory_mb}M", "-p", "MemorySwapMax=0"]
            if "processes" in scoped:
                argv += ["-p", f"TasksMax={self.limits.max_processes}"]
            argv.append("--")
        if self.dirs:
            argv += ["/bin/sh", "-c", _JOIN, "sh", *(str(d / "cgroup.procs") for d in self.dirs.values()), "--"]
        rlimits = []
        if self.how.get("memory") == "rlimit":
            rlimits.append(f"--data={(self.limits.memory_mb or 0) * MB}")
        if self.how.get("processes") == "rlimit":
            rlimits.append(f"--nproc={self._nproc_base + (self.limits.max_processes or 0)}")
        if rlimits and self.backends.prlimit:
            argv += [self.backends.prlimit, *rlimits, "--"]
        return argv

    def attach(self, pid: int) -> None:
        """After the start: find a systemd-run scope's cgroup from the sandbox's pid (a no-op otherwise)."""
        mount = self.backends.v2_mount if "systemd-run" in self.how.values() else None
        if mount is not None and (path := self._fs.cgroups(pid).get("", "").strip("/")):
            self.scope = mount / path

    def _cgroups(self) -> list[Path]:
        return [*self.dirs.values(), *([self.scope] if self.scope else [])]

    def pids(self) -> set[int]:
        """Processes in the box now (empty when the box has no cgroup)."""
        found: set[int] = set()
        for path in self._cgroups():
            with contextlib.suppress(OSError):
                found.update(_ints(self._fs.read(path / "cgroup.procs")))
        return found

    def oom_kills(self) -> int:
        """Processes the kernel killed in the box for memory so far (v1 without ``oom_kill``: limit hits)."""
        total = 0
        if mem := self.dirs.get("memory"):
            with contextlib.suppress(OSError):
                kills = _field(self._fs.read(mem / "memory.oom_control"), "oom_kill")
                total += kills if kills is not None else (_ints(self._fs.read(mem / "memory.failcnt")) or [0])[0]
        for path in filter(None, [self.dirs.get("v2"), self.scope]):
            with contextlib.suppress(OSError):
                total += _field(self._fs.read(path / "memory.events"), "oom_kill") or 0
        return total

    def memory_exceeded_since(self, mark: int) -> bool:
        """True when the OOM killer struck in the box after ``mark = box.oom_kills()`` was taken."""
        return self.oom_kills() > mark

    def kill_all(self, rounds: int = 200) -> bool:
        """SIGKILL everything in the box (v2: ``cgroup.kill``) until it is empty or ``rounds`` passes
        (10 ms apart) are over. True when empty; False also when the box has no cgroup to look into."""
        if not self._cgroups():
            return False
        for path in self._cgroups():
            with contextlib.suppress(OSError):
                self._fs.write(path / "cgroup.kill", "1")  # v2 since Linux 5.14
        for _ in range(rounds):
            if not (pids := self.pids()):
                return True
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        return not self.pids()

    def close(self) -> None:
        """Kill what is left and remove the box's cgroups (retrying briefly while processes are reaped).
        Never raises; a second call does nothing. A systemd scope is removed by systemd."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.pids():
                self.kill_all()
            left = list(self.dirs.values())
            for _ in range(100):
                if not (left := [path for path in left if not self._removed(path)]):
                    break
                time.sleep(0.01)
        except Exception:  # close must not fail the caller's cleanup
            pass

    def _removed(self, path: Path) -> bool:
        try:
            self._fs.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def describe(self) -> dict[str, str]:
        """Per limit: what is enforced and how, or "not enforced: <why>"."""
        return _with_tmp({kind: _text(kind, self.limits, self.how.get(kind, "none"), self.backends,
                                      self._notes.get(kind, "")) for kind in KINDS}, self.limits)


def sweep(fs: CgroupFS | None = None) -> list[Path]:
    """Remove empty boxes (and probes) left by agents whose pid is gone; returns what was removed."""
    b, fs = detect(fs), fs or CgroupFS()
    parents = [*b.v1.values(), *[fs.root / ctrl for ctrl in b.v1], *([b.v2] if b.v2 else [])]
    removed: list[Path] = []
    for parent in dict.fromkeys(parents):
        with contextlib.suppress(OSError):
            for path in sorted(parent.iterdir()):
                match = _LEFTOVER.match(path.name)
                if not match or not path.is_dir() or (fs.proc / match.group(1)).exists():
                    continue
                with contextlib.suppress(OSError):
                    if not _ints(fs.read(path / "cgroup.procs")):
                        fs.rmdir(path)
                        removed.append(path)
    return removed
