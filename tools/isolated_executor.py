"""Run the Open Interpreter executor in a child process, inside the OS sandbox.

Why: Open Interpreter's Jupyter machinery runs its own event loop and blocking
I/O, which an async host (``langgraph dev`` flags blocking calls) must not see,
and a wedged kernel must never take the agent down. The child keeps its kernel
warm between runs; if it stops answering (its own hard timeout failed), it is
killed with its whole process tree and the next run starts a fresh one.

The child is started under the :class:`tools.sandbox.Sandbox` it is given
(bubblewrap: working directory writable, rest read-only, home and credentials
hidden, its own PID namespace dying with the agent) with an environment
without any key; output is redacted of the removed values all the same. On
Linux without a sandbox the child still sets ``PR_SET_PDEATHSIG`` for itself,
so it dies with the agent. Children are spawned from one long-lived thread: the parent
death signal fires when the *thread* that forked exits, and LangGraph runs
nodes in short-lived pool threads.

:meth:`IsolatedExecutor.start` starts the child and its kernels without waiting (the first ``run``
then waits only for what is left of the start); :meth:`IsolatedExecutor.reset` clears the Python
namespace before another thread's tasks use the same warm child; :meth:`IsolatedExecutor.close`
kills the child's whole tree at once (nothing in it needs a polite shutdown: the kernels' runtime
files are in the sandbox's private ``/tmp``, or unsandboxed in a folder removed with it).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tools import bytecode
from tools.local_executor import ExecutionResult
from tools.sandbox import Sandbox, redact, scrubbed_env

if TYPE_CHECKING:  # imported when a tree is killed: not on the way to the worker's start
    import psutil

ROOT = Path(__file__).resolve().parent.parent
# Beyond the executor's own timeout: a cold start (import ≈ 0.5 s, kernel ≈ 1–3 s; far more on a loaded
# machine) and cleanup.
GRACE_S = 90.0


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
    ) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.sandbox = sandbox or Sandbox("none", "no sandbox given")
        self.network = network
        self.key_vars = tuple(key_vars)
        self._secrets: dict[str, str] = {}
        self._hidden_marks: tuple[tuple[int, int] | None, ...] = ()
        self._aborted = False
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._runtime_dir: str | None = None  # unsandboxed: the kernels' connection files, removed on close
        self._warm = False  # the running child was asked to start its kernels
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        """The child's command line: the worker, under the sandbox if there is one."""
        worker = [sys.executable, "-m", "tools.executor_worker", str(self.workspace), str(self.max_output_chars)]
        keep = [ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent]
        return self.sandbox.wrap(worker, workdir=self.workspace, network=self.network, keep=keep)

    def _start(self) -> subprocess.Popen[str]:
        env, self._secrets = scrubbed_env(os.environ, self.key_vars)
        self._hidden_marks = self.sandbox.fingerprint()
        env["PYTHONUNBUFFERED"] = "1"  # the worker's LocalExecutor sets OI's own env
        if not self.sandbox.active:  # bubblewrap's --die-with-parent does it in the sandbox
            env["FLA_PARENT_PID"] = str(os.getpid())  # the worker dies with this process (PR_SET_PDEATHSIG)
            self._runtime_dir = env["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="fla-jupyter-")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        argv = self.command()
        proc = _spawn(lambda: subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            env=env, process_group=0,  # a Ctrl-C in the agent's terminal is the agent's to handle
        ))
        self._answers = queue.Queue()
        self._warm = False
        threading.Thread(target=_pump, args=(proc.stdout, self._answers), daemon=True).start()
        if self.sandbox.active:  # the sandboxed worker and kernel cannot write their bytecode themselves
            bytecode.compile_in_background()
        return proc

    def _ready(self) -> subprocess.Popen[str]:
        """The running child: a fresh one if there is none, or if a hidden path changed since it started
        (its hiding mount no longer covers a path replaced or created since)."""
        if self._proc is not None and self.sandbox.active and self.sandbox.fingerprint() != self._hidden_marks:
            self._kill()
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._proc = self._start()
        return self._proc

    def _send(self, proc: subprocess.Popen[str], request: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()

    def start(self) -> None:
        """Start the child and its kernels now, without waiting for them (see the module docstring)."""
        with self._lock:
            try:
                proc = self._ready()
                if not self._warm:
                    self._send(proc, {"control": "warm"})
                    self._warm = True
            except OSError:
                self._kill()  # the first run starts it again, and reports what goes wrong

    def reset(self) -> None:
        """Before another thread's tasks: forget the Python namespace of the earlier ones (without waiting)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return  # the next run starts a fresh child anyway
            try:
                self._send(proc, {"control": "reset"})
            except OSError:
                self._kill()

    @property
    def pid(self) -> int | None:
        """The child's process id (bubblewrap's, when sandboxed), while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _answer(self, deadline: float) -> str | None:
        """The next answer to a task (answers to control lines are skipped); None: the child is gone or silent."""
        while True:
            line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None or not line.startswith('{"control"'):
                return line

    def run(self, language: str, code: str) -> ExecutionResult:
        start = time.monotonic()
        with self._lock:
            try:
                proc = self._ready()
                self._send(proc, {"language": language, "code": code, "timeout_s": self.timeout_s})
                line = self._answer(time.monotonic() + self.timeout_s + GRACE_S)
            except (OSError, queue.Empty):
                line = None
            if line is None:
                self._kill()
                if self._aborted:
                    self._aborted = False
                    raise ExecutorAborted("the run was stopped while this task ran")
                return ExecutionResult(ok=False, output="", timed_out=True, duration_s=time.monotonic() - start,
                                       error="the executor stopped answering; it was restarted")
            result = ExecutionResult(**json.loads(line))
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
        _kill_tree(proc, self.sandbox.active)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill_tree(proc, self.sandbox.active)
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
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


_spawn_queue: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _kill_tree(proc: subprocess.Popen[str], sandboxed: bool) -> None:
    """SIGKILL ``proc`` and its descendants; return when they are gone. ``sandboxed``: ``proc`` is bubblewrap,
    which exits by itself once its child is killed (killed with it, its child would be left a zombie)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for p in tree:  # first what runs inside: a sandbox's bubblewrap then reaps its child and exits itself
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5 if tree and sandboxed else 0)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5  # SIGKILL is delivered at once, but a process takes a moment to be gone
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.005)


def _alive(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _spawn_loop() -> None:
    while True:
        make, future = _spawn_queue.get()
        try:
            future.set_result(make())
        except BaseException as exc:
            future.set_exception(exc)


def _spawn(make: Callable[[], subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """Run ``make`` (a Popen) on the process-wide spawner thread, which lives as long as the process."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawn_loop, name="fla-spawner", daemon=True)
            _spawner.start()
    future: Future[subprocess.Popen[str]] = Future()
    _spawn_queue.put((make, future))
    return future.result()


def _pump(stream: IO[str] | None, answers: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        answers.put(line)
    answers.put(None)  # the child exited
