"""The executor's kernel start: first the kernel, then OI's terminal; ipykernel without its debugger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from free_llm_agent.tools.local_executor import LocalExecutor
from tests.support.paths import ROOT

TERMINAL = "interpreter.core.computer.terminal.terminal"


def _kernels() -> set[int]:
    """The kernels running under this process (other tests' executors may have theirs)."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ipykernel_launcher" in " ".join(proc.cmdline()) and proc.status() != "zombie":
                found.add(proc.pid)
        except psutil.Error:
            pass
    return found


def test_the_worker_starts_the_kernel_before_it_imports_ois_terminal(tmp_path: Path) -> None:
    """As the worker does (``prestart`` first thing): the kernel process runs while OI's terminal is not
    imported yet; the first task then uses that kernel."""
    probe = textwrap.dedent(f"""
        import json, sys
        import psutil
        from pathlib import Path
        from free_llm_agent.tools.local_executor import LocalExecutor
        ex = LocalExecutor(Path({str(tmp_path)!r}))
        ex.prestart()
        kernels = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
        terminal_then = {TERMINAL!r} in sys.modules
        result = ex.run("python", "print(6 * 7)")
        pids = [p.pid for p in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
        ex.close()
        print(json.dumps({{"kernels": kernels, "terminal_then": terminal_then, "ok": result.ok,
                          "output": result.output, "kernel_pids": pids}}))
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any("-m free_llm_agent.tools.ipykernel_launcher" in line for line in got["kernels"]), got["kernels"]
    assert not got["terminal_then"]
    assert got["ok"] and got["output"] == "42\n"
    assert len(got["kernel_pids"]) == 1  # the task ran on the kernel started early, not on a second one


def test_the_kernel_runs_without_the_debugger_and_tasks_can_import_debugpy(tmp_path: Path) -> None:
    before = _kernels()
    ex = LocalExecutor(tmp_path, timeout_s=30)
    try:
        ex.prestart()
        code = ("import sys\nprint('debugpy' in sys.modules)\nimport ipykernel.debugger as d\n"
                "print(d._is_debugpy_available)\nimport debugpy\nprint(debugpy.__name__)")
        result = ex.run("python", code)
        assert result.ok, result.error
        assert result.output.split() == ["False", "False", "debugpy"]
    finally:
        ex.close()
    assert not _kernels() - before


def test_a_kernel_started_early_and_never_used_is_closed(tmp_path: Path) -> None:
    before = _kernels()
    ex = LocalExecutor(tmp_path)
    ex.prestart()
    assert _kernels() - before
    ex.close()
    assert not _kernels() - before
