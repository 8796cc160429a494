"""Measure LocalExecutor cold start and warm per-run overhead.

Run: ``cd /work/main && uv run python bench/executor_bench.py [--runs 20]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import local_executor
from tools.local_executor import LocalExecutor


def _timed(ex: LocalExecutor, language: str, code: str) -> float:
    start = time.perf_counter()
    result = ex.run(language, code)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"{language} run failed: {result.error}\n{result.output}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fla-bench-") as tmp:
        with LocalExecutor(Path(tmp), timeout_s=60) as ex:
            t0 = time.perf_counter()
            local_executor._load_oi()
            t_import = time.perf_counter() - t0
            t_py_first = _timed(ex, "python", "print('hi')")
            t_sh_first = _timed(ex, "shell", "echo hi")
            warm_py = [_timed(ex, "python", "print('hi')") for _ in range(args.runs)]
            warm_sh = [_timed(ex, "shell", "echo hi") for _ in range(args.runs)]
            t0 = time.perf_counter()
        t_close = time.perf_counter() - t0
    print(f"import open-interpreter          : {t_import:6.2f} s")
    print(f"cold python (kernel start + run) : {t_py_first:6.2f} s")
    print(f"cold total (import + 1st python) : {t_import + t_py_first:6.2f} s")
    print(f"first shell run (bash start)     : {t_sh_first:6.2f} s")
    for name, samples in (("python", warm_py), ("shell", warm_sh)):
        print(f"warm {name:<6} median of {len(samples):>2} runs : "
              f"{statistics.median(samples):6.3f} s  (min {min(samples):.3f}, "
              f"max {max(samples):.3f})")
    print(f"close()                          : {t_close:6.2f} s")


if __name__ == "__main__":
    main()
