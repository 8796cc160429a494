"""Run the Open Interpreter executor in a child process, inside the OS sandbox.

Why: Open Interpreter's Jupyter machinery runs its own event loop and blocking
I/O, which an async host (``langgraph dev`` flags blocking calls) must not see,
and a wedged kernel must never take the agent down. The child keeps its kernel
warm between runs; if it stops answering (its own hard timeout failed), it is
killed with its whole process tree and the next run starts a fresh one.

The child is started under the :class:`tools.sandbox.Sandbox` it is given
(bubblewrap: working directory writable, rest read-only, home and credentials
hidden, its own PID and network namespaces dying with the agent, seccomp), in a
resource box, with an environment without any key (:mod:`tools.sandbox_session`
holds those walls); output is redacted of the removed values all the same. It talks
to the agent over one end of a socket pair that no task code can reach
(:mod:`tools.executor_worker`), so answers cannot be forged or shifted. On Linux
without a sandbox the child still sets ``PR_SET_PDEATHSIG`` for itself, so it dies
with the agent.

:meth:`IsolatedExecutor.start` starts the child and its kernels without waiting (the first ``run``
then waits only for what is left of the start); :meth:`IsolatedExecutor.reset` — before another
thread's tasks use the same warm child — kills every process the earlier thread's tasks started and
starts fresh kernels; :meth:`IsolatedExecutor.close` kills the child's whole tree at once (nothing in it
needs a polite shutdown: the kernels' runtime files are in the sandbox's private ``/tmp``, or
unsandboxed in a folder removed with it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from free_llm_agent.tools import bytecode
from free_llm_agent.tools.local_executor import ExecutionResult
from free_llm_agent.tools.processes import kill_tree, spawn
from free_llm_agent.tools.sandbox import Sandbox, redact, scrubbed_env
from free_llm_agent.tools.sandbox_session import SandboxSession, Walls

# The folder that holds the free_llm_agent package (a checkout, or site-packages): on the worker's path.
ROOT = Path(__file__).parent.parent.parent
# Beyond the executor's own timeout: a cold start (import ≈ 0.5 s, kernel ≈ 1–3 s; far more on a loaded
# machine) and cleanup.
GRACE_S = 90.0
RESET_WAIT_S = 30.0  # for the worker to confirm that the earlier thread's processes are gone


class ExecutorAborted(RuntimeError):
    """The run was stopped (Ctrl-C) while a task ran: the task did not finish; it is not a result."""


class IsolatedExecutor:
    """Same API as LocalExecutor (``run``/``close``), one child process per workspace."""

    def __init__(
        self,
        workspace: Path,
        *,
        timeout_s: float = 60.0,
        max_output_chars: int = 20_000,
        sandbox: Sandbox | None = None,
        network: bool = True,
        key_vars: Iterable[str] = (),
        walls: Walls | None = None,
    ) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.sandbox = sandbox or Sandbox("none", "no sandbox given")
        self.walls = walls or Walls()
        if not network:
            self.walls = dataclasses.replace(self.walls, policy=None)
        self.network = self.walls.policy is not None
        self.key_vars = tuple(key_vars)
        self._secrets: dict[str, str] = {}
        self._hidden_marks: tuple[tuple[int, int] | None, ...] = ()
        self._aborted = False
        self._proc: subprocess.Popen[Any] | None = None
        self._channel: socket.socket | None = None
        self._session: SandboxSession | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._runtime_dir: str | None = None  # unsandboxed: the kernels' connection files, removed on close
        self._warm = False  # the running child was asked to start its kernels
        self._lock = threading.Lock()

    @property
    def policy(self) -> Any:
        """The thread's network policy (:class:`tools.netproxy.NetworkPolicy`), None without network."""
        return self.walls.policy

    def _start(self) -> subprocess.Popen[Any]:
        env, self._secrets = scrubbed_env(os.environ, self.key_vars)
        self._hidden_marks = self.sandbox.fingerprint(self.workspace)
        env["PYTHONUNBUFFERED"] = "1"  # the worker's LocalExecutor sets OI's own env
        if not self.sandbox.active:  # bubblewrap's --die-with-parent does it in the sandbox
            env["FLA_PARENT_PID"] = str(os.getpid())  # the worker dies with this process (PR_SET_PDEATHSIG)
            self._runtime_dir = env["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="fla-jupyter-")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        ours, theirs = socket.socketpair()
        session = self._session = SandboxSession(self.sandbox, self.workspace, self.walls)
        # -P: nothing is imported from the working directory (where the worker runs, and task code writes)
        worker = [sys.executable, "-P", "-m", "free_llm_agent.tools.executor_worker", str(self.workspace),
                  str(self.max_output_chars)]
        keep = [ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent]
        try:
            argv, fds = session.command(worker, theirs.fileno(), keep)
            proc = spawn(lambda: subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                env=env, pass_fds=fds, process_group=0,  # a Ctrl-C in the agent's terminal is the agent's to handle
            ))
        except BaseException:
            ours.close()
            session.close()
            raise
        finally:
            theirs.close()
        session.started(proc.pid)
        self._channel = ours
        self._answers = queue.Queue()
        self._warm = False
        threading.Thread(target=_listen, args=(ours, session, self._answers), daemon=True).start()
        if self.sandbox.active:  # the sandboxed worker and kernel cannot write their bytecode themselves
            bytecode.compile_in_background()
        return proc

    def _ready(self) -> subprocess.Popen[Any]:
        """The running child: a fresh one if there is none, or if a hidden path changed since it started
        (its hiding mount no longer covers a path replaced or created since)."""
        moved = self.sandbox.active and self.sandbox.fingerprint(self.workspace) != self._hidden_marks
        if self._proc is not None and moved:
            self._kill()
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._proc = self._start()
        return self._proc

    def _send(self, request: dict[str, Any]) -> None:
        assert self._channel is not None
        self._channel.sendall((json.dumps(request) + "\n").encode("utf-8"))

    def start(self) -> None:
        """Start the child and its kernels now, without waiting for them (see the module docstring)."""
        with self._lock:
            try:
                self._ready()
                if not self._warm:
                    self._send({"control": "warm"})
                    self._warm = True
            except OSError:
                self._kill()  # the first run starts it again, and reports what goes wrong

    def reset(self) -> None:
        """Before another thread's tasks: every process the earlier ones started is killed and fresh kernels
        start (in the sandbox; unsandboxed, the Python namespace is cleared). Returns once that is done; a
        worker that does not confirm it is killed (the next run starts a fresh one)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            try:
                self._send({"control": "reset"})
                self._warm = True  # the worker starts fresh kernels after the reset
                if self._control_answer(time.monotonic() + RESET_WAIT_S) is None:
                    self._kill()
                elif self._session is not None:
                    self._session.settle()  # nothing of the earlier thread is alive: check what it left
            except (OSError, queue.Empty):
                self._kill()

    @property
    def pid(self) -> int | None:
        """The child's process id (bubblewrap's, when sandboxed), while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _answer(self, deadline: float, on_output: Callable[[str], None] | None = None) -> str | None:
        """The next answer to a task (answers to control lines are skipped; its output while it runs goes to
        ``on_output``, redacted); None: the child is gone or silent."""
        while True:
            line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is not None and line.startswith('{"output"'):
                if on_output is not None:
                    self._pass_on(line, on_output)
                continue
            if line is None or not line.startswith('{"control"'):
                return line

    def _pass_on(self, line: str, on_output: Callable[[str], None]) -> None:
        """One ``{"output": TEXT}`` line of the worker's to ``on_output``: whole lines, so a secret is redacted
        whole. Watching a task never stops it: a failing ``on_output`` is ignored."""
        try:
            text = json.loads(line).get("output")
            if isinstance(text, str) and text:
                on_output(redact(text, self._secrets))
        except Exception:
            logging.getLogger(__name__).debug("passing on a task's output failed", exc_info=True)

    def _control_answer(self, deadline: float) -> str | None:
        """The answer to the reset just sent (the warm-up's answer may come first)."""
        while True:
            line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None or line.startswith('{"control": "reset"'):
                return line

    def run(self, language: str, code: str, on_output: Callable[[str], None] | None = None) -> ExecutionResult:
        """Run ``code`` in the child; ``on_output`` is given what it prints while it runs (as
        :meth:`tools.local_executor.LocalExecutor.run` says), from the calling thread."""
        start = time.monotonic()
        with self._lock:
            mark = 0
            try:
                self._ready()
                mark = self._session.mark() if self._session is not None else 0
                self._send({"language": language, "code": code, "timeout_s": self.timeout_s,
                            "stream": on_output is not None})
                line = self._answer(time.monotonic() + self.timeout_s + GRACE_S, on_output)
            except (OSError, queue.Empty):
                line = None
            if line is None:
                result = ExecutionResult(ok=False, output="", timed_out=True, duration_s=time.monotonic() - start,
                                         error="the executor stopped answering; it was restarted")
                if self._session is not None:  # e.g. the OOM killer took the worker itself
                    result = self._session.finished(result, mark)
                    result.timed_out = not (result.error or "").startswith("memory limit")
                self._kill()
                if self._aborted:
                    self._aborted = False
                    raise ExecutorAborted("the run was stopped while this task ran")
                return result
            result = ExecutionResult(**json.loads(line))
            if self._session is not None:
                result = self._session.finished(result, mark)
            result.output = redact(result.output, self._secrets)
            if result.error:
                result.error = redact(result.error, self._secrets)
            return result

    def abort(self) -> None:
        """Stop the task in flight now (from another thread, e.g. a Ctrl-C handler): the child and
        everything it started are killed, and the waiting ``run`` raises :class:`ExecutorAborted`."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._aborted = True
        kill_tree(proc, self.sandbox.active)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_tree(proc, self.sandbox.active)
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.close()
        session, self._session = self._session, None
        if session is not None:
            session.close()
        runtime, self._runtime_dir = self._runtime_dir, None
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)

    def close(self) -> None:
        """Kill the child and everything it started, at once (see the module docstring)."""
        with self._lock:
            self._kill()

    def __enter__(self) -> IsolatedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _listen(channel: socket.socket, session: SandboxSession, answers: queue.Queue[str | None]) -> None:
    """The worker's side of the channel: first the proxy's listening socket (or none), then answer lines."""
    try:
        first, fds, _, _ = socket.recv_fds(channel, 1, 1)
        if fds:
            session.serve(socket.socket(fileno=fds[0]))
        if first:
            for line in channel.makefile("r", encoding="utf-8"):
                answers.put(line)
    except OSError:
        pass
    answers.put(None)  # the child exited (or its channel was closed)
