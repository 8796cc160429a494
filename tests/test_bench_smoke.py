"""Every benchmark in bench/ runs at its tiny size (``--tiny``), exits 0 and prints its table.

The peers (LiteLLM, LangChain fallbacks) live in their own venv, built by the benchmark on
first use (``bench/peers.py``); ``--tiny`` skips them with a printed note. With
``FLA_BENCH_PEERS=1`` one more test builds that venv (if missing) and runs the tiny
quota_throughput and overhead with the peers. ``quota_store`` runs on SQLite here and on
PostgreSQL in its own test (a throw-away cluster it starts itself; skipped with the reason when
the server binaries are missing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["quota_throughput", "quota_store", "overhead", "calls_per_goal", "resume", "executor"]


def run_bench(name: str, tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    png = tmp_path / f"{name}.png"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--tiny", "--png", str(png), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "\n|---" in proc.stdout, proc.stdout  # a markdown table
    assert png.stat().st_size > 1000
    return proc


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_runs_tiny(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench(name, tmp_path, env, *(["--backend", "sqlite"] if name == "quota_store" else []))
    if name == "quota_throughput":
        assert "ours (QuotaAwareChatModel)" in proc.stdout and "note: --tiny runs ours only" in proc.stdout
    if name == "quota_store":
        assert "| SQLite | 2 | 1,000 |" in proc.stdout


def test_quota_store_postgresql_tiny(tmp_path: Path) -> None:
    """Both backends side by side, PostgreSQL in a cluster the benchmark starts and removes itself."""
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench("quota_store", tmp_path, env)  # --backend sqlite,postgresql
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("PostgreSQL skipped:")]
    if skipped:
        print(f"\n{skipped[0]}")
        pytest.skip(skipped[0])
    assert "| PostgreSQL | 2 | 1,000 |" in proc.stdout, proc.stdout
    assert "| SQLite reservations/s | PostgreSQL reservations/s |" in proc.stdout, proc.stdout
    started = re.search(r"throw-away cluster in (\S+)", proc.stdout)
    assert started, proc.stdout
    assert not Path(started.group(1)).exists()  # stopped and removed at the end


@pytest.mark.skipif(os.environ.get("FLA_BENCH_PEERS") != "1", reason="set FLA_BENCH_PEERS=1 to build the peers' venv")
@pytest.mark.timeout(900)
def test_benchmarks_with_peers_tiny(tmp_path: Path) -> None:
    env = {**os.environ, "FLA_BENCH_PEERS": "1"}
    quota = run_bench("quota_throughput", tmp_path, env)
    assert "LiteLLM Router" in quota.stdout and "LangChain with_fallbacks" in quota.stdout
    overhead = run_bench("overhead", tmp_path, env)
    assert "LiteLLM Router.completion" in overhead.stdout
