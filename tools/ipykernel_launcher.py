"""The executor's Jupyter kernel: ipykernel's own ``ipykernel_launcher``, without the debugger.

ipykernel imports debugpy (≈110 modules, ≈0.2 s of a ≈0.5 s kernel start) to serve Jupyter's debug
protocol, which the executor never speaks. Here ``debugpy`` is blocked while the kernel initialises,
so ipykernel finds it unavailable (as when it is not installed) and runs without a debugger; the
block is lifted before the kernel runs anything, so code a task runs can ``import debugpy`` as usual. IPython's
history database is off.

Started by :func:`tools.oi_parts.start_kernel` (``python -m tools.ipykernel_launcher -f CONNECTION_FILE``: its
command line names ``ipykernel_launcher``, as the stock kernel's does).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    if sys.path[0] == "" or Path(sys.path[0]) == Path.cwd():  # as ipykernel_launcher: IPython adds it back
        del sys.path[0]
    blocked = "debugpy" not in sys.modules
    if blocked:
        sys.modules["debugpy"] = None  # type: ignore[assignment]
    try:
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        # no history database: tasks' code is not kept by the kernel (and nothing a task scribbles on the kernel's
        # descriptors can corrupt one and print errors into the next task's output)
        app.initialize([*sys.argv[1:], "--HistoryManager.enabled=False"])
    finally:
        if blocked and sys.modules.get("debugpy", 0) is None:
            del sys.modules["debugpy"]
    app.start()


if __name__ == "__main__":
    main()
