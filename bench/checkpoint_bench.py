"""Checkpoint overhead: the same 5-task run with SqliteSaver (durability="sync") vs InMemorySaver.

The LLM is scripted and the executor instant, so the difference is the checkpointer.
    uv run python bench/checkpoint_bench.py [runs]
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from free_llm_agent import Context, build_graph
from tests.fakes.scripted import ScriptedChatModel, tool_answer


@dataclass
class Result:
    ok: bool = True
    output: str = "ok\n"
    timed_out: bool = False
    duration_s: float = 0.0
    error: str | None = None


class InstantExecutor:
    def __init__(self, workspace: Path, timeout_s: float, network: bool = True) -> None:
        self.workspace = workspace

    def run(self, language: str, code: str) -> Result:
        return Result()

    def close(self) -> None:
        pass


def script(messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
    import re

    text = str(messages[-1].content)
    if "Break this goal" in text:
        return tool_answer("Plan", {"tasks": [f"task {i}" for i in range(1, 6)]})
    ids = [int(i) for i in re.findall(r"- Task (\d+):", text.split("Write the code")[-1])]
    if "Write the code" in text:
        return tool_answer("CodeBatch", {"items": [{"task_id": i, "code": "print(1)"} for i in ids]})
    return tool_answer("Review", {"verdicts": [{"task_id": i, "verdict": "done"} for i in ids]})


def one_run(saver: Any, home: Path, n: int) -> tuple[float, int]:
    graph = build_graph(checkpointer=saver, llm=ScriptedChatModel(script=script), executor_factory=InstantExecutor,
                        home=home)
    cfg = {"configurable": {"thread_id": f"t{n}"}}
    start = time.perf_counter()
    graph.invoke({"goal": "bench"}, cfg, context=Context(auto_approve=True), durability="sync")
    elapsed = time.perf_counter() - start
    steps = len(list(saver.list(cfg)))
    return elapsed, steps


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    home = Path(tempfile.mkdtemp())
    conn = sqlite3.connect(home / "checkpoints.db", check_same_thread=False)
    results: dict[str, list[float]] = {}
    steps = 0
    for name, saver in (("InMemorySaver", InMemorySaver()), ("SqliteSaver", SqliteSaver(conn))):
        times = []
        for i in range(runs):
            elapsed, steps = one_run(saver, home, i)
            times.append(elapsed)
        results[name] = times
    mem, sql = statistics.median(results["InMemorySaver"]), statistics.median(results["SqliteSaver"])
    print(f"5-task run, {steps} checkpoints per run, median of {runs} runs:")
    print(f"  InMemorySaver {mem * 1000:7.1f} ms")
    extra = sql - mem
    per = extra / steps * 1000
    print(f"  SqliteSaver   {sql * 1000:7.1f} ms  (+{extra * 1000:.1f} ms, +{per:.2f} ms per checkpoint)")


if __name__ == "__main__":
    main()
