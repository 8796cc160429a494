"""Child process hosting a LocalExecutor; JSON lines on stdin/stdout.

Started by :class:`tools.isolated_executor.IsolatedExecutor`. Each request line is
``{"language", "code", "timeout_s"}``; each answer line is an ExecutionResult as
JSON. A control line ``{"control": "warm"}`` (start the kernels now) or ``{"control": "reset"}``
(forget the earlier tasks' Python namespace) is answered with ``{"control": …, "error": …}``.
Everything the kernel machinery prints goes to stderr, so stdout carries only answers. The worker
exits when stdin closes (its parent is gone).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path


def _die_with_parent() -> None:
    """Get SIGKILL when the agent dies (Linux, unsandboxed: bubblewrap's --die-with-parent does it there)."""
    parent = os.environ.pop("FLA_PARENT_PID", "")
    if not sys.platform.startswith("linux") or not parent:
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):
        os._exit(0)  # the agent died before the signal was armed


def main(workspace: str, max_output_chars: int) -> int:
    _die_with_parent()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints -> stderr
    sys.stdout = sys.stderr
    from tools import oi_parts

    oi_parts.offline_env()
    try:  # first thing: the kernel boots while the rest is imported (and the first request imports OI's terminal)
        kernel = oi_parts.start_kernel()
    except Exception:
        kernel = None  # the first task starts one, and reports what goes wrong
    from tools.local_executor import LocalExecutor

    executor = LocalExecutor(Path(workspace), max_output_chars=max_output_chars)
    executor.prestart(kernel)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            if "control" in request:
                error = executor.warm() if request["control"] == "warm" else executor.reset()
                answers.write(json.dumps({"control": request["control"], "error": error}) + "\n")
                answers.flush()
                continue
            executor.timeout_s = float(request["timeout_s"])
            result = executor.run(str(request["language"]), str(request["code"]))
            answers.write(json.dumps(dataclasses.asdict(result)) + "\n")
            answers.flush()
    finally:
        executor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
