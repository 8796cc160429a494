"""Cost of the bubblewrap sandbox on the default executor (IsolatedExecutor): sandbox off vs on.

Per round and mode, a fresh IsolatedExecutor in a fresh temporary working directory:
cold start = the first ``print(1)`` (child process, Open Interpreter import, kernel start),
then the warm per-task time (median of 20 ``print(1)`` in python, 10 ``echo 1`` in shell)
and ``close()``. "process start" is a bare ``true``: plain for "off", under the sandbox's own
bubblewrap argv (``Sandbox.wrap(["true"])``) for "on", median of 20. Modes alternate within
each round so drift on a busy machine hits both; the table shows the median over rounds.
The agent home given to ``resolve`` is a temporary folder (empty), so nothing real is touched.

Run: ``cd /work/main && uv run python bench/sandbox_bench.py [rounds]``  (default 3 rounds)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.sandbox import Sandbox, SandboxUnavailable, resolve

WARM_PY = 20
WARM_SH = 10
RAW_STARTS = 20
METRICS = (
    ("cold start (1st print(1))", "cold"),
    (f"warm python print(1), med of {WARM_PY}", "warm_py"),
    (f"warm shell echo 1, med of {WARM_SH}", "warm_sh"),
    ("close()", "close"),
    (f"process start `true`, med of {RAW_STARTS}", "raw"),
)


def _timed(ex: IsolatedExecutor, language: str, code: str) -> float:
    start = time.perf_counter()
    result = ex.run(language, code)
    elapsed = time.perf_counter() - start
    if not result.ok or "1" not in result.output:
        raise RuntimeError(f"{language} run failed: {result.error}\n{result.output}")
    return elapsed


def _raw_start(sandbox: Sandbox, workdir: Path) -> float:
    """Median time to run ``true`` (under bubblewrap when the sandbox is active)."""
    argv = sandbox.wrap(["true"], workdir=workdir, proxy=True)
    samples: list[float] = []
    for _ in range(RAW_STARTS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _round(sandbox: Sandbox, tmp: Path) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="ws-", dir=tmp))
    ex = IsolatedExecutor(workdir, timeout_s=60, sandbox=sandbox)
    try:
        cold = _timed(ex, "python", "print(1)")
        warm_py = statistics.median(_timed(ex, "python", "print(1)") for _ in range(WARM_PY))
        warm_sh = statistics.median(_timed(ex, "shell", "echo 1") for _ in range(WARM_SH))
        start = time.perf_counter()
        ex.close()
        close = time.perf_counter() - start
    finally:
        ex.close()
    return {"cold": cold, "warm_py": warm_py, "warm_sh": warm_sh, "close": close, "raw": _raw_start(sandbox, workdir)}


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.3f} s" if abs(seconds) >= 1 else f"{seconds * 1000:.1f} ms"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="fla-sandbox-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        modes: dict[str, Sandbox] = {"off": resolve("off", home)}
        try:
            modes["on"] = resolve("required", home)
        except SandboxUnavailable as exc:
            print(f"sandbox 'on' skipped: {exc}")
        print(f"{rounds} rounds; sandbox on: {modes['on'].describe() if 'on' in modes else 'unavailable'}")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
        for i in range(rounds):
            for name, sandbox in modes.items():
                results[name].append(_round(sandbox, tmp))
                print(f"  round {i + 1}/{rounds} {name:<3}: cold {_fmt(results[name][-1]['cold'])}", flush=True)

    def med(name: str, key: str) -> float | None:
        runs = results.get(name)
        return statistics.median(r[key] for r in runs) if runs else None

    print(f"\n{'median of ' + str(rounds) + ' rounds':<40} {'off':>10} {'on':>10} {'on - off':>10}")
    for label, key in METRICS:
        off, on = med("off", key), med("on", key)
        delta = _fmt(on - off) if off is not None and on is not None else "n/a"
        print(f"{label:<40} {_fmt(off):>10} {_fmt(on):>10} {delta:>10}")


if __name__ == "__main__":
    main()
