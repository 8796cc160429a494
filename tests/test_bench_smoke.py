"""Every benchmark in bench/ runs at its tiny size (``--tiny``), exits 0 and prints its table.

The peers (LiteLLM, LangChain fallbacks) live in their own venv, built by the benchmark on
first use (``bench/peers.py``); ``--tiny`` skips them with a printed note. With
``FLA_BENCH_PEERS=1`` one more test builds that venv (if missing) and runs the tiny
quota_throughput and overhead with the peers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["quota_throughput", "overhead", "calls_per_goal", "resume", "executor"]


def run_bench(name: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    png = tmp_path / f"{name}.png"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--tiny", "--png", str(png)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "\n|---" in proc.stdout, proc.stdout  # a markdown table
    assert png.stat().st_size > 1000
    return proc


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_runs_tiny(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench(name, tmp_path, env)
    if name == "quota_throughput":
        assert "ours (QuotaAwareChatModel)" in proc.stdout and "note: --tiny runs ours only" in proc.stdout


@pytest.mark.skipif(os.environ.get("FLA_BENCH_PEERS") != "1", reason="set FLA_BENCH_PEERS=1 to build the peers' venv")
@pytest.mark.timeout(900)
def test_benchmarks_with_peers_tiny(tmp_path: Path) -> None:
    env = {**os.environ, "FLA_BENCH_PEERS": "1"}
    quota = run_bench("quota_throughput", tmp_path, env)
    assert "LiteLLM Router" in quota.stdout and "LangChain with_fallbacks" in quota.stdout
    overhead = run_bench("overhead", tmp_path, env)
    assert "LiteLLM Router.completion" in overhead.stdout
