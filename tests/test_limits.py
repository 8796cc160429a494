"""tools.limits: backend detection on a fake cgroupfs, and real containment where this machine allows it.

The fake tests give :class:`CgroupFS` a temp root whose ``mkdir`` creates the control files the kernel
would (:class:`FakeKernel`). The real tests need writable cgroups (v1 or a delegated v2); each hog is
bounded: 600 MB at most (only inside a 200 MB box), 400 forks at most (inside a 64-task box).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from free_llm_agent.tools.limits import NAME_PREFIX, CgroupFS, Limits, ResourceBox, detect, enforcement, probe, sweep

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

V1_FILES = {"memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "-1",
                       "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "memory.failcnt": "0"},
            "pids": {"pids.max": "max"}}
V2_FILES = {"memory": {"memory.max": "max", "memory.swap.max": "max", "memory.events": "oom 0\noom_kill 0\n"},
            "pids": {"pids.max": "max"}}


class FakeKernel(CgroupFS):
    """A cgroupfs stand-in under ``tmp/cg`` (v1 hierarchies ``memory``/``pids``, else v2), /proc under
    ``tmp/proc``. ``mkdir`` makes the control files; ``readonly`` dirs refuse mkdir and writes below them;
    ``cgroup.subtree_control`` follows the no-internal-processes rule."""

    def __init__(self, tmp: Path, readonly: tuple[Path, ...] = (), **kw: object) -> None:
        kw.setdefault("systemd_run", None)
        kw.setdefault("prlimit", None)
        kw.setdefault("uid", 0)
        super().__init__(tmp / "cg", tmp / "proc", **kw)  # type: ignore[arg-type]
        self.readonly = set(readonly)
        self.namespace_root = False  # the real root cgroup may hold processes and enable controllers
        self.root.mkdir(exist_ok=True)

    def _kind(self, path: Path) -> str:
        first = path.relative_to(self.root).parts[:1]
        return first[0] if first and first[0] in V1_FILES and (self.root / first[0] / "tasks").exists() else "v2"

    def mkdir(self, path: Path) -> None:
        if path.parent in self.readonly:
            raise PermissionError(errno.EACCES, "read-only", str(path))
        path.mkdir()
        files = {"cgroup.procs": ""}
        kind = self._kind(path)
        if kind != "v2":
            files |= {"tasks": "", **V1_FILES[kind]}
        else:
            ctrls = (path.parent / "cgroup.subtree_control").read_text().split()
            files |= {"cgroup.controllers": " ".join(ctrls), "cgroup.subtree_control": "", "cgroup.kill": ""}
            for ctrl in ctrls:
                files |= V2_FILES.get(ctrl, {})
        for name, text in files.items():
            (path / name).write_text(text)

    def rmdir(self, path: Path) -> None:
        if (path / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, "busy", str(path))
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    def writable(self, path: Path) -> bool:
        return path.parent not in self.readonly

    def write(self, path: Path, text: str) -> None:
        if path.parent in self.readonly:
            raise PermissionError(errno.EACCES, "read-only", str(path))
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such control file", str(path))
        if path.name == "cgroup.subtree_control":
            ctrl = text.strip().lstrip("+")
            if ctrl not in (path.parent / "cgroup.controllers").read_text().split():
                raise OSError(errno.ENOENT, "no such controller")
            busy = (path.parent / "cgroup.procs").read_text().split()
            if busy and (path.parent != self.root or self.namespace_root):
                raise OSError(errno.EBUSY, "cgroup has processes")
            text = " ".join(sorted({*path.read_text().split(), ctrl}))
        path.write_text(text)

    def seed(self, rel: str, **files: str) -> Path:
        """Make ``rel`` (and its parents) like the kernel would, then set ``files`` (``__`` means ``.``)."""
        path = self.root
        for part in Path(rel).parts:
            path = path / part
            if not path.exists():
                super_readonly, self.readonly = self.readonly, set()
                self.mkdir(path)
                self.readonly = super_readonly
        for name, text in files.items():
            (path / name.replace("__", ".")).write_text(text)
        return path

    def proc_file(self, rel: str, text: str) -> None:
        target = self.proc / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def v1_host(tmp: Path, **kw: object) -> FakeKernel:
    fk = FakeKernel(tmp, **kw)  # type: ignore[arg-type]
    for ctrl in V1_FILES:
        top = fk.root / ctrl
        top.mkdir()
        for name, text in {"tasks": "1\n", "cgroup.procs": "1\n", **V1_FILES[ctrl]}.items():
            (top / name).write_text(text)
    fk.seed("memory/agents/me", cgroup__procs=f"{os.getpid()}\n")
    fk.proc_file("self/cgroup", "8:pids:/\n4:memory:/agents/me\n0::/\n")
    return fk


def v2_host(tmp: Path, *, delegated: bool, enabled: str = "memory pids", **kw: object) -> FakeKernel:
    fk = FakeKernel(tmp, **kw)  # type: ignore[arg-type]
    for name, text in {"cgroup.controllers": "cpu io memory pids", "cgroup.subtree_control": "memory pids",
                       "cgroup.procs": "1\n"}.items():
        (fk.root / name).write_text(text)
    fk.seed("user.slice", cgroup__subtree_control="memory pids")
    app = fk.seed("user.slice/app.slice", cgroup__subtree_control=enabled)
    fk.seed("user.slice/app.slice/term.scope", cgroup__procs=f"{os.getpid()}\n")
    fk.proc_file("self/cgroup", "0::/user.slice/app.slice/term.scope\n")
    if not delegated:
        fk.readonly.add(app)
    return fk


def fake_systemd_run(tmp: Path) -> str:
    script = tmp / "systemd-run"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return str(script)


# -- configuration -------------------------------------------------------------------------------------------

def test_limits_from_config() -> None:
    assert Limits.from_config({}) == Limits(1024, 256, 256)
    assert Limits.from_config({"memory_mb": 0, "max_processes": 64, "tmp_mb": None}) == Limits(None, 64, None)

    class Section:
        memory_mb = 512

    assert Limits.from_config(Section()) == Limits(512, 256, 256)


# -- detection and description on a fake cgroupfs ------------------------------------------------------------

def test_v1_detected_under_own_cgroup(tmp_path: Path) -> None:
    fk = v1_host(tmp_path, prlimit="/usr/bin/prlimit")
    b = detect(fk)
    assert b.v1 == {"memory": fk.root / "memory/agents/me", "pids": fk.root / "pids"}
    assert probe(fk) == "cgroup-v1"
    assert not [p for p in (fk.root / "memory/agents/me").iterdir() if p.name.startswith(NAME_PREFIX)]  # probe gone
    assert enforcement(Limits(), fk) == {"memory": "1024 MB for the whole sandbox (cgroup v1 memory)",
                                         "processes": "256 tasks, threads included (cgroup v1 pids)",
                                         "tmp": "256 MB (tmpfs size)"}

    box = ResourceBox.create(Limits(200, 64, 0), "Unit Test!", fs=fk)
    mem, pids = box.dirs["memory"], box.dirs["pids"]
    assert mem.parent == fk.root / "memory/agents/me" and mem.name.endswith("-unit_test")
    assert (mem / "memory.limit_in_bytes").read_text() == str(200 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(200 << 20)
    assert (pids / "pids.max").read_text() == "64"
    assert box.prefix() == ["/bin/sh", "-c", box.prefix()[2], "sh", str(mem / "cgroup.procs"),
                            str(pids / "cgroup.procs"), "--"]
    assert box.describe()["tmp"] == "not enforced: execution.tmp_mb is 0 (no limit)"
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert box.oom_kills() == 3 and box.memory_exceeded_since(2) and not box.memory_exceeded_since(3)
    box.close()
    assert not mem.exists() and not pids.exists()


def test_v1_falls_back_to_hierarchy_root_and_failcnt(tmp_path: Path) -> None:
    fk = v1_host(tmp_path)
    fk.readonly.add(fk.root / "memory/agents/me")
    assert detect(fk).v1["memory"] == fk.root / "memory"
    box = ResourceBox.create(Limits(100, None, None), fs=fk)
    assert set(box.dirs) == {"memory"} and box.how["processes"] == "none"
    assert box.describe()["processes"] == "not enforced: execution.max_processes is 0 (no limit)"
    (box.dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # old kernel
    (box.dirs["memory"] / "memory.failcnt").write_text("5\n")
    assert box.oom_kills() == 5
    box.close()


def test_create_falls_back_when_the_cgroup_cannot_be_made(tmp_path: Path) -> None:
    fk = v1_host(tmp_path, prlimit="/usr/bin/prlimit", uid=1000)
    probes_only = fk.mkdir

    def mkdir(path: Path) -> None:  # the probes work, the boxes do not (say, a limit on descendants)
        if not path.name.endswith("-probe"):
            raise OSError(errno.EAGAIN, "too many cgroups", str(path))
        probes_only(path)

    fk.mkdir = mkdir  # type: ignore[method-assign]
    box = ResourceBox.create(Limits(100, 8, None), fs=fk)
    assert box.how == {"memory": "rlimit", "processes": "rlimit"} and not box.dirs
    assert box.prefix() == ["/usr/bin/prlimit", f"--data={100 << 20}", "--nproc=8", "--"]
    fk.prlimit = None
    box = ResourceBox.create(Limits(100, 8, None), fs=fk)
    assert box.prefix() == [] and box.describe()["memory"].startswith("not enforced: cannot set up the cgroup-v1")


def test_v2_delegated(tmp_path: Path) -> None:
    fk = v2_host(tmp_path, delegated=True)
    app = fk.root / "user.slice/app.slice"
    b = detect(fk)
    assert (b.v2, b.v2_controllers, b.v2_mount) == (app, {"memory", "pids"}, fk.root)
    assert probe(fk) == "cgroup-v2"
    box = ResourceBox.create(Limits(300, 50, 10), "k", fs=fk)
    path = box.dirs["v2"]
    assert list(box.dirs) == ["v2"] and path.parent == app
    assert (path / "memory.max").read_text() == str(300 << 20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "pids.max").read_text() == "50"
    assert box.prefix()[-2:] == [str(path / "cgroup.procs"), "--"]
    assert box.describe() == {"memory": "300 MB for the whole sandbox (cgroup v2 memory)",
                              "processes": "50 tasks, threads included (cgroup v2 pids)", "tmp": "10 MB (tmpfs size)"}
    box.close()
    assert not path.exists()


def test_v2_enables_controllers_in_a_parent_without_processes(tmp_path: Path) -> None:
    fk = v2_host(tmp_path, delegated=True, enabled="")
    assert detect(fk).v2_controllers == {"memory", "pids"}
    assert (fk.root / "user.slice/app.slice/cgroup.subtree_control").read_text().split() == ["memory", "pids"]


def test_v2_busy_namespace_root_is_unavailable(tmp_path: Path) -> None:
    # A cgroup namespace's root holding our processes: no controllers can be enabled under it, no parent.
    fk = FakeKernel(tmp_path, prlimit="/usr/bin/prlimit", uid=0)
    fk.namespace_root = True
    root_files = {"cgroup.controllers": "memory pids", "cgroup.subtree_control": "", "cgroup.procs": "7\n"}
    for name, text in root_files.items():
        (fk.root / name).write_text(text)
    fk.proc_file("self/cgroup", "0::/\n")
    assert detect(fk).v2 is None
    assert probe(fk) == "memory: rlimit, processes: none"


def test_v2_not_delegated_uses_systemd_run(tmp_path: Path) -> None:
    fk = v2_host(tmp_path, delegated=False, systemd_run=fake_systemd_run(tmp_path))
    b = detect(fk)
    assert b.v2 is None and b.systemd_run and b.v2_mount == fk.root
    assert probe(fk) == "systemd-run"
    box = ResourceBox.create(Limits(200, 64, 256), fs=fk)
    argv = box.prefix()
    assert argv[:5] == [b.systemd_run, "--user", "--scope", "--quiet", f"--unit={box.name}"]
    assert argv[5:] == ["-p", "MemoryMax=200M", "-p", "MemorySwapMax=0", "-p", "TasksMax=64", "--"]
    assert box.describe()["memory"] == "200 MB for the whole sandbox (systemd-run scope MemoryMax)"
    assert box.oom_kills() == 0 and box.kill_all() is False  # scope unknown before attach()
    scope = fk.seed("user.slice/app.slice/run-x.scope", memory__events="oom 2\noom_kill 2\n")
    fk.proc_file("4242/cgroup", "0::/user.slice/app.slice/run-x.scope\n")
    box.attach(4242)
    assert box.scope == scope and box.oom_kills() == 2 and box.memory_exceeded_since(1)
    box.close()
    assert scope.exists()  # systemd's to remove


def test_v2_not_delegated_without_systemd_uses_rlimit(tmp_path: Path) -> None:
    fk = v2_host(tmp_path, delegated=False, prlimit="/usr/bin/prlimit", uid=1000)
    fk.proc_file("1/status", "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nThreads:\t3\n")
    fk.proc_file("2/status", "Name:\ty\nUid:\t0\t0\t0\t0\nThreads:\t9\n")
    assert probe(fk) == "rlimit"
    box = ResourceBox.create(Limits(100, 64, 256), fs=fk)
    assert box.prefix() == ["/usr/bin/prlimit", f"--data={100 << 20}", "--nproc=67", "--"]
    assert box.describe()["memory"] == "100 MB per process, not in total (RLIMIT_DATA via prlimit)"
    assert "RLIMIT_NPROC" in box.describe()["processes"]
    box.close()

    (tmp_path / "r").mkdir()
    root = v2_host(tmp_path / "r", delegated=False, prlimit="/usr/bin/prlimit", uid=0)
    box = ResourceBox.create(Limits(100, 64, 256), fs=root)
    assert box.prefix() == ["/usr/bin/prlimit", f"--data={100 << 20}", "--"]
    assert box.describe()["processes"].startswith("not enforced:") and "root" in box.describe()["processes"]


def test_nothing_available(tmp_path: Path) -> None:
    fk = FakeKernel(tmp_path)
    fk.proc_file("self/cgroup", "0::/\n")
    assert probe(fk) == "none"
    box = ResourceBox.create(Limits(), fs=fk)
    assert box.prefix() == [] and box.oom_kills() == 0 and box.kill_all() is False
    assert box.describe() == {
        "memory": "not enforced: no writable memory cgroup, no systemd-run --user scope, no prlimit",
        "processes": "not enforced: no writable pids cgroup, no systemd-run --user scope, no prlimit",
        "tmp": "256 MB (tmpfs size)"}
    box.close()


def test_sweep_fake(tmp_path: Path) -> None:
    fk = v1_host(tmp_path)
    dead = _dead_pid()
    gone = fk.seed(f"pids/{NAME_PREFIX}-{dead}-3-sandbox")
    busy = fk.seed(f"memory/agents/me/{NAME_PREFIX}-{dead}-4", cgroup__procs="99\n")
    live = fk.seed(f"memory/agents/me/{NAME_PREFIX}-{os.getpid()}-5")
    fk.proc_file(f"{os.getpid()}/status", "Name:\tpytest\n")
    other = fk.seed(f"pids/someone-{dead}-1")
    assert sweep(fk) == [gone]
    assert busy.exists() and live.exists() and other.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- real containment ----------------------------------------------------------------------------------------

def _real_box(limits: Limits, hint: str) -> ResourceBox:
    box = ResourceBox.create(limits, hint)
    for kind in ("memory", "processes"):
        if limits.value(kind) and box.how[kind] not in ("cgroup-v1", "cgroup-v2"):
            box.close()
            pytest.skip(f"no writable {kind} cgroup here ({box.describe()[kind]})")
    return box


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique ``sleep`` duration (30.xxxxxxxxx s) that names this test's sleeps; they are killed after."""
    mark = f"30.{secrets.randbelow(10**9):09d}"
    yield mark
    for proc in _sleeps(mark):
        proc.kill()


def _sleeps(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.info["cmdline"] == ["sleep", mark] and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


HOG = "chunks = []\nfor _ in range(12):\n    chunks.append(b'x' * (50 << 20))\nprint('survived')\n"


def test_memory_hog_is_oom_killed() -> None:
    box = _real_box(Limits(200, None, None), "oom")
    try:
        mark = box.oom_kills()
        done = subprocess.run([*box.prefix(), sys.executable, "-c", HOG], capture_output=True, text=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done
        assert "survived" not in done.stdout
        assert box.memory_exceeded_since(mark)
    finally:
        box.close()


STORM = """
import subprocess, sys
started = failed = 0
for _ in range(400):
    try:
        subprocess.Popen(["sleep", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started += 1
    except BlockingIOError:
        failed += 1
print(started, failed, flush=True)
"""


def test_process_storm_is_capped_and_killed(marker: str) -> None:
    box = _real_box(Limits(None, 64, None), "storm")
    try:
        done = subprocess.run([*box.prefix(), sys.executable, "-c", STORM, marker],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done
        started, failed = map(int, done.stdout.split())
        assert 32 <= started < 64 and started + failed == 400
        assert len(_sleeps(marker)) == started
        assert box.pids()  # the orphaned sleeps are still in the box
        assert box.kill_all()
        assert not box.pids() and not _sleeps(marker)
    finally:
        box.close()


def test_close_kills_and_removes_the_cgroups(marker: str) -> None:
    box = _real_box(Limits(100, 16, None), "close")
    dirs = list(box.dirs.values())
    assert dirs and all(d.is_dir() for d in dirs)
    proc = subprocess.Popen([*box.prefix(), "sleep", marker])
    try:
        while not box.pids():  # bounded by the test timeout; the shell joins before exec
            time.sleep(0.01)
        assert box.pids() == {proc.pid}
        box.close()
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert not any(d.exists() for d in dirs)
        box.close()  # a second close does nothing
    finally:
        proc.kill()
        proc.wait()


def test_sweep_removes_a_dead_agents_leftover() -> None:
    box = _real_box(Limits(64, 16, None), "sweep")
    box.close()
    parents = [d.parent for d in box.dirs.values()]
    dead, mine = _dead_pid(), os.getpid()
    leftovers = [p / f"{NAME_PREFIX}-{dead}-1-crashed" for p in parents]
    live = [p / f"{NAME_PREFIX}-{mine}-{10**9}-live" for p in parents]
    try:
        for path in leftovers + live:
            path.mkdir()
        removed = sweep()
        assert set(leftovers) <= set(removed)
        assert not any(p.exists() for p in leftovers) and all(p.exists() for p in live)
    finally:
        for path in leftovers + live:
            if path.exists():
                path.rmdir()


def test_real_enforcement_matches_a_box() -> None:
    box = ResourceBox.create(Limits(), "describe")
    try:
        assert box.describe() == enforcement(Limits())
        assert probe() in {box.how["memory"], f"memory: {box.how['memory']}, processes: {box.how['processes']}"}
    finally:
        box.close()
