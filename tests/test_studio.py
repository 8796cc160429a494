"""``langgraph dev`` serves the graph offline; the real langgraph_sdk client drives a run
through approval interrupts to the final state (fake providers on loopback)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from langgraph_sdk import get_sync_client

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import cli
from tests.support.paths import ROOT
from tests.support.readme import snippet
from tests.support.servers import free_port, stop_group, wait_until_ok

PLAN = (
    ("write hello.txt", "open('hello.txt','w').write('hello')\nprint('wrote hello.txt')"),
    ("read hello.txt back", "print(open('hello.txt').read())"),
    ("count its letters", "print(len(open('hello.txt').read()))"),
)
pytestmark = pytest.mark.timeout(240)


@contextlib.contextmanager
def langgraph_dev(cfg: Path, home: Path, **extra_env: str) -> Iterator[str]:
    """``langgraph dev`` offline on a free port with this config and home; yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "FREE_AGENT_CONFIG_DIR": str(cfg),
        "FREE_AGENT_HOME": str(home),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        **extra_env,
    }
    started = time.time()
    proc = subprocess.Popen(
        ["uv", "run", "--frozen", "langgraph", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(proc, url, 90, "langgraph dev")
        print(f"langgraph dev ready in {time.time() - started:.1f}s")
        yield url
    finally:
        stop_group(proc)
    assert proc.returncode is not None


@pytest.fixture
def server(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> Iterator[tuple[str, FakeProvider, Path]]:
    provider = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": provider.base_url}})
    with langgraph_dev(cfg, home) as url:
        yield url, provider, home


def test_studio_server_runs_the_agent_through_approvals(server: tuple[str, FakeProvider, Path]) -> None:
    url, provider, home = server
    client = get_sync_client(url=url)
    assistants = client.assistants.search(graph_id="agent")
    assert [a["graph_id"] for a in assistants] == ["agent"]
    schemas = client.assistants.get_schemas(assistants[0]["assistant_id"])
    assert "auto_approve" in str(schemas.get("context_schema"))  # Studio's form
    assert (schemas.get("input_schema") or {}).get("required") == ["goal"]  # not null on 3.11
    assert {"tasks", "summary", "status"} <= set((schemas.get("output_schema") or {}).get("properties", {}))

    thread = client.threads.create()
    tid = thread["thread_id"]
    updates: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"input": {"goal": "say hello in a file"}}
    for _ in range(10):
        for part in client.runs.stream(tid, "agent", stream_mode="updates", context={"auto_approve": False}, **kwargs):
            if part.event == "updates":
                updates.append(part.data)
        state = client.threads.get_state(tid)
        pending = [i for task in state["tasks"] for i in task.get("interrupts", [])]
        if not pending:
            break
        payload = pending[0]["value"]
        assert payload["type"] == "approval" and payload["language"] == "python" and payload["code"]
        approvals.append(payload)
        kwargs = {"command": {"resume": {"action": "approve"}}}
    values: Any = client.threads.get_state(tid)["values"]
    assert [a["task_id"] for a in approvals] == [1, 2, 3], [(t.get("error"), t.get("output")) for t in values["tasks"]]
    assert values["status"] == "completed", values
    assert [t["status"] for t in values["tasks"]] == ["done", "done", "done"]
    assert "5" in values["tasks"][2]["output"]
    assert values["summary"].startswith("Goal: say hello in a file")
    assert any("plan" in u for u in updates) and any("run_task" in u for u in updates)
    assert len(provider.requests) == 3  # plan, code for the batch, reflect
    assert (home / "workspaces" / tid / "hello.txt").read_text() == "hello"


def test_the_docs_sdk_snippet_runs_as_written(server: tuple[str, FakeProvider, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/studio.md's snippet, unchanged: it takes the server from LANGGRAPH_URL (this server's port)."""
    url = server[0]
    assert not url.endswith(":2024")  # a port of its own: the snippet's default would not reach it
    monkeypatch.setenv("LANGGRAPH_URL", url)
    code = snippet("langgraph-sdk")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/studio.md:langgraph-sdk", "exec"), {})
    lines = printed.getvalue()
    assert lines.count("approving task") == 3 and "Goal: say hello in a file" in lines
    assert "✔ Task 3: count its letters" in lines


def test_a_server_and_the_cli_share_one_quota_through_the_database_url(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path,
    postgres_url: str,
) -> None:
    """``langgraph dev`` with ``FREE_AGENT_DATABASE_URL`` books its requests in that database: a CLI on another
    machine (its own home) sees them counted, and is refused once the server has used the day's quota."""
    provider = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": provider.base_url,
                                      "limits": {"requests_per_day": 3}}})  # plan, code, reflect
    with langgraph_dev(cfg, home, FREE_AGENT_DATABASE_URL=postgres_url) as url:
        client = get_sync_client(url=url)
        tid = client.threads.create()["thread_id"]
        client.runs.wait(tid, "agent", input={"goal": "say hello in a file"}, context={"auto_approve": True})
        values: Any = client.threads.get_state(tid)["values"]
    assert values["status"] == "completed", values
    assert posts(provider) == 3
    assert not (home / "agent.db").exists()  # the server's quota is not in its home

    laptop = tmp_path / "laptop"
    usage = cli(["usage", "--json"], laptop, cfg, database_url=postgres_url)
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout)["providers"]["groq_llama"]["requests_day"] == 3
    check = cli(["check", "--json"], laptop, cfg, database_url=postgres_url)
    (row,) = json.loads(check.stdout)["providers"]
    assert check.returncode == 1 and not row["ok"], row
    assert "3 requests/day used" in row["reason"]
    assert posts(provider) == 3  # the CLI's request never left: the day's quota was the server's


def posts(provider: FakeProvider) -> int:
    return sum(1 for r in provider.requests if r.method == "POST")


def test_the_graph_schemas_studio_shows_are_complete() -> None:
    """What ``/assistants/{id}/schemas`` serves: pydantic on 3.11 needs typing_extensions' TypedDict."""
    from free_llm_agent.graph.workflow import graph

    assert graph.get_input_jsonschema()["properties"]["goal"]["type"] == "string"
    output = graph.get_output_jsonschema()["properties"]
    assert {"tasks", "summary", "status", "llm_calls", "resume_after"} <= set(output)
    context = graph.get_context_jsonschema()["properties"]
    assert {"auto_approve", "max_batch_size", "executor_timeout_s", "workdir", "network"} <= set(context)


def test_a_thread_survives_kill_9_of_the_server_and_the_cli_finishes_it(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path) -> None:
    """Issue 21, case 2: ``kill -9`` of ``langgraph dev`` used to lose every thread on it (the dev server writes
    its state only on a clean stop). The served graph keeps a copy of each checkpoint in the home's store:
    after the kill, ``threads`` lists the thread and ``resume`` finishes it, no task run twice."""
    provider = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": provider.base_url}})
    with langgraph_dev(cfg, home) as url:
        client = get_sync_client(url=url)
        tid = client.threads.create()["thread_id"]
        for _ in client.runs.stream(tid, "agent", input={"goal": "say hello in a file"}, stream_mode="updates",
                                    context={"auto_approve": False}):
            pass
        pending = [i for task in client.threads.get_state(tid)["tasks"] for i in task.get("interrupts", [])]
        assert pending and pending[0]["value"]["type"] == "approval"  # waiting for task 1's approval
        server = next(p for p in psutil.process_iter(["cmdline"])
                      if "langgraph" in " ".join(p.info["cmdline"] or []) and "dev" in (p.info["cmdline"] or [])
                      and str(url.rsplit(":", 1)[1]) in (p.info["cmdline"] or []))
        os.killpg(os.getpgid(server.pid), signal.SIGKILL)  # the server and everything it started
    listed = cli(["threads", "--json"], home, cfg)
    assert tid in [t["thread_id"] for t in json.loads(listed.stdout)["threads"]], listed.stdout + listed.stderr
    done = cli(["resume", tid, "--yes", "--json"], home, cfg, timeout=200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and [t["status"] for t in result["tasks"]] == ["done"] * 3
    assert (home / "workspaces" / tid / "hello.txt").read_text() == "hello"
    assert len([r for r in provider.requests if r.method == "POST"]) == 3  # plan and code once each, then reflect


def test_the_mirrored_saver_keeps_every_checkpoint_in_the_copy_and_deletes_it_there_too(tmp_path: Path) -> None:
    """The served graph's saver: reads are the server's; checkpoints and writes also land in the agent's store."""
    import sqlite3
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import StateGraph

    from free_llm_agent.runtime.studio import MirroredSaver

    class S(TypedDict):
        n: int

    server, copy = InMemorySaver(), SqliteSaver(sqlite3.connect(tmp_path / "c.db", check_same_thread=False))
    g = StateGraph(S)
    g.add_node("inc", lambda s: {"n": s["n"] + 1})
    g.set_entry_point("inc")
    graph = g.compile(checkpointer=MirroredSaver(server, copy))
    config: Any = {"configurable": {"thread_id": "t"}}
    assert graph.invoke({"n": 1}, config) == {"n": 2}
    ours, theirs = server.get_tuple(config), copy.get_tuple(config)
    assert ours is not None and theirs is not None
    assert theirs.checkpoint["id"] == ours.checkpoint["id"] and theirs.checkpoint["channel_values"]["n"] == 2
    assert len(list(copy.list(config))) == len(list(server.list(config)))
    MirroredSaver(server, copy).delete_thread("t")
    assert server.get_tuple(config) is None and copy.get_tuple(config) is None
