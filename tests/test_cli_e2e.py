"""The real CLI (``run_graph.py`` in a subprocess) against loopback fake providers,
with real Open Interpreter execution: runs, cache, kill -9 + resume, quota pause,
approval pause, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fakes.agent_responder import DEFAULT_PLAN, make_responder
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.cli import as_json, cli
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def agent_setup(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> Callable[..., tuple[FakeProvider, Path]]:
    def setup(plan: tuple[tuple[str, str], ...] = DEFAULT_PLAN, **config: Any) -> tuple[FakeProvider, Path]:
        server = fake_server("openai", responder=make_responder(plan))
        cfg = make_config(
            {"groq_llama": {"kind": "groq", "base_url": server.base_url,
                            "limits": {"requests_per_minute": 100, "requests_per_day": 1000}}},
            optimization={"enable_caching": True, "max_batch_size": 3}, **config,
        )
        return server, cfg

    return setup


def test_goal_runs_to_completed_within_llm_budget_and_rerun_is_cached(
    agent_setup: Callable[..., tuple[FakeProvider, Path]], home: Path, tmp_path: Path
) -> None:
    server, cfg = agent_setup()
    workdir = tmp_path / "project"
    workdir.mkdir()
    proc = cli(["run", "make numbers and sum them", "--workdir", str(workdir), "--yes", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert out["status"] == "completed"
    assert [t["status"] for t in out["tasks"]] == ["done"] * 5
    assert "sum 55" in out["tasks"][1]["output"]
    assert set(out) >= {"thread_id", "goal", "tasks", "summary", "llm_calls", "cache_hits", "resume_after"}
    # 5 tasks, batches of 3: plan + 2 x (code + reflect) = 1 + 2*ceil(5/3)
    assert len(server.requests) == sum(out["llm_calls"].values()) <= 1 + 2 * 2
    assert (workdir / "report.md").read_text() == "sum is 55\n"
    assert not (home / "workspaces" / out["thread_id"]).exists()

    # The same goal in the same (restored) folder: every prompt is the same, so all come from the cache.
    # The folder's listing is part of the prompts: a changed folder is a new question.
    for made in workdir.iterdir():
        made.unlink()
    again = as_json(cli(["run", "make numbers and sum them", "--workdir", str(workdir), "--yes", "--json"],
                        home, cfg))
    assert again["status"] == "completed"
    assert again["cache_hits"] == 5 and again["llm_calls"] == {}
    assert len(server.requests) == 5  # nothing new reached the provider


KILL_PLAN: tuple[tuple[str, str], ...] = (
    ("step one", "open('runs.log','a').write('one\\n')\nprint('one')"),
    ("step two", "open('runs.log','a').write('two\\n')\nprint('two')"),
    ("step three", "import os, time\nopen('runs.log','a').write('three-start\\n')\nt = time.time()\n"
                   "while not os.path.exists('go') and time.time() - t < 60:\n    time.sleep(0.05)\n"
                   "open('runs.log','a').write('three\\n')\nprint('three')"),
    ("step four", "open('runs.log','a').write('four\\n')\nprint('four')"),
)


def test_kill_9_during_execution_then_resume_repeats_nothing(
    agent_setup: Callable[..., tuple[FakeProvider, Path]], home: Path
) -> None:
    server, cfg = agent_setup(KILL_PLAN)
    log = home / "workspaces" / "crash1" / "runs.log"
    proc = subprocess.Popen(
        [*CLI, "--config-dir", str(cfg), "--home", str(home), "run", "crash test", "--scratch", "--thread-id",
         "crash1", "--yes", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "three-start" in log.read_text()):
        time.sleep(0.2)
    assert log.exists() and "three-start" in log.read_text(), "task 3 never started"
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Open Interpreter kernel
    proc.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)  # the executor dies with the CLI; task 3 must not see "go" below
    requests_before = len(server.requests)  # plan + code for batch 1
    assert requests_before == 2

    assert "three\n" not in log.read_text()  # task 3 (waiting for "go") was cut short
    (log.parent / "go").write_text("go")  # from now on task 3 finishes at once

    threads = as_json(cli(["threads", "--json"], home, cfg))
    assert {"thread_id": "crash1", "status": "interrupted"}.items() <= threads["threads"][0].items()

    resumed = cli(["resume", "crash1", "--yes", "--json"], home, cfg)
    assert resumed.returncode == 0, resumed.stderr
    out = as_json(resumed)
    assert out["status"] == "completed"
    runs = log.read_text().splitlines()
    assert runs.count("one") == 1 and runs.count("two") == 1  # finished tasks not executed again
    assert runs.count("three") == 1 and runs.count("four") == 1
    # plan, code(1-3), reflect(1-3), code(4), reflect(4): the two answered before the kill are not asked again
    assert len(server.requests) == 5


def test_all_providers_rate_limited_pauses_then_resume_completes(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    a = fake_server("openai", responder=make_responder())
    b = fake_server("gemini", responder=make_responder())
    a.script(Reply.rate_limit(retry_after=3))
    b.script(Reply.rate_limit(retry_after=2))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": a.base_url},
                       "google_gemini": {"kind": "gemini", "base_url": b.base_url}})
    proc = cli(["run", "count to five", "--scratch", "--yes", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert out["status"] == "waiting_for_quota"
    assert out["resume_after"] is not None and out["tasks"] == []
    time.sleep(3.2)
    resumed = as_json(cli(["resume", out["thread_id"], "--yes", "--json"], home, cfg))
    assert resumed["status"] == "completed"
    assert len(resumed["tasks"]) == 5


def test_without_terminal_and_without_yes_the_run_waits_for_approval(
    agent_setup: Callable[..., tuple[FakeProvider, Path]], home: Path
) -> None:
    _, cfg = agent_setup()
    proc = cli(["run", "make numbers", "--scratch", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert out["status"] == "awaiting_approval"
    assert not (home / "workspaces" / out["thread_id"] / "numbers.txt").exists()  # nothing ran
    done = as_json(cli(["resume", out["thread_id"], "--yes", "--json"], home, cfg))
    assert done["status"] == "completed"


def test_bad_input_exits_2_without_traceback(
    agent_setup: Callable[..., tuple[FakeProvider, Path]], home: Path, tmp_path: Path
) -> None:
    _, cfg = agent_setup()
    unknown = cli(["resume", "no-such-thread", "--json"], home, cfg)
    assert unknown.returncode == 2 and "no-such-thread" in unknown.stderr
    empty = cli(["run", "  ", "--json"], home, cfg)
    assert empty.returncode == 2 and "goal is empty" in empty.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "providers.yaml").write_text("providers:\n  x:\n    kind: gemini\n    modle: m\n")
    broken = cli(["run", "anything", "--json"], home, bad)
    assert broken.returncode == 2
    assert "modle" in broken.stderr and "providers.yaml" in broken.stderr
    for proc in (unknown, empty, broken):
        assert "Traceback" not in proc.stderr
