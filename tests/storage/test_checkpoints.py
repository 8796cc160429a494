"""The checkpointer the registry opens, on each backend: LangGraph's put/get/list, thread ids, persistence."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph

from free_llm_agent.storage.checkpoints import Checkpoints
from free_llm_agent.storage.registry import open_checkpointer

pytestmark = pytest.mark.both_backends


class Counter(TypedDict):
    n: int
    seen: Annotated[list[str], operator.add]


def step(state: Counter) -> dict[str, Any]:
    return {"n": state["n"] + 1, "seen": [f"step {state['n']}"]}


def compiled(checkpoints: Checkpoints) -> Any:
    builder = StateGraph(Counter)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=checkpoints.saver)


def thread(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


@pytest.fixture
def checkpoints(url: str | None, store_home: Path) -> Iterator[Checkpoints]:
    opened = open_checkpointer(url, store_home)
    yield opened
    opened.close()


def test_a_fresh_store_has_no_thread(checkpoints: Checkpoints) -> None:
    assert checkpoints.thread_ids() == ([], True)
    assert checkpoints.saver.get_tuple(thread("none")) is None
    assert checkpoints.label


def test_put_get_list_and_pending_writes(checkpoints: Checkpoints) -> None:
    saver = checkpoints.saver
    config: RunnableConfig = {"configurable": {"thread_id": "low", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    saved = saver.put(config, checkpoint, {"source": "input", "step": -1}, {})
    assert saved["configurable"]["checkpoint_id"] == checkpoint["id"]
    saver.put_writes(saved, [("n", 5)], task_id="task-1")
    got = saver.get_tuple(thread("low"))
    assert got is not None and got.checkpoint["id"] == checkpoint["id"]
    assert got.metadata["step"] == -1
    assert [(w[1], w[2]) for w in got.pending_writes or []] == [("n", 5)]
    assert [t.checkpoint["id"] for t in saver.list(thread("low"))] == [checkpoint["id"]]


def test_a_graph_run_is_checkpointed_and_found_again_after_reopening(url: str | None, store_home: Path) -> None:
    checkpoints = open_checkpointer(url, store_home)
    try:
        graph = compiled(checkpoints)
        graph.invoke({"n": 1, "seen": []}, thread("first"))
        graph.invoke({"n": 10, "seen": []}, thread("second"))
        assert graph.get_state(thread("first")).values == {"n": 2, "seen": ["step 1"]}
        history = list(checkpoints.saver.list(thread("first")))
        assert len(history) >= 2  # the input, then the step
        assert history[0].checkpoint["channel_values"]["n"] == 2  # newest first
        assert checkpoints.thread_ids() == (["first", "second"], True)  # oldest first
    finally:
        checkpoints.close()
    reopened = open_checkpointer(url, store_home)
    try:
        again = compiled(reopened)
        assert again.get_state(thread("second")).values == {"n": 11, "seen": ["step 10"]}
        again.invoke({"n": 11}, thread("second"))  # continues the thread: the reducer keeps what was seen
        assert again.get_state(thread("second")).values == {"n": 12, "seen": ["step 10", "step 11"]}
    finally:
        reopened.close()


def test_each_thread_says_when_it_started(checkpoints: Checkpoints) -> None:
    from datetime import UTC, datetime

    assert checkpoints.started() == {}
    graph = compiled(checkpoints)
    before = datetime.now(UTC)
    graph.invoke({"n": 1, "seen": []}, thread("first"))
    graph.invoke({"n": 10, "seen": []}, thread("second"))
    first_input = list(checkpoints.saver.list(thread("first")))[-1].checkpoint["ts"]
    graph.invoke({"n": 2}, thread("first"))  # a later run of the thread: it started with its first checkpoint
    started = checkpoints.started()
    assert set(started) == {"first", "second"}
    assert before <= started["first"] <= started["second"] <= datetime.now(UTC)
    assert abs((started["first"] - datetime.fromisoformat(first_input)).total_seconds()) < 0.001  # the same moment
