"""Executor: cold start, warm per-task time (python, shell), recovery after a timeout.

Both executors as they are: ``LocalExecutor`` (Open Interpreter in this process) and
``IsolatedExecutor`` (the default: a child process under the sandbox that
``execution.sandbox: auto`` resolves to). Per executor, in a fresh working directory:

* cold start: the first ``print('hi')`` (Open Interpreter import + kernel start + run);
* first shell: the first ``echo hi`` (bash start);
* warm python / shell: median of N ``print('hi')`` / ``echo hi``;
* timeout: ``time.sleep(60)`` under a T-second task timeout — when the run returns;
* recovery: the next ``print('hi')`` after it (what a timeout costs the following task),
  then the median of 3 more.

    uv run python bench/executor.py [--runs 20] [--timeout 3] [--tiny]

``--tiny`` measures the isolated executor only, with 2 warm runs and a 1 s timeout.
This replaces the former ``bench/executor_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import add_output_args, loaded_note, markdown_table, plt_figure, png_path, save

from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.local_executor import LocalExecutor
from free_llm_agent.tools.sandbox import resolve


def timed(ex: Any, language: str, code: str, *, expect_ok: bool = True) -> tuple[float, Any]:
    start = time.perf_counter()
    result = ex.run(language, code)
    elapsed = time.perf_counter() - start
    if expect_ok and not result.ok:
        raise RuntimeError(f"{language} run failed: {result.error}\n{result.output}")
    return elapsed, result


def measure(make: Callable[[Path], Any], runs: int, timeout_s: float, tmp: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="ws-", dir=tmp))
    ex = make(work)
    try:
        cold, _ = timed(ex, "python", "print('hi')")
        first_sh, _ = timed(ex, "shell", "echo hi")
        warm_py = statistics.median(timed(ex, "python", "print('hi')")[0] for _ in range(runs))
        warm_sh = statistics.median(timed(ex, "shell", "echo hi")[0] for _ in range(runs))
        ex.timeout_s = timeout_s
        t_out, result = timed(ex, "python", "import time\ntime.sleep(60)\nprint('late')", expect_ok=False)
        if not result.timed_out:
            raise RuntimeError(f"the sleep did not time out: {result}")
        ex.timeout_s = 60.0
        recovery, _ = timed(ex, "python", "print('hi')")
        after = statistics.median(timed(ex, "python", "print('hi')")[0] for _ in range(3))
        start = time.perf_counter()
        ex.close()
        close = time.perf_counter() - start
    finally:
        ex.close()
    return {"cold": cold, "first_sh": first_sh, "warm_py": warm_py, "warm_sh": warm_sh, "timeout": t_out,
            "recovery": recovery, "after": after, "close": close}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=3.0, help="task timeout for the timeout test (s)")
    add_output_args(parser)
    args = parser.parse_args()
    runs, timeout_s = (2, 1.0) if args.tiny else (args.runs, args.timeout)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fla-exec-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        sandbox = resolve("auto", home)
        makers: dict[str, Callable[[Path], Any]] = {
            f"IsolatedExecutor (default; sandbox: {sandbox.describe()})":
                lambda w: IsolatedExecutor(w, timeout_s=60.0, sandbox=sandbox),
        }
        if not args.tiny:
            makers["LocalExecutor (in-process)"] = lambda w: LocalExecutor(w, timeout_s=60.0)
        for name, make in makers.items():
            results[name] = measure(make, runs, timeout_s, tmp)
            print(f"  {name}: cold {results[name]['cold']:.2f} s", file=sys.stderr)
    labels = [("cold start (1st python run)", "cold"), ("first shell run", "first_sh"),
              (f"warm python, median of {runs}", "warm_py"), (f"warm shell, median of {runs}", "warm_sh"),
              (f"timed-out task returns after (timeout {timeout_s:g} s)", "timeout"),
              ("next task after the timeout", "recovery"), ("tasks after that, median of 3", "after"),
              ("close()", "close")]
    names = list(results)
    print("Executor timings (seconds), Open Interpreter 0.4.3 as configured by the project")
    print(markdown_table(["", *names], [[label, *(f"{results[n][key]:.3f}" for n in names)] for label, key in labels]))
    print(f"\n{loaded_note()}")
    fig, (ax,) = plt_figure(8.0, 4.2)
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        ax.bar([x + i * width for x in range(len(labels))], [results[n][k] for _, k in labels], width,
               label=n.split(" (")[0])
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(labels))],
                  ["cold", "1st shell", "warm py", "warm sh", "timeout", "next", "after", "close"])
    ax.set_ylabel("seconds")
    ax.set_title("Executor: cold start, warm tasks, timeout recovery")
    ax.legend()
    save(fig, png_path(args, "executor"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
