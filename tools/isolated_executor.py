"""Run the Open Interpreter executor in a child process.

Why: Open Interpreter's Jupyter machinery runs its own event loop and blocking
I/O, which an async host (``langgraph dev`` flags blocking calls) must not see,
and a wedged kernel must never take the agent down. The child keeps its kernel
warm between runs; if it stops answering (its own hard timeout failed), it is
killed with its whole process tree and the next run starts a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import psutil

from tools.local_executor import ExecutionResult

ROOT = Path(__file__).resolve().parent.parent
# Beyond the executor's own timeout: a cold start (import ≈ 4 s, kernel ≈ 2 s) and cleanup.
GRACE_S = 90.0


class IsolatedExecutor:
    """Same API as LocalExecutor (``run``/``close``), one child process per workspace."""

    def __init__(self, workspace: Path, *, timeout_s: float = 60.0, max_output_chars: int = 20_000) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the worker's LocalExecutor sets OI's own env
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.executor_worker", str(self.workspace), str(self.max_output_chars)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
        )
        self._answers = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, self._answers), daemon=True).start()
        return proc

    def run(self, language: str, code: str) -> ExecutionResult:
        start = time.monotonic()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"language": language, "code": code, "timeout_s": self.timeout_s}) + "\n")
                proc.stdin.flush()
                line = self._answers.get(timeout=self.timeout_s + GRACE_S)
            except (OSError, queue.Empty):
                line = None
            if line is None:
                self._kill()
                return ExecutionResult(ok=False, output="", timed_out=True, duration_s=time.monotonic() - start,
                                       error="the executor stopped answering; it was restarted")
            return ExecutionResult(**json.loads(line))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        for p in [*tree, proc]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                p.kill()
        proc.wait(timeout=10)

    def close(self) -> None:
        """Let the child terminate its kernels, then make sure nothing is left."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=15)
                self._proc = None
            except (OSError, subprocess.TimeoutExpired):
                self._kill()

    def __enter__(self) -> IsolatedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(stream: IO[str] | None, answers: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        answers.put(line)
    answers.put(None)  # the child exited
