"""Machines starting together on a fresh PostgreSQL database (issue 21, case 7): processes of two homes open
a new database at the same moment (eight here: with four, the old code hung one run in three; with eight,
every run). They used to wait on each other forever: LangGraph's checkpoint setup creates an index
CONCURRENTLY, which waits for every transaction in progress — including the others' wait for the setup lock.
Now one sets the database up; the others poll for the lock, see it done, and go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.config import ConfigFactory
from tests.support.paths import ROOT

pytestmark = pytest.mark.timeout(300)


# The CLI, its backend's libraries imported, held at a start line: the processes open the database together.
STARTER = """
import os, sys, time
import psycopg, langgraph.checkpoint.postgres
from free_llm_agent.cli import main
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
sys.exit(main.main(sys.argv[2:]))
"""


def test_eight_processes_opening_a_fresh_database_together_all_finish(
        postgres_url: str, tmp_path: Path, make_config: ConfigFactory) -> None:
    cfg = make_config({"local": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}})
    go = tmp_path / "go"
    procs = []
    for n in range(8):
        home = tmp_path / f"home{n % 2}"  # two machines' homes, four processes each
        procs.append(subprocess.Popen(
            [sys.executable, "-c", STARTER, str(go), "--config-dir", str(cfg), "--home", str(home),
             "--database-url", postgres_url, "threads", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT))
    time.sleep(3)  # every process is at the start line (a slower one only joins later: no harm)
    go.touch()
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=150)  # before: none returned
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert [code for code, _, _ in results] == [0] * 8, [err[-1500:] for _, _, err in results]
    assert all(json.loads(out) == {"threads": []} for _, out, _ in results), results
