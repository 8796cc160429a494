"""LLM requests per goal: 3/5/8 tasks, batching on (max_batch_size 3) and off (1), then a re-run.

The real graph (``graph.build_graph``) and the real ``QuotaAwareChatModel`` (cache on)
against a loopback ``FakeProvider`` answering the agent's prompts like a good model
(``tests/fakes/agent_responder.py``); the executor is ``tests.support.agent.FakeExecutor``
(nothing runs). Requests are counted at the fake server. The re-run asks the same goal on
a new thread with the same home: every answer comes from the response cache.
The shipped planner keeps at most ``nodes.plan.MAX_TASKS`` = 5 tasks; for the 8-task rows
the benchmark raises that constant to 8 in its own process (printed under the table).

    uv run python bench/calls_per_goal.py [--tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import add_output_args, loaded_note, markdown_table, plt_figure, png_path, save
from langgraph.checkpoint.memory import InMemorySaver

import free_llm_agent.nodes.plan as plan_node
from free_llm_agent.graph.context import Context
from free_llm_agent.graph.workflow import build_graph
from free_llm_agent.providers import build_chat_model
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.agent import FakeExecutor
from tests.support.config import write_config


def plan(n: int) -> list[tuple[str, str]]:
    return [(f"step {i}: write part{i}.txt", f"open('part{i}.txt','w').write('{i}')") for i in range(1, n + 1)]


def run_goal(graph: Any, goal: str, thread: str, batch: int, workdir: Path) -> dict[str, Any]:
    config: Any = {"configurable": {"thread_id": thread}, "recursion_limit": 200}
    ctx = Context(auto_approve=True, max_batch_size=batch, workdir=str(workdir), max_iterations=20)
    result: dict[str, Any] = graph.invoke({"goal": goal}, config, context=ctx)
    return result


def measure(tasks: int, batch: int, tmp: Path) -> tuple[int, int, int, int]:
    """(requests first run, requests re-run, cache hits re-run, tasks done)."""
    plan_node.MAX_TASKS = max(5, tasks)
    with FakeProvider("openai", responder=make_responder(plan(tasks))) as fake:
        config_dir, env = write_config(tmp / "config", {"bench": {"kind": "openai_compatible",
                                                                  "base_url": fake.base_url}},
                                       optimization={"enable_caching": True, "max_batch_size": batch})
        os.environ.update(env)
        llm = build_chat_model(config_dir, tmp / "home")
        executor = FakeExecutor()
        graph = build_graph(checkpointer=InMemorySaver(), llm=llm, executor_factory=executor.factory, home=tmp / "home")
        goal = f"make {tasks} files"
        workdir = tmp / "work"
        workdir.mkdir(exist_ok=True)
        first = run_goal(graph, goal, "first", batch, workdir)
        done = sum(t["status"] == "done" for t in first["tasks"])
        n_first = sum(r.method == "POST" for r in fake.requests)
        again = run_goal(graph, goal, "again", batch, workdir)
        n_again = sum(r.method == "POST" for r in fake.requests) - n_first
        return n_first, n_again, int(again.get("cache_hits", 0)), done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_output_args(parser)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    sizes = [3] if args.tiny else [3, 5, 8]
    rows: list[list[object]] = []
    data: dict[tuple[int, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="fla-calls-") as tmp:
        for n in sizes:
            for batch in (3, 1):
                first, again, hits, done = measure(n, batch, Path(tmp) / f"{n}-{batch}")
                data[(n, batch)] = first
                rows.append([n, "on (3)" if batch == 3 else "off (1)", f"{done}/{n}", first, again, hits])
    print("LLM requests per goal (counted at the server), real graph + QuotaAwareChatModel, fake executor")
    print(markdown_table(["tasks", "batching (max_batch_size)", "tasks done", "requests", "requests on re-run",
                          "cache hits on re-run"], rows))
    if max(sizes) > 5:
        print("\n8 tasks: nodes.plan.MAX_TASKS raised from 5 to 8 for these rows (the shipped planner keeps 5)")
    print(f"\n{loaded_note()}")
    fig, (ax,) = plt_figure(6.5, 4.0)
    width = 0.38
    xs = range(len(sizes))
    ax.bar([x - width / 2 for x in xs], [data[(n, 3)] for n in sizes], width, label="batching on (3)")
    ax.bar([x + width / 2 for x in xs], [data[(n, 1)] for n in sizes], width, label="batching off (1)")
    ax.set_xticks(list(xs), [f"{n} tasks" for n in sizes])
    ax.set_ylabel("LLM requests per goal")
    ax.set_title("LLM requests per goal (re-run from cache: 0)")
    ax.legend()
    save(fig, png_path(args, "calls_per_goal"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
