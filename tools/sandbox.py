"""The OS sandbox around generated code (Linux: bubblewrap), and the environment it gets.

:func:`resolve` turns ``execution.sandbox`` (auto | required | off) into a :class:`Sandbox`: either
a bubblewrap command prefix or "none" with the reason. Under bubblewrap the executor process (the
Open Interpreter kernels and everything they start) sees:

* the whole filesystem read-only, the working directory read-write, a private ``/tmp``;
* not at all: the agent's home (checkpoints, ``agent.db``, cache), every ``.env`` the agent read,
  the usual credential folders and ``execution.hidden_paths``;
* its own PID namespace that dies with the agent (``--die-with-parent``), so nothing a task starts
  outlives the run; always its own network namespace (only its loopback: HTTP(S) leaves through the
  agent's filtering proxy, :mod:`tools.netproxy`); no nested user namespace (``--disable-userns``),
  no capability, a seccomp filter (:mod:`tools.seccomp_filter`) and a bounded ``/tmp``.

:func:`scrubbed_env` (:mod:`tools.secrets`) removes every key-like variable from the executor's
environment, sandboxed or not; :func:`redact` replaces the removed values in output as a second line
of defence.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from free_llm_agent.tools.secrets import (
    CREDENTIAL_PATHS,
    SECRET_NAME,
    credential_paths,
    hide_args,
    redact,
    scrubbed_env,
)

__all__ = ["CREDENTIAL_PATHS", "SECRET_NAME", "Sandbox", "SandboxUnavailable", "hidden_paths", "probe", "redact",
           "resolve", "scrubbed_env"]

Mode = Literal["auto", "required", "off"]
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
# Where tools inside the sandbox write their caches and runtime files (the home is read-only there).
_SANDBOX_ENV = {
    "JUPYTER_RUNTIME_DIR": "/tmp/.fla/jupyter", "IPYTHONDIR": "/tmp/.fla/ipython", "MPLCONFIGDIR": "/tmp/.fla/mpl",
    "XDG_CACHE_HOME": "/tmp/.fla/cache", "PYTHONDONTWRITEBYTECODE": "1",
}


class SandboxUnavailable(RuntimeError):
    """``execution.sandbox: required`` and bubblewrap cannot run here; the message says how to fix it."""


@dataclass(frozen=True)
class Sandbox:
    """How executor processes are started: ``kind`` "bwrap" (with its binary) or "none" (with why)."""

    kind: Literal["bwrap", "none"]
    reason: str
    binary: str | None = None
    version: str = ""
    hidden: tuple[str, ...] = field(default_factory=tuple)  # absolute paths to hide
    protected: tuple[str, ...] = field(default_factory=tuple)  # read-only even inside the workdir
    no_userns: bool = False  # bubblewrap can forbid nested user namespaces (--unshare-user --disable-userns)
    tmp_size: bool = False  # bubblewrap can bound the private /tmp (--size)
    cgroup_ns: bool = False  # bubblewrap can give the sandbox its own cgroup namespace

    @property
    def active(self) -> bool:
        return self.kind == "bwrap"

    def describe(self) -> str:
        if not self.active:
            return f"off: {self.reason}"
        return " ".join(filter(None, ["bubblewrap", self.version, "(active)"]))

    def wrap(self, argv: list[str], *, workdir: Path, proxy: bool, keep: Iterable[Path] = (),
             seccomp_fd: int | None = None, tmp_mb: int | None = None) -> list[str]:
        """``argv`` run under bubblewrap with ``workdir`` writable; ``keep`` stays readable under /tmp.

        The sandbox always has its own network namespace (only its own loopback); ``proxy``: its HTTP(S)
        clients are pointed at the agent's filtering proxy on that loopback (:data:`PROXY_PORT`; the
        worker hands the listening socket out, see :mod:`tools.isolated_executor`). ``seccomp_fd``: a
        compiled filter (:mod:`tools.seccomp_filter`) bubblewrap applies to everything inside;
        ``tmp_mb``: the size of the private /tmp."""
        if not self.active:
            return argv
        assert self.binary is not None
        ws = os.path.realpath(workdir)
        args = [self.binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        size = ["--size", str(tmp_mb * 1024 * 1024)] if tmp_mb and self.tmp_size else []
        args += [*size, "--tmpfs", "/tmp", *size, "--tmpfs", "/dev/shm"]  # both RAM-backed: both bounded
        # /run holds sockets that open doors out of any sandbox (docker.sock, ssh/gpg agents, D-Bus, a
        # PostgreSQL with peer auth): gone, but for the resolver config DNS may need.
        args += ["--tmpfs", "/run"]
        resolv = os.path.realpath("/etc/resolv.conf")
        if _under(resolv, "/run") and os.path.exists(resolv):
            args += ["--ro-bind", resolv, resolv]
        rebound = [p for p in sorted({os.path.realpath(p) for p in keep}) if _under(p, "/tmp") and os.path.exists(p)]
        for path in rebound:
            args += ["--ro-bind", path, path]  # e.g. the agent's code or venv in a temp folder
        inside: list[str] = []
        for path in [*self.hidden, *dotenv_files(ws)]:  # first what holds or lies beside the workdir, then in it
            real = os.path.realpath(path)
            shown = any(_under(real, root) for root in [ws, *rebound])
            if not os.path.lexists(real) or real == ws or (_under(real, "/tmp") and not shown):
                continue  # nothing there, or already gone with the private /tmp
            if _under(real, ws):
                inside.append(real)
            else:
                args += _hide(real)
        args += ["--bind", ws, ws]
        for real in _read_only_inside(ws, self.protected):
            args += ["--ro-bind", real, real]
        for real in inside:
            args += _hide(real)
        # --cap-drop ALL: bwrap started by root would otherwise hand the code every capability, and with
        # CAP_SYS_ADMIN it could unmount what hides the secrets or remount the filesystem read-write.
        # The network namespace is always its own: abstract Unix sockets (an X server's, say) and the
        # host's loopback services are out of reach; HTTP(S) leaves only through the proxy.
        # --as-pid-1: the worker is the namespace's init. No bubblewrap process stays inside for task code to
        # write into through /proc/1/mem, and init cannot be killed or stopped from inside.
        args += ["--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                 "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.cgroup_ns:
            args.append("--unshare-cgroup")  # the host's cgroup paths stay out of /proc/self/cgroup
        if self.no_userns:  # no nested user namespace: no root of its own, no mounts of its own
            args += ["--unshare-user", "--disable-userns"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        env = {**_SANDBOX_ENV, **(proxy_env() if proxy else {}), "FLA_SANDBOXED": "1"}
        for key, value in env.items():
            args += ["--setenv", key, value]
        return [*args, "--chdir", ws, "--", *argv]


    def fingerprint(self, workdir: Path | None = None) -> tuple[tuple[int, int] | None, ...]:
        """(device, inode) of every hidden path — with ``workdir``, its ``.env`` files too — None where absent.
        The hiding mounts are set up when the sandbox starts; a path replaced (an editor saving .env by rename)
        or created since is not covered, so a changed fingerprint means: start a new sandbox."""
        marks: list[tuple[int, int] | None] = []
        found = dotenv_files(os.path.realpath(workdir)) if workdir is not None else []
        for path in [*self.hidden, *found]:
            try:
                st = os.lstat(path)
                marks.append((st.st_dev, st.st_ino))
            except OSError:
                marks.append(None)
        return tuple(marks)


# Settings of the tools that open a folder and may run what they say (tasks, servers, hooks, environments):
# read-only in the working directory, as sandbox-runtime protects them. A task may create them where there
# were none (an editor asks before it trusts a folder's new settings; direnv asks before it runs a new .envrc).
TOOL_SETTINGS = (".vscode", ".idea", ".cursor", ".claude", ".mcp.json", ".envrc", ".devcontainer",
                 # hook managers: what they name runs on the user's next commit
                 ".husky", ".pre-commit-config.yaml", "lefthook.yml", ".lefthook.yml", "lefthook-local.yml",
                 ".lefthook-local.yml")
_DOTENV_SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__", "site-packages", ".tox", ".mypy_cache"}
_DOTENV_DEPTH, _DOTENV_DIRS = 3, 2000


def dotenv_files(ws: str) -> list[str]:
    """The ``.env`` / ``.env.*`` files of the working directory and its folders (monorepos keep one per
    package) down to :data:`_DOTENV_DEPTH` levels, at most :data:`_DOTENV_DIRS` folders looked at: hidden
    from the code like the agent's own ``.env`` files."""
    found: list[str] = []
    folders, seen = [(ws, 0)], 0
    while folders and seen < _DOTENV_DIRS:
        folder, depth = folders.pop()
        seen += 1
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if (name == ".env" or name.startswith(".env.")) and not entry.is_dir(follow_symlinks=False):
                found.append(entry.path)
            elif depth < _DOTENV_DEPTH and name not in _DOTENV_SKIP and entry.is_dir(follow_symlinks=False):
                folders.append((entry.path, depth + 1))
    return sorted(found)
PROXY_PORT = 3128  # on the sandbox's own loopback (its own network namespace)


def proxy_env() -> dict[str, str]:
    """What points the usual HTTP(S) clients (Python, pip, curl, git, npm, Node ≥ 24) at the filtering proxy."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env = {name: url for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "npm_config_proxy",
                                  "npm_config_https_proxy")}
    return {**env, "no_proxy": "localhost,127.0.0.1,::1", "NO_PROXY": "localhost,127.0.0.1,::1",
            "NODE_USE_ENV_PROXY": "1"}


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _read_only_inside(ws: str, protected: Iterable[str]) -> list[str]:
    """What stays read-only although it lies in the workdir: the agent's own code, virtualenv and
    config (each existing entry of it, when the workdir *is* one of them, so new files can still be
    made there), ``.git`` (its hooks and config run outside the sandbox on the next git command), and
    the editors' and agents' own settings there (:data:`TOOL_SETTINGS`: what they may run when the
    folder is opened)."""
    out: list[str] = []
    for path in protected:
        real = os.path.realpath(path)
        if real == ws:
            out += [os.path.join(ws, n) for n in sorted(_names(ws))]
        elif _under(real, ws) and os.path.exists(real):
            out.append(real)
    for name in (".git", *TOOL_SETTINGS):
        if os.path.lexists(os.path.join(ws, name)):
            out.append(os.path.join(ws, name))
    return list(dict.fromkeys(out))


_hide = hide_args


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.lru_cache(maxsize=4)
def probe(binary: str | None = None) -> tuple[bool, str, str]:
    """(works, reason, version) of bubblewrap on this machine; checked once per process."""
    if not sys.platform.startswith("linux"):
        return False, f"no OS sandbox on {sys.platform} yet; code runs with your permissions", ""
    found = binary or shutil.which("bwrap")
    if found is None:
        return False, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}", ""
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
        test = _try(found, [])
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap does not start here ({exc})", ""
    if test.returncode != 0:
        why = (test.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"bubblewrap cannot create namespaces here ({why})", ""
    return True, "", version[-1] if version else ""


def _try(binary: str, extra: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
         "--die-with-parent", *extra, "--", "true"], capture_output=True, text=True, timeout=20)


@functools.lru_cache(maxsize=4)
def features(binary: str) -> tuple[bool, bool, bool]:
    """(nested user namespaces can be forbidden, the private /tmp can be bounded, a cgroup namespace can be
    had) with this bubblewrap and kernel."""
    try:
        no_userns = _try(binary, ["--unshare-user", "--disable-userns"]).returncode == 0
        tmp_size = _try(binary, ["--size", "1048576", "--tmpfs", "/tmp"]).returncode == 0
        cgroup_ns = _try(binary, ["--unshare-cgroup"]).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False, False, False
    return no_userns, tmp_size, cgroup_ns


def hidden_paths(home: Path, env_files: Iterable[Path] = (), extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Absolute paths the sandboxed code must not see: the home, .env files, credential files and folders
    (:mod:`tools.secrets`: the usual ones, and those the environment's variables name), ``extra``."""
    paths = [str(home), *map(str, env_files), *credential_paths(os.environ), *extra]
    return tuple(dict.fromkeys(os.path.abspath(os.path.expanduser(p)) for p in paths))


def resolve(mode: Mode, home: Path, *, env_files: Iterable[Path] = (), extra_hidden: Iterable[str] = (),
            protected: Iterable[Path] = ()) -> Sandbox:
    """The sandbox for ``execution.sandbox: mode``; raise SandboxUnavailable when required and missing.
    ``protected``: folders that stay read-only even inside a working directory (the agent's own)."""
    if mode == "off":
        return Sandbox("none", "execution.sandbox is off")
    works, reason, version = probe()
    binary = shutil.which("bwrap")
    if works and binary is not None:
        no_userns, tmp_size, cgroup_ns = features(binary)
        return Sandbox("bwrap", "", binary, version, hidden_paths(home, env_files, extra_hidden),
                       tuple(os.path.abspath(p) for p in protected), no_userns, tmp_size, cgroup_ns)
    if mode == "required":
        raise SandboxUnavailable(
            f"execution.sandbox is 'required' but {reason}. Install it, or set execution.sandbox: auto "
            "in limits.yaml to run unsandboxed with a warning")
    return Sandbox("none", reason)
