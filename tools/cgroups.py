"""How this machine lets the agent bound a sandbox's resources: cgroup v1 or v2 hierarchies it may write,
``systemd-run --user --scope``, ``prlimit`` — found by actually trying (:func:`detect`, once per process).
:class:`CgroupFS` is the host as detection sees it (tests pass a fake one). :mod:`tools.limits` builds the boxes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

NAME_PREFIX = "free-llm-agent"
CONTROLLER = {"memory": "memory", "processes": "pids"}  # a limit -> its cgroup controller
_counter = itertools.count(1)
_WHICH = "<which>"


class CgroupFS:
    """The host as detection sees it: cgroup mount root, /proc, helper binaries, uid. Tests pass a fake."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc"), *,
                 systemd_run: str | None = _WHICH, prlimit: str | None = _WHICH, uid: int | None = None) -> None:
        self.root, self.proc = Path(root), Path(proc)
        self.systemd_run = shutil.which("systemd-run") if systemd_run == _WHICH else systemd_run
        self.prlimit = shutil.which("prlimit") if prlimit == _WHICH else prlimit
        self.uid = os.getuid() if uid is None else uid

    def read(self, path: Path) -> str:
        return path.read_text()

    def write(self, path: Path, text: str) -> None:
        with open(os.open(path, os.O_WRONLY), "w") as file:  # never creates: a missing control file is an error
            file.write(text)

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def writable(self, path: Path) -> bool:
        return os.access(path, os.W_OK)

    def cgroups(self, pid: int | str = "self") -> dict[str, str]:
        """Controller -> cgroup path from /proc/<pid>/cgroup; the v2 entry is under key ""."""
        out: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            for line in self.read(self.proc / str(pid) / "cgroup").splitlines():
                _, ctrls, path = line.split(":", 2)
                out |= dict.fromkeys(ctrls.split(",") if ctrls else [""], path)
        return out

    def scope_works(self) -> bool:
        try:
            cmd = [self.systemd_run or "systemd-run", "--user", "--scope", "--quiet", "true"]
            return bool(self.systemd_run) and subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def user_tasks(self) -> int:
        """Tasks (threads) of our real uid: what RLIMIT_NPROC counts."""
        count = 0
        for status in self.proc.glob("[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError):
                fields = dict(line.split(":", 1) for line in self.read(status).splitlines() if ":" in line)
                if fields.get("Uid", "").split()[:1] == [str(self.uid)]:
                    count += int(fields.get("Threads", "1"))
        return count


@dataclass(frozen=True)
class Backends:
    """What works here: where boxes are made (per controller), and the helper binaries."""

    v1: dict[str, Path] = field(default_factory=dict)  # "memory"/"pids" -> parent dir for boxes
    v2: Path | None = None  # parent dir for boxes
    v2_controllers: frozenset[str] = frozenset()
    v2_mount: Path | None = None
    systemd_run: str | None = None  # only when a --user scope really starts
    prlimit: str | None = None
    root: bool = False

    def backend_for(self, kind: str) -> str:
        ctrl = CONTROLLER[kind]
        if ctrl in self.v1:
            return "cgroup-v1"
        if ctrl in self.v2_controllers:
            return "cgroup-v2"
        if self.systemd_run and not self.v2_controllers:  # a scope and our own v2 cgroup exclude each other
            return "systemd-run"
        return "rlimit" if self.prlimit and (kind == "memory" or not self.root) else "none"


def _try_child(fs: CgroupFS, parent: Path, knobs: Mapping[str, str]) -> bool:
    probe = parent / f"{NAME_PREFIX}-{os.getpid()}-{next(_counter)}-probe"
    try:
        fs.mkdir(probe)
        try:
            for knob, value in knobs.items():
                fs.write(probe / knob, value)
        finally:
            with contextlib.suppress(OSError):
                fs.rmdir(probe)
    except OSError:
        return False
    return True


def _v1_parent(fs: CgroupFS, ctrl: str, own: str | None) -> Path | None:
    top = fs.root / ctrl
    if not (top / "tasks").exists():  # not a v1 hierarchy of this controller
        return None
    knobs = {"memory.limit_in_bytes": "-1"} if ctrl == "memory" else {"pids.max": "max"}
    for parent in dict.fromkeys([top / (own or "").strip("/"), top]):
        if parent.is_dir() and _try_child(fs, parent, knobs):
            return parent
    return None


def _v2_parent(fs: CgroupFS, own: str | None) -> tuple[Path | None, frozenset[str], Path | None]:
    mount = next((m for m in (fs.root, fs.root / "unified") if (m / "cgroup.controllers").exists()), None)
    if mount is None or own is None:
        return None, frozenset(), None
    here = mount / own.strip("/")
    # Our own cgroup only works if it may hold processes and hand controllers down: the (namespace) root.
    # Else its parent: the no-internal-processes rule keeps controllers off a cgroup with processes.
    for parent in [here, here.parent] if own.strip("/") else [here]:
        try:
            if not fs.writable(parent / "cgroup.procs"):
                continue
            available = set(fs.read(parent / "cgroup.controllers").split()) & {"memory", "pids"}
            for ctrl in sorted(available - set(fs.read(parent / "cgroup.subtree_control").split())):
                with contextlib.suppress(OSError):
                    fs.write(parent / "cgroup.subtree_control", f"+{ctrl}")
            enabled = frozenset(set(fs.read(parent / "cgroup.subtree_control").split()) & available)
        except OSError:
            continue
        knobs = {f"{ctrl}.max": "max" for ctrl in enabled}
        if knobs and _try_child(fs, parent, knobs):
            return parent, enabled, mount
    return None, frozenset(), mount


def _detect(fs: CgroupFS) -> Backends:
    own = fs.cgroups()
    v1 = {ctrl: p for ctrl in ("memory", "pids") if (p := _v1_parent(fs, ctrl, own.get(ctrl))) is not None}
    v2, v2_ctrls, mount = _v2_parent(fs, own.get("")) if len(v1) < 2 else (None, frozenset[str](), None)
    need_scope = (set(v1) | v2_ctrls) != {"memory", "pids"} and not v2_ctrls
    return Backends(v1, v2, v2_ctrls, mount, fs.systemd_run if need_scope and fs.scope_works() else None,
                    fs.prlimit, fs.uid == 0)


_detected: Backends | None = None
_lock = threading.Lock()


def detect(fs: CgroupFS | None = None) -> Backends:
    """The backends of this machine (cached per process) or of ``fs`` (not cached)."""
    global _detected
    if fs is not None:
        return _detect(fs)
    with _lock:
        if _detected is None:
            _detected = _detect(CgroupFS())
        return _detected
