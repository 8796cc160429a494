"""Every benchmark in bench/ runs at its tiny size (``--tiny``), exits 0 and prints its table.

The peers (LiteLLM, LangChain fallbacks) live in their own venv, built by the benchmark on
first use (``bench/peers.py``); ``--tiny`` skips them with a printed note. With
``FLA_BENCH_PEERS=1`` one more test builds that venv (if missing) and runs the tiny
quota_throughput and overhead with the peers. ``quota_store`` runs on SQLite here and on
both backends, each cell twice, in its own test (PostgreSQL in a throw-away cluster it starts
itself; skipped with the reason when the server binaries are missing); so do ``resume --machines
1,2`` (run on home A, resume on home B, one PostgreSQL database) and ``quota_throughput --systems
ours,ours-pg`` (ours as two machines on one PostgreSQL database).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

BENCHES = ["quota_throughput", "quota_store", "overhead", "calls_per_goal", "resume", "executor", "batch_workers"]


def run_bench(name: str, tmp_path: Path, env: dict[str, str], *args: str,
              skip_without_pg: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``bench/NAME.py --tiny``; with ``skip_without_pg``, skip (printing why) when it had no PostgreSQL."""
    png = tmp_path / f"{name}.png"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--tiny", "--png", str(png), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("PostgreSQL skipped:")]
    if skip_without_pg and skipped:
        print(f"\n{skipped[0]}")
        pytest.skip(skipped[0])
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
    """Both backends side by side, PostgreSQL in a cluster the benchmark starts and removes itself; every cell
    twice (the stored functions' path, and the medians with their spread)."""
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench("quota_store", tmp_path, env, "--repeat", "2", skip_without_pg=True)
    assert re.search(r"\| PostgreSQL \| 2 \| 1,000 \| \d+ \(\d+–\d+\) \|", proc.stdout), proc.stdout
    assert "| SQLite reservations/s | PostgreSQL reservations/s |" in proc.stdout, proc.stdout
    assert "| PostgreSQL / SQLite |" in proc.stdout and "(run 2, load " in proc.stdout, proc.stdout
    _cluster_removed(proc.stdout)


def _cluster_removed(stdout: str) -> None:
    started = re.search(r"throw-away cluster in (\S+)", stdout)
    assert started, stdout
    assert not Path(started.group(1)).exists()  # stopped and removed at the end


def test_resume_two_machines_tiny(tmp_path: Path) -> None:
    """kill -9 on machine A, resume on machine B (another home), one PostgreSQL database; SQLite beside it."""
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench("resume", tmp_path, env, "--machines", "1,2", "--workdir", str(tmp_path), skip_without_pg=True)
    assert "|  | 1 machine (SQLite) | 2 machines (PostgreSQL) |" in proc.stdout, proc.stdout
    assert "| completed after resume | 1/1 | 1/1 |" in proc.stdout, proc.stdout
    _cluster_removed(proc.stdout)


def test_quota_throughput_two_machines_tiny(tmp_path: Path) -> None:
    """Per-day limits: ours on one home (SQLite) and as two machines sharing one PostgreSQL database."""
    env = {k: v for k, v in os.environ.items() if k != "FLA_BENCH_PEERS"}
    proc = run_bench("quota_throughput", tmp_path, env, "--systems", "ours,ours-pg", "--scenario", "per-day",
                     skip_without_pg=True)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| per-day |")]
    assert len(rows) == 2 and "2 machines (homes) sharing one PostgreSQL" in rows[1], proc.stdout
    for row in rows:  # no 429 sent: the two machines' workers share one ledger (two SQLite homes would overshoot)
        served, refused = row.split("|")[3:5]
        assert int(refused) == 0 and int(served.split("/")[0]) <= int(served.split("/")[1]), rows
    _cluster_removed(proc.stdout)


@pytest.mark.skipif(os.environ.get("FLA_BENCH_PEERS") != "1", reason="set FLA_BENCH_PEERS=1 to build the peers' venv")
@pytest.mark.timeout(900)
def test_benchmarks_with_peers_tiny(tmp_path: Path) -> None:
    env = {**os.environ, "FLA_BENCH_PEERS": "1"}
    quota = run_bench("quota_throughput", tmp_path, env)
    assert "LiteLLM Router" in quota.stdout and "LangChain with_fallbacks" in quota.stdout
    overhead = run_bench("overhead", tmp_path, env)
    assert "LiteLLM Router.completion" in overhead.stdout
