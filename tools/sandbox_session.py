"""The walls around one life of a sandboxed worker, besides bubblewrap's mounts (:mod:`tools.sandbox`).

A :class:`SandboxSession` is made each time :class:`tools.isolated_executor.IsolatedExecutor` starts
its worker, and closed when the worker is killed. It holds:

* the **resource box** (:mod:`tools.limits`): a cgroup (or ``systemd-run`` scope, or rlimits) the
  worker is started in, so memory, processes and the private ``/tmp`` are bounded together; a task
  the OOM killer stopped fails with "memory limit of N MB exceeded";
* the **seccomp filter** (:mod:`tools.seccomp_filter`) handed to bubblewrap;
* the **git guard** (:mod:`tools.git_guard`, :mod:`tools.git_mask`): a missing root ``.git`` is masked by an
  empty read-only directory while the sandbox lives, and after every task (and once more when the sandbox is gone)
  executable git configuration and hooks the task planted anywhere in the folder are neutralized
  and named in that task's output;
* the **network**: the filtering proxy (:mod:`tools.netproxy`) serving the listening socket the worker
  hands out, deciding by the thread's :class:`~tools.netproxy.NetworkPolicy`; refusals are named in
  the output of the task that was refused.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from free_llm_agent.tools.local_executor import ExecutionResult
from free_llm_agent.tools.sandbox import PROXY_PORT, Sandbox

_log = logging.getLogger(__name__)
NOTE = "[free-llm-agent]"


@dataclass
class Walls:
    """What an executor's sandbox is given besides its mounts."""

    limits: Any = None  # tools.limits.Limits, or None: no resource limits
    policy: Any = None  # tools.netproxy.NetworkPolicy, or None: no network at all
    seccomp: bool = True  # apply the seccomp filter where it can be had


@dataclass
class SandboxSession:
    sandbox: Sandbox
    workspace: Path
    walls: Walls
    _box: Any = None
    _mask: Any = None
    _baseline: Any = None
    _serving: Any = None
    _keep: Path | None = None  # the baseline kept outside the sandbox while it lives
    _fds: list[int] = field(default_factory=list)

    # ------------------------------------------------------------------ start
    def command(self, worker: list[str], channel_fd: int, keep: list[Path]) -> tuple[list[str], list[int]]:
        """The worker's command line (under the box and bubblewrap) and the descriptors it must inherit."""
        proxy = self.sandbox.active and self.walls.policy is not None
        argv = [*worker, str(channel_fd), str(PROXY_PORT) if proxy else "-"]
        fds = [channel_fd]
        if self.sandbox.active:
            self._guard_git()
            seccomp_fd = self._seccomp_fd()
            if seccomp_fd is not None:
                fds.append(seccomp_fd)
            tmp_mb = getattr(self.walls.limits, "tmp_mb", None)
            argv = self.sandbox.wrap(argv, workdir=self.workspace, proxy=proxy, keep=keep, seccomp_fd=seccomp_fd,
                                     tmp_mb=tmp_mb)
        box = self._make_box()
        return [*(box.prefix() if box is not None else []), *argv], fds

    def _seccomp_fd(self) -> int | None:
        if not self.walls.seccomp:
            return None
        from free_llm_agent.tools import seccomp_filter

        if not seccomp_filter.available()[0]:
            return None
        fd = seccomp_filter.bpf_fd()
        self._fds.append(fd)
        return fd

    def _make_box(self) -> Any:
        if self.walls.limits is None:
            return None
        from free_llm_agent.tools.limits import ResourceBox

        _sweep_once()  # the boxes of agents that were killed
        try:
            self._box = ResourceBox.create(self.walls.limits, f"executor-{os.getpid()}")
        except OSError:
            _log.warning("warning: resource limits could not be set up", exc_info=True)
            self._box = None
        return self._box

    def _guard_git(self) -> None:
        from free_llm_agent.tools import git_guard, git_mask

        try:
            self._mask = git_mask.reserve_root_mask(self.workspace, _markers_dir())
        except OSError as exc:  # the folder was checked writable: something odd; the neutralizing still holds
            _log.warning("warning: could not reserve %s/.git (%s); a root repository a task creates is "
                         "neutralized after each task instead", self.workspace, exc)
        try:
            self._after_crash()
        except OSError as exc:
            _log.warning("warning: could not check for an earlier crashed run's git settings (%s)", exc)
        self._baseline = git_guard.baseline(self.workspace)
        with contextlib.suppress(OSError):
            keep = _baselines_dir(self.workspace) / f"{os.getpid()}-{os.urandom(6).hex()}.json"
            keep.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            keep.write_text(self._baseline.to_json())
            self._keep = keep

    def _after_crash(self) -> None:
        """A sandbox of this folder whose agent died (kill -9, a crash) had no last check: what its tasks planted
        after their own checks is neutralized now, against that sandbox's baseline, and said on stderr."""
        from free_llm_agent.tools import git_guard

        for kept in sorted(_baselines_dir(self.workspace).glob("*.json")):
            pid = kept.name.partition("-")[0]
            if pid.isdigit() and (int(pid) == os.getpid() or os.path.exists(f"/proc/{pid}")):
                continue  # a live sandbox's
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                earlier = git_guard.Baseline.from_json(kept.read_text())
                for note in git_guard.neutralize(self.workspace, earlier):
                    _log.warning("%s after a crash of an earlier run here: %s", NOTE, note)
            kept.unlink(missing_ok=True)

    def started(self, pid: int) -> None:
        """The worker (bubblewrap's process, or the worker itself) is running as ``pid``."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self._box is not None:
            self._box.attach(pid)

    def serve(self, listener: socket.socket) -> None:
        """The worker handed out the proxy's listening socket: the filtering proxy serves it from here."""
        if self.walls.policy is None:
            listener.close()
            return
        from free_llm_agent.tools.netproxy import shared_proxy

        self._serving = shared_proxy().serve(listener, self.walls.policy)

    # ------------------------------------------------------------------ tasks
    def mark(self) -> int:
        """Taken before a task: what :meth:`finished` compares with."""
        return int(self._box.oom_kills()) if self._box is not None else 0

    def finished(self, result: ExecutionResult, mark: int) -> ExecutionResult:
        """``result`` with what the walls did during the task: a memory limit hit, git planting neutralized,
        domains refused."""
        limits = self.walls.limits
        if self._box is not None and limits is not None and limits.memory_mb and self._box.oom_kills() > mark:
            result.ok = False
            result.error = f"memory limit of {limits.memory_mb} MB exceeded (execution.memory_mb in limits.yaml)"
        notes = self._git_notes()
        policy = self.walls.policy
        if policy is not None and self.sandbox.active:
            notes += [f"network: {r.reason}" for r in policy.take_refusals()]
        if notes:
            result.output = "\n".join(filter(None, [result.output.rstrip("\n"), *(f"{NOTE} {n}" for n in notes)]))
        return result

    def _git_notes(self) -> list[str]:
        if self._baseline is None:
            return []
        from free_llm_agent.tools import git_guard

        try:
            return list(git_guard.neutralize(self.workspace, self._baseline))
        except OSError:
            _log.warning("checking the folder for planted git configuration failed", exc_info=True)
            return []

    def settle(self) -> None:
        """Every task process is gone (a thread's run ended): neutralize what a background job planted after
        the last task's check (there is no task to report it in: it is logged)."""
        for note in self._git_notes():
            _log.warning("%s %s", NOTE, note)

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """After the worker was killed: nothing of it may survive, nothing it planted stays armed."""
        if self._serving is not None:
            self._serving.close()
            self._serving = None
        if self._box is not None:
            self._box.kill_all()
            self._box.close()
            self._box = None
        self.settle()  # a background job may have written after the last task
        if self._keep is not None:
            self._keep.unlink(missing_ok=True)
            self._keep = None
        if self._mask is not None:
            from free_llm_agent.tools import git_mask

            git_mask.release_root_mask(self._mask)
            self._mask = None
        self._baseline = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


@functools.cache
def _sweep_once() -> None:
    from free_llm_agent.tools.limits import sweep

    sweep()


def _baselines_dir(workspace: Path) -> Path:
    """Where the git baselines of the live sandboxes of ``workspace`` are kept."""
    import hashlib

    key = hashlib.sha256(os.fsencode(os.path.realpath(workspace))).hexdigest()[:24]
    return _markers_dir().parent / "git-baselines" / key


def _markers_dir() -> Path:
    """Where this user's sandboxes note which root ``.git`` placeholder they use (shared by every agent process
    of the user, whatever its home): a folder of the user's own under the temporary folder, refused if someone
    else made it first (another user could otherwise plant or remove reservations)."""
    base = Path(tempfile.gettempdir()) / f"free-llm-agent-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"{base} is not a private folder of this user; remove it")
    return base / "git-masks"


def report(sandbox: Sandbox, execution: Any) -> dict[str, Any]:
    """What ``check`` shows of the walls in force (besides the sandbox's own line): network, seccomp, nested
    user namespaces, and how each resource limit is enforced."""
    from free_llm_agent.tools import limits, seccomp_filter

    mode = execution.network
    if not sandbox.active:
        network = "the code has this machine's network, unfiltered (no sandbox)"
    elif mode == "off":
        network = "none (its own empty network namespace)"
    elif mode == "open":
        network = ("HTTP(S) to any public address through the filtering proxy (dangerous: code can send your files "
                   "anywhere); loopback, private and metadata addresses never")
    else:
        network = ("HTTP(S) through the filtering proxy to package indexes, the goal's domains, --allow-domain and "
                   "execution.allowed_domains; loopback, private and metadata addresses never")
    seccomp_ok, seccomp_why = seccomp_filter.available()
    if not sandbox.active:
        seccomp, userns = "off (no sandbox)", "allowed (no sandbox)"
    else:
        seccomp = f"on ({len(seccomp_filter.BLOCKED)} system calls refused)" if seccomp_ok else f"off: {seccomp_why}"
        userns = ("refused (--disable-userns)" if sandbox.no_userns else
                  f"allowed: bubblewrap {sandbox.version} cannot refuse them (0.8 or newer can)")
    wanted = limits.Limits.from_config(execution)
    enforced = dict(limits.enforcement(wanted))
    if not (sandbox.active and sandbox.tmp_size) and wanted.tmp_mb:
        enforced["tmp"] = ("not enforced: no sandbox" if not sandbox.active
                           else f"not enforced: bubblewrap {sandbox.version} has no --size")
    return {"network": {"mode": mode if sandbox.active else "open", "detail": network,
                        "allowed_domains": list(execution.allowed_domains)},
            "seccomp": seccomp, "user_namespaces": userns, "limits": enforced}
