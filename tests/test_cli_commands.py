"""The CLI's reporting commands end to end (subprocess): threads, show, usage (+ --plot),
check, graph; the local-model tier and --offline; Ctrl-C. Shapes as in docs/cli.md."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.graph.context import Context
from free_llm_agent.providers import build_chat_model
from free_llm_agent.runtime.runner import Runner
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.agent import Brain, FakeExecutor
from tests.support.cli import cli
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(180)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_thread(home: Path, goal: str = "demo goal") -> str:
    """A finished thread in ``home`` (scripted model, fake executor: no Open Interpreter)."""
    brain = Brain([["first step", "second step", "third step"]])
    runner = Runner(
        home, llm=brain.model(), context=Context(auto_approve=True), executor_factory=FakeExecutor().factory
    )
    try:
        return runner.run(goal, "t-demo").thread_id
    finally:
        runner.close()


def test_threads_and_show_give_the_history_without_studio(home: Path) -> None:
    tid = make_thread(home)
    threads = json.loads(cli(["threads", "--json"], home).stdout)
    row = threads["threads"][0]
    assert len(threads["threads"]) == 1 and {k: row.pop(k) for k in ("started_at", "updated_at", "workdir")}
    assert row == {"thread_id": tid, "status": "completed", "goal": "demo goal", "tasks_done": 3, "tasks": 3,
                   "resume_after": None, "holder": None}
    shown = cli(["show", tid, "--json"], home)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "completed"
    assert [s for step in data["steps"] for s in step["next"]][:4] == ["__start__", "start", "plan", "write_code"]
    assert [c["purpose"] for c in data["calls"]] == ["plan", "code", "reflect"]
    assert all(c["provider"] == "scripted" for c in data["calls"])
    assert all(t["code"] and t["output"] for t in data["tasks"])
    assert all(t["approved"] and t["approval"] == "auto" for t in data["tasks"])  # --yes approved each
    text = cli(["show", tid], home)
    assert "Task 2 [done] second step (runs: 1, approved by --yes)" in text.stdout and "plan=scripted" in text.stdout
    missing = cli(["show", "nope"], home)
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr


def test_show_says_which_task_was_judged_by_its_exit_status_only(home: Path) -> None:
    """The judge's verdict on task 2 is no verdict ("maybe"): its exit status decided, and ``show``
    says so for that task alone; verdicts read from the judge's tool call count as verdicts."""
    brain = Brain([["first step", "second step", "third step"]],
                  review=lambda tid, n: ("maybe", "") if tid == 2 else ("done", ""))
    runner = Runner(home, llm=brain.model(), context=Context(auto_approve=True),
                    executor_factory=FakeExecutor().factory)
    try:
        tid = runner.run("demo goal", "t-unjudged").thread_id
    finally:
        runner.close()
    text = cli(["show", tid], home)
    assert text.returncode == 0, text.stderr
    note = "(judged by its exit status: no readable verdict)"
    assert text.stdout.count(note) == 1
    part2 = text.stdout.split("Task 2 [done]", 1)[1]
    assert note in part2.split("Task 3 [done]", 1)[0]
    assert note not in text.stdout.split("Task 2 [done]", 1)[0]


@pytest.mark.both_backends
def test_usage_json_table_and_plot(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path
) -> None:
    server = fake_server("openai")
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                      "limits": {"requests_per_minute": 30, "requests_per_day": 10}},
                       "spare": {"kind": "openai_compatible", "base_url": server.base_url, "key": None}})
    llm = build_chat_model(cfg, home)
    for i in range(9):
        llm.invoke(f"question {i}")
    server.script(Reply.rate_limit(retry_after=600))
    with pytest.raises(Exception, match="exhausted"):
        llm.invoke("one more")
    report = json.loads(cli(["usage", "--json"], home, cfg).stdout)
    row = report["providers"]["groq_llama"]
    assert {k: row[k] for k in ("requests_minute", "requests_day", "requests_month")} == {
        "requests_minute": 9, "requests_day": 9, "requests_month": 9}
    assert row["limits"]["requests_per_day"] == 10
    assert row["recommendation"] == "REDUCE_USAGE"  # 90 % of the daily limit
    assert row["cooldown_until"] is not None
    assert report["providers"]["spare"]["has_key"] is False
    plot = tmp_path / "usage.png"
    table = cli(["usage", "--plot", str(plot)], home, cfg)
    assert table.returncode == 0, table.stderr
    assert "9/10" in table.stdout and "REDUCE_USAGE" in table.stdout and "left" in table.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.both_backends
def test_check_reports_each_provider_with_reason_and_latency(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    good, bad_key, limited = fake_server("openai"), fake_server("gemini"), fake_server("openai")
    local = fake_server("openai")
    bad_key.script(Reply.auth_error())
    limited.script(Reply.rate_limit(retry_after=30))
    cfg = make_config({
        "good": {"kind": "groq", "base_url": good.base_url},
        "bad_key": {"kind": "gemini", "base_url": bad_key.base_url},
        "limited": {"kind": "together", "base_url": limited.base_url},
        "nokey": {"kind": "openai_compatible", "base_url": good.base_url, "key": None},
        "down": {"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "timeout_s": 2},
        "ollama": {"kind": "openai_compatible", "base_url": local.base_url, "local": True, "api_key_env": None},
    })
    proc = cli(["check", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    rows = {r["provider"]: r for r in json.loads(proc.stdout)["providers"]}
    assert rows["good"]["ok"] and rows["good"]["latency_ms"] >= 0
    assert rows["ollama"]["ok"]  # local, no key needed
    assert not rows["bad_key"]["ok"] and "TEST_BAD_KEY_KEY" in rows["bad_key"]["reason"]
    assert not rows["limited"]["ok"] and "429" in rows["limited"]["reason"]
    assert not rows["nokey"]["ok"] and "TEST_NOKEY_KEY" in rows["nokey"]["reason"]
    assert not rows["down"]["ok"] and "unreachable" in rows["down"]["reason"]
    assert len(good.requests) == 1 and len(local.requests) == 1  # one tiny request each


@pytest.mark.both_backends
def test_local_tier_is_last_resort_and_offline_uses_only_it(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    online, local = fake_server("openai"), fake_server("openai")
    cfg = make_config({
        "ollama": {"kind": "openai_compatible", "base_url": local.base_url, "local": True, "api_key_env": None},
        "groq_llama": {"kind": "groq", "base_url": online.base_url},
    }, routing={"priority": ["ollama", "groq_llama"]})
    llm = build_chat_model(cfg, home)
    assert llm.invoke("a").response_metadata["provider"] == "groq_llama"  # local goes last even if listed first
    online.script(Reply.rate_limit(retry_after=300))
    assert llm.invoke("b").response_metadata["provider"] == "ollama"  # online tier out -> local
    offline = build_chat_model(cfg, home, offline=True)
    before = len(online.requests)
    assert offline.invoke("c").response_metadata["provider"] == "ollama"
    assert len(online.requests) == before


def test_offline_without_a_local_provider_is_bad_input(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": fake_server("openai").base_url}})
    proc = cli(["run", "anything", "--offline", "--json"], home, cfg)
    assert proc.returncode == 2 and "local" in proc.stderr and "Traceback" not in proc.stderr
    no_keys = make_config({"groq_llama": {"kind": "groq", "base_url": "http://127.0.0.1:9", "key": None}})
    keyless = cli(["run", "anything", "--offline", "--json"], home, no_keys)  # no key either: still the local hint
    assert keyless.returncode == 2 and "--offline needs a local provider" in keyless.stderr, keyless.stderr


def test_graph_mermaid_offline_and_png_needs_graphviz(home: Path, tmp_path: Path) -> None:
    mermaid = cli(["graph"], home)
    assert mermaid.returncode == 0
    for edge in ("plan -.-> write_code", "approve -.-> run_task", "fallback -.-> wait_for_quota"):
        assert edge in mermaid.stdout
    no_dot = cli(["graph", "--format", "png"], home, env={**os.environ, "PATH": str(tmp_path)})
    assert no_dot.returncode == 2 and "graphviz" in no_dot.stderr.lower()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    dot = fake_bin / "dot"  # stands in for Graphviz: records the DOT source, answers PNG bytes
    dot.write_text(f"#!/bin/sh\ncat > {tmp_path}/in.dot\nprintf '\\211PNG'\n")
    dot.chmod(0o755)
    out = tmp_path / "g.png"
    drawn = cli(["graph", "--format", "png", "-o", str(out)], home,
                env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert drawn.returncode == 0, drawn.stderr
    assert out.read_bytes() == b"\x89PNG"
    assert '"reflect" -> "plan" [style=dashed]' in (tmp_path / "in.dot").read_text()


def test_ctrl_c_stops_cleanly_and_prints_the_resume_command(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    wait = ("import os, time\nopen('started', 'w').close()\nt = time.time()\n"
            "while not os.path.exists('go') and time.time() - t < 60:\n    time.sleep(0.05)\nprint('waited')")
    plan = (("wait a bit", wait), ("say done", "print('done')"))
    server = fake_server("openai", responder=make_responder(plan))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    proc = subprocess.Popen(
        [*CLI, "--config-dir", str(cfg), "--home", str(home), "run", "wait",
         "--scratch", "--thread-id", "cc1", "--yes"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits SIG_IGN
    )
    workspace = home / "workspaces" / "cc1"
    deadline = time.time() + 120
    while time.time() < deadline and not (workspace / "started").exists():  # task 1 is running (until "go")
        time.sleep(0.1)
    assert (workspace / "started").exists(), "task 1 never started"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    # the hint keeps every flag that was given, so it can be copied as is
    # (what starts the script depends on how the tests run: tests/test_cli_habits.py checks each case)
    assert f"run_graph.py --config-dir {cfg} --home {home} resume cc1" in " ".join(stderr.split())
    (workspace / "go").write_text("go")  # from now on task 1 finishes at once
    done = cli(["resume", "cc1", "--yes", "--json"], home, cfg)
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["status"] == "completed", done.stderr
    # the task in flight was stopped, not finished: it ran again on resume (after the --yes notice)
    shown = json.loads(cli(["show", "cc1", "--json"], home, cfg).stdout)
    assert shown["tasks"][0]["restarts"] == 1 and "waited" in shown["tasks"][0]["output"]


def test_summary_goes_to_stdout_and_a_paused_runs_hint_keeps_the_flags(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    server = fake_server("openai", responder=make_responder((("a", "print(1)"), ("b", "print(2)"))))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    paused = cli(["run", "two steps", "--scratch", "--thread-id", "p1"], home, cfg)  # no terminal, no --yes
    assert paused.returncode == 0, paused.stderr
    assert f"--config-dir {cfg} --home {home} resume p1" in " ".join(paused.stderr.split())
    done = cli(["resume", "p1", "--yes"], home, cfg)
    assert done.returncode == 0, done.stderr
    assert "Goal: two steps" in done.stdout and "2 of 2 tasks done." in done.stdout  # `> out.txt` keeps it
    assert "Goal: two steps" not in done.stderr and "status: completed" in done.stderr
