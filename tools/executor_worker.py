"""Child process hosting a LocalExecutor; JSON lines over a private channel.

Started by :class:`tools.isolated_executor.IsolatedExecutor` with one end of a socket pair as its
channel (``argv[3]``: its fd number). Nothing else in the sandbox can reach that channel: the worker is
the sandbox's pid 1 (bubblewrap ``--as-pid-1``: no other process of bubblewrap's is inside), marks the
channel close-on-exec (its kernels never get it) and makes itself non-dumpable, so no other process —
the task code included — can open ``/proc/1/fd/*``, read or write its memory (``/proc/1/mem``) or
``ptrace`` it (seccomp also refuses ``ptrace``); as init it cannot be killed or stopped from inside.
Task code therefore cannot forge an answer, steal a request or shift the answers of later tasks. As
init it also reaps the orphans of the namespace (``SIGCHLD``).

The first thing sent is one byte: ``L`` with a listening TCP socket attached (``SCM_RIGHTS``) when
``--proxy`` is given — the socket is bound to the filtering proxy's port on the sandbox's own
loopback, and the agent serves the proxy on it from outside — else ``N``. Then each request line is
``{"language", "code", "timeout_s", "stream"}`` and each answer line an ExecutionResult as JSON; with
``"stream": true`` the answer is preceded by ``{"output": TEXT}`` lines while the task runs (what it printed
since the last one, whole lines, at most ten a second: :class:`tools.executor_support.OutputStream`). A control line
``{"control": "warm"}`` (start the kernels now) or ``{"control": "reset"}`` (before another thread:
every process of the earlier tasks is killed and fresh kernels start) is answered with
``{"control": …, "error": …}``. Everything the kernel machinery prints goes to stderr. The worker
exits when the channel closes (its parent is gone).

In the sandbox (``FLA_SANDBOXED``, its own PID namespace: every process in ``/proc`` is the
sandbox's) a task that times out takes every process started while it ran with it, however it
detached (``setsid``, ``nohup``, double fork): they are all new PIDs of this namespace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _die_with_parent() -> None:
    """Get SIGKILL when the agent dies (Linux, unsandboxed: bubblewrap's --die-with-parent does it there)."""
    parent = os.environ.pop("FLA_PARENT_PID", "")
    if not sys.platform.startswith("linux") or not parent:
        return
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != int(parent):
        os._exit(0)  # the agent died before the signal was armed


def _open_channel(fd: int, proxy_port: int | None) -> socket.socket:
    """The private channel (see the module docstring), after handing out the proxy's listening socket."""
    os.set_inheritable(fd, False)
    _prctl(PR_SET_DUMPABLE, 0)
    channel = socket.socket(fileno=fd)
    if proxy_port is None:
        channel.sendall(b"N")
        return channel
    with socket.create_server(("127.0.0.1", proxy_port), backlog=64) as listener:
        socket.send_fds(channel, [b"L"], [listener.fileno()])
    return channel


def sandbox_pids() -> set[int]:
    """Every process of this PID namespace (only meaningful in the sandbox)."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def kill_except(keep: set[int], rounds: int = 50) -> None:
    """SIGKILL every process of the sandbox but ``keep``, pid 1 (bubblewrap) and this one, until none is left
    (a process may fork while its siblings are killed; bounded)."""
    spare = keep | {1, os.getpid()}
    for _ in range(rounds):
        victims = sandbox_pids() - spare
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()


def _reap(*_: Any) -> None:
    """Collect the children that ended: this process's own, and (as the sandbox's init) every orphan's."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


class Worker:
    def __init__(self, workspace: Path, max_output_chars: int, sandboxed: bool) -> None:
        self.workspace, self.max_output_chars, self.sandboxed = workspace, max_output_chars, sandboxed
        from free_llm_agent.tools import oi_parts

        oi_parts.offline_env()
        try:  # first thing: the kernel boots while the rest is imported (and the first request imports OI's terminal)
            kernel = oi_parts.start_kernel()
        except Exception:
            kernel = None  # the first task starts one, and reports what goes wrong
        self.executor = self._fresh(kernel)

    def _fresh(self, kernel: Any = None) -> Any:
        from free_llm_agent.tools.local_executor import LocalExecutor

        executor = LocalExecutor(self.workspace, max_output_chars=self.max_output_chars)
        executor.prestart(kernel)
        return executor

    def run(self, request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        before = sandbox_pids() if self.sandboxed else set()
        self.executor.timeout_s = float(request["timeout_s"])
        on_output = (lambda text: send({"output": text})) if request.get("stream") else None
        result = self.executor.run(str(request["language"]), str(request["code"]), on_output)
        if result.timed_out and self.sandboxed:
            kill_except(before)  # everything the task started, however it detached
        return dataclasses.asdict(result)

    def control(self, what: str) -> str | None:
        if what == "warm":
            return self.executor.warm()  # type: ignore[no-any-return]
        if not self.sandboxed:  # no PID namespace: the earlier tasks' namespace is cleared, in the same kernel
            return self.executor.reset()  # type: ignore[no-any-return]
        self.executor.close()
        kill_except(set())  # nothing of the earlier thread survives: its kernels, jobs and daemons
        self.executor = self._fresh()
        return None

    def close(self) -> None:
        self.executor.close()


def main(workspace: str, max_output_chars: int, channel_fd: int, proxy_port: int | None) -> int:
    _die_with_parent()
    channel = _open_channel(channel_fd, proxy_port)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints -> stderr
    sys.stdout = sys.stderr
    sandboxed = os.environ.get("FLA_SANDBOXED") == "1"
    if os.getpid() == 1:  # the sandbox's init: orphans are ours to reap
        signal.signal(signal.SIGCHLD, _reap)
    requests, answers = channel.makefile("r", encoding="utf-8"), channel.makefile("w", encoding="utf-8")

    def send(answer: dict[str, Any]) -> None:
        answers.write(json.dumps(answer) + "\n")
        answers.flush()

    worker = Worker(Path(workspace), max_output_chars, sandboxed)
    try:
        for line in requests:
            if not line.strip():
                continue
            request = json.loads(line)
            if "control" in request:
                send({"control": request["control"], "error": worker.control(request["control"])})
            else:
                send(worker.run(request, send))
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    port = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), port))
