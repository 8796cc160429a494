"""The OS sandbox around generated code (Linux: bubblewrap), and the environment it gets.

:func:`resolve` turns ``execution.sandbox`` (auto | required | off) into a :class:`Sandbox`: either
a bubblewrap command prefix or "none" with the reason. Under bubblewrap the executor process (the
Open Interpreter kernels and everything they start) sees:

* the whole filesystem read-only, the working directory read-write, a private ``/tmp``;
* not at all: the agent's home (checkpoints, ``agent.db``, cache), every ``.env`` the agent read,
  the usual credential folders and ``execution.hidden_paths``;
* its own PID namespace that dies with the agent (``--die-with-parent``), so nothing a task starts
  outlives the run; with ``network=False`` its own empty network namespace.

:func:`scrubbed_env` removes every key-like variable from the executor's environment, sandboxed or
not; :func:`redact` replaces the removed values in output as a second line of defence.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["auto", "required", "off"]
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
CREDENTIAL_PATHS = (
    "~/.ssh", "~/.aws", "~/.azure", "~/.config/gcloud", "~/.kube", "~/.docker", "~/.gnupg", "~/.netrc",
    "~/.git-credentials", "~/.pypirc", "~/.npmrc", "~/.config/gh", "~/.password-store", "~/.local/share/keyrings",
    "~/.cache/huggingface", "~/.huggingface", "~/.config/openai", "~/.config/langgraph", "~/.terraform.d",
    "~/.vault-token", "~/.pgpass", "~/.my.cnf", "~/.free-llm-agent", "~/.cargo/credentials.toml",
    "~/.cargo/credentials", "~/.m2/settings.xml", "~/.config/hub", "~/.bash_history", "~/.zsh_history",
    "~/.python_history", "~/.psql_history", "~/.mysql_history", "~/.sqlite_history", "~/.node_repl_history",
    "~/.local/share/fish/fish_history", "~/.mozilla", "~/.config/google-chrome", "~/.config/chromium",
)
SECRET_NAME = re.compile(
    r"(_API_KEY|_APIKEY|_TOKEN|_KEY|_PAT)$|SECRET|PASSWORD|PASSWD|CREDENTIAL|^LANGSMITH_|^LANGCHAIN_|DATABASE_URL$"
    r"|^(SSH_AUTH_SOCK|SSH_AGENT_PID|GPG_AGENT_INFO|DBUS_SESSION_BUS_ADDRESS|KRB5CCNAME)$",  # doors to agents
    re.IGNORECASE,
)
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

    @property
    def active(self) -> bool:
        return self.kind == "bwrap"

    def describe(self) -> str:
        if not self.active:
            return f"off: {self.reason}"
        return " ".join(filter(None, ["bubblewrap", self.version, "(active)"]))

    def wrap(self, argv: list[str], *, workdir: Path, network: bool, keep: Iterable[Path] = ()) -> list[str]:
        """``argv`` run under bubblewrap with ``workdir`` writable; ``keep`` stays readable under /tmp."""
        if not self.active:
            return argv
        assert self.binary is not None
        ws = os.path.realpath(workdir)
        args = [self.binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
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
        dotenvs = [os.path.join(ws, n) for n in _names(ws) if n == ".env" or n.startswith(".env.")]
        for path in [*self.hidden, *dotenvs]:  # first what holds or lies beside the workdir, then in it
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
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session",
                 "--cap-drop", "ALL"]
        if not network:
            args.append("--unshare-net")
        for key, value in _SANDBOX_ENV.items():
            args += ["--setenv", key, value]
        return [*args, "--chdir", ws, "--", *argv]


    def fingerprint(self) -> tuple[tuple[int, int] | None, ...]:
        """(device, inode) of every hidden path, None where absent. The hiding mounts are set up when
        the sandbox starts; a path replaced (an editor saving .env by rename) or created since is not
        covered, so a changed fingerprint means: start a new sandbox."""
        marks: list[tuple[int, int] | None] = []
        for path in self.hidden:
            try:
                st = os.lstat(path)
                marks.append((st.st_dev, st.st_ino))
            except OSError:
                marks.append(None)
        return tuple(marks)


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _read_only_inside(ws: str, protected: Iterable[str]) -> list[str]:
    """What stays read-only although it lies in the workdir: the agent's own code, virtualenv and
    config (each existing entry of it, when the workdir *is* one of them, so new files can still be
    made there), and ``.git`` (its hooks and config run outside the sandbox on the next git command)."""
    out: list[str] = []
    for path in protected:
        real = os.path.realpath(path)
        if real == ws:
            out += [os.path.join(ws, n) for n in sorted(_names(ws))]
        elif _under(real, ws) and os.path.exists(real):
            out.append(real)
    git = os.path.join(ws, ".git")
    if os.path.lexists(git):
        out.append(git)
    return list(dict.fromkeys(out))


def _hide(path: str) -> list[str]:
    return ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]


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
        test = subprocess.run(
            [found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
             "--die-with-parent", "--", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap does not start here ({exc})", ""
    if test.returncode != 0:
        why = (test.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"bubblewrap cannot create namespaces here ({why})", ""
    return True, "", version[-1] if version else ""


def hidden_paths(home: Path, env_files: Iterable[Path] = (), extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Absolute paths the sandboxed code must not see: the home, .env files, credentials, ``extra``."""
    paths = [str(home), *map(str, env_files), *CREDENTIAL_PATHS, *extra]
    return tuple(dict.fromkeys(os.path.abspath(os.path.expanduser(p)) for p in paths))


def resolve(mode: Mode, home: Path, *, env_files: Iterable[Path] = (), extra_hidden: Iterable[str] = (),
            protected: Iterable[Path] = ()) -> Sandbox:
    """The sandbox for ``execution.sandbox: mode``; raise SandboxUnavailable when required and missing.
    ``protected``: folders that stay read-only even inside a working directory (the agent's own)."""
    if mode == "off":
        return Sandbox("none", "execution.sandbox is off")
    works, reason, version = probe()
    if works:
        return Sandbox("bwrap", "", shutil.which("bwrap"), version, hidden_paths(home, env_files, extra_hidden),
                       tuple(os.path.abspath(p) for p in protected))
    if mode == "required":
        raise SandboxUnavailable(
            f"execution.sandbox is 'required' but {reason}. Install it, or set execution.sandbox: auto "
            "in limits.yaml to run unsandboxed with a warning")
    return Sandbox("none", reason)


def scrubbed_env(environ: Mapping[str, str], key_vars: Iterable[str] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """(environment without secrets, the removed variables): configured key vars and key-like names."""
    named = set(key_vars)
    kept: dict[str, str] = {}
    removed: dict[str, str] = {}
    for key, value in environ.items():
        if key in named or SECRET_NAME.search(key) or key.startswith("FREE_AGENT_"):
            removed[key] = value
        else:
            kept[key] = value
    return kept, removed


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """Replace every secret value (8+ chars) in ``text`` by ``[redacted NAME]``."""
    for name, value in sorted(secrets.items(), key=lambda kv: -len(kv[1])):
        if len(value) >= 8 and value in text:
            text = text.replace(value, f"[redacted {name}]")
    return text
